//! The store conformance suite against `DynamoStore` on moto (a fresh table
//! per test), plus what only the DynamoDB design promises: sharded listing,
//! optimistic concurrency under real concurrency, all-or-nothing
//! transactions, `expiresAt` on every item, and the key layout.

#[macro_use]
mod conformance;
mod moto;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration as StdDuration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::{BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents, SharedInterceptor};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Duration;
use skyhook::adapters::aws::dynamodb::{
    self, APP_PK, DynamoStore, EP_PK, INDEX_BY_APP, LIST_SHARDS, PK, SK, TTL_ATTRIBUTE,
};
use skyhook::domain::{Delivery, DeliveryAttempt, DeliveryStatus, Event, EventStatus, Id, IdKind, ResponseStatus};
use skyhook::ports::{
    AttemptRecord, DeliveryFilter, EventFilter, InsertEvent, ManualClock, PageRequest, Store, StoreError,
};

use conformance::Ctx;

type Item = HashMap<String, AttributeValue>;

async fn client() -> Client {
    Client::new(&moto::sdk_config().await)
}

/// A fresh, empty table, and a store on it reading `clock`.
async fn fresh(clock: Arc<ManualClock>) -> (DynamoStore, Client, String) {
    let client = client().await;
    let table = moto::unique("skyhook-store");
    DynamoStore::create_table(&client, &table).await.expect("create the table on moto");
    (DynamoStore::new(client.clone(), table.clone(), clock), client, table)
}

async fn make_store(clock: Arc<ManualClock>) -> Arc<dyn Store> {
    Arc::new(fresh(clock).await.0)
}

store_conformance_tests!(make_store);

async fn ctx() -> (Ctx, DynamoStore, Client, String) {
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let (store, client, table) = fresh(clock.clone()).await;
    (Ctx { store: Arc::new(store.clone()), clock }, store, client, table)
}

/// Every item of the table (moto never deletes by TTL, so this is all ever written).
async fn scan_all(client: &Client, table: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client.scan().table_name(table).set_exclusive_start_key(start).send().await.unwrap();
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    items
}

fn s<'a>(item: &'a Item, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v,
        _ => "",
    }
}

#[tokio::test]
async fn given_a_dynamodb_store_then_it_names_its_backend_and_answers_pings() {
    let (ctx, store, _, _) = ctx().await;
    assert_eq!(store.backend_name(), "dynamodb");
    ctx.store.ping().await.unwrap();
}

#[tokio::test]
async fn given_a_missing_table_when_pinged_then_the_store_is_unavailable() {
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let store = DynamoStore::new(client().await, moto::unique("no-such-table"), clock);
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
}

#[tokio::test]
async fn given_the_table_exists_when_created_again_then_it_is_fine() {
    let (_, _, client, table) = ctx().await;
    DynamoStore::create_table(&client, &table).await.unwrap();
    let described = client.describe_table().table_name(&table).send().await.unwrap().table.unwrap();
    let mut indexes: Vec<String> =
        described.global_secondary_indexes().iter().filter_map(|i| i.index_name().map(str::to_string)).collect();
    indexes.sort();
    assert_eq!(indexes, vec!["byApp", "byEndpoint", "byOwner"]);
    let stream = described.stream_specification().expect("a stream");
    assert!(stream.stream_enabled());
    assert_eq!(stream.stream_view_type().map(|v| v.as_str()), Some(dynamodb::STREAM_VIEW_TYPE));
    let ttl = client.describe_time_to_live().table_name(&table).send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.attribute_name()), Some(TTL_ATTRIBUTE));
}

#[tokio::test]
async fn given_many_events_across_shards_when_listed_in_pages_then_newest_first_with_no_dup_or_miss() {
    // GIVEN 40 events of one application (they spread over the shards) and some of another
    let (ctx, _, client, table) = ctx().await;
    let a = conformance::create_app(&ctx, "A").await;
    let b = conformance::create_app(&ctx, "B").await;
    let mut events = Vec::new();
    for i in 0..40 {
        events.push(
            conformance::insert_event(&ctx, &a.id, if i % 4 == 3 { "user.created" } else { "invoice.paid" }).await,
        );
        if i % 10 == 0 {
            conformance::insert_event(&ctx, &b.id, "invoice.paid").await;
        }
    }
    let newest_first = |pick: &dyn Fn(usize, &skyhook::domain::Event) -> bool| -> Vec<Id> {
        events.iter().enumerate().rev().filter(|(i, e)| pick(*i, e)).map(|(_, e)| e.id.clone()).collect()
    };
    // AND they really are on several index partitions
    let partitions: HashSet<String> = scan_all(&client, &table)
        .await
        .iter()
        .filter(|i| dynamodb::is_event_key(s(i, PK)) && s(i, APP_PK).contains(a.id.as_str()))
        .map(|i| s(i, APP_PK).to_string())
        .collect();
    assert!(partitions.len() >= 4, "40 events landed on only {} shards", partitions.len());
    assert!(partitions.len() <= LIST_SHARDS as usize);

    let list = |filter: EventFilter, limit: usize| {
        let store = ctx.store.clone();
        let app_id = a.id.clone();
        async move {
            let pages = conformance::all_pages(limit, |page| {
                let (store, app_id, filter) = (store.clone(), app_id.clone(), filter.clone());
                async move { store.list_events(&app_id, &filter, &page).await }
            })
            .await;
            let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
            let listed: Vec<Id> = pages.into_iter().flatten().map(|e| e.id).collect();
            assert_eq!(listed.iter().collect::<HashSet<_>>().len(), listed.len(), "no event twice");
            (sizes, listed)
        }
    };

    // WHEN listed 15 at a time THEN 15, 15, 10, newest first across the shards, each once
    let (sizes, listed) = list(EventFilter::default(), 15).await;
    assert_eq!(sizes, vec![15, 15, 10]);
    assert_eq!(listed, newest_first(&|_, _| true));

    // WHEN a time window [events[10], events[35]) is listed 7 at a time THEN 25 events: 7, 7, 7, 4
    let window =
        EventFilter { from: Some(events[10].created_at), to: Some(events[35].created_at), ..EventFilter::default() };
    let (sizes, listed) = list(window.clone(), 7).await;
    assert_eq!(sizes, vec![7, 7, 7, 4]);
    assert_eq!(listed, newest_first(&|i, _| (10..35).contains(&i)));

    // WHEN the window is also filtered by type THEN only those, still complete
    let typed = EventFilter { event_type: Some("invoice.paid".into()), ..window };
    let (_, listed) = list(typed, 4).await;
    assert_eq!(listed, newest_first(&|i, e| (10..35).contains(&i) && e.event_type == "invoice.paid"));
}

#[tokio::test]
async fn given_many_deliveries_of_one_endpoint_when_listed_in_pages_then_none_is_missed_or_repeated() {
    // GIVEN 25 deliveries to one endpoint (over its shards), 5 of them failed
    let (ctx, _, _, _) = ctx().await;
    let a = conformance::create_app(&ctx, "A").await;
    let ep = conformance::create_endpoint(&ctx, &a.id, &[]).await;
    let mut expected = Vec::new();
    let mut failed = Vec::new();
    for i in 0..25 {
        let (_, ds) = conformance::fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;
        let mut d = ds.into_iter().next().unwrap();
        if i % 5 == 0 {
            conformance::record(&ctx, &mut d, ResponseStatus::Http(500), 5, DeliveryStatus::Failed).await;
            failed.push(d.id.clone());
        }
        expected.push(d.id);
    }
    expected.reverse();
    failed.reverse();
    for (filter, want) in [
        (DeliveryFilter { endpoint_id: Some(ep.id.clone()), ..DeliveryFilter::default() }, &expected),
        (DeliveryFilter::default(), &expected),
        (
            DeliveryFilter {
                endpoint_id: Some(ep.id.clone()),
                status: Some(DeliveryStatus::Failed),
                ..DeliveryFilter::default()
            },
            &failed,
        ),
        (DeliveryFilter { status: Some(DeliveryStatus::Failed), ..DeliveryFilter::default() }, &failed),
    ] {
        let store = ctx.store.clone();
        let app_id = a.id.clone();
        let pages = conformance::all_pages(2, |page| {
            let (store, app_id, filter) = (store.clone(), app_id.clone(), filter.clone());
            async move { store.list_deliveries(&app_id, &filter, &page).await }
        })
        .await;
        let listed: Vec<Id> = pages.into_iter().flatten().map(|d| d.id).collect();
        assert_eq!(&listed, want, "filter {filter:?}");
    }
}

/// Makes moto's transactions behave like DynamoDB's under concurrency.
///
/// moto runs requests on threads and a transaction snapshots and restores
/// whole tables, so two truly simultaneous transactions can both pass their
/// conditions (or one can undo the other). This interceptor lets one request
/// at a time reach moto (DynamoDB serialises conflicting writes itself), and
/// — when armed with `n` — holds the next `n` `TransactWriteItems` until all
/// `n` have arrived, so every caller has done its read before any of them
/// writes: the worst-case race, every time.
#[derive(Debug, Default)]
struct TransactionGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    arriving: usize,
    busy: bool,
}

impl TransactionGate {
    fn arm(&self, n: usize) {
        self.state.lock().unwrap().arriving = n;
    }

    fn is_transaction(request: Option<&aws_sdk_dynamodb::config::http::HttpRequest>) -> bool {
        request.and_then(|r| r.headers().get("x-amz-target")).is_some_and(|t| t.ends_with(".TransactWriteItems"))
    }
}

impl Intercept for TransactionGate {
    fn name(&self) -> &'static str {
        "TransactionGate"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let transaction = Self::is_transaction(Some(context.request()));
        tokio::task::block_in_place(|| {
            let deadline = Instant::now() + StdDuration::from_secs(10);
            let mut state = self.state.lock().unwrap();
            if transaction && state.arriving > 0 {
                state.arriving -= 1;
                self.changed.notify_all();
                while state.arriving > 0 && Instant::now() < deadline {
                    state = self.changed.wait_timeout(state, deadline - Instant::now()).unwrap().0;
                }
            }
            while state.busy {
                state = self.changed.wait(state).unwrap();
            }
            state.busy = true;
        });
        Ok(())
    }

    fn read_after_attempt(
        &self,
        _: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.state.lock().unwrap().busy = false;
        self.changed.notify_all();
        Ok(())
    }
}

/// A fresh table and a store whose client goes through `gate`.
async fn gated(gate: Arc<TransactionGate>) -> Ctx {
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let (_, plain, table) = fresh(clock.clone()).await;
    let config = plain.config().to_builder().interceptor(SharedInterceptor::new(ArcGate(gate))).build();
    let store = DynamoStore::new(Client::from_conf(config), table, clock.clone());
    Ctx { store: Arc::new(store), clock }
}

/// `Intercept` for a shared gate.
#[derive(Debug)]
struct ArcGate(Arc<TransactionGate>);

impl Intercept for ArcGate {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.read_before_transmit(context, rc, cfg)
    }
    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.read_after_attempt(context, rc, cfg)
    }
}

fn attempt_for(ctx: &Ctx, d: &Delivery, number: u32) -> DeliveryAttempt {
    DeliveryAttempt {
        id: Id::new(IdKind::Attempt, ctx.tick()),
        application_id: d.application_id.clone(),
        delivery_id: d.id.clone(),
        number,
        started_at: ctx.now(),
        duration_ms: 7,
        response_status: ResponseStatus::Http(200),
        response: Some("ok".into()),
        error: None,
        next_delay_secs: None,
        expires_at: d.expires_at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_two_concurrent_attempts_with_the_same_expected_count_then_exactly_one_is_recorded() {
    // GIVEN a pending delivery
    let gate = Arc::new(TransactionGate::default());
    let ctx = gated(gate.clone()).await;
    let a = conformance::create_app(&ctx, "A").await;
    let ep = conformance::create_endpoint(&ctx, &a.id, &[]).await;
    let (ev, ds) = conformance::fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;
    let pending = ds.into_iter().next().unwrap();

    for round in 0..3u32 {
        // WHEN two workers record "the next attempt" at the same time (same expected count)
        let current = ctx.store.get_delivery(&a.id, &pending.id).await.unwrap().unwrap();
        let records: Vec<AttemptRecord> = (0..2)
            .map(|worker| {
                let mut d = current.clone();
                d.attempt_count += 1;
                d.status = DeliveryStatus::Retrying;
                d.response_status = Some(ResponseStatus::Http(500 + worker));
                let mut attempt = attempt_for(&ctx, &d, d.attempt_count);
                attempt.response_status = ResponseStatus::Http(500 + worker);
                AttemptRecord { delivery: d, attempt, expected_attempt_count: current.attempt_count }
            })
            .collect();
        // (both read the delivery before either writes)
        gate.arm(2);
        let tasks: Vec<_> = records
            .into_iter()
            .map(|record| {
                let store = ctx.store.clone();
                tokio::spawn(async move { store.record_attempt(&record).await })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => ok += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        // THEN exactly one succeeds and one attempt per round is stored
        assert_eq!(ok, 1, "round {round}");
        let stored = ctx.store.get_delivery(&a.id, &pending.id).await.unwrap().unwrap();
        assert_eq!(stored.attempt_count, round + 1);
        assert_eq!(ctx.store.list_attempts(&a.id, &pending.id).await.unwrap().len() as u32, round + 1);
    }
    let event = ctx.store.get_event(&a.id, &ev.id).await.unwrap().unwrap();
    assert_eq!((event.succeeded_count, event.failed_count, event.status), (0, 0, EventStatus::Pending));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_many_deliveries_of_one_event_finishing_at_once_then_every_final_one_is_counted() {
    // GIVEN an event fanned out to six endpoints
    let ctx = gated(Arc::new(TransactionGate::default())).await;
    let a = conformance::create_app(&ctx, "A").await;
    let mut endpoints = Vec::new();
    for _ in 0..6 {
        endpoints.push(conformance::create_endpoint(&ctx, &a.id, &[]).await);
    }
    let refs: Vec<_> = endpoints.iter().collect();
    let (ev, ds) = conformance::fanned_out_event(&ctx, &a.id, "invoice.paid", &refs).await;
    // WHEN all six record their final attempt concurrently (contending on the event's counters)
    let tasks: Vec<_> = ds
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let mut after = d.clone();
            after.attempt_count = 1;
            after.status = if i % 3 == 0 { DeliveryStatus::Failed } else { DeliveryStatus::Succeeded };
            let record =
                AttemptRecord { attempt: attempt_for(&ctx, &after, 1), delivery: after, expected_attempt_count: 0 };
            let store = ctx.store.clone();
            tokio::spawn(async move { store.record_attempt(&record).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // THEN the counters add up and the event failed
    let event = ctx.store.get_event(&a.id, &ev.id).await.unwrap().unwrap();
    assert_eq!((event.delivery_count, event.succeeded_count, event.failed_count), (6, 4, 2));
    assert_eq!(event.status, EventStatus::Failed);
}

#[tokio::test]
async fn given_a_transaction_that_fails_then_no_item_is_half_written() {
    let (ctx, _, client, table) = ctx().await;
    let a = conformance::create_app(&ctx, "A").await;

    // GIVEN an API key WHEN another key reuses its hash THEN conflict and neither item of the second exists
    let first = conformance::api_key(&ctx, &a.id, "first");
    ctx.store.create_api_key(&first).await.unwrap();
    let second =
        skyhook::domain::ApiKey { key_hash: first.key_hash.clone(), ..conformance::api_key(&ctx, &a.id, "second") };
    assert!(matches!(ctx.store.create_api_key(&second).await, Err(StoreError::Conflict(_))));
    assert_eq!(ctx.store.get_api_key(&second.id).await.unwrap(), None);
    assert_eq!(ctx.store.find_api_key_by_hash(&first.key_hash).await.unwrap(), Some(first.clone()));

    // GIVEN a delivery WHEN an attempt whose item already exists is recorded
    let ep = conformance::create_endpoint(&ctx, &a.id, &[]).await;
    let (ev, ds) = conformance::fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;
    let mut d = ds.into_iter().next().unwrap();
    let first_attempt =
        conformance::record(&ctx, &mut d, ResponseStatus::Http(500), 10, DeliveryStatus::Retrying).await;
    let before_items = scan_all(&client, &table).await.len();
    // (a record claiming attempt number 1 again, with the current count expected)
    let mut after = d.clone();
    after.attempt_count = 2;
    after.status = DeliveryStatus::Succeeded;
    let clash = AttemptRecord {
        attempt: DeliveryAttempt { number: 1, ..attempt_for(&ctx, &after, 1) },
        delivery: after,
        expected_attempt_count: 1,
    };
    // THEN conflict, and the delivery, its attempts and the event counters are untouched
    assert!(matches!(ctx.store.record_attempt(&clash).await, Err(StoreError::Conflict(_))));
    assert_eq!(ctx.store.get_delivery(&a.id, &d.id).await.unwrap().as_ref(), Some(&d));
    assert_eq!(ctx.store.list_attempts(&a.id, &d.id).await.unwrap(), vec![first_attempt]);
    let event = ctx.store.get_event(&a.id, &ev.id).await.unwrap().unwrap();
    assert_eq!((event.succeeded_count, event.status), (0, EventStatus::Pending));
    assert_eq!(scan_all(&client, &table).await.len(), before_items);

    // AND an idempotent publish whose event id exists writes no idempotency item
    let mut dup = ev.clone();
    dup.idempotency_key = Some("fresh-key".into());
    let window = ctx.now() - Duration::hours(24);
    assert!(matches!(ctx.store.insert_event(&dup, window).await, Err(StoreError::Conflict(_))));
    assert!(!scan_all(&client, &table).await.iter().any(|i| s(i, PK).contains("fresh-key")));
}

#[tokio::test]
async fn given_events_deliveries_and_attempts_then_every_item_carries_expires_at() {
    // GIVEN an event published with an idempotency key, fanned out, with an attempt and a retry
    let (ctx, _, client, table) = ctx().await;
    let a = conformance::create_app(&ctx, "A").await;
    let ep = conformance::create_endpoint(&ctx, &a.id, &[]).await;
    let mut ev = conformance::event(&ctx, &a.id, "invoice.paid");
    ev.idempotency_key = Some("order-1".into());
    assert_eq!(ctx.store.insert_event(&ev, ctx.now() - Duration::hours(24)).await.unwrap(), InsertEvent::Created);
    let mut d = conformance::delivery(&ctx, &ev, &ep);
    ctx.store.insert_deliveries(std::slice::from_ref(&d)).await.unwrap();
    ctx.store.mark_event_fanned_out(&a.id, &ev.id, 1).await.unwrap();
    conformance::record(&ctx, &mut d, ResponseStatus::Http(500), 10, DeliveryStatus::Failed).await;
    let now = ctx.tick();
    let retry = Delivery {
        id: Id::new(IdKind::Delivery, now),
        retry_of: Some(d.id.clone()),
        status: DeliveryStatus::Pending,
        attempt_count: 0,
        created_at: now,
        updated_at: now,
        ..d.clone()
    };
    ctx.store.insert_retry(&Delivery { retried_by: Some(retry.id.clone()), ..d.clone() }, &retry).await.unwrap();

    // THEN every event, idempotency, delivery and attempt item has a numeric expiresAt in epoch seconds
    let items = scan_all(&client, &table).await;
    let expiring: Vec<&Item> =
        items.iter().filter(|i| ["EVT#", "IDEM#", "DLV#"].iter().any(|p| s(i, PK).starts_with(p))).collect();
    // event + idempotency + 2 deliveries + 1 attempt
    assert_eq!(expiring.len(), 5);
    let want = ev.expires_at.timestamp();
    for item in expiring {
        match item.get(TTL_ATTRIBUTE) {
            Some(AttributeValue::N(n)) => assert_eq!(n.parse::<i64>().unwrap(), want, "{}", s(item, PK)),
            other => panic!("{} has expiresAt {other:?}", s(item, PK)),
        }
    }
    // AND configuration items do not expire
    assert!(items.iter().filter(|i| s(i, PK).starts_with("APP#")).all(|i| !i.contains_key(TTL_ATTRIBUTE)));
}

#[tokio::test]
async fn given_the_key_design_then_events_spread_and_stream_keys_name_the_event() {
    let (ctx, _, client, table) = ctx().await;
    let a = conformance::create_app(&ctx, "A").await;
    let ep = conformance::create_endpoint(&ctx, &a.id, &[]).await;
    // GIVEN two events of one application
    let (e1, d1) = conformance::fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;
    let (e2, _) = conformance::fanned_out_event(&ctx, &a.id, "invoice.paid", &[&ep]).await;
    let items = scan_all(&client, &table).await;
    let event_items: Vec<&Item> = items.iter().filter(|i| dynamodb::is_event_key(s(i, PK))).collect();
    // THEN each is its own partition (keyed by event id), so the table partition never caps publishing
    assert_eq!(event_items.len(), 2);
    assert_ne!(s(event_items[0], PK), s(event_items[1], PK));
    // AND the stream keys alone name the application and the event
    for item in &event_items {
        let keys =
            HashMap::from([(PK.to_string(), s(item, PK).to_string()), (SK.to_string(), s(item, SK).to_string())]);
        let (app, id) = dynamodb::event_key_from_stream_keys(&keys).expect("an event key");
        assert_eq!(app, a.id);
        assert!(id == e1.id || id == e2.id);
        assert!(ctx.store.get_event(&app, &id).await.unwrap().is_some());
    }
    // AND no other item looks like an event to the fan-out function
    assert!(items.iter().filter(|i| !dynamodb::is_event_key(s(i, PK))).all(|i| {
        let keys = HashMap::from([(PK.to_string(), s(i, PK).to_string()), (SK.to_string(), s(i, SK).to_string())]);
        dynamodb::event_key_from_stream_keys(&keys).is_none()
    }));
    // AND the listing index keys are sharded per application, the endpoint index per endpoint
    let delivery = items.iter().find(|i| s(i, PK) == format!("DLV#{}", d1[0].id)).expect("delivery item");
    assert!(s(delivery, APP_PK).starts_with(&format!("APPDLV#{}#", a.id)));
    assert!(s(delivery, EP_PK).starts_with(&format!("EPDLV#{}#{}#", a.id, ep.id)));
    let shard: u32 = s(delivery, APP_PK).rsplit('#').next().unwrap().parse().unwrap();
    assert!(shard < LIST_SHARDS);
    // AND the listing index is named as the template declares it
    assert_eq!(INDEX_BY_APP, "byApp");
}

/// An item's size as DynamoDB bills it: attribute names plus values
/// (strings and binaries by length, numbers by significant digits).
fn billed_size(item: &Item) -> usize {
    fn value_size(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
            AttributeValue::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + value_size(v)).sum::<usize>(),
            other => panic!("unexpected attribute {other:?}"),
        }
    }
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

/// Rewrites an event's item behind the store's back (`:v` is `value`).
async fn update_event_item(client: &Client, table: &str, ev: &Event, expression: &str, value: AttributeValue) {
    client
        .update_item()
        .table_name(table)
        .key(PK, AttributeValue::S(format!("EVT#{}", ev.id)))
        .key(SK, AttributeValue::S(format!("EVT#{}", ev.application_id)))
        .update_expression(expression)
        .expression_attribute_values(":v", value)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn given_an_event_with_a_kilobyte_payload_then_its_item_is_billed_as_one_kilobyte_and_reads_back() {
    let (ctx, _, client, table) = ctx().await;
    let a = conformance::create_app(&ctx, "A").await;
    // GIVEN a 1.2 KB JSON payload, like the cost benchmark's
    let mut ev = conformance::event(&ctx, &a.id, "invoice.paid");
    let lines: Vec<_> = (0..24)
        .map(|i| serde_json::json!({"sku": format!("sku-{i:04}"), "quantity": i % 5 + 1, "unitPrice": 1250 + 10 * i}))
        .collect();
    ev.payload = serde_json::json!({"invoice": "in_1NB2", "customer": "cus_9s6XKzkNRiz8i3", "lines": lines});
    let text_len = serde_json::to_string(&ev.payload).unwrap().len();
    assert!(text_len > 1_200, "payload is {text_len} bytes");

    // WHEN it is published
    let window_start = ctx.now() - Duration::hours(24);
    assert_eq!(ctx.store.insert_event(&ev, window_start).await.unwrap(), InsertEvent::Created);

    // THEN its item holds the payload deflated, and is under 1 KB (one write unit, for every later update too)
    let items = scan_all(&client, &table).await;
    let item = items.iter().find(|i| s(i, PK) == format!("EVT#{}", ev.id)).expect("event item");
    assert!(matches!(item.get("payloadDeflated"), Some(AttributeValue::B(_))));
    assert!(!item.contains_key("payload"));
    assert!(billed_size(item) < 1_024, "event item is {} bytes", billed_size(item));
    // AND every read gives the payload back as published
    assert_eq!(ctx.store.get_event(&a.id, &ev.id).await.unwrap().map(|e| e.payload), Some(ev.payload.clone()));
    let listed = ctx.store.list_events(&a.id, &EventFilter::default(), &PageRequest::first(10)).await.unwrap();
    assert_eq!(listed.items.iter().map(|e| &e.payload).collect::<Vec<_>>(), vec![&ev.payload]);

    // AND an event an earlier build stored as JSON text still reads
    let text = AttributeValue::S(serde_json::to_string(&ev.payload).unwrap());
    update_event_item(&client, &table, &ev, "SET payload = :v REMOVE payloadDeflated", text).await;
    assert_eq!(ctx.store.get_event(&a.id, &ev.id).await.unwrap().map(|e| e.payload), Some(ev.payload.clone()));
    // AND a deflated payload that does not inflate is corrupt, not a panic
    let garbage = AttributeValue::B(Blob::new(b"not deflate at all".to_vec()));
    update_event_item(&client, &table, &ev, "SET payloadDeflated = :v REMOVE payload", garbage).await;
    assert!(matches!(ctx.store.get_event(&a.id, &ev.id).await, Err(StoreError::Corrupt(_))));
}

#[tokio::test]
async fn given_a_corrupt_item_when_read_then_the_store_reports_corrupt_without_panicking() {
    let (ctx, _, client, table) = ctx().await;
    let a = conformance::create_app(&ctx, "A").await;
    let ev = conformance::insert_event(&ctx, &a.id, "invoice.paid").await;
    client
        .update_item()
        .table_name(&table)
        .key(PK, AttributeValue::S(format!("EVT#{}", ev.id)))
        .key(SK, AttributeValue::S(format!("EVT#{}", a.id)))
        .update_expression("SET payload = :p, createdAt = :c")
        .expression_attribute_values(":p", AttributeValue::S("{not json".into()))
        .expression_attribute_values(":c", AttributeValue::S("yesterday".into()))
        .send()
        .await
        .unwrap();
    assert!(matches!(ctx.store.get_event(&a.id, &ev.id).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(
        ctx.store.list_events(&a.id, &EventFilter::default(), &PageRequest::first(10)).await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn given_control_state_then_it_lives_in_small_expiring_items_outside_the_app_partition() {
    // GIVEN an endpoint with custom controls, a record and counters of application A
    let (ctx, _, client, table) = ctx().await;
    let a = conformance::create_app(&ctx, "A").await;
    let mut ep = conformance::endpoint(&ctx, &a.id, &[]);
    ep.controls = conformance::custom_controls();
    ep.signing_keys = conformance::custom_signing_keys();
    ctx.store.create_endpoint(&ep).await.unwrap();
    let expires = ctx.now() + Duration::hours(1);
    assert!(ctx.store.put_record(&a.id, "breaker", ep.id.as_str(), r#"{"state":"open"}"#, 0, expires).await.unwrap());
    let key = format!("rate/{}/1", ep.id);
    ctx.store.add_to_counters(&a.id, &key, [1, 0], None, expires).await.unwrap();
    let items = scan_all(&client, &table).await;

    // THEN the endpoint item carries its controls as one string attribute
    let endpoint = items.iter().find(|i| s(i, SK) == format!("EP#{}", ep.id)).expect("endpoint item");
    assert!(s(endpoint, "controls").contains("\"rateLimit\":5"));
    // AND the record sits in the application's state partition, the counters in a shard of its own
    let record = items.iter().find(|i| s(i, PK) == format!("STATE#{}", a.id)).expect("record item");
    assert_eq!(s(record, SK), format!("REC#breaker#{}", ep.id));
    let counters = items.iter().find(|i| s(i, PK).starts_with(&format!("COUNTER#{}#", a.id))).expect("counters");
    let shard: u32 = s(counters, PK).rsplit('#').next().unwrap().parse().unwrap();
    assert!(shard < LIST_SHARDS);
    assert_eq!(s(counters, SK), format!("CTR#{key}"));
    // AND both expire by TTL, carry no index keys, and stay small
    for item in [record, counters] {
        assert_eq!(item.get(TTL_ATTRIBUTE), Some(&AttributeValue::N(expires.timestamp().to_string())));
        assert!(![APP_PK, EP_PK, "ownerPk"].iter().any(|k| item.contains_key(*k)));
        assert!(item.len() <= 8, "{item:?}");
    }
}

#[tokio::test]
async fn given_a_corrupt_controls_attribute_when_the_endpoint_is_read_then_the_store_reports_corrupt() {
    let (ctx, _, client, table) = ctx().await;
    let a = conformance::create_app(&ctx, "A").await;
    let ep = conformance::create_endpoint(&ctx, &a.id, &[]).await;
    client
        .update_item()
        .table_name(&table)
        .key(PK, AttributeValue::S(format!("APP#{}", a.id)))
        .key(SK, AttributeValue::S(format!("EP#{}", ep.id)))
        .update_expression("SET controls = :c")
        .expression_attribute_values(":c", AttributeValue::S("{\"ordered\": \"yes\"".into()))
        .send()
        .await
        .unwrap();
    assert!(matches!(ctx.store.get_endpoint(&a.id, &ep.id).await, Err(StoreError::Corrupt(_))));
    // AND an endpoint item without the attribute (written before it existed) reads as defaults
    client
        .update_item()
        .table_name(&table)
        .key(PK, AttributeValue::S(format!("APP#{}", a.id)))
        .key(SK, AttributeValue::S(format!("EP#{}", ep.id)))
        .update_expression("REMOVE controls")
        .send()
        .await
        .unwrap();
    assert_eq!(ctx.store.get_endpoint(&a.id, &ep.id).await.unwrap(), Some(ep));
}
