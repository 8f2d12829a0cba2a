use http::StatusCode;

use super::json::JsonBody;
use super::{ApiResponse, Ctx, RouteOp};
use crate::domain::PayloadFormat;
use crate::ports::EndpointFilter;
use crate::service::{EndpointInput, EndpointPatch, ServiceResult, TestEvent};

const READ_ONLY: &[&str] = &["id", "applicationId", "secretLast4", "disabledReason", "createdAt", "updatedAt"];
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
