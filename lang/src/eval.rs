//! Evaluation of the few expressions application orchestration needs: titles and capability
//! references inside an application body, with `$name`/`$title` and the instance's parameters
//! in scope. `"lamp-${name}"` → `lamp-prod`.

use crate::ast::Expr;
use std::collections::BTreeMap;

/// A value as far as the subset evaluates it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Array(Vec<Value>),
    Ref {
        type_name: String,
        titles: Vec<String>,
    },
    Hash(Vec<(Value, Value)>),
    Undef,
    /// Not evaluated (arithmetic, calls, facts).
    Unknown,
}

pub type Scope = BTreeMap<String, Value>;

impl Value {
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// Evaluates `expr` in `scope`.
pub fn eval(expr: &Expr, scope: &Scope) -> Value {
    match expr {
        Expr::Str { text, interpolated } => {
            if *interpolated {
                Value::Str(interpolate(text, scope))
            } else {
                Value::Str(text.clone())
            }
        }
        Expr::Number(n) => Value::Str(n.clone()),
        Expr::Bool(b) => Value::Str(b.to_string()),
        Expr::Bare(word) => Value::Str(word.clone()),
        Expr::Undef => Value::Undef,
        Expr::Var(name) => scope
            .get(name.trim_start_matches("::"))
            .cloned()
            .unwrap_or(Value::Unknown),
        Expr::Array(items) => Value::Array(items.iter().map(|e| eval(e, scope)).collect()),
        Expr::Hash(pairs) => Value::Hash(
            pairs
                .iter()
                .map(|(k, v)| (eval(k, scope), eval(v, scope)))
                .collect(),
        ),
        Expr::Ref {
            type_name, titles, ..
        } => Value::Ref {
            type_name: canonical_type(type_name),
            titles: titles
                .iter()
                .flat_map(|t| match eval(t, scope) {
                    Value::Array(items) => items
                        .into_iter()
                        .filter_map(|v| v.as_text())
                        .collect::<Vec<_>>(),
                    other => other.as_text().into_iter().collect(),
                })
                .collect(),
        },
        Expr::Other => Value::Unknown,
    }
}

/// Expands `${var}` and `$var` in a double-quoted string; unknown variables stay as written.
pub fn interpolate(text: &str, scope: &Scope) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let (name, end) = if chars.get(i + 1) == Some(&'{') {
            match (i + 2..chars.len()).find(|&j| chars[j] == '}') {
                Some(close) => (chars[i + 2..close].iter().collect::<String>(), close + 1),
                None => {
                    out.push('$');
                    i += 1;
                    continue;
                }
            }
        } else {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            (chars[i + 1..j].iter().collect::<String>(), j)
        };
        let key = name
            .trim()
            .trim_start_matches('$')
            .trim_start_matches("::")
            .to_string();
        match scope.get(&key).and_then(Value::as_text) {
            Some(value) if !key.is_empty() => out.push_str(&value),
            _ => out.extend(&chars[i..end]),
        }
        i = end.max(i + 1);
    }
    out
}

/// `lamp::db` / `Lamp::db` → `Lamp::Db` (Puppet type names are case-insensitive).
pub fn canonical_type(name: &str) -> String {
    name.split("::")
        .map(|segment| {
            let mut chars = segment.chars();
            match chars.next() {
                Some(first) => first
                    .to_uppercase()
                    .chain(chars.flat_map(|c| c.to_lowercase()))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_name_and_parameters() {
        let scope = Scope::from([("name".to_string(), Value::Str("prod".into()))]);
        assert_eq!(interpolate("lamp-${name}", &scope), "lamp-prod");
        assert_eq!(interpolate("lamp-$name-x", &scope), "lamp-prod-x");
        assert_eq!(
            interpolate("cost $5 ${missing}", &scope),
            "cost $5 ${missing}"
        );
        assert_eq!(interpolate("broken ${name", &scope), "broken ${name");
    }

    #[test]
    fn type_names_are_canonical() {
        assert_eq!(canonical_type("lamp::db"), "Lamp::Db");
        assert_eq!(canonical_type("SQL"), "Sql");
    }
}
