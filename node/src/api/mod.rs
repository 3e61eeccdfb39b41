//! The public HTTP API: PE's Orchestrator API v1 under `/orchestrator/v1`, served by every
//! node. Writes go through [`Consensus::write`] (forwarded to the leader when needed); reads
//! first pass a linearizable read barrier, then render the local applied state.

pub mod audit;
pub mod backup;
pub mod cluster;
pub mod commands;
pub mod deploy_request;
pub mod environments;
pub mod error;
pub mod job_filter;
pub mod job_submission;
pub mod jobs;
pub mod rbac;
pub mod schedule_request;
pub mod schedules;
pub mod status;
pub mod task_request;
pub mod task_views;
pub mod tasks;
pub mod views;

use crate::access::audit_recorder::AuditRecorder;
use crate::access::principal::{require_token, require_view};
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
    /// Refusals and membership changes on their way to the audit log.
    pub audit: Arc<AuditRecorder>,
    /// `https` unless the node serves plain HTTP (`--insecure-http`): URLs in responses.
    pub scheme: &'static str,
    /// Where `--query` targets are looked up, when the node has `--puppetdb-url`.
    pub puppetdb: Option<Arc<crate::puppetdb::PuppetDb>>,
    /// Makes node-generated request ids unique: `<node>-<boot ms>-<counter>`.
    boot_ms: u64,
    next_request: AtomicU64,
}

impl ApiState {
    pub fn new(
        consensus: Arc<Consensus>,
        codedir: PathBuf,
        audit: Arc<AuditRecorder>,
        scheme: &'static str,
    ) -> ApiState {
        let boot_ms = consensus.clock().now_ms();
        ApiState {
            consensus,
            codedir,
            audit,
            scheme,
            puppetdb: None,
            boot_ms,
            next_request: AtomicU64::new(0),
        }
    }

    pub fn with_puppetdb(mut self, puppetdb: Option<Arc<crate::puppetdb::PuppetDb>>) -> ApiState {
        self.puppetdb = puppetdb;
        self
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

impl ApiState {
    /// `https://host:port` as the client addressed this node, for the URLs inside responses.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| h.len() <= 255 && !h.contains(['/', ' ']))
            .unwrap_or("localhost");
        format!("{}://{host}", self.scheme)
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    let v1 = Router::new()
        .route("/command/deploy", post(commands::deploy))
        .route("/command/plan", post(commands::plan))
        .route("/command/stop", post(commands::stop))
        .route("/command/task", post(tasks::run))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{module}/{task}", get(tasks::show))
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
        .route("/cluster/backup", get(backup::backup))
        .route("/cluster/members", post(cluster::add_member))
        .route("/cluster/members/{id}", delete(cluster::remove_member))
        .route(
            "/cluster/members/{id}/promote",
            post(cluster::promote_member),
        )
        .route("/cluster/members/{id}/drain", post(cluster::drain_member))
        .route(
            "/cluster/members/{id}/undrain",
            post(cluster::undrain_member),
        )
        .route("/cluster/leader", post(cluster::transfer_leader))
        .route("/audit", get(audit::list))
        .route(
            "/scheduled_jobs/environment_jobs",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/scheduled_jobs/environment_jobs/{id}",
            get(schedules::show).delete(schedules::delete),
        )
        // Every permission includes viewing; handlers check anything more.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_view,
        ));
    let rbac = Router::new()
        .route("/v1/users/current", get(rbac::current_user))
        .route("/v1/users", get(rbac::list_users).post(rbac::add_user))
        .route(
            "/v1/users/{login}",
            delete(rbac::remove_user).put(rbac::update_user),
        )
        .route("/v1/roles", get(rbac::list_roles).post(rbac::add_role))
        .route("/v1/roles/{name}", delete(rbac::remove_role));
    let needs_token = Router::new()
        .nest("/orchestrator/v1", v1)
        .nest("/rbac-api", rbac)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    // Logins and revocations authenticate with what they carry (a password, the token).
    let public = Router::new()
        .route("/rbac-api/v1/auth/token", post(rbac::login))
        .route("/rbac-api/v2/tokens", post(rbac::revoke_many))
        .route("/rbac-api/v2/tokens/{token}", delete(rbac::revoke_one))
        .route("/orchestrator", get(cluster::root));
    needs_token
        .merge(public)
        .fallback(fallback)
        .layer(axum::middleware::map_request(host_from_authority))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .with_state(state)
}

/// HTTP/2 clients name the host in the request's authority, not in a `Host` header: copy it,
/// so the URLs in responses name the host the client used.
async fn host_from_authority(mut request: axum::extract::Request) -> axum::extract::Request {
    if !request.headers().contains_key(axum::http::header::HOST)
        && let Some(value) = request
            .uri()
            .authority()
            .and_then(|a| axum::http::HeaderValue::from_str(a.as_str()).ok())
    {
        request
            .headers_mut()
            .insert(axum::http::header::HOST, value);
    }
    request
}

async fn fallback(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}
