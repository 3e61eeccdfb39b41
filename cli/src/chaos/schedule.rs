//! The fault schedule: a pure function of the seed, so a failing run replays with the same
//! faults at the same offsets (`porch chaos --seed N`). Faults never overlap on a node: each
//! fault occupies the nodes it touches until it is healed, and a partition or a crash of every
//! node waits until all are free.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::fmt;

/// Node ids are 1-based, as in `--initial-cluster`.
pub type NodeId = usize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `minority` and the other nodes cannot reach each other (both directions).
    Partition { minority: Vec<NodeId> },
    /// Connections `from` opens to `to` carry nothing; `to`'s connections to `from` work.
    OneWayCut { from: NodeId, to: NodeId },
    /// Everything `from` sends to `to` is delayed by `delay_ms` (the delay proxy).
    SlowLink {
        from: NodeId,
        to: NodeId,
        delay_ms: u64,
    },
    /// Agents and clients cannot reach `node`, which still talks to its peers: its agents'
    /// sessions must move to another node.
    ClientsCut { node: NodeId },
    /// SIGSTOP, then SIGCONT when healed.
    Pause { node: NodeId },
    /// kill -9, then a restart on the same data dir when healed.
    Kill { node: NodeId },
    /// kill -9 of every node at once, then all restart.
    KillAll,
    /// kill -9 of agent `agent` (1-based, in the run's agent order), then a restart on the
    /// same spool: a run it started must never run again.
    KillAgent { agent: usize },
}

/// Which kinds a schedule may draw (the network kinds need namespaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultKind {
    Partition,
    OneWay,
    Slow,
    ClientsCut,
    Pause,
    Kill,
    KillAll,
    AgentKill,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Slow,
        FaultKind::ClientsCut,
        FaultKind::Pause,
        FaultKind::Kill,
        FaultKind::KillAll,
        FaultKind::AgentKill,
    ];

    /// The name `--faults` takes.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    pub fn needs_network(self) -> bool {
        matches!(
            self,
            FaultKind::Partition | FaultKind::OneWay | FaultKind::Slow | FaultKind::ClientsCut
        )
    }
}

impl Fault {
    /// The nodes this fault occupies while it lasts.
    pub fn nodes(&self, nodes: usize) -> Vec<NodeId> {
        match self {
            Fault::Partition { .. } | Fault::KillAll => (1..=nodes).collect(),
            Fault::OneWayCut { from, to } | Fault::SlowLink { from, to, .. } => vec![*from, *to],
            Fault::ClientsCut { node } | Fault::Pause { node } | Fault::Kill { node } => {
                vec![*node]
            }
            Fault::KillAgent { .. } => Vec::new(),
        }
    }

    /// The agents this fault occupies while it lasts.
    pub fn agents(&self) -> Vec<usize> {
        match self {
            Fault::KillAgent { agent } => vec![*agent],
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { minority } => write!(f, "partition {minority:?} from the others"),
            Fault::OneWayCut { from, to } => write!(f, "one-way cut: node {from} -/-> node {to}"),
            Fault::SlowLink { from, to, delay_ms } => {
                write!(f, "slow link: node {from} -> node {to} +{delay_ms} ms")
            }
            Fault::ClientsCut { node } => write!(f, "agents and clients cut from node {node}"),
            Fault::Pause { node } => write!(f, "pause node {node} (SIGSTOP)"),
            Fault::Kill { node } => write!(f, "kill -9 node {node}"),
            Fault::KillAll => write!(f, "kill -9 every node"),
            Fault::KillAgent { agent } => write!(f, "kill -9 agent #{agent}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledFault {
    /// Offset from the start of the fault phase.
    pub start_ms: u64,
    pub duration_ms: u64,
    pub fault: Fault,
}

/// Faults start no earlier than this (the workload gets going first).
const FIRST_FAULT_MS: u64 = 1_000;
/// Healthy time between two fault starts.
const GAP_MS: std::ops::Range<u64> = 300..2_500;
/// How long one fault lasts.
const DURATION_MS: std::ops::Range<u64> = 1_000..6_000;
/// Extra latency of a slow link, one way.
const DELAY_MS: std::ops::Range<u64> = 20..250;

/// The faults of a run of `phase_ms` over `nodes` nodes and `agents` agents, drawn from
/// `kinds`; every fault is healed by the end of the phase.
pub fn schedule(
    seed: u64,
    phase_ms: u64,
    nodes: usize,
    agents: usize,
    kinds: &[FaultKind],
) -> Vec<ScheduledFault> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xc4a0_5c4e_d01e);
    let mut busy_until = vec![0u64; nodes + 1];
    let mut agent_busy_until = vec![0u64; agents + 1];
    let mut faults = Vec::new();
    if kinds.is_empty() || nodes == 0 {
        return faults;
    }
    let mut at = FIRST_FAULT_MS;
    loop {
        at += rng.random_range(GAP_MS);
        let duration_ms = rng.random_range(DURATION_MS);
        if at + duration_ms > phase_ms {
            return faults;
        }
        let kind = kinds[rng.random_range(0..kinds.len())];
        if kind == FaultKind::AgentKill && agents == 0 {
            continue;
        }
        let fault = draw(&mut rng, kind, nodes, agents);
        let touched = fault.nodes(nodes);
        let agents_touched = fault.agents();
        if touched.iter().any(|&n| busy_until[n] > at)
            || agents_touched.iter().any(|&a| agent_busy_until[a] > at)
        {
            continue;
        }
        for n in touched {
            busy_until[n] = at + duration_ms;
        }
        for a in agents_touched {
            agent_busy_until[a] = at + duration_ms;
        }
        faults.push(ScheduledFault {
            start_ms: at,
            duration_ms,
            fault,
        });
    }
}

fn draw(rng: &mut SmallRng, kind: FaultKind, nodes: usize, agents: usize) -> Fault {
    let node = |rng: &mut SmallRng| rng.random_range(1..=nodes);
    let pair = |rng: &mut SmallRng| {
        let from = rng.random_range(1..=nodes);
        let to = (from + rng.random_range(1..nodes.max(2))) % nodes;
        (from, if to == 0 { nodes } else { to })
    };
    match kind {
        FaultKind::Partition => {
            // A minority of one or two (of five): the majority must go on.
            let size = rng.random_range(1..=(nodes - 1) / 2).max(1);
            let mut minority: Vec<NodeId> = Vec::new();
            while minority.len() < size {
                let n = node(rng);
                if !minority.contains(&n) {
                    minority.push(n);
                }
            }
            minority.sort();
            Fault::Partition { minority }
        }
        FaultKind::OneWay => {
            let (from, to) = pair(rng);
            Fault::OneWayCut { from, to }
        }
        FaultKind::Slow => {
            let (from, to) = pair(rng);
            Fault::SlowLink {
                from,
                to,
                delay_ms: rng.random_range(DELAY_MS),
            }
        }
        FaultKind::ClientsCut => Fault::ClientsCut { node: node(rng) },
        FaultKind::Pause => Fault::Pause { node: node(rng) },
        FaultKind::Kill => Fault::Kill { node: node(rng) },
        FaultKind::KillAll => Fault::KillAll,
        FaultKind::AgentKill => Fault::KillAgent {
            agent: rng.random_range(1..=agents),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_schedule() {
        let a = schedule(7, 60_000, 3, 9, &FaultKind::ALL);
        assert_eq!(a, schedule(7, 60_000, 3, 9, &FaultKind::ALL));
        assert_ne!(a, schedule(8, 60_000, 3, 9, &FaultKind::ALL));
        assert!(a.len() >= 5, "a minute should hold several faults: {a:?}");
    }

    #[test]
    fn faults_never_overlap_on_a_node_and_end_within_the_phase() {
        for seed in 0..200 {
            let faults = schedule(seed, 30_000, 3, 9, &FaultKind::ALL);
            for (i, a) in faults.iter().enumerate() {
                assert!(a.start_ms + a.duration_ms <= 30_000, "seed {seed}: {a:?}");
                for b in &faults[i + 1..] {
                    let overlap = b.start_ms < a.start_ms + a.duration_ms;
                    let shared = a
                        .fault
                        .nodes(3)
                        .iter()
                        .any(|n| b.fault.nodes(3).contains(n));
                    assert!(!(overlap && shared), "seed {seed}: {a:?} and {b:?}");
                }
            }
        }
    }

    #[test]
    fn links_join_two_distinct_nodes_and_partitions_leave_a_majority() {
        for seed in 0..200 {
            for nodes in [3, 5] {
                for f in schedule(seed, 60_000, nodes, 9, &FaultKind::ALL) {
                    match f.fault {
                        Fault::OneWayCut { from, to } | Fault::SlowLink { from, to, .. } => {
                            assert_ne!(from, to);
                            assert!((1..=nodes).contains(&from) && (1..=nodes).contains(&to));
                        }
                        Fault::Partition { minority } => {
                            assert!(!minority.is_empty() && minority.len() * 2 < nodes)
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    #[test]
    fn only_the_kinds_asked_for_are_drawn() {
        let faults = schedule(3, 60_000, 3, 9, &[FaultKind::Pause]);
        assert!(!faults.is_empty());
        assert!(
            faults
                .iter()
                .all(|f| matches!(f.fault, Fault::Pause { .. }))
        );
    }
}
