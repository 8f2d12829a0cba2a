//! Lambda function `ingest`: publishes the events producers put on the ingest
//! queue; invalid messages are reported so they reach the ingest DLQ.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use skyhook::lambda::{LambdaConfig, build_ingest_queue, build_service, handle_ingest, init_tracing, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = LambdaConfig::from_env()?;
    let ingest_queue = build_ingest_queue(&config, sdk_config().await)?;
    let service = build_service(&config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async {
        Ok::<_, Error>(handle_ingest(&service, ingest_queue.clone(), event).await)
    }))
    .await
}
