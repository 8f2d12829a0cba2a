//! Lambda function `console`: `GET /`, `GET /console/{asset}`, `GET /docs` and
//! `GET /v1/openapi.json`, behind the HTTP API. Everything it serves is
//! embedded in the binary, so it builds no service: no store, no queue, no
//! secret and no AWS call, and a cold start is only the runtime's.

use lambda_http::{Body, Error, Request, Response, service_fn};
use skyhook::api::{handle_static, problem};
use skyhook::lambda::{from_api_response, init_tracing, to_api_request};
use skyhook::service::ServiceError;

async fn serve(request: Request) -> Result<Response<Body>, Error> {
    let request = to_api_request(request);
    let response =
        handle_static(&request).unwrap_or_else(|| problem::response(&ServiceError::NotFound("route"), &request.path));
    Ok(from_api_response(response))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    lambda_http::run(service_fn(serve)).await
}
