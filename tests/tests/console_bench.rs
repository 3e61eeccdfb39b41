//! The console's benchmark (results in BENCHMARKS.md), ignored in the test run:
//!
//!     cargo build --workspace --bins
//!     cargo test -p porch-tests --test console_bench -- --ignored --nocapture
//!
//! 1. A job of 10,000 nodes: headless Chromium loads its page five times; the browser's own
//!    timings (Navigation Timing, first contentful paint) and the bytes transferred.
//! 2. 100 open live views (`/console/live/jobs/:id`, one HTTP/2 stream each) on one follower
//!    while a 60-node job runs on 60 simulated agents: that node's CPU (utime + stime from
//!    /proc) over the same workload with no view open, then with 100.

use porch_tests::browser::{self, Browser};
use porch_tests::{Cluster, FAST, wait_until};
use serde_json::{Value, json};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BIG_JOB_NODES: usize = 10_000;
const LOADS: usize = 5;
const VIEWS: usize = 100;
const AGENTS: usize = 60;
const WINDOW: Duration = Duration::from_secs(10);

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Submits a job over `nodes` through node `id`; its id.
fn submit(cluster: &Cluster, id: u64, nodes: &[String], concurrency: u32) -> u64 {
    let body =
        json!({"environment": "production", "scope": {"nodes": nodes}, "concurrency": concurrency});
    let (status, answer) = cluster.post(id, "/command/deploy", &body.to_string(), &[]);
    assert_eq!(status, 202, "{answer}");
    answer["job"]["name"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("job id")
}

/// CPU of node `id`, in % of one core, over `WINDOW` from now.
fn cpu_percent(cluster: &Cluster, id: u64) -> f64 {
    let pid = cluster.pid(id).expect("node running");
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let before = cpu_ticks(pid);
    let start = Instant::now();
    std::thread::sleep(WINDOW);
    let used = (cpu_ticks(pid) - before) as f64 / ticks_per_s;
    100.0 * used / start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "benchmark: cargo test -p porch-tests --test console_bench -- --ignored --nocapture"]
fn console_bench() {
    if let Some(why) = browser::missing() {
        panic!("the console benchmark needs the browser: {why}");
    }
    let cluster = {
        let mut cluster = Cluster::start(3, FAST);
        let names: Vec<String> = (1..=AGENTS).map(|i| format!("sim{i}")).collect();
        for name in &names {
            cluster.issue_cert(name);
        }
        let ssldir = cluster.ssldir.display().to_string();
        cluster.start_agent_flags(
            "sim",
            &[
                "--ssldir",
                &ssldir,
                "--sessions",
                &AGENTS.to_string(),
                "--runner",
                "simulate",
                "--simulate-duration-ms",
                "1000..3000",
                "--simulate-failure-rate",
                "0",
            ]
            .map(String::from),
        );
        let leader = cluster.wait_for_leader(Duration::from_secs(10));
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        cluster.wait_agents_connected(leader, &refs);
        cluster
    };
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let follower = *cluster.running().iter().find(|id| **id != leader).unwrap();

    // 1. The 10,000-node job page in a real browser.
    let big: Vec<String> = (1..=BIG_JOB_NODES)
        .map(|i| format!("n{i:05}.example.com"))
        .collect();
    let big_job = submit(&cluster, follower, &big, 1);
    let certs: Vec<PathBuf> = std::iter::once(cluster.cacert())
        .chain((1..=3).map(|id| {
            cluster
                .ssldir
                .join("certs")
                .join(format!("{}.pem", cluster.certname(id)))
        }))
        .collect();
    let browser = Browser::start(
        &browser::spki_hashes(&certs),
        &cluster.dir.path().join("chromedriver.log"),
    );
    let base = cluster.url(follower);
    browser.goto(&format!("{base}/console/login"));
    browser.type_into(&browser.find("input[name=login]"), "admin");
    browser.type_into(
        &browser.find("input[name=password]"),
        &format!("{}\u{E007}", cluster.admin_password()),
    );
    browser.wait_text("main h1", "Jobs", Duration::from_secs(30));
    let timing = "const nav = performance.getEntriesByType('navigation')[0];
      const paint = performance.getEntriesByName('first-contentful-paint')[0];
      const assets = performance.getEntriesByType('resource').reduce((n, r) => n + r.transferSize, 0);
      return {response_start: nav.responseStart, response_end: nav.responseEnd,
        dom_content_loaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
        first_contentful_paint: paint ? paint.startTime : null,
        document_transfer: nav.transferSize, document_decoded: nav.decodedBodySize,
        assets_transfer: assets, rows: document.querySelectorAll('#nodes tr[id]').length};";
    let mut loads: Vec<Value> = Vec::new();
    for _ in 0..LOADS {
        browser.goto(&format!("{base}/console/jobs/{big_job}"));
        wait_until(Duration::from_secs(30), "the paint timing", || {
            let t = browser.run(timing, vec![]);
            (t["first_contentful_paint"].is_number() && t["load"].as_f64() > Some(0.0)).then_some(t)
        });
        let t = browser.run(timing, vec![]);
        assert_eq!(t["rows"], BIG_JOB_NODES, "{t}");
        println!("load: {t}");
        loads.push(t);
    }
    let pick = |key: &str| {
        median(
            loads
                .iter()
                .map(|t| t[key].as_f64().unwrap_or(0.0))
                .collect(),
        )
    };
    println!(
        "10,000-node job page, median of {LOADS}: first byte {:.0} ms, HTML received {:.0} ms, first contentful paint {:.0} ms, DOMContentLoaded {:.0} ms, load {:.0} ms; document {:.0} bytes transferred ({:.0} decoded); assets on the first load {} bytes",
        pick("response_start"),
        pick("response_end"),
        pick("first_contentful_paint"),
        pick("dom_content_loaded"),
        pick("load"),
        pick("document_transfer"),
        pick("document_decoded"),
        loads[0]["assets_transfer"],
    );
    drop(browser);
    // The big job runs on unreachable agents: stop it so it weighs on nothing below.
    let (status, answer) = cluster.post(
        follower,
        "/command/stop",
        &json!({"job": big_job.to_string()}).to_string(),
        &[],
    );
    assert_eq!(status, 202, "{answer}");

    // 2. CPU of the follower serving 100 live views, against the same workload without them.
    let sims: Vec<String> = (1..=AGENTS).map(|i| format!("sim{i}")).collect();
    let quiet_job = submit(&cluster, leader, &sims, 6);
    std::thread::sleep(Duration::from_secs(1));
    let without = cpu_percent(&cluster, follower);
    cluster.wait_job_done(leader, quiet_job, Duration::from_secs(120));
    let watched_job = submit(&cluster, leader, &sims, 6);
    let streaming = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(porch_tls::client_config_trusting(&cluster.cacert(), None).unwrap())
        .build()
        .unwrap();
    let cookie = format!("__Host-porch-session={}", cluster.token);
    let views: Vec<std::thread::JoinHandle<(usize, usize)>> = (0..VIEWS)
        .map(|_| {
            let request = streaming
                .get(format!("{base}/console/live/jobs/{watched_job}?start=0"))
                .header("cookie", cookie.clone());
            std::thread::spawn(move || {
                let mut response = request.send().expect("a live view");
                assert_eq!(response.status(), 200);
                let (mut bytes, mut messages, mut buffer) = (0usize, 0usize, [0u8; 16384]);
                loop {
                    match response.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            bytes += n;
                            messages += buffer[..n].windows(7).filter(|w| w == b"event: ").count();
                        }
                    }
                }
                (bytes, messages)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let with = cpu_percent(&cluster, follower);
    cluster.wait_job_done(leader, watched_job, Duration::from_secs(120));
    let received: Vec<(usize, usize)> = views
        .into_iter()
        .map(|v| v.join().expect("a view"))
        .collect();
    let bytes: usize = received.iter().map(|r| r.0).sum();
    let messages: usize = received.iter().map(|r| r.1).sum();
    println!(
        "{AGENTS}-node job, concurrency 6, simulated runs of 1-3 s: follower CPU over {WINDOW:?} without views {without:.1} %, with {VIEWS} live views {with:.1} % (+{:.1} % of one core, {:.2} % per view); the views received {messages} messages, {bytes} bytes in all",
        with - without,
        (with - without) / VIEWS as f64,
    );
}
