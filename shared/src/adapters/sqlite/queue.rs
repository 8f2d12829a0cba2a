//! A queue with SQS semantics on SQLite: at-least-once delivery, visibility
//! timeout, receive count, per-message delay, receives of at most ten, and a
//! dead-letter table after `max_receive_count` receives.
//!
//! FIFO message groups (the [`Queue`] contract): only a group's oldest
//! message (its *head*) is ever receivable; the others wait *parked*, with
//! `visible_at` = [`PARKED`], until the head is deleted or dead-lettered,
//! which unparks the next one in the same transaction. A head in flight is
//! simply hidden, so its group is locked until it is visible again. Receive
//! therefore runs the same query, on the same index, with or without groups:
//! parked messages are outside its `visible_at <= now` range and cost it
//! nothing. Each group's bookkeeping uses the partial index
//! `queue_messages_group (queue, group_id, seq) WHERE group_id IS NOT NULL`,
//! which ungrouped messages never enter.
//!
//! Several named queues can share one database file (and the store's file):
//! every row carries its queue name, in tables prefixed `queue_`. Durability
//! matches the store: WAL with `synchronous=FULL`; a call returns only after
//! the transaction holding it is committed (concurrent calls share one
//! transaction and one fsync: group commit).
//! All time comes from the injected [`Clock`], so tests can move it; only the
//! long-poll `wait` of [`Queue::receive`] is real time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Notify;

use super::store::{GroupWriter, SqliteStore};

use crate::ports::Clock;
use crate::ports::queue::{MAX_BATCH, OutgoingMessage, Queue, QueueError, ReceivedMessage};

/// SQS's ceiling for a visibility timeout.
const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// SQS's ceiling for a per-message delay.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// How often a waiting receive looks again when nothing signalled it (the
/// clock moved, a delay ran out, another process wrote the file).
const POLL_FALLBACK: Duration = Duration::from_millis(50);
/// Version 2 added `group_id` (and parking); version-1 files are upgraded at
/// open. A version-1 build refuses a version-2 file: it would strand parked
/// messages.
const QUEUE_SCHEMA_VERSION: i64 = 2;
/// The `visible_at` of a grouped message waiting behind its group's head:
/// never visible until unparked.
const PARKED: i64 = i64::MAX;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS queue_messages (
    seq            INTEGER PRIMARY KEY,
    queue          TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    body           TEXT NOT NULL,
    sent_at        INTEGER NOT NULL,
    visible_at     INTEGER NOT NULL,
    receive_count  INTEGER NOT NULL DEFAULT 0,
    receipt        TEXT,
    group_id       TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at, seq);

CREATE TABLE IF NOT EXISTS queue_dead_letters (
    seq            INTEGER PRIMARY KEY,
    queue          TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    body           TEXT NOT NULL,
    receive_count  INTEGER NOT NULL,
    sent_at        INTEGER NOT NULL,
    moved_at       INTEGER NOT NULL,
    group_id       TEXT
);
CREATE INDEX IF NOT EXISTS queue_dead_letters_by_queue ON queue_dead_letters (queue, seq);

CREATE TABLE IF NOT EXISTS queue_meta (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
"#;

/// After the columns exist (files of schema version 1 lack `group_id`).
const GROUP_SCHEMA: &str = r#"
CREATE INDEX IF NOT EXISTS queue_messages_group ON queue_messages (queue, group_id, seq)
    WHERE group_id IS NOT NULL;
"#;

/// Settings of one queue (the SQS queue attributes that matter here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteQueueConfig {
    /// How long a received message stays hidden (≤ 12 h).
    pub visibility_timeout: Duration,
    /// A message received this many times goes to the dead-letter table
    /// instead of being received again; `0` never dead-letters.
    pub max_receive_count: u32,
    /// The same for grouped (FIFO) messages (default 1000): an ordered
    /// endpoint's head message is received once per retry and once per
    /// deferral (breaker open, rate limit), and must not be dead-lettered
    /// while merely waiting. `0` never dead-letters.
    pub group_max_receive_count: u32,
}

impl Default for SqliteQueueConfig {
    fn default() -> Self {
        SqliteQueueConfig {
            visibility_timeout: Duration::from_secs(90),
            max_receive_count: 25,
            group_max_receive_count: 1000,
        }
    }
}

/// One named queue in a SQLite file. Cheap to clone (one shared writer).
///
/// All database work runs on a dedicated thread that owns the connection and
/// commits whatever calls are waiting in one transaction (group commit, see
/// `GroupWriter`): every call returns only after its fsync, but concurrent
/// calls share one.
#[derive(Clone)]
pub struct SqliteQueue {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Arc<GroupWriter>,
    shared: Arc<Shared>,
    /// Wakes long-polling receivers when messages are sent or made visible.
    notify: Notify,
    path: PathBuf,
}

/// What the worker thread and the callers both need.
struct Shared {
    name: String,
    config: SqliteQueueConfig,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("path", &self.inner.path)
            .field("name", &self.inner.shared.name)
            .field("config", &self.inner.shared.config)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: rusqlite::Error) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `"<seq>-<random>"`: the row to find plus a part nobody can guess.
fn new_receipt(seq: i64) -> String {
    format!("{seq}-{:032x}", rand::random::<u128>())
}

fn receipt_seq(receipt: &str) -> Result<i64, QueueError> {
    receipt.split_once('-').and_then(|(seq, _)| seq.parse().ok()).ok_or(QueueError::ReceiptInvalid)
}

/// Adds `column` to `table` unless it is there (files of an older schema).
fn add_column_if_missing(conn: &Connection, table: &str, column: &str, decl: &str) -> rusqlite::Result<()> {
    let mut columns = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let present = columns
        .query_map([], |row| row.get::<_, String>(1))?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .contains(&column.to_string());
    if !present {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

/// Where a new message of `group` starts: visible at `now` if the group has
/// no message in the queue (it is the head), else parked behind them.
fn grouped_visible_at(conn: &Connection, queue: &str, group: &str, now: i64) -> rusqlite::Result<i64> {
    let busy = conn
        .prepare_cached("SELECT 1 FROM queue_messages WHERE queue = ?1 AND group_id = ?2 LIMIT 1")?
        .query_row(params![queue, group], |_| Ok(()))
        .optional()?
        .is_some();
    Ok(if busy { PARKED } else { now })
}

/// After `group`'s head left the queue (deleted or dead-lettered): makes the
/// next message of the group, if any, visible at `now`. Returns whether one was.
fn unpark_next(conn: &Connection, queue: &str, group: &str, now: i64) -> rusqlite::Result<bool> {
    let unparked = conn
        .prepare_cached(
            "UPDATE queue_messages SET visible_at = ?3 WHERE seq = \
             (SELECT seq FROM queue_messages WHERE queue = ?1 AND group_id = ?2 ORDER BY seq LIMIT 1) \
             AND visible_at = ?4",
        )?
        .execute(params![queue, group, now, PARKED])?;
    Ok(unparked > 0)
}

/// Deletes the message if `receipt` is its current one; `None` if it is
/// not, else `Some(whether a parked message of its group was unparked)`.
fn delete_received(
    conn: &Connection,
    queue: &str,
    seq: i64,
    receipt: &str,
    now: i64,
) -> rusqlite::Result<Option<bool>> {
    let deleted: Option<Option<String>> = conn
        .prepare_cached("DELETE FROM queue_messages WHERE seq = ?1 AND queue = ?2 AND receipt = ?3 RETURNING group_id")?
        .query_row(params![seq, queue, receipt], |row| row.get(0))
        .optional()?;
    match deleted {
        None => Ok(None),
        Some(None) => Ok(Some(false)),
        Some(Some(group)) => unpark_next(conn, queue, &group, now).map(Some),
    }
}

impl SqliteQueue {
    /// Opens the queue `queue_name` in the database at `path` (created if
    /// needed), with a writer thread of its own.
    pub fn open(
        path: &Path,
        queue_name: &str,
        config: SqliteQueueConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        let conn = Self::prepare(path, queue_name, &config)?;
        let writer = GroupWriter::spawn(conn, &format!("skyhook-queue-{queue_name}"))
            .map_err(|e| QueueError::Unavailable(format!("cannot start the queue writer: {e}")))?;
        Ok(Self::with_writer(Arc::new(writer), path, queue_name, config, clock))
    }

    /// Opens the queue `queue_name` in the store's database, on the store's
    /// writer thread: a fan-out's deliveries and its queue rows, an attempt
    /// and its message's deletion, commit in the same group transaction
    /// (one fsync) instead of two writers taking turns on SQLite's lock.
    pub fn open_with_store(
        store: &SqliteStore,
        queue_name: &str,
        config: SqliteQueueConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        // The schema through a connection of its own, closed again at once.
        drop(Self::prepare(store.path(), queue_name, &config)?);
        Ok(Self::with_writer(store.writer(), store.path(), queue_name, config, clock))
    }

    fn with_writer(
        writer: Arc<GroupWriter>,
        path: &Path,
        queue_name: &str,
        config: SqliteQueueConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let shared = Arc::new(Shared { name: queue_name.to_string(), config, clock });
        SqliteQueue { inner: Arc::new(Inner { writer, shared, notify: Notify::new(), path: path.to_path_buf() }) }
    }

    /// Checks the settings, opens a connection and creates or checks the schema.
    fn prepare(path: &Path, queue_name: &str, config: &SqliteQueueConfig) -> Result<Connection, QueueError> {
        if queue_name.is_empty() {
            return Err(QueueError::Invalid("the queue name is empty".into()));
        }
        if config.visibility_timeout > MAX_VISIBILITY_TIMEOUT {
            return Err(QueueError::Invalid("the visibility timeout is over 12 hours".into()));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                QueueError::Unavailable(format!("cannot create the directory {}: {e}", parent.display()))
            })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(unavailable)?;
        super::store::configure_connection(&conn).map_err(unavailable)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(unavailable)?;
        tx.execute_batch(SCHEMA).map_err(unavailable)?;
        let version: Option<i64> = tx
            .query_row("SELECT value FROM queue_meta WHERE key = 'schema_version'", [], |row| row.get(0))
            .optional()
            .map_err(unavailable)?;
        if let Some(version) = version.filter(|v| *v > QUEUE_SCHEMA_VERSION) {
            return Err(QueueError::Unavailable(format!(
                "the queue tables have schema version {version}; this build knows up to {QUEUE_SCHEMA_VERSION}"
            )));
        }
        add_column_if_missing(&tx, "queue_messages", "group_id", "TEXT").map_err(unavailable)?;
        add_column_if_missing(&tx, "queue_dead_letters", "group_id", "TEXT").map_err(unavailable)?;
        tx.execute_batch(GROUP_SCHEMA).map_err(unavailable)?;
        // Every group with messages has one unparked head; restore that if a
        // write from outside this module ever left a group all parked.
        tx.execute(
            "UPDATE queue_messages SET visible_at = sent_at WHERE seq IN \
             (SELECT MIN(seq) FROM queue_messages WHERE queue = ?1 AND group_id IS NOT NULL \
              GROUP BY group_id HAVING MIN(visible_at) = ?2)",
            params![queue_name, PARKED],
        )
        .map_err(unavailable)?;
        tx.execute(
            "INSERT OR REPLACE INTO queue_meta (key, value) VALUES ('schema_version', ?1)",
            [QUEUE_SCHEMA_VERSION],
        )
        .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(conn)
    }

    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    pub fn config(&self) -> &SqliteQueueConfig {
        &self.inner.shared.config
    }

    /// `(visible, in flight or delayed)` message counts, like SQS's
    /// `ApproximateNumberOfMessages` / `...NotVisible` + `...Delayed`.
    /// Grouped messages waiting behind their group's head count as visible.
    pub async fn approximate_counts(&self) -> Result<(u64, u64), QueueError> {
        self.run(|conn, shared, now| {
            let (visible, hidden): (i64, i64) = conn
                .prepare_cached(
                    "SELECT COALESCE(SUM(visible_at <= ?2 OR visible_at = ?3), 0), \
                     COALESCE(SUM(visible_at > ?2 AND visible_at <> ?3), 0) \
                     FROM queue_messages WHERE queue = ?1",
                )?
                .query_row(params![shared.name, now, PARKED], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok((visible.max(0) as u64, hidden.max(0) as u64))
        })
        .await
    }

    /// Bodies of this queue's dead letters, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<String>, QueueError> {
        self.run(|conn, shared, _| {
            let mut stmt = conn.prepare_cached("SELECT body FROM queue_dead_letters WHERE queue = ?1 ORDER BY seq")?;
            let bodies = stmt.query_map([&shared.name], |row| row.get(0))?;
            bodies.collect()
        })
        .await
    }

    /// Moves every dead letter of this queue back to it, visible now with a
    /// fresh receive count. Returns how many moved. Grouped ones rejoin their
    /// group after the messages it has now (parked behind them), oldest
    /// dead letter first.
    pub async fn redrive_dead_letters(&self) -> Result<u64, QueueError> {
        let moved = self
            .run(|conn, shared, now| {
                let letters: Vec<(String, String, i64, Option<String>)> = conn
                    .prepare_cached(
                        "SELECT message_id, body, sent_at, group_id FROM queue_dead_letters \
                         WHERE queue = ?1 ORDER BY seq",
                    )?
                    .query_map([&shared.name], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut insert = conn.prepare_cached(
                    "INSERT INTO queue_messages (queue, message_id, body, sent_at, visible_at, receive_count, \
                     group_id) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
                )?;
                for (message_id, body, sent_at, group) in &letters {
                    let visible_at = match group {
                        Some(group) => grouped_visible_at(conn, &shared.name, group, now)?,
                        None => now,
                    };
                    insert.execute(params![shared.name, message_id, body, sent_at, visible_at, group])?;
                }
                conn.prepare_cached("DELETE FROM queue_dead_letters WHERE queue = ?1")?.execute([&shared.name])?;
                Ok(letters.len() as u64)
            })
            .await?;
        if moved > 0 {
            self.inner.notify.notify_waiters();
        }
        Ok(moved)
    }

    /// Deletes several received messages in one write (what SQS's
    /// `DeleteMessageBatch` does). Returns how many were deleted: a receipt
    /// that is no longer current (the message was received again) deletes
    /// nothing, as with [`Queue::delete`].
    pub async fn delete_batch(&self, receipt_handles: Vec<String>) -> Result<usize, QueueError> {
        let receipts =
            receipt_handles.into_iter().map(|r| receipt_seq(&r).map(|seq| (seq, r))).collect::<Result<Vec<_>, _>>()?;
        if receipts.is_empty() {
            return Ok(0);
        }
        let (deleted, unparked) = self
            .run(move |conn, shared, now| {
                let (mut deleted, mut unparked) = (0, false);
                for (seq, receipt) in &receipts {
                    if let Some(next) = delete_received(conn, &shared.name, *seq, receipt, now)? {
                        deleted += 1;
                        unparked |= next;
                    }
                }
                Ok((deleted, unparked))
            })
            .await?;
        if unparked {
            self.inner.notify.notify_waiters();
        }
        Ok(deleted)
    }

    /// Runs `work` on the worker, inside a transaction, with the clock's now
    /// in ms; answers once that transaction is committed (and fsync'd).
    async fn run<T, F>(&self, work: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Shared, i64) -> rusqlite::Result<T> + Send + 'static,
    {
        let shared = self.inner.shared.clone();
        let work = move |conn: &Connection| {
            let now = shared.clock.now().timestamp_millis();
            work(conn, &shared, now)
        };
        match self.inner.writer.run(work).await {
            Ok(result) => result.map_err(unavailable),
            Err(message) => Err(QueueError::Unavailable(message)),
        }
    }

    /// One non-waiting receive. With nothing to return, also gives when the
    /// next message becomes visible (clock ms), if any is hidden.
    async fn receive_now(&self, max: usize) -> Result<(Vec<ReceivedMessage>, Option<i64>), QueueError> {
        self.run(move |conn, shared, now| {
            let visible_until = now.saturating_add(millis(shared.config.visibility_timeout));
            let max_receives = i64::from(shared.config.max_receive_count);
            let group_max_receives = i64::from(shared.config.group_max_receive_count);
            let mut received = Vec::with_capacity(max);
            loop {
                let want = (max - received.len()) as i64;
                // Parked messages (visible_at = PARKED) are outside the range:
                // a grouped message here is its group's head, and visible, so
                // its group has nothing in flight.
                let candidates: Vec<(i64, String, String, i64, i64, Option<String>)> = conn
                    .prepare_cached(
                        "SELECT seq, message_id, body, receive_count, sent_at, group_id FROM queue_messages \
                         WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT ?3",
                    )?
                    .query_map(params![shared.name, now, want], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                if candidates.is_empty() {
                    break;
                }
                for (seq, message_id, body, receive_count, sent_at, group) in candidates {
                    let limit = if group.is_some() { group_max_receives } else { max_receives };
                    if limit > 0 && receive_count >= limit {
                        conn.prepare_cached(
                            "INSERT INTO queue_dead_letters (queue, message_id, body, receive_count, sent_at, \
                             moved_at, group_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        )?
                        .execute(params![
                            shared.name,
                            message_id,
                            body,
                            receive_count,
                            sent_at,
                            now,
                            group
                        ])?;
                        conn.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")?.execute([seq])?;
                        // The next of its group, if any, is visible from now:
                        // the next pass of this loop may receive it.
                        if let Some(group) = &group {
                            unpark_next(conn, &shared.name, group, now)?;
                        }
                        tracing::warn!(
                            queue = %shared.name, %message_id, receive_count, group = group.as_deref(),
                            "message moved to the dead-letter table"
                        );
                        continue;
                    }
                    let receipt = new_receipt(seq);
                    conn.prepare_cached(
                        "UPDATE queue_messages SET receive_count = receive_count + 1, visible_at = ?2, receipt = ?3 \
                         WHERE seq = ?1",
                    )?
                    .execute(params![seq, visible_until, receipt])?;
                    received.push(ReceivedMessage {
                        message_id,
                        receipt_handle: receipt,
                        body,
                        receive_count: u32::try_from(receive_count + 1).unwrap_or(u32::MAX),
                        group,
                    });
                }
                if received.len() >= max {
                    break;
                }
            }
            let next_visible = if received.is_empty() {
                conn.prepare_cached("SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?1 AND visible_at < ?2")?
                    .query_row(params![shared.name, PARKED], |row| row.get::<_, Option<i64>>(0))?
            } else {
                None
            };
            Ok((received, next_visible))
        })
        .await
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        // A grouped message's delay is ignored, as on an SQS FIFO queue.
        if messages.iter().any(|m| m.group.is_none() && m.delay > MAX_DELAY) {
            return Err(QueueError::Invalid("a message delay is over 15 minutes".into()));
        }
        if messages.iter().any(|m| m.group.as_deref().is_some_and(str::is_empty)) {
            return Err(QueueError::Invalid("a message group id is empty".into()));
        }
        self.run(move |conn, shared, now| {
            let mut insert = conn.prepare_cached(
                "INSERT INTO queue_messages (queue, message_id, body, sent_at, visible_at, receive_count, group_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
            )?;
            let sent = shared.clock.now();
            for message in messages {
                let message_id = ulid::Ulid::from_datetime(sent.into()).to_string();
                let visible_at = match &message.group {
                    Some(group) => grouped_visible_at(conn, &shared.name, group, now)?,
                    None => now.saturating_add(millis(message.delay)),
                };
                insert.execute(params![shared.name, message_id, message.body, now, visible_at, message.group])?;
            }
            Ok(())
        })
        .await?;
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        if max == 0 || max > MAX_BATCH {
            return Err(QueueError::Invalid(format!("can receive 1 to {MAX_BATCH} messages at a time, not {max}")));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the
            // wait still wakes this receiver.
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let (received, next_visible) = self.receive_now(max).await?;
            if !received.is_empty() {
                return Ok(received);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut pause = (deadline - now).min(POLL_FALLBACK);
            if let Some(visible_at) = next_visible {
                let until = visible_at.saturating_sub(self.inner.shared.clock.now().timestamp_millis()).max(1);
                pause = pause.min(Duration::from_millis(until as u64));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), QueueError> {
        if timeout > MAX_VISIBILITY_TIMEOUT {
            return Err(QueueError::Invalid("the visibility timeout is over 12 hours".into()));
        }
        let seq = receipt_seq(receipt_handle)?;
        let receipt = receipt_handle.to_string();
        let changed = self
            .run(move |conn, shared, now| {
                conn.prepare_cached(
                    "UPDATE queue_messages SET visible_at = ?4 WHERE seq = ?1 AND queue = ?2 AND receipt = ?3",
                )?
                .execute(params![seq, shared.name, receipt, now.saturating_add(millis(timeout))])
            })
            .await?;
        if changed == 0 {
            return Err(QueueError::ReceiptInvalid);
        }
        if timeout.is_zero() {
            self.inner.notify.notify_waiters();
        }
        Ok(())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let seq = receipt_seq(receipt_handle)?;
        let receipt = receipt_handle.to_string();
        let deleted =
            self.run(move |conn, shared, now| delete_received(conn, &shared.name, seq, &receipt, now)).await?;
        match deleted {
            None => Err(QueueError::ReceiptInvalid),
            Some(unparked) => {
                if unparked {
                    self.inner.notify.notify_waiters();
                }
                Ok(())
            }
        }
    }
}
