//! Soak: the real `skyhook serve` under sustained load, with a receiver that
//! fails ~10 % of its answers (deterministically, by hash of event, endpoint
//! and attempt), a server restart in the middle, and a fast retry schedule.
//! Afterwards every acknowledged event must have reached every endpoint at
//! least once, and the history must show exactly one succeeded delivery per
//! (event, endpoint). The server's RSS is sampled from /proc/<pid>/status.
//!
//! - `cargo test -p skyhook --test soak` runs the SHORT soak (5,000 events to
//!   5 endpoints by default; well under a minute on 2 cores).
//! - `scripts/soak.sh` runs the LONG soak (the `#[ignore]`d `long_soak`,
//!   release build: 100,000 events to 50 endpoints) and asserts that RSS is
//!   flat after warm-up.
//!
//! Both honour `SKYHOOK_SOAK_EVENTS`, `SKYHOOK_SOAK_ENDPOINTS`,
//! `SKYHOOK_SOAK_FAIL_PERCENT` (default 10), `SKYHOOK_SOAK_RESTART`
//! (`kill` = SIGKILL, default; `term` = SIGTERM) and
//! `SKYHOOK_SOAK_DEADLINE_SECS`. Everything runs on 127.0.0.1 and stops by
//! itself at the deadline.

mod support;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use support::{Server, free_port, temp_dir};
use tokio::net::TcpListener;

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Restart {
    Kill,
    Term,
}

#[derive(Debug, Clone)]
struct SoakConfig {
    name: &'static str,
    events: usize,
    endpoints: usize,
    fail_percent: u64,
    restart: Restart,
    deadline: Duration,
    publishers: usize,
    /// Assert RSS at 100 % is within bounds of RSS at 25 % (long soak).
    check_flat_rss: bool,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl SoakConfig {
    fn from_env(name: &'static str, events: usize, endpoints: usize, check_flat_rss: bool) -> Self {
        let events = env_or("SKYHOOK_SOAK_EVENTS", events).max(10);
        let endpoints = env_or("SKYHOOK_SOAK_ENDPOINTS", endpoints).max(1);
        let restart = match std::env::var("SKYHOOK_SOAK_RESTART").as_deref() {
            Ok("term") => Restart::Term,
            _ => Restart::Kill,
        };
        let default_deadline = (90 + (events * endpoints) as u64 / 300).min(6 * 3600);
        SoakConfig {
            name,
            events,
            endpoints,
            fail_percent: env_or("SKYHOOK_SOAK_FAIL_PERCENT", 10u64).min(50),
            restart,
            deadline: Duration::from_secs(env_or("SKYHOOK_SOAK_DEADLINE_SECS", default_deadline)),
            publishers: 32,
            check_flat_rss,
        }
    }
}

// ---------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// One (event, endpoint) pair, keyed by hash to keep 5 M pairs small.
fn pair_key(event_id: &str, endpoint: u16) -> u64 {
    fnv(&[event_id.as_bytes(), &endpoint.to_le_bytes()])
}

#[derive(Default, Clone, Copy)]
struct Pair {
    attempts: u16,
    successes: u16,
}

#[derive(Default)]
struct Stats {
    pairs: HashMap<u64, Pair>,
    requests: usize,
    injected_failures: usize,
    successes: usize,
}

#[derive(Clone)]
struct SoakReceiver {
    address: SocketAddr,
    stats: Arc<Mutex<Stats>>,
    /// First successes (pairs delivered at least once).
    delivered: Arc<AtomicUsize>,
}

impl SoakReceiver {
    async fn start(fail_percent: u64) -> SoakReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver =
            SoakReceiver { address: listener.local_addr().unwrap(), stats: Arc::default(), delivered: Arc::default() };
        let shared = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.answer(request, fail_percent).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        receiver
    }

    async fn answer(&self, request: Request<hyper::body::Incoming>, fail_percent: u64) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let _ = body.collect().await;
        let endpoint: u16 = parts.uri.path().trim_start_matches("/ep/").parse().unwrap_or(u16::MAX);
        let event_id = parts.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let key = pair_key(&event_id, endpoint);
        let status = {
            let mut stats = self.stats.lock().unwrap();
            stats.requests += 1;
            let pair = stats.pairs.entry(key).or_default();
            pair.attempts += 1;
            let roll = fnv(&[&key.to_le_bytes(), &pair.attempts.to_le_bytes()]) % 100;
            let status = if roll < fail_percent { [500, 503, 429, 502][(roll % 4) as usize] } else { 200 };
            if status == 200 {
                pair.successes += 1;
                if pair.successes == 1 {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                }
                stats.successes += 1;
            } else {
                stats.injected_failures += 1;
            }
            status
        };
        let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        if status == 503 {
            response.headers_mut().insert("retry-after", http::HeaderValue::from_static("1"));
        }
        response
    }

    fn url(&self, endpoint: usize) -> String {
        format!("http://{}/ep/{endpoint}", self.address)
    }
}

// ---------------------------------------------------------------------------
// RSS sampling
// ---------------------------------------------------------------------------

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    process: usize,
    rss_kib: u64,
    delivered: usize,
}

/// Samples the server's RSS every 200 ms until `stop`.
fn sample_rss(
    pid: Arc<AtomicU32>,
    generation: Arc<AtomicUsize>,
    delivered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let process = generation.load(Ordering::SeqCst);
            if let Some(rss_kib) = rss_kib(pid.load(Ordering::SeqCst)) {
                samples.push(Sample {
                    secs: started.elapsed().as_secs_f64(),
                    process,
                    rss_kib,
                    delivered: delivered.load(Ordering::Relaxed),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        samples
    })
}

// ---------------------------------------------------------------------------
// The soak
// ---------------------------------------------------------------------------

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("API reachable");
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or(Value::Null))
}

async fn soak(config: SoakConfig) {
    let started = Instant::now();
    let deadline = started + config.deadline;
    let receiver = SoakReceiver::start(config.fail_percent).await;
    let mut server = Server::start(
        temp_dir(&format!("soak-{}", config.name)),
        free_port(),
        &[("SKYHOOK_RETRY_SCHEDULE", "200ms,400ms,800ms"), ("SKYHOOK_VISIBILITY_TIMEOUT", "3"), ("RUST_LOG", "error")],
    );
    let base = server.base.clone();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).pool_max_idle_per_host(64).build().unwrap();

    // A tenant with N endpoints that retry up to 20 times (0.1^20: never exhausted).
    let (status, app) = call(
        &http,
        reqwest::Method::POST,
        &format!("{base}/v1/applications"),
        ADMIN_TOKEN,
        Some(json!({"name": "soak"})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().unwrap();
    let (_, key) = call(
        &http,
        reqwest::Method::POST,
        &format!("{base}/v1/applications/{app_id}/api-keys"),
        ADMIN_TOKEN,
        Some(json!({"name": "soak"})),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_string();
    call(&http, reqwest::Method::POST, &format!("{base}/v1/event-types"), &key, Some(json!({"name": "soak.tick"})))
        .await;
    let mut endpoint_index: HashMap<String, u16> = HashMap::new();
    for i in 0..config.endpoints {
        let (status, ep) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/v1/endpoints"),
            &key,
            Some(json!({"url": receiver.url(i), "maxAttempts": 20, "timeoutSecs": 10})),
        )
        .await;
        assert_eq!(status, 201, "{ep}");
        endpoint_index.insert(ep["id"].as_str().unwrap().to_string(), i as u16);
    }

    // RSS sampling follows the server across the restart.
    let pid = Arc::new(AtomicU32::new(server.child.id()));
    let generation = Arc::new(AtomicUsize::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pid.clone(), generation.clone(), receiver.delivered.clone(), stop.clone());

    // Publishers: each event with its own Idempotency-Key, retried until acknowledged.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let publish_retries = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for p in 0..config.publishers {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        let (acknowledged, publish_retries) = (acknowledged.clone(), publish_retries.clone());
        let (events, publishers_n) = (config.events, config.publishers);
        publishers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (p..events).step_by(publishers_n) {
                let body = json!({"eventType": "soak.tick", "payload": {"n": i}}).to_string();
                loop {
                    assert!(Instant::now() < deadline, "publishing did not finish before the deadline");
                    let sent = http
                        .post(format!("{base}/v1/events"))
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .header("idempotency-key", format!("soak-{i}"))
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().as_u16() == 202 => {
                            let value: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
                            ids.push(value["id"].as_str().unwrap().to_string());
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Ok(response) => {
                            let status = response.status().as_u16();
                            assert!(status >= 500, "a valid publish was refused with {status}");
                        }
                        Err(_) => {} // the server is restarting
                    }
                    publish_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            ids
        }));
    }

    // The restart, once half of the events are acknowledged.
    while acknowledged.load(Ordering::SeqCst) < config.events / 2 {
        assert!(Instant::now() < deadline, "half of the events were not acknowledged before the deadline");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restart_at_acked = acknowledged.load(Ordering::SeqCst);
    let restart_at_delivered = receiver.delivered.load(Ordering::SeqCst);
    let restart_started = Instant::now();
    match config.restart {
        Restart::Kill => server.kill(),
        Restart::Term => assert!(server.terminate().success(), "graceful shutdown"),
    }
    server.restart();
    pid.store(server.child.id(), Ordering::SeqCst);
    generation.store(2, Ordering::SeqCst);
    let restart_took = restart_started.elapsed();

    let mut event_ids = Vec::with_capacity(config.events);
    for publisher in publishers {
        event_ids.extend(publisher.await.expect("publisher"));
    }
    let published_in = started.elapsed();
    assert_eq!(event_ids.len(), config.events);
    let unique: HashSet<&String> = event_ids.iter().collect();
    assert_eq!(unique.len(), config.events, "a retried publish created a second event");

    // Wait until the receiver has seen every (event, endpoint) succeed.
    let expected = config.events * config.endpoints;
    while receiver.delivered.load(Ordering::SeqCst) < expected {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered_in = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().unwrap();

    // Every event reached every endpoint at least once (receiver's view).
    let mut missing = 0usize;
    let mut duplicates = 0usize;
    {
        let stats = receiver.stats.lock().unwrap();
        for id in &event_ids {
            for endpoint in 0..config.endpoints as u16 {
                match stats.pairs.get(&pair_key(id, endpoint)) {
                    Some(pair) if pair.successes >= 1 => duplicates += usize::from(pair.successes - 1),
                    _ => missing += 1,
                }
            }
        }
    }

    // History: exactly one succeeded delivery per (event, endpoint), nothing else.
    let mut seen: HashSet<u64> = HashSet::with_capacity(expected);
    let (mut listed, mut not_succeeded, mut double_recorded) = (0usize, 0usize, 0usize);
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/deliveries?limit=250");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = call(&http, reqwest::Method::GET, &url, &key, None).await;
        assert_eq!(status, 200, "{page}");
        for d in page["data"].as_array().unwrap() {
            listed += 1;
            if d["status"] != "succeeded" {
                not_succeeded += 1;
                continue;
            }
            let endpoint = endpoint_index[d["endpointId"].as_str().unwrap()];
            if !seen.insert(pair_key(d["eventId"].as_str().unwrap(), endpoint)) {
                double_recorded += 1;
            }
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let verified_in = started.elapsed();

    // RSS figures.
    let at = |fraction: f64| {
        samples.iter().find(|s| s.delivered as f64 >= fraction * expected as f64).map(|s| s.rss_kib).unwrap_or(0)
    };
    let peak = |process: usize| samples.iter().filter(|s| s.process == process).map(|s| s.rss_kib).max().unwrap_or(0);
    let last = samples.last().map(|s| s.rss_kib).unwrap_or(0);
    let (rss_25, rss_50, rss_75) = (at(0.25), at(0.5), at(0.75));
    let stats = receiver.stats.lock().unwrap();
    println!(
        "soak[{}]: events={} endpoints={} deliveries={} receiver_requests={} injected_failures={} ({}%) \
         duplicate_posts={} publish_retries={} restart={:?} at {} acked / {} delivered (down {:.1}s); \
         lost={} double_successes={} not_succeeded={} listed={}; published in {:.1}s, delivered in {:.1}s, \
         verified in {:.1}s ({:.0} deliveries/s); server RSS KiB: 25%={} 50%={} 75%={} 100%={} peak1={} peak2={} samples={}",
        config.name,
        config.events,
        config.endpoints,
        expected,
        stats.requests,
        stats.injected_failures,
        config.fail_percent,
        duplicates,
        publish_retries.load(Ordering::Relaxed),
        config.restart,
        restart_at_acked,
        restart_at_delivered,
        restart_took.as_secs_f64(),
        missing,
        double_recorded,
        not_succeeded,
        listed,
        published_in.as_secs_f64(),
        delivered_in.as_secs_f64(),
        verified_in.as_secs_f64(),
        expected as f64 / delivered_in.as_secs_f64(),
        rss_25,
        rss_50,
        rss_75,
        last,
        peak(1),
        peak(2),
        samples.len(),
    );
    let timeline: Vec<String> = samples
        .iter()
        .step_by((samples.len() / 12).max(1))
        .map(|s| format!("{:.0}s:{}", s.secs, s.delivered))
        .collect();
    println!("soak[{}] timeline (seconds:delivered): {}", config.name, timeline.join(" "));
    assert_eq!(missing, 0, "(event, endpoint) pairs never delivered before the deadline");
    assert_eq!(double_recorded, 0, "a pair has two succeeded deliveries");
    assert_eq!(not_succeeded, 0, "deliveries not succeeded");
    assert_eq!(listed, expected, "one delivery per (event, endpoint)");
    assert!(stats.injected_failures > 0, "the receiver injected failures");
    drop(stats);
    if config.check_flat_rss {
        // Flat after warm-up: the end of the run uses no more than the warm
        // first quarter plus a margin (SQLite caches, allocator slack).
        assert!(rss_25 > 0 && last > 0, "RSS was sampled");
        assert!(
            (last as f64) <= rss_25 as f64 * 1.5 + 32.0 * 1024.0,
            "RSS grew from {rss_25} KiB at 25 % to {last} KiB at 100 %"
        );
    }
    let data_dir = server.data_dir.clone();
    drop(server);
    let _ = std::fs::remove_dir_all(data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak() {
    soak(SoakConfig::from_env("short", 5_000, 5, false)).await;
}

/// The long soak: `scripts/soak.sh` (release build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long soak (100,000 events × 50 endpoints): run scripts/soak.sh"]
async fn long_soak() {
    soak(SoakConfig::from_env("long", 100_000, 50, true)).await;
}
