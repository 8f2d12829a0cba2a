//! API Gateway HTTP API (payload v2) ⇄ [`ApiRequest`]/[`ApiResponse`].

use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

use crate::api::{ApiRequest, ApiResponse, Resource, handle_resource};
use crate::service::Skyhook;

/// The API's path prefix; a stage prefix is only stripped in front of it.
const API_PREFIX: &str = "/v1";

/// Serves one request with the routes of `resource` (other paths are 404).
pub async fn handle_http(
    service: &Skyhook,
    resource: Resource,
    request: Request,
) -> Result<Response<Body>, lambda_http::Error> {
    let response = handle_resource(service, Some(resource), to_api_request(request)).await;
    Ok(from_api_response(response))
}

/// The request as the API sees it. The path is the HTTP API's `rawPath`
/// (still percent-encoded; the router decodes parameters), never the
/// stage-prefixed URI `lambda_http` builds; a `/{stage}` in front of `/v1`
/// (a named, non-`$default` stage) is removed. The body is already
/// base64-decoded by `lambda_http` when `isBase64Encoded` is set.
pub fn to_api_request(request: Request) -> ApiRequest {
    let path = api_path(&request);
    let query = request.uri().query().unwrap_or_default().to_string();
    let (parts, body) = request.into_parts();
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    ApiRequest { method: parts.method, path, query, headers: parts.headers, body }
}

fn api_path(request: &Request) -> String {
    let (context_path, stage) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => (context.http.path.as_deref(), context.stage.as_deref()),
        _ => (None, None),
    };
    let raw = Some(request.raw_http_path())
        .filter(|p| !p.is_empty())
        .or(context_path.filter(|p| !p.is_empty()))
        .unwrap_or_else(|| request.uri().path());
    strip_stage(raw, stage).to_string()
}

fn strip_stage<'a>(path: &'a str, stage: Option<&str>) -> &'a str {
    let Some(stage) = stage.filter(|s| !s.is_empty() && *s != "$default") else { return path };
    match path.strip_prefix('/').and_then(|p| p.strip_prefix(stage)) {
        Some(rest) if rest == API_PREFIX || rest.starts_with("/v1/") => rest,
        _ => path,
    }
}

/// Status, headers and body; UTF-8 bodies go back as text (JSON), anything
/// else as binary (base64 on the wire).
pub fn from_api_response(response: ApiResponse) -> Response<Body> {
    let body = if response.body.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(response.body.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(err) => Body::Binary(err.into_bytes()),
        }
    };
    let mut out = Response::new(body);
    *out.status_mut() = response.status;
    *out.headers_mut() = response.headers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_named_stage_then_only_a_prefix_before_v1_is_stripped() {
        assert_eq!(strip_stage("/prod/v1/events", Some("prod")), "/v1/events");
        assert_eq!(strip_stage("/prod/v1", Some("prod")), "/v1");
        assert_eq!(strip_stage("/v1/events", Some("prod")), "/v1/events");
        assert_eq!(strip_stage("/v1/events", Some("$default")), "/v1/events");
        assert_eq!(strip_stage("/v1/events", None), "/v1/events");
        assert_eq!(strip_stage("/v1/v1/health", Some("v1")), "/v1/health");
        assert_eq!(strip_stage("/v1/health", Some("v1")), "/v1/health");
        assert_eq!(strip_stage("/production/v1/x", Some("prod")), "/production/v1/x");
    }
}
