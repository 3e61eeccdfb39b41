//! A job's run plan: the nodes to run and the dependency DAG between them.
//!
//! The plan is computed once, on the node that accepts the submission, and travels inside the
//! log entry. Replicas therefore never recompute it from inputs that might differ (their code
//! directories, their clocks). [`Plan::new`] is the only constructor and checks every
//! structural rule, so the state machine can trust a plan it applies.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// The most nodes a single job may target. Every per-job structure is linear in this.
pub const NODES_PER_JOB_MAX: usize = 100_000;

/// One node of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedNode {
    /// The agent's certname.
    pub name: String,
    /// Indices (into [`Plan::nodes`]) of the nodes that must *finish* before this one starts.
    pub depends_on: Vec<u32>,
    /// Application components this node hosts, for display (`Lamp::Db[prod] for Lamp[prod]`).
    pub components: Vec<ComponentPlacement>,
}

/// An application component placed on a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ComponentPlacement {
    /// `Lamp::Db[prod]`
    pub component: String,
    /// `Lamp[prod]`
    pub application: String,
}

/// The validated plan of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    nodes: Vec<PlannedNode>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the plan has no nodes")]
    Empty,
    #[error("the plan has {count} nodes; at most {NODES_PER_JOB_MAX} are allowed")]
    TooManyNodes { count: usize },
    #[error("node name {name:?} is not a valid certname")]
    InvalidNodeName { name: String },
    #[error("node {name:?} appears twice in the plan")]
    DuplicateNode { name: String },
    #[error("node {name:?} depends on index {index}, but the plan has {count} nodes")]
    DependencyOutOfRange {
        name: String,
        index: u32,
        count: usize,
    },
    #[error("node {name:?} depends on itself")]
    SelfDependency { name: String },
    #[error("dependency cycle: {}", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
}

/// Whether `name` can be a certname: non-empty, at most 253 bytes, no whitespace, commas or
/// control characters (a comma separates names on the command line).
pub fn is_valid_certname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != ',')
}

impl Plan {
    /// A plan of independent nodes (a `--nodes` target): no edges. Duplicates are removed and
    /// the order is the order given.
    pub fn independent(names: impl IntoIterator<Item = String>) -> Result<Plan, PlanError> {
        let mut seen = BTreeSet::new();
        let nodes = names
            .into_iter()
            .filter(|name| seen.insert(name.clone()))
            .map(|name| PlannedNode {
                name,
                depends_on: Vec::new(),
                components: Vec::new(),
            })
            .collect();
        Plan::new(nodes)
    }

    /// Checks every structural rule: non-empty, bounded, unique valid names, dependencies in
    /// range, acyclic. Dependency lists are sorted and deduplicated.
    pub fn new(mut nodes: Vec<PlannedNode>) -> Result<Plan, PlanError> {
        if nodes.is_empty() {
            return Err(PlanError::Empty);
        }
        if nodes.len() > NODES_PER_JOB_MAX {
            return Err(PlanError::TooManyNodes { count: nodes.len() });
        }
        let mut names = BTreeSet::new();
        let count = nodes.len();
        for (index, node) in nodes.iter_mut().enumerate() {
            if !is_valid_certname(&node.name) {
                return Err(PlanError::InvalidNodeName {
                    name: node.name.clone(),
                });
            }
            if !names.insert(node.name.clone()) {
                return Err(PlanError::DuplicateNode {
                    name: node.name.clone(),
                });
            }
            node.depends_on.sort_unstable();
            node.depends_on.dedup();
            for &dep in &node.depends_on {
                if dep as usize >= count {
                    return Err(PlanError::DependencyOutOfRange {
                        name: node.name.clone(),
                        index: dep,
                        count,
                    });
                }
                if dep as usize == index {
                    return Err(PlanError::SelfDependency {
                        name: node.name.clone(),
                    });
                }
            }
        }
        let plan = Plan { nodes };
        plan.levels()?;
        Ok(plan)
    }

    pub fn nodes(&self) -> &[PlannedNode] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// The DAG depth of every node: level 0 has no dependencies, a node at level k depends
    /// only on nodes at levels below k. Errors with the cycle if there is one.
    pub fn levels(&self) -> Result<Vec<u32>, PlanError> {
        // Kahn's algorithm: iterative, so deep chains cannot overflow the stack.
        let count = self.nodes.len();
        let mut remaining: Vec<usize> = self.nodes.iter().map(|n| n.depends_on.len()).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); count];
        for (index, node) in self.nodes.iter().enumerate() {
            for &dep in &node.depends_on {
                dependents[dep as usize].push(index);
            }
        }
        let mut level = vec![0u32; count];
        let mut ready: Vec<usize> = (0..count).filter(|&i| remaining[i] == 0).collect();
        let mut done = 0usize;
        while let Some(index) = ready.pop() {
            done += 1;
            for &dependent in &dependents[index] {
                level[dependent] = level[dependent].max(level[index] + 1);
                remaining[dependent] -= 1;
                if remaining[dependent] == 0 {
                    ready.push(dependent);
                }
            }
        }
        if done == count {
            return Ok(level);
        }
        Err(PlanError::Cycle {
            cycle: self.find_cycle(&remaining),
        })
    }

    /// Names one cycle among the nodes Kahn's algorithm could not order (`remaining > 0`).
    fn find_cycle(&self, remaining: &[usize]) -> Vec<String> {
        // Every stuck node has a stuck dependency; walking stuck dependencies must revisit a node.
        let start = remaining.iter().position(|&r| r > 0).unwrap_or(0);
        let mut position_in_walk = vec![usize::MAX; self.nodes.len()];
        let mut walk = Vec::new();
        let mut current = start;
        while position_in_walk[current] == usize::MAX {
            position_in_walk[current] = walk.len();
            walk.push(current);
            let next = self.nodes[current]
                .depends_on
                .iter()
                .map(|&d| d as usize)
                .find(|&d| remaining[d] > 0);
            match next {
                Some(next) => current = next,
                None => break,
            }
        }
        let from = position_in_walk[current].min(walk.len().saturating_sub(1));
        // The walk follows "depends on" edges; print in run order (producer first).
        let mut cycle: Vec<String> = walk[from..]
            .iter()
            .rev()
            .map(|&i| self.nodes[i].name.clone())
            .collect();
        if let Some(first) = cycle.first().cloned() {
            cycle.push(first);
        }
        cycle
    }

    /// Node indices that depend on `index`, directly or transitively.
    pub fn transitive_dependents(&self, index: usize) -> Vec<usize> {
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for &dep in &node.depends_on {
                dependents[dep as usize].push(i);
            }
        }
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![index];
        let mut out = Vec::new();
        while let Some(i) = stack.pop() {
            for &d in &dependents[i] {
                if !seen[d] {
                    seen[d] = true;
                    out.push(d);
                    stack.push(d);
                }
            }
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, deps: &[u32]) -> PlannedNode {
        PlannedNode {
            name: name.into(),
            depends_on: deps.to_vec(),
            components: vec![],
        }
    }

    #[test]
    fn levels_follow_dependency_depth() {
        let plan = Plan::new(vec![
            node("db", &[]),
            node("app", &[0]),
            node("lb", &[1]),
            node("x", &[]),
        ])
        .unwrap();
        assert_eq!(plan.levels().unwrap(), vec![0, 1, 2, 0]);
        assert_eq!(plan.transitive_dependents(0), vec![1, 2]);
    }

    #[test]
    fn cycle_is_named() {
        let err = Plan::new(vec![node("a", &[2]), node("b", &[0]), node("c", &[1])]).unwrap_err();
        match err {
            PlanError::Cycle { cycle } => {
                assert_eq!(cycle.len(), 4, "{cycle:?}");
                assert_eq!(cycle.first(), cycle.last());
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_structure() {
        assert_eq!(Plan::new(vec![]), Err(PlanError::Empty));
        assert!(matches!(
            Plan::new(vec![node("a", &[0])]),
            Err(PlanError::SelfDependency { .. })
        ));
        assert!(matches!(
            Plan::new(vec![node("a", &[5])]),
            Err(PlanError::DependencyOutOfRange { .. })
        ));
        assert!(matches!(
            Plan::new(vec![node("a", &[]), node("a", &[])]),
            Err(PlanError::DuplicateNode { .. })
        ));
        assert!(matches!(
            Plan::new(vec![node("a b", &[])]),
            Err(PlanError::InvalidNodeName { .. })
        ));
    }

    #[test]
    fn independent_plan_drops_duplicates() {
        let plan = Plan::independent(["a".to_string(), "b".to_string(), "a".to_string()]).unwrap();
        assert_eq!(plan.len(), 2);
        assert!(plan.nodes().iter().all(|n| n.depends_on.is_empty()));
    }
}
