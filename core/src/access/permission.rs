//! What a role allows, and the one rule that decides whether a user may do something. The API
//! calls [`allows`] to answer 403 early; `apply` calls it again on the committed command, which
//! is the decision that counts (a role changed in between is seen there).

use crate::job::Target;
use serde::{Deserialize, Serialize};

/// One grant of a role. A user holds the union of its roles' grants. (Externally tagged:
/// snapshots use bincode, which cannot read internally tagged enums; the API has its own
/// JSON shape.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read jobs, inventory, environments and cluster status.
    View,
    /// Start and stop jobs (and view). Empty lists mean "any"; a non-empty list must match:
    /// the job's environment is one of `environments`, every node of the plan matches one of
    /// the `nodes` globs, and the target is an application matching one of `applications`.
    Run {
        environments: Vec<String>,
        nodes: Vec<String>,
        applications: Vec<String>,
    },
    /// Everything: cluster membership, users, roles, other users' tokens, the audit log.
    Admin,
    /// Run and stop task jobs (PE's "Tasks: Run tasks"; a Puppet run's `Run` does not cover
    /// tasks, which execute arbitrary scripts). Empty lists mean "any"; a non-empty list must
    /// match: the environment is one of `environments`, every planned node matches one of the
    /// `nodes` globs, and the task's name matches one of the `tasks` globs (`package`,
    /// `package::*`). Appended last: roles in snapshots keep their variant numbers.
    RunTask {
        environments: Vec<String>,
        nodes: Vec<String>,
        tasks: Vec<String>,
    },
}

/// What a request wants to do, in the terms a permission speaks.
#[derive(Clone, Copy, Debug)]
pub enum Action<'a> {
    View,
    /// Start or stop a job with this environment, target and planned nodes.
    Run {
        environment: &'a str,
        target: &'a Target,
        nodes: &'a [&'a str],
    },
    /// Run or stop task `task` in this environment on these planned nodes.
    RunTask {
        environment: &'a str,
        task: &'a str,
        nodes: &'a [&'a str],
    },
    Admin,
}

impl<'a> Action<'a> {
    /// What starting or stopping a job of `spec` over `nodes` needs: `run_task` for a task
    /// job, `run` for a Puppet run. The API's early check and `apply` both ask this.
    pub fn for_job(spec: &'a crate::job::JobSpec, nodes: &'a [&'a str]) -> Action<'a> {
        match &spec.task {
            Some(task) => Action::RunTask {
                environment: &spec.environment,
                task: &task.name,
                nodes,
            },
            None => Action::Run {
                environment: &spec.environment,
                target: &spec.target,
                nodes,
            },
        }
    }

    /// The permission's name as errors and the audit log show it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Run { .. } => "run",
            Action::RunTask { .. } => "run_task",
            Action::Admin => "admin",
        }
    }
}

impl Permission {
    pub fn allows(&self, action: &Action<'_>) -> bool {
        match (self, action) {
            (Permission::Admin, _) => true,
            (_, Action::Admin) => false,
            (_, Action::View) => true,
            (Permission::View, Action::Run { .. } | Action::RunTask { .. }) => false,
            (Permission::Run { .. }, Action::RunTask { .. }) => false,
            (Permission::RunTask { .. }, Action::Run { .. }) => false,
            (
                Permission::RunTask {
                    environments,
                    nodes,
                    tasks,
                },
                Action::RunTask {
                    environment,
                    task,
                    nodes: planned,
                },
            ) => {
                environment_allowed(environments, environment)
                    && nodes_allowed(nodes, planned)
                    && (tasks.is_empty() || tasks.iter().any(|glob| glob_matches(glob, task)))
            }
            (
                Permission::Run {
                    environments,
                    nodes,
                    applications,
                },
                Action::Run {
                    environment,
                    target,
                    nodes: planned,
                },
            ) => {
                let environment_ok = environment_allowed(environments, environment);
                let nodes_ok = nodes_allowed(nodes, planned);
                let application_ok = applications.is_empty()
                    || matches!(target, Target::Application(app)
                        if applications.iter().any(|glob| glob_matches(glob, app)));
                environment_ok && nodes_ok && application_ok
            }
        }
    }
}

/// An empty list allows any environment.
fn environment_allowed(environments: &[String], environment: &str) -> bool {
    environments.is_empty() || environments.iter().any(|e| e == environment)
}

/// An empty list allows any nodes; otherwise every planned node must match one glob.
fn nodes_allowed(globs: &[String], planned: &[&str]) -> bool {
    globs.is_empty()
        || planned
            .iter()
            .all(|node| globs.iter().any(|glob| glob_matches(glob, node)))
}

/// Any of `permissions` allows `action`.
pub fn allows<'p>(mut permissions: impl Iterator<Item = &'p Permission>, action: &Action) -> bool {
    permissions.any(|p| p.allows(action))
}

/// Shell-style glob: `*` any run of characters, `?` one character, everything else literal
/// (so `Lamp[*]` matches application instances of `Lamp`). Iterative: linear in practice,
/// no recursion on hostile patterns.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<'a>(environment: &'a str, target: &'a Target, nodes: &'a [&'a str]) -> Action<'a> {
        Action::Run {
            environment,
            target,
            nodes,
        }
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_matches("web*", "web1.example.com"));
        assert!(glob_matches("*.example.com", "db1.example.com"));
        assert!(glob_matches("web?", "web1"));
        assert!(!glob_matches("web?", "web12"));
        assert!(glob_matches("Lamp[*]", "Lamp[prod]"));
        assert!(!glob_matches("Lamp[*]", "Shop[prod]"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("a*b*c", "aXbY"));
        assert!(glob_matches("a*b*c", "aXbYc"));
    }

    #[test]
    fn an_operator_restricted_to_an_environment_cannot_run_outside_it() {
        let operator = Permission::Run {
            environments: vec!["staging".into()],
            nodes: vec![],
            applications: vec![],
        };
        let target = Target::Nodes(vec!["web1".into()]);
        assert!(operator.allows(&run("staging", &target, &["web1"])));
        assert!(!operator.allows(&run("production", &target, &["web1"])));
        assert!(operator.allows(&Action::View));
        assert!(!operator.allows(&Action::Admin));
    }

    #[test]
    fn node_patterns_must_cover_every_planned_node() {
        let web = Permission::Run {
            environments: vec![],
            nodes: vec!["web*".into()],
            applications: vec![],
        };
        let target = Target::Nodes(vec![]);
        assert!(web.allows(&run("production", &target, &["web1", "web2"])));
        assert!(!web.allows(&run("production", &target, &["web1", "db1"])));
    }

    #[test]
    fn application_patterns_allow_only_matching_application_jobs() {
        let lamp = Permission::Run {
            environments: vec![],
            nodes: vec![],
            applications: vec!["Lamp[*]".into()],
        };
        let app = Target::Application("Lamp[prod]".into());
        let other = Target::Application("Shop[prod]".into());
        let nodes = Target::Nodes(vec!["web1".into()]);
        assert!(lamp.allows(&run("production", &app, &["db1"])));
        assert!(!lamp.allows(&run("production", &other, &["db1"])));
        assert!(!lamp.allows(&run("production", &nodes, &["web1"])));
    }

    #[test]
    fn a_task_permission_is_restricted_by_task_name_and_separate_from_puppet_runs() {
        let package = Permission::RunTask {
            environments: vec![],
            nodes: vec!["web*".into()],
            tasks: vec!["package".into(), "service::*".into()],
        };
        let task = |task: &'static str, nodes: &'static [&'static str]| Action::RunTask {
            environment: "production",
            task,
            nodes,
        };
        assert!(package.allows(&task("package", &["web1"])));
        assert!(package.allows(&task("service::restart", &["web1"])));
        assert!(!package.allows(&task("exec", &["web1"])));
        assert!(!package.allows(&task("package::install", &["web1"])));
        assert!(!package.allows(&task("package", &["db1"])));
        let target = Target::Nodes(vec!["web1".into()]);
        assert!(!package.allows(&run("production", &target, &["web1"])));
        let puppet_runs = Permission::Run {
            environments: vec![],
            nodes: vec![],
            applications: vec![],
        };
        assert!(!puppet_runs.allows(&task("package", &["web1"])));
        assert!(!Permission::View.allows(&task("package", &["web1"])));
        assert!(Permission::Admin.allows(&task("package", &["web1"])));
        let staging = Permission::RunTask {
            environments: vec!["staging".into()],
            nodes: vec![],
            tasks: vec![],
        };
        assert!(!staging.allows(&task("package", &["web1"])));
    }

    #[test]
    fn a_viewer_cannot_run_and_an_admin_can_do_everything() {
        let target = Target::Nodes(vec!["web1".into()]);
        assert!(!Permission::View.allows(&run("production", &target, &["web1"])));
        assert!(Permission::View.allows(&Action::View));
        assert!(Permission::Admin.allows(&run("production", &target, &["web1"])));
        assert!(Permission::Admin.allows(&Action::Admin));
    }
}
