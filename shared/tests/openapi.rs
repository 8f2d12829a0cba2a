//! The OpenAPI document: `openapi.json` at the repository root is current,
//! every route is in it, it is a valid OpenAPI 3.1 document (checked with the
//! PyPI `openapi-spec-validator` in `.venv`), and the API serves it and the
//! offline reference page.
//!
//! `SKYHOOK_UPDATE_OPENAPI=1 cargo test -p skyhook-shared --test openapi`
//! rewrites `openapi.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use http::Method;
use serde_json::Value;
use skyhook::adapters::local_secrets::StaticSecrets;
use skyhook::adapters::sqlite::{SqliteQueue, SqliteQueueConfig, SqliteStore};
use skyhook::api::{ApiRequest, ROUTES, handle, openapi_json};
use skyhook::ports::{Clock, ManualClock};
use skyhook::service::{ServiceConfig, Skyhook};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

fn document() -> Value {
    serde_json::from_str(&openapi_json()).expect("openapi_json() is JSON")
}

#[test]
fn given_the_code_then_the_committed_openapi_json_is_current() {
    let path = repo_root().join("openapi.json");
    let generated = openapi_json();
    if std::env::var("SKYHOOK_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale (or missing): regenerate it with\n  SKYHOOK_UPDATE_OPENAPI=1 cargo test -p skyhook-shared --test openapi\n\
         and commit the result",
        path.display()
    );
}

#[test]
fn given_two_calls_then_the_document_text_is_identical() {
    assert_eq!(openapi_json(), openapi_json());
}

#[test]
fn given_the_route_table_then_every_route_is_an_operation_with_its_method_and_path_parameters() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut operation_ids = std::collections::BTreeSet::new();
    for route in ROUTES {
        let method = route.method.to_ascii_lowercase();
        let op = &paths.get(route.path).unwrap_or_else(|| panic!("{} is missing from paths", route.path))[&method];
        assert!(op.is_object(), "{} {} is missing", route.method, route.path);
        let id = op["operationId"].as_str().expect("operationId");
        assert!(operation_ids.insert(id.to_string()), "operationId {id} is used twice");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{} {} has no responses",
            route.method,
            route.path
        );

        let declared: Vec<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        let expected: Vec<&str> =
            route.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        assert_eq!(declared, expected, "path parameters of {} {}", route.method, route.path);
    }
    let documented: usize = paths.values().map(|item| item.as_object().map_or(0, |m| m.len())).sum();
    assert_eq!(documented, ROUTES.len(), "the document has operations that are not routes");
}

#[test]
fn given_the_api_routes_then_errors_security_and_lists_are_documented() {
    let doc = document();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["adminToken"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["apiKey"]["name"], "x-api-key");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    let flow = &schemes["oauth2"]["flows"]["clientCredentials"];
    assert_eq!(flow["tokenUrl"], "/v1/oauth/token");
    for scope in ["webhooks:write", "webhooks:read", "events:write", "events:read"] {
        assert!(flow["scopes"][scope].is_string(), "scope {scope}");
    }
    for status in ["400", "401", "403", "404", "409", "413", "429", "503"] {
        let name = doc["paths"]["/v1/events"]["post"]["responses"]
            .get(status)
            .or_else(|| doc["paths"]["/v1/endpoints/{id}"]["patch"]["responses"].get(status))
            .and_then(|r| r["$ref"].as_str())
            .unwrap_or_else(|| panic!("no shared {status} response"))
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let response = &doc["components"]["responses"][&name];
        assert_eq!(
            response["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem",
            "{status} answers problem+json"
        );
    }
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail"] {
        assert!(problem["required"].as_array().unwrap().iter().any(|f| f == field), "Problem.{field}");
    }

    // Admin routes need the admin token; application routes offer the key,
    // the bearer and OAuth2 with the scope the service checks.
    let security = |path: &str, method: &str| doc["paths"][path][method]["security"].clone();
    assert_eq!(security("/v1/applications", "post"), serde_json::json!([{ "adminToken": [] }]));
    assert_eq!(
        security("/v1/events", "get"),
        serde_json::json!([{ "apiKey": [] }, { "bearerAuth": [] }, { "oauth2": ["events:read"] }])
    );
    assert_eq!(security("/v1/endpoints", "post")[2]["oauth2"][0], "webhooks:write");
    assert!(security("/v1/health", "get").is_null());

    // Query parameters: paging on every list, and the filters the handlers read.
    let query = |path: &str| -> Vec<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    for path in
        ["/v1/applications", "/v1/applications/{appId}/api-keys", "/v1/event-types", "/v1/endpoints", "/v1/events"]
    {
        assert!(query(path).starts_with(&["limit".into(), "cursor".into()]), "{path}: {:?}", query(path));
    }
    assert_eq!(
        query("/v1/deliveries"),
        ["limit", "cursor", "status", "eventType", "eventId", "endpointId", "from", "to"]
    );
    assert_eq!(
        query("/v1/endpoints/{id}/deliveries"),
        ["limit", "cursor", "status", "eventType", "eventId", "from", "to"]
    );
    assert_eq!(query("/v1/events"), ["limit", "cursor", "eventType", "status", "from", "to"]);
    assert_eq!(query("/v1/endpoints"), ["limit", "cursor", "isActive", "eventType"]);
    assert_eq!(query("/v1/event-types"), ["limit", "cursor", "includeArchived"]);
    assert_eq!(query("/v1/endpoints/{id}/stats"), ["since"]);

    // Request bodies name the fields the handlers read.
    let body_fields = |schema: &str| -> Vec<String> {
        let mut fields: Vec<String> =
            doc["components"]["schemas"][schema]["properties"].as_object().unwrap().keys().cloned().collect();
        fields.sort();
        fields
    };
    assert_eq!(
        body_fields("CreateEndpointRequest"),
        [
            "circuitBreaker",
            "description",
            "eventTypes",
            "filter",
            "headers",
            "isActive",
            "maxAttempts",
            "metadata",
            "ordered",
            "payloadFormat",
            "rateLimit",
            "secret",
            "signatureSchemes",
            "timeoutSecs",
            "url"
        ]
    );
    assert_eq!(body_fields("ReplayRequest"), ["eventTypes", "from", "onlyFailed", "to"]);
    assert_eq!(body_fields("PublishEventRequest"), ["eventType", "idempotencyKey", "payload"]);
    assert_eq!(body_fields("BulkRetryRequest"), ["endpointId", "eventType", "from", "to"]);
    assert_eq!(body_fields("CreateApplicationRequest"), ["name", "rateLimit", "retentionDays"]);
    assert_eq!(body_fields("CreateApiKeyRequest"), ["name", "scopes"]);
    assert_eq!(body_fields("CreateEventTypeRequest"), ["archived", "description", "name", "schema"]);

    // Response schemas come from the Rust types: secrets never appear.
    // (An endpoint is its own fields and its delivery controls, `allOf`.)
    let endpoint = doc["components"]["schemas"]["Endpoint"]["allOf"][1]["properties"].as_object().unwrap();
    assert!(endpoint.contains_key("secretLast4") && !endpoint.contains_key("secretEncrypted"));
    assert_eq!(doc["components"]["schemas"]["Endpoint"]["allOf"][0]["$ref"], "#/components/schemas/DeliveryControls");
    let controls = doc["components"]["schemas"]["DeliveryControls"]["properties"].as_object().unwrap();
    assert!(
        controls.contains_key("publicKey") && !controls.contains_key("signingKeys") && !controls.contains_key("keys")
    );
    let key = doc["components"]["schemas"]["ApiKey"]["properties"].as_object().unwrap();
    assert!(key.contains_key("last4") && !key.contains_key("keyHash"));
}

/// The repository's virtualenv Python (scripts/test.sh creates it from
/// scripts/requirements-test.txt).
fn venv_python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, or python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt",
        python.display()
    );
    python
}

#[test]
fn given_the_document_then_openapi_spec_validator_accepts_it() {
    let python = venv_python();
    let has_validator = Command::new(&python)
        .args(["-c", "import openapi_spec_validator"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        has_validator,
        "openapi-spec-validator is not installed in .venv: .venv/bin/pip install -r scripts/requirements-test.txt"
    );
    let file = std::env::temp_dir().join(format!("skyhook-openapi-{}.json", std::process::id()));
    std::fs::write(&file, openapi_json()).unwrap();
    let output = Command::new(&python)
        .args(["-m", "openapi_spec_validator", "--schema", "3.1", "--validation-errors", "all"])
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "openapi-spec-validator rejected the document:\n{stdout}\n{stderr}");
    assert!(stdout.contains("OK"), "unexpected validator output:\n{stdout}\n{stderr}");
}

struct Service {
    service: Skyhook,
    db_path: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.db_path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

fn service() -> Service {
    let db_path = std::env::temp_dir().join(format!(
        "skyhook-openapi-test-{}-{}.sqlite",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(chrono::Utc::now()));
    let store = Arc::new(SqliteStore::open(&db_path, Arc::clone(&clock)).expect("open store"));
    let queue = Arc::new(
        SqliteQueue::open(&db_path, "deliveries", SqliteQueueConfig::default(), Arc::clone(&clock))
            .expect("open queue"),
    );
    let service = Skyhook::new(store, queue, clock, StaticSecrets::random().0, ServiceConfig::default());
    Service { service, db_path }
}

#[tokio::test]
async fn given_no_credentials_then_the_api_serves_the_document_and_the_offline_reference() {
    let app = service();
    let response = handle(&app.service, ApiRequest::new(Method::GET, "/v1/openapi.json")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["content-type"], "application/json");
    assert_eq!(response.json_body(), document());

    let response = handle(&app.service, ApiRequest::new(Method::GET, "/docs")).await;
    assert_eq!(response.status, 200);
    assert!(response.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = String::from_utf8(response.body.to_vec()).unwrap();
    assert!(html.contains("<title>Skyhook API reference</title>"));
    // Self-contained: no external script, style or font, and the document is embedded.
    for needle in ["src=\"http", "href=\"http", "src=\"//", "@import", "cdn"] {
        assert!(!html.to_ascii_lowercase().contains(needle), "the page refers to {needle}");
    }
    let tag = "<script id=\"openapi\" type=\"application/json\">";
    let start = html.find(tag).expect("embedded document") + tag.len();
    let end = start + html[start..].find("</script>").unwrap();
    let embedded: Value = serde_json::from_str(&html[start..end]).expect("the embedded document is JSON");
    assert_eq!(embedded, document());
}
