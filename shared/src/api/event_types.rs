use http::StatusCode;

use super::json::JsonBody;
use super::{ApiResponse, Ctx, RouteOp};
use crate::service::{EventTypeInput, ServiceResult};

const READ_ONLY: &[&str] = &["createdAt", "updatedAt"];

fn input(body: &mut JsonBody, name_required: bool) -> EventTypeInput {
    EventTypeInput {
        name: if name_required { body.required_string("name") } else { body.string("name").unwrap_or_default() },
        description: body.string("description"),
        schema: body.value("schema").filter(|v| !v.is_null()),
        archived: body.bool("archived"),
    }
}

pub(crate) async fn handle(op: RouteOp, ctx: &Ctx<'_>) -> ServiceResult<ApiResponse> {
    let service = ctx.service;
    let who = ctx.who;
    match op {
        RouteOp::CreateEventType => {
            let mut body = ctx.body()?;
            let input = input(&mut body, true);
            body.finish(&[])?;
            Ok(ApiResponse::json(StatusCode::CREATED, &service.create_event_type(who, input).await?))
        }
        RouteOp::ListEventTypes => {
            let query = ctx.query()?;
            let include_archived = query.bool("includeArchived")?.unwrap_or(false);
            let page = service.list_event_types(who, include_archived, &query.list()?).await?;
            Ok(ApiResponse::json(StatusCode::OK, &page))
        }
        RouteOp::GetEventType => {
            Ok(ApiResponse::json(StatusCode::OK, &service.get_event_type(who, ctx.param(0)).await?))
        }
        RouteOp::PutEventType => {
            let mut body = ctx.body()?;
            let input = input(&mut body, false);
            body.finish(READ_ONLY)?;
            let (event_type, created) = service.put_event_type(who, ctx.param(0), input).await?;
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(ApiResponse::json(status, &event_type))
        }
        RouteOp::DeleteEventType => {
            service.delete_event_type(who, ctx.param(0)).await?;
            Ok(ApiResponse::no_content())
        }
        _ => unreachable!("routed by resource"),
    }
}
