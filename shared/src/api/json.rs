//! Reads JSON bodies field by field, so every wrong type, missing field or
//! unknown field is reported by name (serde's own messages name none).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ApiRequest;
use crate::service::{ServiceError, ServiceResult, Violations};

pub(crate) struct JsonBody {
    object: Map<String, Value>,
    seen: Vec<String>,
    violations: Violations,
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl JsonBody {
    /// An empty body reads as `{}` so routes whose fields are all optional accept it.
    pub(crate) fn parse(request: &ApiRequest) -> ServiceResult<Self> {
        if let Some(content_type) = request.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if !request.body.is_empty() && essence != "application/json" && !essence.ends_with("+json") {
                return Err(ServiceError::UnsupportedMediaType(format!(
                    "send the body as application/json, not {essence}"
                )));
            }
        }
        if request.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody { object: Map::new(), seen: vec![], violations: Violations::new() });
        }
        let value: Value = serde_json::from_slice(&request.body)
            .map_err(|e| ServiceError::field("body", format!("is not valid JSON: {e}")))?;
        match value {
            Value::Object(object) => Ok(JsonBody { object, seen: vec![], violations: Violations::new() }),
            other => Err(ServiceError::field("body", format!("must be a JSON object, not {}", type_name(&other)))),
        }
    }

    fn take(&mut self, field: &str) -> Option<Value> {
        self.seen.push(field.to_string());
        self.object.get(field).cloned()
    }

    fn wrong(&mut self, field: &str, expected: &str, got: &Value) {
        self.violations.add(field, format!("must be {expected}, not {}", type_name(got)));
    }

    pub(crate) fn required_string(&mut self, field: &str) -> String {
        match self.take(field) {
            None | Some(Value::Null) => {
                self.violations.add(field, "is required");
                String::new()
            }
            Some(Value::String(s)) => s,
            Some(other) => {
                self.wrong(field, "a string", &other);
                String::new()
            }
        }
    }

    pub(crate) fn string(&mut self, field: &str) -> Option<String> {
        self.nullable_string(field).flatten()
    }

    /// `None` absent, `Some(None)` explicit null.
    pub(crate) fn nullable_string(&mut self, field: &str) -> Option<Option<String>> {
        match self.take(field) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s)),
            Some(other) => {
                self.wrong(field, "a string", &other);
                None
            }
        }
    }

    pub(crate) fn u32(&mut self, field: &str) -> Option<u32> {
        self.nullable_u32(field).flatten()
    }

    pub(crate) fn nullable_u32(&mut self, field: &str) -> Option<Option<u32>> {
        match self.take(field) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::Number(n)) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Some(Some(n)),
                None => {
                    self.violations.add(field, "must be a non-negative whole number");
                    None
                }
            },
            Some(other) => {
                self.wrong(field, "a number", &other);
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, field: &str) -> Option<bool> {
        match self.take(field) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b),
            Some(other) => {
                self.wrong(field, "a boolean", &other);
                None
            }
        }
    }

    pub(crate) fn string_list(&mut self, field: &str) -> Option<Vec<String>> {
        match self.take(field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        other => self.wrong(&format!("{field}[{i}]"), "a string", &other),
                    }
                }
                Some(out)
            }
            Some(other) => {
                self.wrong(field, "an array of strings", &other);
                None
            }
        }
    }

    pub(crate) fn string_map(&mut self, field: &str) -> Option<BTreeMap<String, String>> {
        match self.take(field) {
            None | Some(Value::Null) => None,
            Some(Value::Object(entries)) => {
                let mut out = BTreeMap::new();
                for (key, value) in entries {
                    match value {
                        Value::String(s) => {
                            out.insert(key, s);
                        }
                        other => self.wrong(&format!("{field}.{key}"), "a string", &other),
                    }
                }
                Some(out)
            }
            Some(other) => {
                self.wrong(field, "an object of strings", &other);
                None
            }
        }
    }

    /// Any JSON value (payloads, schemas); `Some(Null)` when explicitly null.
    pub(crate) fn value(&mut self, field: &str) -> Option<Value> {
        self.take(field)
    }

    /// A string field that must be one of `choices`.
    pub(crate) fn choice<T: Copy>(&mut self, field: &str, choices: &[(&str, T)]) -> Option<T> {
        let raw = self.string(field)?;
        match choices.iter().find(|(name, _)| *name == raw) {
            Some((_, value)) => Some(*value),
            None => {
                let names = choices.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
                self.violations.add(field, format!("must be one of {names}"));
                None
            }
        }
    }

    pub(crate) fn timestamp(&mut self, field: &str) -> Option<crate::domain::Timestamp> {
        let raw = self.string(field)?;
        match super::query::parse_timestamp(&raw) {
            Some(ts) => Some(ts),
            None => {
                self.violations.add(field, "must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z");
                None
            }
        }
    }

    pub(crate) fn add_violation(&mut self, field: &str, message: &str) {
        self.violations.add(field, message);
    }

    /// Fails with every problem found; fields not read are unknown unless
    /// listed in `ignored` (read-only fields a client may echo back).
    pub(crate) fn finish(mut self, ignored: &[&str]) -> ServiceResult<()> {
        let unknown: Vec<String> = self
            .object
            .keys()
            .filter(|k| !self.seen.iter().any(|s| s == *k) && !ignored.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            self.violations.add(key, "is not a known field");
        }
        self.violations.into_result()
    }
}
