//! Exactly once: every acknowledged submission is in the final state as exactly one job, and
//! no submission — acknowledged or not, retried or not — created two. Client request ids and
//! the request log make a retry return the first outcome (Raft dissertation, Ongaro 2014,
//! §6.3); the simulation's jobs carry their request id as description, so the final state
//! tells which request created each job.

use super::{Observation, Violation};
use std::collections::BTreeMap;

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let Some(state) = observation.latest() else {
        return;
    };
    let mut jobs_of: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for job in state.jobs().values() {
        // A schedule's occurrences share its description; `occurrence_once` checks them.
        if state.schedules().job_origin(job.id).is_some() {
            continue;
        }
        let request = job.spec.description.clone().unwrap_or_default();
        jobs_of.entry(request).or_default().push(job.id.0);
    }
    for (request, jobs) in &jobs_of {
        if jobs.len() > 1 {
            violations.push(Violation {
                invariant: "submissions apply once",
                detail: format!("{request} created jobs {jobs:?}"),
            });
        }
    }
    for submission in observation.submissions {
        if submission.acks.is_empty() {
            continue;
        }
        if !jobs_of.contains_key(&submission.request_id) {
            violations.push(Violation {
                invariant: "submissions apply once",
                detail: format!(
                    "{} was acknowledged but no job in the final state came from it",
                    submission.request_id
                ),
            });
        }
    }
}
