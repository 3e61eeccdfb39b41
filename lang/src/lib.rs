//! porch-lang: the application-orchestration subset of the Puppet language.
//!
//! - [`lexer`] and [`parser`]: text → tokens with spans → [`ast::Statement`]s; statements
//!   outside the subset are parsed past; errors name file:line:column.
//! - [`environment`]: an environment's files → [`Environment`] (applications, capability
//!   mappings and types, the `site`), read from PE's layout (`manifests/`, `modules/`) and from
//!   the porch-only `orchestration/` directory that Puppet ≥ 6 never parses, merged.
//! - [`graph`] → [`plan`]: instances, components and capability edges → the node-level plan;
//!   [`render`] and [`views`] show them to people and to PE's API.
//! - [`tasks`]: Puppet tasks in the environment's modules, their metadata and parameter types.
//!
//! Nothing here panics on input: every failure is a [`error::LangError`].

pub mod ast;
pub mod error;
pub mod lexer;
pub mod parser;
pub mod token;

pub use error::{LangError, Span};
pub mod environment;
pub mod eval;
pub mod graph;

pub use environment::{Environment, list_environments};
pub mod plan;
pub mod render;
pub mod tasks;
pub mod views;

pub use plan::PlanReport;
