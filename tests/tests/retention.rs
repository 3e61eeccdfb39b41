//! History retention (issue 13): the leader prunes ended jobs beyond `--jobs-kept-max` (and
//! past `--job-prune-threshold`) through the log, so every node drops the same jobs; jobs not
//! yet ended stay, and job ids continue.

use porch_tests::{Cluster, FAST, execution_logger, poll_until};
use std::time::Duration;

#[test]
fn ended_jobs_beyond_the_kept_maximum_are_pruned_on_every_node() {
    let mut flags = FAST.to_vec();
    // Runs of agents that never connect end (errored) after a second: their jobs end.
    flags.extend(["--jobs-kept-max", "3", "--agent-timeout-secs", "1"]);
    let mut cluster = Cluster::start(3, &flags);
    let log = cluster.dir.path().join("exec.log");
    let slow = execution_logger(cluster.dir.path(), &log, 60.0, &[]);
    cluster.start_agent("busy", &slow);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    cluster.wait_agents_connected(leader, &["busy"]);
    // A job still running (its run takes a minute): retention must not touch it.
    let running = cluster.submit(leader, &["busy"], None);
    let mut ended = Vec::new();
    for i in 0..8 {
        ended.push(cluster.submit(leader, &[format!("ghost{i}").as_str()], None));
    }
    let mut expected: Vec<u64> = ended[5..].to_vec();
    expected.push(running);
    expected.sort();
    for id in 1..=3 {
        let mut seen = Vec::new();
        let kept = poll_until(Duration::from_secs(30), || {
            let (status, jobs) = cluster.get(id, "/jobs");
            let mut names: Vec<u64> = jobs["items"]
                .as_array()?
                .iter()
                .filter_map(|j| j["name"].as_str()?.parse().ok())
                .collect();
            names.sort();
            seen = names.clone();
            (status == 200 && names == expected).then_some(())
        });
        assert!(
            kept.is_some(),
            "node {id} should keep the newest 3 ended jobs and the running one ({expected:?}); it lists {seen:?}"
        );
    }
    let (status, reply) = cluster.get(2, &format!("/jobs/{}", ended[0]));
    assert_eq!(status, 404, "a pruned job is gone: {reply}");
    let next = cluster.submit(3, &["after"], None);
    assert_eq!(next, ended[7] + 1, "job ids continue after pruning");
}
