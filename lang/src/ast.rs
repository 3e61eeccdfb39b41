//! The syntax tree of the subset porch reads. Everything else in a manifest is parsed past
//! and dropped (`node` definitions, `include`, conditionals, chains...).

use crate::error::Span;

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A string; double-quoted ones keep `${...}` / `$x` for evaluation.
    Str {
        text: String,
        interpolated: bool,
    },
    Number(String),
    Bool(bool),
    Undef,
    Var(String),
    Array(Vec<Expr>),
    Hash(Vec<(Expr, Expr)>),
    /// `Type['title', ...]` (a resource or capability reference) or a bare `Type`.
    Ref {
        type_name: String,
        titles: Vec<Expr>,
        span: Span,
    },
    /// A bare lower-case word (`present`, a function name).
    Bare(String),
    /// Anything the subset does not evaluate (arithmetic, calls, selectors).
    Other,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: Expr,
    pub span: Span,
}

/// `type { 'title': attr => value, ...; 'title2': ... }`: one body per title group.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceBody {
    pub title: Expr,
    pub attributes: Vec<Attribute>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// Lower-case type name as written (`lamp::db`, `class`, `lamp`).
    pub type_name: String,
    pub bodies: Vec<ResourceBody>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub default: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DefinitionKind {
    Application,
    Define,
    Class,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub kind: DefinitionKind,
    pub name: String,
    pub parameters: Vec<Parameter>,
    /// The resource declarations in the body (other statements are dropped).
    pub body: Vec<Resource>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MappingKind {
    Produces,
    Consumes,
}

/// `Type produces Cap { ... }` / `Type consumes Cap { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    pub component: String,
    pub kind: MappingKind,
    pub capability: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    Definition(Definition),
    Mapping(Mapping),
    /// The `site { }` block's resource declarations.
    Site {
        body: Vec<Resource>,
        span: Span,
    },
    /// A resource declared at top level (outside `site`).
    Resource(Resource),
}
