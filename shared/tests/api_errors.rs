//! Bad input on every write route, problem+json everywhere, 404/405 routing,
//! and no partial writes. SPEC §3 "Conventions".

mod support;

use serde_json::{Value, json};
use skyhook::api::{ROUTES, Route, RouteOp};
use skyhook::domain::limits::MAX_REQUEST_BYTES;
use support::*;

/// Every JSON write route (the token route takes a form and has its own tests).
fn write_routes() -> impl Iterator<Item = &'static Route> {
    api_routes().filter(|r| matches!(r.method, "POST" | "PUT" | "PATCH") && r.op != RouteOp::OAuthToken)
}

fn credential<'a>(app: &'a TestApp, fixture: &'a Fixture, route: &Route) -> &'a str {
    if is_admin(route) { &app.admin } else { &fixture.tenant.key }
}

/// Everything a rejected request could have written, as one comparable value.
async fn snapshot(app: &TestApp, f: &Fixture) -> Value {
    let key = &f.tenant.key;
    json!({
        "applications": app.list_all("/v1/applications", &app.admin).await,
        "keys": app.list_all(&format!("/v1/applications/{}/api-keys", f.tenant.app_id), &app.admin).await,
        "eventTypes": app.list_all("/v1/event-types?includeArchived=true", key).await,
        "endpoints": app.list_all("/v1/endpoints", key).await,
        "events": app.list_all("/v1/events", key).await,
        "deliveries": app.list_all("/v1/deliveries", key).await,
        "queued": app.queue.approximate_counts().await.map(|(visible, hidden)| visible + hidden).unwrap_or(0),
    })
}

async fn send_raw(app: &TestApp, f: &Fixture, route: &Route, content_type: &str, body: Vec<u8>) -> Reply {
    let auth = format!("Bearer {}", credential(app, f, route));
    app.raw_call(route.method, &route_path(route, f), &[("authorization", &auth), ("content-type", content_type)], body)
        .await
}

#[tokio::test]
async fn given_malformed_json_on_every_write_route_then_it_is_400_on_body_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let f = app.fixture("a").await;
    let before = snapshot(&app, &f).await;
    for route in write_routes() {
        for raw in [&b"{\"name\":"[..], b"{name: 1}", b"{\"a\":1,}", b"\xff\xfe", b"{} {}"] {
            // WHEN
            let reply = send_raw(&app, &f, route, "application/json", raw.to_vec()).await;
            // THEN
            assert_problem(&reply, 400, Some("body"));
        }
    }
    assert_eq!(snapshot(&app, &f).await, before);
}

#[tokio::test]
async fn given_a_body_that_is_not_an_object_on_every_write_route_then_it_is_400_on_body_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let f = app.fixture("a").await;
    let before = snapshot(&app, &f).await;
    for route in write_routes() {
        for body in [json!([]), json!([{ "name": "x" }]), json!("text"), json!(42), json!(true), Value::Null] {
            // WHEN
            let reply = send_raw(&app, &f, route, "application/json", serde_json::to_vec(&body).unwrap()).await;
            // THEN
            assert_problem(&reply, 400, Some("body"));
        }
    }
    assert_eq!(snapshot(&app, &f).await, before);
}

#[tokio::test]
async fn given_an_unknown_field_on_every_write_route_then_it_is_400_naming_it_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let f = app.fixture("a").await;
    let before = snapshot(&app, &f).await;
    for route in write_routes() {
        let mut body = route_body(route, &f).unwrap_or_else(|| json!({}));
        body["zzUnknown"] = json!(1);
        // WHEN
        let reply = app.call(route.method, &route_path(route, &f), Some(credential(&app, &f, route)), Some(body)).await;
        // THEN
        assert_problem(&reply, 400, Some("zzUnknown"));
    }
    assert_eq!(snapshot(&app, &f).await, before);
}

#[tokio::test]
async fn given_a_non_json_content_type_on_every_write_route_then_it_is_415_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let f = app.fixture("a").await;
    let before = snapshot(&app, &f).await;
    for route in write_routes() {
        let body = serde_json::to_vec(&route_body(route, &f).unwrap_or_else(|| json!({}))).unwrap();
        for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            // WHEN
            let reply = send_raw(&app, &f, route, content_type, body.clone()).await;
            // THEN
            assert_problem(&reply, 415, Some("content-type"));
        }
        // and a +json media type or a charset is fine as JSON
        let reply = send_raw(&app, &f, route, "application/merge-patch+json", b"[]".to_vec()).await;
        assert_problem(&reply, 400, Some("body"));
        let reply = send_raw(&app, &f, route, "application/json; charset=utf-8", b"[]".to_vec()).await;
        assert_problem(&reply, 400, Some("body"));
    }
    assert_eq!(snapshot(&app, &f).await, before);
}

#[tokio::test]
async fn given_a_body_over_the_request_limit_on_every_write_route_then_it_is_413_on_body_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let f = app.fixture("a").await;
    let before = snapshot(&app, &f).await;
    let mut body = route_body(&ROUTES[1], &f).unwrap();
    body["pad"] = json!("x".repeat(MAX_REQUEST_BYTES));
    let bytes = serde_json::to_vec(&body).unwrap();
    for route in write_routes().chain(ROUTES.iter().filter(|r| r.op == RouteOp::OAuthToken)) {
        // WHEN
        let reply = send_raw(&app, &f, route, "application/json", bytes.clone()).await;
        // THEN
        assert_problem(&reply, 413, Some("body"));
    }
    assert_eq!(snapshot(&app, &f).await, before);
}

#[tokio::test]
async fn given_wrong_types_for_known_fields_on_every_write_route_then_each_is_400_naming_the_field() {
    // GIVEN
    let app = TestApp::new();
    let f = app.fixture("a").await;
    let before = snapshot(&app, &f).await;
    let cases: Vec<(RouteOp, Value, &str)> = vec![
        (RouteOp::CreateApplication, json!({ "name": {} }), "name"),
        (RouteOp::PatchApplication, json!({ "retentionDays": "7" }), "retentionDays"),
        (RouteOp::PutApplication, json!({ "name": "n", "rateLimit": [] }), "rateLimit"),
        (RouteOp::CreateApiKey, json!({ "name": "n", "scopes": {} }), "scopes"),
        (RouteOp::CreateEventType, json!({ "name": "t.t", "archived": "no" }), "archived"),
        (RouteOp::PutEventType, json!({ "description": 5 }), "description"),
        (RouteOp::CreateEndpoint, json!({ "url": OK_URL, "isActive": 1 }), "isActive"),
        (RouteOp::PutEndpoint, json!({ "url": OK_URL, "timeoutSecs": "15" }), "timeoutSecs"),
        (RouteOp::PatchEndpoint, json!({ "eventTypes": {} }), "eventTypes"),
        (RouteOp::RotateEndpointSecret, json!({ "secret": true }), "secret"),
        (RouteOp::TestEndpoint, json!({ "eventType": [] }), "eventType"),
        (
            RouteOp::PublishEvent,
            json!({ "eventType": f.event_type, "payload": 1, "idempotencyKey": 1 }),
            "idempotencyKey",
        ),
        (RouteOp::BulkRetry, json!({ "from": 5 }), "from"),
        (RouteOp::ReplayEndpoint, json!({ "from": "2030-01-01T00:00:00Z", "onlyFailed": "yes" }), "onlyFailed"),
    ];
    let covered: Vec<RouteOp> = cases.iter().map(|(op, _, _)| *op).collect();
    for route in write_routes() {
        assert!(
            covered.contains(&route.op) || route.op == RouteOp::RetryDelivery,
            "no wrong-type case for {} {}",
            route.method,
            route.path
        );
    }
    for (op, body, field) in cases {
        let route = ROUTES.iter().find(|r| r.op == op).unwrap();
        // WHEN
        let reply =
            app.call(route.method, &route_path(route, &f), Some(credential(&app, &f, route)), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, 400, Some(field));
    }
    assert_eq!(snapshot(&app, &f).await, before);
}

#[tokio::test]
async fn given_several_bad_fields_in_one_body_then_all_of_them_are_reported_at_once() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let cases = [
        // rule violations
        (json!({ "url": "ftp://x", "maxAttempts": 0, "timeoutSecs": 99 }), vec!["maxAttempts", "timeoutSecs", "url"]),
        // shape violations (wrong types, unknown fields)
        (json!({ "url": 1, "maxAttempts": "x", "nope": 1 }), vec!["maxAttempts", "nope", "url"]),
    ];
    for (request, expected) in cases {
        // WHEN
        let (status, body, _) = app.call("POST", "/v1/endpoints", Some(&tenant.key), Some(request)).await;
        // THEN
        assert_eq!(status, 400);
        let mut got = fields(&body);
        got.sort();
        assert_eq!(got, expected, "{body}");
        assert!(body["detail"].as_str().unwrap().contains("maxAttempts"));
        for error in body["errors"].as_array().unwrap() {
            assert!(!error["message"].as_str().unwrap().is_empty());
        }
    }
}

// ------------------------------------------------------------ routing

fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (p, s): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == s.len() && p.iter().zip(&s).all(|(p, s)| p == s || (p.starts_with('{') && !s.is_empty()))
}

#[tokio::test]
async fn given_a_known_path_with_a_method_it_does_not_have_then_it_is_405_with_an_allow_header() {
    // GIVEN
    let app = TestApp::new();
    let f = app.fixture("a").await;
    let mut paths: Vec<&str> = ROUTES.iter().map(|r| r.path).collect();
    paths.dedup();
    for pattern in paths {
        let route = ROUTES.iter().find(|r| r.path == pattern).unwrap();
        let path = route_path(route, &f);
        // Every route whose pattern matches this concrete path (`/v1/deliveries/retry`
        // is also a delivery id path).
        let allowed: Vec<&str> = ROUTES.iter().filter(|r| pattern_matches(r.path, &path)).map(|r| r.method).collect();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
            if allowed.contains(&method) {
                continue;
            }
            // WHEN
            let reply = app.call(method, &path, Some(&f.tenant.key), None).await;
            // THEN
            assert_problem(&reply, 405, None);
            let allow = reply.2.get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let mut listed: Vec<&str> = allow.split(", ").collect();
            listed.sort();
            let mut expected = allowed.clone();
            expected.sort();
            assert_eq!(listed, expected, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn given_an_unknown_path_then_it_is_a_404_problem_even_without_credentials() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    for path in [
        "/v1",
        "/v2/events",
        "/v1/nope",
        "/v1/endpoints/ep_x/nope",
        "/v1/endpoints//stats",
        "/v1/applications/app_x/api-keys/key_x/extra",
        "/V1/EVENTS",
    ] {
        for credential in [None, Some(tenant.key.as_str())] {
            // WHEN
            let reply = app.call("GET", path, credential, None).await;
            // THEN
            assert_problem(&reply, 404, None);
            assert_eq!(reply.1["instance"], path);
        }
    }
}

#[tokio::test]
async fn given_a_trailing_slash_or_a_query_string_then_the_route_still_matches() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    // WHEN
    let slash = app.call("GET", "/v1/endpoints/", Some(&tenant.key), None).await;
    let health = app.call("GET", "/v1/health/?x=1", None, None).await;
    // THEN
    assert_eq!(slash.0, 200, "{}", slash.1);
    assert_eq!(health.0, 200, "{}", health.1);
}

#[tokio::test]
async fn given_hostile_path_parameters_on_every_id_route_then_the_answer_is_4xx_never_5xx() {
    // GIVEN
    let app = TestApp::new();
    let f = app.fixture("a").await;
    let long = "a".repeat(10_000);
    let hostile =
        ["%FF", "..", "%2e%2e", "'%3B%20DROP%20TABLE%20events%3B--", "%00", "%E2%9C%93", long.as_str(), "ep_%20", "*"];
    for route in api_routes().filter(|r| r.path.contains('{')) {
        for value in hostile {
            let path = route
                .path
                .replace("{appId}", value)
                .replace("{keyId}", value)
                .replace("{name}", value)
                .replace("{id}", value);
            // WHEN
            let reply = app.call(route.method, &path, Some(credential(&app, &f, route)), route_body(route, &f)).await;
            // THEN
            assert!(
                (400..500).contains(&reply.0),
                "{} {} answered {}: {}",
                route.method,
                &path[..path.len().min(80)],
                reply.0,
                reply.1
            );
            assert_eq!(reply.2.get("content-type").unwrap(), "application/problem+json");
        }
    }
}

#[tokio::test]
async fn given_hostile_query_strings_on_every_list_route_then_the_answer_is_4xx_or_200_never_5xx() {
    // GIVEN
    let app = TestApp::new();
    let f = app.fixture("a").await;
    let queries = [
        "limit=99999999999999999999999",
        "limit=%FF",
        "cursor=%FF%FE",
        "cursor=a.b",
        "from=%00",
        "status=%27",
        "eventType=%27%3B--",
        "isActive=",
        "&&&",
        "=x",
    ];
    for route in api_routes().filter(|r| r.method == "GET") {
        for query in queries {
            // WHEN
            let path = format!("{}?{query}", route_path(route, &f));
            let reply = app.call("GET", &path, Some(credential(&app, &f, route)), None).await;
            // THEN
            assert!(reply.0 < 500, "GET {path} answered {}: {}", reply.0, reply.1);
            if reply.0 >= 400 {
                assert_problem(&reply, reply.0, None);
            }
        }
    }
}

#[tokio::test]
async fn given_an_internal_problem_then_its_detail_never_leaks_internals() {
    // GIVEN: a problem for a rejected request
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    // WHEN
    let (_, body, _) = app.call("GET", "/v1/events?cursor=abc.def", Some(&tenant.key), None).await;
    // THEN
    let text = body.to_string().to_ascii_lowercase();
    for word in ["sqlite", "rusqlite", "panicked", "stack backtrace"] {
        assert!(!text.contains(word), "{text}");
    }
    assert_eq!(body["type"], "urn:skyhook:problem:validation");
    assert_eq!(body["instance"], "/v1/events");
}

#[tokio::test]
async fn given_deeply_nested_json_on_a_write_route_then_it_is_400_on_body_not_a_crash() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "x").await;
    let depth = 100_000;
    let body = format!(r#"{{"eventType":"x","payload":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
    // WHEN
    let auth = format!("Bearer {}", tenant.key);
    let reply = app
        .raw_call("POST", "/v1/events", &[("authorization", &auth), ("content-type", "application/json")], body)
        .await;
    // THEN
    assert_problem(&reply, 400, Some("body"));
    assert_eq!(app.count("/v1/events", &tenant.key).await, 0);
}
