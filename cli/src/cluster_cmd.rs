//! `porch cluster status|add|remove`.

use crate::client::Client;
use crate::config::{GlobalArgs, resolve};
use crate::exit_code;
use crate::job_cmd::{Format, table};
use clap::Subcommand;
use serde_json::json;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Leader, term and every member's role and replication progress.
    Status {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Add a node (`4=host:port`): it joins as a learner, catches up, then votes.
    Add { member: String },
    /// Remove a voting member.
    Remove { id: u64 },
}

pub async fn run_cluster(command: ClusterCommand, global: &GlobalArgs) -> ExitCode {
    let settings = match resolve(global) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit_code::USAGE);
        }
    };
    let client = match Client::new(&settings) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let result = match command {
        ClusterCommand::Status { format } => match client.get("/cluster").await {
            Ok(status) if format == Format::Json => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
                Ok(())
            }
            Ok(status) => {
                println!("leader: {}   term: {}", status["leader"], status["term"]);
                let rows: Vec<Vec<String>> = status["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        vec![
                            m["id"].to_string(),
                            m["addr"].as_str().unwrap_or("").to_string(),
                            m["role"].as_str().unwrap_or("").to_string(),
                            m["voter"].to_string(),
                            m["last_log_index"].to_string(),
                            m["last_applied_index"].to_string(),
                            m["lag"].to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["ID", "ADDR", "ROLE", "VOTER", "LAST LOG", "APPLIED", "LAG"],
                        &rows
                    )
                );
                Ok(())
            }
            Err(e) => Err(e),
        },
        ClusterCommand::Add { member } => {
            let (id, addr) = match porch_node::config::parse_member(&member) {
                Ok(parsed) => parsed,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(exit_code::USAGE);
                }
            };
            client
                .post("/cluster/members", &json!({"id": id, "addr": addr}))
                .await
                .map(|_| println!("node {id} ({addr}) added as a voting member"))
        }
        ClusterCommand::Remove { id } => client
            .delete(&format!("/cluster/members/{id}"))
            .await
            .map(|_| println!("node {id} removed")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
