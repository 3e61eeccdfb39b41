//! `puppet-app show` (and `porch app show`).

use crate::client::Client;
use crate::config::{GlobalArgs, resolve};
use crate::exit_code;
use crate::job_cmd::Format;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Every application and instance of an environment, or one (`Lamp`, `Lamp[prod]`).
    Show {
        application: Option<String>,
        #[arg(long, short = 'e')]
        environment: Option<String>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run_app(command: AppCommand, global: &GlobalArgs) -> ExitCode {
    let settings = match resolve(global) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit_code::USAGE);
        }
    };
    let client = Client::new(&settings);
    let AppCommand::Show {
        application,
        environment,
        format,
    } = command;
    let environment = environment
        .or(settings.environment.clone())
        .unwrap_or_else(|| "production".into());
    let env = encode(&environment);
    let result = if format == Format::Json {
        client
            .get(&format!("/environments/{env}/instances"))
            .await
            .map(|v| {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            })
    } else {
        let query = application
            .map(|a| format!("?application={}", encode(&a)))
            .unwrap_or_default();
        client
            .get(&format!("/environments/{env}/app_show{query}"))
            .await
            .map(|v| print!("{}", v["rendered"].as_str().unwrap_or_default()))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
