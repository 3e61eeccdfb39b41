//! `puppet-job` (and `porch job`): run, plan, show, stop.

use crate::client::{Client, connect, report};
use crate::config::{GlobalArgs, Settings};
use crate::exit_code;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Create a job and run Puppet on its targets, in dependency order; follows it live.
    Run(RunArgs),
    /// Show the plan a run would follow, without creating a job.
    Plan(RunArgs),
    /// List the newest 50 jobs, or show one job.
    Show {
        id: Option<String>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Stop a job: runs under way finish, nothing new starts.
    Stop {
        id: String,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Comma-separated certnames, or @file with one per line.
    #[arg(long, short = 'n', group = "target")]
    pub nodes: Option<String>,
    /// A PQL query (porch: nodes/inventory by certname), or @file.
    #[arg(long, short = 'q', group = "target")]
    pub query: Option<String>,
    /// An application (`Lamp`) or instance (`Lamp[prod]`).
    #[arg(long, short = 'a', group = "target")]
    pub application: Option<String>,
    #[arg(long, short = 'e')]
    pub environment: Option<String>,
    #[arg(long, conflicts_with = "no_noop")]
    pub noop: bool,
    #[arg(long)]
    pub no_noop: bool,
    /// Most nodes of this job running at once.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub no_enforce_environment: bool,
    /// Return once the job id is known.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub schedule: crate::schedule_cmd::ScheduleArgs,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

fn read_list(value: &str, flag: &str) -> Result<String, String> {
    match value.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("{flag}: cannot read {path}: {e}"))
        }
        None => Ok(value.to_string()),
    }
}

/// Parses `--nodes`: commas (or lines, from @file); blank lines and `#` comments ignored.
pub fn parse_nodes(value: &str) -> Result<Vec<String>, String> {
    let text = read_list(value, "--nodes")?;
    let mut nodes = Vec::new();
    for item in text.lines().flat_map(|l| l.split(',')) {
        let item = item.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if item.chars().any(|c| c.is_whitespace() || c.is_control()) || item.len() > 253 {
            return Err(format!("--nodes: {item:?} is not a valid certname"));
        }
        nodes.push(item.to_string());
    }
    if nodes.is_empty() {
        return Err("--nodes: no certnames given".into());
    }
    Ok(nodes)
}

pub fn deploy_body(args: &RunArgs, settings: &Settings) -> Result<Value, String> {
    let scope = match (&args.nodes, &args.query, &args.application) {
        (Some(nodes), None, None) => json!({"nodes": parse_nodes(nodes)?}),
        (None, Some(query), None) => json!({"query": read_list(query, "--query")?.trim()}),
        (None, None, Some(app)) => json!({"application": app}),
        _ => return Err("give exactly one target: --nodes, --query or --application".into()),
    };
    let environment = args
        .environment
        .clone()
        .or_else(|| settings.environment.clone())
        .unwrap_or_else(|| "production".into());
    let mut body = json!({
        "environment": environment,
        "scope": scope,
        // orchestrator.conf's "noop" is the default when neither flag is given.
        "noop": args.noop || (!args.no_noop && settings.noop == Some(true)),
        "no_noop": args.no_noop,
        "enforce_environment": !args.no_enforce_environment,
    });
    if let Some(c) = args.concurrency {
        body["concurrency"] = json!(c);
    }
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    Ok(body)
}

pub async fn run_job(command: JobCommand, global: &GlobalArgs) -> ExitCode {
    let (settings, client) = match connect(global) {
        Ok(connected) => connected,
        Err(status) => return status,
    };
    match command {
        JobCommand::Run(args) => run(&client, &settings, &args).await,
        JobCommand::Plan(args) => plan(&client, &settings, &args).await,
        JobCommand::Show { id: None, format } => list(&client, format).await,
        JobCommand::Show {
            id: Some(id),
            format,
        } => show(&client, &id, format).await,
        JobCommand::Stop { id, format } => stop(&client, &id, format).await,
    }
}

async fn plan(client: &Client, settings: &Settings, args: &RunArgs) -> ExitCode {
    let body = match deploy_body(args, settings) {
        Ok(b) => b,
        Err(e) => return exit_code::usage(e),
    };
    match client.post("/command/plan", &body).await {
        Ok(plan) if args.format == Format::Json => {
            crate::client::print_json(&plan);
            ExitCode::SUCCESS
        }
        Ok(plan) => {
            for warning in plan["warnings"].as_array().into_iter().flatten() {
                eprintln!("{}", warning.as_str().unwrap_or_default());
            }
            print!("{}", plan["rendered"].as_str().unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => report(e),
    }
}

async fn run(client: &Client, settings: &Settings, args: &RunArgs) -> ExitCode {
    let body = match deploy_body(args, settings) {
        Ok(b) => b,
        Err(e) => return exit_code::usage(e),
    };
    if let Some(code) = args
        .schedule
        .create_if_asked(client, "deploy", &body, args.format)
        .await
    {
        return code;
    }
    let submitted = tokio::select! {
        reply = client.post("/command/deploy", &body) => reply,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted before the job was created");
            return ExitCode::from(exit_code::INTERRUPTED);
        }
    };
    let reply = match submitted {
        Ok(reply) => reply,
        Err(e) => return report(e),
    };
    let job = reply["job"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for warning in reply["job"]["warnings"].as_array().into_iter().flatten() {
        eprintln!("{}", warning.as_str().unwrap_or_default());
    }
    if args.no_wait {
        if args.format == Format::Json {
            crate::client::print_json(&reply);
        } else {
            println!("New job id created: {job}");
        }
        return ExitCode::SUCCESS;
    }
    if args.format == Format::Human {
        println!("New job id created: {job}");
    }
    follow(client, &job, args.format).await
}

/// Follows job `job` through its events until it ends; Ctrl+C stops the job.
async fn follow(client: &Client, job: &str, format: Format) -> ExitCode {
    let started = Instant::now();
    let mut next_event = 0u64;
    let mut stop_requested = false;
    let human = format == Format::Human;
    loop {
        let events = client
            .get(&format!("/jobs/{job}/events?start={next_event}"))
            .await;
        match events {
            Ok(events) => {
                let items = events["items"].as_array().cloned().unwrap_or_default();
                let finished_nodes: Vec<String> = items
                    .iter()
                    .filter(|e| matches!(e["type"].as_str(), Some("node_finished" | "node_failed")))
                    .filter_map(|e| e["details"]["node"].as_str().map(str::to_string))
                    .collect();
                let results = if finished_nodes.is_empty() || !human {
                    Value::Null
                } else {
                    client
                        .get(&format!("/jobs/{job}/nodes"))
                        .await
                        .unwrap_or(Value::Null)
                };
                for event in &items {
                    if let Some(id) = event["id"].as_str().and_then(|s| s.parse::<u64>().ok()) {
                        next_event = next_event.max(id + 1);
                    }
                    if human {
                        print_event(event, &results);
                    }
                }
            }
            Err(e) if !e.is_transient() => return report(e),
            Err(e) => eprintln!("warning: {e}; retrying"),
        }
        match client.get(&format!("/jobs/{job}")).await {
            Ok(detail) => {
                let state = detail["state"].as_str().unwrap_or("");
                if matches!(state, "finished" | "stopped" | "failed") {
                    // Drain events that landed with the final state.
                    if let Ok(events) = client
                        .get(&format!("/jobs/{job}/events?start={next_event}"))
                        .await
                    {
                        for event in events["items"].as_array().into_iter().flatten() {
                            if human {
                                print_event(event, &Value::Null);
                            }
                        }
                    }
                    return summarize(&detail, started.elapsed(), format);
                }
            }
            Err(e) if !e.is_transient() => return report(e),
            Err(e) => eprintln!("warning: {e}; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c(), if !stop_requested => {
                if confirm_stop(job).await {
                    stop_requested = true;
                    match client.post("/command/stop", &json!({"job": job})).await {
                        Ok(_) => eprintln!("Stopping job {job}: runs under way finish, nothing new starts."),
                        Err(e) => eprintln!("error: could not stop job {job}: {e}"),
                    }
                }
            }
        }
    }
}

async fn confirm_stop(job: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return true;
    }
    eprint!("\nStop job {job}? [y/N] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        line
    })
    .await
    .unwrap_or_default();
    matches!(answer.trim(), "y" | "Y" | "yes")
}

fn print_event(event: &Value, nodes: &Value) {
    let message = event["message"].as_str().unwrap_or_default();
    match event["type"].as_str() {
        Some("node_finished" | "node_failed") => {
            println!("{message}");
            let node = event["details"]["node"].as_str().unwrap_or_default();
            let item = nodes["items"]
                .as_array()
                .and_then(|items| items.iter().find(|i| i["name"] == node));
            if let Some(result) = item.map(|i| &i["result"]).filter(|r| !r.is_null()) {
                let m = &result["metrics"];
                let count = |k: &str| m[k].as_i64().unwrap_or(0);
                if m.as_object().is_some_and(|o| !o.is_empty()) {
                    println!(
                        "  Resource events: {} changed, {} failed, {} skipped, {} noop (of {} resources)",
                        count("changed"),
                        count("failed"),
                        count("skipped"),
                        count("noop"),
                        count("total")
                    );
                }
                if let Some(v) = result["configuration_version"].as_str() {
                    println!("  Configuration version: {v}");
                }
                if let Some(t) = item.and_then(|i| i["transaction_uuid"].as_str()) {
                    println!("  Transaction: {t}");
                }
            }
        }
        Some("job_finished" | "job_aborted") => {}
        _ => println!("{message}"),
    }
}

fn summarize(job: &Value, elapsed: Duration, format: Format) -> ExitCode {
    let state = job["state"].as_str().unwrap_or("");
    let counts = &job["node_states"];
    let count = |k: &str| counts[k].as_u64().unwrap_or(0);
    if format == Format::Json {
        crate::client::print_json(&job);
    } else {
        println!();
        println!(
            "Job {} {state} in {:.1} s: {} finished, {} failed, {} errored, {} skipped",
            job["name"].as_str().unwrap_or("?"),
            elapsed.as_secs_f64(),
            count("finished"),
            count("failed"),
            count("errored"),
            count("skipped")
        );
    }
    let problems = count("failed") + count("errored") + count("skipped");
    let code = match state {
        "stopped" => exit_code::STOPPED,
        "failed" => exit_code::JOB_FAILED,
        _ if problems > 0 => exit_code::NODE_FAILURES,
        _ => exit_code::SUCCESS,
    };
    if format == Format::Human {
        match code {
            exit_code::SUCCESS => println!("Success!"),
            exit_code::NODE_FAILURES => println!("Job completed with failures."),
            _ => {}
        }
    }
    ExitCode::from(code)
}

async fn list(client: &Client, format: Format) -> ExitCode {
    let jobs = match client
        .get("/jobs?order_by=timestamp&order=desc&limit=50")
        .await
    {
        Ok(jobs) => jobs,
        Err(e) => return report(e),
    };
    if format == Format::Json {
        crate::client::print_json(&jobs);
        return ExitCode::SUCCESS;
    }
    let rows: Vec<Vec<String>> = jobs["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| {
            vec![
                j["name"].as_str().unwrap_or("").to_string(),
                j["state"].as_str().unwrap_or("").to_string(),
                j["timestamp"].as_str().unwrap_or("").to_string(),
                j["owner"]["login"].as_str().unwrap_or("").to_string(),
                j["environment"]["name"].as_str().unwrap_or("").to_string(),
                j["options"]["target"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["ID", "STATUS", "TIMESTAMP", "USER", "ENVIRONMENT", "TARGET"],
            &rows
        )
    );
    ExitCode::SUCCESS
}

/// Columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

async fn show(client: &Client, id: &str, format: Format) -> ExitCode {
    let job = match client.get(&format!("/jobs/{id}")).await {
        Ok(job) => job,
        Err(e) => return report(e),
    };
    if format == Format::Json {
        crate::client::print_json(&job);
        return ExitCode::SUCCESS;
    }
    let status = job["status"].as_array().cloned().unwrap_or_default();
    let start = status
        .first()
        .and_then(|s| s["enter_time"].as_str())
        .unwrap_or("");
    let finish = status
        .last()
        .filter(|s| matches!(s["state"].as_str(), Some("finished" | "stopped" | "failed")))
        .and_then(|s| s["enter_time"].as_str())
        .unwrap_or("-");
    let rows = [
        ("Status", job["state"].as_str().unwrap_or("").to_string()),
        ("Type", "puppet run".to_string()),
        (
            "Description",
            job["description"].as_str().unwrap_or("").to_string(),
        ),
        ("Started", start.to_string()),
        ("Finished", finish.to_string()),
        (
            "User",
            job["owner"]["login"].as_str().unwrap_or("").to_string(),
        ),
        (
            "Environment",
            job["environment"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        ),
        (
            "Noop",
            job["options"]["noop"]
                .as_bool()
                .unwrap_or(false)
                .to_string(),
        ),
        (
            "Target",
            job["options"]["target"].as_str().unwrap_or("").to_string(),
        ),
        ("Nodes", job["node_count"].to_string()),
        ("Node states", job["node_states"].to_string()),
        (
            "Schedule",
            match job["scheduled_job"]["name"].as_str() {
                Some(name) => format!(
                    "scheduled job {name}, occurrence {}",
                    job["scheduled_job"]["occurrence"]
                ),
                None => "-".to_string(),
            },
        ),
    ];
    for (label, value) in rows {
        println!("{label:<12} {value}");
    }
    ExitCode::SUCCESS
}

async fn stop(client: &Client, id: &str, format: Format) -> ExitCode {
    match client.post("/command/stop", &json!({"job": id})).await {
        Ok(reply) if format == Format::Json => {
            crate::client::print_json(&reply);
            ExitCode::SUCCESS
        }
        Ok(reply) => {
            println!("Stopping job {id}. Node states: {}", reply["job"]["nodes"]);
            ExitCode::SUCCESS
        }
        Err(e) => report(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_from_flag_or_file() {
        assert_eq!(parse_nodes("a,b, c").unwrap(), vec!["a", "b", "c"]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nodes");
        std::fs::write(&file, "a\n# comment\n\nb\n").unwrap();
        assert_eq!(
            parse_nodes(&format!("@{}", file.display())).unwrap(),
            vec!["a", "b"]
        );
        assert!(
            parse_nodes("a b")
                .unwrap_err()
                .contains("not a valid certname")
        );
        assert!(
            parse_nodes("@/no/such/file")
                .unwrap_err()
                .contains("cannot read")
        );
        assert!(parse_nodes(",,").unwrap_err().contains("no certnames"));
    }

    #[test]
    fn table_aligns_columns() {
        let out = table(
            &["ID", "STATUS"],
            &[
                vec!["10".into(), "running".into()],
                vec!["9".into(), "finished".into()],
            ],
        );
        assert_eq!(out, "ID  STATUS\n10  running\n9   finished\n");
    }
}
