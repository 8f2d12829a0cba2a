use serde::Serialize;

use super::{ListPage, ListQuery, Principal, ServiceError, ServiceResult, Skyhook, Violations, validate};
use crate::crypto::{random_token, sha256_hex};
use crate::domain::{ApiKey, Id, IdKind, Scope};

#[derive(Debug, Clone, Default)]
pub struct CreateApiKey {
    pub name: String,
    /// All scopes when absent.
    pub scopes: Option<Vec<Scope>>,
}

/// The only response that ever carries the key itself.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    pub key: String,
}

const KEY_PREFIX: &str = "sk_";

impl Skyhook {
    pub async fn create_api_key(
        &self,
        who: &Principal,
        app_id: &str,
        input: CreateApiKey,
    ) -> ServiceResult<CreatedApiKey> {
        let app = self.get_application(who, app_id).await?;
        let mut v = Violations::new();
        validate::name(&mut v, "name", &input.name);
        if let Some(scopes) = &input.scopes
            && scopes.is_empty()
        {
            v.add("scopes", "must name at least one scope, or be omitted for all");
        }
        v.into_result()?;
        let mut scopes = input.scopes.unwrap_or_else(|| Scope::ALL.to_vec());
        scopes.sort_by_key(|s| s.as_str());
        scopes.dedup();
        let key = format!("{KEY_PREFIX}{}", random_token(32));
        let now = self.clock.now();
        let api_key = ApiKey {
            id: Id::new(IdKind::ApiKey, now),
            application_id: app.id,
            name: input.name.trim().to_string(),
            prefix: key.chars().take(8).collect(),
            last4: key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect(),
            key_hash: sha256_hex(key.as_bytes()),
            scopes,
            created_at: now,
            revoked_at: None,
            last_used_at: None,
        };
        self.store.create_api_key(&api_key).await?;
        Ok(CreatedApiKey { api_key, key })
    }

    pub async fn list_api_keys(
        &self,
        who: &Principal,
        app_id: &str,
        query: &ListQuery,
    ) -> ServiceResult<ListPage<ApiKey>> {
        let app = self.get_application(who, app_id).await?;
        let page = self.page_request(query, app.id.as_str(), "api-keys")?;
        let found = self.store.list_api_keys(&app.id, &page).await?;
        Ok(self.list_page(found, app.id.as_str(), "api-keys", |k| k))
    }

    pub async fn revoke_api_key(&self, who: &Principal, app_id: &str, key_id: &str) -> ServiceResult<()> {
        let app = self.get_application(who, app_id).await?;
        let key_id = Id::parse(IdKind::ApiKey, key_id).ok_or(ServiceError::NotFound("api key"))?;
        if !self.store.revoke_api_key(&app.id, &key_id, self.clock.now()).await? {
            return Err(ServiceError::NotFound("api key"));
        }
        Ok(())
    }
}
