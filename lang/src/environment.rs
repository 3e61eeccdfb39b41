//! An environment's code: loaded from `<codedir>/environments/<env>/` (or given as sources),
//! parsed, and sorted into application definitions, capability mappings, capability types and
//! the `site` block.
//!
//! Two layouts, read together:
//! - PE 2015–2018: `application` and `Foo produces Bar` in module manifests, `site` in
//!   `manifests/`. Puppet ≥ 6 rejects all three, so such an environment no longer compiles.
//! - [`ORCHESTRATION_DIR`]: the same language in `orchestration/**/*.pp`, a directory Puppet
//!   Server never reads. Components (defined types, classes) stay in modules, where Puppet ≥ 6
//!   still reads them; nodes get them from their normal classification.
//!
//! What both define is merged; one thing defined twice (an application, a mapping, the site)
//! is an error naming both places.

use crate::ast::{Definition, DefinitionKind, Mapping, MappingKind, Resource, Statement};
use crate::error::{LangError, Span};
use crate::eval::canonical_type;
use crate::parser::parse;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most manifest files read for one environment.
pub const MANIFESTS_MAX: usize = 100_000;

/// The porch-only directory of an environment: `application`, `site` and capability mappings
/// that Puppet ≥ 6 would refuse to parse, and optionally capability types (`*.rb`).
pub const ORCHESTRATION_DIR: &str = "orchestration";

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

/// Files under `dir` (recursively, sorted) whose name ends in `.extension`, up to
/// [`MANIFESTS_MAX`] in `out`; files past the limit are not read.
fn collect_files(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
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
            collect_files(&path, extension, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some(extension) {
            out.push(path);
        }
    }
}

/// Whether an environment-relative path is in [`ORCHESTRATION_DIR`].
fn in_orchestration_dir(path: &Path) -> bool {
    path.components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        == Some(ORCHESTRATION_DIR)
}

impl Environment {
    /// Reads `<codedir>/environments/<env>`: `manifests/**/*.pp`, `modules/*/manifests/**/*.pp`,
    /// `orchestration/**/*.pp`, and capability types from `modules/*/lib/puppet/type/*.rb` and
    /// `orchestration/**/*.rb`. File names in errors are relative to the environment directory.
    pub fn load(codedir: &Path, env: &str) -> Result<Environment, LangError> {
        if !valid_environment_name(env) {
            return Err(LangError::UnknownEnvironment(env.to_string()));
        }
        let root = codedir.join("environments").join(env);
        if !root.is_dir() {
            return Err(LangError::UnknownEnvironment(env.to_string()));
        }
        let mut files = Vec::new();
        collect_files(&root.join("manifests"), "pp", &mut files);
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
            collect_files(&module.join("manifests"), "pp", &mut files);
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
        let orchestration = root.join(ORCHESTRATION_DIR);
        collect_files(&orchestration, "pp", &mut files);
        collect_files(&orchestration, "rb", &mut capability_files);
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

    /// Builds an environment from `(path, text)` pairs, paths relative to the environment
    /// directory: `.pp` files are parsed, `.rb` files declare capability types. In
    /// `orchestration/`, a component definition or a resource is an error: Puppet Server never
    /// reads that directory, so no node would get it.
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
        // `Lamp::Db produces Sql` → where it is defined.
        let mut mapping_spans: BTreeMap<String, Span> = BTreeMap::new();
        for (path, text) in sources {
            let file = path.display().to_string();
            if file.ends_with(".rb") {
                if text.contains("is_capability")
                    && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                {
                    env.capability_types.insert(canonical_type(stem));
                }
                continue;
            }
            let porch_only = in_orchestration_dir(&path);
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
                    Statement::Definition(def) if porch_only => {
                        let kind = match def.kind {
                            DefinitionKind::Class => "class",
                            _ => "define",
                        };
                        return Err(not_read_by_puppet(
                            &def.span,
                            &format!("{kind} {}", def.name),
                        ));
                    }
                    Statement::Resource(resource) if porch_only => {
                        return Err(not_read_by_puppet(
                            &resource.span,
                            &format!("a {} resource", resource.type_name),
                        ));
                    }
                    Statement::Definition(_) | Statement::Resource(_) => {}
                    Statement::Mapping(mapping) => {
                        let verb = match mapping.kind {
                            MappingKind::Produces => "produces",
                            MappingKind::Consumes => "consumes",
                        };
                        let key = format!(
                            "{} {verb} {}",
                            canonical_type(&mapping.component),
                            canonical_type(&mapping.capability)
                        );
                        if let Some(previous) = mapping_spans.get(&key) {
                            return Err(LangError::model(
                                &mapping.span,
                                format!("{key} is already defined at {previous}"),
                            ));
                        }
                        mapping_spans.insert(key, mapping.span.clone());
                        env.mappings.push(mapping);
                    }
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

/// A component or resource in `orchestration/`: porch's model only orders nodes, the node's
/// own classification gives it its components.
fn not_read_by_puppet(span: &Span, what: &str) -> LangError {
    LangError::model(
        span,
        format!(
            "{what} in {ORCHESTRATION_DIR}/ would never reach a node: Puppet Server does not read \
             this directory; put components in a module's manifests and declare them through the \
             node's classification"
        ),
    )
}
