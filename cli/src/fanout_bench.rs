//! `porch bench fanout`: one job over N simulated agents (one agent process hosting N
//! sessions, instant runs) on a local 3-node cluster. Reports node runs per second from the
//! first dispatch committed to the last result committed, time to first and last dispatch,
//! the resident memory the session-holding node gains per connected agent, and — with the
//! leader killed mid-job — the time until the next dispatch is committed.
//!
//! Everything talks mutual TLS with certificates from a throwaway CA ([`BenchPki`]):
//! nodes with each other, agents with nodes, the bench with the API (as the first admin);
//! `--insecure-http` measures the same over plain HTTP, to show what TLS costs.

use crate::bench_cluster::{BenchPki, NODES, PorchCluster, rss_mb, tempfile_dir, wait_ready};
use crate::bench_cmd::FanoutArgs;
use serde_json::{Value, json};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::process::Command;

/// The simulated agents' certnames are this prefix and 1..N (`porch agent --sessions`).
const AGENT_PREFIX: &str = "fan";

fn ms(timestamp: &Value) -> Option<u64> {
    let text = timestamp.as_str()?;
    let time = humantime::parse_rfc3339(text).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn all_events(http: &reqwest::Client, url: &str, job: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut start = 0u64;
    loop {
        let page: Value = match http
            .get(format!(
                "{url}/orchestrator/v1/jobs/{job}/events?start={start}"
            ))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => break,
        };
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        start = items
            .last()
            .and_then(|e| e["id"].as_str())
            .and_then(|s| s.parse::<u64>().ok())
            .map(|i| i + 1)
            .unwrap_or(start + 1);
        events.extend(items);
    }
    events
}

async fn wait_job(
    http: &reqwest::Client,
    urls: &[String],
    job: &str,
    timeout: Duration,
) -> Result<Value, String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for url in urls {
            if let Ok(r) = http
                .get(format!("{url}/orchestrator/v1/jobs/{job}"))
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
            {
                if matches!(v["state"].as_str(), Some("finished" | "stopped" | "failed")) {
                    return Ok(v);
                }
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("job {job} did not finish within {timeout:?}"))
}

/// Submits `body` to `POST /command/<command>` through the first node that answers with a
/// job, and returns the job's id.
async fn submit(
    http: &reqwest::Client,
    urls: &[String],
    command: &str,
    body: &Value,
) -> Result<String, String> {
    let mut last = String::from("no node answered");
    for url in urls {
        match http
            .post(format!("{url}/orchestrator/v1/command/{command}"))
            .json(body)
            .send()
            .await
        {
            Ok(r) => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if let Some(name) = v["job"]["name"].as_str() {
                    return Ok(name.to_string());
                }
                last = format!("{url}: {v}");
            }
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(format!("could not submit the {command} job ({last})"))
}

/// A deploy body over `nodes`.
fn deploy_body(nodes: &[String], concurrency: Option<u32>) -> Value {
    let mut body = json!({"environment": "production", "scope": {"nodes": nodes}});
    if let Some(c) = concurrency {
        body["concurrency"] = json!(c);
    }
    body
}

/// Resident memory (MB) around the agents' connection: the session-holding node 1 and node 2
/// (no sessions) before and after, and the agent process.
pub struct RigMemory {
    pub node_before: f64,
    pub node_after: f64,
    pub follower_before: f64,
    pub follower_after: f64,
    pub agents: f64,
}

/// A local 3-node cluster with N simulated agents (one `porch agent --sessions N` process,
/// `simulate` runner, instant runs) connected: what every fan-out bench measures on.
pub struct FanoutRig<'a> {
    pub cluster: PorchCluster<'a>,
    pub urls: Vec<String>,
    pub http: reqwest::Client,
    /// The agents' certnames.
    pub nodes: Vec<String>,
    pub memory: RigMemory,
    agents: tokio::process::Child,
    spool: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl<'a> FanoutRig<'a> {
    /// Starts the cluster (with `node_args` added to each `porch server`) on ports
    /// `base_port`.., then the agents, and waits until all `n` are in the inventory.
    pub async fn start(
        pki: Option<&'a BenchPki>,
        n: usize,
        base_port: u16,
        spool_root: &std::path::Path,
        node_args: Vec<String>,
        name: &str,
    ) -> Result<FanoutRig<'a>, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = tempfile_dir()?.join(format!("{name}-{n}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut args = vec![
            "--runs-in-flight-max".into(),
            n.max(1).to_string(),
            "--agent-timeout-secs".into(),
            "600".into(),
        ];
        args.extend(node_args);
        let mut cluster = PorchCluster::new(&dir, base_port, args, pki)?;
        cluster.spawn_all()?;
        let urls = cluster.urls();
        let http = cluster.admin_client(Duration::from_secs(60)).await?;
        for url in &urls {
            if !wait_ready(&http, url, "/orchestrator/v1/jobs", Duration::from_secs(30)).await {
                return Err(format!("porch at {url} did not become ready"));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let node_before = rss_mb(cluster.pid(0));
        let follower_before = rss_mb(cluster.pid(1));
        let spool = spool_root.join(format!("porch-{name}-{}-{n}", std::process::id()));
        let transport: Vec<String> = match pki {
            Some(pki) => vec!["--ssldir".into(), pki.agent_ssldir().display().to_string()],
            None => vec!["--insecure-http".into()],
        };
        let agents = Command::new(&exe)
            .arg("agent")
            .args(&transport)
            .args([
                "--certname",
                AGENT_PREFIX,
                "--sessions",
                &n.to_string(),
                "--runner",
                "simulate",
            ])
            .args([
                "--simulate-duration-ms",
                "0..0",
                "--simulate-failure-rate",
                "0",
            ])
            .arg("--spool-dir")
            .arg(&spool)
            .args(["--service-url", &urls.join(",")])
            .env("PORCH_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("agents.log")).map_err(|e| e.to_string())?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the agents: {e}"))?;
        let connect_deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let connected = match http
                .get(format!("{}/orchestrator/v1/inventory", urls[0]))
                .send()
                .await
            {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["items"].as_array().map(|a| a.len()))
                    .unwrap_or(0),
                Err(_) => 0,
            };
            if connected >= n {
                break;
            }
            if Instant::now() > connect_deadline {
                return Err(format!("only {connected} of {n} agents connected"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let memory = RigMemory {
            node_before,
            node_after: rss_mb(cluster.pid(0)),
            follower_before,
            follower_after: rss_mb(cluster.pid(1)),
            agents: rss_mb(agents.id()),
        };
        Ok(FanoutRig {
            cluster,
            urls,
            http,
            nodes: (1..=n).map(|i| format!("{AGENT_PREFIX}{i}")).collect(),
            memory,
            agents,
            spool,
            dir,
        })
    }

    /// Stops the agents and the cluster and removes their files (logs stay behind only when
    /// a round fails).
    pub async fn stop(mut self) {
        let _ = self.agents.start_kill();
        let _ = self.agents.wait().await;
        self.cluster.kill_all().await;
        let _ = std::fs::remove_dir_all(&self.spool);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One job over the rig's agents, timed from its leader-stamped events (ms after the job's
/// creation).
pub struct JobTiming {
    pub job: String,
    pub state: String,
    /// Nodes that finished.
    pub finished: usize,
    /// Finished nodes per second from the first dispatch committed to the last result.
    pub runs_per_s: f64,
    pub first_dispatch_ms: u64,
    pub last_dispatch_ms: u64,
    pub last_result_ms: u64,
}

/// Submits `body` as a `command` job (`deploy`, `task`), waits for it to end, and times it.
pub async fn timed_job(
    http: &reqwest::Client,
    urls: &[String],
    command: &str,
    body: &Value,
) -> Result<JobTiming, String> {
    let job = submit(http, urls, command, body).await?;
    let done = wait_job(http, urls, &job, Duration::from_secs(900)).await?;
    let events = all_events(http, &urls[0], &job).await;
    let times = |kind: &str| -> Vec<u64> {
        events
            .iter()
            .filter(|e| e["type"] == kind)
            .filter_map(|e| ms(&e["timestamp"]))
            .collect()
    };
    let running = times("node_running");
    let finished = times("node_finished");
    let created = ms(&done["status"][0]["enter_time"]).unwrap_or(0);
    let first_dispatch = running.iter().min().copied().unwrap_or(0);
    let last_dispatch = running.iter().max().copied().unwrap_or(0);
    let last_result = finished.iter().max().copied().unwrap_or(0);
    let span_s = (last_result.saturating_sub(first_dispatch)).max(1) as f64 / 1000.0;
    Ok(JobTiming {
        job,
        state: done["state"].as_str().unwrap_or("?").to_string(),
        finished: finished.len(),
        runs_per_s: finished.len() as f64 / span_s,
        first_dispatch_ms: first_dispatch.saturating_sub(created),
        last_dispatch_ms: last_dispatch.saturating_sub(created),
        last_result_ms: last_result.saturating_sub(created),
    })
}

/// Parses `--agents 1000,10000`.
pub fn agent_counts(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|c| {
            c.trim()
                .parse::<usize>()
                .map_err(|_| format!("--agents: '{c}' is not a number"))
        })
        .collect()
}

/// The throwaway CA with certificates for the nodes and `agents` agents, unless
/// `insecure_http`.
pub fn bench_pki(
    insecure_http: bool,
    agents: usize,
    name: &str,
) -> Result<Option<BenchPki>, String> {
    if insecure_http {
        return Ok(None);
    }
    let started = Instant::now();
    let mut pki = BenchPki::create(&tempfile_dir()?.join(format!("{name}-pki")))?;
    pki.issue_agents(AGENT_PREFIX, agents)?;
    eprintln!(
        "  (issued certificates for {NODES} nodes and {agents} agents in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(Some(pki))
}

pub async fn fanout(args: FanoutArgs) -> Result<(), String> {
    let counts = agent_counts(&args.agents)?;
    let most = counts.iter().copied().max().unwrap_or(0);
    let pki = bench_pki(args.insecure_http, most, "fanout")?;
    println!(
        "Transport: {}",
        if pki.is_some() {
            "mutual TLS (agents, nodes and API)"
        } else {
            "plain HTTP (--insecure-http)"
        }
    );
    println!();
    println!(
        "| agents | node runs/s | first dispatch ms | last dispatch ms | last result ms | RSS per agent KB | agent process RSS per session KB | leader kill → new leader ms | leader kill → next dispatch ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (round, &n) in counts.iter().enumerate() {
        let base = args.base_port + (round as u16) * 10;
        let mut rig = FanoutRig::start(
            pki.as_ref(),
            n,
            base,
            &args.spool_root,
            Vec::new(),
            "fanout",
        )
        .await?;
        let (http, urls) = (rig.http.clone(), rig.urls.clone());
        let timing = timed_job(&http, &urls, "deploy", &deploy_body(&rig.nodes, None)).await?;
        // Failover: a second job of the same nodes, 10 at a time; kill the leader mid-job.
        let (elected_ms, failover_ms) = {
            let job = submit(&http, &urls, "deploy", &deploy_body(&rig.nodes, Some(10))).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            match rig.cluster.leader(&http).await {
                Some(leader) => {
                    rig.cluster.kill(leader).await;
                    let killed = now_ms();
                    let survivors: Vec<String> = urls
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != leader)
                        .map(|(_, u)| u.clone())
                        .collect();
                    // The gap splits into the election and what the new leader then takes.
                    let elected = new_leader_known(&http, &survivors, leader as u64 + 1).await;
                    let elected_ms = elected.map(|t| t.saturating_sub(killed).to_string());
                    let _ = wait_job(&http, &survivors, &job, Duration::from_secs(900)).await;
                    let events = all_events(&http, &survivors[0], &job).await;
                    let next_dispatch = events
                        .iter()
                        .filter(|e| e["type"] == "node_running")
                        .filter_map(|e| ms(&e["timestamp"]))
                        .filter(|&t| t > killed)
                        .min()
                        .map(|t| (t - killed).to_string())
                        .unwrap_or_else(|| "n/a".into());
                    (elected_ms.unwrap_or_else(|| "n/a".into()), next_dispatch)
                }
                None => ("n/a".into(), "n/a".into()),
            }
        };
        let memory = &rig.memory;
        println!(
            "| {n} | {:.0} | {} | {} | {} | {:.1} | {:.1} | {elected_ms} | {failover_ms} |",
            timing.runs_per_s,
            timing.first_dispatch_ms,
            timing.last_dispatch_ms,
            timing.last_result_ms,
            (memory.node_after - memory.node_before) * 1024.0 / n as f64,
            memory.agents * 1024.0 / n as f64,
        );
        eprintln!(
            "  ({n} agents: job {} {}, {} finished; node 1 RSS {:.0} MB → {:.0} MB with agents connected; node 2, holding no session, {:.0} MB → {:.0} MB)",
            timing.job,
            timing.state,
            timing.finished,
            memory.node_before,
            memory.node_after,
            memory.follower_before,
            memory.follower_after,
        );
        rig.stop().await;
    }
    let _ = std::fs::remove_dir_all(tempfile_dir()?);
    Ok(())
}

/// When (ms since the epoch) a survivor first reports a leader other than `killed`, polling
/// every 10 ms for up to 30 s.
async fn new_leader_known(
    http: &reqwest::Client,
    survivors: &[String],
    killed: u64,
) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for url in survivors {
            let status = http
                .get(format!("{url}/orchestrator/v1/status"))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if let Ok(r) = status
                && let Ok(v) = r.json::<Value>().await
                && v["leader"].as_u64().is_some_and(|l| l != killed)
            {
                return Some(now_ms());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
