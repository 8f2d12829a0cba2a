//! Query-string parameters, each checked and named on error.

use std::collections::HashMap;

use crate::domain::Timestamp;
use crate::service::{ListQuery, ServiceError, ServiceResult};

pub(crate) struct Query(HashMap<String, String>);

pub(crate) fn parse_timestamp(raw: &str) -> Option<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&chrono::Utc))
}

impl Query {
    pub(crate) fn parse(raw: &str) -> ServiceResult<Self> {
        let mut map = HashMap::new();
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            if map.insert(key.to_string(), value.to_string()).is_some() {
                return Err(ServiceError::field(key.to_string(), "is given more than once"));
            }
        }
        Ok(Query(map))
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.is_empty()).cloned()
    }

    pub(crate) fn list(&self) -> ServiceResult<ListQuery> {
        let limit = match self.0.get("limit") {
            None => None,
            Some(raw) => Some(
                raw.parse::<usize>()
                    .map_err(|_| ServiceError::field("limit", "must be a whole number between 1 and 250"))?,
            ),
        };
        Ok(ListQuery { limit, cursor: self.string("cursor") })
    }

    pub(crate) fn bool(&self, name: &str) -> ServiceResult<Option<bool>> {
        match self.0.get(name).map(String::as_str) {
            None | Some("") => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(_) => Err(ServiceError::field(name, "must be true or false")),
        }
    }

    pub(crate) fn timestamp(&self, name: &str) -> ServiceResult<Option<Timestamp>> {
        match self.string(name) {
            None => Ok(None),
            Some(raw) => parse_timestamp(&raw)
                .map(Some)
                .ok_or_else(|| ServiceError::field(name, "must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z")),
        }
    }

    /// `from`/`to` with `from` before `to`.
    pub(crate) fn range(&self) -> ServiceResult<(Option<Timestamp>, Option<Timestamp>)> {
        let from = self.timestamp("from")?;
        let to = self.timestamp("to")?;
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(ServiceError::field("from", "must not be after to"));
        }
        Ok((from, to))
    }

    pub(crate) fn parsed<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> ServiceResult<Option<T>> {
        match self.string(name) {
            None => Ok(None),
            Some(raw) => parse(&raw).map(Some).ok_or_else(|| ServiceError::field(name, format!("must be {expected}"))),
        }
    }
}
