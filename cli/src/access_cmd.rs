//! `puppet-access` (and `porch access`): log in for an RBAC token, show, revoke or delete it.
//!
//! The token lives in a file (default `~/.puppetlabs/token`) written with mode 0600; every
//! other client command sends it as `X-Authentication`. The password is read from the terminal
//! without echo, or as one line from standard input when that is not a terminal (scripts).

use crate::client::{Client, ClientError, report};
use crate::config::{GlobalArgs, Settings, read_token, resolve_access};
use crate::exit_code;
use crate::job_cmd::Format;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

/// The longest password line read from standard input; a longer one is refused rather than
/// buffered without bound.
pub const PASSWORD_BYTES_MAX: usize = 4096;

#[derive(Subcommand, Debug)]
pub enum AccessCommand {
    /// Ask for a password and save an RBAC token for the other commands.
    Login(LoginArgs),
    /// Print the saved token.
    Show,
    /// Show which user the saved token belongs to, and its roles.
    Whoami {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Revoke the saved token on the server and delete the token file.
    Revoke,
    /// Delete the token file (the token itself stays valid until it expires).
    DeleteTokenFile,
}

#[derive(Args, Debug, Clone)]
pub struct LoginArgs {
    /// The user to log in as (default: $USER).
    #[arg(value_name = "USERNAME")]
    pub user: Option<String>,
    /// The user to log in as (default: $USER).
    #[arg(long, conflicts_with = "user")]
    pub username: Option<String>,
    /// How long the token stays valid: "30m", "1h", "2d".
    #[arg(long, default_value = "1h")]
    pub lifetime: String,
    /// A label to recognise the token by.
    #[arg(long)]
    pub label: Option<String>,
    /// Print the token instead of saving it.
    #[arg(long)]
    pub print: bool,
}

/// Reads one password line from `reader`: the line ending is dropped, nothing else is.
pub fn read_password_line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    std::io::Read::take(&mut *reader, PASSWORD_BYTES_MAX as u64 + 2)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(format!(
            "the password on standard input is longer than {PASSWORD_BYTES_MAX} bytes"
        ));
    }
    if password.is_empty() {
        return Err("no password on standard input".into());
    }
    Ok(password.to_string())
}

/// A password: asked on the terminal without echo, or one line of standard input when it is
/// not a terminal or `from_stdin` is set.
pub fn read_password(prompt: &str, from_stdin: bool) -> Result<String, String> {
    if !from_stdin && std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password(prompt)
            .map_err(|e| format!("cannot read the password from the terminal: {e}"))?;
        if password.is_empty() {
            return Err("empty password".into());
        }
        Ok(password)
    } else {
        read_password_line(&mut std::io::stdin().lock())
    }
}

/// Writes `token` to `path` with mode 0600 (the directory, if created, 0700). The file is
/// written beside and renamed over the old one, so a reader never sees half a token.
pub fn write_token_file(path: &Path, token: &str) -> Result<(), String> {
    let named = |e: std::io::Error| format!("token file {}: {e}", path.display());
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(named)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| format!("token file {}: not a file name", path.display()))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = (|| {
        let mut file = options.open(&temporary)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(named)
}

fn error(message: String, code: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

fn token_path_text(settings: &Settings) -> String {
    settings
        .token_file
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(no token file: HOME is not set)".into())
}

pub async fn run_access(command: AccessCommand, global: &GlobalArgs) -> ExitCode {
    let mut settings = match resolve_access(global) {
        Ok(s) => s,
        Err(e) => return error(e, exit_code::USAGE),
    };
    if let AccessCommand::Login(args) = command {
        return login(&settings, &args).await;
    }
    if let AccessCommand::DeleteTokenFile = command {
        return delete_token_file(&settings);
    }
    settings.token = match read_token(&settings, false) {
        Ok(Some(token)) => Some(token),
        Ok(None) => {
            return error(
                format!(
                    "no token in {}; run 'puppet-access login' (or 'porch access login')",
                    token_path_text(&settings)
                ),
                exit_code::NOT_AUTHENTICATED,
            );
        }
        Err(e) => return error(e, exit_code::USAGE),
    };
    match command {
        AccessCommand::Show => {
            println!("{}", settings.token.as_deref().unwrap_or_default());
            ExitCode::SUCCESS
        }
        AccessCommand::Whoami { format } => whoami(&settings, format).await,
        AccessCommand::Revoke => revoke(&settings).await,
        AccessCommand::Login(_) | AccessCommand::DeleteTokenFile => unreachable!("handled above"),
    }
}

fn login_name(args: &LoginArgs) -> Option<String> {
    args.username
        .clone()
        .or_else(|| args.user.clone())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|u| !u.is_empty())
}

async fn login(settings: &Settings, args: &LoginArgs) -> ExitCode {
    if let Err(e) = humantime::parse_duration(&args.lifetime) {
        return error(
            format!(
                "--lifetime {:?}: {e} (examples: 30m, 1h, 2d)",
                args.lifetime
            ),
            exit_code::USAGE,
        );
    }
    let Some(login) = login_name(args) else {
        return error(
            "no user name: pass --username (USER is not set)".into(),
            exit_code::USAGE,
        );
    };
    if !args.print && settings.token_file.is_none() {
        return error(
            "no token file: pass --token-file (HOME is not set)".into(),
            exit_code::USAGE,
        );
    }
    // Set up TLS first: a CA problem is reported before the password is asked.
    let anonymous = Settings {
        token: None,
        ..settings.clone()
    };
    let client = match Client::new(&anonymous) {
        Ok(c) => c,
        Err(e) => return report(e),
    };
    let password = match read_password(&format!("Password for {login}: "), false) {
        Ok(p) => p,
        Err(e) => return error(e, exit_code::USAGE),
    };
    let mut body = json!({"login": login, "password": password, "lifetime": args.lifetime});
    if let Some(label) = &args.label {
        body["label"] = json!(label);
    }
    let reply = match client
        .rbac(reqwest::Method::POST, "/v1/auth/token", Some(&body))
        .await
    {
        Ok(reply) => reply,
        Err(ClientError::Api {
            status: 401, msg, ..
        }) => return error(format!("login failed: {msg}"), exit_code::NOT_AUTHENTICATED),
        Err(e) => return report(e),
    };
    let Some(token) = reply["token"].as_str().filter(|t| !t.is_empty()) else {
        return error(
            "the server answered without a token".into(),
            exit_code::API_ERROR,
        );
    };
    if args.print {
        println!("{token}");
        return ExitCode::SUCCESS;
    }
    let path = settings.token_file.as_deref().expect("checked above");
    match write_token_file(path, token) {
        Ok(()) => {
            println!("Access token saved to: {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => error(e, exit_code::USAGE),
    }
}

fn delete_token_file(settings: &Settings) -> ExitCode {
    let Some(path) = &settings.token_file else {
        return error(
            "no token file: pass --token-file (HOME is not set)".into(),
            exit_code::USAGE,
        );
    };
    match std::fs::remove_file(path) {
        Ok(()) => {
            println!("Deleted {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("No token file at {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => error(
            format!("token file {}: {e}", path.display()),
            exit_code::USAGE,
        ),
    }
}

async fn revoke(settings: &Settings) -> ExitCode {
    let client = match Client::new(settings) {
        Ok(c) => c,
        Err(e) => return report(e),
    };
    let token = settings.token.clone().unwrap_or_default();
    let body = json!({"revoke_tokens": [token]});
    let note = match client
        .rbac(reqwest::Method::POST, "/v2/tokens", Some(&body))
        .await
    {
        Ok(_) => "Token revoked".to_string(),
        // An expired, revoked or unknown token can do nothing any more: only the file remains.
        Err(ClientError::Api {
            status: 401, msg, ..
        }) => format!("The token was no longer valid ({msg})"),
        Err(e) => return report(e),
    };
    let path = settings.token_file.as_deref().expect("a token was read");
    match std::fs::remove_file(path) {
        Ok(()) => {
            println!("{note}; deleted {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("{note}");
            ExitCode::SUCCESS
        }
        Err(e) => error(
            format!("{note}, but the token file {}: {e}", path.display()),
            exit_code::USAGE,
        ),
    }
}

async fn whoami(settings: &Settings, format: Format) -> ExitCode {
    let client = match Client::new(settings) {
        Ok(c) => c,
        Err(e) => return report(e),
    };
    let user: Value = match client
        .rbac(reqwest::Method::GET, "/v1/users/current", None)
        .await
    {
        Ok(user) => user,
        Err(e) => return report(e),
    };
    if format == Format::Json {
        crate::client::print_json(&user);
    } else {
        let roles: Vec<&str> = user["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{} ({}), roles: {}",
            user["login"].as_str().unwrap_or("?"),
            user["display_name"].as_str().unwrap_or(""),
            roles.join(", ")
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_one_line_of_stdin_without_its_line_ending() {
        let mut input = "s3cret pass \r\nnext line\n".as_bytes();
        assert_eq!(read_password_line(&mut input).unwrap(), "s3cret pass ");
        let mut input = "no newline".as_bytes();
        assert_eq!(read_password_line(&mut input).unwrap(), "no newline");
        let mut input = "\n".as_bytes();
        assert!(
            read_password_line(&mut input)
                .unwrap_err()
                .contains("no password")
        );
        let mut input = "".as_bytes();
        assert!(read_password_line(&mut input).is_err());
        let long = "x".repeat(PASSWORD_BYTES_MAX + 10);
        assert!(
            read_password_line(&mut long.as_bytes())
                .unwrap_err()
                .contains("longer than")
        );
    }

    #[cfg(unix)]
    #[test]
    fn token_file_is_written_0600_in_a_created_0700_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home/.puppetlabs/token");
        write_token_file(&path, "tok-1").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tok-1");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // Replacing a file that was readable by others leaves it 0600.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_token_file(&path, "tok-2").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tok-2");
        assert_eq!(mode(&path), 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("token")]);
    }

    #[test]
    fn login_name_prefers_the_flag_then_the_argument() {
        let args = LoginArgs {
            user: Some("arg".into()),
            username: None,
            lifetime: "1h".into(),
            label: None,
            print: false,
        };
        assert_eq!(login_name(&args).as_deref(), Some("arg"));
        let args = LoginArgs {
            username: Some("flag".into()),
            user: None,
            ..args
        };
        assert_eq!(login_name(&args).as_deref(), Some("flag"));
    }
}
