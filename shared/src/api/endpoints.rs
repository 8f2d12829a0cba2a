use http::StatusCode;

use super::json::JsonBody;
use super::{ApiResponse, Ctx, RouteOp};
use serde_json::Value;

use crate::domain::{PayloadFormat, SignatureScheme};
use crate::filter::PayloadFilter;
use crate::ports::EndpointFilter;
use crate::service::{
    CircuitBreakerPatch, ControlsPatch, EndpointInput, EndpointPatch, ReplayRequest, ServiceResult, TestEvent,
};

const READ_ONLY: &[&str] =
    &["id", "applicationId", "secretLast4", "disabledReason", "publicKey", "createdAt", "updatedAt"];
const SCHEMES: &[(&str, SignatureScheme)] = &[("v1", SignatureScheme::HmacSha256), ("v1a", SignatureScheme::Ed25519)];

/// The delivery-control fields of a create, PUT or PATCH body.
fn controls(body: &mut JsonBody) -> ControlsPatch {
    let filter = match body.value("filter") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(document) => match PayloadFilter::parse(&document) {
            Ok(filter) => Some(Some(filter)),
            Err(err) => {
                let field = if err.path.is_empty() { "filter".to_string() } else { format!("filter.{}", err.path) };
                body.add_violation(&field, &err.reason);
                None
            }
        },
    };
    let signature_schemes = body.string_list("signatureSchemes").map(|names| {
        let mut schemes = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            match SCHEMES.iter().find(|(n, _)| n == name) {
                Some((_, scheme)) => schemes.push(*scheme),
                None => {
                    body.add_violation(&format!("signatureSchemes[{i}]"), "must be v1 (HMAC-SHA256) or v1a (Ed25519)")
                }
            }
        }
        schemes
    });
    ControlsPatch {
        ordered: body.bool("ordered"),
        rate_limit: body.nullable_u32("rateLimit"),
        circuit_breaker: circuit_breaker(body),
        filter,
        signature_schemes,
    }
}

fn circuit_breaker(body: &mut JsonBody) -> Option<CircuitBreakerPatch> {
    const FIELD: &str = "circuitBreaker";
    let object = match body.value(FIELD) {
        None | Some(Value::Null) => return None,
        Some(Value::Object(object)) => object,
        Some(_) => {
            body.add_violation(FIELD, "must be an object such as {\"enabled\": true, \"failureRatio\": 0.5}");
            return None;
        }
    };
    let mut patch = CircuitBreakerPatch::default();
    for (key, value) in object {
        let field = format!("{FIELD}.{key}");
        let whole = || value.as_u64().and_then(|n| u32::try_from(n).ok());
        match key.as_str() {
            "enabled" => match value.as_bool() {
                Some(b) => patch.enabled = Some(b),
                None => body.add_violation(&field, "must be a boolean"),
            },
            "failureRatio" => match value.as_f64() {
                Some(r) => patch.failure_ratio = Some(r),
                None => body.add_violation(&field, "must be a number between 0.01 and 1"),
            },
            "minRequests" | "windowSecs" | "openSecs" => match whole() {
                Some(n) if key == "minRequests" => patch.min_requests = Some(n),
                Some(n) if key == "windowSecs" => patch.window_secs = Some(n),
                Some(n) => patch.open_secs = Some(n),
                None => body.add_violation(&field, "must be a non-negative whole number"),
            },
            _ => body.add_violation(&field, "is not a known field"),
        }
    }
    Some(patch)
}
const FORMATS: &[(&str, PayloadFormat)] = &[("standard", PayloadFormat::Standard), ("raw", PayloadFormat::Raw)];

fn input(body: &mut JsonBody) -> EndpointInput {
    EndpointInput {
        url: body.required_string("url"),
        description: body.string("description"),
        event_types: body.string_list("eventTypes"),
        headers: body.string_map("headers"),
        max_attempts: body.u32("maxAttempts"),
        timeout_secs: body.u32("timeoutSecs"),
        payload_format: body.choice("payloadFormat", FORMATS),
        is_active: body.bool("isActive"),
        secret: body.string("secret"),
        metadata: body.string_map("metadata"),
        controls: controls(body),
    }
}

pub(crate) async fn handle(op: RouteOp, ctx: &Ctx<'_>) -> ServiceResult<ApiResponse> {
    let service = ctx.service;
    let who = ctx.who;
    match op {
        RouteOp::CreateEndpoint => {
            let mut body = ctx.body()?;
            let input = input(&mut body);
            body.finish(&[])?;
            Ok(ApiResponse::json(StatusCode::CREATED, &service.create_endpoint(who, input).await?))
        }
        RouteOp::ListEndpoints => {
            let query = ctx.query()?;
            let filter = EndpointFilter { is_active: query.bool("isActive")?, event_type: query.string("eventType") };
            Ok(ApiResponse::json(StatusCode::OK, &service.list_endpoints(who, filter, &query.list()?).await?))
        }
        RouteOp::GetEndpoint => Ok(ApiResponse::json(StatusCode::OK, &service.get_endpoint(who, ctx.param(0)).await?)),
        RouteOp::PutEndpoint => {
            let mut body = ctx.body()?;
            let input = input(&mut body);
            body.finish(READ_ONLY)?;
            Ok(ApiResponse::json(StatusCode::OK, &service.replace_endpoint(who, ctx.param(0), input).await?))
        }
        RouteOp::PatchEndpoint => {
            let mut body = ctx.body()?;
            let patch = EndpointPatch {
                url: body.string("url"),
                description: body.nullable_string("description"),
                event_types: body.string_list("eventTypes"),
                headers: body.string_map("headers"),
                max_attempts: body.u32("maxAttempts"),
                timeout_secs: body.u32("timeoutSecs"),
                payload_format: body.choice("payloadFormat", FORMATS),
                is_active: body.bool("isActive"),
                metadata: body.string_map("metadata"),
                controls: controls(&mut body),
            };
            if body.value("secret").is_some() {
                body.add_violation("secret", "cannot be changed here; use POST /v1/endpoints/{id}/rotate-secret");
            }
            body.finish(READ_ONLY)?;
            Ok(ApiResponse::json(StatusCode::OK, &service.update_endpoint(who, ctx.param(0), patch).await?))
        }
        RouteOp::DeleteEndpoint => {
            service.delete_endpoint(who, ctx.param(0)).await?;
            Ok(ApiResponse::no_content())
        }
        RouteOp::RotateEndpointSecret => {
            let mut body = ctx.body()?;
            let secret = body.string("secret");
            body.finish(&[])?;
            Ok(ApiResponse::json(StatusCode::OK, &service.rotate_endpoint_secret(who, ctx.param(0), secret).await?))
        }
        RouteOp::TestEndpoint => {
            let mut body = ctx.body()?;
            let test = TestEvent {
                event_type: body.string("eventType"),
                payload: body.value("payload").filter(|v| !v.is_null()),
            };
            body.finish(&[])?;
            Ok(ApiResponse::json(StatusCode::ACCEPTED, &service.send_test_event(who, ctx.param(0), test).await?))
        }
        RouteOp::EndpointStats => {
            let since = ctx.query()?.timestamp("since")?;
            Ok(ApiResponse::json(StatusCode::OK, &service.endpoint_stats(who, ctx.param(0), since).await?))
        }
        RouteOp::ReplayEndpoint => {
            let mut body = ctx.body()?;
            let request = ReplayRequest {
                from: body.timestamp("from"),
                to: body.timestamp("to"),
                event_types: body.string_list("eventTypes"),
                only_failed: body.bool("onlyFailed"),
            };
            if request.from.is_none() && body.value("from").is_none() {
                body.add_violation("from", "is required (RFC 3339)");
            }
            body.finish(&[])?;
            let (replay, started) = service.start_replay(who, ctx.param(0), request).await?;
            let status = if started { StatusCode::ACCEPTED } else { StatusCode::OK };
            Ok(ApiResponse::json(status, &replay))
        }
        RouteOp::ListReplays => {
            let query = ctx.query()?;
            Ok(ApiResponse::json(StatusCode::OK, &service.list_replays(who, ctx.param(0), &query.list()?).await?))
        }
        RouteOp::GetReplay => {
            Ok(ApiResponse::json(StatusCode::OK, &service.get_replay(who, ctx.param(0), ctx.param(1)).await?))
        }
        RouteOp::CreatePortalSession => {
            let mut body = ctx.body()?;
            let request = crate::service::PortalSessionRequest {
                endpoint_ids: body.string_list("endpointIds"),
                ttl_seconds: body.u32("ttlSeconds"),
            };
            body.finish(&[])?;
            Ok(ApiResponse::json(StatusCode::CREATED, &service.create_portal_session(who, request).await?))
        }
        _ => unreachable!("routed by resource"),
    }
}
