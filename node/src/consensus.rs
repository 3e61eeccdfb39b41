//! The node's handle on raft: commit a command through whoever leads, wait for a
//! linearizable read point, change membership, report status.
//!
//! Clients never see "not leader". A node that is not the leader forwards the command to the
//! leader over the internal `Cluster.Write` RPC and retries across elections until the request
//! deadline. Retrying is safe because every command that must not apply twice carries a
//! request id the state machine deduplicates (`porch_core::request_log`). Time is stamped by
//! the leader, on the node that proposes — never by the forwarding follower.

use crate::clock::Clock;
use futures::FutureExt;
use openraft::ReadPolicy;
use porch_core::{Command, Origin, Outcome, Request};
use porch_raft::network::{Dialer, MESSAGE_BYTES_MAX};
use porch_raft::proto::Payload;
use porch_raft::proto::cluster_client::ClusterClient;
use porch_raft::{AppliedView, Raft};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// A command on its way to the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteRequest {
    pub request_id: Option<String>,
    pub command: Command,
    pub origin: Option<Origin>,
}

/// What the leader (or a node that thought it was) answers to a forwarded request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaderReply<T> {
    Ok(T),
    /// Try that node instead (or wait, if `None`: an election is under way).
    NotLeader(Option<u64>),
    /// The request cannot succeed anywhere (e.g. an invalid membership change).
    Refused(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsensusError {
    #[error("no leader could be reached within {timeout_ms} ms ({last_error})")]
    Unavailable { timeout_ms: u64, last_error: String },
    #[error("{0}")]
    Refused(String),
}

pub struct Consensus {
    pub id: u64,
    pub raft: Raft,
    pub view: Arc<AppliedView>,
    clock: Arc<dyn Clock>,
    dialer: Arc<dyn Dialer>,
    /// This node's store, for the disk use it reports.
    disk: Arc<dyn porch_raft::Disk>,
    /// One gRPC channel per peer address, reused: connecting per forwarded request would cost
    /// a TCP and HTTP/2 handshake each time.
    channels: std::sync::Mutex<BTreeMap<String, porch_raft::network::PeerChannel>>,
    request_timeout: Duration,
    /// The cluster-wide cap on runs in flight (`--runs-in-flight-max`), stamped into job
    /// submissions this node proposes as leader.
    runs_in_flight_max: u32,
    /// Idempotent proposals still pending on this node as leader.
    pending: crate::pending_proposals::PendingProposals,
    /// The membership change or leadership transfer this node is carrying out as leader.
    pub(crate) member_change: crate::membership::OneAtATime,
}

/// Backoff between attempts to reach a leader: deterministic (no jitter), capped.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((20u64 << attempt.min(5)).min(500))
}

impl Consensus {
    pub fn new(
        id: u64,
        raft: Raft,
        view: Arc<AppliedView>,
        clock: Arc<dyn Clock>,
        dialer: Arc<dyn Dialer>,
        disk: Arc<dyn porch_raft::Disk>,
        request_timeout: Duration,
        runs_in_flight_max: u32,
    ) -> Consensus {
        Consensus {
            disk,
            runs_in_flight_max,
            pending: Default::default(),
            member_change: Default::default(),
            id,
            raft,
            view,
            clock,
            dialer,
            channels: std::sync::Mutex::new(BTreeMap::new()),
            request_timeout,
        }
    }

    /// The cached channel to `addr` (tonic reconnects a broken channel on its own).
    pub(crate) fn channel(&self, addr: &str) -> Result<porch_raft::network::PeerChannel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = self.dialer.channel(addr)?;
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Bytes this node's store occupies on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk.size_on_disk()
    }

    /// A copy of raft's current metrics.
    pub fn metrics(&self) -> openraft::RaftMetrics<porch_raft::TypeConfig> {
        use openraft::rt::watch::WatchReceiver;
        self.raft.metrics().borrow_watched().clone()
    }

    /// The leader this node knows of. Read from the server metrics (a few fields that change
    /// per election) rather than copying the full metrics, which this runs on every write.
    pub fn current_leader(&self) -> Option<u64> {
        use openraft::rt::watch::WatchReceiver;
        self.raft.server_metrics().borrow_watched().current_leader
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current leader's id and address, as this node knows it.
    pub fn leader(&self) -> Option<(u64, String)> {
        let metrics = self.metrics();
        let leader = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())?;
        Some((leader, addr))
    }

    /// A watch that wakes when this node's view of the vote, role or leader changes: unlike
    /// the full metrics, not on every write.
    pub fn role_changes(&self) -> RoleChanges {
        use openraft::rt::watch::WatchReceiver;
        let mut watch = self.raft.server_metrics();
        watch.borrow_and_update();
        RoleChanges(watch)
    }

    pub fn is_leader(&self) -> bool {
        self.current_leader() == Some(self.id)
    }

    /// Whether this node leads and has applied an entry of its own term: everything committed
    /// before it was elected is then in its applied state. A leader decides from that state
    /// only then; before, it may see occurrences already fired or runs already started as
    /// still to do, and propose what `apply` will refuse while what is due waits.
    pub fn leads_with_current_state(&self) -> bool {
        let metrics = self.metrics();
        metrics.current_leader == Some(self.id)
            && metrics
                .last_applied
                .as_ref()
                .is_some_and(|applied| applied.committed_leader_id().term == metrics.current_term)
    }

    /// Whether this node can currently get anything committed: it knows a leader, and if it
    /// is the leader, a quorum acknowledged it recently. A node cut off from the majority, or
    /// removed from the cluster while it still believes it leads, answers `false`.
    // `millis_since_quorum_ack` is deprecated for `last_quorum_acked`, an instant of the
    // runtime's clock; the millisecond figure says the same thing without that type.
    #[allow(deprecated)]
    pub fn in_touch_with_quorum(&self, within: Duration) -> bool {
        let metrics = self.metrics();
        match metrics.current_leader {
            None => false,
            Some(leader) if leader == self.id => metrics
                .millis_since_quorum_ack
                .is_some_and(|ms| ms <= within.as_millis() as u64),
            Some(_) => true,
        }
    }

    /// Commits `command` and returns its outcome, wherever the leader is.
    pub async fn write(
        &self,
        request_id: Option<String>,
        command: Command,
    ) -> Result<Outcome, ConsensusError> {
        self.write_on_behalf(request_id, command, None).await
    }

    /// Commits `command` made with a user's token (`origin`): `apply` checks the token and the
    /// permission against the state it applies to and audits the attempt.
    pub async fn write_on_behalf(
        &self,
        request_id: Option<String>,
        command: Command,
        origin: Option<Origin>,
    ) -> Result<Outcome, ConsensusError> {
        let request = WriteRequest {
            request_id,
            command,
            origin,
        };
        self.via_leader("Write", &request, |request| self.write_as_leader(request))
            .await
    }

    /// Runs on the leader: stamps the time and proposes, once for an idempotent request
    /// identical to one still pending (see [`crate::pending_proposals`]).
    pub async fn write_as_leader(&self, request: WriteRequest) -> LeaderReply<Outcome> {
        let key = crate::pending_proposals::merges(&request.command)
            .then(|| serde_json::to_vec(&request).ok())
            .flatten();
        let raft = self.raft.clone();
        self.pending
            .propose(key, || self.stamp_and_propose(raft, request).boxed())
            .await
    }

    fn stamp_and_propose(
        &self,
        raft: Raft,
        request: WriteRequest,
    ) -> impl std::future::Future<Output = LeaderReply<Outcome>> + Send + 'static {
        let mut command = request.command;
        // The leader decides: a new job's first runs start in its own entry, under this
        // leader's cluster-wide cap (the same cap its scheduler loop applies).
        if let Command::SubmitJob {
            start_under_cap, ..
        } = &mut command
        {
            *start_under_cap = Some(self.runs_in_flight_max);
        }
        let stamped = Request {
            request_id: request.request_id,
            now_ms: self.clock.now_ms(),
            command,
            origin: request.origin,
        };
        async move {
            match raft.client_write(stamped).await {
                Ok(response) => LeaderReply::Ok(response.data),
                Err(error) => match error.forward_to_leader() {
                    Some(forward) => LeaderReply::NotLeader(forward.leader_id),
                    None => LeaderReply::NotLeader(None),
                },
            }
        }
    }

    /// Returns once this node's state machine has applied everything committed before the
    /// call: a read after this sees every write acknowledged before it (ReadIndex).
    pub async fn read_barrier(&self) -> Result<(), ConsensusError> {
        if porch_core::planted::active(porch_core::planted::Bug::ReadWithoutBarrier) {
            return Ok(());
        }
        let index: u64 = self
            .via_leader("ReadIndex", &(), |_| self.read_index_as_leader())
            .await?;
        let mut applied = self.view.applied_index();
        let wait = applied.wait_for(|&applied| applied >= index);
        match tokio::time::timeout(self.request_timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ConsensusError::Unavailable {
                timeout_ms: self.request_timeout.as_millis() as u64,
                last_error: format!("this node did not apply up to index {index} in time"),
            }),
        }
    }

    pub async fn read_index_as_leader(&self) -> LeaderReply<u64> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read_log_id) => LeaderReply::Ok(read_log_id.log_id().index),
            Err(error) => match error.forward_to_leader() {
                Some(forward) => LeaderReply::NotLeader(forward.leader_id),
                None => LeaderReply::NotLeader(None),
            },
        }
    }

    /// Whether this node is the leader *and* a voter of its own membership. A leader that was
    /// just removed keeps leading until it steps down, but must not start another membership
    /// change: openraft only lets a voting leader do that (it asserts so in debug builds).
    pub(crate) fn leads_as_voter(&self) -> bool {
        let metrics = self.metrics();
        metrics.current_leader == Some(self.id)
            && metrics
                .membership_config
                .membership()
                .voter_ids()
                .any(|voter| voter == self.id)
    }

    /// Runs `local` here if this node leads, else sends `request` to the leader's `method`;
    /// follows leader hints and waits out elections until the request deadline.
    pub(crate) async fn via_leader<Req, Resp, F, Fut>(
        &self,
        method: &str,
        request: &Req,
        local: F,
    ) -> Result<Resp, ConsensusError>
    where
        Req: Serialize + Clone,
        Resp: serde::de::DeserializeOwned,
        F: Fn(Req) -> Fut,
        Fut: std::future::Future<Output = LeaderReply<Resp>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut last_error = String::from("no leader known");
        let mut hint: Option<u64> = None;
        let mut redirects = 0u32;
        for attempt in 0u32.. {
            let target = hint.or_else(|| self.current_leader());
            let reply = match target {
                None => LeaderReply::NotLeader(None),
                // Bounded: a proposal made just before this node lost leadership may never
                // be answered here; the request id makes the retry safe.
                Some(leader) if leader == self.id => {
                    match tokio::time::timeout_at(deadline, local(request.clone())).await {
                        Ok(reply) => reply,
                        Err(_) => {
                            last_error = "the proposal was not answered in time".into();
                            LeaderReply::NotLeader(None)
                        }
                    }
                }
                Some(leader) => match self.forward(leader, method, request, deadline).await {
                    Ok(reply) => reply,
                    Err(error) => {
                        last_error = error;
                        LeaderReply::NotLeader(None)
                    }
                },
            };
            match reply {
                LeaderReply::Ok(value) => return Ok(value),
                LeaderReply::Refused(message) => return Err(ConsensusError::Refused(message)),
                LeaderReply::NotLeader(next) => {
                    hint = next.filter(|&n| Some(n) != target);
                    if hint.is_none() {
                        last_error = format!("{last_error}; no leader elected yet");
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            // Follow the first redirect at once; back off after that. Two nodes that each
            // name the other as leader (one of them stale) would otherwise bounce a request
            // between them as fast as the network allows until the stale one catches up.
            if hint.is_none() || redirects > 0 {
                self.pause_unless_leader_changes(target, backoff(attempt))
                    .await;
            }
            if hint.is_some() {
                redirects += 1;
            }
        }
        Err(ConsensusError::Unavailable {
            timeout_ms: self.request_timeout.as_millis() as u64,
            last_error,
        })
    }

    /// Sleeps for `pause`, cut short as soon as this node knows a leader other than `failed`
    /// (the one just tried, or `None`): after an election the retry goes out at once rather
    /// than at the end of a backoff that by then may be 500 ms long. Never returns at once
    /// when nothing changed, so a retry loop cannot spin without time passing.
    async fn pause_unless_leader_changes(&self, failed: Option<u64>, pause: Duration) {
        use openraft::rt::watch::WatchReceiver;
        let mut metrics = self.raft.metrics();
        let leader_changed = async {
            loop {
                let leader = metrics.borrow_watched().current_leader;
                if leader.is_some() && leader != failed {
                    return;
                }
                if metrics.changed().await.is_err() {
                    // Raft stopped: nothing will change; let the pause run out.
                    std::future::pending::<()>().await;
                }
            }
        };
        let _ = tokio::time::timeout(pause, leader_changed).await;
    }

    async fn forward<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        leader: u64,
        method: &str,
        request: &Req,
        deadline: tokio::time::Instant,
    ) -> Result<LeaderReply<Resp>, String> {
        let addr = self
            .metrics()
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
            .ok_or_else(|| format!("leader {leader} has no known address"))?;
        let channel = self.channel(&addr)?;
        let mut client = ClusterClient::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let json = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        let payload = tonic::Request::new(Payload { json });
        let call = async {
            match method {
                "Write" => client.write(payload).await,
                "ReadIndex" => client.read_index(payload).await,
                "ChangeMember" => client.change_member(payload).await,
                "Status" => client.status(payload).await,
                other => Err(tonic::Status::unimplemented(other.to_string())),
            }
        };
        let response = tokio::time::timeout_at(deadline, call)
            .await
            .map_err(|_| format!("leader {leader} at {addr} did not answer in time"))?
            .map_err(|status| format!("leader {leader} at {addr}: {}", status.message()))?;
        serde_json::from_slice(&response.into_inner().json)
            .map_err(|e| format!("leader {leader} sent an undecodable reply: {e}"))
    }

    /// Whether `certname` is the certname of a current member (voter or learner); `None`
    /// while this node knows no membership yet (before its first entry from a leader).
    /// Reads the server metrics (no copy): this runs on every raft RPC received.
    pub fn is_member_certname(&self, certname: &str) -> Option<bool> {
        use openraft::rt::watch::WatchReceiver;
        let metrics = self.raft.server_metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        let mut nodes = membership.nodes().peekable();
        nodes.peek()?;
        Some(nodes.any(|(_, node)| node.certname() == certname))
    }

    /// The members with their addresses and whether they vote.
    pub fn members(&self) -> BTreeMap<u64, (String, bool)> {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| (*id, (node.addr.clone(), voters.contains(id))))
            .collect()
    }
}

pub(crate) fn refusal<
    E: std::fmt::Debug
        + std::fmt::Display
        + openraft::TryAsRef<openraft::error::ForwardToLeader<porch_raft::TypeConfig>>,
    T,
>(
    error: openraft::error::RaftError<porch_raft::TypeConfig, E>,
) -> LeaderReply<T> {
    match error.forward_to_leader() {
        Some(forward) => LeaderReply::NotLeader(forward.leader_id),
        None => LeaderReply::Refused(error.to_string()),
    }
}

/// See [`Consensus::role_changes`].
pub struct RoleChanges(
    openraft::type_config::alias::WatchReceiverOf<
        porch_raft::TypeConfig,
        openraft::metrics::RaftServerMetrics<porch_raft::TypeConfig>,
    >,
);

impl RoleChanges {
    /// Returns at the next change, or after `at_most`. Once raft has stopped there are no
    /// more changes: it waits `at_most` rather than return at once, or a caller's loop
    /// would spin until the process exits (the scheduler loop that used this did, on a node
    /// whose disk failed, and held the simulation's only thread at one instant).
    pub async fn next(&mut self, at_most: Duration) {
        use openraft::rt::watch::WatchReceiver;
        let started = tokio::time::Instant::now();
        if let Ok(Err(_stopped)) = tokio::time::timeout(at_most, self.0.changed()).await {
            tokio::time::sleep_until(started + at_most).await;
        }
    }
}
