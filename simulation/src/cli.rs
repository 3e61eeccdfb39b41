//! `porch sim` / `porch-sim`: run seeds, report failures with a replay command.

use crate::config::{Fault, SimConfig};
use crate::run::{Failure, run_seed};
use clap::Args;
use porch_core::planted::Bug;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// One seed to run.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// A range of seeds, `A..B` (B excluded). Default 1..11.
    #[arg(long)]
    pub seeds: Option<String>,
    /// Worker threads, each running seeds one after another.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Orchestrator nodes, 3-7 (default: drawn from the seed).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Agents (default 10).
    #[arg(long)]
    pub agents: Option<usize>,
    /// Jobs submitted per run (default 8).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// The share of submissions that are task jobs, 0-1 (default 0.3).
    #[arg(long)]
    pub task_share: Option<f64>,
    /// Datacenters the nodes and agents spread over, 1-5 (default: drawn).
    #[arg(long)]
    pub datacenters: Option<usize>,
    /// Simulated seconds of the fault phase (default 30).
    #[arg(long)]
    pub fault_seconds: Option<u64>,
    /// Only these fault kinds, comma-separated (`none` for no faults); rates still drawn
    /// from the seed unless given with --fault. Kinds: crash, lose-unflushed, partition,
    /// asymmetric, loss, duplication, delay, pause, slow-disk, agent-crash,
    /// agent-disconnect, leader-transfer, membership, stop, power-loss, torn-flush,
    /// disk-failure, clock-jump, clock-drift, bit-rot, agent-stall.
    #[arg(long)]
    pub faults: Option<String>,
    /// Set one fault's rate, `NAME=RATE` (0-1; repeatable): per simulated second for events,
    /// per message for loss/duplication/delay, per crash for lose-unflushed.
    #[arg(long = "fault", value_name = "NAME=RATE")]
    pub fault_rates: Vec<String>,
    /// Plant a known bug (needs a build with feature porch-simulation/planted-bugs):
    /// dispatch-before-commit, ignore-dependency-edge, redispatch-without-status-query,
    /// accept-stale-report, exceed-concurrency-by-one, ack-before-flush,
    /// clock-follows-leader, read-without-barrier, forget-dropped-run, skip-checksum,
    /// run-before-spool-sync.
    #[arg(long)]
    pub plant_bug: Option<String>,
    /// Wall-clock seconds one seed may take before it is reported as over budget.
    #[arg(long)]
    pub budget_seconds: Option<u64>,
    /// Run the seed as it ran before issue 14: the standard queue capacities, batch sizes,
    /// raft timings and flush time instead of drawn ones (by default each seed draws them,
    /// often tiny), and only the fault kinds of then (no power loss, torn flush, disk
    /// failure, bit rot or clock faults). Regression seeds replay their original scenario
    /// this way.
    #[arg(long)]
    pub classic: bool,
    /// Set one knob, `NAME=VALUE` (repeatable): session-queue, applied-broadcast,
    /// agent-run-queue, snapshot-every, logs-kept, payload, append, api-batch, flush-ms,
    /// agent-window, agent-heartbeat-ms.
    #[arg(long = "knob", value_name = "NAME=VALUE")]
    pub knobs: Vec<String>,
}

fn parse_seeds(args: &SimArgs) -> Result<Vec<u64>, String> {
    if let Some(seed) = args.seed {
        return Ok(vec![seed]);
    }
    let text = args.seeds.as_deref().unwrap_or("1..11");
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("--seeds: '{text}' is not A..B"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("--seeds: '{a}' is not a number"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("--seeds: '{b}' is not a number"))?;
    if a >= b {
        return Err(format!("--seeds: the range {a}..{b} is empty"));
    }
    Ok((a..b).collect())
}

/// The scenario of `seed` with the command line's overrides.
pub fn config_for(args: &SimArgs, seed: u64) -> Result<SimConfig, String> {
    let mut config = SimConfig::for_seed(seed);
    if let Some(n) = args.nodes {
        config.nodes = n;
    }
    if let Some(n) = args.agents {
        config.agents = n;
    }
    if let Some(n) = args.jobs {
        config.jobs = n;
    }
    if let Some(share) = args.task_share {
        config.task_share = share;
    }
    if let Some(n) = args.datacenters {
        if !(1..=5).contains(&n) {
            return Err(format!("--datacenters: {n} is outside 1..=5"));
        }
        let drawn = SimConfig::for_seed(seed ^ 0xdc);
        config.datacenters = n;
        config.latency_ms = (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| {
                        if a == b {
                            1
                        } else {
                            20 + 10 * ((a + b) as u64 % 5) + drawn.nodes as u64
                        }
                    })
                    .collect()
            })
            .collect();
    }
    if let Some(s) = args.fault_seconds {
        config.fault_phase_ms = s.saturating_mul(1000);
    }
    if let Some(s) = args.budget_seconds {
        config.wall_budget_s = s;
    }
    if args.classic {
        config = config.classic();
    }
    for pair in &args.knobs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--knob: '{pair}' is not NAME=VALUE"))?;
        config.knobs.set(name.trim(), value)?;
    }
    if let Some(list) = &args.faults {
        let mut kept = std::collections::BTreeMap::new();
        if list.trim() != "none" {
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let fault = Fault::parse(name).map_err(|e| format!("--faults: {e}"))?;
                // Rate drawn for this seed, or a middling one if the seed had it off.
                let rate = config.faults.get(&fault).copied().unwrap_or(0.05);
                kept.insert(fault, rate);
            }
        }
        config.faults = kept;
    }
    for pair in &args.fault_rates {
        let (name, rate) = pair
            .split_once('=')
            .ok_or_else(|| format!("--fault: '{pair}' is not NAME=RATE"))?;
        let fault = Fault::parse(name.trim()).map_err(|e| format!("--fault: {e}"))?;
        let rate: f64 = rate
            .trim()
            .parse()
            .map_err(|_| format!("--fault {name}: '{rate}' is not a number"))?;
        config.faults.insert(fault, rate);
    }
    if let Some(name) = &args.plant_bug {
        let bug = Bug::parse(name).map_err(|e| format!("--plant-bug: {e}"))?;
        if !porch_core::planted::AVAILABLE {
            return Err(format!(
                "--plant-bug {bug}: this build has no planted bugs; build with --features porch-simulation/planted-bugs"
            ));
        }
        config.planted = Some(bug);
    }
    config.validate()?;
    Ok(config)
}

pub fn run_sim(args: SimArgs) -> ExitCode {
    let seeds = match parse_seeds(&args) {
        Ok(seeds) => seeds,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = config_for(&args, seeds[0]) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if args.workers == 0 {
        eprintln!("error: --workers must be at least 1");
        return ExitCode::from(2);
    }
    let total = seeds.len();
    let queue = std::sync::Mutex::new(seeds.into_iter());
    // (passed, failed, simulated ms of passed seeds, wall seconds of each passed seed)
    let tally = std::sync::Mutex::new((0usize, 0usize, 0u64, Vec::<f64>::new()));
    let wall = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.workers {
            scope.spawn(|| {
                loop {
                    let Some(seed) = queue.lock().unwrap_or_else(|p| p.into_inner()).next() else {
                        return;
                    };
                    let started = std::time::Instant::now();
                    let outcome = report(seed, &args);
                    let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                    match outcome {
                        Some(simulated_ms) => {
                            tally.0 += 1;
                            tally.2 += simulated_ms;
                            tally.3.push(started.elapsed().as_secs_f64());
                        }
                        None => tally.1 += 1,
                    }
                }
            });
        }
    });
    let (passed, failed, simulated_ms, mut seconds) =
        tally.into_inner().unwrap_or_else(|p| p.into_inner());
    let wall_s = wall.elapsed().as_secs_f64();
    seconds.sort_by(|a, b| a.total_cmp(b));
    let median_s = seconds.get(seconds.len() / 2).copied().unwrap_or(0.0);
    if total > 1 {
        println!(
            "{passed} of {total} seeds passed, {failed} failed; {:.0} simulated s in {wall_s:.1} s wall with {} worker(s): {:.0}x real time per worker, median {median_s:.2} s per seed, {:.0} seeds per hour",
            simulated_ms as f64 / 1000.0,
            args.workers,
            simulated_ms as f64 / 1000.0 / (seconds.iter().sum::<f64>().max(1e-9)),
            total as f64 / wall_s.max(1e-9) * 3600.0,
        );
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The one-line command that replays `seed` with the same options.
pub fn replay_command(args: &SimArgs, seed: u64) -> String {
    let mut command = format!("porch sim --seed {seed}");
    let mut add = |flag: &str, value: Option<String>| {
        if let Some(value) = value {
            command.push_str(&format!(" --{flag} {value}"));
        }
    };
    add("nodes", args.nodes.map(|v| v.to_string()));
    add("agents", args.agents.map(|v| v.to_string()));
    add("jobs", args.jobs.map(|v| v.to_string()));
    add("task-share", args.task_share.map(|v| v.to_string()));
    add("datacenters", args.datacenters.map(|v| v.to_string()));
    add("fault-seconds", args.fault_seconds.map(|v| v.to_string()));
    add("faults", args.faults.clone());
    for pair in &args.fault_rates {
        add("fault", Some(pair.clone()));
    }
    add("plant-bug", args.plant_bug.clone());
    add("budget-seconds", args.budget_seconds.map(|v| v.to_string()));
    if args.classic {
        command.push_str(" --classic");
    }
    for pair in &args.knobs {
        command.push_str(&format!(" --knob {pair}"));
    }
    command
}

/// Runs one seed and prints its result; the simulated milliseconds if it passed.
fn report(seed: u64, args: &SimArgs) -> Option<u64> {
    let config = match config_for(args, seed) {
        Ok(config) => config,
        Err(e) => {
            println!("seed {seed}: SETUP FAILED: {e}");
            return None;
        }
    };
    let started = std::time::Instant::now();
    let replay = replay_command(args, seed);
    match run_seed(&config) {
        Ok(report) => {
            println!(
                "seed {seed}: ok — {} nodes, {} jobs, {} executions ({} tasks), {:.1} simulated s in {:.2} s; trace hash: {:016x}",
                config.nodes,
                report.jobs,
                report.executions,
                report.task_runs,
                report.simulated_ms as f64 / 1000.0,
                started.elapsed().as_secs_f64(),
                report.trace_hash
            );
            Some(report.simulated_ms)
        }
        Err(Failure::Violation {
            violation,
            trace_tail,
            at_ms,
            trace_hash,
        }) => {
            println!(
                "seed {seed}: VIOLATION at {at_ms} ms: {violation}\n  scenario: {}\n{trace_tail}replay: {replay}\ntrace hash: {trace_hash:016x}",
                config.describe()
            );
            None
        }
        Err(Failure::Liveness {
            detail,
            trace_tail,
            trace_hash,
        }) => {
            println!(
                "seed {seed}: LIVENESS: {detail}\n  scenario: {}\n{trace_tail}replay: {replay}\ntrace hash: {trace_hash:016x}",
                config.describe()
            );
            None
        }
        Err(Failure::Budget { detail }) => {
            println!(
                "seed {seed}: BUDGET EXCEEDED (not a pass): {detail}\n  scenario: {}\nreplay: {replay}",
                config.describe()
            );
            None
        }
        Err(Failure::Setup(detail)) => {
            println!("seed {seed}: SETUP FAILED: {detail}; replay: {replay}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimArgs,
    }

    fn args(line: &[&str]) -> SimArgs {
        Cli::try_parse_from(std::iter::once("porch-sim").chain(line.iter().copied()))
            .expect("clap accepts the flags")
            .args
    }

    #[test]
    fn bad_options_are_refused_with_the_option_named() {
        let cases: [(&[&str], &str); 7] = [
            (&["--nodes", "0"], "--nodes: 0 is outside 3..=7"),
            (&["--nodes", "9"], "--nodes: 9 is outside 3..=7"),
            (&["--fault", "loss=1.5"], "rate is outside 0..=1"),
            (&["--fault", "loss"], "is not NAME=RATE"),
            (&["--faults", "crash,meteor"], "unknown fault 'meteor'"),
            (&["--datacenters", "9"], "--datacenters: 9"),
            (&["--agents", "0"], "--agents: 0"),
        ];
        for (line, expected) in cases {
            let error =
                config_for(&args(line), 1).expect_err(&format!("{line:?} should be refused"));
            assert!(
                error.contains(expected),
                "{line:?}: got {error:?}, expected it to contain {expected:?}"
            );
        }
        for (range, expected) in [
            ("5..5", "is empty"),
            ("a..b", "not a number"),
            ("7", "not A..B"),
        ] {
            let error = parse_seeds(&args(&["--seeds", range])).unwrap_err();
            assert!(error.contains(expected), "{range}: {error}");
        }
    }

    #[test]
    fn fault_selection_keeps_only_the_named_kinds() {
        let config = config_for(
            &args(&["--faults", "crash,loss", "--fault", "loss=0.02"]),
            3,
        )
        .unwrap();
        let kinds: Vec<Fault> = config.faults.keys().copied().collect();
        assert_eq!(kinds, vec![Fault::Crash, Fault::Loss]);
        assert_eq!(config.rate(Fault::Loss), 0.02);
        assert!(
            config_for(&args(&["--faults", "none"]), 3)
                .unwrap()
                .faults
                .is_empty()
        );
    }

    #[test]
    fn the_replay_command_carries_the_options() {
        let replay = replay_command(
            &args(&["--nodes", "5", "--faults", "crash", "--fault", "loss=0.1"]),
            9,
        );
        assert_eq!(
            replay,
            "porch sim --seed 9 --nodes 5 --faults crash --fault loss=0.1"
        );
    }
}
