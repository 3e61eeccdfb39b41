//! The scheduler: a pure function from the applied state to the decisions the leader should
//! propose next. It never mutates anything and never dispatches: its decisions become a
//! `StartRuns` command, and only once that is committed and applied do runs start (and
//! `ClusterState::apply` re-checks every rule, so a decision made on stale state is refused).
//!
//! Whether a run may start is [`crate::start_rule`]'s one rule, which `apply` calls too. This
//! file only decides the order (older jobs first — FIFO by job id — and within a job, plan
//! order) and bounds a command's size.

use crate::command::RunStart;
use crate::ids::JobId;
use crate::job::Job;
use crate::node_run::NodeState;
use crate::start_rule::{Occupancy, StartRefusal, start_refusal};
use crate::state::ClusterState;
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct SchedulerLimits {
    /// Runs in flight over all jobs (PE's `task_concurrency`, default 250).
    pub runs_in_flight_max: usize,
    /// Most starts proposed in one command, to bound entry size.
    pub starts_per_command_max: usize,
}

impl Default for SchedulerLimits {
    fn default() -> Self {
        SchedulerLimits {
            runs_in_flight_max: 250,
            starts_per_command_max: 1000,
        }
    }
}

/// The runs that may start now.
pub fn schedule(state: &ClusterState, limits: &SchedulerLimits) -> Vec<RunStart> {
    let mut budget = Budget {
        in_flight_total: state.in_flight().len(),
        claimed_nodes: BTreeSet::new(),
        starts: Vec::new(),
    };
    for job in state.active_jobs() {
        if !job_starts(state, job, limits, &mut budget) {
            break;
        }
    }
    budget.starts
}

/// The runs of `job_id` alone that may start now (a new job's first starts, decided in the
/// entry that submits it). Other jobs' waiting runs are left to [`schedule`]; a node another
/// job is running stays busy either way.
pub fn starts_for_job(
    state: &ClusterState,
    job_id: JobId,
    limits: &SchedulerLimits,
) -> Vec<RunStart> {
    let mut budget = Budget {
        in_flight_total: state.in_flight().len(),
        claimed_nodes: BTreeSet::new(),
        starts: Vec::new(),
    };
    if let Some(job) = state.jobs().get(&job_id) {
        job_starts(state, job, limits, &mut budget);
    }
    budget.starts
}

/// What one scheduling pass has used up so far.
struct Budget<'a> {
    in_flight_total: usize,
    claimed_nodes: BTreeSet<&'a str>,
    starts: Vec<RunStart>,
}

/// Adds `job`'s startable runs to `budget`, each judged by [`start_refusal`] as `apply` will
/// judge it; false once the cluster-wide cap or the command's size is reached.
fn job_starts<'a>(
    state: &ClusterState,
    job: &'a Job,
    limits: &SchedulerLimits,
    budget: &mut Budget<'a>,
) -> bool {
    let mut job_runs_in_flight = job.runs_in_flight();
    for (index, run) in job.runs.iter().enumerate() {
        if budget.starts.len() >= limits.starts_per_command_max {
            return false;
        }
        if run.state != NodeState::New {
            continue;
        }
        let start = RunStart {
            job_id: job.id,
            node_index: index as u32,
            attempt: run.attempt + 1,
        };
        let claimed = &budget.claimed_nodes;
        let node_busy =
            |name: &str| state.busy_nodes().contains_key(name) || claimed.contains(name);
        let occupancy = Occupancy {
            runs_in_flight: budget.in_flight_total,
            runs_in_flight_max: Some(limits.runs_in_flight_max),
            job_runs_in_flight,
            node_busy: &node_busy,
        };
        match start_refusal(job, &start, &occupancy) {
            None => {}
            Some(StartRefusal::ClusterCapReached) => return false,
            Some(refusal) if refusal.refuses_whole_job() => return true,
            Some(_) => continue,
        }
        budget.claimed_nodes.insert(&job.plan.nodes()[index].name);
        budget.starts.push(start);
        job_runs_in_flight += 1;
        budget.in_flight_total += 1;
    }
    true
}

/// Runs whose agent has been out of reach for `timeout_ms` of leader time: disconnected for
/// that long, or never connected since the run started that long ago. Returns
/// `(transaction id, reason)`.
pub fn unreachable_runs(
    state: &ClusterState,
    now_ms: u64,
    timeout_ms: u64,
) -> Vec<(String, String)> {
    let mut expired = Vec::new();
    for (transaction_id, txn) in state.in_flight() {
        let Some(job) = state.job(txn.job_id) else {
            continue;
        };
        let index = txn.node_index as usize;
        let name = &job.plan.nodes()[index].name;
        let run = &job.runs[index];
        let out_of_reach_since = match state.inventory().get(name) {
            Some(record) if record.connected => continue,
            Some(record) => record.since_ms.max(run.start_ms.unwrap_or(0)),
            None => run.start_ms.unwrap_or(0),
        };
        if now_ms.saturating_sub(out_of_reach_since) >= timeout_ms {
            expired.push((
                transaction_id.clone(),
                format!(
                    "unreachable: the agent of {name} was not connected for {} s",
                    timeout_ms / 1000
                ),
            ));
        }
    }
    expired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Outcome, Request, RunOutcome};
    use crate::ids::JobId;
    use crate::job::{JobSpec, JobState, Target};
    use crate::node_run::RunResult;
    use crate::plan::{Plan, PlannedNode};

    fn spec(concurrency: Option<u32>) -> JobSpec {
        JobSpec {
            environment: "production".into(),
            target: Target::Nodes(vec![]),
            noop: false,
            no_noop: false,
            concurrency,
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
        }
    }

    fn chain(names: &[&str]) -> Plan {
        Plan::new(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| PlannedNode {
                    name: n.to_string(),
                    depends_on: if i == 0 { vec![] } else { vec![i as u32 - 1] },
                    components: vec![],
                })
                .collect(),
        )
        .unwrap()
    }

    /// A plan from `(name, dependencies)` pairs.
    fn plan(nodes: &[(&str, &[u32])]) -> Plan {
        Plan::new(
            nodes
                .iter()
                .map(|(name, deps)| PlannedNode {
                    name: name.to_string(),
                    depends_on: deps.to_vec(),
                    components: vec![],
                })
                .collect(),
        )
        .unwrap()
    }

    struct World {
        state: ClusterState,
        now: u64,
    }

    impl World {
        fn new() -> World {
            let mut w = World {
                state: ClusterState::new(),
                now: 1000,
            };
            w.apply(Command::SetClusterId {
                cluster_id: "c".into(),
            });
            w
        }
        fn apply(&mut self, command: Command) -> Outcome {
            self.now += 1;
            self.state.apply(Request {
                request_id: None,
                now_ms: self.now,
                command,
                origin: None,
            })
        }
        fn submit(&mut self, plan: Plan, concurrency: Option<u32>) -> JobId {
            match self.apply(Command::SubmitJob {
                spec: spec(concurrency),
                plan,
                start_under_cap: None,
            }) {
                Outcome::JobSubmitted { job_id, started } => {
                    assert!(started.is_empty(), "nothing starts without a cap stamped");
                    job_id
                }
                other => panic!("submit failed: {other:?}"),
            }
        }
        /// Submits with the leader's cap stamped: returns the job and the names started at once.
        fn submit_starting(
            &mut self,
            plan: Plan,
            concurrency: Option<u32>,
            cap: u32,
        ) -> (JobId, Vec<String>) {
            match self.apply(Command::SubmitJob {
                spec: spec(concurrency),
                plan,
                start_under_cap: Some(cap),
            }) {
                Outcome::JobSubmitted { job_id, started } => {
                    (job_id, started.into_iter().map(|s| s.node).collect())
                }
                other => panic!("submit failed: {other:?}"),
            }
        }
        /// Schedules and applies the decisions; returns the names started.
        fn step(&mut self, limits: &SchedulerLimits) -> Vec<String> {
            let runs = schedule(&self.state, limits);
            match self.apply(Command::StartRuns {
                runs,
                runs_in_flight_max: Some(limits.runs_in_flight_max as u32),
            }) {
                Outcome::RunsStarted { started, refused } => {
                    assert_eq!(refused, 0, "the scheduler proposed something apply refused");
                    started.into_iter().map(|s| s.node).collect()
                }
                other => panic!("{other:?}"),
            }
        }
        fn report(&mut self, job: JobId, node: &str, ok: bool) {
            let txn = self
                .state
                .in_flight()
                .iter()
                .find(|(_, t)| {
                    t.job_id == job
                        && self.state.job(job).unwrap().plan.nodes()[t.node_index as usize].name
                            == node
                })
                .map(|(id, _)| id.clone())
                .expect("node is running");
            let result = RunResult::default();
            let outcome = if ok {
                RunOutcome::Finished(result)
            } else {
                RunOutcome::Failed(result)
            };
            let applied = self.apply(Command::ReportRun {
                transaction_id: txn,
                outcome,
            });
            assert!(
                matches!(applied, Outcome::ReportAccepted { .. }),
                "{applied:?}"
            );
        }
    }

    /// The scheduler walks only the jobs not yet terminal; that index is derived, not stored,
    /// so a state decoded from a snapshot must rebuild exactly what applying built.
    #[test]
    fn only_unfinished_jobs_are_walked_and_a_decoded_state_rebuilds_them() {
        let mut w = World::new();
        let limits = SchedulerLimits::default();
        let done = w.submit(chain(&["a"]), None);
        let stopped = w.submit(chain(&["b", "c"]), None);
        let waiting = w.submit(chain(&["d"]), None);
        assert_eq!(w.step(&limits), vec!["a", "b", "d"]);
        w.report(done, "a", true);
        w.apply(Command::StopJob { job_id: stopped });
        w.report(stopped, "b", true);
        let active: Vec<JobId> = w.state.active_jobs().map(|job| job.id).collect();
        assert_eq!(active, vec![waiting]);
        let expected: Vec<JobId> = w
            .state
            .jobs()
            .values()
            .filter(|job| !job.state().is_terminal())
            .map(|job| job.id)
            .collect();
        assert_eq!(active, expected);

        let version = crate::format_version::FORMAT_VERSION;
        let json = serde_json::to_string(&w.state.stored(version).unwrap()).unwrap();
        let decoded = ClusterState::deserialize_stored(
            version,
            &mut serde_json::Deserializer::from_str(&json),
        )
        .unwrap();
        assert_eq!(decoded, w.state, "the derived index is rebuilt on decode");
        w.report(waiting, "d", false);
        assert_eq!(w.state.active_jobs().count(), 0);
        assert!(w.step(&limits).is_empty());
    }

    #[test]
    fn consumer_waits_for_every_producer() {
        let mut w = World::new();
        let job = w.submit(chain(&["db", "app", "lb"]), None);
        let limits = SchedulerLimits::default();
        assert_eq!(w.step(&limits), vec!["db"]);
        assert!(w.step(&limits).is_empty(), "app must wait for db");
        w.report(job, "db", true);
        assert_eq!(w.step(&limits), vec!["app"]);
        w.report(job, "app", true);
        assert_eq!(w.step(&limits), vec!["lb"]);
        w.report(job, "lb", true);
        assert_eq!(w.state.job(job).unwrap().state(), JobState::Finished);
    }

    #[test]
    fn dependents_of_a_failed_node_are_skipped_and_others_go_on() {
        let mut w = World::new();
        let mut nodes = chain(&["db", "app", "lb"]).nodes().to_vec();
        nodes.push(PlannedNode {
            name: "other".into(),
            depends_on: vec![],
            components: vec![],
        });
        let job = w.submit(Plan::new(nodes).unwrap(), None);
        let limits = SchedulerLimits::default();
        assert_eq!(w.step(&limits), vec!["db", "other"]);
        w.report(job, "db", false);
        let j = w.state.job(job).unwrap();
        assert_eq!(j.runs[1].state, NodeState::Skipped);
        assert_eq!(j.runs[2].state, NodeState::Skipped);
        assert_eq!(j.runs[3].state, NodeState::Running);
        w.report(job, "other", true);
        assert_eq!(
            w.state.job(job).unwrap().state(),
            JobState::Finished,
            "node failures still finish the job"
        );
    }

    /// Rewording a message must not change replicated bytes, or nodes of two versions would
    /// hold different states after the same entries: the state keeps facts, and the words
    /// are rendered when read.
    #[test]
    fn events_and_skips_are_stored_as_facts_and_rendered_when_read() {
        let mut w = World::new();
        let job = w.submit(chain(&["db", "app"]), None);
        let limits = SchedulerLimits::default();
        assert_eq!(w.step(&limits), vec!["db"]);
        w.report(job, "db", false);
        let version = crate::format_version::FORMAT_VERSION;
        let stored = serde_json::to_string(&w.state.stored(version).unwrap()).unwrap();
        for words in ["puppet run", "skipped because", "Job 1"] {
            assert!(
                !stored.contains(words),
                "the state holds display text {words:?}"
            );
        }
        let j = w.state.job(job).unwrap();
        let messages: Vec<String> = j.events.iter().map(|e| e.message(j)).collect();
        assert_eq!(
            messages,
            [
                "Started puppet run on db ...",
                "Finished puppet run on db - Failed!",
                "Skipped puppet run on app: skipped because db failed",
                "Job 1 finished",
            ]
        );
        assert_eq!(
            j.runs[1].explanation().as_deref(),
            Some("skipped because db failed")
        );
    }

    #[test]
    fn concurrency_one_runs_one_at_a_time() {
        let mut w = World::new();
        let job = w.submit(
            Plan::independent(["a", "b", "c"].map(String::from)).unwrap(),
            Some(1),
        );
        let limits = SchedulerLimits::default();
        for expected in ["a", "b", "c"] {
            assert_eq!(w.step(&limits), vec![expected]);
            assert!(w.step(&limits).is_empty());
            w.report(job, expected, true);
        }
    }

    #[test]
    fn a_node_in_two_jobs_runs_one_at_a_time() {
        let mut w = World::new();
        let first = w.submit(Plan::independent(["shared".to_string()]).unwrap(), None);
        let second = w.submit(
            Plan::independent(["shared".to_string(), "solo".to_string()]).unwrap(),
            None,
        );
        let limits = SchedulerLimits::default();
        let started = w.step(&limits);
        assert_eq!(
            started,
            vec!["shared", "solo"],
            "second job's shared node waits; solo goes"
        );
        w.report(first, "shared", true);
        assert_eq!(w.step(&limits), vec!["shared"]);
        w.report(second, "shared", true);
    }

    #[test]
    fn cluster_cap_bounds_runs_in_flight() {
        let mut w = World::new();
        w.submit(
            Plan::independent((0..10).map(|i| format!("n{i}"))).unwrap(),
            None,
        );
        let limits = SchedulerLimits {
            runs_in_flight_max: 4,
            starts_per_command_max: 100,
        };
        assert_eq!(w.step(&limits).len(), 4);
        assert!(w.step(&limits).is_empty());
    }

    #[test]
    fn stop_starts_nothing_new() {
        let mut w = World::new();
        let job = w.submit(
            Plan::independent(["a", "b"].map(String::from)).unwrap(),
            Some(1),
        );
        let limits = SchedulerLimits::default();
        assert_eq!(w.step(&limits), vec!["a"]);
        w.apply(Command::StopJob { job_id: job });
        assert_eq!(w.state.job(job).unwrap().state(), JobState::Stopping);
        assert!(w.step(&limits).is_empty());
        w.report(job, "a", true);
        let j = w.state.job(job).unwrap();
        assert_eq!(j.state(), JobState::Stopped);
        assert_eq!(j.runs[1].state, NodeState::Skipped);
    }

    #[test]
    fn stale_decision_and_duplicate_report_are_refused() {
        let mut w = World::new();
        let job = w.submit(Plan::independent(["a".to_string()]).unwrap(), None);
        let decisions = schedule(&w.state, &SchedulerLimits::default());
        w.apply(Command::StartRuns {
            runs: decisions.clone(),
            runs_in_flight_max: None,
        });
        match w.apply(Command::StartRuns {
            runs: decisions,
            runs_in_flight_max: None,
        }) {
            Outcome::RunsStarted { started, refused } => {
                assert!(started.is_empty());
                assert_eq!(refused, 1);
            }
            other => panic!("{other:?}"),
        }
        w.report(job, "a", true);
        let again = w.apply(Command::ReportRun {
            transaction_id: "c-1-0-1".into(),
            outcome: RunOutcome::Finished(RunResult::default()),
        });
        assert!(matches!(again, Outcome::Rejected(_)), "{again:?}");
        assert_eq!(w.state.job(job).unwrap().state(), JobState::Finished);
    }

    #[test]
    fn disconnected_agent_expires_after_the_timeout() {
        let mut w = World::new();
        w.apply(Command::AgentConnected {
            certname: "a".into(),
            via_node: 1,
            session: "s1".into(),
        });
        w.submit(Plan::independent(["a".to_string()]).unwrap(), None);
        w.step(&SchedulerLimits::default());
        assert!(
            unreachable_runs(&w.state, w.now + 60_000, 30_000).is_empty(),
            "connected agents never expire"
        );
        w.apply(Command::AgentDisconnected {
            certname: "a".into(),
            via_node: 1,
            session: "s1".into(),
        });
        let since = w.now;
        assert!(unreachable_runs(&w.state, since + 29_999, 30_000).is_empty());
        assert_eq!(unreachable_runs(&w.state, since + 30_000, 30_000).len(), 1);
    }

    #[test]
    fn a_submission_starts_its_ready_runs_in_the_same_entry_under_every_rule() {
        let mut w = World::new();
        // b depends on a; c is independent; concurrency 1 lets only a start.
        let (job, started) =
            w.submit_starting(plan(&[("a", &[]), ("b", &[0]), ("c", &[])]), Some(1), 250);
        assert_eq!(started, vec!["a"]);
        assert_eq!(w.state.job(job).unwrap().runs_in_flight(), 1);
        // A second job sharing node c, no concurrency limit, cap of 2 runs cluster-wide:
        // one is already in flight, so only one more starts.
        let (_, started) = w.submit_starting(plan(&[("c", &[]), ("d", &[])]), None, 2);
        assert_eq!(started, vec!["c"]);
        // Node a is busy with the first job: a third job's a waits.
        let (_, started) = w.submit_starting(plan(&[("a", &[])]), None, 250);
        assert!(started.is_empty(), "a node never runs two jobs at once");
    }

    #[test]
    fn apply_refuses_starts_beyond_the_stamped_cluster_cap() {
        let mut w = World::new();
        let job = w.submit(
            Plan::independent(["a".to_string(), "b".to_string()]).unwrap(),
            None,
        );
        // A decision made when nothing ran, applied after another start took the only slot.
        let decisions = schedule(&w.state, &SchedulerLimits::default());
        assert_eq!(decisions.len(), 2);
        let (_, started) =
            w.submit_starting(Plan::independent(["c".to_string()]).unwrap(), None, 1);
        assert_eq!(started, vec!["c"]);
        match w.apply(Command::StartRuns {
            runs: decisions,
            runs_in_flight_max: Some(1),
        }) {
            Outcome::RunsStarted { started, refused } => {
                assert!(started.is_empty(), "the cap of 1 is taken: {started:?}");
                assert_eq!(refused, 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.state.job(job).unwrap().runs_in_flight(), 0);
    }

    #[test]
    fn retention_drops_old_and_surplus_ended_jobs_never_running_ones() {
        let mut w = World::new();
        let running = w.submit(chain(&["busy"]), None);
        let mut ended = Vec::new();
        for i in 0..5 {
            let job = w.submit(chain(&[&format!("n{i}")]), None);
            w.apply(Command::StopJob { job_id: job });
            ended.push(job);
        }
        w.step(&SchedulerLimits::default());
        assert_eq!(w.state.ended_job_count(), 5);
        // Keep the newest 3 ended jobs: the two oldest go, the running one stays.
        let outcome = w.apply(Command::PruneJobs {
            finished_before_ms: 0,
            ended_kept_max: Some(3),
        });
        assert_eq!(outcome, Outcome::Pruned { jobs: 2 });
        assert!(
            w.state.job(running).is_some(),
            "a job not yet ended is never dropped"
        );
        assert!(w.state.job(ended[0]).is_none() && w.state.job(ended[1]).is_none());
        assert!(ended[2..].iter().all(|id| w.state.job(*id).is_some()));
        // By age: everything that ended before now goes, the running job stays.
        let now = w.now + 10;
        let outcome = w.apply(Command::PruneJobs {
            finished_before_ms: now,
            ended_kept_max: None,
        });
        assert_eq!(outcome, Outcome::Pruned { jobs: 3 });
        assert_eq!(w.state.jobs().len(), 1);
        assert_eq!(w.state.oldest_ended_job_ms(), None);
        // Ids continue after pruning.
        let next = w.submit(chain(&["later"]), None);
        assert_eq!(next.0, ended[4].0 + 1);
    }
}
