use serde::Serialize;

use super::event_types::validate_payload;
use super::{ListPage, ListQuery, Principal, ServiceError, ServiceResult, Skyhook, Violations, validate};
use crate::crypto::sha256_hex;
use crate::domain::limits::*;
use crate::domain::{Event, EventStatus, Id, IdKind, Scope};
use crate::ports::{EventFilter, InsertEvent};

#[derive(Debug, Clone, Default)]
pub struct PublishEvent {
    pub event_type: String,
    pub payload: Option<serde_json::Value>,
    /// From the body.
    pub idempotency_key: Option<String>,
    /// From the `Idempotency-Key` header.
    pub idempotency_header: Option<String>,
}

/// A publish's answer: the event, and whether it was a repeat.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    #[serde(flatten)]
    pub event: Event,
    #[serde(skip)]
    pub duplicate: bool,
}

impl Skyhook {
    pub async fn publish_event(&self, who: &Principal, input: PublishEvent) -> ServiceResult<Published> {
        let app = who.require(Scope::EventsWrite)?;
        self.publish_for_application(&app.application_id.clone(), input).await
    }

    /// Publish on behalf of an application (the ingest queue's producers).
    pub async fn publish_for_application(&self, app_id: &Id, input: PublishEvent) -> ServiceResult<Published> {
        let mut v = Violations::new();
        validate::event_type_name(&mut v, "eventType", &input.event_type);
        let idempotency_key = match (input.idempotency_header, input.idempotency_key) {
            (Some(header), Some(body)) if header != body => {
                v.add("idempotencyKey", "differs from the Idempotency-Key header");
                None
            }
            (header, body) => header.or(body),
        };
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS)
        {
            v.add("idempotencyKey", format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"));
        }
        let payload = match input.payload {
            None | Some(serde_json::Value::Null) => {
                v.add("payload", "is required (any JSON value but null)");
                serde_json::Value::Null
            }
            Some(payload) => payload,
        };
        v.into_result()?;
        let event_type = self.store.get_event_type(app_id, &input.event_type).await?;
        match &event_type {
            None => {
                return Err(ServiceError::field(
                    "eventType",
                    format!("unknown event type {:?}; create it with POST /v1/event-types", input.event_type),
                ));
            }
            Some(t) if t.archived => {
                return Err(ServiceError::field("eventType", format!("event type {:?} is archived", t.name)));
            }
            Some(t) => {
                if let Some(schema) = &t.schema {
                    validate_payload(schema, &payload)?;
                }
            }
        }
        self.publish_checked(app_id, input.event_type, payload, idempotency_key, None, true).await
    }

    /// Writes the event (one durable write); fan-out follows from the store's
    /// stream or outbox, so a 202 never depends on the queue being reachable.
    pub(crate) async fn publish_checked(
        &self,
        app_id: &Id,
        event_type: String,
        payload: serde_json::Value,
        idempotency_key: Option<String>,
        target_endpoint_id: Option<Id>,
        rate_limited: bool,
    ) -> ServiceResult<Published> {
        let body = serde_json::to_vec(&payload).map_err(|e| ServiceError::Internal(e.to_string()))?;
        if body.len() > MAX_PAYLOAD_BYTES {
            return Err(ServiceError::TooLarge { field: "payload".into(), limit: MAX_PAYLOAD_BYTES });
        }
        let app = self.application(app_id).await?;
        let now = self.clock.now();
        if rate_limited && let Some(limit) = app.rate_limit {
            self.rate_limiter
                .acquire(&app.id, limit, now)
                .map_err(|retry_after| ServiceError::RateLimited { retry_after })?;
        }
        let request_hash = {
            let canonical = serde_json::json!({ "eventType": event_type, "payload": payload });
            sha256_hex(canonical.to_string().as_bytes())
        };
        let event = Event {
            id: Id::new(IdKind::Event, now),
            application_id: app.id.clone(),
            event_type,
            payload,
            idempotency_key,
            request_hash,
            target_endpoint_id,
            status: EventStatus::Pending,
            fanned_out: false,
            delivery_count: 0,
            succeeded_count: 0,
            failed_count: 0,
            created_at: now,
            expires_at: now + chrono::Duration::days(i64::from(app.retention_days)),
        };
        let window_start = now - chrono::Duration::hours(IDEMPOTENCY_WINDOW_HOURS);
        match self.store.insert_event(&event, window_start).await? {
            InsertEvent::Created => {
                tracing::info!(event_id = %event.id, application_id = %app.id, event_type = %event.event_type, "event accepted");
                if let Some(hook) = &self.publish_hook {
                    hook();
                }
                Ok(Published { event, duplicate: false })
            }
            InsertEvent::Existing(first) if first.request_hash == event.request_hash => {
                Ok(Published { event: first, duplicate: true })
            }
            InsertEvent::Existing(_) => Err(ServiceError::Conflict(
                "this Idempotency-Key was used in the last 24 hours with a different eventType or payload".into(),
            )),
        }
    }

    pub async fn list_events(
        &self,
        who: &Principal,
        filter: EventFilter,
        query: &ListQuery,
    ) -> ServiceResult<ListPage<Event>> {
        let app = who.require(Scope::EventsRead)?;
        let tenant = app.application_id.as_str();
        let page = self.page_request(query, tenant, "events")?;
        let found = self.store.list_events(&app.application_id, &filter, &page).await?;
        Ok(self.list_page(found, tenant, "events", |e| e))
    }

    pub async fn get_event(&self, who: &Principal, id: &str) -> ServiceResult<Event> {
        let app = who.require(Scope::EventsRead)?;
        let id = Id::parse(IdKind::Event, id).ok_or(ServiceError::NotFound("event"))?;
        self.store.get_event(&app.application_id, &id).await?.ok_or(ServiceError::NotFound("event"))
    }
}
