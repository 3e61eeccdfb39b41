//! Which application protocols a client identity offers: porch's own peers speak h2; HTTP
//! clients of other services (PuppetDB's Jetty speaks only HTTP/1.1) must also offer http/1.1.

use std::sync::Arc;

use porch_tls::TlsIdentity;
use porch_tls::dev_ca::Validity;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};

use crate::common::{NODE, Pki};

/// A TLS server that, like Jetty without HTTP/2, selects only http/1.1. Returns its address;
/// each accepted handshake's outcome is sent back (the negotiated protocol or the error).
async fn http1_only_server(
    identity: Arc<TlsIdentity>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Result<Option<Vec<u8>>, String>>,
) {
    let mut config = (*identity.server_config()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let outcome = acceptor
                .accept(stream)
                .await
                .map(|tls| tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
                .map_err(|e| e.to_string());
            let _ = sender.send(outcome);
        }
    });
    (addr, receiver)
}

async fn handshake(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> Result<(), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(NODE.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn http_client_config_negotiates_http1_with_a_server_that_speaks_only_http1() {
    let pki = Pki::new();
    let (addr, mut outcomes) = http1_only_server(pki.node()).await;
    let client = TlsIdentity::load(pki.issue("porch1.porch.test", Validity::default())).unwrap();
    let offered = client.http_client_config().alpn_protocols.clone();
    assert_eq!(offered, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    handshake(addr, client.http_client_config()).await.unwrap();
    assert_eq!(
        outcomes.recv().await.unwrap(),
        Ok(Some(b"http/1.1".to_vec()))
    );
}

#[tokio::test]
async fn peer_client_config_offers_only_h2_and_an_http1_only_server_refuses_it() {
    let pki = Pki::new();
    let (addr, mut outcomes) = http1_only_server(pki.node()).await;
    let client = TlsIdentity::load(pki.issue("porch1.porch.test", Validity::default())).unwrap();
    assert_eq!(client.client_config().alpn_protocols, vec![b"h2".to_vec()]);
    assert!(handshake(addr, client.client_config()).await.is_err());
    let server_side = outcomes.recv().await.unwrap().unwrap_err();
    assert!(
        server_side.contains("peer doesn't support any known protocol"),
        "expected the server to refuse for want of a common protocol, it said: {server_side}"
    );
}

#[tokio::test]
async fn http_client_config_keeps_the_certificate_and_follows_reloads() {
    let pki = Pki::new();
    let paths = pki.issue("porch1.porch.test", Validity::default());
    let client = TlsIdentity::load(paths.clone()).unwrap();
    let before = client.http_client_config();
    assert!(before.client_auth_cert_resolver.has_certs());
    // Reissuing rewrites the files: the next load is a new configuration.
    pki.issue("porch1.porch.test", Validity::default());
    assert!(client.reload_now().unwrap());
    assert!(!Arc::ptr_eq(&before, &client.http_client_config()));
}
