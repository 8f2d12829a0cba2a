//! Customer-portal sessions: a short-lived link an application hands to one
//! of its customers, showing only that customer's endpoints.
//!
//! The token is an HS256 JWT like the OAuth access tokens (same key, same
//! claims) plus `aud: "skyhook-portal"` and a `portal` claim listing the
//! endpoint ids. Authenticating with it yields an [`AppPrincipal`] whose
//! `endpoint_ids` restrict it; revoking the API key that created the session
//! revokes the session at once.
//!
//! [`AppPrincipal`]: super::AppPrincipal

use serde::Serialize;

use super::auth::{Claims, ISSUER, PORTAL_AUDIENCE};
use super::{Principal, ServiceError, ServiceResult, Skyhook, Violations};
use crate::domain::{Id, IdKind, Scope, Timestamp};

/// Endpoints one session may cover.
pub const MAX_PORTAL_ENDPOINTS: usize = 50;
pub const MIN_PORTAL_TTL_SECS: u32 = 60;
pub const MAX_PORTAL_TTL_SECS: u32 = 86_400;
pub const DEFAULT_PORTAL_TTL_SECS: u32 = 3_600;

/// `POST /v1/portal/sessions` as sent.
#[derive(Debug, Clone, Default)]
pub struct PortalSessionRequest {
    pub endpoint_ids: Option<Vec<String>>,
    pub ttl_seconds: Option<u32>,
}

/// The session: `url` is relative to the console's origin.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortalSession {
    pub token: String,
    pub url: String,
    pub expires_at: Timestamp,
    pub endpoint_ids: Vec<Id>,
}

impl Skyhook {
    /// A portal session for endpoints of the caller's application (scope
    /// `webhooks:write`). The session carries the creating key's scopes, so
    /// it can never do more than that key.
    pub async fn create_portal_session(
        &self,
        who: &Principal,
        request: PortalSessionRequest,
    ) -> ServiceResult<PortalSession> {
        let app = who.require(Scope::WebhooksWrite)?;
        let mut v = Violations::new();
        let ttl = request.ttl_seconds.unwrap_or(DEFAULT_PORTAL_TTL_SECS);
        v.check(
            (MIN_PORTAL_TTL_SECS..=MAX_PORTAL_TTL_SECS).contains(&ttl),
            "ttlSeconds",
            format!("must be between {MIN_PORTAL_TTL_SECS} and {MAX_PORTAL_TTL_SECS}"),
        );
        let raw_ids = request.endpoint_ids.unwrap_or_default();
        let mut endpoint_ids: Vec<Id> = Vec::with_capacity(raw_ids.len());
        if raw_ids.is_empty() {
            v.add("endpointIds", "is required: list 1 to 50 endpoint ids");
        } else if raw_ids.len() > MAX_PORTAL_ENDPOINTS {
            v.add("endpointIds", format!("must have at most {MAX_PORTAL_ENDPOINTS} entries"));
        } else {
            for (i, raw) in raw_ids.iter().enumerate() {
                let field = format!("endpointIds[{i}]");
                let Some(id) = Id::parse(IdKind::Endpoint, raw) else {
                    v.add(field, "must be an endpoint id (ep_…)");
                    continue;
                };
                match self.store.get_endpoint(&app.application_id, &id).await? {
                    Some(_) if !endpoint_ids.contains(&id) => endpoint_ids.push(id),
                    Some(_) => {}
                    None => v.add(field, format!("no endpoint {id} in this application")),
                }
            }
        }
        v.into_result()?;
        let now = self.clock.now();
        // Whole seconds, as in the token's `exp`.
        let expires_at = chrono::DateTime::from_timestamp(now.timestamp() + i64::from(ttl), 0)
            .ok_or_else(|| ServiceError::Internal("portal expiry out of range".into()))?;
        let scope = app.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
        let claims = Claims {
            iss: ISSUER.into(),
            sub: app.key_id.to_string(),
            app: app.application_id.to_string(),
            scope,
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            aud: Some(PORTAL_AUDIENCE.into()),
            portal: Some(endpoint_ids.iter().map(Id::to_string).collect()),
        };
        let token = self.sign_claims(&claims)?;
        Ok(PortalSession { url: format!("/?portal={token}"), token, expires_at, endpoint_ids })
    }
}
