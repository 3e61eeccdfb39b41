//! Each (job, node, attempt) — one transaction id — executes at most once on its agent, across
//! failovers, reconnects, re-sent requests and agent restarts (PXP idempotency by transaction).

use super::{Observation, Violation};
use std::collections::BTreeMap;

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let mut starts: BTreeMap<&str, usize> = BTreeMap::new();
    for execution in observation.executions {
        *starts.entry(&execution.transaction_id).or_default() += 1;
    }
    for (transaction, count) in starts {
        if count > 1 {
            violations.push(Violation {
                invariant: "once per transaction",
                detail: format!("transaction {transaction} executed {count} times"),
            });
        }
    }
}
