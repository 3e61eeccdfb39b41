//! `puppet-task`: run tasks on nodes and show the environment's tasks (PE's `puppet task`).

use clap::Parser;
use porch_cli::config::GlobalArgs;
use porch_cli::task_cmd::{TaskCommand, run_task};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "puppet-task",
    version,
    about = "Run a task from the environment's modules on nodes",
    after_help = porch_cli::exit_code::SUMMARY
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: TaskCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    porch_cli::run_main(
        "warn",
        async move { run_task(cli.command, &cli.global).await },
    )
}
