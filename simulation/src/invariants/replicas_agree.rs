//! State machine safety: replicas that applied the same log index hold identical state
//! (Raft §5.4.3; `ClusterState::apply` must be deterministic).
//!
//! Every state observed is compared with the first one seen at its index, whichever node
//! (or incarnation rebuilt from a snapshot) held it and whenever, for the last
//! [`INDEXES_KEPT`] indexes seen. States are compared for equality, not hashed: serializing
//! every replica's whole state to hash it every 100 ms was a quarter of the simulation's time.

use super::{NodeView, Observation, Violation};
use porch_core::ClusterState;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How many of the highest indexes seen keep their first state. A replica lagging further
/// behind is still compared with the others at its index in the same observation.
const INDEXES_KEPT: usize = 64;

#[derive(Default)]
pub struct ReplicasAgree {
    /// Applied index -> (node, state) first seen at it.
    first_at_index: BTreeMap<u64, (u64, Arc<ClusterState>)>,
    /// (node, incarnation) -> the applied index its state was last compared at: a node
    /// still there holds the same state.
    compared_at: HashMap<(u64, u64), u64>,
}

impl ReplicasAgree {
    pub fn check(&mut self, observation: &Observation, violations: &mut Vec<Violation>) {
        for node in observation.nodes {
            self.check_node(node, violations);
        }
        while self.first_at_index.len() > INDEXES_KEPT {
            self.first_at_index.pop_first();
        }
    }

    fn check_node(&mut self, node: &NodeView, violations: &mut Vec<Violation>) {
        let incarnation = (node.id, node.incarnation);
        if self.compared_at.get(&incarnation) == Some(&node.applied_index) {
            return;
        }
        self.compared_at.insert(incarnation, node.applied_index);
        match self.first_at_index.get(&node.applied_index) {
            Some((other, state)) if **state != *node.state => violations.push(Violation {
                invariant: "replicas agree",
                detail: format!(
                    "nodes {other} and {} applied up to index {} but hold different states",
                    node.id, node.applied_index
                ),
            }),
            Some(_) => {}
            None => {
                self.first_at_index
                    .insert(node.applied_index, (node.id, node.state.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use porch_core::{Command, Request};

    fn state(cluster_id: &str) -> Arc<ClusterState> {
        let mut state = ClusterState::new();
        state.apply(Request {
            request_id: None,
            now_ms: 1,
            command: Command::SetClusterId {
                cluster_id: cluster_id.to_string(),
            },
            origin: None,
        });
        Arc::new(state)
    }

    fn view(id: u64, incarnation: u64, applied_index: u64, state: Arc<ClusterState>) -> NodeView {
        NodeView {
            id,
            incarnation,
            term: 1,
            leader: Some(1),
            is_leader: id == 1,
            leads_with_current_state: id == 1,
            log_committed: true,
            applied_index,
            joint_membership: false,
            state,
        }
    }

    fn check(checker: &mut ReplicasAgree, nodes: &[NodeView]) -> Vec<Violation> {
        let observation = Observation {
            now_ms: 0,
            nodes,
            executions: &[],
            task_runs: &[],
            submissions: &[],
            runs_in_flight_max: 0,
            applied: &[],
            history: &[],
            healed_at_ms: None,
        };
        let mut violations = Vec::new();
        checker.check(&observation, &mut violations);
        violations
    }

    #[test]
    fn replicas_at_one_index_with_different_states_are_caught_at_once_or_later() {
        let mut checker = ReplicasAgree::default();
        let same = [view(1, 1, 5, state("a")), view(2, 1, 5, state("a"))];
        assert!(check(&mut checker, &same).is_empty());

        let differ_now = [view(1, 1, 6, state("a")), view(2, 1, 6, state("b"))];
        assert_eq!(check(&mut checker, &differ_now).len(), 1);

        // Node 3 reaches index 5 only later, rebuilt from a snapshot into another state.
        let later = [view(3, 2, 5, state("c"))];
        let violations = check(&mut checker, &later);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].detail.contains("index 5"),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn a_replica_still_at_its_index_is_not_compared_again_but_a_new_incarnation_is() {
        let mut checker = ReplicasAgree::default();
        assert!(check(&mut checker, &[view(1, 1, 5, state("a"))]).is_empty());
        assert!(check(&mut checker, &[view(1, 1, 5, state("a"))]).is_empty());
        assert_eq!(check(&mut checker, &[view(1, 2, 5, state("b"))]).len(), 1);
    }
}
