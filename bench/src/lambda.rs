//! `skyhook-bench lambda`: for every function binary, its stripped size and,
//! over N cold starts under the Runtime API emulator with moto behind it,
//! init (process start → first `next` poll), the first invocation (a
//! representative event handed over → response posted) and the peak RSS
//! (VmHWM after the first invocation).

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::aws::{Stack, http_event, http_response, moto, new_event_records, receive_batch};
use crate::emulator::{Function, Outcome};
use crate::net::{BoxError, median, peak_rss_kib};

/// The order functions are measured in (any other function directory under
/// `functions/` follows, invoked with `GET /`).
const KNOWN: [&str; 10] = [
    "applications",
    "api-keys",
    "event-types",
    "endpoints",
    "events",
    "deliveries",
    "console",
    "ingest",
    "fanout",
    "dispatcher",
];

/// Every function of the workspace: the directories under `functions/`.
fn functions() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    found.sort_by_key(|name| (KNOWN.iter().position(|k| k == name).unwrap_or(KNOWN.len()), name.clone()));
    found
}

fn p90(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[((samples.len() as f64 * 0.9).ceil() as usize).clamp(1, samples.len()) - 1]
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

struct Fixture {
    app_id: String,
    key: String,
}

pub async fn run(bin_dir: &Path, runs: usize) -> Result<Value, BoxError> {
    let names = functions();
    for name in &names {
        if !bin_dir.join(name).exists() {
            return Err(format!("{} not built: cargo build --release --workspace", bin_dir.join(name).display()).into());
        }
    }
    let moto = moto()?;
    let stack = Stack::create(&moto).await?;
    let env = stack.env(&moto.endpoint);
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let (_receiver_guard, receiver_url) = receiver().await?;

    // An application, key, event type and endpoint to invoke against, made
    // with warm functions (not measured).
    let admin = stack.admin_token.clone();
    let applications = Function::start_from(bin_dir, "applications", &env).await;
    let (_, app) = http_response(
        applications.invoke(&http_event("POST", "/v1/applications", &admin, Some(&json!({"name": "cold"})))).await,
    )?;
    let app_id = app["id"].as_str().ok_or("no app id")?.to_string();
    let api_keys = Function::start_from(bin_dir, "api-keys", &env).await;
    let (_, key) = http_response(
        api_keys
            .invoke(&http_event(
                "POST",
                &format!("/v1/applications/{app_id}/api-keys"),
                &admin,
                Some(&json!({"name": "k"})),
            ))
            .await,
    )?;
    let key = key["key"].as_str().ok_or("no key")?.to_string();
    let event_types = Function::start_from(bin_dir, "event-types", &env).await;
    http_response(
        event_types.invoke(&http_event("POST", "/v1/event-types", &key, Some(&json!({"name": "cold.start"})))).await,
    )?;
    let endpoints = Function::start_from(bin_dir, "endpoints", &env).await;
    let (status, endpoint) = http_response(
        endpoints
            .invoke(&http_event("POST", "/v1/endpoints", &key, Some(&json!({"url": receiver_url, "timeoutSecs": 5}))))
            .await,
    )?;
    if status != 201 {
        return Err(format!("create endpoint: {status} {endpoint}").into());
    }
    let warm_events = Function::start_from(bin_dir, "events", &env).await;
    let warm_fanout = Function::start_from(bin_dir, "fanout", &env).await;
    drop((applications, api_keys, event_types, endpoints));
    let fixture = Fixture { app_id, key };
    let mut stream_seen = std::collections::HashSet::new();
    let _ = new_event_records(&stack, &mut stream_seen).await?;

    let mut out = Vec::new();
    for name in names.iter().map(String::as_str) {
        let size = std::fs::metadata(bin_dir.join(name))?.len();
        let (mut init, mut first, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            // Prepare this run's input with warm functions (not measured).
            let event = match name {
                "applications" => http_event("GET", "/v1/applications", &stack.admin_token, None),
                "api-keys" => http_event(
                    "GET",
                    &format!("/v1/applications/{}/api-keys", fixture.app_id),
                    &stack.admin_token,
                    None,
                ),
                "event-types" => http_event("GET", "/v1/event-types", &fixture.key, None),
                "endpoints" => http_event("GET", "/v1/endpoints", &fixture.key, None),
                "events" => publish_event(&fixture.key),
                "deliveries" => http_event("GET", "/v1/deliveries", &fixture.key, None),
                "ingest" => ingest_event(&fixture.app_id),
                "fanout" => {
                    http_response(warm_events.invoke(&publish_event(&fixture.key)).await)?;
                    new_event_records(&stack, &mut stream_seen).await?
                }
                "console" => http_event("GET", "/v1/openapi.json", "", None),
                "dispatcher" => {
                    http_response(warm_events.invoke(&publish_event(&fixture.key)).await)?;
                    let records = new_event_records(&stack, &mut stream_seen).await?;
                    warm_fanout.invoke(&records).await;
                    receive_batch(&sqs, &stack.deliveries_url, 2).await?
                }
                _ => http_event("GET", "/", "", None),
            };
            let function = Function::start_from(bin_dir, name, &env).await;
            init.push(function.init_duration().await.as_secs_f64() * 1000.0);
            let started = Instant::now();
            let outcome = function.invoke(&event).await;
            first.push(started.elapsed().as_secs_f64() * 1000.0);
            if let Outcome::Error(err) = &outcome {
                return Err(format!("{name} failed: {err}").into());
            }
            rss.push(peak_rss_kib(function.child.id()).unwrap_or(0) as f64 / 1000.0 * 1.024);
            drop(function);
        }
        let max_rss = rss.iter().cloned().fold(0.0, f64::max);
        eprintln!(
            "{name}: init median {:.1} ms, first invocation median {:.1} ms, peak RSS {max_rss:.1} MB",
            median(&mut init.clone()),
            median(&mut first.clone())
        );
        out.push(json!({
            "name": name,
            "sizeBytes": size,
            "sizeMB": round1(size as f64 / 1e6),
            "initMedianMs": round1(median(&mut init.clone())),
            "initP90Ms": round1(p90(&mut init.clone())),
            "firstInvocationMedianMs": round1(median(&mut first.clone())),
            "peakRssMB": round1(max_rss),
            "initMs": init.iter().map(|v| round1(*v)).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({"runs": runs, "binDir": bin_dir.display().to_string(), "functions": out}))
}

fn publish_event(key: &str) -> Value {
    http_event(
        "POST",
        "/v1/events",
        key,
        Some(&json!({"eventType": "cold.start", "payload": {"orderId": 42, "data": "x".repeat(900)}})),
    )
}

fn ingest_event(app_id: &str) -> Value {
    let body = json!({"applicationId": app_id, "eventType": "cold.start", "payload": {"orderId": 7}});
    json!({"Records": [{
        "messageId": ulid::Ulid::new().to_string(), "receiptHandle": "bench", "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1741860930000"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest", "awsRegion": "us-east-1",
    }]})
}

/// A receiver that answers 204 to everything, for the dispatcher's sends.
async fn receiver() -> Result<(crate::net::Receiver, String), BoxError> {
    let receiver = crate::net::Receiver::start().await?;
    let url = receiver.url("/e/0");
    Ok((receiver, url))
}
