//! Who is calling: the `X-Authentication` token checked against the applied state, as an
//! axum middleware that puts a [`Principal`] in the request, and the permission check handlers
//! make with it. Every refusal is answered in PE's words and queued for the audit log.

use crate::access::credentials::{parse_token, secret_matches};
use crate::api::ApiState;
use crate::api::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use porch_core::access::permission::Action;
use porch_core::access::{AccessRefusal, Actor};
use porch_core::audit::{AuditAction, AuditRecord, AuditResult};
use porch_core::{ClusterState, Origin};
use porch_tls::PeerInfo;
use std::sync::Arc;

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub actor: Actor,
    pub token_id: String,
    /// `<client address> via node <id>`.
    pub source: String,
    /// `METHOD /path`, for the audit record of a refusal.
    pub request_line: String,
}

impl Principal {
    /// What a command made on this caller's behalf carries to `apply`.
    pub fn origin(&self) -> Origin {
        Origin {
            token_id: self.token_id.clone(),
            source: self.source.clone(),
        }
    }

    /// Whether the caller may do `action` now (its roles as currently applied). `apply`
    /// checks commands again; this answers early and covers reads.
    pub fn require(&self, state: &ApiState, action: &Action<'_>) -> Result<(), ApiError> {
        let decision = {
            let view = state.consensus.view.read();
            let access = view.cluster.access();
            match access.user(&self.actor.id) {
                Some(user) => access.authorize(user, action),
                None => Err(AccessRefusal::InvalidToken),
            }
        };
        decision.map_err(|refusal| {
            state.audit.record(AuditRecord {
                actor: Some(self.actor.clone()),
                source: self.source.clone(),
                action: AuditAction::Request,
                target: self.request_line.clone(),
                result: AuditResult::Refused(refusal.clone()),
            });
            refusal_error(&refusal, Some(&self.actor))
        })
    }
}

/// The client's address as this node saw it, and this node.
pub fn source_of(request: &Request, node_id: u64) -> String {
    match request.extensions().get::<ConnectInfo<PeerInfo>>() {
        Some(ConnectInfo(peer)) => format!("{} via node {node_id}", peer.remote),
        None => format!("unknown address via node {node_id}"),
    }
}

/// PE's error for a refusal.
pub fn refusal_error(refusal: &AccessRefusal, actor: Option<&Actor>) -> ApiError {
    use axum::http::StatusCode;
    let (status, kind, msg) = match refusal {
        AccessRefusal::NoToken => (
            StatusCode::UNAUTHORIZED,
            "puppetlabs.rbac/user-unauthenticated",
            "Route requires authentication: send a token in X-Authentication (puppet-access login)"
                .to_string(),
        ),
        AccessRefusal::InvalidToken => (
            StatusCode::UNAUTHORIZED,
            "puppetlabs.rbac/invalid-token",
            "The provided token is not valid".to_string(),
        ),
        AccessRefusal::TokenExpired => (
            StatusCode::UNAUTHORIZED,
            "puppetlabs.rbac/token-expired",
            "The provided token has expired: log in again (puppet-access login)".to_string(),
        ),
        AccessRefusal::TokenRevoked => (
            StatusCode::UNAUTHORIZED,
            "puppetlabs.rbac/token-revoked",
            "The provided token has been revoked: log in again (puppet-access login)".to_string(),
        ),
        AccessRefusal::AuthenticationFailed => (
            StatusCode::UNAUTHORIZED,
            "puppetlabs.rbac/authentication-failed",
            "The login or password is incorrect".to_string(),
        ),
        AccessRefusal::PermissionDenied { action: permission } => (
            StatusCode::FORBIDDEN,
            "puppetlabs.rbac/permission-denied",
            match actor {
                Some(actor) => format!(
                    "User '{}' does not have the permission to {permission}",
                    actor.login
                ),
                None => format!("Permission denied: {permission}"),
            },
        ),
    };
    ApiError::kind(status, kind, msg)
}

/// Looks the token up in the applied state; one that is unknown here may have been issued a
/// moment ago through another node, so an unknown token waits for a read barrier once.
async fn authenticate(
    state: &ApiState,
    token: Option<&str>,
) -> Result<(Actor, String), (AccessRefusal, Option<Actor>)> {
    let Some(token) = token else {
        return Err((AccessRefusal::NoToken, None));
    };
    let presented = parse_token(token).map_err(|r| (r, None))?;
    let lookup = |cluster: &ClusterState,
                  now_ms: u64|
     -> Option<Result<Actor, (AccessRefusal, Option<Actor>)>> {
        let access = cluster.access();
        let stored = access.token(&presented.id)?;
        if !secret_matches(&stored.secret_sha256, &presented.secret_sha256) {
            return Some(Err((AccessRefusal::InvalidToken, None)));
        }
        let owner = access.user(&stored.user_id).map(|u| Actor {
            id: u.id.clone(),
            login: u.login.clone(),
        });
        Some(
            access
                .token_user(&presented.id, now_ms.max(cluster.clock_ms()))
                .map(|user| Actor {
                    id: user.id.clone(),
                    login: user.login.clone(),
                })
                .map_err(|refusal| (refusal, owner)),
        )
    };
    let now_ms = state.consensus.clock().now_ms();
    let found = lookup(&state.consensus.view.read().cluster, now_ms);
    let found = match found {
        Some(found) => found,
        None => {
            if state.consensus.read_barrier().await.is_err() {
                return Err((AccessRefusal::InvalidToken, None));
            }
            lookup(&state.consensus.view.read().cluster, now_ms)
                .unwrap_or(Err((AccessRefusal::InvalidToken, None)))
        }
    };
    found.map(|actor| (actor, presented.id))
}

/// Whether a token already authenticated is still valid in this node's applied state now.
fn still_valid(state: &ApiState, token_id: &str) -> Result<(), AccessRefusal> {
    still_valid_token(&state.consensus, token_id)
}

/// [`still_valid`] for callers holding only the consensus handle (the console's live views
/// re-check their session on every step).
pub fn still_valid_token(
    consensus: &crate::consensus::Consensus,
    token_id: &str,
) -> Result<(), AccessRefusal> {
    let now_ms = consensus.clock().now_ms();
    let view = consensus.view.read();
    let cluster = &view.cluster;
    cluster
        .access()
        .token_user(token_id, now_ms.max(cluster.clock_ms()))
        .map(|_| ())
}

/// Middleware for every route that needs a token.
pub async fn require_token(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let source = source_of(&request, state.consensus.id);
    let request_line = format!("{} {}", request.method(), request.uri().path());
    let header = request
        .headers()
        .get("x-authentication")
        .map(|value| value.to_str().unwrap_or("\u{0}"));
    match authenticate(&state, header).await {
        Ok((actor, token_id)) => {
            let principal = Principal {
                actor,
                token_id,
                source,
                request_line,
            };
            request.extensions_mut().insert(principal.clone());
            let response = next.run(request).await;
            // The token was checked against this node's applied state, which may lag a
            // revocation acknowledged through another node a moment ago. Handlers reading the
            // state pass a read barrier first (and `apply` re-checks writes), after which this
            // node has applied every write acknowledged before the request began: checked
            // again now, a token revoked by then is refused instead of answered.
            match still_valid(&state, &principal.token_id) {
                Ok(()) => response,
                Err(refusal) => {
                    state.audit.record(AuditRecord {
                        actor: Some(principal.actor.clone()),
                        source: principal.source,
                        action: AuditAction::Request,
                        target: principal.request_line,
                        result: AuditResult::Refused(refusal.clone()),
                    });
                    refusal_error(&refusal, Some(&principal.actor)).into_response()
                }
            }
        }
        Err((refusal, actor)) => {
            state.audit.record(AuditRecord {
                actor: actor.clone(),
                source,
                action: AuditAction::Request,
                target: request_line,
                result: AuditResult::Refused(refusal.clone()),
            });
            refusal_error(&refusal, actor.as_ref()).into_response()
        }
    }
}

/// Middleware for routes that show the cluster's state: any role grants it.
pub async fn require_view(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return refusal_error(&AccessRefusal::NoToken, None).into_response();
    };
    match principal.require(&state, &Action::View) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}
