//! The simulation's users: an admin, an operator whose token submits and stops the jobs, and a
//! viewer whose submissions must all be refused. They are created through the log like any
//! cluster's (bootstrap, then commands made with the admin's token), with fixed ids and token
//! hashes so seeds replay exactly.

use porch_core::access::{NewUser, OPERATOR, VIEWER};
use porch_core::{Actor, Command, Origin, Outcome, Rejection};
use porch_node::consensus::Consensus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "sim-admin-token";
pub const OPERATOR_TOKEN: &str = "sim-operator-token";
pub const VIEWER_TOKEN: &str = "sim-viewer-token";
const TOKEN_LIFETIME_MS: u64 = 7 * 24 * 3600 * 1000;

/// Who a client acts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimUser {
    Operator,
    Viewer,
}

impl SimUser {
    pub fn actor(self) -> Actor {
        let (id, login) = match self {
            SimUser::Operator => ("00000000-0000-4000-8000-000000000002", "sim-operator"),
            SimUser::Viewer => ("00000000-0000-4000-8000-000000000003", "sim-viewer"),
        };
        Actor {
            id: id.into(),
            login: login.into(),
        }
    }

    pub fn origin(self, via_node: u64) -> Origin {
        Origin {
            token_id: match self {
                SimUser::Operator => OPERATOR_TOKEN,
                SimUser::Viewer => VIEWER_TOKEN,
            }
            .into(),
            source: format!("sim client via node {via_node}"),
        }
    }
}

fn user(actor: &Actor, role: &str) -> NewUser {
    NewUser {
        id: actor.id.clone(),
        login: actor.login.clone(),
        display_name: actor.login.clone(),
        password_hash: "$argon2id$sim".into(),
        roles: vec![role.into()],
    }
}

fn token(token_id: &str, user_id: &str) -> Command {
    Command::IssueToken {
        token_id: token_id.into(),
        secret_sha256: [0; 32],
        user_id: user_id.into(),
        lifetime_ms: TOKEN_LIFETIME_MS,
        label: None,
        source: "sim setup".into(),
    }
}

/// The setup, in order: (request id, command, made with the admin's token).
fn steps() -> Vec<(&'static str, Command, bool)> {
    let admin = NewUser {
        id: "00000000-0000-4000-8000-000000000001".into(),
        login: "admin".into(),
        display_name: "admin".into(),
        password_hash: "$argon2id$sim".into(),
        roles: vec![porch_core::access::ADMIN.into()],
    };
    let (operator, viewer) = (SimUser::Operator.actor(), SimUser::Viewer.actor());
    vec![
        (
            "sim-access-1",
            Command::BootstrapAccess {
                admin: admin.clone(),
            },
            false,
        ),
        ("sim-access-2", token(ADMIN_TOKEN, &admin.id), false),
        (
            "sim-access-3",
            Command::AddUser {
                user: user(&operator, OPERATOR),
            },
            true,
        ),
        (
            "sim-access-4",
            Command::AddUser {
                user: user(&viewer, VIEWER),
            },
            true,
        ),
        ("sim-access-5", token(OPERATOR_TOKEN, &operator.id), false),
        ("sim-access-6", token(VIEWER_TOKEN, &viewer.id), false),
    ]
}

/// The setup's progress: how many steps applied, and whether an attempt is under way.
#[derive(Default)]
pub struct Setup {
    applied: AtomicUsize,
    attempting: AtomicBool,
}

impl Setup {
    pub fn done(&self) -> bool {
        self.applied.load(Ordering::SeqCst) >= steps().len()
    }

    /// Tries the next step through `via` unless an attempt is under way. A step is retried
    /// under its request id until it applies (a step that already applied answers its first
    /// outcome again).
    pub fn attempt(self: &Arc<Self>, via: Arc<Consensus>) {
        if self.done() || self.attempting.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let index = this.applied.load(Ordering::SeqCst);
            if let Some((request_id, command, as_admin)) = steps().into_iter().nth(index) {
                let origin = as_admin.then(|| Origin {
                    token_id: ADMIN_TOKEN.into(),
                    source: format!("sim setup via node {}", via.id),
                });
                let reply = tokio::time::timeout(
                    Duration::from_secs(5),
                    via.write_on_behalf(Some(request_id.into()), command, origin),
                )
                .await;
                match reply {
                    Ok(Ok(Outcome::Rejected(Rejection::Access(refusal)))) => {
                        tracing::error!("sim access setup {request_id} refused: {refusal}");
                    }
                    Ok(Ok(_)) => {
                        this.applied.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
            this.attempting.store(false, Ordering::SeqCst);
        });
    }
}
