//! Generated application models: Puppet code (an application whose components export and
//! consume capabilities, instances of it in `site`, components mapped to the agents' nodes)
//! that goes through the real parser, graph and planner of porch-lang — so the simulation's
//! jobs carry the very plans `puppet-job run --application` would.

use crate::workload::shuffled_agents;
use porch_core::Plan;
use porch_lang::Environment;
use rand::Rng;
use rand::rngs::SmallRng;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Puppet sources of a random model over `agents` nodes.
pub fn random_model(rng: &mut SmallRng, agents: usize) -> Vec<(PathBuf, String)> {
    // One global ranking of the nodes: a consumer is placed at a rank no lower than any of its
    // producers in every instance, so the node graph stays acyclic across instances.
    let ranking = shuffled_agents(rng, agents);
    let count = rng.random_range(2..=5usize);
    let mut consumes: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (i, list) in consumes.iter_mut().enumerate() {
        for j in 0..i {
            if rng.random_bool(0.5) {
                list.push(j);
            }
        }
    }
    let mut body = String::new();
    for (i, producers) in consumes.iter().enumerate() {
        body.push_str(&format!(
            "  gen::c{i} {{ $name: export => Cap[\"c{i}-${{name}}\"]"
        ));
        if !producers.is_empty() {
            let list: Vec<String> = producers
                .iter()
                .map(|j| format!("Cap[\"c{j}-${{name}}\"]"))
                .collect();
            body.push_str(&format!(", consume => [{}]", list.join(", ")));
        }
        body.push_str(" }\n");
    }
    let instances = rng.random_range(1..=3usize);
    let mut site = String::from("site {\n");
    for t in 0..instances {
        let mut rank = vec![0usize; count];
        for i in 0..count {
            let floor = consumes[i].iter().map(|&j| rank[j]).max().unwrap_or(0);
            let ceiling = (floor + 2).min(agents - 1);
            rank[i] = rng.random_range(floor..=ceiling);
        }
        let mut by_node: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (i, r) in rank.iter().enumerate() {
            by_node
                .entry(*r)
                .or_default()
                .push(format!("Gen::C{i}['i{t}']"));
        }
        let nodes: Vec<String> = by_node
            .iter()
            .map(|(r, components)| {
                format!("Node['{}'] => [{}]", ranking[*r], components.join(", "))
            })
            .collect();
        site.push_str(&format!(
            "  gen {{ 'i{t}': nodes => {{ {} }} }}\n",
            nodes.join(", ")
        ));
    }
    site.push_str("}\n");
    vec![
        (
            PathBuf::from("modules/gen/lib/puppet/type/cap.rb"),
            "Puppet::Type.newtype :cap, :is_capability => true".to_string(),
        ),
        (
            PathBuf::from("modules/gen/manifests/init.pp"),
            format!("application gen () {{\n{body}}}\n"),
        ),
        (PathBuf::from("manifests/site.pp"), site),
    ]
}

/// The plan of `--application Gen` (every instance) of a random model.
pub fn random_application_plan(rng: &mut SmallRng, agents: usize) -> Result<Plan, String> {
    let sources = random_model(rng, agents);
    let render = || {
        sources
            .iter()
            .map(|(p, t)| format!("# {}\n{t}", p.display()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let environment = Environment::from_sources("production", sources.clone())
        .map_err(|e| format!("a generated model does not load: {e}\n{}", render()))?;
    environment
        .plan_application("Gen")
        .map(|report| report.plan)
        .map_err(|e| format!("a generated model does not plan: {e}\n{}", render()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_models_plan_and_respect_their_node_ranking() {
        for seed in 0..300 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let plan = random_application_plan(&mut rng, 10).unwrap();
            assert!(!plan.nodes().is_empty());
            let levels = plan.levels().expect("acyclic");
            for (i, node) in plan.nodes().iter().enumerate() {
                for &dep in &node.depends_on {
                    assert!(
                        levels[dep as usize] < levels[i],
                        "seed {seed}: edge into {}",
                        node.name
                    );
                }
            }
        }
    }

    #[test]
    fn some_generated_models_have_edges() {
        let with_edges = (0..100)
            .filter(|&seed| {
                let mut rng = SmallRng::seed_from_u64(seed);
                let plan = random_application_plan(&mut rng, 10).unwrap();
                plan.nodes().iter().any(|n| !n.depends_on.is_empty())
            })
            .count();
        assert!(
            with_edges > 30,
            "only {with_edges} of 100 models had a dependency between nodes"
        );
    }
}
