//! One seeded run: start the cluster and agents, drive a random workload under random faults
//! (safety phase), heal everything, require every job to end (liveness phase), and check the
//! invariants as it goes. Everything random comes from the seed; time is simulated.

use crate::config::SimConfig;
use crate::invariants::{Checkers, Observation, Violation};
use crate::world::{RUNS_IN_FLIGHT_MAX, World};
use porch_core::{Command, JobId, JobSpec, Outcome, Plan, PlannedNode, Target};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Simulated time between two steps of the driver (faults, submissions, checks).
const STEP: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub trace_hash: u64,
    pub simulated_ms: u64,
    pub jobs: usize,
    pub executions: usize,
    pub events: usize,
}

#[derive(Debug)]
pub enum Failure {
    Violation {
        violation: Violation,
        trace_tail: String,
        at_ms: u64,
    },
    Liveness {
        detail: String,
        trace_tail: String,
    },
    Budget {
        detail: String,
    },
    Setup(String),
}

/// A random DAG over a random subset of the agents.
fn random_plan(rng: &mut SmallRng, agents: usize) -> Plan {
    let size = rng.random_range(1..=agents.min(6));
    let mut names: Vec<usize> = (1..=agents).collect();
    for i in (1..names.len()).rev() {
        let j = rng.random_range(0..=i);
        names.swap(i, j);
    }
    let nodes = names[..size]
        .iter()
        .enumerate()
        .map(|(i, agent)| PlannedNode {
            name: format!("agent{agent}"),
            depends_on: (0..i as u32).filter(|_| rng.random_bool(0.35)).collect(),
            components: Vec::new(),
        })
        .collect();
    Plan::new(nodes).expect("edges only point backwards, so the plan is acyclic")
}

fn spec(rng: &mut SmallRng) -> JobSpec {
    JobSpec {
        environment: "production".into(),
        target: Target::Nodes(Vec::new()),
        noop: false,
        no_noop: false,
        concurrency: match rng.random_range(0..4) {
            0 => None,
            n => Some(n),
        },
        enforce_environment: true,
        debug: false,
        trace: false,
        evaltrace: false,
        description: None,
        owner: "sim".into(),
    }
}

pub async fn run(config: &SimConfig, spool_root: &std::path::Path) -> Result<Report, Failure> {
    let wall_start = std::time::Instant::now();
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let mut world = World::new(config.seed, config.nodes, config.agents, spool_root);
    for i in 0..config.nodes {
        world.start_node(i).await.map_err(Failure::Setup)?;
    }
    for i in 0..config.agents {
        world.start_agent(i).map_err(Failure::Setup)?;
    }
    let mut checkers = Checkers::default();
    let mut acknowledged: Vec<(JobId, Plan)> = Vec::new();
    let mut submitted = 0usize;
    let steps_per_second = 1000 / STEP.as_millis() as u64;
    let fault_steps = config.fault_phase_ms / STEP.as_millis() as u64;
    let per_step = |rate: f64| rate / steps_per_second as f64;
    let check =
        |world: &World, checkers: &mut Checkers, acknowledged: &[(JobId, Plan)], last: bool| {
            let views = world.views();
            let executions = world
                .executions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let observation = Observation {
                now_ms: world.now_ms(),
                nodes: &views,
                executions: &executions,
                acknowledged,
                runs_in_flight_max: RUNS_IN_FLIGHT_MAX,
            };
            let found = if last {
                checkers.check_final(&observation)
            } else {
                checkers.check(&observation)
            };
            found.into_iter().next()
        };
    let fail = |world: &World, violation: Violation| Failure::Violation {
        at_ms: world.now_ms(),
        trace_tail: world
            .trace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tail(trace_lines()),
        violation,
    };

    // Safety phase: workload and faults.
    for step in 0..fault_steps {
        tokio::time::sleep(STEP).await;
        if wall_start.elapsed().as_secs() > config.wall_budget_s {
            return Err(Failure::Budget {
                detail: format!(
                    "over the {} s wall-clock budget in the fault phase",
                    config.wall_budget_s
                ),
            });
        }
        if submitted < config.jobs && step % (fault_steps / config.jobs.max(1) as u64).max(1) == 5 {
            let plan = random_plan(&mut rng, config.agents);
            let spec = spec(&mut rng);
            let live = world.live_consensus();
            if !live.is_empty() {
                let via = live[rng.random_range(0..live.len())].clone();
                submitted += 1;
                let request_id = format!("sim-submit-{submitted}");
                let command = Command::SubmitJob {
                    spec,
                    plan: plan.clone(),
                };
                if let Ok(Ok(Outcome::JobSubmitted { job_id })) = tokio::time::timeout(
                    Duration::from_secs(5),
                    via.write(Some(request_id), command),
                )
                .await
                {
                    world.log(format!("job {job_id} acknowledged ({} nodes)", plan.len()));
                    acknowledged.push((job_id, plan));
                }
            }
        }
        if rng.random_bool(per_step(config.stop_rate)) && !acknowledged.is_empty() {
            let job_id = acknowledged[rng.random_range(0..acknowledged.len())].0;
            if let Some(via) = world.live_consensus().first().cloned() {
                let stopped = tokio::time::timeout(
                    Duration::from_secs(5),
                    via.write(None, Command::StopJob { job_id }),
                )
                .await;
                if matches!(stopped, Ok(Ok(_))) {
                    world.log(format!("job {job_id} stopped"));
                }
            }
        }
        if rng.random_bool(per_step(config.crash_rate)) {
            let index = rng.random_range(0..world.nodes.len());
            let live = world.nodes.iter().filter(|n| n.node.is_some()).count();
            if world.nodes[index].node.is_some() && live * 2 > world.nodes.len() + 1 {
                world.crash_node(index, config.lose_unflushed).await;
            } else if world.nodes[index].node.is_none() {
                world.start_node(index).await.map_err(Failure::Setup)?;
            }
        }
        if rng.random_bool(per_step(config.partition_rate)) {
            let a = rng.random_range(0..world.nodes.len());
            let b = rng.random_range(0..world.nodes.len());
            if a != b {
                let (from, to) = (world.nodes[a].addr.clone(), world.nodes[b].addr.clone());
                world.net.cut(&from, &to);
                world.log(format!("link {from} -> {to} cut"));
            }
        }
        if rng.random_bool(per_step(config.partition_rate)) {
            world.net.heal();
            world.log("links healed".into());
        }
        if rng.random_bool(per_step(config.agent_crash_rate)) {
            let index = rng.random_range(0..world.agents.len());
            if world.agents[index].task.is_some() {
                world.crash_agent(index);
            } else {
                world.start_agent(index).map_err(Failure::Setup)?;
            }
        }
        if let Some(violation) = check(&world, &mut checkers, &acknowledged, false) {
            return Err(fail(&world, violation));
        }
    }

    // Liveness phase: heal everything; every job must end.
    world.net.heal();
    for i in 0..world.nodes.len() {
        if world.nodes[i].node.is_none() {
            world.start_node(i).await.map_err(Failure::Setup)?;
        }
    }
    for i in 0..world.agents.len() {
        if world.agents[i].task.is_none() {
            world.start_agent(i).map_err(Failure::Setup)?;
        }
    }
    world.log("healed".into());
    let liveness_deadline = world.now_ms() + config.liveness_ms;
    loop {
        tokio::time::sleep(STEP).await;
        if let Some(violation) = check(&world, &mut checkers, &acknowledged, false) {
            return Err(fail(&world, violation));
        }
        let views = world.views();
        let max_applied = views.iter().map(|v| v.applied_index).max().unwrap_or(0);
        let caught_up = views.iter().all(|v| v.applied_index == max_applied);
        let all_ended = views.first().is_some_and(|v| {
            acknowledged
                .iter()
                .all(|(id, _)| v.state.job(*id).is_some_and(|j| j.state().is_terminal()))
        });
        if caught_up && all_ended {
            break;
        }
        if world.now_ms() > liveness_deadline {
            let pending: Vec<String> = views
                .iter()
                .max_by_key(|v| v.applied_index)
                .map(|v| {
                    acknowledged
                        .iter()
                        .filter_map(|(id, _)| v.state.job(*id).filter(|j| !j.state().is_terminal()))
                        .map(|j| format!("job {} {:?} {:?}", j.id, j.state(), j.node_states()))
                        .collect()
                })
                .unwrap_or_default();
            let replicas: Vec<String> = views
                .iter()
                .map(|v| {
                    format!(
                        "node {} term {} leader {:?} applied {}",
                        v.id, v.term, v.leader, v.applied_index
                    )
                })
                .collect();
            return Err(Failure::Liveness {
                detail: format!(
                    "after healing, not every job ended within {} ms: {pending:?}; replicas: {replicas:?}",
                    config.liveness_ms
                ),
                trace_tail: world
                    .trace
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .tail(trace_lines()),
            });
        }
        if wall_start.elapsed().as_secs() > config.wall_budget_s {
            return Err(Failure::Budget {
                detail: format!(
                    "over the {} s wall-clock budget in the liveness phase",
                    config.wall_budget_s
                ),
            });
        }
    }
    if let Some(violation) = check(&world, &mut checkers, &acknowledged, true) {
        return Err(fail(&world, violation));
    }
    // Record the outcome in the trace so the hash covers it.
    if let Some(view) = world.views().into_iter().next() {
        for (id, _) in &acknowledged {
            if let Some(job) = view.state.job(*id) {
                world.log(format!(
                    "job {id} ended {:?} {:?}",
                    job.state(),
                    job.node_states()
                ));
            }
        }
    }
    let executions = world
        .executions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    let simulated_ms = world.now_ms();
    for i in 0..world.nodes.len() {
        world.crash_node(i, false).await;
    }
    for i in 0..world.agents.len() {
        world.crash_agent(i);
    }
    let trace = world.trace.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Report {
        seed: config.seed,
        trace_hash: trace.hash(),
        simulated_ms,
        jobs: acknowledged.len(),
        executions,
        events: trace.len(),
    })
}

/// Runs one seed on its own single-threaded runtime with paused (simulated) time and
/// tokio's scheduler randomness seeded from the seed.
pub fn run_seed(config: &SimConfig) -> Result<Report, Failure> {
    let spool =
        std::env::temp_dir().join(format!("porch-sim-{}-{}", std::process::id(), config.seed));
    let _ = std::fs::remove_dir_all(&spool);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .rng_seed(tokio::runtime::RngSeed::from_bytes(
            &config.seed.to_le_bytes(),
        ))
        .build()
        .map_err(|e| Failure::Setup(format!("cannot build the runtime: {e}")))?;
    let result = runtime.block_on(async {
        // Logs of this run, stamped with simulated time (`PORCH_LOG=info porch sim ...`).
        let _logs = tracing::subscriber::set_default(crate::trace::log_subscriber());
        run(config, &spool).await
    });
    drop(runtime);
    let _ = std::fs::remove_dir_all(&spool);
    result
}

/// Lines of trace printed with a failure (`PORCH_SIM_TRACE_LINES`, default 40).
fn trace_lines() -> usize {
    std::env::var("PORCH_SIM_TRACE_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}
