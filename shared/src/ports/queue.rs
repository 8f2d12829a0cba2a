use std::time::Duration;

use async_trait::async_trait;

/// Largest batch SQS accepts in one call; the embedded queue keeps the same cap.
pub const MAX_BATCH: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// Hidden from receivers until this much time has passed (SQS DelaySeconds, ≤ 15 min).
    pub delay: Duration,
}

impl OutgoingMessage {
    pub fn now(body: String) -> Self {
        OutgoingMessage { body, delay: Duration::ZERO }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// Valid only until the message is received again.
    pub receipt_handle: String,
    pub body: String,
    /// How many times this message has been received, this time included
    /// (SQS `ApproximateReceiveCount`).
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The receipt handle is not the message's current one (it was received
    /// again, or deleted).
    #[error("receipt handle is no longer valid")]
    ReceiptInvalid,
    #[error("invalid queue request: {0}")]
    Invalid(String),
}

/// A message queue with SQS semantics: at-least-once, visibility timeout,
/// receive count, per-message delay, batches of up to ten, dead-letter after
/// `maxReceiveCount` receives.
#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, message: OutgoingMessage) -> Result<(), QueueError> {
        self.send_batch(vec![message]).await
    }

    /// Sends any number of messages, in calls of at most [`MAX_BATCH`].
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<(), QueueError>;

    /// Up to `max` (≤ 10) visible messages, each hidden for the queue's
    /// visibility timeout; waits up to `wait` for one to appear.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Hides the message for `timeout` from now (≤ 12 h).
    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError>;

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError>;
}
