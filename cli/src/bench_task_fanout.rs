//! `porch bench task-fanout`: a no-op task over N simulated agents against a deploy over the
//! same agents, on one cluster in one run, so the ratio is measured under the same load
//! (the fan-out rig of [`crate::fanout_bench`]: 3 nodes, one agent process with N sessions,
//! mutual TLS unless `--insecure-http`).
//!
//! The first task job is *cold*: every agent fetches the task file from its node by SHA-256
//! (`FetchTaskFile` over its session), checks it and caches it. Then `--repeats` rounds of a
//! deploy and a *warm* task job (the file cached) alternate, and the medians are compared.
//! The agents' `simulate` runner stands in for the task's process (as it stands in for Puppet
//! in the deploy), so what is measured is the orchestrator's path and the agents' task path up
//! to starting the process, not a shell's fork and exec.

use crate::bench_cluster::tempfile_dir;
use crate::bench_cmd::TaskFanoutArgs;
use crate::fanout_bench::{FanoutRig, JobTiming, agent_counts, bench_pki, timed_job};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The task every job runs.
const TASK: &str = "bench::noop";

/// `<dir>/environments/production/modules/bench/tasks/noop.sh` (exits 0) and its metadata.
fn write_code(dir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let tasks = dir.join("environments/production/modules/bench/tasks");
    let io = |e: std::io::Error| format!("{}: {e}", tasks.display());
    std::fs::create_dir_all(&tasks).map_err(io)?;
    let script = tasks.join("noop.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").map_err(io)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    std::fs::write(
        tasks.join("noop.json"),
        r#"{"description": "Does nothing", "parameters": {}}"#,
    )
    .map_err(io)?;
    Ok(dir.to_path_buf())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn row(agents: usize, what: &str, timing: &JobTiming) {
    println!(
        "| {agents} | {what} | {} | {:.0} | {} | {} | {} |",
        timing.job,
        timing.runs_per_s,
        timing.first_dispatch_ms,
        timing.last_dispatch_ms,
        timing.last_result_ms,
    );
}

/// A job that did not finish on every agent measures nothing.
fn complete(timing: JobTiming, agents: usize, what: &str) -> Result<JobTiming, String> {
    if timing.state != "finished" || timing.finished != agents {
        return Err(format!(
            "the {what} job {} ended {} with {} of {agents} nodes finished",
            timing.job, timing.state, timing.finished
        ));
    }
    Ok(timing)
}

pub async fn task_fanout(args: TaskFanoutArgs) -> Result<(), String> {
    if args.repeats == 0 {
        return Err("--repeats must be at least 1".into());
    }
    let counts = agent_counts(&args.agents)?;
    let most = counts.iter().copied().max().unwrap_or(0);
    let pki = bench_pki(args.insecure_http, most, "task-fanout")?;
    let code = write_code(&tempfile_dir()?.join("task-fanout-code"))?;
    println!(
        "Transport: {}; task {TASK} (no parameters); {} repeats of deploy then warm task",
        if pki.is_some() {
            "mutual TLS (agents, nodes and API)"
        } else {
            "plain HTTP (--insecure-http)"
        },
        args.repeats
    );
    println!();
    println!(
        "| agents | job | id | node runs/s | first dispatch ms | last dispatch ms | last result ms |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let mut summary = Vec::new();
    for (round, &n) in counts.iter().enumerate() {
        let base = args.base_port + (round as u16) * 10;
        let node_args = vec!["--codedir".to_string(), code.display().to_string()];
        let rig = FanoutRig::start(
            pki.as_ref(),
            n,
            base,
            &args.spool_root,
            node_args,
            "task-fanout",
        )
        .await?;
        let (http, urls) = (rig.http.clone(), rig.urls.clone());
        let deploy = json!({"environment": "production", "scope": {"nodes": rig.nodes}});
        let task = json!({"environment": "production", "task": TASK, "params": {},
            "scope": {"nodes": rig.nodes}});
        let measured = async {
            let cold = complete(timed_job(&http, &urls, "task", &task).await?, n, "task")?;
            row(n, "task, cold cache", &cold);
            let (mut deploys, mut warms) = (Vec::new(), Vec::new());
            for _ in 0..args.repeats {
                let timing = complete(
                    timed_job(&http, &urls, "deploy", &deploy).await?,
                    n,
                    "deploy",
                )?;
                row(n, "deploy", &timing);
                deploys.push(timing.runs_per_s);
                let timing = complete(timed_job(&http, &urls, "task", &task).await?, n, "task")?;
                row(n, "task, warm cache", &timing);
                warms.push(timing.runs_per_s);
            }
            Ok::<_, String>((cold.runs_per_s, median(deploys), median(warms)))
        }
        .await;
        rig.stop().await;
        let (cold, deploy, warm) = measured?;
        summary.push(format!(
            "  {n} agents: deploy median {deploy:.0} node runs/s; task warm median {warm:.0} ({:.2}x deploy); task cold {cold:.0} ({:.2}x deploy)",
            warm / deploy,
            cold / deploy
        ));
    }
    println!();
    for line in summary {
        println!("{line}");
    }
    let _ = std::fs::remove_dir_all(tempfile_dir()?);
    Ok(())
}
