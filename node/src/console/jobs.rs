//! The jobs pages: the list, one job (its plan by levels, each node live), one node's report,
//! and the stop button's handler.

use super::html::{self, Tab, escape, push_escaped, url_component};
use super::session::{Session, form_of};
use super::{ConsoleState, error_page, session_or_return};
use crate::api::views;
use crate::clock::format_time_ms;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use porch_core::{Job, JobId, NodeState};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// Jobs per page of the list.
pub const JOBS_PER_PAGE: usize = 50;

/// The filters of the job list, from its query string.
#[derive(Default)]
struct Filters {
    state: String,
    owner: String,
    environment: String,
    kind: String,
    offset: usize,
}

impl Filters {
    fn of(params: &BTreeMap<String, String>) -> Filters {
        let text = |name: &str| {
            params
                .get(name)
                .map(|v| v.trim().chars().take(255).collect::<String>())
                .unwrap_or_default()
        };
        Filters {
            state: text("state"),
            owner: text("owner"),
            environment: text("environment"),
            kind: text("type"),
            offset: params
                .get("offset")
                .and_then(|o| o.parse().ok())
                .unwrap_or(0),
        }
    }

    fn keeps(&self, job: &Job) -> bool {
        (self.state.is_empty() || job.state().as_str() == self.state)
            && (self.owner.is_empty() || job.spec.owner.login == self.owner)
            && (self.environment.is_empty() || job.spec.environment == self.environment)
            && (self.kind.is_empty() || views::job_summary(job, "")["type"] == self.kind.as_str())
    }

    fn query(&self, offset: usize) -> String {
        format!(
            "state={}&owner={}&environment={}&type={}&offset={offset}",
            url_component(&self.state),
            url_component(&self.owner),
            url_component(&self.environment),
            url_component(&self.kind),
        )
    }
}

/// A job's node states as `3 finished · 1 running`.
fn state_counts(summary: &Value) -> String {
    match summary["node_states"].as_object() {
        Some(states) if !states.is_empty() => states
            .iter()
            .map(|(state, count)| format!("{count} {state}"))
            .collect::<Vec<_>>()
            .join(" · "),
        _ => String::new(),
    }
}

pub async fn list(State(console): State<Arc<ConsoleState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let session = session_or_return!(console, parts);
    let params: BTreeMap<String, String> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let filters = Filters::of(&params);
    // The API checks the session's view permission and passes the read barrier; the page is
    // then read from the applied state (`GET /jobs` has no filters).
    if let Err(failure) = console
        .api
        .get(&session.caller, "/orchestrator/v1/jobs?limit=0")
        .await
    {
        return error_page(&console, Some(&session), &failure);
    }
    // An O(1) copy of the persistent map: filtering runs without the lock `apply` needs.
    let jobs = console.consensus.view.read().cluster.jobs().clone();
    let mut matched = 0usize;
    let mut page: Vec<Arc<Job>> = Vec::new();
    for job in jobs.values().rev() {
        if !filters.keeps(job) {
            continue;
        }
        if matched >= filters.offset && page.len() < JOBS_PER_PAGE {
            page.push(job.clone());
        }
        matched += 1;
    }
    let mut body = String::from("<h1>Jobs</h1>");
    body.push_str("<form class=\"filters\" method=\"get\" action=\"/console/jobs\"><label>State <select name=\"state\"><option value=\"\">any</option>");
    for (_, state) in crate::metrics::reading::JOB_STATES {
        let selected = if filters.state == state {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option{selected}>{state}</option>");
    }
    let _ = write!(
        body,
        "</select></label>\
         <label>Owner <input name=\"owner\" value=\"{}\" size=\"10\"></label>\
         <label>Environment <input name=\"environment\" value=\"{}\" size=\"12\"></label>\
         <label>Type <input name=\"type\" value=\"{}\" size=\"8\" list=\"job-types\"></label>\
         <datalist id=\"job-types\"><option>deploy</option><option>task</option><option>plan</option></datalist>\
         <button type=\"submit\">Filter</button> <a href=\"/console/jobs\">clear</a></form>",
        escape(&filters.owner),
        escape(&filters.environment),
        escape(&filters.kind),
    );
    if page.is_empty() {
        body.push_str(&html::notice(
            "info",
            if jobs.is_empty() {
                "No jobs yet: start one from Run."
            } else {
                "No job matches these filters."
            },
        ));
    } else {
        body.push_str("<div class=\"scroll\"><table class=\"jobs\"><caption class=\"sr\">Jobs, newest first</caption><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">State</th><th scope=\"col\">Type</th><th scope=\"col\">Owner</th><th scope=\"col\">Environment</th><th scope=\"col\">Target</th><th scope=\"col\">Nodes</th><th scope=\"col\">Created</th><th scope=\"col\">Last change</th></tr></thead><tbody>");
        for job in &page {
            let summary = views::job_summary(job, "");
            let state = job.state().as_str();
            let _ = write!(
                body,
                "<tr><td><a href=\"/console/jobs/{id}\">{id}</a></td><td><span class=\"badge s-{state}\">{state}</span></td><td>{kind}</td><td>{owner}</td><td>{env}</td><td>{target}</td><td>{count}<div class=\"sub\">{counts}</div></td><td>{created}</td><td>{changed}</td></tr>",
                id = job.id,
                kind = escape(summary["type"].as_str().unwrap_or("")),
                owner = escape(&job.spec.owner.login),
                env = escape(&job.spec.environment),
                target = escape(&job.spec.target.describe()),
                count = job.runs.len(),
                counts = escape(&state_counts(&summary)),
                created = short_time(job.created_ms()),
                changed = short_time(job.timestamp_ms()),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    let _ = write!(
        body,
        "<nav class=\"pages\" aria-label=\"pages\"><span>{} of {matched}</span>",
        if matched == 0 {
            "0".to_string()
        } else {
            format!(
                "{}–{}",
                filters.offset + 1,
                (filters.offset + page.len()).max(filters.offset + 1)
            )
        }
    );
    if filters.offset > 0 {
        let _ = write!(
            body,
            " <a rel=\"prev\" href=\"/console/jobs?{}\">Newer</a>",
            escape(&filters.query(filters.offset.saturating_sub(JOBS_PER_PAGE)))
        );
    }
    if filters.offset + page.len() < matched {
        let _ = write!(
            body,
            " <a rel=\"next\" href=\"/console/jobs?{}\">Older</a>",
            escape(&filters.query(filters.offset + JOBS_PER_PAGE))
        );
    }
    body.push_str("</nav>");
    let members = console.member_urls();
    Html(html::page(
        &session.shell(&console, "Jobs", Tab::Jobs, &members),
        &body,
    ))
    .into_response()
}

/// `2026-11-29 23:10:05` (UTC), the seconds a person reads.
fn short_time(ms: u64) -> String {
    let text = format_time_ms(ms);
    text.get(..19).unwrap_or(&text).replace('T', " ")
}

/// The job `id` after the API said the session may see it (and passed the read barrier).
async fn job_for(
    console: &ConsoleState,
    session: &Session,
    id: &str,
) -> Result<(Arc<Job>, Value), Response> {
    let summary = console
        .api
        .get(
            &session.caller,
            &format!("/orchestrator/v1/jobs/{}", url_component(id)),
        )
        .await
        .map_err(|failure| {
            let mut failure = failure;
            if failure.status == StatusCode::NOT_FOUND {
                failure.msg = format!(
                    "There is no job {id}: it never existed, or it ended long enough ago to be pruned."
                );
            }
            error_page(console, Some(session), &failure)
        })?;
    let job_id = JobId(id.parse().unwrap_or(0));
    let job = console
        .consensus
        .view
        .read()
        .cluster
        .jobs()
        .get(&job_id)
        .cloned();
    let job = job.ok_or_else(|| {
        error_page(
            console,
            Some(session),
            &super::in_process::ApiFailure {
                status: StatusCode::NOT_FOUND,
                kind: "puppetlabs.orchestrator/unknown-job".into(),
                msg: format!("Job {id} was pruned a moment ago."),
            },
        )
    })?;
    Ok((job, summary))
}

fn state_class(state: NodeState) -> &'static str {
    state.as_str()
}

/// Counts of each node state in `indices` of `job`, in display order.
fn level_counts(job: &Job, indices: &[usize]) -> [(&'static str, usize); 6] {
    let mut counts = [
        ("finished", 0),
        ("running", 0),
        ("failed", 0),
        ("errored", 0),
        ("skipped", 0),
        ("new", 0),
    ];
    for &i in indices {
        let name = job.runs[i].state.as_str();
        if let Some(slot) = counts.iter_mut().find(|(n, _)| *n == name) {
            slot.1 += 1;
        }
    }
    counts
}

/// The bar of one level: one segment per state, widths in proportion.
fn level_bar(out: &mut String, counts: &[(&'static str, usize)], total: usize) {
    out.push_str("<div class=\"bar\" aria-hidden=\"true\">");
    for (state, count) in counts {
        if *count > 0 {
            let _ = write!(
                out,
                "<span class=\"s-{state}\" style=\"flex-grow:{count}\"></span>"
            );
        }
    }
    out.push_str("</div><p class=\"counts\">");
    let words: Vec<String> = counts
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(s, c)| format!("{c} {s}"))
        .collect();
    let _ = write!(out, "{total} nodes: {}", words.join(", "));
    out.push_str("</p>");
}

pub async fn show(
    State(console): State<Arc<ConsoleState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let session = session_or_return!(console, parts);
    let (job, summary) = match job_for(&console, &session, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let now_ms = console.consensus.view.read().cluster.clock_ms();
    let body = render_job(&job, &summary, &session.csrf, now_ms);
    let members = console.member_urls();
    let title = format!("Job {}", job.id);
    Html(html::page(
        &session.shell(&console, &title, Tab::Jobs, &members),
        &body,
    ))
    .into_response()
}

/// The job page's body: facts, actions, the levels, every node (grouped by level).
pub fn render_job(job: &Job, summary: &Value, csrf: &str, now_ms: u64) -> String {
    let nodes = job.plan.nodes();
    let levels = job.plan.levels().unwrap_or_else(|_| vec![0; nodes.len()]);
    let level_count = levels.iter().max().map_or(0, |m| *m as usize + 1);
    let mut by_level: Vec<Vec<usize>> = vec![Vec::new(); level_count];
    for (i, level) in levels.iter().enumerate() {
        by_level[*level as usize].push(i);
    }
    let state = job.state();
    let mut out = String::with_capacity(512 + nodes.len() * 260);
    let next_event = job.events.last().map_or(0, |e| e.id.0 + 1);
    let _ = write!(
        out,
        "<h1>Job {id} <span id=\"job-state\" class=\"badge s-{s}\">{s}</span></h1>",
        id = job.id,
        s = state.as_str()
    );
    let options = &summary["options"];
    let _ = write!(
        out,
        "<dl class=\"facts\"><dt>Type</dt><dd>{}</dd><dt>Owner</dt><dd>{}</dd><dt>Environment</dt><dd>{}</dd><dt>Target</dt><dd>{}</dd><dt>Nodes</dt><dd>{}</dd><dt>Noop</dt><dd>{}</dd><dt>Concurrency</dt><dd>{}</dd><dt>Created</dt><dd>{}</dd>",
        escape(summary["type"].as_str().unwrap_or("")),
        escape(&job.spec.owner.login),
        escape(&job.spec.environment),
        escape(&job.spec.target.describe()),
        nodes.len(),
        if job.spec.noop { "yes" } else { "no" },
        job.spec
            .concurrency
            .map_or("unlimited".to_string(), |c| c.to_string()),
        short_time(job.created_ms()),
    );
    if state.is_terminal() {
        let _ = write!(
            out,
            "<dt>Duration</dt><dd>{}</dd>",
            html::duration(job.timestamp_ms().saturating_sub(job.created_ms()))
        );
    }
    if let Some(description) = &job.spec.description {
        let _ = write!(out, "<dt>Description</dt><dd>{}</dd>", escape(description));
    }
    out.push_str("</dl><div class=\"actions\">");
    if !state.is_terminal() {
        let _ = write!(
            out,
            "<form id=\"stop\" method=\"post\" action=\"/console/jobs/{}/stop\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\" class=\"danger\">Stop job</button></form>",
            job.id,
            escape(csrf)
        );
    }
    out.push_str(&super::run::run_again_form(options, csrf));
    out.push_str("</div><p id=\"live\" class=\"live\" role=\"status\" aria-live=\"polite\"></p>");
    out.push_str("<section class=\"levels\" aria-label=\"run order by level\"><h2>Run order</h2><ol id=\"levels\">");
    for (level, indices) in by_level.iter().enumerate() {
        let _ = write!(
            out,
            "<li class=\"level\" data-level=\"{level}\"><h3>Level {}</h3>",
            level + 1
        );
        level_bar(&mut out, &level_counts(job, indices), indices.len());
        out.push_str("</li>");
    }
    out.push_str("</ol></section>");
    let _ = write!(
        out,
        "<section aria-label=\"nodes\"><h2>Nodes</h2><div class=\"scroll\"><table id=\"nodes\" class=\"nodes\" data-job=\"{}\" data-next-event=\"{next_event}\" data-ended=\"{}\" data-now=\"{now_ms}\"><thead><tr><th scope=\"col\">Node</th><th scope=\"col\">State</th><th scope=\"col\">Started</th><th scope=\"col\">Duration</th><th scope=\"col\">Message</th><th scope=\"col\">After</th></tr></thead>",
        job.id,
        u8::from(state.is_terminal()),
    );
    for (level, indices) in by_level.iter().enumerate() {
        let _ = write!(
            out,
            "<tbody data-level=\"{level}\"><tr class=\"lvl\"><th colspan=\"6\" scope=\"rowgroup\">Level {}</th></tr>",
            level + 1
        );
        for &i in indices {
            node_row(&mut out, job, i, now_ms);
        }
        out.push_str("</tbody>");
    }
    out.push_str("</table></div></section>");
    out
}

/// Names of a node's predecessors shown in its row before "and N more".
const AFTER_NAMES_SHOWN: usize = 3;

fn node_row(out: &mut String, job: &Job, index: usize, now_ms: u64) {
    let planned = &job.plan.nodes()[index];
    let run = &job.runs[index];
    let state = state_class(run.state);
    out.push_str("<tr id=\"node-");
    push_escaped(out, &planned.name);
    let _ = write!(out, "\" class=\"s-{state}\"");
    if let Some(start) = run.start_ms {
        let _ = write!(out, " data-start=\"{start}\"");
    }
    out.push_str("><td><a href=\"/console/jobs/");
    let _ = write!(out, "{}/nodes/", job.id);
    push_escaped(out, &url_component(&planned.name));
    out.push_str("\">");
    push_escaped(out, &planned.name);
    let _ = write!(
        out,
        "</a></td><td class=\"st\">{state}</td><td class=\"t\">"
    );
    if let Some(start) = run.start_ms {
        out.push_str(&format_time_ms(start)[11..19]);
    }
    out.push_str("</td><td class=\"du\">");
    match (run.start_ms, run.finish_ms) {
        (Some(start), Some(finish)) => out.push_str(&html::duration(finish.saturating_sub(start))),
        (Some(start), None) => out.push_str(&html::duration(now_ms.saturating_sub(start))),
        _ => {}
    }
    out.push_str("</td><td class=\"msg\">");
    if let Some(message) = &run.message {
        push_escaped(out, message);
    }
    out.push_str("</td><td class=\"after\">");
    let deps = &planned.depends_on;
    for (n, dep) in deps.iter().take(AFTER_NAMES_SHOWN).enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        push_escaped(out, &job.plan.nodes()[*dep as usize].name);
    }
    if deps.len() > AFTER_NAMES_SHOWN {
        let _ = write!(out, " and {} more", deps.len() - AFTER_NAMES_SHOWN);
    }
    out.push_str("</td></tr>");
}

/// One node's run: its state, timings, message, the agent's report and its events.
pub async fn node(
    State(console): State<Arc<ConsoleState>>,
    Path((id, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let session = session_or_return!(console, parts);
    let (job, _) = match job_for(&console, &session, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(index) = job.plan.nodes().iter().position(|n| n.name == name) else {
        return error_page(
            &console,
            Some(&session),
            &super::in_process::ApiFailure {
                status: StatusCode::NOT_FOUND,
                kind: "porch.console/unknown-node".into(),
                msg: format!("Job {id} has no node {name:?}."),
            },
        );
    };
    let now_ms = console.consensus.view.read().cluster.clock_ms();
    let item = views::node_item(&job, index, now_ms);
    let run = &job.runs[index];
    let mut body = format!(
        "<p><a href=\"/console/jobs/{}\">← Job {}</a></p><h1>{} <span class=\"badge s-{s}\">{s}</span></h1><dl class=\"facts\">",
        job.id,
        job.id,
        escape(&name),
        s = run.state.as_str()
    );
    let fact = |body: &mut String, label: &str, value: &Value| {
        let text = match value {
            Value::Null => return,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(body, "<dt>{label}</dt><dd>{}</dd>", escape(&text));
    };
    fact(&mut body, "Attempt", &item["attempt"]);
    fact(&mut body, "Started", &item["start_timestamp"]);
    fact(&mut body, "Finished", &item["finish_timestamp"]);
    fact(&mut body, "Duration (s)", &item["duration"]);
    fact(&mut body, "Transaction", &item["transaction_uuid"]);
    fact(&mut body, "Message", &item["details"]["message"]);
    let result = &item["result"];
    fact(&mut body, "Report status", &result["status"]);
    fact(&mut body, "Exit code", &result["exit_code"]);
    fact(&mut body, "Run time (s)", &result["run_time"]);
    fact(&mut body, "Report message", &result["message"]);
    fact(
        &mut body,
        "Configuration version",
        &result["configuration_version"],
    );
    body.push_str("</dl>");
    let events: Vec<&porch_core::JobEvent> = job
        .events
        .iter()
        .filter(|e| e.node.as_deref() == Some(name.as_str()))
        .collect();
    body.push_str("<h2>Events</h2><ol class=\"events\">");
    for event in events {
        let _ = write!(
            body,
            "<li><time>{}</time> <strong>{}</strong> {}</li>",
            short_time(event.timestamp_ms),
            event.kind.as_str(),
            escape(&event.message(&job))
        );
    }
    body.push_str("</ol>");
    if !result.is_null() {
        let pretty = serde_json::to_string_pretty(result).unwrap_or_default();
        let _ = write!(
            body,
            "<details><summary>The agent's report (JSON)</summary><pre>{}</pre></details>",
            escape(&pretty)
        );
    }
    let members = console.member_urls();
    let title = format!("{name} in job {id}");
    Html(html::page(
        &session.shell(&console, &title, Tab::Jobs, &members),
        &body,
    ))
    .into_response()
}

/// The stop button: a form post (then back to the job page) or the script's fetch, possibly
/// from a page another node served (then it answers JSON).
pub async fn stop(
    State(console): State<Arc<ConsoleState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let session = session_or_return!(console, parts);
    let form = match form_of(Request::from_parts(parts.clone(), body), 4096).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    if let Err(response) = session.check_post(&console, &parts.headers, &form) {
        return response;
    }
    let wants_json = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let answer = console
        .api
        .post(
            &session.caller,
            "/orchestrator/v1/command/stop",
            &json!({"job": id}),
            &[],
        )
        .await;
    match (answer, wants_json) {
        (Ok(_), true) => axum::Json(json!({"stopped": id})).into_response(),
        (Ok(_), false) => {
            Redirect::to(&format!("/console/jobs/{}", url_component(&id))).into_response()
        }
        (Err(failure), true) => (
            failure.status,
            axum::Json(json!({"kind": failure.kind, "msg": failure.msg})),
        )
            .into_response(),
        (Err(failure), false) => error_page(&console, Some(&session), &failure),
    }
}
