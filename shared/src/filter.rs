//! Payload filters: a small predicate language on an event's JSON payload,
//! evaluated at fan-out (docs/FILTERS.md). A filter is parsed and checked
//! once, when an endpoint is written, into a private [`Predicate`] tree;
//! evaluating it never fails and never panics: a missing field or a type
//! mismatch is simply "does not match" (except `ne`, `nin`, `exists: false`).
//!
//! ```json
//! {"and": [{"field": "amount", "gte": 100}, {"field": "currency", "in": ["USD", "EUR"]}]}
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::io;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

/// Levels of nesting; the top-level object is level 1.
const MAX_DEPTH: usize = 8;
const MAX_CONDITIONS: usize = 64;
const MAX_CHILDREN: usize = 32;
const MAX_LIST: usize = 100;
const MAX_PATH_CHARS: usize = 256;
const MAX_SEGMENTS: usize = 16;
const MAX_DOCUMENT_BYTES: usize = 8 * 1024;

const OPERATORS: [&str; 10] = ["eq", "ne", "in", "nin", "exists", "gt", "gte", "lt", "lte", "contains"];
const COMBINATORS: [&str; 3] = ["and", "or", "not"];

/// Why a filter was refused: `path` is where in the filter document
/// (`and[1].gte`; `""` for the filter as a whole), `reason` what is wrong there
/// and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FilterError {
    pub path: String,
    pub reason: String,
}

/// A validated filter; shows (and stores) as the document it was parsed from.
#[derive(Clone)]
pub struct PayloadFilter {
    source: Value,
    predicate: Predicate,
}

impl PayloadFilter {
    /// Checks `document` against the language and its limits; the first
    /// problem found is returned.
    pub fn parse(document: &Value) -> Result<PayloadFilter, FilterError> {
        if serialised_len_exceeds(document, MAX_DOCUMENT_BYTES) {
            return Err(error("", "must be at most 8 KiB (8192 bytes) serialised; simplify it"));
        }
        let predicate = Parser { conditions: 0 }.node(document, "", 1)?;
        Ok(PayloadFilter { source: document.clone(), predicate })
    }

    /// Whether an event with this payload is delivered to the endpoint.
    pub fn matches(&self, payload: &Value) -> bool {
        self.predicate.eval(payload)
    }

    pub fn as_json(&self) -> &Value {
        &self.source
    }
}

/// Two filters are equal when their documents are.
impl PartialEq for PayloadFilter {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for PayloadFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PayloadFilter").field(&self.source).finish()
    }
}

impl Serialize for PayloadFilter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PayloadFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let document = Value::deserialize(deserializer)?;
        PayloadFilter::parse(&document).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// The parsed form

#[derive(Debug, Clone)]
enum Predicate {
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    Condition { path: Vec<Segment>, test: Test },
}

/// One path segment: an object key; when it is all digits, also an array index.
#[derive(Debug, Clone)]
struct Segment {
    key: String,
    index: Option<usize>,
}

#[derive(Debug, Clone)]
enum Test {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Compare(Comparison, Bound),
    Contains(Value),
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
enum Bound {
    Number(Number),
    Text(String),
}

// ---------------------------------------------------------------------------
// Evaluation

impl Predicate {
    fn eval(&self, payload: &Value) -> bool {
        match self {
            Predicate::And(all) => all.iter().all(|p| p.eval(payload)),
            Predicate::Or(any) => any.iter().any(|p| p.eval(payload)),
            Predicate::Not(inner) => !inner.eval(payload),
            Predicate::Condition { path, test } => test.eval(resolve(payload, path)),
        }
    }
}

impl Test {
    fn eval(&self, found: Option<&Value>) -> bool {
        let Some(value) = found else {
            return matches!(self, Test::Ne(_) | Test::Nin(_) | Test::Exists(false));
        };
        match self {
            Test::Eq(operand) => json_eq(value, operand),
            Test::Ne(operand) => !json_eq(value, operand),
            Test::In(list) => list.iter().any(|item| json_eq(value, item)),
            Test::Nin(list) => !list.iter().any(|item| json_eq(value, item)),
            Test::Exists(wanted) => *wanted,
            Test::Compare(comparison, bound) => compare(value, bound).is_some_and(|o| comparison.accepts(o)),
            Test::Contains(needle) => match (value, needle) {
                (Value::String(haystack), Value::String(needle)) => haystack.contains(needle.as_str()),
                (Value::Array(items), needle) => items.iter().any(|item| json_eq(item, needle)),
                _ => false,
            },
        }
    }
}

impl Comparison {
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Gt => ordering == Ordering::Greater,
            Comparison::Gte => ordering != Ordering::Less,
            Comparison::Lt => ordering == Ordering::Less,
            Comparison::Lte => ordering != Ordering::Greater,
        }
    }
}

fn resolve<'a>(payload: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    let mut value = payload;
    for segment in path {
        value = match value {
            Value::Object(map) => map.get(&segment.key)?,
            Value::Array(items) => items.get(segment.index?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// JSON equality where numbers compare by value (1 == 1.0), at any depth.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(xs), Value::Array(ys)) => xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y)),
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len() && xs.iter().all(|(key, x)| ys.get(key).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

/// Integers compare exactly; as soon as one side is a float, both compare as f64.
fn number_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    if !a.is_f64() && !b.is_f64() {
        // Two integers that share no type: one is negative, the other above i64::MAX.
        return Some(if a.as_i64().is_some() { Ordering::Less } else { Ordering::Greater });
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

fn compare(value: &Value, bound: &Bound) -> Option<Ordering> {
    match (value, bound) {
        (Value::Number(x), Bound::Number(y)) => number_cmp(x, y),
        (Value::String(x), Bound::Text(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Parsing

fn error(path: &str, reason: impl Into<String>) -> FilterError {
    FilterError { path: path.to_owned(), reason: reason.into() }
}

/// `path.key`, or `key` at the root.
fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

fn unknown_operator(key: &str) -> String {
    format!("unknown operator \"{key}\"; use one of {}", OPERATORS.join(", "))
}

struct Parser {
    conditions: usize,
}

impl Parser {
    fn node(&mut self, value: &Value, path: &str, level: usize) -> Result<Predicate, FilterError> {
        if level > MAX_DEPTH {
            return Err(error(path, format!("nesting deeper than {MAX_DEPTH}; flatten the filter")));
        }
        let Value::Object(map) = value else {
            return Err(error(
                path,
                "must be an object: {\"field\": <path>, <operator>: <value>} or one of {\"and\": [...]}, \
                 {\"or\": [...]}, {\"not\": {...}}",
            ));
        };
        if map.contains_key("field") {
            return self.condition(map, path);
        }
        let mut combinator = None;
        for (key, operand) in map {
            if COMBINATORS.contains(&key.as_str()) {
                if combinator.is_some() {
                    return Err(error(path, "needs exactly one of \"and\", \"or\", \"not\"; nest them to combine"));
                }
                combinator = Some((key.as_str(), operand));
            } else if OPERATORS.contains(&key.as_str()) {
                return Err(error(&child(path, "field"), "is required: the payload path to test, e.g. \"amount\""));
            } else {
                return Err(error(
                    &child(path, key),
                    format!("unknown key \"{key}\"; use \"field\" with an operator, or \"and\", \"or\", \"not\""),
                ));
            }
        }
        match combinator {
            None => Err(error(path, "needs \"field\" and an operator, or one of \"and\", \"or\", \"not\"")),
            Some(("not", operand)) => {
                Ok(Predicate::Not(Box::new(self.node(operand, &child(path, "not"), level + 1)?)))
            }
            Some((key, operand)) => {
                let list_path = child(path, key);
                let items = match operand {
                    Value::Array(items) if !items.is_empty() && items.len() <= MAX_CHILDREN => items,
                    _ => {
                        return Err(error(
                            &list_path,
                            format!("must be a non-empty array of at most {MAX_CHILDREN} filters"),
                        ));
                    }
                };
                let children = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.node(item, &format!("{list_path}[{i}]"), level + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if key == "and" { Predicate::And(children) } else { Predicate::Or(children) })
            }
        }
    }

    fn condition(&mut self, map: &Map<String, Value>, path: &str) -> Result<Predicate, FilterError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(error(
                path,
                format!("is condition {}; a filter has at most {MAX_CONDITIONS}", self.conditions),
            ));
        }
        let segments = parse_path(&map["field"]).map_err(|reason| error(&child(path, "field"), reason))?;
        let mut operator = None;
        for (key, operand) in map {
            if key == "field" {
                continue;
            }
            if COMBINATORS.contains(&key.as_str()) {
                return Err(error(
                    &child(path, key),
                    format!("cannot sit beside \"field\"; put the condition inside {{\"{key}\": ...}}"),
                ));
            }
            if !OPERATORS.contains(&key.as_str()) {
                return Err(error(&child(path, key), unknown_operator(key)));
            }
            if operator.is_some() {
                return Err(error(
                    path,
                    "needs exactly one operator besides \"field\"; combine conditions with \"and\"",
                ));
            }
            operator = Some((key.as_str(), operand));
        }
        let Some((name, operand)) = operator else {
            return Err(error(path, "needs exactly one operator besides \"field\""));
        };
        let test = parse_test(name, operand, &child(path, name))?;
        Ok(Predicate::Condition { path: segments, test })
    }
}

fn parse_test(name: &str, operand: &Value, path: &str) -> Result<Test, FilterError> {
    const SCALAR: &str = "must be a string, number, boolean or null";
    let bound = || match operand {
        Value::Number(n) => Ok(Bound::Number(n.clone())),
        Value::String(s) => Ok(Bound::Text(s.clone())),
        _ => Err(error(path, "must be a number or a string")),
    };
    let list = || -> Result<Vec<Value>, FilterError> {
        match operand {
            Value::Array(items) if !items.is_empty() && items.len() <= MAX_LIST => {
                match items.iter().position(|item| !is_scalar(item)) {
                    Some(i) => Err(error(&format!("{path}[{i}]"), SCALAR)),
                    None => Ok(items.clone()),
                }
            }
            _ => Err(error(
                path,
                format!("must be a non-empty array of at most {MAX_LIST} strings, numbers, booleans or nulls"),
            )),
        }
    };
    Ok(match name {
        "eq" => Test::Eq(operand.clone()),
        "ne" => Test::Ne(operand.clone()),
        "in" => Test::In(list()?),
        "nin" => Test::Nin(list()?),
        "exists" => match operand {
            Value::Bool(wanted) => Test::Exists(*wanted),
            _ => return Err(error(path, "must be true or false")),
        },
        "gt" => Test::Compare(Comparison::Gt, bound()?),
        "gte" => Test::Compare(Comparison::Gte, bound()?),
        "lt" => Test::Compare(Comparison::Lt, bound()?),
        "lte" => Test::Compare(Comparison::Lte, bound()?),
        "contains" if is_scalar(operand) => Test::Contains(operand.clone()),
        "contains" => return Err(error(path, SCALAR)),
        other => return Err(error(path, unknown_operator(other))),
    })
}

/// `a.b\.c.0` → `a`, `b.c`, `0` (also index 0).
fn parse_path(field: &Value) -> Result<Vec<Segment>, String> {
    const EMPTY_SEGMENT: &str = "has an empty segment; separate keys with single dots and write \\. for a dot in a key";
    let Value::String(raw) = field else {
        return Err("must be a string: the payload path to test, e.g. \"amount\" or \"items.0.sku\"".into());
    };
    if raw.is_empty() {
        return Err("must not be empty; name the payload field to test, e.g. \"amount\"".into());
    }
    if raw.chars().count() > MAX_PATH_CHARS {
        return Err(format!("must be at most {MAX_PATH_CHARS} characters"));
    }
    let mut keys = Vec::new();
    let mut current = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('.' | '\\')) => current.push(escaped),
                _ => return Err("has a \\ that is not \\. or \\\\; write \\. for a dot in a key".into()),
            },
            '.' if current.is_empty() => return Err(EMPTY_SEGMENT.into()),
            '.' => keys.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if current.is_empty() {
        return Err(EMPTY_SEGMENT.into());
    }
    keys.push(current);
    if keys.len() > MAX_SEGMENTS {
        return Err(format!("must have at most {MAX_SEGMENTS} segments"));
    }
    Ok(keys
        .into_iter()
        .map(|key| {
            let index = if key.bytes().all(|b| b.is_ascii_digit()) { key.parse().ok() } else { None };
            Segment { key, index }
        })
        .collect())
}

/// Whether `value` serialises to more than `limit` bytes; stops writing at the limit.
fn serialised_len_exceeds(value: &Value, limit: usize) -> bool {
    struct Budget(usize);
    impl io::Write for Budget {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0 = self.0.checked_sub(bytes.len()).ok_or_else(|| io::Error::other("over budget"))?;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Budget(limit), value).is_err()
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    use super::*;

    fn filter(document: Value) -> PayloadFilter {
        PayloadFilter::parse(&document).unwrap_or_else(|e| panic!("{document} should parse: {e}"))
    }

    fn check(document: Value, payload: Value) -> bool {
        filter(document).matches(&payload)
    }

    fn refusal(document: Value) -> (String, String) {
        let err = PayloadFilter::parse(&document).expect_err("the filter should be refused");
        (err.path, err.reason)
    }

    fn assert_refused(document: Value, path: &str, reason: &str) {
        let (actual_path, actual_reason) = refusal(document.clone());
        assert_eq!(actual_path, path, "path for {document}");
        assert!(actual_reason.contains(reason), "reason for {document}: {actual_reason:?} lacks {reason:?}");
    }

    // ---- operators --------------------------------------------------------

    #[test]
    fn given_eq_when_the_field_equals_then_it_matches_and_otherwise_not() {
        // GIVEN an eq condition on a string, a number and an object
        // WHEN evaluated against equal and unequal values
        // THEN only equal values match
        assert!(check(json!({"field": "currency", "eq": "EUR"}), json!({"currency": "EUR"})));
        assert!(!check(json!({"field": "currency", "eq": "EUR"}), json!({"currency": "USD"})));
        assert!(!check(json!({"field": "currency", "eq": "1"}), json!({"currency": 1})));
        assert!(check(json!({"field": "a", "eq": {"b": [1, 2]}}), json!({"a": {"b": [1.0, 2]}})));
        assert!(!check(json!({"field": "a", "eq": {"b": [1, 2]}}), json!({"a": {"b": [1, 2, 3]}})));
        assert!(check(json!({"field": "a", "eq": null}), json!({"a": null})));
        assert!(check(json!({"field": "a", "eq": false}), json!({"a": false})));
    }

    #[test]
    fn given_numbers_of_different_representations_when_compared_then_values_count() {
        // GIVEN integer and float operands
        // WHEN the payload holds the same value in the other representation
        // THEN they are equal (1 == 1.0) and ordered by value
        assert!(check(json!({"field": "n", "eq": 1}), json!({"n": 1.0})));
        assert!(check(json!({"field": "n", "eq": 1.0}), json!({"n": 1})));
        assert!(!check(json!({"field": "n", "ne": 1}), json!({"n": 1.0})));
        assert!(check(json!({"field": "n", "in": [2, 1.0]}), json!({"n": 1})));
        assert!(check(json!({"field": "n", "lt": 18446744073709551615u64}), json!({"n": -1})));
        assert!(check(json!({"field": "n", "gt": -1}), json!({"n": 18446744073709551615u64})));
        assert!(check(json!({"field": "n", "gte": 1.5}), json!({"n": 2})));
    }

    #[test]
    fn given_ne_when_the_field_differs_or_is_missing_then_it_matches() {
        // GIVEN ne "EUR"
        let ne = json!({"field": "currency", "ne": "EUR"});
        // WHEN the field differs, is missing, or equals THEN it matches, matches, does not match
        assert!(check(ne.clone(), json!({"currency": "USD"})));
        assert!(check(ne.clone(), json!({})));
        assert!(!check(ne, json!({"currency": "EUR"})));
    }

    #[test]
    fn given_in_and_nin_when_the_field_is_listed_or_not_then_they_match_accordingly() {
        // GIVEN in / nin over two currencies
        let in_ = json!({"field": "currency", "in": ["USD", "EUR"]});
        let nin = json!({"field": "currency", "nin": ["USD", "EUR"]});
        // WHEN the field is listed, not listed, missing, or not a scalar
        // THEN in matches only when listed; nin matches otherwise
        assert!(check(in_.clone(), json!({"currency": "EUR"})));
        assert!(!check(in_.clone(), json!({"currency": "GBP"})));
        assert!(!check(in_.clone(), json!({})));
        assert!(!check(in_, json!({"currency": ["EUR"]})));
        assert!(!check(nin.clone(), json!({"currency": "EUR"})));
        assert!(check(nin.clone(), json!({"currency": "GBP"})));
        assert!(check(nin.clone(), json!({})));
        assert!(check(nin, json!({"currency": ["EUR"]})));
    }

    #[test]
    fn given_exists_when_the_field_is_present_or_missing_then_it_matches_accordingly() {
        // GIVEN exists true and false
        let present = json!({"field": "a.b", "exists": true});
        let absent = json!({"field": "a.b", "exists": false});
        // WHEN the field is present (even as null) or missing (also through a scalar)
        // THEN exists:true matches only when present, exists:false only when missing
        assert!(check(present.clone(), json!({"a": {"b": null}})));
        assert!(!check(present.clone(), json!({"a": {}})));
        assert!(!check(present, json!({"a": 5})));
        assert!(!check(absent.clone(), json!({"a": {"b": 0}})));
        assert!(check(absent.clone(), json!({"a": {}})));
        assert!(check(absent, json!("not an object")));
    }

    #[test]
    fn given_numeric_comparisons_when_below_at_or_above_then_they_match_accordingly() {
        // GIVEN gt/gte/lt/lte 100
        let payload = |n: f64| json!({"amount": n});
        for (op, below, at, above) in [
            ("gt", false, false, true),
            ("gte", false, true, true),
            ("lt", true, false, false),
            ("lte", true, true, false),
        ] {
            let document = json!({"field": "amount", op: 100});
            // WHEN the amount is 99.5, 100, 100.5 THEN the results are as the operator says
            assert_eq!(check(document.clone(), payload(99.5)), below, "{op} below");
            assert_eq!(check(document.clone(), payload(100.0)), at, "{op} at");
            assert_eq!(check(document, payload(100.5)), above, "{op} above");
        }
    }

    #[test]
    fn given_string_comparisons_when_timestamps_are_compared_then_order_is_lexicographic() {
        // GIVEN an RFC 3339 lower bound
        let since = json!({"field": "createdAt", "gte": "2026-01-01T00:00:00Z"});
        // WHEN the timestamp is before, at, or after THEN lexicographic order decides
        assert!(!check(since.clone(), json!({"createdAt": "2025-12-31T23:59:59Z"})));
        assert!(check(since.clone(), json!({"createdAt": "2026-01-01T00:00:00Z"})));
        assert!(check(since, json!({"createdAt": "2026-03-01T10:00:00Z"})));
        assert!(check(json!({"field": "s", "lt": "b"}), json!({"s": "abc"})));
        assert!(!check(json!({"field": "s", "lt": "b"}), json!({"s": "b"})));
    }

    #[test]
    fn given_a_type_mismatch_when_compared_then_it_does_not_match() {
        // GIVEN comparisons whose operand type differs from the field's
        // WHEN evaluated THEN they are false, not errors
        assert!(!check(json!({"field": "a", "gt": 1}), json!({"a": "2"})));
        assert!(!check(json!({"field": "a", "lt": "z"}), json!({"a": 1})));
        assert!(!check(json!({"field": "a", "gte": 0}), json!({"a": null})));
        assert!(!check(json!({"field": "a", "lte": 0}), json!({"a": [0]})));
        assert!(!check(json!({"field": "a", "contains": "x"}), json!({"a": {"x": 1}})));
        assert!(!check(json!({"field": "a", "contains": 1}), json!({"a": "1"})));
    }

    #[test]
    fn given_contains_when_a_string_or_array_holds_the_operand_then_it_matches() {
        // GIVEN contains on a string field and on an array field
        // WHEN the substring or element is there or not
        // THEN it matches only when it is there
        assert!(check(json!({"field": "email", "contains": "@example.com"}), json!({"email": "a@example.com"})));
        assert!(!check(json!({"field": "email", "contains": "@example.org"}), json!({"email": "a@example.com"})));
        assert!(check(json!({"field": "tags", "contains": "vip"}), json!({"tags": ["new", "vip"]})));
        assert!(!check(json!({"field": "tags", "contains": "vi"}), json!({"tags": ["new", "vip"]})));
        assert!(check(json!({"field": "ids", "contains": 2}), json!({"ids": [1, 2.0, 3]})));
        assert!(check(json!({"field": "flags", "contains": true}), json!({"flags": [false, true]})));
        assert!(!check(json!({"field": "ids", "contains": 4}), json!({"ids": [1, 2, 3]})));
    }

    #[test]
    fn given_a_missing_field_when_evaluated_then_only_ne_nin_and_exists_false_match() {
        // GIVEN every operator on a field the payload does not have
        let payload = json!({"other": 1});
        let cases = [
            ("eq", json!(1), false),
            ("ne", json!(1), true),
            ("in", json!([1]), false),
            ("nin", json!([1]), true),
            ("exists", json!(true), false),
            ("exists", json!(false), true),
            ("gt", json!(0), false),
            ("gte", json!(0), false),
            ("lt", json!(0), false),
            ("lte", json!(0), false),
            ("contains", json!("x"), false),
            ("eq", json!(null), false),
        ];
        for (op, operand, expected) in cases {
            // WHEN evaluated THEN only ne, nin and exists:false match
            assert_eq!(check(json!({"field": "missing", op: operand}), payload.clone()), expected, "{op}");
        }
    }

    // ---- paths ------------------------------------------------------------

    #[test]
    fn given_a_numeric_segment_when_the_value_is_an_array_then_it_indexes_it() {
        // GIVEN items.0.sku
        let first = json!({"field": "items.0.sku", "eq": "A-1"});
        // WHEN the first item has that sku, the array is short, or it is an object keyed "0"
        // THEN it indexes arrays and looks up keys in objects
        assert!(check(first.clone(), json!({"items": [{"sku": "A-1"}, {"sku": "B-2"}]})));
        assert!(!check(first.clone(), json!({"items": [{"sku": "B-2"}, {"sku": "A-1"}]})));
        assert!(!check(first.clone(), json!({"items": []})));
        assert!(check(first, json!({"items": {"0": {"sku": "A-1"}}})));
        assert!(check(json!({"field": "m.1.1", "eq": 4}), json!({"m": [[1, 2], [3, 4]]})));
        assert!(!check(json!({"field": "items.x", "exists": true}), json!({"items": [1]})));
        assert!(!check(json!({"field": "items.99999999999999999999999", "exists": true}), json!({"items": [1]})));
    }

    #[test]
    fn given_an_escaped_dot_when_resolved_then_it_is_part_of_the_key() {
        // GIVEN a key that contains a dot, and one with a backslash
        // WHEN addressed with \. and \\
        // THEN the literal key is used, not a nested path
        let payload = json!({"a.b": 1, "a": {"b": 2}, "c\\": {"d": 3}});
        assert!(check(json!({"field": "a\\.b", "eq": 1}), payload.clone()));
        assert!(check(json!({"field": "a.b", "eq": 2}), payload.clone()));
        assert!(check(json!({"field": "c\\\\.d", "eq": 3}), payload.clone()));
        assert!(check(json!({"field": "meta.x\\.y\\.z", "eq": true}), json!({"meta": {"x.y.z": true}})));
    }

    // ---- combinators ------------------------------------------------------

    #[test]
    fn given_and_or_not_when_evaluated_then_they_combine_like_logic() {
        // GIVEN the documented example and its variations
        let and = json!({"and": [{"field": "amount", "gte": 100}, {"field": "currency", "in": ["USD", "EUR"]}]});
        let or = json!({"or": [{"field": "amount", "gte": 100}, {"field": "currency", "in": ["USD", "EUR"]}]});
        let not = json!({"not": {"field": "test", "eq": true}});
        // WHEN evaluated THEN and needs all, or needs one, not inverts
        assert!(check(and.clone(), json!({"amount": 150, "currency": "EUR"})));
        assert!(!check(and.clone(), json!({"amount": 150, "currency": "GBP"})));
        assert!(!check(and, json!({"amount": 50, "currency": "EUR"})));
        assert!(check(or.clone(), json!({"amount": 50, "currency": "EUR"})));
        assert!(check(or.clone(), json!({"amount": 500, "currency": "GBP"})));
        assert!(!check(or, json!({"amount": 50, "currency": "GBP"})));
        assert!(check(not.clone(), json!({"test": false})));
        assert!(check(not.clone(), json!({})));
        assert!(!check(not, json!({"test": true})));
        let nested = json!({"and": [{"field": "a", "eq": 1}, {"or": [{"field": "b", "eq": 2}, {"not": {"field": "c", "exists": true}}]}]});
        assert!(check(nested.clone(), json!({"a": 1, "b": 2, "c": 0})));
        assert!(check(nested.clone(), json!({"a": 1})));
        assert!(!check(nested, json!({"a": 1, "c": 0})));
    }

    #[test]
    fn given_a_parsed_filter_then_it_shows_serialises_and_deserialises_as_its_document() {
        // GIVEN a document
        let document = json!({"not": {"field": "a", "eq": 1}});
        // WHEN parsed, serialised and deserialised THEN the document is kept as it was
        let parsed = filter(document.clone());
        assert_eq!(parsed.as_json(), &document);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), document);
        assert_eq!(serde_json::from_value::<PayloadFilter>(document.clone()).unwrap(), parsed);
        assert_eq!(format!("{parsed:?}"), format!("PayloadFilter({document:?})"));
        // AND an invalid document fails to deserialise with "path: reason"
        let err = serde_json::from_value::<PayloadFilter>(json!({"and": [{"field": "a", "gtx": 1}]})).unwrap_err();
        assert!(err.to_string().starts_with("and[0].gtx: unknown operator \"gtx\""), "{err}");
    }

    // ---- validation -------------------------------------------------------

    #[test]
    fn given_bad_operands_when_parsed_then_the_operator_is_named() {
        // GIVEN conditions whose operand has the wrong type or size
        // WHEN parsed THEN the error names the operator's path and what it must be
        assert_refused(
            json!({"and": [{"field": "a", "eq": 1}, {"field": "b", "gte": true}]}),
            "and[1].gte",
            "must be a number or a string",
        );
        assert_refused(json!({"field": "a", "lt": [1]}), "lt", "must be a number or a string");
        assert_refused(json!({"field": "a", "in": []}), "in", "must be a non-empty array of at most 100");
        assert_refused(json!({"field": "a", "nin": "USD"}), "nin", "must be a non-empty array of at most 100");
        assert_refused(json!({"field": "a", "in": (0..101).collect::<Vec<_>>()}), "in", "at most 100");
        assert_refused(
            json!({"field": "a", "in": [1, {"x": 1}]}),
            "in[1]",
            "must be a string, number, boolean or null",
        );
        assert_refused(json!({"field": "a", "exists": "yes"}), "exists", "must be true or false");
        assert_refused(
            json!({"field": "a", "contains": ["x"]}),
            "contains",
            "must be a string, number, boolean or null",
        );
        assert!(PayloadFilter::parse(&json!({"field": "a", "in": (0..100).collect::<Vec<_>>()})).is_ok());
    }

    #[test]
    fn given_bad_operators_when_parsed_then_the_reason_says_what_to_use() {
        // GIVEN conditions with an unknown, a missing, or two operators
        // WHEN parsed THEN the reason lists the operators or asks for exactly one
        let (path, reason) = refusal(json!({"field": "a", "gtx": 1}));
        assert_eq!(path, "gtx");
        assert_eq!(reason, "unknown operator \"gtx\"; use one of eq, ne, in, nin, exists, gt, gte, lt, lte, contains");
        assert_refused(json!({"or": [{"field": "a"}]}), "or[0]", "needs exactly one operator besides \"field\"");
        assert_refused(json!({"field": "a", "gt": 1, "lt": 5}), "", "needs exactly one operator besides \"field\"");
        assert_refused(json!({"field": "a", "eq": 1, "and": []}), "and", "cannot sit beside \"field\"");
        assert_refused(json!({"eq": 1}), "field", "is required");
        assert_refused(json!({"or": [{"not": {"eq": 1}}]}), "or[0].not.field", "is required");
    }

    #[test]
    fn given_bad_structure_when_parsed_then_the_node_is_named() {
        // GIVEN malformed combinators and non-object filters
        // WHEN parsed THEN each error points at the offending node
        let list = "must be a non-empty array of at most 32 filters";
        assert_refused(json!({"and": []}), "and", list);
        assert_refused(json!({"or": {"field": "a", "eq": 1}}), "or", list);
        let many: Vec<Value> = (0..33).map(|i| json!({"field": "a", "eq": i})).collect();
        assert_refused(json!({"and": many}), "and", list);
        assert_refused(json!({"and": [{"field": "a", "eq": 1}, 5]}), "and[1]", "must be an object");
        assert_refused(json!({"not": [{"field": "a", "eq": 1}]}), "not", "must be an object");
        assert_refused(json!("amount > 100"), "", "must be an object");
        assert_refused(json!({}), "", "needs \"field\" and an operator");
        assert_refused(
            json!({"and": [{"field": "a", "eq": 1}], "or": [{"field": "a", "eq": 1}]}),
            "",
            "needs exactly one of",
        );
        assert_refused(json!({"any": []}), "any", "unknown key \"any\"");
        assert_refused(json!({"not": {"not": {"fields": "a"}}}), "not.not.fields", "unknown key");
    }

    #[test]
    fn given_bad_paths_when_parsed_then_the_field_is_named() {
        // GIVEN malformed field paths
        // WHEN parsed THEN the error is at .field and says how to write a path
        assert_refused(json!({"field": 5, "eq": 1}), "field", "must be a string");
        assert_refused(json!({"field": "", "eq": 1}), "field", "must not be empty");
        assert_refused(json!({"or": [{"not": {"field": "a..b", "eq": 1}}]}), "or[0].not.field", "has an empty segment");
        assert_refused(json!({"field": ".a", "eq": 1}), "field", "has an empty segment");
        assert_refused(json!({"field": "a.", "eq": 1}), "field", "has an empty segment");
        assert_refused(json!({"field": "a\\b", "eq": 1}), "field", "write \\. for a dot in a key");
        assert_refused(json!({"field": "a\\", "eq": 1}), "field", "write \\. for a dot in a key");
        assert_refused(json!({"field": "x".repeat(257), "eq": 1}), "field", "at most 256 characters");
        assert_refused(json!({"field": vec!["a"; 17].join("."), "eq": 1}), "field", "at most 16 segments");
        assert!(PayloadFilter::parse(&json!({"field": vec!["a"; 16].join("."), "eq": 1})).is_ok());
        assert!(PayloadFilter::parse(&json!({"field": "é".repeat(256), "eq": 1})).is_ok());
    }

    #[test]
    fn given_limits_when_exceeded_then_the_filter_is_refused() {
        // GIVEN nesting 8 levels deep (accepted) and 9 levels deep (refused)
        let mut eight = json!({"field": "a", "eq": 1});
        for _ in 0..7 {
            eight = json!({"not": eight});
        }
        assert!(PayloadFilter::parse(&eight).is_ok());
        let nine = json!({"and": [eight]});
        // WHEN parsed THEN the ninth level is named
        assert_refused(nine, "and[0].not.not.not.not.not.not.not", "nesting deeper than 8");

        // GIVEN 64 conditions (accepted) and 65 (refused at the 65th)
        let conditions = |n: usize| -> Vec<Value> { (0..n).map(|i| json!({"field": "a", "eq": i})).collect() };
        let sixty_four = json!({"or": [{"and": conditions(32)}, {"and": conditions(32)}]});
        assert!(PayloadFilter::parse(&sixty_four).is_ok());
        let sixty_five =
            json!({"or": [{"and": conditions(32)}, {"and": conditions(32)}, {"field": "b", "exists": true}]});
        assert_refused(sixty_five, "or[2]", "at most 64");

        // GIVEN a document over 8 KiB serialised THEN it is refused at the root
        let big = json!({"field": "a", "eq": "x".repeat(8 * 1024)});
        assert_eq!(refusal(big), ("".into(), "must be at most 8 KiB (8192 bytes) serialised; simplify it".into()));
    }

    #[test]
    fn given_the_examples_in_docs_filters_md_then_paths_and_messages_are_exactly_those() {
        // GIVEN the error table of docs/FILTERS.md (paths there carry the API's "filter." prefix)
        let mut nine = json!({"field": "a", "eq": 1});
        for _ in 0..8 {
            nine = json!({"not": nine});
        }
        let conditions: Vec<Value> = (0..32).map(|i| json!({"field": "a", "eq": i})).collect();
        let cases = [
            (
                json!({"and": [{"field": "a", "eq": 1}, {"field": "b", "gte": true}]}),
                "and[1].gte",
                "must be a number or a string",
            ),
            (
                json!({"field": "amount", "gtx": 100}),
                "gtx",
                "unknown operator \"gtx\"; use one of eq, ne, in, nin, exists, gt, gte, lt, lte, contains",
            ),
            (
                json!({"field": "amount", "gt": 1, "lt": 5}),
                "",
                "needs exactly one operator besides \"field\"; combine conditions with \"and\"",
            ),
            (
                json!({"or": [{"not": {"field": "a..b", "eq": 1}}]}),
                "or[0].not.field",
                "has an empty segment; separate keys with single dots and write \\. for a dot in a key",
            ),
            (
                json!({"or": [{"not": {"eq": 1}}]}),
                "or[0].not.field",
                "is required: the payload path to test, e.g. \"amount\"",
            ),
            (json!({"and": []}), "and", "must be a non-empty array of at most 32 filters"),
            (
                json!({"field": "currency", "in": ["USD", ["EUR"]]}),
                "in[1]",
                "must be a string, number, boolean or null",
            ),
            (json!({"field": "a", "exists": "yes"}), "exists", "must be true or false"),
            (nine, "not.not.not.not.not.not.not.not", "nesting deeper than 8; flatten the filter"),
            (
                json!({"or": [{"and": conditions}, {"and": conditions}, {"field": "b", "exists": true}]}),
                "or[2]",
                "is condition 65; a filter has at most 64",
            ),
            (
                json!("amount > 100"),
                "",
                "must be an object: {\"field\": <path>, <operator>: <value>} or one of {\"and\": [...]}, \
                 {\"or\": [...]}, {\"not\": {...}}",
            ),
        ];
        for (document, path, reason) in cases {
            // WHEN parsed THEN the error is exactly the documented one
            assert_eq!(refusal(document), (path.to_owned(), reason.to_owned()));
        }
    }

    // ---- property: evaluation is total -----------------------------------

    const KEYS: [&str; 8] = ["a", "b", "0", "1", "amount", "items", "x.y", ""];
    const WORDS: [&str; 6] = ["", "EUR", "é", "2026-01-01T00:00:00Z", "a", "1"];

    fn random_scalar(rng: &mut StdRng) -> Value {
        match rng.random_range(0..7) {
            0 => Value::Null,
            1 => json!(rng.random_bool(0.5)),
            2 => json!(rng.random_range(-3i64..4)),
            3 => json!(rng.random::<u64>()),
            4 => json!(rng.random_range(-2.0f64..2.0)),
            5 => json!(rng.random::<i64>()),
            _ => json!(WORDS[rng.random_range(0..WORDS.len())]),
        }
    }

    fn random_payload(rng: &mut StdRng, depth: usize) -> Value {
        match if depth == 0 { 0 } else { rng.random_range(0..4) } {
            0 | 1 => random_scalar(rng),
            2 => Value::Array((0..rng.random_range(0..4)).map(|_| random_payload(rng, depth - 1)).collect()),
            _ => Value::Object(
                (0..rng.random_range(0..5))
                    .map(|_| (KEYS[rng.random_range(0..KEYS.len())].to_owned(), random_payload(rng, depth - 1)))
                    .collect(),
            ),
        }
    }

    fn random_path(rng: &mut StdRng) -> String {
        let segments: Vec<String> = (0..rng.random_range(1..4))
            .map(|_| KEYS[rng.random_range(0..KEYS.len() - 1)].replace('.', "\\."))
            .collect();
        segments.join(".")
    }

    fn random_filter(rng: &mut StdRng, depth: usize) -> Value {
        match if depth == 0 { 0 } else { rng.random_range(0..5) } {
            0 | 1 => {
                let op = OPERATORS[rng.random_range(0..OPERATORS.len())];
                let operand = match op {
                    "in" | "nin" => Value::Array((0..rng.random_range(1..4)).map(|_| random_scalar(rng)).collect()),
                    "exists" => json!(rng.random_bool(0.5)),
                    "eq" | "ne" => random_payload(rng, 2),
                    _ => random_scalar(rng),
                };
                json!({"field": random_path(rng), op: operand})
            }
            2 => json!({"not": random_filter(rng, depth - 1)}),
            n => {
                let key = if n == 3 { "and" } else { "or" };
                json!({key: (0..rng.random_range(1..4)).map(|_| random_filter(rng, depth - 1)).collect::<Vec<_>>()})
            }
        }
    }

    #[test]
    fn given_random_payloads_and_filters_when_matched_then_nothing_panics_and_logic_holds() {
        // GIVEN a seeded generator of payloads and filters (some of them refused at parse)
        let mut rng = StdRng::seed_from_u64(0x5eed_f11e);
        let mut parsed = 0;
        for _ in 0..3000 {
            let document = random_filter(&mut rng, 3);
            let Ok(f) = PayloadFilter::parse(&document) else { continue };
            parsed += 1;
            let negated = filter(json!({"not": document.clone()}));
            let other = loop {
                if let Ok(other) = PayloadFilter::parse(&random_filter(&mut rng, 2)) {
                    break other;
                }
            };
            let both = filter(json!({"and": [document.clone(), other.as_json().clone()]}));
            let either = filter(json!({"or": [document.clone(), other.as_json().clone()]}));
            for _ in 0..10 {
                // WHEN matched against random payloads
                let payload = random_payload(&mut rng, 4);
                let (a, b) = (f.matches(&payload), other.matches(&payload));
                // THEN matching is total and not/and/or behave like logic
                assert_eq!(negated.matches(&payload), !a, "{document} on {payload}");
                assert_eq!(both.matches(&payload), a && b);
                assert_eq!(either.matches(&payload), a || b);
            }
        }
        assert!(parsed > 1000, "the generator should mostly produce valid filters ({parsed})");
    }
}
