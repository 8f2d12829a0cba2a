//! Isolation (SPEC §3 Authentication, §5 Logs): secrets stay secret and
//! tenants stay apart.
//!
//! (a) Everything logged through `tracing` during a full flow (create app,
//!     key, endpoint with secret and custom header, publish, OAuth token,
//!     dispatch to a real local receiver, a failing attempt, a store outage,
//!     rotate) is captured at TRACE by a minimal `tracing::Subscriber`
//!     (tracing-subscriber is not a dev-dependency) and searched for every
//!     secret and the payload.
//! (b) Once created, no response carries a key, a signing secret or a key hash.
//! (c) Property: across random interleavings of create/get/list/update calls
//!     by two applications, B never reads, changes or lists any of A's ids
//!     (404 on A's ids, A's cursors refused).

mod faults;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use faults::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use skyhook::ports::StoreError;
use skyhook::sender::HttpSender;
use skyhook::ssrf::{AddressPolicy, SystemResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

// ---------------------------------------------------------------------------
// Log capture
// ---------------------------------------------------------------------------

/// Records every span and event, with all its fields, as text lines.
struct Capture {
    lines: Arc<Mutex<String>>,
    next_id: AtomicU64,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {} {}", span.metadata().target(), span.metadata().name());
        span.record(&mut Fields(&mut line));
        line.push('\n');
        self.lines.lock().unwrap().push_str(&line);
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut line = String::from("record");
        values.record(&mut Fields(&mut line));
        line.push('\n');
        self.lines.lock().unwrap().push_str(&line);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = format!("{} {}", event.metadata().level(), event.metadata().target());
        event.record(&mut Fields(&mut line));
        line.push('\n');
        self.lines.lock().unwrap().push_str(&line);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The process-wide capture (every thread, every runtime of this test binary).
fn logs() -> &'static Arc<Mutex<String>> {
    static LOGS: OnceLock<Arc<Mutex<String>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let lines = Arc::new(Mutex::new(String::new()));
        let capture = Capture { lines: lines.clone(), next_id: AtomicU64::new(0) };
        tracing::subscriber::set_global_default(capture).expect("no other subscriber in this test binary");
        lines
    })
}

/// A receiver on 127.0.0.1 answering `status` to every request; keeps the bodies.
async fn receiver(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    loop {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        let text = String::from_utf8_lossy(&buf);
                        if let Some(head_end) = text.find("\r\n\r\n") {
                            let length = text[..head_end]
                                .to_ascii_lowercase()
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                                .unwrap_or(0usize);
                            if buf.len() >= head_end + 4 + length {
                                return;
                            }
                        }
                    }
                })
                .await;
                record.lock().unwrap().push(String::from_utf8_lossy(&buf).into_owned());
                let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_full_flow_when_logs_are_captured_then_no_secret_or_payload_appears_in_them() {
    let logs = logs();
    // GIVEN the whole service with a real HTTP sender and local receivers
    let env = Env::new(local_config());
    let material_admin = env.admin.clone();
    let (ok_url, ok_seen) = receiver(200).await;
    let (fail_url, _) = receiver(500).await;
    let sender =
        Arc::new(HttpSender::new(AddressPolicy { allow_loopback: true }, Arc::new(SystemResolver), "Skyhook/t"));
    let dispatcher = env.dispatcher(sender);

    // WHEN a tenant does everything once
    let tenant = env.tenant("logs").await;
    let secret = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    let header_secret = "Bearer receiver-credential-4f1c2a9e77";
    let ep = env
        .endpoint(&tenant, json!({ "url": ok_url, "secret": secret, "headers": { "authorization": header_secret } }))
        .await;
    let ep_id = ep["id"].as_str().unwrap().to_string();
    env.endpoint(&tenant, json!({ "url": fail_url })).await;
    let marker = "PAYLOAD-MARKER-9d2b7c41-card-4111111111111111";
    let (status, published, _) = env.publish(&tenant, json!({ "card": marker, "nested": { "m": marker } })).await;
    assert_eq!(status, 202);
    let token = env
        .raw(
            "POST",
            "/v1/oauth/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("grant_type=client_credentials&client_id={}&client_secret={}", tenant.key_id, tenant.key)
                .into_bytes(),
        )
        .await;
    assert_eq!(token.0, 200, "{}", token.1);
    let access_token = token.1["access_token"].as_str().unwrap().to_string();
    env.ok("GET", "/v1/events", Some(&access_token), None).await;
    env.service.sweep_fanout(10).await.unwrap();
    env.dispatch_visible(&dispatcher).await;
    // an outage, an unknown credential, a bad payload
    env.store.plan.fail("list_events", Nth(1), StoreError::Unavailable("injected outage".into()));
    let (status, _, _) = env.call("GET", "/v1/events", Some(&tenant.key), None).await;
    assert_eq!(status, 503);
    let (status, _, _) = env.call("GET", "/v1/events", Some(&format!("{}x", tenant.key)), None).await;
    assert_eq!(status, 401);
    let (status, _, _) = env
        .call("POST", "/v1/events", Some(&tenant.key), Some(json!({ "eventType": "nope", "payload": marker })))
        .await;
    assert_eq!(status, 400);
    let rotated = env.ok("POST", &format!("/v1/endpoints/{ep_id}/rotate-secret"), Some(&tenant.key), None).await;
    let rotated_secret = rotated["secret"].as_str().unwrap().to_string();
    env.publish(&tenant, json!({ "card": marker })).await;
    env.service.sweep_fanout(10).await.unwrap();
    env.dispatch_visible(&dispatcher).await;

    // THEN the flow really happened and was logged...
    assert!(ok_seen.lock().unwrap().iter().any(|r| r.contains(marker)), "the receiver got the payload");
    let captured = logs.lock().unwrap().clone();
    if std::env::var_os("SKYHOOK_DUMP_LOGS").is_some() {
        println!("{captured}");
    }
    for expected in ["delivery attempt", "event accepted", "store unavailable", published["id"].as_str().unwrap()] {
        assert!(captured.contains(expected), "capture works: {expected:?} missing from\n{captured}");
    }
    // ...and none of the secrets or the payload is in the logs
    let secrets = [
        ("API key", tenant.key.clone()),
        ("API key hash", sha256_hex(&tenant.key)),
        ("admin token", material_admin),
        ("signing secret", secret.clone()),
        ("signing key (base64)", secret.trim_start_matches("whsec_").to_string()),
        ("rotated signing secret", rotated_secret.clone()),
        ("rotated signing key", rotated_secret.trim_start_matches("whsec_").to_string()),
        ("custom header value", header_secret.to_string()),
        ("OAuth access token", access_token.clone()),
        ("payload", marker.to_string()),
    ];
    for (what, value) in &secrets {
        assert!(!captured.contains(value.as_str()), "the {what} appears in the logs");
    }
    println!(
        "log capture: {} lines, {} bytes searched for {} secrets: none found",
        captured.lines().count(),
        captured.len(),
        secrets.len()
    );
}

// ---------------------------------------------------------------------------
// (b) Responses after creation
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_created_keys_and_endpoints_then_no_later_response_carries_a_key_secret_or_hash() {
    let env = Env::new(local_config());
    let tenant = env.tenant("responses").await;
    let admin = env.admin.clone();
    let secret = format!("whsec_{}", STANDARD.encode([9u8; 32]));
    let ep = env.endpoint(&tenant, json!({ "url": "https://hooks.example.com/x", "secret": secret })).await;
    assert_eq!(ep["secret"], secret, "shown once, at creation");
    let ep_id = ep["id"].as_str().unwrap().to_string();
    let generated = env.endpoint(&tenant, json!({ "url": "https://hooks.example.com/y" })).await;
    let generated_secret = generated["secret"].as_str().unwrap().to_string();
    let second_key = env
        .ok(
            "POST",
            &format!("/v1/applications/{}/api-keys", tenant.app_id),
            Some(&admin),
            Some(json!({ "name": "second", "scopes": ["events:read"] })),
        )
        .await;
    let second_key = second_key["key"].as_str().unwrap().to_string();
    let rotated = env.ok("POST", &format!("/v1/endpoints/{ep_id}/rotate-secret"), Some(&tenant.key), None).await;
    let rotated_secret = rotated["secret"].as_str().unwrap().to_string();
    env.publish(&tenant, json!({ "n": 1 })).await;
    env.service.sweep_fanout(10).await.unwrap();
    env.dispatch_visible(&env.dispatcher(Arc::new(RecordingSender::default()))).await;
    let delivery = env.deliveries(&tenant, "").await[0]["id"].as_str().unwrap().to_string();

    let forbidden = [
        tenant.key.clone(),
        sha256_hex(&tenant.key),
        second_key.clone(),
        sha256_hex(&second_key),
        secret.clone(),
        secret.trim_start_matches("whsec_").to_string(),
        generated_secret.clone(),
        rotated_secret.clone(),
        admin.clone(),
    ];
    let app = tenant.app_id.clone();
    let reads: Vec<(&str, String, Option<Value>, String)> = vec![
        ("GET", format!("/v1/applications/{app}/api-keys"), None, admin.clone()),
        ("GET", format!("/v1/applications/{app}"), None, admin.clone()),
        ("GET", "/v1/applications".into(), None, admin.clone()),
        ("GET", "/v1/endpoints".into(), None, tenant.key.clone()),
        ("GET", format!("/v1/endpoints/{ep_id}"), None, tenant.key.clone()),
        ("PATCH", format!("/v1/endpoints/{ep_id}"), Some(json!({ "description": "changed" })), tenant.key.clone()),
        (
            "PUT",
            format!("/v1/endpoints/{ep_id}"),
            Some(json!({ "url": "https://hooks.example.com/z" })),
            tenant.key.clone(),
        ),
        ("GET", format!("/v1/endpoints/{ep_id}/stats"), None, tenant.key.clone()),
        ("GET", format!("/v1/endpoints/{ep_id}/deliveries"), None, tenant.key.clone()),
        ("POST", format!("/v1/endpoints/{ep_id}/test"), None, tenant.key.clone()),
        ("GET", "/v1/events".into(), None, tenant.key.clone()),
        ("GET", "/v1/deliveries".into(), None, tenant.key.clone()),
        ("GET", format!("/v1/deliveries/{delivery}"), None, tenant.key.clone()),
        ("GET", "/v1/event-types".into(), None, tenant.key.clone()),
        ("GET", "/v1/health".into(), None, tenant.key.clone()),
    ];
    for (method, path, body, token) in reads {
        let (status, value, _) = env.call(method, &path, Some(&token), body).await;
        assert!((200..300).contains(&status), "{method} {path} → {status} {value}");
        let text = value.to_string();
        for (i, f) in forbidden.iter().enumerate() {
            assert!(!text.contains(f.as_str()), "{method} {path} leaks forbidden value #{i}: {text}");
        }
        for field in ["\"key\"", "\"keyHash\"", "\"secret\"", "\"secretEncrypted\"", "\"previousSecretEncrypted\""] {
            assert!(!text.contains(field), "{method} {path} has a {field} field: {text}");
        }
    }
    let keys = env.ok("GET", &format!("/v1/applications/{app}/api-keys"), Some(&admin), None).await;
    for key in keys["data"].as_array().unwrap() {
        assert!(key["prefix"].as_str().unwrap().len() <= 8);
        assert_eq!(key["last4"].as_str().unwrap().len(), 4);
    }
    let endpoint = env.ok("GET", &format!("/v1/endpoints/{ep_id}"), Some(&tenant.key), None).await;
    assert_eq!(endpoint["secretLast4"].as_str().unwrap(), &rotated_secret[rotated_secret.len() - 4..]);
}

// ---------------------------------------------------------------------------
// (c) Tenant isolation, as a property
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    A,
    B,
}

#[derive(Debug, Clone)]
enum Op {
    CreateEndpoint(Who),
    CreateEventType(Who),
    Publish(Who),
    Deliver,
    /// Reads or changes one of the other tenant's resources (picked by index).
    TouchOther(Who, usize, u8),
    /// Reads one of its own resources (picked by index): must work.
    GetOwn(Who, usize),
    List(Who, u8),
    /// Uses a cursor from the other tenant's list.
    ForeignCursor(Who),
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![Just(Who::A), Just(Who::B)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => who().prop_map(Op::CreateEndpoint),
        1 => who().prop_map(Op::CreateEventType),
        3 => who().prop_map(Op::Publish),
        1 => Just(Op::Deliver),
        5 => (who(), any::<usize>(), any::<u8>()).prop_map(|(w, i, k)| Op::TouchOther(w, i, k)),
        2 => (who(), any::<usize>()).prop_map(|(w, i)| Op::GetOwn(w, i)),
        3 => (who(), any::<u8>()).prop_map(|(w, k)| Op::List(w, k)),
        1 => who().prop_map(Op::ForeignCursor),
    ]
}

#[derive(Default)]
struct Owned {
    endpoints: Vec<String>,
    events: Vec<String>,
    event_types: Vec<String>,
    deliveries: Vec<String>,
}

impl Owned {
    fn all(&self) -> BTreeSet<String> {
        self.endpoints.iter().chain(&self.events).chain(&self.deliveries).cloned().collect()
    }
}

const LISTS: [&str; 5] =
    ["/v1/endpoints", "/v1/events", "/v1/deliveries", "/v1/event-types", "/v1/endpoints?isActive=true"];

async fn run_isolation(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let env = Env::new(local_config());
    let tenants = [env.tenant("tenant-a").await, env.tenant("tenant-b").await];
    let mut owned = [Owned::default(), Owned::default()];
    for (i, o) in owned.iter_mut().enumerate() {
        o.event_types.push("order.created".into());
        // Every tenant starts with one endpoint so the other always has a target.
        let ep = env.endpoint(&tenants[i], json!({ "url": format!("https://hooks.example.com/{i}") })).await;
        o.endpoints.push(ep["id"].as_str().unwrap().to_string());
    }
    let index = |w: Who| if w == Who::A { 0 } else { 1 };
    let mut counter = 0;
    for op in ops {
        counter += 1;
        match op {
            Op::CreateEndpoint(w) => {
                let i = index(w);
                let ep = env
                    .endpoint(&tenants[i], json!({ "url": format!("https://hooks.example.com/{i}/{counter}") }))
                    .await;
                owned[i].endpoints.push(ep["id"].as_str().unwrap().to_string());
            }
            Op::CreateEventType(w) => {
                let i = index(w);
                let name = format!("t{i}.n{counter}");
                env.ok("POST", "/v1/event-types", Some(&tenants[i].key), Some(json!({ "name": name }))).await;
                owned[i].event_types.push(name);
            }
            Op::Publish(w) => {
                let i = index(w);
                let (status, body, _) = env.publish(&tenants[i], json!({ "n": counter })).await;
                prop_assert_eq!(status, 202);
                owned[i].events.push(body["id"].as_str().unwrap().to_string());
            }
            Op::Deliver => {
                env.service.sweep_fanout(100).await.unwrap();
                env.dispatch_visible(&env.dispatcher(Arc::new(RecordingSender::default()))).await;
                for i in 0..2 {
                    owned[i].deliveries = env
                        .deliveries(&tenants[i], "")
                        .await
                        .iter()
                        .map(|d| d["id"].as_str().unwrap().to_string())
                        .collect();
                }
            }
            Op::TouchOther(w, pick, kind) => {
                let (me, other) = (index(w), 1 - index(w));
                let theirs = &owned[other];
                let ep = &theirs.endpoints[pick % theirs.endpoints.len()];
                let requests: Vec<(&str, String, Option<Value>)> = match kind % 10 {
                    0 => vec![("GET", format!("/v1/endpoints/{ep}"), None)],
                    1 => vec![("PATCH", format!("/v1/endpoints/{ep}"), Some(json!({ "description": "pwned" })))],
                    2 => vec![("DELETE", format!("/v1/endpoints/{ep}"), None)],
                    3 => vec![("POST", format!("/v1/endpoints/{ep}/rotate-secret"), None)],
                    4 => vec![
                        ("GET", format!("/v1/endpoints/{ep}/stats"), None),
                        ("POST", format!("/v1/endpoints/{ep}/test"), None),
                    ],
                    5 => vec![
                        ("GET", format!("/v1/endpoints/{ep}/deliveries"), None),
                        ("GET", format!("/v1/deliveries?endpointId={ep}"), None),
                    ],
                    6 if !theirs.events.is_empty() => {
                        let ev = &theirs.events[pick % theirs.events.len()];
                        vec![("GET", format!("/v1/events/{ev}"), None)]
                    }
                    7 if !theirs.deliveries.is_empty() => {
                        let d = &theirs.deliveries[pick % theirs.deliveries.len()];
                        vec![
                            ("GET", format!("/v1/deliveries/{d}"), None),
                            ("POST", format!("/v1/deliveries/{d}/retry"), None),
                            ("DELETE", format!("/v1/deliveries/{d}"), None),
                        ]
                    }
                    8 => {
                        let app = &tenants[other].app_id;
                        vec![
                            ("GET", format!("/v1/applications/{app}"), None),
                            ("GET", format!("/v1/applications/{app}/api-keys"), None),
                        ]
                    }
                    _ => vec![(
                        "PUT",
                        format!("/v1/endpoints/{ep}"),
                        Some(json!({ "url": "https://evil.example.com/" })),
                    )],
                };
                for (method, path, body) in requests {
                    let (status, value, _) = env.call(method, &path, Some(&tenants[me].key), body).await;
                    let refused = if path.starts_with("/v1/applications") { status == 403 } else { status == 404 };
                    prop_assert!(refused, "{:?} {} {} → {} {}", w, method, path, status, value);
                }
            }
            Op::GetOwn(w, pick) => {
                let i = index(w);
                let mine = &owned[i];
                let ep = &mine.endpoints[pick % mine.endpoints.len()];
                let (status, value, _) =
                    env.call("GET", &format!("/v1/endpoints/{ep}"), Some(&tenants[i].key), None).await;
                prop_assert_eq!(status, 200, "{}", value);
                if !mine.events.is_empty() {
                    let ev = &mine.events[pick % mine.events.len()];
                    let (status, _, _) =
                        env.call("GET", &format!("/v1/events/{ev}"), Some(&tenants[i].key), None).await;
                    prop_assert_eq!(status, 200);
                }
            }
            Op::List(w, kind) => {
                let (me, other) = (index(w), 1 - index(w));
                let path = LISTS[kind as usize % LISTS.len()];
                let page = env.ok("GET", path, Some(&tenants[me].key), None).await;
                let text = page.to_string();
                for id in owned[other].all() {
                    prop_assert!(!text.contains(&id), "{:?} listed {} of the other tenant via {}", w, id, path);
                }
                for name in &owned[other].event_types[1..] {
                    prop_assert!(!text.contains(name.as_str()), "{:?} listed event type {}", w, name);
                }
            }
            Op::ForeignCursor(w) => {
                let (me, other) = (index(w), 1 - index(w));
                let theirs = env.ok("GET", "/v1/endpoints?limit=1", Some(&tenants[other].key), None).await;
                if let Some(cursor) = theirs["nextCursor"].as_str() {
                    let (status, value, _) =
                        env.call("GET", &format!("/v1/endpoints?cursor={cursor}"), Some(&tenants[me].key), None).await;
                    prop_assert_eq!(status, 400, "{}", value);
                    prop_assert_eq!(&value["errors"][0]["field"], "cursor");
                }
            }
        }
    }
    // Nothing of B's was changed by A's attempts and vice versa.
    for i in 0..2 {
        for ep in &owned[i].endpoints {
            let got = env.ok("GET", &format!("/v1/endpoints/{ep}"), Some(&tenants[i].key), None).await;
            prop_assert_ne!(&got["description"], "pwned");
            prop_assert!(!got["url"].as_str().unwrap().contains("evil"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn given_random_interleavings_of_two_tenants_then_neither_ever_reaches_the_others_ids(
        ops in proptest::collection::vec(op(), 1..24)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run_isolation(ops))?;
    }
}
