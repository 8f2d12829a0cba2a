//! `HttpSender` against hand-written HTTP/1.1 receivers on 127.0.0.1.
//!
//! Every byte of traffic goes to 127.0.0.1: blocked destinations (10.0.0.1,
//! 169.254.169.254, …) are refused before any connection is attempted, which is
//! exactly what these tests check. Every test is bounded by `bounded`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use skyhook::domain::ErrorCode;
use skyhook::domain::limits::MAX_RESPONSE_CAPTURE_BYTES;
use skyhook::ports::{EndpointResponse, OutgoingWebhook, SendFailure, WebhookSender};
use skyhook::sender::HttpSender;
use skyhook::ssrf::{AddressPolicy, HostResolver, StaticResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LOOPBACK_OK: AddressPolicy = AddressPolicy { allow_loopback: true };
const STRICT: AddressPolicy = AddressPolicy { allow_loopback: false };
const TEST_BUDGET: Duration = Duration::from_secs(20);

async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_BUDGET, test).await.expect("test exceeded its time budget");
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sender_with(policy: AddressPolicy, resolver: StaticResolver) -> HttpSender {
    let resolver: Arc<dyn HostResolver> = Arc::new(resolver);
    HttpSender::new(policy, resolver, "Skyhook/test")
}

fn sender(policy: AddressPolicy) -> HttpSender {
    sender_with(policy, StaticResolver::default())
}

fn webhook(url: &str, timeout: Duration) -> OutgoingWebhook {
    OutgoingWebhook {
        url: url.to_string(),
        headers: vec![
            ("webhook-id".into(), "msg_2abc".into()),
            ("webhook-timestamp".into(), "1700000000".into()),
            ("webhook-signature".into(), "v1,c2VjcmV0LXNpZ25hdHVyZQ==".into()),
        ],
        body: Bytes::from_static(br#"{"type":"user.created","timestamp":"2024-01-01T00:00:00Z","data":{}}"#),
        timeout,
    }
}

async fn send(sender: &HttpSender, url: &str) -> Result<EndpointResponse, SendFailure> {
    sender.send(webhook(url, Duration::from_secs(5))).await
}

/// What the receiver saw of one request.
#[derive(Debug, Default, Clone)]
struct Received {
    head: String,
    body: Vec<u8>,
}

/// Reads one request (head + `content-length` body) from the stream.
async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received { head, body })
}

/// A receiver on 127.0.0.1 that runs `handle` for every connection and counts
/// connections.
struct Receiver {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: tokio::sync::mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn receiver<F, Fut>(handle: F) -> Receiver
where
    F: Fn(TcpStream, tokio::sync::mpsc::UnboundedSender<Received>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(stream, tx.clone()));
        }
    });
    Receiver { addr, connections, requests: rx }
}

/// Reads the request, then writes `response` verbatim and closes.
async fn replying(response: impl Into<Vec<u8>>) -> Receiver {
    let response: Arc<Vec<u8>> = Arc::new(response.into());
    receiver(move |mut stream, seen| {
        let response = Arc::clone(&response);
        async move {
            if let Some(request) = read_request(&mut stream).await {
                let _ = seen.send(request);
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            }
        }
    })
    .await
}

fn expect_failure(result: Result<EndpointResponse, SendFailure>, code: ErrorCode) -> SendFailure {
    match result {
        Err(failure) => {
            assert_eq!(failure.code, code, "unexpected failure: {failure:?}");
            assert!(!failure.message.is_empty());
            assert!(!failure.message.contains("v1,c2VjcmV0"), "message leaks the signature: {}", failure.message);
            failure
        }
        Ok(response) => panic!("expected {code:?}, got a response: {response:?}"),
    }
}

#[tokio::test]
async fn given_a_200_receiver_when_sending_then_status_body_and_request_are_as_expected() {
    bounded(async {
        let mut rx = replying("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\naccepted").await;
        let response = send(&sender(LOOPBACK_OK), &rx.url("/hooks?x=1")).await.unwrap();
        assert_eq!(response, EndpointResponse { status: 200, body: Some("accepted".into()), retry_after: None });

        let request = rx.requests.recv().await.unwrap();
        let head = request.head.to_ascii_lowercase();
        assert!(head.starts_with("post /hooks?x=1 http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nwebhook-id: msg_2abc\r\n"));
        assert!(head.contains("\r\nwebhook-signature: v1,c2vjcmv0lxnpz25hdhvyzq==\r\n"));
        assert!(head.contains("\r\nuser-agent: skyhook/test\r\n"));
        assert!(head.contains("\r\ncontent-type: application/json\r\n"));
        assert_eq!(request.body, webhook("", Duration::ZERO).body.to_vec());
    })
    .await;
}

#[tokio::test]
async fn given_an_empty_204_when_sending_then_the_body_is_none() {
    bounded(async {
        let rx = replying("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
        let response = send(&sender(LOOPBACK_OK), &rx.url("/")).await.unwrap();
        assert_eq!(response, EndpointResponse { status: 204, body: None, retry_after: None });
    })
    .await;
}

#[tokio::test]
async fn given_a_5_mb_body_when_sending_then_exactly_4096_bytes_are_captured_quickly() {
    bounded(async {
        const SIZE: usize = 5 * 1024 * 1024;
        let mut response = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
        response.extend(std::iter::repeat_n(b'a', SIZE));
        let rx = replying(response).await;
        let started = Instant::now();
        let response = sender(LOOPBACK_OK).send(webhook(&rx.url("/"), Duration::from_secs(10))).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body.map(|b| b.len()), Some(MAX_RESPONSE_CAPTURE_BYTES));
        assert_eq!(MAX_RESPONSE_CAPTURE_BYTES, 4096);
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    })
    .await;
}

#[tokio::test]
async fn given_a_body_that_never_ends_when_sending_then_the_capture_returns_without_reading_it_all() {
    bounded(async {
        // Announces 50 MB, sends 64 KiB, then stalls: reading the whole body would
        // hit the timeout, reading only the cap returns at once.
        let rx = receiver(|mut stream, _| async move {
            if read_request(&mut stream).await.is_some() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 52428800\r\n\r\n").await;
                let _ = stream.write_all(&vec![b'z'; 64 * 1024]).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        })
        .await;
        let started = Instant::now();
        let response = sender(LOOPBACK_OK).send(webhook(&rx.url("/"), Duration::from_secs(10))).await.unwrap();
        assert_eq!(response.body, Some("z".repeat(MAX_RESPONSE_CAPTURE_BYTES)));
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    })
    .await;
}

#[tokio::test]
async fn given_a_503_with_retry_after_seconds_when_sending_then_the_delay_is_returned() {
    bounded(async {
        let rx = replying("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy").await;
        let response = send(&sender(LOOPBACK_OK), &rx.url("/")).await.unwrap();
        assert_eq!(
            response,
            EndpointResponse { status: 503, body: Some("busy".into()), retry_after: Some(Duration::from_secs(7)) }
        );
    })
    .await;
}

#[tokio::test]
async fn given_a_429_with_an_http_date_retry_after_when_sending_then_the_delay_is_until_that_date() {
    bounded(async {
        let at = chrono::Utc::now() + chrono::Duration::seconds(120);
        let date = at.format("%a, %d %b %Y %H:%M:%S GMT");
        let rx =
            replying(format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: {date}\r\nContent-Length: 0\r\n\r\n"))
                .await;
        let response = send(&sender(LOOPBACK_OK), &rx.url("/")).await.unwrap();
        assert_eq!(response.status, 429);
        let delay = response.retry_after.expect("an HTTP-date Retry-After");
        assert!(delay > Duration::from_secs(110) && delay <= Duration::from_secs(120), "{delay:?}");
    })
    .await;
}

#[tokio::test]
async fn given_a_302_when_sending_then_the_redirect_is_returned_and_not_followed() {
    bounded(async {
        let target = replying("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let rx = replying(format!(
            "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 5\r\n\r\nmoved",
            target.url("/elsewhere")
        ))
        .await;
        let response = send(&sender(LOOPBACK_OK), &rx.url("/")).await.unwrap();
        assert_eq!(response.status, 302);
        assert_eq!(response.body.as_deref(), Some("moved"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(target.connections(), 0, "the redirect must not be followed");
    })
    .await;
}

#[tokio::test]
async fn given_a_receiver_that_never_answers_when_sending_then_timeout_within_the_timeout() {
    bounded(async {
        let rx = receiver(|mut stream, _| async move {
            let _ = read_request(&mut stream).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let started = Instant::now();
        let result = sender(LOOPBACK_OK).send(webhook(&rx.url("/"), Duration::from_millis(500))).await;
        let elapsed = started.elapsed();
        let failure = expect_failure(result, ErrorCode::Timeout);
        assert!(elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(2), "{elapsed:?}");
        assert_eq!(failure.message, "no complete response within 500ms");
    })
    .await;
}

#[tokio::test]
async fn given_a_slow_body_when_sending_then_the_timeout_covers_the_body_read() {
    bounded(async {
        let rx = receiver(|mut stream, _| async move {
            if read_request(&mut stream).await.is_some() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst").await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        })
        .await;
        let started = Instant::now();
        let result = sender(LOOPBACK_OK).send(webhook(&rx.url("/"), Duration::from_millis(500))).await;
        expect_failure(result, ErrorCode::Timeout);
        assert!(started.elapsed() < Duration::from_secs(2));
    })
    .await;
}

#[tokio::test]
async fn given_a_closed_port_when_sending_then_connect() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let result = send(&sender(LOOPBACK_OK), &format!("http://127.0.0.1:{port}/")).await;
        let failure = expect_failure(result, ErrorCode::Connect);
        assert!(failure.message.to_ascii_lowercase().contains("refused"), "{}", failure.message);
    })
    .await;
}

#[tokio::test]
async fn given_names_resolving_to_internal_addresses_when_sending_then_blocked_not_dns() {
    bounded(async {
        let resolver = StaticResolver::default()
            .with("internal.test", [ip("10.0.0.1")])
            .with("metadata.test", [ip("169.254.169.254")])
            .with("v6.test", [ip("fd00::1")]);
        let sender = sender_with(STRICT, resolver);
        let failure = expect_failure(send(&sender, "http://internal.test/").await, ErrorCode::Blocked);
        assert_eq!(
            failure.message,
            "internal.test resolves to 10.0.0.1, which is in a blocked address range: private (10.0.0.0/8)"
        );
        let failure =
            expect_failure(send(&sender, "https://metadata.test/latest/meta-data/").await, ErrorCode::Blocked);
        assert!(failure.message.contains("link-local (169.254.0.0/16)"), "{}", failure.message);
        assert!(!failure.message.contains("latest"), "the path is not part of the message");
        let failure = expect_failure(send(&sender, "https://v6.test/").await, ErrorCode::Blocked);
        assert!(failure.message.contains("unique-local"), "{}", failure.message);
    })
    .await;
}

#[tokio::test]
async fn given_a_name_resolving_to_loopback_when_loopback_is_disallowed_then_blocked() {
    bounded(async {
        let rx = replying("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let resolver = StaticResolver::default().with("evil.test", [ip("127.0.0.1")]);
        let url = format!("http://evil.test:{}/", rx.port());
        let failure = expect_failure(send(&sender_with(STRICT, resolver), &url).await, ErrorCode::Blocked);
        assert!(failure.message.contains("loopback"), "{}", failure.message);
        assert_eq!(rx.connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn given_a_name_resolving_to_loopback_when_loopback_is_allowed_then_it_reaches_the_receiver() {
    bounded(async {
        let mut rx = replying("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let resolver = StaticResolver::default().with("evil.test", [ip("127.0.0.1")]);
        let url = format!("http://evil.test:{}/hook", rx.port());
        let response = send(&sender_with(LOOPBACK_OK, resolver), &url).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body.as_deref(), Some("ok"));
        let request = rx.requests.recv().await.unwrap();
        assert!(request.head.to_ascii_lowercase().contains(&format!("\r\nhost: evil.test:{}\r\n", rx.port())));
    })
    .await;
}

#[tokio::test]
async fn given_a_name_with_one_blocked_address_among_allowed_ones_when_sending_then_refused() {
    bounded(async {
        let rx = replying("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let resolver = StaticResolver::default().with("mixed.test", [ip("127.0.0.1"), ip("169.254.169.254")]);
        let url = format!("http://mixed.test:{}/", rx.port());
        let failure = expect_failure(send(&sender_with(LOOPBACK_OK, resolver), &url).await, ErrorCode::Blocked);
        assert!(failure.message.contains("169.254.169.254"), "{}", failure.message);
        assert_eq!(rx.connections(), 0, "no address is tried when any is blocked");
    })
    .await;
}

#[tokio::test]
async fn given_ip_literal_loopback_urls_in_any_spelling_when_loopback_is_disallowed_then_blocked() {
    bounded(async {
        let rx = replying("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let port = rx.port();
        let sender = sender(STRICT);
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://0x7f000001:{port}/"),
            format!("http://0177.0.0.1:{port}/"),
            format!("http://127.1:{port}/"),
            format!("http://[::1]:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://app.localhost:{port}/"),
        ] {
            let failure = expect_failure(send(&sender, &url).await, ErrorCode::Blocked);
            assert!(failure.message.contains("loopback"), "{url}: {}", failure.message);
        }
        for url in ["http://169.254.169.254/", "http://10.0.0.1/", "http://0.0.0.0/", "http://[fe80::1]/"] {
            expect_failure(send(&sender, url).await, ErrorCode::Blocked);
        }
        assert_eq!(rx.connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn given_a_decimal_literal_url_when_loopback_is_allowed_then_it_reaches_the_receiver() {
    bounded(async {
        let rx = replying("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let response = send(&sender(LOOPBACK_OK), &format!("http://2130706433:{}/", rx.port())).await.unwrap();
        assert_eq!(response.status, 200);
    })
    .await;
}

#[tokio::test]
async fn given_an_unknown_host_when_sending_then_dns() {
    bounded(async {
        let failure = expect_failure(send(&sender(STRICT), "https://unknown.test/").await, ErrorCode::Dns);
        assert!(failure.message.contains("unknown.test"), "{}", failure.message);
    })
    .await;
}

#[tokio::test]
async fn given_a_name_with_no_addresses_when_sending_then_dns() {
    bounded(async {
        let resolver = StaticResolver::default().with("empty.test", []);
        expect_failure(send(&sender_with(STRICT, resolver), "https://empty.test/").await, ErrorCode::Dns);
    })
    .await;
}

#[tokio::test]
async fn given_a_reset_before_any_response_when_sending_then_io() {
    bounded(async {
        let rx = receiver(|mut stream, _| async move {
            if read_request(&mut stream).await.is_some() {
                let _ = stream.set_zero_linger();
                drop(stream); // RST
            }
        })
        .await;
        expect_failure(send(&sender(LOOPBACK_OK), &rx.url("/")).await, ErrorCode::Io);
    })
    .await;
}

#[tokio::test]
async fn given_a_close_before_any_response_when_sending_then_io() {
    bounded(async {
        let rx = receiver(|mut stream, _| async move {
            if read_request(&mut stream).await.is_some() {
                let _ = stream.shutdown().await;
            }
        })
        .await;
        expect_failure(send(&sender(LOOPBACK_OK), &rx.url("/")).await, ErrorCode::Io);
    })
    .await;
}

/// Documented choice: once the status line and headers arrived the endpoint has
/// answered; a connection broken mid-body yields that answer with the part of the
/// body captured so far, not an `Io` failure.
#[tokio::test]
async fn given_a_reset_mid_body_when_sending_then_the_status_and_partial_body_are_returned() {
    bounded(async {
        let rx = receiver(|mut stream, _| async move {
            if read_request(&mut stream).await.is_some() {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial").await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = stream.set_zero_linger();
                drop(stream); // RST
            }
        })
        .await;
        let response = send(&sender(LOOPBACK_OK), &rx.url("/")).await.unwrap();
        assert_eq!(response, EndpointResponse { status: 200, body: Some("partial".into()), retry_after: None });
    })
    .await;
}

#[tokio::test]
async fn given_a_close_mid_body_when_sending_then_the_status_and_partial_body_are_returned() {
    bounded(async {
        let rx = replying("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000\r\n\r\noops").await;
        let response = send(&sender(LOOPBACK_OK), &rx.url("/")).await.unwrap();
        assert_eq!(response, EndpointResponse { status: 500, body: Some("oops".into()), retry_after: None });
    })
    .await;
}

#[tokio::test]
async fn given_https_to_a_plain_tcp_server_sending_garbage_when_sending_then_tls() {
    bounded(async {
        let rx = receiver(|mut stream, _| async move {
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello).await;
            let _ = stream.write_all(b"this is not a TLS server\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;
        let resolver = StaticResolver::default().with("tls.test", [ip("127.0.0.1")]);
        let url = format!("https://tls.test:{}/", rx.port());
        let failure = expect_failure(send(&sender_with(LOOPBACK_OK, resolver), &url).await, ErrorCode::Tls);
        assert!(failure.message.starts_with("TLS handshake failed"), "{}", failure.message);
    })
    .await;
}

#[tokio::test]
async fn given_https_to_an_ip_literal_plain_tcp_server_when_sending_then_tls() {
    bounded(async {
        let rx = receiver(|mut stream, _| async move {
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello).await;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;
        let url = format!("https://127.0.0.1:{}/", rx.port());
        expect_failure(send(&sender(LOOPBACK_OK), &url).await, ErrorCode::Tls);
    })
    .await;
}

#[tokio::test]
async fn given_a_keep_alive_receiver_when_sending_twice_then_the_connection_is_reused() {
    bounded(async {
        let rx = receiver(|mut stream, seen| async move {
            while let Some(request) = read_request(&mut stream).await {
                let _ = seen.send(request);
                if stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.is_err() {
                    break;
                }
            }
        })
        .await;
        let sender = sender(LOOPBACK_OK);
        for _ in 0..3 {
            assert_eq!(send(&sender, &rx.url("/")).await.unwrap().status, 200);
        }
        assert_eq!(rx.connections(), 1);
    })
    .await;
}

#[tokio::test]
async fn given_urls_the_sender_refuses_to_call_when_sending_then_blocked() {
    bounded(async {
        let sender = sender(LOOPBACK_OK);
        for url in ["not a url", "ftp://127.0.0.1/", "http://user:pass@127.0.0.1:1/"] {
            expect_failure(send(&sender, url).await, ErrorCode::Blocked);
        }
    })
    .await;
}

#[tokio::test]
async fn given_a_lazy_sender_when_it_first_sends_then_it_delivers_like_an_eager_one_and_keeps_the_ssrf_guard() {
    bounded(async {
        // GIVEN a sender whose client is built on first use (the Lambda dispatcher's)
        let resolver: Arc<dyn HostResolver> = Arc::new(StaticResolver::default());
        let lazy = HttpSender::lazy(LOOPBACK_OK, Arc::clone(&resolver), "Skyhook/test");
        let mut rx = replying("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
        // WHEN it sends THEN the receiver gets the request with the user agent
        let response = send(&lazy, &rx.url("/lazy")).await.unwrap();
        assert_eq!(response.status, 200);
        let head = rx.requests.recv().await.unwrap().head.to_ascii_lowercase();
        assert!(head.contains("\r\nuser-agent: skyhook/test\r\n"), "{head}");
        // AND a lazy sender with the default policy still refuses loopback
        let guarded = HttpSender::lazy(AddressPolicy::default(), resolver, "Skyhook/test");
        expect_failure(send(&guarded, &rx.url("/lazy")).await, ErrorCode::Blocked);
    })
    .await;
}
