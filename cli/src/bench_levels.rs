//! `porch bench levels`: porch's own overhead per level of a job on real agents. Runs N jobs
//! of one application, one after another, against an existing cluster, and reads back from
//! the API (`/command/plan` for each node's level, `/jobs/:id` and `/jobs/:id/nodes` for the
//! leader-stamped times) how long each level took beyond the agents' own runs.
//!
//! porch starts a node as soon as its own producers finished, not when a whole level did, so
//! levels overlap and each node is measured from its own `ready` (times in ms, all from one
//! machine's clock):
//! - `ready` = the last finish among the node's producers (`depends_on` in the plan), or the
//!   job's creation for a node without any — the moment porch knew it could start the node;
//! - `dispatch` = its `start_timestamp` − `ready` (the scheduler's reaction);
//! - `overhead` = (`finish_timestamp` − `ready`) − the node's agent-side time: the wall time
//!   of its `puppet agent` process when a `--process-log` has it, else Puppet's own `time:
//!   total` (`result.run_time`), which leaves out Ruby's start-up and the report upload, so an
//!   overhead over `run_time` charges those to porch. Both are printed when the log is there.
//!
//! A level reports its worst node (largest overhead, and its parts) and its `span`: its last
//! finish − the previous level's last finish (job creation for level 0), the level's share of
//! the job's wall time.
//!
//! The process log is written by a wrapper given to the porch agents as `--puppet-bin`; one
//! line per `puppet` invocation: `<certname> <start> <end> <arguments...>`, times as Unix
//! seconds with a fraction (bash's `$EPOCHREALTIME`); only `agent` runs with a `--job-id` count.

use crate::bench_cmd::LevelsArgs;
use crate::client::Client;
use crate::config::Settings;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Job states after which nothing runs any more.
const JOB_DONE_STATES: [&str; 3] = ["finished", "failed", "stopped"];

/// One node's run, as the API and the process log tell it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTiming {
    pub name: String,
    pub level: usize,
    /// The producers' names, from the plan.
    pub depends_on: Vec<String>,
    pub start_ms: f64,
    pub finish_ms: f64,
    /// Puppet's `time: total`.
    pub run_time_ms: Option<f64>,
    /// The `puppet agent` process, start and end, from the process log.
    pub process_ms: Option<(f64, f64)>,
}

/// One level of one job; every duration in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelTiming {
    pub level: usize,
    pub nodes: usize,
    /// The largest `dispatch` in the level.
    pub dispatch_ms: f64,
    pub span_ms: f64,
    /// The largest (finish − ready) − process wall time (None without the process log).
    pub overhead_process_ms: Option<f64>,
    /// The largest (finish − ready) − Puppet's `time: total`.
    pub overhead_run_time_ms: Option<f64>,
    /// For the node with the largest process overhead, `ready` → its process start:
    /// dispatch, delivery, spawning puppet.
    pub before_process_ms: Option<f64>,
    /// The same node's process end → its `finish_timestamp`: reading Puppet's files, sending
    /// the result, committing it.
    pub after_process_ms: Option<f64>,
}

fn max_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    values.flatten().reduce(f64::max)
}

/// Per level: `created_ms` is the job's creation; `nodes` every node of the job.
pub fn level_timings(created_ms: f64, nodes: &[NodeTiming]) -> Vec<LevelTiming> {
    let finish_of = |name: &str| nodes.iter().find(|n| n.name == name).map(|n| n.finish_ms);
    let ready_of = |node: &NodeTiming| {
        node.depends_on
            .iter()
            .filter_map(|p| finish_of(p))
            .fold(created_ms, f64::max)
    };
    let levels = nodes.iter().map(|n| n.level + 1).max().unwrap_or(0);
    let mut previous_finish = created_ms;
    let mut out = Vec::with_capacity(levels);
    for level in 0..levels {
        let in_level: Vec<&NodeTiming> = nodes.iter().filter(|n| n.level == level).collect();
        let Some(last_finish) = in_level.iter().map(|n| n.finish_ms).reduce(f64::max) else {
            continue;
        };
        let busy = |n: &NodeTiming| n.finish_ms - ready_of(n);
        let process_overhead =
            |n: &NodeTiming| n.process_ms.map(|(start, end)| busy(n) - (end - start));
        let worst = in_level
            .iter()
            .filter(|n| n.process_ms.is_some())
            .max_by(|a, b| {
                let key = |n: &NodeTiming| process_overhead(n).unwrap_or(f64::NEG_INFINITY);
                key(a).total_cmp(&key(b))
            });
        out.push(LevelTiming {
            level,
            nodes: in_level.len(),
            dispatch_ms: in_level
                .iter()
                .map(|n| n.start_ms - ready_of(n))
                .fold(f64::NEG_INFINITY, f64::max),
            span_ms: last_finish - previous_finish,
            overhead_process_ms: max_of(in_level.iter().map(|n| process_overhead(n))),
            overhead_run_time_ms: max_of(
                in_level.iter().map(|n| n.run_time_ms.map(|t| busy(n) - t)),
            ),
            before_process_ms: worst.and_then(|n| n.process_ms.map(|(s, _)| s - ready_of(n))),
            after_process_ms: worst.and_then(|n| n.process_ms.map(|(_, e)| n.finish_ms - e)),
        });
        previous_finish = last_finish;
    }
    out
}

/// The process log's runs of `job`, by certname: (start ms, end ms). A node run twice in one
/// job (a retry) keeps its last run.
pub fn process_runs(log: &str, job: u64) -> BTreeMap<String, (f64, f64)> {
    let job = job.to_string();
    let mut runs = BTreeMap::new();
    for line in log.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [certname, start, end, args @ ..] = fields.as_slice() else {
            continue;
        };
        let is_this_job = args.first() == Some(&"agent")
            && args.windows(2).any(|w| w[0] == "--job-id" && w[1] == job);
        let seconds = |s: &str| s.replace(',', ".").parse::<f64>().ok();
        if let (true, Some(start), Some(end)) = (is_this_job, seconds(start), seconds(end)) {
            runs.insert(certname.to_string(), (start * 1000.0, end * 1000.0));
        }
    }
    runs
}

pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn timestamp_ms(value: &Value, what: &str) -> Result<f64, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{what}: no timestamp ({value})"))?;
    let time = humantime::parse_rfc3339(text).map_err(|e| format!("{what}: {text:?}: {e}"))?;
    let since = time
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("{what}: {text:?}: {e}"))?;
    Ok(since.as_secs_f64() * 1000.0)
}

fn client(args: &LevelsArgs) -> Result<Client, String> {
    let token = std::fs::read_to_string(&args.token_file)
        .map_err(|e| format!("--token-file {}: {e}", args.token_file.display()))?;
    let settings = Settings {
        service_urls: args
            .service_url
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect(),
        environment: Some(args.environment.clone()),
        noop: None,
        cacert: args.cacert.clone(),
        crl: None,
        token_file: Some(args.token_file.clone()),
        token: Some(token.trim().to_string()),
    };
    Client::new(&settings).map_err(|e| e.to_string())
}

/// Runs one job to its end; its creation time and its nodes' timings.
async fn run_job(
    client: &Client,
    args: &LevelsArgs,
    levels: &BTreeMap<String, (usize, Vec<String>)>,
) -> Result<(u64, f64, Vec<NodeTiming>), String> {
    let body = json!({"environment": args.environment, "scope": {"application": args.application}});
    let reply = client
        .post("/command/deploy", &body)
        .await
        .map_err(|e| format!("deploy {body}: {e}"))?;
    let job: u64 = reply["job"]["name"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("deploy reply without a job id: {reply}"))?;
    let deadline = Instant::now() + Duration::from_secs(args.job_timeout_secs);
    let detail = loop {
        let detail = client
            .get(&format!("/jobs/{job}"))
            .await
            .map_err(|e| format!("GET /jobs/{job}: {e}"))?;
        if JOB_DONE_STATES.contains(&detail["state"].as_str().unwrap_or("")) {
            break detail;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "job {job} not done after {} s: {detail}",
                args.job_timeout_secs
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let created = timestamp_ms(&detail["created_timestamp"], &format!("job {job}"))?;
    let nodes = client
        .get(&format!("/jobs/{job}/nodes"))
        .await
        .map_err(|e| format!("GET /jobs/{job}/nodes: {e}"))?;
    let process_log = match &args.process_log {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("--process-log {}: {e}", path.display()))?,
        None => String::new(),
    };
    let processes = process_runs(&process_log, job);
    let items = nodes["items"]
        .as_array()
        .ok_or_else(|| format!("/jobs/{job}/nodes without items: {nodes}"))?;
    let mut timings = Vec::with_capacity(items.len());
    for item in items {
        let name = item["name"].as_str().unwrap_or("?").to_string();
        let what = format!("job {job}, node {name}");
        if item["state"] != "finished" {
            return Err(format!(
                "{what}: {} (every node must finish): {item}",
                item["state"]
            ));
        }
        let (level, depends_on) = levels
            .get(&name)
            .ok_or_else(|| format!("{what}: not in the plan {levels:?}"))?
            .clone();
        timings.push(NodeTiming {
            level,
            depends_on,
            start_ms: timestamp_ms(&item["start_timestamp"], &what)?,
            finish_ms: timestamp_ms(&item["finish_timestamp"], &what)?,
            run_time_ms: item["result"]["run_time"].as_f64().map(|s| s * 1000.0),
            process_ms: processes.get(&name).copied(),
            name,
        });
    }
    Ok((job, created, timings))
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.0}"))
}

fn print_row(label: &str, l: &LevelTiming) {
    println!(
        "| {label} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
        l.level,
        l.nodes,
        l.dispatch_ms,
        l.span_ms,
        cell(l.before_process_ms),
        cell(l.after_process_ms),
        cell(l.overhead_process_ms),
        cell(l.overhead_run_time_ms),
    );
}

pub async fn levels(args: LevelsArgs) -> Result<(), String> {
    let client = client(&args)?;
    let body = json!({"environment": args.environment, "scope": {"application": args.application}});
    let plan = client
        .post("/command/plan", &body)
        .await
        .map_err(|e| format!("plan {body}: {e}"))?;
    let levels: BTreeMap<String, (usize, Vec<String>)> = plan["nodes"]
        .as_array()
        .ok_or_else(|| format!("plan without nodes: {plan}"))?
        .iter()
        .filter_map(|n| {
            let depends_on = n["depends_on"].as_array()?;
            let depends_on = depends_on
                .iter()
                .filter_map(|d| d.as_str().map(String::from));
            let level = n["level"].as_u64()? as usize;
            Some((
                n["name"].as_str()?.to_string(),
                (level, depends_on.collect()),
            ))
        })
        .collect();
    eprintln!(
        "bench levels: {} nodes over {} levels, {} jobs",
        levels.len(),
        levels.values().map(|(l, _)| l + 1).max().unwrap_or(0),
        args.jobs
    );
    let mut per_job = Vec::new();
    for _ in 0..args.jobs {
        let (job, created, nodes) = run_job(&client, &args, &levels).await?;
        let timings = level_timings(created, &nodes);
        let wall = nodes.iter().map(|n| n.finish_ms).fold(created, f64::max) - created;
        eprintln!("bench levels: job {job} done, {wall:.0} ms from creation to last finish");
        per_job.push((job, timings));
    }
    println!(
        "| job | level | nodes | dispatch ms (max) | level span ms | ready → puppet start ms | puppet end → finish ms | overhead vs process ms (max) | overhead vs Puppet's time total ms (max) |"
    );
    println!("|:--|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (job, timings) in &per_job {
        for level in timings {
            print_row(&job.to_string(), level);
        }
    }
    let level_count = per_job.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
    for level in 0..level_count {
        let rows: Vec<&LevelTiming> = per_job
            .iter()
            .filter_map(|(_, t)| t.iter().find(|l| l.level == level))
            .collect();
        let med = |f: &dyn Fn(&LevelTiming) -> Option<f64>| {
            let mut values: Vec<f64> = rows.iter().filter_map(|l| f(l)).collect();
            median(&mut values)
        };
        let summary = LevelTiming {
            level,
            nodes: rows.first().map_or(0, |l| l.nodes),
            dispatch_ms: med(&|l| Some(l.dispatch_ms)).unwrap_or(f64::NAN),
            span_ms: med(&|l| Some(l.span_ms)).unwrap_or(f64::NAN),
            overhead_process_ms: med(&|l| l.overhead_process_ms),
            overhead_run_time_ms: med(&|l| l.overhead_run_time_ms),
            before_process_ms: med(&|l| l.before_process_ms),
            after_process_ms: med(&|l| l.after_process_ms),
        };
        print_row(&format!("**median of {}**", rows.len()), &summary);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(
        name: &str,
        level: usize,
        depends_on: &[&str],
        start: f64,
        finish: f64,
        process: Option<(f64, f64)>,
    ) -> NodeTiming {
        NodeTiming {
            name: name.into(),
            level,
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            start_ms: start,
            finish_ms: finish,
            run_time_ms: Some(1000.0),
            process_ms: process,
        }
    }

    #[test]
    fn each_node_is_measured_from_its_own_producers_last_finish() {
        let nodes = [
            node("db", 0, &[], 10.0, 2050.0, Some((20.0, 2020.0))),
            node("app1", 1, &["db"], 2060.0, 4000.0, Some((2070.0, 3990.0))),
            node("app2", 1, &["db"], 2065.0, 4100.0, Some((2080.0, 4080.0))),
            // web1 starts before app2 finished: only app1 is its producer.
            node("web1", 2, &["app1"], 4005.0, 6000.0, Some((4010.0, 5990.0))),
        ];
        let levels = level_timings(0.0, &nodes);
        assert_eq!(levels.len(), 3);
        assert_eq!(levels[0].dispatch_ms, 10.0);
        assert_eq!(levels[0].span_ms, 2050.0);
        assert_eq!(levels[0].overhead_process_ms, Some(50.0));
        assert_eq!(levels[0].overhead_run_time_ms, Some(1050.0));
        assert_eq!(levels[1].dispatch_ms, 15.0, "app2 from db's finish at 2050");
        assert_eq!(levels[1].span_ms, 2050.0);
        // app1: 1950 − 1920 = 30; app2: 2050 − 2000 = 50.
        assert_eq!(levels[1].overhead_process_ms, Some(50.0));
        assert_eq!(levels[1].before_process_ms, Some(30.0));
        assert_eq!(levels[1].after_process_ms, Some(20.0));
        assert_eq!(levels[2].dispatch_ms, 5.0, "from app1's finish, not app2's");
        assert_eq!(levels[2].overhead_process_ms, Some(20.0));
    }

    #[test]
    fn process_log_keeps_only_this_jobs_agent_runs() {
        let log = "a1 100.5 101.25 config print lastrunfile --confdir /x\n\
                   a1 200.0 203.5 agent --confdir /x --onetime --job-id 7\n\
                   a2 300.0 301.0 agent --job-id 70\n\
                   garbage\n";
        let runs = process_runs(log, 7);
        assert_eq!(
            runs,
            BTreeMap::from([("a1".to_string(), (200_000.0, 203_500.0))])
        );
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut []), None);
    }
}
