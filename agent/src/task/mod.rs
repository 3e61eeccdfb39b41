//! Task runs: a run request that carries a [`TaskRun`] runs that task instead of Puppet.
//!
//! The file is content-addressed: the request names its SHA-256, fixed when the job was
//! planned. The agent takes it from its [`cache::TaskCache`] or fetches it from the node of its
//! current session ([`fetch_task_file`]), checks the hash of the bytes it got — a mismatch runs
//! nothing and errors the node — caches it, and runs it ([`exec`]). The run is one transaction
//! like a Puppet run: spooled before it starts, never run twice.

pub mod cache;
pub mod exec;

use crate::proto::agent_sessions_client::AgentSessionsClient;
use crate::proto::{RunRequest, TaskFileRequest, TaskRun};
use crate::spool::StoredResult;
use cache::{TaskCache, sha256_hex, valid_file_name, valid_sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a run waits for its task file (a session to fetch it over, and the fetch).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between fetch attempts when the node could not be reached.
const FETCH_RETRY: Duration = Duration::from_secs(1);

/// A task about to start, as the agent has it.
pub struct TaskStart<'a> {
    pub transaction_id: &'a str,
    /// The task as the run request carried it.
    pub task: &'a TaskRun,
    /// SHA-256 of the bytes about to run.
    pub file_sha256: &'a str,
    /// The parameters the task gets: its stdin JSON, and what its `PT_*` variables are made of.
    pub input: &'a serde_json::Map<String, serde_json::Value>,
}

/// Who watches task runs (the simulation's checkers), called just before a task starts.
pub type TaskObserver = Arc<dyn Fn(&TaskStart) + Send + Sync>;

/// What the agent needs for tasks: its cache, and the channel of its current session.
pub struct TaskSupport {
    cache: TaskCache,
    session: watch::Sender<Option<tonic::transport::Channel>>,
    pub observer: Option<TaskObserver>,
}

impl TaskSupport {
    /// Task files are cached in `cache_dir`.
    pub fn new(cache_dir: PathBuf) -> TaskSupport {
        TaskSupport {
            cache: TaskCache::new(cache_dir),
            session: watch::Sender::new(None),
            observer: None,
        }
    }

    pub fn with_observer(mut self, observer: TaskObserver) -> TaskSupport {
        self.observer = Some(observer);
        self
    }

    /// A session is up on `channel`: fetches go over its connection.
    pub fn session_opened(&self, channel: tonic::transport::Channel) {
        self.session.send_replace(Some(channel));
    }

    pub fn session_closed(&self) {
        self.session.send_replace(None);
    }

    /// The task file's bytes from the node, checked against the planned hash.
    async fn fetch(
        &self,
        certname: &str,
        transaction_id: &str,
        task: &TaskRun,
    ) -> Result<Vec<u8>, String> {
        let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
        let mut sessions = self.session.subscribe();
        loop {
            let channel = tokio::time::timeout_at(deadline, sessions.wait_for(Option::is_some))
                .await
                .map_err(|_| {
                    format!(
                        "no session to fetch task {} over within {FETCH_TIMEOUT:?}",
                        task.name
                    )
                })?
                .map_err(|_| "the agent is shutting down".to_string())?
                .clone()
                .ok_or("no session")?;
            let request = TaskFileRequest {
                certname: certname.to_string(),
                transaction_id: transaction_id.to_string(),
                sha256: task.sha256.clone(),
            };
            let reply = tokio::time::timeout_at(
                deadline,
                AgentSessionsClient::new(channel).fetch_task_file(request),
            )
            .await
            .map_err(|_| {
                format!(
                    "fetching task {} timed out after {FETCH_TIMEOUT:?}",
                    task.name
                )
            })?;
            match reply {
                Ok(file) => return Ok(file.into_inner().content),
                // The node's verdict on this request (file changed, not ours): final.
                Err(status)
                    if matches!(
                        status.code(),
                        tonic::Code::FailedPrecondition
                            | tonic::Code::InvalidArgument
                            | tonic::Code::PermissionDenied
                    ) =>
                {
                    return Err(status.message().to_string());
                }
                Err(status) => {
                    tracing::warn!(
                        "{certname}: fetching task {}: {}; retrying",
                        task.name,
                        crate::transport::describe_status(&status)
                    );
                    tokio::time::sleep(FETCH_RETRY).await;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(format!("could not fetch task {}", task.name));
                    }
                }
            }
        }
    }

    /// The task's file on disk, from the cache or fetched, with exactly the planned hash.
    pub async fn file(
        &self,
        certname: &str,
        transaction_id: &str,
        task: &TaskRun,
    ) -> Result<PathBuf, String> {
        if !valid_sha256(&task.sha256) || !valid_file_name(&task.file_name) {
            return Err(format!(
                "the request names a malformed task file ({:?}, sha256 {:?})",
                task.file_name, task.sha256
            ));
        }
        if let Some(path) = self.cache.get(&task.sha256, &task.file_name) {
            return Ok(path);
        }
        let content = self.fetch(certname, transaction_id, task).await?;
        verify(&content, &task.sha256)?;
        self.cache.put(&task.sha256, &task.file_name, &content)
    }
}

/// Refuses bytes whose hash is not the planned one.
pub fn verify(content: &[u8], sha256: &str) -> Result<(), String> {
    let received = sha256_hex(content);
    if received != sha256 {
        return Err(format!(
            "the task file received has sha256 {received}, not the {sha256} the job was planned with; nothing ran"
        ));
    }
    Ok(())
}

impl crate::session::Agent {
    /// Runs the task of `request`: file first (cached or fetched, hash checked), then its
    /// input from the request's parameters, then the runner — a process, or the simulation's
    /// draw (which sees the same file and input: the observer records both).
    pub async fn run_task(&self, request: &RunRequest, task: &TaskRun) -> StoredResult {
        let path = match self
            .tasks
            .file(&self.certname, &request.transaction_id, task)
            .await
        {
            Ok(path) => path,
            Err(why) => return StoredResult::errored(format!("task {}: {why}", task.name)),
        };
        let input = match exec::task_input(task, request.noop) {
            Ok(input) => input,
            Err(why) => return StoredResult::errored(format!("task {}: {why}", task.name)),
        };
        if let Some(observe) = &self.tasks.observer {
            let ran = std::fs::read(&path)
                .map(|c| sha256_hex(&c))
                .unwrap_or_default();
            observe(&TaskStart {
                transaction_id: &request.transaction_id,
                task,
                file_sha256: &ran,
                input: &input,
            });
        }
        match self.runner.as_ref() {
            crate::runner::Runner::Simulate(simulate) => {
                simulate.run_task(request, task, &self.certname).await
            }
            _ => exec::run_task_file(&path, task, input).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_with_another_hash_are_refused() {
        let planned = sha256_hex(b"echo planned");
        assert!(verify(b"echo planned", &planned).is_ok());
        let refused = verify(b"echo changed", &planned).unwrap_err();
        assert!(refused.contains("nothing ran"), "{refused}");
        assert!(refused.contains(&planned));
    }
}
