//! `porch sim` / `porch-sim`: run seeds, report failures with a replay command.

use crate::config::SimConfig;
use crate::run::{Failure, run_seed};
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// One seed to run.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// A range of seeds, `A..B` (B excluded).
    #[arg(long)]
    pub seeds: Option<String>,
    /// Worker threads, each running seeds one after another.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Orchestrator nodes (3-7; default: drawn from the seed).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Agents (default 8).
    #[arg(long)]
    pub agents: Option<usize>,
    /// Jobs submitted per run (default 6).
    #[arg(long)]
    pub jobs: Option<usize>,
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

fn config_for(args: &SimArgs, seed: u64) -> SimConfig {
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
    config
}

pub fn run_sim(args: SimArgs) -> ExitCode {
    let seeds = match parse_seeds(&args) {
        Ok(seeds) => seeds,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = config_for(&args, seeds[0]).validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if args.workers == 0 {
        eprintln!("error: --workers must be at least 1");
        return ExitCode::from(2);
    }
    let queue = std::sync::Mutex::new(seeds.into_iter());
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..args.workers {
            scope.spawn(|| {
                loop {
                    let Some(seed) = queue.lock().unwrap_or_else(|p| p.into_inner()).next() else {
                        return;
                    };
                    if !report(seed, &args) {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    if failed.load(std::sync::atomic::Ordering::Relaxed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs one seed and prints its result; true if it passed.
fn report(seed: u64, args: &SimArgs) -> bool {
    let config = config_for(args, seed);
    let started = std::time::Instant::now();
    let replay = format!("porch sim --seed {seed}");
    match run_seed(&config) {
        Ok(report) => {
            println!(
                "seed {seed}: ok — {} nodes, {} jobs, {} executions, {:.1} simulated s in {:.2} s; trace hash: {:016x}",
                config.nodes,
                report.jobs,
                report.executions,
                report.simulated_ms as f64 / 1000.0,
                started.elapsed().as_secs_f64(),
                report.trace_hash
            );
            true
        }
        Err(Failure::Violation {
            violation,
            trace_tail,
            at_ms,
        }) => {
            println!(
                "seed {seed}: VIOLATION at {at_ms} ms: {violation}\n{trace_tail}replay: {replay}"
            );
            false
        }
        Err(Failure::Liveness { detail, trace_tail }) => {
            println!("seed {seed}: LIVENESS: {detail}\n{trace_tail}replay: {replay}");
            false
        }
        Err(Failure::Budget { detail }) => {
            println!("seed {seed}: BUDGET EXCEEDED (not a pass): {detail}; replay: {replay}");
            false
        }
        Err(Failure::Setup(detail)) => {
            println!("seed {seed}: SETUP FAILED: {detail}; replay: {replay}");
            false
        }
    }
}
