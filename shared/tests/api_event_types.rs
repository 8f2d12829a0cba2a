//! Event types, SPEC §3: name, description, optional JSON Schema, archived flag.

mod support;

use serde_json::{Value, json};
use support::*;

fn names(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

const AMOUNT_SCHEMA: &str = r#"{
    "type": "object",
    "properties": { "amount": { "type": "integer", "minimum": 0 }, "currency": { "type": "string" } },
    "required": ["amount"]
}"#;

#[tokio::test]
async fn given_a_key_when_an_event_type_is_created_then_it_is_201_with_its_fields() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let schema: Value = serde_json::from_str(AMOUNT_SCHEMA).unwrap();
    // WHEN
    let (status, body, _) = app
        .call(
            "POST",
            "/v1/event-types",
            Some(&tenant.key),
            Some(json!({ "name": "invoice.paid", "description": "An invoice was paid", "schema": schema })),
        )
        .await;
    // THEN
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "invoice.paid");
    assert_eq!(body["description"], "An invoice was paid");
    assert_eq!(body["schema"], schema);
    assert_eq!(body["archived"], false);
    assert!(body.get("applicationId").is_none(), "{body}");
    assert!(body["createdAt"].is_string());
}

#[tokio::test]
async fn given_an_existing_event_type_when_created_again_then_it_is_409() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "invoice.paid").await;
    // WHEN
    let reply = app.call("POST", "/v1/event-types", Some(&tenant.key), Some(json!({ "name": "invoice.paid" }))).await;
    // THEN
    assert_problem(&reply, 409, None);
    assert_eq!(app.count("/v1/event-types?includeArchived=true", &tenant.key).await, 1);
}

#[tokio::test]
async fn given_active_and_archived_types_when_listed_then_archived_ones_show_only_with_include_archived() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "a.live").await;
    app.expect(201, "POST", "/v1/event-types", Some(&tenant.key), Some(json!({ "name": "a.old", "archived": true })))
        .await;
    // WHEN
    let default = app.expect(200, "GET", "/v1/event-types", Some(&tenant.key), None).await;
    let all = app.expect(200, "GET", "/v1/event-types?includeArchived=true", Some(&tenant.key), None).await;
    // THEN
    assert_eq!(names(&default), ["a.live"]);
    assert_eq!(default["hasMore"], false);
    assert!(default["nextCursor"].is_null());
    let mut all = names(&all);
    all.sort();
    assert_eq!(all, ["a.live", "a.old"]);
}

#[tokio::test]
async fn given_an_event_type_when_fetched_by_name_then_it_is_200_and_unknown_names_are_404() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let created = app.create_event_type(&tenant, "user:signed_up.v2").await;
    // WHEN
    let got = app.expect(200, "GET", "/v1/event-types/user:signed_up.v2", Some(&tenant.key), None).await;
    let encoded = app.expect(200, "GET", "/v1/event-types/user%3Asigned_up%2Ev2", Some(&tenant.key), None).await;
    let missing = app.call("GET", "/v1/event-types/user.deleted", Some(&tenant.key), None).await;
    // THEN
    assert_eq!(got, created);
    assert_eq!(encoded, created);
    assert_problem(&missing, 404, None);
}

#[tokio::test]
async fn given_no_event_type_when_put_then_it_is_created_201_and_a_second_put_replaces_it_200() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    // WHEN
    let (first_status, first, _) = app
        .call(
            "PUT",
            "/v1/event-types/order.shipped",
            Some(&tenant.key),
            Some(json!({ "description": "v1", "archived": true })),
        )
        .await;
    app.advance(chrono::Duration::seconds(1));
    let (second_status, second, _) = app
        .call(
            "PUT",
            "/v1/event-types/order.shipped",
            Some(&tenant.key),
            Some(json!({ "name": "order.shipped", "description": "v2", "createdAt": first["createdAt"] })),
        )
        .await;
    // THEN
    assert_eq!(first_status, 201, "{first}");
    assert_eq!(first["name"], "order.shipped");
    assert_eq!(first["archived"], true);
    assert_eq!(second_status, 200, "{second}");
    assert_eq!(second["description"], "v2");
    assert_eq!(second["archived"], false, "PUT replaces: an absent flag is the default");
    assert_eq!(second["createdAt"], first["createdAt"]);
    assert_ne!(second["updatedAt"], first["updatedAt"]);
    let got = app.expect(200, "GET", "/v1/event-types/order.shipped", Some(&tenant.key), None).await;
    assert_eq!(got, second);
}

#[tokio::test]
async fn given_an_event_type_when_deleted_then_it_is_204_and_then_404() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "tmp.thing").await;
    // WHEN
    let (status, body, _) = app.call("DELETE", "/v1/event-types/tmp.thing", Some(&tenant.key), None).await;
    // THEN
    assert_eq!(status, 204);
    assert!(body.is_null());
    assert_problem(&app.call("GET", "/v1/event-types/tmp.thing", Some(&tenant.key), None).await, 404, None);
    assert_problem(&app.call("DELETE", "/v1/event-types/tmp.thing", Some(&tenant.key), None).await, 404, None);
}

#[tokio::test]
async fn given_an_archived_event_type_when_published_then_it_is_400_on_event_type_and_no_event_is_written() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "legacy.thing").await;
    app.expect(200, "PUT", "/v1/event-types/legacy.thing", Some(&tenant.key), Some(json!({ "archived": true }))).await;
    // WHEN
    let reply = app
        .call("POST", "/v1/events", Some(&tenant.key), Some(json!({ "eventType": "legacy.thing", "payload": {} })))
        .await;
    // THEN
    assert_problem(&reply, 400, Some("eventType"));
    assert_eq!(app.count("/v1/events", &tenant.key).await, 0);
    // and un-archiving makes it publishable again
    app.expect(200, "PUT", "/v1/event-types/legacy.thing", Some(&tenant.key), Some(json!({ "archived": false }))).await;
    app.publish(&tenant, "legacy.thing", json!({})).await;
}

#[tokio::test]
async fn given_a_json_schema_when_a_non_conforming_payload_is_published_then_it_is_400_naming_the_payload_path() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let schema: Value = serde_json::from_str(AMOUNT_SCHEMA).unwrap();
    app.expect(
        201,
        "POST",
        "/v1/event-types",
        Some(&tenant.key),
        Some(json!({ "name": "invoice.paid", "schema": schema })),
    )
    .await;
    let publish = |payload: Value| {
        let app = &app;
        let key = tenant.key.clone();
        async move {
            app.call("POST", "/v1/events", Some(&key), Some(json!({ "eventType": "invoice.paid", "payload": payload })))
                .await
        }
    };
    // WHEN
    let wrong_type = publish(json!({ "amount": "ten" })).await;
    let negative = publish(json!({ "amount": -1 })).await;
    let missing = publish(json!({ "currency": "EUR" })).await;
    let not_object = publish(json!([1, 2])).await;
    // THEN
    assert_problem(&wrong_type, 400, Some("payload.amount"));
    assert_problem(&negative, 400, Some("payload.amount"));
    assert_problem(&missing, 400, Some("payload"));
    assert_problem(&not_object, 400, Some("payload"));
    assert_eq!(app.count("/v1/events", &tenant.key).await, 0, "rejected payloads were written");
    let (status, body, _) = publish(json!({ "amount": 10, "currency": "EUR" })).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn given_bad_event_type_bodies_when_created_then_each_is_400_naming_the_field_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let long = "n".repeat(257);
    let long_description = "d".repeat(1025);
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "name"),
        (json!({ "name": "" }), "name"),
        (json!({ "name": 42 }), "name"),
        (json!({ "name": long }), "name"),
        (json!({ "name": "has space" }), "name"),
        (json!({ "name": "a/b" }), "name"),
        (json!({ "name": "ok.name", "description": 1 }), "description"),
        (json!({ "name": "ok.name", "description": long_description }), "description"),
        (json!({ "name": "ok.name", "schema": "object" }), "schema"),
        (json!({ "name": "ok.name", "schema": [1] }), "schema"),
        (json!({ "name": "ok.name", "schema": { "type": "nonsense" } }), "schema"),
        (json!({ "name": "ok.name", "archived": "yes" }), "archived"),
        (json!({ "name": "ok.name", "version": 2 }), "version"),
    ];
    for (body, field) in cases {
        let before = app.count("/v1/event-types?includeArchived=true", &tenant.key).await;
        // WHEN
        let reply = app.call("POST", "/v1/event-types", Some(&tenant.key), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, 400, Some(field));
        assert_eq!(
            app.count("/v1/event-types?includeArchived=true", &tenant.key).await,
            before,
            "partial write for {body}"
        );
    }
}

#[tokio::test]
async fn given_bad_event_type_puts_then_each_is_400_naming_the_field_and_nothing_is_created_or_changed() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let existing = app.create_event_type(&tenant, "kept.type").await;
    let long = "n".repeat(257);
    let cases: Vec<(String, Value, &str)> = vec![
        ("/v1/event-types/kept.type".into(), json!({ "name": "other.name" }), "name"),
        ("/v1/event-types/kept.type".into(), json!({ "description": false }), "description"),
        ("/v1/event-types/kept.type".into(), json!({ "schema": 3 }), "schema"),
        ("/v1/event-types/kept.type".into(), json!({ "schema": { "type": "nonsense" } }), "schema"),
        ("/v1/event-types/kept.type".into(), json!({ "archived": 1 }), "archived"),
        ("/v1/event-types/kept.type".into(), json!({ "extra": 1 }), "extra"),
        ("/v1/event-types/new.type".into(), json!({ "schema": "x" }), "schema"),
        ("/v1/event-types/bad%20name".into(), json!({}), "name"),
        (format!("/v1/event-types/{long}"), json!({}), "name"),
    ];
    for (path, body, field) in cases {
        // WHEN
        let reply = app.call("PUT", &path, Some(&tenant.key), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, 400, Some(field));
        assert_eq!(app.count("/v1/event-types?includeArchived=true", &tenant.key).await, 1, "{path} {body} wrote");
        let kept = app.expect(200, "GET", "/v1/event-types/kept.type", Some(&tenant.key), None).await;
        assert_eq!(kept, existing, "{path} {body} changed it");
    }
}

#[tokio::test]
async fn given_a_bad_include_archived_flag_when_listing_then_it_is_400_on_that_parameter() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    // WHEN
    let reply = app.call("GET", "/v1/event-types?includeArchived=maybe", Some(&tenant.key), None).await;
    // THEN
    assert_problem(&reply, 400, Some("includeArchived"));
}

#[tokio::test]
async fn given_a_name_made_only_of_dots_when_an_event_type_is_created_then_it_is_400_on_name() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    for name in [".", ".."] {
        // WHEN
        let reply = app.call("POST", "/v1/event-types", Some(&tenant.key), Some(json!({ "name": name }))).await;
        // THEN: `GET /v1/event-types/..` would be normalised to `GET /v1/` by clients and API Gateway
        assert_problem(&reply, 400, Some("name"));
    }
    assert_eq!(app.count("/v1/event-types?includeArchived=true", &tenant.key).await, 0);
}

#[tokio::test]
async fn given_a_schema_with_a_remote_ref_when_an_event_type_is_created_then_it_is_400_on_schema_without_fetching() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let started = std::time::Instant::now();
    for reference in
        ["http://169.254.169.254/latest/meta-data", "https://example.com/schema.json", "file:///etc/passwd"]
    {
        // WHEN
        let reply = app
            .call(
                "POST",
                "/v1/event-types",
                Some(&tenant.key),
                Some(json!({ "name": "remote.ref", "schema": { "$ref": reference } })),
            )
            .await;
        // THEN
        assert_problem(&reply, 400, Some("schema"));
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "looks like a $ref was fetched");
    assert_eq!(app.count("/v1/event-types?includeArchived=true", &tenant.key).await, 0);
}

#[tokio::test]
async fn given_a_schema_over_64_kib_when_an_event_type_is_created_then_it_is_400_on_schema() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let schema = json!({ "type": "object", "description": "d".repeat(64 * 1024) });
    // WHEN
    let reply = app
        .call("POST", "/v1/event-types", Some(&tenant.key), Some(json!({ "name": "big.schema", "schema": schema })))
        .await;
    // THEN
    assert_problem(&reply, 400, Some("schema"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_concurrent_puts_of_a_new_event_type_then_one_creates_it_and_none_fails() {
    // GIVEN
    let app = std::sync::Arc::new(TestApp::new());
    let tenant = app.new_tenant("a").await;
    // WHEN
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (app, key) = (app.clone(), tenant.key.clone());
        set.spawn(async move {
            app.call("PUT", "/v1/event-types/raced.type", Some(&key), Some(json!({ "description": format!("{i}") })))
                .await
        });
    }
    let mut statuses = Vec::new();
    while let Some(reply) = set.join_next().await {
        let (status, body, _) = reply.unwrap();
        assert!(matches!(status, 200 | 201), "a concurrent PUT answered {status}: {body}");
        statuses.push(status);
    }
    // THEN
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
}
