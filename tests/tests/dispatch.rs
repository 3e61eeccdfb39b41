//! Jobs run on real agents (command runner writing an execution log): in order, once per
//! attempt, through leader failover, agent crashes and agents that never come back.

use porch_tests::{Cluster, FAST, execution_logger, executions, wait_until};
use std::time::Duration;

/// Per-node (start, end) times of job `job` from the execution log; panics on duplicates.
fn once_each(log: &std::path::Path, job: u64) -> std::collections::BTreeMap<String, (u128, u128)> {
    let mut runs = std::collections::BTreeMap::new();
    let lines = executions(log);
    for (kind, node, j, _, time) in &lines {
        if *j != job {
            continue;
        }
        let entry = runs.entry(node.clone()).or_insert((0u128, 0u128));
        match kind.as_str() {
            "start" => {
                assert_eq!(entry.0, 0, "{node} started twice for job {job}: {lines:?}");
                entry.0 = *time;
            }
            "end" => entry.1 = *time,
            _ => {}
        }
    }
    runs
}

#[test]
fn job_completes_through_leader_kill_with_one_execution_per_node() {
    let mut cluster = Cluster::start(3, FAST);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 0.7, &[]);
    let names = ["a1", "a2", "a3", "a4", "a5"];
    for name in names {
        cluster.start_agent(name, &script);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &names);
    let job = cluster.submit(leader, &names, Some(1));
    wait_until(Duration::from_secs(10), "the first run to start", || {
        (!executions(&log).is_empty()).then_some(())
    });
    cluster.kill9(leader);
    let survivor = cluster.running()[0];
    let done = cluster.wait_job_done(survivor, job, Duration::from_secs(60));
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(done["node_states"]["finished"], 5, "{done}");
    let runs = once_each(&log, job);
    assert_eq!(runs.len(), 5, "every node ran: {runs:?}");
    // concurrency 1: no two runs overlap.
    let mut spans: Vec<(u128, u128)> = runs.values().cloned().collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "runs overlapped with concurrency 1: {spans:?}"
        );
    }
}

#[test]
fn agent_killed_mid_run_and_restarted_does_not_run_twice() {
    let mut cluster = Cluster::start(3, FAST);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 1.5, &[]);
    cluster.start_agent("solo", &script);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &["solo"]);
    let job = cluster.submit(leader, &["solo"], None);
    wait_until(Duration::from_secs(10), "the run to start", || {
        (!executions(&log).is_empty()).then_some(())
    });
    cluster.kill_agent("solo");
    std::thread::sleep(Duration::from_millis(300));
    cluster.restart_agent("solo");
    let done = cluster.wait_job_done(leader, job, Duration::from_secs(30));
    let starts = executions(&log)
        .iter()
        .filter(|e| e.0 == "start" && e.2 == job)
        .count();
    assert_eq!(starts, 1, "the run must not execute twice");
    // The agent died mid-run: the run is not lost — it ends errored with a reason.
    let (_, nodes) = cluster.get(leader, &format!("/jobs/{job}/nodes"));
    let node = &nodes["items"][0];
    assert!(
        matches!(node["state"].as_str(), Some("errored" | "finished")),
        "{done} {nodes}"
    );
}

#[test]
fn agent_that_never_returns_is_errored_as_unreachable() {
    let mut flags = FAST.to_vec();
    flags.extend(["--agent-timeout-secs", "2"]);
    let mut cluster = Cluster::start(3, &flags);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 30.0, &[]);
    cluster.start_agent("gone", &script);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &["gone"]);
    let job = cluster.submit(leader, &["gone"], None);
    wait_until(Duration::from_secs(10), "the run to start", || {
        (!executions(&log).is_empty()).then_some(())
    });
    cluster.kill_agent("gone");
    let done = cluster.wait_job_done(leader, job, Duration::from_secs(30));
    let (_, nodes) = cluster.get(leader, &format!("/jobs/{job}/nodes"));
    assert_eq!(nodes["items"][0]["state"], "errored", "{nodes}");
    assert!(
        nodes["items"][0]["details"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("unreachable"),
        "{nodes}"
    );
    assert_eq!(done["state"], "failed", "no node could run: the job failed");
}

#[test]
fn stop_mid_job_starts_nothing_new() {
    let mut cluster = Cluster::start(3, FAST);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 1.0, &[]);
    let names = ["s1", "s2", "s3"];
    for name in names {
        cluster.start_agent(name, &script);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &names);
    let job = cluster.submit(leader, &names, Some(1));
    wait_until(Duration::from_secs(10), "the first run", || {
        (!executions(&log).is_empty()).then_some(())
    });
    let (status, reply) = cluster.post(
        leader,
        "/command/stop",
        &format!(r#"{{"job":"{job}"}}"#),
        &[],
    );
    assert_eq!(status, 202, "{reply}");
    let done = cluster.wait_job_done(leader, job, Duration::from_secs(20));
    assert_eq!(done["state"], "stopped", "{done}");
    assert_eq!(done["node_states"]["skipped"], 2, "{done}");
    std::thread::sleep(Duration::from_millis(500));
    let starts = executions(&log).iter().filter(|e| e.0 == "start").count();
    assert_eq!(starts, 1, "nothing started after the stop");
}

#[test]
fn two_jobs_sharing_a_node_never_run_it_at_once() {
    let mut cluster = Cluster::start(3, FAST);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 0.8, &["bad"]);
    for name in ["shared", "bad"] {
        cluster.start_agent(name, &script);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &["shared", "bad"]);
    let first = cluster.submit(leader, &["shared"], None);
    let second = cluster.submit(leader, &["shared", "bad"], None);
    let a = cluster.wait_job_done(leader, first, Duration::from_secs(30));
    let b = cluster.wait_job_done(leader, second, Duration::from_secs(30));
    assert_eq!(a["node_states"]["finished"], 1);
    assert_eq!(b["node_states"]["failed"], 1, "{b}");
    assert_eq!(
        b["state"], "finished",
        "node failures still finish the job, as in PE"
    );
    let x = once_each(&log, first)["shared"];
    let y = once_each(&log, second)["shared"];
    assert!(
        x.1 <= y.0 || y.1 <= x.0,
        "shared node ran two jobs at once: {x:?} {y:?}"
    );
}
