//! Identifiers the state machine hands out. Newtypes so a job id is never mistaken for an
//! event id or a log index.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A job's id: assigned by the state machine from a counter that only grows, so ids are
/// unique and monotonic over the cluster's whole life (they survive snapshots and failover).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A job event's id: one counter for the whole cluster, so `events?start=N` is monotonic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub u64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
