//! Text for people: `puppet app show` and `puppet job plan`.

use crate::environment::Environment;
use crate::error::LangError;
use crate::plan::{PlanReport, parse_application_target};
use std::fmt::Write;

/// Every application definition and instance (or those matching `filter`): for each instance,
/// `Comp['title'] => node` in dependency order with its produces/consumes lines.
pub fn render_app_show(env: &Environment, filter: Option<&str>) -> Result<String, LangError> {
    let graph = env.graph()?;
    let wanted = filter.map(parse_application_target).transpose()?;
    let mut out = String::new();
    for (name, definition) in &env.applications {
        if wanted.as_ref().is_some_and(|(app, _)| app != name) {
            continue;
        }
        let parameters: Vec<String> = definition
            .parameters
            .iter()
            .map(|p| {
                if p.default.is_some() {
                    format!("{} (optional)", p.name)
                } else {
                    p.name.clone()
                }
            })
            .collect();
        let _ = writeln!(out, "Application {name} ({})", definition.span);
        let _ = writeln!(
            out,
            "  parameters: {}",
            if parameters.is_empty() {
                "none".into()
            } else {
                parameters.join(", ")
            }
        );
        let instances: Vec<_> = graph
            .instances
            .iter()
            .filter(|i| &i.type_name == name)
            .filter(|i| {
                wanted
                    .as_ref()
                    .and_then(|(_, t)| t.as_ref())
                    .is_none_or(|t| &i.title == t)
            })
            .collect();
        if instances.is_empty() {
            let _ = writeln!(out, "  (no instances)");
        }
        for instance in instances {
            let _ = writeln!(out);
            let _ = writeln!(out, "  {}", instance.display());
            if instance.components.is_empty() {
                let _ = writeln!(out, "    (no component is mapped to a node)");
            }
            for &c in &instance.components {
                let component = &graph.components[c];
                let _ = writeln!(out, "    {} => {}", component.display(), component.node);
                for produced in &component.produces {
                    let _ = writeln!(out, "        - produces {produced}");
                }
                for consumed in &component.consumes {
                    let _ = writeln!(out, "        - consumes {consumed}");
                }
            }
        }
        let _ = writeln!(out);
    }
    if out.is_empty() {
        return Err(LangError::EmptyTarget(match filter {
            Some(f) => format!("environment {} has no application {f}", env.name),
            None => format!("environment {} defines no application", env.name),
        }));
    }
    Ok(out)
}

/// The plan as `puppet job plan` prints it.
pub fn render_plan(
    report: &PlanReport,
    environment: &str,
    target: &str,
    concurrency: Option<u32>,
) -> String {
    let mut out = String::new();
    let plan = &report.plan;
    let levels = plan.levels().unwrap_or_default();
    let with_components = plan
        .nodes()
        .iter()
        .filter(|n| !n.components.is_empty())
        .count();
    let rows = [
        ("Environment", environment.to_string()),
        ("Target", target.to_string()),
        (
            "Concurrency Limit",
            concurrency
                .map(|c| c.to_string())
                .unwrap_or_else(|| "None".into()),
        ),
        ("Nodes", plan.len().to_string()),
    ];
    let width = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(10);
    let rule = format!("+-------------------+-{}-+", "-".repeat(width));
    let _ = writeln!(out, "{rule}");
    for (label, value) in rows {
        let _ = writeln!(out, "| {label:<17} | {value:<width$} |");
    }
    let _ = writeln!(out, "{rule}");
    let _ = writeln!(out);
    if !report.applications.is_empty() {
        let _ = writeln!(out, "Application instances: {}", report.applications.len());
        for app in &report.applications {
            let _ = writeln!(out, "  - {app}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "Total nodes in job: {}", plan.len());
    if !report.applications.is_empty() {
        let _ = writeln!(
            out,
            "  Nodes getting application components: {with_components}"
        );
        let _ = writeln!(out, "  Additional nodes: {}", plan.len() - with_components);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Puppet will compile a new catalog for all nodes included in the job."
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Node run order (nodes in level 0 run before their dependent nodes in level 1, etc.):"
    );
    let depth = levels.iter().copied().max().unwrap_or(0);
    for level in 0..=depth {
        let _ = writeln!(out, "{level} {}", "-".repeat(70));
        for (node, _) in plan
            .nodes()
            .iter()
            .zip(&levels)
            .filter(|(_, l)| **l == level)
        {
            let _ = writeln!(out, "{}", node.name);
            for component in &node.components {
                let _ = writeln!(
                    out,
                    "    {} for {}",
                    component.component, component.application
                );
            }
        }
        let _ = writeln!(out);
    }
    let flag = if report.applications.is_empty() {
        "--nodes"
    } else {
        "--application"
    };
    let _ = writeln!(
        out,
        "Use 'puppet job run {flag} {target} --environment {environment}' to create and run this job."
    );
    let _ = writeln!(
        out,
        "Catalogs may change before the job runs: the plan reflects the code as it is now."
    );
    out
}
