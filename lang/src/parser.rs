//! Recursive-descent parser from tokens to [`Statement`]s. Statements outside the subset are
//! skipped as balanced token runs; malformed input is an error naming file:line:column and
//! what was expected. Nesting is bounded, so no input can overflow the stack.

use crate::ast::*;
use crate::error::{LangError, Span};
use crate::lexer::lex;
use crate::token::{Tok, Token};

/// Deepest nesting of brackets, braces and expressions accepted.
pub const NESTING_MAX: usize = 128;

pub struct Parser {
    tokens: Vec<Token>,
    at: usize,
    end: Span,
}

pub fn parse(file: &str, text: &str) -> Result<Vec<Statement>, LangError> {
    let tokens = lex(file, text)?;
    let end = tokens.last().map(|t| t.span.clone()).unwrap_or(Span {
        file: file.to_string(),
        line: 1,
        column: 1,
    });
    let mut parser = Parser { tokens, at: 0, end };
    parser.statements()
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|t| &t.tok)
    }

    fn peek_at(&self, offset: usize) -> Option<&Tok> {
        self.tokens.get(self.at + offset).map(|t| &t.tok)
    }

    fn span(&self) -> Span {
        self.tokens
            .get(self.at)
            .map(|t| t.span.clone())
            .unwrap_or_else(|| self.end.clone())
    }

    fn line(&self, offset: usize) -> u32 {
        self.tokens
            .get(self.at + offset)
            .map(|t| t.span.line)
            .unwrap_or(u32::MAX)
    }

    fn bump(&mut self) -> Option<Tok> {
        let tok = self.tokens.get(self.at).map(|t| t.tok.clone());
        self.at += 1;
        tok
    }

    fn found(&self) -> String {
        self.peek()
            .map(Tok::describe)
            .unwrap_or_else(|| "the end of the file".into())
    }

    fn expect(&mut self, punct: &'static str) -> Result<(), LangError> {
        if self.peek() == Some(&Tok::Punct(punct)) {
            self.at += 1;
            Ok(())
        } else {
            Err(LangError::syntax(
                &self.span(),
                format!("expected '{punct}', found {}", self.found()),
            ))
        }
    }

    fn is(&self, punct: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(p)) if *p == punct)
    }

    fn is_name(&self, name: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(n)) if n == name)
    }

    fn statements(&mut self) -> Result<Vec<Statement>, LangError> {
        let mut out = Vec::new();
        while self.peek().is_some() {
            if let Some(statement) = self.statement()? {
                out.push(statement);
            }
        }
        Ok(out)
    }

    fn statement(&mut self) -> Result<Option<Statement>, LangError> {
        let span = self.span();
        match self.peek().cloned() {
            Some(Tok::Name(n)) if n == "application" || n == "define" || n == "class" => {
                if n == "class" && self.peek_at(1) == Some(&Tok::Punct("{")) {
                    // `class { 'x': }`: a resource-like class declaration.
                    return Ok(self.resource(0)?.map(Statement::Resource));
                }
                self.bump();
                let kind = match n.as_str() {
                    "application" => DefinitionKind::Application,
                    "define" => DefinitionKind::Define,
                    _ => DefinitionKind::Class,
                };
                let name = match self.bump() {
                    Some(Tok::Name(name)) => name,
                    other => {
                        return Err(LangError::syntax(
                            &span,
                            format!(
                                "expected a name after '{n}', found {}",
                                other.map(|t| t.describe()).unwrap_or_default()
                            ),
                        ));
                    }
                };
                let parameters = if self.is("(") {
                    self.parameters()?
                } else {
                    Vec::new()
                };
                if self.is_name("inherits") {
                    self.bump();
                    self.bump();
                }
                let body = self.block_resources(1)?;
                Ok(Some(Statement::Definition(Definition {
                    kind,
                    name,
                    parameters,
                    body,
                    span,
                })))
            }
            Some(Tok::Name(n)) if n == "site" && self.peek_at(1) == Some(&Tok::Punct("{")) => {
                self.bump();
                let body = self.block_resources(1)?;
                Ok(Some(Statement::Site { body, span }))
            }
            Some(Tok::Name(n)) if n == "node" => {
                self.bump();
                while self.peek().is_some() && !self.is("{") {
                    self.bump();
                }
                self.skip_balanced(0)?;
                Ok(None)
            }
            Some(Tok::Type(component)) if matches!(self.peek_at(1), Some(Tok::Name(k)) if k == "produces" || k == "consumes") =>
            {
                self.bump();
                let kind = match self.bump() {
                    Some(Tok::Name(k)) if k == "produces" => MappingKind::Produces,
                    _ => MappingKind::Consumes,
                };
                let capability = match self.bump() {
                    Some(Tok::Type(cap)) => cap,
                    other => {
                        return Err(LangError::syntax(
                            &span,
                            format!(
                                "expected a capability type after '{}', found {}",
                                if kind == MappingKind::Produces {
                                    "produces"
                                } else {
                                    "consumes"
                                },
                                other
                                    .map(|t| t.describe())
                                    .unwrap_or_else(|| "the end of the file".into())
                            ),
                        ));
                    }
                };
                if !self.is("{") {
                    return Err(LangError::syntax(
                        &self.span(),
                        format!("expected '{{', found {}", self.found()),
                    ));
                }
                self.skip_balanced(0)?;
                Ok(Some(Statement::Mapping(Mapping {
                    component,
                    kind,
                    capability,
                    span,
                })))
            }
            _ => Ok(self.resource_or_skip(0)?.map(Statement::Resource)),
        }
    }

    /// `( Type $name = default, ... )`
    fn parameters(&mut self) -> Result<Vec<Parameter>, LangError> {
        self.expect("(")?;
        let mut params = Vec::new();
        while !self.is(")") {
            if self.peek().is_none() {
                return Err(LangError::syntax(
                    &self.span(),
                    "expected ')' to close the parameter list",
                ));
            }
            // Optional type: `String`, `Optional[String]`, `Integer[1, 5]`.
            if matches!(self.peek(), Some(Tok::Type(_))) {
                self.bump();
                if self.is("[") {
                    self.skip_balanced(1)?;
                }
            }
            let name = match self.bump() {
                Some(Tok::Var(v)) => v,
                other => {
                    return Err(LangError::syntax(
                        &self
                            .tokens
                            .get(self.at.saturating_sub(1))
                            .map(|t| t.span.clone())
                            .unwrap_or_default(),
                        format!(
                            "expected a parameter like $name, found {}",
                            other.map(|t| t.describe()).unwrap_or_default()
                        ),
                    ));
                }
            };
            let default = if self.is("=") {
                self.bump();
                Some(self.expr(1)?)
            } else {
                None
            };
            params.push(Parameter { name, default });
            if self.is(",") {
                self.bump();
            } else if !self.is(")") {
                return Err(LangError::syntax(
                    &self.span(),
                    format!("expected ',' or ')', found {}", self.found()),
                ));
            }
        }
        self.expect(")")?;
        Ok(params)
    }

    /// `{ statements }` keeping only resource declarations.
    fn block_resources(&mut self, depth: usize) -> Result<Vec<Resource>, LangError> {
        self.expect("{")?;
        let mut resources = Vec::new();
        while !self.is("}") {
            if self.peek().is_none() {
                return Err(LangError::syntax(
                    &self.span(),
                    "expected '}' before the end of the file",
                ));
            }
            if let Some(resource) = self.resource_or_skip(depth)? {
                resources.push(resource);
            }
        }
        self.expect("}")?;
        Ok(resources)
    }

    /// A resource declaration, or any other statement skipped.
    fn resource_or_skip(&mut self, depth: usize) -> Result<Option<Resource>, LangError> {
        let is_resource = matches!(self.peek(), Some(Tok::Name(n)) if !is_keyword(n))
            && self.peek_at(1) == Some(&Tok::Punct("{"))
            && !matches!(self.peek_at(2), Some(Tok::Punct("}")));
        if is_resource {
            return self.resource(depth);
        }
        self.skip_statement(depth)?;
        Ok(None)
    }

    fn resource(&mut self, depth: usize) -> Result<Option<Resource>, LangError> {
        let span = self.span();
        let type_name = match self.bump() {
            Some(Tok::Name(n)) => n,
            _ => return Ok(None),
        };
        self.expect("{")?;
        let mut bodies = Vec::new();
        while !self.is("}") {
            let body_span = self.span();
            let title = self.expr(depth + 1)?;
            if !self.is(":") {
                return Err(LangError::syntax(
                    &self.span(),
                    format!(
                        "expected ':' after the title of a {type_name} resource, found {}",
                        self.found()
                    ),
                ));
            }
            self.bump();
            let mut attributes = Vec::new();
            while !self.is(";") && !self.is("}") {
                let attr_span = self.span();
                let name = match self.bump() {
                    Some(Tok::Name(n)) => n,
                    Some(Tok::Punct("*")) => "*".to_string(),
                    other => {
                        return Err(LangError::syntax(
                            &attr_span,
                            format!(
                                "expected an attribute name, found {}",
                                other.map(|t| t.describe()).unwrap_or_default()
                            ),
                        ));
                    }
                };
                if !self.is("=>") && !self.is("+>") {
                    return Err(LangError::syntax(
                        &self.span(),
                        format!("expected '=>' after attribute name, found {}", self.found()),
                    ));
                }
                self.bump();
                let value = self.expr(depth + 1)?;
                attributes.push(Attribute {
                    name,
                    value,
                    span: attr_span,
                });
                if self.is(",") {
                    self.bump();
                } else if !self.is(";") && !self.is("}") {
                    return Err(LangError::syntax(
                        &self.span(),
                        format!("expected ',', ';' or '}}', found {}", self.found()),
                    ));
                }
            }
            if self.is(";") {
                self.bump();
            }
            bodies.push(ResourceBody {
                title,
                attributes,
                span: body_span,
            });
        }
        self.expect("}")?;
        Ok(Some(Resource {
            type_name,
            bodies,
            span,
        }))
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, LangError> {
        let first = self.primary(depth)?;
        // Binary operators and selectors: parsed past, not evaluated.
        let mut result = first;
        loop {
            match self.peek() {
                Some(Tok::Punct(op)) if is_binary(op) => {
                    self.bump();
                    self.primary(depth + 1)?;
                    result = Expr::Other;
                }
                Some(Tok::Name(n)) if n == "and" || n == "or" || n == "in" => {
                    self.bump();
                    self.primary(depth + 1)?;
                    result = Expr::Other;
                }
                Some(Tok::Punct("?")) => {
                    self.bump();
                    self.skip_balanced(depth + 1)?;
                    result = Expr::Other;
                }
                _ => return Ok(result),
            }
        }
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, LangError> {
        if depth > NESTING_MAX {
            return Err(LangError::syntax(
                &self.span(),
                format!("nesting deeper than {NESTING_MAX} levels"),
            ));
        }
        let span = self.span();
        let tok = match self.bump() {
            Some(tok) => tok,
            None => {
                return Err(LangError::syntax(
                    &span,
                    "expected a value, found the end of the file",
                ));
            }
        };
        let value = match tok {
            Tok::Str { text, interpolated } => Expr::Str { text, interpolated },
            Tok::Number(n) => Expr::Number(n),
            Tok::Var(v) => Expr::Var(v),
            Tok::Regex(_) => Expr::Other,
            Tok::Name(n) if n == "true" || n == "false" => Expr::Bool(n == "true"),
            Tok::Name(n) if n == "undef" => Expr::Undef,
            Tok::Name(n) => {
                if self.is("(") {
                    self.skip_balanced(depth + 1)?;
                    Expr::Other
                } else {
                    Expr::Bare(n)
                }
            }
            Tok::Type(type_name) => {
                let mut titles = Vec::new();
                if self.is("[") {
                    self.bump();
                    while !self.is("]") {
                        titles.push(self.expr(depth + 1)?);
                        if self.is(",") {
                            self.bump();
                        } else if !self.is("]") {
                            return Err(LangError::syntax(
                                &self.span(),
                                format!("expected ',' or ']', found {}", self.found()),
                            ));
                        }
                    }
                    self.bump();
                }
                Expr::Ref {
                    type_name,
                    titles,
                    span,
                }
            }
            Tok::Punct("[") => {
                let mut items = Vec::new();
                while !self.is("]") {
                    if self.peek().is_none() {
                        return Err(LangError::syntax(&span, "'[' is not closed"));
                    }
                    items.push(self.expr(depth + 1)?);
                    if self.is(",") {
                        self.bump();
                    } else if !self.is("]") {
                        return Err(LangError::syntax(
                            &self.span(),
                            format!("expected ',' or ']', found {}", self.found()),
                        ));
                    }
                }
                self.bump();
                Expr::Array(items)
            }
            Tok::Punct("{") => {
                let mut pairs = Vec::new();
                while !self.is("}") {
                    if self.peek().is_none() {
                        return Err(LangError::syntax(&span, "'{' is not closed"));
                    }
                    let key = self.expr(depth + 1)?;
                    if !self.is("=>") {
                        return Err(LangError::syntax(
                            &self.span(),
                            format!("expected '=>' in a hash, found {}", self.found()),
                        ));
                    }
                    self.bump();
                    let value = self.expr(depth + 1)?;
                    pairs.push((key, value));
                    if self.is(",") {
                        self.bump();
                    } else if !self.is("}") {
                        return Err(LangError::syntax(
                            &self.span(),
                            format!("expected ',' or '}}', found {}", self.found()),
                        ));
                    }
                }
                self.bump();
                Expr::Hash(pairs)
            }
            Tok::Punct("(") => {
                let inner = self.expr(depth + 1)?;
                self.expect(")")?;
                inner
            }
            Tok::Punct("-") | Tok::Punct("!") => {
                self.primary(depth + 1)?;
                Expr::Other
            }
            other => {
                return Err(LangError::syntax(
                    &span,
                    format!("expected a value, found {}", other.describe()),
                ));
            }
        };
        Ok(value)
    }

    /// Skips a balanced `{...}`, `[...]` or `(...)` group starting at the current token.
    fn skip_balanced(&mut self, depth: usize) -> Result<(), LangError> {
        let open_span = self.span();
        let mut stack: Vec<&'static str> = Vec::new();
        loop {
            let tok = self.bump();
            match tok {
                None => return Err(LangError::syntax(&open_span, "this bracket is not closed")),
                Some(Tok::Punct(p @ ("{" | "[" | "("))) => {
                    if stack.len() + depth > NESTING_MAX {
                        return Err(LangError::syntax(
                            &open_span,
                            format!("nesting deeper than {NESTING_MAX} levels"),
                        ));
                    }
                    stack.push(match p {
                        "{" => "}",
                        "[" => "]",
                        _ => ")",
                    });
                }
                Some(Tok::Punct(p @ ("}" | "]" | ")"))) => match stack.pop() {
                    Some(expected) if expected == p => {}
                    _ => {
                        let span = self
                            .tokens
                            .get(self.at - 1)
                            .map(|t| t.span.clone())
                            .unwrap_or_default();
                        return Err(LangError::syntax(&span, format!("unbalanced '{p}'")));
                    }
                },
                Some(_) if stack.is_empty() => {
                    return Err(LangError::syntax(
                        &open_span,
                        format!(
                            "expected '{{', found {}",
                            self.tokens[self.at - 1].tok.describe()
                        ),
                    ));
                }
                Some(_) => {}
            }
            if stack.is_empty() {
                return Ok(());
            }
        }
    }

    /// Skips one statement outside the subset (`include x`, `$x = 1`, `if ... {} else {}`,
    /// `A -> B`, calls): tokens up to the end of the line at bracket depth 0, plus any blocks
    /// and continuation lines that belong to it.
    fn skip_statement(&mut self, depth: usize) -> Result<(), LangError> {
        let start = self.at;
        loop {
            match self.peek() {
                None => return Ok(()),
                Some(Tok::Punct(p @ ("}" | "]" | ")"))) if self.at == start => {
                    // Always make progress: a stray closer is an error, never a loop.
                    return Err(LangError::syntax(&self.span(), format!("unbalanced '{p}'")));
                }
                Some(Tok::Punct("}" | "]" | ")")) => return Ok(()),
                Some(Tok::Punct("{" | "[" | "(")) => {
                    self.skip_balanced(depth + 1)?;
                    if !self.continues() {
                        return Ok(());
                    }
                }
                _ => {
                    let line = self.line(0);
                    self.bump();
                    if self.line(0) != line && !self.continues() && !self.last_continues() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The next token continues the current statement (an operator, `else`, a block).
    fn continues(&self) -> bool {
        match self.peek() {
            Some(Tok::Name(n)) => matches!(n.as_str(), "else" | "elsif" | "and" | "or" | "in"),
            Some(Tok::Punct(p)) => matches!(
                *p,
                "->" | "~>"
                    | "<-"
                    | "<~"
                    | "."
                    | "="
                    | "{"
                    | "?"
                    | "=="
                    | "!="
                    | "=~"
                    | "+"
                    | "-"
                    | "*"
                    | "/"
                    | ","
            ),
            _ => false,
        }
    }

    /// The token just consumed expects more (`=`, an operator, a comma).
    fn last_continues(&self) -> bool {
        match self.tokens.get(self.at.wrapping_sub(1)).map(|t| &t.tok) {
            Some(Tok::Punct(p)) => !matches!(*p, "}" | "]" | ")"),
            Some(Tok::Name(n)) => matches!(
                n.as_str(),
                "if" | "unless"
                    | "elsif"
                    | "else"
                    | "case"
                    | "and"
                    | "or"
                    | "in"
                    | "include"
                    | "require"
                    | "contain"
            ),
            _ => false,
        }
    }
}

fn is_keyword(name: &str) -> bool {
    matches!(
        name,
        "if" | "unless"
            | "else"
            | "elsif"
            | "case"
            | "include"
            | "require"
            | "contain"
            | "function"
            | "type"
            | "and"
            | "or"
            | "in"
            | "node"
            | "site"
            | "application"
    )
}

fn is_binary(op: &str) -> bool {
    matches!(
        op,
        "==" | "!="
            | "=~"
            | "!~"
            | "<"
            | ">"
            | "<="
            | ">="
            | "+"
            | "-"
            | "*"
            | "/"
            | "%"
            | "<<"
            | ">>"
            | "."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_applications_mappings_and_site() {
        let text = r#"
# a comment
application lamp (String $db_user, Integer $port = 3306, Optional[String] $x = undef) {
  lamp::db { $name: db_user => $db_user, export => Sql["lamp-${name}"] }
  lamp::app { $name: consume => Sql["lamp-${name}"], export => Http["lamp-${name}"] }
}
Lamp::Db produces Sql { user => $db_user, host => $::fqdn }
define lamp::db ($db_user) { package { 'mysql': ensure => present } if $x { notice('hi') } else { } }
site {
  lamp { 'prod': db_user => 'app', nodes => { Node['db1'] => Lamp::Db['prod'], Node['app1'] => [Lamp::App['prod']] } }
}
node default { }
include foo
$x = 1 + 2
"#;
        let statements = parse("site.pp", text).unwrap();
        let kinds: Vec<String> = statements
            .iter()
            .map(|s| match s {
                Statement::Definition(d) => format!("{:?} {}", d.kind, d.name),
                Statement::Mapping(m) => format!("{} {:?} {}", m.component, m.kind, m.capability),
                Statement::Site { body, .. } => format!("site {}", body.len()),
                Statement::Resource(r) => format!("resource {}", r.type_name),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                "Application lamp",
                "Lamp::Db Produces Sql",
                "Define lamp::db",
                "site 1"
            ]
        );
        let Statement::Definition(app) = &statements[0] else {
            panic!()
        };
        assert_eq!(app.parameters.len(), 3);
        assert_eq!(app.body.len(), 2);
        assert_eq!(app.body[0].bodies[0].attributes[1].name, "export");
    }

    #[test]
    fn syntax_errors_name_file_line_column_and_expectation() {
        let err = parse("site.pp", "site {\n  lamp { 'prod' db_user => 'x' }\n}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "site.pp:2:17: expected ':' after the title of a lamp resource, found 'db_user'"
        );
        let err = parse("a.pp", "lamp { 'x': user 'y' }").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.pp:1:18: expected '=>' after attribute name, found a string"
        );
        let err = parse("a.pp", "application lamp ( { }").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("a.pp:1:20: expected a parameter"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!(
            "x {{ 'a': v => {}1{} }}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(
            parse("deep.pp", &text)
                .unwrap_err()
                .to_string()
                .contains("nesting deeper")
        );
        let text = "{".repeat(10_000).to_string();
        assert!(parse("deep.pp", &text).is_err());
    }
}
