//! The puppet runner against fake `puppet` scripts (exit codes, locks, bad files, hangs) and,
//! where this machine has Puppet, against the real one.

use super::*;
use crate::runner::puppet_config::config_print;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/runner/fixtures");

/// A temp dir holding a fake `puppet` and the paths a runner of it uses.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `puppet` running `body` after recording its arguments in `args`.
    fn puppet(&self, body: &str) -> PuppetRunner {
        let script = self.path("puppet");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" >> {args}\n{body}\n",
                args = self.path("args").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        PuppetRunner {
            identity: PuppetIdentity {
                puppet_bin: script,
                confdir: Some(self.path("etc")),
                ..Default::default()
            },
            paths: PuppetPaths {
                lastrunfile: self.path("last_run_summary.yaml"),
                lastrunreport: self.path("last_run_report.yaml"),
                agent_disabled_lockfile: self.path("agent_disabled.lock"),
                agent_catalog_run_lockfile: self.path("agent_catalog_run.lock"),
            },
            timeout: Duration::from_secs(30),
            lock_wait: Duration::from_secs(30),
        }
    }

    /// A `puppet` that writes the fixture summary and report (a real run's) and exits `exit`.
    fn puppet_writing_fixtures(&self, exit: i32) -> PuppetRunner {
        self.puppet(&format!(
            "cp {FIXTURES}/last_run_summary.yaml {summary}\n\
             cp {FIXTURES}/last_run_report.yaml {report}\n\
             echo 'Notice: Applied catalog in 0.01 seconds'\nexit {exit}",
            summary = self.path("last_run_summary.yaml").display(),
            report = self.path("last_run_report.yaml").display(),
        ))
    }

    /// The argument lines of every run so far.
    fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("args"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn request() -> RunRequest {
    RunRequest {
        transaction_id: "t".into(),
        job_id: 17,
        environment: "production".into(),
        noop: true,
        enforce_environment: true,
        ..Default::default()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn exit_codes_map_as_pxp_does() {
    for (exit, outcome, status) in [
        (0, Outcome::Finished, "unchanged"),
        (2, Outcome::Finished, "unchanged"),
        (4, Outcome::Failed, "unchanged"),
        (6, Outcome::Failed, "unchanged"),
        (1, Outcome::Errored, "errored"),
        (3, Outcome::Errored, "errored"),
    ] {
        let fake = Fake::new();
        let result = fake.puppet_writing_fixtures(exit).run(&request()).await;
        assert_eq!(
            (&result.outcome, result.status.as_str(), result.exit_code),
            (&outcome, status, exit),
            "exit {exit}: {}",
            result.message
        );
        if outcome == Outcome::Errored {
            assert!(
                result
                    .message
                    .starts_with(&format!("agent_exit_non_zero: puppet exited {exit}")),
                "{}",
                result.message
            );
        }
    }
    // The status word comes from the report; without one, from the exit code.
    assert_eq!(
        outcome_of_exit_code(2),
        Some((Outcome::Finished, "changed"))
    );
    assert_eq!(outcome_of_exit_code(6), Some((Outcome::Failed, "failed")));
    assert_eq!(outcome_of_exit_code(1), None);
}

#[tokio::test]
async fn a_run_reports_the_facts_of_its_summary_and_report() {
    let fake = Fake::new();
    let result = fake.puppet_writing_fixtures(0).run(&request()).await;
    assert_eq!(result.outcome, Outcome::Finished, "{}", result.message);
    assert_eq!(result.metrics["total"], 8);
    assert_eq!(result.metrics["out_of_sync"], 1);
    assert_eq!(
        result.metrics["noop"], 1,
        "noop events, as RunResult names them"
    );
    assert_eq!(result.configuration_version, "1795986511");
    assert_eq!(
        result.puppet_transaction_uuid,
        "328518c5-90e2-441c-a80b-8700c5b278b8"
    );
    assert_eq!(result.environment, "production");
    assert!(
        result.message.contains("Applied catalog"),
        "{}",
        result.message
    );
    let report = std::fs::read(fake.path("last_run_report.yaml")).unwrap();
    assert_eq!(
        result.puppet,
        PuppetRunDetails {
            noop: true,
            noop_pending: true,
            report_sha256: sha256_hex(&report),
            time_total_ms: Some(11),
            events: [("failure", 0), ("noop", 1), ("success", 0), ("total", 1)]
                .map(|(k, v)| (k.to_string(), v))
                .into(),
        }
    );
    assert_eq!(
        fake.runs(),
        [format!(
            "agent --confdir {} --onetime --no-daemonize --verbose --detailed-exitcodes \
             --job-id 17 --noop --environment production",
            fake.path("etc").display()
        )]
    );
}

#[tokio::test]
async fn a_disabled_agent_is_errored_with_its_reason_without_running() {
    let fake = Fake::new();
    let runner = fake.puppet_writing_fixtures(0);
    std::fs::write(
        &runner.paths.agent_disabled_lockfile,
        r#"{"disabled_message":"db migration until 14:00"}"#,
    )
    .unwrap();
    let result = runner.run(&request()).await;
    assert_eq!(result.outcome, Outcome::Errored);
    assert!(
        result.message.starts_with("agent_disabled: ")
            && result.message.contains("\"db migration until 14:00\""),
        "{}",
        result.message
    );
    assert!(fake.runs().is_empty(), "puppet ran: {:?}", fake.runs());

    // Disabled between our look and the run: Puppet's own words say so.
    let fake = Fake::new();
    let result = fake
        .puppet(
            "echo 'Notice: Skipping run of Puppet configuration client; administratively \
             disabled (Reason: none);'; exit 1",
        )
        .run(&request())
        .await;
    assert!(
        result.message.starts_with("agent_disabled: "),
        "{}",
        result.message
    );
}

#[tokio::test]
async fn a_held_run_lock_is_waited_for_then_refused() {
    let fake = Fake::new();
    let mut runner = fake.puppet_writing_fixtures(0);
    runner.lock_wait = Duration::from_millis(300);
    let lock = runner.paths.agent_catalog_run_lockfile.clone();
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let result = runner.run(&request()).await;
    assert_eq!(result.outcome, Outcome::Errored);
    assert!(
        result.message.starts_with(&format!(
            "agent_already_running: another Puppet run (pid {}) holds",
            std::process::id()
        )),
        "{}",
        result.message
    );
    assert!(fake.runs().is_empty(), "puppet ran: {:?}", fake.runs());

    // Released during the wait: the run goes ahead.
    runner.lock_wait = Duration::from_secs(20);
    let remover = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::remove_file(lock).unwrap();
    });
    let result = runner.run(&request()).await;
    remover.await.unwrap();
    assert_eq!(result.outcome, Outcome::Finished, "{}", result.message);
    assert_eq!(fake.runs().len(), 1);
}

#[tokio::test]
async fn a_stale_run_lock_does_not_stop_the_run() {
    let fake = Fake::new();
    let mut runner = fake.puppet_writing_fixtures(2);
    runner.lock_wait = Duration::ZERO;
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(
        &runner.paths.agent_catalog_run_lockfile,
        dead_pid.to_string(),
    )
    .unwrap();
    let result = runner.run(&request()).await;
    assert_eq!(result.outcome, Outcome::Finished, "{}", result.message);
}

#[tokio::test]
async fn puppet_saying_already_in_progress_is_retried_once_then_refused() {
    let fake = Fake::new();
    let busy = "echo 'Notice: Run of Puppet configuration client already in progress; \
                skipping  (/x/agent_catalog_run.lock exists)'; exit 1";
    // Busy on the first try only.
    let summary = fake.path("last_run_summary.yaml");
    let runner = fake.puppet(&format!(
        "if [ $(wc -l < {args}) -lt 2 ]; then {busy}; fi\n\
         cp {FIXTURES}/last_run_summary.yaml {summary}\n\
         cp {FIXTURES}/last_run_report.yaml {report}\nexit 2",
        args = fake.path("args").display(),
        summary = summary.display(),
        report = fake.path("last_run_report.yaml").display(),
    ));
    let result = runner.run(&request()).await;
    assert_eq!(result.outcome, Outcome::Finished, "{}", result.message);
    assert_eq!(fake.runs().len(), 2);

    let fake = Fake::new();
    let result = fake.puppet(busy).run(&request()).await;
    assert!(
        result.message.starts_with("agent_already_running: "),
        "{}",
        result.message
    );
    assert_eq!(fake.runs().len(), 2, "one try and one retry");
}

#[tokio::test]
async fn a_missing_puppet_is_errored_by_name() {
    let fake = Fake::new();
    let mut runner = fake.puppet_writing_fixtures(0);
    runner.identity.puppet_bin = fake.path("no-such-puppet");
    let result = runner.run(&request()).await;
    assert_eq!(result.outcome, Outcome::Errored);
    assert!(
        result.message.starts_with("no_puppet_bin: ") && result.message.contains("no-such-puppet"),
        "{}",
        result.message
    );
}

#[tokio::test]
async fn a_hanging_run_is_killed_with_its_children() {
    let fake = Fake::new();
    let child_pid = fake.path("child.pid");
    let mut runner = fake.puppet(&format!(
        "sleep 300 &\necho $! > {}\nsleep 300",
        child_pid.display()
    ));
    runner.timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let result = runner.run(&request()).await;
    assert!(
        result.message.starts_with("agent_timeout: "),
        "{}",
        result.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The killed child is a zombie of init's until reaped; /proc says which.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let gone = state.is_empty() || state.split(' ').nth(2) == Some("Z");
        if gone {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run's child {pid} outlived the timeout: {state}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn absent_stale_malformed_or_foreign_run_files_error_the_node_by_name() {
    // No summary at all.
    let fake = Fake::new();
    let result = fake
        .puppet(&format!(
            "cp {FIXTURES}/last_run_report.yaml {}\nexit 0",
            fake.path("last_run_report.yaml").display()
        ))
        .run(&request())
        .await;
    assert_eq!(result.outcome, Outcome::Errored);
    assert_eq!(result.exit_code, 0);
    assert!(
        result.message.starts_with("no_last_run_summary: ")
            && result
                .message
                .contains("last_run_summary.yaml does not exist")
            && result.message.contains("puppet exited 0"),
        "{}",
        result.message
    );

    // A report from an earlier run: older than this one.
    let fake = Fake::new();
    let report = fake.path("last_run_report.yaml");
    std::fs::copy(format!("{FIXTURES}/last_run_report.yaml"), &report).unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&report)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let result = fake
        .puppet(&format!(
            "cp {FIXTURES}/last_run_summary.yaml {}\nexit 2",
            fake.path("last_run_summary.yaml").display()
        ))
        .run(&request())
        .await;
    assert!(
        result.message.starts_with("no_last_run_report: ")
            && result.message.contains("was not written by this run"),
        "{}",
        result.message
    );

    // Not YAML Puppet writes.
    let fake = Fake::new();
    let result = fake
        .puppet(&format!(
            "cp {FIXTURES}/last_run_summary.yaml {}\necho '<html>oops' > {}\nexit 0",
            fake.path("last_run_summary.yaml").display(),
            fake.path("last_run_report.yaml").display()
        ))
        .run(&request())
        .await;
    assert!(
        result.message.starts_with("invalid_last_run_report: ")
            && result.message.contains("no transaction_uuid"),
        "{}",
        result.message
    );
    let fake = Fake::new();
    let result = fake
        .puppet(&format!(
            "printf '\\000\\377garbage' > {}\nexit 0",
            fake.path("last_run_summary.yaml").display()
        ))
        .run(&request())
        .await;
    assert!(
        result.message.starts_with("invalid_last_run_summary: "),
        "{}",
        result.message
    );

    // Another identity's summary beside this run's report.
    let fake = Fake::new();
    let result = fake
        .puppet(&format!(
            "sed 's/config: 1795986511/config: 42/' {FIXTURES}/last_run_summary.yaml > {}\n\
             cp {FIXTURES}/last_run_report.yaml {}\nexit 0",
            fake.path("last_run_summary.yaml").display(),
            fake.path("last_run_report.yaml").display()
        ))
        .run(&request())
        .await;
    assert!(
        result.message.contains("another Puppet identity"),
        "{}",
        result.message
    );
}

/// The real `puppet`, if this machine has one.
fn real_puppet() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("puppet"))
        .find(|bin| bin.is_file())
}

/// Paths discovered from the real Puppet for a temp identity, and real runs through the whole
/// runner. `puppet agent` needs a Puppet Server, so the `puppet` the runner starts is a wrapper
/// that turns `puppet agent <args>` into `puppet apply <args> <manifest>` — the same identity
/// arguments, settings and files, a local catalog.
#[tokio::test]
async fn real_puppet_runs_report_their_real_results() {
    let Some(puppet) = real_puppet() else {
        eprintln!("skipped: no puppet on PATH");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("site.pp");
    let wrapper = dir.path().join("puppet");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = agent ] || exec {puppet} \"$@\"\nshift\nset -- \"$@\" END\n\
             while [ \"$1\" != END ]; do\n  case \"$1\" in\n    --onetime|--no-daemonize) shift ;;\n\
                 --job-id) shift 2 ;;\n    *) set -- \"$@\" \"$1\"; shift ;;\n  esac\ndone\nshift\n\
             exec {puppet} apply \"$@\" {manifest}\n",
            puppet = puppet.display(),
            manifest = manifest.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let identity = PuppetIdentity {
        puppet_bin: wrapper,
        confdir: Some(dir.path().join("etc")),
        vardir: Some(dir.path().join("var")),
        ssldir: None,
        extra_args: vec![format!(
            "--publicdir={}",
            dir.path().join("public").display()
        )],
    };
    let printed = config_print(&identity, Duration::from_secs(120)).expect("config print");
    assert_eq!(
        printed.paths,
        PuppetPaths {
            lastrunfile: dir.path().join("public/last_run_summary.yaml"),
            lastrunreport: dir.path().join("var/state/last_run_report.yaml"),
            agent_disabled_lockfile: dir.path().join("var/state/agent_disabled.lock"),
            agent_catalog_run_lockfile: dir.path().join("var/state/agent_catalog_run.lock"),
        }
    );
    let runner = PuppetRunner {
        identity,
        paths: printed.paths,
        timeout: Duration::from_secs(300),
        lock_wait: Duration::from_secs(5),
    };
    let out = dir.path().join("out.txt");
    std::fs::write(
        &manifest,
        format!("file {{ '{}': content => 'porch' }}\n", out.display()),
    )
    .unwrap();

    let noop = runner.run(&request()).await;
    assert_eq!(noop.outcome, Outcome::Finished, "{}", noop.message);
    assert_eq!(noop.metrics["out_of_sync"], 1, "{:?}", noop.metrics);
    assert_eq!(noop.metrics["changed"], 0, "{:?}", noop.metrics);
    assert!(
        noop.puppet.noop && noop.puppet.noop_pending,
        "{:?}",
        noop.puppet
    );
    assert!(!out.exists(), "a noop run wrote {}", out.display());

    let applied = runner
        .run(&RunRequest {
            noop: false,
            ..request()
        })
        .await;
    assert_eq!(
        (&applied.outcome, applied.status.as_str(), applied.exit_code),
        (&Outcome::Finished, "changed", 2),
        "{}",
        applied.message
    );
    assert_eq!(applied.metrics["changed"], 1, "{:?}", applied.metrics);
    assert!(!applied.puppet.noop);
    assert_eq!(applied.puppet.report_sha256.len(), 64);
    assert_ne!(
        applied.puppet_transaction_uuid,
        noop.puppet_transaction_uuid
    );
    assert!(applied.puppet.time_total_ms.is_some());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "porch");

    std::fs::write(&manifest, "exec { 'fails': command => '/bin/false' }\n").unwrap();
    let failed = runner
        .run(&RunRequest {
            noop: false,
            ..request()
        })
        .await;
    assert_eq!(
        (&failed.outcome, failed.status.as_str()),
        (&Outcome::Failed, "failed"),
        "exit {}: {}",
        failed.exit_code,
        failed.message
    );
    assert_eq!(failed.metrics["failed"], 1, "{:?}", failed.metrics);
}
