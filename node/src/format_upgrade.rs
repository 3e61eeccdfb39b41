//! Moving the cluster to a newer format version once every member reads it — the last step
//! of a rolling upgrade (`porch_core::format_version` has the rule).
//!
//! Automatic, as etcd raises its cluster version and CockroachDB finalizes an upgrade by
//! default, rather than an operator's command: the condition (every member's build reads the
//! next version) is one the leader can check for itself, and a forgotten manual step would
//! leave a fully upgraded cluster writing the old format for ever. Until the last member runs
//! the new build nothing new is written, so any node can be rolled back to the previous
//! release; after the raise, a node of the previous release refuses the cluster's records by
//! name (and stops) instead of misreading them.

use crate::consensus::Consensus;
use porch_core::Command;
use porch_core::format_version::FORMAT_VERSION;

/// The version the cluster writes and the one it would move to, if this build reads newer.
fn next_version(consensus: &Consensus) -> Option<(u16, u16)> {
    let writing = consensus.view.read().cluster.format_version();
    (writing < FORMAT_VERSION).then_some((writing, writing + 1))
}

/// On the leader: proposes the next format version when every member (voters and learners)
/// answers that its build reads it. A member that does not answer holds the cluster back:
/// it may run the previous release.
pub async fn raise_if_every_member_reads_it(consensus: &Consensus) {
    let Some((writing, next)) = next_version(consensus) else {
        return;
    };
    let members: Vec<(u64, String)> = consensus
        .metrics()
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| (*id, node.addr.clone()))
        .collect();
    let reports = futures::future::join_all(
        members
            .iter()
            .map(|(id, addr)| consensus.member_self_status(*id, addr.clone())),
    )
    .await;
    let holding_back: Vec<u64> = members
        .iter()
        .zip(&reports)
        .filter(|(_, report)| {
            report
                .as_ref()
                .and_then(|r| r.format_version_max)
                .is_none_or(|max| max < next)
        })
        .map(|((id, _), _)| *id)
        .collect();
    if !holding_back.is_empty() {
        tracing::debug!(
            "the cluster writes format version {writing}: members {holding_back:?} did not \
             report a build that reads {next}"
        );
        return;
    }
    match consensus
        .write(None, Command::SetFormatVersion { version: next })
        .await
    {
        Ok(porch_core::Outcome::Done) => tracing::info!(
            "every member reads format version {next}: the cluster writes it from now on \
             (was {writing})"
        ),
        Ok(other) => tracing::warn!("format version {next} not set: {other:?}"),
        Err(e) => tracing::warn!("could not set format version {next} yet: {e}"),
    }
}
