//! The workload: jobs submitted through the API while faults run, as a careful client does —
//! one request id per job, retried through the next node on a timeout, a refused connection or
//! 503 until the cluster acknowledges it (202 with a job id) or the run gives up on it.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::history::Submission;

/// How long one API request may take before the client tries the next node.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Submissions not yet acknowledged at once; the workload waits for one when at the limit.
const UNACKNOWLEDGED_MAX: usize = 64;
/// Time between two submissions.
const SUBMIT_GAP_MS: std::ops::Range<u64> = 250..900;

/// HTTPS clients for the cluster's nodes, with the admin's token.
pub struct Api {
    http: reqwest::Client,
    pub urls: Vec<String>,
}

impl Api {
    pub fn new(cacert: &std::path::Path, token: &str, urls: Vec<String>) -> Result<Api, String> {
        let tls = porch_tls::client_config_trusting(cacert, None).map_err(|e| e.to_string())?;
        let mut headers = reqwest::header::HeaderMap::new();
        let token = reqwest::header::HeaderValue::from_str(token)
            .map_err(|_| "the admin token is not a header value".to_string())?;
        headers.insert("X-Authentication", token);
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .default_headers(headers)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build an HTTPS client: {e}"))?;
        Ok(Api { http, urls })
    }

    /// `GET <node><path>`: the status and JSON body (Null if none).
    pub async fn get(&self, node: usize, path: &str) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.urls[node - 1]);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn post(
        &self,
        node: usize,
        path: &str,
        body: &Value,
        request_id: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.urls[node - 1]);
        let mut request = self.http.post(&url).json(body);
        if let Some(id) = request_id {
            request = request.header("X-Porch-Request-Id", id);
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// GET through the first node that answers 200.
    pub async fn get_any(&self, path: &str) -> Result<Value, String> {
        let mut last = String::from("no node");
        for node in 1..=self.urls.len() {
            match self.get(node, path).await {
                Ok((200, value)) => return Ok(value),
                Ok((status, value)) => last = format!("node {node}: {status} {value}"),
                Err(e) => last = e,
            }
        }
        Err(format!("GET {path}: {last}"))
    }
}

/// What a job targets, with the run order its plan implies.
#[derive(Clone, Debug)]
pub struct Target {
    pub label: String,
    pub body: Value,
    pub edges: Vec<(String, String)>,
}

/// The example environment's applications (with their producer/consumer order, asked from
/// the cluster's planner) and its nodes.
pub async fn targets(api: &Api, agents: &[&str]) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    for application in [
        "Lamp[prod]",
        "Lamp[dev]",
        "Webstack[shop]",
        "Webstack[blog]",
    ] {
        let body = json!({"environment": "production", "scope": {"application": application}});
        let (status, plan) = api
            .post(1, "/orchestrator/v1/command/plan", &body, None)
            .await?;
        if status != 200 {
            return Err(format!("planning {application}: {status} {plan}"));
        }
        let mut edges = Vec::new();
        for node in plan["nodes"].as_array().into_iter().flatten() {
            let consumer = node["name"].as_str().unwrap_or_default().to_string();
            for producer in node["depends_on"].as_array().into_iter().flatten() {
                edges.push((
                    producer.as_str().unwrap_or_default().to_string(),
                    consumer.clone(),
                ));
            }
        }
        targets.push(Target {
            label: format!("application {application}"),
            body,
            edges,
        });
    }
    for agent in agents {
        targets.push(Target {
            label: format!("nodes {agent}"),
            body: json!({"environment": "production", "scope": {"nodes": [agent]}}),
            edges: Vec::new(),
        });
    }
    Ok(targets)
}

/// Submits jobs for `phase`, then keeps retrying the unacknowledged ones until `give_up_at`.
pub async fn run(
    api: Arc<Api>,
    seed: u64,
    phase: Duration,
    give_up_at: Instant,
    targets: Vec<Target>,
) -> Vec<Submission> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x0b5e_55ed);
    let end = Instant::now() + phase;
    let mut submissions = JoinSet::new();
    let mut done: Vec<Submission> = Vec::new();
    let mut number = 0u64;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(SUBMIT_GAP_MS))).await;
        while let Some(Ok(submission)) = submissions.try_join_next() {
            done.push(submission);
        }
        if submissions.len() >= UNACKNOWLEDGED_MAX {
            if let Some(Ok(submission)) = submissions.join_next().await {
                done.push(submission);
            }
            continue;
        }
        number += 1;
        let mut target = targets[rng.random_range(0..targets.len())].clone();
        // Several nodes at once, sometimes one at a time: node jobs contend for agents.
        if target.edges.is_empty() && rng.random_bool(0.5) {
            let extra = &targets[rng.random_range(0..targets.len())];
            if let (Some(a), Some(b)) = (
                target.body["scope"]["nodes"].as_array(),
                extra.body["scope"]["nodes"].as_array(),
            ) && a != b
            {
                let nodes: Vec<Value> = a.iter().chain(b).cloned().collect();
                target.label = format!(
                    "nodes {}",
                    nodes
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                );
                target.body["scope"]["nodes"] = Value::Array(nodes);
                target.body["concurrency"] = json!(rng.random_range(1..=2));
            }
        }
        let first_node = rng.random_range(1..=api.urls.len());
        let request_id = format!("chaos-{seed}-{number}");
        submissions.spawn(submit(
            api.clone(),
            request_id,
            target,
            first_node,
            give_up_at,
        ));
    }
    done.extend(submissions.join_all().await);
    done.sort_by_key(|s| {
        s.request_id
            .split('-')
            .next_back()
            .and_then(|n| n.parse::<u64>().ok())
    });
    done
}

async fn submit(
    api: Arc<Api>,
    request_id: String,
    target: Target,
    first_node: usize,
    give_up_at: Instant,
) -> Submission {
    let mut submission = Submission {
        request_id: request_id.clone(),
        target: target.label.clone(),
        edges: target.edges.clone(),
        acknowledged_job: None,
    };
    let nodes = api.urls.len();
    let mut node = first_node;
    while Instant::now() < give_up_at {
        match api
            .post(
                node,
                "/orchestrator/v1/command/deploy",
                &target.body,
                Some(&request_id),
            )
            .await
        {
            Ok((202, reply)) => {
                submission.acknowledged_job =
                    reply["job"]["name"].as_str().and_then(|s| s.parse().ok());
                if submission.acknowledged_job.is_some() {
                    return submission;
                }
            }
            // Anything but an acknowledgement may or may not have been applied: retry under
            // the same request id, which the cluster applies at most once.
            Ok(_) | Err(_) => {}
        }
        node = node % nodes + 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    submission
}
