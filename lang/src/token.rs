//! Tokens of the Puppet language subset.

use crate::error::Span;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A lower-case name (`lamp::db`, `application`, `true`, `export`).
    Name(String),
    /// A capitalised type name (`Lamp::Db`, `Sql`, `Node`, `String`).
    Type(String),
    /// `$name`, `$::fqdn` (without the `$`).
    Var(String),
    /// A quoted string; `interpolated` for double quotes (the text keeps `${...}` as written).
    Str {
        text: String,
        interpolated: bool,
    },
    Number(String),
    Regex(String),
    /// Punctuation and operators: `{ } [ ] ( ) , ; : => -> ~> = == ...`.
    Punct(&'static str),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Name(n) => format!("'{n}'"),
            Tok::Type(t) => format!("'{t}'"),
            Tok::Var(v) => format!("'${v}'"),
            Tok::Str { .. } => "a string".into(),
            Tok::Number(n) => format!("number {n}"),
            Tok::Regex(_) => "a regex".into(),
            Tok::Punct(p) => format!("'{p}'"),
        }
    }
}
