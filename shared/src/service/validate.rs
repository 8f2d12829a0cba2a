//! Field rules shared by several resources.

use std::collections::BTreeMap;

use super::Violations;
use crate::domain::limits::*;

/// Header names Skyhook sets itself or that would break the request.
pub const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "user-agent",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "expect",
];

pub fn name(v: &mut Violations, field: &str, value: &str) {
    if value.trim().is_empty() {
        v.add(field, "must not be empty");
    } else if value.chars().count() > MAX_NAME_CHARS {
        v.add(field, format!("must be at most {MAX_NAME_CHARS} characters"));
    }
}

pub fn description(v: &mut Violations, field: &str, value: Option<&str>) {
    if let Some(value) = value
        && value.chars().count() > MAX_DESCRIPTION_CHARS
    {
        v.add(field, format!("must be at most {MAX_DESCRIPTION_CHARS} characters"));
    }
}

/// Event type names: `invoice.paid`, `user-signed_up.v2` (no `/`: they appear in paths).
pub fn event_type_name(v: &mut Violations, field: &str, value: &str) {
    name(v, field, value);
    if !value.is_empty() && !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')) {
        v.add(field, "may contain only letters, digits and . _ - :");
    } else if !value.is_empty() && !value.chars().any(|c| c.is_ascii_alphanumeric()) {
        v.add(field, "must contain at least one letter or digit");
    }
}

pub fn custom_headers(v: &mut Violations, field: &str, headers: &BTreeMap<String, String>) {
    if headers.len() > MAX_HEADERS {
        v.add(field, format!("must have at most {MAX_HEADERS} entries"));
    }
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let key = format!("{field}.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            v.add(key, "is not a valid HTTP header name");
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            v.add(key, "is set by Skyhook and cannot be overridden");
        } else if value.len() > MAX_HEADER_VALUE_CHARS {
            v.add(key, format!("value must be at most {MAX_HEADER_VALUE_CHARS} characters"));
        } else if http::HeaderValue::from_str(value).is_err() {
            v.add(key, "value must be visible ASCII without line breaks");
        }
    }
}

pub fn metadata(v: &mut Violations, field: &str, metadata: &BTreeMap<String, String>) {
    if metadata.len() > MAX_METADATA_ENTRIES {
        v.add(field, format!("must have at most {MAX_METADATA_ENTRIES} entries"));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.chars().count() > MAX_NAME_CHARS {
            v.add(format!("{field}.{key}"), format!("keys must be 1 to {MAX_NAME_CHARS} characters"));
        }
        if value.chars().count() > MAX_DESCRIPTION_CHARS {
            v.add(format!("{field}.{key}"), format!("values must be at most {MAX_DESCRIPTION_CHARS} characters"));
        }
    }
}

pub fn in_range(v: &mut Violations, field: &str, value: Option<u32>, min: u32, max: u32) {
    if let Some(value) = value
        && !(min..=max).contains(&value)
    {
        v.add(field, format!("must be between {min} and {max}"));
    }
}
