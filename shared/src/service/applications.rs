use super::{ListPage, ListQuery, Principal, ServiceError, ServiceResult, Skyhook, Violations, validate};
use crate::domain::limits::{DEFAULT_RETENTION_DAYS, MAX_RETENTION_DAYS, MIN_RETENTION_DAYS};
use crate::domain::{Application, Id, IdKind};

#[derive(Debug, Clone, Default)]
pub struct CreateApplication {
    pub name: String,
    pub retention_days: Option<u32>,
    pub rate_limit: Option<u32>,
}

/// Fields to change; `rate_limit: Some(None)` removes the limit.
#[derive(Debug, Clone, Default)]
pub struct ApplicationPatch {
    pub name: Option<String>,
    pub retention_days: Option<u32>,
    pub rate_limit: Option<Option<u32>>,
}

fn check(v: &mut Violations, name: Option<&str>, retention_days: Option<u32>, rate_limit: Option<u32>) {
    if let Some(name) = name {
        validate::name(v, "name", name);
    }
    validate::in_range(v, "retentionDays", retention_days, MIN_RETENTION_DAYS, MAX_RETENTION_DAYS);
    validate::in_range(v, "rateLimit", rate_limit, 1, 1_000_000);
}

impl Skyhook {
    pub async fn create_application(&self, who: &Principal, input: CreateApplication) -> ServiceResult<Application> {
        who.require_admin()?;
        let mut v = Violations::new();
        check(&mut v, Some(&input.name), input.retention_days, input.rate_limit);
        v.into_result()?;
        let now = self.clock.now();
        let app = Application {
            id: Id::new(IdKind::Application, now),
            name: input.name.trim().to_string(),
            retention_days: input.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
            rate_limit: input.rate_limit,
            created_at: now,
            updated_at: now,
        };
        self.store.create_application(&app).await?;
        Ok(app)
    }

    pub async fn list_applications(&self, who: &Principal, query: &ListQuery) -> ServiceResult<ListPage<Application>> {
        who.require_admin()?;
        let page = self.page_request(query, "admin", "applications")?;
        let found = self.store.list_applications(&page).await?;
        Ok(self.list_page(found, "admin", "applications", |a| a))
    }

    pub async fn get_application(&self, who: &Principal, id: &str) -> ServiceResult<Application> {
        who.require_admin()?;
        let id = Id::parse(IdKind::Application, id).ok_or(ServiceError::NotFound("application"))?;
        self.application(&id).await
    }

    pub async fn update_application(
        &self,
        who: &Principal,
        id: &str,
        patch: ApplicationPatch,
    ) -> ServiceResult<Application> {
        let mut app = self.get_application(who, id).await?;
        let mut v = Violations::new();
        check(&mut v, patch.name.as_deref(), patch.retention_days, patch.rate_limit.flatten());
        v.into_result()?;
        if let Some(name) = patch.name {
            app.name = name.trim().to_string();
        }
        if let Some(days) = patch.retention_days {
            app.retention_days = days;
        }
        if let Some(limit) = patch.rate_limit {
            app.rate_limit = limit;
        }
        app.updated_at = self.clock.now();
        if !self.store.update_application(&app).await? {
            return Err(ServiceError::NotFound("application"));
        }
        Ok(app)
    }

    pub async fn delete_application(&self, who: &Principal, id: &str) -> ServiceResult<()> {
        let app = self.get_application(who, id).await?;
        if !self.store.delete_application(&app.id).await? {
            return Err(ServiceError::NotFound("application"));
        }
        Ok(())
    }
}
