//! The fanout bench's world: a throwaway CA with certificates for three nodes and every
//! simulated agent, a 3-node cluster started with them (or with `--insecure-http`), and an
//! API client holding the first admin's token.

use porch_tls::dev_ca::{DevCa, Validity};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub const NODES: usize = 3;

/// Node `index`'s certname; its certificate is also for 127.0.0.1 and localhost, the hosts
/// agents and the bench dial.
fn node_certname(index: usize) -> String {
    format!("porch{}", index + 1)
}

/// Certificates from a throwaway CA: one ssldir per node, one shared by the simulated agents
/// (`<prefix>1` .. `<prefix>N`, as `porch agent --sessions` names them).
pub struct BenchPki {
    dir: PathBuf,
    ca: DevCa,
    agents_issued: usize,
}

impl BenchPki {
    pub fn create(dir: &Path) -> Result<BenchPki, String> {
        let ca = DevCa::create(&dir.join("ca")).map_err(|e| e.to_string())?;
        for index in 0..NODES {
            ca.issue(
                &dir.join(node_certname(index)),
                &node_certname(index),
                &["127.0.0.1", "localhost"],
                Validity::default(),
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(BenchPki {
            dir: dir.to_path_buf(),
            ca,
            agents_issued: 0,
        })
    }

    fn node_ssldir(&self, index: usize) -> PathBuf {
        self.dir.join(node_certname(index))
    }

    pub fn agent_ssldir(&self) -> PathBuf {
        self.dir.join("agents")
    }

    /// Issues agent certificates up to `<prefix><count>` (the earlier ones are kept).
    pub fn issue_agents(&mut self, prefix: &str, count: usize) -> Result<(), String> {
        for i in self.agents_issued + 1..=count {
            self.ca
                .issue(
                    &self.agent_ssldir(),
                    &format!("{prefix}{i}"),
                    &[],
                    Validity::default(),
                )
                .map_err(|e| e.to_string())?;
        }
        self.agents_issued = self.agents_issued.max(count);
        Ok(())
    }
}

/// Three `porch server` processes on 127.0.0.1.
pub struct FanoutCluster<'a> {
    pub exe: PathBuf,
    pub dir: PathBuf,
    pub ports: Vec<u16>,
    pub children: Vec<Option<Child>>,
    pub extra_args: Vec<String>,
    /// None: `--insecure-http`.
    pub pki: Option<&'a BenchPki>,
}

impl FanoutCluster<'_> {
    fn data_dir(&self, index: usize) -> PathBuf {
        self.dir.join(format!("porch{}", index + 1))
    }

    fn args(&self, index: usize) -> Vec<String> {
        let cluster = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| match self.pki {
                Some(_) => format!("{}={}@127.0.0.1:{port}", i + 1, node_certname(i)),
                None => format!("{}=127.0.0.1:{port}", i + 1),
            })
            .collect::<Vec<_>>()
            .join(",");
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

    /// An API client trusting the bench CA, logged in as the first admin (whose password the
    /// initialising node, node 1, writes to its data directory). Waits up to `timeout` for
    /// the cluster to elect a leader and commit the admin.
    pub async fn admin_client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        let anonymous = self.client_builder()?.build().map_err(|e| e.to_string())?;
        let credential = porch_node::access::bootstrap::credential_path(&self.data_dir(0));
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no attempt");
        while Instant::now() < deadline {
            match self.login(&anonymous, &credential).await {
                Ok(token) => {
                    let mut headers = reqwest::header::HeaderMap::new();
                    let token = reqwest::header::HeaderValue::from_str(&token)
                        .map_err(|_| "the token is not a header value".to_string())?;
                    headers.insert("X-Authentication", token);
                    return self
                        .client_builder()?
                        .default_headers(headers)
                        .build()
                        .map_err(|e| e.to_string());
                }
                Err(error) => last_error = error,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "no admin login within {timeout:?} (last: {last_error})"
        ))
    }

    /// Trusts only the bench CA (with its CRL), as `porch` with `--cacert` does.
    fn client_builder(&self) -> Result<reqwest::ClientBuilder, String> {
        let builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
        let Some(pki) = self.pki else {
            return Ok(builder);
        };
        let tls =
            porch_tls::client_config_trusting(&pki.ca.cacert_path(), Some(&pki.ca.crl_path()))
                .map_err(|e| e.to_string())?;
        Ok(builder.use_preconfigured_tls(tls))
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
