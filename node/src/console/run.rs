//! The run form (`puppet job run`'s options), the plan it would make (`POST /command/plan`,
//! no job created), and the submission (`POST /command/deploy`, under a request id fixed when
//! the plan was shown, so a double click or a retried post creates one job).

use super::html::{self, Tab, escape};
use super::session::form_of;
use super::{ConsoleState, error_page, session_or_return};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// Largest run form accepted (a list of 10,000 node names fits).
const RUN_FORM_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Plan nodes listed in the preview before "and N more" (the levels still count them all).
const PREVIEW_NODES_SHOWN: usize = 200;

/// The form's fields, in the order they are shown.
const FIELDS: [&str; 7] = [
    "environment",
    "nodes",
    "query",
    "application",
    "concurrency",
    "noop",
    "description",
];

/// The deploy (or plan) body of a run form, or what is wrong with the form.
pub fn deploy_body(form: &BTreeMap<String, String>) -> Result<Value, String> {
    let field = |name: &str| form.get(name).map(|v| v.trim()).unwrap_or("");
    let nodes: Vec<String> = field("nodes")
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    let mut scopes = Vec::new();
    if !nodes.is_empty() {
        scopes.push(("nodes", json!(nodes)));
    }
    if !field("query").is_empty() {
        scopes.push(("query", json!(field("query"))));
    }
    if !field("application").is_empty() {
        scopes.push(("application", json!(field("application"))));
    }
    let (kind, value) = match scopes.len() {
        1 => scopes.remove(0),
        0 => return Err("Name the nodes, a query or an application to run.".into()),
        _ => {
            return Err(
                "Give only one of nodes, query or application (porch runs one target per job)."
                    .into(),
            );
        }
    };
    let mut body = json!({
        "environment": field("environment"),
        "scope": {kind: value},
        "noop": form.get("noop").is_some_and(|v| v == "on" || v == "true"),
    });
    if !field("concurrency").is_empty() {
        let n: i64 = field("concurrency").parse().map_err(|_| {
            format!(
                "Concurrency must be a whole number of nodes, not {:?}.",
                field("concurrency")
            )
        })?;
        body["concurrency"] = json!(n);
    }
    if !field("description").is_empty() {
        body["description"] = json!(field("description"));
    }
    Ok(body)
}

/// The form, filled with `values`.
fn form_html(values: &BTreeMap<String, String>, environments: &[String], csrf: &str) -> String {
    let value = |name: &str| escape(values.get(name).map(String::as_str).unwrap_or(""));
    let mut out =
        String::from("<form class=\"run\" method=\"post\" action=\"/console/run/preview\">");
    let _ = write!(
        out,
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    );
    let chosen = values
        .get("environment")
        .map(String::as_str)
        .unwrap_or("production");
    out.push_str("<label>Environment <select name=\"environment\" required>");
    let mut names: Vec<&str> = environments.iter().map(String::as_str).collect();
    if !names.contains(&chosen) {
        names.insert(0, chosen);
    }
    for name in names {
        let selected = if name == chosen { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{}</option>", escape(name));
    }
    let _ = write!(
        out,
        "</select></label>\
         <fieldset><legend>Target: one of</legend>\
         <label>Nodes <textarea name=\"nodes\" rows=\"3\" placeholder=\"web1.example.com, web2.example.com\">{}</textarea></label>\
         <label>Query <input name=\"query\" value=\"{}\" placeholder='nodes {{ certname ~ \"^web\" }}'></label>\
         <label>Application <input name=\"application\" value=\"{}\" placeholder=\"Lamp[prod]\"></label></fieldset>\
         <label>Concurrency <input name=\"concurrency\" type=\"number\" min=\"1\" value=\"{}\" placeholder=\"unlimited\"></label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"noop\"{}> Noop (report what would change)</label>\
         <label>Description <input name=\"description\" value=\"{}\"></label>\
         <button type=\"submit\">Show the plan</button></form>",
        value("nodes"),
        value("query"),
        value("application"),
        value("concurrency"),
        if values.get("noop").is_some_and(|v| v == "on" || v == "true") {
            " checked"
        } else {
            ""
        },
        value("description"),
    );
    out
}

/// The job page's "Run again" button: the run form's preview with the job's options.
pub fn run_again_form(options: &Value, csrf: &str) -> String {
    let mut out = String::from("<form method=\"post\" action=\"/console/run/preview\">");
    let mut hidden = |name: &str, value: &str| {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        );
    };
    hidden("csrf", csrf);
    hidden("environment", options["environment"].as_str().unwrap_or(""));
    let scope = &options["scope"];
    if let Some(nodes) = scope["nodes"].as_array() {
        let names: Vec<&str> = nodes.iter().filter_map(Value::as_str).collect();
        hidden("nodes", &names.join("\n"));
    }
    if let Some(query) = scope["query"].as_str() {
        hidden("query", query);
    }
    if let Some(application) = scope["application"].as_str() {
        hidden("application", application);
    }
    if let Some(concurrency) = options["concurrency"].as_u64() {
        hidden("concurrency", &concurrency.to_string());
    }
    if options["noop"].as_bool() == Some(true) {
        hidden("noop", "on");
    }
    out.push_str("<button type=\"submit\">Run again…</button></form>");
    out
}

async fn environments(console: &ConsoleState, caller: &super::in_process::Caller) -> Vec<String> {
    console
        .api
        .get(caller, "/orchestrator/v1/environments")
        .await
        .ok()
        .and_then(|v| {
            v["items"].as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["name"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn run_page(
    console: &ConsoleState,
    session: &super::session::Session,
    status: StatusCode,
    body: &str,
) -> Response {
    let members = console.member_urls();
    (
        status,
        Html(html::page(
            &session.shell(console, "Run", Tab::Run, &members),
            body,
        )),
    )
        .into_response()
}

pub async fn form(State(console): State<Arc<ConsoleState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let session = session_or_return!(console, parts);
    let values: BTreeMap<String, String> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let environments = environments(&console, &session.caller).await;
    let body = format!(
        "<h1>Run Puppet</h1><p class=\"hint\">The plan is shown before any job is created.</p>{}",
        form_html(&values, &environments, &session.csrf)
    );
    run_page(&console, &session, StatusCode::OK, &body)
}

/// The form again, with what was wrong.
async fn form_with_error(
    console: &ConsoleState,
    session: &super::session::Session,
    values: &BTreeMap<String, String>,
    status: StatusCode,
    message: &str,
) -> Response {
    let environments = environments(console, &session.caller).await;
    let body = format!(
        "<h1>Run Puppet</h1>{}{}",
        html::notice("error", message),
        form_html(values, &environments, &session.csrf)
    );
    run_page(console, session, status, &body)
}

/// A posted run form: the caller's session, the form (its CSRF token checked) and the deploy
/// request it makes; otherwise the page to answer with.
async fn posted_run(
    console: &Arc<ConsoleState>,
    request: Request,
) -> Result<(super::session::Session, BTreeMap<String, String>, Value), Response> {
    let (parts, body) = request.into_parts();
    let session = super::session_of(console, &parts).await?;
    let form = form_of(Request::from_parts(parts.clone(), body), RUN_FORM_BYTES_MAX).await?;
    session.check_post(console, &parts.headers, &form)?;
    match deploy_body(&form) {
        Ok(deploy) => Ok((session, form, deploy)),
        Err(message) => {
            Err(form_with_error(console, &session, &form, StatusCode::BAD_REQUEST, &message).await)
        }
    }
}

pub async fn preview(State(console): State<Arc<ConsoleState>>, request: Request) -> Response {
    let (session, form, deploy) = match posted_run(&console, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let plan = match console
        .api
        .post(
            &session.caller,
            "/orchestrator/v1/command/plan",
            &deploy,
            &[],
        )
        .await
    {
        Ok(plan) => plan,
        Err(failure) if failure.is_unauthenticated() => {
            return error_page(&console, Some(&session), &failure);
        }
        Err(failure) => {
            return form_with_error(&console, &session, &form, failure.status, &failure.msg).await;
        }
    };
    let body = render_preview(&plan, &form, &session.csrf);
    run_page(&console, &session, StatusCode::OK, &body)
}

/// The plan by levels, its warnings, and the button that creates the job.
fn render_preview(plan: &Value, form: &BTreeMap<String, String>, csrf: &str) -> String {
    let nodes = plan["nodes"].as_array().cloned().unwrap_or_default();
    let mut levels: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for node in &nodes {
        levels
            .entry(node["level"].as_u64().unwrap_or(0))
            .or_default()
            .push(node);
    }
    let mut out = format!(
        "<h1>Plan: {} nodes in {} levels</h1><p>Environment <strong>{}</strong>, target <strong>{}</strong>{}. No job exists yet.</p>",
        nodes.len(),
        levels.len(),
        escape(plan["environment"].as_str().unwrap_or("")),
        escape(plan["target"].as_str().unwrap_or("")),
        plan["concurrency"]
            .as_u64()
            .map(|c| format!(", at most {c} at once"))
            .unwrap_or_default(),
    );
    for warning in plan["warnings"].as_array().into_iter().flatten() {
        out.push_str(&html::notice("info", warning.as_str().unwrap_or("")));
    }
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    out.push_str("<form class=\"confirm\" method=\"post\" action=\"/console/run\">");
    for name in FIELDS {
        if let Some(value) = form.get(name) {
            let _ = write!(
                out,
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            );
        }
    }
    let _ = write!(
        out,
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"request_id\" value=\"console-{request_id}\"><button type=\"submit\">Create the job</button> <a href=\"/console/run\">Change</a></form>",
        escape(csrf)
    );
    out.push_str("<ol class=\"plan-levels\">");
    let mut shown = 0usize;
    for (level, members) in &levels {
        let _ = write!(
            out,
            "<li><h3>Level {} <span class=\"sub\">{} nodes</span></h3><ul class=\"chips\">",
            level + 1,
            members.len()
        );
        for node in members {
            if shown >= PREVIEW_NODES_SHOWN {
                break;
            }
            shown += 1;
            let after: Vec<&str> = node["depends_on"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let components: Vec<String> = node["components"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["component"].as_str().map(str::to_string))
                .collect();
            let _ = write!(
                out,
                "<li title=\"{}\">{}{}</li>",
                escape(&if after.is_empty() {
                    "no predecessor".to_string()
                } else {
                    format!("after {}", after.join(", "))
                }),
                escape(node["name"].as_str().unwrap_or("")),
                if components.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<span class=\"sub\"> {}</span>",
                        escape(&components.join(", "))
                    )
                }
            );
        }
        out.push_str("</ul></li>");
    }
    out.push_str("</ol>");
    if nodes.len() > shown {
        let _ = write!(
            out,
            "<p class=\"hint\">{} more nodes not listed.</p>",
            nodes.len() - shown
        );
    }
    if let Some(rendered) = plan["rendered"].as_str() {
        let _ = write!(
            out,
            "<details><summary>As <code>puppet job plan</code> prints it</summary><pre>{}</pre></details>",
            escape(rendered)
        );
    }
    out
}

pub async fn submit(State(console): State<Arc<ConsoleState>>, request: Request) -> Response {
    let (session, form, deploy) = match posted_run(&console, request).await {
        Ok(posted) => posted,
        Err(response) => return response,
    };
    let request_id = form.get("request_id").cloned().unwrap_or_default();
    let headers: Vec<(&str, &str)> = if request_id.is_empty() {
        Vec::new()
    } else {
        vec![("x-porch-request-id", request_id.as_str())]
    };
    match console
        .api
        .post(
            &session.caller,
            "/orchestrator/v1/command/deploy",
            &deploy,
            &headers,
        )
        .await
    {
        Ok(answer) => {
            let name = answer["job"]["name"].as_str().unwrap_or("").to_string();
            Redirect::to(&format!("/console/jobs/{}", html::url_component(&name))).into_response()
        }
        Err(failure) if failure.is_unauthenticated() => {
            error_page(&console, Some(&session), &failure)
        }
        Err(failure) => {
            form_with_error(&console, &session, &form, failure.status, &failure.msg).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_run_form_becomes_the_apis_deploy_body() {
        let body = deploy_body(&form(&[
            ("environment", "production"),
            ("nodes", "web1, web2\nweb3"),
            ("noop", "on"),
            ("concurrency", "2"),
        ]))
        .unwrap();
        assert_eq!(
            body,
            json!({"environment": "production", "scope": {"nodes": ["web1", "web2", "web3"]}, "noop": true, "concurrency": 2})
        );
    }

    #[test]
    fn a_run_form_needs_exactly_one_target_and_a_numeric_concurrency() {
        assert!(deploy_body(&form(&[("environment", "production")])).is_err());
        assert!(
            deploy_body(&form(&[("nodes", "a"), ("application", "Lamp")]))
                .unwrap_err()
                .contains("only one")
        );
        assert!(
            deploy_body(&form(&[("nodes", "a"), ("concurrency", "many")]))
                .unwrap_err()
                .contains("\"many\"")
        );
    }
}
