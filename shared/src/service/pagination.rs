//! Opaque, tamper-checked cursors bound to the caller's application and to
//! the list they came from.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{ServiceError, ServiceResult, Skyhook};
use crate::crypto::constant_time_eq;
use crate::domain::limits::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use crate::ports::{Page, PageRequest};

/// `?limit=&cursor=` as the caller sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// `{ "data": [...], "nextCursor": "..."|null, "hasMore": bool }`
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPage<T: Serialize> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(Serialize, Deserialize)]
struct CursorBody {
    /// Tenant (application id, or `admin`).
    t: String,
    /// Which list.
    l: String,
    /// The adapter's position.
    p: String,
}

impl Skyhook {
    /// Validates limit and cursor into the adapter's page request.
    pub(crate) fn page_request(&self, query: &ListQuery, tenant: &str, list: &str) -> ServiceResult<PageRequest> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if limit == 0 || limit > MAX_PAGE_LIMIT {
            return Err(ServiceError::field("limit", format!("must be between 1 and {MAX_PAGE_LIMIT}")));
        }
        let after = match &query.cursor {
            None => None,
            Some(cursor) => Some(self.open_cursor(cursor, tenant, list)?),
        };
        Ok(PageRequest { limit, after })
    }

    pub(crate) fn list_page<T: Serialize, U: Serialize>(
        &self,
        page: Page<T>,
        tenant: &str,
        list: &str,
        map: impl FnMut(T) -> U,
    ) -> ListPage<U> {
        let next_cursor = page.next.map(|position| self.seal_cursor(tenant, list, &position));
        ListPage { has_more: next_cursor.is_some(), next_cursor, data: page.items.into_iter().map(map).collect() }
    }

    fn cursor_mac(&self, body: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.cursor_key).expect("any key length");
        mac.update(body.as_bytes());
        mac.finalize().into_bytes()[..16].to_vec()
    }

    fn seal_cursor(&self, tenant: &str, list: &str, position: &str) -> String {
        let body = serde_json::to_string(&CursorBody { t: tenant.into(), l: list.into(), p: position.into() })
            .expect("serialisable");
        let encoded = URL_SAFE_NO_PAD.encode(body.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(self.cursor_mac(&encoded));
        format!("{encoded}.{tag}")
    }

    fn open_cursor(&self, cursor: &str, tenant: &str, list: &str) -> ServiceResult<String> {
        let invalid = || ServiceError::field("cursor", "is not a cursor returned by this list");
        let (encoded, tag) = cursor.split_once('.').ok_or_else(invalid)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        if !constant_time_eq(&tag, &self.cursor_mac(encoded)) {
            return Err(invalid());
        }
        let body = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| invalid())?;
        let body: CursorBody = serde_json::from_slice(&body).map_err(|_| invalid())?;
        if body.t != tenant || body.l != list {
            return Err(invalid());
        }
        Ok(body.p)
    }
}
