//! Sessions over mutual TLS: the server sees the agent's certname on the connection; TLS
//! failures and refusals are logged in words that say what to fix, and the agent backs off.

use crate::common::{Logs, NODE, Pki, agents, serve_plain, serve_tls};
use porch_tls::dev_ca::Validity;
use std::time::Duration;

fn flags(pki: &Pki, certname: &str, url: &str, extra: &[String]) -> Vec<String> {
    let mut flags = vec![
        format!("--certname={certname}"),
        format!("--service-url={url}"),
        "--runner=simulate".into(),
        format!("--spool-dir={}", pki.spool().display()),
    ];
    flags.extend(extra.iter().cloned());
    flags
}

fn start(flags: &[String]) -> tokio::task::JoinHandle<()> {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut loaded = agents(&flags).unwrap();
    tokio::spawn(loaded.agents.remove(0).run())
}

#[tokio::test]
async fn the_agent_connects_with_its_certificate_and_the_server_sees_its_certname() {
    let pki = Pki::new();
    pki.issue_agent("web1.porch.test", Validity::default());
    let mut server = serve_tls(pki.node(&["localhost"]), None).await;
    let url = format!("https://localhost:{}", server.addr.port());
    let ssldir = format!("--ssldir={}", pki.ssldir().display());
    let agent = start(&flags(&pki, "web1.porch.test", &url, &[ssldir]));
    let opened = server.next_opened().await;
    assert_eq!(
        opened.connection_certname.as_deref(),
        Some("web1.porch.test"),
        "{opened:?}"
    );
    assert_eq!(opened.hello_certname, "web1.porch.test");
    agent.abort();
}

#[tokio::test]
async fn insecure_http_connects_without_certificates() {
    let pki = Pki::new();
    let mut server = serve_plain().await;
    let url = format!("http://127.0.0.1:{}", server.addr.port());
    let agent = start(&flags(&pki, "web1", &url, &["--insecure-http".into()]));
    let opened = server.next_opened().await;
    assert_eq!(opened.connection_certname, None);
    assert_eq!(opened.hello_certname, "web1");
    agent.abort();
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_named_as_such() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    let ssldir = pki.other_ssldir("web1");
    let server = serve_tls(pki.node(&["localhost"]), None).await;
    let url = format!("https://localhost:{}", server.addr.port());
    let agent = start(&flags(
        &pki,
        "web1",
        &url,
        &[format!("--ssldir={}", ssldir.display())],
    ));
    let line = logs
        .wait_for("the server's certificate is not signed by the CA you trust (--cacert)")
        .await;
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        !logs.text().contains("onnection refused"),
        "{}",
        logs.text()
    );
    agent.abort();
}

#[tokio::test]
async fn an_agent_certificate_from_another_ca_is_refused_by_the_server_in_words() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    let ssldir = pki.other_ssldir("web1");
    let server = serve_tls(pki.node(&["localhost"]), None).await;
    let url = format!("https://localhost:{}", server.addr.port());
    // The agent trusts both CAs (so it accepts the server), but its certificate is from the
    // CA the server does not trust.
    let bundle = |name: &str, files: [std::path::PathBuf; 2]| {
        let path = pki.dir.path().join(name);
        let text: String = files
            .iter()
            .map(|file| std::fs::read_to_string(file).unwrap())
            .collect();
        std::fs::write(&path, text).unwrap();
        path
    };
    let cacert = bundle(
        "both-ca.pem",
        [pki.ca.cacert_path(), pki.other_ca.cacert_path()],
    );
    let crl = bundle("both-crl.pem", [pki.ca.crl_path(), pki.other_ca.crl_path()]);
    let agent = start(&flags(
        &pki,
        "web1",
        &url,
        &[
            format!("--ssldir={}", ssldir.display()),
            format!("--cacert={}", cacert.display()),
            format!("--crl={}", crl.display()),
        ],
    ));
    let line = logs
        .wait_for("the server refused our certificate: it is not signed by a CA the server trusts")
        .await;
    assert!(line.contains("ERROR"), "{line}");
    agent.abort();
}

#[tokio::test]
async fn a_revoked_agent_certificate_is_refused_by_the_server_in_words() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    pki.issue_agent("web1", Validity::default());
    let node = pki.node(&["localhost"]);
    let server = serve_tls(node.clone(), None).await;
    let url = format!("https://localhost:{}", server.addr.port());
    let flags = flags(
        &pki,
        "web1",
        &url,
        &[format!("--ssldir={}", pki.ssldir().display())],
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // Loaded before the revocation, as a long-running agent would be.
    let mut loaded = agents(&flags).unwrap();
    pki.ca.revoke("web1").unwrap();
    assert!(node.reload_now().unwrap(), "the node reloads the new CRL");
    let agent = tokio::spawn(loaded.agents.remove(0).run());
    let line = logs
        .wait_for("the server refused our certificate: it is revoked")
        .await;
    assert!(line.contains("ERROR"), "{line}");
    agent.abort();
    let restarted = agents(&flags)
        .err()
        .expect("a revoked certificate: refused");
    assert!(restarted.contains("revoked"), "{restarted}");
}

#[tokio::test]
async fn a_server_certificate_for_another_host_names_both() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    pki.issue_agent("web1", Validity::default());
    let server = serve_tls(pki.node(&[]), None).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());
    let ssldir = format!("--ssldir={}", pki.ssldir().display());
    let agent = start(&flags(&pki, "web1", &url, &[ssldir]));
    logs.wait_for(&format!(
        "the server's certificate is for {NODE}, not 127.0.0.1"
    ))
    .await;
    agent.abort();
}

#[tokio::test]
async fn a_refused_session_logs_the_servers_reason_and_backs_off() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    pki.issue_agent("web1", Validity::default());
    let reason = "this connection's certificate is for 'web1'; it cannot open a session for 'web2'";
    let mut server = serve_tls(pki.node(&["localhost"]), Some(reason)).await;
    let url = format!("https://localhost:{}", server.addr.port());
    let ssldir = format!("--ssldir={}", pki.ssldir().display());
    let agent = start(&flags(&pki, "web1", &url, &[ssldir]));
    server.next_opened().await;
    let line = logs.wait_for(reason).await;
    assert!(line.contains("refused the session"), "{line}");
    // Backoff doubling from 100 ms (jittered ½..1½×): at most 5 attempts in 2 s, where a
    // spinning agent would make hundreds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    agent.abort();
    let mut attempts = 1;
    while server.opened.try_recv().is_ok() {
        attempts += 1;
    }
    assert!(
        (2..=5).contains(&attempts),
        "expected 2..=5 sessions attempted in 2 s, got {attempts}"
    );
}

#[tokio::test]
async fn a_node_that_is_down_is_reported_as_refusing_connections_not_as_tls() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    pki.issue_agent("web1", Validity::default());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("https://127.0.0.1:{port}");
    let ssldir = format!("--ssldir={}", pki.ssldir().display());
    let agent = start(&flags(&pki, "web1", &url, &[ssldir]));
    let line = logs.wait_for("cannot open a session").await;
    agent.abort();
    assert!(
        line.contains("WARN") && line.contains("Connection refused") && !line.contains("TLS"),
        "{line}"
    );
}
