//! Three etcd members on 127.0.0.1 for the side-by-side measurement: with TLS (the default),
//! clients and peers speak mutual TLS with certificates from the bench's CA (`--cert-file`,
//! `--client-cert-auth`, `--peer-cert-file`, `--peer-client-cert-auth`, https URLs
//! everywhere); with `--insecure-http`, plain http. The bench talks to each member through
//! etcd's native gRPC client (etcd-client over rustls with ring).

use crate::bench_cluster::BenchPki;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use porch_tls::TlsPaths;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const MEMBERS: usize = 3;

/// The certname the bench presents to etcd as a client.
const CLIENT_CERTNAME: &str = "bench-client";

pub struct EtcdCluster {
    children: Vec<Child>,
    client_urls: Vec<String>,
    /// None: plain http.
    client_tls: Option<TlsOptions>,
}

impl EtcdCluster {
    /// Starts `bin` three times: clients on ports `base_port + 10..`, peers on
    /// `base_port + 20..`, data and logs under `dir`.
    pub fn start(
        bin: &Path,
        dir: &Path,
        base_port: u16,
        pki: Option<&BenchPki>,
    ) -> Result<EtcdCluster, String> {
        let scheme = if pki.is_some() { "https" } else { "http" };
        let client_urls: Vec<String> = (0..MEMBERS as u16)
            .map(|i| format!("{scheme}://127.0.0.1:{}", base_port + 10 + i))
            .collect();
        let peer_urls: Vec<String> = (0..MEMBERS as u16)
            .map(|i| format!("{scheme}://127.0.0.1:{}", base_port + 20 + i))
            .collect();
        let initial_cluster = peer_urls
            .iter()
            .enumerate()
            .map(|(i, url)| format!("{}={url}", member_name(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut children = Vec::new();
        for i in 0..MEMBERS {
            let name = member_name(i);
            let mut command = Command::new(bin);
            command
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.join(&name))
                .args(["--listen-client-urls", &client_urls[i]])
                .args(["--advertise-client-urls", &client_urls[i]])
                .args(["--listen-peer-urls", &peer_urls[i]])
                .args(["--initial-advertise-peer-urls", &peer_urls[i]])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-state", "new"]);
            if let Some(pki) = pki {
                let paths = pki.issue_host(&name)?;
                command
                    .arg("--cert-file")
                    .arg(&paths.cert)
                    .arg("--key-file")
                    .arg(&paths.key)
                    .arg("--trusted-ca-file")
                    .arg(&paths.cacert)
                    .arg("--client-cert-auth")
                    .arg("--peer-cert-file")
                    .arg(&paths.cert)
                    .arg("--peer-key-file")
                    .arg(&paths.key)
                    .arg("--peer-trusted-ca-file")
                    .arg(&paths.cacert)
                    .arg("--peer-client-cert-auth");
            }
            let log = std::fs::File::create(dir.join(format!("{name}.log")))
                .map_err(|e| e.to_string())?;
            let child = command
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    format!(
                        "cannot start {}: {e} (apt-get install etcd-server)",
                        bin.display()
                    )
                })?;
            children.push(child);
        }
        let client_tls = match pki {
            Some(pki) => Some(client_tls(&pki.issue_host(CLIENT_CERTNAME)?)?),
            None => None,
        };
        Ok(EtcdCluster {
            children,
            client_urls,
            client_tls,
        })
    }

    /// One gRPC client per member, each connected to that member only, once every member
    /// answers a linearizable read (so the cluster has a leader), waiting up to `timeout`.
    pub async fn member_clients(&self, timeout: Duration) -> Result<Vec<Client>, String> {
        let deadline = Instant::now() + timeout;
        let mut clients = Vec::new();
        for url in &self.client_urls {
            loop {
                let error = match self.connect(url).await {
                    Ok(mut client) => match client.get("bench/ready", None).await {
                        Ok(_) => {
                            clients.push(client);
                            break;
                        }
                        Err(e) => e.to_string(),
                    },
                    Err(e) => e,
                };
                if Instant::now() > deadline {
                    return Err(format!(
                        "etcd at {url} did not answer within {timeout:?} (last: {error})"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(clients)
    }

    /// Which of `members` (one client per member, in member order) leads, asked of each.
    pub async fn leader(members: &mut [Client]) -> Result<usize, String> {
        let mut leader = None;
        let mut ids = Vec::new();
        for member in members.iter_mut() {
            let status = member
                .status()
                .await
                .map_err(|e| format!("etcd status: {e}"))?;
            leader = leader.or(Some(status.leader()).filter(|&id| id != 0));
            ids.push(status.header().map(|h| h.member_id()));
        }
        let leader = leader.ok_or("etcd: no member knows a leader")?;
        ids.iter()
            .position(|&id| id == Some(leader))
            .ok_or_else(|| format!("etcd: leader {leader:x} is none of the members"))
    }

    async fn connect(&self, url: &str) -> Result<Client, String> {
        let mut options = ConnectOptions::new()
            .with_timeout(Duration::from_secs(10))
            .with_connect_timeout(Duration::from_secs(2));
        if let Some(tls) = &self.client_tls {
            options = options.with_tls(tls.clone());
        }
        Client::connect([url], Some(options))
            .await
            .map_err(|e| e.to_string())
    }

    /// Kills every member and waits until they are gone.
    pub async fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

fn member_name(index: usize) -> String {
    format!("etcd{}", index + 1)
}

/// Trusts the bench CA only and presents the bench client's certificate
/// (`--client-cert-auth`).
fn client_tls(paths: &TlsPaths) -> Result<TlsOptions, String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    Ok(TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&paths.cacert)?))
        .identity(Identity::from_pem(read(&paths.cert)?, read(&paths.key)?)))
}
