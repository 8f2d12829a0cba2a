//! The two SQS consumers: the dispatcher (deliveries queue) and ingest
//! (producers' publish requests). Both report failures per message
//! (`ReportBatchItemFailures`): what is not reported is deleted by Lambda.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;
use tracing::Instrument;

use crate::domain::{Id, IdKind};
use crate::ports::{Queue, ReceivedMessage};
use crate::service::{Dispatcher, MessageOutcome, PublishEvent, ServiceError, Skyhook};

const RECEIVE_COUNT: &str = "ApproximateReceiveCount";
const MESSAGE_GROUP_ID: &str = "MessageGroupId";
/// Receipt handles of FIFO-queue messages carry this prefix, by which the
/// SQS queue adapter (`adapters::aws::sqs::FIFO_RECEIPT_PREFIX`) routes
/// `change_visibility` and `delete` to its FIFO queue.
const FIFO_RECEIPT_PREFIX: &str = "fifo:";

/// One SQS record as the dispatcher sees it; `None` without a message id
/// (which no real SQS event lacks, and which could not be reported anyway).
/// A record of a FIFO queue (its `eventSourceARN` ends in `.fifo`) gets the
/// `fifo:` receipt prefix and its `MessageGroupId` as the group.
pub fn to_received_message(record: &SqsMessage) -> Option<ReceivedMessage> {
    let message_id = record.message_id.clone().filter(|id| !id.is_empty())?;
    let receive_count = record.attributes.get(RECEIVE_COUNT).and_then(|n| n.trim().parse().ok()).unwrap_or(1);
    let fifo = record.event_source_arn.as_deref().is_some_and(|arn| arn.ends_with(".fifo"));
    let receipt_handle = record.receipt_handle.clone().unwrap_or_default();
    Some(ReceivedMessage {
        message_id,
        receipt_handle: if fifo { format!("{FIFO_RECEIPT_PREFIX}{receipt_handle}") } else { receipt_handle },
        body: record.body.clone().unwrap_or_default(),
        receive_count,
        group: if fifo { record.attributes.get(MESSAGE_GROUP_ID).cloned() } else { None },
    })
}

/// Every record of the batch, or an error naming the first malformed one
/// (the whole batch is then retried: nothing is dropped).
pub fn to_received_messages(event: &SqsEvent) -> Result<Vec<ReceivedMessage>, Error> {
    event
        .records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            to_received_message(record).ok_or_else(|| Error::from(format!("SQS record {index} has no messageId")))
        })
        .collect()
}

/// The dispatcher: one delivery attempt per message. `Done` messages are
/// left out of the response so Lambda deletes them; `RetryLater` ones are
/// reported as failures (the dispatcher already set their visibility to the
/// next attempt's time, so SQS redelivers them then).
pub async fn handle_deliveries(
    dispatcher: &Arc<Dispatcher>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let messages = to_received_messages(&event.payload)?;
    let span =
        tracing::info_span!("deliveries_batch", request_id = %event.context.request_id, messages = messages.len());
    let outcomes = dispatcher.handle_batch(&messages).instrument(span).await;
    // One Embedded Metric Format line per batch: CloudWatch turns it into
    // metrics without an API call.
    if let Some(emf) = dispatcher.take_metrics().to_emf("dispatcher", chrono::Utc::now().timestamp_millis()) {
        println!("{emf}");
    }
    let mut response = SqsBatchResponse::default();
    for (message, outcome) in messages.iter().zip(outcomes) {
        if outcome == MessageOutcome::RetryLater {
            response.add_failure(message.message_id.clone());
        }
    }
    Ok(response)
}

/// An ingest message: the body of `POST /v1/events` plus `applicationId`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestMessage {
    pub application_id: String,
    pub event_type: String,
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// What became of one ingest message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Published (or a repeat of an earlier publish): delete it.
    Accepted { event_id: String, duplicate: bool },
    /// Can never succeed: made visible again at once so it reaches the
    /// ingest DLQ after `maxReceiveCount` receives. The reason never quotes
    /// the payload.
    Rejected(String),
    /// Might succeed later (storage unavailable, rate limited): retried after
    /// the visibility timeout, or `retry_after` when known.
    Transient { reason: String, retry_after: Option<Duration> },
}

/// The idempotency key used when the producer gave none: the SQS message id,
/// so an at-least-once redelivery of the same message publishes one event.
fn default_idempotency_key(message_id: &str) -> String {
    format!("sqs:{message_id}")
}

/// Validates and publishes one ingest message (no queue calls).
pub async fn ingest_one(service: &Skyhook, message: &ReceivedMessage) -> IngestOutcome {
    let parsed: IngestMessage = match serde_json::from_str(&message.body) {
        Ok(parsed) => parsed,
        Err(err) => {
            // serde_json's messages give the position and the expectation,
            // and quote scalars only; `payload` is a free JSON value and is
            // never quoted.
            return IngestOutcome::Rejected(format!("not a valid ingest message: {err}"));
        }
    };
    let Some(app_id) = Id::parse(IdKind::Application, parsed.application_id.trim()) else {
        return IngestOutcome::Rejected("applicationId is not an application id (app_…)".into());
    };
    let input = PublishEvent {
        event_type: parsed.event_type,
        payload: parsed.payload,
        idempotency_key: Some(parsed.idempotency_key.unwrap_or_else(|| default_idempotency_key(&message.message_id))),
        idempotency_header: None,
    };
    match service.publish_for_application(&app_id, input).await {
        Ok(published) => {
            IngestOutcome::Accepted { event_id: published.event.id.to_string(), duplicate: published.duplicate }
        }
        Err(ServiceError::Validation(fields)) if fields.iter().any(|f| f.field == "eventType") => {
            // The event type is looked up under the application, so an unknown
            // application reads as an unknown type: say which (failure path only).
            match service.store().get_application(&app_id).await {
                Ok(None) => IngestOutcome::Rejected(format!("application {app_id} does not exist")),
                _ => classify(&ServiceError::Validation(fields)),
            }
        }
        Err(err) => classify(&err),
    }
}

fn classify(err: &ServiceError) -> IngestOutcome {
    match err {
        ServiceError::Unavailable(reason) | ServiceError::Internal(reason) => {
            IngestOutcome::Transient { reason: reason.clone(), retry_after: None }
        }
        ServiceError::RateLimited { retry_after } => {
            IngestOutcome::Transient { reason: "rate limit exceeded".into(), retry_after: Some(*retry_after) }
        }
        ServiceError::Validation(fields) => {
            let described: Vec<String> = fields
                .iter()
                .map(|f| {
                    // Schema violations quote the payload's values: name the field only.
                    if f.field == "payload" || f.field.starts_with("payload.") || f.field.starts_with("payload[") {
                        format!("{}: does not match the event type's schema or is missing", f.field)
                    } else {
                        format!("{}: {}", f.field, f.message)
                    }
                })
                .collect();
            IngestOutcome::Rejected(format!("invalid fields: {}", described.join("; ")))
        }
        ServiceError::NotFound(what) => IngestOutcome::Rejected(format!("{what} not found (unknown applicationId?)")),
        other => IngestOutcome::Rejected(other.to_string()),
    }
}

/// The ingest consumer. Accepted messages are deleted by Lambda; every
/// other message is reported in `batchItemFailures`. Rejected ones are made
/// visible again at once (visibility 0), so after `maxReceiveCount` receives
/// they land in the ingest DLQ — never dropped silently — and the reason is
/// logged each time; transient ones keep the queue's visibility timeout.
pub async fn handle_ingest(
    service: &Skyhook,
    ingest_queue: Arc<dyn Queue>,
    event: LambdaEvent<SqsEvent>,
) -> SqsBatchResponse {
    let span = tracing::info_span!("ingest_batch", request_id = %event.context.request_id, messages = event.payload.records.len());
    ingest_batch(service, ingest_queue.as_ref(), &event.payload).instrument(span).await
}

async fn ingest_batch(service: &Skyhook, ingest_queue: &dyn Queue, event: &SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (index, record) in event.records.iter().enumerate() {
        let Some(message) = to_received_message(record) else {
            // Cannot be reported without an id; Lambda never sends one like this.
            tracing::error!(index, "ingest record without messageId ignored");
            continue;
        };
        match ingest_one(service, &message).await {
            IngestOutcome::Accepted { event_id, duplicate } => {
                tracing::info!(message_id = %message.message_id, %event_id, duplicate, "ingest message published");
            }
            IngestOutcome::Rejected(reason) => {
                tracing::error!(
                    message_id = %message.message_id,
                    receive_count = message.receive_count,
                    %reason,
                    "ingest message rejected; it goes to the ingest DLQ after maxReceiveCount receives"
                );
                if let Err(err) = ingest_queue.change_visibility(&message.receipt_handle, Duration::ZERO).await {
                    tracing::warn!(message_id = %message.message_id, error = %err, "could not make the rejected message visible again");
                }
                response.add_failure(message.message_id);
            }
            IngestOutcome::Transient { reason, retry_after } => {
                tracing::warn!(message_id = %message.message_id, %reason, "ingest message not published yet; will retry");
                if let Some(delay) = retry_after
                    && let Err(err) = ingest_queue.change_visibility(&message.receipt_handle, delay).await
                {
                    tracing::warn!(message_id = %message.message_id, error = %err, "could not delay the message");
                }
                response.add_failure(message.message_id);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::FieldError;

    fn record(arn: &str) -> SqsMessage {
        serde_json::from_value(serde_json::json!({
            "messageId": "m-1",
            "receiptHandle": "AQEBhandle",
            "body": "{}",
            "attributes": { "ApproximateReceiveCount": "2", "MessageGroupId": "ep_1" },
            "eventSourceARN": arn,
        }))
        .unwrap()
    }

    #[test]
    fn given_a_fifo_record_then_its_receipt_is_prefixed_and_its_group_kept() {
        let fifo = to_received_message(&record("arn:aws:sqs:eu-west-1:1:skyhook-OrderedDeliveries.fifo")).unwrap();
        assert_eq!(fifo.receipt_handle, "fifo:AQEBhandle");
        assert_eq!(fifo.group.as_deref(), Some("ep_1"));
        assert_eq!((fifo.message_id.as_str(), fifo.receive_count), ("m-1", 2), "the id is reported as is");
        #[cfg(feature = "aws")]
        assert!(fifo.receipt_handle.starts_with(crate::adapters::aws::sqs::FIFO_RECEIPT_PREFIX));
        let standard = to_received_message(&record("arn:aws:sqs:eu-west-1:1:skyhook-Deliveries")).unwrap();
        assert_eq!(standard.receipt_handle, "AQEBhandle");
        assert_eq!(standard.group, None);
    }

    #[test]
    fn given_schema_violations_then_the_reason_never_quotes_the_payload() {
        let err = ServiceError::Validation(vec![
            FieldError::new("payload.amount", "\"secret-value\" is not of type \"integer\""),
            FieldError::new("eventType", "unknown event type \"x.y\""),
        ]);
        let IngestOutcome::Rejected(reason) = classify(&err) else { panic!("rejected") };
        assert!(!reason.contains("secret-value"), "{reason}");
        assert!(reason.contains("payload.amount") && reason.contains("unknown event type"), "{reason}");
    }

    #[test]
    fn given_service_errors_then_only_unavailability_and_rate_limits_are_transient() {
        assert!(matches!(classify(&ServiceError::Unavailable("x".into())), IngestOutcome::Transient { .. }));
        assert!(matches!(
            classify(&ServiceError::RateLimited { retry_after: Duration::from_secs(2) }),
            IngestOutcome::Transient { retry_after: Some(_), .. }
        ));
        assert!(matches!(classify(&ServiceError::NotFound("application")), IngestOutcome::Rejected(_)));
        assert!(matches!(classify(&ServiceError::Conflict("k".into())), IngestOutcome::Rejected(_)));
    }
}
