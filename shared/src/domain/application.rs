use serde::{Deserialize, Serialize};

use super::{Id, Timestamp};

/// A tenant: one product team's webhook space. Everything else belongs to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub id: Id,
    pub name: String,
    /// Days events, deliveries and attempts are kept (1–90).
    #[schema(minimum = 1, maximum = 90)]
    pub retention_days: u32,
    /// Publishes per second allowed for this application; `None` = unlimited.
    pub rate_limit: Option<u32>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}
