//! Deliveries: list with filters, get with attempts, delete, retry and bulk retry. SPEC §3.

mod support;

use serde_json::{Value, json};
use support::*;

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Two event types, an endpoint for each (`ok` succeeds, `fail` fails at
/// once) and one catching everything (succeeds).
struct World {
    tenant: Tenant,
    ok_endpoint: String,
    fail_endpoint: String,
    all_endpoint: String,
}

async fn world(app: &TestApp) -> World {
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "ok.type").await;
    app.create_event_type(&tenant, "fail.type").await;
    let ok_endpoint =
        str_of(&app.create_endpoint(&tenant, json!({ "url": OK_URL, "eventTypes": ["ok.type"] })).await, "id")
            .to_string();
    let fail_endpoint = str_of(
        &app.create_endpoint(&tenant, json!({ "url": FAIL_URL, "eventTypes": ["fail.type"], "maxAttempts": 1 })).await,
        "id",
    )
    .to_string();
    let all_endpoint = app.endpoint_at(&tenant, OK_URL).await;
    World { tenant, ok_endpoint, fail_endpoint, all_endpoint }
}

#[tokio::test]
async fn given_a_fanned_out_event_when_deliveries_are_listed_then_each_matching_endpoint_has_a_pending_delivery() {
    // GIVEN
    let app = TestApp::new();
    let w = world(&app).await;
    let event = app.publish(&w.tenant, "ok.type", json!({ "n": 1 })).await;
    app.fan_out().await;
    // WHEN
    let (status, page, _) = app.call("GET", "/v1/deliveries", Some(&w.tenant.key), None).await;
    // THEN
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["hasMore"], false);
    assert!(page["nextCursor"].is_null());
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{page}");
    let endpoints: Vec<String> = data.iter().map(|d| str_of(d, "endpointId").to_string()).collect();
    assert_eq!(sorted(endpoints), sorted(vec![w.ok_endpoint.clone(), w.all_endpoint.clone()]));
    for delivery in data {
        assert!(str_of(delivery, "id").starts_with("dlv_"));
        assert_eq!(delivery["eventId"], event["id"]);
        assert_eq!(delivery["eventType"], "ok.type");
        assert_eq!(delivery["status"], "pending");
        assert_eq!(delivery["attemptCount"], 0);
        assert_eq!(delivery["maxAttempts"], 8);
        assert!(delivery["retryOf"].is_null());
        assert!(delivery["createdAt"].is_string() && delivery["expiresAt"].is_string());
    }
}

#[tokio::test]
async fn given_deliveries_in_several_states_when_listed_with_filters_then_only_matching_ones_return() {
    // GIVEN
    let app = TestApp::new();
    let w = world(&app).await;
    let key = w.tenant.key.clone();
    let first_ok = str_of(&app.publish(&w.tenant, "ok.type", json!(1)).await, "id").to_string();
    app.deliver_all().await; // two succeeded deliveries
    app.advance(chrono::Duration::minutes(5));
    let t1 = app.now_rfc3339();
    let failing = str_of(&app.publish(&w.tenant, "fail.type", json!(2)).await, "id").to_string();
    app.deliver_all().await; // fail endpoint: failed; all endpoint: succeeded
    app.advance(chrono::Duration::minutes(5));
    let t2 = app.now_rfc3339();
    let last_ok = str_of(&app.publish(&w.tenant, "ok.type", json!(3)).await, "id").to_string();
    app.fan_out().await; // two pending
    let list = |query: String| {
        let app = &app;
        let key = key.clone();
        async move { app.expect(200, "GET", &format!("/v1/deliveries{query}"), Some(&key), None).await["data"].clone() }
    };
    let pairs = |data: Value| -> Vec<String> {
        sorted(
            data.as_array()
                .unwrap()
                .iter()
                .map(|d| format!("{}>{}", d["eventId"].as_str().unwrap(), d["endpointId"].as_str().unwrap()))
                .collect(),
        )
    };
    let pair = |event: &str, endpoint: &str| format!("{event}>{endpoint}");
    // WHEN / THEN
    assert_eq!(list(String::new()).await.as_array().unwrap().len(), 6);
    assert_eq!(pairs(list("?status=failed".into()).await), vec![pair(&failing, &w.fail_endpoint)]);
    assert_eq!(list("?status=succeeded".into()).await.as_array().unwrap().len(), 3);
    assert_eq!(
        pairs(list("?status=pending".into()).await),
        sorted(vec![pair(&last_ok, &w.ok_endpoint), pair(&last_ok, &w.all_endpoint)])
    );
    assert_eq!(list("?status=retrying".into()).await, json!([]));
    assert_eq!(
        pairs(list("?eventType=fail.type".into()).await),
        sorted(vec![pair(&failing, &w.fail_endpoint), pair(&failing, &w.all_endpoint)])
    );
    assert_eq!(
        pairs(list(format!("?eventId={first_ok}")).await),
        sorted(vec![pair(&first_ok, &w.ok_endpoint), pair(&first_ok, &w.all_endpoint)])
    );
    assert_eq!(
        pairs(list(format!("?endpointId={}", w.ok_endpoint)).await),
        sorted(vec![pair(&first_ok, &w.ok_endpoint), pair(&last_ok, &w.ok_endpoint)])
    );
    assert_eq!(
        pairs(list(format!("?endpointId={}&status=pending", w.all_endpoint)).await),
        vec![pair(&last_ok, &w.all_endpoint)]
    );
    assert_eq!(
        pairs(list(format!("?from={t1}&to={t2}")).await),
        sorted(vec![pair(&failing, &w.fail_endpoint), pair(&failing, &w.all_endpoint)])
    );
    assert_eq!(list(format!("?to={t1}")).await.as_array().unwrap().len(), 2);
    assert_eq!(list(format!("?from={t2}")).await.as_array().unwrap().len(), 2);
    // the per-endpoint route applies the same filters
    let per_endpoint = app
        .expect(
            200,
            "GET",
            &format!("/v1/endpoints/{}/deliveries?status=succeeded&to={t2}", w.all_endpoint),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        pairs(per_endpoint["data"].clone()),
        sorted(vec![pair(&first_ok, &w.all_endpoint), pair(&failing, &w.all_endpoint)])
    );
}

#[tokio::test]
async fn given_bad_delivery_list_parameters_then_each_is_400_naming_the_parameter() {
    // GIVEN
    let app = TestApp::new();
    let w = world(&app).await;
    let cases = [
        ("?status=done", "status"),
        ("?status=PENDING", "status"),
        ("?endpointId=nope", "endpointId"),
        ("?endpointId=evt_01JD3X0000000000000000000", "endpointId"),
        ("?eventId=nope", "eventId"),
        ("?from=last-week", "from"),
        ("?to=12:00", "to"),
        ("?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("?limit=-1", "limit"),
    ];
    for (query, field) in cases {
        for base in ["/v1/deliveries".to_string(), format!("/v1/endpoints/{}/deliveries", w.ok_endpoint)] {
            if base != "/v1/deliveries" && field == "endpointId" {
                continue;
            }
            // WHEN
            let reply = app.call("GET", &format!("{base}{query}"), Some(&w.tenant.key), None).await;
            // THEN
            assert_problem(&reply, 400, Some(field));
        }
    }
}

#[tokio::test]
async fn given_a_delivery_when_fetched_then_it_includes_its_attempts() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let (endpoint_id, event_id, delivery_id) = app.failed_delivery(&tenant, "fail.type").await;
    // WHEN
    let (status, delivery, _) =
        app.call("GET", &format!("/v1/deliveries/{delivery_id}"), Some(&tenant.key), None).await;
    // THEN
    assert_eq!(status, 200, "{delivery}");
    assert_eq!(delivery["id"], delivery_id);
    assert_eq!(delivery["eventId"], event_id);
    assert_eq!(delivery["endpointId"], endpoint_id);
    assert_eq!(delivery["status"], "failed");
    assert_eq!(delivery["attemptCount"], 1);
    assert_eq!(delivery["maxAttempts"], 1);
    assert_eq!(delivery["responseStatus"], 500);
    assert_eq!(delivery["responseBody"], "boom");
    assert!(delivery["errorMessage"].is_string());
    assert!(delivery["timestampSent"].is_i64(), "{delivery}");
    assert!(delivery["nextAttemptAt"].is_null());
    let attempts = delivery["attempts"].as_array().expect("attempts array");
    assert_eq!(attempts.len(), 1);
    let attempt = &attempts[0];
    assert_eq!(attempt["number"], 1);
    assert_eq!(attempt["responseStatus"], 500);
    assert_eq!(attempt["response"], "boom");
    assert!(attempt["startedAt"].is_string());
    assert!(attempt["durationMs"].is_u64());
    assert!(attempt.get("error").is_some());
}

#[tokio::test]
async fn given_a_pending_delivery_when_fetched_then_attempts_is_an_empty_array() {
    // GIVEN
    let app = TestApp::new();
    let w = world(&app).await;
    app.publish(&w.tenant, "ok.type", json!(1)).await;
    app.fan_out().await;
    let page = app.expect(200, "GET", "/v1/deliveries", Some(&w.tenant.key), None).await;
    let id = str_of(&page["data"][0], "id");
    // WHEN
    let delivery = app.expect(200, "GET", &format!("/v1/deliveries/{id}"), Some(&w.tenant.key), None).await;
    // THEN
    assert_eq!(delivery["attempts"], json!([]));
    assert_eq!(delivery["status"], "pending");
}

#[tokio::test]
async fn given_a_delivery_when_deleted_then_it_is_204_and_then_404() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let (_, _, delivery_id) = app.failed_delivery(&tenant, "fail.type").await;
    // WHEN
    let (status, body, _) = app.call("DELETE", &format!("/v1/deliveries/{delivery_id}"), Some(&tenant.key), None).await;
    // THEN
    assert_eq!(status, 204);
    assert!(body.is_null());
    assert_problem(
        &app.call("GET", &format!("/v1/deliveries/{delivery_id}"), Some(&tenant.key), None).await,
        404,
        None,
    );
    assert_problem(
        &app.call("DELETE", &format!("/v1/deliveries/{delivery_id}"), Some(&tenant.key), None).await,
        404,
        None,
    );
    assert_eq!(app.count("/v1/deliveries", &tenant.key).await, 0);
}

#[tokio::test]
async fn given_unknown_or_malformed_delivery_ids_then_get_delete_and_retry_are_404() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    for id in ["dlv_01JD3X0000000000000000000", "dlv_x", "evt_01JD3X0000000000000000000"] {
        // WHEN / THEN
        assert_problem(&app.call("GET", &format!("/v1/deliveries/{id}"), Some(&tenant.key), None).await, 404, None);
        assert_problem(&app.call("DELETE", &format!("/v1/deliveries/{id}"), Some(&tenant.key), None).await, 404, None);
        assert_problem(
            &app.call("POST", &format!("/v1/deliveries/{id}/retry"), Some(&tenant.key), None).await,
            404,
            None,
        );
    }
}

#[tokio::test]
async fn given_a_failed_delivery_when_retried_then_it_is_202_with_a_new_pending_delivery_whose_retry_of_is_set() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let (endpoint_id, event_id, failed_id) = app.failed_delivery(&tenant, "fail.type").await;
    app.advance(chrono::Duration::seconds(1));
    // WHEN
    let (status, retry, _) =
        app.call("POST", &format!("/v1/deliveries/{failed_id}/retry"), Some(&tenant.key), None).await;
    // THEN
    assert_eq!(status, 202, "{retry}");
    let retry_id = str_of(&retry, "id");
    assert!(retry_id.starts_with("dlv_"));
    assert_ne!(retry_id, failed_id);
    assert_eq!(retry["retryOf"], failed_id);
    assert_eq!(retry["status"], "pending");
    assert_eq!(retry["attemptCount"], 0);
    assert_eq!(retry["eventId"], event_id);
    assert_eq!(retry["endpointId"], endpoint_id);
    let original = app.expect(200, "GET", &format!("/v1/deliveries/{failed_id}"), Some(&tenant.key), None).await;
    assert_eq!(original["retriedBy"], retry_id);
    assert_eq!(original["status"], "failed");
    // the new chain is queued and attempted
    app.dispatch().await;
    let after = app.expect(200, "GET", &format!("/v1/deliveries/{retry_id}"), Some(&tenant.key), None).await;
    assert_eq!(after["attempts"].as_array().unwrap().len(), 1, "{after}");
    // a delivery is retried only once
    let again = app.call("POST", &format!("/v1/deliveries/{failed_id}/retry"), Some(&tenant.key), None).await;
    assert_problem(&again, 409, None);
}

#[tokio::test]
async fn given_a_pending_delivery_when_retried_then_it_is_409_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let w = world(&app).await;
    app.publish(&w.tenant, "ok.type", json!(1)).await;
    app.fan_out().await;
    let page = app.expect(200, "GET", "/v1/deliveries", Some(&w.tenant.key), None).await;
    let id = str_of(&page["data"][0], "id");
    // WHEN
    let reply = app.call("POST", &format!("/v1/deliveries/{id}/retry"), Some(&w.tenant.key), None).await;
    // THEN
    assert_problem(&reply, 409, None);
    assert_eq!(app.count("/v1/deliveries", &w.tenant.key).await, 2);
}

#[tokio::test]
async fn given_a_retry_body_with_fields_when_retried_then_it_is_400_on_the_unknown_field_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let (_, _, failed_id) = app.failed_delivery(&tenant, "fail.type").await;
    for (body, field) in [(json!({ "force": true }), "force"), (json!([]), "body")] {
        // WHEN
        let reply = app.call("POST", &format!("/v1/deliveries/{failed_id}/retry"), Some(&tenant.key), Some(body)).await;
        // THEN
        assert_problem(&reply, 400, Some(field));
        assert_eq!(app.count("/v1/deliveries", &tenant.key).await, 1);
    }
}

#[tokio::test]
async fn given_failed_succeeded_and_pending_deliveries_when_bulk_retried_then_only_failed_unretried_ones_are_and_twice_gives_0()
 {
    // GIVEN
    let app = TestApp::new();
    let w = world(&app).await;
    app.publish(&w.tenant, "fail.type", json!(1)).await;
    app.publish(&w.tenant, "fail.type", json!(2)).await;
    app.publish(&w.tenant, "ok.type", json!(3)).await;
    app.deliver_all().await; // 2 failed, 4 succeeded
    app.publish(&w.tenant, "ok.type", json!(4)).await;
    app.fan_out().await; // 2 pending
    let failed = ids(&app.expect(200, "GET", "/v1/deliveries?status=failed", Some(&w.tenant.key), None).await);
    assert_eq!(failed.len(), 2);
    // WHEN
    let (status, first, _) = app.call("POST", "/v1/deliveries/retry", Some(&w.tenant.key), None).await;
    let second = app.expect(202, "POST", "/v1/deliveries/retry", Some(&w.tenant.key), Some(json!({}))).await;
    // THEN
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["retried"], 2);
    assert_eq!(first["truncated"], false);
    let new_ids: Vec<String> =
        first["deliveryIds"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(new_ids.len(), 2);
    let mut retry_of = Vec::new();
    for id in &new_ids {
        let d = app.expect(200, "GET", &format!("/v1/deliveries/{id}"), Some(&w.tenant.key), None).await;
        assert_eq!(d["status"], "pending");
        retry_of.push(str_of(&d, "retryOf").to_string());
    }
    assert_eq!(sorted(retry_of), sorted(failed));
    assert_eq!(second["retried"], 0, "{second}");
    assert_eq!(second["deliveryIds"], json!([]));
    assert_eq!(app.count("/v1/deliveries", &w.tenant.key).await, 10);
}

#[tokio::test]
async fn given_failed_deliveries_of_two_endpoints_when_bulk_retried_with_filters_then_only_matching_ones_are() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let (ep_a, _, failed_a) = app.failed_delivery(&tenant, "type.a").await;
    app.advance(chrono::Duration::minutes(5));
    let t1 = app.now_rfc3339();
    let (_, _, failed_b) = app.failed_delivery(&tenant, "type.b").await;
    let retried_of = |result: Value| {
        let app = &app;
        let key = tenant.key.clone();
        async move {
            let mut of = Vec::new();
            for id in result["deliveryIds"].as_array().unwrap() {
                let d =
                    app.expect(200, "GET", &format!("/v1/deliveries/{}", id.as_str().unwrap()), Some(&key), None).await;
                of.push(str_of(&d, "retryOf").to_string());
            }
            of
        }
    };
    // WHEN
    let by_endpoint =
        app.expect(202, "POST", "/v1/deliveries/retry", Some(&tenant.key), Some(json!({ "endpointId": ep_a }))).await;
    let by_type_none = app
        .expect(202, "POST", "/v1/deliveries/retry", Some(&tenant.key), Some(json!({ "eventType": "type.a" })))
        .await;
    let by_range = app
        .expect(
            202,
            "POST",
            "/v1/deliveries/retry",
            Some(&tenant.key),
            Some(json!({ "from": t1, "eventType": "type.b" })),
        )
        .await;
    // THEN
    assert_eq!(retried_of(by_endpoint).await, vec![failed_a]);
    assert_eq!(by_type_none["retried"], 0, "already retried");
    assert_eq!(retried_of(by_range).await, vec![failed_b]);
}

#[tokio::test]
async fn given_bad_bulk_retry_bodies_then_each_is_4xx_naming_the_field_and_nothing_is_retried() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.failed_delivery(&tenant, "fail.type").await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "endpointId": 5 }), "endpointId"),
        (json!({ "eventType": ["a"] }), "eventType"),
        (json!({ "from": "yesterday" }), "from"),
        (json!({ "to": 1700000000 }), "to"),
        (json!({ "status": "failed" }), "status"),
        (json!("retry"), "body"),
    ];
    for (body, field) in cases {
        // WHEN
        let reply = app.call("POST", "/v1/deliveries/retry", Some(&tenant.key), Some(body.clone())).await;
        // THEN
        assert_problem(&reply, 400, Some(field));
        assert_eq!(app.count("/v1/deliveries", &tenant.key).await, 1, "{body} retried something");
    }
}

#[tokio::test]
async fn given_a_bulk_retry_range_with_from_after_to_then_it_is_400_on_from() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.failed_delivery(&tenant, "fail.type").await;
    // WHEN
    let reply = app
        .call(
            "POST",
            "/v1/deliveries/retry",
            Some(&tenant.key),
            Some(json!({ "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z" })),
        )
        .await;
    // THEN
    assert_problem(&reply, 400, Some("from"));
}

#[tokio::test]
async fn given_a_malformed_endpoint_id_in_a_bulk_retry_then_it_is_400_naming_endpoint_id() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.failed_delivery(&tenant, "fail.type").await;
    // WHEN
    let reply =
        app.call("POST", "/v1/deliveries/retry", Some(&tenant.key), Some(json!({ "endpointId": "not-an-id" }))).await;
    // THEN: as for GET /v1/deliveries?endpointId=not-an-id
    assert_problem(&reply, 400, Some("endpointId"));
    assert_eq!(app.count("/v1/deliveries", &tenant.key).await, 1);
}

// ------------------------------------------------------------ event status

#[tokio::test]
async fn given_a_failed_delivery_when_retried_and_the_retry_succeeds_then_the_event_goes_failed_pending_succeeded() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let (endpoint_id, event_id, failed_id) = app.failed_delivery(&tenant, "fail.type").await;
    let event_path = format!("/v1/events/{event_id}");
    let event = app.expect(200, "GET", &event_path, Some(&tenant.key), None).await;
    assert_eq!(event["status"], "failed", "{event}");
    assert_eq!((event["deliveryCount"].as_u64(), event["failedCount"].as_u64()), (Some(1), Some(1)));
    // WHEN: the endpoint is fixed and the delivery retried
    app.expect(
        200,
        "PATCH",
        &format!("/v1/endpoints/{endpoint_id}"),
        Some(&tenant.key),
        Some(json!({ "url": OK_URL })),
    )
    .await;
    app.expect(202, "POST", &format!("/v1/deliveries/{failed_id}/retry"), Some(&tenant.key), None).await;
    let retrying = app.expect(200, "GET", &event_path, Some(&tenant.key), None).await;
    app.dispatch().await;
    let done = app.expect(200, "GET", &event_path, Some(&tenant.key), None).await;
    // THEN
    assert_eq!(retrying["status"], "pending", "{retrying}");
    assert_eq!(retrying["failedCount"], 0);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!((done["deliveryCount"].as_u64(), done["succeededCount"].as_u64()), (Some(1), Some(1)));
    assert_eq!(done["failedCount"], 0);
    let listed = ids(&app.expect(200, "GET", "/v1/events?status=succeeded", Some(&tenant.key), None).await);
    assert_eq!(listed, [event_id]);
}

#[tokio::test]
async fn given_a_failed_delivery_when_deleted_then_its_event_no_longer_counts_it() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let (_, event_id, failed_id) = app.failed_delivery(&tenant, "fail.type").await;
    // WHEN
    app.expect(204, "DELETE", &format!("/v1/deliveries/{failed_id}"), Some(&tenant.key), None).await;
    // THEN
    let event = app.expect(200, "GET", &format!("/v1/events/{event_id}"), Some(&tenant.key), None).await;
    assert_eq!(event["deliveryCount"], 0, "{event}");
    assert_eq!(event["failedCount"], 0, "{event}");
    assert_ne!(event["status"], "failed", "{event}");
}

#[tokio::test]
async fn given_a_failed_delivery_whose_endpoint_was_deleted_when_retried_then_it_is_409_and_nothing_is_written() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let (endpoint_id, _, failed_id) = app.failed_delivery(&tenant, "fail.type").await;
    app.expect(204, "DELETE", &format!("/v1/endpoints/{endpoint_id}"), Some(&tenant.key), None).await;
    // WHEN
    let reply = app.call("POST", &format!("/v1/deliveries/{failed_id}/retry"), Some(&tenant.key), None).await;
    let bulk = app.expect(202, "POST", "/v1/deliveries/retry", Some(&tenant.key), None).await;
    // THEN
    assert_problem(&reply, 409, None);
    assert_eq!(bulk["retried"], 0, "{bulk}");
    assert_eq!(app.count("/v1/deliveries", &tenant.key).await, 1);
}

// ------------------------------------------------------------ concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_a_failed_delivery_when_retried_ten_times_concurrently_then_exactly_one_retry_is_created() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let (_, _, failed_id) = app.failed_delivery(&tenant, "fail.type").await;
    let path = format!("/v1/deliveries/{failed_id}/retry");
    // WHEN
    let replies =
        futures_join_all((0..10).map(|_| app.call("POST", &path, Some(&tenant.key), None)).collect::<Vec<_>>()).await;
    // THEN
    let statuses: Vec<u16> = replies.iter().map(|r| r.0).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, 202 | 409)), "{statuses:?}");
    assert_eq!(app.count("/v1/deliveries", &tenant.key).await, 2);
}

/// `futures::future::join_all` without the dependency.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.unwrap()).collect()
}
