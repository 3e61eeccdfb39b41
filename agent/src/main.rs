//! `porch-agent`: the agent alone, for managed hosts.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "porch-agent",
    version,
    about = "Runs Puppet when a porch orchestrator asks"
)]
struct Cli {
    #[command(flatten)]
    args: porch_agent::AgentArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORCH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(porch_agent::run_agent(cli.args)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}
