//! Turns a job's target into its plan, once, on the node that accepts the submission. The
//! plan then travels in the log entry, so no replica ever recomputes it (their code
//! directories may differ, and so may PuppetDB's answer a moment later; the log does not).

use crate::api::error::ApiError;
use crate::puppetdb::{PuppetDb, PuppetDbError};
use axum::http::StatusCode;
use porch_core::{Plan, PlanError, Target};
use porch_lang::{Environment, LangError};
use porch_raft::AppliedView;
use std::path::Path;

pub use porch_lang::PlanReport;

/// Reads code files for application targets, so it never holds the state lock while doing
/// so (the lock is taken only to resolve a query against the inventory).
pub fn plan_for(
    target: &Target,
    environment: &str,
    codedir: &Path,
    view: &AppliedView,
) -> Result<PlanReport, ApiError> {
    match target {
        Target::Nodes(nodes) => match Environment::load(codedir, environment) {
            // With the environment's code at hand, nodes that take part in applications keep
            // their order among themselves and partial targets are warned about (as PE does).
            Ok(env) => env.plan_nodes(nodes).map_err(lang_error),
            // Without it, a node list is still a valid job: independent nodes.
            Err(LangError::UnknownEnvironment(_)) => Ok(PlanReport {
                plan: Plan::independent(nodes.iter().cloned()).map_err(plan_error)?,
                applications: Vec::new(),
                warnings: Vec::new(),
            }),
            Err(other) => Err(lang_error(other)),
        },
        Target::Application(app) => Environment::load(codedir, environment)
            .and_then(|env| env.plan_application(app))
            .map_err(lang_error),
        Target::Query(query) => {
            let nodes = crate::query::resolve(query, &view.read().cluster)
                .map_err(ApiError::query_error)?;
            query_plan(query, nodes, "no known node")
        }
    }
}

/// Plans `spec`'s target on a blocking thread when it reads code: an application target reads
/// and parses the environment's code, which must not stall the async workers serving raft,
/// sessions and other requests. Query targets go to PuppetDB when the node has one. A task
/// job's nodes are independent: a task has no order between nodes.
pub async fn plan_job(
    spec: &porch_core::JobSpec,
    codedir: &Path,
    view: &std::sync::Arc<AppliedView>,
    puppetdb: Option<&PuppetDb>,
) -> Result<PlanReport, ApiError> {
    if spec.task.is_some() {
        return task_plan(&spec.target, codedir, view, puppetdb).await;
    }
    if let (Target::Query(query), Some(puppetdb)) = (&spec.target, puppetdb) {
        return plan_query_in_puppetdb(query, puppetdb).await;
    }
    let reads_code = !matches!(spec.target, Target::Query(_))
        && porch_lang::environment::valid_environment_name(&spec.environment)
        && codedir
            .join("environments")
            .join(&spec.environment)
            .is_dir();
    if !reads_code {
        // Nothing to read (a query, or no code for this environment): a thread hop per
        // request would cost more than the plan.
        return plan_for(&spec.target, &spec.environment, codedir, view);
    }
    let (target, environment) = (spec.target.clone(), spec.environment.clone());
    let (codedir, view) = (codedir.to_path_buf(), view.clone());
    crate::blocking::off_the_runtime(move || plan_for(&target, &environment, &codedir, &view))
        .await
        .map_err(|e| ApiError::internal(format!("planning did not finish: {e}")))?
}

async fn task_plan(
    target: &Target,
    codedir: &Path,
    view: &AppliedView,
    puppetdb: Option<&PuppetDb>,
) -> Result<PlanReport, ApiError> {
    match (target, puppetdb) {
        (Target::Nodes(nodes), _) => Ok(PlanReport {
            plan: Plan::independent(nodes.iter().cloned()).map_err(plan_error)?,
            applications: Vec::new(),
            warnings: Vec::new(),
        }),
        (Target::Query(query), Some(puppetdb)) => plan_query_in_puppetdb(query, puppetdb).await,
        (Target::Query(_), None) => plan_for(target, "", codedir, view),
        (Target::Application(_), _) => Err(ApiError::validation(
            "'scope.application' is not allowed for task jobs; use nodes or query",
        )),
    }
}

/// Plans a query target with PuppetDB (`--puppetdb-url`): the certnames of the query's result
/// rows become independent nodes. Awaits PuppetDB without any lock held.
pub async fn plan_query_in_puppetdb(
    query: &str,
    puppetdb: &PuppetDb,
) -> Result<PlanReport, ApiError> {
    crate::query::check_length(query).map_err(ApiError::query_error)?;
    let nodes = puppetdb.certnames(query).await.map_err(puppetdb_error)?;
    query_plan(
        query,
        nodes,
        &format!("no node in PuppetDB at {}", puppetdb.url()),
    )
}

fn query_plan(query: &str, nodes: Vec<String>, nothing: &str) -> Result<PlanReport, ApiError> {
    if nodes.is_empty() {
        return Err(ApiError::empty_target(format!(
            "the query {query:?} matches {nothing}"
        )));
    }
    Ok(PlanReport {
        plan: Plan::independent(nodes).map_err(plan_error)?,
        applications: Vec::new(),
        warnings: Vec::new(),
    })
}

/// PuppetDB's verdict on the query is the caller's `query-error` (400); PuppetDB out of reach
/// is 503, PuppetDB answering wrongly 502.
pub fn puppetdb_error(error: PuppetDbError) -> ApiError {
    if error.is_query_error() {
        return ApiError::query_error(error.to_string());
    }
    let status = if error.is_unavailable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    };
    ApiError::kind(status, PUPPETDB_ERROR, error.to_string())
}

/// The kind of errors where PuppetDB, not the request, is at fault.
pub const PUPPETDB_ERROR: &str = "puppetlabs.orchestrator/puppetdb-error";

pub fn plan_error(error: PlanError) -> ApiError {
    match error {
        PlanError::Empty => ApiError::empty_target("the target resolves to no nodes"),
        PlanError::Cycle { .. } => ApiError::dependency_cycle(error.to_string()),
        other => ApiError::validation(other.to_string()),
    }
}

/// A language error as the API reports it, with PE's kind.
pub fn lang_error(error: LangError) -> ApiError {
    let status = match error {
        LangError::UnknownEnvironment(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::kind(status, error.kind(), error.to_string())
}

/// The plan as `puppet job plan` prints it.
pub fn render_plan(report: &PlanReport, spec: &porch_core::JobSpec) -> String {
    porch_lang::render::render_plan(
        report,
        &spec.environment,
        &spec.target.describe(),
        spec.concurrency,
    )
}
