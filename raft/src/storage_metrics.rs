//! What the storage layer counts for the node's metrics endpoint: plain atomics and
//! [`LatencyHistogram`]s updated where the work happens, read by a scrape. Nothing here
//! formats or allocates on the write path.

use crate::latency_histogram::LatencyHistogram;
use std::sync::atomic::AtomicU64;

/// The raft log ([`crate::LogStore`]).
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// From `append` being called to the fsync covering its entries: what a write waits for
    /// on this node before it counts towards a quorum.
    pub append_to_durable: LatencyHistogram,
}

/// The durability point of a [`crate::Disk`] (the sled store's flush thread).
#[derive(Debug, Default)]
pub struct FlushMetrics {
    /// Each fsync, from its start to its end.
    pub flush: LatencyHistogram,
    /// Flush requests answered; divided by the flush count, the group-commit batch size.
    pub requests: AtomicU64,
}

/// Snapshots built and installed ([`crate::StateMachineStore`]).
#[derive(Debug, Default)]
pub struct SnapshotMetrics {
    /// Copy, encode and write of a snapshot this node built.
    pub build: LatencyHistogram,
    /// Size of the last snapshot built or installed.
    pub last_bytes: AtomicU64,
    /// Log index the last snapshot built or installed covers.
    pub last_index: AtomicU64,
    /// Snapshots received from a leader and installed.
    pub installed: AtomicU64,
}

impl SnapshotMetrics {
    /// Notes the snapshot now current on this node.
    pub fn record(&self, meta: &crate::types::SnapshotMeta, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.last_bytes.store(bytes as u64, Relaxed);
        self.last_index
            .store(meta.last_log_id.map_or(0, |id| id.index), Relaxed);
    }
}
