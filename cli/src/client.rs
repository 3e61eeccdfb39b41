//! HTTP client for the Orchestrator API with failover across service URLs. A command is sent
//! with one `X-Porch-Request-Id` however many URLs it is tried on, so a retry after a
//! failover never creates a second job.

use crate::config::Settings;
use crate::exit_code;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug)]
pub enum ClientError {
    /// No URL answered (connection refused, timeout, 503 from every node).
    Unreachable { tried: Vec<String>, last: String },
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
            ClientError::Api { kind, msg, .. } => {
                let short = kind.rsplit('/').next().unwrap_or(kind);
                write!(f, "{short}: {msg}")
            }
        }
    }
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. } => exit_code::UNREACHABLE,
            ClientError::Api { status: 400, .. } => exit_code::USAGE,
            ClientError::Api { .. } => exit_code::API_ERROR,
        }
    }
}

pub struct Client {
    urls: Vec<String>,
    token: Option<String>,
    http: reqwest::Client,
    /// The URL that answered last; tried first next time.
    preferred: AtomicUsize,
}

/// A random-enough request id: time, pid and a counter (no RNG dependency needed).
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
    pub fn new(settings: &Settings) -> Client {
        Client {
            urls: settings.service_urls.clone(),
            token: settings.token.clone(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client with static settings"),
            preferred: AtomicUsize::new(0),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let id = new_request_id();
        self.send(reqwest::Method::POST, path, Some(body), Some(&id))
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send(reqwest::Method::DELETE, path, None, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        request_id: Option<&str>,
    ) -> Result<Value, ClientError> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = String::new();
        for k in 0..self.urls.len() {
            let index = (start + k) % self.urls.len();
            let url = format!("{}/orchestrator/v1{path}", self.urls[index]);
            let mut request = self.http.request(method.clone(), &url);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(id) = request_id {
                request = request.header("X-Porch-Request-Id", id);
            }
            if let Some(token) = &self.token {
                request = request.header("X-Authentication", token);
            }
            if let Ok(user) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
                request = request.header("X-Porch-User", user);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    last = format!("{}: {}", self.urls[index], describe(&e));
                    continue;
                }
            };
            let status = response.status().as_u16();
            let value: Value = response.json().await.unwrap_or(Value::Null);
            if status == 503 || status == 502 || status == 504 {
                last = format!(
                    "{}: {}",
                    self.urls[index],
                    value["msg"].as_str().unwrap_or("unavailable")
                );
                continue;
            }
            self.preferred.store(index, Ordering::Relaxed);
            if status >= 400 {
                return Err(ClientError::Api {
                    status,
                    kind: value["kind"]
                        .as_str()
                        .unwrap_or("unknown-error")
                        .to_string(),
                    msg: value["msg"].as_str().unwrap_or("(no message)").to_string(),
                });
            }
            return Ok(value);
        }
        Err(ClientError::Unreachable {
            tried: self.urls.clone(),
            last,
        })
    }
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_connect() {
        "connection refused".into()
    } else if error.is_timeout() {
        "timed out".into()
    } else {
        error.to_string()
    }
}
