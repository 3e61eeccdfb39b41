//! The properties the simulation checks as the run goes, one file each. Every checker sees an
//! [`Observation`] (each live node's raft metrics and applied state, every agent-side execution,
//! every acknowledged submission) and keeps whatever history its property needs.

pub mod acknowledged_survive;
pub mod applied_entries_survive;
pub mod authorized;
pub mod committed_before_dispatch;
pub mod dependencies_finished;
pub mod leader_per_term;
pub mod limits;
pub mod linearizable;
pub mod occurrence_once;
pub mod occurrences_decided;
pub mod once_per_transaction;
pub mod replicas_agree;
pub mod replicated_clock_forward;
pub mod schedule_no_overlap;
pub mod stopped_starts_nothing;
pub mod submissions_apply_once;
pub mod task_file_as_planned;
pub mod task_params_intact;
pub mod terminal_states;

use porch_core::{ClusterState, JobId};
use std::fmt;

pub struct NodeView {
    pub id: u64,
    /// Which start of the node this is (each restart is a new incarnation).
    pub incarnation: u64,
    pub term: u64,
    pub leader: Option<u64>,
    pub is_leader: bool,
    /// It leads and has applied an entry of its own term (`Consensus::leads_with_current_state`).
    pub leads_with_current_state: bool,
    /// Its log holds no entry it has not seen committed.
    pub log_committed: bool,
    pub applied_index: u64,
    /// The node's membership is a joint configuration (a change not finished).
    pub joint_membership: bool,
    pub state: std::sync::Arc<ClusterState>,
}

/// One run as the agent saw it.
#[derive(Clone, Debug)]
pub struct Execution {
    pub certname: String,
    pub transaction_id: String,
    pub job_id: u64,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    /// What the cluster had committed at the instant the agent started it.
    pub evidence: StartEvidence,
}

/// A task as the agent started it.
#[derive(Clone, Debug)]
pub struct TaskExecution {
    pub certname: String,
    pub transaction_id: String,
    /// The hash the run request named.
    pub requested_sha256: String,
    /// The hash of the file the agent ran.
    pub file_sha256: String,
    /// What the task got: its stdin JSON (its `PT_*` variables are made of it).
    pub input: serde_json::Map<String, serde_json::Value>,
}

/// The job of a task run and the task it committed, from `state`: `Ok(None)` when the job is
/// not (yet) in this state, `Err` when the run cannot belong to a task job.
pub fn committed_task<'a>(
    state: &'a ClusterState,
    run: &TaskExecution,
) -> Result<Option<(&'a porch_core::Job, &'a porch_core::TaskInvocation)>, String> {
    let Some((job_id, _, _)) = parse_transaction(&run.transaction_id) else {
        return Err(format!(
            "{} ran a task under transaction {:?}, which names no job",
            run.certname, run.transaction_id
        ));
    };
    let Some(job) = state.job(JobId(job_id)) else {
        return Ok(None);
    };
    match &job.spec.task {
        Some(task) => Ok(Some((job, task))),
        None => Err(format!(
            "{} ran a task for transaction {}, but job {job_id} is not a task job",
            run.certname, run.transaction_id
        )),
    }
}

/// Walks the task runs in order, each once, as their jobs become visible in the most advanced
/// replica: a checker of task runs keeps one and says what it requires of each run.
#[derive(Default)]
pub struct TaskRunCursor {
    next: usize,
}

impl TaskRunCursor {
    /// Checks the runs not checked yet whose jobs `observation` shows; `wrong` says what is
    /// wrong with a run of a committed task, if anything.
    pub fn advance(
        &mut self,
        observation: &Observation,
        invariant: &'static str,
        violations: &mut Vec<Violation>,
        wrong: impl Fn(&TaskExecution, &porch_core::Job, &porch_core::TaskInvocation) -> Option<String>,
    ) {
        let Some(state) = observation.latest() else {
            return;
        };
        while let Some(run) = observation.task_runs.get(self.next) {
            match committed_task(state, run) {
                Ok(None) => return, // not applied here yet: next time
                Ok(Some((job, task))) => {
                    if let Some(detail) = wrong(run, job, task) {
                        violations.push(Violation { invariant, detail });
                    }
                }
                Err(detail) => violations.push(Violation { invariant, detail }),
            }
            self.next += 1;
        }
    }

    /// Once every replica caught up: every run must have been checked (its job committed).
    pub fn all_seen(
        &self,
        observation: &Observation,
        invariant: &'static str,
        violations: &mut Vec<Violation>,
    ) {
        if let Some(run) = observation.task_runs.get(self.next) {
            violations.push(Violation {
                invariant,
                detail: format!(
                    "{} ran a task under transaction {}, whose job no replica holds",
                    run.certname, run.transaction_id
                ),
            });
        }
    }
}

/// The committed log as of the instant an agent starts a run, gathered from every node
/// incarnation's applied state (apply follows commit, so anything applied anywhere is
/// committed; a crashed incarnation's state still counts).
#[derive(Clone, Debug, Default)]
pub struct StartEvidence {
    /// Some node had applied the decision that started this very transaction.
    pub committed: bool,
    /// Predecessors in the plan that were not `finished` in the state that holds the start.
    pub unfinished_predecessors: Vec<String>,
}

impl StartEvidence {
    pub fn gather(
        views: &[std::sync::Arc<porch_raft::AppliedView>],
        transaction_id: &str,
    ) -> StartEvidence {
        let Some((job_id, index, _)) = parse_transaction(transaction_id) else {
            return StartEvidence::default();
        };
        for view in views {
            let state = view.read();
            let Some(job) = state.cluster.job(JobId(job_id)) else {
                continue;
            };
            let Some(run) = job.runs.get(index) else {
                continue;
            };
            if run.transaction_id.as_deref() != Some(transaction_id) {
                continue;
            }
            let unfinished_predecessors = job.plan.nodes()[index]
                .depends_on
                .iter()
                .map(|&dep| dep as usize)
                .filter(|&dep| job.runs[dep].state != porch_core::NodeState::Finished)
                .map(|dep| job.plan.nodes()[dep].name.clone())
                .collect();
            return StartEvidence {
                committed: true,
                unfinished_predecessors,
            };
        }
        StartEvidence::default()
    }
}

/// The entry a node incarnation last applied, and the replicated clock after it.
#[derive(Clone, Debug)]
pub struct AppliedSample {
    pub who: String,
    pub index: u64,
    /// The entry's log id (term, leader, index), as text.
    pub log_id: String,
    pub clock_ms: u64,
}

pub struct Observation<'a> {
    pub now_ms: u64,
    pub nodes: &'a [NodeView],
    pub executions: &'a [Execution],
    /// Every task an agent started, in order.
    pub task_runs: &'a [TaskExecution],
    /// Every submission the clients made, with what was acknowledged.
    pub submissions: &'a [crate::workload::Submission],
    pub runs_in_flight_max: usize,
    /// What each node incarnation ever started last applied.
    pub applied: &'a [AppliedSample],
    /// Every client operation with what it was told.
    pub history: &'a [crate::history::Operation],
    /// When every fault was healed (simulated ms), once the liveness phase began.
    pub healed_at_ms: Option<u64>,
}

impl Observation<'_> {
    /// The most advanced applied state (highest applied index).
    pub fn latest(&self) -> Option<&ClusterState> {
        self.nodes
            .iter()
            .max_by_key(|n| n.applied_index)
            .map(|n| &*n.state)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// `<cluster>-<job>-<node index>-<attempt>` → (job, node index, attempt).
pub fn parse_transaction(id: &str) -> Option<(u64, usize, u32)> {
    let mut parts = id.rsplitn(4, '-');
    let attempt = parts.next()?.parse().ok()?;
    let node = parts.next()?.parse().ok()?;
    let job = parts.next()?.parse().ok()?;
    Some((job, node, attempt))
}

/// Every checker, with the history it keeps.
#[derive(Default)]
pub struct Checkers {
    leaders: leader_per_term::LeaderPerTerm,
    terminal: terminal_states::TerminalStates,
    applied: applied_entries_survive::AppliedEntries,
    clock: replicated_clock_forward::ReplicatedClock,
    occurrences: occurrence_once::OccurrenceOnce,
    task_params: task_params_intact::TaskParams,
    task_files: task_file_as_planned::TaskFiles,
    decided: occurrences_decided::OccurrencesDecided,
    replicas: replicas_agree::ReplicasAgree,
}

impl Checkers {
    /// Whether the check that due occurrences are decided after healing has had its time.
    pub fn occurrences_had_their_time(&self, now_ms: u64) -> bool {
        self.decided.had_its_time(now_ms)
    }

    /// Checked every simulated 100 ms: properties of each replica on its own, of pairs of
    /// replicas, and of what agents did.
    pub fn check(&mut self, observation: &Observation) -> Vec<Violation> {
        let mut violations = Vec::new();
        self.leaders.check(observation, &mut violations);
        self.replicas.check(observation, &mut violations);
        once_per_transaction::check(observation, &mut violations);
        committed_before_dispatch::check(observation, &mut violations);
        dependencies_finished::check_at_start(observation, &mut violations);
        limits::check(observation, &mut violations);
        authorized::check(observation, &mut violations);
        self.terminal.check(observation, &mut violations);
        self.applied.check(observation, &mut violations);
        self.clock.check(observation, &mut violations);
        self.occurrences.check(observation, &mut violations);
        schedule_no_overlap::check(observation, &mut violations);
        self.decided.check(observation, &mut violations);
        self.task_params.check(observation, &mut violations);
        self.task_files.check(observation, &mut violations);
        violations
    }

    /// Checked once every replica has caught up after healing: properties that compare what
    /// agents did with the complete committed log (a lagging replica would miss entries).
    pub fn check_final(&mut self, observation: &Observation) -> Vec<Violation> {
        let mut violations = self.check(observation);
        dependencies_finished::check(observation, &mut violations);
        stopped_starts_nothing::check(observation, &mut violations);
        acknowledged_survive::check(observation, &mut violations);
        submissions_apply_once::check(observation, &mut violations);
        linearizable::check(observation, &mut violations);
        self.task_params.all_seen(observation, &mut violations);
        self.task_files.all_seen(observation, &mut violations);
        violations
    }
}
