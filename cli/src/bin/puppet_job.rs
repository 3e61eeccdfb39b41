//! `puppet-job`: run, plan, show and stop Puppet jobs (PE's `puppet job`).

use clap::Parser;
use porch_cli::config::GlobalArgs;
use porch_cli::job_cmd::{JobCommand, run_job};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "puppet-job",
    version,
    about = "Run Puppet on nodes now, in dependency order",
    after_help = porch_cli::exit_code::SUMMARY
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: JobCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    porch_cli::run_main(
        "warn",
        async move { run_job(cli.command, &cli.global).await },
    )
}
