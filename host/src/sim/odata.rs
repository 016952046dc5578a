//! OData query options as Graph applies them on the routes the emulator
//! serves: a `$filter` parser and evaluator, `$select`, `$top`, `$expand`
//! (kept raw for the route to interpret), and paging with an opaque
//! `$skiptoken` inside an absolute `@odata.nextLink`.
//!
//! The emulator exists so that a client's mistakes surface before a real
//! tenant sees them, so everything here is strict. An option, operator,
//! function or property that the emulator cannot evaluate the way Graph would
//! is a 400 that says what is supported; nothing is silently ignored, because
//! an ignored `$filter` returns plausible but wrong data, the worst kind of
//! emulator bug.
//!
//! The `$filter` grammar (a small recursive-descent parser, depth-limited so
//! that hostile input cannot exhaust the stack):
//!
//! ```text
//! filter   := term ("and" term)*
//! term     := "(" filter ")"
//!           | "startsWith" "(" path "," literal ")"
//!           | path ("eq" | "ge" | "le") literal
//! path     := name ("/" name)*
//! literal  := 'string' ('' escapes a quote) | integer | decimal | true | false
//!           | null | 2024-03-01T00:00:00Z | 6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f
//! ```
//!
//! Which properties may be filtered, with which operators, is declared per
//! resource ([`Resource`]). GUID and `null` literals are parsed so that the
//! error can say precisely what is wrong: every property the emulator filters
//! on is an `Edm.String` in Graph, where an unquoted GUID is a type error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::sim::error::GraphError;

/// The content type Graph writes on JSON responses.
pub const CONTENT_TYPE: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// The longest `$filter` accepted, in bytes: far beyond any real query, and a
/// bound on the parser's work.
const MAX_FILTER_BYTES: usize = 4096;
/// How deeply parentheses may nest.
const MAX_DEPTH: usize = 16;
/// How many conditions one filter may combine.
const MAX_CONDITIONS: usize = 64;

/// OData system query options Graph knows (lower case, without `$`). One of
/// these that a route does not support is refused, never ignored.
const SYSTEM_OPTIONS: &[&str] = &[
    "apply",
    "compute",
    "count",
    "deltatoken",
    "expand",
    "filter",
    "format",
    "id",
    "index",
    "levels",
    "orderby",
    "schemaversion",
    "search",
    "select",
    "skip",
    "skiptoken",
    "top",
];

/// Functions OData defines that the emulator does not evaluate.
const UNSUPPORTED_FUNCTIONS: &[&str] = &[
    "endswith",
    "contains",
    "substringof",
    "indexof",
    "substring",
    "tolower",
    "toupper",
    "trim",
    "concat",
    "length",
    "matchespattern",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "fractionalseconds",
    "date",
    "time",
    "now",
    "totaloffsetminutes",
    "maxdatetime",
    "mindatetime",
    "round",
    "floor",
    "ceiling",
    "cast",
    "isof",
    "any",
    "all",
];

/// Operators OData defines that the emulator does not evaluate.
const UNSUPPORTED_OPERATORS: &[&str] = &[
    "ne", "gt", "lt", "has", "in", "add", "sub", "mul", "div", "divby", "mod",
];

/// A query option a route may support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    /// `$filter`.
    Filter,
    /// `$select`.
    Select,
    /// `$top`.
    Top,
    /// `$skiptoken` (only ever as written into a nextLink by the emulator).
    SkipToken,
    /// `$expand`, handed to the route raw.
    Expand,
}

impl Opt {
    /// The option's name, lower case, without `$`.
    fn bare(self) -> &'static str {
        match self {
            Opt::Filter => "filter",
            Opt::Select => "select",
            Opt::Top => "top",
            Opt::SkipToken => "skiptoken",
            Opt::Expand => "expand",
        }
    }
}

/// The type of a filterable property, as OData names it in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Edm.String`.
    String,
    /// `Edm.Boolean`.
    Bool,
    /// `Edm.Int32`.
    Int,
    /// `Edm.DateTimeOffset`.
    DateTime,
}

impl Kind {
    fn edm(self) -> &'static str {
        match self {
            Kind::String => "Edm.String",
            Kind::Bool => "Edm.Boolean",
            Kind::Int => "Edm.Int32",
            Kind::DateTime => "Edm.DateTimeOffset",
        }
    }
}

/// A comparison in a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `eq`.
    Eq,
    /// `ge`.
    Ge,
    /// `le`.
    Le,
    /// `startsWith(path, 'prefix')`.
    StartsWith,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ge => "ge",
            Op::Le => "le",
            Op::StartsWith => "startsWith",
        }
    }
}

/// A property a route lets clients filter on, and how.
#[derive(Clone, Copy, Debug)]
pub struct Filterable {
    /// The property path, `/`-separated (`status/errorCode`).
    pub path: &'static str,
    /// Its type.
    pub kind: Kind,
    /// The operators allowed on it.
    pub ops: &'static [Op],
}

/// What a route's items look like to `$filter` and `$select`.
#[derive(Debug)]
pub struct Resource {
    /// The entity type (`microsoft.graph.user`), for messages.
    pub entity_type: &'static str,
    /// The resource's name in Graph's filter messages (`User`).
    pub display: &'static str,
    /// Every property the type has (what `$select` accepts).
    pub properties: &'static [&'static str],
    /// The properties `$filter` accepts.
    pub filterable: &'static [Filterable],
}

/// The query options a route accepts.
#[derive(Debug)]
pub struct Spec {
    /// The items' resource.
    pub resource: &'static Resource,
    /// The options accepted; any other system option is a 400.
    pub options: &'static [Opt],
    /// Page size without `$top`.
    pub default_top: u32,
    /// The largest `$top`.
    pub max_top: u32,
}

/// A literal value in a filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `'text'`.
    String(String),
    /// `42`.
    Int(i64),
    /// `4.2`, `1e3`.
    Decimal(f64),
    /// `true`, `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// `2024-03-01T00:00:00Z`.
    DateTime(OffsetDateTime),
    /// An unquoted GUID.
    Guid(String),
}

impl Literal {
    fn edm(&self) -> &'static str {
        match self {
            Literal::String(_) => "Edm.String",
            Literal::Int(_) => "Edm.Int32",
            Literal::Decimal(_) => "Edm.Double",
            Literal::Bool(_) => "Edm.Boolean",
            Literal::Null => "null",
            Literal::DateTime(_) => "Edm.DateTimeOffset",
            Literal::Guid(_) => "Edm.Guid",
        }
    }
}

impl std::fmt::Display for Literal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literal::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::Int(i) => write!(f, "{i}"),
            // Debug keeps a decimal point or exponent, so it reads back as a decimal.
            Literal::Decimal(d) => write!(f, "{d:?}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Null => write!(f, "null"),
            Literal::DateTime(t) => match t.format(&Rfc3339) {
                Ok(s) => write!(f, "{s}"),
                Err(_) => Err(std::fmt::Error),
            },
            Literal::Guid(g) => write!(f, "{g}"),
        }
    }
}

/// A parsed `$filter`.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// All of these hold (two or more, none of them an `And`).
    And(Vec<Filter>),
    /// One comparison of a property with a literal.
    Condition {
        /// The property path's segments.
        path: Vec<String>,
        /// The comparison.
        op: Op,
        /// The literal compared with.
        value: Literal,
    },
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::And(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, " and ")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
            Filter::Condition { path, op, value } => {
                let path = path.join("/");
                match op {
                    Op::StartsWith => write!(f, "startsWith({path},{value})"),
                    _ => write!(f, "{path} {} {value}", op.name()),
                }
            }
        }
    }
}

impl Filter {
    /// The string `property` must equal for an item to pass, when the filter
    /// is `property eq 'text'` or a conjunction with it: lets a route skip
    /// items cheaply before building their JSON. A superset test only (the
    /// filter itself still decides).
    pub fn required_eq(&self, property: &str) -> Option<&str> {
        match self {
            Filter::And(items) => items.iter().find_map(|f| f.required_eq(property)),
            Filter::Condition {
                path,
                op: Op::Eq,
                value: Literal::String(text),
            } if path.len() == 1 && path[0] == property => Some(text),
            Filter::Condition { .. } => None,
        }
    }

    /// Parses `$filter` text (syntax only; see [`Filter::check`]).
    pub fn parse(text: &str) -> Result<Filter, GraphError> {
        if text.len() > MAX_FILTER_BYTES {
            return Err(syntax(format!(
                "the expression is longer than {MAX_FILTER_BYTES} bytes"
            )));
        }
        if text.trim().is_empty() {
            return Err(syntax("the expression is empty".to_owned()));
        }
        let tokens = lex(text)?;
        let mut parser = Parser {
            text,
            tokens,
            pos: 0,
            depth: 0,
            conditions: 0,
        };
        let filter = parser.expression()?;
        match parser.peek() {
            None => Ok(filter),
            Some(_) => Err(parser.unexpected()),
        }
    }

    /// The conditions that must all hold: the filter itself, or the items of
    /// its top-level `and`.
    pub fn conjuncts(&self) -> Vec<&Filter> {
        match self {
            Filter::And(items) => items.iter().collect(),
            condition => vec![condition],
        }
    }

    /// Checks every condition against what `resource` allows: known property,
    /// supported operator, literal of the property's type.
    pub fn check(&self, resource: &Resource) -> Result<(), GraphError> {
        match self {
            Filter::And(items) => items.iter().try_for_each(|i| i.check(resource)),
            Filter::Condition { path, op, value } => {
                let joined = path.join("/");
                let Some(field) = resource.filterable.iter().find(|f| f.path == joined) else {
                    let first = path.first().map(String::as_str).unwrap_or_default();
                    return Err(if resource.properties.contains(&first) {
                        unsupported_property(&joined, resource)
                    } else {
                        unknown_property(first, resource.entity_type)
                    });
                };
                if !field.ops.contains(op) {
                    return Err(unsupported_property(&joined, resource));
                }
                if *value == Literal::Null {
                    return Err(GraphError::unsupported_query(format!(
                        "Comparing '{joined}' with null is not supported: it is an advanced query, which the emulator does not implement."
                    )));
                }
                let compatible = matches!(
                    (field.kind, value),
                    (Kind::String, Literal::String(_))
                        | (Kind::Bool, Literal::Bool(_))
                        | (Kind::Int, Literal::Int(_))
                        | (Kind::DateTime, Literal::DateTime(_))
                );
                if compatible {
                    Ok(())
                } else {
                    let hint = match (field.kind, value) {
                        (Kind::String, Literal::Guid(g)) => format!(" Quote it: '{g}'."),
                        (Kind::DateTime, Literal::String(_)) => {
                            " Write the instant unquoted, like 2024-03-01T00:00:00Z.".to_owned()
                        }
                        _ => String::new(),
                    };
                    Err(GraphError::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!(
                            "Invalid filter clause: A binary operator with incompatible types was detected. Found operand types '{}' and '{}' for operator kind '{}'.{hint}",
                            field.kind.edm(),
                            value.edm(),
                            op.name()
                        ),
                    ))
                }
            }
        }
    }

    /// Whether `item` (the JSON Graph would return for it) satisfies the
    /// filter. String comparisons ignore case, as the directory's do.
    pub fn matches(&self, item: &Value) -> bool {
        match self {
            Filter::And(items) => items.iter().all(|i| i.matches(item)),
            Filter::Condition { path, op, value } => {
                let mut current = item;
                for segment in path {
                    match current.get(segment) {
                        Some(next) => current = next,
                        None => return false,
                    }
                }
                compare(current, *op, value)
            }
        }
    }
}

fn compare(actual: &Value, op: Op, expected: &Literal) -> bool {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match expected {
        Literal::String(want) => {
            let Some(have) = actual.as_str() else {
                return false;
            };
            let (have, want) = (have.to_lowercase(), want.to_lowercase());
            if op == Op::StartsWith {
                return have.starts_with(&want);
            }
            Some(have.cmp(&want))
        }
        Literal::Int(want) => actual.as_i64().map(|have| have.cmp(want)),
        Literal::Decimal(want) => actual.as_f64().and_then(|have| have.partial_cmp(want)),
        Literal::Bool(want) => actual.as_bool().map(|have| have.cmp(want)),
        Literal::DateTime(want) => actual
            .as_str()
            .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
            .map(|have| have.cmp(want)),
        Literal::Null | Literal::Guid(_) => None,
    };
    match (op, ordering) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    }
}

fn syntax(detail: String) -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("Invalid filter clause: {detail}."),
    )
}

fn unsupported_property(path: &str, resource: &Resource) -> GraphError {
    let supported: Vec<String> = resource
        .filterable
        .iter()
        .map(|f| {
            let ops: Vec<&str> = f.ops.iter().map(|o| o.name()).collect();
            format!("{} ({})", f.path, ops.join(", "))
        })
        .collect();
    GraphError::unsupported_query(format!(
        "Unsupported or invalid query filter clause specified for property '{path}' of resource '{}'. The emulator filters on: {}.",
        resource.display,
        supported.join("; ")
    ))
}

fn unknown_property(name: &str, entity_type: &str) -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("Could not find a property named '{name}' on type '{entity_type}'."),
    )
}

fn unsupported_operator(name: &str) -> GraphError {
    GraphError::unsupported_query(format!(
        "Operator '{name}' is not supported. The emulator's $filter supports eq, ge, le, and, and startsWith, on the properties each resource lists."
    ))
}

fn unsupported_function(name: &str) -> GraphError {
    GraphError::unsupported_query(format!(
        "Function '{name}' is not supported. The emulator's $filter supports eq, ge, le, and, and startsWith, on the properties each resource lists."
    ))
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Slash,
    Colon,
    Name(String),
    Literal(Literal),
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Open => write!(f, "("),
            Token::Close => write!(f, ")"),
            Token::Comma => write!(f, ","),
            Token::Slash => write!(f, "/"),
            Token::Colon => write!(f, ":"),
            Token::Name(n) => write!(f, "{n}"),
            Token::Literal(l) => write!(f, "{l}"),
        }
    }
}

/// Splits filter text into tokens, each with its character position.
fn lex(text: &str) -> Result<Vec<(usize, Token)>, GraphError> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let error = |i: usize, what: &str| {
        syntax(format!(
            "{what} at position {i} in '{}'",
            text.chars().take(200).collect::<String>()
        ))
    };
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        let start = i;
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '(' => {
                tokens.push((start, Token::Open));
                i += 1;
            }
            ')' => {
                tokens.push((start, Token::Close));
                i += 1;
            }
            ',' => {
                tokens.push((start, Token::Comma));
                i += 1;
            }
            '/' => {
                tokens.push((start, Token::Slash));
                i += 1;
            }
            // Only lambdas (`any(t: ...)`) use a colon; lexing it lets the
            // parser name the unsupported construct instead of the character.
            ':' => {
                tokens.push((start, Token::Colon));
                i += 1;
            }
            '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match at(i) {
                        None => return Err(error(start, "unterminated string literal")),
                        Some('\'') if at(i + 1) == Some('\'') => {
                            value.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            value.push(ch);
                            i += 1;
                        }
                    }
                }
                tokens.push((start, Token::Literal(Literal::String(value))));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => {
                // A GUID may start with a letter, so try it before a name.
                if let Some(guid) = guid_at(&chars, i) {
                    tokens.push((start, Token::Literal(Literal::Guid(guid))));
                    i += 36;
                } else if c.is_ascii_digit() || c == '-' {
                    let mut end = i + 1;
                    while at(end).is_some_and(|ch| {
                        ch.is_ascii_alphanumeric() || matches!(ch, ':' | '.' | '+' | '-')
                    }) {
                        end += 1;
                    }
                    let run: String = chars[i..end].iter().collect();
                    match number_or_instant(&run) {
                        Some(Ok(literal)) => tokens.push((start, Token::Literal(literal))),
                        Some(Err(message)) => return Err(error(start, &message)),
                        None => {
                            return Err(error(start, &format!("'{run}' is not a valid literal")));
                        }
                    }
                    i = end;
                } else {
                    let mut end = i + 1;
                    while at(end).is_some_and(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
                        end += 1;
                    }
                    tokens.push((start, Token::Name(chars[i..end].iter().collect())));
                    i = end;
                }
            }
            other => return Err(error(start, &format!("character '{other}' is not valid"))),
        }
    }
    Ok(tokens)
}

/// The GUID (8-4-4-4-12 hex digits) starting at `i`, if one does and is not
/// followed by more of a name.
fn guid_at(chars: &[char], i: usize) -> Option<String> {
    let candidate = chars.get(i..i + 36)?;
    let shaped = candidate.iter().enumerate().all(|(n, c)| match n {
        8 | 13 | 18 | 23 => *c == '-',
        _ => c.is_ascii_hexdigit(),
    });
    let ends = chars
        .get(i + 36)
        .is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')));
    (shaped && ends).then(|| candidate.iter().collect())
}

/// Reads a run that starts with a digit or `-`: an integer, a decimal or an
/// instant. `None` when it is none of them; `Some(Err)` with a hint when it
/// looks like a date but is not a valid `Edm.DateTimeOffset`.
fn number_or_instant(run: &str) -> Option<Result<Literal, String>> {
    let bytes = run.as_bytes();
    let looks_like_date = bytes.len() >= 10
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[5..7].iter().all(u8::is_ascii_digit)
        && bytes[7] == b'-';
    if looks_like_date {
        return Some(OffsetDateTime::parse(run, &Rfc3339).map(Literal::DateTime).map_err(|_| {
            format!(
                "'{run}' is not a valid Edm.DateTimeOffset (write a full instant such as 2024-03-01T00:00:00Z)"
            )
        }));
    }
    let digits = run.strip_prefix('-').unwrap_or(run);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Ok(match run.parse::<i64>() {
            Ok(i) => Literal::Int(i),
            Err(_) => Literal::Decimal(run.parse::<f64>().ok()?),
        }));
    }
    if is_decimal(digits) {
        return run.parse::<f64>().ok().map(|d| Ok(Literal::Decimal(d)));
    }
    None
}

/// `digits[.digits][(e|E)[+|-]digits]`, the decimals OData writes.
fn is_decimal(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| all_digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    all_digits(whole) && fraction.is_none_or(all_digits) && exponent_ok
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    pos: usize,
    depth: usize,
    conditions: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn peek_name(&self) -> Option<String> {
        match self.peek() {
            Some(Token::Name(n)) => Some(n.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).map(|(_, t)| t.clone());
        if token.is_some() {
            self.pos += 1;
        }
        token
    }

    fn error(&self, what: &str) -> GraphError {
        let position = self
            .tokens
            .get(self.pos)
            .map(|(p, _)| *p)
            .unwrap_or_else(|| self.text.chars().count());
        syntax(format!(
            "{what} at position {position} in '{}'",
            self.text.chars().take(200).collect::<String>()
        ))
    }

    fn unexpected(&self) -> GraphError {
        match self.peek() {
            Some(Token::Name(n)) if n.eq_ignore_ascii_case("or") => unsupported_operator("or"),
            Some(Token::Name(n))
                if UNSUPPORTED_OPERATORS.contains(&n.to_ascii_lowercase().as_str()) =>
            {
                unsupported_operator(n)
            }
            Some(token) => self.error(&format!("unexpected '{token}'")),
            None => self.error("unexpected end of expression"),
        }
    }

    fn expect(&mut self, want: &Token, what: &str) -> Result<(), GraphError> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected {what}")))
        }
    }

    /// `term ("and" term)*`, flattened into one `And`.
    fn expression(&mut self) -> Result<Filter, GraphError> {
        let mut items = Vec::new();
        push_flat(&mut items, self.term()?);
        loop {
            match self.peek_name().as_deref() {
                Some("and") => {
                    self.pos += 1;
                    push_flat(&mut items, self.term()?);
                }
                Some("or") => return Err(unsupported_operator("or")),
                _ => break,
            }
        }
        Ok(match items.len() {
            1 => items.remove(0),
            _ => Filter::And(items),
        })
    }

    fn term(&mut self) -> Result<Filter, GraphError> {
        match self.peek().cloned() {
            Some(Token::Open) => {
                if self.depth >= MAX_DEPTH {
                    return Err(
                        self.error(&format!("parentheses nest deeper than {MAX_DEPTH} levels"))
                    );
                }
                self.pos += 1;
                self.depth += 1;
                let inner = self.expression()?;
                self.depth -= 1;
                self.expect(&Token::Close, "')'")?;
                Ok(inner)
            }
            Some(Token::Name(name)) => {
                let lower = name.to_ascii_lowercase();
                if lower == "not" {
                    return Err(unsupported_operator("not"));
                }
                self.pos += 1;
                if self.peek() == Some(&Token::Open) {
                    return self.function(&name, &lower);
                }
                let path = self.path(name)?;
                let op = match self.next() {
                    Some(Token::Name(op)) => match op.to_ascii_lowercase().as_str() {
                        "eq" => Op::Eq,
                        "ge" => Op::Ge,
                        "le" => Op::Le,
                        other if UNSUPPORTED_OPERATORS.contains(&other) => {
                            return Err(unsupported_operator(&op));
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.error(&format!(
                                "expected an operator (eq, ge, le) after '{}'",
                                path.join("/")
                            )));
                        }
                    },
                    Some(_) => {
                        self.pos -= 1;
                        return Err(self.error(&format!(
                            "expected an operator (eq, ge, le) after '{}'",
                            path.join("/")
                        )));
                    }
                    None => {
                        return Err(self.error(&format!(
                            "expected an operator (eq, ge, le) after '{}'",
                            path.join("/")
                        )));
                    }
                };
                let value = self.literal()?;
                self.condition(path, op, value)
            }
            Some(Token::Literal(_)) => {
                Err(self
                    .error("a condition starts with a property name (for example userId eq '...')"))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn condition(
        &mut self,
        path: Vec<String>,
        op: Op,
        value: Literal,
    ) -> Result<Filter, GraphError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(self.error(&format!("more than {MAX_CONDITIONS} conditions")));
        }
        Ok(Filter::Condition { path, op, value })
    }

    /// `name(...)`, with the name consumed and `(` next.
    fn function(&mut self, name: &str, lower: &str) -> Result<Filter, GraphError> {
        if lower != "startswith" {
            return Err(if UNSUPPORTED_FUNCTIONS.contains(&lower) {
                unsupported_function(name)
            } else {
                self.error(&format!("unknown function '{name}'"))
            });
        }
        self.pos += 1;
        let first = match self.peek() {
            Some(Token::Name(n)) => n.clone(),
            _ => return Err(self.error("startsWith takes a property name first")),
        };
        self.pos += 1;
        let path = self.path(first)?;
        self.expect(&Token::Comma, "',' between startsWith's arguments")?;
        let value = self.literal()?;
        self.expect(&Token::Close, "')' after startsWith's arguments")?;
        self.condition(path, Op::StartsWith, value)
    }

    /// The rest of a property path whose first segment was just consumed.
    fn path(&mut self, first: String) -> Result<Vec<String>, GraphError> {
        let mut path = vec![first];
        while self.peek() == Some(&Token::Slash) {
            self.pos += 1;
            match self.next() {
                Some(Token::Name(segment)) => {
                    let lower = segment.to_ascii_lowercase();
                    if (lower == "any" || lower == "all") && self.peek() == Some(&Token::Open) {
                        return Err(GraphError::unsupported_query(format!(
                            "Lambda operator '{lower}' is not supported. The emulator's $filter supports eq, ge, le, and, and startsWith, on the properties each resource lists."
                        )));
                    }
                    path.push(segment);
                }
                _ => {
                    self.pos -= 1;
                    return Err(self.error("expected a property name after '/'"));
                }
            }
        }
        Ok(path)
    }

    fn literal(&mut self) -> Result<Literal, GraphError> {
        match self.next() {
            Some(Token::Literal(l)) => Ok(l),
            Some(Token::Name(n)) => match n.to_ascii_lowercase().as_str() {
                "true" => Ok(Literal::Bool(true)),
                "false" => Ok(Literal::Bool(false)),
                "null" => Ok(Literal::Null),
                _ => {
                    self.pos -= 1;
                    Err(self.error(&format!(
                        "expected a literal value, found '{n}' (compare a property with a value, and quote strings)"
                    )))
                }
            },
            Some(_) => {
                self.pos -= 1;
                Err(self.error("expected a literal value"))
            }
            None => Err(self.error("expected a literal value")),
        }
    }
}

fn push_flat(items: &mut Vec<Filter>, filter: Filter) {
    match filter {
        Filter::And(inner) => items.extend(inner),
        condition => items.push(condition),
    }
}

/// The query options of one request, checked against the route's [`Spec`].
#[derive(Debug, Default)]
pub struct Query {
    /// `$filter`, checked against the resource.
    pub filter: Option<Filter>,
    /// `$select`, each name a property of the resource, in request order.
    pub select: Option<Vec<String>>,
    /// The page size: `$top`, or the route's default.
    pub top: u32,
    /// `$expand`, as written; the route interprets it.
    pub expand: Option<String>,
    /// The key of the last item of the previous page (from `$skiptoken`).
    after: Option<String>,
    /// Every option but `$skiptoken`, to carry into the nextLink.
    kept: Vec<(String, String)>,
}

impl Query {
    /// Reads the raw query string of a request against `spec`.
    pub fn parse(raw: Option<&str>, spec: &Spec) -> Result<Query, GraphError> {
        let mut query = Query {
            top: spec.default_top,
            ..Query::default()
        };
        let mut seen: Vec<Opt> = Vec::new();
        for part in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let (name, value) = (decode(name)?, decode(value)?);
            let Some(bare) = name.strip_prefix('$') else {
                if SYSTEM_OPTIONS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(GraphError::bad_request(format!(
                        "Write the query option as '${name}': on v1.0 the $ prefix is optional only for some APIs, and the emulator requires it everywhere."
                    )));
                }
                // Not an OData option: Graph ignores custom query options, and so do we.
                query.kept.push((name, value));
                continue;
            };
            let lower = bare.to_ascii_lowercase();
            let Some(opt) = spec.options.iter().copied().find(|o| o.bare() == lower) else {
                let supported: Vec<String> = spec
                    .options
                    .iter()
                    .map(|o| format!("${}", o.bare()))
                    .collect();
                let supported = match supported.is_empty() {
                    true => "no query options".to_owned(),
                    false => supported.join(", "),
                };
                return Err(if SYSTEM_OPTIONS.contains(&lower.as_str()) {
                    GraphError::unsupported_query(format!(
                        "The query option '{name}' is not supported on this resource by the emulator; it supports {supported}."
                    ))
                } else {
                    GraphError::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("The query parameter '{name}' is not supported."),
                    )
                });
            };
            if seen.contains(&opt) {
                return Err(GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!(
                        "Query option '${lower}' was specified more than once, but it must be specified at most once."
                    ),
                ));
            }
            seen.push(opt);
            match opt {
                Opt::Filter => {
                    let filter = Filter::parse(&value)?;
                    filter.check(spec.resource)?;
                    query.filter = Some(filter);
                }
                Opt::Select => query.select = Some(select(&value, spec.resource)?),
                Opt::Top => query.top = top(&value, spec.max_top)?,
                Opt::SkipToken => {
                    query.after = Some(decode_token(&value)?);
                    continue;
                }
                Opt::Expand => {
                    if value.trim().is_empty() {
                        return Err(GraphError::bad_request("The $expand option is empty."));
                    }
                    query.expand = Some(value.trim().to_owned());
                }
            }
            query.kept.push((format!("${lower}"), value));
        }
        Ok(query)
    }

    /// Whether `item` passes `$filter` (always, without one).
    pub fn matches(&self, item: &Value) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(item))
    }

    /// Whether `$select` names `property`.
    pub fn selects(&self, property: &str) -> bool {
        self.select
            .as_ref()
            .is_some_and(|s| s.iter().any(|p| p == property))
    }

    /// The page of `items` this request asks for, and the nextLink to the
    /// rest when there is more. `key` identifies an item uniquely and stably;
    /// the token carries the key of the page's last item, so a page follows
    /// on correctly even when newer records were added in front meanwhile.
    /// `link_base` is the absolute URL of the collection, without a query.
    pub fn page<T>(
        &self,
        items: Vec<T>,
        key: impl Fn(&T) -> String,
        link_base: &str,
    ) -> Result<(Vec<T>, Option<String>), GraphError> {
        let start = match &self.after {
            None => 0,
            Some(after) => items
                .iter()
                .position(|item| key(item) == *after)
                .map(|p| p + 1)
                .ok_or_else(expired_token)?,
        };
        let top = usize::try_from(self.top).unwrap_or(usize::MAX);
        let mut rest: Vec<T> = items.into_iter().skip(start).collect();
        let more = rest.len() > top;
        rest.truncate(top);
        let next = match (more, rest.last()) {
            (true, Some(last)) => Some(self.next_link(link_base, &key(last))),
            _ => None,
        };
        Ok((rest, next))
    }

    fn next_link(&self, link_base: &str, last_key: &str) -> String {
        let mut link = format!("{link_base}?");
        for (name, value) in &self.kept {
            link.push_str(&utf8_percent_encode(name, QUERY_NAME).to_string());
            link.push('=');
            link.push_str(&utf8_percent_encode(value, QUERY_VALUE).to_string());
            link.push('&');
        }
        link.push_str("$skiptoken=");
        link.push_str(&encode_token(last_key));
        link
    }
}

/// What to escape in a nextLink's parameter values: everything but what is
/// unambiguous in a query (so `+`, `&`, `=`, `#`, `%` and spaces are escaped).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b',')
    .remove(b'(')
    .remove(b')')
    .remove(b'/')
    .remove(b':')
    .remove(b'\'');
/// Names additionally keep their `$`.
const QUERY_NAME: &AsciiSet = &QUERY_VALUE.remove(b'$');

fn decode(text: &str) -> Result<String, GraphError> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| GraphError::bad_request("The query string is not valid UTF-8 once decoded."))
}

/// Skip tokens are opaque to clients; a version prefix lets the format change.
const TOKEN_PREFIX: &str = "lk1:";

fn encode_token(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{key}"))
}

fn decode_token(token: &str) -> Result<String, GraphError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(TOKEN_PREFIX).map(str::to_owned))
        .ok_or_else(expired_token)
}

fn expired_token() -> GraphError {
    GraphError::bad_request(
        "The $skiptoken is invalid or has expired. Follow @odata.nextLink exactly as returned.",
    )
}

fn select(value: &str, resource: &Resource) -> Result<Vec<String>, GraphError> {
    let mut names: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Invalid $select '{value}': a property name is empty."),
            ));
        }
        if !resource.properties.contains(&name) {
            return Err(unknown_property(name, resource.entity_type));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn top(value: &str, max: u32) -> Result<u32, GraphError> {
    let invalid = || {
        GraphError::bad_request(format!(
            "Invalid page size specified: '{value}'. Must be between 1 and {max} inclusive."
        ))
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match value.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(invalid()),
    }
}

/// `{graph_base}/$metadata#{set}`, with `(a,b)` for a `$select` and
/// `/$entity` for a single object, exactly as Graph writes it.
pub fn context(graph_base: &str, set: &str, select: Option<&[String]>, entity: bool) -> String {
    let mut context = format!("{graph_base}/$metadata#{set}");
    if let Some(select) = select {
        context.push('(');
        context.push_str(&select.join(","));
        context.push(')');
    }
    if entity {
        context.push_str("/$entity");
    }
    context
}

/// The properties `names` of `full`, in that order; a name `full` lacks comes
/// back as `null`, as Graph returns selected properties without a value.
pub fn project(full: &Map<String, Value>, names: &[String]) -> Map<String, Value> {
    names
        .iter()
        .map(|n| (n.clone(), full.get(n).cloned().unwrap_or(Value::Null)))
        .collect()
}

/// A collection response: context, value, and the nextLink when there is one.
pub fn collection(context: String, value: Vec<Value>, next_link: Option<String>) -> Value {
    let mut body = Map::new();
    body.insert("@odata.context".to_owned(), Value::String(context));
    if let Some(next) = next_link {
        body.insert("@odata.nextLink".to_owned(), Value::String(next));
    }
    body.insert("value".to_owned(), Value::Array(value));
    Value::Object(body)
}

/// A JSON response with Graph's content type.
pub fn respond(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const SIGN_INS: Resource = Resource {
        entity_type: "microsoft.graph.signIn",
        display: "SignIn",
        properties: &[
            "id",
            "userId",
            "createdDateTime",
            "status",
            "appDisplayName",
            "isInteractive",
        ],
        filterable: &[
            Filterable {
                path: "userId",
                kind: Kind::String,
                ops: &[Op::Eq],
            },
            Filterable {
                path: "appDisplayName",
                kind: Kind::String,
                ops: &[Op::Eq, Op::StartsWith],
            },
            Filterable {
                path: "createdDateTime",
                kind: Kind::DateTime,
                ops: &[Op::Eq, Op::Ge, Op::Le],
            },
            Filterable {
                path: "status/errorCode",
                kind: Kind::Int,
                ops: &[Op::Eq],
            },
            Filterable {
                path: "isInteractive",
                kind: Kind::Bool,
                ops: &[Op::Eq],
            },
        ],
    };
    const SPEC: Spec = Spec {
        resource: &SIGN_INS,
        options: &[Opt::Filter, Opt::Select, Opt::Top, Opt::SkipToken],
        default_top: 1000,
        max_top: 1000,
    };

    fn checked(text: &str) -> Result<Filter, GraphError> {
        let filter = Filter::parse(text)?;
        filter.check(&SIGN_INS)?;
        Ok(filter)
    }

    fn item() -> Value {
        json!({
            "id": "1",
            "userId": "6EA91A8D-e32e-41a1-b7f6-3a2b1c0d9e8f",
            "createdDateTime": "2024-03-02T10:00:00.1234567Z",
            "status": {"errorCode": 50053},
            "appDisplayName": "Graph Explorer",
            "isInteractive": true,
        })
    }

    #[test]
    fn the_examples_graph_documents_parse_and_match() {
        let item = item();
        for text in [
            "userId eq '6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f' and createdDateTime ge 2024-03-01T00:00:00Z",
            "status/errorCode eq 50053",
            "startsWith(appDisplayName,'Graph')",
            "startswith(appDisplayName, 'graph')",
            "(userId eq '6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f') and (isInteractive eq true)",
            "createdDateTime le 2024-03-02T10:00:00.1234567Z and createdDateTime ge 2024-03-02T11:00:00+01:00",
        ] {
            let filter = checked(text).unwrap_or_else(|e| panic!("{text}: {}", e.message));
            assert!(filter.matches(&item), "{text} should match");
        }
        for text in [
            "status/errorCode eq 50126",
            "createdDateTime ge 2024-03-03T00:00:00Z",
            "startsWith(appDisplayName,'Explorer')",
            "isInteractive eq false",
        ] {
            assert!(
                !checked(text).unwrap().matches(&item),
                "{text} should not match"
            );
        }
    }

    #[test]
    fn strings_unescape_doubled_quotes() {
        let filter = Filter::parse("appDisplayName eq 'O''Brien''s app'").unwrap();
        assert_eq!(
            filter,
            Filter::Condition {
                path: vec!["appDisplayName".into()],
                op: Op::Eq,
                value: Literal::String("O'Brien's app".into())
            }
        );
        assert!(filter.matches(&json!({"appDisplayName": "o'brien's APP"})));
    }

    #[test]
    fn unsupported_operators_and_functions_are_unsupported_queries() {
        for text in [
            "userId ne 'x'",
            "userId eq 'x' or userId eq 'y'",
            "not (userId eq 'x')",
            "endsWith(appDisplayName,'x')",
            "contains(appDisplayName,'x')",
            "status/errorCode gt 0",
            "userId in ('a','b')",
            "targetResources/any(t: t/id eq 'x')",
        ] {
            let error = checked(text).unwrap_err();
            assert_eq!(
                error.code, "Request_UnsupportedQuery",
                "{text}: {}",
                error.message
            );
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn garbage_and_type_errors_are_bad_requests_that_say_why() {
        for (text, needle) in [
            ("userId eq", "expected a literal"),
            ("userId 'x'", "expected an operator"),
            ("userId eq 'x", "unterminated"),
            ("(userId eq 'x'", "expected ')'"),
            ("userId eq 'x')", "unexpected ')'"),
            ("userId eq 'x' and", "unexpected end"),
            ("userId eq 'x' userId", "unexpected 'userId'"),
            ("'x' eq userId", "starts with a property"),
            ("userId eq otherId", "expected a literal value"),
            ("frobnicate(userId)", "unknown function"),
            ("userId eq 'x' ; drop", "not valid"),
            ("createdDateTime ge 2024-03-01", "DateTimeOffset"),
            (
                "createdDateTime ge '2024-03-01T00:00:00Z'",
                "incompatible types",
            ),
            ("userId eq 6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f", "Quote it"),
            ("status/errorCode eq '50053'", "incompatible types"),
            ("isInteractive eq 1", "incompatible types"),
            ("nosuch eq 'x'", "Could not find a property named 'nosuch'"),
            ("", "empty"),
        ] {
            let error = checked(text).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(
                error.message.contains(needle),
                "{text:?}: {} should mention {needle:?}",
                error.message
            );
        }
        let error = checked("id eq 'x'").unwrap_err();
        assert_eq!(
            error.code, "Request_UnsupportedQuery",
            "a known property not filterable"
        );
        let error = checked("userId ge 'x'").unwrap_err();
        assert_eq!(
            error.code, "Request_UnsupportedQuery",
            "an operator the property lacks"
        );
        let error = checked("userId eq null").unwrap_err();
        assert_eq!(error.code, "Request_UnsupportedQuery");
    }

    #[test]
    fn hostile_nesting_and_length_are_refused_without_recursion_blowing_up() {
        let deep = format!(
            "{}userId eq 'x'{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert!(Filter::parse(&deep).is_err());
        let too_deep = format!("{}userId eq 'x'{}", "(".repeat(20), ")".repeat(20));
        assert!(
            Filter::parse(&too_deep)
                .unwrap_err()
                .message
                .contains("nest")
        );
        let nested = format!("{}userId eq 'x'{}", "(".repeat(10), ")".repeat(10));
        assert!(Filter::parse(&nested).is_ok());
        let many = vec!["userId eq 'x'"; 100].join(" and ");
        assert!(
            Filter::parse(&many)
                .unwrap_err()
                .message
                .contains("conditions")
        );
    }

    #[test]
    fn query_options_are_checked_and_carried_into_the_next_link() {
        let raw =
            "$filter=startsWith(appDisplayName,%27Graph%27)&$top=2&$select=id,userId&api-version=x";
        let query = Query::parse(Some(raw), &SPEC).unwrap();
        assert_eq!(query.top, 2);
        assert_eq!(
            query.select.as_deref(),
            Some(&["id".to_owned(), "userId".to_owned()][..])
        );
        let items: Vec<u32> = (0..5).collect();
        let (page, next) = query
            .page(
                items.clone(),
                |i| i.to_string(),
                "http://h/v1.0/auditLogs/signIns",
            )
            .unwrap();
        assert_eq!(page, vec![0, 1]);
        let next = next.unwrap();
        assert!(next.starts_with("http://h/v1.0/auditLogs/signIns?$filter=startsWith(appDisplayName,'Graph')&$top=2&$select=id,userId&api-version=x&$skiptoken="), "{next}");
        let raw_next = next.split_once('?').unwrap().1;
        let second = Query::parse(Some(raw_next), &SPEC).unwrap();
        let (page, next) = second.page(items.clone(), |i| i.to_string(), "b").unwrap();
        assert_eq!(page, vec![2, 3]);
        let third = Query::parse(Some(next.unwrap().split_once('?').unwrap().1), &SPEC).unwrap();
        let (page, next) = third.page(items, |i| i.to_string(), "b").unwrap();
        assert_eq!((page, next), (vec![4], None));
    }

    #[test]
    fn unsupported_options_and_bad_values_are_refused() {
        for raw in [
            "$count=true",
            "$orderby=id",
            "$skip=2",
            "$foo=1",
            "filter=userId eq 'x'",
            "$top=0",
            "$top=1001",
            "$top=-1",
            "$top=ten",
            "$top=1&$top=2",
            "$select=nosuch",
            "$select=id,,userId",
            "$skiptoken=not-a-token",
            "$filter=",
            "$filter=%FF",
        ] {
            let error = Query::parse(Some(raw), &SPEC).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{raw}");
        }
        assert!(
            Query::parse(Some("$TOP=5&$Filter=userId+eq+'x'"), &SPEC).is_ok(),
            "option names ignore case"
        );
    }

    #[test]
    fn context_strings_are_graphs() {
        let base = "http://h/v1.0";
        assert_eq!(
            context(base, "users", None, true),
            "http://h/v1.0/$metadata#users/$entity"
        );
        let select = ["displayName".to_owned(), "accountEnabled".to_owned()];
        assert_eq!(
            context(base, "users", Some(&select), true),
            "http://h/v1.0/$metadata#users(displayName,accountEnabled)/$entity"
        );
        assert_eq!(
            context(base, "users", None, false),
            "http://h/v1.0/$metadata#users"
        );
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}".prop_filter("not a keyword", |n| {
            let l = n.to_ascii_lowercase();
            ![
                "and", "or", "not", "eq", "ge", "le", "true", "false", "null",
            ]
            .contains(&l.as_str())
                && !UNSUPPORTED_OPERATORS.contains(&l.as_str())
                && guid_at(&n.chars().collect::<Vec<_>>(), 0).is_none()
        })
    }

    fn literal() -> impl Strategy<Value = Literal> {
        prop_oneof![
            any::<String>().prop_map(Literal::String),
            any::<i64>().prop_map(Literal::Int),
            (-1.0e12f64..1.0e12).prop_map(Literal::Decimal),
            any::<bool>().prop_map(Literal::Bool),
            Just(Literal::Null),
            (0i64..4_102_444_800, -12i8..12).prop_map(|(secs, hours)| {
                let offset = time::UtcOffset::from_hms(hours, 0, 0).unwrap();
                Literal::DateTime(
                    OffsetDateTime::from_unix_timestamp(secs)
                        .unwrap()
                        .to_offset(offset),
                )
            }),
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(Literal::Guid),
        ]
    }

    fn condition() -> impl Strategy<Value = Filter> {
        (
            prop::collection::vec(name(), 1..4),
            prop_oneof![
                Just(Op::Eq),
                Just(Op::Ge),
                Just(Op::Le),
                Just(Op::StartsWith)
            ],
            literal(),
        )
            .prop_map(|(path, op, value)| Filter::Condition { path, op, value })
    }

    fn filter() -> impl Strategy<Value = Filter> {
        prop_oneof![
            condition(),
            prop::collection::vec(condition(), 2..5).prop_map(Filter::And),
        ]
    }

    /// Pieces of filters, to assemble near-misses.
    fn fragment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "userId",
            "eq",
            "ge",
            "le",
            "ne",
            "and",
            "or",
            "not",
            "(",
            ")",
            ",",
            "/",
            "'a''b'",
            "'",
            "startsWith",
            "endsWith",
            "any",
            "status/errorCode",
            "50053",
            "-1",
            "1.5e3",
            "2024-03-01T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "true",
            "null",
            "6ea91a8d-e32e-41a1-b7f6-3a2b1c0d9e8f",
            "t:",
            "é",
            "\u{0}",
        ])
    }

    proptest! {
        #[test]
        fn random_text_never_panics(text in any::<String>()) {
            let _ = Filter::parse(&text).map(|f| f.check(&SIGN_INS));
        }

        #[test]
        fn near_miss_filters_never_panic(pieces in prop::collection::vec(fragment(), 0..24)) {
            let text = pieces.join(" ");
            if let Ok(filter) = Filter::parse(&text) {
                let _ = filter.check(&SIGN_INS);
                let _ = filter.matches(&item());
            }
        }

        #[test]
        fn random_query_strings_never_panic(raw in any::<String>()) {
            let _ = Query::parse(Some(&raw), &SPEC);
        }

        #[test]
        fn well_formed_filters_round_trip(filter in filter()) {
            let text = filter.to_string();
            let parsed = Filter::parse(&text);
            let error = parsed.as_ref().err().map(|e| e.message.clone());
            prop_assert_eq!(parsed.ok(), Some(filter), "{}: {:?}", text, error);
        }

        #[test]
        fn parenthesised_and_spaced_filters_mean_the_same(filter in filter()) {
            let text = match &filter {
                Filter::And(items) => items.iter().map(|i| format!(" ( {i} ) ")).collect::<Vec<_>>().join("and"),
                condition => format!("(({condition}))"),
            };
            prop_assert_eq!(Filter::parse(&text).ok(), Some(filter));
        }

        #[test]
        fn an_equality_matches_the_value_it_names_in_any_case(value in "[a-zA-Z0-9 '@.]{0,20}", other in "[a-z]{1,5}") {
            let filter = Filter::Condition { path: vec!["userId".into()], op: Op::Eq, value: Literal::String(value.clone()) };
            let parsed = checked(&filter.to_string()).unwrap();
            let same = json!({"userId": value.to_uppercase()});
            let longer = json!({"userId": format!("{value}{other}")});
            let absent = json!({});
            prop_assert!(parsed.matches(&same));
            prop_assert!(!parsed.matches(&longer));
            prop_assert!(!parsed.matches(&absent));
        }

        #[test]
        fn an_instant_range_matches_exactly_the_instants_inside(a in 0i64..2_000_000_000, b in 0i64..2_000_000_000, t in 0i64..2_000_000_000) {
            let (lo, hi) = (a.min(b), a.max(b));
            let instant = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap();
            let text = format!("createdDateTime ge {} and createdDateTime le {}", Literal::DateTime(instant(lo)), Literal::DateTime(instant(hi)));
            let filter = checked(&text).unwrap();
            let item = json!({"createdDateTime": crate::sim::state::rfc3339(instant(t))});
            prop_assert_eq!(filter.matches(&item), lo <= t && t <= hi);
        }
    }
}
