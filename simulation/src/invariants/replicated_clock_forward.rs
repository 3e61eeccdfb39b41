//! The replicated clock never goes back: the state after a later log index holds a time no
//! earlier than after an earlier one, whatever the clocks of the leaders that stamped the
//! commands did (they jump and drift in the simulation). Expiry, retention and the request
//! log's deduplication window all read this clock; `ClusterState::apply` keeps it monotonic
//! (the larger of its time and the command's) — ARCHITECTURE.md, "Time".

use super::{Observation, Violation};
use std::collections::BTreeMap;

#[derive(Default)]
pub struct ReplicatedClock {
    /// index → replicated time after applying it, for every index sampled.
    at: BTreeMap<u64, u64>,
}

impl ReplicatedClock {
    pub fn check(&mut self, observation: &Observation, violations: &mut Vec<Violation>) {
        for sample in observation.applied {
            let (index, clock) = (sample.index, sample.clock_ms);
            let before = self.at.range(..index).next_back();
            let after = self.at.range(index + 1..).next();
            let out_of_order = before
                .filter(|(_, c)| **c > clock)
                .or(after.filter(|(_, c)| **c < clock));
            if let Some((other_index, other_clock)) = out_of_order {
                violations.push(Violation {
                    invariant: "replicated clock never goes back",
                    detail: format!(
                        "{} holds time {clock} after index {index}, but the state after index {other_index} held {other_clock}",
                        sample.who
                    ),
                });
                continue;
            }
            self.at.entry(index).or_insert(clock);
        }
    }
}
