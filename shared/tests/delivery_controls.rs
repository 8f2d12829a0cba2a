//! Delivery controls (ordering, rate limit, circuit breaker, replay, payload
//! filters, Ed25519 signatures), run on both backends: the embedded one
//! (SqliteStore + SqliteQueue) and the AWS one (DynamoStore + SQS standard
//! and FIFO queues, on moto). Real time throughout (SystemClock), with short
//! retry delays, and a scripted receiver that records every request.

mod moto;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use skyhook::adapters::aws::dynamodb::DynamoStore;
use skyhook::adapters::aws::sqs::SqsQueue;
use skyhook::adapters::local_secrets::StaticSecrets;
use skyhook::adapters::sqlite::{SqliteQueue, SqliteQueueConfig, SqliteStore};
use skyhook::domain::{DeliveryStatus, Endpoint, Event, Id, SignatureScheme};
use skyhook::filter::PayloadFilter;
use skyhook::ports::{
    Clock, DeliveryFilter, EndpointResponse, OutgoingWebhook, PageRequest, Queue, ReceivedMessage, SendFailure, Store,
    SystemClock, WebhookSender,
};
use skyhook::retry::RetrySchedule;
use skyhook::service::{
    CircuitBreakerPatch, CircuitState, ControlsPatch, CreateApiKey, CreateApplication, Credential, Dispatcher,
    EndpointInput, EventTypeInput, ListQuery, MessageOutcome, Principal, PublishEvent, ReplayRequest, ReplayStatus,
    ServiceConfig, Skyhook,
};
use skyhook::ssrf::AddressPolicy;

const ORDERS: &str = "order.created";
const REFUNDS: &str = "order.refunded";

// ---------------------------------------------------------------------------
// Receiver
// ---------------------------------------------------------------------------

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    url: String,
    msg_id: String,
    at: Instant,
    wall: chrono::DateTime<chrono::Utc>,
    succeeded: bool,
    request: OutgoingWebhook,
}

type Rule = Box<dyn Fn(&OutgoingWebhook, usize) -> bool + Send + Sync>;

/// Answers 200 unless `fails(request, nth request for this message id)` says 503.
struct Receiver {
    seen: Mutex<Vec<Seen>>,
    tries: Mutex<HashMap<String, usize>>,
    fails: Mutex<Rule>,
}

impl Receiver {
    fn new() -> Self {
        Receiver {
            seen: Mutex::new(Vec::new()),
            tries: Mutex::new(HashMap::new()),
            fails: Mutex::new(Box::new(|_, _| false)),
        }
    }

    fn set_rule(&self, rule: impl Fn(&OutgoingWebhook, usize) -> bool + Send + Sync + 'static) {
        *self.fails.lock().unwrap() = Box::new(rule);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn successes(&self, url: &str) -> Vec<String> {
        self.seen().into_iter().filter(|s| s.url == url && s.succeeded).map(|s| s.msg_id).collect()
    }

    fn requests(&self, url: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.url == url).collect()
    }
}

fn header<'a>(request: &'a OutgoingWebhook, name: &str) -> &'a str {
    request.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or("")
}

#[async_trait]
impl WebhookSender for Receiver {
    async fn send(&self, request: OutgoingWebhook) -> Result<EndpointResponse, SendFailure> {
        let msg_id = header(&request, "webhook-id").to_string();
        let nth = {
            let mut tries = self.tries.lock().unwrap();
            let n = tries.entry(format!("{} {msg_id}", request.url)).or_default();
            *n += 1;
            *n
        };
        let fails = (self.fails.lock().unwrap())(&request, nth);
        self.seen.lock().unwrap().push(Seen {
            url: request.url.clone(),
            msg_id,
            at: Instant::now(),
            wall: chrono::Utc::now(),
            succeeded: !fails,
            request,
        });
        Ok(EndpointResponse { status: if fails { 503 } else { 200 }, body: None, retry_after: None })
    }
}

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Aws,
}

struct TempDb(PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

struct Harness {
    service: Arc<Skyhook>,
    dispatcher: Arc<Dispatcher>,
    receiver: Arc<Receiver>,
    app: Principal,
    _db: Option<TempDb>,
}

async fn harness(backend: Backend) -> Harness {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, queue, db): (Arc<dyn Store>, Arc<dyn Queue>, _) = match backend {
        Backend::Sqlite => {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "skyhook-controls-{}-{}.db",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let store = Arc::new(SqliteStore::open(&path, Arc::clone(&clock)).expect("store"));
            let queue =
                SqliteQueue::open_with_store(&store, "deliveries", SqliteQueueConfig::default(), Arc::clone(&clock))
                    .expect("queue");
            (store, Arc::new(queue), Some(TempDb(path)))
        }
        Backend::Aws => {
            let sdk = moto::sdk_config().await;
            let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
            let table = moto::unique("controls");
            DynamoStore::create_table(&dynamo, &table).await.expect("table");
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let standard = sqs.create_queue().queue_name(moto::unique("deliveries")).send().await.unwrap();
            let fifo = sqs
                .create_queue()
                .queue_name(format!("{}.fifo", moto::unique("ordered")))
                .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
                .send()
                .await
                .unwrap();
            let queue = SqsQueue::new(sqs, standard.queue_url.unwrap()).with_fifo_queue(fifo.queue_url.unwrap());
            (Arc::new(DynamoStore::new(dynamo, table, Arc::clone(&clock))), Arc::new(queue), None)
        }
    };
    let config = ServiceConfig {
        retry_schedule: RetrySchedule::new(vec![Duration::ZERO; 10], 0.0),
        require_https: false,
        address_policy: AddressPolicy { allow_loopback: true },
        ..Default::default()
    };
    let service = Arc::new(Skyhook::new(store, queue, clock, StaticSecrets::random().0, config));
    let receiver = Arc::new(Receiver::new());
    let dispatcher = Arc::new(Dispatcher::new(Arc::clone(&service), receiver.clone()));
    let application = service
        .create_application(&Principal::Admin, CreateApplication { name: "Acme".into(), ..Default::default() })
        .await
        .expect("application");
    let key = service
        .create_api_key(&Principal::Admin, application.id.as_str(), CreateApiKey { name: "t".into(), scopes: None })
        .await
        .expect("key");
    let app = service.authenticate(Some(Credential::ApiKey(key.key))).await.expect("authenticates");
    for name in [ORDERS, REFUNDS] {
        service.create_event_type(&app, EventTypeInput { name: name.into(), ..Default::default() }).await.unwrap();
    }
    Harness { service, dispatcher, receiver, app, _db: db }
}

impl Harness {
    async fn endpoint(&self, url: &str, max_attempts: u32, controls: ControlsPatch) -> Endpoint {
        let input = EndpointInput { url: url.into(), max_attempts: Some(max_attempts), controls, ..Default::default() };
        self.service.create_endpoint(&self.app, input).await.expect("endpoint").endpoint
    }

    async fn publish(&self, event_type: &str, payload: Value) -> Event {
        let publish = PublishEvent { event_type: event_type.into(), payload: Some(payload), ..Default::default() };
        self.service.publish_event(&self.app, publish).await.expect("publish").event
    }

    async fn fan_out(&self) {
        while self.service.sweep_fanout(500).await.expect("fan-out") > 0 {}
    }

    /// Receives and handles batches as the embedded runner does (delete on
    /// Done), with `workers` loops at once, until `done()` or `limit`.
    async fn run_until(&self, workers: usize, limit: Duration, done: impl Fn(&Self) -> bool + Sync) {
        let started = Instant::now();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let worker = || async {
            while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                let messages = self.service.queue().receive(10, Duration::ZERO).await.expect("receive");
                if messages.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                self.handle(&messages).await;
            }
        };
        let watcher = async {
            while started.elapsed() < limit && !done(self) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.store(true, Ordering::Relaxed);
        };
        let workers: Vec<_> = (0..workers).map(|_| worker()).collect();
        tokio::join!(futures_join_all(workers), watcher);
        let seen = self.receiver.seen();
        let succeeded = seen.iter().filter(|s| s.succeeded).count();
        assert!(done(self), "not done after {limit:?}: {} requests, {succeeded} succeeded", seen.len());
    }

    async fn handle(&self, messages: &[ReceivedMessage]) -> Vec<MessageOutcome> {
        let outcomes = self.dispatcher.handle_batch(messages).await;
        for (message, outcome) in messages.iter().zip(&outcomes) {
            if *outcome == MessageOutcome::Done {
                self.service.queue().delete(&message.receipt_handle).await.expect("delete");
            }
        }
        outcomes
    }

    async fn deliveries_of(&self, endpoint: &Endpoint) -> Vec<skyhook::domain::Delivery> {
        let filter = DeliveryFilter { endpoint_id: Some(endpoint.id.clone()), ..Default::default() };
        let mut page = PageRequest::first(250);
        let mut all = Vec::new();
        loop {
            let found = self.service.store().list_deliveries(&endpoint.application_id, &filter, &page).await.unwrap();
            all.extend(found.items);
            match found.next {
                Some(next) => page.after = Some(next),
                None => return all,
            }
        }
    }
}

async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    for f in set {
        f.await;
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod aws {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Aws).await })*
        }
    };
}

on_both_backends!(
    ordered_endpoint_gets_every_event_once_in_publish_order_despite_transient_failures,
    breaker_opens_defers_without_spending_attempts_probes_and_closes,
    breaker_weighs_failures_against_the_successes_before_them,
    rate_limited_endpoint_is_delayed_not_failed,
    payload_filter_decides_which_events_reach_an_endpoint,
    replay_backfills_a_new_endpoint_oldest_first_and_only_failed_recovers,
    ed25519_endpoint_requests_carry_v1_and_v1a_signatures,
);

fn ordered() -> ControlsPatch {
    ControlsPatch { ordered: Some(true), ..Default::default() }
}

// ---------------------------------------------------------------------------
// Ordered delivery
// ---------------------------------------------------------------------------

async fn ordered_endpoint_gets_every_event_once_in_publish_order_despite_transient_failures(backend: Backend) {
    let h = harness(backend).await;
    // GIVEN an ordered endpoint, an unordered one beside it, and a receiver
    // whose first answer to every 7th event (and the first two to every 50th) is a 503
    let count = match backend {
        Backend::Sqlite => 1000,
        // moto answers each call in milliseconds, and an ordered delivery is a
        // few dozen calls one after another: 100 keep the test near a minute.
        Backend::Aws => 100,
    };
    let ordered_ep = h.endpoint("http://127.0.0.1:9/ordered", 5, ordered()).await;
    let _unordered = h.endpoint("http://127.0.0.1:9/unordered", 5, ControlsPatch::default()).await;
    let index: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let lookup = Arc::clone(&index);
    h.receiver.set_rule(move |request, nth| {
        let i = lookup.lock().unwrap().get(header(request, "webhook-id")).copied().unwrap_or(0);
        (i % 7 == 3 && nth == 1) || (i % 50 == 10 && nth <= 2)
    });

    // WHEN events are published one after another (fanned out in batches as they come) and delivered by 4 workers
    let mut published = Vec::with_capacity(count);
    for i in 0..count {
        let event = h.publish(ORDERS, json!({"seq": i})).await;
        index.lock().unwrap().insert(event.id.to_string(), i);
        published.push(event.id.to_string());
        if i % 100 == 99 {
            h.fan_out().await;
        }
    }
    h.fan_out().await;
    let url = ordered_ep.url.clone();
    h.run_until(4, Duration::from_secs(240), |h| h.receiver.successes(&url).len() >= count).await;

    // THEN the ordered endpoint saw every event succeed exactly once, in publish order
    assert_eq!(h.receiver.successes(&url), published);
    // AND it was one at a time: after a failure the next request was the same event again
    let requests = h.receiver.requests(&url);
    let positions: Vec<usize> = requests.iter().map(|r| index.lock().unwrap()[&r.msg_id]).collect();
    assert!(positions.windows(2).all(|w| w[0] <= w[1]), "a later event was sent while an earlier one was unfinished");
    let failures = requests.iter().filter(|r| !r.succeeded).count();
    assert_eq!(
        failures,
        (0..count).filter(|i| i % 7 == 3).count() + 2 * (0..count).filter(|i| i % 50 == 10).count()
            - (0..count).filter(|i| i % 7 == 3 && i % 50 == 10).count()
    );
    // AND every ordered delivery is recorded succeeded
    let deliveries = h.deliveries_of(&ordered_ep).await;
    assert_eq!(deliveries.len(), count);
    assert!(deliveries.iter().all(|d| d.status == DeliveryStatus::Succeeded));
}

// ---------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------

async fn breaker_opens_defers_without_spending_attempts_probes_and_closes(backend: Backend) {
    let h = harness(backend).await;
    // GIVEN an endpoint with 4 attempts per delivery and a breaker that opens
    // at 5 attempts with half failing, open for 1 s; a receiver failing every request
    let breaker = CircuitBreakerPatch {
        enabled: Some(true),
        failure_ratio: Some(0.5),
        min_requests: Some(5),
        window_secs: Some(600),
        open_secs: Some(2),
    };
    let controls = ControlsPatch { circuit_breaker: Some(breaker), ..Default::default() };
    let ep = h.endpoint("http://127.0.0.1:9/breaker", 4, controls).await;
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let is_down = Arc::clone(&down);
    h.receiver.set_rule(move |_, _| is_down.load(Ordering::SeqCst));
    for i in 0..12 {
        h.publish(ORDERS, json!({"n": i})).await;
    }
    h.fan_out().await;

    // WHEN one worker handles messages until 5 attempts have failed
    let url = ep.url.clone();
    h.run_until(1, Duration::from_secs(30), |h| h.receiver.requests(&url).len() >= 5).await;
    let stats = h.service.endpoint_stats(&h.app, ep.id.as_str(), None).await.unwrap();

    // THEN the breaker is open
    assert_eq!(stats.circuit.state, CircuitState::Open, "{:?}", stats.circuit);
    assert!(stats.circuit.window_failures >= 5);
    // AND for the next 1.2 s nothing is sent, though every delivery is due
    let requests_when_opened = h.receiver.requests(&url).len();
    let until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < until {
        let messages = h.service.queue().receive(10, Duration::ZERO).await.unwrap();
        h.handle(&messages).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.receiver.requests(&url).len(), requests_when_opened, "sent while the breaker was open");

    // WHEN the open period ends THEN exactly one probe goes, fails, and the breaker reopens (for 4 s)
    h.run_until(4, Duration::from_secs(30), |h| h.receiver.requests(&url).len() > requests_when_opened).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.receiver.requests(&url).len(), requests_when_opened + 1, "one probe at a time");
    let stats = h.service.endpoint_stats(&h.app, ep.id.as_str(), None).await.unwrap();
    assert_eq!(stats.circuit.state, CircuitState::Open);
    assert_eq!(stats.circuit.reopen_count, 1);

    // WHEN the receiver recovers THEN the next probe closes the breaker and everything is delivered
    down.store(false, Ordering::SeqCst);
    h.run_until(4, Duration::from_secs(60), |h| h.receiver.successes(&url).len() >= 12).await;
    let stats = h.service.endpoint_stats(&h.app, ep.id.as_str(), None).await.unwrap();
    assert_eq!(stats.circuit.state, CircuitState::Closed);
    // AND no delivery exhausted its attempts: every one succeeded, none failed
    let deliveries = h.deliveries_of(&ep).await;
    assert_eq!(deliveries.len(), 12);
    assert!(deliveries.iter().all(|d| d.status == DeliveryStatus::Succeeded), "{deliveries:?}");
    assert!(deliveries.iter().all(|d| d.attempt_count < 4));
    // AND the failed attempts are the ones before the breaker opened plus one probe
    let failed = h.receiver.requests(&url).iter().filter(|r| !r.succeeded).count();
    assert_eq!(failed, requests_when_opened + 1);
}

async fn breaker_weighs_failures_against_the_successes_before_them(backend: Backend) {
    let h = harness(backend).await;
    // GIVEN an endpoint whose breaker opens at half failing (5 attempts at least),
    // and 12 deliveries that succeeded
    let breaker = CircuitBreakerPatch {
        failure_ratio: Some(0.5),
        min_requests: Some(5),
        window_secs: Some(600),
        open_secs: Some(60),
        ..Default::default()
    };
    let controls = ControlsPatch { circuit_breaker: Some(breaker), ..Default::default() };
    let ep = h.endpoint("http://127.0.0.1:9/weighed", 8, controls).await;
    let url = ep.url.clone();
    for i in 0..12 {
        h.publish(ORDERS, json!({"n": i})).await;
    }
    h.fan_out().await;
    h.run_until(1, Duration::from_secs(30), |h| h.receiver.successes(&url).len() >= 12).await;

    // WHEN the receiver starts failing every request
    h.receiver.set_rule(|_, _| true);
    for i in 0..40 {
        h.publish(ORDERS, json!({"n": 100 + i})).await;
    }
    h.fan_out().await;
    let stats = || async { h.service.endpoint_stats(&h.app, ep.id.as_str(), None).await.unwrap().circuit };
    let started = Instant::now();
    while stats().await.state != CircuitState::Open && started.elapsed() < Duration::from_secs(60) {
        let messages = h.service.queue().receive(10, Duration::ZERO).await.unwrap();
        h.handle(&messages).await;
    }

    // THEN it opened only once the failures matched the 12 successes (and not
    // many after: the attempts already under way when it opened)
    let circuit = stats().await;
    assert_eq!(circuit.state, CircuitState::Open);
    let failures = h.receiver.requests(&url).iter().filter(|r| !r.succeeded).count();
    assert!((12..=22).contains(&failures), "opened after {failures} failures");
    assert!(circuit.window_attempts >= 24, "{circuit:?}");
}

// ---------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------

async fn rate_limited_endpoint_is_delayed_not_failed(backend: Backend) {
    let h = harness(backend).await;
    // GIVEN an endpoint limited to 5 deliveries per second and 20 events
    let controls = ControlsPatch { rate_limit: Some(Some(5)), ..Default::default() };
    let ep = h.endpoint("http://127.0.0.1:9/limited", 3, controls).await;
    for i in 0..20 {
        h.publish(ORDERS, json!({"n": i})).await;
    }
    h.fan_out().await;

    // WHEN 4 workers deliver as fast as they can
    let url = ep.url.clone();
    h.run_until(4, Duration::from_secs(60), |h| h.receiver.successes(&url).len() >= 20).await;

    // THEN all 20 arrive, each with one attempt (waiting spent none)
    let requests = h.receiver.requests(&url);
    assert_eq!(requests.len(), 20);
    let deliveries = h.deliveries_of(&ep).await;
    assert!(deliveries.iter().all(|d| d.status == DeliveryStatus::Succeeded && d.attempt_count == 1));
    // AND no clock second holds more than 5 (6: a send may cross into the next second)
    let mut per_second: HashMap<i64, usize> = HashMap::new();
    for request in &requests {
        *per_second.entry(request.wall.timestamp()).or_default() += 1;
    }
    assert!(per_second.values().all(|n| *n <= 6), "{per_second:?}");
    // AND they spread over at least 4 clock seconds, so more than 2 s passed
    // between the first and the last (20 at 5/s: the first may come at the end
    // of its second and the last at the start of the fourth)
    assert!(per_second.len() >= 4, "{per_second:?}");
    let times: Vec<Instant> = requests.iter().map(|r| r.at).collect();
    let span = times.last().unwrap().duration_since(times[0]);
    assert!(span > Duration::from_secs(2), "20 deliveries in {span:?}");
}

// ---------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------

async fn payload_filter_decides_which_events_reach_an_endpoint(backend: Backend) {
    let h = harness(backend).await;
    // GIVEN an endpoint for large USD or EUR orders, and one with no filter
    let filter = PayloadFilter::parse(&json!({"and": [
        {"field": "amount", "gte": 100},
        {"field": "currency", "in": ["USD", "EUR"]},
        {"not": {"field": "test", "eq": true}}
    ]}))
    .unwrap();
    let controls = ControlsPatch { filter: Some(Some(filter)), ..Default::default() };
    let filtered = h.endpoint("http://127.0.0.1:9/filtered", 3, controls).await;
    let all = h.endpoint("http://127.0.0.1:9/all", 3, ControlsPatch::default()).await;

    // WHEN five orders are published
    let payloads = [
        json!({"amount": 250, "currency": "USD"}),
        json!({"amount": 99.5, "currency": "USD"}),
        json!({"amount": 100, "currency": "GBP"}),
        json!({"amount": 1000, "currency": "EUR", "test": true}),
        json!({"amount": 100.0, "currency": "EUR", "test": false}),
    ];
    let mut ids = Vec::new();
    for payload in payloads {
        ids.push(h.publish(ORDERS, payload).await.id.to_string());
    }
    h.fan_out().await;
    let (f, a) = (filtered.url.clone(), all.url.clone());
    h.run_until(2, Duration::from_secs(30), |h| {
        h.receiver.successes(&a).len() >= 5 && h.receiver.successes(&f).len() >= 2
    })
    .await;

    // THEN the filtered endpoint got exactly the 1st and 5th; the other all five
    let got: HashSet<String> = h.receiver.successes(&f).into_iter().collect();
    assert_eq!(got, HashSet::from([ids[0].clone(), ids[4].clone()]));
    assert_eq!(h.deliveries_of(&filtered).await.len(), 2, "non-matching events create no delivery");
    assert_eq!(h.deliveries_of(&all).await.len(), 5);
}

// ---------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------

async fn replay_backfills_a_new_endpoint_oldest_first_and_only_failed_recovers(backend: Backend) {
    let h = harness(backend).await;
    // GIVEN 300 orders (60 on moto, which is slow) and a refund every 15th,
    // delivered to endpoint A, whose receiver failed every 10th order for good
    // (1 attempt per delivery); 300 make the replay split its first slice
    let count: usize = match backend {
        Backend::Sqlite => 300,
        Backend::Aws => 60,
    };
    let refunds = count.div_ceil(15);
    let a = h.endpoint("http://127.0.0.1:9/a", 1, ControlsPatch::default()).await;
    let seq: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let lookup = Arc::clone(&seq);
    let a_url = a.url.clone();
    h.receiver.set_rule(move |request, nth| {
        let i = lookup.lock().unwrap().get(header(request, "webhook-id")).copied();
        request.url == a_url && nth == 1 && i.is_some_and(|i| i % 10 == 0)
    });
    let from = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut orders = Vec::new();
    for i in 0..count {
        let event = h.publish(ORDERS, json!({"seq": i})).await;
        seq.lock().unwrap().insert(event.id.to_string(), i);
        orders.push(event.id.to_string());
        if i % 15 == 0 {
            h.publish(REFUNDS, json!({"seq": i})).await;
        }
    }
    h.fan_out().await;
    let url = a.url.clone();
    h.run_until(4, Duration::from_secs(120), |h| h.receiver.requests(&url).len() >= count + refunds).await;
    let failed = count / 10;
    assert_eq!(h.deliveries_of(&a).await.iter().filter(|d| d.status == DeliveryStatus::Failed).count(), failed);

    // WHEN a new endpoint B asks for the orders since `from` (a replay)
    let b = h.endpoint("http://127.0.0.1:9/b", 3, ordered()).await;
    let request =
        || ReplayRequest { from: Some(from), to: None, event_types: Some(vec![ORDERS.into()]), only_failed: None };
    let (replay, started) = h.service.start_replay(&h.app, b.id.as_str(), request()).await.unwrap();
    assert!(started);
    // AND asks again while it runs
    let (again, started_again) = h.service.start_replay(&h.app, b.id.as_str(), request()).await.unwrap();

    // THEN the second request returns the same replay
    assert_eq!((again.id.clone(), started_again), (replay.id.clone(), false));
    let b_url = b.url.clone();
    h.run_until(4, Duration::from_secs(120), |h| h.receiver.successes(&b_url).len() >= count).await;
    // AND B received every order once, oldest first, and no refund
    assert_eq!(h.receiver.successes(&b.url), orders);
    // AND the replay reports it is complete
    let done = h.service.get_replay(&h.app, b.id.as_str(), replay.id.as_str()).await.unwrap();
    assert_eq!(done.status, ReplayStatus::Completed);
    assert_eq!(done.deliveries_created, count as u64);
    assert_eq!(done.progress, 1.0);
    assert!(done.events_scanned >= (count + refunds) as u64);
    // AND a step run again (a redelivered message) creates no new delivery
    h.service
        .run_replay_step(&skyhook::service::ReplayTask {
            application_id: b.application_id.clone(),
            endpoint_id: b.id.clone(),
            replay_id: replay.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(h.deliveries_of(&b).await.len(), count);
    let listed = h.service.list_replays(&h.app, b.id.as_str(), &ListQuery::default()).await.unwrap();
    assert_eq!(listed.data.len(), 1);

    // WHEN A is replayed with onlyFailed
    let before = h.receiver.requests(&a.url).len();
    let recover = ReplayRequest { from: Some(from), only_failed: Some(true), ..Default::default() };
    let (recovery, _) = h.service.start_replay(&h.app, a.id.as_str(), recover).await.unwrap();
    h.run_until(4, Duration::from_secs(60), |h| h.receiver.requests(&url).len() >= before + failed).await;
    let recovery = h.service.get_replay(&h.app, a.id.as_str(), recovery.id.as_str()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // THEN exactly the failed orders are sent again, and now succeed
    let resent: Vec<String> = h.receiver.requests(&a.url)[before..].iter().map(|r| r.msg_id.clone()).collect();
    let expected: HashSet<String> =
        orders.iter().enumerate().filter(|(i, _)| i % 10 == 0).map(|(_, id)| id.clone()).collect();
    assert_eq!(resent.len(), failed);
    assert_eq!(resent.into_iter().collect::<HashSet<_>>(), expected);
    assert_eq!(recovery.deliveries_created, failed as u64);
    // AND the events' own outcome is still their fan-out's (replays are not counted on them)
    let event =
        h.service.store().get_event(&a.application_id, &Id::from_stored(orders[0].clone())).await.unwrap().unwrap();
    assert_eq!((event.delivery_count, event.succeeded_count, event.failed_count), (1, 0, 1));
}

// ---------------------------------------------------------------------------
// Ed25519
// ---------------------------------------------------------------------------

async fn ed25519_endpoint_requests_carry_v1_and_v1a_signatures(backend: Backend) {
    use ed25519_dalek::{Signature, VerifyingKey};
    let h = harness(backend).await;
    // GIVEN an endpoint signing with both schemes
    let controls = ControlsPatch {
        signature_schemes: Some(vec![SignatureScheme::HmacSha256, SignatureScheme::Ed25519]),
        ..Default::default()
    };
    let input = EndpointInput { url: "http://127.0.0.1:9/signed".into(), controls, ..Default::default() };
    let created = h.service.create_endpoint(&h.app, input).await.unwrap();
    let public = created.endpoint.controls.public_key.clone().expect("a whpk_ public key is shown");
    assert!(public.starts_with("whpk_"));

    // WHEN an event is delivered
    h.publish(ORDERS, json!({"n": 1})).await;
    h.fan_out().await;
    let url = created.endpoint.url.clone();
    h.run_until(1, Duration::from_secs(30), |h| !h.receiver.successes(&url).is_empty()).await;

    // THEN the request carries a v1 signature valid for the secret and a v1a one valid for the public key
    let request = h.receiver.seen().pop().unwrap().request;
    let (id, ts) = (header(&request, "webhook-id"), header(&request, "webhook-timestamp"));
    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", &request.body].concat();
    let signatures: Vec<&str> = header(&request, "webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    let v1a = signatures.iter().find_map(|s| s.strip_prefix("v1a,")).expect("a v1a signature");
    let key_bytes: [u8; 32] = STANDARD.decode(public.strip_prefix("whpk_").unwrap()).unwrap().try_into().unwrap();
    let key = VerifyingKey::from_bytes(&key_bytes).unwrap();
    let signature = Signature::from_slice(&STANDARD.decode(v1a).unwrap()).unwrap();
    key.verify_strict(&signed, &signature).expect("v1a verifies with the public key");
    assert!(
        skyhook::signing::verify_signature(
            &created.secret,
            id,
            ts.parse().unwrap(),
            &request.body,
            header(&request, "webhook-signature"),
            ts.parse().unwrap(),
            300
        )
        .is_ok()
    );
}
