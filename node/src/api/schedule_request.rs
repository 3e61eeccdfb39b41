//! The body of `POST /scheduled_jobs/environment_jobs`, validated as PE does: `type`, `input`
//! (the body of the command it schedules, validated by that command's own parser), an
//! optional top-level `environment`, `schedule` {`start_time`, `interval`}, `description`,
//! `userdata`. Each error is a 400 naming the field.

use super::error::ApiError;
use super::{deploy_request, task_request};
use porch_core::schedule::{MissedPolicy, NewSchedule, ScheduledWork, USERDATA_BYTES_MAX};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(rename = "type")]
    kind: Option<String>,
    input: Option<Value>,
    environment: Option<String>,
    schedule: Option<ScheduleBody>,
    description: Option<String>,
    userdata: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    start_time: Option<String>,
    #[serde(default)]
    interval: Option<IntervalBody>,
    /// porch's extension: what missed occurrences do (`fire_once`, the default, or `skip`).
    missed_occurrences: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntervalBody {
    units: Option<String>,
    value: Option<i64>,
}

/// PE's kind for a schedule time that cannot be used.
pub const INVALID_TIME: &str = "puppetlabs.orchestrator/invalid-time";

/// Parses and validates a creation body at `now_ms` (this node's clock; the leader checks the
/// time again when the schedule applies). `owner` is the caller.
/// A task's file is read and hashed from `codedir`: call it off the async workers.
pub fn parse(
    body: &[u8],
    owner: porch_core::Actor,
    now_ms: u64,
    codedir: &Path,
) -> Result<NewSchedule, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(
            "the request body is empty; expected a JSON object",
        ));
    }
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("invalid request body: {e}")))?;
    let work = match body.kind.as_deref() {
        None => return Err(ApiError::validation("'type' is required (deploy or task)")),
        Some("deploy") => deploy_work(body.input, body.environment, owner)?,
        Some("task") => task_work(body.input, body.environment, owner, codedir)?,
        Some("plan") => {
            return Err(ApiError::validation(
                "'type': plan jobs cannot be scheduled by porch; use deploy or task",
            ));
        }
        Some(other) => {
            return Err(ApiError::validation(format!(
                "'type' must be deploy or task, got {other:?}"
            )));
        }
    };
    let schedule = body
        .schedule
        .ok_or_else(|| ApiError::validation("'schedule' is required"))?;
    let start_text = schedule
        .start_time
        .ok_or_else(|| ApiError::validation("'schedule.start_time' is required"))?;
    let start_ms = parse_time(&start_text)?;
    let interval_ms = match schedule.interval {
        None => None,
        Some(interval) => {
            if interval.units.as_deref() != Some("seconds") {
                return Err(ApiError::validation(format!(
                    "'schedule.interval.units' must be \"seconds\", got {:?}",
                    interval.units
                )));
            }
            match interval.value {
                Some(value) if value > 0 => Some((value as u64).saturating_mul(1000)),
                Some(value) => {
                    return Err(ApiError::validation(format!(
                        "'schedule.interval.value' must be a positive number of seconds, got {value}"
                    )));
                }
                None => {
                    return Err(ApiError::validation(
                        "'schedule.interval.value' is required",
                    ));
                }
            }
        }
    };
    if let Some(why) = porch_core::schedule::timing_refusal(start_ms, interval_ms, now_ms) {
        let kind = if start_ms < now_ms {
            INVALID_TIME
        } else {
            super::error::VALIDATION_ERROR
        };
        return Err(ApiError::kind(
            axum::http::StatusCode::BAD_REQUEST,
            kind,
            why,
        ));
    }
    let missed = match schedule.missed_occurrences.as_deref() {
        None | Some("fire_once") => MissedPolicy::FireOnce,
        Some("skip") => MissedPolicy::Skip,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "'schedule.missed_occurrences' must be fire_once or skip, got {other:?}"
            )));
        }
    };
    if let Some(description) = &body.description
        && description.len() > deploy_request::DESCRIPTION_BYTES_MAX
    {
        return Err(ApiError::validation(format!(
            "'description' is longer than {} bytes",
            deploy_request::DESCRIPTION_BYTES_MAX
        )));
    }
    let userdata = match body.userdata {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) => {
            let text = value.to_string();
            if text.len() > USERDATA_BYTES_MAX {
                return Err(ApiError::validation(format!(
                    "'userdata' is longer than {USERDATA_BYTES_MAX} bytes"
                )));
            }
            Some(text)
        }
        Some(other) => {
            return Err(ApiError::validation(format!(
                "'userdata' must be an object, got {other}"
            )));
        }
    };
    Ok(NewSchedule {
        work,
        start_ms,
        interval_ms,
        missed,
        description: body.description.filter(|d| !d.is_empty()),
        userdata,
    })
}

/// `input` is a `/command/deploy` body, checked by the very parser that command uses. PE
/// names the environment at the top level; either place works, and both must agree.
fn deploy_work(
    input: Option<Value>,
    environment: Option<String>,
    owner: porch_core::Actor,
) -> Result<ScheduledWork, ApiError> {
    let bytes = input_body(input, environment, "POST /command/deploy")?;
    let spec = deploy_request::parse(&bytes, owner).map_err(in_input)?;
    Ok(ScheduledWork { spec })
}

/// A task schedule: checked now as `POST /command/task` would be (unknown task, wrong
/// parameters: refused here), and again at each occurrence.
fn task_work(
    input: Option<Value>,
    environment: Option<String>,
    owner: porch_core::Actor,
    codedir: &Path,
) -> Result<ScheduledWork, ApiError> {
    let bytes = input_body(input, environment, "POST /command/task")?;
    let body = task_request::parse_body(&bytes).map_err(in_input)?;
    let (spec, _warnings) =
        task_request::check_task_request(codedir, body, owner).map_err(in_input)?;
    Ok(ScheduledWork { spec })
}

/// `input` as the body of the command it schedules, with the top-level `environment` in it.
fn input_body(
    input: Option<Value>,
    environment: Option<String>,
    command: &str,
) -> Result<Vec<u8>, ApiError> {
    let Some(Value::Object(mut input)) = input else {
        return Err(ApiError::validation(format!(
            "'input' is required: an object with the body of {command}"
        )));
    };
    match (input.get("environment"), environment) {
        (Some(Value::String(inner)), Some(outer)) if *inner != outer => {
            return Err(ApiError::validation(format!(
                "'environment' ({outer:?}) and 'input.environment' ({inner:?}) differ"
            )));
        }
        (None, Some(outer)) => {
            input.insert("environment".into(), Value::String(outer));
        }
        _ => {}
    }
    serde_json::to_vec(&Value::Object(input))
        .map_err(|e| ApiError::internal(format!("cannot re-encode 'input': {e}")))
}

/// An error in the scheduled command's body, named as inside `input`.
fn in_input(mut error: ApiError) -> ApiError {
    error.msg = format!("'input': {}", error.msg);
    error
}

/// An ISO-8601 time with a zone (`2026-11-30T01:00:00Z`, `...+01:00`, fractions allowed).
pub fn parse_time(text: &str) -> Result<u64, ApiError> {
    let time = humantime::parse_rfc3339_weak(text.trim())
        .ok()
        .filter(|_| text.trim().ends_with('Z') || !has_offset(text))
        .map(Ok)
        .unwrap_or_else(|| parse_with_offset(text.trim()))
        .map_err(|_| {
            ApiError::kind(
                axum::http::StatusCode::BAD_REQUEST,
                INVALID_TIME,
                format!("'schedule.start_time': {text:?} is not an ISO-8601 time such as 2026-11-30T01:00:00Z"),
            )
        })?;
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| {
            ApiError::kind(
                axum::http::StatusCode::BAD_REQUEST,
                INVALID_TIME,
                format!("'schedule.start_time': {text:?} is before 1970"),
            )
        })
}

/// A numeric offset after the time part (`+01:00`, `-08:00`).
fn has_offset(text: &str) -> bool {
    text.rsplit_once('T')
        .is_some_and(|(_, time)| time.contains('+') || time.contains('-'))
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]±HH:MM`: the local time shifted to UTC.
fn parse_with_offset(text: &str) -> Result<std::time::SystemTime, ()> {
    let split = text.rfind(['+', '-']).ok_or(())?;
    let (local, offset) = text.split_at(split);
    if !local.contains('T') {
        return Err(());
    }
    let sign: i64 = if offset.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = offset[1..].split_once(':').ok_or(())?;
    let (hours, minutes): (i64, i64) = (
        hours.parse().map_err(|_| ())?,
        minutes.parse().map_err(|_| ())?,
    );
    if hours > 23 || minutes > 59 {
        return Err(());
    }
    let local = humantime::parse_rfc3339_weak(local).map_err(|_| ())?;
    let shift = std::time::Duration::from_secs(((hours * 60 + minutes) * 60) as u64);
    // The local time is ahead of UTC by a positive offset.
    if sign > 0 {
        local.checked_sub(shift).ok_or(())
    } else {
        local.checked_add(shift).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> porch_core::Actor {
        porch_core::Actor {
            id: "u".into(),
            login: "me".into(),
        }
    }

    const NOW: u64 = 1_800_000_000_000;

    fn error(body: &str) -> ApiError {
        parse(body.as_bytes(), me(), NOW, Path::new("/nonexistent")).unwrap_err()
    }

    #[test]
    fn times_with_a_zone_or_an_offset_are_read_as_utc() {
        let utc = parse_time("2027-01-15T08:00:00Z").unwrap();
        assert_eq!(parse_time("2027-01-15T09:00:00+01:00").unwrap(), utc);
        assert_eq!(parse_time("2027-01-15T00:00:00-08:00").unwrap(), utc);
        assert_eq!(parse_time("2027-01-15T08:00:00.500Z").unwrap(), utc + 500);
        assert_eq!(parse_time("tomorrow").unwrap_err().kind, INVALID_TIME);
    }

    #[test]
    fn bad_schedules_are_refused_naming_the_field() {
        let input = r#""input":{"environment":"production","scope":{"nodes":["a"]}}"#;
        let past = error(&format!(
            r#"{{"type":"deploy",{input},"schedule":{{"start_time":"2020-01-01T00:00:00Z"}}}}"#
        ));
        assert_eq!(past.kind, INVALID_TIME);
        assert!(past.msg.contains("schedule.start_time"), "{}", past.msg);
        let zero = error(&format!(
            r#"{{"type":"deploy",{input},"schedule":{{"start_time":"2030-01-01T00:00:00Z","interval":{{"units":"seconds","value":0}}}}}}"#
        ));
        assert!(zero.msg.contains("schedule.interval.value"), "{}", zero.msg);
        let negative = error(&format!(
            r#"{{"type":"deploy",{input},"schedule":{{"start_time":"2030-01-01T00:00:00Z","interval":{{"units":"seconds","value":-5}}}}}}"#
        ));
        assert!(negative.msg.contains("positive"), "{}", negative.msg);
        let minutes = error(&format!(
            r#"{{"type":"deploy",{input},"schedule":{{"start_time":"2030-01-01T00:00:00Z","interval":{{"units":"minutes","value":5}}}}}}"#
        ));
        assert!(minutes.msg.contains("units"), "{}", minutes.msg);
        let kind = error(&format!(
            r#"{{"type":"reboot",{input},"schedule":{{"start_time":"2030-01-01T00:00:00Z"}}}}"#
        ));
        assert!(kind.msg.contains("'type'"), "{}", kind.msg);
        let bad_input = error(
            r#"{"type":"deploy","input":{"environment":"production","scope":{}},"schedule":{"start_time":"2030-01-01T00:00:00Z"}}"#,
        );
        assert!(bad_input.msg.starts_with("'input': "), "{}", bad_input.msg);
        let differ = error(&format!(
            r#"{{"type":"deploy","environment":"staging",{input},"schedule":{{"start_time":"2030-01-01T00:00:00Z"}}}}"#
        ));
        assert!(differ.msg.contains("differ"), "{}", differ.msg);
    }

    #[test]
    fn a_deploy_schedule_takes_its_environment_from_the_top_level() {
        let new = parse(
            br#"{"type":"deploy","environment":"production","input":{"scope":{"nodes":["a"]},"noop":true},
                "schedule":{"start_time":"2030-01-01T00:00:00Z","interval":{"units":"seconds","value":60},
                "missed_occurrences":"skip"},"description":"nightly","userdata":{"ticket":"T1"}}"#,
            me(),
            NOW,
            Path::new("/nonexistent"),
        )
        .unwrap();
        let spec = &new.work.spec;
        assert_eq!(spec.environment, "production");
        assert!(spec.noop);
        assert_eq!(new.interval_ms, Some(60_000));
        assert_eq!(new.missed, MissedPolicy::Skip);
        assert_eq!(new.userdata.as_deref(), Some(r#"{"ticket":"T1"}"#));
    }

    fn codedir_with_a_task() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let tasks = dir
            .path()
            .join("environments/production/modules/package/tasks");
        std::fs::create_dir_all(&tasks).unwrap();
        std::fs::write(tasks.join("init.sh"), "#!/bin/sh\ncat\n").unwrap();
        std::fs::write(
            tasks.join("init.json"),
            r#"{"parameters": {"action": {"type": "Enum[install, status]"}, "name": {"type": "String[1]"}}}"#,
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_task_schedule_is_checked_as_a_task_request_would_be() {
        let dir = codedir_with_a_task();
        let body = |params: &str, task: &str| {
            format!(
                r#"{{"type":"task","environment":"production","input":{{"task":"{task}","params":{params},
                   "scope":{{"nodes":["a","b"]}}}},"schedule":{{"start_time":"2030-01-01T00:00:00Z",
                   "interval":{{"units":"seconds","value":3600}}}}}}"#
            )
        };
        let new = parse(
            body(r#"{"action":"status","name":"openssl"}"#, "package").as_bytes(),
            me(),
            NOW,
            dir.path(),
        )
        .unwrap();
        assert_eq!(new.work.type_name(), "task");
        let task = new.work.spec.task.as_ref().unwrap();
        assert_eq!(task.name, "package");
        assert_eq!(task.params_json, r#"{"action":"status","name":"openssl"}"#);

        let wrong = parse(
            body(r#"{"action":"remove","name":"openssl"}"#, "package").as_bytes(),
            me(),
            NOW,
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(wrong.kind, task_request::INVALID_PARAMS);
        assert!(wrong.msg.starts_with("'input': "), "{}", wrong.msg);
        let unknown = parse(body("{}", "nosuch").as_bytes(), me(), NOW, dir.path()).unwrap_err();
        assert_eq!(
            unknown.status,
            axum::http::StatusCode::NOT_FOUND,
            "{}",
            unknown.msg
        );
    }
}
