//! Every acknowledged submission survives with its plan; a submission retried under the same
//! request id applies once (every acknowledgement names the same job); job ids are unique,
//! and a job acknowledged before another was submitted has the smaller id (ids follow the
//! log, so they respect real-time order).

use super::{Observation, Violation};
use std::collections::BTreeMap;

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let mut owner: BTreeMap<u64, &str> = BTreeMap::new();
    for submission in observation.submissions {
        let Some(&(_, first)) = submission.acks.first() else {
            continue;
        };
        if let Some(&(_, other)) = submission.acks.iter().find(|(_, id)| *id != first) {
            violations.push(Violation {
                invariant: "a retried submission applies once",
                detail: format!(
                    "{} was acknowledged as job {first} and as job {other}",
                    submission.request_id
                ),
            });
        }
        if let Some(previous) = owner.insert(first.0, &submission.request_id) {
            violations.push(Violation {
                invariant: "job ids unique and monotonic",
                detail: format!(
                    "job {first} was acknowledged to both {previous} and {}",
                    submission.request_id
                ),
            });
        }
    }
    for a in observation.submissions {
        let Some(&(acked_ms, a_id)) = a.acks.first() else {
            continue;
        };
        for b in observation.submissions {
            let Some(&(_, b_id)) = b.acks.first() else {
                continue;
            };
            if acked_ms < b.sent_ms && a_id >= b_id {
                violations.push(Violation {
                    invariant: "job ids unique and monotonic",
                    detail: format!(
                        "{} was acknowledged as job {a_id} at {acked_ms} ms, before {} was sent at {} ms, which got job {b_id}",
                        a.request_id, b.request_id, b.sent_ms
                    ),
                });
            }
        }
    }
    let Some(state) = observation.latest() else {
        return;
    };
    for submission in observation.submissions {
        let Some(&(_, id)) = submission.acks.first() else {
            continue;
        };
        match state.job(id) {
            Some(job) if job.plan == submission.plan => {}
            Some(_) => violations.push(Violation {
                invariant: "acknowledged submissions survive",
                detail: format!("job {id} holds a different plan than was submitted"),
            }),
            None => violations.push(Violation {
                invariant: "acknowledged submissions survive",
                detail: format!("acknowledged job {id} is missing from the most advanced replica"),
            }),
        }
    }
}
