//! The functions' configuration: environment variables set by `template.yaml`,
//! read once per cold start.

use crate::retry::RetrySchedule;
use crate::service::ServiceConfig;
use crate::ssrf::AddressPolicy;

pub const TABLE_NAME: &str = "TABLE_NAME";
pub const DELIVERIES_QUEUE_URL: &str = "DELIVERIES_QUEUE_URL";
pub const ORDERED_DELIVERIES_QUEUE_URL: &str = "ORDERED_DELIVERIES_QUEUE_URL";
pub const INGEST_QUEUE_URL: &str = "INGEST_QUEUE_URL";
pub const SECRET_ID: &str = "SECRET_ID";
pub const REQUIRE_HTTPS: &str = "SKYHOOK_REQUIRE_HTTPS";
pub const ALLOW_LOOPBACK: &str = "SKYHOOK_ALLOW_LOOPBACK";
pub const RETRY_SCHEDULE: &str = "SKYHOOK_RETRY_SCHEDULE";
pub const RETRY_JITTER: &str = "SKYHOOK_RETRY_JITTER";

/// Default ±jitter applied to each retry delay.
const DEFAULT_JITTER: f64 = 0.2;
/// SPEC §4's schedule, the same as `RetrySchedule::default()`.
const DEFAULT_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// `Debug` is the readable message (see [`super::InitError`]).
#[derive(Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Everything a function reads from its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaConfig {
    /// `TABLE_NAME`: the DynamoDB table (every function).
    pub table_name: String,
    /// `DELIVERIES_QUEUE_URL`: the deliveries queue (fan-out writes it, the
    /// dispatcher changes visibility on it, the API enqueues manual retries).
    pub deliveries_queue_url: String,
    /// `ORDERED_DELIVERIES_QUEUE_URL` (optional): the FIFO queue of ordered
    /// endpoints' deliveries (`MessageGroupId` = endpoint id), used beside
    /// the deliveries queue by the same functions. Unset: grouped messages
    /// are refused.
    pub ordered_deliveries_queue_url: Option<String>,
    /// `INGEST_QUEUE_URL`: the ingest queue (only the ingest function).
    pub ingest_queue_url: Option<String>,
    /// `SECRET_ID`: name or ARN of the Secrets Manager secret.
    pub secret_id: String,
    /// `SKYHOOK_REQUIRE_HTTPS` (default true).
    pub require_https: bool,
    /// `SKYHOOK_ALLOW_LOOPBACK` (default false; never enable in production).
    pub allow_loopback: bool,
    /// `SKYHOOK_RETRY_SCHEDULE` (e.g. `5s,5m,30m`; default SPEC §4) with
    /// `SKYHOOK_RETRY_JITTER` (default 0.2).
    pub retry_schedule: RetrySchedule,
}

impl LambdaConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup` (tests pass a map). Empty values count as unset,
    /// since CloudFormation passes optional parameters as `""`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let flag = |name: &'static str, default: bool| match get(name) {
            None => Ok(default),
            Some(value) => parse_bool(&value).ok_or_else(|| ConfigError::Invalid {
                name,
                reason: format!("expected true/false (or 1/0, yes/no, on/off), got {value:?}"),
            }),
        };
        let jitter = match get(RETRY_JITTER) {
            None => DEFAULT_JITTER,
            Some(value) => value.parse::<f64>().ok().filter(|j| (0.0..=0.5).contains(j)).ok_or_else(|| {
                ConfigError::Invalid { name: RETRY_JITTER, reason: format!("expected 0 to 0.5, got {value:?}") }
            })?,
        };
        let retry_schedule = match get(RETRY_SCHEDULE) {
            None if jitter == DEFAULT_JITTER => RetrySchedule::default(),
            spec => RetrySchedule::parse(spec.as_deref().unwrap_or(DEFAULT_SCHEDULE), jitter)
                .map_err(|e| ConfigError::Invalid { name: RETRY_SCHEDULE, reason: e.to_string() })?,
        };
        Ok(LambdaConfig {
            table_name: required(TABLE_NAME)?,
            deliveries_queue_url: required(DELIVERIES_QUEUE_URL)?,
            ordered_deliveries_queue_url: get(ORDERED_DELIVERIES_QUEUE_URL),
            ingest_queue_url: get(INGEST_QUEUE_URL),
            secret_id: required(SECRET_ID)?,
            require_https: flag(REQUIRE_HTTPS, true)?,
            allow_loopback: flag(ALLOW_LOOPBACK, false)?,
            retry_schedule,
        })
    }

    /// The ingest queue's URL, required by the ingest function only.
    pub fn require_ingest_queue_url(&self) -> Result<&str, ConfigError> {
        self.ingest_queue_url.as_deref().ok_or(ConfigError::Missing(INGEST_QUEUE_URL))
    }

    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy { allow_loopback: self.allow_loopback }
    }

    pub fn service_config(&self) -> ServiceConfig {
        ServiceConfig {
            retry_schedule: self.retry_schedule.clone(),
            require_https: self.require_https,
            address_policy: self.address_policy(),
            ..ServiceConfig::default()
        }
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<LambdaConfig, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LambdaConfig::from_lookup(|name| map.get(name).cloned())
    }

    const BASE: &[(&str, &str)] = &[
        ("TABLE_NAME", "skyhook"),
        ("DELIVERIES_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/deliveries"),
        ("SECRET_ID", "skyhook/secret"),
    ];

    #[test]
    fn given_the_required_variables_then_the_defaults_are_production_safe() {
        let c = config(BASE).unwrap();
        assert_eq!(c.table_name, "skyhook");
        assert!(c.require_https);
        assert!(!c.allow_loopback);
        assert_eq!(c.ingest_queue_url, None);
        assert_eq!(c.ordered_deliveries_queue_url, None);
        assert_eq!(c.retry_schedule, RetrySchedule::default());
        assert_eq!(c.require_ingest_queue_url(), Err(ConfigError::Missing("INGEST_QUEUE_URL")));
        assert_eq!(RetrySchedule::parse(DEFAULT_SCHEDULE, DEFAULT_JITTER).unwrap(), RetrySchedule::default());
    }

    #[test]
    fn given_a_missing_or_empty_variable_then_the_error_names_it() {
        for missing in ["TABLE_NAME", "DELIVERIES_QUEUE_URL", "SECRET_ID"] {
            let vars: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != missing).collect();
            let err = config(&vars).unwrap_err();
            assert!(err.to_string().contains(missing), "{err}");
            let mut empty = vars.clone();
            empty.push((missing, "  "));
            assert_eq!(config(&empty).unwrap_err(), ConfigError::Missing(missing));
        }
    }

    #[test]
    fn given_flags_and_a_schedule_then_they_are_parsed() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("SKYHOOK_REQUIRE_HTTPS", "false"),
            ("SKYHOOK_ALLOW_LOOPBACK", "1"),
            ("SKYHOOK_RETRY_SCHEDULE", "1s,2s"),
            ("SKYHOOK_RETRY_JITTER", "0"),
            ("INGEST_QUEUE_URL", "https://sqs/ingest"),
            ("ORDERED_DELIVERIES_QUEUE_URL", " https://sqs/ordered.fifo "),
        ]);
        let c = config(&vars).unwrap();
        assert!(!c.require_https && c.allow_loopback);
        assert_eq!(c.retry_schedule, RetrySchedule::parse("1s,2s", 0.0).unwrap());
        assert_eq!(c.require_ingest_queue_url(), Ok("https://sqs/ingest"));
        assert_eq!(c.ordered_deliveries_queue_url.as_deref(), Some("https://sqs/ordered.fifo"));
        let sc = c.service_config();
        assert!(sc.address_policy.allow_loopback && !sc.require_https);
    }

    #[test]
    fn given_invalid_values_then_the_error_names_the_variable() {
        for (name, value) in [
            ("SKYHOOK_REQUIRE_HTTPS", "maybe"),
            ("SKYHOOK_ALLOW_LOOPBACK", "2"),
            ("SKYHOOK_RETRY_SCHEDULE", "5 parsecs"),
            ("SKYHOOK_RETRY_JITTER", "0.9"),
        ] {
            let mut vars = BASE.to_vec();
            vars.push((name, value));
            let err = config(&vars).unwrap_err();
            assert!(matches!(&err, ConfigError::Invalid { name: n, .. } if *n == name), "{err}");
            assert!(err.to_string().contains(name));
        }
    }
}
