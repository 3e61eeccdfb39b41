//! `--query` through a real PuppetDB: the one `tests/puppet-stack/up.sh` brings up, reached
//! over TLS with a certificate from the Puppet Server's CA. Skipped, with a note, when that
//! stack is not running.
//!
//! Facts (and one catalog) for three fresh certnames are submitted through PuppetDB's command
//! API; PQL over facts, inventory and resources, as text and as AST, must then select exactly
//! the right ones, and PuppetDB's own verdicts must come back as PE's errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use porch_node::planner::{plan_query_in_puppetdb, puppetdb_error};
use porch_node::puppetdb::{PuppetDb, PuppetDbConfig, PuppetDbError};
use porch_tls::{TlsIdentity, TlsPaths};
use serde_json::{Value, json};

/// The certname porch's test node uses toward PuppetDB.
const PORCH_CERTNAME: &str = "porch-pdb-test";

fn stack_env() -> Option<BTreeMap<String, String>> {
    let path =
        std::env::var("PORCH_STACK_ENV").unwrap_or_else(|_| "/var/lib/porch-stack/env".to_string());
    let text = std::fs::read_to_string(&path).ok()?;
    Some(
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    )
}

fn up_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/puppet-stack/up.sh")
}

/// The stack's settings, or `None` (with a printed note) when it is not up.
async fn running_stack() -> Option<BTreeMap<String, String>> {
    let Some(env) = stack_env() else {
        eprintln!(
            "note: skipping the PuppetDB test: no Puppet stack (run {} as root)",
            up_sh().display()
        );
        return None;
    };
    let status = format!(
        "{}/status/v1/services/puppetdb-status",
        env["PUPPETDB_HTTP_URL"]
    );
    let answers = reqwest::Client::new()
        .get(&status)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !answers {
        eprintln!(
            "note: skipping the PuppetDB test: PuppetDB does not answer {status} (run {} as root)",
            up_sh().display()
        );
        return None;
    }
    Some(env)
}

/// porch's certificate from the stack's CA, created by up.sh when missing.
fn porch_identity(env: &BTreeMap<String, String>) -> std::sync::Arc<TlsIdentity> {
    // The tests of this file run in parallel; one of them creates the identity.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    let ssldir = Path::new(&env["PORCH_STACK_AGENTS_DIR"])
        .join(PORCH_CERTNAME)
        .join("ssl");
    if !ssldir
        .join("certs")
        .join(format!("{PORCH_CERTNAME}.pem"))
        .exists()
    {
        let out = std::process::Command::new(up_sh())
            .args(["certs", PORCH_CERTNAME])
            .output()
            .expect("run up.sh certs");
        assert!(
            out.status.success(),
            "up.sh certs {PORCH_CERTNAME} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    TlsIdentity::load(TlsPaths::from_ssldir(&ssldir, PORCH_CERTNAME))
        .unwrap_or_else(|e| panic!("porch's identity from {}: {e}", ssldir.display()))
}

async fn submit(http_url: &str, command: &str, version: u32, certname: &str, payload: Value) {
    let response = reqwest::Client::new()
        .post(format!("{http_url}/pdb/cmd/v1"))
        .query(&[
            ("command", command),
            ("version", &version.to_string()),
            ("certname", certname),
        ])
        .json(&payload)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{command} for {certname}: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "{command} for {certname}: expected 200, got {status}: {body}"
    );
}

/// Three nodes, two web and one db, and a catalog with `Class[Porch_test_db]` for the db.
async fn seed(http_url: &str, run: &str) -> [String; 3] {
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let names = ["web1", "web2", "db1"].map(|n| format!("pdbtest-{run}-{n}"));
    for (name, role) in names.iter().zip(["web", "web", "db"]) {
        submit(
            http_url,
            "replace_facts",
            5,
            name,
            json!({
                "certname": name,
                "environment": "production",
                "producer_timestamp": now,
                "producer": "porch-test",
                "values": {"porch_role": role, "porch_run": run, "os": {"family": "Debian"}},
            }),
        )
        .await;
    }
    submit(
        http_url,
        "replace_catalog",
        9,
        &names[2],
        json!({
            "certname": names[2],
            "version": "1",
            "environment": "production",
            "transaction_uuid": uuid::Uuid::new_v4().to_string(),
            "catalog_uuid": uuid::Uuid::new_v4().to_string(),
            "producer_timestamp": now,
            "producer": "porch-test",
            "code_id": null,
            "job_id": null,
            "resources": [{
                "type": "Class", "title": "Porch_test_db", "exported": false,
                "tags": ["class", "porch_test_db"], "parameters": {},
            }],
            "edges": [],
        }),
    )
    .await;
    names
}

#[tokio::test]
async fn pql_queries_select_exactly_the_right_nodes_through_a_real_puppetdb() {
    let Some(env) = running_stack().await else {
        return;
    };
    let identity = porch_identity(&env);
    let puppetdb = PuppetDb::new(
        PuppetDbConfig {
            url: env["PUPPETDB_URL"].clone(),
            query_timeout: Duration::from_secs(30),
        },
        Some(identity),
    )
    .unwrap();
    let run = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 0xffff_ffff
    );
    let [web1, web2, db1] = seed(&env["PUPPETDB_HTTP_URL"], &run).await;

    // Commands are processed asynchronously: wait until PuppetDB has all three and the catalog.
    let everyone = format!(r#"inventory[certname] {{ facts.porch_run = "{run}" }}"#);
    let with_catalog = format!(
        r#"resources[certname] {{ type = "Class" and title = "Porch_test_db" and certname ~ "^pdbtest-{run}-" }}"#
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let facts = puppetdb.certnames(&everyone).await.unwrap();
        let catalog = puppetdb.certnames(&with_catalog).await.unwrap();
        if facts.len() == 3 && catalog.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PuppetDB did not store the submitted facts and catalog within 60 s: {facts:?}, {catalog:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Inventory over facts, PQL text.
    let web = format!(
        r#"inventory[certname] {{ facts.porch_run = "{run}" and facts.porch_role = "web" }}"#
    );
    assert_eq!(
        puppetdb.certnames(&web).await.unwrap(),
        vec![web1.clone(), web2.clone()]
    );
    // The facts entity answers a row per fact; each node counts once.
    let facts = format!(r#"facts {{ certname ~ "^pdbtest-{run}-" }}"#);
    assert_eq!(
        puppetdb.certnames(&facts).await.unwrap(),
        vec![db1.clone(), web1.clone(), web2.clone()]
    );
    // Resources: the node whose catalog holds the class.
    assert_eq!(
        puppetdb.certnames(&with_catalog).await.unwrap(),
        vec![db1.clone()]
    );
    // The AST form.
    let ast = json!([
        "from",
        "facts",
        [
            "and",
            ["=", "name", "porch_role"],
            ["=", "value", "db"],
            ["~", "certname", format!("^pdbtest-{run}-")]
        ]
    ])
    .to_string();
    assert_eq!(puppetdb.certnames(&ast).await.unwrap(), vec![db1.clone()]);

    // The plan a deploy proposes: the query's certnames as independent nodes.
    let report = plan_query_in_puppetdb(&web, &puppetdb).await.unwrap();
    let planned: Vec<&str> = report
        .plan
        .nodes()
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(planned, vec![web1.as_str(), web2.as_str()]);

    // Nothing matches: PE's empty-target.
    let none = format!(r#"inventory[certname] {{ facts.porch_run = "{run}-absent" }}"#);
    let error = plan_query_in_puppetdb(&none, &puppetdb).await.unwrap_err();
    assert_eq!(
        (error.status, error.kind),
        (
            StatusCode::BAD_REQUEST,
            "puppetlabs.orchestrator/empty-target"
        )
    );
    assert!(
        error.msg.contains("no node in PuppetDB at https://"),
        "{}",
        error.msg
    );

    // Bad PQL: PuppetDB's own message, as a query-error.
    let error = plan_query_in_puppetdb("nodes[certname] { bogus", &puppetdb)
        .await
        .unwrap_err();
    assert_eq!(
        (error.status, error.kind),
        (
            StatusCode::BAD_REQUEST,
            "puppetlabs.orchestrator/query-error"
        )
    );
    assert!(
        error
            .msg
            .contains("rejected the query: PQL parse error at line 1"),
        "{}",
        error.msg
    );
    // An AST PuppetDB does not understand.
    let error = puppetdb
        .certnames(r#"["from","nodes",["==","certname","x"]]"#)
        .await
        .unwrap_err();
    assert!(matches!(error, PuppetDbError::Rejected { .. }), "{error}");

    // Rows that name no node.
    let error = puppetdb.certnames("environments {}").await.unwrap_err();
    assert!(
        matches!(error, PuppetDbError::RowWithoutCertname { .. }),
        "{error}"
    );
    assert_eq!(
        puppetdb_error(error).kind,
        "puppetlabs.orchestrator/query-error"
    );
}

#[tokio::test]
async fn a_server_that_is_not_puppetdb_is_a_bad_gateway_naming_its_url() {
    let Some(env) = running_stack().await else {
        return;
    };
    // Puppet Server, same CA, same TLS: it answers /pdb/query/v4 with a 404 page.
    let url = env["PUPPET_SERVER_URL"].clone();
    let puppetdb = PuppetDb::new(
        PuppetDbConfig {
            url: url.clone(),
            query_timeout: Duration::from_secs(30),
        },
        Some(porch_identity(&env)),
    )
    .unwrap();
    let error = plan_query_in_puppetdb("nodes {}", &puppetdb)
        .await
        .unwrap_err();
    assert_eq!(
        (error.status, error.kind),
        (
            StatusCode::BAD_GATEWAY,
            "puppetlabs.orchestrator/puppetdb-error"
        )
    );
    assert!(
        error
            .msg
            .starts_with(&format!("PuppetDB at {url} answered HTTP 404")),
        "{}",
        error.msg
    );
}
