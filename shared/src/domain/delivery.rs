use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Id, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryStatus {
    Pending,
    Retrying,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "retrying" => Some(DeliveryStatus::Retrying),
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, DeliveryStatus::Succeeded | DeliveryStatus::Failed)
    }
}

/// Why an attempt got no HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Timeout,
    Dns,
    Connect,
    Tls,
    /// The destination resolves to an address Skyhook refuses to call (SSRF).
    Blocked,
    /// The endpoint answered 3xx; redirects are not followed.
    Redirect,
    /// The connection broke while sending or reading.
    Io,
    /// The endpoint was disabled before this delivery was sent.
    EndpointDisabled,
    /// The endpoint or event was deleted before this delivery was sent.
    EndpointDeleted,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Timeout => "timeout",
            ErrorCode::Dns => "dns",
            ErrorCode::Connect => "connect",
            ErrorCode::Tls => "tls",
            ErrorCode::Blocked => "blocked",
            ErrorCode::Redirect => "redirect",
            ErrorCode::Io => "io",
            ErrorCode::EndpointDisabled => "endpoint_disabled",
            ErrorCode::EndpointDeleted => "endpoint_deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ErrorCode::Timeout,
            ErrorCode::Dns,
            ErrorCode::Connect,
            ErrorCode::Tls,
            ErrorCode::Blocked,
            ErrorCode::Redirect,
            ErrorCode::Io,
            ErrorCode::EndpointDisabled,
            ErrorCode::EndpointDeleted,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HTTP status an endpoint answered, or the error code when it did not.
/// Serialised as a number or a string: `503` or `"timeout"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ResponseStatus {
    Http(u16),
    Error(ErrorCode),
}

impl ResponseStatus {
    /// Storage form: `"503"` or `"timeout"`.
    pub fn to_stored(self) -> String {
        match self {
            ResponseStatus::Http(code) => code.to_string(),
            ResponseStatus::Error(code) => code.as_str().to_string(),
        }
    }

    pub fn from_stored(s: &str) -> Option<Self> {
        s.parse::<u16>().ok().map(ResponseStatus::Http).or_else(|| ErrorCode::parse(s).map(ResponseStatus::Error))
    }
}

/// An error attached to an attempt: a code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptError {
    pub code: ErrorCode,
    pub message: String,
}

/// One event going to one endpoint, across all its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: Id,
    pub application_id: Id,
    pub event_id: Id,
    pub endpoint_id: Id,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub response_status: Option<ResponseStatus>,
    pub response_body: Option<String>,
    pub error_message: Option<String>,
    /// Signature timestamp of the latest attempt (unix seconds).
    pub timestamp_sent: Option<i64>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    /// The delivery this one re-sends (manual retry).
    pub retry_of: Option<Id>,
    /// The manual retry that superseded this delivery.
    pub retried_by: Option<Id>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

/// The record of one try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    pub id: Id,
    #[serde(skip_serializing)]
    pub application_id: Id,
    pub delivery_id: Id,
    pub number: u32,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    pub duration_ms: u64,
    pub response_status: ResponseStatus,
    /// First 4 KiB of the response body.
    pub response: Option<String>,
    pub error: Option<String>,
    /// Delay scheduled before the next attempt; `None` when this was the last.
    pub next_delay_secs: Option<u64>,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

impl Delivery {
    /// Whether its outcome counts on its event. A replay's deliveries
    /// (`retry_of` is the replay's `rpl_` id) do not: the event's outcome
    /// stays that of its fan-out.
    pub fn counts_on_event(&self) -> bool {
        !made_by_replay(self.retry_of.as_ref().map(|id| id.as_str()))
    }
}

/// `retry_of` names a replay (`rpl_…`) rather than a delivery.
pub fn made_by_replay(retry_of: Option<&str>) -> bool {
    retry_of.is_some_and(|id| id.starts_with("rpl_"))
}
