//! `porch`: the orchestrator node, a local dev cluster, the agent, the clients, benchmarks.

use clap::{Parser, Subcommand};
use porch_cli::config::GlobalArgs;
use porch_cli::{app_cmd, bench_cmd, cluster_cmd, job_cmd, run_main, server_cmd};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "porch", version, about = "A highly available Puppet orchestrator", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Client exit codes: 0 success, 1 node failures, 2 usage or invalid request, \
3 job stopped, 4 job failed, 5 orchestrator unreachable, 6 other API error, 130 interrupted.";

#[derive(Subcommand)]
enum Command {
    /// Run an orchestrator node.
    Server(server_cmd::ServerArgs),
    /// Run a local three-node cluster on loopback.
    Dev(server_cmd::DevArgs),
    /// Run an agent: keep a session with the orchestrators and run Puppet when asked.
    Agent(porch_agent::AgentArgs),
    /// Jobs: run, plan, show, stop (as puppet-job).
    Job {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: job_cmd::JobCommand,
    },
    /// Applications: show (as puppet-app).
    App {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: app_cmd::AppCommand,
    },
    /// Cluster membership and status.
    Cluster {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: cluster_cmd::ClusterCommand,
    },
    /// Benchmarks (results for BENCHMARKS.md).
    Bench(bench_cmd::BenchArgs),
    /// Deterministic simulation: the real cluster in one process under seeded faults.
    Sim(porch_simulation::cli::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Server(_) | Command::Dev(_) | Command::Agent(_) => "info,openraft=warn",
        _ => "warn",
    };
    run_main(default_log, async move {
        match cli.command {
            Command::Server(args) => server_cmd::run_server(args).await,
            Command::Dev(args) => server_cmd::run_dev(args).await,
            Command::Agent(args) => porch_agent::run_agent(args).await,
            Command::Job { global, command } => job_cmd::run_job(command, &global).await,
            Command::App { global, command } => app_cmd::run_app(command, &global).await,
            Command::Cluster { global, command } => {
                cluster_cmd::run_cluster(command, &global).await
            }
            Command::Bench(args) => bench_cmd::run_bench(args).await,
            // The simulation builds its own seeded single-threaded runtime per seed, which
            // must not start inside this one: a plain thread has no runtime context.
            Command::Sim(args) => std::thread::spawn(move || porch_simulation::cli::run_sim(args))
                .join()
                .unwrap_or(ExitCode::FAILURE),
        }
    })
}
