//! One chaos run from flags to verdict.

use clap::Args;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use super::checker::{self, Violation};
use super::delay_proxy::DelayProxy;
use super::fault_driver::{Cluster, Timeline, drive_faults};
use super::history::{self, History};
use super::network::{self, Lab};
use super::processes::Process;
use super::schedule::{self, FaultKind};
use super::{leftovers, observe, workload};
use crate::server_cmd::{EXAMPLE_NODES, default_codedir, dev_admin_token, dev_certname, local_pki};

#[derive(Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Seed of the fault schedule and the workload (default: drawn, and printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Length of the fault phase; healing and convergence follow.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=86_400))]
    pub seconds: u64,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=7))]
    pub nodes: u64,
    /// Fault kinds to draw from (comma-separated) [default: all; without network faults
    /// under --no-network].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub faults: Vec<FaultKind>,
    /// No namespaces and iptables (no root needed): nodes on loopback, only pause, kill and
    /// kill-all faults.
    #[arg(long)]
    pub no_network: bool,
    /// How long the cluster may take to converge after healing.
    #[arg(long, default_value_t = 60)]
    pub converge_secs: u64,
    /// Where the run keeps its data, logs, `history.json` and `runs.log` [default: a new
    /// directory under $TMPDIR, deleted after a passing run].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the run's directory after a passing run.
    #[arg(long)]
    pub keep: bool,
    /// Puppet code holding the shipped example environment (its applications are the
    /// workload's) [default: the shipped examples].
    #[arg(long)]
    pub codedir: Option<PathBuf>,
    /// One more flag for every `porch server`, verbatim; repeat it for several
    /// (`--server-flag=--heartbeat-ms=320`): rehearse your own raft timings.
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    pub server_flag: Vec<String>,
    /// Judge a recorded run again (`DIR/history.json`, `DIR/runs.log`); starts nothing.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["seed", "cleanup", "dir"])]
    pub check: Option<PathBuf>,
    /// Remove what earlier runs that died left behind (processes, namespaces); starts nothing.
    #[arg(long)]
    pub cleanup: bool,
}

/// Exit statuses of `porch chaos`.
const EXIT_VIOLATION: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

/// The port every node listens on inside its own namespace.
const NODE_PORT: u16 = 8143;

pub async fn run_chaos(args: ChaosArgs) -> ExitCode {
    if args.cleanup {
        return match leftovers::cleanup() {
            Ok(done) if done.is_empty() => {
                println!("nothing to clean up");
                ExitCode::SUCCESS
            }
            Ok(done) => {
                done.iter().for_each(|line| println!("{line}"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cleanup: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(dir) = &args.check {
        return match history::load(dir) {
            Ok((history, runs)) => verdict(&history, &runs, &history.replay),
            Err(e) => {
                eprintln!("error: --check: {e}");
                ExitCode::from(EXIT_USAGE)
            }
        };
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 % 1_000_000)
            .unwrap_or(1)
    });
    tokio::select! {
        outcome = chaos(&args, seed) => match outcome {
            Ok(code) => code,
            Err(RunError::Usage(e)) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_USAGE)
            }
            Err(RunError::Failed(e)) => {
                eprintln!("error: {e}");
                eprintln!("replay: {}", replay_command(&args, seed));
                ExitCode::from(EXIT_USAGE)
            }
        },
        // Dropping the run's future drops its guards: every rule and namespace is removed,
        // paused processes continued and all children killed before this returns.
        _ = porch_node::server::shutdown_signal() => {
            eprintln!("porch chaos: interrupted; healed and cleaned up");
            ExitCode::from(EXIT_INTERRUPTED)
        }
    }
}

enum RunError {
    /// The run could not start here (flags, machine); nothing was judged.
    Usage(String),
    /// The run broke down (a fault could not be applied, the cluster never came up).
    Failed(String),
}

fn failed(e: String) -> RunError {
    RunError::Failed(e)
}

fn replay_command(args: &ChaosArgs, seed: u64) -> String {
    let mut command = format!(
        "porch chaos --seed {seed} --seconds {} --nodes {}",
        args.seconds, args.nodes
    );
    if !args.faults.is_empty() {
        let kinds: Vec<String> = args.faults.iter().map(|k| k.name()).collect();
        command += &format!(" --faults {}", kinds.join(","));
    }
    if args.no_network {
        command += " --no-network";
    }
    for flag in &args.server_flag {
        command += &format!(" --server-flag={flag}");
    }
    command
}

/// Prints the violations and the verdict; the exit status follows it.
fn verdict(history: &History, runs: &[history::RunLine], replay: &str) -> ExitCode {
    let violations: Vec<Violation> = checker::check(history, runs);
    let acknowledged = history
        .submissions
        .iter()
        .filter(|s| s.acknowledged_job.is_some())
        .count();
    let starts = runs
        .iter()
        .filter(|r| r.edge == history::RunEdge::Start)
        .count();
    println!(
        "checked: {} submissions, {acknowledged} acknowledged, {} jobs in the cluster, {starts} runs",
        history.submissions.len(),
        history.cluster_jobs.len()
    );
    if violations.is_empty() {
        println!(
            "verdict: PASS (no acknowledged job lost, each run once, producers before consumers, converged)"
        );
        return ExitCode::SUCCESS;
    }
    for violation in &violations {
        println!("violation: {violation}");
    }
    println!("verdict: FAIL ({} violations)", violations.len());
    println!("replay: {replay}");
    ExitCode::from(EXIT_VIOLATION)
}

fn fault_kinds(args: &ChaosArgs) -> Result<Vec<FaultKind>, RunError> {
    if args.faults.is_empty() {
        return Ok(FaultKind::ALL
            .into_iter()
            .filter(|k| !args.no_network || !k.needs_network())
            .collect());
    }
    if args.no_network
        && let Some(kind) = args.faults.iter().find(|k| k.needs_network())
    {
        return Err(RunError::Usage(format!(
            "--faults {}: needs the network (drop --no-network)",
            kind.name()
        )));
    }
    let mut kinds = args.faults.clone();
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

async fn chaos(args: &ChaosArgs, seed: u64) -> Result<ExitCode, RunError> {
    let nodes = args.nodes as usize;
    let kinds = fault_kinds(args)?;
    if !args.no_network
        && let Some(reason) = network::unsupported_reason()
    {
        return Err(RunError::Usage(format!(
            "{reason}; --no-network runs the pause and kill faults only, without root"
        )));
    }
    let exe = std::env::current_exe()
        .map_err(|e| RunError::Usage(format!("cannot find the porch executable: {e}")))?;
    let codedir = args.codedir.clone().unwrap_or_else(default_codedir);
    if !codedir.join("environments").join("production").is_dir() {
        return Err(RunError::Usage(format!(
            "{}: no environments/production (the application jobs need the example code; pass --codedir)",
            codedir.display()
        )));
    }
    let (dir, own_dir) = match &args.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("porch-chaos-{}", std::process::id())),
            true,
        ),
    };
    if dir.join("history.json").exists() {
        return Err(RunError::Usage(format!(
            "{}: holds an earlier run; choose another --dir",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| RunError::Usage(format!("{}: {e}", dir.display())))?;
    let dir = std::fs::canonicalize(&dir)
        .map_err(|e| RunError::Usage(format!("{}: {e}", dir.display())))?;
    // Guards, dropped in reverse: processes, proxies, namespaces, then the registration.
    let (tag, _registration) = leftovers::claim_tag(&dir).map_err(RunError::Usage)?;
    let lab = if args.no_network {
        None
    } else {
        Some(Lab::create(tag, nodes).map_err(failed)?)
    };
    let addresses: Vec<SocketAddr> = (1..=nodes)
        .map(|id| match &lab {
            Some(lab) => Ok(SocketAddr::new(IpAddr::V4(lab.node_ip(id)), NODE_PORT)),
            None => free_port().map(|port| SocketAddr::from(([127, 0, 0, 1], port))),
        })
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    let node_hosts: Vec<String> = addresses.iter().map(|a| a.ip().to_string()).collect();
    let pki = local_pki(&dir, nodes, &node_hosts, &EXAMPLE_NODES).map_err(failed)?;
    let mut cluster = Cluster {
        lab,
        proxies: BTreeMap::new(),
        nodes: Vec::new(),
        agents: Vec::new(),
        unexpected_exits: Vec::new(),
    };
    if let Some(lab) = &cluster.lab {
        for from in 1..=nodes {
            for to in (1..=nodes).filter(|&to| to != from) {
                let proxy = DelayProxy::start(
                    IpAddr::V4(lab.client_ip()),
                    IpAddr::V4(lab.proxy_source_ip(from)),
                    addresses[to - 1],
                )
                .await
                .map_err(failed)?;
                lab.route_through_proxy(from, to, NODE_PORT, proxy.listen_addr())
                    .map_err(failed)?;
                cluster.proxies.insert((from, to), proxy);
            }
        }
    }
    let initial_cluster = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={}@{a}", i + 1, dev_certname(i + 1)))
        .collect::<Vec<_>>()
        .join(",");
    for id in 1..=nodes {
        let server_args: Vec<OsString> = [
            "server".into(),
            "--id".into(),
            id.to_string().into(),
            "--data-dir".into(),
            dir.join(format!("node{id}")).into_os_string(),
            "--listen".into(),
            addresses[id - 1].to_string().into(),
            "--initial-cluster".into(),
            initial_cluster.clone().into(),
            "--ssldir".into(),
            pki.ssldir.clone().into_os_string(),
            "--certname".into(),
            dev_certname(id).into(),
            "--codedir".into(),
            codedir.clone().into_os_string(),
        ]
        .into_iter()
        .chain(args.server_flag.iter().map(OsString::from))
        .collect();
        let netns = cluster.lab.as_ref().map(|lab| lab.namespace(id));
        let mut node = Process::new(
            format!("node {id}"),
            exe.clone(),
            server_args,
            netns,
            dir.join(format!("node{id}.log")),
        );
        node.spawn().map_err(failed)?;
        cluster.nodes.push(node);
    }
    let urls: Vec<String> = addresses.iter().map(|a| format!("https://{a}")).collect();
    let token = dev_admin_token(&dir, &urls[0], &pki.cacert, Duration::from_secs(60))
        .await
        .map_err(|e| {
            failed(format!(
                "the cluster did not come up (admin login: {e}); logs in {}",
                dir.display()
            ))
        })?;
    let runs_log = dir.join("runs.log");
    let script = dir.join("run.sh");
    write_executable(&script, &history::run_logger_script(&runs_log)).map_err(failed)?;
    for name in EXAMPLE_NODES {
        let agent_args: Vec<OsString> = vec![
            "agent".into(),
            "--certname".into(),
            name.into(),
            "--service-url".into(),
            urls.join(",").into(),
            "--ssldir".into(),
            pki.ssldir.clone().into_os_string(),
            "--spool-dir".into(),
            dir.join("agents").join(name).into_os_string(),
            "--runner".into(),
            "command".into(),
            "--command".into(),
            script.clone().into_os_string(),
        ];
        let mut agent = Process::new(
            format!("agent {name}"),
            exe.clone(),
            agent_args,
            None,
            dir.join(format!("agent-{name}.log")),
        );
        agent.spawn().map_err(failed)?;
        cluster.agents.push(agent);
    }
    let api = Arc::new(workload::Api::new(&pki.cacert, &token, urls).map_err(failed)?);
    wait_agents_connected(&api, Duration::from_secs(60))
        .await
        .map_err(failed)?;
    let targets = workload::targets(&api, &EXAMPLE_NODES)
        .await
        .map_err(failed)?;

    let faults = schedule::schedule(
        seed,
        args.seconds * 1000,
        nodes,
        cluster.agents.len(),
        &kinds,
    );
    let kind_names: Vec<String> = kinds.iter().map(|k| k.name()).collect();
    println!(
        "porch chaos: seed {seed}, {nodes} nodes{}, {} agents, {} s of faults ({}), data in {}",
        match &cluster.lab {
            Some(lab) => format!(
                " in network namespaces {}*",
                network::namespace_name(lab.tag(), "")
            ),
            None => " on loopback".to_string(),
        },
        cluster.agents.len(),
        args.seconds,
        kind_names.join(", "),
        dir.display()
    );
    let mut timeline = Timeline {
        start: Instant::now(),
        lines: Vec::new(),
    };
    let phase = Duration::from_secs(args.seconds);
    let give_up_at = timeline.start + phase + Duration::from_secs(args.converge_secs);
    let (submissions, driven) = tokio::join!(
        workload::run(api.clone(), seed, phase, give_up_at, targets),
        async {
            let result = drive_faults(&mut cluster, &faults, &mut timeline).await;
            tokio::time::sleep_until(timeline.start + phase).await;
            result
        }
    );
    driven.map_err(failed)?;
    cluster.restart_exited(&mut timeline).map_err(failed)?;
    timeline.note(&format!(
        "faults over; {} of {} submissions acknowledged; waiting up to {} s for convergence",
        submissions
            .iter()
            .filter(|s| s.acknowledged_job.is_some())
            .count(),
        submissions.len(),
        args.converge_secs
    ));
    let not_converged =
        observe::wait_converged(&api, Duration::from_secs(args.converge_secs)).await;
    timeline.note(match &not_converged {
        None => "converged",
        Some(_) => "did not converge",
    });
    let cluster_jobs = observe::cluster_jobs(&api).await.map_err(failed)?;
    let missing = observe::missing_on_nodes(&api, &submissions).await;
    cluster.restart_exited(&mut timeline).map_err(failed)?;
    let history = History {
        seed,
        replay: replay_command(args, seed),
        submissions,
        cluster_jobs,
        missing,
        not_converged,
        unexpected_exits: cluster.unexpected_exits.clone(),
    };
    history::save(&history, &dir).map_err(failed)?;
    let _ = std::fs::write(dir.join("timeline.txt"), timeline.lines.join("\n") + "\n");
    // Nothing appends to runs.log while it is read back.
    for process in cluster.agents.iter_mut().chain(&mut cluster.nodes) {
        process.kill9().await;
    }
    let (history, runs) = history::load(&dir).map_err(failed)?;
    let code = verdict(&history, &runs, &replay_command(args, seed));
    if code == ExitCode::SUCCESS && own_dir && !args.keep {
        drop(cluster);
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!(
            "kept: {} (history.json, runs.log, timeline.txt, node and agent logs)",
            dir.display()
        );
    }
    Ok(code)
}

async fn wait_agents_connected(api: &workload::Api, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let inventory = api
            .get_any("/orchestrator/v1/inventory")
            .await
            .unwrap_or_default();
        let connected = inventory["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["connected"].as_bool() == Some(true))
            .count();
        if connected >= EXAMPLE_NODES.len() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "only {connected} of {} agents connected within {within:?}",
                EXAMPLE_NODES.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn write_executable(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A free loopback port (bound, then released).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}
