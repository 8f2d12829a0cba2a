//! Robustness properties (SPEC §3 "Bad input is always a 4xx with a
//! field-level reason, never a 500"): random input never panics and never
//! gets a 5xx.
//!
//! - validators (names, event type names, URLs, custom headers, metadata),
//!   called directly and through the API: accept, or name the field;
//! - cursor decoding: any string as `cursor` on any list is a 400 on `cursor`;
//! - the router: random methods, paths and queries, with and without
//!   credentials, never 500 and never panic.
//!
//! One service per property (SQLite temp file, ManualClock); proptest's
//! `TestRunner` drives the cases on one runtime. Each property prints how many
//! inputs it tried.

mod faults;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use bytes::Bytes;
use faults::*;
use http::{HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use skyhook::api::{ApiRequest, handle};
use skyhook::service::{Violations, validate};
use skyhook::ssrf::{AddressPolicy, check_url_at_create};

const CASES: u32 = 256;

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: CASES, max_shrink_iters: 256, failure_persistence: None, ..Config::default() })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn encode(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

/// Strings that stress parsers: any unicode, control characters, and the
/// characters that matter to URLs, headers and JSON.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        3 => "[a-zA-Z0-9:/?#\\[\\]@!$&'()*+,;=%._~ \\-\\\\\"{}<>|^`\r\n\t\u{0}\u{7f}\u{fffd}\u{202e}é日]{0,64}",
        2 => "(https?|ftp|file|javascript)://[a-z0-9.\\-\\[\\]:@%]{0,40}(/[a-z0-9%?#=&.]{0,20})?",
        1 => Just(String::new()),
        1 => "[ \t\r\n]{1,4}",
        1 => proptest::collection::vec(any::<char>(), 250..300).prop_map(|c| c.into_iter().collect()),
    ]
}

/// The checks for a 4xx problem that names a field.
fn assert_field_error(status: u16, body: &Value, allowed: &[&str]) -> Result<(), TestCaseError> {
    prop_assert!((400..500).contains(&status), "status {} {}", status, body);
    let errors = body["errors"].as_array();
    prop_assert!(errors.is_some_and(|e| !e.is_empty()), "no field errors: {}", body);
    for e in errors.unwrap() {
        let field = e["field"].as_str().unwrap_or("");
        prop_assert!(
            allowed
                .iter()
                .any(|a| field == *a || field.starts_with(&format!("{a}.")) || field.starts_with(&format!("{a}["))),
            "unexpected field {} in {}",
            field,
            body
        );
        prop_assert!(!e["message"].as_str().unwrap_or("").is_empty());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Validators, directly
// ---------------------------------------------------------------------------

#[test]
fn given_random_strings_when_validated_directly_then_no_panic_and_errors_name_the_field() {
    let tried = Cell::new(0usize);
    let mut runner = runner();
    let strategy = (nasty(), nasty(), proptest::collection::btree_map(nasty(), nasty(), 0..24), nasty());
    runner
        .run(&strategy, |(name, url, headers, description)| {
            for (validator, field) in
                [(validate::name as fn(&mut Violations, &str, &str), "name"), (validate::event_type_name, "eventType")]
            {
                let mut v = Violations::new();
                validator(&mut v, field, &name);
                if let Err(skyhook::service::ServiceError::Validation(errors)) = v.into_result() {
                    prop_assert!(errors.iter().all(|e| e.field == field));
                }
            }
            let mut v = Violations::new();
            validate::custom_headers(&mut v, "headers", &headers);
            validate::metadata(&mut v, "metadata", &headers);
            validate::description(&mut v, "description", Some(&description));
            if let Err(skyhook::service::ServiceError::Validation(errors)) = v.into_result() {
                for e in errors {
                    prop_assert!(
                        e.field == "headers"
                            || e.field.starts_with("headers.")
                            || e.field == "metadata"
                            || e.field.starts_with("metadata.")
                            || e.field == "description",
                        "{}",
                        e.field
                    );
                }
            }
            for require_https in [true, false] {
                for allow_loopback in [true, false] {
                    if let Err(rejection) = check_url_at_create(&url, require_https, &AddressPolicy { allow_loopback })
                    {
                        prop_assert!(!rejection.message().is_empty());
                    }
                }
            }
            tried.set(tried.get() + 1);
            Ok(())
        })
        .unwrap();
    println!("validators: {} random inputs, no panic", tried.get());
}

// ---------------------------------------------------------------------------
// Validators, through the API
// ---------------------------------------------------------------------------

#[test]
fn given_random_fields_when_creating_resources_through_the_api_then_201_or_a_field_error_never_5xx() {
    let rt = runtime();
    let env = Env::new(local_config());
    let tenant = rt.block_on(env.tenant("props"));
    let admin = env.admin.clone();
    let tried = Cell::new(0usize);
    let mut runner = runner();
    let strategy = (
        nasty(),
        nasty(),
        proptest::collection::btree_map(nasty(), nasty(), 0..24),
        proptest::collection::vec(nasty(), 0..3),
        prop_oneof![Just(None), (0u64..40).prop_map(Some)],
    );
    runner
        .run(&strategy, |(name, url, headers, event_types, max_attempts)| {
            rt.block_on(async {
                // applications
                let (status, body, _) =
                    env.call("POST", "/v1/applications", Some(&admin), Some(json!({ "name": name }))).await;
                if status != 201 {
                    assert_field_error(status, &body, &["name"])?;
                }
                // event types
                let (status, body, _) =
                    env.call("POST", "/v1/event-types", Some(&tenant.key), Some(json!({ "name": name }))).await;
                if status != 201 && status != 409 {
                    assert_field_error(status, &body, &["name"])?;
                }
                // endpoints
                let mut fields =
                    json!({ "url": url, "headers": headers, "eventTypes": event_types, "description": name });
                if let Some(n) = max_attempts {
                    fields["maxAttempts"] = json!(n);
                }
                let (status, body, _) = env.call("POST", "/v1/endpoints", Some(&tenant.key), Some(fields)).await;
                if status != 201 {
                    assert_field_error(status, &body, &["url", "headers", "eventTypes", "description", "maxAttempts"])?;
                }
                // events: random type names and idempotency keys (as header when it is a valid one)
                let mut request = ApiRequest::new(Method::POST, "/v1/events")
                    .header("authorization", &format!("Bearer {}", tenant.key))
                    .json(serde_json::to_vec(&json!({ "eventType": name, "payload": { "u": url } })).unwrap());
                if let Ok(value) = HeaderValue::from_str(&url) {
                    request.headers.insert("idempotency-key", value);
                }
                let response = handle(&env.service, request).await;
                let status = response.status.as_u16();
                if status != 202 {
                    assert_field_error(status, &response.json_body(), &["eventType", "idempotencyKey"])?;
                }
                Ok::<_, TestCaseError>(())
            })?;
            tried.set(tried.get() + 4);
            Ok(())
        })
        .unwrap();
    println!("API validators: {} random create requests, no 5xx", tried.get());
}

#[test]
fn given_random_json_bodies_on_every_write_route_then_never_5xx() {
    let rt = runtime();
    let env = Env::new(local_config());
    let tenant = rt.block_on(env.tenant("bodies"));
    let ep = rt.block_on(env.endpoint(&tenant, json!({ "url": "https://hooks.example.com/x" })));
    let ep_id = ep["id"].as_str().unwrap().to_string();
    let app = tenant.app_id.clone();
    let admin = env.admin.clone();
    let routes: Vec<(&str, String, String)> = vec![
        ("POST", "/v1/applications".into(), admin.clone()),
        ("PATCH", format!("/v1/applications/{app}"), admin.clone()),
        ("PUT", format!("/v1/applications/{app}"), admin.clone()),
        ("POST", format!("/v1/applications/{app}/api-keys"), admin.clone()),
        ("POST", "/v1/event-types".into(), tenant.key.clone()),
        ("PUT", "/v1/event-types/order.created".into(), tenant.key.clone()),
        ("POST", "/v1/endpoints".into(), tenant.key.clone()),
        ("PUT", format!("/v1/endpoints/{ep_id}"), tenant.key.clone()),
        ("PATCH", format!("/v1/endpoints/{ep_id}"), tenant.key.clone()),
        ("POST", format!("/v1/endpoints/{ep_id}/test"), tenant.key.clone()),
        ("POST", "/v1/events".into(), tenant.key.clone()),
        ("POST", "/v1/deliveries/retry".into(), tenant.key.clone()),
        ("POST", "/v1/oauth/token".into(), String::new()),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        nasty().prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("url".to_string()),
                    Just("eventType".to_string()),
                    Just("payload".to_string()),
                    Just("schema".to_string()),
                    Just("headers".to_string()),
                    Just("scopes".to_string()),
                    Just("retentionDays".to_string()),
                    Just("rateLimit".to_string()),
                    Just("from".to_string()),
                    Just("grant_type".to_string()),
                    nasty(),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let tried = Cell::new(0usize);
    let mut runner = runner();
    runner
        .run(&(0..routes.len(), value, any::<bool>()), |(route, body, as_text)| {
            let (method, path, token) = &routes[route];
            let bytes = if as_text { body.to_string().into_bytes() } else { serde_json::to_vec(&body).unwrap() };
            let mut headers = vec![("content-type", "application/json")];
            let auth = format!("Bearer {token}");
            if !token.is_empty() {
                headers.push(("authorization", &auth));
            }
            let (status, reply, _) = rt.block_on(env.raw(method, path, &headers, bytes));
            prop_assert!(status < 500, "{} {} {} → {} {}", method, path, body, status, reply);
            tried.set(tried.get() + 1);
            Ok(())
        })
        .unwrap();
    println!("random JSON bodies: {} requests on {} write routes, no 5xx", tried.get(), routes.len());
}

// ---------------------------------------------------------------------------
// Cursors
// ---------------------------------------------------------------------------

#[test]
fn given_random_strings_as_cursor_on_every_list_then_400_on_field_cursor() {
    let rt = runtime();
    let env = Env::new(local_config());
    let tenant = rt.block_on(env.tenant("cursors"));
    let ep = rt.block_on(env.endpoint(&tenant, json!({ "url": "https://hooks.example.com/x" })));
    let ep_id = ep["id"].as_str().unwrap().to_string();
    let admin = env.admin.clone();
    // Two endpoints, two event types, … so that real cursors exist to mutate.
    rt.block_on(async {
        env.endpoint(&tenant, json!({ "url": "https://hooks.example.com/y" })).await;
        env.ok("POST", "/v1/event-types", Some(&tenant.key), Some(json!({ "name": "order.paid" }))).await;
        env.tenant("second").await;
    });
    let lists: Vec<(String, String)> = vec![
        ("/v1/endpoints".into(), tenant.key.clone()),
        ("/v1/events".into(), tenant.key.clone()),
        ("/v1/deliveries".into(), tenant.key.clone()),
        (format!("/v1/endpoints/{ep_id}/deliveries"), tenant.key.clone()),
        ("/v1/event-types".into(), tenant.key.clone()),
        ("/v1/applications".into(), admin.clone()),
        (format!("/v1/applications/{}/api-keys", tenant.app_id), admin.clone()),
    ];
    let real: Vec<String> = rt.block_on(async {
        let mut real = Vec::new();
        for (path, token) in [
            ("/v1/endpoints?limit=1", &tenant.key),
            ("/v1/applications?limit=1", &admin),
            ("/v1/event-types?limit=1", &tenant.key),
        ] {
            let page = env.ok("GET", path, Some(token), None).await;
            real.push(page["nextCursor"].as_str().expect("a next cursor").to_string());
        }
        real
    });
    let cursor = prop_oneof![
        3 => nasty().prop_filter("non-empty", |s| !s.is_empty()),
        2 => (0..real.len(), any::<usize>(), any::<char>()).prop_map({
            let real = real.clone();
            move |(i, at, c)| {
                // A real cursor with one character replaced: tampering.
                let mut chars: Vec<char> = real[i].chars().collect();
                let at = at % chars.len();
                chars[at] = if chars[at] == c { if c == 'A' { 'B' } else { 'A' } } else { c };
                chars.into_iter().collect()
            }
        }),
        1 => "[A-Za-z0-9_\\-]{1,80}\\.[A-Za-z0-9_\\-]{1,30}",
    ];
    let tried = Cell::new(0usize);
    let mut runner = runner();
    runner
        .run(&(0..lists.len(), cursor), |(list, cursor)| {
            let (path, token) = &lists[list];
            let (status, body, _) =
                rt.block_on(env.call("GET", &format!("{path}?cursor={}", encode(&cursor)), Some(token), None));
            prop_assert_eq!(status, 400, "{} cursor {:?} → {}", path, cursor, body);
            prop_assert_eq!(&body["errors"][0]["field"], "cursor");
            tried.set(tried.get() + 1);
            Ok(())
        })
        .unwrap();
    // A real cursor is accepted by its own list, refused by every other one.
    rt.block_on(async {
        let (status, _, _) =
            env.call("GET", &format!("/v1/endpoints?cursor={}", encode(&real[0])), Some(&tenant.key), None).await;
        assert_eq!(status, 200);
        for (path, token) in &lists[1..] {
            let (status, body, _) =
                env.call("GET", &format!("{path}?cursor={}", encode(&real[0])), Some(token), None).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert_eq!(body["errors"][0]["field"], "cursor");
        }
    });
    println!("cursors: {} random or tampered cursors, all 400 on field cursor", tried.get());
}

// ---------------------------------------------------------------------------
// The router
// ---------------------------------------------------------------------------

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        6 => prop_oneof![
            Just(Method::GET), Just(Method::POST), Just(Method::PUT), Just(Method::PATCH), Just(Method::DELETE),
        ],
        1 => prop_oneof![Just(Method::HEAD), Just(Method::OPTIONS), Just(Method::TRACE), Just(Method::CONNECT)],
        1 => "[A-Z]{1,12}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop_oneof![
            Just("v1"), Just("applications"), Just("api-keys"), Just("event-types"), Just("endpoints"),
            Just("events"), Just("deliveries"), Just("retry"), Just("rotate-secret"), Just("test"), Just("stats"),
            Just("health"), Just("oauth"), Just("token"), Just(""), Just(".."), Just("."), Just("%2F"), Just("%00"),
            Just("%ZZ"), Just("%"), Just("+"), Just("app_"), Just("ep_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            Just("evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"), Just("dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV"), Just("key_x"),
        ]
        .prop_map(str::to_string),
        2 => nasty(),
        1 => "%[0-9A-Fa-f]{2}(%[0-9A-Fa-f]{2}){0,5}",
    ]
}

/// A path, and the route's method when it was derived from a route: random
/// segments, or a route of the table with its parameters replaced and its shape
/// bent (trailing slash, extra or missing segment, doubled slash).
fn path() -> impl Strategy<Value = (Option<Method>, String)> {
    let random = (proptest::collection::vec(segment(), 0..6), any::<bool>()).prop_map(|(segments, v1)| {
        let mut path = String::from(if v1 { "/v1" } else { "" });
        for s in &segments {
            path.push('/');
            path.push_str(s);
        }
        if path.is_empty() {
            path.push('/');
        }
        (None, path)
    });
    let routes = skyhook::api::ROUTES;
    let derived = (0..routes.len(), segment(), segment(), 0..6u8, any::<bool>()).prop_map(
        move |(index, param, extra, bend, keep_method)| {
            let route = &routes[index];
            let mut path: String = route
                .path
                .split('/')
                .skip(1)
                .map(|part| if part.starts_with('{') { param.clone() } else { part.to_string() })
                .fold(String::new(), |acc, part| acc + "/" + &part);
            match bend {
                1 => path.push('/'),
                2 => path = format!("{path}/{extra}"),
                3 => path = path.rsplit_once('/').map(|(head, _)| head.to_string()).unwrap_or_default(),
                4 => path = path.replacen('/', "//", 2),
                _ => {}
            }
            let method = keep_method.then(|| Method::from_bytes(route.method.as_bytes()).unwrap());
            (method, if path.is_empty() { "/".to_string() } else { path })
        },
    );
    prop_oneof![random, derived]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("limit".to_string()),
        Just("cursor".to_string()),
        Just("status".to_string()),
        Just("eventType".to_string()),
        Just("from".to_string()),
        Just("to".to_string()),
        Just("isActive".to_string()),
        Just("eventId".to_string()),
        Just("endpointId".to_string()),
        Just("since".to_string()),
        nasty(),
    ];
    let value = prop_oneof![
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("251".to_string()),
        Just("99999999999999999999".to_string()),
        Just("2026-01-31T12:00:00Z".to_string()),
        Just("yesterday".to_string()),
        Just("true".to_string()),
        nasty(),
    ];
    prop_oneof![
        1 => Just(String::new()),
        3 => proptest::collection::vec((key, value, any::<bool>()), 0..5).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v, raw)| if raw { format!("{k}={v}") } else { format!("{}={}", encode(&k), encode(&v)) })
                .collect::<Vec<_>>()
                .join("&")
        }),
    ]
}

#[test]
fn given_random_methods_paths_and_queries_then_the_router_never_answers_5xx_nor_panics() {
    let rt = runtime();
    let env = Env::new(local_config());
    let tenant = rt.block_on(env.tenant("router"));
    let admin = env.admin.clone();
    let credentials = [String::new(), admin.clone(), tenant.key.clone(), "garbage".to_string(), "eyJ.a.b".to_string()];
    let statuses: RefCell<BTreeMap<u16, usize>> = RefCell::default();
    let tried = Cell::new(0usize);
    let mut runner = runner();
    let strategy = (method(), path(), query(), 0..credentials.len(), proptest::collection::vec(any::<u8>(), 0..64));
    let mut config = runner.config().clone();
    config.cases = CASES * 4;
    runner = TestRunner::new(config);
    runner
        .run(&strategy, |(method, (route_method, path), query, credential, body)| {
            let method = route_method.unwrap_or(method);
            let mut request = ApiRequest::new(method.clone(), "/");
            request.path = path.clone();
            request.query = query.clone();
            if !credentials[credential].is_empty() {
                request.headers.insert(
                    HeaderName::from_static("authorization"),
                    HeaderValue::from_str(&format!("Bearer {}", credentials[credential])).unwrap(),
                );
            }
            request.body = Bytes::from(body);
            let response = rt.block_on(handle(&env.service, request));
            let status = response.status.as_u16();
            *statuses.borrow_mut().entry(status).or_default() += 1;
            prop_assert!(status < 500, "{} {}?{} → {} {:?}", method, path, query, status, response.body);
            tried.set(tried.get() + 1);
            Ok(())
        })
        .unwrap();
    println!("router: {} random requests, statuses {:?}", tried.get(), statuses.borrow());
}

#[test]
fn given_every_route_with_garbage_ids_then_404_or_4xx_never_5xx() {
    let rt = runtime();
    let env = Env::new(local_config());
    let tenant = rt.block_on(env.tenant("routes"));
    let admin = env.admin.clone();
    let tried = Cell::new(0usize);
    let mut runner = runner();
    runner
        .run(&(0..skyhook::api::ROUTES.len(), nasty(), any::<bool>()), |(index, id, as_admin)| {
            let route = &skyhook::api::ROUTES[index];
            let mut path = String::new();
            for part in route.path.split('/').skip(1) {
                path.push('/');
                if part.starts_with('{') {
                    path.push_str(&encode(&id).replace('+', "%20"));
                } else {
                    path.push_str(part);
                }
            }
            let token = if as_admin { &admin } else { &tenant.key };
            let (status, body, _) = rt.block_on(env.call(route.method, &path, Some(token), None));
            prop_assert!(status < 500, "{} {} → {} {}", route.method, path, status, body);
            tried.set(tried.get() + 1);
            Ok(())
        })
        .unwrap();
    println!("routes with garbage ids: {} requests over {} routes, no 5xx", tried.get(), skyhook::api::ROUTES.len());
}
