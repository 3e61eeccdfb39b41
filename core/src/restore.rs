//! What a cluster restored from a backup keeps of the backed-up state.
//!
//! Kept: jobs (ended and not), their events and reports, the job and event counters (ids
//! continue, never reused), users, roles, tokens, the audit log and remembered request ids
//! (a client retrying a submission acknowledged before the backup still gets its job).
//! Changed:
//! - agent sessions do not survive: every agent is marked disconnected as of the restore, and
//!   agents reconnect to the new cluster on their own;
//! - runs in flight at the backup stay in flight. An agent that reconnects within the
//!   unreachable timeout is asked about them as after any failover: a run it finished is
//!   reported (its spool re-sends the result), a run it never received is sent again (its
//!   spool guarantees it runs once). A run whose agent does not come back is errored as
//!   unreachable by the usual rule, `--unreachable-timeout` after the restore;
//! - the cluster id is cleared: the new cluster's first leader sets its own, so transaction
//!   ids from the new cluster never collide with those of the cluster backed up (which may
//!   still be running, e.g. when a backup is restored to test it).

use crate::state::ClusterState;

impl ClusterState {
    /// The state a restored cluster starts from; `now_ms` is the restoring tool's clock, as a
    /// leader stamps its time into commands.
    pub fn restored(mut self, now_ms: u64) -> ClusterState {
        self.clear_cluster_id();
        self.inventory_mut().disconnect_all(now_ms);
        self.clock_ms = self.clock_ms.max(now_ms);
        self
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, Request};
    use crate::state::ClusterState;

    fn apply(state: &mut ClusterState, now_ms: u64, command: Command) {
        state.apply(Request {
            request_id: None,
            now_ms,
            command,
            origin: None,
        });
    }

    #[test]
    fn a_restored_state_forgets_sessions_and_cluster_id_and_keeps_the_job_counter() {
        let mut state = ClusterState::new();
        apply(
            &mut state,
            1,
            Command::SetClusterId {
                cluster_id: "old".into(),
            },
        );
        apply(
            &mut state,
            2,
            Command::AgentConnected {
                certname: "web1".into(),
                via_node: 2,
                session: "s1".into(),
            },
        );
        let next_job_id = state.next_job_id();
        let restored = state.restored(5_000);
        assert_eq!(restored.cluster_id(), None);
        let web1 = restored.inventory().get("web1").unwrap();
        assert!(!web1.connected);
        assert_eq!(web1.since_ms, 5_000);
        assert_eq!(restored.next_job_id(), next_job_id);
    }
}
