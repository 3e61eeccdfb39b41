//! Topology across datacenters with real processes over mutual TLS: a learner (non-voting
//! member) that replicates, serves reads and an agent session but never counts toward a
//! quorum, and is promoted; datacenter labels; leadership transfer; draining a node's agents
//! before maintenance with every run still executed exactly once.

use porch_tests::{Cluster, FAST, execution_logger, executions, poll_until, wait_until};
use serde_json::{Value, json};
use std::time::Duration;

/// The member `id` of `GET /cluster` (asked through node `via`).
fn member(cluster: &Cluster, via: u64, id: u64) -> Option<Value> {
    let (status, members) = cluster.get(via, "/cluster");
    if status != 200 {
        return None;
    }
    members["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
}

fn voters(cluster: &Cluster, via: u64) -> Vec<u64> {
    let (_, members) = cluster.get(via, "/cluster");
    members["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["voter"] == true)
        .filter_map(|m| m["id"].as_u64())
        .collect()
}

fn applied(cluster: &Cluster, id: u64) -> u64 {
    cluster
        .status(id)
        .and_then(|s| s["last_applied_index"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_learner_serves_reads_and_agents_never_counts_toward_quorum_and_can_be_promoted() {
    let mut cluster = Cluster::start(3, FAST);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let before = cluster.submit(leader, &["before-learner"], None);
    let mut flags = FAST.to_vec();
    flags.extend(["--datacenter", "remote-dc"]);
    let addr = cluster.start_extra_node(4, &flags);
    let add = json!({"id": 4, "addr": addr, "learner": true}).to_string();
    let (status, reply) = cluster.post(2, "/cluster/members", &add, &[]);
    assert_eq!(status, 200, "{reply}");

    // Bad input: adding it again, leadership to a learner, promoting a non-member.
    let (status, reply) = cluster.post(1, "/cluster/members", &add, &[]);
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["msg"]
            .as_str()
            .unwrap_or("")
            .contains("already a learner"),
        "{reply}"
    );
    let (status, reply) = cluster.post(3, "/cluster/leader", r#"{"id": 4}"#, &[]);
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["msg"].as_str().unwrap_or("").contains("is a learner"),
        "{reply}"
    );
    let (status, reply) = cluster.post(1, "/cluster/members/9/promote", "{}", &[]);
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["msg"].as_str().unwrap_or("").contains("not a member"),
        "{reply}"
    );
    assert_eq!(
        voters(&cluster, 1),
        vec![1, 2, 3],
        "bad input changed the voters"
    );

    // The learner labels itself with its --datacenter, and reports itself a learner.
    let learner = wait_until(
        Duration::from_secs(20),
        "node 4 labelled, as a learner",
        || {
            member(&cluster, 4, 4)
                .filter(|m| m["datacenter"] == "remote-dc" && m["role"] == "learner")
        },
    );
    assert_eq!(learner["voter"], false, "{learner}");
    assert!(learner["disk_bytes"].as_u64().unwrap_or(0) > 0, "{learner}");
    assert!(learner["last_contact_ms"].is_u64(), "{learner}");

    // Reads at the learner are linearizable: the job from before, and a write through the
    // learner (forwarded to the leader) is read back from it at once.
    assert_eq!(cluster.job(4, before)["name"], before.to_string());
    let through_learner = cluster.submit(4, &["via-learner"], None);
    assert_eq!(
        cluster.job(4, through_learner)["name"],
        through_learner.to_string()
    );

    // An agent that knows only the learner keeps its session there and runs a job.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let script = execution_logger(dir.path(), &log, 0.1, &[]);
    cluster.start_agent_via("dc2-web", &script, &[4]);
    cluster.wait_agents_connected(4, &["dc2-web"]);
    let (_, item) = cluster.get(1, "/inventory/dc2-web");
    assert_eq!(item["orchestrator_node"], 4, "{item}");
    let job = cluster.submit(4, &["dc2-web"], None);
    let done = cluster.wait_job_done(4, job, Duration::from_secs(30));
    assert_eq!(done["state"], "finished", "{done}");

    // It keeps up: applied as far as the leader.
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let target = applied(&cluster, leader);
    wait_until(Duration::from_secs(10), "the learner to catch up", || {
        (applied(&cluster, 4) >= target).then_some(())
    });

    // Two voters down: one voter and the learner are no quorum, so nothing commits.
    let survivor = 3;
    cluster.kill9(1);
    cluster.kill9(2);
    for via in [survivor, 4] {
        let body = json!({"environment": "production", "scope": {"nodes": ["no-quorum"]}});
        let (status, reply) = cluster.post(via, "/command/deploy", &body.to_string(), &[]);
        assert_eq!(
            status, 503,
            "a write through node {via} without a quorum: {reply}"
        );
    }
    cluster.restart(1);
    cluster.restart(2);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    assert!(leader != 4, "the learner leads");

    // Promoted, it votes.
    let (status, reply) = cluster.post(leader, "/cluster/members/4/promote", "{}", &[]);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(voters(&cluster, 4), vec![1, 2, 3, 4]);
    let (status, reply) = cluster.post(leader, "/cluster/members/4/promote", "{}", &[]);
    assert_eq!(status, 400, "promoting a voter: {reply}");
    let after = cluster.submit(4, &["after-promotion"], None);
    assert_eq!(cluster.job(1, after)["name"], after.to_string());
}

#[test]
fn transfer_leader_moves_leadership_and_refuses_non_members() {
    let mut cluster = Cluster::start(3, FAST);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let target = (1..=3).find(|&id| id != leader).unwrap();
    let body = json!({"id": target}).to_string();
    // Asked through the third node: the request reaches the leader wherever it is.
    let via = (1..=3).find(|&id| id != leader && id != target).unwrap();
    let (status, reply) = cluster.post(via, "/cluster/leader", &body, &[]);
    assert_eq!(status, 200, "{reply}");
    let now = cluster.wait_for_leader(Duration::from_secs(10));
    assert_eq!(now, target, "leadership did not move to node {target}");
    let job = cluster.submit(via, &["after-transfer"], None);
    assert_eq!(cluster.job(leader, job)["name"], job.to_string());

    // A removed member and an unknown id are refused, and leadership stays.
    let (status, reply) = cluster.delete(target, &format!("/cluster/members/{via}"));
    assert_eq!(status, 200, "{reply}");
    cluster.kill9(via);
    for id in [via, 42] {
        let (status, reply) = cluster.post(
            target,
            "/cluster/leader",
            &json!({"id": id}).to_string(),
            &[],
        );
        assert_eq!(status, 400, "transfer to {id}: {reply}");
        assert!(
            reply["msg"].as_str().unwrap_or("").contains("not a member"),
            "{reply}"
        );
    }
    assert_eq!(cluster.wait_for_leader(Duration::from_secs(10)), target);
}

/// A leader carries out one membership change at a time: while a transfer waits for its target
/// to answer (here down for longer than an election timeout, so the leader never hands over),
/// another change is refused naming the transfer; once the transfer gives up, the target's
/// removal goes through and the same leader still commits writes.
#[test]
fn a_membership_change_is_refused_while_a_transfer_is_carried_out() {
    let mut cluster = Cluster::start(3, FAST);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let target = (1..=3).find(|&id| id != leader).unwrap();
    let other = (1..=3).find(|&id| id != leader && id != target).unwrap();
    cluster.kill9(target);
    std::thread::sleep(Duration::from_secs(1));
    let cluster = &cluster;
    std::thread::scope(|scope| {
        let transfer = scope.spawn(move || {
            cluster.post(
                other,
                "/cluster/leader",
                &json!({"id": target}).to_string(),
                &[],
            )
        });
        // The transfer waits up to 5 s for its target. Meanwhile another change is refused,
        // naming the transfer: asked again until it is (an undrain of a member not draining
        // changes nothing when it goes through before the transfer has begun).
        let undrain = format!("/cluster/members/{other}/undrain");
        let refused = poll_until(Duration::from_secs(4), || {
            let (status, reply) = cluster.post(other, &undrain, "{}", &[]);
            (status == 400).then_some(reply)
        })
        .expect("a change asked while the transfer waits is refused");
        let msg = refused["msg"].as_str().unwrap_or("");
        assert!(
            msg.contains("in progress")
                && msg.contains(&format!("handing leadership to node {target}")),
            "{refused}"
        );
        let (status, reply) = transfer.join().expect("the transfer request");
        assert_eq!(status, 400, "a transfer to a node that is down: {reply}");
        assert!(
            reply["msg"].as_str().unwrap_or("").contains("answered"),
            "the transfer refuses before handing over: {reply}"
        );
    });
    let (status, reply) = cluster.delete(other, &format!("/cluster/members/{target}"));
    assert_eq!(status, 200, "removal after the transfer gave up: {reply}");
    assert_eq!(cluster.wait_for_leader(Duration::from_secs(10)), leader);
    let job = cluster.submit(other, &["after-both"], None);
    assert_eq!(cluster.job(leader, job)["name"], job.to_string());
}

fn signal(pid: u32, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{name} {pid}");
}

/// A target that stops answering once it was found ready (paused here, as a host that hangs)
/// never takes the hand-over. The leader stopped heartbeating when it handed over, so the
/// others elect a new leader after an election timeout: writes go on, nobody is restarted,
/// and the transfer answers that its target did not take over.
#[test]
fn a_transfer_whose_target_hangs_after_the_hand_over_ends_in_an_election() {
    let cluster = Cluster::start(3, FAST);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    let target = (1..=3).find(|&id| id != leader).unwrap();
    let other = (1..=3).find(|&id| id != leader && id != target).unwrap();
    let pid = cluster.pid(target).expect("the target runs");
    let write = |via: u64, name: &str| {
        let body = json!({"environment": "production", "scope": {"nodes": [name]}});
        cluster
            .post(via, "/command/deploy", &body.to_string(), &[])
            .0
    };
    // Paused just before the transfer: its last answer is still recent, so it is found ready
    // (the readiness check allows an election timeout of silence) and the hand-over goes out.
    // Should the check run late and refuse instead, pause it afresh and ask again.
    let mut handed_over = None;
    for _ in 0..3 {
        signal(pid, "STOP");
        let asked = std::time::Instant::now();
        let (status, reply) = std::thread::scope(|scope| {
            let transfer = scope.spawn(|| {
                cluster.post(
                    leader,
                    "/cluster/leader",
                    &json!({"id": target}).to_string(),
                    &[],
                )
            });
            // Writes through the third node resume while the transfer still waits.
            let resumed = poll_until(Duration::from_secs(5), || {
                (write(other, "during-the-hand-over") == 202).then(|| asked.elapsed())
            });
            let answer = transfer.join().expect("the transfer request");
            handed_over = resumed;
            answer
        });
        let msg = reply["msg"].as_str().unwrap_or("").to_string();
        if msg.contains("has not answered") {
            signal(pid, "CONT");
            std::thread::sleep(Duration::from_secs(2));
            handed_over = None;
            continue;
        }
        assert_eq!(status, 400, "{reply}");
        assert!(msg.contains("did not take over"), "{reply}");
        break;
    }
    let resumed = handed_over
        .expect("a hand-over to the paused target was sent, and writes resumed within 5 s");
    eprintln!(
        "writes resumed {} ms after the transfer was asked",
        resumed.as_millis()
    );
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10));
    assert_ne!(new_leader, target, "the paused target cannot lead");
    // The target comes back as a follower and the cluster goes on as a whole.
    signal(pid, "CONT");
    let job = cluster.submit(target, &["after-the-pause"], None);
    assert_eq!(cluster.job(new_leader, job)["name"], job.to_string());
}

#[test]
fn drain_moves_agents_to_other_nodes_and_every_run_happens_exactly_once() {
    let mut cluster = Cluster::start(3, FAST);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let script = execution_logger(dir.path(), &log, 1.5, &[]);
    let agents = ["d1", "d2", "d3"];
    // Every agent lists node 1 first, so all of them start there.
    for agent in agents {
        cluster.start_agent_via(agent, &script, &[1, 2, 3]);
    }
    cluster.wait_agents_connected(2, &agents);
    for agent in agents {
        let (_, item) = cluster.get(2, &format!("/inventory/{agent}"));
        assert_eq!(item["orchestrator_node"], 1, "{item}");
    }
    let job = cluster.submit(2, &agents, None);
    std::thread::sleep(Duration::from_millis(500));
    let (status, reply) = cluster.post(3, "/cluster/members/1/drain", "{}", &[]);
    assert_eq!(status, 200, "{reply}");
    let drained = member(&cluster, 2, 1).unwrap();
    assert_eq!(drained["draining"], true, "{drained}");

    // Within a heartbeat every agent is on another node.
    wait_until(Duration::from_secs(30), "agents off node 1", || {
        agents
            .iter()
            .all(|agent| {
                let (_, item) = cluster.get(2, &format!("/inventory/{agent}"));
                item["connected"] == true && item["orchestrator_node"] != 1
            })
            .then_some(())
    });
    let done = cluster.wait_job_done(2, job, Duration::from_secs(60));
    assert_eq!(done["state"], "finished", "{done}");
    let second = cluster.submit(1, &agents, None);
    let done = cluster.wait_job_done(2, second, Duration::from_secs(60));
    assert_eq!(done["state"], "finished", "{done}");
    for agent in agents {
        assert!(
            cluster.agent_log(agent).contains("draining"),
            "agent {agent} was not told why: {}",
            cluster.agent_log(agent)
        );
    }
    // Exactly once: each agent ran each job one time.
    let starts: Vec<(String, u64)> = executions(&log)
        .into_iter()
        .filter(|(kind, ..)| kind == "start")
        .map(|(_, node, job, ..)| (node, job))
        .collect();
    for agent in agents {
        for j in [job, second] {
            let runs = starts
                .iter()
                .filter(|(n, jj)| n == agent && *jj == j)
                .count();
            assert_eq!(
                runs, 1,
                "agent {agent} ran job {j} {runs} times: {starts:?}"
            );
        }
    }

    // Undrained, node 1 takes sessions again: an agent that knows only node 1 connects.
    let (status, reply) = cluster.post(3, "/cluster/members/1/undrain", "{}", &[]);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(member(&cluster, 1, 1).unwrap()["draining"], false);
    cluster.start_agent_via("only-one", &script, &[1]);
    cluster.wait_agents_connected(1, &["only-one"]);
    let (status, reply) = cluster.post(3, "/cluster/members/7/drain", "{}", &[]);
    assert_eq!(status, 400, "draining a non-member: {reply}");
}
