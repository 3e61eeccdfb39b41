//! PE's status API (Trapperkeeper's status service, v1) for this node:
//! `GET /status/v1/services[/<service>]` (JSON, `?level=critical|info|debug`) and
//! `GET /status/v1/simple[/<service>]` (plain text `running`/`error`, 200/503) — the health
//! check for a load balancer in front of the nodes.
//!
//! Services: `orchestrator-service` (the API: running while this node can commit and serve
//! linearizable reads), `raft` (running while this node knows a leader and is in touch with
//! a quorum) and `agent-sessions`. A node cut off from the quorum answers `error`, so a load
//! balancer sends clients and agents to the nodes that can serve them.
//!
//! Access: `critical` and `info` need no token, as in PE (they name no host: ids, roles,
//! indices, counts). `debug` adds members' addresses, per-member replication and timings, and
//! needs a token with the view permission.
//!
//! [`services`] is a pure function of a [`NodeReading`]; the handlers only read and render.

use super::ApiState;
use super::error::ApiError;
use crate::access::principal::{require_token, require_view};
use crate::metrics::reading::JobCounts;
use crate::metrics::{NodeReading, Sources, reading};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Version of the JSON each service reports (Trapperkeeper's `service_status_version`).
pub const SERVICE_STATUS_VERSION: u64 = 1;

pub const SERVICE_NAMES: [&str; 3] = ["orchestrator-service", "raft", "agent-sessions"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Critical,
    Info,
    Debug,
}

impl Level {
    /// `?level=`; absent means `info`, as in Trapperkeeper.
    pub fn parse(text: Option<&str>) -> Result<Level, ApiError> {
        match text {
            None => Ok(Level::Info),
            Some("critical") => Ok(Level::Critical),
            Some("info") => Ok(Level::Info),
            Some("debug") => Ok(Level::Debug),
            Some(other) => Err(data_invalid(format!(
                "Invalid level: {other} (expected critical, info or debug)"
            ))),
        }
    }

    /// Only `debug` shows jobs by state, which costs a pass over every job.
    fn job_counts(self) -> JobCounts {
        if self == Level::Debug {
            JobCounts::ByState
        } else {
            JobCounts::Totals
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Running,
    Error,
    Unknown,
    Starting,
    Stopping,
}

impl ServiceState {
    pub fn name(self) -> &'static str {
        match self {
            ServiceState::Running => "running",
            ServiceState::Error => "error",
            ServiceState::Unknown => "unknown",
            ServiceState::Starting => "starting",
            ServiceState::Stopping => "stopping",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub severity: &'static str,
    pub message: String,
}

/// One service's status, in Trapperkeeper's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceStatus {
    pub service_version: &'static str,
    pub service_status_version: u64,
    pub detail_level: Level,
    pub state: ServiceState,
    pub status: Value,
    pub active_alerts: Vec<Alert>,
}

/// Every service's status at `level`, from one reading.
pub fn services(reading: &NodeReading, level: Level) -> BTreeMap<&'static str, ServiceStatus> {
    SERVICE_NAMES
        .iter()
        .map(|name| {
            (
                *name,
                service(reading, name, level).expect("a known service"),
            )
        })
        .collect()
}

/// One service's status, or `None` for a name porch does not have.
pub fn service(reading: &NodeReading, name: &str, level: Level) -> Option<ServiceStatus> {
    let (state, alerts, status) = match name {
        "orchestrator-service" => orchestrator(reading, level),
        "raft" => raft(reading, level),
        "agent-sessions" => agent_sessions(reading, level),
        _ => return None,
    };
    Some(ServiceStatus {
        service_version: env!("CARGO_PKG_VERSION"),
        service_status_version: SERVICE_STATUS_VERSION,
        detail_level: level,
        state,
        status,
        active_alerts: alerts,
    })
}

/// Trapperkeeper's summary over several services: the most severe state present.
pub fn summarize<'a>(states: impl IntoIterator<Item = &'a ServiceStatus>) -> ServiceState {
    let present: Vec<ServiceState> = states.into_iter().map(|s| s.state).collect();
    [
        ServiceState::Error,
        ServiceState::Unknown,
        ServiceState::Stopping,
        ServiceState::Starting,
        ServiceState::Running,
    ]
    .into_iter()
    .find(|state| present.contains(state))
    .unwrap_or(ServiceState::Unknown)
}

/// Why this node cannot serve, if it cannot (shared by the services that depend on it).
fn quorum_alert(reading: &NodeReading) -> Option<Alert> {
    if let Some(why) = &reading.raft_stopped {
        return Some(Alert {
            severity: "error",
            message: format!("raft stopped: {why}"),
        });
    }
    if reading.in_touch_with_quorum() {
        return None;
    }
    let message = match (reading.leader, reading.quorum_contact_age) {
        (None, _) => {
            "no leader known: an election is under way or this node is cut off from the quorum"
                .to_string()
        }
        (Some(_), Some(age)) if reading.is_leader() => format!(
            "leader without a quorum: last acknowledged by a quorum {} ms ago (at most {} ms expected)",
            age.as_millis(),
            reading.quorum_contact_max.as_millis()
        ),
        (Some(leader), Some(age)) => format!(
            "no contact with leader {leader} for {} ms (at most {} ms expected)",
            age.as_millis(),
            reading.quorum_contact_max.as_millis()
        ),
        (Some(leader), None) => format!("never heard from leader {leader} since this node started"),
    };
    Some(Alert {
        severity: "error",
        message,
    })
}

fn state_of(alert: &Option<Alert>) -> ServiceState {
    if alert.is_some() {
        ServiceState::Error
    } else {
        ServiceState::Running
    }
}

type Rendered = (ServiceState, Vec<Alert>, Value);

fn orchestrator(reading: &NodeReading, level: Level) -> Rendered {
    let alert = quorum_alert(reading);
    let mut status = json!({});
    if level >= Level::Info {
        status = json!({
            "node_id": reading.node_id,
            "can_commit": alert.is_none(),
            "jobs": {"active": reading.jobs_active, "total": reading.jobs_total},
            "runs_in_flight": reading.runs_in_flight,
        });
    }
    if level >= Level::Debug {
        status["jobs"]["by_state"] = json!(reading.jobs_by_state);
        status["uptime_ms"] = json!(reading.uptime.as_millis() as u64);
        status["applied_listener_backlog"] = json!(reading.applied_listener_backlog);
    }
    (state_of(&alert), alert.into_iter().collect(), status)
}

fn raft(reading: &NodeReading, level: Level) -> Rendered {
    let alert = quorum_alert(reading);
    let mut status = json!({});
    if level >= Level::Info {
        status = json!({
            "node_id": reading.node_id,
            "role": reading.role,
            "term": reading.term,
            "leader": reading.leader,
            "in_touch_with_quorum": reading.in_touch_with_quorum(),
            "quorum_contact_age_ms": reading.quorum_contact_age.map(|age| age.as_millis() as u64),
            "last_log_index": reading.last_log_index,
            "committed_index": reading.committed_index,
            "applied_index": reading.applied_index,
            "apply_lag": reading.apply_lag(),
            "snapshot_index": reading.snapshot_index,
            "voters": reading.voters,
            "learners": reading.learners,
        });
    }
    if level >= Level::Debug {
        status["purged_index"] = json!(reading.purged_index);
        status["members"] = reading
            .member_addrs
            .iter()
            .map(|(id, addr)| {
                let voter = reading.voters.contains(id);
                let mut member = json!({"id": id, "addr": addr, "voter": voter});
                if let Some(matched) = reading.replicated_index.get(id) {
                    member["matched_index"] = json!(matched);
                    member["lag"] =
                        json!(reading.last_log_index.saturating_sub(matched.unwrap_or(0)));
                }
                member
            })
            .collect();
    }
    (state_of(&alert), alert.into_iter().collect(), status)
}

fn agent_sessions(reading: &NodeReading, level: Level) -> Rendered {
    // Sessions are served as long as the process and raft run; a node cut off from the
    // quorum sends its agents elsewhere on its own, which `raft` already reports.
    let (state, alerts) = match &reading.raft_stopped {
        Some(why) => (
            ServiceState::Error,
            vec![Alert {
                severity: "error",
                message: format!("raft stopped: {why}"),
            }],
        ),
        None => (ServiceState::Running, Vec::new()),
    };
    let status = if level >= Level::Info {
        json!({"connected": reading.agents_connected})
    } else {
        json!({})
    };
    (state, alerts, status)
}

fn data_invalid(msg: String) -> ApiError {
    ApiError::kind(StatusCode::BAD_REQUEST, "request-data-invalid", msg)
}

fn http_status(state: ServiceState) -> StatusCode {
    if state == ServiceState::Running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[derive(serde::Deserialize)]
pub struct StatusQuery {
    level: Option<String>,
    /// Accepted and checked as Trapperkeeper does; every check here answers at once.
    timeout: Option<String>,
    service_status_version: Option<String>,
}

impl StatusQuery {
    fn level(&self) -> Result<Level, ApiError> {
        if let Some(timeout) = &self.timeout {
            match timeout.parse::<u64>() {
                Ok(seconds) if seconds > 0 => {}
                _ => {
                    return Err(data_invalid(format!(
                        "Invalid timeout: should be a whole number of seconds above zero but was {timeout}"
                    )));
                }
            }
        }
        Level::parse(self.level.as_deref())
    }
}

/// The status routes, with their own state; `debug` is checked by [`debug_needs_token`].
pub fn router(sources: Arc<Sources>, api: Arc<ApiState>) -> Router {
    Router::new()
        .route("/status/v1/services", get(all_services))
        .route("/status/v1/services/{service}", get(one_service))
        .route("/status/v1/simple", get(simple_all))
        .route("/status/v1/simple/{service}", get(simple_one))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            debug_needs_view,
        ))
        .route_layer(axum::middleware::from_fn_with_state(api, debug_needs_token))
        .with_state(sources)
}

async fn all_services(
    State(sources): State<Arc<Sources>>,
    Query(query): Query<StatusQuery>,
) -> Result<Response, ApiError> {
    let level = query.level()?;
    let statuses = services(&reading::read(&sources, level.job_counts()), level);
    let code = http_status(summarize(statuses.values()));
    Ok((code, Json(statuses)).into_response())
}

async fn one_service(
    State(sources): State<Arc<Sources>>,
    Path(name): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Response, ApiError> {
    let level = query.level()?;
    if let Some(version) = &query.service_status_version
        && version.parse::<u64>() != Ok(SERVICE_STATUS_VERSION)
    {
        return Err(data_invalid(format!(
            "No status function with version {version} found for service {name}"
        )));
    }
    let Some(status) = service(&reading::read(&sources, level.job_counts()), &name, level) else {
        return Err(ApiError::kind(
            StatusCode::NOT_FOUND,
            "service-not-found",
            format!("No status information found for service {name}"),
        ));
    };
    let code = http_status(status.state);
    let mut body = serde_json::to_value(status).map_err(|e| ApiError::internal(e.to_string()))?;
    body["service_name"] = json!(name);
    Ok((code, Json(body)).into_response())
}

fn plain(code: StatusCode, text: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn simple_all(State(sources): State<Arc<Sources>>) -> Response {
    let statuses = services(&reading::read(&sources, JobCounts::Totals), Level::Critical);
    let state = summarize(statuses.values());
    plain(http_status(state), state.name().to_string())
}

async fn simple_one(State(sources): State<Arc<Sources>>, Path(name): Path<String>) -> Response {
    match service(
        &reading::read(&sources, JobCounts::Totals),
        &name,
        Level::Critical,
    ) {
        Some(status) => plain(http_status(status.state), status.state.name().to_string()),
        None => plain(StatusCode::NOT_FOUND, format!("not found: {name}")),
    }
}

/// Decoded as the handlers decode it (`level=%64ebug` is `debug` too); a query that does not
/// decode is refused by the handler, so it needs no token here.
fn asks_for_debug(request: &Request) -> bool {
    Query::<StatusQuery>::try_from_uri(request.uri())
        .is_ok_and(|Query(query)| query.level.as_deref() == Some("debug"))
}

async fn debug_needs_token(state: State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    if asks_for_debug(&request) {
        require_token(state, request, next).await
    } else {
        next.run(request).await
    }
}

async fn debug_needs_view(state: State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    if asks_for_debug(&request) {
        require_view(state, request, next).await
    } else {
        next.run(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Node 1 of three, following leader 2 and heard from it 50 ms ago.
    fn follower() -> NodeReading {
        NodeReading {
            node_id: 1,
            role: "follower",
            term: 3,
            leader: Some(2),
            last_log_index: 120,
            committed_index: 118,
            applied_index: 117,
            quorum_contact_age: Some(Duration::from_millis(50)),
            quorum_contact_max: Duration::from_millis(1000),
            voters: vec![1, 2, 3],
            member_addrs: [(1, "a:1"), (2, "b:2"), (3, "c:3")]
                .into_iter()
                .map(|(id, addr)| (id, addr.to_string()))
                .collect(),
            jobs_by_state: reading::JOB_STATES
                .iter()
                .map(|(_, name)| (*name, 0))
                .collect(),
            agents_connected: 4,
            jobs_total: 3,
            jobs_active: 1,
            ..NodeReading::default()
        }
    }

    fn keys(value: &Value) -> Vec<String> {
        value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_node_in_touch_with_the_quorum_reports_every_service_running_in_pe_shape() {
        let statuses = services(&follower(), Level::Info);
        assert_eq!(
            statuses.keys().copied().collect::<Vec<_>>(),
            ["agent-sessions", "orchestrator-service", "raft"]
        );
        for (name, status) in &statuses {
            assert_eq!(status.state, ServiceState::Running, "{name}: {status:?}");
            assert!(status.active_alerts.is_empty(), "{name}: {status:?}");
        }
        assert_eq!(summarize(statuses.values()), ServiceState::Running);
        let raft = serde_json::to_value(&statuses["raft"]).unwrap();
        assert_eq!(
            keys(&raft),
            [
                "active_alerts",
                "detail_level",
                "service_status_version",
                "service_version",
                "state",
                "status"
            ]
        );
        assert_eq!(raft["state"], "running");
        assert_eq!(raft["detail_level"], "info");
        assert_eq!(raft["service_status_version"], 1);
        assert_eq!(raft["status"]["role"], "follower");
        assert_eq!(raft["status"]["leader"], 2);
        assert_eq!(raft["status"]["apply_lag"], 1);
        assert_eq!(raft["status"]["voters"], json!([1, 2, 3]));
    }

    #[test]
    fn critical_carries_no_details_and_each_level_adds_to_the_one_below() {
        let reading = follower();
        for name in SERVICE_NAMES {
            let at = |level| serde_json::to_value(service(&reading, name, level).unwrap()).unwrap();
            let (critical, info, debug) = (at(Level::Critical), at(Level::Info), at(Level::Debug));
            assert_eq!(critical["status"], json!({}), "{name}");
            for key in keys(&info["status"]) {
                assert!(
                    debug["status"].get(&key).is_some(),
                    "{name}: debug lacks info's '{key}'"
                );
            }
        }
    }

    #[test]
    fn only_debug_names_the_members_addresses() {
        let reading = follower();
        let info = serde_json::to_string(&services(&reading, Level::Info)).unwrap();
        assert!(!info.contains("b:2"), "info names a host: {info}");
        let debug = serde_json::to_value(service(&reading, "raft", Level::Debug).unwrap()).unwrap();
        assert_eq!(
            debug["status"]["members"][1],
            json!({"id": 2, "addr": "b:2", "voter": true})
        );
    }

    #[test]
    fn a_follower_that_has_not_heard_from_its_leader_within_the_lease_reports_error() {
        let mut reading = follower();
        reading.quorum_contact_age = Some(Duration::from_millis(1500));
        let statuses = services(&reading, Level::Critical);
        assert_eq!(statuses["raft"].state, ServiceState::Error);
        assert_eq!(statuses["orchestrator-service"].state, ServiceState::Error);
        assert_eq!(statuses["agent-sessions"].state, ServiceState::Running);
        assert_eq!(summarize(statuses.values()), ServiceState::Error);
        assert_eq!(
            statuses["raft"].active_alerts,
            [Alert {
                severity: "error",
                message: "no contact with leader 2 for 1500 ms (at most 1000 ms expected)".into()
            }]
        );
    }

    #[test]
    fn no_leader_a_leader_without_quorum_acks_and_a_stopped_raft_are_errors() {
        let mut no_leader = follower();
        no_leader.leader = None;
        no_leader.role = "candidate";
        assert_eq!(
            service(&no_leader, "raft", Level::Critical).unwrap().state,
            ServiceState::Error
        );

        let mut cut_off_leader = follower();
        cut_off_leader.role = "leader";
        cut_off_leader.leader = Some(1);
        cut_off_leader.quorum_contact_age = Some(Duration::from_secs(5));
        let raft = service(&cut_off_leader, "raft", Level::Critical).unwrap();
        assert_eq!(raft.state, ServiceState::Error);
        assert!(
            raft.active_alerts[0]
                .message
                .starts_with("leader without a quorum"),
            "{raft:?}"
        );

        let mut stopped = follower();
        stopped.raft_stopped = Some("storage error".into());
        for name in SERVICE_NAMES {
            assert_eq!(
                service(&stopped, name, Level::Critical).unwrap().state,
                ServiceState::Error,
                "{name}"
            );
        }
    }

    #[test]
    fn a_single_voter_leader_is_its_own_quorum() {
        let mut alone = follower();
        alone.role = "leader";
        alone.leader = Some(1);
        alone.voters = vec![1];
        alone.quorum_contact_age = None;
        assert_eq!(
            service(&alone, "raft", Level::Critical).unwrap().state,
            ServiceState::Running
        );
    }

    #[test]
    fn the_summary_is_the_most_severe_state_present() {
        let mut statuses = services(&follower(), Level::Critical);
        statuses.get_mut("raft").unwrap().state = ServiceState::Starting;
        assert_eq!(summarize(statuses.values()), ServiceState::Starting);
        statuses.get_mut("agent-sessions").unwrap().state = ServiceState::Unknown;
        assert_eq!(summarize(statuses.values()), ServiceState::Unknown);
        statuses.get_mut("orchestrator-service").unwrap().state = ServiceState::Error;
        assert_eq!(summarize(statuses.values()), ServiceState::Error);
        assert_eq!(summarize(std::iter::empty()), ServiceState::Unknown);
    }

    #[test]
    fn debug_needs_a_token_however_the_query_spells_it() {
        let asks = |uri: &str| {
            asks_for_debug(
                &Request::builder()
                    .uri(uri)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
        };
        assert!(asks("/status/v1/services?level=debug"));
        assert!(asks("/status/v1/services?timeout=5&level=%64ebug"));
        assert!(asks("/status/v1/services/raft?level=debu%67"));
        assert!(!asks("/status/v1/services?level=info"));
        assert!(!asks("/status/v1/simple"));
    }

    #[test]
    fn levels_default_to_info_and_an_unknown_level_is_refused_by_name() {
        assert_eq!(Level::parse(None).unwrap(), Level::Info);
        assert_eq!(Level::parse(Some("critical")).unwrap(), Level::Critical);
        let error = Level::parse(Some("verbose")).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(
            error.msg.contains("Invalid level: verbose"),
            "{}",
            error.msg
        );
        assert!(service(&follower(), "puppetdb-service", Level::Info).is_none());
    }
}
