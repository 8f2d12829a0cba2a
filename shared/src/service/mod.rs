//! The service layer: every operation of the API, the fan-out and the
//! dispatcher, written against the ports only.

mod api_keys;
mod applications;
mod auth;
pub mod controls;
mod deliveries;
pub mod dispatcher;
mod endpoints;
mod error;
mod event_types;
mod events;
mod fanout;
pub mod metrics;
mod pagination;
mod portal;
mod rate_limit;
pub mod replay;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

pub use api_keys::{CreateApiKey, CreatedApiKey};
pub use applications::{ApplicationPatch, CreateApplication};
pub use auth::{AccessToken, AppPrincipal, Credential, Principal};
pub use controls::{Admission, CircuitState, CircuitStatus};
pub use deliveries::{BulkRetry, BulkRetryResult, DeliveryWithAttempts};
pub use dispatcher::{DeliveryTask, Dispatcher, MessageOutcome};
pub use endpoints::{
    CircuitBreakerPatch, ControlsPatch, CreatedEndpoint, EndpointInput, EndpointPatch, EndpointStatsView, TestEvent,
};
pub use error::{FieldError, ServiceError, ServiceResult, Violations};
pub use event_types::EventTypeInput;
pub use events::{PublishEvent, Published};
pub use fanout::OrderedFanOut;
pub use pagination::{ListPage, ListQuery};
pub use portal::{PortalSession, PortalSessionRequest};
pub use replay::{Replay, ReplayRequest, ReplayStatus, ReplayTask};

use crate::crypto::SecretBox;
use crate::domain::{Application, Id};
use crate::ports::{Clock, Queue, SecretMaterial, Store};
use crate::retry::RetrySchedule;
use crate::ssrf::AddressPolicy;

/// Behaviour that differs between production (Lambda) and local use.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub retry_schedule: RetrySchedule,
    /// Endpoint URLs must be https (production); `skyhook serve` allows http.
    pub require_https: bool,
    pub address_policy: AddressPolicy,
    /// Lifetime of OAuth access tokens.
    pub token_ttl: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            retry_schedule: RetrySchedule::default(),
            require_https: true,
            address_policy: AddressPolicy::default(),
            token_ttl: Duration::from_secs(3600),
        }
    }
}

/// Called after an event is durably written, so an in-process fan-out worker
/// can start at once instead of waiting for its next sweep.
pub type PublishHook = Arc<dyn Fn() + Send + Sync>;

/// Skyhook's service: one per process (per cold start in Lambda).
pub struct Skyhook {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    secret_box: SecretBox,
    admin_token: String,
    jwt_key: Vec<u8>,
    cursor_key: Vec<u8>,
    config: ServiceConfig,
    publish_hook: Option<PublishHook>,
    rate_limiter: rate_limit::RateLimiter,
    breakers: controls::LocalBreakers,
    key_use: auth::KeyUse,
}

impl Skyhook {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
        secrets: SecretMaterial,
        config: ServiceConfig,
    ) -> Self {
        let cursor_key = {
            use hmac::{Hmac, KeyInit, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secrets.jwt_key).expect("any key length");
            mac.update(b"skyhook cursor key v1");
            mac.finalize().into_bytes().to_vec()
        };
        Skyhook {
            store,
            queue,
            clock,
            secret_box: SecretBox::new(&secrets.data_key),
            admin_token: secrets.admin_token,
            jwt_key: secrets.jwt_key,
            cursor_key,
            config,
            publish_hook: None,
            rate_limiter: rate_limit::RateLimiter::default(),
            breakers: controls::LocalBreakers::default(),
            key_use: auth::KeyUse::default(),
        }
    }

    pub fn with_publish_hook(mut self, hook: PublishHook) -> Self {
        self.publish_hook = Some(hook);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn secret_box(&self) -> &SecretBox {
        &self.secret_box
    }

    /// Liveness for `/v1/health`: the store answers.
    pub async fn health(&self) -> ServiceResult<&'static str> {
        self.store.ping().await?;
        Ok(self.store.backend_name())
    }

    async fn application(&self, id: &Id) -> ServiceResult<Application> {
        self.store.get_application(id).await?.ok_or(ServiceError::NotFound("application"))
    }
}
