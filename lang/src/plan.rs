//! From the environment graph to a job's plan: the nodes to run and the node-level DAG
//! (a consumer's node after its producer's node; components on one node are that node's own
//! catalog business, so edges within a node are dropped).

use crate::environment::Environment;
use crate::error::LangError;
use crate::eval::canonical_type;
use crate::graph::Graph;
use porch_core::{ComponentPlacement, Plan, PlanError, PlannedNode};
use std::collections::{BTreeMap, BTreeSet};

/// A plan and what the user should be told about it.
#[derive(Clone, Debug)]
pub struct PlanReport {
    pub plan: Plan,
    /// Application instances involved, as `Lamp[prod]`.
    pub applications: Vec<String>,
    pub warnings: Vec<String>,
}

/// `Lamp` → (`Lamp`, None); `Lamp[prod]` / `Lamp['prod']` → (`Lamp`, Some("prod")).
pub fn parse_application_target(target: &str) -> Result<(String, Option<String>), LangError> {
    let target = target.trim();
    match target.split_once('[') {
        None if !target.is_empty() => Ok((canonical_type(target), None)),
        Some((app, rest)) if !app.is_empty() && rest.ends_with(']') => {
            let title = rest[..rest.len() - 1]
                .trim()
                .trim_matches('\'')
                .trim_matches('"');
            if title.is_empty() {
                return Err(LangError::EmptyTarget(format!(
                    "{target}: the instance title is empty"
                )));
            }
            Ok((canonical_type(app.trim()), Some(title.to_string())))
        }
        _ => Err(LangError::EmptyTarget(format!(
            "{target:?} is not an application (App) or instance (App[title])"
        ))),
    }
}

fn plan_error(error: PlanError) -> LangError {
    match error {
        PlanError::Cycle { cycle } => {
            LangError::Cycle(format!("between nodes {}", cycle.join(" -> ")))
        }
        PlanError::Empty => LangError::EmptyTarget("the target has no nodes".into()),
        other => LangError::EmptyTarget(other.to_string()),
    }
}

/// Builds the plan over `nodes` from the components of `instances` (edges restricted to them).
fn build(
    graph: &Graph,
    nodes: &BTreeSet<String>,
    instances: &BTreeSet<usize>,
) -> Result<Plan, LangError> {
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut planned: Vec<PlannedNode> = nodes
        .iter()
        .map(|name| PlannedNode {
            name: name.clone(),
            depends_on: Vec::new(),
            components: Vec::new(),
        })
        .collect();
    for &i in instances {
        let instance = &graph.instances[i];
        for &c in &instance.components {
            let component = &graph.components[c];
            let Some(&at) = index.get(component.node.as_str()) else {
                continue;
            };
            planned[at].components.push(ComponentPlacement {
                component: format!("{}[{}]", component.type_name, component.title),
                application: instance.short(),
            });
            for &d in &component.depends_on {
                let producer = &graph.components[d];
                if !instances.contains(&producer.instance) || producer.node == component.node {
                    continue;
                }
                if let Some(&from) = index.get(producer.node.as_str()) {
                    planned[at].depends_on.push(from as u32);
                }
            }
        }
    }
    Plan::new(planned).map_err(plan_error)
}

impl Environment {
    /// The plan of `-a App` or `-a 'App[title]'`.
    pub fn plan_application(&self, target: &str) -> Result<PlanReport, LangError> {
        let (app, title) = parse_application_target(target)?;
        let graph = self.graph()?;
        let instances: BTreeSet<usize> = graph
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.type_name == app && title.as_ref().is_none_or(|t| &i.title == t))
            .map(|(n, _)| n)
            .collect();
        if instances.is_empty() {
            return Err(LangError::EmptyTarget(format!(
                "environment {} has no instance {}",
                self.name,
                match &title {
                    Some(t) => format!("{app}[{t}]"),
                    None => format!("of application {app}"),
                }
            )));
        }
        let nodes: BTreeSet<String> = instances
            .iter()
            .flat_map(|&i| {
                graph.instances[i]
                    .components
                    .iter()
                    .map(|&c| graph.components[c].node.clone())
            })
            .collect();
        if nodes.is_empty() {
            return Err(LangError::EmptyTarget(format!(
                "{target}: no component is mapped to a node"
            )));
        }
        let plan = build(&graph, &nodes, &instances)?;
        Ok(PlanReport {
            plan,
            applications: instances
                .iter()
                .map(|&i| graph.instances[i].short())
                .collect(),
            warnings: Vec::new(),
        })
    }

    /// The plan of `--nodes`: application edges between the targeted nodes, and PE's warning
    /// for every application only partly in the target.
    pub fn plan_nodes(&self, nodes: &[String]) -> Result<PlanReport, LangError> {
        let graph = self.graph()?;
        let targeted: BTreeSet<String> = nodes.iter().cloned().collect();
        let all: BTreeSet<usize> = (0..graph.instances.len()).collect();
        let plan = build(&graph, &targeted, &all)?;
        let mut warnings = Vec::new();
        let mut applications = BTreeSet::new();
        for (i, instance) in graph.instances.iter().enumerate() {
            let instance_nodes: BTreeSet<&str> = instance
                .components
                .iter()
                .map(|&c| graph.components[c].node.as_str())
                .collect();
            let inside: Vec<&str> = instance_nodes
                .iter()
                .copied()
                .filter(|n| targeted.contains(*n))
                .collect();
            if inside.is_empty() {
                continue;
            }
            applications.insert(graph.instances[i].short());
            let missing: Vec<&str> = instance_nodes
                .iter()
                .copied()
                .filter(|n| !targeted.contains(*n))
                .collect();
            if !missing.is_empty() {
                warnings.push(format!(
                    "**WARNING** target does not contain all nodes in this application. {} hosts components of {}; its nodes {} are not in the target and will not run.",
                    inside.join(", "),
                    instance.short(),
                    missing.join(", ")
                ));
            }
        }
        Ok(PlanReport {
            plan,
            applications: applications.into_iter().collect(),
            warnings,
        })
    }
}
