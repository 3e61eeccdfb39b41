//! Where the client finds the orchestrator: flags, then `PORCH_SERVICE_URL`, then PE's
//! `orchestrator.conf` (per-user over global), then `http://127.0.0.1:8143`.

use clap::Args;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const GLOBAL_CONF: &str = "/etc/puppetlabs/client-tools/orchestrator.conf";
pub const DEFAULT_SERVICE_URL: &str = "http://127.0.0.1:8143";

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Orchestrator URLs (comma-separated or repeated); the client fails over between them.
    #[arg(long, global = true, value_delimiter = ',')]
    pub service_url: Vec<String>,
    /// RBAC token file sent as X-Authentication (default ~/.puppetlabs/token, if present).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

/// Settings resolved from every source.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service_urls: Vec<String>,
    pub environment: Option<String>,
    pub token: Option<String>,
}

fn user_conf() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".puppetlabs/client-tools/orchestrator.conf"))
}

/// `{"options": {"service-url": ..., "environment": ...}}`; errors name the file.
pub fn read_conf(path: &Path) -> Result<Option<(Option<String>, Option<String>)>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    let options = value
        .get("options")
        .ok_or_else(|| format!("{}: expected an object with \"options\"", path.display()))?;
    let get = |key: &str| -> Result<Option<String>, String> {
        match options.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "{}: \"{key}\" must be a string, found {other}",
                path.display()
            )),
        }
    };
    Ok(Some((get("service-url")?, get("environment")?)))
}

pub fn resolve(args: &GlobalArgs) -> Result<Settings, String> {
    resolve_from(
        args,
        Path::new(GLOBAL_CONF),
        user_conf().as_deref(),
        std::env::var("PORCH_SERVICE_URL").ok(),
    )
}

pub fn resolve_from(
    args: &GlobalArgs,
    global: &Path,
    user: Option<&Path>,
    env_url: Option<String>,
) -> Result<Settings, String> {
    let mut url = None;
    let mut environment = None;
    for path in [Some(global), user].into_iter().flatten() {
        if let Some((u, e)) = read_conf(path)? {
            url = u.or(url);
            environment = e.or(environment);
        }
    }
    let urls: Vec<String> = if !args.service_url.is_empty() {
        args.service_url.clone()
    } else if let Some(env_url) = env_url {
        env_url.split(',').map(str::to_string).collect()
    } else if let Some(url) = url {
        url.split(',').map(str::to_string).collect()
    } else {
        vec![DEFAULT_SERVICE_URL.to_string()]
    };
    let urls: Vec<String> = urls
        .into_iter()
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    for url in &urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--service-url: {url:?} must start with http:// or https://"
            ));
        }
    }
    if urls.is_empty() {
        return Err("--service-url: no URL given".into());
    }
    let token_path = args
        .token_file
        .clone()
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".puppetlabs/token")));
    let token = match token_path {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(t) => Some(t.trim().to_string()),
            Err(_) if args.token_file.is_none() => None,
            Err(e) => return Err(format!("--token-file {}: {e}", path.display())),
        },
        None => None,
    };
    Ok(Settings {
        service_urls: urls,
        environment,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_user_over_global_conf() {
        let dir = tempfile::tempdir().unwrap();
        let global = dir.path().join("global.conf");
        let user = dir.path().join("user.conf");
        std::fs::write(
            &global,
            r#"{"options":{"service-url":"http://g:8143","environment":"staging"}}"#,
        )
        .unwrap();
        std::fs::write(
            &user,
            r#"{"options":{"service-url":"http://u:8143,http://v:8143"}}"#,
        )
        .unwrap();
        let none = GlobalArgs::default();
        let s = resolve_from(&none, &global, Some(&user), None).unwrap();
        assert_eq!(s.service_urls, vec!["http://u:8143", "http://v:8143"]);
        assert_eq!(s.environment.as_deref(), Some("staging"));
        let flags = GlobalArgs {
            service_url: vec!["http://f:1".into()],
            ..Default::default()
        };
        assert_eq!(
            resolve_from(&flags, &global, Some(&user), None)
                .unwrap()
                .service_urls,
            vec!["http://f:1"]
        );
        let missing = dir.path().join("missing");
        assert_eq!(
            resolve_from(&none, &missing, None, None)
                .unwrap()
                .service_urls,
            vec![DEFAULT_SERVICE_URL]
        );
    }

    #[test]
    fn malformed_conf_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("orchestrator.conf");
        std::fs::write(&bad, "{oops").unwrap();
        let err = resolve_from(&GlobalArgs::default(), &bad, None, None).unwrap_err();
        assert!(
            err.contains("orchestrator.conf") && err.contains("not valid JSON"),
            "{err}"
        );
    }
}
