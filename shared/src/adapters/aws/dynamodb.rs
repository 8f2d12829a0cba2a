//! The `Store` port on DynamoDB: one table, string keys `pk` / `sk`,
//! PAY_PER_REQUEST, TTL on `expiresAt`, a `KEYS_ONLY` stream for fan-out.
//!
//! # Table
//!
//! | attribute | type | role |
//! |---|---|---|
//! | `pk`, `sk` | S | table key (HASH, RANGE) |
//! | `ownerPk`, `ownerSk` | S | GSI [`INDEX_BY_OWNER`] (HASH, RANGE), projection `ALL` |
//! | `appPk`, `appSk` | S | GSI [`INDEX_BY_APP`] (HASH, RANGE), projection `INCLUDE` [`BY_APP_PROJECTED`] |
//! | `epPk`, `epSk` | S | GSI [`INDEX_BY_ENDPOINT`] (HASH, RANGE), projection `INCLUDE` [`BY_ENDPOINT_PROJECTED`] |
//! | `expiresAt` | N | TTL attribute, whole epoch seconds (`expiresNs` holds the sub-second nanoseconds) |
//!
//! Stream: [`STREAM_VIEW_TYPE`] `KEYS_ONLY` (the fan-out function reads the
//! event itself). It carries every item's writes; the event source mapping
//! should filter on `eventName = INSERT` and `Keys.pk.S` prefix `EVT#`
//! ([`is_event_key`]) so only new events invoke fan-out.
//!
//! # Items
//!
//! `<ts>` below is a timestamp as 20 zero-padded digits (nanoseconds since the
//! epoch, offset by 2^63 so that the string order is the time order), and
//! `<shard>` is `0..LIST_SHARDS` derived from an id (FNV-1a), so that one
//! application's writes spread over [`LIST_SHARDS`] index partitions instead
//! of capping at one partition's ~1,000 writes/s.
//!
//! | item | `pk` | `sk` | GSI keys |
//! |---|---|---|---|
//! | application | `APP#<appId>` | `APP` | owner: `APPS` / `<appId>` |
//! | endpoint | `APP#<appId>` | `EP#<endpointId>` | — (listed from the app's partition) |
//! | event type | `APP#<appId>` | `ETYPE#<name>` | owner: `ETYPES#<appId>` / `<createdAt ts>#<name>` |
//! | API key | `KEY#<keyId>` | `KEY` | owner: `KEYS#<appId>` / `<keyId>` |
//! | API key by hash | `KEYHASH#<sha256>` | `KEYHASH` | — (a full copy of the key, so auth is one `GetItem`) |
//! | event | `EVT#<eventId>` | `EVT#<appId>` | app: `APPEVT#<appId>#<shard(eventId)>` / `<createdAt ts>#<eventId>` |
//! | idempotency key | `IDEM#<appId>#<key>` | `IDEM` | — |
//! | delivery | `DLV#<deliveryId>` | `DLV#<appId>` | app: `APPDLV#<appId>#<shard(eventId)>` / `<createdAt ts>#<deliveryId>`; endpoint: `EPDLV#<appId>#<endpointId>#<shard(deliveryId)>` / `<createdAt ts>#<deliveryId>` |
//! | attempt | `DLV#<deliveryId>` | `ATT#<number, 10 digits>` | endpoint: `EPATT#<appId>#<endpointId>#<shard(deliveryId)>` / `<startedAt ts>#<attemptId>` |
//! | control record | `STATE#<appId>` | `REC#<kind>#<key>` | — (listed from its partition) |
//! | control counters | `COUNTER#<appId>#<shard(key)>` | `CTR#<key>` | — |
//!
//! The application id is part of every key of tenant data, so a lookup with
//! another tenant's id simply misses (and a conditional write on it fails).
//! The event's `sk` carries the application id so that a stream record's
//! keys are enough to `get_event(app, id)` ([`event_key_from_stream_keys`]).
//! A delivery's app-index shard is derived from its *event* id, so all
//! deliveries of one event sit in one shard (the `eventId` filter reads one
//! partition). Attempts live in their delivery's partition: `list_attempts`
//! is one `Query`.
//!
//! Every event, delivery, attempt, idempotency, control record and control
//! counters item carries `expiresAt`; every read drops items whose expiry has
//! passed (coarsely with a `FilterExpression` on `expiresAt`, exactly on
//! `expiresAt`/`expiresNs` in code), because TTL deletion lags by up to days
//! (and moto never deletes).
//!
//! Control state ([`ControlStateStore`]) keeps to small items outside the
//! application's own partition (which every delivery reads its endpoint
//! from): an application's records share one partition (`list_records` is
//! one `Query` on `REC#<kind>#<key prefix>`, greatest key first); its
//! counters, written on every attempt, spread over [`LIST_SHARDS`]
//! partitions by key. A record is `kind`, `key`, `body` (S), `version` (N);
//! counters are `c0`, `c1` (N). Writes are single conditional requests whose
//! conditions check the exact expiry (`expiresAt`/`expiresNs` against now),
//! so an expired item counts as absent before TTL removes it:
//!
//! - `put_record`, expected version 0: `PutItem` if
//!   `attribute_not_exists(pk) OR <expired>`; otherwise `PutItem` if
//!   `version = :expected AND kind = :kind AND <live>` (a failed condition
//!   is `Ok(false)`).
//! - `add_to_counters`: `UpdateItem` `ADD c0 :d0, c1 :d1 SET expiresAt =
//!   if_not_exists(expiresAt, :exp), expiresNs = if_not_exists(expiresNs,
//!   :expNs)` if `attribute_not_exists(pk) OR (<live> AND c0 <= :limit - :d0)`,
//!   `ALL_NEW`, with `ReturnValuesOnConditionCheckFailure = ALL_OLD`: a
//!   failure on a live item is the limit (`None`); on an expired one a second
//!   `UpdateItem` `SET c0 = :d0, c1 = :d1, expiresAt = :exp, expiresNs =
//!   :expNs` if `attribute_exists(pk) AND <expired>` restarts the window (a
//!   race between the two is retried).
//!
//! where `<live>` is `(expiresAt > :s OR (expiresAt = :s AND expiresNs > :ns))`
//! for now = `:s` seconds + `:ns` nanoseconds, and `<expired>` its negation.
//!
//! # Reads
//!
//! - Lists are newest first by the index sort key: applications, API keys and
//!   endpoints by id, event types by (createdAt, name), events and deliveries
//!   by (createdAt, id). Sharded lists query every shard and merge them; the
//!   page position (`Page::next`) is the sort key of the last item returned,
//!   base64url-encoded — the same bound applies to every shard, so no
//!   per-shard state has to travel in the cursor.
//! - `from` / `to` (and the cursor) are key conditions on the time-ordered
//!   sort keys; `eventType`, `eventId`, `endpointId`, `isActive`, endpoint
//!   event types, archived and the coarse expiry are `FilterExpression`s, and
//!   every list loops over pages until it has `limit + 1` matches or the
//!   index is exhausted (DynamoDB's `Limit` applies before the filter).
//! - The event and delivery indexes only project what the filters need, so
//!   a page is completed with one `BatchGetItem` of the base items.
//! - An event's `status` is never stored: the item holds the counters
//!   (`fannedOut`, `deliveryCount`, `succeededCount`, `failedCount`; absent =
//!   false / 0) and the status is `Event::derive_status()` on read. A
//!   `status` filter on events, and on deliveries listed by application or
//!   event, is therefore applied in code after the `BatchGetItem`
//!   (the per-endpoint index projects `status`, so there it is a
//!   `FilterExpression`).
//! - The `eventId` filter on deliveries reads the event's shard from an hour
//!   before the event id's time on: a delivery is created after its event.
//! - `events_awaiting_fanout` is a `Scan` with a filter: on AWS the table's
//!   stream drives fan-out (and retries until it succeeds), so this is only
//!   an operator's recovery sweep and must not cost anything on the publish
//!   path. Its cost grows with the table: run it rarely. (A sparse outbox
//!   index would cost two more writes per event.)
//!
//! # Writes and their cost
//!
//! Write units for items up to 1 KB (an item over 1 KB costs one unit per KB,
//! an update is billed on the larger of the old and new item, a
//! transactional write costs double, and each index entry written costs one
//! more; index entries are small):
//!
//! | operation | units |
//! |---|---|
//! | publish, no idempotency key | 1 (event, size-billed) + 1 (app index) |
//! | publish with an idempotency key | 2 (event, transactional) + 2 (idempotency item) + 1 (app index) |
//! | insert a delivery | 1 + 2 (app and endpoint index) |
//! | mark fanned out | 1 (event update, size-billed) |
//! | record a non-final attempt | 2 (delivery) + 2 (attempt) + 1 (attempt's endpoint index entry) + 1 when the status changes |
//! | record a final attempt | as above + 2 (event counters) |
//! | manual retry | 2 + 2 + 2 (original, retry, event) + 2 (retry's index entries) |
//! | delete a delivery | 2 + 2 (delivery, event, transactional) + 2 (its index entries) + 2 per attempt (item, index entry) |
//! | create / revoke an API key | 2 + 2 (key and its hash copy, transactional) |
//! | record an API key's last use (at most once a minute per key and process) | 1 + 1 (key and its hash copy, plain updates) |
//! | put a control record (also when refused) | 1 |
//! | add to counters (also when refused) | 1; 2 when an expired window restarts |
//!
//! Reads: `get_record` and `get_counters` are one strongly consistent
//! `GetItem` each (1 read unit up to 4 KB); `list_records` one strongly consistent `Query` page (1 read
//! unit per 4 KB of records read, expired ones included).
//!
//! A delivery on the happy path (fan-out 1, first attempt succeeds, event
//! under 1 KB) costs about 14 write units in all. What the port asks for
//! drives most of it: the attempt record (one transaction of three items)
//! and the three index entries per delivery.
//!
//! Payloads are stored as their JSON text (`payload`, S) below
//! [`DEFLATE_PAYLOAD_FROM`] bytes, and deflated (`payloadDeflated`, B) from
//! there on when that is smaller; reads take either. Every counter update
//! of an event (fan-out, each final delivery) is billed on the size of the
//! whole event item, payload included, so a 1 KiB JSON payload that
//! deflates to ~0.5 KB keeps the event item, and each of those updates, at
//! one write unit instead of two.
//!
//! # Consistency
//!
//! - Uniqueness and idempotency are conditional writes
//!   (`attribute_not_exists(pk)`); where two items must agree a
//!   `TransactWriteItems` writes both: API key + hash copy; event +
//!   idempotency item (conditional on the key being unused or older than the
//!   window); record_attempt (delivery update conditional on `attemptCount`
//!   and the status read before, attempt put, counter `ADD` on the event);
//!   manual retry; delete_delivery. Contended transactions
//!   (`TransactionConflict`) are retried a few times.
//! - Reads of single items and base-table queries are strongly consistent;
//!   index queries are eventually consistent (an item written a moment ago
//!   may be missing from a list for a few milliseconds on AWS).
//! - `delete_application` deletes what the app's partition and indexes list
//!   (endpoints, event types, keys, events, idempotency items, deliveries,
//!   attempts), then the application; an item written concurrently by an
//!   index lagging behind may survive it (expiring items then go by TTL).
//!   Control records and counters go with it (their partitions are queried).
//!
//! Errors: a failed condition is `Conflict`, throttling, timeouts, service
//! and network errors are `Unavailable`, an item that does not decode is
//! `Corrupt` (never a panic).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, DeleteRequest, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification, TransactWriteItem,
    Update, WriteRequest,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;

use crate::domain::controls::{controls_from_stored, controls_to_stored};
use crate::domain::delivery::made_by_replay;
use crate::domain::{
    ApiKey, Application, Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, Event, EventType, Id, IdKind,
    PayloadFormat, ResponseStatus, Scope, Timestamp,
};
use crate::ports::Clock;
use crate::ports::control_state::{ControlStateStore, StateRecord};
use crate::ports::store::{
    ApiKeyStore, ApplicationStore, AttemptRecord, DeliveryFilter, DeliveryStore, EndpointFilter, EndpointStats,
    EndpointStore, EventFilter, EventStore, EventTypeStore, InsertEvent, Page, PageRequest, StatsBucket, Store,
    StoreError, StoreResult,
};

// ---------------------------------------------------------------------------
// Table design (what template.yaml declares)

/// Table partition key (S).
pub const PK: &str = "pk";
/// Table sort key (S).
pub const SK: &str = "sk";
/// TTL attribute: whole epoch seconds (N) on every event, delivery, attempt,
/// idempotency, control record and control counters item.
pub const TTL_ATTRIBUTE: &str = "expiresAt";
/// Sub-second nanoseconds of `expiresAt` (N), for exact expiry checks.
pub const EXPIRES_NS_ATTRIBUTE: &str = "expiresNs";

/// GSI over the low-volume configuration items (applications, API keys,
/// event types), projection `ALL`.
pub const INDEX_BY_OWNER: &str = "byOwner";
pub const OWNER_PK: &str = "ownerPk";
pub const OWNER_SK: &str = "ownerSk";

/// GSI listing an application's events and deliveries (sharded partition
/// keys), projection `INCLUDE` [`BY_APP_PROJECTED`].
pub const INDEX_BY_APP: &str = "byApp";
pub const APP_PK: &str = "appPk";
pub const APP_SK: &str = "appSk";
/// Non-key attributes projected into [`INDEX_BY_APP`] (all immutable).
pub const BY_APP_PROJECTED: [&str; 6] =
    ["eventType", "eventId", "endpointId", TTL_ATTRIBUTE, EXPIRES_NS_ATTRIBUTE, "idempotencyKey"];

/// GSI listing an endpoint's deliveries and attempts (sharded partition
/// keys), projection `INCLUDE` [`BY_ENDPOINT_PROJECTED`].
pub const INDEX_BY_ENDPOINT: &str = "byEndpoint";
pub const EP_PK: &str = "epPk";
pub const EP_SK: &str = "epSk";
/// Non-key attributes projected into [`INDEX_BY_ENDPOINT`]: the delivery
/// filters and what `endpoint_stats` counts, so stats never read base items.
pub const BY_ENDPOINT_PROJECTED: [&str; 6] =
    ["eventType", "status", TTL_ATTRIBUTE, EXPIRES_NS_ATTRIBUTE, "durationMs", "outcome"];

/// The stream the fan-out function consumes: keys only (see
/// [`event_key_from_stream_keys`]).
pub const STREAM_VIEW_TYPE: &str = "KEYS_ONLY";

/// Index partitions per application (events, deliveries) and per endpoint.
/// Part of the data format: changing it hides items written before.
pub const LIST_SHARDS: u32 = 8;

/// `pk` prefix of event items (and only of them).
pub const EVENT_PK_PREFIX: &str = "EVT#";
/// `sk` prefix of event items; the application id follows.
pub const EVENT_SK_PREFIX: &str = "EVT#";

// Item attributes (besides the keys above).
mod attr {
    pub const NAME: &str = "name";
    pub const RETENTION_DAYS: &str = "retentionDays";
    pub const RATE_LIMIT: &str = "rateLimit";
    pub const CREATED_AT: &str = "createdAt";
    pub const UPDATED_AT: &str = "updatedAt";
    pub const KEY_ID: &str = "keyId";
    pub const APP_ID: &str = "appId";
    pub const PREFIX: &str = "prefix";
    pub const LAST4: &str = "last4";
    pub const KEY_HASH: &str = "keyHash";
    pub const SCOPES: &str = "scopes";
    pub const REVOKED_AT: &str = "revokedAt";
    pub const LAST_USED_AT: &str = "lastUsedAt";
    pub const DESCRIPTION: &str = "description";
    pub const SCHEMA: &str = "schema";
    pub const ARCHIVED: &str = "archived";
    pub const URL: &str = "url";
    pub const EVENT_TYPES: &str = "eventTypes";
    pub const HEADERS: &str = "headers";
    pub const MAX_ATTEMPTS: &str = "maxAttempts";
    pub const TIMEOUT_SECS: &str = "timeoutSecs";
    pub const PAYLOAD_FORMAT: &str = "payloadFormat";
    pub const IS_ACTIVE: &str = "isActive";
    pub const DISABLED_REASON: &str = "disabledReason";
    pub const METADATA: &str = "metadata";
    pub const SECRET: &str = "secret";
    pub const SECRET_LAST4: &str = "secretLast4";
    pub const PREVIOUS_SECRET: &str = "previousSecret";
    pub const PREVIOUS_SECRET_EXPIRES_AT: &str = "previousSecretExpiresAt";
    pub const FAILING_SINCE: &str = "failingSince";
    pub const EVENT_TYPE: &str = "eventType";
    pub const PAYLOAD: &str = "payload";
    /// The payload's JSON text, deflated (B); instead of [`PAYLOAD`].
    pub const PAYLOAD_DEFLATED: &str = "payloadDeflated";
    pub const IDEMPOTENCY_KEY: &str = "idempotencyKey";
    pub const REQUEST_HASH: &str = "requestHash";
    pub const TARGET_ENDPOINT_ID: &str = "targetEndpointId";
    pub const FANNED_OUT: &str = "fannedOut";
    pub const DELIVERY_COUNT: &str = "deliveryCount";
    pub const SUCCEEDED_COUNT: &str = "succeededCount";
    pub const FAILED_COUNT: &str = "failedCount";
    pub const EVENT_ID: &str = "eventId";
    pub const ENDPOINT_ID: &str = "endpointId";
    pub const STATUS: &str = "status";
    pub const ATTEMPT_COUNT: &str = "attemptCount";
    pub const RESPONSE_STATUS: &str = "responseStatus";
    pub const RESPONSE_BODY: &str = "responseBody";
    pub const ERROR_MESSAGE: &str = "errorMessage";
    pub const TIMESTAMP_SENT: &str = "timestampSent";
    pub const NEXT_ATTEMPT_AT: &str = "nextAttemptAt";
    pub const RETRY_OF: &str = "retryOf";
    pub const RETRIED_BY: &str = "retriedBy";
    pub const DELIVERED_AT: &str = "deliveredAt";
    pub const ATTEMPT_ID: &str = "attemptId";
    pub const STARTED_AT: &str = "startedAt";
    pub const DURATION_MS: &str = "durationMs";
    pub const OUTCOME: &str = "outcome";
    pub const RESPONSE: &str = "response";
    pub const ERROR: &str = "error";
    pub const NEXT_DELAY_SECS: &str = "nextDelaySecs";
    /// An endpoint's delivery controls and signing keys, one JSON document
    /// (`controls_to_stored`); absent = defaults.
    pub const CONTROLS: &str = "controls";
    pub const KIND: &str = "kind";
    pub const KEY: &str = "key";
    pub const BODY: &str = "body";
    pub const VERSION: &str = "version";
    pub const C0: &str = "c0";
    pub const C1: &str = "c1";
}

const APP_ITEM_SK: &str = "APP";
const KEY_ITEM_SK: &str = "KEY";
const HASH_ITEM_SK: &str = "KEYHASH";
const IDEM_ITEM_SK: &str = "IDEM";
const APPS_OWNER_PK: &str = "APPS";
const DELIVERY_SK_PREFIX: &str = "DLV#";
const ATTEMPT_SK_PREFIX: &str = "ATT#";
const ENDPOINT_SK_PREFIX: &str = "EP#";
const EVENT_TYPE_SK_PREFIX: &str = "ETYPE#";
const RECORD_SK_PREFIX: &str = "REC#";
const COUNTER_SK_PREFIX: &str = "CTR#";

const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_HOUR: i64 = 3_600 * NANOS_PER_SEC;
/// How far before an event's id time its deliveries are looked for.
const EVENT_DELIVERY_MARGIN_NANOS: i64 = NANOS_PER_HOUR;
/// Attempts at a transaction that lost a race (`TransactionConflict`) or
/// whose read-then-write condition moved.
const TX_RETRIES: usize = 6;
const BATCH_GET_MAX: usize = 100;
const BATCH_WRITE_MAX: usize = 25;
const CONCURRENT_PUTS: usize = 16;
const MAX_QUERY_PAGE: usize = 1_000;

fn app_pk(app: &str) -> String {
    format!("APP#{app}")
}
fn endpoint_sk(id: &str) -> String {
    format!("{ENDPOINT_SK_PREFIX}{id}")
}
fn event_type_sk(name: &str) -> String {
    format!("{EVENT_TYPE_SK_PREFIX}{name}")
}
fn key_pk(id: &str) -> String {
    format!("KEY#{id}")
}
fn hash_pk(hash: &str) -> String {
    format!("KEYHASH#{hash}")
}
fn event_pk(id: &str) -> String {
    format!("{EVENT_PK_PREFIX}{id}")
}
fn event_sk(app: &str) -> String {
    format!("{EVENT_SK_PREFIX}{app}")
}
fn idem_pk(app: &str, key: &str) -> String {
    format!("IDEM#{app}#{key}")
}
fn delivery_pk(id: &str) -> String {
    format!("DLV#{id}")
}
fn delivery_sk(app: &str) -> String {
    format!("{DELIVERY_SK_PREFIX}{app}")
}
fn attempt_sk(number: u32) -> String {
    format!("{ATTEMPT_SK_PREFIX}{number:010}")
}
fn keys_owner_pk(app: &str) -> String {
    format!("KEYS#{app}")
}
fn event_types_owner_pk(app: &str) -> String {
    format!("ETYPES#{app}")
}
fn app_events_pk(app: &str, shard: u32) -> String {
    format!("APPEVT#{app}#{shard}")
}
fn app_deliveries_pk(app: &str, shard: u32) -> String {
    format!("APPDLV#{app}#{shard}")
}
fn endpoint_deliveries_pk(app: &str, endpoint: &str, shard: u32) -> String {
    format!("EPDLV#{app}#{endpoint}#{shard}")
}
fn endpoint_attempts_pk(app: &str, endpoint: &str, shard: u32) -> String {
    format!("EPATT#{app}#{endpoint}#{shard}")
}
fn state_pk(app: &str) -> String {
    format!("STATE#{app}")
}
fn record_sk(kind: &str, key: &str) -> String {
    format!("{RECORD_SK_PREFIX}{kind}#{key}")
}
fn counter_pk(app: &str, shard: u32) -> String {
    format!("COUNTER#{app}#{shard}")
}
fn counter_sk(key: &str) -> String {
    format!("{COUNTER_SK_PREFIX}{key}")
}

/// The index shard of an id (FNV-1a 32).
pub fn shard_of(id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % LIST_SHARDS
}

/// `true` for the `pk` of an event item (the only items the fan-out function
/// cares about; with `KEYS_ONLY` the stream also carries every other item).
pub fn is_event_key(pk: &str) -> bool {
    pk.starts_with(EVENT_PK_PREFIX)
}

/// The (application id, event id) of a stream record whose keys are an
/// event item's: `pk = EVT#<eventId>`, `sk = EVT#<appId>`. `None` for any
/// other item.
pub fn event_key_from_stream_keys(keys: &HashMap<String, String>) -> Option<(Id, Id)> {
    let event = keys.get(PK)?.strip_prefix(EVENT_PK_PREFIX)?;
    let app = keys.get(SK)?.strip_prefix(EVENT_SK_PREFIX)?;
    Some((Id::parse(IdKind::Application, app)?, Id::parse(IdKind::Event, event)?))
}

// ---------------------------------------------------------------------------
// The store

/// The DynamoDB store. Cheap to clone.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore").field("table", &self.table).finish_non_exhaustive()
    }
}

impl DynamoStore {
    pub fn new(client: Client, table_name: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        let table: String = table_name.into();
        DynamoStore { client, table: table.into(), clock }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Creates the table exactly as template.yaml declares it (keys, the
    /// three GSIs, PAY_PER_REQUEST, a KEYS_ONLY stream) and turns TTL on
    /// `expiresAt` on. An existing table is left as it is (TTL is still
    /// switched on). Waits until the table is active.
    pub async fn create_table(client: &Client, table_name: &str) -> Result<(), StoreError> {
        let string_attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_err)
        };
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(build_err)
        };
        let index =
            |name: &str, pk: &str, sk: &str, projection: Projection| -> Result<GlobalSecondaryIndex, StoreError> {
                GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .key_schema(key(pk, KeyType::Hash)?)
                    .key_schema(key(sk, KeyType::Range)?)
                    .projection(projection)
                    .build()
                    .map_err(build_err)
            };
        let include = |attrs: &[&str]| {
            let mut p = Projection::builder().projection_type(ProjectionType::Include);
            for a in attrs {
                p = p.non_key_attributes(*a);
            }
            p.build()
        };
        let definitions = [PK, SK, OWNER_PK, OWNER_SK, APP_PK, APP_SK, EP_PK, EP_SK]
            .into_iter()
            .map(string_attr)
            .collect::<Result<Vec<_>, _>>()?;
        let indexes = vec![
            index(
                INDEX_BY_OWNER,
                OWNER_PK,
                OWNER_SK,
                Projection::builder().projection_type(ProjectionType::All).build(),
            )?,
            index(INDEX_BY_APP, APP_PK, APP_SK, include(&BY_APP_PROJECTED))?,
            index(INDEX_BY_ENDPOINT, EP_PK, EP_SK, include(&BY_ENDPOINT_PROJECTED))?,
        ];
        let stream = StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::from(STREAM_VIEW_TYPE))
            .build()
            .map_err(build_err)?;
        let created = client
            .create_table()
            .table_name(table_name)
            .set_attribute_definitions(Some(definitions))
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .set_global_secondary_indexes(Some(indexes))
            .stream_specification(stream)
            .send()
            .await;
        if let Err(e) = created
            && e.as_service_error().and_then(|s| s.code()) != Some("ResourceInUseException")
        {
            return Err(sdk_err("CreateTable", e));
        }
        wait_until_active(client, table_name).await?;
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(build_err)?;
        let updated = client.update_time_to_live().table_name(table_name).time_to_live_specification(ttl).send().await;
        if let Err(e) = updated {
            // "TimeToLive is already enabled" is a ValidationException.
            let already = e.as_service_error().and_then(|s| s.message()).is_some_and(|m| m.contains("already enabled"));
            if !already {
                return Err(sdk_err("UpdateTimeToLive", e));
            }
        }
        Ok(())
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // --- single-item primitives -------------------------------------------

    async fn get(&self, pk: String, sk: String) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key_of(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        Ok(out.item)
    }

    /// Puts `item` if no item has its key. `Ok(false)` when one has.
    async fn put_new(&self, item: Item) -> StoreResult<bool> {
        self.put_if(item, Cond::NotExists).await
    }

    /// Replaces an existing item. `Ok(false)` when there is none.
    async fn put_existing(&self, item: Item) -> StoreResult<bool> {
        self.put_if(item, Cond::Exists).await
    }

    /// Puts `item` if `condition` holds. `Ok(false)` when it does not.
    async fn put_if(&self, item: Item, condition: Cond) -> StoreResult<bool> {
        let mut x = Expr::default();
        let cond = condition.render_top(&mut x);
        let result = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression(cond)
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match sdk_err("PutItem", e) {
                StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Applies `update` if `condition` holds: the item as it is after it
    /// (`ALL_NEW`: `UPDATED_NEW` leaves out attributes an `ADD 0` did not
    /// change), or the item as it was when the condition failed.
    async fn update_if(&self, pk: String, sk: String, update: Updates, condition: Cond) -> StoreResult<Conditional> {
        let mut x = update.expr;
        let cond = condition.render_top(&mut x);
        let result = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key_of(pk, sk)))
            .update_expression(update.expression)
            .condition_expression(cond)
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Conditional::Done(out.attributes.unwrap_or_default())),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Conditional::Failed(failed.item().cloned()))
                }
                _ => Err(sdk_err("UpdateItem", e)),
            },
        }
    }

    /// Applies `update` to an existing item. `Ok(false)` when there is none.
    async fn update_existing(&self, pk: String, sk: String, update: Updates) -> StoreResult<bool> {
        let mut x = update.expr;
        let cond = format!("attribute_exists({})", x.n(PK));
        let result = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key_of(pk, sk)))
            .update_expression(update.expression)
            .condition_expression(cond)
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match sdk_err("UpdateItem", e) {
                StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Deletes an item; `true` when it existed.
    async fn delete(&self, pk: String, sk: String) -> StoreResult<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(key_of(pk, sk)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_err("DeleteItem", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), TxError> {
        let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = e.as_service_error() {
                    let codes: Vec<String> = cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None").to_string())
                        .collect();
                    if codes.iter().any(|c| c == "TransactionConflict") {
                        return Err(TxError::Contended);
                    }
                    if codes.iter().any(|c| c == "ConditionalCheckFailed") {
                        return Err(TxError::Condition(codes.iter().map(|c| c == "ConditionalCheckFailed").collect()));
                    }
                    if codes.is_empty() {
                        // No reasons (an emulator): assume a failed condition somewhere.
                        return Err(TxError::Condition(Vec::new()));
                    }
                    return Err(TxError::Store(StoreError::Unavailable(format!(
                        "TransactWriteItems cancelled: {}",
                        codes.join(", ")
                    ))));
                }
                Err(TxError::Store(sdk_err("TransactWriteItems", e)))
            }
        }
    }

    fn tx_put(&self, item: Item, condition: Option<Cond>) -> StoreResult<TransactWriteItem> {
        let mut builder = Put::builder().table_name(&*self.table).set_item(Some(item));
        if let Some(cond) = condition {
            let mut x = Expr::default();
            let expression = cond.render_top(&mut x);
            builder = builder
                .condition_expression(expression)
                .set_expression_attribute_names(x.names())
                .set_expression_attribute_values(x.values());
        }
        Ok(TransactWriteItem::builder().put(builder.build().map_err(build_err)?).build())
    }

    fn tx_update(&self, pk: String, sk: String, update: Updates, condition: Cond) -> StoreResult<TransactWriteItem> {
        let mut x = update.expr;
        let cond = condition.render_top(&mut x);
        let built = Update::builder()
            .table_name(&*self.table)
            .set_key(Some(key_of(pk, sk)))
            .update_expression(update.expression)
            .condition_expression(cond)
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(built).build())
    }

    fn tx_delete(&self, pk: String, sk: String, condition: Cond) -> StoreResult<TransactWriteItem> {
        let mut x = Expr::default();
        let cond = condition.render_top(&mut x);
        let built = Delete::builder()
            .table_name(&*self.table)
            .set_key(Some(key_of(pk, sk)))
            .condition_expression(cond)
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().delete(built).build())
    }

    /// ADDs `(deliveries, succeeded, failed)` to an event's counters, if the event exists.
    fn tx_event_counters(&self, app: &str, event: &str, delta: (i64, i64, i64)) -> StoreResult<TransactWriteItem> {
        let mut u = Updates::default();
        let mut adds = Vec::new();
        for (name, value) in
            [(attr::DELIVERY_COUNT, delta.0), (attr::SUCCEEDED_COUNT, delta.1), (attr::FAILED_COUNT, delta.2)]
        {
            if value != 0 {
                let (n, v) = (u.expr.n(name), u.expr.v(num(value)));
                adds.push(format!("{n} {v}"));
            }
        }
        u.expression = format!("ADD {}", adds.join(", "));
        self.tx_update(event_pk(event), event_sk(app), u, Cond::Exists)
    }

    // --- multi-item primitives --------------------------------------------

    /// Strongly consistent `BatchGetItem` of (pk, sk) keys, in any order.
    async fn batch_get(&self, keys: &[(String, String)]) -> StoreResult<HashMap<(String, String), Item>> {
        let mut found = HashMap::new();
        let mut unique: Vec<(String, String)> = Vec::new();
        let mut seen = HashSet::new();
        for k in keys {
            if seen.insert(k.clone()) {
                unique.push(k.clone());
            }
        }
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let mut pending: Vec<Item> = chunk.iter().map(|(pk, sk)| key_of(pk.clone(), sk.clone())).collect();
            let mut round = 0u32;
            while !pending.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(build_err)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&*self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_err("BatchGetItem", e))?;
                for item in out.responses.and_then(|mut r| r.remove(&*self.table)).unwrap_or_default() {
                    let key = (item_s(&item, PK).to_string(), item_s(&item, SK).to_string());
                    found.insert(key, item);
                }
                pending =
                    out.unprocessed_keys.and_then(|mut u| u.remove(&*self.table)).map(|ka| ka.keys).unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    if round > 10 {
                        return Err(StoreError::Unavailable("BatchGetItem keeps leaving keys unprocessed".into()));
                    }
                    tokio::time::sleep(backoff(round)).await;
                }
            }
        }
        Ok(found)
    }

    /// Deletes (pk, sk) keys with `BatchWriteItem`.
    async fn batch_delete(&self, keys: Vec<(String, String)>) -> StoreResult<()> {
        let mut seen = HashSet::new();
        let unique: Vec<(String, String)> = keys.into_iter().filter(|k| seen.insert(k.clone())).collect();
        for chunk in unique.chunks(BATCH_WRITE_MAX) {
            let mut pending = chunk
                .iter()
                .map(|(pk, sk)| {
                    let delete = DeleteRequest::builder()
                        .set_key(Some(key_of(pk.clone(), sk.clone())))
                        .build()
                        .map_err(build_err)?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let mut round = 0u32;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&*self.table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_err("BatchWriteItem", e))?;
                pending = out.unprocessed_items.and_then(|mut u| u.remove(&*self.table)).unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    if round > 10 {
                        return Err(StoreError::Unavailable("BatchWriteItem keeps leaving items unprocessed".into()));
                    }
                    tokio::time::sleep(backoff(round)).await;
                }
            }
        }
        Ok(())
    }

    fn merge(&self, spec: QuerySpec, pks: Vec<String>) -> Merge {
        Merge::new(self.client.clone(), self.table.clone(), spec, pks)
    }

    /// Every item of every partition in `pks` (all pages), concurrently.
    async fn query_all(&self, spec: QuerySpec, pks: Vec<String>) -> StoreResult<Vec<Item>> {
        if spec.range.is_empty() {
            return Ok(Vec::new());
        }
        let spec = Arc::new(spec);
        let mut set = tokio::task::JoinSet::new();
        for pk in pks {
            let (client, table, spec) = (self.client.clone(), self.table.clone(), spec.clone());
            set.spawn(async move {
                let mut items = Vec::new();
                let mut start = None;
                loop {
                    let (page, next) = query_page(&client, &table, &spec, &pk, start).await?;
                    items.extend(page);
                    match next {
                        Some(next) => start = Some(next),
                        None => break,
                    }
                }
                Ok::<_, StoreError>(items)
            });
        }
        let mut all = Vec::new();
        while let Some(joined) = set.join_next().await {
            all.extend(joined.map_err(|e| StoreError::Unavailable(format!("query task failed: {e}")))??);
        }
        Ok(all)
    }

    /// Reads a page from `merge`: decodes each entry (after fetching its base
    /// item when `hydrate`), keeps those `keep` accepts, and stops at
    /// `limit + 1` or when the index is exhausted.
    async fn page_of<T>(
        &self,
        mut merge: Merge,
        page: &PageRequest,
        hydrate: bool,
        decode: impl Fn(&Item) -> StoreResult<T>,
        keep: impl Fn(&T) -> bool,
    ) -> StoreResult<Page<T>> {
        let limit = page.limit.max(1);
        let sk_attr = merge.spec.sk_attr;
        let mut out: Vec<(String, T)> = Vec::new();
        loop {
            let need = limit + 1 - out.len();
            let mut batch = Vec::with_capacity(need);
            while batch.len() < need {
                match merge.next().await? {
                    Some(item) => batch.push(item),
                    None => break,
                }
            }
            let exhausted = batch.len() < need;
            if hydrate {
                let keys: Vec<(String, String)> =
                    batch.iter().map(|i| (item_s(i, PK).to_string(), item_s(i, SK).to_string())).collect();
                let mut full = self.batch_get(&keys).await?;
                for (entry, key) in batch.iter().zip(keys) {
                    // Gone since the index listed it: skip.
                    if let Some(item) = full.remove(&key) {
                        let value = decode(&item)?;
                        if keep(&value) {
                            out.push((item_s(entry, sk_attr).to_string(), value));
                        }
                    }
                }
            } else {
                for entry in &batch {
                    let value = decode(entry)?;
                    if keep(&value) {
                        out.push((item_s(entry, sk_attr).to_string(), value));
                    }
                }
            }
            if out.len() > limit || exhausted {
                break;
            }
        }
        let next = if out.len() > limit {
            out.truncate(limit);
            out.last().map(|(position, _)| encode_cursor(position))
        } else {
            None
        };
        Ok(Page { items: out.into_iter().map(|(_, v)| v).collect(), next })
    }

    async fn get_delivery_item(&self, app: &str, id: &str) -> StoreResult<Option<Item>> {
        self.get(delivery_pk(id), delivery_sk(app)).await
    }

    async fn insert_delivery(&self, d: Delivery) -> StoreResult<()> {
        let item = delivery_item(&d);
        let counts = d.retried_by.is_none() && d.status.is_final() && d.counts_on_event();
        if counts {
            let (succeeded, failed) = outcome(d.status);
            let items = vec![
                self.tx_put(item.clone(), Some(Cond::NotExists))?,
                self.tx_event_counters(d.application_id.as_str(), d.event_id.as_str(), (0, succeeded, failed))?,
            ];
            for round in 0..TX_RETRIES {
                match self.transact(items.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(TxError::Condition(failed)) if failed.first() == Some(&true) => return Ok(()),
                    // The event is gone: write the delivery alone.
                    Err(TxError::Condition(_)) => break,
                    Err(TxError::Contended) => tokio::time::sleep(backoff(round as u32 + 1)).await,
                    Err(TxError::Store(e)) => return Err(e),
                }
            }
        }
        self.put_new(item).await.map(|_| ())
    }
}

async fn wait_until_active(client: &Client, table_name: &str) -> StoreResult<()> {
    for round in 0..240u32 {
        let out =
            client.describe_table().table_name(table_name).send().await.map_err(|e| sdk_err("DescribeTable", e))?;
        let table = out.table;
        let active = table.as_ref().and_then(|t| t.table_status.as_ref()) == Some(&TableStatus::Active);
        let indexes_active = table
            .as_ref()
            .map(|t| {
                t.global_secondary_indexes()
                    .iter()
                    .all(|i| i.index_status.as_ref().is_none_or(|s| s.as_str() == "ACTIVE"))
            })
            .unwrap_or(true);
        if active && indexes_active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(if round < 10 { 200 } else { 1_000 })).await;
    }
    Err(StoreError::Unavailable(format!("table {table_name} did not become active")))
}

fn backoff(round: u32) -> Duration {
    Duration::from_millis(20u64 << round.min(6))
}

// ---------------------------------------------------------------------------
// Errors

/// The outcome of [`DynamoStore::update_if`].
enum Conditional {
    Done(Item),
    /// The condition failed; the item as it stood, when DynamoDB sent it.
    Failed(Option<Item>),
}

enum TxError {
    /// A condition failed; one flag per transaction item (empty when unknown).
    Condition(Vec<bool>),
    /// Another transaction touched the same item: try again.
    Contended,
    Store(StoreError),
}

impl TxError {
    fn failed(&self, idx: usize) -> bool {
        matches!(self, TxError::Condition(flags) if flags.get(idx) == Some(&true))
    }
}

fn sdk_err<E, R>(op: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug,
{
    let code = e.as_service_error().and_then(|s| s.code()).map(str::to_string);
    match code.as_deref() {
        Some("ConditionalCheckFailedException") => StoreError::Conflict(format!("{op}: condition failed")),
        Some("TransactionCanceledException") if e.to_string().contains("ConditionalCheckFailed") => {
            StoreError::Conflict(format!("{op}: condition failed"))
        }
        _ => StoreError::Unavailable(format!("{op}: {}", DisplayErrorContext(&e))),
    }
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Unavailable(format!("cannot build a DynamoDB request: {e}"))
}

fn corrupt(what: &str, message: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {message}"))
}

// ---------------------------------------------------------------------------
// Expressions

/// Placeholders for one request's expressions (every name goes through a
/// placeholder, so reserved words like `status` and `name` are safe).
#[derive(Default, Clone)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn n(&mut self, attr: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| a.as_str() == attr) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_string());
        placeholder
    }

    fn v(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// Conditions (for filters and writes), rendered into an [`Expr`].
#[derive(Clone, Debug)]
enum Cond {
    Exists,
    NotExists,
    Eq(&'static str, AttributeValue),
    /// The attribute is absent (or the boolean false).
    Falsy(&'static str),
    /// The attribute is absent, or equals the value.
    AbsentOr(&'static str, Option<AttributeValue>),
    /// Coarse expiry: `expiresAt >= now's whole seconds`.
    NotExpired(i64),
    /// Empty list, or the list contains the string.
    EmptyOrContains(&'static str, String),
    BeginsWith(&'static str, String),
    Lt(&'static str, AttributeValue),
    Le(&'static str, AttributeValue),
    /// Exactly not expired at this instant (`expiresAt` and `expiresNs`).
    Live(Timestamp),
    /// Exactly expired at this instant (false without `expiresAt`).
    Expired(Timestamp),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

impl Cond {
    fn render(&self, x: &mut Expr) -> String {
        match self {
            Cond::Exists => format!("attribute_exists({})", x.n(PK)),
            Cond::NotExists => format!("attribute_not_exists({})", x.n(PK)),
            Cond::Eq(a, v) => format!("{} = {}", x.n(a), x.v(v.clone())),
            Cond::Falsy(a) => {
                let n = x.n(a);
                format!("(attribute_not_exists({n}) OR {n} = {})", x.v(AttributeValue::Bool(false)))
            }
            Cond::AbsentOr(a, None) => format!("attribute_not_exists({})", x.n(a)),
            Cond::AbsentOr(a, Some(v)) => {
                let n = x.n(a);
                format!("(attribute_not_exists({n}) OR {n} = {})", x.v(v.clone()))
            }
            Cond::NotExpired(secs) => format!("{} >= {}", x.n(TTL_ATTRIBUTE), x.v(num(*secs))),
            Cond::EmptyOrContains(a, value) => {
                let n = x.n(a);
                format!("(size({n}) = {} OR contains({n}, {}))", x.v(num(0)), x.v(str_av(value)))
            }
            Cond::BeginsWith(a, prefix) => format!("begins_with({}, {})", x.n(a), x.v(str_av(prefix))),
            Cond::Lt(a, v) => format!("{} < {}", x.n(a), x.v(v.clone())),
            Cond::Le(a, v) => format!("{} <= {}", x.n(a), x.v(v.clone())),
            Cond::Live(now) | Cond::Expired(now) => {
                let n = nanos(*now);
                let (e, ns) = (x.n(TTL_ATTRIBUTE), x.n(EXPIRES_NS_ATTRIBUTE));
                let (secs, sub) = (x.v(num(n.div_euclid(NANOS_PER_SEC))), x.v(num(n.rem_euclid(NANOS_PER_SEC))));
                let (whole, part) = if matches!(self, Cond::Live(_)) { (">", ">") } else { ("<", "<=") };
                format!("({e} {whole} {secs} OR ({e} = {secs} AND {ns} {part} {sub}))")
            }
            Cond::And(parts) | Cond::Or(parts) if parts.len() == 1 => parts[0].render(x),
            Cond::And(_) | Cond::Or(_) => format!("({})", self.render_top(x)),
        }
    }

    /// The whole expression: no parentheses around it (DynamoDB rejects
    /// redundant ones).
    fn render_top(&self, x: &mut Expr) -> String {
        let (parts, op) = match self {
            Cond::And(parts) => (parts, " AND "),
            Cond::Or(parts) => (parts, " OR "),
            other => return other.render(x),
        };
        match &parts[..] {
            [only] => only.render_top(x),
            parts => parts.iter().map(|c| c.render(x)).collect::<Vec<_>>().join(op),
        }
    }
}

/// An update expression under construction: `SET a = :v, ...` / `REMOVE b, ...`.
#[derive(Default)]
struct Updates {
    expr: Expr,
    sets: Vec<String>,
    removes: Vec<String>,
    /// A hand-written expression (when `sets`/`removes` are not used).
    expression: String,
}

impl Updates {
    fn set(&mut self, name: &str, value: AttributeValue) {
        let (n, v) = (self.expr.n(name), self.expr.v(value));
        self.sets.push(format!("{n} = {v}"));
    }

    /// `SET name = name + 1`: a strictly later version stamp without a read.
    fn bump(&mut self, name: &str) {
        let (n, v) = (self.expr.n(name), self.expr.v(num(1)));
        self.sets.push(format!("{n} = {n} + {v}"));
    }

    fn set_opt(&mut self, name: &str, value: Option<AttributeValue>) {
        match value {
            Some(value) => self.set(name, value),
            None => {
                let n = self.expr.n(name);
                self.removes.push(n);
            }
        }
    }

    fn finish(mut self) -> Self {
        let mut parts = Vec::new();
        if !self.sets.is_empty() {
            parts.push(format!("SET {}", self.sets.join(", ")));
        }
        if !self.removes.is_empty() {
            parts.push(format!("REMOVE {}", self.removes.join(", ")));
        }
        self.expression = parts.join(" ");
        self
    }
}

// ---------------------------------------------------------------------------
// Queries

/// A sort-key range: `lo` inclusive, `hi` exclusive.
#[derive(Clone, Debug, Default)]
struct SkRange {
    lo: Option<String>,
    hi: Option<String>,
}

impl SkRange {
    fn prefix(prefix: &str) -> Self {
        SkRange { lo: Some(prefix.to_string()), hi: Some(prefix_end(prefix)) }
    }

    fn at_least(mut self, lo: Option<String>) -> Self {
        if let Some(lo) = lo {
            self.lo = Some(match self.lo {
                Some(current) if current > lo => current,
                _ => lo,
            });
        }
        self
    }

    fn below(mut self, hi: Option<String>) -> Self {
        if let Some(hi) = hi {
            self.hi = Some(match self.hi {
                Some(current) if current < hi => current,
                _ => hi,
            });
        }
        self
    }

    fn is_empty(&self) -> bool {
        matches!((&self.lo, &self.hi), (Some(lo), Some(hi)) if lo >= hi)
    }
}

/// The smallest string above every string starting with `prefix` (ASCII prefixes).
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last = last.saturating_add(1);
    }
    String::from_utf8(bytes).unwrap_or_else(|_| format!("{prefix}\u{10FFFF}"))
}

#[derive(Clone, Debug)]
struct QuerySpec {
    index: Option<&'static str>,
    pk_attr: &'static str,
    sk_attr: &'static str,
    range: SkRange,
    filter: Vec<Cond>,
    projection: Option<Vec<&'static str>>,
    page_size: usize,
}

impl QuerySpec {
    fn base(range: SkRange) -> Self {
        QuerySpec { index: None, pk_attr: PK, sk_attr: SK, range, filter: Vec::new(), projection: None, page_size: 100 }
    }

    fn index(index: &'static str, range: SkRange) -> Self {
        let (pk_attr, sk_attr) = match index {
            INDEX_BY_OWNER => (OWNER_PK, OWNER_SK),
            INDEX_BY_APP => (APP_PK, APP_SK),
            _ => (EP_PK, EP_SK),
        };
        QuerySpec { index: Some(index), pk_attr, sk_attr, range, filter: Vec::new(), projection: None, page_size: 100 }
    }

    fn page_size(mut self, page: &PageRequest) -> Self {
        self.page_size = (page.limit.max(1) + 1).min(MAX_QUERY_PAGE);
        self
    }
}

/// One page of a query, newest first (descending sort key).
async fn query_page(
    client: &Client,
    table: &str,
    spec: &QuerySpec,
    pk: &str,
    start: Option<Item>,
) -> StoreResult<(Vec<Item>, Option<Item>)> {
    let mut x = Expr::default();
    let mut key_condition = format!("{} = {}", x.n(spec.pk_attr), x.v(str_av(pk)));
    let between = matches!(&spec.range, SkRange { lo: Some(_), hi: Some(_) });
    match (&spec.range.lo, &spec.range.hi) {
        (Some(lo), Some(hi)) => {
            let sk = x.n(spec.sk_attr);
            key_condition.push_str(&format!(" AND {sk} BETWEEN {} AND {}", x.v(str_av(lo)), x.v(str_av(hi))))
        }
        (Some(lo), None) => {
            let sk = x.n(spec.sk_attr);
            key_condition.push_str(&format!(" AND {sk} >= {}", x.v(str_av(lo))))
        }
        (None, Some(hi)) => {
            let sk = x.n(spec.sk_attr);
            key_condition.push_str(&format!(" AND {sk} < {}", x.v(str_av(hi))))
        }
        (None, None) => {}
    }
    let filter = (!spec.filter.is_empty()).then(|| Cond::And(spec.filter.clone()).render_top(&mut x));
    let projection = spec.projection.as_ref().map(|attrs| {
        let mut all: Vec<&str> = vec![PK, SK, spec.pk_attr, spec.sk_attr];
        all.extend(attrs.iter().copied());
        let mut seen = HashSet::new();
        all.into_iter().filter(|a| seen.insert(*a)).map(|a| x.n(a)).collect::<Vec<_>>().join(", ")
    });
    let mut request = client
        .query()
        .table_name(table)
        .key_condition_expression(key_condition)
        .scan_index_forward(false)
        .limit(i32::try_from(spec.page_size).unwrap_or(i32::MAX))
        .set_filter_expression(filter)
        .set_projection_expression(projection)
        .set_exclusive_start_key(start)
        .set_expression_attribute_names(x.names())
        .set_expression_attribute_values(x.values());
    match spec.index {
        Some(index) => request = request.index_name(index),
        None => request = request.consistent_read(true),
    }
    let out = request.send().await.map_err(|e| sdk_err("Query", e))?;
    let mut items = out.items.unwrap_or_default();
    if between && let Some(hi) = &spec.range.hi {
        // BETWEEN is inclusive; the upper bound is not.
        items.retain(|item| item_s(item, spec.sk_attr) != hi.as_str());
    }
    Ok((items, out.last_evaluated_key.filter(|k| !k.is_empty())))
}

struct Shard {
    pk: String,
    buffer: VecDeque<Item>,
    start: Option<Item>,
    done: bool,
}

/// Several index partitions read as one list, newest first.
struct Merge {
    client: Client,
    table: Arc<str>,
    spec: Arc<QuerySpec>,
    shards: Vec<Shard>,
}

impl Merge {
    fn new(client: Client, table: Arc<str>, spec: QuerySpec, pks: Vec<String>) -> Self {
        let empty = spec.range.is_empty();
        let shards =
            pks.into_iter().map(|pk| Shard { pk, buffer: VecDeque::new(), start: None, done: empty }).collect();
        Merge { client, table, spec: Arc::new(spec), shards }
    }

    /// The next entry across all shards (the largest sort key left).
    async fn next(&mut self) -> StoreResult<Option<Item>> {
        loop {
            let need: Vec<usize> = self
                .shards
                .iter()
                .enumerate()
                .filter(|(_, s)| s.buffer.is_empty() && !s.done)
                .map(|(i, _)| i)
                .collect();
            if need.is_empty() {
                break;
            }
            self.fetch(need).await?;
        }
        let sk = self.spec.sk_attr;
        let mut best: Option<usize> = None;
        for (i, shard) in self.shards.iter().enumerate() {
            let Some(head) = shard.buffer.front() else { continue };
            let better = match best {
                None => true,
                Some(b) => {
                    let current = self.shards[b].buffer.front().map(|item| item_s(item, sk)).unwrap_or_default();
                    item_s(head, sk) > current
                }
            };
            if better {
                best = Some(i);
            }
        }
        Ok(best.and_then(|i| self.shards[i].buffer.pop_front()))
    }

    async fn fetch(&mut self, need: Vec<usize>) -> StoreResult<()> {
        if let [i] = need[..] {
            let start = self.shards[i].start.take();
            let result = query_page(&self.client, &self.table, &self.spec, &self.shards[i].pk, start).await?;
            self.absorb(i, result);
            return Ok(());
        }
        let mut set = tokio::task::JoinSet::new();
        for i in need {
            let (client, table, spec) = (self.client.clone(), self.table.clone(), self.spec.clone());
            let (pk, start) = (self.shards[i].pk.clone(), self.shards[i].start.take());
            set.spawn(async move { (i, query_page(&client, &table, &spec, &pk, start).await) });
        }
        while let Some(joined) = set.join_next().await {
            let (i, result) = joined.map_err(|e| StoreError::Unavailable(format!("query task failed: {e}")))?;
            self.absorb(i, result?);
        }
        Ok(())
    }

    fn absorb(&mut self, i: usize, (items, next): (Vec<Item>, Option<Item>)) {
        let shard = &mut self.shards[i];
        shard.buffer.extend(items);
        shard.done = next.is_none();
        shard.start = next;
    }
}

fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position.as_bytes())
}

fn decode_cursor(page: &PageRequest) -> StoreResult<Option<String>> {
    match &page.after {
        None => Ok(None),
        Some(cursor) => {
            let bytes =
                URL_SAFE_NO_PAD.decode(cursor).map_err(|_| StoreError::Corrupt("malformed page position".into()))?;
            String::from_utf8(bytes).map(Some).map_err(|_| StoreError::Corrupt("malformed page position".into()))
        }
    }
}

// ---------------------------------------------------------------------------
// Values

type Item = HashMap<String, AttributeValue>;

fn str_av(s: impl Into<String>) -> AttributeValue {
    AttributeValue::S(s.into())
}

fn num(n: impl fmt::Display) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn key_of(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), str_av(pk)), (SK.to_string(), str_av(sk))])
}

/// The string attribute `name`, or "" (for keys, which are always strings).
fn item_s<'a>(item: &'a Item, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(s)) => s,
        _ => "",
    }
}

fn nanos(t: Timestamp) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

fn from_nanos(n: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_nanos(n)
}

/// A timestamp as 20 digits whose string order is the time order.
fn sort_ts(t: Timestamp) -> String {
    let shifted = (i128::from(nanos(t)) - i128::from(i64::MIN)) as u64;
    format!("{shifted:020}")
}

fn parse_sort_ts(s: &str) -> Option<Timestamp> {
    let shifted: u64 = s.get(..20)?.parse().ok()?;
    let n = i128::from(shifted) + i128::from(i64::MIN);
    i64::try_from(n).ok().map(from_nanos)
}

fn sort_key(t: Timestamp, id: &str) -> String {
    format!("{}#{id}", sort_ts(t))
}

/// Lower bound of sort keys at or after `t`.
fn sort_from(t: Timestamp) -> String {
    format!("{}#", sort_ts(t))
}

fn now_secs(now: Timestamp) -> i64 {
    nanos(now).div_euclid(NANOS_PER_SEC)
}

fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode JSON: {e}")))
}

/// Builds an item; `None` options are left out.
#[derive(Default)]
struct ItemBuilder(Item);

impl ItemBuilder {
    fn key(pk: String, sk: String) -> Self {
        ItemBuilder(key_of(pk, sk))
    }
    fn s(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0.insert(name.to_string(), str_av(value));
        self
    }
    fn opt_s(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.s(name, v),
            None => self,
        }
    }
    fn n(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.0.insert(name.to_string(), num(value));
        self
    }
    fn opt_n(self, name: &str, value: Option<impl fmt::Display>) -> Self {
        match value {
            Some(v) => self.n(name, v),
            None => self,
        }
    }
    fn nonzero(self, name: &str, value: u32) -> Self {
        if value == 0 { self } else { self.n(name, value) }
    }
    fn attribute(mut self, (name, value): (&str, AttributeValue)) -> Self {
        self.0.insert(name.to_string(), value);
        self
    }
    fn b(mut self, name: &str, value: bool) -> Self {
        self.0.insert(name.to_string(), AttributeValue::Bool(value));
        self
    }
    fn ts(self, name: &str, t: Timestamp) -> Self {
        self.n(name, nanos(t))
    }
    fn opt_ts(self, name: &str, t: Option<Timestamp>) -> Self {
        self.opt_n(name, t.map(nanos))
    }
    fn list(mut self, name: &str, values: impl IntoIterator<Item = String>) -> Self {
        self.0.insert(name.to_string(), AttributeValue::L(values.into_iter().map(AttributeValue::S).collect()));
        self
    }
    fn expiry(self, t: Timestamp) -> Self {
        let n = nanos(t);
        self.n(TTL_ATTRIBUTE, n.div_euclid(NANOS_PER_SEC)).n(EXPIRES_NS_ATTRIBUTE, n.rem_euclid(NANOS_PER_SEC))
    }
    fn build(self) -> Item {
        self.0
    }
}

/// Typed reads of an item's attributes; anything unexpected is `Corrupt`.
struct Reader<'a> {
    item: &'a Item,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(item: &'a Item, what: &'static str) -> Self {
        Reader { item, what }
    }

    fn bad(&self, name: &str, message: &str) -> StoreError {
        let pk = item_s(self.item, PK);
        corrupt(self.what, format!("{pk}: attribute {name} {message}"))
    }

    fn opt_s(&self, name: &str) -> StoreResult<Option<String>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(name, "is not a string")),
        }
    }

    fn s(&self, name: &str) -> StoreResult<String> {
        self.opt_s(name)?.ok_or_else(|| self.bad(name, "is missing"))
    }

    /// The key attribute `name` without its `prefix`.
    fn key_part(&self, name: &str, prefix: &str) -> StoreResult<String> {
        let value = self.s(name)?;
        value.strip_prefix(prefix).map(str::to_string).ok_or_else(|| self.bad(name, "has an unexpected prefix"))
    }

    fn opt_parse<T: FromStr>(&self, name: &str) -> StoreResult<Option<T>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(n)) => n.parse::<T>().map(Some).map_err(|_| self.bad(name, "is out of range")),
            Some(_) => Err(self.bad(name, "is not a number")),
        }
    }

    fn parse<T: FromStr>(&self, name: &str) -> StoreResult<T> {
        self.opt_parse(name)?.ok_or_else(|| self.bad(name, "is missing"))
    }

    /// A counter; absent is 0, below 0 (after racing decrements) is 0.
    fn counter(&self, name: &str) -> StoreResult<u32> {
        let v: Option<i64> = self.opt_parse(name)?;
        Ok(u32::try_from(v.unwrap_or(0).max(0)).unwrap_or(u32::MAX))
    }

    fn opt_bool(&self, name: &str) -> StoreResult<Option<bool>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.bad(name, "is not a boolean")),
        }
    }

    fn bool(&self, name: &str) -> StoreResult<bool> {
        self.opt_bool(name)?.ok_or_else(|| self.bad(name, "is missing"))
    }

    fn ts(&self, name: &str) -> StoreResult<Timestamp> {
        self.parse::<i64>(name).map(from_nanos)
    }

    fn opt_ts(&self, name: &str) -> StoreResult<Option<Timestamp>> {
        Ok(self.opt_parse::<i64>(name)?.map(from_nanos))
    }

    fn expiry(&self) -> StoreResult<Timestamp> {
        let secs: i64 = self.parse(TTL_ATTRIBUTE)?;
        let sub: i64 = self.opt_parse(EXPIRES_NS_ATTRIBUTE)?.unwrap_or(0);
        Ok(from_nanos(secs.saturating_mul(NANOS_PER_SEC).saturating_add(sub)))
    }

    fn json<T: DeserializeOwned>(&self, name: &str) -> StoreResult<T> {
        let text = self.s(name)?;
        serde_json::from_str(&text).map_err(|e| self.bad(name, &format!("is not valid JSON: {e}")))
    }

    fn opt_json<T: DeserializeOwned>(&self, name: &str) -> StoreResult<Option<T>> {
        match self.opt_s(name)? {
            None => Ok(None),
            Some(text) => {
                serde_json::from_str(&text).map(Some).map_err(|e| self.bad(name, &format!("is not valid JSON: {e}")))
            }
        }
    }

    fn strings(&self, name: &str) -> StoreResult<Vec<String>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(AttributeValue::L(values)) => values
                .iter()
                .map(|v| match v {
                    AttributeValue::S(s) => Ok(s.clone()),
                    _ => Err(self.bad(name, "holds a non-string")),
                })
                .collect(),
            Some(AttributeValue::Ss(values)) => Ok(values.clone()),
            Some(_) => Err(self.bad(name, "is not a list")),
        }
    }

    fn id(&self, name: &str) -> StoreResult<Id> {
        self.s(name).map(Id::from_stored)
    }

    fn opt_id(&self, name: &str) -> StoreResult<Option<Id>> {
        Ok(self.opt_s(name)?.map(Id::from_stored))
    }

    fn delivery_status(&self, name: &str) -> StoreResult<DeliveryStatus> {
        let text = self.s(name)?;
        DeliveryStatus::parse(&text).ok_or_else(|| self.bad(name, "is not a delivery status"))
    }

    fn opt_response_status(&self, name: &str) -> StoreResult<Option<ResponseStatus>> {
        match self.opt_s(name)? {
            None => Ok(None),
            Some(text) => {
                ResponseStatus::from_stored(&text).map(Some).ok_or_else(|| self.bad(name, "is not a response status"))
            }
        }
    }
}

/// (succeeded, failed) contribution of a delivery in this status.
fn outcome(status: DeliveryStatus) -> (i64, i64) {
    match status {
        DeliveryStatus::Succeeded => (1, 0),
        DeliveryStatus::Failed => (0, 1),
        DeliveryStatus::Pending | DeliveryStatus::Retrying => (0, 0),
    }
}

fn payload_format_str(format: PayloadFormat) -> &'static str {
    match format {
        PayloadFormat::Standard => "standard",
        PayloadFormat::Raw => "raw",
    }
}

// ---------------------------------------------------------------------------
// Items

fn application_item(app: &Application) -> Item {
    ItemBuilder::key(app_pk(app.id.as_str()), APP_ITEM_SK.into())
        .s(OWNER_PK, APPS_OWNER_PK)
        .s(OWNER_SK, app.id.as_str())
        .s(attr::NAME, app.name.clone())
        .n(attr::RETENTION_DAYS, app.retention_days)
        .opt_n(attr::RATE_LIMIT, app.rate_limit)
        .ts(attr::CREATED_AT, app.created_at)
        .ts(attr::UPDATED_AT, app.updated_at)
        .build()
}

fn application_from(item: &Item) -> StoreResult<Application> {
    let r = Reader::new(item, "application");
    Ok(Application {
        id: Id::from_stored(r.key_part(PK, "APP#")?),
        name: r.s(attr::NAME)?,
        retention_days: r.parse(attr::RETENTION_DAYS)?,
        rate_limit: r.opt_parse(attr::RATE_LIMIT)?,
        created_at: r.ts(attr::CREATED_AT)?,
        updated_at: r.ts(attr::UPDATED_AT)?,
    })
}

fn api_key_fields(key: &ApiKey, b: ItemBuilder) -> ItemBuilder {
    b.s(attr::KEY_ID, key.id.as_str())
        .s(attr::APP_ID, key.application_id.as_str())
        .s(attr::NAME, key.name.clone())
        .s(attr::PREFIX, key.prefix.clone())
        .s(attr::LAST4, key.last4.clone())
        .s(attr::KEY_HASH, key.key_hash.clone())
        .list(attr::SCOPES, key.scopes.iter().map(|s| s.as_str().to_string()))
        .ts(attr::CREATED_AT, key.created_at)
        .opt_ts(attr::REVOKED_AT, key.revoked_at)
        .opt_ts(attr::LAST_USED_AT, key.last_used_at)
}

fn api_key_from(item: &Item) -> StoreResult<ApiKey> {
    let r = Reader::new(item, "api key");
    let scopes = r
        .strings(attr::SCOPES)?
        .iter()
        .map(|s| Scope::from_str(s).map_err(|_| r.bad(attr::SCOPES, "holds an unknown scope")))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(ApiKey {
        id: r.id(attr::KEY_ID)?,
        application_id: r.id(attr::APP_ID)?,
        name: r.s(attr::NAME)?,
        prefix: r.s(attr::PREFIX)?,
        last4: r.s(attr::LAST4)?,
        key_hash: r.s(attr::KEY_HASH)?,
        scopes,
        created_at: r.ts(attr::CREATED_AT)?,
        revoked_at: r.opt_ts(attr::REVOKED_AT)?,
        last_used_at: r.opt_ts(attr::LAST_USED_AT)?,
    })
}

fn event_type_item(et: &EventType) -> StoreResult<Item> {
    let app = et.application_id.as_str();
    let schema = et.schema.as_ref().map(to_json).transpose()?;
    Ok(ItemBuilder::key(app_pk(app), event_type_sk(&et.name))
        .s(OWNER_PK, event_types_owner_pk(app))
        .s(OWNER_SK, format!("{}#{}", sort_ts(et.created_at), et.name))
        .s(attr::NAME, et.name.clone())
        .opt_s(attr::DESCRIPTION, et.description.clone())
        .opt_s(attr::SCHEMA, schema)
        .b(attr::ARCHIVED, et.archived)
        .ts(attr::CREATED_AT, et.created_at)
        .ts(attr::UPDATED_AT, et.updated_at)
        .build())
}

fn event_type_from(item: &Item) -> StoreResult<EventType> {
    let r = Reader::new(item, "event type");
    Ok(EventType {
        application_id: Id::from_stored(r.key_part(PK, "APP#")?),
        name: r.s(attr::NAME)?,
        description: r.opt_s(attr::DESCRIPTION)?,
        schema: r.opt_json(attr::SCHEMA)?,
        archived: r.opt_bool(attr::ARCHIVED)?.unwrap_or(false),
        created_at: r.ts(attr::CREATED_AT)?,
        updated_at: r.ts(attr::UPDATED_AT)?,
    })
}

fn endpoint_item(ep: &Endpoint) -> StoreResult<Item> {
    Ok(ItemBuilder::key(app_pk(ep.application_id.as_str()), endpoint_sk(ep.id.as_str()))
        .s(attr::URL, ep.url.clone())
        .opt_s(attr::DESCRIPTION, ep.description.clone())
        .list(attr::EVENT_TYPES, ep.event_types.iter().cloned())
        .s(attr::HEADERS, to_json(&ep.headers)?)
        .n(attr::MAX_ATTEMPTS, ep.max_attempts)
        .n(attr::TIMEOUT_SECS, ep.timeout_secs)
        .s(attr::PAYLOAD_FORMAT, payload_format_str(ep.payload_format))
        .b(attr::IS_ACTIVE, ep.is_active)
        .opt_s(attr::DISABLED_REASON, ep.disabled_reason.clone())
        .s(attr::METADATA, to_json(&ep.metadata)?)
        .s(attr::SECRET, ep.secret_encrypted.clone())
        .s(attr::SECRET_LAST4, ep.secret_last4.clone())
        .opt_s(attr::PREVIOUS_SECRET, ep.previous_secret_encrypted.clone())
        .opt_ts(attr::PREVIOUS_SECRET_EXPIRES_AT, ep.previous_secret_expires_at)
        .opt_ts(attr::FAILING_SINCE, ep.failing_since)
        .s(attr::CONTROLS, controls_to_stored(&ep.controls, &ep.signing_keys))
        .ts(attr::CREATED_AT, ep.created_at)
        .ts(attr::UPDATED_AT, ep.updated_at)
        .build())
}

fn endpoint_from(item: &Item) -> StoreResult<Endpoint> {
    let r = Reader::new(item, "endpoint");
    let payload_format = match r.s(attr::PAYLOAD_FORMAT)?.as_str() {
        "standard" => PayloadFormat::Standard,
        "raw" => PayloadFormat::Raw,
        _ => return Err(r.bad(attr::PAYLOAD_FORMAT, "is not a payload format")),
    };
    let (controls, signing_keys) =
        controls_from_stored(r.opt_s(attr::CONTROLS)?.as_deref()).map_err(|e| r.bad(attr::CONTROLS, &e))?;
    Ok(Endpoint {
        id: Id::from_stored(r.key_part(SK, ENDPOINT_SK_PREFIX)?),
        application_id: Id::from_stored(r.key_part(PK, "APP#")?),
        url: r.s(attr::URL)?,
        description: r.opt_s(attr::DESCRIPTION)?,
        event_types: r.strings(attr::EVENT_TYPES)?,
        headers: r.json(attr::HEADERS)?,
        max_attempts: r.parse(attr::MAX_ATTEMPTS)?,
        timeout_secs: r.parse(attr::TIMEOUT_SECS)?,
        payload_format,
        is_active: r.bool(attr::IS_ACTIVE)?,
        disabled_reason: r.opt_s(attr::DISABLED_REASON)?,
        metadata: r.json(attr::METADATA)?,
        secret_encrypted: r.s(attr::SECRET)?,
        secret_last4: r.s(attr::SECRET_LAST4)?,
        previous_secret_encrypted: r.opt_s(attr::PREVIOUS_SECRET)?,
        previous_secret_expires_at: r.opt_ts(attr::PREVIOUS_SECRET_EXPIRES_AT)?,
        failing_since: r.opt_ts(attr::FAILING_SINCE)?,
        controls,
        signing_keys,
        created_at: r.ts(attr::CREATED_AT)?,
        updated_at: r.ts(attr::UPDATED_AT)?,
    })
}

/// Payloads of at least this many bytes of JSON are stored deflated: every
/// write and update of the event item is billed per started KB, and webhook
/// JSON deflates to a half or a third (the bench's 1 KiB payload takes the
/// event item from 2 write units to 1, and with it the fan-out mark and
/// every outcome counted on the event).
const DEFLATE_PAYLOAD_FROM: usize = 256;
/// A stored payload that inflates beyond this is corrupt (the API takes at
/// most `MAX_PAYLOAD_BYTES`; its JSON text re-serialised stays near that).
const MAX_INFLATED_PAYLOAD: usize = 4 * crate::domain::limits::MAX_PAYLOAD_BYTES;

/// The payload's attribute: its JSON text, deflated when that is smaller.
fn payload_attribute(payload: &serde_json::Value) -> StoreResult<(&'static str, AttributeValue)> {
    use std::io::Write as _;
    let text = to_json(payload)?;
    if text.len() >= DEFLATE_PAYLOAD_FROM {
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        let deflated = encoder.write_all(text.as_bytes()).and_then(|()| encoder.finish());
        // Writing into a Vec cannot fail; if it ever did, the text is kept.
        if let Ok(deflated) = deflated
            && deflated.len() < text.len()
        {
            return Ok((attr::PAYLOAD_DEFLATED, AttributeValue::B(Blob::new(deflated))));
        }
    }
    Ok((attr::PAYLOAD, str_av(text)))
}

fn stored_payload(r: &Reader) -> StoreResult<serde_json::Value> {
    use std::io::Read as _;
    let deflated = match r.item.get(attr::PAYLOAD_DEFLATED) {
        None => return r.json(attr::PAYLOAD),
        Some(AttributeValue::B(blob)) => blob.as_ref(),
        Some(_) => return Err(r.bad(attr::PAYLOAD_DEFLATED, "is not binary")),
    };
    let mut text = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(MAX_INFLATED_PAYLOAD as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| r.bad(attr::PAYLOAD_DEFLATED, &format!("does not inflate: {e}")))?;
    if text.len() > MAX_INFLATED_PAYLOAD {
        return Err(r.bad(attr::PAYLOAD_DEFLATED, "inflates beyond any payload's size"));
    }
    serde_json::from_slice(&text).map_err(|e| r.bad(attr::PAYLOAD_DEFLATED, &format!("is not valid JSON: {e}")))
}

fn event_item(ev: &Event) -> StoreResult<Item> {
    let (id, app) = (ev.id.as_str(), ev.application_id.as_str());
    let mut b = ItemBuilder::key(event_pk(id), event_sk(app))
        .s(APP_PK, app_events_pk(app, shard_of(id)))
        .s(APP_SK, sort_key(ev.created_at, id))
        .s(attr::EVENT_TYPE, ev.event_type.clone())
        .attribute(payload_attribute(&ev.payload)?)
        .opt_s(attr::IDEMPOTENCY_KEY, ev.idempotency_key.clone())
        .s(attr::REQUEST_HASH, ev.request_hash.clone())
        .opt_s(attr::TARGET_ENDPOINT_ID, ev.target_endpoint_id.as_ref().map(|i| i.to_string()))
        .nonzero(attr::DELIVERY_COUNT, ev.delivery_count)
        .nonzero(attr::SUCCEEDED_COUNT, ev.succeeded_count)
        .nonzero(attr::FAILED_COUNT, ev.failed_count)
        .ts(attr::CREATED_AT, ev.created_at)
        .expiry(ev.expires_at);
    if ev.fanned_out {
        b = b.b(attr::FANNED_OUT, true);
    }
    Ok(b.build())
}

fn event_from(item: &Item) -> StoreResult<Event> {
    let r = Reader::new(item, "event");
    let mut event = Event {
        id: Id::from_stored(r.key_part(PK, EVENT_PK_PREFIX)?),
        application_id: Id::from_stored(r.key_part(SK, EVENT_SK_PREFIX)?),
        event_type: r.s(attr::EVENT_TYPE)?,
        payload: stored_payload(&r)?,
        idempotency_key: r.opt_s(attr::IDEMPOTENCY_KEY)?,
        request_hash: r.s(attr::REQUEST_HASH)?,
        target_endpoint_id: r.opt_id(attr::TARGET_ENDPOINT_ID)?,
        status: crate::domain::EventStatus::Pending,
        fanned_out: r.opt_bool(attr::FANNED_OUT)?.unwrap_or(false),
        delivery_count: r.counter(attr::DELIVERY_COUNT)?,
        succeeded_count: r.counter(attr::SUCCEEDED_COUNT)?,
        failed_count: r.counter(attr::FAILED_COUNT)?,
        created_at: r.ts(attr::CREATED_AT)?,
        expires_at: r.expiry()?,
    };
    event.status = event.derive_status();
    Ok(event)
}

fn delivery_item(d: &Delivery) -> Item {
    let (id, app, ep) = (d.id.as_str(), d.application_id.as_str(), d.endpoint_id.as_str());
    ItemBuilder::key(delivery_pk(id), delivery_sk(app))
        .s(APP_PK, app_deliveries_pk(app, shard_of(d.event_id.as_str())))
        .s(APP_SK, sort_key(d.created_at, id))
        .s(EP_PK, endpoint_deliveries_pk(app, ep, shard_of(id)))
        .s(EP_SK, sort_key(d.created_at, id))
        .s(attr::EVENT_ID, d.event_id.as_str())
        .s(attr::ENDPOINT_ID, ep)
        .s(attr::EVENT_TYPE, d.event_type.clone())
        .s(attr::STATUS, d.status.as_str())
        .n(attr::ATTEMPT_COUNT, d.attempt_count)
        .n(attr::MAX_ATTEMPTS, d.max_attempts)
        .opt_s(attr::RESPONSE_STATUS, d.response_status.map(ResponseStatus::to_stored))
        .opt_s(attr::RESPONSE_BODY, d.response_body.clone())
        .opt_s(attr::ERROR_MESSAGE, d.error_message.clone())
        .opt_n(attr::TIMESTAMP_SENT, d.timestamp_sent)
        .opt_ts(attr::NEXT_ATTEMPT_AT, d.next_attempt_at)
        .opt_s(attr::RETRY_OF, d.retry_of.as_ref().map(|i| i.to_string()))
        .opt_s(attr::RETRIED_BY, d.retried_by.as_ref().map(|i| i.to_string()))
        .opt_ts(attr::DELIVERED_AT, d.delivered_at)
        .ts(attr::CREATED_AT, d.created_at)
        .ts(attr::UPDATED_AT, d.updated_at)
        .expiry(d.expires_at)
        .build()
}

fn delivery_from(item: &Item) -> StoreResult<Delivery> {
    let r = Reader::new(item, "delivery");
    Ok(Delivery {
        id: Id::from_stored(r.key_part(PK, "DLV#")?),
        application_id: Id::from_stored(r.key_part(SK, DELIVERY_SK_PREFIX)?),
        event_id: r.id(attr::EVENT_ID)?,
        endpoint_id: r.id(attr::ENDPOINT_ID)?,
        event_type: r.s(attr::EVENT_TYPE)?,
        status: r.delivery_status(attr::STATUS)?,
        attempt_count: r.parse(attr::ATTEMPT_COUNT)?,
        max_attempts: r.parse(attr::MAX_ATTEMPTS)?,
        response_status: r.opt_response_status(attr::RESPONSE_STATUS)?,
        response_body: r.opt_s(attr::RESPONSE_BODY)?,
        error_message: r.opt_s(attr::ERROR_MESSAGE)?,
        timestamp_sent: r.opt_parse(attr::TIMESTAMP_SENT)?,
        next_attempt_at: r.opt_ts(attr::NEXT_ATTEMPT_AT)?,
        retry_of: r.opt_id(attr::RETRY_OF)?,
        retried_by: r.opt_id(attr::RETRIED_BY)?,
        delivered_at: r.opt_ts(attr::DELIVERED_AT)?,
        created_at: r.ts(attr::CREATED_AT)?,
        updated_at: r.ts(attr::UPDATED_AT)?,
        expires_at: r.expiry()?,
    })
}

fn attempt_item(a: &DeliveryAttempt, endpoint_id: &str) -> Item {
    let (app, delivery) = (a.application_id.as_str(), a.delivery_id.as_str());
    ItemBuilder::key(delivery_pk(delivery), attempt_sk(a.number))
        .s(EP_PK, endpoint_attempts_pk(app, endpoint_id, shard_of(delivery)))
        .s(EP_SK, sort_key(a.started_at, a.id.as_str()))
        .s(attr::ATTEMPT_ID, a.id.as_str())
        .ts(attr::STARTED_AT, a.started_at)
        .n(attr::DURATION_MS, a.duration_ms)
        .s(attr::OUTCOME, a.response_status.to_stored())
        .opt_s(attr::RESPONSE, a.response.clone())
        .opt_s(attr::ERROR, a.error.clone())
        .opt_n(attr::NEXT_DELAY_SECS, a.next_delay_secs)
        .expiry(a.expires_at)
        .build()
}

fn attempt_from(item: &Item, app: &Id) -> StoreResult<DeliveryAttempt> {
    let r = Reader::new(item, "attempt");
    let outcome = r.s(attr::OUTCOME)?;
    Ok(DeliveryAttempt {
        id: r.id(attr::ATTEMPT_ID)?,
        application_id: app.clone(),
        delivery_id: Id::from_stored(r.key_part(PK, "DLV#")?),
        number: r.key_part(SK, ATTEMPT_SK_PREFIX)?.parse().map_err(|_| r.bad(SK, "is not an attempt number"))?,
        started_at: r.ts(attr::STARTED_AT)?,
        duration_ms: r.parse(attr::DURATION_MS)?,
        response_status: ResponseStatus::from_stored(&outcome)
            .ok_or_else(|| r.bad(attr::OUTCOME, "is not a response status"))?,
        response: r.opt_s(attr::RESPONSE)?,
        error: r.opt_s(attr::ERROR)?,
        next_delay_secs: r.opt_parse(attr::NEXT_DELAY_SECS)?,
        expires_at: r.expiry()?,
    })
}

fn state_record_item(app: &str, kind: &str, key: &str, body: &str, version: u64, expires_at: Timestamp) -> Item {
    ItemBuilder::key(state_pk(app), record_sk(kind, key))
        .s(attr::KIND, kind)
        .s(attr::KEY, key)
        .s(attr::BODY, body)
        .n(attr::VERSION, version)
        .expiry(expires_at)
        .build()
}

fn state_record_from(item: &Item) -> StoreResult<StateRecord> {
    let r = Reader::new(item, "control record");
    Ok(StateRecord {
        kind: r.s(attr::KIND)?,
        key: r.s(attr::KEY)?,
        body: r.s(attr::BODY)?,
        version: r.parse(attr::VERSION)?,
        expires_at: r.expiry()?,
    })
}

/// `c0` and `c1` of a counters item.
fn counters_from(item: &Item) -> StoreResult<[u64; 2]> {
    let r = Reader::new(item, "control counters");
    Ok([r.parse(attr::C0)?, r.parse(attr::C1)?])
}

/// What conditional writes on a delivery need to know of its stored state.
struct StoredDelivery {
    status: DeliveryStatus,
    attempt_count: u32,
    retried_by: Option<String>,
    event_id: String,
    endpoint_id: String,
    expires_at: Timestamp,
}

impl StoredDelivery {
    fn from(item: &Item) -> StoreResult<Self> {
        let r = Reader::new(item, "delivery");
        Ok(StoredDelivery {
            status: r.delivery_status(attr::STATUS)?,
            attempt_count: r.parse(attr::ATTEMPT_COUNT)?,
            retried_by: r.opt_s(attr::RETRIED_BY)?,
            event_id: r.s(attr::EVENT_ID)?,
            endpoint_id: r.s(attr::ENDPOINT_ID)?,
            expires_at: r.expiry()?,
        })
    }

    /// "Still as read": same status, attempt count and retried-by.
    fn unchanged(&self) -> Cond {
        Cond::And(vec![
            Cond::Exists,
            Cond::Eq(attr::STATUS, str_av(self.status.as_str())),
            Cond::Eq(attr::ATTEMPT_COUNT, num(self.attempt_count)),
            Cond::AbsentOr(attr::RETRIED_BY, self.retried_by.clone().map(str_av)),
        ])
    }
}

fn visible(expires_at: Timestamp, now: Timestamp) -> bool {
    nanos(expires_at) > nanos(now)
}

/// Exact expiry of an index entry or item (`expiresAt` + `expiresNs`).
fn entry_visible(item: &Item, now: Timestamp) -> StoreResult<bool> {
    Ok(visible(Reader::new(item, "index entry").expiry()?, now))
}

// ---------------------------------------------------------------------------
// Ports

#[async_trait]
impl ApplicationStore for DynamoStore {
    async fn create_application(&self, app: &Application) -> StoreResult<()> {
        if self.put_new(application_item(app)).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("application {} exists", app.id)))
        }
    }

    async fn get_application(&self, id: &Id) -> StoreResult<Option<Application>> {
        self.get(app_pk(id.as_str()), APP_ITEM_SK.into()).await?.as_ref().map(application_from).transpose()
    }

    async fn list_applications(&self, page: &PageRequest) -> StoreResult<Page<Application>> {
        let range = SkRange::default().below(decode_cursor(page)?);
        let merge = self.merge(QuerySpec::index(INDEX_BY_OWNER, range).page_size(page), vec![APPS_OWNER_PK.into()]);
        self.page_of(merge, page, false, application_from, |_| true).await
    }

    async fn update_application(&self, app: &Application) -> StoreResult<bool> {
        self.put_existing(application_item(app)).await
    }

    async fn delete_application(&self, id: &Id) -> StoreResult<bool> {
        let app = id.as_str();
        let existed = self.get(app_pk(app), APP_ITEM_SK.into()).await?.is_some();
        let keys_only = |mut spec: QuerySpec, extra: Vec<&'static str>| {
            spec.projection = Some(extra);
            spec.page_size = MAX_QUERY_PAGE;
            spec
        };
        let mut doomed: Vec<(String, String)> = Vec::new();
        let pair = |item: &Item| (item_s(item, PK).to_string(), item_s(item, SK).to_string());

        // API keys and their hash copies.
        let keys = self
            .query_all(
                keys_only(QuerySpec::index(INDEX_BY_OWNER, SkRange::default()), vec![attr::KEY_HASH]),
                vec![keys_owner_pk(app)],
            )
            .await?;
        for key in &keys {
            doomed.push(pair(key));
            if let Some(AttributeValue::S(hash)) = key.get(attr::KEY_HASH) {
                doomed.push((hash_pk(hash), HASH_ITEM_SK.into()));
            }
        }
        // Events and their idempotency items.
        let shards = |f: fn(&str, u32) -> String| (0..LIST_SHARDS).map(|s| f(app, s)).collect::<Vec<_>>();
        let events = self
            .query_all(
                keys_only(QuerySpec::index(INDEX_BY_APP, SkRange::default()), vec![attr::IDEMPOTENCY_KEY]),
                shards(app_events_pk),
            )
            .await?;
        for event in &events {
            doomed.push(pair(event));
            if let Some(AttributeValue::S(key)) = event.get(attr::IDEMPOTENCY_KEY) {
                doomed.push((idem_pk(app, key), IDEM_ITEM_SK.into()));
            }
        }
        // Deliveries with their attempts (one partition each).
        let deliveries = self
            .query_all(keys_only(QuerySpec::index(INDEX_BY_APP, SkRange::default()), vec![]), shards(app_deliveries_pk))
            .await?;
        let partitions: Vec<String> = deliveries.iter().map(|d| item_s(d, PK).to_string()).collect();
        for chunk in partitions.chunks(64) {
            let items = self.query_all(keys_only(QuerySpec::base(SkRange::default()), vec![]), chunk.to_vec()).await?;
            doomed.extend(items.iter().map(pair));
        }
        // The application's own partition (endpoints, event types), the application item last.
        let own = self.query_all(keys_only(QuerySpec::base(SkRange::default()), vec![]), vec![app_pk(app)]).await?;
        doomed.extend(own.iter().map(pair).filter(|(_, sk)| sk != APP_ITEM_SK));
        // Control state: the records' partition and the counters' shards.
        let mut state = vec![state_pk(app)];
        state.extend((0..LIST_SHARDS).map(|s| counter_pk(app, s)));
        let state = self.query_all(keys_only(QuerySpec::base(SkRange::default()), vec![]), state).await?;
        doomed.extend(state.iter().map(pair));
        self.batch_delete(doomed).await?;
        self.delete(app_pk(app), APP_ITEM_SK.into()).await?;
        Ok(existed)
    }
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let app = key.application_id.as_str();
        let item = api_key_fields(key, ItemBuilder::key(key_pk(key.id.as_str()), KEY_ITEM_SK.into()))
            .s(OWNER_PK, keys_owner_pk(app))
            .s(OWNER_SK, key.id.as_str())
            .build();
        let copy = api_key_fields(key, ItemBuilder::key(hash_pk(&key.key_hash), HASH_ITEM_SK.into())).build();
        let items = vec![self.tx_put(item, Some(Cond::NotExists))?, self.tx_put(copy, Some(Cond::NotExists))?];
        for round in 0..TX_RETRIES {
            match self.transact(items.clone()).await {
                Ok(()) => return Ok(()),
                Err(TxError::Condition(_)) => {
                    return Err(StoreError::Conflict(format!("API key {} or its hash exists", key.id)));
                }
                Err(TxError::Contended) => tokio::time::sleep(backoff(round as u32 + 1)).await,
                Err(TxError::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::Unavailable("API key creation kept conflicting".into()))
    }

    async fn get_api_key(&self, id: &Id) -> StoreResult<Option<ApiKey>> {
        self.get(key_pk(id.as_str()), KEY_ITEM_SK.into()).await?.as_ref().map(api_key_from).transpose()
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        self.get(hash_pk(key_hash), HASH_ITEM_SK.into()).await?.as_ref().map(api_key_from).transpose()
    }

    async fn list_api_keys(&self, app_id: &Id, page: &PageRequest) -> StoreResult<Page<ApiKey>> {
        let range = SkRange::default().below(decode_cursor(page)?);
        let merge =
            self.merge(QuerySpec::index(INDEX_BY_OWNER, range).page_size(page), vec![keys_owner_pk(app_id.as_str())]);
        self.page_of(merge, page, false, api_key_from, |_| true).await
    }

    async fn revoke_api_key(&self, app_id: &Id, id: &Id, at: Timestamp) -> StoreResult<bool> {
        let Some(stored) = self.get_api_key(id).await? else { return Ok(false) };
        if &stored.application_id != app_id {
            return Ok(false);
        }
        let revoke = || {
            let mut u = Updates::default();
            let (n, v) = (u.expr.n(attr::REVOKED_AT), u.expr.v(num(nanos(at))));
            u.expression = format!("SET {n} = if_not_exists({n}, {v})");
            u
        };
        let items = vec![
            self.tx_update(
                key_pk(id.as_str()),
                KEY_ITEM_SK.into(),
                revoke(),
                Cond::And(vec![Cond::Exists, Cond::Eq(attr::APP_ID, str_av(app_id.as_str()))]),
            )?,
            self.tx_update(hash_pk(&stored.key_hash), HASH_ITEM_SK.into(), revoke(), Cond::Exists)?,
        ];
        for round in 0..TX_RETRIES {
            match self.transact(items.clone()).await {
                Ok(()) => return Ok(true),
                Err(TxError::Condition(_)) => return Ok(false),
                Err(TxError::Contended) => tokio::time::sleep(backoff(round as u32 + 1)).await,
                Err(TxError::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::Unavailable("API key revocation kept conflicting".into()))
    }

    async fn touch_api_key(&self, key: &ApiKey, at: Timestamp) -> StoreResult<()> {
        // Two plain updates, no transaction: the field is informational, and
        // a crash between them leaves one copy a minute behind.
        let at_value = num(nanos(at));
        let newer = || {
            Cond::And(vec![
                Cond::Exists,
                Cond::Or(vec![
                    Cond::AbsentOr(attr::LAST_USED_AT, None),
                    Cond::Lt(attr::LAST_USED_AT, at_value.clone()),
                ]),
            ])
        };
        let touch = || {
            let mut u = Updates::default();
            u.set(attr::LAST_USED_AT, at_value.clone());
            u.finish()
        };
        let own_key = Cond::And(vec![newer(), Cond::Eq(attr::APP_ID, str_av(key.application_id.as_str()))]);
        // A failed condition is a newer touch or a deleted key: nothing to do.
        self.update_if(key_pk(key.id.as_str()), KEY_ITEM_SK.into(), touch(), own_key).await?;
        self.update_if(hash_pk(&key.key_hash), HASH_ITEM_SK.into(), touch(), newer()).await?;
        Ok(())
    }
}

#[async_trait]
impl EventTypeStore for DynamoStore {
    async fn create_event_type(&self, event_type: &EventType) -> StoreResult<()> {
        if self.put_new(event_type_item(event_type)?).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("event type {:?} exists", event_type.name)))
        }
    }

    async fn get_event_type(&self, app_id: &Id, name: &str) -> StoreResult<Option<EventType>> {
        self.get(app_pk(app_id.as_str()), event_type_sk(name)).await?.as_ref().map(event_type_from).transpose()
    }

    async fn list_event_types(
        &self,
        app_id: &Id,
        include_archived: bool,
        page: &PageRequest,
    ) -> StoreResult<Page<EventType>> {
        let range = SkRange::default().below(decode_cursor(page)?);
        let mut spec = QuerySpec::index(INDEX_BY_OWNER, range).page_size(page);
        if !include_archived {
            spec.filter.push(Cond::Falsy(attr::ARCHIVED));
        }
        let merge = self.merge(spec, vec![event_types_owner_pk(app_id.as_str())]);
        self.page_of(merge, page, false, event_type_from, |t| include_archived || !t.archived).await
    }

    async fn update_event_type(&self, event_type: &EventType) -> StoreResult<bool> {
        self.put_existing(event_type_item(event_type)?).await
    }

    async fn delete_event_type(&self, app_id: &Id, name: &str) -> StoreResult<bool> {
        self.delete(app_pk(app_id.as_str()), event_type_sk(name)).await
    }
}

#[async_trait]
impl EndpointStore for DynamoStore {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> StoreResult<()> {
        if self.put_new(endpoint_item(endpoint)?).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("endpoint {} exists", endpoint.id)))
        }
    }

    async fn get_endpoint(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Endpoint>> {
        self.get(app_pk(app_id.as_str()), endpoint_sk(id.as_str())).await?.as_ref().map(endpoint_from).transpose()
    }

    async fn list_endpoints(
        &self,
        app_id: &Id,
        filter: &EndpointFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Endpoint>> {
        let range = SkRange::prefix(ENDPOINT_SK_PREFIX).below(decode_cursor(page)?);
        let mut spec = QuerySpec::base(range).page_size(page);
        if let Some(active) = filter.is_active {
            spec.filter.push(Cond::Eq(attr::IS_ACTIVE, AttributeValue::Bool(active)));
        }
        if let Some(event_type) = &filter.event_type {
            spec.filter.push(Cond::EmptyOrContains(attr::EVENT_TYPES, event_type.clone()));
        }
        let merge = self.merge(spec, vec![app_pk(app_id.as_str())]);
        let filter = filter.clone();
        self.page_of(merge, page, false, endpoint_from, move |ep| {
            filter.is_active.is_none_or(|a| ep.is_active == a)
                && filter.event_type.as_deref().is_none_or(|t| ep.subscribes_to(t))
        })
        .await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint, expected_updated_at: Timestamp) -> StoreResult<bool> {
        let mut x = Expr::default();
        let cond = format!(
            "attribute_exists({}) AND {} = {}",
            x.n(PK),
            x.n(attr::UPDATED_AT),
            x.v(num(nanos(expected_updated_at)))
        );
        let result = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(endpoint_item(endpoint)?))
            .condition_expression(cond)
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match sdk_err("PutItem", e) {
                // Missing, or changed since it was read: tell the two apart.
                StoreError::Conflict(_) => match self.get_endpoint(&endpoint.application_id, &endpoint.id).await? {
                    Some(_) => Err(StoreError::Conflict(format!("endpoint {} changed since it was read", endpoint.id))),
                    None => Ok(false),
                },
                other => Err(other),
            },
        }
    }

    async fn delete_endpoint(&self, app_id: &Id, id: &Id) -> StoreResult<bool> {
        self.delete(app_pk(app_id.as_str()), endpoint_sk(id.as_str())).await
    }

    async fn set_endpoint_failing_since(&self, app_id: &Id, id: &Id, since: Option<Timestamp>) -> StoreResult<()> {
        let mut u = Updates::default();
        u.set_opt(attr::FAILING_SINCE, since.map(|t| num(nanos(t))));
        u.bump(attr::UPDATED_AT);
        self.update_existing(app_pk(app_id.as_str()), endpoint_sk(id.as_str()), u.finish()).await?;
        Ok(())
    }

    async fn disable_endpoint(&self, app_id: &Id, id: &Id, reason: &str, at: Timestamp) -> StoreResult<()> {
        let mut u = Updates::default();
        u.set(attr::IS_ACTIVE, AttributeValue::Bool(false));
        u.set(attr::DISABLED_REASON, str_av(reason));
        u.set(attr::UPDATED_AT, num(nanos(at)));
        self.update_existing(app_pk(app_id.as_str()), endpoint_sk(id.as_str()), u.finish()).await?;
        Ok(())
    }

    async fn endpoint_stats(&self, app_id: &Id, id: &Id, since: Timestamp) -> StoreResult<EndpointStats> {
        let now = self.now();
        let (app, ep) = (app_id.as_str(), id.as_str());
        let spec = |projection: Vec<&'static str>| {
            let mut spec = QuerySpec::index(INDEX_BY_ENDPOINT, SkRange::default().at_least(Some(sort_from(since))));
            spec.filter.push(Cond::NotExpired(now_secs(now)));
            spec.projection = Some(projection);
            spec.page_size = MAX_QUERY_PAGE;
            spec
        };
        let delivery_pks = (0..LIST_SHARDS).map(|s| endpoint_deliveries_pk(app, ep, s)).collect();
        let attempt_pks = (0..LIST_SHARDS).map(|s| endpoint_attempts_pk(app, ep, s)).collect();
        let deliveries =
            self.query_all(spec(vec![attr::STATUS, TTL_ATTRIBUTE, EXPIRES_NS_ATTRIBUTE]), delivery_pks).await?;
        let attempts = self
            .query_all(spec(vec![attr::DURATION_MS, attr::OUTCOME, TTL_ATTRIBUTE, EXPIRES_NS_ATTRIBUTE]), attempt_pks)
            .await?;

        let mut stats = EndpointStats { since: Some(since), ..EndpointStats::default() };
        for item in &deliveries {
            if !entry_visible(item, now)? {
                continue;
            }
            stats.deliveries += 1;
            match Reader::new(item, "delivery index entry").delivery_status(attr::STATUS)? {
                DeliveryStatus::Pending => stats.pending += 1,
                DeliveryStatus::Retrying => stats.retrying += 1,
                DeliveryStatus::Succeeded => stats.succeeded += 1,
                DeliveryStatus::Failed => stats.failed += 1,
            }
        }
        // (started_at, duration, ok) of each live attempt, oldest first.
        let mut rows: Vec<(Timestamp, u64, bool)> = Vec::new();
        for item in &attempts {
            if !entry_visible(item, now)? {
                continue;
            }
            let r = Reader::new(item, "attempt index entry");
            let started = parse_sort_ts(item_s(item, EP_SK)).ok_or_else(|| r.bad(EP_SK, "has no timestamp"))?;
            let outcome = r.s(attr::OUTCOME)?;
            let status = ResponseStatus::from_stored(&outcome)
                .ok_or_else(|| r.bad(attr::OUTCOME, "is not a response status"))?;
            rows.push((started, r.parse(attr::DURATION_MS)?, matches!(status, ResponseStatus::Http(200..=299))));
        }
        rows.sort_by_key(|(started, _, _)| nanos(*started));
        if !rows.is_empty() {
            let n = rows.len() as u64;
            stats.attempts = n;
            stats.successful_attempts = rows.iter().filter(|r| r.2).count() as u64;
            stats.failed_attempts = n - stats.successful_attempts;
            let total: u128 = rows.iter().map(|r| u128::from(r.1)).sum();
            stats.avg_latency_ms = Some(total as f64 / n as f64);
            let mut durations: Vec<u64> = rows.iter().map(|r| r.1).collect();
            durations.sort_unstable();
            let rank = (n * 95).div_ceil(100).max(1);
            stats.p95_latency_ms = durations.get((rank - 1) as usize).copied();
            stats.last_success_at = rows.iter().filter(|r| r.2).map(|r| r.0).max();
            stats.last_failure_at = rows.iter().filter(|r| !r.2).map(|r| r.0).max();
            let mut buckets: Vec<(i64, u64, u64, u128)> = Vec::new();
            for (started, duration, ok) in &rows {
                let hour = nanos(*started).div_euclid(NANOS_PER_HOUR);
                if buckets.last().is_none_or(|b| b.0 != hour) {
                    buckets.push((hour, 0, 0, 0));
                }
                if let Some(bucket) = buckets.last_mut() {
                    if *ok {
                        bucket.1 += 1;
                    } else {
                        bucket.2 += 1;
                    }
                    bucket.3 += u128::from(*duration);
                }
            }
            stats.hourly = buckets
                .into_iter()
                .map(|(hour, succeeded, failed, total)| StatsBucket {
                    start: from_nanos(hour.saturating_mul(NANOS_PER_HOUR)),
                    succeeded,
                    failed,
                    avg_latency_ms: Some(total as f64 / (succeeded + failed) as f64),
                })
                .collect();
        }
        Ok(stats)
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn insert_event(&self, event: &Event, idempotency_window_start: Timestamp) -> StoreResult<InsertEvent> {
        let item = event_item(event)?;
        let app = event.application_id.as_str();
        let Some(key) = &event.idempotency_key else {
            return if self.put_new(item).await? {
                Ok(InsertEvent::Created)
            } else {
                Err(StoreError::Conflict(format!("event {} exists", event.id)))
            };
        };
        let window_start = nanos(idempotency_window_start);
        let idem = ItemBuilder::key(idem_pk(app, key), IDEM_ITEM_SK.into())
            .s(attr::EVENT_ID, event.id.as_str())
            .ts(attr::CREATED_AT, event.created_at)
            .expiry(event.expires_at)
            .build();
        // The key is free, or its first use is older than the window; or
        // (after a read) it points at an event that is gone.
        let mut stale: Option<String> = None;
        for round in 0..TX_RETRIES {
            let mut free = vec![Cond::NotExists, Cond::Lt(attr::CREATED_AT, num(window_start))];
            if let Some(stale) = &stale {
                free.push(Cond::Eq(attr::EVENT_ID, str_av(stale.clone())));
            }
            let items = vec![
                self.tx_put(idem.clone(), Some(Cond::Or(free)))?,
                self.tx_put(item.clone(), Some(Cond::NotExists))?,
            ];
            match self.transact(items).await {
                Ok(()) => return Ok(InsertEvent::Created),
                Err(TxError::Contended) => tokio::time::sleep(backoff(round as u32 + 1)).await,
                Err(TxError::Store(e)) => return Err(e),
                Err(err @ TxError::Condition(_)) => {
                    if err.failed(1) {
                        return Err(StoreError::Conflict(format!("event {} exists", event.id)));
                    }
                    let Some(used) = self.get(idem_pk(app, key), IDEM_ITEM_SK.into()).await? else { continue };
                    let r = Reader::new(&used, "idempotency key");
                    let (first_id, first_at) = (r.s(attr::EVENT_ID)?, r.parse::<i64>(attr::CREATED_AT)?);
                    if first_at < window_start {
                        continue;
                    }
                    match self.get_event(&event.application_id, &Id::from_stored(first_id.clone())).await? {
                        Some(first) => return Ok(InsertEvent::Existing(first)),
                        None => stale = Some(first_id),
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!("idempotency key {key:?} kept changing under the insert")))
    }

    async fn get_event(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Event>> {
        let now = self.now();
        let Some(item) = self.get(event_pk(id.as_str()), event_sk(app_id.as_str())).await? else { return Ok(None) };
        let event = event_from(&item)?;
        Ok(visible(event.expires_at, now).then_some(event))
    }

    async fn list_events(&self, app_id: &Id, filter: &EventFilter, page: &PageRequest) -> StoreResult<Page<Event>> {
        let now = self.now();
        let app = app_id.as_str();
        let range = SkRange::default()
            .at_least(filter.from.map(sort_from))
            .below(filter.to.map(sort_from))
            .below(decode_cursor(page)?);
        let mut spec = QuerySpec::index(INDEX_BY_APP, range).page_size(page);
        spec.filter.push(Cond::NotExpired(now_secs(now)));
        if let Some(event_type) = &filter.event_type {
            spec.filter.push(Cond::Eq(attr::EVENT_TYPE, str_av(event_type.clone())));
        }
        let merge = self.merge(spec, (0..LIST_SHARDS).map(|s| app_events_pk(app, s)).collect());
        let filter = filter.clone();
        self.page_of(merge, page, true, event_from, move |e| {
            visible(e.expires_at, now)
                && filter.status.is_none_or(|s| e.status == s)
                && filter.event_type.as_ref().is_none_or(|t| &e.event_type == t)
        })
        .await
    }

    async fn events_awaiting_fanout(&self, limit: usize) -> StoreResult<Vec<Event>> {
        let now = self.now();
        let mut candidates: Vec<(i64, String, (String, String))> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut x = Expr::default();
            let filter = Cond::And(vec![
                Cond::BeginsWith(PK, EVENT_PK_PREFIX.into()),
                Cond::Falsy(attr::FANNED_OUT),
                Cond::NotExpired(now_secs(now)),
            ])
            .render_top(&mut x);
            let projection = [PK, SK, attr::CREATED_AT, TTL_ATTRIBUTE, EXPIRES_NS_ATTRIBUTE]
                .iter()
                .map(|a| x.n(a))
                .collect::<Vec<_>>()
                .join(", ");
            let out = self
                .client
                .scan()
                .table_name(&*self.table)
                .filter_expression(filter)
                .projection_expression(projection)
                .set_exclusive_start_key(start)
                .set_expression_attribute_names(x.names())
                .set_expression_attribute_values(x.values())
                .send()
                .await
                .map_err(|e| sdk_err("Scan", e))?;
            for item in out.items.unwrap_or_default() {
                if !entry_visible(&item, now)? {
                    continue;
                }
                let created: i64 = Reader::new(&item, "event").parse(attr::CREATED_AT)?;
                let (pk, sk) = (item_s(&item, PK).to_string(), item_s(&item, SK).to_string());
                candidates.push((created, pk.clone(), (pk, sk)));
            }
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        candidates.sort();
        let mut events = Vec::new();
        // Fetch a little more than `limit`, in case some are fanned out meanwhile.
        for chunk in candidates.chunks(limit.clamp(1, BATCH_GET_MAX)) {
            let keys: Vec<(String, String)> = chunk.iter().map(|c| c.2.clone()).collect();
            let mut found = self.batch_get(&keys).await?;
            for key in keys {
                if let Some(item) = found.remove(&key) {
                    let event = event_from(&item)?;
                    if !event.fanned_out && visible(event.expires_at, now) {
                        events.push(event);
                    }
                }
            }
            if events.len() >= limit {
                break;
            }
        }
        events.truncate(limit);
        Ok(events)
    }

    async fn mark_event_fanned_out(&self, app_id: &Id, id: &Id, delivery_count: u32) -> StoreResult<()> {
        let mut u = Updates::default();
        u.set(attr::FANNED_OUT, AttributeValue::Bool(true));
        u.set(attr::DELIVERY_COUNT, num(delivery_count));
        self.update_existing(event_pk(id.as_str()), event_sk(app_id.as_str()), u.finish()).await?;
        Ok(())
    }
}

#[async_trait]
impl DeliveryStore for DynamoStore {
    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> StoreResult<()> {
        // Plain conditional puts run concurrently; the few written already
        // final (a transaction each, with their event's counters) follow one
        // by one, so no transaction overlaps another write of this batch
        // (DynamoDB would not mind; emulators that snapshot a table per
        // transaction do).
        let (counted, plain): (Vec<&Delivery>, Vec<&Delivery>) =
            deliveries.iter().partition(|d| d.retried_by.is_none() && d.status.is_final() && d.counts_on_event());
        for chunk in plain.chunks(CONCURRENT_PUTS) {
            let mut set = tokio::task::JoinSet::new();
            for &d in chunk {
                let (store, d) = (self.clone(), d.clone());
                set.spawn(async move { store.insert_delivery(d).await });
            }
            while let Some(joined) = set.join_next().await {
                joined.map_err(|e| StoreError::Unavailable(format!("insert task failed: {e}")))??;
            }
        }
        for d in counted {
            self.insert_delivery(d.clone()).await?;
        }
        Ok(())
    }

    async fn get_delivery(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Delivery>> {
        let now = self.now();
        let Some(item) = self.get_delivery_item(app_id.as_str(), id.as_str()).await? else { return Ok(None) };
        let delivery = delivery_from(&item)?;
        Ok(visible(delivery.expires_at, now).then_some(delivery))
    }

    async fn list_deliveries(
        &self,
        app_id: &Id,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Delivery>> {
        let now = self.now();
        let app = app_id.as_str();
        let mut range = SkRange::default()
            .at_least(filter.from.map(sort_from))
            .below(filter.to.map(sort_from))
            .below(decode_cursor(page)?);
        let (index, pks) = if let Some(event) = &filter.event_id {
            // All deliveries of an event share its shard, and none is older than it.
            let event_time = event
                .as_str()
                .strip_prefix("evt_")
                .and_then(|u| ulid::Ulid::from_string(u).ok())
                .and_then(|u| i64::try_from(u.timestamp_ms()).ok())
                .map(|ms| from_nanos(ms.saturating_mul(1_000_000).saturating_sub(EVENT_DELIVERY_MARGIN_NANOS)));
            range = range.at_least(event_time.map(sort_from));
            (INDEX_BY_APP, vec![app_deliveries_pk(app, shard_of(event.as_str()))])
        } else if let Some(endpoint) = &filter.endpoint_id {
            (INDEX_BY_ENDPOINT, (0..LIST_SHARDS).map(|s| endpoint_deliveries_pk(app, endpoint.as_str(), s)).collect())
        } else {
            (INDEX_BY_APP, (0..LIST_SHARDS).map(|s| app_deliveries_pk(app, s)).collect())
        };
        let mut spec = QuerySpec::index(index, range).page_size(page);
        spec.filter.push(Cond::NotExpired(now_secs(now)));
        if let Some(event_type) = &filter.event_type {
            spec.filter.push(Cond::Eq(attr::EVENT_TYPE, str_av(event_type.clone())));
        }
        if let Some(event) = &filter.event_id {
            spec.filter.push(Cond::Eq(attr::EVENT_ID, str_av(event.as_str())));
            if let Some(endpoint) = &filter.endpoint_id {
                spec.filter.push(Cond::Eq(attr::ENDPOINT_ID, str_av(endpoint.as_str())));
            }
        } else if filter.endpoint_id.is_some()
            && let Some(status) = filter.status
        {
            spec.filter.push(Cond::Eq(attr::STATUS, str_av(status.as_str())));
        }
        let merge = self.merge(spec, pks);
        let filter = filter.clone();
        self.page_of(merge, page, true, delivery_from, move |d| {
            visible(d.expires_at, now)
                && filter.status.is_none_or(|s| d.status == s)
                && filter.event_type.as_ref().is_none_or(|t| &d.event_type == t)
                && filter.event_id.as_ref().is_none_or(|e| &d.event_id == e)
                && filter.endpoint_id.as_ref().is_none_or(|e| &d.endpoint_id == e)
                && filter.from.is_none_or(|from| d.created_at >= from)
                && filter.to.is_none_or(|to| d.created_at < to)
        })
        .await
    }

    async fn list_attempts(&self, app_id: &Id, delivery_id: &Id) -> StoreResult<Vec<DeliveryAttempt>> {
        let now = self.now();
        let items =
            self.query_all(QuerySpec::base(SkRange::default()), vec![delivery_pk(delivery_id.as_str())]).await?;
        let own_delivery = delivery_sk(app_id.as_str());
        if !items.iter().any(|item| item_s(item, SK) == own_delivery) {
            return Ok(Vec::new());
        }
        let mut attempts = items
            .iter()
            .filter(|item| item_s(item, SK).starts_with(ATTEMPT_SK_PREFIX))
            .map(|item| attempt_from(item, app_id))
            .collect::<StoreResult<Vec<_>>>()?;
        attempts.retain(|a| visible(a.expires_at, now));
        attempts.sort_by_key(|a| (a.number, nanos(a.started_at)));
        Ok(attempts)
    }

    async fn record_attempt(&self, record: &AttemptRecord) -> StoreResult<()> {
        let d = &record.delivery;
        let (app, id) = (d.application_id.as_str(), d.id.as_str());
        let mut counts_event = true;
        for round in 0..TX_RETRIES {
            let Some(item) = self.get_delivery_item(app, id).await? else {
                return Err(StoreError::Conflict(format!("delivery {id} does not exist")));
            };
            let stored = StoredDelivery::from(&item)?;
            if stored.attempt_count != record.expected_attempt_count {
                return Err(StoreError::Conflict(format!(
                    "delivery {id} no longer has attempt count {}",
                    record.expected_attempt_count
                )));
            }
            let mut u = Updates::default();
            u.set(attr::STATUS, str_av(d.status.as_str()));
            u.set(attr::ATTEMPT_COUNT, num(d.attempt_count));
            u.set(attr::MAX_ATTEMPTS, num(d.max_attempts));
            u.set_opt(attr::RESPONSE_STATUS, d.response_status.map(|s| str_av(s.to_stored())));
            u.set_opt(attr::RESPONSE_BODY, d.response_body.clone().map(str_av));
            u.set_opt(attr::ERROR_MESSAGE, d.error_message.clone().map(str_av));
            u.set_opt(attr::TIMESTAMP_SENT, d.timestamp_sent.map(num));
            u.set_opt(attr::NEXT_ATTEMPT_AT, d.next_attempt_at.map(|t| num(nanos(t))));
            u.set_opt(attr::DELIVERED_AT, d.delivered_at.map(|t| num(nanos(t))));
            u.set(attr::UPDATED_AT, num(nanos(d.updated_at)));
            if nanos(stored.expires_at) != nanos(d.expires_at) {
                let n = nanos(d.expires_at);
                u.set(TTL_ATTRIBUTE, num(n.div_euclid(NANOS_PER_SEC)));
                u.set(EXPIRES_NS_ATTRIBUTE, num(n.rem_euclid(NANOS_PER_SEC)));
            }
            let mut items = vec![
                self.tx_update(delivery_pk(id), delivery_sk(app), u.finish(), stored.unchanged())?,
                self.tx_put(attempt_item(&record.attempt, &stored.endpoint_id), Some(Cond::NotExists))?,
            ];
            let (after, before) = (outcome(d.status), outcome(stored.status));
            let delta = (0, after.0 - before.0, after.1 - before.1);
            if counts_event && stored.retried_by.is_none() && d.counts_on_event() && delta != (0, 0, 0) {
                items.push(self.tx_event_counters(app, &stored.event_id, delta)?);
            }
            match self.transact(items).await {
                Ok(()) => return Ok(()),
                Err(TxError::Contended) => tokio::time::sleep(backoff(round as u32 + 1)).await,
                Err(TxError::Store(e)) => return Err(e),
                Err(err @ TxError::Condition(_)) => {
                    if err.failed(1) {
                        return Err(StoreError::Conflict(format!(
                            "attempt {} of delivery {id} exists",
                            record.attempt.number
                        )));
                    }
                    if err.failed(2) {
                        // The event is gone (expired, deleted): nothing to count on.
                        counts_event = false;
                    }
                    // Otherwise the delivery moved since it was read: read it again.
                }
            }
        }
        Err(StoreError::Conflict(format!("delivery {id} kept changing while an attempt was recorded")))
    }

    async fn insert_retry(&self, original: &Delivery, retry: &Delivery) -> StoreResult<()> {
        let (app, id) = (original.application_id.as_str(), original.id.as_str());
        let mut counts_event = true;
        for round in 0..TX_RETRIES {
            let Some(item) = self.get_delivery_item(app, id).await? else {
                return Err(StoreError::Conflict(format!("delivery {id} does not exist")));
            };
            let stored = StoredDelivery::from(&item)?;
            if let Some(by) = &stored.retried_by {
                return Err(StoreError::Conflict(format!("delivery {id} was already retried by {by}")));
            }
            let mut u = Updates::default();
            u.set(attr::RETRIED_BY, str_av(retry.id.as_str()));
            u.set(attr::UPDATED_AT, num(nanos(original.updated_at)));
            let mut items = vec![
                self.tx_update(delivery_pk(id), delivery_sk(app), u.finish(), stored.unchanged())?,
                self.tx_put(delivery_item(retry), Some(Cond::NotExists))?,
            ];
            // The original no longer counts; the retry takes its place.
            let (gone, new) = (outcome(stored.status), outcome(retry.status));
            let delta = (0, new.0 - gone.0, new.1 - gone.1);
            if counts_event && original.counts_on_event() && delta != (0, 0, 0) {
                items.push(self.tx_event_counters(app, &stored.event_id, delta)?);
            }
            match self.transact(items).await {
                Ok(()) => return Ok(()),
                Err(TxError::Contended) => tokio::time::sleep(backoff(round as u32 + 1)).await,
                Err(TxError::Store(e)) => return Err(e),
                Err(err @ TxError::Condition(_)) => {
                    if err.failed(1) {
                        return Err(StoreError::Conflict(format!("delivery {} exists", retry.id)));
                    }
                    if err.failed(2) {
                        counts_event = false;
                    }
                }
            }
        }
        Err(StoreError::Conflict(format!("delivery {id} kept changing while it was retried")))
    }

    async fn delete_delivery(&self, app_id: &Id, id: &Id) -> StoreResult<bool> {
        let now = self.now();
        let (app, did) = (app_id.as_str(), id.as_str());
        let mut counts_event = true;
        for round in 0..TX_RETRIES {
            let Some(item) = self.get_delivery_item(app, did).await? else { return Ok(false) };
            let stored = StoredDelivery::from(&item)?;
            if !visible(stored.expires_at, now) {
                return Ok(false);
            }
            let mut items = vec![self.tx_delete(delivery_pk(did), delivery_sk(app), stored.unchanged())?];
            // A delivery superseded by a retry, or a replay's, was never in the counters.
            let replays = made_by_replay(item.get(attr::RETRY_OF).and_then(|v| v.as_s().ok()).map(String::as_str));
            if counts_event && stored.retried_by.is_none() && !replays {
                let (succeeded, failed) = outcome(stored.status);
                items.push(self.tx_event_counters(app, &stored.event_id, (-1, -succeeded, -failed))?);
            }
            match self.transact(items).await {
                Ok(()) => {
                    // Attempts without their delivery are invisible; remove them.
                    let attempts = self
                        .query_all(QuerySpec::base(SkRange::prefix(ATTEMPT_SK_PREFIX)), vec![delivery_pk(did)])
                        .await?;
                    let keys =
                        attempts.iter().map(|a| (item_s(a, PK).to_string(), item_s(a, SK).to_string())).collect();
                    self.batch_delete(keys).await?;
                    return Ok(true);
                }
                Err(TxError::Contended) => tokio::time::sleep(backoff(round as u32 + 1)).await,
                Err(TxError::Store(e)) => return Err(e),
                Err(err @ TxError::Condition(_)) => {
                    if err.failed(1) {
                        counts_event = false;
                    }
                }
            }
        }
        Err(StoreError::Conflict(format!("delivery {did} kept changing while it was deleted")))
    }
}

#[async_trait]
impl ControlStateStore for DynamoStore {
    async fn get_record(&self, app_id: &Id, kind: &str, key: &str) -> StoreResult<Option<StateRecord>> {
        let now = self.now();
        let Some(item) = self.get(state_pk(app_id.as_str()), record_sk(kind, key)).await? else { return Ok(None) };
        let record = state_record_from(&item)?;
        // (`kind#key` could be spelt by another kind whose name holds '#'.)
        Ok((record.kind == kind && record.key == key && visible(record.expires_at, now)).then_some(record))
    }

    async fn put_record(
        &self,
        app_id: &Id,
        kind: &str,
        key: &str,
        body: &str,
        expected_version: u64,
        expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let now = self.now();
        let version = expected_version.saturating_add(1);
        let item = state_record_item(app_id.as_str(), kind, key, body, version, expires_at);
        let condition = if expected_version == 0 {
            Cond::Or(vec![Cond::NotExists, Cond::Expired(now)])
        } else {
            Cond::And(vec![
                Cond::Eq(attr::VERSION, num(expected_version)),
                Cond::Eq(attr::KIND, str_av(kind)),
                Cond::Live(now),
            ])
        };
        self.put_if(item, condition).await
    }

    async fn list_records(
        &self,
        app_id: &Id,
        kind: &str,
        key_prefix: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<StateRecord>> {
        let now = self.now();
        let range = SkRange::prefix(&record_sk(kind, key_prefix)).below(decode_cursor(page)?);
        let mut spec = QuerySpec::base(range).page_size(page);
        spec.filter.push(Cond::NotExpired(now_secs(now)));
        let merge = self.merge(spec, vec![state_pk(app_id.as_str())]);
        let (kind, key_prefix) = (kind.to_string(), key_prefix.to_string());
        self.page_of(merge, page, false, state_record_from, move |r| {
            r.kind == kind && r.key.starts_with(&key_prefix) && visible(r.expires_at, now)
        })
        .await
    }

    async fn get_counters(&self, app_id: &Id, key: &str) -> StoreResult<[u64; 2]> {
        let now = self.now();
        let pk = counter_pk(app_id.as_str(), shard_of(key));
        match self.get(pk, counter_sk(key)).await? {
            Some(item) if entry_visible(&item, now)? => counters_from(&item),
            _ => Ok([0, 0]),
        }
    }

    async fn add_to_counters(
        &self,
        app_id: &Id,
        key: &str,
        deltas: [u64; 2],
        limit: Option<u64>,
        expires_at: Timestamp,
    ) -> StoreResult<Option<[u64; 2]>> {
        let [d0, d1] = deltas;
        // Even a window restarting from zero would exceed it.
        if limit.is_some_and(|limit| d0 > limit) {
            return Ok(None);
        }
        let (app, sk) = (app_id.as_str(), counter_sk(key));
        let pk = counter_pk(app, shard_of(key));
        let exp = nanos(expires_at);
        let (exp_secs, exp_sub) = (num(exp.div_euclid(NANOS_PER_SEC)), num(exp.rem_euclid(NANOS_PER_SEC)));
        for round in 0..TX_RETRIES {
            let now = self.now();
            // Add to the live pair, creating it when there is none.
            let mut add = Updates::default();
            let (c0, c1) = (add.expr.n(attr::C0), add.expr.n(attr::C1));
            let (v0, v1) = (add.expr.v(num(d0)), add.expr.v(num(d1)));
            let (e, ns) = (add.expr.n(TTL_ATTRIBUTE), add.expr.n(EXPIRES_NS_ATTRIBUTE));
            let (ve, vns) = (add.expr.v(exp_secs.clone()), add.expr.v(exp_sub.clone()));
            add.expression = format!(
                "ADD {c0} {v0}, {c1} {v1} SET {e} = if_not_exists({e}, {ve}), {ns} = if_not_exists({ns}, {vns})"
            );
            let mut live = vec![Cond::Live(now)];
            if let Some(limit) = limit {
                live.push(Cond::Le(attr::C0, num(limit - d0)));
            }
            let stood = match self
                .update_if(pk.clone(), sk.clone(), add, Cond::Or(vec![Cond::NotExists, Cond::And(live)]))
                .await?
            {
                Conditional::Done(new) => return counters_from(&new).map(Some),
                Conditional::Failed(Some(old)) => Some(old),
                // An emulator that does not send the item back: read it.
                Conditional::Failed(None) => self.get(pk.clone(), sk.clone()).await?,
            };
            match stood {
                // Live, so the limit refused it.
                Some(old) if entry_visible(&old, now)? => return Ok(None),
                // Expired: restart the window below.
                Some(_) => {}
                // Gone since (TTL, deleted): add again.
                None => continue,
            }
            let mut restart = Updates::default();
            restart.set(attr::C0, num(d0));
            restart.set(attr::C1, num(d1));
            restart.set(TTL_ATTRIBUTE, exp_secs.clone());
            restart.set(EXPIRES_NS_ATTRIBUTE, exp_sub.clone());
            let condition = Cond::And(vec![Cond::Exists, Cond::Expired(now)]);
            match self.update_if(pk.clone(), sk.clone(), restart.finish(), condition).await? {
                Conditional::Done(_) => return Ok(Some(deltas)),
                // Another writer restarted or removed it first: add to what is there now.
                Conditional::Failed(_) => tokio::time::sleep(backoff(round as u32)).await,
            }
        }
        Err(StoreError::Unavailable(format!("counters {key:?} kept changing under the update")))
    }
}

#[async_trait]
impl Store for DynamoStore {
    fn backend_name(&self) -> &'static str {
        "dynamodb"
    }

    /// A strongly consistent `GetItem` of a key no item has (half a read unit).
    async fn ping(&self) -> StoreResult<()> {
        self.get("PING".into(), "PING".into()).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_timestamps_then_sort_keys_order_like_time() {
        let t = chrono::Utc::now();
        let earlier = t - chrono::Duration::nanoseconds(1);
        assert!(sort_ts(earlier) < sort_ts(t));
        assert_eq!(parse_sort_ts(&sort_ts(t)), Some(t));
        let old = from_nanos(-5);
        assert!(sort_ts(old) < sort_ts(from_nanos(0)));
        assert_eq!(parse_sort_ts(&sort_ts(old)), Some(old));
    }

    #[test]
    fn given_event_keys_then_the_stream_helper_reads_them() {
        let now = chrono::Utc::now();
        let (app, event) = (Id::new(IdKind::Application, now), Id::new(IdKind::Event, now));
        let keys =
            HashMap::from([(PK.to_string(), event_pk(event.as_str())), (SK.to_string(), event_sk(app.as_str()))]);
        assert!(is_event_key(&keys[PK]));
        assert_eq!(event_key_from_stream_keys(&keys), Some((app.clone(), event)));
        let delivery =
            HashMap::from([(PK.to_string(), delivery_pk("dlv_x")), (SK.to_string(), delivery_sk(app.as_str()))]);
        assert!(!is_event_key(&delivery[PK]));
        assert_eq!(event_key_from_stream_keys(&delivery), None);
    }

    #[test]
    fn given_ranges_then_prefix_and_bounds_combine() {
        let r = SkRange::prefix("EP#").below(Some("EP#b".into()));
        assert_eq!((r.lo.as_deref(), r.hi.as_deref()), (Some("EP#"), Some("EP#b")));
        assert!(SkRange::default().at_least(Some("b".into())).below(Some("a".into())).is_empty());
        assert_eq!(prefix_end("EP#"), "EP$");
    }
}
