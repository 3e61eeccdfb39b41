//! The `puppet` runner: `puppet agent --onetime --no-daemonize --verbose --detailed-exitcodes`
//! with the job's flags, mapped as pxp-module-puppet does (exit 0 unchanged, 2 changed,
//! 4 failures, 6 changes and failures, anything else an error), metrics read from
//! `last_run_summary.yaml`, transaction uuid and environment from `last_run_report.yaml`.

use super::summary::{from_report, from_summary};
use super::{MESSAGE_BYTES_MAX, tail_utf8};
use crate::proto::RunRequest;
use crate::spool::{Outcome, StoredResult};
use std::path::PathBuf;
use std::time::Duration;

pub struct PuppetRunner {
    pub puppet_bin: PathBuf,
    pub lastrunfile: PathBuf,
    pub lastrunreport: PathBuf,
    pub timeout: Duration,
}

/// The arguments of one run.
pub fn puppet_args(request: &RunRequest) -> Vec<String> {
    let mut args: Vec<String> = [
        "agent",
        "--onetime",
        "--no-daemonize",
        "--verbose",
        "--detailed-exitcodes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if request.noop {
        args.push("--noop".into());
    }
    if request.no_noop {
        args.push("--no-noop".into());
    }
    if request.enforce_environment && !request.environment.is_empty() {
        args.push("--environment".into());
        args.push(request.environment.clone());
    }
    for (on, flag) in [
        (request.debug, "--debug"),
        (request.trace, "--trace"),
        (request.evaltrace, "--evaltrace"),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    args
}

impl PuppetRunner {
    pub async fn run(&self, request: &RunRequest) -> StoredResult {
        let mut command = tokio::process::Command::new(&self.puppet_bin);
        command
            .args(puppet_args(request))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = super::spawn(&mut command).await;
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return StoredResult::errored(format!(
                    "no_puppet_bin: {} not found",
                    self.puppet_bin.display()
                ));
            }
            Err(e) => return StoredResult::errored(format!("agent_failed_to_start: {e}")),
        };
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return StoredResult::errored(format!("agent_failed_to_start: {e}")),
            Err(_) => {
                return StoredResult::errored(format!(
                    "the puppet run did not finish within {} s",
                    self.timeout.as_secs()
                ));
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if text.contains("already in progress") {
            return StoredResult::errored(
                "agent_already_running: a Puppet run is already in progress on this node",
            );
        }
        if text.contains("administratively disabled") {
            return StoredResult::errored(
                "agent_disabled: Puppet is administratively disabled on this node",
            );
        }
        let exit_code = output.status.code().unwrap_or(-1);
        let (outcome, status) = match exit_code {
            0 => (Outcome::Finished, "unchanged"),
            2 => (Outcome::Finished, "changed"),
            4 | 6 => (Outcome::Failed, "failed"),
            _ => {
                let mut result = StoredResult::errored(format!(
                    "agent_exit_non_zero: puppet exited {exit_code}: {}",
                    tail_utf8(&text, MESSAGE_BYTES_MAX / 2)
                ));
                result.exit_code = exit_code;
                return result;
            }
        };
        let (metrics, configuration_version) = match std::fs::read_to_string(&self.lastrunfile) {
            Ok(summary) => from_summary(&summary),
            Err(_) => Default::default(),
        };
        let (puppet_transaction_uuid, environment) =
            match std::fs::read_to_string(&self.lastrunreport) {
                Ok(report) => from_report(&report),
                Err(_) => Default::default(),
            };
        StoredResult {
            outcome,
            status: status.into(),
            metrics,
            configuration_version,
            puppet_transaction_uuid,
            environment: if environment.is_empty() {
                request.environment.clone()
            } else {
                environment
            },
            exit_code,
            message: tail_utf8(&text, MESSAGE_BYTES_MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_puppet(dir: &std::path::Path, exit: i32, say: &str) -> PuppetRunner {
        let summary = dir.join("last_run_summary.yaml");
        let report = dir.join("last_run_report.yaml");
        let script = dir.join("puppet");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" > {args}\necho '{say}'\nprintf -- '---\\nversion:\\n  config: 42\\nresources:\\n  changed: 1\\n  total: 5\\n' > {summary}\nprintf -- 'transaction_uuid: abc\\nenvironment: production\\n' > {report}\nexit {exit}\n",
                args = dir.join("args").display(),
                summary = summary.display(),
                report = report.display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        PuppetRunner {
            puppet_bin: script,
            lastrunfile: summary,
            lastrunreport: report,
            timeout: Duration::from_secs(30),
        }
    }

    fn request() -> RunRequest {
        RunRequest {
            transaction_id: "t".into(),
            job_id: 1,
            environment: "production".into(),
            noop: true,
            enforce_environment: true,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn exit_codes_map_as_pxp_does() {
        for (exit, outcome, status) in [
            (0, Outcome::Finished, "unchanged"),
            (2, Outcome::Finished, "changed"),
            (4, Outcome::Failed, "failed"),
            (6, Outcome::Failed, "failed"),
            (1, Outcome::Errored, "errored"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let result = fake_puppet(dir.path(), exit, "ok").run(&request()).await;
            assert_eq!(
                (result.outcome.clone(), result.status.as_str()),
                (outcome, status),
                "exit {exit}: {}",
                result.message
            );
            if exit != 1 {
                assert_eq!(result.metrics["changed"], 1);
                assert_eq!(result.configuration_version, "42");
                assert_eq!(result.puppet_transaction_uuid, "abc");
            }
            let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
            assert!(args.contains("--onetime --no-daemonize --verbose --detailed-exitcodes --noop --environment production"), "{args}");
        }
    }

    #[tokio::test]
    async fn run_in_progress_and_disabled_are_explicit_errors() {
        let dir = tempfile::tempdir().unwrap();
        let result = fake_puppet(
            dir.path(),
            1,
            "Run of Puppet configuration client already in progress; skipping",
        )
        .run(&request())
        .await;
        assert!(
            result.message.starts_with("agent_already_running"),
            "{}",
            result.message
        );
        let result = fake_puppet(
            dir.path(),
            1,
            "Skipping run of Puppet configuration client; administratively disabled",
        )
        .run(&request())
        .await;
        assert!(
            result.message.starts_with("agent_disabled"),
            "{}",
            result.message
        );
        let mut missing = fake_puppet(dir.path(), 0, "");
        missing.puppet_bin = dir.path().join("no-such-puppet");
        assert!(
            missing
                .run(&request())
                .await
                .message
                .starts_with("no_puppet_bin")
        );
    }
}
