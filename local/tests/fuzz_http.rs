//! A bounded raw-HTTP fuzz pass against the real `skyhook serve`: every route
//! of `skyhook::api::ROUTES`, over raw TCP, with random bodies, random and
//! malformed headers, wrong methods, huge Content-Length, truncated bodies,
//! invalid UTF-8, deeply nested JSON (100k `[`), 10 MB bodies and garbage
//! request lines. Deterministic (seeded), bounded in count and time, 127.0.0.1
//! only.
//!
//! Asserted: never a 5xx, every request answered or closed within 5 s, the
//! server still up (health 200, process alive) afterwards. The count of
//! inputs tried is printed.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, free_port, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
const SEED: u64 = 0x5eed_f022;

// ---------------------------------------------------------------------------
// Deterministic randomness
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn text(&mut self, max: usize) -> String {
        const POOL: &[&str] = &[
            "a",
            "Z",
            "0",
            "9",
            " ",
            "\"",
            "\\",
            "/",
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "%",
            "&",
            "=",
            "?",
            "#",
            "é",
            "日",
            "\u{0}",
            "\u{7f}",
            "\u{202e}",
            "\u{fffd}",
            "\n",
            "\t",
            "<script>",
            "'; DROP TABLE events;--",
            "${jndi:x}",
            "whsec_",
            "https://",
            "127.0.0.1",
            "..",
            "null",
        ];
        let n = self.below(max + 1);
        (0..n).map(|_| *self.pick(POOL)).collect()
    }

    fn json(&mut self, depth: usize) -> Value {
        let fields = [
            "name",
            "url",
            "eventType",
            "eventTypes",
            "payload",
            "schema",
            "headers",
            "secret",
            "maxAttempts",
            "timeoutSecs",
            "isActive",
            "metadata",
            "scopes",
            "retentionDays",
            "rateLimit",
            "description",
            "idempotencyKey",
            "payloadFormat",
            "from",
            "to",
            "endpointId",
            "grant_type",
            "client_id",
            "archived",
        ];
        match if depth == 0 { self.below(5) } else { self.below(7) } {
            0 => Value::Null,
            1 => Value::Bool(self.chance(50)),
            2 => json!(self.next() as i64 >> self.below(64)),
            3 => json!(self.text(40)),
            4 => json!(*self.pick(&[-1.5e308, 0.0, 1e-300, 42.0, -0.0])),
            5 => Value::Array((0..self.below(5)).map(|_| self.json(depth - 1)).collect()),
            _ => {
                let mut map = serde_json::Map::new();
                for _ in 0..self.below(6) {
                    let key = if self.chance(80) { self.pick(&fields).to_string() } else { self.text(12) };
                    let mut value = self.json(depth - 1);
                    if key == "url" {
                        // URL fields only ever point at 127.0.0.1 or at nothing: no outbound traffic.
                        value = json!(*self.pick(SAFE_URLS));
                    }
                    map.insert(key, value);
                }
                Value::Object(map)
            }
        }
    }
}

/// The only URL values the fuzzer sends: a closed local port, blocked or invalid ones.
const SAFE_URLS: &[&str] = &[
    "http://127.0.0.1:9/hook",
    "http://[::1]:9/x",
    "http://169.254.169.254/latest",
    "https://10.0.0.1/",
    "ftp://127.0.0.1/",
    "not a url",
    "",
    "http://127.0.0.1:9/\u{0}",
];

// ---------------------------------------------------------------------------
// One raw exchange
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Answered(u16),
    /// The server closed (or reset) without a status line.
    Closed,
    TimedOut,
}

#[derive(Clone)]
struct Input {
    kind: &'static str,
    bytes: Vec<u8>,
    /// Close our sending side after the bytes (the client is done).
    half_close: bool,
}

/// A request sent whole; the connection stays open until the answer.
fn input(kind: &'static str, bytes: Vec<u8>) -> Input {
    Input { kind, bytes, half_close: false }
}

/// A request the client abandons: it stops sending and closes its side.
fn abandoned(kind: &'static str, bytes: Vec<u8>) -> Input {
    Input { kind, bytes, half_close: true }
}

async fn exchange(address: SocketAddr, input: &Input) -> Outcome {
    let attempt = async {
        let Ok(stream) = TcpStream::connect(address).await else { return Outcome::Closed };
        let (mut read, mut write) = stream.into_split();
        let bytes = input.bytes.clone();
        let half_close = input.half_close;
        let writer = tokio::spawn(async move {
            for chunk in bytes.chunks(64 * 1024) {
                if write.write_all(chunk).await.is_err() {
                    return;
                }
            }
            if half_close {
                let _ = write.shutdown().await;
            } else {
                // Keep the connection open (and our side unfinished) until the test ends.
                tokio::time::sleep(ANSWER_WITHIN * 2).await;
            }
        });
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let outcome = loop {
            if let Some(line_end) = head.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&head[..line_end]).to_string();
                let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                break Outcome::Answered(status);
            }
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break Outcome::Closed,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        };
        writer.abort();
        outcome
    };
    tokio::time::timeout(ANSWER_WITHIN, attempt).await.unwrap_or(Outcome::TimedOut)
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

struct Ids {
    app: String,
    key: String,
    endpoint: String,
    event: String,
    delivery: String,
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn request(method: &str, target: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn inputs(ids: &Ids, rng: &mut Rng) -> Vec<Input> {
    let mut out = Vec::new();
    let routes = skyhook::api::ROUTES;
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "BREW", "get", "G\u{0}ET"];
    let auth = |rng: &mut Rng| -> Vec<(&'static str, String)> {
        match rng.below(5) {
            0 => vec![],
            1 => vec![("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            2 => vec![("x-api-key", "sk_wrong".to_string())],
            _ => vec![("authorization", format!("Bearer {}", ids.key))],
        }
    };
    for route in routes {
        // Destructive calls on the fuzzer's own tenant would end the run early.
        let protect = route.method == "DELETE" && route.path.starts_with("/v1/applications");
        let target = |rng: &mut Rng| -> String {
            let mut path = String::new();
            for part in route.path.split('/').skip(1) {
                path.push('/');
                let real = match part {
                    "{appId}" if !protect => Some(ids.app.clone()),
                    "{id}" if route.path.starts_with("/v1/endpoints") => Some(ids.endpoint.clone()),
                    "{id}" if route.path.starts_with("/v1/events") => Some(ids.event.clone()),
                    "{id}" if route.path.starts_with("/v1/deliveries") && route.method != "DELETE" => {
                        Some(ids.delivery.clone())
                    }
                    "{name}" => Some("order.created".to_string()),
                    _ => None,
                };
                match (part.starts_with('{'), real) {
                    (true, Some(real)) if rng.chance(60) => path.push_str(&real),
                    (true, _) => {
                        let junk = rng.text(20);
                        path.push_str(&percent(&junk));
                    }
                    (false, _) => path.push_str(part),
                }
            }
            if rng.chance(40) {
                let q = [
                    "limit=0",
                    "limit=-1",
                    "limit=999999999999999999999",
                    "cursor=%FF%FE",
                    "from=x&to=y",
                    "status=weird",
                    "isActive=maybe",
                    "eventId=evt_x",
                    "since=2026-13-45",
                    "limit=1&limit=2",
                    "%ZZ=1",
                    "a",
                ];
                path.push('?');
                let query = *rng.pick(&q);
                path.push_str(query);
            }
            path
        };
        // 1. the right method, random JSON bodies
        for _ in 0..12 {
            let body = serde_json::to_vec(&rng.json(4)).unwrap();
            let mut headers = auth(rng);
            headers.push(("content-type", "application/json".into()));
            headers.push(("content-length", body.len().to_string()));
            out.push(input("random json", request(route.method, &target(rng), &headers, &body)));
        }
        // 2. wrong methods
        for _ in 0..3 {
            let method = *rng.pick(&methods);
            out.push(input("wrong method", request(method, &target(rng), &auth(rng), b"")));
        }
        // 3. malformed and random headers
        let header_cases: Vec<Vec<(&str, String)>> = vec![
            vec![("content-length", "-1".into())],
            vec![("content-length", "abc".into())],
            vec![("content-length", "5".into()), ("content-length", "7".into())],
            vec![("transfer-encoding", "chunked".into()), ("content-length", "5".into())],
            vec![("content-type", "application/json; charset=\u{1}".into())],
            vec![("content-type", "text/plain".into()), ("content-length", "2".into())],
            vec![("authorization", "Bearer ".into())],
            vec![("authorization", format!("Bearer {}", "x".repeat(20_000)))],
            vec![("x-api-key", rng.text(30).replace(['\r', '\n'], ""))],
            vec![("idempotency-key", "\u{e9}\u{65e5}".into()), ("content-length", "0".into())],
            (0..120).map(|i| ("x-many", format!("{i}"))).collect(),
            vec![("x-big", "v".repeat(70_000))],
        ];
        for headers in header_cases {
            let mut all = auth(rng);
            all.extend(headers);
            out.push(input("malformed headers", request(route.method, &target(rng), &all, b"{}")));
        }
        let mut raw = request(route.method, &target(rng), &auth(rng), b"");
        raw.splice(raw.len() - 2..raw.len() - 2, b"no colon here\r\n: empty name\r\nbad name: v\r\n".iter().copied());
        out.push(input("malformed header lines", raw));
        let mut raw = request(route.method, &target(rng), &auth(rng), b"");
        raw.splice(raw.len() - 2..raw.len() - 2, b"x-bin: \xff\xfe\x80\r\n".iter().copied());
        out.push(input("invalid utf-8 header", raw));
        // 4. huge Content-Length, the client then finishes
        let mut headers = auth(rng);
        headers.push(("content-type", "application/json".into()));
        headers.push(("content-length", "1000000000000".into()));
        out.push(abandoned("huge content-length", request(route.method, &target(rng), &headers, b"{\"a\":1}")));
        // 5. truncated body
        let mut headers = auth(rng);
        headers.push(("content-type", "application/json".into()));
        headers.push(("content-length", "100".into()));
        out.push(abandoned("truncated body", request(route.method, &target(rng), &headers, b"{\"name\":\"tru")));
        // 6. invalid UTF-8 in body and path
        let mut headers = auth(rng);
        headers.push(("content-type", "application/json".into()));
        let body = [b"{\"name\":\"".as_slice(), &[0xff, 0xc3, 0x28, 0xed, 0xa0, 0x80], b"\"}"].concat();
        headers.push(("content-length", body.len().to_string()));
        out.push(input("invalid utf-8 body", request(route.method, &target(rng), &headers, &body)));
        let mut path = target(rng).into_bytes();
        path.extend_from_slice(b"/\xff\xfe%FF%C0%AF");
        let mut raw = format!("{} ", route.method).into_bytes();
        raw.extend_from_slice(&path);
        raw.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\n\r\n");
        out.push(input("invalid utf-8 path", raw));
        // 7. deeply nested JSON
        for nested in
            ["[".repeat(100_000), "{\"a\":".repeat(50_000), format!("{}1{}", "[".repeat(127), "]".repeat(127))]
        {
            let mut headers = auth(rng);
            headers.push(("content-type", "application/json".into()));
            headers.push(("content-length", nested.len().to_string()));
            out.push(input("deeply nested json", request(route.method, &target(rng), &headers, nested.as_bytes())));
        }
        // 8. a 10 MB body
        let big = vec![b'['; 10 * 1024 * 1024];
        let mut headers = auth(rng);
        headers.push(("content-type", "application/json".into()));
        headers.push(("content-length", big.len().to_string()));
        out.push(input("10 MB body", request(route.method, &target(rng), &headers, &big)));
        // 9. random bytes after a valid head
        let n = rng.below(2048) + 1;
        let noise = rng.bytes(n);
        let mut headers = auth(rng);
        headers.push(("content-length", noise.len().to_string()));
        out.push(input("random body bytes", request(route.method, &target(rng), &headers, &noise)));
        // 10. chunked bodies, valid and broken
        let mut headers = auth(rng);
        headers.push(("content-type", "application/json".into()));
        headers.push(("transfer-encoding", "chunked".into()));
        out.push(input("chunked", request(route.method, &target(rng), &headers, b"2\r\n{}\r\n0\r\n\r\n")));
        out.push(abandoned("broken chunked", request(route.method, &target(rng), &headers, b"zz\r\n{}\r\n")));
        out.push(abandoned("huge chunk", request(route.method, &target(rng), &headers, b"ffffffffffffffff\r\n{}")));
    }
    // Request lines that are not HTTP/1.1 requests at all.
    let long_uri = format!("/v1/events?{}", "a".repeat(100_000));
    let lines: Vec<Vec<u8>> = vec![
        b"GET /v1/health HTTP/1.0\r\n\r\n".to_vec(),
        b"GET /v1/health\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"GET * HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        b"GET http://127.0.0.1/v1/health HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        b"GET //v1//health HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        b"GET /v1/../v1/health HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        format!("GET {long_uri} HTTP/1.1\r\nhost: x\r\n\r\n").into_bytes(),
        b"GET /v1/health HTTP/1.1\nhost: x\n\n".to_vec(),
        b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\nGET /v1/health HTTP/1.1\r\n\r\n".to_vec(),
    ];
    for line in lines {
        out.push(input("odd request line", line));
    }
    // Incomplete heads: the client gives up (an open, unfinished head is the
    // slowloris case, tested on its own below).
    out.push(abandoned("incomplete head", b"\r\n\r\n\r\n".to_vec()));
    out.push(abandoned("incomplete head", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()));
    out.push(abandoned("incomplete head", b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-le".to_vec()));
    for _ in 0..60 {
        let n = rng.below(600) + 1;
        out.push(abandoned("random bytes", rng.bytes(n)));
    }
    out
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

async fn api(http: &reqwest::Client, method: reqwest::Method, url: String, token: &str, body: Value) -> Value {
    let response = http
        .request(method, url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "setup call failed: {}", response.status());
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn tenant(base: &str) -> Ids {
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;
    let app = api(&http, post.clone(), format!("{base}/v1/applications"), ADMIN_TOKEN, json!({"name": "fuzz"})).await;
    let app_id = app["id"].as_str().unwrap().to_string();
    let key = api(
        &http,
        post.clone(),
        format!("{base}/v1/applications/{app_id}/api-keys"),
        ADMIN_TOKEN,
        json!({"name": "fuzz"}),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_string();
    api(&http, post.clone(), format!("{base}/v1/event-types"), &key, json!({"name": "order.created"})).await;
    let ep = api(
        &http,
        post.clone(),
        format!("{base}/v1/endpoints"),
        &key,
        json!({"url": "http://127.0.0.1:9/hook", "maxAttempts": 1}),
    )
    .await;
    let event =
        api(&http, post, format!("{base}/v1/events"), &key, json!({"eventType": "order.created", "payload": {"n": 1}}))
            .await;
    let event_id = event["id"].as_str().unwrap().to_string();
    // Wait for its delivery to exist.
    let mut delivery = String::new();
    for _ in 0..100 {
        let page = http.get(format!("{base}/v1/deliveries?eventId={event_id}")).bearer_auth(&key).send().await.unwrap();
        let page: Value = serde_json::from_slice(&page.bytes().await.unwrap()).unwrap();
        if let Some(id) = page["data"][0]["id"].as_str() {
            delivery = id.to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!delivery.is_empty(), "the delivery was created");
    Ids { app: app_id, key, endpoint: ep["id"].as_str().unwrap().to_string(), event: event_id, delivery }
}

async fn health(base: &str) -> u16 {
    reqwest::Client::new().get(format!("{base}/v1/health")).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_bounded_raw_http_fuzz_pass_over_every_route_then_no_5xx_no_hang_and_the_server_stays_up() {
    let mut server = Server::start(temp_dir("fuzz"), free_port(), &[("RUST_LOG", "error")]);
    let address: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let ids = tenant(&server.base).await;
    let mut rng = Rng(SEED);
    let all = inputs(&ids, &mut rng);
    let started = Instant::now();

    let mut outcomes: BTreeMap<(String, Outcome), usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for batch in all.chunks(8) {
        let mut set = tokio::task::JoinSet::new();
        for (i, case) in batch.iter().cloned().enumerate() {
            set.spawn(async move { (i, exchange(address, &case).await) });
        }
        while let Some(joined) = set.join_next().await {
            let (i, outcome) = joined.unwrap();
            let case = &batch[i];
            *outcomes.entry((case.kind.to_string(), outcome)).or_default() += 1;
            let bad = match outcome {
                Outcome::Answered(status) => !(100..500).contains(&status),
                Outcome::Closed => false,
                Outcome::TimedOut => true,
            };
            if bad {
                let preview = String::from_utf8_lossy(&case.bytes[..case.bytes.len().min(160)]).to_string();
                failures.push(format!("{} → {outcome:?}: {preview:?}", case.kind));
            }
        }
    }
    let elapsed = started.elapsed();

    // The server is still up and still correct.
    assert_eq!(health(&server.base).await, 200, "health after the fuzz pass");
    assert!(server.child.try_wait().unwrap().is_none(), "the server process exited");
    let mut by_outcome: BTreeMap<Outcome, usize> = BTreeMap::new();
    for ((_, outcome), n) in &outcomes {
        *by_outcome.entry(*outcome).or_default() += n;
    }
    println!(
        "fuzz_http: {} inputs over {} routes in {:.1}s; outcomes {:?}; failures {}",
        all.len(),
        skyhook::api::ROUTES.len(),
        elapsed.as_secs_f64(),
        by_outcome,
        failures.len()
    );
    for ((kind, outcome), n) in &outcomes {
        println!("  {kind:>24} {outcome:?}: {n}");
    }
    assert!(
        failures.is_empty(),
        "{} inputs got a 5xx or no answer within 5 s:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server.kill();
    let _ = std::fs::remove_dir_all(&server.data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_huge_content_length_and_a_client_that_keeps_the_connection_open_then_413_within_5_s() {
    let mut server = Server::start(temp_dir("fuzz-cl"), free_port(), &[("RUST_LOG", "error")]);
    let address: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let case = Input {
        kind: "huge content-length, open",
        bytes: request(
            "POST",
            "/v1/events",
            &[("content-type", "application/json".into()), ("content-length", "1000000000000".into())],
            b"{\"a\":1}",
        ),
        half_close: false,
    };
    let outcome = exchange(address, &case).await;
    server.kill();
    let _ = std::fs::remove_dir_all(&server.data_dir);
    assert_eq!(outcome, Outcome::Answered(413));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_client_that_never_finishes_its_headers_then_the_server_closes_the_connection() {
    let mut server = Server::start(temp_dir("fuzz-slow"), free_port(), &[("RUST_LOG", "error")]);
    let address: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
    let mut buf = [0u8; 64];
    // hyper's default header_read_timeout is 30 s once a timer is configured.
    let closed = tokio::time::timeout(Duration::from_secs(40), stream.read(&mut buf)).await;
    server.kill();
    let _ = std::fs::remove_dir_all(&server.data_dir);
    assert!(matches!(closed, Ok(Ok(_)) | Ok(Err(_))), "the half-sent request was kept open for 40 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_broken_chunked_body_then_400_not_413() {
    let mut server = Server::start(temp_dir("fuzz-chunked"), free_port(), &[("RUST_LOG", "error")]);
    let address: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let case = abandoned(
        "broken chunked",
        request(
            "POST",
            "/v1/events",
            &[("content-type", "application/json".into()), ("transfer-encoding", "chunked".into())],
            b"zz\r\n{}\r\n",
        ),
    );
    let outcome = exchange(address, &case).await;
    server.kill();
    let _ = std::fs::remove_dir_all(&server.data_dir);
    assert_eq!(outcome, Outcome::Answered(400));
}

#[test]
fn given_a_data_dir_whose_secrets_cannot_be_read_when_serve_starts_then_it_exits_with_an_error_naming_the_file() {
    // GIVEN secrets.json is a directory (unreadable as a file, even for root)
    let dir = temp_dir("fuzz-secrets");
    std::fs::create_dir_all(dir.join("secrets.json")).unwrap();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_skyhook"))
        .arg("serve")
        .env("SKYHOOK_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("SKYHOOK_DATA_DIR", &dir)
        .env_remove("SKYHOOK_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the binary runs");
    // THEN it stops by itself with a clear message, no panic
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(stderr.contains("secrets.json"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
