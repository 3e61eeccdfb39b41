//! The scrape-time half of `/metrics`: each scrape takes a [`NodeReading`] and encodes it
//! as gauges, then the storage layer's histograms and counters as they stand.

use super::reading::{JobCounts, NodeReading, Sources, read};
use porch_raft::latency_histogram::LatencyHistogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[derive(Debug)]
pub struct NodeCollector {
    sources: Arc<Sources>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("node", &self.consensus.id)
            .finish()
    }
}

impl NodeCollector {
    pub fn new(sources: Arc<Sources>) -> NodeCollector {
        NodeCollector { sources }
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn gauge_f64(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    histogram: &LatencyHistogram,
) -> std::fmt::Result {
    let reading = histogram.read();
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(
        reading.sum_seconds,
        reading.count,
        &reading.buckets,
        None,
    )
}

fn as_gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The gauges of one reading (separate from the storage histograms so tests can encode a
/// reading built by hand).
pub fn encode_reading(reading: &NodeReading, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    gauge(
        encoder,
        "porch_raft_term",
        "Current raft term.",
        as_gauge(reading.term),
    )?;
    gauge(
        encoder,
        "porch_raft_leader_id",
        "Id of the leader this node knows (-1: none).",
        reading.leader.map_or(-1, as_gauge),
    )?;
    gauge(
        encoder,
        "porch_raft_is_leader",
        "1 if this node is the leader.",
        i64::from(reading.is_leader()),
    )?;
    gauge(
        encoder,
        "porch_raft_in_touch_with_quorum",
        "1 if this node knows a leader and heard from a quorum (leader) or the leader (follower) within the leader lease; what /status/v1/simple reports.",
        i64::from(reading.in_touch_with_quorum()),
    )?;
    if let Some(age) = reading.quorum_contact_age {
        gauge_f64(
            encoder,
            "porch_raft_quorum_contact_age_seconds",
            "Leader: since a quorum last acknowledged it. Follower: since it last heard from the leader.",
            age.as_secs_f64(),
        )?;
    }
    gauge(
        encoder,
        "porch_raft_last_log_index",
        "Last log index on this node.",
        as_gauge(reading.last_log_index),
    )?;
    gauge(
        encoder,
        "porch_raft_commit_index",
        "Last log index known committed.",
        as_gauge(reading.committed_index),
    )?;
    gauge(
        encoder,
        "porch_raft_applied_index",
        "Last log index applied to the state machine.",
        as_gauge(reading.applied_index),
    )?;
    gauge(
        encoder,
        "porch_raft_apply_lag_entries",
        "Committed entries not yet applied on this node.",
        as_gauge(reading.apply_lag()),
    )?;
    gauge(
        encoder,
        "porch_raft_snapshot_index",
        "Log index the current snapshot covers.",
        as_gauge(reading.snapshot_index),
    )?;
    gauge(
        encoder,
        "porch_raft_purged_index",
        "Log entries up to this index are purged.",
        as_gauge(reading.purged_index),
    )?;
    gauge(
        encoder,
        "porch_raft_voters",
        "Voting members.",
        reading.voters.len() as i64,
    )?;
    gauge(
        encoder,
        "porch_raft_learners",
        "Non-voting members.",
        reading.learners.len() as i64,
    )?;
    if !reading.replicated_index.is_empty() {
        let mut metric = encoder.encode_descriptor(
            "porch_raft_replication_lag_entries",
            "Leader only: entries of the leader's log a member is not known to hold.",
            None,
            MetricType::Gauge,
        )?;
        for (member, matched) in &reading.replicated_index {
            let lag = reading.last_log_index.saturating_sub(matched.unwrap_or(0));
            let member = member.to_string();
            let labels = [("member", member.as_str())];
            ConstGauge::new(as_gauge(lag)).encode(metric.encode_family(&labels.as_slice())?)?;
        }
    }
    {
        let mut metric = encoder.encode_descriptor(
            "porch_jobs",
            "Jobs kept, by state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, count) in &reading.jobs_by_state {
            let labels = [("state", *state)];
            ConstGauge::new(as_gauge(*count)).encode(metric.encode_family(&labels.as_slice())?)?;
        }
    }
    gauge(
        encoder,
        "porch_runs_in_flight",
        "Runs started and not yet reported, cluster-wide.",
        as_gauge(reading.runs_in_flight),
    )?;
    gauge(
        encoder,
        "porch_agents_connected",
        "Agent sessions on this node.",
        as_gauge(reading.agents_connected),
    )?;
    gauge(
        encoder,
        "porch_applied_listener_backlog_entries",
        "Applied outcomes the slowest listener (run delivery, the scheduler loop) has not taken yet: delivery lag in entries.",
        as_gauge(reading.applied_listener_backlog),
    )?;
    gauge_f64(
        encoder,
        "porch_uptime_seconds",
        "Since this process started serving.",
        reading.uptime.as_secs_f64(),
    )?;
    Ok(())
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let sources = &self.sources;
        encode_reading(&read(sources, JobCounts::ByState), &mut encoder)?;
        histogram(
            &mut encoder,
            "porch_raft_append_to_durable_seconds",
            "From a log append to the fsync covering it.",
            &sources.log.append_to_durable,
        )?;
        if let Some(flushes) = &sources.flushes {
            histogram(
                &mut encoder,
                "porch_raft_fsync_seconds",
                "Each fsync of the log store.",
                &flushes.flush,
            )?;
            counter(
                &mut encoder,
                "porch_raft_fsync_requests",
                "Flush requests answered (divided by fsyncs: the group-commit batch size).",
                flushes.requests.load(Ordering::Relaxed),
            )?;
        }
        let snapshots = &sources.snapshots;
        histogram(
            &mut encoder,
            "porch_raft_snapshot_build_seconds",
            "Copy, encode and write of each snapshot this node built.",
            &snapshots.build,
        )?;
        gauge(
            &mut encoder,
            "porch_raft_snapshot_bytes",
            "Size of the current snapshot.",
            as_gauge(snapshots.last_bytes.load(Ordering::Relaxed)),
        )?;
        counter(
            &mut encoder,
            "porch_raft_snapshot_installs",
            "Snapshots received from a leader and installed.",
            snapshots.installed.load(Ordering::Relaxed),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[derive(Debug)]
    struct Fixed(NodeReading);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
            encode_reading(&self.0, &mut encoder)
        }
    }

    #[test]
    fn a_reading_is_exposed_as_gauges_with_jobs_by_state_and_replication_lag_per_member() {
        let mut reading = NodeReading {
            node_id: 2,
            role: "leader",
            term: 4,
            leader: Some(2),
            last_log_index: 50,
            committed_index: 50,
            applied_index: 47,
            voters: vec![1, 2, 3],
            replicated_index: [(1, Some(50)), (3, None)].into_iter().collect(),
            ..NodeReading::default()
        };
        reading.jobs_by_state.insert("finished", 7);
        reading.jobs_by_state.insert("running", 1);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(reading)));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        for line in [
            "porch_raft_term 4",
            "porch_raft_leader_id 2",
            "porch_raft_is_leader 1",
            "porch_raft_apply_lag_entries 3",
            "porch_raft_voters 3",
            "porch_raft_replication_lag_entries{member=\"1\"} 0",
            "porch_raft_replication_lag_entries{member=\"3\"} 50",
            "porch_jobs{state=\"finished\"} 7",
            "porch_jobs{state=\"running\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line '{line}' in:\n{text}"
            );
        }
    }
}
