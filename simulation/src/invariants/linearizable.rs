//! What clients were told is linearizable (Herlihy & Wing 1990) against a sequential job
//! registry: submissions under request ids, stops and reads of jobs, each taking effect at
//! one instant between its invocation and its answer — as Jepsen and etcd's robustness tests
//! check. The search is `crate::linearizability`; checked once, over the whole history.

use super::{Observation, Violation};

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    if let Err(why) = crate::linearizability::check(observation.history) {
        violations.push(Violation {
            invariant: "linearizable history",
            detail: why,
        });
    }
}
