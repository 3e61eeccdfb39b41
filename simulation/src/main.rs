//! `porch-sim`: the deterministic simulation on its own (same as `porch sim`).

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "porch-sim",
    about = "Deterministic simulation of a porch cluster under seeded faults"
)]
struct Cli {
    #[command(flatten)]
    args: porch_simulation::cli::SimArgs,
}

fn main() -> ExitCode {
    porch_simulation::cli::run_sim(Cli::parse().args)
}
