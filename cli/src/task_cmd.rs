//! `puppet-task` (and `porch task`): run a task on nodes and follow it, or show tasks —
//! with PE's output: "Started on X ...", each node's result, "Job completed. k/n nodes
//! succeeded.", and exit codes as `puppet-job`'s.

use crate::client::{Client, connect, report};
use crate::config::{GlobalArgs, Settings};
use crate::exit_code;
use crate::job_cmd::{Format, parse_nodes, table};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Run a task on nodes: `puppet-task run package action=status name=openssl --nodes web1`.
    Run(TaskRunArgs),
    /// List the environment's tasks, or show one task's parameters and usage.
    Show {
        task: Option<String>,
        #[arg(long, short = 'e')]
        environment: Option<String>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
}

#[derive(Args, Debug, Clone)]
pub struct TaskRunArgs {
    /// The task: `module` (its init task) or `module::task`.
    pub task: String,
    /// Parameters as `name=value` (integers, decimals, true/false are typed; anything else
    /// is a string). For arrays and hashes use --params.
    pub parameters: Vec<String>,
    /// All parameters as a JSON object, or @file holding one (not with name=value pairs).
    #[arg(long)]
    pub params: Option<String>,
    /// Comma-separated certnames, or @file with one per line.
    #[arg(long, short = 'n', group = "target")]
    pub nodes: Option<String>,
    /// A PQL query (porch without PuppetDB: nodes by certname), or @file.
    #[arg(long, short = 'q', group = "target")]
    pub query: Option<String>,
    #[arg(long, short = 'e')]
    pub environment: Option<String>,
    #[arg(long)]
    pub noop: bool,
    #[arg(long)]
    pub description: Option<String>,
    /// Longest the task may run on each node, in seconds.
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Return once the job id is known.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub schedule: crate::schedule_cmd::ScheduleArgs,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `name=value` as PE's CLI types it: integer, decimal, boolean, else string.
fn inline_value(text: &str) -> Value {
    if let Ok(n) = text.parse::<i64>() {
        return json!(n);
    }
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
        && text.contains('.')
    {
        return json!(f);
    }
    match text {
        "true" => json!(true),
        "false" => json!(false),
        _ => json!(text),
    }
}

/// The task's parameters from `name=value` pairs or `--params` (one style, not both).
pub fn task_params(args: &TaskRunArgs) -> Result<Value, String> {
    if let Some(params) = &args.params {
        if !args.parameters.is_empty() {
            return Err("give parameters as name=value pairs or with --params, not both".into());
        }
        let text = match params.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("--params: cannot read {path}: {e}"))?,
            None => params.clone(),
        };
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("--params: not JSON: {e}"))?;
        if !value.is_object() {
            return Err("--params must be a JSON object".into());
        }
        return Ok(value);
    }
    let mut params = Map::new();
    for pair in &args.parameters {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(format!("{pair:?}: parameters are name=value"));
        };
        if name.is_empty() {
            return Err(format!("{pair:?}: the parameter has no name"));
        }
        if params
            .insert(name.to_string(), inline_value(value))
            .is_some()
        {
            return Err(format!("parameter {name:?} given twice"));
        }
    }
    Ok(Value::Object(params))
}

/// The body of `POST /command/task`.
pub fn task_body(args: &TaskRunArgs, settings: &Settings) -> Result<Value, String> {
    let scope = match (&args.nodes, &args.query) {
        (Some(nodes), None) => json!({"nodes": parse_nodes(nodes)?}),
        (None, Some(query)) => {
            let text = match query.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| format!("--query: cannot read {path}: {e}"))?,
                None => query.clone(),
            };
            json!({"query": text.trim()})
        }
        _ => return Err("give a target: --nodes or --query".into()),
    };
    let environment = args
        .environment
        .clone()
        .or_else(|| settings.environment.clone())
        .unwrap_or_else(|| "production".into());
    let mut body = json!({
        "environment": environment,
        "task": args.task,
        "params": task_params(args)?,
        "scope": scope,
        "noop": args.noop,
    });
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    if let Some(t) = args.timeout {
        body["timeout"] = json!(t);
    }
    Ok(body)
}

pub async fn run_task(command: TaskCommand, global: &GlobalArgs) -> ExitCode {
    let (settings, client) = match connect(global) {
        Ok(connected) => connected,
        Err(status) => return status,
    };
    match command {
        TaskCommand::Run(args) => run(&client, &settings, &args).await,
        TaskCommand::Show {
            task,
            environment,
            format,
        } => {
            let environment = environment
                .or_else(|| settings.environment.clone())
                .unwrap_or_else(|| "production".into());
            match task {
                None => list(&client, &environment, format).await,
                Some(task) => show(&client, &task, &environment, format).await,
            }
        }
    }
}

async fn run(client: &Client, settings: &Settings, args: &TaskRunArgs) -> ExitCode {
    let body = match task_body(args, settings) {
        Ok(body) => body,
        Err(e) => return exit_code::usage(e),
    };
    if let Some(code) = args
        .schedule
        .create_if_asked(client, "task", &body, args.format)
        .await
    {
        return code;
    }
    let human = args.format == Format::Human;
    if human {
        println!("Starting job ...");
    }
    let reply = tokio::select! {
        reply = client.post("/command/task", &body) => reply,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted before the job was created");
            return ExitCode::from(exit_code::INTERRUPTED);
        }
    };
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => return report(e),
    };
    for warning in reply["job"]["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", warning.as_str().unwrap_or_default());
    }
    let job = reply["job"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if args.no_wait {
        if human {
            println!("New job ID: {job}");
        } else {
            crate::client::print_json(&reply);
        }
        return ExitCode::SUCCESS;
    }
    follow(client, &job, human).await
}

/// One node's task result, as PE's CLI prints it.
pub fn render_result(result: &Value) -> String {
    let mut out = String::new();
    if let Some(error) = result.get("_error") {
        let msg = error["msg"].as_str().unwrap_or("the task failed");
        out.push_str(&format!("  Error: {msg}\n"));
    }
    if let Some(output) = result.get("_output").and_then(Value::as_str) {
        out.push_str("  STDOUT:\n");
        for line in output.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    } else if let Some(object) = result.as_object() {
        let rest: Map<String, Value> = object
            .iter()
            .filter(|(k, _)| k.as_str() != "_error")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !rest.is_empty() {
            let pretty = serde_json::to_string_pretty(&rest).unwrap_or_default();
            for line in pretty.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

async fn follow(client: &Client, job: &str, human: bool) -> ExitCode {
    let started = Instant::now();
    if human {
        println!("New job ID: {job}");
        if let Ok(detail) = client.get(&format!("/jobs/{job}")).await {
            println!("Nodes: {}\n", detail["node_count"]);
        }
    }
    let mut next_event = 0u64;
    loop {
        // The job's state first, then its events: every event of a job seen ended is in the
        // events read after it, so the last nodes' results are printed before the summary.
        let detail = match client.get(&format!("/jobs/{job}")).await {
            Ok(detail) => Some(detail),
            Err(e) if !e.is_transient() => return report(e),
            Err(e) => {
                eprintln!("warning: {e}; retrying");
                None
            }
        };
        match client
            .get(&format!("/jobs/{job}/events?start={next_event}"))
            .await
        {
            Ok(events) => {
                let items = events["items"].as_array().cloned().unwrap_or_default();
                let ended = items.iter().any(|e| {
                    matches!(
                        e["type"].as_str(),
                        Some("node_finished" | "node_failed" | "node_errored")
                    )
                });
                let nodes = if ended && human {
                    client.get(&format!("/jobs/{job}/nodes")).await.ok()
                } else {
                    None
                };
                for event in &items {
                    if let Some(id) = event["id"].as_str().and_then(|s| s.parse::<u64>().ok()) {
                        next_event = next_event.max(id + 1);
                    }
                    if human {
                        print_event(event, nodes.as_ref());
                    }
                }
            }
            Err(e) if !e.is_transient() => return report(e),
            Err(e) => {
                eprintln!("warning: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        }
        if let Some(detail) = detail
            .filter(|d| matches!(d["state"].as_str(), Some("finished" | "stopped" | "failed")))
        {
            return summarize(client, job, &detail, started.elapsed(), human).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_event(event: &Value, nodes: Option<&Value>) {
    let node = event["details"]["node"].as_str().unwrap_or_default();
    let result = || {
        nodes
            .and_then(|n| n["items"].as_array())
            .and_then(|items| items.iter().find(|i| i["name"] == node))
            .map(|i| i["result"].clone())
            .unwrap_or(Value::Null)
    };
    match event["type"].as_str() {
        Some("node_running") => println!("Started on {node} ..."),
        Some("node_finished") => {
            println!("Finished on node {node}");
            print!("{}", render_result(&result()));
        }
        Some("node_failed" | "node_errored") => {
            println!("Failed on node {node}");
            print!("{}", render_result(&result()));
        }
        Some("node_skipped") => println!("Skipped on node {node}"),
        _ => {}
    }
}

async fn summarize(
    client: &Client,
    job: &str,
    detail: &Value,
    elapsed: Duration,
    human: bool,
) -> ExitCode {
    let counts = &detail["node_states"];
    let count = |k: &str| counts[k].as_u64().unwrap_or(0);
    let total = detail["node_count"].as_u64().unwrap_or(0);
    if human {
        println!(
            "\nJob completed. {}/{total} nodes succeeded.\nDuration: {:.1} sec",
            count("finished"),
            elapsed.as_secs_f64()
        );
    } else {
        let nodes = client
            .get(&format!("/jobs/{job}/nodes"))
            .await
            .unwrap_or(Value::Null);
        let out = json!({"job": detail, "nodes": nodes["items"]});
        crate::client::print_json(&out);
    }
    let problems = count("failed") + count("errored") + count("skipped");
    let code = match detail["state"].as_str() {
        Some("stopped") => exit_code::STOPPED,
        Some("failed") => exit_code::JOB_FAILED,
        _ if problems > 0 => exit_code::NODE_FAILURES,
        _ => exit_code::SUCCESS,
    };
    ExitCode::from(code)
}

async fn list(client: &Client, environment: &str, format: Format) -> ExitCode {
    let tasks = match client
        .get(&format!("/tasks?environment={environment}"))
        .await
    {
        Ok(tasks) => tasks,
        Err(e) => return report(e),
    };
    if format == Format::Json {
        crate::client::print_json(&tasks);
        return ExitCode::SUCCESS;
    }
    let rows: Vec<Vec<String>> = tasks["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(|n| vec![n.to_string()]))
        .collect();
    println!("Tasks in environment {environment}:\n");
    print!("{}", table(&["TASK"], &rows));
    println!("\nUse 'puppet task show <task>' to see a task's parameters.");
    ExitCode::SUCCESS
}

/// `puppet task show NAME`: description, usage line, parameters with their types.
pub fn render_task(task: &Value) -> String {
    let name = task["name"].as_str().unwrap_or_default();
    let metadata = &task["metadata"];
    let mut out = match metadata["description"].as_str() {
        Some(description) => format!("{name} - {description}\n"),
        None => format!("{name}\n"),
    };
    let parameters = metadata["parameters"].as_object();
    let usage: Vec<String> = parameters
        .into_iter()
        .flatten()
        .map(|(p, _)| format!("{p}=<value>"))
        .collect();
    out.push_str(&format!(
        "\nUSAGE:\n$ puppet task run {name}{}{} <--nodes, --query>\n",
        if usage.is_empty() { "" } else { " " },
        usage.join(" ")
    ));
    if metadata["supports_noop"] == json!(true) {
        out.push_str("  (supports --noop)\n");
    }
    if let Some(parameters) = parameters {
        out.push_str("\nPARAMETERS:\n");
        for (p, spec) in parameters {
            let kind = spec["type"].as_str().unwrap_or("Any");
            out.push_str(&format!("- {p} : {kind}\n"));
            if let Some(d) = spec["description"].as_str() {
                out.push_str(&format!("    {d}\n"));
            }
        }
    }
    out
}

async fn show(client: &Client, task: &str, environment: &str, format: Format) -> ExitCode {
    let path = match task.split_once("::") {
        Some((module, short)) => format!("{module}/{short}"),
        None => format!("{task}/init"),
    };
    let shown = match client
        .get(&format!("/tasks/{path}?environment={environment}"))
        .await
    {
        Ok(shown) => shown,
        Err(e) => return report(e),
    };
    if format == Format::Json {
        crate::client::print_json(&shown);
    } else {
        print!("{}", render_task(&shown));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(parameters: &[&str], params: Option<&str>) -> TaskRunArgs {
        TaskRunArgs {
            task: "package".into(),
            parameters: parameters.iter().map(|s| s.to_string()).collect(),
            params: params.map(str::to_string),
            nodes: Some("web1,web2".into()),
            query: None,
            environment: None,
            noop: false,
            description: None,
            timeout: None,
            no_wait: false,
            schedule: Default::default(),
            format: Format::Human,
        }
    }

    #[test]
    fn inline_parameters_are_typed_as_pe_types_them() {
        let params = task_params(&args(
            &[
                "name=openssl",
                "count=3",
                "ratio=0.5",
                "force=true",
                "v=1.2.3",
            ],
            None,
        ))
        .unwrap();
        assert_eq!(
            params,
            json!({"name": "openssl", "count": 3, "ratio": 0.5, "force": true, "v": "1.2.3"})
        );
        assert_eq!(
            task_params(&args(&["a=x=y"], None)).unwrap(),
            json!({"a": "x=y"})
        );
    }

    #[test]
    fn bad_parameters_are_usage_errors() {
        assert!(
            task_params(&args(&["novalue"], None))
                .unwrap_err()
                .contains("name=value")
        );
        assert!(
            task_params(&args(&["=x"], None))
                .unwrap_err()
                .contains("no name")
        );
        assert!(
            task_params(&args(&["a=1", "a=2"], None))
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            task_params(&args(&["a=1"], Some("{}")))
                .unwrap_err()
                .contains("not both")
        );
        assert!(
            task_params(&args(&[], Some("[1]")))
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(
            task_params(&args(&[], Some("{")))
                .unwrap_err()
                .contains("not JSON")
        );
        assert_eq!(
            task_params(&args(&[], Some(r#"{"tags": ["a"]}"#))).unwrap(),
            json!({"tags": ["a"]})
        );
    }

    #[test]
    fn the_body_names_task_scope_and_environment() {
        let body = task_body(&args(&["action=status"], None), &Settings::default()).unwrap();
        assert_eq!(
            body,
            json!({"environment": "production", "task": "package", "params": {"action": "status"},
                "scope": {"nodes": ["web1", "web2"]}, "noop": false})
        );
        let mut no_target = args(&[], None);
        no_target.nodes = None;
        assert!(
            task_body(&no_target, &Settings::default())
                .unwrap_err()
                .contains("target")
        );
    }

    #[test]
    fn results_print_output_errors_and_structured_values() {
        assert_eq!(
            render_result(&json!({"_output": "a\nb\n"})),
            "  STDOUT:\n    a\n    b\n"
        );
        let failed = render_result(
            &json!({"_error": {"msg": "The task errored with a code 3"}, "_output": "x"}),
        );
        assert!(
            failed.starts_with("  Error: The task errored with a code 3\n"),
            "{failed}"
        );
        let structured = render_result(&json!({"status": "installed"}));
        assert!(
            structured.contains("\"status\": \"installed\""),
            "{structured}"
        );
    }

    #[test]
    fn show_prints_usage_and_parameters() {
        let task = json!({"name": "package", "metadata": {"description": "Manage packages",
            "supports_noop": true,
            "parameters": {"action": {"type": "Enum[status]", "description": "What to do"}}}});
        let out = render_task(&task);
        assert!(out.starts_with("package - Manage packages\n"), "{out}");
        assert!(
            out.contains("$ puppet task run package action=<value> <--nodes, --query>"),
            "{out}"
        );
        assert!(
            out.contains("- action : Enum[status]\n    What to do\n"),
            "{out}"
        );
    }
}
