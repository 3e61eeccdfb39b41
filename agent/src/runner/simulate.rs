//! The `simulate` runner, for load tests and demos: sleeps a duration drawn from a seeded
//! distribution and fails with a given probability. Deterministic for a seed and certname.

use crate::proto::RunRequest;
use crate::spool::{Outcome, StoredResult};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;

pub struct SimulateRunner {
    pub seed: u64,
    pub duration_ms_min: u64,
    pub duration_ms_max: u64,
    pub failure_rate: f64,
}

fn mix(seed: u64, text: &str) -> u64 {
    // FNV-1a over the text, folded into the seed: stable across runs and platforms.
    let mut hash = 0xcbf29ce484222325u64 ^ seed;
    for byte in text.bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

impl SimulateRunner {
    /// The duration and outcome for this run (pure, so it can be tested).
    pub fn draw(&self, request: &RunRequest, certname: &str) -> (Duration, bool) {
        let mut rng = SmallRng::seed_from_u64(mix(
            self.seed,
            &format!("{certname}/{}", request.transaction_id),
        ));
        let span = self.duration_ms_max.saturating_sub(self.duration_ms_min);
        let ms = self.duration_ms_min
            + if span == 0 {
                0
            } else {
                rng.random_range(0..=span)
            };
        let failed = rng.random_bool(self.failure_rate.clamp(0.0, 1.0));
        (Duration::from_millis(ms), failed)
    }

    pub async fn run(&self, request: &RunRequest, certname: &str) -> StoredResult {
        let (duration, failed) = self.draw(request, certname);
        tokio::time::sleep(duration).await;
        let changed = if failed { 0 } else { 1 };
        let metrics = BTreeMap::from([
            ("total".to_string(), 10),
            ("changed".to_string(), changed),
            ("failed".to_string(), if failed { 1 } else { 0 }),
            ("skipped".to_string(), 0),
        ]);
        StoredResult {
            outcome: if failed {
                Outcome::Failed
            } else {
                Outcome::Finished
            },
            status: if failed {
                "failed".into()
            } else {
                "changed".into()
            },
            metrics,
            configuration_version: format!("sim-{}", request.job_id),
            puppet_transaction_uuid: String::new(),
            environment: request.environment.clone(),
            exit_code: if failed { 4 } else { 2 },
            message: format!("simulated run of {} ms", duration.as_millis()),
            puppet: Default::default(),
            stderr: String::new(),
        }
    }
}

impl SimulateRunner {
    /// A simulated task run: the drawn duration and outcome; its output names the task.
    pub async fn run_task(
        &self,
        request: &RunRequest,
        task: &crate::proto::TaskRun,
        certname: &str,
    ) -> StoredResult {
        let (duration, failed) = self.draw(request, certname);
        tokio::time::sleep(duration).await;
        StoredResult {
            outcome: if failed {
                Outcome::Failed
            } else {
                Outcome::Finished
            },
            status: if failed { "failed" } else { "finished" }.into(),
            metrics: BTreeMap::new(),
            configuration_version: String::new(),
            puppet_transaction_uuid: String::new(),
            environment: request.environment.clone(),
            exit_code: if failed { 1 } else { 0 },
            message:
                serde_json::json!({"task": task.name, "simulated_ms": duration.as_millis() as u64})
                    .to_string(),
            puppet: Default::default(),
            stderr: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draw() {
        let runner = SimulateRunner {
            seed: 7,
            duration_ms_min: 10,
            duration_ms_max: 1000,
            failure_rate: 0.5,
        };
        let request = RunRequest {
            transaction_id: "t1".into(),
            ..Default::default()
        };
        assert_eq!(runner.draw(&request, "a"), runner.draw(&request, "a"));
        let (d, _) = runner.draw(&request, "a");
        assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(1000));
    }
}
