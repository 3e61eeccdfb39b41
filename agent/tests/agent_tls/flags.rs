//! Flags are checked at start: every TLS file must load and the certificate must be for the
//! certname, and the error names the file; URLs must match the transport.

use crate::common::{Pki, agents, parse};
use porch_tls::dev_ca::Validity;

#[test]
fn a_missing_certificate_is_named_with_its_path() {
    let pki = Pki::new();
    pki.issue_agent("web2", Validity::default());
    let ssldir = pki.ssldir();
    let spool = pki.spool();
    let error = agents(&[
        "--certname=web1",
        "--service-url=https://orch1:8143",
        "--runner=simulate",
        &format!("--ssldir={}", ssldir.display()),
        &format!("--spool-dir={}", spool.display()),
    ])
    .err()
    .expect("no certificate for web1: refused");
    let cert = ssldir.join("certs/web1.pem");
    assert!(
        error.starts_with(&format!("--cert {}: cannot read", cert.display())),
        "expected the missing file named, got: {error}"
    );
    assert!(error.contains("puppet ssl bootstrap"), "{error}");
}

#[test]
fn a_garbage_key_is_named_with_its_path() {
    let pki = Pki::new();
    let paths = pki.issue_agent("web1", Validity::default());
    std::fs::write(&paths.key, "not a key\n").unwrap();
    let error = agents(&[
        "--certname=web1",
        "--service-url=https://orch1:8143",
        "--runner=simulate",
        &format!("--ssldir={}", pki.ssldir().display()),
        &format!("--spool-dir={}", pki.spool().display()),
    ])
    .err()
    .expect("garbage key: refused");
    assert!(
        error.starts_with(&format!("--key {}:", paths.key.display())),
        "expected the key named, got: {error}"
    );
}

#[test]
fn an_expired_certificate_is_refused_at_start() {
    let pki = Pki::new();
    let paths = pki.issue_agent("web1", Validity::expired());
    let error = agents(&[
        "--certname=web1",
        "--service-url=https://orch1:8143",
        "--runner=simulate",
        &format!("--ssldir={}", pki.ssldir().display()),
        &format!("--spool-dir={}", pki.spool().display()),
    ])
    .err()
    .expect("expired certificate: refused");
    assert!(
        error.starts_with(&format!("--cert {}:", paths.cert.display()))
            && error.contains("expired"),
        "expected the expired certificate named, got: {error}"
    );
}

#[test]
fn a_certificate_for_another_certname_is_refused_at_start() {
    let pki = Pki::new();
    let paths = pki.issue_agent("web2", Validity::default());
    let error = agents(&[
        "--certname=web1",
        "--service-url=https://orch1:8143",
        "--runner=simulate",
        &format!("--cert={}", paths.cert.display()),
        &format!("--key={}", paths.key.display()),
        &format!("--cacert={}", paths.cacert.display()),
        &format!("--spool-dir={}", pki.spool().display()),
    ])
    .err()
    .expect("certificate for web2: refused for web1");
    assert_eq!(
        error,
        format!(
            "--certname web1 but the certificate {} is for 'web2'",
            paths.cert.display()
        )
    );
}

#[test]
fn each_simulated_session_loads_its_own_certificate_from_the_ssldir() {
    let pki = Pki::new();
    for i in 1..=3 {
        pki.issue_agent(&format!("fan{i}"), Validity::default());
    }
    let flags = |sessions: &str| {
        vec![
            "--certname=fan".to_string(),
            "--service-url=https://orch1:8143".into(),
            "--runner=simulate".into(),
            format!("--sessions={sessions}"),
            format!("--ssldir={}", pki.ssldir().display()),
            format!("--spool-dir={}", pki.spool().display()),
        ]
    };
    let three = flags("3");
    let three: Vec<&str> = three.iter().map(String::as_str).collect();
    let loaded = agents(&three).unwrap();
    let certnames: Vec<String> = loaded.identities.iter().map(|i| i.certname()).collect();
    assert_eq!(certnames, ["fan1", "fan2", "fan3"]);
    let four = flags("4");
    let four: Vec<&str> = four.iter().map(String::as_str).collect();
    let error = agents(&four).err().expect("no certificate for fan4");
    assert!(
        error.contains(&pki.ssldir().join("certs/fan4.pem").display().to_string()),
        "expected fan4's certificate named, got: {error}"
    );
}

#[test]
fn one_cert_flag_cannot_serve_many_sessions() {
    let pki = Pki::new();
    let paths = pki.issue_agent("fan1", Validity::default());
    let error = agents(&[
        "--certname=fan",
        "--service-url=https://orch1:8143",
        "--runner=simulate",
        "--sessions=2",
        &format!("--cert={}", paths.cert.display()),
        &format!("--key={}", paths.key.display()),
        &format!("--spool-dir={}", pki.spool().display()),
    ])
    .err()
    .expect("--cert with --sessions 2: refused");
    assert!(error.contains("needs its own"), "{error}");
}

#[test]
fn plain_http_urls_need_insecure_http_which_takes_no_certificates() {
    let pki = Pki::new();
    pki.issue_agent("web1", Validity::default());
    let ssldir = format!("--ssldir={}", pki.ssldir().display());
    let spool = format!("--spool-dir={}", pki.spool().display());
    let error = agents(&[
        "--certname=web1",
        "--service-url=http://orch1:8143",
        "--runner=simulate",
        &ssldir,
        &spool,
    ])
    .err()
    .expect("http:// without --insecure-http: refused");
    assert!(error.contains("needs --insecure-http"), "{error}");

    let insecure = agents(&[
        "--certname=web1",
        "--service-url=http://orch1:8143",
        "--runner=simulate",
        "--insecure-http",
        &spool,
    ])
    .unwrap();
    assert_eq!(insecure.agents.len(), 1);
    assert!(insecure.identities.is_empty());

    let both = parse(&[
        "--certname=web1",
        "--service-url=http://orch1:8143",
        "--insecure-http",
        &ssldir,
        &spool,
    ])
    .expect_err("--insecure-http with --ssldir: refused");
    assert!(both.to_string().contains("cannot be used with"), "{both}");
}

#[test]
fn the_agent_exits_with_code_2_naming_the_file() {
    let pki = Pki::new();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_porch-agent"))
        .args([
            "--certname=web1",
            "--service-url=https://orch1:8143",
            "--runner=simulate",
        ])
        .arg(format!("--ssldir={}", pki.ssldir().display()))
        .arg(format!("--spool-dir={}", pki.spool().display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    let cert = pki.ssldir().join("certs/web1.pem");
    assert!(
        stderr.contains(&format!("error: --cert {}: cannot read", cert.display())),
        "stderr: {stderr}"
    );
}
