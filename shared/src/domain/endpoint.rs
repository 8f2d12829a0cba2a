use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::controls::{DeliveryControls, SigningKeys};
use super::{Id, Timestamp};

/// What the endpoint receives as the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum PayloadFormat {
    /// Standard Webhooks envelope `{"type","timestamp","data"}`.
    #[default]
    Standard,
    /// The published payload as is.
    Raw,
}

/// A customer URL subscribed to some (or all) of an application's event types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub id: Id,
    pub application_id: Id,
    pub url: String,
    pub description: Option<String>,
    /// Event types delivered here; empty = all.
    pub event_types: Vec<String>,
    pub headers: BTreeMap<String, String>,
    pub max_attempts: u32,
    pub timeout_secs: u32,
    pub payload_format: PayloadFormat,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Signing secret, encrypted with the data key (`crypto::SecretBox`).
    #[serde(skip)]
    pub secret_encrypted: String,
    pub secret_last4: String,
    /// Rotated-out secret that keeps signing until `previous_secret_expires_at`.
    #[serde(skip)]
    pub previous_secret_encrypted: Option<String>,
    #[serde(skip)]
    pub previous_secret_expires_at: Option<Timestamp>,
    /// Set at the first failed attempt after a success; cleared by a success.
    /// Drives the auto-disable rule.
    #[serde(skip)]
    pub failing_since: Option<Timestamp>,
    #[serde(flatten)]
    pub controls: DeliveryControls,
    #[serde(skip)]
    pub signing_keys: SigningKeys,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl Endpoint {
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}
