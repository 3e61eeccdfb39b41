//! Format versions of the records porch replicates and stores, and the rule for moving a
//! cluster from one to the next (a rolling upgrade).
//!
//! Every record (log entry, snapshot, raft message, backup) is sealed with the format version
//! it was written in (`porch_raft::envelope`). A build reads every version from
//! [`FORMAT_VERSION_MIN`] (the previous one) to [`FORMAT_VERSION`] (its own), and refuses a
//! newer one by name. It *writes* the version the cluster has agreed on — the replicated
//! [`crate::ClusterState::format_version`] — not its own: while members of the previous
//! release remain, an upgraded node writes their format, so either build can lead, send
//! snapshots and be caught up by the other. The leader raises the agreed version one step
//! ([`crate::Command::SetFormatVersion`]) once every member reports a build that reads it
//! (`porch_node`'s `format_upgrade`), as etcd raises its cluster version; it never goes down.
//!
//! Raising [`FORMAT_VERSION`] (whenever the bincode layout of anything replicated changes):
//! - freeze the previous layout of what changed (see [`crate::stored_state`]: the state as
//!   each readable version stores it, with its conversion to the current one) and drop the
//!   layouts older than the new [`FORMAT_VERSION_MIN`];
//! - commands are only ever appended to [`crate::Command`]; a new one says which version
//!   introduced it ([`crate::Command::format_version_needed`]), so an entry holding it is
//!   sealed at that version even before the cluster moved (a node that cannot read it refuses
//!   it by name rather than misreading it), and the node must not propose it for users while
//!   the cluster's version is older (a feature gate);
//! - set [`FORMAT_VERSION_MIN`] to the previous version: one release back is read, no more.

/// The newest format this build reads and can write. Version 2 (tasks): a job's spec carries
/// its task, a run's result its stderr, roles may hold `run_task`. Version 3: refusals in the
/// audit log hold the refused change or action as facts. Version 4: the state holds the
/// format version the cluster writes ([`crate::ClusterState::format_version`]), and scheduled
/// jobs ([`SCHEDULES_SINCE`]).
pub const FORMAT_VERSION: u16 = 4;

/// The format that brought scheduled jobs: their commands are sealed at least at it, and
/// `apply` creates no schedule while the cluster writes an older one (the state of a cluster
/// writing format 3 has nowhere to keep them, and its older members could not read them).
pub const SCHEDULES_SINCE: u16 = 4;

/// The oldest format this build reads, and the version a state that has not yet heard from
/// its cluster assumes it writes: the previous release's. Older records lack what later
/// versions added, and bincode cannot tell, so they are refused by name rather than misread.
pub const FORMAT_VERSION_MIN: u16 = 3;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Outcome, Rejection, Request};
    use crate::state::ClusterState;

    fn set(state: &mut ClusterState, version: u16) -> Outcome {
        state.apply(Request {
            request_id: None,
            now_ms: 1,
            command: Command::SetFormatVersion { version },
            origin: None,
        })
    }

    #[test]
    fn a_new_state_writes_the_previous_release_format_until_its_cluster_moves() {
        assert_eq!(ClusterState::new().format_version(), FORMAT_VERSION_MIN);
    }

    #[test]
    fn the_format_version_moves_one_step_up_and_never_down_or_past_this_build() {
        let mut state = ClusterState::new();
        for refused in [
            FORMAT_VERSION_MIN - 1,
            FORMAT_VERSION_MIN,
            FORMAT_VERSION_MIN + 2,
            u16::MAX,
        ] {
            assert_eq!(
                set(&mut state, refused),
                Outcome::Rejected(Rejection::FormatVersionNotNext {
                    writing: FORMAT_VERSION_MIN,
                    proposed: refused
                })
            );
        }
        assert_eq!(set(&mut state, FORMAT_VERSION_MIN + 1), Outcome::Done);
        assert_eq!(state.format_version(), FORMAT_VERSION_MIN + 1);
        assert!(matches!(
            set(&mut state, FORMAT_VERSION_MIN),
            Outcome::Rejected(_)
        ));
        assert!(matches!(
            set(&mut state, FORMAT_VERSION + 1),
            Outcome::Rejected(_)
        ));
        assert_eq!(state.format_version(), FORMAT_VERSION);
    }

    #[test]
    fn the_raise_needs_the_version_it_raises_to_and_older_commands_need_none() {
        assert_eq!(
            Command::SetFormatVersion { version: 4 }.format_version_needed(),
            4
        );
        assert_eq!(Command::Tick.format_version_needed(), 0);
    }
}
