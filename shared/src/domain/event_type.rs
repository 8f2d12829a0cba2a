use serde::{Deserialize, Serialize};

use super::{Id, Timestamp};

/// A named kind of event (`invoice.paid`) an application publishes, with an
/// optional JSON Schema its payloads must satisfy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventType {
    #[serde(skip_serializing)]
    pub application_id: Id,
    pub name: String,
    pub description: Option<String>,
    pub schema: Option<serde_json::Value>,
    pub archived: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
