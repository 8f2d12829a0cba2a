//! Misbehaving receivers (SPEC §4 Delivery): a chaos receiver on 127.0.0.1
//! (raw tokio TcpListener, hand-written HTTP) that sleeps past the timeout,
//! resets the connection, trickles bytes, sends 50 MB, answers 500 / 429 /
//! 503 / 410 / 302, or speaks garbage to a TLS client. Each mode is driven
//! through the real `skyhook::sender::HttpSender` directly AND through the
//! Dispatcher (SQLite store and queue, ManualClock), and the attempt record is
//! checked: responseStatus, captured response ≤ 4096 bytes, the next delay,
//! 410 disabling the endpoint, 302 not followed.
//!
//! Every receiver is bounded: it stops writing after its budget, sleeps at
//! most a few seconds, and dies with the test.

mod faults;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use faults::*;
use serde_json::{Value, json};
use skyhook::domain::{ErrorCode, Timestamp};
use skyhook::ports::{OutgoingWebhook, SendFailure, WebhookSender};
use skyhook::sender::HttpSender;
use skyhook::ssrf::{AddressPolicy, StaticResolver, SystemResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::RwLock;

const CAPTURE_LIMIT: usize = 4096;
/// Endpoint timeout used throughout (the smallest an endpoint may set).
const TIMEOUT: Duration = Duration::from_secs(1);

/// The memory test takes this exclusively; every other test shares it, so
/// nothing else runs while RSS is measured.
static MEMORY: RwLock<()> = RwLock::const_new(());

async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    MEMORY.read().await
}

// ---------------------------------------------------------------------------
// The chaos receiver
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mode {
    /// Reads the request, then says nothing for this long and closes.
    Sleep(Duration),
    /// Reads the request, then resets the connection (SO_LINGER 0).
    Reset,
    /// Sends the response one byte every 150 ms (at most 3 s).
    Trickle,
    /// 200 with a body of this many bytes, written as fast as the client reads.
    Huge(usize),
    /// A status with extra header lines and a body.
    Answer { status: u16, headers: Vec<String>, body: Vec<u8> },
    /// Garbage (a plain HTTP answer and binary noise) to whatever connects.
    Garbage,
}

fn answer(status: u16, headers: &[&str], body: &[u8]) -> Mode {
    Mode::Answer { status, headers: headers.iter().map(|h| h.to_string()).collect(), body: body.to_vec() }
}

#[derive(Clone)]
struct Chaos {
    address: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// Body bytes actually written in `Huge` mode.
    written: Arc<AtomicUsize>,
}

impl Chaos {
    async fn start(mode: Mode) -> Chaos {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let chaos = Chaos {
            address: listener.local_addr().unwrap(),
            connections: Arc::default(),
            requests: Arc::default(),
            written: Arc::default(),
        };
        let shared = chaos.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let (mode, shared) = (mode.clone(), shared.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), serve(stream, mode, shared)).await;
                });
            }
        });
        chaos
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    fn https_url(&self) -> String {
        format!("https://{}/hook", self.address)
    }
}

/// Reads one request (head and `content-length` body); `false` if the client went away.
async fn read_request(stream: &mut TcpStream) -> bool {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buffer.len() > 64 * 1024 {
            return false;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let mut have = buffer.len() - head_end;
    while have < length.min(1 << 20) {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => have += n,
        }
    }
    true
}

async fn serve(mut stream: TcpStream, mode: Mode, chaos: Chaos) {
    if let Mode::Garbage = mode {
        let mut noise = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
        noise.extend((0..512u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let _ = stream.write_all(&noise).await;
        let _ = stream.shutdown().await;
        return;
    }
    if !read_request(&mut stream).await {
        return;
    }
    chaos.requests.fetch_add(1, Ordering::SeqCst);
    match mode {
        Mode::Sleep(d) => tokio::time::sleep(d).await,
        Mode::Reset => {
            // Linger 0: close sends RST. (Deprecated in tokio because a
            // non-zero linger blocks on drop; zero never does.)
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Mode::Trickle => {
            let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
            let deadline = Instant::now() + Duration::from_secs(3);
            for byte in response {
                if Instant::now() > deadline || stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
        Mode::Huge(size) => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {size}\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b'a'; 64 * 1024];
            let mut sent = 0;
            while sent < size {
                let n = block.len().min(size - sent);
                if stream.write_all(&block[..n]).await.is_err() {
                    break;
                }
                sent += n;
                chaos.written.store(sent, Ordering::SeqCst);
            }
        }
        Mode::Answer { status, headers, body } => {
            let mut response =
                format!("HTTP/1.1 {status} Chaos\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
            for h in headers {
                response.push_str(&h);
                response.push_str("\r\n");
            }
            response.push_str("\r\n");
            let mut bytes = response.into_bytes();
            bytes.extend_from_slice(&body);
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Mode::Garbage => unreachable!(),
    }
}

// ---------------------------------------------------------------------------
// The two paths: HttpSender alone, and the Dispatcher
// ---------------------------------------------------------------------------

fn loopback_sender() -> Arc<HttpSender> {
    Arc::new(HttpSender::new(AddressPolicy { allow_loopback: true }, Arc::new(SystemResolver), "Skyhook/chaos"))
}

async fn send_direct(url: &str) -> Result<skyhook::ports::EndpointResponse, SendFailure> {
    let request = OutgoingWebhook {
        url: url.to_string(),
        headers: vec![("webhook-id".into(), "evt_chaos".into())],
        body: Bytes::from_static(br#"{"type":"order.created","data":{}}"#),
        timeout: TIMEOUT,
    };
    loopback_sender().send(request).await
}

fn error_code(result: &Result<skyhook::ports::EndpointResponse, SendFailure>) -> Option<ErrorCode> {
    result.as_ref().err().map(|f| f.code)
}

/// What one dispatch of one event to `url` recorded.
struct Dispatched {
    env: Env,
    tenant: Tenant,
    /// The delivery with its attempts.
    delivery: Value,
    endpoint: Value,
    now: Timestamp,
}

impl Dispatched {
    fn attempt(&self) -> &Value {
        &self.delivery["attempts"][0]
    }

    /// `nextAttemptAt - now`, in seconds.
    fn next_delay_secs(&self) -> f64 {
        let next =
            chrono::DateTime::parse_from_rfc3339(self.delivery["nextAttemptAt"].as_str().expect("nextAttemptAt"))
                .unwrap()
                .with_timezone(&chrono::Utc);
        (next - self.now).num_milliseconds() as f64 / 1000.0
    }

    fn captured_len(&self) -> usize {
        self.attempt()["response"].as_str().map_or(0, str::len)
    }
}

async fn dispatch(url: &str) -> Dispatched {
    dispatch_with(url, loopback_sender()).await
}

async fn dispatch_with(url: &str, sender: Arc<dyn WebhookSender>) -> Dispatched {
    let env = Env::new(local_config());
    let tenant = env.tenant("chaos").await;
    let ep = env.endpoint(&tenant, json!({ "url": url, "timeoutSecs": TIMEOUT.as_secs() })).await;
    let (status, event, _) = env.publish(&tenant, json!({ "order": 1 })).await;
    assert_eq!(status, 202);
    env.service.sweep_fanout(10).await.unwrap();
    let now = env.now();
    let outcomes = env.dispatch_visible(&env.dispatcher(sender)).await;
    assert_eq!(outcomes.len(), 1);
    let listed = env.deliveries(&tenant, &format!("eventId={}", event["id"].as_str().unwrap())).await;
    let delivery = env.delivery(&tenant, listed[0]["id"].as_str().unwrap()).await;
    let endpoint =
        env.ok("GET", &format!("/v1/endpoints/{}", ep["id"].as_str().unwrap()), Some(&tenant.key), None).await;
    Dispatched { env, tenant, delivery, endpoint, now }
}

/// A failed first attempt: the status is recorded, the delivery is retrying,
/// and the next attempt is 5 s ± 20 % away (the default schedule).
fn assert_retrying(d: &Dispatched, status: Value) {
    assert_eq!(d.delivery["status"], "retrying", "{}", d.delivery);
    assert_eq!(d.delivery["responseStatus"], status, "{}", d.delivery);
    assert_eq!(d.attempt()["responseStatus"], status);
    assert!(d.captured_len() <= CAPTURE_LIMIT);
    let delay = d.next_delay_secs();
    assert!((4.0..=6.0).contains(&delay), "next attempt in {delay} s, expected 5 s ± 20 %");
    assert_eq!(d.attempt()["nextDelaySecs"].as_u64(), Some(delay as u64));
}

// ---------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_a_receiver_sleeping_past_the_timeout_then_timeout_is_recorded_and_retried_on_schedule() {
    let _guard = shared().await;
    let chaos = Chaos::start(Mode::Sleep(Duration::from_secs(3))).await;

    let started = Instant::now();
    let direct = send_direct(&chaos.url()).await;
    assert_eq!(error_code(&direct), Some(ErrorCode::Timeout), "{direct:?}");
    assert!(started.elapsed() < TIMEOUT + Duration::from_millis(900), "gave up at the timeout");

    let d = dispatch(&chaos.url()).await;
    assert_retrying(&d, json!("timeout"));
    let duration_ms = d.attempt()["durationMs"].as_u64().unwrap();
    assert!((900..2_500).contains(&duration_ms), "durationMs {duration_ms}");
}

#[tokio::test]
async fn given_a_receiver_resetting_the_connection_then_an_io_error_is_recorded() {
    let _guard = shared().await;
    let chaos = Chaos::start(Mode::Reset).await;

    let direct = send_direct(&chaos.url()).await;
    assert_eq!(error_code(&direct), Some(ErrorCode::Io), "{direct:?}");

    let d = dispatch(&chaos.url()).await;
    assert_retrying(&d, json!("io"));
    assert!(d.attempt()["error"].as_str().unwrap().len() <= 300);
}

#[tokio::test]
async fn given_a_receiver_trickling_its_answer_then_the_timeout_covers_the_whole_exchange() {
    let _guard = shared().await;
    let chaos = Chaos::start(Mode::Trickle).await;

    let direct = send_direct(&chaos.url()).await;
    assert_eq!(error_code(&direct), Some(ErrorCode::Timeout), "{direct:?}");

    let d = dispatch(&chaos.url()).await;
    assert_retrying(&d, json!("timeout"));
}

#[tokio::test]
async fn given_nothing_listening_then_a_connect_error_is_recorded() {
    let _guard = shared().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hook");

    let direct = send_direct(&url).await;
    assert_eq!(error_code(&direct), Some(ErrorCode::Connect), "{direct:?}");

    let d = dispatch(&url).await;
    assert_retrying(&d, json!("connect"));
}

#[tokio::test]
async fn given_an_unknown_host_then_a_dns_error_is_recorded() {
    let _guard = shared().await;
    let sender =
        Arc::new(HttpSender::new(AddressPolicy::default(), Arc::new(StaticResolver::default()), "Skyhook/chaos"));
    let d = dispatch_with("http://nowhere.invalid/hook", sender).await;
    assert_retrying(&d, json!("dns"));
}

#[tokio::test]
async fn given_garbage_where_tls_was_expected_then_a_tls_error_is_recorded() {
    let _guard = shared().await;
    let chaos = Chaos::start(Mode::Garbage).await;

    let direct = send_direct(&chaos.https_url()).await;
    assert_eq!(error_code(&direct), Some(ErrorCode::Tls), "{direct:?}");

    let d = dispatch(&chaos.https_url()).await;
    assert_retrying(&d, json!("tls"));
}

#[tokio::test]
async fn given_a_500_with_a_large_body_then_500_is_recorded_with_the_first_4096_bytes() {
    let _guard = shared().await;
    let body = "e".repeat(10_000);
    let chaos = Chaos::start(answer(500, &["content-type: text/plain"], body.as_bytes())).await;

    let direct = send_direct(&chaos.url()).await.expect("an answer");
    assert_eq!(direct.status, 500);
    assert_eq!(direct.body.as_deref().map(str::len), Some(CAPTURE_LIMIT));

    let d = dispatch(&chaos.url()).await;
    assert_retrying(&d, json!(500));
    assert_eq!(d.captured_len(), CAPTURE_LIMIT);
    assert_eq!(d.delivery["responseBody"].as_str().map(str::len), Some(CAPTURE_LIMIT));
}

#[tokio::test]
async fn given_429_with_retry_after_then_the_next_attempt_honours_it_within_the_schedule_bounds() {
    let _guard = shared().await;
    // (Retry-After sent, delay expected): within bounds, below the shortest, above the longest.
    for (retry_after, expected) in [("120", 120.0), ("1", 5.0), ("999999", 36_000.0)] {
        let header = format!("retry-after: {retry_after}");
        let chaos = Chaos::start(answer(429, &[&header], b"slow down")).await;

        let direct = send_direct(&chaos.url()).await.expect("an answer");
        assert_eq!(direct.status, 429);
        assert_eq!(direct.retry_after, Some(Duration::from_secs(retry_after.parse().unwrap())));

        let d = dispatch(&chaos.url()).await;
        assert_eq!(d.delivery["status"], "retrying");
        assert_eq!(d.attempt()["responseStatus"], 429);
        assert_eq!(d.next_delay_secs(), expected, "Retry-After {retry_after}");
    }
}

#[tokio::test]
async fn given_503_with_an_http_date_retry_after_then_it_is_honoured() {
    let _guard = shared().await;
    // The sender turns an HTTP-date into a delay from the real clock; 10 min from now.
    let at = chrono::Utc::now() + chrono::Duration::minutes(10);
    let header = format!("retry-after: {}", at.format("%a, %d %b %Y %H:%M:%S GMT"));
    let chaos = Chaos::start(answer(503, &[&header], b"")).await;

    let d = dispatch(&chaos.url()).await;
    assert_eq!(d.attempt()["responseStatus"], 503);
    let delay = d.next_delay_secs();
    assert!((590.0..=600.0).contains(&delay), "next attempt in {delay} s");
}

#[tokio::test]
async fn given_410_gone_then_the_delivery_fails_and_the_endpoint_is_disabled() {
    let _guard = shared().await;
    let chaos = Chaos::start(answer(410, &[], b"gone")).await;

    let direct = send_direct(&chaos.url()).await.expect("an answer");
    assert_eq!(direct.status, 410);

    let d = dispatch(&chaos.url()).await;
    assert_eq!(d.delivery["status"], "failed");
    assert_eq!(d.delivery["responseStatus"], 410);
    assert_eq!(d.delivery["nextAttemptAt"], Value::Null);
    assert_eq!(d.endpoint["isActive"], false, "{}", d.endpoint);
    assert!(d.endpoint["disabledReason"].as_str().unwrap().contains("410"));

    // AND the next event is not sent to it at all
    let (status, _, _) = d.env.publish(&d.tenant, json!({ "order": 2 })).await;
    assert_eq!(status, 202);
    d.env.service.sweep_fanout(10).await.unwrap();
    assert_eq!(d.env.queue_counts().await, (0, 0));
    assert_eq!(chaos.requests.load(Ordering::SeqCst), 2, "one direct, one dispatched");
}

#[tokio::test]
async fn given_a_302_to_another_address_then_it_is_recorded_as_a_302_failure_and_not_followed() {
    let _guard = shared().await;
    // The redirect target is a second local listener that must never see a connection.
    let target = Chaos::start(answer(200, &[], b"followed")).await;
    let location = format!("location: {}", target.url());
    let chaos = Chaos::start(answer(302, &[&location], b"")).await;

    let direct = send_direct(&chaos.url()).await.expect("an answer");
    assert_eq!(direct.status, 302);

    let d = dispatch(&chaos.url()).await;
    assert_retrying(&d, json!(302));
    assert_eq!(target.connections.load(Ordering::SeqCst), 0, "the redirect was followed");
    assert_eq!(chaos.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn given_a_50_mb_answer_then_4096_bytes_are_kept_and_memory_stays_bounded() {
    let _exclusive = MEMORY.write().await;
    const SIZE: usize = 50 * 1024 * 1024;
    let chaos = Chaos::start(Mode::Huge(SIZE)).await;

    // Warm up the client, the runtime and SQLite before the baseline.
    let _ = dispatch(&answer_url().await).await;
    let before = rss_kib();

    let direct = send_direct(&chaos.url()).await.expect("an answer");
    assert_eq!(direct.status, 200);
    assert_eq!(direct.body.as_deref().map(str::len), Some(CAPTURE_LIMIT));
    let d = dispatch(&chaos.url()).await;
    assert_eq!(d.delivery["status"], "succeeded");
    assert_eq!(d.captured_len(), CAPTURE_LIMIT);

    let after = rss_kib();
    let growth_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    let written = chaos.written.load(Ordering::SeqCst);
    println!(
        "50 MB receiver: RSS before {} KiB, after {} KiB, growth {growth_mib:.1} MiB; receiver wrote {} KiB of {} KiB",
        before,
        after,
        written / 1024,
        SIZE / 1024
    );
    assert!(growth_mib < 20.0, "RSS grew {growth_mib:.1} MiB");
    assert!(written < SIZE, "the client stopped reading: the rest of the body was never downloaded");
}

/// A plain 200 receiver, for warming up.
async fn answer_url() -> String {
    Chaos::start(answer(200, &[], b"ok")).await.url()
}

#[tokio::test]
async fn given_a_receiver_answering_200_then_the_delivery_succeeds_with_its_answer_captured() {
    let _guard = shared().await;
    let chaos = Chaos::start(answer(204, &[], b"")).await;
    let d = dispatch(&chaos.url()).await;
    assert_eq!(d.delivery["status"], "succeeded");
    assert_eq!(d.delivery["responseStatus"], 204);
    assert_eq!(d.delivery["nextAttemptAt"], Value::Null);
}
