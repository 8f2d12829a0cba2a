//! The delivery controls through the router: endpoint fields (ordering, rate
//! limit, breaker, filter, signature schemes), their validation, the stats
//! view of the breaker, and the replay routes' answers.

mod support;

use serde_json::json;
use support::*;

const OK_URL: &str = "http://127.0.0.1:9/hook";

#[tokio::test]
async fn given_controls_when_an_endpoint_is_created_then_they_read_back_and_v1a_brings_a_public_key() {
    // GIVEN a tenant with an event type
    let app = TestApp::new();
    let t = app.new_tenant("acme").await;
    app.create_event_type(&t, "order.created").await;

    // WHEN an endpoint is created with every control
    let filter = json!({"or": [{"field": "amount", "gte": 100}, {"field": "vip", "exists": true}]});
    let created = app
        .create_endpoint(
            &t,
            json!({
                "url": OK_URL,
                "ordered": true,
                "rateLimit": 25,
                "circuitBreaker": {"failureRatio": 0.25, "minRequests": 10},
                "filter": filter,
                "signatureSchemes": ["v1", "v1a"],
            }),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let got = app.expect(200, "GET", &format!("/v1/endpoints/{id}"), Some(&t.key), None).await;

    // THEN GET shows them, the breaker's other settings at their defaults, and a whpk_ key
    assert_eq!(got["ordered"], true);
    assert_eq!(got["rateLimit"], 25);
    assert_eq!(
        got["circuitBreaker"],
        json!({"enabled": true, "failureRatio": 0.25, "minRequests": 10, "windowSecs": 60, "openSecs": 30})
    );
    assert_eq!(got["filter"], filter);
    assert_eq!(got["signatureSchemes"], json!(["v1", "v1a"]));
    assert!(got["publicKey"].as_str().unwrap().starts_with("whpk_"));
    assert!(got.get("signingKeys").is_none() && !got.to_string().contains("whsk_"), "no private key shown: {got}");

    // WHEN a PATCH removes the filter and the limit, and turns ordering off
    let patched = app
        .expect(
            200,
            "PATCH",
            &format!("/v1/endpoints/{id}"),
            Some(&t.key),
            Some(json!({"filter": null, "rateLimit": null, "ordered": false, "circuitBreaker": {"enabled": false}})),
        )
        .await;
    // THEN those change and the rest stays (the public key too)
    assert!(patched["filter"].is_null() && patched["rateLimit"].is_null());
    assert_eq!(
        (patched["ordered"].clone(), patched["circuitBreaker"]["enabled"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(patched["circuitBreaker"]["failureRatio"], 0.25);
    assert_eq!(patched["publicKey"], got["publicKey"]);

    // AND the stats show the breaker (closed, disabled) and the controls
    let stats = app.expect(200, "GET", &format!("/v1/endpoints/{id}/stats"), Some(&t.key), None).await;
    assert_eq!(stats["circuit"]["state"], "closed");
    assert_eq!(stats["circuit"]["enabled"], false);
    assert_eq!(stats["ordered"], false);
}

#[tokio::test]
async fn given_bad_controls_when_an_endpoint_is_written_then_each_field_is_named_and_nothing_is_written() {
    // GIVEN a tenant
    let app = TestApp::new();
    let t = app.new_tenant("acme").await;
    let cases = [
        (json!({"url": OK_URL, "filter": {"and": [{"field": "amount", "gte": true}]}}), "filter.and[0].gte"),
        (json!({"url": OK_URL, "filter": {"field": "a", "gtx": 1}}), "filter.gtx"),
        (json!({"url": OK_URL, "filter": "amount > 5"}), "filter"),
        (json!({"url": OK_URL, "rateLimit": 0}), "rateLimit"),
        (json!({"url": OK_URL, "rateLimit": "fast"}), "rateLimit"),
        (json!({"url": OK_URL, "circuitBreaker": {"failureRatio": 2}}), "circuitBreaker.failureRatio"),
        (json!({"url": OK_URL, "circuitBreaker": {"openSecs": 0}}), "circuitBreaker.openSecs"),
        (json!({"url": OK_URL, "circuitBreaker": {"colour": "red"}}), "circuitBreaker.colour"),
        (json!({"url": OK_URL, "signatureSchemes": ["v2"]}), "signatureSchemes[0]"),
        (json!({"url": OK_URL, "signatureSchemes": []}), "signatureSchemes"),
        (json!({"url": OK_URL, "ordered": "yes"}), "ordered"),
    ];
    for (body, field) in cases {
        // WHEN it is sent
        let reply = app.call("POST", "/v1/endpoints", Some(&t.key), Some(body.clone())).await;
        // THEN a 400 names the field
        assert_problem(&reply, 400, Some(field));
    }
    // AND no endpoint was written
    assert_eq!(app.count("/v1/endpoints", &t.key).await, 0);
    // AND a filter error says where and what
    let reply = app
        .call(
            "POST",
            "/v1/endpoints",
            Some(&t.key),
            Some(json!({"url": OK_URL, "filter": {"and": [{"field": "amount", "gte": true}]}})),
        )
        .await;
    let message = reply.1["errors"][0]["message"].as_str().unwrap().to_string();
    assert!(message.contains("number"), "{message}");
}

#[tokio::test]
async fn given_the_replay_routes_when_called_badly_then_they_answer_4xx_problems() {
    // GIVEN an endpoint, a disabled one, and another tenant
    let app = TestApp::new();
    let t = app.new_tenant("acme").await;
    let other = app.new_tenant("other").await;
    let ep = app.endpoint_at(&t, OK_URL).await;
    let disabled = app.create_endpoint(&t, json!({"url": OK_URL, "isActive": false})).await;
    let disabled = disabled["id"].as_str().unwrap();
    let hour_ago = (start_time() - chrono::Duration::hours(1)).to_rfc3339();
    let path = format!("/v1/endpoints/{ep}/replay");

    // WHEN / THEN: `from` missing, `to` before `from`, far past, unknown type, unknown field
    assert_problem(&app.call("POST", &path, Some(&t.key), Some(json!({}))).await, 400, Some("from"));
    let before = (start_time() - chrono::Duration::hours(2)).to_rfc3339();
    assert_problem(
        &app.call("POST", &path, Some(&t.key), Some(json!({"from": hour_ago, "to": before}))).await,
        400,
        Some("to"),
    );
    let ancient = (start_time() - chrono::Duration::days(400)).to_rfc3339();
    assert_problem(&app.call("POST", &path, Some(&t.key), Some(json!({"from": ancient}))).await, 400, Some("from"));
    let unknown = json!({"from": hour_ago, "eventTypes": ["no.such.type"]});
    assert_problem(&app.call("POST", &path, Some(&t.key), Some(unknown)).await, 400, Some("eventTypes[0]"));
    let extra = json!({"from": hour_ago, "dryRun": true});
    assert_problem(&app.call("POST", &path, Some(&t.key), Some(extra)).await, 400, Some("dryRun"));
    // AND a disabled endpoint is a 409, another tenant's a 404, an unknown replay a 404
    let to_disabled = format!("/v1/endpoints/{disabled}/replay");
    assert_problem(&app.call("POST", &to_disabled, Some(&t.key), Some(json!({"from": hour_ago}))).await, 409, None);
    assert_problem(&app.call("POST", &path, Some(&other.key), Some(json!({"from": hour_ago}))).await, 404, None);
    let unknown_replay = format!("/v1/endpoints/{ep}/replays/rpl_01JD3X5Q3V1R7N9GZ8W6Y2K4TB");
    assert_problem(&app.call("GET", &unknown_replay, Some(&t.key), None).await, 404, None);
    // AND nothing was started
    assert_eq!(app.count(&format!("/v1/endpoints/{ep}/replays"), &t.key).await, 0);

    // WHEN a valid replay is asked for twice
    let first = app.expect(202, "POST", &path, Some(&t.key), Some(json!({"from": hour_ago}))).await;
    let second = app.expect(200, "POST", &path, Some(&t.key), Some(json!({"from": hour_ago}))).await;
    // THEN the second answer is the running replay
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["status"], "running");
    assert_eq!(app.count(&format!("/v1/endpoints/{ep}/replays"), &t.key).await, 1);
}
