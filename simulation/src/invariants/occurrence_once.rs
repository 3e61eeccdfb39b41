//! Each schedule occurrence fires at most once, across every fault (issue 15; Nomad's periodic
//! dispatcher launched duplicates after a leader change, hashicorp/nomad#11052): no two jobs,
//! on any replica at any time, stand for the same (schedule, occurrence), and a schedule's
//! recorded decisions cover each occurrence once, in order.

use super::{Observation, Violation};
use porch_core::JobId;
use porch_core::schedule::ScheduleId;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct OccurrenceOnce {
    /// (schedule, occurrence) → the job first seen for it, on any replica.
    fired: BTreeMap<(ScheduleId, u64), JobId>,
}

const INVARIANT: &str = "each occurrence fires at most once";

impl OccurrenceOnce {
    pub fn check(&mut self, observation: &Observation, violations: &mut Vec<Violation>) {
        for node in observation.nodes {
            let schedules = node.state.schedules();
            for (job, origin) in schedules.job_links() {
                let key = (origin.schedule_id, origin.occurrence);
                let first = *self.fired.entry(key).or_insert(*job);
                if first != *job {
                    violations.push(Violation {
                        invariant: INVARIANT,
                        detail: format!(
                            "occurrence {} of schedule {} created job {first} and, on node {}, job {job}",
                            origin.occurrence, origin.schedule_id, node.id
                        ),
                    });
                }
            }
            for schedule in schedules.all().values() {
                let mut previous: Option<u64> = None;
                for record in &schedule.history {
                    let in_order = previous.is_none_or(|last| record.first == last + 1);
                    if !in_order
                        || record.last < record.first
                        || record.last >= schedule.next_occurrence
                    {
                        violations.push(Violation {
                            invariant: INVARIANT,
                            detail: format!(
                                "node {}: schedule {} records occurrences {}..={} after {previous:?} (next {})",
                                node.id, schedule.id, record.first, record.last, schedule.next_occurrence
                            ),
                        });
                    }
                    previous = Some(record.last);
                }
            }
        }
    }
}
