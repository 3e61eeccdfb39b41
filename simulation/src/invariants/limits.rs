//! Per-job concurrency, the cluster-wide cap and per-node mutual exclusion are never exceeded,
//! in any replica's applied state (PE `--concurrency`, `task_concurrency`; a node never runs
//! two Puppet runs at once).

use super::{Observation, Violation};
use std::collections::BTreeMap;

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    for node in observation.nodes {
        let state = &node.state;
        if state.in_flight().len() > observation.runs_in_flight_max {
            violations.push(Violation {
                invariant: "cluster cap",
                detail: format!(
                    "node {} shows {} runs in flight",
                    node.id,
                    state.in_flight().len()
                ),
            });
        }
        let mut per_certname: BTreeMap<&str, usize> = BTreeMap::new();
        for job in state.jobs().values() {
            let running = job.runs_in_flight();
            if let Some(limit) = job.spec.concurrency
                && running > limit as usize
            {
                violations.push(Violation {
                    invariant: "job concurrency",
                    detail: format!("job {} runs {running} nodes at once, limit {limit}", job.id),
                });
            }
            for (i, run) in job.runs.iter().enumerate() {
                if run.state == porch_core::NodeState::Running {
                    *per_certname.entry(&job.plan.nodes()[i].name).or_default() += 1;
                }
            }
        }
        for (name, count) in per_certname {
            if count > 1 {
                violations.push(Violation {
                    invariant: "node mutual exclusion",
                    detail: format!("{name} runs {count} jobs at once (node {})", node.id),
                });
            }
        }
    }
}
