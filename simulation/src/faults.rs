//! Injects the faults of [`crate::config::Fault`] into a [`World`], one step at a time, and
//! undoes each after a drawn duration (a crashed node restarts, a partition heals...).
//! Everything it decides comes from its own seeded random source.

use crate::config::{Fault, SimConfig};
use crate::world::World;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Something to undo at a simulated time.
#[derive(Debug)]
enum Undo {
    RestartNode(usize),
    Uncut(String, String),
    Resume(String),
    FastDisk(usize),
    RestartAgent(usize),
}

pub struct FaultInjector {
    rng: SmallRng,
    config: SimConfig,
    /// (due at ms, what), in the order scheduled.
    pending: Vec<(u64, Undo)>,
}

impl FaultInjector {
    pub fn new(config: &SimConfig) -> FaultInjector {
        FaultInjector {
            rng: SmallRng::seed_from_u64(config.seed ^ 0xfa17_5eed),
            config: config.clone(),
            pending: Vec::new(),
        }
    }

    /// Whether an event fault fires in a step of `step_ms`.
    fn fires(&mut self, fault: Fault, step_ms: u64) -> bool {
        let per_step = self.config.rate(fault) * step_ms as f64 / 1000.0;
        per_step > 0.0 && self.rng.random_bool(per_step.min(1.0))
    }

    fn later(&mut self, world: &World, min_ms: u64, max_ms: u64, undo: Undo) {
        let due = world.now_ms() + self.rng.random_range(min_ms..=max_ms);
        self.pending.push((due, undo));
    }

    /// One step of the fault phase: undo what is due, then maybe inject new faults.
    pub async fn step(&mut self, world: &mut World, step_ms: u64) -> Result<(), String> {
        self.undo_due(world, false).await?;
        if self.fires(Fault::Crash, step_ms) {
            self.crash(world).await;
        }
        if self.fires(Fault::Partition, step_ms) {
            self.partition(world);
        }
        if self.fires(Fault::Asymmetric, step_ms) {
            self.asymmetric(world);
        }
        if self.fires(Fault::Pause, step_ms) {
            let index = self.rng.random_range(0..world.nodes.len());
            let addr = world.nodes[index].addr.clone();
            world.net.pause(&addr);
            world.log(format!("{addr} paused"));
            self.later(world, 300, 5_000, Undo::Resume(addr));
        }
        if self.fires(Fault::SlowDisk, step_ms) {
            let index = self.rng.random_range(0..world.nodes.len());
            let delay = Duration::from_millis(self.rng.random_range(5..=200));
            world.nodes[index].disk.set_flush_delay(delay);
            world.log(format!(
                "node {} disk slow ({} ms per flush)",
                world.nodes[index].id,
                delay.as_millis()
            ));
            self.later(world, 2_000, 10_000, Undo::FastDisk(index));
        }
        if self.fires(Fault::AgentCrash, step_ms) {
            let index = self.rng.random_range(0..world.agents.len());
            if world.agents[index].task.is_some() {
                world.crash_agent(index);
                self.later(world, 500, 15_000, Undo::RestartAgent(index));
            }
        }
        if self.fires(Fault::AgentDisconnect, step_ms) {
            self.disconnect_agent(world);
        }
        if self.fires(Fault::LeaderTransfer, step_ms) {
            let voters = world.voters();
            if !voters.is_empty() {
                let to = voters[self.rng.random_range(0..voters.len())];
                world.transfer_leader(to).await;
            }
        }
        if self.fires(Fault::Membership, step_ms) && !world.membership_busy() {
            let voters = world.voters();
            let removed: Vec<u64> = world
                .nodes
                .iter()
                .map(|n| n.id)
                .filter(|id| !voters.contains(id))
                .collect();
            if let Some(&id) = removed.first() {
                world.change_membership(id, true);
            } else if voters.len() >= 3 {
                let leader = world.leader().map(|i| world.nodes[i].id);
                let candidates: Vec<u64> =
                    voters.into_iter().filter(|v| Some(*v) != leader).collect();
                if !candidates.is_empty() {
                    let id = candidates[self.rng.random_range(0..candidates.len())];
                    world.change_membership(id, false);
                }
            }
        }
        Ok(())
    }

    /// Crashes a random live node, if a majority of the nodes stays up without it.
    async fn crash(&mut self, world: &mut World) {
        let index = self.rng.random_range(0..world.nodes.len());
        let live = world.nodes.iter().filter(|n| n.node.is_some()).count();
        if world.nodes[index].node.is_none() || (live - 1) * 2 <= world.nodes.len() {
            return;
        }
        let lose = self
            .rng
            .random_bool(self.config.rate(Fault::LoseUnflushed).clamp(0.0, 1.0));
        world.crash_node(index, lose).await;
        self.later(world, 1_000, 10_000, Undo::RestartNode(index));
    }

    /// Splits the nodes into a minority and the rest.
    fn partition(&mut self, world: &mut World) {
        let mut order: Vec<usize> = (0..world.nodes.len()).collect();
        for i in (1..order.len()).rev() {
            let j = self.rng.random_range(0..=i);
            order.swap(i, j);
        }
        let size = self.rng.random_range(1..=world.nodes.len() / 2);
        let (minority, majority) = order.split_at(size);
        let duration = self.rng.random_range(1_000..=8_000);
        let due = world.now_ms() + duration;
        let mut names = Vec::new();
        for &a in minority {
            names.push(world.nodes[a].id.to_string());
            for &b in majority {
                let (x, y) = (world.nodes[a].addr.clone(), world.nodes[b].addr.clone());
                world.net.partition(&x, &y);
                self.pending.push((due, Undo::Uncut(x, y)));
            }
        }
        world.log(format!(
            "partition: nodes {{{}}} cut off for {duration} ms",
            names.join(",")
        ));
    }

    /// Cuts one direction of one link, or every outgoing link of one node.
    fn asymmetric(&mut self, world: &mut World) {
        let n = world.nodes.len();
        let a = self.rng.random_range(0..n);
        let targets: Vec<usize> = if self.rng.random_bool(0.5) {
            let b = (a + self.rng.random_range(1..n)) % n;
            vec![b]
        } else {
            (0..n).filter(|&b| b != a).collect()
        };
        let duration = self.rng.random_range(1_000..=8_000);
        let due = world.now_ms() + duration;
        for b in targets {
            let (x, y) = (world.nodes[a].addr.clone(), world.nodes[b].addr.clone());
            world.net.cut(&x, &y);
            world.log(format!("link {x} -> {y} cut one way for {duration} ms"));
            self.pending.push((due, Undo::Uncut(x, y)));
        }
    }

    /// Cuts an agent off one node (it fails over) or off every node (it is unreachable).
    fn disconnect_agent(&mut self, world: &mut World) {
        let index = self.rng.random_range(0..world.agents.len());
        let certname = world.agents[index].certname.clone();
        let (nodes, min_ms, max_ms): (Vec<usize>, u64, u64) = if self.rng.random_bool(0.5) {
            ((0..world.nodes.len()).collect(), 2_000, 15_000)
        } else {
            (
                vec![self.rng.random_range(0..world.nodes.len())],
                5_000,
                20_000,
            )
        };
        let duration = self.rng.random_range(min_ms..=max_ms);
        let due = world.now_ms() + duration;
        for i in &nodes {
            let addr = world.nodes[*i].addr.clone();
            world.net.partition(&certname, &addr);
            self.pending
                .push((due, Undo::Uncut(certname.clone(), addr)));
        }
        world.log(format!(
            "{certname} cut off {} node(s) for {duration} ms",
            nodes.len()
        ));
    }

    /// Undoes what is due (everything, if `all`).
    pub async fn undo_due(&mut self, world: &mut World, all: bool) -> Result<(), String> {
        let now = world.now_ms();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(at, _)| all || *at <= now);
        self.pending = later;
        for (_, undo) in due {
            match undo {
                Undo::RestartNode(index) => {
                    if world.nodes[index].node.is_none() {
                        world.start_node(index).await?;
                    }
                }
                Undo::Uncut(a, b) => world.net.uncut(&a, &b),
                Undo::Resume(addr) => {
                    world.net.resume(&addr);
                    world.log(format!("{addr} resumed"));
                }
                Undo::FastDisk(index) => world.nodes[index].disk.set_flush_delay(Duration::ZERO),
                Undo::RestartAgent(index) => {
                    if world.agents[index].task.is_none() {
                        world.start_agent(index)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends every fault: restarts, heals, resumes, and leaves no fault pending.
    pub async fn heal_all(&mut self, world: &mut World) -> Result<(), String> {
        self.undo_due(world, true).await?;
        world.net.heal();
        world.net.resume_all();
        for i in 0..world.nodes.len() {
            world.nodes[i].disk.set_flush_delay(Duration::ZERO);
            if world.nodes[i].node.is_none() {
                world.start_node(i).await?;
            }
        }
        for i in 0..world.agents.len() {
            if world.agents[i].task.is_none() {
                world.start_agent(i)?;
            }
        }
        world.log("healed: every node and agent up, every link whole".into());
        Ok(())
    }
}
