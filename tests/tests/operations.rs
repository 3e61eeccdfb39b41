//! Operating a cluster: the Prometheus endpoint on every node after a job, and PE's status
//! API as a load balancer sees it — running everywhere, error on a node cut off from the
//! quorum (as leader and as follower).

use porch_tests::{Cluster, FAST, execution_logger, wait_until};
use serde_json::Value;
use std::time::Duration;

/// The value of the sample `series` (a name, or a name with its labels as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every `porch_*` metric name the Grafana dashboard's queries use.
fn dashboard_metrics() -> std::collections::BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/grafana/porch.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("porch_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    assert!(names.len() >= 10, "few metrics in the dashboard: {names:?}");
    names
}

fn scrape(cluster: &Cluster, id: u64) -> String {
    let response = cluster
        .http()
        .get(format!("{}/metrics", cluster.url(id)))
        .header("X-Authentication", &cluster.token)
        .send()
        .unwrap_or_else(|e| panic!("GET /metrics on node {id}: {e:?}"));
    assert_eq!(response.status().as_u16(), 200, "GET /metrics on node {id}");
    response.text().expect("a metrics body")
}

/// `GET path` without a token: (status, body as text).
fn get_plain(cluster: &Cluster, id: u64, path: &str) -> Option<(u16, String)> {
    let response = cluster
        .http()
        .get(format!("{}{path}", cluster.url(id)))
        .timeout(Duration::from_secs(3))
        .send()
        .ok()?;
    Some((response.status().as_u16(), response.text().ok()?))
}

fn simple_status(cluster: &Cluster, id: u64) -> Option<(u16, String)> {
    get_plain(cluster, id, "/status/v1/simple")
}

#[test]
fn every_node_exposes_metrics_that_reflect_the_cluster_and_a_job() {
    let mut cluster = Cluster::start(3, FAST);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 0.1, &[]);
    let names = ["m1", "m2"];
    for name in names {
        cluster.start_agent(name, &script);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &names);
    let job = cluster.submit(leader, &names, None);
    let done = cluster.wait_job_done(leader, job, Duration::from_secs(30));
    assert_eq!(done["state"], "finished", "{done}");

    let deploys = "porch_http_requests_total{route=\"/orchestrator/v1/command/deploy\",method=\"POST\",status=\"202\"}";
    let mut leaders = 0.0;
    let mut agents = 0.0;
    for id in cluster.running() {
        // Every node applies the job's end; a follower may be a moment behind the leader.
        let text = wait_until(
            Duration::from_secs(10),
            &format!("node {id}'s metrics to count the finished job"),
            || {
                let text = scrape(&cluster, id);
                (sample(&text, "porch_jobs{state=\"finished\"}") == Some(1.0)).then_some(text)
            },
        );
        let term = sample(&text, "porch_raft_term").expect("porch_raft_term");
        assert!(term >= 1.0, "node {id}: term {term}\n{text}");
        assert_eq!(
            sample(&text, "porch_raft_leader_id"),
            Some(leader as f64),
            "node {id}"
        );
        assert!(
            sample(&text, "porch_raft_applied_index").unwrap_or(0.0) >= 3.0,
            "node {id}:\n{text}"
        );
        assert_eq!(
            sample(&text, "porch_raft_in_touch_with_quorum"),
            Some(1.0),
            "node {id}"
        );
        assert_eq!(
            sample(&text, "porch_runs_in_flight"),
            Some(0.0),
            "node {id}"
        );
        assert!(
            sample(&text, "porch_raft_fsync_seconds_count").unwrap_or(0.0) >= 1.0,
            "node {id} made no fsync:\n{text}"
        );
        assert!(
            sample(&text, "porch_raft_append_to_durable_seconds_count").unwrap_or(0.0) >= 1.0,
            "node {id} appended nothing:\n{text}"
        );
        leaders += sample(&text, "porch_raft_is_leader").expect("porch_raft_is_leader");
        agents += sample(&text, "porch_agents_connected").expect("porch_agents_connected");
        if id == leader {
            assert_eq!(
                sample(&text, deploys),
                Some(1.0),
                "the deploy through node {id}:\n{text}"
            );
            assert!(
                sample(
                    &text,
                    "porch_http_request_duration_seconds_count{route=\"/orchestrator/v1/command/deploy\",method=\"POST\"}"
                ) == Some(1.0),
                "node {id}: no latency for the deploy:\n{text}"
            );
            assert!(
                sample(&text, "porch_http_requests_total{route=\"/orchestrator/v1/jobs/{id}\",method=\"GET\",status=\"200\"}")
                    .unwrap_or(0.0) >= 1.0,
                "node {id}: job reads are counted under the route template:\n{text}"
            );
        } else {
            assert_eq!(
                sample(&text, deploys),
                None,
                "node {id} took no deploy:\n{text}"
            );
        }
    }
    assert_eq!(leaders, 1.0, "exactly one node is leader");
    // The dashboard in the repository graphs only what a node exposes.
    let exposed = scrape(&cluster, leader);
    for name in dashboard_metrics() {
        assert!(
            exposed.lines().any(|line| line.starts_with(&name)),
            "ops/grafana/porch.json uses {name}, which the leader does not expose"
        );
    }
    assert_eq!(agents, names.len() as f64, "each agent has one session");

    // Without credentials: refused. With a bearer token, or a client certificate from the
    // Puppet CA (what a Prometheus server in a Puppet estate presents): served.
    let url = format!("{}/metrics", cluster.url(leader));
    let anonymous = cluster.http().get(&url).send().expect("GET /metrics");
    assert_eq!(anonymous.status().as_u16(), 401);
    let bearer = cluster
        .http()
        .get(&url)
        .header("Authorization", format!("Bearer {}", cluster.token))
        .send()
        .expect("GET /metrics");
    assert_eq!(bearer.status().as_u16(), 200);
    cluster.issue_cert("prometheus");
    let identity = porch_tls::TlsIdentity::load(porch_tls::TlsPaths::from_ssldir(
        &cluster.ssldir,
        "prometheus",
    ))
    .expect("the scraper's identity");
    let scraper = reqwest::blocking::Client::builder()
        .use_preconfigured_tls((*identity.http_client_config()).clone())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client with a certificate");
    let with_certificate = scraper.get(&url).send().expect("GET /metrics");
    assert_eq!(with_certificate.status().as_u16(), 200);
    assert!(with_certificate.text().unwrap().contains("porch_raft_term"));

    // The leader's followers die: it stays leader in its own eyes, but no quorum answers.
    for id in cluster.running() {
        if id != leader {
            cluster.kill9(id);
        }
    }
    wait_until(
        Duration::from_secs(10),
        "the leader left alone to report error",
        || (simple_status(&cluster, leader)? == (503, "error".to_string())).then_some(()),
    );
    let text = scrape(&cluster, leader);
    assert_eq!(
        sample(&text, "porch_raft_in_touch_with_quorum"),
        Some(0.0),
        "{text}"
    );
}

#[test]
fn status_is_running_on_every_node_and_error_on_a_node_cut_off_from_the_quorum() {
    let mut cluster = Cluster::start(3, FAST);
    for id in cluster.running() {
        wait_until(
            Duration::from_secs(10),
            &format!("node {id} to say running"),
            || (simple_status(&cluster, id)? == (200, "running".to_string())).then_some(()),
        );
        for service in ["orchestrator-service", "raft", "agent-sessions"] {
            assert_eq!(
                get_plain(&cluster, id, &format!("/status/v1/simple/{service}")),
                Some((200, "running".to_string())),
                "node {id}, {service}"
            );
        }
    }
    assert_eq!(
        get_plain(&cluster, 1, "/status/v1/simple/puppetdb-service"),
        Some((404, "not found: puppetdb-service".to_string()))
    );

    // JSON, without a token at info level; debug needs one.
    let (code, body) = get_plain(&cluster, 1, "/status/v1/services").expect("an answer");
    assert_eq!(code, 200, "{body}");
    let services: Value = serde_json::from_str(&body).expect("JSON");
    let raft = &services["raft"];
    assert_eq!(raft["state"], "running", "{services}");
    assert_eq!(raft["detail_level"], "info");
    assert_eq!(raft["service_status_version"], 1);
    assert!(
        raft["active_alerts"].as_array().is_some_and(Vec::is_empty),
        "{raft}"
    );
    assert!(raft["status"]["term"].as_u64() >= Some(1), "{raft}");
    assert_eq!(raft["status"]["voters"], serde_json::json!([1, 2, 3]));
    let (code, body) =
        get_plain(&cluster, 1, "/status/v1/services/raft?level=critical").expect("an answer");
    assert_eq!(code, 200, "{body}");
    let critical: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(critical["service_name"], "raft");
    assert_eq!(critical["status"], serde_json::json!({}));
    assert_eq!(
        get_plain(&cluster, 1, "/status/v1/services?level=debug").map(|(code, _)| code),
        Some(401)
    );
    let (code, debug) = cluster.request_as(
        reqwest::Method::GET,
        1,
        "/status/v1/services?level=debug",
        Some(&cluster.token),
        None,
    );
    assert_eq!(code, 200, "{debug}");
    assert_eq!(
        debug["raft"]["status"]["members"].as_array().map(Vec::len),
        Some(3),
        "{debug}"
    );
    assert_eq!(
        get_plain(&cluster, 1, "/status/v1/services?level=verbose").map(|(code, _)| code),
        Some(400)
    );

    // One follower down: two of three still make a quorum, nobody reports error.
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let follower = *cluster.running().iter().find(|id| **id != leader).unwrap();
    cluster.kill9(follower);
    std::thread::sleep(Duration::from_millis(1000));
    for id in cluster.running() {
        assert_eq!(
            simple_status(&cluster, id),
            Some((200, "running".to_string())),
            "node {id} with two of three members up"
        );
    }
    // Then the leader: the survivor is a follower that still remembers a leader.
    cluster.kill9(leader);
    let survivor = cluster.running()[0];
    wait_until(
        Duration::from_secs(10),
        "the survivor to report error",
        || (simple_status(&cluster, survivor)? == (503, "error".to_string())).then_some(()),
    );
    let (code, body) =
        get_plain(&cluster, survivor, "/status/v1/services/raft").expect("an answer");
    assert_eq!(code, 503, "{body}");
    let raft: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(raft["state"], "error");
    assert!(
        raft["active_alerts"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{raft}"
    );
}
