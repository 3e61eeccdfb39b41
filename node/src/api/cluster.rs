//! `GET /status`, the API root, and porch's cluster endpoints (`/cluster`, members).

use super::ApiState;
use super::error::ApiError;
use crate::access::principal::Principal;
use crate::membership::MemberChange;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use porch_core::access::permission::Action;
use porch_core::audit::{AuditAction, AuditRecord, AuditResult};
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn root(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Json<Value> {
    let base = state.base_url(&headers);
    Json(json!({
        "info": {
            "title": "porch orchestrator API",
            "description": "A highly available re-implementation of the Puppet Enterprise Orchestrator API",
            "version": "1",
            "license": "Apache-2.0",
        },
        "status": {"name": "status", "id": format!("{base}/orchestrator/v1/status")},
        "collections": [{"name": "jobs", "id": format!("{base}/orchestrator/v1/jobs")}],
        "commands": [
            {"name": "deploy", "id": format!("{base}/orchestrator/v1/command/deploy")},
            {"name": "stop", "id": format!("{base}/orchestrator/v1/command/stop")},
        ],
    }))
}

/// This node's own view: cheap, answers even without a quorum (for health checks).
pub async fn status(State(state): State<Arc<ApiState>>) -> Json<Value> {
    let metrics = state.consensus.metrics();
    Json(json!({
        "status": if metrics.current_leader.is_some() { "running" } else { "no-leader" },
        "node_id": state.consensus.id,
        "role": format!("{:?}", metrics.state).to_lowercase(),
        "leader": metrics.current_leader,
        "term": metrics.current_term,
        "last_log_index": metrics.last_log_index,
        "last_applied_index": metrics.last_applied.map(|l| l.index),
    }))
}

pub async fn cluster_status(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    let status = state.consensus.cluster_status().await?;
    Ok(Json(
        serde_json::to_value(status).map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMemberBody {
    id: u64,
    addr: String,
    #[serde(default)]
    datacenter: Option<String>,
    /// A non-voting member: replicates the log, serves reads and agents, never votes.
    #[serde(default)]
    learner: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    id: u64,
}

/// Records a membership change (made or failed) in the audit log.
fn audit_member(
    state: &ApiState,
    principal: &Principal,
    action: AuditAction,
    id: u64,
    result: &Result<(), crate::consensus::ConsensusError>,
) {
    state.audit.record(AuditRecord {
        actor: Some(principal.actor.clone()),
        source: principal.source.clone(),
        action,
        target: id.to_string(),
        result: match result {
            Ok(()) => AuditResult::Ok,
            Err(e) => AuditResult::Failed(porch_core::Rejection::Invalid(e.to_string())),
        },
    });
}

/// Checks `change`, applies it through the leader and audits the attempt.
async fn change(
    state: &ApiState,
    principal: &Principal,
    action: AuditAction,
    id: u64,
    change: MemberChange,
) -> Result<(), ApiError> {
    principal.require(state, &Action::Admin)?;
    change.validate().map_err(ApiError::validation)?;
    let result = state.consensus.change_member(change).await;
    audit_member(state, principal, action, id, &result);
    Ok(result?)
}

fn member_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::validation(format!("node id {id:?} is not an integer")))
}

pub async fn add_member(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    principal.require(&state, &Action::Admin)?;
    let body: AddMemberBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::validation(format!(
            "invalid request body (expected {{\"id\": 4, \"addr\": \"host:port\", \"datacenter\": \"eu\", \"learner\": false}}): {e}"
        ))
    })?;
    let added = MemberChange::Add {
        id: body.id,
        addr: body.addr.clone(),
        datacenter: body.datacenter.clone(),
        learner: body.learner,
    };
    change(&state, &principal, AuditAction::MemberAdd, body.id, added).await?;
    Ok(Json(json!({"added": {
        "id": body.id, "addr": body.addr, "datacenter": body.datacenter, "learner": body.learner,
    }})))
}

pub async fn remove_member(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = member_id(&id)?;
    let removed = MemberChange::Remove { id };
    change(&state, &principal, AuditAction::MemberRemove, id, removed).await?;
    Ok(Json(json!({"removed": {"id": id}})))
}

pub async fn promote_member(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = member_id(&id)?;
    let promoted = MemberChange::Promote { id };
    change(&state, &principal, AuditAction::MemberPromote, id, promoted).await?;
    Ok(Json(json!({"promoted": {"id": id}})))
}

pub async fn drain_member(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = member_id(&id)?;
    let drain = MemberChange::Drain { id, draining: true };
    change(&state, &principal, AuditAction::MemberDrain, id, drain).await?;
    Ok(Json(json!({"draining": {"id": id}})))
}

pub async fn undrain_member(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = member_id(&id)?;
    let undrain = MemberChange::Drain {
        id,
        draining: false,
    };
    change(&state, &principal, AuditAction::MemberUndrain, id, undrain).await?;
    Ok(Json(json!({"undrained": {"id": id}})))
}

pub async fn transfer_leader(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    principal.require(&state, &Action::Admin)?;
    let body: TransferBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::validation(format!(
            "invalid request body (expected {{\"id\": 2}}): {e}"
        ))
    })?;
    let transfer = MemberChange::TransferLeader { to: body.id };
    change(
        &state,
        &principal,
        AuditAction::LeaderTransfer,
        body.id,
        transfer,
    )
    .await?;
    Ok(Json(json!({"leader": body.id})))
}
