use http::StatusCode;

use super::{ApiResponse, Ctx, RouteOp};
use crate::domain::{DeliveryStatus, Id, IdKind};
use crate::ports::DeliveryFilter;
use crate::service::{BulkRetry, ServiceError, ServiceResult};

fn endpoint_id(raw: &str) -> ServiceResult<Id> {
    Id::parse(IdKind::Endpoint, raw).ok_or(ServiceError::NotFound("endpoint"))
}

pub(crate) async fn handle(op: RouteOp, ctx: &Ctx<'_>) -> ServiceResult<ApiResponse> {
    let service = ctx.service;
    let who = ctx.who;
    match op {
        RouteOp::ListDeliveries | RouteOp::ListEndpointDeliveries => {
            let query = ctx.query()?;
            let (from, to) = query.range()?;
            let endpoint_id = if op == RouteOp::ListEndpointDeliveries {
                Some(endpoint_id(ctx.param(0))?)
            } else {
                query.parsed("endpointId", |s| Id::parse(IdKind::Endpoint, s), "an endpoint id (ep_…)")?
            };
            let filter = DeliveryFilter {
                status: query.parsed("status", DeliveryStatus::parse, "one of pending, retrying, succeeded, failed")?,
                event_type: query.string("eventType"),
                event_id: query.parsed("eventId", |s| Id::parse(IdKind::Event, s), "an event id (evt_…)")?,
                endpoint_id,
                from,
                to,
            };
            Ok(ApiResponse::json(StatusCode::OK, &service.list_deliveries(who, filter, &query.list()?).await?))
        }
        RouteOp::GetDelivery => Ok(ApiResponse::json(StatusCode::OK, &service.get_delivery(who, ctx.param(0)).await?)),
        RouteOp::DeleteDelivery => {
            service.delete_delivery(who, ctx.param(0)).await?;
            Ok(ApiResponse::no_content())
        }
        RouteOp::RetryDelivery => {
            let body = ctx.body()?;
            body.finish(&[])?;
            Ok(ApiResponse::json(StatusCode::ACCEPTED, &service.retry_delivery(who, ctx.param(0)).await?))
        }
        RouteOp::BulkRetry => {
            let mut body = ctx.body()?;
            let request = BulkRetry {
                endpoint_id: body.string("endpointId"),
                event_type: body.string("eventType"),
                from: body.timestamp("from"),
                to: body.timestamp("to"),
            };
            body.finish(&[])?;
            Ok(ApiResponse::json(StatusCode::ACCEPTED, &service.bulk_retry(who, request).await?))
        }
        _ => unreachable!("routed by resource"),
    }
}
