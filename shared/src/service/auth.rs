//! Who is calling: the admin token, an API key, an OAuth access token
//! issued for an API key, or a customer-portal session token (see
//! `portal.rs`). Revocation is checked on every call.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{ServiceError, ServiceResult, Skyhook};
use crate::crypto::{constant_time_eq, sha256_hex};
use crate::domain::{ApiKey, Id, IdKind, Scope, Timestamp};

/// How stale an API key's `last_used_at` may be.
pub const KEY_USE_RESOLUTION: chrono::Duration = chrono::Duration::seconds(60);
/// Keys remembered by [`KeyUse`] before the stale ones are dropped.
const KEY_USE_MAX_ENTRIES: usize = 10_000;

/// Which keys this process recorded a use of, and when: the stored key may
/// be read from a cache (or by many concurrent requests) before the first
/// write lands, and they should not all write.
#[derive(Default)]
pub(crate) struct KeyUse(std::sync::Mutex<std::collections::HashMap<Id, Timestamp>>);

impl KeyUse {
    /// `true` when the caller should record a use at `now`.
    fn claim(&self, key: &Id, now: Timestamp) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.get(key).is_some_and(|at| now - *at < KEY_USE_RESOLUTION) {
            return false;
        }
        if seen.len() >= KEY_USE_MAX_ENTRIES {
            seen.retain(|_, at| now - *at < KEY_USE_RESOLUTION);
        }
        seen.insert(key.clone(), now);
        true
    }
}

/// A credential as presented (`Authorization: Bearer …` or `x-api-key`).
#[derive(Clone)]
pub enum Credential {
    Bearer(String),
    ApiKey(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppPrincipal {
    pub application_id: Id,
    pub key_id: Id,
    pub scopes: Vec<Scope>,
    /// A customer-portal session: only these endpoints, and only the portal's
    /// actions (see [`Principal::require_scoped`]). `None` for API keys and
    /// OAuth access tokens.
    pub endpoint_ids: Option<Vec<Id>>,
}

impl AppPrincipal {
    /// Whether this caller may see and act on the endpoint (always, unless a
    /// portal session that was not issued for it).
    pub fn allows_endpoint(&self, id: &Id) -> bool {
        self.endpoint_ids.as_ref().is_none_or(|ids| ids.contains(id))
    }

    pub fn is_portal(&self) -> bool {
        self.endpoint_ids.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    Admin,
    App(AppPrincipal),
}

impl Principal {
    /// The application this caller may act on, if it has `scope`. Portal
    /// sessions are refused: the few operations they may call use
    /// [`require_scoped`](Self::require_scoped) instead.
    pub fn require(&self, scope: Scope) -> ServiceResult<&AppPrincipal> {
        match self {
            Principal::App(app) if app.is_portal() => Err(portal_forbidden()),
            other => other.require_scoped(scope),
        }
    }

    /// Like [`require`](Self::require), but also admits a portal session; the
    /// caller must then check [`AppPrincipal::allows_endpoint`] for every
    /// endpoint it reads or changes.
    pub fn require_scoped(&self, scope: Scope) -> ServiceResult<&AppPrincipal> {
        match self {
            Principal::App(app) if app.scopes.contains(&scope) => Ok(app),
            Principal::App(_) => Err(ServiceError::Forbidden(format!("this API key lacks the {scope} scope"))),
            Principal::Admin => Err(ServiceError::Forbidden(
                "the admin token manages applications and API keys; use an application API key here".into(),
            )),
        }
    }

    pub fn require_admin(&self) -> ServiceResult<()> {
        match self {
            Principal::Admin => Ok(()),
            Principal::App(_) => Err(ServiceError::Forbidden("this route needs the admin token".into())),
        }
    }
}

pub(super) fn portal_forbidden() -> ServiceError {
    ServiceError::Forbidden(
        "a portal session may only view its endpoints, their stats and deliveries, retry deliveries, send test \
         events and change url, description and isActive"
            .into(),
    )
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Claims {
    pub(super) iss: String,
    pub(super) sub: String,
    pub(super) app: String,
    pub(super) scope: String,
    pub(super) iat: i64,
    pub(super) exp: i64,
    /// `PORTAL_AUDIENCE` on portal session tokens only, so a verifier that
    /// does not know the `portal` claim rejects them instead of granting the
    /// whole application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) aud: Option<String>,
    /// The endpoint ids a portal session is restricted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) portal: Option<Vec<String>>,
}

pub(super) const ISSUER: &str = "skyhook";
pub(super) const PORTAL_AUDIENCE: &str = "skyhook-portal";

/// An OAuth2 access token (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
}

fn unauthorized() -> ServiceError {
    ServiceError::Unauthorized("missing, invalid or revoked credentials".into())
}

impl Skyhook {
    pub async fn authenticate(&self, credential: Option<Credential>) -> ServiceResult<Principal> {
        let token = match credential {
            None => {
                return Err(ServiceError::Unauthorized("send an API key as x-api-key or Authorization: Bearer".into()));
            }
            Some(Credential::Bearer(t)) | Some(Credential::ApiKey(t)) => t,
        };
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            return Ok(Principal::Admin);
        }
        if token.starts_with("eyJ") && token.matches('.').count() == 2 {
            return self.authenticate_access_token(&token).await;
        }
        let key = self.store.find_api_key_by_hash(&sha256_hex(token.as_bytes())).await?.ok_or_else(unauthorized)?;
        if key.is_revoked() {
            return Err(unauthorized());
        }
        self.note_key_used(&key).await;
        Ok(Principal::App(AppPrincipal {
            application_id: key.application_id,
            key_id: key.id,
            scopes: key.scopes,
            endpoint_ids: None,
        }))
    }

    /// Keeps `last_used_at` to within [`KEY_USE_RESOLUTION`]: at most one
    /// write per key and interval from this process, none on most requests.
    /// A failed write does not fail the request.
    async fn note_key_used(&self, key: &ApiKey) {
        let now = self.clock.now();
        if key.last_used_at.is_some_and(|at| now - at < KEY_USE_RESOLUTION) {
            return;
        }
        if !self.key_use.claim(&key.id, now) {
            return;
        }
        if let Err(err) = self.store.touch_api_key(key, now).await {
            tracing::warn!(error = %err, key_id = %key.id, "could not record the API key's last use");
        }
    }

    async fn authenticate_access_token(&self, token: &str) -> ServiceResult<Principal> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        // Expiry is checked against the injected clock, not the system's.
        validation.validate_exp = false;
        // The audience is checked below: none for access tokens, the portal's for portal sessions.
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&self.jwt_key), &validation)
            .map_err(|_| unauthorized())?
            .claims;
        let portal = match (claims.aud.as_deref(), &claims.portal) {
            (None, None) => None,
            (Some(PORTAL_AUDIENCE), Some(ids)) => Some(
                ids.iter()
                    .map(|id| Id::parse(IdKind::Endpoint, id).ok_or_else(unauthorized))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => return Err(unauthorized()),
        };
        if claims.exp <= self.clock.now().timestamp() {
            return Err(ServiceError::Unauthorized(match portal {
                Some(_) => "the portal session has expired".into(),
                None => "the access token has expired".into(),
            }));
        }
        let key_id = Id::parse(IdKind::ApiKey, &claims.sub).ok_or_else(unauthorized)?;
        // Revoking the key revokes its tokens at once.
        let key = self.store.get_api_key(&key_id).await?.ok_or_else(unauthorized)?;
        if key.is_revoked() || key.application_id.as_str() != claims.app {
            return Err(unauthorized());
        }
        let scopes = claims
            .scope
            .split(' ')
            .filter_map(|s| s.parse::<Scope>().ok())
            .filter(|s| key.scopes.contains(s))
            .collect();
        Ok(Principal::App(AppPrincipal {
            application_id: key.application_id,
            key_id: key.id,
            scopes,
            endpoint_ids: portal,
        }))
    }

    /// OAuth2 client credentials: client id = API key id, secret = the key.
    pub async fn issue_access_token(
        &self,
        client_id: &str,
        client_secret: &str,
        requested_scope: Option<&str>,
    ) -> ServiceResult<AccessToken> {
        let invalid_client = || ServiceError::Unauthorized("invalid_client: unknown client or wrong secret".into());
        let key_id = Id::parse(IdKind::ApiKey, client_id).ok_or_else(invalid_client)?;
        let key: ApiKey = self.store.get_api_key(&key_id).await?.ok_or_else(invalid_client)?;
        if key.is_revoked()
            || !constant_time_eq(sha256_hex(client_secret.as_bytes()).as_bytes(), key.key_hash.as_bytes())
        {
            return Err(invalid_client());
        }
        let scopes: Vec<Scope> = match requested_scope.map(str::trim).filter(|s| !s.is_empty()) {
            None => key.scopes.clone(),
            Some(requested) => {
                let mut scopes = Vec::new();
                for name in requested.split(' ').filter(|s| !s.is_empty()) {
                    match name.parse::<Scope>() {
                        Ok(scope) if key.scopes.contains(&scope) => scopes.push(scope),
                        _ => {
                            return Err(ServiceError::field(
                                "scope",
                                format!("invalid_scope: {name} is not a scope of this key"),
                            ));
                        }
                    }
                }
                scopes
            }
        };
        let now = self.clock.now().timestamp();
        let ttl = self.config.token_ttl.as_secs();
        let scope = scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
        let claims = Claims {
            iss: ISSUER.into(),
            sub: key.id.to_string(),
            app: key.application_id.to_string(),
            scope: scope.clone(),
            iat: now,
            exp: now + ttl as i64,
            aud: None,
            portal: None,
        };
        let access_token = self.sign_claims(&claims)?;
        Ok(AccessToken { access_token, token_type: "Bearer", expires_in: ttl, scope })
    }

    /// An HS256 JWT under the JWT key of the secret.
    pub(super) fn sign_claims(&self, claims: &Claims) -> ServiceResult<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(&self.jwt_key))
            .map_err(|e| ServiceError::Internal(format!("cannot sign token: {e}")))
    }
}
