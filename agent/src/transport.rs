//! How an agent reaches orchestrator nodes: mutual TLS with its Puppet certificate by
//! default, plain HTTP only with `--insecure-http`. The scheme of a `--service-url` says what
//! is on the wire: `https://` is TLS, `http://` is plain and needs `--insecure-http`.
//!
//! tonic never does TLS here: [`porch_tls::TlsConnector`] does, so tonic is always given an
//! `http://` URL ([`tonic_url`]) and the connector verifies the server's certificate against
//! the URL's host.

use crate::session::Connector;
use porch_tls::{TlsConnector, TlsIdentity, describe_tls_error};
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;
use tonic::codegen::http::Uri;
use tonic::transport::Endpoint;

/// The whole of a dial: TCP connect plus the TLS handshake. A node that accepts TCP but never
/// finishes a handshake costs the agent this long, then it fails over.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Port of an `https://` URL without one.
const HTTPS_DEFAULT_PORT: u16 = 443;

/// Checks a `--service-url` against the transport and returns the URL tonic dials:
/// `https://host[:port]` becomes `http://host:port` (the connector does the TLS);
/// `http://` URLs pass only with `insecure_http`, `https://` ones only without it.
pub fn tonic_url(url: &str, insecure_http: bool) -> Result<String, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("--service-url {url:?}: not a URL ({e})"))?;
    let host = uri
        .host()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| format!("--service-url {url:?}: no host"))?;
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return Err(format!(
            "--service-url {url:?}: only scheme, host and port are used; remove the path"
        ));
    }
    match (uri.scheme_str(), insecure_http) {
        (Some("https"), false) => {
            let port = uri.port_u16().unwrap_or(HTTPS_DEFAULT_PORT);
            Ok(format!("http://{host}:{port}"))
        }
        (Some("http"), true) => Ok(url.trim_end_matches('/').to_string()),
        (Some("http"), false) => Err(format!(
            "--service-url {url:?}: http:// is plain, unencrypted HTTP and needs \
             --insecure-http; the agent talks TLS to https:// URLs"
        )),
        (Some("https"), true) => Err(format!(
            "--service-url {url:?}: --insecure-http talks plain HTTP, so an https:// URL would \
             not be encrypted; use http:// with --insecure-http, or drop --insecure-http"
        )),
        _ => Err(format!(
            "--service-url {url:?}: must start with https:// (or http:// with --insecure-http)"
        )),
    }
}

/// Dials with mutual TLS: presents `identity`'s certificate (as of each dial, so a renewed
/// certificate is used from the next session on) and verifies the server's against the CA
/// and the URL's host.
pub fn tls_connector(identity: Arc<TlsIdentity>) -> Connector {
    Arc::new(move |url: &str| {
        let connector = TlsConnector::new(identity.clone()).with_connect_timeout(CONNECT_TIMEOUT);
        Ok(endpoint(&tonic_url(url, false)?)?.connect_with_connector_lazy(connector))
    })
}

/// Dials plain HTTP (`--insecure-http`).
pub fn plain_connector() -> Connector {
    Arc::new(|url: &str| Ok(endpoint(&tonic_url(url, true)?)?.connect_lazy()))
}

fn endpoint(tonic_url: &str) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(tonic_url.to_string())
        .map_err(|e| format!("bad --service-url {tonic_url:?}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true))
}

/// A failed call in words: the TLS problem when there is one (whose certificate, and what
/// is wrong with it, including an alert h2 kept only as text), otherwise the status with its
/// causes ("connection refused" only when that is what happened).
pub fn describe_status(status: &tonic::Status) -> String {
    if let Some(tls) = describe_tls_error(status) {
        return format!("TLS: {tls}");
    }
    let mut text = status.message().to_string();
    let mut cause = StdError::source(status);
    while let Some(error) = cause {
        let words = error.to_string();
        if !text.contains(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_are_dialed_as_http_with_the_connector_doing_tls() {
        assert_eq!(
            tonic_url("https://orch1.example.com:8143", false).unwrap(),
            "http://orch1.example.com:8143"
        );
        assert_eq!(
            tonic_url("https://orch1.example.com/", false).unwrap(),
            "http://orch1.example.com:443"
        );
        assert_eq!(
            tonic_url("https://[::1]:8143", false).unwrap(),
            "http://[::1]:8143"
        );
    }

    #[test]
    fn http_urls_need_insecure_http_and_https_urls_refuse_it() {
        let plain = tonic_url("http://orch1:8143", false).unwrap_err();
        assert!(plain.contains("needs --insecure-http"), "{plain}");
        assert_eq!(
            tonic_url("http://orch1:8143", true).unwrap(),
            "http://orch1:8143"
        );
        let tls = tonic_url("https://orch1:8143", true).unwrap_err();
        assert!(tls.contains("would not be encrypted"), "{tls}");
    }

    #[test]
    fn an_alert_flattened_to_text_by_h2_is_still_described() {
        let status = tonic::Status::unavailable(
            "transport error: connection error: received fatal alert: CertificateRevoked",
        );
        assert_eq!(
            describe_status(&status),
            "TLS: the server refused our certificate: it is revoked"
        );
        let refused = tonic::Status::unavailable("tcp connect error: Connection refused");
        assert_eq!(
            describe_status(&refused),
            "tcp connect error: Connection refused"
        );
    }

    #[test]
    fn urls_without_host_or_with_a_path_are_refused() {
        assert!(
            tonic_url("orch1:8143", false)
                .unwrap_err()
                .contains("must start with https://")
        );
        assert!(
            tonic_url("https://orch1:8143/pcp2/", false)
                .unwrap_err()
                .contains("remove the path")
        );
    }
}
