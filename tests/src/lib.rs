//! Harness for porch's multi-process tests: real `porch server` and `porch agent` processes
//! on loopback, each with its own sled data dir in a temp dir, driven over the real HTTP API —
//! secure as in production: a throwaway CA issues every node's and agent's certificate, nodes
//! and agents speak mutual TLS, and API calls carry the token of the first admin (logged in
//! with the credential the initialising node wrote).
//!
//! The `porch` binary is looked up next to the test executable (`target/<profile>/porch`);
//! build it first (`cargo build --workspace --bins`, as `.ci/run` does). Every wait is a
//! bounded poll that panics with what it expected and what it saw. Processes are killed when
//! the harness is dropped; if the test panicked, the tail of every log is printed.
//!
//! [`Cluster::start_with_pki`] runs the nodes with certificates from an existing CA instead (a
//! real Puppet Server's, `tests/puppet-stack/up.sh certs`), and [`Cluster::start_agent_flags`]
//! starts agents whose certificates and runner the test chooses.

pub mod browser;

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
    /// The `porch` binary this process runs (another build's in the upgrade test).
    bin: PathBuf,
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
        let child = Command::new(&self.bin)
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
    pub ca: porch_tls::dev_ca::DevCa,
    /// The ssldir holding every certificate the CA issued (Puppet's layout).
    pub ssldir: PathBuf,
    /// The admin's token (sent with every request of this harness) and the file holding it.
    pub token: String,
    pub token_file: PathBuf,
    /// The nodes' certificates when they come from an existing CA (then `ca` issues none of
    /// them).
    existing_pki: Option<ExistingPki>,
    /// The admin's password when it comes from a restored backup (no credential file then).
    restored_admin_password: Option<String>,
    /// The `porch` binary new node processes run.
    node_bin: PathBuf,
}

/// A new cluster seeded from a backup (`porch restore` into the founding node's data dir).
pub struct Restore<'a> {
    pub backup: &'a Path,
    /// The password of the backed-up cluster's admin, which the restored state keeps.
    pub admin_password: &'a str,
}

/// Certificates from an existing CA, a Puppet Server's: the CA file clients trust, and each
/// node's certname and the ssldir holding its certificate, key, CA and CRL.
#[derive(Clone, Debug)]
pub struct ExistingPki {
    pub cacert: PathBuf,
    pub nodes: BTreeMap<u64, NodeIdentity>,
}

#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub certname: String,
    pub ssldir: PathBuf,
}

/// The certname of node `id`'s certificate.
pub fn node_certname(id: u64) -> String {
    format!("node{id}")
}

/// An HTTPS client trusting only the cluster's CA.
pub fn https_client(cacert: &Path) -> reqwest::blocking::Client {
    let tls = porch_tls::client_config_trusting(cacert, None).expect("the test CA loads");
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client")
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
        Cluster::start_nodes((1..=n).collect(), None, extra, None, &porch_bin())
    }

    /// Starts `n` founding nodes of a cluster restored from `restore`: `porch restore` seeds
    /// node 1's data dir first (and must succeed), the others start empty.
    pub fn start_restored(n: u64, extra: &[&str], restore: Restore) -> Cluster {
        Cluster::start_nodes((1..=n).collect(), None, extra, Some(restore), &porch_bin())
    }

    /// Starts the nodes of `pki` (ids and certificates from an existing CA) as founding
    /// members with `extra` server flags and waits for a leader.
    pub fn start_with_pki(pki: ExistingPki, extra: &[&str]) -> Cluster {
        Cluster::start_nodes(
            pki.nodes.keys().copied().collect(),
            Some(pki),
            extra,
            None,
            &porch_bin(),
        )
    }

    fn start_nodes(
        ids: Vec<u64>,
        existing_pki: Option<ExistingPki>,
        extra: &[&str],
        restore: Option<Restore>,
        bin: &Path,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: BTreeMap<u64, u16> = ids.iter().map(|id| (*id, free_port())).collect();
        let ca = porch_tls::dev_ca::DevCa::create(&dir.path().join("ca")).expect("a test CA");
        let ssldir = dir.path().join("ssl");
        let token_file = dir.path().join("token");
        let cacert = match &existing_pki {
            Some(pki) => pki.cacert.clone(),
            None => ca.cacert_path(),
        };
        let mut cluster = Cluster {
            http: https_client(&cacert),
            ca,
            ssldir,
            token: String::new(),
            token_file,
            dir,
            ports,
            nodes: BTreeMap::new(),
            agents: BTreeMap::new(),
            existing_pki,
            restored_admin_password: restore.as_ref().map(|r| r.admin_password.to_string()),
            node_bin: bin.to_path_buf(),
        };
        let initial = cluster.initial_cluster();
        if let Some(restore) = &restore {
            let first = ids[0].to_string();
            let data_dir = cluster.data_dir(ids[0]).display().to_string();
            let backup = restore.backup.display().to_string();
            let output = cluster.porch(&[
                "restore",
                "--from",
                &backup,
                "--data-dir",
                &data_dir,
                "--id",
                &first,
                "--initial-cluster",
                &initial,
            ]);
            assert!(
                output.status.success(),
                "porch restore failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for id in ids {
            cluster.add_process(id, &initial, extra);
        }
        // A login needs a leader (it commits the token), so it comes first; `/status` needs it.
        cluster.token = cluster.admin_token();
        std::fs::write(&cluster.token_file, &cluster.token).expect("write the token file");
        cluster.wait_for_leader(Duration::from_secs(20));
        cluster
    }

    /// Issues a certificate for `certname` (loopback alt names) into the cluster's ssldir.
    pub fn issue_cert(&self, certname: &str) {
        self.ca
            .issue(
                &self.ssldir,
                certname,
                &["127.0.0.1", "localhost"],
                porch_tls::dev_ca::Validity::default(),
            )
            .unwrap_or_else(|e| panic!("issue a certificate for {certname}: {e}"));
    }

    pub fn cacert(&self) -> PathBuf {
        match &self.existing_pki {
            Some(pki) => pki.cacert.clone(),
            None => self.ssldir.join("certs").join("ca.pem"),
        }
    }

    /// The certname of node `id`'s certificate.
    pub fn certname(&self, id: u64) -> String {
        match self
            .existing_pki
            .as_ref()
            .and_then(|pki| pki.nodes.get(&id))
        {
            Some(node) => node.certname.clone(),
            None => node_certname(id),
        }
    }

    /// The flags a client needs to reach this cluster as the admin.
    pub fn client_flags(&self) -> Vec<String> {
        vec![
            "--cacert".into(),
            self.cacert().display().to_string(),
            "--token-file".into(),
            self.token_file.display().to_string(),
        ]
    }

    /// Logs in through node `id`; the token, or the error body.
    pub fn login(
        &self,
        id: u64,
        login: &str,
        password: &str,
        lifetime: &str,
    ) -> Result<String, (u16, Value)> {
        let body = serde_json::json!({"login": login, "password": password, "lifetime": lifetime});
        let r = self
            .http
            .post(format!("{}/rbac-api/v1/auth/token", self.url(id)))
            .json(&body)
            .send()
            .unwrap_or_else(|e| panic!("login on node {id}: {e:?}"));
        let status = r.status().as_u16();
        let value: Value = r.json().unwrap_or(Value::Null);
        match value["token"].as_str() {
            Some(token) if status == 200 => Ok(token.to_string()),
            _ => Err((status, value)),
        }
    }

    /// The first admin's password, as the initialising node (the lowest id) wrote it (or
    /// as the restored backup holds it).
    pub fn admin_password(&self) -> String {
        if let Some(password) = &self.restored_admin_password {
            return password.clone();
        }
        let first = *self.ports.keys().next().expect("a node");
        let path = self.data_dir(first).join("admin-credential");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .find_map(|l| l.strip_prefix("password:"))
            .map(|p| p.trim().to_string())
            .unwrap_or_else(|| panic!("{}: no password line", path.display()))
    }

    fn admin_token(&self) -> String {
        let first = *self.ports.keys().next().expect("a node");
        wait_until(Duration::from_secs(30), "an admin login", || {
            let path = self.data_dir(first).join("admin-credential");
            if self.restored_admin_password.is_none() {
                std::fs::metadata(&path).ok()?;
            } else if !self.answers(first) {
                return None;
            }
            self.login(first, "admin", &self.admin_password(), "1h")
                .ok()
        })
    }

    fn initial_cluster(&self) -> String {
        self.ports
            .iter()
            .map(|(id, port)| format!("{id}={}@127.0.0.1:{port}", self.certname(*id)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn add_process(&mut self, id: u64, initial: &str, extra: &[&str]) {
        let port = self.ports[&id];
        let (certname, ssldir) = match self.existing_pki.as_ref().and_then(|p| p.nodes.get(&id)) {
            Some(node) => (node.certname.clone(), node.ssldir.clone()),
            None => {
                self.issue_cert(&node_certname(id));
                (node_certname(id), self.ssldir.clone())
            }
        };
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
            "--ssldir".into(),
            ssldir.display().to_string(),
            "--certname".into(),
            certname,
            "--tls-reload-secs".into(),
            "1".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut proc = Proc {
            bin: self.node_bin.clone(),
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
        let addr = format!("{}@127.0.0.1:{port}", self.certname(id));
        // The current members come first: a node not yet added trusts raft traffic from the
        // certnames of its --initial-cluster, and it lists itself with a higher id than the
        // lowest founding id, so it never initialises a cluster of its own.
        let members = self
            .ports
            .iter()
            .filter(|(i, _)| **i != id)
            .map(|(i, p)| format!("{i}={}@127.0.0.1:{p}", self.certname(*i)))
            .collect::<Vec<_>>()
            .join(",");
        self.add_process(id, &format!("{members},{id}={addr}"), extra);
        wait_until(
            Duration::from_secs(20),
            &format!("node {id} to answer"),
            || self.answers(id).then_some(()),
        );
        addr
    }

    /// Runs `porch ARGS` to its end (a client or offline command); its output.
    pub fn porch(&self, args: &[&str]) -> std::process::Output {
        Command::new(porch_bin())
            .args(args)
            .env("HOME", self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run porch {args:?}: {e}"))
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    pub fn url(&self, id: u64) -> String {
        format!("https://127.0.0.1:{}", self.ports[&id])
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

    /// The process id of node `id`, while it runs (benchmarks read its CPU time).
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes.get(&id)?.child.as_ref().map(Child::id)
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

    /// Everything the agent printed so far.
    pub fn agent_log(&self, certname: &str) -> String {
        std::fs::read_to_string(&self.agents[certname].log).unwrap_or_default()
    }

    /// `DELETE /orchestrator/v1{path}` as the admin.
    pub fn delete(&self, id: u64, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(format!("{}/orchestrator/v1{path}", self.url(id)))
            .header("X-Authentication", &self.token)
            .send()
            .unwrap_or_else(|e| panic!("DELETE {path} on node {id}: {e:?}"));
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// The harness's HTTPS client (trusts the cluster's CA, sends no token by itself).
    pub fn http(&self) -> &reqwest::blocking::Client {
        &self.http
    }

    /// Every `*.log` file in the harness's dir so far (nodes, agents, agents run to exit,
    /// execution logs), by file name.
    pub fn all_logs(&self) -> Vec<(String, String)> {
        let mut logs = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).expect("the harness's temp dir") {
            let path = entry.expect("a dir entry").path();
            if path.extension().is_some_and(|e| e == "log") {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                logs.push((
                    name.to_string(),
                    std::fs::read_to_string(&path).unwrap_or_default(),
                ));
            }
        }
        logs
    }

    /// `method path` (the full path) on node `id` with this token (or none) and JSON body.
    pub fn request_as(
        &self,
        method: reqwest::Method,
        id: u64,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url(id)));
        if let Some(token) = token {
            request = request.header("X-Authentication", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let r = request
            .send()
            .unwrap_or_else(|e| panic!("{method} {path} on node {id}: {e:?}"));
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// Everything the node printed so far.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default()
    }

    pub fn restart(&mut self, id: u64) {
        self.nodes.get_mut(&id).expect("known node").spawn();
    }

    /// Starts node `id` (stopped) again from the `porch` binary `bin`, with the same flags
    /// and data dir: an upgrade (or downgrade) in place.
    pub fn restart_with(&mut self, id: u64, bin: &Path) {
        let node = self.nodes.get_mut(&id).expect("known node");
        node.bin = bin.to_path_buf();
        node.spawn();
    }

    /// The `porch` binary node `id` runs.
    pub fn bin_of(&self, id: u64) -> PathBuf {
        self.nodes[&id].bin.clone()
    }

    /// Starts `n` founding nodes, all running the `porch` binary `bin`.
    pub fn start_with_bin(n: u64, extra: &[&str], bin: &Path) -> Cluster {
        Cluster::start_nodes((1..=n).collect(), None, extra, None, bin)
    }

    /// Whether the node answers HTTPS at all (its API root, which needs no token: a node not
    /// yet in the cluster cannot check tokens).
    pub fn answers(&self, id: u64) -> bool {
        self.http
            .get(format!("{}/orchestrator", self.url(id)))
            .timeout(Duration::from_secs(2))
            .send()
            .is_ok_and(|r| r.status().is_success())
    }

    /// This node's own `/status`, if it answers.
    pub fn status(&self, id: u64) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/orchestrator/v1/status", self.url(id)))
            .header("X-Authentication", &self.token)
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?;
        r.json().ok()
    }

    /// Waits until node `id` reports that the cluster writes format `version` (the leader
    /// raises it within seconds of forming; features of that format wait for it).
    pub fn wait_format_version(&self, id: u64, version: u16) {
        wait_until(
            Duration::from_secs(30),
            &format!("the cluster to write format version {version}"),
            || {
                let (status, value) = self.get(id, "/cluster");
                (status == 200 && value["format_version"].as_u64() >= Some(u64::from(version)))
                    .then_some(())
            },
        );
    }

    /// Waits until a running node reports a leader that is itself running; returns it.
    pub fn wait_for_leader(&self, timeout: Duration) -> u64 {
        let running = self.running();
        wait_until(timeout, "a leader among the running nodes", || {
            for id in &running {
                if let Some(s) = self.status(*id)
                    && let Some(l) = s["leader"].as_u64()
                    && running.contains(&l)
                    && self.status(l).and_then(|s| s["leader"].as_u64()) == Some(l)
                {
                    return Some(l);
                }
            }
            None
        })
    }

    pub fn get(&self, id: u64, path: &str) -> (u16, Value) {
        self.get_as(id, path, Some(&self.token))
    }

    /// `GET /orchestrator/v1{path}` with this token (or none).
    pub fn get_as(&self, id: u64, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .get(format!("{}/orchestrator/v1{path}", self.url(id)));
        if let Some(token) = token {
            request = request.header("X-Authentication", token);
        }
        let r = request
            .send()
            .unwrap_or_else(|e| panic!("GET {path} on node {id}: {e:?}"));
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn post(&self, id: u64, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let token = self.token.clone();
        let mut with_token = vec![("X-Authentication", token.as_str())];
        with_token.extend_from_slice(headers);
        self.post_raw(id, &format!("/orchestrator/v1{path}"), body, &with_token)
    }

    /// `POST {path}` (the full path) with exactly these headers.
    pub fn post_raw(
        &self,
        id: u64,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url(id)))
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
        self.issue_cert(certname);
        self.start_agent_with(certname, command, &[]);
    }

    /// Starts an agent for `certname` with extra flags (e.g. another certificate).
    pub fn start_agent_with(&mut self, certname: &str, command: &Path, extra: &[&str]) {
        let args = self.agent_args(certname, command, &self.all_urls(), extra);
        let mut proc = Proc {
            bin: porch_bin(),
            args,
            log: self.dir.path().join(format!("agent-{certname}.log")),
            child: None,
        };
        proc.spawn();
        self.agents.insert(certname.to_string(), proc);
    }

    /// Starts an agent for `certname` with the command runner that knows only `nodes`, in
    /// that order (its `--service-url` list).
    pub fn start_agent_via(&mut self, certname: &str, command: &Path, nodes: &[u64]) {
        self.issue_cert(certname);
        let urls = nodes
            .iter()
            .map(|id| self.url(*id))
            .collect::<Vec<_>>()
            .join(",");
        let args = self.agent_args(certname, command, &urls, &[]);
        let mut proc = Proc {
            bin: porch_bin(),
            args,
            log: self.dir.path().join(format!("agent-{certname}.log")),
            child: None,
        };
        proc.spawn();
        self.agents.insert(certname.to_string(), proc);
    }

    /// Starts an agent for `certname` connected to all nodes, with its own spool dir; `flags`
    /// give everything else (certificates, runner).
    pub fn start_agent_flags(&mut self, certname: &str, flags: &[String]) {
        let mut args = vec![
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
        ];
        args.extend(flags.iter().cloned());
        let mut proc = Proc {
            bin: porch_bin(),
            args,
            log: self.dir.path().join(format!("agent-{certname}.log")),
            child: None,
        };
        proc.spawn();
        self.agents.insert(certname.to_string(), proc);
    }

    /// Runs an agent that is expected to stop by itself (a refused certificate): its exit
    /// code (None if it was still running after `timeout` and was killed) and its output.
    pub fn run_agent_to_exit(
        &self,
        certname: &str,
        command: &Path,
        extra: &[&str],
        timeout: Duration,
    ) -> (Option<i32>, String) {
        let log = self
            .dir
            .path()
            .join(format!("agent-{certname}-{}.log", free_port()));
        let mut proc = Proc {
            bin: porch_bin(),
            args: self.agent_args(certname, command, &self.all_urls(), extra),
            log: log.clone(),
            child: None,
        };
        proc.spawn();
        let mut child = proc.child.take().expect("spawned");
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status.code();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (code, std::fs::read_to_string(&log).unwrap_or_default())
    }

    fn agent_args(
        &self,
        certname: &str,
        command: &Path,
        urls: &str,
        extra: &[&str],
    ) -> Vec<String> {
        let mut args = vec![
            "agent".to_string(),
            "--certname".into(),
            certname.into(),
            "--ssldir".into(),
            self.ssldir.display().to_string(),
            "--tls-reload-secs".into(),
            "1".into(),
            "--service-url".into(),
            urls.to_string(),
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
        args.extend(extra.iter().map(|s| s.to_string()));
        args
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

/// Polls `probe` every 50 ms until it returns `Some`; `None` after `timeout`.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
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
