//! The `command` runner: runs an executable with the job's parameters in its environment.
//! Exit 0 is a finished run, anything else a failed one; stdout becomes the result message.

use super::{MESSAGE_BYTES_MAX, tail_utf8};
use crate::proto::RunRequest;
use crate::spool::{Outcome, StoredResult};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub struct CommandRunner {
    pub command: PathBuf,
    pub timeout: Duration,
}

impl CommandRunner {
    pub async fn run(&self, request: &RunRequest, certname: &str) -> StoredResult {
        let mut command = tokio::process::Command::new(&self.command);
        command
            .env("PORCH_JOB_ID", request.job_id.to_string())
            .env("PORCH_NODE", certname)
            .env("PORCH_TRANSACTION_ID", &request.transaction_id)
            .env("PORCH_ENVIRONMENT", &request.environment)
            .env("PORCH_NOOP", if request.noop { "true" } else { "false" })
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = super::spawn(&mut command).await;
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                return StoredResult::errored(format!(
                    "cannot run {}: {e}",
                    self.command.display()
                ));
            }
        };
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return StoredResult::errored(format!("{} failed: {e}", self.command.display()));
            }
            Err(_) => {
                return StoredResult::errored(format!(
                    "{} did not finish within {} s",
                    self.command.display(),
                    self.timeout.as_secs()
                ));
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut message = tail_utf8(&stdout, MESSAGE_BYTES_MAX);
        if !output.status.success() && !stderr.trim().is_empty() {
            message = tail_utf8(&format!("{message}{stderr}"), MESSAGE_BYTES_MAX);
        }
        let exit_code = output.status.code().unwrap_or(-1);
        let ok = output.status.success();
        StoredResult {
            outcome: if ok {
                Outcome::Finished
            } else {
                Outcome::Failed
            },
            status: if ok {
                "finished".into()
            } else {
                "failed".into()
            },
            metrics: BTreeMap::new(),
            configuration_version: String::new(),
            puppet_transaction_uuid: String::new(),
            environment: request.environment.clone(),
            exit_code,
            message,
            puppet: Default::default(),
            stderr: String::new(),
        }
    }
}
