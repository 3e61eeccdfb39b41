//! `porch bench schedules`: firing precision with many active schedules, and what they cost
//! the leader. On a local 3-node cluster (TLS by default), N schedules are created through the
//! API, each a deploy of one node no agent serves (its run ends errored after the agent
//! timeout), due once within a window of `--spread-secs` (hourly afterwards, so each fires
//! once in the run). Afterwards every schedule's first decision is read back: the delay from
//! its due time to the time the leader stamped into the committed entry that fired it. The
//! leader's CPU time (utime + stime from /proc) is sampled while the schedules are armed but
//! not due, and over the window they fire in. A benchmark, not a test: it asserts nothing.

use crate::bench_cluster::{BenchPki, PorchCluster, tempfile_dir, wait_current_format, wait_ready};
use clap::Args;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Args, Debug)]
pub struct SchedulesArgs {
    /// Active schedules.
    #[arg(long, default_value_t = 10_000)]
    pub schedules: usize,
    /// Their due times are spread evenly over this many seconds.
    #[arg(long, default_value_t = 60)]
    pub spread_secs: u64,
    /// Seconds from the start of creation to the first due time (creation must finish first).
    #[arg(long, default_value_t = 90)]
    pub lead_secs: u64,
    /// Concurrent creation requests.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    #[arg(long, default_value_t = 18300)]
    pub base_port: u16,
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Plain HTTP (tokens still checked).
    #[arg(long)]
    pub insecure_http: bool,
}

const INTERVAL_SECS: u64 = 3600;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn parse_ms(text: &str) -> Option<u64> {
    humantime::parse_rfc3339(text)
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

/// CPU seconds (user + system) the process has used, from /proc (Linux; 100 ticks/s).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub async fn schedules(args: SchedulesArgs) -> Result<(), String> {
    let dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => tempfile_dir()?,
    };
    let codedir = dir.join("code");
    std::fs::create_dir_all(codedir.join("environments/production"))
        .map_err(|e| format!("{}: {e}", codedir.display()))?;
    let pki = if args.insecure_http {
        None
    } else {
        Some(BenchPki::create(&dir.join("pki"))?)
    };
    let extra = vec![
        "--codedir".to_string(),
        codedir.display().to_string(),
        "--agent-timeout-secs".into(),
        "1".into(),
    ];
    let mut cluster = PorchCluster::new(&dir, args.base_port, extra, pki.as_ref())?;
    cluster.spawn_all()?;
    let token = cluster.admin_token(Duration::from_secs(60)).await?;
    let http = cluster.client(Some(&token), Duration::from_secs(30))?;
    for url in cluster.urls() {
        if !wait_ready(
            &http,
            &url,
            "/orchestrator/v1/jobs",
            Duration::from_secs(30),
        )
        .await
        {
            return Err(format!("porch at {url} did not become ready"));
        }
    }
    let leader = cluster
        .leader(&http)
        .await
        .ok_or("no leader among the bench nodes")?;
    let leader_pid = cluster.pid(leader).ok_or("the leader has no process")?;
    let url = cluster.urls()[leader].clone();
    if !wait_current_format(&http, &url, Duration::from_secs(30)).await {
        return Err("the bench cluster did not reach this build's format version".into());
    }

    let first_due_ms = now_ms() + args.lead_secs * 1000;
    let step_ms = args.spread_secs * 1000 / args.schedules.max(1) as u64;
    let created = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.clients {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        let count = args.schedules;
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), String>(());
                }
                let body = json!({
                    "type": "deploy",
                    "environment": "production",
                    "input": {"scope": {"nodes": [format!("ghost{i}.bench")]}},
                    "schedule": {
                        "start_time": rfc3339_ms(first_due_ms + i as u64 * step_ms),
                        "interval": {"units": "seconds", "value": INTERVAL_SECS},
                    },
                });
                let response = http
                    .post(format!(
                        "{url}/orchestrator/v1/scheduled_jobs/environment_jobs"
                    ))
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| format!("create schedule {i}: {e}"))?;
                if !response.status().is_success() {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    return Err(format!("create schedule {i}: {status} {text}"));
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.map_err(|e| e.to_string())??;
    }
    let creation_s = created.elapsed().as_secs_f64();
    if now_ms() + 10_000 > first_due_ms {
        return Err(format!(
            "creating {} schedules took {creation_s:.1} s, too close to the first due time: raise --lead-secs",
            args.schedules
        ));
    }
    // Armed, none due: what idle schedules cost the leader.
    let idle_window =
        Duration::from_millis((first_due_ms - now_ms()).saturating_sub(2_000).min(20_000));
    let cpu_before = cpu_seconds(leader_pid).ok_or("cannot read the leader's CPU time")?;
    tokio::time::sleep(idle_window).await;
    let armed_cpu =
        (cpu_seconds(leader_pid).unwrap_or(cpu_before) - cpu_before) / idle_window.as_secs_f64();
    // The firing window.
    tokio::time::sleep(Duration::from_millis(first_due_ms.saturating_sub(now_ms()))).await;
    let fire_start = Instant::now();
    let cpu_start = cpu_seconds(leader_pid).unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(args.spread_secs + 5)).await;
    let firing_cpu = (cpu_seconds(leader_pid).unwrap_or(cpu_start) - cpu_start)
        / fire_start.elapsed().as_secs_f64();

    // Every schedule's first decision, read back.
    let mut delays = Vec::with_capacity(args.schedules);
    let (mut skipped, mut undecided) = (0usize, 0usize);
    let mut offset = 0;
    loop {
        let page: Value = http
            .get(format!(
                "{url}/orchestrator/v1/scheduled_jobs/environment_jobs?limit=1000&offset={offset}&order_by=name"
            ))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        offset += items.len();
        for item in items {
            let start = item["schedule"]["start_time"].as_str().and_then(parse_ms);
            let first = item["occurrences"]
                .as_array()
                .and_then(|o| o.first())
                .cloned();
            match (start, first) {
                (Some(start), Some(record)) if record["outcome"] == "fired" => {
                    let decided = record["decided_time"]
                        .as_str()
                        .and_then(parse_ms)
                        .unwrap_or(start);
                    delays.push(decided.saturating_sub(start));
                }
                (_, Some(_)) => skipped += 1,
                _ => undecided += 1,
            }
        }
    }
    cluster.kill_all().await;
    delays.sort_unstable();
    println!(
        "{} schedules created in {creation_s:.1} s ({:.0}/s, {} clients); due over {} s; {}",
        args.schedules,
        args.schedules as f64 / creation_s,
        args.clients,
        args.spread_secs,
        if pki.is_some() { "TLS" } else { "plain HTTP" }
    );
    println!();
    println!(
        "| schedules | fired | skipped | undecided | due → fired median ms | p90 ms | p99 ms | max ms | leader CPU armed (none due) | leader CPU while firing |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {skipped} | {undecided} | {} | {} | {} | {} | {:.1} % | {:.1} % |",
        args.schedules,
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.9),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(0),
        armed_cpu * 100.0,
        firing_cpu * 100.0,
    );
    Ok(())
}
