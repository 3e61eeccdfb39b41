//! What `porch bench submit` and `porch bench fanout` share: a throwaway CA ([`BenchPki`]),
//! a local 3-node cluster started with its certificates or with `--insecure-http`
//! ([`PorchCluster`]), API clients logged in as the first admin, and a scratch directory.

pub mod delay_proxy;
mod pki;
mod porch_cluster;

pub use pki::BenchPki;
pub use porch_cluster::PorchCluster;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Nodes in a bench cluster.
pub const NODES: usize = 3;

/// Polls `GET <url><path>` until it answers 2xx, for up to `timeout`.
pub async fn wait_ready(http: &reqwest::Client, url: &str, path: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{url}{path}")).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Polls `GET <url>/orchestrator/v1/cluster` until the cluster writes this build's format
/// version: a new cluster starts at the oldest one it may share with a previous release and
/// its leader raises it within seconds, once every member answers that it reads the newer.
pub async fn wait_current_format(http: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    let current = u64::from(porch_core::format_version::FORMAT_VERSION);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = http
            .get(format!("{url}/orchestrator/v1/cluster"))
            .send()
            .await
            && let Ok(body) = r.json::<serde_json::Value>().await
            && body["format_version"].as_u64() == Some(current)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Resident memory of `pid` in MB (NaN if unknown).
pub fn rss_mb(pid: Option<u32>) -> f64 {
    pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// `$TMPDIR/porch-bench-<pid>`, created.
pub fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("porch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
