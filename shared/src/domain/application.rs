use serde::{Deserialize, Serialize};

use super::{Id, Timestamp};

/// A tenant: one product team's webhook space. Everything else belongs to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub id: Id,
    pub name: String,
    /// Days events, deliveries and attempts are kept (1–90).
    pub retention_days: u32,
    /// Publishes per second allowed for this application; `None` = unlimited.
    pub rate_limit: Option<u32>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
