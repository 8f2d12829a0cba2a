//! [`Queue`] on Amazon SQS (aws-sdk-sqs): the deliveries queue the fan-out
//! writes and the dispatcher consumes, and the ingest queue (whose messages the
//! ingest Lambda hides/reveals through `change_visibility`).
//!
//! Lambda's event source mapping receives and deletes messages itself; this
//! adapter's `receive`/`delete` are for tests and tools, `send_batch` and
//! `change_visibility` are what the functions call.

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
}

impl std::fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsQueue").field("queue_url", &self.queue_url).finish_non_exhaustive()
    }
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsQueue { client, queue_url: queue_url.into() }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends one chunk (entry ids are the messages' indexes in the whole
    /// batch); returns the entries SQS reported as failed: index, reason,
    /// sender fault.
    async fn send_chunk(&self, chunk: &[(usize, &OutgoingMessage)]) -> Result<Vec<(usize, String, bool)>, QueueError> {
        let mut entries = Vec::with_capacity(chunk.len());
        for (index, message) in chunk {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(message.body.clone())
                .delay_seconds(ceil_secs(message.delay, MAX_DELAY_SECS))
                .build()
                .map_err(|e| QueueError::Invalid(format!("cannot build SendMessageBatch entry: {e}")))?;
            entries.push(entry);
        }
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
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

/// Consecutive runs of at most [`MAX_BATCH`] messages and
/// [`MAX_BATCH_BYTES`] of bodies (SQS rejects larger batch requests).
fn chunks(messages: &[OutgoingMessage]) -> Vec<Vec<(usize, &OutgoingMessage)>> {
    let mut chunks: Vec<Vec<(usize, &OutgoingMessage)>> = Vec::new();
    let mut bytes = 0;
    for (index, message) in messages.iter().enumerate() {
        let size = message.body.len();
        match chunks.last_mut() {
            Some(last) if last.len() < MAX_BATCH && bytes + size <= MAX_BATCH_BYTES => {
                last.push((index, message));
                bytes += size;
            }
            _ => {
                chunks.push(vec![(index, message)]);
                bytes = size;
            }
        }
    }
    chunks
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
        for chunk in chunks(&messages) {
            let chunk = chunk.as_slice();
            let failed = self.send_chunk(chunk).await?;
            if failed.is_empty() {
                continue;
            }
            tracing::warn!(failed = failed.len(), "SQS rejected some batch entries; retrying them once");
            let retry: Vec<(usize, &OutgoingMessage)> =
                failed.iter().filter_map(|(index, _, _)| messages.get(*index).map(|m| (*index, m))).collect();
            let still_failed = self.send_chunk(&retry).await?;
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

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(ceil_secs(wait, MAX_WAIT_SECS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| classify("ReceiveMessage", e))?;
        let messages = output
            .messages()
            .iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(1);
                Some(ReceivedMessage {
                    message_id: m.message_id()?.to_string(),
                    receipt_handle: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    receive_count,
                })
            })
            .collect();
        Ok(messages)
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(ceil_secs(timeout, MAX_VISIBILITY_SECS))
            .send()
            .await
            .map_err(|e| classify("ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
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
        let small: Vec<OutgoingMessage> = (0..25).map(|i| OutgoingMessage::now(i.to_string())).collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let big: Vec<OutgoingMessage> = (0..4).map(|_| OutgoingMessage::now("x".repeat(100_000))).collect();
        let grouped: Vec<Vec<usize>> = chunks(&big).iter().map(|c| c.iter().map(|(i, _)| *i).collect()).collect();
        assert_eq!(grouped, [vec![0, 1], vec![2, 3]]);
        assert!(chunks(&[]).is_empty());
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
