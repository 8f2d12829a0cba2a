use serde::{Deserialize, Serialize};

use super::{Id, Timestamp};

/// A named kind of event (`invoice.paid`) an application publishes, with an
/// optional JSON Schema its payloads must satisfy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventType {
    #[serde(skip_serializing)]
    pub application_id: Id,
    pub name: String,
    pub description: Option<String>,
    pub schema: Option<serde_json::Value>,
    pub archived: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}
