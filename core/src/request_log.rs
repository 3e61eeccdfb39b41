//! Deduplication of client requests (Raft dissertation §6.3): the outcome of every request
//! that carried an id is remembered for a while, so a retry after a failover returns the
//! first outcome instead of applying twice.

use crate::command::Outcome;
use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};

/// How long an outcome is remembered, in replicated (leader-stamped) time.
pub const REQUEST_RETENTION_MS: u64 = 10 * 60 * 1000;
/// Most outcomes remembered; the oldest is forgotten first beyond this.
pub const REQUESTS_REMEMBERED_MAX: usize = 100_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
/// Persistent collections (see `ClusterState::jobs`): a snapshot's copy of up to
/// [`REQUESTS_REMEMBERED_MAX`] outcomes shares structure instead of copying each id.
pub struct RequestLog {
    outcomes: OrdMap<String, Outcome>,
    /// (applied_ms, request id) in apply order, for expiry.
    order: Vector<(u64, String)>,
}

impl RequestLog {
    pub fn get(&self, request_id: &str) -> Option<&Outcome> {
        self.outcomes.get(request_id)
    }

    pub fn remember(&mut self, request_id: String, outcome: Outcome, now_ms: u64) {
        self.expire(now_ms);
        if self.outcomes.insert(request_id.clone(), outcome).is_none() {
            self.order.push_back((now_ms, request_id));
        }
        while self.order.len() > REQUESTS_REMEMBERED_MAX {
            self.forget_oldest();
        }
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some((applied_ms, _)) = self.order.front() {
            if applied_ms.saturating_add(REQUEST_RETENTION_MS) > now_ms {
                break;
            }
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.outcomes.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }
}
