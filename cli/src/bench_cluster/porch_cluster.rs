//! Three `porch server` processes on 127.0.0.1, started with a [`BenchPki`]'s certificates
//! (or with `--insecure-http`), and API clients holding the first admin's token.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

use super::NODES;
use super::pki::{BenchPki, node_certname};

pub struct PorchCluster<'a> {
    exe: PathBuf,
    dir: PathBuf,
    ports: Vec<u16>,
    /// The ports in the members' addresses (`--initial-cluster`): `ports` unless a bench puts
    /// proxies in front of the nodes.
    member_ports: Vec<u16>,
    children: Vec<Option<Child>>,
    extra_args: Vec<String>,
    /// None: `--insecure-http`.
    pki: Option<&'a BenchPki>,
}

impl<'a> PorchCluster<'a> {
    /// A cluster of this binary's `porch server` on ports `base_port`.., data and logs under
    /// `dir`; nothing runs until [`PorchCluster::spawn`].
    pub fn new(
        dir: &Path,
        base_port: u16,
        extra_args: Vec<String>,
        pki: Option<&'a BenchPki>,
    ) -> Result<PorchCluster<'a>, String> {
        Ok(PorchCluster {
            exe: std::env::current_exe().map_err(|e| e.to_string())?,
            dir: dir.to_path_buf(),
            ports: (0..NODES as u16).map(|i| base_port + i).collect(),
            member_ports: (0..NODES as u16).map(|i| base_port + i).collect(),
            children: (0..NODES).map(|_| None).collect(),
            extra_args,
            pki,
        })
    }

    /// Peers reach node `i` at `member_ports[i]` (a proxy's port) instead of where it listens.
    pub fn with_member_ports(mut self, member_ports: Vec<u16>) -> PorchCluster<'a> {
        self.member_ports = member_ports;
        self
    }

    pub fn is_tls(&self) -> bool {
        self.pki.is_some()
    }

    pub fn data_dir(&self, index: usize) -> PathBuf {
        self.dir.join(format!("porch{}", index + 1))
    }

    /// The founding members, `1=porch1@127.0.0.1:port,...` (the certname only with TLS).
    pub fn initial_cluster(&self) -> String {
        self.member_ports
            .iter()
            .enumerate()
            .map(|(i, port)| match self.pki {
                Some(_) => format!("{}={}@127.0.0.1:{port}", i + 1, node_certname(i)),
                None => format!("{}=127.0.0.1:{port}", i + 1),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn args(&self, index: usize) -> Vec<String> {
        let cluster = self.initial_cluster();
        let mut args = vec![
            "server".to_string(),
            "--id".into(),
            (index + 1).to_string(),
            "--data-dir".into(),
            self.data_dir(index).display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.ports[index]),
            "--initial-cluster".into(),
            cluster,
        ];
        match self.pki {
            Some(pki) => args.extend([
                "--ssldir".into(),
                pki.node_ssldir(index).display().to_string(),
                "--certname".into(),
                node_certname(index),
            ]),
            None => args.push("--insecure-http".into()),
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Starts node `index` (again, after [`PorchCluster::kill`]), its output to
    /// `<dir>/porch<index+1>.log`.
    pub fn spawn(&mut self, index: usize) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join(format!("porch{}.log", index + 1)))
            .map_err(|e| e.to_string())?;
        let child = Command::new(&self.exe)
            .args(self.args(index))
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start porch: {e}"))?;
        self.children[index] = Some(child);
        Ok(())
    }

    pub fn spawn_all(&mut self) -> Result<(), String> {
        (0..NODES).try_for_each(|index| self.spawn(index))
    }

    /// kill -9 of node `index`, returning once it is gone.
    pub async fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Kills every node and waits until they are gone (a next cluster may bind the ports).
    pub async fn kill_all(&mut self) {
        for index in 0..NODES {
            self.kill(index).await;
        }
    }

    pub fn pid(&self, index: usize) -> Option<u32> {
        self.children[index].as_ref().and_then(|c| c.id())
    }

    pub fn urls(&self) -> Vec<String> {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        self.ports
            .iter()
            .map(|port| format!("{scheme}://127.0.0.1:{port}"))
            .collect()
    }

    /// An API client for [`PorchCluster::client`], logged in as the first admin.
    pub async fn admin_client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        let token = self.admin_token(timeout).await?;
        self.client(Some(&token), Duration::from_secs(60))
    }

    /// Logs in as the first admin (whose password the initialising node, node 1, writes to
    /// its data directory), waiting up to `timeout` for the cluster to elect a leader and
    /// commit the admin.
    pub async fn admin_token(&self, timeout: Duration) -> Result<String, String> {
        let anonymous = self.client(None, Duration::from_secs(10))?;
        let credential = porch_node::access::bootstrap::credential_path(&self.data_dir(0));
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no attempt");
        while Instant::now() < deadline {
            match self.login(&anonymous, &credential).await {
                Ok(token) => return Ok(token),
                Err(error) => last_error = error,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "no admin login within {timeout:?} (last: {last_error})"
        ))
    }

    /// An HTTP/2 client (ALPN with TLS, prior knowledge without, so both transports differ
    /// only in TLS) trusting only the bench CA and its CRL, as `porch` with `--cacert` does,
    /// sending `token` with every request. Its requests share one connection per node.
    pub fn client(
        &self,
        token: Option<&str>,
        request_timeout: Duration,
    ) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder().timeout(request_timeout);
        if let Some(token) = token {
            let mut headers = reqwest::header::HeaderMap::new();
            let token = reqwest::header::HeaderValue::from_str(token)
                .map_err(|_| "the token is not a header value".to_string())?;
            headers.insert("X-Authentication", token);
            builder = builder.default_headers(headers);
        }
        builder = match self.pki {
            Some(pki) => builder.use_preconfigured_tls(
                porch_tls::client_config_trusting(&pki.cacert_path(), Some(&pki.crl_path()))
                    .map_err(|e| e.to_string())?,
            ),
            None => builder.http2_prior_knowledge(),
        };
        builder.build().map_err(|e| e.to_string())
    }

    async fn login(&self, http: &reqwest::Client, credential: &Path) -> Result<String, String> {
        let password = porch_node::access::bootstrap::read_password_file(credential)?;
        let body = json!({"login": "admin", "password": password, "lifetime": "1d"});
        let mut last_error = String::new();
        for url in self.urls() {
            let response = http
                .post(format!("{url}/rbac-api/v1/auth/token"))
                .json(&body)
                .send()
                .await;
            match response {
                Ok(response) => {
                    let status = response.status();
                    let value: Value = response.json().await.unwrap_or(Value::Null);
                    if let Some(token) = value["token"].as_str() {
                        return Ok(token.to_string());
                    }
                    last_error = format!("{url}: {status} {value}");
                }
                Err(e) => last_error = format!("{url}: {e}"),
            }
        }
        Err(last_error)
    }

    /// The index of the node that the first reachable live node names leader.
    pub async fn leader(&self, http: &reqwest::Client) -> Option<usize> {
        for (i, url) in self.urls().iter().enumerate() {
            if self.children[i].is_none() {
                continue;
            }
            if let Ok(response) = http
                .get(format!("{url}/orchestrator/v1/status"))
                .send()
                .await
                && let Ok(value) = response.json::<Value>().await
                && let Some(leader) = value["leader"].as_u64()
            {
                return Some(leader as usize - 1);
            }
        }
        None
    }
}
