//! One read of everything the metrics and status endpoints report about this node.
//!
//! Taken on demand (a scrape, a status request), never on a request's path. The applied
//! state is held only long enough to copy its job map (an O(1) copy of a persistent map) and
//! to count a few indices; jobs are counted by state outside the lock.

use crate::agents::registry::Registry;
use crate::consensus::Consensus;
use openraft::ServerState;
use porch_core::job::JobState;
use porch_raft::raft_service::LeaderContact;
use porch_raft::storage_metrics::{FlushMetrics, LogMetrics, SnapshotMetrics};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the readings come from: handles on this node's parts, shared with them.
pub struct Sources {
    pub consensus: Arc<Consensus>,
    pub agents: Arc<Registry>,
    pub leader_contact: Arc<LeaderContact>,
    pub log: Arc<LogMetrics>,
    pub snapshots: Arc<SnapshotMetrics>,
    /// `None` when the disk does not time its flushes (the simulation's).
    pub flushes: Option<Arc<FlushMetrics>>,
    /// How recently a quorum (for a leader) or a leader (for a follower) must have answered
    /// for this node to count as in touch: openraft's leader lease, the longest a healthy
    /// follower goes between heartbeats before it may stand for election.
    pub quorum_contact_max: Duration,
    pub started: Instant,
}

/// Every fact the endpoints render, read at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeReading {
    pub node_id: u64,
    /// Why raft stopped, if it did (a storage error stops it for good).
    pub raft_stopped: Option<String>,
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    /// Leader: since a quorum last acknowledged it. Follower or learner: since it last
    /// accepted entries or a heartbeat from a leader. `None`: never (or not applicable).
    pub quorum_contact_age: Option<Duration>,
    pub quorum_contact_max: Duration,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub member_addrs: BTreeMap<u64, String>,
    /// On the leader: the last log index each other member is known to hold.
    pub replicated_index: BTreeMap<u64, Option<u64>>,
    /// Jobs kept, and those not yet terminal (both O(1) to read).
    pub jobs_total: u64,
    pub jobs_active: u64,
    /// Jobs by state, every state present, when the reading was asked to count them (else
    /// empty): a pass over every job kept.
    pub jobs_by_state: BTreeMap<&'static str, u64>,
    pub runs_in_flight: u64,
    pub agents_connected: u64,
    /// Applied outcomes the slowest listener (delivery, the scheduler loop) has not taken.
    pub applied_listener_backlog: u64,
    pub uptime: Duration,
}

pub const JOB_STATES: [(JobState, &str); 7] = [
    (JobState::New, "new"),
    (JobState::Ready, "ready"),
    (JobState::Running, "running"),
    (JobState::Stopping, "stopping"),
    (JobState::Stopped, "stopped"),
    (JobState::Finished, "finished"),
    (JobState::Failed, "failed"),
];

impl NodeReading {
    /// Whether this node can get anything committed now: raft runs, a leader is known, and
    /// this node heard from a quorum (as leader) or from the leader (otherwise) within
    /// [`Sources::quorum_contact_max`]. A single voter is its own quorum.
    pub fn in_touch_with_quorum(&self) -> bool {
        if self.raft_stopped.is_some() {
            return false;
        }
        let Some(leader) = self.leader else {
            return false;
        };
        if leader == self.node_id && self.voters == [self.node_id] {
            return true;
        }
        self.quorum_contact_age
            .is_some_and(|age| age <= self.quorum_contact_max)
    }

    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.node_id) && self.role == "leader"
    }

    pub fn apply_lag(&self) -> u64 {
        self.committed_index.saturating_sub(self.applied_index)
    }
}

/// How much a reading counts of the jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobCounts {
    /// Totals only: what a health check needs, O(1).
    Totals,
    /// Also by state: one pass over every job kept (100,000 in a few milliseconds), over a
    /// copy of the job map taken under the lock in O(1), so `apply` never waits for it.
    ByState,
}

/// Reads the node now.
// `millis_since_quorum_ack` is deprecated for `last_quorum_acked`, an instant of the
// runtime's clock; the millisecond figure says the same thing without that type.
#[allow(deprecated)]
pub fn read(sources: &Sources, job_counts: JobCounts) -> NodeReading {
    let consensus = &sources.consensus;
    let metrics = consensus.metrics();
    let membership = metrics.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let learners: Vec<u64> = membership.learner_ids().collect();
    let member_addrs = membership
        .nodes()
        .map(|(id, node)| (*id, node.addr.clone()))
        .collect();
    let role = match metrics.state {
        ServerState::Leader => "leader",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
        ServerState::Follower | ServerState::Learner if !voters.contains(&consensus.id) => {
            "learner"
        }
        ServerState::Follower | ServerState::Learner => "follower",
    };
    let quorum_contact_age = if metrics.state == ServerState::Leader {
        metrics.millis_since_quorum_ack.map(Duration::from_millis)
    } else {
        sources.leader_contact.elapsed()
    };
    let (jobs, jobs_ended, runs_in_flight) = {
        let view = consensus.view.read();
        let cluster = &view.cluster;
        let jobs = (job_counts == JobCounts::ByState).then(|| cluster.jobs().clone());
        let total = cluster.jobs().len();
        (
            (jobs, total),
            cluster.ended_job_count(),
            cluster.in_flight().len(),
        )
    };
    let (jobs, jobs_total) = jobs;
    let mut jobs_by_state = BTreeMap::new();
    if let Some(jobs) = jobs {
        jobs_by_state = JOB_STATES.iter().map(|(_, name)| (*name, 0)).collect();
        for job in jobs.values() {
            let state = job.state();
            if let Some((_, name)) = JOB_STATES.iter().find(|(s, _)| *s == state) {
                *jobs_by_state.entry(name).or_default() += 1;
            }
        }
    }
    NodeReading {
        node_id: consensus.id,
        raft_stopped: metrics.running_state.as_ref().err().map(|e| e.to_string()),
        role,
        term: metrics.current_term,
        leader: metrics.current_leader,
        last_log_index: metrics.last_log_index.unwrap_or(0),
        committed_index: metrics.committed.map_or(0, |id| id.index),
        applied_index: metrics.last_applied.map_or(0, |id| id.index),
        snapshot_index: metrics.snapshot.map_or(0, |id| id.index),
        purged_index: metrics.purged.map_or(0, |id| id.index),
        quorum_contact_age,
        quorum_contact_max: sources.quorum_contact_max,
        voters,
        learners,
        member_addrs,
        replicated_index: metrics
            .replication
            .as_ref()
            .map(|replication| {
                replication
                    .iter()
                    .filter(|(id, _)| **id != consensus.id)
                    .map(|(id, matched)| (*id, matched.map(|l| l.index)))
                    .collect()
            })
            .unwrap_or_default(),
        jobs_total: jobs_total as u64,
        jobs_active: jobs_total.saturating_sub(jobs_ended) as u64,
        jobs_by_state,
        runs_in_flight: runs_in_flight as u64,
        agents_connected: sources.agents.len() as u64,
        applied_listener_backlog: consensus.view.listener_backlog() as u64,
        uptime: sources.started.elapsed(),
    }
}
