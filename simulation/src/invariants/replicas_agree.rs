//! State machine safety: replicas that applied the same log index hold identical state
//! (Raft §5.4.3; `ClusterState::apply` must be deterministic).

use super::{Observation, Violation};
use std::collections::BTreeMap;

fn fingerprint(state: &porch_core::ClusterState) -> u64 {
    // In the newest layout: it holds every stored field, the format version included.
    let stored = state
        .stored(porch_core::format_version::FORMAT_VERSION)
        .ok();
    let bytes = serde_json::to_vec(&stored).unwrap_or_default();
    let mut hash = 0xcbf29ce484222325u64;
    for byte in bytes {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let mut by_index: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for node in observation.nodes {
        let print = fingerprint(&node.state);
        match by_index.get(&node.applied_index) {
            Some(&(other, other_print)) if other_print != print => violations.push(Violation {
                invariant: "replicas agree",
                detail: format!(
                    "nodes {other} and {} applied up to index {} but hold different states",
                    node.id, node.applied_index
                ),
            }),
            Some(_) => {}
            None => {
                by_index.insert(node.applied_index, (node.id, print));
            }
        }
    }
}
