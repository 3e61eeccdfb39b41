//! One simulation run's parameters, derived from its seed unless given. Swarm testing: each
//! seed switches every fault kind on or off and draws its rate, so faults combine in ways no
//! fixed mix would reach (and a seed with few faults reaches deep into long jobs).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fmt;

/// The faults the simulation injects. Event faults are a probability per simulated second;
/// message faults a probability per message; `LoseUnflushed` a probability per crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// A node crashes (and restarts later).
    Crash,
    /// A crash also loses the disk's writes not yet flushed (power loss).
    LoseUnflushed,
    /// The nodes split into two groups that cannot talk, for a while.
    Partition,
    /// One direction of a link, or all of one node's outgoing links, is cut for a while.
    Asymmetric,
    /// A request or reply between nodes is lost.
    Loss,
    /// A request between nodes is handled twice.
    Duplication,
    /// A request or reply between nodes is delayed by up to 200 ms (reordering them).
    Delay,
    /// A node's messages are held both ways for a while, then delivered.
    Pause,
    /// A node's disk takes 5–200 ms per flush for a while.
    SlowDisk,
    /// An agent process crashes (and restarts later).
    AgentCrash,
    /// An agent loses its link to one node (it fails over) or to all (it is unreachable).
    AgentDisconnect,
    /// The leader hands leadership to another node.
    LeaderTransfer,
    /// A voter is removed from the cluster, or a removed one added back.
    Membership,
    /// A client stops a random job.
    Stop,
    /// A majority of the nodes, or every node, loses power at the same instant (a
    /// datacenter's power): each keeps only what it flushed; all restart later.
    PowerLoss,
    /// A power loss keeps a prefix of the unflushed writes (the disk wrote some of its queue
    /// before the power went) instead of none; a probability per power loss.
    TornFlush,
    /// A node's disk fails its flushes for a while: the node stops, as the real one exits
    /// when raft stops on a storage error, and is restarted once the disk is repaired.
    DiskFailure,
    /// A node's clock jumps forward or back by up to a minute.
    ClockJump,
    /// A node's clock starts running fast or slow (up to ±10 %).
    ClockDrift,
    /// A bit flips in one record on a stopped node's disk (a log entry, the snapshot, the
    /// committed index or the purge point) before it restarts; a probability per restart.
    /// Only while every other node is up and caught up: one damaged copy of an entry at a
    /// time, which a majority can always make good.
    BitRot,
    /// An agent's process stalls (its machine swaps, or it is stopped) for 0.5–10 s, less or
    /// more than the three heartbeats of silence that end its session: what nodes send it
    /// backs up meanwhile.
    AgentStall,
}

/// The fault kinds from before knobs and storage and clock faults (issue 14): a seed run with
/// only these and the standard knobs replays the scenario it drew then.
pub const CLASSIC_FAULTS: usize = 14;

pub const ALL_FAULTS: [Fault; 21] = [
    Fault::Crash,
    Fault::LoseUnflushed,
    Fault::Partition,
    Fault::Asymmetric,
    Fault::Loss,
    Fault::Duplication,
    Fault::Delay,
    Fault::Pause,
    Fault::SlowDisk,
    Fault::AgentCrash,
    Fault::AgentDisconnect,
    Fault::LeaderTransfer,
    Fault::Membership,
    Fault::Stop,
    Fault::PowerLoss,
    Fault::TornFlush,
    Fault::DiskFailure,
    Fault::ClockJump,
    Fault::ClockDrift,
    Fault::BitRot,
    Fault::AgentStall,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::LoseUnflushed => "lose-unflushed",
            Fault::Partition => "partition",
            Fault::Asymmetric => "asymmetric",
            Fault::Loss => "loss",
            Fault::Duplication => "duplication",
            Fault::Delay => "delay",
            Fault::Pause => "pause",
            Fault::SlowDisk => "slow-disk",
            Fault::AgentCrash => "agent-crash",
            Fault::AgentDisconnect => "agent-disconnect",
            Fault::LeaderTransfer => "leader-transfer",
            Fault::Membership => "membership",
            Fault::Stop => "stop",
            Fault::PowerLoss => "power-loss",
            Fault::TornFlush => "torn-flush",
            Fault::DiskFailure => "disk-failure",
            Fault::ClockJump => "clock-jump",
            Fault::ClockDrift => "clock-drift",
            Fault::BitRot => "bit-rot",
            Fault::AgentStall => "agent-stall",
        }
    }

    pub fn parse(name: &str) -> Result<Fault, String> {
        ALL_FAULTS
            .iter()
            .copied()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = ALL_FAULTS.iter().map(|f| f.name()).collect();
                format!("unknown fault '{name}' (known: {})", known.join(", "))
            })
    }

    /// The highest rate a seed draws for this fault.
    fn swarm_max(self) -> f64 {
        match self {
            Fault::LoseUnflushed | Fault::TornFlush => 1.0,
            Fault::BitRot => 0.5,
            Fault::PowerLoss | Fault::DiskFailure => 0.05,
            Fault::Loss | Fault::Duplication => 0.05,
            Fault::Delay => 0.3,
            Fault::Stop => 0.05,
            _ => 0.15,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub agents: usize,
    pub jobs: usize,
    /// Scheduled deploys the clients create during the fault phase.
    pub schedules: usize,
    /// Nodes and agents are spread over this many datacenters.
    pub datacenters: usize,
    /// One-way latency between datacenters, ms.
    pub latency_ms: Vec<Vec<u64>>,
    /// Rate of each fault (absent = off).
    pub faults: BTreeMap<Fault, f64>,
    /// Simulated time with workload and faults.
    pub fault_phase_ms: u64,
    /// After healing, every job must end within this much simulated time.
    pub liveness_ms: u64,
    /// Wall-clock budget; a run over it is reported as such, not as a pass.
    pub wall_budget_s: u64,
    /// Simulated agents' run durations, ms, and their failure probability.
    pub run_ms_min: u64,
    pub run_ms_max: u64,
    pub run_failure_rate: f64,
    /// A known bug to plant (the checkers must catch it).
    pub planted: Option<porch_core::planted::Bug>,
    /// Queue capacities, batch sizes and raft timings of this run.
    pub knobs: crate::knobs::Knobs,
    /// Clients' linearizable reads of random jobs per simulated second of the fault phase.
    pub reads_per_s: f64,
    /// The share of submissions that are task jobs.
    pub task_share: f64,
}

impl SimConfig {
    /// The standard scenario with what this seed draws: knobs, and every fault kind.
    pub fn for_seed(seed: u64) -> SimConfig {
        SimConfig::drawn_before_knobs(seed).buggify()
    }

    /// What a seed drew before knobs and the storage and clock faults (issue 14): the
    /// classic fault kinds only.
    fn drawn_before_knobs(seed: u64) -> SimConfig {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_5eed);
        let nodes = [3, 5, 5, 7][rng.random_range(0..4)];
        let datacenters = rng.random_range(1..=3usize);
        let latency_ms = (0..datacenters)
            .map(|a| {
                (0..datacenters)
                    .map(|b| {
                        if a == b {
                            rng.random_range(0..=2)
                        } else {
                            rng.random_range(10..=80)
                        }
                    })
                    .collect()
            })
            .collect();
        let mut faults = BTreeMap::new();
        for fault in &ALL_FAULTS[..CLASSIC_FAULTS] {
            let fault = *fault;
            if rng.random_bool(0.6) {
                faults.insert(fault, rng.random_range(0.0..fault.swarm_max()));
            }
        }
        SimConfig {
            seed,
            nodes,
            agents: 10,
            jobs: 8,
            schedules: 2,
            datacenters,
            latency_ms,
            faults,
            fault_phase_ms: 30_000,
            liveness_ms: 120_000,
            wall_budget_s: 300,
            run_ms_min: 200,
            run_ms_max: 3000,
            run_failure_rate: 0.1,
            planted: None,
            knobs: crate::knobs::Knobs::standard(),
            reads_per_s: 1.0,
            task_share: 0.3,
        }
    }

    /// BUGGIFY: this seed with drawn knobs (queue capacities, batch sizes, snapshot cadence,
    /// raft timings, flush time) and the storage and clock faults switched on and off and
    /// rated as the classic ones are (from a random source of their own, so the rest of the
    /// scenario is what the seed drew before them).
    fn buggify(mut self) -> SimConfig {
        self.knobs = crate::knobs::Knobs::draw(self.seed);
        let mut rng = SmallRng::seed_from_u64(self.seed ^ 0xb066_1f1e);
        for fault in &ALL_FAULTS[CLASSIC_FAULTS..] {
            if rng.random_bool(0.6) {
                self.faults
                    .insert(*fault, rng.random_range(0.0..fault.swarm_max()));
            }
        }
        self
    }

    /// This seed as it ran before issue 14: standard knobs, only the classic fault kinds, no
    /// reads.
    pub fn classic(mut self) -> SimConfig {
        self.knobs = crate::knobs::Knobs::standard();
        self.reads_per_s = 0.0;
        self.faults
            .retain(|fault, _| ALL_FAULTS[..CLASSIC_FAULTS].contains(fault));
        self
    }

    pub fn rate(&self, fault: Fault) -> f64 {
        self.faults.get(&fault).copied().unwrap_or(0.0)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(3..=7).contains(&self.nodes) {
            return Err(format!("--nodes: {} is outside 3..=7", self.nodes));
        }
        if !(1..=1000).contains(&self.agents) {
            return Err(format!("--agents: {} is outside 1..=1000", self.agents));
        }
        if !(1..=10_000).contains(&self.jobs) {
            return Err(format!("--jobs: {} is outside 1..=10000", self.jobs));
        }
        if !(1..=5).contains(&self.datacenters) {
            return Err(format!(
                "--datacenters: {} is outside 1..=5",
                self.datacenters
            ));
        }
        for (fault, rate) in &self.faults {
            if !(0.0..=1.0).contains(rate) || rate.is_nan() {
                return Err(format!("--fault {fault}={rate}: the rate is outside 0..=1"));
            }
        }
        if !(0.0..=1.0).contains(&self.task_share) {
            return Err(format!(
                "--task-share: {} is outside 0..=1",
                self.task_share
            ));
        }
        if self.fault_phase_ms == 0 {
            return Err("--fault-seconds must be positive".into());
        }
        Ok(())
    }

    /// One line naming the scenario, for reports.
    pub fn describe(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(f, r)| format!("{f}={r:.3}"))
            .collect();
        format!(
            "{} nodes, {} agents, {} jobs ({:.0} % tasks), {} datacenter(s), knobs: {}, faults: {}{}",
            self.nodes,
            self.agents,
            self.jobs,
            self.task_share * 100.0,
            self.datacenters,
            self.knobs.describe(),
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(" ")
            },
            match self.planted {
                Some(bug) => format!(", planted bug: {bug}"),
                None => String::new(),
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_name_parses_back() {
        for fault in ALL_FAULTS {
            assert_eq!(Fault::parse(fault.name()), Ok(fault));
        }
        assert!(
            Fault::parse("meteor")
                .unwrap_err()
                .contains("unknown fault 'meteor'")
        );
    }

    #[test]
    fn seeds_draw_valid_and_different_scenarios() {
        let configs: Vec<SimConfig> = (0..50).map(SimConfig::for_seed).collect();
        for config in &configs {
            config.validate().unwrap();
        }
        let distinct: std::collections::BTreeSet<String> =
            configs.iter().map(|c| c.describe()).collect();
        assert!(distinct.len() > 40, "seeds should draw different scenarios");
    }

    #[test]
    fn out_of_range_options_are_refused() {
        let mut config = SimConfig::for_seed(1);
        config.nodes = 0;
        assert!(config.validate().unwrap_err().contains("--nodes"));
        let mut config = SimConfig::for_seed(1);
        config.faults.insert(Fault::Loss, 1.5);
        assert!(config.validate().unwrap_err().contains("loss=1.5"));
    }
}
