//! After healing, every due occurrence is decided promptly (issue 15): once a leader can fire
//! — it leads and has applied an entry of its own term, as the firing loop requires — no
//! active schedule on the most advanced replica keeps an occurrence that fell due without
//! being fired or recorded skipped for longer than [`DECIDED_WITHIN_MS`] (a missed occurrence
//! fires once or is skipped; it is never left pending).
//!
//! The clock starts when a leader is ready and its log is all committed, not at the healing:
//! how long the cluster takes to elect and to bring a majority up to date after the faults
//! depends on the drawn raft timings, the datacenters' latency and the replication backlog
//! (with one entry per AppendEntries across datacenters, ~14 entries a second per follower:
//! seed 24 of the standard scenario kept a backlog of ~90 entries for 12 s after healing),
//! and is checked by the liveness phase's own bound. This checker is about the firing loop,
//! which cannot get an entry committed faster than the log before it.

use super::{Observation, Violation};

/// A firing round (the loop looks at least every second), the plan, and its commit, which may
/// lose a message to the network's remaining loss and wait out a 1 s RPC timeout, with room.
pub const DECIDED_WITHIN_MS: u64 = 5_000;

/// Since when (simulated ms) a leader has been ready to fire, without a change of leader.
#[derive(Default)]
pub struct OccurrencesDecided {
    ready: Option<(u64, u64, u64)>,
}

impl OccurrencesDecided {
    /// Whether the checker has had its time since healing: a leader was ready for the whole
    /// bound. Schedules may then be deleted.
    pub fn had_its_time(&self, now_ms: u64) -> bool {
        self.ready
            .is_some_and(|(_, _, since)| now_ms >= since + DECIDED_WITHIN_MS)
    }

    pub fn check(&mut self, observation: &Observation, violations: &mut Vec<Violation>) {
        if observation.healed_at_ms.is_none() {
            return;
        }
        let leader = observation
            .nodes
            .iter()
            .filter(|n| n.leads_with_current_state)
            .max_by_key(|n| n.term);
        self.ready = match (leader, self.ready) {
            (None, _) => None,
            // Once ready, a leader stays so while it leads, backlog or not.
            (Some(n), Some((id, term, since))) if (n.id, n.term) == (id, term) => {
                Some((id, term, since))
            }
            (Some(n), _) if n.log_committed => Some((n.id, n.term, observation.now_ms)),
            (Some(_), _) => None,
        };
        let Some((leader, term, ready_since_ms)) = self.ready else {
            return;
        };
        let Some(state) = observation.latest() else {
            return;
        };
        // The simulated wall clock: the replicated clock stands still when nothing commits.
        let now = crate::world::EPOCH_MS + observation.now_ms;
        let ready_since = crate::world::EPOCH_MS + ready_since_ms;
        for schedule in state.schedules().all().values() {
            let Some(due_ms) = schedule.next_due_ms() else {
                continue;
            };
            let pending_since = due_ms.max(ready_since);
            if pending_since + DECIDED_WITHIN_MS < now {
                violations.push(Violation {
                    invariant: "due occurrences are decided after healing",
                    detail: format!(
                        "schedule {}: occurrence {} fell due {} ms ago and is neither fired nor \
                         skipped, though node {leader} has led with its term {term}'s state and \
                         no backlog for {} ms",
                        schedule.id,
                        schedule.next_occurrence,
                        now.saturating_sub(due_ms),
                        now - ready_since
                    ),
                });
            }
        }
    }
}
