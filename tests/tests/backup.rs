//! Backup and restore (issue 13): `porch backup` takes a linearizable backup of a cluster
//! while it serves; `porch restore` seeds a new cluster from it. Every job acknowledged before
//! the backup began is in the restored cluster, none submitted after it ended is, job ids
//! continue, and the backed-up admin logs in. Bad input (a truncated or foreign file, a
//! non-empty data dir, a node that is not the founder) is refused naming the problem, with
//! nothing written.

use porch_tests::{Cluster, FAST, Restore, execution_logger, poll_until};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The number after `label` in `text` ("next job id 12," → 12).
fn number_after(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {text:?}"));
    text[at + label.len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {label:?} in {text:?}"))
}

#[test]
fn a_busy_cluster_backed_up_and_destroyed_restores_with_every_acknowledged_job() {
    let mut old = Cluster::start(3, FAST);
    let log = old.dir.path().join("exec.log");
    let script = execution_logger(old.dir.path(), &log, 0.2, &[]);
    for name in ["web1", "web2"] {
        old.start_agent(name, &script);
    }
    let leader = old.wait_for_leader(Duration::from_secs(10));
    old.wait_agents_connected(leader, &["web1", "web2"]);
    // (job, when its submission was sent, when it was acknowledged)
    let mut acknowledged: Vec<(u64, Instant, Instant)> = (0..6)
        .map(|i| {
            let node = if i % 2 == 0 { "web1" } else { "web2" };
            let sent = Instant::now();
            (old.submit(1 + i % 3, &[node], None), sent, Instant::now())
        })
        .collect();

    let keep = tempfile::tempdir().expect("a temp dir for the backup");
    let backup = keep.path().join("cluster.backup");
    let backup_arg = backup.display().to_string();
    let urls = old.urls();
    let mut client = vec!["--service-url".to_string(), urls];
    client.extend(old.client_flags());
    let stop = AtomicBool::new(false);
    let (during, taken, backup_started, backup_ended) = std::thread::scope(|scope| {
        // Submissions keep arriving, through every node, while the backup is taken.
        let submitter = scope.spawn(|| {
            let mut submitted = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let node = if i.is_multiple_of(2) { "web1" } else { "web2" };
                let sent = Instant::now();
                submitted.push((old.submit(1 + i % 3, &[node], None), sent, Instant::now()));
                i += 1;
            }
            submitted
        });
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let mut args = vec!["backup", "--out", backup_arg.as_str()];
        args.extend(client.iter().map(String::as_str));
        let taken = old.porch(&args);
        let ended = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let during = submitter.join().expect("the submitter never failed");
        (during, taken, started, ended)
    });
    assert!(taken.status.success(), "porch backup: {}", text(&taken));
    let summary = text(&taken);
    let next_job_id = number_after(&summary, "next job id");
    acknowledged.extend(during.iter().copied());
    // Acknowledged before the backup was asked for: in it. Sent after it was taken: not in
    // it. A submission overlapping the backup may land on either side (linearizability).
    let before: Vec<u64> = acknowledged
        .iter()
        .filter(|(_, _, acked)| *acked < backup_started)
        .map(|(id, _, _)| *id)
        .collect();
    let after: Vec<u64> = acknowledged
        .iter()
        .filter(|(_, sent, _)| *sent > backup_ended)
        .map(|(id, _, _)| *id)
        .collect();
    assert!(
        before.len() > 6 && !after.is_empty(),
        "the cluster was busy before and after the backup: {before:?} / {after:?}"
    );
    let admin_password = old.admin_password();
    let bad_input_dir = keep.path().join("refused");
    refuses_bad_input(&old, &backup, &bad_input_dir);
    drop(old);

    let restored = Cluster::start_restored(
        3,
        FAST,
        Restore {
            backup: &backup,
            admin_password: &admin_password,
        },
    );
    // The harness logged in as the restored admin (the login is committed by the new
    // cluster, so it works end to end).
    assert!(!restored.token.is_empty());
    for node in 1..=3 {
        let mut missing = Vec::new();
        let complete = poll_until(Duration::from_secs(30), || {
            missing = before
                .iter()
                .copied()
                .filter(|job| restored.get(node, &format!("/jobs/{job}")).0 != 200)
                .collect();
            missing.is_empty().then_some(())
        });
        assert!(
            complete.is_some(),
            "node {node} of the restored cluster lacks jobs acknowledged before the backup: {missing:?}"
        );
        for job in &after {
            let (status, reply) = restored.get(node, &format!("/jobs/{job}"));
            assert_eq!(
                status, 404,
                "job {job} was submitted after the backup ended, yet node {node} has it: {reply}"
            );
        }
    }
    let max_before = *before.iter().max().expect("jobs before");
    assert!(next_job_id > max_before);
    let first_new = restored.submit(2, &["web1"], None);
    assert_eq!(
        first_new, next_job_id,
        "job ids continue after the restore (the backup said the next is {next_job_id})"
    );
}

/// A truncated or foreign backup, a non-empty data dir and a node that is not the founder are
/// refused, naming the problem, and leave no data dir behind.
fn refuses_bad_input(cluster: &Cluster, backup: &std::path::Path, dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("a dir for bad input");
    let bytes = std::fs::read(backup).expect("the backup file");
    let truncated = dir.join("truncated.backup");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).expect("write");
    let foreign = dir.join("foreign.backup");
    std::fs::write(&foreign, b"{\"jobs\": []}\n").expect("write");
    let occupied = dir.join("occupied");
    std::fs::create_dir_all(&occupied).expect("mkdir");
    std::fs::write(occupied.join("keep-me"), b"data").expect("write");
    let target = dir.join("target");
    let cases: [(&std::path::Path, &std::path::Path, &str, &str); 4] = [
        (&truncated, &target, "1", "checksum"),
        (&foreign, &target, "1", "not a porch backup"),
        (backup, &occupied, "1", "is not empty"),
        (backup, &target, "2", "founding node"),
    ];
    for (from, data_dir, id, expected) in cases {
        let from = from.display().to_string();
        let data_dir_arg = data_dir.display().to_string();
        let output = cluster.porch(&[
            "restore",
            "--from",
            &from,
            "--data-dir",
            &data_dir_arg,
            "--id",
            id,
            "--initial-cluster",
            "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3",
        ]);
        let said = text(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{from} into {data_dir_arg}: {said}"
        );
        assert!(
            said.contains(expected),
            "{from}: expected {expected:?}: {said}"
        );
        assert!(
            !target.exists(),
            "a refused restore left {}",
            target.display()
        );
    }
    let kept: Vec<_> = std::fs::read_dir(&occupied).expect("read").collect();
    assert_eq!(kept.len(), 1, "the occupied data dir was left as it was");
}
