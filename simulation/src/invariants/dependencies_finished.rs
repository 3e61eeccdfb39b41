//! A node's run starts only after every predecessor finished in the committed log, and the
//! dependents of a failed, errored or skipped node never run (PE: a node runs only after
//! Puppet finished on all its dependencies; failures skip dependents).

use super::{Observation, Violation, parse_transaction};
use porch_core::{JobId, NodeState};

/// Checked as the run goes: at the instant an agent started a run, every predecessor was
/// `finished` in the committed state that holds the start.
pub fn check_at_start(observation: &Observation, violations: &mut Vec<Violation>) {
    for execution in observation.executions {
        if !execution.evidence.unfinished_predecessors.is_empty() {
            violations.push(Violation {
                invariant: "dependencies finished",
                detail: format!(
                    "{} started {} at {} ms while its predecessors {:?} had not finished",
                    execution.certname,
                    execution.transaction_id,
                    execution.start_ms,
                    execution.evidence.unfinished_predecessors
                ),
            });
        }
    }
}

/// Checked once every replica caught up: against the complete log and every agent's record.
pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let Some(state) = observation.latest() else {
        return;
    };
    for execution in observation.executions {
        let Some((job_id, index, _)) = parse_transaction(&execution.transaction_id) else {
            violations.push(Violation {
                invariant: "dependencies finished",
                detail: format!(
                    "agent ran an unknown transaction {}",
                    execution.transaction_id
                ),
            });
            continue;
        };
        let Some(job) = state.job(JobId(job_id)) else {
            continue;
        };
        let Some(node) = job.plan.nodes().get(index) else {
            continue;
        };
        if job.runs[index].state == NodeState::Skipped {
            violations.push(Violation {
                invariant: "dependents of failures never run",
                detail: format!("{} ran for job {job_id} although it is skipped", node.name),
            });
        }
        for &dep in &node.depends_on {
            let predecessor = &job.plan.nodes()[dep as usize];
            let finished_in_log = job.runs[dep as usize].state == NodeState::Finished;
            let finished_before = observation
                .executions
                .iter()
                .filter(|e| e.job_id == job_id && e.certname == predecessor.name)
                .filter_map(|e| e.end_ms)
                .any(|end| end <= execution.start_ms);
            if !finished_in_log || !finished_before {
                violations.push(Violation {
                    invariant: "dependencies finished",
                    detail: format!(
                        "{} started job {job_id} at {} ms before its predecessor {} finished (state {:?})",
                        node.name,
                        execution.start_ms,
                        predecessor.name,
                        job.runs[dep as usize].state
                    ),
                });
            }
        }
    }
}
