//! Application orchestration end to end: the example environment's `Lamp` instances run in
//! producer → consumer order on real agents; a failed producer skips its dependents only.

use porch_tests::{Cluster, FAST, execution_logger, executions, porch_bin};
use std::collections::BTreeMap;
use std::time::Duration;

fn codedir() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lang/examples/code")
        .canonicalize()
        .expect("example code")
        .display()
        .to_string()
}

const LAMP_NODES: [&str; 4] = [
    "db1.example.com",
    "app1.example.com",
    "lb1.example.com",
    "dev1.example.com",
];

fn times(log: &std::path::Path, job: u64) -> BTreeMap<String, (u128, u128)> {
    let mut out = BTreeMap::new();
    for (kind, node, j, _, time) in executions(log) {
        if j != job {
            continue;
        }
        let entry = out.entry(node).or_insert((0, 0));
        if kind == "start" {
            entry.0 = time;
        } else {
            entry.1 = time;
        }
    }
    out
}

fn start(failing: &[&str]) -> (Cluster, std::path::PathBuf) {
    start_with(failing, 0.3, &[])
}

fn start_with(failing: &[&str], run_seconds: f64, extra: &[&str]) -> (Cluster, std::path::PathBuf) {
    let code = codedir();
    let mut flags = FAST.to_vec();
    flags.extend(["--codedir", code.as_str()]);
    flags.extend(extra);
    let mut cluster = Cluster::start(3, &flags);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, run_seconds, failing);
    for node in LAMP_NODES {
        cluster.start_agent(node, &script);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &LAMP_NODES);
    (cluster, log)
}

#[test]
fn puppet_job_run_application_runs_db_before_app_before_lb() {
    let (cluster, log) = start(&[]);
    let output = std::process::Command::new(porch_bin().with_file_name("puppet-job"))
        .args(["--service-url", &cluster.urls()])
        .args(cluster.client_flags())
        .args(["run", "-a", "Lamp[prod]", "-e", "production"])
        .env("HOME", cluster.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let t = times(&log, 1);
    assert_eq!(t.len(), 3, "only Lamp[prod]'s nodes run: {t:?}");
    assert!(
        t["db1.example.com"].1 <= t["app1.example.com"].0,
        "app started before db finished: {t:?}"
    );
    assert!(
        t["app1.example.com"].1 <= t["lb1.example.com"].0,
        "lb started before app finished: {t:?}"
    );
}

#[test]
fn failed_producer_skips_its_dependents_but_not_the_other_instance() {
    let (cluster, log) = start(&["db1.example.com"]);
    let (status, reply) = cluster.post(
        1,
        "/command/deploy",
        r#"{"environment":"production","scope":{"application":"Lamp"}}"#,
        &[],
    );
    assert_eq!(status, 202, "{reply}");
    let job = cluster.wait_job_done(1, 1, Duration::from_secs(30));
    assert_eq!(job["state"], "finished", "{job}");
    let (_, nodes) = cluster.get(1, "/jobs/1/nodes");
    let state = |name: &str| {
        nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .map(|n| n["state"].as_str().unwrap_or("").to_string())
            .unwrap()
    };
    assert_eq!(state("db1.example.com"), "failed");
    assert_eq!(state("app1.example.com"), "skipped");
    assert_eq!(state("lb1.example.com"), "skipped");
    assert_eq!(
        state("dev1.example.com"),
        "finished",
        "Lamp[dev] does not depend on Lamp[prod]"
    );
    let ran: Vec<String> = times(&log, 1).into_keys().collect();
    assert_eq!(
        ran,
        vec!["db1.example.com", "dev1.example.com"],
        "skipped nodes never ran"
    );
}

#[test]
fn application_errors_have_pe_kinds() {
    let (cluster, _) = start(&[]);
    let cases = [
        (
            r#"{"environment":"production","scope":{"application":"Lamp[nope]"}}"#,
            400,
            "puppetlabs.orchestrator/empty-target",
        ),
        (
            r#"{"environment":"nowhere","scope":{"application":"Lamp"}}"#,
            404,
            "puppetlabs.orchestrator/unknown-environment",
        ),
    ];
    for (body, status, kind) in cases {
        let (got, reply) = cluster.post(1, "/command/deploy", body, &[]);
        assert_eq!(
            (got, reply["kind"].as_str()),
            (status, Some(kind)),
            "{reply}"
        );
    }
    let (status, instances) = cluster.get(2, "/environments/production/instances");
    assert_eq!(status, 200);
    assert_eq!(instances["items"][0]["components"][0]["type"], "Lamp::Db");
    let (status, shown) = cluster.get(
        3,
        "/environments/production/app_show?application=Lamp%5Bprod%5D",
    );
    assert_eq!(status, 200);
    assert!(
        shown["rendered"]
            .as_str()
            .unwrap()
            .contains("Lamp::Db['prod'] => db1.example.com")
    );
    let (status, plan) = cluster.post(
        1,
        "/command/plan",
        r#"{"environment":"production","scope":{"nodes":["app1.example.com"]}}"#,
        &[],
    );
    assert_eq!(status, 200);
    assert!(
        plan["warnings"][0]
            .as_str()
            .unwrap()
            .contains("target does not contain all nodes"),
        "{plan}"
    );
}

#[test]
fn dependency_chain_survives_leader_kill_with_one_execution_each_in_order() {
    let (mut cluster, log) = start(&[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let (status, reply) = cluster.post(
        leader,
        "/command/deploy",
        r#"{"environment":"production","scope":{"application":"Lamp[prod]"}}"#,
        &[],
    );
    assert_eq!(status, 202, "{reply}");
    porch_tests::wait_until(Duration::from_secs(10), "db1 to start", || {
        (!executions(&log).is_empty()).then_some(())
    });
    cluster.kill9(leader);
    let survivor = cluster.running()[0];
    let job = cluster.wait_job_done(survivor, 1, Duration::from_secs(60));
    assert_eq!(job["node_states"]["finished"], 3, "{job}");
    let starts: Vec<String> = executions(&log)
        .into_iter()
        .filter(|e| e.0 == "start")
        .map(|e| e.1)
        .collect();
    assert_eq!(
        starts,
        vec!["db1.example.com", "app1.example.com", "lb1.example.com"],
        "one execution each, in order"
    );
    let t = times(&log, 1);
    assert!(
        t["db1.example.com"].1 <= t["app1.example.com"].0
            && t["app1.example.com"].1 <= t["lb1.example.com"].0,
        "{t:?}"
    );
}

#[test]
fn unreachable_producer_is_errored_and_its_dependents_skipped() {
    let (mut cluster, log) = start_with(&[], 20.0, &["--agent-timeout-secs", "2"]);
    let (status, reply) = cluster.post(
        1,
        "/command/deploy",
        r#"{"environment":"production","scope":{"application":"Lamp[prod]"}}"#,
        &[],
    );
    assert_eq!(status, 202, "{reply}");
    porch_tests::wait_until(Duration::from_secs(10), "db1 to start", || {
        (!executions(&log).is_empty()).then_some(())
    });
    cluster.kill_agent("db1.example.com");
    let job = cluster.wait_job_done(1, 1, Duration::from_secs(30));
    assert_eq!(job["node_states"]["errored"], 1, "{job}");
    assert_eq!(job["node_states"]["skipped"], 2, "{job}");
    assert_eq!(job["state"], "failed", "no node could run: {job}");
}
