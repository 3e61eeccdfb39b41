//! `puppet-access`: log in to RBAC and keep the token for the other tools (PE's
//! `puppet-access`).

use clap::Parser;
use porch_cli::access_cmd::{AccessCommand, run_access};
use porch_cli::config::GlobalArgs;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "puppet-access",
    version,
    about = "Log in to RBAC and save a token for puppet-job, puppet-app and porch",
    after_help = "Reads ~/.puppetlabs/client-tools/puppet-access.conf (\"service-url\", \
\"certificate-file\", \"token-file\"), then orchestrator.conf. Exit codes: 0 success, \
2 usage or configuration, 5 unreachable, 7 login failed or no token, 9 TLS/certificate problem."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: AccessCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    porch_cli::run_main(
        "warn",
        async move { run_access(cli.command, &cli.global).await },
    )
}
