//! Fan-out: an accepted event becomes one delivery per matching endpoint and
//! one queue message per delivery. Every step is idempotent (delivery ids are
//! derived from event and endpoint), so a fan-out interrupted anywhere is
//! simply run again: by the DynamoDB stream's retries on AWS, by the outbox
//! sweep on the embedded backend. The event is marked fanned out last.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use tokio::sync::OnceCell;

use super::dispatcher::DeliveryTask;
use super::{ServiceError, ServiceResult, Skyhook};
use crate::domain::limits::MAX_PAGE_LIMIT;
use crate::domain::{Delivery, DeliveryStatus, Endpoint, Event, Id, IdKind};
use crate::ports::{DeliveryFilter, EndpointFilter, OutgoingMessage, PageRequest};

/// The matching endpoints per (application, event type), looked up once per
/// sweep however many of the sweep's events share them.
#[derive(Default)]
struct EndpointMemo {
    cells: Mutex<HashMap<(Id, String), EndpointCell>>,
}

type EndpointCell = Arc<OnceCell<Vec<Endpoint>>>;

/// Runs the futures concurrently on the current task; outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

impl Skyhook {
    pub async fn fan_out(&self, event: &Event) -> ServiceResult<u32> {
        self.fan_out_with(event, None).await
    }

    async fn fan_out_with(&self, event: &Event, memo: Option<&EndpointMemo>) -> ServiceResult<u32> {
        let Some(planned) = self.write_fanout_deliveries(event, memo).await? else {
            return Ok(event.delivery_count);
        };
        self.enqueue(&planned.unfinished, &planned.ordered).await?;
        self.store.mark_event_fanned_out(&event.application_id, &event.id, planned.count).await?;
        tracing::debug!(event_id = %event.id, deliveries = planned.count, "event fanned out");
        Ok(planned.count)
    }

    /// The first step of a fan-out: writes the event's deliveries; `None`
    /// when it was fanned out already.
    async fn write_fanout_deliveries(
        &self,
        event: &Event,
        memo: Option<&EndpointMemo>,
    ) -> ServiceResult<Option<PlannedFanout>> {
        if event.fanned_out {
            return Ok(None);
        }
        // A fan-out interrupted before it was marked left deliveries behind;
        // they count, and are queued again, even if their endpoint no longer
        // matches (the dispatcher then records why it was not sent).
        let existing = self.original_deliveries(event).await?;
        // Borrowed from the memo, not cloned: a sweep fans out up to 128
        // events at once, and a copy of their endpoints each was the largest
        // allocation at the embedded server's peak (docs/PERFORMANCE.md).
        let memo_cell: EndpointCell;
        let fetched: Vec<Endpoint>;
        let endpoints: &[Endpoint] = match memo {
            Some(memo) if event.target_endpoint_id.is_none() => {
                memo_cell = Arc::clone(
                    memo.cells
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry((event.application_id.clone(), event.event_type.clone()))
                        .or_default(),
                );
                memo_cell.get_or_try_init(|| self.matching_endpoints(event)).await?
            }
            _ => {
                fetched = self.matching_endpoints(event).await?;
                &fetched
            }
        };
        // The payload filter is per event, so it applies after the memo.
        let endpoints: Vec<&Endpoint> = endpoints
            .iter()
            .filter(|ep| {
                event.target_endpoint_id.is_some()
                    || ep.controls.filter.as_ref().is_none_or(|filter| filter.matches(&event.payload))
            })
            .collect();
        let new: Vec<Delivery> = endpoints
            .iter()
            .filter(|ep| !existing.iter().any(|d| d.endpoint_id == ep.id))
            .map(|ep| self.new_delivery(event, ep, None))
            .collect();
        self.store.insert_deliveries(&new).await?;
        let count = (existing.len() + new.len()) as u32;
        let mut unfinished: Vec<Delivery> = existing.into_iter().filter(|d| !d.status.is_final()).collect();
        unfinished.extend(new);
        let ordered = endpoints.iter().filter(|ep| ep.controls.ordered).map(|ep| ep.id.clone()).collect();
        Ok(Some(PlannedFanout { count, unfinished, ordered }))
    }

    /// Fans out a stream batch's events, which complete in order (the stream
    /// retries from the first one that did not): each event's deliveries are
    /// written in turn until one fails; then the messages of every event
    /// written go out together, so ten events at fan-out 1 cost one
    /// `SendMessageBatch` instead of ten; then the events are marked fanned
    /// out, in order. The endpoints of each (application, event type) are
    /// looked up once per batch.
    pub async fn fan_out_in_order(&self, events: &[Event]) -> OrderedFanOut {
        let memo = EndpointMemo::default();
        let mut planned = Vec::with_capacity(events.len());
        let mut stopped = None;
        for event in events {
            match self.write_fanout_deliveries(event, Some(&memo)).await {
                Ok(plan) => planned.push(plan),
                Err(err) => {
                    stopped = Some(err);
                    break;
                }
            }
        }
        if let Err(err) = self.enqueue_planned(planned.iter().flatten()).await {
            return OrderedFanOut { delivery_counts: Vec::new(), error: Some(err) };
        }
        let mut delivery_counts = Vec::with_capacity(planned.len());
        for (event, plan) in events.iter().zip(&planned) {
            let count = match plan {
                None => event.delivery_count,
                Some(plan) => {
                    let marked = self.store.mark_event_fanned_out(&event.application_id, &event.id, plan.count).await;
                    if let Err(err) = marked {
                        return OrderedFanOut { delivery_counts, error: Some(err.into()) };
                    }
                    plan.count
                }
            };
            delivery_counts.push(count);
        }
        OrderedFanOut { delivery_counts, error: stopped }
    }

    /// Queues the unfinished deliveries of several written fan-outs in one
    /// go, in the plans' order.
    async fn enqueue_planned(&self, plans: impl Iterator<Item = &PlannedFanout>) -> ServiceResult<()> {
        let mut unfinished = Vec::new();
        let mut ordered = HashSet::new();
        for plan in plans {
            unfinished.extend(plan.unfinished.iter().cloned());
            ordered.extend(plan.ordered.iter().cloned());
        }
        self.enqueue(&unfinished, &ordered).await
    }

    /// Fans out every event still waiting (after a crash, or when woken by a
    /// publish). Returns how many events it completed.
    pub async fn sweep_fanout(&self, limit: usize) -> ServiceResult<usize> {
        let events = self.store.events_awaiting_fanout(limit).await?;
        let mut done = 0;
        for event in &events {
            match self.fan_out(event).await {
                Ok(_) => done += 1,
                Err(err) => {
                    tracing::warn!(event_id = %event.id, error = %err, "fan-out failed; will retry");
                    return Err(err);
                }
            }
        }
        Ok(done)
    }

    /// Like [`Skyhook::sweep_fanout`], for a backend whose concurrent writes
    /// share one commit (the embedded store's group commit): fans out up to
    /// `concurrency` waiting events at a time, so their writes share fsyncs,
    /// and looks up the endpoints of each (application, event type) once per
    /// sweep. Each event's own steps keep their order (deliveries, queue
    /// messages, then the fanned-out mark), so an interrupted sweep is simply
    /// run again. Returns how many events it completed, or the first error
    /// once the events in flight have finished.
    pub async fn sweep_fanout_concurrent(&self, limit: usize, concurrency: usize) -> ServiceResult<usize> {
        let events = self.store.events_awaiting_fanout(limit).await?;
        let memo = EndpointMemo::default();
        let mut done = 0;
        for chunk in events.chunks(concurrency.max(1)) {
            // Three phases, each concurrent within the chunk: the writes of
            // deliveries, then every message in publish order (an ordered
            // endpoint's queue order is its delivery order), then the marks.
            let written =
                join_all(chunk.iter().map(|event| self.write_fanout_deliveries(event, Some(&memo))).collect()).await;
            let mut planned = Vec::with_capacity(chunk.len());
            for (event, result) in chunk.iter().zip(written) {
                match result {
                    Ok(Some(plan)) => planned.push((event, plan)),
                    Ok(None) => done += 1,
                    Err(err) => {
                        tracing::warn!(event_id = %event.id, error = %err, "fan-out failed; will retry");
                        return Err(err);
                    }
                }
            }
            self.enqueue_planned(planned.iter().map(|(_, plan)| plan)).await?;
            let marks = join_all(
                planned
                    .iter()
                    .map(|(event, plan)| self.store.mark_event_fanned_out(&event.application_id, &event.id, plan.count))
                    .collect(),
            )
            .await;
            for ((event, _), result) in planned.iter().zip(marks) {
                if let Err(err) = result {
                    tracing::warn!(event_id = %event.id, error = %err, "fan-out failed; will retry");
                    return Err(err.into());
                }
                done += 1;
            }
        }
        Ok(done)
    }

    /// The deliveries an earlier, interrupted fan-out of this event wrote (not manual retries).
    async fn original_deliveries(&self, event: &Event) -> ServiceResult<Vec<Delivery>> {
        let filter = DeliveryFilter { event_id: Some(event.id.clone()), ..DeliveryFilter::default() };
        let mut page = PageRequest::first(MAX_PAGE_LIMIT);
        let mut found = Vec::new();
        loop {
            let batch = self.store.list_deliveries(&event.application_id, &filter, &page).await?;
            found.extend(batch.items.into_iter().filter(|d| d.retry_of.is_none()));
            match batch.next {
                Some(next) => page.after = Some(next),
                None => return Ok(found),
            }
        }
    }

    async fn matching_endpoints(&self, event: &Event) -> ServiceResult<Vec<Endpoint>> {
        if let Some(target) = &event.target_endpoint_id {
            return Ok(self.store.get_endpoint(&event.application_id, target).await?.into_iter().collect());
        }
        let filter = EndpointFilter { is_active: Some(true), event_type: Some(event.event_type.clone()) };
        let mut page = PageRequest::first(MAX_PAGE_LIMIT);
        let mut endpoints = Vec::new();
        loop {
            let found = self.store.list_endpoints(&event.application_id, &filter, &page).await?;
            endpoints.extend(found.items.into_iter().filter(|ep| ep.is_active && ep.subscribes_to(&event.event_type)));
            match found.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        Ok(endpoints)
    }

    pub(crate) fn new_delivery(&self, event: &Event, endpoint: &Endpoint, retry_of: Option<&Delivery>) -> Delivery {
        let now = self.clock.now();
        let id = match retry_of {
            None => Id::derived(IdKind::Delivery, event.created_at, &[event.id.as_str(), endpoint.id.as_str()]),
            Some(_) => Id::new(IdKind::Delivery, now),
        };
        Delivery {
            id,
            application_id: event.application_id.clone(),
            event_id: event.id.clone(),
            endpoint_id: endpoint.id.clone(),
            event_type: event.event_type.clone(),
            status: DeliveryStatus::Pending,
            attempt_count: 0,
            max_attempts: endpoint.max_attempts,
            response_status: None,
            response_body: None,
            error_message: None,
            timestamp_sent: None,
            next_attempt_at: Some(now),
            // A retry of a replay's delivery stays the replay's (see `Delivery::counts_on_event`).
            retry_of: retry_of.map(|d| match &d.retry_of {
                Some(replay) if !d.counts_on_event() => replay.clone(),
                _ => d.id.clone(),
            }),
            retried_by: None,
            delivered_at: None,
            created_at: now,
            updated_at: now,
            // A retry lives as long as the event it re-sends.
            expires_at: event.expires_at,
        }
    }

    /// One message per delivery, in the given order; an ordered endpoint's
    /// go into its own FIFO group (the endpoint id), one at a time, in order.
    pub(crate) async fn enqueue(&self, deliveries: &[Delivery], ordered: &HashSet<Id>) -> ServiceResult<()> {
        self.enqueue_tasks(deliveries, ordered, false).await
    }

    /// Like [`Skyhook::enqueue`], for deliveries that are written after
    /// their messages are sent (manual retries).
    pub(crate) async fn enqueue_before_writing(
        &self,
        deliveries: &[Delivery],
        ordered: &HashSet<Id>,
    ) -> ServiceResult<()> {
        self.enqueue_tasks(deliveries, ordered, true).await
    }

    async fn enqueue_tasks(
        &self,
        deliveries: &[Delivery],
        ordered: &HashSet<Id>,
        written_after: bool,
    ) -> ServiceResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let messages = deliveries
            .iter()
            .map(|d| {
                let body = DeliveryTask { written_after, ..DeliveryTask::for_delivery(d) }.to_body();
                if ordered.contains(&d.endpoint_id) {
                    OutgoingMessage::in_group(body, d.endpoint_id.as_str())
                } else {
                    OutgoingMessage::now(body)
                }
            })
            .collect();
        self.queue.send_batch(messages).await?;
        Ok(())
    }
}

/// What [`Skyhook::fan_out_in_order`] got done.
#[derive(Debug)]
pub struct OrderedFanOut {
    /// The deliveries of each event fanned out: the first
    /// `delivery_counts.len()` events are complete.
    pub delivery_counts: Vec<u32>,
    /// Why the next event, and so every later one, is not.
    pub error: Option<ServiceError>,
}

/// A fan-out's deliveries, written and not yet queued.
struct PlannedFanout {
    count: u32,
    unfinished: Vec<Delivery>,
    ordered: HashSet<Id>,
}
