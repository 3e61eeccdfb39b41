//! The public HTTP API: PE's Orchestrator API v1 under `/orchestrator/v1`, served by every
//! node. Writes go through [`Consensus::write`] (forwarded to the leader when needed); reads
//! first pass a linearizable read barrier, then render the local applied state.

pub mod cluster;
pub mod commands;
pub mod deploy_request;
pub mod environments;
pub mod error;
pub mod jobs;
pub mod views;

use crate::consensus::Consensus;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Uri};
use axum::routing::{delete, get, post};
use error::ApiError;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest request body accepted (a deploy of 100,000 node names fits).
pub const REQUEST_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

pub struct ApiState {
    pub consensus: Arc<Consensus>,
    pub codedir: PathBuf,
    /// Makes node-generated request ids unique: `<node>-<boot ms>-<counter>`.
    boot_ms: u64,
    next_request: AtomicU64,
}

impl ApiState {
    pub fn new(consensus: Arc<Consensus>, codedir: PathBuf) -> ApiState {
        let boot_ms = consensus.clock().now_ms();
        ApiState {
            consensus,
            codedir,
            boot_ms,
            next_request: AtomicU64::new(0),
        }
    }

    /// The client's `X-Porch-Request-Id` (so its retries dedupe), or a fresh one.
    pub fn request_id(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        if let Some(value) = headers.get("x-porch-request-id") {
            let id = value
                .to_str()
                .ok()
                .filter(|s| {
                    !s.is_empty()
                        && s.len() <= porch_core::command::REQUEST_ID_BYTES_MAX - 2
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                })
                .ok_or_else(|| {
                    ApiError::validation(
                        "X-Porch-Request-Id must be 1-126 letters, digits, '-' or '_'",
                    )
                })?;
            return Ok(format!("c-{id}"));
        }
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        Ok(format!("n-{}-{}-{n}", self.consensus.id, self.boot_ms))
    }
}

/// Who submitted a request. porch has no RBAC yet: the login comes from `X-Porch-User`.
pub fn owner(headers: &HeaderMap) -> String {
    headers
        .get("x-porch-user")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .unwrap_or("anonymous")
        .to_string()
}

/// `http://host:port` as the client addressed this node, for the URLs inside responses.
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

pub fn router(state: Arc<ApiState>) -> Router {
    let v1 = Router::new()
        .route("/command/deploy", post(commands::deploy))
        .route("/command/plan", post(commands::plan))
        .route("/command/stop", post(commands::stop))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/nodes", get(jobs::nodes))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/jobs/{id}/report", get(jobs::report))
        .route(
            "/inventory",
            get(jobs::inventory_all).post(jobs::inventory_some),
        )
        .route("/inventory/{node}", get(jobs::inventory_one))
        .route("/environments", get(environments::list))
        .route("/environments/{env}", get(environments::show))
        .route(
            "/environments/{env}/applications",
            get(environments::applications),
        )
        .route(
            "/environments/{env}/instances",
            get(environments::instances),
        )
        .route("/environments/{env}/app_show", get(environments::app_show))
        .route("/status", get(cluster::status))
        .route("/cluster", get(cluster::cluster_status))
        .route("/cluster/members", post(cluster::add_member))
        .route("/cluster/members/{id}", delete(cluster::remove_member));
    Router::new()
        .nest("/orchestrator/v1", v1)
        .route("/orchestrator", get(cluster::root))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .with_state(state)
}

async fn fallback(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}
