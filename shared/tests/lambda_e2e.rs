//! The real function binaries under a Lambda Runtime API emulator, with moto
//! behind them: publish through `events` → the table's stream → `fanout` →
//! the deliveries queue → `dispatcher` → a signed POST to a local receiver;
//! and the failure path (visibility change + batchItemFailures).
//!
//! Needs the binaries built (`cargo build --workspace --all-features`, which
//! the test command does first).

mod lambda_emulator;
mod moto;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use lambda_emulator::{Function, Outcome};
use serde_json::{Value, json};
use sha2::Sha256;
use skyhook::adapters::aws::dynamodb::DynamoStore;
use skyhook::adapters::local_secrets::SecretDocument;

/// The Standard Webhooks specification\'s published example secret (a public test vector).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const API_EVENT: &str = include_str!("../../events/events-publish.json");

/// An API Gateway HTTP API v2 request, from the fixture, for any route.
fn http_event(method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let mut event: Value = serde_json::from_str(API_EVENT).unwrap();
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    event["routeKey"] = json!(format!("{method} {raw_path}"));
    event["rawPath"] = json!(raw_path);
    event["rawQueryString"] = json!(query);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(raw_path);
    event["requestContext"]["routeKey"] = json!(format!("{method} {raw_path}"));
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("x-api-key");
    headers.remove("idempotency-key");
    headers.insert("authorization".into(), json!(format!("Bearer {token}")));
    match body {
        Some(body) => {
            event["body"] = json!(body.to_string());
        }
        None => {
            event.as_object_mut().unwrap().remove("body");
        }
    }
    event
}

fn http_response(outcome: Outcome) -> (u16, Value) {
    let Outcome::Response(response) = outcome else { panic!("function error: {outcome:?}") };
    let status = response["statusCode"].as_u64().unwrap() as u16;
    let body = response["body"].as_str().unwrap_or("");
    let body = if response["isBase64Encoded"].as_bool().unwrap_or(false) {
        String::from_utf8(STANDARD.decode(body).unwrap()).unwrap()
    } else {
        body.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

struct Stack {
    table: String,
    deliveries_url: String,
    secret_id: String,
    admin_token: String,
    sdk: aws_config::SdkConfig,
}

impl Stack {
    async fn create() -> Stack {
        let sdk = moto::sdk_config().await;
        let table = moto::unique("skyhook-e2e");
        DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await.unwrap();
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let deliveries_url =
            sqs.create_queue().queue_name(moto::unique("deliveries")).send().await.unwrap().queue_url.unwrap();
        let document = SecretDocument::generate();
        let admin_token = document.admin_token.clone();
        let secret_id = aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(moto::unique("skyhook-secret"))
            .secret_string(serde_json::to_string(&document).unwrap())
            .send()
            .await
            .unwrap()
            .arn
            .unwrap();
        Stack { table, deliveries_url, secret_id, admin_token, sdk }
    }

    fn env(&self, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("AWS_ENDPOINT_URL", moto::moto().endpoint.clone()),
            ("TABLE_NAME", self.table.clone()),
            ("DELIVERIES_QUEUE_URL", self.deliveries_url.clone()),
            ("SECRET_ID", self.secret_id.clone()),
            ("SKYHOOK_REQUIRE_HTTPS", "0".into()),
            ("SKYHOOK_ALLOW_LOOPBACK", "1".into()),
        ];
        for (k, v) in extra {
            env.push((Box::leak(k.to_string().into_boxed_str()), v.to_string()));
        }
        env
    }

    /// The table's stream records since the start, as a Lambda DynamoDB event.
    async fn stream_event(&self) -> Value {
        let ddb = aws_sdk_dynamodb::Client::new(&self.sdk);
        let arn = ddb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .unwrap()
            .table
            .unwrap()
            .latest_stream_arn
            .unwrap();
        let streams = aws_sdk_dynamodbstreams::Client::new(&self.sdk);
        let description = streams.describe_stream().stream_arn(&arn).send().await.unwrap().stream_description.unwrap();
        let mut records = Vec::new();
        for shard in description.shards.unwrap_or_default() {
            let iterator = streams
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(shard.shard_id.unwrap())
                .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator
                .unwrap();
            let out = streams.get_records().shard_iterator(iterator).send().await.unwrap();
            for record in out.records.unwrap_or_default() {
                let data = record.dynamodb.unwrap();
                let keys: serde_json::Map<String, Value> = data
                    .keys
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, json!({"S": v.as_s().unwrap().clone()})))
                    .collect();
                records.push(json!({
                    "eventID": record.event_id,
                    "eventName": record.event_name.map(|n| n.as_str().to_string()),
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "dynamodb": {
                        "Keys": keys,
                        "SequenceNumber": data.sequence_number,
                        "SizeBytes": data.size_bytes.unwrap_or(0),
                        "StreamViewType": "KEYS_ONLY",
                    },
                    "eventSourceARN": arn,
                }));
            }
        }
        json!({ "Records": records })
    }

    /// Messages on the deliveries queue, as a Lambda SQS event.
    async fn sqs_event(&self, wait: i32) -> Value {
        let out = aws_sdk_sqs::Client::new(&self.sdk)
            .receive_message()
            .queue_url(&self.deliveries_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let records: Vec<Value> = out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                    .collect();
                json!({
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "body": m.body,
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:deliveries",
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        json!({ "Records": records })
    }
}

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(http::HeaderMap, Bytes, u16)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> (Receiver, String) {
        let receiver =
            Receiver { seen: Arc::default(), script: Arc::new(Mutex::new(script.iter().copied().collect())) };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let shared = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let status = shared.script.lock().unwrap().pop_front().unwrap_or(200);
                            shared.seen.lock().unwrap().push((parts.headers, body, status));
                            let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (receiver, url)
    }
}

fn signature(id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD.decode(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_function_binaries_when_an_event_is_published_then_it_is_fanned_out_and_delivered_signed_with_retries()
 {
    // GIVEN a moto stack, a receiver failing once, and the function binaries under the emulator
    let stack = Stack::create().await;
    let (receiver, url) = Receiver::start(&[500]).await;
    let env = stack.env(&[("SKYHOOK_RETRY_SCHEDULE", "2s"), ("SKYHOOK_RETRY_JITTER", "0")]);
    let applications = Function::start("applications", &env).await;
    let api_keys = Function::start("api-keys", &env).await;
    let event_types = Function::start("event-types", &env).await;
    let endpoints = Function::start("endpoints", &env).await;
    let events = Function::start("events", &env).await;
    let fanout = Function::start("fanout", &env).await;
    let dispatcher = Function::start("dispatcher", &env).await;
    for function in [&applications, &api_keys, &event_types, &endpoints, &events, &fanout, &dispatcher] {
        let init = function.init_duration().await;
        eprintln!("init {:?} for {}", init, function.emulator.address);
        assert!(function.emulator.init_error().is_none());
    }

    // WHEN an application, key, event type and endpoint are created through their functions
    let admin = stack.admin_token.clone();
    let (status, app) = http_response(
        applications.invoke(&http_event("POST", "/v1/applications", &admin, Some(json!({"name": "e2e"})))).await,
    );
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().unwrap();
    let (status, key) = http_response(
        api_keys
            .invoke(&http_event(
                "POST",
                &format!("/v1/applications/{app_id}/api-keys"),
                &admin,
                Some(json!({"name": "k"})),
            ))
            .await,
    );
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_string();
    let (status, _) = http_response(
        event_types.invoke(&http_event("POST", "/v1/event-types", &key, Some(json!({"name": "order.created"})))).await,
    );
    assert_eq!(status, 201);
    let (status, endpoint) = http_response(
        endpoints
            .invoke(&http_event(
                "POST",
                "/v1/endpoints",
                &key,
                Some(json!({"url": url, "secret": SECRET, "timeoutSecs": 5})),
            ))
            .await,
    );
    assert_eq!(status, 201, "{endpoint}");

    // AND an event is published through the events function
    let (status, event) = http_response(
        events
            .invoke(&http_event(
                "POST",
                "/v1/events",
                &key,
                Some(json!({"eventType": "order.created", "payload": {"orderId": 42}})),
            ))
            .await,
    );
    assert_eq!(status, 202, "{event}");
    let event_id = event["id"].as_str().unwrap().to_string();

    // THEN the table's stream carries the event, and the fanout function puts one message on the queue
    let stream = stack.stream_event().await;
    let inserts = stream["Records"].as_array().unwrap().iter().filter(|r| r["eventName"] == "INSERT").count();
    assert!(inserts >= 1, "stream has the new items");
    let Outcome::Response(fanout_response) = fanout.invoke(&stream).await else { panic!("fanout failed") };
    assert_eq!(fanout_response["batchItemFailures"], json!([]), "{fanout_response}");
    let batch = stack.sqs_event(2).await;
    assert_eq!(batch["Records"].as_array().unwrap().len(), 1, "one delivery message: {batch}");

    // WHEN the dispatcher gets the batch and the receiver answers 500
    let Outcome::Response(first) = dispatcher.invoke(&batch).await else { panic!("dispatcher failed") };
    // THEN the message is reported failed and hidden until the next attempt
    let message_id = batch["Records"][0]["messageId"].clone();
    assert_eq!(first["batchItemFailures"], json!([{"itemIdentifier": message_id}]), "{first}");
    let hidden_at = Instant::now();
    let immediately = stack.sqs_event(0).await;
    assert_eq!(immediately["Records"].as_array().unwrap().len(), 0, "message is invisible after the failure");

    // WHEN it comes back (visibility 2 s) and the receiver answers 200
    let retry = stack.sqs_event(10).await;
    assert_eq!(retry["Records"].as_array().unwrap().len(), 1, "message came back: {retry}");
    assert!(hidden_at.elapsed() >= Duration::from_millis(1500), "came back after the scheduled delay");
    assert_eq!(retry["Records"][0]["attributes"]["ApproximateReceiveCount"], "2");
    let Outcome::Response(second) = dispatcher.invoke(&retry).await else { panic!("dispatcher failed") };
    assert_eq!(second["batchItemFailures"], json!([]), "{second}");

    // THEN the receiver saw two signed POSTs with the same webhook-id
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|(_, _, s)| *s).collect::<Vec<_>>(), vec![500, 200]);
    for (headers, body, _) in &seen {
        let header = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
        assert_eq!(header("webhook-id"), event_id);
        assert_eq!(header("webhook-signature"), signature(&event_id, &header("webhook-timestamp"), body));
    }

    // AND the deliveries function shows the history: succeeded after 2 attempts
    let deliveries = Function::start("deliveries", &env).await;
    let (status, list) = http_response(
        deliveries.invoke(&http_event("GET", &format!("/v1/deliveries?eventId={event_id}"), &key, None)).await,
    );
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"][0]["status"], "succeeded");
    assert_eq!(list["data"][0]["attemptCount"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_unreadable_secret_when_a_function_starts_then_it_exits_with_a_clear_error_instead_of_serving() {
    // GIVEN a stack whose SECRET_ID does not exist
    let stack = Stack::create().await;
    let mut env = stack.env(&[]);
    env.retain(|(k, _)| *k != "SECRET_ID");
    env.push(("SECRET_ID", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing".into()));
    // WHEN the function starts
    let function = Function::start_capturing("events", &env).await;
    let emulator = function.emulator.clone();
    // THEN it exits non-zero during init (Lambda reports Runtime.ExitError),
    // naming the variable to fix, and never polls for work
    let (status, stderr) = function.wait_output(Duration::from_secs(30));
    assert!(!status.success());
    assert!(stderr.contains("SECRET_ID"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(emulator.first_poll().is_none());
}
