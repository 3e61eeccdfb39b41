//! Server-sent events behind the console's live views, and the CORS that lets a page served
//! by one node follow them from another when its own node stops answering.
//!
//! - `/console/live/jobs/:id?start=N`: the job's events from id N (or the browser's
//!   `Last-Event-ID`), as they are applied on this node, in batches at most every
//!   [`BATCH_INTERVAL`]; `end` once the job is over; a `ping` every [`PING_INTERVAL`] so the
//!   page notices a node that hangs without closing the connection.
//! - `/console/live/node`: this node's own raft view (role, term, leader, indices, contact),
//!   on every role change and at least every [`NODE_VIEW_INTERVAL`]: one stream per member is
//!   what shows an election as it happens. It needs no quorum, unlike everything else.
//!
//! Both re-check the session's token on every step: a revoked or expired session gets a
//! `session` event (the page goes back to the login) and the stream ends.

use super::ConsoleState;
use super::in_process::Caller;
use super::session::{origin_allowed, token_in};
use crate::access::credentials::parse_token;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use porch_core::JobId;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Events applied within this long are sent as one message (bounds the work per open view).
pub const BATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Longest silence on a job stream: the page treats twice this as a dead node.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// Longest interval between two node views.
pub const NODE_VIEW_INTERVAL: Duration = Duration::from_millis(500);
/// Most events in one message.
const EVENTS_PER_MESSAGE_MAX: usize = 2000;

/// Whether the session's token is still good in this node's applied state now.
fn session_valid(console: &ConsoleState, token_id: &str) -> bool {
    crate::access::principal::still_valid_token(&console.consensus, token_id).is_ok()
}

fn one_event(name: &str, data: Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// A stream of one message (a refusal), in SSE form so the page's script can read it.
fn single(name: &'static str, data: Value) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(futures::stream::iter([Ok(one_event(name, data))]))
}

pub async fn job_events(
    State(console): State<Arc<ConsoleState>>,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    request: Request,
) -> Response {
    let Some(token) = token_in(request.headers(), console.secure_cookie) else {
        return single("session", json!({"reason": "required"})).into_response();
    };
    let Ok(presented) = parse_token(&token) else {
        return single("session", json!({"reason": "revoked"})).into_response();
    };
    let caller = Caller::from_request(token.clone(), request.headers(), request.extensions());
    let resume = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|last| last + 1);
    let start = resume
        .or_else(|| params.get("start").and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    // The API checks the session, its view permission and that the job exists, after the
    // read barrier: from then on this node has applied everything acknowledged before.
    match console
        .api
        .get(
            &caller,
            &format!("/orchestrator/v1/jobs/{}", super::html::url_component(&id)),
        )
        .await
    {
        Ok(_) => {}
        Err(failure) if failure.is_unauthenticated() => {
            return single(
                "session",
                json!({"reason": failure.kind, "msg": failure.msg}),
            )
            .into_response();
        }
        Err(failure) if failure.status == StatusCode::NOT_FOUND => {
            return single("gone", json!({"msg": failure.msg})).into_response();
        }
        // No quorum here (or another failure): the page tries another node.
        Err(failure) => return (failure.status, failure.msg).into_response(),
    }
    let job_id = JobId(id.parse().unwrap_or(0));
    let feed = JobFeed {
        applied: console.consensus.view.applied_index(),
        console,
        job_id,
        next: start,
        token_id: presented.id,
        finished: false,
    };
    Sse::new(futures::stream::unfold(feed, JobFeed::step))
        .keep_alive(KeepAlive::new().interval(PING_INTERVAL))
        .into_response()
}

struct JobFeed {
    console: Arc<ConsoleState>,
    applied: tokio::sync::watch::Receiver<u64>,
    job_id: JobId,
    /// The next event id to send.
    next: u64,
    token_id: String,
    finished: bool,
}

/// What the applied state holds for the feed now.
enum Reading {
    Events {
        state: &'static str,
        items: Vec<Value>,
        last: u64,
    },
    Ended {
        state: &'static str,
    },
    Quiet,
    Gone,
}

impl JobFeed {
    fn read(&self) -> Reading {
        let view = self.console.consensus.view.read();
        let Some(job) = view.cluster.job(self.job_id) else {
            return Reading::Gone;
        };
        let from = job.events.partition_point(|e| e.id.0 < self.next);
        let new = &job.events[from..];
        let state = job.state();
        if new.is_empty() {
            return if state.is_terminal() {
                Reading::Ended {
                    state: state.as_str(),
                }
            } else {
                Reading::Quiet
            };
        }
        let batch = &new[..new.len().min(EVENTS_PER_MESSAGE_MAX)];
        Reading::Events {
            state: state.as_str(),
            last: batch.last().map_or(self.next, |e| e.id.0),
            items: batch
                .iter()
                .map(|e| {
                    json!({"id": e.id.0, "type": e.kind.as_str(), "node": e.node,
                           "message": e.message(job), "at": e.timestamp_ms})
                })
                .collect(),
        }
    }

    async fn step(mut self) -> Option<(Result<Event, Infallible>, JobFeed)> {
        if self.finished {
            return None;
        }
        loop {
            if !session_valid(&self.console, &self.token_id) {
                self.finished = true;
                return Some((Ok(one_event("session", json!({"reason": "expired"}))), self));
            }
            match self.read() {
                Reading::Gone => {
                    self.finished = true;
                    let msg = format!("job {} no longer exists (pruned)", self.job_id);
                    return Some((Ok(one_event("gone", json!({"msg": msg}))), self));
                }
                Reading::Ended { state } => {
                    self.finished = true;
                    return Some((Ok(one_event("end", json!({"state": state}))), self));
                }
                Reading::Events { state, items, last } => {
                    self.next = last + 1;
                    let event = one_event("events", json!({"state": state, "events": items}))
                        .id(last.to_string());
                    return Some((Ok(event), self));
                }
                Reading::Quiet => {
                    let _ = self.applied.borrow_and_update();
                    match tokio::time::timeout(PING_INTERVAL, self.applied.changed()).await {
                        Ok(Ok(())) => tokio::time::sleep(BATCH_INTERVAL).await,
                        Ok(Err(_)) => return None, // the node is shutting down
                        Err(_) => {
                            return Some((Ok(one_event("ping", json!({}))), self));
                        }
                    }
                }
            }
        }
    }
}

/// This node's raft view as the cluster page shows it.
pub fn node_view_json(console: &ConsoleState) -> Value {
    let reading =
        crate::metrics::reading::read(&console.sources, crate::metrics::reading::JobCounts::Totals);
    let members: BTreeMap<String, String> = reading
        .member_addrs
        .iter()
        .map(|(id, addr)| {
            (
                id.to_string(),
                format!(
                    "{}://{}",
                    console.scheme,
                    porch_raft::member_socket_addr(addr)
                ),
            )
        })
        .collect();
    json!({
        "node_id": reading.node_id,
        "role": reading.role,
        "term": reading.term,
        "leader": reading.leader,
        "last_log_index": reading.last_log_index,
        "committed_index": reading.committed_index,
        "applied_index": reading.applied_index,
        "contact_age_ms": reading.quorum_contact_age.map(|a| a.as_millis() as u64),
        "contact_max_ms": reading.quorum_contact_max.as_millis() as u64,
        "in_touch": reading.in_touch_with_quorum(),
        "voters": reading.voters,
        "learners": reading.learners,
        "members": members,
        "replicated_index": reading.replicated_index.iter().map(|(id, i)| (id.to_string(), *i)).collect::<BTreeMap<_, _>>(),
        "agents_connected": reading.agents_connected,
        "jobs_active": reading.jobs_active,
        "runs_in_flight": reading.runs_in_flight,
        "raft_stopped": reading.raft_stopped,
    })
}

pub async fn node_view(State(console): State<Arc<ConsoleState>>, request: Request) -> Response {
    let Some(token) = token_in(request.headers(), console.secure_cookie) else {
        return single("session", json!({"reason": "required"})).into_response();
    };
    let Ok(presented) = parse_token(&token) else {
        return single("session", json!({"reason": "revoked"})).into_response();
    };
    let caller = Caller::from_request(token.clone(), request.headers(), request.extensions());
    // `/status` checks the session without a read barrier: this view must work mid-election.
    if let Err(failure) = console.api.get(&caller, "/orchestrator/v1/status").await {
        if failure.is_unauthenticated() {
            return single(
                "session",
                json!({"reason": failure.kind, "msg": failure.msg}),
            )
            .into_response();
        }
        return (failure.status, failure.msg).into_response();
    }
    let feed = NodeFeed {
        roles: console.consensus.role_changes(),
        console,
        token_id: presented.id,
        finished: false,
        sent_first: false,
    };
    Sse::new(futures::stream::unfold(feed, NodeFeed::step)).into_response()
}

struct NodeFeed {
    console: Arc<ConsoleState>,
    roles: crate::consensus::RoleChanges,
    token_id: String,
    finished: bool,
    sent_first: bool,
}

impl NodeFeed {
    async fn step(mut self) -> Option<(Result<Event, Infallible>, NodeFeed)> {
        if self.finished {
            return None;
        }
        if !session_valid(&self.console, &self.token_id) {
            self.finished = true;
            return Some((Ok(one_event("session", json!({"reason": "expired"}))), self));
        }
        if self.sent_first {
            // The next view at the next role change, or after the interval.
            self.roles.next(NODE_VIEW_INTERVAL).await;
        }
        self.sent_first = true;
        let view = node_view_json(&self.console);
        Some((Ok(one_event("node", view)), self))
    }
}

/// `OPTIONS` before a member's page posts here with its CSRF header.
pub async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("x-porch-csrf, content-type, last-event-id"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Lets pages served by another member read this node's answers (with the session cookie:
/// browsers send it to every port of the host it was set for). Any other origin gets no
/// CORS headers, so browsers keep its scripts from reading anything.
pub async fn cors_for_members(
    State(console): State<Arc<ConsoleState>>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .cloned()
        .filter(|_| origin_allowed(&console, request.headers()));
    let mut response = next.run(request).await;
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}
