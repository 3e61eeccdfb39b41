//! porch-lang: the application-orchestration subset of the Puppet language.
//!
//! - [`lexer`] and [`parser`]: text → tokens with spans → [`ast::Statement`]s; statements
//!   outside the subset are parsed past; errors name file:line:column.
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
pub mod views;

pub use plan::PlanReport;
