//! Scheduled jobs from the command line: `puppet-job run ... --schedule-at TIME [--every N]`
//! (and `puppet-task run ...` with the same flags) creates one (PE's
//! `POST /scheduled_jobs/environment_jobs`); `porch schedule list|show|delete`.

use crate::client::{Client, connect, report};
use crate::config::GlobalArgs;
use crate::exit_code;
use crate::job_cmd::{Format, table};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// List the scheduled jobs, the next due first.
    List {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Show one scheduled job: its schedule, next and last run, and its recent occurrences.
    Show {
        id: String,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Delete a scheduled job: no further occurrence fires (jobs already running go on).
    Delete { id: String },
}

/// The flags that make `run` create a scheduled job instead of running now.
#[derive(Args, Debug, Clone, Default)]
pub struct ScheduleArgs {
    /// Schedule the job instead of running it now: an ISO-8601 time or +DURATION (`+90s`).
    #[arg(long)]
    pub schedule_at: Option<String>,
    /// With --schedule-at: run it again every SECONDS.
    #[arg(long, requires = "schedule_at", value_parser = clap::value_parser!(u64).range(1..))]
    pub every: Option<u64>,
    /// With --schedule-at: occurrences missed while the cluster had no quorum are skipped
    /// (by default they run once when it is back).
    #[arg(long, requires = "schedule_at")]
    pub skip_missed: bool,
}

impl ScheduleArgs {
    /// With --schedule-at, schedules `input` (the body of the command of `kind`, deploy or
    /// task) and returns the exit code; without it, `None`: run now.
    pub async fn create_if_asked(
        &self,
        client: &Client,
        kind: &str,
        input: &Value,
        format: Format,
    ) -> Option<ExitCode> {
        let at = self.schedule_at.as_ref()?;
        let start = match start_time(at) {
            Ok(start) => start,
            Err(e) => {
                eprintln!("error: {e}");
                return Some(ExitCode::from(exit_code::USAGE));
            }
        };
        let body = schedule_body(kind, input.clone(), &start, self.every, self.skip_missed);
        Some(create(client, &body, format).await)
    }
}

/// `--schedule-at`: an ISO-8601 time (`2026-12-01T02:00:00Z`), or `+DURATION` from now
/// (`+90s`, `+1h 30m`).
pub fn start_time(value: &str) -> Result<String, String> {
    let Some(offset) = value.strip_prefix('+') else {
        return Ok(value.to_string());
    };
    let offset = humantime::parse_duration(offset.trim())
        .map_err(|e| format!("--schedule-at: {value:?} is not +DURATION (e.g. +90s): {e}"))?;
    let at = SystemTime::now() + offset;
    Ok(humantime::format_rfc3339_millis(at).to_string())
}

/// The creation body for `input`, the body of `/command/deploy` or `/command/task`.
pub fn schedule_body(
    kind: &str,
    input: Value,
    start_time: &str,
    every_seconds: Option<u64>,
    skip_missed: bool,
) -> Value {
    let description = input["description"].clone();
    json!({
        "type": kind,
        "input": input,
        "schedule": {
            "start_time": start_time,
            "interval": every_seconds.map(|value| json!({"units": "seconds", "value": value})),
            "missed_occurrences": if skip_missed { "skip" } else { "fire_once" },
        },
        "description": description,
    })
}

/// Creates the schedule and prints its id.
pub async fn create(client: &Client, body: &Value, format: Format) -> ExitCode {
    match client.post("/scheduled_jobs/environment_jobs", body).await {
        Ok(reply) if format == Format::Json => {
            crate::client::print_json(&reply);
            ExitCode::SUCCESS
        }
        Ok(reply) => {
            let every = body["schedule"]["interval"]["value"]
                .as_u64()
                .map(|s| {
                    format!(
                        ", then every {}",
                        humantime::format_duration(Duration::from_secs(s))
                    )
                })
                .unwrap_or_default();
            println!(
                "Scheduled job {} created: first run at {}{every}",
                reply["scheduled_job"]["name"].as_str().unwrap_or("?"),
                body["schedule"]["start_time"].as_str().unwrap_or("?"),
            );
            ExitCode::SUCCESS
        }
        Err(e) => report(e),
    }
}

pub async fn run_schedule(command: ScheduleCommand, global: &GlobalArgs) -> ExitCode {
    let (_, client) = match connect(global) {
        Ok(connected) => connected,
        Err(status) => return status,
    };
    match command {
        ScheduleCommand::List { format } => list(&client, format).await,
        ScheduleCommand::Show { id, format } => show(&client, &id, format).await,
        ScheduleCommand::Delete { id } => {
            let path = format!(
                "/scheduled_jobs/environment_jobs/{}",
                crate::client::percent_encode(&id)
            );
            match client.delete(&path).await {
                Ok(_) => {
                    println!("Scheduled job {id} deleted");
                    ExitCode::SUCCESS
                }
                Err(e) => report(e),
            }
        }
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_string()
}

fn every(schedule: &Value) -> String {
    schedule["schedule"]["interval"]["value"]
        .as_u64()
        .map(|s| humantime::format_duration(Duration::from_secs(s)).to_string())
        .unwrap_or_else(|| "once".into())
}

async fn list(client: &Client, format: Format) -> ExitCode {
    let page = match client.get("/scheduled_jobs/environment_jobs").await {
        Ok(page) => page,
        Err(e) => return report(e),
    };
    if format == Format::Json {
        crate::client::print_json(&page);
        return ExitCode::SUCCESS;
    }
    let rows: Vec<Vec<String>> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                text(&s["name"]),
                text(&s["type"]),
                text(&s["environment"]),
                text(&s["owner"]["login"]),
                every(s),
                text(&s["next_run"]["time"]),
                s["stopped"]["reason"]
                    .as_str()
                    .map(|r| format!("stopped: {r}"))
                    .unwrap_or_else(|| "enabled".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "TYPE",
                "ENVIRONMENT",
                "OWNER",
                "EVERY",
                "NEXT RUN",
                "STATE"
            ],
            &rows
        )
    );
    ExitCode::SUCCESS
}

async fn show(client: &Client, id: &str, format: Format) -> ExitCode {
    let path = format!(
        "/scheduled_jobs/environment_jobs/{}",
        crate::client::percent_encode(id)
    );
    let schedule = match client.get(&path).await {
        Ok(schedule) => schedule,
        Err(e) => return report(e),
    };
    if format == Format::Json {
        crate::client::print_json(&schedule);
        return ExitCode::SUCCESS;
    }
    let last = match schedule["last_run"]["job"]["name"].as_str() {
        Some(job) => format!("job {job} at {}", text(&schedule["last_run"]["time"])),
        None => "-".into(),
    };
    let rows = [
        ("Type", text(&schedule["type"])),
        ("Description", text(&schedule["description"])),
        ("Owner", text(&schedule["owner"]["login"])),
        ("Environment", text(&schedule["environment"])),
        ("Target", schedule["input"]["scope"].to_string()),
        ("Starts", text(&schedule["schedule"]["start_time"])),
        ("Every", every(&schedule)),
        ("Missed", text(&schedule["schedule"]["missed_occurrences"])),
        ("Next run", text(&schedule["next_run"]["time"])),
        ("Last run", last),
        (
            "State",
            match schedule["stopped"]["message"].as_str() {
                Some(why) => format!("stopped: {why}"),
                None => "enabled".into(),
            },
        ),
        (
            "Decided",
            format!(
                "{} fired, {} skipped",
                schedule["fired_total"], schedule["skipped_total"]
            ),
        ),
    ];
    for (label, value) in rows {
        println!("{label:<12} {value}");
    }
    let occurrences: Vec<Vec<String>> = schedule["occurrences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let (first, last) = (&r["first_occurrence"], &r["last_occurrence"]);
            vec![
                if first == last {
                    first.to_string()
                } else {
                    format!("{first}-{last}")
                },
                text(&r["decided_time"]),
                text(&r["outcome"]),
                r["job"]["name"]
                    .as_str()
                    .map(|j| format!("job {j}"))
                    .or_else(|| r["message"].as_str().map(str::to_string))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    if !occurrences.is_empty() {
        println!();
        print!(
            "{}",
            table(
                &["OCCURRENCE", "DECIDED", "OUTCOME", "DETAIL"],
                &occurrences
            )
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_at_takes_a_time_or_an_offset_from_now() {
        assert_eq!(
            start_time("2030-01-01T00:00:00Z").unwrap(),
            "2030-01-01T00:00:00Z"
        );
        let soon = start_time("+90s").unwrap();
        let parsed = humantime::parse_rfc3339(&soon).unwrap();
        let ahead = parsed.duration_since(SystemTime::now()).unwrap();
        assert!(ahead > Duration::from_secs(80) && ahead <= Duration::from_secs(90));
        assert!(start_time("+soon").unwrap_err().contains("--schedule-at"));
    }

    #[test]
    fn the_body_wraps_the_deploy_input() {
        let input =
            json!({"environment": "production", "scope": {"nodes": ["a"]}, "description": "d"});
        let body = schedule_body(
            "deploy",
            input.clone(),
            "2030-01-01T00:00:00Z",
            Some(60),
            true,
        );
        assert_eq!(body["input"], input);
        assert_eq!(
            body["schedule"]["interval"],
            json!({"units": "seconds", "value": 60})
        );
        assert_eq!(body["schedule"]["missed_occurrences"], "skip");
        assert_eq!(body["description"], "d");
        let once = schedule_body("task", input, "2030-01-01T00:00:00Z", None, false);
        assert_eq!(once["schedule"]["interval"], Value::Null);
        assert_eq!(once["type"], "task");
    }
}
