//! Leader failover: kill -9 of the leader → the first deploy accepted (202) through a survivor.

use super::load::deploy_body;
use crate::bench_cluster::PorchCluster;
use std::time::{Duration, Instant};

/// Times `count` leader kills, in ms; each killed node is restarted and given 3 s to catch up
/// before the next kill. Stops early if no leader is found or a node cannot restart.
pub async fn porch_failovers(
    cluster: &mut PorchCluster<'_>,
    token: &str,
    count: usize,
) -> Result<Vec<f64>, String> {
    let http = cluster.client(Some(token), Duration::from_millis(500))?;
    let mut times_ms = Vec::new();
    for round in 0..count {
        let Some(leader) = cluster.leader(&http).await else {
            break;
        };
        cluster.kill(leader).await;
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
                let accepted = http
                    .post(format!("{url}/orchestrator/v1/command/deploy"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(deploy_body(round as u64))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 202);
                if accepted {
                    times_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
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
    Ok(times_ms)
}
