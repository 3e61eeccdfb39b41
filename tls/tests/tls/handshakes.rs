//! Who may connect to a `TlsListener`, and what both sides say when someone may not.

use std::time::Duration;

use porch_tls::dev_ca::Validity;
use porch_tls::{PeerInfo, PlainListener, TlsIdentity, client_config_trusting, describe_tls_error};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::common::{Logs, NODE, Pki, client_presenting, serve, whoami};

#[tokio::test]
async fn client_with_a_certificate_from_the_ca_is_known_by_its_certname() {
    let pki = Pki::new();
    let addr = serve(pki.node()).await;
    let agent = TlsIdentity::load(pki.issue("agent1.porch.test", Validity::default())).unwrap();
    assert_eq!(agent.certname(), "agent1.porch.test");
    let seen = whoami(addr, agent.client_config(), NODE).await.unwrap();
    assert_eq!(seen, "agent1.porch.test");
}

#[tokio::test]
async fn client_without_a_certificate_connects_anonymously() {
    let pki = Pki::new();
    let addr = serve(pki.node()).await;
    let config = client_config_trusting(&pki.ca.cacert_path(), Some(&pki.ca.crl_path())).unwrap();
    let seen = whoami(addr, config.into(), "127.0.0.1").await.unwrap();
    assert_eq!(seen, "(none)");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    let addr = serve(pki.node()).await;
    let stranger = pki.issue_by_other_ca("stranger.porch.test");
    let config = client_presenting(&pki.ca.cacert_path(), &stranger);
    let error = whoami(addr, config, NODE).await.unwrap_err();
    assert_eq!(
        describe_tls_error(&error).as_deref(),
        Some("the server refused our certificate: it is not signed by a CA the server trusts"),
        "client error: {error}"
    );
    let line = logs.wait_for("refused a TLS connection").await;
    assert!(
        line.contains("WARN")
            && line.contains("client certificate 'stranger.porch.test' signed by an unknown CA"),
        "server log: {line}"
    );
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    let addr = serve(pki.node()).await;
    let stale = pki.issue("stale.porch.test", Validity::expired());
    let config = client_presenting(&pki.ca.cacert_path(), &stale);
    let error = whoami(addr, config, NODE).await.unwrap_err();
    assert_eq!(
        describe_tls_error(&error).as_deref(),
        Some("the server refused our certificate: it has expired"),
        "client error: {error}"
    );
    let line = logs.wait_for("refused a TLS connection").await;
    assert!(
        line.contains("client certificate 'stale.porch.test' expired on "),
        "server log: {line}"
    );
}

#[tokio::test]
async fn server_from_another_ca_is_refused_by_the_client() {
    let pki = Pki::new();
    let addr = serve(pki.node()).await;
    let config = client_config_trusting(&pki.other_ca.cacert_path(), None).unwrap();
    let error = whoami(addr, config.into(), NODE).await.unwrap_err();
    assert_eq!(
        describe_tls_error(&error).as_deref(),
        Some("the server's certificate is not signed by the CA you trust (--cacert)")
    );
}

#[tokio::test]
async fn server_certificate_for_another_name_is_refused_by_the_client() {
    let pki = Pki::new();
    let addr = serve(pki.node()).await;
    let config = client_config_trusting(&pki.ca.cacert_path(), None).unwrap();
    let error = whoami(addr, config.into(), "node2.porch.test")
        .await
        .unwrap_err();
    assert_eq!(
        describe_tls_error(&error).as_deref(),
        Some(
            "the server's certificate is for node1.porch.test, 127.0.0.1, localhost, \
             not node2.porch.test"
        )
    );
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_refused_with_a_reason() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    let addr = serve(pki.node()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: porch\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;
    let line = logs.wait_for("refused a TLS connection").await;
    assert!(line.contains("did not speak TLS"), "server log: {line}");
}

#[tokio::test]
async fn a_silent_client_does_not_block_others() {
    let pki = Pki::new();
    let addr = serve(pki.node()).await;
    // Connects and never says hello: its handshake waits in its own task.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let agent = TlsIdentity::load(pki.issue("agent1.porch.test", Validity::default())).unwrap();
    let seen = tokio::time::timeout(
        Duration::from_secs(1),
        whoami(addr, agent.client_config(), NODE),
    )
    .await
    .expect("a second client waited for the silent one's handshake");
    assert_eq!(seen.unwrap(), "agent1.porch.test");
}

#[tokio::test]
async fn plain_listener_gives_connections_without_a_certname() {
    use axum::extract::ConnectInfo;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/whoami",
        axum::routing::get(|ConnectInfo(peer): ConnectInfo<PeerInfo>| async move {
            format!("{:?}", peer.certname)
        }),
    );
    tokio::spawn(async move {
        axum::serve(
            PlainListener::new(tcp),
            app.into_make_service_with_connect_info::<PeerInfo>(),
        )
        .await
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    tcp.write_all(b"GET /whoami HTTP/1.1\r\nhost: porch\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.ends_with("None"), "response: {response}");
}
