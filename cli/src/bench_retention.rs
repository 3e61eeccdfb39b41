//! `porch bench retention`: pushes many jobs through a real 3-node cluster with history
//! retention on (`--jobs-kept-max`) and, at checkpoints, measures what retention must keep
//! flat: each node's resident memory, the snapshot file, the data dir, and how long a
//! restarted follower takes to serve again (load its snapshot, replay the log behind it,
//! catch up with the leader).
//!
//! The jobs are real: `POST /command/deploy` of one node each, over TLS with the first
//! admin's token, from `--clients` concurrent submitters; one `porch agent` process hosts
//! `--agents` simulated agents whose runs end at once, so every job ends (and becomes
//! prunable) a moment after it is accepted — two raft entries per job (submit, report).

use crate::bench_cluster::{BenchPki, NODES, PorchCluster, rss_mb, tempfile_dir, wait_ready};
use crate::bench_cmd::RetentionArgs;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::process::Command;

const AGENT_PREFIX: &str = "keep";

/// Bytes under `dir`, recursively (0 for what cannot be read).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn parse_counts(text: &str, flag: &str) -> Result<Vec<u64>, String> {
    text.split(',')
        .map(|c| {
            c.trim()
                .replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{flag}: '{c}' is not a number"))
        })
        .collect()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let response = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// The node's own `/orchestrator/v1/status` (no quorum needed).
async fn node_status(http: &reqwest::Client, url: &str) -> Option<Value> {
    get_json(http, &format!("{url}/orchestrator/v1/status")).await
}

pub async fn retention(args: RetentionArgs) -> Result<(), String> {
    let checkpoints = parse_counts(&args.checkpoints, "--checkpoints")?;
    let jobs_max = *checkpoints.iter().max().unwrap_or(&0);
    let dir = tempfile_dir()?.join("retention");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut pki = BenchPki::create(&dir.join("pki"))?;
    pki.issue_agents(AGENT_PREFIX, args.agents)?;
    let mut cluster = PorchCluster::new(
        &dir,
        args.base_port,
        vec![
            "--jobs-kept-max".into(),
            args.jobs_kept_max.to_string(),
            "--snapshot-every".into(),
            args.snapshot_every.to_string(),
            "--runs-in-flight-max".into(),
            args.agents.max(1).to_string(),
            "--agent-timeout-secs".into(),
            "600".into(),
        ],
        Some(&pki),
    )?;
    cluster.spawn_all()?;
    let urls = cluster.urls();
    let http = cluster.admin_client(Duration::from_secs(60)).await?;
    for url in &urls {
        if !wait_ready(&http, url, "/orchestrator/v1/jobs", Duration::from_secs(30)).await {
            return Err(format!("porch at {url} did not become ready"));
        }
    }
    let spool = args
        .spool_root
        .join(format!("porch-retention-{}", std::process::id()));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut agents = Command::new(&exe)
        .arg("agent")
        .args(["--ssldir", &pki.agent_ssldir().display().to_string()])
        .args(["--certname", AGENT_PREFIX, "--sessions"])
        .arg(args.agents.to_string())
        .args(["--runner", "simulate", "--simulate-duration-ms", "0..0"])
        .args(["--simulate-failure-rate", "0", "--spool-dir"])
        .arg(&spool)
        .args(["--service-url", &urls.join(",")])
        .env("PORCH_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("agents.log")).map_err(|e| e.to_string())?)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the agents: {e}"))?;
    wait_agents(&http, &urls[0], args.agents).await?;

    println!(
        "Retention at {} ended jobs kept (--jobs-kept-max), snapshot every {} entries; {} clients, {} instant agents.",
        args.jobs_kept_max, args.snapshot_every, args.clients, args.agents
    );
    println!();
    println!(
        "| jobs submitted | jobs kept | jobs/s since previous | RSS per node MB | snapshot MB (leader) | data dir MB (leader) | follower restart → serving s | restarted follower RSS MB |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---:|");

    let submitted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut submitters = Vec::new();
    for client in 0..args.clients {
        let (http, urls) = (http.clone(), urls.clone());
        let (submitted, errors, stop) = (submitted.clone(), errors.clone(), stop.clone());
        let agents = args.agents as u64;
        submitters.push(tokio::spawn(async move {
            let mut i = client as u64;
            while !stop.load(Ordering::Relaxed) {
                if submitted.load(Ordering::Relaxed) >= jobs_max {
                    return;
                }
                let node = format!("{AGENT_PREFIX}{}", i % agents + 1);
                let body =
                    format!(r#"{{"environment":"production","scope":{{"nodes":["{node}"]}}}}"#);
                // Submit through the nodes in turn; a node being restarted is skipped.
                let url = &urls[i as usize % urls.len()];
                let accepted = http
                    .post(format!("{url}/orchestrator/v1/command/deploy"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 202)
                    .unwrap_or(false);
                if accepted {
                    submitted.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                i += args.clients as u64;
            }
        }));
    }

    let started = Instant::now();
    let time_limit = Duration::from_secs(args.seconds_max);
    let (mut last_count, mut last_time) = (0u64, Instant::now());
    for &checkpoint in &checkpoints {
        while submitted.load(Ordering::Relaxed) < checkpoint {
            if started.elapsed() > time_limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let count = submitted.load(Ordering::Relaxed);
        let rate = (count - last_count) as f64 / last_time.elapsed().as_secs_f64().max(0.001);
        // The leader prunes every 5 s: give it one round so "kept" shows the bound, not
        // the jobs accepted since its last pass.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let row = measure(&mut cluster, &http, &urls, count, rate).await?;
        println!("{row}");
        (last_count, last_time) = (submitted.load(Ordering::Relaxed), Instant::now());
        if started.elapsed() > time_limit {
            println!();
            println!(
                "(stopped at {count} jobs: --seconds-max {} reached)",
                args.seconds_max
            );
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for submitter in submitters {
        let _ = submitter.await;
    }
    eprintln!(
        "  ({} jobs accepted, {} refused or failed submissions, {:.0} s)",
        submitted.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let _ = agents.start_kill();
    let _ = agents.wait().await;
    cluster.kill_all().await;
    let _ = std::fs::remove_dir_all(&spool);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn wait_agents(http: &reqwest::Client, url: &str, count: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let connected = get_json(http, &format!("{url}/orchestrator/v1/inventory"))
            .await
            .and_then(|v| v["items"].as_array().map(|a| a.len()))
            .unwrap_or(0);
        if connected >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {connected} of {count} agents connected"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One checkpoint's row: memory, snapshot and data dir now, then a follower restarted.
async fn measure(
    cluster: &mut PorchCluster<'_>,
    http: &reqwest::Client,
    urls: &[String],
    count: u64,
    rate: f64,
) -> Result<String, String> {
    let leader = cluster
        .leader(http)
        .await
        .ok_or("no leader known at a checkpoint")?;
    let kept = get_json(
        http,
        &format!("{}/orchestrator/v1/jobs?limit=1", urls[leader]),
    )
    .await
    .and_then(|v| v["pagination"]["total"].as_u64())
    .map_or("?".to_string(), |n| n.to_string());
    let rss: Vec<String> = (0..NODES)
        .map(|i| format!("{:.0}", rss_mb(cluster.pid(i))))
        .collect();
    let leader_dir = cluster.data_dir(leader);
    let snapshot_mb = std::fs::metadata(leader_dir.join("sled").join("blobs").join("snapshot"))
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(f64::NAN);
    let data_dir_mb = dir_bytes(&leader_dir) as f64 / 1e6;
    // Restart the follower after the leader: time until it answers and has applied
    // everything the leader had committed when it was killed.
    let follower = (leader + 1) % NODES;
    let target = node_status(http, &urls[leader])
        .await
        .and_then(|s| s["last_applied_index"].as_u64())
        .unwrap_or(0);
    cluster.kill(follower).await;
    let restarted = Instant::now();
    cluster.spawn(follower)?;
    let deadline = restarted + Duration::from_secs(300);
    let restart_s = loop {
        if let Some(status) = node_status(http, &urls[follower]).await
            && status["last_applied_index"]
                .as_u64()
                .is_some_and(|i| i >= target)
        {
            break format!("{:.2}", restarted.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            break "> 300".into();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let restarted_rss = rss_mb(cluster.pid(follower));
    Ok(format!(
        "| {count} | {kept} | {rate:.0} | {} | {snapshot_mb:.1} | {data_dir_mb:.1} | {restart_s} | {restarted_rss:.0} |",
        rss.join(" / ")
    ))
}
