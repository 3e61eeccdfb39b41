//! Work only the leader does on a timer: give a new cluster its id. (The scheduler, which
//! also runs only on the leader, lives in `scheduler_loop`.)

use crate::consensus::Consensus;
use porch_core::Command;
use std::sync::Arc;
use std::time::Duration;

/// How often the leader checks for housekeeping work.
const PERIOD: Duration = Duration::from_millis(200);

/// `entropy` makes cluster ids of clusters founded in the same millisecond differ (production:
/// from the OS; the simulation: from its seed, so runs replay exactly).
pub async fn run(consensus: Arc<Consensus>, entropy: u64) {
    loop {
        tokio::time::sleep(PERIOD).await;
        if !consensus.is_leader() {
            continue;
        }
        let missing_id = consensus.view.read().cluster.cluster_id().is_none();
        if missing_id {
            let now = consensus.clock().now_ms();
            // Unique enough across clusters: the founding leader's clock, id and entropy.
            let cluster_id = format!(
                "{:x}{:02x}{:04x}",
                now,
                consensus.id & 0xff,
                entropy & 0xffff
            );
            if let Err(e) = consensus
                .write(
                    Some(format!("cluster-id-{}", consensus.id)),
                    Command::SetClusterId { cluster_id },
                )
                .await
            {
                tracing::warn!("could not set the cluster id yet: {e}");
            }
        }
    }
}
