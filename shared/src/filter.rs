//! Payload filters: a small predicate language on an event's JSON payload,
//! evaluated at fan-out (docs/FILTERS.md). STUB: the full parser and
//! evaluator land with the filter work.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Why a filter was refused: `path` is where in the filter document
/// (`and[1].gte`), `reason` what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FilterError {
    pub path: String,
    pub reason: String,
}

/// A validated filter; shows (and stores) as the document it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadFilter {
    source: Value,
}

impl PayloadFilter {
    pub fn parse(document: &Value) -> Result<PayloadFilter, FilterError> {
        Ok(PayloadFilter { source: document.clone() })
    }

    pub fn matches(&self, _payload: &Value) -> bool {
        true
    }

    pub fn as_json(&self) -> &Value {
        &self.source
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
