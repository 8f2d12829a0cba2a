//! The fan-out function: the table's DynamoDB stream → deliveries.
//!
//! It reads the event of each INSERT of an event item and hands them all to
//! [`Skyhook::fan_out_in_order`] (idempotent: derived delivery ids, the
//! events marked fanned out last; the batch's queue messages sent together). The first record that fails is reported by sequence
//! number (`ReportBatchItemFailures`); Lambda checkpoints before it and
//! retries from there (bisecting with `BisectBatchOnFunctionError`) until it
//! succeeds, so an acknowledged event cannot be lost between DynamoDB and SQS.

use std::collections::HashMap;

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{Error, LambdaEvent};
use tracing::Instrument;

use crate::adapters::aws::dynamodb;
use crate::domain::Id;
use crate::service::Skyhook;

/// What the fan-out does with one stream record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRecordAction {
    /// A new event item: fan it out.
    FanOut { application_id: Id, event_id: Id },
    /// Anything else (modifications, TTL removals, other item kinds).
    Skip,
}

/// The record's string-typed `Keys` (`{"pk":{"S":"…"}}` → `pk → …`); the
/// table's keys are all strings.
fn string_keys(record: &EventRecord) -> HashMap<String, String> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&record.change.keys) else {
        return HashMap::new();
    };
    map.into_iter()
        .filter_map(|(name, typed)| match typed.get("S") {
            Some(serde_json::Value::String(s)) => Some((name, s.clone())),
            _ => None,
        })
        .collect()
}

pub fn classify_stream_record(record: &EventRecord) -> StreamRecordAction {
    if record.event_name != "INSERT" {
        return StreamRecordAction::Skip;
    }
    match dynamodb::event_key_from_stream_keys(&string_keys(record)) {
        Some((application_id, event_id)) => StreamRecordAction::FanOut { application_id, event_id },
        None => StreamRecordAction::Skip,
    }
}

fn failure(sequence_number: &str) -> DynamoDbBatchItemFailure {
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = Some(sequence_number.to_string());
    failure
}

pub async fn handle_stream(service: &Skyhook, event: LambdaEvent<Event>) -> Result<DynamoDbEventResponse, Error> {
    let records = &event.payload.records;
    let span = tracing::info_span!("fanout_batch", request_id = %event.context.request_id, records = records.len());
    fan_out_records(service, records).instrument(span).await
}

async fn fan_out_records(service: &Skyhook, records: &[EventRecord]) -> Result<DynamoDbEventResponse, Error> {
    let mut response = DynamoDbEventResponse::default();
    // The batch's events, read in order until a read fails (that record and
    // everything after it are retried).
    let (mut sequence_numbers, mut events) = (Vec::new(), Vec::new());
    let mut unread = None;
    for record in records {
        let StreamRecordAction::FanOut { application_id, event_id } = classify_stream_record(record) else {
            continue;
        };
        let Some(sequence_number) = record.change.sequence_number.as_deref() else {
            // Cannot be reported alone: fail the whole batch so it is retried.
            return Err(Error::from(format!("stream record {} has no SequenceNumber", record.event_id)));
        };
        match service.store().get_event(&application_id, &event_id).await {
            Ok(Some(stored)) => {
                sequence_numbers.push(sequence_number);
                events.push(stored);
            }
            Ok(None) => {
                tracing::warn!(%event_id, %application_id, "event no longer exists (expired or deleted); nothing to fan out")
            }
            Err(error) => {
                tracing::error!(%event_id, %application_id, sequence_number, %error, "reading the event failed; the stream will retry from this record");
                unread = Some(sequence_number);
                break;
            }
        }
    }
    let outcome = service.fan_out_in_order(&events).await;
    for (event, deliveries) in events.iter().zip(&outcome.delivery_counts) {
        tracing::info!(event_id = %event.id, application_id = %event.application_id, deliveries, "event fanned out");
    }
    let completed = outcome.delivery_counts.len();
    let first_retried = match (outcome.error, events.get(completed)) {
        (None, _) => unread,
        (Some(error), Some(event)) => {
            let sequence_number = sequence_numbers[completed];
            tracing::error!(event_id = %event.id, application_id = %event.application_id, sequence_number, %error, "fan-out failed; the stream will retry from this record");
            Some(sequence_number)
        }
        // Not reachable (an error leaves an event incomplete), but if it were,
        // the whole batch is retried rather than any record skipped.
        (Some(error), None) => return Err(Error::from(format!("fan-out failed: {error}"))),
    };
    // Everything after it is retried too, so it is the only one reported.
    if let Some(sequence_number) = first_retried {
        response.batch_item_failures.push(failure(sequence_number));
    }
    Ok(response)
}
