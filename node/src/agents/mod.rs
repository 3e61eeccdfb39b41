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
            params_json: task.params_json.clone(),
            input_method: task.input_method.as_str().to_string(),
            timeout_secs: task.timeout_secs,
        }),
    })
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
