//! Harness for porch's multi-process tests: real `porch server` and `porch agent` processes
//! on loopback, each with its own sled data dir in a temp dir, driven over the real HTTP API.
//!
//! The `porch` binary is looked up next to the test executable (`target/<profile>/porch`);
//! build it first (`cargo build --workspace --bins`, as `.ci/run` does). Every wait is a
//! bounded poll that panics with what it expected and what it saw. Processes are killed when
//! the harness is dropped; if the test panicked, the tail of every log is printed.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `porch` binary built alongside the tests.
pub fn porch_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let bin = profile_dir.join("porch");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build --workspace --bins` before the multi-process tests",
        bin.display()
    );
    bin
}

/// A free loopback port (bound then released; good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Proc {
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(porch_bin())
            .args(&self.args)
            .env("PORCH_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn porch");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on unix
            let _ = child.wait();
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    ports: BTreeMap<u64, u16>,
    nodes: BTreeMap<u64, Proc>,
    agents: BTreeMap<String, Proc>,
    http: reqwest::blocking::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            node.kill9();
        }
        for agent in self.agents.values_mut() {
            agent.kill9();
        }
        if std::thread::panicking() {
            for (name, log) in self
                .nodes
                .iter()
                .map(|(id, p)| (format!("node {id}"), &p.log))
                .chain(
                    self.agents
                        .iter()
                        .map(|(n, p)| (format!("agent {n}"), &p.log)),
                )
            {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                // A panic inside a process is the likeliest cause and is rarely in the tail.
                let lines: Vec<&str> = text.lines().collect();
                for (at, _) in lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.contains("panicked"))
                {
                    eprintln!("---- {name} panicked:");
                    for line in lines.iter().skip(at).take(6) {
                        eprintln!("{line}");
                    }
                }
                let tail: Vec<&str> = text.lines().rev().take(25).collect();
                eprintln!("---- {name} ({}) last lines:", log.display());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Fast raft timings so failover tests stay short.
pub const FAST: &[&str] = &["--heartbeat-ms", "50", "--election-timeout-ms", "300"];

impl Cluster {
    /// Starts `n` founding nodes with `extra` server flags and waits for a leader.
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: BTreeMap<u64, u16> = (1..=n).map(|id| (id, free_port())).collect();
        let mut cluster = Cluster {
            dir,
            ports,
            nodes: BTreeMap::new(),
            agents: BTreeMap::new(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("http client"),
        };
        let initial = cluster.initial_cluster();
        for id in 1..=n {
            cluster.add_process(id, &initial, extra);
        }
        cluster.wait_for_leader(Duration::from_secs(20));
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.ports
            .iter()
            .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn add_process(&mut self, id: u64, initial: &str, extra: &[&str]) {
        let port = self.ports[&id];
        let mut args: Vec<String> = vec![
            "server".into(),
            "--id".into(),
            id.to_string(),
            "--data-dir".into(),
            self.data_dir(id).display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--initial-cluster".into(),
            initial.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut proc = Proc {
            args,
            log: self.dir.path().join(format!("node{id}.log")),
            child: None,
        };
        proc.spawn();
        self.nodes.insert(id, proc);
    }

    /// Starts node `id` that is not a founding member (it waits to be added).
    pub fn start_extra_node(&mut self, id: u64, extra: &[&str]) -> String {
        let port = free_port();
        self.ports.insert(id, port);
        let initial = format!("{id}=127.0.0.1:{port}");
        // Listing only itself with an id that is not the lowest founding id would initialise a
        // one-node cluster; so list a founding member with a lower id first.
        let first = self
            .ports
            .iter()
            .next()
            .map(|(i, p)| format!("{i}=127.0.0.1:{p}"))
            .unwrap_or_default();
        self.add_process(id, &format!("{first},{initial}"), extra);
        wait_until(
            Duration::from_secs(20),
            &format!("node {id} to answer"),
            || self.status(id),
        );
        format!("127.0.0.1:{port}")
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    pub fn url(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.ports[&id])
    }

    pub fn urls(&self) -> String {
        self.running()
            .iter()
            .map(|id| self.url(*id))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, p)| p.child.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn kill9(&mut self, id: u64) {
        self.nodes.get_mut(&id).expect("known node").kill9();
    }

    /// The node's exit status if its process ended on its own (None while it runs).
    pub fn exited(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let node = self.nodes.get_mut(&id).expect("known node");
        let status = node.child.as_mut()?.try_wait().ok()??;
        node.child = None;
        Some(status)
    }

    /// Everything the node printed so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default()
    }

    pub fn restart(&mut self, id: u64) {
        self.nodes.get_mut(&id).expect("known node").spawn();
    }

    /// This node's own `/status`, if it answers.
    pub fn status(&self, id: u64) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/orchestrator/v1/status", self.url(id)))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?;
        r.json().ok()
    }

    /// Waits until a running node reports a leader that is itself running; returns it.
    pub fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let running = self.running();
        wait_until(timeout, "a leader among the running nodes", || {
            for id in &running {
                if let Some(s) = self.status(*id) {
                    if let Some(l) = s["leader"].as_u64() {
                        if running.contains(&l)
                            && self.status(l).and_then(|s| s["leader"].as_u64()) == Some(l)
                        {
                            return Some(l);
                        }
                    }
                }
            }
            None
        })
    }

    pub fn get(&self, id: u64, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/orchestrator/v1{path}", self.url(id)))
            .send()
            .unwrap_or_else(|e| panic!("GET {path} on node {id}: {e:?}"));
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn post(&self, id: u64, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/orchestrator/v1{path}", self.url(id)))
            .body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let r = request
            .send()
            .unwrap_or_else(|e| panic!("POST {path} on node {id}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Submits a deploy of `nodes` through node `id`; returns the job id.
    pub fn submit(&self, id: u64, nodes: &[&str], concurrency: Option<u32>) -> u64 {
        let mut body = serde_json::json!({"environment": "production", "scope": {"nodes": nodes}});
        if let Some(c) = concurrency {
            body["concurrency"] = c.into();
        }
        let (status, reply) = self.post(id, "/command/deploy", &body.to_string(), &[]);
        assert_eq!(status, 202, "deploy through node {id}: {reply}");
        reply["job"]["name"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("deploy reply without a job id: {reply}"))
    }

    pub fn job(&self, id: u64, job: u64) -> Value {
        let (status, value) = self.get(id, &format!("/jobs/{job}"));
        assert_eq!(status, 200, "GET /jobs/{job} on node {id}: {value}");
        value
    }

    /// Waits until job `job` read through node `id` is in a terminal state; returns it.
    pub fn wait_job_done(&self, id: u64, job: u64, timeout: Duration) -> Value {
        wait_until(
            timeout,
            &format!("job {job} to end (via node {id})"),
            || {
                let (status, value) = self.get(id, &format!("/jobs/{job}"));
                (status == 200
                    && matches!(
                        value["state"].as_str(),
                        Some("finished" | "stopped" | "failed")
                    ))
                .then_some(value)
            },
        )
    }

    /// Starts an agent for `certname` with the command runner, connected to all nodes.
    pub fn start_agent(&mut self, certname: &str, command: &Path) {
        let args = vec![
            "agent".to_string(),
            "--certname".into(),
            certname.into(),
            "--service-url".into(),
            self.all_urls(),
            "--spool-dir".into(),
            self.dir
                .path()
                .join(format!("spool-{certname}"))
                .display()
                .to_string(),
            "--runner".into(),
            "command".into(),
            "--command".into(),
            command.display().to_string(),
        ];
        let mut proc = Proc {
            args,
            log: self.dir.path().join(format!("agent-{certname}.log")),
            child: None,
        };
        proc.spawn();
        self.agents.insert(certname.to_string(), proc);
    }

    pub fn kill_agent(&mut self, certname: &str) {
        if let Some(agent) = self.agents.get_mut(certname) {
            agent.kill9();
        }
    }

    pub fn restart_agent(&mut self, certname: &str) {
        self.agents.get_mut(certname).expect("known agent").spawn();
    }

    fn all_urls(&self) -> String {
        self.ports
            .keys()
            .map(|id| self.url(*id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every named agent shows as connected in the inventory (via node `id`).
    pub fn wait_agents_connected(&self, id: u64, names: &[&str]) {
        wait_until(
            Duration::from_secs(20),
            &format!("agents {names:?} connected"),
            || {
                let (_, inventory) = self.get(id, "/inventory");
                let connected: Vec<&str> = inventory["items"]
                    .as_array()?
                    .iter()
                    .filter(|i| i["connected"] == true)
                    .filter_map(|i| i["name"].as_str())
                    .collect();
                names.iter().all(|n| connected.contains(n)).then_some(())
            },
        )
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes an executable script that logs each execution (start and end, with the node, job and
/// transaction) to `log`, sleeps `seconds`, and fails for certnames listed in `failing`.
pub fn execution_logger(dir: &Path, log: &Path, seconds: f64, failing: &[&str]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join(format!("run-{}.sh", free_port()));
    let fail_cases: String = failing
        .iter()
        .map(|n| format!("  {n}) exit 3 ;;\n"))
        .collect();
    let text = format!(
        "#!/bin/sh\necho \"start $PORCH_NODE $PORCH_JOB_ID $PORCH_TRANSACTION_ID $(date +%s%N)\" >> {log}\nsleep {seconds}\necho \"end $PORCH_NODE $PORCH_JOB_ID $PORCH_TRANSACTION_ID $(date +%s%N)\" >> {log}\necho \"ran on $PORCH_NODE\"\ncase \"$PORCH_NODE\" in\n{fail_cases}esac\nexit 0\n",
        log = log.display()
    );
    std::fs::write(&script, text).expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// Parsed lines of an execution log: (kind, node, job, transaction, time ns).
pub fn executions(log: &Path) -> Vec<(String, String, u64, String, u128)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                [kind, node, job, txn, time] => Some((
                    kind.to_string(),
                    node.to_string(),
                    job.parse().ok()?,
                    txn.to_string(),
                    time.parse().ok()?,
                )),
                _ => None,
            }
        })
        .collect()
}
