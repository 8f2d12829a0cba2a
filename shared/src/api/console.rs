//! The web console: static assets embedded in the binary.

use super::{ApiRequest, ApiResponse, Params, RouteOp};
use crate::service::{ServiceError, ServiceResult};

pub(crate) fn handle(_op: RouteOp, _params: &Params, _request: &ApiRequest) -> ServiceResult<ApiResponse> {
    Err(ServiceError::NotFound("route"))
}
