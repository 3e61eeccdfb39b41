//! Which Puppet the `puppet` runner drives, and where that Puppet keeps its files.
//!
//! A [`PuppetIdentity`] is a `puppet` executable plus the arguments that pick one agent
//! identity on the host (`--confdir`, `--vardir`, `--ssldir`, anything else): they go to
//! `puppet config print` at start and to every run, so several porch agents on one host can
//! each drive their own Puppet agent. [`PuppetPaths`] are the files the runner reads, as that
//! Puppet reports them — PE's `/opt/puppetlabs/...`, Debian's `/var/cache/puppet/...` or a
//! lab's confdir alike — unless a flag names them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A `puppet` executable and the arguments that select its identity.
#[derive(Clone, Debug, Default)]
pub struct PuppetIdentity {
    pub puppet_bin: PathBuf,
    pub confdir: Option<PathBuf>,
    pub vardir: Option<PathBuf>,
    pub ssldir: Option<PathBuf>,
    /// More arguments for `config print` and the run, verbatim (`--publicdir=/x`, `--server=y`).
    pub extra_args: Vec<String>,
}

impl PuppetIdentity {
    /// The arguments after the subcommand that every invocation gets.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, dir) in [
            ("--confdir", &self.confdir),
            ("--vardir", &self.vardir),
            ("--ssldir", &self.ssldir),
        ] {
            if let Some(dir) = dir {
                args.push(flag.to_string());
                args.push(dir.display().to_string());
            }
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// The files of one Puppet agent identity that the runner reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PuppetPaths {
    /// `last_run_summary.yaml`: metrics.
    pub lastrunfile: PathBuf,
    /// `last_run_report.yaml`: transaction uuid, status, noop.
    pub lastrunreport: PathBuf,
    /// Present while `puppet agent --disable` is in force; holds the reason.
    pub agent_disabled_lockfile: PathBuf,
    /// Present (holding a pid) while a run applies a catalog.
    pub agent_catalog_run_lockfile: PathBuf,
}

/// The settings asked of `puppet config print`: the four paths, and two to check them with.
const SETTINGS: [&str; 6] = [
    "lastrunfile",
    "lastrunreport",
    "agent_disabled_lockfile",
    "agent_catalog_run_lockfile",
    "vardir",
    "certname",
];

/// What `puppet config print` told, beyond the paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrintedConfig {
    pub paths: PuppetPaths,
    pub vardir: PathBuf,
    pub certname: String,
}

/// Parses `key = value` lines as `puppet config print` writes them for several settings.
pub fn parse_config_print(text: &str) -> Result<PrintedConfig, String> {
    let mut values = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(" = ") {
            values.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    let mut get = |key: &str| {
        values
            .remove(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("it printed no {key}"))
    };
    Ok(PrintedConfig {
        paths: PuppetPaths {
            lastrunfile: get("lastrunfile")?.into(),
            lastrunreport: get("lastrunreport")?.into(),
            agent_disabled_lockfile: get("agent_disabled_lockfile")?.into(),
            agent_catalog_run_lockfile: get("agent_catalog_run_lockfile")?.into(),
        },
        vardir: get("vardir")?.into(),
        certname: get("certname").unwrap_or_default(),
    })
}

/// Asks `puppet config print --section agent` for the identity's paths, giving up after
/// `timeout` (the process group is killed). Blocking: call it off the async threads.
pub fn config_print(identity: &PuppetIdentity, timeout: Duration) -> Result<PrintedConfig, String> {
    let bin = identity.puppet_bin.display();
    let mut args = vec![
        "config".to_string(),
        "print".into(),
        "--section".into(),
        "agent".into(),
    ];
    args.extend(identity.args());
    args.extend(SETTINGS.iter().map(|s| s.to_string()));
    let shown = format!("{bin} {}", args.join(" "));
    let output = run_bounded(&identity.puppet_bin, &args, timeout).map_err(|e| match e {
        BoundedError::NotFound => format!(
            "--puppet-bin {bin}: not found (install Puppet's agent, or name the executable)"
        ),
        BoundedError::Spawn(e) => format!("--puppet-bin {bin}: cannot run it: {e}"),
        BoundedError::TimedOut => format!(
            "`{shown}` did not answer within {} s (killed); --puppet-config-timeout-secs sets \
             the limit",
            timeout.as_secs()
        ),
    })?;
    if !output.status.success() {
        return Err(format!(
            "`{shown}` failed ({}): {}",
            output.status,
            super::tail_utf8(String::from_utf8_lossy(&output.stderr).trim(), 2048)
        ));
    }
    parse_config_print(&String::from_utf8_lossy(&output.stdout))
        .map_err(|e| format!("`{shown}`: {e}"))
}

/// Whether `path` lies inside `dir` (both as printed: no symlinks are followed).
pub fn is_inside(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

enum BoundedError {
    NotFound,
    Spawn(std::io::Error),
    TimedOut,
}

/// Runs `bin args` in its own process group with no stdin, collecting its output; kills the
/// group if it has not exited after `timeout`.
fn run_bounded(
    bin: &Path,
    args: &[String],
    timeout: Duration,
) -> Result<std::process::Output, BoundedError> {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(bin);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // ETXTBSY: see `super::spawn`.
    const ETXTBSY: i32 = 26;
    let mut attempt = 0;
    let mut child = loop {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(child) => break child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BoundedError::NotFound);
            }
            Err(e) => return Err(BoundedError::Spawn(e)),
        }
    };
    // Readers on threads: a child that fills one pipe while we wait on the other never blocks.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                super::kill_process_group(child.id());
                let _ = child.wait();
                return Err(BoundedError::TimedOut);
            }
        }
    };
    // The group may outlive the leader with our pipes open: end it so the readers finish.
    super::kill_process_group(child.id());
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn identity_arguments_go_before_the_settings() {
        let identity = PuppetIdentity {
            puppet_bin: "puppet".into(),
            confdir: Some("/labs/web1/etc".into()),
            vardir: None,
            ssldir: Some("/labs/web1/ssl".into()),
            extra_args: vec!["--publicdir=/labs/web1/public".into()],
        };
        assert_eq!(
            identity.args(),
            [
                "--confdir",
                "/labs/web1/etc",
                "--ssldir",
                "/labs/web1/ssl",
                "--publicdir=/labs/web1/public"
            ]
        );
    }

    #[test]
    fn config_print_output_names_every_path() {
        let printed = parse_config_print(
            "agent_catalog_run_lockfile = /v/state/agent_catalog_run.lock\n\
             agent_disabled_lockfile = /v/state/agent_disabled.lock\n\
             certname = web1\n\
             lastrunfile = /var/cache/puppet/public/last_run_summary.yaml\n\
             lastrunreport = /v/state/last_run_report.yaml\n\
             vardir = /v\n",
        )
        .unwrap();
        assert_eq!(
            printed.paths.lastrunfile,
            Path::new("/var/cache/puppet/public/last_run_summary.yaml")
        );
        assert_eq!(
            printed.paths.agent_catalog_run_lockfile,
            Path::new("/v/state/agent_catalog_run.lock")
        );
        assert_eq!(printed.certname, "web1");
        let error = parse_config_print("lastrunfile = /x\n").unwrap_err();
        assert_eq!(error, "it printed no lastrunreport");
    }

    #[test]
    fn a_missing_failing_or_hanging_puppet_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let timeout = Duration::from_secs(5);
        let missing = PuppetIdentity {
            puppet_bin: dir.path().join("no-such-puppet"),
            ..Default::default()
        };
        let error = config_print(&missing, timeout).unwrap_err();
        assert!(error.contains("no-such-puppet: not found"), "{error}");

        let failing = PuppetIdentity {
            puppet_bin: script(
                dir.path(),
                "failing",
                "echo 'Error: invalid option: --bogus' >&2; exit 1",
            ),
            extra_args: vec!["--bogus".into()],
            ..Default::default()
        };
        let error = config_print(&failing, timeout).unwrap_err();
        assert!(
            error.contains("--bogus") && error.contains("invalid option"),
            "{error}"
        );

        // The hanging child keeps a grandchild with our stdout: both must go.
        let hanging = PuppetIdentity {
            puppet_bin: script(dir.path(), "hanging", "sleep 60 & sleep 60"),
            ..Default::default()
        };
        let started = Instant::now();
        let error = config_print(&hanging, Duration::from_millis(300)).unwrap_err();
        assert!(error.contains("did not answer within"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "config print took {:?} to give up",
            started.elapsed()
        );
    }
}
