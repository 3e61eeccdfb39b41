//! The simulated cluster: real `porch_node` nodes on a [`SimNet`], each with its own
//! [`SimDisk`] that outlives crashes, and real `porch_agent` agents whose runner is the seeded
//! simulation runner. Everything runs on one thread under tokio's paused clock.

use crate::config::{Fault, SimConfig};
use crate::invariants::{AppliedSample, Execution, NodeView, StartEvidence, TaskExecution};
use crate::machine_clock::MachineClock;
use crate::net::{MessageFaults, SimNet};
use crate::trace::Trace;
use porch_agent::runner::Runner;
use porch_agent::runner::simulate::SimulateRunner;
use porch_agent::session::Agent;
use porch_agent::spool::Spool;
use porch_node::clock::Clock;
use porch_node::config::NodeConfig;
use porch_node::membership::MemberChange;
use porch_node::server::{Node, NodeEnv, build};
use porch_raft::{AppliedView, SimDisk};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Simulated wall-clock time: a fixed epoch plus tokio's (paused, simulated) time.
pub struct SimClock {
    pub start: tokio::time::Instant,
    pub epoch_ms: u64,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.epoch_ms + self.start.elapsed().as_millis() as u64
    }
}

pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// Simulated milliseconds since the run began.
pub fn elapsed_ms(clock: &SimClock) -> u64 {
    clock.now_ms() - EPOCH_MS
}
pub const RUNS_IN_FLIGHT_MAX: usize = 6;

pub struct SimNode {
    pub id: u64,
    pub addr: String,
    pub disk: SimDisk,
    /// The machine's wall clock (it outlives restarts, as the machine does).
    pub clock: Arc<MachineClock>,
    pub node: Option<Node>,
    pub incarnation: u64,
}

pub struct SimAgent {
    pub certname: String,
    pub clock: Arc<MachineClock>,
    /// The task cache's directory (the spool itself is on `spool_disk`).
    pub spool_dir: PathBuf,
    /// The disk of the agent's machine that holds its spool; it outlives crashes.
    pub spool_disk: crate::spool_disk::SpoolDisk,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

pub struct World {
    pub seed: u64,
    knobs: crate::knobs::Knobs,
    /// The highest one-way latency between two datacenters, ms.
    worst_latency_ms: u64,
    runner: SimulateRunner,
    pub net: SimNet,
    pub clock: Arc<SimClock>,
    pub nodes: Vec<SimNode>,
    pub agents: Vec<SimAgent>,
    pub trace: Arc<Mutex<Trace>>,
    pub executions: Arc<Mutex<Vec<Execution>>>,
    /// Every task an agent started, with its input and file as the agent had them.
    pub task_runs: Arc<Mutex<Vec<TaskExecution>>>,
    /// The code dir every node reads tasks from (the workload writes and redeploys it).
    code_dir: PathBuf,
    membership_busy: Arc<std::sync::atomic::AtomicBool>,
    rng: rand::rngs::SmallRng,
    /// The applied state of every node incarnation ever started (a crashed one's stays as it
    /// was): what was committed, for checking that agents only run committed decisions.
    pub all_views: Arc<Mutex<Vec<Arc<AppliedView>>>>,
    /// Whose each of `all_views` is ("node 2 incarnation 3").
    view_labels: Vec<String>,
    /// The last state copied out of each node incarnation, with its applied index: a node
    /// still at that index holds the same state, so it is not copied again every 100 ms.
    copied_states: Mutex<BTreeMap<(u64, u64), (u64, Arc<porch_core::ClusterState>)>>,
    initial: BTreeMap<u64, String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl World {
    pub fn new(config: &SimConfig, spool_root: &std::path::Path) -> World {
        let (seed, nodes, agents) = (config.seed, config.nodes, config.agents);
        let initial: BTreeMap<u64, String> = (1..=nodes as u64)
            .map(|id| (id, format!("node{id}:8143")))
            .collect();
        let net = SimNet::new(seed);
        net.set_faults(MessageFaults {
            loss: config.rate(Fault::Loss),
            duplication: config.rate(Fault::Duplication),
            delay: config.rate(Fault::Delay),
            delay_ms_max: 200,
        });
        // Datacenters round-robin: node i and agent i in datacenter i mod n.
        let mut datacenter = BTreeMap::new();
        for (i, addr) in initial.values().enumerate() {
            datacenter.insert(addr.clone(), i % config.datacenters);
        }
        for i in 0..agents {
            datacenter.insert(format!("agent{}", i + 1), i % config.datacenters);
        }
        net.set_topology(datacenter, config.latency_ms.clone());
        net.set_agent_window(config.knobs.agent_window_bytes);
        let clock = Arc::new(SimClock {
            start: tokio::time::Instant::now(),
            epoch_ms: EPOCH_MS,
        });
        World {
            seed,
            knobs: config.knobs.clone(),
            worst_latency_ms: config
                .latency_ms
                .iter()
                .flatten()
                .copied()
                .max()
                .unwrap_or(0),
            runner: SimulateRunner {
                seed,
                duration_ms_min: config.run_ms_min,
                duration_ms_max: config.run_ms_max,
                failure_rate: config.run_failure_rate,
            },
            net,
            nodes: initial
                .iter()
                .map(|(id, addr)| SimNode {
                    id: *id,
                    addr: addr.clone(),
                    disk: {
                        let disk = SimDisk::new();
                        disk.set_flush_latency(Duration::from_millis(
                            config.knobs.flush_latency_ms,
                        ));
                        disk
                    },
                    clock: Arc::new(MachineClock::new(clock.clone())),
                    node: None,
                    incarnation: 0,
                })
                .collect(),
            agents: (1..=agents)
                .map(|i| SimAgent {
                    certname: format!("agent{i}"),
                    clock: Arc::new(MachineClock::new(clock.clone())),
                    spool_dir: spool_root.join(format!("agent{i}")),
                    spool_disk: Default::default(),
                    task: None,
                })
                .collect(),
            trace: Arc::new(Mutex::new(Trace::default())),
            executions: Arc::new(Mutex::new(Vec::new())),
            task_runs: Arc::default(),
            code_dir: crate::tasks::code_dir(spool_root),
            membership_busy: Arc::default(),
            rng: rand::SeedableRng::seed_from_u64(seed ^ 0xc11e_47),
            all_views: Arc::default(),
            view_labels: Vec::new(),
            copied_states: Mutex::new(BTreeMap::new()),
            initial,
            clock,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms() - EPOCH_MS
    }

    pub fn log(&self, line: String) {
        lock(&self.trace).push(self.now_ms(), line);
    }

    pub async fn start_node(&mut self, index: usize) -> Result<(), String> {
        let (id, addr) = (self.nodes[index].id, self.nodes[index].addr.clone());
        let mut config = NodeConfig::new(
            id,
            PathBuf::from(format!("sim/node{id}")),
            addr.clone(),
            self.initial.clone(),
        );
        self.knobs
            .configure_node(&mut config, self.worst_latency_ms);
        config.runs_in_flight_max = RUNS_IN_FLIGHT_MAX;
        config.agent_unreachable_timeout = Duration::from_secs(10);
        config.request_timeout = Duration::from_secs(5);
        config.entropy = self.seed;
        config.codedir = self.code_dir.clone();
        let incarnation = self.nodes[index].incarnation + 1;
        let env = NodeEnv {
            clock: self.nodes[index].clock.clone(),
            dialer: self.net.node_dialer(&addr, incarnation),
            disk: Arc::new(self.nodes[index].disk.clone()),
            tls: None,
        };
        let node_seed = self
            .seed
            .wrapping_mul(0x9e37_79b9)
            .wrapping_add(id * 1000 + incarnation);
        let node = porch_raft::types::seeded(node_seed, build(&config, env))
            .await
            .map_err(|e| format!("node {id} did not start: {e}"))?;
        self.nodes[index].incarnation = incarnation;
        lock(&self.all_views).push(node.consensus.view.clone());
        self.view_labels
            .push(format!("node {id} incarnation {incarnation}"));
        self.net.up(&addr, incarnation, node.router.clone());
        self.nodes[index].node = Some(node);
        self.log(format!(
            "node {id} up (incarnation {})",
            self.nodes[index].incarnation
        ));
        Ok(())
    }

    /// Stops node `index` at once. `power`: `None`, the process died and the machine kept
    /// what it wrote; `Some(kept)`, the power went and its disk keeps only what was flushed
    /// plus the first `kept` unflushed batches (a torn flush).
    pub async fn crash_node(&mut self, index: usize, power: Option<usize>) {
        let Some(node) = self.nodes[index].node.take() else {
            return;
        };
        self.net.down(&self.nodes[index].addr);
        // The power goes before the process notices anything: flushes under way complete
        // nothing, and the shutdown writes nothing.
        if power.is_some() {
            self.nodes[index].disk.power_off();
        }
        node.shutdown().await;
        let lost = power.map(|kept| (kept, self.nodes[index].disk.power_on(kept)));
        self.log(format!(
            "node {} {}",
            self.nodes[index].id,
            match lost {
                None => "crashed".to_string(),
                Some((0, lost)) => format!("lost power ({lost} unflushed batches lost)"),
                Some((kept, lost)) => {
                    format!("lost power (torn: {kept} unflushed batches kept, {lost} lost)")
                }
            }
        ));
    }

    pub fn start_agent(&mut self, index: usize) -> Result<(), String> {
        let agent = &self.agents[index];
        let certname = agent.certname.clone();
        let spool_clock = agent.clock.clone();
        let spool = Spool::open_in(
            Arc::new(agent.spool_disk.clone()),
            Arc::new(move || spool_clock.now_ms()),
        )?;
        let mut urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("http://{}", n.addr))
            .collect();
        urls.rotate_left(index % self.nodes.len());
        let dialer = self.net.agent_dialer(&certname);
        let executions = self.executions.clone();
        let trace = self.trace.clone();
        let clock = self.clock.clone();
        let name = certname.clone();
        let all_views = self.all_views.clone();
        let observer: porch_agent::session::RunObserver =
            Arc::new(move |txn: &str, job: u64, started: bool| {
                let now = clock.now_ms() - EPOCH_MS;
                if started {
                    let evidence = StartEvidence::gather(&lock(&all_views), txn);
                    lock(&executions).push(Execution {
                        certname: name.clone(),
                        transaction_id: txn.to_string(),
                        job_id: job,
                        start_ms: now,
                        end_ms: None,
                        evidence,
                    });
                } else if let Some(e) = lock(&executions)
                    .iter_mut()
                    .rev()
                    .find(|e| e.transaction_id == txn && e.end_ms.is_none())
                {
                    e.end_ms = Some(now);
                }
                lock(&trace).push(
                    now,
                    format!("{name} {} {txn}", if started { "starts" } else { "ends" }),
                );
            });
        let task_runs = self.task_runs.clone();
        let task_certname = certname.clone();
        let (task_trace, task_clock) = (self.trace.clone(), self.clock.clone());
        let task_observer: porch_agent::task::TaskObserver =
            Arc::new(move |start: &porch_agent::task::TaskStart| {
                lock(&task_trace).push(
                    elapsed_ms(&task_clock),
                    format!(
                        "{task_certname} runs task {} from file {:.12} in {}",
                        start.task.name, start.file_sha256, start.transaction_id
                    ),
                );
                lock(&task_runs).push(TaskExecution {
                    certname: task_certname.clone(),
                    transaction_id: start.transaction_id.to_string(),
                    requested_sha256: start.task.sha256.clone(),
                    file_sha256: start.file_sha256.to_string(),
                    input: start.input.clone(),
                });
            });
        let runner = Runner::Simulate(SimulateRunner {
            seed: self.runner.seed,
            duration_ms_min: self.runner.duration_ms_min,
            duration_ms_max: self.runner.duration_ms_max,
            failure_rate: self.runner.failure_rate,
        });
        let agent = Arc::new(Agent {
            certname: certname.clone(),
            urls,
            spool: Arc::new(Mutex::new(spool)),
            runner: Arc::new(runner),
            connector: Some(Arc::new(move |url: &str| {
                dialer.channel(url.trim_start_matches("http://"))
            })),
            observer: Some(observer),
            tasks: porch_agent::task::TaskSupport::new(
                agent.spool_dir.join(porch_agent::args::TASK_CACHE_DIR),
            )
            .with_observer(task_observer),
            run_queue_max: self.knobs.agent_run_queue,
        });
        self.agents[index].task = Some(tokio::spawn(agent.run()));
        self.log(format!("{certname} up"));
        Ok(())
    }

    pub fn crash_agent(&mut self, index: usize) {
        if let Some(task) = self.agents[index].task.take() {
            // Its session and channels are dropped with the task, closing its connections.
            task.abort();
            self.log(format!("{} crashed", self.agents[index].certname));
        }
    }

    /// The index of the node that is leader in its own eyes (the highest term wins).
    pub fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.node.as_ref().map(|node| (i, node.consensus.metrics())))
            .filter(|(_, m)| m.state == porch_raft::types::ServerState::Leader)
            .max_by_key(|(_, m)| m.current_term)
            .map(|(i, _)| i)
    }

    /// Whether every node but `index` is up and its log reaches the highest commit index
    /// any of them knows. Never while nothing is committed: node `index` may then hold the
    /// only copy of the cluster's first membership, and without it no node can ever lead.
    pub fn others_caught_up(&self, index: usize) -> bool {
        let mut committed: Option<u64> = None;
        let mut lowest_last: Option<u64> = Some(u64::MAX);
        for (i, n) in self.nodes.iter().enumerate() {
            if i == index {
                continue;
            }
            let Some(node) = &n.node else { return false };
            let metrics = node.consensus.metrics();
            committed = committed.max(metrics.local_committed.map(|id| id.index));
            lowest_last = lowest_last.min(metrics.last_log_index);
        }
        committed.is_some() && lowest_last >= committed
    }

    /// The voters as the leader (or any live node) sees them.
    pub fn voters(&self) -> Vec<u64> {
        let index = self
            .leader()
            .or_else(|| self.nodes.iter().position(|n| n.node.is_some()));
        index
            .and_then(|i| self.nodes[i].node.as_ref())
            .map(|node| {
                node.consensus
                    .metrics()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asks the leader to hand leadership to node `to`.
    /// Asks the leader to hand leadership to `to` as an operator does (`porch cluster
    /// leader`), in the background: the leader waits for `to` to be reachable and caught up.
    pub fn transfer_leader(&mut self, to: u64) {
        let Some(leader) = self.leader() else { return };
        let Some(consensus) = self.nodes[leader]
            .node
            .as_ref()
            .map(|n| n.consensus.clone())
        else {
            return;
        };
        let from = consensus.id;
        if from == to {
            return;
        }
        self.log(format!("leadership transfer {from} -> {to} asked"));
        let (trace, clock) = (self.trace.clone(), self.clock.clone());
        tokio::spawn(async move {
            let result = consensus
                .change_member(MemberChange::TransferLeader { to })
                .await;
            let line = match result {
                Ok(()) => format!("leadership moved {from} -> {to}"),
                Err(e) => format!("leadership not moved {from} -> {to}: {e}"),
            };
            lock(&trace).push(clock.now_ms() - EPOCH_MS, line);
        });
    }

    /// Removes (`add` false) or adds back a voter (as a learner, then promoted) through any live node, in the background:
    /// the change waits for catch-up and joint consensus while the run goes on.
    pub fn change_membership(&self, id: u64, add: bool) {
        // Through the leader: a removed node may still believe it leads a term nobody follows.
        let via = self
            .leader()
            .and_then(|i| self.nodes[i].node.as_ref().map(|n| n.consensus.clone()))
            .or_else(|| self.live_consensus().first().cloned());
        let Some(via) = via else { return };
        self.membership_busy
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let busy = self.membership_busy.clone();
        let addr = self
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        let trace = self.trace.clone();
        let clock = self.clock.clone();
        tokio::spawn(async move {
            // A node comes back as a learner first, then is promoted: the learner's path
            // (replicated to, never counted) runs under the same faults and invariants.
            let result = if add {
                let learner = MemberChange::Add {
                    id,
                    addr,
                    datacenter: None,
                    learner: true,
                };
                // Already a learner: an earlier attempt added it but did not get to promote
                // it (its leader crashed); an operator then promotes it, and so does this.
                let already_learner = via
                    .metrics()
                    .membership_config
                    .membership()
                    .learner_ids()
                    .any(|learner| learner == id);
                let added = if already_learner {
                    Ok(())
                } else {
                    via.change_member(learner).await
                };
                match added {
                    Ok(()) => via.change_member(MemberChange::Promote { id }).await,
                    Err(e) => Err(e),
                }
            } else {
                via.change_member(MemberChange::Remove { id }).await
            };
            let now = clock.now_ms() - EPOCH_MS;
            let what = if add { "added back" } else { "removed" };
            let line = match result {
                Ok(()) => format!("node {id} {what}"),
                Err(e) => format!("node {id} not {what}: {e}"),
            };
            lock(&trace).push(now, line);
            busy.store(false, std::sync::atomic::Ordering::SeqCst);
        });
        self.log(format!(
            "membership: {} node {id} asked",
            if add { "add" } else { "remove" }
        ));
    }

    /// Draws from the world's own random source (client decisions).
    pub fn draw(&mut self, probability: f64) -> bool {
        use rand::Rng;
        self.rng.random_bool(probability.clamp(0.0, 1.0))
    }

    /// Whether a membership change asked for is still under way.
    pub fn membership_busy(&self) -> bool {
        self.membership_busy
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Each live node's metrics and applied state.
    pub fn views(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .filter_map(|n| Some((n.incarnation, n.node.as_ref()?)))
            .map(|(incarnation, node)| {
                let metrics = node.consensus.metrics();
                let applied = node.consensus.view.read();
                let applied_index = applied.last_applied.map(|l| l.index).unwrap_or(0);
                let state = {
                    let mut copied = lock(&self.copied_states);
                    let slot = copied
                        .entry((node.consensus.id, incarnation))
                        .or_insert_with(|| (applied_index, Arc::new(applied.cluster.clone())));
                    if slot.0 != applied_index {
                        *slot = (applied_index, Arc::new(applied.cluster.clone()));
                    }
                    slot.1.clone()
                };
                NodeView {
                    id: node.consensus.id,
                    incarnation,
                    term: metrics.current_term,
                    leader: metrics.current_leader,
                    is_leader: metrics.current_leader == Some(node.consensus.id)
                        && metrics.state == openraft_state_leader(),
                    leads_with_current_state: node.consensus.leads_with_current_state(),
                    log_committed: metrics.local_committed.map(|id| id.index)
                        == metrics.last_log_index,
                    applied_index,
                    joint_membership: metrics
                        .membership_config
                        .membership()
                        .get_joint_config()
                        .len()
                        > 1,
                    state,
                }
            })
            .collect()
    }

    /// What every node incarnation ever started (a crashed one's as it was when it died)
    /// last applied.
    pub fn applied_samples(&self) -> Vec<AppliedSample> {
        lock(&self.all_views)
            .iter()
            .zip(&self.view_labels)
            .filter_map(|(view, label)| {
                let state = view.read();
                state.last_applied.map(|log_id| AppliedSample {
                    who: label.clone(),
                    index: log_id.index,
                    log_id: log_id.to_string(),
                    clock_ms: state.cluster.clock_ms(),
                })
            })
            .collect()
    }

    /// The first running node whose raft stopped on its own, with why.
    /// (Asks each core: a core that panicked leaves its last metrics saying it runs.)
    /// A live node whose raft stopped for any reason but a flush its disk failed (the
    /// expected stop on a failing disk, which the fault injector turns into a node stop; it
    /// may come between the injector's look and this one).
    pub async fn stopped_raft(&self) -> Option<String> {
        for node in &self.nodes {
            let Some(live) = &node.node else { continue };
            if let Err(fatal) = live.consensus.raft.with_raft_state(|_| ()).await {
                // Asked after the wait: raft may stop on a failed flush while it is answered.
                if node.disk.flush_failures() > 0 {
                    continue;
                }
                return Some(format!(
                    "node {}'s raft stopped: {fatal}",
                    live.consensus.id
                ));
            }
        }
        None
    }

    pub fn live_consensus(&self) -> Vec<Arc<porch_node::consensus::Consensus>> {
        self.nodes
            .iter()
            .filter_map(|n| n.node.as_ref().map(|node| node.consensus.clone()))
            .collect()
    }
}

fn openraft_state_leader() -> porch_raft::types::ServerState {
    porch_raft::types::ServerState::Leader
}
