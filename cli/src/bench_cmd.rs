//! `porch bench submit`: job submissions per second and latency on a local 3-node cluster with
//! durable storage, at several client concurrencies; optionally etcd 3.4 side by side (puts of
//! the same size through its JSON gateway), and leader failover time. Results are printed as a
//! Markdown table for BENCHMARKS.md. A benchmark, not a test: it asserts nothing.

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

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
pub struct SubmitArgs {
    /// Client concurrencies to measure, comma-separated.
    #[arg(long, default_value = "1,64,256")]
    pub clients: String,
    /// Seconds of load per concurrency.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Also measure etcd (needs the `etcd` binary, Debian's etcd-server 3.4).
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
}

struct Stats {
    clients: usize,
    ops: usize,
    errors: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)] as f64 / 1000.0
}

/// A request body of the same size for both systems: a deploy of one node.
fn deploy_body(i: u64) -> String {
    format!(
        r#"{{"environment":"production","scope":{{"nodes":["bench-node-{i:08}"]}},"description":"bench"}}"#
    )
}

fn base64(data: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for (k, shift) in [18, 12, 6, 0].iter().enumerate() {
            if k <= chunk.len() {
                out.push(TABLE[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Target {
    Porch,
    Etcd,
}

async fn load(target: Target, urls: &[String], clients: usize, seconds: u64) -> Stats {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients + 8)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client with static settings");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let url = urls[c % urls.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut i = (c as u64) << 32;
            while Instant::now() < deadline {
                i += 1;
                let t0 = Instant::now();
                let ok = match target {
                    Target::Porch => http
                        .post(format!("{url}/orchestrator/v1/command/deploy"))
                        .body(deploy_body(i))
                        .send()
                        .await
                        .map(|r| r.status().as_u16() == 202)
                        .unwrap_or(false),
                    Target::Etcd => {
                        let body = format!(
                            r#"{{"key":"{}","value":"{}"}}"#,
                            base64(format!("bench/{i}").as_bytes()),
                            base64(deploy_body(i).as_bytes())
                        );
                        http.post(format!("{url}/v3/kv/put"))
                            .body(body)
                            .send()
                            .await
                            .map(|r| r.status().is_success())
                            .unwrap_or(false)
                    }
                };
                if ok {
                    latencies.push(t0.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((latencies, e)) = task.await {
            all.extend(latencies);
            errors += e;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Stats {
        clients,
        ops: all.len(),
        errors,
        seconds,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
    }
}

pub(crate) struct PorchCluster {
    pub(crate) exe: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) ports: Vec<u16>,
    pub(crate) children: Vec<Option<Child>>,
    pub(crate) extra_args: Vec<String>,
}

impl PorchCluster {
    fn args(&self, index: usize) -> Vec<String> {
        let cluster = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        vec![
            "server".into(),
            "--id".into(),
            (index + 1).to_string(),
            "--data-dir".into(),
            self.dir
                .join(format!("porch{}", index + 1))
                .display()
                .to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.ports[index]),
            "--initial-cluster".into(),
            cluster,
        ]
        .into_iter()
        .chain(self.extra_args.iter().cloned())
        .collect()
    }

    pub(crate) fn spawn(&mut self, index: usize) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join(format!("porch{}.log", index + 1)))
            .map_err(|e| e.to_string())?;
        let child = Command::new(&self.exe)
            .args(self.args(index))
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start porch: {e}"))?;
        self.children[index] = Some(child);
        Ok(())
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    pub(crate) async fn leader(&self, http: &reqwest::Client) -> Option<usize> {
        for (i, url) in self.urls().iter().enumerate() {
            if self.children[i].is_none() {
                continue;
            }
            if let Ok(r) = http
                .get(format!("{url}/orchestrator/v1/status"))
                .send()
                .await
            {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    if let Some(l) = v["leader"].as_u64() {
                        return Some(l as usize - 1);
                    }
                }
            }
        }
        None
    }
}

pub(crate) async fn wait_ready(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{url}{path}")).send().await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn porch_failovers(cluster: &mut PorchCluster, count: usize) -> Vec<f64> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("static client");
    let mut times = Vec::new();
    for round in 0..count {
        let Some(leader) = cluster.leader(&http).await else {
            break;
        };
        if let Some(mut child) = cluster.children[leader].take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        let t0 = Instant::now();
        let survivors: Vec<String> = cluster
            .urls()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != leader)
            .map(|(_, u)| u)
            .collect();
        'write: while t0.elapsed() < Duration::from_secs(30) {
            for url in &survivors {
                let r = http
                    .post(format!("{url}/orchestrator/v1/command/deploy"))
                    .body(deploy_body(round as u64))
                    .send()
                    .await;
                if r.map(|r| r.status().as_u16() == 202).unwrap_or(false) {
                    times.push(t0.elapsed().as_secs_f64() * 1000.0);
                    break 'write;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if cluster.spawn(leader).is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    times
}

async fn start_etcd(
    bin: &Path,
    dir: &Path,
    base: u16,
) -> Result<(Vec<Child>, Vec<String>), String> {
    let client_ports: Vec<u16> = (0..3).map(|i| base + 10 + i).collect();
    let peer_ports: Vec<u16> = (0..3).map(|i| base + 20 + i).collect();
    let initial = peer_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("e{}=http://127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for i in 0..3 {
        let log = std::fs::File::create(dir.join(format!("etcd{}.log", i + 1)))
            .map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args(["--name", &format!("e{}", i + 1)])
            .arg("--data-dir")
            .arg(dir.join(format!("etcd{}", i + 1)))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", client_ports[i]),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", client_ports[i]),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", peer_ports[i]),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", peer_ports[i]),
            ])
            .args([
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "new",
            ])
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (apt-get install etcd-server)",
                    bin.display()
                )
            })?;
        children.push(child);
    }
    Ok((
        children,
        client_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect(),
    ))
}

fn print_table(name: &str, rows: &[Stats]) {
    println!("\n{name}\n");
    println!("| clients | ops/s | p50 ms | p99 ms | ops | errors |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for s in rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} |",
            s.clients,
            s.rate(),
            s.p50_ms,
            s.p99_ms,
            s.ops,
            s.errors
        );
    }
}

pub async fn run_bench(args: BenchArgs) -> ExitCode {
    let result = match args.what {
        BenchWhat::Submit(args) => submit(args).await,
        BenchWhat::Fanout(args) => crate::fanout_bench::fanout(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn submit(args: SubmitArgs) -> Result<(), String> {
    let clients: Vec<usize> = args
        .clients
        .split(',')
        .map(|c| {
            c.trim()
                .parse::<usize>()
                .map_err(|_| format!("--clients: '{c}' is not a number"))
        })
        .collect::<Result<_, _>>()?;
    if clients.iter().any(|&c| c == 0) {
        return Err("--clients: concurrencies must be positive".into());
    }
    let temp = tempfile_dir()?;
    let dir = args.work_dir.clone().unwrap_or(temp);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cluster = PorchCluster {
        exe,
        dir: dir.clone(),
        ports: (0..3).map(|i| args.base_port + i).collect(),
        children: vec![None, None, None],
        extra_args: args.server_arg.clone(),
    };
    for i in 0..3 {
        cluster.spawn(i)?;
    }
    let http = reqwest::Client::new();
    for url in cluster.urls() {
        if !wait_ready(
            &http,
            &url,
            "/orchestrator/v1/jobs",
            Duration::from_secs(30),
        )
        .await
        {
            return Err(format!(
                "porch at {url} did not become ready; see {}",
                dir.display()
            ));
        }
    }
    println!("porch: 3 nodes, sled in {}", dir.display());
    let _ = load(Target::Porch, &cluster.urls(), 8, 2).await;
    let mut porch_rows = Vec::new();
    for &c in &clients {
        porch_rows.push(load(Target::Porch, &cluster.urls(), c, args.seconds).await);
    }
    print_table(
        "porch job submissions (POST /command/deploy, 202 after commit)",
        &porch_rows,
    );
    if args.failovers > 0 {
        let mut times = porch_failovers(&mut cluster, args.failovers).await;
        times.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        if !times.is_empty() {
            println!(
                "\nporch leader failover (kill -9 → write accepted via a survivor), {} runs: median {:.0} ms, min {:.0} ms, max {:.0} ms",
                times.len(),
                times[times.len() / 2],
                times[0],
                times[times.len() - 1]
            );
        }
    }
    // Wait for the nodes to be gone: the next run binds the same ports.
    for child in cluster.children.iter_mut().flatten() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    if args.etcd {
        let (mut etcd, urls) = start_etcd(&args.etcd_bin, &dir, args.base_port).await?;
        for url in &urls {
            if !wait_ready(&http, url, "/health", Duration::from_secs(30)).await {
                return Err(format!(
                    "etcd at {url} did not become healthy; see {}",
                    dir.display()
                ));
            }
        }
        let _ = load(Target::Etcd, &urls, 8, 2).await;
        let mut rows = Vec::new();
        for &c in &clients {
            rows.push(load(Target::Etcd, &urls, c, args.seconds).await);
        }
        print_table(
            "etcd 3.4 puts of the same size (POST /v3/kv/put, JSON gateway)",
            &rows,
        );
        for child in &mut etcd {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
    // A temporary directory of our own is removed (hundreds of MB of sled files per run);
    // one the user named is kept for inspection.
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

pub(crate) fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("porch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
