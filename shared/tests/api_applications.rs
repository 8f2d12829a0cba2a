//! Applications and API keys (admin routes), SPEC §3.

mod support;

use serde_json::{Value, json};
use support::*;

fn is_rfc3339_utc(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test]
async fn given_the_admin_token_when_an_application_is_created_then_it_is_201_with_an_app_id() {
    // GIVEN
    let app = TestApp::new();
    // WHEN
    let (status, body, headers) =
        app.call("POST", "/v1/applications", Some(&app.admin), Some(json!({ "name": "Acme" }))).await;
    // THEN
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert!(str_of(&body, "id").starts_with("app_"), "{body}");
    assert_eq!(body["name"], "Acme");
    assert_eq!(body["retentionDays"], 31);
    assert!(body["rateLimit"].is_null());
    assert!(is_rfc3339_utc(&body["createdAt"]) && is_rfc3339_utc(&body["updatedAt"]), "{body}");
}

#[tokio::test]
async fn given_applications_when_listed_then_the_page_shape_is_data_next_cursor_has_more() {
    // GIVEN
    let app = TestApp::new();
    let a = app.new_tenant("a").await;
    let b = app.new_tenant("b").await;
    // WHEN
    let page = app.expect(200, "GET", "/v1/applications", Some(&app.admin), None).await;
    // THEN
    let listed = ids(&page);
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&a.app_id) && listed.contains(&b.app_id));
    assert_eq!(page["hasMore"], false);
    assert!(page["nextCursor"].is_null());
}

#[tokio::test]
async fn given_an_application_when_fetched_then_it_is_200_with_its_fields() {
    // GIVEN
    let app = TestApp::new();
    let created = app
        .expect(
            201,
            "POST",
            "/v1/applications",
            Some(&app.admin),
            Some(json!({ "name": "Shop", "retentionDays": 7, "rateLimit": 50 })),
        )
        .await;
    let id = str_of(&created, "id");
    // WHEN
    let got = app.expect(200, "GET", &format!("/v1/applications/{id}"), Some(&app.admin), None).await;
    // THEN
    assert_eq!(got, created);
    assert_eq!(got["retentionDays"], 7);
    assert_eq!(got["rateLimit"], 50);
}

#[tokio::test]
async fn given_an_application_when_patched_then_only_the_given_fields_change_and_it_is_200() {
    // GIVEN
    let app = TestApp::new();
    let created = app
        .expect(
            201,
            "POST",
            "/v1/applications",
            Some(&app.admin),
            Some(json!({ "name": "Shop", "retentionDays": 7, "rateLimit": 50 })),
        )
        .await;
    let id = str_of(&created, "id");
    app.advance(chrono::Duration::seconds(5));
    // WHEN
    let patched = app
        .expect(200, "PATCH", &format!("/v1/applications/{id}"), Some(&app.admin), Some(json!({ "name": "Shop 2" })))
        .await;
    // THEN
    assert_eq!(patched["name"], "Shop 2");
    assert_eq!(patched["retentionDays"], 7);
    assert_eq!(patched["rateLimit"], 50);
    assert_ne!(patched["updatedAt"], created["updatedAt"]);
    let got = app.expect(200, "GET", &format!("/v1/applications/{id}"), Some(&app.admin), None).await;
    assert_eq!(got, patched);
}

#[tokio::test]
async fn given_an_application_when_patched_with_a_null_rate_limit_then_the_limit_is_removed() {
    // GIVEN
    let app = TestApp::new();
    let created = app
        .expect(201, "POST", "/v1/applications", Some(&app.admin), Some(json!({ "name": "Shop", "rateLimit": 50 })))
        .await;
    let id = str_of(&created, "id");
    // WHEN
    let patched = app
        .expect(200, "PATCH", &format!("/v1/applications/{id}"), Some(&app.admin), Some(json!({ "rateLimit": null })))
        .await;
    // THEN
    assert!(patched["rateLimit"].is_null(), "{patched}");
}

#[tokio::test]
async fn given_an_application_when_put_then_it_is_replaced_with_defaults_for_missing_fields() {
    // GIVEN
    let app = TestApp::new();
    let created = app
        .expect(
            201,
            "POST",
            "/v1/applications",
            Some(&app.admin),
            Some(json!({ "name": "Shop", "retentionDays": 7, "rateLimit": 50 })),
        )
        .await;
    let id = str_of(&created, "id");
    // WHEN: the read-only fields echoed back are accepted
    let put = app
        .expect(
            200,
            "PUT",
            &format!("/v1/applications/{id}"),
            Some(&app.admin),
            Some(json!({ "id": id, "name": "Renamed", "createdAt": created["createdAt"] })),
        )
        .await;
    // THEN
    assert_eq!(put["id"], id);
    assert_eq!(put["name"], "Renamed");
    assert_eq!(put["retentionDays"], 31);
    assert!(put["rateLimit"].is_null());
}

#[tokio::test]
async fn given_an_application_with_data_when_deleted_then_it_is_204_and_gone_with_its_keys() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("doomed").await;
    app.create_event_type(&tenant, "order.created").await;
    app.endpoint_at(&tenant, OK_URL).await;
    app.publish(&tenant, "order.created", json!({ "id": 1 })).await;
    app.fan_out().await;
    // WHEN
    let (status, body, _) =
        app.call("DELETE", &format!("/v1/applications/{}", tenant.app_id), Some(&app.admin), None).await;
    // THEN
    assert_eq!(status, 204);
    assert!(body.is_null());
    let reply = app.call("GET", &format!("/v1/applications/{}", tenant.app_id), Some(&app.admin), None).await;
    assert_problem(&reply, 404, None);
    let reply = app.call("GET", "/v1/endpoints", Some(&tenant.key), None).await;
    assert_problem(&reply, 401, None);
    let reply = app.call("DELETE", &format!("/v1/applications/{}", tenant.app_id), Some(&app.admin), None).await;
    assert_problem(&reply, 404, None);
}

#[tokio::test]
async fn given_an_unknown_or_malformed_application_id_when_fetched_then_it_is_404() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.expect(204, "DELETE", &format!("/v1/applications/{}", tenant.app_id), Some(&app.admin), None).await;
    for id in [tenant.app_id.as_str(), "app_nope", "ep_01JD3X0000000000000000000", "%00"] {
        // WHEN
        let reply = app.call("GET", &format!("/v1/applications/{id}"), Some(&app.admin), None).await;
        // THEN
        assert_problem(&reply, 404, None);
    }
}

// ------------------------------------------------------------------ API keys

#[tokio::test]
async fn given_an_application_when_an_api_key_is_created_then_it_is_201_with_id_key_prefix_last4_and_all_scopes() {
    // GIVEN
    let app = TestApp::new();
    let created = app.expect(201, "POST", "/v1/applications", Some(&app.admin), Some(json!({ "name": "a" }))).await;
    let app_id = str_of(&created, "id");
    // WHEN
    let key = app
        .expect(
            201,
            "POST",
            &format!("/v1/applications/{app_id}/api-keys"),
            Some(&app.admin),
            Some(json!({ "name": "ci" })),
        )
        .await;
    // THEN
    assert!(str_of(&key, "id").starts_with("key_"), "{key}");
    let secret = str_of(&key, "key");
    assert!(secret.starts_with(str_of(&key, "prefix")), "{key}");
    assert!(secret.ends_with(str_of(&key, "last4")), "{key}");
    assert_eq!(str_of(&key, "last4").chars().count(), 4);
    let mut scopes: Vec<&str> = key["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    scopes.sort();
    let mut all = ALL_SCOPES.to_vec();
    all.sort();
    assert_eq!(scopes, all);
    assert_eq!(key["applicationId"], app_id);
    assert_eq!(key["name"], "ci");
    assert!(key["revokedAt"].is_null());
    assert!(key.get("keyHash").is_none());
    // and the key works at once
    app.expect(200, "GET", "/v1/endpoints", Some(secret), None).await;
}

#[tokio::test]
async fn given_scopes_when_an_api_key_is_created_then_it_has_exactly_those_scopes() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    // WHEN
    let key = app
        .expect(
            201,
            "POST",
            &format!("/v1/applications/{}/api-keys", tenant.app_id),
            Some(&app.admin),
            Some(json!({ "name": "reader", "scopes": ["events:read", "events:read", "webhooks:read"] })),
        )
        .await;
    // THEN
    let mut scopes: Vec<&str> = key["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    scopes.sort();
    assert_eq!(scopes, ["events:read", "webhooks:read"]);
}

#[tokio::test]
async fn given_a_created_api_key_when_keys_are_listed_then_only_prefix_and_last4_are_shown_never_the_key_or_hash() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let hash = skyhook::crypto::sha256_hex(tenant.key.as_bytes());
    // WHEN
    let (status, page, _) =
        app.call("GET", &format!("/v1/applications/{}/api-keys", tenant.app_id), Some(&app.admin), None).await;
    // THEN
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["hasMore"], false);
    let listed = &page["data"][0];
    assert_eq!(listed["id"], tenant.key_id);
    assert!(tenant.key.starts_with(str_of(listed, "prefix")));
    assert!(tenant.key.ends_with(str_of(listed, "last4")));
    assert!(listed.get("key").is_none(), "{listed}");
    let text = page.to_string();
    assert!(!text.contains(&tenant.key), "the key leaked: {text}");
    assert!(!text.contains(&hash), "the key hash leaked: {text}");
    assert!(!text.to_ascii_lowercase().contains("hash"), "a hash field is listed: {text}");
}

#[tokio::test]
async fn given_an_api_key_when_revoked_then_it_is_204_listed_as_revoked_and_rejected_at_once() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.expect(200, "GET", "/v1/endpoints", Some(&tenant.key), None).await;
    // WHEN
    let (status, body, _) = app
        .call(
            "DELETE",
            &format!("/v1/applications/{}/api-keys/{}", tenant.app_id, tenant.key_id),
            Some(&app.admin),
            None,
        )
        .await;
    // THEN
    assert_eq!(status, 204);
    assert!(body.is_null());
    let page =
        app.expect(200, "GET", &format!("/v1/applications/{}/api-keys", tenant.app_id), Some(&app.admin), None).await;
    assert!(is_rfc3339_utc(&page["data"][0]["revokedAt"]), "{page}");
    assert_problem(&app.call("GET", "/v1/endpoints", Some(&tenant.key), None).await, 401, None);
}

#[tokio::test]
async fn given_a_key_of_another_application_when_revoked_through_this_one_then_it_is_404_and_still_works() {
    // GIVEN
    let app = TestApp::new();
    let a = app.new_tenant("a").await;
    let b = app.new_tenant("b").await;
    // WHEN
    let reply = app
        .call("DELETE", &format!("/v1/applications/{}/api-keys/{}", a.app_id, b.key_id), Some(&app.admin), None)
        .await;
    // THEN
    assert_problem(&reply, 404, None);
    app.expect(200, "GET", "/v1/endpoints", Some(&b.key), None).await;
    let reply =
        app.call("DELETE", &format!("/v1/applications/{}/api-keys/key_nope", a.app_id), Some(&app.admin), None).await;
    assert_problem(&reply, 404, None);
}

#[tokio::test]
async fn given_an_unknown_application_when_a_key_is_created_or_listed_then_it_is_404() {
    // GIVEN
    let app = TestApp::new();
    let gone = app.new_tenant("gone").await;
    app.expect(204, "DELETE", &format!("/v1/applications/{}", gone.app_id), Some(&app.admin), None).await;
    // WHEN
    let create = app
        .call(
            "POST",
            &format!("/v1/applications/{}/api-keys", gone.app_id),
            Some(&app.admin),
            Some(json!({ "name": "k" })),
        )
        .await;
    let list = app.call("GET", &format!("/v1/applications/{}/api-keys", gone.app_id), Some(&app.admin), None).await;
    // THEN
    assert_problem(&create, 404, None);
    assert_problem(&list, 404, None);
}

// ------------------------------------------------------------ bad input

#[tokio::test]
async fn given_bad_application_bodies_when_created_then_each_is_400_naming_the_field_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let long = "x".repeat(257);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "name"),
        (json!({ "name": null }), "name"),
        (json!({ "name": "" }), "name"),
        (json!({ "name": "   " }), "name"),
        (json!({ "name": 5 }), "name"),
        (json!({ "name": ["a"] }), "name"),
        (json!({ "name": long }), "name"),
        (json!({ "name": "ok", "retentionDays": 0 }), "retentionDays"),
        (json!({ "name": "ok", "retentionDays": 91 }), "retentionDays"),
        (json!({ "name": "ok", "retentionDays": -1 }), "retentionDays"),
        (json!({ "name": "ok", "retentionDays": 1.5 }), "retentionDays"),
        (json!({ "name": "ok", "retentionDays": "31" }), "retentionDays"),
        (json!({ "name": "ok", "rateLimit": 0 }), "rateLimit"),
        (json!({ "name": "ok", "rateLimit": true }), "rateLimit"),
        (json!({ "name": "ok", "colour": "red" }), "colour"),
        (json!({ "name": "ok", "id": "app_01JD3X0000000000000000000" }), "id"),
    ];
    for (body, field) in cases {
        let before = app.count("/v1/applications", &app.admin).await;
        // WHEN
        let reply = app.call("POST", "/v1/applications", Some(&app.admin), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, 400, Some(field));
        assert_eq!(app.count("/v1/applications", &app.admin).await, before, "partial write for {body}");
    }
}

#[tokio::test]
async fn given_names_at_the_limit_when_an_application_is_created_then_256_chars_are_accepted() {
    // GIVEN
    let app = TestApp::new();
    let name = "é".repeat(256);
    // WHEN
    let created = app.expect(201, "POST", "/v1/applications", Some(&app.admin), Some(json!({ "name": name }))).await;
    // THEN
    assert_eq!(created["name"], name);
}

#[tokio::test]
async fn given_bad_application_updates_when_patched_or_put_then_each_is_400_naming_the_field_and_nothing_changes() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("stable").await;
    let path = format!("/v1/applications/{}", tenant.app_id);
    let original = app.expect(200, "GET", &path, Some(&app.admin), None).await;
    let long = "x".repeat(257);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("PATCH", json!({ "name": "" }), "name"),
        ("PATCH", json!({ "name": long }), "name"),
        ("PATCH", json!({ "name": 1 }), "name"),
        ("PATCH", json!({ "retentionDays": 0 }), "retentionDays"),
        ("PATCH", json!({ "retentionDays": 91 }), "retentionDays"),
        ("PATCH", json!({ "rateLimit": "fast" }), "rateLimit"),
        ("PATCH", json!({ "bogus": 1 }), "bogus"),
        ("PUT", json!({}), "name"),
        ("PUT", json!({ "name": "ok", "retentionDays": 91 }), "retentionDays"),
        ("PUT", json!({ "name": "ok", "rateLimit": 0 }), "rateLimit"),
        ("PUT", json!({ "name": "ok", "bogus": 1 }), "bogus"),
    ];
    for (method, body, field) in cases {
        // WHEN
        let reply = app.call(method, &path, Some(&app.admin), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, 400, Some(field));
        assert_eq!(app.expect(200, "GET", &path, Some(&app.admin), None).await, original, "{method} {body} changed it");
    }
}

#[tokio::test]
async fn given_bad_api_key_bodies_when_created_then_each_is_400_naming_the_field_and_no_key_is_written() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let path = format!("/v1/applications/{}/api-keys", tenant.app_id);
    let long = "k".repeat(257);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "name"),
        (json!({ "name": "" }), "name"),
        (json!({ "name": long }), "name"),
        (json!({ "name": 7 }), "name"),
        (json!({ "name": "k", "scopes": [] }), "scopes"),
        (json!({ "name": "k", "scopes": "events:read" }), "scopes"),
        (json!({ "name": "k", "scopes": ["admin"] }), "scopes[0]"),
        (json!({ "name": "k", "scopes": ["events:read", "Events:Write"] }), "scopes[1]"),
        (json!({ "name": "k", "scopes": [1] }), "scopes[0]"),
        (json!({ "name": "k", "key": "sk_mine" }), "key"),
    ];
    for (body, field) in cases {
        let before = app.count(&path, &app.admin).await;
        // WHEN
        let reply = app.call("POST", &path, Some(&app.admin), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, 400, Some(field));
        assert_eq!(app.count(&path, &app.admin).await, before, "partial write for {body}");
    }
}
