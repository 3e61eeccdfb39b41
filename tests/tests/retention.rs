//! History retention (issue 13): the leader prunes ended jobs beyond `--jobs-kept-max` (and
//! past `--job-prune-threshold`) through the log, so every node drops the same jobs; jobs not
//! yet ended stay, and job ids continue.

use porch_tests::{Cluster, FAST, wait_until};
use std::time::Duration;

#[test]
fn ended_jobs_beyond_the_kept_maximum_are_pruned_on_every_node() {
    let mut flags = FAST.to_vec();
    flags.extend(["--jobs-kept-max", "3"]);
    let cluster = Cluster::start(3, &flags);
    let leader = cluster.wait_for_leader(Duration::from_secs(10));
    // A job whose agent never connects stays running: retention must not touch it.
    let running = cluster.submit(leader, &["never-connects"], None);
    let mut ended = Vec::new();
    for i in 0..8 {
        let job = cluster.submit(leader, &[format!("ghost{i}").as_str()], None);
        let (status, reply) = cluster.post(
            leader,
            "/command/stop",
            &format!(r#"{{"job":"{job}"}}"#),
            &[],
        );
        assert_eq!(status, 202, "{reply}");
        ended.push(job);
    }
    for id in 1..=3 {
        wait_until(
            Duration::from_secs(20),
            &format!("node {id} to keep only the newest 3 ended jobs and the running one"),
            || {
                let (status, jobs) = cluster.get(id, "/jobs");
                let names: Vec<u64> = jobs["items"]
                    .as_array()?
                    .iter()
                    .filter_map(|j| j["name"].as_str()?.parse().ok())
                    .collect();
                let mut expected: Vec<u64> = ended[5..].to_vec();
                expected.push(running);
                expected.sort();
                let mut names = names;
                names.sort();
                (status == 200 && names == expected).then_some(())
            },
        );
    }
    let (status, reply) = cluster.get(2, &format!("/jobs/{}", ended[0]));
    assert_eq!(status, 404, "a pruned job is gone: {reply}");
    let next = cluster.submit(3, &["after"], None);
    assert_eq!(next, ended[7] + 1, "job ids continue after pruning");
}
