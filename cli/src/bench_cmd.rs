//! `porch bench`: its flags, and the dispatch to [`crate::bench_submit`],
//! [`crate::fanout_bench`], [`crate::bench_task_fanout`], [`crate::bench_levels`], [`crate::bench_envelope`],
//! [`crate::bench_retention`] and [`crate::bench_learner`].

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Job submissions/s and p50/p99 latency (and etcd puts side by side with --etcd).
    Submit(SubmitArgs),
    /// A job over many simulated agents with instant runs: node runs/s, dispatch times, memory
    /// per connected agent, and the dispatch gap when the leader is killed mid-job.
    Fanout(FanoutArgs),
    /// A no-op task over many simulated agents against a deploy over the same agents, in one
    /// run: node runs/s of each (the task's first job fetches its file on every agent).
    TaskFanout(TaskFanoutArgs),
    /// porch's overhead per level of an application job on real agents, against an existing
    /// cluster: N jobs one after another, per level the wall time beyond the agents' runs.
    Levels(LevelsArgs),
    /// What the record envelope (format version, CRC-32) adds to a snapshot's encode and
    /// decode, against plain bincode, on a state of many ended jobs (in process, no cluster).
    Envelope(EnvelopeArgs),
    /// Schedule firing precision (due → committed, median and p99) with many active
    /// schedules, and the leader's CPU for them.
    Schedules(crate::bench_schedules::SchedulesArgs),
    /// Memory, snapshot size and restart time as jobs pile up under `--jobs-kept-max`
    /// (a long run: checkpoints from the first 10,000 jobs to 1,000,000).
    Retention(RetentionArgs),
    /// API read latency at a learner in a remote datacenter (a delay proxy as the link)
    /// versus at a voter.
    LearnerReads(LearnerReadsArgs),
}

#[derive(Args, Debug)]
pub struct LearnerReadsArgs {
    /// One-way latency of the link between the datacenters.
    #[arg(long, default_value_t = 40)]
    pub one_way_ms: u64,
    /// Raft heartbeat (`--heartbeat-ms`); it must exceed twice the round trip.
    #[arg(long, default_value_t = 250)]
    pub heartbeat_ms: u64,
    /// Sequential reads per reader and load.
    #[arg(long, default_value_t = 300)]
    pub reads: usize,
    #[arg(long, default_value_t = 18400)]
    pub base_port: u16,
}

#[derive(Args, Debug)]
pub struct RetentionArgs {
    /// Jobs submitted at which to measure, comma-separated; the last is where the run ends.
    #[arg(long, default_value = "10000,100000,250000,500000,1000000")]
    pub checkpoints: String,
    /// The cluster's `--jobs-kept-max`.
    #[arg(long, default_value_t = 10_000)]
    pub jobs_kept_max: u64,
    /// The cluster's `--snapshot-every` (a restart replays at most this many entries).
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every: u64,
    /// Concurrent submitters.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Simulated agents with instant runs (each job targets one of them).
    #[arg(long, default_value_t = 200)]
    pub agents: usize,
    /// Stop at the next checkpoint after this long, and say so.
    #[arg(long, default_value_t = 7200)]
    pub seconds_max: u64,
    #[arg(long, default_value_t = 18300)]
    pub base_port: u16,
    /// Spools of the simulated agents (tmpfs keeps their fsyncs out of the measurement).
    #[arg(long, default_value = "/dev/shm")]
    pub spool_root: PathBuf,
}

#[derive(Args, Debug)]
pub struct EnvelopeArgs {
    /// Ended jobs in the state.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: u64,
    /// Rounds measured; the medians are printed.
    #[arg(long, default_value_t = 7)]
    pub rounds: usize,
}

#[derive(Args, Debug)]
pub struct LevelsArgs {
    /// The cluster's API URLs, comma-separated (`https://host:port`).
    #[arg(long)]
    pub service_url: String,
    /// The CA certificate the nodes' certificates are checked against.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// A file holding a token allowed to deploy and read jobs.
    #[arg(long)]
    pub token_file: PathBuf,
    /// The application to deploy, e.g. `Shop[e2e]`.
    #[arg(long)]
    pub application: String,
    #[arg(long)]
    pub environment: String,
    /// Jobs to run, one after another; the table shows each and the median per level.
    #[arg(long, default_value_t = 5)]
    pub jobs: usize,
    /// The log of a `--puppet-bin` wrapper (`<certname> <start> <end> <args...>` per
    /// invocation): subtracts each `puppet agent` process's wall time, not only Puppet's
    /// `time: total`.
    #[arg(long)]
    pub process_log: Option<PathBuf>,
    /// A job not done after this long stops the bench with an error.
    #[arg(long, default_value_t = 600)]
    pub job_timeout_secs: u64,
}

#[derive(Args, Debug)]
pub struct FanoutArgs {
    /// Agent counts to measure, comma-separated.
    #[arg(long, default_value = "1000,10000")]
    pub agents: String,
    #[arg(long, default_value_t = 18200)]
    pub base_port: u16,
    /// Spools of the simulated agents (tmpfs keeps their fsyncs out of the measurement).
    #[arg(long, default_value = "/dev/shm")]
    pub spool_root: PathBuf,
    /// Plain HTTP between agents, nodes and the bench, to measure what TLS costs (by default
    /// everything talks mutual TLS with certificates from a throwaway CA).
    #[arg(long)]
    pub insecure_http: bool,
}

#[derive(Args, Debug)]
pub struct TaskFanoutArgs {
    /// Agent counts to measure, comma-separated.
    #[arg(long, default_value = "10000")]
    pub agents: String,
    /// Rounds of a deploy then a warm task job, after the cold task job (medians reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long, default_value_t = 18600)]
    pub base_port: u16,
    /// Spools and task caches of the simulated agents (tmpfs keeps their fsyncs out of the
    /// measurement).
    #[arg(long, default_value = "/dev/shm")]
    pub spool_root: PathBuf,
    /// Plain HTTP between agents, nodes and the bench (by default mutual TLS).
    #[arg(long)]
    pub insecure_http: bool,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// Client concurrencies to measure, comma-separated.
    #[arg(long, default_value = "1,64,256")]
    pub clients: String,
    /// Seconds of load per concurrency.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Also measure etcd (needs the `etcd` binary, Debian's etcd-server 3.4), with the same
    /// transport as porch.
    #[arg(long)]
    pub etcd: bool,
    #[arg(long, default_value = "etcd")]
    pub etcd_bin: PathBuf,
    /// Leader kills to time (kill -9 → a write accepted through a survivor).
    #[arg(long, default_value_t = 5)]
    pub failovers: usize,
    /// First of the loopback ports used (porch: +0..2, etcd clients +10..12, peers +20..22).
    #[arg(long, default_value_t = 18100)]
    pub base_port: u16,
    /// Working directory for data (default: a fresh temporary directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Extra `porch server` flags, e.g. `--server-arg=--snapshot-every=20000`.
    #[arg(long, allow_hyphen_values = true)]
    pub server_arg: Vec<String>,
    /// Plain HTTP for porch (tokens still checked) and plain http for etcd, to measure what
    /// TLS costs (by default porch serves TLS and etcd mutual TLS, from a throwaway CA).
    #[arg(long)]
    pub insecure_http: bool,
    /// Which node the first client talks to, in both systems alike (the next clients take the
    /// next nodes in turn). With one client this decides whether every write takes a
    /// follower's forwarding hop, so both systems must get the same one.
    #[arg(long, value_enum, default_value_t = FirstNode::Leader)]
    pub first_node: FirstNode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FirstNode {
    Leader,
    Follower,
}

impl FirstNode {
    /// The nodes in the order clients take them, given the leader's index among `nodes`.
    pub fn order(self, leader: usize, nodes: usize) -> Vec<usize> {
        let first = match self {
            FirstNode::Leader => leader,
            FirstNode::Follower => leader + 1,
        };
        (0..nodes).map(|k| (first + k) % nodes).collect()
    }
}

pub async fn run_bench(args: BenchArgs) -> ExitCode {
    let result = match args.what {
        BenchWhat::Submit(args) => crate::bench_submit::submit(args).await,
        BenchWhat::Fanout(args) => crate::fanout_bench::fanout(args).await,
        BenchWhat::TaskFanout(args) => crate::bench_task_fanout::task_fanout(args).await,
        BenchWhat::Levels(args) => crate::bench_levels::levels(args).await,
        BenchWhat::Envelope(args) => crate::bench_envelope::envelope(args.jobs, args.rounds),
        BenchWhat::Schedules(args) => crate::bench_schedules::schedules(args).await,
        BenchWhat::Retention(args) => crate::bench_retention::retention(args).await,
        BenchWhat::LearnerReads(args) => crate::bench_learner::learner_reads(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FirstNode;

    #[test]
    fn the_first_client_gets_the_node_asked_for_and_the_rest_follow_in_turn() {
        assert_eq!(FirstNode::Leader.order(2, 3), vec![2, 0, 1]);
        assert_eq!(FirstNode::Follower.order(2, 3), vec![0, 1, 2]);
        assert_eq!(FirstNode::Follower.order(0, 3), vec![1, 2, 0]);
    }
}
