//! After healing, every due occurrence is decided within a bound (issue 15): once the faults
//! have been healed for [`decided_within_ms`], no active schedule on the most advanced replica
//! has an occurrence that fell due more than that long ago without being fired or recorded
//! skipped (a missed occurrence fires once or is skipped; it is never left pending).

use super::{Observation, Violation};

/// How long after healing a due occurrence may stay undecided, for a run whose longest
/// election timeout is `election_timeout_max_ms`: the old leader's lease runs out (at most
/// one election timeout), an election and a split one after it (two more), then the new
/// leader's first entry and the firing commit, each of which may lose a message to the
/// network's remaining loss and wait out a 1 s RPC timeout (4 s). Never below 10 s, the bound
/// at the simulation's standard timings in one datacenter. The timings are drawn per seed and
/// grow with the datacenters' latency (the heartbeat is at least 4× the worst one-way
/// latency), so a fixed bound would call a slow but correct election a failure.
pub fn decided_within_ms(election_timeout_max_ms: u64) -> u64 {
    (3 * election_timeout_max_ms + 4_000).max(10_000)
}

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let Some(healed_ms) = observation.healed_at_ms else {
        return;
    };
    let bound_ms = decided_within_ms(observation.election_timeout_max_ms);
    if observation.now_ms < healed_ms + bound_ms {
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
        if due_ms + bound_ms < now {
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
