//! One agent's session on this node: the server side of `proto/agent.proto`.
//!
//! Life of a session:
//! 1. the agent's `Hello` names its certname; a newer session for that certname supersedes
//!    an older one here; `Welcome` answers;
//! 2. the node commits `AgentConnected` (inventory; retried until committed);
//! 3. reconciliation (`crate::reaction`): the node asks the agent for the status of every run
//!    of that certname still in flight in the applied state, and re-sends only the runs the
//!    agent never saw — so a failover or a reconnect never loses a run and never runs one
//!    twice; the same when a message was dropped for a full queue;
//! 4. results are committed as `ReportRun` (request id = transaction id, so a result sent twice
//!    applies once) and acknowledged to the agent only after they are committed;
//! 5. on loss (stream end, 3 missed heartbeats) the node commits `AgentDisconnected`.
//!
//! A draining node (`porch cluster drain`) refuses new sessions and ends its sessions at their
//! next heartbeat with a `Refused` naming the drain: the agent moves to its next URL, where
//! step 3 picks up its runs in flight.

use super::registry::{Registry, SessionSender};
use crate::consensus::Consensus;
use crate::reaction::Stimulus;
use crate::reaction::driver::Reactor;
use crate::tasks::TaskGroup;
use futures::Stream;
use porch_agent::proto::agent_sessions_server::AgentSessions;
use porch_agent::proto::{
    AgentMessage, Heartbeat, Refused, ResultAck, RunResult, ServerMessage, StatusReply, TaskFile,
    TaskFileRequest, Welcome, agent_message, run_result, server_message::Kind, transaction_status,
};
use porch_core::node_run::RESULT_MESSAGE_BYTES_MAX;
use porch_core::plan::is_valid_certname;
use porch_core::{Command, Outcome, Rejection, RunOutcome};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};

/// How long an agent has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node may be out of touch with the quorum before it sends its agents elsewhere:
/// far above an election (a second or two), so failovers never churn sessions.
const CUT_OFF_AFTER: Duration = Duration::from_secs(10);
/// What a draining node tells its agents (`porch cluster drain`).
const DRAINING: &str = "this orchestrator node is draining for maintenance; reconnect elsewhere";
/// How long the node keeps trying to commit a result or an inventory change.
const COMMIT_RETRY_FOR: Duration = Duration::from_secs(300);
/// The pause after a first failed commit of a result or an inventory change; it doubles after
/// each further failure, up to [`COMMIT_RETRY_PAUSE_MAX`].
const COMMIT_RETRY_PAUSE_MIN: Duration = Duration::from_millis(500);
const COMMIT_RETRY_PAUSE_MAX: Duration = Duration::from_secs(30);

/// The pauses between attempts to commit one command.
///
/// A write that failed on its deadline is not withdrawn: its entry stays in the leader's log
/// and commits when replication gets to it. Proposing again at once adds one more entry per
/// session per request timeout for as long as commits lag, and each makes them lag more (a
/// leader whose commits wait on a slow follower, with every agent reconnecting at once, can
/// take on entries faster than it commits them, for good). Pausing longer after each failure
/// lets what was already proposed commit first.
struct RetryPause(Duration);

impl RetryPause {
    fn new() -> RetryPause {
        RetryPause(COMMIT_RETRY_PAUSE_MIN)
    }

    async fn sleep(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(COMMIT_RETRY_PAUSE_MAX);
    }
}

pub struct SessionService {
    consensus: Arc<Consensus>,
    tasks: Arc<TaskGroup>,
    registry: Arc<Registry>,
    reactor: Arc<Reactor>,
    heartbeat_interval: Duration,
    boot_ms: u64,
    next_session: AtomicU64,
    /// Sessions are opened only for the certname of the connection's client certificate
    /// (false with `--insecure-http`, where connections carry none).
    require_certificates: bool,
    /// Whose CRL a session's certificate is checked against at every heartbeat.
    tls: Option<Arc<porch_tls::TlsIdentity>>,
    /// Where task files are served from (`--codedir`).
    codedir: std::path::PathBuf,
}

impl SessionService {
    pub fn new(
        consensus: Arc<Consensus>,
        registry: Arc<Registry>,
        reactor: Arc<Reactor>,
        heartbeat_interval: Duration,
        tasks: Arc<TaskGroup>,
        require_certificates: bool,
        tls: Option<Arc<porch_tls::TlsIdentity>>,
        codedir: std::path::PathBuf,
    ) -> SessionService {
        let boot_ms = consensus.clock().now_ms();
        SessionService {
            require_certificates,
            tls,
            codedir,
            consensus,
            tasks,
            registry,
            reactor,
            heartbeat_interval,
            boot_ms,
            next_session: AtomicU64::new(0),
        }
    }
}

type ServerStream = Pin<Box<dyn Stream<Item = Result<ServerMessage, Status>> + Send>>;

fn message(kind: Kind) -> ServerMessage {
    ServerMessage { kind: Some(kind) }
}

impl SessionService {
    /// Why a connection may not open a session for `certname`: an agent proves its certname
    /// with its Puppet certificate, so no agent can take another's session.
    fn certificate_refusal(
        &self,
        peer: Option<&porch_tls::PeerInfo>,
        certname: &str,
    ) -> Option<String> {
        if !self.require_certificates {
            return None;
        }
        match peer.and_then(|p| p.certname.as_deref()) {
            None => Some(format!(
                "no client certificate: the agent for '{certname}' must present its Puppet certificate"
            )),
            Some(proven) if proven != certname => Some(format!(
                "this connection's certificate is for '{proven}'; it cannot open a session for '{certname}'"
            )),
            Some(_) => None,
        }
    }
}

#[tonic::async_trait]
impl AgentSessions for SessionService {
    type SessionStream = ServerStream;

    async fn fetch_task_file(
        &self,
        request: Request<TaskFileRequest>,
    ) -> Result<Response<TaskFile>, Status> {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<porch_tls::PeerInfo>>()
            .map(|c| c.0.clone());
        let asked = request.into_inner();
        if let Some(reason) = self.certificate_refusal(peer.as_ref(), &asked.certname) {
            return Err(Status::permission_denied(reason));
        }
        // The file is read while holding no lock: the job's task is copied out first.
        let task = super::task_files::task_of(
            &self.consensus.view.read().cluster,
            &asked.certname,
            &asked.transaction_id,
            &asked.sha256,
        )?;
        let content = super::task_files::task_file(&self.codedir, &task)?;
        Ok(Response::new(TaskFile { content }))
    }

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<ServerStream>, Status> {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<porch_tls::PeerInfo>>()
            .map(|c| c.0.clone());
        let mut inbound = request.into_inner();
        let (tx, rx) = self.registry.new_session_queue();
        let outbound: ServerStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|m| (Ok(*m), rx))
        }));
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(AgentMessage {
                kind: Some(agent_message::Kind::Hello(hello)),
            }))) => hello,
            Ok(Err(status)) => return Err(status),
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be Hello",
                ));
            }
        };
        if !is_valid_certname(&hello.certname) {
            let _ = tx
                .send(message(Kind::Refused(Refused {
                    reason: format!("{:?} is not a valid certname", hello.certname),
                })))
                .await;
            return Ok(Response::new(outbound));
        }
        if let Some(reason) = self.certificate_refusal(peer.as_ref(), &hello.certname) {
            let remote = peer.map_or("an unknown address".into(), |p| p.remote.to_string());
            tracing::warn!("refused an agent session from {remote}: {reason}");
            let _ = tx.send(message(Kind::Refused(Refused { reason }))).await;
            return Ok(Response::new(outbound));
        }
        if self.consensus.is_draining() {
            let _ = tx
                .send(message(Kind::Refused(Refused {
                    reason: DRAINING.into(),
                })))
                .await;
            return Ok(Response::new(outbound));
        }
        let session = format!(
            "{}-{}-{}",
            self.consensus.id,
            self.boot_ms,
            self.next_session.fetch_add(1, Ordering::Relaxed)
        );
        let session_id = self.registry.register(&hello.certname, tx.clone());
        let _ = tx
            .send(message(Kind::Welcome(Welcome {
                orchestrator_node: self.consensus.id,
                heartbeat_interval_secs: self.heartbeat_interval.as_secs().max(1) as u32,
            })))
            .await;
        tracing::info!("agent {} connected (session {session})", hello.certname);
        let driver = SessionDriver {
            consensus: self.consensus.clone(),
            tasks: self.tasks.clone(),
            registry: self.registry.clone(),
            reactor: self.reactor.clone(),
            certname: hello.certname,
            session,
            session_id,
            tx,
            heartbeat_interval: self.heartbeat_interval,
            certificate: peer
                .and_then(|p| p.serial)
                .and_then(|serial| self.tls.clone().map(|tls| (serial, tls))),
        };
        self.tasks.spawn(driver.run(inbound));
        Ok(Response::new(outbound))
    }
}

struct SessionDriver {
    consensus: Arc<Consensus>,
    tasks: Arc<TaskGroup>,
    registry: Arc<Registry>,
    reactor: Arc<Reactor>,
    certname: String,
    /// Cluster-unique session name, recorded in the inventory.
    session: String,
    /// Local registry id.
    session_id: u64,
    tx: SessionSender,
    heartbeat_interval: Duration,
    /// The serial of the certificate this session was opened with, and whose CRL to check it
    /// against: a certificate revoked after the session opened ends it at the next heartbeat.
    certificate: Option<(String, Arc<porch_tls::TlsIdentity>)>,
}

impl SessionDriver {
    fn certificate_revoked(&self) -> Option<&str> {
        let (serial, tls) = self.certificate.as_ref()?;
        tls.is_revoked(serial).then_some(serial.as_str())
    }

    async fn run(self, mut inbound: Streaming<AgentMessage>) {
        let this = Arc::new(self);
        {
            let this = this.clone();
            this.tasks.clone().spawn(async move {
                let command = Command::AgentConnected {
                    certname: this.certname.clone(),
                    via_node: this.consensus.id,
                    session: this.session.clone(),
                };
                this.commit_with_retry(command).await;
            });
        }
        this.reactor.react(Stimulus::SessionOpened {
            certname: &this.certname,
        });
        let mut heartbeat = tokio::time::interval(this.heartbeat_interval);
        let mut sequence = 0u64;
        let silence_max = this.heartbeat_interval * 3;
        let mut last_heard = tokio::time::Instant::now();
        let mut cut_off_since: Option<tokio::time::Instant> = None;
        let mut full_ticks = 0u32;
        loop {
            tokio::select! {
                biased;
                received = inbound.message() => match received {
                    Ok(Some(msg)) => {
                        last_heard = tokio::time::Instant::now();
                        this.handle(msg);
                    }
                    Ok(None) | Err(_) => break,
                },
                _ = heartbeat.tick() => {
                    if this.consensus.in_touch_with_quorum(CUT_OFF_AFTER) {
                        cut_off_since = None;
                    } else if cut_off_since.get_or_insert_with(tokio::time::Instant::now).elapsed() >= CUT_OFF_AFTER {
                        tracing::warn!("cut off from the cluster's quorum; sending agent {} elsewhere", this.certname);
                        let _ = this.tx.try_send(message(Kind::Refused(Refused {
                            reason: "this orchestrator node is cut off from the cluster; try another".into(),
                        })));
                        break;
                    }
                    if this.consensus.is_draining() {
                        tracing::info!("draining: sending agent {} elsewhere", this.certname);
                        let _ = this.tx.try_send(message(Kind::Refused(Refused {
                            reason: DRAINING.into(),
                        })));
                        break;
                    }
                    if let Some(serial) = this.certificate_revoked() {
                        tracing::warn!("agent {}'s certificate (serial {serial}) is revoked; closing its session", this.certname);
                        let _ = this.tx.try_send(message(Kind::Refused(Refused {
                            reason: format!("certificate '{}' (serial {serial}) has been revoked", this.certname),
                        })));
                        break;
                    }
                    if last_heard.elapsed() > silence_max {
                        tracing::warn!("agent {} missed 3 heartbeats; closing its session", this.certname);
                        break;
                    }
                    if !this.registry.is_current(&this.certname, this.session_id) {
                        break; // superseded by a newer session
                    }
                    if this.tx.take_overflow() {
                        this.reactor.react(Stimulus::SessionOverflowed {
                            certname: &this.certname,
                        });
                    }
                    sequence += 1;
                    // A queue still full at three heartbeats in a row (a whole silence
                    // window) is an agent too slow to keep: it reconnects and reconciles.
                    // One full at a single tick is not: with a small queue, the status query
                    // just sent fills it, and closing then meant reconnecting for ever.
                    match this.tx.send_if_room(message(Kind::Heartbeat(Heartbeat { sequence }))) {
                        Ok(true) => full_ticks = 0,
                        Ok(false) => {
                            full_ticks += 1;
                            if full_ticks >= 3 {
                                tracing::warn!("agent {}'s queue stayed full for 3 heartbeats; closing its session", this.certname);
                                break;
                            }
                        }
                        Err(()) => break,
                    }
                }
            }
        }
        if this.registry.unregister(&this.certname, this.session_id) {
            tracing::info!("agent {} disconnected", this.certname);
        }
        let command = Command::AgentDisconnected {
            certname: this.certname.clone(),
            via_node: this.consensus.id,
            session: this.session.clone(),
        };
        // In a task of its own, not awaited here: a commit's future is several KB, and
        // awaiting it inline would make every connected session's task that much larger.
        this.tasks
            .clone()
            .spawn(async move { this.commit_with_retry(command).await });
    }

    fn handle(self: &Arc<Self>, msg: AgentMessage) {
        match msg.kind {
            Some(agent_message::Kind::Result(result)) => self.clone().commit_result(result),
            Some(agent_message::Kind::Status(reply)) => self.handle_status(reply),
            Some(agent_message::Kind::Heartbeat(_))
            | Some(agent_message::Kind::Hello(_))
            | None => {}
        }
    }

    fn handle_status(self: &Arc<Self>, reply: StatusReply) {
        let mut lacking = Vec::new();
        for status in reply.statuses {
            match transaction_status::State::try_from(status.state) {
                Ok(transaction_status::State::Unknown) => lacking.push(status.transaction_id),
                Ok(transaction_status::State::Done) => {
                    if let Some(result) = status.result {
                        self.clone().commit_result(result);
                    }
                }
                Ok(transaction_status::State::Running) | Err(_) => {}
            }
        }
        if !lacking.is_empty() {
            self.reactor.react(Stimulus::AgentLacks {
                certname: &self.certname,
                transaction_ids: &lacking,
            });
        }
    }

    /// Commits a result and acknowledges it once committed (or known to be stale).
    fn commit_result(self: Arc<Self>, result: RunResult) {
        self.tasks.clone().spawn(async move {
            let transaction_id = result.transaction_id.clone();
            let command = Command::ReportRun {
                transaction_id: transaction_id.clone(),
                outcome: to_outcome(result),
            };
            let request_id = format!("report-{transaction_id}");
            let deadline = tokio::time::Instant::now() + COMMIT_RETRY_FOR;
            let mut pause = RetryPause::new();
            loop {
                match self
                    .consensus
                    .write(Some(request_id.clone()), command.clone())
                    .await
                {
                    Ok(Outcome::ReportAccepted { .. })
                    | Ok(Outcome::Rejected(Rejection::UnknownTransaction(_))) => {
                        let _ = self
                            .tx
                            .try_send(message(Kind::Ack(ResultAck { transaction_id })));
                        return;
                    }
                    Ok(other) => {
                        tracing::warn!("result of {transaction_id} not accepted: {other:?}");
                        return;
                    }
                    Err(e) if tokio::time::Instant::now() < deadline && !self.tx.is_closed() => {
                        tracing::warn!("cannot commit the result of {transaction_id} yet: {e}");
                        pause.sleep().await;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "giving up on the result of {transaction_id} for now (the agent re-sends it): {e}"
                        );
                        return;
                    }
                }
            }
        });
    }

    /// Commits an inventory change of this session, retrying until it is recorded.
    async fn commit_with_retry(&self, command: Command) {
        let deadline = tokio::time::Instant::now() + COMMIT_RETRY_FOR;
        let mut pause = RetryPause::new();
        while let Err(e) = self.consensus.write(None, command.clone()).await {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("giving up committing {command:?}: {e}");
                return;
            }
            pause.sleep().await;
            if self.needs_no_retry(&command) {
                return;
            }
        }
    }

    /// Whether an inventory change that failed to commit in time needs no new proposal: the
    /// one that failed committed after all (see [`RetryPause`]), or it no longer matters.
    fn needs_no_retry(&self, command: &Command) -> bool {
        let applied = self.consensus.view.read();
        let record = applied.cluster.inventory().agents().get(&self.certname);
        match command {
            // A session that ended is not to be recorded as connected: a connect committed
            // after its disconnect would show the agent connected for good.
            Command::AgentConnected { session, .. } => {
                record.is_some_and(|r| &r.session == session)
                    || !self.registry.is_current(&self.certname, self.session_id)
            }
            Command::AgentDisconnected { session, .. } => {
                record.is_none_or(|r| &r.session != session || !r.connected)
            }
            _ => false,
        }
    }
}

/// Most of a task's standard error kept in the state.
pub const TASK_STDERR_BYTES_MAX: usize = 4 * 1024;

/// A proto result as the state machine records it.
pub fn to_outcome(result: RunResult) -> RunOutcome {
    let mut message = result.message;
    if message.len() > RESULT_MESSAGE_BYTES_MAX {
        message = porch_core::node_run::truncate_utf8(message, RESULT_MESSAGE_BYTES_MAX);
    }
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    let record = porch_core::RunResult {
        status: result.status,
        metrics: result.metrics.into_iter().collect(),
        configuration_version: non_empty(result.configuration_version),
        transaction_uuid: non_empty(result.puppet_transaction_uuid),
        environment: non_empty(result.environment),
        exit_code: Some(result.exit_code),
        message: non_empty(message.clone()),
        noop: result.noop,
        noop_pending: result.noop_pending,
        report_sha256: non_empty(result.report_sha256),
        run_time_ms: result.time_total_ms,
        events: result.events.into_iter().collect(),
        stderr: non_empty(porch_core::node_run::truncate_utf8(
            result.stderr,
            TASK_STDERR_BYTES_MAX,
        )),
    };
    match run_result::Outcome::try_from(result.outcome) {
        Ok(run_result::Outcome::Finished) => RunOutcome::Finished(record),
        Ok(run_result::Outcome::Failed) => RunOutcome::Failed(record),
        Ok(run_result::Outcome::Errored) => RunOutcome::Errored {
            message: if message.is_empty() {
                "the agent reported an error".into()
            } else {
                message
            },
        },
        Err(_) => RunOutcome::Errored {
            message: format!("the agent sent an unknown outcome {}", result.outcome),
        },
    }
}
