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
    RepairDisk(usize),
    ResetClock(ClockOf),
    Unstall(String),
}

/// Whose clock a clock fault changed.
#[derive(Debug, Clone, Copy)]
enum ClockOf {
    Node(usize),
    Agent(usize),
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
        if self.fires(Fault::PowerLoss, step_ms) {
            self.power_loss(world).await;
        }
        if self.fires(Fault::DiskFailure, step_ms) {
            let index = self.rng.random_range(0..world.nodes.len());
            if world.nodes[index].node.is_some() {
                world.nodes[index].disk.set_fail_flushes(true);
                world.log(format!(
                    "node {}'s disk fails its flushes",
                    world.nodes[index].id
                ));
                self.later(world, 200, 3_000, Undo::RepairDisk(index));
            }
        }
        if self.fires(Fault::ClockJump, step_ms) {
            let whose = self.clock_of(world);
            let delta = self.rng.random_range(-60_000..=60_000i64);
            clock(world, whose).jump(delta);
            world.log(format!("{} clock jumps {delta} ms", describe(world, whose)));
            self.later(world, 2_000, 20_000, Undo::ResetClock(whose));
        }
        if self.fires(Fault::ClockDrift, step_ms) {
            let whose = self.clock_of(world);
            let ppm = self.rng.random_range(-100_000..=100_000i64);
            clock(world, whose).drift(ppm);
            world.log(format!("{} clock drifts {ppm} ppm", describe(world, whose)));
            self.later(world, 2_000, 20_000, Undo::ResetClock(whose));
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
                self.spool_power_loss(world, index);
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
                world.transfer_leader(to);
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
        if self.fires(Fault::AgentStall, step_ms) {
            let index = self.rng.random_range(0..world.agents.len());
            let certname = world.agents[index].certname.clone();
            world.net.stall_agent(&certname);
            world.log(format!("{certname} stalled"));
            self.later(world, 500, 10_000, Undo::Unstall(certname));
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
        let power = if lose {
            Some(self.kept_unflushed(world, index))
        } else {
            None
        };
        world.crash_node(index, power).await;
        self.later(world, 1_000, 10_000, Undo::RestartNode(index));
    }

    /// How many unflushed batches node `index`'s disk keeps when its power goes: none, or
    /// with [`Fault::TornFlush`]'s probability a drawn prefix.
    fn kept_unflushed(&mut self, world: &World, index: usize) -> usize {
        let torn = self.config.rate(Fault::TornFlush);
        let unflushed = world.nodes[index].disk.unflushed_writes();
        if torn > 0.0 && unflushed > 0 && self.rng.random_bool(torn.min(1.0)) {
            self.rng.random_range(0..=unflushed)
        } else {
            0
        }
    }

    /// A majority of the nodes, or every node, loses power at the same instant; each
    /// restarts after its own drawn time.
    async fn power_loss(&mut self, world: &mut World) {
        let n = world.nodes.len();
        let count = if self.rng.random_bool(0.5) {
            n
        } else {
            n / 2 + 1
        };
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.rng.random_range(0..=i);
            order.swap(i, j);
        }
        let chosen = &order[..count];
        let ids: Vec<String> = chosen
            .iter()
            .map(|&i| world.nodes[i].id.to_string())
            .collect();
        world.log(format!("power loss: nodes {{{}}} at once", ids.join(",")));
        // Every disk loses power before any node shuts down: the same instant for all.
        let kept: Vec<(usize, usize)> = chosen
            .iter()
            .filter(|&&i| world.nodes[i].node.is_some())
            .map(|&i| (i, self.kept_unflushed(world, i)))
            .collect();
        for &(i, _) in &kept {
            world.nodes[i].disk.power_off();
        }
        for (i, kept) in kept {
            world.crash_node(i, Some(kept)).await;
            self.later(world, 1_000, 10_000, Undo::RestartNode(i));
        }
    }

    /// With [`Fault::BitRot`]'s probability, flips one bit of one record on stopped node
    /// `index`'s disk — a log entry, the snapshot, the committed index or the purge point
    /// (the vote and the node identity are records whose loss the node refuses to start
    /// with; `porch_raft::repair`'s tests cover those) — if every other node is up and
    /// caught up with the commit index: a committed entry then has intact copies on a
    /// majority, which is what recovery from peers needs.
    async fn maybe_rot(&mut self, world: &mut World, index: usize) {
        let rate = self.config.rate(Fault::BitRot);
        if rate <= 0.0 || !self.rng.random_bool(rate.min(1.0)) {
            return;
        }
        if !world.others_caught_up(index) {
            return;
        }
        use porch_raft::disk::Tree;
        use porch_raft::sim_disk::StoredRecord;
        let disk = &world.nodes[index].disk;
        let records: Vec<(StoredRecord, usize)> = disk
            .records()
            .into_iter()
            .filter(|(record, len)| {
                *len > 0
                    && match record {
                        StoredRecord::Tree(Tree::Log, _) => true,
                        StoredRecord::Tree(Tree::Meta, key) => {
                            key == b"committed" || key == b"last_purged"
                        }
                        StoredRecord::Blob(name) => name == "snapshot",
                    }
            })
            .collect();
        if records.is_empty() {
            return;
        }
        let (record, len) = &records[self.rng.random_range(0..records.len())];
        let bit = self.rng.random_range(0..len * 8);
        disk.flip_bit(record, bit);
        let id = world.nodes[index].id;
        let what = match record {
            StoredRecord::Tree(Tree::Log, key) => format!(
                "log entry {}",
                porch_raft::disk::log_index(key).unwrap_or(u64::MAX)
            ),
            StoredRecord::Tree(tree, key) => {
                format!("{} record '{}'", tree.name(), String::from_utf8_lossy(key))
            }
            StoredRecord::Blob(name) => format!("blob '{name}'"),
        };
        world.log(format!("bit rot: bit {bit} of node {id}'s {what} flipped"));
    }

    /// An agent's crash is its machine's: its spool disk keeps what was synced and, with
    /// [`Fault::TornFlush`]'s probability, a drawn prefix of the changes since, the last one
    /// possibly cut short.
    fn spool_power_loss(&mut self, world: &mut World, index: usize) {
        let disk = &world.agents[index].spool_disk;
        let unsynced = disk.unsynced();
        let torn = self.config.rate(Fault::TornFlush);
        let (kept, torn_bytes) =
            if unsynced > 0 && torn > 0.0 && self.rng.random_bool(torn.min(1.0)) {
                (
                    self.rng.random_range(0..=unsynced),
                    Some(self.rng.random_range(0..200)),
                )
            } else {
                (0, None)
            };
        let lost = disk.power_loss(kept, torn_bytes);
        if unsynced > 0 {
            world.log(format!(
                "{}'s spool lost {lost} of {unsynced} unsynced changes{}",
                world.agents[index].certname,
                if torn_bytes.is_some() { " (torn)" } else { "" }
            ));
        }
    }

    /// With [`Fault::BitRot`]'s probability, flips one bit of one record of a stopped
    /// agent's spool.
    fn maybe_rot_spool(&mut self, world: &mut World, index: usize) {
        let rate = self.config.rate(Fault::BitRot);
        if rate <= 0.0 || !self.rng.random_bool(rate.min(1.0)) {
            return;
        }
        let disk = &world.agents[index].spool_disk;
        let records: Vec<(String, usize)> = disk
            .records()
            .into_iter()
            .filter(|(_, len)| *len > 0)
            .collect();
        if records.is_empty() {
            return;
        }
        let (name, len) = &records[self.rng.random_range(0..records.len())];
        let bit = self.rng.random_range(0..len * 8);
        disk.flip_bit(name, bit);
        world.log(format!(
            "bit rot: bit {bit} of {}'s spool record {name} flipped",
            world.agents[index].certname
        ));
    }

    fn clock_of(&mut self, world: &World) -> ClockOf {
        if self.rng.random_bool(0.5) {
            ClockOf::Node(self.rng.random_range(0..world.nodes.len()))
        } else {
            ClockOf::Agent(self.rng.random_range(0..world.agents.len()))
        }
    }

    /// A node whose raft stopped because its disk failed a flush exits, as the real one does
    /// (`porch server` ends when raft stops); the power of its machine is not lost, but what
    /// the failed flushes covered is (the kernel may have dropped those pages: "fsyncgate").
    /// It restarts once its disk is repaired. Returns the nodes it stopped.
    pub async fn stop_nodes_with_failed_disks(&mut self, world: &mut World) -> Vec<u64> {
        let mut stopped = Vec::new();
        for index in 0..world.nodes.len() {
            if world.nodes[index].disk.flush_failures() == 0 {
                continue;
            }
            let Some(node) = &world.nodes[index].node else {
                continue;
            };
            if node.consensus.raft.with_raft_state(|_| ()).await.is_ok() {
                continue; // raft has not stopped (yet)
            }
            let id = world.nodes[index].id;
            world.crash_node(index, Some(0)).await;
            world.log(format!("node {id} stopped: its disk failed a flush"));
            self.later(world, 500, 3_000, Undo::RestartNode(index));
            stopped.push(id);
        }
        stopped
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
                    // A disk still failing keeps its node down until it is repaired.
                    if world.nodes[index].node.is_none() && !world.nodes[index].disk.failing() {
                        self.maybe_rot(world, index).await;
                        world.start_node(index).await?;
                    }
                }
                Undo::RepairDisk(index) => {
                    world.nodes[index].disk.set_fail_flushes(false);
                    world.log(format!("node {}'s disk repaired", world.nodes[index].id));
                    if world.nodes[index].node.is_none() {
                        self.later(world, 0, 2_000, Undo::RestartNode(index));
                    }
                }
                Undo::ResetClock(whose) => {
                    clock(world, whose).reset();
                    world.log(format!("{} clock set right", describe(world, whose)));
                }
                Undo::Uncut(a, b) => world.net.uncut(&a, &b),
                Undo::Resume(addr) => {
                    world.net.resume(&addr);
                    world.log(format!("{addr} resumed"));
                }
                Undo::FastDisk(index) => world.nodes[index].disk.set_flush_delay(Duration::ZERO),
                Undo::Unstall(certname) => {
                    world.net.unstall_agent(&certname);
                    world.log(format!("{certname} resumed"));
                }
                Undo::RestartAgent(index) => {
                    if world.agents[index].task.is_none() {
                        self.maybe_rot_spool(world, index);
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
            world.nodes[i].disk.set_fail_flushes(false);
            world.nodes[i].clock.reset();
            if world.nodes[i].node.is_none() {
                world.start_node(i).await?;
            }
        }
        for i in 0..world.agents.len() {
            world.agents[i].clock.reset();
            if world.agents[i].task.is_none() {
                world.start_agent(i)?;
            }
        }
        world.log("healed: every node and agent up, every link whole".into());
        Ok(())
    }
}

fn clock(world: &World, whose: ClockOf) -> &crate::machine_clock::MachineClock {
    match whose {
        ClockOf::Node(i) => &world.nodes[i].clock,
        ClockOf::Agent(i) => &world.agents[i].clock,
    }
}

fn describe(world: &World, whose: ClockOf) -> String {
    match whose {
        ClockOf::Node(i) => format!("node {}'s", world.nodes[i].id),
        ClockOf::Agent(i) => format!("{}'s", world.agents[i].certname),
    }
}
