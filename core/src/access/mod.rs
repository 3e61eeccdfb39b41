//! Users, roles and tokens as the replicated state holds them, and the checks made on them.
//!
//! Secrets never enter the state: a password is kept as its argon2 hash (computed by the node
//! that received it, since hashing draws a salt), a token as the SHA-256 of its secret part.
//! Token expiry is leader-stamped time: `issued_ms` and `expires_ms` come from the entry that
//! issued it. `apply` re-checks the token of every command that carries one, so once a
//! revocation is committed no later command made with that token applies, on any node.

mod apply;
pub mod permission;

use crate::job::Target;
use permission::{Action, Permission};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Tokens kept at most, over all users; the oldest-expiring go first beyond it.
pub const TOKENS_MAX: usize = 100_000;
/// Tokens one user may hold at once; issuing another drops that user's oldest.
pub const TOKENS_PER_USER_MAX: usize = 1_000;
/// An expired token is kept this long so its use is answered "expired", not "invalid".
pub const EXPIRED_TOKEN_KEPT_MS: u64 = 24 * 3600 * 1000;
/// Longest token lifetime a login may ask for (PE's default maximum is 10 years; porch is
/// stricter: a forgotten token should die within a year).
pub const TOKEN_LIFETIME_MAX_MS: u64 = 366 * 24 * 3600 * 1000;
pub const USERS_MAX: usize = 10_000;
pub const ROLES_MAX: usize = 1_000;

/// The built-in roles every cluster starts with.
pub const VIEWER: &str = "viewer";
pub const OPERATOR: &str = "operator";
pub const ADMIN: &str = "admin";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// A UUID, drawn by the node that created the user; stable across renames and restores.
    pub id: String,
    pub login: String,
    pub display_name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    pub roles: BTreeSet<String>,
    pub created_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub permissions: Vec<Permission>,
    pub builtin: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    /// SHA-256 of the token's secret part.
    pub secret_sha256: [u8; 32],
    pub user_id: String,
    pub issued_ms: u64,
    pub expires_ms: u64,
    pub revoked: bool,
    pub label: Option<String>,
}

/// Why a token or a user was not accepted. Facts only: words are chosen at read time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum AccessRefusal {
    #[error("no token was given")]
    NoToken,
    #[error("the token is not valid")]
    InvalidToken,
    #[error("the token has expired")]
    TokenExpired,
    #[error("the token has been revoked")]
    TokenRevoked,
    #[error("wrong login or password")]
    AuthenticationFailed,
    #[error("permission denied: {action}")]
    PermissionDenied { action: DeniedAction },
}

/// Why a change to users, roles or tokens was refused, as facts (refusals are kept in the
/// audit log, in the replicated state); the words come from `Display` when read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum AccessError {
    #[error("access control is already set up")]
    AlreadySetUp,
    #[error("login {login:?}: 1-64 letters, digits, '.', '_', '-' or '@'")]
    BadLogin { login: String },
    #[error("a user with login {login:?} exists")]
    LoginTaken { login: String },
    #[error("user id {id:?} is taken or empty")]
    UserIdTaken { id: String },
    #[error("at most {USERS_MAX} users")]
    TooManyUsers,
    #[error("no role named {name:?}")]
    NoSuchRole { name: String },
    #[error("no user with login {login:?}")]
    NoSuchUser { login: String },
    #[error("{login:?} is the last admin: give another user the admin role first")]
    LastAdmin { login: String },
    #[error("user index out of step")]
    IndexOutOfStep,
    #[error("role name {name:?}: 1-64 letters, digits, '.', '_', '-' or '@'")]
    BadRoleName { name: String },
    #[error("a role named {name:?} exists")]
    RoleTaken { name: String },
    #[error("at most {ROLES_MAX} roles")]
    TooManyRoles,
    #[error("{name:?} is a built-in role")]
    BuiltinRole { name: String },
    #[error("role {name:?} is held by {login:?}: take it away first")]
    RoleHeld { name: String, login: String },
    #[error("the user no longer exists")]
    UserGone,
    #[error("token id taken")]
    TokenIdTaken,
    #[error("unknown token (it may have expired long ago)")]
    UnknownToken,
    #[error("not an access command")]
    NotAnAccessCommand,
}

/// What a refused caller asked to do, as facts (the audit log keeps refusals in the
/// replicated state); [`std::fmt::Display`] words it when read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeniedAction {
    View,
    Admin,
    Run {
        environment: String,
        application: Option<String>,
        /// The first [`DENIED_NODES_KEPT`] planned nodes, and how many more there were.
        nodes: Vec<String>,
        more_nodes: u64,
    },
    RunTask {
        environment: String,
        task: String,
        nodes: Vec<String>,
        more_nodes: u64,
    },
}

/// Planned nodes a refusal names (a job may plan thousands).
pub const DENIED_NODES_KEPT: usize = 5;

impl DeniedAction {
    fn of(action: &Action<'_>) -> DeniedAction {
        match action {
            Action::View => DeniedAction::View,
            Action::Admin => DeniedAction::Admin,
            Action::Run {
                environment,
                target,
                nodes,
            } => DeniedAction::Run {
                environment: environment.to_string(),
                application: match target {
                    Target::Application(app) => Some(app.clone()),
                    _ => None,
                },
                nodes: nodes
                    .iter()
                    .take(DENIED_NODES_KEPT)
                    .map(|n| n.to_string())
                    .collect(),
                more_nodes: nodes.len().saturating_sub(DENIED_NODES_KEPT) as u64,
            },
            Action::RunTask {
                environment,
                task,
                nodes,
            } => DeniedAction::RunTask {
                environment: environment.to_string(),
                task: task.to_string(),
                nodes: nodes
                    .iter()
                    .take(DENIED_NODES_KEPT)
                    .map(|n| n.to_string())
                    .collect(),
                more_nodes: nodes.len().saturating_sub(DENIED_NODES_KEPT) as u64,
            },
        }
    }
}

impl std::fmt::Display for DeniedAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeniedAction::View => f.write_str("view"),
            DeniedAction::Admin => f.write_str("admin"),
            DeniedAction::Run {
                environment,
                application,
                nodes,
                more_nodes,
            } => {
                write!(f, "run in environment {environment}")?;
                if let Some(app) = application {
                    write!(f, " application {app}")?;
                }
                write!(f, " on {}", nodes.join(", "))?;
                if *more_nodes > 0 {
                    write!(f, " and {more_nodes} more")?;
                }
                Ok(())
            }
            DeniedAction::RunTask {
                environment,
                task,
                nodes,
                more_nodes,
            } => {
                write!(
                    f,
                    "run_task {task} in environment {environment} on {}",
                    nodes.join(", ")
                )?;
                if *more_nodes > 0 {
                    write!(f, " and {more_nodes} more")?;
                }
                Ok(())
            }
        }
    }
}

/// Who did something, as the audit log and job owners name them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    pub login: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessState {
    /// By id.
    users: BTreeMap<String, User>,
    /// Login -> id.
    logins: BTreeMap<String, String>,
    roles: BTreeMap<String, Role>,
    tokens: BTreeMap<String, Token>,
}

/// A user as a command carries it (the id and password hash are drawn outside `apply`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    pub id: String,
    pub login: String,
    pub display_name: String,
    pub password_hash: String,
    pub roles: Vec<String>,
}

/// A login or role name: 1-64 letters, digits, `.`, `_`, `-` or `@`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

impl AccessState {
    pub fn is_bootstrapped(&self) -> bool {
        !self.users.is_empty()
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    pub fn user_by_login(&self, login: &str) -> Option<&User> {
        self.logins.get(login).and_then(|id| self.users.get(id))
    }

    pub fn token(&self, id: &str) -> Option<&Token> {
        self.tokens.get(id)
    }

    pub fn tokens_of<'a>(&'a self, user_id: &'a str) -> impl Iterator<Item = &'a Token> {
        self.tokens.values().filter(move |t| t.user_id == user_id)
    }

    /// The user a token stands for at `now_ms`, if the token is known, unrevoked, unexpired
    /// and its user still exists. The secret is checked by the caller (`verify_secret`).
    pub fn token_user(&self, token_id: &str, now_ms: u64) -> Result<&User, AccessRefusal> {
        let token = self
            .tokens
            .get(token_id)
            .ok_or(AccessRefusal::InvalidToken)?;
        if token.revoked {
            return Err(AccessRefusal::TokenRevoked);
        }
        if token.expires_ms <= now_ms {
            return Err(AccessRefusal::TokenExpired);
        }
        self.users
            .get(&token.user_id)
            .ok_or(AccessRefusal::InvalidToken)
    }

    /// Whether `user` may do `action`: the union of its roles' permissions.
    pub fn authorize(&self, user: &User, action: &Action<'_>) -> Result<(), AccessRefusal> {
        let granted = user
            .roles
            .iter()
            .filter_map(|name| self.roles.get(name))
            .flat_map(|role| role.permissions.iter());
        if permission::allows(granted, action) {
            Ok(())
        } else {
            Err(AccessRefusal::PermissionDenied {
                action: DeniedAction::of(action),
            })
        }
    }

    /// Creates the built-in roles and the first admin. Only on an empty user table: a second
    /// bootstrap (a restarted initialiser, a replayed entry) changes nothing.
    pub fn bootstrap(&mut self, admin: NewUser, now_ms: u64) -> Result<(), AccessError> {
        if self.is_bootstrapped() {
            return Err(AccessError::AlreadySetUp);
        }
        for role in builtin_roles() {
            self.roles.insert(role.name.clone(), role);
        }
        self.add_user(admin, now_ms)
    }

    pub fn add_user(&mut self, new: NewUser, now_ms: u64) -> Result<(), AccessError> {
        if !valid_name(&new.login) {
            return Err(AccessError::BadLogin { login: new.login });
        }
        if self.logins.contains_key(&new.login) {
            return Err(AccessError::LoginTaken { login: new.login });
        }
        if self.users.contains_key(&new.id) || new.id.is_empty() {
            return Err(AccessError::UserIdTaken { id: new.id });
        }
        if self.users.len() >= USERS_MAX {
            return Err(AccessError::TooManyUsers);
        }
        self.check_roles_exist(&new.roles)?;
        self.logins.insert(new.login.clone(), new.id.clone());
        self.users.insert(
            new.id.clone(),
            User {
                id: new.id,
                login: new.login,
                display_name: new.display_name,
                password_hash: new.password_hash,
                roles: new.roles.into_iter().collect(),
                created_ms: now_ms,
            },
        );
        Ok(())
    }

    fn check_roles_exist(&self, roles: &[String]) -> Result<(), AccessError> {
        match roles.iter().find(|r| !self.roles.contains_key(*r)) {
            Some(missing) => Err(AccessError::NoSuchRole {
                name: missing.clone(),
            }),
            None => Ok(()),
        }
    }

    pub fn update_user(
        &mut self,
        login: &str,
        password_hash: Option<String>,
        roles: Option<Vec<String>>,
    ) -> Result<(), AccessError> {
        if let Some(roles) = &roles {
            self.check_roles_exist(roles)?;
        }
        let id = self
            .logins
            .get(login)
            .ok_or_else(|| AccessError::NoSuchUser {
                login: login.to_string(),
            })?
            .clone();
        if let Some(roles) = &roles
            && !roles.iter().any(|r| r == ADMIN)
            && self.is_last_admin(&id)
        {
            return Err(AccessError::LastAdmin {
                login: login.to_string(),
            });
        }
        let user = self.users.get_mut(&id).ok_or(AccessError::IndexOutOfStep)?;
        if let Some(hash) = password_hash {
            user.password_hash = hash;
        }
        if let Some(roles) = roles {
            user.roles = roles.into_iter().collect();
        }
        Ok(())
    }

    fn is_last_admin(&self, id: &str) -> bool {
        let admins: Vec<&User> = self
            .users
            .values()
            .filter(|u| u.roles.contains(ADMIN))
            .collect();
        admins.len() == 1 && admins[0].id == id
    }

    /// Removes the user and every token it holds.
    pub fn remove_user(&mut self, login: &str) -> Result<(), AccessError> {
        let id = self
            .logins
            .get(login)
            .ok_or_else(|| AccessError::NoSuchUser {
                login: login.to_string(),
            })?
            .clone();
        if self.is_last_admin(&id) {
            return Err(AccessError::LastAdmin {
                login: login.to_string(),
            });
        }
        self.logins.remove(login);
        self.users.remove(&id);
        self.tokens.retain(|_, t| t.user_id != id);
        Ok(())
    }

    pub fn add_role(&mut self, mut role: Role) -> Result<(), AccessError> {
        if !valid_name(&role.name) {
            return Err(AccessError::BadRoleName { name: role.name });
        }
        if self.roles.contains_key(&role.name) {
            return Err(AccessError::RoleTaken { name: role.name });
        }
        if self.roles.len() >= ROLES_MAX {
            return Err(AccessError::TooManyRoles);
        }
        role.builtin = false;
        self.roles.insert(role.name.clone(), role);
        Ok(())
    }

    pub fn remove_role(&mut self, name: &str) -> Result<(), AccessError> {
        match self.roles.get(name) {
            None => {
                return Err(AccessError::NoSuchRole {
                    name: name.to_string(),
                });
            }
            Some(role) if role.builtin => {
                return Err(AccessError::BuiltinRole {
                    name: name.to_string(),
                });
            }
            Some(_) => {}
        }
        if let Some(user) = self.users.values().find(|u| u.roles.contains(name)) {
            return Err(AccessError::RoleHeld {
                name: name.to_string(),
                login: user.login.clone(),
            });
        }
        self.roles.remove(name);
        Ok(())
    }

    pub fn issue_token(&mut self, token: Token) -> Result<(), AccessError> {
        if !self.users.contains_key(&token.user_id) {
            return Err(AccessError::UserGone);
        }
        if self.tokens.contains_key(&token.id) {
            return Err(AccessError::TokenIdTaken);
        }
        let now_ms = token.issued_ms;
        self.tokens
            .retain(|_, t| t.expires_ms.saturating_add(EXPIRED_TOKEN_KEPT_MS) > now_ms);
        let mut held: Vec<(u64, String)> = self
            .tokens_of(&token.user_id)
            .map(|t| (t.issued_ms, t.id.clone()))
            .collect();
        held.sort();
        while held.len() >= TOKENS_PER_USER_MAX {
            let (_, oldest) = held.remove(0);
            self.tokens.remove(&oldest);
        }
        while self.tokens.len() >= TOKENS_MAX {
            let Some(first) = self
                .tokens
                .values()
                .min_by_key(|t| (t.expires_ms, t.id.clone()))
                .map(|t| t.id.clone())
            else {
                break;
            };
            self.tokens.remove(&first);
        }
        self.tokens.insert(token.id.clone(), token);
        Ok(())
    }

    pub fn revoke_token(&mut self, token_id: &str) -> Result<(), AccessError> {
        let token = self
            .tokens
            .get_mut(token_id)
            .ok_or(AccessError::UnknownToken)?;
        token.revoked = true;
        Ok(())
    }
}

pub fn builtin_roles() -> Vec<Role> {
    vec![
        Role {
            name: VIEWER.into(),
            description: "View jobs, inventory, environments and cluster status".into(),
            permissions: vec![Permission::View],
            builtin: true,
        },
        Role {
            name: OPERATOR.into(),
            description: "Run and stop jobs and tasks on any node, in any environment".into(),
            permissions: vec![
                Permission::View,
                Permission::Run {
                    environments: vec![],
                    nodes: vec![],
                    applications: vec![],
                },
                Permission::RunTask {
                    environments: vec![],
                    nodes: vec![],
                    tasks: vec![],
                },
            ],
            builtin: true,
        },
        Role {
            name: ADMIN.into(),
            description: "Everything: cluster membership, users, roles, tokens, audit".into(),
            permissions: vec![Permission::Admin],
            builtin: true,
        },
    ]
}
