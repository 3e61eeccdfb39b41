//! The `puppet` runner: one `puppet agent --onetime --no-daemonize --verbose
//! --detailed-exitcodes --job-id <job>` per transaction, with the job's noop / environment /
//! debug flags and the identity's arguments ([`PuppetIdentity`]).
//!
//! The run goes as pxp-agent's puppet module runs it:
//! 1. disabled (`agent_disabled_lockfile`): errored at once, `agent_disabled: ...` with the
//!    reason given to `puppet agent --disable`;
//! 2. another run holds `agent_catalog_run_lockfile`: wait for it, at most `lock_wait`, then
//!    errored `agent_already_running: ...`; the same when Puppet itself says "already in
//!    progress" (a run started between our look and our start: we wait and try once more);
//! 3. the exit code decides the outcome — 0 unchanged and 2 changed are finished, 4 and 6
//!    (resource failures) failed, 1 and anything else errored (`agent_exit_non_zero`);
//! 4. for 0/2/4/6 the run's own files give the facts: `last_run_summary.yaml` the resource and
//!    event counts, time and configuration version; `last_run_report.yaml` the transaction
//!    uuid, status, noop and environment. Both must have been written by this run: a file that
//!    is absent, older than the run, malformed, or from another run (configuration versions
//!    disagree) makes the node errored with the file's name, never a result without metrics.
//!
//! A run that outlives `timeout` is killed with its whole process group.

use super::puppet_config::{PuppetIdentity, PuppetPaths};
use super::puppet_lock::{disabled_reason, wait_for_run_lock};
use super::summary::{RunReport, RunSummary, parse_report, parse_summary};
use super::{MESSAGE_BYTES_MAX, ProcessGroupGuard, tail_utf8};
use crate::proto::RunRequest;
use crate::spool::{Outcome, PuppetRunDetails, StoredResult};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

/// Largest run report read; a report is rewritten by every run, so a bigger one is not Puppet's.
pub const REPORT_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// How much older than the run's start a file written by the run may look: filesystems with
/// whole-second timestamps round down.
const MTIME_SLACK: Duration = Duration::from_secs(1);

pub struct PuppetRunner {
    pub identity: PuppetIdentity,
    pub paths: PuppetPaths,
    /// A run taking longer is killed, with its process group.
    pub timeout: Duration,
    /// Longest wait for another Puppet run to release the run lock.
    pub lock_wait: Duration,
}

/// The arguments of one run.
pub fn puppet_args(identity: &PuppetIdentity, request: &RunRequest) -> Vec<String> {
    let mut args = vec!["agent".to_string()];
    args.extend(identity.args());
    args.extend(
        [
            "--onetime",
            "--no-daemonize",
            "--verbose",
            "--detailed-exitcodes",
        ]
        .map(String::from),
    );
    // Puppet puts the job id into the catalog request and the report (PuppetDB keeps it).
    args.push("--job-id".into());
    args.push(request.job_id.to_string());
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

/// The outcome and status word pxp-module-puppet gives an exit code of
/// `puppet agent --detailed-exitcodes`, or None for an errored run.
pub fn outcome_of_exit_code(exit_code: i32) -> Option<(Outcome, &'static str)> {
    match exit_code {
        0 => Some((Outcome::Finished, "unchanged")),
        2 => Some((Outcome::Finished, "changed")),
        4 | 6 => Some((Outcome::Failed, "failed")),
        _ => None,
    }
}

fn is_already_running(output: &str) -> bool {
    output.contains("already in progress")
}

fn is_disabled(output: &str) -> bool {
    output.contains("administratively disabled")
}

impl PuppetRunner {
    pub async fn run(&self, request: &RunRequest) -> StoredResult {
        if let Some(reason) = disabled_reason(&self.paths.agent_disabled_lockfile) {
            return self.disabled(&reason);
        }
        let mut tries_left = 2;
        loop {
            tries_left -= 1;
            let lock = &self.paths.agent_catalog_run_lockfile;
            if let Some(pid) = wait_for_run_lock(lock, self.lock_wait).await {
                let holder = if pid == 0 {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                return StoredResult::errored(format!(
                    "agent_already_running: another Puppet run{holder} holds {} and did not \
                     finish within {} s (--puppet-lock-wait-secs)",
                    lock.display(),
                    self.lock_wait.as_secs()
                ));
            }
            let started = SystemTime::now();
            let output = match self.execute(request).await {
                Ok(output) => output,
                Err(errored) => return errored,
            };
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let exit_code = output.status.code().unwrap_or(-1);
            if exit_code != 0 && is_disabled(&text) {
                let reason = disabled_reason(&self.paths.agent_disabled_lockfile);
                return self.disabled(reason.as_deref().unwrap_or(""));
            }
            if exit_code != 0 && is_already_running(&text) {
                if tries_left > 0 {
                    continue;
                }
                return StoredResult::errored(format!(
                    "agent_already_running: a Puppet run is already in progress on this node \
                     ({})",
                    lock.display()
                ));
            }
            return self.result(request, &output, &text, started);
        }
    }

    fn disabled(&self, reason: &str) -> StoredResult {
        let reason = if reason.is_empty() {
            "no reason given".to_string()
        } else {
            format!("\"{reason}\"")
        };
        StoredResult::errored(format!(
            "agent_disabled: Puppet is disabled on this node ({reason}; {}); \
             `puppet agent --enable` re-enables it",
            self.paths.agent_disabled_lockfile.display()
        ))
    }

    /// Runs puppet in its own process group; a run past the timeout is killed with the group.
    async fn execute(&self, request: &RunRequest) -> Result<Output, StoredResult> {
        let bin = &self.identity.puppet_bin;
        let mut command = tokio::process::Command::new(bin);
        command
            .args(puppet_args(&self.identity, request))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = match super::spawn(&mut command).await {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoredResult::errored(format!(
                    "no_puppet_bin: {} not found",
                    bin.display()
                )));
            }
            Err(e) => {
                return Err(StoredResult::errored(format!(
                    "agent_failed_to_start: {}: {e}",
                    bin.display()
                )));
            }
        };
        let mut group = ProcessGroupGuard::new(child.id());
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => {
                group.disarm();
                Ok(output)
            }
            Ok(Err(e)) => Err(StoredResult::errored(format!(
                "agent_failed_to_start: {}: {e}",
                bin.display()
            ))),
            Err(_) => Err(StoredResult::errored(format!(
                "agent_timeout: the puppet run did not finish within {} s (--run-timeout-secs); \
                 it was killed with its child processes",
                self.timeout.as_secs()
            ))),
        }
    }

    fn result(
        &self,
        request: &RunRequest,
        output: &Output,
        text: &str,
        started: SystemTime,
    ) -> StoredResult {
        let Some(exit_code) = output.status.code() else {
            let mut result = StoredResult::errored(format!(
                "agent_exit_non_zero: puppet was ended by a signal ({}): {}",
                output.status,
                tail_utf8(text, MESSAGE_BYTES_MAX / 2)
            ));
            result.exit_code = -1;
            return result;
        };
        let Some((outcome, exit_status)) = outcome_of_exit_code(exit_code) else {
            let mut result = StoredResult::errored(format!(
                "agent_exit_non_zero: puppet exited {exit_code}: {}",
                tail_utf8(text, MESSAGE_BYTES_MAX / 2)
            ));
            result.exit_code = exit_code;
            return result;
        };
        let facts = self.read_run_files(started);
        let (summary, report, report_sha256) = match facts {
            Ok(facts) => facts,
            Err(problem) => {
                let mut result = StoredResult::errored(format!(
                    "{problem}; puppet exited {exit_code} ({exit_status}): {}",
                    tail_utf8(text, MESSAGE_BYTES_MAX / 2)
                ));
                result.exit_code = exit_code;
                return result;
            }
        };
        let mut metrics = summary.resources.clone();
        if let Some(noop) = summary.events.get("noop") {
            metrics.insert("noop".into(), *noop);
        }
        StoredResult {
            outcome,
            status: if report.status.is_empty() {
                exit_status.to_string()
            } else {
                report.status.clone()
            },
            metrics,
            configuration_version: if summary.configuration_version.is_empty() {
                report.configuration_version.clone()
            } else {
                summary.configuration_version.clone()
            },
            puppet_transaction_uuid: report.transaction_uuid.clone(),
            environment: if report.environment.is_empty() {
                request.environment.clone()
            } else {
                report.environment.clone()
            },
            exit_code,
            message: tail_utf8(text, MESSAGE_BYTES_MAX),
            puppet: PuppetRunDetails {
                noop: report.noop,
                noop_pending: report.noop_pending,
                report_sha256,
                time_total_ms: summary.time_total_ms,
                events: summary.events,
            },
            stderr: String::new(),
        }
    }

    /// The summary and report this run wrote, and the report's digest; or what is wrong with
    /// them, in words that name the file.
    fn read_run_files(
        &self,
        started: SystemTime,
    ) -> Result<(RunSummary, RunReport, String), String> {
        let summary_path = &self.paths.lastrunfile;
        let report_path = &self.paths.lastrunreport;
        let summary_bytes = read_written_since(summary_path, started, "--lastrunfile")
            .map_err(|e| format!("no_last_run_summary: {e}"))?;
        let summary = parse_summary(&String::from_utf8_lossy(&summary_bytes))
            .map_err(|e| format!("invalid_last_run_summary: {}: {e}", summary_path.display()))?;
        let report_bytes = read_written_since(report_path, started, "--lastrunreport")
            .map_err(|e| format!("no_last_run_report: {e}"))?;
        let report = parse_report(&String::from_utf8_lossy(&report_bytes))
            .map_err(|e| format!("invalid_last_run_report: {}: {e}", report_path.display()))?;
        if !summary.configuration_version.is_empty()
            && !report.configuration_version.is_empty()
            && summary.configuration_version != report.configuration_version
        {
            return Err(format!(
                "invalid_last_run_summary: {} is of configuration version {} but this run's \
                 report ({}) of {}: does another Puppet identity on this host write the same \
                 summary? (give each its own publicdir)",
                summary_path.display(),
                summary.configuration_version,
                report_path.display(),
                report.configuration_version
            ));
        }
        let digest = Sha256::digest(&report_bytes);
        let report_sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok((summary, report, report_sha256))
    }
}

/// The bytes of `path` if it was written since `started`.
fn read_written_since(path: &Path, started: SystemTime, flag: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{shown} does not exist: is it where this Puppet writes it? ({flag}, or \
             `puppet config print` for the identity)"
        ),
        _ => format!("{shown}: {e}"),
    })?;
    let modified = metadata.modified().map_err(|e| format!("{shown}: {e}"))?;
    if modified + MTIME_SLACK < started {
        return Err(format!(
            "{shown} was not written by this run (it is older than the run): is it where this \
             Puppet writes it? ({flag})"
        ));
    }
    if metadata.len() > REPORT_BYTES_MAX {
        return Err(format!(
            "{shown} is {} bytes, more than the {REPORT_BYTES_MAX} read",
            metadata.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{shown}: {e}"))
}

#[cfg(test)]
#[path = "puppet_tests.rs"]
mod tests;
