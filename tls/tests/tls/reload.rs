//! A running server picks up a new CRL (and refuses a bad one) without a restart.

use std::time::Duration;

use porch_tls::dev_ca::Validity;
use porch_tls::{TlsIdentity, describe_tls_error};

use crate::common::{Logs, NODE, Pki, serve, whoami};

#[tokio::test]
async fn revoked_certificate_is_refused_at_the_next_handshake_after_a_reload() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    let node = pki.node();
    let addr = serve(node.clone()).await;
    let agent = TlsIdentity::load(pki.issue("agent1.porch.test", Validity::default())).unwrap();
    assert_eq!(
        whoami(addr, agent.client_config(), NODE).await.unwrap(),
        "agent1.porch.test"
    );

    let written = pki.ca.revoke("agent1.porch.test").unwrap();
    let node_crl = node.paths().crl.clone().unwrap();
    assert!(
        written.contains(&node_crl),
        "the node's crl.pem was not rewritten: {written:?}"
    );
    // The server still runs on the CRL it loaded.
    assert_eq!(
        whoami(addr, agent.client_config(), NODE).await.unwrap(),
        "agent1.porch.test"
    );

    assert!(
        node.reload_now().unwrap(),
        "the new CRL was not seen as a change"
    );
    let error = whoami(addr, agent.client_config(), NODE).await.unwrap_err();
    assert_eq!(
        describe_tls_error(&error).as_deref(),
        Some("the server refused our certificate: it is revoked"),
        "client error: {error}"
    );
    let line = logs.wait_for("refused a TLS connection").await;
    assert!(
        line.contains("client certificate 'agent1.porch.test' revoked (serial "),
        "server log: {line}"
    );
    assert!(
        !node.reload_now().unwrap(),
        "nothing changed, yet it reloaded"
    );
}

#[tokio::test]
async fn corrupt_crl_on_reload_keeps_the_previous_configuration_and_warns() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    let node = pki.node();
    let addr = serve(node.clone()).await;
    let agent = TlsIdentity::load(pki.issue("agent1.porch.test", Validity::default())).unwrap();
    let crl = node.paths().crl.clone().unwrap();
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nnot base64 at all!\n-----END X509 CRL-----\n",
    )
    .unwrap();

    let error = node.reload_now().unwrap_err().to_string();
    assert_eq!(
        error,
        format!("--crl {}: a PEM block holds invalid base64", crl.display())
    );
    assert_eq!(
        whoami(addr, agent.client_config(), NODE).await.unwrap(),
        "agent1.porch.test"
    );

    let reloader = node.spawn_reloader(Duration::from_millis(20));
    let line = logs.wait_for("TLS reload failed").await;
    assert!(
        line.contains("WARN") && line.contains(&crl.display().to_string()),
        "{line}"
    );
    assert_eq!(
        whoami(addr, agent.client_config(), NODE).await.unwrap(),
        "agent1.porch.test"
    );
    reloader.abort();
}

#[tokio::test]
async fn reloader_applies_a_revocation_on_its_own() {
    let pki = Pki::new();
    let node = pki.node();
    let addr = serve(node.clone()).await;
    let agent = TlsIdentity::load(pki.issue("agent1.porch.test", Validity::default())).unwrap();
    let reloader = node.spawn_reloader(Duration::from_millis(20));
    pki.ca.revoke("agent1.porch.test").unwrap();
    for _ in 0..250 {
        if whoami(addr, agent.client_config(), NODE).await.is_err() {
            reloader.abort();
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the revoked agent was still accepted 5 s after its revocation");
}
