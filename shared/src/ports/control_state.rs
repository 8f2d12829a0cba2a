//! State the delivery controls share between dispatchers (every Lambda
//! instance, every `skyhook serve` worker): versioned records (circuit
//! breakers, replay jobs) and windowed counters (rate limits, breaker
//! windows). Small and generic on purpose: the rules live in the service
//! layer; an adapter only has to keep these writes atomic.
//!
//! Contract shared by every adapter (checked by the conformance suite):
//! - Everything is scoped by application id, and deleted with the application.
//! - Reads skip records and counters whose `expires_at` has passed.

use async_trait::async_trait;

use super::store::{Page, PageRequest, StoreResult};
use crate::domain::{Id, Timestamp};

/// One record: an opaque JSON `body` the service layer owns, under
/// (application, kind, key), with a version for optimistic concurrency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    pub kind: String,
    pub key: String,
    pub body: String,
    /// 1 after the first write, +1 per write.
    pub version: u64,
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait ControlStateStore: Send + Sync {
    async fn get_record(&self, app_id: &Id, kind: &str, key: &str) -> StoreResult<Option<StateRecord>>;

    /// Writes `body` (version `expected_version + 1`) if the stored version is
    /// still `expected_version`; `expected_version == 0` means "must not exist
    /// yet" (an expired record counts as not existing). `Ok(false)`, writing
    /// nothing, when the condition fails.
    async fn put_record(
        &self,
        app_id: &Id,
        kind: &str,
        key: &str,
        body: &str,
        expected_version: u64,
        expires_at: Timestamp,
    ) -> StoreResult<bool>;

    /// Records of one kind whose key starts with `key_prefix`, greatest key
    /// first (keys end in ULIDs, so newest first); `Page::next` as for every list.
    async fn list_records(
        &self,
        app_id: &Id,
        kind: &str,
        key_prefix: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<StateRecord>>;

    /// The pair of counters under (application, key); `[0, 0]` when there
    /// is none or it has expired. Reads only.
    async fn get_counters(&self, app_id: &Id, key: &str) -> StoreResult<[u64; 2]>;

    /// Atomically adds `deltas` to the pair of counters under (application,
    /// key), creating them at zero; returns the new values. With `limit`,
    /// refuses (returns `None`, changes nothing) when the first counter would
    /// exceed it. `expires_at` is set when the counters are created.
    async fn add_to_counters(
        &self,
        app_id: &Id,
        key: &str,
        deltas: [u64; 2],
        limit: Option<u64>,
        expires_at: Timestamp,
    ) -> StoreResult<Option<[u64; 2]>>;
}
