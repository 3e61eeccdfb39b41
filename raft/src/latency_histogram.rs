//! A latency histogram that costs one relaxed atomic add per bucket and sum on the hot path:
//! no lock, no allocation. Observed on the log's append path, the fsync thread and every API
//! request; read (rarely) by a metrics scrape.
//!
//! The prometheus-client crate's own histogram takes a mutex per observation; this one keeps
//! the same fixed-bucket model with atomics, and `porch-node` encodes it in the exposition
//! format. A scrape reads the buckets one by one while observations go on, so a scrape may
//! see a count and a sum that differ by an observation in flight: harmless for rates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: 100 µs to 10 s, roughly ×2.5 apart, which
/// covers an fsync on fast SSDs (~100 µs) up to a large snapshot (seconds). Above the last
/// bound an observation counts only in the implicit `+Inf` bucket.
pub const BUCKET_BOUNDS_MICROS: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

const BUCKETS: usize = BUCKET_BOUNDS_MICROS.len() + 1;

#[derive(Debug)]
pub struct LatencyHistogram {
    /// Non-cumulative counts; the last is above every bound.
    counts: [AtomicU64; BUCKETS],
    sum_micros: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// What a scrape reads: per-bucket (non-cumulative) counts with their upper bound in seconds
/// (the last one `f64::INFINITY`), the total count and the sum in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramReading {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Sixteen comparisons at most: cheaper than anything a lock would cost.
        let bucket = BUCKET_BOUNDS_MICROS.partition_point(|bound| *bound < micros);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn read(&self) -> HistogramReading {
        let mut buckets = Vec::with_capacity(BUCKETS);
        let mut count = 0;
        for (i, slot) in self.counts.iter().enumerate() {
            let n = slot.load(Ordering::Relaxed);
            count += n;
            let bound = BUCKET_BOUNDS_MICROS
                .get(i)
                .map_or(f64::INFINITY, |micros| *micros as f64 / 1e6);
            buckets.push((bound, n));
        }
        HistogramReading {
            buckets,
            count,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_lands_in_the_first_bucket_whose_bound_is_not_below_it() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_micros(100)); // on the first bound: le="0.0001"
        histogram.observe(Duration::from_micros(101)); // just above: le="0.00025"
        histogram.observe(Duration::from_millis(3)); // le="0.005"
        histogram.observe(Duration::from_secs(60)); // above every bound: +Inf only
        let reading = histogram.read();
        assert_eq!(reading.count, 4);
        assert_eq!(reading.buckets.len(), BUCKET_BOUNDS_MICROS.len() + 1);
        assert_eq!(reading.buckets[0], (0.0001, 1));
        assert_eq!(reading.buckets[1], (0.00025, 1));
        assert_eq!(reading.buckets[5], (0.005, 1));
        assert_eq!(reading.buckets[16], (f64::INFINITY, 1));
        assert!(
            (reading.sum_seconds - 60.003201).abs() < 1e-9,
            "{reading:?}"
        );
    }
}
