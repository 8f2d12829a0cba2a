//! Events: publish (with idempotency), list with filters, get. SPEC §3.

mod support;

use serde_json::{Value, json};
use support::*;

async fn tenant_with_type(app: &TestApp, event_type: &str) -> Tenant {
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, event_type).await;
    tenant
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn given_an_event_type_when_an_event_is_published_then_it_is_202_with_an_evt_id() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "order.created").await;
    // WHEN
    let (status, body, headers) = app
        .call(
            "POST",
            "/v1/events",
            Some(&tenant.key),
            Some(json!({ "eventType": "order.created", "payload": { "orderId": 7 } })),
        )
        .await;
    // THEN
    assert_eq!(status, 202, "{body}");
    assert!(str_of(&body, "id").starts_with("evt_"), "{body}");
    assert_eq!(body["eventType"], "order.created");
    assert_eq!(body["payload"], json!({ "orderId": 7 }));
    assert_eq!(body["status"], "pending");
    assert_eq!(body["applicationId"], tenant.app_id);
    assert!(headers.get("idempotent-replayed").is_none());
    let created = chrono::DateTime::parse_from_rfc3339(str_of(&body, "createdAt")).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(str_of(&body, "expiresAt")).unwrap();
    assert_eq!(expires - created, chrono::Duration::days(31));
}

#[tokio::test]
async fn given_any_json_payload_when_published_then_scalars_and_arrays_are_accepted() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "any.thing").await;
    for payload in [json!(1), json!("text"), json!([1, 2]), json!(false), json!({})] {
        // WHEN
        let event = app.publish(&tenant, "any.thing", payload.clone()).await;
        // THEN
        assert_eq!(event["payload"], payload);
    }
}

#[tokio::test]
async fn given_an_idempotency_key_header_when_the_same_publish_is_repeated_then_the_same_event_id_returns() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "order.created").await;
    let body = json!({ "eventType": "order.created", "payload": { "orderId": 7 } });
    let first = app
        .call_with_headers(
            "POST",
            "/v1/events",
            Some(&tenant.key),
            &[("idempotency-key", "order-7")],
            Some(body.clone()),
        )
        .await;
    // WHEN
    let second = app
        .call_with_headers(
            "POST",
            "/v1/events",
            Some(&tenant.key),
            &[("Idempotency-Key", "order-7")],
            Some(body.clone()),
        )
        .await;
    // THEN
    assert_eq!(first.0, 202);
    assert_eq!(second.0, 202, "{}", second.1);
    assert_eq!(second.1["id"], first.1["id"]);
    assert_eq!(second.2.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(app.count("/v1/events", &tenant.key).await, 1);
    // and no second fan-out
    app.endpoint_at(&tenant, OK_URL).await;
    app.fan_out().await;
    app.call_with_headers("POST", "/v1/events", Some(&tenant.key), &[("idempotency-key", "order-7")], Some(body)).await;
    assert_eq!(app.fan_out().await, 0);
}

#[tokio::test]
async fn given_an_idempotency_key_in_the_body_when_repeated_then_the_same_event_id_returns_also_via_the_header() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "order.created").await;
    let body = json!({ "eventType": "order.created", "payload": { "orderId": 8 }, "idempotencyKey": "order-8" });
    let first = app.expect(202, "POST", "/v1/events", Some(&tenant.key), Some(body.clone())).await;
    // WHEN
    let again = app.expect(202, "POST", "/v1/events", Some(&tenant.key), Some(body)).await;
    let via_header = app
        .call_with_headers(
            "POST",
            "/v1/events",
            Some(&tenant.key),
            &[("idempotency-key", "order-8")],
            Some(json!({ "eventType": "order.created", "payload": { "orderId": 8 } })),
        )
        .await;
    // THEN
    assert_eq!(again["id"], first["id"]);
    assert_eq!(via_header.0, 202);
    assert_eq!(via_header.1["id"], first["id"]);
    assert_eq!(first["idempotencyKey"], "order-8");
    assert_eq!(app.count("/v1/events", &tenant.key).await, 1);
}

#[tokio::test]
async fn given_a_used_idempotency_key_when_reused_with_another_payload_or_type_then_it_is_409() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "order.created").await;
    app.create_event_type(&tenant, "order.deleted").await;
    let key = [("idempotency-key", "k-1")];
    let first = app
        .call_with_headers(
            "POST",
            "/v1/events",
            Some(&tenant.key),
            &key,
            Some(json!({ "eventType": "order.created", "payload": { "a": 1 } })),
        )
        .await;
    assert_eq!(first.0, 202);
    // WHEN
    let other_payload = app
        .call_with_headers(
            "POST",
            "/v1/events",
            Some(&tenant.key),
            &key,
            Some(json!({ "eventType": "order.created", "payload": { "a": 2 } })),
        )
        .await;
    let other_type = app
        .call_with_headers(
            "POST",
            "/v1/events",
            Some(&tenant.key),
            &key,
            Some(json!({ "eventType": "order.deleted", "payload": { "a": 1 } })),
        )
        .await;
    // THEN
    assert_problem(&other_payload, 409, None);
    assert_problem(&other_type, 409, None);
    assert_eq!(app.count("/v1/events", &tenant.key).await, 1);
}

#[tokio::test]
async fn given_the_same_idempotency_key_in_two_applications_then_each_gets_its_own_event() {
    // GIVEN
    let app = TestApp::new();
    let a = tenant_with_type(&app, "x").await;
    let b = app.new_tenant("b").await;
    app.create_event_type(&b, "x").await;
    let body = json!({ "eventType": "x", "payload": 1, "idempotencyKey": "shared" });
    // WHEN
    let from_a = app.expect(202, "POST", "/v1/events", Some(&a.key), Some(body.clone())).await;
    let from_b = app.expect(202, "POST", "/v1/events", Some(&b.key), Some(body)).await;
    // THEN
    assert_ne!(from_a["id"], from_b["id"]);
    assert_eq!(from_b["applicationId"], b.app_id);
}

#[tokio::test]
async fn given_an_idempotency_key_older_than_24_hours_when_reused_then_a_new_event_is_created() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "x").await;
    let body = json!({ "eventType": "x", "payload": 1, "idempotencyKey": "daily" });
    let first = app.expect(202, "POST", "/v1/events", Some(&tenant.key), Some(body.clone())).await;
    app.advance(chrono::Duration::hours(25));
    // WHEN
    let later = app.expect(202, "POST", "/v1/events", Some(&tenant.key), Some(body)).await;
    // THEN
    assert_ne!(later["id"], first["id"]);
}

#[tokio::test]
async fn given_a_header_and_a_body_key_that_differ_when_published_then_it_is_400_on_idempotency_key() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "x").await;
    // WHEN
    let reply = app
        .call_with_headers(
            "POST",
            "/v1/events",
            Some(&tenant.key),
            &[("idempotency-key", "one")],
            Some(json!({ "eventType": "x", "payload": 1, "idempotencyKey": "two" })),
        )
        .await;
    // THEN
    assert_problem(&reply, 400, Some("idempotencyKey"));
    assert_eq!(app.count("/v1/events", &tenant.key).await, 0);
}

#[tokio::test]
async fn given_an_event_when_fetched_then_it_is_200_and_unknown_or_malformed_ids_are_404() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "x").await;
    let event = app.publish(&tenant, "x", json!({ "k": "v" })).await;
    let id = str_of(&event, "id");
    // WHEN
    let got = app.expect(200, "GET", &format!("/v1/events/{id}"), Some(&tenant.key), None).await;
    // THEN
    assert_eq!(got["id"], id);
    assert_eq!(got["payload"], json!({ "k": "v" }));
    for missing in ["evt_01JD3X0000000000000000000", "evt_nope", "ep_01JD3X0000000000000000000"] {
        assert_problem(&app.call("GET", &format!("/v1/events/{missing}"), Some(&tenant.key), None).await, 404, None);
    }
}

#[tokio::test]
async fn given_events_when_listed_then_the_page_shape_holds_and_filters_event_type_status_from_to_apply() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "ok.type").await;
    app.create_event_type(&tenant, "fail.type").await;
    app.create_event_type(&tenant, "quiet.type").await;
    app.create_endpoint(&tenant, json!({ "url": OK_URL, "eventTypes": ["ok.type"] })).await;
    app.create_endpoint(&tenant, json!({ "url": FAIL_URL, "eventTypes": ["fail.type"], "maxAttempts": 1 })).await;
    let early_ok = str_of(&app.publish(&tenant, "ok.type", json!(1)).await, "id").to_string();
    app.advance(chrono::Duration::minutes(10));
    let t1 = app.now_rfc3339();
    let failed = str_of(&app.publish(&tenant, "fail.type", json!(2)).await, "id").to_string();
    app.deliver_all().await;
    app.advance(chrono::Duration::minutes(10));
    let t2 = app.now_rfc3339();
    let late_ok = str_of(&app.publish(&tenant, "ok.type", json!(3)).await, "id").to_string();
    app.advance(chrono::Duration::minutes(1));
    let list = |query: String| {
        let app = &app;
        let key = tenant.key.clone();
        async move { sorted(ids(&app.expect(200, "GET", &format!("/v1/events{query}"), Some(&key), None).await)) }
    };
    // WHEN
    let page = app.expect(200, "GET", "/v1/events", Some(&tenant.key), None).await;
    // THEN
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    assert_eq!(page["hasMore"], false);
    assert!(page["nextCursor"].is_null());
    assert_eq!(ids(&page)[0], late_ok, "newest first");
    assert_eq!(list("?eventType=ok.type".into()).await, sorted(vec![early_ok.clone(), late_ok.clone()]));
    assert_eq!(list("?eventType=quiet.type".into()).await, Vec::<String>::new());
    assert_eq!(list("?status=succeeded".into()).await, vec![early_ok.clone()]);
    assert_eq!(list("?status=failed".into()).await, vec![failed.clone()]);
    assert_eq!(list("?status=pending".into()).await, vec![late_ok.clone()]);
    assert_eq!(list(format!("?from={t1}")).await, sorted(vec![failed.clone(), late_ok.clone()]));
    assert_eq!(list(format!("?to={t1}")).await, vec![early_ok.clone()]);
    assert_eq!(list(format!("?from={t1}&to={t2}")).await, vec![failed.clone()]);
    assert_eq!(list(format!("?from={t1}&to={t2}&eventType=ok.type")).await, Vec::<String>::new());
}

#[tokio::test]
async fn given_bad_event_list_parameters_then_each_is_400_naming_the_parameter() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "x").await;
    let cases = [
        ("?status=retrying", "status"),
        ("?status=bogus", "status"),
        ("?from=yesterday", "from"),
        ("?to=2026-13-01T00:00:00Z", "to"),
        ("?from=2026-01-15", "from"),
        ("?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("?limit=0", "limit"),
        ("?limit=10&limit=20", "limit"),
        ("?cursor=garbage", "cursor"),
    ];
    for (query, field) in cases {
        // WHEN
        let reply = app.call("GET", &format!("/v1/events{query}"), Some(&tenant.key), None).await;
        // THEN
        assert_problem(&reply, 400, Some(field));
    }
}

#[tokio::test]
async fn given_bad_publish_bodies_then_each_is_4xx_naming_the_field_and_no_event_is_written() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "x").await;
    let big_payload = json!({ "blob": "x".repeat(256 * 1024) });
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({ "payload": {} }), 400, "eventType"),
        (json!({ "eventType": null, "payload": {} }), 400, "eventType"),
        (json!({ "eventType": 5, "payload": {} }), 400, "eventType"),
        (json!({ "eventType": "", "payload": {} }), 400, "eventType"),
        (json!({ "eventType": "bad type", "payload": {} }), 400, "eventType"),
        (json!({ "eventType": "not.created", "payload": {} }), 400, "eventType"),
        (json!({ "eventType": "x" }), 400, "payload"),
        (json!({ "eventType": "x", "payload": null }), 400, "payload"),
        (json!({ "eventType": "x", "payload": {}, "idempotencyKey": 5 }), 400, "idempotencyKey"),
        (json!({ "eventType": "x", "payload": {}, "idempotencyKey": "" }), 400, "idempotencyKey"),
        (json!({ "eventType": "x", "payload": {}, "idempotencyKey": "k".repeat(257) }), 400, "idempotencyKey"),
        (json!({ "eventType": "x", "payload": {}, "channels": ["a"] }), 400, "channels"),
        (json!({ "eventType": "x", "payload": big_payload }), 413, "payload"),
    ];
    for (body, status, field) in cases {
        // WHEN
        let reply = app.call("POST", "/v1/events", Some(&tenant.key), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, status, Some(field));
        assert_eq!(
            app.count("/v1/events", &tenant.key).await,
            0,
            "partial write for {}",
            &body.to_string()[..60.min(body.to_string().len())]
        );
    }
}

#[tokio::test]
async fn given_a_payload_just_under_256_kib_when_published_then_it_is_accepted() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "x").await;
    let payload = json!("p".repeat(256 * 1024 - 2)); // the quotes make it exactly 256 KiB
    // WHEN
    let reply =
        app.call("POST", "/v1/events", Some(&tenant.key), Some(json!({ "eventType": "x", "payload": payload }))).await;
    // THEN
    assert_eq!(reply.0, 202, "{}", reply.1["detail"]);
}

#[tokio::test]
async fn given_a_body_over_the_request_limit_when_published_then_it_is_413_on_body_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "x").await;
    let body = json!({ "eventType": "x", "payload": "y".repeat(300 * 1024) });
    // WHEN
    let reply = app.call("POST", "/v1/events", Some(&tenant.key), Some(body)).await;
    // THEN
    assert_problem(&reply, 413, Some("body"));
    assert_eq!(app.count("/v1/events", &tenant.key).await, 0);
}

#[tokio::test]
async fn given_a_one_day_retention_when_two_days_pass_then_the_event_is_no_longer_listed_or_found() {
    // GIVEN
    let app = TestApp::new();
    let created = app
        .expect(201, "POST", "/v1/applications", Some(&app.admin), Some(json!({ "name": "short", "retentionDays": 1 })))
        .await;
    let app_id = str_of(&created, "id");
    let key = app
        .expect(
            201,
            "POST",
            &format!("/v1/applications/{app_id}/api-keys"),
            Some(&app.admin),
            Some(json!({ "name": "k" })),
        )
        .await;
    let key = str_of(&key, "key").to_string();
    app.expect(201, "POST", "/v1/event-types", Some(&key), Some(json!({ "name": "x" }))).await;
    let event =
        app.expect(202, "POST", "/v1/events", Some(&key), Some(json!({ "eventType": "x", "payload": 1 }))).await;
    let created_at = chrono::DateTime::parse_from_rfc3339(str_of(&event, "createdAt")).unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(str_of(&event, "expiresAt")).unwrap();
    assert_eq!(expires_at - created_at, chrono::Duration::days(1));
    // WHEN
    app.advance(chrono::Duration::days(2));
    // THEN
    let id = str_of(&event, "id");
    assert_problem(&app.call("GET", &format!("/v1/events/{id}"), Some(&key), None).await, 404, None);
    assert_eq!(app.count("/v1/events", &key).await, 0);
}

#[tokio::test]
async fn given_a_rate_limit_of_one_per_second_when_publishing_twice_at_once_then_the_second_is_429_with_retry_after() {
    // GIVEN
    let app = TestApp::new();
    let created = app
        .expect(201, "POST", "/v1/applications", Some(&app.admin), Some(json!({ "name": "slow", "rateLimit": 1 })))
        .await;
    let app_id = str_of(&created, "id");
    let key = app
        .expect(
            201,
            "POST",
            &format!("/v1/applications/{app_id}/api-keys"),
            Some(&app.admin),
            Some(json!({ "name": "k" })),
        )
        .await;
    let key = str_of(&key, "key").to_string();
    app.expect(201, "POST", "/v1/event-types", Some(&key), Some(json!({ "name": "x" }))).await;
    let body = json!({ "eventType": "x", "payload": 1 });
    app.expect(202, "POST", "/v1/events", Some(&key), Some(body.clone())).await;
    // WHEN
    let limited = app.call("POST", "/v1/events", Some(&key), Some(body.clone())).await;
    // THEN
    assert_problem(&limited, 429, None);
    assert!(limited.2.get("retry-after").is_some());
    app.advance(chrono::Duration::seconds(1));
    app.expect(202, "POST", "/v1/events", Some(&key), Some(body)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_ten_concurrent_publishes_with_one_idempotency_key_then_all_get_the_same_event_id_and_one_event_exists() {
    // GIVEN
    let app = TestApp::new();
    let tenant = tenant_with_type(&app, "x").await;
    let body = json!({ "eventType": "x", "payload": { "same": true }, "idempotencyKey": "race" });
    // WHEN
    let mut replies = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    for _ in 0..10 {
        let (app, key, body) = (app.clone(), tenant.key.clone(), body.clone());
        set.spawn(async move { app.call("POST", "/v1/events", Some(&key), Some(body)).await });
    }
    while let Some(reply) = set.join_next().await {
        replies.push(reply.unwrap());
    }
    // THEN
    let first = replies[0].1["id"].clone();
    for (status, body, _) in &replies {
        assert_eq!(*status, 202, "{body}");
        assert_eq!(body["id"], first);
    }
    assert_eq!(app.count("/v1/events", &tenant.key).await, 1);
}
