//! `--query` targets without PuppetDB: a subset of PQL evaluated against the agents the cluster
//! knows. With `--puppetdb-url`, queries go to PuppetDB instead ([`crate::puppetdb`]).
//!
//! The nodes a query can select here are the agents in the replicated
//! inventory (every certname that ever opened a session, connected or not), and the only
//! field is `certname`. Supported, in both of PE's forms:
//! - string: `nodes { certname ~ "^web" and not certname = "web3" }`, `inventory[certname] { ... }`,
//!   `nodes {}` (all); operators `=`, `!=`, `~` (regex), `!~`, `and`, `or`, `not`, parentheses;
//! - AST: `["from", "nodes", ["~", "certname", "^web"]]`, with `and`/`or`/`not` arrays.
//!
//! Anything else is a `query-error` naming what was not understood.

use porch_core::ClusterState;
use regex::Regex;
use serde_json::Value;

#[derive(Debug)]
enum Filter {
    All,
    Equals(String),
    Matches(Regex),
    Not(Box<Filter>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

impl Filter {
    fn accepts(&self, certname: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Equals(v) => certname == v,
            Filter::Matches(r) => r.is_match(certname),
            Filter::Not(f) => !f.accepts(certname),
            Filter::And(fs) => fs.iter().all(|f| f.accepts(certname)),
            Filter::Or(fs) => fs.iter().any(|f| f.accepts(certname)),
        }
    }
}

/// Longest query text accepted (here and for PuppetDB), and deepest nesting.
pub const QUERY_BYTES_MAX: usize = 8192;
const NESTING_MAX: usize = 64;

/// The certnames `query` selects, sorted.
pub fn resolve(query: &str, state: &ClusterState) -> Result<Vec<String>, String> {
    check_length(query)?;
    let trimmed = query.trim();
    let filter = if trimmed.starts_with('[') {
        let ast: Value = serde_json::from_str(trimmed)
            .map_err(|e| format!("the query AST is not valid JSON: {e}"))?;
        from_ast(&ast)?
    } else {
        parse_text(trimmed)?
    };
    Ok(state
        .inventory()
        .agents()
        .keys()
        .filter(|name| filter.accepts(name))
        .cloned()
        .collect())
}

/// The bound on query text, for either way of resolving it.
pub fn check_length(query: &str) -> Result<(), String> {
    if query.len() > QUERY_BYTES_MAX {
        return Err(format!(
            "the query is {} bytes; at most {QUERY_BYTES_MAX} are allowed",
            query.len()
        ));
    }
    Ok(())
}

fn from_ast(ast: &Value) -> Result<Filter, String> {
    let items = ast.as_array().ok_or("the query AST must be an array")?;
    match items.first().and_then(Value::as_str) {
        Some("from") => {
            let entity = items.get(1).and_then(Value::as_str).unwrap_or("");
            if entity != "nodes" && entity != "inventory" {
                return Err(format!(
                    "entity {entity:?}: only nodes and inventory are supported"
                ));
            }
            match items.get(2) {
                None => Ok(Filter::All),
                Some(clause) => ast_clause(clause, 0),
            }
        }
        _ => Err("the query AST must start with \"from\"".into()),
    }
}

fn ast_clause(clause: &Value, depth: usize) -> Result<Filter, String> {
    if depth > NESTING_MAX {
        return Err("the query is nested too deeply".into());
    }
    let items = clause
        .as_array()
        .ok_or_else(|| format!("expected a clause array, found {clause}"))?;
    let op = items
        .first()
        .and_then(Value::as_str)
        .ok_or("a clause must start with an operator")?;
    let rest = &items[1..];
    match op {
        "and" | "or" => {
            let filters = rest
                .iter()
                .map(|c| ast_clause(c, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "and" {
                Filter::And(filters)
            } else {
                Filter::Or(filters)
            })
        }
        "not" => match rest {
            [c] => Ok(Filter::Not(Box::new(ast_clause(c, depth + 1)?))),
            _ => Err("\"not\" takes exactly one clause".into()),
        },
        "=" | "~" => match rest {
            [Value::String(field), Value::String(value)] => comparison(field, op, value),
            _ => Err(format!("{op:?} takes a field and a string value")),
        },
        other => Err(format!(
            "operator {other:?} is not supported (use =, ~, and, or, not)"
        )),
    }
}

fn comparison(field: &str, op: &str, value: &str) -> Result<Filter, String> {
    if field != "certname" {
        return Err(format!(
            "field {field:?}: without --puppetdb-url porch knows only certname (no facts)"
        ));
    }
    match op {
        "=" => Ok(Filter::Equals(value.to_string())),
        "!=" => Ok(Filter::Not(Box::new(Filter::Equals(value.to_string())))),
        "~" => Ok(Filter::Matches(
            Regex::new(value).map_err(|e| format!("bad regex {value:?}: {e}"))?,
        )),
        "!~" => Ok(Filter::Not(Box::new(Filter::Matches(
            Regex::new(value).map_err(|e| format!("bad regex {value:?}: {e}"))?,
        )))),
        other => Err(format!("operator {other:?} is not supported")),
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Op(&'static str),
    Open,
    Close,
    OpenBrace,
    CloseBrace,
    Projection,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = match c {
            '(' => {
                i += 1;
                Token::Open
            }
            ')' => {
                i += 1;
                Token::Close
            }
            '{' => {
                i += 1;
                Token::OpenBrace
            }
            '}' => {
                i += 1;
                Token::CloseBrace
            }
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                if i == chars.len() {
                    return Err(format!("column {}: unclosed '['", start + 1));
                }
                i += 1;
                Token::Projection
            }
            '=' => {
                i += 1;
                Token::Op("=")
            }
            '~' => {
                i += 1;
                Token::Op("~")
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Token::Op("!=")
            }
            '!' if chars.get(i + 1) == Some(&'~') => {
                i += 2;
                Token::Op("!~")
            }
            '"' | '\'' => {
                let quote = c;
                i += 1;
                let mut value = String::new();
                while i < chars.len() && chars[i] != quote {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                if i == chars.len() {
                    return Err(format!("column {}: unterminated string", start + 1));
                }
                i += 1;
                Token::Str(value)
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' => {
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                Token::Word(chars[start..i].iter().collect())
            }
            other => return Err(format!("column {}: unexpected {other:?}", start + 1)),
        };
        tokens.push((start + 1, token));
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map(|(c, _)| *c).unwrap_or(0)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self
            .tokens
            .get_mut(self.at)
            .map(|(_, t)| std::mem::replace(t, Token::Close));
        self.at += 1;
        token
    }

    fn or(&mut self, depth: usize) -> Result<Filter, String> {
        let mut filters = vec![self.and(depth)?];
        while self.peek() == Some(&Token::Word("or".into())) {
            self.next();
            filters.push(self.and(depth)?);
        }
        Ok(if filters.len() == 1 {
            filters.remove(0)
        } else {
            Filter::Or(filters)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Filter, String> {
        let mut filters = vec![self.unary(depth)?];
        while self.peek() == Some(&Token::Word("and".into())) {
            self.next();
            filters.push(self.unary(depth)?);
        }
        Ok(if filters.len() == 1 {
            filters.remove(0)
        } else {
            Filter::And(filters)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, String> {
        if depth > NESTING_MAX {
            return Err("the query is nested too deeply".into());
        }
        let column = self.column();
        match self.next() {
            Some(Token::Word(w)) if w == "not" => Ok(Filter::Not(Box::new(self.unary(depth + 1)?))),
            Some(Token::Open) => {
                let inner = self.or(depth + 1)?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err(format!("column {column}: '(' is not closed")),
                }
            }
            Some(Token::Word(field)) => {
                let column = self.column();
                let op = match self.next() {
                    Some(Token::Op(op)) => op,
                    _ => {
                        return Err(format!(
                            "column {column}: expected =, !=, ~ or !~ after {field}"
                        ));
                    }
                };
                let column = self.column();
                match self.next() {
                    Some(Token::Str(value)) => comparison(&field, op, &value),
                    _ => Err(format!("column {column}: expected a quoted string")),
                }
            }
            _ => Err(format!("column {column}: expected a condition")),
        }
    }
}

fn parse_text(text: &str) -> Result<Filter, String> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        at: 0,
    };
    match parser.next() {
        Some(Token::Word(entity)) if entity == "nodes" || entity == "inventory" => {}
        Some(Token::Word(entity)) => {
            return Err(format!(
                "entity {entity:?}: only nodes and inventory are supported"
            ));
        }
        _ => return Err("a query starts with an entity: nodes { ... }".into()),
    }
    if parser.peek() == Some(&Token::Projection) {
        parser.next();
    }
    let column = parser.column();
    if parser.next() != Some(Token::OpenBrace) {
        return Err(format!("column {column}: expected '{{'"));
    }
    let filter = if parser.peek() == Some(&Token::CloseBrace) {
        Filter::All
    } else {
        parser.or(0)?
    };
    let column = parser.column();
    if parser.next() != Some(Token::CloseBrace) {
        return Err(format!("column {column}: expected '}}'"));
    }
    if parser.peek().is_some() {
        return Err(format!(
            "column {}: unexpected text after the query",
            parser.column()
        ));
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use porch_core::{Command, Request};

    fn state(names: &[&str]) -> ClusterState {
        let mut state = ClusterState::new();
        for (i, name) in names.iter().enumerate() {
            state.apply(Request {
                request_id: None,
                now_ms: i as u64,
                command: Command::AgentConnected {
                    certname: name.to_string(),
                    via_node: 1,
                    session: format!("s{i}"),
                },
                origin: None,
            });
        }
        state
    }

    #[test]
    fn string_and_ast_queries_select_by_certname() {
        let s = state(&["web1", "web2", "db1"]);
        assert_eq!(
            resolve(r#"nodes { certname ~ "^web" }"#, &s).unwrap(),
            vec!["web1", "web2"]
        );
        assert_eq!(
            resolve(
                r#"nodes[certname] { certname ~ "^web" and not certname = "web2" }"#,
                &s
            )
            .unwrap(),
            vec!["web1"]
        );
        assert_eq!(
            resolve(r#"inventory { certname = "db1" or certname = "web2" }"#, &s).unwrap(),
            vec!["db1", "web2"]
        );
        assert_eq!(resolve("nodes {}", &s).unwrap().len(), 3);
        assert_eq!(
            resolve(r#"["from","nodes",["~","certname","1$"]]"#, &s).unwrap(),
            vec!["db1", "web1"]
        );
    }

    #[test]
    fn errors_name_what_was_not_understood() {
        let s = state(&["a"]);
        assert!(
            resolve("reports { }", &s)
                .unwrap_err()
                .contains("only nodes and inventory")
        );
        assert!(
            resolve(r#"nodes { facts.os = "x" }"#, &s)
                .unwrap_err()
                .contains("only certname")
        );
        assert!(
            resolve(r#"nodes { certname ~ "(" }"#, &s)
                .unwrap_err()
                .contains("bad regex")
        );
        assert!(
            resolve(r#"nodes { certname = "a" "#, &s)
                .unwrap_err()
                .contains("expected '}'")
        );
        assert!(
            resolve(r#"nodes { certname ~ }"#, &s)
                .unwrap_err()
                .contains("column")
        );
        assert!(resolve("[1]", &s).is_err());
        let deep = format!(
            "nodes {{ {}certname = \"a\"{} }}",
            "(".repeat(200),
            ")".repeat(200)
        );
        assert!(resolve(&deep, &s).unwrap_err().contains("too deeply"));
    }
}
