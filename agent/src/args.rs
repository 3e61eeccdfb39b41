//! `porch agent` / `porch-agent` flags, validated into agents ready to run.

use crate::runner::puppet_config::{PuppetIdentity, PuppetPaths, config_print, is_inside};
use crate::runner::{
    Runner, command::CommandRunner, puppet::PuppetRunner, simulate::SimulateRunner,
};
use crate::session::Agent;
use crate::spool::Spool;
use crate::tls_flags::{self, TlsArgs};
use crate::transport;
use clap::{Args, ValueEnum};
use porch_tls::TlsIdentity;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The task cache, inside the spool directory (the spool reads only its `*.json` files).
pub const TASK_CACHE_DIR: &str = "task-cache";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RunnerKind {
    Puppet,
    Command,
    Simulate,
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// This node's certname (with --sessions: the prefix of the simulated certnames).
    #[arg(long)]
    pub certname: String,
    /// Orchestrator URLs, comma-separated; the agent fails over between them in order.
    /// https://host:port (TLS; the server's certificate must be for `host`), or http:// with
    /// --insecure-http.
    #[arg(long, value_delimiter = ',', required = true)]
    pub service_url: Vec<String>,
    /// Where accepted transactions and their results are kept (survives restarts).
    #[arg(long)]
    pub spool_dir: PathBuf,
    #[arg(long, value_enum, default_value = "puppet")]
    pub runner: RunnerKind,
    /// The executable the `command` runner runs.
    #[arg(long)]
    pub command: Option<PathBuf>,
    /// puppet runner: the `puppet` executable.
    #[arg(long, default_value = "puppet")]
    pub puppet_bin: PathBuf,
    /// puppet runner: the agent identity's confdir, passed as `--confdir` to
    /// `puppet config print` and to every run (several identities on one host).
    #[arg(long, value_name = "DIR")]
    pub puppet_confdir: Option<PathBuf>,
    /// puppet runner: passed as `--vardir`, like --puppet-confdir.
    #[arg(long, value_name = "DIR")]
    pub puppet_vardir: Option<PathBuf>,
    /// puppet runner: passed as `--ssldir`, like --puppet-confdir (the Puppet agent's
    /// certificates; --ssldir is porch's own).
    #[arg(long, value_name = "DIR")]
    pub puppet_ssldir: Option<PathBuf>,
    /// puppet runner: one more argument for `puppet config print` and every run, verbatim;
    /// repeat it for several (`--puppet-arg=--publicdir=/srv/web1/public`).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub puppet_arg: Vec<String>,
    /// puppet runner: last_run_summary.yaml [default: `puppet config print lastrunfile`].
    #[arg(long, value_name = "FILE")]
    pub lastrunfile: Option<PathBuf>,
    /// puppet runner: last_run_report.yaml [default: `puppet config print lastrunreport`].
    #[arg(long, value_name = "FILE")]
    pub lastrunreport: Option<PathBuf>,
    /// puppet runner: present while Puppet is disabled [default: `puppet config print
    /// agent_disabled_lockfile`].
    #[arg(long, value_name = "FILE")]
    pub agent_disabled_lockfile: Option<PathBuf>,
    /// puppet runner: held by a run applying a catalog [default: `puppet config print
    /// agent_catalog_run_lockfile`].
    #[arg(long, value_name = "FILE")]
    pub agent_catalog_run_lockfile: Option<PathBuf>,
    /// puppet runner: how long `puppet config print` may take at start before the agent
    /// gives up (it is killed).
    #[arg(long, default_value_t = 60)]
    pub puppet_config_timeout_secs: u64,
    /// puppet runner: how long a run waits for another Puppet run (the daemon's, someone's
    /// `puppet agent -t`) to release the run lock before it is errored; 0 refuses at once.
    #[arg(long, default_value_t = 600)]
    pub puppet_lock_wait_secs: u64,
    /// A run taking longer than this is errored (the process is killed).
    #[arg(long, default_value_t = 3600)]
    pub run_timeout_secs: u64,
    /// simulate runner: seed of the duration/outcome draws.
    #[arg(long, default_value_t = 1)]
    pub simulate_seed: u64,
    /// simulate runner: run duration range, `MIN..MAX` milliseconds.
    #[arg(long, default_value = "100..1000")]
    pub simulate_duration_ms: String,
    /// simulate runner: probability that a run fails.
    #[arg(long, default_value_t = 0.1)]
    pub simulate_failure_rate: f64,
    /// Host this many agent sessions in one process (certnames `<certname>1..N`, each with
    /// its own certificate in --ssldir); for load tests.
    #[arg(long, default_value_t = 1)]
    pub sessions: usize,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The agents some flags describe, and the TLS identities they dial with (none with
/// --insecure-http), which the caller keeps reloading.
pub struct Agents {
    pub agents: Vec<Arc<Agent>>,
    pub identities: Vec<Arc<TlsIdentity>>,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (min, max) = text
        .split_once("..")
        .ok_or_else(|| format!("--simulate-duration-ms: '{text}' is not MIN..MAX"))?;
    let min: u64 = min
        .trim()
        .parse()
        .map_err(|_| format!("--simulate-duration-ms: '{min}' is not a number"))?;
    let max: u64 = max
        .trim()
        .parse()
        .map_err(|_| format!("--simulate-duration-ms: '{max}' is not a number"))?;
    if min > max {
        return Err(format!(
            "--simulate-duration-ms: {min} is greater than {max}"
        ));
    }
    Ok((min, max))
}

impl AgentArgs {
    pub fn runner(&self) -> Result<Runner, String> {
        let timeout = Duration::from_secs(self.run_timeout_secs.max(1));
        Ok(match self.runner {
            RunnerKind::Puppet => Runner::Puppet(Box::new(self.puppet_runner(timeout)?)),
            RunnerKind::Command => Runner::Command(CommandRunner {
                command: self
                    .command
                    .clone()
                    .ok_or("--runner command needs --command <executable>")?,
                timeout,
            }),
            RunnerKind::Simulate => {
                let (min, max) = parse_range(&self.simulate_duration_ms)?;
                if !(0.0..=1.0).contains(&self.simulate_failure_rate) {
                    return Err(format!(
                        "--simulate-failure-rate: {} is not between 0 and 1",
                        self.simulate_failure_rate
                    ));
                }
                Runner::Simulate(SimulateRunner {
                    seed: self.simulate_seed,
                    duration_ms_min: min,
                    duration_ms_max: max,
                    failure_rate: self.simulate_failure_rate,
                })
            }
        })
    }

    /// The puppet runner, with the paths its Puppet reports for the identity unless every
    /// one is given by a flag. Runs `puppet config print`: call it off the async threads.
    pub fn puppet_runner(&self, timeout: Duration) -> Result<PuppetRunner, String> {
        let identity = PuppetIdentity {
            puppet_bin: self.puppet_bin.clone(),
            confdir: self.puppet_confdir.clone(),
            vardir: self.puppet_vardir.clone(),
            ssldir: self.puppet_ssldir.clone(),
            extra_args: self.puppet_arg.clone(),
        };
        let flags = [
            &self.lastrunfile,
            &self.lastrunreport,
            &self.agent_disabled_lockfile,
            &self.agent_catalog_run_lockfile,
        ];
        let printed = if flags.iter().all(|flag| flag.is_some()) {
            // No `config print` to find out: check that there is a puppet at all.
            find_executable(&identity.puppet_bin).ok_or_else(|| {
                format!(
                    "--puppet-bin {}: not found (install Puppet's agent, or name the executable)",
                    identity.puppet_bin.display()
                )
            })?;
            None
        } else {
            let limit = Duration::from_secs(self.puppet_config_timeout_secs.max(1));
            Some(config_print(&identity, limit)?)
        };
        let pick = |flag: &Option<PathBuf>, printed: Option<&PathBuf>| {
            // `printed` is there whenever a flag is missing.
            flag.clone()
                .or_else(|| printed.cloned())
                .unwrap_or_default()
        };
        let from_puppet = printed.as_ref().map(|p| &p.paths);
        let paths = PuppetPaths {
            lastrunfile: pick(&self.lastrunfile, from_puppet.map(|p| &p.lastrunfile)),
            lastrunreport: pick(&self.lastrunreport, from_puppet.map(|p| &p.lastrunreport)),
            agent_disabled_lockfile: pick(
                &self.agent_disabled_lockfile,
                from_puppet.map(|p| &p.agent_disabled_lockfile),
            ),
            agent_catalog_run_lockfile: pick(
                &self.agent_catalog_run_lockfile,
                from_puppet.map(|p| &p.agent_catalog_run_lockfile),
            ),
        };
        if let Some(printed) = &printed {
            if !printed.certname.is_empty() && printed.certname != self.certname {
                tracing::warn!(
                    "the Puppet identity runs as certname {:?}, this agent is {:?}",
                    printed.certname,
                    self.certname
                );
            }
            let own_identity = self.puppet_confdir.is_some() || self.puppet_vardir.is_some();
            if own_identity && !is_inside(&paths.lastrunfile, &printed.vardir) {
                tracing::warn!(
                    "lastrunfile {} lies outside this identity's vardir {}: other Puppet \
                     identities on this host write it too; set publicdir in its puppet.conf \
                     (or --puppet-arg=--publicdir=DIR)",
                    paths.lastrunfile.display(),
                    printed.vardir.display()
                );
            }
        }
        tracing::info!(
            "puppet runner: {} {}; summary {}, report {}, locks {} and {}",
            identity.puppet_bin.display(),
            identity.args().join(" "),
            paths.lastrunfile.display(),
            paths.lastrunreport.display(),
            paths.agent_catalog_run_lockfile.display(),
            paths.agent_disabled_lockfile.display()
        );
        Ok(PuppetRunner {
            identity,
            paths,
            timeout,
            lock_wait: Duration::from_secs(self.puppet_lock_wait_secs),
        })
    }

    /// The agents these flags describe (one, or `--sessions` of them), each with its checked
    /// TLS identity loaded. Reads files and does crypto: call it off the async threads.
    pub fn agents(&self) -> Result<Agents, String> {
        if !porch_certname_ok(&self.certname) {
            return Err(format!(
                "--certname: {:?} is not a valid certname",
                self.certname
            ));
        }
        for url in &self.service_url {
            transport::tonic_url(url, self.tls.insecure_http)?;
        }
        if self.sessions == 0 {
            return Err("--sessions must be at least 1".into());
        }
        if self.sessions > 1 && self.runner != RunnerKind::Simulate {
            return Err("--sessions above 1 is for load tests and needs --runner simulate".into());
        }
        if self.sessions > 1 && self.tls.cert.is_some() {
            return Err(format!(
                "--cert names one certificate, but each of the --sessions {} simulated agents \
                 ({}1 .. {}{}) needs its own: put them in --ssldir",
                self.sessions, self.certname, self.certname, self.sessions
            ));
        }
        let runner = Arc::new(self.runner()?);
        let mut agents = Agents {
            agents: Vec::with_capacity(self.sessions),
            identities: Vec::new(),
        };
        for i in 0..self.sessions {
            let (certname, spool_dir) = if self.sessions == 1 {
                (self.certname.clone(), self.spool_dir.clone())
            } else {
                let name = format!("{}{}", self.certname, i + 1);
                (name.clone(), self.spool_dir.join(&name))
            };
            let connector = if self.tls.insecure_http {
                transport::plain_connector()
            } else {
                let identity = self.tls.load_identity(&certname)?;
                agents.identities.push(identity.clone());
                transport::tls_connector(identity)
            };
            let spool = Spool::open(&spool_dir)?;
            agents.agents.push(Arc::new(Agent {
                certname,
                urls: self.service_url.clone(),
                spool: Arc::new(Mutex::new(spool)),
                runner: runner.clone(),
                connector: Some(connector),
                observer: None,
                tasks: crate::task::TaskSupport::new(spool_dir.join(TASK_CACHE_DIR)),
                run_queue_max: crate::session::RUN_QUEUE_MAX,
            }));
        }
        Ok(agents)
    }
}

/// `bin` itself if it names a file, or the first `bin` on PATH.
fn find_executable(bin: &std::path::Path) -> Option<PathBuf> {
    if bin.components().count() > 1 {
        return bin.is_file().then(|| bin.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|candidate| candidate.is_file())
}

fn porch_certname_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != ',')
}

/// Runs the agent(s) until the process is stopped.
pub async fn run_agent(args: AgentArgs) -> ExitCode {
    let reload_secs = args.tls.tls_reload_secs;
    let insecure_http = args.tls.insecure_http;
    let loaded = tokio::task::spawn_blocking(move || args.agents()).await;
    let Agents { agents, identities } = match loaded {
        Ok(Ok(agents)) => agents,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: loading the agents failed: {e}");
            return ExitCode::from(1);
        }
    };
    if insecure_http {
        tracing::warn!(
            "--insecure-http: talking plain HTTP without certificates; anyone on the network \
             can read and forge this agent's sessions"
        );
    }
    let _reloader = (reload_secs > 0 && !identities.is_empty()).then(|| {
        AbortOnDrop(tls_flags::spawn_reloader(
            &identities,
            Duration::from_secs(reload_secs),
        ))
    });
    drop(identities);
    let tasks: Vec<_> = agents.into_iter().map(|a| tokio::spawn(a.run())).collect();
    tokio::select! {
        _ = futures::future::join_all(tasks) => ExitCode::SUCCESS,
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn parse(extra: &[&str]) -> AgentArgs {
        let mut args = vec![
            "porch-agent",
            "--certname=web1",
            "--service-url=https://orch1:8143",
            "--spool-dir=/tmp/spool",
        ];
        args.extend(extra);
        Cli::try_parse_from(args).unwrap().agent
    }

    #[test]
    fn puppet_paths_come_from_config_print_for_the_identity_unless_given() {
        let dir = tempfile::tempdir().unwrap();
        let puppet = dir.path().join("puppet");
        // Answers `config print` the way Puppet does, naming the confdir it was given.
        std::fs::write(
            &puppet,
            "#!/bin/sh\necho \"$@\" > \"$(dirname $0)/args\"\n\
             echo \"agent_catalog_run_lockfile = /id/var/state/agent_catalog_run.lock\"\n\
             echo \"agent_disabled_lockfile = /id/var/state/agent_disabled.lock\"\n\
             echo \"certname = web1\"\n\
             echo \"lastrunfile = /id/var/public/last_run_summary.yaml\"\n\
             echo \"lastrunreport = /id/var/state/last_run_report.yaml\"\n\
             echo \"vardir = /id/var\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&puppet, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = format!("--puppet-bin={}", puppet.display());
        let args = parse(&[
            &bin,
            "--puppet-confdir=/id/etc",
            "--puppet-arg=--server=puppet.lab",
            "--lastrunreport=/elsewhere/report.yaml",
        ]);
        let runner = args.puppet_runner(Duration::from_secs(60)).unwrap();
        assert_eq!(
            runner.paths,
            PuppetPaths {
                lastrunfile: "/id/var/public/last_run_summary.yaml".into(),
                lastrunreport: "/elsewhere/report.yaml".into(),
                agent_disabled_lockfile: "/id/var/state/agent_disabled.lock".into(),
                agent_catalog_run_lockfile: "/id/var/state/agent_catalog_run.lock".into(),
            }
        );
        let asked = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert!(
            asked
                .starts_with("config print --section agent --confdir /id/etc --server=puppet.lab "),
            "{asked}"
        );
        assert_eq!(runner.lock_wait, Duration::from_secs(600));
    }

    #[test]
    fn a_missing_puppet_is_an_error_at_start_naming_it_but_only_for_the_puppet_runner() {
        let missing = "--puppet-bin=/nonexistent/bin/puppet";
        let error = match parse(&[missing]).runner() {
            Err(e) => e,
            Ok(_) => panic!("a missing puppet was accepted"),
        };
        assert!(
            error.contains("/nonexistent/bin/puppet: not found"),
            "{error}"
        );
        let all_paths = [
            missing,
            "--lastrunfile=/a",
            "--lastrunreport=/b",
            "--agent-disabled-lockfile=/c",
            "--agent-catalog-run-lockfile=/d",
        ];
        let error = match parse(&all_paths).runner() {
            Err(e) => e,
            Ok(_) => panic!("a missing puppet was accepted"),
        };
        assert!(
            error.contains("/nonexistent/bin/puppet: not found"),
            "{error}"
        );
        assert!(parse(&[missing, "--runner=simulate"]).runner().is_ok());
    }
}
