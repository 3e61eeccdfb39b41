//! Read endpoints over jobs and the inventory. Each first passes the read barrier, so a
//! client that got a 202 from any node sees its job on every node afterwards.

use super::error::ApiError;
use super::{ApiState, base_url, views};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use porch_core::{Job, JobId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most items one page may hold.
pub const PAGE_ITEMS_MAX: usize = 1000;

fn parse_id(text: &str) -> Result<JobId, ApiError> {
    text.parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::validation(format!("job id {text:?} is not an integer")))
}

fn int_param(params: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::validation(format!(
                    "'{name}' must be a non-negative integer, got {v:?}"
                ))
            })
        })
        .transpose()
}

pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = int_param(&params, "limit")?.map(|l| l as usize);
    let offset = int_param(&params, "offset")?.unwrap_or(0) as usize;
    let order_by = params
        .get("order_by")
        .map(String::as_str)
        .unwrap_or("timestamp");
    let descending = match params.get("order").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "'order' must be asc or desc, got {other:?}"
            )));
        }
    };
    let key: fn(&Job) -> (String, u64) = match order_by {
        "timestamp" => |j| (format!("{:020}", j.timestamp_ms()), j.id.0),
        "owner" => |j| (j.spec.owner.clone(), j.id.0),
        "environment" => |j| (j.spec.environment.clone(), j.id.0),
        "name" => |j| (String::new(), j.id.0),
        "state" => |j| (j.state().as_str().to_string(), j.id.0),
        other => {
            return Err(ApiError::validation(format!(
                "'order_by' must be one of owner, timestamp, environment, name, state; got {other:?}"
            )));
        }
    };
    state.consensus.read_barrier().await?;
    let base = base_url(&headers);
    let applied = state.consensus.view.read();
    let mut jobs: Vec<&Job> = applied.cluster.jobs().values().map(|j| &**j).collect();
    jobs.sort_by_key(|j| key(j));
    if descending {
        jobs.reverse();
    }
    let total = jobs.len();
    let page = limit.unwrap_or(PAGE_ITEMS_MAX).min(PAGE_ITEMS_MAX);
    let items: Vec<Value> = jobs
        .into_iter()
        .skip(offset)
        .take(page)
        .map(|j| views::job_summary(j, &base))
        .collect();
    Ok(Json(json!({
        "items": items,
        "pagination": {"limit": limit, "offset": offset, "total": total},
    })))
}

/// Runs `render` on job `id` after the read barrier.
async fn with_job<T>(
    state: &ApiState,
    id: &str,
    render: impl FnOnce(&Job, u64) -> T,
) -> Result<T, ApiError> {
    let id = parse_id(id)?;
    state.consensus.read_barrier().await?;
    let applied = state.consensus.view.read();
    let job = applied
        .cluster
        .job(id)
        .ok_or_else(|| ApiError::unknown_job(id))?;
    Ok(render(job, applied.cluster.clock_ms()))
}

pub async fn show(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let base = base_url(&headers);
    with_job(&state, &id, |job, _| Json(views::job_detail(job, &base))).await
}

pub async fn nodes(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let base = base_url(&headers);
    let limit = int_param(&params, "limit")?
        .map(|l| l as usize)
        .unwrap_or(usize::MAX);
    let offset = int_param(&params, "offset")?.unwrap_or(0) as usize;
    let state_filter = params.get("state").cloned();
    with_job(&state, &id, |job, now| {
        let next = job.events.last().map(|e| e.id.0 + 1).unwrap_or(1);
        let items: Vec<Value> = (0..job.runs.len())
            .filter(|&i| state_filter.as_deref().is_none_or(|s| job.runs[i].state.as_str() == s))
            .skip(offset)
            .take(limit)
            .map(|i| views::node_item(job, i, now))
            .collect();
        Json(json!({
            "next-events": {"id": format!("{base}/orchestrator/v1/jobs/{}/events?start={next}", job.id), "event": next.to_string()},
            "items": items,
        }))
    })
    .await
}

pub async fn events(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let base = base_url(&headers);
    let start = int_param(&params, "start")?.unwrap_or(0);
    with_job(&state, &id, |job, _| {
        let items: Vec<Value> = job
            .events
            .iter()
            .filter(|e| e.id.0 >= start)
            .take(PAGE_ITEMS_MAX)
            .map(views::event_item)
            .collect();
        let next = items
            .last()
            .and_then(|e| e["id"].as_str().and_then(|s| s.parse::<u64>().ok()))
            .map(|last| last + 1)
            .unwrap_or(start.max(1));
        Json(json!({
            "next-events": {"id": format!("{base}/orchestrator/v1/jobs/{}/events?start={next}", job.id), "event": next.to_string()},
            "items": items,
        }))
    })
    .await
}

pub async fn report(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    with_job(&state, &id, |job, now| {
        let items: Vec<Value> = (0..job.runs.len())
            .map(|i| {
                let run = &job.runs[i];
                let name = &job.plan.nodes()[i].name;
                let events: Vec<Value> = job
                    .events
                    .iter()
                    .filter(|e| e.node.as_deref() == Some(name.as_str()))
                    .map(views::event_item)
                    .collect();
                json!({
                    "node": name,
                    "state": run.state.as_str(),
                    "timestamp": crate::clock::format_time_ms(run.finish_ms.or(run.start_ms).unwrap_or(now)),
                    "result": views::node_item(job, i, now)["result"].clone(),
                    "events": events,
                })
            })
            .collect();
        Json(json!({"items": items}))
    })
    .await
}

fn member_addr(state: &ApiState) -> impl Fn(u64) -> Option<String> {
    let members = state.consensus.members();
    move |id| members.get(&id).map(|(addr, _)| addr.clone())
}

pub async fn inventory_all(State(state): State<Arc<ApiState>>) -> Result<Json<Value>, ApiError> {
    state.consensus.read_barrier().await?;
    let addr = member_addr(&state);
    let applied = state.consensus.view.read();
    let items: Vec<Value> = applied
        .cluster
        .inventory()
        .agents()
        .iter()
        .filter(|(_, r)| r.connected)
        .map(|(name, _)| views::inventory_item(&applied.cluster, name, &addr))
        .collect();
    Ok(Json(json!({"items": items})))
}

pub async fn inventory_one(
    State(state): State<Arc<ApiState>>,
    Path(node): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.consensus.read_barrier().await?;
    let addr = member_addr(&state);
    let applied = state.consensus.view.read();
    Ok(Json(views::inventory_item(&applied.cluster, &node, &addr)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryBody {
    nodes: Vec<String>,
}

pub async fn inventory_some(
    State(state): State<Arc<ApiState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: InventoryBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::validation(format!(
            "invalid request body (expected {{\"nodes\": [...]}}): {e}"
        ))
    })?;
    state.consensus.read_barrier().await?;
    let addr = member_addr(&state);
    let applied = state.consensus.view.read();
    let items: Vec<Value> = body
        .nodes
        .iter()
        .map(|name| views::inventory_item(&applied.cluster, name, &addr))
        .collect();
    Ok(Json(json!({"items": items})))
}
