//! A stopped job starts nothing new: no run of a job starts after the job entered `stopping`
//! or `stopped` (PE: after /command/stop, runs under way finish, nothing new starts).

use super::{Observation, Violation};
use porch_core::JobState;

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let Some(state) = observation.latest() else {
        return;
    };
    for job in state.jobs().values() {
        let Some(stopped_at) = job
            .status
            .iter()
            .find(|s| matches!(s.state, JobState::Stopping | JobState::Stopped))
            .map(|s| s.enter_ms)
        else {
            continue;
        };
        for (i, run) in job.runs.iter().enumerate() {
            if run.start_ms.is_some_and(|start| start > stopped_at) {
                violations.push(Violation {
                    invariant: "a stopped job starts nothing",
                    detail: format!(
                        "{} of job {} started after the stop",
                        job.plan.nodes()[i].name,
                        job.id
                    ),
                });
            }
        }
    }
}
