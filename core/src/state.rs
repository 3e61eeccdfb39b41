//! The replicated state machine: `ClusterState::apply(request) -> Outcome`.
//!
//! `apply` is a plain function over data: no clock (time comes in the request), no randomness
//! (ids come from counters here), no I/O. Every replica that applies the same log reaches the
//! same state, byte for byte when serialized. It is also the last line of defence for every
//! scheduling rule: a decision the leader proposed from stale state is refused here, so an
//! applied log never contains a run that broke a dependency, a concurrency limit or a node's
//! mutual exclusion.

use crate::access::AccessState;
use crate::audit::AuditLog;
use crate::command::{Command, Outcome, Rejection, Request, RunOutcome, RunStart, StartedRun};
use crate::ids::{EventId, JobId};
use crate::inventory::Inventory;
use crate::job::{EventKind, Job, JobEvent, JobSpec, JobState};
use crate::node_run::{NodeRun, NodeState, RESULT_MESSAGE_BYTES_MAX, SkipCause, truncate_utf8};
use crate::plan::Plan;
use crate::request_log::RequestLog;
use crate::start_rule::{Occupancy, StartRefusal, start_refusal};
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a running transaction belongs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionRef {
    pub job_id: JobId,
    pub node_index: u32,
}

/// Not `Serialize`: it is stored in the layout of a format version the caller names
/// ([`ClusterState::stored`], [`ClusterState::deserialize_stored`] in `stored_state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterState {
    pub(crate) cluster_id: Option<String>,
    /// The largest leader-stamped time applied so far.
    pub(crate) clock_ms: u64,
    pub(crate) next_job_id: u64,
    pub(crate) next_event_id: u64,
    /// A persistent map of jobs behind `Arc`: copying the whole state for a snapshot is O(1)
    /// (the copy shares the map's nodes), and a job is only deep-copied if it changes while
    /// a snapshot still holds it. A plain `BTreeMap` copy took 30-75 ms at 100,000 jobs,
    /// with `apply` waiting on the lock meanwhile. Serialized exactly like a `BTreeMap`.
    pub(crate) jobs: OrdMap<JobId, Arc<Job>>,
    /// Runs in flight by transaction id (index over `jobs`, kept for O(log n) reports).
    pub(crate) in_flight: BTreeMap<String, TransactionRef>,
    /// Certname -> transaction id of its run in flight: a node never runs two at once.
    pub(crate) busy_nodes: BTreeMap<String, String>,
    pub(crate) inventory: Inventory,
    pub(crate) requests: RequestLog,
    pub(crate) access: AccessState,
    pub(crate) audit: AuditLog,
    /// The format version every member writes (see `format_version`): raised by the leader
    /// once every member reads a newer one, never lowered.
    pub(crate) format_version: u16,
    pub(crate) schedules: crate::schedule::Schedules,
    /// Ids of the jobs not yet terminal: the scheduler walks these, not every job kept (a
    /// walk over all jobs ran after every applied entry, O(jobs) per write). Derived from
    /// `jobs`, so it is not stored: a decoded state rebuilds it.
    active_jobs: OrdSet<JobId>,
}

impl ClusterState {
    /// The state a stored layout holds, with the derived indexes rebuilt.
    pub(crate) fn from_stored(
        stored: crate::stored_state::StoredV3<'_>,
        format_version: u16,
        schedules: crate::schedule::Schedules,
    ) -> ClusterState {
        let jobs = stored.jobs.into_owned();
        let active_jobs = jobs
            .iter()
            .filter(|(_, job)| !job.state().is_terminal())
            .map(|(id, _)| *id)
            .collect();
        ClusterState {
            cluster_id: stored.cluster_id.into_owned(),
            clock_ms: stored.clock_ms,
            next_job_id: stored.next_job_id,
            next_event_id: stored.next_event_id,
            jobs,
            in_flight: stored.in_flight.into_owned(),
            busy_nodes: stored.busy_nodes.into_owned(),
            inventory: stored.inventory.into_owned(),
            requests: stored.requests.into_owned(),
            access: stored.access.into_owned(),
            audit: stored.audit.into_owned(),
            format_version,
            schedules,
            active_jobs,
        }
    }
}

impl Default for ClusterState {
    fn default() -> ClusterState {
        ClusterState::new()
    }
}

impl ClusterState {
    /// An empty state. It writes the oldest format this build reads until its cluster says
    /// otherwise: a node joining a cluster of the previous release must speak its format.
    pub fn new() -> ClusterState {
        ClusterState {
            cluster_id: None,
            clock_ms: 0,
            next_job_id: 1,
            next_event_id: 1,
            jobs: OrdMap::new(),
            in_flight: BTreeMap::new(),
            busy_nodes: BTreeMap::new(),
            inventory: Inventory::default(),
            requests: RequestLog::default(),
            access: AccessState::default(),
            audit: AuditLog::default(),
            format_version: crate::format_version::FORMAT_VERSION_MIN,
            schedules: crate::schedule::Schedules::default(),
            active_jobs: OrdSet::new(),
        }
    }

    /// The format version this cluster's members write (see `format_version`).
    pub fn format_version(&self) -> u16 {
        self.format_version
    }

    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    pub fn jobs(&self) -> &OrdMap<JobId, Arc<Job>> {
        &self.jobs
    }

    /// The jobs not yet terminal, oldest first.
    pub fn active_jobs(&self) -> impl Iterator<Item = &Job> {
        self.active_jobs
            .iter()
            .filter_map(|id| self.jobs.get(id).map(|job| &**job))
    }

    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id).map(|job| &**job)
    }

    pub fn in_flight(&self) -> &BTreeMap<String, TransactionRef> {
        &self.in_flight
    }

    pub fn busy_nodes(&self) -> &BTreeMap<String, String> {
        &self.busy_nodes
    }

    pub(crate) fn clear_cluster_id(&mut self) {
        self.cluster_id = None;
    }

    pub(crate) fn inventory_mut(&mut self) -> &mut Inventory {
        &mut self.inventory
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    pub fn access(&self) -> &AccessState {
        &self.access
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn schedules(&self) -> &crate::schedule::Schedules {
        &self.schedules
    }

    pub fn next_job_id(&self) -> JobId {
        JobId(self.next_job_id)
    }

    /// Applies one request. Never panics on any input: a command that cannot apply returns
    /// `Outcome::Rejected` and leaves the state as it was (apart from the clock).
    pub fn apply(&mut self, request: Request) -> Outcome {
        self.clock_ms = if crate::planted::active(crate::planted::Bug::ClockFollowsLeader) {
            request.now_ms
        } else {
            self.clock_ms.max(request.now_ms)
        };
        if let Some(id) = &request.request_id
            && let Some(previous) = self.requests.get(id)
        {
            return previous.clone();
        }
        let outcome = match request.origin {
            Some(origin) => self.apply_on_behalf(request.command, origin),
            None => self.apply_command(request.command),
        };
        if let Some(id) = request.request_id
            && id.len() <= crate::command::REQUEST_ID_BYTES_MAX
        {
            self.requests.remember(id, outcome.clone(), self.clock_ms);
        }
        outcome
    }

    pub(crate) fn apply_command(&mut self, command: Command) -> Outcome {
        match command {
            Command::SetClusterId { cluster_id } => self.set_cluster_id(cluster_id),
            Command::SubmitJob {
                spec,
                plan,
                start_under_cap,
            } => self.submit_job(spec, plan, start_under_cap),
            Command::StopJob { job_id } => self.stop_job(job_id),
            Command::StartRuns {
                runs,
                runs_in_flight_max,
            } => self.start_runs(runs, runs_in_flight_max),
            Command::ReportRun {
                transaction_id,
                outcome,
            } => self.report_run(&transaction_id, outcome),
            Command::AgentConnected {
                certname,
                via_node,
                session,
            } => {
                self.inventory
                    .connected(certname, via_node, session, self.clock_ms);
                Outcome::Done
            }
            Command::AgentDisconnected {
                certname, session, ..
            } => {
                self.inventory
                    .disconnected(&certname, &session, self.clock_ms);
                Outcome::Done
            }
            Command::PruneJobs {
                finished_before_ms,
                ended_kept_max,
            } => self.prune_jobs(finished_before_ms, ended_kept_max),
            Command::Tick => Outcome::Done,
            Command::SetFormatVersion { version } => self.set_format_version(version),
            Command::FireSchedules { firings } => self.fire_schedules(firings),
            Command::DeleteSchedule { schedule_id } => self.delete_schedule(schedule_id),
            Command::CreateSchedule { .. } => Outcome::Rejected(Rejection::Invalid(
                "a schedule is created on a user's behalf, with a token".into(),
            )),
            command => self.apply_access_command(command),
        }
    }

    /// One step up at a time, never down: every member was asked before the leader
    /// proposed it, and a replica that could not read the new format would not be here.
    fn set_format_version(&mut self, version: u16) -> Outcome {
        if Some(version) != self.format_version.checked_add(1)
            || version > crate::format_version::FORMAT_VERSION
        {
            return Outcome::Rejected(Rejection::FormatVersionNotNext {
                writing: self.format_version,
                proposed: version,
            });
        }
        self.format_version = version;
        Outcome::Done
    }

    fn set_cluster_id(&mut self, cluster_id: String) -> Outcome {
        if self.cluster_id.is_some() {
            return Outcome::Rejected(Rejection::ClusterIdAlreadySet);
        }
        if cluster_id.is_empty() || cluster_id.len() > 64 {
            return Outcome::Rejected(Rejection::ClusterIdInvalid);
        }
        self.cluster_id = Some(cluster_id);
        Outcome::Done
    }

    pub(crate) fn submit_job(
        &mut self,
        spec: JobSpec,
        plan: Plan,
        start_under_cap: Option<u32>,
    ) -> Outcome {
        let id = JobId(self.next_job_id);
        self.next_job_id += 1;
        let now = self.clock_ms;
        let runs = vec![NodeRun::new(); plan.len()];
        let mut job = Job {
            id,
            spec,
            plan,
            runs,
            status: Vec::new(),
            events: Vec::new(),
        };
        // The plan was computed and validated before proposing, so the job is ready at once.
        job.enter(JobState::New, now);
        job.enter(JobState::Ready, now);
        self.jobs.insert(id, Arc::new(job));
        self.active_jobs.insert(id);
        let started = match start_under_cap {
            // The pure scheduler, for this job only: apply stays deterministic, and cheap.
            Some(cap) if self.cluster_id.is_some() => {
                let limits = crate::scheduler::SchedulerLimits {
                    runs_in_flight_max: cap as usize,
                    ..crate::scheduler::SchedulerLimits::default()
                };
                let starts = crate::scheduler::starts_for_job(self, id, &limits);
                self.start_checked(starts, Some(cap)).0
            }
            _ => Vec::new(),
        };
        Outcome::JobSubmitted {
            job_id: id,
            started,
        }
    }

    fn stop_job(&mut self, job_id: JobId) -> Outcome {
        let now = self.clock_ms;
        let Some(job) = self.jobs.get(&job_id) else {
            return Outcome::Rejected(Rejection::UnknownJob(job_id));
        };
        if !job.state().is_terminal() && job.state() != JobState::Stopping {
            let waiting: Vec<usize> = (0..job.runs.len())
                .filter(|&i| job.runs[i].state == NodeState::New)
                .collect();
            for index in waiting {
                self.skip_node(job_id, index, SkipCause::JobStopped);
            }
            let job = self.job_mut(job_id);
            if job.runs_in_flight() > 0 {
                job.enter(JobState::Stopping, now);
            } else {
                self.finish_job(job_id, JobState::Stopped);
            }
        }
        let job = &self.jobs[&job_id];
        Outcome::JobStopped {
            job_id,
            node_states: job
                .node_states()
                .into_iter()
                .map(|(state, count)| (state.to_string(), count))
                .collect(),
        }
    }

    /// The transaction id of `attempt` of node `node_index` in `job_id`: unique across
    /// clusters (cluster id), jobs, nodes and attempts.
    pub fn transaction_id(&self, job_id: JobId, node_index: u32, attempt: u32) -> String {
        format!(
            "{}-{}-{}-{}",
            self.cluster_id.as_deref().unwrap_or("porch"),
            job_id,
            node_index,
            attempt
        )
    }

    /// Why `start` cannot start now with at most `runs_in_flight_max` runs in flight, or
    /// `None` if it can: [`start_refusal`] against this state.
    pub fn start_refusal(
        &self,
        start: &RunStart,
        runs_in_flight_max: Option<usize>,
    ) -> Option<StartRefusal> {
        let Some(job) = self.jobs.get(&start.job_id) else {
            return Some(StartRefusal::UnknownJob);
        };
        let node_busy = |name: &str| self.busy_nodes.contains_key(name);
        start_refusal(
            job,
            start,
            &Occupancy {
                runs_in_flight: self.in_flight.len(),
                runs_in_flight_max,
                job_runs_in_flight: job.runs_in_flight(),
                node_busy: &node_busy,
            },
        )
    }

    fn start_runs(&mut self, runs: Vec<RunStart>, runs_in_flight_max: Option<u32>) -> Outcome {
        if self.cluster_id.is_none() {
            return Outcome::Rejected(Rejection::ClusterIdNotSet);
        }
        let (started, refused) = self.start_checked(runs, runs_in_flight_max);
        Outcome::RunsStarted { started, refused }
    }

    /// Starts every decision that passes [`start_refusal`] (with at most `runs_in_flight_max`
    /// runs in flight); returns the started and the count refused. The cluster id must be set.
    fn start_checked(
        &mut self,
        runs: Vec<RunStart>,
        runs_in_flight_max: Option<u32>,
    ) -> (Vec<StartedRun>, u32) {
        let now = self.clock_ms;
        let mut started = Vec::new();
        let mut refused = 0u32;
        for start in runs {
            if self
                .start_refusal(&start, runs_in_flight_max.map(|cap| cap as usize))
                .is_some()
            {
                refused += 1;
                continue;
            }
            let transaction_id = self.transaction_id(start.job_id, start.node_index, start.attempt);
            let event_id = self.take_event_id();
            let job = self.job_mut(start.job_id);
            let index = start.node_index as usize;
            let name = job.plan.nodes()[index].name.clone();
            let run = &mut job.runs[index];
            run.state = NodeState::Running;
            run.attempt = start.attempt;
            run.transaction_id = Some(transaction_id.clone());
            run.start_ms = Some(now);
            job.enter(JobState::Running, now);
            job.events.push(JobEvent {
                id: event_id,
                kind: EventKind::NodeRunning,
                timestamp_ms: now,
                node: Some(name.clone()),
                error: None,
                skipped_because: None,
            });
            self.in_flight.insert(
                transaction_id.clone(),
                TransactionRef {
                    job_id: start.job_id,
                    node_index: start.node_index,
                },
            );
            self.busy_nodes.insert(name.clone(), transaction_id.clone());
            started.push(StartedRun {
                job_id: start.job_id,
                node: name,
                attempt: start.attempt,
                transaction_id,
            });
        }
        (started, refused)
    }

    fn report_run(&mut self, transaction_id: &str, outcome: RunOutcome) -> Outcome {
        // Only the current attempt of a run in flight is in `in_flight`: a stale attempt's or a
        // duplicate report finds nothing here and changes nothing.
        let Some(txn) = self.in_flight.remove(transaction_id) else {
            if crate::planted::active(crate::planted::Bug::AcceptStaleReport) {
                return self.planted_accept_stale_report(transaction_id, outcome);
            }
            return Outcome::Rejected(Rejection::UnknownTransaction(transaction_id.to_string()));
        };
        let now = self.clock_ms;
        let event_id = self.take_event_id();
        let index = txn.node_index as usize;
        let name = self.jobs[&txn.job_id].plan.nodes()[index].name.clone();
        self.busy_nodes.remove(&name);
        let job = self.job_mut(txn.job_id);
        let run = &mut job.runs[index];
        debug_assert_eq!(run.state, NodeState::Running);
        run.finish_ms = Some(now);
        let (state, kind, error) = match outcome {
            RunOutcome::Finished(result) => {
                run.result = Some(clip_result(result));
                (NodeState::Finished, EventKind::NodeFinished, None)
            }
            RunOutcome::Failed(result) => {
                run.result = Some(clip_result(result));
                (NodeState::Failed, EventKind::NodeFailed, None)
            }
            RunOutcome::Errored { message } => {
                let message = truncate_utf8(message, RESULT_MESSAGE_BYTES_MAX);
                run.message = Some(message.clone());
                (NodeState::Errored, EventKind::NodeErrored, Some(message))
            }
        };
        run.state = state;
        job.events.push(JobEvent {
            id: event_id,
            kind,
            timestamp_ms: now,
            node: Some(name.clone()),
            error,
            skipped_because: None,
        });
        if state != NodeState::Finished {
            let cause = SkipCause::Dependency {
                node: name.clone(),
                state,
            };
            for dependent in job.plan.transitive_dependents(index) {
                if self.jobs[&txn.job_id].runs[dependent].state == NodeState::New {
                    self.skip_node(txn.job_id, dependent, cause.clone());
                }
            }
        }
        self.settle_job(txn.job_id);
        Outcome::ReportAccepted {
            job_id: txn.job_id,
            node: name,
        }
    }

    /// Planted bug: overwrites the run a stale transaction belonged to with its report.
    fn planted_accept_stale_report(
        &mut self,
        transaction_id: &str,
        outcome: RunOutcome,
    ) -> Outcome {
        let found = self.jobs.iter().find_map(|(id, job)| {
            job.runs
                .iter()
                .position(|r| r.transaction_id.as_deref() == Some(transaction_id))
                .map(|index| (*id, index))
        });
        let Some((job_id, index)) = found else {
            return Outcome::Rejected(Rejection::UnknownTransaction(transaction_id.to_string()));
        };
        let run = &mut self.job_mut(job_id).runs[index];
        match outcome {
            RunOutcome::Finished(result) => {
                run.state = NodeState::Finished;
                run.result = Some(result);
            }
            RunOutcome::Failed(result) => {
                run.state = NodeState::Failed;
                run.result = Some(result);
            }
            RunOutcome::Errored { message } => {
                run.state = NodeState::Errored;
                run.message = Some(message);
            }
        }
        let node = self.jobs[&job_id].plan.nodes()[index].name.clone();
        Outcome::ReportAccepted { job_id, node }
    }

    fn skip_node(&mut self, job_id: JobId, index: usize, cause: SkipCause) {
        let now = self.clock_ms;
        let event_id = self.take_event_id();
        let job = self.job_mut(job_id);
        let name = job.plan.nodes()[index].name.clone();
        let run = &mut job.runs[index];
        debug_assert_eq!(run.state, NodeState::New);
        run.state = NodeState::Skipped;
        run.skipped_because = Some(cause.clone());
        job.events.push(JobEvent {
            id: event_id,
            kind: EventKind::NodeSkipped,
            timestamp_ms: now,
            node: Some(name),
            error: None,
            skipped_because: Some(cause),
        });
    }

    /// Ends the job if every node is terminal.
    fn settle_job(&mut self, job_id: JobId) {
        let job = &self.jobs[&job_id];
        if job.state().is_terminal() || !job.runs.iter().all(|r| r.state.is_terminal()) {
            return;
        }
        let end = if job.state() == JobState::Stopping {
            JobState::Stopped
        } else if job_could_not_run(job) {
            JobState::Failed
        } else {
            JobState::Finished
        };
        self.finish_job(job_id, end);
    }

    fn finish_job(&mut self, job_id: JobId, end: JobState) {
        debug_assert!(end.is_terminal());
        let now = self.clock_ms;
        let event_id = self.take_event_id();
        self.active_jobs.remove(&job_id);
        let job = self.job_mut(job_id);
        job.enter(end, now);
        let kind = match end {
            JobState::Stopped => EventKind::JobAborted,
            _ => EventKind::JobFinished,
        };
        job.events.push(JobEvent {
            id: event_id,
            kind,
            timestamp_ms: now,
            node: None,
            error: None,
            skipped_because: None,
        });
    }

    fn prune_jobs(&mut self, finished_before_ms: u64, ended_kept_max: Option<u64>) -> Outcome {
        let before = self.jobs.len();
        let ended = self.ended_job_count();
        let mut over_count = ended_kept_max.map_or(0, |max| ended.saturating_sub(max as usize));
        // Oldest first (ids grow with submission): the count limit drops the oldest ended.
        let pruned: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, job)| job.state().is_terminal())
            .filter(|(_, job)| {
                let too_many = over_count > 0;
                if too_many {
                    over_count -= 1;
                }
                too_many || job.timestamp_ms() < finished_before_ms
            })
            .map(|(id, _)| *id)
            .collect();
        for id in pruned {
            self.jobs.remove(&id);
        }
        Outcome::Pruned {
            jobs: (before - self.jobs.len()) as u64,
        }
    }

    /// Jobs that have ended (finished, stopped, failed): what retention may drop.
    pub fn ended_job_count(&self) -> usize {
        self.jobs.len() - self.active_jobs.len()
    }

    /// The end time of the oldest-submitted job that has ended, if any (the jobs before it in
    /// id order are still running): what retention by age looks at.
    pub fn oldest_ended_job_ms(&self) -> Option<u64> {
        self.jobs
            .values()
            .find(|job| job.state().is_terminal())
            .map(|job| job.timestamp_ms())
    }

    /// A job to change; the caller has checked it exists (an invariant of the indices).
    fn job_mut(&mut self, id: JobId) -> &mut Job {
        Arc::make_mut(
            self.jobs
                .get_mut(&id)
                .expect("caller checked the job exists"),
        )
    }

    fn take_event_id(&mut self) -> EventId {
        let id = EventId(self.next_event_id);
        self.next_event_id += 1;
        id
    }
}

/// A job "failed" (rather than "finished") when not a single node could run Puppet: every node
/// ended errored or skipped, and at least one errored. Node-level failures alone leave the job
/// `finished`, as in PE.
fn job_could_not_run(job: &Job) -> bool {
    job.runs
        .iter()
        .all(|r| matches!(r.state, NodeState::Errored | NodeState::Skipped))
        && job.runs.iter().any(|r| r.state == NodeState::Errored)
}

fn clip_result(mut result: crate::node_run::RunResult) -> crate::node_run::RunResult {
    result.message = result
        .message
        .map(|m| truncate_utf8(m, RESULT_MESSAGE_BYTES_MAX));
    result
}
