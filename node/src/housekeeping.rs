//! Work only the leader does on a timer: give a new cluster its id, finish a membership change
//! a lost leader left joint (`Consensus::finish_joint_change`), keep history bounded
//! (retention by age and by count, decided here and carried out by `apply` on every replica),
//! and move the cluster to a newer format version once every member reads it
//! (`format_upgrade`). (The scheduler and unreachable expiry, which also run only on the
//! leader, are reactions: `crate::reaction`.)

use crate::consensus::Consensus;
use porch_core::Command;
use std::sync::Arc;
use std::time::Duration;

/// How often the leader checks for housekeeping work.
const PERIOD: Duration = Duration::from_millis(200);
/// How often the leader looks at retention: pruning walks the job map, so not every period.
const RETENTION_EVERY: Duration = Duration::from_secs(5);
/// How often the leader asks the members which format versions they read (one small RPC
/// each, and only while the cluster writes an older version than this build).
const FORMAT_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How much history to keep.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub ended_for: Duration,
    pub ended_kept_max: u64,
}

/// `entropy` makes cluster ids of clusters founded in the same millisecond differ (production:
/// from the OS; the simulation: from its seed, so runs replay exactly).
pub async fn run(consensus: Arc<Consensus>, entropy: u64, retention: Retention) {
    let mut last_retention = tokio::time::Instant::now();
    let mut last_format_check = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(PERIOD).await;
        if !consensus.is_leader() {
            continue;
        }
        consensus.finish_joint_change().await;
        if last_retention.elapsed() >= RETENTION_EVERY {
            last_retention = tokio::time::Instant::now();
            prune_if_due(&consensus, retention).await;
        }
        if last_format_check.elapsed() >= FORMAT_CHECK_EVERY {
            last_format_check = tokio::time::Instant::now();
            crate::format_upgrade::raise_if_every_member_reads_it(&consensus).await;
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

/// Proposes a prune when ended jobs exceed the count or the oldest ended one is past the age.
async fn prune_if_due(consensus: &Consensus, retention: Retention) {
    let now = consensus.clock().now_ms();
    let cutoff = now.saturating_sub(retention.ended_for.as_millis() as u64);
    let (ended, oldest) = {
        let view = consensus.view.read();
        (
            view.cluster.ended_job_count() as u64,
            view.cluster.oldest_ended_job_ms(),
        )
    };
    if ended <= retention.ended_kept_max && oldest.is_none_or(|ms| ms >= cutoff) {
        return;
    }
    let command = Command::PruneJobs {
        finished_before_ms: cutoff,
        ended_kept_max: Some(retention.ended_kept_max),
    };
    match consensus.write(None, command).await {
        Ok(porch_core::Outcome::Pruned { jobs }) => {
            tracing::info!("retention: dropped {jobs} ended jobs")
        }
        Ok(other) => tracing::warn!("retention: unexpected outcome {other:?}"),
        Err(e) => tracing::warn!("retention: could not prune yet: {e}"),
    }
}
