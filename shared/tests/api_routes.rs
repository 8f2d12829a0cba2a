//! Checks driven by `skyhook::api::ROUTES` itself: every route answers on its
//! success path, and every route with an id is closed to other tenants.

mod support;

use serde_json::json;
use skyhook::api::{ROUTES, Route, RouteOp};
use support::*;

/// Calls `route` on its success path (creating what it needs first) and
/// returns the expected status with the reply.
async fn success_call(app: &TestApp, fixture: &Fixture, route: &Route) -> (u16, Reply) {
    let t = &fixture.tenant;
    let admin = Some(app.admin.as_str());
    let key = Some(t.key.as_str());
    let path = route_path(route, fixture);
    let body = route_body(route, fixture);
    let m = route.method;
    match route.op {
        RouteOp::Health => (200, app.call(m, &path, None, None).await),
        RouteOp::OAuthToken => {
            let form = format!("grant_type=client_credentials&client_id={}&client_secret={}", t.key_id, t.key);
            let headers = [("content-type", "application/x-www-form-urlencoded")];
            (200, app.raw_call(m, &path, &headers, form).await)
        }
        RouteOp::CreateApplication | RouteOp::CreateApiKey => (201, app.call(m, &path, admin, body).await),
        RouteOp::ListApplications
        | RouteOp::GetApplication
        | RouteOp::PatchApplication
        | RouteOp::PutApplication
        | RouteOp::ListApiKeys => (200, app.call(m, &path, admin, body).await),
        RouteOp::DeleteApplication => {
            let doomed = app.new_tenant("doomed").await;
            (204, app.call(m, &format!("/v1/applications/{}", doomed.app_id), admin, None).await)
        }
        RouteOp::RevokeApiKey => {
            let doomed = app.key_with_scopes(t, &["events:read"]).await;
            (204, app.call(m, &format!("/v1/applications/{}/api-keys/{}", t.app_id, doomed.id), admin, None).await)
        }
        RouteOp::CreateEventType | RouteOp::CreateEndpoint => (201, app.call(m, &path, key, body).await),
        RouteOp::PutEventType => {
            let created = app.call(m, "/v1/event-types/put.created", key, body.clone()).await;
            assert_eq!(created.0, 201, "PUT of a new event type: {}", created.1);
            (200, app.call(m, &path, key, body).await)
        }
        RouteOp::DeleteEventType => {
            app.create_event_type(t, "doomed.type").await;
            (204, app.call(m, "/v1/event-types/doomed.type", key, None).await)
        }
        RouteOp::DeleteEndpoint => {
            let doomed = app.endpoint_at(t, OK_URL).await;
            (204, app.call(m, &format!("/v1/endpoints/{doomed}"), key, None).await)
        }
        RouteOp::DeleteDelivery => {
            let (_, _, doomed) = app.failed_delivery(t, "doomed.delivery").await;
            (204, app.call(m, &format!("/v1/deliveries/{doomed}"), key, None).await)
        }
        RouteOp::ListEventTypes
        | RouteOp::GetEventType
        | RouteOp::ListEndpoints
        | RouteOp::GetEndpoint
        | RouteOp::PutEndpoint
        | RouteOp::PatchEndpoint
        | RouteOp::RotateEndpointSecret
        | RouteOp::EndpointStats
        | RouteOp::ListEndpointDeliveries
        | RouteOp::ListEvents
        | RouteOp::GetEvent
        | RouteOp::ListDeliveries
        | RouteOp::GetDelivery => (200, app.call(m, &path, key, body).await),
        RouteOp::TestEndpoint | RouteOp::PublishEvent | RouteOp::BulkRetry | RouteOp::ReplayEndpoint => {
            (202, app.call(m, &path, key, body).await)
        }
        RouteOp::ListReplays => (200, app.call(m, &path, key, body).await),
        RouteOp::GetReplay => {
            let from = (start_time() - chrono::Duration::hours(2)).to_rfc3339();
            let replay_path = format!("/v1/endpoints/{}/replay", fixture.endpoint_id);
            let (status, started, _) = app.call("POST", &replay_path, key, Some(json!({ "from": from }))).await;
            assert_eq!(status, 202, "{started}");
            let id = started["id"].as_str().expect("a replay id");
            (200, app.call(m, &format!("/v1/endpoints/{}/replays/{id}", fixture.endpoint_id), key, None).await)
        }
        RouteOp::CreatePortalSession
        | RouteOp::OpenApi
        | RouteOp::ApiReference
        | RouteOp::ConsoleIndex
        | RouteOp::ConsoleAsset => unreachable!("in development: left out by the caller"),
        RouteOp::RetryDelivery => {
            let (_, _, failed) = app.failed_delivery(t, "retry.me").await;
            (202, app.call(m, &format!("/v1/deliveries/{failed}/retry"), key, body).await)
        }
    }
}

#[tokio::test]
async fn given_every_route_when_called_on_its_success_path_then_it_answers_its_documented_status() {
    // GIVEN
    let app = TestApp::new();
    let fixture = app.fixture("a").await;
    let mut seen = 0;
    let mut skipped = Vec::new();
    for route in ROUTES {
        if in_development(route) {
            skipped.push(format!("{} {}", route.method, route.path));
            continue;
        }
        // WHEN
        let (expected, (status, body, headers)) = success_call(&app, &fixture, route).await;
        // THEN
        assert_eq!(status, expected, "{} {} answered {status}: {body}", route.method, route.path);
        if status == 204 {
            assert!(body.is_null(), "{} {}: a 204 has no body", route.method, route.path);
        } else {
            assert_eq!(
                headers.get("content-type").and_then(|v| v.to_str().ok()),
                Some("application/json"),
                "{} {}",
                route.method,
                route.path
            );
            assert!(body.is_object(), "{} {}: {body}", route.method, route.path);
        }
        if body.get("data").is_some() {
            assert!(body["data"].is_array() && body["hasMore"].is_boolean(), "{}: {body}", route.path);
            assert!(body.get("nextCursor").is_some(), "{}: {body}", route.path);
        }
        assert!(headers.get("x-request-id").is_some());
        seen += 1;
    }
    assert_eq!(seen + skipped.len(), ROUTES.len());
    if !skipped.is_empty() {
        eprintln!("success paths not checked yet (contract in development): {skipped:?}");
    }
}

#[tokio::test]
async fn given_health_when_called_without_credentials_then_it_is_200_with_status_version_and_backend() {
    // GIVEN
    let app = TestApp::new();
    // WHEN
    let (status, body, _) = app.call("GET", "/v1/health", None, None).await;
    // THEN
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], skyhook::VERSION);
    assert_eq!(body["backend"], "sqlite");
}

#[tokio::test]
async fn given_every_list_route_then_its_page_has_data_next_cursor_and_has_more() {
    // GIVEN
    let app = TestApp::new();
    let fixture = app.fixture("a").await;
    for route in ROUTES.iter().filter(|r| {
        matches!(
            r.op,
            RouteOp::ListApplications
                | RouteOp::ListApiKeys
                | RouteOp::ListEventTypes
                | RouteOp::ListEndpoints
                | RouteOp::ListEndpointDeliveries
                | RouteOp::ListEvents
                | RouteOp::ListDeliveries
        )
    }) {
        let credential = if is_admin(route) { &app.admin } else { &fixture.tenant.key };
        // WHEN
        let page = app.expect(200, "GET", &route_path(route, &fixture), Some(credential), None).await;
        // THEN
        assert!(page["data"].is_array() && !page["data"].as_array().unwrap().is_empty(), "{}: {page}", route.path);
        assert_eq!(page["hasMore"], false, "{}", route.path);
        assert!(page.get("nextCursor").is_some_and(|c| c.is_null()), "{}: {page}", route.path);
    }
}

// ------------------------------------------------------------ isolation

#[tokio::test]
async fn given_two_tenants_when_b_calls_every_id_route_with_as_ids_then_it_is_404_or_403_and_a_is_untouched() {
    // GIVEN
    let app = TestApp::new();
    let a = app.fixture("a").await;
    let b = app.fixture("b").await;
    let a_endpoint =
        app.expect(200, "GET", &format!("/v1/endpoints/{}", a.endpoint_id), Some(&a.tenant.key), None).await;
    let a_type = app.expect(200, "GET", &format!("/v1/event-types/{}", a.event_type), Some(&a.tenant.key), None).await;
    let a_delivery =
        app.expect(200, "GET", &format!("/v1/deliveries/{}", a.delivery_id), Some(&a.tenant.key), None).await;
    let mut checked = 0;
    // PUT of an event type creates B's own type of that name: last, so the
    // other event-type routes still look for A's.
    let mut routes: Vec<_> = api_routes().filter(|r| r.path.contains('{')).collect();
    routes.sort_by_key(|r| r.op == RouteOp::PutEventType);
    for route in routes {
        let path = route_path(route, &a);
        let body = route_body(route, &a);
        // WHEN
        let reply = app.call(route.method, &path, Some(&b.tenant.key), body).await;
        // THEN
        if route.path.contains("{appId}") {
            assert_problem(&reply, 403, None);
        } else if route.op == RouteOp::PutEventType {
            // PUT creates: B gets its own event type of that name, A's is untouched.
            assert_eq!(reply.0, 201, "{}", reply.1);
        } else {
            assert_problem(&reply, 404, None);
            assert!(!reply.1.to_string().contains(&a.tenant.app_id), "{path} leaked A's application id");
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} id routes");
    // A's resources are exactly as they were.
    let endpoint = app.expect(200, "GET", &format!("/v1/endpoints/{}", a.endpoint_id), Some(&a.tenant.key), None).await;
    assert_eq!(endpoint, a_endpoint);
    let event_type =
        app.expect(200, "GET", &format!("/v1/event-types/{}", a.event_type), Some(&a.tenant.key), None).await;
    assert_eq!(event_type, a_type);
    let delivery =
        app.expect(200, "GET", &format!("/v1/deliveries/{}", a.delivery_id), Some(&a.tenant.key), None).await;
    assert_eq!(delivery, a_delivery);
    assert_eq!(app.count("/v1/events", &a.tenant.key).await, 1);
    assert_eq!(app.count("/v1/deliveries", &a.tenant.key).await, 1);
    let b_type = app.expect(200, "GET", &format!("/v1/event-types/{}", a.event_type), Some(&b.tenant.key), None).await;
    assert_eq!(b_type["description"], "valid");
}

#[tokio::test]
async fn given_two_tenants_when_b_lists_or_filters_by_as_ids_then_it_sees_none_of_as_data() {
    // GIVEN
    let app = TestApp::new();
    let a = app.fixture("a").await;
    let b = app.new_tenant("b").await;
    // WHEN
    let endpoints = app.expect(200, "GET", "/v1/endpoints", Some(&b.key), None).await;
    let events = app.expect(200, "GET", "/v1/events", Some(&b.key), None).await;
    let types = app.expect(200, "GET", "/v1/event-types?includeArchived=true", Some(&b.key), None).await;
    let by_event = app.expect(200, "GET", &format!("/v1/deliveries?eventId={}", a.event_id), Some(&b.key), None).await;
    let by_endpoint =
        app.call("GET", &format!("/v1/deliveries?endpointId={}", a.endpoint_id), Some(&b.key), None).await;
    let bulk =
        app.call("POST", "/v1/deliveries/retry", Some(&b.key), Some(json!({ "endpointId": a.endpoint_id }))).await;
    let all_bulk = app.expect(202, "POST", "/v1/deliveries/retry", Some(&b.key), Some(json!({}))).await;
    // THEN
    for page in [&endpoints, &events, &types, &by_event] {
        assert_eq!(page["data"], json!([]), "{page}");
    }
    assert_problem(&by_endpoint, 404, None);
    assert_problem(&bulk, 404, None);
    assert_eq!(all_bulk["retried"], 0);
    let a_delivery =
        app.expect(200, "GET", &format!("/v1/deliveries/{}", a.delivery_id), Some(&a.tenant.key), None).await;
    assert!(a_delivery["retriedBy"].is_null());
}

#[tokio::test]
async fn given_two_tenants_when_b_creates_an_endpoint_for_as_event_type_then_it_is_400_unknown_type() {
    // GIVEN
    let app = TestApp::new();
    let a = app.fixture("a").await;
    let b = app.new_tenant("b").await;
    // WHEN
    let reply = app
        .call("POST", "/v1/endpoints", Some(&b.key), Some(json!({ "url": OK_URL, "eventTypes": [a.event_type] })))
        .await;
    let publish =
        app.call("POST", "/v1/events", Some(&b.key), Some(json!({ "eventType": a.event_type, "payload": 1 }))).await;
    // THEN
    assert_problem(&reply, 400, Some("eventTypes[0]"));
    assert_problem(&publish, 400, Some("eventType"));
}
