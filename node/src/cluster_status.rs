//! `porch cluster status`: the leader's view of replication, joined with what every member
//! reports about itself.
//!
//! The leader knows how far it replicated to each member and when each last answered; only a
//! member knows its own role (a candidate), how far it applied, its snapshot and its disk. So
//! the node serving the request asks the leader for its view (through `Cluster.Status`) and
//! every member for its own (`Cluster.NodeStatus`, in parallel, each bounded by
//! [`MEMBER_ANSWER_WAIT`]); a member that does not answer is shown as unreachable.

use crate::consensus::{Consensus, ConsensusError, LeaderReply};
use openraft::ServerState;
use porch_raft::network::MESSAGE_BYTES_MAX;
use porch_raft::proto::Payload;
use porch_raft::proto::cluster_client::ClusterClient;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a member has to report itself before it is shown as unreachable.
const MEMBER_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// What a member reports about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSelfStatus {
    pub id: u64,
    /// `leader`, `follower`, `learner`, `candidate` or `stopped`.
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// Bytes of the node's store on disk: its sled files and snapshot.
    pub disk_bytes: u64,
    /// The format version this node's applied state says its cluster writes.
    /// (`None` from a build before format versions were agreed on.)
    pub format_version: Option<u16>,
    /// The newest format version this node's build reads (`None`: a build that does not
    /// say, which the leader takes as unable to read any version newer than its cluster's).
    pub format_version_max: Option<u16>,
    /// The certnames of the members this node knows (its membership): a member that lags
    /// behind a membership change asks the others whether a certname it does not know joined
    /// (`peer_auth`). Empty from a build that does not say.
    #[serde(default)]
    pub member_certnames: Vec<String>,
}

/// One member as `porch cluster status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: u64,
    pub addr: String,
    pub datacenter: Option<String>,
    pub draining: bool,
    pub voter: bool,
    /// The member's own word when it answered; else the leader's view (`leader`,
    /// `follower`, `learner`).
    pub role: String,
    /// Whether the member answered for itself.
    pub reachable: bool,
    /// Last log index known to be replicated to this member (the leader's view).
    pub last_log_index: Option<u64>,
    /// Entries this member is behind the leader's last log (the leader's view).
    pub lag: Option<u64>,
    /// The member's applied index, and how far it is behind the leader's commit.
    pub applied_index: Option<u64>,
    pub apply_lag: Option<u64>,
    /// Milliseconds since the leader last heard from this member (0 for the leader).
    pub last_contact_ms: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub disk_bytes: Option<u64>,
    /// The newest format version the member's build reads (its own report).
    pub format_version_max: Option<u16>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub leader: Option<u64>,
    pub term: u64,
    pub committed_index: Option<u64>,
    /// The format version the cluster writes, as the leader applied it (`None` from a
    /// leader of a build before format versions were agreed on).
    #[serde(default)]
    pub format_version: Option<u16>,
    pub members: Vec<MemberStatus>,
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Learner => "learner",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "stopped",
    }
}

impl Consensus {
    /// The cluster's status: the leader's view (asked of the leader wherever it is) joined
    /// with every member's own report.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ConsensusError> {
        let mut status: ClusterStatus = self
            .via_leader("Status", &(), |_| async { self.status_as_leader() })
            .await?;
        let reports = futures::future::join_all(
            status
                .members
                .iter()
                .map(|member| self.member_self_status(member.id, member.addr.clone())),
        )
        .await;
        // A leader of the previous release does not report it: this node's applied state says.
        if status.format_version.is_none() {
            status.format_version = Some(self.view.read().cluster.format_version());
        }
        let committed = status.committed_index;
        for (member, report) in status.members.iter_mut().zip(reports) {
            let Some(report) = report else { continue };
            member.reachable = true;
            member.role = report.role;
            member.applied_index = report.applied_index;
            member.apply_lag =
                committed.map(|c| c.saturating_sub(report.applied_index.unwrap_or(0)));
            member.snapshot_index = report.snapshot_index;
            member.disk_bytes = Some(report.disk_bytes);
            member.format_version_max = report.format_version_max;
        }
        Ok(status)
    }

    /// Member `id`'s report of itself (this node's own without a round trip), or `None`
    /// when it does not answer in time.
    pub(crate) async fn member_self_status(&self, id: u64, addr: String) -> Option<NodeSelfStatus> {
        if id == self.id {
            return Some(self.self_status());
        }
        let channel = self.channel(&addr).ok()?;
        let mut client = ClusterClient::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let call = client.node_status(tonic::Request::new(Payload {
            json: b"null".to_vec(),
        }));
        let response = tokio::time::timeout(MEMBER_ANSWER_WAIT, call)
            .await
            .ok()?
            .ok()?;
        let report: NodeSelfStatus = serde_json::from_slice(&response.into_inner().json).ok()?;
        // A member answering for another id is not this member's word.
        (report.id == id).then_some(report)
    }

    /// What this node reports about itself.
    pub fn self_status(&self) -> NodeSelfStatus {
        let metrics = self.metrics();
        NodeSelfStatus {
            id: self.id,
            role: role_name(metrics.state).into(),
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|l| l.index),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            disk_bytes: self.disk_bytes(),
            format_version: Some(self.view.read().cluster.format_version()),
            format_version_max: Some(porch_core::format_version::FORMAT_VERSION),
            member_certnames: metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(_, node)| node.certname().to_string())
                .collect(),
        }
    }

    /// The leader's own view: every member's address, labels, replication progress and last
    /// contact, from raft's metrics.
    pub fn status_as_leader(&self) -> LeaderReply<ClusterStatus> {
        use openraft::rt::Instant as _;
        let metrics = self.metrics();
        if metrics.current_leader != Some(self.id) {
            return LeaderReply::NotLeader(metrics.current_leader);
        }
        let last_log = metrics.last_log_index.unwrap_or(0);
        let replication = metrics.replication.clone().unwrap_or_default();
        let heartbeat = metrics.heartbeat.clone().unwrap_or_default();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(&id, node)| {
                let voter = voters.contains(&id);
                let matched = if id == self.id {
                    metrics.last_log_index
                } else {
                    replication.get(&id).cloned().flatten().map(|l| l.index)
                };
                let last_contact_ms = if id == self.id {
                    Some(0)
                } else {
                    heartbeat
                        .get(&id)
                        .cloned()
                        .flatten()
                        .map(|at| at.elapsed().as_millis() as u64)
                };
                MemberStatus {
                    id,
                    addr: node.addr.clone(),
                    datacenter: node.datacenter.clone(),
                    draining: node.draining,
                    voter,
                    role: match (id == self.id, voter) {
                        (true, _) => "leader",
                        (false, true) => "follower",
                        (false, false) => "learner",
                    }
                    .into(),
                    reachable: false,
                    last_log_index: matched,
                    lag: Some(matched.map_or(last_log, |m| last_log.saturating_sub(m))),
                    applied_index: None,
                    apply_lag: None,
                    last_contact_ms,
                    snapshot_index: None,
                    disk_bytes: None,
                    format_version_max: None,
                }
            })
            .collect();
        LeaderReply::Ok(ClusterStatus {
            leader: Some(self.id),
            term: metrics.current_term,
            committed_index: metrics.local_committed.map(|l| l.index),
            format_version: Some(self.view.read().cluster.format_version()),
            members,
        })
    }
}
