//! The clients: submit jobs over random plans (random DAGs and plans of generated
//! application models) or task jobs with generated parameters ([`crate::tasks`]; the task's
//! code is redeployed now and then), with random concurrency limits, through random nodes, retrying a
//! timed-out submission through another node under the same request id; and stop jobs.
//! Every submission and every acknowledgement is recorded for the checkers, and every
//! operation (submit, stop, show) with its invocation and answer in a [`History`] for the
//! linearizability check. A job's description is its request id, so the final state tells
//! which request created each job.

use crate::access::{Setup, SimUser};
use crate::history::{Call, History, Phase, Return};
use crate::models;
use crate::tasks::SimCode;
use crate::world::World;
use porch_core::{Command, JobId, JobSpec, Outcome, Plan, PlannedNode, Target};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a client waits for one attempt of a submission.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The chance that the task's code is redeployed just before a task submission.
const REDEPLOY_PER_TASK: f64 = 0.3;

/// One submission as the client saw it.
#[derive(Clone, Debug)]
pub struct Submission {
    pub request_id: String,
    pub plan: Plan,
    pub sent_ms: u64,
    /// Every acknowledgement received: (at ms, job id). Retries may be acknowledged too;
    /// they must all name the same job.
    pub acks: Vec<(u64, JobId)>,
    /// Whose token it was sent with: a viewer's submission must never be acknowledged.
    pub user: SimUser,
}

pub struct Workload {
    rng: SmallRng,
    /// The reads' own random source: reads came later, and a seed's submissions must not
    /// change with them.
    reads_rng: SmallRng,
    /// The task submissions' own random source (tasks came later too).
    tasks_rng: SmallRng,
    /// The share of submissions that are task jobs.
    task_share: f64,
    /// The code the nodes find the task in.
    code: SimCode,
    jobs: usize,
    agents: usize,
    submitted: usize,
    /// Generated models or task requests that porch refused to plan (a bug: they are valid by
    /// construction), or a task redeploy that could not be written.
    pub generation_errors: Vec<String>,
    pub submissions: Arc<Mutex<Vec<Submission>>>,
    /// Users, roles and tokens, committed before the first submission.
    access: Arc<Setup>,
    pub history: History,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Workload {
    pub fn new(seed: u64, jobs: usize, agents: usize, task_share: f64, code: SimCode) -> Workload {
        Workload {
            rng: SmallRng::seed_from_u64(seed ^ 0x0b5e_55ed),
            reads_rng: SmallRng::seed_from_u64(seed ^ 0x4ead_5eed),
            tasks_rng: SmallRng::seed_from_u64(seed ^ 0x7a5c_5eed),
            task_share,
            code,
            jobs,
            agents,
            submitted: 0,
            generation_errors: Vec::new(),
            submissions: Arc::default(),
            access: Arc::default(),
            history: History::default(),
        }
    }

    /// The users and tokens are committed: clients may act.
    pub fn access_ready(&self) -> bool {
        self.access.done()
    }

    pub fn all_submitted(&self) -> bool {
        self.submitted >= self.jobs
    }

    /// Acknowledged submissions: (first job id acknowledged, plan), in acknowledgement order.
    pub fn acknowledged(&self) -> Vec<(JobId, Plan)> {
        let submissions = lock(&self.submissions);
        let mut acked: Vec<(u64, JobId, Plan)> = submissions
            .iter()
            .filter_map(|s| s.acks.first().map(|&(at, id)| (at, id, s.plan.clone())))
            .collect();
        acked.sort_by_key(|(at, id, _)| (*at, *id));
        acked.into_iter().map(|(_, id, plan)| (id, plan)).collect()
    }

    /// Submits the next job if one is due: jobs are spread evenly over `phase_ms`.
    pub fn step(&mut self, world: &World, phase_ms: u64) {
        if self.all_submitted() {
            return;
        }
        let due = self.submitted as u64 * phase_ms / self.jobs as u64;
        if world.now_ms() < due {
            return;
        }
        let live = world.live_consensus();
        if live.is_empty() {
            return;
        }
        if !self.access.done() {
            self.access
                .attempt(live[self.rng.random_range(0..live.len())].clone());
            return;
        }
        self.submitted += 1;
        // One in ten submissions is a viewer's: `apply` must refuse every one of them.
        let user = if self.rng.random_bool(0.1) {
            SimUser::Viewer
        } else {
            SimUser::Operator
        };
        let mut plan = if self.rng.random_bool(0.5) {
            random_plan(&mut self.rng, self.agents)
        } else {
            match models::random_application_plan(&mut self.rng, self.agents) {
                Ok(plan) => plan,
                Err(e) => {
                    self.generation_errors.push(e);
                    return;
                }
            }
        };
        let request_id = format!("sim-submit-{}", self.submitted);
        // Drawn for every submission, so a task job does not move the seed's other draws.
        let mut spec = random_spec(&mut self.rng, &plan, &request_id);
        if self.tasks_rng.random_bool(self.task_share) {
            if self.tasks_rng.random_bool(REDEPLOY_PER_TASK) {
                if let Err(e) = self.code.redeploy() {
                    self.generation_errors.push(e);
                    return;
                }
                world.log(format!(
                    "task code redeployed (version {})",
                    self.code.version()
                ));
            }
            let nodes = plan.nodes().iter().map(|n| n.name.clone()).collect();
            match crate::tasks::task_job(&mut self.tasks_rng, &self.code, nodes, &request_id) {
                Ok((task_spec, task_plan)) => (spec, plan) = (task_spec, task_plan),
                Err(e) => {
                    self.generation_errors.push(e);
                    return;
                }
            }
        }
        let first = live[self.rng.random_range(0..live.len())].clone();
        let second = live[self.rng.random_range(0..live.len())].clone();
        let sent_ms = world.now_ms();
        let operation = self.history.invoke(
            Call::Submit {
                request_id: request_id.clone(),
            },
            sent_ms,
        );
        let history = self.history.clone();
        let index = {
            let mut submissions = lock(&self.submissions);
            submissions.push(Submission {
                request_id: request_id.clone(),
                plan: plan.clone(),
                sent_ms,
                acks: Vec::new(),
                user,
            });
            submissions.len() - 1
        };
        let submissions = self.submissions.clone();
        let trace = world.trace.clone();
        let clock = world.clock.clone();
        let command = Command::SubmitJob {
            spec,
            plan,
            start_under_cap: None,
        };
        world.log(format!("client submits {request_id}"));
        tokio::spawn(async move {
            // The first attempt, then one retry through another node under the same request id.
            for via in [first, second] {
                let reply = tokio::time::timeout(
                    SUBMIT_TIMEOUT,
                    via.write_on_behalf(
                        Some(request_id.clone()),
                        command.clone(),
                        Some(user.origin(via.id)),
                    ),
                )
                .await;
                let now = crate::world::elapsed_ms(clock.as_ref());
                if let Ok(Ok(Outcome::Rejected(_))) = reply {
                    // Decided: the request log answers any retry the same way.
                    history.complete(operation, now, Return::Refused);
                    return;
                }
                if let Ok(Ok(Outcome::JobSubmitted { job_id, .. })) = reply {
                    history.complete(operation, now, Return::Submitted { job: job_id.0 });
                    lock(&submissions)[index].acks.push((now, job_id));
                    lock(&trace).push(
                        now,
                        format!(
                            "{request_id} acknowledged as job {job_id} (via node {})",
                            via.id
                        ),
                    );
                    return;
                }
            }
        });
    }

    /// Stops a random acknowledged job, in the background.
    pub fn stop_random(&mut self, world: &World) {
        let acknowledged = self.acknowledged();
        let live = world.live_consensus();
        if acknowledged.is_empty() || live.is_empty() {
            return;
        }
        let job_id = acknowledged[self.rng.random_range(0..acknowledged.len())].0;
        let via = live[self.rng.random_range(0..live.len())].clone();
        world.log(format!("client stops job {job_id}"));
        let history = self.history.clone();
        let operation = history.invoke(Call::Stop { job: job_id.0 }, world.now_ms());
        let clock = world.clock.clone();
        tokio::spawn(async move {
            let origin = Some(SimUser::Operator.origin(via.id));
            let stop = via.write_on_behalf(None, Command::StopJob { job_id }, origin);
            let answer = match tokio::time::timeout(SUBMIT_TIMEOUT, stop).await {
                Ok(Ok(Outcome::JobStopped { .. })) => Return::Stopped,
                Ok(Ok(Outcome::Rejected(porch_core::Rejection::UnknownJob(_)))) => {
                    Return::UnknownJob
                }
                _ => return, // no answer: it may or may not have taken effect
            };
            history.complete(operation, crate::world::elapsed_ms(&clock), answer);
        });
    }

    /// With probability `per_step`, reads a random job — one acknowledged, or one id past
    /// them — through a random node, with a linearizable read (ReadIndex, then the node's
    /// applied state), in the background.
    pub fn maybe_show(&mut self, world: &World, per_step: f64) {
        let live = world.live_consensus();
        if live.is_empty() || per_step <= 0.0 || !self.reads_rng.random_bool(per_step.min(1.0)) {
            return;
        }
        let highest = self
            .acknowledged()
            .iter()
            .map(|(id, _)| id.0)
            .max()
            .unwrap_or(0);
        let job = self.reads_rng.random_range(1..=highest + 1);
        let via = live[self.reads_rng.random_range(0..live.len())].clone();
        let history = self.history.clone();
        let operation = history.invoke(Call::Show { job }, world.now_ms());
        let clock = world.clock.clone();
        tokio::spawn(async move {
            let read = tokio::time::timeout(SUBMIT_TIMEOUT, via.read_barrier()).await;
            if !matches!(read, Ok(Ok(()))) {
                return; // no answer
            }
            let view = via.view.read();
            let cluster = &view.cluster;
            let answer = match cluster.job(JobId(job)) {
                // The leader, not a client, created it: outside the registry model (a read
                // left unanswered constrains nothing); `occurrence_once` checks those jobs.
                Some(_) if cluster.schedules().job_origin(JobId(job)).is_some() => return,
                None => Return::NotFound,
                Some(found) => Return::Found {
                    request_id: found.spec.description.clone().unwrap_or_default(),
                    phase: Phase::of(found.state()),
                },
            };
            drop(view);
            history.complete(operation, crate::world::elapsed_ms(&clock), answer);
        });
    }
}

/// A random DAG over a random subset of the agents.
pub fn random_plan(rng: &mut SmallRng, agents: usize) -> Plan {
    let size = rng.random_range(1..=agents.min(8));
    let names = shuffled_agents(rng, agents);
    let nodes = names[..size]
        .iter()
        .enumerate()
        .map(|(i, name)| PlannedNode {
            name: name.clone(),
            depends_on: (0..i as u32).filter(|_| rng.random_bool(0.35)).collect(),
            components: Vec::new(),
        })
        .collect();
    Plan::new(nodes).expect("edges only point backwards, so the plan is acyclic")
}

/// The agents' certnames in random order.
pub fn shuffled_agents(rng: &mut SmallRng, agents: usize) -> Vec<String> {
    let mut names: Vec<String> = (1..=agents).map(|i| format!("agent{i}")).collect();
    for i in (1..names.len()).rev() {
        let j = rng.random_range(0..=i);
        names.swap(i, j);
    }
    names
}

fn random_spec(rng: &mut SmallRng, plan: &Plan, request_id: &str) -> JobSpec {
    JobSpec {
        environment: "production".into(),
        target: Target::Nodes(plan.nodes().iter().map(|n| n.name.clone()).collect()),
        noop: rng.random_bool(0.2),
        no_noop: false,
        concurrency: match rng.random_range(0..4) {
            0 => None,
            n => Some(n),
        },
        enforce_environment: true,
        debug: false,
        trace: false,
        evaltrace: false,
        description: Some(request_id.into()),
        // Whatever a request claims, `apply` makes the token's user the owner.
        owner: porch_core::Actor {
            id: "forged".into(),
            login: "forged".into(),
        },
        task: None,
    }
}
