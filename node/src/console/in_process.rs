//! The console is a client of the API: each page calls the node's own API router in process,
//! with the session's token, so authentication, permissions, the read barrier, the audit of
//! refusals and every error message are exactly the API's (one rule, one function).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

/// Largest API answer the console reads (a 100,000-node job's node list is ~50 MB of JSON;
/// the console reads nodes from the applied state instead, so its answers are small).
const ANSWER_BYTES_MAX: usize = 64 * 1024 * 1024;

/// An API error as the console shows it.
#[derive(Clone, Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    /// PE's error kind (`puppetlabs.rbac/token-expired`, `puppetlabs.orchestrator/unknown-job`).
    pub kind: String,
    pub msg: String,
}

impl ApiFailure {
    /// The session is no longer good (expired, revoked, unknown): log in again.
    pub fn is_unauthenticated(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
    }
}

/// The API router, plus what each in-process request carries from the browser's request.
#[derive(Clone)]
pub struct InProcessApi {
    router: Router,
}

/// What a call copies from the browser's request: its host (URLs in answers) and its
/// connection (the audit log's source names the browser's address).
#[derive(Clone)]
pub struct Caller {
    pub token: String,
    pub host: Option<header::HeaderValue>,
    pub connect_info: Option<axum::extract::ConnectInfo<porch_tls::PeerInfo>>,
}

impl Caller {
    pub fn from_request(
        token: String,
        headers: &HeaderMap,
        extensions: &axum::http::Extensions,
    ) -> Caller {
        Caller {
            token,
            host: headers.get(header::HOST).cloned(),
            connect_info: extensions
                .get::<axum::extract::ConnectInfo<porch_tls::PeerInfo>>()
                .cloned(),
        }
    }
}

impl InProcessApi {
    pub fn new(router: Router) -> InProcessApi {
        InProcessApi { router }
    }

    pub async fn get(&self, caller: &Caller, path: &str) -> Result<Value, ApiFailure> {
        self.call(caller, Method::GET, path, None, &[]).await
    }

    pub async fn post(
        &self,
        caller: &Caller,
        path: &str,
        body: &Value,
        extra_headers: &[(&str, &str)],
    ) -> Result<Value, ApiFailure> {
        self.call(caller, Method::POST, path, Some(body), extra_headers)
            .await
    }

    pub async fn delete(&self, caller: &Caller, path: &str) -> Result<Value, ApiFailure> {
        self.call(caller, Method::DELETE, path, None, &[]).await
    }

    async fn call(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra_headers: &[(&str, &str)],
    ) -> Result<Value, ApiFailure> {
        let mut request = Request::builder().method(method).uri(path);
        if !caller.token.is_empty() {
            request = request.header("x-authentication", caller.token.as_str());
        }
        if let Some(host) = &caller.host {
            request = request.header(header::HOST, host.clone());
        }
        for (name, value) in extra_headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(value) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).map_err(|e| ApiFailure {
            status: StatusCode::BAD_REQUEST,
            kind: "porch.console/bad-request".into(),
            msg: format!("cannot build the API request for {path}: {e}"),
        })?;
        if let Some(info) = &caller.connect_info {
            request.extensions_mut().insert(info.clone());
        }
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), ANSWER_BYTES_MAX)
            .await
            .map_err(|e| ApiFailure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                kind: "porch.console/answer-too-large".into(),
                msg: format!("the answer of {path} could not be read: {e}"),
            })?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(value);
        }
        Err(ApiFailure {
            status,
            kind: value["kind"].as_str().unwrap_or("unknown").to_string(),
            msg: value["msg"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{path} answered {status}")),
        })
    }
}
