//! Authentication and authorisation: admin token, API keys and their scopes,
//! revocation, OAuth2 client credentials. SPEC §3 "Authentication".

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use skyhook::ports::Clock;
use support::*;

async fn token_request(app: &TestApp, form: &str) -> Reply {
    app.raw_call("POST", "/v1/oauth/token", &[("content-type", "application/x-www-form-urlencoded")], form.to_string())
        .await
}

fn form(key_id: &str, secret: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", key_id)
        .append_pair("client_secret", secret)
        .finish()
}

async fn access_token(app: &TestApp, key_id: &str, secret: &str) -> String {
    let (status, body, _) = token_request(app, &form(key_id, secret)).await;
    assert_eq!(status, 200, "{body}");
    str_of(&body, "access_token").to_string()
}

// ------------------------------------------------------------ credentials

#[tokio::test]
async fn given_no_credential_when_any_protected_route_is_called_then_it_is_401_problem_with_www_authenticate() {
    // GIVEN
    let app = TestApp::new();
    let fixture = app.fixture("a").await;
    for route in api_routes().filter(|r| !is_public(r)) {
        // WHEN
        let reply = app.call(route.method, &route_path(route, &fixture), None, route_body(route, &fixture)).await;
        // THEN
        assert_problem(&reply, 401, None);
        assert!(reply.2.get("www-authenticate").is_some(), "{} {}", route.method, route.path);
    }
}

#[tokio::test]
async fn given_a_garbage_key_when_calling_then_it_is_401_as_bearer_and_as_x_api_key() {
    // GIVEN
    let app = TestApp::new();
    app.new_tenant("a").await;
    for garbage in ["sk_not_a_real_key", "eyJhbGciOiJIUzI1NiJ9.e30.bad", "x", "Bearer"] {
        // WHEN
        let bearer = app.call("GET", "/v1/endpoints", Some(garbage), None).await;
        let header = app.raw_call("GET", "/v1/endpoints", &[("x-api-key", garbage)], "").await;
        // THEN
        assert_problem(&bearer, 401, None);
        assert_problem(&header, 401, None);
    }
    let empty_bearer = app.raw_call("GET", "/v1/endpoints", &[("authorization", "Bearer ")], "").await;
    assert_problem(&empty_bearer, 401, None);
    let basic = app.raw_call("GET", "/v1/endpoints", &[("authorization", "Basic Zm9vOmJhcg==")], "").await;
    assert_problem(&basic, 401, None);
}

#[tokio::test]
async fn given_an_api_key_when_sent_as_x_api_key_or_bearer_then_both_authenticate() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    // WHEN
    let header = app.raw_call("GET", "/v1/endpoints", &[("x-api-key", &tenant.key)], "").await;
    let bearer =
        app.raw_call("GET", "/v1/endpoints", &[("authorization", &format!("bearer {}", tenant.key))], "").await;
    // THEN
    assert_eq!(header.0, 200, "{}", header.1);
    assert_eq!(bearer.0, 200, "{}", bearer.1);
}

#[tokio::test]
async fn given_the_admin_token_when_any_application_route_is_called_then_it_is_403() {
    // GIVEN
    let app = TestApp::new();
    let fixture = app.fixture("a").await;
    for route in api_routes().filter(|r| !is_public(r) && !is_admin(r)) {
        // WHEN
        let reply =
            app.call(route.method, &route_path(route, &fixture), Some(&app.admin), route_body(route, &fixture)).await;
        // THEN
        assert_problem(&reply, 403, None);
    }
}

#[tokio::test]
async fn given_an_application_key_when_any_admin_route_is_called_then_it_is_403_even_for_its_own_application() {
    // GIVEN
    let app = TestApp::new();
    let fixture = app.fixture("a").await;
    for route in api_routes().filter(|r| is_admin(r)) {
        // WHEN
        let reply = app
            .call(route.method, &route_path(route, &fixture), Some(&fixture.tenant.key), route_body(route, &fixture))
            .await;
        // THEN
        assert_problem(&reply, 403, None);
    }
    // and nothing changed
    app.expect(200, "GET", &format!("/v1/applications/{}", fixture.tenant.app_id), Some(&app.admin), None).await;
    app.expect(200, "GET", "/v1/endpoints", Some(&fixture.tenant.key), None).await;
}

// ------------------------------------------------------------ scopes

#[tokio::test]
async fn given_a_webhooks_read_key_when_creating_an_endpoint_then_it_is_403_but_listing_works() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let reader = app.key_with_scopes(&tenant, &["webhooks:read"]).await;
    // WHEN
    let create = app.call("POST", "/v1/endpoints", Some(&reader.key), Some(json!({ "url": OK_URL }))).await;
    let list = app.call("GET", "/v1/endpoints", Some(&reader.key), None).await;
    // THEN
    assert_problem(&create, 403, None);
    assert_eq!(list.0, 200, "{}", list.1);
    assert_eq!(app.count("/v1/endpoints", &tenant.key).await, 0);
}

#[tokio::test]
async fn given_an_events_write_key_when_publishing_then_it_is_202_but_listing_or_reading_events_is_403() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "x").await;
    let writer = app.key_with_scopes(&tenant, &["events:write"]).await;
    // WHEN
    let publish =
        app.call("POST", "/v1/events", Some(&writer.key), Some(json!({ "eventType": "x", "payload": {} }))).await;
    let list = app.call("GET", "/v1/events", Some(&writer.key), None).await;
    // THEN
    assert_eq!(publish.0, 202, "{}", publish.1);
    assert_problem(&list, 403, None);
    let get = app.call("GET", &format!("/v1/events/{}", str_of(&publish.1, "id")), Some(&writer.key), None).await;
    assert_problem(&get, 403, None);
}

#[tokio::test]
async fn given_each_application_route_when_called_without_its_scope_then_403_and_with_only_its_scope_then_allowed() {
    // GIVEN
    let app = TestApp::new();
    let fixture = app.fixture("a").await;
    let mut only = std::collections::HashMap::new();
    let mut all_but = std::collections::HashMap::new();
    for scope in ALL_SCOPES {
        only.insert(scope, app.key_with_scopes(&fixture.tenant, &[scope]).await);
        let others: Vec<&str> = ALL_SCOPES.iter().copied().filter(|s| *s != scope).collect();
        all_but.insert(scope, app.key_with_scopes(&fixture.tenant, &others).await);
    }
    // Destructive routes last, so the others see the fixture intact.
    let mut routes: Vec<_> = api_routes().filter(|r| !is_public(r) && !is_admin(r)).collect();
    routes.sort_by_key(|r| r.method == "DELETE");
    for route in routes {
        let scope = required_scope(route);
        let path = route_path(route, &fixture);
        let body = route_body(route, &fixture);
        // WHEN
        let denied = app.call(route.method, &path, Some(&all_but[scope].key), body.clone()).await;
        let allowed = app.call(route.method, &path, Some(&only[scope].key), body).await;
        // THEN
        assert_problem(&denied, 403, None);
        assert!(
            ![401, 403].contains(&allowed.0) && allowed.0 < 500,
            "{} {} with only {scope} answered {}: {}",
            route.method,
            route.path,
            allowed.0,
            allowed.1
        );
    }
}

// ------------------------------------------------------------ revocation

#[tokio::test]
async fn given_a_working_key_when_it_is_revoked_then_the_very_next_call_is_401() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let other = app.key_with_scopes(&tenant, &ALL_SCOPES).await;
    app.expect(200, "GET", "/v1/endpoints", Some(&other.key), None).await;
    // WHEN
    app.expect(
        204,
        "DELETE",
        &format!("/v1/applications/{}/api-keys/{}", tenant.app_id, other.id),
        Some(&app.admin),
        None,
    )
    .await;
    // THEN
    assert_problem(&app.call("GET", "/v1/endpoints", Some(&other.key), None).await, 401, None);
    assert_problem(&app.raw_call("GET", "/v1/endpoints", &[("x-api-key", &other.key)], "").await, 401, None);
    app.expect(200, "GET", "/v1/endpoints", Some(&tenant.key), None).await;
}

// ------------------------------------------------------------ OAuth2

#[tokio::test]
async fn given_a_key_when_exchanging_client_credentials_in_a_form_then_it_is_200_with_a_bearer_token() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    // WHEN
    let (status, body, headers) = token_request(&app, &form(&tenant.key_id, &tenant.key)).await;
    // THEN
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(str_of(&body, "access_token").starts_with("eyJ"));
    let mut scopes: Vec<&str> = str_of(&body, "scope").split(' ').collect();
    scopes.sort();
    let mut all = ALL_SCOPES.to_vec();
    all.sort();
    assert_eq!(scopes, all);
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
}

#[tokio::test]
async fn given_an_access_token_when_used_as_bearer_then_it_acts_for_the_keys_application() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let other = app.new_tenant("b").await;
    let other_endpoint = app.endpoint_at(&other, OK_URL).await;
    let token = access_token(&app, &tenant.key_id, &tenant.key).await;
    // WHEN
    let created = app.call("POST", "/v1/endpoints", Some(&token), Some(json!({ "url": OK_URL }))).await;
    // THEN
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(created.1["applicationId"], tenant.app_id);
    assert_eq!(app.count("/v1/endpoints", &tenant.key).await, 1);
    let foreign = app.call("GET", &format!("/v1/endpoints/{other_endpoint}"), Some(&token), None).await;
    assert_problem(&foreign, 404, None);
}

#[tokio::test]
async fn given_http_basic_client_authentication_when_requesting_a_token_then_it_is_200() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let basic = format!("Basic {}", STANDARD.encode(format!("{}:{}", tenant.key_id, tenant.key)));
    // WHEN
    let (status, body, _) = app
        .raw_call(
            "POST",
            "/v1/oauth/token",
            &[("content-type", "application/x-www-form-urlencoded"), ("authorization", &basic)],
            "grant_type=client_credentials",
        )
        .await;
    // THEN
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    app.expect(200, "GET", "/v1/events", Some(str_of(&body, "access_token")), None).await;
}

#[tokio::test]
async fn given_a_json_token_request_when_exchanged_then_it_is_200() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    // WHEN
    let (status, body, _) = app
        .call(
            "POST",
            "/v1/oauth/token",
            None,
            Some(
                json!({ "grant_type": "client_credentials", "client_id": tenant.key_id, "client_secret": tenant.key }),
            ),
        )
        .await;
    // THEN
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn given_a_requested_subset_of_scopes_when_the_token_is_used_then_only_those_scopes_apply() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    app.create_event_type(&tenant, "x").await;
    let (status, body, _) =
        token_request(&app, &format!("{}&scope=events%3Aread", form(&tenant.key_id, &tenant.key))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "events:read");
    let token = str_of(&body, "access_token");
    // WHEN
    let read = app.call("GET", "/v1/events", Some(token), None).await;
    let write = app.call("POST", "/v1/events", Some(token), Some(json!({ "eventType": "x", "payload": 1 }))).await;
    // THEN
    assert_eq!(read.0, 200);
    assert_problem(&write, 403, None);
}

#[tokio::test]
async fn given_a_key_without_a_scope_when_a_token_with_that_scope_is_requested_then_it_is_400_on_scope() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let reader = app.key_with_scopes(&tenant, &["events:read"]).await;
    // WHEN
    let lacking = token_request(&app, &format!("{}&scope=events%3Awrite", form(&reader.id, &reader.key))).await;
    let unknown = token_request(&app, &format!("{}&scope=admin", form(&reader.id, &reader.key))).await;
    // THEN
    assert_problem(&lacking, 400, Some("scope"));
    assert_problem(&unknown, 400, Some("scope"));
}

#[tokio::test]
async fn given_wrong_client_credentials_when_requesting_a_token_then_it_is_401_invalid_client() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let other = app.new_tenant("b").await;
    let cases = [
        form(&tenant.key_id, "sk_wrong"),
        form(&tenant.key_id, &other.key),
        form("key_01JD3X0000000000000000000", &tenant.key),
        form("not-a-key-id", &tenant.key),
        "grant_type=client_credentials".to_string(),
        format!("grant_type=client_credentials&client_id={}", tenant.key_id),
    ];
    for case in cases {
        // WHEN
        let reply = token_request(&app, &case).await;
        // THEN
        assert_problem(&reply, 401, None);
        assert_eq!(reply.1["error"], "invalid_client", "{}", reply.1);
    }
}

#[tokio::test]
async fn given_a_missing_or_unsupported_grant_type_when_requesting_a_token_then_it_is_400_on_grant_type() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let password_grant = form(&tenant.key_id, &tenant.key).replace("client_credentials", "password");
    let no_grant = format!("client_id={}&client_secret={}", tenant.key_id, tenant.key);
    for case in [password_grant, no_grant] {
        // WHEN
        let reply = token_request(&app, &case).await;
        // THEN
        assert_problem(&reply, 400, Some("grant_type"));
    }
    let not_json =
        app.raw_call("POST", "/v1/oauth/token", &[("content-type", "application/json")], "{\"grant_type\":").await;
    assert_problem(&not_json, 400, Some("body"));
}

#[tokio::test]
async fn given_token_request_errors_then_the_oauth_error_codes_follow_rfc_6749() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let reader = app.key_with_scopes(&tenant, &["events:read"]).await;
    // WHEN
    let bad_scope = token_request(&app, &format!("{}&scope=events%3Awrite", form(&reader.id, &reader.key))).await;
    let bad_grant =
        token_request(&app, &form(&tenant.key_id, &tenant.key).replace("client_credentials", "password")).await;
    // THEN
    assert_eq!(bad_scope.1["error"], "invalid_scope", "{}", bad_scope.1);
    assert_eq!(bad_grant.1["error"], "unsupported_grant_type", "{}", bad_grant.1);
}

#[tokio::test]
async fn given_an_access_token_when_its_key_is_revoked_then_the_token_is_401_at_once() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let token = access_token(&app, &tenant.key_id, &tenant.key).await;
    app.expect(200, "GET", "/v1/endpoints", Some(&token), None).await;
    // WHEN
    app.expect(
        204,
        "DELETE",
        &format!("/v1/applications/{}/api-keys/{}", tenant.app_id, tenant.key_id),
        Some(&app.admin),
        None,
    )
    .await;
    // THEN
    assert_problem(&app.call("GET", "/v1/endpoints", Some(&token), None).await, 401, None);
    assert_problem(&token_request(&app, &form(&tenant.key_id, &tenant.key)).await, 401, None);
}

#[tokio::test]
async fn given_an_access_token_when_the_clock_passes_expires_in_then_it_is_401() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let (_, body, _) = token_request(&app, &form(&tenant.key_id, &tenant.key)).await;
    let token = str_of(&body, "access_token").to_string();
    let ttl = body["expires_in"].as_i64().unwrap();
    // WHEN
    app.advance(chrono::Duration::seconds(ttl - 1));
    let before = app.call("GET", "/v1/endpoints", Some(&token), None).await;
    app.advance(chrono::Duration::seconds(2));
    let after = app.call("GET", "/v1/endpoints", Some(&token), None).await;
    // THEN
    assert_eq!(before.0, 200, "{}", before.1);
    assert_problem(&after, 401, None);
}

#[tokio::test]
async fn given_a_tampered_or_foreign_token_when_used_then_it_is_401() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let token = access_token(&app, &tenant.key_id, &tenant.key).await;
    let other_app = TestApp::new(); // other signing key
    let other_tenant = other_app.new_tenant("a").await;
    let foreign = access_token(&other_app, &other_tenant.key_id, &other_tenant.key).await;
    let (head, rest) = token.split_once('.').unwrap();
    let (claims, signature) = rest.split_once('.').unwrap();
    let mut decoded: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    decoded["exp"] = json!(decoded["exp"].as_i64().unwrap() + 86_400);
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(decoded.to_string());
    let forged = format!("{head}.{forged_claims}.{signature}");
    let alg_none = format!(
        "{}.{claims}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );
    let hs512 = format!(
        "{}.{claims}.{signature}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT"}"#)
    );
    for bad in [forged, foreign, format!("{token}x"), alg_none, hs512] {
        // WHEN
        let reply = app.call("GET", "/v1/endpoints", Some(&bad), None).await;
        // THEN
        assert_problem(&reply, 401, None);
    }
}

#[tokio::test]
async fn given_an_access_token_when_it_calls_admin_routes_then_it_is_403() {
    // GIVEN
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let token = access_token(&app, &tenant.key_id, &tenant.key).await;
    // WHEN
    let list = app.call("GET", "/v1/applications", Some(&token), None).await;
    let key = app
        .call(
            "POST",
            &format!("/v1/applications/{}/api-keys", tenant.app_id),
            Some(&token),
            Some(json!({ "name": "k" })),
        )
        .await;
    // THEN
    assert_problem(&list, 403, None);
    assert_problem(&key, 403, None);
}

// ------------------------------------------------------------ last use

fn last_used_at(keys: &Value, key_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let key = keys["data"].as_array().unwrap().iter().find(|k| k["id"] == key_id).expect("key listed");
    key["lastUsedAt"].as_str().map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc))
}

#[tokio::test]
async fn given_a_new_key_when_it_is_used_then_last_used_at_shows_it_to_within_a_minute() {
    // GIVEN a key that was never used
    let app = TestApp::new();
    let tenant = app.new_tenant("a").await;
    let keys_path = format!("/v1/applications/{}/api-keys", tenant.app_id);
    let keys = app.expect(200, "GET", &keys_path, Some(&app.admin), None).await;
    assert_eq!(last_used_at(&keys, &tenant.key_id), None, "{keys}");

    // WHEN it authenticates a request
    let first_use = app.clock.now();
    app.expect(200, "GET", "/v1/endpoints", Some(&tenant.key), None).await;
    // THEN its last use is that request's time
    let keys = app.expect(200, "GET", &keys_path, Some(&app.admin), None).await;
    assert_eq!(last_used_at(&keys, &tenant.key_id), Some(first_use), "{keys}");

    // WHEN it is used again 30 s later THEN nothing is written (a minute's resolution)
    app.advance(chrono::Duration::seconds(30));
    app.expect(200, "GET", "/v1/endpoints", Some(&tenant.key), None).await;
    let keys = app.expect(200, "GET", &keys_path, Some(&app.admin), None).await;
    assert_eq!(last_used_at(&keys, &tenant.key_id), Some(first_use), "{keys}");

    // WHEN it is used 61 s after the first use THEN the time moves on
    app.advance(chrono::Duration::seconds(31));
    let later_use = app.clock.now();
    app.expect(200, "GET", "/v1/endpoints", Some(&tenant.key), None).await;
    let keys = app.expect(200, "GET", &keys_path, Some(&app.admin), None).await;
    assert_eq!(last_used_at(&keys, &tenant.key_id), Some(later_use), "{keys}");
}
