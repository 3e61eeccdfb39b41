//! One simulation run's parameters, derived from its seed unless given (swarm testing: each
//! seed draws its own fault rates, so faults combine in ways no fixed mix would reach).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub agents: usize,
    pub jobs: usize,
    /// Per second of simulated fault phase: probability of crashing a node.
    pub crash_rate: f64,
    /// Whether a crash also loses writes not yet flushed.
    pub lose_unflushed: bool,
    /// Per second: probability of cutting a random link (healed later).
    pub partition_rate: f64,
    /// Per second: probability of killing a random agent (restarted later).
    pub agent_crash_rate: f64,
    /// Per second: probability of stopping a random job.
    pub stop_rate: f64,
    pub fault_phase_ms: u64,
    /// After healing, every job must end within this much simulated time.
    pub liveness_ms: u64,
    /// Wall-clock budget; a run over it is reported as such, not as a pass.
    pub wall_budget_s: u64,
}

impl SimConfig {
    /// The standard scenario with the rates this seed draws.
    pub fn for_seed(seed: u64) -> SimConfig {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_5eed);
        SimConfig {
            seed,
            nodes: 3 + 2 * rng.random_range(0..=1usize),
            agents: 8,
            jobs: 6,
            crash_rate: rng.random_range(0.0..0.15),
            lose_unflushed: rng.random_bool(0.5),
            partition_rate: rng.random_range(0.0..0.2),
            agent_crash_rate: rng.random_range(0.0..0.1),
            stop_rate: rng.random_range(0.0..0.05),
            fault_phase_ms: 20_000,
            liveness_ms: 120_000,
            wall_budget_s: 120,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(3..=7).contains(&self.nodes) {
            return Err(format!("--nodes: {} is outside 3..7", self.nodes));
        }
        if self.agents == 0 || self.agents > 1000 {
            return Err(format!("--agents: {} is outside 1..1000", self.agents));
        }
        for (name, rate) in [
            ("--crash-rate", self.crash_rate),
            ("--partition-rate", self.partition_rate),
            ("--agent-crash-rate", self.agent_crash_rate),
            ("--stop-rate", self.stop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name}: {rate} is outside 0..1"));
            }
        }
        Ok(())
    }
}
