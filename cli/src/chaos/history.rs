//! What a chaos run recorded: what the workload was told, what the cluster holds after healing,
//! and what the agents ran. Saved as `history.json` beside the agents' `runs.log`, so
//! `porch chaos --check DIR` judges a run again without re-running it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use super::schedule::NodeId;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct History {
    pub seed: u64,
    /// The command that replays this run's schedule and workload.
    #[serde(default)]
    pub replay: String,
    pub submissions: Vec<Submission>,
    /// Every job the cluster holds after healing (by id), as the API renders it.
    pub cluster_jobs: BTreeMap<u64, ClusterJob>,
    /// Acknowledged jobs a node answered something other than the job for.
    pub missing: Vec<Missing>,
    /// Why the cluster did not converge after healing; `None` when it did.
    pub not_converged: Option<String>,
    /// Nodes that exited without being killed (a panic, a storage error).
    #[serde(default)]
    pub unexpected_exits: Vec<String>,
}

/// One job the workload asked for, under one request id however often it was retried.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Submission {
    pub request_id: String,
    /// `nodes a,b` or `application Lamp[prod]`.
    pub target: String,
    /// (producer, consumer) node names: the consumer runs only after the producer finished.
    pub edges: Vec<(String, String)>,
    /// The job id the cluster acknowledged (202), if it did.
    pub acknowledged_job: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClusterJob {
    pub state: String,
    pub runs: Vec<ClusterRun>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClusterRun {
    pub node: String,
    pub state: String,
    pub transaction: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Missing {
    pub job: u64,
    pub node: NodeId,
    pub answer: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEdge {
    Start,
    End,
}

/// One line an agent's command appended to `runs.log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLine {
    pub edge: RunEdge,
    pub node: String,
    pub job: u64,
    pub transaction: String,
    /// Wall clock of this machine (every agent shares it).
    pub time_ns: u128,
}

/// The script each agent runs: a start and an end line per run, around a sleep long enough
/// for a fault (an agent's kill -9) to land in the middle of runs.
pub fn run_logger_script(runs_log: &Path) -> String {
    let log = runs_log.display();
    format!(
        "#!/bin/sh\n\
         echo \"start $PORCH_NODE $PORCH_JOB_ID $PORCH_TRANSACTION_ID $(date +%s%N)\" >> '{log}'\n\
         sleep 0.8\n\
         echo \"end $PORCH_NODE $PORCH_JOB_ID $PORCH_TRANSACTION_ID $(date +%s%N)\" >> '{log}'\n\
         exit 0\n"
    )
}

/// Parses `runs.log`; a line that is not `start|end NODE JOB TRANSACTION NANOS` is an error
/// naming its number (a torn line would hide a run).
pub fn parse_runs(text: &str) -> Result<Vec<RunLine>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            let bad = || format!("runs.log:{}: not a run line: {line:?}", number + 1);
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [edge, node, job, transaction, time] = parts.as_slice() else {
                return Err(bad());
            };
            Ok(RunLine {
                edge: match *edge {
                    "start" => RunEdge::Start,
                    "end" => RunEdge::End,
                    _ => return Err(bad()),
                },
                node: node.to_string(),
                job: job.parse().map_err(|_| bad())?,
                transaction: transaction.to_string(),
                time_ns: time.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

pub fn save(history: &History, dir: &Path) -> Result<(), String> {
    let path = dir.join("history.json");
    let text = serde_json::to_string_pretty(history).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Loads `DIR/history.json` and `DIR/runs.log` (absent: no run happened).
pub fn load(dir: &Path) -> Result<(History, Vec<RunLine>), String> {
    let path = dir.join("history.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let history = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let runs_path = dir.join("runs.log");
    let runs = match std::fs::read_to_string(&runs_path) {
        Ok(text) => parse_runs(&text).map_err(|e| format!("{}: {e}", dir.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", runs_path.display())),
    };
    Ok((history, runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lines_parse_and_a_torn_line_is_named() {
        let runs = parse_runs("start web1 3 c-3-0-1 100\nend web1 3 c-3-0-1 200\n").unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1].edge, RunEdge::End);
        assert_eq!(runs[1].time_ns, 200);
        let error = parse_runs("start web1 3 c-3-0-1 100\nend web1 3 c-3").unwrap_err();
        assert!(error.starts_with("runs.log:2:"), "{error}");
    }
}
