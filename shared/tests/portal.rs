//! Customer-portal sessions (`POST /v1/portal/sessions`) through the real
//! router: what a portal token may do (its endpoints: view, stats,
//! deliveries, retry, test, change url/description/isActive), what it may not
//! (everything else: 403/404), expiry on the injected clock, and revocation
//! with the API key that created it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderName, HeaderValue, Method};
use serde_json::{Value, json};
use skyhook::adapters::local_secrets::StaticSecrets;
use skyhook::adapters::sqlite::{SqliteQueue, SqliteQueueConfig, SqliteStore};
use skyhook::api::{ApiRequest, ROUTES, Resource, RouteOp, handle};
use skyhook::ports::{Clock, EndpointResponse, ManualClock, OutgoingWebhook, Queue, SendFailure, WebhookSender};
use skyhook::service::{Dispatcher, MessageOutcome, ServiceConfig, Skyhook};
use skyhook::ssrf::AddressPolicy;

// ------------------------------------------------------------------ harness

/// Every endpoint answers 500, so deliveries with `maxAttempts: 1` fail at once.
struct FailingSender;

#[async_trait]
impl WebhookSender for FailingSender {
    async fn send(&self, _request: OutgoingWebhook) -> Result<EndpointResponse, SendFailure> {
        Ok(EndpointResponse { status: 500, body: Some("boom".into()), retry_after: None })
    }
}

struct App {
    service: Arc<Skyhook>,
    clock: Arc<ManualClock>,
    queue: Arc<SqliteQueue>,
    dispatcher: Dispatcher,
    admin: String,
    db_path: PathBuf,
}

impl Drop for App {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.db_path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

struct Tenant {
    app_id: String,
    key: String,
    key_id: String,
}

type Reply = (u16, Value);

impl App {
    fn new() -> App {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let db_path = std::env::temp_dir().join(format!(
            "skyhook-portal-test-{}-{}.sqlite",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let start = chrono::DateTime::parse_from_rfc3339("2026-01-15T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let clock = Arc::new(ManualClock::new(start));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let store = Arc::new(SqliteStore::open(&db_path, Arc::clone(&dyn_clock)).unwrap());
        let queue = Arc::new(
            SqliteQueue::open(&db_path, "deliveries", SqliteQueueConfig::default(), Arc::clone(&dyn_clock)).unwrap(),
        );
        let material = StaticSecrets::random().0;
        let admin = material.admin_token.clone();
        let config = ServiceConfig {
            require_https: false,
            address_policy: AddressPolicy { allow_loopback: true },
            ..ServiceConfig::default()
        };
        let service = Arc::new(Skyhook::new(store, queue.clone(), dyn_clock, material, config));
        let dispatcher = Dispatcher::new(Arc::clone(&service), Arc::new(FailingSender));
        App { service, clock, queue, dispatcher, admin, db_path }
    }

    async fn call(&self, method: &str, path: &str, credential: &str, body: Option<Value>) -> Reply {
        let mut request = ApiRequest::new(Method::from_bytes(method.as_bytes()).unwrap(), path);
        request.headers.insert(
            HeaderName::from_static("authorization"),
            HeaderValue::from_str(&format!("Bearer {credential}")).unwrap(),
        );
        if let Some(body) = body {
            request = request.json(serde_json::to_vec(&body).unwrap());
        }
        let response = handle(&self.service, request).await;
        let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        (response.status.as_u16(), value)
    }

    async fn expect(&self, status: u16, method: &str, path: &str, credential: &str, body: Option<Value>) -> Value {
        let (got, value) = self.call(method, path, credential, body.clone()).await;
        assert_eq!(got, status, "{method} {path} {body:?} → {got} {value}");
        value
    }

    async fn tenant(&self, name: &str) -> Tenant {
        let app = self.expect(201, "POST", "/v1/applications", &self.admin, Some(json!({ "name": name }))).await;
        let app_id = app["id"].as_str().unwrap().to_string();
        let key = self
            .expect(
                201,
                "POST",
                &format!("/v1/applications/{app_id}/api-keys"),
                &self.admin,
                Some(json!({ "name": name })),
            )
            .await;
        Tenant { app_id, key: key["key"].as_str().unwrap().into(), key_id: key["id"].as_str().unwrap().into() }
    }

    async fn key_with_scopes(&self, tenant: &Tenant, scopes: &[&str]) -> (String, String) {
        let key = self
            .expect(
                201,
                "POST",
                &format!("/v1/applications/{}/api-keys", tenant.app_id),
                &self.admin,
                Some(json!({ "name": "scoped", "scopes": scopes })),
            )
            .await;
        (key["id"].as_str().unwrap().into(), key["key"].as_str().unwrap().into())
    }

    async fn endpoint(&self, tenant: &Tenant, path: &str) -> String {
        let created = self
            .expect(
                201,
                "POST",
                "/v1/endpoints",
                &tenant.key,
                Some(json!({ "url": format!("https://example.com/{path}"), "maxAttempts": 1 })),
            )
            .await;
        created["id"].as_str().unwrap().to_string()
    }

    async fn session(&self, credential: &str, endpoint_ids: &[&str]) -> Value {
        self.expect(201, "POST", "/v1/portal/sessions", credential, Some(json!({ "endpointIds": endpoint_ids }))).await
    }

    /// Fan-out, then one dispatcher pass (every attempt fails: `maxAttempts: 1` → failed).
    async fn deliver_all(&self) {
        while self.service.sweep_fanout(100).await.unwrap() > 0 {}
        for _ in 0..100 {
            let messages = self.queue.receive(10, Duration::ZERO).await.unwrap();
            if messages.is_empty() {
                return;
            }
            for message in &messages {
                if self.dispatcher.handle(message).await == MessageOutcome::Done {
                    self.queue.delete(&message.receipt_handle).await.unwrap();
                }
            }
        }
        panic!("the queue never drained");
    }

    /// Every item of a list, following cursors.
    async fn list_all(&self, path: &str, credential: &str, limit: usize) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        let sep = if path.contains('?') { '&' } else { '?' };
        for _ in 0..100 {
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
                None => format!("{path}{sep}limit={limit}"),
            };
            let page = self.expect(200, "GET", &url, credential, None).await;
            ids.extend(page["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()));
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return ids,
            }
        }
        panic!("{path} never ended");
    }
}

fn token(session: &Value) -> String {
    session["token"].as_str().unwrap().to_string()
}

/// A tenant with endpoints A, B, C, an event delivered (and failed) to each,
/// and the delivery ids per endpoint.
struct World {
    app: App,
    tenant: Tenant,
    a: String,
    b: String,
    c: String,
    event_id: String,
    delivery_a: String,
    delivery_b: String,
    delivery_c: String,
}

async fn world() -> World {
    let app = App::new();
    let tenant = app.tenant("acme").await;
    app.expect(201, "POST", "/v1/event-types", &tenant.key, Some(json!({ "name": "order.created" }))).await;
    let a = app.endpoint(&tenant, "a").await;
    let b = app.endpoint(&tenant, "b").await;
    let c = app.endpoint(&tenant, "c").await;
    let event = app
        .expect(
            202,
            "POST",
            "/v1/events",
            &tenant.key,
            Some(json!({ "eventType": "order.created", "payload": { "n": 1 } })),
        )
        .await;
    let event_id = event["id"].as_str().unwrap().to_string();
    app.deliver_all().await;
    let delivery_a = failed_delivery(&app, &tenant, &a).await;
    let delivery_b = failed_delivery(&app, &tenant, &b).await;
    let delivery_c = failed_delivery(&app, &tenant, &c).await;
    World { app, tenant, a, b, c, event_id, delivery_a, delivery_b, delivery_c }
}

async fn failed_delivery(app: &App, tenant: &Tenant, endpoint: &str) -> String {
    let page = app.expect(200, "GET", &format!("/v1/deliveries?endpointId={endpoint}"), &tenant.key, None).await;
    assert_eq!(page["data"][0]["status"], "failed", "{page}");
    page["data"][0]["id"].as_str().unwrap().to_string()
}

// ------------------------------------------------------------------ creating sessions

#[tokio::test]
async fn given_endpoints_of_the_app_when_a_session_is_created_then_it_returns_a_token_and_a_console_url() {
    let w = world().await;
    let session = w.app.session(&w.tenant.key, &[&w.a, &w.c, &w.a]).await;
    let token = token(&session);
    assert!(token.starts_with("eyJ") && token.matches('.').count() == 2, "{session}");
    assert_eq!(session["url"], json!(format!("/?portal={token}")));
    assert_eq!(session["expiresAt"], json!("2026-01-15T13:00:00Z"), "default ttl is one hour: {session}");
    assert_eq!(session["endpointIds"], json!([w.a, w.c]), "duplicates are dropped, order kept");

    // The claims: the creating key, its application, the portal's audience and endpoints.
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["sub"], json!(w.tenant.key_id));
    assert_eq!(claims["app"], json!(w.tenant.app_id));
    assert_eq!(claims["aud"], "skyhook-portal");
    assert_eq!(claims["portal"], json!([w.a, w.c]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);

    let custom = w
        .app
        .expect(
            201,
            "POST",
            "/v1/portal/sessions",
            &w.tenant.key,
            Some(json!({ "endpointIds": [w.b], "ttlSeconds": 60 })),
        )
        .await;
    assert_eq!(custom["expiresAt"], json!("2026-01-15T12:01:00Z"));
}

#[tokio::test]
async fn given_bad_input_when_a_session_is_created_then_each_field_is_named() {
    let w = world().await;
    let other = w.app.tenant("globex").await;
    let foreign = w.app.endpoint(&other, "foreign").await;
    let many: Vec<String> = (0..51).map(|_| w.a.clone()).collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "endpointIds"),
        (json!({ "endpointIds": [] }), "endpointIds"),
        (json!({ "endpointIds": many }), "endpointIds"),
        (json!({ "endpointIds": ["nope"] }), "endpointIds[0]"),
        (json!({ "endpointIds": [w.a, foreign] }), "endpointIds[1]"),
        (json!({ "endpointIds": [w.a], "ttlSeconds": 59 }), "ttlSeconds"),
        (json!({ "endpointIds": [w.a], "ttlSeconds": 86_401 }), "ttlSeconds"),
        (json!({ "endpointIds": [w.a], "ttlSeconds": "soon" }), "ttlSeconds"),
        (json!({ "endpointIds": [w.a], "scopes": [] }), "scopes"),
    ];
    for (body, field) in cases {
        let (status, problem) = w.app.call("POST", "/v1/portal/sessions", &w.tenant.key, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {problem}");
        let fields: Vec<&str> =
            problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&field), "{body}: expected {field} in {problem}");
    }
    let ok = w
        .app
        .expect(
            201,
            "POST",
            "/v1/portal/sessions",
            &w.tenant.key,
            Some(json!({ "endpointIds": [w.a], "ttlSeconds": 86_400 })),
        )
        .await;
    assert_eq!(ok["expiresAt"], json!("2026-01-16T12:00:00Z"));
}

#[tokio::test]
async fn given_a_caller_without_webhooks_write_then_it_cannot_create_sessions() {
    let w = world().await;
    let (_, reader) = w.app.key_with_scopes(&w.tenant, &["webhooks:read", "events:read"]).await;
    let body = Some(json!({ "endpointIds": [w.a] }));
    w.app.expect(403, "POST", "/v1/portal/sessions", &reader, body.clone()).await;
    w.app.expect(403, "POST", "/v1/portal/sessions", &w.app.admin, body.clone()).await;
    w.app.expect(401, "POST", "/v1/portal/sessions", "not-a-key", body.clone()).await;
    // A portal session cannot mint another (wider or longer) one.
    let portal = token(&w.app.session(&w.tenant.key, &[&w.a]).await);
    w.app.expect(403, "POST", "/v1/portal/sessions", &portal, body).await;
}

// ------------------------------------------------------------------ what a session may do

#[tokio::test]
async fn given_a_portal_token_then_it_sees_only_its_endpoints_and_their_deliveries() {
    let w = world().await;
    let portal = token(&w.app.session(&w.tenant.key, &[&w.a, &w.c]).await);
    let app = &w.app;

    // Lists are kept to the session's endpoints, with working cursors.
    let mut listed = app.list_all("/v1/endpoints", &portal, 1).await;
    listed.sort();
    let mut expected = vec![w.a.clone(), w.c.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(app.list_all("/v1/endpoints?isActive=false", &portal, 10).await, Vec::<String>::new());
    let mut deliveries = app.list_all("/v1/deliveries", &portal, 1).await;
    deliveries.sort();
    let mut expected = vec![w.delivery_a.clone(), w.delivery_c.clone()];
    expected.sort();
    assert_eq!(deliveries, expected);
    assert_eq!(
        app.list_all(&format!("/v1/deliveries?eventId={}&status=failed", w.event_id), &portal, 50).await.len(),
        2
    );
    assert_eq!(
        app.list_all(&format!("/v1/endpoints/{}/deliveries", w.a), &portal, 50).await,
        vec![w.delivery_a.clone()]
    );
    assert_eq!(
        app.list_all(&format!("/v1/deliveries?endpointId={}", w.c), &portal, 50).await,
        vec![w.delivery_c.clone()]
    );

    // Its endpoints: view, stats, deliveries, attempts.
    let endpoint = app.expect(200, "GET", &format!("/v1/endpoints/{}", w.a), &portal, None).await;
    assert_eq!(endpoint["id"], json!(w.a));
    assert!(endpoint.get("secret").is_none());
    let stats = app.expect(200, "GET", &format!("/v1/endpoints/{}/stats", w.a), &portal, None).await;
    assert_eq!(stats["failed"], 1, "{stats}");
    let delivery = app.expect(200, "GET", &format!("/v1/deliveries/{}", w.delivery_a), &portal, None).await;
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 1);

    // Another endpoint of the same application does not exist for it.
    for path in [
        format!("/v1/endpoints/{}", w.b),
        format!("/v1/endpoints/{}/stats", w.b),
        format!("/v1/endpoints/{}/deliveries", w.b),
        format!("/v1/deliveries?endpointId={}", w.b),
        format!("/v1/deliveries/{}", w.delivery_b),
    ] {
        app.expect(404, "GET", &path, &portal, None).await;
    }
    // The API key still sees everything.
    assert_eq!(app.list_all("/v1/endpoints", &w.tenant.key, 50).await.len(), 3);
}

#[tokio::test]
async fn given_a_portal_token_then_it_retries_tests_and_edits_only_its_endpoints() {
    let w = world().await;
    let portal = token(&w.app.session(&w.tenant.key, &[&w.a]).await);
    let app = &w.app;

    let retry =
        app.expect(202, "POST", &format!("/v1/deliveries/{}/retry", w.delivery_a), &portal, Some(json!({}))).await;
    assert_eq!(retry["retryOf"], json!(w.delivery_a));
    app.expect(404, "POST", &format!("/v1/deliveries/{}/retry", w.delivery_b), &portal, Some(json!({}))).await;

    let test = app.expect(202, "POST", &format!("/v1/endpoints/{}/test", w.a), &portal, Some(json!({}))).await;
    assert!(test["id"].as_str().unwrap().starts_with("evt_"));
    app.expect(404, "POST", &format!("/v1/endpoints/{}/test", w.b), &portal, Some(json!({}))).await;

    let patched = app
        .expect(
            200,
            "PATCH",
            &format!("/v1/endpoints/{}", w.a),
            &portal,
            Some(json!({ "url": "https://example.com/a2", "description": "mine", "isActive": false })),
        )
        .await;
    assert_eq!(patched["url"], "https://example.com/a2");
    assert_eq!(patched["isActive"], false);
    for body in [
        json!({ "maxAttempts": 3 }),
        json!({ "eventTypes": [] }),
        json!({ "headers": { "x-a": "b" } }),
        json!({ "url": "https://example.com/a3", "metadata": { "k": "v" } }),
        json!({ "timeoutSecs": 5 }),
        json!({ "payloadFormat": "raw" }),
    ] {
        app.expect(403, "PATCH", &format!("/v1/endpoints/{}", w.a), &portal, Some(body)).await;
    }
    app.expect(404, "PATCH", &format!("/v1/endpoints/{}", w.b), &portal, Some(json!({ "description": "x" }))).await;
    let unchanged = app.expect(200, "GET", &format!("/v1/endpoints/{}", w.b), &w.tenant.key, None).await;
    assert_eq!(unchanged["description"], Value::Null);

    // Bulk retry must name one of its endpoints.
    app.expect(400, "POST", "/v1/deliveries/retry", &portal, Some(json!({}))).await;
    app.expect(404, "POST", "/v1/deliveries/retry", &portal, Some(json!({ "endpointId": w.b }))).await;
    app.expect(202, "POST", "/v1/deliveries/retry", &portal, Some(json!({ "endpointId": w.a }))).await;
}

/// Every route of the table, called with a portal token on the session's own
/// resources: only the portal's operations succeed; everything else is refused.
#[tokio::test]
async fn given_every_route_then_a_portal_token_reaches_only_the_portal_operations() {
    let w = world().await;
    let portal = token(&w.app.session(&w.tenant.key, &[&w.a]).await);
    let allowed = [
        RouteOp::ListEndpoints,
        RouteOp::GetEndpoint,
        RouteOp::PatchEndpoint,
        RouteOp::TestEndpoint,
        RouteOp::EndpointStats,
        RouteOp::ListEndpointDeliveries,
        RouteOp::ListDeliveries,
        RouteOp::GetDelivery,
        RouteOp::RetryDelivery,
        RouteOp::BulkRetry,
        // Recovery after an outage is the endpoint owner's to start.
        RouteOp::ReplayEndpoint,
        RouteOp::ListReplays,
        RouteOp::GetReplay,
    ];
    let mut replay_id = String::from("rpl_01JD3X5Q3V1R7N9GZ8W6Y2K4TB");
    for route in ROUTES {
        if route.resource == Resource::Console || matches!(route.op, RouteOp::Health | RouteOp::OAuthToken) {
            continue;
        }
        let id = if route.path.starts_with("/v1/endpoints/") {
            w.a.as_str()
        } else if route.path.starts_with("/v1/events/") {
            w.event_id.as_str()
        } else {
            w.delivery_c.as_str()
        };
        // Delivery routes act on a delivery of the session's endpoint A.
        let id = if matches!(route.op, RouteOp::RetryDelivery | RouteOp::GetDelivery | RouteOp::DeleteDelivery) {
            w.delivery_a.as_str()
        } else {
            id
        };
        let path = route
            .path
            .replace("{appId}", &w.tenant.app_id)
            .replace("{keyId}", &w.tenant.key_id)
            .replace("{name}", "order.created")
            .replace("{id}", id)
            .replace("{replayId}", &replay_id);
        let body = match route.op {
            RouteOp::CreateApplication
            | RouteOp::PatchApplication
            | RouteOp::PutApplication
            | RouteOp::CreateApiKey => Some(json!({ "name": "x" })),
            RouteOp::CreateEventType => Some(json!({ "name": "new.type" })),
            RouteOp::PutEventType => Some(json!({ "description": "x" })),
            RouteOp::CreateEndpoint | RouteOp::PutEndpoint => Some(json!({ "url": "https://example.com/new" })),
            RouteOp::PatchEndpoint => Some(json!({ "description": "x" })),
            RouteOp::PublishEvent => Some(json!({ "eventType": "order.created", "payload": {} })),
            // Matches nothing, so the single retry below still finds delivery A unretried.
            RouteOp::BulkRetry => Some(json!({ "endpointId": w.a, "from": "2030-01-01T00:00:00Z" })),
            RouteOp::CreatePortalSession => Some(json!({ "endpointIds": [w.a] })),
            RouteOp::RotateEndpointSecret | RouteOp::TestEndpoint | RouteOp::RetryDelivery => Some(json!({})),
            RouteOp::ReplayEndpoint => {
                Some(json!({ "from": (w.app.clock.now() - chrono::Duration::hours(1)).to_rfc3339() }))
            }
            _ => None,
        };
        let (status, value) = w.app.call(route.method, &path, &portal, body).await;
        if route.op == RouteOp::ReplayEndpoint
            && let Some(id) = value["id"].as_str()
        {
            replay_id = id.to_string();
        }
        if allowed.contains(&route.op) {
            assert!((200..300).contains(&status), "{} {path} should be allowed: {status} {value}", route.method);
        } else {
            assert!(status == 403 || status == 404, "{} {path} should be refused: {status} {value}", route.method);
        }
    }
    // Nothing was deleted or rotated.
    let a = w.app.expect(200, "GET", &format!("/v1/endpoints/{}", w.a), &w.tenant.key, None).await;
    assert_eq!(a["description"], "x");
    w.app.expect(200, "GET", &format!("/v1/deliveries/{}", w.delivery_a), &w.tenant.key, None).await;
    w.app.expect(200, "GET", "/v1/event-types/order.created", &w.tenant.key, None).await;
}

#[tokio::test]
async fn given_a_key_with_fewer_scopes_then_its_sessions_have_no_more() {
    let w = world().await;
    let (_, writer) = w.app.key_with_scopes(&w.tenant, &["webhooks:write", "webhooks:read"]).await;
    let portal = token(&w.app.session(&writer, &[&w.a]).await);
    w.app.expect(200, "GET", &format!("/v1/endpoints/{}", w.a), &portal, None).await;
    w.app.expect(403, "GET", &format!("/v1/endpoints/{}/deliveries", w.a), &portal, None).await;
    w.app.expect(403, "POST", &format!("/v1/deliveries/{}/retry", w.delivery_a), &portal, Some(json!({}))).await;
}

#[tokio::test]
async fn given_another_tenant_then_its_portal_token_sees_nothing_here() {
    let w = world().await;
    let other = w.app.tenant("globex").await;
    let theirs = w.app.endpoint(&other, "theirs").await;
    let portal = token(&w.app.session(&other.key, &[&theirs]).await);
    assert_eq!(w.app.list_all("/v1/endpoints", &portal, 50).await, vec![theirs]);
    w.app.expect(404, "GET", &format!("/v1/endpoints/{}", w.a), &portal, None).await;
    w.app.expect(404, "GET", &format!("/v1/deliveries/{}", w.delivery_a), &portal, None).await;
    assert!(w.app.list_all("/v1/deliveries", &portal, 50).await.is_empty());
}

// ------------------------------------------------------------------ expiry, revocation, tampering

#[tokio::test]
async fn given_the_clock_passes_the_expiry_then_the_session_is_refused() {
    let w = world().await;
    let session = w
        .app
        .expect(
            201,
            "POST",
            "/v1/portal/sessions",
            &w.tenant.key,
            Some(json!({ "endpointIds": [w.a], "ttlSeconds": 120 })),
        )
        .await;
    let portal = token(&session);
    let path = format!("/v1/endpoints/{}", w.a);
    w.app.clock.advance(chrono::Duration::seconds(119));
    w.app.expect(200, "GET", &path, &portal, None).await;
    w.app.clock.advance(chrono::Duration::seconds(1));
    let (status, problem) = w.app.call("GET", &path, &portal, None).await;
    assert_eq!(status, 401, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("expired"), "{problem}");
    // The key itself is unaffected.
    w.app.expect(200, "GET", &path, &w.tenant.key, None).await;
}

#[tokio::test]
async fn given_the_creating_key_is_revoked_then_its_sessions_are_revoked() {
    let w = world().await;
    let (other_key_id, other_key) =
        w.app.key_with_scopes(&w.tenant, &["webhooks:write", "webhooks:read", "events:read"]).await;
    let doomed = token(&w.app.session(&other_key, &[&w.a]).await);
    let kept = token(&w.app.session(&w.tenant.key, &[&w.a]).await);
    let path = format!("/v1/endpoints/{}/deliveries", w.a);
    w.app.expect(200, "GET", &path, &doomed, None).await;
    w.app
        .expect(
            204,
            "DELETE",
            &format!("/v1/applications/{}/api-keys/{other_key_id}", w.tenant.app_id),
            &w.app.admin,
            None,
        )
        .await;
    w.app.expect(401, "GET", &path, &doomed, None).await;
    w.app.expect(200, "GET", &path, &kept, None).await;
}

#[tokio::test]
async fn given_a_tampered_token_then_it_is_refused() {
    let w = world().await;
    let portal = token(&w.app.session(&w.tenant.key, &[&w.a]).await);
    let parts: Vec<&str> = portal.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();

    // Wider: add endpoint B.
    claims["portal"] = json!([w.a, w.b]);
    let wider = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    w.app.expect(401, "GET", &format!("/v1/endpoints/{}", w.b), &wider, None).await;

    // Unrestricted: drop the portal claim.
    let mut bare = claims.clone();
    bare.as_object_mut().unwrap().remove("portal");
    let bare = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(bare.to_string()), parts[2]);
    w.app.expect(401, "GET", "/v1/events", &bare, None).await;

    // The genuine token keeps working.
    w.app.expect(200, "GET", &format!("/v1/endpoints/{}", w.a), &portal, None).await;
}

#[tokio::test]
async fn given_an_oauth_access_token_then_it_is_not_restricted() {
    // Regression guard: the claim parsing shared with portal tokens leaves
    // ordinary access tokens as they were.
    let w = world().await;
    let request = ApiRequest::new(Method::POST, "/v1/oauth/token").json(
        json!({ "grant_type": "client_credentials", "client_id": w.tenant.key_id, "client_secret": w.tenant.key })
            .to_string(),
    );
    let response = handle(&w.app.service, request).await;
    assert_eq!(response.status.as_u16(), 200, "{:?}", response.body);
    let access = response.json_body()["access_token"].as_str().unwrap().to_string();
    assert_eq!(w.app.list_all("/v1/endpoints", &access, 50).await.len(), 3);
    w.app.expect(200, "GET", "/v1/events", &access, None).await;
    w.app.expect(201, "POST", "/v1/portal/sessions", &access, Some(json!({ "endpointIds": [w.b] }))).await;
}
