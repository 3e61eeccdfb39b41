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
    after_help = "Exit codes: 0 success, 1 node failures, 2 usage or invalid request, 3 job stopped, \
4 job failed, 5 orchestrator unreachable, 6 other API error, 130 interrupted."
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
