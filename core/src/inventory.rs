//! Which agents hold a session, on which orchestrator node, since when — as committed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub connected: bool,
    /// Orchestrator node id that holds (or last held) the session.
    pub via_node: u64,
    /// When the session opened (if connected) or closed (if not).
    pub since_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    agents: BTreeMap<String, AgentRecord>,
}

impl Inventory {
    pub fn get(&self, certname: &str) -> Option<&AgentRecord> {
        self.agents.get(certname)
    }

    pub fn agents(&self) -> &BTreeMap<String, AgentRecord> {
        &self.agents
    }

    pub(crate) fn connected(&mut self, certname: String, via_node: u64, now_ms: u64) {
        self.agents.insert(
            certname,
            AgentRecord {
                connected: true,
                via_node,
                since_ms: now_ms,
            },
        );
    }

    /// A disconnect from a node that no longer holds the session (the agent moved on) is stale.
    pub(crate) fn disconnected(&mut self, certname: &str, via_node: u64, now_ms: u64) {
        if let Some(record) = self.agents.get_mut(certname) {
            if record.via_node == via_node && record.connected {
                record.connected = false;
                record.since_ms = now_ms;
            }
        }
    }
}
