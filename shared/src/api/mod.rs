//! HTTP routing shared verbatim by the Lambda functions (through
//! `lambda_http`) and by `skyhook serve` (through hyper): both turn their
//! request into an [`ApiRequest`] and call [`handle`].

mod applications;
mod console;
mod deliveries;
mod endpoints;
mod event_types;
mod events;
mod json;
mod openapi;
mod operations;
pub mod problem;
mod query;
mod routes;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Serialize;

pub use console::handle_static;
pub use openapi::openapi_json;
pub use routes::{ROUTES, Resource, Route, RouteOp};

use crate::domain::limits::MAX_REQUEST_BYTES;
use crate::service::{Credential, Principal, ServiceError, ServiceResult, Skyhook};

/// A request as the API sees it, whatever carried it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiRequest {
    pub fn new(method: Method, path_and_query: &str) -> Self {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        ApiRequest {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    pub fn json(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self
    }

    fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn credential(&self) -> Option<Credential> {
        if let Some(auth) = self.header_str("authorization") {
            let (scheme, token) = auth.trim().split_once(' ').unwrap_or((auth, ""));
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                return Some(Credential::Bearer(token.trim().to_string()));
            }
        }
        self.header_str("x-api-key").map(|k| Credential::ApiKey(k.trim().to_string()))
    }
}

#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("responses serialise");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        ApiResponse { status, headers, body: body.into() }
    }

    pub fn no_content() -> Self {
        ApiResponse { status: StatusCode::NO_CONTENT, headers: HeaderMap::new(), body: Bytes::new() }
    }

    /// The body as JSON (for tests and the CLI).
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Every route of the API.
pub async fn handle(service: &Skyhook, request: ApiRequest) -> ApiResponse {
    handle_resource(service, None, request).await
}

/// Only the routes of `resource` (one Lambda function each); others are 404.
pub async fn handle_resource(service: &Skyhook, resource: Option<Resource>, request: ApiRequest) -> ApiResponse {
    let request_id = crate::crypto::random_token(9);
    let span = tracing::info_span!("request", request_id = %request_id, method = %request.method, path = %request.path);
    let started = std::time::Instant::now();
    // `instrument`, not `enter`: a span entered across an `.await` leaks into
    // whatever else runs on the thread meanwhile.
    let routed = tracing::Instrument::instrument(route_and_run(service, resource, &request), span.clone()).await;
    let _enter = span.enter();
    let mut response = match routed {
        Ok(response) => response,
        Err(err) => problem::response(&err, &request.path),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers.insert("x-request-id", value);
    }
    let status = response.status.as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(status, elapsed_ms, "request failed");
    } else {
        tracing::info!(status, elapsed_ms, "request");
    }
    response
}

/// Path parameters of the matched route, in order.
pub(crate) struct Params(Vec<String>);

impl Params {
    pub(crate) fn get(&self, index: usize) -> &str {
        self.0.get(index).map(String::as_str).unwrap_or("")
    }
}

async fn route_and_run(service: &Skyhook, only: Option<Resource>, request: &ApiRequest) -> ServiceResult<ApiResponse> {
    let (route, params) = routes::find(&request.method, &request.path, only)?;
    if request.body.len() > MAX_REQUEST_BYTES {
        return Err(ServiceError::TooLarge { field: "body".into(), limit: MAX_REQUEST_BYTES });
    }
    if route.op == RouteOp::Health {
        return operations::health(service).await;
    }
    if route.op == RouteOp::OAuthToken {
        return operations::oauth_token(service, request).await;
    }
    if route.resource == Resource::Console {
        return match route.op {
            RouteOp::OpenApi | RouteOp::ApiReference => openapi::handle(route.op, request),
            _ => console::handle(route.op, &params, request),
        };
    }
    let who: Principal = service.authenticate(request.credential()).await?;
    let ctx = Ctx { service, who: &who, request, params };
    match route.resource {
        Resource::Applications | Resource::ApiKeys => applications::handle(route.op, &ctx).await,
        Resource::EventTypes => event_types::handle(route.op, &ctx).await,
        Resource::Endpoints => endpoints::handle(route.op, &ctx).await,
        Resource::Events => events::handle(route.op, &ctx).await,
        Resource::Deliveries => deliveries::handle(route.op, &ctx).await,
        Resource::Console => unreachable!("served above without credentials"),
    }
}

/// What a handler gets.
pub(crate) struct Ctx<'a> {
    pub service: &'a Skyhook,
    pub who: &'a Principal,
    pub request: &'a ApiRequest,
    pub params: Params,
}

impl Ctx<'_> {
    pub(crate) fn param(&self, index: usize) -> &str {
        self.params.get(index)
    }

    pub(crate) fn body(&self) -> ServiceResult<json::JsonBody> {
        json::JsonBody::parse(self.request)
    }

    pub(crate) fn query(&self) -> ServiceResult<query::Query> {
        query::Query::parse(&self.request.query)
    }
}
