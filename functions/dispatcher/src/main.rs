//! Lambda function `dispatcher`: consumes the deliveries queue, one signed
//! POST per message; retries by changing the message's visibility.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use skyhook::lambda::{LambdaConfig, build_dispatcher, build_service, handle_deliveries, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = LambdaConfig::from_env()?;
    let dispatcher = build_dispatcher(&build_service(&config).await?, &config)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| handle_deliveries(&dispatcher, event))).await
}
