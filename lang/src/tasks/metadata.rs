//! A task's `<name>.json` metadata: description, parameters with their Puppet types, defaults
//! and sensitivity, `input_method`, `supports_noop` — and the check of a job's parameters
//! against it, made before any node runs.

use super::types::{PuppetType, describe_value};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Largest metadata file read.
pub const METADATA_BYTES_MAX: usize = 256 * 1024;
/// Most parameters one task may declare, and one job may pass.
pub const PARAMETERS_MAX: usize = 256;

/// How the agent hands parameters to the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputMethod {
    /// A JSON object on standard input.
    Stdin,
    /// `PT_<name>` environment variables.
    Environment,
    /// Both (the default, as Puppet's).
    Both,
}

impl InputMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            InputMethod::Stdin => "stdin",
            InputMethod::Environment => "environment",
            InputMethod::Both => "both",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ParameterSpec {
    pub description: Option<String>,
    /// The type as the metadata wrote it (`Optional[String[1]]`; `Any` when absent).
    pub type_text: String,
    pub kind: PuppetType,
    /// Supplied when the job does not pass the parameter.
    pub default: Option<Value>,
    /// Masked wherever porch shows the job's parameters.
    pub sensitive: bool,
}

#[derive(Clone, Debug)]
pub struct TaskMetadata {
    pub description: Option<String>,
    /// `None`: the metadata declares no parameters, and any are passed through unchecked.
    pub parameters: Option<BTreeMap<String, ParameterSpec>>,
    pub input_method: InputMethod,
    pub supports_noop: bool,
    /// The file as written, for `GET /tasks/:module/:task`.
    pub raw: Value,
}

impl Default for TaskMetadata {
    /// A task without a metadata file: no description, any parameters, both input methods.
    fn default() -> Self {
        TaskMetadata {
            description: None,
            parameters: None,
            input_method: InputMethod::Both,
            supports_noop: false,
            raw: Value::Object(Map::new()),
        }
    }
}

/// A parameter name as Puppet requires: a lowercase letter, then lowercase letters, digits or
/// underscores.
pub fn valid_parameter_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 128
}

/// One parameter refused, named: what the API answers with 400.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterError {
    pub parameter: String,
    pub message: String,
}

impl std::fmt::Display for ParameterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl TaskMetadata {
    /// Reads metadata text. Errors name the field; the caller adds the file.
    pub fn parse(text: &str) -> Result<TaskMetadata, String> {
        if text.len() > METADATA_BYTES_MAX {
            return Err(format!(
                "is {} bytes; at most {METADATA_BYTES_MAX} are read",
                text.len()
            ));
        }
        let raw: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
        let Value::Object(object) = &raw else {
            return Err("must be a JSON object".into());
        };
        let description = match object.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => return Err(format!("'description' must be a string, got {other}")),
        };
        let supports_noop = match object.get("supports_noop") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(format!(
                    "'supports_noop' must be true or false, got {other}"
                ));
            }
        };
        let input_method = match object.get("input_method") {
            None | Some(Value::Null) => InputMethod::Both,
            Some(Value::String(s)) => match s.as_str() {
                "stdin" => InputMethod::Stdin,
                "environment" => InputMethod::Environment,
                "both" => InputMethod::Both,
                "powershell" => {
                    return Err(
                        "'input_method' powershell is not supported: porch agents run tasks on Unix"
                            .into(),
                    );
                }
                other => {
                    return Err(format!(
                        "'input_method' {other:?} is not one of stdin, environment, both"
                    ));
                }
            },
            Some(other) => return Err(format!("'input_method' must be a string, got {other}")),
        };
        let parameters = match object.get("parameters") {
            None | Some(Value::Null) => None,
            Some(Value::Object(declared)) => Some(parse_parameters(declared)?),
            Some(other) => return Err(format!("'parameters' must be an object, got {other}")),
        };
        Ok(TaskMetadata {
            description,
            parameters,
            input_method,
            supports_noop,
            raw,
        })
    }

    /// Checks a job's parameters against the declared ones and returns what the task gets:
    /// the given values plus the defaults of those not given. Refused: a parameter the task
    /// does not declare (when it declares any), a required one missing, a value not of the
    /// declared type, a name starting with `_` (Puppet's metaparameters, set by porch).
    pub fn check_parameters(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Map<String, Value>, ParameterError> {
        if given.len() > PARAMETERS_MAX {
            return Err(ParameterError {
                parameter: String::new(),
                message: format!(
                    "{} parameters given; at most {PARAMETERS_MAX} are accepted",
                    given.len()
                ),
            });
        }
        if let Some(name) = given.keys().find(|k| k.starts_with('_')) {
            return Err(ParameterError {
                parameter: name.clone(),
                message: format!(
                    "parameter '{name}': names starting with '_' are reserved for metaparameters"
                ),
            });
        }
        let Some(declared) = &self.parameters else {
            return Ok(given.clone());
        };
        if let Some(unknown) = given.keys().find(|k| !declared.contains_key(*k)) {
            let known: Vec<&str> = declared.keys().map(String::as_str).collect();
            return Err(ParameterError {
                parameter: unknown.clone(),
                message: format!(
                    "unknown parameter '{unknown}': the task takes {}",
                    if known.is_empty() {
                        "no parameters".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        }
        let mut checked = Map::new();
        for (name, spec) in declared {
            let value = match given.get(name).or(spec.default.as_ref()) {
                Some(value) => value.clone(),
                None if spec.kind.accepts(&Value::Null) => continue,
                None => {
                    return Err(ParameterError {
                        parameter: name.clone(),
                        message: format!(
                            "parameter '{name}' is required (a value of type {})",
                            spec.type_text
                        ),
                    });
                }
            };
            if !spec.kind.accepts(&value) {
                let shown = if spec.sensitive {
                    "a sensitive value of another type".to_string()
                } else {
                    describe_value(&value)
                };
                return Err(ParameterError {
                    parameter: name.clone(),
                    message: format!(
                        "parameter '{name}' expects a value of type {}, got {shown}",
                        spec.type_text
                    ),
                });
            }
            checked.insert(name.clone(), value);
        }
        Ok(checked)
    }

    /// Names of the sensitive parameters.
    pub fn sensitive_parameters(&self) -> Vec<String> {
        self.parameters
            .iter()
            .flatten()
            .filter(|(_, spec)| spec.sensitive)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Parameters whose types porch does not check, with the type names (for a warning).
    pub fn unchecked_parameters(&self) -> Vec<(String, Vec<String>)> {
        self.parameters
            .iter()
            .flatten()
            .map(|(name, spec)| (name.clone(), spec.kind.unchecked_names()))
            .filter(|(_, names)| !names.is_empty())
            .collect()
    }
}

fn parse_parameters(
    declared: &Map<String, Value>,
) -> Result<BTreeMap<String, ParameterSpec>, String> {
    if declared.len() > PARAMETERS_MAX {
        return Err(format!(
            "declares {} parameters; at most {PARAMETERS_MAX}",
            declared.len()
        ));
    }
    let mut parameters = BTreeMap::new();
    for (name, spec) in declared {
        if !valid_parameter_name(name) {
            return Err(format!(
                "parameter name {name:?} must start with a lowercase letter and hold only lowercase letters, digits and '_'"
            ));
        }
        let Value::Object(spec) = spec else {
            return Err(format!("parameter '{name}' must be an object, got {spec}"));
        };
        let type_text = match spec.get("type") {
            None | Some(Value::Null) => "Any".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(format!(
                    "parameter '{name}': 'type' must be a string, got {other}"
                ));
            }
        };
        let kind = PuppetType::parse(&type_text)
            .map_err(|e| format!("parameter '{name}': type {type_text:?}: {e}"))?;
        let description = spec
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string);
        let default = spec.get("default").cloned();
        if let Some(default) = &default
            && !kind.accepts(default)
        {
            return Err(format!(
                "parameter '{name}': the default {} is not of type {type_text}",
                describe_value(default)
            ));
        }
        let sensitive = match spec.get("sensitive") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(format!(
                    "parameter '{name}': 'sensitive' must be true or false, got {other}"
                ));
            }
        };
        parameters.insert(
            name.clone(),
            ParameterSpec {
                description,
                type_text,
                kind,
                default,
                sensitive,
            },
        );
    }
    Ok(parameters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PACKAGE: &str = r#"{
        "description": "Manage a package",
        "supports_noop": true,
        "input_method": "stdin",
        "parameters": {
            "action": {"type": "Enum[install, status, uninstall]", "description": "what to do"},
            "name": {"type": "String[1]"},
            "version": {"type": "Optional[String[1]]"},
            "retries": {"type": "Integer[0, 5]", "default": 1},
            "token": {"type": "String", "sensitive": true, "default": ""}
        },
        "puppet_task_version": 1
    }"#;

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn metadata_reads_what_puppet_writes() {
        let meta = TaskMetadata::parse(PACKAGE).unwrap();
        assert_eq!(meta.description.as_deref(), Some("Manage a package"));
        assert!(meta.supports_noop);
        assert_eq!(meta.input_method, InputMethod::Stdin);
        let declared = meta.parameters.as_ref().unwrap();
        assert_eq!(declared.len(), 5);
        assert_eq!(
            declared["action"].description.as_deref(),
            Some("what to do")
        );
        assert_eq!(meta.sensitive_parameters(), vec!["token".to_string()]);
        assert_eq!(meta.raw["puppet_task_version"], json!(1));
    }

    #[test]
    fn parameters_get_defaults_and_optional_ones_may_be_left_out() {
        let meta = TaskMetadata::parse(PACKAGE).unwrap();
        let checked = meta
            .check_parameters(&params(json!({"action": "status", "name": "openssl"})))
            .unwrap();
        assert_eq!(
            Value::Object(checked),
            json!({"action": "status", "name": "openssl", "retries": 1, "token": ""})
        );
    }

    #[test]
    fn wrong_missing_unknown_and_reserved_parameters_are_named() {
        let meta = TaskMetadata::parse(PACKAGE).unwrap();
        let refuse = |given: Value| meta.check_parameters(&params(given)).unwrap_err();
        let wrong = refuse(json!({"action": "status", "name": "x", "retries": "2"}));
        assert_eq!(wrong.parameter, "retries");
        assert!(wrong.message.contains("Integer[0, 5]"), "{}", wrong.message);
        assert!(wrong.message.contains("String \"2\""), "{}", wrong.message);
        let range = refuse(json!({"action": "status", "name": "x", "retries": 9}));
        assert_eq!(range.parameter, "retries");
        let missing = refuse(json!({"action": "status"}));
        assert_eq!(missing.parameter, "name");
        assert!(missing.message.contains("required"));
        let unknown = refuse(json!({"action": "status", "name": "x", "colour": "red"}));
        assert_eq!(unknown.parameter, "colour");
        assert!(
            unknown.message.contains("action, name"),
            "{}",
            unknown.message
        );
        let reserved = refuse(json!({"action": "status", "name": "x", "_noop": true}));
        assert_eq!(reserved.parameter, "_noop");
        let secret = refuse(json!({"action": "status", "name": "x", "token": 12345}));
        assert!(
            !secret.message.contains("12345"),
            "a sensitive value leaked: {}",
            secret.message
        );
    }

    #[test]
    fn without_declared_parameters_anything_passes() {
        let meta = TaskMetadata::parse(r#"{"description": "free"}"#).unwrap();
        let given = params(json!({"anything": [1, 2]}));
        assert_eq!(meta.check_parameters(&given).unwrap(), given);
        assert_eq!(meta.input_method, InputMethod::Both);
        assert!(!meta.supports_noop);
    }

    #[test]
    fn bad_metadata_names_the_field() {
        for (text, expected) in [
            ("[1]", "must be a JSON object"),
            ("{", "is not JSON"),
            (r#"{"description": 3}"#, "'description'"),
            (r#"{"supports_noop": "yes"}"#, "'supports_noop'"),
            (r#"{"input_method": "carrier-pigeon"}"#, "'input_method'"),
            (r#"{"input_method": "powershell"}"#, "powershell"),
            (r#"{"parameters": []}"#, "'parameters'"),
            (r#"{"parameters": {"Bad": {}}}"#, "\"Bad\""),
            (
                r#"{"parameters": {"x": {"type": "String["}}}"#,
                "parameter 'x'",
            ),
            (r#"{"parameters": {"x": {"type": 5}}}"#, "'type'"),
            (
                r#"{"parameters": {"x": {"type": "Integer", "default": "a"}}}"#,
                "default",
            ),
            (r#"{"parameters": {"x": "String"}}"#, "must be an object"),
        ] {
            let error = TaskMetadata::parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
