//! Reads the few keys porch needs from Puppet's `last_run_summary.yaml` and
//! `last_run_report.yaml`. These files are machine-written YAML with a fixed shape, so a
//! line reader for `section:` / `  key: value` is enough; anything unexpected is skipped.

use std::collections::BTreeMap;

/// `section -> key -> value` for two-level YAML (`resources:\n  total: 7`).
pub fn sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with("---") || line.trim_start().starts_with('#') {
            continue;
        }
        let indented = line.starts_with(' ');
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value
            .trim()
            .trim_matches('"')
            .trim_matches('\'')
            .to_string();
        if !indented {
            section = key.trim().to_string();
            if !value.is_empty() {
                out.entry(String::new())
                    .or_default()
                    .insert(section.clone(), value);
            }
        } else {
            out.entry(section.clone())
                .or_default()
                .insert(key.trim().to_string(), value);
        }
    }
    out
}

/// Resource counts, the configuration version, and the noop event count.
pub fn from_summary(text: &str) -> (BTreeMap<String, i64>, String) {
    let sections = sections(text);
    let mut metrics = BTreeMap::new();
    if let Some(resources) = sections.get("resources") {
        for (key, value) in resources {
            if let Ok(n) = value.parse::<i64>() {
                metrics.insert(key.clone(), n);
            }
        }
    }
    if let Some(noop) = sections
        .get("events")
        .and_then(|e| e.get("noop"))
        .and_then(|v| v.parse().ok())
    {
        metrics.insert("noop".into(), noop);
    }
    let version = sections
        .get("version")
        .and_then(|v| v.get("config"))
        .cloned()
        .unwrap_or_default();
    (metrics, version)
}

/// `transaction_uuid` and `environment` from the top level of a run report.
pub fn from_report(text: &str) -> (String, String) {
    let top = sections(text).remove("").unwrap_or_default();
    (
        top.get("transaction_uuid").cloned().unwrap_or_default(),
        top.get("environment").cloned().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resource_counts_and_version() {
        let text = "---\nversion:\n  config: 1700000000\n  puppet: 8.4.0\nresources:\n  changed: 2\n  failed: 1\n  total: 10\nevents:\n  noop: 3\n  total: 5\n";
        let (metrics, version) = from_summary(text);
        assert_eq!(version, "1700000000");
        assert_eq!(metrics["changed"], 2);
        assert_eq!(metrics["failed"], 1);
        assert_eq!(metrics["total"], 10);
        assert_eq!(metrics["noop"], 3);
    }

    #[test]
    fn reads_report_top_level_keys() {
        let text = "--- !ruby/object:Puppet::Transaction::Report\nhost: web1\ntransaction_uuid: 1a2b\nenvironment: production\nlogs:\n  - level: info\n";
        assert_eq!(
            from_report(text),
            ("1a2b".to_string(), "production".to_string())
        );
    }

    #[test]
    fn garbage_yields_nothing_not_a_panic() {
        let (metrics, version) = from_summary("\u{0}:::\n  :\n::\n");
        assert!(metrics.is_empty());
        assert!(version.is_empty());
    }
}
