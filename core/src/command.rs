//! Commands the replicated log carries, and the outcomes applying them produces.
//!
//! Every command arrives wrapped in a [`Request`] that carries the time the leader stamped on
//! it (`now_ms`), so applying a command never reads a clock. Ids (jobs, events, transactions)
//! are derived inside `apply` from counters in the state, so they are identical on every replica.

use crate::access::permission::Permission;
use crate::access::{AccessRefusal, NewUser};
use crate::audit::AuditRecord;
use crate::ids::JobId;
use crate::job::JobSpec;
use crate::node_run::RunResult;
use crate::plan::Plan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest client request id accepted for deduplication.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

/// A command plus the context the leader adds when it proposes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Set by whoever submits a command that must not apply twice (e.g. a job submission
    /// retried across a leader failover). A repeat returns the first outcome unchanged.
    pub request_id: Option<String>,
    /// Milliseconds since the Unix epoch, stamped by the proposing node. The state machine
    /// never lets its clock go backwards (it keeps the maximum it has seen).
    pub now_ms: u64,
    pub command: Command,
    /// Who asked, for commands made on a user's behalf: `apply` re-checks the token and the
    /// permission against the state it applies to, and records the attempt in the audit log.
    /// `None` for the cluster's own commands (scheduling, reports, sessions).
    pub origin: Option<Origin>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub token_id: String,
    /// The client's address and the node that received the request.
    pub source: String,
}

/// A dispatch decision: start `node_index` of `job_id`, as attempt `attempt`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunStart {
    pub job_id: JobId,
    pub node_index: u32,
    /// Must be the node's current attempt + 1; a decision made on stale state is refused.
    pub attempt: u32,
}

/// How a run ended, as its agent (or the leader, for lost agents) reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The run completed (Puppet exit 0 or 2; command exit 0).
    Finished(RunResult),
    /// The run completed and reported failures (Puppet exit 4 or 6; command exit non-zero).
    Failed(RunResult),
    /// The run could not be carried out (agent busy, disabled, unreachable, runner missing).
    Errored { message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
/// Stored in log entries (bincode, which encodes a variant by its index): a new variant goes
/// at the end, or every entry of the previous format from that point on decodes as another
/// command (tests/upgrade.sh caught exactly that).
pub enum Command {
    /// Sets the cluster's id once; it prefixes every transaction id so ids never collide with
    /// another cluster's (PE's job ids did, in agents' spools).
    SetClusterId {
        cluster_id: String,
    },
    SubmitJob {
        spec: JobSpec,
        plan: Plan,
        /// Stamped by the leader (its `--runs-in-flight-max`): the runs of this job that may
        /// start at once start in this same entry, under this cluster-wide cap — one raft
        /// write per job instead of two, and the first dispatch a round trip sooner. `None`
        /// (a node without a scheduler) leaves them to the scheduler loop.
        /// (Never `skip_serializing_if` here: entries and snapshots are bincode, which is not
        /// self-describing.)
        start_under_cap: Option<u32>,
    },
    /// Idempotent: stopping a terminal job changes nothing and reports its node counts.
    StopJob {
        job_id: JobId,
    },
    /// The leader's scheduler decisions. Each is re-checked against the state it applies to.
    StartRuns {
        runs: Vec<RunStart>,
        /// The cluster-wide cap the deciding leader applies; apply refuses starts beyond it
        /// (decisions made on an older state, and starts made by job submissions in between,
        /// must not add up past it). `None`: no cap.
        runs_in_flight_max: Option<u32>,
    },
    ReportRun {
        transaction_id: String,
        outcome: RunOutcome,
    },
    /// An agent opened session `session` on orchestrator node `via_node`.
    AgentConnected {
        certname: String,
        via_node: u64,
        session: String,
    },
    /// Session `session` of `certname` ended. Ignored unless it is the agent's current
    /// session (it may have reconnected, here or elsewhere, meanwhile).
    AgentDisconnected {
        certname: String,
        via_node: u64,
        session: String,
    },
    /// History retention, decided by the leader: drops the records (events, reports) of jobs
    /// that ended before `finished_before_ms`, and of the oldest ended jobs beyond the newest
    /// `ended_kept_max`. Jobs not yet ended are never dropped.
    PruneJobs {
        finished_before_ms: u64,
        ended_kept_max: Option<u64>,
    },
    /// Carries only time: lets the leader advance the replicated clock.
    Tick,
    /// Creates the built-in roles and the first admin; changes nothing once any user exists.
    BootstrapAccess {
        admin: NewUser,
    },
    AddUser {
        user: NewUser,
    },
    UpdateUser {
        login: String,
        password_hash: Option<String>,
        roles: Option<Vec<String>>,
    },
    RemoveUser {
        login: String,
    },
    AddRole {
        name: String,
        description: String,
        permissions: Vec<Permission>,
    },
    RemoveRole {
        name: String,
    },
    /// A login succeeded on the node that proposes this (it checked the password): the token
    /// lives `lifetime_ms` from the leader-stamped time of this entry.
    IssueToken {
        token_id: String,
        secret_sha256: [u8; 32],
        user_id: String,
        lifetime_ms: u64,
        label: Option<String>,
        source: String,
    },
    RevokeToken {
        token_id: String,
    },
    /// Audit entries a node saw outside `apply`: refused requests, failed logins, membership
    /// changes.
    RecordAudit {
        records: Vec<AuditRecord>,
    },
    /// The leader found every member able to read format `version` (one more than the
    /// cluster writes): from this entry on, every member writes it.
    SetFormatVersion {
        version: u16,
    },
    /// A schedule, made on a user's behalf: `nodes` are those the node planned for it at
    /// creation, for the permission check (each occurrence is planned, and checked, anew).
    CreateSchedule {
        schedule: crate::schedule::NewSchedule,
        nodes: Vec<String>,
    },
    DeleteSchedule {
        schedule_id: crate::schedule::ScheduleId,
    },
    /// The leader's decisions to fire schedule occurrences whose time has come (see
    /// `schedule::apply`: each is refused unless it is its schedule's next occurrence).
    FireSchedules {
        firings: Vec<crate::schedule::Firing>,
    },
}

/// A run the state machine started: everything the agent's session node needs to deliver it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedRun {
    pub job_id: JobId,
    pub node: String,
    pub attempt: u32,
    pub transaction_id: String,
}

/// Why a command changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    #[error("unknown job {0}")]
    UnknownJob(JobId),
    #[error("the cluster id is already set")]
    ClusterIdAlreadySet,
    #[error("invalid request: a cluster id must be 1-64 bytes")]
    ClusterIdInvalid,
    #[error("the cluster id is not set yet")]
    ClusterIdNotSet,
    #[error("unknown transaction {0}")]
    UnknownTransaction(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{0}")]
    Access(AccessRefusal),
    #[error("invalid request: {0}")]
    AccessChange(crate::access::AccessError),
    #[error("format version {proposed} is not the next after {writing}, which the cluster writes")]
    FormatVersionNotNext { writing: u16, proposed: u16 },
    #[error("unknown schedule {0}")]
    UnknownSchedule(crate::schedule::ScheduleId),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
/// Stored in snapshots' request logs: new variants go at the end (see [`Command`]).
pub enum Outcome {
    Done,
    JobSubmitted {
        job_id: JobId,
        /// Runs started in the same entry (see `Command::SubmitJob::start_under_cap`).
        /// Outcomes live in the request log inside snapshots (bincode): no skipped fields.
        started: Vec<StartedRun>,
    },
    JobStopped {
        job_id: JobId,
        node_states: BTreeMap<String, u64>,
    },
    RunsStarted {
        started: Vec<StartedRun>,
        /// Decisions refused because the state had moved on (already started, job stopped...).
        refused: u32,
    },
    ReportAccepted {
        job_id: JobId,
        node: String,
    },
    Pruned {
        jobs: u64,
    },
    TokenIssued {
        expires_ms: u64,
    },
    Rejected(Rejection),
    ScheduleCreated {
        schedule_id: crate::schedule::ScheduleId,
    },
    ScheduleDeleted {
        schedule_id: crate::schedule::ScheduleId,
    },
    SchedulesFired {
        results: Vec<crate::schedule::FiringResult>,
    },
}

impl Command {
    /// The command's kind, for logs and the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Command::SetClusterId { .. } => "set_cluster_id",
            Command::SubmitJob { .. } => "submit_job",
            Command::StopJob { .. } => "stop_job",
            Command::StartRuns { .. } => "start_runs",
            Command::ReportRun { .. } => "report_run",
            Command::AgentConnected { .. } => "agent_connected",
            Command::AgentDisconnected { .. } => "agent_disconnected",
            Command::PruneJobs { .. } => "prune_jobs",
            Command::Tick => "tick",
            Command::BootstrapAccess { .. } => "bootstrap_access",
            Command::AddUser { .. } => "add_user",
            Command::UpdateUser { .. } => "update_user",
            Command::RemoveUser { .. } => "remove_user",
            Command::AddRole { .. } => "add_role",
            Command::RemoveRole { .. } => "remove_role",
            Command::IssueToken { .. } => "issue_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::RecordAudit { .. } => "record_audit",
            Command::SetFormatVersion { .. } => "set_format_version",
            Command::CreateSchedule { .. } => "create_schedule",
            Command::DeleteSchedule { .. } => "delete_schedule",
            Command::FireSchedules { .. } => "fire_schedules",
        }
    }

    /// The oldest format version whose readers know this command (0: every version this
    /// build reads). An entry holding it is sealed at least at that version, so a node that
    /// cannot read it refuses it by name instead of misreading it.
    pub fn format_version_needed(&self) -> u16 {
        match self {
            Command::SetFormatVersion { version } => (*version).max(4),
            Command::CreateSchedule { .. }
            | Command::DeleteSchedule { .. }
            | Command::FireSchedules { .. } => crate::format_version::SCHEDULES_SINCE,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.command.name(), self.now_ms)
    }
}
