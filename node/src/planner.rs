//! Turns a job's target into its plan, once, on the node that accepts the submission. The
//! plan then travels in the log entry, so no replica ever recomputes it.

use crate::api::error::ApiError;
use porch_core::{ClusterState, Plan, PlanError, Target};
use std::path::Path;

/// A resolved plan plus what the user should be told about it.
pub struct PlanReport {
    pub plan: Plan,
    pub applications: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn plan_for(
    target: &Target,
    _environment: &str,
    _codedir: &Path,
    state: &ClusterState,
) -> Result<PlanReport, ApiError> {
    match target {
        Target::Nodes(nodes) => Ok(PlanReport {
            plan: Plan::independent(nodes.iter().cloned()).map_err(plan_error)?,
            applications: Vec::new(),
            warnings: Vec::new(),
        }),
        Target::Application(_) => Err(ApiError::validation(
            "application targets are not available yet in this build",
        )),
        Target::Query(query) => {
            let nodes = crate::query::resolve(query, state).map_err(ApiError::query_error)?;
            if nodes.is_empty() {
                return Err(ApiError::empty_target(format!(
                    "the query {query:?} matches no known node"
                )));
            }
            Ok(PlanReport {
                plan: Plan::independent(nodes).map_err(plan_error)?,
                applications: Vec::new(),
                warnings: Vec::new(),
            })
        }
    }
}

pub fn plan_error(error: PlanError) -> ApiError {
    match error {
        PlanError::Empty => ApiError::empty_target("the target resolves to no nodes"),
        PlanError::Cycle { .. } => ApiError::dependency_cycle(error.to_string()),
        other => ApiError::validation(other.to_string()),
    }
}

/// The plan as `puppet job plan` prints it (nodes by level).
pub fn render_plan(report: &PlanReport, spec: &porch_core::JobSpec) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let levels = report.plan.levels().unwrap_or_default();
    let _ = writeln!(out, "+-------------------+------------+");
    let _ = writeln!(out, "| Environment       | {}", spec.environment);
    let _ = writeln!(out, "| Target            | {}", spec.target.describe());
    let _ = writeln!(
        out,
        "| Concurrency Limit | {}",
        spec.concurrency
            .map(|c| c.to_string())
            .unwrap_or_else(|| "None".into())
    );
    let _ = writeln!(out, "| Nodes             | {}", report.plan.len());
    let _ = writeln!(out, "+-------------------+------------+");
    let depth = levels.iter().copied().max().unwrap_or(0);
    for level in 0..=depth {
        let _ = writeln!(out, "\nLevel {level}");
        for (node, _) in report
            .plan
            .nodes()
            .iter()
            .zip(&levels)
            .filter(|(_, l)| **l == level)
        {
            let _ = writeln!(out, "    {}", node.name);
            for component in &node.components {
                let _ = writeln!(
                    out,
                    "        {} for {}",
                    component.component, component.application
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\nUse 'puppet job run' with the same target to create and run this job."
    );
    out
}
