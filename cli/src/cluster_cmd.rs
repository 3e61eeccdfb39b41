//! `porch cluster status|add|remove|promote|transfer-leader|drain|undrain`.

use crate::client::connect;
use crate::config::GlobalArgs;
use crate::exit_code;
use crate::job_cmd::{Format, table};
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Leader, term and every member's role and replication progress.
    Status {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Add a node (`4=[certname@]host:port`): it joins as a learner, catches up, then votes
    /// (with `--learner`, it stays a learner: it never votes nor counts in a quorum).
    Add {
        member: String,
        /// A non-voting member: replicates the log, serves API reads and agent sessions.
        #[arg(long)]
        learner: bool,
        /// Its datacenter label (its own `--datacenter`, if it has one, wins).
        #[arg(long)]
        datacenter: Option<String>,
    },
    /// Remove a member (voter or learner).
    Remove { id: u64 },
    /// Make a learner a voter, once it has caught up.
    Promote { id: u64 },
    /// Hand leadership to another voter.
    TransferLeader { id: u64 },
    /// Send a node's agents elsewhere and refuse new ones, before maintenance.
    Drain { id: u64 },
    /// End a node's drain: it accepts agent sessions again.
    Undrain { id: u64 },
}

pub async fn run_cluster(command: ClusterCommand, global: &GlobalArgs) -> ExitCode {
    let (_, client) = match connect(global) {
        Ok(connected) => connected,
        Err(status) => return status,
    };
    let result = match command {
        ClusterCommand::Status { format } => match client.get("/cluster").await {
            Ok(status) if format == Format::Json => {
                crate::client::print_json(&status);
                Ok(())
            }
            Ok(status) => {
                print!("{}", render_status(&status));
                Ok(())
            }
            Err(e) => Err(e),
        },
        ClusterCommand::Add {
            member,
            learner,
            datacenter,
        } => {
            let (id, addr) = match porch_node::config::parse_member(&member) {
                Ok(parsed) => parsed,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(exit_code::USAGE);
                }
            };
            if let Some(Err(e)) = datacenter
                .as_deref()
                .map(porch_node::config::validate_datacenter)
            {
                eprintln!("error: --datacenter: {e}");
                return ExitCode::from(exit_code::USAGE);
            }
            let body =
                json!({"id": id, "addr": addr, "datacenter": datacenter, "learner": learner});
            client.post("/cluster/members", &body).await.map(|_| {
                let role = if learner {
                    "a learner"
                } else {
                    "a voting member"
                };
                println!("node {id} ({addr}) added as {role}")
            })
        }
        ClusterCommand::Remove { id } => client
            .delete(&format!("/cluster/members/{id}"))
            .await
            .map(|_| println!("node {id} removed")),
        ClusterCommand::Promote { id } => client
            .post(&format!("/cluster/members/{id}/promote"), &json!({}))
            .await
            .map(|_| println!("node {id} now votes")),
        ClusterCommand::TransferLeader { id } => client
            .post("/cluster/leader", &json!({"id": id}))
            .await
            .map(|_| println!("node {id} now leads")),
        ClusterCommand::Drain { id } => client
            .post(&format!("/cluster/members/{id}/drain"), &json!({}))
            .await
            .map(|_| {
                println!(
                    "node {id} is draining: its agents move to other nodes within a heartbeat (5 s)"
                )
            }),
        ClusterCommand::Undrain { id } => client
            .post(&format!("/cluster/members/{id}/undrain"), &json!({}))
            .await
            .map(|_| println!("node {id} accepts agent sessions again")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The human table of `porch cluster status`.
fn render_status(status: &Value) -> String {
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = status["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mut role = text(&m["role"]);
            if m["draining"] == Value::Bool(true) {
                role.push_str(" (draining)");
            }
            if m["reachable"] == Value::Bool(false) {
                role.push_str(" (unreachable)");
            }
            vec![
                text(&m["id"]),
                text(&m["addr"]),
                role,
                text(&m["datacenter"]),
                text(&m["lag"]),
                text(&m["apply_lag"]),
                m["last_contact_ms"]
                    .as_u64()
                    .map_or("-".into(), |ms| format!("{ms} ms")),
                text(&m["snapshot_index"]),
                m["disk_bytes"]
                    .as_u64()
                    .map_or("-".into(), |b| format!("{:.1} MB", b as f64 / 1e6)),
                text(&m["format_version_max"]),
            ]
        })
        .collect();
    format!(
        "leader: {}   term: {}   committed: {}   format version: {}\n{}",
        text(&status["leader"]),
        text(&status["term"]),
        text(&status["committed_index"]),
        text(&status["format_version"]),
        table(
            &[
                "ID",
                "ADDR",
                "ROLE",
                "DATACENTER",
                "LOG LAG",
                "APPLY LAG",
                "LAST CONTACT",
                "SNAPSHOT",
                "DISK",
                "READS FORMAT"
            ],
            &rows
        )
    )
}
