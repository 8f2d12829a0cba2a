//! Everything Skyhook persists, split into one small trait per resource.
//! `Store` is all of them together.
//!
//! Contract shared by every adapter (checked by the conformance suite):
//! - Every read of an event, delivery or attempt skips items whose `expires_at`
//!   has passed (TTL deletion lags).
//! - Lists are newest first; `PageRequest::after` is the adapter's own opaque
//!   position, which the service layer signs and binds to the tenant.
//! - Every lookup is scoped by application id: another tenant's id is `None`.

use async_trait::async_trait;

use super::control_state::ControlStateStore;
use crate::domain::{
    ApiKey, Application, Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, Event, EventStatus, EventType, Id,
    Timestamp,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness or optimistic-concurrency condition failed.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    /// Adapter position to continue after (from a previous `Page::next`).
    pub after: Option<String>,
}

impl PageRequest {
    pub fn first(limit: usize) -> Self {
        PageRequest { limit, after: None }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Position after the last item when more may follow.
    pub next: Option<String>,
}

#[async_trait]
pub trait ApplicationStore: Send + Sync {
    async fn create_application(&self, app: &Application) -> StoreResult<()>;
    async fn get_application(&self, id: &Id) -> StoreResult<Option<Application>>;
    async fn list_applications(&self, page: &PageRequest) -> StoreResult<Page<Application>>;
    /// `false` when it does not exist.
    async fn update_application(&self, app: &Application) -> StoreResult<bool>;
    /// Deletes the application and everything it owns.
    async fn delete_application(&self, id: &Id) -> StoreResult<bool>;
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    async fn get_api_key(&self, id: &Id) -> StoreResult<Option<ApiKey>>;
    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>>;
    async fn list_api_keys(&self, app_id: &Id, page: &PageRequest) -> StoreResult<Page<ApiKey>>;
    /// `false` when it does not exist in this application.
    async fn revoke_api_key(&self, app_id: &Id, id: &Id, at: Timestamp) -> StoreResult<bool>;
    /// Records that `key` authenticated a request at `at`: sets
    /// `last_used_at` unless it is already `at` or later. A key that is
    /// gone is left alone.
    async fn touch_api_key(&self, key: &ApiKey, at: Timestamp) -> StoreResult<()>;
}

#[async_trait]
pub trait EventTypeStore: Send + Sync {
    /// `Conflict` when the name exists.
    async fn create_event_type(&self, event_type: &EventType) -> StoreResult<()>;
    async fn get_event_type(&self, app_id: &Id, name: &str) -> StoreResult<Option<EventType>>;
    async fn list_event_types(
        &self,
        app_id: &Id,
        include_archived: bool,
        page: &PageRequest,
    ) -> StoreResult<Page<EventType>>;
    async fn update_event_type(&self, event_type: &EventType) -> StoreResult<bool>;
    async fn delete_event_type(&self, app_id: &Id, name: &str) -> StoreResult<bool>;
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointFilter {
    pub is_active: Option<bool>,
    /// Endpoints that would receive this event type (an empty subscription list matches all).
    pub event_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStats {
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
    pub deliveries: u64,
    pub pending: u64,
    pub retrying: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub attempts: u64,
    pub successful_attempts: u64,
    pub failed_attempts: u64,
    /// Mean duration of the attempts, in milliseconds.
    pub avg_latency_ms: Option<f64>,
    pub p95_latency_ms: Option<u64>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_failure_at: Option<Timestamp>,
    /// Attempts bucketed by hour, oldest first, for charts.
    pub hourly: Vec<StatsBucket>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsBucket {
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    pub succeeded: u64,
    pub failed: u64,
    pub avg_latency_ms: Option<f64>,
}

#[async_trait]
pub trait EndpointStore: Send + Sync {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> StoreResult<()>;
    async fn get_endpoint(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Endpoint>>;
    async fn list_endpoints(
        &self,
        app_id: &Id,
        filter: &EndpointFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Endpoint>>;
    /// Replaces the stored endpoint if its `updated_at` is still
    /// `expected_updated_at` (optimistic concurrency: a PATCH and a rotation,
    /// or the dispatcher disabling it, never undo each other). `false` when it
    /// does not exist, `Conflict` when it changed since it was read.
    async fn update_endpoint(&self, endpoint: &Endpoint, expected_updated_at: Timestamp) -> StoreResult<bool>;
    async fn delete_endpoint(&self, app_id: &Id, id: &Id) -> StoreResult<bool>;
    /// Sets or clears the start of the current failure streak, leaving the
    /// rest of the endpoint as it is (but `updated_at`, one nanosecond later,
    /// so a concurrent read-modify-write notices).
    async fn set_endpoint_failing_since(&self, app_id: &Id, id: &Id, since: Option<Timestamp>) -> StoreResult<()>;
    /// Marks the endpoint inactive with a reason, leaving the rest as it is.
    async fn disable_endpoint(&self, app_id: &Id, id: &Id, reason: &str, at: Timestamp) -> StoreResult<()>;
    async fn endpoint_stats(&self, app_id: &Id, id: &Id, since: Timestamp) -> StoreResult<EndpointStats>;
}

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // returned once per publish; boxing buys nothing
pub enum InsertEvent {
    Created,
    /// The idempotency key was used within the window: this is the first event.
    Existing(Event),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub status: Option<EventStatus>,
    /// Created at or after.
    pub from: Option<Timestamp>,
    /// Created before.
    pub to: Option<Timestamp>,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Writes the event durably. With an idempotency key already used by this
    /// application within the window (24 h), writes nothing and returns the
    /// first event.
    async fn insert_event(&self, event: &Event, idempotency_window_start: Timestamp) -> StoreResult<InsertEvent>;
    async fn get_event(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Event>>;
    async fn list_events(&self, app_id: &Id, filter: &EventFilter, page: &PageRequest) -> StoreResult<Page<Event>>;
    /// Oldest events whose fan-out has not completed (outbox sweep).
    async fn events_awaiting_fanout(&self, limit: usize) -> StoreResult<Vec<Event>>;
    /// Completes fan-out: records how many deliveries the event has.
    async fn mark_event_fanned_out(&self, app_id: &Id, id: &Id, delivery_count: u32) -> StoreResult<()>;
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
    pub event_id: Option<Id>,
    pub endpoint_id: Option<Id>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

/// The outcome of one attempt, written as one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// The delivery as it stands after the attempt.
    pub delivery: Delivery,
    pub attempt: DeliveryAttempt,
    /// The attempt count the stored delivery must still have (optimistic
    /// concurrency): a duplicate message never records an attempt twice.
    pub expected_attempt_count: u32,
}

#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Writes deliveries that do not exist yet (ids are deterministic, so a
    /// repeated fan-out writes nothing new).
    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> StoreResult<()>;
    async fn get_delivery(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Delivery>>;
    async fn list_deliveries(
        &self,
        app_id: &Id,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Delivery>>;
    async fn list_attempts(&self, app_id: &Id, delivery_id: &Id) -> StoreResult<Vec<DeliveryAttempt>>;
    /// Updates the delivery, appends the attempt and, when the delivery just
    /// became final, counts it on its event. `Conflict` when the stored
    /// attempt count is not `expected_attempt_count`.
    async fn record_attempt(&self, record: &AttemptRecord) -> StoreResult<()>;
    /// Manual retry: writes `retry`, marks `original.retried_by`, and moves the
    /// event's counters from the original's outcome back to pending.
    /// `Conflict` when the original was already retried.
    async fn insert_retry(&self, original: &Delivery, retry: &Delivery) -> StoreResult<()>;
    /// Deletes the delivery and its attempts, and takes it out of its event's counters.
    async fn delete_delivery(&self, app_id: &Id, id: &Id) -> StoreResult<bool>;
}

/// Everything Skyhook persists.
#[async_trait]
pub trait Store:
    ApplicationStore + ApiKeyStore + EventTypeStore + EndpointStore + EventStore + DeliveryStore + ControlStateStore
{
    /// `sqlite` or `dynamodb`, for `/v1/health`.
    fn backend_name(&self) -> &'static str;
    /// Cheap liveness check for `/v1/health`.
    async fn ping(&self) -> StoreResult<()>;
}
