//! How task jobs read in PE's API: the task and its parameters in a job's `options` (sensitive
//! ones masked), and each node's `result` — the task's stdout parsed as JSON if it is a JSON
//! object, else `{"_output": stdout}`, with `_error` when the task failed or could not run.
//! Rendered from the facts the state keeps (stdout, stderr, exit code, error text).

use porch_core::{NodeRun, NodeState, TaskInvocation};
use serde_json::{Map, Value, json};

/// What porch shows in place of a sensitive parameter's value.
pub const MASKED: &str = "Sensitive [value redacted]";

/// The job's parameters with sensitive values masked.
pub fn shown_params(task: &TaskInvocation) -> Value {
    let mut params: Map<String, Value> =
        serde_json::from_str(&task.params_json).unwrap_or_default();
    for name in &task.sensitive {
        if let Some(value) = params.get_mut(name) {
            *value = json!(MASKED);
        }
    }
    Value::Object(params)
}

/// Extra `options` of a task job.
pub fn task_options(task: &TaskInvocation) -> Value {
    json!({
        "task": task.name,
        "params": shown_params(task),
        "timeout": task.timeout_secs,
        "task_file": {"filename": task.file_name, "sha256": task.sha256, "size_bytes": task.size_bytes},
    })
}

/// A node's `result` in a task job.
pub fn task_result(run: &NodeRun, node: &str) -> Value {
    match run.state {
        NodeState::Errored => json!({"_error": {
            "kind": "puppetlabs.orchestrator/execution-failure",
            "msg": run.message.clone().unwrap_or_default(),
            "details": {"node": node},
        }}),
        NodeState::Finished | NodeState::Failed => {
            let Some(result) = &run.result else {
                return Value::Null;
            };
            let stdout = result.message.clone().unwrap_or_default();
            let mut value = match serde_json::from_str::<Value>(&stdout) {
                Ok(Value::Object(object)) => object,
                _ => {
                    let mut output = Map::new();
                    output.insert("_output".into(), json!(stdout));
                    output
                }
            };
            if run.state == NodeState::Failed && !value.contains_key("_error") {
                let exit_code = result.exit_code.unwrap_or(-1);
                let msg = match (&result.stderr, exit_code) {
                    (Some(stderr), 0) => stderr.clone(),
                    _ => format!("The task errored with a code {exit_code}"),
                };
                value.insert(
                    "_error".into(),
                    json!({
                        "kind": "puppetlabs.tasks/task-error",
                        "msg": msg,
                        "details": {"exit_code": exit_code, "stderr": result.stderr},
                    }),
                );
            }
            Value::Object(value)
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use porch_core::RunResult;

    fn run(state: NodeState, stdout: &str, exit_code: i32) -> NodeRun {
        NodeRun {
            state,
            result: Some(RunResult {
                message: Some(stdout.to_string()),
                exit_code: Some(exit_code),
                stderr: Some("oops".into()),
                ..RunResult::default()
            }),
            ..NodeRun::new()
        }
    }

    #[test]
    fn a_json_object_on_stdout_is_the_result_and_anything_else_is_output() {
        assert_eq!(
            task_result(&run(NodeState::Finished, r#"{"status": "ok"}"#, 0), "a"),
            json!({"status": "ok"})
        );
        assert_eq!(
            task_result(&run(NodeState::Finished, "plain\n", 0), "a"),
            json!({"_output": "plain\n"})
        );
        assert_eq!(
            task_result(&run(NodeState::Finished, "[1, 2]", 0), "a"),
            json!({"_output": "[1, 2]"})
        );
    }

    #[test]
    fn a_failed_task_carries_an_error_with_its_exit_code_unless_it_wrote_its_own() {
        let failed = task_result(&run(NodeState::Failed, "partial", 3), "a");
        assert_eq!(failed["_output"], "partial");
        assert_eq!(failed["_error"]["kind"], "puppetlabs.tasks/task-error");
        assert_eq!(failed["_error"]["details"]["exit_code"], 3);
        assert_eq!(failed["_error"]["details"]["stderr"], "oops");
        let own = task_result(
            &run(NodeState::Failed, r#"{"_error": {"msg": "mine"}}"#, 1),
            "a",
        );
        assert_eq!(own, json!({"_error": {"msg": "mine"}}));
        let errored = NodeRun {
            state: NodeState::Errored,
            message: Some("sha256 mismatch".into()),
            ..NodeRun::new()
        };
        assert_eq!(
            task_result(&errored, "a")["_error"]["msg"],
            "sha256 mismatch"
        );
    }

    #[test]
    fn sensitive_parameters_are_masked() {
        let task = TaskInvocation {
            name: "db::login".into(),
            file_name: "login.sh".into(),
            file_path: "x".into(),
            sha256: "0".repeat(64),
            size_bytes: 1,
            params_json: r#"{"password":"hunter2","user":"bob"}"#.into(),
            input_method: porch_core::TaskInputMethod::Both,
            timeout_secs: 60,
            sensitive: vec!["password".into()],
        };
        assert_eq!(
            shown_params(&task),
            json!({"password": MASKED, "user": "bob"})
        );
    }
}
