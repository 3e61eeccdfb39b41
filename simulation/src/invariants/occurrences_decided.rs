//! After healing, every due occurrence is decided within a bound (issue 15): once the faults
//! have been healed for [`DECIDED_WITHIN_MS`], no active schedule on the most advanced replica
//! has an occurrence that fell due more than that long ago without being fired or recorded
//! skipped (a missed occurrence fires once or is skipped; it is never left pending).

use super::{Observation, Violation};

/// Election (≤ 2 s at the simulation's timings), a firing round and its commit, with room.
pub const DECIDED_WITHIN_MS: u64 = 10_000;

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let Some(healed_ms) = observation.healed_at_ms else {
        return;
    };
    if observation.now_ms < healed_ms + DECIDED_WITHIN_MS {
        return;
    }
    let Some(state) = observation.latest() else {
        return;
    };
    // The simulated wall clock: the replicated clock stands still when nothing commits.
    let now = crate::world::EPOCH_MS + observation.now_ms;
    for schedule in state.schedules().all().values() {
        let Some(due_ms) = schedule.next_due_ms() else {
            continue;
        };
        if due_ms + DECIDED_WITHIN_MS < now {
            violations.push(Violation {
                invariant: "due occurrences are decided after healing",
                detail: format!(
                    "schedule {}: occurrence {} fell due {} ms ago and is neither fired nor skipped",
                    schedule.id,
                    schedule.next_occurrence,
                    now - due_ms
                ),
            });
        }
    }
}
