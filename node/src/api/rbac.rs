//! PE's RBAC API, as much of it as porch needs, served on every node under `/rbac-api`:
//! logins that issue tokens (`puppet-access login` speaks to `POST /v1/auth/token`), token
//! revocation, the current user, and porch's user and role administration (admin only).

use super::ApiState;
use super::error::ApiError;
use crate::access::credentials::{
    PASSWORD_BYTES_MAX, decoy_hash, hash_password, new_token, new_user_id, parse_token,
    secret_matches, verify_password,
};
use crate::access::principal::{Principal, refusal_error, source_of};
use crate::clock::format_time_ms;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use porch_core::access::permission::{Action, Permission};
use porch_core::access::{AccessRefusal, NewUser, Role, User};
use porch_core::audit::{AuditAction, AuditRecord, AuditResult};
use porch_core::{Command, Origin, Outcome, Rejection};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Token lifetime when a login names none (PE's default is 1 hour).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

fn body_of<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::validation(format!("invalid request body (expected {expected}): {e}"))
    })
}

/// A rejected command in the API's words (`apply` has the last say on access).
fn outcome_error(outcome: Outcome, principal: Option<&Principal>) -> ApiError {
    match outcome {
        Outcome::Rejected(Rejection::Access(refusal)) => {
            refusal_error(&refusal, principal.map(|p| &p.actor))
        }
        Outcome::Rejected(Rejection::Invalid(why)) => ApiError::validation(why),
        Outcome::Rejected(Rejection::AccessChange(why)) => ApiError::validation(why.to_string()),
        other => ApiError::internal(format!("unexpected outcome: {other:?}")),
    }
}

fn user_view(user: &User) -> Value {
    json!({
        "id": user.id,
        "login": user.login,
        "display_name": user.display_name,
        "roles": user.roles,
        "is_revoked": false,
        "created": format_time_ms(user.created_ms),
    })
}

/// A permission as the API shows and takes it:
/// `{"permission": "run", "environments": [...], "nodes": [...], "applications": [...]}`.
#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct PermissionBody {
    permission: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    applications: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tasks: Vec<String>,
}

impl PermissionBody {
    fn of(permission: &Permission) -> PermissionBody {
        let body = |name: &str| PermissionBody {
            permission: name.into(),
            environments: vec![],
            nodes: vec![],
            applications: vec![],
            tasks: vec![],
        };
        match permission {
            Permission::View => body("view"),
            Permission::Admin => body("admin"),
            Permission::Run {
                environments,
                nodes,
                applications,
            } => PermissionBody {
                environments: environments.clone(),
                nodes: nodes.clone(),
                applications: applications.clone(),
                ..body("run")
            },
            Permission::RunTask {
                environments,
                nodes,
                tasks,
            } => PermissionBody {
                environments: environments.clone(),
                nodes: nodes.clone(),
                tasks: tasks.clone(),
                ..body("run_task")
            },
        }
    }

    fn into_permission(self) -> Result<Permission, ApiError> {
        let restrictions = [
            ("environments", &self.environments),
            ("nodes", &self.nodes),
            ("applications", &self.applications),
            ("tasks", &self.tasks),
        ];
        if let Some(bad) = restrictions
            .iter()
            .flat_map(|(_, values)| values.iter())
            .find(|p| p.is_empty() || p.len() > 255)
        {
            return Err(ApiError::validation(format!(
                "permission restriction {bad:?} must be 1-255 bytes"
            )));
        }
        // Which restrictions each permission takes; any other given is an error naming it.
        let takes: &[&str] = match self.permission.as_str() {
            "run" => &["environments", "nodes", "applications"],
            "run_task" => &["environments", "nodes", "tasks"],
            "view" | "admin" => &[],
            other => {
                return Err(ApiError::validation(format!(
                    "unknown permission {other:?}: expected view, run, run_task or admin"
                )));
            }
        };
        if let Some((field, _)) = restrictions
            .iter()
            .find(|(field, values)| !values.is_empty() && !takes.contains(field))
        {
            return Err(ApiError::validation(format!(
                "the {:?} permission does not take {field}",
                self.permission
            )));
        }
        Ok(match self.permission.as_str() {
            "run" => Permission::Run {
                environments: self.environments,
                nodes: self.nodes,
                applications: self.applications,
            },
            "run_task" => Permission::RunTask {
                environments: self.environments,
                nodes: self.nodes,
                tasks: self.tasks,
            },
            "view" => Permission::View,
            _ => Permission::Admin,
        })
    }
}

fn role_view(role: &Role) -> Value {
    json!({
        "name": role.name,
        "description": role.description,
        "permissions": role.permissions.iter().map(PermissionBody::of).collect::<Vec<_>>(),
        "builtin": role.builtin,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    login: String,
    password: String,
    #[serde(default)]
    lifetime: Option<Value>,
    #[serde(default)]
    label: Option<String>,
    /// Sent by PE's clients; porch keeps no client names.
    #[serde(default)]
    #[allow(dead_code)]
    client: Option<String>,
}

/// `"1h"`, `"30m"`, `"2d"`, `"1y"`, or a number of seconds.
fn parse_lifetime(value: Option<&Value>) -> Result<Duration, ApiError> {
    let lifetime = match value {
        None | Some(Value::Null) => return Ok(DEFAULT_TOKEN_LIFETIME),
        Some(Value::Number(n)) => n.as_u64().map(Duration::from_secs).ok_or_else(|| {
            ApiError::validation("'lifetime' must be a positive number of seconds")
        })?,
        Some(Value::String(text)) => humantime::parse_duration(text).map_err(|e| {
            ApiError::validation(format!(
                "'lifetime' {text:?}: {e} (e.g. \"1h\", \"30m\", \"2d\")"
            ))
        })?,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "'lifetime' must be a duration like \"1h\", found {other}"
            )));
        }
    };
    let max = Duration::from_millis(porch_core::access::TOKEN_LIFETIME_MAX_MS);
    if lifetime.is_zero() || lifetime > max {
        return Err(ApiError::validation(format!(
            "'lifetime' must be between 1 second and {}",
            humantime::format_duration(max)
        )));
    }
    Ok(lifetime)
}

/// `POST /rbac-api/v1/auth/token`: a login and password for a token.
pub async fn login(
    State(state): State<Arc<ApiState>>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let source = source_of(&request, state.consensus.id);
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|e| ApiError::validation(format!("cannot read the request body: {e}")))?;
    let body: LoginBody = body_of(
        &body,
        r#"{"login": "...", "password": "...", "lifetime": "1h"}"#,
    )?;
    if body.password.len() > PASSWORD_BYTES_MAX || body.login.len() > 255 {
        return Err(ApiError::validation("login or password too long"));
    }
    let lifetime = parse_lifetime(body.lifetime.as_ref())?;
    state.consensus.read_barrier().await?;
    let (user_id, hash) = {
        let view = state.consensus.view.read();
        match view.cluster.access().user_by_login(&body.login) {
            Some(user) => (Some(user.id.clone()), user.password_hash.clone()),
            None => (None, decoy_hash().to_string()),
        }
    };
    let password = body.password;
    let matches = crate::blocking::off_the_runtime(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let user_id = match (user_id, matches) {
        (Some(id), true) => id,
        _ => {
            state.audit.record(AuditRecord {
                actor: None,
                source,
                action: AuditAction::TokenIssue,
                target: format!("login {}", body.login),
                result: AuditResult::Refused(AccessRefusal::AuthenticationFailed),
            });
            return Err(refusal_error(&AccessRefusal::AuthenticationFailed, None));
        }
    };
    let token = new_token().map_err(ApiError::internal)?;
    let command = Command::IssueToken {
        token_id: token.id.clone(),
        secret_sha256: token.secret_sha256,
        user_id,
        lifetime_ms: lifetime.as_millis() as u64,
        label: body.label.map(|l| l.chars().take(200).collect()),
        source,
    };
    match state.consensus.write(None, command).await? {
        Outcome::TokenIssued { .. } => Ok(Json(json!({"token": token.text}))),
        other => Err(outcome_error(other, None)),
    }
}

/// Revokes a token its holder presents (knowing the token is the authority to revoke it).
async fn revoke_presented(state: &ApiState, token: &str, source: String) -> Result<(), ApiError> {
    let presented = parse_token(token).map_err(|r| refusal_error(&r, None))?;
    state.consensus.read_barrier().await?;
    let known = {
        let view = state.consensus.view.read();
        view.cluster
            .access()
            .token(&presented.id)
            .is_some_and(|t| secret_matches(&t.secret_sha256, &presented.secret_sha256))
    };
    if !known {
        return Err(refusal_error(&AccessRefusal::InvalidToken, None));
    }
    let origin = Origin {
        token_id: presented.id.clone(),
        source,
    };
    let command = Command::RevokeToken {
        token_id: presented.id,
    };
    match state
        .consensus
        .write_on_behalf(None, command, Some(origin))
        .await?
    {
        Outcome::Done => Ok(()),
        // Revoking a token that is already revoked or expired leaves it so: done.
        Outcome::Rejected(Rejection::Access(
            AccessRefusal::TokenRevoked | AccessRefusal::TokenExpired,
        )) => Ok(()),
        other => Err(outcome_error(other, None)),
    }
}

/// `DELETE /rbac-api/v2/tokens/{token}`.
pub async fn revoke_one(
    State(state): State<Arc<ApiState>>,
    Path(token): Path<String>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let source = source_of(&request, state.consensus.id);
    revoke_presented(&state, &token, source).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    revoke_tokens: Vec<String>,
}

/// `POST /rbac-api/v2/tokens` with `{"revoke_tokens": [...]}`.
pub async fn revoke_many(
    State(state): State<Arc<ApiState>>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let source = source_of(&request, state.consensus.id);
    let body = axum::body::to_bytes(request.into_body(), 256 * 1024)
        .await
        .map_err(|e| ApiError::validation(format!("cannot read the request body: {e}")))?;
    let body: RevokeBody = body_of(&body, r#"{"revoke_tokens": ["..."]}"#)?;
    if body.revoke_tokens.len() > 1000 {
        return Err(ApiError::validation("at most 1000 tokens per request"));
    }
    for token in &body.revoke_tokens {
        revoke_presented(&state, token, source.clone()).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn current_user(
    State(state): State<Arc<ApiState>>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let view = state.consensus.view.read();
    let user = view
        .cluster
        .access()
        .user(&principal.actor.id)
        .ok_or_else(|| refusal_error(&AccessRefusal::InvalidToken, None))?;
    Ok(Json(user_view(user)))
}

pub async fn list_users(
    State(state): State<Arc<ApiState>>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.require(&state, &Action::Admin)?;
    state.consensus.read_barrier().await?;
    let view = state.consensus.view.read();
    Ok(Json(Value::Array(
        view.cluster.access().users().map(user_view).collect(),
    )))
}

pub async fn list_roles(
    State(state): State<Arc<ApiState>>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.require(&state, &Action::Admin)?;
    state.consensus.read_barrier().await?;
    let view = state.consensus.view.read();
    Ok(Json(Value::Array(
        view.cluster.access().roles().map(role_view).collect(),
    )))
}

/// Commits an admin command on the principal's behalf; `apply` checks the permission again.
async fn admin_write(
    state: &ApiState,
    principal: &Principal,
    command: Command,
) -> Result<(), ApiError> {
    principal.require(state, &Action::Admin)?;
    match state
        .consensus
        .write_on_behalf(None, command, Some(principal.origin()))
        .await?
    {
        Outcome::Done => Ok(()),
        other => Err(outcome_error(other, Some(principal))),
    }
}

async fn hash_off_the_runtime(password: String) -> Result<String, ApiError> {
    if password.len() < 8 || password.len() > PASSWORD_BYTES_MAX {
        return Err(ApiError::validation(format!(
            "'password' must be 8 to {PASSWORD_BYTES_MAX} bytes"
        )));
    }
    crate::blocking::off_the_runtime(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::internal)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    login: String,
    password: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    display_name: Option<String>,
}

pub async fn add_user(
    State(state): State<Arc<ApiState>>,
    axum::Extension(principal): axum::Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(&state, &Action::Admin)?;
    let body: NewUserBody = body_of(
        &body,
        r#"{"login": "...", "password": "...", "roles": ["viewer"]}"#,
    )?;
    let password_hash = hash_off_the_runtime(body.password).await?;
    let user = NewUser {
        id: new_user_id(),
        display_name: body.display_name.unwrap_or_else(|| body.login.clone()),
        login: body.login.clone(),
        password_hash,
        roles: body.roles,
    };
    admin_write(&state, &principal, Command::AddUser { user }).await?;
    let view = state.consensus.view.read();
    let user = view
        .cluster
        .access()
        .user_by_login(&body.login)
        .ok_or_else(|| ApiError::internal("the new user is not in the applied state"))?;
    Ok((StatusCode::CREATED, Json(user_view(user))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserBody {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

pub async fn update_user(
    State(state): State<Arc<ApiState>>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(login): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: UpdateUserBody = body_of(&body, r#"{"password": "...", "roles": ["operator"]}"#)?;
    let own_password_only = login == principal.actor.login && body.roles.is_none();
    if !own_password_only {
        principal.require(&state, &Action::Admin)?;
    }
    let password_hash = match body.password {
        Some(password) => Some(hash_off_the_runtime(password).await?),
        None => None,
    };
    let command = Command::UpdateUser {
        login: login.clone(),
        password_hash,
        roles: body.roles,
    };
    match state
        .consensus
        .write_on_behalf(None, command, Some(principal.origin()))
        .await?
    {
        Outcome::Done => {}
        other => return Err(outcome_error(other, Some(&principal))),
    }
    let view = state.consensus.view.read();
    let user = view
        .cluster
        .access()
        .user_by_login(&login)
        .ok_or_else(|| ApiError::internal("the user is not in the applied state"))?;
    Ok(Json(user_view(user)))
}

pub async fn remove_user(
    State(state): State<Arc<ApiState>>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(login): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin_write(&state, &principal, Command::RemoveUser { login }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRoleBody {
    name: String,
    #[serde(default)]
    description: String,
    permissions: Vec<PermissionBody>,
    /// Shown in listings; ignored on input.
    #[serde(default)]
    #[allow(dead_code)]
    builtin: bool,
}

pub async fn add_role(
    State(state): State<Arc<ApiState>>,
    axum::Extension(principal): axum::Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: NewRoleBody = body_of(
        &body,
        r#"{"name": "...", "permissions": [{"permission": "run", "environments": ["production"]}]}"#,
    )?;
    if body.permissions.is_empty() || body.permissions.len() > 100 {
        return Err(ApiError::validation(
            "'permissions' must hold 1 to 100 permissions",
        ));
    }
    let permissions = body
        .permissions
        .into_iter()
        .map(PermissionBody::into_permission)
        .collect::<Result<Vec<_>, _>>()?;
    let command = Command::AddRole {
        name: body.name.clone(),
        description: body.description,
        permissions,
    };
    admin_write(&state, &principal, command).await?;
    let view = state.consensus.view.read();
    let role = view
        .cluster
        .access()
        .roles()
        .find(|r| r.name == body.name)
        .map(role_view)
        .ok_or_else(|| ApiError::internal("the new role is not in the applied state"))?;
    Ok((StatusCode::CREATED, Json(role)))
}

pub async fn remove_role(
    State(state): State<Arc<ApiState>>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin_write(&state, &principal, Command::RemoveRole { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}
