//! Puppet data types as task metadata spells them (`String[1]`, `Optional[Integer[0, 10]]`,
//! `Enum[present, absent]`, `Variant[String, Array[String]]`), parsed once and checked against
//! the JSON values of a task's parameters before any node runs.
//!
//! The subset: Any, Data, Scalar, String, Integer, Float, Numeric, Boolean, Enum, Pattern,
//! Optional, NotUndef, Undef, Array, Hash, Variant, and Sensitive (checked as its inner type).
//! Any other type (Struct, Tuple, a module's type alias) parses as [`PuppetType::Unchecked`]:
//! every value passes, and the submission says so in a warning rather than refusing a task
//! that is valid for Puppet.

use serde_json::Value;
use std::fmt;

/// Longest type expression read (a metadata file is the user's; keep the parser bounded).
pub const TYPE_TEXT_BYTES_MAX: usize = 2048;
/// Deepest nesting of type parameters.
const NESTING_MAX: usize = 32;

#[derive(Clone, Debug)]
pub enum PuppetType {
    /// Any value, undef included (`Any`, and `Data`: JSON holds nothing else).
    Any,
    Scalar,
    /// Length in characters within `[min, max]`.
    String {
        min: u64,
        max: u64,
    },
    Integer {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Numeric,
    Boolean,
    Enum(Vec<String>),
    /// Matches if any of the patterns matches somewhere in the string (Puppet's semantics).
    Pattern(Vec<regex::Regex>),
    Optional(Box<PuppetType>),
    NotUndef(Box<PuppetType>),
    Undef,
    Array {
        element: Box<PuppetType>,
        min: u64,
        max: u64,
    },
    Hash {
        key: Box<PuppetType>,
        value: Box<PuppetType>,
        min: u64,
        max: u64,
    },
    Variant(Vec<PuppetType>),
    /// A type porch does not check, by name: any value passes.
    Unchecked(String),
}

/// Why a type expression could not be read: the text and what is wrong at which offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    pub message: String,
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl PuppetType {
    /// Parses a type expression such as `Optional[Enum['present', absent]]`.
    pub fn parse(text: &str) -> Result<PuppetType, TypeError> {
        if text.len() > TYPE_TEXT_BYTES_MAX {
            return Err(TypeError {
                message: format!(
                    "type is {} bytes; at most {TYPE_TEXT_BYTES_MAX}",
                    text.len()
                ),
            });
        }
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            text,
            tokens,
            at: 0,
        };
        let parsed = parser.parse_type(0)?;
        if parser.at != parser.tokens.len() {
            return Err(parser.error("unexpected text after the type"));
        }
        Ok(parsed)
    }

    /// Whether `value` (`None`: the parameter was not given) is an instance of this type.
    pub fn accepts(&self, value: &Value) -> bool {
        match self {
            PuppetType::Any | PuppetType::Unchecked(_) => true,
            PuppetType::Undef => value.is_null(),
            PuppetType::Optional(inner) => value.is_null() || inner.accepts(value),
            PuppetType::NotUndef(inner) => !value.is_null() && inner.accepts(value),
            PuppetType::Scalar => {
                matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
            }
            PuppetType::String { min, max } => match value {
                Value::String(s) => {
                    let length = s.chars().count() as u64;
                    *min <= length && length <= *max
                }
                _ => false,
            },
            PuppetType::Integer { min, max } => value
                .as_i64()
                .filter(|_| value.is_i64() || value.is_u64())
                .is_some_and(|n| *min <= n && n <= *max),
            PuppetType::Float { min, max } => {
                value.is_f64() && value.as_f64().is_some_and(|f| *min <= f && f <= *max)
            }
            PuppetType::Numeric => value.is_number(),
            PuppetType::Boolean => value.is_boolean(),
            PuppetType::Enum(words) => value.as_str().is_some_and(|s| words.iter().any(|w| w == s)),
            PuppetType::Pattern(patterns) => value
                .as_str()
                .is_some_and(|s| patterns.iter().any(|p| p.is_match(s))),
            PuppetType::Array { element, min, max } => match value {
                Value::Array(items) => {
                    let length = items.len() as u64;
                    *min <= length && length <= *max && items.iter().all(|i| element.accepts(i))
                }
                _ => false,
            },
            PuppetType::Hash {
                key,
                value: value_type,
                min,
                max,
            } => match value {
                Value::Object(map) => {
                    let length = map.len() as u64;
                    *min <= length
                        && length <= *max
                        && map.iter().all(|(k, v)| {
                            key.accepts(&Value::String(k.clone())) && value_type.accepts(v)
                        })
                }
                _ => false,
            },
            PuppetType::Variant(types) => types.iter().any(|t| t.accepts(value)),
        }
    }

    /// The names of unchecked types inside this one (for the submission's warning).
    pub fn unchecked_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        self.collect_unchecked(&mut names);
        names
    }

    fn collect_unchecked(&self, out: &mut Vec<String>) {
        match self {
            PuppetType::Unchecked(name) => out.push(name.clone()),
            PuppetType::Optional(inner) | PuppetType::NotUndef(inner) => {
                inner.collect_unchecked(out)
            }
            PuppetType::Array { element, .. } => element.collect_unchecked(out),
            PuppetType::Hash { key, value, .. } => {
                key.collect_unchecked(out);
                value.collect_unchecked(out);
            }
            PuppetType::Variant(types) => types.iter().for_each(|t| t.collect_unchecked(out)),
            _ => {}
        }
    }
}

/// The Puppet type name of a JSON value, for error messages (`got Integer`).
pub fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "Undef".into(),
        Value::Bool(_) => "Boolean".into(),
        Value::Number(n) if n.is_f64() => format!("Float {n}"),
        Value::Number(n) => format!("Integer {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("String of length {}", s.chars().count())
        }
        Value::String(s) => format!("String {s:?}"),
        Value::Array(items) => format!("Array of {} elements", items.len()),
        Value::Object(map) => format!("Hash of {} entries", map.len()),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Name(String),
    Integer(i64),
    Float(f64),
    Text(String),
    Regex(String),
    Open,
    Close,
    Comma,
    /// `{`...`}` of a Struct's hash: skipped whole, since Struct is not checked.
    Braced(String),
}

struct Lexed {
    token: Token,
    offset: usize,
}

fn tokenize(text: &str) -> Result<Vec<Lexed>, TypeError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let error = |offset: usize, what: &str| TypeError {
        message: format!("{what} at offset {offset} of {text:?}"),
    };
    while i < chars.len() {
        let (offset, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '[' | ']' | ',' => {
                tokens.push(Lexed {
                    token: match c {
                        '[' => Token::Open,
                        ']' => Token::Close,
                        _ => Token::Comma,
                    },
                    offset,
                });
                i += 1;
            }
            '\'' | '"' | '/' => {
                let quote = c;
                let mut value = String::new();
                i += 1;
                loop {
                    let Some(&(_, next)) = chars.get(i) else {
                        return Err(error(offset, "unterminated literal"));
                    };
                    i += 1;
                    if next == quote {
                        break;
                    }
                    if next == '\\'
                        && let Some(&(_, escaped)) = chars.get(i)
                    {
                        i += 1;
                        // A regex keeps its escapes for the regex engine; only an escaped
                        // slash loses its backslash.
                        if quote == '/' && escaped != '/' {
                            value.push('\\');
                        }
                        value.push(escaped);
                        continue;
                    }
                    value.push(next);
                }
                tokens.push(Lexed {
                    token: if quote == '/' {
                        Token::Regex(value)
                    } else {
                        Token::Text(value)
                    },
                    offset,
                });
            }
            '{' => {
                let mut depth = 0usize;
                let start = i;
                loop {
                    let Some(&(_, next)) = chars.get(i) else {
                        return Err(error(offset, "unbalanced '{'"));
                    };
                    i += 1;
                    match next {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let braced: String = chars[start..i].iter().map(|(_, c)| c).collect();
                tokens.push(Lexed {
                    token: Token::Braced(braced),
                    offset,
                });
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|(_, c)| c.is_ascii_digit() || *c == '.' || *c == 'e')
                {
                    i += 1;
                }
                let number: String = chars[start..i].iter().map(|(_, c)| c).collect();
                let token = if let Ok(n) = number.parse::<i64>() {
                    Token::Integer(n)
                } else if let Ok(f) = number.parse::<f64>() {
                    Token::Float(f)
                } else {
                    return Err(error(offset, &format!("bad number {number:?}")));
                };
                tokens.push(Lexed { token, offset });
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|(_, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                {
                    i += 1;
                }
                let name: String = chars[start..i].iter().map(|(_, c)| c).collect();
                tokens.push(Lexed {
                    token: Token::Name(name),
                    offset,
                });
            }
            other => return Err(error(offset, &format!("unexpected {other:?}"))),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Lexed>,
    at: usize,
}

/// One parameter of a parameterised type.
enum Argument {
    Type(PuppetType),
    Integer(i64),
    Float(f64),
    Text(String),
    Regex(String),
    Default,
    Other,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> TypeError {
        let offset = self
            .tokens
            .get(self.at)
            .map_or(self.text.len(), |t| t.offset);
        TypeError {
            message: format!("{what} at offset {offset} of {:?}", self.text),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|t| &t.token)
    }

    fn parse_type(&mut self, depth: usize) -> Result<PuppetType, TypeError> {
        if depth > NESTING_MAX {
            return Err(self.error("type nested too deeply"));
        }
        let name = match self.peek() {
            Some(Token::Name(name)) => name.clone(),
            _ => return Err(self.error("expected a type name")),
        };
        self.at += 1;
        let arguments = if self.peek() == Some(&Token::Open) {
            self.at += 1;
            self.parse_arguments(depth)?
        } else {
            Vec::new()
        };
        self.build(&name, arguments)
    }

    fn parse_arguments(&mut self, depth: usize) -> Result<Vec<Argument>, TypeError> {
        let mut arguments = Vec::new();
        loop {
            let argument = match self.peek() {
                Some(Token::Close) if arguments.is_empty() => {
                    self.at += 1;
                    return Ok(arguments);
                }
                Some(Token::Name(name)) if name == "default" => {
                    self.at += 1;
                    Argument::Default
                }
                Some(Token::Name(name)) if name.starts_with(|c: char| c.is_ascii_lowercase()) => {
                    // A bare word: an Enum member.
                    let word = name.clone();
                    self.at += 1;
                    Argument::Text(word)
                }
                Some(Token::Name(_)) => Argument::Type(self.parse_type(depth + 1)?),
                Some(Token::Integer(n)) => {
                    let n = *n;
                    self.at += 1;
                    Argument::Integer(n)
                }
                Some(Token::Float(f)) => {
                    let f = *f;
                    self.at += 1;
                    Argument::Float(f)
                }
                Some(Token::Text(s)) => {
                    let s = s.clone();
                    self.at += 1;
                    Argument::Text(s)
                }
                Some(Token::Regex(r)) => {
                    let r = r.clone();
                    self.at += 1;
                    Argument::Regex(r)
                }
                Some(Token::Braced(_)) => {
                    self.at += 1;
                    Argument::Other
                }
                _ => return Err(self.error("expected a type parameter")),
            };
            arguments.push(argument);
            match self.peek() {
                Some(Token::Comma) => self.at += 1,
                Some(Token::Close) => {
                    self.at += 1;
                    return Ok(arguments);
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn build(&self, name: &str, arguments: Vec<Argument>) -> Result<PuppetType, TypeError> {
        let wrong = |what: &str| TypeError {
            message: format!("{name}: {what} (in {:?})", self.text),
        };
        let count = arguments.len();
        let mut arguments = arguments.into_iter();
        let bound_u = |argument: Option<Argument>, unbounded: u64| -> Result<u64, TypeError> {
            match argument {
                None | Some(Argument::Default) => Ok(unbounded),
                Some(Argument::Integer(n)) if n >= 0 => Ok(n as u64),
                _ => Err(wrong(
                    "a size bound must be a non-negative integer or default",
                )),
            }
        };
        let inner = |argument: Option<Argument>| -> Result<PuppetType, TypeError> {
            match argument {
                None => Ok(PuppetType::Any),
                Some(Argument::Type(t)) => Ok(t),
                Some(_) => Err(wrong("expected a type")),
            }
        };
        let parsed = match name {
            "Any" | "Data" | "RichData" if count == 0 => PuppetType::Any,
            "Scalar" | "ScalarData" if count == 0 => PuppetType::Scalar,
            "Boolean" if count == 0 => PuppetType::Boolean,
            "Numeric" if count == 0 => PuppetType::Numeric,
            "Undef" if count == 0 => PuppetType::Undef,
            "String" if count <= 2 => {
                let min = bound_u(arguments.next(), 0)?;
                let max = bound_u(arguments.next(), u64::MAX)?;
                PuppetType::String { min, max }
            }
            "Integer" if count <= 2 => {
                let bound = |argument: Option<Argument>, unbounded: i64| match argument {
                    None | Some(Argument::Default) => Ok(unbounded),
                    Some(Argument::Integer(n)) => Ok(n),
                    _ => Err(wrong("a bound must be an integer or default")),
                };
                PuppetType::Integer {
                    min: bound(arguments.next(), i64::MIN)?,
                    max: bound(arguments.next(), i64::MAX)?,
                }
            }
            "Float" if count <= 2 => {
                let bound = |argument: Option<Argument>, unbounded: f64| match argument {
                    None | Some(Argument::Default) => Ok(unbounded),
                    Some(Argument::Integer(n)) => Ok(n as f64),
                    Some(Argument::Float(f)) => Ok(f),
                    _ => Err(wrong("a bound must be a number or default")),
                };
                PuppetType::Float {
                    min: bound(arguments.next(), f64::NEG_INFINITY)?,
                    max: bound(arguments.next(), f64::INFINITY)?,
                }
            }
            "Enum" if count > 0 => PuppetType::Enum(
                arguments
                    .map(|a| match a {
                        Argument::Text(s) => Ok(s),
                        _ => Err(wrong("members must be strings or bare words")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            "Pattern" if count > 0 => PuppetType::Pattern(
                arguments
                    .map(|a| match a {
                        Argument::Regex(source) | Argument::Text(source) => {
                            regex::Regex::new(&source)
                                .map_err(|e| wrong(&format!("bad pattern /{source}/: {e}")))
                        }
                        _ => Err(wrong("members must be regular expressions")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            "Optional" if count == 1 => PuppetType::Optional(Box::new(inner(arguments.next())?)),
            "NotUndef" if count <= 1 => PuppetType::NotUndef(Box::new(inner(arguments.next())?)),
            "Sensitive" if count <= 1 => inner(arguments.next())?,
            "Array" if count <= 3 => {
                let element = Box::new(inner(arguments.next())?);
                PuppetType::Array {
                    element,
                    min: bound_u(arguments.next(), 0)?,
                    max: bound_u(arguments.next(), u64::MAX)?,
                }
            }
            "Hash" if count == 0 => PuppetType::Hash {
                key: Box::new(PuppetType::Any),
                value: Box::new(PuppetType::Any),
                min: 0,
                max: u64::MAX,
            },
            "Hash" if (2..=4).contains(&count) => {
                let key = Box::new(inner(arguments.next())?);
                let value = Box::new(inner(arguments.next())?);
                PuppetType::Hash {
                    key,
                    value,
                    min: bound_u(arguments.next(), 0)?,
                    max: bound_u(arguments.next(), u64::MAX)?,
                }
            }
            "Variant" if count > 0 => PuppetType::Variant(
                arguments
                    .map(|a| match a {
                        Argument::Type(t) => Ok(t),
                        _ => Err(wrong("members must be types")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            "Any" | "Data" | "RichData" | "Scalar" | "ScalarData" | "Boolean" | "Numeric"
            | "Undef" | "String" | "Integer" | "Float" | "Enum" | "Pattern" | "Optional"
            | "NotUndef" | "Sensitive" | "Array" | "Hash" | "Variant" => {
                return Err(wrong(&format!(
                    "{count} type parameters is not a valid form"
                )));
            }
            other => PuppetType::Unchecked(other.to_string()),
        };
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accepts(text: &str, value: Value) -> bool {
        PuppetType::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .accepts(&value)
    }

    #[test]
    fn strings_check_their_length_in_characters() {
        assert!(accepts("String", json!("")));
        assert!(!accepts("String[1]", json!("")));
        assert!(accepts("String[1]", json!("x")));
        assert!(accepts("String[1, 3]", json!("äöü")));
        assert!(!accepts("String[1, 3]", json!("abcd")));
        assert!(!accepts("String", json!(1)));
        assert!(!accepts("String", Value::Null));
    }

    #[test]
    fn integers_and_floats_are_distinct_and_bounded() {
        assert!(accepts("Integer", json!(-5)));
        assert!(!accepts("Integer", json!(1.5)));
        assert!(!accepts("Integer", json!("1")));
        assert!(accepts("Integer[0, 10]", json!(10)));
        assert!(!accepts("Integer[0, 10]", json!(11)));
        assert!(accepts("Integer[default, 0]", json!(-100)));
        assert!(accepts("Integer[1]", json!(i64::MAX)));
        assert!(accepts("Float", json!(1.5)));
        assert!(!accepts("Float", json!(1)));
        assert!(accepts("Numeric", json!(1)));
        assert!(accepts("Float[0.5, 1]", json!(0.75)));
    }

    #[test]
    fn enums_patterns_and_booleans() {
        assert!(accepts("Enum[present, absent]", json!("absent")));
        assert!(accepts("Enum['present', \"absent\"]", json!("present")));
        assert!(!accepts("Enum[present, absent]", json!("latest")));
        assert!(accepts("Pattern[/^\\d+$/]", json!("123")));
        assert!(!accepts("Pattern[/^\\d+$/]", json!("12a")));
        assert!(accepts("Pattern[/a\\/b/]", json!("xa/by")));
        assert!(accepts("Boolean", json!(false)));
        assert!(!accepts("Boolean", json!("true")));
    }

    #[test]
    fn optional_variant_array_and_hash_compose() {
        assert!(accepts("Optional[String[1]]", Value::Null));
        assert!(accepts("Optional[String[1]]", json!("x")));
        assert!(!accepts("Optional[String[1]]", json!("")));
        assert!(accepts("Variant[Integer, Enum[all]]", json!("all")));
        assert!(accepts("Variant[Integer, Enum[all]]", json!(3)));
        assert!(!accepts("Variant[Integer, Enum[all]]", json!(true)));
        assert!(accepts("Array[String]", json!(["a", "b"])));
        assert!(!accepts("Array[String]", json!(["a", 1])));
        assert!(!accepts("Array[String, 1]", json!([])));
        assert!(accepts("Array", json!([1, "x", null])));
        assert!(accepts("Hash", json!({"a": 1})));
        assert!(accepts("Hash[String, Integer]", json!({"a": 1})));
        assert!(!accepts("Hash[String, Integer]", json!({"a": "1"})));
        assert!(!accepts("Hash", json!([])));
        assert!(accepts("Data", Value::Null));
        assert!(accepts("Any", json!({"x": [1]})));
        assert!(!accepts("NotUndef", Value::Null));
        assert!(accepts("Sensitive[String[1]]", json!("secret")));
    }

    #[test]
    fn unknown_types_are_unchecked_and_named() {
        let t = PuppetType::parse("Optional[Struct[{a => String}]]").unwrap();
        assert!(t.accepts(&json!(5)));
        assert_eq!(t.unchecked_names(), vec!["Struct".to_string()]);
        let alias = PuppetType::parse("Stdlib::Absolutepath").unwrap();
        assert_eq!(
            alias.unchecked_names(),
            vec!["Stdlib::Absolutepath".to_string()]
        );
    }

    #[test]
    fn malformed_types_are_errors_with_the_place() {
        for bad in [
            "",
            "String[",
            "String[1,",
            "Integer['a']",
            "Enum[]",
            "Optional[String, Integer]",
            "Pattern[/(/]",
            "String[1]]",
            "Enum['open",
            "Array[String, -1]",
            "Hash[String]",
            "Integer[1.5]",
            "String#",
        ] {
            let error = PuppetType::parse(bad).expect_err(bad);
            assert!(!error.message.is_empty(), "{bad}");
        }
        let deep = format!("{}String{}", "Array[".repeat(40), "]".repeat(40));
        assert!(
            PuppetType::parse(&deep)
                .unwrap_err()
                .message
                .contains("deeply")
        );
        assert!(PuppetType::parse(&"A".repeat(5000)).is_err());
    }
}
