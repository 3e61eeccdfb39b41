//! `porch bench learner-reads`: API read latency at a learner in a remote datacenter versus
//! at a voter, with the link between the datacenters simulated by delay proxies on loopback
//! (`--one-way-ms` each way).
//!
//! Layout: three voters in the main datacenter, a learner (node 4) in the remote one. Every
//! connection between the learner and a voter crosses the link: the voters' member addresses
//! are proxies that delay only connections the learner's process opens, and the learner's
//! member address is a proxy that delays everything (only voters dial it). Three readers, each
//! `GET /orchestrator/v1/jobs/1` one after another (a linearizable read: a ReadIndex round to
//! the leader, then the serving node waits until it has applied that far):
//! - a client in the main datacenter reading at a follower (the baseline);
//! - a client in the remote datacenter reading at the learner (its ReadIndex crosses the
//!   link once; replication to it crosses once more when writes are going on);
//! - a client in the remote datacenter reading at the same follower across the link.
//!
//! Each is measured idle and with one writer submitting jobs through the leader.

use crate::bench_cluster::delay_proxy::{self, Crossing};
use crate::bench_cluster::{BenchPki, NODES, PorchCluster, tempfile_dir, wait_ready};
use crate::bench_cmd::LearnerReadsArgs;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::process::Command;

const LEARNER_ID: u64 = 4;
const LEARNER_CERTNAME: &str = "porch4";

/// The port plan: voters listen on `base..base+3`, their proxies are `base+10..`; the learner
/// listens on `base+3`, its proxy is `base+13`; the remote client's proxy to a follower is
/// `base+20`.
struct Ports {
    base: u16,
}

impl Ports {
    fn voter(&self, index: usize) -> u16 {
        self.base + index as u16
    }
    fn voter_proxy(&self, index: usize) -> u16 {
        self.base + 10 + index as u16
    }
    fn learner(&self) -> u16 {
        self.base + NODES as u16
    }
    fn learner_proxy(&self) -> u16 {
        self.base + 10 + NODES as u16
    }
    fn remote_client_proxy(&self) -> u16 {
        self.base + 20
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `reads` sequential reads of job 1 at `url`: latencies in ms, sorted, and failures.
async fn read_latencies(http: &reqwest::Client, url: &str, reads: usize) -> (Vec<f64>, usize) {
    let mut latencies = Vec::with_capacity(reads);
    let mut failures = 0;
    for _ in 0..reads {
        let started = Instant::now();
        match http
            .get(format!("{url}/orchestrator/v1/jobs/1"))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes().await;
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            _ => failures += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, failures)
}

/// One job submitted through `url`; whether it was accepted.
async fn submit_one(http: reqwest::Client, url: String) -> bool {
    http.post(format!("{url}/orchestrator/v1/command/deploy"))
        .json(&json!({"environment": "production", "scope": {"nodes": ["bench-read"]}}))
        .send()
        .await
        .map(|r| r.status().as_u16() == 202)
        .unwrap_or(false)
}

pub async fn learner_reads(args: LearnerReadsArgs) -> Result<(), String> {
    let ports = Ports {
        base: args.base_port,
    };
    let one_way = Duration::from_millis(args.one_way_ms);
    let dir = tempfile_dir()?.join("learner-reads");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let pki = BenchPki::create(&dir.join("pki"))?;
    pki.issue_host(LEARNER_CERTNAME)?;
    let timings: Vec<String> = [
        "--heartbeat-ms",
        &args.heartbeat_ms.to_string(),
        "--election-timeout-ms",
        &(args.heartbeat_ms * 5).to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut cluster = PorchCluster::new(&dir, ports.base, timings.clone(), Some(&pki))?
        .with_member_ports((0..NODES).map(|i| ports.voter_proxy(i)).collect());
    cluster.spawn_all()?;
    // The learner, started before its proxies exist only matters once it is added.
    let members = cluster.initial_cluster();
    let learner_addr = format!("{LEARNER_CERTNAME}@127.0.0.1:{}", ports.learner_proxy());
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let learner_log = std::fs::File::create(dir.join("porch4.log")).map_err(|e| e.to_string())?;
    let mut learner = Command::new(&exe)
        .args(["server", "--id", &LEARNER_ID.to_string(), "--data-dir"])
        .arg(dir.join("porch4"))
        .args(["--listen", &format!("127.0.0.1:{}", ports.learner())])
        .args([
            "--initial-cluster",
            &format!("{members},{LEARNER_ID}={learner_addr}"),
        ])
        .args([
            "--ssldir",
            &dir.join("pki").join(LEARNER_CERTNAME).display().to_string(),
        ])
        .args(["--certname", LEARNER_CERTNAME, "--datacenter", "remote"])
        .args(&timings)
        .stdout(learner_log.try_clone().map_err(|e| e.to_string())?)
        .stderr(learner_log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the learner: {e}"))?;
    let learner_pid = learner.id().ok_or("the learner exited at once")?;
    let mut proxies = Vec::new();
    for index in 0..NODES {
        proxies.push(
            delay_proxy::start(
                ports.voter_proxy(index),
                ports.voter(index),
                one_way,
                Crossing::FromProcess(learner_pid),
            )
            .await?,
        );
    }
    proxies.push(
        delay_proxy::start(
            ports.learner_proxy(),
            ports.learner(),
            one_way,
            Crossing::All,
        )
        .await?,
    );

    let urls = cluster.urls();
    let http = cluster.admin_client(Duration::from_secs(60)).await?;
    for url in &urls {
        if !wait_ready(&http, url, "/orchestrator/v1/jobs", Duration::from_secs(30)).await {
            return Err(format!("porch at {url} did not become ready"));
        }
    }
    let added = http
        .post(format!("{}/orchestrator/v1/cluster/members", urls[0]))
        .json(&json!({"id": LEARNER_ID, "addr": learner_addr, "learner": true}))
        .send()
        .await
        .map_err(|e| format!("adding the learner: {e}"))?;
    if !added.status().is_success() {
        let body = added.text().await.unwrap_or_default();
        return Err(format!("adding the learner: {body}"));
    }
    if !submit_one(http.clone(), urls[0].clone()).await {
        return Err("the first job was not accepted".into());
    }
    let leader = cluster.leader(&http).await.ok_or("no leader")?;
    let follower = (leader + 1) % NODES;
    let learner_url = format!("https://127.0.0.1:{}", ports.learner());
    if !wait_ready(
        &http,
        &learner_url,
        "/orchestrator/v1/jobs/1",
        Duration::from_secs(60),
    )
    .await
    {
        return Err("the learner did not serve reads".into());
    }
    proxies.push(
        delay_proxy::start(
            ports.remote_client_proxy(),
            ports.voter(follower),
            one_way,
            Crossing::All,
        )
        .await?,
    );
    let readers = [
        ("main datacenter → follower", urls[follower].clone()),
        ("remote datacenter → learner", learner_url),
        (
            "remote datacenter → follower (across the link)",
            format!("https://127.0.0.1:{}", ports.remote_client_proxy()),
        ),
    ];

    println!(
        "Link between datacenters: {} ms each way ({} ms round trip); --heartbeat-ms {}; {} sequential reads of GET /jobs/1 per row.",
        args.one_way_ms,
        2 * args.one_way_ms,
        args.heartbeat_ms,
        args.reads
    );
    println!();
    println!("| load | reader | p50 ms | p90 ms | p99 ms | failed |");
    println!("|---|---|---:|---:|---:|---:|");
    for with_writer in [false, true] {
        let writing = Arc::new(AtomicBool::new(with_writer));
        let writer = {
            let (writing, leader_url) = (writing.clone(), urls[leader].clone());
            let http = http.clone();
            tokio::spawn(async move {
                while writing.load(Ordering::Relaxed) {
                    submit_one(http.clone(), leader_url.clone()).await;
                }
            })
        };
        for (name, url) in &readers {
            // Warm the connection (TLS handshake, HTTP/2) before measuring.
            let _ = read_latencies(&http, url, 5).await;
            let (latencies, failures) = read_latencies(&http, url, args.reads).await;
            println!(
                "| {} | {name} | {:.1} | {:.1} | {:.1} | {failures} |",
                if with_writer { "1 writer" } else { "idle" },
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.9),
                percentile(&latencies, 0.99),
            );
        }
        writing.store(false, Ordering::Relaxed);
        let _ = writer.await;
    }
    for proxy in proxies {
        proxy.abort();
    }
    let _ = learner.start_kill();
    let _ = learner.wait().await;
    cluster.kill_all().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
