//! Pagination: `?limit=&cursor=`, `{data, nextCursor, hasMore}`, and cursors
//! that are opaque, tamper-checked and bound to the tenant and the list. SPEC §3.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use skyhook::api::{ROUTES, RouteOp};
use support::*;

/// Walks a list with `limit=3`; returns each page's identities and `hasMore`.
async fn walk(app: &TestApp, path: &str, credential: &str, identity: &str) -> Vec<(Vec<String>, bool)> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            None => format!("{path}{sep}limit=3"),
            Some(c) => format!("{path}{sep}limit=3&cursor={c}"),
        };
        let page = app.expect(200, "GET", &url, Some(credential), None).await;
        let items: Vec<String> =
            page["data"].as_array().unwrap().iter().map(|item| item[identity].as_str().unwrap().to_string()).collect();
        let has_more = page["hasMore"].as_bool().unwrap();
        assert_eq!(has_more, page["nextCursor"].is_string(), "hasMore and nextCursor disagree: {page}");
        pages.push((items, has_more));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return pages,
        }
        assert!(pages.len() < 10, "pagination of {path} does not end");
    }
}

fn assert_three_pages(pages: &[(Vec<String>, bool)], expected: &BTreeSet<String>, what: &str) {
    let sizes: Vec<usize> = pages.iter().map(|(items, _)| items.len()).collect();
    assert_eq!(sizes, [3, 3, 1], "{what}: page sizes");
    let more: Vec<bool> = pages.iter().map(|(_, more)| *more).collect();
    assert_eq!(more, [true, true, false], "{what}: hasMore");
    let all: Vec<String> = pages.iter().flat_map(|(items, _)| items.clone()).collect();
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), unique.len(), "{what}: duplicates across pages");
    assert_eq!(&unique, expected, "{what}: missing or foreign items");
}

#[tokio::test]
async fn given_seven_items_in_every_list_when_paged_by_three_then_three_pages_cover_them_exactly_once() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let mut apps = BTreeSet::from([tenant.app_id.clone()]);
    for i in 0..6 {
        let created = app
            .expect(201, "POST", "/v1/applications", Some(&app.admin), Some(json!({ "name": format!("app {i}") })))
            .await;
        apps.insert(str_of(&created, "id").to_string());
    }
    let mut keys = BTreeSet::from([tenant.key_id.clone()]);
    for _ in 0..6 {
        keys.insert(app.key_with_scopes(&tenant, &["events:read"]).await.id);
    }
    let mut types = BTreeSet::new();
    for i in 0..7 {
        let name = format!("type.{i}");
        app.create_event_type(&tenant, &name).await;
        types.insert(name);
    }
    let mut endpoints = BTreeSet::new();
    for _ in 0..7 {
        endpoints.insert(app.endpoint_at(&tenant, OK_URL).await);
    }
    let mut events = BTreeSet::new();
    events.insert(str_of(&app.publish(&tenant, "type.0", json!(0)).await, "id").to_string());
    app.fan_out().await; // 7 deliveries, one per endpoint
    let one_endpoint = app.create_endpoint(&tenant, json!({ "url": OK_URL, "eventTypes": ["type.1"] })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 1..7 {
        events.insert(str_of(&app.publish(&tenant, "type.1", json!(i)).await, "id").to_string());
        app.advance(chrono::Duration::milliseconds(3));
    }
    app.fan_out().await;
    let deliveries: BTreeSet<String> = app
        .list_all("/v1/deliveries?eventType=type.0", &tenant.key)
        .await
        .iter()
        .map(|d| str_of(d, "id").to_string())
        .collect();
    assert_eq!(deliveries.len(), 7);
    let endpoint_deliveries: BTreeSet<String> = app
        .list_all(&format!("/v1/endpoints/{one_endpoint}/deliveries"), &tenant.key)
        .await
        .iter()
        .map(|d| str_of(d, "id").to_string())
        .collect();
    assert_eq!(endpoint_deliveries.len(), 6);
    endpoints.insert(one_endpoint.clone());
    let all_endpoints = endpoints.clone();
    // WHEN / THEN
    assert_three_pages(&walk(&app, "/v1/applications", &app.admin, "id").await, &apps, "applications");
    let keys_path = format!("/v1/applications/{}/api-keys", tenant.app_id);
    assert_three_pages(&walk(&app, &keys_path, &app.admin, "id").await, &keys, "api keys");
    assert_three_pages(&walk(&app, "/v1/event-types", &tenant.key, "name").await, &types, "event types");
    assert_three_pages(&walk(&app, "/v1/events", &tenant.key, "id").await, &events, "events");
    assert_three_pages(
        &walk(&app, "/v1/deliveries?eventType=type.0", &tenant.key, "id").await,
        &deliveries,
        "deliveries",
    );
    // 8 endpoints: the first seven by a filter that excludes the eighth
    let seven: BTreeSet<String> = all_endpoints.iter().filter(|id| **id != one_endpoint).cloned().collect();
    let pages = walk(&app, "/v1/endpoints?eventType=type.0", &tenant.key, "id").await;
    assert_three_pages(&pages, &seven, "endpoints");
    let per_endpoint = walk(&app, &format!("/v1/endpoints/{one_endpoint}/deliveries"), &tenant.key, "id").await;
    let sizes: Vec<usize> = per_endpoint.iter().map(|(items, _)| items.len()).collect();
    assert_eq!(sizes, [3, 3], "endpoint deliveries");
    assert!(!per_endpoint.last().unwrap().1);
}

#[tokio::test]
async fn given_exactly_limit_items_when_listed_then_has_more_is_false_and_next_cursor_null() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    for _ in 0..3 {
        app.endpoint_at(&tenant, OK_URL).await;
    }
    // WHEN
    let page = app.expect(200, "GET", "/v1/endpoints?limit=3", Some(&tenant.key), None).await;
    // THEN
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    assert_eq!(page["hasMore"], false);
    assert!(page["nextCursor"].is_null());
}

#[tokio::test]
async fn given_51_events_when_listed_without_a_limit_then_the_default_page_is_50() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "x").await;
    for i in 0..51 {
        app.publish(&tenant, "x", json!(i)).await;
    }
    // WHEN
    let page = app.expect(200, "GET", "/v1/events", Some(&tenant.key), None).await;
    let max = app.expect(200, "GET", "/v1/events?limit=250", Some(&tenant.key), None).await;
    // THEN
    assert_eq!(page["data"].as_array().unwrap().len(), 50);
    assert_eq!(page["hasMore"], true);
    assert_eq!(max["data"].as_array().unwrap().len(), 51);
    assert_eq!(max["hasMore"], false);
}

#[tokio::test]
async fn given_a_bad_limit_on_every_list_route_then_it_is_400_on_limit() {
    // GIVEN
    let app = TestApp::new();
    let f = app.fixture("a").await;
    let lists = ROUTES.iter().filter(|r| {
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
    });
    for route in lists {
        let credential = if is_admin(route) { &app.admin } else { &f.tenant.key };
        for limit in ["0", "251", "abc", "-1", "", "1.5", "3%20"] {
            // WHEN
            let reply =
                app.call("GET", &format!("{}?limit={limit}", route_path(route, &f)), Some(credential), None).await;
            // THEN
            assert_problem(&reply, 400, Some("limit"));
        }
        for limit in ["1", "250"] {
            let path = format!("{}?limit={limit}", route_path(route, &f));
            app.expect(200, "GET", &path, Some(credential), None).await;
        }
    }
}

async fn first_cursor(app: &TestApp, path: &str, credential: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    let page = app.expect(200, "GET", &format!("{path}{sep}limit=1"), Some(credential), None).await;
    str_of(&page, "nextCursor").to_string()
}

fn flip(c: char) -> char {
    if c == 'A' { 'B' } else { 'A' }
}

#[tokio::test]
async fn given_a_tampered_cursor_when_listing_then_it_is_400_on_cursor() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    for _ in 0..3 {
        app.endpoint_at(&tenant, OK_URL).await;
    }
    let cursor = first_cursor(&app, "/v1/endpoints", &tenant.key).await;
    let (body, tag) = cursor.split_once('.').unwrap();
    let mut chars: Vec<char> = body.chars().collect();
    chars[3] = flip(chars[3]);
    let body_flipped: String = chars.iter().collect();
    let mut tag_chars: Vec<char> = tag.chars().collect();
    tag_chars[0] = flip(tag_chars[0]);
    let tag_flipped: String = tag_chars.iter().collect();
    let tampered = [
        format!("{body_flipped}.{tag}"),
        format!("{body}.{tag_flipped}"),
        body.to_string(),
        format!("{body}."),
        format!(".{tag}"),
        cursor[..cursor.len() - 1].to_string(),
        "not-a-cursor".to_string(),
        "%FF%FE".to_string(),
    ];
    for bad in tampered {
        // WHEN
        let reply = app.call("GET", &format!("/v1/endpoints?cursor={bad}"), Some(&tenant.key), None).await;
        // THEN
        assert_problem(&reply, 400, Some("cursor"));
    }
    // the genuine cursor works
    app.expect(200, "GET", &format!("/v1/endpoints?cursor={cursor}"), Some(&tenant.key), None).await;
}

#[tokio::test]
async fn given_a_cursor_from_application_a_when_application_b_uses_it_then_it_is_400_on_cursor() {
    // GIVEN
    let app = TestApp::new();
    let a = app.new_tenant("a").await;
    let b = app.new_tenant("b").await;
    for t in [&a, &b] {
        app.create_event_type(t, "x").await;
        for _ in 0..2 {
            app.endpoint_at(t, OK_URL).await;
            app.publish(t, "x", json!(1)).await;
        }
    }
    for path in ["/v1/endpoints", "/v1/events", "/v1/event-types", "/v1/deliveries"] {
        if path == "/v1/event-types" {
            app.create_event_type(&a, "y").await;
        }
        if path == "/v1/deliveries" {
            app.fan_out().await;
        }
        let cursor = first_cursor(&app, path, &a.key).await;
        // WHEN
        let reply = app.call("GET", &format!("{path}?cursor={cursor}"), Some(&b.key), None).await;
        // THEN
        assert_problem(&reply, 400, Some("cursor"));
    }
    // and for the admin lists: one application's key cursor on another's
    app.key_with_scopes(&a, &["events:read"]).await;
    let cursor = first_cursor(&app, &format!("/v1/applications/{}/api-keys", a.app_id), &app.admin).await;
    let reply = app
        .call("GET", &format!("/v1/applications/{}/api-keys?cursor={cursor}", b.app_id), Some(&app.admin), None)
        .await;
    assert_problem(&reply, 400, Some("cursor"));
}

#[tokio::test]
async fn given_a_cursor_from_one_list_when_used_on_another_list_then_it_is_400_on_cursor() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "x").await;
    app.create_event_type(&tenant, "y").await;
    for _ in 0..2 {
        app.endpoint_at(&tenant, OK_URL).await;
        app.publish(&tenant, "x", json!(1)).await;
    }
    let endpoints_cursor = first_cursor(&app, "/v1/endpoints", &tenant.key).await;
    let events_cursor = first_cursor(&app, "/v1/events", &tenant.key).await;
    let types_cursor = first_cursor(&app, "/v1/event-types", &tenant.key).await;
    let apps_cursor = {
        app.new_tenant("b").await;
        first_cursor(&app, "/v1/applications", &app.admin).await
    };
    let cases: Vec<(&str, &str, &str)> = vec![
        ("/v1/events", &endpoints_cursor, &tenant.key),
        ("/v1/endpoints", &events_cursor, &tenant.key),
        ("/v1/deliveries", &events_cursor, &tenant.key),
        ("/v1/endpoints", &types_cursor, &tenant.key),
        ("/v1/event-types", &endpoints_cursor, &tenant.key),
        ("/v1/applications", &endpoints_cursor, &app.admin),
    ];
    for (path, cursor, credential) in cases {
        // WHEN
        let reply = app.call("GET", &format!("{path}?cursor={cursor}"), Some(credential), None).await;
        // THEN
        assert_problem(&reply, 400, Some("cursor"));
    }
    let keys = format!("/v1/applications/{}/api-keys?cursor={apps_cursor}", tenant.app_id);
    assert_problem(&app.call("GET", &keys, Some(&app.admin), None).await, 400, Some("cursor"));
}

#[tokio::test]
async fn given_a_cursor_and_a_filter_when_paging_then_later_pages_keep_the_filter() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "x").await;
    app.create_event_type(&tenant, "y").await;
    for i in 0..4 {
        app.publish(&tenant, "x", json!(i)).await;
        app.publish(&tenant, "y", json!(i)).await;
    }
    // WHEN
    let items: Vec<Value> = app.list_all("/v1/events?eventType=x", &tenant.key).await;
    let pages = walk(&app, "/v1/events?eventType=x", &tenant.key, "eventType").await;
    // THEN
    assert_eq!(items.len(), 4);
    assert!(pages.iter().flat_map(|(items, _)| items).all(|t| t == "x"));
    assert_eq!(pages.iter().map(|(items, _)| items.len()).sum::<usize>(), 4);
}
