//! Fixtures: a dev CA and a second, unrelated one; an axum server answering `/whoami` with
//! the client's certname; a client speaking HTTP/1.1 over rustls; captured logs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use porch_tls::dev_ca::{DevCa, Validity};
use porch_tls::{PeerInfo, TlsIdentity, TlsListener, TlsPaths};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const NODE: &str = "node1.porch.test";

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: DevCa,
    pub other_ca: DevCa,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::create(&dir.path().join("ca")).unwrap();
        let other_ca = DevCa::create(&dir.path().join("other-ca")).unwrap();
        Pki { dir, ca, other_ca }
    }

    pub fn issue(&self, certname: &str, validity: Validity) -> TlsPaths {
        let ssldir = self.dir.path().join(format!("ssl-{certname}"));
        self.ca
            .issue(&ssldir, certname, &["127.0.0.1", "localhost"], validity)
            .unwrap()
    }

    pub fn issue_by_other_ca(&self, certname: &str) -> TlsPaths {
        let ssldir = self.dir.path().join(format!("other-ssl-{certname}"));
        self.other_ca
            .issue(&ssldir, certname, &[], Validity::default())
            .unwrap()
    }

    pub fn node(&self) -> Arc<TlsIdentity> {
        TlsIdentity::load(self.issue(NODE, Validity::default())).unwrap()
    }
}

/// Serves `/whoami` (the client's certname, or "(none)") over TLS; returns the address.
pub async fn serve(identity: Arc<TlsIdentity>) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let app = Router::new().route(
        "/whoami",
        get(|ConnectInfo(peer): ConnectInfo<PeerInfo>| async move {
            peer.certname.unwrap_or_else(|| "(none)".into())
        }),
    );
    let listener = TlsListener::new(tcp, identity).with_handshake_timeout(Duration::from_secs(2));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<PeerInfo>(),
        )
        .await
    });
    addr
}

/// GET /whoami over HTTP/1.1; the error is whatever rustls or the socket said.
pub async fn whoami(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> Result<String, std::io::Error> {
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    tls.write_all(b"GET /whoami HTTP/1.1\r\nhost: porch\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    tls.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "expected 200, got: {head}"
    );
    Ok(body.to_string())
}

/// A client configuration presenting any certificate, even one `TlsIdentity::load` would
/// refuse (expired, from another CA): what an attacker or a stale host would send.
pub fn client_presenting(cacert: &Path, paths: &TlsPaths) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cacert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&paths.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&paths.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// Log lines written while the guard lives, on this thread (the tests' runtime is
/// single-threaded, so the listener's handshake tasks log here too).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits up to 5 s for a line containing `needle`; the server logs after the client
    /// already saw the refusal.
    pub async fn wait_for(&self, needle: &str) -> String {
        for _ in 0..500 {
            if let Some(line) = self.text().lines().find(|line| line.contains(needle)) {
                return line.to_string();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected a log line containing {needle:?}, logs were:\n{}",
            self.text()
        );
    }
}

pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.0.clone())
    }
}
