//! Closed-loop load: N concurrent clients, each sending its next request when the previous
//! one is answered, for a fixed time; latencies of successful requests only.

use std::time::{Duration, Instant};

/// Where the load goes. Client `c` talks to the `c % nodes`th node of the list, which the
/// caller orders so that both systems put client 0 on a node of the same role, over one
/// HTTP/2 connection per node shared by every client (porch: one reqwest client; etcd: one
/// gRPC client per member), so neither system gets more connections than the other.
#[derive(Clone)]
pub enum Target {
    /// `POST <url>/orchestrator/v1/command/deploy`, a success is 202 (after commit).
    Porch {
        http: reqwest::Client,
        urls: Vec<String>,
    },
    /// A put of `bench/<i>` with the deploy body as its value, one client per member.
    Etcd { members: Vec<etcd_client::KvClient> },
}

/// A request body of the same size for both systems: a deploy of one node.
pub fn deploy_body(i: u64) -> String {
    format!(
        r#"{{"environment":"production","scope":{{"nodes":["bench-node-{i:08}"]}},"description":"bench"}}"#
    )
}

impl Target {
    fn nodes(&self) -> usize {
        match self {
            Target::Porch { urls, .. } => urls.len(),
            Target::Etcd { members } => members.len(),
        }
    }

    /// One request as client `client` (its `i`th), through node `client % nodes`.
    async fn send(&mut self, client: usize, i: u64) -> bool {
        let node = client % self.nodes();
        match self {
            Target::Porch { http, urls } => http
                .post(format!("{}/orchestrator/v1/command/deploy", urls[node]))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(deploy_body(i))
                .send()
                .await
                .map(|r| r.status().as_u16() == 202)
                .unwrap_or(false),
            Target::Etcd { members } => members[node]
                .put(format!("bench/{i}"), deploy_body(i), None)
                .await
                .is_ok(),
        }
    }
}

pub struct Stats {
    pub clients: usize,
    pub ops: usize,
    pub errors: usize,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Stats {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

/// The `p` quantile (0..=1) of sorted microseconds, in ms; NaN when empty.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[index.min(sorted_us.len() - 1)] as f64 / 1000.0
}

/// `clients` clients for `seconds` against `target`.
pub async fn load(target: &Target, clients: usize, seconds: u64) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            let mut errors = 0usize;
            // Keys (etcd) and node names (porch) differ across clients.
            let mut i = (client as u64) << 32;
            while Instant::now() < deadline {
                i += 1;
                let t0 = Instant::now();
                if target.send(client, i).await {
                    latencies_us.push(t0.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (latencies_us, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((latencies_us, e)) = task.await {
            all.extend(latencies_us);
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
        p50_ms: percentile_ms(&all, 0.50),
        p99_ms: percentile_ms(&all, 0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_picks_the_nearest_rank() {
        let us: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&us, 0.50), 51.0);
        assert_eq!(percentile_ms(&us, 0.99), 99.0);
        assert!(percentile_ms(&[], 0.5).is_nan());
    }
}
