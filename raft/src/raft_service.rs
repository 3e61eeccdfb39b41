//! The receiving side of raft RPC: decodes a peer's message, checks it comes from this
//! cluster, and hands it to the local openraft instance.

use crate::network::{CLUSTER_ID_HEADER, ClusterIdSource, RpcReply};
use crate::proto::Payload;
use crate::proto::raft_server::Raft as RaftRpc;
use crate::repair::VoteFloor;
use crate::types::{Raft, SnapshotMeta, TypeConfig, Vote};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

pub struct RaftService {
    raft: Raft,
    cluster_id: ClusterIdSource,
    /// openraft's leader lease (its maximum election timeout): a voter refuses every
    /// candidate for this long after it last heard from a leader.
    leader_lease: Duration,
    /// When this node last accepted an AppendEntries (entries or heartbeat) from a leader.
    last_leader_contact: Arc<LeaderContact>,
    /// Set when this node lost entries to corruption at start (see [`VoteFloor`]).
    vote_floor: Option<VoteFloor>,
}

/// When this node last accepted an AppendEntries (entries or heartbeat) from a leader: a
/// follower's only sign that it is still in touch with a quorum (openraft's metrics keep the
/// last leader known, however long ago it was heard). Shared with the status API.
#[derive(Debug, Default)]
pub struct LeaderContact(Mutex<Option<tokio::time::Instant>>);

impl LeaderContact {
    /// How long ago a leader was last heard from (`None`: never, since this process started).
    pub fn elapsed(&self) -> Option<Duration> {
        self.last().map(|at| at.elapsed())
    }

    fn last(&self) -> Option<tokio::time::Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now());
    }
}

impl RaftService {
    pub fn new(
        raft: Raft,
        cluster_id: ClusterIdSource,
        leader_lease: Duration,
        vote_floor: Option<VoteFloor>,
    ) -> RaftService {
        RaftService {
            raft,
            cluster_id,
            leader_lease,
            last_leader_contact: Arc::default(),
            vote_floor,
        }
    }

    /// Whether to answer this AppendEntries with [`crate::network::LOG_REVERTED`]: while this
    /// node's log is still short of its vote floor, every request that starts past this
    /// node's log (its leader believes the lost entries are here). The leader takes it as the
    /// conflict it is, after allowing this follower's log to go back: answered by openraft
    /// instead, the conflict could reach a leader not yet allowed, which then never probes
    /// below it (simulation seed 2298: a telling lost in transit, a follower stuck for good).
    fn tell_reverted(&self, request: &openraft::raft::AppendEntriesRequest<TypeConfig>) -> bool {
        let Some(floor) = self.vote_floor else {
            return false;
        };
        use openraft::rt::watch::WatchReceiver;
        let own_last = self.raft.metrics().borrow_watched().last_log_index;
        if own_last.is_some_and(|own| own >= floor.index) {
            return false;
        }
        request.prev_log_id.map(|id| id.index) > own_last
    }

    /// A refusal when the vote floor forbids voting for this candidate (`None`: openraft
    /// decides). The floor is checked here, before openraft sees the request, because
    /// openraft compares the candidate with the log as it is, not with the entries this node
    /// acknowledged and then lost.
    fn below_vote_floor(&self, request: &VoteRequest) -> Option<VoteResponse> {
        let floor = self.vote_floor?;
        use openraft::rt::watch::WatchReceiver;
        let metrics = self.raft.metrics().borrow_watched().clone();
        let own_last = metrics.last_log_index;
        if floor.allows(own_last, request.last_log_id.as_ref()) {
            return None;
        }
        tracing::info!(
            "refused a vote for {} (its log ends at {:?}): this node lost entries up to {} to corruption and has not got them back",
            request.vote,
            request.last_log_id,
            floor.index
        );
        Some(VoteResponse::new(metrics.vote, None, false))
    }

    /// This node's last contact with a leader, as the status API reads it.
    pub fn leader_contact(&self) -> Arc<LeaderContact> {
        self.last_leader_contact.clone()
    }

    /// Campaigns at once when a candidate was refused for having a shorter log than this
    /// node's and this node, too, has not heard from a leader for a whole lease.
    ///
    /// After a leader dies, the first follower whose timer fires is often the one that missed
    /// the dead leader's last entry: the others refuse it, and without this the election
    /// waits for the next timer (another 0.5–1 s at default settings; measured: leader kill
    /// to next dispatch 2.4–2.9 s instead of 1.5–2 s). The node with the better log is the
    /// one that can win, and it only asks (a pre-vote), so a leader still in touch with a
    /// quorum is never deposed by it.
    fn campaign_if_better_candidate(&self, request: &VoteRequest, response: &VoteResponse) {
        if response.vote_granted || response.last_log_id <= request.last_log_id {
            return;
        }
        let contact = self.last_leader_contact.last();
        if contact.is_some_and(|at| at.elapsed() < self.leader_lease) {
            return;
        }
        {
            use openraft::rt::watch::WatchReceiver;
            if self.raft.metrics().borrow_watched().state != openraft::ServerState::Follower {
                return;
            }
        }
        let raft = self.raft.clone();
        tokio::spawn(async move {
            let _ = raft.trigger().elect(true).await;
        });
    }

    /// Why this node refuses to vote, if it must: a learner is not part of any quorum, so a
    /// vote from it would count for nothing, yet granting one would move its term and make it
    /// refuse the leader it follows. The vote is not handed to raft: nothing changes.
    fn vote_refusal(&self) -> Option<String> {
        use openraft::rt::watch::WatchReceiver;
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let learner = metrics
            .membership_config
            .membership()
            .learner_ids()
            .any(|id| id == metrics.id);
        learner.then(|| {
            format!(
                "node {} is a learner (a non-voting member): it does not vote",
                metrics.id
            )
        })
    }

    /// Decodes the payload after checking the sender's cluster id against ours, with the
    /// format version it came in (the reply goes back in it). A peer of another cluster (a
    /// stale address, a copied data dir) is refused, never obeyed.
    fn decode<T: DeserializeOwned>(&self, request: Request<Payload>) -> Result<(T, u16), Status> {
        if let (Some(theirs), Some(ours)) = (
            request.metadata().get(CLUSTER_ID_HEADER),
            (self.cluster_id)(),
        ) && theirs.as_bytes() != ours.as_bytes()
        {
            return Err(Status::failed_precondition(format!(
                "message from another cluster ({:?}); this node belongs to cluster {ours}",
                String::from_utf8_lossy(theirs.as_bytes())
            )));
        }
        crate::wire::decode(&request.into_inner().json).map_err(|e| {
            // Logged here too: a message from a newer porch is refused on every retry, and
            // this node's operator must see why it does not follow.
            tracing::warn!("refused a raft message: {e}");
            Status::invalid_argument(format!("refused raft message: {e}"))
        })
    }
}

/// The reply to a request that came in format `version`, in that version (its sender reads it).
fn reply<T: Serialize, E: std::fmt::Display>(
    version: u16,
    result: Result<T, E>,
) -> Result<Response<Payload>, Status> {
    let reply = match result {
        Ok(value) => RpcReply::Ok(value),
        Err(error) => RpcReply::Err(error.to_string()),
    };
    let json = crate::wire::encode(version, &reply)
        .map_err(|e| Status::internal(format!("encode: {e}")))?;
    Ok(Response::new(Payload { json }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let (rpc, version): (VoteRequest, u16) = self.decode(request)?;
        if let Some(refusal) = self.vote_refusal() {
            return reply::<VoteResponse, _>(version, Err(refusal));
        }
        if let Some(refusal) = self.below_vote_floor(&rpc) {
            return reply(version, Ok::<_, String>(refusal));
        }
        let result = self.raft.vote(rpc.clone()).await;
        if let Ok(response) = &result {
            self.campaign_if_better_candidate(&rpc, response);
        }
        reply(version, result)
    }

    async fn pre_vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let (rpc, version): (VoteRequest, u16) = self.decode(request)?;
        if let Some(refusal) = self.vote_refusal() {
            return reply::<VoteResponse, _>(version, Err(refusal));
        }
        if let Some(refusal) = self.below_vote_floor(&rpc) {
            return reply(version, Ok::<_, String>(refusal));
        }
        let result = self.raft.pre_vote(rpc.clone()).await;
        if let Ok(response) = &result {
            self.campaign_if_better_candidate(&rpc, response);
        }
        reply(version, result)
    }

    async fn append_entries(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let (rpc, version): (openraft::raft::AppendEntriesRequest<TypeConfig>, u16) =
            self.decode(request)?;
        if self.tell_reverted(&rpc) {
            return reply::<(), _>(version, Err(crate::network::LOG_REVERTED));
        }
        let result = self.raft.append_entries(rpc).await;
        if result.as_ref().is_ok_and(|r| r.is_success()) {
            self.last_leader_contact.touch();
        }
        reply(version, result)
    }

    async fn transfer_leader(
        &self,
        request: Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        let (rpc, version) = self.decode(request)?;
        reply(version, self.raft.handle_transfer_leader(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        let ((vote, meta, data), version): ((Vote, SnapshotMeta, Vec<u8>), u16) =
            self.decode(request)?;
        let snapshot = openraft::storage::Snapshot {
            meta,
            snapshot: data,
        };
        reply(
            version,
            self.raft.install_full_snapshot(vote, snapshot).await,
        )
    }
}
