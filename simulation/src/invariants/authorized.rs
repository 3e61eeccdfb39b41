//! Jobs exist only by permission (issue 11): a job is owned by the user of the token it was
//! submitted with, whatever the request claimed; a viewer's submission is never acknowledged
//! and no replica holds a job of the viewer's.

use super::{Observation, Violation};
use crate::access::SimUser;

pub fn check(observation: &Observation, violations: &mut Vec<Violation>) {
    let operator = SimUser::Operator.actor();
    for node in observation.nodes {
        for job in node.state.jobs().values() {
            if job.spec.owner != operator {
                violations.push(Violation {
                    invariant: "jobs exist only by permission",
                    detail: format!(
                        "node {} holds job {} owned by {:?}, not the operator whose token submits",
                        node.id, job.id, job.spec.owner
                    ),
                });
            }
        }
    }
    for submission in observation.submissions {
        if submission.user == SimUser::Viewer && !submission.acks.is_empty() {
            violations.push(Violation {
                invariant: "jobs exist only by permission",
                detail: format!(
                    "the viewer's submission {} was acknowledged as job {}",
                    submission.request_id, submission.acks[0].1
                ),
            });
        }
    }
}
