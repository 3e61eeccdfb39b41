//! A job as the state machine records it: what was asked, the plan, the state history, the
//! per-node runs and the events. Everything here is derived from applied commands only.

use crate::ids::{EventId, JobId};
use crate::node_run::SkipCause;
use crate::node_run::{NodeRun, NodeState};
use crate::plan::Plan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a job targets, as the user asked for it (the resolved node list is in the plan).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Nodes(Vec<String>),
    Query(String),
    Application(String),
}

impl Target {
    /// The short text PE shows in the TARGET column.
    pub fn describe(&self) -> String {
        match self {
            Target::Nodes(nodes) if nodes.len() == 1 => nodes[0].clone(),
            Target::Nodes(nodes) => format!("{} nodes", nodes.len()),
            Target::Query(query) => query.clone(),
            Target::Application(app) => app.clone(),
        }
    }
}

/// The options of a deploy job, as submitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub environment: String,
    pub target: Target,
    pub noop: bool,
    pub no_noop: bool,
    /// Most runs of this job in flight at once; `None` is unlimited (PE's default since 2016.1).
    pub concurrency: Option<u32>,
    pub enforce_environment: bool,
    pub debug: bool,
    pub trace: bool,
    pub evaltrace: bool,
    pub description: Option<String>,
    /// Whoever submitted the job: the user of the token it was submitted with (set by
    /// `apply` from the token, so a request cannot name another owner).
    pub owner: crate::access::Actor,
    /// A task job's task (`None`: a Puppet run). Last, so the fields before it keep their
    /// places in bincode.
    #[serde(default)]
    pub task: Option<crate::task::TaskInvocation>,
}

impl JobSpec {
    /// PE's job `type`: `deploy` or `task`.
    pub fn job_type(&self) -> &'static str {
        if self.task.is_some() {
            "task"
        } else {
            "deploy"
        }
    }
}

/// Job states, as in PE's API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    New,
    Ready,
    Running,
    Stopping,
    Stopped,
    Finished,
    Failed,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Stopped | JobState::Finished | JobState::Failed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::New => "new",
            JobState::Ready => "ready",
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Stopped => "stopped",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
        }
    }
}

/// One entry of a job's state history. The current state has `exit_ms: None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub state: JobState,
    pub enter_ms: u64,
    pub exit_ms: Option<u64>,
}

/// Event types, named as PE's `/jobs/:id/events` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    NodeRunning,
    NodeFinished,
    NodeFailed,
    NodeErrored,
    NodeSkipped,
    JobFinished,
    JobAborted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NodeRunning => "node_running",
            EventKind::NodeFinished => "node_finished",
            EventKind::NodeFailed => "node_failed",
            EventKind::NodeErrored => "node_errored",
            EventKind::NodeSkipped => "node_skipped",
            EventKind::JobFinished => "job_finished",
            EventKind::JobAborted => "job_aborted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    pub id: EventId,
    pub kind: EventKind,
    pub timestamp_ms: u64,
    pub node: Option<String>,
    /// The error text of a `NodeErrored` event (it came in the report).
    pub error: Option<String>,
    /// Why a `NodeSkipped` event's node was skipped.
    pub skipped_because: Option<SkipCause>,
}

impl JobEvent {
    /// The event in PE's words, rendered when read: the replicated state holds only facts, so
    /// a reworded message never changes replicated bytes (nodes of two versions agree).
    /// `job` is the job the event belongs to (its end state tells finished from failed).
    pub fn message(&self, job: &Job) -> String {
        let node = self.node.as_deref().unwrap_or("?");
        // "puppet run", or "task <name>" in a task job.
        let run = crate::task::run_label(job.spec.task.as_ref());
        let running = match &job.spec.task {
            Some(task) => format!("task {}", task.name),
            None => "puppet".to_string(),
        };
        match self.kind {
            EventKind::NodeRunning => format!("Started {run} on {node} ..."),
            EventKind::NodeFinished => format!("Finished {run} on {node} - Success!"),
            EventKind::NodeFailed => format!("Finished {run} on {node} - Failed!"),
            EventKind::NodeErrored => format!(
                "Error running {running} on {node}: {}",
                self.error.as_deref().unwrap_or("unknown error")
            ),
            EventKind::NodeSkipped => match &self.skipped_because {
                Some(cause) => format!("Skipped {run} on {node}: {cause}"),
                None => format!("Skipped {run} on {node}"),
            },
            EventKind::JobAborted => format!("Job {} was stopped", job.id),
            EventKind::JobFinished if job.state() == JobState::Failed => {
                format!("Job {} failed: no node could run", job.id)
            }
            EventKind::JobFinished => format!("Job {} finished", job.id),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub spec: JobSpec,
    pub plan: Plan,
    /// One run per plan node, same index.
    pub runs: Vec<NodeRun>,
    pub status: Vec<StatusEntry>,
    pub events: Vec<JobEvent>,
}

impl Job {
    pub fn state(&self) -> JobState {
        self.status
            .last()
            .map(|entry| entry.state)
            .unwrap_or(JobState::New)
    }

    /// Time of the last state change (PE's `timestamp`).
    pub fn timestamp_ms(&self) -> u64 {
        self.status
            .last()
            .map(|entry| entry.exit_ms.unwrap_or(entry.enter_ms))
            .unwrap_or(0)
    }

    pub fn created_ms(&self) -> u64 {
        self.status.first().map(|entry| entry.enter_ms).unwrap_or(0)
    }

    /// Moves to `state` at `now_ms`, closing the current history entry. No-op if already there.
    pub(crate) fn enter(&mut self, state: JobState, now_ms: u64) {
        if self.status.last().map(|e| e.state) == Some(state) {
            return;
        }
        debug_assert!(
            !self.state().is_terminal() || self.status.is_empty(),
            "terminal states never change"
        );
        if let Some(current) = self.status.last_mut() {
            current.exit_ms = Some(now_ms);
        }
        self.status.push(StatusEntry {
            state,
            enter_ms: now_ms,
            exit_ms: None,
        });
    }

    /// How many nodes are in each state; absent states are omitted (PE's `node_states`).
    pub fn node_states(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for run in &self.runs {
            *counts.entry(run.state.as_str()).or_insert(0) += 1;
        }
        counts
    }

    pub fn runs_in_flight(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.state == NodeState::Running)
            .count()
    }
}
