//! Capacities and timings drawn per seed, as FoundationDB's BUGGIFY does: production's
//! queues are large, so a simulation with production's values never fills one, and the code
//! that runs when a queue is full or a batch is cut short would go untested. Each seed keeps
//! a knob at the standard value or draws it from its valid range, often at the tiny end.

use porch_node::config::{Capacities, NodeConfig, RaftTimings};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Knobs {
    /// Messages queued per agent session on a node.
    pub session_queue: usize,
    /// Applied outcomes buffered for a node's own tasks before one lags.
    pub applied_broadcast: usize,
    /// Run requests an agent queues behind the one running.
    pub agent_run_queue: usize,
    /// Entries between two snapshots, and entries kept behind one.
    pub snapshot_every_logs: u64,
    pub logs_kept_after_snapshot: u64,
    /// openraft batch sizes (`None`: its default).
    pub max_payload_entries: Option<u64>,
    pub max_append_entries: Option<u64>,
    pub api_batch_capacity: Option<u64>,
    /// The raft heartbeat never goes below this (it is also at least 4× the worst latency).
    pub heartbeat_floor_ms: u64,
    /// Election timeouts as multiples of the heartbeat interval (min < max).
    pub election_min_heartbeats: u64,
    pub election_max_heartbeats: u64,
    /// How long each flush of a node's disk takes (an fsync's time), ms.
    pub flush_latency_ms: u64,
    /// The HTTP/2 receive window an agent advertises for its session, bytes (`None`:
    /// the transport's default, 64 KB). A window smaller than one message lets a node send
    /// the next message of a session only after the agent read the last one, a round trip
    /// later: the session's queue then fills behind a slow link, as it does behind a slow
    /// agent in production, and the code that runs when it is full gets exercised.
    pub agent_window_bytes: Option<u32>,
    /// How often nodes heartbeat agent sessions, ms; a session whose queue stays full for
    /// three of them ends, so against a stalled agent this decides whether a full queue is
    /// met by a reconnect or by the session's own status query.
    pub agent_heartbeat_ms: u64,
}

impl Knobs {
    /// The values every seed ran with before knobs were drawn (production's capacities, the
    /// simulation's fixed raft settings): a regression seed replays its original scenario
    /// with these.
    pub fn standard() -> Knobs {
        let capacities = Capacities::default();
        Knobs {
            session_queue: capacities.session_queue,
            applied_broadcast: capacities.applied_broadcast,
            agent_run_queue: porch_agent::session::RUN_QUEUE_MAX,
            snapshot_every_logs: 50,
            logs_kept_after_snapshot: 10,
            max_payload_entries: None,
            max_append_entries: None,
            api_batch_capacity: None,
            heartbeat_floor_ms: 100,
            election_min_heartbeats: 5,
            election_max_heartbeats: 10,
            flush_latency_ms: 0,
            agent_window_bytes: None,
            agent_heartbeat_ms: porch_node::server::AGENT_HEARTBEAT_INTERVAL.as_millis() as u64,
        }
    }

    /// Draws this seed's knobs (from a random source of their own, so the rest of what a
    /// seed draws is unchanged by them).
    pub fn draw(seed: u64) -> Knobs {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0xb066_1f7);
        let mut knobs = Knobs::standard();
        // Each knob is drawn with probability 1/2, else standard.
        let drawn = |rng: &mut SmallRng| rng.random_bool(0.5);
        if drawn(&mut rng) {
            knobs.session_queue = pick(&mut rng, &[1, 2, 3, 8, 32]);
        }
        if drawn(&mut rng) {
            knobs.applied_broadcast = pick(&mut rng, &[1, 2, 4, 16, 64]);
        }
        if drawn(&mut rng) {
            knobs.agent_run_queue = pick(&mut rng, &[1, 2, 8]);
        }
        if drawn(&mut rng) {
            // Down to every 3 entries with none kept: followers then catch up only by
            // snapshot, and a snapshot message lost in transit must cost its transfer time,
            // not a fixed 30 s (it did: BENCHMARKS.md, issue 14).
            knobs.snapshot_every_logs = pick(&mut rng, &[3, 5, 10, 20, 200]);
            knobs.logs_kept_after_snapshot = pick(&mut rng, &[0, 5, 100]);
        }
        if drawn(&mut rng) {
            knobs.max_payload_entries = Some(pick(&mut rng, &[1, 2, 3, 16]));
        }
        if drawn(&mut rng) {
            knobs.max_append_entries = Some(pick(&mut rng, &[1, 2, 8]));
        }
        if drawn(&mut rng) {
            knobs.api_batch_capacity = Some(pick(&mut rng, &[1, 2, 16]));
        }
        if drawn(&mut rng) {
            knobs.heartbeat_floor_ms = rng.random_range(30..=300);
            knobs.election_min_heartbeats = rng.random_range(3..=8);
            knobs.election_max_heartbeats = knobs.election_min_heartbeats + rng.random_range(1..=6);
        }
        if drawn(&mut rng) {
            knobs.flush_latency_ms = pick(&mut rng, &[1, 2, 5, 20]);
        }
        if drawn(&mut rng) {
            knobs.agent_window_bytes = Some(pick(&mut rng, &[1, 16, 256, 4096]));
        }
        if drawn(&mut rng) {
            knobs.agent_heartbeat_ms = pick(&mut rng, &[500, 1_000, 2_000]);
        }
        knobs
    }

    /// Sets one knob by name (`porch sim --knob NAME=VALUE`), to replay a seed with one
    /// knob changed.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let number: u64 = value
            .trim()
            .parse()
            .map_err(|_| format!("--knob {name}: '{value}' is not a number"))?;
        let positive = || {
            if number == 0 {
                Err(format!("--knob {name}: must be at least 1"))
            } else {
                Ok(number)
            }
        };
        match name {
            "session-queue" => self.session_queue = positive()? as usize,
            "applied-broadcast" => self.applied_broadcast = positive()? as usize,
            "agent-run-queue" => self.agent_run_queue = positive()? as usize,
            "snapshot-every" => self.snapshot_every_logs = positive()?,
            "logs-kept" => self.logs_kept_after_snapshot = number,
            "payload" => self.max_payload_entries = Some(positive()?),
            "append" => self.max_append_entries = Some(positive()?),
            "api-batch" => self.api_batch_capacity = Some(positive()?),
            "flush-ms" => self.flush_latency_ms = number,
            "agent-heartbeat-ms" => self.agent_heartbeat_ms = positive()?,
            "agent-window" => {
                self.agent_window_bytes = Some(u32::try_from(positive()?).map_err(|_| {
                    format!("--knob agent-window: {number} bytes is more than HTTP/2 allows")
                })?)
            }
            _ => {
                return Err(format!(
                    "--knob: unknown knob '{name}' (known: session-queue, applied-broadcast, agent-run-queue, snapshot-every, logs-kept, payload, append, api-batch, flush-ms, agent-window, agent-heartbeat-ms)"
                ));
            }
        }
        Ok(())
    }

    /// The raft timings every node of a run gets (see [`Knobs::configure_node`]).
    pub fn raft_timings(&self, worst_latency_ms: u64) -> RaftTimings {
        let heartbeat_interval_ms = (4 * worst_latency_ms).max(self.heartbeat_floor_ms);
        RaftTimings {
            heartbeat_interval_ms,
            election_timeout_min_ms: self.election_min_heartbeats * heartbeat_interval_ms,
            election_timeout_max_ms: self.election_max_heartbeats * heartbeat_interval_ms,
            snapshot_every_logs: self.snapshot_every_logs,
            logs_kept_after_snapshot: self.logs_kept_after_snapshot,
            max_payload_entries: self.max_payload_entries,
            max_append_entries: self.max_append_entries,
            api_batch_capacity: self.api_batch_capacity,
        }
    }

    /// Sets a node's configuration from the knobs. `worst_latency_ms` is the highest one-way
    /// latency between two datacenters: as an operator of a multi-datacenter cluster must,
    /// the heartbeat exceeds twice the worst round trip (raft RPCs time out after 3/4 of it).
    pub fn configure_node(&self, config: &mut NodeConfig, worst_latency_ms: u64) {
        config.raft = self.raft_timings(worst_latency_ms);
        config.agent_heartbeat_interval = std::time::Duration::from_millis(self.agent_heartbeat_ms);
        config.capacities = Capacities {
            session_queue: self.session_queue,
            applied_broadcast: self.applied_broadcast,
        };
    }

    /// The knobs that differ from standard, for the scenario line (`standard` if none).
    pub fn describe(&self) -> String {
        let standard = Knobs::standard();
        let mut changed = Vec::new();
        let mut note = |name: &str, value: String, same: bool| {
            if !same {
                changed.push(format!("{name}={value}"));
            }
        };
        note(
            "session-queue",
            self.session_queue.to_string(),
            self.session_queue == standard.session_queue,
        );
        note(
            "applied-broadcast",
            self.applied_broadcast.to_string(),
            self.applied_broadcast == standard.applied_broadcast,
        );
        note(
            "agent-run-queue",
            self.agent_run_queue.to_string(),
            self.agent_run_queue == standard.agent_run_queue,
        );
        note(
            "snapshot",
            format!(
                "{}/{}",
                self.snapshot_every_logs, self.logs_kept_after_snapshot
            ),
            self.snapshot_every_logs == standard.snapshot_every_logs
                && self.logs_kept_after_snapshot == standard.logs_kept_after_snapshot,
        );
        note(
            "payload",
            format!("{:?}", self.max_payload_entries),
            self.max_payload_entries.is_none(),
        );
        note(
            "append",
            format!("{:?}", self.max_append_entries),
            self.max_append_entries.is_none(),
        );
        note(
            "api-batch",
            format!("{:?}", self.api_batch_capacity),
            self.api_batch_capacity.is_none(),
        );
        note(
            "raft-timing",
            format!(
                "{}ms/{}x/{}x",
                self.heartbeat_floor_ms, self.election_min_heartbeats, self.election_max_heartbeats
            ),
            self.heartbeat_floor_ms == standard.heartbeat_floor_ms
                && self.election_min_heartbeats == standard.election_min_heartbeats
                && self.election_max_heartbeats == standard.election_max_heartbeats,
        );
        note(
            "flush",
            format!("{}ms", self.flush_latency_ms),
            self.flush_latency_ms == standard.flush_latency_ms,
        );
        note(
            "agent-window",
            format!("{:?}", self.agent_window_bytes),
            self.agent_window_bytes.is_none(),
        );
        note(
            "agent-heartbeat",
            format!("{}ms", self.agent_heartbeat_ms),
            self.agent_heartbeat_ms == standard.agent_heartbeat_ms,
        );
        if changed.is_empty() {
            "standard".into()
        } else {
            changed.join(" ")
        }
    }
}

fn pick<T: Copy>(rng: &mut SmallRng, values: &[T]) -> T {
    values[rng.random_range(0..values.len())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn node_config(knobs: &Knobs, worst_latency_ms: u64) -> NodeConfig {
        let mut config = NodeConfig::new(
            1,
            PathBuf::from("sim/node1"),
            "node1:8143".into(),
            [(1, "node1:8143".to_string())].into(),
        );
        knobs.configure_node(&mut config, worst_latency_ms);
        config
    }

    #[test]
    fn every_drawn_knob_set_is_a_valid_node_configuration() {
        for seed in 0..500 {
            let knobs = Knobs::draw(seed);
            for latency in [0, 80] {
                node_config(&knobs, latency)
                    .openraft_config()
                    .unwrap_or_else(|e| panic!("seed {seed}: {e} ({knobs:?})"));
            }
        }
    }

    #[test]
    fn seeds_draw_tiny_queues_and_standard_ones() {
        let drawn: Vec<Knobs> = (0..200).map(Knobs::draw).collect();
        assert!(drawn.iter().any(|k| k.session_queue == 1));
        assert!(drawn.iter().any(|k| k.applied_broadcast == 1));
        assert!(drawn.iter().any(|k| k.agent_run_queue == 1));
        assert!(drawn.iter().any(|k| k.max_payload_entries == Some(1)));
        assert!(
            drawn
                .iter()
                .any(|k| k.session_queue == Knobs::standard().session_queue)
        );
        assert_eq!(Knobs::standard().describe(), "standard");
        assert_eq!(
            Knobs::draw(42),
            Knobs::draw(42),
            "a seed draws the same knobs"
        );
    }

    #[test]
    fn the_standard_knobs_keep_the_simulation_s_former_raft_settings() {
        let config = node_config(&Knobs::standard(), 30);
        assert_eq!(config.raft.heartbeat_interval_ms, 120);
        assert_eq!(config.raft.election_timeout_min_ms, 600);
        assert_eq!(config.raft.election_timeout_max_ms, 1200);
        assert_eq!(config.raft.snapshot_every_logs, 50);
        assert_eq!(config.capacities.session_queue, 256);
    }
}
