//! The cluster page: every member with its role, datacenter, term, indices, lag and last contact, the
//! leader, connected agents, and a log of role changes that the script fills from each
//! member's own live view (`/console/live/node`), so an election shows as it happens.

use super::html::{self, Tab, escape};
use super::{ConsoleState, session_or_return};
use axum::extract::{Request, State};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use std::fmt::Write;
use std::sync::Arc;

/// Connected agents listed on the page (the count is always whole).
const AGENTS_LISTED_MAX: usize = 500;

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "–".to_string(),
        Value::String(s) => escape(s),
        other => escape(&other.to_string()),
    }
}

pub async fn show(State(console): State<Arc<ConsoleState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let session = session_or_return!(console, parts);
    let own = super::live::node_view_json(&console);
    // The leader's view of replication; during an election there is none to ask.
    let leader_view = console
        .api
        .get(&session.caller, "/orchestrator/v1/cluster")
        .await;
    let inventory = console
        .api
        .get(&session.caller, "/orchestrator/v1/inventory")
        .await;
    let mut body = String::from("<h1>Cluster</h1>");
    let _ = write!(
        body,
        "<p id=\"leader-line\">Leader: <strong id=\"leader\">{}</strong>, term <strong id=\"term\">{}</strong> (as node {} sees it).</p>",
        own["leader"]
            .as_u64()
            .map_or("none (election under way)".to_string(), |l| format!(
                "node {l}"
            )),
        own["term"],
        own["node_id"],
    );
    if let Err(failure) = &leader_view {
        body.push_str(&html::notice(
            "error",
            &format!("The leader's view is not available: {}", failure.msg),
        ));
    }
    body.push_str("<div class=\"scroll\"><table id=\"members\" class=\"members\"><caption class=\"sr\">Members</caption><thead><tr><th scope=\"col\">Node</th><th scope=\"col\">Address</th><th scope=\"col\">Role</th><th scope=\"col\">Datacenter</th><th scope=\"col\">Term</th><th scope=\"col\">Leader seen</th><th scope=\"col\">Last log</th><th scope=\"col\">Commit</th><th scope=\"col\">Applied</th><th scope=\"col\">Lag</th><th scope=\"col\">Last contact</th><th scope=\"col\">Agents</th></tr></thead><tbody>");
    let leader_members: Vec<Value> = leader_view
        .as_ref()
        .ok()
        .and_then(|v| v["members"].as_array().cloned())
        .unwrap_or_default();
    let members = own["members"].as_object().cloned().unwrap_or_default();
    for (id, url) in &members {
        let mine = own["node_id"].to_string() == *id;
        let from_leader = leader_members
            .iter()
            .find(|m| m["id"].to_string() == *id)
            .cloned()
            .unwrap_or(Value::Null);
        let role = if mine {
            own["role"].clone()
        } else {
            from_leader["role"].clone()
        };
        let _ = write!(
            body,
            "<tr id=\"member-{id}\" data-url=\"{url}\" class=\"r-{rolec}\"><th scope=\"row\">{id}</th><td><a href=\"{url}/console/cluster\">{url}</a></td><td class=\"role\">{role}</td><td class=\"datacenter\">{datacenter}</td><td class=\"term\">{term}</td><td class=\"leader\">{leader}</td><td class=\"log\">{log}</td><td class=\"commit\">{commit}</td><td class=\"applied\">{applied}</td><td class=\"lag\">{lag}</td><td class=\"contact\">{contact}</td><td class=\"agents\">{agents}</td></tr>",
            url = escape(url.as_str().unwrap_or("")),
            rolec = escape(role.as_str().unwrap_or("unknown")),
            role = cell(&role),
            datacenter = cell(&from_leader["datacenter"]),
            term = if mine {
                cell(&own["term"])
            } else {
                "–".into()
            },
            leader = if mine {
                cell(&own["leader"])
            } else {
                "–".into()
            },
            log = if mine {
                cell(&own["last_log_index"])
            } else {
                cell(&from_leader["last_log_index"])
            },
            commit = if mine {
                cell(&own["committed_index"])
            } else {
                "–".into()
            },
            applied = if mine {
                cell(&own["applied_index"])
            } else {
                cell(&from_leader["applied_index"])
            },
            lag = cell(&from_leader["lag"]),
            contact = if mine {
                own["contact_age_ms"]
                    .as_u64()
                    .map_or("–".into(), |ms| format!("{ms} ms ago"))
            } else {
                "–".into()
            },
            agents = if mine {
                cell(&own["agents_connected"])
            } else {
                "–".into()
            },
        );
    }
    body.push_str("</tbody></table></div>");
    body.push_str("<p class=\"hint\">Each row is that node's own view, live; lag is the leader's count of entries the member lacks; last contact is a follower's last word from the leader (a leader's: from a quorum).</p>");
    body.push_str("<section aria-label=\"role changes\"><h2>Role changes</h2><ol id=\"elections\" class=\"events\" aria-live=\"polite\"></ol></section>");
    let agents: Vec<Value> = inventory
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default();
    let _ = write!(
        body,
        "<section aria-label=\"agents\"><h2>Connected agents ({})</h2>",
        agents.len()
    );
    if agents.is_empty() {
        body.push_str(&html::notice("info", "No agent is connected."));
    } else {
        body.push_str("<ul class=\"chips\">");
        for agent in agents.iter().take(AGENTS_LISTED_MAX) {
            let _ = write!(
                body,
                "<li>{} <span class=\"sub\">via node {}</span></li>",
                cell(&agent["name"]),
                cell(&agent["orchestrator_node"])
            );
        }
        body.push_str("</ul>");
        if agents.len() > AGENTS_LISTED_MAX {
            let _ = write!(
                body,
                "<p class=\"hint\">and {} more</p>",
                agents.len() - AGENTS_LISTED_MAX
            );
        }
    }
    body.push_str("</section>");
    let member_urls = console.member_urls();
    Html(html::page(
        &session.shell(&console, "Cluster", Tab::Cluster, &member_urls),
        &body,
    ))
    .into_response()
}
