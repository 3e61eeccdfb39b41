//! A host's TLS identity: its certificate, key, CA and CRL, turned into rustls configurations
//! that are swapped atomically when the files change on disk.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::WebPkiServerVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, ServerConfig};

use crate::error::{FileRole, TlsError};
use crate::material::{self, FileContents, Material, provider};
use crate::paths::TlsPaths;
use crate::verifier::RecordingClientVerifier;

/// The configurations built from one load of the files.
struct Current {
    certname: String,
    /// Serials the CRL revokes (uppercase hex).
    revoked: std::collections::BTreeSet<String>,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    http_client: Arc<ClientConfig>,
    contents: FileContents,
}

/// This host's certificate and trust, shared by the listener, the connectors and the reloader.
/// Readers take the current configuration per handshake, so a reload applies to the next
/// connection without a restart and never to one mid-handshake.
pub struct TlsIdentity {
    paths: TlsPaths,
    current: ArcSwap<Current>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certname", &self.certname())
            .field("paths", &self.paths)
            .finish()
    }
}

impl TlsIdentity {
    /// Loads and cross-checks every file (see [`TlsPaths`]); the error names the file at fault.
    pub fn load(paths: TlsPaths) -> Result<Arc<TlsIdentity>, TlsError> {
        let contents = material::read_contents(&paths)?;
        let current = build(&paths, contents)?;
        Ok(Arc::new(TlsIdentity {
            paths,
            current: ArcSwap::from_pointee(current),
        }))
    }

    /// The subject common name of our certificate (Puppet's certname).
    pub fn certname(&self) -> String {
        self.current.load().certname.clone()
    }

    pub fn paths(&self) -> &TlsPaths {
        &self.paths
    }

    /// For serving: client certificates are optional (API clients authenticate with tokens,
    /// agents and peers present certificates) but one that is presented must chain to the CA,
    /// be valid now and not be revoked. ALPN offers h2 and http/1.1.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current.load().server.clone()
    }

    /// For dialing peers: trusts only the CA (and its CRL), presents our certificate, ALPN h2.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current.load().client.clone()
    }

    /// For HTTP clients (reqwest) calling services outside porch, such as PuppetDB: the same
    /// trust and certificate as [`TlsIdentity::client_config`], but ALPN offers h2 and
    /// http/1.1, so a server that speaks only HTTP/1.1 (PuppetDB's Jetty) is not refused and
    /// reqwest speaks whichever was negotiated. A new `Arc` after each reload.
    pub fn http_client_config(&self) -> Arc<ClientConfig> {
        self.current.load().http_client.clone()
    }

    /// Whether the current CRL revokes the certificate with this serial (uppercase hex, as
    /// [`crate::PeerInfo::serial`]): connections that outlive a CRL reload check with this.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.current.load().revoked.contains(serial)
    }

    /// Reloads if any file changed since the last load. Ok(true) when new configurations
    /// were swapped in; on error the previous configurations stay in use.
    pub fn reload_now(&self) -> Result<bool, TlsError> {
        let contents = material::read_contents(&self.paths)?;
        if contents == self.current.load().contents {
            return Ok(false);
        }
        let next = build(&self.paths, contents)?;
        tracing::info!(
            "reloaded TLS material for '{}' from {}",
            next.certname,
            self.paths.cert.display()
        );
        self.current.store(Arc::new(next));
        Ok(true)
    }

    /// Polls the files every `interval` and reloads on change, logging a warning that names
    /// the file when the new material is bad (the previous configuration stays in use). The
    /// task ends when the identity is dropped.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let identity: Weak<TlsIdentity> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(identity) = identity.upgrade() else {
                    return;
                };
                let polled = tokio::task::spawn_blocking(move || identity.reload_now()).await;
                match polled {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(
                            "TLS reload failed, keeping the previous certificates: {error}"
                        )
                    }
                    Err(panicked) => tracing::warn!("TLS reload task failed: {panicked}"),
                }
            }
        })
    }
}

fn build(paths: &TlsPaths, contents: FileContents) -> Result<Current, TlsError> {
    let material = material::load(paths, contents)?;
    let server = server_config(&material)?;
    let client = client_config(&material)?;
    let mut http_client = client.clone();
    http_client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut revoked = std::collections::BTreeSet::new();
    for crl in &material.crls {
        let serials = crate::cert_info::revoked_serials(crl).map_err(|why| {
            let path = paths.crl.clone().unwrap_or_default();
            TlsError::file(FileRole::Crl, &path, why)
        })?;
        revoked.extend(serials);
    }
    Ok(Current {
        revoked,
        certname: material.certname,
        server: Arc::new(server),
        client: Arc::new(client),
        http_client: Arc::new(http_client),
        contents: material.contents,
    })
}

fn server_config(material: &Material) -> Result<ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(material.roots.clone(), provider())
        .with_crls(material.crls.iter().cloned())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let verifier = Arc::new(RecordingClientVerifier { inner: verifier });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // A resumed session skips certificate verification: a client whose certificate was
    // revoked after its first handshake could resume past the new CRL. Full handshakes only.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

fn client_config(material: &Material) -> Result<ClientConfig, TlsError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(material.roots.clone(), provider())
        .with_crls(material.crls.iter().cloned())
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A client configuration for API clients without a certificate of their own (the CLI with a
/// token): trusts only `cacert`, checks the server's certificate against `crl` when given.
/// ALPN offers h2 and http/1.1 (reqwest speaks either).
pub fn client_config_trusting(cacert: &Path, crl: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let (roots, ca_subjects) =
        material::root_store(cacert, &material::read_file(FileRole::CaCert, cacert)?)?;
    let crls = match crl {
        Some(path) => {
            let crls = material::parse_crls(path, &material::read_file(FileRole::Crl, path)?)?;
            for crl in &crls {
                let issuer = crate::cert_info::crl_issuer(crl)
                    .map_err(|why| TlsError::file(FileRole::Crl, path, why))?;
                if !ca_subjects.contains(&issuer) {
                    return Err(TlsError::file(
                        FileRole::Crl,
                        path,
                        format!(
                            "not a CRL of the CA in --cacert {} (CRL issuer: {issuer})",
                            cacert.display()
                        ),
                    ));
                }
            }
            crls
        }
        None => Vec::new(),
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .with_crls(crls)
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
