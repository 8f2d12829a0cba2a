//! The dispatcher: one queue message = one delivery attempt. Signs the
//! request (Standard Webhooks), POSTs it, records the attempt and schedules the
//! next one by changing the message's visibility timeout. The same code runs
//! in the Lambda (SQS batch) and in `skyhook serve` (embedded queue).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::controls::Admission;
use super::replay::ReplayTask;
use super::{ServiceError, Skyhook};
use crate::domain::limits::AUTO_DISABLE_AFTER_DAYS;
use crate::domain::{
    Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, ErrorCode, Event, Id, IdKind, PayloadFormat, ResponseStatus,
    SignatureScheme,
};
use crate::ports::{AttemptRecord, OutgoingMessage, OutgoingWebhook, ReceivedMessage, StoreError, WebhookSender};
use crate::signing::{decode_ed25519_key, decode_secret, signature_header_with};

/// The body of a deliveries-queue message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTask {
    #[serde(rename = "a")]
    pub application_id: Id,
    #[serde(rename = "d")]
    pub delivery_id: Id,
    /// Sent before the delivery is written (a manual retry): if the
    /// delivery is not there yet, wait for it a while instead of dropping
    /// the message.
    #[serde(rename = "w", default, skip_serializing_if = "std::ops::Not::not")]
    pub written_after: bool,
}

impl DeliveryTask {
    pub fn for_delivery(delivery: &Delivery) -> Self {
        DeliveryTask {
            application_id: delivery.application_id.clone(),
            delivery_id: delivery.id.clone(),
            written_after: false,
        }
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("serialisable")
    }

    pub fn parse(body: &str) -> Option<Self> {
        let task: DeliveryTask = serde_json::from_str(body).ok()?;
        Id::parse(IdKind::Application, task.application_id.as_str())?;
        Id::parse(IdKind::Delivery, task.delivery_id.as_str())?;
        Some(task)
    }
}

/// What happens to the message after handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Finished (delivered, exhausted, or nothing left to do): delete it.
    Done,
    /// Keep it: its visibility was set to when it must come back (or it is
    /// poison and must reach the dead-letter queue).
    RetryLater,
}

pub struct Dispatcher {
    service: Arc<Skyhook>,
    sender: Arc<dyn WebhookSender>,
    user_agent: String,
    metrics: super::metrics::DeliveryMetrics,
}

/// Lookups shared by the messages of one batch: at fan-out N the batch's
/// messages are mostly one event's deliveries (one event read instead of N),
/// at fan-out 1 mostly one endpoint's. Lives only as long as the batch, so
/// nothing is staler than the batch itself; errors are not remembered.
#[derive(Default)]
struct BatchMemo {
    endpoints: MemoMap<Option<Endpoint>>,
    events: MemoMap<Option<Event>>,
}

/// One lookup per (application id, id), shared by whoever asks first.
type MemoMap<T> = Mutex<HashMap<(Id, Id), Arc<tokio::sync::OnceCell<T>>>>;

fn memo_cell<T>(map: &MemoMap<T>, key: (Id, Id)) -> Arc<tokio::sync::OnceCell<T>> {
    Arc::clone(map.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_default())
}

/// A message deferred this many receives is replaced by a fresh copy.
const REQUEUE_AFTER_RECEIVES: u32 = 10;
/// SQS's limits: visibility up to 12 h, a send's delay up to 15 min.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600 - 60);
const MAX_SEND_DELAY: Duration = Duration::from_secs(900);

/// Slack for a message that comes back a little before its scheduled time.
const EARLY_SLACK: chrono::Duration = chrono::Duration::milliseconds(500);
/// How long a message for a delivery that is not (yet) in the store is
/// kept: longer than any request that sends a message and then writes
/// its rows (API Gateway gives up after 30 s).
pub const UNWRITTEN_DELIVERY_GRACE: chrono::Duration = chrono::Duration::seconds(60);
/// How soon such a message is looked at again: after as long as its id is
/// old, within these bounds, so a retry received a moment before its rows
/// commit goes out a moment later, and one that will never be written
/// costs a dozen receives before it is dropped.
const UNWRITTEN_DELIVERY_RECHECK_MIN: Duration = Duration::from_millis(250);
const UNWRITTEN_DELIVERY_RECHECK_MAX: Duration = Duration::from_secs(5);

impl Dispatcher {
    pub fn new(service: Arc<Skyhook>, sender: Arc<dyn WebhookSender>) -> Self {
        Dispatcher {
            service,
            sender,
            user_agent: format!("Skyhook/{}", crate::VERSION),
            metrics: super::metrics::DeliveryMetrics::default(),
        }
    }

    /// Attempts made since the last call (for Embedded Metric Format lines).
    pub fn take_metrics(&self) -> super::metrics::Counts {
        self.metrics.take()
    }

    pub fn service(&self) -> &Arc<Skyhook> {
        &self.service
    }

    /// Handles a batch concurrently; outcomes in the batch's order. The
    /// messages of one FIFO group (an ordered endpoint) go one after another,
    /// and the first that is kept holds back the rest of its group: they are
    /// left untouched (`RetryLater`), to come back after it, in order.
    pub async fn handle_batch(self: &Arc<Self>, messages: &[ReceivedMessage]) -> Vec<MessageOutcome> {
        let mut set = tokio::task::JoinSet::new();
        let memo = Arc::new(BatchMemo::default());
        let mut groups: Vec<(String, Vec<(usize, ReceivedMessage)>)> = Vec::new();
        for (index, message) in messages.iter().cloned().enumerate() {
            match &message.group {
                Some(group) => match groups.iter_mut().find(|(g, _)| g == group) {
                    Some((_, members)) => members.push((index, message)),
                    None => groups.push((group.clone(), vec![(index, message)])),
                },
                None => {
                    let this = Arc::clone(self);
                    let memo = Arc::clone(&memo);
                    set.spawn(async move { vec![(index, this.handle_with(&message, Some(&memo)).await)] });
                }
            }
        }
        for (_, members) in groups {
            let this = Arc::clone(self);
            let memo = Arc::clone(&memo);
            set.spawn(async move {
                let mut outcomes = Vec::with_capacity(members.len());
                let mut held = false;
                for (index, message) in members {
                    let outcome = if held {
                        // Visible again at once, behind the held message in
                        // its group (which stays in flight, so the group stays
                        // locked until it is done): otherwise they would lock
                        // the group for a whole visibility timeout.
                        this.set_visibility(&message, Duration::ZERO).await;
                        MessageOutcome::RetryLater
                    } else {
                        this.handle_with(&message, Some(&memo)).await
                    };
                    held |= outcome == MessageOutcome::RetryLater;
                    outcomes.push((index, outcome));
                }
                outcomes
            });
        }
        let mut outcomes = vec![MessageOutcome::RetryLater; messages.len()];
        while let Some(joined) = set.join_next().await {
            if let Ok(done) = joined {
                for (index, outcome) in done {
                    outcomes[index] = outcome;
                }
            }
        }
        outcomes
    }

    pub async fn handle(&self, message: &ReceivedMessage) -> MessageOutcome {
        self.handle_with(message, None).await
    }

    async fn handle_with(&self, message: &ReceivedMessage, memo: Option<&BatchMemo>) -> MessageOutcome {
        if let Some(task) = ReplayTask::parse(&message.body) {
            return self.run_replay_step(&task, message).await;
        }
        let Some(task) = DeliveryTask::parse(&message.body) else {
            // Poison: make it visible again at once so it reaches the DLQ
            // after maxReceiveCount receives, never silently dropped.
            tracing::error!(message_id = %message.message_id, "deliveries message is not a delivery task");
            self.set_visibility(message, Duration::ZERO).await;
            return MessageOutcome::RetryLater;
        };
        let span =
            tracing::info_span!("delivery", delivery_id = %task.delivery_id, application_id = %task.application_id);
        // `instrument`, not `span.enter()`: an entered guard held across an
        // `.await` leaks the span into whatever else runs on the thread.
        async {
            match self.attempt(&task, message, memo).await {
                Ok(outcome) => outcome,
                Err(err) => {
                    tracing::warn!(error = %err, "delivery attempt could not be completed; will retry");
                    let delay = self.service.config().retry_schedule.shortest();
                    self.set_visibility(message, delay).await;
                    MessageOutcome::RetryLater
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn run_replay_step(&self, task: &ReplayTask, message: &ReceivedMessage) -> MessageOutcome {
        let span = tracing::info_span!("replay", replay_id = %task.replay_id, endpoint_id = %task.endpoint_id);
        match self.service.run_replay_step(task).instrument(span).await {
            Ok(()) => MessageOutcome::Done,
            Err(err) => {
                tracing::warn!(error = %err, replay_id = %task.replay_id, "replay step failed; will retry");
                self.set_visibility(message, self.service.config().retry_schedule.shortest()).await;
                MessageOutcome::RetryLater
            }
        }
    }

    /// Holds a delivery back without spending an attempt (breaker open, rate
    /// limit). A message deferred many times is replaced by a fresh copy, so
    /// waiting never walks it into the dead-letter queue; an ordered
    /// endpoint's message keeps its place instead (its queue allows many
    /// more receives).
    async fn defer(&self, message: &ReceivedMessage, wait: Duration) -> MessageOutcome {
        let wait = wait.min(MAX_VISIBILITY);
        if message.group.is_none() && message.receive_count >= REQUEUE_AFTER_RECEIVES {
            let copy = OutgoingMessage { body: message.body.clone(), delay: wait.min(MAX_SEND_DELAY), group: None };
            match self.service.queue().send(copy).await {
                Ok(()) => return MessageOutcome::Done,
                Err(err) => tracing::warn!(error = %err, "could not requeue a deferred delivery; keeping it"),
            }
        }
        self.set_visibility(message, wait).await;
        MessageOutcome::RetryLater
    }

    async fn set_visibility(&self, message: &ReceivedMessage, delay: Duration) {
        if let Err(err) = self.service.queue().change_visibility(&message.receipt_handle, delay).await {
            // The message comes back after the queue's own visibility timeout instead.
            tracing::warn!(error = %err, "could not change message visibility");
        }
    }

    async fn attempt(
        &self,
        task: &DeliveryTask,
        message: &ReceivedMessage,
        memo: Option<&BatchMemo>,
    ) -> Result<MessageOutcome, StoreError> {
        let store = self.service.store();
        let now = self.service.clock().now();
        let Some(delivery) = store.get_delivery(&task.application_id, &task.delivery_id).await? else {
            // A manual retry's message is sent before its rows are written:
            // a young one may not be written yet. Otherwise the delivery is
            // deleted, expired, or was never written (its write failed or
            // lost a race).
            let age = task.delivery_id.created_at().map(|at| now - at);
            if task.written_after
                && let Some(age) = age.filter(|age| *age < UNWRITTEN_DELIVERY_GRACE)
            {
                let wait = age.to_std().unwrap_or_default();
                let wait = wait.clamp(UNWRITTEN_DELIVERY_RECHECK_MIN, UNWRITTEN_DELIVERY_RECHECK_MAX);
                return Ok(self.defer(message, wait).await);
            }
            return Ok(MessageOutcome::Done);
        };
        if delivery.status.is_final() {
            return Ok(MessageOutcome::Done);
        }
        // A message received no more often than attempts were recorded is a
        // replay of a receive already handled (Lambda may run an SQS batch
        // twice) or a second message for the chain (a re-run fan-out). It is
        // never dropped — it may be the only live copy — but it only sends
        // when the next attempt is due, and the conditional write on the
        // attempt count keeps any attempt from being recorded twice.
        let duplicate = message.receive_count <= delivery.attempt_count;
        if let Some(next) = delivery.next_attempt_at
            && next - EARLY_SLACK > now
        {
            if duplicate {
                tracing::info!(
                    receive_count = message.receive_count,
                    attempts = delivery.attempt_count,
                    "duplicate receive; waiting for the next attempt"
                );
            }
            // Came back early (a crash before the visibility change, or a duplicate): wait again.
            let wait = (next - now).to_std().unwrap_or_default();
            self.set_visibility(message, wait).await;
            return Ok(MessageOutcome::RetryLater);
        }
        let (app_id, endpoint_id, event_id) = (&task.application_id, &delivery.endpoint_id, &delivery.event_id);
        let (endpoint, event) = match memo {
            None => (store.get_endpoint(app_id, endpoint_id).await?, store.get_event(app_id, event_id).await?),
            Some(memo) => {
                let endpoint = memo_cell(&memo.endpoints, (app_id.clone(), endpoint_id.clone()));
                let endpoint = endpoint.get_or_try_init(|| store.get_endpoint(app_id, endpoint_id)).await?.clone();
                let event = memo_cell(&memo.events, (app_id.clone(), event_id.clone()));
                let event = event.get_or_try_init(|| store.get_event(app_id, event_id)).await?.clone();
                (endpoint, event)
            }
        };
        let (endpoint, event) = match (endpoint, event) {
            (Some(endpoint), Some(event)) if endpoint.is_active => (endpoint, event),
            (None, _) | (_, None) => {
                return self
                    .finish_unsent(delivery, ErrorCode::EndpointDeleted, "endpoint or event no longer exists", message)
                    .await;
            }
            (Some(endpoint), Some(_)) => {
                let reason = endpoint.disabled_reason.clone().unwrap_or_else(|| "endpoint is disabled".into());
                return self.finish_unsent(delivery, ErrorCode::EndpointDisabled, &reason, message).await;
            }
        };
        let probe = match self.service.admit_delivery(&endpoint).await.map_err(into_store_error)? {
            Admission::Send { probe } => probe,
            Admission::Wait(wait) => {
                tracing::debug!(wait_ms = wait.as_millis() as u64, "delivery held back by the endpoint's controls");
                return Ok(self.defer(message, wait).await);
            }
        };
        self.send_and_record(delivery, endpoint, event, message, probe).await
    }

    /// Records a delivery that will not be sent as failed, with an attempt saying why.
    async fn finish_unsent(
        &self,
        delivery: Delivery,
        code: ErrorCode,
        reason: &str,
        message: &ReceivedMessage,
    ) -> Result<MessageOutcome, StoreError> {
        let now = self.service.clock().now();
        let status = ResponseStatus::Error(code);
        let attempt = DeliveryAttempt {
            id: Id::new(IdKind::Attempt, now),
            application_id: delivery.application_id.clone(),
            delivery_id: delivery.id.clone(),
            number: delivery.attempt_count + 1,
            started_at: now,
            duration_ms: 0,
            response_status: status,
            response: None,
            error: Some(reason.to_string()),
            next_delay_secs: None,
            expires_at: delivery.expires_at,
        };
        let expected = delivery.attempt_count;
        let (app_id, delivery_id) = (delivery.application_id.clone(), delivery.id.clone());
        let updated = Delivery {
            status: DeliveryStatus::Failed,
            attempt_count: expected + 1,
            response_status: Some(status),
            response_body: None,
            error_message: Some(reason.to_string()),
            next_attempt_at: None,
            updated_at: now,
            ..delivery
        };
        if self.record(updated, attempt, expected).await? {
            Ok(MessageOutcome::Done)
        } else {
            self.after_lost_race(&app_id, &delivery_id, message).await
        }
    }

    /// `Ok(true)` when this attempt was recorded, `Ok(false)` when another
    /// worker recorded the same attempt number first.
    async fn record(&self, delivery: Delivery, attempt: DeliveryAttempt, expected: u32) -> Result<bool, StoreError> {
        let record = AttemptRecord { delivery, attempt, expected_attempt_count: expected };
        match self.service.store().record_attempt(&record).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Lost the race to record an attempt: this message may now be the only
    /// live copy (the other worker's receipt may be stale), so it keeps the
    /// chain going unless the delivery is finished.
    async fn after_lost_race(
        &self,
        app_id: &Id,
        delivery_id: &Id,
        message: &ReceivedMessage,
    ) -> Result<MessageOutcome, StoreError> {
        let now = self.service.clock().now();
        match self.service.store().get_delivery(app_id, delivery_id).await? {
            Some(current) if !current.status.is_final() => {
                let wait =
                    current.next_attempt_at.map(|next| (next - now).to_std().unwrap_or_default()).unwrap_or_default();
                self.set_visibility(message, wait).await;
                Ok(MessageOutcome::RetryLater)
            }
            _ => Ok(MessageOutcome::Done),
        }
    }

    fn build_request(&self, endpoint: &Endpoint, event: &Event, timestamp: i64) -> Result<OutgoingWebhook, String> {
        let body = match endpoint.payload_format {
            PayloadFormat::Standard => serde_json::json!({
                "type": event.event_type,
                "timestamp": event.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "data": event.payload,
            }),
            PayloadFormat::Raw => event.payload.clone(),
        };
        let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| e.to_string())?);
        let secret_box = self.service.secret_box();
        let now = self.service.clock().now();
        // The rotated-out secret and key sign too until their overlap ends.
        let overlap = endpoint.previous_secret_expires_at.is_some_and(|until| until > now);
        let mut keys = Vec::with_capacity(2);
        if endpoint.controls.signs_with(SignatureScheme::HmacSha256) {
            let previous = endpoint.previous_secret_encrypted.as_ref().filter(|_| overlap);
            for sealed in std::iter::once(&endpoint.secret_encrypted).chain(previous) {
                let secret = secret_box.open(sealed).map_err(|e| e.to_string())?;
                keys.push(decode_secret(&secret).map_err(|e| e.to_string())?);
            }
        }
        let mut ed25519_keys = Vec::with_capacity(2);
        if endpoint.controls.signs_with(SignatureScheme::Ed25519) {
            let signing = &endpoint.signing_keys;
            let current = signing.ed25519_encrypted.as_ref().ok_or("endpoint has no Ed25519 key")?;
            let previous = signing.previous_ed25519_encrypted.as_ref().filter(|_| overlap);
            for sealed in std::iter::once(current).chain(previous) {
                let key = secret_box.open(sealed).map_err(|e| e.to_string())?;
                ed25519_keys.push(decode_ed25519_key(&key).map_err(|e| e.to_string())?);
            }
        }
        // webhook-id is the event id: stable across retries and endpoints, so
        // receivers can deduplicate.
        let msg_id = event.id.as_str();
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("user-agent".to_string(), self.user_agent.clone()),
            ("webhook-id".to_string(), msg_id.to_string()),
            ("webhook-timestamp".to_string(), timestamp.to_string()),
            ("webhook-signature".to_string(), signature_header_with(&keys, &ed25519_keys, msg_id, timestamp, &body)),
        ];
        headers.extend(endpoint.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(OutgoingWebhook {
            url: endpoint.url.clone(),
            headers,
            body,
            timeout: Duration::from_secs(u64::from(endpoint.timeout_secs)),
        })
    }

    async fn send_and_record(
        &self,
        delivery: Delivery,
        endpoint: Endpoint,
        event: Event,
        message: &ReceivedMessage,
        probe: bool,
    ) -> Result<MessageOutcome, StoreError> {
        let service = &self.service;
        let started_at = service.clock().now();
        let timestamp = started_at.timestamp();
        let request = match self.build_request(&endpoint, &event, timestamp) {
            Ok(request) => request,
            Err(err) => return Err(StoreError::Corrupt(format!("cannot build request: {err}"))),
        };
        let clock_start = Instant::now();
        let result = self.sender.send(request).await;
        let duration_ms = clock_start.elapsed().as_millis() as u64;
        let now = service.clock().now();
        let number = delivery.attempt_count + 1;
        let schedule = &service.config().retry_schedule;

        let (status, response, error, succeeded, retry_after) = match &result {
            Ok(r) => {
                let ok = (200..300).contains(&r.status);
                let error = (!ok).then(|| format!("endpoint answered HTTP {}", r.status));
                (ResponseStatus::Http(r.status), r.body.clone(), error, ok, r.retry_after)
            }
            Err(f) => (ResponseStatus::Error(f.code), None, Some(f.message.clone()), false, None),
        };
        let gone = matches!(status, ResponseStatus::Http(410));
        let exhausted = !succeeded && (gone || number >= delivery.max_attempts);
        let next_delay = (!succeeded && !exhausted).then(|| match (status, retry_after) {
            (ResponseStatus::Http(429 | 503), Some(requested)) => schedule.clamp_retry_after(requested),
            _ => schedule.delay_after(number, rand::random::<f64>()),
        });
        let status_after = if succeeded {
            DeliveryStatus::Succeeded
        } else if exhausted {
            DeliveryStatus::Failed
        } else {
            DeliveryStatus::Retrying
        };
        let attempt = DeliveryAttempt {
            id: Id::new(IdKind::Attempt, started_at),
            application_id: delivery.application_id.clone(),
            delivery_id: delivery.id.clone(),
            number,
            started_at,
            duration_ms,
            response_status: status,
            response: response.clone(),
            error: error.clone(),
            next_delay_secs: next_delay.map(|d| d.as_secs()),
            expires_at: delivery.expires_at,
        };
        let expected = delivery.attempt_count;
        let updated = Delivery {
            status: status_after,
            attempt_count: number,
            response_status: Some(status),
            response_body: response,
            error_message: error,
            timestamp_sent: Some(timestamp),
            next_attempt_at: next_delay.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| now + d),
            delivered_at: succeeded.then_some(now),
            updated_at: now,
            ..delivery
        };
        tracing::info!(
            endpoint_id = %endpoint.id,
            attempt = number,
            status = %status.to_stored(),
            duration_ms,
            outcome = status_after.as_str(),
            "delivery attempt"
        );
        let (app_id, delivery_id) = (updated.application_id.clone(), updated.id.clone());
        if !self.record(updated, attempt, expected).await? {
            return self.after_lost_race(&app_id, &delivery_id, message).await;
        }
        self.metrics.record(succeeded, duration_ms);
        self.service.record_delivery_outcome(&endpoint, probe, succeeded).await;
        self.update_endpoint_health(&endpoint, succeeded, gone).await;
        match next_delay {
            Some(delay) => {
                self.set_visibility(message, delay).await;
                Ok(MessageOutcome::RetryLater)
            }
            None => Ok(MessageOutcome::Done),
        }
    }

    /// 410 disables at once; five days of nothing but failures disables too.
    async fn update_endpoint_health(&self, endpoint: &Endpoint, succeeded: bool, gone: bool) {
        let store = self.service.store();
        let now = self.service.clock().now();
        let result = if succeeded {
            match endpoint.failing_since {
                Some(_) => store.set_endpoint_failing_since(&endpoint.application_id, &endpoint.id, None).await,
                None => Ok(()),
            }
        } else if gone {
            store.disable_endpoint(&endpoint.application_id, &endpoint.id, "endpoint answered 410 Gone", now).await
        } else {
            match endpoint.failing_since {
                None => store.set_endpoint_failing_since(&endpoint.application_id, &endpoint.id, Some(now)).await,
                Some(since) if now - since >= chrono::Duration::days(AUTO_DISABLE_AFTER_DAYS) => {
                    let reason = format!(
                        "every delivery failed for {AUTO_DISABLE_AFTER_DAYS} days (since {})",
                        since.to_rfc3339()
                    );
                    store.disable_endpoint(&endpoint.application_id, &endpoint.id, &reason, now).await
                }
                Some(_) => Ok(()),
            }
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, endpoint_id = %endpoint.id, "could not update endpoint health");
        }
    }
}

/// The dispatcher treats any failure of the controls' bookkeeping like a
/// store failure: the message is kept and comes back.
fn into_store_error(err: ServiceError) -> StoreError {
    StoreError::Unavailable(err.to_string())
}
