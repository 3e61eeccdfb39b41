//! The web console, served by every node under `/console` (`/` redirects there).
//!
//! Server-rendered HTML with one small script (`assets/console.js`) and one stylesheet, both
//! compiled into the binary. Every page is a client of the node's own API, called in process
//! ([`in_process::InProcessApi`]) with the session's token, so the console can do exactly
//! what its user may do through the API and no more. Pages:
//!
//! - `jobs.rs`: the job list (filters, paging), a job's page (its plan by levels, each node's
//!   state, durations, messages; stop, run again) and a node's report;
//! - `run.rs`: the run form, its plan preview (`POST /command/plan`) and the submission;
//! - `apps.rs`, `app_graph.rs`: environments, applications, instances and the
//!   produces/consumes graph as SVG;
//! - `cluster.rs`: members, leader, replication and contact, agents;
//! - `live.rs`: server-sent events the script follows (a job's events, a node's raft view),
//!   with CORS for members so a page fails over to another node when its own dies;
//! - `session.rs`: login (a cookie holding an RBAC token), logout, CSRF.

pub mod app_graph;
mod apps;
pub mod assets;
mod cluster;
pub mod html;
pub mod in_process;
mod jobs;
pub mod live;
mod run;
pub mod session;

use crate::consensus::Consensus;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use in_process::{ApiFailure, InProcessApi};
use std::sync::Arc;

/// What the console's handlers share.
pub struct ConsoleState {
    pub api: InProcessApi,
    pub consensus: Arc<Consensus>,
    pub sources: Arc<crate::metrics::Sources>,
    /// `https`, or `http` under `--insecure-http` (then the cookie cannot be Secure).
    pub scheme: &'static str,
    pub secure_cookie: bool,
}

impl ConsoleState {
    /// Each member's base URL as a browser reaches it (`https://host:port`), in id order.
    pub fn member_urls(&self) -> Vec<String> {
        self.consensus
            .members()
            .values()
            .map(|(addr, _)| format!("{}://{}", self.scheme, porch_raft::member_socket_addr(addr)))
            .collect()
    }
}

/// The console's routes. `api` is the node's API router, which pages call in process.
pub fn router(
    api: Router,
    consensus: Arc<Consensus>,
    sources: Arc<crate::metrics::Sources>,
    scheme: &'static str,
) -> Router {
    let state = Arc::new(ConsoleState {
        api: InProcessApi::new(api),
        consensus,
        sources,
        scheme,
        secure_cookie: scheme == "https",
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| async { Redirect::to("/console/jobs") }))
        .route(
            "/console/login",
            get(session::login_form).post(session::login),
        )
        .route("/console/logout", post(session::logout))
        .route("/console/jobs", get(jobs::list))
        .route("/console/jobs/{id}", get(jobs::show))
        .route("/console/jobs/{id}/nodes/{node}", get(jobs::node))
        .route(
            "/console/jobs/{id}/stop",
            post(jobs::stop).options(live::preflight),
        )
        .route("/console/run", get(run::form).post(run::submit))
        .route("/console/run/preview", post(run::preview))
        .route("/console/apps", get(apps::show))
        .route("/console/cluster", get(cluster::show))
        .route(
            "/console/live/jobs/{id}",
            get(live::job_events).options(live::preflight),
        )
        .route(
            "/console/live/node",
            get(live::node_view).options(live::preflight),
        )
        .route("/console/assets/{file}", get(assets::serve))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            live::cors_for_members,
        ))
        .with_state(state)
}

/// An API failure as a page: the API's own message, with the status it answered.
pub fn error_page(
    console: &ConsoleState,
    session: Option<&session::Session>,
    failure: &ApiFailure,
) -> Response {
    let members = console.member_urls();
    let title = match failure.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::SERVICE_UNAVAILABLE => "Cluster unavailable",
        _ => "Error",
    };
    let body = format!(
        "<h1>{title}</h1>{}<p><a href=\"/console/jobs\">Back to the jobs</a></p>",
        html::notice("error", &failure.msg)
    );
    let shell = match session {
        Some(session) => session.shell(console, title, html::Tab::None, &members),
        None => html::Shell {
            title,
            tab: html::Tab::None,
            user: None,
            csrf: None,
            members: &members,
            node_id: console.consensus.id,
        },
    };
    (failure.status, Html(html::page(&shell, &body))).into_response()
}

/// Opens the session of a page request or answers with where to go instead.
macro_rules! session_or_return {
    ($console:expr, $parts:expr) => {{
        match $crate::console::session_of(&$console, &$parts).await {
            Ok(session) => session,
            Err(page) => return page,
        }
    }};
}
pub(crate) use session_or_return;

/// The caller's session for the request with `parts`, or the page that says why there is none
/// (the login page, with where to come back to).
pub(crate) async fn session_of(
    console: &ConsoleState,
    parts: &axum::http::request::Parts,
) -> Result<session::Session, Response> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    session::Session::open(console, &parts.headers, &parts.extensions, &path)
        .await
        .map_err(|no| no.into_response(console))
}
