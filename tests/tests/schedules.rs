//! Scheduled jobs (issue 15) on a real 3-node TLS cluster: an every-2-s schedule keeps firing
//! through the leader's death, every occurrence is decided exactly once (one job or one
//! recorded skip), each job runs on its agent once and links back to its occurrence; deleting
//! the schedule stops it. Bad schedules get PE's errors naming the field.

use porch_tests::{Cluster, FAST, execution_logger, executions, wait_until};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

fn codedir() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lang/examples/code")
        .canonicalize()
        .expect("example code")
        .display()
        .to_string()
}

fn in_seconds(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(seconds)).to_string()
}

fn schedule_body(start_time: &str, every: Option<i64>, nodes: &[&str]) -> String {
    json!({
        "type": "deploy",
        "environment": "production",
        "input": {"scope": {"nodes": nodes}},
        "schedule": {
            "start_time": start_time,
            "interval": every.map(|value| json!({"units": "seconds", "value": value})),
        },
        "description": "every two seconds",
    })
    .to_string()
}

/// A 3-node cluster that writes the format with scheduled jobs.
fn start_cluster() -> Cluster {
    let code = codedir();
    let mut flags = FAST.to_vec();
    flags.extend(["--codedir", code.as_str()]);
    let cluster = Cluster::start(3, &flags);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_format_version(leader, porch_core::format_version::SCHEDULES_SINCE);
    cluster
}

/// Every (first, last, outcome, job) the schedule recorded, read through node `id`.
fn decisions(cluster: &Cluster, id: u64, schedule: &str) -> Vec<(u64, u64, String, Option<u64>)> {
    let (status, value) = cluster.get(id, &format!("/scheduled_jobs/environment_jobs/{schedule}"));
    assert_eq!(status, 200, "GET the schedule via node {id}: {value}");
    value["occurrences"]
        .as_array()
        .expect("occurrences")
        .iter()
        .map(|r| {
            (
                r["first_occurrence"].as_u64().unwrap_or(0),
                r["last_occurrence"].as_u64().unwrap_or(0),
                r["outcome"].as_str().unwrap_or("").to_string(),
                r["job"]["name"].as_str().and_then(|n| n.parse().ok()),
            )
        })
        .collect()
}

#[test]
fn every_occurrence_fires_exactly_once_through_a_leader_kill_and_delete_stops_it() {
    let mut cluster = start_cluster();
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 0.2, &[]);
    cluster.start_agent("sched1", &script);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &["sched1"]);

    let (status, reply) = cluster.post(
        leader,
        "/scheduled_jobs/environment_jobs",
        &schedule_body(&in_seconds(2), Some(2), &["sched1"]),
        &[],
    );
    assert_eq!(status, 200, "create the schedule: {reply}");
    let schedule = reply["scheduled_job"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    let path = format!("/scheduled_jobs/environment_jobs/{schedule}");
    let fired = |cluster: &Cluster, id: u64| -> u64 {
        let (_, value) = cluster.get(id, &path);
        value["fired_total"].as_u64().unwrap_or(0)
    };
    wait_until(Duration::from_secs(30), "three occurrences to fire", || {
        (fired(&cluster, leader) >= 3).then_some(())
    });

    cluster.kill9(leader);
    let survivor = if leader == 1 { 2 } else { 1 };
    let new_leader = cluster.wait_for_leader(Duration::from_secs(20));
    assert_ne!(new_leader, leader);
    let before = fired(&cluster, survivor);
    wait_until(
        Duration::from_secs(40),
        "three more occurrences under the new leader",
        || (fired(&cluster, survivor) >= before + 3).then_some(()),
    );
    let recorded = decisions(&cluster, survivor, &schedule);
    let mut expected = 1;
    for (first, last, _, _) in &recorded {
        assert_eq!(
            *first, expected,
            "decisions {recorded:?} leave a gap or overlap"
        );
        expected = last + 1;
    }

    let (status, reply) = cluster.delete(survivor, &path);
    assert_eq!(status, 204, "delete the schedule: {reply}");
    // The jobs it created, read from the job list (the schedule itself is gone now).
    let (_, jobs) = cluster.get(survivor, "/jobs");
    let job_ids: Vec<u64> = jobs["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|j| j["name"].as_str()?.parse().ok())
        .collect();
    let mut occurrences = BTreeSet::new();
    let mut scheduled_jobs = Vec::new();
    for job in job_ids {
        let detail = cluster.job(survivor, job);
        if detail["scheduled_job"]["name"].as_str() != Some(schedule.as_str()) {
            continue;
        }
        let occurrence = detail["scheduled_job"]["occurrence"].as_u64().unwrap_or(0);
        assert!(
            occurrences.insert(occurrence),
            "occurrence {occurrence} created two jobs (the second is job {job})"
        );
        scheduled_jobs.push(job);
    }
    assert!(
        scheduled_jobs.len() >= 6,
        "jobs of the schedule: {scheduled_jobs:?}"
    );

    // Deleted: no further job appears, and the schedule is unknown on every node.
    std::thread::sleep(Duration::from_secs(5));
    let (_, jobs) = cluster.get(survivor, "/jobs");
    let newest = jobs["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|j| j["name"].as_str()?.parse::<u64>().ok())
        .max();
    assert_eq!(
        newest,
        scheduled_jobs.iter().copied().max(),
        "a job appeared after the delete"
    );
    for id in cluster.running() {
        let (status, reply) = cluster.get(id, &path);
        assert_eq!(status, 404, "node {id}: {reply}");
    }
    let (status, reply) = cluster.delete(survivor, &path);
    assert_eq!(
        (status, reply["kind"].as_str()),
        (404, Some("puppetlabs.orchestrator/unknown-job"))
    );

    // Each job ended, and ran once on its agent.
    for job in &scheduled_jobs {
        cluster.wait_job_done(survivor, *job, Duration::from_secs(30));
    }
    let runs = executions(&log);
    for job in &scheduled_jobs {
        let starts = runs
            .iter()
            .filter(|(kind, _, j, _, _)| kind == "start" && j == job)
            .count();
        assert_eq!(starts, 1, "job {job} ran {starts} times on the agent");
    }
}

#[test]
fn overlapping_occurrences_are_skipped_and_bad_schedules_get_pe_errors() {
    let mut cluster = start_cluster();
    let log = cluster.dir.path().join("exec.log");
    // Runs of 3 s under a 1 s interval: occurrences overlap and must be skipped, recorded.
    let script = execution_logger(cluster.dir.path(), &log, 3.0, &[]);
    cluster.start_agent("slow1", &script);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &["slow1"]);
    let (status, reply) = cluster.post(
        leader,
        "/scheduled_jobs/environment_jobs",
        &schedule_body(&in_seconds(1), Some(1), &["slow1"]),
        &[],
    );
    assert_eq!(status, 200, "{reply}");
    let schedule = reply["scheduled_job"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    let recorded = wait_until(
        Duration::from_secs(30),
        "a second job after skips for overlap",
        || {
            let d = decisions(&cluster, 2, &schedule);
            let fired = d.iter().filter(|(_, _, o, _)| o == "fired").count();
            let skipped = d.iter().any(|(_, _, o, _)| o == "skipped");
            (fired >= 2 && skipped).then_some(d)
        },
    );
    let mut expected = 1;
    for (first, last, _, _) in &recorded {
        assert_eq!(
            *first, expected,
            "decisions {recorded:?} leave a gap or overlap"
        );
        expected = last + 1;
    }
    let (status, reply) =
        cluster.delete(2, &format!("/scheduled_jobs/environment_jobs/{schedule}"));
    assert_eq!(status, 204, "{reply}");
    // No two of its runs overlapped on the agent.
    let runs = executions(&log);
    let mut spans: Vec<(u128, u128)> = Vec::new();
    for (kind, _, job, _, time) in &runs {
        if kind == "start" {
            let end = runs
                .iter()
                .find(|(k, _, j, _, _)| k == "end" && j == job)
                .map(|r| r.4)
                .unwrap_or(u128::MAX);
            spans.push((*time, end));
        }
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two runs of the schedule overlapped: {spans:?}"
        );
    }

    let post = |body: String| -> (u16, Value) {
        cluster.post(2, "/scheduled_jobs/environment_jobs", &body, &[])
    };
    let body = |every: Option<i64>| -> Value {
        serde_json::from_str(&schedule_body(&in_seconds(60), every, &["slow1"])).expect("json")
    };
    let (status, reply) = post(schedule_body("2020-01-01T00:00:00Z", None, &["slow1"]));
    assert_eq!(
        (status, reply["kind"].as_str()),
        (400, Some("puppetlabs.orchestrator/invalid-time")),
        "{reply}"
    );
    assert!(
        reply["msg"]
            .as_str()
            .unwrap_or("")
            .contains("schedule.start_time")
    );
    for value in [0, -3] {
        let (status, reply) = post(body(Some(value)).to_string());
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply["msg"]
                .as_str()
                .unwrap_or("")
                .contains("schedule.interval.value"),
            "{reply}"
        );
    }
    let mut unknown_env = body(None);
    unknown_env["environment"] = json!("nowhere");
    let (status, reply) = post(unknown_env.to_string());
    assert_eq!(
        (status, reply["kind"].as_str()),
        (404, Some("puppetlabs.orchestrator/unknown-environment")),
        "{reply}"
    );
    let mut bad_type = body(None);
    bad_type["type"] = json!("reboot");
    let (status, reply) = post(bad_type.to_string());
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["msg"].as_str().unwrap_or("").contains("'type'"),
        "{reply}"
    );
    let mut bad_input = body(None);
    bad_input["input"] = json!({"scope": {"nodes": ["a"]}, "noop": true, "no_noop": true});
    let (status, reply) = post(bad_input.to_string());
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["msg"].as_str().unwrap_or("").starts_with("'input'"),
        "{reply}"
    );
    let (status, reply) = cluster.delete(2, "/scheduled_jobs/environment_jobs/999");
    assert_eq!(
        (status, reply["kind"].as_str()),
        (404, Some("puppetlabs.orchestrator/unknown-job")),
        "{reply}"
    );
}

/// Runs `puppet-job ARGS`, or `porch schedule ARGS` for `program` "porch" (whose client
/// flags follow the subcommand).
fn client(cluster: &Cluster, program: &str, args: &[&str]) -> (Option<i32>, String) {
    let bin = porch_tests::porch_bin().with_file_name(program);
    let mut command = std::process::Command::new(bin);
    if program == "porch" {
        command.arg("schedule");
    }
    let output = command
        .arg("--service-url")
        .arg(cluster.urls())
        .args(cluster.client_flags())
        .args(args)
        .env("HOME", cluster.dir.path())
        .output()
        .expect("run the client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn the_cli_schedules_a_job_and_lists_shows_and_deletes_schedules() {
    let cluster = start_cluster();
    let (code, out) = client(
        &cluster,
        "puppet-job",
        &["run", "--nodes", "ghost1", "--schedule-at", "+2s"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("Scheduled job 1 created: first run at"),
        "{out}"
    );
    let (code, out) = client(
        &cluster,
        "puppet-job",
        &[
            "run",
            "--nodes",
            "ghost2",
            "--schedule-at",
            "+1h",
            "--every",
            "3600",
            "--skip-missed",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = client(&cluster, "porch", &["list"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("NEXT RUN") && out.contains("1h"), "{out}");
    let (code, out) = client(&cluster, "porch", &["show", "2"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("skip") && out.contains("ghost2"), "{out}");
    // The one-off fires: its job shows the schedule it came from.
    let job = wait_until(Duration::from_secs(20), "the one-off to fire", || {
        let (_, schedule) = cluster.get(1, "/scheduled_jobs/environment_jobs/1");
        schedule["last_run"]["job"]["name"]
            .as_str()
            .map(str::to_string)
    });
    let (code, out) = client(&cluster, "puppet-job", &["show", &job]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("scheduled job 1, occurrence 1"), "{out}");
    let (code, out) = client(&cluster, "porch", &["delete", "2"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = client(&cluster, "porch", &["show", "2"]);
    assert_eq!(code, Some(6), "an unknown schedule: {out}");
    let (code, out) = client(
        &cluster,
        "puppet-job",
        &[
            "run",
            "--nodes",
            "ghost3",
            "--schedule-at",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, Some(2), "a schedule in the past is refused: {out}");
    assert!(out.contains("schedule.start_time"), "{out}");
}
