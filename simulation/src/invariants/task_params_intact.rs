//! A task's parameters reach the agent intact (issue 15): for every task run, what the task
//! gets — its stdin JSON, of which its `PT_*` variables are made — is exactly the committed
//! job's parameters plus the metaparameters `_task` (the job's task) and `_noop` (in a noop
//! job only), whichever node sent the run, however often it was re-sent.

use super::{Observation, TaskRunCursor, Violation};
use serde_json::{Map, Value};

const INVARIANT: &str = "task parameters reach the agent intact";

#[derive(Default)]
pub struct TaskParams {
    cursor: TaskRunCursor,
}

impl TaskParams {
    pub fn check(&mut self, observation: &Observation, violations: &mut Vec<Violation>) {
        self.cursor
            .advance(observation, INVARIANT, violations, |run, job, task| {
                let mut expected: Map<String, Value> = match serde_json::from_str(&task.params_json)
                {
                    Ok(params) => params,
                    Err(e) => {
                        return Some(format!(
                            "job {} committed parameters that are not a JSON object: {e}",
                            job.id
                        ));
                    }
                };
                expected.insert("_task".into(), Value::String(task.name.clone()));
                if job.spec.noop {
                    expected.insert("_noop".into(), Value::Bool(true));
                }
                difference(&expected, &run.input, &task.sensitive).map(|difference| {
                    format!(
                        "{} ran task {} of job {} ({}) with other parameters than committed: {difference}",
                        run.certname, task.name, job.id, run.transaction_id
                    )
                })
            });
    }

    pub fn all_seen(&self, observation: &Observation, violations: &mut Vec<Violation>) {
        self.cursor.all_seen(observation, INVARIANT, violations);
    }
}

/// The first parameter that differs, named (values of sensitive ones are not shown).
fn difference(
    expected: &Map<String, Value>,
    received: &Map<String, Value>,
    sensitive: &[String],
) -> Option<String> {
    let shown = |name: &str, value: Option<&Value>| match value {
        None => "absent".to_string(),
        Some(_) if sensitive.iter().any(|s| s == name) => "(sensitive)".to_string(),
        Some(value) => {
            let text = value.to_string();
            match text.char_indices().nth(200) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text,
            }
        }
    };
    expected
        .keys()
        .chain(received.keys())
        .find(|name| expected.get(*name) != received.get(*name))
        .map(|name| {
            format!(
                "'{name}' committed {}, received {}",
                shown(name, expected.get(name)),
                shown(name, received.get(name))
            )
        })
}
