//! Documented limits (README "Limits"); enforced with 413 / 400.

/// Largest event payload, as serialised JSON.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest request body accepted by the API (payload plus envelope).
pub const MAX_REQUEST_BYTES: usize = MAX_PAYLOAD_BYTES + 16 * 1024;
pub const MAX_HEADERS: usize = 20;
pub const MAX_HEADER_VALUE_CHARS: usize = 4096;
pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_NAME_CHARS: usize = 256;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
pub const MAX_METADATA_ENTRIES: usize = 50;
pub const MAX_EVENT_TYPES_PER_ENDPOINT: usize = 100;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 256;
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Captured response body per attempt.
pub const MAX_RESPONSE_CAPTURE_BYTES: usize = 4 * 1024;
pub const DEFAULT_PAGE_LIMIT: usize = 50;
pub const MAX_PAGE_LIMIT: usize = 250;
pub const DEFAULT_RETENTION_DAYS: u32 = 31;
pub const MIN_RETENTION_DAYS: u32 = 1;
pub const MAX_RETENTION_DAYS: u32 = 90;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub const MAX_MAX_ATTEMPTS: u32 = 20;
pub const DEFAULT_TIMEOUT_SECS: u32 = 15;
pub const MAX_TIMEOUT_SECS: u32 = 30;
/// How long a rotated-out signing secret keeps signing.
pub const SECRET_ROTATION_OVERLAP_HOURS: i64 = 24;
/// A repeated Idempotency-Key inside this window returns the first event.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;
/// An endpoint whose deliveries have all failed for this long is disabled.
pub const AUTO_DISABLE_AFTER_DAYS: i64 = 5;
/// Most failed deliveries re-queued by one bulk retry call.
pub const MAX_BULK_RETRY: usize = 10_000;
/// Highest per-endpoint rate limit, deliveries per second.
pub const MAX_RATE_LIMIT_PER_SEC: u32 = 10_000;
