//! `GET /jobs` filters, as PE's: `type` (the command that created the job: `deploy`, `task`,
//! or `plan_task`, which porch never creates: it runs no plans) and `task` (a part of a task
//! name; only task jobs have one, so it cannot go with `type=deploy`).

use super::error::ApiError;
use porch_core::Job;
use std::collections::BTreeMap;

/// Longest `task` fragment accepted: a task name is at most two such segments.
const TASK_FRAGMENT_BYTES_MAX: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobType {
    Deploy,
    Task,
    PlanTask,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    job_type: Option<JobType>,
    task: Option<String>,
}

impl JobFilter {
    /// The filter of a `GET /jobs` query; a bad value is a 400 naming its parameter.
    pub fn parse(params: &BTreeMap<String, String>) -> Result<JobFilter, ApiError> {
        let job_type = match params.get("type").map(String::as_str) {
            None => None,
            Some("deploy") => Some(JobType::Deploy),
            Some("task") => Some(JobType::Task),
            Some("plan_task") => Some(JobType::PlanTask),
            Some(other) => {
                return Err(ApiError::validation(format!(
                    "'type' must be one of deploy, task, plan_task; got {other:?}"
                )));
            }
        };
        let task = match params.get("task") {
            None => None,
            Some(fragment) => Some(task_fragment(fragment)?),
        };
        if job_type == Some(JobType::Deploy) && task.is_some() {
            return Err(ApiError::validation(
                "'task' cannot be used with type=deploy: deploy jobs run no task",
            ));
        }
        Ok(JobFilter { job_type, task })
    }

    /// Whether every job passes (the listing can count without looking at each).
    pub fn is_everything(&self) -> bool {
        self.job_type.is_none() && self.task.is_none()
    }

    pub fn matches(&self, job: &Job) -> bool {
        let task = job.spec.task.as_ref();
        let type_matches = match self.job_type {
            None => true,
            Some(JobType::Deploy) => task.is_none(),
            Some(JobType::Task) => task.is_some(),
            Some(JobType::PlanTask) => false,
        };
        type_matches
            && match &self.task {
                None => true,
                Some(fragment) => task.is_some_and(|t| t.name.contains(fragment.as_str())),
            }
    }
}

/// A `task` value: a non-empty part of a task name (`package::status`: lowercase letters,
/// digits, underscores, colons) — anything else could never match.
fn task_fragment(fragment: &str) -> Result<String, ApiError> {
    if fragment.is_empty() {
        return Err(ApiError::validation(
            "'task' must not be empty: give a task name or a part of one",
        ));
    }
    if fragment.len() > TASK_FRAGMENT_BYTES_MAX {
        return Err(ApiError::validation(format!(
            "'task' is {} bytes; at most {TASK_FRAGMENT_BYTES_MAX} are accepted",
            fragment.len()
        )));
    }
    if let Some(bad) = fragment
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | ':'))
    {
        return Err(ApiError::validation(format!(
            "'task' {fragment:?} has {bad:?}: task names hold only lowercase letters, digits, underscores and '::'"
        )));
    }
    Ok(fragment.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<JobFilter, String> {
        let params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        JobFilter::parse(&params).map_err(|e| e.msg)
    }

    #[test]
    fn bad_filter_values_are_refused_naming_the_parameter() {
        assert!(parse(&[("type", "plan")]).unwrap_err().contains("'type'"));
        assert!(parse(&[("type", "")]).unwrap_err().contains("'type'"));
        assert!(parse(&[("task", "")]).unwrap_err().contains("'task'"));
        assert!(parse(&[("task", "Pkg")]).unwrap_err().contains("'task'"));
        assert!(
            parse(&[("task", &"a".repeat(TASK_FRAGMENT_BYTES_MAX + 1))])
                .unwrap_err()
                .contains("'task'")
        );
        let both = parse(&[("type", "deploy"), ("task", "package")]).unwrap_err();
        assert!(
            both.contains("'task'") && both.contains("type=deploy"),
            "{both}"
        );
    }

    #[test]
    fn no_filter_passes_everything() {
        assert!(parse(&[]).unwrap().is_everything());
        assert!(!parse(&[("type", "task")]).unwrap().is_everything());
        assert!(
            !parse(&[("type", "plan_task"), ("task", "package::st")])
                .unwrap()
                .is_everything()
        );
    }
}
