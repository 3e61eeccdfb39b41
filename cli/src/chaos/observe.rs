//! After healing: waits until the cluster converged (every job ended, every node answers with
//! one leader and the same applied index), then reads what it holds.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

use super::history::{ClusterJob, ClusterRun, Missing, Submission};
use super::workload::Api;

const TERMINAL: [&str; 3] = ["finished", "stopped", "failed"];

/// Waits up to `within` for convergence; `None` once converged, else what was seen last.
pub async fn wait_converged(api: &Api, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut last;
    loop {
        last = match converged(api).await {
            Ok(()) => return None,
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Some(last);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn converged(api: &Api) -> Result<(), String> {
    let unended: Vec<String> = job_summaries(api)
        .await?
        .iter()
        .filter(|j| !TERMINAL.contains(&j["state"].as_str().unwrap_or_default()))
        .map(|j| {
            format!(
                "job {} {}",
                j["name"].as_str().unwrap_or("?"),
                j["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if !unended.is_empty() {
        return Err(format!("not ended: {}", unended.join(", ")));
    }
    let mut views = Vec::new();
    for node in 1..=api.urls.len() {
        match api.get(node, "/orchestrator/v1/status").await {
            Ok((200, status)) => views.push((
                node,
                status["leader"].as_u64(),
                status["last_applied_index"].as_u64(),
            )),
            Ok((code, body)) => return Err(format!("node {node}: status {code} {body}")),
            Err(e) => return Err(format!("node {node}: {e}")),
        }
    }
    let (_, leader, applied) = views[0];
    if leader.is_none() || views.iter().any(|v| v.1 != leader || v.2 != applied) {
        let seen: Vec<String> = views
            .iter()
            .map(|(n, l, a)| format!("node {n}: leader {l:?}, applied {a:?}"))
            .collect();
        return Err(seen.join("; "));
    }
    Ok(())
}

/// Every job's summary, page by page.
async fn job_summaries(api: &Api) -> Result<Vec<Value>, String> {
    let mut summaries = Vec::new();
    loop {
        let path = format!(
            "/orchestrator/v1/jobs?limit=1000&offset={}",
            summaries.len()
        );
        let page = api.get_any(&path).await?;
        match page["items"].as_array() {
            Some(items) if !items.is_empty() => summaries.extend(items.iter().cloned()),
            _ => return Ok(summaries),
        }
    }
}

/// Every job the cluster holds, with its runs.
pub async fn cluster_jobs(api: &Api) -> Result<BTreeMap<u64, ClusterJob>, String> {
    let mut jobs = BTreeMap::new();
    for item in job_summaries(api).await? {
        let id: u64 = item["name"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("a job without an id: {item}"))?;
        let nodes = api
            .get_any(&format!("/orchestrator/v1/jobs/{id}/nodes"))
            .await?;
        let runs = nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| ClusterRun {
                node: n["name"].as_str().unwrap_or_default().to_string(),
                state: n["state"].as_str().unwrap_or_default().to_string(),
                transaction: n["transaction_uuid"].as_str().map(str::to_string),
            })
            .collect();
        let state = item["state"].as_str().unwrap_or_default().to_string();
        jobs.insert(id, ClusterJob { state, runs });
    }
    Ok(jobs)
}

/// Acknowledged jobs some node does not answer with the job.
pub async fn missing_on_nodes(api: &Api, submissions: &[Submission]) -> Vec<Missing> {
    let mut missing = Vec::new();
    for job in submissions.iter().filter_map(|s| s.acknowledged_job) {
        for node in 1..=api.urls.len() {
            let answer = match api.get(node, &format!("/orchestrator/v1/jobs/{job}")).await {
                Ok((200, value)) if value["name"].as_str() == Some(&job.to_string()) => continue,
                Ok((status, value)) => format!("{status} {value}"),
                Err(e) => e,
            };
            missing.push(Missing { job, node, answer });
        }
    }
    missing
}
