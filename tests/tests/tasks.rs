//! Tasks on real agents over mutual TLS: a task script from the environment's modules runs on
//! each targeted agent with its parameters intact (stdin and `PT_*` variables), its output is
//! each node's `result`; a wrong parameter is a 400 and nothing runs; a task file changed
//! between plan and run errors the node and runs nothing; a role may run only the tasks it
//! names; `GET /jobs` filters by job type and task name.

use porch_tests::{Cluster, FAST};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// `environments/production/modules/probe/tasks/` with the test's tasks; `marks` is where the
/// `marker` task leaves a file per run (proof that it ran).
fn code(dir: &Path, marks: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tasks = dir.join("code/environments/production/modules/probe/tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    std::fs::create_dir_all(marks).unwrap();
    let write = |name: &str, body: &str| {
        let path = tasks.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // Echoes what it got: stdin as JSON, and two parameters as the environment carries them.
    write(
        "init.sh",
        "#!/bin/sh\nstdin=$(cat)\nprintf '{\"stdin\": %s, \"env_message\": \"%s\", \"env_count\": \"%s\", \"task\": \"%s\"}' \"$stdin\" \"$PT_message\" \"$PT_count\" \"$PT__task\"\n",
    );
    write(
        "init.json",
        r#"{"description": "Echoes its input", "parameters": {
            "message": {"type": "String[1]"},
            "count": {"type": "Integer[0, 10]"},
            "note": {"type": "Optional[String]"},
            "tags": {"type": "Array[String]", "default": []}
        }}"#,
    );
    write(
        "marker.sh",
        &format!(
            "#!/bin/sh\ntouch {}/$(hostname)-$$\necho marked\n",
            marks.display()
        ),
    );
    write("sleeper.sh", "#!/bin/sh\nsleep 2\necho slept\n");
    tasks
}

fn run_task(cluster: &Cluster, node: u64, token: &str, body: &Value) -> (u16, Value) {
    cluster.request_as(
        Method::POST,
        node,
        "/orchestrator/v1/command/task",
        Some(token),
        Some(body),
    )
}

fn job_id(reply: &Value) -> u64 {
    reply["job"]["name"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no job in {reply}"))
}

fn node_results(cluster: &Cluster, node: u64, job: u64) -> Vec<Value> {
    let (status, nodes) = cluster.get(node, &format!("/jobs/{job}/nodes"));
    assert_eq!(status, 200, "{nodes}");
    nodes["items"].as_array().cloned().unwrap_or_default()
}

fn marks(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

struct Setup {
    cluster: Cluster,
    /// Holds the code dir and the marks for as long as the test runs.
    _scratch: tempfile::TempDir,
    tasks: PathBuf,
    marks: PathBuf,
    leader: u64,
}

fn setup(agents: &[&str]) -> Setup {
    let scratch_dir = tempfile::tempdir().unwrap();
    let scratch = scratch_dir.path().to_path_buf();
    let marks = scratch.join("marks");
    let tasks = code(&scratch, &marks);
    let codedir = scratch.join("code").display().to_string();
    let mut flags: Vec<&str> = FAST.to_vec();
    flags.extend(["--codedir", codedir.as_str()]);
    let mut cluster = Cluster::start(3, &flags);
    // The runner is never used for tasks; a missing command would fail a Puppet run loudly.
    let unused = scratch.join("no-puppet-runs");
    for agent in agents {
        cluster.start_agent(agent, &unused);
    }
    let leader = cluster.wait_for_leader(WAIT);
    cluster.wait_agents_connected(leader, agents);
    Setup {
        cluster,
        _scratch: scratch_dir,
        tasks,
        marks,
        leader,
    }
}

#[test]
fn a_task_runs_on_every_agent_with_its_parameters_intact_on_stdin_and_in_the_environment() {
    let Setup {
        cluster,
        leader,
        _scratch: _code,
        ..
    } = setup(&["a1", "a2"]);
    let params = json!({"message": "héllo wörld", "count": 3, "note": "a \"quoted\" \\ note ✓"});
    let body = json!({"environment": "production", "task": "probe", "params": params,
        "scope": {"nodes": ["a1", "a2"]}, "description": "echo test"});
    let (status, reply) = run_task(&cluster, leader, &cluster.token, &body);
    assert_eq!(status, 202, "{reply}");
    let job = job_id(&reply);
    let follower = if leader == 1 { 2 } else { 1 };
    let done = cluster.wait_job_done(follower, job, WAIT);
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(done["type"], "task");
    assert_eq!(done["options"]["task"], "probe");
    let items = node_results(&cluster, follower, job);
    assert_eq!(items.len(), 2);
    for item in items {
        assert_eq!(item["state"], "finished", "{item}");
        let result = &item["result"];
        let mut expected = params.clone();
        expected["tags"] = json!([]);
        expected["_task"] = json!("probe");
        assert_eq!(result["stdin"], expected, "stdin of {}", item["name"]);
        assert_eq!(result["env_message"], "héllo wörld");
        assert_eq!(result["env_count"], "3");
        assert_eq!(result["task"], "probe");
    }
}

#[test]
fn a_wrong_parameter_or_an_unknown_task_is_refused_before_any_node_runs() {
    let Setup {
        cluster,
        leader,
        marks: marked,
        _scratch: _code,
        ..
    } = setup(&["a1"]);
    let (_, before) = cluster.get(leader, "/jobs");
    let wrong = json!({"task": "probe", "params": {"message": "x", "count": "three"},
        "scope": {"nodes": ["a1"]}});
    let (status, reply) = run_task(&cluster, leader, &cluster.token, &wrong);
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["kind"], "puppetlabs.orchestrator/invalid-params");
    assert_eq!(reply["details"]["parameter"], "count");
    assert!(
        reply["msg"].as_str().unwrap().contains("Integer[0, 10]"),
        "{reply}"
    );
    let missing = json!({"task": "probe", "params": {"count": 1}, "scope": {"nodes": ["a1"]}});
    let (status, reply) = run_task(&cluster, leader, &cluster.token, &missing);
    assert_eq!(
        (status, reply["details"]["parameter"].clone()),
        (400, json!("message"))
    );
    let unknown = json!({"task": "probe::nothing", "params": {}, "scope": {"nodes": ["a1"]}});
    let (status, reply) = run_task(&cluster, leader, &cluster.token, &unknown);
    assert_eq!(status, 404, "{reply}");
    assert_eq!(reply["kind"], "puppetlabs.orchestrator/unknown-task");
    let (_, after) = cluster.get(leader, "/jobs");
    assert_eq!(
        before["pagination"]["total"], after["pagination"]["total"],
        "a refused request created a job"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(marks(&marked), 0, "something ran");
    // The catalogue endpoints see the same tasks.
    let (status, list) = cluster.get(leader, "/tasks?environment=production");
    assert_eq!(status, 200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, vec!["probe", "probe::marker", "probe::sleeper"]);
    let (status, shown) = cluster.get(leader, "/tasks/probe/init");
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["files"][0]["filename"], "init.sh");
    assert_eq!(shown["files"][0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        shown["metadata"]["parameters"]["count"]["type"],
        "Integer[0, 10]"
    );
}

#[test]
fn a_task_file_changed_between_plan_and_run_errors_the_node_and_runs_nothing() {
    let Setup {
        cluster,
        leader,
        tasks,
        marks: marked,
        _scratch: _code,
    } = setup(&["a1"]);
    // a1 is busy with the sleeper while the marker job waits for it, planned with the
    // marker's current hash; the file changes before a1 gets to it.
    let sleeper = json!({"task": "probe::sleeper", "params": {}, "scope": {"nodes": ["a1"]}});
    let (status, reply) = run_task(&cluster, leader, &cluster.token, &sleeper);
    assert_eq!(status, 202, "{reply}");
    let first = job_id(&reply);
    let marker = json!({"task": "probe::marker", "params": {}, "scope": {"nodes": ["a1"]}});
    let (status, reply) = run_task(&cluster, leader, &cluster.token, &marker);
    assert_eq!(status, 202, "{reply}");
    let second = job_id(&reply);
    let script = tasks.join("marker.sh");
    let mut text = std::fs::read_to_string(&script).unwrap();
    text.push_str("# changed after the job was planned\n");
    std::fs::write(&script, text).unwrap();
    assert_eq!(
        cluster.wait_job_done(leader, first, WAIT)["state"],
        "finished"
    );
    let done = cluster.wait_job_done(leader, second, WAIT);
    let items = node_results(&cluster, leader, second);
    assert_eq!(items[0]["state"], "errored", "{done} {items:?}");
    let error = items[0]["result"]["_error"]["msg"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("changed since the job was planned"),
        "the node's error: {error}"
    );
    assert_eq!(marks(&marked), 0, "the changed task ran");
    // A job planned now runs the new file.
    let (status, reply) = run_task(&cluster, leader, &cluster.token, &marker);
    assert_eq!(status, 202, "{reply}");
    let third = cluster.wait_job_done(leader, job_id(&reply), WAIT);
    assert_eq!(third["state"], "finished", "{third}");
    assert_eq!(marks(&marked), 1);
}

#[test]
fn a_role_runs_only_the_tasks_it_names() {
    let Setup {
        cluster,
        leader,
        _scratch: _code,
        ..
    } = setup(&["a1"]);
    let role = json!({"name": "probe-runner",
        "permissions": [{"permission": "view"}, {"permission": "run_task", "tasks": ["probe"]}]});
    let (status, reply) = cluster.request_as(
        Method::POST,
        leader,
        "/rbac-api/v1/roles",
        Some(&cluster.token),
        Some(&role),
    );
    assert_eq!(status, 201, "{reply}");
    let user = json!({"login": "tess", "password": "tess-Pw-12345678", "roles": ["probe-runner"]});
    let (status, reply) = cluster.request_as(
        Method::POST,
        leader,
        "/rbac-api/v1/users",
        Some(&cluster.token),
        Some(&user),
    );
    assert_eq!(status, 201, "{reply}");
    let tess = cluster
        .login(leader, "tess", "tess-Pw-12345678", "1h")
        .unwrap_or_else(|e| panic!("tess logs in: {e:?}"));
    let allowed = json!({"task": "probe", "params": {"message": "hi", "count": 1},
        "scope": {"nodes": ["a1"]}});
    let (status, reply) = run_task(&cluster, leader, &tess, &allowed);
    assert_eq!(status, 202, "{reply}");
    let done = cluster.wait_job_done(leader, job_id(&reply), WAIT);
    assert_eq!(done["owner"]["login"], "tess");
    let other = json!({"task": "probe::marker", "params": {}, "scope": {"nodes": ["a1"]}});
    let (status, reply) = run_task(&cluster, leader, &tess, &other);
    assert_eq!(status, 403, "{reply}");
    assert_eq!(reply["kind"], "puppetlabs.rbac/permission-denied");
    assert!(
        reply["msg"].as_str().unwrap().contains("probe::marker"),
        "{reply}"
    );
    let (status, reply) = cluster.request_as(
        Method::POST,
        leader,
        "/orchestrator/v1/command/deploy",
        Some(&tess),
        Some(&json!({"environment": "production", "scope": {"nodes": ["a1"]}})),
    );
    assert_eq!(status, 403, "a task role runs no Puppet: {reply}");
}

fn puppet_task(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(porch_tests::porch_bin().with_file_name("puppet-task"))
        .arg("--service-url")
        .arg(cluster.urls())
        .args(cluster.client_flags())
        .args(args)
        .env("HOME", cluster.dir.path())
        .output()
        .expect("run puppet-task")
}

#[test]
fn puppet_task_runs_shows_and_exits_with_the_outcome() {
    let Setup {
        cluster,
        _scratch: _code,
        ..
    } = setup(&["a1", "a2"]);
    let ran = puppet_task(
        &cluster,
        &[
            "run",
            "probe",
            "message=from the cli",
            "count=2",
            "--nodes",
            "a1,a2",
        ],
    );
    let out = String::from_utf8_lossy(&ran.stdout).into_owned();
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(out.contains("New job ID: "), "{out}");
    assert!(out.contains("Nodes: 2"), "{out}");
    assert!(out.contains("Finished on node a1"), "{out}");
    assert!(out.contains("\"env_message\": \"from the cli\""), "{out}");
    assert!(out.contains("Job completed. 2/2 nodes succeeded."), "{out}");
    let refused = puppet_task(&cluster, &["run", "probe", "count=eleven", "--nodes", "a1"]);
    assert_eq!(refused.status.code(), Some(2), "a 400 is exit code 2");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("count"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let shown = puppet_task(&cluster, &["show", "probe"]);
    let out = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert_eq!(shown.status.code(), Some(0), "{out}");
    assert!(out.starts_with("probe - Echoes its input"), "{out}");
    assert!(out.contains("- count : Integer[0, 10]"), "{out}");
    let listed = puppet_task(&cluster, &["show"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("probe::sleeper"));
}

/// The jobs a schedule's occurrences created so far, oldest first, read through `node`.
fn schedule_jobs(cluster: &Cluster, node: u64, schedule: &str) -> Vec<u64> {
    let (status, value) = cluster.get(
        node,
        &format!("/scheduled_jobs/environment_jobs/{schedule}"),
    );
    assert_eq!(status, 200, "{value}");
    value["occurrences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["job"]["name"].as_str().and_then(|n| n.parse().ok()))
        .collect()
}

#[test]
fn a_scheduled_task_runs_with_its_parameters_and_each_occurrence_runs_the_code_of_its_time() {
    let Setup {
        cluster,
        leader,
        tasks,
        _scratch: _code,
        ..
    } = setup(&["a1"]);
    cluster.wait_format_version(leader, porch_core::format_version::SCHEDULES_SINCE);
    let start =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(1))
            .to_string();
    let schedule_of = |task: &str, params: Value| {
        json!({"type": "task", "environment": "production",
            "input": {"task": task, "params": params, "scope": {"nodes": ["a1"]}},
            "schedule": {"start_time": start, "interval": {"units": "seconds", "value": 2}}})
    };
    let params = json!({"message": "tâche planifiée ✓", "count": 7});
    let (status, reply) = cluster.request_as(
        Method::POST,
        leader,
        "/orchestrator/v1/scheduled_jobs/environment_jobs",
        Some(&cluster.token),
        Some(&schedule_of("probe", params.clone())),
    );
    assert_eq!(status, 200, "{reply}");
    let schedule = reply["scheduled_job"]["name"].as_str().unwrap().to_string();
    let (_, shown) = cluster.get(
        leader,
        &format!("/scheduled_jobs/environment_jobs/{schedule}"),
    );
    assert_eq!(shown["type"], "task", "{shown}");
    assert_eq!(shown["input"]["task"], "probe", "{shown}");

    let first = porch_tests::wait_until(WAIT, "a first occurrence", || {
        schedule_jobs(&cluster, leader, &schedule).first().copied()
    });
    let done = cluster.wait_job_done(leader, first, WAIT);
    assert_eq!(done["type"], "task", "{done}");
    let result = &node_results(&cluster, leader, first)[0]["result"];
    assert_eq!(result["stdin"]["message"], params["message"], "{result}");
    assert_eq!(result["stdin"]["count"], 7, "{result}");
    assert!(result.get("version").is_none(), "{result}");

    // New code: later occurrences run it (checked again at each), never an error for a hash
    // that changed since the schedule was made.
    let script = tasks.join("init.sh");
    let text = std::fs::read_to_string(&script)
        .unwrap()
        .replace("{\"stdin\"", "{\"version\": 2, \"stdin\"");
    assert!(text.contains("version"), "the test's edit applies: {text}");
    std::fs::write(&script, text).unwrap();
    let changed_after = *schedule_jobs(&cluster, leader, &schedule).last().unwrap();
    let later = porch_tests::wait_until(WAIT, "an occurrence planned after the change", || {
        schedule_jobs(&cluster, leader, &schedule)
            .into_iter()
            .find(|job| *job > changed_after + 1)
    });
    let done = cluster.wait_job_done(leader, later, WAIT);
    assert_eq!(done["state"], "finished", "{done}");
    let result = &node_results(&cluster, leader, later)[0]["result"];
    assert_eq!(result["version"], 2, "{result}");
    assert_eq!(result["stdin"]["message"], params["message"], "{result}");

    let (status, _) = cluster.delete(
        leader,
        &format!("/scheduled_jobs/environment_jobs/{schedule}"),
    );
    assert_eq!(status, 204);

    // Wrong parameters or an unknown task: refused as `POST /command/task` refuses them.
    for (body, expected_status, kind) in [
        (
            schedule_of("probe", json!({"message": "x", "count": 11})),
            400,
            "puppetlabs.orchestrator/invalid-params",
        ),
        (
            schedule_of("probe::nosuch", json!({})),
            404,
            "puppetlabs.orchestrator/unknown-task",
        ),
    ] {
        let (status, reply) = cluster.request_as(
            Method::POST,
            leader,
            "/orchestrator/v1/scheduled_jobs/environment_jobs",
            Some(&cluster.token),
            Some(&body),
        );
        assert_eq!(status, expected_status, "{reply}");
        assert_eq!(reply["kind"], kind, "{reply}");
    }
}

/// Job ids of a `GET /jobs` listing, and its `pagination.total`.
fn listed(cluster: &Cluster, node: u64, query: &str) -> (Vec<u64>, u64) {
    let (status, list) = cluster.get(node, &format!("/jobs?{query}"));
    assert_eq!(status, 200, "/jobs?{query}: {list}");
    let ids = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().parse().unwrap())
        .collect();
    (ids, list["pagination"]["total"].as_u64().unwrap())
}

#[test]
fn jobs_are_listed_by_type_and_by_part_of_a_task_name_and_bad_filters_are_named() {
    let Setup {
        cluster,
        leader,
        _scratch: _code,
        ..
    } = setup(&["a1"]);
    let echo = json!({"task": "probe", "params": {"message": "m", "count": 1},
        "scope": {"nodes": ["a1"]}});
    let marker = json!({"task": "probe::marker", "params": {}, "scope": {"nodes": ["a1"]}});
    let (status, reply) = run_task(&cluster, leader, &cluster.token, &echo);
    assert_eq!(status, 202, "{reply}");
    let echo_job = job_id(&reply);
    let deploy_job = cluster.submit(leader, &["a1"], None);
    let (status, reply) = run_task(&cluster, leader, &cluster.token, &marker);
    assert_eq!(status, 202, "{reply}");
    let marker_job = job_id(&reply);
    let follower = if leader == 1 { 2 } else { 1 };
    let by_id = "order_by=name&order=asc";
    assert_eq!(
        listed(&cluster, follower, by_id),
        (vec![echo_job, deploy_job, marker_job], 3)
    );
    assert_eq!(
        listed(&cluster, follower, &format!("type=task&{by_id}")),
        (vec![echo_job, marker_job], 2)
    );
    assert_eq!(
        listed(&cluster, follower, "type=deploy"),
        (vec![deploy_job], 1)
    );
    assert_eq!(listed(&cluster, follower, "type=plan_task"), (vec![], 0));
    // Partial matches, as PE's: `probe` is in both task names, `mark` in one.
    assert_eq!(
        listed(&cluster, follower, &format!("task=probe&{by_id}")),
        (vec![echo_job, marker_job], 2)
    );
    assert_eq!(
        listed(&cluster, follower, "type=task&task=mark"),
        (vec![marker_job], 1)
    );
    assert_eq!(listed(&cluster, follower, "task=nothing"), (vec![], 0));
    // Filters, then the page: the total counts every job that matches.
    assert_eq!(
        listed(
            &cluster,
            follower,
            &format!("task=probe&limit=1&offset=1&{by_id}")
        ),
        (vec![marker_job], 2)
    );
    for (query, parameter) in [
        ("type=plan", "'type'"),
        ("type=", "'type'"),
        ("task=", "'task'"),
        ("task=Probe", "'task'"),
        ("type=deploy&task=probe", "'task'"),
    ] {
        let (status, reply) = cluster.get(follower, &format!("/jobs?{query}"));
        assert_eq!(status, 400, "/jobs?{query}: {reply}");
        assert_eq!(reply["kind"], "puppetlabs.validators/validation-error");
        assert!(
            reply["msg"].as_str().unwrap().contains(parameter),
            "/jobs?{query} should name {parameter}: {reply}"
        );
    }
}
