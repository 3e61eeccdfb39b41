//! Reads what porch needs from Puppet's `last_run_summary.yaml` (resource and event counts,
//! run time, configuration version) and `last_run_report.yaml` (transaction uuid, status,
//! noop, environment). Both are machine-written YAML of a fixed shape, so a line reader for
//! `key: value` at the top level and `section:\n  key: value` one level down is enough; deeper
//! structure (the report's logs, metrics and resource statuses) is skipped.
//!
//! Each parser says what is missing when a file is not what Puppet writes, so the node gets
//! "no resources.total" rather than a run with no metrics.

use std::collections::BTreeMap;

/// `section -> key -> value` for two-level YAML (`resources:\n  total: 7`); top-level scalars
/// (`status: changed`) are under the section `""`. Lines indented deeper than two spaces and
/// list items are skipped.
pub fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with("---") || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        let trimmed = line.trim();
        if trimmed.starts_with("- ") || indent > 2 {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches('"').to_string();
        let value = value
            .trim()
            .trim_matches('"')
            .trim_matches('\'')
            .to_string();
        if indent == 0 {
            section = key.clone();
            if !value.is_empty() {
                out.entry(String::new()).or_default().insert(key, value);
            }
        } else {
            out.entry(section.clone()).or_default().insert(key, value);
        }
    }
    out
}

/// What `last_run_summary.yaml` says about a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    /// `resources:` — total, changed, failed, failed_to_restart, out_of_sync, restarted,
    /// scheduled, skipped, corrective_change.
    pub resources: BTreeMap<String, i64>,
    /// `events:` — total, success, failure, noop.
    pub events: BTreeMap<String, i64>,
    /// `time: total`, Puppet's own measure of the run, in milliseconds.
    pub time_total_ms: Option<i64>,
    /// `version: config`.
    pub configuration_version: String,
}

fn counts(section: Option<&BTreeMap<String, String>>) -> BTreeMap<String, i64> {
    section
        .map(|s| {
            s.iter()
                .filter_map(|(key, value)| Some((key.clone(), value.parse::<i64>().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a summary; `Err` says what a summary must have and this text lacks.
pub fn parse_summary(text: &str) -> Result<RunSummary, String> {
    let sections = sections(text);
    let resources = counts(sections.get("resources"));
    if !resources.contains_key("total") {
        return Err("no resources.total: not a Puppet run summary".into());
    }
    let time_total_ms = sections
        .get("time")
        .and_then(|t| t.get("total"))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(|secs| (secs * 1000.0).round() as i64);
    Ok(RunSummary {
        resources,
        events: counts(sections.get("events")),
        time_total_ms,
        configuration_version: sections
            .get("version")
            .and_then(|v| v.get("config"))
            .cloned()
            .unwrap_or_default(),
    })
}

/// What `last_run_report.yaml` says about a run (its top-level keys).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    pub transaction_uuid: String,
    /// "changed", "unchanged" or "failed".
    pub status: String,
    pub environment: String,
    pub configuration_version: String,
    /// The run was in noop mode.
    pub noop: bool,
    /// A noop run found changes it did not make.
    pub noop_pending: bool,
    /// The certname that ran.
    pub host: String,
}

/// Parses a report; `Err` says what a report must have and this text lacks.
pub fn parse_report(text: &str) -> Result<RunReport, String> {
    let top = sections(text).remove("").unwrap_or_default();
    let field = |key: &str| top.get(key).cloned().unwrap_or_default();
    let report = RunReport {
        transaction_uuid: field("transaction_uuid"),
        status: field("status"),
        environment: field("environment"),
        configuration_version: field("configuration_version"),
        noop: field("noop") == "true",
        noop_pending: field("noop_pending") == "true",
        host: field("host"),
    };
    for (key, value) in [
        ("transaction_uuid", &report.transaction_uuid),
        ("status", &report.status),
    ] {
        if value.is_empty() {
            return Err(format!("no {key}: not a Puppet run report"));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by this project's `puppet apply --noop -e 'notify{"x":}'` on puppet 7.23.
    const SUMMARY: &str = include_str!("fixtures/last_run_summary.yaml");
    /// The report of the same run, its logs and all but one resource status cut.
    const REPORT: &str = include_str!("fixtures/last_run_report.yaml");

    #[test]
    fn a_real_summary_gives_resource_counts_events_time_and_version() {
        let summary = parse_summary(SUMMARY).unwrap();
        assert_eq!(summary.configuration_version, "1795986511");
        assert_eq!(summary.resources["total"], 8);
        assert_eq!(summary.resources["out_of_sync"], 1);
        assert_eq!(summary.resources["changed"], 0);
        assert_eq!(summary.resources["corrective_change"], 0);
        assert_eq!(summary.resources.len(), 9, "{:?}", summary.resources);
        assert_eq!(summary.events["noop"], 1);
        assert_eq!(summary.events["total"], 1);
        assert_eq!(summary.time_total_ms, Some(11));
    }

    #[test]
    fn a_real_report_gives_uuid_status_noop_and_environment() {
        let report = parse_report(REPORT).unwrap();
        assert_eq!(
            report,
            RunReport {
                transaction_uuid: "328518c5-90e2-441c-a80b-8700c5b278b8".into(),
                status: "unchanged".into(),
                environment: "production".into(),
                configuration_version: "1795986511".into(),
                noop: true,
                noop_pending: true,
                host: "vm".into(),
            }
        );
    }

    #[test]
    fn nested_report_keys_do_not_shadow_top_level_ones() {
        // Resource statuses and events carry `status:` and `time:` keys of their own.
        let report = parse_report(REPORT).unwrap();
        assert_eq!(report.status, "unchanged");
    }

    #[test]
    fn malformed_files_are_refused_with_what_is_missing() {
        for garbage in ["\u{0}:::\n  :\n::\n", "", "[1, 2", "resources: 7\n"] {
            let error = parse_summary(garbage).unwrap_err();
            assert!(error.contains("resources.total"), "{garbage:?}: {error}");
        }
        let error =
            parse_report("--- !ruby/object:Puppet::Transaction::Report\nhost: a\n").unwrap_err();
        assert!(error.contains("transaction_uuid"), "{error}");
        let error = parse_report("transaction_uuid: u\n").unwrap_err();
        assert!(error.contains("no status"), "{error}");
    }

    #[test]
    fn a_summary_of_a_failed_catalog_has_no_time_and_still_parses() {
        let summary =
            parse_summary("---\nversion:\n  puppet: 7.23.0\nresources:\n  total: 0\n").unwrap();
        assert_eq!(summary.time_total_ms, None);
        assert_eq!(summary.configuration_version, "");
    }
}
