//! `puppet-app show` (and `porch app show`).

use crate::client::connect;
use crate::client::percent_encode as encode;
use crate::config::GlobalArgs;
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

pub async fn run_app(command: AppCommand, global: &GlobalArgs) -> ExitCode {
    let (settings, client) = match connect(global) {
        Ok(connected) => connected,
        Err(status) => return status,
    };
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
                crate::client::print_json(&v);
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
