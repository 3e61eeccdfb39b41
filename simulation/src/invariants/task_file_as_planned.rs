//! A task runs the file its job planned (issue 15): the run request names the SHA-256 the job
//! committed, and the bytes the agent runs have exactly that hash — a file changed between plan
//! and run, or a stale cached copy, runs nowhere.

use super::{Observation, TaskRunCursor, Violation};

const INVARIANT: &str = "a task runs the file its job planned";

#[derive(Default)]
pub struct TaskFiles {
    cursor: TaskRunCursor,
}

impl TaskFiles {
    pub fn check(&mut self, observation: &Observation, violations: &mut Vec<Violation>) {
        self.cursor
            .advance(observation, INVARIANT, violations, |run, job, task| {
                if run.requested_sha256 != task.sha256 {
                    return Some(format!(
                        "{} was asked to run task {} of job {} ({}) with sha256 {}, but the job planned {}",
                        run.certname,
                        task.name,
                        job.id,
                        run.transaction_id,
                        run.requested_sha256,
                        task.sha256
                    ));
                }
                (run.file_sha256 != task.sha256).then(|| {
                    format!(
                        "{} ran task {} of job {} ({}) from a file with sha256 {}, but the job planned {}",
                        run.certname,
                        task.name,
                        job.id,
                        run.transaction_id,
                        run.file_sha256,
                        task.sha256
                    )
                })
            });
    }

    pub fn all_seen(&self, observation: &Observation, violations: &mut Vec<Violation>) {
        self.cursor.all_seen(observation, INVARIANT, violations);
    }
}
