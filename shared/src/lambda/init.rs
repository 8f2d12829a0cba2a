//! Cold start (features `lambda` + `aws`): one SDK config, the adapters, the
//! secret read once, the service. Every failure is an [`InitError`] that the
//! binary returns from `main`, so the runtime reports an init error instead
//! of a panic loop.

use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use tokio::sync::OnceCell;

use super::config::{ConfigError, LambdaConfig};
use crate::adapters::aws::dynamodb::DynamoStore;
use crate::adapters::aws::secrets::SecretsManagerSecrets;
use crate::adapters::aws::sqs::SqsQueue;
use crate::ports::{Clock, Queue, Secrets, SecretsError, SystemClock};
use crate::sender::{HttpSender, SenderBuildError};
use crate::service::{Dispatcher, Skyhook};
use crate::ssrf::SystemResolver;

/// Why a cold start failed. `Debug` is the readable message, because `main`
/// returning `Err` prints it (`Error: …`) to stderr, which Lambda logs before
/// reporting `Runtime.ExitError`.
#[derive(thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot load the Skyhook secret {secret_id:?} (SECRET_ID): {source}")]
    Secrets { secret_id: String, source: SecretsError },
    #[error(transparent)]
    Sender(#[from] SenderBuildError),
}

impl std::fmt::Debug for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The AWS SDK configuration from the Lambda environment (region,
/// credentials), loaded once per process.
pub async fn sdk_config() -> &'static SdkConfig {
    static SDK: OnceCell<SdkConfig> = OnceCell::const_new();
    SDK.get_or_init(|| aws_config::load_defaults(BehaviorVersion::latest())).await
}

/// The service on DynamoDB, the deliveries queue (with the ordered
/// deliveries' FIFO queue when `ORDERED_DELIVERIES_QUEUE_URL` is set) and the
/// secret, with the process's SDK configuration.
pub async fn build_service(config: &LambdaConfig) -> Result<Arc<Skyhook>, InitError> {
    build_service_with(config, sdk_config().await).await
}

/// [`build_service`] with an explicit SDK configuration (tests point it at moto).
pub async fn build_service_with(config: &LambdaConfig, sdk: &SdkConfig) -> Result<Arc<Skyhook>, InitError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let secrets = SecretsManagerSecrets::new(aws_sdk_secretsmanager::Client::new(sdk), config.secret_id.clone());
    let material = secrets.load().await.map_err(|source| {
        let err = InitError::Secrets { secret_id: config.secret_id.clone(), source };
        tracing::error!(error = %err, "cold start failed");
        err
    })?;
    let store =
        Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table_name.clone(), Arc::clone(&clock)));
    let mut deliveries = SqsQueue::new(aws_sdk_sqs::Client::new(sdk), config.deliveries_queue_url.clone());
    if let Some(ordered) = &config.ordered_deliveries_queue_url {
        deliveries = deliveries.with_fifo_queue(ordered.clone());
    }
    let queue: Arc<dyn Queue> = Arc::new(deliveries);
    tracing::info!(
        table = %config.table_name,
        ordered_deliveries = config.ordered_deliveries_queue_url.is_some(),
        require_https = config.require_https,
        allow_loopback = config.allow_loopback,
        "skyhook service initialised"
    );
    Ok(Arc::new(Skyhook::new(store, queue, clock, material, config.service_config())))
}

/// The dispatcher with the SSRF-guarded HTTP client, built on the first
/// delivery (its TLS set-up is most of the dispatcher's cold start otherwise).
pub fn build_dispatcher(service: &Arc<Skyhook>, config: &LambdaConfig) -> Result<Arc<Dispatcher>, InitError> {
    let user_agent = format!("Skyhook/{}", crate::VERSION);
    let sender = HttpSender::lazy(config.address_policy(), Arc::new(SystemResolver), &user_agent);
    Ok(Arc::new(Dispatcher::new(Arc::clone(service), Arc::new(sender))))
}

/// The ingest queue (`INGEST_QUEUE_URL`), through which the ingest function
/// makes rejected messages visible again.
pub fn build_ingest_queue(config: &LambdaConfig, sdk: &SdkConfig) -> Result<Arc<dyn Queue>, InitError> {
    let url = config.require_ingest_queue_url()?;
    Ok(Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk), url)))
}
