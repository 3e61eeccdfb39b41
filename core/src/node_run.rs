//! One node's run within one job.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Node states within a job, as PE's events and stop counts name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    New,
    Running,
    Finished,
    Failed,
    Errored,
    Skipped,
}

impl NodeState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, NodeState::New | NodeState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::New => "new",
            NodeState::Running => "running",
            NodeState::Finished => "finished",
            NodeState::Failed => "failed",
            NodeState::Errored => "errored",
            NodeState::Skipped => "skipped",
        }
    }
}

/// What an agent reported about a finished run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// Puppet's run status: "unchanged", "changed", "failed", or the runner's own word.
    pub status: String,
    /// Resource counts: total, changed, failed, skipped, restarted, scheduled, out_of_sync,
    /// failed_to_restart, corrective_change, noop.
    pub metrics: BTreeMap<String, i64>,
    pub configuration_version: Option<String>,
    /// Puppet's own transaction UUID from the run report.
    pub transaction_uuid: Option<String>,
    pub environment: Option<String>,
    pub exit_code: Option<i32>,
    /// Runner output or error text, kept short (see `RESULT_MESSAGE_BYTES_MAX`).
    pub message: Option<String>,
    /// The run was in noop mode, and (noop_pending) found changes it did not make.
    pub noop: bool,
    pub noop_pending: bool,
    /// SHA-256 (hex) of the run's report file as the agent wrote it.
    pub report_sha256: Option<String>,
    /// Puppet's own measure of the run (`time: total`), in milliseconds.
    pub run_time_ms: Option<i64>,
    /// Event counts: total, success, failure, noop.
    pub events: BTreeMap<String, i64>,
    /// A task's standard error, kept short (the command's stdout is `message`).
    #[serde(default)]
    pub stderr: Option<String>,
}

/// Longest result message kept in the replicated state; longer ones are cut at a char boundary.
pub const RESULT_MESSAGE_BYTES_MAX: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRun {
    pub state: NodeState,
    /// Incremented on every dispatch; a report names the attempt it belongs to.
    pub attempt: u32,
    /// Globally unique id of the current attempt's dispatch, if any.
    pub transaction_id: Option<String>,
    pub start_ms: Option<u64>,
    pub finish_ms: Option<u64>,
    pub result: Option<RunResult>,
    /// The error text an errored run was reported with (by its agent, or by the leader that
    /// gave up on an unreachable one): words that came in a command, never made by `apply`.
    pub message: Option<String>,
    /// Why a skipped node was skipped, as a fact; words come at read time ([`SkipCause`]'s
    /// `Display`), so rewording them never changes replicated bytes.
    pub skipped_because: Option<SkipCause>,
}

/// Why a node was skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipCause {
    /// The job was stopped before this node's run started.
    JobStopped,
    /// `node`, which this node depends on (directly or not), ended in `state`.
    Dependency { node: String, state: NodeState },
}

impl std::fmt::Display for SkipCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipCause::JobStopped => {
                f.write_str("the job was stopped before this node's run started")
            }
            SkipCause::Dependency { node, state } => {
                write!(f, "skipped because {node} {}", state.as_str())
            }
        }
    }
}

impl NodeRun {
    pub fn new() -> NodeRun {
        NodeRun {
            state: NodeState::New,
            attempt: 0,
            transaction_id: None,
            start_ms: None,
            finish_ms: None,
            result: None,
            message: None,
            skipped_because: None,
        }
    }
}

impl NodeRun {
    /// Why the node is in its state, in words (error text, skip reason), rendered now.
    pub fn explanation(&self) -> Option<String> {
        match &self.skipped_because {
            Some(cause) => Some(cause.to_string()),
            None => self.message.clone(),
        }
    }
}

impl Default for NodeRun {
    fn default() -> Self {
        NodeRun::new()
    }
}

/// Cuts `text` to at most `max` bytes on a char boundary.
pub fn truncate_utf8(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
