//! Fault injection for the reliability suites: wrappers around each port that
//! delegate to a real adapter and, when their [`FaultPlan`] says so, fail or
//! stall a call instead.
//!
//! ```ignore
//! let store = FaultyStore::new(sqlite_store);
//! store.plan.fail("insert_event", Nth(1), StoreError::Unavailable("injected".into()));
//! let queue = FaultyQueue::new(sqlite_queue);
//! queue.plan.stall("send_batch", Nth(2), Duration::from_secs(1));
//! ```
//!
//! Rules are matched in the order they were added; the first one that fires on
//! a call decides what happens to it. A rule names one method (`"*"` = every
//! method of the port) and counts the calls it sees from the moment it is
//! added, so `Nth(1)` is the next call of that method and `Nth(2)` the one
//! after. Four actions:
//!
//! * `fail`: the call is not made, the caller gets the error (a crash or an
//!   outage *before* the write);
//! * `fail_after`: the call is made, then the caller gets the error anyway (the
//!   write committed but its answer was lost — the classic ambiguous outcome);
//! * `stall` / `stall_after`: the call waits that long before / after running.
//!
//! Method names are checked against the port's list, so a typo panics at once
//! instead of silently never firing.
//!
//! The second half of this file is a small harness shared by the suites: the
//! whole service on SQLite (one temp file), a `ManualClock`, the fault wrappers
//! in place, and helpers to call the real router and drive the dispatcher.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Value, json};
use skyhook::adapters::local_secrets::StaticSecrets;
use skyhook::adapters::sqlite::{SqliteQueue, SqliteQueueConfig, SqliteStore};
use skyhook::api::{ApiRequest, handle};
use skyhook::domain::{ApiKey, Application, Delivery, DeliveryAttempt, Endpoint, Event, EventType, Id, Timestamp};
use skyhook::ports::{
    ApiKeyStore, ApplicationStore, ControlStateStore, DeliveryStore, EndpointStore, EventStore, EventTypeStore,
    StateRecord,
};
use skyhook::ports::{
    AttemptRecord, Clock, DeliveryFilter, EndpointFilter, EndpointResponse, EndpointStats, EventFilter, InsertEvent,
    ManualClock, OutgoingMessage, OutgoingWebhook, Page, PageRequest, Queue, QueueError, ReceivedMessage,
    SecretMaterial, Secrets, SecretsError, SendFailure, Store, StoreError, StoreResult, WebhookSender,
};
use skyhook::service::{Dispatcher, MessageOutcome, ServiceConfig, Skyhook};
use skyhook::ssrf::AddressPolicy;

// ===========================================================================
// The fault plan
// ===========================================================================

/// When a rule fires, counted over the calls of its method made since the
/// rule was added (1-based).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// Only the n-th call.
    Nth(usize),
    /// The first n calls.
    FirstN(usize),
    /// The n-th call and every one after it.
    FromNth(usize),
    /// Every call.
    Always,
    /// Each call with this probability, from the plan's seeded generator
    /// (deterministic for a given seed and call order).
    Chance(f64),
}

pub use When::*;

/// What a predicate sees of a call.
#[derive(Debug)]
pub struct Call<'a> {
    pub method: &'static str,
    /// 1-based count of this method's calls, this one included.
    pub n: usize,
    /// A short description of the arguments (ids, URL, message bodies).
    pub detail: &'a str,
}

/// Errors a plan can hand out more than once (the port errors are not `Clone`).
pub trait Replicate {
    fn replicate(&self) -> Self;
}

impl Replicate for StoreError {
    fn replicate(&self) -> Self {
        match self {
            StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        }
    }
}

impl Replicate for QueueError {
    fn replicate(&self) -> Self {
        match self {
            QueueError::Unavailable(m) => QueueError::Unavailable(m.clone()),
            QueueError::ReceiptInvalid => QueueError::ReceiptInvalid,
            QueueError::Invalid(m) => QueueError::Invalid(m.clone()),
        }
    }
}

impl Replicate for SecretsError {
    fn replicate(&self) -> Self {
        match self {
            SecretsError::Unavailable(m) => SecretsError::Unavailable(m.clone()),
            SecretsError::Malformed(m) => SecretsError::Malformed(m.clone()),
        }
    }
}

impl Replicate for SendFailure {
    fn replicate(&self) -> Self {
        self.clone()
    }
}

enum Action<E> {
    Fail(E),
    FailAfter(E),
    Stall(Duration),
    StallAfter(Duration),
}

impl<E> Action<E> {
    fn name(&self) -> &'static str {
        match self {
            Action::Fail(_) => "fail",
            Action::FailAfter(_) => "fail_after",
            Action::Stall(_) => "stall",
            Action::StallAfter(_) => "stall_after",
        }
    }
}

type Predicate = Arc<dyn Fn(&Call<'_>) -> bool + Send + Sync>;

enum Trigger {
    When(When),
    Matching(Predicate),
}

struct Rule<E> {
    method: &'static str,
    trigger: Trigger,
    action: Action<E>,
    seen: usize,
}

/// One fault that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub method: &'static str,
    pub n: usize,
    pub action: &'static str,
}

struct PlanState<E> {
    rules: Vec<Rule<E>>,
    calls: HashMap<&'static str, usize>,
    injected: Vec<Injected>,
    rng: u64,
}

/// The faults to inject into one port, and a record of the calls made.
pub struct FaultPlan<E> {
    port: &'static str,
    methods: &'static [&'static str],
    state: Mutex<PlanState<E>>,
}

/// What the wrapper must do with one call.
enum Decision<E> {
    Pass,
    Fail(E),
    FailAfter(E),
    Stall(Duration),
    StallAfter(Duration),
}

impl<E: Replicate> FaultPlan<E> {
    fn new(port: &'static str, methods: &'static [&'static str]) -> Self {
        FaultPlan {
            port,
            methods,
            state: Mutex::new(PlanState {
                rules: Vec::new(),
                calls: HashMap::new(),
                injected: Vec::new(),
                rng: 0x9e37_79b9_7f4a_7c15,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState<E>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn known(&self, method: &str) -> &'static str {
        if method == "*" {
            return "*";
        }
        self.methods
            .iter()
            .copied()
            .find(|m| *m == method)
            .unwrap_or_else(|| panic!("{} has no method {method:?}; known: {:?}", self.port, self.methods))
    }

    fn add(&self, method: &str, trigger: Trigger, action: Action<E>) -> &Self {
        let method = self.known(method);
        self.lock().rules.push(Rule { method, trigger, action, seen: 0 });
        self
    }

    /// Seeds the generator behind [`When::Chance`].
    pub fn seed(&self, seed: u64) -> &Self {
        self.lock().rng = seed.max(1);
        self
    }

    /// The call is not made; the caller gets `error`.
    pub fn fail(&self, method: &str, when: When, error: E) -> &Self {
        self.add(method, Trigger::When(when), Action::Fail(error))
    }

    /// The call is made, then the caller gets `error` (its answer was lost).
    pub fn fail_after(&self, method: &str, when: When, error: E) -> &Self {
        self.add(method, Trigger::When(when), Action::FailAfter(error))
    }

    /// The call waits `delay`, then runs.
    pub fn stall(&self, method: &str, when: When, delay: Duration) -> &Self {
        self.add(method, Trigger::When(when), Action::Stall(delay))
    }

    /// The call runs, then waits `delay` before answering.
    pub fn stall_after(&self, method: &str, when: When, delay: Duration) -> &Self {
        self.add(method, Trigger::When(when), Action::StallAfter(delay))
    }

    /// Fails (before running) the calls `predicate` picks.
    pub fn fail_if(
        &self,
        method: &str,
        predicate: impl Fn(&Call<'_>) -> bool + Send + Sync + 'static,
        error: E,
    ) -> &Self {
        self.add(method, Trigger::Matching(Arc::new(predicate)), Action::Fail(error))
    }

    /// Removes every rule (the call counts stay).
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// How many times `method` was called.
    pub fn calls(&self, method: &str) -> usize {
        self.lock().calls.get(method).copied().unwrap_or(0)
    }

    /// Every fault that fired, in order.
    pub fn injected(&self) -> Vec<Injected> {
        self.lock().injected.clone()
    }

    pub fn injected_count(&self) -> usize {
        self.lock().injected.len()
    }

    fn decide(&self, method: &'static str, detail: &str) -> Decision<E> {
        let mut state = self.lock();
        let n = {
            let count = state.calls.entry(method).or_insert(0);
            *count += 1;
            *count
        };
        let PlanState { rules, rng, injected, .. } = &mut *state;
        for rule in rules.iter_mut() {
            if rule.method != "*" && rule.method != method {
                continue;
            }
            rule.seen += 1;
            let fires = match &rule.trigger {
                Trigger::When(Nth(k)) => rule.seen == *k,
                Trigger::When(FirstN(k)) => rule.seen <= *k,
                Trigger::When(FromNth(k)) => rule.seen >= *k,
                Trigger::When(Always) => true,
                Trigger::When(Chance(p)) => next_unit(rng) < *p,
                Trigger::Matching(predicate) => predicate(&Call { method, n, detail }),
            };
            if fires {
                injected.push(Injected { method, n, action: rule.action.name() });
                return match &rule.action {
                    Action::Fail(e) => Decision::Fail(e.replicate()),
                    Action::FailAfter(e) => Decision::FailAfter(e.replicate()),
                    Action::Stall(d) => Decision::Stall(*d),
                    Action::StallAfter(d) => Decision::StallAfter(*d),
                };
            }
        }
        Decision::Pass
    }

    /// Runs `call` under the plan. `call` is not polled when the fault says
    /// the call never happens.
    pub async fn around<T, F>(&self, method: &'static str, detail: String, call: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        match self.decide(method, &detail) {
            Decision::Pass => call.await,
            Decision::Fail(e) => Err(e),
            Decision::FailAfter(e) => {
                let _ = call.await;
                Err(e)
            }
            Decision::Stall(d) => {
                tokio::time::sleep(d).await;
                call.await
            }
            Decision::StallAfter(d) => {
                let result = call.await;
                tokio::time::sleep(d).await;
                result
            }
        }
    }
}

/// xorshift64*: a uniform sample in [0, 1).
fn next_unit(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

/// A tiny deterministic generator for tests that need pseudo-random choices.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed.max(1))
    }

    pub fn unit(&mut self) -> f64 {
        next_unit(&mut self.0)
    }

    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

// ===========================================================================
// Store
// ===========================================================================

pub const STORE_METHODS: &[&str] = &[
    "create_application",
    "get_application",
    "list_applications",
    "update_application",
    "delete_application",
    "create_api_key",
    "get_api_key",
    "find_api_key_by_hash",
    "list_api_keys",
    "revoke_api_key",
    "touch_api_key",
    "create_event_type",
    "get_event_type",
    "list_event_types",
    "update_event_type",
    "delete_event_type",
    "create_endpoint",
    "get_endpoint",
    "list_endpoints",
    "update_endpoint",
    "delete_endpoint",
    "set_endpoint_failing_since",
    "disable_endpoint",
    "endpoint_stats",
    "insert_event",
    "get_event",
    "list_events",
    "events_awaiting_fanout",
    "mark_event_fanned_out",
    "insert_deliveries",
    "get_delivery",
    "list_deliveries",
    "list_attempts",
    "record_attempt",
    "insert_retry",
    "delete_delivery",
    "get_record",
    "put_record",
    "list_records",
    "get_counters",
    "add_to_counters",
    "ping",
];

/// A `Store` that delegates every method to `inner`, under `plan`.
pub struct FaultyStore<S: Store + ?Sized = dyn Store> {
    inner: Arc<S>,
    pub plan: FaultPlan<StoreError>,
}

impl<S: Store + ?Sized> FaultyStore<S> {
    pub fn new(inner: Arc<S>) -> Self {
        FaultyStore { inner, plan: FaultPlan::new("FaultyStore", STORE_METHODS) }
    }

    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }
}

fn ids(parts: &[&Id]) -> String {
    parts.iter().map(|id| id.as_str()).collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl<S: Store + ?Sized> ApplicationStore for FaultyStore<S> {
    async fn create_application(&self, app: &Application) -> StoreResult<()> {
        self.plan.around("create_application", ids(&[&app.id]), self.inner.create_application(app)).await
    }
    async fn get_application(&self, id: &Id) -> StoreResult<Option<Application>> {
        self.plan.around("get_application", ids(&[id]), self.inner.get_application(id)).await
    }
    async fn list_applications(&self, page: &PageRequest) -> StoreResult<Page<Application>> {
        self.plan.around("list_applications", String::new(), self.inner.list_applications(page)).await
    }
    async fn update_application(&self, app: &Application) -> StoreResult<bool> {
        self.plan.around("update_application", ids(&[&app.id]), self.inner.update_application(app)).await
    }
    async fn delete_application(&self, id: &Id) -> StoreResult<bool> {
        self.plan.around("delete_application", ids(&[id]), self.inner.delete_application(id)).await
    }
}

#[async_trait]
impl<S: Store + ?Sized> ApiKeyStore for FaultyStore<S> {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        self.plan.around("create_api_key", ids(&[&key.application_id, &key.id]), self.inner.create_api_key(key)).await
    }
    async fn get_api_key(&self, id: &Id) -> StoreResult<Option<ApiKey>> {
        self.plan.around("get_api_key", ids(&[id]), self.inner.get_api_key(id)).await
    }
    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        // The hash is a credential's fingerprint: never put it in a detail.
        self.plan.around("find_api_key_by_hash", String::new(), self.inner.find_api_key_by_hash(key_hash)).await
    }
    async fn list_api_keys(&self, app_id: &Id, page: &PageRequest) -> StoreResult<Page<ApiKey>> {
        self.plan.around("list_api_keys", ids(&[app_id]), self.inner.list_api_keys(app_id, page)).await
    }
    async fn revoke_api_key(&self, app_id: &Id, id: &Id, at: Timestamp) -> StoreResult<bool> {
        self.plan.around("revoke_api_key", ids(&[app_id, id]), self.inner.revoke_api_key(app_id, id, at)).await
    }
    async fn touch_api_key(&self, key: &ApiKey, at: Timestamp) -> StoreResult<()> {
        self.plan.around("touch_api_key", ids(&[&key.application_id, &key.id]), self.inner.touch_api_key(key, at)).await
    }
}

#[async_trait]
impl<S: Store + ?Sized> EventTypeStore for FaultyStore<S> {
    async fn create_event_type(&self, event_type: &EventType) -> StoreResult<()> {
        self.plan.around("create_event_type", event_type.name.clone(), self.inner.create_event_type(event_type)).await
    }
    async fn get_event_type(&self, app_id: &Id, name: &str) -> StoreResult<Option<EventType>> {
        self.plan.around("get_event_type", name.to_string(), self.inner.get_event_type(app_id, name)).await
    }
    async fn list_event_types(
        &self,
        app_id: &Id,
        include_archived: bool,
        page: &PageRequest,
    ) -> StoreResult<Page<EventType>> {
        self.plan
            .around("list_event_types", ids(&[app_id]), self.inner.list_event_types(app_id, include_archived, page))
            .await
    }
    async fn update_event_type(&self, event_type: &EventType) -> StoreResult<bool> {
        self.plan.around("update_event_type", event_type.name.clone(), self.inner.update_event_type(event_type)).await
    }
    async fn delete_event_type(&self, app_id: &Id, name: &str) -> StoreResult<bool> {
        self.plan.around("delete_event_type", name.to_string(), self.inner.delete_event_type(app_id, name)).await
    }
}

#[async_trait]
impl<S: Store + ?Sized> EndpointStore for FaultyStore<S> {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> StoreResult<()> {
        self.plan.around("create_endpoint", ids(&[&endpoint.id]), self.inner.create_endpoint(endpoint)).await
    }
    async fn get_endpoint(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Endpoint>> {
        self.plan.around("get_endpoint", ids(&[app_id, id]), self.inner.get_endpoint(app_id, id)).await
    }
    async fn list_endpoints(
        &self,
        app_id: &Id,
        filter: &EndpointFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Endpoint>> {
        self.plan.around("list_endpoints", ids(&[app_id]), self.inner.list_endpoints(app_id, filter, page)).await
    }
    async fn update_endpoint(&self, endpoint: &Endpoint, expected_updated_at: Timestamp) -> StoreResult<bool> {
        self.plan
            .around("update_endpoint", ids(&[&endpoint.id]), self.inner.update_endpoint(endpoint, expected_updated_at))
            .await
    }
    async fn delete_endpoint(&self, app_id: &Id, id: &Id) -> StoreResult<bool> {
        self.plan.around("delete_endpoint", ids(&[app_id, id]), self.inner.delete_endpoint(app_id, id)).await
    }
    async fn set_endpoint_failing_since(&self, app_id: &Id, id: &Id, since: Option<Timestamp>) -> StoreResult<()> {
        self.plan
            .around(
                "set_endpoint_failing_since",
                ids(&[app_id, id]),
                self.inner.set_endpoint_failing_since(app_id, id, since),
            )
            .await
    }
    async fn disable_endpoint(&self, app_id: &Id, id: &Id, reason: &str, at: Timestamp) -> StoreResult<()> {
        self.plan
            .around("disable_endpoint", ids(&[app_id, id]), self.inner.disable_endpoint(app_id, id, reason, at))
            .await
    }
    async fn endpoint_stats(&self, app_id: &Id, id: &Id, since: Timestamp) -> StoreResult<EndpointStats> {
        self.plan.around("endpoint_stats", ids(&[app_id, id]), self.inner.endpoint_stats(app_id, id, since)).await
    }
}

#[async_trait]
impl<S: Store + ?Sized> EventStore for FaultyStore<S> {
    async fn insert_event(&self, event: &Event, idempotency_window_start: Timestamp) -> StoreResult<InsertEvent> {
        self.plan
            .around("insert_event", ids(&[&event.id]), self.inner.insert_event(event, idempotency_window_start))
            .await
    }
    async fn get_event(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Event>> {
        self.plan.around("get_event", ids(&[app_id, id]), self.inner.get_event(app_id, id)).await
    }
    async fn list_events(&self, app_id: &Id, filter: &EventFilter, page: &PageRequest) -> StoreResult<Page<Event>> {
        self.plan.around("list_events", ids(&[app_id]), self.inner.list_events(app_id, filter, page)).await
    }
    async fn events_awaiting_fanout(&self, limit: usize) -> StoreResult<Vec<Event>> {
        self.plan.around("events_awaiting_fanout", String::new(), self.inner.events_awaiting_fanout(limit)).await
    }
    async fn mark_event_fanned_out(&self, app_id: &Id, id: &Id, delivery_count: u32) -> StoreResult<()> {
        self.plan
            .around(
                "mark_event_fanned_out",
                ids(&[app_id, id]),
                self.inner.mark_event_fanned_out(app_id, id, delivery_count),
            )
            .await
    }
}

#[async_trait]
impl<S: Store + ?Sized> DeliveryStore for FaultyStore<S> {
    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> StoreResult<()> {
        let detail = deliveries.iter().map(|d| d.id.as_str()).collect::<Vec<_>>().join(" ");
        self.plan.around("insert_deliveries", detail, self.inner.insert_deliveries(deliveries)).await
    }
    async fn get_delivery(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Delivery>> {
        self.plan.around("get_delivery", ids(&[app_id, id]), self.inner.get_delivery(app_id, id)).await
    }
    async fn list_deliveries(
        &self,
        app_id: &Id,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Delivery>> {
        self.plan.around("list_deliveries", ids(&[app_id]), self.inner.list_deliveries(app_id, filter, page)).await
    }
    async fn list_attempts(&self, app_id: &Id, delivery_id: &Id) -> StoreResult<Vec<DeliveryAttempt>> {
        self.plan
            .around("list_attempts", ids(&[app_id, delivery_id]), self.inner.list_attempts(app_id, delivery_id))
            .await
    }
    async fn record_attempt(&self, record: &AttemptRecord) -> StoreResult<()> {
        let detail = format!("{} attempt {}", record.delivery.id, record.attempt.number);
        self.plan.around("record_attempt", detail, self.inner.record_attempt(record)).await
    }
    async fn insert_retry(&self, original: &Delivery, retry: &Delivery) -> StoreResult<()> {
        self.plan
            .around("insert_retry", ids(&[&original.id, &retry.id]), self.inner.insert_retry(original, retry))
            .await
    }
    async fn delete_delivery(&self, app_id: &Id, id: &Id) -> StoreResult<bool> {
        self.plan.around("delete_delivery", ids(&[app_id, id]), self.inner.delete_delivery(app_id, id)).await
    }
}

#[async_trait]
impl<S: Store + ?Sized> ControlStateStore for FaultyStore<S> {
    async fn get_record(&self, app_id: &Id, kind: &str, key: &str) -> StoreResult<Option<StateRecord>> {
        self.plan.around("get_record", format!("{kind} {key}"), self.inner.get_record(app_id, kind, key)).await
    }
    async fn put_record(
        &self,
        app_id: &Id,
        kind: &str,
        key: &str,
        body: &str,
        expected_version: u64,
        expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let detail = format!("{kind} {key} v{expected_version}");
        self.plan
            .around("put_record", detail, self.inner.put_record(app_id, kind, key, body, expected_version, expires_at))
            .await
    }
    async fn list_records(
        &self,
        app_id: &Id,
        kind: &str,
        key_prefix: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<StateRecord>> {
        let detail = format!("{kind} {key_prefix}");
        self.plan.around("list_records", detail, self.inner.list_records(app_id, kind, key_prefix, page)).await
    }
    async fn get_counters(&self, app_id: &Id, key: &str) -> StoreResult<[u64; 2]> {
        self.plan.around("get_counters", key.to_string(), self.inner.get_counters(app_id, key)).await
    }
    async fn add_to_counters(
        &self,
        app_id: &Id,
        key: &str,
        deltas: [u64; 2],
        limit: Option<u64>,
        expires_at: Timestamp,
    ) -> StoreResult<Option<[u64; 2]>> {
        self.plan
            .around(
                "add_to_counters",
                key.to_string(),
                self.inner.add_to_counters(app_id, key, deltas, limit, expires_at),
            )
            .await
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for FaultyStore<S> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    async fn ping(&self) -> StoreResult<()> {
        self.plan.around("ping", String::new(), self.inner.ping()).await
    }
}

// ===========================================================================
// Queue, Secrets, WebhookSender
// ===========================================================================

pub const QUEUE_METHODS: &[&str] = &["send", "send_batch", "receive", "change_visibility", "delete"];

/// A `Queue` that delegates to `inner`, under `plan`. The detail of `send` /
/// `send_batch` is the message bodies, one a line.
pub struct FaultyQueue<Q: Queue + ?Sized = dyn Queue> {
    inner: Arc<Q>,
    pub plan: FaultPlan<QueueError>,
}

impl<Q: Queue + ?Sized> FaultyQueue<Q> {
    pub fn new(inner: Arc<Q>) -> Self {
        FaultyQueue { inner, plan: FaultPlan::new("FaultyQueue", QUEUE_METHODS) }
    }

    pub fn inner(&self) -> &Arc<Q> {
        &self.inner
    }
}

#[async_trait]
impl<Q: Queue + ?Sized> Queue for FaultyQueue<Q> {
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        let detail = message.body.clone();
        self.plan.around("send", detail, self.inner.send(message)).await
    }
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<(), QueueError> {
        let detail = messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>().join("\n");
        self.plan.around("send_batch", detail, self.inner.send_batch(messages)).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.plan.around("receive", String::new(), self.inner.receive(max, wait)).await
    }
    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        self.plan
            .around(
                "change_visibility",
                receipt_handle.to_string(),
                self.inner.change_visibility(receipt_handle, timeout),
            )
            .await
    }
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.plan.around("delete", receipt_handle.to_string(), self.inner.delete(receipt_handle)).await
    }
}

pub const SECRETS_METHODS: &[&str] = &["load"];

pub struct FaultySecrets<S: Secrets + ?Sized = dyn Secrets> {
    inner: Arc<S>,
    pub plan: FaultPlan<SecretsError>,
}

impl<S: Secrets + ?Sized> FaultySecrets<S> {
    pub fn new(inner: Arc<S>) -> Self {
        FaultySecrets { inner, plan: FaultPlan::new("FaultySecrets", SECRETS_METHODS) }
    }
}

#[async_trait]
impl<S: Secrets + ?Sized> Secrets for FaultySecrets<S> {
    async fn load(&self) -> Result<SecretMaterial, SecretsError> {
        self.plan.around("load", String::new(), self.inner.load()).await
    }
}

pub const SENDER_METHODS: &[&str] = &["send"];

/// A `WebhookSender` that delegates to `inner`, under `plan`; the detail of a
/// call is the URL.
pub struct FaultySender<W: WebhookSender + ?Sized = dyn WebhookSender> {
    inner: Arc<W>,
    pub plan: FaultPlan<SendFailure>,
}

impl<W: WebhookSender + ?Sized> FaultySender<W> {
    pub fn new(inner: Arc<W>) -> Self {
        FaultySender { inner, plan: FaultPlan::new("FaultySender", SENDER_METHODS) }
    }
}

#[async_trait]
impl<W: WebhookSender + ?Sized> WebhookSender for FaultySender<W> {
    async fn send(&self, request: OutgoingWebhook) -> Result<EndpointResponse, SendFailure> {
        let detail = request.url.clone();
        self.plan.around("send", detail, self.inner.send(request)).await
    }
}

/// A receiver in memory: records every request and answers 200.
#[derive(Default)]
pub struct RecordingSender {
    pub sent: Mutex<Vec<OutgoingWebhook>>,
}

impl RecordingSender {
    pub fn sent(&self) -> Vec<OutgoingWebhook> {
        self.sent.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    /// The `webhook-id` of every request, in order.
    pub fn webhook_ids(&self) -> Vec<String> {
        self.sent().iter().filter_map(|r| header(r, "webhook-id").map(str::to_string)).collect()
    }
}

pub fn header<'a>(request: &'a OutgoingWebhook, name: &str) -> Option<&'a str> {
    request.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[async_trait]
impl WebhookSender for RecordingSender {
    async fn send(&self, request: OutgoingWebhook) -> Result<EndpointResponse, SendFailure> {
        self.sent.lock().unwrap().push(request);
        Ok(EndpointResponse { status: 200, body: Some("ok".into()), retry_after: None })
    }
}

// ===========================================================================
// Harness
// ===========================================================================

/// Removes the SQLite file (and its WAL/SHM) when dropped.
pub struct TempDb(pub PathBuf);

impl TempDb {
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        TempDb(std::env::temp_dir().join(format!(
            "skyhook-{tag}-{}-{nanos}-{}.sqlite",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

pub fn start_time() -> Timestamp {
    chrono::DateTime::parse_from_rfc3339("2030-06-01T08:00:00Z").unwrap().with_timezone(&chrono::Utc)
}

/// Local mode: http allowed, loopback allowed (the receivers are on 127.0.0.1).
pub fn local_config() -> ServiceConfig {
    ServiceConfig {
        require_https: false,
        address_policy: AddressPolicy { allow_loopback: true },
        ..ServiceConfig::default()
    }
}

/// Status, JSON body (`Null` when not JSON) and headers.
pub type Reply = (u16, Value, HeaderMap);

/// An application and an all-scopes key.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub app_id: String,
    pub key: String,
    pub key_id: String,
}

/// Skyhook on SQLite with every storage port wrapped in a fault plan.
pub struct Env {
    pub clock: Arc<ManualClock>,
    pub sqlite_store: Arc<SqliteStore>,
    pub sqlite_queue: Arc<SqliteQueue>,
    pub store: Arc<FaultyStore<SqliteStore>>,
    pub queue: Arc<FaultyQueue<SqliteQueue>>,
    pub service: Arc<Skyhook>,
    pub admin: String,
    _db: TempDb,
}

impl Env {
    pub fn new(config: ServiceConfig) -> Self {
        Self::with_queue_config(config, SqliteQueueConfig::default())
    }

    pub fn with_queue_config(config: ServiceConfig, queue_config: SqliteQueueConfig) -> Self {
        let db = TempDb::new("reliability");
        let clock = Arc::new(ManualClock::new(start_time()));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let sqlite_store = Arc::new(SqliteStore::open(&db.0, Arc::clone(&dyn_clock)).expect("open store"));
        let sqlite_queue =
            Arc::new(SqliteQueue::open(&db.0, "deliveries", queue_config, Arc::clone(&dyn_clock)).expect("open queue"));
        let store = Arc::new(FaultyStore::new(Arc::clone(&sqlite_store)));
        let queue = Arc::new(FaultyQueue::new(Arc::clone(&sqlite_queue)));
        let material = StaticSecrets::random().0;
        let admin = material.admin_token.clone();
        let service = Arc::new(Skyhook::new(store.clone(), queue.clone(), dyn_clock, material, config));
        Env { clock, sqlite_store, sqlite_queue, store, queue, service, admin, _db: db }
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(chrono::Duration::from_std(by).unwrap());
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn dispatcher(&self, sender: Arc<dyn WebhookSender>) -> Arc<Dispatcher> {
        Arc::new(Dispatcher::new(Arc::clone(&self.service), sender))
    }

    /// A request through the real router.
    pub async fn raw(&self, method: &str, path_and_query: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut request = ApiRequest::new(Method::from_bytes(method.as_bytes()).unwrap(), path_and_query);
        for (name, value) in headers {
            request
                .headers
                .append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        request.body = Bytes::from(body);
        let response = handle(&self.service, request).await;
        let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        (response.status.as_u16(), value, response.headers)
    }

    /// A JSON request with `Authorization: Bearer <token>`.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        let bytes = match body {
            Some(body) => {
                headers.push(("content-type", "application/json"));
                serde_json::to_vec(&body).unwrap()
            }
            None => Vec::new(),
        };
        self.raw(method, path, &headers, bytes).await
    }

    /// `call`, asserting a 2xx.
    pub async fn ok(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
        let (status, value, _) = self.call(method, path, token, body).await;
        assert!((200..300).contains(&status), "{method} {path} → {status} {value}");
        value
    }

    /// A new application with an all-scopes key and the event type `order.created`.
    pub async fn tenant(&self, name: &str) -> Tenant {
        let admin = self.admin.clone();
        let app = self.ok("POST", "/v1/applications", Some(&admin), Some(json!({ "name": name }))).await;
        let app_id = app["id"].as_str().unwrap().to_string();
        let key = self
            .ok("POST", &format!("/v1/applications/{app_id}/api-keys"), Some(&admin), Some(json!({ "name": name })))
            .await;
        let tenant = Tenant {
            app_id,
            key: key["key"].as_str().unwrap().to_string(),
            key_id: key["id"].as_str().unwrap().to_string(),
        };
        self.ok("POST", "/v1/event-types", Some(&tenant.key), Some(json!({ "name": "order.created" }))).await;
        tenant
    }

    pub async fn endpoint(&self, tenant: &Tenant, body: Value) -> Value {
        self.ok("POST", "/v1/endpoints", Some(&tenant.key), Some(body)).await
    }

    pub async fn publish(&self, tenant: &Tenant, payload: Value) -> Reply {
        self.call(
            "POST",
            "/v1/events",
            Some(&tenant.key),
            Some(json!({ "eventType": "order.created", "payload": payload })),
        )
        .await
    }

    /// Every delivery of the tenant (all pages).
    pub async fn deliveries(&self, tenant: &Tenant, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/deliveries?limit=250{}", if query.is_empty() { "" } else { "&" });
            path.push_str(query);
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.ok("GET", &path, Some(&tenant.key), None).await;
            out.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    /// A delivery with its attempts.
    pub async fn delivery(&self, tenant: &Tenant, id: &str) -> Value {
        self.ok("GET", &format!("/v1/deliveries/{id}"), Some(&tenant.key), None).await
    }

    /// Visible messages now (the clock does not move).
    pub async fn receive_all(&self) -> Vec<ReceivedMessage> {
        let mut all = Vec::new();
        loop {
            let batch = self.sqlite_queue.receive(10, Duration::ZERO).await.expect("receive");
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }

    /// Handles the visible messages one by one as the embedded runner does
    /// (delete on `Done`); returns the outcomes.
    pub async fn dispatch_visible(&self, dispatcher: &Arc<Dispatcher>) -> Vec<MessageOutcome> {
        let mut outcomes = Vec::new();
        for message in self.receive_all().await {
            let outcome = dispatcher.handle(&message).await;
            if outcome == MessageOutcome::Done {
                self.sqlite_queue.delete(&message.receipt_handle).await.expect("delete");
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    /// `(visible, hidden)` messages in the deliveries queue.
    pub async fn queue_counts(&self) -> (u64, u64) {
        self.sqlite_queue.approximate_counts().await.expect("counts")
    }
}

/// `VmRSS` of this process, in KiB.
pub fn rss_kib() -> u64 {
    rss_kib_of("self").unwrap_or(0)
}

/// `VmRSS` of `/proc/<pid>/status`, in KiB.
pub fn rss_kib_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
