//! No two runs of one schedule overlap (issue 15; Nomad's `prohibit_overlap` failed after a
//! leader change, hashicorp/nomad#11052): a schedule's job for a later occurrence is created
//! only after the job of the one before it ended.

use super::{Observation, Violation};
use porch_core::schedule::ScheduleId;
use std::collections::BTreeMap;

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let Some(state) = observation.latest() else {
        return;
    };
    let mut by_schedule: BTreeMap<ScheduleId, Vec<(u64, porch_core::JobId)>> = BTreeMap::new();
    for (job, origin) in state.schedules().job_links() {
        by_schedule
            .entry(origin.schedule_id)
            .or_default()
            .push((origin.occurrence, *job));
    }
    for (schedule, mut jobs) in by_schedule {
        jobs.sort();
        for pair in jobs.windows(2) {
            let ((_, earlier), (occurrence, later)) = (pair[0], pair[1]);
            let (Some(earlier_job), Some(later_job)) = (state.job(earlier), state.job(later))
            else {
                continue;
            };
            let ended_ms = earlier_job
                .state()
                .is_terminal()
                .then(|| earlier_job.timestamp_ms());
            if ended_ms.is_none_or(|ended| later_job.created_ms() < ended) {
                violations.push(Violation {
                    invariant: "no two runs of one schedule overlap",
                    detail: format!(
                        "schedule {schedule}: job {later} (occurrence {occurrence}) was created at {} ms while job {earlier} had not ended (ended {ended_ms:?})",
                        later_job.created_ms(),
                    ),
                });
            }
        }
    }
}
