//! The applications page: the environments, the applications each defines, and each
//! instance's components, nodes and produces/consumes edges as a picture.

use super::app_graph::{GraphComponent, instance_svg};
use super::html::{self, Tab, escape, url_component};
use super::{ConsoleState, session_or_return};
use axum::extract::{Request, State};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

pub async fn show(State(console): State<Arc<ConsoleState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let session = session_or_return!(console, parts);
    let params: BTreeMap<String, String> = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let environments: Vec<String> = match console
        .api
        .get(&session.caller, "/orchestrator/v1/environments")
        .await
    {
        Ok(list) => list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["name"].as_str().map(str::to_string))
            .collect(),
        Err(failure) => return super::error_page(&console, Some(&session), &failure),
    };
    let chosen = params
        .get("environment")
        .cloned()
        .or_else(|| environments.iter().find(|e| *e == "production").cloned())
        .or_else(|| environments.first().cloned());
    let mut body =
        String::from("<h1>Applications</h1><nav class=\"tabs\" aria-label=\"environments\">");
    for name in &environments {
        let current = if Some(name) == chosen.as_ref() {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            body,
            "<a href=\"/console/apps?environment={}\"{current}>{}</a>",
            url_component(name),
            escape(name)
        );
    }
    body.push_str("</nav>");
    match &chosen {
        None => body.push_str(&html::notice(
            "info",
            "No environment with application code on this node (--codedir).",
        )),
        Some(environment) => render_environment(&console, &session, environment, &mut body).await,
    }
    let members = console.member_urls();
    Html(html::page(
        &session.shell(&console, "Applications", Tab::Applications, &members),
        &body,
    ))
    .into_response()
}

async fn render_environment(
    console: &ConsoleState,
    session: &super::session::Session,
    environment: &str,
    body: &mut String,
) {
    let base = format!(
        "/orchestrator/v1/environments/{}",
        url_component(environment)
    );
    let applications = console
        .api
        .get(&session.caller, &format!("{base}/applications"))
        .await;
    let instances = console
        .api
        .get(&session.caller, &format!("{base}/instances"))
        .await;
    let (applications, instances) = match (applications, instances) {
        (Ok(a), Ok(i)) => (a, i),
        (Err(failure), _) | (_, Err(failure)) => {
            body.push_str(&html::notice("error", &failure.msg));
            return;
        }
    };
    let applications = applications["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if applications.is_empty() {
        body.push_str(&html::notice(
            "info",
            &format!("Environment {environment} defines no application."),
        ));
        return;
    }
    for application in &applications {
        let name = application["name"].as_str().unwrap_or("");
        let _ = write!(
            body,
            "<section class=\"application\"><h2>{}</h2><p class=\"sub\">{}:{}</p>",
            escape(name),
            escape(application["file"].as_str().unwrap_or("")),
            application["line"]
        );
        if let Some(parameters) = application["parameters"]
            .as_object()
            .filter(|p| !p.is_empty())
        {
            body.push_str("<p>Parameters: ");
            let shown: Vec<String> = parameters
                .iter()
                .map(|(k, v)| match v {
                    Value::Null => format!("<code>${}</code>", escape(k)),
                    v => format!("<code>${} = {}</code>", escape(k), escape(&v.to_string())),
                })
                .collect();
            body.push_str(&shown.join(", "));
            body.push_str("</p>");
        }
        let mine: Vec<&Value> = instances["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["type"].as_str() == Some(name))
            .collect();
        if mine.is_empty() {
            body.push_str(&html::notice("info", "No instance in the site."));
        }
        for instance in mine {
            let title = format!(
                "{}[{}]",
                instance["type"].as_str().unwrap_or(""),
                instance["title"].as_str().unwrap_or("")
            );
            let components: Vec<GraphComponent> = instance["components"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| GraphComponent {
                    label: format!(
                        "{}['{}']",
                        c["type"].as_str().unwrap_or(""),
                        c["title"].as_str().unwrap_or("")
                    ),
                    node: c["node"].as_str().unwrap_or("").to_string(),
                    produces: strings(&c["produces"]),
                    consumes: strings(&c["consumes"]),
                })
                .collect();
            let _ = write!(
                body,
                "<h3>{t}</h3><div class=\"scroll\">{svg}</div><p><a href=\"/console/run?environment={env}&amp;application={app}\">Run {t}…</a></p>",
                t = escape(&title),
                svg = instance_svg(&title, &components),
                env = url_component(environment),
                app = url_component(&title),
            );
            body.push_str("<table class=\"components\"><thead><tr><th scope=\"col\">Component</th><th scope=\"col\">Node</th><th scope=\"col\">Produces</th><th scope=\"col\">Consumes</th></tr></thead><tbody>");
            for c in &components {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&c.label),
                    escape(&c.node),
                    escape(&c.produces.join(", ")),
                    escape(&c.consumes.join(", "))
                );
            }
            body.push_str("</tbody></table>");
        }
        body.push_str("</section>");
    }
}
