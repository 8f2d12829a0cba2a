//! Lambda function `event-types`: the /v1/event-types routes, behind the HTTP API.
//! Adapters and the secret are built once per cold start; a failure there is
//! returned from `main`, which the runtime reports as an init error.

use lambda_http::{Error, service_fn};
use skyhook::api::Resource;
use skyhook::lambda::{LambdaConfig, build_service, handle_http, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = LambdaConfig::from_env()?;
    let service = build_service(&config).await?;
    lambda_http::run(service_fn(|request| handle_http(&service, Resource::EventTypes, request))).await
}
