//! What every endpoint that creates a job does once the job is planned (`/command/deploy`,
//! `/command/task`): authorize the caller over the plan's nodes, propose the job, and answer
//! PE's 202 with the job's id.

use super::ApiState;
use super::error::ApiError;
use crate::access::principal::{Principal, refusal_error};
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use porch_core::access::permission::Action;
use porch_core::{Command, JobSpec, Outcome, Plan, Rejection};
use serde_json::{Value, json};

/// A request made into a job, ready to propose.
#[derive(Debug)]
pub struct PlannedJob {
    pub spec: JobSpec,
    pub plan: Plan,
    /// What the planner noticed and the caller should read (PE's `warnings`).
    pub warnings: Vec<String>,
}

/// Proposes `planned` on behalf of `principal`, once under `request_id` (a retry with the same
/// id answers the same job).
pub async fn submit(
    state: &ApiState,
    principal: &Principal,
    headers: &HeaderMap,
    request_id: String,
    planned: PlannedJob,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let PlannedJob {
        spec,
        plan,
        warnings,
    } = planned;
    {
        let nodes: Vec<&str> = plan.nodes().iter().map(|n| n.name.as_str()).collect();
        principal.require(state, &Action::for_job(&spec, &nodes))?;
    }
    let command = Command::SubmitJob {
        spec,
        plan,
        // Stamped by the leader when it proposes.
        start_under_cap: None,
    };
    let outcome = state
        .consensus
        .write_on_behalf(Some(request_id), command, Some(principal.origin()))
        .await?;
    match outcome {
        Outcome::JobSubmitted { job_id, .. } => {
            let base = state.base_url(headers);
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"job": {
                    "id": format!("{base}/orchestrator/v1/jobs/{job_id}"),
                    "name": job_id.to_string(),
                    "warnings": warnings,
                }})),
            ))
        }
        Outcome::Rejected(Rejection::Access(refusal)) => {
            Err(refusal_error(&refusal, Some(&principal.actor)))
        }
        other => Err(ApiError::internal(format!(
            "unexpected outcome of a job submission: {other:?}"
        ))),
    }
}
