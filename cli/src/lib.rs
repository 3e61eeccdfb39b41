//! porch-cli: the command-line programs.
//!
//! - `porch`: `server` (an orchestrator node), `dev` (a local 3-node cluster), `agent`,
//!   `job`/`app`/`schedule`/`cluster`/`access`/`rbac`/`audit` (clients), `bench`, `chaos` (a seeded
//!   fault schedule against a local cluster of real processes, with a verdict).
//! - `puppet-job`, `puppet-app` and `puppet-access`: the PE-compatible clients (same code as
//!   `porch job|app|access`).
//!
//! Clients resolve where to go, which CA to trust and which token to send in [`config`]
//! (flags, `PORCH_SERVICE_URL`, PE's `puppet-access.conf` and `orchestrator.conf`,
//! `porch dev`'s conf), talk HTTPS through [`client::Client`] (Puppet's CA only, the RBAC token
//! as `X-Authentication`, failover across URLs, one request id per command), and exit with the
//! statuses in [`exit_code`]. [`access_cmd`] obtains and stores the token.

pub mod access_cmd;
pub mod app_cmd;
pub mod audit_cmd;
pub mod backup_cmd;
pub mod bench_cluster;
pub mod bench_cmd;
pub mod bench_envelope;
pub mod bench_learner;
pub mod bench_levels;
pub mod bench_retention;
pub mod bench_schedules;
pub mod bench_submit;
pub mod bench_task_fanout;
pub mod chaos;
pub mod child_process;
pub mod client;
pub mod cluster_cmd;
pub mod config;
pub mod exit_code;
pub mod fanout_bench;
pub mod job_cmd;
pub mod rbac_cmd;
pub mod schedule_cmd;
pub mod server_cmd;
pub mod task_cmd;

/// Sets up logging to stderr (`PORCH_LOG`, tracing env-filter syntax) and a runtime, and runs
/// `main` on it.
pub fn run_main<F>(default_log: &str, main: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = std::process::ExitCode>,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORCH_LOG")
                .unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(main),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
