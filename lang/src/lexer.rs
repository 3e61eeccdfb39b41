//! The lexer: text to tokens with file:line:column spans. Never panics: anything it cannot
//! read is an error naming where.

use crate::error::{LangError, Span};
use crate::token::{Tok, Token};

/// Longest manifest accepted.
pub const MANIFEST_BYTES_MAX: usize = 64 * 1024 * 1024;

const PUNCTS: [&str; 38] = [
    "=>", "->", "~>", "<-", "<~", "==", "!=", "=~", "!~", "<=", ">=", "<<", ">>", "<|", "|>", "+=",
    "::", "{", "}", "[", "]", "(", ")", ",", ";", ":", "=", "<", ">", "+", "-", "*", "/", "%", "!",
    "?", "|", ".",
];

pub fn lex(file: &str, text: &str) -> Result<Vec<Token>, LangError> {
    if text.len() > MANIFEST_BYTES_MAX {
        return Err(LangError::Io {
            path: file.to_string(),
            message: format!(
                "manifest of {} bytes is over the {MANIFEST_BYTES_MAX}-byte limit",
                text.len()
            ),
        });
    }
    let chars: Vec<char> = text.chars().collect();
    let mut tokens: Vec<Token> = Vec::new();
    let (mut i, mut line, mut column) = (0usize, 1u32, 1u32);
    let span = |line: u32, column: u32| Span {
        file: file.to_string(),
        line,
        column,
    };
    // Advances over chars[i..j], keeping line and column.
    let advance = |i: &mut usize, line: &mut u32, column: &mut u32, to: usize| {
        while *i < to {
            if chars[*i] == '\n' {
                *line += 1;
                *column = 1;
            } else {
                *column += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let start = span(line, column);
        if c.is_whitespace() {
            let to = i + 1;
            advance(&mut i, &mut line, &mut column, to);
            continue;
        }
        if c == '#' {
            let end = (i..chars.len())
                .find(|&j| chars[j] == '\n')
                .unwrap_or(chars.len());
            advance(&mut i, &mut line, &mut column, end);
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .ok_or_else(|| LangError::syntax(&start, "unterminated /* comment"))?;
            advance(&mut i, &mut line, &mut column, end + 2);
            continue;
        }
        if c == '\'' || c == '"' {
            let mut j = i + 1;
            let mut value = String::new();
            loop {
                match chars.get(j) {
                    None => return Err(LangError::syntax(&start, "unterminated string")),
                    Some(&ch) if ch == c => break,
                    Some('\\') => {
                        let next = chars.get(j + 1).copied();
                        match (c, next) {
                            ('\'', Some('\'')) | ('\'', Some('\\')) => {
                                value.push(next.unwrap_or('\\'))
                            }
                            ('"', Some('"')) | ('"', Some('\\')) | ('"', Some('$')) => {
                                value.push(next.unwrap_or('\\'))
                            }
                            ('"', Some('n')) => value.push('\n'),
                            ('"', Some('t')) => value.push('\t'),
                            (_, Some(other)) => {
                                value.push('\\');
                                value.push(other);
                            }
                            (_, None) => {
                                return Err(LangError::syntax(&start, "unterminated string"));
                            }
                        }
                        j += 2;
                        continue;
                    }
                    Some(&ch) => value.push(ch),
                }
                j += 1;
            }
            tokens.push(Token {
                tok: Tok::Str {
                    text: value,
                    interpolated: c == '"',
                },
                span: start,
            });
            advance(&mut i, &mut line, &mut column, j + 1);
            continue;
        }
        if c == '$' {
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    Some(c) if c.is_alphanumeric() || *c == '_' => j += 1,
                    Some(':')
                        if chars.get(j + 1) == Some(&':')
                            && chars
                                .get(j + 2)
                                .is_some_and(|n| n.is_alphanumeric() || *n == '_') =>
                    {
                        j += 2
                    }
                    _ => break,
                }
            }
            let name: String = chars[i + 1..j].iter().collect();
            if name.is_empty() {
                return Err(LangError::syntax(
                    &start,
                    "expected a variable name after '$'",
                ));
            }
            tokens.push(Token {
                tok: Tok::Var(name),
                span: start,
            });
            advance(&mut i, &mut line, &mut column, j);
            continue;
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '.') {
                j += 1;
            }
            tokens.push(Token {
                tok: Tok::Number(chars[i..j].iter().collect()),
                span: start,
            });
            advance(&mut i, &mut line, &mut column, j);
            continue;
        }
        if c.is_alphabetic()
            || c == '_'
            || (c == ':'
                && chars.get(i + 1) == Some(&':')
                && chars.get(i + 2).is_some_and(|n| n.is_alphabetic()))
        {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_alphanumeric()
                    || chars[j] == '_'
                    || (chars[j] == ':'
                        && chars.get(j + 1) == Some(&':')
                        && chars
                            .get(j + 2)
                            .is_some_and(|n| n.is_alphanumeric() || *n == '_')))
            {
                j += if chars[j] == ':' { 2 } else { 1 };
            }
            let word: String = chars[i..j].iter().collect();
            let word = word.trim_start_matches("::").to_string();
            let tok = if word.chars().next().is_some_and(|f| f.is_uppercase()) {
                Tok::Type(word)
            } else {
                Tok::Name(word)
            };
            tokens.push(Token { tok, span: start });
            advance(&mut i, &mut line, &mut column, j);
            continue;
        }
        if c == '/' && regex_allowed(tokens.last()) {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '/' && chars[j] != '\n' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            if chars.get(j) != Some(&'/') {
                return Err(LangError::syntax(&start, "unterminated regex"));
            }
            tokens.push(Token {
                tok: Tok::Regex(chars[i + 1..j.min(chars.len())].iter().collect()),
                span: start,
            });
            advance(&mut i, &mut line, &mut column, j + 1);
            continue;
        }
        let rest: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        match PUNCTS.iter().find(|p| rest.starts_with(**p)) {
            Some(p) => {
                tokens.push(Token {
                    tok: Tok::Punct(p),
                    span: start,
                });
                let to = i + p.chars().count();
                advance(&mut i, &mut line, &mut column, to);
            }
            None => {
                return Err(LangError::syntax(
                    &start,
                    format!("unexpected character {c:?}"),
                ));
            }
        }
    }
    Ok(tokens)
}

/// A `/` starts a regex after `node`, `,`, `=~`, `!~`, `(` or at the start; else it divides.
fn regex_allowed(previous: Option<&Token>) -> bool {
    match previous.map(|t| &t.tok) {
        None => true,
        Some(Tok::Name(n)) => n == "node",
        Some(Tok::Punct(p)) => matches!(*p, "," | "=~" | "!~" | "(" | "[" | "=>" | "{"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_line_and_column() {
        let tokens = lex("site.pp", "lamp { 'prod':\n  nodes => $x }").unwrap();
        assert_eq!(tokens[0].tok, Tok::Name("lamp".into()));
        assert_eq!(tokens[4].tok, Tok::Name("nodes".into()));
        assert_eq!((tokens[4].span.line, tokens[4].span.column), (2, 3));
        assert_eq!(tokens[6].tok, Tok::Var("x".into()));
    }

    #[test]
    fn type_names_and_qualified_variables() {
        let tokens = lex("a.pp", "Lamp::Db produces Sql { host => $::fqdn }").unwrap();
        assert_eq!(tokens[0].tok, Tok::Type("Lamp::Db".into()));
        assert_eq!(tokens[6].tok, Tok::Var("::fqdn".into()));
    }

    #[test]
    fn errors_name_the_place() {
        let err = lex("x.pp", "a {\n 'open").unwrap_err();
        assert_eq!(err.to_string(), "x.pp:2:2: unterminated string");
        assert!(
            lex("x.pp", "a ` b")
                .unwrap_err()
                .to_string()
                .starts_with("x.pp:1:3")
        );
    }
}
