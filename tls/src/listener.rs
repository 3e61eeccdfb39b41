//! Listeners for `axum::serve`: TLS with the identity's current configuration, or plain TCP
//! for `--insecure-http`. Both give each connection a [`PeerInfo`].

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use crate::cert_info::{CertFacts, cert_facts, format_date};
use crate::describe::{TlsSide, describe_rustls_error, find_rustls_error};
use crate::identity::TlsIdentity;
use crate::verifier::REFUSED_CERT;

/// Who is on the other end of a connection: its address, and the certname of the client
/// certificate it presented and we verified (None: no certificate, or plain TCP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub remote: SocketAddr,
    pub certname: Option<String>,
    /// The verified client certificate's serial (uppercase hex, as Puppet's CA lists it): a
    /// long-lived session checks it against later CRLs ([`crate::TlsIdentity::is_revoked`]).
    pub serial: Option<String>,
}

/// How long a client has to finish its handshake before its connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; at the limit, accepting waits for one to finish (the
/// kernel's backlog holds the rest), so a flood of idle sockets costs bounded memory.
pub const TLS_HANDSHAKES_IN_FLIGHT_MAX: usize = 1024;

/// A TLS listener for `axum::serve`. Handshakes run in their own tasks, so a slow or
/// malicious client never delays others; refused ones are logged with the reason.
pub struct TlsListener {
    tcp: TcpListener,
    identity: Arc<TlsIdentity>,
    handshake_timeout: Duration,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, PeerInfo)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, identity: Arc<TlsIdentity>) -> TlsListener {
        TlsListener {
            tcp,
            identity,
            handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            handshakes: JoinSet::new(),
        }
    }

    /// Replaces [`TLS_HANDSHAKE_TIMEOUT`] (tests use a short one).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsListener {
        self.handshake_timeout = timeout;
        self
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let accepting = self.handshakes.len() < TLS_HANDSHAKES_IN_FLIGHT_MAX;
            tokio::select! {
                accepted = self.tcp.accept(), if accepting => match accepted {
                    Ok((tcp, remote)) => {
                        let config = self.identity.server_config();
                        let timeout = self.handshake_timeout;
                        self.handshakes.spawn(REFUSED_CERT.scope(
                            RefCell::new(None),
                            handshake(tcp, remote, config, timeout),
                        ));
                    }
                    Err(error) => accept_failed(error).await,
                },
                Some(finished) = self.handshakes.join_next() => {
                    if let Ok(Some(connection)) = finished {
                        return connection;
                    }
                }
            }
        }
    }

    /// Our own address, with our own certname: who clients reach here.
    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(PeerInfo {
            remote: self.tcp.local_addr()?,
            certname: Some(self.identity.certname()),
            serial: None,
        })
    }
}

async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
) -> Option<(TlsStream<TcpStream>, PeerInfo)> {
    // Nagle's algorithm plus delayed ACKs add ~40 ms to small request/response pairs.
    let _ = tcp.set_nodelay(true);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(timeout, acceptor.accept(tcp).into_fallible()).await {
        Ok(Ok(stream)) => {
            let facts = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| cert_facts(cert).ok());
            let (certname, serial) = match facts {
                Some(facts) => (facts.common_name, Some(facts.serial_hex)),
                None => (None, None),
            };
            Some((
                stream,
                PeerInfo {
                    remote,
                    certname,
                    serial,
                },
            ))
        }
        Ok(Err((error, tcp))) => {
            let refused = REFUSED_CERT.with(|slot| slot.borrow_mut().take());
            let (reason, is_certificate) = refusal_reason(&error, refused.as_ref());
            if is_certificate {
                tracing::warn!("refused a TLS connection from {remote}: {reason}");
            } else {
                tracing::info!("refused a TLS connection from {remote}: {reason}");
            }
            close_gently(tcp);
            None
        }
        Err(_) => {
            tracing::info!(
                "refused a TLS connection from {remote}: no TLS handshake within {timeout:?}"
            );
            None
        }
    }
}

/// How long a refused connection is drained before it is closed.
const REFUSED_LINGER: Duration = Duration::from_secs(2);
/// Refused connections drained at once; beyond, they are closed at once (a flood of bad
/// handshakes must not hold sockets).
const REFUSED_LINGERING_MAX: usize = 256;
static REFUSED_LINGERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Closes a refused connection so that the client can read our alert. With TLS 1.3 the client
/// learns that its certificate was refused only after it has sent its first data; closing a
/// socket with that data unread makes the kernel send a reset, which discards the alert on the
/// client's side ("broken pipe" instead of "certificate revoked"). So: send FIN, read and drop
/// what the client still sends, for a bounded time.
fn close_gently(mut tcp: TcpStream) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if REFUSED_LINGERING.fetch_add(1, Ordering::Relaxed) >= REFUSED_LINGERING_MAX {
        REFUSED_LINGERING.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    tokio::spawn(async move {
        let _ = tcp.shutdown().await;
        let mut sink = [0u8; 4096];
        let drain = async {
            while let Ok(n) = tcp.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(REFUSED_LINGER, drain).await;
        REFUSED_LINGERING.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Why a handshake failed, in words, and whether it was about the client's certificate
/// (worth a warning) rather than a client that went away or did not speak TLS.
fn refusal_reason(error: &std::io::Error, refused: Option<&CertFacts>) -> (String, bool) {
    let Some(tls) = find_rustls_error(error) else {
        return (
            format!("connection lost during the TLS handshake ({error})"),
            false,
        );
    };
    let Some(cert) = refused else {
        return (describe_rustls_error(tls, TlsSide::Server), false);
    };
    use rustls::{CertificateError, Error};
    let who = format!(
        "client certificate '{}'",
        cert.common_name.as_deref().unwrap_or("(no common name)")
    );
    let reason = match tls {
        Error::InvalidCertificate(CertificateError::Revoked) => {
            format!("{who} revoked (serial {})", cert.serial_hex)
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            format!("{who} signed by an unknown CA (issuer: {})", cert.issuer)
        }
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("{who} expired on {}", format_date(cert.not_after)),
        Error::InvalidCertificate(CertificateError::BadSignature) => format!(
            "{who} signed by an unknown CA with our CA's name but another key (issuer: {})",
            cert.issuer
        ),
        other => format!(
            "{who} (serial {}): {}",
            cert.serial_hex,
            describe_rustls_error(other, TlsSide::Server)
        ),
    };
    (reason, true)
}

/// Accept errors are transient (a reset before accept) or resource exhaustion (out of file
/// descriptors); retrying at once would spin, so wait a little as axum's own listener does.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::warn!("accepting a connection failed, retrying in 1 s: {error}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Plain TCP with the same [`PeerInfo`] (certname always None), for `--insecure-http`, so
/// the code serving requests is the same either way.
pub struct PlainListener {
    tcp: TcpListener,
}

impl PlainListener {
    pub fn new(tcp: TcpListener) -> PlainListener {
        PlainListener { tcp }
    }
}

impl Listener for PlainListener {
    type Io = TcpStream;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((tcp, remote)) => {
                    let _ = tcp.set_nodelay(true);
                    return (
                        tcp,
                        PeerInfo {
                            remote,
                            certname: None,
                            serial: None,
                        },
                    );
                }
                Err(error) => accept_failed(error).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(PeerInfo {
            remote: self.tcp.local_addr()?,
            certname: None,
            serial: None,
        })
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        stream.remote_addr().clone()
    }
}
