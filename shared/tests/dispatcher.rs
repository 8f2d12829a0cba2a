//! Dispatcher suite (SPEC §4 Delivery): the service on the embedded backend
//! (SqliteStore + SqliteQueue in one temp file per test), a ManualClock that
//! also drives the queue's visibility, and a scripted fake `WebhookSender`
//! that records every request. The dispatcher is driven by hand exactly as the
//! embedded runner drives it: receive, `handle`, delete on `Done`.
//!
//! Signatures are recomputed here with hmac + sha2 + base64, independently of
//! `skyhook::signing`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::TimeZone;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use skyhook::adapters::local_secrets::StaticSecrets;
use skyhook::adapters::sqlite::{SqliteQueue, SqliteQueueConfig, SqliteStore};
use skyhook::domain::{
    Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, ErrorCode, Event, EventStatus, Id, PayloadFormat,
    ResponseStatus, Timestamp,
};
use skyhook::ports::{
    Clock, DeliveryFilter, EndpointResponse, ManualClock, OutgoingMessage, OutgoingWebhook, PageRequest, Queue,
    QueueError, ReceivedMessage, SendFailure, WebhookSender,
};
use skyhook::retry::RetrySchedule;
use skyhook::service::{
    CreateApiKey, CreateApplication, CreatedEndpoint, Credential, Dispatcher, EndpointInput, EndpointPatch,
    EventTypeInput, MessageOutcome, Principal, PublishEvent, ServiceConfig, Skyhook,
};
use skyhook::ssrf::AddressPolicy;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

type Reply = Result<EndpointResponse, SendFailure>;

fn http(status: u16, body: &str) -> Reply {
    Ok(EndpointResponse { status, body: Some(body.to_string()), retry_after: None })
}

fn http_retry_after(status: u16, retry_after: Duration) -> Reply {
    Ok(EndpointResponse { status, body: None, retry_after: Some(retry_after) })
}

fn failure(code: ErrorCode, message: &str) -> Reply {
    Err(SendFailure { code, message: message.to_string() })
}

/// Records every request; answers from the script, then with the default.
struct FakeSender {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    sent: Mutex<Vec<OutgoingWebhook>>,
    /// When set, every send waits here (bounded) so two sends overlap.
    gate: Mutex<Option<Arc<tokio::sync::Barrier>>>,
}

impl FakeSender {
    fn new() -> Self {
        FakeSender {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(http(200, "ok")),
            sent: Mutex::new(Vec::new()),
            gate: Mutex::new(None),
        }
    }

    fn push(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }

    fn push_n(&self, n: usize, reply: Reply) {
        for _ in 0..n {
            self.push(reply.clone());
        }
    }

    fn always(&self, reply: Reply) {
        *self.default.lock().unwrap() = reply;
    }

    fn sent(&self) -> Vec<OutgoingWebhook> {
        self.sent.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    fn last(&self) -> OutgoingWebhook {
        self.sent().last().cloned().expect("at least one request was sent")
    }
}

#[async_trait]
impl WebhookSender for FakeSender {
    async fn send(&self, request: OutgoingWebhook) -> Reply {
        self.sent.lock().unwrap().push(request);
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            let _ = tokio::time::timeout(Duration::from_secs(2), gate.wait()).await;
        }
        let scripted = self.script.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| self.default.lock().unwrap().clone())
    }
}

/// The SQLite queue, with sends that can be made to fail (fault injection).
struct FlakyQueue {
    inner: SqliteQueue,
    failing_sends: AtomicUsize,
}

#[async_trait]
impl Queue for FlakyQueue {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<(), QueueError> {
        let failing = self.failing_sends.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(QueueError::Unavailable("injected send failure".into()));
        }
        self.inner.send_batch(messages).await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.inner.receive(max, wait).await
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        self.inner.change_visibility(receipt_handle, timeout).await
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.inner.delete(receipt_handle).await
    }
}

/// Removes the SQLite file (and its WAL/SHM) when the test ends.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name =
            format!("skyhook-dispatcher-{}-{}-{nanos}.db", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        TempDb(std::env::temp_dir().join(name))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(path));
        }
    }
}

const EVENT_TYPE: &str = "order.created";
const URL: &str = "https://hooks.example.com/skyhook";

fn start_time() -> Timestamp {
    chrono::Utc.with_ymd_and_hms(2030, 3, 1, 9, 0, 0).unwrap()
}

/// A `whsec_` secret the test knows the key of.
fn test_secret(seed: u8) -> String {
    let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(31).wrapping_add(seed)).collect();
    format!("whsec_{}", STANDARD.encode(key))
}

/// Standard Webhooks v1 signature, computed without `skyhook::signing`.
fn expected_signature(secret: &str, msg_id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).expect("base64 key");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn header<'a>(request: &'a OutgoingWebhook, name: &str) -> Option<&'a str> {
    request.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn signatures(request: &OutgoingWebhook) -> Vec<String> {
    header(request, "webhook-signature").expect("webhook-signature header").split(' ').map(str::to_string).collect()
}

/// Does one of the request's signatures verify with `secret`?
fn verifies(request: &OutgoingWebhook, secret: &str) -> bool {
    let id = header(request, "webhook-id").unwrap();
    let ts = header(request, "webhook-timestamp").unwrap();
    let expected = expected_signature(secret, id, ts, &request.body);
    signatures(request).contains(&expected)
}

fn secs(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

struct Harness {
    clock: Arc<ManualClock>,
    service: Arc<Skyhook>,
    queue: SqliteQueue,
    flaky: Arc<FlakyQueue>,
    sender: Arc<FakeSender>,
    dispatcher: Arc<Dispatcher>,
    app: Principal,
    app_id: Id,
    _db: TempDb,
}

impl Harness {
    async fn new() -> Self {
        Self::with_schedule(RetrySchedule::default()).await
    }

    async fn with_schedule(retry_schedule: RetrySchedule) -> Self {
        let db = TempDb::new();
        let clock = Arc::new(ManualClock::new(start_time()));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let store = Arc::new(SqliteStore::open(&db.0, Arc::clone(&dyn_clock)).expect("store"));
        let queue = SqliteQueue::open(&db.0, "deliveries", SqliteQueueConfig::default(), Arc::clone(&dyn_clock))
            .expect("queue");
        let config = ServiceConfig {
            retry_schedule,
            require_https: false,
            address_policy: AddressPolicy { allow_loopback: true },
            ..Default::default()
        };
        let flaky = Arc::new(FlakyQueue { inner: queue.clone(), failing_sends: AtomicUsize::new(0) });
        let service = Arc::new(Skyhook::new(store, flaky.clone(), dyn_clock, StaticSecrets::random().0, config));
        let sender = Arc::new(FakeSender::new());
        let dispatcher = Arc::new(Dispatcher::new(Arc::clone(&service), sender.clone()));

        let application = service
            .create_application(&Principal::Admin, CreateApplication { name: "Acme".into(), ..Default::default() })
            .await
            .expect("application");
        let key = service
            .create_api_key(
                &Principal::Admin,
                application.id.as_str(),
                CreateApiKey { name: "dispatcher tests".into(), scopes: None },
            )
            .await
            .expect("api key");
        let app = service.authenticate(Some(Credential::ApiKey(key.key))).await.expect("the key authenticates");
        service
            .create_event_type(&app, EventTypeInput { name: EVENT_TYPE.into(), ..Default::default() })
            .await
            .expect("event type");
        Harness { clock, service, queue, flaky, sender, dispatcher, app, app_id: application.id, _db: db }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }

    fn set_clock(&self, to: Timestamp) {
        self.clock.set(to);
    }

    async fn endpoint(&self, input: EndpointInput) -> CreatedEndpoint {
        self.service.create_endpoint(&self.app, input).await.expect("endpoint")
    }

    /// An endpoint with a known secret and the given max attempts.
    async fn simple_endpoint(&self, max_attempts: Option<u32>) -> CreatedEndpoint {
        self.endpoint(EndpointInput {
            url: URL.into(),
            secret: Some(test_secret(1)),
            max_attempts,
            ..Default::default()
        })
        .await
    }

    async fn get_endpoint(&self, id: &Id) -> Endpoint {
        self.service.get_endpoint(&self.app, id.as_str()).await.expect("endpoint exists")
    }

    async fn publish(&self, payload: serde_json::Value) -> Event {
        self.service
            .publish_event(
                &self.app,
                PublishEvent { event_type: EVENT_TYPE.into(), payload: Some(payload), ..Default::default() },
            )
            .await
            .expect("publish")
            .event
    }

    /// Publishes and fans out.
    async fn publish_and_fan_out(&self, payload: serde_json::Value) -> Event {
        let event = self.publish(payload).await;
        self.service.sweep_fanout(100).await.expect("fan-out");
        event
    }

    async fn receive(&self) -> Vec<ReceivedMessage> {
        self.service.queue().receive(10, Duration::ZERO).await.expect("receive")
    }

    async fn receive_one(&self) -> ReceivedMessage {
        let mut messages = self.receive().await;
        assert_eq!(messages.len(), 1, "expected exactly one visible message");
        messages.pop().unwrap()
    }

    /// Handles one message as the embedded runner does: delete on Done.
    async fn handle(&self, message: &ReceivedMessage) -> MessageOutcome {
        let outcome = self.dispatcher.handle(message).await;
        if outcome == MessageOutcome::Done {
            self.service.queue().delete(&message.receipt_handle).await.expect("delete a finished message");
        }
        outcome
    }

    /// Receives and handles every visible message once; the outcomes in order.
    async fn run_visible(&self) -> Vec<MessageOutcome> {
        let mut outcomes = Vec::new();
        for message in self.receive().await {
            outcomes.push(self.handle(&message).await);
        }
        outcomes
    }

    /// Receives exactly one message and handles it.
    async fn run_one(&self) -> MessageOutcome {
        let message = self.receive_one().await;
        self.handle(&message).await
    }

    async fn deliveries_of(&self, event: &Event) -> Vec<Delivery> {
        self.service
            .store()
            .list_deliveries(
                &self.app_id,
                &DeliveryFilter { event_id: Some(event.id.clone()), ..Default::default() },
                &PageRequest::first(100),
            )
            .await
            .expect("list deliveries")
            .items
    }

    async fn deliveries_to(&self, endpoint: &Id) -> Vec<Delivery> {
        self.service
            .store()
            .list_deliveries(
                &self.app_id,
                &DeliveryFilter { endpoint_id: Some(endpoint.clone()), ..Default::default() },
                &PageRequest::first(100),
            )
            .await
            .expect("list deliveries")
            .items
    }

    async fn only_delivery(&self, event: &Event) -> Delivery {
        let mut deliveries = self.deliveries_of(event).await;
        assert_eq!(deliveries.len(), 1, "expected exactly one delivery");
        deliveries.pop().unwrap()
    }

    async fn delivery(&self, id: &Id) -> Delivery {
        self.service.get_delivery(&self.app, id.as_str()).await.expect("delivery exists").delivery
    }

    async fn attempts(&self, id: &Id) -> Vec<DeliveryAttempt> {
        self.service.get_delivery(&self.app, id.as_str()).await.expect("delivery exists").attempts
    }

    async fn event(&self, id: &Id) -> Event {
        self.service.get_event(&self.app, id.as_str()).await.expect("event exists")
    }
}

/// Runs a whole test on a bounded budget.
async fn bounded<F: std::future::Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(20), test).await.expect("test exceeded its time budget");
}

// ---------------------------------------------------------------------------
// 1. Standard Webhooks wire format
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_a_standard_endpoint_when_an_event_is_delivered_then_the_request_follows_standard_webhooks() {
    bounded(async {
        // GIVEN an endpoint with a secret the receiver knows and a custom header
        let h = Harness::new().await;
        let secret = test_secret(7);
        let created = h
            .endpoint(EndpointInput {
                url: URL.into(),
                secret: Some(secret.clone()),
                headers: Some(BTreeMap::from([("x-tenant".to_string(), "acme".to_string())])),
                ..Default::default()
            })
            .await;
        assert_eq!(created.secret, secret, "the supplied secret is used");
        let payload = serde_json::json!({"orderId": 42, "items": [{"sku": "A-1", "qty": 2}], "note": "ü ✓"});

        // WHEN the event is published, fanned out and dispatched
        let event = h.publish_and_fan_out(payload.clone()).await;
        assert_eq!(h.run_visible().await, vec![MessageOutcome::Done]);

        // THEN one POST went out in the Standard Webhooks format
        let sent = h.sender.sent();
        assert_eq!(sent.len(), 1);
        let request = &sent[0];
        assert_eq!(request.url, URL);
        assert_eq!(request.timeout, Duration::from_secs(15), "default endpoint timeout");
        assert_eq!(header(request, "webhook-id"), Some(event.id.as_str()));
        let ts = header(request, "webhook-timestamp").expect("webhook-timestamp");
        assert_eq!(ts, h.now().timestamp().to_string(), "unix seconds of the attempt");
        assert_eq!(header(request, "content-type"), Some("application/json"));
        let ua = header(request, "user-agent").expect("user-agent");
        assert!(ua.starts_with("Skyhook/"), "user-agent {ua:?}");
        assert_eq!(header(request, "x-tenant"), Some("acme"), "custom header");

        // the body is {"type","timestamp","data"} and nothing else
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON body");
        let object = body.as_object().expect("object body");
        assert_eq!(object.len(), 3, "body {body}");
        assert_eq!(body["type"], EVENT_TYPE);
        assert_eq!(body["data"], payload);
        let body_ts =
            chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).expect("RFC 3339 timestamp");
        assert_eq!(body_ts.timestamp_millis(), event.created_at.timestamp_millis());

        // the signature is exactly one v1 HMAC over "{id}.{timestamp}.{body}"
        let expected = expected_signature(&secret, event.id.as_str(), ts, &request.body);
        assert_eq!(header(request, "webhook-signature"), Some(expected.as_str()));
        assert!(!verifies(request, &test_secret(8)), "a stranger's secret does not verify");

        // and the delivery records the signature timestamp
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.status, DeliveryStatus::Succeeded);
        assert_eq!(delivery.timestamp_sent, Some(h.now().timestamp()));
        assert_eq!(delivery.response_status, Some(ResponseStatus::Http(200)));
        assert!(delivery.delivered_at.is_some());
    })
    .await;
}

#[tokio::test]
async fn given_a_failing_receiver_when_the_delivery_is_retried_then_webhook_id_is_stable_and_the_timestamp_is_fresh() {
    bounded(async {
        // GIVEN a receiver that fails once, then accepts
        let h = Harness::with_schedule(RetrySchedule::new(vec![Duration::from_secs(5)], 0.0)).await;
        let secret = test_secret(1);
        h.simple_endpoint(None).await;
        h.sender.push(http(500, "down"));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

        // WHEN the first attempt fails and the second runs 5 s later
        assert_eq!(h.run_one().await, MessageOutcome::RetryLater);
        let first_ts = h.now().timestamp();
        h.advance(chrono::Duration::seconds(5));
        assert_eq!(h.run_one().await, MessageOutcome::Done);

        // THEN both carry the event id, each its own timestamp, each signed for it
        let sent = h.sender.sent();
        assert_eq!(sent.len(), 2);
        for request in &sent {
            assert_eq!(header(request, "webhook-id"), Some(event.id.as_str()));
            assert!(verifies(request, &secret));
            assert_eq!(signatures(request).len(), 1);
        }
        assert_eq!(header(&sent[0], "webhook-timestamp"), Some(first_ts.to_string().as_str()));
        assert_eq!(
            header(&sent[1], "webhook-timestamp"),
            Some((first_ts + 5).to_string().as_str()),
            "fresh per attempt"
        );
        assert_ne!(signatures(&sent[0]), signatures(&sent[1]), "re-signed for the new timestamp");
        assert_eq!(sent[0].body, sent[1].body, "the body itself does not change");
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.timestamp_sent, Some(first_ts + 5));
    })
    .await;
}

#[tokio::test]
async fn given_a_raw_payload_endpoint_when_an_event_is_delivered_then_the_body_is_the_payload_as_is() {
    bounded(async {
        // GIVEN an endpoint that wants the raw payload
        let h = Harness::new().await;
        let secret = test_secret(3);
        h.endpoint(EndpointInput {
            url: URL.into(),
            secret: Some(secret.clone()),
            payload_format: Some(PayloadFormat::Raw),
            ..Default::default()
        })
        .await;
        let payload = serde_json::json!({"orderId": 42, "nested": {"a": [1, 2, 3]}});

        // WHEN an event is delivered
        h.publish_and_fan_out(payload.clone()).await;
        assert_eq!(h.run_visible().await, vec![MessageOutcome::Done]);

        // THEN the body is the payload, no envelope, and the signature covers it
        let request = h.sender.last();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body, payload);
        assert_eq!(&request.body[..], serde_json::to_vec(&payload).unwrap().as_slice());
        assert!(verifies(&request, &secret));
        assert_eq!(header(&request, "content-type"), Some("application/json"));
    })
    .await;
}

// ---------------------------------------------------------------------------
// 2. Secret rotation
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_a_rotated_secret_when_delivering_within_24_hours_then_both_signatures_verify_and_after_24_hours_only_the_new_one()
 {
    bounded(async {
        // GIVEN an endpoint whose secret is rotated
        let h = Harness::new().await;
        let old = test_secret(10);
        let new = test_secret(20);
        let created =
            h.endpoint(EndpointInput { url: URL.into(), secret: Some(old.clone()), ..Default::default() }).await;
        let rotated = h
            .service
            .rotate_endpoint_secret(&h.app, created.endpoint.id.as_str(), Some(new.clone()))
            .await
            .expect("rotate");
        assert_eq!(rotated.secret, new);

        // WHEN an event is delivered an hour later
        h.advance(chrono::Duration::hours(1));
        h.publish_and_fan_out(serde_json::json!({"during": "rotation"})).await;
        assert_eq!(h.run_visible().await, vec![MessageOutcome::Done]);

        // THEN two space-separated v1 signatures, new first, each verifiable
        let request = h.sender.last();
        let sigs = signatures(&request);
        assert_eq!(sigs.len(), 2, "header {:?}", header(&request, "webhook-signature"));
        let id = header(&request, "webhook-id").unwrap();
        let ts = header(&request, "webhook-timestamp").unwrap();
        assert!(sigs.iter().all(|s| s.starts_with("v1,")));
        assert_eq!(sigs[0], expected_signature(&new, id, ts, &request.body));
        assert_eq!(sigs[1], expected_signature(&old, id, ts, &request.body));

        // WHEN the overlap (24 h from the rotation) has passed
        h.advance(chrono::Duration::hours(23) + chrono::Duration::seconds(1));
        h.publish_and_fan_out(serde_json::json!({"after": "rotation"})).await;
        assert_eq!(h.run_visible().await, vec![MessageOutcome::Done]);

        // THEN only the new secret signs
        let request = h.sender.last();
        assert_eq!(signatures(&request).len(), 1);
        assert!(verifies(&request, &new));
        assert!(!verifies(&request, &old));
    })
    .await;
}

// ---------------------------------------------------------------------------
// 3. Retry schedule
// ---------------------------------------------------------------------------

const DEFAULT_DELAYS: [u64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];

fn pinned_default_schedule() -> RetrySchedule {
    RetrySchedule::new(DEFAULT_DELAYS.iter().map(|s| Duration::from_secs(*s)).collect(), 0.0)
}

#[tokio::test]
async fn given_a_receiver_answering_500_when_the_first_attempt_fails_then_it_is_recorded_and_the_message_is_hidden_until_next_attempt_at()
 {
    bounded(async {
        // GIVEN a receiver that answers 500 with a body
        let h = Harness::new().await;
        h.simple_endpoint(None).await;
        h.sender.push(http(500, "boom: database down"));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

        // WHEN the first attempt runs
        let sent_at = h.now();
        assert_eq!(h.run_one().await, MessageOutcome::RetryLater);

        // THEN the attempt is recorded with status and response body
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.status, DeliveryStatus::Retrying);
        assert_eq!(delivery.attempt_count, 1);
        assert_eq!(delivery.max_attempts, 8, "default maxAttempts");
        assert_eq!(delivery.response_status, Some(ResponseStatus::Http(500)));
        assert_eq!(delivery.response_body.as_deref(), Some("boom: database down"));
        assert!(delivery.error_message.is_some());
        assert!(delivery.delivered_at.is_none());
        let attempts = h.attempts(&delivery.id).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].number, 1);
        assert_eq!(attempts[0].response_status, ResponseStatus::Http(500));
        assert_eq!(attempts[0].response.as_deref(), Some("boom: database down"));
        assert_eq!(attempts[0].started_at, sent_at);

        // AND nextAttemptAt is now + 5 s ± 20 %
        let next = delivery.next_attempt_at.expect("nextAttemptAt");
        let gap = secs(next - sent_at);
        assert!((4.0..=6.0).contains(&gap), "first delay {gap} s");
        let scheduled = attempts[0].next_delay_secs.expect("next delay recorded");
        assert!((4..=6).contains(&scheduled), "next_delay_secs {scheduled}");

        // AND the message stays invisible until then
        assert!(h.receive().await.is_empty(), "hidden right after the attempt");
        h.set_clock(next - chrono::Duration::milliseconds(100));
        assert!(h.receive().await.is_empty(), "still hidden just before nextAttemptAt");
        h.set_clock(next);
        let again = h.receive_one().await;
        assert_eq!(again.receive_count, 2);

        // AND the retry succeeds
        assert_eq!(h.handle(&again).await, MessageOutcome::Done);
        let delivery = h.delivery(&delivery.id).await;
        assert_eq!(delivery.status, DeliveryStatus::Succeeded);
        assert_eq!(delivery.attempt_count, 2);
        assert_eq!(delivery.next_attempt_at, None);
    })
    .await;
}

/// Runs a delivery that always fails to the end; returns each scheduled gap
/// (seconds) between attempts and checks the message is hidden until each.
async fn run_failing_chain(h: &Harness, event: &Event) -> Vec<f64> {
    let mut gaps = Vec::new();
    for round in 1..=30 {
        let outcome = h.run_one().await;
        let delivery = h.only_delivery(event).await;
        assert_eq!(delivery.attempt_count, round);
        if outcome == MessageOutcome::Done {
            assert!(h.receive().await.is_empty(), "a finished message is deleted");
            return gaps;
        }
        assert_eq!(delivery.status, DeliveryStatus::Retrying);
        let next = delivery.next_attempt_at.expect("nextAttemptAt while retrying");
        gaps.push(secs(next - h.now()));
        h.set_clock(next - chrono::Duration::milliseconds(100));
        assert!(h.receive().await.is_empty(), "hidden before attempt {}", round + 1);
        h.set_clock(next);
    }
    panic!("the chain never ended");
}

#[tokio::test]
async fn given_a_receiver_that_always_fails_when_the_chain_runs_then_delays_follow_the_default_schedule_within_20_percent_and_it_fails_after_8_attempts()
 {
    bounded(async {
        // GIVEN the default (jittered) schedule and a receiver that always answers 500
        let h = Harness::new().await;
        h.simple_endpoint(None).await;
        h.sender.always(http(500, "nope"));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

        // WHEN the whole chain runs
        let gaps = run_failing_chain(&h, &event).await;

        // THEN the gaps are 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, each ± 20 %
        assert_eq!(gaps.len(), 7, "gaps {gaps:?}");
        for (gap, base) in gaps.iter().zip(DEFAULT_DELAYS) {
            let base = base as f64;
            assert!(*gap >= base * 0.8 - 0.001 && *gap <= base * 1.2 + 0.001, "gap {gap} s outside {base} s ± 20 %");
        }
        // AND the delivery is failed after 8 attempts numbered 1..8
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert_eq!(delivery.attempt_count, 8);
        assert_eq!(delivery.next_attempt_at, None);
        assert_eq!(delivery.response_status, Some(ResponseStatus::Http(500)));
        let attempts = h.attempts(&delivery.id).await;
        assert_eq!(attempts.iter().map(|a| a.number).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
        assert!(attempts[..7].iter().all(|a| a.next_delay_secs.is_some()));
        assert_eq!(attempts[7].next_delay_secs, None, "no delay after the last attempt");
        assert_eq!(h.sender.count(), 8);
        assert_eq!(h.event(&event.id).await.status, EventStatus::Failed);
    })
    .await;
}

#[tokio::test]
async fn given_a_pinned_schedule_when_the_chain_runs_then_each_delay_is_exact() {
    bounded(async {
        // GIVEN the default delays without jitter
        let h = Harness::with_schedule(pinned_default_schedule()).await;
        h.simple_endpoint(None).await;
        h.sender.always(http(503, "busy"));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

        // WHEN the chain runs to the end
        let gaps = run_failing_chain(&h, &event).await;

        // THEN every gap and every recorded next delay is exactly the schedule
        let expected: Vec<f64> = DEFAULT_DELAYS.iter().map(|s| *s as f64).collect();
        assert_eq!(gaps, expected);
        let delivery = h.only_delivery(&event).await;
        let attempts = h.attempts(&delivery.id).await;
        let recorded: Vec<Option<u64>> = attempts.iter().map(|a| a.next_delay_secs).collect();
        let mut wanted: Vec<Option<u64>> = DEFAULT_DELAYS.iter().map(|s| Some(*s)).collect();
        wanted.push(None);
        assert_eq!(recorded, wanted);
        // the attempts start exactly at the scheduled times
        let mut at = start_time();
        for (attempt, delay) in attempts.iter().zip(DEFAULT_DELAYS.iter().chain([&0])) {
            assert_eq!(attempt.started_at, at);
            at += chrono::Duration::seconds(*delay as i64);
        }
    })
    .await;
}

#[tokio::test]
async fn given_an_endpoint_with_max_attempts_3_when_every_attempt_fails_then_the_delivery_fails_after_3() {
    bounded(async {
        // GIVEN an endpoint allowing 3 attempts
        let h = Harness::with_schedule(pinned_default_schedule()).await;
        h.simple_endpoint(Some(3)).await;
        h.sender.always(http(500, "nope"));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        assert_eq!(h.only_delivery(&event).await.max_attempts, 3);

        // WHEN the chain runs
        let gaps = run_failing_chain(&h, &event).await;

        // THEN it stops after the third attempt
        assert_eq!(gaps, vec![5.0, 300.0]);
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert_eq!(delivery.attempt_count, 3);
        assert_eq!(h.attempts(&delivery.id).await.len(), 3);
        assert_eq!(h.sender.count(), 3);
    })
    .await;
}

#[tokio::test]
async fn given_a_message_back_before_next_attempt_at_when_handled_then_it_is_hidden_again_without_sending() {
    bounded(async {
        // GIVEN a failed first attempt (next in 5 min with this schedule)
        let h = Harness::with_schedule(RetrySchedule::new(vec![Duration::from_secs(300)], 0.0)).await;
        h.simple_endpoint(None).await;
        h.sender.push(http(500, "nope"));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        let message = h.receive_one().await;
        assert_eq!(h.handle(&message).await, MessageOutcome::RetryLater);

        // WHEN the message comes back early (its visibility change was lost)
        h.service.queue().change_visibility(&message.receipt_handle, Duration::ZERO).await.unwrap();
        h.advance(chrono::Duration::seconds(60));
        let early = h.receive_one().await;
        assert_eq!(h.handle(&early).await, MessageOutcome::RetryLater);

        // THEN nothing is sent and it comes back at nextAttemptAt
        assert_eq!(h.sender.count(), 1);
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.attempt_count, 1);
        let next = delivery.next_attempt_at.unwrap();
        h.set_clock(next - chrono::Duration::seconds(1));
        assert!(h.receive().await.is_empty());
        h.set_clock(next);
        assert_eq!(h.run_one().await, MessageOutcome::Done);
        assert_eq!(h.delivery(&delivery.id).await.status, DeliveryStatus::Succeeded);
    })
    .await;
}

// ---------------------------------------------------------------------------
// 4. Retry-After
// ---------------------------------------------------------------------------

/// One failed attempt answered with `reply`; returns the scheduled delay in
/// seconds, after checking the message is hidden exactly that long.
async fn delay_after_reply(reply: Reply) -> f64 {
    let h = Harness::new().await; // default, jittered schedule
    h.simple_endpoint(None).await;
    h.sender.push(reply);
    let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
    assert_eq!(h.run_one().await, MessageOutcome::RetryLater);
    let delivery = h.only_delivery(&event).await;
    assert_eq!(delivery.status, DeliveryStatus::Retrying);
    let next = delivery.next_attempt_at.unwrap();
    let delay = secs(next - h.now());
    let attempts = h.attempts(&delivery.id).await;
    assert_eq!(attempts[0].next_delay_secs, Some(delay as u64));
    h.set_clock(next - chrono::Duration::milliseconds(100));
    assert!(h.receive().await.is_empty(), "hidden until the Retry-After delay");
    h.set_clock(next);
    assert_eq!(h.receive().await.len(), 1, "visible at the Retry-After delay");
    delay
}

#[tokio::test]
async fn given_a_429_with_retry_after_90s_when_the_attempt_fails_then_the_next_attempt_is_in_90s() {
    bounded(async {
        let delay = delay_after_reply(http_retry_after(429, Duration::from_secs(90))).await;
        assert_eq!(delay, 90.0);
    })
    .await;
}

#[tokio::test]
async fn given_a_503_with_retry_after_1s_when_the_attempt_fails_then_it_is_clamped_up_to_5s() {
    bounded(async {
        let delay = delay_after_reply(http_retry_after(503, Duration::from_secs(1))).await;
        assert_eq!(delay, 5.0);
    })
    .await;
}

#[tokio::test]
async fn given_a_429_with_retry_after_3_days_when_the_attempt_fails_then_it_is_clamped_to_10h() {
    bounded(async {
        let delay = delay_after_reply(http_retry_after(429, Duration::from_secs(3 * 86_400))).await;
        assert_eq!(delay, 36_000.0);
    })
    .await;
}

// ---------------------------------------------------------------------------
// 5. 410 Gone and disabled endpoints
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_a_410_gone_when_delivered_then_the_delivery_fails_at_once_and_the_endpoint_is_disabled_with_a_reason() {
    bounded(async {
        // GIVEN an endpoint (8 attempts allowed) that answers 410 Gone
        let h = Harness::new().await;
        let gone = h.simple_endpoint(None).await.endpoint;
        h.sender.push(http(410, "gone for good"));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

        // WHEN the first attempt runs
        assert_eq!(h.run_one().await, MessageOutcome::Done);

        // THEN the delivery is failed after one attempt, nothing is rescheduled
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert_eq!(delivery.attempt_count, 1);
        assert_eq!(delivery.response_status, Some(ResponseStatus::Http(410)));
        assert_eq!(delivery.next_attempt_at, None);
        assert!(h.receive().await.is_empty());
        h.advance(chrono::Duration::hours(13));
        assert!(h.receive().await.is_empty(), "no retry later either");

        // AND the endpoint is inactive with a reason
        let endpoint = h.get_endpoint(&gone.id).await;
        assert!(!endpoint.is_active);
        let reason = endpoint.disabled_reason.expect("disabledReason");
        assert!(reason.contains("410"), "reason {reason:?}");
        assert_eq!(h.event(&event.id).await.status, EventStatus::Failed);
    })
    .await;
}

#[tokio::test]
async fn given_an_endpoint_disabled_by_410_when_later_events_are_published_then_they_are_not_fanned_out_to_it() {
    bounded(async {
        // GIVEN two endpoints, the first of which answers 410 once
        let h = Harness::new().await;
        let gone = h.simple_endpoint(None).await.endpoint;
        let alive = h
            .endpoint(EndpointInput { url: "https://other.example.com/hook".into(), ..Default::default() })
            .await
            .endpoint;
        h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        let mut outcomes = Vec::new();
        for message in h.receive().await {
            let to_gone = {
                let task: serde_json::Value = serde_json::from_str(&message.body).unwrap();
                let delivery = h.delivery(&Id::from_stored(task["d"].as_str().unwrap())).await;
                delivery.endpoint_id == gone.id
            };
            h.sender.push(if to_gone { http(410, "") } else { http(200, "") });
            outcomes.push(h.handle(&message).await);
        }
        assert_eq!(outcomes, vec![MessageOutcome::Done; 2]);
        assert!(!h.get_endpoint(&gone.id).await.is_active);
        let before = h.sender.count();

        // WHEN another event is published and fanned out
        let later = h.publish_and_fan_out(serde_json::json!({"n": 2})).await;

        // THEN only the active endpoint gets a delivery
        let deliveries = h.deliveries_of(&later).await;
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].endpoint_id, alive.id);
        assert_eq!(h.event(&later.id).await.delivery_count, 1);
        assert_eq!(h.deliveries_to(&gone.id).await.len(), 1, "only the first event's");
        assert_eq!(h.run_visible().await, vec![MessageOutcome::Done]);
        assert_eq!(h.sender.count(), before + 1);
        assert!(h.sender.sent().iter().skip(before).all(|r| r.url != URL));
        assert_eq!(h.event(&later.id).await.status, EventStatus::Succeeded);
    })
    .await;
}

#[tokio::test]
async fn given_a_delivery_queued_for_an_endpoint_that_is_then_disabled_when_dispatched_then_it_is_failed_endpoint_disabled_without_sending()
 {
    bounded(async {
        // GIVEN two queued deliveries to one endpoint
        let h = Harness::new().await;
        let endpoint = h.simple_endpoint(None).await.endpoint;
        let first = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        let second = h.publish_and_fan_out(serde_json::json!({"n": 2})).await;
        let messages = h.receive().await;
        assert_eq!(messages.len(), 2);
        let first_delivery = h.only_delivery(&first).await;
        let (m_first, m_second): (Vec<_>, Vec<_>) =
            messages.into_iter().partition(|m| m.body.contains(first_delivery.id.as_str()));

        // WHEN the first answers 410 (disabling the endpoint) and then the second is handled
        h.sender.push(http(410, ""));
        assert_eq!(h.handle(&m_first[0]).await, MessageOutcome::Done);
        assert!(!h.get_endpoint(&endpoint.id).await.is_active);
        assert_eq!(h.handle(&m_second[0]).await, MessageOutcome::Done);

        // THEN the second was never sent and is failed as endpoint_disabled
        assert_eq!(h.sender.count(), 1);
        let delivery = h.only_delivery(&second).await;
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert_eq!(delivery.response_status, Some(ResponseStatus::Error(ErrorCode::EndpointDisabled)));
        assert_eq!(delivery.response_status.unwrap().to_stored(), "endpoint_disabled");
        assert_eq!(delivery.next_attempt_at, None);
        let attempts = h.attempts(&delivery.id).await;
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].response_status.to_stored(), "endpoint_disabled");
        assert!(attempts[0].error.is_some());
        assert_eq!(h.event(&second.id).await.status, EventStatus::Failed);
        assert!(h.receive().await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn given_a_retrying_delivery_when_the_application_disables_the_endpoint_then_the_retry_is_failed_endpoint_disabled_without_sending()
 {
    bounded(async {
        // GIVEN a delivery waiting for its second attempt
        let h = Harness::with_schedule(pinned_default_schedule()).await;
        let endpoint = h.simple_endpoint(None).await.endpoint;
        h.sender.push(http(500, ""));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        assert_eq!(h.run_one().await, MessageOutcome::RetryLater);

        // WHEN the application sets the endpoint inactive and the retry comes due
        h.service
            .update_endpoint(
                &h.app,
                endpoint.id.as_str(),
                EndpointPatch { is_active: Some(false), ..Default::default() },
            )
            .await
            .unwrap();
        h.advance(chrono::Duration::seconds(5));
        assert_eq!(h.run_one().await, MessageOutcome::Done);

        // THEN it is recorded failed (endpoint_disabled) as attempt 2, not sent
        assert_eq!(h.sender.count(), 1);
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert_eq!(delivery.attempt_count, 2);
        assert_eq!(delivery.response_status, Some(ResponseStatus::Error(ErrorCode::EndpointDisabled)));
        let attempts = h.attempts(&delivery.id).await;
        assert_eq!(attempts.iter().map(|a| a.number).collect::<Vec<_>>(), vec![1, 2]);
    })
    .await;
}

// ---------------------------------------------------------------------------
// 6. Auto-disable after five days of failures
// ---------------------------------------------------------------------------

fn twelve_hours() -> RetrySchedule {
    RetrySchedule::new(vec![Duration::from_secs(12 * 3600)], 0.0)
}

#[tokio::test]
async fn given_an_endpoint_failing_every_attempt_when_five_days_pass_then_it_is_disabled_with_a_reason() {
    bounded(async {
        // GIVEN 20 attempts 12 h apart, every one failing
        let h = Harness::with_schedule(twelve_hours()).await;
        let endpoint = h.simple_endpoint(Some(20)).await.endpoint;
        h.sender.always(http(500, "still down"));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

        // WHEN attempts run every 12 h: attempt 10 is at 108 h, attempt 11 at 120 h
        for attempt in 1..=10 {
            assert_eq!(h.run_one().await, MessageOutcome::RetryLater, "attempt {attempt}");
            h.advance(chrono::Duration::hours(12));
        }
        // THEN it is still active after 4.5 days of failures
        assert!(h.get_endpoint(&endpoint.id).await.is_active);

        // WHEN the attempt at exactly 5 days also fails
        assert_eq!(h.run_one().await, MessageOutcome::RetryLater);

        // THEN the endpoint is inactive with a reason
        let disabled = h.get_endpoint(&endpoint.id).await;
        assert!(!disabled.is_active);
        let reason = disabled.disabled_reason.expect("disabledReason");
        assert!(reason.contains("5 days"), "reason {reason:?}");

        // AND the pending retry is recorded endpoint_disabled without sending
        h.advance(chrono::Duration::hours(12));
        assert_eq!(h.run_one().await, MessageOutcome::Done);
        assert_eq!(h.sender.count(), 11);
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert_eq!(delivery.response_status, Some(ResponseStatus::Error(ErrorCode::EndpointDisabled)));
        // AND later events are no longer fanned out to it
        let later = h.publish_and_fan_out(serde_json::json!({"n": 2})).await;
        assert!(h.deliveries_of(&later).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn given_failures_over_five_days_with_several_deliveries_when_none_succeeds_then_the_endpoint_is_disabled() {
    bounded(async {
        // GIVEN an endpoint allowing 9 attempts 12 h apart (4 days per delivery)
        let h = Harness::with_schedule(twelve_hours()).await;
        let endpoint = h.simple_endpoint(Some(9)).await.endpoint;
        h.sender.always(http(500, "down"));

        // WHEN a first delivery fails for 4 days, and a second one keeps failing
        h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        for _ in 0..9 {
            h.run_one().await;
            h.advance(chrono::Duration::hours(12));
        }
        assert!(h.get_endpoint(&endpoint.id).await.is_active, "4.5 days in");
        h.publish_and_fan_out(serde_json::json!({"n": 2})).await;
        h.run_one().await; // at 108 h
        assert!(h.get_endpoint(&endpoint.id).await.is_active);
        h.advance(chrono::Duration::hours(12));
        h.run_one().await; // at 120 h

        // THEN the streak spanning both deliveries disables it
        assert!(!h.get_endpoint(&endpoint.id).await.is_active);
    })
    .await;
}

#[tokio::test]
async fn given_a_success_between_failures_when_more_than_five_days_of_failures_pass_in_total_then_the_endpoint_stays_active()
 {
    bounded(async {
        // GIVEN an endpoint allowing 9 attempts 12 h apart
        let h = Harness::with_schedule(twelve_hours()).await;
        let endpoint = h.simple_endpoint(Some(9)).await.endpoint;

        // WHEN event 1 fails for 4 days (9 attempts) ...
        h.sender.push_n(9, http(500, "down"));
        let first = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        for _ in 0..9 {
            h.run_one().await;
            h.advance(chrono::Duration::hours(12));
        }
        assert_eq!(h.only_delivery(&first).await.status, DeliveryStatus::Failed);
        // ... event 2 succeeds (at 108 h) ...
        h.sender.push(http(200, "back"));
        let second = h.publish_and_fan_out(serde_json::json!({"n": 2})).await;
        assert_eq!(h.run_one().await, MessageOutcome::Done);
        assert_eq!(h.only_delivery(&second).await.status, DeliveryStatus::Succeeded);
        // ... and event 3 fails for 4 more days (to 204 h, 8.5 days after the first failure)
        h.sender.always(http(500, "down again"));
        h.advance(chrono::Duration::minutes(1));
        let third = h.publish_and_fan_out(serde_json::json!({"n": 3})).await;
        for _ in 0..9 {
            h.run_one().await;
            h.advance(chrono::Duration::hours(12));
        }

        // THEN the success reset the streak: the endpoint is still active
        assert_eq!(h.only_delivery(&third).await.status, DeliveryStatus::Failed);
        assert_eq!(h.sender.count(), 19);
        let endpoint = h.get_endpoint(&endpoint.id).await;
        assert!(endpoint.is_active, "disabled: {:?}", endpoint.disabled_reason);
    })
    .await;
}

// ---------------------------------------------------------------------------
// 7. Transport error codes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_transport_failures_when_attempted_then_the_error_code_and_message_are_recorded_and_retried() {
    bounded(async {
        let cases = [
            (ErrorCode::Timeout, "timeout", "no response within 15 s"),
            (ErrorCode::Dns, "dns", "hooks.example.com: no such host"),
            (ErrorCode::Connect, "connect", "connection refused"),
            (ErrorCode::Tls, "tls", "certificate has expired"),
            (ErrorCode::Blocked, "blocked", "resolves to 10.0.0.1 (private)"),
        ];
        for (code, stored, message) in cases {
            // GIVEN a receiver the sender cannot reach in this way
            let h = Harness::with_schedule(pinned_default_schedule()).await;
            h.simple_endpoint(None).await;
            h.sender.push(failure(code, message));
            let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

            // WHEN the attempt runs
            assert_eq!(h.run_one().await, MessageOutcome::RetryLater, "{stored}");

            // THEN the code and message are recorded and a retry is scheduled
            let delivery = h.only_delivery(&event).await;
            assert_eq!(delivery.status, DeliveryStatus::Retrying, "{stored}");
            assert_eq!(delivery.response_status, Some(ResponseStatus::Error(code)));
            assert_eq!(delivery.response_status.unwrap().to_stored(), stored);
            assert_eq!(delivery.error_message.as_deref(), Some(message));
            assert_eq!(delivery.response_body, None);
            let attempts = h.attempts(&delivery.id).await;
            assert_eq!(attempts.len(), 1);
            assert_eq!(attempts[0].response_status.to_stored(), stored);
            assert_eq!(attempts[0].error.as_deref(), Some(message));
            assert_eq!(attempts[0].next_delay_secs, Some(5));
            // the stored JSON form is the code string
            assert_eq!(serde_json::to_value(attempts[0].response_status).unwrap(), stored);

            // AND the retry runs and can succeed
            h.advance(chrono::Duration::seconds(5));
            assert_eq!(h.run_one().await, MessageOutcome::Done, "{stored}");
            let delivery = h.delivery(&delivery.id).await;
            assert_eq!(delivery.status, DeliveryStatus::Succeeded);
            assert_eq!(delivery.attempt_count, 2);
            assert_eq!(delivery.error_message, None);
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// 8. Duplicates, deleted deliveries and poison messages
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_one_message_when_handled_twice_in_a_row_then_the_attempt_is_recorded_once() {
    bounded(async {
        for reply in [http(200, "ok"), http(500, "down")] {
            // GIVEN one received message
            let h = Harness::new().await;
            h.simple_endpoint(None).await;
            h.sender.push(reply.clone());
            let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
            let message = h.receive_one().await;

            // WHEN the dispatcher handles it twice
            h.dispatcher.handle(&message).await;
            h.dispatcher.handle(&message).await;

            // THEN one send, one attempt
            assert_eq!(h.sender.count(), 1, "{reply:?}");
            let delivery = h.only_delivery(&event).await;
            assert_eq!(delivery.attempt_count, 1);
            assert_eq!(h.attempts(&delivery.id).await.len(), 1);
        }
    })
    .await;
}

#[tokio::test]
async fn given_one_message_when_handled_twice_concurrently_then_the_attempt_is_recorded_once() {
    bounded(async {
        for reply in [http(200, "ok"), http(500, "down")] {
            // GIVEN one received message and a sender that lets both sends overlap
            let h = Harness::new().await;
            h.simple_endpoint(None).await;
            h.sender.always(reply.clone());
            *h.sender.gate.lock().unwrap() = Some(Arc::new(tokio::sync::Barrier::new(2)));
            let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
            let message = h.receive_one().await;

            // WHEN two workers handle it at the same time
            let (a, b) = tokio::join!(h.dispatcher.handle(&message), h.dispatcher.handle(&message));

            // THEN only one attempt is recorded
            let delivery = h.only_delivery(&event).await;
            assert_eq!(delivery.attempt_count, 1, "{reply:?}");
            assert_eq!(h.attempts(&delivery.id).await.len(), 1);
            if delivery.status == DeliveryStatus::Succeeded {
                assert_eq!((a, b), (MessageOutcome::Done, MessageOutcome::Done));
                assert_eq!(h.event(&event.id).await.succeeded_count, 1, "counted once");
            } else {
                assert_eq!(delivery.status, DeliveryStatus::Retrying);
                // neither worker may delete the only message of a live chain
                assert_eq!((a, b), (MessageOutcome::RetryLater, MessageOutcome::RetryLater));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn given_a_second_queue_message_for_a_delivery_when_both_are_handled_then_only_one_success_is_recorded() {
    bounded(async {
        // GIVEN a delivery with a duplicate message (a re-run fan-out)
        let h = Harness::new().await;
        h.simple_endpoint(None).await;
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        let original = h.receive_one().await;
        h.service.queue().send(OutgoingMessage::now(original.body.clone())).await.unwrap();

        // WHEN the original succeeds and then the duplicate is handled
        assert_eq!(h.handle(&original).await, MessageOutcome::Done);
        assert_eq!(h.run_one().await, MessageOutcome::Done);

        // THEN one send, one attempt, one success on the event
        assert_eq!(h.sender.count(), 1);
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.status, DeliveryStatus::Succeeded);
        assert_eq!(delivery.attempt_count, 1);
        assert_eq!(h.attempts(&delivery.id).await.len(), 1);
        let event = h.event(&event.id).await;
        assert_eq!((event.succeeded_count, event.failed_count), (1, 0));
        assert!(h.receive().await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn given_a_second_queue_message_while_the_delivery_is_retrying_when_handled_then_it_waits_and_one_success_is_recorded()
 {
    bounded(async {
        // GIVEN a delivery whose first attempt failed
        let h = Harness::with_schedule(pinned_default_schedule()).await;
        h.simple_endpoint(None).await;
        h.sender.push(http(500, ""));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        let original = h.receive_one().await;
        assert_eq!(h.handle(&original).await, MessageOutcome::RetryLater);

        // WHEN a duplicate message for it arrives before the next attempt is due
        h.service.queue().send(OutgoingMessage::now(original.body.clone())).await.unwrap();
        // THEN it sends nothing and is kept (hidden), since it may be the only live copy
        assert_eq!(h.run_one().await, MessageOutcome::RetryLater);
        assert_eq!(h.sender.count(), 1);
        assert!(h.receive().await.is_empty(), "both messages wait for the next attempt");

        // WHEN the next attempt is due
        h.advance(chrono::Duration::seconds(5));
        let outcomes = h.run_visible().await;
        assert_eq!(outcomes.len(), 2, "both messages came back");

        // THEN the chain completes with exactly one recorded success
        assert!(outcomes.iter().all(|o| *o == MessageOutcome::Done), "{outcomes:?}");
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.status, DeliveryStatus::Succeeded);
        assert_eq!(delivery.attempt_count, 2);
        assert_eq!(h.attempts(&delivery.id).await.len(), 2);
        let event = h.event(&event.id).await;
        assert_eq!((event.succeeded_count, event.failed_count), (1, 0));
    })
    .await;
}

#[tokio::test]

async fn given_a_failed_attempt_when_the_same_received_message_is_handled_again_then_its_chain_is_kept() {
    bounded(async {
        // GIVEN the only message of a delivery whose first attempt failed
        let h = Harness::with_schedule(pinned_default_schedule()).await;
        h.simple_endpoint(None).await;
        h.sender.push(http(500, ""));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        let message = h.receive_one().await;
        assert_eq!(h.handle(&message).await, MessageOutcome::RetryLater);

        // WHEN the same receive is handled again, as a duplicate Lambda
        // invocation of the same SQS batch does (same receipt, same receive
        // count), and the runner acts on the outcome (delete on Done)
        let again = h.handle(&message).await;
        assert_eq!(h.sender.count(), 1, "nothing is sent twice");

        // THEN the delivery still gets its second attempt at nextAttemptAt
        h.advance(chrono::Duration::seconds(5));
        let visible = h.receive().await;
        assert_eq!(
            visible.len(),
            1,
            "the retrying delivery lost its only message (second handling returned {again:?})"
        );
        assert_eq!(h.handle(&visible[0]).await, MessageOutcome::Done);
        assert_eq!(h.only_delivery(&event).await.status, DeliveryStatus::Succeeded);
    })
    .await;
}

#[tokio::test]
async fn given_a_deleted_delivery_when_its_message_is_handled_then_it_is_done_without_sending() {
    bounded(async {
        // GIVEN a queued delivery that is then deleted
        let h = Harness::new().await;
        h.simple_endpoint(None).await;
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        let delivery = h.only_delivery(&event).await;
        h.service.delete_delivery(&h.app, delivery.id.as_str()).await.expect("delete");

        // WHEN its message is handled
        assert_eq!(h.run_one().await, MessageOutcome::Done);

        // THEN nothing is sent and the message is gone
        assert_eq!(h.sender.count(), 0);
        assert!(h.receive().await.is_empty());
        h.advance(chrono::Duration::hours(1));
        assert!(h.receive().await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn given_malformed_messages_when_received_repeatedly_then_they_end_in_the_dead_letter_table() {
    bounded(async {
        // GIVEN messages that are not delivery tasks
        let h = Harness::new().await;
        let bodies = [
            "not json at all".to_string(),
            r#"{"a":"app_nope","d":"dlv_nope"}"#.to_string(),
            r#"{"unexpected":true}"#.to_string(),
        ];
        for body in &bodies {
            h.service.queue().send(OutgoingMessage::now(body.clone())).await.unwrap();
        }
        let max_receives = h.queue.config().max_receive_count;

        // WHEN the dispatcher keeps receiving them
        let mut receives = 0;
        for _ in 0..200 {
            let messages = h.receive().await;
            if messages.is_empty() {
                break;
            }
            for message in &messages {
                receives += 1;
                // THEN each is kept (RetryLater), never deleted
                assert_eq!(h.handle(message).await, MessageOutcome::RetryLater);
                assert!(message.receive_count <= max_receives);
            }
        }

        // THEN after maxReceiveCount receives each is in the dead-letter table
        assert_eq!(receives, bodies.len() * max_receives as usize);
        let mut dead = h.queue.dead_letters().await.unwrap();
        dead.sort();
        let mut expected = bodies.to_vec();
        expected.sort();
        assert_eq!(dead, expected);
        assert_eq!(h.sender.count(), 0);
        h.advance(chrono::Duration::hours(13));
        assert!(h.receive().await.is_empty());
    })
    .await;
}

// ---------------------------------------------------------------------------
// 9. Event status
// ---------------------------------------------------------------------------

async fn two_endpoint_harness(second_max_attempts: Option<u32>) -> (Harness, Endpoint, Endpoint) {
    let h = Harness::with_schedule(pinned_default_schedule()).await;
    let a = h.simple_endpoint(None).await.endpoint;
    let b = h
        .endpoint(EndpointInput {
            url: "https://b.example.com/hook".into(),
            max_attempts: second_max_attempts,
            ..Default::default()
        })
        .await
        .endpoint;
    (h, a, b)
}

/// Handles every visible message, answering per destination URL.
async fn run_visible_by_url(h: &Harness, reply_for: impl Fn(&str) -> Reply) -> Vec<MessageOutcome> {
    let mut outcomes = Vec::new();
    for message in h.receive().await {
        let task: serde_json::Value = serde_json::from_str(&message.body).unwrap();
        let delivery = h.delivery(&Id::from_stored(task["d"].as_str().unwrap())).await;
        let url = h.get_endpoint(&delivery.endpoint_id).await.url;
        h.sender.push(reply_for(&url));
        outcomes.push(h.handle(&message).await);
    }
    outcomes
}

#[tokio::test]
async fn given_two_endpoints_when_both_deliveries_succeed_then_the_event_is_succeeded() {
    bounded(async {
        let (h, _, _) = two_endpoint_harness(None).await;
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        assert_eq!(h.event(&event.id).await.status, EventStatus::Pending);
        assert_eq!(h.event(&event.id).await.delivery_count, 2);

        assert_eq!(run_visible_by_url(&h, |_| http(200, "")).await, vec![MessageOutcome::Done; 2]);

        let event = h.event(&event.id).await;
        assert_eq!(event.status, EventStatus::Succeeded);
        assert_eq!((event.succeeded_count, event.failed_count), (1 + 1, 0));
    })
    .await;
}

#[tokio::test]
async fn given_two_endpoints_when_one_delivery_fails_then_the_event_is_failed_and_a_manual_retry_that_succeeds_makes_it_succeeded()
 {
    bounded(async {
        // GIVEN endpoint A that accepts and endpoint B (1 attempt) that fails
        let (h, _, b) = two_endpoint_harness(Some(1)).await;
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

        // WHEN both are dispatched
        let outcomes = run_visible_by_url(&h, |url| if url == URL { http(200, "") } else { http(500, "") }).await;
        assert_eq!(outcomes, vec![MessageOutcome::Done; 2]);

        // THEN the event is failed
        let stored = h.event(&event.id).await;
        assert_eq!(stored.status, EventStatus::Failed);
        assert_eq!((stored.succeeded_count, stored.failed_count), (1, 1));

        // WHEN the failed delivery is retried by hand
        let failed = h.deliveries_to(&b.id).await.pop().unwrap();
        assert_eq!(failed.status, DeliveryStatus::Failed);
        h.advance(chrono::Duration::minutes(10));
        let retry = h.service.retry_delivery(&h.app, failed.id.as_str()).await.expect("manual retry");

        // THEN a new chain starts and the event is pending again
        assert_eq!(retry.retry_of.as_ref(), Some(&failed.id));
        assert_ne!(retry.id, failed.id);
        assert_eq!(retry.status, DeliveryStatus::Pending);
        assert_eq!(retry.attempt_count, 0);
        assert_eq!(h.event(&event.id).await.status, EventStatus::Pending);
        assert_eq!(h.delivery(&failed.id).await.retried_by.as_ref(), Some(&retry.id));

        // WHEN the retry succeeds
        h.sender.push(http(200, "thanks"));
        assert_eq!(h.run_one().await, MessageOutcome::Done);

        // THEN the event is succeeded
        let retry = h.delivery(&retry.id).await;
        assert_eq!(retry.status, DeliveryStatus::Succeeded);
        assert_eq!(retry.attempt_count, 1);
        let stored = h.event(&event.id).await;
        assert_eq!(stored.status, EventStatus::Succeeded);
        assert_eq!((stored.succeeded_count, stored.failed_count), (2, 0));
        assert_eq!(header(&h.sender.last(), "webhook-id"), Some(event.id.as_str()));
    })
    .await;
}

#[tokio::test]
async fn given_a_retrying_delivery_when_the_event_is_read_then_it_is_pending() {
    bounded(async {
        let h = Harness::with_schedule(pinned_default_schedule()).await;
        h.simple_endpoint(None).await;
        h.sender.push(http(500, ""));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        assert_eq!(h.run_one().await, MessageOutcome::RetryLater);
        assert_eq!(h.event(&event.id).await.status, EventStatus::Pending);
        h.advance(chrono::Duration::seconds(5));
        assert_eq!(h.run_one().await, MessageOutcome::Done);
        assert_eq!(h.event(&event.id).await.status, EventStatus::Succeeded);
    })
    .await;
}

// ---------------------------------------------------------------------------
// 10. Fan-out idempotency
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_a_stale_event_when_fanned_out_twice_then_there_is_one_delivery_and_one_recorded_success() {
    bounded(async {
        // GIVEN an event read before its first fan-out
        let h = Harness::new().await;
        h.simple_endpoint(None).await;
        let published = h.publish(serde_json::json!({"n": 1})).await;
        let stale = h.event(&published.id).await;
        assert!(!stale.fanned_out);

        // WHEN the stale copy is fanned out twice
        assert_eq!(h.service.fan_out(&stale).await.unwrap(), 1);
        assert_eq!(h.service.fan_out(&stale).await.unwrap(), 1);

        // THEN there is one delivery, the event is marked, the sweep has nothing left
        assert_eq!(h.deliveries_of(&stale).await.len(), 1);
        let event = h.event(&stale.id).await;
        assert!(event.fanned_out);
        assert_eq!(event.delivery_count, 1);
        assert_eq!(h.service.sweep_fanout(100).await.unwrap(), 0);

        // AND the receiver gets exactly one success recorded
        let outcomes = h.run_visible().await;
        assert!(outcomes.iter().all(|o| *o == MessageOutcome::Done), "{outcomes:?}");
        assert_eq!(h.sender.count(), 1, "the second message sends nothing");
        let delivery = h.only_delivery(&stale).await;
        assert_eq!(delivery.status, DeliveryStatus::Succeeded);
        assert_eq!(h.attempts(&delivery.id).await.len(), 1);
        let event = h.event(&stale.id).await;
        assert_eq!(event.status, EventStatus::Succeeded);
        assert_eq!((event.delivery_count, event.succeeded_count), (1, 1));
        assert!(h.receive().await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn given_a_stale_event_fanned_out_again_after_delivery_when_dispatched_then_nothing_is_resent() {
    bounded(async {
        // GIVEN an event delivered successfully, and a stale copy of it
        let h = Harness::new().await;
        h.simple_endpoint(None).await;
        let published = h.publish(serde_json::json!({"n": 1})).await;
        let stale = h.event(&published.id).await;
        h.service.fan_out(&stale).await.unwrap();
        assert_eq!(h.run_visible().await, vec![MessageOutcome::Done]);

        // WHEN the stale copy is fanned out again (a redelivered stream record)
        h.advance(chrono::Duration::minutes(1));
        h.service.fan_out(&stale).await.unwrap();
        let outcomes = h.run_visible().await;

        // THEN no delivery, no send and no success is added
        assert!(outcomes.iter().all(|o| *o == MessageOutcome::Done));
        assert_eq!(h.sender.count(), 1);
        assert_eq!(h.deliveries_of(&stale).await.len(), 1);
        let event = h.event(&stale.id).await;
        assert_eq!(event.status, EventStatus::Succeeded);
        assert_eq!((event.delivery_count, event.succeeded_count, event.failed_count), (1, 1, 0));
    })
    .await;
}

#[tokio::test]
async fn given_two_messages_for_one_delivery_in_one_batch_when_handled_concurrently_then_one_success_is_recorded() {
    bounded(async {
        // GIVEN a double fan-out, both messages received in one batch
        let h = Harness::new().await;
        h.simple_endpoint(None).await;
        let published = h.publish(serde_json::json!({"n": 1})).await;
        let stale = h.event(&published.id).await;
        h.service.fan_out(&stale).await.unwrap();
        h.service.fan_out(&stale).await.unwrap();
        let batch = h.receive().await;
        assert_eq!(batch.len(), 2);

        // WHEN the batch is handled concurrently
        let outcomes = h.dispatcher.handle_batch(&batch).await;

        // THEN one attempt and one success are recorded
        assert_eq!(outcomes, vec![MessageOutcome::Done; 2]);
        let delivery = h.only_delivery(&stale).await;
        assert_eq!(delivery.status, DeliveryStatus::Succeeded);
        assert_eq!(delivery.attempt_count, 1);
        assert_eq!(h.attempts(&delivery.id).await.len(), 1);
        let event = h.event(&stale.id).await;
        assert_eq!((event.delivery_count, event.succeeded_count), (1, 1));
        assert!(h.sender.count() >= 1);
    })
    .await;
}

#[tokio::test]
async fn given_the_queue_fails_during_fan_out_when_the_sweep_runs_again_then_the_delivery_is_queued_and_delivered_once()
{
    bounded(async {
        // GIVEN a published event and a queue whose next send fails
        let h = Harness::new().await;
        h.simple_endpoint(None).await;
        let event = h.publish(serde_json::json!({"n": 1})).await;
        h.flaky.failing_sends.store(1, Ordering::SeqCst);

        // WHEN the first sweep fails after writing the delivery
        assert!(h.service.sweep_fanout(100).await.is_err());
        assert!(!h.event(&event.id).await.fanned_out, "not marked before the queue send");
        assert!(h.receive().await.is_empty());

        // THEN the next sweep finishes it and the receiver gets it once
        assert_eq!(h.service.sweep_fanout(100).await.unwrap(), 1);
        assert_eq!(h.deliveries_of(&event).await.len(), 1);
        assert_eq!(h.run_visible().await, vec![MessageOutcome::Done]);
        assert_eq!(h.sender.count(), 1);
        assert_eq!(h.event(&event.id).await.status, EventStatus::Succeeded);
    })
    .await;
}

#[tokio::test]

async fn given_an_endpoint_disabled_between_two_fan_outs_of_one_event_when_the_other_delivery_succeeds_then_the_event_is_not_succeeded()
 {
    bounded(async {
        // GIVEN an event fanned out to endpoints A and B
        let h = Harness::new().await;
        let a = h.simple_endpoint(None).await.endpoint;
        h.endpoint(EndpointInput { url: "https://b.example.com/hook".into(), ..Default::default() }).await;
        let published = h.publish(serde_json::json!({"n": 1})).await;
        let stale = h.event(&published.id).await;
        assert_eq!(h.service.fan_out(&stale).await.unwrap(), 2);

        // WHEN A is disabled and the fan-out runs again (a redelivered stream record)
        h.service
            .update_endpoint(&h.app, a.id.as_str(), EndpointPatch { is_active: Some(false), ..Default::default() })
            .await
            .unwrap();
        h.service.fan_out(&stale).await.unwrap();

        // AND B's delivery succeeds while A's is still queued
        assert_eq!(h.deliveries_of(&stale).await.len(), 2);
        for message in h.receive().await {
            let task: serde_json::Value = serde_json::from_str(&message.body).unwrap();
            let delivery = h.delivery(&Id::from_stored(task["d"].as_str().unwrap())).await;
            if delivery.endpoint_id != a.id {
                h.handle(&message).await;
            }
        }

        // THEN the event is still pending: it has two deliveries, one unfinished
        let event = h.event(&stale.id).await;
        assert_eq!(
            event.status,
            EventStatus::Pending,
            "deliveryCount {} with 2 deliveries stored",
            event.delivery_count
        );
        assert_eq!(event.delivery_count, 2);
    })
    .await;
}

#[tokio::test]
async fn given_an_endpoint_deleted_while_a_delivery_is_queued_when_dispatched_then_it_is_failed_endpoint_deleted_without_sending()
 {
    bounded(async {
        // GIVEN a queued delivery whose endpoint is then deleted
        let h = Harness::new().await;
        let endpoint = h.simple_endpoint(None).await.endpoint;
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        h.service.delete_endpoint(&h.app, endpoint.id.as_str()).await.unwrap();

        // WHEN its message is handled
        assert_eq!(h.run_one().await, MessageOutcome::Done);

        // THEN nothing is sent and the delivery is failed (endpoint_deleted)
        assert_eq!(h.sender.count(), 0);
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.status, DeliveryStatus::Failed);
        assert_eq!(delivery.response_status.map(|s| s.to_stored()).as_deref(), Some("endpoint_deleted"));
        assert_eq!(h.event(&event.id).await.status, EventStatus::Failed);
    })
    .await;
}

#[tokio::test]
async fn given_any_2xx_when_answered_then_it_is_a_success_and_any_other_status_is_retried() {
    bounded(async {
        for (status, success) in [
            (200, true),
            (201, true),
            (204, true),
            (299, true),
            (199, false),
            (302, false),
            (400, false),
            (404, false),
            (502, false),
        ] {
            // GIVEN a receiver answering `status`
            let h = Harness::with_schedule(pinned_default_schedule()).await;
            h.simple_endpoint(None).await;
            h.sender.push(http(status, "answer"));
            let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

            // WHEN the attempt runs
            let outcome = h.run_one().await;

            // THEN 2xx finishes the delivery; anything else schedules a retry
            let delivery = h.only_delivery(&event).await;
            assert_eq!(delivery.response_status, Some(ResponseStatus::Http(status)));
            if success {
                assert_eq!(outcome, MessageOutcome::Done, "{status}");
                assert_eq!(delivery.status, DeliveryStatus::Succeeded, "{status}");
                assert_eq!(delivery.error_message, None);
            } else {
                assert_eq!(outcome, MessageOutcome::RetryLater, "{status}");
                assert_eq!(delivery.status, DeliveryStatus::Retrying, "{status}");
                assert_eq!(delivery.next_attempt_at, Some(h.now() + chrono::Duration::seconds(5)));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn given_a_retry_after_on_a_500_when_the_attempt_fails_then_the_schedule_is_used() {
    bounded(async {
        // GIVEN a 500 carrying Retry-After (only 429/503 honour it)
        let h = Harness::with_schedule(pinned_default_schedule()).await;
        h.simple_endpoint(None).await;
        h.sender.push(http_retry_after(500, Duration::from_secs(3600)));
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

        // WHEN the attempt fails
        assert_eq!(h.run_one().await, MessageOutcome::RetryLater);

        // THEN the next attempt follows the schedule (5 s)
        let delivery = h.only_delivery(&event).await;
        assert_eq!(delivery.next_attempt_at, Some(h.now() + chrono::Duration::seconds(5)));
    })
    .await;
}

#[tokio::test]
async fn given_an_endpoint_timeout_when_delivered_then_the_request_carries_it() {
    bounded(async {
        let h = Harness::new().await;
        h.endpoint(EndpointInput { url: URL.into(), timeout_secs: Some(30), ..Default::default() }).await;
        h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        assert_eq!(h.run_visible().await, vec![MessageOutcome::Done]);
        assert_eq!(h.sender.last().timeout, Duration::from_secs(30));
    })
    .await;
}

#[tokio::test]
async fn given_endpoints_filtering_event_types_when_an_event_is_fanned_out_then_only_subscribers_get_it() {
    bounded(async {
        // GIVEN one endpoint for another type only, one for all types
        let h = Harness::new().await;
        h.service
            .create_event_type(&h.app, EventTypeInput { name: "invoice.paid".into(), ..Default::default() })
            .await
            .unwrap();
        let other = h
            .endpoint(EndpointInput {
                url: "https://invoices.example.com/hook".into(),
                event_types: Some(vec!["invoice.paid".into()]),
                ..Default::default()
            })
            .await
            .endpoint;
        let all = h.simple_endpoint(None).await.endpoint;

        // WHEN an order.created event is fanned out
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;

        // THEN only the catch-all endpoint gets a delivery
        let deliveries = h.deliveries_of(&event).await;
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].endpoint_id, all.id);
        assert!(h.deliveries_to(&other.id).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn given_no_matching_endpoint_when_an_event_is_fanned_out_then_it_is_succeeded_with_no_deliveries() {
    bounded(async {
        let h = Harness::new().await;
        let event = h.publish_and_fan_out(serde_json::json!({"n": 1})).await;
        let stored = h.event(&event.id).await;
        assert!(stored.fanned_out);
        assert_eq!(stored.delivery_count, 0);
        assert_eq!(stored.status, EventStatus::Succeeded);
        assert!(h.receive().await.is_empty());
    })
    .await;
}
