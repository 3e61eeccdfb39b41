//! PE's environment endpoints, read from this node's code directory, plus porch's
//! `app_show` (the text `puppet app show` prints).

use super::ApiState;
use super::error::ApiError;
use crate::planner::lang_error;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use porch_lang::Environment;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

fn load(state: &ApiState, env: &str) -> Result<Environment, ApiError> {
    Environment::load(&state.codedir, env).map_err(lang_error)
}

pub async fn list(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Json<Value> {
    let base = state.base_url(&headers);
    let items: Vec<Value> = porch_lang::list_environments(&state.codedir)
        .into_iter()
        .map(|name| json!({"id": format!("{base}/orchestrator/v1/environments/{name}"), "name": name}))
        .collect();
    Json(json!({"items": items}))
}

pub async fn show(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(env): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let environment = load(&state, &env)?;
    let base = state.base_url(&headers);
    let applications: Vec<Value> = environment
        .applications
        .keys()
        .map(|name| json!({"id": format!("{base}/orchestrator/v1/environments/{env}/applications"), "name": name}))
        .collect();
    Ok(Json(json!({
        "id": format!("{base}/orchestrator/v1/environments/{env}"),
        "name": env,
        "applications": applications,
        "settings": {
            "modulepath": [state.codedir.join("environments").join(&env).join("modules").display().to_string()],
            "manifest": state.codedir.join("environments").join(&env).join("manifests").display().to_string(),
        },
    })))
}

pub async fn applications(
    State(state): State<Arc<ApiState>>,
    Path(env): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let environment = load(&state, &env)?;
    Ok(Json(
        porch_lang::views::applications_json(&environment).map_err(lang_error)?,
    ))
}

pub async fn instances(
    State(state): State<Arc<ApiState>>,
    Path(env): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let environment = load(&state, &env)?;
    let filter = params.get("application").map(String::as_str);
    Ok(Json(
        porch_lang::views::instances_json(&environment, filter).map_err(lang_error)?,
    ))
}

pub async fn app_show(
    State(state): State<Arc<ApiState>>,
    Path(env): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let environment = load(&state, &env)?;
    let filter = params.get("application").map(String::as_str);
    let rendered = porch_lang::render::render_app_show(&environment, filter).map_err(lang_error)?;
    Ok(Json(json!({"rendered": rendered})))
}
