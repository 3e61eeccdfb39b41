//! PE's scheduled jobs API: `POST /scheduled_jobs/environment_jobs`, `GET` (a page, or one),
//! and `DELETE /scheduled_jobs/environment_jobs/:id`. A schedule is created through the log on
//! the caller's behalf (`apply` checks the token and the right to run what it schedules);
//! the leader's `schedule_firing` loop fires it.

use super::error::ApiError;
use super::{ApiState, schedule_request};
use crate::access::principal::{Principal, refusal_error};
use crate::clock::format_time_ms;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use porch_core::access::permission::Action;
use porch_core::schedule::{
    OccurrenceOutcome, OccurrenceRecord, Schedule, ScheduleEnd, ScheduleId, SkipReason,
};
use porch_core::{Command, Outcome, Rejection, Target};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most schedules one page holds.
const PAGE_ITEMS_MAX: usize = 1000;

fn not_found(id: impl std::fmt::Display) -> ApiError {
    ApiError::kind(
        StatusCode::NOT_FOUND,
        "puppetlabs.orchestrator/unknown-job",
        format!("no scheduled job {id}"),
    )
    .with_details(json!({"scheduled_job": id.to_string()}))
}

fn parse_id(text: &str) -> Result<ScheduleId, ApiError> {
    text.parse::<u64>()
        .map(ScheduleId)
        .map_err(|_| ApiError::validation(format!("scheduled job id {text:?} is not an integer")))
}

pub fn schedule_url(base: &str, id: ScheduleId) -> String {
    format!("{base}/orchestrator/v1/scheduled_jobs/environment_jobs/{id}")
}

pub async fn create(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now_ms = state.consensus.clock().now_ms();
    let (owner, codedir) = (principal.actor.clone(), state.codedir.clone());
    // A task schedule reads and hashes the task's file: off the async workers.
    let new = crate::blocking::off_the_runtime(move || {
        schedule_request::parse(&body, owner, now_ms, &codedir)
    })
    .await
    .map_err(|e| ApiError::internal(format!("checking the schedule did not finish: {e}")))??;
    let request_id = state.request_id(&headers)?;
    let spec = &new.work.spec;
    // An environment with no code is unknown (a one-off deploy of named nodes is allowed
    // without code; a schedule names something that must exist for as long as it runs).
    if !porch_lang::environment::valid_environment_name(&spec.environment)
        || !state
            .codedir
            .join("environments")
            .join(&spec.environment)
            .is_dir()
    {
        return Err(ApiError::unknown_environment(&spec.environment));
    }
    // Planned now, as a submission would be: a target that cannot be planned is refused
    // here, and the planned nodes are what the permission is checked against.
    let report = crate::planner::plan_job(
        spec,
        &state.codedir,
        &state.consensus.view,
        state.puppetdb.as_deref(),
    )
    .await?;
    let nodes: Vec<String> = report.plan.nodes().iter().map(|n| n.name.clone()).collect();
    {
        let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
        principal.require(&state, &Action::for_job(spec, &names))?;
    }
    let command = Command::CreateSchedule {
        schedule: new,
        nodes,
    };
    let outcome = state
        .consensus
        .write_on_behalf(Some(request_id), command, Some(principal.origin()))
        .await?;
    match outcome {
        Outcome::ScheduleCreated { schedule_id } => {
            let base = state.base_url(&headers);
            Ok((
                StatusCode::OK,
                Json(json!({"scheduled_job": {
                    "id": schedule_url(&base, schedule_id),
                    "name": schedule_id.to_string(),
                }})),
            ))
        }
        Outcome::Rejected(Rejection::Access(refusal)) => {
            Err(refusal_error(&refusal, Some(&principal.actor)))
        }
        Outcome::Rejected(Rejection::Invalid(why)) if why.contains("in the past") => Err(
            ApiError::kind(StatusCode::BAD_REQUEST, schedule_request::INVALID_TIME, why),
        ),
        Outcome::Rejected(Rejection::Invalid(why)) => Err(ApiError::validation(why)),
        other => Err(ApiError::internal(format!(
            "unexpected outcome of a schedule creation: {other:?}"
        ))),
    }
}

pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let number = |name: &str| -> Result<Option<usize>, ApiError> {
        params
            .get(name)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    ApiError::validation(format!(
                        "'{name}' must be a non-negative integer, got {v:?}"
                    ))
                })
            })
            .transpose()
    };
    let limit = number("limit")?;
    let offset = number("offset")?.unwrap_or(0);
    let descending = match params.get("order").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "'order' must be asc or desc, got {other:?}"
            )));
        }
    };
    let order_by = params
        .get("order_by")
        .map(String::as_str)
        .unwrap_or("next_run_time");
    if !matches!(
        order_by,
        "next_run_time" | "environment" | "owner" | "name" | "type"
    ) {
        return Err(ApiError::validation(format!(
            "'order_by' must be one of next_run_time, environment, owner, name, type; got {order_by:?}"
        )));
    }
    let type_filter = match params.get("type").map(String::as_str) {
        None => None,
        Some(t @ ("deploy" | "task" | "plan")) => Some(t.to_string()),
        Some(other) => {
            return Err(ApiError::validation(format!(
                "'type' must be deploy, task or plan, got {other:?}"
            )));
        }
    };
    state.consensus.read_barrier().await?;
    let base = state.base_url(&headers);
    // The map is persistent: this copy is O(1), and sorting runs without the state's lock.
    let schedules = state
        .consensus
        .view
        .read()
        .cluster
        .schedules()
        .all()
        .clone();
    let mut selected: Vec<&Schedule> = schedules
        .values()
        .filter(|s| {
            type_filter
                .as_deref()
                .is_none_or(|t| s.work.type_name() == t)
        })
        .collect();
    let key = |s: &Schedule| -> (String, u64, u64) {
        match order_by {
            // Ended schedules have no next run: last.
            "next_run_time" => (String::new(), s.next_due_ms().unwrap_or(u64::MAX), s.id.0),
            "environment" => (s.work.environment().to_string(), 0, s.id.0),
            "owner" => (s.owner.login.clone(), 0, s.id.0),
            "type" => (s.work.type_name().to_string(), 0, s.id.0),
            _ => (String::new(), 0, s.id.0),
        }
    };
    selected.sort_by_cached_key(|s| key(s));
    if descending {
        selected.reverse();
    }
    let total = selected.len();
    let page = limit.unwrap_or(PAGE_ITEMS_MAX).min(PAGE_ITEMS_MAX);
    let items: Vec<Value> = selected
        .into_iter()
        .skip(offset)
        .take(page)
        .map(|s| render(s, &base))
        .collect();
    Ok(Json(json!({
        "items": items,
        "pagination": {"limit": limit, "offset": offset, "total": total},
    })))
}

pub async fn show(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    state.consensus.read_barrier().await?;
    let base = state.base_url(&headers);
    let applied = state.consensus.view.read();
    let schedule = applied
        .cluster
        .schedules()
        .get(id)
        .ok_or_else(|| not_found(id))?;
    Ok(Json(render(schedule, &base)))
}

pub async fn delete(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let request_id = state.request_id(&headers)?;
    let outcome = state
        .consensus
        .write_on_behalf(
            Some(request_id),
            Command::DeleteSchedule { schedule_id: id },
            Some(principal.origin()),
        )
        .await?;
    match outcome {
        Outcome::ScheduleDeleted { .. } => Ok(StatusCode::NO_CONTENT),
        Outcome::Rejected(Rejection::UnknownSchedule(id)) => Err(not_found(id)),
        Outcome::Rejected(Rejection::Access(refusal)) => {
            Err(refusal_error(&refusal, Some(&principal.actor)))
        }
        other => Err(ApiError::internal(format!(
            "unexpected outcome of a schedule deletion: {other:?}"
        ))),
    }
}

/// The scheduled command's `input`, as `POST /command/deploy` or `/command/task` takes it
/// (a task's sensitive parameters masked).
fn input(spec: &porch_core::JobSpec) -> Value {
    let scope = match &spec.target {
        Target::Nodes(nodes) => json!({"nodes": nodes}),
        Target::Query(query) => json!({"query": query}),
        Target::Application(app) => json!({"application": app}),
    };
    if let Some(task) = &spec.task {
        return json!({
            "environment": spec.environment,
            "scope": scope,
            "task": task.name,
            "params": super::task_views::shown_params(task),
            "noop": spec.noop,
            "description": spec.description,
            "timeout": task.timeout_secs,
        });
    }
    json!({
        "environment": spec.environment,
        "scope": scope,
        "noop": spec.noop,
        "no_noop": spec.no_noop,
        "concurrency": spec.concurrency,
        "enforce_environment": spec.enforce_environment,
        "debug": spec.debug,
        "trace": spec.trace,
        "evaltrace": spec.evaltrace,
        "description": spec.description,
    })
}

/// Words for a recorded decision, chosen at read time.
fn record(record: &OccurrenceRecord, base: &str) -> Value {
    let (outcome, detail) = match &record.outcome {
        OccurrenceOutcome::Fired { job_id } => (
            "fired",
            json!({"job": {"id": format!("{base}/orchestrator/v1/jobs/{job_id}"), "name": job_id.to_string()}}),
        ),
        OccurrenceOutcome::Skipped(SkipReason::Overlap { running_job }) => (
            "skipped",
            json!({"reason": "overlap", "message": format!("job {running_job} of the previous occurrence was still running")}),
        ),
        OccurrenceOutcome::Skipped(SkipReason::Missed) => (
            "skipped",
            json!({"reason": "missed", "message": "fell due while the cluster had no quorum"}),
        ),
        OccurrenceOutcome::Skipped(SkipReason::PlanFailed { message }) => (
            "skipped",
            json!({"reason": "plan_failed", "message": message}),
        ),
        OccurrenceOutcome::Ended(end) => (
            "stopped",
            json!({"reason": end_reason(end).0, "message": end_reason(end).1}),
        ),
    };
    let mut value = json!({
        "first_occurrence": record.first,
        "last_occurrence": record.last,
        "decided_time": format_time_ms(record.decided_ms),
        "outcome": outcome,
    });
    if let (Value::Object(target), Value::Object(extra)) = (&mut value, detail) {
        target.extend(extra);
    }
    value
}

fn end_reason(end: &ScheduleEnd) -> (&'static str, String) {
    match end {
        ScheduleEnd::Completed => ("completed", "its one occurrence was decided".into()),
        ScheduleEnd::OwnerRemoved => ("owner_removed", "its owner was removed".into()),
        ScheduleEnd::PermissionLost { refusal } => (
            "permission_lost",
            format!("its owner's rights no longer allow it: {refusal}"),
        ),
    }
}

/// A schedule in PE's shape, plus porch's `missed_occurrences`, `stopped`, `occurrences`.
pub fn render(schedule: &Schedule, base: &str) -> Value {
    let spec = &schedule.work.spec;
    let last_run = schedule.last_fired().map(|(occurrence, at_ms, job_id)| {
        json!({
            "time": format_time_ms(at_ms),
            "occurrence": occurrence,
            "job": {"id": format!("{base}/orchestrator/v1/jobs/{job_id}"), "name": job_id.to_string()},
        })
    });
    let userdata: Value = schedule
        .userdata
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_else(|| json!({}));
    json!({
        "id": schedule_url(base, schedule.id),
        "name": schedule.id.to_string(),
        "type": schedule.work.type_name(),
        "enabled": schedule.is_active(),
        "environment": spec.environment,
        "owner": {"id": schedule.owner.id, "login": schedule.owner.login},
        "description": schedule.description.clone().unwrap_or_default(),
        "input": input(spec),
        "userdata": userdata,
        "schedule": {
            "start_time": format_time_ms(schedule.start_ms),
            "interval": schedule.interval_ms.map(|ms| json!({"units": "seconds", "value": ms / 1000})),
            "missed_occurrences": schedule.missed.as_str(),
        },
        "next_run": schedule.next_due_ms().map(|ms| json!({"time": format_time_ms(ms), "occurrence": schedule.next_occurrence})),
        "last_run": last_run,
        "stopped": schedule.ended.as_ref().map(|end| {
            let (reason, message) = end_reason(end);
            json!({"reason": reason, "message": message})
        }),
        "created_timestamp": format_time_ms(schedule.created_ms),
        "fired_total": schedule.fired_total,
        "skipped_total": schedule.skipped_total,
        "occurrences": schedule.history.iter().map(|r| record(r, base)).collect::<Vec<_>>(),
    })
}
