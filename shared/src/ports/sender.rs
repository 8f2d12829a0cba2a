use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::ErrorCode;

/// One signed POST to an endpoint.
#[derive(Debug, Clone)]
pub struct OutgoingWebhook {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub timeout: Duration,
}

/// What the endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointResponse {
    pub status: u16,
    /// The first 4 KiB of the body (lossy UTF-8); the rest is never read.
    pub body: Option<String>,
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    pub code: ErrorCode,
    pub message: String,
}

/// The outbound HTTP client of the dispatcher.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    async fn send(&self, request: OutgoingWebhook) -> Result<EndpointResponse, SendFailure>;
}
