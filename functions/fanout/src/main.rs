//! Lambda function `fanout`: the table's DynamoDB stream -> one delivery per
//! matching endpoint on the deliveries queue; failed records are retried.

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use skyhook::lambda::{LambdaConfig, build_service, handle_stream, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = LambdaConfig::from_env()?;
    let service = build_service(&config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Event>| handle_stream(&service, event))).await
}
