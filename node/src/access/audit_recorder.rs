//! Refusals seen outside `apply` (a missing or bad token, no permission, a failed login) and
//! membership changes go to the replicated audit log in batches: one raft entry for up to
//! [`BATCH_MAX`] records per [`BATCH_EVERY`], so a flood of bad requests costs a few entries a
//! second, not one each. Beyond [`QUEUE_MAX`] waiting records the rest are counted, not kept.

use crate::consensus::Consensus;
use porch_core::Command;
use porch_core::audit::AuditRecord;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

pub const QUEUE_MAX: usize = 10_000;
pub const BATCH_MAX: usize = 500;
pub const BATCH_EVERY: Duration = Duration::from_millis(200);

pub struct AuditRecorder {
    queue: mpsc::Sender<AuditRecord>,
    dropped: AtomicU64,
}

impl AuditRecorder {
    pub fn new() -> (Arc<AuditRecorder>, mpsc::Receiver<AuditRecord>) {
        let (queue, receiver) = mpsc::channel(QUEUE_MAX);
        (
            Arc::new(AuditRecorder {
                queue,
                dropped: AtomicU64::new(0),
            }),
            receiver,
        )
    }

    /// Queues a record without waiting.
    pub fn record(&self, record: AuditRecord) {
        if self.queue.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Commits queued records in batches until the node stops.
    pub async fn run(
        self: Arc<Self>,
        consensus: Arc<Consensus>,
        mut queue: mpsc::Receiver<AuditRecord>,
    ) {
        while let Some(first) = queue.recv().await {
            tokio::time::sleep(BATCH_EVERY).await;
            let mut records = vec![first];
            while records.len() < BATCH_MAX {
                match queue.try_recv() {
                    Ok(record) => records.push(record),
                    Err(_) => break,
                }
            }
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(
                    "audit: {dropped} refused requests arrived faster than they could be recorded and were not recorded"
                );
            }
            let count = records.len();
            if let Err(e) = consensus
                .write(None, Command::RecordAudit { records })
                .await
            {
                tracing::warn!("audit: could not record {count} entries: {e}");
            }
        }
    }
}
