//! Properties: arbitrary input never panics the parser; random acyclic application models
//! always plan, with every producer's node at a lower level than its consumer's node.

use porch_lang::Environment;
use proptest::prelude::*;
use std::path::PathBuf;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = porch_lang::parser::parse("fuzz.pp", &text);
    }

    #[test]
    fn puppet_like_tokens_never_panic(tokens in prop::collection::vec(
        prop::sample::select(vec!["site", "application", "define", "{", "}", "[", "]", "(", ")", ":", ";", ",", "=>",
            "'t'", "\"${name}\"", "$x", "Lamp::Db", "lamp::db", "produces", "consumes", "Node['a']", "export", "nodes", "node", "/re/", "#c\n"]),
        0..80)) {
        let text = tokens.join(" ");
        let _ = Environment::from_sources("p", vec![(PathBuf::from("f.pp"), text)]).and_then(|e| e.plan_application("Lamp"));
    }

    #[test]
    fn acyclic_models_plan_with_levels_respecting_every_edge(
        count in 2usize..12,
        edges in prop::collection::vec((0usize..12, 0usize..12), 0..30),
        placement in prop::collection::vec(0usize..6, 12),
    ) {
        // Components c0..c{count-1}; an edge (a, b) with a < b means cb consumes ca's capability.
        let mut body = String::new();
        for i in 0..count {
            let consumes: Vec<String> = edges.iter().filter(|(a, b)| a % count < b % count && b % count == i)
                .map(|(a, _)| format!("Cap[\"c{}-${{name}}\"]", a % count)).collect();
            body.push_str(&format!("  gen::c{i} {{ $name: export => Cap[\"c{i}-${{name}}\"]"));
            if !consumes.is_empty() {
                body.push_str(&format!(", consume => [{}]", consumes.join(", ")));
            }
            body.push_str(" }\n");
        }
        // Place components so that a consumer never lands on a node "before" its producer's
        // node: node index = max over producers (keeps the node graph acyclic).
        let mut node_of = vec![0usize; count];
        for i in 0..count {
            let mut n = placement[i];
            for (a, b) in &edges {
                if a % count < b % count && b % count == i {
                    n = n.max(node_of[a % count]);
                }
            }
            node_of[i] = n;
        }
        let mapping: Vec<String> = (0..count).map(|i| format!("Node['n{}'] => Gen::C{i}['x']", node_of[i])).collect();
        // Several components may share a node: group them.
        let mut by_node: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
        for i in 0..count { by_node.entry(node_of[i]).or_default().push(format!("Gen::C{i}['x']")); }
        let nodes: Vec<String> = by_node.iter().map(|(n, cs)| format!("Node['n{n}'] => [{}]", cs.join(", "))).collect();
        let _ = mapping;
        let sources = vec![
            (PathBuf::from("cap.rb"), "Puppet::Type.newtype :cap, :is_capability => true".to_string()),
            (PathBuf::from("init.pp"), format!("application gen () {{\n{body}}}\n")),
            (PathBuf::from("site.pp"), format!("site {{ gen {{ 'x': nodes => {{ {} }} }} }}", nodes.join(", "))),
        ];
        let env = Environment::from_sources("p", sources).expect("generated code parses");
        let report = env.plan_application("Gen").expect("an acyclic model plans");
        let levels = report.plan.levels().expect("acyclic plan");
        let level_of = |node: usize| {
            let name = format!("n{node}");
            let index = report.plan.nodes().iter().position(|n| n.name == name).expect("node planned");
            levels[index]
        };
        for (a, b) in &edges {
            let (a, b) = (a % count, b % count);
            if a < b && node_of[a] != node_of[b] {
                prop_assert!(level_of(node_of[a]) < level_of(node_of[b]), "edge c{a} -> c{b}");
            }
        }
    }
}
