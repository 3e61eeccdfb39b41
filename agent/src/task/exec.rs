//! Runs a task file: the parameters as a JSON object on standard input and/or as `PT_<name>`
//! environment variables (the metadata's `input_method`), plus the metaparameters `_task` and,
//! in noop mode, `_noop`; in its own process group, killed with its children at the timeout;
//! at most [`OUTPUT_BYTES_MAX`] of stdout kept (the rest is read and discarded, so a chatty
//! task cannot block or exhaust the agent) and [`STDERR_BYTES_MAX`] of stderr.

use crate::proto::TaskRun;
use crate::runner::{ProcessGroupGuard, spawn};
use crate::spool::{Outcome, StoredResult};
use serde_json::{Map, Value};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Most of a task's stdout kept: what the replicated state keeps of a result.
pub const OUTPUT_BYTES_MAX: usize = crate::runner::MESSAGE_BYTES_MAX;
/// Most of a task's stderr kept.
pub const STDERR_BYTES_MAX: usize = 4 * 1024;

/// The parameters the task gets: the job's, plus `_task` and (noop) `_noop`.
pub fn task_input(task: &TaskRun, noop: bool) -> Result<Map<String, Value>, String> {
    let mut params: Map<String, Value> = serde_json::from_str(&task.params_json)
        .map_err(|e| format!("the task's parameters are not a JSON object: {e}"))?;
    params.insert("_task".into(), Value::String(task.name.clone()));
    if noop {
        params.insert("_noop".into(), Value::Bool(true));
    }
    Ok(params)
}

/// `PT_<name>` variables: strings as they are, anything else as JSON text.
pub fn environment_variables(params: &Map<String, Value>) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (format!("PT_{name}"), text)
        })
        .collect()
}

/// Reads `reader` to its end, keeping the first `max` bytes; says whether any were dropped.
async fn read_bounded(mut reader: impl AsyncRead + Unpin, max: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut dropped = false;
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return (kept, dropped),
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
                dropped |= n > room;
            }
        }
    }
}

/// Runs the file at `path` with `params` ([`task_input`]'s) as its input.
pub async fn run_task_file(
    path: &Path,
    task: &TaskRun,
    params: Map<String, Value>,
) -> StoredResult {
    let (use_stdin, use_environment) = match task.input_method.as_str() {
        "stdin" => (true, false),
        "environment" => (false, true),
        _ => (true, true),
    };
    let mut command = tokio::process::Command::new(path);
    command
        .stdin(if use_stdin {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if use_environment {
        command.envs(environment_variables(&params));
    }
    let mut child = match spawn(&mut command).await {
        Ok(child) => child,
        Err(e) => {
            return StoredResult::errored(format!("cannot run task {}: {e}", task.name));
        }
    };
    // Dropped on every way out of this function but a normal exit: nothing keeps running.
    let mut group = ProcessGroupGuard::new(child.id());
    if let Some(mut stdin) = child.stdin.take() {
        let input = Value::Object(params).to_string();
        // A task that never reads its input must not block the agent: write in the
        // background, and ignore a closed pipe.
        tokio::spawn(async move {
            let _ = stdin.write_all(input.as_bytes()).await;
        });
    }
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return StoredResult::errored("the task's output pipes were not set up");
    };
    let timeout = Duration::from_secs(u64::from(task.timeout_secs.max(1)));
    let finished = tokio::time::timeout(timeout, async {
        let (out, err, status) = tokio::join!(
            read_bounded(stdout, OUTPUT_BYTES_MAX),
            read_bounded(stderr, STDERR_BYTES_MAX),
            child.wait()
        );
        (out, err, status)
    })
    .await;
    let ((stdout, truncated), (stderr, _), status) = match finished {
        Ok(done) => done,
        Err(_) => {
            return StoredResult::errored(format!(
                "task {} did not finish within {} s and was killed",
                task.name, task.timeout_secs
            ));
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(e) => return StoredResult::errored(format!("waiting for task {}: {e}", task.name)),
    };
    group.disarm();
    let mut stderr = String::from_utf8_lossy(&stderr).into_owned();
    let exit_code = status.code().unwrap_or(-1);
    let (outcome, word) = if truncated {
        stderr = format!(
            "the task wrote more than {OUTPUT_BYTES_MAX} bytes to stdout; the rest was discarded\n{stderr}"
        );
        (Outcome::Failed, "output-too-large")
    } else if status.success() {
        (Outcome::Finished, "finished")
    } else {
        (Outcome::Failed, "failed")
    };
    StoredResult {
        outcome,
        status: word.into(),
        metrics: Default::default(),
        configuration_version: String::new(),
        puppet_transaction_uuid: String::new(),
        environment: String::new(),
        exit_code,
        message: String::from_utf8_lossy(&stdout).into_owned(),
        puppet: Default::default(),
        stderr: crate::runner::tail_utf8(&stderr, STDERR_BYTES_MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(params: &str, input_method: &str, timeout_secs: u32) -> TaskRun {
        TaskRun {
            name: "demo::echo".into(),
            file_name: "echo.sh".into(),
            sha256: String::new(),
            size_bytes: 0,
            params_json: params.into(),
            input_method: input_method.into(),
            timeout_secs,
        }
    }

    /// Runs `task` at `path` with its parameters, not in noop mode.
    async fn run(path: &Path, task: &TaskRun) -> StoredResult {
        run_task_file(path, task, task_input(task, false).unwrap()).await
    }

    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("task.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    #[tokio::test]
    async fn parameters_arrive_on_stdin_and_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(
            dir.path(),
            "cat; echo; echo \"$PT_name|$PT_count|$PT__task|$PT__noop\"",
        );
        let run = task(r#"{"count":3,"name":"a b"}"#, "both", 10);
        let result = run_task_file(&path, &run, task_input(&run, true).unwrap()).await;
        assert_eq!(result.outcome, Outcome::Finished, "{result:?}");
        let mut lines = result.message.lines();
        let stdin: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(
            stdin,
            serde_json::json!({"count": 3, "name": "a b", "_task": "demo::echo", "_noop": true})
        );
        assert_eq!(lines.next(), Some("a b|3|demo::echo|true"));
    }

    #[tokio::test]
    async fn input_methods_choose_the_channel() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "cat; echo \"[$PT_name]\"");
        let stdin_only = run(&path, &task(r#"{"name":"x"}"#, "stdin", 10)).await;
        assert!(stdin_only.message.contains(r#""name":"x""#));
        assert!(stdin_only.message.contains("[]"), "{}", stdin_only.message);
        let env_only = run(&path, &task(r#"{"name":"x"}"#, "environment", 10)).await;
        assert_eq!(env_only.message, "[x]\n");
    }

    #[tokio::test]
    async fn a_failing_task_reports_its_exit_code_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "echo partial; echo broken >&2; exit 3");
        let result = run(&path, &task("{}", "both", 10)).await;
        assert_eq!(result.outcome, Outcome::Failed);
        assert_eq!(result.exit_code, 3);
        assert_eq!(result.message, "partial\n");
        assert_eq!(result.stderr, "broken\n");
    }

    #[tokio::test]
    async fn a_task_past_its_timeout_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let path = script(
            dir.path(),
            &format!("(sleep 2; touch {}) & sleep 30", marker.display()),
        );
        let started = std::time::Instant::now();
        let result = run(&path, &task("{}", "both", 1)).await;
        assert_eq!(result.outcome, Outcome::Errored);
        assert!(
            result.message.contains("did not finish within 1 s"),
            "{}",
            result.message
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "a child of the task outlived the timeout");
    }

    #[tokio::test]
    async fn output_beyond_the_limit_is_discarded_and_the_run_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "head -c 100000 /dev/zero | tr '\\0' 'x'");
        let result = run(&path, &task("{}", "both", 10)).await;
        assert_eq!(result.outcome, Outcome::Failed);
        assert_eq!(result.status, "output-too-large");
        assert_eq!(result.message.len(), OUTPUT_BYTES_MAX);
        assert!(result.stderr.contains("more than"), "{}", result.stderr);
    }
}
