use serde::Serialize;

use super::{AppPrincipal, ListPage, ListQuery, Principal, ServiceError, ServiceResult, Skyhook};
use crate::domain::limits::{MAX_BULK_RETRY, MAX_PAGE_LIMIT};
use crate::domain::{Delivery, DeliveryAttempt, DeliveryStatus, Id, IdKind, Scope, Timestamp};
use crate::ports::{DeliveryFilter, Page, PageRequest, StoreError};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryWithAttempts {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub attempts: Vec<DeliveryAttempt>,
}

/// Which failed deliveries a bulk retry re-sends.
#[derive(Debug, Clone, Default)]
pub struct BulkRetry {
    pub endpoint_id: Option<String>,
    pub event_type: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRetryResult {
    pub retried: usize,
    pub delivery_ids: Vec<Id>,
    /// More failed deliveries matched than one call re-sends; call again.
    pub truncated: bool,
}

impl Skyhook {
    pub async fn list_deliveries(
        &self,
        who: &Principal,
        filter: DeliveryFilter,
        query: &ListQuery,
    ) -> ServiceResult<ListPage<Delivery>> {
        let app = who.require_scoped(Scope::EventsRead)?;
        let mut filter = filter;
        let tenant = app.application_id.as_str();
        if let Some(endpoint_id) = &filter.endpoint_id {
            if !app.allows_endpoint(endpoint_id) {
                return Err(ServiceError::NotFound("endpoint"));
            }
            self.store
                .get_endpoint(&app.application_id, endpoint_id)
                .await?
                .ok_or(ServiceError::NotFound("endpoint"))?;
        }
        let page = self.page_request(query, tenant, "deliveries")?;
        let found = match &app.endpoint_ids {
            Some(allowed) if filter.endpoint_id.is_none() => match allowed.as_slice() {
                [only] => {
                    filter.endpoint_id = Some(only.clone());
                    self.store.list_deliveries(&app.application_id, &filter, &page).await?
                }
                _ => self.scan_portal_deliveries(app, allowed, &filter, page).await?,
            },
            _ => self.store.list_deliveries(&app.application_id, &filter, &page).await?,
        };
        Ok(self.list_page(found, tenant, "deliveries", |d| d))
    }

    /// The application's deliveries kept to a portal session's endpoints.
    /// Each store page asks for exactly the items still missing, so the
    /// position stays exact; a bounded number of pages is read per call and
    /// the caller continues with the cursor (a short page with `hasMore`).
    async fn scan_portal_deliveries(
        &self,
        app: &AppPrincipal,
        allowed: &[Id],
        filter: &DeliveryFilter,
        mut page: PageRequest,
    ) -> ServiceResult<Page<Delivery>> {
        const MAX_STORE_PAGES: usize = 20;
        let limit = page.limit;
        let mut items = Vec::with_capacity(limit);
        for _ in 0..MAX_STORE_PAGES {
            page.limit = limit - items.len();
            let found = self.store.list_deliveries(&app.application_id, filter, &page).await?;
            items.extend(found.items.into_iter().filter(|d| allowed.contains(&d.endpoint_id)));
            match found.next {
                None => return Ok(Page { items, next: None }),
                Some(next) if items.len() >= limit => return Ok(Page { items, next: Some(next) }),
                Some(next) => page.after = Some(next),
            }
        }
        Ok(Page { items, next: page.after })
    }

    /// The caller's delivery; one whose endpoint a portal session was not
    /// issued for is not found.
    async fn find_delivery(&self, app: &AppPrincipal, id: &str) -> ServiceResult<Delivery> {
        let id = Id::parse(IdKind::Delivery, id).ok_or(ServiceError::NotFound("delivery"))?;
        self.store
            .get_delivery(&app.application_id, &id)
            .await?
            .filter(|d| app.allows_endpoint(&d.endpoint_id))
            .ok_or(ServiceError::NotFound("delivery"))
    }

    pub async fn get_delivery(&self, who: &Principal, id: &str) -> ServiceResult<DeliveryWithAttempts> {
        let app = who.require_scoped(Scope::EventsRead)?;
        let delivery = self.find_delivery(app, id).await?;
        let attempts = self.store.list_attempts(&app.application_id, &delivery.id).await?;
        Ok(DeliveryWithAttempts { delivery, attempts })
    }

    pub async fn delete_delivery(&self, who: &Principal, id: &str) -> ServiceResult<()> {
        let app = who.require(Scope::EventsWrite)?;
        let delivery = self.find_delivery(app, id).await?;
        if !self.store.delete_delivery(&app.application_id, &delivery.id).await? {
            return Err(ServiceError::NotFound("delivery"));
        }
        Ok(())
    }

    /// A new attempt chain for a finished delivery (`retryOf` points back).
    pub async fn retry_delivery(&self, who: &Principal, id: &str) -> ServiceResult<Delivery> {
        let app = who.require_scoped(Scope::EventsWrite)?;
        let original = self.find_delivery(app, id).await?;
        if !original.status.is_final() {
            return Err(ServiceError::Conflict(format!(
                "delivery is {}; only succeeded or failed deliveries can be retried",
                original.status.as_str()
            )));
        }
        if let Some(newer) = &original.retried_by {
            return Err(ServiceError::Conflict(format!("delivery was already retried as {newer}")));
        }
        self.retry_one(&original).await
    }

    async fn retry_one(&self, original: &Delivery) -> ServiceResult<Delivery> {
        let app_id = &original.application_id;
        let event = self
            .store
            .get_event(app_id, &original.event_id)
            .await?
            .ok_or(ServiceError::Conflict("the event of this delivery is no longer retained".into()))?;
        let endpoint = self
            .store
            .get_endpoint(app_id, &original.endpoint_id)
            .await?
            .ok_or(ServiceError::Conflict("the endpoint of this delivery was deleted".into()))?;
        let retry = self.new_delivery(&event, &endpoint, Some(original));
        // The message goes first, the rows after: a retry that exists always
        // has its message, and a message whose rows were never written (the
        // write failed, or a concurrent retry won) finds no delivery and is
        // dropped by the dispatcher once the id is older than
        // [`super::dispatcher::UNWRITTEN_DELIVERY_GRACE`]. Written the other way round, a repeat
        // could not tell a retry whose send failed from one being sent
        // right now, and re-sending it would POST it twice.
        let ordered = endpoint.controls.ordered.then(|| endpoint.id.clone()).into_iter().collect();
        self.enqueue_before_writing(std::slice::from_ref(&retry), &ordered).await?;
        match self.store.insert_retry(original, &retry).await {
            Err(StoreError::Conflict(_)) => return Err(ServiceError::Conflict("delivery was already retried".into())),
            other => other?,
        }
        Ok(retry)
    }

    /// Re-sends every failed, not yet retried delivery that matches.
    /// A portal session must name one of its endpoints.
    pub async fn bulk_retry(&self, who: &Principal, request: BulkRetry) -> ServiceResult<BulkRetryResult> {
        let app = who.require_scoped(Scope::EventsWrite)?;
        if app.is_portal() && request.endpoint_id.is_none() {
            return Err(ServiceError::field("endpointId", "is required for a portal session"));
        }
        if let (Some(from), Some(to)) = (request.from, request.to)
            && from > to
        {
            return Err(ServiceError::field("from", "must not be after to"));
        }
        let endpoint_id = match &request.endpoint_id {
            None => None,
            Some(raw) => {
                let id = Id::parse(IdKind::Endpoint, raw)
                    .ok_or_else(|| ServiceError::field("endpointId", "must be an endpoint id (ep_…)"))?;
                if !app.allows_endpoint(&id) {
                    return Err(ServiceError::NotFound("endpoint"));
                }
                self.store.get_endpoint(&app.application_id, &id).await?.ok_or(ServiceError::NotFound("endpoint"))?;
                Some(id)
            }
        };
        let filter = DeliveryFilter {
            status: Some(DeliveryStatus::Failed),
            event_type: request.event_type,
            event_id: None,
            endpoint_id,
            from: request.from,
            to: request.to,
        };
        let mut page = PageRequest::first(MAX_PAGE_LIMIT);
        let mut candidates = Vec::new();
        let mut truncated = false;
        'pages: loop {
            let found = self.store.list_deliveries(&app.application_id, &filter, &page).await?;
            for delivery in found.items {
                if delivery.retried_by.is_some() {
                    continue; // already retried
                }
                if candidates.len() == MAX_BULK_RETRY {
                    truncated = true;
                    break 'pages;
                }
                candidates.push(delivery);
            }
            match found.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        let mut delivery_ids = Vec::with_capacity(candidates.len());
        for original in &candidates {
            match self.retry_one(original).await {
                Ok(retry) => delivery_ids.push(retry.id),
                // Retried concurrently, or its event/endpoint is gone: skip it.
                Err(ServiceError::Conflict(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(BulkRetryResult { retried: delivery_ids.len(), delivery_ids, truncated })
    }
}
