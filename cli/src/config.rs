//! Where the client finds the orchestrator, which CA it trusts and which token it sends.
//!
//! Each setting comes from the first source that has it:
//! 1. flags (`--service-url`, `--cacert`, `--token-file`);
//! 2. `PORCH_SERVICE_URL` (URLs only);
//! 3. for `puppet-access`/`porch access` only: PE's `puppet-access.conf` (per-user over global);
//! 4. PE's `orchestrator.conf` (per-user over global);
//! 5. `./.porch-dev/orchestrator.conf` (written by `porch dev`), only when no PE conf file
//!    names a service URL: those describe a real installation, which a dev cluster's CA and
//!    token must not shadow;
//! 6. built-in defaults: `https://127.0.0.1:8143`, Puppet's CA `/etc/puppetlabs/puppet/ssl/certs/ca.pem`
//!    and, with it, its CRL `/etc/puppetlabs/puppet/ssl/crl.pem` (if present), `~/.puppetlabs/token`.
//!
//! Conf keys read (in `options` for orchestrator.conf, at the top level for puppet-access.conf):
//! `service-url`, `porch-service-urls`, `environment`, `noop`, `cacert` (puppet-access.conf:
//! `certificate-file`), `crl` (porch's), `token-file`.
//!
//! PE's tools require `service-url` to be one URL, so porch's failover list lives in a key they
//! ignore: `"porch-service-urls"` (an array, or a comma-separated string), preferred over
//! `service-url` within the same file.

use clap::Args;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const GLOBAL_CONF: &str = "/etc/puppetlabs/client-tools/orchestrator.conf";
pub const GLOBAL_ACCESS_CONF: &str = "/etc/puppetlabs/client-tools/puppet-access.conf";
pub const DEV_CONF: &str = ".porch-dev/orchestrator.conf";
pub const DEFAULT_SERVICE_URL: &str = "https://127.0.0.1:8143";
pub const PUPPET_CA_FILE: &str = "/etc/puppetlabs/puppet/ssl/certs/ca.pem";
pub const PUPPET_CRL_FILE: &str = "/etc/puppetlabs/puppet/ssl/crl.pem";

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Orchestrator URLs (comma-separated or repeated); the client fails over between them.
    #[arg(long, global = true, value_delimiter = ',')]
    pub service_url: Vec<String>,
    /// CA certificate (PEM) that signed the orchestrators' certificates; the only CA trusted
    /// (default: orchestrator.conf's "cacert", then /etc/puppetlabs/puppet/ssl/certs/ca.pem).
    #[arg(long, global = true, visible_alias = "ca-cert", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// CRL (PEM) of that CA: a revoked server certificate is refused (default: orchestrator.conf's
    /// "crl", then Puppet's /etc/puppetlabs/puppet/ssl/crl.pem when the CA is Puppet's default).
    #[arg(long, global = true, value_name = "FILE")]
    pub crl: Option<PathBuf>,
    /// RBAC token file sent as X-Authentication (default: orchestrator.conf's "token-file",
    /// then ~/.puppetlabs/token).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// Settings resolved from every source.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub service_urls: Vec<String>,
    pub environment: Option<String>,
    /// orchestrator.conf's `noop`: the default of `puppet-job run` when neither flag is given.
    pub noop: Option<bool>,
    /// The CA file to trust for https URLs; `None` when none was configured and Puppet's
    /// default does not exist.
    pub cacert: Option<PathBuf>,
    /// The CA's revocation list, checked against the server's certificate when present.
    pub crl: Option<PathBuf>,
    /// Where the token is read from and `puppet-access login` writes it.
    pub token_file: Option<PathBuf>,
    /// The token read from `token_file` (absent file or empty file: `None`).
    pub token: Option<String>,
}

/// The keys one conf file sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfFile {
    pub service_urls: Option<Vec<String>>,
    pub environment: Option<String>,
    pub noop: Option<bool>,
    pub cacert: Option<PathBuf>,
    pub crl: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
}

/// Which conf files are read, most important first within each group.
#[derive(Debug, Clone, Default)]
pub struct ConfPaths {
    /// puppet-access.conf files (user, global); empty for the orchestrator clients.
    pub access: Vec<PathBuf>,
    /// orchestrator.conf files (user, global).
    pub orchestrator: Vec<PathBuf>,
    /// `./.porch-dev/orchestrator.conf`.
    pub dev: Option<PathBuf>,
    /// The home directory, for `~/.puppetlabs/token`.
    pub home: Option<PathBuf>,
    /// Puppet's CA file, used when it exists and nothing else names one.
    pub puppet_ca: Option<PathBuf>,
    /// Puppet's CRL, used (when it exists) with Puppet's CA file when that is the default.
    pub puppet_crl: Option<PathBuf>,
}

impl ConfPaths {
    /// The real locations; `access` adds PE's puppet-access.conf files.
    pub fn system(access: bool) -> ConfPaths {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let user = |name: &str| {
            home.as_ref()
                .map(|h| h.join(".puppetlabs/client-tools").join(name))
        };
        ConfPaths {
            access: if access {
                user("puppet-access.conf")
                    .into_iter()
                    .chain([PathBuf::from(GLOBAL_ACCESS_CONF)])
                    .collect()
            } else {
                Vec::new()
            },
            orchestrator: user("orchestrator.conf")
                .into_iter()
                .chain([PathBuf::from(GLOBAL_CONF)])
                .collect(),
            dev: Some(PathBuf::from(DEV_CONF)),
            home: home.clone(),
            puppet_ca: Some(PathBuf::from(PUPPET_CA_FILE)),
            puppet_crl: Some(PathBuf::from(PUPPET_CRL_FILE)),
        }
    }
}

/// Reads one conf file: `{"options": {...}}` (orchestrator.conf) or the keys at the top level
/// (puppet-access.conf). A missing file is `None`; errors name the file and the key. Relative
/// paths in the file are taken relative to the file's directory.
pub fn read_conf(path: &Path) -> Result<Option<ConfFile>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    let options = match value.get("options") {
        Some(options) => options,
        None if value.is_object() => &value,
        None => {
            return Err(format!(
                "{}: expected an object with \"options\"",
                path.display()
            ));
        }
    };
    let string = |key: &str| -> Result<Option<String>, String> {
        match options.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "{}: \"{key}\" must be a string, found {other}",
                path.display()
            )),
        }
    };
    let file = |key: &str| -> Result<Option<PathBuf>, String> {
        Ok(string(key)?.filter(|s| !s.is_empty()).map(|s| {
            let p = PathBuf::from(s);
            match path.parent() {
                Some(dir) if p.is_relative() => dir.join(p),
                _ => p,
            }
        }))
    };
    let urls = match options.get("porch-service-urls") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(split_urls(s)),
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_string).ok_or_else(|| {
                        format!(
                            "{}: \"porch-service-urls\" must hold strings, found {item}",
                            path.display()
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(format!(
                "{}: \"porch-service-urls\" must be an array of URLs or a string, found {other}",
                path.display()
            ));
        }
    };
    let noop = match options.get("noop") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(format!(
                "{}: \"noop\" must be true or false, found {other}",
                path.display()
            ));
        }
    };
    Ok(Some(ConfFile {
        service_urls: urls
            .filter(|u| !u.is_empty())
            .or(string("service-url")?.map(|u| split_urls(&u))),
        environment: string("environment")?,
        noop,
        cacert: file("cacert")?.or(file("certificate-file")?),
        crl: file("crl")?,
        token_file: file("token-file")?,
    }))
}

fn split_urls(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// The base URL of a service URL: PE's puppet-access.conf names `https://host:4433/rbac-api`,
/// orchestrator.conf `https://host:8143`; porch serves both APIs on one port, so the API path
/// is dropped and each request adds its own.
pub fn base_url(url: &str) -> String {
    let mut base = url.trim().trim_end_matches('/');
    for suffix in [
        "/rbac-api/v1",
        "/rbac-api/v2",
        "/rbac-api",
        "/orchestrator/v1",
        "/orchestrator",
    ] {
        if let Some(stripped) = base.strip_suffix(suffix) {
            base = stripped.trim_end_matches('/');
            break;
        }
    }
    base.to_string()
}

/// Resolves the settings of the orchestrator clients and reads the token.
pub fn resolve(args: &GlobalArgs) -> Result<Settings, String> {
    let mut settings = resolve_from(
        args,
        &ConfPaths::system(false),
        std::env::var("PORCH_SERVICE_URL").ok(),
    )?;
    settings.token = read_token(&settings, args.token_file.is_some())?;
    Ok(settings)
}

/// Resolves the settings of `puppet-access`/`porch access` (puppet-access.conf first); the
/// token is not read: `login` writes it.
pub fn resolve_access(args: &GlobalArgs) -> Result<Settings, String> {
    resolve_from(
        args,
        &ConfPaths::system(true),
        std::env::var("PORCH_SERVICE_URL").ok(),
    )
}

/// The token in `settings.token_file`. A missing file is no token (the server then answers
/// 401, which says to log in), unless the file was named by a flag.
pub fn read_token(settings: &Settings, named_by_flag: bool) -> Result<Option<String>, String> {
    let Some(path) = &settings.token_file else {
        return Ok(None);
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named_by_flag => Ok(None),
        Err(e) => Err(format!("--token-file {}: {e}", path.display())),
    }
}

/// Resolution without reading the environment or the token (for tests).
pub fn resolve_from(
    args: &GlobalArgs,
    paths: &ConfPaths,
    env_url: Option<String>,
) -> Result<Settings, String> {
    let mut layers = Vec::new();
    for path in paths.access.iter().chain(&paths.orchestrator) {
        if let Some(conf) = read_conf(path)? {
            layers.push(conf);
        }
    }
    let pe_names_url = layers.iter().any(|l| l.service_urls.is_some());
    if let Some(dev) = paths.dev.as_deref().filter(|_| !pe_names_url)
        && let Some(conf) = read_conf(dev)?
    {
        layers.push(conf);
    }
    let urls: Vec<String> = if !args.service_url.is_empty() {
        args.service_url.clone()
    } else if let Some(env_url) = env_url.filter(|u| !u.trim().is_empty()) {
        split_urls(&env_url)
    } else if let Some(urls) = layers.iter().find_map(|l| l.service_urls.clone()) {
        urls
    } else {
        vec![DEFAULT_SERVICE_URL.to_string()]
    };
    let urls: Vec<String> = urls
        .iter()
        .map(|u| base_url(u))
        .filter(|u| !u.is_empty())
        .collect();
    for url in &urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--service-url: {url:?} must start with https:// (or http:// for a server run with --insecure-http)"
            ));
        }
    }
    if urls.is_empty() {
        return Err("--service-url: no URL given".into());
    }
    let named_cacert = args
        .cacert
        .clone()
        .or_else(|| layers.iter().find_map(|l| l.cacert.clone()));
    let puppet_ca = paths.puppet_ca.clone().filter(|p| p.exists());
    let crl = args
        .crl
        .clone()
        .or_else(|| layers.iter().find_map(|l| l.crl.clone()))
        .or_else(|| {
            // Puppet's CRL belongs to Puppet's CA, not to a CA named elsewhere.
            let default_ca = named_cacert.is_none() && puppet_ca.is_some();
            paths
                .puppet_crl
                .clone()
                .filter(|p| default_ca && p.exists())
        });
    let cacert = named_cacert.or(puppet_ca);
    let token_file = args
        .token_file
        .clone()
        .or_else(|| layers.iter().find_map(|l| l.token_file.clone()))
        .or_else(|| paths.home.as_ref().map(|h| h.join(".puppetlabs/token")));
    Ok(Settings {
        service_urls: urls,
        environment: layers.iter().find_map(|l| l.environment.clone()),
        noop: layers.iter().find_map(|l| l.noop),
        cacert,
        crl,
        token_file,
        token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        path.to_path_buf()
    }

    fn paths(dir: &Path) -> ConfPaths {
        ConfPaths {
            access: Vec::new(),
            orchestrator: vec![dir.join("user.conf"), dir.join("global.conf")],
            dev: Some(dir.join("cwd/.porch-dev/orchestrator.conf")),
            home: Some(dir.join("home")),
            puppet_ca: Some(dir.join("puppet/ca.pem")),
            puppet_crl: Some(dir.join("puppet/crl.pem")),
        }
    }

    #[test]
    fn flags_override_user_over_global_conf() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        write(
            &dir.path().join("global.conf"),
            r#"{"options":{"service-url":"https://g:8143","environment":"staging"}}"#,
        );
        write(
            &dir.path().join("user.conf"),
            r#"{"options":{"service-url":"https://u:8143,https://v:8143/"}}"#,
        );
        let none = GlobalArgs::default();
        let s = resolve_from(&none, &paths, None).unwrap();
        assert_eq!(s.service_urls, vec!["https://u:8143", "https://v:8143"]);
        assert_eq!(s.environment.as_deref(), Some("staging"));
        let flags = GlobalArgs {
            service_url: vec!["https://f:1".into()],
            ..Default::default()
        };
        assert_eq!(
            resolve_from(&flags, &paths, None).unwrap().service_urls,
            vec!["https://f:1"]
        );
        assert_eq!(
            resolve_from(&none, &paths, Some("https://e:1,https://e:2".into()))
                .unwrap()
                .service_urls,
            vec!["https://e:1", "https://e:2"]
        );
    }

    #[test]
    fn without_any_source_the_default_is_https_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve_from(&GlobalArgs::default(), &paths(dir.path()), None).unwrap();
        assert_eq!(s.service_urls, vec![DEFAULT_SERVICE_URL]);
        assert!(DEFAULT_SERVICE_URL.starts_with("https://"));
        assert_eq!(s.cacert, None, "Puppet's CA file does not exist here");
        assert_eq!(
            s.token_file,
            Some(dir.path().join("home/.puppetlabs/token"))
        );
    }

    #[test]
    fn porch_service_urls_win_over_service_url_in_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        write(
            &dir.path().join("user.conf"),
            r#"{"options":{"service-url":"https://a:8143",
                "porch-service-urls":["https://a:8143","https://b:8143"]}}"#,
        );
        let s = resolve_from(&GlobalArgs::default(), &paths, None).unwrap();
        assert_eq!(s.service_urls, vec!["https://a:8143", "https://b:8143"]);
        write(
            &dir.path().join("user.conf"),
            r#"{"options":{"porch-service-urls":"https://c:8143, https://d:8143"}}"#,
        );
        let s = resolve_from(&GlobalArgs::default(), &paths, None).unwrap();
        assert_eq!(s.service_urls, vec!["https://c:8143", "https://d:8143"]);
        write(
            &dir.path().join("user.conf"),
            r#"{"options":{"porch-service-urls":[1]}}"#,
        );
        let err = resolve_from(&GlobalArgs::default(), &paths, None).unwrap_err();
        assert!(err.contains("porch-service-urls"), "{err}");
    }

    #[test]
    fn cacert_and_token_file_come_from_flags_then_conf_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        write(&dir.path().join("puppet/ca.pem"), "x");
        let s = resolve_from(&GlobalArgs::default(), &paths, None).unwrap();
        assert_eq!(s.cacert, Some(dir.path().join("puppet/ca.pem")));
        write(
            &dir.path().join("global.conf"),
            r#"{"options":{"cacert":"/etc/ca.pem","token-file":"tok","noop":true}}"#,
        );
        let s = resolve_from(&GlobalArgs::default(), &paths, None).unwrap();
        assert_eq!(s.cacert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            s.token_file,
            Some(dir.path().join("tok")),
            "relative to the conf"
        );
        assert_eq!(s.noop, Some(true));
        let flags = GlobalArgs {
            cacert: Some("/flag/ca.pem".into()),
            token_file: Some("/flag/token".into()),
            ..Default::default()
        };
        let s = resolve_from(&flags, &paths, None).unwrap();
        assert_eq!(s.cacert, Some(PathBuf::from("/flag/ca.pem")));
        assert_eq!(s.token_file, Some(PathBuf::from("/flag/token")));
    }

    #[test]
    fn puppets_crl_goes_with_puppets_ca_only() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        write(&dir.path().join("puppet/ca.pem"), "x");
        write(&dir.path().join("puppet/crl.pem"), "x");
        let s = resolve_from(&GlobalArgs::default(), &paths, None).unwrap();
        assert_eq!(s.crl, Some(dir.path().join("puppet/crl.pem")));
        let other_ca = GlobalArgs {
            cacert: Some("/other/ca.pem".into()),
            ..Default::default()
        };
        assert_eq!(resolve_from(&other_ca, &paths, None).unwrap().crl, None);
        write(
            &dir.path().join("user.conf"),
            r#"{"options":{"cacert":"/o/ca.pem","crl":"/o/crl.pem"}}"#,
        );
        let s = resolve_from(&GlobalArgs::default(), &paths, None).unwrap();
        assert_eq!(s.crl, Some(PathBuf::from("/o/crl.pem")));
    }

    #[test]
    fn dev_conf_is_used_only_when_no_pe_conf_names_a_url() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        write(
            paths.dev.as_ref().unwrap(),
            r#"{"options":{"service-url":"https://127.0.0.1:8143",
                "porch-service-urls":["https://127.0.0.1:8143","https://127.0.0.1:8144"],
                "cacert":"/dev/ca.pem","token-file":"/dev/token"}}"#,
        );
        // An environment-only PE conf does not hide the dev cluster.
        write(
            &dir.path().join("global.conf"),
            r#"{"options":{"environment":"staging"}}"#,
        );
        let s = resolve_from(&GlobalArgs::default(), &paths, None).unwrap();
        assert_eq!(
            s.service_urls,
            vec!["https://127.0.0.1:8143", "https://127.0.0.1:8144"]
        );
        assert_eq!(s.cacert, Some(PathBuf::from("/dev/ca.pem")));
        assert_eq!(s.token_file, Some(PathBuf::from("/dev/token")));
        assert_eq!(s.environment.as_deref(), Some("staging"));
        // A flag URL keeps the dev CA and token (`--service-url https://127.0.0.1:8145`).
        let flags = GlobalArgs {
            service_url: vec!["https://127.0.0.1:8145".into()],
            ..Default::default()
        };
        let s = resolve_from(&flags, &paths, None).unwrap();
        assert_eq!(s.service_urls, vec!["https://127.0.0.1:8145"]);
        assert_eq!(s.cacert, Some(PathBuf::from("/dev/ca.pem")));
        // A PE conf naming a server describes a real installation: the dev conf is ignored.
        write(
            &dir.path().join("user.conf"),
            r#"{"options":{"service-url":"https://orch:8143"}}"#,
        );
        let s = resolve_from(&GlobalArgs::default(), &paths, None).unwrap();
        assert_eq!(s.service_urls, vec!["https://orch:8143"]);
        assert_eq!(s.cacert, None);
        assert_eq!(
            s.token_file,
            Some(dir.path().join("home/.puppetlabs/token"))
        );
    }

    #[test]
    fn puppet_access_conf_comes_first_and_its_rbac_api_path_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = paths(dir.path());
        paths.access = vec![dir.path().join("puppet-access.conf")];
        write(
            &dir.path().join("puppet-access.conf"),
            r#"{"service-url":"https://console:4433/rbac-api","certificate-file":"/pa/ca.pem",
                "token-file":"/pa/token"}"#,
        );
        write(
            &dir.path().join("user.conf"),
            r#"{"options":{"service-url":"https://orch:8143","cacert":"/o/ca.pem"}}"#,
        );
        let s = resolve_from(&GlobalArgs::default(), &paths, None).unwrap();
        assert_eq!(s.service_urls, vec!["https://console:4433"]);
        assert_eq!(s.cacert, Some(PathBuf::from("/pa/ca.pem")));
        assert_eq!(s.token_file, Some(PathBuf::from("/pa/token")));
    }

    #[test]
    fn base_url_drops_api_paths() {
        assert_eq!(base_url("https://h:8143"), "https://h:8143");
        assert_eq!(base_url("https://h:8143/"), "https://h:8143");
        assert_eq!(base_url("https://h:4433/rbac-api"), "https://h:4433");
        assert_eq!(base_url("https://h:4433/rbac-api/v1/"), "https://h:4433");
        assert_eq!(base_url("https://h:8143/orchestrator/v1"), "https://h:8143");
    }

    #[test]
    fn malformed_conf_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        write(&dir.path().join("global.conf"), "{oops");
        let err = resolve_from(&GlobalArgs::default(), &paths, None).unwrap_err();
        assert!(
            err.contains("global.conf") && err.contains("not valid JSON"),
            "{err}"
        );
        write(
            &dir.path().join("global.conf"),
            r#"{"options":{"cacert":3}}"#,
        );
        let err = resolve_from(&GlobalArgs::default(), &paths, None).unwrap_err();
        assert!(err.contains("\"cacert\" must be a string"), "{err}");
    }

    #[test]
    fn a_missing_token_file_is_no_token_unless_named_by_a_flag() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            token_file: Some(dir.path().join("token")),
            ..Default::default()
        };
        assert_eq!(read_token(&settings, false).unwrap(), None);
        let err = read_token(&settings, true).unwrap_err();
        assert!(
            err.contains("--token-file") && err.contains("token"),
            "{err}"
        );
        std::fs::write(dir.path().join("token"), "abc\n").unwrap();
        assert_eq!(read_token(&settings, true).unwrap().as_deref(), Some("abc"));
    }
}
