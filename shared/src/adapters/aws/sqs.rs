//! [`Queue`] on Amazon SQS (aws-sdk-sqs): the deliveries queue the fan-out
//! writes and the dispatcher consumes, and the ingest queue (whose messages the
//! ingest Lambda hides/reveals through `change_visibility`).
//!
//! Lambda's event source mapping receives and deletes messages itself; this
//! adapter's `receive`/`delete` are for tests and tools, `send_batch` and
//! `change_visibility` are what the functions call.
//!
//! FIFO message groups: grouped messages ([`OutgoingMessage::group`]) go to
//! a second queue, an SQS FIFO queue ([`SqsQueue::with_fifo_queue`]), with
//! `MessageGroupId` = the group and a fresh `MessageDeduplicationId` per
//! `send_batch` call (never `DelaySeconds`: FIFO queues have none per
//! message). Receipt handles of that queue's messages carry the prefix
//! [`FIFO_RECEIPT_PREFIX`], by which `change_visibility` and `delete` find it.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};

use crate::ports::queue::MAX_BATCH;
use crate::ports::{OutgoingMessage, Queue, QueueError, ReceivedMessage};

/// SQS caps: DelaySeconds ≤ 15 min, VisibilityTimeout ≤ 12 h, WaitTimeSeconds ≤ 20 s.
const MAX_DELAY_SECS: u64 = 900;
const MAX_VISIBILITY_SECS: u64 = 43_200;
const MAX_WAIT_SECS: u64 = 20;
/// Largest total of message bodies in one SendMessageBatch (256 KiB).
const MAX_BATCH_BYTES: usize = 262_144;

/// Prefix of the receipt handles of FIFO-queue messages (what
/// [`Queue::receive`] returns and `lambda::to_received_message` builds for
/// records of a `.fifo` queue).
pub const FIFO_RECEIPT_PREFIX: &str = "fifo:";

/// Error codes meaning "this receipt handle is not the message's current one".
const RECEIPT_CODES: &[&str] = &["ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidIdFormat"];

/// Error codes of requests that will never succeed as sent (configuration or
/// caller bugs), as opposed to throttling and outages.
const INVALID_CODES: &[&str] = &[
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "MissingParameter",
    "InvalidAttributeName",
    "InvalidAttributeValue",
    "InvalidMessageContents",
    "InvalidBatchEntryId",
    "BatchEntryIdsNotDistinct",
    "BatchRequestTooLong",
    "TooManyEntriesInBatchRequest",
    "EmptyBatchRequest",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "InvalidAddress",
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
];

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    /// The FIFO queue for grouped messages, if any.
    fifo_queue_url: Option<String>,
}

impl std::fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsQueue")
            .field("queue_url", &self.queue_url)
            .field("fifo_queue_url", &self.fifo_queue_url)
            .finish_non_exhaustive()
    }
}

/// One message as sent: its index in the `send_batch` call (the entry id),
/// and for a grouped one its deduplication id (kept for the retry, so a
/// message SQS did take the first time is not enqueued twice).
struct Entry<'a> {
    index: usize,
    message: &'a OutgoingMessage,
    deduplication_id: Option<String>,
}

impl SqsQueue {
    /// The queue at `queue_url` (a standard queue); grouped messages are
    /// refused until [`SqsQueue::with_fifo_queue`] names a FIFO queue.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsQueue { client, queue_url: queue_url.into(), fifo_queue_url: None }
    }

    /// Sends grouped messages to the FIFO queue at `fifo_queue_url` (its
    /// name ends in `.fifo`), and receives from it too.
    pub fn with_fifo_queue(mut self, fifo_queue_url: impl Into<String>) -> Self {
        self.fifo_queue_url = Some(fifo_queue_url.into());
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn fifo_queue_url(&self) -> Option<&str> {
        self.fifo_queue_url.as_deref()
    }

    /// The queue a receipt handle belongs to, and the handle SQS knows.
    fn route<'h>(&self, receipt_handle: &'h str) -> Result<(&str, &'h str), QueueError> {
        match receipt_handle.strip_prefix(FIFO_RECEIPT_PREFIX) {
            None => Ok((&self.queue_url, receipt_handle)),
            Some(handle) => match &self.fifo_queue_url {
                Some(url) => Ok((url, handle)),
                None => Err(QueueError::Invalid(
                    "a FIFO-queue receipt handle (fifo:…) but no FIFO queue is configured".into(),
                )),
            },
        }
    }

    /// Sends consecutive runs of at most [`MAX_BATCH`] messages and
    /// [`MAX_BATCH_BYTES`] to `url`, retrying rejected entries once.
    async fn send_all(&self, url: &str, entries: &[Entry<'_>]) -> Result<(), QueueError> {
        for chunk in chunks(entries) {
            let failed = self.send_chunk(url, &chunk).await?;
            if failed.is_empty() {
                continue;
            }
            tracing::warn!(failed = failed.len(), "SQS rejected some batch entries; retrying them once");
            let retry: Vec<&Entry<'_>> =
                chunk.iter().copied().filter(|e| failed.iter().any(|(index, _, _)| *index == e.index)).collect();
            let still_failed = self.send_chunk(url, &retry).await?;
            if let Some((_, reason, sender_fault)) = still_failed.first() {
                let message =
                    format!("SQS rejected {} of {} messages twice; last: {reason}", still_failed.len(), chunk.len());
                return Err(if *sender_fault {
                    QueueError::Invalid(message)
                } else {
                    QueueError::Unavailable(message)
                });
            }
        }
        Ok(())
    }

    /// Sends one chunk to `url` (entry ids are the messages' indexes in the
    /// whole batch); returns the entries SQS reported as failed: index,
    /// reason, sender fault.
    async fn send_chunk(&self, url: &str, chunk: &[&Entry<'_>]) -> Result<Vec<(usize, String, bool)>, QueueError> {
        let mut entries = Vec::with_capacity(chunk.len());
        for entry in chunk {
            let builder = SendMessageBatchRequestEntry::builder()
                .id(entry.index.to_string())
                .message_body(entry.message.body.clone());
            let builder = match (&entry.message.group, &entry.deduplication_id) {
                (Some(group), Some(deduplication_id)) => {
                    builder.message_group_id(group).message_deduplication_id(deduplication_id)
                }
                _ => builder.delay_seconds(ceil_secs(entry.message.delay, MAX_DELAY_SECS)),
            };
            let built = builder
                .build()
                .map_err(|e| QueueError::Invalid(format!("cannot build SendMessageBatch entry: {e}")))?;
            entries.push(built);
        }
        let output = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| classify("SendMessageBatch", e))?;
        let failed = output
            .failed()
            .iter()
            .filter_map(|entry| {
                let index: usize = entry.id().parse().ok()?;
                let reason = format!("{}: {}", entry.code(), entry.message().unwrap_or("no message"));
                Some((index, reason, entry.sender_fault()))
            })
            .collect();
        Ok(failed)
    }
}

impl SqsQueue {
    /// One ReceiveMessage on `url`; receipt handles get `prefix`.
    async fn receive_from(
        &self,
        url: &str,
        prefix: Option<&str>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(ceil_secs(wait, MAX_WAIT_SECS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| classify("ReceiveMessage", e))?;
        let messages = output
            .messages()
            .iter()
            .filter_map(|m| {
                let attribute = |name: &MessageSystemAttributeName| m.attributes().and_then(|a| a.get(name));
                let receive_count = attribute(&MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(1);
                let receipt_handle = m.receipt_handle()?;
                Some(ReceivedMessage {
                    message_id: m.message_id()?.to_string(),
                    receipt_handle: format!("{}{receipt_handle}", prefix.unwrap_or("")),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count,
                    // Only FIFO-queue messages are grouped here.
                    group: prefix.and(attribute(&MessageSystemAttributeName::MessageGroupId)).cloned(),
                })
            })
            .collect();
        Ok(messages)
    }
}

/// Consecutive runs of at most [`MAX_BATCH`] messages and
/// [`MAX_BATCH_BYTES`] of bodies (SQS rejects larger batch requests).
fn chunks<'e, 'm>(entries: &'e [Entry<'m>]) -> Vec<Vec<&'e Entry<'m>>> {
    let mut chunks: Vec<Vec<&Entry<'m>>> = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = entry.message.body.len();
        match chunks.last_mut() {
            Some(last) if last.len() < MAX_BATCH && bytes + size <= MAX_BATCH_BYTES => {
                last.push(entry);
                bytes += size;
            }
            _ => {
                chunks.push(vec![entry]);
                bytes = size;
            }
        }
    }
    chunks
}

/// A `MessageDeduplicationId` no other send uses (a ULID: 26 characters of
/// the allowed alphabet).
fn new_deduplication_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Whole seconds, rounded up (a 500 ms delay must not become "now"), capped.
fn ceil_secs(duration: Duration, max: u64) -> i32 {
    let secs = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    secs.min(max) as i32
}

fn classify<E>(operation: &str, err: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(service_err) = &err {
        let code = service_err.err().code().unwrap_or("");
        if RECEIPT_CODES.contains(&code) {
            return QueueError::ReceiptInvalid;
        }
        if INVALID_CODES.contains(&code) {
            return QueueError::Invalid(format!("SQS {operation}: {}", DisplayErrorContext(&err)));
        }
    }
    QueueError::Unavailable(format!("SQS {operation}: {}", DisplayErrorContext(&err)))
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<(), QueueError> {
        let (mut standard, mut fifo) = (Vec::new(), Vec::new());
        for (index, message) in messages.iter().enumerate() {
            match &message.group {
                None => standard.push(Entry { index, message, deduplication_id: None }),
                Some(group) if group.is_empty() => {
                    return Err(QueueError::Invalid("a message group id is empty".into()));
                }
                Some(_) => fifo.push(Entry { index, message, deduplication_id: Some(new_deduplication_id()) }),
            }
        }
        let fifo_url = match (&self.fifo_queue_url, fifo.is_empty()) {
            (_, true) => None,
            (Some(url), false) => Some(url),
            (None, false) => {
                return Err(QueueError::Invalid(format!(
                    "{} grouped (ordered) messages but no FIFO queue is configured for {} \
                     (ORDERED_DELIVERIES_QUEUE_URL)",
                    fifo.len(),
                    self.queue_url
                )));
            }
        };
        self.send_all(&self.queue_url, &standard).await?;
        if let Some(url) = fifo_url {
            self.send_all(url, &fifo).await?;
        }
        Ok(())
    }

    /// Polls the FIFO queue (if any) at once, then the standard queue with
    /// the `wait`, then the FIFO queue once more if that found nothing.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = max.clamp(1, MAX_BATCH);
        let Some(fifo_url) = &self.fifo_queue_url else {
            return self.receive_from(&self.queue_url, None, max, wait).await;
        };
        let mut received = self.receive_from(fifo_url, Some(FIFO_RECEIPT_PREFIX), max, Duration::ZERO).await?;
        if received.len() < max {
            let wait = if received.is_empty() { wait } else { Duration::ZERO };
            received.extend(self.receive_from(&self.queue_url, None, max - received.len(), wait).await?);
        }
        if received.is_empty() && !wait.is_zero() {
            received = self.receive_from(fifo_url, Some(FIFO_RECEIPT_PREFIX), max, Duration::ZERO).await?;
        }
        Ok(received)
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        let (url, receipt_handle) = self.route(receipt_handle)?;
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(ceil_secs(timeout, MAX_VISIBILITY_SECS))
            .send()
            .await
            .map_err(|e| classify("ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let (url, receipt_handle) = self.route(receipt_handle)?;
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| classify("DeleteMessage", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_many_or_large_messages_then_chunks_respect_count_and_size() {
        fn entries(messages: &[OutgoingMessage]) -> Vec<Entry<'_>> {
            messages
                .iter()
                .enumerate()
                .map(|(index, message)| Entry { index, message, deduplication_id: None })
                .collect()
        }
        let small: Vec<OutgoingMessage> = (0..25).map(|i| OutgoingMessage::now(i.to_string())).collect();
        let small = entries(&small);
        let sizes: Vec<usize> = chunks(&small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let big: Vec<OutgoingMessage> = (0..4).map(|_| OutgoingMessage::now("x".repeat(100_000))).collect();
        let big = entries(&big);
        let grouped: Vec<Vec<usize>> = chunks(&big).iter().map(|c| c.iter().map(|e| e.index).collect()).collect();
        assert_eq!(grouped, [vec![0, 1], vec![2, 3]]);
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn given_deduplication_ids_then_they_are_unique_and_valid_for_sqs() {
        let ids: std::collections::HashSet<String> = (0..100).map(|_| new_deduplication_id()).collect();
        assert_eq!(ids.len(), 100);
        assert!(ids.iter().all(|id| id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric())));
    }

    #[test]
    fn given_sub_second_durations_then_they_round_up_and_are_capped() {
        assert_eq!(ceil_secs(Duration::ZERO, MAX_DELAY_SECS), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1), MAX_DELAY_SECS), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1500), MAX_DELAY_SECS), 2);
        assert_eq!(ceil_secs(Duration::from_secs(5), MAX_DELAY_SECS), 5);
        assert_eq!(ceil_secs(Duration::from_secs(3600), MAX_DELAY_SECS), 900);
        assert_eq!(ceil_secs(Duration::from_secs(50_000), MAX_VISIBILITY_SECS), 43_200);
        assert_eq!(ceil_secs(Duration::from_secs(60), MAX_WAIT_SECS), 20);
    }
}
