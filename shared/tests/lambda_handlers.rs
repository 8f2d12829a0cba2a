//! The Lambda handlers fed the fixtures in `events/` (the same files are valid
//! `sam local invoke -e` input): the conversions on their own, the handlers on
//! the embedded backend, and the whole AWS pipeline on moto (DynamoDB store,
//! SQS queues, Secrets Manager) — publish → stream fan-out → dispatcher → a
//! signed POST to a local receiver — plus ingest and its DLQ path.

mod faults;
mod moto;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use lambda_http::Body;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use skyhook::adapters::aws::dynamodb::DynamoStore;
use skyhook::adapters::aws::sqs::SqsQueue;
use skyhook::adapters::local_secrets::{SecretDocument, StaticSecrets};
use skyhook::adapters::sqlite::{SqliteQueue, SqliteQueueConfig, SqliteStore};
use skyhook::api::{ApiResponse, Resource};
use skyhook::domain::{Id, IdKind};
use skyhook::lambda::{
    IngestOutcome, InitError, LambdaConfig, StreamRecordAction, build_dispatcher, build_ingest_queue,
    build_service_with, classify_stream_record, from_api_response, handle_deliveries, handle_http, handle_ingest,
    handle_stream, ingest_one, to_api_request, to_received_messages,
};
use skyhook::ports::{Clock, EventStore, Queue, ReceivedMessage, StoreError, SystemClock};
use skyhook::sender::HttpSender;
use skyhook::service::{Dispatcher, ServiceConfig, Skyhook};
use skyhook::ssrf::AddressPolicy;

// ---------------------------------------------------------------- fixtures

const HEALTH: &str = include_str!("../../events/health.json");
const APPLICATIONS_CREATE: &str = include_str!("../../events/applications-create.json");
const APPLICATIONS_LIST: &str = include_str!("../../events/applications-list.json");
const API_KEYS_CREATE: &str = include_str!("../../events/api-keys-create.json");
const EVENT_TYPES_CREATE: &str = include_str!("../../events/event-types-create.json");
const EVENT_TYPES_GET: &str = include_str!("../../events/event-types-get.json");
const ENDPOINTS_CREATE: &str = include_str!("../../events/endpoints-create.json");
const EVENTS_PUBLISH: &str = include_str!("../../events/events-publish.json");
const EVENTS_LIST: &str = include_str!("../../events/events-list.json");
const EVENTS_GET_STAGE: &str = include_str!("../../events/events-get-stage.json");
const DELIVERIES_LIST: &str = include_str!("../../events/deliveries-list.json");
const DISPATCHER_BATCH: &str = include_str!("../../events/dispatcher-batch.json");
const INGEST_BATCH: &str = include_str!("../../events/ingest-batch.json");
const FANOUT_STREAM: &str = include_str!("../../events/fanout-stream.json");

/// Placeholders in the fixtures, replaced with real values where it matters.
const FIXTURE_APP: &str = "app_01JD3X7Q0Z8Y4N2M6K5T9W1R3B";
const FIXTURE_OTHER_APP: &str = "app_01JD3XA0000000000000000000";
const FIXTURE_EVENT: &str = "evt_01JD3X9B7C2D4E6F8G0H1J2K3M";
const FIXTURE_ADMIN: &str = "skyadm_fixture-admin-token-0123456789";
const FIXTURE_KEY: &str = "sk_fixture_0123456789abcdef";

/// Every HTTP fixture and the function that serves it.
const HTTP_FIXTURES: &[(&str, &str, Resource)] = &[
    ("health", HEALTH, Resource::Applications),
    ("applications-create", APPLICATIONS_CREATE, Resource::Applications),
    ("applications-list", APPLICATIONS_LIST, Resource::Applications),
    ("api-keys-create", API_KEYS_CREATE, Resource::ApiKeys),
    ("event-types-create", EVENT_TYPES_CREATE, Resource::EventTypes),
    ("event-types-get", EVENT_TYPES_GET, Resource::EventTypes),
    ("endpoints-create", ENDPOINTS_CREATE, Resource::Endpoints),
    ("events-publish", EVENTS_PUBLISH, Resource::Events),
    ("events-list", EVENTS_LIST, Resource::Events),
    ("events-get-stage", EVENTS_GET_STAGE, Resource::Events),
    ("deliveries-list", DELIVERIES_LIST, Resource::Deliveries),
];

fn http_request(fixture: &str) -> lambda_http::Request {
    lambda_http::request::from_str(fixture).expect("a valid API Gateway HTTP API (v2) event")
}

fn lambda_event<T>(payload: T) -> LambdaEvent<T> {
    LambdaEvent::new(payload, Context::default())
}

fn sqs_event(fixture: &str) -> SqsEvent {
    serde_json::from_str(fixture).expect("a valid SQS event")
}

fn stream_event(fixture: &str) -> StreamEvent {
    serde_json::from_str(fixture).expect("a valid DynamoDB stream event")
}

fn failures(response: &SqsBatchResponse) -> Vec<String> {
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
}

fn body_json(response: &lambda_http::Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

// ---------------------------------------------------------------- the embedded backend

static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

struct SqliteService {
    service: Arc<Skyhook>,
    path: std::path::PathBuf,
}

impl Drop for SqliteService {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

fn sqlite_service() -> SqliteService {
    let path = std::env::temp_dir().join(format!(
        "skyhook-lambda-handlers-{}-{}.sqlite",
        std::process::id(),
        DB_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(SqliteStore::open(&path, Arc::clone(&clock)).unwrap());
    let queue =
        Arc::new(SqliteQueue::open(&path, "deliveries", SqliteQueueConfig::default(), Arc::clone(&clock)).unwrap());
    let service = Arc::new(Skyhook::new(store, queue, clock, StaticSecrets::random().0, ServiceConfig::default()));
    SqliteService { service, path }
}

// ---------------------------------------------------------------- conversions

#[test]
fn given_every_http_fixture_then_method_path_and_query_come_from_the_raw_request() {
    for (name, fixture, _) in HTTP_FIXTURES {
        let raw: Value = serde_json::from_str(fixture).unwrap();
        let request = to_api_request(http_request(fixture));
        let method = raw["requestContext"]["http"]["method"].as_str().unwrap();
        assert_eq!(request.method.as_str(), method, "{name}");
        let stage = raw["requestContext"]["stage"].as_str().unwrap();
        let raw_path = raw["rawPath"].as_str().unwrap();
        let expected =
            if stage == "$default" { raw_path.to_string() } else { raw_path.replacen(&format!("/{stage}"), "", 1) };
        assert_eq!(request.path, expected, "{name}");
        assert!(request.path.starts_with("/v1/"), "{name}: {}", request.path);
        assert_eq!(request.query, raw["rawQueryString"].as_str().unwrap(), "{name}");
        assert_eq!(raw["version"], "2.0", "{name} is a payload v2 event");
    }
}

#[test]
fn given_the_publish_fixture_then_headers_cookies_and_body_are_carried_over() {
    let request = to_api_request(http_request(EVENTS_PUBLISH));
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/v1/events");
    assert_eq!(request.query, "");
    assert_eq!(request.headers["idempotency-key"], "order-1234-paid");
    assert_eq!(request.headers["x-api-key"], FIXTURE_KEY);
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.headers["cookie"], "session=abc123; theme=dark");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({"eventType": "invoice.paid", "payload": {"invoiceId": "inv_1234", "amount": 4200, "currency": "EUR"}})
    );
}

#[test]
fn given_a_base64_body_then_the_api_sees_the_decoded_bytes() {
    let raw: Value = serde_json::from_str(ENDPOINTS_CREATE).unwrap();
    assert_eq!(raw["isBase64Encoded"], true);
    let request = to_api_request(http_request(ENDPOINTS_CREATE));
    let expected = STANDARD.decode(raw["body"].as_str().unwrap()).unwrap();
    assert_eq!(request.body.as_ref(), expected.as_slice());
    let body: Value = serde_json::from_slice(&request.body).expect("decoded JSON");
    assert_eq!(body["url"], "https://hooks.example.com/skyhook");
    assert_eq!(body["description"], "Billing → ERP", "UTF-8 survives the base64 round trip");
}

#[test]
fn given_a_query_string_then_it_is_passed_raw_and_still_encoded() {
    let request = to_api_request(http_request(EVENTS_LIST));
    assert_eq!(request.path, "/v1/events");
    assert_eq!(request.query, "eventType=invoice.paid&limit=2&from=2025-03-01T00%3A00%3A00Z");
    let request = to_api_request(http_request(DELIVERIES_LIST));
    assert_eq!(request.query, "status=failed&limit=10");
}

#[test]
fn given_a_named_stage_then_the_stage_prefix_is_not_part_of_the_api_path() {
    let lambda_request = http_request(EVENTS_GET_STAGE);
    assert!(lambda_request.uri().path().starts_with("/prod/"), "lambda_http keeps the stage in the URI");
    let request = to_api_request(lambda_request);
    assert_eq!(request.path, format!("/v1/events/{FIXTURE_EVENT}"));
}

#[test]
fn given_an_encoded_path_parameter_then_it_reaches_the_router_encoded() {
    let request = to_api_request(http_request(EVENT_TYPES_GET));
    assert_eq!(request.path, "/v1/event-types/invoice%2Epaid", "the router decodes parameters itself");
}

#[test]
fn given_api_responses_then_status_headers_and_body_are_kept() {
    let mut json_response = ApiResponse::json(StatusCode::ACCEPTED, &json!({"id": "evt_1", "note": "é"}));
    json_response.headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    let out = from_api_response(json_response);
    assert_eq!(out.status(), StatusCode::ACCEPTED);
    assert_eq!(out.headers()["content-type"], "application/json");
    assert_eq!(out.headers()["idempotent-replayed"], "true");
    assert!(matches!(out.body(), Body::Text(t) if t == r#"{"id":"evt_1","note":"é"}"#));

    let out = from_api_response(ApiResponse::no_content());
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert!(matches!(out.body(), Body::Empty));

    let binary =
        ApiResponse { status: StatusCode::OK, headers: HeaderMap::new(), body: Bytes::from_static(&[0xff, 0x00]) };
    assert!(matches!(from_api_response(binary).body(), Body::Binary(b) if b == &[0xff, 0x00]));
}

#[test]
fn given_the_dispatcher_fixture_then_records_become_received_messages() {
    let event = sqs_event(DISPATCHER_BATCH);
    let messages = to_received_messages(&event).unwrap();
    assert_eq!(messages.len(), 3);
    for (message, record) in messages.iter().zip(&event.records) {
        assert_eq!(Some(&message.message_id), record.message_id.as_ref());
        assert_eq!(Some(&message.receipt_handle), record.receipt_handle.as_ref());
        assert_eq!(Some(&message.body), record.body.as_ref());
    }
    let counts: Vec<u32> = messages.iter().map(|m| m.receive_count).collect();
    assert_eq!(counts, [1, 3, 2], "from attributes.ApproximateReceiveCount");
    assert_eq!(messages[0].body, format!(r#"{{"a":"{FIXTURE_APP}","d":"dlv_01JD3XB1C2D3E4F5G6H7J8K9M0"}}"#));
}

#[test]
fn given_a_record_without_a_message_id_or_count_then_it_is_handled_safely() {
    let mut raw: Value = serde_json::from_str(DISPATCHER_BATCH).unwrap();
    raw["Records"][0]["attributes"].as_object_mut().unwrap().remove("ApproximateReceiveCount");
    let event: SqsEvent = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(to_received_messages(&event).unwrap()[0].receive_count, 1, "a missing count is a first receive");
    raw["Records"][1].as_object_mut().unwrap().remove("messageId");
    let event: SqsEvent = serde_json::from_value(raw).unwrap();
    let err = to_received_messages(&event).unwrap_err();
    assert!(err.to_string().contains("record 1"), "{err}");
}

#[test]
fn given_the_stream_fixture_then_only_event_inserts_are_fanned_out() {
    let event = stream_event(FANOUT_STREAM);
    let actions: Vec<StreamRecordAction> = event.records.iter().map(classify_stream_record).collect();
    let app = Id::parse(IdKind::Application, FIXTURE_APP).unwrap();
    let evt = Id::parse(IdKind::Event, FIXTURE_EVENT).unwrap();
    assert_eq!(
        actions,
        [
            StreamRecordAction::FanOut { application_id: app, event_id: evt },
            StreamRecordAction::Skip, // a delivery item
            StreamRecordAction::Skip, // MODIFY of the event
            StreamRecordAction::Skip, // TTL REMOVE
            StreamRecordAction::Skip, // an event type
        ]
    );
}

#[test]
fn given_the_ingest_fixture_then_app_ids_are_well_formed() {
    // The "unknown application" record must fail as unknown, not as malformed.
    assert!(Id::parse(IdKind::Application, FIXTURE_OTHER_APP).is_some());
    assert!(Id::parse(IdKind::Application, FIXTURE_APP).is_some());
    assert_eq!(sqs_event(INGEST_BATCH).records.len(), 7);
}

// ---------------------------------------------------------------- handlers on the embedded backend

#[tokio::test]
async fn given_each_http_fixture_then_only_its_function_routes_it() {
    let local = sqlite_service();
    for (name, fixture, resource) in HTTP_FIXTURES {
        let response = handle_http(&local.service, *resource, http_request(fixture)).await.unwrap();
        let expected = if *name == "health" { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
        assert_eq!(response.status(), expected, "{name}: {:?}", body_json(&response));
        assert!(response.headers().contains_key("x-request-id"), "{name}");
        for other in Resource::ALL.iter().filter(|r| *r != resource) {
            let response = handle_http(&local.service, *other, http_request(fixture)).await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name} must not be served by {other:?}");
            assert_eq!(response.headers()["content-type"], "application/problem+json", "{name}");
        }
    }
    let health = handle_http(&local.service, Resource::Applications, http_request(HEALTH)).await.unwrap();
    assert!(matches!(health.body(), Body::Text(_)), "JSON goes back as text");
}

fn sqlite_dispatcher(service: &Arc<Skyhook>) -> Arc<Dispatcher> {
    let sender = HttpSender::system(AddressPolicy::default(), "Skyhook/test");
    Arc::new(Dispatcher::new(Arc::clone(service), Arc::new(sender)))
}

#[tokio::test]
async fn given_the_dispatcher_fixture_then_only_the_poison_message_is_reported_for_retry() {
    let local = sqlite_service();
    let dispatcher = sqlite_dispatcher(&local.service);
    let event = sqs_event(DISPATCHER_BATCH);
    let poison = event.records[2].message_id.clone().unwrap();
    let response = handle_deliveries(&dispatcher, lambda_event(event)).await.unwrap();
    // Unknown deliveries are finished (deleted); the poison body stays, to reach the DLQ.
    assert_eq!(failures(&response), [poison]);
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(wire["batchItemFailures"][0]["itemIdentifier"], json!(failures(&response)[0]));
}

#[tokio::test]
async fn given_a_malformed_sqs_event_then_the_dispatcher_fails_the_whole_batch() {
    let local = sqlite_service();
    let mut raw: Value = serde_json::from_str(DISPATCHER_BATCH).unwrap();
    raw["Records"][0].as_object_mut().unwrap().remove("messageId");
    let event: SqsEvent = serde_json::from_value(raw).unwrap();
    assert!(handle_deliveries(&sqlite_dispatcher(&local.service), lambda_event(event)).await.is_err());
}

#[tokio::test]
async fn given_the_stream_fixture_when_the_event_is_gone_then_nothing_fails() {
    let local = sqlite_service();
    let response = handle_stream(&local.service, lambda_event(stream_event(FANOUT_STREAM))).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "an expired event has nothing left to fan out");
    let mut raw: Value = serde_json::from_str(FANOUT_STREAM).unwrap();
    raw["Records"][0]["dynamodb"].as_object_mut().unwrap().remove("SequenceNumber");
    let event: StreamEvent = serde_json::from_value(raw).unwrap();
    assert!(handle_stream(&local.service, lambda_event(event)).await.is_err(), "cannot be reported alone");
}

/// A stream batch with one INSERT record per `(application id, event id)`,
/// in order, in the fixture's shape; sequence numbers `1001`, `1002`, ….
fn stream_of(events: &[(String, String)]) -> StreamEvent {
    let raw: Value = serde_json::from_str(FANOUT_STREAM).unwrap();
    let template = raw["Records"][0].clone();
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, (app_id, event_id))| {
            let mut record = template.clone();
            record["eventID"] = json!(format!("record-{i}"));
            record["dynamodb"]["Keys"]["pk"]["S"] = json!(format!("EVT#{event_id}"));
            record["dynamodb"]["Keys"]["sk"]["S"] = json!(format!("EVT#{app_id}"));
            record["dynamodb"]["SequenceNumber"] = json!(format!("{}", 1001 + i));
            record
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// A tenant with one endpoint and `n` published events, not fanned out yet.
async fn tenant_with_events(env: &faults::Env, n: usize) -> Vec<(String, String)> {
    let tenant = env.tenant("stream").await;
    env.endpoint(&tenant, json!({ "url": "http://127.0.0.1:9/hooks" })).await;
    let mut events = Vec::new();
    for i in 0..n {
        let (status, published, _) = env.publish(&tenant, json!({ "n": i })).await;
        assert_eq!(status, 202, "{published}");
        events.push((tenant.app_id.clone(), published["id"].as_str().unwrap().to_string()));
    }
    events
}

async fn fanned_out(env: &faults::Env, (app_id, event_id): &(String, String)) -> bool {
    let (app, id) = (Id::from_stored(app_id.as_str()), Id::from_stored(event_id.as_str()));
    env.sqlite_store.get_event(&app, &id).await.unwrap().expect("the event").fanned_out
}

#[tokio::test]
async fn given_a_stream_batch_of_three_events_then_their_messages_go_out_in_one_send() {
    // GIVEN three events at fan-out 1 in one stream batch
    let env = faults::Env::new(faults::local_config());
    let events = tenant_with_events(&env, 3).await;

    // WHEN the fan-out function handles the batch
    let response = handle_stream(&env.service, lambda_event(stream_of(&events))).await.unwrap();

    // THEN nothing is reported, and the three messages went out in one send
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(env.queue.plan.calls("send_batch"), 1);
    assert_eq!(env.receive_all().await.len(), 3);
    for event in &events {
        assert!(fanned_out(&env, event).await);
    }
}

#[tokio::test]
async fn given_the_second_event_of_a_stream_batch_failing_then_the_first_completes_and_the_retry_delivers_the_rest() {
    // GIVEN three events in one stream batch, and the store failing the second one's deliveries
    let env = faults::Env::new(faults::local_config());
    let events = tenant_with_events(&env, 3).await;
    env.store.plan.fail("insert_deliveries", faults::When::Nth(2), StoreError::Unavailable("injected".into()));

    // WHEN the batch is handled
    let response = handle_stream(&env.service, lambda_event(stream_of(&events))).await.unwrap();

    // THEN the second record is reported, so the stream retries from it
    let reported: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(reported, [Some("1002".to_string())]);
    // AND the first event is complete: its message is queued and it is marked
    assert_eq!(env.receive_all().await.len(), 1);
    assert!(fanned_out(&env, &events[0]).await);
    assert!(!fanned_out(&env, &events[1]).await);
    assert!(!fanned_out(&env, &events[2]).await);

    // WHEN the stream retries from the reported record
    let response = handle_stream(&env.service, lambda_event(stream_of(&events[1..]))).await.unwrap();

    // THEN the other two complete, and every event has its one message
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(env.receive_all().await.len(), 2);
    for event in &events {
        assert!(fanned_out(&env, event).await);
    }
}

// ---------------------------------------------------------------- the AWS pipeline on moto

/// A request seen by the local webhook receiver.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A tiny HTTP/1.1 receiver on 127.0.0.1 that answers 204 to every POST.
async fn receiver() -> (String, Arc<Mutex<Vec<Seen>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/skyhook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = stream.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let path = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("").to_string();
                let headers: HashMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                while buf.len() < head_end + length {
                    let Ok(n) = stream.read(&mut chunk).await else { return };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[head_end..].to_vec();
                log.lock().unwrap().push(Seen { path, headers, body });
                let _ = stream
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, seen)
}

/// One deployment on moto: table, both queues, the secret, and the service
/// built exactly as a function's cold start builds it (from "environment").
struct Deployment {
    sdk: aws_config::SdkConfig,
    vars: HashMap<String, String>,
    config: LambdaConfig,
    service: Arc<Skyhook>,
    deliveries: SqsQueue,
    ingest: SqsQueue,
    admin: String,
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, prefix: &str) -> String {
    let created = sqs
        .create_queue()
        .queue_name(moto::unique(prefix))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .unwrap();
    created.queue_url().unwrap().to_string()
}

async fn deploy() -> Deployment {
    deploy_at(&moto::moto().endpoint).await
}

async fn deploy_at(moto_endpoint: &str) -> Deployment {
    let sdk = moto::sdk_config_at(moto_endpoint).await;
    let table = moto::unique("skyhook-table");
    DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await.expect("create table");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let deliveries_url = create_queue(&sqs, "skyhook-deliveries").await;
    let ingest_url = create_queue(&sqs, "skyhook-ingest").await;
    let doc = SecretDocument::generate();
    let admin = doc.admin_token.clone();
    let secret_id = moto::unique("skyhook/secret");
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&secret_id)
        .secret_string(serde_json::to_string(&doc).unwrap())
        .send()
        .await
        .unwrap();
    let vars: HashMap<String, String> = [
        ("TABLE_NAME", table),
        ("DELIVERIES_QUEUE_URL", deliveries_url.clone()),
        ("INGEST_QUEUE_URL", ingest_url.clone()),
        ("SECRET_ID", secret_id),
        // The receiver is plain http on loopback: test mode only.
        ("SKYHOOK_REQUIRE_HTTPS", "false".into()),
        ("SKYHOOK_ALLOW_LOOPBACK", "1".into()),
        ("SKYHOOK_RETRY_SCHEDULE", "1s,2s".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = LambdaConfig::from_lookup(|name| vars.get(name).cloned()).unwrap();
    let service = build_service_with(&config, &sdk).await.expect("cold start");
    Deployment {
        deliveries: SqsQueue::new(sqs.clone(), deliveries_url),
        ingest: SqsQueue::new(sqs, ingest_url),
        sdk,
        vars,
        config,
        service,
        admin,
    }
}

impl Deployment {
    /// The service as another cold start with some variables changed.
    async fn service_with(&self, changes: &[(&str, &str)]) -> Result<Arc<Skyhook>, InitError> {
        let mut vars = self.vars.clone();
        for (k, v) in changes {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = LambdaConfig::from_lookup(|name| vars.get(name).cloned())?;
        build_service_with(&config, &self.sdk).await
    }

    /// Invokes an HTTP function with a fixture whose placeholders are replaced.
    async fn invoke(&self, resource: Resource, fixture: &str, replace: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut text = fixture.replace(FIXTURE_ADMIN, &self.admin);
        for (from, to) in replace {
            text = text.replace(from, to);
        }
        let response = handle_http(&self.service, resource, http_request(&text)).await.unwrap();
        (response.status(), body_json(&response))
    }

    /// An application, an all-scopes key and the `invoice.paid` event type, all
    /// through the fixtures.
    async fn tenant(&self) -> (String, String) {
        let (status, app) = self.invoke(Resource::Applications, APPLICATIONS_CREATE, &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{app}");
        let app_id = app["id"].as_str().unwrap().to_string();
        let (status, key) = self.invoke(Resource::ApiKeys, API_KEYS_CREATE, &[(FIXTURE_APP, &app_id)]).await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let key = key["key"].as_str().unwrap().to_string();
        let (status, body) = self.invoke(Resource::EventTypes, EVENT_TYPES_CREATE, &[(FIXTURE_KEY, &key)]).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (app_id, key)
    }

    /// The endpoints-create fixture (base64 body) pointed at `url`.
    async fn endpoint(&self, key: &str, url: &str) -> Value {
        let mut raw: Value = serde_json::from_str(ENDPOINTS_CREATE).unwrap();
        let mut body: Value = serde_json::from_slice(&STANDARD.decode(raw["body"].as_str().unwrap()).unwrap()).unwrap();
        body["url"] = json!(url);
        raw["body"] = json!(STANDARD.encode(serde_json::to_vec(&body).unwrap()));
        let (status, created) = self.invoke(Resource::Endpoints, &raw.to_string(), &[(FIXTURE_KEY, key)]).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created
    }

    async fn publish(&self, key: &str) -> (StatusCode, Value) {
        self.invoke(Resource::Events, EVENTS_PUBLISH, &[(FIXTURE_KEY, key)]).await
    }

    /// The fan-out stream fixture, its first (event INSERT) record pointed at
    /// the real event.
    fn stream_for(&self, app_id: &str, event_id: &str) -> StreamEvent {
        stream_event(&FANOUT_STREAM.replace(FIXTURE_APP, app_id).replace(FIXTURE_EVENT, event_id))
    }
}

/// Receives until `n` messages came (or 10 s passed).
async fn receive_n(queue: &SqsQueue, n: usize) -> Vec<ReceivedMessage> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(queue.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    got
}

/// What the SQS event source mapping would hand the function for `messages`,
/// in the dispatcher fixture's shape.
fn sqs_event_for(messages: &[ReceivedMessage]) -> SqsEvent {
    let raw: Value = serde_json::from_str(DISPATCHER_BATCH).unwrap();
    let template = raw["Records"][0].clone();
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut record = template.clone();
            record["messageId"] = json!(m.message_id);
            record["receiptHandle"] = json!(m.receipt_handle);
            record["body"] = json!(m.body);
            record["attributes"]["ApproximateReceiveCount"] = json!(m.receive_count.to_string());
            record
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// What Lambda does after the handler: delete what was not reported.
async fn settle(queue: &SqsQueue, messages: &[ReceivedMessage], response: &SqsBatchResponse) {
    let failed = failures(response);
    for message in messages.iter().filter(|m| !failed.contains(&m.message_id)) {
        queue.delete(&message.receipt_handle).await.unwrap();
    }
}

#[tokio::test]
async fn given_a_deployment_on_moto_when_an_event_flows_through_every_function_then_it_is_delivered_signed() {
    let d = deploy().await;
    let (url, seen) = receiver().await;
    let (app_id, key) = d.tenant().await;
    let endpoint = d.endpoint(&key, &url).await;
    let secret = endpoint["secret"].as_str().expect("the signing secret, shown once").to_string();

    // events: publish, and publish again with the same Idempotency-Key.
    let (status, published) = d.publish(&key).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{published}");
    let event_id = published["id"].as_str().unwrap().to_string();
    let (status, again) = d.publish(&key).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["id"], published["id"], "the same event, no second fan-out");

    // fanout: the stream record of the new event → one delivery on the queue.
    let response = handle_stream(&d.service, lambda_event(d.stream_for(&app_id, &event_id))).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    // A redelivered stream batch changes nothing (the event is marked fanned out).
    let response = handle_stream(&d.service, lambda_event(d.stream_for(&app_id, &event_id))).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let messages = receive_n(&d.deliveries, 1).await;
    assert_eq!(messages.len(), 1);
    assert!(d.deliveries.receive(10, Duration::from_secs(1)).await.unwrap().is_empty(), "exactly one delivery");

    // dispatcher: the SQS batch → a signed POST → success → Lambda deletes it.
    let dispatcher = build_dispatcher(&d.service, &d.config).unwrap();
    let response = handle_deliveries(&dispatcher, lambda_event(sqs_event_for(&messages))).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    settle(&d.deliveries, &messages, &response).await;
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/hooks/skyhook");
    assert_eq!(request.headers["webhook-id"], event_id);
    let timestamp: i64 = request.headers["webhook-timestamp"].parse().unwrap();
    skyhook::signing::verify_signature(
        &secret,
        &event_id,
        timestamp,
        &request.body,
        &request.headers["webhook-signature"],
        chrono::Utc::now().timestamp(),
        300,
    )
    .expect("a valid Standard Webhooks signature");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(body["data"], json!({"invoiceId": "inv_1234", "amount": 4200, "currency": "EUR"}));

    // events (named stage fixture) and deliveries read the result back.
    let (status, event) =
        d.invoke(Resource::Events, EVENTS_GET_STAGE, &[(FIXTURE_KEY, &key), (FIXTURE_EVENT, &event_id)]).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["id"], json!(event_id));
    let (status, failed) = d.invoke(Resource::Deliveries, DELIVERIES_LIST, &[(FIXTURE_KEY, &key)]).await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    assert_eq!(failed["data"], json!([]), "nothing failed");
    let (status, all) = d
        .invoke(Resource::Deliveries, DELIVERIES_LIST, &[(FIXTURE_KEY, &key), ("status=failed&limit=10", "limit=10")])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["data"][0]["status"], "succeeded", "{all}");
}

#[tokio::test]
async fn given_a_fan_out_that_fails_then_its_sequence_number_is_reported_and_a_retry_delivers() {
    let d = deploy().await;
    let (app_id, key) = d.tenant().await;
    d.endpoint(&key, "http://127.0.0.1:9/never-called").await;
    let (_, published) = d.publish(&key).await;
    let event_id = published["id"].as_str().unwrap().to_string();
    let stream = d.stream_for(&app_id, &event_id);
    let sequence_number = stream.records[0].change.sequence_number.clone().unwrap();

    // A cold start whose deliveries queue is unreachable: the SQS send fails.
    let missing_queue = format!("{}/123456789012/{}", moto::moto().endpoint, moto::unique("gone"));
    let broken = d.service_with(&[("DELIVERIES_QUEUE_URL", &missing_queue)]).await.unwrap();
    let response = handle_stream(&broken, lambda_event(stream.clone())).await.unwrap();
    let reported: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(reported, [Some(sequence_number)], "the stream retries from this record");
    assert!(d.deliveries.receive(10, Duration::from_secs(1)).await.unwrap().is_empty());

    // The stream's retry (a healthy instance) completes the fan-out.
    let response = handle_stream(&d.service, lambda_event(stream)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let messages = receive_n(&d.deliveries, 1).await;
    assert_eq!(messages.len(), 1, "the acknowledged event was not lost");
}

#[tokio::test]
async fn given_a_delivery_message_handed_over_twice_on_dynamodb_then_the_attempt_is_recorded_once() {
    // GIVEN an event fanned out on moto and its one delivery message
    // (on a moto whose transactions are isolated, as DynamoDB's are)
    let d = deploy_at(&moto::isolated().endpoint).await;
    let (url, seen) = receiver().await;
    let (app_id, key) = d.tenant().await;
    d.endpoint(&key, &url).await;
    let (_, published) = d.publish(&key).await;
    let event_id = published["id"].as_str().unwrap().to_string();
    let response = handle_stream(&d.service, lambda_event(d.stream_for(&app_id, &event_id))).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let messages = receive_n(&d.deliveries, 1).await;
    assert_eq!(messages.len(), 1);
    let task = skyhook::service::DeliveryTask::parse(&messages[0].body).expect("a delivery task");
    let dispatcher = build_dispatcher(&d.service, &d.config).unwrap();

    // WHEN Lambda invokes the dispatcher with the same batch twice at once
    // (an SQS duplicate), and once more afterwards (a replayed invocation)
    let (first, second) = tokio::join!(
        handle_deliveries(&dispatcher, lambda_event(sqs_event_for(&messages))),
        handle_deliveries(&dispatcher, lambda_event(sqs_event_for(&messages))),
    );
    let third = handle_deliveries(&dispatcher, lambda_event(sqs_event_for(&messages))).await.unwrap();

    // THEN no copy is left for retry, and exactly one attempt, a success, is recorded
    for response in [first.unwrap(), second.unwrap(), third] {
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
    }
    let app = Id::parse(IdKind::Application, &app_id).unwrap();
    let attempts = d.service.store().list_attempts(&app, &task.delivery_id).await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let delivery = d.service.store().get_delivery(&app, &task.delivery_id).await.unwrap().unwrap();
    assert_eq!(delivery.attempt_count, 1);
    assert_eq!(delivery.status, skyhook::domain::DeliveryStatus::Succeeded);
    // the endpoint may see the concurrent duplicate (same webhook-id), never the replay
    let requests = seen.lock().unwrap().clone();
    assert!((1..=2).contains(&requests.len()), "{} requests", requests.len());
    assert!(requests.iter().all(|r| r.headers["webhook-id"] == event_id));
}

#[tokio::test]
async fn given_the_ingest_fixture_then_valid_messages_publish_and_invalid_ones_return_at_once_for_the_dlq() {
    let d = deploy().await;
    let (app_id, key) = d.tenant().await;
    // Put the fixture's bodies on the real ingest queue, as producers would.
    let fixture = sqs_event(&INGEST_BATCH.replace(FIXTURE_APP, &app_id));
    let bodies: Vec<String> = fixture.records.iter().map(|r| r.body.clone().unwrap()).collect();
    d.ingest.send_batch(bodies.iter().cloned().map(skyhook::ports::OutgoingMessage::now).collect()).await.unwrap();
    let mut messages = receive_n(&d.ingest, bodies.len()).await;
    assert_eq!(messages.len(), bodies.len());
    messages.sort_by_key(|m| bodies.iter().position(|b| *b == m.body));

    let ingest_queue = build_ingest_queue(&d.config, &d.sdk).unwrap();
    let response = handle_ingest(&d.service, Arc::clone(&ingest_queue), lambda_event(sqs_event_for(&messages))).await;
    let reported = failures(&response);
    let expected: Vec<String> = messages[2..].iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(reported, expected, "bad JSON, unknown field, unknown type, unknown app, no payload");
    settle(&d.ingest, &messages, &response).await;

    // The rejected ones are visible again at once (not after the 30 s
    // timeout), one receive closer to the DLQ.
    let back = receive_n(&d.ingest, 5).await;
    assert_eq!(back.len(), 5);
    assert!(back.iter().all(|m| m.receive_count == 2 && expected.contains(&m.message_id)));

    // The two valid ones are events now.
    let (status, list) =
        d.invoke(Resource::Events, EVENTS_LIST, &[(FIXTURE_KEY, &key), ("from=2025-03-01T00%3A00%3A00Z", "")]).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    assert!(list["data"].as_array().unwrap().iter().any(|e| e["idempotencyKey"] == "invoice-inv_1-paid"));

    // A redelivered message without idempotencyKey publishes nothing new.
    let first = ingest_one(&d.service, &messages[1]).await;
    let IngestOutcome::Accepted { duplicate: true, event_id } = first else { panic!("{first:?}") };
    assert!(list["data"].as_array().unwrap().iter().any(|e| e["id"] == json!(event_id)));
}

#[tokio::test]
async fn given_ingest_rejections_then_the_reason_is_specific() {
    let d = deploy().await;
    let (app_id, _) = d.tenant().await;
    let fixture = sqs_event(&INGEST_BATCH.replace(FIXTURE_APP, &app_id));
    let messages = to_received_messages(&fixture).unwrap();
    let mut reasons = Vec::new();
    for message in &messages[2..] {
        match ingest_one(&d.service, message).await {
            IngestOutcome::Rejected(reason) => reasons.push(reason),
            other => panic!("{other:?}"),
        }
    }
    assert!(reasons[0].contains("not a valid ingest message"), "{}", reasons[0]);
    assert!(reasons[1].contains("priority"), "unknown field named: {}", reasons[1]);
    assert!(reasons[2].contains("eventType") && !reasons[2].contains("do-not-log-me"), "{}", reasons[2]);
    assert!(reasons[3].contains(FIXTURE_OTHER_APP) && reasons[3].contains("does not exist"), "{}", reasons[3]);
    assert!(reasons[4].contains("payload"), "{}", reasons[4]);
}

#[tokio::test]
async fn given_an_unreachable_table_then_ingest_keeps_the_message_for_a_retry() {
    let d = deploy().await;
    let (app_id, _) = d.tenant().await;
    let broken = d.service_with(&[("TABLE_NAME", &moto::unique("no-such-table"))]).await.unwrap();
    let fixture = sqs_event(&INGEST_BATCH.replace(FIXTURE_APP, &app_id));
    let messages = to_received_messages(&fixture).unwrap();
    let outcome = ingest_one(&broken, &messages[0]).await;
    assert!(matches!(outcome, IngestOutcome::Transient { .. }), "{outcome:?}");
    let ingest_queue: Arc<dyn Queue> = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&d.sdk), d.ingest.queue_url()));
    let response = handle_ingest(&broken, ingest_queue, lambda_event(fixture)).await;
    assert_eq!(response.batch_item_failures.len(), 7, "nothing is deleted while storage is down");
}

#[tokio::test]
async fn given_a_missing_or_malformed_secret_then_the_cold_start_fails_with_a_clear_error() {
    let d = deploy().await;
    let missing = moto::unique("skyhook/missing");
    let err = d.service_with(&[("SECRET_ID", &missing)]).await.err().expect("no service without the secret");
    let message = err.to_string();
    assert!(matches!(err, InitError::Secrets { .. }), "{err:?}");
    assert!(message.contains(&missing) && message.contains("SECRET_ID"), "{message}");

    let malformed = moto::unique("skyhook/malformed");
    aws_sdk_secretsmanager::Client::new(&d.sdk)
        .create_secret()
        .name(&malformed)
        .secret_string(r#"{"adminToken":"x"}"#)
        .send()
        .await
        .unwrap();
    let err = d.service_with(&[("SECRET_ID", &malformed)]).await.err().unwrap();
    assert!(err.to_string().contains("malformed"), "{err}");

    let err = d.service_with(&[("TABLE_NAME", "")]).await.err().unwrap();
    assert!(matches!(err, InitError::Config(_)) && err.to_string().contains("TABLE_NAME"), "{err}");
    let mut no_ingest = d.config.clone();
    no_ingest.ingest_queue_url = None;
    let err = build_ingest_queue(&no_ingest, &d.sdk).err().unwrap();
    assert!(err.to_string().contains("INGEST_QUEUE_URL"), "{err}");
}
