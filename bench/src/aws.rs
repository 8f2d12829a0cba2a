//! `skyhook-bench aws-calls`: the function binaries against moto, each
//! behind its own counting proxy, so every AWS API call is attributed to its
//! caller. The harness plays the Lambda service: API Gateway (HTTP events),
//! the DynamoDB stream's event source (free reads, straight to moto), and the
//! SQS event source mappings (their ReceiveMessage / DeleteMessageBatch go
//! through a proxy too, because AWS bills them to the account).
//!
//! DynamoDB capacity is computed at the proxy from the items themselves
//! (moto does not meter): item sizes by DynamoDB's rules, an update billed on
//! the larger of the old and new item (the proxy reads both images around
//! the write, uncounted), transactions doubled, one unit per index entry
//! written (two when an index key changes), reads rounded to 4 KB per item
//! (GetItem, BatchGetItem) or per request (Query, Scan), halved when
//! eventually consistent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::emulator::{Function, Outcome};
use crate::net::BoxError;

// ---------------------------------------------------------------------------
// Prices (us-east-1, on-demand, list prices; see docs/PERFORMANCE.md)

pub const PRICE_DATE: &str = "2025 list prices (us-east-1), checked against the public pricing pages as known in 2025";
const APIGW_HTTP_PER_REQUEST: f64 = 1.00 / 1e6;
const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
const LAMBDA_ARM_PER_GB_S: f64 = 0.000_013_333_4;
const DDB_PER_WRU: f64 = 0.625 / 1e6;
const DDB_PER_RRU: f64 = 0.125 / 1e6;
const SQS_PER_REQUEST: f64 = 0.40 / 1e6;
const SECRETS_PER_CALL: f64 = 0.05 / 10_000.0;

/// MemorySize per function in template.yaml (Globals: 128; dispatcher 256).
fn memory_mb(function: &str) -> f64 {
    if function == "dispatcher" { 256.0 } else { 128.0 }
}

// ---------------------------------------------------------------------------
// moto and the stack

pub struct Moto {
    pub endpoint: String,
    child: Option<Child>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn moto_healthy(endpoint: &str) -> bool {
    let address = endpoint.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return false };
    use std::io::{Read, Write};
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET /moto-api/ HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9..12] == *b"200"
}

/// `SKYHOOK_TEST_MOTO_URL` if set, else a moto_server of our own (the
/// workspace's .venv, else PATH) on a free 127.0.0.1 port.
pub fn moto() -> Result<Moto, BoxError> {
    if let Ok(url) = std::env::var("SKYHOOK_TEST_MOTO_URL") {
        if !moto_healthy(&url) {
            return Err(format!("SKYHOOK_TEST_MOTO_URL={url} does not answer").into());
        }
        return Ok(Moto { endpoint: url, child: None });
    }
    let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/moto_server"));
    let binary = if venv.exists() { venv.display().to_string() } else { "moto_server".into() };
    let port = crate::net::free_port();
    let child = Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {binary} (run scripts/test.sh once to create .venv): {e}"))?;
    let moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), child: Some(child) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !moto_healthy(&moto.endpoint) {
        if Instant::now() > deadline {
            return Err("moto_server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(moto)
}

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "bench"))
        .load()
        .await
}

pub struct Stack {
    pub table: String,
    pub deliveries_url: String,
    pub ingest_url: String,
    pub secret_id: String,
    pub admin_token: String,
    pub sdk: aws_config::SdkConfig,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

impl Stack {
    pub async fn create(moto: &Moto) -> Result<Stack, BoxError> {
        let sdk = sdk_config(&moto.endpoint).await;
        let table = unique("skyhook-bench");
        skyhook::adapters::aws::dynamodb::DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
            .await
            .map_err(|e| e.to_string())?;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let deliveries_url =
            sqs.create_queue().queue_name(unique("deliveries")).send().await?.queue_url.ok_or("no url")?;
        let ingest_url = sqs.create_queue().queue_name(unique("ingest")).send().await?.queue_url.ok_or("no url")?;
        let document = skyhook::adapters::local_secrets::SecretDocument::generate();
        let admin_token = document.admin_token.clone();
        let secret_id = aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(unique("skyhook-secret"))
            .secret_string(serde_json::to_string(&document)?)
            .send()
            .await?
            .arn
            .ok_or("no arn")?;
        Ok(Stack { table, deliveries_url, ingest_url, secret_id, admin_token, sdk })
    }

    pub fn env(&self, endpoint: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", endpoint),
            ("TABLE_NAME", &self.table),
            ("DELIVERIES_QUEUE_URL", &self.deliveries_url),
            ("INGEST_QUEUE_URL", &self.ingest_url),
            ("SECRET_ID", &self.secret_id),
            ("SKYHOOK_REQUIRE_HTTPS", "0"),
            ("SKYHOOK_ALLOW_LOOPBACK", "1"),
            ("SKYHOOK_RETRY_SCHEDULE", "1s"),
            ("SKYHOOK_RETRY_JITTER", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

// ---------------------------------------------------------------------------
// Lambda events

const API_EVENT: &str = include_str!("../../events/events-publish.json");

pub fn http_event(method: &str, path: &str, token: &str, body: Option<&Value>) -> Value {
    let mut event: Value = serde_json::from_str(API_EVENT).expect("fixture");
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    event["routeKey"] = json!(format!("{method} {raw_path}"));
    event["rawPath"] = json!(raw_path);
    event["rawQueryString"] = json!(query);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(raw_path);
    event["requestContext"]["routeKey"] = json!(format!("{method} {raw_path}"));
    let headers = event["headers"].as_object_mut().expect("headers");
    headers.remove("x-api-key");
    headers.remove("idempotency-key");
    headers.insert("authorization".into(), json!(format!("Bearer {token}")));
    match body {
        Some(body) => event["body"] = json!(body.to_string()),
        None => {
            event.as_object_mut().expect("object").remove("body");
        }
    }
    event
}

pub fn http_response(outcome: Outcome) -> Result<(u16, Value), BoxError> {
    let Outcome::Response(response) = outcome else { return Err(format!("function error: {outcome:?}").into()) };
    let status = response["statusCode"].as_u64().unwrap_or(0) as u16;
    let body = response["body"].as_str().unwrap_or("");
    let body = if response["isBase64Encoded"].as_bool().unwrap_or(false) {
        String::from_utf8(STANDARD.decode(body)?)?
    } else {
        body.to_string()
    };
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// New INSERT records of event items on the table's stream (what the
/// fanout function's filter lets through), read straight from moto.
pub async fn new_event_records(stack: &Stack, seen: &mut HashSet<String>) -> Result<Value, BoxError> {
    let ddb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let arn = ddb
        .describe_table()
        .table_name(&stack.table)
        .send()
        .await?
        .table
        .and_then(|t| t.latest_stream_arn)
        .ok_or("no stream")?;
    let streams = aws_sdk_dynamodbstreams::Client::new(&stack.sdk);
    let description =
        streams.describe_stream().stream_arn(&arn).send().await?.stream_description.ok_or("no stream description")?;
    let mut records = Vec::new();
    for shard in description.shards.unwrap_or_default() {
        let iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id.unwrap_or_default())
            .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
            .send()
            .await?
            .shard_iterator
            .ok_or("no iterator")?;
        let mut iterator = Some(iterator);
        while let Some(it) = iterator.take() {
            let out = streams.get_records().shard_iterator(it).limit(1000).send().await?;
            let batch = out.records.unwrap_or_default();
            let empty = batch.is_empty();
            for record in batch {
                let Some(data) = record.dynamodb else { continue };
                let sequence = data.sequence_number.clone().unwrap_or_default();
                let keys: serde_json::Map<String, Value> = data
                    .keys
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| v.as_s().ok().map(|s| (k, json!({"S": s}))))
                    .collect();
                let is_event = keys.get("pk").and_then(|v| v["S"].as_str()).is_some_and(|pk| pk.starts_with("EVT#"));
                let insert = record.event_name.as_ref().map(|n| n.as_str() == "INSERT").unwrap_or(false);
                if !is_event || !insert || !seen.insert(sequence.clone()) {
                    continue;
                }
                records.push(json!({
                    "eventID": record.event_id,
                    "eventName": "INSERT",
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "dynamodb": {"Keys": keys, "SequenceNumber": sequence, "SizeBytes": data.size_bytes.unwrap_or(0), "StreamViewType": "KEYS_ONLY"},
                    "eventSourceARN": arn,
                }));
            }
            if !empty {
                iterator = out.next_shard_iterator;
            }
        }
    }
    Ok(json!({"Records": records}))
}

/// A ReceiveMessage as the SQS event source mapping makes it, as a Lambda SQS event.
pub async fn receive_batch(sqs: &aws_sdk_sqs::Client, url: &str, wait: i32) -> Result<Value, BoxError> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await?;
    let records: Vec<Value> = out
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> =
                m.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect();
            json!({
                "messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body,
                "attributes": attributes, "messageAttributes": {}, "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:queue", "awsRegion": "us-east-1",
            })
        })
        .collect();
    Ok(json!({"Records": records}))
}

/// What the event source mapping does after the function answered: deletes
/// every message not reported in `batchItemFailures` (one DeleteMessageBatch).
async fn delete_succeeded(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    batch: &Value,
    response: &Value,
) -> Result<usize, BoxError> {
    let failed: HashSet<&str> = response["batchItemFailures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    let mut request = sqs.delete_message_batch().queue_url(url);
    let mut n = 0;
    for (i, record) in batch["Records"].as_array().into_iter().flatten().enumerate() {
        if failed.contains(record["messageId"].as_str().unwrap_or("")) {
            continue;
        }
        request = request.entries(
            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .receipt_handle(record["receiptHandle"].as_str().unwrap_or(""))
                .build()?,
        );
        n += 1;
    }
    if n > 0 {
        request.send().await?;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------
// The counting proxy

/// One AWS call as counted.
#[derive(Debug, Clone, Default)]
struct Call {
    caller: String,
    service: &'static str,
    operation: String,
    wru: f64,
    rru: f64,
    sqs_units: f64,
}

#[derive(Default)]
struct Ledger {
    calls: Vec<Call>,
    gsis: Vec<Gsi>,
}

#[derive(Debug, Clone)]
struct Gsi {
    hash: String,
    range: Option<String>,
    /// `None` = ALL; `Some(attrs)` = INCLUDE those (KEYS_ONLY = empty).
    projected: Option<Vec<String>>,
}

#[derive(Clone)]
struct Proxy {
    upstream: SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
}

/// Starts a proxy for `caller`; returns its endpoint URL.
async fn start_proxy(upstream: SocketAddr, ledger: Arc<Mutex<Ledger>>, caller: &str) -> Result<String, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let proxy = Proxy { upstream, ledger };
    let caller = caller.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (proxy, caller) = (proxy.clone(), caller.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (proxy, caller) = (proxy.clone(), caller.clone());
                    async move { Ok::<_, Infallible>(proxy.handle(&caller, request).await) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(format!("http://{address}"))
}

async fn forward(
    upstream: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &http::HeaderMap,
    body: Bytes,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), BoxError> {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        if name == http::header::HOST {
            continue;
        }
        request = request.header(name, value);
    }
    request = request.header(http::header::HOST, upstream.to_string());
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let (parts, body) = response.into_parts();
    Ok((parts.status, parts.headers, body.collect().await?.to_bytes()))
}

/// An uncounted DynamoDB GetItem (the images around a write).
async fn image(upstream: SocketAddr, table: &str, key: &Value) -> Option<Value> {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-amz-target", "DynamoDB_20120810.GetItem".parse().ok()?);
    headers.insert("content-type", "application/x-amz-json-1.0".parse().ok()?);
    headers.insert(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"
            .parse()
            .ok()?,
    );
    let body = json!({"TableName": table, "Key": key, "ConsistentRead": true}).to_string();
    let (_, _, answer) = forward(upstream, http::Method::POST, "/", &headers, Bytes::from(body)).await.ok()?;
    let answer: Value = serde_json::from_slice(&answer).ok()?;
    answer.get("Item").cloned()
}

/// DynamoDB's item size: attribute names plus values.
fn item_size(item: &Value) -> usize {
    item.as_object().map(|m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum()).unwrap_or(0)
}

fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|m| m.iter().next()) else { return 0 };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner
            .as_str()
            .map_or(1, |n| n.trim_start_matches('-').replace('.', "").trim_start_matches('0').len().div_ceil(2) + 1),
        "B" => inner.as_str().map_or(0, |b| STANDARD.decode(b).map(|d| d.len()).unwrap_or(b.len())),
        "BOOL" | "NULL" => 1,
        "SS" => inner.as_array().map_or(0, |a| a.iter().filter_map(Value::as_str).map(str::len).sum()),
        "NS" => {
            inner.as_array().map_or(0, |a| a.iter().filter_map(Value::as_str).map(|n| n.len().div_ceil(2) + 1).sum())
        }
        "L" => 3 + inner.as_array().map_or(0, |a| a.iter().map(|e| 1 + value_size(e)).sum()),
        "M" => 3 + inner.as_object().map_or(0, |m| m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum()),
        _ => 0,
    }
}

fn units(size: usize, unit: usize) -> f64 {
    size.div_ceil(unit).max(1) as f64
}

/// Index entries written when an item goes from `old` to `new`.
fn index_writes(gsis: &[Gsi], old: Option<&Value>, new: Option<&Value>) -> f64 {
    let mut total = 0.0;
    let key_of = |item: Option<&Value>, g: &Gsi| -> Option<(Value, Value)> {
        let item = item?;
        let hash = item.get(&g.hash)?.clone();
        let range = match &g.range {
            Some(r) => item.get(r)?.clone(),
            None => Value::Null,
        };
        Some((hash, range))
    };
    for g in gsis {
        let (old_key, new_key) = (key_of(old, g), key_of(new, g));
        total += match (&old_key, &new_key) {
            (None, None) => 0.0,
            (Some(_), None) | (None, Some(_)) => 1.0,
            (Some(a), Some(b)) if a != b => 2.0,
            _ => {
                let (old, new) = (old.unwrap(), new.unwrap());
                let changed = match &g.projected {
                    None => old != new,
                    Some(attrs) => attrs.iter().any(|a| old.get(a) != new.get(a)),
                };
                if changed { 1.0 } else { 0.0 }
            }
        };
    }
    total
}

impl Proxy {
    async fn handle(&self, caller: &str, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let (service, operation) = match target.split_once('.') {
            Some((prefix, op)) if prefix.starts_with("DynamoDB") => ("DynamoDB", op.to_string()),
            Some((prefix, op)) if prefix.starts_with("AmazonSQS") => ("SQS", op.to_string()),
            Some((prefix, op)) if prefix.starts_with("secretsmanager") => ("Secrets Manager", op.to_string()),
            _ => ("other", format!("{} {}", parts.method, parts.uri.path())),
        };
        let request_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        // Images before a write.
        let writes = if service == "DynamoDB" { write_targets(&operation, &request_json) } else { Vec::new() };
        let mut before = Vec::new();
        for (table, key, _, _) in &writes {
            before.push(match key {
                Some(key) => image(self.upstream, table, key).await,
                None => None,
            });
        }
        let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
        let answer = forward(self.upstream, parts.method.clone(), &path, &parts.headers, body.clone()).await;
        let (status, headers, answer) = match answer {
            Ok(a) => a,
            Err(err) => {
                let mut response = Response::new(Full::new(Bytes::from(err.to_string())));
                *response.status_mut() = http::StatusCode::BAD_GATEWAY;
                return response;
            }
        };
        let answer_json: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        let mut call = Call { caller: caller.to_string(), service, operation: operation.clone(), ..Call::default() };
        match service {
            "DynamoDB" => {
                let gsis = self.ledger.lock().unwrap().gsis.clone();
                let transactional = operation == "TransactWriteItems";
                for ((table, key, put, is_check), old) in writes.iter().zip(before) {
                    let new = match (put, key) {
                        (Some(item), _) => Some(item.clone()),
                        (None, Some(key)) if !is_check => image(self.upstream, table, key).await,
                        _ => old.clone(),
                    };
                    let size = item_size(old.as_ref().unwrap_or(&Value::Null))
                        .max(item_size(new.as_ref().unwrap_or(&Value::Null)));
                    let base = units(size, 1024) * if transactional { 2.0 } else { 1.0 };
                    let index = if status.is_success() && !is_check {
                        index_writes(&gsis, old.as_ref(), new.as_ref())
                    } else {
                        0.0
                    };
                    call.wru += base + index;
                }
                call.rru = read_units(&operation, &request_json, &answer_json);
                if !status.is_success() {
                    call.operation = format!(
                        "{operation} (failed: {})",
                        answer_json["__type"].as_str().unwrap_or("error").rsplit('#').next().unwrap_or("")
                    );
                }
            }
            "SQS" => {
                call.sqs_units = units(body.len(), 64 * 1024);
                if operation == "ReceiveMessage" && answer_json["Messages"].as_array().is_none_or(|m| m.is_empty()) {
                    call.operation = "ReceiveMessage (empty)".into();
                }
            }
            _ => {}
        }
        self.ledger.lock().unwrap().calls.push(call);
        let mut response = Response::new(Full::new(answer));
        *response.status_mut() = status;
        for (name, value) in &headers {
            if name != http::header::TRANSFER_ENCODING && name != http::header::CONTENT_LENGTH {
                response.headers_mut().append(name, value.clone());
            }
        }
        response
    }
}

/// (table, key, item put, is a condition check) of each item a write touches.
fn write_targets(operation: &str, request: &Value) -> Vec<(String, Option<Value>, Option<Value>, bool)> {
    let table = request["TableName"].as_str().unwrap_or("").to_string();
    let key_of = |item: &Value| -> Value { json!({"pk": item["pk"].clone(), "sk": item["sk"].clone()}) };
    match operation {
        "PutItem" => vec![(table, Some(key_of(&request["Item"])), Some(request["Item"].clone()), false)],
        "UpdateItem" | "DeleteItem" => vec![(table, Some(request["Key"].clone()), None, false)],
        "TransactWriteItems" => request["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                if let Some(p) = t.get("Put") {
                    Some((
                        p["TableName"].as_str()?.to_string(),
                        Some(key_of(&p["Item"])),
                        Some(p["Item"].clone()),
                        false,
                    ))
                } else if let Some(u) = t.get("Update").or_else(|| t.get("Delete")) {
                    Some((u["TableName"].as_str()?.to_string(), Some(u["Key"].clone()), None, false))
                } else {
                    t.get("ConditionCheck")
                        .and_then(|c| Some((c["TableName"].as_str()?.to_string(), Some(c["Key"].clone()), None, true)))
                }
            })
            .collect(),
        "BatchWriteItem" => request["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(table, writes)| {
                writes.as_array().into_iter().flatten().filter_map(move |w| {
                    if let Some(p) = w.get("PutRequest") {
                        Some((table.clone(), Some(key_of(&p["Item"])), Some(p["Item"].clone()), false))
                    } else {
                        w.get("DeleteRequest").map(|d| (table.clone(), Some(d["Key"].clone()), None, false))
                    }
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn read_units(operation: &str, request: &Value, answer: &Value) -> f64 {
    let factor = |consistent: bool| if consistent { 1.0 } else { 0.5 };
    match operation {
        "GetItem" => {
            units(item_size(&answer["Item"]), 4096) * factor(request["ConsistentRead"].as_bool().unwrap_or(false))
        }
        "BatchGetItem" => {
            let mut total = 0.0;
            for (table, asked) in request["RequestItems"].as_object().into_iter().flatten() {
                let consistent = asked["ConsistentRead"].as_bool().unwrap_or(false);
                let returned = answer["Responses"][table].as_array().cloned().unwrap_or_default();
                let missing = asked["Keys"].as_array().map_or(0, Vec::len).saturating_sub(returned.len());
                total += returned.iter().map(|i| units(item_size(i), 4096)).sum::<f64>() * factor(consistent);
                total += missing as f64 * factor(consistent);
            }
            total
        }
        "Query" | "Scan" => {
            let items = answer["Items"].as_array().cloned().unwrap_or_default();
            let returned: usize = items.iter().map(item_size).sum();
            let (count, scanned) =
                (answer["Count"].as_f64().unwrap_or(0.0), answer["ScannedCount"].as_f64().unwrap_or(0.0));
            // Filters drop items after they were read: scale by what was scanned.
            let read = if count > 0.0 { (returned as f64 * scanned / count) as usize } else { scanned as usize * 200 };
            let consistent = request["ConsistentRead"].as_bool().unwrap_or(false) && request.get("IndexName").is_none();
            units(read, 4096) * factor(consistent)
        }
        _ => 0.0,
    }
}

// ---------------------------------------------------------------------------
// Receiver with a script: the first attempt of each delivery fails, or not

#[derive(Clone, Default)]
struct Hooks {
    fail_first: Arc<Mutex<bool>>,
    attempts: Arc<Mutex<HashMap<(String, String), u32>>>,
    succeeded: Arc<Mutex<HashSet<(String, String)>>>,
}

async fn start_hooks() -> Result<(Hooks, SocketAddr), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let hooks = Hooks::default();
    let shared = hooks.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let id =
                            request.headers().get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        let key = (id, request.uri().path().to_string());
                        let _ = request.into_body().collect().await;
                        let n = {
                            let mut attempts = shared.attempts.lock().unwrap();
                            let n = attempts.entry(key.clone()).or_insert(0);
                            *n += 1;
                            *n
                        };
                        let fail = *shared.fail_first.lock().unwrap() && n == 1;
                        if !fail {
                            shared.succeeded.lock().unwrap().insert(key);
                        }
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() =
                            if fail { http::StatusCode::INTERNAL_SERVER_ERROR } else { http::StatusCode::NO_CONTENT };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok((hooks, address))
}

// ---------------------------------------------------------------------------
// Scenarios

const FUNCTIONS: [&str; 9] =
    ["applications", "api-keys", "event-types", "endpoints", "events", "deliveries", "dispatcher", "ingest", "fanout"];

struct Scenario {
    name: &'static str,
    via_ingest: bool,
    events: usize,
    fanout: usize,
    fail_first: bool,
    target: Option<f64>,
}

struct Harness {
    stack: Stack,
    functions: HashMap<&'static str, Function>,
    ledger: Arc<Mutex<Ledger>>,
    /// The event source mappings' and the producer's SQS clients, through their proxies.
    esm: aws_sdk_sqs::Client,
    producer: aws_sdk_sqs::Client,
    hooks: Hooks,
    hooks_address: SocketAddr,
    stream_seen: HashSet<String>,
    /// Invocation durations per function in the current scenario (ms).
    durations: BTreeMap<&'static str, Vec<f64>>,
}

impl Harness {
    async fn invoke(&mut self, function: &'static str, event: &Value) -> Result<Outcome, BoxError> {
        let started = Instant::now();
        let outcome = self.functions[function].invoke(event).await;
        self.durations.entry(function).or_default().push(started.elapsed().as_secs_f64() * 1000.0);
        Ok(outcome)
    }

    async fn setup_app(&mut self, fanout: usize) -> Result<String, BoxError> {
        let admin = self.stack.admin_token.clone();
        let (status, app) = http_response(
            self.invoke(
                "applications",
                &http_event("POST", "/v1/applications", &admin, Some(&json!({"name": "bench"}))),
            )
            .await?,
        )?;
        if status != 201 {
            return Err(format!("create application: {status} {app}").into());
        }
        let app_id = app["id"].as_str().ok_or("no id")?.to_string();
        let (status, key) = http_response(
            self.invoke(
                "api-keys",
                &http_event(
                    "POST",
                    &format!("/v1/applications/{app_id}/api-keys"),
                    &admin,
                    Some(&json!({"name": "bench"})),
                ),
            )
            .await?,
        )?;
        if status != 201 {
            return Err(format!("create key: {status} {key}").into());
        }
        let key = key["key"].as_str().ok_or("no key")?.to_string();
        let (status, body) = http_response(
            self.invoke(
                "event-types",
                &http_event("POST", "/v1/event-types", &key, Some(&json!({"name": "bench.event"}))),
            )
            .await?,
        )?;
        if status != 201 {
            return Err(format!("create event type: {status} {body}").into());
        }
        for i in 0..fanout {
            let url = format!("http://{}/e/{i}", self.hooks_address);
            let (status, body) = http_response(
                self.invoke(
                    "endpoints",
                    &http_event("POST", "/v1/endpoints", &key, Some(&json!({"url": url, "timeoutSecs": 5}))),
                )
                .await?,
            )?;
            if status != 201 {
                return Err(format!("create endpoint: {status} {body}").into());
            }
        }
        Ok(format!("{app_id} {key}"))
    }

    async fn run(&mut self, scenario: &Scenario) -> Result<Value, BoxError> {
        let app_key = self.setup_app(scenario.fanout).await?;
        let (app_id, key) = app_key.split_once(' ').ok_or("app")?;
        let (app_id, key) = (app_id.to_string(), key.to_string());
        *self.hooks.fail_first.lock().unwrap() = scenario.fail_first;
        self.hooks.attempts.lock().unwrap().clear();
        self.hooks.succeeded.lock().unwrap().clear();
        self.ledger.lock().unwrap().calls.clear();
        self.durations.clear();
        // Anything left of earlier scenarios on the stream is not this one's.
        let _ = new_event_records(&self.stack, &mut self.stream_seen).await?;

        let pad: String = "order-line-item ".repeat(64);
        let body = |i: usize| json!({"eventType": "bench.event", "payload": {"seq": i, "customer": "cus_8f2k1", "amount": 4200, "data": &pad[..1000]}});
        if scenario.via_ingest {
            for chunk in (0..scenario.events).collect::<Vec<_>>().chunks(10) {
                let mut request = self.producer.send_message_batch().queue_url(&self.stack.ingest_url);
                for &i in chunk {
                    let mut message = body(i);
                    message["applicationId"] = json!(app_id);
                    request = request.entries(
                        aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                            .id(format!("m{i}"))
                            .message_body(message.to_string())
                            .build()?,
                    );
                }
                request.send().await?;
            }
            let mut published = 0;
            while published < scenario.events {
                let batch = receive_batch(&self.esm, &self.stack.ingest_url, 1).await?;
                let n = batch["Records"].as_array().map_or(0, Vec::len);
                if n == 0 {
                    continue;
                }
                let Outcome::Response(response) = self.invoke("ingest", &batch).await? else {
                    return Err("ingest failed".into());
                };
                published += delete_succeeded(&self.esm, &self.stack.ingest_url, &batch, &response).await?;
            }
        } else {
            for i in 0..scenario.events {
                let (status, answer) = http_response(
                    self.invoke("events", &http_event("POST", "/v1/events", &key, Some(&body(i)))).await?,
                )?;
                if status != 202 {
                    return Err(format!("publish: {status} {answer}").into());
                }
            }
        }
        // The stream → fanout (batches of up to 100 records, as in template.yaml).
        let mut fanned = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while fanned < scenario.events {
            let records = new_event_records(&self.stack, &mut self.stream_seen).await?;
            let list = records["Records"].as_array().cloned().unwrap_or_default();
            for chunk in list.chunks(100) {
                let event = json!({"Records": chunk});
                let Outcome::Response(response) = self.invoke("fanout", &event).await? else {
                    return Err("fanout failed".into());
                };
                if response["batchItemFailures"].as_array().is_some_and(|f| !f.is_empty()) {
                    return Err(format!("fanout reported failures: {response}").into());
                }
                fanned += chunk.len();
            }
            if Instant::now() > deadline {
                return Err(format!("only {fanned} of {} events reached the stream", scenario.events).into());
            }
        }
        // The deliveries queue → dispatcher, until every delivery succeeded.
        let expected = scenario.events * scenario.fanout;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.hooks.succeeded.lock().unwrap().len() < expected {
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {expected} deliveries succeeded",
                    self.hooks.succeeded.lock().unwrap().len()
                )
                .into());
            }
            let batch = receive_batch(&self.esm, &self.stack.deliveries_url, 2).await?;
            if batch["Records"].as_array().is_none_or(|r| r.is_empty()) {
                continue;
            }
            let Outcome::Response(response) = self.invoke("dispatcher", &batch).await? else {
                return Err("dispatcher failed".into());
            };
            delete_succeeded(&self.esm, &self.stack.deliveries_url, &batch, &response).await?;
        }
        let _ = app_id;
        Ok(self.summarise(scenario, expected))
    }

    fn summarise(&self, scenario: &Scenario, deliveries: usize) -> Value {
        let ledger = self.ledger.lock().unwrap();
        let mut counts: BTreeMap<(String, String), (u64, f64, f64, f64)> = BTreeMap::new();
        let (mut wru, mut rru, mut sqs, mut secrets) = (0.0, 0.0, 0.0, 0.0);
        for call in &ledger.calls {
            let billable = call.operation != "ReceiveMessage (empty)";
            let entry =
                counts.entry((call.caller.clone(), format!("{} {}", call.service, call.operation))).or_default();
            entry.0 += 1;
            entry.1 += call.wru;
            entry.2 += call.rru;
            entry.3 += call.sqs_units;
            wru += call.wru;
            rru += call.rru;
            if call.service == "SQS" && billable {
                sqs += call.sqs_units;
            }
            if call.service == "Secrets Manager" {
                secrets += 1.0;
            }
        }
        let calls: Vec<Value> = counts
            .iter()
            .map(|((caller, call), (n, w, r, _))| {
                let mut label = call.clone();
                if *w > 0.0 || *r > 0.0 {
                    label = format!("{call} ({w} WRU, {r} RRU)");
                }
                json!({"caller": caller, "call": label, "count": n})
            })
            .collect();
        let invocations: BTreeMap<&str, usize> = self.durations.iter().map(|(f, d)| (*f, d.len())).collect();
        let lambda_requests: usize = invocations.values().sum();
        let gb_s: f64 = self
            .durations
            .iter()
            .map(|(f, d)| d.iter().map(|ms| ms.ceil() / 1000.0 * memory_mb(f) / 1024.0).sum::<f64>())
            .sum();
        let n = deliveries as f64;
        let per_million = |usd: f64| usd / n * 1e6;
        let apigw = if scenario.via_ingest { 0.0 } else { scenario.events as f64 * APIGW_HTTP_PER_REQUEST };
        let mut cost = serde_json::Map::new();
        cost.insert("API Gateway HTTP API".into(), json!(per_million(apigw)));
        cost.insert("Lambda requests".into(), json!(per_million(lambda_requests as f64 * LAMBDA_PER_REQUEST)));
        cost.insert("Lambda GB-s (arm64, local durations)".into(), json!(per_million(gb_s * LAMBDA_ARM_PER_GB_S)));
        cost.insert("DynamoDB writes".into(), json!(per_million(wru * DDB_PER_WRU)));
        cost.insert("DynamoDB reads".into(), json!(per_million(rru * DDB_PER_RRU)));
        cost.insert("SQS requests".into(), json!(per_million(sqs * SQS_PER_REQUEST)));
        cost.insert("Secrets Manager".into(), json!(per_million(secrets * SECRETS_PER_CALL)));
        let total: f64 = cost.values().filter_map(Value::as_f64).sum();
        cost.insert("total".into(), json!(total));
        let mut durations = serde_json::Map::new();
        for (f, d) in &self.durations {
            let mut d = d.clone();
            durations.insert(f.to_string(), json!(crate::net::median(&mut d)));
        }
        json!({
            "name": scenario.name,
            "events": scenario.events,
            "fanout": scenario.fanout,
            "deliveries": deliveries,
            "receiverAttempts": self.hooks.attempts.lock().unwrap().values().sum::<u32>(),
            "calls": calls,
            "invocations": invocations,
            "medianInvocationMs": durations,
            "perDelivery": {
                "wru": round3(wru / n), "rru": round3(rru / n), "sqsRequests": round3(sqs / n),
                "lambdaInvocations": round3(lambda_requests as f64 / n),
            },
            "costPerMillion": cost,
            "target": scenario.target,
        })
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub async fn run(bin_dir: &Path) -> Result<Value, BoxError> {
    let moto = moto()?;
    let upstream: SocketAddr = moto.endpoint.trim_start_matches("http://").parse()?;
    let stack = Stack::create(&moto).await?;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // The table's indexes, for index-entry counting.
    let description =
        aws_sdk_dynamodb::Client::new(&stack.sdk).describe_table().table_name(&stack.table).send().await?;
    let gsis: Vec<Gsi> = description
        .table
        .and_then(|t| t.global_secondary_indexes)
        .unwrap_or_default()
        .into_iter()
        .map(|g| {
            let keys = g.key_schema.unwrap_or_default();
            let hash = keys
                .iter()
                .find(|k| k.key_type == aws_sdk_dynamodb::types::KeyType::Hash)
                .map(|k| k.attribute_name.clone())
                .unwrap_or_default();
            let range = keys
                .iter()
                .find(|k| k.key_type == aws_sdk_dynamodb::types::KeyType::Range)
                .map(|k| k.attribute_name.clone());
            let projection = g.projection.unwrap_or_else(|| aws_sdk_dynamodb::types::Projection::builder().build());
            let projected = match projection.projection_type {
                Some(aws_sdk_dynamodb::types::ProjectionType::All) => None,
                _ => Some(projection.non_key_attributes.unwrap_or_default()),
            };
            Gsi { hash, range, projected }
        })
        .collect();
    ledger.lock().unwrap().gsis = gsis;

    let (hooks, hooks_address) = start_hooks().await?;
    let mut functions = HashMap::new();
    for name in FUNCTIONS {
        let endpoint = start_proxy(upstream, ledger.clone(), name).await?;
        let function = Function::start_from(bin_dir, name, &stack.env(&endpoint)).await;
        function.init_duration().await;
        functions.insert(name, function);
    }
    let esm_endpoint = start_proxy(upstream, ledger.clone(), "SQS event source mapping (Lambda service)").await?;
    let producer_endpoint = start_proxy(upstream, ledger.clone(), "producer").await?;
    let esm = aws_sdk_sqs::Client::new(&sdk_config(&esm_endpoint).await);
    let producer = aws_sdk_sqs::Client::new(&sdk_config(&producer_endpoint).await);
    let init_calls: Vec<Value> = {
        let ledger = ledger.lock().unwrap();
        let mut per: BTreeMap<String, u64> = BTreeMap::new();
        for c in &ledger.calls {
            *per.entry(format!("{} {} {}", c.caller, c.service, c.operation)).or_default() += 1;
        }
        per.into_iter().map(|(k, v)| json!({"call": k, "count": v})).collect()
    };
    let mut harness = Harness {
        stack,
        functions,
        ledger,
        esm,
        producer,
        hooks,
        hooks_address,
        stream_seen: HashSet::new(),
        durations: BTreeMap::new(),
    };
    let scenarios = [
        Scenario {
            name: "HTTP publish, fan-out 1, first-try success",
            via_ingest: false,
            events: 10,
            fanout: 1,
            fail_first: false,
            target: Some(2.50),
        },
        Scenario {
            name: "HTTP publish, fan-out 1, one retry",
            via_ingest: false,
            events: 10,
            fanout: 1,
            fail_first: true,
            target: None,
        },
        Scenario {
            name: "HTTP publish, fan-out 10, first-try success",
            via_ingest: false,
            events: 1,
            fanout: 10,
            fail_first: false,
            target: None,
        },
        Scenario {
            name: "HTTP publish, fan-out 10, one retry",
            via_ingest: false,
            events: 1,
            fanout: 10,
            fail_first: true,
            target: None,
        },
        Scenario {
            name: "ingest queue, fan-out 10, first-try success",
            via_ingest: true,
            events: 10,
            fanout: 10,
            fail_first: false,
            target: Some(1.20),
        },
    ];
    let mut results = Vec::new();
    for scenario in &scenarios {
        eprintln!("aws-calls: {}", scenario.name);
        results.push(harness.run(scenario).await?);
    }
    Ok(json!({
        "method": "Every call of the function binaries (release build, under the Runtime API emulator) and of the Lambda service's SQS event source mappings goes through a counting proxy in front of moto; the stream reads of the fanout trigger are free on AWS and go straight to moto. Capacity units are computed from the items (moto does not meter). Per-batch costs are amortised over the batch sizes in template.yaml (dispatcher and ingest 10, fanout 100): fan-out 1 runs publish 10 events. Empty ReceiveMessage polls (idle long polling, not caused by a delivery) are listed but not charged. Cold-start calls (one Secrets Manager GetSecretValue per function start) are listed under initCalls and not charged per delivery. Lambda GB-s use the local invocation times against moto at the template's MemorySize (128 MB; dispatcher 256 MB).",
        "prices": {
            "date": PRICE_DATE,
            "apiGatewayHttpPerMillion": 1.00, "lambdaPerMillionRequests": 0.20, "lambdaArmPerGbSecond": LAMBDA_ARM_PER_GB_S,
            "dynamodbPerMillionWru": 0.625, "dynamodbPerMillionRru": 0.125, "sqsPerMillionRequests": 0.40, "secretsManagerPer10kCalls": 0.05,
        },
        "initCalls": init_calls,
        "scenarios": results,
    }))
}
