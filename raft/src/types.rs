//! openraft's type configuration for porch, and short aliases for the types it implies.

use porch_core::{Outcome, Request};
use serde::{Deserialize, Serialize};

/// A cluster member as openraft's membership records it (so it is replicated, in the log
/// and in snapshots, with the member): its address and the operator's facts about it.
/// Whether it votes is not here: openraft's membership keeps voters and learners apart.
///
/// Stored as [`PeerNodeRecord`]: one string, `addr` then `;datacenter=NAME` and `;draining`
/// when set. A member with neither encodes byte for byte as before labels existed (format
/// version 1: a struct of one string), so logs, snapshots and peers of earlier builds read
/// it; a label or a drain is understood only by builds that know them (set them once every
/// node runs one). Addresses and labels cannot contain `;` (`validate_addr`, labels' charset).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "PeerNodeRecord", from = "PeerNodeRecord")]
pub struct PeerNode {
    /// `[certname@]host:port` serving raft RPC, agent sessions and the HTTP API. The certname
    /// (the subject of the member's Puppet certificate; the host when omitted) is whom peers
    /// expect at that address and whom they accept raft traffic from.
    pub addr: String,
    /// The datacenter the member runs in (`--datacenter`), a label only operators read.
    pub datacenter: Option<String>,
    /// Draining for maintenance (`porch cluster drain`): the member closes its agent
    /// sessions and refuses new ones, so agents fail over to other members.
    pub draining: bool,
}

impl PeerNode {
    /// An unlabelled member at `addr`, not draining.
    pub fn at(addr: impl Into<String>) -> PeerNode {
        PeerNode {
            addr: addr.into(),
            ..PeerNode::default()
        }
    }

    pub fn certname(&self) -> &str {
        member_certname(&self.addr)
    }
}

/// The certname of a member address `[certname@]host:port`: before `@`, else the host.
pub fn member_certname(addr: &str) -> &str {
    match addr.split_once('@') {
        Some((certname, _)) => certname,
        None => addr.rsplit_once(':').map_or(addr, |(host, _)| host),
    }
}

/// The `host:port` to dial of a member address `[certname@]host:port`.
pub fn member_socket_addr(addr: &str) -> &str {
    addr.split_once('@').map_or(addr, |(_, socket)| socket)
}

/// [`PeerNode`] as bincode and JSON carry it.
#[derive(Clone, Serialize, Deserialize)]
pub struct PeerNodeRecord {
    addr: String,
}

const DATACENTER_FIELD: &str = "datacenter=";
const DRAINING_FIELD: &str = "draining";

impl From<PeerNode> for PeerNodeRecord {
    fn from(node: PeerNode) -> PeerNodeRecord {
        let mut addr = node.addr;
        if let Some(datacenter) = node.datacenter {
            addr.push(';');
            addr.push_str(DATACENTER_FIELD);
            addr.push_str(&datacenter);
        }
        if node.draining {
            addr.push(';');
            addr.push_str(DRAINING_FIELD);
        }
        PeerNodeRecord { addr }
    }
}

impl From<PeerNodeRecord> for PeerNode {
    /// Fields this build does not know (written by a newer one) are ignored.
    fn from(record: PeerNodeRecord) -> PeerNode {
        let mut fields = record.addr.split(';');
        let mut node = PeerNode::at(fields.next().unwrap_or_default());
        for field in fields {
            if let Some(datacenter) = field.strip_prefix(DATACENTER_FIELD) {
                node.datacenter = Some(datacenter.to_string());
            } else if field == DRAINING_FIELD {
                node.draining = true;
            }
        }
        node
    }
}

impl std::fmt::Display for PeerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

/// openraft's runtime: tokio, with every random draw (election timeouts, tick jitter) taken
/// from a seed held in a task-local scope. The simulation seeds it from the run's seed, so
/// elections replay exactly; production seeds it from the OS at start (`seeded`). One type for
/// both means no cargo feature can leak the simulation's runtime into the real binary.
/// Raft must be created, and its futures driven, inside [`seeded`].
pub type Runtime = openraft::rt::deterministic_rng::DeterministicRng<openraft::impls::TokioRuntime>;

/// Runs `future` with openraft's random source seeded by `seed`.
pub fn seeded<F: std::future::Future>(
    seed: u64,
    future: F,
) -> impl std::future::Future<Output = F::Output> {
    Runtime::scope(seed, future)
}

openraft::declare_raft_types!(
    /// porch's raft types: log entries carry a [`Request`], applying one yields an [`Outcome`].
    /// Standard Raft leader ids (one leader per term), which the simulation checks.
    pub TypeConfig:
        D = Request,
        R = Outcome,
        NodeId = u64,
        Node = PeerNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        AsyncRuntime = Runtime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig, crate::state_machine_store::StateMachineStore>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;

pub use openraft::ServerState;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlabelled_member_encodes_as_before_labels_existed() {
        #[derive(Serialize)]
        struct FormatOne {
            addr: String,
        }
        let before = FormatOne {
            addr: "orch1@10.0.0.1:8143".into(),
        };
        let node = PeerNode::at("orch1@10.0.0.1:8143");
        assert_eq!(
            bincode::serialize(&node).unwrap(),
            bincode::serialize(&before).unwrap()
        );
        let back: PeerNode = bincode::deserialize(&bincode::serialize(&before).unwrap()).unwrap();
        assert_eq!(back, node);
    }

    #[test]
    fn labels_and_drains_round_trip_and_unknown_fields_are_ignored() {
        let node = PeerNode {
            addr: "orch4@paris.example:8143".into(),
            datacenter: Some("paris".into()),
            draining: true,
        };
        let bytes = bincode::serialize(&node).unwrap();
        assert_eq!(bincode::deserialize::<PeerNode>(&bytes).unwrap(), node);
        let json = serde_json::to_string(&node).unwrap();
        assert_eq!(serde_json::from_str::<PeerNode>(&json).unwrap(), node);
        let newer = PeerNodeRecord {
            addr: "h:1;zone=b;datacenter=eu".into(),
        };
        let read = PeerNode::from(newer);
        assert_eq!(read.addr, "h:1");
        assert_eq!(read.datacenter.as_deref(), Some("eu"));
    }
}
