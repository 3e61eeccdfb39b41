//! The body of `POST /command/task` turned into a task job: the task found in the
//! environment's modules, its file hashed, the parameters checked against its metadata —
//! all before anything is proposed, so a wrong parameter is a 400 naming it and no node runs.
//!
//! [`task_job`] is the one entry point: the command handler calls it, and so does anything
//! else that turns a task request into a job (a scheduled task firing).

use super::ApiState;
use super::deploy_request::{DESCRIPTION_BYTES_MAX, ScopeBody, parse_target};
use super::error::ApiError;
use super::job_submission::PlannedJob;
use axum::http::StatusCode;
use porch_core::task::TASK_PARAMS_BYTES_MAX;
use porch_core::{JobSpec, TaskInputMethod, TaskInvocation};
use porch_lang::tasks::{InputMethod, TaskError, find_task};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;

/// A task's longest run on one node when the request names no `timeout` (PE's
/// `default-task-node-timeout`).
pub const DEFAULT_TASK_TIMEOUT_SECS: u32 = 2400;
/// The longest `timeout` a request may ask for: a day.
pub const TASK_TIMEOUT_SECS_MAX: i64 = 24 * 3600;

/// The error kind of parameters that do not fit the task's metadata.
pub const INVALID_PARAMS: &str = "puppetlabs.orchestrator/invalid-params";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    /// PE's default: production.
    pub environment: Option<String>,
    pub scope: Option<ScopeBody>,
    pub task: Option<String>,
    pub params: Option<Value>,
    #[serde(default)]
    pub noop: bool,
    pub description: Option<String>,
    /// Seconds the task may run on each node.
    pub timeout: Option<i64>,
}

/// Parses a request body (syntax only: no files read).
pub fn parse_body(body: &[u8]) -> Result<TaskBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(
            "the request body is empty; expected a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("invalid request body: {e}")))
}

/// A task catalogue error as the API answers it, with PE's kind.
pub fn task_error(error: TaskError) -> ApiError {
    let status = match error {
        TaskError::UnknownEnvironment(_) | TaskError::UnknownTask { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    let details = match &error {
        TaskError::UnknownTask { task, environment } => {
            json!({"task": task, "environment": environment})
        }
        TaskError::UnknownEnvironment(environment) => json!({"environment": environment}),
        _ => json!({}),
    };
    ApiError::kind(status, error.kind(), error.to_string()).with_details(details)
}

/// Checks a task request against the code in `codedir` (reads and hashes the task's files:
/// call it off the async workers) and returns the job's spec, its target not yet resolved
/// into nodes, and warnings for the caller.
pub fn check_task_request(
    codedir: &Path,
    body: TaskBody,
    owner: porch_core::Actor,
) -> Result<(JobSpec, Vec<String>), ApiError> {
    let environment = body.environment.unwrap_or_else(|| "production".into());
    if !porch_lang::environment::valid_environment_name(&environment) {
        return Err(ApiError::validation(format!(
            "'environment': {environment:?} is not a valid environment name (letters, digits, underscores)"
        )));
    }
    let name = body
        .task
        .ok_or_else(|| ApiError::validation("'task' is required"))?;
    let params = match body.params {
        Some(Value::Object(params)) => params,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "'params' must be a JSON object, got {other}"
            )));
        }
        None => return Err(ApiError::validation("'params' is required (it may be {})")),
    };
    if let Some(description) = &body.description
        && description.len() > DESCRIPTION_BYTES_MAX
    {
        return Err(ApiError::validation(format!(
            "'description' is {} bytes; at most {DESCRIPTION_BYTES_MAX} are allowed",
            description.len()
        )));
    }
    let timeout_secs = match body.timeout {
        None => DEFAULT_TASK_TIMEOUT_SECS,
        Some(t) if (1..=TASK_TIMEOUT_SECS_MAX).contains(&t) => t as u32,
        Some(t) => {
            return Err(ApiError::validation(format!(
                "'timeout' must be 1-{TASK_TIMEOUT_SECS_MAX} seconds, got {t}"
            )));
        }
    };
    let scope = body
        .scope
        .ok_or_else(|| ApiError::validation("'scope' is required (one of nodes, query)"))?;
    if scope.application.is_some() {
        return Err(ApiError::validation(
            "'scope.application' is not allowed for task jobs; use nodes or query",
        ));
    }
    let target = parse_target(Some(scope), None)?;
    let (invocation, warnings) = check_task(
        codedir,
        &environment,
        &name,
        params,
        body.noop,
        timeout_secs,
    )?;
    let spec = JobSpec {
        environment,
        target,
        noop: body.noop,
        no_noop: false,
        concurrency: None,
        enforce_environment: true,
        debug: false,
        trace: false,
        evaltrace: false,
        description: body.description,
        owner,
        task: Some(invocation),
    };
    Ok((spec, warnings))
}

/// Finds task `name` in `environment`'s modules, hashes its file and checks `params` against
/// its metadata: the invocation an agent will run, and warnings for the caller. The one rule
/// for a request and for each occurrence of a task schedule (checked again then: the code
/// may have changed).
pub fn check_task(
    codedir: &Path,
    environment: &str,
    name: &str,
    params: serde_json::Map<String, Value>,
    noop: bool,
    timeout_secs: u32,
) -> Result<(TaskInvocation, Vec<String>), ApiError> {
    let task = find_task(codedir, environment, name).map_err(task_error)?;
    if noop && !task.metadata.supports_noop {
        return Err(ApiError::validation(format!(
            "task {} does not support noop (its metadata has no \"supports_noop\": true)",
            task.name
        )));
    }
    let checked = task.metadata.check_parameters(&params).map_err(|e| {
        ApiError::kind(
            StatusCode::BAD_REQUEST,
            INVALID_PARAMS,
            format!("task {}: {e}", task.name),
        )
        .with_details(json!({"parameter": e.parameter, "task": task.name}))
    })?;
    let params_json = Value::Object(checked).to_string();
    if params_json.len() > TASK_PARAMS_BYTES_MAX {
        return Err(ApiError::kind(
            StatusCode::BAD_REQUEST,
            INVALID_PARAMS,
            format!(
                "the parameters are {} bytes as JSON; at most {TASK_PARAMS_BYTES_MAX} are accepted",
                params_json.len()
            ),
        ));
    }
    let warnings = task
        .metadata
        .unchecked_parameters()
        .into_iter()
        .map(|(parameter, types)| {
            format!(
                "parameter '{parameter}' of task {}: porch does not check values of type {} (passed as given)",
                task.name,
                types.join(", ")
            )
        })
        .collect();
    let invocation = TaskInvocation {
        sensitive: task.metadata.sensitive_parameters(),
        name: task.name,
        file_name: task.file.file_name,
        file_path: task.file.path,
        sha256: task.file.sha256,
        size_bytes: task.file.size_bytes,
        params_json,
        input_method: match task.metadata.input_method {
            InputMethod::Stdin => TaskInputMethod::Stdin,
            InputMethod::Environment => TaskInputMethod::Environment,
            InputMethod::Both => TaskInputMethod::Both,
        },
        timeout_secs,
    };
    Ok((invocation, warnings))
}

/// A scheduled task checked again for one occurrence, with the parameters it was created
/// with (defaults already applied then).
pub fn recheck_task(codedir: &Path, spec: &JobSpec) -> Result<TaskInvocation, ApiError> {
    let Some(task) = &spec.task else {
        return Err(ApiError::internal("not a task job"));
    };
    let params = match serde_json::from_str(&task.params_json) {
        Ok(Value::Object(params)) => params,
        _ => {
            return Err(ApiError::internal(format!(
                "task {}: the stored parameters are not a JSON object",
                task.name
            )));
        }
    };
    check_task(
        codedir,
        &spec.environment,
        &task.name,
        params,
        spec.noop,
        task.timeout_secs,
    )
    .map(|(invocation, _)| invocation)
}

/// A task request body made into a job, ready to propose: checked against this node's code
/// (on a blocking thread: it reads and hashes files) and its target resolved.
pub async fn task_job(
    state: &ApiState,
    body: &[u8],
    owner: porch_core::Actor,
) -> Result<PlannedJob, ApiError> {
    let body = parse_body(body)?;
    let codedir = state.codedir.clone();
    let (spec, warnings) =
        crate::blocking::off_the_runtime(move || check_task_request(&codedir, body, owner))
            .await
            .map_err(|e| ApiError::internal(format!("checking the task did not finish: {e}")))??;
    let plan = crate::planner::plan_job(
        &spec,
        &state.codedir,
        &state.consensus.view,
        state.puppetdb.as_deref(),
    )
    .await?
    .plan;
    Ok(PlannedJob {
        spec,
        plan,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> porch_core::Actor {
        porch_core::Actor {
            id: "u-me".into(),
            login: "me".into(),
        }
    }

    fn codedir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let tasks = dir
            .path()
            .join("environments/production/modules/package/tasks");
        std::fs::create_dir_all(&tasks).unwrap();
        std::fs::write(tasks.join("init.sh"), "#!/bin/sh\ncat\n").unwrap();
        std::fs::write(
            tasks.join("init.json"),
            r#"{"supports_noop": true, "input_method": "stdin", "parameters": {
                "action": {"type": "Enum[install, status]"},
                "name": {"type": "String[1]"},
                "password": {"type": "Optional[String]", "sensitive": true},
                "options": {"type": "Optional[Struct[{a => String}]]"}
            }}"#,
        )
        .unwrap();
        dir
    }

    fn check(body: &str) -> Result<(JobSpec, Vec<String>), ApiError> {
        let dir = codedir();
        check_task_request(dir.path(), parse_body(body.as_bytes())?, me())
    }

    #[test]
    fn a_valid_request_fixes_the_file_hash_and_checked_parameters() {
        let (spec, warnings) = check(
            r#"{"environment": "production", "task": "package", "params": {"action": "status", "name": "openssl"},
                "scope": {"nodes": ["web1"]}, "noop": true, "timeout": 30}"#,
        )
        .unwrap();
        let task = spec.task.unwrap();
        assert_eq!(task.name, "package");
        assert_eq!(task.file_name, "init.sh");
        assert_eq!(
            task.sha256,
            porch_lang::tasks::sha256_hex(b"#!/bin/sh\ncat\n")
        );
        assert_eq!(task.params_json, r#"{"action":"status","name":"openssl"}"#);
        assert_eq!(task.input_method, TaskInputMethod::Stdin);
        assert_eq!(task.timeout_secs, 30);
        assert_eq!(task.sensitive, vec!["password".to_string()]);
        assert!(spec.noop);
        assert_eq!(spec.target, porch_core::Target::Nodes(vec!["web1".into()]));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("options") && warnings[0].contains("Struct"));
    }

    #[test]
    fn bad_requests_are_refused_with_pe_kinds_naming_the_problem() {
        let refuse = |body: &str| check(body).unwrap_err();
        let wrong_type = refuse(
            r#"{"task": "package", "params": {"action": "status", "name": 5}, "scope": {"nodes": ["a"]}}"#,
        );
        assert_eq!(wrong_type.kind, INVALID_PARAMS);
        assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
        assert_eq!(wrong_type.details["parameter"], "name");
        assert!(wrong_type.msg.contains("String[1]"), "{}", wrong_type.msg);
        let unknown = refuse(r#"{"task": "nothing", "params": {}, "scope": {"nodes": ["a"]}}"#);
        assert_eq!(unknown.kind, "puppetlabs.orchestrator/unknown-task");
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        let environment = refuse(
            r#"{"environment": "nowhere", "task": "package", "params": {}, "scope": {"nodes": ["a"]}}"#,
        );
        assert_eq!(
            environment.kind,
            "puppetlabs.orchestrator/unknown-environment"
        );
        for (body, expected) in [
            (
                r#"{"params": {}, "scope": {"nodes": ["a"]}}"#,
                "'task' is required",
            ),
            (
                r#"{"task": "package", "scope": {"nodes": ["a"]}}"#,
                "'params' is required",
            ),
            (
                r#"{"task": "package", "params": [], "scope": {"nodes": ["a"]}}"#,
                "JSON object",
            ),
            (
                r#"{"task": "package", "params": {}}"#,
                "'scope' is required",
            ),
            (
                r#"{"task": "package", "params": {}, "scope": {"application": "Lamp"}}"#,
                "not allowed for task jobs",
            ),
            (
                r#"{"task": "package", "params": {}, "scope": {"nodes": ["a"]}, "timeout": 0}"#,
                "'timeout'",
            ),
            (
                r#"{"task": "package", "params": {}, "scope": {"nodes": ["a"]}, "bogus": 1}"#,
                "bogus",
            ),
            (
                r#"{"task": "Package!", "params": {}, "scope": {"nodes": ["a"]}}"#,
                "not a valid task name",
            ),
        ] {
            let error = refuse(body);
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(error.msg.contains(expected), "{body}: {}", error.msg);
        }
    }

    #[test]
    fn noop_is_refused_for_a_task_that_does_not_support_it() {
        let dir = codedir();
        let tasks = dir
            .path()
            .join("environments/production/modules/plain/tasks");
        std::fs::create_dir_all(&tasks).unwrap();
        std::fs::write(tasks.join("init.sh"), "#!/bin/sh\n").unwrap();
        let body = parse_body(
            br#"{"task": "plain", "params": {}, "scope": {"nodes": ["a"]}, "noop": true}"#,
        )
        .unwrap();
        let error = check_task_request(dir.path(), body, me()).unwrap_err();
        assert!(error.msg.contains("does not support noop"), "{}", error.msg);
    }
}
