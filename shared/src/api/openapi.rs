//! The OpenAPI 3.1 document (`GET /v1/openapi.json`) and the rendered
//! reference (`GET /docs`).
//!
//! The document is built in code from [`ROUTES`]: every row becomes an
//! operation, described by [`describe`] (an exhaustive `match` on
//! [`RouteOp`], so a new route does not compile until it is documented).
//! Response schemas come from `#[derive(utoipa::ToSchema)]` on the domain and
//! service types; request schemas are written here, field for field as the
//! handlers in `api/<resource>.rs` read them. `openapi.json` at the repository
//! root is this document, kept current by `shared/tests/openapi.rs`.

use std::sync::OnceLock;

use http::{HeaderValue, StatusCode, header};
use utoipa::openapi::path::{Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, SchemaType};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes, SecurityScheme,
};
use utoipa::openapi::server::ServerBuilder;
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, HttpMethod, InfoBuilder, KnownFormat, LicenseBuilder,
    ObjectBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required, ResponseBuilder, Schema, SchemaFormat,
    SecurityRequirement, Type,
};
use utoipa::{PartialSchema, ToSchema};

use super::{ApiRequest, ApiResponse, ROUTES, Route, RouteOp};
use crate::domain::limits::*;
use crate::domain::{Application, Delivery, Endpoint, Event, EventType, Scope};
use crate::service::{
    AccessToken, BulkRetryResult, CreatedApiKey, CreatedEndpoint, DeliveryWithAttempts, ListPage, ServiceResult,
};

const PROBLEM_JSON: &str = "application/problem+json";
const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const TOKEN_URL: &str = "/v1/oauth/token";
const DOCS_HTML: &str = include_str!("docs.html");
/// Where [`DOCS_HTML`] gets the document.
const DOCS_PLACEHOLDER: &str = "/*__SKYHOOK_OPENAPI__*/null";

/// The OpenAPI document as pretty-printed JSON with a trailing newline.
/// Keys are sorted (paths, components, properties), so the text is stable.
pub fn openapi_json() -> String {
    let mut text = openapi().to_pretty_json().expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

pub(crate) fn handle(op: RouteOp, _request: &ApiRequest) -> ServiceResult<ApiResponse> {
    static JSON_TEXT: OnceLock<String> = OnceLock::new();
    static DOCS_TEXT: OnceLock<String> = OnceLock::new();
    let (text, content_type) = match op {
        RouteOp::OpenApi => (JSON_TEXT.get_or_init(openapi_json), "application/json"),
        _ => (DOCS_TEXT.get_or_init(docs_html), "text/html; charset=utf-8"),
    };
    let mut response = ApiResponse::no_content();
    response.status = StatusCode::OK;
    response.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    if op == RouteOp::ApiReference {
        // The page runs only its own inline script and loads nothing.
        response.headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:",
            ),
        );
    }
    response.body = text.clone().into();
    Ok(response)
}

/// The reference page with the document embedded, so it needs no request
/// and no network (it works offline and behind any path prefix).
fn docs_html() -> String {
    // `</` would end the <script> element early; `\/` is the same JSON string.
    let embedded = openapi().to_json().expect("the OpenAPI document serialises").replace("</", "<\\/");
    DOCS_HTML.replacen(DOCS_PLACEHOLDER, &embedded, 1)
}

/// The document itself.
pub(crate) fn openapi() -> OpenApi {
    let mut paths = Paths::new();
    for route in ROUTES {
        paths.add_path_operation(route.path, vec![http_method(route.method)], operation(route));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Skyhook API")
                .version(crate::VERSION)
                .description(Some(API_DESCRIPTION))
                .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build())),
        )
        .servers(Some([ServerBuilder::new()
            .url("/")
            .description(Some("The Skyhook deployment serving this document"))
            .build()]))
        .tags(Some(
            TAGS.iter()
                .map(|(name, description)| TagBuilder::new().name(*name).description(Some(*description)).build()),
        ))
        .paths(paths)
        .components(Some(components()))
        .build()
}

const API_DESCRIPTION: &str = "Outbound webhooks as a service: publish an event once; Skyhook fans it out to \
every subscribed endpoint, signs each request (Standard Webhooks 1.0), retries with backoff and keeps the \
history of every event, delivery and attempt.\n\n\
JSON, camelCase. Errors are RFC 9457 `application/problem+json` naming the offending field in `errors`; bad \
input is always a 4xx and nothing is written. Lists take `limit` (default 50, max 250) and `cursor` and answer \
`{data, nextCursor, hasMore}`. Ids are prefixed ULIDs (`app_`, `key_`, `ep_`, `evt_`, `dlv_`, `att_`); \
timestamps are RFC 3339 UTC.\n\n\
Authentication: the admin token manages applications and API keys; everything else uses an application's API \
key (`x-api-key` or `Authorization: Bearer`) or an OAuth2 access token from `POST /v1/oauth/token`.";

const TAGS: &[(&str, &str)] = &[
    ("Operations", "Liveness."),
    ("Applications", "Tenants (admin token)."),
    ("API keys", "An application's API keys (admin token). The key is shown once, at creation."),
    ("OAuth2", "Client credentials: client id = API key id, client secret = the key."),
    ("Event types", "The kinds of events an application publishes, with an optional JSON Schema for payloads."),
    ("Endpoints", "Customer URLs subscribed to event types, with their signing secrets."),
    ("Events", "Publishing and the event history."),
    ("Deliveries", "One event to one endpoint, with every attempt; manual and bulk retries."),
    ("Portal", "Short-lived customer-portal sessions limited to some endpoints."),
    ("Console", "The web console, this document and its rendered reference (no authentication)."),
];

fn http_method(method: &str) -> HttpMethod {
    match method {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        "HEAD" => HttpMethod::Head,
        "OPTIONS" => HttpMethod::Options,
        other => panic!("route method {other} has no OpenAPI equivalent"),
    }
}

// ---------------------------------------------------------------------------
// Operations

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq)]
enum Auth {
    Public,
    Admin,
    App(Scope),
}

/// A query parameter some handler reads (`ctx.query()?…`).
#[derive(Clone, Copy)]
enum Q {
    IncludeArchived,
    IsActive,
    EventType,
    EventStatus,
    DeliveryStatus,
    EventId,
    EndpointId,
    From,
    To,
    Since,
}

/// The request body of an operation.
#[derive(Clone, Copy)]
enum Body {
    None,
    /// A JSON object of this schema; `true` when the body must be sent.
    Json(&'static str, bool),
    /// The OAuth2 token request (form or JSON).
    Token,
}

/// The success answer of an operation.
#[derive(Clone, Copy)]
enum Answer {
    Json(u16, &'static str, &'static str),
    NoContent(&'static str),
    Html(&'static str),
    Asset,
    OpenApi,
}

struct Doc {
    tag: &'static str,
    summary: &'static str,
    description: &'static str,
    auth: Auth,
    /// A list: `limit` and `cursor` come first.
    list: bool,
    query: &'static [Q],
    body: Body,
    answer: Answer,
    /// Error statuses beyond the ones every route of its kind has.
    extra_errors: &'static [u16],
}

fn doc(tag: &'static str, summary: &'static str, auth: Auth, answer: Answer) -> Doc {
    Doc { tag, summary, description: "", auth, list: false, query: &[], body: Body::None, answer, extra_errors: &[] }
}

impl Doc {
    fn describe(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }
    fn list(mut self, query: &'static [Q]) -> Self {
        self.list = true;
        self.query = query;
        self
    }
    fn query(mut self, query: &'static [Q]) -> Self {
        self.query = query;
        self
    }
    fn body(mut self, schema: &'static str, required: bool) -> Self {
        self.body = Body::Json(schema, required);
        self
    }
    fn errors(mut self, extra: &'static [u16]) -> Self {
        self.extra_errors = extra;
        self
    }
}

const ADMIN: Auth = Auth::Admin;
const WH_READ: Auth = Auth::App(Scope::WebhooksRead);
const WH_WRITE: Auth = Auth::App(Scope::WebhooksWrite);
const EV_READ: Auth = Auth::App(Scope::EventsRead);
const EV_WRITE: Auth = Auth::App(Scope::EventsWrite);
const DELIVERY_FILTERS: &[Q] = &[Q::DeliveryStatus, Q::EventType, Q::EventId, Q::EndpointId, Q::From, Q::To];
const ENDPOINT_DELIVERY_FILTERS: &[Q] = &[Q::DeliveryStatus, Q::EventType, Q::EventId, Q::From, Q::To];

fn json(status: u16, description: &'static str, schema: &'static str) -> Answer {
    Answer::Json(status, description, schema)
}

/// What each route does, as its handler implements it.
fn describe(op: RouteOp) -> Doc {
    use RouteOp as O;
    match op {
        O::Health => {
            doc("Operations", "Health check", Auth::Public, json(200, "The service and its store answer", "Health"))
                .describe("No authentication. 503 when the store does not answer.")
        }
        O::OAuthToken => Doc {
            body: Body::Token,
            ..doc(
                "OAuth2",
                "Issue an access token",
                Auth::Public,
                json(200, "A short-lived bearer token (JWT)", "AccessToken"),
            )
        }
        .describe(
            "OAuth2 client credentials grant (RFC 6749 §4.4). Authenticate the client with HTTP Basic \
                (`client_id:client_secret`) or with `client_id` and `client_secret` in the body. The client id is \
                the API key id (`key_…`), the secret is the key. `scope` (space-separated) narrows the key's scopes. \
                Errors carry the RFC 6749 code in `error`. Revoking the key revokes its tokens at once.",
        ),
        O::CreateApplication => {
            doc("Applications", "Create an application", ADMIN, json(201, "The application", "Application"))
                .body("CreateApplicationRequest", true)
        }
        O::ListApplications => {
            doc("Applications", "List applications", ADMIN, json(200, "A page of applications", "ApplicationList"))
                .list(&[])
        }
        O::GetApplication => {
            doc("Applications", "Get an application", ADMIN, json(200, "The application", "Application"))
        }
        O::PatchApplication => {
            doc("Applications", "Update an application", ADMIN, json(200, "The updated application", "Application"))
                .describe("Changes only the fields sent; `rateLimit: null` removes the limit.")
                .body("UpdateApplicationRequest", false)
        }
        O::PutApplication => {
            doc("Applications", "Replace an application", ADMIN, json(200, "The replaced application", "Application"))
                .describe(
                    "Omitted fields take their defaults (`retentionDays` 31, no `rateLimit`). Read-only fields \
                (`id`, `createdAt`, `updatedAt`) may be echoed back and are ignored.",
                )
                .body("ReplaceApplicationRequest", true)
        }
        O::DeleteApplication => doc("Applications", "Delete an application", ADMIN, Answer::NoContent("Deleted"))
            .describe("Deletes the application with its keys, event types, endpoints and history."),
        O::CreateApiKey => doc(
            "API keys",
            "Create an API key",
            ADMIN,
            json(201, "The key; `key` is shown only in this response", "CreatedApiKey"),
        )
        .body("CreateApiKeyRequest", true),
        O::ListApiKeys => doc(
            "API keys",
            "List an application's API keys",
            ADMIN,
            json(200, "A page of keys (by `prefix` and `last4`)", "ApiKeyList"),
        )
        .list(&[]),
        O::RevokeApiKey => doc("API keys", "Revoke an API key", ADMIN, Answer::NoContent("Revoked"))
            .describe("Takes effect at once, for the key and for every access token issued for it."),
        O::CreateEventType => {
            doc("Event types", "Create an event type", WH_WRITE, json(201, "The event type", "EventType"))
                .body("CreateEventTypeRequest", true)
                .errors(&[409])
        }
        O::ListEventTypes => {
            doc("Event types", "List event types", WH_READ, json(200, "A page of event types", "EventTypeList"))
                .list(&[Q::IncludeArchived])
        }
        O::GetEventType => doc("Event types", "Get an event type", WH_READ, json(200, "The event type", "EventType")),
        O::PutEventType => doc(
            "Event types",
            "Create or replace an event type",
            WH_WRITE,
            json(200, "The replaced event type (201 when it was created)", "EventType"),
        )
        .describe(
            "Creates the event type when it does not exist (201) or replaces its description, schema \
                and archived flag (200). Event types cannot be renamed: a `name` in the body must match the path.",
        )
        .body("PutEventTypeRequest", false),
        O::DeleteEventType => doc("Event types", "Delete an event type", WH_WRITE, Answer::NoContent("Deleted")),
        O::CreateEndpoint => doc(
            "Endpoints",
            "Create an endpoint",
            WH_WRITE,
            json(201, "The endpoint; `secret` is shown only in this response", "CreatedEndpoint"),
        )
        .describe("The signing secret is generated unless `secret` (a `whsec_` secret) is supplied.")
        .body("CreateEndpointRequest", true),
        O::ListEndpoints => {
            doc("Endpoints", "List endpoints", WH_READ, json(200, "A page of endpoints", "EndpointList"))
                .list(&[Q::IsActive, Q::EventType])
        }
        O::GetEndpoint => doc("Endpoints", "Get an endpoint", WH_READ, json(200, "The endpoint", "Endpoint")),
        O::PutEndpoint => {
            doc("Endpoints", "Replace an endpoint", WH_WRITE, json(200, "The replaced endpoint", "Endpoint"))
                .describe(
                    "Omitted fields take their defaults. The signing secret is kept (rotate it with \
                `POST /v1/endpoints/{id}/rotate-secret`). Read-only fields may be echoed back and are ignored.",
                )
                .body("ReplaceEndpointRequest", true)
        }
        O::PatchEndpoint => {
            doc("Endpoints", "Update an endpoint", WH_WRITE, json(200, "The updated endpoint", "Endpoint"))
                .describe(
                    "Changes only the fields sent; `description: null` clears it. `secret` cannot be changed here.",
                )
                .body("UpdateEndpointRequest", false)
        }
        O::DeleteEndpoint => doc("Endpoints", "Delete an endpoint", WH_WRITE, Answer::NoContent("Deleted")),
        O::RotateEndpointSecret => doc(
            "Endpoints",
            "Rotate the signing secret",
            WH_WRITE,
            json(200, "The endpoint with its new `secret` (shown only here)", "CreatedEndpoint"),
        )
        .describe("The old secret keeps signing, next to the new one, for 24 hours.")
        .body("RotateSecretRequest", false),
        O::TestEndpoint => doc(
            "Endpoints",
            "Send a test event",
            WH_WRITE,
            json(202, "The test event, delivered to this endpoint only", "Event"),
        )
        .describe(
            "Publishes an event (type `webhook.test` unless `eventType` is given) delivered to this \
                endpoint only.",
        )
        .body("TestEndpointRequest", false),
        O::EndpointStats => doc(
            "Endpoints",
            "Delivery statistics",
            WH_READ,
            json(200, "Counts and latencies since `since`, and the circuit breaker's state", "EndpointStatsView"),
        )
        .query(&[Q::Since]),
        O::ReplayEndpoint => doc(
            "Endpoints",
            "Replay history to an endpoint",
            WH_WRITE,
            json(202, "The replay, started (200: the same replay was already running)", "Replay"),
        )
        .describe(
            "Re-sends the events published in [`from`, `to`) that this endpoint would receive today \
                (its event types and filter), oldest first, as new deliveries — to backfill a new endpoint or \
                recover one after an outage. With `onlyFailed`, only events whose deliveries to this endpoint \
                all failed. Runs in the background; follow it with `GET /v1/endpoints/{id}/replays/{replayId}`. \
                Repeating the request while it runs returns the running replay; a replay interrupted anywhere \
                resumes where it stopped and never creates a delivery twice.",
        )
        .body("ReplayRequest", true),
        O::ListReplays => {
            doc("Endpoints", "List an endpoint's replays", WH_READ, json(200, "A page of replays", "ReplayList"))
                .list(&[])
        }
        O::GetReplay => doc("Endpoints", "Get a replay and its progress", WH_READ, json(200, "The replay", "Replay")),
        O::ListEndpointDeliveries => doc(
            "Deliveries",
            "List an endpoint's deliveries",
            EV_READ,
            json(200, "A page of deliveries", "DeliveryList"),
        )
        .list(ENDPOINT_DELIVERY_FILTERS),
        O::PublishEvent => doc(
            "Events",
            "Publish an event",
            EV_WRITE,
            json(202, "The event, durably written; the same event for a repeated idempotency key", "Event"),
        )
        .describe(
            "Validates the payload against the event type's schema, writes the event and fans it out to \
                every active endpoint subscribed to its type. A repeated idempotency key (header or body, within \
                24 hours) returns the first event with `Idempotent-Replayed: true`; reused with another body it is \
                a 409. 429 when the application's `rateLimit` is exceeded.",
        )
        .body("PublishEventRequest", true)
        .errors(&[409, 429]),
        O::ListEvents => doc("Events", "List events", EV_READ, json(200, "A page of events", "EventList")).list(&[
            Q::EventType,
            Q::EventStatus,
            Q::From,
            Q::To,
        ]),
        O::GetEvent => doc("Events", "Get an event", EV_READ, json(200, "The event", "Event")),
        O::ListDeliveries => {
            doc("Deliveries", "List deliveries", EV_READ, json(200, "A page of deliveries", "DeliveryList"))
                .list(DELIVERY_FILTERS)
        }
        O::BulkRetry => doc(
            "Deliveries",
            "Retry failed deliveries in bulk",
            EV_WRITE,
            json(202, "The new deliveries", "BulkRetryResult"),
        )
        .describe(
            "Re-sends every failed delivery matching the filter (up to 10,000 per call; \
                `truncated: true` means call again), each as a new delivery with `retryOf` set.",
        )
        .body("BulkRetryRequest", false),
        O::GetDelivery => doc(
            "Deliveries",
            "Get a delivery with its attempts",
            EV_READ,
            json(200, "The delivery and every attempt", "DeliveryWithAttempts"),
        ),
        O::DeleteDelivery => doc("Deliveries", "Delete a delivery", EV_WRITE, Answer::NoContent("Deleted")),
        O::RetryDelivery => doc(
            "Deliveries",
            "Retry a delivery",
            EV_WRITE,
            json(202, "The new delivery (`retryOf` is the original)", "Delivery"),
        )
        .describe(
            "Starts a new attempt chain for a finished delivery. 409 when the delivery is still in \
                progress or was already retried.",
        )
        .errors(&[409]),
        O::CreatePortalSession => doc(
            "Portal",
            "Create a customer-portal session",
            WH_WRITE,
            json(201, "The session: a token and the console URL that uses it", "PortalSession"),
        )
        .describe(
            "A short-lived session (default 1 hour) for one customer: it may only view the listed \
                endpoints, their stats and deliveries, retry deliveries and send test events. It never has more \
                scopes than the key that created it, and revoking that key revokes the session.",
        )
        .body("PortalSessionRequest", true),
        O::OpenApi => doc("Console", "This OpenAPI document", Auth::Public, Answer::OpenApi),
        O::ApiReference => doc(
            "Console",
            "The API reference",
            Auth::Public,
            Answer::Html("An HTML page rendering this document; it loads nothing from the network"),
        ),
        O::ConsoleIndex => doc("Console", "The web console", Auth::Public, Answer::Html("The console's HTML page")),
        O::ConsoleAsset => doc("Console", "A console asset", Auth::Public, Answer::Asset),
    }
}

fn operation_id(op: RouteOp) -> String {
    let name = format!("{op:?}");
    let mut chars = name.chars();
    chars.next().map(|first| first.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}

fn operation(route: &Route) -> Operation {
    let doc = describe(route.op);
    let is_api = route.path.starts_with("/v1/") && doc.tag != "Console";
    let mut builder =
        OperationBuilder::new().operation_id(Some(operation_id(route.op))).tag(doc.tag).summary(Some(doc.summary));
    let scope_note = match doc.auth {
        Auth::App(scope) => format!("Needs an API key or access token with the `{scope}` scope."),
        Auth::Admin => "Needs the admin token.".to_string(),
        Auth::Public => String::new(),
    };
    let description =
        [doc.description, scope_note.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>();
    if !description.is_empty() {
        builder = builder.description(Some(description.join("\n\n")));
    }

    for name in path_parameters(route.path) {
        builder = builder.parameter(path_parameter(route, name));
    }
    if doc.list {
        builder = builder.parameter(limit_parameter()).parameter(cursor_parameter());
    }
    for q in doc.query {
        builder = builder.parameter(query_parameter(*q));
    }
    if route.op == RouteOp::PublishEvent {
        builder = builder.parameter(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Deduplicates retries of the same publish for 24 hours (same as `idempotencyKey` in the body; \
                     when both are sent they must match).",
                ))
                .schema(Some(string_schema("", Some(MAX_IDEMPOTENCY_KEY_CHARS)).min_length(Some(1)))),
        );
    }

    match doc.body {
        Body::None => {}
        Body::Json(schema, required) => {
            builder = builder.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(if required { Required::True } else { Required::False }))
                    .content(JSON, ContentBuilder::new().schema(Some(reference(schema))).build())
                    .build(),
            ));
        }
        Body::Token => {
            builder = builder.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(FORM, ContentBuilder::new().schema(Some(reference("TokenRequest"))).build())
                    .content(JSON, ContentBuilder::new().schema(Some(reference("TokenRequest"))).build())
                    .build(),
            ));
        }
    }

    builder = match doc.answer {
        Answer::Json(status, description, schema) => {
            let mut response = ResponseBuilder::new()
                .description(description)
                .content(JSON, ContentBuilder::new().schema(Some(reference(schema))).build());
            if route.op == RouteOp::PublishEvent {
                response = response.header(
                    "Idempotent-Replayed",
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true"])))
                        .description(Some("`true` when this is the event first published with the idempotency key"))
                        .build(),
                );
            }
            if route.op == RouteOp::OAuthToken {
                response = response.header(
                    "Cache-Control",
                    HeaderBuilder::new().schema(string_schema("", None)).description(Some("`no-store`")).build(),
                );
            }
            let mut builder = builder.response(status.to_string(), response.build());
            if route.op == RouteOp::PutEventType {
                builder = builder.response(
                    "201",
                    ResponseBuilder::new()
                        .description("The event type, created")
                        .content(JSON, ContentBuilder::new().schema(Some(reference("EventType"))).build())
                        .build(),
                );
            }
            builder
        }
        Answer::NoContent(description) => {
            builder.response("204", ResponseBuilder::new().description(description).build())
        }
        Answer::Html(description) => builder.response(
            "200",
            ResponseBuilder::new()
                .description(description)
                .content("text/html", ContentBuilder::new().schema(Some(string_schema("", None))).build())
                .build(),
        ),
        Answer::OpenApi => builder.response(
            "200",
            ResponseBuilder::new()
                .description("This document (OpenAPI 3.1)")
                .content(
                    JSON,
                    ContentBuilder::new()
                        .schema(Some(ObjectBuilder::new().description(Some("An OpenAPI 3.1 document")).build()))
                        .build(),
                )
                .build(),
        ),
        Answer::Asset => builder.response(
            "200",
            ResponseBuilder::new()
                .description("The asset, with its content type (JavaScript, CSS, SVG, …)")
                .content("*/*", ContentBuilder::new().build())
                .build(),
        ),
    };

    if is_api {
        for status in error_statuses(route, &doc) {
            builder = builder.response(status.to_string(), RefOr::Ref(Ref::from_response_name(error_name(status))));
        }
    } else if route.op == RouteOp::ConsoleAsset {
        builder = builder.response("404", RefOr::Ref(Ref::from_response_name(error_name(404))));
    }

    match doc.auth {
        Auth::Public => {}
        Auth::Admin => builder = builder.security(SecurityRequirement::new("adminToken", Vec::<String>::new())),
        Auth::App(scope) => {
            builder = builder
                .security(SecurityRequirement::new("apiKey", Vec::<String>::new()))
                .security(SecurityRequirement::new("bearerAuth", Vec::<String>::new()))
                .security(SecurityRequirement::new("oauth2", [scope.as_str()]));
        }
    }
    builder.build()
}

/// The problem+json statuses a route can answer, in order.
fn error_statuses(route: &Route, doc: &Doc) -> Vec<u16> {
    let mut statuses = Vec::new();
    let has_input = !matches!(doc.body, Body::None) || doc.list || !doc.query.is_empty();
    if has_input || route.op == RouteOp::RetryDelivery {
        statuses.push(400);
    }
    if doc.auth != Auth::Public || route.op == RouteOp::OAuthToken {
        statuses.push(401);
    }
    if doc.auth != Auth::Public {
        statuses.push(403);
    }
    if route.path.contains('{') {
        statuses.push(404);
    }
    let writes = matches!(route.method, "POST" | "PUT" | "PATCH" | "DELETE") && doc.auth != Auth::Public;
    if writes {
        // Any write can meet a concurrent change of the same record.
        statuses.push(409);
    }
    statuses.push(413);
    if !matches!(doc.body, Body::None) {
        statuses.push(415);
    }
    statuses.extend(doc.extra_errors.iter().copied());
    statuses.push(503);
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

fn error_name(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        other => panic!("no shared response for {other}"),
    }
}

const ERROR_RESPONSES: &[(u16, &str)] = &[
    (400, "Invalid input: `errors` names every offending field or query parameter; nothing was written"),
    (401, "Missing, invalid, expired or revoked credentials"),
    (403, "The credentials are valid but may not do this (missing scope, or the admin token on an application route)"),
    (404, "No such resource in the caller's application (another tenant's id is a 404 too)"),
    (
        409,
        "Conflicts with the current state (already exists, idempotency key reused with another body, already retried)",
    ),
    (413, "The request body (272 KiB) or the event payload (256 KiB) is too large"),
    (415, "The body is not application/json"),
    (429, "The application's publish rate limit is exceeded; retry after `Retry-After` seconds"),
    (503, "Storage or the queue is temporarily unavailable; nothing was written, retry after `Retry-After` seconds"),
];

fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn path_parameter(route: &Route, name: &str) -> Parameter {
    use RouteOp as O;
    let (description, example) = match (name, route.op) {
        ("appId", _) => ("Application id", "app_01JD3X5Q3V1R7N9GZ8W6Y2K4TB"),
        ("keyId", _) => ("API key id", "key_01JD3X5Q3V1R7N9GZ8W6Y2K4TB"),
        ("name", _) => ("Event type name", "invoice.paid"),
        ("asset", _) => ("Asset file name", "app.js"),
        ("id", O::GetEvent) => ("Event id", "evt_01JD3X5Q3V1R7N9GZ8W6Y2K4TB"),
        ("id", O::GetDelivery | O::DeleteDelivery | O::RetryDelivery) => {
            ("Delivery id", "dlv_01JD3X5Q3V1R7N9GZ8W6Y2K4TB")
        }
        ("replayId", _) => ("Replay id", "rpl_01JD3X5Q3V1R7N9GZ8W6Y2K4TB"),
        ("id", _) => ("Endpoint id", "ep_01JD3X5Q3V1R7N9GZ8W6Y2K4TB"),
        (other, _) => panic!("path parameter {{{other}}} of {} is not documented", route.path),
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).examples([example])))
        .build()
}

fn query(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn limit_parameter() -> Parameter {
    query(
        "limit",
        "Page size.",
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_PAGE_LIMIT as u64))
            .default(Some(DEFAULT_PAGE_LIMIT.into())),
    )
}

fn cursor_parameter() -> Parameter {
    query(
        "cursor",
        "`nextCursor` of the previous page: opaque, tamper-checked, valid only for this list and application.",
        string_schema("", None),
    )
}

fn query_parameter(q: Q) -> Parameter {
    match q {
        Q::IncludeArchived => {
            query("includeArchived", "Include archived event types.", boolean_schema("").default(Some(false.into())))
        }
        Q::IsActive => query("isActive", "Only active (`true`) or inactive (`false`) endpoints.", boolean_schema("")),
        Q::EventType => query("eventType", "Only this event type.", string_schema("", None)),
        Q::EventStatus => query("status", "Only events in this state.", reference("EventStatus")),
        Q::DeliveryStatus => query("status", "Only deliveries in this state.", reference("DeliveryStatus")),
        Q::EventId => query("eventId", "Only deliveries of this event (`evt_…`).", string_schema("", None)),
        Q::EndpointId => query("endpointId", "Only deliveries to this endpoint (`ep_…`).", string_schema("", None)),
        Q::From => query("from", "Created at or after (RFC 3339).", date_time_schema("")),
        Q::To => query("to", "Created at or before (RFC 3339); not before `from`.", date_time_schema("")),
        Q::Since => query("since", "Start of the window (RFC 3339); default 24 hours ago.", date_time_schema("")),
    }
}

// ---------------------------------------------------------------------------
// Components

fn components() -> utoipa::openapi::Components {
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    register::<Application>(&mut schemas);
    register::<CreatedApiKey>(&mut schemas);
    register::<EventType>(&mut schemas);
    register::<Endpoint>(&mut schemas);
    register::<CreatedEndpoint>(&mut schemas);
    register::<crate::ports::EndpointStats>(&mut schemas);
    register::<crate::service::EndpointStatsView>(&mut schemas);
    register::<crate::service::CircuitStatus>(&mut schemas);
    register::<crate::service::CircuitState>(&mut schemas);
    register::<crate::service::Replay>(&mut schemas);
    register::<crate::service::ReplayStatus>(&mut schemas);
    register::<crate::domain::CircuitBreakerSettings>(&mut schemas);
    register::<crate::domain::DeliveryControls>(&mut schemas);
    register::<crate::domain::SignatureScheme>(&mut schemas);
    register::<Event>(&mut schemas);
    register::<Delivery>(&mut schemas);
    register::<DeliveryWithAttempts>(&mut schemas);
    register::<BulkRetryResult>(&mut schemas);
    register::<AccessToken>(&mut schemas);
    register::<crate::domain::EventStatus>(&mut schemas);
    register::<crate::domain::DeliveryStatus>(&mut schemas);
    page::<Application>(&mut schemas, "ApplicationList");
    page::<crate::domain::ApiKey>(&mut schemas, "ApiKeyList");
    page::<EventType>(&mut schemas, "EventTypeList");
    page::<Endpoint>(&mut schemas, "EndpointList");
    page::<Event>(&mut schemas, "EventList");
    page::<Delivery>(&mut schemas, "DeliveryList");
    page::<crate::service::Replay>(&mut schemas, "ReplayList");
    schemas.extend(hand_written_schemas());

    let mut builder = ComponentsBuilder::new().schemas_from_iter(schemas);
    for (status, description) in ERROR_RESPONSES {
        let mut response = ResponseBuilder::new()
            .description(*description)
            .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(reference("Problem"))).build());
        if matches!(status, 429 | 503) {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            );
        }
        if *status == 401 {
            response = response.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(string_schema("", None))
                    .description(Some("`Bearer realm=\"skyhook\"`"))
                    .build(),
            );
        }
        builder = builder.response(error_name(*status), response.build());
    }
    builder
        .security_scheme(
            "adminToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (`Authorization: Bearer <token>`): manages applications and API keys. \
                         From the Secrets Manager secret in AWS; for `skyhook serve`, `SKYHOOK_ADMIN_TOKEN` or the \
                         token generated on first start (`skyhook admin-token`).",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "An application's API key (`sk_…`) in the `x-api-key` header.",
            ))),
        )
        .security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <credential>` with an application's API key, an OAuth2 access \
                         token (JWT) from `POST /v1/oauth/token`, or a customer-portal session token.",
                    ))
                    .build(),
            ),
        )
        .security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::ClientCredentials(ClientCredentials::new(
                    TOKEN_URL,
                    Scopes::from_iter([
                        ("webhooks:write", "Create, change and delete event types and endpoints"),
                        ("webhooks:read", "Read event types, endpoints and endpoint stats"),
                        ("events:write", "Publish events, retry and delete deliveries"),
                        ("events:read", "Read events and deliveries"),
                    ]),
                ))],
                "OAuth2 client credentials: client id = API key id (`key_…`), client secret = the key. The \
                 token is a short-lived JWT sent as `Authorization: Bearer`; it has at most the key's scopes.",
            )),
        )
        .build()
}

/// `T` and every schema it refers to.
fn register<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    T::schemas(schemas);
    schemas.push((T::name().into_owned(), T::schema()));
}

/// `ListPage<T>` under a name of its own.
fn page<T: ToSchema + serde::Serialize>(schemas: &mut Vec<(String, RefOr<Schema>)>, name: &str) {
    register::<T>(schemas);
    schemas.push((name.to_string(), <ListPage<T> as PartialSchema>::schema()));
}

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn described(builder: ObjectBuilder, description: &str) -> ObjectBuilder {
    if description.is_empty() { builder } else { builder.description(Some(description)) }
}

fn string_schema(description: &str, max_length: Option<usize>) -> ObjectBuilder {
    described(ObjectBuilder::new().schema_type(Type::String).max_length(max_length), description)
}

fn boolean_schema(description: &str) -> ObjectBuilder {
    described(ObjectBuilder::new().schema_type(Type::Boolean), description)
}

fn integer_schema(description: &str, min: u64, max: u64) -> ObjectBuilder {
    described(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(min)).maximum(Some(max)), description)
}

fn date_time_schema(description: &str) -> ObjectBuilder {
    described(
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        description,
    )
}

fn nullable(builder: ObjectBuilder, ty: Type) -> ObjectBuilder {
    builder.schema_type(SchemaType::from_iter([ty, Type::Null]))
}

fn any_value(description: &str) -> ObjectBuilder {
    described(ObjectBuilder::new().schema_type(SchemaType::AnyValue), description)
}

fn string_map(description: &str, max_entries: usize) -> ObjectBuilder {
    described(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
                ObjectBuilder::new().schema_type(Type::String).build(),
            )))))
            .max_properties(Some(max_entries)),
        description,
    )
}

fn string_array(description: &str, max_items: Option<usize>) -> ArrayBuilder {
    let builder = ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)).max_items(max_items);
    if description.is_empty() { builder } else { builder.description(Some(description)) }
}

/// A request object: properties in order, the required ones named, and no
/// other fields (the handlers answer 400 for an unknown field).
fn request(description: &str, properties: Vec<(&str, RefOr<Schema>)>, required: &[&str]) -> RefOr<Schema> {
    let mut builder = described(ObjectBuilder::new().schema_type(Type::Object), description);
    for (name, schema) in properties {
        builder = builder.property(name, schema);
    }
    for name in required {
        builder = builder.required(*name);
    }
    RefOr::T(Schema::Object(
        builder.additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false))).build(),
    ))
}

fn s(builder: ObjectBuilder) -> RefOr<Schema> {
    RefOr::T(Schema::Object(builder.build()))
}

fn a(builder: ArrayBuilder) -> RefOr<Schema> {
    RefOr::T(Schema::Array(builder.build()))
}

fn endpoint_fields(for_patch: bool) -> Vec<(&'static str, RefOr<Schema>)> {
    let description = "What the endpoint is for.";
    let mut fields = vec![
        (
            "url",
            s(string_schema(
                "Where deliveries are POSTed: `https` in production; IP literals and private \
            addresses are refused.",
                Some(MAX_URL_CHARS),
            )
            .format(Some(SchemaFormat::Custom("uri".into())))),
        ),
        (
            "description",
            s(if for_patch {
                nullable(
                    string_schema(&format!("{description} `null` clears it."), Some(MAX_DESCRIPTION_CHARS)),
                    Type::String,
                )
            } else {
                string_schema(description, Some(MAX_DESCRIPTION_CHARS))
            }),
        ),
        (
            "eventTypes",
            a(string_array(
                "Event types delivered here (each must exist); empty or omitted = all.",
                Some(MAX_EVENT_TYPES_PER_ENDPOINT),
            )),
        ),
        (
            "headers",
            s(string_map(
                "Custom request headers; Skyhook's own (`webhook-*`, `content-type`, `user-agent`, …) \
            cannot be overridden. Values ≤ 4 KiB.",
                MAX_HEADERS,
            )),
        ),
        (
            "maxAttempts",
            s(integer_schema("Attempts before the delivery fails.", 1, MAX_MAX_ATTEMPTS as u64)
                .default(if for_patch { None } else { Some(DEFAULT_MAX_ATTEMPTS.into()) })),
        ),
        (
            "timeoutSecs",
            s(integer_schema("Seconds the endpoint has to answer.", 1, MAX_TIMEOUT_SECS as u64)
                .default(if for_patch { None } else { Some(DEFAULT_TIMEOUT_SECS.into()) })),
        ),
        ("payloadFormat", reference("PayloadFormat")),
        (
            "isActive",
            s(boolean_schema("Inactive endpoints receive nothing.").default(if for_patch {
                None
            } else {
                Some(true.into())
            })),
        ),
    ];
    if !for_patch {
        fields.push((
            "secret",
            s(string_schema(
                "Signing secret: `whsec_` + base64 of 24 to 64 bytes. Generated when omitted. Ignored by PUT \
                (rotate with `POST /v1/endpoints/{id}/rotate-secret`).",
                None,
            )
            .pattern(Some("^whsec_[A-Za-z0-9+/=]+$"))),
        ));
    }
    fields.push((
        "metadata",
        s(string_map("Free-form labels: keys 1–256 characters, values ≤ 1 KiB.", MAX_METADATA_ENTRIES)),
    ));
    fields.extend([
        (
            "ordered",
            s(boolean_schema(
                "Deliver in publish order, one at a time: a failing delivery holds the later ones back \
                (head-of-line blocking) until it succeeds or exhausts its attempts.",
            )
            .default(if for_patch { None } else { Some(false.into()) })),
        ),
        (
            "rateLimit",
            s(nullable(
                integer_schema(
                    "At most this many deliveries per second; the rest wait (no attempt is spent). `null` = unlimited.",
                    1,
                    MAX_RATE_LIMIT_PER_SEC as u64,
                ),
                Type::Integer,
            )),
        ),
        ("circuitBreaker", reference("CircuitBreakerSettings")),
        (
            "filter",
            s(nullable(ObjectBuilder::new(), Type::Object).description(Some(
                "Only events whose payload matches are delivered here: `{\"field\": \"amount\", \"gte\": 100}`, \
                combined with `and` / `or` / `not`; operators eq, ne, in, nin, exists, gt, gte, lt, lte, contains \
                (docs/FILTERS.md). Validated on write; `null` removes it.",
            ))),
        ),
        (
            "signatureSchemes",
            a(ArrayBuilder::new().items(reference("SignatureScheme")).min_items(Some(1)).description(Some(
                "Signatures each request carries: `v1` (HMAC-SHA256 with the `whsec_` secret) and/or `v1a` \
                    (Ed25519; verify with the endpoint's `publicKey`). Default `[\"v1\"]`.",
            ))),
        ),
    ]);
    fields
}

fn hand_written_schemas() -> Vec<(String, RefOr<Schema>)> {
    let name = || s(string_schema("", Some(MAX_NAME_CHARS)).min_length(Some(1)));
    let retention = || {
        s(integer_schema(
            "Days events, deliveries and attempts are kept.",
            MIN_RETENTION_DAYS as u64,
            MAX_RETENTION_DAYS as u64,
        )
        .default(Some(DEFAULT_RETENTION_DAYS.into())))
    };
    let event_type_fields = |name_description: &str| {
        vec![
            ("name", s(string_schema(name_description, Some(MAX_NAME_CHARS)).pattern(Some("^[A-Za-z0-9._:-]+$")))),
            ("description", s(string_schema("", Some(MAX_DESCRIPTION_CHARS)))),
            ("schema", s(nullable(ObjectBuilder::new(), Type::Object).description(Some("A JSON Schema every payload of this type must satisfy (≤ 64 KiB); `null` or omitted = any payload.")))),
            ("archived", s(boolean_schema("Archived types can no longer be published.").default(Some(false.into())))),
        ]
    };
    let entries: Vec<(&str, RefOr<Schema>)> = vec![
        (
            "Problem",
            s(ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("An RFC 9457 problem document"))
                .property("type", s(string_schema("`urn:skyhook:problem:<slug>` (validation, too-large, unauthorized, forbidden, not-found, conflict, rate-limited, unavailable, …)", None).examples(["urn:skyhook:problem:validation"])))
                .required("type")
                .property("title", s(string_schema("Short summary of the problem type", None).examples(["Invalid request"])))
                .required("title")
                .property("status", s(ObjectBuilder::new().schema_type(Type::Integer).description(Some("The HTTP status")).examples([400])))
                .required("status")
                .property("detail", s(string_schema("What went wrong, for humans", None).examples(["url: is required"])))
                .required("detail")
                .property("instance", s(string_schema("The request path", None).examples(["/v1/endpoints"])))
                .property("errors", a(ArrayBuilder::new().items(reference("FieldError")).description(Some("Every invalid field (400, 413, 415)"))))
                .property("error", s(string_schema("OAuth2 error code (RFC 6749 §5.2), on the token route only", None)
                    .enum_values(Some(["invalid_request", "invalid_client", "invalid_grant", "invalid_scope", "unsupported_grant_type"])))),
            ),
        ),
        (
            "FieldError",
            s(ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("One invalid input, named by its JSON field (`eventTypes[2]`, `headers.X-Foo`) or query parameter"))
                .property("field", s(string_schema("", None).examples(["url"])))
                .required("field")
                .property("message", s(string_schema("", None).examples(["is required"])))
                .required("message")),
        ),
        (
            "Health",
            s(ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("status", s(string_schema("", None).enum_values(Some(["ok"]))))
                .required("status")
                .property("version", s(string_schema("Skyhook's version", None)))
                .required("version")
                .property("backend", s(string_schema("The store in use", None).examples(["sqlite", "dynamodb"])))
                .required("backend")),
        ),
        (
            "CreateApplicationRequest",
            request("", vec![
                ("name", name()),
                ("retentionDays", retention()),
                ("rateLimit", s(integer_schema("Publishes per second; omitted = unlimited.", 1, 1_000_000))),
            ], &["name"]),
        ),
        (
            "ReplaceApplicationRequest",
            request("Every field; read-only fields (`id`, `createdAt`, `updatedAt`) may be echoed back and are ignored.", vec![
                ("name", name()),
                ("retentionDays", retention()),
                ("rateLimit", s(nullable(integer_schema("Publishes per second; omitted or `null` = unlimited.", 1, 1_000_000), Type::Integer))),
            ], &["name"]),
        ),
        (
            "UpdateApplicationRequest",
            request("Only the fields to change.", vec![
                ("name", name()),
                ("retentionDays", s(integer_schema("Days events, deliveries and attempts are kept.", MIN_RETENTION_DAYS as u64, MAX_RETENTION_DAYS as u64))),
                ("rateLimit", s(nullable(integer_schema("Publishes per second; `null` removes the limit.", 1, 1_000_000), Type::Integer))),
            ], &[]),
        ),
        (
            "CreateApiKeyRequest",
            request("", vec![
                ("name", name()),
                ("scopes", a(ArrayBuilder::new().items(reference("Scope")).min_items(Some(1)).description(Some("Omitted = all four scopes.")))),
            ], &["name"]),
        ),
        ("CreateEventTypeRequest", request("", event_type_fields("Letters, digits and `. _ - :`, e.g. `invoice.paid`."), &["name"])),
        ("PutEventTypeRequest", request("The name is the path's; a `name` here must match it.", event_type_fields("Must equal the name in the path."), &[])),
        ("CreateEndpointRequest", request("", endpoint_fields(false), &["url"])),
        ("ReplaceEndpointRequest", request("Every field; omitted ones take their defaults. Read-only fields may be echoed back and are ignored.", endpoint_fields(false), &["url"])),
        ("UpdateEndpointRequest", request("Only the fields to change.", endpoint_fields(true), &[])),
        (
            "RotateSecretRequest",
            request("", vec![(
                "secret",
                s(string_schema("The new `whsec_` secret; generated when omitted.", None).pattern(Some("^whsec_[A-Za-z0-9+/=]+$"))),
            )], &[]),
        ),
        (
            "TestEndpointRequest",
            request("", vec![
                ("eventType", s(string_schema("Default `webhook.test`.", Some(MAX_NAME_CHARS)))),
                ("payload", s(any_value("Any JSON value; default a short test message."))),
            ], &[]),
        ),
        (
            "PublishEventRequest",
            request("", vec![
                ("eventType", s(string_schema("An existing, not archived event type.", Some(MAX_NAME_CHARS)).examples(["invoice.paid"]))),
                ("payload", s(any_value("Any JSON value but `null` (≤ 256 KiB serialised); validated against the event type's schema.")
                    .examples([serde_json::json!({"invoiceId": "inv_1001", "amount": 4200, "currency": "EUR"})]))),
                ("idempotencyKey", s(string_schema("Same as the `Idempotency-Key` header.", Some(MAX_IDEMPOTENCY_KEY_CHARS)).min_length(Some(1)))),
            ], &["eventType", "payload"]),
        ),
        (
            "ReplayRequest",
            request("Which history to re-send.", vec![
                ("from", s(date_time_schema("Events published at or after this (within the last 90 days)."))),
                ("to", s(date_time_schema("Events published before this; default now."))),
                ("eventTypes", a(string_array("Only these event types (each must exist); omitted = every type the endpoint receives.", Some(MAX_EVENT_TYPES_PER_ENDPOINT)))),
                ("onlyFailed", s(boolean_schema("Only events whose deliveries to this endpoint all failed.").default(Some(false.into())))),
            ], &["from"]),
        ),
        (
            "BulkRetryRequest",
            request("Which failed deliveries to re-send; all failed ones when empty.", vec![
                ("endpointId", s(string_schema("Only deliveries to this endpoint (`ep_…`).", None))),
                ("eventType", s(string_schema("Only this event type.", None))),
                ("from", s(date_time_schema("Created at or after."))),
                ("to", s(date_time_schema("Created at or before."))),
            ], &[]),
        ),
        (
            "TokenRequest",
            s(ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("RFC 6749 §4.4 token request; client credentials here or as HTTP Basic."))
                .property("grant_type", s(string_schema("", None).enum_values(Some(["client_credentials"]))))
                .required("grant_type")
                .property("client_id", s(string_schema("The API key id (`key_…`)", None)))
                .property("client_secret", s(string_schema("The API key", None)))
                .property("scope", s(string_schema("Space-separated scopes, a subset of the key's; default all of them", None)))),
        ),
        (
            "PortalSessionRequest",
            request("", vec![
                ("endpointIds", a(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)).min_items(Some(1)).max_items(Some(50)).description(Some("The endpoints (`ep_…`) the session may see.")))),
                ("ttlSeconds", s(integer_schema("Session lifetime.", 60, 86_400).default(Some(3600.into())))),
            ], &["endpointIds"]),
        ),
        (
            "PortalSession",
            s(ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("token", s(string_schema("Bearer token of the session", None)))
                .required("token")
                .property("url", s(string_schema("Console URL opening the session, relative to the console's origin", None)))
                .required("url")
                .property("expiresAt", s(date_time_schema("")))
                .required("expiresAt")
                .property("endpointIds", a(ArrayBuilder::new().items(reference("Id"))))
                .required("endpointIds")),
        ),
    ];
    entries.into_iter().map(|(name, schema)| (name.to_string(), schema)).collect()
}
