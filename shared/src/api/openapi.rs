//! The OpenAPI document (`GET /v1/openapi.json`) and the rendered reference (`GET /docs`).

use super::{ApiRequest, ApiResponse, RouteOp};
use crate::service::{ServiceError, ServiceResult};

pub(crate) fn handle(_op: RouteOp, _request: &ApiRequest) -> ServiceResult<ApiResponse> {
    Err(ServiceError::NotFound("route"))
}
