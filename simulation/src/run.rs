//! One seeded run: start the cluster and agents, drive a random workload under random faults
//! (safety phase), heal everything, require every job to end (liveness phase), and check the
//! invariants as it goes. Everything random comes from the seed; time is simulated.

use crate::config::{Fault, SimConfig};
use crate::faults::FaultInjector;
use crate::invariants::{Checkers, Observation, Violation};
use crate::schedules::ScheduleClient;
use crate::workload::Workload;
use crate::world::{RUNS_IN_FLIGHT_MAX, World};
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
    /// Of the executions, task runs.
    pub task_runs: usize,
    pub events: usize,
}

#[derive(Debug)]
pub enum Failure {
    Violation {
        violation: Violation,
        trace_tail: String,
        at_ms: u64,
        /// The hash of the trace up to the failure: a replay must fail the same way.
        trace_hash: u64,
    },
    Liveness {
        detail: String,
        trace_tail: String,
        trace_hash: u64,
    },
    Budget {
        detail: String,
    },
    Setup(String),
}

/// Everything a check needs, gathered from the world at one instant.
fn check(
    world: &World,
    checkers: &mut Checkers,
    workload: &Workload,
    healed_at_ms: Option<u64>,
    last: bool,
) -> Option<Violation> {
    let views = world.views();
    let applied = world.applied_samples();
    // Held, not copied, while the checkers run: they take no lock and do not yield, and
    // copying every record every 100 ms was 4 % of the simulation's time.
    let executions = world.executions.lock().unwrap_or_else(|p| p.into_inner());
    let submissions = workload
        .submissions
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let task_runs = world.task_runs.lock().unwrap_or_else(|p| p.into_inner());
    // The history is checked once, at the end (the search looks at all of it).
    let history = if last {
        workload.history.operations()
    } else {
        Vec::new()
    };
    let observation = Observation {
        now_ms: world.now_ms(),
        nodes: &views,
        executions: &executions,
        task_runs: &task_runs,
        submissions: &submissions,
        runs_in_flight_max: RUNS_IN_FLIGHT_MAX,
        applied: &applied,
        history: &history,
        healed_at_ms,
    };
    let found = if last {
        checkers.check_final(&observation)
    } else {
        checkers.check(&observation)
    };
    found.into_iter().next()
}

/// In production a node whose raft stopped exits and is restarted; in the simulation a raft
/// that stopped on its own (a panic inside openraft, a storage error) is a bug to report at
/// once, not a node left up and deaf until the liveness deadline.
async fn raft_running(world: &World) -> Result<(), Failure> {
    match world.stopped_raft().await {
        None => Ok(()),
        Some(detail) => Err(violation(
            world,
            Violation {
                invariant: "raft keeps running",
                detail,
            },
        )),
    }
}

/// A node or agent the faults stopped could not start again from what its disk kept: the
/// faults it met are ones it must survive, so this is a failure of porch, not of the setup.
/// Longest the schedules keep firing after healing while the check of their occurrences
/// waits for a leader with its log committed.
const SCHEDULES_KEPT_AFTER_HEALING_MAX_MS: u64 = 60_000;

fn restart_failed(world: &World, detail: String) -> Failure {
    violation(
        world,
        Violation {
            invariant: "a stopped node or agent starts again from what its disk kept",
            detail,
        },
    )
}

fn violation(world: &World, violation: Violation) -> Failure {
    let trace = world.trace.lock().unwrap_or_else(|p| p.into_inner());
    Failure::Violation {
        at_ms: world.now_ms(),
        trace_tail: trace.tail(trace_lines()),
        trace_hash: trace.hash(),
        violation,
    }
}

/// Lets simulated time advance by one step, unless the wall-clock budget runs out first.
async fn step(
    world: &World,
    config: &SimConfig,
    wall_start: std::time::Instant,
    phase: &str,
) -> Result<(), Failure> {
    tokio::select! {
        biased;
        _ = world.net.budget_exceeded() => over_budget(world, config, wall_start, phase),
        _ = tokio::time::sleep(STEP) => Ok(()),
    }
}

fn over_budget(
    world: &World,
    config: &SimConfig,
    wall_start: std::time::Instant,
    phase: &str,
) -> Result<(), Failure> {
    if wall_start.elapsed().as_secs() > config.wall_budget_s {
        return Err(Failure::Budget {
            detail: format!(
                "over the {} s wall-clock budget in the {phase} phase, at {} simulated ms\n{}",
                config.wall_budget_s,
                world.now_ms(),
                world
                    .trace
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .tail(trace_lines())
            ),
        });
    }
    Ok(())
}

pub async fn run(config: &SimConfig, spool_root: &std::path::Path) -> Result<Report, Failure> {
    let wall_start = std::time::Instant::now();
    let mut world = World::new(config, spool_root);
    world
        .net
        .set_wall_deadline(wall_start + Duration::from_secs(config.wall_budget_s));
    world.log(format!("scenario: {}", config.describe()));
    for i in 0..config.nodes {
        world.start_node(i).await.map_err(Failure::Setup)?;
    }
    for i in 0..config.agents {
        world.start_agent(i).map_err(Failure::Setup)?;
    }
    let mut checkers = Checkers::default();
    let mut faults = FaultInjector::new(config);
    let code = crate::tasks::SimCode::create(&crate::tasks::code_dir(spool_root))
        .map_err(Failure::Setup)?;
    let mut workload = Workload::new(
        config.seed,
        config.jobs,
        config.agents,
        config.task_share,
        code,
    );
    let step_ms = STEP.as_millis() as u64;
    // Submissions spread over the first 80 % of the fault phase, so the last ones still
    // meet faults.
    let submit_over_ms = config.fault_phase_ms * 4 / 5;
    let mut schedules =
        ScheduleClient::new(config.seed, config.schedules, config.agents, submit_over_ms);

    // Safety phase: workload and faults.
    while world.now_ms() < config.fault_phase_ms {
        step(&world, config, wall_start, "fault").await?;
        faults.stop_nodes_with_failed_disks(&mut world).await;
        raft_running(&world).await?;
        over_budget(&world, config, wall_start, "fault")?;
        workload.step(&world, submit_over_ms);
        schedules.step(&world, workload.access_ready());
        if let Some(error) = workload.generation_errors.first() {
            return Err(Failure::Setup(error.clone()));
        }
        let stop_per_step = config.rate(Fault::Stop) * step_ms as f64 / 1000.0;
        if stop_per_step > 0.0 && world.draw(stop_per_step) {
            workload.stop_random(&world);
        }
        workload.maybe_show(&world, config.reads_per_s * step_ms as f64 / 1000.0);
        faults
            .step(&mut world, step_ms)
            .await
            .map_err(|detail| restart_failed(&world, detail))?;
        if let Some(found) = check(&world, &mut checkers, &workload, None, false) {
            return Err(violation(&world, found));
        }
    }

    // Liveness phase: heal everything; every job must end and every replica catch up.
    faults
        .heal_all(&mut world)
        .await
        .map_err(|detail| restart_failed(&world, detail))?;
    let healed_ms = world.now_ms();
    let liveness_deadline = healed_ms + config.liveness_ms;
    // Schedules go on firing after healing until the checker of due occurrences has had its
    // time; then they are deleted (again every 5 s while some remain), so the run can end.
    let mut next_schedule_deletion_ms = healed_ms;
    loop {
        step(&world, config, wall_start, "liveness").await?;
        if !faults
            .stop_nodes_with_failed_disks(&mut world)
            .await
            .is_empty()
        {
            // In the liveness phase every node must run: one stopped by a flush that failed
            // before the healing is started again.
            faults
                .heal_all(&mut world)
                .await
                .map_err(|detail| restart_failed(&world, detail))?;
        }
        raft_running(&world).await?;
        workload.step(&world, submit_over_ms);
        // A cluster that never got its backlog committed is the liveness check's to judge;
        // its schedules go after a minute.
        if world.now_ms() >= next_schedule_deletion_ms
            && (checkers.occurrences_had_their_time(world.now_ms())
                || world.now_ms() >= healed_ms + SCHEDULES_KEPT_AFTER_HEALING_MAX_MS)
        {
            schedules.delete_all(&world);
            next_schedule_deletion_ms = world.now_ms() + 5_000;
        }
        if let Some(found) = check(&world, &mut checkers, &workload, Some(healed_ms), false) {
            return Err(violation(&world, found));
        }
        // A node removed by a membership fault is added back, so every replica converges.
        let voters = world.voters();
        if !world.membership_busy()
            && !voters.is_empty()
            && let Some(removed) = world
                .nodes
                .iter()
                .map(|n| n.id)
                .find(|id| !voters.contains(id))
        {
            world.change_membership(removed, true);
        }
        let views = world.views();
        let max_applied = views.iter().map(|v| v.applied_index).max().unwrap_or(0);
        // A membership change left joint by a lost leader must be finished too: until it is,
        // every commit needs a majority of both voter sets.
        let caught_up = views.len() == world.nodes.len()
            && views
                .iter()
                .all(|v| v.applied_index == max_applied && !v.joint_membership);
        let acknowledged = workload.acknowledged();
        let all_ended = workload.all_submitted()
            && views.first().is_some_and(|v| {
                let schedules = v.state.schedules();
                acknowledged
                    .iter()
                    .all(|(id, _)| v.state.job(*id).is_some_and(|j| j.state().is_terminal()))
                    && schedules.is_empty()
                    && schedules
                        .job_links()
                        .keys()
                        .all(|id| v.state.job(*id).is_none_or(|j| j.state().is_terminal()))
            });
        if caught_up && all_ended && !world.membership_busy() {
            break;
        }
        if world.now_ms() > liveness_deadline {
            let latest = views.iter().max_by_key(|v| v.applied_index);
            let pending: Vec<String> = latest
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
                        "node {} term {} leader {:?} applied {}{}",
                        v.id,
                        v.term,
                        v.leader,
                        v.applied_index,
                        if v.joint_membership {
                            " (joint membership)"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            // One lock for both: a second `lock()` in the same expression would wait forever
            // on the first (the guard lives to the end of the statement).
            let (trace_tail, trace_hash) = {
                let trace = world.trace.lock().unwrap_or_else(|p| p.into_inner());
                (trace.tail(trace_lines()), trace.hash())
            };
            return Err(Failure::Liveness {
                detail: format!(
                    "after healing, not every job ended and every replica caught up within {} ms: {pending:?}; schedules left: {}; replicas: {replicas:?}",
                    config.liveness_ms,
                    latest.map_or(0, |v| v.state.schedules().len())
                ),
                trace_tail,
                trace_hash,
            });
        }
        over_budget(&world, config, wall_start, "liveness")?;
    }
    if let Some(found) = check(&world, &mut checkers, &workload, Some(healed_ms), true) {
        return Err(violation(&world, found));
    }
    // Record the outcome in the trace so the hash covers it.
    let acknowledged = workload.acknowledged();
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
    let task_runs = world
        .task_runs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    let simulated_ms = world.now_ms();
    for i in 0..world.nodes.len() {
        world.crash_node(i, None).await;
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
        task_runs,
        events: trace.len(),
    })
}

/// Wall-clock seconds past its budget that a seed's thread may take before it is given up as
/// hung. The budget is noticed on simulated network traffic; a task that never yields stops
/// virtual time and all traffic with it, so only a watch from outside the runtime sees it.
const HUNG_AFTER_BUDGET_S: u64 = 60;

/// Runs one seed (see [`run_seed_here`]) on a thread of its own, watched: a seed whose
/// runtime never returns, such as a task spinning without yielding, is reported as over
/// budget, naming the phase it could not leave, instead of hanging its caller. The hung thread
/// is left behind (a thread cannot be stopped from outside); callers end soon after. A seed
/// that panics panics here.
pub fn run_seed(config: &SimConfig) -> Result<Report, Failure> {
    let (done, result) = std::sync::mpsc::channel();
    let owned = config.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sim-seed-{}", config.seed))
        .spawn(move || {
            let _ = done.send(run_seed_here(&owned));
        })
        .map_err(|e| Failure::Setup(format!("cannot start the seed's thread: {e}")))?;
    let limit = Duration::from_secs(config.wall_budget_s + HUNG_AFTER_BUDGET_S);
    match result.recv_timeout(limit) {
        Ok(outcome) => outcome,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Failure::Budget {
            detail: format!(
                "seed {} hung: its runtime did not return within {} s (a task that never \
                 yields stops simulated time; replay it with PORCH_LOG=debug to see the last \
                 steps)",
                config.seed,
                limit.as_secs()
            ),
        }),
        // The seed panicked: the caller sees the panic as if the seed ran on its thread.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => Err(Failure::Setup(format!(
                "seed {}'s thread ended without a result",
                config.seed
            ))),
        },
    }
}

/// Runs one seed on this thread, on its own single-threaded runtime with paused (simulated)
/// time and tokio's scheduler randomness seeded from the seed.
pub fn run_seed_here(config: &SimConfig) -> Result<Report, Failure> {
    // One directory per run, even for two runs of one seed at once (tests do that). Under
    // /dev/shm where there is one: the agents' spools fsync, which tmpfs makes free.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run_number = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let shm = std::path::Path::new("/dev/shm");
    let root = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let spool = root.join(format!(
        "porch-sim-{}-{run_number}-seed{}",
        std::process::id(),
        config.seed
    ));
    let _ = std::fs::remove_dir_all(&spool);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .rng_seed(tokio::runtime::RngSeed::from_bytes(
            &config.seed.to_le_bytes(),
        ))
        .build()
        .map_err(|e| Failure::Setup(format!("cannot build the runtime: {e}")))?;
    porch_core::planted::plant(config.planted).map_err(Failure::Setup)?;
    let result = runtime.block_on(async {
        // Logs of this run, stamped with simulated time (`PORCH_LOG=info porch sim ...`).
        let _logs = tracing::subscriber::set_default(crate::trace::log_subscriber());
        run(config, &spool).await
    });
    drop(runtime);
    let _ = porch_core::planted::plant(None);
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
