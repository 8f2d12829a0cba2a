use super::{ListPage, ListQuery, Principal, ServiceError, ServiceResult, Skyhook, Violations, validate};
use crate::domain::limits::MAX_SCHEMA_BYTES;
use crate::domain::{EventType, Scope};

#[derive(Debug, Clone, Default)]
pub struct EventTypeInput {
    pub name: String,
    pub description: Option<String>,
    pub schema: Option<serde_json::Value>,
    pub archived: Option<bool>,
}

/// A payload schema must be a JSON Schema object that compiles. Remote `$ref`s
/// are never fetched (the validator is built without network resolution).
fn check_schema(v: &mut Violations, schema: &serde_json::Value) {
    if !schema.is_object() {
        v.add("schema", "must be a JSON Schema object");
        return;
    }
    if serde_json::to_vec(schema).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_SCHEMA_BYTES {
        v.add("schema", format!("must be at most {MAX_SCHEMA_BYTES} bytes"));
        return;
    }
    if let Err(err) = jsonschema::validator_for(schema) {
        v.add("schema", format!("is not a valid JSON Schema: {err}"));
    }
}

/// Checks a payload against an event type's schema, naming each failing path.
pub(crate) fn validate_payload(schema: &serde_json::Value, payload: &serde_json::Value) -> ServiceResult<()> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| ServiceError::Internal(format!("stored schema does not compile: {e}")))?;
    let mut v = Violations::new();
    for error in validator.iter_errors(payload).take(20) {
        let path = error.instance_path.to_string();
        v.add(format!("payload{}", path.replace('/', ".").trim_end_matches('.')), error.to_string());
    }
    v.into_result()
}

impl Skyhook {
    pub async fn create_event_type(&self, who: &Principal, input: EventTypeInput) -> ServiceResult<EventType> {
        let app = who.require(Scope::WebhooksWrite)?;
        let mut v = Violations::new();
        validate::event_type_name(&mut v, "name", &input.name);
        validate::description(&mut v, "description", input.description.as_deref());
        if let Some(schema) = &input.schema {
            check_schema(&mut v, schema);
        }
        v.into_result()?;
        let now = self.clock.now();
        let event_type = EventType {
            application_id: app.application_id.clone(),
            name: input.name,
            description: input.description,
            schema: input.schema,
            archived: input.archived.unwrap_or(false),
            created_at: now,
            updated_at: now,
        };
        match self.store.create_event_type(&event_type).await {
            Err(crate::ports::StoreError::Conflict(_)) => {
                Err(ServiceError::Conflict(format!("event type {} already exists", event_type.name)))
            }
            other => other.map(|_| event_type).map_err(Into::into),
        }
    }

    pub async fn list_event_types(
        &self,
        who: &Principal,
        include_archived: bool,
        query: &ListQuery,
    ) -> ServiceResult<ListPage<EventType>> {
        let app = who.require(Scope::WebhooksRead)?;
        let tenant = app.application_id.as_str();
        let page = self.page_request(query, tenant, "event-types")?;
        let found = self.store.list_event_types(&app.application_id, include_archived, &page).await?;
        Ok(self.list_page(found, tenant, "event-types", |t| t))
    }

    pub async fn get_event_type(&self, who: &Principal, name: &str) -> ServiceResult<EventType> {
        let app = who.require(Scope::WebhooksRead)?;
        self.store.get_event_type(&app.application_id, name).await?.ok_or(ServiceError::NotFound("event type"))
    }

    /// Create-or-replace; `true` in the result when it was created.
    pub async fn put_event_type(
        &self,
        who: &Principal,
        name: &str,
        mut input: EventTypeInput,
    ) -> ServiceResult<(EventType, bool)> {
        let app = who.require(Scope::WebhooksWrite)?;
        if !input.name.is_empty() && input.name != name {
            return Err(ServiceError::field("name", "must match the name in the path (event types cannot be renamed)"));
        }
        input.name = name.to_string();
        let existing = match self.store.get_event_type(&app.application_id, name).await? {
            Some(existing) => existing,
            None => match self.create_event_type(who, input.clone()).await {
                Ok(created) => return Ok((created, true)),
                // Created concurrently by another PUT: replace it like any existing one.
                Err(ServiceError::Conflict(_)) => self
                    .store
                    .get_event_type(&app.application_id, name)
                    .await?
                    .ok_or(ServiceError::NotFound("event type"))?,
                Err(other) => return Err(other),
            },
        };
        let mut v = Violations::new();
        validate::description(&mut v, "description", input.description.as_deref());
        if let Some(schema) = &input.schema {
            check_schema(&mut v, schema);
        }
        v.into_result()?;
        let updated = EventType {
            description: input.description,
            schema: input.schema,
            archived: input.archived.unwrap_or(false),
            updated_at: self.clock.now(),
            ..existing
        };
        if !self.store.update_event_type(&updated).await? {
            return Err(ServiceError::NotFound("event type"));
        }
        Ok((updated, false))
    }

    pub async fn delete_event_type(&self, who: &Principal, name: &str) -> ServiceResult<()> {
        let app = who.require(Scope::WebhooksWrite)?;
        if !self.store.delete_event_type(&app.application_id, name).await? {
            return Err(ServiceError::NotFound("event type"));
        }
        Ok(())
    }
}
