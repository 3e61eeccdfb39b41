//! The body of `POST /command/deploy` (and porch's `/command/plan`), validated as PE does:
//! unknown fields, a missing environment, zero or several scopes, `noop` with `no_noop`, a
//! non-positive concurrency are each a 400 `validation-error` naming the field.

use super::error::ApiError;
use porch_core::plan::is_valid_certname;
use porch_core::{JobSpec, Target};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    pub environment: Option<String>,
    pub scope: Option<ScopeBody>,
    /// Deprecated PE alternative to `scope.application`.
    pub target: Option<String>,
    #[serde(default)]
    pub noop: bool,
    #[serde(default)]
    pub no_noop: bool,
    pub concurrency: Option<i64>,
    pub enforce_environment: Option<bool>,
    #[serde(default)]
    pub debug: bool,
    #[serde(default)]
    pub trace: bool,
    #[serde(default)]
    pub evaltrace: bool,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeBody {
    pub nodes: Option<Vec<String>>,
    pub query: Option<serde_json::Value>,
    pub node_group: Option<String>,
    pub application: Option<String>,
}

/// Longest description kept.
pub const DESCRIPTION_BYTES_MAX: usize = 4096;
/// Longest environment name.
const ENVIRONMENT_BYTES_MAX: usize = 255;

/// Parses and validates a deploy body into a job spec (the plan is resolved separately).
pub fn parse(body: &[u8], owner: porch_core::Actor) -> Result<JobSpec, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(
            "the request body is empty; expected a JSON object",
        ));
    }
    let body: DeployBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("invalid request body: {e}")))?;
    let enforce_environment = body.enforce_environment.unwrap_or(true);
    let environment = body
        .environment
        .ok_or_else(|| ApiError::validation("'environment' is required"))?;
    if environment.is_empty() && enforce_environment {
        return Err(ApiError::validation(
            "'environment' may be empty only with \"enforce_environment\": false",
        ));
    }
    if environment.len() > ENVIRONMENT_BYTES_MAX
        || !environment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(ApiError::validation(format!(
            "'environment': {environment:?} is not a valid environment name (letters, digits, underscores)"
        )));
    }
    if body.noop && body.no_noop {
        return Err(ApiError::validation(
            "'noop' and 'no_noop' cannot both be true",
        ));
    }
    let concurrency = match body.concurrency {
        None => None,
        Some(n) if n >= 1 && n <= u32::MAX as i64 => Some(n as u32),
        Some(n) => {
            return Err(ApiError::validation(format!(
                "'concurrency' must be a positive integer, got {n}"
            )));
        }
    };
    if let Some(description) = &body.description
        && description.len() > DESCRIPTION_BYTES_MAX
    {
        return Err(ApiError::validation(format!(
            "'description' is {} bytes; at most {DESCRIPTION_BYTES_MAX} are allowed",
            description.len()
        )));
    }
    let target = parse_target(body.scope, body.target)?;
    Ok(JobSpec {
        environment,
        target,
        noop: body.noop,
        no_noop: body.no_noop,
        concurrency,
        enforce_environment,
        debug: body.debug,
        trace: body.trace,
        evaltrace: body.evaltrace,
        description: body.description,
        owner,
        task: None,
    })
}

pub fn parse_target(scope: Option<ScopeBody>, target: Option<String>) -> Result<Target, ApiError> {
    let Some(scope) = scope else {
        return match target {
            Some(app) if !app.trim().is_empty() => Ok(Target::Application(app)),
            _ => Err(ApiError::validation(
                "'scope' is required (one of nodes, query, node_group, application)",
            )),
        };
    };
    if target.is_some() {
        return Err(ApiError::validation(
            "give 'scope' or the deprecated 'target', not both",
        ));
    }
    let given = [
        scope.nodes.is_some(),
        scope.query.is_some(),
        scope.node_group.is_some(),
        scope.application.is_some(),
    ]
    .iter()
    .filter(|&&g| g)
    .count();
    if given != 1 {
        return Err(ApiError::validation(format!(
            "'scope' must have exactly one of nodes, query, node_group, application; it has {given}"
        )));
    }
    if let Some(nodes) = scope.nodes {
        if nodes.is_empty() {
            return Err(ApiError::empty_target("'scope.nodes' is empty"));
        }
        if let Some(bad) = nodes.iter().find(|n| !is_valid_certname(n)) {
            return Err(ApiError::validation(format!(
                "'scope.nodes': {bad:?} is not a valid certname"
            )));
        }
        return Ok(Target::Nodes(nodes));
    }
    if let Some(query) = scope.query {
        let text = match query {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        return Ok(Target::Query(text));
    }
    if scope.node_group.is_some() {
        return Err(ApiError::validation(
            "'scope.node_group' is not supported: porch has no node classifier; use nodes, query or application",
        ));
    }
    match scope.application {
        Some(app) if !app.trim().is_empty() => Ok(Target::Application(app)),
        _ => Err(ApiError::empty_target("'scope.application' is empty")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> porch_core::Actor {
        porch_core::Actor {
            id: "u-me".into(),
            login: "me".into(),
        }
    }

    fn kind(body: &str) -> (&'static str, String) {
        let e = parse(body.as_bytes(), me()).unwrap_err();
        (e.kind, e.msg)
    }

    #[test]
    fn rejects_what_pe_rejects() {
        assert!(kind("{").1.contains("invalid request body"));
        assert!(
            kind(r#"{"environment":"production","scope":{"nodes":["a"]},"bogus":1}"#)
                .1
                .contains("bogus")
        );
        assert!(
            kind(r#"{"scope":{"nodes":["a"]}}"#)
                .1
                .contains("'environment' is required")
        );
        assert!(
            kind(r#"{"environment":"production","scope":{}}"#)
                .1
                .contains("exactly one")
        );
        assert!(
            kind(
                r#"{"environment":"production","scope":{"nodes":["a"]},"noop":true,"no_noop":true}"#
            )
            .1
            .contains("noop")
        );
        assert!(
            kind(r#"{"environment":"production","scope":{"nodes":["a"]},"concurrency":0}"#)
                .1
                .contains("positive")
        );
        assert!(
            kind(r#"{"environment":"production","scope":{"nodes":["a"]},"concurrency":"x"}"#)
                .1
                .contains("invalid request body")
        );
        assert_eq!(
            kind(r#"{"environment":"production","scope":{"nodes":[]}}"#).0,
            "puppetlabs.orchestrator/empty-target"
        );
    }

    #[test]
    fn accepts_a_node_list() {
        let spec = parse(
            br#"{"environment":"production","scope":{"nodes":["a","b"]},"concurrency":2,"description":"x"}"#,
            me(),
        )
        .unwrap();
        assert_eq!(spec.target, Target::Nodes(vec!["a".into(), "b".into()]));
        assert_eq!(spec.concurrency, Some(2));
        assert!(spec.enforce_environment);
    }
}
