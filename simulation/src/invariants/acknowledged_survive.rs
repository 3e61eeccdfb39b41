//! Every acknowledged submission survives, with its plan, and job ids are unique and grow in
//! the order submissions were acknowledged (the workload submits one at a time).

use super::{Observation, Violation};

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    for pair in observation.acknowledged.windows(2) {
        if pair[0].0 >= pair[1].0 {
            violations.push(Violation {
                invariant: "job ids unique and monotonic",
                detail: format!("job {} acknowledged after job {}", pair[1].0, pair[0].0),
            });
        }
    }
    let Some(state) = observation.latest() else {
        return;
    };
    for (id, plan) in observation.acknowledged {
        match state.job(*id) {
            Some(job) if &job.plan == plan => {}
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
