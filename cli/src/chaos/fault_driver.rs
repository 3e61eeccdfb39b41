//! Applies a schedule to the cluster a run owns: each fault at its offset, each heal at its
//! end, every event noted in the timeline once in effect; nodes or agents that exit on their
//! own are noted (a finding for the verdict) and restarted.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

use super::delay_proxy::DelayProxy;
use super::network::{self, Lab};
use super::processes::Process;
use super::schedule::{Fault, NodeId, ScheduledFault};

/// Prints each event with its offset from the start of the fault phase, and keeps them.
pub struct Timeline {
    pub start: Instant,
    pub lines: Vec<String>,
}

impl Timeline {
    pub fn note(&mut self, what: &str) {
        let line = format!("[{:7.1} s] {what}", self.start.elapsed().as_secs_f64());
        println!("{line}");
        self.lines.push(line);
    }
}

/// The cluster a run owns, and the faults applied to it.
pub struct Cluster {
    pub lab: Option<Lab>,
    pub proxies: BTreeMap<(NodeId, NodeId), DelayProxy>,
    pub nodes: Vec<Process>,
    pub agents: Vec<Process>,
    pub unexpected_exits: Vec<String>,
}

impl Cluster {
    fn node(&mut self, id: NodeId) -> &mut Process {
        &mut self.nodes[id - 1]
    }

    fn lab(&mut self) -> Result<&mut Lab, String> {
        self.lab.as_mut().ok_or_else(|| {
            "network faults need the namespaces (run without --no-network)".to_string()
        })
    }

    fn partition_pairs(&self, minority: &[NodeId]) -> Vec<(NodeId, NodeId)> {
        let others: Vec<NodeId> = (1..=self.nodes.len())
            .filter(|n| !minority.contains(n))
            .collect();
        minority
            .iter()
            .flat_map(|&a| others.iter().flat_map(move |&b| [(a, b), (b, a)]))
            .collect()
    }

    async fn apply(&mut self, fault: &Fault) -> Result<(), String> {
        match fault {
            Fault::Partition { minority } => {
                for (from, to) in self.partition_pairs(minority) {
                    self.lab()?.cut(from, to)?;
                }
            }
            Fault::OneWayCut { from, to } => self.lab()?.cut(*from, *to)?,
            Fault::ClientsCut { node } => self.lab()?.cut(network::CLIENTS, *node)?,
            Fault::SlowLink { from, to, delay_ms } => self
                .proxies
                .get(&(*from, *to))
                .ok_or("slow links need the namespaces")?
                .set_delay(Duration::from_millis(*delay_ms)),
            Fault::Pause { node } => self.node(*node).pause()?,
            Fault::Kill { node } => self.node(*node).kill9().await,
            Fault::KillAll => {
                for node in &mut self.nodes {
                    node.kill9().await;
                }
            }
            Fault::KillAgent { agent } => self.agents[agent - 1].kill9().await,
        }
        Ok(())
    }

    async fn heal(&mut self, fault: &Fault) -> Result<(), String> {
        match fault {
            Fault::Partition { minority } => {
                for (from, to) in self.partition_pairs(minority) {
                    self.lab()?.uncut(from, to)?;
                }
            }
            Fault::OneWayCut { from, to } => self.lab()?.uncut(*from, *to)?,
            Fault::ClientsCut { node } => self.lab()?.uncut(network::CLIENTS, *node)?,
            Fault::SlowLink { from, to, .. } => {
                if let Some(proxy) = self.proxies.get(&(*from, *to)) {
                    proxy.set_delay(Duration::ZERO);
                }
            }
            Fault::Pause { node } => self.node(*node).resume()?,
            Fault::Kill { node } => self.node(*node).spawn()?,
            Fault::KillAll => {
                for node in &mut self.nodes {
                    node.spawn()?;
                }
            }
            Fault::KillAgent { agent } => self.agents[agent - 1].spawn()?,
        }
        Ok(())
    }

    /// Restarts nodes and agents that exited on their own (a crash is a finding, noted in the
    /// timeline).
    pub fn restart_exited(&mut self, timeline: &mut Timeline) -> Result<(), String> {
        for node in self.nodes.iter_mut().chain(&mut self.agents) {
            if let Some(status) = node.exited() {
                let what = format!(
                    "{} exited on its own ({status}); see {}",
                    node.name,
                    node.log_path().display()
                );
                timeline.note(&format!("! {what}; restarting it"));
                self.unexpected_exits.push(what);
                node.spawn()?;
            }
        }
        Ok(())
    }
}

pub async fn drive_faults(
    cluster: &mut Cluster,
    faults: &[ScheduledFault],
    timeline: &mut Timeline,
) -> Result<(), String> {
    // (offset, heal?, index): heals sort before starts at the same instant.
    let mut events: Vec<(u64, bool, usize)> = faults
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            [
                (f.start_ms, true, i),
                (f.start_ms + f.duration_ms, false, i),
            ]
        })
        .collect();
    events.sort_by_key(|&(at, start, i)| (at, start, i));
    for (at, start, i) in events {
        tokio::time::sleep_until(timeline.start + Duration::from_millis(at)).await;
        cluster.restart_exited(timeline)?;
        let fault = &faults[i].fault;
        let fault = match fault {
            Fault::KillAgent { agent } => format!("{fault} ({})", cluster.agents[agent - 1].name),
            _ => fault.to_string(),
        };
        let fault_to_apply = &faults[i].fault;
        // Noted once in place: a line in the timeline is a fault in effect (or healed).
        if start {
            cluster.apply(fault_to_apply).await?;
            timeline.note(&format!(
                "+ {fault} (for {:.1} s)",
                faults[i].duration_ms as f64 / 1000.0
            ));
        } else {
            cluster.heal(fault_to_apply).await?;
            timeline.note(&format!("- healed: {fault}"));
        }
    }
    Ok(())
}
