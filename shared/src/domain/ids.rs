//! Prefixed, sortable identifiers (`app_`, `ep_`, `evt_`, `dlv_`, `att_`, `key_`).

use std::fmt;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    Application,
    ApiKey,
    Endpoint,
    Event,
    Delivery,
    Attempt,
    Replay,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Application => "app",
            IdKind::ApiKey => "key",
            IdKind::Endpoint => "ep",
            IdKind::Event => "evt",
            IdKind::Delivery => "dlv",
            IdKind::Attempt => "att",
            IdKind::Replay => "rpl",
        }
    }
}

/// A prefixed ULID such as `evt_01JD3X...`. Lexical order is creation order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(example = "evt_01JD3X5Q3V1R7N9GZ8W6Y2K4TB")]
pub struct Id(String);

fn monotonic_ulid(at: Timestamp) -> Ulid {
    static LAST: std::sync::Mutex<Option<Ulid>> = std::sync::Mutex::new(None);
    let fresh = Ulid::from_datetime(at.into());
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let ulid = match *last {
        // Same millisecond: one more than the last (a fresh random part
        // could sort before it). Any other time: fresh, even if earlier
        // (tests move their clocks back).
        Some(previous) if previous.timestamp_ms() == fresh.timestamp_ms() => previous.increment().unwrap_or(fresh),
        _ => fresh,
    };
    *last = Some(ulid);
    ulid
}

impl Id {
    /// A fresh id. Ids made by this process in the same millisecond
    /// increase (monotonic ULIDs), so events published one after another
    /// sort, fan out and deliver in publish order even within a millisecond.
    pub fn new(kind: IdKind, at: Timestamp) -> Self {
        Id(format!("{}_{}", kind.prefix(), monotonic_ulid(at)))
    }

    /// A deterministic id: the same inputs give the same id, so a step that is
    /// retried (fan-out after a crash, a redelivered stream record) writes the
    /// same rows again instead of new ones.
    pub fn derived(kind: IdKind, at: Timestamp, parts: &[&str]) -> Self {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        let digest = hasher.finalize();
        let mut random = [0u8; 16];
        random[..10].copy_from_slice(&digest[..10]);
        let random = u128::from_be_bytes(random) >> 48;
        let ms = at.timestamp_millis().max(0) as u64;
        Id(format!("{}_{}", kind.prefix(), Ulid::from_parts(ms, random)))
    }

    /// Parses an id of the given kind; `None` for anything else, so a malformed
    /// id is simply "not found" rather than an error that leaks structure.
    pub fn parse(kind: IdKind, s: &str) -> Option<Self> {
        let rest = s.strip_prefix(kind.prefix())?.strip_prefix('_')?;
        Ulid::from_string(rest).ok()?;
        Some(Id(s.to_string()))
    }

    /// Trusts an id read back from storage.
    pub fn from_stored(s: impl Into<String>) -> Self {
        Id(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the id was made (its ULID's millisecond); `None` for an id that
    /// is not `<prefix>_<ulid>`.
    pub fn created_at(&self) -> Option<Timestamp> {
        let (_, ulid) = self.0.split_once('_')?;
        let ms = i64::try_from(Ulid::from_string(ulid).ok()?.timestamp_ms()).ok()?;
        chrono::DateTime::from_timestamp_millis(ms)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_two_ids_created_in_sequence_then_they_sort_by_time() {
        let t1 = chrono::Utc::now();
        let t2 = t1 + chrono::Duration::milliseconds(5);
        let a = Id::new(IdKind::Event, t1);
        let b = Id::new(IdKind::Event, t2);
        assert!(a < b);
        assert!(a.as_str().starts_with("evt_"));
    }

    #[test]
    fn given_a_foreign_prefix_when_parsed_then_it_is_rejected() {
        let id = Id::new(IdKind::Endpoint, chrono::Utc::now());
        assert!(Id::parse(IdKind::Endpoint, id.as_str()).is_some());
        assert!(Id::parse(IdKind::Event, id.as_str()).is_none());
        assert!(Id::parse(IdKind::Endpoint, "ep_notaulid").is_none());
    }

    #[test]
    fn given_the_same_parts_then_derived_ids_are_equal() {
        let t = chrono::Utc::now();
        let a = Id::derived(IdKind::Delivery, t, &["evt_1", "ep_1"]);
        let b = Id::derived(IdKind::Delivery, t, &["evt_1", "ep_1"]);
        let c = Id::derived(IdKind::Delivery, t, &["evt_1", "ep_2"]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(Id::parse(IdKind::Delivery, a.as_str()).is_some());
    }
}
