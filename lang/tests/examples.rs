//! The shipped example environments: plans, `app show` and `job plan` output (golden files,
//! rewritten with UPDATE_GOLDEN=1 and reviewed before committing).

use porch_lang::render::{render_app_show, render_plan};
use porch_lang::{Environment, list_environments};
use std::path::{Path, PathBuf};

fn codedir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/code")
}

fn production() -> Environment {
    Environment::load(&codedir(), "production").expect("the example environment loads")
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing; run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

fn levels_by_node(report: &porch_lang::PlanReport) -> Vec<(String, u32)> {
    let levels = report.plan.levels().unwrap();
    report
        .plan
        .nodes()
        .iter()
        .zip(levels)
        .map(|(n, l)| (n.name.clone(), l))
        .collect()
}

#[test]
fn lamp_runs_db_before_app_before_lb() {
    let report = production().plan_application("Lamp").unwrap();
    assert_eq!(
        levels_by_node(&report),
        vec![
            ("app1.example.com".to_string(), 1),
            ("db1.example.com".to_string(), 0),
            ("dev1.example.com".to_string(), 0),
            ("lb1.example.com".to_string(), 2),
        ]
    );
    assert_eq!(
        report.applications,
        vec!["Lamp[prod]", "Lamp[dev]"],
        "in site order"
    );
}

#[test]
fn one_instance_plans_only_its_nodes() {
    let report = production().plan_application("Lamp['prod']").unwrap();
    let names: Vec<String> = report.plan.nodes().iter().map(|n| n.name.clone()).collect();
    assert_eq!(
        names,
        vec!["app1.example.com", "db1.example.com", "lb1.example.com"]
    );
}

#[test]
fn consumer_waits_for_every_producer() {
    // The shop monitor requires both the front web server and the cache.
    let report = production().plan_application("Webstack[shop]").unwrap();
    let levels = levels_by_node(&report);
    let level = |n: &str| levels.iter().find(|(name, _)| name == n).unwrap().1;
    assert_eq!(level("cache1.example.com"), 0);
    assert_eq!(level("web1.example.com"), 1);
    assert_eq!(level("web2.example.com"), 1);
    assert_eq!(level("mon1.example.com"), 2);
}

#[test]
fn partial_node_target_warns_and_keeps_edges_between_targeted_nodes() {
    let nodes = vec![
        "app1.example.com".to_string(),
        "lb1.example.com".to_string(),
    ];
    let report = production().plan_nodes(&nodes).unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0]
            .starts_with("**WARNING** target does not contain all nodes in this application.")
    );
    assert!(
        report.warnings[0].contains("Lamp[prod]") && report.warnings[0].contains("db1.example.com")
    );
    assert_eq!(
        levels_by_node(&report),
        vec![
            ("app1.example.com".into(), 0),
            ("lb1.example.com".into(), 1)
        ]
    );
    let outside = production()
        .plan_nodes(&["other.example.com".to_string()])
        .unwrap();
    assert!(outside.warnings.is_empty());
    assert!(outside.plan.nodes()[0].depends_on.is_empty());
}

#[test]
fn environments_are_listed_and_unknown_ones_refused() {
    assert_eq!(
        list_environments(&codedir()),
        vec!["modern", "production", "staging"]
    );
    let err = Environment::load(&codedir(), "nope").unwrap_err();
    assert_eq!(err.kind(), "puppetlabs.orchestrator/unknown-environment");
    let staging = Environment::load(&codedir(), "staging").unwrap();
    assert!(staging.graph().unwrap().instances.is_empty());
    assert_eq!(
        staging.plan_application("Lamp").unwrap_err().kind(),
        "puppetlabs.orchestrator/empty-target"
    );
}

#[test]
fn app_show_golden() {
    golden(
        "app_show_all.txt",
        &render_app_show(&production(), None).unwrap(),
    );
    golden(
        "app_show_lamp_prod.txt",
        &render_app_show(&production(), Some("Lamp[prod]")).unwrap(),
    );
}

#[test]
fn job_plan_golden() {
    let env = production();
    let report = env.plan_application("Lamp").unwrap();
    golden(
        "plan_lamp.txt",
        &render_plan(&report, "production", "Lamp", None),
    );
    let report = env.plan_application("Webstack[shop]").unwrap();
    golden(
        "plan_webstack_shop.txt",
        &render_plan(&report, "production", "Webstack[shop]", Some(2)),
    );
}

#[test]
fn instances_are_listed_in_topological_order() {
    let json = porch_lang::views::instances_json(&production(), Some("Lamp[prod]")).unwrap();
    let types: Vec<&str> = json["items"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["Lamp::Db", "Lamp::App", "Lamp::Lb"]);
    let apps = porch_lang::views::applications_json(&production()).unwrap();
    assert_eq!(apps["items"][0]["name"], "Lamp");
    assert_eq!(
        apps["items"][0]["parameters"]["db_user"],
        serde_json::Value::Null
    );
    assert_eq!(apps["items"][0]["file"], "modules/lamp/manifests/init.pp");
}

#[test]
fn the_example_package_task_is_found_in_both_layouts_and_checks_its_parameters() {
    for environment in ["production", "modern"] {
        let task = porch_lang::tasks::find_task(&codedir(), environment, "package")
            .unwrap_or_else(|e| panic!("{environment}: {e}"));
        assert_eq!(task.file.file_name, "init.sh");
        assert!(task.metadata.supports_noop);
        let given = |value: serde_json::Value| value.as_object().cloned().unwrap();
        assert!(
            task.metadata
                .check_parameters(&given(
                    serde_json::json!({"action": "status", "name": "openssl"})
                ))
                .is_ok()
        );
        let injected = task
            .metadata
            .check_parameters(&given(
                serde_json::json!({"action": "status", "name": "x\"; rm"}),
            ))
            .unwrap_err();
        assert_eq!(injected.parameter, "name");
    }
}
