//! SSRF (SPEC §4): nobody gets Skyhook to call an internal address.
//!
//! 1. Endpoint creation through the API refuses every blocked literal, in
//!    every spelling a resolver accepts, with a 400 on field `url` naming the
//!    range.
//! 2. A host *name* is accepted at create time (DNS can change), and refused at
//!    send time: with a `StaticResolver` mapping names to blocked ranges, the
//!    dispatcher records responseStatus `blocked` and never connects — a local
//!    listener on the mapped address proves no connection arrives.
//! 3. A receiver redirecting to the metadata service is recorded as a 302
//!    failure and the redirect is not followed.

mod faults;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faults::*;
use serde_json::{Value, json};
use skyhook::sender::HttpSender;
use skyhook::service::ServiceConfig;
use skyhook::ssrf::{AddressPolicy, StaticResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Production settings: https only, loopback blocked.
fn production() -> ServiceConfig {
    ServiceConfig::default()
}

/// `(host as written in the URL, range name the error must contain)`.
const BLOCKED_LITERALS: &[(&str, &str)] = &[
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("[::1]", "loopback"),
    ("10.0.0.1", "private (10.0.0.0/8)"),
    ("10.255.255.255", "private (10.0.0.0/8)"),
    ("172.16.0.1", "private (172.16.0.0/12)"),
    ("172.31.255.254", "private (172.16.0.0/12)"),
    ("192.168.0.1", "private (192.168.0.0/16)"),
    ("192.168.255.254", "private (192.168.0.0/16)"),
    ("169.254.169.254", "link-local (169.254.0.0/16)"),
    ("100.64.0.1", "cgnat (100.64.0.0/10)"),
    ("100.127.255.254", "cgnat (100.64.0.0/10)"),
    ("[fc00::1]", "unique-local (fc00::/7)"),
    ("[fd12:3456:789a::1]", "unique-local (fc00::/7)"),
    ("[fe80::1]", "link-local (fe80::/10)"),
    ("[ff02::1]", "multicast"),
    ("[::ffff:127.0.0.1]", "ipv4-mapped loopback"),
    ("[::ffff:10.0.0.1]", "ipv4-mapped private"),
    ("[::ffff:169.254.169.254]", "ipv4-mapped link-local"),
    ("[64:ff9b::a9fe:a9fe]", "nat64 link-local"),
    ("[2002:7f00:1::]", "6to4 loopback"),
    ("2130706433", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("0x7f000001", "loopback"),
    ("0x7f.1", "loopback"),
    ("127.1", "loopback"),
    ("0x7F.0.0.1", "loopback"),
    ("017700000001", "loopback"),
    ("167772161", "private (10.0.0.0/8)"),
    ("0xa9fea9fe", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("255.255.255.255", "broadcast"),
    ("224.0.0.1", "multicast"),
    ("localhost", "loopback"),
    ("LOCALHOST", "loopback"),
    ("localhost.", "loopback"),
    ("foo.localhost", "loopback"),
    ("a.b.localhost", "loopback"),
];

#[tokio::test]
async fn given_every_blocked_literal_when_creating_an_endpoint_then_400_on_url_naming_the_range() {
    let env = Env::new(production());
    let tenant = env.tenant("ssrf").await;
    let mut refused = 0;
    for (host, range) in BLOCKED_LITERALS {
        for url in [format!("https://{host}/hook"), format!("https://{host}:8443/hook?x=1")] {
            let (status, body, headers) =
                env.call("POST", "/v1/endpoints", Some(&tenant.key), Some(json!({ "url": url }))).await;
            assert_eq!(status, 400, "{url} → {status} {body}");
            assert_eq!(headers["content-type"], "application/problem+json");
            let errors = body["errors"].as_array().unwrap();
            assert_eq!(errors.len(), 1, "{url}: {body}");
            assert_eq!(errors[0]["field"], "url", "{url}: {body}");
            let message = errors[0]["message"].as_str().unwrap();
            assert!(message.contains("blocked address range") && message.contains(range), "{url}: {message}");
            refused += 1;
        }
    }
    // AND nothing was created
    let list = env.ok("GET", "/v1/endpoints", Some(&tenant.key), None).await;
    assert_eq!(list["data"], json!([]));
    println!("ssrf: {refused} blocked endpoint URLs refused at create time");
}

#[tokio::test]
async fn given_loopback_allowed_for_local_mode_then_every_other_blocked_range_stays_blocked() {
    let env = Env::new(local_config());
    let tenant = env.tenant("ssrf-local").await;
    for (host, range) in BLOCKED_LITERALS {
        let url = format!("http://{host}/hook");
        let (status, body, _) = env.call("POST", "/v1/endpoints", Some(&tenant.key), Some(json!({ "url": url }))).await;
        if *range == "loopback" || range.starts_with("ipv4-mapped loopback") {
            assert_eq!(status, 201, "loopback is allowed in local mode: {url} → {body}");
        } else {
            assert_eq!(status, 400, "{url} → {body}");
            assert_eq!(body["errors"][0]["field"], "url");
        }
    }
}

#[tokio::test]
async fn given_urls_updated_to_blocked_literals_then_put_and_patch_refuse_them_too() {
    let env = Env::new(production());
    let tenant = env.tenant("ssrf-update").await;
    let ep = env.endpoint(&tenant, json!({ "url": "https://hooks.example.com/ok" })).await;
    let id = ep["id"].as_str().unwrap();
    for (host, _) in BLOCKED_LITERALS.iter().take(12) {
        let url = format!("https://{host}/hook");
        for method in ["PATCH", "PUT"] {
            let (status, body, _) =
                env.call(method, &format!("/v1/endpoints/{id}"), Some(&tenant.key), Some(json!({ "url": url }))).await;
            assert_eq!(status, 400, "{method} {url} → {body}");
            assert_eq!(body["errors"][0]["field"], "url");
        }
    }
    let current = env.ok("GET", &format!("/v1/endpoints/{id}"), Some(&tenant.key), None).await;
    assert_eq!(current["url"], "https://hooks.example.com/ok");
}

// ---------------------------------------------------------------------------
// Send time: names resolving to blocked addresses
// ---------------------------------------------------------------------------

/// A listener on 127.0.0.1 that counts connections (and answers 200 if any arrive).
async fn tripwire() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        }
    });
    (port, hits)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Names mapped to blocked addresses (the first ones to the tripwire's 127.0.0.1).
fn rebinding_table() -> Vec<(&'static str, Vec<IpAddr>)> {
    vec![
        ("loopback.attacker.test", vec![ip("127.0.0.1")]),
        ("mapped.attacker.test", vec![ip("::ffff:127.0.0.1")]),
        ("v6loop.attacker.test", vec![ip("::1")]),
        ("mixed.attacker.test", vec![ip("93.184.216.34"), ip("127.0.0.1")]),
        ("metadata.attacker.test", vec![ip("169.254.169.254")]),
        ("private10.attacker.test", vec![ip("10.0.0.1")]),
        ("private172.attacker.test", vec![ip("172.16.5.4")]),
        ("private192.attacker.test", vec![ip("192.168.1.1")]),
        ("cgnat.attacker.test", vec![ip("100.64.0.1")]),
        ("ula.attacker.test", vec![ip("fd00::1")]),
        ("linklocal6.attacker.test", vec![ip("fe80::1")]),
        ("multicast6.attacker.test", vec![ip("ff02::1")]),
        ("mapped10.attacker.test", vec![ip("::ffff:10.0.0.1")]),
        ("unspecified.attacker.test", vec![ip("0.0.0.0")]),
    ]
}

#[tokio::test]
async fn given_names_resolving_to_blocked_ranges_when_dispatching_then_blocked_is_recorded_and_nothing_connects() {
    // GIVEN production settings (loopback blocked), a resolver mapping names to
    // internal addresses, and a tripwire listening on 127.0.0.1
    let (port, hits) = tripwire().await;
    let table = rebinding_table();
    let resolver = table.iter().fold(StaticResolver::default(), |r, (host, ips)| r.with(host, ips.clone()));
    let sender = Arc::new(HttpSender::new(AddressPolicy::default(), Arc::new(resolver), "Skyhook/ssrf"));
    let env = Env::new(production());
    let tenant = env.tenant("rebinding").await;
    // (endpoints accept names at create time: DNS is checked when sending)
    for (host, _) in &table {
        env.endpoint(&tenant, json!({ "url": format!("https://{host}:{port}/hook") })).await;
    }

    // WHEN an event is fanned out to all of them and dispatched
    let (status, _, _) = env.publish(&tenant, json!({ "order": 1 })).await;
    assert_eq!(status, 202);
    env.service.sweep_fanout(10).await.unwrap();
    let outcomes = env.dispatch_visible(&env.dispatcher(sender)).await;
    assert_eq!(outcomes.len(), table.len());

    // THEN every attempt is recorded as blocked, naming the range, and the tripwire saw nothing
    let deliveries = env.deliveries(&tenant, "").await;
    assert_eq!(deliveries.len(), table.len());
    for d in &deliveries {
        let detail = env.delivery(&tenant, d["id"].as_str().unwrap()).await;
        assert_eq!(detail["responseStatus"], "blocked", "{detail}");
        let attempt = &detail["attempts"][0];
        assert_eq!(attempt["responseStatus"], "blocked");
        assert!(attempt["error"].as_str().unwrap().contains("blocked address range"), "{attempt}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a blocked address was connected to");
    println!("ssrf: {} names resolving to blocked ranges refused at send time, 0 connections", table.len());
}

#[tokio::test]
async fn given_a_blocked_literal_already_stored_when_dispatching_then_the_sender_still_refuses_it() {
    // GIVEN an endpoint created while loopback was allowed, now sent by a production sender
    let (port, hits) = tripwire().await;
    let env = Env::new(local_config());
    let tenant = env.tenant("stored-literal").await;
    env.endpoint(&tenant, json!({ "url": format!("http://127.0.0.1:{port}/hook") })).await;
    env.endpoint(&tenant, json!({ "url": format!("http://0x7f.1:{port}/hook") })).await;
    env.endpoint(&tenant, json!({ "url": format!("http://localhost:{port}/hook") })).await;
    let sender =
        Arc::new(HttpSender::new(AddressPolicy::default(), Arc::new(StaticResolver::default()), "Skyhook/ssrf"));

    env.publish(&tenant, json!({ "order": 2 })).await;
    env.service.sweep_fanout(10).await.unwrap();
    env.dispatch_visible(&env.dispatcher(sender)).await;

    for d in env.deliveries(&tenant, "").await {
        assert_eq!(d["responseStatus"], "blocked", "{d}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------

/// Answers every request with a 302 to `location`; counts requests.
async fn redirector(location: String) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let location = location.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, hits)
}

#[tokio::test]
async fn given_a_receiver_redirecting_to_the_metadata_service_then_a_302_failure_is_recorded_and_not_followed() {
    // GIVEN a receiver on 127.0.0.1 (loopback allowed, local mode) redirecting to
    // 169.254.169.254, and a second one redirecting to a local tripwire
    let (trip_port, trip_hits) = tripwire().await;
    let (metadata_port, metadata_hits) = redirector("http://169.254.169.254/latest/meta-data/".into()).await;
    let (local_port, local_hits) = redirector(format!("http://127.0.0.1:{trip_port}/stolen")).await;
    let env = Env::new(local_config());
    let tenant = env.tenant("redirect").await;
    env.endpoint(&tenant, json!({ "url": format!("http://127.0.0.1:{metadata_port}/hook") })).await;
    env.endpoint(&tenant, json!({ "url": format!("http://127.0.0.1:{local_port}/hook") })).await;
    let sender = Arc::new(HttpSender::new(
        AddressPolicy { allow_loopback: true },
        Arc::new(StaticResolver::default()),
        "Skyhook/ssrf",
    ));

    // WHEN an event is dispatched to both
    env.publish(&tenant, json!({ "order": 3 })).await;
    env.service.sweep_fanout(10).await.unwrap();
    env.dispatch_visible(&env.dispatcher(sender)).await;

    // THEN each records a 302 failure (retrying), each receiver saw one request,
    // and the redirect target never saw a connection
    let deliveries = env.deliveries(&tenant, "").await;
    assert_eq!(deliveries.len(), 2);
    for d in &deliveries {
        assert_eq!(d["responseStatus"], 302, "{d}");
        assert_eq!(d["status"], "retrying");
        assert!(d["errorMessage"].as_str().unwrap().contains("302"));
    }
    assert_eq!(metadata_hits.load(Ordering::SeqCst), 1);
    assert_eq!(local_hits.load(Ordering::SeqCst), 1);
    assert_eq!(trip_hits.load(Ordering::SeqCst), 0, "the redirect was followed");
}

#[tokio::test]
async fn given_endpoint_urls_with_credentials_or_other_schemes_then_they_are_refused() {
    let env = Env::new(production());
    let tenant = env.tenant("schemes").await;
    for url in [
        "http://hooks.example.com/plain-http-in-production",
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "https://user:pass@hooks.example.com/x",
        "https://",
        "https://:443/empty-host",
        "//hooks.example.com/relative",
        "not a url",
    ] {
        let (status, body, _): (u16, Value, _) =
            env.call("POST", "/v1/endpoints", Some(&tenant.key), Some(json!({ "url": url }))).await;
        assert_eq!(status, 400, "{url} → {body}");
        assert_eq!(body["errors"][0]["field"], "url", "{url} → {body}");
    }
}
