//! porch on real parts, end to end: a three-node porch cluster and five porch agents with
//! certificates from a real Puppet Server's CA, the agents running real `puppet agent` runs
//! against that Puppet Server, which stores facts and reports in a real PuppetDB. The stack is
//! the one `tests/puppet-stack/up.sh` brings up (`.ci/run` does); without it the test is
//! skipped with a note — unless `PORCH_STACK_REQUIRED` is set, as in CI, where a missing stack
//! fails it.
//!
//! The environment `porch_e2e` (`tests/puppet-stack/porch_e2e`, written to Puppet Server's
//! codedir, which the porch nodes read too) holds a three-level application in the porch-only
//! `orchestration/` layout: a database, two app servers consuming it, a web server per app
//! server. Each node's catalog stamps the time of its run into a file. One cluster, one stack,
//! four jobs:
//! 1. the application: the stamps prove the level order; `/jobs/:id/report` and
//!    `/jobs/:id/nodes` carry the real metrics, and PuppetDB stored each run under the same
//!    transaction uuid and porch's job id;
//! 2. the same with `noop`: nothing changes on disk, every node's result says noop;
//! 3. a PQL fact query (a custom fact from each identity's confdir) selects exactly the nodes
//!    PuppetDB knows with that fact;
//! 4. the application with one app server's gate failing: that node failed, its web server
//!    skipped, every other node ran.
//!
//! An ignored test drives `porch bench levels` on the same setup (BENCHMARKS.md, issue 12).

use porch_tests::{Cluster, ExistingPki, NodeIdentity, https_client, poll_until, wait_until};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ENVIRONMENT: &str = "porch_e2e";
const APPLICATION: &str = "Shop[e2e]";
/// `porch_e2e` again, under the name the ignored benchmark deploys.
const BENCH_ENVIRONMENT: &str = "porch_bench_levels";
/// Agent identities (`up.sh agents 5 e2e-agent`) and their `porch_role` fact, in level order.
const AGENTS: [(&str, &str); 5] = [
    ("e2e-agent1", "db"),
    ("e2e-agent2", "app"),
    ("e2e-agent3", "app"),
    ("e2e-agent4", "web"),
    ("e2e-agent5", "web"),
];
/// Porch nodes' identities (`up.sh certs`: their certificates also name 127.0.0.1).
const NODES: [&str; 3] = ["e2e-node1", "e2e-node2", "e2e-node3"];
/// One job of five real Puppet runs over three levels takes ~15 s; this bounds a stuck one.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// PuppetDB stores commands asynchronously.
const PUPPETDB_TIMEOUT: Duration = Duration::from_secs(60);

fn up_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("puppet-stack/up.sh")
}

/// The stack's settings from up.sh's env file.
struct Stack {
    env: BTreeMap<String, String>,
}

impl Stack {
    /// The running stack, or `None` after a note saying why the test is skipped (a panic
    /// instead when `PORCH_STACK_REQUIRED` is set).
    fn running() -> Option<Stack> {
        let required = std::env::var_os("PORCH_STACK_REQUIRED").is_some();
        let skip = |why: String| {
            assert!(!required, "PORCH_STACK_REQUIRED is set but {why}");
            eprintln!("note: skipping the Puppet stack test: {why}");
            None
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { geteuid() } != 0 {
            return skip(
                "it runs puppet agents and writes Puppet's codedir: run it as root".into(),
            );
        }
        let path = std::env::var("PORCH_STACK_ENV")
            .unwrap_or_else(|_| "/var/lib/porch-stack/env".to_string());
        let Ok(text) = std::fs::read_to_string(&path) else {
            return skip(format!(
                "no {path}: bring the stack up with `{} up`",
                up_sh().display()
            ));
        };
        let env: BTreeMap<String, String> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let stack = Stack { env };
        let puppetserver = "https://127.0.0.1:8140/status/v1/simple".to_string();
        let puppetdb = format!(
            "{}/status/v1/services/puppetdb-status",
            stack.var("PUPPETDB_HTTP_URL")
        );
        let http = https_client(Path::new(stack.var("PUPPET_CA_CERT")));
        for url in [puppetserver, puppetdb] {
            let answers = http
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if !answers {
                return skip(format!(
                    "{url} does not answer: bring the stack up with `{} up`",
                    up_sh().display()
                ));
            }
        }
        Some(stack)
    }

    fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("the stack's env file has no {key}"))
    }

    fn identity_dir(&self, certname: &str) -> PathBuf {
        Path::new(self.var("PORCH_STACK_AGENTS_DIR")).join(certname)
    }

    /// The agents' and nodes' identities, made by up.sh when missing (CI makes them while
    /// the workspace builds); up.sh also brings their puppet.conf up to date.
    fn ensure_identities(&self) {
        let prefix = AGENTS[0].0.trim_end_matches(char::is_numeric);
        let count = AGENTS.len().to_string();
        run_up_sh(&["agents", &count, prefix]);
        let mut certs = vec!["certs"];
        certs.extend(NODES);
        run_up_sh(&certs);
        for (certname, role) in AGENTS {
            let facts = self.identity_dir(certname).join("etc/facts.d");
            std::fs::create_dir_all(&facts).expect("the identity's facts.d");
            std::fs::write(facts.join("porch_role.txt"), format!("{role}\n"))
                .expect("write the porch_role fact");
        }
    }

    /// Writes `tests/puppet-stack/porch_e2e` to Puppet Server's codedir as the environment
    /// `porch_e2e`, its stamps going to `stamp_dir`.
    fn write_environment(&self, stamp_dir: &Path) {
        self.write_environment_as(ENVIRONMENT, stamp_dir);
    }

    /// The same environment under another name (the benchmark's, so that a test running
    /// meanwhile does not rewrite it).
    fn write_environment_as(&self, name: &str, stamp_dir: &Path) {
        let target = Path::new(self.var("PUPPET_CODEDIR"))
            .join("environments")
            .join(name);
        if target.exists() {
            std::fs::remove_dir_all(&target).expect("remove the previous porch_e2e");
        }
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("puppet-stack/porch_e2e");
        copy_tree(&source, &target, &stamp_dir.display().to_string());
    }

    fn pki(&self) -> ExistingPki {
        ExistingPki {
            cacert: PathBuf::from(self.var("PUPPET_CA_CERT")),
            nodes: NODES
                .iter()
                .enumerate()
                .map(|(i, certname)| {
                    let identity = NodeIdentity {
                        certname: certname.to_string(),
                        ssldir: self.identity_dir(certname).join("ssl"),
                    };
                    (i as u64 + 1, identity)
                })
                .collect(),
        }
    }

    /// The flags of the porch agent for one identity: its Puppet certificate for porch's
    /// mutual TLS, and the puppet runner on the identity's confdir, vardir and ssldir.
    fn agent_flags(&self, certname: &str) -> Vec<String> {
        let dir = self.identity_dir(certname);
        let path = |sub: &str| dir.join(sub).display().to_string();
        [
            "--ssldir",
            &path("ssl"),
            "--runner",
            "puppet",
            "--puppet-confdir",
            &path("etc"),
            "--puppet-vardir",
            &path("var"),
            "--puppet-ssldir",
            &path("ssl"),
            "--run-timeout-secs",
            "240",
        ]
        .map(String::from)
        .to_vec()
    }

    /// PuppetDB's answer to a PQL query over its local HTTP port.
    fn pql(&self, query: &str) -> Value {
        let url = format!("{}/pdb/query/v4", self.var("PUPPETDB_HTTP_URL"));
        let response = reqwest::blocking::Client::new()
            .get(&url)
            .query(&[("query", query)])
            .timeout(Duration::from_secs(15))
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status();
        let text = response.text().unwrap_or_default();
        assert!(status.is_success(), "PQL {query}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("PQL {query}: {e}: {text}"))
    }
}

unsafe extern "C" {
    /// POSIX `geteuid(2)`, from the C library every Rust binary on Linux links.
    fn geteuid() -> u32;
}

fn run_up_sh(args: &[&str]) {
    let output = Command::new(up_sh())
        .args(args)
        .output()
        .expect("run up.sh");
    assert!(
        output.status.success(),
        "up.sh {}: {}\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn copy_tree(source: &Path, target: &Path, stamp_dir: &str) {
    std::fs::create_dir_all(target).expect("create the environment's directories");
    for entry in std::fs::read_dir(source).expect("read tests/puppet-stack/porch_e2e") {
        let entry = entry.expect("a dir entry");
        let to = target.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &to, stamp_dir);
        } else {
            let text = std::fs::read_to_string(entry.path()).expect("read an environment file");
            std::fs::write(&to, text.replace("@STAMP_DIR@", stamp_dir))
                .expect("write an environment file");
        }
    }
}

/// Each agent's stamp file: the nanosecond time its last run wrote, or its odd content.
fn stamps(dir: &Path) -> BTreeMap<&'static str, Option<String>> {
    AGENTS
        .iter()
        .map(|(certname, _)| {
            let text = std::fs::read_to_string(dir.join(certname)).ok();
            (*certname, text.map(|t| t.trim().to_string()))
        })
        .collect()
}

fn deploy(cluster: &Cluster, body: Value) -> u64 {
    let (status, reply) = cluster.post(1, "/command/deploy", &body.to_string(), &[]);
    assert_eq!(status, 202, "deploy {body}: {reply}");
    reply["job"]["name"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("deploy reply without a job id: {reply}"))
}

/// Runs a job to its end: the job, and `/jobs/:id/nodes` by node name.
fn run_job(cluster: &Cluster, body: Value) -> (u64, Value, BTreeMap<String, Value>) {
    let job = deploy(cluster, body);
    let done = cluster.wait_job_done(1, job, JOB_TIMEOUT);
    let (status, nodes) = cluster.get(1, &format!("/jobs/{job}/nodes"));
    assert_eq!(status, 200, "GET /jobs/{job}/nodes: {nodes}");
    let by_name = nodes["items"]
        .as_array()
        .unwrap_or_else(|| panic!("/jobs/{job}/nodes without items: {nodes}"))
        .iter()
        .map(|item| {
            (
                item["name"].as_str().unwrap_or("").to_string(),
                item.clone(),
            )
        })
        .collect();
    (job, done, by_name)
}

fn node_states(nodes: &BTreeMap<String, Value>) -> BTreeMap<&str, &str> {
    nodes
        .iter()
        .map(|(name, item)| (name.as_str(), item["state"].as_str().unwrap_or("?")))
        .collect()
}

fn stamp_ns(stamps: &BTreeMap<&str, Option<String>>, certname: &str) -> u128 {
    let text = stamps[certname]
        .as_deref()
        .unwrap_or_else(|| panic!("{certname} wrote no stamp: {stamps:?}"));
    text.parse()
        .unwrap_or_else(|e| panic!("{certname}'s stamp {text:?}: {e}"))
}

/// Every producer's stamp is older than every consumer's: db < both apps < both webs.
fn stamps_prove_the_level_order(stamps: &BTreeMap<&str, Option<String>>) {
    let levels: [&[&str]; 3] = [
        &["e2e-agent1"],
        &["e2e-agent2", "e2e-agent3"],
        &["e2e-agent4", "e2e-agent5"],
    ];
    for pair in levels.windows(2) {
        for producer in pair[0] {
            for consumer in pair[1] {
                assert!(
                    stamp_ns(stamps, producer) < stamp_ns(stamps, consumer),
                    "{producer} (a producer) must have run before {consumer}: {stamps:?}"
                );
            }
        }
    }
}

/// `/jobs/:id/report` carries each run's real metrics, the same as `/jobs/:id/nodes`, and
/// PuppetDB stored that run under the same transaction uuid with porch's job id.
fn report_carries_the_real_metrics(
    stack: &Stack,
    cluster: &Cluster,
    job: u64,
    nodes: &BTreeMap<String, Value>,
) {
    let (status, report) = cluster.get(1, &format!("/jobs/{job}/report"));
    assert_eq!(status, 200, "GET /jobs/{job}/report: {report}");
    let items = report["items"].as_array().expect("report items");
    assert_eq!(
        items.len(),
        AGENTS.len(),
        "one report item per node: {report}"
    );
    for item in items {
        let node = item["node"].as_str().expect("report item's node");
        let result = &item["result"];
        let metric = |name: &str| result["metrics"][name].as_i64().unwrap_or(-1);
        assert!(metric("total") > 0, "{node}: resources total: {result}");
        assert!(
            metric("changed") >= 2,
            "{node}: both execs changed: {result}"
        );
        assert_eq!(metric("failed"), 0, "{node}: no failed resource: {result}");
        assert_eq!(result["status"], "changed", "{node}: {result}");
        assert_eq!(result["exit_code"], 2, "{node}: {result}");
        assert!(
            result["run_time"].as_f64().is_some_and(|t| t > 0.0),
            "{node}: Puppet's run time: {result}"
        );
        assert_eq!(result["run_noop"], false, "{node}: {result}");
        assert_eq!(result["environment"], ENVIRONMENT, "{node}: {result}");
        let hash = result["hash"].as_str().unwrap_or("");
        assert!(
            hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{node}: the report's SHA-256: {result}"
        );
        assert_eq!(
            &nodes[node]["result"], result,
            "{node}: /jobs/{job}/nodes and /report agree"
        );
        let uuid = result["transaction_uuid"]
            .as_str()
            .filter(|u| u.len() == 36)
            .unwrap_or_else(|| panic!("{node}: Puppet's transaction uuid: {result}"));
        let query = format!(
            r#"reports[certname, transaction_uuid, job_id, noop, status] {{ transaction_uuid = "{uuid}" }}"#
        );
        let stored = wait_until(
            PUPPETDB_TIMEOUT,
            &format!("PuppetDB to store {node}'s report {uuid}"),
            || {
                let rows = stack.pql(&query);
                rows.as_array().filter(|r| !r.is_empty()).cloned()
            },
        );
        assert_eq!(stored.len(), 1, "{node}: one report for {uuid}: {stored:?}");
        let row = &stored[0];
        assert_eq!(
            row["certname"], node,
            "{node}: PuppetDB's report {uuid}: {row}"
        );
        assert_eq!(
            row["job_id"],
            job.to_string(),
            "{node}: porch's job id: {row}"
        );
        assert_eq!(row["noop"], false, "{node}: {row}");
        assert_eq!(row["status"], "changed", "{node}: {row}");
    }
}

/// With `noop`, a deleted stamp stays deleted and an altered one stays altered; every node
/// finished with a noop result that had changes pending.
fn noop_changes_nothing_on_disk(cluster: &Cluster, stamp_dir: &Path) {
    std::fs::remove_file(stamp_dir.join("e2e-agent4")).expect("delete e2e-agent4's stamp");
    std::fs::write(stamp_dir.join("e2e-agent1"), "altered\n").expect("alter e2e-agent1's stamp");
    let before = stamps(stamp_dir);
    let body =
        json!({"environment": ENVIRONMENT, "scope": {"application": APPLICATION}, "noop": true});
    let (job, done, nodes) = run_job(cluster, body);
    assert_eq!(done["state"], "finished", "noop job {job}: {done}");
    assert_eq!(
        stamps(stamp_dir),
        before,
        "noop job {job} changed the stamps"
    );
    for (node, item) in &nodes {
        let result = &item["result"];
        assert_eq!(
            item["state"], "finished",
            "{node} in noop job {job}: {item}"
        );
        assert_eq!(
            result["run_noop"], true,
            "{node}: the run was noop: {result}"
        );
        assert_eq!(
            result["noop_pending"], true,
            "{node}: the execs were pending: {result}"
        );
        assert_eq!(result["noop"]["noop"], true, "{node}: {result}");
        assert!(
            result["metrics"]["noop"].as_i64().is_some_and(|n| n >= 2),
            "{node}: noop events: {result}"
        );
    }
}

/// `scope.query` in PQL over a fact goes to PuppetDB and selects exactly the app servers.
fn pql_fact_query_selects_the_nodes_through_puppetdb(stack: &Stack, cluster: &Cluster) {
    let query = r#"inventory[certname] { facts.porch_role = "app" }"#;
    let expected: Vec<&str> = AGENTS
        .iter()
        .filter(|(_, role)| *role == "app")
        .map(|(certname, _)| *certname)
        .collect();
    // The first job's runs submitted the facts; PuppetDB may still be storing them.
    wait_until(
        PUPPETDB_TIMEOUT,
        "PuppetDB to hold the porch_role facts",
        || {
            let mut found: Vec<String> = stack
                .pql(query)
                .as_array()?
                .iter()
                .filter_map(|row| row["certname"].as_str().map(String::from))
                .collect();
            found.sort();
            (found == expected).then_some(())
        },
    );
    let body = json!({"environment": ENVIRONMENT, "scope": {"query": query}, "noop": true});
    let (job, done, nodes) = run_job(cluster, body);
    assert_eq!(
        nodes.keys().map(String::as_str).collect::<Vec<_>>(),
        expected,
        "the nodes of query job {job}"
    );
    assert_eq!(done["state"], "finished", "query job {job}: {done}");
}

/// A failing resource on one app server fails that node and skips its web server; the other
/// branch runs on.
fn failing_resource_fails_its_node_and_skips_its_dependents(cluster: &Cluster, stamp_dir: &Path) {
    std::fs::write(stamp_dir.join("e2e-agent2.fail"), "").expect("make e2e-agent2's gate fail");
    let before = stamps(stamp_dir);
    let body = json!({"environment": ENVIRONMENT, "scope": {"application": APPLICATION}});
    let (job, done, nodes) = run_job(cluster, body);
    let after = stamps(stamp_dir);
    assert_eq!(
        done["state"], "finished",
        "job {job} (node failures end it finished): {done}"
    );
    let expected = BTreeMap::from([
        ("e2e-agent1", "finished"),
        ("e2e-agent2", "failed"),
        ("e2e-agent3", "finished"),
        ("e2e-agent4", "skipped"),
        ("e2e-agent5", "finished"),
    ]);
    assert_eq!(node_states(&nodes), expected, "job {job}'s nodes");
    let failed = &nodes["e2e-agent2"]["result"];
    assert_eq!(failed["status"], "failed", "e2e-agent2: {failed}");
    assert!(
        failed["metrics"]["failed"].as_i64().is_some_and(|n| n >= 1),
        "e2e-agent2: a failed resource: {failed}"
    );
    assert!(
        nodes["e2e-agent4"]["result"].is_null(),
        "e2e-agent4 never ran: {}",
        nodes["e2e-agent4"]
    );
    for (certname, state) in expected {
        let changed = after[certname] != before[certname];
        assert_eq!(
            changed,
            state == "finished",
            "{certname} ({state}): stamp before {:?}, after {:?}",
            before[certname],
            after[certname]
        );
    }
}

/// The three porch nodes on the stack's CA, codedir and PuppetDB, and the five agents
/// connected to them; `more_flags` gives an agent's flags beyond [`Stack::agent_flags`].
fn start_cluster_and_agents(stack: &Stack, more_flags: impl Fn(&str) -> Vec<String>) -> Cluster {
    let mut cluster = Cluster::start_with_pki(
        stack.pki(),
        &[
            "--codedir",
            stack.var("PUPPET_CODEDIR"),
            "--puppetdb-url",
            stack.var("PUPPETDB_URL"),
        ],
    );
    for (certname, _) in AGENTS {
        let mut flags = stack.agent_flags(certname);
        flags.extend(more_flags(certname));
        cluster.start_agent_flags(certname, &flags);
    }
    let names: Vec<&str> = AGENTS.iter().map(|(n, _)| *n).collect();
    // Each agent asks `puppet config print` for its paths before it connects.
    poll_until(Duration::from_secs(120), || {
        let (_, inventory) = cluster.get(1, "/inventory");
        let connected: Vec<&str> = inventory["items"]
            .as_array()?
            .iter()
            .filter(|i| i["connected"] == true)
            .filter_map(|i| i["name"].as_str())
            .collect();
        names.iter().all(|n| connected.contains(n)).then_some(())
    })
    .unwrap_or_else(|| panic!("agents {names:?} did not all connect within 120 s"));
    cluster
}

#[test]
fn real_puppet_agents_run_an_application_in_order_through_puppet_server_and_puppetdb() {
    let started = Instant::now();
    let phase = |what: &str| {
        eprintln!(
            "puppet_stack: {what} at {:.1}s",
            started.elapsed().as_secs_f64()
        )
    };
    let Some(stack) = Stack::running() else {
        return;
    };
    stack.ensure_identities();
    let stamp_dir = tempfile::tempdir().expect("a stamp dir");
    stack.write_environment(stamp_dir.path());
    phase("identities and environment ready");

    let mut cluster = start_cluster_and_agents(&stack, |_| Vec::new());
    phase("cluster and agents up");

    let body = json!({"environment": ENVIRONMENT, "scope": {"application": APPLICATION}});
    let (job, done, nodes) = run_job(&cluster, body);
    assert_eq!(done["state"], "finished", "job {job}: {done}");
    assert!(
        node_states(&nodes).values().all(|s| *s == "finished"),
        "job {job}'s nodes: {:?}",
        node_states(&nodes)
    );
    stamps_prove_the_level_order(&stamps(stamp_dir.path()));
    phase("application job");
    report_carries_the_real_metrics(&stack, &cluster, job, &nodes);
    phase("report checked against PuppetDB");

    noop_changes_nothing_on_disk(&cluster, stamp_dir.path());
    phase("noop job");
    pql_fact_query_selects_the_nodes_through_puppetdb(&stack, &cluster);
    phase("PQL query job");
    failing_resource_fails_its_node_and_skips_its_dependents(&cluster, stamp_dir.path());
    phase("failing job");
    for (certname, _) in AGENTS {
        cluster.kill_agent(certname);
    }
}

/// A `puppet` for one agent that logs each invocation's wall time for `porch bench levels
/// --process-log` (bash's `$EPOCHREALTIME`: no process spawned around the measured one; bash's
/// own start-up, a few ms, counts as porch's).
fn timing_puppet_wrapper(dir: &Path, certname: &str, log: &Path) -> PathBuf {
    let script = format!(
        "#!/bin/bash\n\
         start=$EPOCHREALTIME\n\
         puppet \"$@\"\n\
         status=$?\n\
         echo \"{certname} $start $EPOCHREALTIME $*\" >> '{}'\n\
         exit $status\n",
        log.display()
    );
    let path = dir.join(format!("puppet-{certname}"));
    std::fs::write(&path, script).expect("write the timing puppet wrapper");
    let mut permissions = std::fs::metadata(&path).expect("the wrapper").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&path, permissions).expect("make the wrapper executable");
    path
}

/// Not a check: drives `porch bench levels` (BENCHMARKS.md, issue 12) on the real stack —
/// the same cluster and agents as above, each agent's `puppet` wrapped to log its process
/// wall time. `PORCH_BENCH_JOBS` jobs (default 5); the Markdown table goes to stdout:
/// `cargo test --release -p porch-tests --test puppet_stack -- --ignored --nocapture bench`.
#[test]
#[ignore = "a benchmark (porch bench levels on the real stack), not a check"]
fn bench_levels_on_real_puppet_agents() {
    let Some(stack) = Stack::running() else {
        return;
    };
    stack.ensure_identities();
    let stamp_dir = tempfile::tempdir().expect("a stamp dir");
    stack.write_environment_as(BENCH_ENVIRONMENT, stamp_dir.path());
    let wrapper_dir = tempfile::tempdir().expect("a dir for the puppet wrappers");
    let process_log = wrapper_dir.path().join("puppet-processes.log");
    let cluster = start_cluster_and_agents(&stack, |certname| {
        let wrapper = timing_puppet_wrapper(wrapper_dir.path(), certname, &process_log);
        vec!["--puppet-bin".into(), wrapper.display().to_string()]
    });
    let jobs = std::env::var("PORCH_BENCH_JOBS").unwrap_or_else(|_| "5".to_string());
    let status = Command::new(porch_tests::porch_bin())
        .args([
            "bench",
            "levels",
            "--service-url",
            &cluster.urls(),
            "--cacert",
        ])
        .arg(cluster.cacert())
        .arg("--token-file")
        .arg(&cluster.token_file)
        .args([
            "--application",
            APPLICATION,
            "--environment",
            BENCH_ENVIRONMENT,
        ])
        .args(["--jobs", &jobs, "--process-log"])
        .arg(&process_log)
        .status()
        .expect("run porch bench levels");
    assert!(status.success(), "porch bench levels: {status}");
}
