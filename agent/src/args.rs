//! `porch agent` / `porch-agent` flags, validated into agents ready to run.

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
    #[arg(long, default_value = "puppet")]
    pub puppet_bin: PathBuf,
    #[arg(
        long,
        default_value = "/opt/puppetlabs/puppet/public/last_run_summary.yaml"
    )]
    pub lastrunfile: PathBuf,
    #[arg(
        long,
        default_value = "/opt/puppetlabs/puppet/cache/state/last_run_report.yaml"
    )]
    pub lastrunreport: PathBuf,
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
            RunnerKind::Puppet => Runner::Puppet(PuppetRunner {
                puppet_bin: self.puppet_bin.clone(),
                lastrunfile: self.lastrunfile.clone(),
                lastrunreport: self.lastrunreport.clone(),
                timeout,
            }),
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
            }));
        }
        Ok(agents)
    }
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
