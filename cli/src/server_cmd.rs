//! `porch server` and `porch dev`: the orchestrator node and a local three-node cluster.

use clap::Args;
use porch_node::config::{NodeConfig, RaftTimings, parse_initial_cluster, validate_addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long)]
    pub id: u64,
    /// Directory for this node's raft log, snapshots and identity (sled).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address to listen on: raft RPC, agent sessions and the HTTP API share it.
    #[arg(long)]
    pub listen: String,
    /// Address other nodes and clients use to reach this one (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// The founding members, `1=host:port,2=host:port,3=host:port`. Used on first start only;
    /// the lowest id initialises the cluster. A node not listed waits to be added.
    #[arg(long)]
    pub initial_cluster: String,
    /// Raft heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Minimum election timeout; the maximum is twice this.
    #[arg(long, default_value_t = 500)]
    pub election_timeout_ms: u64,
    /// Take a snapshot (and allow purging the log) every this many applied entries. Each
    /// snapshot encodes the whole state on every node at about the same time, so a short
    /// cadence costs throughput and tail latency under load (etcd 3.4 also defaults to 100,000).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_every: u64,
    /// Log entries kept behind the latest snapshot for slow followers.
    #[arg(long, default_value_t = 1000)]
    pub logs_kept: u64,
    /// Runs in flight over all jobs, cluster-wide.
    #[arg(long, default_value_t = 250)]
    pub runs_in_flight_max: usize,
    /// Seconds an agent may stay disconnected before its run is errored (unreachable).
    #[arg(long, default_value_t = 30)]
    pub agent_timeout_secs: u64,
    /// Puppet code directory (environments/<env>/manifests, modules).
    #[arg(long, default_value = "/etc/puppetlabs/code")]
    pub codedir: PathBuf,
}

impl ServerArgs {
    pub fn to_config(&self) -> Result<NodeConfig, String> {
        if self.id == 0 {
            return Err("--id: node ids start at 1".into());
        }
        validate_addr(&self.listen).map_err(|e| format!("--listen: {e}"))?;
        let initial_cluster = parse_initial_cluster(&self.initial_cluster)
            .map_err(|e| format!("--initial-cluster: {e}"))?;
        let advertise = match &self.advertise {
            Some(a) => {
                validate_addr(a).map_err(|e| format!("--advertise: {e}"))?;
                a.clone()
            }
            None => initial_cluster
                .get(&self.id)
                .cloned()
                .unwrap_or_else(|| self.listen.clone()),
        };
        if self.heartbeat_ms == 0 || self.election_timeout_ms <= self.heartbeat_ms {
            return Err(format!(
                "--election-timeout-ms ({}) must be greater than --heartbeat-ms ({}), which must be positive",
                self.election_timeout_ms, self.heartbeat_ms
            ));
        }
        if self.snapshot_every == 0 {
            return Err("--snapshot-every must be positive".into());
        }
        if self.runs_in_flight_max == 0 {
            return Err("--runs-in-flight-max must be positive".into());
        }
        let mut config = NodeConfig::new(
            self.id,
            self.data_dir.clone(),
            self.listen.clone(),
            initial_cluster,
        );
        config.advertise = advertise;
        config.raft = RaftTimings {
            heartbeat_interval_ms: self.heartbeat_ms,
            election_timeout_min_ms: self.election_timeout_ms,
            election_timeout_max_ms: self.election_timeout_ms * 2,
            snapshot_every_logs: self.snapshot_every,
            logs_kept_after_snapshot: self.logs_kept,
        };
        config.runs_in_flight_max = self.runs_in_flight_max;
        config.agent_unreachable_timeout = Duration::from_secs(self.agent_timeout_secs);
        config.codedir = self.codedir.clone();
        Ok(config)
    }
}

pub async fn run_server(args: ServerArgs) -> ExitCode {
    let config = match args.to_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match porch_node::server::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Where the three nodes keep their data.
    #[arg(long, default_value = ".porch-dev")]
    pub data_dir: PathBuf,
    /// First port; nodes listen on this and the next two.
    #[arg(long, default_value_t = 8143)]
    pub base_port: u16,
    /// Puppet code directory for application targets (default: the shipped examples).
    #[arg(long)]
    pub codedir: Option<PathBuf>,
    /// Also start simulated agents (seeded run times, 10 % failures) for the example nodes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub agents: bool,
}

/// The nodes of the shipped example environment.
const EXAMPLE_NODES: [&str; 9] = [
    "db1.example.com",
    "app1.example.com",
    "lb1.example.com",
    "dev1.example.com",
    "cache1.example.com",
    "web1.example.com",
    "web2.example.com",
    "mon1.example.com",
    "blog1.example.com",
];

/// Starts three `porch server` processes on loopback and waits for Ctrl+C.
pub async fn run_dev(args: DevArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find the porch executable: {e}");
            return ExitCode::from(1);
        }
    };
    let ports: Vec<u16> = (0..3).map(|i| args.base_port.saturating_add(i)).collect();
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let codedir = args.codedir.clone().unwrap_or_else(default_codedir);
    let mut children = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let id = i + 1;
        let data_dir = args.data_dir.join(format!("node{id}"));
        let child = tokio::process::Command::new(&exe)
            .arg("server")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--initial-cluster", &cluster])
            .arg("--codedir")
            .arg(&codedir)
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(child) => children.push(child),
            Err(e) => {
                eprintln!("error: cannot start node {id}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let urls = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    if args.agents {
        for (i, node) in EXAMPLE_NODES.iter().enumerate() {
            let child = tokio::process::Command::new(&exe)
                .arg("agent")
                .args([
                    "--certname",
                    node,
                    "--service-url",
                    &urls,
                    "--runner",
                    "simulate",
                ])
                .args([
                    "--simulate-seed",
                    &(i + 1).to_string(),
                    "--simulate-duration-ms",
                    "500..3000",
                ])
                .args(["--simulate-failure-rate", "0.05"])
                .arg("--spool-dir")
                .arg(args.data_dir.join("agents").join(node))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn();
            match child {
                Ok(child) => children.push(child),
                Err(e) => eprintln!("warning: cannot start the agent of {node}: {e}"),
            }
        }
    }
    println!("porch dev cluster: 3 nodes on {urls}");
    if args.agents {
        println!(
            "  agents:   {} simulated ({})",
            EXAMPLE_NODES.len(),
            EXAMPLE_NODES.join(", ")
        );
    }
    println!("  data:     {}", args.data_dir.display());
    println!("  code:     {}", codedir.display());
    println!("  try:      puppet-job run --application 'Lamp[prod]'");
    println!(
        "            puppet-job run --nodes web1.example.com,web2.example.com --concurrency 1"
    );
    println!("            puppet-app show Lamp");
    println!("            puppet-job plan --application Webstack");
    println!("            puppet-job show");
    println!("            porch cluster status");
    println!("  (clients default to http://127.0.0.1:8143; add --service-url {urls} to fail over)");
    println!("Ctrl+C stops the cluster (data is kept).");
    porch_node::server::shutdown_signal().await;
    for child in &mut children {
        let _ = child.start_kill();
    }
    for child in &mut children {
        let _ = child.wait().await;
    }
    ExitCode::SUCCESS
}

/// The shipped example code next to the workspace, if it is there.
fn default_codedir() -> PathBuf {
    let candidates = [
        PathBuf::from("lang/examples/code"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lang/examples/code"),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/etc/puppetlabs/code"))
}
