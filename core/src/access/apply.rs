//! How `apply` treats access: the user and role commands, token issue and revocation, and
//! commands made on a user's behalf — whose token and permission are checked here, against
//! the state the command applies to, and whose every attempt lands in the audit log.

use super::permission::Action;
use super::{AccessError, AccessRefusal, Actor, Role, Token, User};
use crate::audit::{AuditAction, AuditRecord, AuditResult};
use crate::command::{Command, Origin, Outcome, Rejection};
use crate::job::Target;
use crate::state::ClusterState;

impl ClusterState {
    /// A command made with a user's token: checked, applied, audited.
    pub(crate) fn apply_on_behalf(&mut self, command: Command, origin: Origin) -> Outcome {
        let (action, target) = audit_subject(&command);
        let user = match self.access.token_user(&origin.token_id, self.clock_ms) {
            Ok(user) => user.clone(),
            Err(refusal) => {
                let actor = self.token_actor(&origin.token_id);
                return self.refuse(actor, origin, action, target, refusal);
            }
        };
        let actor = Actor {
            id: user.id.clone(),
            login: user.login.clone(),
        };
        if let Err(refusal) = self.authorize_command(&user, &origin, &command) {
            return self.refuse(Some(actor), origin, action, target, refusal);
        }
        let command = match command {
            Command::SubmitJob {
                mut spec,
                plan,
                start_under_cap,
            } => {
                spec.owner = actor.clone();
                Command::SubmitJob {
                    spec,
                    plan,
                    start_under_cap,
                }
            }
            other => other,
        };
        let outcome = match command {
            Command::CreateSchedule { schedule, .. } => {
                self.create_schedule(schedule, actor.clone())
            }
            other => self.apply_command(other),
        };
        let target = match &outcome {
            Outcome::JobSubmitted { job_id, .. } => job_id.to_string(),
            Outcome::ScheduleCreated { schedule_id } => format!("schedule {schedule_id}"),
            _ => target,
        };
        let result = match &outcome {
            Outcome::Rejected(rejection) => AuditResult::Failed(rejection.clone()),
            _ => AuditResult::Ok,
        };
        self.audit.record(
            AuditRecord {
                actor: Some(actor),
                source: origin.source,
                action,
                target,
                result,
            },
            self.clock_ms,
        );
        outcome
    }

    fn token_actor(&self, token_id: &str) -> Option<Actor> {
        let token = self.access.token(token_id)?;
        let user = self.access.user(&token.user_id)?;
        Some(Actor {
            id: user.id.clone(),
            login: user.login.clone(),
        })
    }

    fn refuse(
        &mut self,
        actor: Option<Actor>,
        origin: Origin,
        action: AuditAction,
        target: String,
        refusal: AccessRefusal,
    ) -> Outcome {
        self.audit.record(
            AuditRecord {
                actor,
                source: origin.source,
                action,
                target,
                result: AuditResult::Refused(refusal.clone()),
            },
            self.clock_ms,
        );
        Outcome::Rejected(Rejection::Access(refusal))
    }

    /// The permission a command needs, checked with the one rule the API also uses.
    fn authorize_command(
        &self,
        user: &User,
        origin: &Origin,
        command: &Command,
    ) -> Result<(), AccessRefusal> {
        match command {
            Command::SubmitJob { spec, plan, .. } => {
                let nodes: Vec<&str> = plan.nodes().iter().map(|n| n.name.as_str()).collect();
                self.access.authorize(user, &Action::for_job(spec, &nodes))
            }
            Command::CreateSchedule { schedule, nodes } => {
                let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
                self.access
                    .authorize(user, &Action::for_job(&schedule.work.spec, &nodes))
            }
            // Unknown to the one who may see it, as for jobs.
            Command::DeleteSchedule { schedule_id }
                if self.schedules.get(*schedule_id).is_none() =>
            {
                self.access.authorize(user, &Action::View)
            }
            // Its owner, or an admin.
            Command::DeleteSchedule { schedule_id }
                if self
                    .schedules
                    .get(*schedule_id)
                    .is_some_and(|s| s.owner.id == user.id) =>
            {
                Ok(())
            }
            Command::StopJob { job_id } => match self.job(*job_id) {
                Some(job) => {
                    let nodes: Vec<&str> =
                        job.plan.nodes().iter().map(|n| n.name.as_str()).collect();
                    self.access
                        .authorize(user, &Action::for_job(&job.spec, &nodes))
                }
                // Unknown to the one who may see it: viewing is enough to learn it is unknown.
                None => self.access.authorize(user, &Action::View),
            },
            // Anyone may revoke the token they hold, or change their own password.
            Command::RevokeToken { token_id } if *token_id == origin.token_id => Ok(()),
            Command::RevokeToken { token_id }
                if self
                    .access
                    .token(token_id)
                    .is_some_and(|t| t.user_id == user.id) =>
            {
                Ok(())
            }
            Command::UpdateUser {
                login, roles: None, ..
            } if *login == user.login => Ok(()),
            _ => self.access.authorize(user, &Action::Admin),
        }
    }

    pub(crate) fn apply_access_command(&mut self, command: Command) -> Outcome {
        let now_ms = self.clock_ms;
        let result = match command {
            Command::BootstrapAccess { admin } => self.access.bootstrap(admin, now_ms),
            Command::AddUser { user } => self.access.add_user(user, now_ms),
            Command::UpdateUser {
                login,
                password_hash,
                roles,
            } => self.access.update_user(&login, password_hash, roles),
            Command::RemoveUser { login } => self.access.remove_user(&login),
            Command::AddRole {
                name,
                description,
                permissions,
            } => self.access.add_role(Role {
                name,
                description,
                permissions,
                builtin: false,
            }),
            Command::RemoveRole { name } => self.access.remove_role(&name),
            Command::IssueToken {
                token_id,
                secret_sha256,
                user_id,
                lifetime_ms,
                label,
                source,
            } => {
                return self.issue_token(
                    token_id,
                    secret_sha256,
                    user_id,
                    lifetime_ms,
                    label,
                    source,
                );
            }
            Command::RevokeToken { token_id } => self.access.revoke_token(&token_id),
            Command::RecordAudit { records } => {
                for record in records {
                    self.audit.record(record, now_ms);
                }
                Ok(())
            }
            _ => Err(AccessError::NotAnAccessCommand),
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(why) => Outcome::Rejected(Rejection::AccessChange(why)),
        }
    }

    fn issue_token(
        &mut self,
        token_id: String,
        secret_sha256: [u8; 32],
        user_id: String,
        lifetime_ms: u64,
        label: Option<String>,
        source: String,
    ) -> Outcome {
        let now_ms = self.clock_ms;
        let expires_ms = now_ms.saturating_add(lifetime_ms.min(super::TOKEN_LIFETIME_MAX_MS));
        let actor = self.access.user(&user_id).map(|u| Actor {
            id: u.id.clone(),
            login: u.login.clone(),
        });
        let result = self.access.issue_token(Token {
            id: token_id.clone(),
            secret_sha256,
            user_id,
            issued_ms: now_ms,
            expires_ms,
            revoked: false,
            label,
        });
        self.audit.record(
            AuditRecord {
                actor,
                source,
                action: AuditAction::TokenIssue,
                target: token_id,
                result: match &result {
                    Ok(()) => AuditResult::Ok,
                    Err(why) => AuditResult::Failed(Rejection::AccessChange(why.clone())),
                },
            },
            now_ms,
        );
        match result {
            Ok(()) => Outcome::TokenIssued { expires_ms },
            Err(why) => Outcome::Rejected(Rejection::AccessChange(why)),
        }
    }
}

/// What the audit log calls a command and its target (before it applies).
fn audit_subject(command: &Command) -> (AuditAction, String) {
    match command {
        Command::SubmitJob { spec, .. } => (
            AuditAction::JobRun,
            match &spec.target {
                Target::Application(app) => app.clone(),
                other => other.describe(),
            },
        ),
        Command::StopJob { job_id } => (AuditAction::JobStop, job_id.to_string()),
        Command::CreateSchedule { schedule, .. } => (
            AuditAction::ScheduleCreate,
            schedule.work.environment().to_string(),
        ),
        Command::DeleteSchedule { schedule_id } => (
            AuditAction::ScheduleDelete,
            format!("schedule {schedule_id}"),
        ),
        Command::AddUser { user } => (AuditAction::UserAdd, user.login.clone()),
        Command::UpdateUser { login, .. } => (AuditAction::UserUpdate, login.clone()),
        Command::RemoveUser { login } => (AuditAction::UserRemove, login.clone()),
        Command::AddRole { name, .. } => (AuditAction::RoleAdd, name.clone()),
        Command::RemoveRole { name } => (AuditAction::RoleRemove, name.clone()),
        Command::RevokeToken { token_id } => (AuditAction::TokenRevoke, token_id.clone()),
        Command::IssueToken { token_id, .. } => (AuditAction::TokenIssue, token_id.clone()),
        other => (AuditAction::Request, other.name().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use crate::access::permission::Permission;
    use crate::access::{AccessRefusal, NewUser};
    use crate::audit::AuditResult;
    use crate::command::{Command, Origin, Outcome, Rejection, Request};
    use crate::job::{JobSpec, Target};
    use crate::plan::Plan;
    use crate::state::ClusterState;
    use crate::{Actor, JobId};

    fn apply(
        state: &mut ClusterState,
        now_ms: u64,
        command: Command,
        token: Option<&str>,
    ) -> Outcome {
        state.apply(Request {
            request_id: None,
            now_ms,
            command,
            origin: token.map(|t| Origin {
                token_id: t.into(),
                source: "127.0.0.1:5000 via node 1".into(),
            }),
        })
    }

    fn user(id: &str, login: &str, roles: &[&str]) -> NewUser {
        NewUser {
            id: id.into(),
            login: login.into(),
            display_name: login.into(),
            password_hash: "$argon2id$stub".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn token(state: &mut ClusterState, now_ms: u64, id: &str, user_id: &str, lifetime_ms: u64) {
        let outcome = apply(
            state,
            now_ms,
            Command::IssueToken {
                token_id: id.into(),
                secret_sha256: [7; 32],
                user_id: user_id.into(),
                lifetime_ms,
                label: None,
                source: "test".into(),
            },
            None,
        );
        assert!(
            matches!(outcome, Outcome::TokenIssued { .. }),
            "{outcome:?}"
        );
    }

    fn submit(environment: &str, nodes: &[&str]) -> Command {
        Command::SubmitJob {
            spec: JobSpec {
                environment: environment.into(),
                target: Target::Nodes(nodes.iter().map(|n| n.to_string()).collect()),
                noop: false,
                no_noop: false,
                concurrency: None,
                enforce_environment: true,
                debug: false,
                trace: false,
                evaltrace: false,
                description: None,
                owner: Actor {
                    id: "forged".into(),
                    login: "someone-else".into(),
                },
                task: None,
            },
            plan: Plan::independent(nodes.iter().map(|n| n.to_string())).unwrap(),
            start_under_cap: None,
        }
    }

    fn cluster() -> ClusterState {
        let mut state = ClusterState::new();
        let admin = user("u-admin", "admin", &["admin"]);
        assert_eq!(
            apply(&mut state, 1, Command::BootstrapAccess { admin }, None),
            Outcome::Done
        );
        token(&mut state, 1, "t-admin", "u-admin", 3_600_000);
        let staging = Command::AddRole {
            name: "staging-operator".into(),
            description: String::new(),
            permissions: vec![Permission::Run {
                environments: vec!["staging".into()],
                nodes: vec![],
                applications: vec![],
            }],
        };
        assert_eq!(
            apply(&mut state, 2, staging, Some("t-admin")),
            Outcome::Done
        );
        for (id, login, role) in [
            ("u-op", "op", "staging-operator"),
            ("u-view", "viewer", "viewer"),
        ] {
            let add = Command::AddUser {
                user: user(id, login, &[role]),
            };
            assert_eq!(apply(&mut state, 3, add, Some("t-admin")), Outcome::Done);
        }
        token(&mut state, 4, "t-op", "u-op", 3_600_000);
        token(&mut state, 4, "t-view", "u-view", 1_000);
        state
    }

    #[test]
    fn bootstrap_happens_once() {
        let mut state = cluster();
        let again = apply(
            &mut state,
            5,
            Command::BootstrapAccess {
                admin: user("u-2", "admin2", &["admin"]),
            },
            None,
        );
        assert!(
            matches!(again, Outcome::Rejected(Rejection::AccessChange(_))),
            "{again:?}"
        );
        assert!(state.access().user_by_login("admin2").is_none());
    }

    #[test]
    fn the_owner_of_a_job_is_the_token_user_whatever_the_request_said() {
        let mut state = cluster();
        let outcome = apply(&mut state, 10, submit("staging", &["web1"]), Some("t-op"));
        let Outcome::JobSubmitted { job_id, .. } = outcome else {
            panic!("{outcome:?}");
        };
        let owner = &state.job(job_id).unwrap().spec.owner;
        assert_eq!((owner.id.as_str(), owner.login.as_str()), ("u-op", "op"));
        let last = state.audit().entries().back().unwrap();
        assert_eq!(last.record.target, job_id.to_string());
        assert_eq!(last.record.result, AuditResult::Ok);
    }

    #[test]
    fn an_operator_outside_its_environment_and_a_viewer_are_refused_and_audited() {
        let mut state = cluster();
        let refused = apply(
            &mut state,
            10,
            submit("production", &["web1"]),
            Some("t-op"),
        );
        assert!(matches!(
            refused,
            Outcome::Rejected(Rejection::Access(AccessRefusal::PermissionDenied { .. }))
        ));
        let viewer = apply(&mut state, 10, submit("staging", &["web1"]), Some("t-view"));
        assert!(matches!(
            viewer,
            Outcome::Rejected(Rejection::Access(AccessRefusal::PermissionDenied { .. }))
        ));
        assert!(state.jobs().is_empty());
        let last = state.audit().entries().back().unwrap();
        assert_eq!(last.record.actor.as_ref().unwrap().login, "viewer");
        assert!(matches!(last.record.result, AuditResult::Refused(_)));
    }

    #[test]
    fn a_revoked_or_expired_token_applies_nothing_after_the_revocation_commits() {
        let mut state = cluster();
        let revoke = Command::RevokeToken {
            token_id: "t-op".into(),
        };
        assert_eq!(apply(&mut state, 10, revoke, Some("t-op")), Outcome::Done);
        let after = apply(&mut state, 11, submit("staging", &["web1"]), Some("t-op"));
        assert_eq!(
            after,
            Outcome::Rejected(Rejection::Access(AccessRefusal::TokenRevoked))
        );
        // t-view lived 1 s from time 4: leader time 1,004 is past it.
        let late = apply(
            &mut state,
            1_004,
            Command::StopJob { job_id: JobId(1) },
            Some("t-view"),
        );
        assert_eq!(
            late,
            Outcome::Rejected(Rejection::Access(AccessRefusal::TokenExpired))
        );
        let unknown = apply(
            &mut state,
            1_005,
            Command::StopJob { job_id: JobId(1) },
            Some("nope"),
        );
        assert_eq!(
            unknown,
            Outcome::Rejected(Rejection::Access(AccessRefusal::InvalidToken))
        );
    }

    #[test]
    fn only_an_admin_manages_users_and_the_last_admin_stays() {
        let mut state = cluster();
        let by_op = apply(
            &mut state,
            10,
            Command::RemoveUser {
                login: "viewer".into(),
            },
            Some("t-op"),
        );
        assert!(
            matches!(by_op, Outcome::Rejected(Rejection::Access(_))),
            "{by_op:?}"
        );
        let last = apply(
            &mut state,
            10,
            Command::RemoveUser {
                login: "admin".into(),
            },
            Some("t-admin"),
        );
        assert!(
            matches!(last, Outcome::Rejected(Rejection::AccessChange(_))),
            "{last:?}"
        );
        let gone = apply(
            &mut state,
            10,
            Command::RemoveUser { login: "op".into() },
            Some("t-admin"),
        );
        assert_eq!(gone, Outcome::Done);
        assert!(
            state.access().token("t-op").is_none(),
            "a removed user's tokens go with it"
        );
        // A user may change its own password but not its roles.
        let own = Command::UpdateUser {
            login: "viewer".into(),
            password_hash: Some("$new".into()),
            roles: None,
        };
        assert_eq!(apply(&mut state, 11, own, Some("t-view")), Outcome::Done);
        let promote = Command::UpdateUser {
            login: "viewer".into(),
            password_hash: None,
            roles: Some(vec!["admin".into()]),
        };
        assert!(matches!(
            apply(&mut state, 11, promote, Some("t-view")),
            Outcome::Rejected(Rejection::Access(_))
        ));
    }
}
