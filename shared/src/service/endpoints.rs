use std::collections::BTreeMap;

use serde::Serialize;

use super::auth::portal_forbidden;
use super::controls::CircuitStatus;
use super::{
    AppPrincipal, ListPage, ListQuery, Principal, Published, ServiceError, ServiceResult, Skyhook, Violations, validate,
};
use crate::crypto::SecretBox;
use crate::domain::limits::*;
use crate::domain::{
    CircuitBreakerSettings, DeliveryControls, Endpoint, Id, IdKind, PayloadFormat, Scope, SignatureScheme, Timestamp,
};
use crate::filter::PayloadFilter;
use crate::ports::{EndpointFilter, EndpointStats, Page, StoreError};
use crate::signing::{decode_secret, ed25519_public_key, generate_ed25519_key, generate_secret};
use crate::ssrf::check_url_at_create;

/// A whole endpoint as sent to create (POST) or replace (PUT).
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub max_attempts: Option<u32>,
    pub timeout_secs: Option<u32>,
    pub payload_format: Option<PayloadFormat>,
    pub is_active: Option<bool>,
    /// A `whsec_` secret to use instead of a generated one (create only).
    pub secret: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub controls: ControlsPatch,
}

/// Changes to an endpoint's delivery controls; `None` leaves a field as it
/// is (on create and PUT: its default), `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ControlsPatch {
    pub ordered: Option<bool>,
    pub rate_limit: Option<Option<u32>>,
    pub circuit_breaker: Option<CircuitBreakerPatch>,
    pub filter: Option<Option<PayloadFilter>>,
    pub signature_schemes: Option<Vec<SignatureScheme>>,
}

/// The breaker fields given; the others keep their values.
#[derive(Debug, Clone, Default)]
pub struct CircuitBreakerPatch {
    pub enabled: Option<bool>,
    pub failure_ratio: Option<f64>,
    pub min_requests: Option<u32>,
    pub window_secs: Option<u32>,
    pub open_secs: Option<u32>,
}

/// `GET /v1/endpoints/{id}/stats`: the counts, and the controls' live state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatsView {
    #[serde(flatten)]
    pub stats: EndpointStats,
    pub circuit: CircuitStatus,
    /// The endpoint's rate limit (deliveries per second), if any.
    pub rate_limit: Option<u32>,
    pub ordered: bool,
}

/// The fields a PATCH changes; `description: Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<String>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub max_attempts: Option<u32>,
    pub timeout_secs: Option<u32>,
    pub payload_format: Option<PayloadFormat>,
    pub is_active: Option<bool>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub controls: ControlsPatch,
}

/// The only responses that carry the signing secret: create and rotate.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub secret: String,
}

#[derive(Debug, Clone, Default)]
pub struct TestEvent {
    pub event_type: Option<String>,
    pub payload: Option<serde_json::Value>,
}

pub const TEST_EVENT_TYPE: &str = "webhook.test";

impl Skyhook {
    async fn check_endpoint_fields(&self, v: &mut Violations, app_id: &Id, patch: &EndpointPatch) -> ServiceResult<()> {
        if let Some(url) = &patch.url
            && let Err(rejection) = check_url_at_create(url, self.config.require_https, &self.config.address_policy)
        {
            v.add("url", rejection.to_string());
        }
        if let Some(Some(description)) = &patch.description {
            validate::description(v, "description", Some(description));
        }
        if let Some(headers) = &patch.headers {
            validate::custom_headers(v, "headers", headers);
        }
        if let Some(metadata) = &patch.metadata {
            validate::metadata(v, "metadata", metadata);
        }
        validate::in_range(v, "maxAttempts", patch.max_attempts, 1, MAX_MAX_ATTEMPTS);
        check_controls(v, &patch.controls);
        validate::in_range(v, "timeoutSecs", patch.timeout_secs, 1, MAX_TIMEOUT_SECS);
        if let Some(types) = &patch.event_types {
            if types.len() > MAX_EVENT_TYPES_PER_ENDPOINT {
                v.add("eventTypes", format!("must have at most {MAX_EVENT_TYPES_PER_ENDPOINT} entries"));
                return Ok(());
            }
            for (i, name) in types.iter().enumerate() {
                let field = format!("eventTypes[{i}]");
                match self.store.get_event_type(app_id, name).await? {
                    Some(_) => {}
                    None => v.add(field, format!("unknown event type {name:?}; create it first")),
                }
            }
        }
        Ok(())
    }

    /// The caller's endpoint; one a portal session was not issued for is not found.
    pub(crate) async fn find_endpoint(&self, app: &AppPrincipal, id: &str) -> ServiceResult<Endpoint> {
        let id = Id::parse(IdKind::Endpoint, id)
            .filter(|id| app.allows_endpoint(id))
            .ok_or(ServiceError::NotFound("endpoint"))?;
        self.store.get_endpoint(&app.application_id, &id).await?.ok_or(ServiceError::NotFound("endpoint"))
    }

    /// A portal session's endpoints (at most 50): read one by one, newest
    /// first, paged in memory with their own cursors.
    async fn list_portal_endpoints(
        &self,
        app: &AppPrincipal,
        allowed: &[Id],
        filter: &EndpointFilter,
        query: &ListQuery,
    ) -> ServiceResult<ListPage<Endpoint>> {
        const LIST: &str = "portal-endpoints";
        let tenant = app.application_id.as_str();
        let page = self.page_request(query, tenant, LIST)?;
        let mut items = Vec::with_capacity(allowed.len());
        for id in allowed {
            if page.after.as_deref().is_some_and(|after| id.as_str() >= after) {
                continue;
            }
            if let Some(endpoint) = self.store.get_endpoint(&app.application_id, id).await?
                && filter.is_active.is_none_or(|active| endpoint.is_active == active)
                && filter.event_type.as_deref().is_none_or(|t| endpoint.subscribes_to(t))
            {
                items.push(endpoint);
            }
        }
        items.sort_by(|a, b| b.id.cmp(&a.id));
        let next = if items.len() > page.limit {
            items.truncate(page.limit);
            items.last().map(|e| e.id.to_string())
        } else {
            None
        };
        Ok(self.list_page(Page { items, next }, tenant, LIST, |e| e))
    }

    pub async fn create_endpoint(&self, who: &Principal, input: EndpointInput) -> ServiceResult<CreatedEndpoint> {
        let app = who.require(Scope::WebhooksWrite)?;
        let mut v = Violations::new();
        if input.url.is_empty() {
            v.add("url", "is required");
        }
        if let Some(secret) = &input.secret
            && decode_secret(secret).is_err()
        {
            v.add("secret", "must be whsec_ followed by base64 of 24 to 64 bytes");
        }
        let fields = EndpointPatch {
            url: Some(input.url.clone()).filter(|u| !u.is_empty()),
            description: Some(input.description.clone()),
            event_types: input.event_types.clone(),
            headers: input.headers.clone(),
            max_attempts: input.max_attempts,
            timeout_secs: input.timeout_secs,
            payload_format: input.payload_format,
            is_active: input.is_active,
            metadata: input.metadata.clone(),
            controls: input.controls.clone(),
        };
        self.check_endpoint_fields(&mut v, &app.application_id, &fields).await?;
        v.into_result()?;
        let secret = input.secret.unwrap_or_else(generate_secret);
        let now = self.clock.now();
        let mut event_types = input.event_types.unwrap_or_default();
        event_types.sort();
        event_types.dedup();
        let endpoint = Endpoint {
            id: Id::new(IdKind::Endpoint, now),
            application_id: app.application_id.clone(),
            url: input.url,
            description: input.description,
            event_types,
            headers: input.headers.unwrap_or_default(),
            max_attempts: input.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            timeout_secs: input.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS),
            payload_format: input.payload_format.unwrap_or_default(),
            is_active: input.is_active.unwrap_or(true),
            disabled_reason: None,
            metadata: input.metadata.unwrap_or_default(),
            secret_encrypted: self.secret_box.seal(&secret),
            secret_last4: last4(&secret),
            previous_secret_encrypted: None,
            previous_secret_expires_at: None,
            failing_since: None,
            controls: Default::default(),
            signing_keys: Default::default(),
            created_at: now,
            updated_at: now,
        };
        let mut endpoint = endpoint;
        apply_controls(&mut endpoint, &input.controls, &self.secret_box);
        self.store.create_endpoint(&endpoint).await?;
        Ok(CreatedEndpoint { endpoint, secret })
    }

    pub async fn list_endpoints(
        &self,
        who: &Principal,
        filter: EndpointFilter,
        query: &ListQuery,
    ) -> ServiceResult<ListPage<Endpoint>> {
        let app = who.require_scoped(Scope::WebhooksRead)?;
        if let Some(allowed) = &app.endpoint_ids {
            return self.list_portal_endpoints(app, allowed, &filter, query).await;
        }
        let tenant = app.application_id.as_str();
        let page = self.page_request(query, tenant, "endpoints")?;
        let found = self.store.list_endpoints(&app.application_id, &filter, &page).await?;
        Ok(self.list_page(found, tenant, "endpoints", |e| e))
    }

    pub async fn get_endpoint(&self, who: &Principal, id: &str) -> ServiceResult<Endpoint> {
        let app = who.require_scoped(Scope::WebhooksRead)?;
        self.find_endpoint(app, id).await
    }

    /// PUT: every field takes the given value or its default.
    pub async fn replace_endpoint(&self, who: &Principal, id: &str, input: EndpointInput) -> ServiceResult<Endpoint> {
        // Not for portal sessions: a PUT resets every field.
        who.require(Scope::WebhooksWrite)?;
        if input.secret.is_some() {
            return Err(ServiceError::field(
                "secret",
                "cannot be replaced here; use POST /v1/endpoints/{id}/rotate-secret",
            ));
        }
        if input.url.is_empty() {
            return Err(ServiceError::field("url", "is required"));
        }
        let patch = EndpointPatch {
            url: Some(input.url),
            description: Some(input.description),
            event_types: Some(input.event_types.unwrap_or_default()),
            headers: Some(input.headers.unwrap_or_default()),
            max_attempts: Some(input.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)),
            timeout_secs: Some(input.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS)),
            payload_format: Some(input.payload_format.unwrap_or_default()),
            is_active: Some(input.is_active.unwrap_or(true)),
            metadata: Some(input.metadata.unwrap_or_default()),
            controls: controls_or_defaults(input.controls),
        };
        self.update_endpoint(who, id, patch).await
    }

    pub async fn update_endpoint(&self, who: &Principal, id: &str, patch: EndpointPatch) -> ServiceResult<Endpoint> {
        let app = who.require_scoped(Scope::WebhooksWrite)?;
        if app.is_portal()
            && (patch.event_types.is_some()
                || patch.headers.is_some()
                || patch.max_attempts.is_some()
                || patch.timeout_secs.is_some()
                || patch.payload_format.is_some()
                || patch.metadata.is_some())
        {
            return Err(portal_forbidden());
        }
        let mut v = Violations::new();
        self.check_endpoint_fields(&mut v, &app.application_id, &patch).await?;
        v.into_result()?;
        let secret_box = &self.secret_box;
        self.modify_endpoint(app, id, |endpoint| {
            apply_controls(endpoint, &patch.controls, secret_box);
            apply_patch(endpoint, patch.clone());
        })
        .await
    }

    /// Read, change, write back only if nobody wrote in between (a PATCH, a
    /// rotation, the dispatcher disabling it); on a race, read again.
    async fn modify_endpoint(
        &self,
        app: &AppPrincipal,
        id: &str,
        change: impl Fn(&mut Endpoint),
    ) -> ServiceResult<Endpoint> {
        const TRIES: usize = 5;
        for _ in 0..TRIES {
            let mut endpoint = self.find_endpoint(app, id).await?;
            let expected = endpoint.updated_at;
            change(&mut endpoint);
            // Strictly later than what was read, so the next writer's check is meaningful.
            endpoint.updated_at = self.clock.now().max(expected + chrono::Duration::nanoseconds(1));
            match self.store.update_endpoint(&endpoint, expected).await {
                Ok(true) => return Ok(endpoint),
                Ok(false) => return Err(ServiceError::NotFound("endpoint")),
                Err(StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ServiceError::Conflict("the endpoint is being changed concurrently; try again".into()))
    }
}

fn apply_patch(endpoint: &mut Endpoint, patch: EndpointPatch) {
    {
        if let Some(url) = patch.url {
            endpoint.url = url;
        }
        if let Some(description) = patch.description {
            endpoint.description = description;
        }
        if let Some(mut types) = patch.event_types {
            types.sort();
            types.dedup();
            endpoint.event_types = types;
        }
        if let Some(headers) = patch.headers {
            endpoint.headers = headers;
        }
        if let Some(n) = patch.max_attempts {
            endpoint.max_attempts = n;
        }
        if let Some(n) = patch.timeout_secs {
            endpoint.timeout_secs = n;
        }
        if let Some(format) = patch.payload_format {
            endpoint.payload_format = format;
        }
        if let Some(metadata) = patch.metadata {
            endpoint.metadata = metadata;
        }
        if let Some(active) = patch.is_active {
            if active && !endpoint.is_active {
                // Re-enabling starts a fresh failure streak.
                endpoint.disabled_reason = None;
                endpoint.failing_since = None;
            }
            if !active && endpoint.is_active {
                endpoint.disabled_reason = Some("disabled by the application".into());
            }
            endpoint.is_active = active;
        }
    }
}

impl Skyhook {
    pub async fn delete_endpoint(&self, who: &Principal, id: &str) -> ServiceResult<()> {
        let app = who.require(Scope::WebhooksWrite)?;
        let endpoint = self.find_endpoint(app, id).await?;
        if !self.store.delete_endpoint(&app.application_id, &endpoint.id).await? {
            return Err(ServiceError::NotFound("endpoint"));
        }
        Ok(())
    }

    /// New secret; the old one keeps signing (second signature) for 24 h.
    pub async fn rotate_endpoint_secret(
        &self,
        who: &Principal,
        id: &str,
        new_secret: Option<String>,
    ) -> ServiceResult<CreatedEndpoint> {
        let app = who.require(Scope::WebhooksWrite)?;
        if let Some(secret) = &new_secret
            && decode_secret(secret).is_err()
        {
            return Err(ServiceError::field("secret", "must be whsec_ followed by base64 of 24 to 64 bytes"));
        }
        let secret = new_secret.unwrap_or_else(generate_secret);
        let sealed = self.secret_box.seal(&secret);
        let overlap_until = self.clock.now() + chrono::Duration::hours(SECRET_ROTATION_OVERLAP_HOURS);
        let endpoint = self
            .modify_endpoint(app, id, |endpoint| {
                endpoint.previous_secret_encrypted =
                    Some(std::mem::replace(&mut endpoint.secret_encrypted, sealed.clone()));
                endpoint.previous_secret_expires_at = Some(overlap_until);
                endpoint.secret_last4 = last4(&secret);
                if endpoint.signing_keys.ed25519_encrypted.is_some() {
                    // A new key pair too; the old key signs beside it as long as the old secret does.
                    let (sealed, public) = new_ed25519_key(&self.secret_box);
                    let keys = &mut endpoint.signing_keys;
                    keys.previous_ed25519_encrypted = keys.ed25519_encrypted.replace(sealed);
                    endpoint.controls.public_key = Some(public);
                }
            })
            .await?;
        Ok(CreatedEndpoint { endpoint, secret })
    }

    /// Publishes an event delivered to this endpoint only.
    pub async fn send_test_event(&self, who: &Principal, id: &str, test: TestEvent) -> ServiceResult<Published> {
        let app = who.require_scoped(Scope::WebhooksWrite)?;
        let endpoint = self.find_endpoint(app, id).await?;
        let event_type = test.event_type.unwrap_or_else(|| TEST_EVENT_TYPE.to_string());
        let mut v = Violations::new();
        validate::event_type_name(&mut v, "eventType", &event_type);
        v.into_result()?;
        let payload = test.payload.unwrap_or_else(
            || serde_json::json!({ "message": "This is a test webhook from Skyhook.", "endpointId": endpoint.id }),
        );
        self.publish_checked(&app.application_id, event_type, payload, None, Some(endpoint.id), false).await
    }

    pub async fn endpoint_stats(
        &self,
        who: &Principal,
        id: &str,
        since: Option<Timestamp>,
    ) -> ServiceResult<EndpointStatsView> {
        let app = who.require_scoped(Scope::WebhooksRead)?;
        let endpoint = self.find_endpoint(app, id).await?;
        let since = since.unwrap_or_else(|| self.clock.now() - chrono::Duration::hours(24));
        let mut stats = self.store.endpoint_stats(&app.application_id, &endpoint.id, since).await?;
        stats.since = Some(since);
        let circuit = self.circuit_status(&endpoint).await?;
        Ok(EndpointStatsView {
            stats,
            circuit,
            rate_limit: endpoint.controls.rate_limit,
            ordered: endpoint.controls.ordered,
        })
    }
}

/// PUT: controls not given take their defaults.
fn controls_or_defaults(given: ControlsPatch) -> ControlsPatch {
    let defaults = DeliveryControls::default();
    let breaker = CircuitBreakerSettings::default();
    let given_breaker = given.circuit_breaker.unwrap_or_default();
    ControlsPatch {
        ordered: Some(given.ordered.unwrap_or(defaults.ordered)),
        rate_limit: Some(given.rate_limit.flatten()),
        circuit_breaker: Some(CircuitBreakerPatch {
            enabled: Some(given_breaker.enabled.unwrap_or(breaker.enabled)),
            failure_ratio: Some(given_breaker.failure_ratio.unwrap_or(breaker.failure_ratio)),
            min_requests: Some(given_breaker.min_requests.unwrap_or(breaker.min_requests)),
            window_secs: Some(given_breaker.window_secs.unwrap_or(breaker.window_secs)),
            open_secs: Some(given_breaker.open_secs.unwrap_or(breaker.open_secs)),
        }),
        filter: Some(given.filter.flatten()),
        signature_schemes: Some(given.signature_schemes.unwrap_or(defaults.signature_schemes)),
    }
}

fn check_controls(v: &mut Violations, controls: &ControlsPatch) {
    if let Some(Some(rate)) = controls.rate_limit
        && !(1..=MAX_RATE_LIMIT_PER_SEC).contains(&rate)
    {
        v.add("rateLimit", format!("must be between 1 and {MAX_RATE_LIMIT_PER_SEC} deliveries per second, or null"));
    }
    if let Some(breaker) = &controls.circuit_breaker {
        if let Some(ratio) = breaker.failure_ratio
            && !(0.01..=1.0).contains(&ratio)
        {
            v.add("circuitBreaker.failureRatio", "must be between 0.01 and 1");
        }
        validate::in_range(v, "circuitBreaker.minRequests", breaker.min_requests, 1, 10_000);
        validate::in_range(v, "circuitBreaker.windowSecs", breaker.window_secs, 1, 3_600);
        validate::in_range(v, "circuitBreaker.openSecs", breaker.open_secs, 1, 3_600);
    }
    if let Some(schemes) = &controls.signature_schemes
        && schemes.is_empty()
    {
        v.add("signatureSchemes", "must name at least one of v1, v1a");
    }
}

/// A fresh Ed25519 key: (sealed `whsk_` key, public `whpk_` key).
fn new_ed25519_key(secret_box: &SecretBox) -> (String, String) {
    let key = generate_ed25519_key();
    let public = ed25519_public_key(&key).expect("a generated key is valid");
    (secret_box.seal(&key), public)
}

fn apply_controls(endpoint: &mut Endpoint, patch: &ControlsPatch, secret_box: &SecretBox) {
    let controls = &mut endpoint.controls;
    if let Some(ordered) = patch.ordered {
        controls.ordered = ordered;
    }
    if let Some(rate) = patch.rate_limit {
        controls.rate_limit = rate;
    }
    if let Some(breaker) = &patch.circuit_breaker {
        let settings = &mut controls.circuit_breaker;
        settings.enabled = breaker.enabled.unwrap_or(settings.enabled);
        settings.failure_ratio = breaker.failure_ratio.unwrap_or(settings.failure_ratio);
        settings.min_requests = breaker.min_requests.unwrap_or(settings.min_requests);
        settings.window_secs = breaker.window_secs.unwrap_or(settings.window_secs);
        settings.open_secs = breaker.open_secs.unwrap_or(settings.open_secs);
    }
    if let Some(filter) = &patch.filter {
        controls.filter = filter.clone();
    }
    if let Some(schemes) = &patch.signature_schemes {
        let mut schemes = schemes.clone();
        schemes.sort();
        schemes.dedup();
        controls.signature_schemes = schemes;
    }
    // The key pair is made the first time v1a is asked for, and kept if v1a
    // is turned off again (turning it back on keeps the receivers' public key).
    if controls.signs_with(SignatureScheme::Ed25519) && endpoint.signing_keys.ed25519_encrypted.is_none() {
        let (sealed, public) = new_ed25519_key(secret_box);
        endpoint.signing_keys.ed25519_encrypted = Some(sealed);
        controls.public_key = Some(public);
    }
}

fn last4(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}
