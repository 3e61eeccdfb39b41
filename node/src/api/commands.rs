//! `POST /command/deploy`, `/command/stop`, and porch's `/command/plan`.

use super::error::ApiError;
use super::job_submission::{PlannedJob, submit};
use super::{ApiState, deploy_request};
use crate::access::principal::{Principal, refusal_error};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use porch_core::access::permission::Action;
use porch_core::{Command, JobId, Outcome, Rejection};
use serde_json::{Value, json};
use std::sync::Arc;

async fn plan_off_the_runtime(
    state: &ApiState,
    spec: &porch_core::JobSpec,
) -> Result<crate::planner::PlanReport, ApiError> {
    crate::planner::plan_job(
        spec,
        &state.codedir,
        &state.consensus.view,
        state.puppetdb.as_deref(),
    )
    .await
}

pub async fn deploy(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spec = deploy_request::parse(&body, principal.actor.clone())?;
    let request_id = state.request_id(&headers)?;
    let report = plan_off_the_runtime(&state, &spec).await?;
    let planned = PlannedJob {
        spec,
        plan: report.plan,
        warnings: report.warnings,
    };
    submit(&state, &principal, &headers, request_id, planned).await
}

pub async fn plan(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let spec = deploy_request::parse(&body, principal.actor.clone())?;
    let report = plan_off_the_runtime(&state, &spec).await?;
    let levels = report.plan.levels().map_err(crate::planner::plan_error)?;
    let nodes: Vec<Value> = report
        .plan
        .nodes()
        .iter()
        .zip(&levels)
        .map(|(node, level)| {
            json!({
                "name": node.name,
                "level": level,
                "depends_on": node.depends_on.iter().map(|&d| report.plan.nodes()[d as usize].name.clone()).collect::<Vec<_>>(),
                "components": node.components.iter().map(|c| json!({"component": c.component, "application": c.application})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let rendered = crate::planner::render_plan(&report, &spec);
    Ok(Json(json!({
        "environment": spec.environment,
        "target": spec.target.describe(),
        "concurrency": spec.concurrency,
        "node_count": report.plan.len(),
        "applications": report.applications,
        "warnings": report.warnings,
        "nodes": nodes,
        "rendered": rendered,
    })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    job: Value,
}

/// PE sends job ids as strings; accept integers too, nothing else.
pub fn parse_job_id(value: &Value) -> Result<JobId, ApiError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(ApiError::validation(format!(
                "'job' must be a job id, got {other}"
            )));
        }
    };
    text.trim()
        .parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::validation(format!("'job': {text:?} is not an integer job id")))
}

pub async fn stop(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: StopBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::validation(format!("invalid request body: {e}")))?;
    let job_id = parse_job_id(&body.job)?;
    let request_id = state.request_id(&headers)?;
    // The early answer; `apply` checks the permission on the job as it is then.
    let known = state.consensus.view.read().cluster.job(job_id).map(|job| {
        let nodes: Vec<String> = job.plan.nodes().iter().map(|n| n.name.clone()).collect();
        (job.spec.clone(), nodes)
    });
    if let Some((spec, nodes)) = known {
        let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
        principal.require(&state, &Action::for_job(&spec, &nodes))?;
    }
    let outcome = state
        .consensus
        .write_on_behalf(
            Some(request_id),
            Command::StopJob { job_id },
            Some(principal.origin()),
        )
        .await?;
    match outcome {
        Outcome::JobStopped {
            job_id,
            node_states,
        } => {
            let base = state.base_url(&headers);
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"job": {
                    "id": format!("{base}/orchestrator/v1/jobs/{job_id}"),
                    "name": job_id.to_string(),
                    "nodes": node_states,
                }})),
            ))
        }
        Outcome::Rejected(Rejection::UnknownJob(id)) => Err(ApiError::unknown_job(id)),
        Outcome::Rejected(Rejection::Access(refusal)) => {
            Err(refusal_error(&refusal, Some(&principal.actor)))
        }
        other => Err(ApiError::internal(format!(
            "unexpected outcome of a stop: {other:?}"
        ))),
    }
}
