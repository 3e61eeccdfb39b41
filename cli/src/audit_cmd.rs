//! `porch audit`: who did what, newest first, from `GET /orchestrator/v1/audit`.

use crate::client::{connect, percent_encode};
use crate::config::GlobalArgs;
use crate::job_cmd::{Format, table};
use clap::Args;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Entries asked for per request; `--limit` above this is fetched in several pages.
pub const PAGE_ENTRIES_MAX: u64 = 500;
/// The most entries one command prints (the rest: `--offset`).
pub const LIMIT_MAX: u64 = 100_000;

#[derive(Args, Debug, Clone)]
pub struct AuditArgs {
    /// Only the actions of this user (login).
    #[arg(long)]
    pub user: Option<String>,
    /// How many entries, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=LIMIT_MAX))]
    pub limit: u64,
    /// Skip this many of the newest entries.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// The query of one page.
pub fn page_query(user: Option<&str>, offset: u64, limit: u64) -> String {
    let mut query = format!("/audit?offset={offset}&limit={limit}");
    if let Some(user) = user {
        query.push_str(&format!("&user={}", percent_encode(user)));
    }
    query
}

fn row(entry: &Value) -> Vec<String> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let user = match &entry["user"] {
        Value::Null => "-".to_string(),
        user => text(&user["login"]),
    };
    let mut outcome = text(&entry["outcome"]);
    if let Some(reason) = entry["reason"].as_str().filter(|r| !r.is_empty()) {
        outcome = format!("{outcome}: {reason}");
    }
    vec![
        text(&entry["timestamp"]),
        user,
        text(&entry["source"]),
        text(&entry["action"]),
        text(&entry["target"]),
        outcome,
    ]
}

pub async fn run_audit(args: AuditArgs, global: &GlobalArgs) -> ExitCode {
    let (_, client) = match connect(global) {
        Ok(connected) => connected,
        Err(status) => return status,
    };
    let mut items: Vec<Value> = Vec::new();
    let mut total = None;
    while (items.len() as u64) < args.limit {
        let offset = args.offset + items.len() as u64;
        let wanted = (args.limit - items.len() as u64).min(PAGE_ENTRIES_MAX);
        let page = match client
            .get(&page_query(args.user.as_deref(), offset, wanted))
            .await
        {
            Ok(page) => page,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(e.exit_code());
            }
        };
        total = page["pagination"]["total"].as_u64().or(total);
        let got = page["items"].as_array().cloned().unwrap_or_default();
        let got_len = got.len() as u64;
        items.extend(got);
        // The server may cap pages below `wanted`: then `total` says whether more remain.
        let at_end = match total {
            Some(total) => args.offset + items.len() as u64 >= total,
            None => got_len < wanted,
        };
        if got_len == 0 || at_end {
            break;
        }
    }
    if args.format == Format::Json {
        let out = json!({
            "items": items,
            "pagination": {"offset": args.offset, "limit": args.limit, "total": total},
        });
        crate::client::print_json(&out);
        return ExitCode::SUCCESS;
    }
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    print!(
        "{}",
        table(
            &["TIMESTAMP", "USER", "SOURCE", "ACTION", "TARGET", "OUTCOME"],
            &rows
        )
    );
    let shown_end = args.offset + items.len() as u64;
    if let Some(total) = total.filter(|t| shown_end < *t) {
        eprintln!(
            "({} of {total} entries shown; older ones: --offset {shown_end})",
            items.len()
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_query_encodes_the_user() {
        assert_eq!(page_query(None, 0, 50), "/audit?offset=0&limit=50");
        assert_eq!(
            page_query(Some("a b"), 500, 20),
            "/audit?offset=500&limit=20&user=a%20b"
        );
    }

    #[test]
    fn rows_show_refusals_with_their_reason_and_anonymous_users() {
        let entry = json!({"id": "1", "timestamp": "2026-11-29T10:00:00Z", "user": null,
            "source": "10.0.0.1:5555", "action": "login", "target": "alice",
            "outcome": "refused", "reason": "authentication-failed"});
        assert_eq!(
            row(&entry),
            vec![
                "2026-11-29T10:00:00Z",
                "-",
                "10.0.0.1:5555",
                "login",
                "alice",
                "refused: authentication-failed"
            ]
        );
    }
}
