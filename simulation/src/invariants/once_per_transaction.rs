//! Each (job, node, attempt) — one transaction id — executes at most once on its agent, across
//! failovers, reconnects, re-sent requests and agent restarts (PXP idempotency by transaction),
//! and porch never starts a second attempt of a (job, node): it does not retry runs.

use super::{Observation, Violation};
use std::collections::BTreeMap;

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let mut starts: BTreeMap<&str, usize> = BTreeMap::new();
    for execution in observation.executions {
        *starts.entry(&execution.transaction_id).or_default() += 1;
    }
    let mut per_run: BTreeMap<(u64, usize), usize> = BTreeMap::new();
    for execution in observation.executions {
        if let Some((job, node, _)) = super::parse_transaction(&execution.transaction_id) {
            *per_run.entry((job, node)).or_default() += 1;
        }
    }
    for ((job, node), count) in per_run {
        if count > 1 {
            violations.push(Violation {
                invariant: "once per transaction",
                detail: format!("node {node} of job {job} executed {count} times"),
            });
        }
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
