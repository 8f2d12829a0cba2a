use serde::{Deserialize, Serialize};

use super::{Id, Timestamp};

/// Aggregate state of an event's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum EventStatus {
    /// Accepted; fan-out not done yet or deliveries still in progress.
    Pending,
    /// Every delivery succeeded (or no endpoint matched).
    Succeeded,
    /// At least one delivery exhausted its attempts.
    Failed,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Succeeded => "succeeded",
            EventStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(EventStatus::Pending),
            "succeeded" => Some(EventStatus::Succeeded),
            "failed" => Some(EventStatus::Failed),
            _ => None,
        }
    }
}

/// A published event. Immutable once written, apart from its delivery counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: Id,
    pub application_id: Id,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub idempotency_key: Option<String>,
    /// SHA-256 of the publish request, to tell a true repeat from a key reused
    /// with another body.
    #[serde(skip)]
    pub request_hash: String,
    /// Deliver only to this endpoint (endpoint test events).
    pub target_endpoint_id: Option<Id>,
    pub status: EventStatus,
    /// `false` until fan-out has created its deliveries.
    pub fanned_out: bool,
    pub delivery_count: u32,
    pub succeeded_count: u32,
    pub failed_count: u32,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

impl Event {
    /// Status derived from the counters, so every backend agrees on it.
    pub fn derive_status(&self) -> EventStatus {
        if !self.fanned_out || self.succeeded_count + self.failed_count < self.delivery_count {
            EventStatus::Pending
        } else if self.failed_count > 0 {
            EventStatus::Failed
        } else {
            EventStatus::Succeeded
        }
    }
}
