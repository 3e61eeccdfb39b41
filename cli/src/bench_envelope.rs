//! `porch bench envelope`: what the record envelope (format version and CRC-32, see
//! `porch_raft::envelope`) adds to encoding and decoding a snapshot of a state with many
//! ended jobs. Measures plain bincode against the enveloped encoding of the same value, and
//! the CRC alone, in one process, medians over rounds.

use porch_core::{
    Actor, ClusterState, Command, JobSpec, Outcome, Plan, Request, RunOutcome, RunResult, Target,
};
use porch_raft::AppliedState;
use porch_raft::state_machine_store::{decode_state, encode_state};
use std::time::{Duration, Instant};

pub fn envelope(jobs: u64, rounds: usize) -> Result<(), String> {
    let started = Instant::now();
    let applied = AppliedState {
        cluster: state_with_ended_jobs(jobs),
        ..AppliedState::default()
    };
    println!(
        "state with {jobs} ended jobs (2 nodes each, reported) built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let version = applied.cluster.format_version();
    let stored = applied.cluster.stored(version).map_err(|e| e.to_string())?;
    let value = (&applied.last_applied, &applied.membership, stored);
    let mut timings: [Vec<Duration>; 5] = Default::default();
    let mut bytes = 0;
    for _ in 0..rounds.max(1) {
        let at = Instant::now();
        let plain = bincode::serialize(&value).map_err(|e| e.to_string())?;
        timings[0].push(at.elapsed());
        let at = Instant::now();
        let sealed = encode_state(&applied).map_err(|e| e.to_string())?;
        timings[1].push(at.elapsed());
        let at = Instant::now();
        let decoded: (
            Option<porch_raft::types::LogId>,
            porch_raft::types::StoredMembership,
            porch_core::stored_state::StoredV3,
        ) = bincode::deserialize(&plain).map_err(|e| e.to_string())?;
        timings[2].push(at.elapsed());
        drop(decoded);
        let at = Instant::now();
        let opened = decode_state(&sealed).map_err(|e| e.to_string())?;
        timings[3].push(at.elapsed());
        drop(opened);
        let at = Instant::now();
        std::hint::black_box(crc32fast::hash(&sealed));
        timings[4].push(at.elapsed());
        bytes = sealed.len();
    }
    let [
        plain_encode,
        sealed_encode,
        plain_decode,
        sealed_decode,
        crc,
    ] = timings.map(median_ms);
    println!(
        "snapshot of {:.1} MB, median of {} rounds:",
        bytes as f64 / 1e6,
        rounds.max(1)
    );
    println!(
        "  encode: bincode {plain_encode:.1} ms, enveloped {sealed_encode:.1} ms ({:+.1} %)",
        percent(plain_encode, sealed_encode)
    );
    println!(
        "  decode: bincode {plain_decode:.1} ms, enveloped {sealed_decode:.1} ms ({:+.1} %)",
        percent(plain_decode, sealed_decode)
    );
    println!(
        "  CRC-32 alone: {crc:.2} ms ({:.2} GB/s)",
        bytes as f64 / 1e6 / crc.max(1e-6)
    );
    Ok(())
}

fn percent(base: f64, with: f64) -> f64 {
    (with - base) / base.max(1e-9) * 100.0
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

/// A state as a cluster holds it after `jobs` two-node jobs that ran and finished.
fn state_with_ended_jobs(jobs: u64) -> ClusterState {
    let mut state = ClusterState::new();
    let spec = JobSpec {
        environment: "production".into(),
        target: Target::Nodes(vec!["web1".into(), "db1".into()]),
        noop: false,
        no_noop: false,
        concurrency: None,
        enforce_environment: true,
        debug: false,
        trace: false,
        evaltrace: false,
        description: None,
        owner: Actor {
            id: "u-1".into(),
            login: "admin".into(),
        },
        task: None,
    };
    let plan = Plan::independent(["web1".to_string(), "db1".to_string()]).expect("a plan");
    let result = RunResult {
        status: "changed".into(),
        metrics: [("total".to_string(), 120), ("changed".to_string(), 3)].into(),
        configuration_version: Some("1700000000".into()),
        environment: Some("production".into()),
        exit_code: Some(2),
        ..RunResult::default()
    };
    for i in 0..jobs {
        let now_ms = 1_000 + i * 10;
        let request = |command| Request {
            request_id: None,
            now_ms,
            command,
            origin: None,
        };
        let outcome = state.apply(request(Command::SubmitJob {
            spec: spec.clone(),
            plan: plan.clone(),
            start_under_cap: Some(u32::MAX),
        }));
        let Outcome::JobSubmitted { started, .. } = outcome else {
            continue;
        };
        for run in started {
            state.apply(request(Command::ReportRun {
                transaction_id: run.transaction_id,
                outcome: RunOutcome::Finished(result.clone()),
            }));
        }
    }
    state
}
