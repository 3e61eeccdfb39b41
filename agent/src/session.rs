//! The agent's side of a session: connect to one orchestrator node, say hello, follow its
//! requests, send results, and fail over to the next URL when the session is lost.
//!
//! Guarantees (with the spool): a transaction is run at most once however often it is
//! requested; a result is re-sent on every new session until the cluster acknowledges it.

use crate::proto::agent_sessions_client::AgentSessionsClient;
use crate::proto::{
    AgentMessage, Heartbeat, Hello, RunRequest, RunResult, ServerMessage, StatusReply,
    TransactionStatus, agent_message, run_result, server_message, transaction_status,
};
use crate::runner::Runner;
use crate::spool::{Entry, Outcome, Spool, StoredResult, valid_transaction_id};
use crate::transport::describe_status;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Requests queued behind the one running, by default; the orchestrator never sends a node two
/// runs at once, so this only guards against a misbehaving server.
pub const RUN_QUEUE_MAX: usize = 64;

/// How long a node has to answer a session (its headers, then its welcome) before the agent
/// gives up on it and fails over.
pub const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// Reconnect delays double from the first to the last, jittered ([`jittered`]).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Starts the error of a session the server refused with a `Refused` message.
const REFUSED_PREFIX: &str = "refused the session: ";

/// Opens a channel to an orchestrator URL (as the user wrote it). Production dials TLS
/// ([`crate::transport::tls_connector`]) or plain HTTP; the simulation passes its in-memory
/// network here, so it drives this very session code. Channels may connect lazily: a dial's
/// failure then surfaces at the session call, where it is described.
pub type Connector = Arc<dyn Fn(&str) -> Result<tonic::transport::Channel, String> + Send + Sync>;

/// What the agent does, for whoever watches (the simulation's checkers): `(transaction id,
/// job id, started?)` — called when a run starts and when it ends.
pub type RunObserver = Arc<dyn Fn(&str, u64, bool) + Send + Sync>;

pub struct Agent {
    pub certname: String,
    pub urls: Vec<String>,
    pub spool: Arc<Mutex<Spool>>,
    pub runner: Arc<Runner>,
    /// None dials plain HTTP ([`crate::transport::plain_connector`]); agents built from flags
    /// always set one.
    pub connector: Option<Connector>,
    pub observer: Option<RunObserver>,
    /// Task files (cache, fetches over the current session) and who watches task runs.
    pub tasks: crate::task::TaskSupport,
    /// Requests queued behind the one running (at least one); a request beyond is answered
    /// `errored` at once. [`RUN_QUEUE_MAX`] but in the simulation, which draws it per seed.
    pub run_queue_max: usize,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|p| p.into_inner())
}

fn agent_message(kind: agent_message::Kind) -> AgentMessage {
    AgentMessage { kind: Some(kind) }
}

pub fn to_proto(transaction_id: &str, result: &StoredResult) -> RunResult {
    RunResult {
        transaction_id: transaction_id.to_string(),
        outcome: match result.outcome {
            Outcome::Finished => run_result::Outcome::Finished as i32,
            Outcome::Failed => run_result::Outcome::Failed as i32,
            Outcome::Errored => run_result::Outcome::Errored as i32,
        },
        status: result.status.clone(),
        metrics: result.metrics.clone().into_iter().collect(),
        configuration_version: result.configuration_version.clone(),
        puppet_transaction_uuid: result.puppet_transaction_uuid.clone(),
        environment: result.environment.clone(),
        exit_code: result.exit_code,
        message: result.message.clone(),
        noop: result.puppet.noop,
        noop_pending: result.puppet.noop_pending,
        report_sha256: result.puppet.report_sha256.clone(),
        time_total_ms: result.puppet.time_total_ms,
        events: result.puppet.events.clone().into_iter().collect(),
        stderr: result.stderr.clone(),
    }
}

fn result_message(entry: &Entry) -> Option<AgentMessage> {
    entry.result.as_ref().map(|r| {
        agent_message(agent_message::Kind::Result(to_proto(
            &entry.transaction_id,
            r,
        )))
    })
}

/// `backoff` scaled into [½, 1½)× by a hash of the certname and attempt: when an orchestrator
/// node dies, its thousands of agents would otherwise all reconnect to the survivors at the
/// same instants, in the middle of the election. A hash rather than a random draw keeps the
/// simulation's runs reproducible.
fn jittered(backoff: Duration, certname: &str, attempt: u64) -> Duration {
    // FNV-1a: stable across platforms and releases, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in certname.bytes().chain(attempt.to_le_bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let fraction = (hash >> 11) as f64 / (1u64 << 53) as f64;
    backoff.mul_f64(0.5 + fraction)
}

impl Agent {
    /// Runs forever: one session at a time, failing over between URLs.
    pub async fn run(self: Arc<Self>) {
        let run_queue_max = self.run_queue_max.max(1);
        let (work_tx, work_rx) = mpsc::channel::<RunRequest>(run_queue_max);
        let (done_tx, mut done_rx) = mpsc::channel::<String>(run_queue_max + 1);
        // The worker lives exactly as long as this future: dropping the agent (a crash in the
        // simulation, shutdown in production) must not leave a run going on without it.
        let worker = tokio::spawn(self.clone().work(work_rx, done_tx));
        let _worker = AbortOnDrop(worker);
        let mut url_index = 0usize;
        let mut failures_here = 0u32;
        let mut backoff = BACKOFF_FIRST;
        let mut attempt = 0u64;
        loop {
            let url = self.urls[url_index % self.urls.len()].clone();
            let ended = self.session(&url, &work_tx, &mut done_rx).await;
            self.tasks.session_closed();
            match ended {
                Ok(()) => {
                    tracing::info!("{}: session with {url} ended", self.certname);
                    backoff = BACKOFF_FIRST;
                }
                Err(e) => {
                    // TLS trouble needs someone to fix certificates: say so louder than a
                    // node going away. Either way the agent backs off and retries.
                    if e.contains("TLS: ") {
                        tracing::error!("{}: {url}: {e}", self.certname);
                    } else {
                        tracing::warn!("{}: {url}: {e}", self.certname);
                    }
                    // A node that refuses us (cut off from its cluster, or not accepting our
                    // certificate) is not worth a retry.
                    if e.starts_with(REFUSED_PREFIX) {
                        failures_here += 1;
                    }
                }
            }
            // Retry the same orchestrator once, then move on to the next (as pxp-agent does).
            failures_here += 1;
            if failures_here >= 2 {
                failures_here = 0;
                url_index += 1;
            }
            attempt += 1;
            tokio::time::sleep(jittered(backoff, &self.certname, attempt)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Runs accepted requests one at a time; persists each result before announcing it.
    async fn work(
        self: Arc<Self>,
        mut work_rx: mpsc::Receiver<RunRequest>,
        done_tx: mpsc::Sender<String>,
    ) {
        while let Some(request) = work_rx.recv().await {
            tracing::info!(
                "{}: running transaction {} of job {}",
                self.certname,
                request.transaction_id,
                request.job_id
            );
            if let Some(observe) = &self.observer {
                observe(&request.transaction_id, request.job_id, true);
            }
            let result = match &request.task {
                Some(task) => self.run_task(&request, task).await,
                None => self.runner.run(&request, &self.certname).await,
            };
            if let Some(observe) = &self.observer {
                observe(&request.transaction_id, request.job_id, false);
            }
            if let Err(e) = lock(&self.spool).finish(&request.transaction_id, result) {
                tracing::error!("{}: {e}", self.certname);
                continue;
            }
            let _ = done_tx.send(request.transaction_id).await;
        }
    }

    async fn session(
        &self,
        url: &str,
        work_tx: &mpsc::Sender<RunRequest>,
        done_rx: &mut mpsc::Receiver<String>,
    ) -> Result<(), String> {
        let channel = match &self.connector {
            Some(connect) => connect(url)?,
            None => crate::transport::plain_connector()(url)?,
        };
        let (out_tx, out_rx) = mpsc::channel::<AgentMessage>(256);
        out_tx
            .send(agent_message(agent_message::Kind::Hello(Hello {
                certname: self.certname.clone(),
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                runner: self.runner.name().to_string(),
            })))
            .await
            .map_err(|_| "session closed")?;
        let outbound =
            futures::stream::unfold(
                out_rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let session_channel = channel.clone();
        let opened = tokio::time::timeout(
            WELCOME_TIMEOUT,
            AgentSessionsClient::new(channel).session(outbound),
        )
        .await
        .map_err(|_| format!("no answer within {WELCOME_TIMEOUT:?}"))?;
        let mut inbound = opened
            .map_err(|s| format!("cannot open a session: {}", describe_status(&s)))?
            .into_inner();
        let first = tokio::time::timeout(WELCOME_TIMEOUT, inbound.message())
            .await
            .map_err(|_| format!("no welcome within {WELCOME_TIMEOUT:?}"))?
            .map_err(|s| format!("session failed: {}", describe_status(&s)))?;
        let heartbeat = match first.and_then(|m| m.kind) {
            Some(server_message::Kind::Welcome(w)) => {
                self.tasks.session_opened(session_channel);
                tracing::info!(
                    "{}: connected to orchestrator node {} at {url}",
                    self.certname,
                    w.orchestrator_node
                );
                Duration::from_secs(w.heartbeat_interval_secs.clamp(1, 300) as u64)
            }
            Some(server_message::Kind::Refused(r)) => {
                return Err(format!("{REFUSED_PREFIX}{}", r.reason));
            }
            _ => return Err("the server did not welcome the session".into()),
        };
        let unacked = {
            let mut spool = lock(&self.spool);
            // Bounded: acknowledged transactions are forgotten after the spool's TTL.
            spool.purge(crate::spool::SPOOL_TTL);
            spool.unacked()
        };
        for entry in unacked {
            if let Some(message) = result_message(&entry) {
                out_tx.send(message).await.map_err(|_| "session closed")?;
            }
        }
        let mut ticker = tokio::time::interval(heartbeat);
        let mut last_heard = tokio::time::Instant::now();
        let mut sequence = 0u64;
        loop {
            tokio::select! {
                received = inbound.message() => match received {
                    Ok(Some(message)) => {
                        last_heard = tokio::time::Instant::now();
                        self.handle(message, work_tx, &out_tx).await?;
                    }
                    Ok(None) => return Ok(()),
                    Err(status) => return Err(format!("session lost: {}", describe_status(&status))),
                },
                Some(transaction_id) = done_rx.recv() => {
                    let entry = lock(&self.spool).get(&transaction_id).cloned();
                    if let Some(message) = entry.as_ref().and_then(result_message) {
                        out_tx.send(message).await.map_err(|_| "session closed")?;
                    }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > heartbeat * 3 {
                        return Err("the orchestrator missed 3 heartbeats".into());
                    }
                    sequence += 1;
                    out_tx
                        .send(agent_message(agent_message::Kind::Heartbeat(Heartbeat { sequence })))
                        .await
                        .map_err(|_| "session closed")?;
                }
            }
        }
    }

    async fn handle(
        &self,
        message: ServerMessage,
        work_tx: &mpsc::Sender<RunRequest>,
        out_tx: &mpsc::Sender<AgentMessage>,
    ) -> Result<(), String> {
        let reply = match message.kind {
            Some(server_message::Kind::Run(request)) => self.accept(request, work_tx),
            Some(server_message::Kind::StatusQuery(query)) => {
                let spool = lock(&self.spool);
                let statuses = query
                    .transaction_ids
                    .iter()
                    .map(|txn| match spool.get(txn) {
                        None => TransactionStatus {
                            transaction_id: txn.clone(),
                            state: transaction_status::State::Unknown as i32,
                            result: None,
                        },
                        Some(Entry { result: None, .. }) => TransactionStatus {
                            transaction_id: txn.clone(),
                            state: transaction_status::State::Running as i32,
                            result: None,
                        },
                        Some(Entry {
                            result: Some(r), ..
                        }) => TransactionStatus {
                            transaction_id: txn.clone(),
                            state: transaction_status::State::Done as i32,
                            result: Some(to_proto(txn, r)),
                        },
                    })
                    .collect();
                Some(agent_message(agent_message::Kind::Status(StatusReply {
                    statuses,
                })))
            }
            Some(server_message::Kind::Ack(ack)) => {
                if let Err(e) = lock(&self.spool).ack(&ack.transaction_id) {
                    tracing::warn!("{}: {e}", self.certname);
                }
                None
            }
            Some(server_message::Kind::Refused(r)) => {
                return Err(format!("{REFUSED_PREFIX}{}", r.reason));
            }
            Some(server_message::Kind::Heartbeat(_))
            | Some(server_message::Kind::Welcome(_))
            | None => None,
        };
        if let Some(reply) = reply {
            out_tx.send(reply).await.map_err(|_| "session closed")?;
        }
        Ok(())
    }

    /// A run request: run it if new, otherwise answer with what the spool knows.
    fn accept(
        &self,
        request: RunRequest,
        work_tx: &mpsc::Sender<RunRequest>,
    ) -> Option<AgentMessage> {
        let txn = request.transaction_id.clone();
        if !valid_transaction_id(&txn) {
            let result = StoredResult::errored(format!("invalid transaction id {txn:?}"));
            return Some(agent_message(agent_message::Kind::Result(to_proto(
                &txn, &result,
            ))));
        }
        let mut spool = lock(&self.spool);
        if let Some(entry) = spool.get(&txn) {
            // Known: never run twice. Re-send the result if there is one.
            return result_message(entry);
        }
        if let Err(e) = spool.accept(&txn, request.job_id) {
            tracing::error!("{}: {e}", self.certname);
            let result = StoredResult::errored(format!("the agent could not record the run: {e}"));
            return Some(agent_message(agent_message::Kind::Result(to_proto(
                &txn, &result,
            ))));
        }
        if work_tx.try_send(request).is_err() {
            let result = StoredResult::errored("the agent's run queue is full");
            let _ = spool.finish(&txn, result.clone());
            return Some(agent_message(agent_message::Kind::Result(to_proto(
                &txn, &result,
            ))));
        }
        None
    }
}

#[cfg(test)]
mod jitter_tests {
    use super::*;

    #[test]
    fn reconnect_delays_spread_over_half_to_one_and_a_half_backoffs() {
        let backoff = Duration::from_millis(1000);
        let delays: Vec<Duration> = (0..1000)
            .map(|i| jittered(backoff, &format!("node{i}.example.com"), 1))
            .collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= backoff / 2 && *d < backoff * 3 / 2)
        );
        let early = delays.iter().filter(|d| **d < backoff).count();
        assert!(
            (400..600).contains(&early),
            "{early} of 1000 below the backoff"
        );
        assert_eq!(jittered(backoff, "a", 3), jittered(backoff, "a", 3));
        assert_ne!(jittered(backoff, "a", 3), jittered(backoff, "a", 4));
    }
}
