//! Raft election safety: at most one leader per term (Raft paper §5.2; porch uses standard
//! leader ids, so two leaders in one term would be a consensus bug).

use super::{Observation, Violation};
use std::collections::BTreeMap;

#[derive(Default)]
pub struct LeaderPerTerm {
    seen: BTreeMap<u64, u64>,
}

impl LeaderPerTerm {
    pub fn check(&mut self, observation: &Observation, violations: &mut Vec<Violation>) {
        for node in observation.nodes.iter().filter(|n| n.is_leader) {
            match self.seen.insert(node.term, node.id) {
                Some(other) if other != node.id => violations.push(Violation {
                    invariant: "one leader per term",
                    detail: format!("nodes {other} and {} both led term {}", node.id, node.term),
                }),
                _ => {}
            }
        }
    }
}
