//! Terminal states never change: a job that finished, failed or stopped, and a node run that
//! finished, failed, errored or was skipped — with its result, message and times — stay so
//! in every state applied at the same or a
//! later log index (committed entries are immutable). A replica that restarted and is still
//! replaying is compared only once it has applied as far as where the state was first seen.

use super::{Observation, Violation};
use std::collections::BTreeMap;

#[derive(Default)]
pub struct TerminalStates {
    /// job -> (terminal state, applied index at which it was seen)
    jobs: BTreeMap<u64, (porch_core::JobState, u64)>,
    runs: BTreeMap<(u64, usize), (porch_core::NodeRun, u64)>,
}

impl TerminalStates {
    pub fn check(&mut self, observation: &Observation, violations: &mut Vec<Violation>) {
        for node in observation.nodes {
            let index = node.applied_index;
            for job in node.state.jobs().values() {
                let state = job.state();
                match self.jobs.get(&job.id.0) {
                    Some(&(seen, at)) if index >= at && seen != state => violations.push(Violation {
                        invariant: "terminal states never change",
                        detail: format!("job {} was {seen:?} at index {at}, node {} shows {state:?} at index {index}", job.id, node.id),
                    }),
                    Some(_) => {}
                    None if state.is_terminal() => {
                        self.jobs.insert(job.id.0, (state, index));
                    }
                    None => {}
                }
                for (i, run) in job.runs.iter().enumerate() {
                    let key = (job.id.0, i);
                    match self.runs.get(&key) {
                        Some((seen, at)) if index >= *at && seen != run => violations.push(Violation {
                            invariant: "terminal states never change",
                            detail: format!(
                                "run {key:?} was {:?} ({:?}) at index {at}, node {} shows {:?} ({:?}) at index {index}",
                                seen.state, seen.message, node.id, run.state, run.message
                            ),
                        }),
                        Some(_) => {}
                        None if run.state.is_terminal() => {
                            self.runs.insert(key, (run.clone(), index));
                        }
                        None => {}
                    }
                }
            }
        }
    }
}
