use std::time::Duration;

use async_trait::async_trait;

/// Largest batch SQS accepts in one call; the embedded queue keeps the same cap.
pub const MAX_BATCH: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// Hidden from receivers until this much time has passed (SQS DelaySeconds, ≤ 15 min).
    /// Ignored when `group` is set (SQS FIFO queues have no per-message delay).
    pub delay: Duration,
    /// The FIFO message group (SQS `MessageGroupId`): messages of one group
    /// are received one at a time, in the order sent (see [`Queue`]).
    /// `None`: an ordinary, unordered message.
    pub group: Option<String>,
}

impl OutgoingMessage {
    /// An ungrouped message, visible at once.
    pub fn now(body: String) -> Self {
        OutgoingMessage { body, delay: Duration::ZERO, group: None }
    }

    /// A message of the FIFO group `group` (e.g. an ordered endpoint's id).
    pub fn in_group(body: String, group: impl Into<String>) -> Self {
        OutgoingMessage { body, delay: Duration::ZERO, group: Some(group.into()) }
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
    /// The FIFO message group it was sent in, if any.
    pub group: Option<String>,
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
///
/// # FIFO message groups
///
/// A message sent with [`OutgoingMessage::group`] set (an SQS FIFO queue's
/// `MessageGroupId`) follows the FIFO contract:
///
/// - messages of one group are received in the order they were sent;
/// - while any message of a group is in flight (received, and neither
///   visible again nor deleted) no other message of that group is received:
///   a message whose visibility was changed to later holds its group back
///   until then, and one made visible at once (timeout zero) is received
///   again before the rest of its group;
/// - a grouped message ignores `delay` (SQS FIFO has no per-message delay);
/// - a grouped message that reaches its queue's maximum receive count goes
///   to the dead-letter queue like any other, which unblocks its group.
///
/// Groups are independent of each other and of ungrouped messages: a locked
/// group holds back only its own messages. A receive may return several
/// groups' messages, and a backend may return at most one per group.
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
