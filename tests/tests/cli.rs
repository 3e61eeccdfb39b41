//! `puppet-job` against a real cluster: output, failover across service URLs, exit codes.

use porch_tests::{Cluster, FAST, execution_logger, free_port, porch_bin, wait_until};
use std::process::{Command, Output};
use std::time::Duration;

fn puppet_job(cluster: &Cluster, urls: &str, args: &[&str]) -> Output {
    let bin = porch_bin().with_file_name("puppet-job");
    Command::new(bin)
        .arg("--service-url")
        .arg(urls)
        .args(cluster.client_flags())
        .args(args)
        .env("HOME", cluster.dir.path())
        .output()
        .expect("run puppet-job")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn puppet_job_exit_codes_reflect_the_outcome() {
    let mut cluster = Cluster::start(3, FAST);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 0.2, &["broken"]);
    for name in ["good1", "good2", "broken"] {
        cluster.start_agent(name, &script);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &["good1", "good2", "broken"]);
    // The first URL is dead: the client fails over to the others.
    let urls = format!("https://127.0.0.1:{},{}", free_port(), cluster.urls());

    let ok = puppet_job(&cluster, &urls, &["run", "--nodes", "good1,good2"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let out = text(&ok);
    assert!(out.contains("New job id created: 1"), "{out}");
    assert!(
        out.contains("Finished puppet run on good1 - Success!"),
        "{out}"
    );
    assert!(out.contains("Success!"), "{out}");

    let failures = puppet_job(&cluster, &urls, &["run", "--nodes", "good1,broken"]);
    assert_eq!(failures.status.code(), Some(1), "{}", text(&failures));
    assert!(text(&failures).contains("Finished puppet run on broken - Failed!"));

    let json = puppet_job(
        &cluster,
        &urls,
        &["run", "--nodes", "good2", "--no-wait", "--format", "json"],
    );
    assert_eq!(json.status.code(), Some(0));
    let reply: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    assert!(reply["job"]["name"].as_str().is_some(), "{reply}");

    let shown = puppet_job(&cluster, &urls, &["show"]);
    assert_eq!(shown.status.code(), Some(0));
    let table = String::from_utf8_lossy(&shown.stdout);
    assert!(table.starts_with("ID  STATUS"), "{table}");
    assert!(
        table.contains("admin"),
        "the owner is the token's user: {table}"
    );

    assert_eq!(
        puppet_job(&cluster, &urls, &["show", "999"]).status.code(),
        Some(6)
    );
    assert_eq!(
        puppet_job(&cluster, &urls, &["stop", "999"]).status.code(),
        Some(6)
    );
    let bad = puppet_job(&cluster, &urls, &["run", "--nodes", "a b"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let bad = puppet_job(&cluster, &urls, &["run", "--query", "reports {}"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert_eq!(puppet_job(&cluster, &urls, &["run"]).status.code(), Some(2));
    let nowhere = format!("https://127.0.0.1:{}", free_port());
    let unreachable = puppet_job(&cluster, &nowhere, &["show"]);
    assert_eq!(unreachable.status.code(), Some(5), "{}", text(&unreachable));
    assert!(text(&unreachable).contains("cannot reach any orchestrator"));
}

#[test]
fn followed_job_that_is_stopped_exits_3() {
    let mut cluster = Cluster::start(3, FAST);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 1.0, &[]);
    for name in ["s1", "s2"] {
        cluster.start_agent(name, &script);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &["s1", "s2"]);
    let urls = cluster.urls();
    let (flags, home) = (cluster.client_flags(), cluster.dir.path().to_path_buf());
    let follower = std::thread::spawn(move || {
        Command::new(porch_bin().with_file_name("puppet-job"))
            .args(["--service-url", &urls])
            .args(flags)
            .args(["run", "--nodes", "s1,s2", "--concurrency", "1"])
            .env("HOME", home)
            .output()
            .expect("run puppet-job")
    });
    wait_until(Duration::from_secs(10), "the first run", || {
        (!porch_tests::executions(&log).is_empty()).then_some(())
    });
    let (status, reply) = cluster.post(leader, "/command/stop", r#"{"job":"1"}"#, &[]);
    assert_eq!(status, 202, "{reply}");
    let output = follower.join().unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
}
