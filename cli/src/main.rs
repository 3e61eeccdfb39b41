//! `porch`: the orchestrator node, a local dev cluster, the agent, the clients, benchmarks.

use clap::{Parser, Subcommand};
use porch_cli::config::GlobalArgs;
use porch_cli::{
    access_cmd, app_cmd, audit_cmd, backup_cmd, bench_cmd, cluster_cmd, exit_code, job_cmd,
    rbac_cmd, run_main, schedule_cmd, server_cmd, task_cmd,
};
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: a long-running node frees large, short-lived buffers
/// (snapshots, pruned jobs) and glibc kept the pages, holding 2-2.5x the memory of a restarted
/// node with the same state (BENCHMARKS.md, retention); jemalloc returns unused pages to the
/// system after a few seconds.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "porch", version, about = "A highly available Puppet orchestrator", after_help = exit_code::SUMMARY)]
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
    /// Jobs: run, plan, show, stop (as puppet-job).
    Job {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: job_cmd::JobCommand,
    },
    /// Tasks: run, show (as puppet-task).
    Task {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: task_cmd::TaskCommand,
    },
    /// Scheduled jobs: list, show, delete (create one with `job run --schedule-at`).
    Schedule {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: schedule_cmd::ScheduleCommand,
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
    /// RBAC tokens: login, show, whoami, revoke (as puppet-access).
    Access {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: access_cmd::AccessCommand,
    },
    /// RBAC users and roles.
    Rbac {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: rbac_cmd::RbacCommand,
    },
    /// The audit log: who did what, newest first.
    Audit {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(flatten)]
        args: audit_cmd::AuditArgs,
    },
    /// Take a consistent backup of the cluster's state into a file (admin).
    Backup(backup_cmd::BackupArgs),
    /// Seed the founding node of a new cluster from a backup file.
    Restore(backup_cmd::RestoreArgs),
    /// Benchmarks (results for BENCHMARKS.md).
    Bench(bench_cmd::BenchArgs),
    /// Seeded faults (partitions, slow links, pauses, kill -9) against a local cluster of real
    /// processes, then a verdict: no acknowledged job lost, each run once, order kept.
    Chaos(porch_cli::chaos::ChaosArgs),
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
            Command::Task { global, command } => task_cmd::run_task(command, &global).await,
            Command::App { global, command } => app_cmd::run_app(command, &global).await,
            Command::Schedule { global, command } => {
                schedule_cmd::run_schedule(command, &global).await
            }
            Command::Cluster { global, command } => {
                cluster_cmd::run_cluster(command, &global).await
            }
            Command::Access { global, command } => access_cmd::run_access(command, &global).await,
            Command::Rbac { global, command } => rbac_cmd::run_rbac(command, &global).await,
            Command::Audit { global, args } => audit_cmd::run_audit(args, &global).await,
            Command::Backup(args) => backup_cmd::run_backup(args).await,
            Command::Restore(args) => backup_cmd::run_restore(args).await,
            Command::Bench(args) => bench_cmd::run_bench(args).await,
            Command::Chaos(args) => porch_cli::chaos::run_chaos(args).await,
            // The simulation builds its own seeded single-threaded runtime per seed, which
            // must not start inside this one: a plain thread has no runtime context.
            Command::Sim(args) => std::thread::spawn(move || porch_simulation::cli::run_sim(args))
                .join()
                .unwrap_or(ExitCode::FAILURE),
        }
    })
}
