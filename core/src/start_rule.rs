//! The one rule that decides whether a run may start: [`start_refusal`].
//!
//! Both sides of a start call it. The scheduler (`scheduler::schedule`, on the leader) asks it
//! for each waiting node to decide what to propose; `ClusterState::apply` asks it again for
//! each proposed start, against the state the start is applied to, and refuses a decision
//! made on stale state. One function, so the two can never disagree about a rule (as Nomad's
//! plan applier re-checks a plan with the very `AllocsFit` its scheduler used).
//!
//! Rules (spec: PE job semantics):
//! - only a job that is ready or running starts runs (a stopped job starts nothing new);
//! - at most `runs_in_flight_max` runs in flight over all jobs (the leader's stamped cap);
//! - at most `concurrency` runs of one job in flight;
//! - a node starts once, as its next attempt, only while it is waiting (`new`);
//! - a node starts only when every predecessor in the plan has *finished*;
//! - a node never runs two runs at once, even for two jobs.

use crate::command::RunStart;
use crate::job::{Job, JobState};
use crate::node_run::NodeState;
use crate::planted::{self, Bug};

/// Why a run may not start now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartRefusal {
    UnknownJob,
    /// The job is stopping or has ended (or is not ready yet).
    JobNotRunning,
    ClusterCapReached,
    JobConcurrencyReached,
    NoSuchNode,
    /// The node is not waiting, or the attempt is not its next one: decided on stale state.
    StaleDecision,
    DependencyNotFinished,
    /// The node is running (or, within one scheduling pass, about to run) another run.
    NodeBusy,
}

impl StartRefusal {
    /// Whether the refusal holds for every other node of the same job too (the scheduler
    /// moves on to the next job).
    pub fn refuses_whole_job(self) -> bool {
        matches!(
            self,
            StartRefusal::UnknownJob
                | StartRefusal::JobNotRunning
                | StartRefusal::JobConcurrencyReached
        )
    }
}

/// What else holds a slot when a start is judged. `apply` fills it from the applied state;
/// the scheduler also counts what it decided earlier in the same pass.
pub struct Occupancy<'a> {
    /// Runs in flight over all jobs.
    pub runs_in_flight: usize,
    /// The cluster-wide cap, if one applies.
    pub runs_in_flight_max: Option<usize>,
    /// Runs of the judged job in flight.
    pub job_runs_in_flight: usize,
    /// Whether a node (by certname) is running, or about to run, another run.
    pub node_busy: &'a dyn Fn(&str) -> bool,
}

/// Why `start` of `job` may not start now, or `None` if it may.
pub fn start_refusal(job: &Job, start: &RunStart, occupancy: &Occupancy) -> Option<StartRefusal> {
    if !matches!(job.state(), JobState::Ready | JobState::Running) {
        return Some(StartRefusal::JobNotRunning);
    }
    if occupancy
        .runs_in_flight_max
        .is_some_and(|cap| occupancy.runs_in_flight >= cap)
    {
        return Some(StartRefusal::ClusterCapReached);
    }
    if job
        .spec
        .concurrency
        .is_some_and(|c| occupancy.job_runs_in_flight >= concurrency_limit(c))
    {
        return Some(StartRefusal::JobConcurrencyReached);
    }
    let index = start.node_index as usize;
    let Some(run) = job.runs.get(index) else {
        return Some(StartRefusal::NoSuchNode);
    };
    if run.state != NodeState::New || start.attempt != run.attempt + 1 {
        return Some(StartRefusal::StaleDecision);
    }
    let node = &job.plan.nodes()[index];
    if dependencies_checked(&node.depends_on)
        .iter()
        .any(|&dep| job.runs[dep as usize].state != NodeState::Finished)
    {
        return Some(StartRefusal::DependencyNotFinished);
    }
    if (occupancy.node_busy)(&node.name) {
        return Some(StartRefusal::NodeBusy);
    }
    None
}

/// A job's concurrency limit as enforced (one more with a planted bug).
fn concurrency_limit(concurrency: u32) -> usize {
    if planted::active(Bug::ExceedConcurrencyByOne) {
        return concurrency as usize + 1;
    }
    concurrency as usize
}

/// The dependencies that must have finished (all but the first with a planted bug).
fn dependencies_checked(depends_on: &[u32]) -> &[u32] {
    if planted::active(Bug::IgnoreDependencyEdge) && !depends_on.is_empty() {
        return &depends_on[1..];
    }
    depends_on
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Outcome, Request};
    use crate::ids::JobId;
    use crate::job::{JobSpec, Target};
    use crate::plan::{Plan, PlannedNode};
    use crate::state::ClusterState;

    fn apply(state: &mut ClusterState, command: Command) -> Outcome {
        let now_ms = state.clock_ms() + 1;
        state.apply(Request {
            request_id: None,
            now_ms,
            command,
            origin: None,
        })
    }

    /// A job over `(name, dependencies)` nodes with a concurrency limit.
    fn submit(state: &mut ClusterState, nodes: &[(&str, &[u32])], concurrency: u32) -> JobId {
        let plan = Plan::new(
            nodes
                .iter()
                .map(|(name, deps)| PlannedNode {
                    name: name.to_string(),
                    depends_on: deps.to_vec(),
                    components: vec![],
                })
                .collect(),
        )
        .unwrap();
        let spec = JobSpec {
            environment: "production".into(),
            target: Target::Nodes(vec![]),
            noop: false,
            no_noop: false,
            concurrency: Some(concurrency),
            enforce_environment: true,
            debug: false,
            trace: false,
            evaltrace: false,
            description: None,
            owner: crate::Actor {
                id: "test".into(),
                login: "test".into(),
            },
            task: None,
        };
        match apply(
            state,
            Command::SubmitJob {
                spec,
                plan,
                start_under_cap: None,
            },
        ) {
            Outcome::JobSubmitted { job_id, .. } => job_id,
            other => panic!("submit failed: {other:?}"),
        }
    }

    fn first(job_id: JobId, node_index: u32) -> RunStart {
        RunStart {
            job_id,
            node_index,
            attempt: 1,
        }
    }

    /// Each rule refuses with its own reason, judged against the applied state: what `apply`
    /// refuses and the scheduler never proposes.
    #[test]
    fn each_start_rule_refuses_with_its_reason() {
        let mut state = ClusterState::new();
        apply(
            &mut state,
            Command::SetClusterId {
                cluster_id: "c".into(),
            },
        );
        // b depends on a; c is independent; one run of the job at a time.
        let job = submit(&mut state, &[("a", &[]), ("b", &[0]), ("c", &[])], 1);
        assert_eq!(state.start_refusal(&first(job, 0), None), None);
        assert_eq!(
            state.start_refusal(&first(job, 1), None),
            Some(StartRefusal::DependencyNotFinished)
        );
        assert_eq!(
            state.start_refusal(&first(job, 9), None),
            Some(StartRefusal::NoSuchNode)
        );
        assert_eq!(
            state.start_refusal(&first(JobId(99), 0), None),
            Some(StartRefusal::UnknownJob)
        );
        assert_eq!(
            state.start_refusal(&first(job, 0), Some(0)),
            Some(StartRefusal::ClusterCapReached)
        );
        apply(
            &mut state,
            Command::StartRuns {
                runs: vec![first(job, 0)],
                runs_in_flight_max: None,
            },
        );
        assert_eq!(
            state.start_refusal(&first(job, 0), None),
            Some(StartRefusal::JobConcurrencyReached),
            "concurrency is judged before the node itself"
        );
        // Another job wants node a, which the first job is running.
        let other = submit(&mut state, &[("a", &[]), ("d", &[])], 5);
        assert_eq!(
            state.start_refusal(&first(other, 0), None),
            Some(StartRefusal::NodeBusy)
        );
        assert_eq!(
            state.start_refusal(
                &RunStart {
                    job_id: other,
                    node_index: 1,
                    attempt: 2
                },
                None
            ),
            Some(StartRefusal::StaleDecision)
        );
        assert_eq!(state.start_refusal(&first(other, 1), None), None);
        apply(&mut state, Command::StopJob { job_id: other });
        assert_eq!(
            state.start_refusal(&first(other, 1), None),
            Some(StartRefusal::JobNotRunning),
            "a stopped job starts nothing new"
        );
    }
}
