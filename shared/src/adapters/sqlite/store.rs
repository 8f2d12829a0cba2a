//! The `Store` port on SQLite (rusqlite, bundled).
//!
//! - One writer connection on its own thread with group commit: the writes
//!   waiting at a time share one `BEGIN IMMEDIATE` transaction (each in its
//!   own savepoint) and one fsync; a small pool of read-only connections (WAL
//!   lets them read while the writer writes).
//! - WAL with `synchronous=FULL`: a committed write is fsync'd, so a 202 means
//!   the event survives a power cut.
//! - rusqlite blocks, so reads run in `tokio::task::spawn_blocking` and writes
//!   on the writer thread; no async task ever blocks on SQLite.
//! - Every column the adapter filters or sorts on is a real column, and so is
//!   every field the domain keeps out of its JSON (`#[serde(skip)]`); only
//!   nested values (payload, schema, headers, metadata, scopes, event types)
//!   are JSON text, and so are an endpoint's delivery controls with its
//!   signing keys (one `controls` document, [`controls_to_stored`]; NULL =
//!   defaults, so rows written before the column existed read as defaults).
//! - Control state ([`ControlStateStore`]): `control_records` (versioned
//!   records, key (application, kind, key)) and `control_counters` (pairs of
//!   counters, key (application, key)), both `WITHOUT ROWID`; each write is
//!   one writer job, so a read-check-write in it is atomic. Rows whose
//!   `expires_at` has passed count as absent and are removed by
//!   [`SqliteStore::purge_expired`].
//! - Timestamps are stored as integer nanoseconds since the epoch (exact
//!   round-trip, cheap comparisons).
//!
//! Event counters keep one invariant: `succeeded_count` / `failed_count` count
//! the event's deliveries that are final and not superseded by a manual retry
//! (`retried_by IS NULL`), and `status` is always `Event::derive_status()` of
//! the counters (recomputed in the transaction that changes them).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{Type, Value};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};
use serde::de::DeserializeOwned;

use crate::domain::controls::{controls_from_stored, controls_to_stored};
use crate::domain::delivery::made_by_replay;
use crate::domain::{
    ApiKey, Application, Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, Event, EventStatus, EventType, Id,
    PayloadFormat, ResponseStatus, Timestamp,
};
use crate::ports::Clock;
use crate::ports::control_state::{ControlStateStore, StateRecord};
use crate::ports::store::{
    ApiKeyStore, ApplicationStore, AttemptRecord, DeliveryFilter, DeliveryStore, EndpointFilter, EndpointStats,
    EndpointStore, EventFilter, EventStore, EventTypeStore, InsertEvent, Page, PageRequest, StatsBucket, Store,
    StoreError, StoreResult,
};

/// `PRAGMA user_version` of the schema this build writes. 2: no
/// `attempts_by_app` index (every attempt paid for it; only application
/// deletion read it, which now goes through the application's deliveries).
const SCHEMA_VERSION: i64 = 2;
/// Two readers: reads are ~3 % of a core each under load, and every reader
/// thread costs its page cache plus a malloc arena of its own (4 → 2 saved
/// ~3 MiB of peak RSS at no measurable throughput, docs/PERFORMANCE.md).
const READER_CONNECTIONS: usize = 2;
/// Page cache per connection, in KiB (SQLite's default is 2,000). The OS
/// page cache holds the file anyway; the writer keeps more because it
/// descends a dozen b-trees per commit and revisits their right-hand edges.
const READER_CACHE_KIB: i64 = 512;
const WRITER_CACHE_KIB: i64 = 1024;
/// Rows per table deleted by one write of [`SqliteStore::purge_expired`].
const PURGE_CHUNK: usize = 2_000;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The store's and a shared queue's statements all fit (both use the writer).
const STATEMENT_CACHE: usize = 128;
const NANOS_PER_HOUR: i64 = 3_600 * 1_000_000_000;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS applications (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    retention_days  INTEGER NOT NULL,
    rate_limit      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    last4           TEXT NOT NULL,
    key_hash        TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    last_used_at    INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_by_hash ON api_keys (key_hash);
CREATE INDEX IF NOT EXISTS api_keys_by_app ON api_keys (application_id, id);

CREATE TABLE IF NOT EXISTS event_types (
    application_id  TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT,
    schema          TEXT,
    archived        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (application_id, name)
);

CREATE TABLE IF NOT EXISTS endpoints (
    id                          TEXT PRIMARY KEY,
    application_id              TEXT NOT NULL,
    url                         TEXT NOT NULL,
    description                 TEXT,
    event_types                 TEXT NOT NULL,
    headers                     TEXT NOT NULL,
    max_attempts                INTEGER NOT NULL,
    timeout_secs                INTEGER NOT NULL,
    payload_format              TEXT NOT NULL,
    is_active                   INTEGER NOT NULL,
    disabled_reason             TEXT,
    metadata                    TEXT NOT NULL,
    secret_encrypted            TEXT NOT NULL,
    secret_last4                TEXT NOT NULL,
    previous_secret_encrypted   TEXT,
    previous_secret_expires_at  INTEGER,
    failing_since               INTEGER,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    controls                    TEXT
);
CREATE INDEX IF NOT EXISTS endpoints_by_app ON endpoints (application_id, id);

CREATE TABLE IF NOT EXISTS events (
    id                  TEXT PRIMARY KEY,
    application_id      TEXT NOT NULL,
    event_type          TEXT NOT NULL,
    payload             TEXT NOT NULL,
    idempotency_key     TEXT,
    request_hash        TEXT NOT NULL,
    target_endpoint_id  TEXT,
    status              TEXT NOT NULL,
    fanned_out          INTEGER NOT NULL,
    delivery_count      INTEGER NOT NULL,
    succeeded_count     INTEGER NOT NULL,
    failed_count        INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_app ON events (application_id, id);
CREATE INDEX IF NOT EXISTS events_by_idempotency_key ON events (application_id, idempotency_key, created_at)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_awaiting_fanout ON events (created_at, id) WHERE fanned_out = 0;
CREATE INDEX IF NOT EXISTS events_by_expiry ON events (expires_at);

CREATE TABLE IF NOT EXISTS deliveries (
    id               TEXT PRIMARY KEY,
    application_id   TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempt_count    INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    response_status  TEXT,
    response_body    TEXT,
    error_message    TEXT,
    timestamp_sent   INTEGER,
    next_attempt_at  INTEGER,
    retry_of         TEXT,
    retried_by       TEXT,
    delivered_at     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_app ON deliveries (application_id, id);
CREATE INDEX IF NOT EXISTS deliveries_by_endpoint ON deliveries (application_id, endpoint_id, id);
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (application_id, event_id, id);
CREATE INDEX IF NOT EXISTS deliveries_by_endpoint_time ON deliveries (endpoint_id, created_at);
CREATE INDEX IF NOT EXISTS deliveries_by_expiry ON deliveries (expires_at);

CREATE TABLE IF NOT EXISTS attempts (
    id               TEXT PRIMARY KEY,
    application_id   TEXT NOT NULL,
    delivery_id      TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    number           INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    response_status  TEXT NOT NULL,
    http_status      INTEGER,
    response         TEXT,
    error            TEXT,
    next_delay_secs  INTEGER,
    expires_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON attempts (delivery_id, number);
CREATE INDEX IF NOT EXISTS attempts_by_endpoint_time ON attempts (endpoint_id, started_at);
CREATE INDEX IF NOT EXISTS attempts_by_expiry ON attempts (expires_at);

CREATE TABLE IF NOT EXISTS control_records (
    application_id  TEXT NOT NULL,
    kind            TEXT NOT NULL,
    key             TEXT NOT NULL,
    body            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    PRIMARY KEY (application_id, kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS control_records_by_expiry ON control_records (expires_at);

CREATE TABLE IF NOT EXISTS control_counters (
    application_id  TEXT NOT NULL,
    key             TEXT NOT NULL,
    c0              INTEGER NOT NULL,
    c1              INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    PRIMARY KEY (application_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS control_counters_by_expiry ON control_counters (expires_at);
"#;

/// `events.status` from the counters, exactly as `Event::derive_status`,
/// for an `UPDATE events SET … status = {}` whose counters become `fanned`,
/// `delivered`, `succeeded` and `failed` (SQL expressions over the old row:
/// the right-hand sides of one `UPDATE` all see the row as it was, so the
/// counters and the status they imply are one row write, not two).
fn event_status_sql(fanned: &str, delivered: &str, succeeded: &str, failed: &str) -> String {
    format!(
        "CASE WHEN ({fanned}) = 0 OR ({succeeded}) + ({failed}) < ({delivered}) THEN 'pending' \
         WHEN ({failed}) > 0 THEN 'failed' ELSE 'succeeded' END"
    )
}

/// An attempt counts as a success when the endpoint answered 2xx.
const ATTEMPT_OK: &str = "(COALESCE(http_status, 0) BETWEEN 200 AND 299)";

const APP_COLS: &str = "id, name, retention_days, rate_limit, created_at, updated_at";
const KEY_COLS: &str =
    "id, application_id, name, prefix, last4, key_hash, scopes, created_at, revoked_at, last_used_at";
const EVENT_TYPE_COLS: &str = "application_id, name, description, schema, archived, created_at, updated_at";
const ENDPOINT_COLS: &str = "id, application_id, url, description, event_types, headers, max_attempts, timeout_secs, \
     payload_format, is_active, disabled_reason, metadata, secret_encrypted, secret_last4, previous_secret_encrypted, \
     previous_secret_expires_at, failing_since, created_at, updated_at, controls";
const EVENT_COLS: &str = "id, application_id, event_type, payload, idempotency_key, request_hash, target_endpoint_id, \
     status, fanned_out, delivery_count, succeeded_count, failed_count, created_at, expires_at";
const DELIVERY_COLS: &str = "id, application_id, event_id, endpoint_id, event_type, status, attempt_count, \
     max_attempts, response_status, response_body, error_message, timestamp_sent, next_attempt_at, retry_of, \
     retried_by, delivered_at, created_at, updated_at, expires_at";
const ATTEMPT_COLS: &str = "id, application_id, delivery_id, number, started_at, duration_ms, response_status, \
     response, error, next_delay_secs, expires_at";
const RECORD_COLS: &str = "kind, key, body, version, expires_at";

/// The embedded store. Cheap to clone (shared connections).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Shared with queues opened by [`super::SqliteQueue::open_with_store`].
    writer: Arc<GroupWriter>,
    readers: ReaderPool,
    clock: Arc<dyn Clock>,
    path: PathBuf,
    cache: Caches,
    /// Declared last: removes the files of `open_in_memory` after the
    /// connections above are closed.
    _temp: Option<TempFiles>,
}

/// Deletes a throw-away database (and its WAL/SHM files) when dropped.
struct TempFiles(PathBuf);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Point lookups that the hot paths repeat — every publish authenticates its
/// API key and reads its event type and application, every delivery reads
/// its endpoint — answered from memory for up to [`CACHE_TTL`].
///
/// Exact for this process: every write through this store that can change
/// a cached kind clears that kind once the write has committed, and a read
/// that raced with such a write does not fill the cache (generation check),
/// so a revoked key or a disabled endpoint is seen at once. The TTL only
/// bounds staleness from writers outside this process (another process on
/// the same file). Misses are not cached; each kind holds at most
/// [`CACHE_CAPACITY`] entries.
struct Cache<K, V> {
    entries: Mutex<CacheEntries<K, V>>,
}

/// The generation (bumped by every clear) and the entries with their age.
type CacheEntries<K, V> = (u64, std::collections::HashMap<K, (std::time::Instant, V)>);

const CACHE_TTL: Duration = Duration::from_secs(2);
const CACHE_CAPACITY: usize = 1024;

impl<K: std::hash::Hash + Eq, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Cache { entries: Mutex::new((0, std::collections::HashMap::new())) }
    }

    fn lock(&self) -> MutexGuard<'_, CacheEntries<K, V>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh entry, or the generation to pass to [`Cache::fill`] after reading.
    fn get(&self, key: &K) -> Result<V, u64> {
        let guard = self.lock();
        match guard.1.get(key) {
            Some((at, value)) if at.elapsed() < CACHE_TTL => Ok(value.clone()),
            _ => Err(guard.0),
        }
    }

    /// Remembers a value read from the database, unless a write cleared the
    /// cache since the read started.
    fn fill(&self, generation: u64, key: K, value: &V) {
        let mut guard = self.lock();
        if guard.0 != generation {
            return;
        }
        if guard.1.len() >= CACHE_CAPACITY {
            guard.1.clear();
        }
        guard.1.insert(key, (std::time::Instant::now(), value.clone()));
    }

    fn clear(&self) {
        let mut guard = self.lock();
        guard.0 += 1;
        guard.1.clear();
    }
}

/// The caches of [`Inner`], one per kind.
struct Caches {
    applications: Cache<Id, Application>,
    api_keys_by_hash: Cache<String, ApiKey>,
    api_keys: Cache<Id, ApiKey>,
    event_types: Cache<(Id, String), EventType>,
    endpoints: Cache<(Id, Id), Endpoint>,
}

impl Caches {
    fn new() -> Self {
        Caches {
            applications: Cache::new(),
            api_keys_by_hash: Cache::new(),
            api_keys: Cache::new(),
            event_types: Cache::new(),
            endpoints: Cache::new(),
        }
    }

    fn clear_api_keys(&self) {
        self.api_keys_by_hash.clear();
        self.api_keys.clear();
    }

    fn clear_all(&self) {
        self.applications.clear();
        self.clear_api_keys();
        self.event_types.clear();
        self.endpoints.clear();
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and its schema.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::open_with(path, clock, None)
    }

    /// A private, throw-away database for tests: a uniquely named file in the
    /// temp dir (so several connections share it, in WAL mode), deleted when
    /// the last clone of the store is dropped.
    pub fn open_in_memory(clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let name = format!(
            "skyhook-store-{}-{}-{}.sqlite",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let guard = TempFiles(path.clone());
        Self::open_with(&path, clock, Some(guard))
    }

    fn open_with(path: &Path, clock: Arc<dyn Clock>, temp: Option<TempFiles>) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("cannot create the directory {}: {e}", parent.display()))
            })?;
        }
        let mut writer = open_connection(path, false).map_err(map_err)?;
        migrate(&mut writer)?;
        let writer = Arc::new(
            GroupWriter::spawn(writer, "skyhook-store-writer")
                .map_err(|e| StoreError::Unavailable(format!("cannot start the store writer: {e}")))?,
        );
        let readers = (0..READER_CONNECTIONS)
            .map(|_| open_connection(path, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        let readers = ReaderPool::spawn(readers, "skyhook-store-reader")
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store readers: {e}")))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer,
                readers,
                clock,
                path: path.to_path_buf(),
                cache: Caches::new(),
                _temp: temp,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The writer thread, for a queue in the same file: the store's and the
    /// queue's writes then share one transaction and one fsync instead of
    /// taking turns on SQLite's write lock.
    pub(super) fn writer(&self) -> Arc<GroupWriter> {
        Arc::clone(&self.inner.writer)
    }

    /// Physically deletes events, deliveries, attempts, control records and
    /// control counters whose `expires_at` has passed (the embedded stand-in
    /// for DynamoDB TTL). Returns how many rows went. Runs in chunks of
    /// [`PURGE_CHUNK`] rows per table, one write each, so other writes are
    /// never held up behind one long delete.
    pub async fn purge_expired(&self) -> StoreResult<u64> {
        let mut removed = 0u64;
        loop {
            let (chunk, more) = self.purge_expired_chunk(PURGE_CHUNK).await?;
            removed += chunk;
            if !more {
                return Ok(removed);
            }
        }
    }

    /// Deletes up to `limit` expired rows from each table in one write;
    /// how many went, and whether some table may have more.
    async fn purge_expired_chunk(&self, limit: usize) -> StoreResult<(u64, bool)> {
        self.write(move |tx, now| {
            let (mut removed, mut more) = (0u64, false);
            for (table, key) in [
                ("attempts", "rowid"),
                ("deliveries", "rowid"),
                ("events", "rowid"),
                ("control_records", "application_id, kind, key"),
                ("control_counters", "application_id, key"),
            ] {
                let sql = format!(
                    "DELETE FROM {table} WHERE ({key}) IN \
                     (SELECT {key} FROM {table} WHERE expires_at <= ?1 LIMIT ?2)"
                );
                let n = tx.prepare_cached(&sql)?.execute(params![now, limit as i64])?;
                removed += n as u64;
                more |= n == limit;
            }
            Ok((removed, more))
        })
        .await
    }

    /// Runs `f` on a reader connection, with the clock's `now` in nanoseconds.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, i64) -> Result<T, Failure> + Send + 'static,
    {
        let now = ts(self.inner.clock.now());
        match self.inner.readers.run(move |conn| f(conn, now).map_err(Failure::into_store)).await {
            Ok(result) => result,
            Err(message) => Err(StoreError::Unavailable(message)),
        }
    }

    /// Runs `f` on the writer inside one transaction (shared with whatever
    /// other writes are waiting: group commit) and answers once it is
    /// committed. An `Err` from `f` rolls back only `f`'s own changes.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, i64) -> Result<T, Failure> + Send + 'static,
    {
        let now = ts(self.inner.clock.now());
        match self.inner.writer.run(move |conn| f(conn, now).map_err(Failure::into_store)).await {
            Ok(result) => result,
            Err(message) => Err(StoreError::Unavailable(message)),
        }
    }
}

fn open_connection(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    configure_connection(&conn)?;
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    } else {
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    }
    Ok(conn)
}

/// WAL, fsync on every commit, foreign keys, busy timeout. Shared with the queue.
pub(super) fn configure_connection(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("journal_mode is {mode}, WAL is required")),
        ));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Every job of a group commit runs in its own SAVEPOINT, whose statement
    // journal SQLite otherwise writes to a temp file: that was 15 % of the
    // writer thread's CPU under load. In memory it is a few pages per job,
    // freed at RELEASE; durability is the WAL's and does not depend on it.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_err)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(map_err)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "the database has schema version {version}; this build knows up to {SCHEMA_VERSION}"
        )));
    }
    tx.execute_batch(SCHEMA).map_err(map_err)?;
    tx.execute_batch("DROP INDEX IF EXISTS attempts_by_app").map_err(map_err)?;
    add_column_if_missing(&tx, "endpoints", "controls", "TEXT").map_err(map_err)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(map_err)?;
    tx.commit().map_err(map_err)
}

/// Adds a nullable column that databases created by earlier builds lack
/// (`CREATE TABLE IF NOT EXISTS` leaves their tables as they were).
fn add_column_if_missing(tx: &Connection, table: &str, column: &str, decl: &str) -> rusqlite::Result<()> {
    let exists =
        tx.prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))?.exists([column])?;
    if !exists {
        tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Group commit

/// Dedicated threads that own the read-only connections and take reads
/// from one queue. Compared with a blocking-pool task per read, no thread
/// is started or woken for a read that a busy reader can take next, the
/// connections need no lock, and the thread count stays fixed (the blocking
/// pool grew to ~80 threads under load, each with its own stack and malloc
/// arena).
struct ReaderPool {
    jobs: Option<mpsc::Sender<ReadJob>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

impl ReaderPool {
    fn spawn(connections: Vec<Connection>, thread_name: &str) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<ReadJob>();
        let queue = Arc::new(Mutex::new(queue));
        let mut threads = Vec::with_capacity(connections.len());
        for conn in connections {
            let queue = Arc::clone(&queue);
            threads.push(std::thread::Builder::new().name(thread_name.to_string()).spawn(move || {
                loop {
                    // One idle reader waits in `recv` holding the lock; the
                    // others wait for the lock. A poisoned lock only means
                    // a job panicked on another reader.
                    let next = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
                    let Ok(job) = next else { return };
                    // A panicking read drops its reply (its caller sees an
                    // error); the reader carries on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&conn)));
                }
            })?);
        }
        Ok(ReaderPool { jobs: Some(jobs), threads })
    }

    /// Runs `work` on the next free reader.
    async fn run<T, F>(&self, work: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> T + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or_else(|| "the store is closed".to_string())?;
        jobs.send(Box::new(move |conn: &Connection| {
            let _ = reply.send(work(conn));
        }))
        .map_err(|_| "the store is closed".to_string())?;
        answer.await.map_err(|_| "a store reader dropped the call".to_string())
    }
}

impl Drop for ReaderPool {
    /// Lets the readers finish what is queued and close their connections.
    fn drop(&mut self) {
        self.jobs.take();
        let current = std::thread::current().id();
        for thread in self.threads.drain(..).filter(|t| t.thread().id() != current) {
            let _ = thread.join();
        }
    }
}

/// A dedicated thread that owns a writer connection. Callers hand it work;
/// it takes every call that is waiting, runs each in its own savepoint of one
/// `BEGIN IMMEDIATE` transaction, commits (one fsync) and only then answers
/// them all. With `synchronous=FULL` every answered write is on disk, and
/// concurrent writes share the fsync. Shared by the store and the queue.
pub(super) struct GroupWriter {
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Called after the batch's COMMIT with its error, if it failed.
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

trait Job: Send {
    /// Runs the work; `false` when it failed (its savepoint is rolled back).
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Finish);
    /// Answers without running (the transaction could not start).
    fn fail(self: Box<Self>, message: String);
}

/// The answer to a job: `Err` when the transaction itself failed.
type JobReply<T, E> = tokio::sync::oneshot::Sender<Result<Result<T, E>, String>>;

struct TypedJob<T, E, F> {
    work: F,
    reply: JobReply<T, E>,
}

impl<T, E, F> Job for TypedJob<T, E, F>
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Finish) {
        let TypedJob { work, reply } = *self;
        let result = work(conn);
        let ok = result.is_ok();
        let finish: Finish = Box::new(move |commit_error| {
            let answer = match commit_error {
                Some(e) if ok => Err(format!("commit failed: {e}")),
                _ => Ok(result),
            };
            let _ = reply.send(answer);
        });
        (ok, finish)
    }

    fn fail(self: Box<Self>, message: String) {
        let _ = self.reply.send(Err(message));
    }
}

/// Most calls committed together (one fsync for all of them).
const MAX_GROUP: usize = 512;

impl GroupWriter {
    pub(super) fn spawn(conn: Connection, thread_name: &str) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let thread =
            std::thread::Builder::new().name(thread_name.to_string()).spawn(move || group_worker(conn, queue))?;
        Ok(GroupWriter { jobs: Some(jobs), thread: Some(thread) })
    }

    /// Runs `work` in the next group transaction. The outer `Err` is a
    /// failure of the transaction itself (begin/commit/worker gone).
    pub(super) async fn run<T, E, F>(&self, work: F) -> Result<Result<T, E>, String>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or_else(|| "the writer has stopped".to_string())?;
        jobs.send(Box::new(TypedJob { work, reply })).map_err(|_| "the writer has stopped".to_string())?;
        answer.await.map_err(|_| "the writer dropped the call".to_string())?
    }
}

impl Drop for GroupWriter {
    /// Lets the thread finish what it has and close the connection.
    fn drop(&mut self) {
        self.jobs.take();
        let current = std::thread::current().id();
        if let Some(thread) = self.thread.take().filter(|t| t.thread().id() != current) {
            let _ = thread.join();
        }
    }
}

fn group_worker(conn: Connection, jobs: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let message = e.to_string();
            batch.into_iter().for_each(|job| job.fail(message.clone()));
            continue;
        }
        let mut finishers = Vec::with_capacity(batch.len());
        for job in batch {
            // Prepared once (statement cache), not parsed again per call.
            if let Err(e) = conn.prepare_cached("SAVEPOINT job").and_then(|mut s| s.execute([])) {
                job.fail(e.to_string());
                continue;
            }
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(&conn)));
            let ok = match ran {
                Ok((ok, finish)) => {
                    finishers.push(finish);
                    ok
                }
                // The reply channel went with the job: its caller sees the writer drop the call.
                Err(_) => false,
            };
            let end = if ok {
                conn.prepare_cached("RELEASE job").and_then(|mut s| s.execute([])).map(|_| ())
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "cannot end a write savepoint");
            }
        }
        let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let commit_error = commit.as_ref().err().map(String::as_str);
        for finish in finishers {
            finish(commit_error);
        }
    }
}

// ---------------------------------------------------------------------------
// Errors

/// What a closure run on a connection can fail with.
enum Failure {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl Failure {
    fn into_store(self) -> StoreError {
        match self {
            Failure::Sql(e) => map_err(e),
            Failure::Store(e) => e,
        }
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::ConstraintViolation => StoreError::Conflict(e.to_string()),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn conflict(message: impl Into<String>) -> Failure {
    Failure::Store(StoreError::Conflict(message.into()))
}

fn corrupt(idx: usize, message: impl Into<String>) -> rusqlite::Error {
    let message: String = message.into();
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, message.into())
}

// ---------------------------------------------------------------------------
// Value conversions

fn ts(t: Timestamp) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

fn opt_ts(t: Option<Timestamp>) -> Option<i64> {
    t.map(ts)
}

fn from_ts(nanos: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_nanos(nanos)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::Store(StoreError::Corrupt(format!("cannot encode JSON: {e}"))))
}

fn get_ts(row: &Row<'_>, idx: usize) -> rusqlite::Result<Timestamp> {
    row.get::<_, i64>(idx).map(from_ts)
}

fn get_opt_ts(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(idx)?.map(from_ts))
}

fn get_id(row: &Row<'_>, idx: usize) -> rusqlite::Result<Id> {
    row.get::<_, String>(idx).map(Id::from_stored)
}

fn get_opt_id(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Id>> {
    Ok(row.get::<_, Option<String>>(idx)?.map(Id::from_stored))
}

fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

fn get_json<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| corrupt(idx, format!("bad JSON: {e}")))
}

fn get_opt_json<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<T>> {
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| corrupt(idx, format!("bad JSON: {e}"))),
    }
}

fn get_response_status(row: &Row<'_>, idx: usize) -> rusqlite::Result<ResponseStatus> {
    let text: String = row.get(idx)?;
    ResponseStatus::from_stored(&text).ok_or_else(|| corrupt(idx, format!("bad response status {text:?}")))
}

fn get_opt_response_status(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<ResponseStatus>> {
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(text) => ResponseStatus::from_stored(&text)
            .map(Some)
            .ok_or_else(|| corrupt(idx, format!("bad response status {text:?}"))),
    }
}

fn payload_format_str(format: PayloadFormat) -> &'static str {
    match format {
        PayloadFormat::Standard => "standard",
        PayloadFormat::Raw => "raw",
    }
}

fn http_status(status: ResponseStatus) -> Option<i64> {
    match status {
        ResponseStatus::Http(code) => Some(i64::from(code)),
        ResponseStatus::Error(_) => None,
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

fn parse_delivery_status(idx: usize, text: &str) -> rusqlite::Result<DeliveryStatus> {
    DeliveryStatus::parse(text).ok_or_else(|| corrupt(idx, format!("bad delivery status {text:?}")))
}

// ---------------------------------------------------------------------------
// Rows

fn application_from_row(row: &Row<'_>) -> rusqlite::Result<Application> {
    Ok(Application {
        id: get_id(row, 0)?,
        name: row.get(1)?,
        retention_days: row.get(2)?,
        rate_limit: row.get(3)?,
        created_at: get_ts(row, 4)?,
        updated_at: get_ts(row, 5)?,
    })
}

fn api_key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: get_id(row, 0)?,
        application_id: get_id(row, 1)?,
        name: row.get(2)?,
        prefix: row.get(3)?,
        last4: row.get(4)?,
        key_hash: row.get(5)?,
        scopes: get_json(row, 6)?,
        created_at: get_ts(row, 7)?,
        revoked_at: get_opt_ts(row, 8)?,
        last_used_at: get_opt_ts(row, 9)?,
    })
}

fn event_type_from_row(row: &Row<'_>) -> rusqlite::Result<EventType> {
    Ok(EventType {
        application_id: get_id(row, 0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        schema: get_opt_json(row, 3)?,
        archived: row.get(4)?,
        created_at: get_ts(row, 5)?,
        updated_at: get_ts(row, 6)?,
    })
}

fn endpoint_from_row(row: &Row<'_>) -> rusqlite::Result<Endpoint> {
    let format: String = row.get(8)?;
    let payload_format = match format.as_str() {
        "standard" => PayloadFormat::Standard,
        "raw" => PayloadFormat::Raw,
        other => return Err(corrupt(8, format!("bad payload format {other:?}"))),
    };
    let stored: Option<String> = row.get(19)?;
    let (controls, signing_keys) = controls_from_stored(stored.as_deref()).map_err(|e| corrupt(19, e))?;
    Ok(Endpoint {
        id: get_id(row, 0)?,
        application_id: get_id(row, 1)?,
        url: row.get(2)?,
        description: row.get(3)?,
        event_types: get_json(row, 4)?,
        headers: get_json(row, 5)?,
        max_attempts: row.get(6)?,
        timeout_secs: row.get(7)?,
        payload_format,
        is_active: row.get(9)?,
        disabled_reason: row.get(10)?,
        metadata: get_json(row, 11)?,
        secret_encrypted: row.get(12)?,
        secret_last4: row.get(13)?,
        previous_secret_encrypted: row.get(14)?,
        previous_secret_expires_at: get_opt_ts(row, 15)?,
        failing_since: get_opt_ts(row, 16)?,
        controls,
        signing_keys,
        created_at: get_ts(row, 17)?,
        updated_at: get_ts(row, 18)?,
    })
}

fn state_record_from_row(row: &Row<'_>) -> rusqlite::Result<StateRecord> {
    Ok(StateRecord {
        kind: row.get(0)?,
        key: row.get(1)?,
        body: row.get(2)?,
        version: get_u64(row, 3)?,
        expires_at: get_ts(row, 4)?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let status: String = row.get(7)?;
    let status = EventStatus::parse(&status).ok_or_else(|| corrupt(7, format!("bad event status {status:?}")))?;
    Ok(Event {
        id: get_id(row, 0)?,
        application_id: get_id(row, 1)?,
        event_type: row.get(2)?,
        payload: get_json(row, 3)?,
        idempotency_key: row.get(4)?,
        request_hash: row.get(5)?,
        target_endpoint_id: get_opt_id(row, 6)?,
        status,
        fanned_out: row.get(8)?,
        delivery_count: row.get(9)?,
        succeeded_count: row.get(10)?,
        failed_count: row.get(11)?,
        created_at: get_ts(row, 12)?,
        expires_at: get_ts(row, 13)?,
    })
}

fn delivery_from_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let status: String = row.get(5)?;
    Ok(Delivery {
        id: get_id(row, 0)?,
        application_id: get_id(row, 1)?,
        event_id: get_id(row, 2)?,
        endpoint_id: get_id(row, 3)?,
        event_type: row.get(4)?,
        status: parse_delivery_status(5, &status)?,
        attempt_count: row.get(6)?,
        max_attempts: row.get(7)?,
        response_status: get_opt_response_status(row, 8)?,
        response_body: row.get(9)?,
        error_message: row.get(10)?,
        timestamp_sent: row.get(11)?,
        next_attempt_at: get_opt_ts(row, 12)?,
        retry_of: get_opt_id(row, 13)?,
        retried_by: get_opt_id(row, 14)?,
        delivered_at: get_opt_ts(row, 15)?,
        created_at: get_ts(row, 16)?,
        updated_at: get_ts(row, 17)?,
        expires_at: get_ts(row, 18)?,
    })
}

fn attempt_from_row(row: &Row<'_>) -> rusqlite::Result<DeliveryAttempt> {
    let next_delay_secs = match row.get::<_, Option<i64>>(9)? {
        None => None,
        Some(v) => Some(u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(9, v))?),
    };
    Ok(DeliveryAttempt {
        id: get_id(row, 0)?,
        application_id: get_id(row, 1)?,
        delivery_id: get_id(row, 2)?,
        number: row.get(3)?,
        started_at: get_ts(row, 4)?,
        duration_ms: get_u64(row, 5)?,
        response_status: get_response_status(row, 6)?,
        response: row.get(7)?,
        error: row.get(8)?,
        next_delay_secs,
        expires_at: get_ts(row, 10)?,
    })
}

// ---------------------------------------------------------------------------
// Queries

/// A `SELECT ... WHERE` built from optional filters, with positional parameters.
struct Query {
    sql: String,
    params: Vec<Value>,
}

impl Query {
    /// `base` must end in a `WHERE` condition (`... WHERE application_id = ?`).
    fn new(base: &str, params: Vec<Value>) -> Self {
        Query { sql: base.to_string(), params }
    }

    fn and(&mut self, condition: &str, value: impl Into<Value>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
        self.params.push(value.into());
    }

    fn and_opt<V: Into<Value>>(&mut self, condition: &str, value: Option<V>) {
        if let Some(value) = value {
            self.and(condition, value);
        }
    }

    /// Newest first by id, one more row than the page to know whether more follow.
    fn page_by_id(mut self, page: &PageRequest) -> Self {
        if let Some(after) = &page.after {
            self.and("id < ?", after.clone());
        }
        self.sql.push_str(" ORDER BY id DESC LIMIT ?");
        self.params.push(Value::Integer(fetch_limit(page)));
        self
    }

    fn run<T>(self, conn: &Connection, map: fn(&Row<'_>) -> rusqlite::Result<T>) -> rusqlite::Result<Vec<T>> {
        let mut stmt = conn.prepare_cached(&self.sql)?;
        let rows = stmt.query_map(params_from_iter(self.params), map)?;
        rows.collect()
    }
}

fn page_limit(page: &PageRequest) -> usize {
    page.limit.max(1)
}

fn fetch_limit(page: &PageRequest) -> i64 {
    i64::try_from(page_limit(page)).unwrap_or(i64::MAX - 1) + 1
}

/// Cuts the extra row and sets `next` when it was there.
fn into_page<T>(mut items: Vec<T>, page: &PageRequest, position: impl Fn(&T) -> String) -> Page<T> {
    let limit = page_limit(page);
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(position);
        Page { items, next }
    } else {
        Page { items, next: None }
    }
}

/// Adds `(succeeded, failed)` to an event's counters and re-derives its status.
fn adjust_event_counters(tx: &Connection, event_id: &str, delta: (i64, i64)) -> rusqlite::Result<()> {
    if delta == (0, 0) {
        return Ok(());
    }
    let (succeeded, failed) = ("MAX(succeeded_count + ?2, 0)", "MAX(failed_count + ?3, 0)");
    let status = event_status_sql("fanned_out", "delivery_count", succeeded, failed);
    tx.prepare_cached(&format!(
        "UPDATE events SET succeeded_count = {succeeded}, failed_count = {failed}, status = {status} WHERE id = ?1"
    ))?
    .execute(params![event_id, delta.0, delta.1])?;
    Ok(())
}

fn insert_delivery_sql(or_ignore: bool) -> String {
    format!(
        "INSERT {}INTO deliveries ({DELIVERY_COLS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        if or_ignore { "OR IGNORE " } else { "" }
    )
}

fn insert_delivery(tx: &Connection, sql: &str, d: &Delivery) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params![
        d.id.as_str(),
        d.application_id.as_str(),
        d.event_id.as_str(),
        d.endpoint_id.as_str(),
        d.event_type,
        d.status.as_str(),
        d.attempt_count,
        d.max_attempts,
        d.response_status.map(ResponseStatus::to_stored),
        d.response_body,
        d.error_message,
        d.timestamp_sent,
        opt_ts(d.next_attempt_at),
        d.retry_of.as_ref().map(Id::as_str),
        d.retried_by.as_ref().map(Id::as_str),
        opt_ts(d.delivered_at),
        ts(d.created_at),
        ts(d.updated_at),
        ts(d.expires_at),
    ])
}

// ---------------------------------------------------------------------------
// Ports

#[async_trait]
impl ApplicationStore for SqliteStore {
    async fn create_application(&self, app: &Application) -> StoreResult<()> {
        let app = app.clone();
        let result = self
            .write(move |tx, _| {
                tx.prepare_cached(&format!("INSERT INTO applications ({APP_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"))?
                    .execute(params![
                    app.id.as_str(),
                    app.name,
                    app.retention_days,
                    app.rate_limit,
                    ts(app.created_at),
                    ts(app.updated_at)
                ])?;
                Ok(())
            })
            .await;
        self.inner.cache.applications.clear();
        result
    }

    async fn get_application(&self, id: &Id) -> StoreResult<Option<Application>> {
        let cache_key = id.clone();
        let generation = match self.inner.cache.applications.get(&cache_key) {
            Ok(hit) => return Ok(Some(hit)),
            Err(generation) => generation,
        };
        let id = id.clone();
        let found = self
            .read(move |conn, _| {
                Ok(conn
                    .prepare_cached(&format!("SELECT {APP_COLS} FROM applications WHERE id = ?1"))?
                    .query_row([id.as_str()], application_from_row)
                    .optional()?)
            })
            .await?;
        if let Some(value) = &found {
            self.inner.cache.applications.fill(generation, cache_key, value);
        }
        Ok(found)
    }

    async fn list_applications(&self, page: &PageRequest) -> StoreResult<Page<Application>> {
        let page = page.clone();
        self.read(move |conn, _| {
            let query = Query::new(&format!("SELECT {APP_COLS} FROM applications WHERE 1 = 1"), vec![]);
            let items = query.page_by_id(&page).run(conn, application_from_row)?;
            Ok(into_page(items, &page, |a| a.id.to_string()))
        })
        .await
    }

    async fn update_application(&self, app: &Application) -> StoreResult<bool> {
        let app = app.clone();
        let result = self
            .write(move |tx, _| {
                let changed = tx
                    .prepare_cached(
                        "UPDATE applications SET name = ?2, retention_days = ?3, rate_limit = ?4, created_at = ?5, \
                     updated_at = ?6 WHERE id = ?1",
                    )?
                    .execute(params![
                        app.id.as_str(),
                        app.name,
                        app.retention_days,
                        app.rate_limit,
                        ts(app.created_at),
                        ts(app.updated_at)
                    ])?;
                Ok(changed > 0)
            })
            .await;
        self.inner.cache.applications.clear();
        result
    }

    async fn delete_application(&self, id: &Id) -> StoreResult<bool> {
        let id = id.clone();
        let result = self
            .write(move |tx, _| {
                // Attempts have no application index (every attempt would pay
                // for it): they go with the application's deliveries.
                tx.prepare_cached(
                    "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE application_id = ?1)",
                )?
                .execute([id.as_str()])?;
                for table in [
                    "deliveries",
                    "events",
                    "endpoints",
                    "event_types",
                    "api_keys",
                    "control_records",
                    "control_counters",
                ] {
                    tx.prepare_cached(&format!("DELETE FROM {table} WHERE application_id = ?1"))?
                        .execute([id.as_str()])?;
                }
                let deleted = tx.prepare_cached("DELETE FROM applications WHERE id = ?1")?.execute([id.as_str()])?;
                Ok(deleted > 0)
            })
            .await;
        self.inner.cache.clear_all();
        result
    }
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let key = key.clone();
        let result = self
            .write(move |tx, _| {
                let scopes = to_json(&key.scopes)?;
                tx.prepare_cached(&format!(
                    "INSERT INTO api_keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))?
                .execute(params![
                    key.id.as_str(),
                    key.application_id.as_str(),
                    key.name,
                    key.prefix,
                    key.last4,
                    key.key_hash,
                    scopes,
                    ts(key.created_at),
                    opt_ts(key.revoked_at),
                    opt_ts(key.last_used_at),
                ])?;
                Ok(())
            })
            .await;
        self.inner.cache.clear_api_keys();
        result
    }

    async fn get_api_key(&self, id: &Id) -> StoreResult<Option<ApiKey>> {
        let cache_key = id.clone();
        let generation = match self.inner.cache.api_keys.get(&cache_key) {
            Ok(hit) => return Ok(Some(hit)),
            Err(generation) => generation,
        };
        let id = id.clone();
        let found = self
            .read(move |conn, _| {
                Ok(conn
                    .prepare_cached(&format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"))?
                    .query_row([id.as_str()], api_key_from_row)
                    .optional()?)
            })
            .await?;
        if let Some(value) = &found {
            self.inner.cache.api_keys.fill(generation, cache_key, value);
        }
        Ok(found)
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        let cache_key = key_hash.to_string();
        let generation = match self.inner.cache.api_keys_by_hash.get(&cache_key) {
            Ok(hit) => return Ok(Some(hit)),
            Err(generation) => generation,
        };
        let key_hash = key_hash.to_string();
        let found = self
            .read(move |conn, _| {
                Ok(conn
                    .prepare_cached(&format!("SELECT {KEY_COLS} FROM api_keys WHERE key_hash = ?1"))?
                    .query_row([key_hash], api_key_from_row)
                    .optional()?)
            })
            .await?;
        if let Some(value) = &found {
            self.inner.cache.api_keys_by_hash.fill(generation, cache_key, value);
        }
        Ok(found)
    }

    async fn list_api_keys(&self, app_id: &Id, page: &PageRequest) -> StoreResult<Page<ApiKey>> {
        let (app_id, page) = (app_id.clone(), page.clone());
        self.read(move |conn, _| {
            let query = Query::new(
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE application_id = ?"),
                vec![Value::Text(app_id.to_string())],
            );
            let items = query.page_by_id(&page).run(conn, api_key_from_row)?;
            Ok(into_page(items, &page, |k| k.id.to_string()))
        })
        .await
    }

    async fn revoke_api_key(&self, app_id: &Id, id: &Id, at: Timestamp) -> StoreResult<bool> {
        let (app_id, id) = (app_id.clone(), id.clone());
        let result = self
            .write(move |tx, _| {
                let changed = tx
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3) WHERE id = ?1 AND application_id = ?2",
                )?
                .execute(params![id.as_str(), app_id.as_str(), ts(at)])?;
                Ok(changed > 0)
            })
            .await;
        self.inner.cache.clear_api_keys();
        result
    }

    async fn touch_api_key(&self, key: &ApiKey, at: Timestamp) -> StoreResult<()> {
        let (app_id, id) = (key.application_id.clone(), key.id.clone());
        let result = self
            .write(move |tx, _| {
                tx.prepare_cached(
                    "UPDATE api_keys SET last_used_at = ?3 WHERE id = ?1 AND application_id = ?2 \
                     AND (last_used_at IS NULL OR last_used_at < ?3)",
                )?
                .execute(params![id.as_str(), app_id.as_str(), ts(at)])?;
                Ok(())
            })
            .await;
        self.inner.cache.clear_api_keys();
        result
    }
}

#[async_trait]
impl EventTypeStore for SqliteStore {
    async fn create_event_type(&self, event_type: &EventType) -> StoreResult<()> {
        let et = event_type.clone();
        let result = self
            .write(move |tx, _| {
                let schema = et.schema.as_ref().map(to_json).transpose()?;
                tx.prepare_cached(&format!(
                    "INSERT INTO event_types ({EVENT_TYPE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))?
                .execute(params![
                    et.application_id.as_str(),
                    et.name,
                    et.description,
                    schema,
                    et.archived,
                    ts(et.created_at),
                    ts(et.updated_at)
                ])
                .map_err(|e| match map_err(e) {
                    StoreError::Conflict(_) => conflict(format!("event type {:?} exists", et.name)),
                    other => Failure::Store(other),
                })?;
                Ok(())
            })
            .await;
        self.inner.cache.event_types.clear();
        result
    }

    async fn get_event_type(&self, app_id: &Id, name: &str) -> StoreResult<Option<EventType>> {
        let cache_key = (app_id.clone(), name.to_string());
        let generation = match self.inner.cache.event_types.get(&cache_key) {
            Ok(hit) => return Ok(Some(hit)),
            Err(generation) => generation,
        };
        let (app_id, name) = (app_id.clone(), name.to_string());
        let found = self
            .read(move |conn, _| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_TYPE_COLS} FROM event_types WHERE application_id = ?1 AND name = ?2"
                    ))?
                    .query_row([app_id.as_str(), name.as_str()], event_type_from_row)
                    .optional()?)
            })
            .await?;
        if let Some(value) = &found {
            self.inner.cache.event_types.fill(generation, cache_key, value);
        }
        Ok(found)
    }

    async fn list_event_types(
        &self,
        app_id: &Id,
        include_archived: bool,
        page: &PageRequest,
    ) -> StoreResult<Page<EventType>> {
        let (app_id, page) = (app_id.clone(), page.clone());
        self.read(move |conn, _| {
            // Newest first, by (created_at, name); the position is "<created_at nanos>:<name>".
            let mut query = Query::new(
                &format!("SELECT {EVENT_TYPE_COLS} FROM event_types WHERE application_id = ?"),
                vec![Value::Text(app_id.to_string())],
            );
            if !include_archived {
                query.sql.push_str(" AND archived = 0");
            }
            if let Some(after) = &page.after {
                let (created, name) = after
                    .split_once(':')
                    .and_then(|(created, name)| Some((created.parse::<i64>().ok()?, name.to_string())))
                    .ok_or_else(|| StoreError::Corrupt("malformed event type position".into()))?;
                query.sql.push_str(" AND (created_at, name) < (?, ?)");
                query.params.push(Value::Integer(created));
                query.params.push(Value::Text(name));
            }
            query.sql.push_str(" ORDER BY created_at DESC, name DESC LIMIT ?");
            query.params.push(Value::Integer(fetch_limit(&page)));
            let items = query.run(conn, event_type_from_row)?;
            Ok(into_page(items, &page, |t| format!("{}:{}", ts(t.created_at), t.name)))
        })
        .await
    }

    async fn update_event_type(&self, event_type: &EventType) -> StoreResult<bool> {
        let et = event_type.clone();
        let result = self
            .write(move |tx, _| {
                let schema = et.schema.as_ref().map(to_json).transpose()?;
                let changed = tx
                    .prepare_cached(
                        "UPDATE event_types SET description = ?3, schema = ?4, archived = ?5, created_at = ?6, \
                     updated_at = ?7 WHERE application_id = ?1 AND name = ?2",
                    )?
                    .execute(params![
                        et.application_id.as_str(),
                        et.name,
                        et.description,
                        schema,
                        et.archived,
                        ts(et.created_at),
                        ts(et.updated_at)
                    ])?;
                Ok(changed > 0)
            })
            .await;
        self.inner.cache.event_types.clear();
        result
    }

    async fn delete_event_type(&self, app_id: &Id, name: &str) -> StoreResult<bool> {
        let (app_id, name) = (app_id.clone(), name.to_string());
        let result = self
            .write(move |tx, _| {
                let deleted = tx
                    .prepare_cached("DELETE FROM event_types WHERE application_id = ?1 AND name = ?2")?
                    .execute([app_id.as_str(), name.as_str()])?;
                Ok(deleted > 0)
            })
            .await;
        self.inner.cache.event_types.clear();
        result
    }
}

/// Parameters ?1..?20 of an endpoint row, in `ENDPOINT_COLS` order.
fn endpoint_values(ep: &Endpoint) -> Result<Vec<Value>, Failure> {
    Ok(vec![
        Value::Text(ep.id.to_string()),
        Value::Text(ep.application_id.to_string()),
        Value::Text(ep.url.clone()),
        ep.description.clone().into(),
        Value::Text(to_json(&ep.event_types)?),
        Value::Text(to_json(&ep.headers)?),
        ep.max_attempts.into(),
        ep.timeout_secs.into(),
        Value::Text(payload_format_str(ep.payload_format).to_string()),
        ep.is_active.into(),
        ep.disabled_reason.clone().into(),
        Value::Text(to_json(&ep.metadata)?),
        Value::Text(ep.secret_encrypted.clone()),
        Value::Text(ep.secret_last4.clone()),
        ep.previous_secret_encrypted.clone().into(),
        opt_ts(ep.previous_secret_expires_at).into(),
        opt_ts(ep.failing_since).into(),
        Value::Integer(ts(ep.created_at)),
        Value::Integer(ts(ep.updated_at)),
        Value::Text(controls_to_stored(&ep.controls, &ep.signing_keys)),
    ])
}

#[async_trait]
impl EndpointStore for SqliteStore {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> StoreResult<()> {
        let ep = endpoint.clone();
        let result = self
            .write(move |tx, _| {
                let values = endpoint_values(&ep)?;
                tx.prepare_cached(&format!(
                    "INSERT INTO endpoints ({ENDPOINT_COLS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
                ))?
                .execute(params_from_iter(values))?;
                Ok(())
            })
            .await;
        self.inner.cache.endpoints.clear();
        result
    }

    async fn get_endpoint(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Endpoint>> {
        let cache_key = (app_id.clone(), id.clone());
        let generation = match self.inner.cache.endpoints.get(&cache_key) {
            Ok(hit) => return Ok(Some(hit)),
            Err(generation) => generation,
        };
        let (app_id, id) = (app_id.clone(), id.clone());
        let found = self
            .read(move |conn, _| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {ENDPOINT_COLS} FROM endpoints WHERE id = ?1 AND application_id = ?2"
                    ))?
                    .query_row([id.as_str(), app_id.as_str()], endpoint_from_row)
                    .optional()?)
            })
            .await?;
        if let Some(value) = &found {
            self.inner.cache.endpoints.fill(generation, cache_key, value);
        }
        Ok(found)
    }

    async fn list_endpoints(
        &self,
        app_id: &Id,
        filter: &EndpointFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Endpoint>> {
        let (app_id, filter, page) = (app_id.clone(), filter.clone(), page.clone());
        self.read(move |conn, _| {
            let mut query = Query::new(
                &format!("SELECT {ENDPOINT_COLS} FROM endpoints WHERE application_id = ?"),
                vec![Value::Text(app_id.to_string())],
            );
            query.and_opt("is_active = ?", filter.is_active);
            query.and_opt(
                "(json_array_length(event_types) = 0 \
                  OR EXISTS (SELECT 1 FROM json_each(endpoints.event_types) WHERE json_each.value = ?))",
                filter.event_type,
            );
            let items = query.page_by_id(&page).run(conn, endpoint_from_row)?;
            Ok(into_page(items, &page, |e| e.id.to_string()))
        })
        .await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint, expected_updated_at: Timestamp) -> StoreResult<bool> {
        let ep = endpoint.clone();
        let result = self
            .write(move |tx, _| {
                let mut values = endpoint_values(&ep)?;
                values.push(rusqlite::types::Value::from(ts(expected_updated_at)));
                let changed = tx
                    .prepare_cached(
                        "UPDATE endpoints SET url = ?3, description = ?4, event_types = ?5, headers = ?6, \
                     max_attempts = ?7, timeout_secs = ?8, payload_format = ?9, is_active = ?10, \
                     disabled_reason = ?11, metadata = ?12, secret_encrypted = ?13, secret_last4 = ?14, \
                     previous_secret_encrypted = ?15, previous_secret_expires_at = ?16, failing_since = ?17, \
                     created_at = ?18, updated_at = ?19, controls = ?20 \
                     WHERE id = ?1 AND application_id = ?2 AND updated_at = ?21",
                    )?
                    .execute(params_from_iter(values))?;
                if changed > 0 {
                    return Ok(true);
                }
                let exists = tx
                    .prepare_cached("SELECT 1 FROM endpoints WHERE id = ?1 AND application_id = ?2")?
                    .exists([ep.id.as_str(), ep.application_id.as_str()])?;
                if exists {
                    return Err(conflict(format!("endpoint {} changed since it was read", ep.id)));
                }
                Ok(false)
            })
            .await;
        self.inner.cache.endpoints.clear();
        result
    }

    async fn delete_endpoint(&self, app_id: &Id, id: &Id) -> StoreResult<bool> {
        let (app_id, id) = (app_id.clone(), id.clone());
        let result = self
            .write(move |tx, _| {
                let deleted = tx
                    .prepare_cached("DELETE FROM endpoints WHERE id = ?1 AND application_id = ?2")?
                    .execute([id.as_str(), app_id.as_str()])?;
                Ok(deleted > 0)
            })
            .await;
        self.inner.cache.endpoints.clear();
        result
    }

    async fn set_endpoint_failing_since(&self, app_id: &Id, id: &Id, since: Option<Timestamp>) -> StoreResult<()> {
        let (app_id, id) = (app_id.clone(), id.clone());
        let result = self
            .write(move |tx, _| {
                // One nanosecond later: a new version for concurrent writers, and
                // no visible jump for a field the API does not show.
                tx.prepare_cached(
                    "UPDATE endpoints SET failing_since = ?3, updated_at = updated_at + 1 \
                 WHERE id = ?1 AND application_id = ?2",
                )?
                .execute(params![id.as_str(), app_id.as_str(), opt_ts(since)])?;
                Ok(())
            })
            .await;
        self.inner.cache.endpoints.clear();
        result
    }

    async fn disable_endpoint(&self, app_id: &Id, id: &Id, reason: &str, at: Timestamp) -> StoreResult<()> {
        let (app_id, id, reason) = (app_id.clone(), id.clone(), reason.to_string());
        let result = self
            .write(move |tx, _| {
                tx.prepare_cached(
                    "UPDATE endpoints SET is_active = 0, disabled_reason = ?3, updated_at = MAX(updated_at + 1, ?4) \
                 WHERE id = ?1 AND application_id = ?2",
                )?
                .execute(params![id.as_str(), app_id.as_str(), reason, ts(at)])?;
                Ok(())
            })
            .await;
        self.inner.cache.endpoints.clear();
        result
    }

    async fn endpoint_stats(&self, app_id: &Id, id: &Id, since: Timestamp) -> StoreResult<EndpointStats> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.read(move |conn, now| {
            // One read transaction: every number below comes from the same snapshot.
            let snapshot = conn.unchecked_transaction()?;
            let conn: &Connection = &snapshot;
            let since_ns = ts(since);
            let scope = params![app_id.as_str(), id.as_str(), since_ns, now];
            let mut stats = conn
                .prepare_cached(
                    "SELECT COUNT(*), COALESCE(SUM(status = 'pending'), 0), COALESCE(SUM(status = 'retrying'), 0), \
                     COALESCE(SUM(status = 'succeeded'), 0), COALESCE(SUM(status = 'failed'), 0) \
                     FROM deliveries INDEXED BY deliveries_by_endpoint_time \
                     WHERE application_id = ?1 AND endpoint_id = ?2 AND created_at >= ?3 AND expires_at > ?4",
                )?
                .query_row(scope, |row| {
                    Ok(EndpointStats {
                        since: Some(since),
                        deliveries: get_u64(row, 0)?,
                        pending: get_u64(row, 1)?,
                        retrying: get_u64(row, 2)?,
                        succeeded: get_u64(row, 3)?,
                        failed: get_u64(row, 4)?,
                        ..EndpointStats::default()
                    })
                })?;
            let attempts_where = "FROM attempts INDEXED BY attempts_by_endpoint_time \
                 WHERE application_id = ?1 AND endpoint_id = ?2 AND started_at >= ?3 AND expires_at > ?4";
            conn.prepare_cached(&format!(
                "SELECT COUNT(*), COALESCE(SUM({ATTEMPT_OK}), 0), AVG(duration_ms), \
                 MAX(CASE WHEN {ATTEMPT_OK} THEN started_at END), MAX(CASE WHEN NOT {ATTEMPT_OK} THEN started_at END) \
                 {attempts_where}"
            ))?
            .query_row(scope, |row| {
                stats.attempts = get_u64(row, 0)?;
                stats.successful_attempts = get_u64(row, 1)?;
                stats.failed_attempts = stats.attempts.saturating_sub(stats.successful_attempts);
                stats.avg_latency_ms = row.get(2)?;
                stats.last_success_at = get_opt_ts(row, 3)?;
                stats.last_failure_at = get_opt_ts(row, 4)?;
                Ok(())
            })?;
            if stats.attempts > 0 {
                // Nearest rank: the ceil(0.95 n)-th smallest duration.
                let rank = (stats.attempts * 95).div_ceil(100).max(1);
                let p95: i64 = conn
                    .prepare_cached(&format!(
                        "SELECT duration_ms {attempts_where} ORDER BY duration_ms LIMIT 1 OFFSET ?5"
                    ))?
                    .query_row(params![app_id.as_str(), id.as_str(), since_ns, now, to_i64(rank - 1)], |row| {
                        row.get(0)
                    })?;
                stats.p95_latency_ms = u64::try_from(p95).ok();
            }
            let mut hourly = conn.prepare_cached(&format!(
                "SELECT started_at / {NANOS_PER_HOUR} AS hour, COALESCE(SUM({ATTEMPT_OK}), 0), \
                 COALESCE(SUM(NOT {ATTEMPT_OK}), 0), AVG(duration_ms) {attempts_where} GROUP BY hour ORDER BY hour"
            ))?;
            stats.hourly = hourly
                .query_map(scope, |row| {
                    Ok(StatsBucket {
                        start: from_ts(row.get::<_, i64>(0)?.saturating_mul(NANOS_PER_HOUR)),
                        succeeded: get_u64(row, 1)?,
                        failed: get_u64(row, 2)?,
                        avg_latency_ms: row.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(stats)
        })
        .await
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn insert_event(&self, event: &Event, idempotency_window_start: Timestamp) -> StoreResult<InsertEvent> {
        let event = event.clone();
        self.write(move |tx, now| {
            if let Some(key) = &event.idempotency_key {
                let first = tx
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLS} FROM events INDEXED BY events_by_idempotency_key \
                         WHERE application_id = ?1 AND idempotency_key = ?2 AND created_at >= ?3 AND expires_at > ?4 \
                         ORDER BY created_at ASC, id ASC LIMIT 1"
                    ))?
                    .query_row(
                        params![event.application_id.as_str(), key, ts(idempotency_window_start), now],
                        event_from_row,
                    )
                    .optional()?;
                if let Some(first) = first {
                    return Ok(InsertEvent::Existing(first));
                }
            }
            let payload = to_json(&event.payload)?;
            tx.prepare_cached(&format!(
                "INSERT INTO events ({EVENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ))?
            .execute(params![
                event.id.as_str(),
                event.application_id.as_str(),
                event.event_type,
                payload,
                event.idempotency_key,
                event.request_hash,
                event.target_endpoint_id.as_ref().map(Id::as_str),
                event.derive_status().as_str(),
                event.fanned_out,
                event.delivery_count,
                event.succeeded_count,
                event.failed_count,
                ts(event.created_at),
                ts(event.expires_at),
            ])?;
            Ok(InsertEvent::Created)
        })
        .await
    }

    async fn get_event(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Event>> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.read(move |conn, now| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLS} FROM events WHERE id = ?1 AND application_id = ?2 AND expires_at > ?3"
                ))?
                .query_row(params![id.as_str(), app_id.as_str(), now], event_from_row)
                .optional()?)
        })
        .await
    }

    async fn list_events(&self, app_id: &Id, filter: &EventFilter, page: &PageRequest) -> StoreResult<Page<Event>> {
        let (app_id, filter, page) = (app_id.clone(), filter.clone(), page.clone());
        self.read(move |conn, now| {
            let mut query = Query::new(
                &format!("SELECT {EVENT_COLS} FROM events INDEXED BY events_by_app WHERE application_id = ?"),
                vec![Value::Text(app_id.to_string())],
            );
            query.and("expires_at > ?", now);
            query.and_opt("event_type = ?", filter.event_type);
            query.and_opt("status = ?", filter.status.map(|s| s.as_str().to_string()));
            query.and_opt("created_at >= ?", filter.from.map(ts));
            query.and_opt("created_at < ?", filter.to.map(ts));
            let items = query.page_by_id(&page).run(conn, event_from_row)?;
            Ok(into_page(items, &page, |e| e.id.to_string()))
        })
        .await
    }

    async fn events_awaiting_fanout(&self, limit: usize) -> StoreResult<Vec<Event>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn, now| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLS} FROM events INDEXED BY events_awaiting_fanout \
                 WHERE fanned_out = 0 AND expires_at > ?1 ORDER BY created_at ASC, id ASC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now, limit], event_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn mark_event_fanned_out(&self, app_id: &Id, id: &Id, delivery_count: u32) -> StoreResult<()> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.write(move |tx, _| {
            let status = event_status_sql("1", "?3", "succeeded_count", "failed_count");
            tx.prepare_cached(&format!(
                "UPDATE events SET fanned_out = 1, delivery_count = ?3, status = {status} \
                 WHERE id = ?1 AND application_id = ?2"
            ))?
            .execute(params![id.as_str(), app_id.as_str(), delivery_count])?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> StoreResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let deliveries = deliveries.to_vec();
        self.write(move |tx, _| {
            let sql = insert_delivery_sql(true);
            for d in &deliveries {
                let inserted = insert_delivery(tx, &sql, d)?;
                // A delivery written already final counts on its event at once.
                if inserted > 0 && d.retried_by.is_none() && d.counts_on_event() {
                    adjust_event_counters(tx, d.event_id.as_str(), outcome(d.status))?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn get_delivery(&self, app_id: &Id, id: &Id) -> StoreResult<Option<Delivery>> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.read(move |conn, now| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?1 AND application_id = ?2 AND expires_at > ?3"
                ))?
                .query_row(params![id.as_str(), app_id.as_str(), now], delivery_from_row)
                .optional()?)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        app_id: &Id,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Delivery>> {
        let (app_id, filter, page) = (app_id.clone(), filter.clone(), page.clone());
        self.read(move |conn, now| {
            let index = if filter.endpoint_id.is_some() {
                "deliveries_by_endpoint"
            } else if filter.event_id.is_some() {
                "deliveries_by_event"
            } else {
                "deliveries_by_app"
            };
            let mut query = Query::new(
                &format!("SELECT {DELIVERY_COLS} FROM deliveries INDEXED BY {index} WHERE application_id = ?"),
                vec![Value::Text(app_id.to_string())],
            );
            query.and("expires_at > ?", now);
            query.and_opt("endpoint_id = ?", filter.endpoint_id.map(|id| id.to_string()));
            query.and_opt("event_id = ?", filter.event_id.map(|id| id.to_string()));
            query.and_opt("status = ?", filter.status.map(|s| s.as_str().to_string()));
            query.and_opt("event_type = ?", filter.event_type);
            query.and_opt("created_at >= ?", filter.from.map(ts));
            query.and_opt("created_at < ?", filter.to.map(ts));
            let items = query.page_by_id(&page).run(conn, delivery_from_row)?;
            Ok(into_page(items, &page, |d| d.id.to_string()))
        })
        .await
    }

    async fn list_attempts(&self, app_id: &Id, delivery_id: &Id) -> StoreResult<Vec<DeliveryAttempt>> {
        let (app_id, delivery_id) = (app_id.clone(), delivery_id.clone());
        self.read(move |conn, now| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempts \
                 WHERE delivery_id = ?1 AND application_id = ?2 AND expires_at > ?3 ORDER BY number ASC, started_at ASC"
            ))?;
            let rows = stmt.query_map(params![delivery_id.as_str(), app_id.as_str(), now], attempt_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn record_attempt(&self, record: &AttemptRecord) -> StoreResult<()> {
        let record = record.clone();
        self.write(move |tx, _| {
            let d = &record.delivery;
            let stored: Option<(String, Option<String>, i64)> = tx
                .prepare_cached(
                    "SELECT status, retried_by, expires_at FROM deliveries WHERE id = ?1 AND application_id = ?2",
                )?
                .query_row([d.id.as_str(), d.application_id.as_str()], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            let Some((before, retried_by, stored_expiry)) = stored else {
                return Err(conflict(format!("delivery {} does not exist", d.id)));
            };
            let before = parse_delivery_status(0, &before)?;
            // Assigning `expires_at` rewrites its index entry even when the
            // value is the same, so it is only assigned when it moves.
            let expiry = ts(d.expires_at);
            let moves = stored_expiry != expiry;
            let response_status = d.response_status.map(ResponseStatus::to_stored);
            let (next_attempt_at, delivered_at, updated_at) =
                (opt_ts(d.next_attempt_at), opt_ts(d.delivered_at), ts(d.updated_at));
            let (id, app, status) = (d.id.as_str(), d.application_id.as_str(), d.status.as_str());
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![
                &id,
                &app,
                &record.expected_attempt_count,
                &status,
                &d.attempt_count,
                &d.max_attempts,
                &response_status,
                &d.response_body,
                &d.error_message,
                &d.timestamp_sent,
                &next_attempt_at,
                &delivered_at,
                &updated_at,
            ];
            if moves {
                values.push(&expiry);
            }
            let changed = tx
                .prepare_cached(&format!(
                    "UPDATE deliveries SET status = ?4, attempt_count = ?5, max_attempts = ?6, response_status = ?7, \
                     response_body = ?8, error_message = ?9, timestamp_sent = ?10, next_attempt_at = ?11, \
                     delivered_at = ?12, updated_at = ?13{} \
                     WHERE id = ?1 AND application_id = ?2 AND attempt_count = ?3",
                    if moves { ", expires_at = ?14" } else { "" }
                ))?
                .execute(params_from_iter(values))?;
            if changed == 0 {
                return Err(conflict(format!(
                    "delivery {} no longer has attempt count {}",
                    d.id, record.expected_attempt_count
                )));
            }
            let a = &record.attempt;
            tx.prepare_cached(&format!(
                "INSERT INTO attempts ({ATTEMPT_COLS}, endpoint_id, http_status) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?
            .execute(params![
                a.id.as_str(),
                a.application_id.as_str(),
                a.delivery_id.as_str(),
                a.number,
                ts(a.started_at),
                to_i64(a.duration_ms),
                a.response_status.to_stored(),
                a.response,
                a.error,
                a.next_delay_secs.map(to_i64),
                ts(a.expires_at),
                d.endpoint_id.as_str(),
                http_status(a.response_status),
            ])?;
            if retried_by.is_none() && d.counts_on_event() {
                let (after, before) = (outcome(d.status), outcome(before));
                adjust_event_counters(tx, d.event_id.as_str(), (after.0 - before.0, after.1 - before.1))?;
            }
            Ok(())
        })
        .await
    }

    async fn insert_retry(&self, original: &Delivery, retry: &Delivery) -> StoreResult<()> {
        let (original, retry) = (original.clone(), retry.clone());
        self.write(move |tx, _| {
            let stored: Option<(String, String, Option<String>)> = tx
                .prepare_cached(
                    "SELECT event_id, status, retried_by FROM deliveries WHERE id = ?1 AND application_id = ?2",
                )?
                .query_row([original.id.as_str(), original.application_id.as_str()], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            let Some((event_id, status, retried_by)) = stored else {
                return Err(conflict(format!("delivery {} does not exist", original.id)));
            };
            if let Some(by) = retried_by {
                return Err(conflict(format!("delivery {} was already retried by {by}", original.id)));
            }
            let status = parse_delivery_status(1, &status)?;
            tx.prepare_cached(
                "UPDATE deliveries SET retried_by = ?3, updated_at = ?4 WHERE id = ?1 AND application_id = ?2",
            )?
            .execute(params![
                original.id.as_str(),
                original.application_id.as_str(),
                retry.id.as_str(),
                ts(original.updated_at)
            ])?;
            insert_delivery(tx, &insert_delivery_sql(false), &retry)?;
            // The original no longer counts; the retry takes its place
            // (neither counts when they are a replay's).
            if original.counts_on_event() {
                let (gone, new) = (outcome(status), outcome(retry.status));
                adjust_event_counters(tx, &event_id, (new.0 - gone.0, new.1 - gone.1))?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_delivery(&self, app_id: &Id, id: &Id) -> StoreResult<bool> {
        let (app_id, id) = (app_id.clone(), id.clone());
        self.write(move |tx, now| {
            let stored: Option<(String, String, Option<String>, Option<String>)> = tx
                .prepare_cached(
                    "SELECT event_id, status, retried_by, retry_of FROM deliveries \
                     WHERE id = ?1 AND application_id = ?2 AND expires_at > ?3",
                )?
                .query_row(params![id.as_str(), app_id.as_str(), now], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .optional()?;
            let Some((event_id, status, retried_by, retry_of)) = stored else {
                return Ok(false);
            };
            let status = parse_delivery_status(1, &status)?;
            tx.prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1 AND application_id = ?2")?
                .execute([id.as_str(), app_id.as_str()])?;
            tx.prepare_cached("DELETE FROM deliveries WHERE id = ?1 AND application_id = ?2")?
                .execute([id.as_str(), app_id.as_str()])?;
            // A delivery superseded by a retry, or a replay's, was never in the counters.
            if retried_by.is_none() && !made_by_replay(retry_of.as_deref()) {
                let (succeeded, failed) = outcome(status);
                let (delivered, succeeded_sql, failed_sql) =
                    ("MAX(delivery_count - 1, 0)", "MAX(succeeded_count - ?2, 0)", "MAX(failed_count - ?3, 0)");
                let status = event_status_sql("fanned_out", delivered, succeeded_sql, failed_sql);
                tx.prepare_cached(&format!(
                    "UPDATE events SET delivery_count = {delivered}, succeeded_count = {succeeded_sql}, \
                     failed_count = {failed_sql}, status = {status} WHERE id = ?1"
                ))?
                .execute(params![event_id, succeeded, failed])?;
            }
            Ok(true)
        })
        .await
    }
}

/// The smallest string above every string that starts with `prefix` (code
/// point order, which is SQLite's `BINARY` order on UTF-8); `None` when no
/// string is (the prefix is empty or all `char::MAX`).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[async_trait]
impl ControlStateStore for SqliteStore {
    async fn get_record(&self, app_id: &Id, kind: &str, key: &str) -> StoreResult<Option<StateRecord>> {
        let (app_id, kind, key) = (app_id.clone(), kind.to_string(), key.to_string());
        self.read(move |conn, now| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {RECORD_COLS} FROM control_records \
                     WHERE application_id = ?1 AND kind = ?2 AND key = ?3 AND expires_at > ?4"
                ))?
                .query_row(params![app_id.as_str(), kind, key, now], state_record_from_row)
                .optional()?)
        })
        .await
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
        let (app_id, kind, key, body) = (app_id.clone(), kind.to_string(), key.to_string(), body.to_string());
        self.write(move |tx, now| {
            let changed = if expected_version == 0 {
                // New, or taking the place of an expired record.
                tx.prepare_cached(
                    "INSERT INTO control_records (application_id, kind, key, body, version, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, 1, ?5) \
                     ON CONFLICT (application_id, kind, key) DO UPDATE SET \
                     body = excluded.body, version = 1, expires_at = excluded.expires_at \
                     WHERE control_records.expires_at <= ?6",
                )?
                .execute(params![app_id.as_str(), kind, key, body, ts(expires_at), now])?
            } else {
                tx.prepare_cached(
                    "UPDATE control_records SET body = ?4, version = version + 1, expires_at = ?5 \
                     WHERE application_id = ?1 AND kind = ?2 AND key = ?3 AND version = ?6 AND expires_at > ?7",
                )?
                .execute(params![
                    app_id.as_str(),
                    kind,
                    key,
                    body,
                    ts(expires_at),
                    to_i64(expected_version),
                    now
                ])?
            };
            Ok(changed > 0)
        })
        .await
    }

    async fn list_records(
        &self,
        app_id: &Id,
        kind: &str,
        key_prefix: &str,
        page: &PageRequest,
    ) -> StoreResult<Page<StateRecord>> {
        let (app_id, kind, key_prefix, page) = (app_id.clone(), kind.to_string(), key_prefix.to_string(), page.clone());
        self.read(move |conn, now| {
            // Greatest key first; the position is the last key returned.
            let mut query = Query::new(
                &format!("SELECT {RECORD_COLS} FROM control_records WHERE application_id = ?"),
                vec![Value::Text(app_id.to_string())],
            );
            query.and("kind = ?", kind);
            query.and("expires_at > ?", now);
            query.and_opt("key < ?", prefix_upper_bound(&key_prefix));
            query.and("key >= ?", key_prefix);
            query.and_opt("key < ?", page.after.clone());
            query.sql.push_str(" ORDER BY key DESC LIMIT ?");
            query.params.push(Value::Integer(fetch_limit(&page)));
            let items = query.run(conn, state_record_from_row)?;
            Ok(into_page(items, &page, |r| r.key.clone()))
        })
        .await
    }

    async fn get_counters(&self, app_id: &Id, key: &str) -> StoreResult<[u64; 2]> {
        let (app_id, key) = (app_id.clone(), key.to_string());
        self.read(move |conn, now| {
            let stored = conn
                .prepare_cached(
                    "SELECT c0, c1 FROM control_counters WHERE application_id = ?1 AND key = ?2 AND expires_at > ?3",
                )?
                .query_row(params![app_id.as_str(), key, now], |row| Ok([get_u64(row, 0)?, get_u64(row, 1)?]))
                .optional()?;
            Ok(stored.unwrap_or([0, 0]))
        })
        .await
    }

    async fn add_to_counters(
        &self,
        app_id: &Id,
        key: &str,
        deltas: [u64; 2],
        limit: Option<u64>,
        expires_at: Timestamp,
    ) -> StoreResult<Option<[u64; 2]>> {
        let (app_id, key) = (app_id.clone(), key.to_string());
        self.write(move |tx, now| {
            let stored = tx
                .prepare_cached(
                    "SELECT c0, c1, expires_at FROM control_counters WHERE application_id = ?1 AND key = ?2",
                )?
                .query_row([app_id.as_str(), key.as_str()], |row| {
                    Ok(([get_u64(row, 0)?, get_u64(row, 1)?], row.get::<_, i64>(2)?))
                })
                .optional()?;
            // An expired pair counts as absent: it starts again from zero.
            let live = stored.filter(|(_, expiry)| *expiry > now).map(|(values, _)| values);
            let base = live.unwrap_or([0, 0]);
            let next = [base[0].saturating_add(deltas[0]), base[1].saturating_add(deltas[1])];
            if limit.is_some_and(|limit| next[0] > limit) {
                return Ok(None);
            }
            if live.is_some() {
                tx.prepare_cached(
                    "UPDATE control_counters SET c0 = ?3, c1 = ?4 WHERE application_id = ?1 AND key = ?2",
                )?
                .execute(params![app_id.as_str(), key, to_i64(next[0]), to_i64(next[1])])?;
            } else {
                tx.prepare_cached(
                    "INSERT INTO control_counters (application_id, key, c0, c1, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (application_id, key) DO UPDATE SET \
                     c0 = excluded.c0, c1 = excluded.c1, expires_at = excluded.expires_at",
                )?
                .execute(params![
                    app_id.as_str(),
                    key,
                    to_i64(next[0]),
                    to_i64(next[1]),
                    ts(expires_at)
                ])?;
            }
            Ok(Some(next))
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn, _| {
            conn.prepare_cached("SELECT 1")?.query_row([], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }
}
