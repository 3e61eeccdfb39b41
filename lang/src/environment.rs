//! An environment's code: loaded from `<codedir>/environments/<env>/` (or given as sources),
//! parsed, and sorted into application definitions, capability mappings, capability types and
//! the `site` block.

use crate::ast::{Definition, DefinitionKind, Mapping, Resource, Statement};
use crate::error::{LangError, Span};
use crate::eval::canonical_type;
use crate::parser::parse;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most manifest files read for one environment.
pub const MANIFESTS_MAX: usize = 100_000;

#[derive(Clone, Debug)]
pub struct Environment {
    pub name: String,
    /// Application definitions by canonical type name (`Lamp`).
    pub applications: BTreeMap<String, Definition>,
    pub mappings: Vec<Mapping>,
    /// Capability types (from `lib/puppet/type/*.rb` marked `:is_capability => true`).
    pub capability_types: BTreeSet<String>,
    /// The `site` block: its resources and where it is.
    pub site: Option<(Vec<Resource>, Span)>,
}

/// Names of the environments under `<codedir>/environments`, sorted.
pub fn list_environments(codedir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(codedir.join("environments"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| valid_environment_name(n))
        .collect();
    names.sort();
    names
}

/// Environment names are letters, digits and underscores (as Puppet requires).
pub fn valid_environment_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn collect_pp(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if out.len() >= MANIFESTS_MAX {
            return;
        }
        if path.is_dir() {
            collect_pp(&path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("pp") {
            out.push(path);
        }
    }
}

impl Environment {
    /// Reads `<codedir>/environments/<env>`: `manifests/**/*.pp`, `modules/*/manifests/**/*.pp`,
    /// and capability types from `modules/*/lib/puppet/type/*.rb`. File names in errors are
    /// relative to the environment directory.
    pub fn load(codedir: &Path, env: &str) -> Result<Environment, LangError> {
        if !valid_environment_name(env) {
            return Err(LangError::UnknownEnvironment(env.to_string()));
        }
        let root = codedir.join("environments").join(env);
        if !root.is_dir() {
            return Err(LangError::UnknownEnvironment(env.to_string()));
        }
        let mut files = Vec::new();
        collect_pp(&root.join("manifests"), &mut files);
        let mut modules: Vec<PathBuf> = std::fs::read_dir(root.join("modules"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        modules.sort();
        let mut capability_files = Vec::new();
        for module in &modules {
            collect_pp(&module.join("manifests"), &mut files);
            let types = module.join("lib/puppet/type");
            let mut rbs: Vec<PathBuf> = std::fs::read_dir(&types)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("rb"))
                .collect();
            rbs.sort();
            capability_files.extend(rbs);
        }
        let mut sources = Vec::new();
        for path in files.iter().chain(&capability_files) {
            let text = std::fs::read_to_string(path).map_err(|e| LangError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let relative = path.strip_prefix(&root).unwrap_or(path).to_path_buf();
            sources.push((relative, text));
        }
        Environment::from_sources(env, sources)
    }

    /// Builds an environment from `(path, text)` pairs: `.pp` files are parsed, `.rb` files
    /// under `lib/puppet/type/` declare capability types.
    pub fn from_sources(
        name: &str,
        sources: Vec<(PathBuf, String)>,
    ) -> Result<Environment, LangError> {
        let mut env = Environment {
            name: name.to_string(),
            applications: BTreeMap::new(),
            mappings: Vec::new(),
            capability_types: BTreeSet::new(),
            site: None,
        };
        for (path, text) in sources {
            let file = path.display().to_string();
            if file.ends_with(".rb") {
                if text.contains("is_capability") {
                    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                        env.capability_types.insert(canonical_type(stem));
                    }
                }
                continue;
            }
            for statement in parse(&file, &text)? {
                match statement {
                    Statement::Definition(def) if def.kind == DefinitionKind::Application => {
                        let key = canonical_type(&def.name);
                        if let Some(previous) = env.applications.get(&key) {
                            return Err(LangError::model(
                                &def.span,
                                format!(
                                    "application {key} is already defined at {}",
                                    previous.span
                                ),
                            ));
                        }
                        env.applications.insert(key, def);
                    }
                    Statement::Definition(_) | Statement::Resource(_) => {}
                    Statement::Mapping(mapping) => env.mappings.push(mapping),
                    Statement::Site { body, span } => {
                        if let Some((_, first)) = &env.site {
                            return Err(LangError::model(
                                &span,
                                format!("a second site block (the first is at {first})"),
                            ));
                        }
                        env.site = Some((body, span));
                    }
                }
            }
        }
        Ok(env)
    }
}
