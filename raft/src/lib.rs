//! porch-raft: how porch's state is made durable and replicated.
//!
//! - [`envelope`]: format version and checksum around every log entry, snapshot, raft
//!   message and backup; a record from a newer porch or with a bad checksum is refused.
//! - [`types`]: openraft's type configuration (log entries carry `porch_core::Request`).
//! - [`disk`]: the storage seam — ordered trees with an explicit flush; [`sled_disk`] in
//!   production, [`sim_disk`] in the simulation (crash loses what was not flushed).
//! - [`flush_thread`]: the sled store's own fsync thread, with group commit.
//! - [`background`]: a low-priority thread for snapshot encoding, snapshot writes and purges.
//! - [`log_store`]: openraft's log storage over a disk, honouring its durability contract.
//! - [`state_machine_store`]: the pure `ClusterState` behind openraft's state machine trait,
//!   snapshots on the disk, and the [`state_machine_store::AppliedView`] the node reads.
//! - [`storage_metrics`], [`latency_histogram`]: what storage counts for the metrics endpoint
//!   (atomics only on the write path).
//! - [`backup`]: backup files (magic, envelope, header) and seeding a new cluster from one.
//! - [`network`]: raft RPC over tonic, behind a [`network::Dialer`] seam so the simulation can
//!   run the same client over simulated sockets.

pub mod background;
pub mod backup;
pub mod disk;
pub mod envelope;
pub mod flush_thread;
pub mod latency_histogram;
pub mod log_store;
pub mod repair;
pub mod sim_disk;
pub mod sled_disk;
pub mod state_machine_store;
pub mod storage_metrics;
pub mod types;
pub mod wire;
pub mod written_format;

pub use disk::Disk;
pub use log_store::LogStore;
pub use sim_disk::SimDisk;
pub use sled_disk::SledDisk;
pub use state_machine_store::{
    APPLIED_BROADCAST_CAPACITY, Applied, AppliedState, AppliedView, StateMachineStore,
};
pub use types::{NodeId, PeerNode, Raft, TypeConfig, member_certname, member_socket_addr};
pub use written_format::WrittenFormat;
pub mod network;
pub mod raft_service;

/// Generated gRPC code for the internal protocol (`proto/porch.proto`).
pub mod proto {
    tonic::include_proto!("porch.internal.v1");
}
