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
    /// The session this record describes; a disconnect of any other session is stale.
    pub session: String,
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

    /// Most agents remembered; a connect beyond this is ignored (and logged by the node).
    pub const AGENTS_MAX: usize = 1_000_000;

    pub(crate) fn connected(
        &mut self,
        certname: String,
        via_node: u64,
        session: String,
        now_ms: u64,
    ) {
        if self.agents.len() >= Self::AGENTS_MAX && !self.agents.contains_key(&certname) {
            return;
        }
        self.agents.insert(
            certname,
            AgentRecord {
                connected: true,
                via_node,
                since_ms: now_ms,
                session,
            },
        );
    }

    /// Every session ended at `now_ms` (a restored cluster has none of the old sessions).
    pub(crate) fn disconnect_all(&mut self, now_ms: u64) {
        for record in self.agents.values_mut().filter(|r| r.connected) {
            record.connected = false;
            record.since_ms = now_ms;
        }
    }

    /// A disconnect of a session that is no longer the agent's current one is stale.
    pub(crate) fn disconnected(&mut self, certname: &str, session: &str, now_ms: u64) {
        if let Some(record) = self.agents.get_mut(certname)
            && record.session == session
            && record.connected
        {
            record.connected = false;
            record.since_ms = now_ms;
        }
    }
}
