//! Every model error names what is wrong and where (file:line:column) and carries PE's kind.

use porch_lang::Environment;
use std::path::PathBuf;

const APP: &str = r#"application lamp (String $db_user = 'x') {
  lamp::db { $name: export => Sql["lamp-${name}"] }
  lamp::app { $name: consume => Sql["lamp-${name}"], export => Http["lamp-${name}"] }
  lamp::lb { $name: require => Http["lamp-${name}"] }
}
"#;

fn env(site: &str) -> Environment {
    Environment::from_sources(
        "production",
        vec![
            (
                PathBuf::from("modules/lamp/manifests/init.pp"),
                APP.to_string(),
            ),
            (PathBuf::from("manifests/site.pp"), site.to_string()),
        ],
    )
    .expect("parses")
}

fn plan_error(site: &str) -> (String, &'static str) {
    let err = env(site).plan_application("Lamp").unwrap_err();
    (err.to_string(), err.kind())
}

#[test]
fn component_mapped_to_two_nodes_is_an_error() {
    let (msg, _) = plan_error(
        "site {\n  lamp { 'p':\n    nodes => { Node['a'] => Lamp::Db['p'], Node['b'] => [Lamp::Db['p'], Lamp::App['p'], Lamp::Lb['p']] } }\n}\n",
    );
    assert_eq!(
        msg,
        "manifests/site.pp:3:5: Lamp::Db['p'] is mapped to two nodes (a and b); a component runs on exactly one node"
    );
}

#[test]
fn consumed_capability_nobody_exports_is_an_error() {
    // The db is not mapped to a node, so nothing exports Sql['lamp-p'].
    let (msg, _) = plan_error(
        "site {\n  lamp { 'p': nodes => { Node['b'] => [Lamp::App['p'], Lamp::Lb['p']] } }\n}\n",
    );
    assert_eq!(
        msg,
        "modules/lamp/manifests/init.pp:3:22: Lamp::App['p'] consumes Sql['lamp-p'], which no component in the environment exports"
    );
}

#[test]
fn title_in_nodes_the_application_does_not_declare_is_an_error() {
    let (msg, _) =
        plan_error("site {\n  lamp { 'p': nodes => { Node['a'] => Lamp::Db['q'] } }\n}\n");
    assert_eq!(
        msg,
        "manifests/site.pp:2:15: Lamp['p'] maps Lamp::Db['q'] to a node, but the application does not declare that component"
    );
}

#[test]
fn duplicate_instances_are_an_error() {
    let (msg, _) = plan_error("site {\n  lamp { 'p': }\n  lamp { 'p': }\n}\n");
    assert_eq!(
        msg,
        "manifests/site.pp:3:10: duplicate application instance Lamp['p'] (first declared at manifests/site.pp:2:10)"
    );
}

#[test]
fn unknown_parameter_and_unknown_application_are_errors() {
    let (msg, _) = plan_error("site {\n  lamp { 'p': colour => 'red' }\n}\n");
    assert_eq!(
        msg,
        "manifests/site.pp:2:15: Lamp['p'] has no parameter 'colour'"
    );
    let (msg, _) = plan_error("site {\n  wordpress { 'w': }\n}\n");
    assert_eq!(
        msg,
        "manifests/site.pp:2:3: Wordpress is not an application defined in environment production"
    );
}

#[test]
fn cycle_is_named_with_location_and_kind() {
    let cyclic = APP.replace(
        "lamp::db { $name: export => Sql[\"lamp-${name}\"] }",
        "lamp::db { $name: export => Sql[\"lamp-${name}\"], consume => Http[\"lamp-${name}\"] }",
    );
    let env = Environment::from_sources(
        "production",
        vec![
            (PathBuf::from("init.pp"), cyclic),
            (
                PathBuf::from("site.pp"),
                "site { lamp { 'p': nodes => { Node['a'] => Lamp::Db['p'], Node['b'] => [Lamp::App['p'], Lamp::Lb['p']] } } }".into(),
            ),
        ],
    )
    .unwrap();
    let err = env.plan_application("Lamp[p]").unwrap_err();
    assert_eq!(err.kind(), "puppetlabs.orchestrator/dependency-cycle");
    let msg = err.to_string();
    assert!(
        msg.contains("Lamp::Db['p'] -> Lamp::App['p'] -> Lamp::Db['p']")
            || msg.contains("Lamp::App['p'] -> Lamp::Db['p'] -> Lamp::App['p']"),
        "{msg}"
    );
    assert!(msg.contains("init.pp:"), "{msg}");
}

#[test]
fn node_level_cycle_is_named() {
    // Components alternate between two nodes: db on a, app on b, lb on a.
    let (msg, kind) = plan_error(
        "site { lamp { 'p': nodes => { Node['a'] => [Lamp::Db['p'], Lamp::Lb['p']], Node['b'] => Lamp::App['p'] } } }",
    );
    assert_eq!(kind, "puppetlabs.orchestrator/dependency-cycle");
    assert!(msg.contains("between nodes"), "{msg}");
}

#[test]
fn missing_instance_is_empty_target() {
    let env = env(
        "site { lamp { 'p': nodes => { Node['a'] => [Lamp::Db['p'], Lamp::App['p'], Lamp::Lb['p']] } } }",
    );
    let err = env.plan_application("Lamp[nope]").unwrap_err();
    assert_eq!(err.kind(), "puppetlabs.orchestrator/empty-target");
    assert_eq!(
        env.plan_application("Lamp[]").unwrap_err().kind(),
        "puppetlabs.orchestrator/empty-target"
    );
}

#[test]
fn parse_errors_carry_the_location() {
    let err = Environment::from_sources(
        "production",
        vec![(
            PathBuf::from("manifests/site.pp"),
            "site {\n  lamp { 'p' nodes => {} }\n}".into(),
        )],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "manifests/site.pp:2:14: expected ':' after the title of a lamp resource, found 'nodes'"
    );
}
