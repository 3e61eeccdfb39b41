//! `porch rbac user|role ...`: manage RBAC users and roles through `/rbac-api/v1`.

use crate::access_cmd::read_password;
use crate::client::{Client, ClientError, connect, percent_encode, print_json};
use crate::config::GlobalArgs;
use crate::exit_code;
use crate::job_cmd::{Format, table};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum RbacCommand {
    /// Users: add, remove, list, password, roles.
    #[command(subcommand)]
    User(UserCommand),
    /// Roles: add, remove, list.
    #[command(subcommand)]
    Role(RoleCommand),
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user; the password is asked (twice) or read from standard input.
    Add {
        login: String,
        /// A role to give (repeat, or comma-separated).
        #[arg(long, required = true, value_delimiter = ',')]
        role: Vec<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password as one line of standard input, even from a terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user and revoke its tokens.
    Remove { login: String },
    /// List the users.
    List {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Set a user's password.
    Password {
        login: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Replace a user's roles.
    Roles {
        login: String,
        #[arg(long, required = true, value_delimiter = ',')]
        role: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Permission {
    /// See jobs, applications, the cluster.
    View,
    /// Run and stop jobs (restricted by --environment, --nodes, --application).
    Run,
    /// Run and stop tasks (restricted by --environment, --nodes, --task).
    RunTask,
    /// Everything, including users, roles and cluster membership.
    Admin,
}

#[derive(Args, Debug, Clone)]
pub struct RoleAddArgs {
    pub name: String,
    /// A permission the role grants (repeat for several).
    #[arg(long, required = true, value_enum)]
    pub permission: Vec<Permission>,
    /// Environments `run` is limited to (repeat; default: all).
    #[arg(long)]
    pub environment: Vec<String>,
    /// Node globs `run` is limited to (repeat; default: all).
    #[arg(long)]
    pub nodes: Vec<String>,
    /// Application globs `run` is limited to (repeat; default: all).
    #[arg(long)]
    pub application: Vec<String>,
    /// Task name globs `run-task` is limited to (`package`, `service::*`; repeat; default: all).
    #[arg(long)]
    pub task: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Create a role.
    Add(RoleAddArgs),
    /// Delete a role (built-in roles cannot be deleted).
    Remove { name: String },
    /// List the roles and their permissions.
    List {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
}

/// The body of `POST /rbac-api/v1/roles`. Restrictions belong to `run`: given without it they
/// are a usage error; absent, `run` is unrestricted.
pub fn role_body(args: &RoleAddArgs) -> Result<Value, String> {
    let runs = args.permission.contains(&Permission::Run);
    let runs_tasks = args.permission.contains(&Permission::RunTask);
    if !(args.environment.is_empty() && args.nodes.is_empty()) && !runs && !runs_tasks {
        return Err(
            "--environment and --nodes restrict --permission run or run-task, neither of which is given"
                .into(),
        );
    }
    if !args.application.is_empty() && !runs {
        return Err("--application restricts --permission run, which is not given".into());
    }
    if !args.task.is_empty() && !runs_tasks {
        return Err("--task restricts --permission run-task, which is not given".into());
    }
    let restricted = |name: &str, extra: (&str, &Vec<String>)| {
        let mut run = json!({"permission": name});
        for (key, values) in [
            ("environments", &args.environment),
            ("nodes", &args.nodes),
            extra,
        ] {
            if !values.is_empty() {
                run[key] = json!(values);
            }
        }
        run
    };
    let mut permissions = Vec::new();
    for permission in &args.permission {
        let entry = match permission {
            Permission::View => json!({"permission": "view"}),
            Permission::Admin => json!({"permission": "admin"}),
            Permission::Run => restricted("run", ("applications", &args.application)),
            Permission::RunTask => restricted("run_task", ("tasks", &args.task)),
        };
        if !permissions.contains(&entry) {
            permissions.push(entry);
        }
    }
    let mut body = json!({"name": args.name, "permissions": permissions});
    if let Some(description) = &args.description {
        body["description"] = json!(description);
    }
    Ok(body)
}

/// One permission in words: `view`, `run (environments: production; nodes: web*)`.
pub fn describe_permission(permission: &Value) -> String {
    let name = permission["permission"].as_str().unwrap_or("?");
    let limits: Vec<String> = ["environments", "nodes", "applications", "tasks"]
        .iter()
        .filter_map(|key| {
            let values: Vec<&str> = permission[*key]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            (!values.is_empty()).then(|| format!("{key}: {}", values.join(",")))
        })
        .collect();
    if limits.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({})", limits.join("; "))
    }
}

fn new_password(login: &str, from_stdin: bool) -> Result<String, String> {
    let password = read_password(&format!("New password for {login}: "), from_stdin)?;
    if !from_stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let again = read_password("Again: ", false)?;
        if again != password {
            return Err("the passwords differ".into());
        }
    }
    Ok(password)
}

fn strings(value: &Value) -> String {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn created(value: &Value) -> String {
    value
        .as_u64()
        .map(|ms| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        })
        .unwrap_or_default()
}

pub async fn run_rbac(command: RbacCommand, global: &GlobalArgs) -> ExitCode {
    let (_, client) = match connect(global) {
        Ok(connected) => connected,
        Err(status) => return status,
    };
    let result = match command {
        RbacCommand::User(command) => user(&client, command).await,
        RbacCommand::Role(command) => role(&client, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(exit_code::USAGE)
        }
        Err(Failure::Client(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

enum Failure {
    Usage(String),
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::Client(e)
    }
}

async fn user(client: &Client, command: UserCommand) -> Result<(), Failure> {
    match command {
        UserCommand::Add {
            login,
            role,
            display_name,
            password_stdin,
        } => {
            let password = new_password(&login, password_stdin).map_err(Failure::Usage)?;
            let mut body = json!({"login": login, "password": password, "roles": role});
            if let Some(name) = display_name {
                body["display_name"] = json!(name);
            }
            client.rbac(Method::POST, "/v1/users", Some(&body)).await?;
            println!("user {login} added (roles: {})", role.join(", "));
        }
        UserCommand::Remove { login } => {
            let path = format!("/v1/users/{}", percent_encode(&login));
            client.rbac(Method::DELETE, &path, None).await?;
            println!("user {login} removed and its tokens revoked");
        }
        UserCommand::Password {
            login,
            password_stdin,
        } => {
            let password = new_password(&login, password_stdin).map_err(Failure::Usage)?;
            let path = format!("/v1/users/{}", percent_encode(&login));
            client
                .rbac(Method::PUT, &path, Some(&json!({"password": password})))
                .await?;
            println!("password of {login} changed");
        }
        UserCommand::Roles { login, role } => {
            let path = format!("/v1/users/{}", percent_encode(&login));
            client
                .rbac(Method::PUT, &path, Some(&json!({"roles": role})))
                .await?;
            println!("roles of {login}: {}", role.join(", "));
        }
        UserCommand::List { format } => {
            let users = client.rbac(Method::GET, "/v1/users", None).await?;
            if format == Format::Json {
                print_json(&users);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = users
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| {
                    vec![
                        u["login"].as_str().unwrap_or("").to_string(),
                        u["display_name"].as_str().unwrap_or("").to_string(),
                        strings(&u["roles"]),
                        if u["is_revoked"].as_bool() == Some(true) {
                            "revoked".into()
                        } else {
                            "active".into()
                        },
                        created(&u["created_ms"]),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["LOGIN", "DISPLAY NAME", "ROLES", "STATE", "CREATED"],
                    &rows
                )
            );
        }
    }
    Ok(())
}

async fn role(client: &Client, command: RoleCommand) -> Result<(), Failure> {
    match command {
        RoleCommand::Add(args) => {
            let body = role_body(&args).map_err(Failure::Usage)?;
            client.rbac(Method::POST, "/v1/roles", Some(&body)).await?;
            let permissions: Vec<String> = body["permissions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(describe_permission)
                .collect();
            println!("role {} added: {}", args.name, permissions.join(", "));
        }
        RoleCommand::Remove { name } => {
            let path = format!("/v1/roles/{}", percent_encode(&name));
            client.rbac(Method::DELETE, &path, None).await?;
            println!("role {name} removed");
        }
        RoleCommand::List { format } => {
            let roles = client.rbac(Method::GET, "/v1/roles", None).await?;
            if format == Format::Json {
                print_json(&roles);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = roles
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let permissions: Vec<String> = r["permissions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(describe_permission)
                        .collect();
                    vec![
                        r["name"].as_str().unwrap_or("").to_string(),
                        if r["builtin"].as_bool() == Some(true) {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        permissions.join(", "),
                        r["description"].as_str().unwrap_or("").to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["NAME", "BUILT-IN", "PERMISSIONS", "DESCRIPTION"], &rows)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(permission: Vec<Permission>) -> RoleAddArgs {
        RoleAddArgs {
            name: "deployer".into(),
            permission,
            environment: Vec::new(),
            nodes: Vec::new(),
            application: Vec::new(),
            task: Vec::new(),
            description: None,
        }
    }

    #[test]
    fn role_body_puts_restrictions_on_run_only() {
        let mut a = args(vec![Permission::View, Permission::Run]);
        a.environment = vec!["production".into()];
        a.nodes = vec!["web*".into()];
        a.description = Some("web deploys".into());
        assert_eq!(
            role_body(&a).unwrap(),
            json!({"name": "deployer", "description": "web deploys", "permissions": [
                {"permission": "view"},
                {"permission": "run", "environments": ["production"], "nodes": ["web*"]},
            ]})
        );
        assert_eq!(
            role_body(&args(vec![Permission::Run, Permission::Run])).unwrap()["permissions"],
            json!([{"permission": "run"}]),
            "unrestricted run, once"
        );
    }

    #[test]
    fn restrictions_without_run_are_a_usage_error() {
        let mut a = args(vec![Permission::View]);
        a.application = vec!["Lamp*".into()];
        assert!(role_body(&a).unwrap_err().contains("--permission run"));
        let mut t = args(vec![Permission::Run]);
        t.task = vec!["package".into()];
        assert!(role_body(&t).unwrap_err().contains("run-task"));
    }

    #[test]
    fn a_task_role_is_restricted_by_task_names() {
        let mut a = args(vec![Permission::RunTask]);
        a.task = vec!["package".into(), "service::*".into()];
        a.nodes = vec!["web*".into()];
        assert_eq!(
            role_body(&a).unwrap()["permissions"],
            json!([{"permission": "run_task", "nodes": ["web*"], "tasks": ["package", "service::*"]}])
        );
    }

    #[test]
    fn permissions_read_as_words() {
        assert_eq!(describe_permission(&json!({"permission": "view"})), "view");
        assert_eq!(
            describe_permission(
                &json!({"permission": "run", "environments": ["production"], "nodes": ["a*", "b"]})
            ),
            "run (environments: production; nodes: a*,b)"
        );
    }
}
