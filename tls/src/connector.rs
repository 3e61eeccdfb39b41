//! Dials TLS for tonic channels (`Endpoint::connect_with_connector[_lazy]`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::identity::TlsIdentity;

/// Default for [`TlsConnector::with_connect_timeout`]: a dead peer fails fast, and raft retries.
pub const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
enum ConfigSource {
    /// The identity's configuration at each dial: reloads apply to the next connection.
    Identity(Arc<TlsIdentity>),
    Fixed(Arc<ClientConfig>),
}

/// A `tower::Service<Uri>` dialing TCP then TLS. The TLS is done here, so give tonic an
/// `http://` URI: tonic only looks at the scheme to decide on its own TLS, which porch
/// does not enable.
#[derive(Clone)]
pub struct TlsConnector {
    config: ConfigSource,
    server_name: Option<ServerName<'static>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl TlsConnector {
    /// Presents `identity`'s certificate and trusts its CA, as of each dial.
    pub fn new(identity: Arc<TlsIdentity>) -> TlsConnector {
        TlsConnector {
            config: ConfigSource::Identity(identity),
            server_name: None,
            connect_timeout: TCP_CONNECT_TIMEOUT,
        }
    }

    /// A fixed configuration, e.g. from [`crate::client_config_trusting`].
    pub fn with_config(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector {
            config: ConfigSource::Fixed(config),
            server_name: None,
            connect_timeout: TCP_CONNECT_TIMEOUT,
        }
    }

    /// The name the server's certificate must be for. Raft peers pass the member's certname
    /// (a Puppet certificate is issued for its certname, not for an IP address); without
    /// one, the URI's host is used.
    pub fn with_server_name(mut self, name: &str) -> Result<TlsConnector, String> {
        let name = ServerName::try_from(name.to_string())
            .map_err(|_| format!("'{name}' is not a valid DNS name or IP address"))?;
        self.server_name = Some(name);
        Ok(self)
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> TlsConnector {
        self.connect_timeout = timeout;
        self
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        match &self.config {
            ConfigSource::Identity(identity) => identity.client_config(),
            ConfigSource::Fixed(config) => config.clone(),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.client_config();
        let server_name = self.server_name.clone();
        let connect_timeout = self.connect_timeout;
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| format!("{uri}: no host"))?;
            // `[::1]` in a URI is `::1` to the resolver and to certificate checks.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let server_name = match server_name {
                Some(name) => name,
                None => ServerName::try_from(host.clone())
                    .map_err(|_| format!("{uri}: '{host}' is not a valid server name"))?,
            };
            let tcp =
                tokio::time::timeout(connect_timeout, TcpStream::connect((host.as_str(), port)))
                    .await
                    .map_err(|_| {
                        format!("{host}:{port}: no TCP connection within {connect_timeout:?}")
                    })??;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}
