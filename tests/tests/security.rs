//! Secure by default, end to end: real `porch` nodes and agents over mutual TLS from a
//! throwaway Puppet-style CA, real clients with RBAC tokens.
//!
//! - Certificates decide who may connect: one from another CA, an expired one or a revoked
//!   one is refused at the handshake (the node's log says why), and a session whose
//!   certificate is revoked later is ended; a certificate made out for another certname
//!   cannot open, nor take over, that certname's session; an agent's valid certificate
//!   cannot speak raft or the internal cluster RPC.
//! - Tokens and roles decide what each user may do, in PE's error words; every refusal and
//!   every job lands in the audit log; the CLI turns each problem into its exit code.
//! - No password or token ever reaches a log.
//!
//! Each `#[test]` shares one cluster between the behaviours of its group (a cluster costs
//! seconds); each behaviour is a function named after it, called in turn.

use futures::StreamExt;
use porch_agent::proto::agent_sessions_client::AgentSessionsClient;
use porch_agent::proto::server_message::Kind;
use porch_agent::proto::{AgentMessage, Hello, ServerMessage, agent_message};
use porch_raft::proto::Payload;
use porch_raft::proto::cluster_client::ClusterClient;
use porch_raft::proto::raft_client::RaftClient;
use porch_tests::{Cluster, FAST, execution_logger, executions, porch_bin, wait_until};
use porch_tls::dev_ca::{DevCa, Validity};
use porch_tls::{TlsConnector, TlsIdentity, TlsPaths};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const LOOPBACK: &[&str] = &["127.0.0.1", "localhost"];

// ---- helpers: processes, logs, inventory ----

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Every running node's log, joined: an agent may have dialled any of them.
fn node_logs(cluster: &Cluster) -> String {
    cluster
        .running()
        .iter()
        .map(|id| cluster.log(*id))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits for a node log line containing `needle`; returns the line.
fn wait_for_node_log(cluster: &Cluster, needle: &str) -> String {
    wait_until(
        WAIT,
        &format!("a node log line containing {needle:?}"),
        || {
            node_logs(cluster)
                .lines()
                .find(|line| line.contains(needle))
                .map(str::to_string)
        },
    )
}

fn inventory_item(cluster: &Cluster, id: u64, name: &str) -> Value {
    let (status, item) = cluster.get(id, &format!("/inventory/{name}"));
    assert_eq!(status, 200, "GET /inventory/{name} on node {id}: {item}");
    item
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

fn concatenate(parts: &[PathBuf], into: &Path) {
    let text: String = parts
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    std::fs::write(into, text).unwrap_or_else(|e| panic!("{}: {e}", into.display()));
}

// ---- helpers: speaking gRPC to a node ourselves ----

/// tonic dials `http://`: the connector does the TLS.
fn tonic_url(cluster: &Cluster, id: u64) -> String {
    cluster.url(id).replacen("https://", "http://", 1)
}

async fn channel(url: &str, tls: TlsConnector) -> Result<tonic::transport::Channel, String> {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tls)
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Presents the certificate of `certname` in the cluster's ssldir, as its agent would.
fn tls_as(cluster: &Cluster, certname: &str) -> TlsConnector {
    let paths = TlsPaths::from_ssldir(&cluster.ssldir, certname);
    let identity =
        TlsIdentity::load(paths).unwrap_or_else(|e| panic!("the identity of {certname}: {e}"));
    TlsConnector::new(identity)
}

/// Presents no certificate at all (trusts the cluster's CA).
fn tls_without_certificate(cluster: &Cluster) -> TlsConnector {
    let mut config =
        porch_tls::client_config_trusting(&cluster.cacert(), None).expect("the cluster's CA");
    config.alpn_protocols = vec![b"h2".to_vec()];
    TlsConnector::with_config(Arc::new(config))
}

/// Presents `cert` and `key` without any of porch's own checks: what a client could still
/// send with a certificate the agent refuses to load (an expired one).
fn tls_presenting(cert: &Path, key: &Path, cacert: &Path) -> TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("{}: {e:?}", cert.display()));
    let key =
        PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| panic!("{}: {e:?}", key.display()));
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(cacert).expect("the CA file") {
        roots.add(ca.expect("a PEM CA")).expect("a usable CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("a client certificate");
    config.alpn_protocols = vec![b"h2".to_vec()];
    TlsConnector::with_config(Arc::new(config))
}

/// Opens an agent session on node `id` over `tls` with a Hello for `certname`: the node's
/// first message, or why there was none.
fn open_session(
    cluster: &Cluster,
    id: u64,
    tls: TlsConnector,
    certname: &str,
) -> Result<Kind, String> {
    let url = tonic_url(cluster, id);
    let hello = AgentMessage {
        kind: Some(agent_message::Kind::Hello(Hello {
            certname: certname.into(),
            agent_version: "security-test".into(),
            runner: "command".into(),
        })),
    };
    block_on(async move {
        let channel = channel(&url, tls).await?;
        // Hello, then silence: the stream stays open until the node answers.
        let outbound = futures::stream::iter([hello]).chain(futures::stream::pending());
        let first = async {
            let mut inbound = AgentSessionsClient::new(channel)
                .session(outbound)
                .await
                .map_err(|status| format!("{status:?}"))?
                .into_inner();
            match inbound.message().await {
                Ok(Some(ServerMessage { kind: Some(kind) })) => Ok(kind),
                Ok(other) => Err(format!("the session ended with {other:?}")),
                Err(status) => Err(format!("{status:?}")),
            }
        };
        tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .map_err(|_| "no answer within 10 s".to_string())?
    })
}

fn refusal_reason(answer: Result<Kind, String>) -> String {
    match answer {
        Ok(Kind::Refused(refused)) => refused.reason,
        other => panic!("expected the session to be refused, got {other:?}"),
    }
}

// ---- helpers: the HTTP API as different users ----

fn kind(body: &Value) -> &str {
    body["kind"].as_str().unwrap_or("(no kind)")
}

const UNAUTHENTICATED: (u16, &str) = (401, "puppetlabs.rbac/user-unauthenticated");
const INVALID_TOKEN: (u16, &str) = (401, "puppetlabs.rbac/invalid-token");
const TOKEN_EXPIRED: (u16, &str) = (401, "puppetlabs.rbac/token-expired");
const TOKEN_REVOKED: (u16, &str) = (401, "puppetlabs.rbac/token-revoked");
const PERMISSION_DENIED: (u16, &str) = (403, "puppetlabs.rbac/permission-denied");

/// Asserts that an API reply is this refusal (status and PE error kind).
#[track_caller]
fn assert_refused((status, body): &(u16, Value), expected: (u16, &str), context: &str) {
    assert_eq!((*status, kind(body)), expected, "{context}: {body}");
}

/// `GET /orchestrator/v1/jobs` on node `id` with this `X-Authentication` header value, sent
/// as raw bytes (so non-ASCII goes out as it is).
fn get_jobs_with_header(cluster: &Cluster, id: u64, value: &[u8]) -> Result<(u16, Value), String> {
    let value = reqwest::header::HeaderValue::from_bytes(value).map_err(|e| e.to_string())?;
    let response = cluster
        .http()
        .get(format!("{}/orchestrator/v1/jobs", cluster.url(id)))
        .header("X-Authentication", value)
        .send()
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    Ok((status, response.json().unwrap_or(Value::Null)))
}

/// Sends one raw HTTP/1.1 request over TLS (offering only http/1.1) to node `id`; the
/// response as text (empty if the node closed the connection without answering).
fn http1_exchange(cluster: &Cluster, id: u64, request: &[u8]) -> String {
    let mut config =
        porch_tls::client_config_trusting(&cluster.cacert(), None).expect("the cluster's CA");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a server name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("a TLS client");
    let port: u16 = cluster
        .url(id)
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the node's URL");
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the node");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut response = Vec::new();
    if tls.write_all(request).and_then(|()| tls.flush()).is_ok() {
        // Read until the node closes; what arrived before an error is kept.
        let _ = tls.read_to_end(&mut response);
    }
    String::from_utf8_lossy(&response).into_owned()
}

fn create_user(cluster: &Cluster, login: &str, password: &str, roles: &[&str]) -> String {
    let body = json!({"login": login, "password": password, "roles": roles});
    let (status, user) = cluster.request_as(
        Method::POST,
        1,
        "/rbac-api/v1/users",
        Some(&cluster.token),
        Some(&body),
    );
    assert_eq!(status, 201, "the admin adds {login}: {user}");
    user["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a new user without an id: {user}"))
        .to_string()
}

fn login(cluster: &Cluster, id: u64, user: &str, password: &str, lifetime: &str) -> String {
    cluster
        .login(id, user, password, lifetime)
        .unwrap_or_else(|(status, body)| panic!("{user} logs in on node {id}: {status} {body}"))
}

fn deploy_body(environment: &str, nodes: &[&str]) -> Value {
    json!({"environment": environment, "scope": {"nodes": nodes}})
}

/// The secret half of a token `<id>.<secret>` (the id is public: audit entries name it).
fn token_secret(token: &str) -> &str {
    token.split_once('.').map_or(token, |(_, secret)| secret)
}

fn assert_no_secret_in_any_log(cluster: &Cluster, secrets: &[String]) {
    let logs = cluster.all_logs();
    assert!(
        logs.len() >= 3,
        "expected the nodes' logs at least, found {}",
        logs.len()
    );
    for (name, text) in &logs {
        for secret in secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{name} contains a secret used in this test ({}...)",
                &secret[..secret.len().min(6)]
            );
        }
    }
}

// ---- certificates ----

#[test]
fn certificates_decide_who_may_open_a_session_and_who_may_speak_raft() {
    let mut cluster = Cluster::start(3, FAST);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 0.1, &[]);
    cluster.start_agent("web1", &script);
    cluster.issue_cert("web2");
    let leader = cluster.wait_for_leader(WAIT);
    cluster.wait_agents_connected(leader, &["web1"]);

    agent_with_a_certificate_from_another_ca_never_connects(&mut cluster, &script);
    agent_with_an_expired_certificate_stops_naming_the_file_and_the_node_refuses_it(
        &cluster, &script,
    );
    revoked_agent_loses_its_session_and_is_refused_at_the_handshake(&mut cluster, &script);
    certificate_for_web2_cannot_open_or_take_web1s_session(&cluster, &script, &log);
    agent_certificate_cannot_speak_raft_or_cluster_rpc(&cluster);

    let secrets = vec![
        cluster.admin_password(),
        cluster.token.clone(),
        token_secret(&cluster.token).to_string(),
    ];
    assert_no_secret_in_any_log(&cluster, &secrets);
}

/// Starts agent `rogue` with a certificate from a second CA. The agent trusts both CAs, so it
/// accepts the nodes' certificates and loads its own: only the nodes' check can stop it.
fn start_agent_from_another_ca(cluster: &mut Cluster, script: &Path) {
    let dir = cluster.dir.path().to_path_buf();
    let other = DevCa::create(&dir.join("other-ca")).expect("a second CA");
    let rogue = other
        .issue(
            &dir.join("other-ssl"),
            "rogue",
            LOOPBACK,
            Validity::default(),
        )
        .expect("a certificate from the other CA");
    let (cas, crls) = (dir.join("both-cas.pem"), dir.join("both-crls.pem"));
    concatenate(&[cluster.cacert(), other.cacert_path()], &cas);
    concatenate(&[cluster.ssldir.join("crl.pem"), other.crl_path()], &crls);
    let flags = [
        "--cert".to_string(),
        path_text(&rogue.cert),
        "--key".into(),
        path_text(&rogue.key),
        "--cacert".into(),
        path_text(&cas),
        "--crl".into(),
        path_text(&crls),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    cluster.start_agent_with("rogue", script, &flags);
}

fn agent_with_a_certificate_from_another_ca_never_connects(cluster: &mut Cluster, script: &Path) {
    start_agent_from_another_ca(cluster, script);
    let line = wait_for_node_log(
        cluster,
        "client certificate 'rogue' signed by an unknown CA",
    );
    assert!(
        line.contains("refused a TLS connection from 127.0.0.1:"),
        "{line}"
    );
    let leader = cluster.wait_for_leader(WAIT);
    let item = inventory_item(cluster, leader, "rogue");
    assert_eq!(
        item["connected"], false,
        "an agent of another CA connected: {item}"
    );
    cluster.kill_agent("rogue");
}

fn agent_with_an_expired_certificate_stops_naming_the_file_and_the_node_refuses_it(
    cluster: &Cluster,
    script: &Path,
) {
    let ssldir = cluster.dir.path().join("expired-ssl");
    let stale = cluster
        .ca
        .issue(&ssldir, "stale", LOOPBACK, Validity::expired())
        .expect("an expired certificate");
    let flags = [
        "--cert",
        &path_text(&stale.cert),
        "--key",
        &path_text(&stale.key),
    ]
    .map(String::from);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (code, output) = cluster.run_agent_to_exit("stale", script, &flags, WAIT);
    assert_eq!(
        code,
        Some(2),
        "the agent with an expired certificate: {output}"
    );
    assert!(
        output.contains(&path_text(&stale.cert))
            && output.contains("certificate 'stale' expired on"),
        "the agent's error names neither the file nor the expiry: {output}"
    );

    // What the agent will not present, a client still could: the node refuses it.
    let answer = open_session(
        cluster,
        1,
        tls_presenting(&stale.cert, &stale.key, &cluster.cacert()),
        "stale",
    );
    assert!(
        answer.is_err(),
        "a session over an expired certificate: {answer:?}"
    );
    let line = wait_for_node_log(cluster, "client certificate 'stale' expired on");
    assert!(
        line.contains("refused a TLS connection from 127.0.0.1:"),
        "{line}"
    );
}

/// Starts an agent for `certname` that keeps the CRL of now, as a Puppet agent does until it
/// fetches a new one: after a revocation, only the nodes' check can stop it.
fn start_agent_with_the_crl_of_before(cluster: &mut Cluster, script: &Path, certname: &str) {
    cluster.issue_cert(certname);
    let crl_before = cluster
        .dir
        .path()
        .join(format!("crl-before-{certname}.pem"));
    std::fs::copy(cluster.ssldir.join("crl.pem"), &crl_before).expect("copy the CRL");
    cluster.start_agent_with(certname, script, &["--crl", &path_text(&crl_before)]);
}

/// Revokes `certname` (the CA rewrites `crl.pem` in the ssldir) and waits until every node
/// has reloaded it.
fn revoke_and_wait_for_every_node_to_reload(cluster: &Cluster, certname: &str) {
    let reloads = |cluster: &Cluster| -> Vec<usize> {
        cluster
            .running()
            .iter()
            .map(|id| cluster.log(*id).matches("reloaded TLS material").count())
            .collect()
    };
    let before = reloads(cluster);
    cluster.ca.revoke(certname).expect("revoke");
    wait_until(WAIT, "every node to reload the new CRL", || {
        reloads(cluster)
            .iter()
            .zip(&before)
            .all(|(now, then)| now > then)
            .then_some(())
    });
}

fn revoked_agent_loses_its_session_and_is_refused_at_the_handshake(
    cluster: &mut Cluster,
    script: &Path,
) {
    start_agent_with_the_crl_of_before(cluster, script, "gone1");
    let leader = cluster.wait_for_leader(WAIT);
    cluster.wait_agents_connected(leader, &["gone1"]);
    revoke_and_wait_for_every_node_to_reload(cluster, "gone1");

    // The open session ends at its next heartbeat...
    let line = wait_for_node_log(cluster, "agent gone1's certificate (serial ");
    assert!(line.contains("is revoked; closing its session"), "{line}");
    wait_until(WAIT, "gone1 to show as disconnected", || {
        (inventory_item(cluster, leader, "gone1")["connected"] == false).then_some(())
    });
    // ...and the agent, dialling again, is refused at the handshake.
    let line = wait_for_node_log(cluster, "client certificate 'gone1' revoked (serial ");
    assert!(
        line.contains("refused a TLS connection from 127.0.0.1:"),
        "{line}"
    );
    let item = inventory_item(cluster, leader, "gone1");
    assert_eq!(
        item["connected"], false,
        "a revoked agent connected: {item}"
    );
    cluster.kill_agent("gone1");

    // With the new CRL (the ssldir's), the agent sees its own revocation at start.
    let (code, output) = cluster.run_agent_to_exit("gone1", script, &[], WAIT);
    assert_eq!(
        code,
        Some(2),
        "the agent with a revoked certificate: {output}"
    );
    assert!(output.contains("revoked"), "{output}");
}

fn certificate_for_web2_cannot_open_or_take_web1s_session(
    cluster: &Cluster,
    script: &Path,
    log: &Path,
) {
    let leader = cluster.wait_for_leader(WAIT);
    let web1_before = inventory_item(cluster, leader, "web1");
    assert_eq!(web1_before["connected"], true, "{web1_before}");

    // The agent itself refuses to start with another host's certificate...
    let web2 = TlsPaths::from_ssldir(&cluster.ssldir, "web2");
    let flags = [
        "--cert",
        &path_text(&web2.cert),
        "--key",
        &path_text(&web2.key),
    ]
    .map(String::from);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (code, output) = cluster.run_agent_to_exit("web1", script, &flags, WAIT);
    assert_eq!(
        code,
        Some(2),
        "an agent for web1 with web2's certificate: {output}"
    );
    assert!(output.contains("is for 'web2'"), "{output}");

    // ...and a client that says Hello for web1 over web2's certificate, or over none, is
    // refused by every node.
    for id in cluster.running() {
        let reason = refusal_reason(open_session(cluster, id, tls_as(cluster, "web2"), "web1"));
        assert_eq!(
            reason,
            "this connection's certificate is for 'web2'; it cannot open a session for 'web1'",
            "node {id}"
        );
        let reason = refusal_reason(open_session(
            cluster,
            id,
            tls_without_certificate(cluster),
            "web1",
        ));
        assert!(
            reason.starts_with("no client certificate"),
            "node {id}: {reason}"
        );
    }
    let line = wait_for_node_log(cluster, "this connection's certificate is for 'web2'");
    assert!(
        line.contains("refused an agent session from 127.0.0.1:"),
        "{line}"
    );

    // web1's own session was not taken: same node, same since, and it still runs its job.
    let web1_after = inventory_item(cluster, leader, "web1");
    assert_eq!(web1_after, web1_before, "web1's session changed");
    let job = cluster.submit(leader, &["web1"], None);
    let done = cluster.wait_job_done(leader, job, WAIT);
    assert_eq!(done["state"], "finished", "{done}");
    assert!(
        executions(log)
            .iter()
            .any(|(kind, node, ran, _, _)| kind == "end" && node == "web1" && *ran == job),
        "web1 did not run job {job}: {:?}",
        executions(log)
    );
}

fn agent_certificate_cannot_speak_raft_or_cluster_rpc(cluster: &Cluster) {
    use openraft::type_config::alias::CommittedLeaderIdOf;
    use porch_raft::types::{LogId, TypeConfig, Vote};
    let terms = || -> Vec<u64> {
        cluster
            .running()
            .iter()
            .map(|id| {
                let status = cluster
                    .status(*id)
                    .unwrap_or_else(|| panic!("node {id} answers"));
                status["term"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("node {id}: a term in {status}"))
            })
            .collect()
    };
    let forged_term = terms().into_iter().max().unwrap_or(0) + 1000;
    for id in cluster.running() {
        let claimed = id % 3 + 1; // another member
        // A candidate far ahead, claiming a leadership transfer so that no leader lease holds
        // a member back: a member would have to vote for it.
        let vote = openraft::raft::VoteRequest::<TypeConfig> {
            vote: Vote::new(forged_term, claimed),
            last_log_id: Some(LogId::new(
                CommittedLeaderIdOf::<TypeConfig>::new(forged_term),
                1 << 40,
            )),
            leadership_transfer: true,
        };
        // A leader of that term: a member would adopt it.
        let append = openraft::raft::AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(forged_term, claimed),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        let payload = |value: Vec<u8>| Payload { json: value };
        let version = porch_raft::envelope::FORMAT_VERSION_MIN;
        let vote = porch_raft::wire::encode(version, &vote).expect("encode a vote");
        let append = porch_raft::wire::encode(version, &append).expect("encode an append");
        let url = tonic_url(cluster, id);
        let (web1, anonymous) = (tls_as(cluster, "web1"), tls_without_certificate(cluster));
        let refusals: Vec<(&str, Result<Payload, tonic::Status>)> = block_on(async {
            let as_web1 = channel(&url, web1).await.expect("a TLS channel as web1");
            let without = channel(&url, anonymous)
                .await
                .expect("a TLS channel without a certificate");
            vec![
                (
                    "Raft/Vote",
                    RaftClient::new(as_web1.clone())
                        .vote(payload(vote.clone()))
                        .await
                        .map(|r| r.into_inner()),
                ),
                (
                    "Raft/AppendEntries",
                    RaftClient::new(as_web1.clone())
                        .append_entries(payload(append))
                        .await
                        .map(|r| r.into_inner()),
                ),
                (
                    "Cluster/Write",
                    ClusterClient::new(as_web1)
                        .write(payload(b"{}".to_vec()))
                        .await
                        .map(|r| r.into_inner()),
                ),
                (
                    "Raft/Vote without a certificate",
                    RaftClient::new(without)
                        .vote(payload(vote))
                        .await
                        .map(|r| r.into_inner()),
                ),
            ]
        });
        for (what, reply) in refusals {
            let status = match reply {
                Err(status) => status,
                Ok(payload) => panic!("node {id} answered {what}: {} bytes", payload.json.len()),
            };
            assert_eq!(
                status.code(),
                tonic::Code::PermissionDenied,
                "node {id}, {what}: {status:?}"
            );
            let expected = if what.ends_with("without a certificate") {
                "none was presented"
            } else {
                "'web1' is not a member of this cluster"
            };
            assert!(
                status.message().contains(expected),
                "node {id}, {what}: {status:?}"
            );
        }
    }
    let line = wait_for_node_log(
        cluster,
        "refused /porch.internal.v1.Raft/Vote from 127.0.0.1:",
    );
    assert!(line.contains("'web1' is not a member"), "{line}");
    let after = terms();
    assert!(
        after.iter().all(|term| *term < forged_term),
        "a node took the forged term {forged_term}: {after:?}"
    );
    cluster.wait_for_leader(WAIT);
}

/// A learner is a member (its peers' certificates may speak raft to it) but not a voter: asked
/// for a vote, even by a member's certificate with a far newer term, it refuses naming why,
/// and its term stays (a vote granted would have moved it, and made it refuse its leader).
#[test]
fn a_learner_asked_to_vote_refuses_and_keeps_its_term() {
    use openraft::type_config::alias::CommittedLeaderIdOf;
    use porch_raft::types::{LogId, TypeConfig, Vote};
    let mut cluster = Cluster::start(3, FAST);
    let leader = cluster.wait_for_leader(WAIT);
    let addr = cluster.start_extra_node(4, FAST);
    let add = json!({"id": 4, "addr": addr, "learner": true}).to_string();
    let (status, reply) = cluster.post(leader, "/cluster/members", &add, &[]);
    assert_eq!(status, 200, "{reply}");
    let term_of = |id: u64| {
        cluster
            .status(id)
            .and_then(|s| s["term"].as_u64())
            .unwrap_or_else(|| panic!("node {id} reports a term"))
    };
    let learner_term = wait_until(WAIT, "the learner to hear from the leader", || {
        let term = term_of(4);
        (term > 0 && term == term_of(leader)).then_some(term)
    });
    let forged_term = learner_term + 1000;
    let candidate = (1..=3).find(|id| *id != leader).expect("a follower");
    let request = openraft::raft::VoteRequest::<TypeConfig> {
        vote: Vote::new(forged_term, candidate),
        last_log_id: Some(LogId::new(
            CommittedLeaderIdOf::<TypeConfig>::new(forged_term),
            1 << 40,
        )),
        leadership_transfer: true,
    };
    let version = porch_raft::envelope::FORMAT_VERSION_MIN;
    let vote = porch_raft::wire::encode(version, &request).expect("encode a vote");
    let url = tonic_url(&cluster, 4);
    let as_member = tls_as(&cluster, &cluster.certname(candidate));
    let replies: Vec<(&str, Payload)> = block_on(async {
        let channel = channel(&url, as_member)
            .await
            .expect("a TLS channel as a member");
        let mut client = RaftClient::new(channel);
        let vote_reply = client.vote(Payload { json: vote.clone() }).await;
        let pre_vote_reply = client.pre_vote(Payload { json: vote }).await;
        vec![
            (
                "vote",
                vote_reply.expect("the learner answers").into_inner(),
            ),
            (
                "pre-vote",
                pre_vote_reply.expect("the learner answers").into_inner(),
            ),
        ]
    });
    for (what, payload) in replies {
        // The reply is an `RpcReply`: `Err(reason)` when raft did not take the request.
        type VoteReply = Result<openraft::raft::VoteResponse<TypeConfig>, String>;
        let (reply, _): (VoteReply, u16) =
            porch_raft::wire::decode(&payload.json).unwrap_or_else(|e| panic!("{what}: {e}"));
        let refusal = match reply {
            Err(refusal) => refusal,
            Ok(answer) => panic!("the learner answered the {what} request: {answer:?}"),
        };
        assert!(
            refusal.contains("node 4 is a learner") && refusal.contains("does not vote"),
            "{what}: {refusal}"
        );
    }
    assert_eq!(term_of(4), learner_term, "the learner's term moved");
    let job = cluster.submit(4, &["after-the-vote"], None);
    assert_eq!(cluster.job(4, job)["name"], job.to_string());
}

/// The agent's side of a refusal: every failed attempt says what was wrong with its
/// certificate, never just that the connection closed.
#[test]
#[ignore = "flaky (about 1 run in 6): with TLS 1.3 the node refuses a client certificate after \
the agent's side of the handshake is done; the node now closes gently (FIN, then drains) so the \
alert reaches the agent, but h2 sometimes still reports 'connection closed' without it"]
fn agent_logs_why_the_node_refused_its_certificate() {
    let mut cluster = Cluster::start(1, FAST);
    let log = cluster.dir.path().join("exec.log");
    let script = execution_logger(cluster.dir.path(), &log, 0.1, &[]);
    start_agent_from_another_ca(&mut cluster, &script);
    start_agent_with_the_crl_of_before(&mut cluster, &script, "gone1");
    cluster.kill_agent("gone1");
    revoke_and_wait_for_every_node_to_reload(&cluster, "gone1");
    cluster.restart_agent("gone1");
    for (agent, reason) in [
        (
            "rogue",
            "TLS: the server refused our certificate: it is not signed by a CA",
        ),
        (
            "gone1",
            "TLS: the server refused our certificate: it is revoked",
        ),
    ] {
        let attempts = wait_until(WAIT, &format!("{agent} to fail 3 times"), || {
            let text = cluster.agent_log(agent);
            let failed: Vec<String> = text
                .lines()
                .filter(|l| l.contains("cannot open a session"))
                .map(str::to_string)
                .collect();
            (failed.len() >= 3).then_some(failed)
        });
        for attempt in attempts {
            assert!(
                attempt.contains(reason),
                "{agent} did not say why: {attempt}"
            );
        }
    }
}

// ---- tokens, roles, audit, CLI ----

const VERA_PASSWORD: &str = "vera-viewer-Pw-c0ffee71";
const STELLA_PASSWORD: &str = "stella-staging-Pw-91f3c2";
const OLGA_PASSWORD: &str = "olga-operator-Pw-5d81aa";
const ALICE_PASSWORD: &str = "alice-cli-Pw-77e2b9d4";

struct Users {
    stella_id: String,
    vera: String,
    stella: String,
    olga: String,
    /// Every password and token used, for the check that none reaches a log.
    secrets: Vec<String>,
}

impl Users {
    /// A token, and its secret half on its own, must never reach a log.
    fn remember_token(&mut self, token: &str) {
        self.secrets.push(token.to_string());
        self.secrets.push(token_secret(token).to_string());
    }
}

#[test]
fn tokens_and_roles_decide_what_each_user_may_do_and_the_audit_log_says_so() {
    let mut cluster = Cluster::start(3, FAST);
    let leader = cluster.wait_for_leader(WAIT);
    let role = json!({"name": "staging-operator",
        "permissions": [{"permission": "run", "environments": ["staging"]}]});
    let (status, reply) = cluster.request_as(
        Method::POST,
        leader,
        "/rbac-api/v1/roles",
        Some(&cluster.token),
        Some(&role),
    );
    assert_eq!(status, 201, "the admin adds a role: {reply}");
    let stella_id = create_user(&cluster, "stella", STELLA_PASSWORD, &["staging-operator"]);
    create_user(&cluster, "vera", VERA_PASSWORD, &["viewer"]);
    create_user(&cluster, "olga", OLGA_PASSWORD, &["operator"]);
    create_user(&cluster, "alice", ALICE_PASSWORD, &["operator"]);
    // Logins through different nodes: a token is good on every node.
    let mut users = Users {
        stella_id,
        vera: login(&cluster, 2, "vera", VERA_PASSWORD, "1h"),
        stella: login(&cluster, 3, "stella", STELLA_PASSWORD, "1h"),
        olga: login(&cluster, 1, "olga", OLGA_PASSWORD, "1h"),
        secrets: vec![
            cluster.admin_password(),
            cluster.token.clone(),
            VERA_PASSWORD.into(),
            STELLA_PASSWORD.into(),
            OLGA_PASSWORD.into(),
            ALICE_PASSWORD.into(),
        ],
    };
    for token in [users.vera.clone(), users.stella.clone(), users.olga.clone()] {
        users.remember_token(&token);
    }

    every_bad_token_is_refused_in_pes_words_and_the_node_keeps_serving(&cluster, &mut users);
    let job = roles_limit_what_each_user_may_do(&mut cluster, &users);
    audit_lists_the_refusals_and_the_job_run(&cluster, &users, job);
    cli_exit_codes_name_the_problem(&cluster, &mut users);
    assert_no_secret_in_any_log(&cluster, &users.secrets);
}

fn every_bad_token_is_refused_in_pes_words_and_the_node_keeps_serving(
    cluster: &Cluster,
    users: &mut Users,
) {
    assert_refused(
        &cluster.get_as(1, "/jobs", None),
        UNAUTHENTICATED,
        "no token",
    );

    let well_formed_but_unknown = format!("{}.{}", "ab".repeat(12), "cd".repeat(32));
    for token in ["garbage", "a.b.c", "zz.yy", &well_formed_but_unknown] {
        let reply = cluster.get_as(1, "/jobs", Some(token));
        assert_refused(&reply, INVALID_TOKEN, &format!("token {token:?}"));
    }
    let reply = get_jobs_with_header(cluster, 2, "tökén.ünïcødé".as_bytes())
        .expect("a non-ASCII header is sent");
    assert_refused(&reply, INVALID_TOKEN, "a non-ASCII token");

    // 100 KB of token, over HTTP/1.1 (the node reads it) and over HTTP/2 (its header-list
    // limit may refuse it first): refused either way, and the node keeps serving.
    let huge = "a".repeat(100 * 1024);
    let request = format!(
        "GET /orchestrator/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Authentication: {huge}\r\nConnection: close\r\n\r\n"
    );
    let response = http1_exchange(cluster, 1, request.as_bytes());
    let head = response.lines().next().unwrap_or("(no response)");
    assert!(
        (head.starts_with("HTTP/1.1 401") && response.contains("puppetlabs.rbac/invalid-token"))
            || head.starts_with("HTTP/1.1 431"),
        "a 100 KB token over HTTP/1.1: {head}"
    );
    match get_jobs_with_header(cluster, 1, huge.as_bytes()) {
        Ok((status, body)) => assert!(
            matches!(status, 401 | 431),
            "a 100 KB token over HTTP/2: {status} {body}"
        ),
        // The node's h2 header-list limit: GOAWAY, sent by the node ("Remote").
        Err(refused) => assert!(
            refused.contains("GoAway") && refused.contains("Remote"),
            "a 100 KB token over HTTP/2 failed other than by the node's refusal: {refused}"
        ),
    }
    for id in cluster.running() {
        let (status, body) = cluster.get(id, "/jobs");
        assert_eq!(status, 200, "node {id} after the bad tokens: {body}");
    }

    for (user, password) in [("admin", "wrong-password-1"), ("nobody", "any-password-2")] {
        let refused = cluster.login(2, user, password, "1h");
        match refused {
            Err((401, body)) => assert_eq!(
                kind(&body),
                "puppetlabs.rbac/authentication-failed",
                "{body}"
            ),
            other => panic!("a login as {user} with a wrong password: {other:?}"),
        }
    }

    let short = login(cluster, 2, "vera", VERA_PASSWORD, "1s");
    users.remember_token(&short);
    std::thread::sleep(Duration::from_millis(2100));
    assert_refused(
        &cluster.get_as(3, "/jobs", Some(&short)),
        TOKEN_EXPIRED,
        "a 1 s token after 2 s",
    );

    // Revoked through a follower; refused at once on every node, the follower first.
    let leader = cluster.wait_for_leader(WAIT);
    let follower = cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let doomed = login(cluster, follower, "olga", OLGA_PASSWORD, "1h");
    users.remember_token(&doomed);
    let (status, _) = cluster.get_as(follower, "/jobs", Some(&doomed));
    assert_eq!(status, 200, "a fresh token");
    let (status, body) = cluster.request_as(
        Method::DELETE,
        follower,
        &format!("/rbac-api/v2/tokens/{doomed}"),
        None,
        None,
    );
    assert_eq!(status, 204, "revoke: {body}");
    let mut order = vec![follower];
    order.extend(cluster.running().into_iter().filter(|id| *id != follower));
    for id in order {
        let reply = cluster.get_as(id, "/jobs", Some(&doomed));
        assert_refused(
            &reply,
            TOKEN_REVOKED,
            &format!("a revoked token on node {id}"),
        );
    }
}

fn roles_limit_what_each_user_may_do(cluster: &mut Cluster, users: &Users) -> u64 {
    let leader = cluster.wait_for_leader(WAIT);
    let post = |token: &str, path: &str, body: &Value| {
        cluster.request_as(Method::POST, leader, path, Some(token), Some(body))
    };
    let deploy = "/orchestrator/v1/command/deploy";

    // An operator restricted to staging.
    let reply = post(&users.stella, deploy, &deploy_body("production", &["web1"]));
    assert_refused(&reply, PERMISSION_DENIED, "stella deploys to production");
    let body = &reply.1;
    assert!(
        body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("'stella'") && m.contains("run")),
        "the refusal names the user and the permission: {body}"
    );
    // X-Porch-User no longer says who is asking: the token does.
    let (status, reply) = cluster.post_raw(
        leader,
        deploy,
        &deploy_body("staging", &["web1"]).to_string(),
        &[
            ("X-Authentication", users.stella.as_str()),
            ("X-Porch-User", "admin"),
            ("Content-Type", "application/json"),
        ],
    );
    assert_eq!(status, 202, "stella deploys to staging: {reply}");
    let job: u64 = reply["job"]["name"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a job id in {reply}"));
    let shown = cluster.job(leader, job);
    assert_eq!(
        shown["owner"],
        json!({"id": users.stella_id, "login": "stella"}),
        "{shown}"
    );

    // A viewer sees but does not touch.
    let (status, jobs) = cluster.get_as(leader, "/jobs", Some(&users.vera));
    assert_eq!(status, 200, "{jobs}");
    assert!(
        jobs["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|j| j["name"] == json!(job.to_string()))),
        "the viewer sees job {job}: {jobs}"
    );
    for (path, body) in [
        (deploy, deploy_body("staging", &["web1"])),
        (
            "/orchestrator/v1/command/stop",
            json!({"job": job.to_string()}),
        ),
    ] {
        assert_refused(
            &post(&users.vera, path, &body),
            PERMISSION_DENIED,
            &format!("vera: {path}"),
        );
    }

    // An operator runs jobs but administers nothing.
    let user = json!({"login": "mallory", "password": "mallory-Pw-1234", "roles": ["admin"]});
    let reply = post(&users.olga, "/rbac-api/v1/users", &user);
    assert_refused(&reply, PERMISSION_DENIED, "olga adds a user");
    let member = json!({"id": 9, "addr": "node9@127.0.0.1:1"});
    let reply = post(&users.olga, "/orchestrator/v1/cluster/members", &member);
    assert_refused(&reply, PERMISSION_DENIED, "olga adds a member");
    assert!(
        cluster
            .login(1, "mallory", "mallory-Pw-1234", "1h")
            .is_err(),
        "mallory was added"
    );

    // The admin can.
    let addr = cluster.start_extra_node(4, FAST);
    let member = json!({"id": 4, "addr": addr});
    let (status, reply) = cluster.request_as(
        Method::POST,
        leader,
        "/orchestrator/v1/cluster/members",
        Some(&cluster.token),
        Some(&member),
    );
    assert_eq!(status, 200, "the admin adds node 4: {reply}");
    job
}

/// The newest audit entry `matches` accepts, waiting for refusals still in their batch; on
/// failure, says what the log held.
fn audit_entry(cluster: &Cluster, what: &str, matches: &dyn Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = cluster.request_as(
            Method::GET,
            1,
            "/orchestrator/v1/audit?limit=1000",
            Some(&cluster.token),
            None,
        );
        assert_eq!(status, 200, "GET /audit as the admin: {page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if let Some(entry) = items.iter().find(|e| matches(e)) {
            return entry.clone();
        }
        if std::time::Instant::now() >= deadline {
            let lines: Vec<String> = items
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {} {} {}",
                        e["action"],
                        e["user"]["login"],
                        e["target"],
                        e["outcome"],
                        e["reason"]["kind"]
                    )
                })
                .collect();
            panic!(
                "no audit entry for {what}; the log holds:\n{}",
                lines.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn refused(entry: &Value, action: &str, login: Option<&str>, reason: &str, target: &str) -> bool {
    entry["action"] == action
        && entry["outcome"] == "refused"
        && entry["reason"]["kind"] == reason
        && entry["user"]["login"].as_str() == login
        && entry["target"] == target
}

fn audit_lists_the_refusals_and_the_job_run(cluster: &Cluster, users: &Users, job: u64) {
    let reply = cluster.get_as(1, "/audit", Some(&users.vera));
    assert_refused(&reply, PERMISSION_DENIED, "vera reads the audit log");

    let jobs = "GET /orchestrator/v1/jobs";
    // Who was refused what, and why, as the audit log must show it.
    let refusals = [
        (None, UNAUTHENTICATED, jobs),
        (None, INVALID_TOKEN, jobs),
        (Some("vera"), TOKEN_EXPIRED, jobs),
        (Some("olga"), TOKEN_REVOKED, jobs),
        (
            Some("stella"),
            PERMISSION_DENIED,
            "POST /orchestrator/v1/command/deploy",
        ),
        (
            Some("vera"),
            PERMISSION_DENIED,
            "POST /orchestrator/v1/command/stop",
        ),
        (Some("olga"), PERMISSION_DENIED, "POST /rbac-api/v1/users"),
        (
            Some("olga"),
            PERMISSION_DENIED,
            "POST /orchestrator/v1/cluster/members",
        ),
        (
            Some("vera"),
            PERMISSION_DENIED,
            "GET /orchestrator/v1/audit",
        ),
    ];
    for (login, (_, reason), target) in refusals {
        audit_entry(
            cluster,
            &format!("{login:?} refused {reason} on {target}"),
            &|e| refused(e, "request", login, reason, target),
        );
    }
    audit_entry(cluster, "a wrong password", &|e| {
        refused(
            e,
            "token.issue",
            None,
            "puppetlabs.rbac/authentication-failed",
            "login admin",
        )
    });
    audit_entry(cluster, "the admin adding node 4", &|e| {
        e["action"] == "cluster.member.add"
            && e["outcome"] == "ok"
            && e["user"]["login"] == "admin"
            && e["target"] == "4"
    });
    audit_entry(cluster, "olga revoking her token", &|e| {
        e["action"] == "token.revoke" && e["outcome"] == "ok" && e["user"]["login"] == "olga"
    });
    let run = audit_entry(cluster, &format!("the job.run of job {job}"), &|e| {
        e["action"] == "job.run" && e["target"] == json!(job.to_string())
    });
    assert_eq!(run["outcome"], "ok", "{run}");
    assert_eq!(
        run["user"],
        json!({"id": users.stella_id, "login": "stella"}),
        "{run}"
    );
    assert!(
        run["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{run}"
    );
}

// ---- the CLI ----

fn client(bin: &str, home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(porch_bin().with_file_name(bin))
        .args(args)
        .env("HOME", home)
        .env_remove("PORCH_SERVICE_URL")
        .current_dir(home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("a piped stdin")
            .write_all(input.as_bytes())
            .expect("write the password");
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {bin}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn cli_exit_codes_name_the_problem(cluster: &Cluster, users: &mut Users) {
    let home = cluster.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("a home dir");
    let (urls, cacert) = (cluster.urls(), path_text(&cluster.cacert()));
    let to_cluster = ["--service-url", urls.as_str(), "--cacert", cacert.as_str()];
    let with = |extra: &[&str]| -> Vec<String> {
        to_cluster
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |bin: &str, args: &[String], stdin: Option<&str>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        client(bin, &home, &args, stdin)
    };

    let no_token = run("puppet-job", &with(&["show"]), None);
    assert_eq!(no_token.status.code(), Some(7), "{}", text(&no_token));
    assert!(
        text(&no_token).contains("puppet-access login"),
        "{}",
        text(&no_token)
    );

    let viewer_token = home.join("vera.token");
    std::fs::write(&viewer_token, &users.vera).expect("write the viewer's token");
    let denied = run(
        "puppet-job",
        &with(&[
            "--token-file",
            &path_text(&viewer_token),
            "run",
            "--nodes",
            "web1",
            "--no-wait",
        ]),
        None,
    );
    assert_eq!(denied.status.code(), Some(8), "{}", text(&denied));

    let other = DevCa::create(&cluster.dir.path().join("cli-other-ca")).expect("another CA");
    let wrong_ca = run(
        "puppet-job",
        &[
            "--service-url".to_string(),
            urls.clone(),
            "--cacert".into(),
            path_text(&other.cacert_path()),
            "--token-file".into(),
            path_text(&cluster.token_file),
            "show".into(),
        ],
        None,
    );
    assert_eq!(wrong_ca.status.code(), Some(9), "{}", text(&wrong_ca));
    assert!(
        !text(&wrong_ca)
            .to_lowercase()
            .contains("connection refused"),
        "a certificate problem reported as a refused connection: {}",
        text(&wrong_ca)
    );

    let logged_in = run(
        "puppet-access",
        &with(&["login", "--username", "alice"]),
        Some(&format!("{ALICE_PASSWORD}\n")),
    );
    assert_eq!(logged_in.status.code(), Some(0), "{}", text(&logged_in));
    let token_file = home.join(".puppetlabs").join("token");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&token_file)
            .unwrap_or_else(|e| panic!("{}: {e}", token_file.display()))
            .permissions()
            .mode()
    };
    assert_eq!(mode & 0o777, 0o600, "token file mode {:o}", mode & 0o777);
    let alice = std::fs::read_to_string(&token_file).expect("the token file");
    users.remember_token(alice.trim());
    let shown = run("puppet-job", &with(&["show"]), None);
    assert_eq!(
        shown.status.code(),
        Some(0),
        "puppet-job show with alice's token: {}",
        text(&shown)
    );
}
