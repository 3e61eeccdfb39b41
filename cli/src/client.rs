//! HTTPS client for the Orchestrator and RBAC APIs with failover across service URLs.
//!
//! - Trust: only the configured CA file (Puppet's CA), never the system's roots.
//! - Authentication: the RBAC token as `X-Authentication`.
//! - Failover: a connection failure (TLS included) or a 502/503/504 tries the next URL; any
//!   other answer, 401 and 403 included, is the answer: another node would say the same.
//! - A command is sent with one `X-Porch-Request-Id` however many URLs it is tried on, so a
//!   retry after a failover never creates a second job.

use crate::config::{GlobalArgs, PUPPET_CA_FILE, Settings};
use crate::exit_code;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub enum ClientError {
    /// No URL answered (connection refused, timeout, 503 from every node).
    Unreachable { tried: Vec<String>, last: String },
    /// The server's certificate could not be verified (or the server does not speak TLS).
    Tls {
        url: String,
        cacert: Option<PathBuf>,
        problem: String,
    },
    /// The client cannot be set up: no or unreadable CA file, unusable token file.
    Config(String),
    /// The API answered with an error body.
    Api {
        status: u16,
        kind: String,
        msg: String,
    },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable { tried, last } => {
                write!(
                    f,
                    "cannot reach any orchestrator (tried {}): {last}",
                    tried.join(", ")
                )
            }
            ClientError::Tls {
                url,
                cacert,
                problem,
            } => {
                write!(f, "TLS certificate problem with {url}: {problem}")?;
                if let Some(cacert) = cacert {
                    write!(f, " (CA file used: {})", cacert.display())?;
                }
                Ok(())
            }
            ClientError::Config(message) => write!(f, "{message}"),
            ClientError::Api {
                status: 401, msg, ..
            } => write!(
                f,
                "not authenticated: {msg}; run 'puppet-access login' (or 'porch access login')"
            ),
            ClientError::Api {
                status: 403, msg, ..
            } => write!(f, "permission denied: {msg}"),
            ClientError::Api { kind, msg, .. } => {
                let short = kind.rsplit('/').next().unwrap_or(kind);
                write!(f, "{short}: {msg}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// The settings `global` resolves to and a client made from them; otherwise prints why and
/// returns the exit status: usage for a bad flag or configuration file, the client error's own
/// for an unreadable CA or token file.
pub fn connect(global: &GlobalArgs) -> Result<(Settings, Client), ExitCode> {
    let settings = crate::config::resolve(global).map_err(exit_code::usage)?;
    let client = Client::new(&settings).map_err(report)?;
    Ok((settings, client))
}

/// Prints `error` and returns its exit status.
pub fn report(error: ClientError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(error.exit_code())
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. } => exit_code::UNREACHABLE,
            ClientError::Tls { .. } => exit_code::TLS,
            ClientError::Config(_) => exit_code::USAGE,
            ClientError::Api { status: 400, .. } => exit_code::USAGE,
            ClientError::Api { status: 401, .. } => exit_code::NOT_AUTHENTICATED,
            ClientError::Api { status: 403, .. } => exit_code::PERMISSION_DENIED,
            ClientError::Api { .. } => exit_code::API_ERROR,
        }
    }

    /// Whether trying again later may succeed (no orchestrator answered). An answer, a
    /// certificate problem or a bad configuration stays the same: a job being followed
    /// stops following (with the exit code of the error) instead of retrying forever.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }

    /// The API error kind (`puppetlabs.rbac/token-expired`), if the server answered.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ClientError::Api { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

pub struct Client {
    urls: Vec<String>,
    token: Option<String>,
    cacert: Option<PathBuf>,
    http: reqwest::Client,
    /// The URL that answered last; tried first next time.
    preferred: AtomicUsize,
}

/// A random-enough request id: time, pid and a counter (no RNG dependency needed).
/// Prints `value` as indented JSON: what every command prints with `--format json`.
pub fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub fn new_request_id() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{nanos:x}-{:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Client {
    /// A client for `settings`: https URLs need a CA file (checked here, before any request).
    pub fn new(settings: &Settings) -> Result<Client, ClientError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30));
        let https = settings
            .service_urls
            .iter()
            .find(|u| u.starts_with("https://"));
        if let Some(url) = https {
            let Some(cacert) = &settings.cacert else {
                return Err(ClientError::Config(format!(
                    "{url}: no CA certificate to verify the server with: pass --cacert FILE \
                     or set \"cacert\" in orchestrator.conf (Puppet's CA, {PUPPET_CA_FILE}, is \
                     not on this machine)"
                )));
            };
            let tls = porch_tls::client_config_trusting(cacert, settings.crl.as_deref())
                .map_err(|e| ClientError::Config(e.to_string()))?;
            builder = builder.use_preconfigured_tls(tls);
        }
        if let Some(token) = &settings.token
            && !token.bytes().all(|b| b.is_ascii_graphic())
        {
            let file = settings
                .token_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(ClientError::Config(format!(
                "token file {file}: not a token (unprintable characters); run 'puppet-access login'"
            )));
        }
        let http = builder.build().map_err(|e| {
            ClientError::Config(format!(
                "cannot set up the HTTPS client: {}",
                error_chain(&e)
            ))
        })?;
        Ok(Client {
            urls: settings.service_urls.clone(),
            token: settings.token.clone(),
            cacert: settings.cacert.clone(),
            http,
            preferred: AtomicUsize::new(0),
        })
    }

    /// GET on the Orchestrator API (`path` under `/orchestrator/v1`).
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(
            reqwest::Method::GET,
            &format!("/orchestrator/v1{path}"),
            None,
            None,
        )
        .await
    }

    /// POST on the Orchestrator API (`path` under `/orchestrator/v1`).
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let id = new_request_id();
        self.send(
            reqwest::Method::POST,
            &format!("/orchestrator/v1{path}"),
            Some(body),
            Some(&id),
        )
        .await
    }

    /// DELETE on the Orchestrator API (`path` under `/orchestrator/v1`).
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send(
            reqwest::Method::DELETE,
            &format!("/orchestrator/v1{path}"),
            None,
            None,
        )
        .await
    }

    /// A request on the RBAC API (`path` under `/rbac-api`, e.g. `/v1/users`).
    pub async fn rbac(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let id = new_request_id();
        self.send(method, &format!("/rbac-api{path}"), body, Some(&id))
            .await
    }

    /// GET on the Orchestrator API whose answer is bytes, not JSON (a backup).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        self.send_for_bytes(
            reqwest::Method::GET,
            &format!("/orchestrator/v1{path}"),
            None,
            None,
        )
        .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        request_id: Option<&str>,
    ) -> Result<Value, ClientError> {
        let bytes = self.send_for_bytes(method, path, body, request_id).await?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn send_for_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        request_id: Option<&str>,
    ) -> Result<Vec<u8>, ClientError> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = String::new();
        let mut tls_failure = None;
        for k in 0..self.urls.len() {
            let index = (start + k) % self.urls.len();
            let base = &self.urls[index];
            let mut request = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(id) = request_id {
                request = request.header("X-Porch-Request-Id", id);
            }
            if let Some(token) = &self.token {
                request = request.header("X-Authentication", token);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    if let Some(problem) = porch_tls::describe_tls_error(&e) {
                        last = format!("{base}: {problem}");
                        tls_failure.get_or_insert(ClientError::Tls {
                            url: base.clone(),
                            cacert: self.cacert.clone(),
                            problem,
                        });
                    } else {
                        last = format!("{base}: {}", describe(&e, base));
                    }
                    continue;
                }
            };
            let status = response.status().as_u16();
            let bytes = match response.bytes().await {
                Ok(bytes) => bytes.to_vec(),
                Err(e) => {
                    last = format!("{base}: the answer was cut off: {}", describe(&e, base));
                    continue;
                }
            };
            let value = || serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
            if status == 503 || status == 502 || status == 504 {
                let value = value();
                last = format!("{base}: {}", value["msg"].as_str().unwrap_or("unavailable"));
                continue;
            }
            self.preferred.store(index, Ordering::Relaxed);
            if status >= 400 {
                let value = value();
                return Err(ClientError::Api {
                    status,
                    kind: value["kind"]
                        .as_str()
                        .unwrap_or("unknown-error")
                        .to_string(),
                    msg: value["msg"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("HTTP {status} (no message)")),
                });
            }
            return Ok(bytes);
        }
        // A certificate problem is what the user must fix, even if other URLs were down.
        Err(tls_failure.unwrap_or(ClientError::Unreachable {
            tried: self.urls.clone(),
            last,
        }))
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved characters pass).
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn describe(error: &reqwest::Error, base: &str) -> String {
    if error.is_connect() {
        format!("cannot connect: {}", innermost(error))
    } else if error.is_timeout() {
        "timed out".into()
    } else if base.starts_with("http://") {
        // A TLS server answers a plain-HTTP request with bytes hyper cannot parse.
        format!(
            "{} (if the server uses TLS, use an https:// URL)",
            error_chain(error)
        )
    } else {
        error_chain(error)
    }
}

/// The message of the last error in `error`'s source chain ("Connection refused (os error
/// 111)"), the most specific one.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// Every message of `error`'s source chain, joined.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut current = error.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, kind: &str) -> ClientError {
        ClientError::Api {
            status,
            kind: kind.into(),
            msg: "the message".into(),
        }
    }

    #[test]
    fn status_401_is_not_authenticated_and_says_to_log_in() {
        let error = api(401, "puppetlabs.rbac/token-expired");
        assert_eq!(error.exit_code(), exit_code::NOT_AUTHENTICATED);
        let text = error.to_string();
        assert!(
            text.starts_with("not authenticated: the message")
                && text.contains("puppet-access login"),
            "{text}"
        );
    }

    #[test]
    fn status_403_is_permission_denied() {
        let error = api(403, "puppetlabs.rbac/permission-denied");
        assert_eq!(error.exit_code(), exit_code::PERMISSION_DENIED);
        assert_eq!(error.to_string(), "permission denied: the message");
        assert_eq!(api(400, "x").exit_code(), exit_code::USAGE);
        assert_eq!(api(404, "x").exit_code(), exit_code::API_ERROR);
    }

    #[test]
    fn tls_failure_names_the_url_and_the_ca_file() {
        let error = ClientError::Tls {
            url: "https://orch1:8143".into(),
            cacert: Some("/etc/ca.pem".into()),
            problem: "the server's certificate is not signed by the CA you trust".into(),
        };
        assert_eq!(error.exit_code(), exit_code::TLS);
        let text = error.to_string();
        assert!(
            text.contains("https://orch1:8143")
                && text.contains("/etc/ca.pem")
                && text.contains("not signed by the CA"),
            "{text}"
        );
    }

    fn settings(urls: &[&str], cacert: Option<PathBuf>) -> Settings {
        Settings {
            service_urls: urls.iter().map(|u| u.to_string()).collect(),
            cacert,
            ..Default::default()
        }
    }

    #[test]
    fn https_without_a_ca_file_says_what_to_pass() {
        let Err(error) = Client::new(&settings(&["https://h:8143"], None)) else {
            panic!("expected an error");
        };
        assert_eq!(error.exit_code(), exit_code::USAGE);
        assert!(error.to_string().contains("--cacert"), "{error}");
        assert!(Client::new(&settings(&["http://h:8143"], None)).is_ok());
    }

    #[test]
    fn missing_or_garbage_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let Err(error) = Client::new(&settings(&["https://h:8143"], Some(missing.clone()))) else {
            panic!("expected an error");
        };
        assert_eq!(error.exit_code(), exit_code::USAGE);
        assert!(
            error.to_string().contains(&missing.display().to_string()),
            "{error}"
        );
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let Err(error) = Client::new(&settings(&["https://h:8143"], Some(garbage.clone()))) else {
            panic!("expected an error");
        };
        assert!(error.to_string().contains("garbage.pem"), "{error}");
        let bad_der = dir.path().join("bad-der.pem");
        std::fs::write(
            &bad_der,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let Err(error) = Client::new(&settings(&["https://h:8143"], Some(bad_der))) else {
            panic!("expected an error");
        };
        assert!(error.to_string().contains("bad-der.pem"), "{error}");
    }
}
