//! Admin routes: applications and their API keys.

use http::StatusCode;

use super::{ApiResponse, Ctx, RouteOp};
use crate::domain::Scope;
use crate::service::{ApplicationPatch, CreateApiKey, CreateApplication, ServiceResult};

const READ_ONLY: &[&str] = &["id", "createdAt", "updatedAt"];

pub(crate) async fn handle(op: RouteOp, ctx: &Ctx<'_>) -> ServiceResult<ApiResponse> {
    let service = ctx.service;
    let who = ctx.who;
    match op {
        RouteOp::CreateApplication => {
            let mut body = ctx.body()?;
            let input = CreateApplication {
                name: body.required_string("name"),
                retention_days: body.u32("retentionDays"),
                rate_limit: body.u32("rateLimit"),
            };
            body.finish(&[])?;
            Ok(ApiResponse::json(StatusCode::CREATED, &service.create_application(who, input).await?))
        }
        RouteOp::ListApplications => {
            let query = ctx.query()?.list()?;
            Ok(ApiResponse::json(StatusCode::OK, &service.list_applications(who, &query).await?))
        }
        RouteOp::GetApplication => {
            Ok(ApiResponse::json(StatusCode::OK, &service.get_application(who, ctx.param(0)).await?))
        }
        RouteOp::PatchApplication | RouteOp::PutApplication => {
            let mut body = ctx.body()?;
            let patch = if op == RouteOp::PutApplication {
                ApplicationPatch {
                    name: Some(body.required_string("name")),
                    retention_days: Some(
                        body.u32("retentionDays").unwrap_or(crate::domain::limits::DEFAULT_RETENTION_DAYS),
                    ),
                    rate_limit: Some(body.u32("rateLimit")),
                }
            } else {
                ApplicationPatch {
                    name: body.string("name"),
                    retention_days: body.u32("retentionDays"),
                    rate_limit: body.nullable_u32("rateLimit"),
                }
            };
            body.finish(READ_ONLY)?;
            Ok(ApiResponse::json(StatusCode::OK, &service.update_application(who, ctx.param(0), patch).await?))
        }
        RouteOp::DeleteApplication => {
            service.delete_application(who, ctx.param(0)).await?;
            Ok(ApiResponse::no_content())
        }
        RouteOp::CreateApiKey => {
            let mut body = ctx.body()?;
            let name = body.required_string("name");
            let scopes = body.string_list("scopes").map(|names| {
                names
                    .iter()
                    .enumerate()
                    .filter_map(|(i, name)| match name.parse::<Scope>() {
                        Ok(scope) => Some(scope),
                        Err(()) => {
                            body.add_violation(
                                &format!("scopes[{i}]"),
                                "must be one of webhooks:write, webhooks:read, events:write, events:read",
                            );
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            });
            body.finish(&[])?;
            let created = service.create_api_key(who, ctx.param(0), CreateApiKey { name, scopes }).await?;
            Ok(ApiResponse::json(StatusCode::CREATED, &created))
        }
        RouteOp::ListApiKeys => {
            let query = ctx.query()?.list()?;
            Ok(ApiResponse::json(StatusCode::OK, &service.list_api_keys(who, ctx.param(0), &query).await?))
        }
        RouteOp::RevokeApiKey => {
            service.revoke_api_key(who, ctx.param(0), ctx.param(1)).await?;
            Ok(ApiResponse::no_content())
        }
        _ => unreachable!("routed by resource"),
    }
}
