//! JSON views of replicated records, in the exact shapes of PE's Orchestrator API v1.

use crate::clock::format_time_ms;
use porch_core::{ClusterState, Job, JobEvent, NodeRun, NodeState, Target};
use serde_json::{Value, json};

/// `scope` as it was submitted.
fn scope(target: &Target) -> Value {
    match target {
        Target::Nodes(nodes) => json!({"nodes": nodes}),
        Target::Query(query) => json!({"query": query}),
        Target::Application(app) => json!({"application": app}),
    }
}

fn node_states(job: &Job) -> Value {
    if job.runs.is_empty() {
        return Value::Null;
    }
    json!(job.node_states())
}

/// A job as `GET /jobs` lists it.
pub fn job_summary(job: &Job, base: &str) -> Value {
    let id = format!("{base}/orchestrator/v1/jobs/{}", job.id);
    let spec = &job.spec;
    let mut summary = json!({
        "id": id,
        "name": job.id.to_string(),
        "state": job.state().as_str(),
        "command": spec.job_type(),
        "type": spec.job_type(),
        "options": {
            "concurrency": spec.concurrency,
            "noop": spec.noop,
            "no_noop": spec.no_noop,
            "trace": spec.trace,
            "debug": spec.debug,
            "evaltrace": spec.evaltrace,
            "scope": scope(&spec.target),
            "enforce_environment": spec.enforce_environment,
            "environment": spec.environment,
            "target": spec.target.describe(),
            "description": spec.description,
        },
        "owner": {"id": spec.owner.id, "login": spec.owner.login},
        "description": spec.description,
        "timestamp": format_time_ms(job.timestamp_ms()),
        "created_timestamp": format_time_ms(job.created_ms()),
        "environment": {"name": spec.environment},
        "node_count": job.runs.len(),
        "node_states": node_states(job),
        "nodes": {"id": format!("{id}/nodes")},
        "report": {"id": format!("{id}/report")},
        "events": {"id": format!("{id}/events")},
    });
    if let Some(task) = &spec.task
        && let (Some(options), Value::Object(extra)) = (
            summary["options"].as_object_mut(),
            super::task_views::task_options(task),
        )
    {
        options.extend(extra);
    }
    summary
}

/// A job as `GET /jobs/:id` shows it: the summary plus its state history.
pub fn job_detail(job: &Job, base: &str) -> Value {
    let mut value = job_summary(job, base);
    let status: Vec<Value> = job
        .status
        .iter()
        .map(|entry| {
            json!({
                "state": entry.state.as_str(),
                "enter_time": format_time_ms(entry.enter_ms),
                "exit_time": entry.exit_ms.map(format_time_ms),
            })
        })
        .collect();
    value["status"] = json!(status);
    value
}

fn duration_seconds(run: &NodeRun, now_ms: u64) -> Value {
    match (run.start_ms, run.finish_ms) {
        (Some(start), Some(finish)) => json!((finish.saturating_sub(start)) as f64 / 1000.0),
        (Some(start), None) => json!((now_ms.saturating_sub(start)) as f64 / 1000.0),
        _ => Value::Null,
    }
}

fn run_result(run: &NodeRun, job: &Job, node: &str) -> Value {
    if job.spec.task.is_some() {
        return super::task_views::task_result(run, node);
    }
    let Some(result) = &run.result else {
        return Value::Null;
    };
    json!({
        "status": result.status,
        "metrics": result.metrics,
        "configuration_version": result.configuration_version,
        "transaction_uuid": result.transaction_uuid,
        "environment": result.environment.clone().unwrap_or_else(|| job.spec.environment.clone()),
        "exit_code": result.exit_code,
        "noop": {"noop": job.spec.noop, "no_noop": job.spec.no_noop},
        "message": result.message,
        "hash": result.report_sha256,
        "run_noop": result.noop,
        "noop_pending": result.noop_pending,
        "run_time": result.run_time_ms.map(|ms| ms as f64 / 1000.0),
        "events": result.events,
    })
}

/// One node's run, as `GET /jobs/:id/nodes` lists it. `now_ms` is the replicated clock, so
/// every node renders the same duration for a running node.
pub fn node_item(job: &Job, index: usize, now_ms: u64) -> Value {
    let run = &job.runs[index];
    let planned = &job.plan.nodes()[index];
    let mut details = json!({"message": run.explanation()});
    if run.state == NodeState::Running
        && let Some(start) = run.start_ms
    {
        details["run-time"] = json!(now_ms.saturating_sub(start) / 1000);
    }
    let components: Vec<Value> = planned
        .components
        .iter()
        .map(|c| json!({"component": c.component, "application": c.application}))
        .collect();
    json!({
        "name": planned.name,
        "state": run.state.as_str(),
        "attempt": run.attempt,
        "start_timestamp": run.start_ms.map(format_time_ms),
        "finish_timestamp": run.finish_ms.map(format_time_ms),
        "duration": duration_seconds(run, now_ms),
        "timestamp": run.finish_ms.or(run.start_ms).map(format_time_ms),
        "transaction_uuid": run.transaction_id,
        "details": details,
        "result": run_result(run, job, &planned.name),
        "components": components,
    })
}

/// One event of `job`, its message rendered now (the state holds only facts).
pub fn event_item(event: &JobEvent, job: &Job) -> Value {
    json!({
        "id": event.id.to_string(),
        "type": event.kind.as_str(),
        "timestamp": format_time_ms(event.timestamp_ms),
        "details": {"node": event.node, "detail": {}},
        "message": event.message(job),
    })
}

pub fn inventory_item(
    state: &ClusterState,
    name: &str,
    addr_of: &dyn Fn(u64) -> Option<String>,
) -> Value {
    match state.inventory().get(name) {
        Some(record) if record.connected => json!({
            "name": name,
            "connected": true,
            "broker": format!("porch://{}", addr_of(record.via_node).unwrap_or_else(|| record.via_node.to_string())),
            "orchestrator_node": record.via_node,
            "timestamp": format_time_ms(record.since_ms),
        }),
        Some(record) => json!({
            "name": name,
            "connected": false,
            "disconnected_since": format_time_ms(record.since_ms),
        }),
        None => json!({"name": name, "connected": false}),
    }
}
