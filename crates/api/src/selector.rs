//! Label and field selectors, as upstream apimachinery's `labels` and `fields` packages.
//!
//! * [`LabelSelector`] parses the `?labelSelector=` grammar (`a=b`, `a!=b`, `a in (x,y)`,
//!   `!a`, `a>1`, ...) with upstream's lexer and parser, so accepted inputs, canonical string
//!   forms and error messages are the ones a real API server gives. It also converts from the
//!   API type `metav1.LabelSelector` (`matchLabels` + `matchExpressions`).
//! * [`FieldSelector`] parses `?fieldSelector=` (`k=v`, `k==v`, `k!=v`, with `\,` `\=` `\\`
//!   escapes in values).
//!
//! Both are evaluated for every object of every list and every watch event, so matching
//! allocates nothing.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde::Deserialize;
use serde_json::Value;

use crate::errors::ApiError;

/// A selector that could not be parsed or built, with upstream's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    message: String,
}

impl SelectorError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message, e.g. `unable to parse requirement: found '', expected: identifier`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Upstream's refusal of a field selector on a field the resource does not index, as the
    /// core/v1 (and other hand-written) field label conversions word it:
    /// `field label not supported: foo`.
    pub fn field_label_not_supported(field: &str) -> Self {
        Self::new(format!("field label not supported: {field}"))
    }

    /// Upstream's refusal of a field selector for resources that only support the metadata
    /// fields (`runtime.DefaultMetaV1FieldSelectorConversion`, used by e.g. CRDs):
    /// `"foo" is not a known field selector: only "metadata.name", "metadata.namespace"`.
    pub fn not_a_known_field_selector(field: &str) -> Self {
        Self::new(format!(
            "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            go_quote(field)
        ))
    }
}

/// A selector the client sent that cannot be parsed is a 400 BadRequest carrying the parser's
/// message, as upstream's list and watch handlers answer.
impl From<SelectorError> for ApiError {
    fn from(e: SelectorError) -> Self {
        ApiError::bad_request(e.message)
    }
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// How a label [`Requirement`] relates its key to its values (upstream's `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`.
    Equals,
    /// `key==value`: the same test as `Equals`, kept apart to print back as written.
    DoubleEquals,
    /// `key!=value`: the key is absent or has another value.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`: the key is absent or has none of the values.
    NotIn,
    /// `key`: the key is present.
    Exists,
    /// `!key`: the key is absent.
    DoesNotExist,
    /// `key>n`: the key's value is an integer greater than `n`.
    GreaterThan,
    /// `key<n`: the key's value is an integer less than `n`.
    LessThan,
}

impl Operator {
    /// Upstream's name of the operator (`selection.Operator`'s string): `=`, `in`, `gt`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equals => "=",
            Self::DoubleEquals => "==",
            Self::NotEquals => "!=",
            Self::In => "in",
            Self::NotIn => "notin",
            Self::Exists => "exists",
            Self::DoesNotExist => "!",
            Self::GreaterThan => "gt",
            Self::LessThan => "lt",
        }
    }
}

/// One test of a label selector: a key, an operator and its values (upstream's
/// `labels.Requirement`). Values are kept sorted, so membership is a binary search and the
/// canonical string form needs no sorting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement after upstream's checks (`labels.NewRequirement`): the key must
    /// be a qualified name, `in`/`notin` need values, `=`/`==`/`!=` exactly one, existence
    /// tests none, `gt`/`lt` exactly one integer, and every value must be a valid label value.
    /// All failures are reported together, as upstream's aggregated error.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        mut values: Vec<String>,
    ) -> Result<Self, SelectorError> {
        let key = key.into();
        let mut errors = Vec::new();
        let key_errors = label_key_errors(&key);
        if !key_errors.is_empty() {
            errors.push(invalid("key", &go_quote(&key), &key_errors.join("; ")));
        }
        let count_error = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(detail) = count_error {
            errors.push(invalid("values", &go_string_slice(&values), detail));
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, value) in values.iter().enumerate() {
                if value.parse::<i64>().is_err() {
                    errors.push(invalid(
                        &format!("values[{i}]"),
                        &go_quote(value),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        for (i, value) in values.iter().enumerate() {
            let value_errors = label_value_errors(value);
            if !value_errors.is_empty() {
                errors.push(invalid(
                    &format!("values[{i}][{key}]"),
                    &go_quote(value),
                    &value_errors.join("; "),
                ));
            }
        }
        if let Some(message) = aggregate(errors) {
            return Err(SelectorError::new(message));
        }
        values.sort_unstable();
        Ok(Self {
            key,
            operator,
            values,
        })
    }

    /// The label key tested.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted (empty for `Exists`/`DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values
            .binary_search_by(|v| v.as_str().cmp(value))
            .is_ok()
    }

    /// Whether a label value (`None`: the label is absent) satisfies this requirement, as
    /// upstream's `Requirement.Matches`.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.has_value(v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [bound]) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.as_slice(),
                ) else {
                    return false;
                };
                let Ok(bound) = bound.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

/// Upstream's `Requirement.String()`: `!k`, `k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
/// `k notin (a,b)`, `k>1`, `k<1`.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (before, after) = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", ""),
            Operator::DoubleEquals => ("==", ""),
            Operator::NotEquals => ("!=", ""),
            Operator::In => (" in (", ")"),
            Operator::NotIn => (" notin (", ")"),
            Operator::GreaterThan => (">", ""),
            Operator::LessThan => ("<", ""),
        };
        f.write_str(before)?;
        for (i, value) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(value)?;
        }
        f.write_str(after)
    }
}

/// A label selector: the AND of its requirements, sorted by key (upstream's
/// `labels.Selector`). The default value selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// Upstream's `labels.Nothing()`: what a missing (`nil`) API selector selects.
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every label set (`labels.Everything()`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no label set (`labels.Nothing()`); it prints as `""` and is
    /// not [`empty`](Self::is_empty).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// The AND of `requirements`, ordered by key as upstream's `Selector.Add` does (stably, so
    /// requirements on one key keep their order).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self {
            requirements,
            nothing: false,
        }
    }

    /// The selector matching exactly these labels (`labels.SelectorFromSet`), without
    /// validating them.
    pub fn from_set(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.clone()],
            })
            .collect();
        Self {
            requirements,
            nothing: false,
        }
    }

    /// Parses the `?labelSelector=` string grammar (`labels.Parse`). The empty string (or only
    /// whitespace) selects everything.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        Parser::new(selector).parse().map(Self::from_requirements)
    }

    /// Converts the API type as upstream's `metav1.LabelSelectorAsSelector`: a selector with
    /// neither `matchLabels` nor `matchExpressions` selects everything.
    pub fn from_label_selector(selector: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let match_labels = selector.match_labels.iter().flatten();
        let match_expressions = selector.match_expressions.iter().flatten();
        let mut requirements = Vec::new();
        for (key, value) in match_labels {
            requirements.push(Requirement::new(
                key.as_str(),
                Operator::Equals,
                vec![value.clone()],
            )?);
        }
        for expression in match_expressions {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::new(format!(
                        "{} is not a valid pod selector operator",
                        go_quote(other)
                    )));
                }
            };
            let values = expression.values.clone().unwrap_or_default();
            requirements.push(Requirement::new(expression.key.as_str(), operator, values)?);
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Converts an optional API selector: a missing one selects nothing (upstream's `nil`
    /// selector), a present but empty one selects everything.
    pub fn from_optional_label_selector(
        selector: Option<&metav1::LabelSelector>,
    ) -> Result<Self, SelectorError> {
        selector.map_or_else(|| Ok(Self::nothing()), Self::from_label_selector)
    }

    /// Converts the JSON of a `metav1.LabelSelector` (e.g. `spec.selector` of a stored
    /// object): absent or `null` selects nothing, `{}` selects everything.
    pub fn from_json(selector: Option<&Value>) -> Result<Self, SelectorError> {
        match selector {
            None | Some(Value::Null) => Ok(Self::nothing()),
            Some(value) => {
                let api = metav1::LabelSelector::deserialize(value)
                    .map_err(|e| SelectorError::new(format!("invalid label selector: {e}")))?;
                Self::from_label_selector(&api)
            }
        }
    }

    /// Whether this selector does not restrict anything (`Selector.Empty()`); false for
    /// [`nothing`](Self::nothing).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this is the selector that matches nothing.
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The single value the selector requires for `label`, if its requirement on that key is
    /// `=`, `==` or a one-value `in` (upstream's `RequiresExactMatch`).
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let requirement = self.requirements.iter().find(|r| r.key == label)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    /// Whether the labels that `get` looks up (`None`: absent) satisfy every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.nothing
            && self
                .requirements
                .iter()
                .all(|r| r.matches_value(get(&r.key)))
    }

    /// Whether an object's `metadata.labels` (read in place from its JSON) satisfy every
    /// requirement; an object without labels has none.
    pub fn matches_object(&self, object: &Value) -> bool {
        let labels = object
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        self.matches_with(|key| labels.and_then(|l| l.get(key)).and_then(Value::as_str))
    }
}

/// Upstream's canonical string form (`Selector.String()`): requirements sorted by key, joined
/// by `,`; both everything and nothing print as the empty string.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// How `kubectl describe` and the printers show an API selector
/// (`metav1.FormatLabelSelector`): its string form, `<none>` when that is empty (including a
/// missing selector) and `<error>` when it does not convert.
pub fn format_label_selector(selector: Option<&metav1::LabelSelector>) -> String {
    match LabelSelector::from_optional_label_selector(selector) {
        Err(_) => "<error>".to_string(),
        Ok(s) if s.requirements.is_empty() => "<none>".to_string(),
        Ok(s) => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The label selector lexer and parser: a faithful port of upstream's, byte by byte, so that
// every input gets the same result and the same error message.
// ---------------------------------------------------------------------------------------------

/// The lexer's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// Whether a token's literal stands for a keyword (`in`/`notin`) or is read as a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The token of a one-character operator symbol; these characters end identifiers.
fn symbol_token(b: u8) -> Option<Token> {
    Some(match b {
        b'=' => Token::Equals,
        b'!' => Token::DoesNotExist,
        b'(' => Token::OpenPar,
        b')' => Token::ClosedPar,
        b',' => Token::Comma,
        b'>' => Token::GreaterThan,
        b'<' => Token::LessThan,
        _ => return None,
    })
}

/// Splits a selector into tokens. Upstream reads bytes and takes a NUL byte for the end of
/// the string when a token starts with it, so this does too.
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// The next byte, or 0 at the end (where the position stays).
    fn read(&mut self) -> u8 {
        match self.src.as_bytes().get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn lex(&mut self) -> (Token, &'a str) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, "");
        }
        self.pos -= 1;
        match symbol_token(ch) {
            Some(token) => self.scan_symbol(token),
            None => self.scan_identifier_or_keyword(),
        }
    }

    /// An identifier runs to the next whitespace, symbol or NUL (which is consumed).
    fn scan_identifier_or_keyword(&mut self) -> (Token, &'a str) {
        let start = self.pos;
        let end = loop {
            let at = self.pos;
            let ch = self.read();
            if ch == 0 {
                break at;
            }
            if is_whitespace(ch) || symbol_token(ch).is_some() {
                self.pos = at;
                break at;
            }
        };
        let literal = &self.src[start..end];
        let token = match literal {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier,
        };
        (token, literal)
    }

    /// The longest operator made of symbols: `!=` and `==` are the only two-character ones.
    fn scan_symbol(&mut self, first: Token) -> (Token, &'a str) {
        let start = self.pos;
        self.read();
        let (mut token, mut end) = (first, self.pos);
        loop {
            let at = self.pos;
            let ch = self.read();
            if ch == 0 {
                break;
            }
            let longer = match &self.src.as_bytes()[start..self.pos] {
                b"!=" => Some(Token::NotEquals),
                b"==" => Some(Token::DoubleEquals),
                _ => None,
            };
            match longer {
                Some(t) => (token, end) = (t, self.pos),
                None => {
                    self.pos = at;
                    break;
                }
            }
        }
        (token, &self.src[start..end])
    }
}

/// The recursive-descent parser over the scanned tokens.
struct Parser<'a> {
    items: Vec<(Token, &'a str)>,
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(selector: &'a str) -> Self {
        let mut lexer = Lexer {
            src: selector,
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            items.push(item);
            if item.0 == Token::EndOfString {
                break;
            }
        }
        Self { items, position: 0 }
    }

    fn in_context(item: (Token, &'a str), context: Context) -> (Token, &'a str) {
        match item {
            (Token::In | Token::NotIn, literal) if context == Context::Values => {
                (Token::Identifier, literal)
            }
            other => other,
        }
    }

    /// The current token, not consumed; past the end it stays the end of string.
    fn lookahead(&self, context: Context) -> (Token, &'a str) {
        let last = self.items.len() - 1;
        Self::in_context(self.items[self.position.min(last)], context)
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let item = self.lookahead(context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self.parse_requirement().map_err(|e| {
                        SelectorError::new(format!("unable to parse requirement: {}", e.message))
                    })?;
                    requirements.push(requirement);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, next_literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(SelectorError::new(format!(
                                    "found '{next_literal}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::new(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(SelectorError::new(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = inferred {
            return Requirement::new(key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(
            key,
            operator,
            values.into_iter().map(str::to_string).collect(),
        )
    }

    /// The key, and the operator when it is unary: `!key` is DoesNotExist, and a bare key
    /// followed by `,` or the end is Exists.
    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(&'a str, Option<Operator>), SelectorError> {
        let (mut token, mut literal) = self.consume(Context::Values);
        let mut operator = None;
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(SelectorError::new(format!(
                "found '{literal}', expected: identifier"
            )));
        }
        let key_errors = label_key_errors(literal);
        if !key_errors.is_empty() {
            // Upstream validates with a nil field path, which prints as `<nil>`.
            return Err(SelectorError::new(invalid(
                "<nil>",
                &go_quote(literal),
                &key_errors.join("; "),
            )));
        }
        if matches!(
            self.lookahead(Context::Values).0,
            Token::EndOfString | Token::Comma
        ) && operator.is_none()
        {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(SelectorError::new(format!(
                    "found '{literal}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            }
        })
    }

    /// `( values )`; `()` is the set holding only the empty value.
    fn parse_values(&mut self) -> Result<BTreeSet<&'a str>, SelectorError> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(SelectorError::new(format!(
                "found '{literal}' expected: '('"
            )));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(SelectorError::new(format!(
                        "found '{literal}', expected: ')'"
                    )));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([""]))
            }
            _ => Err(SelectorError::new(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            ))),
        }
    }

    /// Comma-separated values, any of which may be empty (`(a,,b)`, `(,a)`, `(a,)`); stops
    /// before the closing parenthesis.
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<&'a str>, SelectorError> {
        let mut values = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => {}
                        Token::ClosedPar => return Ok(values),
                        _ => {
                            return Err(SelectorError::new(format!(
                                "found '{next_literal}', expected: ',' or ')'"
                            )));
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert("");
                    }
                    match self.lookahead(Context::Values).0 {
                        Token::ClosedPar => {
                            values.insert("");
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.consume(Context::Values);
                            values.insert("");
                        }
                        _ => {}
                    }
                }
                _ => {
                    return Err(SelectorError::new(format!(
                        "found '{literal}', expected: ',', or identifier"
                    )));
                }
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; nothing before `,` or the end is `""`.
    fn parse_exact_value(&mut self) -> Result<BTreeSet<&'a str>, SelectorError> {
        if matches!(
            self.lookahead(Context::Values).0,
            Token::EndOfString | Token::Comma
        ) {
            return Ok(BTreeSet::from([""]));
        }
        match self.consume(Context::Values) {
            (Token::Identifier, literal) => Ok(BTreeSet::from([literal])),
            (_, literal) => Err(SelectorError::new(format!(
                "found '{literal}', expected: identifier"
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Label key and value validation (upstream's `validation.IsQualifiedName` and
// `validation.IsValidLabelValue`), with upstream's messages.
// ---------------------------------------------------------------------------------------------

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_EXAMPLES: &[&str] = &["MyName", "my.name", "123-abc"];
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MAX_LENGTH: usize = 63;
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

/// Upstream's `validation.RegexError` (always called with examples here).
fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    let mut s = format!("{message} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        let _ = write!(s, "'{example}', ");
    }
    let _ = write!(s, "regex used for validation is '{format}')");
    s
}

fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`.
fn is_qualified_name_part(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let bytes = label.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
            }
            _ => false,
        }
    })
}

/// Why `key` is not a valid label key (a qualified name with an optional DNS subdomain prefix
/// and `/`), in upstream's words (`validation.IsQualifiedName`); empty when it is valid.
pub fn label_key_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut parts = key.split('/');
    let (first, second, third) = (parts.next(), parts.next(), parts.next());
    let name = match (first, second, third) {
        (Some(name), None, _) => name,
        (Some(prefix), Some(name), None) => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
                    errors.push(format!(
                        "prefix part {}",
                        max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH)
                    ));
                }
                if !is_dns1123_subdomain(prefix) {
                    errors.push(format!(
                        "prefix part {}",
                        regex_error(
                            DNS1123_SUBDOMAIN_ERR,
                            DNS1123_SUBDOMAIN_FMT,
                            &["example.com"]
                        )
                    ));
                }
            }
            name
        }
        _ => {
            errors.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, QUALIFIED_NAME_EXAMPLES)
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errors.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !is_qualified_name_part(name) {
        errors.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                QUALIFIED_NAME_EXAMPLES
            )
        ));
    }
    errors
}

/// Why `value` is not a valid label value (at most 63 characters, empty or alphanumeric at
/// both ends with `-`, `_`, `.` inside), in upstream's words (`validation.IsValidLabelValue`);
/// empty when it is valid.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errors.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// Go-compatible formatting of error messages.
// ---------------------------------------------------------------------------------------------

/// A `field.Invalid` error as upstream prints it: `path: Invalid value: value: detail`.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value}: {detail}")
}

/// Upstream's aggregate of errors: duplicates dropped, one error printed alone, several as
/// `[a, b]`.
fn aggregate(messages: Vec<String>) -> Option<String> {
    let mut unique: Vec<String> = Vec::with_capacity(messages.len());
    for message in messages {
        if !unique.contains(&message) {
            unique.push(message);
        }
    }
    match unique.len() {
        0 => None,
        1 => unique.pop(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

/// A `[]string` as Go's `%#v` prints it. An empty list prints as `[]string(nil)`, which is
/// what upstream shows for the values of a `matchExpressions` entry that has none.
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// A string as Go's `%q` (`strconv.Quote`) prints it. Which non-ASCII characters count as
/// printable follows Go's `unicode.IsPrint` closely but not exhaustively (no Unicode tables
/// here): controls, separators other than the space, and format characters are escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let format_or_private = matches!(
        c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x2028..=0x202E
            | 0x2060..=0x206F | 0xE000..=0xF8FF | 0xFEFF | 0xFFF9..=0xFFFB | 0xF0000..
    );
    !(c.is_control() || c.is_whitespace() || format_or_private)
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

/// How a field selector term compares a field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One term of a field selector (upstream's `fields.Requirement`), with its value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field, e.g. `metadata.name` or `involvedObject.uid`.
    pub field: String,
    /// The comparison.
    pub operator: FieldOperator,
    /// The literal value compared with.
    pub value: String,
}

impl FieldRequirement {
    /// Whether a field's value (`None`: the object has no such field, which compares as the
    /// empty string, as upstream does) satisfies this term.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let equal = value.unwrap_or("") == self.value;
        match self.operator {
            FieldOperator::Equals => equal,
            FieldOperator::NotEquals => !equal,
        }
    }
}

/// Upstream's term string: `field=value` or `field!=value`, with the value escaped.
impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(
            f,
            "{}{operator}{}",
            self.field,
            escape_field_value(&self.value)
        )
    }
}

/// A field selector: the AND of its terms (upstream's `fields.Selector`), in the order upstream
/// keeps them (sorted by the terms' text as written). The default value selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector `field=value` (upstream's `fields.OneTermEqualSelector`).
    pub fn one_term_equal(field: impl Into<String>, value: impl Into<String>) -> Self {
        let requirement = FieldRequirement {
            field: field.into(),
            operator: FieldOperator::Equals,
            value: value.into(),
        };
        Self {
            requirements: vec![requirement],
        }
    }

    /// Parses `?fieldSelector=` (`fields.ParseSelector`): terms split on unescaped commas,
    /// each split at its first `!=`, `==` or `=`; the value is unescaped (`\,` `\=` `\\`).
    /// Empty terms, and terms with both an empty field and an empty value, are dropped.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut terms = split_field_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, operator, raw_value)) = split_field_term(term) else {
                return Err(SelectorError::new(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                )));
            };
            let value = unescape_field_value(raw_value)?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value: value.into_owned(),
            });
        }
        Ok(Self { requirements })
    }

    /// Whether this selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, for checking that each field is supported by the resource.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The first term (in upstream's order) whose field `is_supported` rejects; the API server
    /// answers it with a 400 worded as [`SelectorError::field_label_not_supported`] or
    /// [`SelectorError::not_a_known_field_selector`].
    pub fn unsupported_field(
        &self,
        is_supported: impl Fn(&str) -> bool,
    ) -> Option<&FieldRequirement> {
        self.requirements.iter().find(|r| !is_supported(&r.field))
    }

    /// Whether the fields that `get` looks up satisfy every term; an absent field compares as
    /// the empty string. `get` may return borrowed or owned strings.
    pub fn matches<S: AsRef<str>>(&self, get: impl Fn(&str) -> Option<S>) -> bool {
        self.requirements.iter().all(|r| {
            let value = get(&r.field);
            r.matches_value(value.as_ref().map(AsRef::as_ref))
        })
    }

    /// Whether an object's JSON satisfies every term, reading each field by its dotted path
    /// (see [`object_field`]). Resources whose selectable fields are computed rather than
    /// read (an event's `source`, a pod's `spec.hostNetwork` defaulting to `"false"`) should
    /// use [`matches`](Self::matches) with their own field set instead.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(|field| object_field(object, field))
    }

    /// The value of the first `field=value` term on `field` (upstream's `RequiresExactMatch`),
    /// which lets storage fetch candidates by key. Other terms still have to be matched.
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.operator == FieldOperator::Equals && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// The name required by a `metadata.name=X` term, the common case of `kubectl get X -w`,
    /// `rollout status` and `delete --wait`.
    pub fn exact_name(&self) -> Option<&str> {
        self.exact_match("metadata.name")
    }
}

/// Upstream's `Selector.String()`: the terms joined by `,`.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// The value at a dotted path of an object's JSON (`metadata.name`, `status.phase`,
/// `involvedObject.uid`) as a field selector compares it: strings as they are, booleans and
/// numbers as Go prints them; `None` when absent, null, or not a scalar.
pub fn object_field<'a>(object: &'a Value, path: &str) -> Option<Cow<'a, str>> {
    let value = path
        .split('.')
        .try_fold(object, |v, segment| v.get(segment))?;
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Escapes a literal value for a field selector (`fields.EscapeValue`): `\` → `\\`,
/// `,` → `\,`, `=` → `\=`.
pub fn escape_field_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', ',', '=']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Unescapes a field selector value (`fields.UnescapeValue`); an unknown escape, a trailing
/// backslash, or an unescaped `,` or `=` is an error worded as upstream's.
pub fn unescape_field_value(value: &str) -> Result<Cow<'_, str>, SelectorError> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(Cow::Borrowed(value));
    }
    let mut out = String::with_capacity(value.len());
    let mut in_slash = false;
    for c in value.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::new(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Upstream prints the rune with `%v`, that is as its number.
            ',' | '=' => {
                return Err(SelectorError::new(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::new(
            "invalid field selector: invalid escape sequence: \\",
        ));
    }
    Ok(Cow::Owned(out))
}

/// Splits on commas that are not escaped; the escapes stay in the terms.
fn split_field_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::with_capacity(1);
    let (mut start, mut in_slash) = (0, false);
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at the first operator (`!=`, `==` or `=`, tried in that order at each
/// position); the field cannot contain escapes.
fn split_field_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    let bytes = term.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let next = bytes.get(i + 1).copied();
        match (b, next) {
            (b'!', Some(b'=')) => {
                return Some((&term[..i], FieldOperator::NotEquals, &term[i + 2..]));
            }
            (b'=', Some(b'=')) => return Some((&term[..i], FieldOperator::Equals, &term[i + 2..])),
            (b'=', _) => return Some((&term[..i], FieldOperator::Equals, &term[i + 1..])),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse_error(selector: &str) -> String {
        LabelSelector::parse(selector)
            .expect_err(selector)
            .message()
            .to_string()
    }

    const NAME_PART_REGEX: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_REGEX: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    // Upstream's TestSelectorParse: good strings print back without their spaces.
    #[test]
    fn good_label_selectors_print_back_canonically() {
        for input in [
            "x=a,y=b,z=c",
            "",
            "x!=a,y=b",
            "x=",
            "x= ",
            "x=,z= ",
            "x= ,z= ",
            "!x",
            "x>1",
            "x>1,z<5",
        ] {
            let selector = LabelSelector::parse(input).unwrap();
            assert_eq!(selector.to_string(), input.replace(' ', ""), "{input:?}");
        }
    }

    // Upstream's TestSetSelectorParser, compared through the canonical string.
    #[test]
    fn set_based_selectors_parse_as_upstream() {
        let cases = [
            ("\rx", "x"),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                "this-is-a-dns.domain.com/key-with-dash",
            ),
            (
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)",
            ),
            ("foo  in\t (abc)", "foo in (abc)"),
            ("x notin\n (abc)", "x notin (abc)"),
            ("x  notin\t\t\t(abc,def)", "x notin (abc,def)"),
            ("x in (abc,)", "x in (,abc)"),
            ("x in ()", "x in ()"),
            (
                "x notin (abc,def),bar,z in (),w",
                "bar,w,x notin (abc,def),z in ()",
            ),
            ("x,y in (a)", "x,y in (a)"),
            ("x=a,y!=b,z in (h,i,j)", "x=a,y!=b,z in (h,i,j)"),
            ("x notin ( )", "x notin ()"),
            ("x notin (, a)", "x notin (,a)"),
            ("a ", "a"),
            ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)"),
            ("x==a", "x==a"),
            ("notin=in", "notin=in"),
            ("z,a=b", "a=b,z"),
        ];
        for (input, canonical) in cases {
            assert_eq!(
                LabelSelector::parse(input).unwrap().to_string(),
                canonical,
                "{input:?}"
            );
        }
        assert_eq!(
            LabelSelector::parse("x=a,a=x").unwrap(),
            LabelSelector::parse("a=x,x=a").unwrap()
        );
    }

    #[test]
    fn label_selector_errors_are_worded_as_upstream() {
        let cases = [
            ("x==a==b", "found '==', expected: ',' or 'end of string'".to_string()),
            ("!x=a", "found '=', expected: ',' or 'end of string'".to_string()),
            ("a in (xyz)b notin ()", "found 'b', expected: ',' or 'end of string'".to_string()),
            (",x,y", "found ',', expected: !, identifier, or 'end of string'".to_string()),
            ("(", "found '(', expected: !, identifier, or 'end of string'".to_string()),
            ("a in (xyz),", "found '', expected: identifier after ','".to_string()),
            ("a,=b", "found '=', expected: identifier after ','".to_string()),
            ("x nott in (y)", "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt".to_string()),
            ("a (", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt".to_string()),
            ("a in (xyz abc)", "unable to parse requirement: found 'abc', expected: ',' or ')'".to_string()),
            ("a notin(", "unable to parse requirement: found '', expected: ',', ')' or identifier".to_string()),
            ("a in x", "unable to parse requirement: found 'x' expected: '('".to_string()),
            ("a in (x,=)", "unable to parse requirement: found '=', expected: ',', or identifier".to_string()),
            ("a=(", "unable to parse requirement: found '(', expected: identifier".to_string()),
            ("!", "unable to parse requirement: found '', expected: identifier".to_string()),
            (
                "x<a",
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer".to_string(),
            ),
            ("x=a||y=b", format!("unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {LABEL_VALUE_REGEX}")),
            (
                "x>a.",
                format!(
                    "unable to parse requirement: [values[0]: Invalid value: \"a.\": for 'Gt', 'Lt' operators, the value must be an integer, values[0][x]: Invalid value: \"a.\": {LABEL_VALUE_REGEX}]"
                ),
            ),
            // A negative bound is an integer but not a label value, so upstream refuses it.
            (
                "x>-1",
                format!("unable to parse requirement: values[0][x]: Invalid value: \"-1\": {LABEL_VALUE_REGEX}"),
            ),
            // Upstream's value list parser refuses two empty values before the `)`.
            (
                "a in (,,)",
                "unable to parse requirement: found ')', expected: ',', or identifier".to_string(),
            ),
            // Real kubectl sessions.
            ("app:monolith", format!("unable to parse requirement: <nil>: Invalid value: \"app:monolith\": name part {NAME_PART_REGEX}")),
            (
                "app.kubernetes_io/name=vault-secrets-operator",
                "unable to parse requirement: <nil>: Invalid value: \"app.kubernetes_io/name\": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string(),
            ),
            (
                "a/b/c ?=? def",
                format!("unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name {NAME_PART_REGEX} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
            ),
            (
                "/a",
                "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty".to_string(),
            ),
            (
                "a/",
                format!("unable to parse requirement: <nil>: Invalid value: \"a/\": name part must be non-empty; name part {NAME_PART_REGEX}"),
            ),
        ];
        for (input, message) in cases {
            assert_eq!(parse_error(input), message, "{input:?}");
        }
        let long_key = "a".repeat(64);
        assert_eq!(
            parse_error(&long_key),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"{long_key}\": name part must be no more than 63 characters"
            )
        );
        let long_value = "v".repeat(64);
        assert_eq!(
            parse_error(&format!("a={long_value}")),
            format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"{long_value}\": must be no more than 63 characters"
            )
        );
    }

    #[test]
    fn whitespace_and_nul_bytes_lex_as_upstream() {
        assert!(LabelSelector::parse(" \t\r\n").unwrap().is_empty());
        // Upstream's lexer takes a NUL byte for the end of the string when a token starts
        // there, and ends an identifier at one.
        assert!(LabelSelector::parse("\0a=b").unwrap().is_empty());
        assert_eq!(
            parse_error("a\0b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(LabelSelector::parse("a=b\0").unwrap().to_string(), "a=b");
        assert_eq!(
            parse_error("a=\u{e9}"),
            format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"\u{e9}\": {LABEL_VALUE_REGEX}"
            )
        );
        assert_eq!(
            parse_error("a=\u{1}"),
            format!(
                "unable to parse requirement: values[0][a]: Invalid value: \"\\x01\": {LABEL_VALUE_REGEX}"
            )
        );
    }

    // Upstream's TestSelectorMatches and TestRequirementSelectorMatching.
    #[test]
    fn label_selectors_match_as_upstream() {
        type Case = (&'static str, &'static [(&'static str, &'static str)], bool);
        let cases: &[Case] = &[
            ("", &[("x", "y")], true),
            ("x=y", &[("x", "y")], true),
            ("x=y,z=w", &[("x", "y"), ("z", "w")], true),
            ("x!=y,z!=w", &[("x", "z"), ("z", "a")], true),
            ("notin=in", &[("notin", "in")], true),
            ("x", &[("x", "z")], true),
            ("!x", &[("y", "z")], true),
            ("x>1", &[("x", "2")], true),
            ("x<1", &[("x", "0")], true),
            ("x=z", &[], false),
            ("x=y", &[("x", "z")], false),
            ("x=y,z=w", &[("x", "w"), ("z", "w")], false),
            ("x!=y,z!=w", &[("x", "z"), ("z", "w")], false),
            ("x", &[("y", "z")], false),
            ("!x", &[("x", "z")], false),
            ("x>1", &[("x", "0")], false),
            ("x<1", &[("x", "2")], false),
            (
                "x in (foo),y notin (alpha)",
                &[("x", "foo"), ("y", "baz")],
                true,
            ),
            (
                "x in (foo),y in (alpha)",
                &[("x", "foo"), ("y", "baz")],
                false,
            ),
            ("x notin (),y", &[("y", "")], true),
            ("!x,y", &[("y", "")], true),
            ("x notin (),!y", &[("y", "")], false),
            ("x in ()", &[("y", "baz")], false),
            ("z>1", &[("z", "v2")], false),
            ("z>1", &[], false),
            (
                "foo=bar,foobar=bar,baz=blah",
                &[("foo", "bar"), ("baz", "blah")],
                false,
            ),
        ];
        for (selector, set, expected) in cases {
            let set = labels(set);
            assert_eq!(
                LabelSelector::parse(selector).unwrap().matches(&set),
                *expected,
                "{selector:?} on {set:?}"
            );
        }
    }

    // Upstream's TestToString.
    #[test]
    fn requirements_print_as_upstream() {
        let req = |key: &str, operator, values: &[&str]| {
            Requirement::new(
                key,
                operator,
                values.iter().map(|v| v.to_string()).collect(),
            )
            .unwrap()
        };
        let cases = [
            (
                vec![
                    req("x", Operator::In, &["def", "abc"]),
                    req("y", Operator::NotIn, &["jkl"]),
                    req("z", Operator::Exists, &[]),
                ],
                "x in (abc,def),y notin (jkl),z",
            ),
            (
                vec![
                    req("x", Operator::NotIn, &["abc", "def"]),
                    req("y", Operator::NotEquals, &["jkl"]),
                    req("z", Operator::DoesNotExist, &[]),
                ],
                "x notin (abc,def),y!=jkl,!z",
            ),
            (
                vec![
                    req("x", Operator::NotIn, &["abc"]),
                    req("y", Operator::In, &["jkl", "mno"]),
                    req("z", Operator::NotIn, &[""]),
                ],
                "x notin (abc),y in (jkl,mno),z notin ()",
            ),
            (
                vec![
                    req("z", Operator::NotEquals, &["a"]),
                    req("y", Operator::DoubleEquals, &["jkl"]),
                    req("x", Operator::Equals, &["abc"]),
                    req("z", Operator::Exists, &[]),
                ],
                "x=abc,y==jkl,z!=a,z",
            ),
            (
                vec![
                    req("x", Operator::GreaterThan, &["2"]),
                    req("y", Operator::LessThan, &["8"]),
                    req("z", Operator::Exists, &[]),
                ],
                "x>2,y<8,z",
            ),
        ];
        for (requirements, expected) in cases {
            assert_eq!(
                LabelSelector::from_requirements(requirements).to_string(),
                expected
            );
        }
    }

    // Upstream's TestRequirementConstructor, plus the aggregated messages.
    #[test]
    fn requirement_constructor_checks_as_upstream() {
        let new = |key: &str, operator, values: &[&str]| {
            Requirement::new(
                key,
                operator,
                values.iter().map(|v| v.to_string()).collect(),
            )
            .map_err(|e| e.message().to_string())
        };
        assert_eq!(
            new("x", Operator::In, &[]).unwrap_err(),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            new("x", Operator::Exists, &["a", "b"]).unwrap_err(),
            "values: Invalid value: []string{\"a\", \"b\"}: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            new("x", Operator::Equals, &["a", "b"]).unwrap_err(),
            "values: Invalid value: []string{\"a\", \"b\"}: exact-match compatibility requires one single value"
        );
        assert_eq!(
            new("foo", Operator::GreaterThan, &["bar"]).unwrap_err(),
            "values[0]: Invalid value: \"bar\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            new("a b", Operator::In, &["c d"]).unwrap_err(),
            format!(
                "[key: Invalid value: \"a b\": name part {NAME_PART_REGEX}, values[0][a b]: Invalid value: \"c d\": {LABEL_VALUE_REGEX}]"
            )
        );
        assert!(new(&"a".repeat(254), Operator::Exists, &[]).is_err());
        for (key, operator, values) in [
            ("x", Operator::In, &["foo"][..]),
            ("x", Operator::NotIn, &["foo"]),
            ("x", Operator::Exists, &[]),
            ("x", Operator::DoesNotExist, &[]),
            ("1foo", Operator::In, &["bar"]),
            ("1234", Operator::In, &["bar"]),
            ("y", Operator::GreaterThan, &["1"]),
            ("z", Operator::LessThan, &["6"]),
        ] {
            assert!(
                new(key, operator, values).is_ok(),
                "{key} {operator:?} {values:?}"
            );
        }
    }

    #[test]
    fn requires_exact_match_finds_single_values() {
        let selector = LabelSelector::parse("a=1,b in (2),c in (3,4),d!=5").unwrap();
        assert_eq!(selector.requires_exact_match("a"), Some("1"));
        assert_eq!(selector.requires_exact_match("b"), Some("2"));
        assert_eq!(selector.requires_exact_match("c"), None);
        assert_eq!(selector.requires_exact_match("d"), None);
        assert_eq!(selector.requires_exact_match("e"), None);
    }

    fn api_selector(value: Value) -> metav1::LabelSelector {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn api_selectors_convert_as_upstream() {
        let selector = api_selector(json!({
            "matchLabels": {"app": "nginx", "tier": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "team", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
            ],
        }));
        let converted = LabelSelector::from_label_selector(&selector).unwrap();
        assert_eq!(
            converted.to_string(),
            "app=nginx,!canary,env in (dev,prod),team,tier=web,zone notin (b)"
        );
        assert_eq!(
            format_label_selector(Some(&selector)),
            converted.to_string()
        );
        assert!(converted.matches(&labels(&[
            ("app", "nginx"),
            ("tier", "web"),
            ("env", "dev"),
            ("team", "x")
        ])));
        assert!(!converted.matches(&labels(&[
            ("app", "nginx"),
            ("tier", "web"),
            ("env", "dev")
        ])));

        // Empty selects everything; missing selects nothing; both print as <none>.
        let empty = metav1::LabelSelector::default();
        let everything = LabelSelector::from_label_selector(&empty).unwrap();
        assert!(everything.is_empty() && everything.matches(&labels(&[("a", "b")])));
        let nothing = LabelSelector::from_optional_label_selector(None).unwrap();
        assert!(!nothing.is_empty() && nothing.is_nothing() && !nothing.matches(&BTreeMap::new()));
        assert_eq!(nothing.to_string(), "");
        assert_eq!(format_label_selector(Some(&empty)), "<none>");
        assert_eq!(format_label_selector(None), "<none>");

        let bad_operator =
            api_selector(json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]}));
        assert_eq!(
            LabelSelector::from_label_selector(&bad_operator)
                .unwrap_err()
                .message(),
            "\"Foo\" is not a valid pod selector operator"
        );
        assert_eq!(format_label_selector(Some(&bad_operator)), "<error>");
        let no_values = api_selector(json!({"matchExpressions": [{"key": "a", "operator": "In"}]}));
        assert_eq!(
            LabelSelector::from_label_selector(&no_values)
                .unwrap_err()
                .message(),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        let bad_value = api_selector(json!({"matchLabels": {"app": "my app"}}));
        assert_eq!(
            LabelSelector::from_label_selector(&bad_value)
                .unwrap_err()
                .message(),
            format!("values[0][app]: Invalid value: \"my app\": {LABEL_VALUE_REGEX}")
        );
    }

    #[test]
    fn json_selectors_and_objects() {
        let deployment = json!({"spec": {"selector": {"matchLabels": {"app": "nginx"}}}});
        let selector = LabelSelector::from_json(deployment.pointer("/spec/selector")).unwrap();
        assert_eq!(selector.to_string(), "app=nginx");
        assert!(LabelSelector::from_json(None).unwrap().is_nothing());
        assert!(
            LabelSelector::from_json(Some(&Value::Null))
                .unwrap()
                .is_nothing()
        );
        assert!(
            LabelSelector::from_json(Some(&json!({})))
                .unwrap()
                .is_empty()
        );
        assert!(LabelSelector::from_json(Some(&json!({"matchLabels": 3}))).is_err());

        let pod = json!({"metadata": {"name": "p", "labels": {"app": "nginx", "pod-template-hash": "abc"}}});
        assert!(selector.matches_object(&pod));
        assert!(!selector.matches_object(&json!({"metadata": {"name": "unlabelled"}})));
        assert!(
            LabelSelector::parse("!app")
                .unwrap()
                .matches_object(&json!({"metadata": {}}))
        );
        assert!(LabelSelector::everything().matches_object(&json!({})));
        assert!(!LabelSelector::nothing().matches_object(&pod));
    }

    #[test]
    fn selector_errors_become_bad_requests() {
        let error: ApiError = LabelSelector::parse("a in").unwrap_err().into();
        assert_eq!(error.code, 400);
        assert_eq!(error.reason, "BadRequest");
        assert_eq!(
            error.message,
            "unable to parse requirement: found '' expected: '('"
        );
    }

    // Upstream's TestSplitTerms, TestSplitTerm and TestEscapeValue.
    #[test]
    fn field_terms_split_and_escape_as_upstream() {
        let split_cases: &[(&str, &[&str])] = &[
            ("a", &["a"]),
            ("a=avalue,b=bvalue", &["a=avalue", "b=bvalue"]),
            (
                "a=avalue,b==bvalue,c!=cvalue",
                &["a=avalue", "b==bvalue", "c!=cvalue"],
            ),
            ("", &[]),
            ("a=a,", &["a=a", ""]),
            (",a=a", &["", "a=a"]),
            (r"k=\,,k2=v2", &[r"k=\,", "k2=v2"]),
            (r"k=\\,k2=v2", &[r"k=\\", "k2=v2"]),
            (r"k=\\\,,k2=v2", &[r"k=\\\,", "k2=v2"]),
            (r"k=\a\b\", &[r"k=\a\b\"]),
            ("함=수,목=록", &["함=수", "목=록"]),
        ];
        for (selector, terms) in split_cases {
            assert_eq!(split_field_terms(selector), *terms, "{selector:?}");
        }
        assert_eq!(
            split_field_term("b==value"),
            Some(("b", FieldOperator::Equals, "value"))
        );
        assert_eq!(
            split_field_term("c!=value"),
            Some(("c", FieldOperator::NotEquals, "value"))
        );
        assert_eq!(
            split_field_term(r"k=\\\a\b\=\,\"),
            Some(("k", FieldOperator::Equals, r"\\\a\b\=\,\"))
        );
        assert_eq!(
            split_field_term("함=수"),
            Some(("함", FieldOperator::Equals, "수"))
        );
        assert_eq!(split_field_term("a"), None);

        for (raw, escaped) in [
            ("", ""),
            ("a", "a"),
            ("=", r"\="),
            (",", r"\,"),
            ("\\", r"\\"),
            (r"\=\,\", r"\\\=\\\,\\"),
        ] {
            assert_eq!(escape_field_value(raw), escaped);
            assert_eq!(unescape_field_value(escaped).unwrap(), raw);
        }
        for invalid in [r"\", r"\\\", r"\a"] {
            assert!(
                unescape_field_value(invalid)
                    .unwrap_err()
                    .message()
                    .starts_with("invalid field selector: invalid escape sequence: \\")
            );
        }
        assert_eq!(
            unescape_field_value(r"\a").unwrap_err().message(),
            r"invalid field selector: invalid escape sequence: \a"
        );
    }

    #[test]
    fn field_selectors_parse_and_print_as_upstream() {
        for good in ["x=a,y=b,z=c", "", "x!=a,y=b", r"x=a||y\=b", r"x=a\=\=b"] {
            assert_eq!(FieldSelector::parse(good).unwrap().to_string(), good);
        }
        let cases = [
            (
                "x=a||y=b",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "x==a==b",
                "invalid field selector: unescaped character in value: 61",
            ),
            ("x=a,b", "invalid selector: 'x=a,b'; can't understand 'b'"),
            (
                "x in (a)",
                "invalid selector: 'x in (a)'; can't understand 'x in (a)'",
            ),
            (
                "x in (a,b,c)",
                "invalid selector: 'x in (a,b,c)'; can't understand 'b'",
            ),
            ("x", "invalid selector: 'x'; can't understand 'x'"),
        ];
        for (input, message) in cases {
            assert_eq!(
                FieldSelector::parse(input).unwrap_err().message(),
                message,
                "{input:?}"
            );
        }
        // Terms are kept sorted by their text; `==` prints as `=`; empty terms vanish.
        let events = FieldSelector::parse(
            "involvedObject.namespace=demo,involvedObject.kind=Deployment,involvedObject.uid==u-1,involvedObject.name=web,",
        )
        .unwrap();
        assert_eq!(
            events.to_string(),
            "involvedObject.kind=Deployment,involvedObject.name=web,involvedObject.namespace=demo,involvedObject.uid=u-1"
        );
        assert_eq!(
            FieldSelector::parse("x=a,a=x").unwrap(),
            FieldSelector::parse("a=x,x=a").unwrap()
        );
        assert!(FieldSelector::parse(",,=").unwrap().is_empty());
        // No trimming: spaces belong to the field and the value.
        let spaced = FieldSelector::parse("a = b").unwrap();
        assert_eq!(spaced.requirements()[0].field, "a ");
        assert_eq!(spaced.requirements()[0].value, " b");
    }

    #[test]
    fn field_selectors_match_as_upstream() {
        let fields: BTreeMap<&str, &str> =
            [("foo", "bar"), ("baz", "blah"), ("complex", r"=value\,\")]
                .into_iter()
                .collect();
        let get = |f: &str| fields.get(f).copied();
        for (selector, expected) in [
            ("", true),
            ("foo=bar", true),
            ("baz=blah", true),
            ("foo=bar,baz=blah", true),
            (r"foo=bar,baz=blah,complex=\=value\\\,\\", true),
            ("foo=blah", false),
            ("baz=bar", false),
            ("foo=bar,foobar=bar,baz=blah", false),
            ("foo!=bar", false),
            ("missing=", true),
            ("missing!=", false),
            ("missing!=x", true),
        ] {
            assert_eq!(
                FieldSelector::parse(selector).unwrap().matches(get),
                expected,
                "{selector:?}"
            );
        }
        let owned = |f: &str| fields.get(f).map(|v| v.to_string());
        assert!(FieldSelector::one_term_equal("foo", "bar").matches(owned));
        assert!(!FieldSelector::one_term_equal("foo", "baz").matches(owned));
    }

    #[test]
    fn field_selector_exact_matches_and_supported_fields() {
        let selector =
            FieldSelector::parse("metadata.name=web,metadata.namespace!=x,spec.nodeName=n1")
                .unwrap();
        assert_eq!(selector.exact_name(), Some("web"));
        assert_eq!(selector.exact_match("spec.nodeName"), Some("n1"));
        assert_eq!(selector.exact_match("metadata.namespace"), None);
        assert_eq!(
            FieldSelector::parse("metadata.name!=web")
                .unwrap()
                .exact_name(),
            None
        );
        assert_eq!(
            FieldSelector::parse(r"metadata.name=a\,b")
                .unwrap()
                .exact_name(),
            Some("a,b")
        );

        let metadata_only = |f: &str| matches!(f, "metadata.name" | "metadata.namespace");
        let unsupported = selector.unsupported_field(metadata_only).unwrap();
        assert_eq!(unsupported.field, "spec.nodeName");
        assert_eq!(
            SelectorError::field_label_not_supported(&unsupported.field).message(),
            "field label not supported: spec.nodeName"
        );
        assert_eq!(
            SelectorError::not_a_known_field_selector("foo").message(),
            "\"foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(
            FieldSelector::one_term_equal("metadata.name", "x")
                .unsupported_field(metadata_only)
                .is_none()
        );
    }

    #[test]
    fn field_selectors_read_objects_by_dotted_paths() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "demo"},
            "spec": {"nodeName": "n1", "hostNetwork": true, "priority": 7},
            "status": {"phase": "Running"},
        });
        assert_eq!(
            object_field(&pod, "metadata.name").as_deref(),
            Some("web-1")
        );
        assert_eq!(
            object_field(&pod, "spec.hostNetwork").as_deref(),
            Some("true")
        );
        assert_eq!(object_field(&pod, "spec.priority").as_deref(), Some("7"));
        assert_eq!(object_field(&pod, "spec"), None);
        assert_eq!(object_field(&pod, "status.podIP"), None);
        for (selector, expected) in [
            ("metadata.name=web-1,metadata.namespace=demo", true),
            ("status.phase!=Running", false),
            ("spec.nodeName=n1,spec.hostNetwork=true", true),
            ("status.podIP=", true),
            ("metadata.name=web-2", false),
        ] {
            assert_eq!(
                FieldSelector::parse(selector).unwrap().matches_object(&pod),
                expected,
                "{selector:?}"
            );
        }
    }

    // ------------------------------------------------------------------ property tests

    /// A label requirement as generated, with its own reference semantics.
    #[derive(Debug, Clone)]
    enum Model {
        Equal {
            key: String,
            value: String,
            double: bool,
        },
        NotEqual {
            key: String,
            value: String,
        },
        In {
            key: String,
            values: Vec<String>,
        },
        NotIn {
            key: String,
            values: Vec<String>,
        },
        Exists {
            key: String,
        },
        Absent {
            key: String,
        },
        Greater {
            key: String,
            bound: u8,
        },
        Less {
            key: String,
            bound: u8,
        },
    }

    impl Model {
        fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
            let get = |key: &String| labels.get(key).map(String::as_str);
            let int = |key: &String| get(key).and_then(|v| v.parse::<i64>().ok());
            match self {
                Model::Equal { key, value, .. } => get(key) == Some(value.as_str()),
                Model::NotEqual { key, value } => get(key) != Some(value.as_str()),
                Model::In { key, values } => {
                    get(key).is_some_and(|v| values.iter().any(|x| x == v))
                }
                Model::NotIn { key, values } => {
                    !get(key).is_some_and(|v| values.iter().any(|x| x == v))
                }
                Model::Exists { key } => get(key).is_some(),
                Model::Absent { key } => get(key).is_none(),
                Model::Greater { key, bound } => int(key).is_some_and(|v| v > i64::from(*bound)),
                Model::Less { key, bound } => int(key).is_some_and(|v| v < i64::from(*bound)),
            }
        }

        /// The requirement in the string grammar, with `w` as optional whitespace.
        fn render(&self, w: &str) -> String {
            match self {
                Model::Equal { key, value, double } => format!(
                    "{w}{key}{w}{}{w}{value}{w}",
                    if *double { "==" } else { "=" }
                ),
                Model::NotEqual { key, value } => format!("{w}{key}{w}!={w}{value}{w}"),
                Model::In { key, values } => {
                    format!("{w}{key} in{w}({w}{}{w}){w}", values.join(","))
                }
                Model::NotIn { key, values } => {
                    format!("{w}{key} notin{w}({}){w}", values.join(&format!("{w},{w}")))
                }
                Model::Exists { key } => format!("{w}{key}{w}"),
                Model::Absent { key } => format!("{w}!{w}{key}{w}"),
                Model::Greater { key, bound } => format!("{w}{key}{w}>{w}{bound}{w}"),
                Model::Less { key, bound } => format!("{w}{key}{w}<{w}{bound}{w}"),
            }
        }
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b-c", "example.com/d", "in", "notin", "x.y_Z"])
            .prop_map(str::to_string)
    }

    fn value() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "1", "2", "10", "v", "in", "notin", "A_b.c-9"])
            .prop_map(str::to_string)
    }

    /// Distinct values in any order (upstream's parser refuses some lists with repeated
    /// empty values, such as `(a,,)`).
    fn values() -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_set(value(), 1..4)
            .prop_map(|set| set.into_iter().collect::<Vec<_>>())
            .prop_shuffle()
    }

    fn model() -> impl Strategy<Value = Model> {
        prop_oneof![
            (key(), value(), any::<bool>()).prop_map(|(key, value, double)| Model::Equal {
                key,
                value,
                double
            }),
            (key(), value()).prop_map(|(key, value)| Model::NotEqual { key, value }),
            (key(), values()).prop_map(|(key, values)| Model::In { key, values }),
            (key(), values()).prop_map(|(key, values)| Model::NotIn { key, values }),
            key().prop_map(|key| Model::Exists { key }),
            key().prop_map(|key| Model::Absent { key }),
            (key(), 0u8..12).prop_map(|(key, bound)| Model::Greater { key, bound }),
            (key(), 0u8..12).prop_map(|(key, bound)| Model::Less { key, bound }),
        ]
    }

    fn whitespace() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", " ", "\t", " \n "])
    }

    proptest! {
        #[test]
        fn parsing_never_panics(input in ".{0,40}", grammarish in "[a-z0-9=!(),<> \t/._\\\\-]{0,40}") {
            let _ = LabelSelector::parse(&input);
            let _ = LabelSelector::parse(&grammarish);
            let _ = FieldSelector::parse(&input);
            let _ = FieldSelector::parse(&grammarish);
        }

        #[test]
        fn label_selectors_round_trip_and_match_the_reference(
            models in prop::collection::vec(model(), 0..5),
            w in whitespace(),
            label_sets in prop::collection::vec(prop::collection::btree_map(key(), value(), 0..5), 1..6),
        ) {
            let rendered: Vec<String> = models.iter().map(|m| m.render(w)).collect();
            let text = rendered.join(",");
            let selector = LabelSelector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            let canonical = selector.to_string();
            prop_assert_eq!(&LabelSelector::parse(&canonical).unwrap(), &selector, "{:?} -> {:?}", text, canonical);
            for labels in &label_sets {
                let expected = models.iter().all(|m| m.holds(labels));
                prop_assert_eq!(selector.matches(labels), expected, "{:?} on {:?}", text, labels);
                let object = json!({"metadata": {"labels": labels}});
                prop_assert_eq!(selector.matches_object(&object), expected);
            }
        }

        #[test]
        fn field_selectors_round_trip_and_match_the_reference(
            terms in prop::collection::vec(("[a-z]{1,3}(\\.[a-z]{1,3})?", 0..3usize, ".{0,6}"), 0..5),
            fields in prop::collection::btree_map("[a-z]{1,3}(\\.[a-z]{1,3})?", ".{0,6}", 0..4),
        ) {
            let operators = ["=", "==", "!="];
            let text = terms
                .iter()
                .map(|(field, op, value)| format!("{field}{}{}", operators[*op], escape_field_value(value)))
                .collect::<Vec<_>>()
                .join(",");
            let selector = FieldSelector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            let mut expected: Vec<(String, FieldOperator, String)> = terms
                .iter()
                .map(|(field, op, value)| {
                    let operator = if *op == 2 { FieldOperator::NotEquals } else { FieldOperator::Equals };
                    (field.clone(), operator, value.clone())
                })
                .collect();
            expected.sort();
            let as_tuples = |s: &FieldSelector| {
                let mut v: Vec<_> = s.requirements().iter().map(|r| (r.field.clone(), r.operator, r.value.clone())).collect();
                v.sort();
                v
            };
            prop_assert_eq!(as_tuples(&selector), expected.clone());
            let reparsed = FieldSelector::parse(&selector.to_string()).unwrap();
            prop_assert_eq!(as_tuples(&reparsed), expected.clone());

            let reference = expected.iter().all(|(field, operator, value)| {
                let actual = fields.get(field).map_or("", String::as_str);
                (actual == value) == (*operator == FieldOperator::Equals)
            });
            prop_assert_eq!(selector.matches(|f| fields.get(f).map(String::as_str)), reference);
        }
    }
}
