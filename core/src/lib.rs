//! porch-core: the pure heart of porch.
//!
//! - [`plan`]: a job's nodes and the dependency DAG between them, validated once.
//! - [`command`]: what the replicated log carries ([`Request`] = command + leader time) and the
//!   [`Outcome`] of applying it.
//! - [`state`]: [`ClusterState::apply`], the deterministic state machine every replica runs.
//! - [`start_rule`]: the one rule deciding whether a run may start, which both the
//!   [`scheduler`] (deciding) and `apply` (re-checking the decision) call.
//! - [`job`], [`node_run`], [`inventory`]: the records the state holds.
//! - [`format_version`], [`stored_state`]: which record formats a build reads and writes, and
//!   the state's layout in each (rolling upgrades).
//! - [`restore`]: what a cluster restored from a backup keeps of the backed-up state.
//! - [`task`]: what a task job runs (file hash, checked parameters).
//! - [`schedule`]: scheduled jobs, fired exactly once by the leader through the log.
//! - [`access`]: users, roles, tokens and the permission rule; [`audit`]: who did what.
//!
//! Nothing in this crate reads a clock, draws a random number or touches a socket or a file:
//! the raft crate persists and replicates it, the node crate feeds it, the simulation checks it.

pub mod access;
pub mod audit;
pub mod command;
pub mod format_version;
pub mod ids;
pub mod inventory;
pub mod job;
pub mod node_run;
pub mod plan;
pub mod planted;
pub mod request_log;
pub mod restore;
pub mod schedule;
pub mod scheduler;
pub mod start_rule;
pub mod state;
pub mod stored_state;
pub mod task;

pub use access::Actor;
pub use command::{Command, Origin, Outcome, Rejection, Request, RunOutcome, RunStart, StartedRun};
pub use ids::{EventId, JobId};
pub use job::{EventKind, Job, JobEvent, JobSpec, JobState, StatusEntry, Target};
pub use node_run::{NodeRun, NodeState, RunResult, SkipCause};
pub use plan::{ComponentPlacement, Plan, PlanError, PlannedNode};
pub use state::ClusterState;
pub use stored_state::{StoredState, UnknownFormatVersion};
pub use task::{TaskInputMethod, TaskInvocation};
