//! PE's task endpoints: `GET /tasks?environment=`, `GET /tasks/:module/:task`, and
//! `POST /command/task`, which creates a job of type task (see [`super::task_request`]).

use super::ApiState;
use super::error::ApiError;
use super::job_submission::submit;
use super::task_request::{task_error, task_job};
use crate::access::principal::Principal;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use porch_lang::tasks::catalog::task_name;
use porch_lang::tasks::{find_task, list_tasks};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

fn environment_of(params: &BTreeMap<String, String>) -> String {
    params
        .get("environment")
        .cloned()
        .unwrap_or_else(|| "production".into())
}

/// Runs a catalogue read (directory listings, file hashes) off the async workers.
async fn off_the_runtime<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, porch_lang::tasks::TaskError> + Send + 'static,
) -> Result<T, ApiError> {
    crate::blocking::off_the_runtime(read)
        .await
        .map_err(|e| ApiError::internal(format!("reading tasks did not finish: {e}")))?
        .map_err(task_error)
}

pub async fn list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let environment = environment_of(&params);
    let (codedir, env) = (state.codedir.clone(), environment.clone());
    let names = off_the_runtime(move || list_tasks(&codedir, &env)).await?;
    let base = state.base_url(&headers);
    let items: Vec<Value> = names
        .iter()
        .map(|name| {
            let path = match name.split_once("::") {
                Some((module, short)) => format!("{module}/{short}"),
                None => format!("{name}/init"),
            };
            json!({"id": format!("{base}/orchestrator/v1/tasks/{path}"), "name": name})
        })
        .collect();
    Ok(Json(json!({
        "environment": {"name": environment, "code_id": null},
        "items": items,
    })))
}

pub async fn show(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((module, task)): Path<(String, String)>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let environment = environment_of(&params);
    let name = task_name(&module, &task);
    if !porch_lang::tasks::catalog::valid_segment(&module)
        || !porch_lang::tasks::catalog::valid_segment(&task)
    {
        return Err(ApiError::validation(format!(
            "{module}/{task} is not a valid task (lowercase letters, digits and '_')"
        )));
    }
    let (codedir, env) = (state.codedir.clone(), environment.clone());
    let found = off_the_runtime(move || find_task(&codedir, &env, &name)).await?;
    let base = state.base_url(&headers);
    Ok(Json(json!({
        "id": format!("{base}/orchestrator/v1/tasks/{module}/{task}"),
        "name": found.name,
        "environment": {"name": environment, "code_id": null},
        "metadata": found.metadata.raw,
        "files": [{
            "filename": found.file.file_name,
            "uri": {
                "path": format!("/{}/tasks/{}", found.module, found.file.file_name),
                "params": {"environment": environment},
            },
            "sha256": found.file.sha256,
            "size_bytes": found.file.size_bytes,
        }],
    })))
}

/// `POST /command/task`: 202 with the job, as PE answers.
pub async fn run(
    State(state): State<Arc<ApiState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request_id = state.request_id(&headers)?;
    let planned = task_job(&state, &body, principal.actor.clone()).await?;
    submit(&state, &principal, &headers, request_id, planned).await
}
