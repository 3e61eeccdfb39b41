//! A task job's fixed facts: which task file (by content hash) runs with which parameters.
//! The node that accepts the job finds the task, checks the parameters against its metadata
//! and hashes its file once; the log carries the result, so every replica and every agent
//! sees the same task, and an agent runs only a file with exactly this hash.

use serde::{Deserialize, Serialize};

/// Most bytes of a job's parameters (as JSON).
pub const TASK_PARAMS_BYTES_MAX: usize = 64 * 1024;

/// How the agent hands the parameters to the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskInputMethod {
    Stdin,
    Environment,
    Both,
}

impl TaskInputMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskInputMethod::Stdin => "stdin",
            TaskInputMethod::Environment => "environment",
            TaskInputMethod::Both => "both",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInvocation {
    /// `package::status`, or `package` for a module's init task.
    pub name: String,
    /// The executable's name (`status.sh`).
    pub file_name: String,
    /// Where the planning node found it, relative to the code dir: the node an agent fetches
    /// the file from reads this path and serves it only if its hash is still `sha256`.
    pub file_path: String,
    /// Lowercase hex SHA-256 of the file as planned.
    pub sha256: String,
    pub size_bytes: u64,
    /// The checked parameters, defaults applied: a JSON object, as text (bincode cannot carry
    /// a `serde_json::Value`; the text is serde_json's canonical rendering, keys sorted).
    pub params_json: String,
    pub input_method: TaskInputMethod,
    /// Longest the task may run on one node before the agent kills it.
    pub timeout_secs: u32,
    /// Parameters the metadata marks sensitive: masked wherever porch shows them.
    pub sensitive: Vec<String>,
}

/// What to call a run of `task` (or a Puppet run) in events.
pub fn run_label(task: Option<&TaskInvocation>) -> String {
    match task {
        Some(task) => format!("task {}", task.name),
        None => "puppet run".to_string(),
    }
}
