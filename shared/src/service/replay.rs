//! Replay: re-sends an endpoint's history (a new endpoint's backfill, or
//! recovery after an outage). A replay is a job stored as a record; it runs
//! as a chain of queue messages, each replaying one slice of time oldest
//! first, so it needs no long-running process on either backend and resumes
//! wherever it stopped. Replayed deliveries have ids derived from (event,
//! endpoint, replay), so a step run twice creates nothing twice.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{ListPage, ListQuery, Principal, ServiceError, ServiceResult, Skyhook, Violations, validate};
use crate::domain::limits::{MAX_EVENT_TYPES_PER_ENDPOINT, MAX_PAGE_LIMIT, MAX_RETENTION_DAYS};
use crate::domain::{Delivery, DeliveryStatus, Endpoint, Event, Id, IdKind, Scope, Timestamp};
use crate::ports::{DeliveryFilter, EventFilter, OutgoingMessage, PageRequest, StateRecord, StoreError};

const REPLAY_KIND: &str = "replay";
/// Events read per step at most; a slice holding more is split.
const STEP_EVENTS: usize = MAX_PAGE_LIMIT;
const FIRST_SLICE_MS: i64 = 60 * 60 * 1000;
const MAX_SLICE_MS: i64 = 24 * 60 * 60 * 1000;

/// `POST /v1/endpoints/{id}/replay`.
#[derive(Debug, Clone, Default)]
pub struct ReplayRequest {
    pub from: Option<Timestamp>,
    /// Defaults to now.
    pub to: Option<Timestamp>,
    /// Only these event types (and only those the endpoint subscribes to).
    pub event_types: Option<Vec<String>>,
    /// Only events whose deliveries to this endpoint all failed.
    pub only_failed: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReplayStatus {
    Running,
    Completed,
    /// Stopped for good (the endpoint was deleted); `error` says why.
    Failed,
}

/// A replay job and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub id: Id,
    pub endpoint_id: Id,
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub to: Timestamp,
    pub event_types: Vec<String>,
    pub only_failed: bool,
    pub status: ReplayStatus,
    /// Every event published before this has been replayed (or skipped).
    #[schema(value_type = String, format = DateTime)]
    pub replayed_until: Timestamp,
    /// Share of the time range done, 0 – 1.
    pub progress: f64,
    pub events_scanned: u64,
    pub deliveries_created: u64,
    pub error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<Timestamp>,
}

/// The stored job: what the API shows plus the step size.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredReplay {
    #[serde(flatten)]
    replay: Replay,
    slice_ms: i64,
}

/// The body of a replay step's queue message (beside delivery tasks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayTask {
    #[serde(rename = "a")]
    pub application_id: Id,
    #[serde(rename = "e")]
    pub endpoint_id: Id,
    #[serde(rename = "r")]
    pub replay_id: Id,
}

impl ReplayTask {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("serialisable")
    }

    pub fn parse(body: &str) -> Option<Self> {
        let task: ReplayTask = serde_json::from_str(body).ok()?;
        Id::parse(IdKind::Application, task.application_id.as_str())?;
        Id::parse(IdKind::Endpoint, task.endpoint_id.as_str())?;
        Id::parse(IdKind::Replay, task.replay_id.as_str())?;
        Some(task)
    }
}

fn record_key(endpoint_id: &Id, replay_id: &Id) -> String {
    format!("{endpoint_id}/{replay_id}")
}

fn progress_of(replay: &Replay) -> f64 {
    let total = (replay.to - replay.from).num_milliseconds().max(1) as f64;
    let done = (replay.replayed_until - replay.from).num_milliseconds().max(0) as f64;
    ((done / total).min(1.0) * 1000.0).round() / 1000.0
}

fn parse_record(record: &StateRecord) -> Result<StoredReplay, StoreError> {
    serde_json::from_str(&record.body).map_err(|e| StoreError::Corrupt(format!("replay {}: {e}", record.key)))
}

impl Skyhook {
    /// Starts a replay, or returns the running one with the same parameters
    /// (`false`: nothing new was started), so a repeated request is harmless.
    pub async fn start_replay(
        &self,
        who: &Principal,
        endpoint_id: &str,
        request: ReplayRequest,
    ) -> ServiceResult<(Replay, bool)> {
        let app = who.require_scoped(Scope::WebhooksWrite)?;
        let endpoint = self.find_endpoint(app, endpoint_id).await?;
        let now = self.clock.now();
        let mut v = Violations::new();
        let oldest = now - chrono::Duration::days(i64::from(MAX_RETENTION_DAYS));
        let from = match request.from {
            None => {
                v.add("from", "is required (RFC 3339)");
                now
            }
            Some(from) if from < oldest => {
                v.add("from", format!("must be within the last {MAX_RETENTION_DAYS} days"));
                from
            }
            Some(from) => from,
        };
        let to = request.to.unwrap_or(now).min(now);
        if request.from.is_some() && to <= from {
            v.add("to", "must be after from (and from must be in the past)");
        }
        let mut event_types = request.event_types.unwrap_or_default();
        if event_types.len() > MAX_EVENT_TYPES_PER_ENDPOINT {
            v.add("eventTypes", format!("must have at most {MAX_EVENT_TYPES_PER_ENDPOINT} entries"));
        } else {
            for (i, name) in event_types.iter().enumerate() {
                let field = format!("eventTypes[{i}]");
                validate::event_type_name(&mut v, &field, name);
                if self.store.get_event_type(&app.application_id, name).await?.is_none() {
                    v.add(field, format!("unknown event type {name:?}"));
                }
            }
        }
        v.into_result()?;
        if !endpoint.is_active {
            return Err(ServiceError::Conflict("the endpoint is disabled; enable it before replaying to it".into()));
        }
        event_types.sort();
        event_types.dedup();
        let only_failed = request.only_failed.unwrap_or(false);
        let prefix = format!("{}/", endpoint.id);
        let running =
            self.store.list_records(&app.application_id, REPLAY_KIND, &prefix, &PageRequest::first(50)).await?;
        for record in &running.items {
            let existing = parse_record(record)?.replay;
            if existing.status == ReplayStatus::Running
                && existing.from == from
                && request.to.is_none_or(|_| existing.to == to)
                && existing.event_types == event_types
                && existing.only_failed == only_failed
            {
                return Ok((existing, false));
            }
        }
        let replay = Replay {
            id: Id::new(IdKind::Replay, now),
            endpoint_id: endpoint.id.clone(),
            from,
            to,
            event_types,
            only_failed,
            status: ReplayStatus::Running,
            replayed_until: from,
            progress: 0.0,
            events_scanned: 0,
            deliveries_created: 0,
            error: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
        };
        let stored = StoredReplay { replay: replay.clone(), slice_ms: FIRST_SLICE_MS };
        let body = serde_json::to_string(&stored).expect("serialisable");
        let key = record_key(&endpoint.id, &replay.id);
        let expires = self.replay_expiry(now);
        if !self.store.put_record(&app.application_id, REPLAY_KIND, &key, &body, 0, expires).await? {
            return Err(ServiceError::Conflict("a replay with this id exists; try again".into()));
        }
        // Written before its first step is queued: a failed send leaves a
        // job the caller sees and can start again (the same request returns it).
        self.queue.send(OutgoingMessage::now(self.replay_task(&endpoint, &replay).to_body())).await?;
        tracing::info!(replay_id = %replay.id, endpoint_id = %endpoint.id, "replay started");
        Ok((replay, true))
    }

    pub async fn get_replay(&self, who: &Principal, endpoint_id: &str, replay_id: &str) -> ServiceResult<Replay> {
        let app = who.require_scoped(Scope::WebhooksRead)?;
        let endpoint = self.find_endpoint(app, endpoint_id).await?;
        let replay_id = Id::parse(IdKind::Replay, replay_id).ok_or(ServiceError::NotFound("replay"))?;
        let record = self
            .store
            .get_record(&app.application_id, REPLAY_KIND, &record_key(&endpoint.id, &replay_id))
            .await?
            .ok_or(ServiceError::NotFound("replay"))?;
        Ok(parse_record(&record)?.replay)
    }

    pub async fn list_replays(
        &self,
        who: &Principal,
        endpoint_id: &str,
        query: &ListQuery,
    ) -> ServiceResult<ListPage<Replay>> {
        let app = who.require_scoped(Scope::WebhooksRead)?;
        let endpoint = self.find_endpoint(app, endpoint_id).await?;
        let tenant = app.application_id.as_str();
        let list = "replays";
        let page = self.page_request(query, tenant, list)?;
        let prefix = format!("{}/", endpoint.id);
        let found = self.store.list_records(&app.application_id, REPLAY_KIND, &prefix, &page).await?;
        let mut items = Vec::with_capacity(found.items.len());
        for record in &found.items {
            items.push(parse_record(record)?.replay);
        }
        Ok(self.list_page(crate::ports::Page { items, next: found.next }, tenant, list, |r| r))
    }

    fn replay_task(&self, endpoint: &Endpoint, replay: &Replay) -> ReplayTask {
        ReplayTask {
            application_id: endpoint.application_id.clone(),
            endpoint_id: endpoint.id.clone(),
            replay_id: replay.id.clone(),
        }
    }

    fn replay_expiry(&self, now: Timestamp) -> Timestamp {
        now + chrono::Duration::days(i64::from(MAX_RETENTION_DAYS))
    }

    /// One step of a replay: the next slice of time, oldest event first.
    /// Ends by queuing the next step, or by marking the replay completed.
    pub async fn run_replay_step(&self, task: &ReplayTask) -> ServiceResult<()> {
        let app_id = &task.application_id;
        let key = record_key(&task.endpoint_id, &task.replay_id);
        let Some(record) = self.store.get_record(app_id, REPLAY_KIND, &key).await? else {
            return Ok(()); // expired, or its application is gone
        };
        let StoredReplay { mut replay, mut slice_ms } = parse_record(&record)?;
        if replay.status != ReplayStatus::Running {
            return Ok(());
        }
        let now = self.clock.now();
        let Some(endpoint) = self.store.get_endpoint(app_id, &task.endpoint_id).await? else {
            replay.status = ReplayStatus::Failed;
            replay.error = Some("the endpoint was deleted".into());
            replay.updated_at = now;
            self.save_replay(app_id, &key, &replay, slice_ms, record.version).await?;
            return Ok(());
        };
        let start = replay.replayed_until;
        let end = (start + chrono::Duration::milliseconds(slice_ms)).min(replay.to);
        let filter = EventFilter { from: Some(start), to: Some(end), ..EventFilter::default() };
        let first = self.store.list_events(app_id, &filter, &PageRequest::first(STEP_EVENTS)).await?;
        if first.next.is_some() && slice_ms > 1 {
            // Too many events for one step: the same start, a shorter slice.
            slice_ms = (slice_ms / 4).max(1);
            replay.updated_at = now;
            if self.save_replay(app_id, &key, &replay, slice_ms, record.version).await? {
                self.queue.send(OutgoingMessage::now(task.to_body())).await?;
            }
            return Ok(());
        }
        let mut events = first.items;
        let mut next = first.next;
        // A one-millisecond slice with more events than a step: read it whole.
        while let Some(after) = next {
            let page = PageRequest { limit: STEP_EVENTS, after: Some(after) };
            let more = self.store.list_events(app_id, &filter, &page).await?;
            events.extend(more.items);
            next = more.next;
        }
        events.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let mut deliveries = Vec::new();
        for event in &events {
            if self.replays_event(&replay, &endpoint, event).await? {
                deliveries.push(self.replay_delivery(event, &endpoint, &replay));
            }
        }
        self.store.insert_deliveries(&deliveries).await?;
        let ordered: HashSet<Id> = endpoint.controls.ordered.then(|| endpoint.id.clone()).into_iter().collect();
        self.enqueue(&deliveries, &ordered).await?;
        replay.replayed_until = end;
        replay.events_scanned += events.len() as u64;
        replay.deliveries_created += deliveries.len() as u64;
        replay.progress = progress_of(&replay);
        replay.updated_at = now;
        if end >= replay.to {
            replay.status = ReplayStatus::Completed;
            replay.completed_at = Some(now);
        } else if events.len() < STEP_EVENTS / 4 {
            slice_ms = (slice_ms * 2).min(MAX_SLICE_MS);
        }
        // A step that lost the race to save (a duplicate message ran it too)
        // stops here: the winner queues the next step.
        if self.save_replay(app_id, &key, &replay, slice_ms, record.version).await?
            && replay.status == ReplayStatus::Running
        {
            self.queue.send(OutgoingMessage::now(task.to_body())).await?;
        }
        if replay.status == ReplayStatus::Completed {
            tracing::info!(replay_id = %replay.id, deliveries = replay.deliveries_created, "replay completed");
        }
        Ok(())
    }

    async fn save_replay(
        &self,
        app_id: &Id,
        key: &str,
        replay: &Replay,
        slice_ms: i64,
        version: u64,
    ) -> ServiceResult<bool> {
        let body = serde_json::to_string(&StoredReplay { replay: replay.clone(), slice_ms }).expect("serialisable");
        let expires = self.replay_expiry(replay.created_at);
        Ok(self.store.put_record(app_id, REPLAY_KIND, key, &body, version, expires).await?)
    }

    /// Whether the replay re-sends this event to the endpoint: the endpoint
    /// would receive it today (subscription, filter), the request's event
    /// types allow it, and with `onlyFailed` it never reached the endpoint.
    async fn replays_event(&self, replay: &Replay, endpoint: &Endpoint, event: &Event) -> ServiceResult<bool> {
        // Not fanned out yet: the fan-out delivers it.
        if !event.fanned_out || event.target_endpoint_id.is_some() {
            return Ok(false);
        }
        if !endpoint.subscribes_to(&event.event_type)
            || (!replay.event_types.is_empty() && !replay.event_types.contains(&event.event_type))
            || endpoint.controls.filter.as_ref().is_some_and(|f| !f.matches(&event.payload))
        {
            return Ok(false);
        }
        if !replay.only_failed {
            return Ok(true);
        }
        let filter = DeliveryFilter {
            event_id: Some(event.id.clone()),
            endpoint_id: Some(endpoint.id.clone()),
            ..DeliveryFilter::default()
        };
        let found =
            self.store.list_deliveries(&event.application_id, &filter, &PageRequest::first(MAX_PAGE_LIMIT)).await?;
        let this_replays = |d: &Delivery| d.retry_of.as_ref() == Some(&replay.id);
        let earlier: Vec<&Delivery> = found.items.iter().filter(|d| !this_replays(d)).collect();
        Ok(!earlier.is_empty() && earlier.iter().all(|d| d.status == DeliveryStatus::Failed))
            .map(|failed| failed || found.items.iter().any(this_replays))
    }

    fn replay_delivery(&self, event: &Event, endpoint: &Endpoint, replay: &Replay) -> Delivery {
        let mut delivery = self.new_delivery(event, endpoint, None);
        delivery.id = Id::derived(
            IdKind::Delivery,
            replay.created_at,
            &[event.id.as_str(), endpoint.id.as_str(), replay.id.as_str()],
        );
        // Marks it as the replay's, so it is not counted on its event (the
        // event's outcome stays that of its fan-out).
        delivery.retry_of = Some(replay.id.clone());
        delivery
    }
}
