//! Finding tasks in an environment's modules: `<module>/tasks/<name>.<ext>` is task
//! `<module>::<name>` (`init` is named after the module), with optional `<name>.json`
//! metadata. Modules come from the environment's `modules/` directory, then the code dir's
//! `modules/` (Puppet's base module path); the first module of a name wins, as in Puppet.

use super::metadata::TaskMetadata;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Largest task file porch hashes and serves to agents.
pub const TASK_FILE_BYTES_MAX: u64 = 2 * 1024 * 1024;
/// Most tasks listed for one environment.
pub const TASKS_LISTED_MAX: usize = 10_000;

/// A task's executable, as fixed when a job is planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFile {
    /// `status.sh`.
    pub file_name: String,
    /// Relative to the code dir: `environments/production/modules/package/tasks/status.sh`.
    pub path: String,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct Task {
    /// `package::status`, or `package` for the module's `init` task.
    pub name: String,
    pub module: String,
    /// `status` (or `init`).
    pub short_name: String,
    pub file: TaskFile,
    pub metadata: TaskMetadata,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("unknown environment {0:?}")]
    UnknownEnvironment(String),
    #[error(
        "{0:?} is not a valid task name (module or module::task, lowercase letters, digits, '_')"
    )]
    InvalidName(String),
    #[error("no task {task:?} in environment {environment:?}")]
    UnknownTask { task: String, environment: String },
    #[error("{path}: {message}")]
    Metadata { path: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl TaskError {
    /// PE's API error kind.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskError::UnknownEnvironment(_) => "puppetlabs.orchestrator/unknown-environment",
            TaskError::InvalidName(_) => "puppetlabs.orchestrator/validation-error",
            TaskError::UnknownTask { .. } => "puppetlabs.orchestrator/unknown-task",
            TaskError::Metadata { .. } | TaskError::Io { .. } => {
                "puppetlabs.orchestrator/invalid-task"
            }
        }
    }
}

/// A module or task name: a lowercase letter, then lowercase letters, digits or `_`.
pub fn valid_segment(name: &str) -> bool {
    super::metadata::valid_parameter_name(name)
}

/// `package::status` → (`package`, `status`); `package` → (`package`, `init`).
pub fn split_task_name(name: &str) -> Result<(String, String), TaskError> {
    let invalid = || TaskError::InvalidName(name.to_string());
    let (module, short) = match name.split_once("::") {
        Some((module, short)) => (module, short),
        None => (name, "init"),
    };
    if !valid_segment(module) || !valid_segment(short) {
        return Err(invalid());
    }
    Ok((module.to_string(), short.to_string()))
}

/// The name users give: `module` for `init`, else `module::task`.
pub fn task_name(module: &str, short: &str) -> String {
    if short == "init" {
        module.to_string()
    } else {
        format!("{module}::{short}")
    }
}

fn environment_root(codedir: &Path, environment: &str) -> Result<PathBuf, TaskError> {
    let root = codedir.join("environments").join(environment);
    if !crate::environment::valid_environment_name(environment) || !root.is_dir() {
        return Err(TaskError::UnknownEnvironment(environment.to_string()));
    }
    Ok(root)
}

/// Module directories in path order: the environment's, then the base module path's.
fn module_path(codedir: &Path, root: &Path) -> Vec<PathBuf> {
    vec![root.join("modules"), codedir.join("modules")]
}

/// The directory of `module`: the first in the module path that has it.
fn module_dir(codedir: &Path, root: &Path, module: &str) -> Option<PathBuf> {
    module_path(codedir, root)
        .into_iter()
        .map(|dir| dir.join(module))
        .find(|dir| dir.is_dir())
}

/// Whether `file_name` in a `tasks/` directory is an executable of task `short` (and not its
/// metadata or documentation).
fn is_executable_of(file_name: &str, short: &str) -> bool {
    let (stem, extension) = match file_name.split_once('.') {
        Some((stem, extension)) => (stem, Some(extension)),
        None => (file_name, None),
    };
    stem == short && !matches!(extension, Some("json" | "md" | "conf"))
}

/// The executable of a task in `tasks_dir`. Several (`init.sh`, `init.ps1`): the first in name
/// order that is not for Windows, since porch's agents run on Unix.
fn executable(tasks_dir: &Path, short: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(tasks_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| is_executable_of(n, short))
        })
        .map(|e| e.path())
        .collect();
    candidates.sort();
    let windows = |p: &PathBuf| {
        matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("ps1" | "bat" | "cmd" | "exe")
        )
    };
    candidates
        .iter()
        .find(|p| !windows(p))
        .or(candidates.first())
        .cloned()
}

/// The names of every task in `environment`, sorted.
pub fn list_tasks(codedir: &Path, environment: &str) -> Result<Vec<String>, TaskError> {
    let root = environment_root(codedir, environment)?;
    let mut names = std::collections::BTreeSet::new();
    let mut seen_modules = std::collections::BTreeSet::new();
    for dir in module_path(codedir, &root) {
        let mut modules: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|m| valid_segment(m))
            .collect();
        modules.sort();
        for module in modules {
            if !seen_modules.insert(module.clone()) {
                continue; // shadowed by a module earlier in the path
            }
            let entries = std::fs::read_dir(dir.join(&module).join("tasks"));
            for entry in entries.into_iter().flatten().flatten() {
                let Some(file_name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let stem = file_name.split('.').next().unwrap_or_default().to_string();
                if valid_segment(&stem) && is_executable_of(&file_name, &stem) {
                    names.insert(task_name(&module, &stem));
                    if names.len() >= TASKS_LISTED_MAX {
                        return Ok(names.into_iter().collect());
                    }
                }
            }
        }
    }
    Ok(names.into_iter().collect())
}

/// Task `name` of `environment`: its executable (hashed now: the hash is what a job fixes)
/// and its metadata. Errors name the file.
pub fn find_task(codedir: &Path, environment: &str, name: &str) -> Result<Task, TaskError> {
    let (module, short) = split_task_name(name)?;
    let root = environment_root(codedir, environment)?;
    let unknown = || TaskError::UnknownTask {
        task: name.to_string(),
        environment: environment.to_string(),
    };
    let module_dir = module_dir(codedir, &root, &module).ok_or_else(unknown)?;
    let tasks_dir = module_dir.join("tasks");
    let path = executable(&tasks_dir, &short).ok_or_else(unknown)?;
    let relative = path
        .strip_prefix(codedir)
        .unwrap_or(&path)
        .to_string_lossy()
        .into_owned();
    let content = read_bounded(&path, TASK_FILE_BYTES_MAX, &relative)?;
    let file = TaskFile {
        file_name: path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string(),
        path: relative,
        sha256: sha256_hex(&content),
        size_bytes: content.len() as u64,
    };
    let metadata_path = tasks_dir.join(format!("{short}.json"));
    let metadata = if metadata_path.is_file() {
        let shown = metadata_path
            .strip_prefix(codedir)
            .unwrap_or(&metadata_path)
            .display()
            .to_string();
        let bytes = read_bounded(
            &metadata_path,
            super::metadata::METADATA_BYTES_MAX as u64,
            &shown,
        )?;
        let text = String::from_utf8(bytes).map_err(|_| TaskError::Metadata {
            path: shown.clone(),
            message: "is not UTF-8".into(),
        })?;
        TaskMetadata::parse(&text).map_err(|message| TaskError::Metadata {
            path: shown,
            message,
        })?
    } else {
        TaskMetadata::default()
    };
    Ok(Task {
        name: task_name(&module, &short),
        module,
        short_name: short,
        file,
        metadata,
    })
}

fn read_bounded(path: &Path, max: u64, shown: &str) -> Result<Vec<u8>, TaskError> {
    let io = |message: String| TaskError::Io {
        path: shown.to_string(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| io(e.to_string()))?
        .len();
    if size > max {
        return Err(io(format!("is {size} bytes; at most {max} are served")));
    }
    std::fs::read(path).map_err(|e| io(e.to_string()))
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codedir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let tasks = dir
            .path()
            .join("environments/production/modules/package/tasks");
        std::fs::create_dir_all(&tasks).unwrap();
        std::fs::write(tasks.join("init.sh"), "#!/bin/sh\necho init\n").unwrap();
        std::fs::write(tasks.join("init.ps1"), "Write-Output init\n").unwrap();
        std::fs::write(tasks.join("status.sh"), "#!/bin/sh\necho status\n").unwrap();
        std::fs::write(tasks.join("status.json"), r#"{"description": "Status"}"#).unwrap();
        std::fs::write(tasks.join("README.md"), "docs").unwrap();
        std::fs::write(tasks.join("broken.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(tasks.join("broken.json"), "{").unwrap();
        let base = dir.path().join("modules/shared/tasks");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("ping"), "#!/bin/sh\necho pong\n").unwrap();
        // Shadowed by the environment's own `package` module.
        let shadowed = dir.path().join("modules/package/tasks");
        std::fs::create_dir_all(&shadowed).unwrap();
        std::fs::write(shadowed.join("hidden.sh"), "#!/bin/sh\n").unwrap();
        std::fs::create_dir_all(dir.path().join("environments/empty")).unwrap();
        dir
    }

    #[test]
    fn tasks_are_listed_from_the_environment_then_the_base_module_path() {
        let dir = codedir();
        assert_eq!(
            list_tasks(dir.path(), "production").unwrap(),
            vec![
                "package",
                "package::broken",
                "package::status",
                "shared::ping"
            ]
        );
        assert_eq!(
            list_tasks(dir.path(), "empty").unwrap(),
            vec!["package::hidden", "shared::ping"],
            "an environment without modules sees the base module path's"
        );
        assert!(matches!(
            list_tasks(dir.path(), "nowhere"),
            Err(TaskError::UnknownEnvironment(_))
        ));
    }

    #[test]
    fn a_task_is_found_with_its_file_hash_and_metadata() {
        let dir = codedir();
        let status = find_task(dir.path(), "production", "package::status").unwrap();
        assert_eq!(status.name, "package::status");
        assert_eq!(status.file.file_name, "status.sh");
        assert_eq!(
            status.file.path,
            "environments/production/modules/package/tasks/status.sh"
        );
        assert_eq!(status.file.sha256, sha256_hex(b"#!/bin/sh\necho status\n"));
        assert_eq!(status.file.size_bytes, 22);
        assert_eq!(status.metadata.description.as_deref(), Some("Status"));
        let init = find_task(dir.path(), "production", "package").unwrap();
        assert_eq!(
            init.file.file_name, "init.sh",
            "the Unix executable is preferred"
        );
        assert_eq!(init.short_name, "init");
        let ping = find_task(dir.path(), "production", "shared::ping").unwrap();
        assert_eq!(ping.file.path, "modules/shared/tasks/ping");
    }

    #[test]
    fn unknown_invalid_and_broken_tasks_are_errors_of_their_kind() {
        let dir = codedir();
        let kind = |name: &str| {
            find_task(dir.path(), "production", name)
                .unwrap_err()
                .kind()
        };
        assert_eq!(
            kind("package::nothing"),
            "puppetlabs.orchestrator/unknown-task"
        );
        assert_eq!(kind("nomodule"), "puppetlabs.orchestrator/unknown-task");
        assert_eq!(
            kind("package::hidden"),
            "puppetlabs.orchestrator/unknown-task"
        );
        assert_eq!(kind("Package"), "puppetlabs.orchestrator/validation-error");
        assert_eq!(
            kind("package::../x"),
            "puppetlabs.orchestrator/validation-error"
        );
        assert_eq!(kind("a::b::c"), "puppetlabs.orchestrator/validation-error");
        let broken = find_task(dir.path(), "production", "package::broken").unwrap_err();
        assert_eq!(broken.kind(), "puppetlabs.orchestrator/invalid-task");
        assert!(broken.to_string().contains("broken.json"), "{broken}");
    }

    #[test]
    fn an_oversized_task_file_is_refused() {
        let dir = codedir();
        let tasks = dir.path().join("environments/production/modules/big/tasks");
        std::fs::create_dir_all(&tasks).unwrap();
        let file = std::fs::File::create(tasks.join("init.sh")).unwrap();
        file.set_len(TASK_FILE_BYTES_MAX + 1).unwrap();
        let error = find_task(dir.path(), "production", "big").unwrap_err();
        assert!(error.to_string().contains("at most"), "{error}");
    }
}
