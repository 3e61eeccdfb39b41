//! `GET /orchestrator/v1/audit`: the replicated audit log, newest first, paged (admin only).

use super::ApiState;
use super::error::ApiError;
use crate::access::principal::{Principal, refusal_error};
use crate::clock::format_time_ms;
use axum::Json;
use axum::extract::{Query, State};
use porch_core::access::permission::Action;
use porch_core::audit::{AuditEntry, AuditResult};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const PAGE_MAX: usize = 1000;

fn entry_view(entry: &AuditEntry) -> Value {
    let record = &entry.record;
    let (outcome, reason) = match &record.result {
        AuditResult::Ok => ("ok", Value::Null),
        AuditResult::Refused(refusal) => {
            let error = refusal_error(refusal, record.actor.as_ref());
            ("refused", json!({"kind": error.kind, "msg": error.msg}))
        }
        AuditResult::Failed(rejection) => ("failed", json!({"msg": rejection.to_string()})),
    };
    json!({
        "id": entry.id,
        "timestamp": format_time_ms(entry.time_ms),
        "user": record.actor.as_ref().map(|a| json!({"id": a.id, "login": a.login})),
        "source": record.source,
        "action": record.action.name(),
        "target": record.target,
        "outcome": outcome,
        "reason": reason,
    })
}

pub async fn list(
    State(state): State<Arc<ApiState>>,
    axum::Extension(principal): axum::Extension<Principal>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    principal.require(&state, &Action::Admin)?;
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        match params.get(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                ApiError::validation(format!(
                    "'{name}' must be a non-negative integer, got {text:?}"
                ))
            }),
        }
    };
    let offset = number("offset", 0)?;
    let limit = number("limit", 100)?.min(PAGE_MAX);
    let user = params.get("user");
    state.consensus.read_barrier().await?;
    // A persistent vector: the copy is O(1), and the walk below runs without the lock.
    let entries = state
        .consensus
        .view
        .read()
        .cluster
        .audit()
        .entries()
        .clone();
    let matching = entries.iter().rev().filter(|e| match user {
        Some(login) => e.record.actor.as_ref().is_some_and(|a| &a.login == login),
        None => true,
    });
    let (mut total, mut items) = (0usize, Vec::new());
    for entry in matching {
        if total >= offset && items.len() < limit {
            items.push(entry_view(entry));
        }
        total += 1;
    }
    Ok(Json(json!({
        "items": items,
        "pagination": {"offset": offset, "limit": limit, "total": total},
    })))
}
