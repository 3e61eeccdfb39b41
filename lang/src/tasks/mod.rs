//! Puppet tasks: scripts in a module's `tasks/` directory with typed parameters.
//!
//! - [`catalog`]: finds an environment's tasks and hashes a task's file (the hash a job fixes).
//! - [`metadata`]: `<task>.json` and the check of a job's parameters against it.
//! - [`types`]: the Puppet type expressions parameters are declared with.

pub mod catalog;
pub mod metadata;
pub mod types;

pub use catalog::{Task, TaskError, TaskFile, find_task, list_tasks, sha256_hex};
pub use metadata::{InputMethod, ParameterError, TaskMetadata};
