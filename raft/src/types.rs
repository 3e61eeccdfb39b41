//! openraft's type configuration for porch, and short aliases for the types it implies.

use porch_core::{Outcome, Request};
use serde::{Deserialize, Serialize};

/// A cluster member's address, as openraft's membership records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerNode {
    /// `host:port` serving raft RPC, agent sessions and the HTTP API.
    pub addr: String,
}

impl std::fmt::Display for PeerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

/// The simulation swaps in a seeded runtime so election timeouts replay exactly; production
/// uses plain tokio (the seeded one panics outside a seeded scope).
#[cfg(not(feature = "sim"))]
pub type Runtime = openraft::TokioRuntime;
#[cfg(feature = "sim")]
pub type Runtime = openraft_rt_deterministic::DeterministicRuntime;

#[cfg(feature = "sim")]
mod openraft_rt_deterministic {
    pub type DeterministicRuntime =
        openraft::rt::deterministic_rng::DeterministicRng<openraft::TokioRuntime>;
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
