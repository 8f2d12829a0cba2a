//! Endpoints and their extras (rotate-secret, test, stats, deliveries), SPEC §3.

mod support;

use serde_json::{Value, json};
use skyhook::signing::verify_signature;
use support::*;

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn header<'a>(request: &'a skyhook::ports::OutgoingWebhook, name: &str) -> &'a str {
    request.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

#[tokio::test]
async fn given_a_url_when_an_endpoint_is_created_then_it_is_201_with_an_ep_id_a_whsec_secret_and_defaults() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    // WHEN
    let (status, body, _) =
        app.call("POST", "/v1/endpoints", Some(&tenant.key), Some(json!({ "url": "https://example.com/hooks" }))).await;
    // THEN
    assert_eq!(status, 201, "{body}");
    assert!(str_of(&body, "id").starts_with("ep_"), "{body}");
    let secret = str_of(&body, "secret");
    assert!(secret.starts_with("whsec_"), "{body}");
    assert!(skyhook::signing::decode_secret(secret).is_ok());
    assert!(secret.ends_with(str_of(&body, "secretLast4")));
    assert_eq!(body["applicationId"], tenant.app_id);
    assert_eq!(body["url"], "https://example.com/hooks");
    assert_eq!(body["eventTypes"], json!([]));
    assert_eq!(body["headers"], json!({}));
    assert_eq!(body["metadata"], json!({}));
    assert_eq!(body["maxAttempts"], 8);
    assert_eq!(body["timeoutSecs"], 15);
    assert_eq!(body["payloadFormat"], "standard");
    assert_eq!(body["isActive"], true);
}

#[tokio::test]
async fn given_every_field_when_an_endpoint_is_created_then_each_is_stored_as_given() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "b.two").await;
    app.create_event_type(&tenant, "a.one").await;
    let secret = skyhook::signing::generate_secret();
    let body = json!({
        "url": "http://127.0.0.1:9000/hook",
        "description": "billing",
        "eventTypes": ["b.two", "a.one", "a.one"],
        "headers": { "X-Team": "billing" },
        "maxAttempts": 20,
        "timeoutSecs": 30,
        "payloadFormat": "raw",
        "isActive": false,
        "secret": secret,
        "metadata": { "owner": "ops" },
    });
    // WHEN
    let created = app.create_endpoint(&tenant, body).await;
    // THEN
    assert_eq!(created["secret"], secret);
    assert_eq!(created["description"], "billing");
    assert_eq!(created["eventTypes"], json!(["a.one", "b.two"]));
    assert_eq!(created["headers"], json!({ "X-Team": "billing" }));
    assert_eq!(created["maxAttempts"], 20);
    assert_eq!(created["timeoutSecs"], 30);
    assert_eq!(created["payloadFormat"], "raw");
    assert_eq!(created["isActive"], false);
    assert_eq!(created["metadata"], json!({ "owner": "ops" }));
}

#[tokio::test]
async fn given_a_created_endpoint_when_fetched_or_listed_then_the_secret_never_shows_only_secret_last4() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let created = app.create_endpoint(&tenant, json!({ "url": OK_URL })).await;
    let id = str_of(&created, "id");
    let secret = str_of(&created, "secret");
    // WHEN
    let got = app.expect(200, "GET", &format!("/v1/endpoints/{id}"), Some(&tenant.key), None).await;
    let page = app.expect(200, "GET", "/v1/endpoints", Some(&tenant.key), None).await;
    // THEN
    assert!(got.get("secret").is_none(), "{got}");
    assert_eq!(got["secretLast4"], created["secretLast4"]);
    let base64_part = secret.strip_prefix("whsec_").unwrap();
    for text in [got.to_string(), page.to_string()] {
        assert!(!text.contains(base64_part), "the secret leaked: {text}");
    }
    assert_eq!(ids(&page), [id]);
    let mut without_secret = created.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(got, without_secret);
}

#[tokio::test]
async fn given_endpoints_with_filters_when_listed_by_is_active_and_event_type_then_only_matching_ones_return() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "a").await;
    app.create_event_type(&tenant, "b").await;
    let only_a =
        str_of(&app.create_endpoint(&tenant, json!({ "url": OK_URL, "eventTypes": ["a"] })).await, "id").to_string();
    let only_b =
        str_of(&app.create_endpoint(&tenant, json!({ "url": OK_URL, "eventTypes": ["b"] })).await, "id").to_string();
    let all = app.endpoint_at(&tenant, OK_URL).await;
    let inactive_a = str_of(
        &app.create_endpoint(&tenant, json!({ "url": OK_URL, "eventTypes": ["a"], "isActive": false })).await,
        "id",
    )
    .to_string();
    let list = |query: &'static str| {
        let app = &app;
        let key = tenant.key.clone();
        async move { sorted(ids(&app.expect(200, "GET", &format!("/v1/endpoints{query}"), Some(&key), None).await)) }
    };
    // WHEN / THEN
    assert_eq!(list("?isActive=true").await, sorted(vec![only_a.clone(), only_b.clone(), all.clone()]));
    assert_eq!(list("?isActive=false").await, vec![inactive_a.clone()]);
    assert_eq!(list("?eventType=a").await, sorted(vec![only_a.clone(), all.clone(), inactive_a.clone()]));
    assert_eq!(list("?eventType=b&isActive=true").await, sorted(vec![only_b.clone(), all.clone()]));
    assert_eq!(list("?eventType=a&isActive=false").await, vec![inactive_a.clone()]);
    assert_eq!(list("").await.len(), 4);
    assert_problem(
        &app.call("GET", "/v1/endpoints?isActive=yes", Some(&tenant.key), None).await,
        400,
        Some("isActive"),
    );
}

#[tokio::test]
async fn given_an_endpoint_when_put_then_it_is_200_and_every_field_takes_the_given_value_or_its_default() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "a").await;
    let created = app
        .create_endpoint(
            &tenant,
            json!({ "url": OK_URL, "description": "d", "eventTypes": ["a"], "maxAttempts": 3, "metadata": { "k": "v" } }),
        )
        .await;
    let id = str_of(&created, "id");
    let mut echoed = created.clone();
    echoed.as_object_mut().unwrap().remove("secret");
    echoed["url"] = json!("https://example.com/replaced");
    for field in ["description", "eventTypes", "maxAttempts", "metadata", "headers", "timeoutSecs"] {
        echoed.as_object_mut().unwrap().remove(field);
    }
    // WHEN: the GET representation (read-only fields included) is sent back
    let put = app.expect(200, "PUT", &format!("/v1/endpoints/{id}"), Some(&tenant.key), Some(echoed)).await;
    // THEN
    assert_eq!(put["id"], id);
    assert_eq!(put["url"], "https://example.com/replaced");
    assert!(put["description"].is_null());
    assert_eq!(put["eventTypes"], json!([]));
    assert_eq!(put["maxAttempts"], 8);
    assert_eq!(put["metadata"], json!({}));
    assert_eq!(put["secretLast4"], created["secretLast4"], "PUT keeps the secret");
    assert!(put.get("secret").is_none());
    assert_eq!(app.expect(200, "GET", &format!("/v1/endpoints/{id}"), Some(&tenant.key), None).await, put);
}

#[tokio::test]
async fn given_an_endpoint_when_patched_then_it_is_200_and_only_the_given_fields_change() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let created = app.create_endpoint(&tenant, json!({ "url": OK_URL, "description": "d", "maxAttempts": 3 })).await;
    let id = str_of(&created, "id");
    // WHEN
    let patched = app
        .expect(
            200,
            "PATCH",
            &format!("/v1/endpoints/{id}"),
            Some(&tenant.key),
            Some(json!({ "description": null, "isActive": false, "headers": { "X-A": "1" } })),
        )
        .await;
    // THEN
    assert!(patched["description"].is_null());
    assert_eq!(patched["isActive"], false);
    assert!(patched["disabledReason"].is_string(), "{patched}");
    assert_eq!(patched["headers"], json!({ "X-A": "1" }));
    assert_eq!(patched["maxAttempts"], 3);
    assert_eq!(patched["url"], OK_URL);
    // and re-activating clears the reason
    let active = app
        .expect(200, "PATCH", &format!("/v1/endpoints/{id}"), Some(&tenant.key), Some(json!({ "isActive": true })))
        .await;
    assert!(active["disabledReason"].is_null(), "{active}");
}

#[tokio::test]
async fn given_an_endpoint_when_deleted_then_it_is_204_and_then_404() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let id = app.endpoint_at(&tenant, OK_URL).await;
    // WHEN
    let (status, body, _) = app.call("DELETE", &format!("/v1/endpoints/{id}"), Some(&tenant.key), None).await;
    // THEN
    assert_eq!(status, 204);
    assert!(body.is_null());
    assert_problem(&app.call("GET", &format!("/v1/endpoints/{id}"), Some(&tenant.key), None).await, 404, None);
    assert_problem(&app.call("DELETE", &format!("/v1/endpoints/{id}"), Some(&tenant.key), None).await, 404, None);
    assert_eq!(app.count("/v1/endpoints", &tenant.key).await, 0);
}

#[tokio::test]
async fn given_an_endpoint_when_its_secret_is_rotated_then_the_new_secret_is_returned_and_both_sign_for_24h() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "a").await;
    let created = app.create_endpoint(&tenant, json!({ "url": OK_URL })).await;
    let id = str_of(&created, "id");
    let old_secret = str_of(&created, "secret").to_string();
    // WHEN
    let (status, rotated, _) =
        app.call("POST", &format!("/v1/endpoints/{id}/rotate-secret"), Some(&tenant.key), None).await;
    // THEN
    assert_eq!(status, 200, "{rotated}");
    let new_secret = str_of(&rotated, "secret").to_string();
    assert!(new_secret.starts_with("whsec_"));
    assert_ne!(new_secret, old_secret);
    assert!(new_secret.ends_with(str_of(&rotated, "secretLast4")));
    let got = app.expect(200, "GET", &format!("/v1/endpoints/{id}"), Some(&tenant.key), None).await;
    assert_eq!(got["secretLast4"], rotated["secretLast4"]);
    assert!(got.get("secret").is_none());
    // and a delivery now carries a signature for each secret
    app.publish(&tenant, "a", json!({ "x": 1 })).await;
    app.deliver_all().await;
    let requests = app.sender.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let signature = header(request, "webhook-signature");
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    let ts: i64 = header(request, "webhook-timestamp").parse().unwrap();
    let msg_id = header(request, "webhook-id");
    let now = app.clock_now();
    for secret in [&old_secret, &new_secret] {
        verify_signature(secret, msg_id, ts, &request.body, signature, now, 300).expect("signature verifies");
    }
}

#[tokio::test]
async fn given_a_supplied_secret_when_rotating_then_it_becomes_the_secret_and_a_bad_one_is_400() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let id = app.endpoint_at(&tenant, OK_URL).await;
    let mine = skyhook::signing::generate_secret();
    // WHEN
    let rotated = app
        .expect(
            200,
            "POST",
            &format!("/v1/endpoints/{id}/rotate-secret"),
            Some(&tenant.key),
            Some(json!({ "secret": mine })),
        )
        .await;
    let bad = app
        .call(
            "POST",
            &format!("/v1/endpoints/{id}/rotate-secret"),
            Some(&tenant.key),
            Some(json!({ "secret": "whsec_x" })),
        )
        .await;
    // THEN
    assert_eq!(rotated["secret"], mine);
    assert_problem(&bad, 400, Some("secret"));
    let got = app.expect(200, "GET", &format!("/v1/endpoints/{id}"), Some(&tenant.key), None).await;
    assert_eq!(got["secretLast4"], rotated["secretLast4"], "a rejected rotation changed the secret");
}

#[tokio::test]
async fn given_two_endpoints_when_one_is_tested_then_it_is_202_with_an_event_that_fans_out_only_to_it() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let target = app.endpoint_at(&tenant, OK_URL).await;
    let other = app.endpoint_at(&tenant, OK_URL).await;
    // WHEN
    let (status, event, _) = app.call("POST", &format!("/v1/endpoints/{target}/test"), Some(&tenant.key), None).await;
    // THEN
    assert_eq!(status, 202, "{event}");
    let event_id = str_of(&event, "id");
    assert!(event_id.starts_with("evt_"));
    assert_eq!(event["eventType"], "webhook.test");
    assert_eq!(event["targetEndpointId"], target);
    app.fan_out().await;
    let deliveries =
        app.expect(200, "GET", &format!("/v1/deliveries?eventId={event_id}"), Some(&tenant.key), None).await;
    let data = deliveries["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{deliveries}");
    assert_eq!(data[0]["endpointId"], target);
    let other_deliveries =
        app.expect(200, "GET", &format!("/v1/endpoints/{other}/deliveries"), Some(&tenant.key), None).await;
    assert_eq!(other_deliveries["data"], json!([]));
    let got = app.expect(200, "GET", &format!("/v1/events/{event_id}"), Some(&tenant.key), None).await;
    assert_eq!(got["deliveryCount"], 1);
}

#[tokio::test]
async fn given_a_custom_test_payload_and_type_when_an_endpoint_is_tested_then_the_event_carries_them() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let id = app.endpoint_at(&tenant, OK_URL).await;
    // WHEN
    let event = app
        .expect(
            202,
            "POST",
            &format!("/v1/endpoints/{id}/test"),
            Some(&tenant.key),
            Some(json!({ "eventType": "ping.custom", "payload": { "hello": "world" } })),
        )
        .await;
    // THEN
    assert_eq!(event["eventType"], "ping.custom");
    assert_eq!(event["payload"], json!({ "hello": "world" }));
}

#[tokio::test]
async fn given_attempts_when_endpoint_stats_are_read_then_they_count_deliveries_and_attempts() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "a").await;
    let id = app.endpoint_at(&tenant, OK_URL).await;
    app.publish(&tenant, "a", json!({ "n": 1 })).await;
    app.publish(&tenant, "a", json!({ "n": 2 })).await;
    app.deliver_all().await;
    // WHEN
    let (status, stats, _) = app.call("GET", &format!("/v1/endpoints/{id}/stats"), Some(&tenant.key), None).await;
    // THEN
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["deliveries"], 2);
    assert_eq!(stats["succeeded"], 2);
    assert_eq!(stats["failed"], 0);
    assert_eq!(stats["attempts"], 2);
    assert_eq!(stats["successfulAttempts"], 2);
    assert!(stats["since"].is_string());
    assert!(stats["lastSuccessAt"].is_string());
    let since = app
        .expect(200, "GET", &format!("/v1/endpoints/{id}/stats?since=2026-01-15T13:00:00Z"), Some(&tenant.key), None)
        .await;
    assert_eq!(since["attempts"], 0, "{since}");
    let bad = app.call("GET", &format!("/v1/endpoints/{id}/stats?since=yesterday"), Some(&tenant.key), None).await;
    assert_problem(&bad, 400, Some("since"));
}

#[tokio::test]
async fn given_deliveries_to_two_endpoints_when_one_endpoints_deliveries_are_listed_then_only_its_own_return() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "a").await;
    let first = app.endpoint_at(&tenant, OK_URL).await;
    let second = app.endpoint_at(&tenant, OK_URL).await;
    app.publish(&tenant, "a", json!({})).await;
    app.fan_out().await;
    // WHEN
    let page = app.expect(200, "GET", &format!("/v1/endpoints/{first}/deliveries"), Some(&tenant.key), None).await;
    // THEN
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["endpointId"], first);
    assert_eq!(page["hasMore"], false);
    let pending = app
        .expect(200, "GET", &format!("/v1/endpoints/{second}/deliveries?status=pending"), Some(&tenant.key), None)
        .await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 1);
    let missing =
        app.call("GET", "/v1/endpoints/ep_01JD3X0000000000000000000/deliveries", Some(&tenant.key), None).await;
    assert_problem(&missing, 404, None);
}

// ------------------------------------------------------------ bad input

/// Bodies every endpoint write (POST, PUT, and PATCH where the field applies) must refuse.
fn bad_endpoint_fields() -> Vec<(Value, String)> {
    let long_url = format!("https://example.com/{}", "a".repeat(2048));
    let many_headers: serde_json::Map<String, Value> = (0..21).map(|i| (format!("x-h{i}"), json!("v"))).collect();
    let long_description = "d".repeat(1025);
    let many_metadata: serde_json::Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let many_types: Vec<String> = (0..101).map(|_| "known".to_string()).collect();
    let long_key = "k".repeat(257);
    vec![
        (json!({ "url": 5 }), "url".into()),
        (json!({ "url": "not a url" }), "url".into()),
        (json!({ "url": "/relative/path" }), "url".into()),
        (json!({ "url": "ftp://example.com/hook" }), "url".into()),
        (json!({ "url": "https://user:pw@example.com/hook" }), "url".into()),
        (json!({ "url": "https://user@example.com/hook" }), "url".into()),
        (json!({ "url": "http://10.0.0.1/hook" }), "url".into()),
        (json!({ "url": "http://169.254.169.254/latest/meta-data" }), "url".into()),
        (json!({ "url": "http://192.168.1.1/" }), "url".into()),
        (json!({ "url": "http://[fe80::1]/" }), "url".into()),
        (json!({ "url": "http://0.0.0.0/" }), "url".into()),
        (json!({ "url": long_url }), "url".into()),
        (json!({ "url": OK_URL, "description": 1 }), "description".into()),
        (json!({ "url": OK_URL, "description": long_description }), "description".into()),
        (json!({ "url": OK_URL, "eventTypes": "a" }), "eventTypes".into()),
        (json!({ "url": OK_URL, "eventTypes": [1] }), "eventTypes[0]".into()),
        (json!({ "url": OK_URL, "eventTypes": ["known", "nope.unknown"] }), "eventTypes[1]".into()),
        (json!({ "url": OK_URL, "headers": ["x"] }), "headers".into()),
        (json!({ "url": OK_URL, "headers": { "x-n": 1 } }), "headers.x-n".into()),
        (json!({ "url": OK_URL, "headers": many_headers }), "headers".into()),
        (json!({ "url": OK_URL, "headers": { "webhook-signature": "v1,forged" } }), "headers.webhook-signature".into()),
        (json!({ "url": OK_URL, "headers": { "Host": "evil.example" } }), "headers.Host".into()),
        (json!({ "url": OK_URL, "headers": { "Content-Type": "text/plain" } }), "headers.Content-Type".into()),
        (json!({ "url": OK_URL, "headers": { "bad header": "v" } }), "headers.bad header".into()),
        (json!({ "url": OK_URL, "headers": { "x-ok": "line\nbreak" } }), "headers.x-ok".into()),
        (json!({ "url": OK_URL, "maxAttempts": 0 }), "maxAttempts".into()),
        (json!({ "url": OK_URL, "maxAttempts": 21 }), "maxAttempts".into()),
        (json!({ "url": OK_URL, "maxAttempts": -1 }), "maxAttempts".into()),
        (json!({ "url": OK_URL, "maxAttempts": "3" }), "maxAttempts".into()),
        (json!({ "url": OK_URL, "timeoutSecs": 31 }), "timeoutSecs".into()),
        (json!({ "url": OK_URL, "timeoutSecs": 0 }), "timeoutSecs".into()),
        (json!({ "url": OK_URL, "payloadFormat": "xml" }), "payloadFormat".into()),
        (json!({ "url": OK_URL, "payloadFormat": 1 }), "payloadFormat".into()),
        (json!({ "url": OK_URL, "isActive": "yes" }), "isActive".into()),
        (json!({ "url": OK_URL, "metadata": { "k": 1 } }), "metadata.k".into()),
        (json!({ "url": OK_URL, "metadata": "k=v" }), "metadata".into()),
        (json!({ "url": OK_URL, "metadata": many_metadata }), "metadata".into()),
        (json!({ "url": OK_URL, "metadata": { long_key.clone(): "v" } }), format!("metadata.{long_key}")),
        (json!({ "url": OK_URL, "metadata": { "k": "v".repeat(1025) } }), "metadata.k".into()),
        (json!({ "url": OK_URL, "eventTypes": many_types }), "eventTypes".into()),
        (json!({ "url": OK_URL, "headers": { "x-big": "v".repeat(4097) } }), "headers.x-big".into()),
        (json!({ "url": OK_URL, "filterTypes": ["a"] }), "filterTypes".into()),
    ]
}

#[tokio::test]
async fn given_bad_endpoint_bodies_when_created_then_each_is_4xx_naming_the_field_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "known").await;
    let mut cases = bad_endpoint_fields();
    cases.push((json!({}), "url".into()));
    cases.push((json!({ "url": "" }), "url".into()));
    cases.push((json!({ "url": null }), "url".into()));
    cases.push((json!({ "url": OK_URL, "secret": "plain-text" }), "secret".into()));
    cases.push((json!({ "url": OK_URL, "secret": "whsec_c2hvcnQ=" }), "secret".into()));
    for (body, field) in cases {
        // WHEN
        let reply = app.call("POST", "/v1/endpoints", Some(&tenant.key), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, 400, Some(&field));
        assert_eq!(app.count("/v1/endpoints", &tenant.key).await, 0, "partial write for {body}");
    }
}

#[tokio::test]
async fn given_bad_endpoint_bodies_when_put_then_each_is_400_naming_the_field_and_the_endpoint_is_unchanged() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "known").await;
    let id = app.endpoint_at(&tenant, OK_URL).await;
    let path = format!("/v1/endpoints/{id}");
    let original = app.expect(200, "GET", &path, Some(&tenant.key), None).await;
    let mut cases = bad_endpoint_fields();
    cases.push((json!({}), "url".into()));
    cases.push((json!({ "url": OK_URL, "secret": skyhook::signing::generate_secret() }), "secret".into()));
    for (body, field) in cases {
        // WHEN
        let reply = app.call("PUT", &path, Some(&tenant.key), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, 400, Some(&field));
        assert_eq!(app.expect(200, "GET", &path, Some(&tenant.key), None).await, original, "PUT {body} changed it");
    }
}

#[tokio::test]
async fn given_bad_endpoint_bodies_when_patched_then_each_is_400_naming_the_field_and_the_endpoint_is_unchanged() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "known").await;
    let id = app.endpoint_at(&tenant, OK_URL).await;
    let path = format!("/v1/endpoints/{id}");
    let original = app.expect(200, "GET", &path, Some(&tenant.key), None).await;
    let mut cases: Vec<(Value, String)> = bad_endpoint_fields()
        .into_iter()
        .map(|(mut body, field)| {
            // PATCH sends only the bad field.
            if field != "url" {
                body.as_object_mut().unwrap().remove("url");
            }
            (body, field)
        })
        .collect();
    cases.push((json!({ "secret": skyhook::signing::generate_secret() }), "secret".into()));
    for (body, field) in cases {
        // WHEN
        let reply = app.call("PATCH", &path, Some(&tenant.key), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, 400, Some(&field));
        assert_eq!(app.expect(200, "GET", &path, Some(&tenant.key), None).await, original, "PATCH {body} changed it");
    }
}

#[tokio::test]
async fn given_bad_rotate_and_test_bodies_then_each_is_4xx_naming_the_field_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let id = app.endpoint_at(&tenant, OK_URL).await;
    let original = app.expect(200, "GET", &format!("/v1/endpoints/{id}"), Some(&tenant.key), None).await;
    let huge = "x".repeat(256 * 1024);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("rotate-secret", json!({ "secret": 1 }), 400, "secret"),
        ("rotate-secret", json!({ "secret": "nope" }), 400, "secret"),
        ("rotate-secret", json!({ "other": 1 }), 400, "other"),
        ("test", json!({ "eventType": 1 }), 400, "eventType"),
        ("test", json!({ "eventType": "bad type!" }), 400, "eventType"),
        ("test", json!({ "eventType": "" }), 400, "eventType"),
        ("test", json!({ "payload": huge }), 413, "payload"),
        ("test", json!({ "extra": true }), 400, "extra"),
    ];
    for (action, body, status, field) in cases {
        // WHEN
        let reply =
            app.call("POST", &format!("/v1/endpoints/{id}/{action}"), Some(&tenant.key), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, status, Some(field));
        assert_eq!(app.count("/v1/events", &tenant.key).await, 0, "{action} {body} wrote an event");
        let now = app.expect(200, "GET", &format!("/v1/endpoints/{id}"), Some(&tenant.key), None).await;
        assert_eq!(now, original, "{action} {body} changed the endpoint");
    }
}

#[tokio::test]
async fn given_limits_exactly_when_an_endpoint_is_created_then_20_headers_and_a_2_kib_url_are_accepted() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let base = "https://example.com/";
    let url = format!("{base}{}", "a".repeat(2048 - base.len()));
    let headers: serde_json::Map<String, Value> = (0..20).map(|i| (format!("x-h{i}"), json!("v"))).collect();
    // WHEN
    let reply = app
        .call(
            "POST",
            "/v1/endpoints",
            Some(&tenant.key),
            Some(json!({ "url": url, "headers": headers, "maxAttempts": 1, "timeoutSecs": 30 })),
        )
        .await;
    // THEN
    assert_eq!(reply.0, 201, "{}", reply.1);
}

#[tokio::test]
async fn given_production_settings_when_endpoints_are_created_then_only_public_https_urls_are_accepted() {
    // GIVEN: the Lambda defaults (https required, loopback blocked)
    let app = TestApp::with_config(|config| *config = skyhook::service::ServiceConfig::default());
    let tenant = app.new_tenant("a").await;
    for url in [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://10.1.2.3/hook",
        "https://100.64.0.1/hook",
        "https://169.254.169.254/hook",
        "https://0x7f000001/hook",
        "https://2130706433/hook",
    ] {
        // WHEN
        let reply = app.call("POST", "/v1/endpoints", Some(&tenant.key), Some(json!({ "url": url }))).await;
        // THEN
        assert_problem(&reply, 400, Some("url"));
    }
    assert_eq!(app.count("/v1/endpoints", &tenant.key).await, 0);
    app.create_endpoint(&tenant, json!({ "url": "https://example.com/hook" })).await;
}

#[tokio::test]
async fn given_local_settings_when_a_loopback_endpoint_is_created_then_it_is_accepted_but_private_ranges_are_not() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    // WHEN
    let loopback =
        app.call("POST", "/v1/endpoints", Some(&tenant.key), Some(json!({ "url": "http://127.0.0.1:8080/x" }))).await;
    let private =
        app.call("POST", "/v1/endpoints", Some(&tenant.key), Some(json!({ "url": "http://172.16.0.1/x" }))).await;
    // THEN
    assert_eq!(loopback.0, 201, "{}", loopback.1);
    assert_problem(&private, 400, Some("url"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_a_patch_in_flight_when_the_secret_is_rotated_then_both_changes_survive() {
    // GIVEN: a PATCH whose validation takes a while (100 event types to look up)
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let mut types = Vec::new();
    for i in 0..100 {
        let name = format!("t.{i}");
        app.create_event_type(&tenant, &name).await;
        types.push(name);
    }
    let id = app.endpoint_at(&tenant, OK_URL).await;
    let path = format!("/v1/endpoints/{id}");
    let rotate_path = format!("{path}/rotate-secret");
    let mut lost = Vec::new();
    for round in 0..5 {
        let subscribed = if round % 2 == 0 { types.clone() } else { Vec::new() };
        // WHEN
        let patch = app.call("PATCH", &path, Some(&tenant.key), Some(json!({ "eventTypes": subscribed })));
        let rotate = async {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            app.call("POST", &rotate_path, Some(&tenant.key), None).await
        };
        let (patched, rotated) = tokio::join!(patch, rotate);
        assert_eq!(patched.0, 200, "{}", patched.1);
        assert_eq!(rotated.0, 200, "{}", rotated.1);
        let got = app.expect(200, "GET", &path, Some(&tenant.key), None).await;
        if got["secretLast4"] != rotated.1["secretLast4"] {
            lost.push(format!("round {round}: the rotation was undone"));
        }
        if got["eventTypes"].as_array().unwrap().len() != subscribed.len() {
            lost.push(format!("round {round}: the PATCH was undone"));
        }
    }
    // THEN
    assert!(lost.is_empty(), "lost updates: {lost:?}");
}
