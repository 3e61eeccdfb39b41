//! Errors of reading Puppet code and planning from it. Each names the file, line and column
//! where there is one, and maps to the API error kind PE uses.

use std::fmt;

/// A position in a manifest: file name, 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LangError {
    #[error("{span}: {message}")]
    Syntax { span: Span, message: String },
    #[error("unknown environment {0:?}")]
    UnknownEnvironment(String),
    #[error("{0}")]
    EmptyTarget(String),
    #[error("dependency cycle: {0}")]
    Cycle(String),
    /// Anything else wrong with the application model (a capability nobody exports, a
    /// component on two nodes...), with its location.
    #[error("{span}: {message}")]
    Model { span: Span, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl LangError {
    pub fn syntax(span: &Span, message: impl Into<String>) -> LangError {
        LangError::Syntax {
            span: span.clone(),
            message: message.into(),
        }
    }

    pub fn model(span: &Span, message: impl Into<String>) -> LangError {
        LangError::Model {
            span: span.clone(),
            message: message.into(),
        }
    }

    /// PE's API error kind for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            LangError::UnknownEnvironment(_) => "puppetlabs.orchestrator/unknown-environment",
            LangError::EmptyTarget(_) => "puppetlabs.orchestrator/empty-target",
            LangError::Cycle(_) => "puppetlabs.orchestrator/dependency-cycle",
            LangError::Syntax { .. } | LangError::Model { .. } => {
                "puppetlabs.orchestrator/puppet-code-error"
            }
            LangError::Io { .. } => "puppetlabs.orchestrator/puppet-code-error",
        }
    }
}
