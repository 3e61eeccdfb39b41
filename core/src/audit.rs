//! The audit log: every mutation and every refused attempt, with who, when, what and from
//! where — as facts (kinds, ids, addresses); the words are chosen when it is read. Bounded:
//! the oldest entries go first beyond [`AUDIT_ENTRIES_MAX`].

use crate::access::{AccessRefusal, Actor};
use imbl::Vector;
use serde::{Deserialize, Serialize};

pub const AUDIT_ENTRIES_MAX: usize = 50_000;
/// Longest `target` or `source` kept; longer ones are cut (they come from requests).
pub const AUDIT_FIELD_BYTES_MAX: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
/// Stored in snapshots: new variants go at the end (see `Command`).
pub enum AuditAction {
    JobRun,
    JobStop,
    MemberAdd,
    MemberRemove,
    UserAdd,
    UserUpdate,
    UserRemove,
    RoleAdd,
    RoleRemove,
    TokenIssue,
    TokenRevoke,
    /// A request refused before it reached a command (no token, bad token, no permission).
    Request,
    MemberPromote,
    MemberDrain,
    MemberUndrain,
    LeaderTransfer,
    ScheduleCreate,
    ScheduleDelete,
}

impl AuditAction {
    pub fn name(&self) -> &'static str {
        match self {
            AuditAction::JobRun => "job.run",
            AuditAction::JobStop => "job.stop",
            AuditAction::MemberAdd => "cluster.member.add",
            AuditAction::MemberRemove => "cluster.member.remove",
            AuditAction::UserAdd => "user.add",
            AuditAction::UserUpdate => "user.update",
            AuditAction::UserRemove => "user.remove",
            AuditAction::RoleAdd => "role.add",
            AuditAction::RoleRemove => "role.remove",
            AuditAction::TokenIssue => "token.issue",
            AuditAction::TokenRevoke => "token.revoke",
            AuditAction::ScheduleCreate => "schedule.create",
            AuditAction::ScheduleDelete => "schedule.delete",
            AuditAction::Request => "request",
            AuditAction::MemberPromote => "cluster.member.promote",
            AuditAction::MemberDrain => "cluster.member.drain",
            AuditAction::MemberUndrain => "cluster.member.undrain",
            AuditAction::LeaderTransfer => "cluster.leader.transfer",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    Ok,
    Refused(AccessRefusal),
    /// Authorised, but the command itself was rejected (unknown job, a name taken...).
    Failed(crate::command::Rejection),
}

/// An entry as a node proposes it (refusals it saw, membership changes it made).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub actor: Option<Actor>,
    /// The client's address as the node saw it, and the node: `10.0.0.5:51234 via node 2`.
    pub source: String,
    pub action: AuditAction,
    /// What was acted on: a job id, a login, a member id, `METHOD /path` for a refused request.
    pub target: String,
    pub result: AuditResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    /// Leader-stamped time of the entry that recorded it.
    pub time_ms: u64,
    pub record: AuditRecord,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    next_id: u64,
    entries: Vector<AuditEntry>,
}

fn cut(text: String) -> String {
    crate::node_run::truncate_utf8(text, AUDIT_FIELD_BYTES_MAX)
}

impl AuditLog {
    pub fn record(&mut self, mut record: AuditRecord, time_ms: u64) {
        record.source = cut(record.source);
        record.target = cut(record.target);
        self.next_id += 1;
        self.entries.push_back(AuditEntry {
            id: self.next_id,
            time_ms,
            record,
        });
        while self.entries.len() > AUDIT_ENTRIES_MAX {
            self.entries.pop_front();
        }
    }

    /// Oldest first.
    pub fn entries(&self) -> &Vector<AuditEntry> {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_is_bounded_and_keeps_the_newest() {
        let mut log = AuditLog::default();
        for i in 0..(AUDIT_ENTRIES_MAX + 10) {
            log.record(
                AuditRecord {
                    actor: None,
                    source: "x".repeat(1000),
                    action: AuditAction::Request,
                    target: i.to_string(),
                    result: AuditResult::Ok,
                },
                i as u64,
            );
        }
        assert_eq!(log.len(), AUDIT_ENTRIES_MAX);
        let first = log.entries().front().unwrap();
        assert_eq!(first.id, 11);
        assert_eq!(first.record.target, "10");
        assert!(first.record.source.len() <= AUDIT_FIELD_BYTES_MAX);
    }
}
