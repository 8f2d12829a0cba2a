//! `skyhook-bench serve`: `skyhook serve` on the embedded backend, a local
//! keep-alive receiver, and in one run: the machine's ceilings (raw loopback
//! POST rate with the same client and receiver, HMAC-SHA256 signing rate, the
//! data dir's fsync rate), publish and publish→first-attempt latency at fixed
//! offered rates, sustained publish→delivered throughput at fan-out 1 and 10,
//! and the server's peak RSS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::net::{BoxError, Client, Percentiles, Receiver, free_port, peak_rss_kib, percentiles};

/// Size of the `data` string in each published payload: with the rest of the
/// payload and the Standard Webhooks envelope, a webhook body is ~1.1 KiB.
const PAYLOAD_PAD: usize = 1000;
const EVENT_TYPE: &str = "bench.event";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub skyhook: PathBuf,
    pub smoke: bool,
    /// Seconds of closed-loop publishing per throughput run.
    pub throughput_secs: f64,
    /// Seconds per fixed-rate run.
    pub rate_secs: f64,
    pub rates: Vec<u32>,
    /// Concurrent publishers (one keep-alive connection each) in the throughput runs.
    pub concurrency: usize,
    /// Longest wait for every delivery of a run to arrive.
    pub drain_timeout: Duration,
    /// Phases to run (`rates`, `fanout1`, `fanout10`, `controls`); all when empty.
    pub only: Vec<String>,
    /// Most events published in the `controls` phase: its ordered endpoints
    /// take one delivery at a time each, so an open-ended flood would only
    /// measure how long the backlog is when the drain timeout ends.
    pub controls_events: Option<u64>,
}

impl ServeOptions {
    pub fn full(skyhook: PathBuf) -> Self {
        ServeOptions {
            skyhook,
            smoke: false,
            throughput_secs: 10.0,
            rate_secs: 10.0,
            rates: vec![500, 1000, 2000],
            concurrency: 128,
            drain_timeout: Duration::from_secs(120),
            only: Vec::new(),
            controls_events: Some(20_000),
        }
    }

    pub fn smoke(skyhook: PathBuf) -> Self {
        ServeOptions {
            skyhook,
            smoke: true,
            throughput_secs: 0.5,
            rate_secs: 1.0,
            rates: vec![50, 100, 200],
            concurrency: 8,
            // A debug build on a busy CI machine: generous, and still bounded.
            drain_timeout: Duration::from_secs(120),
            only: Vec::new(),
            controls_events: None,
        }
    }
}

/// A 1 KiB-ish payload; `seq` makes each one distinct.
fn payload(seq: u64, pad: &str) -> Bytes {
    Bytes::from(
        json!({"eventType": EVENT_TYPE, "payload": {"seq": seq, "customer": "cus_8f2k1", "amount": 4200, "data": pad}})
            .to_string(),
    )
}

fn pad() -> String {
    // Mixed text that compresses like typical JSON string data (not all one letter).
    let words = ["order", "created", "customer", "invoice", "line", "item", "amount", "eur", "paid", "ship"];
    let mut out = String::with_capacity(PAYLOAD_PAD);
    let mut i = 0usize;
    while out.len() < PAYLOAD_PAD {
        out.push_str(words[(i * 7 + i / 3) % words.len()]);
        out.push_str(&format!("-{} ", (i * 2654435761) % 9973));
        i += 1;
    }
    out.truncate(PAYLOAD_PAD);
    out
}

struct Server {
    child: Child,
    address: std::net::SocketAddr,
    data_dir: PathBuf,
    admin_token: String,
}

impl Server {
    async fn start(binary: &Path) -> Result<Server, BoxError> {
        let port = free_port();
        let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let data_dir = std::env::temp_dir().join(format!("skyhook-bench-{}-{}", std::process::id(), ulid::Ulid::new()));
        std::fs::create_dir_all(&data_dir)?;
        let admin_token = format!("bench-admin-{}", ulid::Ulid::new());
        let log = std::fs::File::create(data_dir.join("serve.log"))?;
        let child = Command::new(binary)
            .arg("serve")
            .env("SKYHOOK_LISTEN", address.to_string())
            .env("SKYHOOK_DATA_DIR", &data_dir)
            .env("SKYHOOK_ADMIN_TOKEN", &admin_token)
            .env("SKYHOOK_ALLOW_LOOPBACK", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut server = Server { child, address, data_dir, admin_token };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut client = Client::new(address);
            if let Ok((200, _)) = client.request(http::Method::GET, "/v1/health", &[], Bytes::new()).await {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(format!("skyhook serve exited during start: {status}").into());
            }
            if Instant::now() > deadline {
                return Err("skyhook serve did not answer /v1/health within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(mut self) {
        // SIGTERM: graceful shutdown, as an operator would.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// An application with `fanout` endpoints on the receiver, and its API key.
async fn setup_application(
    server: &Server,
    receiver: &Receiver,
    fanout: u16,
    first_index: u16,
    controls: &Value,
) -> Result<String, BoxError> {
    let mut client = Client::new(server.address);
    let admin = format!("Bearer {}", server.admin_token);
    let (status, app) = client
        .post_json("/v1/applications", &[("authorization", &admin)], &json!({"name": format!("bench-{fanout}")}))
        .await?;
    if status != 201 {
        return Err(format!("create application: {status} {app}").into());
    }
    let app_id = app["id"].as_str().ok_or("no application id")?;
    let (status, key) = client
        .post_json(
            &format!("/v1/applications/{app_id}/api-keys"),
            &[("authorization", &admin)],
            &json!({"name": "bench"}),
        )
        .await?;
    if status != 201 {
        return Err(format!("create API key: {status} {key}").into());
    }
    let key = key["key"].as_str().ok_or("no key")?.to_string();
    let (status, body) =
        client.post_json("/v1/event-types", &[("x-api-key", &key)], &json!({"name": EVENT_TYPE})).await?;
    if status != 201 {
        return Err(format!("create event type: {status} {body}").into());
    }
    for index in first_index..first_index + fanout {
        let url = receiver.url(&format!("/e/{index}"));
        let mut endpoint = json!({"url": url, "eventTypes": [EVENT_TYPE]});
        if let (Some(endpoint), Some(controls)) = (endpoint.as_object_mut(), controls.as_object()) {
            endpoint.extend(controls.clone());
        }
        let (status, body) = client.post_json("/v1/endpoints", &[("x-api-key", &key)], &endpoint).await?;
        if status != 201 {
            return Err(format!("create endpoint: {status} {body}").into());
        }
    }
    Ok(key)
}

/// One accepted publish.
struct Sent {
    id: String,
    /// When the request was due (open loop) or sent (closed loop).
    at: Instant,
}

#[derive(Default)]
struct RunLog {
    sent: Mutex<Vec<Sent>>,
    publish_ms: Mutex<Vec<f64>>,
    errors: AtomicU64,
    /// Why publishes failed: `HTTP <status>` or the client's error.
    error_kinds: Mutex<std::collections::BTreeMap<String, u64>>,
}

async fn publish_one(client: &mut Client, key: &str, seq: u64, pad: &str, due: Instant, log: &RunLog) {
    match client.request(http::Method::POST, "/v1/events", &[("x-api-key", key)], payload(seq, pad)).await {
        Ok((202, body)) => {
            let elapsed = due.elapsed().as_secs_f64() * 1000.0;
            let id = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
                .unwrap_or_default();
            log.publish_ms.lock().unwrap().push(elapsed);
            log.sent.lock().unwrap().push(Sent { id, at: due });
        }
        other => {
            log.errors.fetch_add(1, Ordering::Relaxed);
            let kind = match other {
                Ok((status, _)) => format!("HTTP {status}"),
                Err(err) => err.to_string(),
            };
            *log.error_kinds.lock().unwrap().entry(kind).or_default() += 1;
        }
    }
}

/// Waits until the receiver has `expected` first attempts more than `base`.
async fn drain(receiver: &Receiver, base: u64, expected: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while receiver.first_count.load(Ordering::Relaxed) < base + expected {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Publish→first-attempt latency of every delivery of the run's events.
fn first_attempt_latency(receiver: &Receiver, sent: &[Sent], endpoints: std::ops::Range<u16>) -> (Percentiles, u64) {
    let seen = receiver.seen.lock().unwrap();
    let mut samples = Vec::with_capacity(sent.len() * endpoints.len());
    let mut missing = 0;
    for s in sent {
        for index in endpoints.clone() {
            match seen.first.get(&(s.id.clone(), index)) {
                Some(at) => samples.push(at.saturating_duration_since(s.at).as_secs_f64() * 1000.0),
                None => missing += 1,
            }
        }
    }
    (percentiles(&mut samples), missing)
}

/// Open loop: `rate` publishes a second for `secs`, each due at its slot
/// (latency counts from the slot, so a stalled server cannot hide its queue).
async fn fixed_rate(
    server: &Server,
    receiver: &Receiver,
    key: &str,
    rate: u32,
    secs: f64,
    drain_timeout: Duration,
) -> Result<Value, BoxError> {
    let total = (f64::from(rate) * secs).round() as u64;
    let log = Arc::new(RunLog::default());
    let next = Arc::new(AtomicU64::new(0));
    let base = receiver.first_count.load(Ordering::Relaxed);
    let pad = Arc::new(pad());
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let workers = (rate as usize / 10).clamp(8, 128);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (log, next, pad, key, address) = (log.clone(), next.clone(), pad.clone(), key.to_string(), server.address);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(address);
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= total {
                    return;
                }
                let due = start + interval * seq as u32;
                tokio::time::sleep_until(due.into()).await;
                publish_one(&mut client, &key, seq, &pad, due, &log).await;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let publish_window = start.elapsed().as_secs_f64();
    let accepted = log.sent.lock().unwrap().len() as u64;
    let drained = drain(receiver, base, accepted, drain_timeout).await;
    let sent = std::mem::take(&mut *log.sent.lock().unwrap());
    let (first_attempt, missing) = first_attempt_latency(receiver, &sent, 0..1);
    let publish = percentiles(&mut log.publish_ms.lock().unwrap());
    Ok(json!({
        "offeredPerSec": rate,
        "seconds": secs,
        "accepted": accepted,
        "errors": log.errors.load(Ordering::Relaxed),
        "errorKinds": log.error_kinds.lock().unwrap().clone(),
        "achievedPerSec": round1(accepted as f64 / publish_window),
        "publish": publish,
        "publishToFirstAttempt": first_attempt,
        "undelivered": missing,
        "drained": drained,
    }))
}

/// Closed loop: `concurrency` publishers as fast as the server answers for
/// `secs`, then every delivery awaited; throughput = deliveries / (last
/// delivery − first publish).
async fn throughput(
    server: &Server,
    receiver: &Receiver,
    key: &str,
    fanout: u16,
    first_index: u16,
    opts: &ServeOptions,
    max_events: Option<u64>,
) -> Result<Value, BoxError> {
    let log = Arc::new(RunLog::default());
    let seq = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let base = receiver.first_count.load(Ordering::Relaxed);
    let pad = Arc::new(pad());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..opts.concurrency {
        let (log, seq, stop, pad, key, address) =
            (log.clone(), seq.clone(), stop.clone(), pad.clone(), key.to_string(), server.address);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(address);
            while !stop.load(Ordering::Relaxed) {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                if max_events.is_some_and(|max| n >= max) {
                    break;
                }
                publish_one(&mut client, &key, n, &pad, Instant::now(), &log).await;
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(opts.throughput_secs);
    while Instant::now() < deadline && tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let publish_window = start.elapsed().as_secs_f64();
    let events = log.sent.lock().unwrap().len() as u64;
    let expected = events * u64::from(fanout);
    let drained = drain(receiver, base, expected, opts.drain_timeout).await;
    let delivered = receiver.first_count.load(Ordering::Relaxed) - base;
    let last = receiver.seen.lock().unwrap().last.unwrap_or(start);
    let window = last.saturating_duration_since(start).as_secs_f64().max(publish_window);
    let sent = std::mem::take(&mut *log.sent.lock().unwrap());
    let (first_attempt, missing) = first_attempt_latency(receiver, &sent, first_index..first_index + fanout);
    let publish = percentiles(&mut log.publish_ms.lock().unwrap());
    Ok(json!({
        "fanout": fanout,
        "concurrency": opts.concurrency,
        "publishSeconds": round1(publish_window),
        "events": events,
        "errors": log.errors.load(Ordering::Relaxed),
        "errorKinds": log.error_kinds.lock().unwrap().clone(),
        "publishPerSec": round1(events as f64 / publish_window),
        "deliveries": delivered,
        "undelivered": missing,
        "drained": drained,
        "endToEndSeconds": round1(window),
        "eventsPerSec": round1(events as f64 / window),
        "deliveriesPerSec": round1(delivered as f64 / window),
        "publish": publish,
        "publishToFirstAttempt": first_attempt,
    }))
}

/// Raw loopback POST rate: the same client, body and receiver, no Skyhook.
async fn loopback_ceiling(receiver: &Receiver, concurrency: usize, secs: f64) -> Result<Value, BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let before = receiver.raw_count.load(Ordering::Relaxed);
    let body = payload(0, &pad());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (stop, body, address) = (stop.clone(), body.clone(), receiver.address);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(address);
            while !stop.load(Ordering::Relaxed) {
                let _ = client.request(http::Method::POST, "/raw", &[("webhook-id", "msg_raw")], body.clone()).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let count = receiver.raw_count.load(Ordering::Relaxed) - before;
    Ok(
        json!({"concurrency": concurrency, "seconds": secs, "postsPerSec": round1(count as f64 / start.elapsed().as_secs_f64())}),
    )
}

/// HMAC-SHA256 Standard Webhooks signatures per second on one core, for a
/// body of the size the dispatcher signs.
fn hmac_ceiling(secs: f64) -> Value {
    let key = vec![7u8; 32];
    let body = json!({"type": EVENT_TYPE, "timestamp": "2026-01-01T00:00:00.000Z", "data": {"seq": 1, "data": pad()}})
        .to_string()
        .into_bytes();
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..100 {
            std::hint::black_box(skyhook::signing::sign_payload(
                &key,
                "evt_01JD3X7Q0Z8Y4N2M6K5T9W1R3B",
                1_767_225_600,
                &body,
            ));
        }
        count += 100;
    }
    json!({"bodyBytes": body.len(), "signaturesPerSecPerCore": round1(count as f64 / start.elapsed().as_secs_f64())})
}

/// 4 KiB writes each followed by fdatasync in the data dir's filesystem: the
/// most durable commits a second one writer could make without group commit.
fn fsync_ceiling(dir: &Path, secs: f64) -> Value {
    use std::io::Write;
    let path = dir.join(format!("skyhook-bench-fsync-{}", std::process::id()));
    let Ok(mut file) = std::fs::File::create(&path) else { return Value::Null };
    let block = vec![0u8; 4096];
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        if file.write_all(&block).is_err() || file.sync_data().is_err() {
            break;
        }
        count += 1;
    }
    let _ = std::fs::remove_file(&path);
    json!({"fsyncsPerSec": round1(count as f64 / start.elapsed().as_secs_f64())})
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub async fn run(opts: ServeOptions) -> Result<Value, BoxError> {
    let receiver = Receiver::start().await?;
    let ceiling_secs = if opts.smoke { 0.3 } else { 3.0 };
    eprintln!("ceilings: HMAC, fsync, loopback POST ({ceiling_secs} s each)");
    let hmac = tokio::task::spawn_blocking(move || hmac_ceiling(ceiling_secs)).await?;
    let fsync = tokio::task::spawn_blocking(move || fsync_ceiling(&std::env::temp_dir(), ceiling_secs)).await?;
    let loopback = loopback_ceiling(&receiver, opts.concurrency.min(64), ceiling_secs).await?;

    eprintln!("starting {}", opts.skyhook.display());
    let server = Server::start(&opts.skyhook).await?;
    let pid = server.child.id();
    let result = async {
        let key1 = setup_application(&server, &receiver, 1, 0, &Value::Null).await?;
        let key10 = setup_application(&server, &receiver, 10, 1, &Value::Null).await?;
        // Fan-out 10 with every endpoint filtered (a filter every event
        // passes, so the deliveries are comparable) and ordered: one delivery
        // at a time per endpoint, in publish order.
        let controls = json!({"ordered": true, "filter": {"and": [{"field": "seq", "gte": 0}, {"field": "data", "exists": true}]}});
        let key_controls = setup_application(&server, &receiver, 10, 11, &controls).await?;
        let wanted = |phase: &str| opts.only.is_empty() || opts.only.iter().any(|p| p == phase);
        let mut rates = Vec::new();
        for &rate in opts.rates.iter().filter(|_| wanted("rates")) {
            eprintln!("fixed rate {rate}/s for {} s (fan-out 1)", opts.rate_secs);
            rates.push(fixed_rate(&server, &receiver, &key1, rate, opts.rate_secs, opts.drain_timeout).await?);
        }
        let mut runs = Vec::new();
        if wanted("fanout1") {
            eprintln!("throughput, fan-out 1, {} publishers, {} s", opts.concurrency, opts.throughput_secs);
            runs.push(throughput(&server, &receiver, &key1, 1, 0, &opts, None).await?);
        }
        if wanted("fanout10") {
            eprintln!("throughput, fan-out 10, {} publishers, {} s", opts.concurrency, opts.throughput_secs);
            runs.push(throughput(&server, &receiver, &key10, 10, 1, &opts, None).await?);
        }
        if wanted("controls") {
            eprintln!(
                "throughput, fan-out 10, filtered + ordered endpoints, {} publishers, at most {} events",
                opts.concurrency,
                opts.controls_events.map_or("unlimited".to_string(), |n| n.to_string())
            );
            let mut run = throughput(&server, &receiver, &key_controls, 10, 11, &opts, opts.controls_events).await?;
            run["label"] = json!("fan-out 10, every endpoint filtered and ordered");
            runs.push(run);
        }
        let rss = peak_rss_kib(pid);
        Ok::<_, BoxError>(json!({
            "fixedRates": rates,
            "throughput": runs,
            "server": {"peakRssKiB": rss, "peakRssMiB": rss.map(|k| round1(k as f64 / 1024.0))},
            "repeats": receiver.seen.lock().unwrap().repeats,
        }))
    }
    .await;
    server.stop();
    let mut out = result?;
    out["smoke"] = json!(opts.smoke);
    out["skyhook"] = json!(opts.skyhook.display().to_string());
    out["ceilings"] = json!({"loopbackPost": loopback, "hmac": hmac, "fsync": fsync});
    out["payloadBytes"] = json!(payload(0, &pad()).len());
    Ok(out)
}
