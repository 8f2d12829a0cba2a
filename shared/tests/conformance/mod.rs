//! The `Store` conformance suite: every adapter must pass all of it.
//!
//! Each case is a plain `async fn(Ctx)`; a backend's test file runs them all
//! with
//!
//! ```ignore
//! #[macro_use]
//! mod conformance;
//!
//! async fn make_store(clock: Arc<ManualClock>) -> Arc<dyn Store> { ... }
//!
//! store_conformance_tests!(make_store);
//! ```
//!
//! which generates one `#[tokio::test]` per case, each with a fresh, empty
//! store and a [`ManualClock`] starting at [`start_time`]. The factory must
//! hand back a store that reads time from that clock.
//!
//! Contract points the suite pins down (beyond the port docs):
//! - timestamps round-trip exactly (nanoseconds);
//! - lists are newest first; the last page has `next == None`;
//! - `list_attempts` is in attempt-number order;
//! - `endpoint_stats.hourly` has one bucket per hour that had attempts,
//!   oldest first; p95 is the nearest-rank percentile;
//! - control records and counters expire to the nanosecond, like events.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;
use skyhook::domain::{
    ApiKey, Application, CircuitBreakerSettings, Delivery, DeliveryAttempt, DeliveryControls, DeliveryStatus, Endpoint,
    ErrorCode, Event, EventStatus, EventType, Id, IdKind, PayloadFormat, ResponseStatus, Scope, SignatureScheme,
    SigningKeys, Timestamp,
};
use skyhook::filter::PayloadFilter;
use skyhook::ports::{
    AttemptRecord, Clock, DeliveryFilter, EndpointFilter, EventFilter, InsertEvent, ManualClock, Page, PageRequest,
    StateRecord, Store, StoreError, StoreResult,
};

/// Generates one `#[tokio::test]` per conformance case for a backend.
/// `$make` is an `async fn(Arc<ManualClock>) -> Arc<dyn Store>` returning a
/// fresh, empty store.
macro_rules! store_conformance_tests {
    ($make:path) => {
        store_conformance_tests!(@cases $make;
            given_an_application_when_created_then_get_returns_every_field,
            given_an_application_when_updated_then_the_change_persists,
            given_seven_applications_when_listed_in_pages_of_three_then_all_come_newest_first_once,
            given_an_application_with_data_when_deleted_then_everything_it_owns_is_gone,
            given_api_keys_when_looked_up_then_by_id_and_hash_they_round_trip,
            given_api_keys_of_two_applications_when_listed_then_each_sees_only_its_own_in_pages,
            given_an_api_key_when_revoked_then_only_its_application_can_revoke_it,
            given_an_api_key_when_touched_then_last_used_at_moves_forward_only_on_both_lookups,
            given_an_event_type_when_created_twice_then_the_second_conflicts_but_another_app_may_use_the_name,
            given_event_types_when_listed_then_archived_ones_are_optional_and_pages_are_complete,
            given_an_event_type_when_updated_or_deleted_then_only_its_application_can,
            given_an_endpoint_when_created_then_every_field_survives_including_secrets,
            given_an_endpoint_when_updated_then_it_is_replaced_and_other_apps_cannot,
            given_an_endpoint_when_deleted_then_it_is_gone_for_its_application_only,
            given_endpoints_when_listed_with_filters_then_only_matching_ones_come_back,
            given_endpoints_when_listed_in_pages_then_none_is_missed_or_repeated,
            given_an_endpoint_when_failing_since_is_set_or_it_is_disabled_then_the_rest_is_untouched,
            given_attempts_on_an_endpoint_when_stats_are_read_then_counts_latency_and_buckets_add_up,
            given_an_event_when_inserted_then_get_returns_every_field,
            given_an_idempotency_key_when_reused_within_the_window_then_the_first_event_comes_back,
            given_an_idempotency_key_when_reused_after_the_window_then_a_new_event_is_created,
            given_events_when_listed_with_filters_then_each_filter_narrows_the_result,
            given_ten_events_when_listed_in_pages_with_a_filter_then_pages_are_complete,
            given_events_when_their_expiry_passes_then_they_disappear_from_every_read,
            given_events_awaiting_fanout_when_marked_then_they_leave_the_outbox_with_a_status,
            given_deliveries_when_inserted_twice_then_the_second_insert_writes_nothing_new,
            given_deliveries_when_listed_with_filters_then_each_filter_narrows_the_result,
            given_deliveries_when_listed_in_pages_then_none_is_missed_or_repeated,
            given_a_delivery_when_an_attempt_is_recorded_then_delivery_and_attempt_round_trip,
            given_a_stale_attempt_count_when_an_attempt_is_recorded_then_it_conflicts_and_writes_nothing,
            given_deliveries_when_they_become_final_then_the_event_counters_and_status_follow,
            given_a_failed_delivery_when_retried_then_counters_move_back_and_a_second_retry_conflicts,
            given_a_delivery_when_deleted_then_it_and_its_attempts_leave_the_event_counters,
            given_a_store_when_pinged_then_it_answers,
            given_an_endpoint_with_delivery_controls_and_signing_keys_then_they_round_trip_through_every_write,
            given_a_control_record_when_written_with_versions_then_only_the_expected_version_wins,
            given_a_control_record_when_it_expires_then_it_reads_as_absent_and_can_be_created_again,
            given_control_records_when_listed_by_prefix_then_greatest_key_first_in_complete_pages,
            given_counters_when_added_to_then_they_accumulate_and_a_limit_refuses_without_change,
            given_counters_when_they_expire_then_they_restart_from_zero_with_the_new_expiry,
            given_an_application_with_control_state_when_deleted_then_its_records_and_counters_are_gone,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let start = $crate::conformance::start_time();
                let clock = ::std::sync::Arc::new(::skyhook::ports::ManualClock::new(start));
                let store = $make(clock.clone()).await;
                $crate::conformance::$case($crate::conformance::Ctx { store, clock }).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------
// Context and builders

/// What every case gets: a fresh store and the clock it reads.
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
}

impl Ctx {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the clock 1 ms so ids made now sort after earlier ones.
    pub fn tick(&self) -> Timestamp {
        self.clock.advance(Duration::milliseconds(1));
        self.clock.now()
    }
}

/// 2025-03-01T12:00:00.123456789Z: sub-millisecond on purpose, so a backend
/// that truncates timestamps fails the round-trip checks.
pub fn start_time() -> Timestamp {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + Duration::nanoseconds(123_456_789)
}

fn at(hour: u32, minute: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2025, 3, 1, hour, minute, 0).unwrap()
}

pub fn application(ctx: &Ctx, name: &str) -> Application {
    let now = ctx.tick();
    Application {
        id: Id::new(IdKind::Application, now),
        name: name.to_string(),
        retention_days: 31,
        rate_limit: Some(50),
        created_at: now,
        updated_at: now,
    }
}

pub async fn create_app(ctx: &Ctx, name: &str) -> Application {
    let app = application(ctx, name);
    ctx.store.create_application(&app).await.unwrap();
    app
}

pub fn api_key(ctx: &Ctx, app: &Id, name: &str) -> ApiKey {
    let now = ctx.tick();
    let id = Id::new(IdKind::ApiKey, now);
    ApiKey {
        key_hash: format!("sha256:{id}"),
        id,
        application_id: app.clone(),
        name: name.to_string(),
        prefix: "sk_live_ab".to_string(),
        last4: "wxyz".to_string(),
        scopes: vec![Scope::EventsWrite, Scope::WebhooksRead],
        created_at: now,
        revoked_at: None,
        last_used_at: Some(now - Duration::hours(1)),
    }
}

pub fn event_type(ctx: &Ctx, app: &Id, name: &str) -> EventType {
    let now = ctx.tick();
    EventType {
        application_id: app.clone(),
        name: name.to_string(),
        description: Some(format!("{name} happened")),
        schema: Some(json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}})),
        archived: false,
        created_at: now,
        updated_at: now,
    }
}

pub fn endpoint(ctx: &Ctx, app: &Id, event_types: &[&str]) -> Endpoint {
    let now = ctx.tick();
    Endpoint {
        id: Id::new(IdKind::Endpoint, now),
        application_id: app.clone(),
        url: "https://hooks.example.com/skyhook".to_string(),
        description: Some("primary receiver".to_string()),
        event_types: event_types.iter().map(|t| t.to_string()).collect(),
        headers: BTreeMap::from([("x-tenant".to_string(), "acme".to_string())]),
        max_attempts: 8,
        timeout_secs: 15,
        payload_format: PayloadFormat::Raw,
        is_active: true,
        disabled_reason: None,
        metadata: BTreeMap::from([("team".to_string(), "billing".to_string())]),
        secret_encrypted: "v1:nonce:ciphertext-current".to_string(),
        secret_last4: "abcd".to_string(),
        previous_secret_encrypted: Some("v1:nonce:ciphertext-previous".to_string()),
        previous_secret_expires_at: Some(now + Duration::hours(24)),
        failing_since: Some(now - Duration::hours(2)),
        controls: Default::default(),
        signing_keys: Default::default(),
        created_at: now,
        updated_at: now,
    }
}

pub async fn create_endpoint(ctx: &Ctx, app: &Id, event_types: &[&str]) -> Endpoint {
    let ep = endpoint(ctx, app, event_types);
    ctx.store.create_endpoint(&ep).await.unwrap();
    ep
}

pub fn event(ctx: &Ctx, app: &Id, event_type: &str) -> Event {
    let now = ctx.tick();
    let id = Id::new(IdKind::Event, now);
    Event {
        request_hash: format!("req-{id}"),
        id,
        application_id: app.clone(),
        event_type: event_type.to_string(),
        payload: json!({"id": "inv_1", "amount": 12.5, "lines": [1, 2, 3], "nested": {"ok": true, "none": null}}),
        idempotency_key: None,
        target_endpoint_id: None,
        status: EventStatus::Pending,
        fanned_out: false,
        delivery_count: 0,
        succeeded_count: 0,
        failed_count: 0,
        created_at: now,
        expires_at: now + Duration::days(31),
    }
}

pub async fn insert_event(ctx: &Ctx, app: &Id, event_type: &str) -> Event {
    let ev = event(ctx, app, event_type);
    let window_start = ctx.now() - Duration::hours(24);
    assert_eq!(ctx.store.insert_event(&ev, window_start).await.unwrap(), InsertEvent::Created);
    ev
}

pub fn delivery(ctx: &Ctx, event: &Event, endpoint: &Endpoint) -> Delivery {
    let now = ctx.tick();
    Delivery {
        id: Id::derived(IdKind::Delivery, now, &[event.id.as_str(), endpoint.id.as_str()]),
        application_id: event.application_id.clone(),
        event_id: event.id.clone(),
        endpoint_id: endpoint.id.clone(),
        event_type: event.event_type.clone(),
        status: DeliveryStatus::Pending,
        attempt_count: 0,
        max_attempts: endpoint.max_attempts,
        response_status: None,
        response_body: None,
        error_message: None,
        timestamp_sent: None,
        next_attempt_at: None,
        retry_of: None,
        retried_by: None,
        delivered_at: None,
        created_at: now,
        updated_at: now,
        expires_at: event.expires_at,
    }
}

/// An event fanned out to `endpoints`: its deliveries are written and counted.
pub async fn fanned_out_event(
    ctx: &Ctx,
    app: &Id,
    event_type: &str,
    endpoints: &[&Endpoint],
) -> (Event, Vec<Delivery>) {
    let ev = insert_event(ctx, app, event_type).await;
    let deliveries: Vec<Delivery> = endpoints.iter().map(|ep| delivery(ctx, &ev, ep)).collect();
    ctx.store.insert_deliveries(&deliveries).await.unwrap();
    ctx.store.mark_event_fanned_out(app, &ev.id, deliveries.len() as u32).await.unwrap();
    (ev, deliveries)
}

/// Records one attempt on `d` (at the clock's now) leaving it in `outcome`,
/// and updates `d` to what the store now holds.
pub async fn record(
    ctx: &Ctx,
    d: &mut Delivery,
    status: ResponseStatus,
    duration_ms: u64,
    outcome: DeliveryStatus,
) -> DeliveryAttempt {
    let now = ctx.now();
    let expected = d.attempt_count;
    let ok = matches!(status, ResponseStatus::Http(200..=299));
    d.attempt_count += 1;
    d.status = outcome;
    d.response_status = Some(status);
    d.response_body = Some(if ok { "ok".to_string() } else { "try later".to_string() });
    d.error_message = if ok { None } else { Some(format!("attempt {} failed", d.attempt_count)) };
    d.timestamp_sent = Some(now.timestamp());
    d.next_attempt_at = (outcome == DeliveryStatus::Retrying).then(|| now + Duration::minutes(5));
    d.delivered_at = ok.then_some(now);
    d.updated_at = now;
    let attempt = DeliveryAttempt {
        id: Id::new(IdKind::Attempt, now),
        application_id: d.application_id.clone(),
        delivery_id: d.id.clone(),
        number: d.attempt_count,
        started_at: now,
        duration_ms,
        response_status: status,
        response: d.response_body.clone(),
        error: d.error_message.clone(),
        next_delay_secs: (outcome == DeliveryStatus::Retrying).then_some(300),
        expires_at: d.expires_at,
    };
    let record = AttemptRecord { delivery: d.clone(), attempt: attempt.clone(), expected_attempt_count: expected };
    ctx.store.record_attempt(&record).await.unwrap();
    attempt
}

/// Non-default delivery controls: every field changed.
pub fn custom_controls() -> DeliveryControls {
    DeliveryControls {
        ordered: true,
        rate_limit: Some(5),
        circuit_breaker: CircuitBreakerSettings {
            enabled: false,
            failure_ratio: 0.25,
            min_requests: 7,
            window_secs: 120,
            open_secs: 45,
        },
        filter: Some(PayloadFilter::parse(&json!({"field": "amount", "gte": 100})).unwrap()),
        signature_schemes: vec![SignatureScheme::HmacSha256, SignatureScheme::Ed25519],
        public_key: Some("whpk_MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE".to_string()),
    }
}

/// Non-empty signing keys (current and rotated-out).
pub fn custom_signing_keys() -> SigningKeys {
    SigningKeys {
        ed25519_encrypted: Some("v1:nonce:ed25519-current".to_string()),
        previous_ed25519_encrypted: Some("v1:nonce:ed25519-previous".to_string()),
    }
}

/// A key as the service layer makes them: `ep_<ulid>/rpl_<ulid>`, later ones greater.
fn replay_key(ctx: &Ctx, endpoint: &Id) -> String {
    let ulid = Id::new(IdKind::Event, ctx.tick()).to_string();
    format!("{endpoint}/rpl_{}", ulid.trim_start_matches("evt_"))
}

/// Reads every page of a list; asserts no page is over `limit`.
pub async fn all_pages<T, F, Fut>(limit: usize, mut fetch: F) -> Vec<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = StoreResult<Page<T>>>,
{
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = fetch(PageRequest { limit, after: after.take() }).await.unwrap();
        assert!(page.items.len() <= limit, "a page holds {} items, over the limit {limit}", page.items.len());
        pages.push(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(pages.len() < 100, "pagination does not end");
    }
    pages
}

fn sizes<T>(pages: &[Vec<T>]) -> Vec<usize> {
    pages.iter().map(Vec::len).collect()
}

fn ids<'a>(items: impl IntoIterator<Item = &'a Id>) -> Vec<Id> {
    items.into_iter().cloned().collect()
}

async fn event_now(ctx: &Ctx, ev: &Event) -> Event {
    ctx.store.get_event(&ev.application_id, &ev.id).await.unwrap().expect("event exists")
}

async fn delivery_now(ctx: &Ctx, d: &Delivery) -> Delivery {
    ctx.store.get_delivery(&d.application_id, &d.id).await.unwrap().expect("delivery exists")
}

fn assert_conflict<T: std::fmt::Debug>(result: StoreResult<T>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn assert_counts(ev: &Event, delivery_count: u32, succeeded: u32, failed: u32, status: EventStatus) {
    assert_eq!(
        (ev.delivery_count, ev.succeeded_count, ev.failed_count, ev.status),
        (delivery_count, succeeded, failed, status),
        "event counters (deliveries, succeeded, failed, status)"
    );
    assert_eq!(ev.status, ev.derive_status(), "stored status must equal the derived one");
}

// ---------------------------------------------------------------------------
// Applications

pub async fn given_an_application_when_created_then_get_returns_every_field(ctx: Ctx) {
    // GIVEN an application with every field set
    let app = create_app(&ctx, "Acme").await;
    let mut no_limit = application(&ctx, "Unlimited");
    no_limit.rate_limit = None;
    ctx.store.create_application(&no_limit).await.unwrap();

    // WHEN read back THEN every field survives
    assert_eq!(ctx.store.get_application(&app.id).await.unwrap(), Some(app.clone()));
    assert_eq!(ctx.store.get_application(&no_limit.id).await.unwrap(), Some(no_limit));
    // AND an unknown id is None
    let unknown = Id::new(IdKind::Application, ctx.now());
    assert_eq!(ctx.store.get_application(&unknown).await.unwrap(), None);
    // AND the same id cannot be created twice
    assert_conflict(ctx.store.create_application(&app).await);
}

pub async fn given_an_application_when_updated_then_the_change_persists(ctx: Ctx) {
    // GIVEN an application
    let mut app = create_app(&ctx, "Acme").await;
    // WHEN its name, retention and rate limit change
    app.name = "Acme Corp".into();
    app.retention_days = 90;
    app.rate_limit = None;
    app.updated_at = ctx.tick();
    // THEN the update reports it existed and the change is stored
    assert!(ctx.store.update_application(&app).await.unwrap());
    assert_eq!(ctx.store.get_application(&app.id).await.unwrap(), Some(app));
    // AND updating an unknown application reports false and creates nothing
    let ghost = application(&ctx, "Ghost");
    assert!(!ctx.store.update_application(&ghost).await.unwrap());
    assert_eq!(ctx.store.get_application(&ghost.id).await.unwrap(), None);
}

pub async fn given_seven_applications_when_listed_in_pages_of_three_then_all_come_newest_first_once(ctx: Ctx) {
    // GIVEN seven applications created one after another
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(create_app(&ctx, &format!("app {i}")).await);
    }
    // WHEN listed three at a time
    let store = ctx.store.clone();
    let pages = all_pages(3, |page| {
        let store = store.clone();
        async move { store.list_applications(&page).await }
    })
    .await;
    // THEN three pages of 3, 3 and 1, newest first, none missing or repeated
    assert_eq!(sizes(&pages), vec![3, 3, 1]);
    let listed: Vec<Application> = pages.into_iter().flatten().collect();
    created.reverse();
    assert_eq!(listed, created);
}

pub async fn given_an_application_with_data_when_deleted_then_everything_it_owns_is_gone(ctx: Ctx) {
    // GIVEN two applications, each with a key, an event type, an endpoint, an
    // event, a delivery and an attempt
    let mut owned = Vec::new();
    for name in ["doomed", "survivor"] {
        let app = create_app(&ctx, name).await;
        let key = api_key(&ctx, &app.id, "key");
        ctx.store.create_api_key(&key).await.unwrap();
        let et = event_type(&ctx, &app.id, "invoice.paid");
        ctx.store.create_event_type(&et).await.unwrap();
        let ep = create_endpoint(&ctx, &app.id, &[]).await;
        let (ev, mut ds) = fanned_out_event(&ctx, &app.id, "invoice.paid", &[&ep]).await;
        let mut d = ds.remove(0);
        record(&ctx, &mut d, ResponseStatus::Http(500), 10, DeliveryStatus::Retrying).await;
        owned.push((app, key, et, ep, ev, d));
    }

    // WHEN the first application is deleted
    let (app, key, et, ep, ev, d) = &owned[0];
    assert!(ctx.store.delete_application(&app.id).await.unwrap());

    // THEN nothing of it can be read any more
    assert_eq!(ctx.store.get_application(&app.id).await.unwrap(), None);
    assert_eq!(ctx.store.get_api_key(&key.id).await.unwrap(), None);
    assert_eq!(ctx.store.find_api_key_by_hash(&key.key_hash).await.unwrap(), None);
    assert!(ctx.store.list_api_keys(&app.id, &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert_eq!(ctx.store.get_event_type(&app.id, &et.name).await.unwrap(), None);
    assert!(ctx.store.list_event_types(&app.id, true, &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert_eq!(ctx.store.get_endpoint(&app.id, &ep.id).await.unwrap(), None);
    assert_eq!(ctx.store.get_event(&app.id, &ev.id).await.unwrap(), None);
    assert!(ctx.store.events_awaiting_fanout(10).await.unwrap().is_empty());
    assert_eq!(ctx.store.get_delivery(&app.id, &d.id).await.unwrap(), None);
    assert!(ctx.store.list_attempts(&app.id, &d.id).await.unwrap().is_empty());
    // AND it can be re-created under the same name (the event type name is free again)
    let et_again = event_type(&ctx, &app.id, &et.name);
    ctx.store.create_event_type(&et_again).await.unwrap();
    // AND deleting it again reports false
    assert!(!ctx.store.delete_application(&app.id).await.unwrap());

    // AND the other application keeps everything
    let (app, key, et, ep, ev, d) = &owned[1];
    assert_eq!(ctx.store.get_application(&app.id).await.unwrap().as_ref(), Some(app));
    assert_eq!(ctx.store.get_api_key(&key.id).await.unwrap().as_ref(), Some(key));
    assert_eq!(ctx.store.get_event_type(&app.id, &et.name).await.unwrap().as_ref(), Some(et));
    assert_eq!(ctx.store.get_endpoint(&app.id, &ep.id).await.unwrap().as_ref(), Some(ep));
    assert!(ctx.store.get_event(&app.id, &ev.id).await.unwrap().is_some());
    assert_eq!(ctx.store.get_delivery(&app.id, &d.id).await.unwrap().as_ref(), Some(d));
    assert_eq!(ctx.store.list_attempts(&app.id, &d.id).await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// API keys

pub async fn given_api_keys_when_looked_up_then_by_id_and_hash_they_round_trip(ctx: Ctx) {
    // GIVEN a key of application A (every field set) and one of B
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let key_a = api_key(&ctx, &a.id, "ci");
    let mut key_b = api_key(&ctx, &b.id, "prod");
    key_b.scopes = Scope::ALL.to_vec();
    key_b.last_used_at = None;
    ctx.store.create_api_key(&key_a).await.unwrap();
    ctx.store.create_api_key(&key_b).await.unwrap();

    // WHEN looked up by id THEN every field survives, with no application needed (OAuth)
    assert_eq!(ctx.store.get_api_key(&key_a.id).await.unwrap().as_ref(), Some(&key_a));
    assert_eq!(ctx.store.get_api_key(&key_b.id).await.unwrap().as_ref(), Some(&key_b));
    // WHEN looked up by hash THEN the same key comes back, hash included
    let found = ctx.store.find_api_key_by_hash(&key_a.key_hash).await.unwrap().expect("found by hash");
    assert_eq!(found, key_a);
    assert_eq!(found.key_hash, key_a.key_hash);
    // AND unknown ids and hashes are None
    assert_eq!(ctx.store.get_api_key(&Id::new(IdKind::ApiKey, ctx.now())).await.unwrap(), None);
    assert_eq!(ctx.store.find_api_key_by_hash("sha256:nothing").await.unwrap(), None);
    // AND the same id cannot be created twice
    let mut dup = api_key(&ctx, &a.id, "dup");
    dup.id = key_a.id.clone();
    assert_conflict(ctx.store.create_api_key(&dup).await);
}

pub async fn given_an_api_key_when_touched_then_last_used_at_moves_forward_only_on_both_lookups(ctx: Ctx) {
    // GIVEN a key that was never used
    let app = create_app(&ctx, "A").await;
    let key = ApiKey { last_used_at: None, ..api_key(&ctx, &app.id, "ci") };
    ctx.store.create_api_key(&key).await.unwrap();
    assert_eq!(ctx.store.get_api_key(&key.id).await.unwrap().unwrap().last_used_at, None);

    // WHEN it is touched at t1, then (late) at an earlier t0
    let t1 = ctx.tick();
    let t0 = t1 - Duration::seconds(30);
    ctx.store.touch_api_key(&key, t1).await.unwrap();
    ctx.store.touch_api_key(&key, t0).await.unwrap();

    // THEN both lookups read t1, and the rest of the key is unchanged
    let by_id = ctx.store.get_api_key(&key.id).await.unwrap().unwrap();
    let by_hash = ctx.store.find_api_key_by_hash(&key.key_hash).await.unwrap().unwrap();
    assert_eq!(by_id.last_used_at, Some(t1));
    assert_eq!(by_hash.last_used_at, Some(t1));
    assert_eq!(ApiKey { last_used_at: None, ..by_id }, key);

    // AND a later touch moves it on
    let t2 = t1 + Duration::seconds(61);
    ctx.store.touch_api_key(&key, t2).await.unwrap();
    assert_eq!(ctx.store.find_api_key_by_hash(&key.key_hash).await.unwrap().unwrap().last_used_at, Some(t2));
    // AND touching a key that was never stored writes nothing
    let ghost = api_key(&ctx, &app.id, "ghost");
    ctx.store.touch_api_key(&ghost, t2).await.unwrap();
    assert_eq!(ctx.store.get_api_key(&ghost.id).await.unwrap(), None);
    assert_eq!(ctx.store.find_api_key_by_hash(&ghost.key_hash).await.unwrap(), None);
}

pub async fn given_api_keys_of_two_applications_when_listed_then_each_sees_only_its_own_in_pages(ctx: Ctx) {
    // GIVEN five keys of A and one of B
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let mut keys_a = Vec::new();
    for i in 0..5 {
        let key = api_key(&ctx, &a.id, &format!("key {i}"));
        ctx.store.create_api_key(&key).await.unwrap();
        keys_a.push(key);
    }
    let key_b = api_key(&ctx, &b.id, "b");
    ctx.store.create_api_key(&key_b).await.unwrap();

    // WHEN A's keys are listed two at a time
    let store = ctx.store.clone();
    let app_id = a.id.clone();
    let pages = all_pages(2, |page| {
        let (store, app_id) = (store.clone(), app_id.clone());
        async move { store.list_api_keys(&app_id, &page).await }
    })
    .await;
    // THEN 2, 2, 1, newest first, all of A's and none of B's
    assert_eq!(sizes(&pages), vec![2, 2, 1]);
    keys_a.reverse();
    assert_eq!(pages.into_iter().flatten().collect::<Vec<_>>(), keys_a);
    // AND B sees only its own
    assert_eq!(ctx.store.list_api_keys(&b.id, &PageRequest::first(10)).await.unwrap().items, vec![key_b]);
}

pub async fn given_an_api_key_when_revoked_then_only_its_application_can_revoke_it(ctx: Ctx) {
    // GIVEN a key of A
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let key = api_key(&ctx, &a.id, "ci");
    ctx.store.create_api_key(&key).await.unwrap();
    let when = ctx.tick();

    // WHEN B tries to revoke it THEN false and the key stays valid
    assert!(!ctx.store.revoke_api_key(&b.id, &key.id, when).await.unwrap());
    assert!(!ctx.store.get_api_key(&key.id).await.unwrap().unwrap().is_revoked());

    // WHEN A revokes it THEN true, and every lookup sees the revocation time
    assert!(ctx.store.revoke_api_key(&a.id, &key.id, when).await.unwrap());
    let revoked = ApiKey { revoked_at: Some(when), ..key.clone() };
    assert_eq!(ctx.store.get_api_key(&key.id).await.unwrap(), Some(revoked.clone()));
    assert_eq!(ctx.store.find_api_key_by_hash(&key.key_hash).await.unwrap(), Some(revoked));
    // AND revoking an unknown key is false
    assert!(!ctx.store.revoke_api_key(&a.id, &Id::new(IdKind::ApiKey, when), when).await.unwrap());
}

// ---------------------------------------------------------------------------
// Event types

pub async fn given_an_event_type_when_created_twice_then_the_second_conflicts_but_another_app_may_use_the_name(
    ctx: Ctx,
) {
    // GIVEN an event type of A with a schema, and one without description or schema
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let paid = event_type(&ctx, &a.id, "invoice.paid");
    ctx.store.create_event_type(&paid).await.unwrap();
    let mut bare = event_type(&ctx, &a.id, "invoice.voided");
    bare.description = None;
    bare.schema = None;
    bare.archived = true;
    ctx.store.create_event_type(&bare).await.unwrap();
    // THEN both round-trip
    assert_eq!(ctx.store.get_event_type(&a.id, "invoice.paid").await.unwrap().as_ref(), Some(&paid));
    assert_eq!(ctx.store.get_event_type(&a.id, "invoice.voided").await.unwrap().as_ref(), Some(&bare));

    // WHEN A creates the same name again THEN conflict, and the first is unchanged
    let mut again = event_type(&ctx, &a.id, "invoice.paid");
    again.description = Some("other".into());
    assert_conflict(ctx.store.create_event_type(&again).await);
    assert_eq!(ctx.store.get_event_type(&a.id, "invoice.paid").await.unwrap(), Some(paid));

    // WHEN B creates the same name THEN it is B's own
    assert_eq!(ctx.store.get_event_type(&b.id, "invoice.paid").await.unwrap(), None);
    let theirs = event_type(&ctx, &b.id, "invoice.paid");
    ctx.store.create_event_type(&theirs).await.unwrap();
    assert_eq!(ctx.store.get_event_type(&b.id, "invoice.paid").await.unwrap(), Some(theirs));
}

pub async fn given_event_types_when_listed_then_archived_ones_are_optional_and_pages_are_complete(ctx: Ctx) {
    // GIVEN five event types of A, the second archived, and one of B
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let mut created = Vec::new();
    for (i, name) in ["a.one", "a.two", "a.three", "a.four", "a.five"].into_iter().enumerate() {
        let mut et = event_type(&ctx, &a.id, name);
        et.archived = i == 1;
        ctx.store.create_event_type(&et).await.unwrap();
        created.push(et);
    }
    ctx.store.create_event_type(&event_type(&ctx, &b.id, "b.only")).await.unwrap();
    created.reverse();

    // WHEN listed with archived ones, two at a time THEN all five, newest first
    let store = ctx.store.clone();
    let app_id = a.id.clone();
    let pages = all_pages(2, |page| {
        let (store, app_id) = (store.clone(), app_id.clone());
        async move { store.list_event_types(&app_id, true, &page).await }
    })
    .await;
    assert_eq!(sizes(&pages), vec![2, 2, 1]);
    assert_eq!(pages.into_iter().flatten().collect::<Vec<_>>(), created);

    // WHEN listed without archived ones THEN the archived one is left out
    let listed = ctx.store.list_event_types(&a.id, false, &PageRequest::first(10)).await.unwrap();
    let names: Vec<&str> = listed.items.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["a.five", "a.four", "a.three", "a.one"]);
    assert_eq!(listed.next, None);
}

pub async fn given_an_event_type_when_updated_or_deleted_then_only_its_application_can(ctx: Ctx) {
    // GIVEN an event type of A
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let mut et = event_type(&ctx, &a.id, "invoice.paid");
    ctx.store.create_event_type(&et).await.unwrap();

    // WHEN B updates a type of that name THEN false, A's is unchanged
    let mut foreign = et.clone();
    foreign.application_id = b.id.clone();
    foreign.description = Some("hijacked".into());
    assert!(!ctx.store.update_event_type(&foreign).await.unwrap());
    assert_eq!(ctx.store.get_event_type(&a.id, &et.name).await.unwrap().as_ref(), Some(&et));

    // WHEN A archives it and drops the schema THEN the change is stored
    et.archived = true;
    et.schema = None;
    et.description = Some("paid, old style".into());
    et.updated_at = ctx.tick();
    assert!(ctx.store.update_event_type(&et).await.unwrap());
    assert_eq!(ctx.store.get_event_type(&a.id, &et.name).await.unwrap().as_ref(), Some(&et));

    // WHEN B deletes it THEN false; WHEN A deletes it THEN it is gone
    assert!(!ctx.store.delete_event_type(&b.id, &et.name).await.unwrap());
    assert!(ctx.store.delete_event_type(&a.id, &et.name).await.unwrap());
    assert_eq!(ctx.store.get_event_type(&a.id, &et.name).await.unwrap(), None);
    assert!(!ctx.store.delete_event_type(&a.id, &et.name).await.unwrap());
    assert!(!ctx.store.update_event_type(&et).await.unwrap());
}

// ---------------------------------------------------------------------------
// Endpoints

pub async fn given_an_endpoint_when_created_then_every_field_survives_including_secrets(ctx: Ctx) {
    // GIVEN an endpoint with every field set (secret, rotated secret, failure streak)
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let ep = create_endpoint(&ctx, &a.id, &["invoice.paid", "invoice.failed"]).await;
    // AND a minimal one
    let mut minimal = endpoint(&ctx, &a.id, &[]);
    minimal.description = None;
    minimal.headers.clear();
    minimal.metadata.clear();
    minimal.payload_format = PayloadFormat::Standard;
    minimal.previous_secret_encrypted = None;
    minimal.previous_secret_expires_at = None;
    minimal.failing_since = None;
    minimal.is_active = false;
    minimal.disabled_reason = Some("410 Gone".into());
    ctx.store.create_endpoint(&minimal).await.unwrap();

    // WHEN read back THEN every field survives, the serde-skipped ones too
    let got = ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap().expect("endpoint");
    assert_eq!(got.secret_encrypted, ep.secret_encrypted);
    assert_eq!(got.previous_secret_encrypted, ep.previous_secret_encrypted);
    assert_eq!(got.previous_secret_expires_at, ep.previous_secret_expires_at);
    assert_eq!(got.failing_since, ep.failing_since);
    assert_eq!(got, ep);
    assert_eq!(ctx.store.get_endpoint(&a.id, &minimal.id).await.unwrap(), Some(minimal));
    // AND another application cannot see it
    assert_eq!(ctx.store.get_endpoint(&b.id, &ep.id).await.unwrap(), None);
    assert!(
        ctx.store
            .list_endpoints(&b.id, &EndpointFilter::default(), &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // AND the same id cannot be created twice
    assert_conflict(ctx.store.create_endpoint(&ep).await);
}

pub async fn given_an_endpoint_when_updated_then_it_is_replaced_and_other_apps_cannot(ctx: Ctx) {
    // GIVEN an endpoint of A
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let ep = create_endpoint(&ctx, &a.id, &["invoice.paid"]).await;

    // WHEN B sends an update with the same id THEN false and nothing changes
    let mut foreign = ep.clone();
    foreign.application_id = b.id.clone();
    foreign.url = "https://evil.example.com".into();
    assert!(!ctx.store.update_endpoint(&foreign, ep.updated_at).await.unwrap());
    assert_eq!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap().as_ref(), Some(&ep));

    // WHEN A replaces every field THEN the stored endpoint is the new one
    let mut updated = ep.clone();
    updated.url = "https://hooks.example.com/v2".into();
    updated.description = None;
    updated.event_types = vec![];
    updated.headers = BTreeMap::from([("x-a".into(), "1".into()), ("x-b".into(), "2".into())]);
    updated.max_attempts = 3;
    updated.timeout_secs = 30;
    updated.payload_format = PayloadFormat::Standard;
    updated.is_active = false;
    updated.disabled_reason = Some("paused by user".into());
    updated.metadata = BTreeMap::new();
    updated.secret_encrypted = "v1:new".into();
    updated.secret_last4 = "9876".into();
    updated.previous_secret_encrypted = Some("v1:nonce:ciphertext-current".into());
    updated.previous_secret_expires_at = Some(ctx.now() + Duration::hours(24));
    updated.failing_since = None;
    updated.updated_at = ctx.tick();
    assert!(ctx.store.update_endpoint(&updated, ep.updated_at).await.unwrap());
    assert_eq!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap(), Some(updated.clone()));

    // WHEN a writer still holding the first version writes THEN it conflicts and changes nothing
    let mut stale = ep.clone();
    stale.url = "https://stale.example.com".into();
    stale.updated_at = ctx.tick();
    assert!(matches!(ctx.store.update_endpoint(&stale, ep.updated_at).await, Err(StoreError::Conflict(_))));
    assert_eq!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap(), Some(updated));

    // AND updating an unknown endpoint is false
    let ghost = endpoint(&ctx, &a.id, &[]);
    assert!(!ctx.store.update_endpoint(&ghost, ghost.updated_at).await.unwrap());
    assert_eq!(ctx.store.get_endpoint(&a.id, &ghost.id).await.unwrap(), None);
}

pub async fn given_an_endpoint_when_deleted_then_it_is_gone_for_its_application_only(ctx: Ctx) {
    // GIVEN an endpoint of A that already has a delivery
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let ep = create_endpoint(&ctx, &a.id, &[]).await;
    let (_, ds) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;

    // WHEN B deletes it THEN false and it stays
    assert!(!ctx.store.delete_endpoint(&b.id, &ep.id).await.unwrap());
    assert!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap().is_some());
    // WHEN A deletes it THEN it is gone, and a second delete is false
    assert!(ctx.store.delete_endpoint(&a.id, &ep.id).await.unwrap());
    assert_eq!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap(), None);
    assert!(!ctx.store.delete_endpoint(&a.id, &ep.id).await.unwrap());
    // AND its deliveries stay as history
    assert!(ctx.store.get_delivery(&a.id, &ds[0].id).await.unwrap().is_some());
}

pub async fn given_endpoints_when_listed_with_filters_then_only_matching_ones_come_back(ctx: Ctx) {
    // GIVEN endpoints of A: all types; invoice.paid; invoice.* (inactive); user.created
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let all = create_endpoint(&ctx, &a.id, &[]).await;
    let paid = create_endpoint(&ctx, &a.id, &["invoice.paid"]).await;
    let mut invoices = endpoint(&ctx, &a.id, &["invoice.paid", "invoice.failed"]);
    invoices.is_active = false;
    ctx.store.create_endpoint(&invoices).await.unwrap();
    let users = create_endpoint(&ctx, &a.id, &["user.created"]).await;
    // AND one of B that takes everything
    create_endpoint(&ctx, &b.id, &[]).await;

    let list = |is_active: Option<bool>, event_type: Option<&str>| {
        let store = ctx.store.clone();
        let app_id = a.id.clone();
        let filter = EndpointFilter { is_active, event_type: event_type.map(str::to_string) };
        async move {
            let page = store.list_endpoints(&app_id, &filter, &PageRequest::first(50)).await.unwrap();
            assert_eq!(page.next, None);
            page.items.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };

    // WHEN unfiltered THEN all four of A, newest first
    assert_eq!(list(None, None).await, ids([&users.id, &invoices.id, &paid.id, &all.id]));
    // WHEN by event type THEN those subscribed to it, and those with an empty list
    assert_eq!(list(None, Some("invoice.paid")).await, ids([&invoices.id, &paid.id, &all.id]));
    assert_eq!(list(None, Some("invoice.failed")).await, ids([&invoices.id, &all.id]));
    assert_eq!(list(None, Some("nothing.subscribes")).await, ids([&all.id]));
    // WHEN by activity THEN only active or only inactive
    assert_eq!(list(Some(true), None).await, ids([&users.id, &paid.id, &all.id]));
    assert_eq!(list(Some(false), None).await, ids([&invoices.id]));
    // WHEN both THEN both apply
    assert_eq!(list(Some(true), Some("invoice.paid")).await, ids([&paid.id, &all.id]));
    assert_eq!(list(Some(false), Some("user.created")).await, Vec::<Id>::new());
    // AND a prefix of a type name is not a match
    assert_eq!(list(None, Some("invoice")).await, ids([&all.id]));
}

pub async fn given_endpoints_when_listed_in_pages_then_none_is_missed_or_repeated(ctx: Ctx) {
    // GIVEN seven active endpoints for invoice.paid and two inactive ones
    let a = create_app(&ctx, "A").await;
    let mut expected = Vec::new();
    for i in 0..9 {
        let mut ep = endpoint(&ctx, &a.id, &["invoice.paid"]);
        ep.is_active = i % 4 != 1;
        ctx.store.create_endpoint(&ep).await.unwrap();
        if ep.is_active {
            expected.push(ep.id.clone());
        }
    }
    expected.reverse();
    // WHEN the active ones are listed three at a time
    let store = ctx.store.clone();
    let app_id = a.id.clone();
    let filter = EndpointFilter { is_active: Some(true), event_type: Some("invoice.paid".into()) };
    let pages = all_pages(3, |page| {
        let (store, app_id, filter) = (store.clone(), app_id.clone(), filter.clone());
        async move { store.list_endpoints(&app_id, &filter, &page).await }
    })
    .await;
    // THEN 3, 3, 1 and every one exactly once
    assert_eq!(sizes(&pages), vec![3, 3, 1]);
    let listed: Vec<Id> = pages.into_iter().flatten().map(|e| e.id).collect();
    assert_eq!(listed, expected);
}

pub async fn given_an_endpoint_when_failing_since_is_set_or_it_is_disabled_then_the_rest_is_untouched(ctx: Ctx) {
    // GIVEN an endpoint of A
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let ep = create_endpoint(&ctx, &a.id, &["invoice.paid"]).await;

    // WHEN its failure streak starts THEN only failing_since changes (and
    // updated_at moves on, so a concurrent read-modify-write conflicts)
    let since = ctx.tick();
    ctx.store.set_endpoint_failing_since(&a.id, &ep.id, Some(since)).await.unwrap();
    let got = ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap().unwrap();
    assert!(got.updated_at > ep.updated_at);
    assert_eq!(got, Endpoint { failing_since: Some(since), updated_at: got.updated_at, ..ep.clone() });
    // WHEN it is cleared THEN it is None
    let before = got.updated_at;
    ctx.store.set_endpoint_failing_since(&a.id, &ep.id, None).await.unwrap();
    let got = ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap().unwrap();
    assert!(got.updated_at > before);
    assert_eq!(got, Endpoint { failing_since: None, updated_at: got.updated_at, ..ep.clone() });
    // WHEN B tries either THEN A's endpoint does not change
    ctx.store.set_endpoint_failing_since(&b.id, &ep.id, Some(since)).await.unwrap();
    ctx.store.disable_endpoint(&b.id, &ep.id, "nope", since).await.unwrap();
    assert_eq!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap().unwrap().failing_since, None);
    assert!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap().unwrap().is_active);

    // WHEN A's endpoint is disabled THEN it is inactive with the reason, the rest as it was
    let when = ctx.tick();
    ctx.store.disable_endpoint(&a.id, &ep.id, "all deliveries failed for 5 days", when).await.unwrap();
    let got = ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap().unwrap();
    assert!(!got.is_active);
    assert_eq!(got.disabled_reason.as_deref(), Some("all deliveries failed for 5 days"));
    let expected = Endpoint {
        is_active: false,
        disabled_reason: got.disabled_reason.clone(),
        failing_since: None,
        updated_at: got.updated_at,
        ..ep.clone()
    };
    assert_eq!(got, expected);
}

pub async fn given_attempts_on_an_endpoint_when_stats_are_read_then_counts_latency_and_buckets_add_up(ctx: Ctx) {
    // GIVEN an endpoint with an old delivery (12:30, one failed attempt of 1000 ms)
    ctx.clock.set(at(12, 30));
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let ep = create_endpoint(&ctx, &a.id, &[]).await;
    let other = create_endpoint(&ctx, &a.id, &[]).await;
    let (_, mut old) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;
    record(&ctx, &mut old[0], ResponseStatus::Http(500), 1000, DeliveryStatus::Retrying).await;

    // AND from 13:00 four deliveries to it and one to another endpoint
    ctx.clock.set(at(13, 0));
    let since = ctx.now();
    let (_, ds) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep, &ep, &ep, &ep, &other]).await;
    let [mut d1, mut d2, _d3, mut d4, mut d5]: [Delivery; 5] = ds.try_into().unwrap();
    // d1: 500 at 13:05 (100 ms), then 200 at 13:15 (50 ms) -> succeeded
    ctx.clock.set(at(13, 5));
    record(&ctx, &mut d1, ResponseStatus::Http(500), 100, DeliveryStatus::Retrying).await;
    ctx.clock.set(at(13, 15));
    let last_success = ctx.now();
    record(&ctx, &mut d1, ResponseStatus::Http(200), 50, DeliveryStatus::Succeeded).await;
    // d2: timeout at 14:05 (300 ms) -> failed
    ctx.clock.set(at(14, 5));
    record(&ctx, &mut d2, ResponseStatus::Error(ErrorCode::Timeout), 300, DeliveryStatus::Failed).await;
    // d4: 503 at 14:10 (200 ms) -> retrying; d3 never tried -> pending
    ctx.clock.set(at(14, 10));
    let last_failure = ctx.now();
    record(&ctx, &mut d4, ResponseStatus::Http(503), 200, DeliveryStatus::Retrying).await;
    // the other endpoint: 200 at 14:20 (5 ms), not counted
    ctx.clock.set(at(14, 20));
    record(&ctx, &mut d5, ResponseStatus::Http(200), 5, DeliveryStatus::Succeeded).await;

    // WHEN the stats since 13:00 are read
    let stats = ctx.store.endpoint_stats(&a.id, &ep.id, since).await.unwrap();
    // THEN deliveries by status
    assert_eq!(stats.since, Some(since));
    assert_eq!(
        (stats.deliveries, stats.pending, stats.retrying, stats.succeeded, stats.failed),
        (4, 1, 1, 1, 1),
        "deliveries (total, pending, retrying, succeeded, failed)"
    );
    // AND attempts, with 2xx as the only success
    assert_eq!((stats.attempts, stats.successful_attempts, stats.failed_attempts), (4, 1, 3));
    assert_eq!(stats.avg_latency_ms, Some(162.5));
    assert_eq!(stats.p95_latency_ms, Some(300));
    assert_eq!(stats.last_success_at, Some(last_success));
    assert_eq!(stats.last_failure_at, Some(last_failure));
    // AND one bucket per hour with attempts, oldest first
    let buckets: Vec<_> = stats.hourly.iter().map(|h| (h.start, h.succeeded, h.failed, h.avg_latency_ms)).collect();
    assert_eq!(buckets, vec![(at(13, 0), 1, 1, Some(75.0)), (at(14, 0), 0, 2, Some(250.0))]);

    // WHEN read since 12:00 THEN the old delivery and attempt count too
    let stats = ctx.store.endpoint_stats(&a.id, &ep.id, at(12, 0)).await.unwrap();
    assert_eq!((stats.deliveries, stats.attempts, stats.failed_attempts), (5, 5, 4));
    assert_eq!(stats.p95_latency_ms, Some(1000));
    assert_eq!(stats.hourly.len(), 3);

    // WHEN another application asks about the endpoint THEN it sees nothing
    let stats = ctx.store.endpoint_stats(&b.id, &ep.id, at(12, 0)).await.unwrap();
    assert_eq!((stats.deliveries, stats.attempts), (0, 0));
    assert_eq!((stats.avg_latency_ms, stats.p95_latency_ms), (None, None));
    assert_eq!((stats.last_success_at, stats.last_failure_at), (None, None));
    assert!(stats.hourly.is_empty());
}

// ---------------------------------------------------------------------------
// Events

pub async fn given_an_event_when_inserted_then_get_returns_every_field(ctx: Ctx) {
    // GIVEN an event with every optional field set, and a plain one
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let ep = create_endpoint(&ctx, &a.id, &[]).await;
    let mut full = event(&ctx, &a.id, "endpoint.test");
    full.idempotency_key = Some("order-42".into());
    full.target_endpoint_id = Some(ep.id.clone());
    full.payload = json!({"big": "x".repeat(10_000), "unicode": "žluťoučký kůň 🐎", "n": -1.5e-7, "list": [{}, []]});
    let window_start = ctx.now() - Duration::hours(24);
    assert_eq!(ctx.store.insert_event(&full, window_start).await.unwrap(), InsertEvent::Created);
    let plain = insert_event(&ctx, &a.id, "invoice.paid").await;

    // WHEN read back THEN every field survives, the request hash too
    let got = ctx.store.get_event(&a.id, &full.id).await.unwrap().expect("event");
    assert_eq!(got.request_hash, full.request_hash);
    assert_eq!(got, full);
    assert_eq!(ctx.store.get_event(&a.id, &plain.id).await.unwrap(), Some(plain));
    // AND another application cannot see it
    assert_eq!(ctx.store.get_event(&b.id, &full.id).await.unwrap(), None);
    assert!(
        ctx.store.list_events(&b.id, &EventFilter::default(), &PageRequest::first(10)).await.unwrap().items.is_empty()
    );
}

pub async fn given_an_idempotency_key_when_reused_within_the_window_then_the_first_event_comes_back(ctx: Ctx) {
    // GIVEN an event of A published with key "order-42"
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let mut first = event(&ctx, &a.id, "invoice.paid");
    first.idempotency_key = Some("order-42".into());
    let window = |ctx: &Ctx| ctx.now() - Duration::hours(24);
    assert_eq!(ctx.store.insert_event(&first, window(&ctx)).await.unwrap(), InsertEvent::Created);

    // WHEN A publishes again with the same key an hour later
    ctx.clock.advance(Duration::hours(1));
    let mut second = event(&ctx, &a.id, "invoice.paid");
    second.idempotency_key = Some("order-42".into());
    second.request_hash = "another body".into();
    let outcome = ctx.store.insert_event(&second, window(&ctx)).await.unwrap();
    // THEN the first event comes back, whole, and nothing is written
    assert_eq!(outcome, InsertEvent::Existing(first.clone()));
    assert_eq!(ctx.store.get_event(&a.id, &second.id).await.unwrap(), None);
    let listed = ctx.store.list_events(&a.id, &EventFilter::default(), &PageRequest::first(10)).await.unwrap();
    assert_eq!(ids(listed.items.iter().map(|e| &e.id)), vec![first.id.clone()]);
    let awaiting = ctx.store.events_awaiting_fanout(10).await.unwrap();
    assert_eq!(ids(awaiting.iter().map(|e| &e.id)), vec![first.id.clone()]);

    // WHEN B uses the same key THEN it is B's own new event
    let mut theirs = event(&ctx, &b.id, "invoice.paid");
    theirs.idempotency_key = Some("order-42".into());
    assert_eq!(ctx.store.insert_event(&theirs, window(&ctx)).await.unwrap(), InsertEvent::Created);

    // WHEN A publishes twice without a key THEN both are new events
    let plain1 = event(&ctx, &a.id, "invoice.paid");
    let plain2 = event(&ctx, &a.id, "invoice.paid");
    assert_eq!(ctx.store.insert_event(&plain1, window(&ctx)).await.unwrap(), InsertEvent::Created);
    assert_eq!(ctx.store.insert_event(&plain2, window(&ctx)).await.unwrap(), InsertEvent::Created);
}

pub async fn given_an_idempotency_key_when_reused_after_the_window_then_a_new_event_is_created(ctx: Ctx) {
    // GIVEN an event of A published with key "order-42"
    let a = create_app(&ctx, "A").await;
    let mut first = event(&ctx, &a.id, "invoice.paid");
    first.idempotency_key = Some("order-42".into());
    let window = |ctx: &Ctx| ctx.now() - Duration::hours(24);
    assert_eq!(ctx.store.insert_event(&first, window(&ctx)).await.unwrap(), InsertEvent::Created);

    // WHEN the key is reused 25 hours later THEN a new event is created
    ctx.clock.advance(Duration::hours(25));
    let mut second = event(&ctx, &a.id, "invoice.paid");
    second.idempotency_key = Some("order-42".into());
    assert_eq!(ctx.store.insert_event(&second, window(&ctx)).await.unwrap(), InsertEvent::Created);
    assert_eq!(ctx.store.get_event(&a.id, &second.id).await.unwrap().as_ref(), Some(&second));
    // AND the first one is still there (history)
    assert!(ctx.store.get_event(&a.id, &first.id).await.unwrap().is_some());

    // WHEN reused again within the new window THEN the second event is the one that comes back
    ctx.clock.advance(Duration::hours(2));
    let mut third = event(&ctx, &a.id, "invoice.paid");
    third.idempotency_key = Some("order-42".into());
    assert_eq!(ctx.store.insert_event(&third, window(&ctx)).await.unwrap(), InsertEvent::Existing(second));
    assert_eq!(ctx.store.get_event(&a.id, &third.id).await.unwrap(), None);
}

pub async fn given_events_when_listed_with_filters_then_each_filter_narrows_the_result(ctx: Ctx) {
    // GIVEN five events of A: paid, failed, paid, failed, paid; the first fanned out to nobody
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let mut evs = Vec::new();
    for t in ["invoice.paid", "invoice.failed", "invoice.paid", "invoice.failed", "invoice.paid"] {
        evs.push(insert_event(&ctx, &a.id, t).await);
    }
    ctx.store.mark_event_fanned_out(&a.id, &evs[0].id, 0).await.unwrap();
    // AND one of B
    insert_event(&ctx, &b.id, "invoice.paid").await;

    let list = |filter: EventFilter| {
        let store = ctx.store.clone();
        let app_id = a.id.clone();
        async move {
            let page = store.list_events(&app_id, &filter, &PageRequest::first(50)).await.unwrap();
            assert_eq!(page.next, None);
            page.items.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    let pick = |idx: &[usize]| idx.iter().map(|&i| evs[i].id.clone()).collect::<Vec<_>>();

    // WHEN unfiltered THEN all of A's, newest first
    assert_eq!(list(EventFilter::default()).await, pick(&[4, 3, 2, 1, 0]));
    // WHEN by type
    let by_type = EventFilter { event_type: Some("invoice.failed".into()), ..EventFilter::default() };
    assert_eq!(list(by_type).await, pick(&[3, 1]));
    // WHEN by status
    let succeeded = EventFilter { status: Some(EventStatus::Succeeded), ..EventFilter::default() };
    assert_eq!(list(succeeded).await, pick(&[0]));
    let pending = EventFilter { status: Some(EventStatus::Pending), ..EventFilter::default() };
    assert_eq!(list(pending).await, pick(&[4, 3, 2, 1]));
    let failed = EventFilter { status: Some(EventStatus::Failed), ..EventFilter::default() };
    assert_eq!(list(failed).await, pick(&[]));
    // WHEN by time: from is inclusive, to exclusive
    let from = EventFilter { from: Some(evs[2].created_at), ..EventFilter::default() };
    assert_eq!(list(from).await, pick(&[4, 3, 2]));
    let to = EventFilter { to: Some(evs[2].created_at), ..EventFilter::default() };
    assert_eq!(list(to).await, pick(&[1, 0]));
    let window = EventFilter { from: Some(evs[1].created_at), to: Some(evs[4].created_at), ..EventFilter::default() };
    assert_eq!(list(window).await, pick(&[3, 2, 1]));
    // WHEN filters combine THEN all apply
    let combined = EventFilter {
        event_type: Some("invoice.paid".into()),
        status: Some(EventStatus::Pending),
        from: Some(evs[1].created_at),
        to: None,
    };
    assert_eq!(list(combined).await, pick(&[4, 2]));
}

pub async fn given_ten_events_when_listed_in_pages_with_a_filter_then_pages_are_complete(ctx: Ctx) {
    // GIVEN seven invoice.paid events interleaved with three others
    let a = create_app(&ctx, "A").await;
    let mut expected = Vec::new();
    for i in 0..10 {
        let t = if i % 3 == 2 { "user.created" } else { "invoice.paid" };
        let ev = insert_event(&ctx, &a.id, t).await;
        if t == "invoice.paid" {
            expected.push(ev.id);
        }
    }
    expected.reverse();
    // WHEN the invoice.paid ones are listed three at a time
    let store = ctx.store.clone();
    let app_id = a.id.clone();
    let filter = EventFilter { event_type: Some("invoice.paid".into()), ..EventFilter::default() };
    let pages = all_pages(3, |page| {
        let (store, app_id, filter) = (store.clone(), app_id.clone(), filter.clone());
        async move { store.list_events(&app_id, &filter, &page).await }
    })
    .await;
    // THEN 3, 3, 1, newest first, none missing or repeated
    assert_eq!(sizes(&pages), vec![3, 3, 1]);
    let listed: Vec<Id> = pages.into_iter().flatten().map(|e| e.id).collect();
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), listed.len());
    assert_eq!(listed, expected);
}

pub async fn given_events_when_their_expiry_passes_then_they_disappear_from_every_read(ctx: Ctx) {
    // GIVEN an event kept one hour, fanned out to an endpoint, with one attempt
    let a = create_app(&ctx, "A").await;
    let ep = create_endpoint(&ctx, &a.id, &[]).await;
    let mut short = event(&ctx, &a.id, "invoice.paid");
    short.expires_at = ctx.now() + Duration::hours(1);
    ctx.store.insert_event(&short, ctx.now() - Duration::hours(24)).await.unwrap();
    let mut d = delivery(&ctx, &short, &ep);
    ctx.store.insert_deliveries(std::slice::from_ref(&d)).await.unwrap();
    record(&ctx, &mut d, ResponseStatus::Http(500), 20, DeliveryStatus::Retrying).await;
    // AND an unfanned event kept one hour
    let mut outbox = event(&ctx, &a.id, "invoice.paid");
    outbox.expires_at = ctx.now() + Duration::hours(1);
    ctx.store.insert_event(&outbox, ctx.now() - Duration::hours(24)).await.unwrap();
    // AND an event kept 31 days
    let long = insert_event(&ctx, &a.id, "invoice.paid").await;
    ctx.store.mark_event_fanned_out(&a.id, &short.id, 1).await.unwrap();
    ctx.store.mark_event_fanned_out(&a.id, &long.id, 0).await.unwrap();

    // THEN before expiry everything is visible
    assert!(ctx.store.get_event(&a.id, &short.id).await.unwrap().is_some());
    assert!(ctx.store.get_delivery(&a.id, &d.id).await.unwrap().is_some());
    assert_eq!(ctx.store.list_attempts(&a.id, &d.id).await.unwrap().len(), 1);
    assert_eq!(ctx.store.events_awaiting_fanout(10).await.unwrap().len(), 1);

    // WHEN the clock passes the expiry
    ctx.clock.advance(Duration::hours(1) + Duration::seconds(1));

    // THEN the expired event, delivery and attempt are gone from gets and lists
    assert_eq!(ctx.store.get_event(&a.id, &short.id).await.unwrap(), None);
    assert_eq!(ctx.store.get_event(&a.id, &outbox.id).await.unwrap(), None);
    let listed = ctx.store.list_events(&a.id, &EventFilter::default(), &PageRequest::first(10)).await.unwrap();
    assert_eq!(ids(listed.items.iter().map(|e| &e.id)), vec![long.id.clone()]);
    assert_eq!(ctx.store.get_delivery(&a.id, &d.id).await.unwrap(), None);
    let deliveries =
        ctx.store.list_deliveries(&a.id, &DeliveryFilter::default(), &PageRequest::first(10)).await.unwrap();
    assert!(deliveries.items.is_empty());
    assert!(ctx.store.list_attempts(&a.id, &d.id).await.unwrap().is_empty());
    assert!(ctx.store.events_awaiting_fanout(10).await.unwrap().is_empty());
    // AND the stats no longer count them
    let stats = ctx.store.endpoint_stats(&a.id, &ep.id, ctx.now() - Duration::days(2)).await.unwrap();
    assert_eq!((stats.deliveries, stats.attempts), (0, 0));
    // AND the long-lived event is still there
    assert!(ctx.store.get_event(&a.id, &long.id).await.unwrap().is_some());
}

pub async fn given_events_awaiting_fanout_when_marked_then_they_leave_the_outbox_with_a_status(ctx: Ctx) {
    // GIVEN three events of A and one of B, none fanned out
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let e1 = insert_event(&ctx, &a.id, "invoice.paid").await;
    let e2 = insert_event(&ctx, &a.id, "invoice.paid").await;
    let e3 = insert_event(&ctx, &b.id, "invoice.paid").await;
    let e4 = insert_event(&ctx, &a.id, "invoice.paid").await;
    // THEN all await fan-out, oldest first, across applications
    let awaiting = ctx.store.events_awaiting_fanout(10).await.unwrap();
    assert_eq!(awaiting, vec![e1.clone(), e2.clone(), e3.clone(), e4.clone()]);
    assert_eq!(ids(ctx.store.events_awaiting_fanout(2).await.unwrap().iter().map(|e| &e.id)), ids([&e1.id, &e2.id]));

    // WHEN e2 is fanned out to no endpoint THEN it is done and succeeded
    ctx.store.mark_event_fanned_out(&a.id, &e2.id, 0).await.unwrap();
    let got = event_now(&ctx, &e2).await;
    assert!(got.fanned_out);
    assert_counts(&got, 0, 0, 0, EventStatus::Succeeded);
    // WHEN e1 is fanned out to two endpoints THEN it is done but pending
    ctx.store.mark_event_fanned_out(&a.id, &e1.id, 2).await.unwrap();
    let got = event_now(&ctx, &e1).await;
    assert!(got.fanned_out);
    assert_counts(&got, 2, 0, 0, EventStatus::Pending);
    // WHEN A tries to mark B's event THEN nothing changes
    ctx.store.mark_event_fanned_out(&a.id, &e3.id, 1).await.unwrap();
    assert!(!event_now(&ctx, &e3).await.fanned_out);
    // THEN only the unmarked ones still await fan-out
    let awaiting = ctx.store.events_awaiting_fanout(10).await.unwrap();
    assert_eq!(ids(awaiting.iter().map(|e| &e.id)), ids([&e3.id, &e4.id]));
    // AND the status filter sees the derived statuses
    let succeeded = EventFilter { status: Some(EventStatus::Succeeded), ..EventFilter::default() };
    let listed = ctx.store.list_events(&a.id, &succeeded, &PageRequest::first(10)).await.unwrap();
    assert_eq!(ids(listed.items.iter().map(|e| &e.id)), ids([&e2.id]));
}

// ---------------------------------------------------------------------------
// Deliveries

pub async fn given_deliveries_when_inserted_twice_then_the_second_insert_writes_nothing_new(ctx: Ctx) {
    // GIVEN an event and two endpoints of A
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let ep1 = create_endpoint(&ctx, &a.id, &[]).await;
    let ep2 = create_endpoint(&ctx, &a.id, &[]).await;
    let ev = insert_event(&ctx, &a.id, "invoice.paid").await;
    // AND a delivery with every field set
    let mut full = delivery(&ctx, &ev, &ep1);
    full.status = DeliveryStatus::Retrying;
    full.attempt_count = 2;
    full.response_status = Some(ResponseStatus::Error(ErrorCode::Tls));
    full.response_body = Some("handshake failure".into());
    full.error_message = Some("tls: bad certificate".into());
    full.timestamp_sent = Some(1_740_830_400);
    full.next_attempt_at = Some(ctx.now() + Duration::minutes(30));
    full.retry_of = Some(Id::new(IdKind::Delivery, ctx.now() - Duration::hours(1)));
    full.retried_by = Some(Id::new(IdKind::Delivery, ctx.now() + Duration::hours(1)));
    full.delivered_at = Some(ctx.now());
    full.max_attempts = 12;
    let plain = delivery(&ctx, &ev, &ep2);

    // WHEN inserted THEN both round-trip
    ctx.store.insert_deliveries(&[full.clone(), plain.clone()]).await.unwrap();
    assert_eq!(ctx.store.get_delivery(&a.id, &full.id).await.unwrap().as_ref(), Some(&full));
    assert_eq!(ctx.store.get_delivery(&a.id, &plain.id).await.unwrap().as_ref(), Some(&plain));
    assert_eq!(ctx.store.get_delivery(&b.id, &full.id).await.unwrap(), None);

    // WHEN the same ids are inserted again, changed, with one new delivery
    let mut changed = plain.clone();
    changed.status = DeliveryStatus::Failed;
    changed.attempt_count = 9;
    let ep3 = create_endpoint(&ctx, &a.id, &[]).await;
    let third = delivery(&ctx, &ev, &ep3);
    ctx.store.insert_deliveries(&[changed, third.clone()]).await.unwrap();
    // THEN the existing ones are unchanged and only the new one is added
    assert_eq!(ctx.store.get_delivery(&a.id, &plain.id).await.unwrap().as_ref(), Some(&plain));
    assert_eq!(ctx.store.get_delivery(&a.id, &third.id).await.unwrap().as_ref(), Some(&third));
    let all = ctx.store.list_deliveries(&a.id, &DeliveryFilter::default(), &PageRequest::first(10)).await.unwrap();
    assert_eq!(all.items.len(), 3);
    // AND an empty batch is fine
    ctx.store.insert_deliveries(&[]).await.unwrap();
}

pub async fn given_deliveries_when_listed_with_filters_then_each_filter_narrows_the_result(ctx: Ctx) {
    // GIVEN two endpoints and two events (paid, failed) of A: four deliveries
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let ep1 = create_endpoint(&ctx, &a.id, &[]).await;
    let ep2 = create_endpoint(&ctx, &a.id, &[]).await;
    let (paid, ds1) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep1, &ep2]).await;
    let (failed_ev, ds2) = fanned_out_event(&ctx, &a.id, "invoice.failed", &[&ep1, &ep2]).await;
    let [mut p1, p2]: [Delivery; 2] = ds1.try_into().unwrap();
    let [mut f1, mut f2]: [Delivery; 2] = ds2.try_into().unwrap();
    // p1 succeeded, p2 pending, f1 failed, f2 retrying
    record(&ctx, &mut p1, ResponseStatus::Http(204), 10, DeliveryStatus::Succeeded).await;
    record(&ctx, &mut f1, ResponseStatus::Http(400), 10, DeliveryStatus::Failed).await;
    record(&ctx, &mut f2, ResponseStatus::Error(ErrorCode::Connect), 10, DeliveryStatus::Retrying).await;
    // AND B has one of its own
    let ep_b = create_endpoint(&ctx, &b.id, &[]).await;
    fanned_out_event(&ctx, &b.id, "invoice.paid", &[&ep_b]).await;

    let list = |filter: DeliveryFilter| {
        let store = ctx.store.clone();
        let app_id = a.id.clone();
        async move {
            let page = store.list_deliveries(&app_id, &filter, &PageRequest::first(50)).await.unwrap();
            assert_eq!(page.next, None);
            page.items.into_iter().map(|d| d.id).collect::<Vec<_>>()
        }
    };
    let f = DeliveryFilter::default;

    // WHEN unfiltered THEN A's four, newest first
    assert_eq!(list(f()).await, ids([&f2.id, &f1.id, &p2.id, &p1.id]));
    // WHEN by each field
    assert_eq!(list(DeliveryFilter { status: Some(DeliveryStatus::Succeeded), ..f() }).await, ids([&p1.id]));
    assert_eq!(list(DeliveryFilter { status: Some(DeliveryStatus::Pending), ..f() }).await, ids([&p2.id]));
    assert_eq!(list(DeliveryFilter { status: Some(DeliveryStatus::Failed), ..f() }).await, ids([&f1.id]));
    assert_eq!(list(DeliveryFilter { status: Some(DeliveryStatus::Retrying), ..f() }).await, ids([&f2.id]));
    assert_eq!(list(DeliveryFilter { event_type: Some("invoice.paid".into()), ..f() }).await, ids([&p2.id, &p1.id]));
    assert_eq!(list(DeliveryFilter { event_id: Some(failed_ev.id.clone()), ..f() }).await, ids([&f2.id, &f1.id]));
    assert_eq!(list(DeliveryFilter { event_id: Some(paid.id.clone()), ..f() }).await, ids([&p2.id, &p1.id]));
    assert_eq!(list(DeliveryFilter { endpoint_id: Some(ep1.id.clone()), ..f() }).await, ids([&f1.id, &p1.id]));
    assert_eq!(list(DeliveryFilter { endpoint_id: Some(ep_b.id.clone()), ..f() }).await, Vec::<Id>::new());
    // from inclusive, to exclusive, on created_at
    assert_eq!(list(DeliveryFilter { from: Some(p2.created_at), ..f() }).await, ids([&f2.id, &f1.id, &p2.id]));
    assert_eq!(list(DeliveryFilter { to: Some(f1.created_at), ..f() }).await, ids([&p2.id, &p1.id]));
    // WHEN combined THEN all apply
    let combined = DeliveryFilter {
        endpoint_id: Some(ep2.id.clone()),
        event_type: Some("invoice.failed".into()),
        status: Some(DeliveryStatus::Retrying),
        from: Some(p1.created_at),
        to: Some(ctx.now() + Duration::seconds(1)),
        event_id: Some(failed_ev.id.clone()),
    };
    assert_eq!(list(combined).await, ids([&f2.id]));
}

pub async fn given_deliveries_when_listed_in_pages_then_none_is_missed_or_repeated(ctx: Ctx) {
    // GIVEN eight deliveries to one endpoint of A and one to another endpoint
    let a = create_app(&ctx, "A").await;
    let ep = create_endpoint(&ctx, &a.id, &[]).await;
    let other = create_endpoint(&ctx, &a.id, &[]).await;
    let mut expected = Vec::new();
    for i in 0..8 {
        let (_, ds) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;
        expected.push(ds[0].id.clone());
        if i == 3 {
            fanned_out_event(&ctx, &a.id, "invoice.paid", &[&other]).await;
        }
    }
    expected.reverse();
    // WHEN the endpoint's deliveries are listed three at a time
    let store = ctx.store.clone();
    let app_id = a.id.clone();
    let filter = DeliveryFilter { endpoint_id: Some(ep.id.clone()), ..DeliveryFilter::default() };
    let pages = all_pages(3, |page| {
        let (store, app_id, filter) = (store.clone(), app_id.clone(), filter.clone());
        async move { store.list_deliveries(&app_id, &filter, &page).await }
    })
    .await;
    // THEN 3, 3, 2, newest first, each once
    assert_eq!(sizes(&pages), vec![3, 3, 2]);
    assert_eq!(pages.into_iter().flatten().map(|d| d.id).collect::<Vec<_>>(), expected);
}

pub async fn given_a_delivery_when_an_attempt_is_recorded_then_delivery_and_attempt_round_trip(ctx: Ctx) {
    // GIVEN a pending delivery of A
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let ep = create_endpoint(&ctx, &a.id, &[]).await;
    let (_, ds) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;
    let mut d = ds.into_iter().next().unwrap();

    // WHEN a failed attempt and then a successful one are recorded
    ctx.clock.advance(Duration::seconds(5));
    let first = record(&ctx, &mut d, ResponseStatus::Error(ErrorCode::Timeout), 15_000, DeliveryStatus::Retrying).await;
    ctx.clock.advance(Duration::minutes(5));
    let second = record(&ctx, &mut d, ResponseStatus::Http(200), 42, DeliveryStatus::Succeeded).await;

    // THEN the delivery is stored as it stands after the last attempt
    assert_eq!(ctx.store.get_delivery(&a.id, &d.id).await.unwrap().as_ref(), Some(&d));
    assert_eq!(d.attempt_count, 2);
    // AND both attempts round-trip, in order, with every field
    let attempts = ctx.store.list_attempts(&a.id, &d.id).await.unwrap();
    assert_eq!(attempts, vec![first.clone(), second]);
    assert_eq!(attempts[0].application_id, a.id);
    assert_eq!(attempts[0].next_delay_secs, Some(300));
    assert_eq!(attempts[1].next_delay_secs, None);
    // AND another application sees no attempts
    assert!(ctx.store.list_attempts(&b.id, &d.id).await.unwrap().is_empty());
}

pub async fn given_a_stale_attempt_count_when_an_attempt_is_recorded_then_it_conflicts_and_writes_nothing(ctx: Ctx) {
    // GIVEN a delivery whose first attempt was recorded
    let a = create_app(&ctx, "A").await;
    let ep = create_endpoint(&ctx, &a.id, &[]).await;
    let (ev, ds) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;
    let pending = ds.into_iter().next().unwrap();
    let mut d = pending.clone();
    record(&ctx, &mut d, ResponseStatus::Http(500), 10, DeliveryStatus::Retrying).await;

    // WHEN a duplicate message records "the first attempt" again (expected count 0)
    let mut dup = pending.clone();
    dup.attempt_count = 1;
    dup.status = DeliveryStatus::Succeeded;
    dup.response_status = Some(ResponseStatus::Http(200));
    let attempt = DeliveryAttempt {
        id: Id::new(IdKind::Attempt, ctx.tick()),
        application_id: a.id.clone(),
        delivery_id: d.id.clone(),
        number: 1,
        started_at: ctx.now(),
        duration_ms: 5,
        response_status: ResponseStatus::Http(200),
        response: None,
        error: None,
        next_delay_secs: None,
        expires_at: d.expires_at,
    };
    let stale = AttemptRecord { delivery: dup, attempt, expected_attempt_count: 0 };
    // THEN it conflicts
    assert_conflict(ctx.store.record_attempt(&stale).await);
    // AND nothing was written: the delivery, its attempts and the event are as before
    assert_eq!(delivery_now(&ctx, &d).await, d);
    assert_eq!(ctx.store.list_attempts(&a.id, &d.id).await.unwrap().len(), 1);
    assert_counts(&event_now(&ctx, &ev).await, 1, 0, 0, EventStatus::Pending);
    // AND an attempt for a delivery that does not exist conflicts too
    let mut ghost = delivery(&ctx, &ev, &ep);
    ghost.id = Id::new(IdKind::Delivery, ctx.now());
    let record = AttemptRecord { delivery: ghost, attempt: stale.attempt.clone(), expected_attempt_count: 0 };
    assert_conflict(ctx.store.record_attempt(&record).await);
}

pub async fn given_deliveries_when_they_become_final_then_the_event_counters_and_status_follow(ctx: Ctx) {
    // GIVEN an event fanned out to two endpoints
    let a = create_app(&ctx, "A").await;
    let ep1 = create_endpoint(&ctx, &a.id, &[]).await;
    let ep2 = create_endpoint(&ctx, &a.id, &[]).await;
    let (ev, ds) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep1, &ep2]).await;
    let [mut d1, mut d2]: [Delivery; 2] = ds.try_into().unwrap();
    assert_counts(&event_now(&ctx, &ev).await, 2, 0, 0, EventStatus::Pending);

    // WHEN d1 fails once (not final) THEN the event does not move
    record(&ctx, &mut d1, ResponseStatus::Http(503), 10, DeliveryStatus::Retrying).await;
    assert_counts(&event_now(&ctx, &ev).await, 2, 0, 0, EventStatus::Pending);
    // WHEN d1 succeeds THEN one succeeded, still pending
    record(&ctx, &mut d1, ResponseStatus::Http(200), 10, DeliveryStatus::Succeeded).await;
    assert_counts(&event_now(&ctx, &ev).await, 2, 1, 0, EventStatus::Pending);
    // WHEN d2 exhausts its attempts THEN one failed, and the event failed
    record(&ctx, &mut d2, ResponseStatus::Error(ErrorCode::Dns), 10, DeliveryStatus::Failed).await;
    assert_counts(&event_now(&ctx, &ev).await, 2, 1, 1, EventStatus::Failed);
    // AND the status filter agrees
    let failed = EventFilter { status: Some(EventStatus::Failed), ..EventFilter::default() };
    let listed = ctx.store.list_events(&a.id, &failed, &PageRequest::first(10)).await.unwrap();
    assert_eq!(ids(listed.items.iter().map(|e| &e.id)), ids([&ev.id]));

    // GIVEN another event whose single delivery succeeds first try
    let (ev2, ds) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep1]).await;
    let mut d = ds.into_iter().next().unwrap();
    record(&ctx, &mut d, ResponseStatus::Http(201), 10, DeliveryStatus::Succeeded).await;
    // THEN it succeeded
    assert_counts(&event_now(&ctx, &ev2).await, 1, 1, 0, EventStatus::Succeeded);
    let succeeded = EventFilter { status: Some(EventStatus::Succeeded), ..EventFilter::default() };
    let listed = ctx.store.list_events(&a.id, &succeeded, &PageRequest::first(10)).await.unwrap();
    assert_eq!(ids(listed.items.iter().map(|e| &e.id)), ids([&ev2.id]));
}

pub async fn given_a_failed_delivery_when_retried_then_counters_move_back_and_a_second_retry_conflicts(ctx: Ctx) {
    // GIVEN an event whose only delivery failed
    let a = create_app(&ctx, "A").await;
    let ep = create_endpoint(&ctx, &a.id, &[]).await;
    let (ev, ds) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;
    let mut original = ds.into_iter().next().unwrap();
    record(&ctx, &mut original, ResponseStatus::Http(500), 10, DeliveryStatus::Failed).await;
    assert_counts(&event_now(&ctx, &ev).await, 1, 0, 1, EventStatus::Failed);

    // WHEN it is retried manually
    let now = ctx.tick();
    let retry = Delivery {
        id: Id::new(IdKind::Delivery, now),
        status: DeliveryStatus::Pending,
        attempt_count: 0,
        response_status: None,
        response_body: None,
        error_message: None,
        timestamp_sent: None,
        next_attempt_at: None,
        retry_of: Some(original.id.clone()),
        retried_by: None,
        delivered_at: None,
        created_at: now,
        updated_at: now,
        ..original.clone()
    };
    let marked = Delivery { retried_by: Some(retry.id.clone()), updated_at: now, ..original.clone() };
    ctx.store.insert_retry(&marked, &retry).await.unwrap();

    // THEN the retry is stored, the original points at it
    assert_eq!(ctx.store.get_delivery(&a.id, &retry.id).await.unwrap().as_ref(), Some(&retry));
    assert_eq!(delivery_now(&ctx, &original).await.retried_by, Some(retry.id.clone()));
    // AND the event's failure is taken back: pending again, same delivery count
    assert_counts(&event_now(&ctx, &ev).await, 1, 0, 0, EventStatus::Pending);

    // WHEN it is retried a second time THEN conflict, and nothing is written
    let second = Delivery { id: Id::new(IdKind::Delivery, ctx.tick()), ..retry.clone() };
    assert_conflict(ctx.store.insert_retry(&marked, &second).await);
    assert_eq!(ctx.store.get_delivery(&a.id, &second.id).await.unwrap(), None);
    assert_counts(&event_now(&ctx, &ev).await, 1, 0, 0, EventStatus::Pending);

    // WHEN the retry succeeds THEN the event succeeded
    let mut retry = retry;
    record(&ctx, &mut retry, ResponseStatus::Http(200), 10, DeliveryStatus::Succeeded).await;
    assert_counts(&event_now(&ctx, &ev).await, 1, 1, 0, EventStatus::Succeeded);
    // AND the superseded original no longer counts, even when listed
    let by_event = DeliveryFilter { event_id: Some(ev.id.clone()), ..DeliveryFilter::default() };
    let listed = ctx.store.list_deliveries(&a.id, &by_event, &PageRequest::first(10)).await.unwrap();
    assert_eq!(ids(listed.items.iter().map(|d| &d.id)), ids([&retry.id, &original.id]));
}

pub async fn given_a_delivery_when_deleted_then_it_and_its_attempts_leave_the_event_counters(ctx: Ctx) {
    // GIVEN an event fanned out to two endpoints; d1 succeeded after two attempts, d2 pending
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let ep1 = create_endpoint(&ctx, &a.id, &[]).await;
    let ep2 = create_endpoint(&ctx, &a.id, &[]).await;
    let (ev, ds) = fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep1, &ep2]).await;
    let [mut d1, mut d2]: [Delivery; 2] = ds.try_into().unwrap();
    record(&ctx, &mut d1, ResponseStatus::Http(500), 10, DeliveryStatus::Retrying).await;
    record(&ctx, &mut d1, ResponseStatus::Http(200), 10, DeliveryStatus::Succeeded).await;
    assert_counts(&event_now(&ctx, &ev).await, 2, 1, 0, EventStatus::Pending);

    // WHEN B deletes d1 THEN false and it stays
    assert!(!ctx.store.delete_delivery(&b.id, &d1.id).await.unwrap());
    assert!(ctx.store.get_delivery(&a.id, &d1.id).await.unwrap().is_some());

    // WHEN A deletes d1 THEN it and its attempts are gone
    assert!(ctx.store.delete_delivery(&a.id, &d1.id).await.unwrap());
    assert_eq!(ctx.store.get_delivery(&a.id, &d1.id).await.unwrap(), None);
    assert!(ctx.store.list_attempts(&a.id, &d1.id).await.unwrap().is_empty());
    assert!(!ctx.store.delete_delivery(&a.id, &d1.id).await.unwrap());
    // AND the event counts one delivery, none final
    assert_counts(&event_now(&ctx, &ev).await, 1, 0, 0, EventStatus::Pending);

    // WHEN d2 then fails THEN the event failed (1 of 1)
    record(&ctx, &mut d2, ResponseStatus::Http(410), 10, DeliveryStatus::Failed).await;
    assert_counts(&event_now(&ctx, &ev).await, 1, 0, 1, EventStatus::Failed);
    // WHEN d2 is deleted too THEN nothing is left to wait for: succeeded with no deliveries
    assert!(ctx.store.delete_delivery(&a.id, &d2.id).await.unwrap());
    assert_counts(&event_now(&ctx, &ev).await, 0, 0, 0, EventStatus::Succeeded);
}

pub async fn given_a_store_when_pinged_then_it_answers(ctx: Ctx) {
    // GIVEN a fresh store WHEN pinged THEN it answers and names its backend
    ctx.store.ping().await.unwrap();
    assert!(!ctx.store.backend_name().is_empty());
}

// ---------------------------------------------------------------------------
// Delivery controls on endpoints

pub async fn given_an_endpoint_with_delivery_controls_and_signing_keys_then_they_round_trip_through_every_write(
    ctx: Ctx,
) {
    // GIVEN an endpoint with every control changed (ordered, throttled, breaker
    // settings, a filter, both signature schemes, a public key) and signing keys
    let a = create_app(&ctx, "A").await;
    let mut ep = endpoint(&ctx, &a.id, &["invoice.paid"]);
    ep.controls = custom_controls();
    ep.signing_keys = custom_signing_keys();
    let list = |ctx: &Ctx| {
        let (store, app) = (ctx.store.clone(), a.id.clone());
        async move { store.list_endpoints(&app, &EndpointFilter::default(), &PageRequest::first(10)).await.unwrap() }
    };

    // WHEN created THEN get and list return it exactly
    ctx.store.create_endpoint(&ep).await.unwrap();
    assert_eq!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap(), Some(ep.clone()));
    assert_eq!(list(&ctx).await.items, vec![ep.clone()]);

    // WHEN replaced with other controls (one scheme, another filter, keys rotated)
    let mut updated = ep.clone();
    updated.controls.ordered = false;
    updated.controls.rate_limit = Some(50);
    updated.controls.circuit_breaker = CircuitBreakerSettings { enabled: true, ..ep.controls.circuit_breaker };
    updated.controls.filter = Some(PayloadFilter::parse(&json!({"field": "currency", "eq": "EUR"})).unwrap());
    updated.controls.signature_schemes = vec![SignatureScheme::Ed25519];
    updated.controls.public_key = Some("whpk_rotated".to_string());
    updated.signing_keys = SigningKeys {
        ed25519_encrypted: Some("v1:nonce:ed25519-new".to_string()),
        previous_ed25519_encrypted: ep.signing_keys.ed25519_encrypted.clone(),
    };
    updated.updated_at = ctx.tick();
    assert!(ctx.store.update_endpoint(&updated, ep.updated_at).await.unwrap());
    // THEN get and list return the new version exactly
    assert_eq!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap(), Some(updated.clone()));
    assert_eq!(list(&ctx).await.items, vec![updated.clone()]);

    // WHEN the failure streak is set THEN the controls and keys stay as they are
    ctx.store.set_endpoint_failing_since(&a.id, &ep.id, Some(ctx.now())).await.unwrap();
    let streak = ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap().expect("endpoint");
    assert_eq!((&streak.controls, &streak.signing_keys), (&updated.controls, &updated.signing_keys));

    // WHEN replaced with the defaults THEN the defaults read back
    let mut plain = streak.clone();
    plain.controls = DeliveryControls::default();
    plain.signing_keys = SigningKeys::default();
    plain.updated_at = ctx.tick();
    assert!(ctx.store.update_endpoint(&plain, streak.updated_at).await.unwrap());
    assert_eq!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap(), Some(plain.clone()));
    assert_eq!(list(&ctx).await.items, vec![plain]);
}

// ---------------------------------------------------------------------------
// Control state: records

pub async fn given_a_control_record_when_written_with_versions_then_only_the_expected_version_wins(ctx: Ctx) {
    // GIVEN applications A and B and a breaker key
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let key = Id::new(IdKind::Endpoint, ctx.tick()).to_string();
    let expires = ctx.now() + Duration::hours(1);
    let closed = r#"{"state":"closed"}"#;

    // WHEN A creates it (expected version 0) THEN it is stored at version 1
    assert!(ctx.store.put_record(&a.id, "breaker", &key, closed, 0, expires).await.unwrap());
    let v1 = StateRecord {
        kind: "breaker".to_string(),
        key: key.clone(),
        body: closed.to_string(),
        version: 1,
        expires_at: expires,
    };
    assert_eq!(ctx.store.get_record(&a.id, "breaker", &key).await.unwrap(), Some(v1.clone()));

    // WHEN it is created a second time THEN refused and unchanged
    assert!(!ctx.store.put_record(&a.id, "breaker", &key, r#"{"state":"open"}"#, 0, expires).await.unwrap());
    assert_eq!(ctx.store.get_record(&a.id, "breaker", &key).await.unwrap(), Some(v1.clone()));

    // WHEN written with the version read (1) THEN it is version 2 with the new body and expiry
    let later = expires + Duration::hours(1);
    assert!(ctx.store.put_record(&a.id, "breaker", &key, r#"{"state":"open"}"#, 1, later).await.unwrap());
    let v2 = StateRecord { body: r#"{"state":"open"}"#.to_string(), version: 2, expires_at: later, ..v1.clone() };
    assert_eq!(ctx.store.get_record(&a.id, "breaker", &key).await.unwrap(), Some(v2.clone()));

    // WHEN a writer still holding version 1, or one ahead (3), writes THEN refused and the body is unchanged
    assert!(!ctx.store.put_record(&a.id, "breaker", &key, r#"{"state":"half_open"}"#, 1, later).await.unwrap());
    assert!(!ctx.store.put_record(&a.id, "breaker", &key, r#"{"state":"half_open"}"#, 3, later).await.unwrap());
    assert_eq!(ctx.store.get_record(&a.id, "breaker", &key).await.unwrap(), Some(v2.clone()));

    // AND another kind under the same key is another record
    assert_eq!(ctx.store.get_record(&a.id, "replay", &key).await.unwrap(), None);

    // AND application B cannot see it, cannot update it, and creating its own leaves A's alone
    assert_eq!(ctx.store.get_record(&b.id, "breaker", &key).await.unwrap(), None);
    assert!(!ctx.store.put_record(&b.id, "breaker", &key, closed, 2, later).await.unwrap());
    assert!(ctx.store.put_record(&b.id, "breaker", &key, closed, 0, later).await.unwrap());
    assert_eq!(ctx.store.get_record(&b.id, "breaker", &key).await.unwrap().map(|r| r.version), Some(1));
    assert_eq!(ctx.store.get_record(&a.id, "breaker", &key).await.unwrap(), Some(v2));
    let b_records = ctx.store.list_records(&b.id, "breaker", "", &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(b_records.iter().map(|r| (r.body.as_str(), r.version)).collect::<Vec<_>>(), vec![(closed, 1)]);
}

pub async fn given_a_control_record_when_it_expires_then_it_reads_as_absent_and_can_be_created_again(ctx: Ctx) {
    // GIVEN a record at version 2 expiring in an hour (sub-second expiry on purpose)
    let a = create_app(&ctx, "A").await;
    let key = Id::new(IdKind::Endpoint, ctx.tick()).to_string();
    let expires = ctx.now() + Duration::hours(1);
    assert!(ctx.store.put_record(&a.id, "breaker", &key, "{}", 0, expires).await.unwrap());
    assert!(ctx.store.put_record(&a.id, "breaker", &key, r#"{"n":2}"#, 1, expires).await.unwrap());

    // WHEN the clock is one nanosecond before the expiry THEN it is still there
    ctx.clock.set(expires - Duration::nanoseconds(1));
    assert_eq!(ctx.store.get_record(&a.id, "breaker", &key).await.unwrap().map(|r| r.version), Some(2));
    assert_eq!(ctx.store.list_records(&a.id, "breaker", "", &PageRequest::first(10)).await.unwrap().items.len(), 1);

    // WHEN the expiry has passed
    ctx.clock.advance(Duration::seconds(1));
    // THEN gets and lists skip it
    assert_eq!(ctx.store.get_record(&a.id, "breaker", &key).await.unwrap(), None);
    let listed = ctx.store.list_records(&a.id, "breaker", "", &PageRequest::first(10)).await.unwrap();
    assert!(listed.items.is_empty());
    assert_eq!(listed.next, None);
    // AND its last version no longer counts
    assert!(
        !ctx.store.put_record(&a.id, "breaker", &key, r#"{"n":3}"#, 2, ctx.now() + Duration::hours(1)).await.unwrap()
    );
    assert_eq!(ctx.store.get_record(&a.id, "breaker", &key).await.unwrap(), None);

    // WHEN created again with expected version 0 THEN it starts over at version 1
    let renewed = ctx.now() + Duration::hours(1);
    assert!(ctx.store.put_record(&a.id, "breaker", &key, r#"{"n":1}"#, 0, renewed).await.unwrap());
    let got = ctx.store.get_record(&a.id, "breaker", &key).await.unwrap().expect("record");
    assert_eq!((got.body.as_str(), got.version, got.expires_at), (r#"{"n":1}"#, 1, renewed));
    // AND it is versioned from there
    assert!(ctx.store.put_record(&a.id, "breaker", &key, r#"{"n":2}"#, 1, renewed).await.unwrap());
    assert_eq!(ctx.store.get_record(&a.id, "breaker", &key).await.unwrap().map(|r| r.version), Some(2));
}

pub async fn given_control_records_when_listed_by_prefix_then_greatest_key_first_in_complete_pages(ctx: Ctx) {
    // GIVEN five replay records of endpoint E1, two of E2, a breaker record
    // under E1's prefix, an expiring replay of E1, and a replay of E1 in application B
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let e1 = Id::new(IdKind::Endpoint, ctx.tick());
    let e2 = Id::new(IdKind::Endpoint, ctx.tick());
    let day = ctx.now() + Duration::days(1);
    let mut e1_keys = Vec::new();
    for i in 0..5 {
        let key = replay_key(&ctx, &e1);
        assert!(ctx.store.put_record(&a.id, "replay", &key, &format!(r#"{{"n":{i}}}"#), 0, day).await.unwrap());
        e1_keys.push(key);
        if i == 2 {
            let short = replay_key(&ctx, &e1);
            let soon = ctx.now() + Duration::minutes(1);
            assert!(ctx.store.put_record(&a.id, "replay", &short, "{}", 0, soon).await.unwrap());
        }
    }
    let mut e2_keys = Vec::new();
    for _ in 0..2 {
        let key = replay_key(&ctx, &e2);
        assert!(ctx.store.put_record(&a.id, "replay", &key, "{}", 0, day).await.unwrap());
        e2_keys.push(key);
    }
    let breaker_key = format!("{e1}/breaker");
    assert!(ctx.store.put_record(&a.id, "breaker", &breaker_key, "{}", 0, day).await.unwrap());
    assert!(ctx.store.put_record(&b.id, "replay", &replay_key(&ctx, &e1), "{}", 0, day).await.unwrap());
    ctx.clock.advance(Duration::minutes(2));

    let list = |app: Id, kind: &'static str, prefix: String, limit: usize| {
        let store = ctx.store.clone();
        async move {
            all_pages(limit, |page| {
                let (store, app, prefix) = (store.clone(), app.clone(), prefix.clone());
                async move { store.list_records(&app, kind, &prefix, &page).await }
            })
            .await
        }
    };
    let keys = |pages: Vec<Vec<StateRecord>>| pages.into_iter().flatten().map(|r| r.key).collect::<Vec<_>>();

    // WHEN E1's replays are listed three at a time
    let pages = list(a.id.clone(), "replay", format!("{e1}/"), 3).await;
    // THEN two pages (3, 2), newest (greatest key) first, the expired one, E2's, the breaker and B's left out
    assert_eq!(sizes(&pages), vec![3, 2]);
    assert!(pages.iter().flatten().all(|r| r.kind == "replay" && r.expires_at == day));
    let mut newest_first = e1_keys.clone();
    newest_first.reverse();
    assert_eq!(keys(pages), newest_first);
    // AND the versions and bodies come back
    let first = ctx.store.list_records(&a.id, "replay", &format!("{e1}/"), &PageRequest::first(1)).await.unwrap();
    assert_eq!((first.items[0].body.as_str(), first.items[0].version), (r#"{"n":4}"#, 1));
    assert!(first.next.is_some());

    // WHEN E2's are listed THEN only those
    let mut e2_newest_first = e2_keys.clone();
    e2_newest_first.reverse();
    assert_eq!(keys(list(a.id.clone(), "replay", format!("{e2}/"), 10).await), e2_newest_first);
    // WHEN every replay of A is listed (empty prefix) THEN E2's (greater keys) come before E1's
    let all: Vec<String> = e2_newest_first.iter().chain(newest_first.iter()).cloned().collect();
    assert_eq!(keys(list(a.id.clone(), "replay", String::new(), 4).await), all);
    // WHEN the other kind is listed under E1's prefix THEN only the breaker record
    assert_eq!(keys(list(a.id.clone(), "breaker", format!("{e1}/"), 10).await), vec![breaker_key]);
    // WHEN a prefix nothing has is listed THEN an empty last page
    assert_eq!(keys(list(a.id.clone(), "replay", format!("{e1}/zzz"), 10).await), Vec::<String>::new());
    // AND B sees only its own
    assert_eq!(list(b.id.clone(), "replay", format!("{e1}/"), 10).await.concat().len(), 1);
}

// ---------------------------------------------------------------------------
// Control state: counters

pub async fn given_counters_when_added_to_then_they_accumulate_and_a_limit_refuses_without_change(ctx: Ctx) {
    // GIVEN applications A and B and a window key
    let a = create_app(&ctx, "A").await;
    let b = create_app(&ctx, "B").await;
    let key = format!("rate/{}/{}", Id::new(IdKind::Endpoint, ctx.tick()), ctx.now().timestamp());
    let expires = ctx.now() + Duration::minutes(1);

    // WHEN added to THEN the pair starts at zero and returns the new values
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [1, 0], None, expires).await.unwrap(), Some([1, 0]));
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [2, 5], None, expires).await.unwrap(), Some([3, 5]));

    // WHEN a limit of 4 would be exceeded (3 + 2) THEN refused and nothing changes
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [2, 1], Some(4), expires).await.unwrap(), None);
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [0, 0], None, expires).await.unwrap(), Some([3, 5]));
    // WHEN the first counter reaches the limit exactly THEN allowed; one more is refused
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [1, 1], Some(4), expires).await.unwrap(), Some([4, 6]));
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [1, 0], Some(4), expires).await.unwrap(), None);
    // AND the limit looks at the first counter only
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [0, 10], Some(4), expires).await.unwrap(), Some([4, 16]));

    // WHEN a new pair's first delta alone exceeds the limit THEN refused and nothing is created
    let fresh = format!("{key}/fresh");
    assert_eq!(ctx.store.add_to_counters(&a.id, &fresh, [5, 1], Some(4), expires).await.unwrap(), None);
    assert_eq!(ctx.store.add_to_counters(&a.id, &fresh, [0, 0], None, expires).await.unwrap(), Some([0, 0]));

    // WHEN B adds under the same key THEN it has its own pair and A's is untouched
    assert_eq!(ctx.store.add_to_counters(&b.id, &key, [1, 1], Some(4), expires).await.unwrap(), Some([1, 1]));
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [0, 0], None, expires).await.unwrap(), Some([4, 16]));
    assert_eq!(ctx.store.add_to_counters(&b.id, &key, [0, 0], None, expires).await.unwrap(), Some([1, 1]));

    // AND a plain read sees the same pairs, and [0, 0] for none
    assert_eq!(ctx.store.get_counters(&a.id, &key).await.unwrap(), [4, 16]);
    assert_eq!(ctx.store.get_counters(&b.id, &key).await.unwrap(), [1, 1]);
    assert_eq!(ctx.store.get_counters(&a.id, &format!("{key}/never")).await.unwrap(), [0, 0]);
}

pub async fn given_counters_when_they_expire_then_they_restart_from_zero_with_the_new_expiry(ctx: Ctx) {
    // GIVEN a pair at its limit (4 of 4), created to expire in a minute
    let a = create_app(&ctx, "A").await;
    let key = format!("breaker/{}", Id::new(IdKind::Endpoint, ctx.tick()));
    let expires = ctx.now() + Duration::minutes(1);
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [4, 2], Some(4), expires).await.unwrap(), Some([4, 2]));
    // (a later add with a later expiry does not extend it: the expiry is the creation's)
    let much_later = ctx.now() + Duration::hours(1);
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [0, 1], Some(4), much_later).await.unwrap(), Some([4, 3]));

    // WHEN one nanosecond before the expiry THEN the pair still counts
    ctx.clock.set(expires - Duration::nanoseconds(1));
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [1, 0], Some(4), much_later).await.unwrap(), None);
    assert_eq!(ctx.store.get_counters(&a.id, &key).await.unwrap(), [4, 3]);

    // WHEN the expiry has passed THEN it restarts from zero (the limit applies to the new window)
    ctx.clock.advance(Duration::seconds(1));
    assert_eq!(ctx.store.get_counters(&a.id, &key).await.unwrap(), [0, 0]);
    let next_window = ctx.now() + Duration::minutes(1);
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [1, 0], Some(4), next_window).await.unwrap(), Some([1, 0]));
    // AND accumulates from there
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [2, 7], Some(4), much_later).await.unwrap(), Some([3, 7]));
    // AND an expired pair refuses a delta over the limit without restarting
    ctx.clock.set(next_window + Duration::seconds(1));
    let third_window = ctx.now() + Duration::minutes(1);
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [5, 0], Some(4), third_window).await.unwrap(), None);
    // AND the new window has the new expiry: it is gone once that passes
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [0, 1], None, third_window).await.unwrap(), Some([0, 1]));
    ctx.clock.set(third_window + Duration::seconds(1));
    assert_eq!(ctx.store.add_to_counters(&a.id, &key, [0, 0], None, much_later).await.unwrap(), Some([0, 0]));
}

pub async fn given_an_application_with_control_state_when_deleted_then_its_records_and_counters_are_gone(ctx: Ctx) {
    // GIVEN applications A and B, each with records of two kinds and counters
    let a = create_app(&ctx, "doomed").await;
    let b = create_app(&ctx, "survivor").await;
    let ep = Id::new(IdKind::Endpoint, ctx.tick());
    let day = ctx.now() + Duration::days(1);
    let replay = replay_key(&ctx, &ep);
    for app in [&a, &b] {
        assert!(ctx.store.put_record(&app.id, "breaker", ep.as_str(), "{}", 0, day).await.unwrap());
        assert!(ctx.store.put_record(&app.id, "replay", &replay, "{}", 0, day).await.unwrap());
        for window in 0..3 {
            let key = format!("rate/{ep}/{window}");
            assert_eq!(ctx.store.add_to_counters(&app.id, &key, [2, 1], None, day).await.unwrap(), Some([2, 1]));
        }
    }

    // WHEN A is deleted
    assert!(ctx.store.delete_application(&a.id).await.unwrap());

    // THEN A's records are gone from gets and lists
    assert_eq!(ctx.store.get_record(&a.id, "breaker", ep.as_str()).await.unwrap(), None);
    assert_eq!(ctx.store.get_record(&a.id, "replay", &replay).await.unwrap(), None);
    assert!(ctx.store.list_records(&a.id, "replay", "", &PageRequest::first(10)).await.unwrap().items.is_empty());
    // AND its counters start from zero again
    for window in 0..3 {
        let key = format!("rate/{ep}/{window}");
        assert_eq!(ctx.store.add_to_counters(&a.id, &key, [0, 0], None, day).await.unwrap(), Some([0, 0]));
    }
    // AND B keeps all of its own
    assert_eq!(ctx.store.get_record(&b.id, "breaker", ep.as_str()).await.unwrap().map(|r| r.version), Some(1));
    assert_eq!(ctx.store.list_records(&b.id, "replay", "", &PageRequest::first(10)).await.unwrap().items.len(), 1);
    for window in 0..3 {
        let key = format!("rate/{ep}/{window}");
        assert_eq!(ctx.store.add_to_counters(&b.id, &key, [0, 0], None, day).await.unwrap(), Some([2, 1]));
    }
}
