use http::StatusCode;

use super::{ApiResponse, Ctx, RouteOp};
use crate::domain::EventStatus;
use crate::ports::EventFilter;
use crate::service::{PublishEvent, ServiceResult};

pub(crate) async fn handle(op: RouteOp, ctx: &Ctx<'_>) -> ServiceResult<ApiResponse> {
    let service = ctx.service;
    let who = ctx.who;
    match op {
        RouteOp::PublishEvent => {
            let mut body = ctx.body()?;
            let input = PublishEvent {
                event_type: body.required_string("eventType"),
                payload: body.value("payload"),
                idempotency_key: body.string("idempotencyKey"),
                idempotency_header: ctx.request.header_str("idempotency-key").map(str::to_string),
            };
            body.finish(&[])?;
            let published = service.publish_event(who, input).await?;
            let mut response = ApiResponse::json(StatusCode::ACCEPTED, &published);
            if published.duplicate {
                response.headers.insert("idempotent-replayed", http::HeaderValue::from_static("true"));
            }
            Ok(response)
        }
        RouteOp::ListEvents => {
            let query = ctx.query()?;
            let (from, to) = query.range()?;
            let filter = EventFilter {
                event_type: query.string("eventType"),
                status: query.parsed("status", EventStatus::parse, "one of pending, succeeded, failed")?,
                from,
                to,
            };
            Ok(ApiResponse::json(StatusCode::OK, &service.list_events(who, filter, &query.list()?).await?))
        }
        RouteOp::GetEvent => Ok(ApiResponse::json(StatusCode::OK, &service.get_event(who, ctx.param(0)).await?)),
        _ => unreachable!("routed by resource"),
    }
}
