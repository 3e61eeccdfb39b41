//! `porch chaos` end to end: a short seeded run of real nodes and agents under faults passes;
//! its recorded history, with a violation planted (a run logged twice, an acknowledged job
//! removed), fails `--check`; an interrupted run heals everything it broke; a run killed with
//! -9 leaves no process behind, and `--cleanup` removes its namespaces.
//!
//! Network faults need root (namespaces, iptables): without it the first test runs with
//! `--no-network` and the others are skipped with a note.

use porch_tests::{poll_until, porch_bin};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn codedir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lang/examples/code")
}

fn chaos(args: &[&str]) -> Command {
    let mut command = Command::new(porch_bin());
    command
        .arg("chaos")
        .args(args)
        .arg("--codedir")
        .arg(codedir());
    command
}

fn namespaces() -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Pids of processes whose command line names `dir`.
fn processes_of(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn a_short_seeded_run_passes_and_planted_violations_fail_the_recheck() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join("run");
    let dir_text = dir.display().to_string();
    let mut args = vec!["--seed", "1", "--seconds", "30", "--dir", &dir_text];
    if !is_root() {
        eprintln!("not root: running porch chaos --no-network (pause and kill faults only)");
        args.push("--no-network");
    }
    let output = chaos(&args).output().expect("run porch chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("verdict: PASS"),
        "porch chaos failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let faults = stdout.lines().filter(|l| l.contains("] + ")).count();
    assert!(faults >= 3, "too few faults in 30 s:\n{stdout}");
    assert!(stdout.contains("converged"), "{stdout}");
    let runs_log = dir.join("runs.log");
    let runs = std::fs::read_to_string(&runs_log).expect("runs.log");
    assert!(runs.lines().count() >= 10, "few runs recorded:\n{runs}");

    // The record as it is passes again.
    let recheck = chaos(&["--check", &dir_text])
        .output()
        .expect("porch chaos --check");
    assert!(
        recheck.status.success(),
        "{}",
        String::from_utf8_lossy(&recheck.stdout)
    );

    // A run logged twice: the agent's command ran the transaction again.
    let first_start = runs
        .lines()
        .find(|l| l.starts_with("start "))
        .expect("a start line");
    std::fs::write(&runs_log, format!("{runs}{first_start}\n")).expect("plant a second run");
    let recheck = chaos(&["--check", &dir_text])
        .output()
        .expect("porch chaos --check");
    let text = String::from_utf8_lossy(&recheck.stdout);
    assert_eq!(recheck.status.code(), Some(1), "{text}");
    assert!(
        text.contains("started 2 times") && text.contains("verdict: FAIL"),
        "{text}"
    );
    assert!(
        text.contains("replay: porch chaos --seed 1 --seconds 30"),
        "{text}"
    );
    std::fs::write(&runs_log, &runs).expect("restore runs.log");

    // An acknowledged job the cluster no longer holds.
    let history_path = dir.join("history.json");
    let history: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&history_path).expect("history.json"))
            .expect("history is JSON");
    let acknowledged = history["submissions"]
        .as_array()
        .and_then(|s| s.iter().find_map(|s| s["acknowledged_job"].as_u64()))
        .expect("an acknowledged job");
    let mut planted = history.clone();
    planted["cluster_jobs"]
        .as_object_mut()
        .expect("cluster_jobs")
        .remove(&acknowledged.to_string());
    std::fs::write(&history_path, planted.to_string()).expect("plant a lost job");
    let recheck = chaos(&["--check", &dir_text])
        .output()
        .expect("porch chaos --check");
    let text = String::from_utf8_lossy(&recheck.stdout);
    assert_eq!(recheck.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("lost: job {acknowledged} ")),
        "{text}"
    );
}

/// A `porch chaos` process, killed if the test ends first (a failed assertion).
struct RunningChaos(Child);

impl Drop for RunningChaos {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a run of partitions only and returns it once the first partition is in place, with
/// the prefix of its namespaces.
fn run_until_partitioned(dir: &Path, seed: &str) -> (RunningChaos, String) {
    let dir_text = dir.display().to_string();
    let stderr_path = dir.with_extension("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut child = chaos(&[
        "--seed",
        seed,
        "--seconds",
        "120",
        "--faults",
        "partition",
        "--dir",
        &dir_text,
    ])
    .stdout(Stdio::piped())
    .stderr(stderr)
    .spawn()
    .expect("start porch chaos");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut prefix = None;
    for line in lines.by_ref() {
        let line = line.expect("a line of output");
        if let Some(rest) = line.split("network namespaces ").nth(1) {
            prefix = rest.split('*').next().map(str::to_string);
        }
        if line.contains("] + partition") {
            break;
        }
    }
    // Keep draining stdout so the run never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let prefix = prefix.unwrap_or_else(|| {
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        panic!("porch chaos printed no namespaces before it ended ({status}): {stderr}")
    });
    assert!(prefix.starts_with("porch-chaos-"), "{prefix}");
    (RunningChaos(child), prefix)
}

/// The DROP rules in the nodes' namespaces of `prefix`.
fn drop_rules(prefix: &str) -> usize {
    namespaces()
        .iter()
        .filter(|ns| ns.starts_with(prefix) && !ns.ends_with("hub"))
        .map(|ns| {
            let output = Command::new("ip")
                .args(["netns", "exec", ns, "iptables", "-S", "INPUT"])
                .output()
                .expect("iptables -S");
            String::from_utf8_lossy(&output.stdout)
                .matches("-j DROP")
                .count()
        })
        .sum()
}

#[test]
fn interrupting_a_run_mid_partition_heals_every_rule_namespace_and_process() {
    if !is_root() {
        eprintln!("skipped: network faults need root");
        return;
    }
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join("run");
    let (mut child, prefix) = run_until_partitioned(&dir, "3");
    assert!(
        drop_rules(&prefix) > 0,
        "the partition put no DROP rule in place"
    );
    assert!(!processes_of(&dir).is_empty());

    let status = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status();
    assert!(status.is_ok_and(|s| s.success()));
    let exit = poll_until(Duration::from_secs(30), || {
        child.0.try_wait().ok().flatten()
    })
    .expect("porch chaos ends after SIGINT");
    assert_eq!(exit.code(), Some(130), "{exit}");
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|ns| ns.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left after SIGINT: {left:?}");
    let alive = poll_until(Duration::from_secs(5), || {
        processes_of(&dir).is_empty().then_some(())
    });
    assert!(
        alive.is_some(),
        "processes left after SIGINT: {:?}",
        processes_of(&dir)
    );
}

#[test]
fn a_run_killed_with_sigkill_leaves_no_process_and_cleanup_removes_its_namespaces() {
    if !is_root() {
        eprintln!("skipped: network faults need root");
        return;
    }
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join("run");
    let (mut child, prefix) = run_until_partitioned(&dir, "4");
    child.0.kill().expect("kill -9 porch chaos");
    child.0.wait().expect("reap porch chaos");
    // Its children got the parent-death signal.
    let gone = poll_until(Duration::from_secs(10), || {
        processes_of(&dir).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "processes outlived porch chaos: {:?}",
        processes_of(&dir)
    );
    assert!(
        namespaces().iter().any(|ns| ns.starts_with(&prefix)),
        "a killed run cannot heal, so its namespaces should still be there"
    );

    let output = chaos(&["--cleanup"])
        .output()
        .expect("porch chaos --cleanup");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(&format!("deleted network namespace {prefix}")),
        "{text}"
    );
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|ns| ns.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left after --cleanup: {left:?}");
}
