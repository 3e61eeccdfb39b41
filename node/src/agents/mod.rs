//! Agent sessions on this node and delivery of committed runs to them.
//!
//! - [`registry`]: the sessions this node holds.
//! - [`session`]: the gRPC `AgentSessions.Session` stream: hello, inventory commands,
//!   reconciliation after (re)connect, results proposed to raft and acknowledged.
//! - [`task_files`]: task files served to agents by content hash.
//!
//! What the node sends its agents and when (committed starts, status queries) is decided by
//! `crate::reaction`, from [`run_request`] and [`in_flight_for`] here.

pub mod registry;
pub mod session;
pub mod task_files;

use porch_agent::proto::RunRequest;
use porch_core::{ClusterState, JobId};

/// The request an agent gets for run `transaction_id` of `job_id`, from the applied job.
pub fn run_request(
    state: &ClusterState,
    job_id: JobId,
    transaction_id: &str,
) -> Option<RunRequest> {
    let job = state.job(job_id)?;
    let spec = &job.spec;
    Some(RunRequest {
        transaction_id: transaction_id.to_string(),
        job_id: job_id.0,
        environment: spec.environment.clone(),
        noop: spec.noop,
        no_noop: spec.no_noop,
        enforce_environment: spec.enforce_environment,
        debug: spec.debug,
        trace: spec.trace,
        evaltrace: spec.evaltrace,
        task: spec.task.as_ref().map(|task| porch_agent::proto::TaskRun {
            name: task.name.clone(),
            file_name: task.file_name.clone(),
            sha256: task.sha256.clone(),
            size_bytes: task.size_bytes,
            params_json: if porch_core::planted::active(
                porch_core::planted::Bug::TaskParamsThroughFloat,
            ) {
                numbers_through_float(&task.params_json)
            } else {
                task.params_json.clone()
            },
            input_method: task.input_method.as_str().to_string(),
            timeout_secs: task.timeout_secs,
        }),
    })
}

/// The planted bug [`porch_core::planted::Bug::TaskParamsThroughFloat`]: `params_json` with
/// every number through an `f64`, whole ones rendered without a fraction as JavaScript does
/// (so only integers beyond 2^53 change).
fn numbers_through_float(params_json: &str) -> String {
    fn through_float(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Number(n) => {
                let float = n.as_f64().unwrap_or_default();
                if float.fract() == 0.0 && float.abs() < 9.2e18 {
                    *n = serde_json::Number::from(float as i64);
                } else if let Some(rounded) = serde_json::Number::from_f64(float) {
                    *n = rounded;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(through_float),
            serde_json::Value::Object(map) => map.values_mut().for_each(through_float),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(params_json) {
        Ok(mut value) => {
            through_float(&mut value);
            value.to_string()
        }
        Err(_) => params_json.to_string(),
    }
}

/// Runs in flight for `certname`: `(job, transaction id)`.
pub fn in_flight_for(state: &ClusterState, certname: &str) -> Vec<(JobId, String)> {
    state
        .busy_nodes()
        .get(certname)
        .and_then(|txn| state.in_flight().get(txn).map(|t| (t.job_id, txn.clone())))
        .into_iter()
        .collect()
}
