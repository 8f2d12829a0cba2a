//! The route table: one row per operation of SPEC §3. `template.yaml` maps
//! the same rows to functions (a test compares the two).

use http::Method;

use super::Params;
use crate::service::ServiceError;

/// The resource a route belongs to: one Lambda function each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Applications,
    ApiKeys,
    EventTypes,
    Endpoints,
    Events,
    Deliveries,
    /// The web console, the API reference and the OpenAPI document (no auth).
    Console,
}

impl Resource {
    pub const ALL: [Resource; 7] = [
        Resource::Applications,
        Resource::ApiKeys,
        Resource::EventTypes,
        Resource::Endpoints,
        Resource::Events,
        Resource::Deliveries,
        Resource::Console,
    ];

    /// The function's name in `functions/` and `template.yaml`.
    pub fn function_name(self) -> &'static str {
        match self {
            Resource::Applications => "applications",
            Resource::ApiKeys => "api-keys",
            Resource::EventTypes => "event-types",
            Resource::Endpoints => "endpoints",
            Resource::Events => "events",
            Resource::Deliveries => "deliveries",
            Resource::Console => "console",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp {
    Health,
    OAuthToken,
    CreateApplication,
    ListApplications,
    GetApplication,
    PatchApplication,
    PutApplication,
    DeleteApplication,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    CreateEventType,
    ListEventTypes,
    GetEventType,
    PutEventType,
    DeleteEventType,
    CreateEndpoint,
    ListEndpoints,
    GetEndpoint,
    PutEndpoint,
    PatchEndpoint,
    DeleteEndpoint,
    RotateEndpointSecret,
    TestEndpoint,
    EndpointStats,
    ReplayEndpoint,
    ListReplays,
    GetReplay,
    ListEndpointDeliveries,
    PublishEvent,
    ListEvents,
    GetEvent,
    ListDeliveries,
    BulkRetry,
    GetDelivery,
    DeleteDelivery,
    RetryDelivery,
    CreatePortalSession,
    OpenApi,
    ApiReference,
    ConsoleIndex,
    ConsoleAsset,
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// `{name}` segments are parameters.
    pub path: &'static str,
    pub resource: Resource,
    pub op: RouteOp,
}

const fn r(method: &'static str, path: &'static str, resource: Resource, op: RouteOp) -> Route {
    Route { method, path, resource, op }
}

use Resource as R;
use RouteOp as O;

/// Literal segments are listed before parameters that could shadow them.
pub const ROUTES: &[Route] = &[
    r("GET", "/v1/health", R::Applications, O::Health),
    r("POST", "/v1/applications", R::Applications, O::CreateApplication),
    r("GET", "/v1/applications", R::Applications, O::ListApplications),
    r("GET", "/v1/applications/{appId}", R::Applications, O::GetApplication),
    r("PATCH", "/v1/applications/{appId}", R::Applications, O::PatchApplication),
    r("PUT", "/v1/applications/{appId}", R::Applications, O::PutApplication),
    r("DELETE", "/v1/applications/{appId}", R::Applications, O::DeleteApplication),
    r("POST", "/v1/applications/{appId}/api-keys", R::ApiKeys, O::CreateApiKey),
    r("GET", "/v1/applications/{appId}/api-keys", R::ApiKeys, O::ListApiKeys),
    r("DELETE", "/v1/applications/{appId}/api-keys/{keyId}", R::ApiKeys, O::RevokeApiKey),
    r("POST", "/v1/oauth/token", R::ApiKeys, O::OAuthToken),
    r("POST", "/v1/event-types", R::EventTypes, O::CreateEventType),
    r("GET", "/v1/event-types", R::EventTypes, O::ListEventTypes),
    r("GET", "/v1/event-types/{name}", R::EventTypes, O::GetEventType),
    r("PUT", "/v1/event-types/{name}", R::EventTypes, O::PutEventType),
    r("DELETE", "/v1/event-types/{name}", R::EventTypes, O::DeleteEventType),
    r("POST", "/v1/endpoints", R::Endpoints, O::CreateEndpoint),
    r("GET", "/v1/endpoints", R::Endpoints, O::ListEndpoints),
    r("GET", "/v1/endpoints/{id}", R::Endpoints, O::GetEndpoint),
    r("PUT", "/v1/endpoints/{id}", R::Endpoints, O::PutEndpoint),
    r("PATCH", "/v1/endpoints/{id}", R::Endpoints, O::PatchEndpoint),
    r("DELETE", "/v1/endpoints/{id}", R::Endpoints, O::DeleteEndpoint),
    r("POST", "/v1/endpoints/{id}/rotate-secret", R::Endpoints, O::RotateEndpointSecret),
    r("POST", "/v1/endpoints/{id}/test", R::Endpoints, O::TestEndpoint),
    r("GET", "/v1/endpoints/{id}/stats", R::Endpoints, O::EndpointStats),
    r("POST", "/v1/endpoints/{id}/replay", R::Endpoints, O::ReplayEndpoint),
    r("GET", "/v1/endpoints/{id}/replays", R::Endpoints, O::ListReplays),
    r("GET", "/v1/endpoints/{id}/replays/{replayId}", R::Endpoints, O::GetReplay),
    r("GET", "/v1/endpoints/{id}/deliveries", R::Deliveries, O::ListEndpointDeliveries),
    r("POST", "/v1/events", R::Events, O::PublishEvent),
    r("GET", "/v1/events", R::Events, O::ListEvents),
    r("GET", "/v1/events/{id}", R::Events, O::GetEvent),
    r("GET", "/v1/deliveries", R::Deliveries, O::ListDeliveries),
    r("POST", "/v1/deliveries/retry", R::Deliveries, O::BulkRetry),
    r("GET", "/v1/deliveries/{id}", R::Deliveries, O::GetDelivery),
    r("DELETE", "/v1/deliveries/{id}", R::Deliveries, O::DeleteDelivery),
    r("POST", "/v1/deliveries/{id}/retry", R::Deliveries, O::RetryDelivery),
    r("POST", "/v1/portal/sessions", R::Endpoints, O::CreatePortalSession),
    r("GET", "/v1/openapi.json", R::Console, O::OpenApi),
    r("GET", "/docs", R::Console, O::ApiReference),
    r("GET", "/", R::Console, O::ConsoleIndex),
    r("GET", "/console/{asset}", R::Console, O::ConsoleAsset),
];

fn match_path(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with('{') => {
                if s.is_empty() {
                    return None;
                }
                params.push(percent_decode(s)?);
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

fn percent_decode(segment: &str) -> Option<String> {
    let decoded: Vec<u8> = url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())?;
    String::from_utf8(decoded).ok()
}

/// The route for this method and path, or 404 / 405.
pub(crate) fn find(
    method: &Method,
    path: &str,
    only: Option<Resource>,
) -> Result<(&'static Route, Params), ServiceError> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    let mut allowed = Vec::new();
    for route in ROUTES {
        if only.is_some_and(|resource| resource != route.resource) {
            continue;
        }
        if let Some(params) = match_path(route.path, path) {
            if route.method == method.as_str() {
                return Ok((route, Params(params)));
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        Err(ServiceError::NotFound("route"))
    } else {
        Err(ServiceError::MethodNotAllowed(allowed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_literal_and_a_parameter_route_then_the_literal_wins() {
        let (route, _) = find(&Method::POST, "/v1/deliveries/retry", None).unwrap();
        assert_eq!(route.op, RouteOp::BulkRetry);
        let (route, params) = find(&Method::POST, "/v1/deliveries/dlv_1/retry", None).unwrap();
        assert_eq!(route.op, RouteOp::RetryDelivery);
        assert_eq!(params.get(0), "dlv_1");
    }

    #[test]
    fn given_a_known_path_with_another_method_then_it_is_405() {
        let err = find(&Method::PATCH, "/v1/events", None).err().unwrap();
        assert!(matches!(err, ServiceError::MethodNotAllowed(ref allowed) if allowed == "POST, GET"));
        assert!(matches!(find(&Method::GET, "/v1/nope", None), Err(ServiceError::NotFound(_))));
    }

    #[test]
    fn given_a_resource_filter_then_other_resources_are_not_routed() {
        assert!(find(&Method::GET, "/v1/events", Some(Resource::Endpoints)).is_err());
        assert!(find(&Method::GET, "/v1/events", Some(Resource::Events)).is_ok());
    }

    #[test]
    fn given_percent_encoded_parameters_then_they_are_decoded() {
        let (_, params) = find(&Method::GET, "/v1/event-types/invoice%2Epaid", None).unwrap();
        assert_eq!(params.get(0), "invoice.paid");
    }
}
