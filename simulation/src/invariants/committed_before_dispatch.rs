//! No dispatch before its decision is committed: at the instant an agent starts a run, some
//! node has already applied the decision that started that very transaction (apply follows
//! commit). Porch delivers runs from applied outcomes only; a delivery on proposal would
//! run work that a failover can erase from the log.

use super::{Observation, Violation};

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    for execution in observation
        .executions
        .iter()
        .filter(|e| !e.evidence.committed)
    {
        violations.push(Violation {
            invariant: "no dispatch before commit",
            detail: format!(
                "{} started {} at {} ms, but no node had applied the decision to start it",
                execution.certname, execution.transaction_id, execution.start_ms
            ),
        });
    }
}
