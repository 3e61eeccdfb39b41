//! `puppet-app`: show application models and instances (PE's `puppet app`).

use clap::Parser;
use porch_cli::app_cmd::{AppCommand, run_app};
use porch_cli::config::GlobalArgs;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "puppet-app",
    version,
    about = "Show applications and their instances"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: AppCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    porch_cli::run_main(
        "warn",
        async move { run_app(cli.command, &cli.global).await },
    )
}
