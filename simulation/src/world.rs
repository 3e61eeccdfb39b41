//! The simulated cluster: real `porch_node` nodes on a [`SimNet`], each with its own
//! [`SimDisk`] that outlives crashes, and real `porch_agent` agents whose runner is the seeded
//! simulation runner. Everything runs on one thread under tokio's paused clock.

use crate::invariants::{Execution, NodeView};
use crate::net::SimNet;
use crate::trace::Trace;
use porch_agent::runner::Runner;
use porch_agent::runner::simulate::SimulateRunner;
use porch_agent::session::Agent;
use porch_agent::spool::Spool;
use porch_node::clock::Clock;
use porch_node::config::{NodeConfig, RaftTimings};
use porch_node::server::{Node, NodeEnv, build};
use porch_raft::SimDisk;
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
pub const RUNS_IN_FLIGHT_MAX: usize = 6;

pub struct SimNode {
    pub id: u64,
    pub addr: String,
    pub disk: SimDisk,
    pub node: Option<Node>,
    pub incarnation: u64,
}

pub struct SimAgent {
    pub certname: String,
    pub spool_dir: PathBuf,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

pub struct World {
    pub seed: u64,
    pub net: SimNet,
    pub clock: Arc<SimClock>,
    pub nodes: Vec<SimNode>,
    pub agents: Vec<SimAgent>,
    pub trace: Arc<Mutex<Trace>>,
    pub executions: Arc<Mutex<Vec<Execution>>>,
    initial: BTreeMap<u64, String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl World {
    pub fn new(seed: u64, nodes: usize, agents: usize, spool_root: &std::path::Path) -> World {
        let initial: BTreeMap<u64, String> = (1..=nodes as u64)
            .map(|id| (id, format!("node{id}:8143")))
            .collect();
        World {
            seed,
            net: SimNet::default(),
            clock: Arc::new(SimClock {
                start: tokio::time::Instant::now(),
                epoch_ms: EPOCH_MS,
            }),
            nodes: initial
                .iter()
                .map(|(id, addr)| SimNode {
                    id: *id,
                    addr: addr.clone(),
                    disk: SimDisk::new(),
                    node: None,
                    incarnation: 0,
                })
                .collect(),
            agents: (1..=agents)
                .map(|i| SimAgent {
                    certname: format!("agent{i}"),
                    spool_dir: spool_root.join(format!("agent{i}")),
                    task: None,
                })
                .collect(),
            trace: Arc::new(Mutex::new(Trace::default())),
            executions: Arc::new(Mutex::new(Vec::new())),
            initial,
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
        config.raft = RaftTimings {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every_logs: 50,
            logs_kept_after_snapshot: 10,
        };
        config.runs_in_flight_max = RUNS_IN_FLIGHT_MAX;
        config.agent_unreachable_timeout = Duration::from_secs(10);
        config.request_timeout = Duration::from_secs(5);
        config.entropy = self.seed;
        let env = NodeEnv {
            clock: self.clock.clone(),
            dialer: self.net.dialer(&addr),
            disk: Arc::new(self.nodes[index].disk.clone()),
        };
        let node_seed = self
            .seed
            .wrapping_mul(0x9e37_79b9)
            .wrapping_add(id * 1000 + self.nodes[index].incarnation);
        let node = porch_raft::types::seeded(node_seed, build(&config, env))
            .await
            .map_err(|e| format!("node {id} did not start: {e}"))?;
        self.nodes[index].incarnation += 1;
        self.net
            .up(&addr, self.nodes[index].incarnation, node.router.clone());
        self.nodes[index].node = Some(node);
        self.log(format!(
            "node {id} up (incarnation {})",
            self.nodes[index].incarnation
        ));
        Ok(())
    }

    pub async fn crash_node(&mut self, index: usize, lose_unflushed: bool) {
        let Some(node) = self.nodes[index].node.take() else {
            return;
        };
        self.net.down(&self.nodes[index].addr);
        node.shutdown().await;
        if lose_unflushed {
            self.nodes[index].disk.crash();
        }
        self.log(format!(
            "node {} crashed{}",
            self.nodes[index].id,
            if lose_unflushed {
                " (unflushed writes lost)"
            } else {
                ""
            }
        ));
    }

    pub fn start_agent(&mut self, index: usize) -> Result<(), String> {
        let agent = &self.agents[index];
        let certname = agent.certname.clone();
        let spool = Spool::open(&agent.spool_dir)?;
        let mut urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("http://{}", n.addr))
            .collect();
        urls.rotate_left(index % self.nodes.len());
        let dialer = self.net.dialer(&certname);
        let executions = self.executions.clone();
        let trace = self.trace.clone();
        let clock = self.clock.clone();
        let name = certname.clone();
        let observer: porch_agent::session::RunObserver =
            Arc::new(move |txn: &str, job: u64, started: bool| {
                let now = clock.now_ms() - EPOCH_MS;
                let mut list = lock(&executions);
                if started {
                    list.push(Execution {
                        certname: name.clone(),
                        transaction_id: txn.to_string(),
                        job_id: job,
                        start_ms: now,
                        end_ms: None,
                    });
                } else if let Some(e) = list
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
        let runner = Runner::Simulate(SimulateRunner {
            seed: self.seed,
            duration_ms_min: 200,
            duration_ms_max: 3000,
            failure_rate: 0.15,
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

    /// Each live node's metrics and applied state.
    pub fn views(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .map(|node| {
                let metrics = node.consensus.metrics();
                let applied = node.consensus.view.read();
                NodeView {
                    id: node.consensus.id,
                    term: metrics.current_term,
                    leader: metrics.current_leader,
                    is_leader: metrics.current_leader == Some(node.consensus.id)
                        && metrics.state == openraft_state_leader(),
                    applied_index: applied.last_applied.map(|l| l.index).unwrap_or(0),
                    state: applied.cluster.clone(),
                }
            })
            .collect()
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
