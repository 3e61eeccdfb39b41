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

/// An environment whose `(path, text)` files span both layouts.
fn merged(files: &[(&str, &str)]) -> Result<Environment, porch_lang::LangError> {
    Environment::from_sources(
        "production",
        files
            .iter()
            .map(|(path, text)| (PathBuf::from(path), text.to_string()))
            .collect(),
    )
}

const SITE: &str = "site {\n  lamp { 'p': nodes => { Node['a'] => [Lamp::Db['p'], Lamp::App['p'], Lamp::Lb['p']] } }\n}\n";

#[test]
fn layouts_merge_an_application_in_a_module_with_a_site_in_orchestration() {
    let env = merged(&[
        ("modules/lamp/manifests/init.pp", APP),
        ("orchestration/site.pp", SITE),
    ])
    .unwrap();
    let report = env.plan_application("Lamp[p]").unwrap();
    assert_eq!(report.applications, vec!["Lamp[p]"]);
}

#[test]
fn an_application_in_both_layouts_is_an_error_naming_both_files() {
    let err = merged(&[
        ("modules/lamp/manifests/init.pp", APP),
        ("orchestration/lamp.pp", APP),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "orchestration/lamp.pp:1:1: application Lamp is already defined at modules/lamp/manifests/init.pp:1:1"
    );
    assert_eq!(err.kind(), "puppetlabs.orchestrator/puppet-code-error");
}

#[test]
fn a_site_in_both_layouts_is_an_error_naming_both_files() {
    let err = merged(&[
        ("manifests/site.pp", "node default { }\nsite { }\n"),
        ("orchestration/site.pp", SITE),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "orchestration/site.pp:1:1: a second site block (the first is at manifests/site.pp:2:1)"
    );
}

#[test]
fn a_capability_mapping_defined_twice_is_an_error_naming_both_files() {
    let err = merged(&[
        (
            "modules/lamp/manifests/db.pp",
            "define lamp::db () { }\nLamp::Db produces Sql { host => $::fqdn }\n",
        ),
        (
            "orchestration/lamp.pp",
            "Lamp::Db consumes Sql { }\nLamp::Db produces Sql { }\n",
        ),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "orchestration/lamp.pp:2:1: Lamp::Db produces Sql is already defined at modules/lamp/manifests/db.pp:2:1"
    );
}

#[test]
fn a_capability_type_declared_in_both_layouts_is_one_type() {
    let rb = "Puppet::Type.newtype :sql, :is_capability => true do\nend\n";
    let env = merged(&[
        ("modules/lamp/lib/puppet/type/sql.rb", rb),
        ("orchestration/types/sql.rb", rb),
    ])
    .unwrap();
    assert_eq!(env.capability_types.len(), 1);
}

#[test]
fn a_component_in_the_orchestration_directory_is_refused() {
    let err = merged(&[(
        "orchestration/lamp.pp",
        "# components belong in modules\ndefine lamp::db () { }\n",
    )])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "orchestration/lamp.pp:2:1: define lamp::db in orchestration/ would never reach a node: \
         Puppet Server does not read this directory; put components in a module's manifests and \
         declare them through the node's classification"
    );
    let err = merged(&[("orchestration/site.pp", "lamp::db { 'p': }\n")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("orchestration/site.pp:1:1: a lamp::db resource in orchestration/"),
        "{err}"
    );
    // The same definitions are fine among Puppet's own manifests.
    merged(&[(
        "manifests/site.pp",
        "define lamp::db () { }\nlamp::db { 'p': }\n",
    )])
    .unwrap();
}

#[test]
fn a_malformed_file_in_the_orchestration_directory_names_file_line_column() {
    let err = merged(&[(
        "orchestration/site.pp",
        "site {\n  lamp { 'p':\n    nodes => { Node['a'] Lamp::Db['p'] },\n  }\n}\n",
    )])
    .unwrap_err();
    assert_eq!(err.kind(), "puppetlabs.orchestrator/puppet-code-error");
    assert!(
        err.to_string().starts_with("orchestration/site.pp:3:"),
        "{err}"
    );
}
