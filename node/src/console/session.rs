//! Console sessions: an RBAC token (the same `POST /rbac-api/v1/auth/token` login the CLI
//! uses) kept in an HttpOnly, SameSite=Strict cookie (Secure over TLS), so page scripts never
//! see it. Mutating requests carry a CSRF token derived from the session token and must come
//! from this node's own origin or a member's (the live views may fail over to another node).

use super::ConsoleState;
use super::html::{self, Shell, Tab};
use super::in_process::{ApiFailure, Caller};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// How long a console login lasts (the token's lifetime, and the cookie's).
pub const SESSION_SECONDS: u64 = 3600;

/// Largest login form accepted.
const LOGIN_FORM_BYTES_MAX: usize = 16 * 1024;

/// The cookie's name: `__Host-` makes browsers refuse it unless Secure, host-only and `Path=/`.
fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-porch-session"
    } else {
        "porch-session"
    }
}

/// The session token in the request's cookies, if any.
pub fn token_in(headers: &HeaderMap, secure: bool) -> Option<String> {
    let name = cookie_name(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 512)
}

fn set_cookie(secure: bool, token: &str, max_age_s: u64) -> HeaderValue {
    let text = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        cookie_name(secure),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The CSRF token of a session: derived from its token, so it needs no storage, changes with
/// every login, and cannot be computed without the token (which scripts cannot read).
pub fn csrf_of(token: &str) -> String {
    let digest = Sha256::digest(format!("porch console csrf\n{token}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn csrf_matches(token: &str, presented: &str) -> bool {
    let expected = csrf_of(token);
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// Whether a request's `Origin` (sent by browsers on every POST and cross-origin request) is
/// this node as the browser addressed it, or a member. No `Origin`: not a browser's
/// cross-site request.
pub fn origin_allowed(console: &ConsoleState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let own = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|host| format!("{}://{host}", console.scheme));
    own.as_deref() == Some(origin) || console.member_urls().iter().any(|m| m == origin)
}

/// A logged-in viewer of one request.
pub struct Session {
    pub caller: Caller,
    pub login: String,
    pub csrf: String,
}

/// Why a page cannot be shown to this request: where to send the browser instead.
pub enum NoSession {
    /// To the login page, with one of [`login_message`]'s reasons.
    Login { reason: &'static str, next: String },
    /// The API failed for another reason (no quorum): an error page.
    Failed(ApiFailure),
}

impl Session {
    /// The session of `request`: its cookie's token, checked by the API itself.
    pub async fn open(
        console: &ConsoleState,
        headers: &HeaderMap,
        extensions: &axum::http::Extensions,
        path_and_query: &str,
    ) -> Result<Session, NoSession> {
        let next = path_and_query.to_string();
        let Some(token) = token_in(headers, console.secure_cookie) else {
            return Err(NoSession::Login {
                reason: "required",
                next,
            });
        };
        let caller = Caller::from_request(token, headers, extensions);
        match console.api.get(&caller, "/rbac-api/v1/users/current").await {
            Ok(user) => Ok(Session {
                login: user["login"].as_str().unwrap_or("?").to_string(),
                csrf: csrf_of(&caller.token),
                caller,
            }),
            Err(failure) if failure.is_unauthenticated() => Err(NoSession::Login {
                reason: if failure.kind.ends_with("token-expired") {
                    "expired"
                } else {
                    "revoked"
                },
                next,
            }),
            Err(failure) => Err(NoSession::Failed(failure)),
        }
    }

    /// Whether a form or script POST carries this session's CSRF token and comes from an
    /// allowed origin.
    pub fn check_post(
        &self,
        console: &ConsoleState,
        headers: &HeaderMap,
        form: &BTreeMap<String, String>,
    ) -> Result<(), Response> {
        let presented = form
            .get("csrf")
            .map(String::as_str)
            .or_else(|| headers.get("x-porch-csrf").and_then(|v| v.to_str().ok()))
            .unwrap_or("");
        if !origin_allowed(console, headers) || !csrf_matches(&self.caller.token, presented) {
            return Err((
                StatusCode::FORBIDDEN,
                "This form is stale or came from another site (CSRF check failed): reload the page and try again.",
            )
                .into_response());
        }
        Ok(())
    }

    pub fn shell<'a>(
        &'a self,
        console: &ConsoleState,
        title: &'a str,
        tab: Tab,
        members: &'a [String],
    ) -> Shell<'a> {
        Shell {
            title,
            tab,
            user: Some(&self.login),
            csrf: Some(&self.csrf),
            members,
            node_id: console.consensus.id,
        }
    }
}

impl NoSession {
    pub fn into_response(self, console: &ConsoleState) -> Response {
        match self {
            NoSession::Login { reason, next } => {
                let mut response = Redirect::to(&format!(
                    "/console/login?m={reason}&next={}",
                    html::url_component(&next)
                ))
                .into_response();
                if reason != "required" {
                    response
                        .headers_mut()
                        .insert(header::SET_COOKIE, set_cookie(console.secure_cookie, "", 0));
                }
                response
            }
            NoSession::Failed(failure) => super::error_page(console, None, &failure),
        }
    }
}

/// The fixed messages the login page shows (never text from the query string).
fn login_message(reason: &str) -> Option<(&'static str, &'static str)> {
    Some(match reason {
        "required" => ("info", "Log in to use the console."),
        "expired" => ("error", "Your session has expired: log in again."),
        "revoked" => (
            "error",
            "Your session is no longer valid (logged out or revoked): log in again.",
        ),
        "loggedout" => ("info", "You are logged out."),
        _ => return None,
    })
}

/// Only console paths: never an open redirect to another site.
fn safe_next(next: Option<&String>) -> String {
    next.filter(|n| n.starts_with("/console/") && !n.starts_with("//") && !n.contains('\\'))
        .cloned()
        .unwrap_or_else(|| "/console/jobs".to_string())
}

fn login_page(
    console: &ConsoleState,
    notice: Option<(&str, &str)>,
    next: &str,
    login: &str,
) -> String {
    let mut body = String::from("<section class=\"login\"><h1>Log in to porch</h1>");
    if let Some((kind, text)) = notice {
        body.push_str(&html::notice(kind, text));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/console/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>Login <input name=\"login\" autocomplete=\"username\" required autofocus value=\"{}\"></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Log in</button></form>\
         <p class=\"hint\">A porch user (<code>porch access login</code> uses the same account).</p></section>",
        html::escape(next),
        html::escape(login),
    ));
    html::page(
        &Shell {
            title: "Log in",
            tab: Tab::None,
            user: None,
            csrf: None,
            members: &[],
            node_id: console.consensus.id,
        },
        &body,
    )
}

pub async fn login_form(
    State(console): State<Arc<ConsoleState>>,
    axum::extract::Query(params): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    let notice = params.get("m").and_then(|m| login_message(m));
    let next = safe_next(params.get("next"));
    axum::response::Html(login_page(&console, notice, &next, "")).into_response()
}

/// Reads an `application/x-www-form-urlencoded` body (bounded).
pub async fn form_of(
    request: Request,
    bytes_max: usize,
) -> Result<BTreeMap<String, String>, Response> {
    let body = axum::body::to_bytes(request.into_body(), bytes_max)
        .await
        .map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response())?;
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("unreadable form: {e}")).into_response())
}

pub async fn login(State(console): State<Arc<ConsoleState>>, request: Request) -> Response {
    if !origin_allowed(&console, request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            "a login form from another site is refused",
        )
            .into_response();
    }
    let caller = Caller::from_request(String::new(), request.headers(), request.extensions());
    let form = match form_of(request, LOGIN_FORM_BYTES_MAX).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let next = safe_next(form.get("next"));
    let login = form.get("login").cloned().unwrap_or_default();
    // A token handed over by `porch dev` (the page's fragment, never sent in a URL).
    let token = if let Some(token) = form.get("token").filter(|t| !t.is_empty()) {
        let adopting = Caller {
            token: token.clone(),
            ..caller.clone()
        };
        match console
            .api
            .get(&adopting, "/rbac-api/v1/users/current")
            .await
        {
            Ok(_) => Ok(token.clone()),
            Err(failure) => Err(failure),
        }
    } else {
        let body = serde_json::json!({
            "login": login,
            "password": form.get("password").cloned().unwrap_or_default(),
            "lifetime": format!("{SESSION_SECONDS}s"),
            "label": "console",
        });
        console
            .api
            .post(&caller, "/rbac-api/v1/auth/token", &body, &[])
            .await
            .and_then(|answer| {
                answer["token"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiFailure {
                        status: StatusCode::INTERNAL_SERVER_ERROR,
                        kind: "porch.console/no-token".into(),
                        msg: "the login answered no token".into(),
                    })
            })
    };
    match token {
        Ok(token) => {
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                set_cookie(console.secure_cookie, &token, SESSION_SECONDS),
            );
            response
        }
        Err(failure) => {
            let status = if failure.is_unauthenticated() {
                StatusCode::UNAUTHORIZED
            } else {
                failure.status
            };
            let page = login_page(&console, Some(("error", &failure.msg)), &next, &login);
            (status, axum::response::Html(page)).into_response()
        }
    }
}

/// Revokes the session's token (so a copied cookie is worthless too) and clears the cookie.
pub async fn logout(State(console): State<Arc<ConsoleState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts.clone(), body);
    let Some(token) = token_in(&parts.headers, console.secure_cookie) else {
        return Redirect::to("/console/login?m=loggedout").into_response();
    };
    let form = match form_of(request, LOGIN_FORM_BYTES_MAX).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let caller = Caller::from_request(token.clone(), &parts.headers, &parts.extensions);
    let session = Session {
        caller,
        login: String::new(),
        csrf: csrf_of(&token),
    };
    if let Err(response) = session.check_post(&console, &parts.headers, &form) {
        return response;
    }
    let path = format!("/rbac-api/v2/tokens/{}", html::url_component(&token));
    // Revoking an expired or unknown token has nothing to do: the cookie goes either way.
    let _ = console.api.delete(&session.caller, &path).await;
    let mut response = Redirect::to("/console/login?m=loggedout").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(console.secure_cookie, "", 0));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-porch-session=abc.def; b=2"),
        );
        assert_eq!(token_in(&headers, true).as_deref(), Some("abc.def"));
        assert_eq!(token_in(&headers, false), None);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let cookie = set_cookie(true, "t", 60);
        let text = cookie.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Strict"));
        assert!(text.contains("; Secure") && text.starts_with("__Host-"));
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_are_checked_exactly() {
        assert_ne!(csrf_of("a.1"), csrf_of("a.2"));
        assert!(csrf_matches("a.1", &csrf_of("a.1")));
        assert!(!csrf_matches("a.1", &csrf_of("a.2")));
        assert!(!csrf_matches("a.1", ""));
    }

    #[test]
    fn the_next_page_after_login_stays_in_the_console() {
        assert_eq!(
            safe_next(Some(&"/console/jobs/3".into())),
            "/console/jobs/3"
        );
        assert_eq!(
            safe_next(Some(&"https://evil.example/".into())),
            "/console/jobs"
        );
        assert_eq!(
            safe_next(Some(&"//evil.example/console/".into())),
            "/console/jobs"
        );
        assert_eq!(safe_next(None), "/console/jobs");
    }
}
