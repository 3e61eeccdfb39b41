//! The client against a throwaway HTTPS server with a dev CA: trust only the given CA, plain
//! words and their own exit codes for TLS, 401 and 403 failures, no failover on 401, and
//! `puppet-access login` writing a token that `puppet-job` and `porch audit` then send,
//! `puppet-access revoke` deleting it.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use porch_cli::client::{Client, ClientError};
use porch_cli::config::Settings;
use porch_cli::exit_code;
use porch_tls::dev_ca::{DevCa, Validity};
use porch_tls::{PeerInfo, PlainListener, TlsIdentity, TlsListener};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tokio::net::TcpListener;

const TOKEN: &str = "tok-alice";

fn rbac_error(status: StatusCode, kind: &str, msg: &str) -> (StatusCode, axum::Json<Value>) {
    (
        status,
        axum::Json(json!({"kind": kind, "msg": msg, "details": null})),
    )
}

/// The API subset the client needs, accepting `token`.
fn app(token: &'static str) -> Router {
    Router::new()
        .route(
            "/rbac-api/v1/auth/token",
            post(|axum::Json(body): axum::Json<Value>| async move {
                if body["login"] == "alice" && body["password"] == "pw with spaces" {
                    (StatusCode::OK, axum::Json(json!({"token": TOKEN})))
                } else {
                    rbac_error(
                        StatusCode::UNAUTHORIZED,
                        "puppetlabs.rbac/authentication-failed",
                        "The username or password is not correct",
                    )
                }
            }),
        )
        .route(
            "/rbac-api/v2/tokens",
            post(|axum::Json(body): axum::Json<Value>| async move {
                assert_eq!(body, json!({"revoke_tokens": [TOKEN]}));
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/orchestrator/v1/audit",
            get(
                |axum::extract::Query(page): axum::extract::Query<
                    std::collections::HashMap<String, u64>,
                >| async move {
                    // Three entries, pages capped at two: the client must ask again.
                    let offset = page["offset"];
                    let limit = page["limit"].min(2);
                    let items: Vec<Value> = (offset..3)
                        .take(limit as usize)
                        .map(|i| json!({"id": i.to_string(), "action": "job.run", "outcome": "ok"}))
                        .collect();
                    axum::Json(json!({"items": items,
                        "pagination": {"offset": offset, "limit": limit, "total": 3}}))
                },
            ),
        )
        .route(
            "/orchestrator/v1/jobs",
            get(move |headers: HeaderMap| async move {
                match headers
                    .get("x-authentication")
                    .map(|v| v.to_str().unwrap_or(""))
                {
                    None => rbac_error(
                        StatusCode::UNAUTHORIZED,
                        "puppetlabs.rbac/user-unauthenticated",
                        "no token",
                    ),
                    Some("tok-viewer") => rbac_error(
                        StatusCode::FORBIDDEN,
                        "puppetlabs.rbac/permission-denied",
                        "run is not granted",
                    ),
                    Some(t) if t == token => (StatusCode::OK, axum::Json(json!({"items": []}))),
                    Some(_) => rbac_error(
                        StatusCode::UNAUTHORIZED,
                        "puppetlabs.rbac/invalid-token",
                        "unknown token",
                    ),
                }
            }),
        )
}

struct Pki {
    dir: tempfile::TempDir,
    ca: DevCa,
    other_ca: DevCa,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::create(&dir.path().join("ca")).unwrap();
        let other_ca = DevCa::create(&dir.path().join("other-ca")).unwrap();
        Pki { dir, ca, other_ca }
    }

    /// An HTTPS server with a certificate for 127.0.0.1 from `self.ca`; returns its URL.
    async fn serve(&self, name: &str, token: &'static str) -> String {
        self.serve_as(name, &["127.0.0.1"], token).await
    }

    /// An HTTPS server on 127.0.0.1 whose certificate names `name` and `alt_names`.
    async fn serve_as(&self, name: &str, alt_names: &[&str], token: &'static str) -> String {
        let paths = self
            .ca
            .issue(
                &self.dir.path().join(format!("ssl-{name}")),
                name,
                alt_names,
                Validity::default(),
            )
            .unwrap();
        let identity = TlsIdentity::load(paths).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let listener = TlsListener::new(tcp, identity);
        tokio::spawn(async move {
            axum::serve(
                listener,
                app(token).into_make_service_with_connect_info::<PeerInfo>(),
            )
            .await
        });
        format!("https://127.0.0.1:{port}")
    }
}

async fn serve_plain() -> u16 {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(
            PlainListener::new(tcp),
            app(TOKEN).into_make_service_with_connect_info::<PeerInfo>(),
        )
        .await
    });
    port
}

fn settings(urls: &[&str], cacert: &Path, token: Option<&str>) -> Settings {
    Settings {
        service_urls: urls.iter().map(|u| u.to_string()).collect(),
        cacert: Some(cacert.to_path_buf()),
        token: token.map(str::to_string),
        ..Default::default()
    }
}

async fn jobs(settings: &Settings) -> Result<Value, ClientError> {
    Client::new(settings).unwrap().get("/jobs").await
}

#[tokio::test]
async fn the_token_is_sent_and_401_403_have_their_own_exit_codes() {
    let pki = Pki::new();
    let url = pki.serve("orch1", TOKEN).await;
    let ca = pki.ca.cacert_path();
    assert_eq!(
        jobs(&settings(&[&url], &ca, Some(TOKEN))).await.unwrap(),
        json!({"items": []})
    );
    let anonymous = jobs(&settings(&[&url], &ca, None)).await.unwrap_err();
    assert_eq!(anonymous.exit_code(), exit_code::NOT_AUTHENTICATED);
    assert!(
        anonymous.to_string().contains("puppet-access login"),
        "{anonymous}"
    );
    let viewer = jobs(&settings(&[&url], &ca, Some("tok-viewer")))
        .await
        .unwrap_err();
    assert_eq!(viewer.exit_code(), exit_code::PERMISSION_DENIED);
    assert_eq!(viewer.to_string(), "permission denied: run is not granted");
}

#[tokio::test]
async fn a_401_does_not_fail_over_to_the_next_url() {
    let pki = Pki::new();
    let refusing = pki.serve("orch1", "tok-other").await;
    let accepting = pki.serve("orch2", TOKEN).await;
    let error = jobs(&settings(
        &[&refusing, &accepting],
        &pki.ca.cacert_path(),
        Some(TOKEN),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        error.kind(),
        Some("puppetlabs.rbac/invalid-token"),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_a_tls_error_naming_the_ca_file() {
    let pki = Pki::new();
    let url = pki.serve("orch1", TOKEN).await;
    let other = pki.other_ca.cacert_path();
    let error = jobs(&settings(&[&url], &other, Some(TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), exit_code::TLS, "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&url)
            && text.contains(&other.display().to_string())
            && text.contains("not signed by"),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_certificate_for_another_name_says_which_names_it_has() {
    let pki = Pki::new();
    let url = pki.serve_as("orch1.example.com", &[], TOKEN).await;
    let error = jobs(&settings(&[&url], &pki.ca.cacert_path(), Some(TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), exit_code::TLS, "{error}");
    assert!(error.to_string().contains("orch1.example.com"), "{error}");
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error_not_connection_refused() {
    let pki = Pki::new();
    let port = serve_plain().await;
    let https = format!("https://127.0.0.1:{port}");
    let error = jobs(&settings(&[&https], &pki.ca.cacert_path(), Some(TOKEN)))
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), exit_code::TLS, "{error}");
    assert!(error.to_string().contains("http://"), "{error}");
    // And http:// still works against it.
    let http = format!("http://127.0.0.1:{port}");
    assert!(
        jobs(&settings(&[&http], &pki.ca.cacert_path(), Some(TOKEN)))
            .await
            .is_ok()
    );
}

async fn run(program: &str, args: &[&str], home: &Path, stdin: &str) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("HOME", home)
        .env("USER", "alice")
        .env_remove("PORCH_SERVICE_URL")
        .current_dir(home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn login_saves_a_0600_token_the_commands_send_and_revoke_deletes_it() {
    let pki = Pki::new();
    let url = pki.serve("orch1", TOKEN).await;
    let home = tempfile::tempdir().unwrap();
    let ca = pki.ca.cacert_path();
    let ca = ca.to_str().unwrap();
    let access = env!("CARGO_BIN_EXE_puppet-access");
    let job = env!("CARGO_BIN_EXE_puppet-job");

    let (code, _, stderr) = run(
        job,
        &["show", "--service-url", &url, "--cacert", ca],
        home.path(),
        "",
    )
    .await;
    assert_eq!(code, i32::from(exit_code::NOT_AUTHENTICATED), "{stderr}");

    let (code, _, stderr) = run(
        access,
        &[
            "login",
            "--service-url",
            &format!("{url}/rbac-api"),
            "--ca-cert",
            ca,
        ],
        home.path(),
        "wrong\n",
    )
    .await;
    assert_eq!(code, i32::from(exit_code::NOT_AUTHENTICATED), "{stderr}");
    assert!(stderr.contains("login failed"), "{stderr}");

    let (code, stdout, stderr) = run(
        access,
        &[
            "login",
            "--service-url",
            &format!("{url}/rbac-api"),
            "--ca-cert",
            ca,
        ],
        home.path(),
        "pw with spaces\n",
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stdout.contains(TOKEN),
        "the token is not printed: {stdout}"
    );
    let token_file: PathBuf = home.path().join(".puppetlabs/token");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), TOKEN);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let (code, _, stderr) = run(
        job,
        &["show", "--service-url", &url, "--cacert", ca],
        home.path(),
        "",
    )
    .await;
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, _) = run(access, &["show"], home.path(), "").await;
    assert_eq!((code, stdout.trim()), (0, TOKEN));

    let porch = env!("CARGO_BIN_EXE_porch");
    let (code, stdout, stderr) = run(
        porch,
        &[
            "audit",
            "--limit",
            "10",
            "--format",
            "json",
            "--service-url",
            &url,
            "--cacert",
            ca,
        ],
        home.path(),
        "",
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let audit: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 3, "{audit}");

    let (code, _, stderr) = run(
        access,
        &["revoke", "--service-url", &url, "--cacert", ca],
        home.path(),
        "",
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!token_file.exists(), "revoke deletes the token file");

    let (code, _, stderr) = run(
        job,
        &["show", "--service-url", &url, "--cacert", "/no/such/ca.pem"],
        home.path(),
        "",
    )
    .await;
    assert_eq!(code, i32::from(exit_code::USAGE), "{stderr}");
    assert!(stderr.contains("/no/such/ca.pem"), "{stderr}");
}
