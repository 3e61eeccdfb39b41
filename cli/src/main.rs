//! `porch`: the orchestrator node, a local dev cluster, and (through the client modules) the
//! job, app and cluster commands.

mod bench_cmd;
mod server_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "porch",
    version,
    about = "A highly available Puppet orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an orchestrator node.
    Server(server_cmd::ServerArgs),
    /// Run a local three-node cluster on loopback.
    Dev(server_cmd::DevArgs),
    /// Run an agent: keep a session with the orchestrators and run Puppet when asked.
    Agent(porch_agent::AgentArgs),
    /// Benchmarks (results for BENCHMARKS.md).
    Bench(bench_cmd::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORCH_LOG")
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server_cmd::run_server(args).await,
            Command::Dev(args) => server_cmd::run_dev(args).await,
            Command::Bench(args) => bench_cmd::run_bench(args).await,
            Command::Agent(args) => porch_agent::run_agent(args).await,
        }
    })
}
