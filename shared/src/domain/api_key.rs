use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Id, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    #[serde(rename = "events:write")]
    EventsWrite,
    #[serde(rename = "events:read")]
    EventsRead,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::WebhooksWrite, Scope::WebhooksRead, Scope::EventsWrite, Scope::EventsRead];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::WebhooksWrite => "webhooks:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::EventsWrite => "events:write",
            Scope::EventsRead => "events:read",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or(())
    }
}

/// An application's API key. Only the SHA-256 of the key is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: Id,
    pub application_id: Id,
    pub name: String,
    /// First characters of the key, to recognise it in a list.
    pub prefix: String,
    pub last4: String,
    #[serde(skip_serializing)]
    pub key_hash: String,
    pub scopes: Vec<Scope>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
}

impl ApiKey {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}
