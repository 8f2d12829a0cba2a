//! The store conformance suite against `SqliteStore`, plus what only the
//! SQLite backend promises (persistence of the file, `backend_name`, the
//! unique key-hash index, concurrent writers).

#[macro_use]
mod conformance;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Duration;
use rusqlite::OptionalExtension;
use skyhook::adapters::sqlite::SqliteStore;
use skyhook::domain::{ApiKey, DeliveryStatus, EventStatus, ResponseStatus};
use skyhook::ports::{Clock, EventFilter, InsertEvent, ManualClock, PageRequest, Store, StoreError};

use conformance::Ctx;

/// A fresh store in its own throw-away database file.
async fn make_store(clock: Arc<ManualClock>) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_in_memory(clock).expect("open a temporary SQLite store"))
}

store_conformance_tests!(make_store);

/// A unique database path in the temp dir, removed (with WAL/SHM) on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name =
            format!("skyhook-test-{tag}-{}-{nanos}-{}.sqlite", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        TempDb(std::env::temp_dir().join(name))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

fn ctx_for(store: SqliteStore, clock: Arc<ManualClock>) -> Ctx {
    Ctx { store: Arc::new(store), clock }
}

#[tokio::test]
async fn given_a_sqlite_store_then_it_names_its_backend_sqlite() {
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let store = SqliteStore::open_in_memory(clock).unwrap();
    assert_eq!(store.backend_name(), "sqlite");
}

#[tokio::test]
async fn given_data_written_when_the_file_is_reopened_then_everything_is_still_there() {
    // GIVEN a store on a file with an application, an endpoint, an event and a recorded attempt
    let db = TempDb::new("reopen");
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let ctx = ctx_for(SqliteStore::open(&db.0, clock.clone()).unwrap(), clock.clone());
    let app = conformance::create_app(&ctx, "A").await;
    let ep = conformance::create_endpoint(&ctx, &app.id, &["invoice.paid"]).await;
    let (ev, ds) = conformance::fanned_out_event(&ctx, &app.id, "invoice.paid", &[&ep]).await;
    let mut d = ds.into_iter().next().unwrap();
    let attempt = conformance::record(&ctx, &mut d, ResponseStatus::Http(200), 7, DeliveryStatus::Succeeded).await;
    drop(ctx);

    // WHEN the file is opened again
    let ctx = ctx_for(SqliteStore::open(&db.0, clock.clone()).unwrap(), clock);

    // THEN every item reads back the same
    assert_eq!(ctx.store.get_application(&app.id).await.unwrap(), Some(app.clone()));
    assert_eq!(ctx.store.get_endpoint(&app.id, &ep.id).await.unwrap(), Some(ep));
    let got = ctx.store.get_event(&app.id, &ev.id).await.unwrap().unwrap();
    assert_eq!((got.status, got.succeeded_count), (EventStatus::Succeeded, 1));
    assert_eq!(ctx.store.get_delivery(&app.id, &d.id).await.unwrap(), Some(d.clone()));
    assert_eq!(ctx.store.list_attempts(&app.id, &d.id).await.unwrap(), vec![attempt]);
}

#[tokio::test]
async fn given_a_key_hash_in_use_when_another_key_has_the_same_hash_then_it_conflicts() {
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let ctx = ctx_for(SqliteStore::open_in_memory(clock.clone()).unwrap(), clock);
    let app = conformance::create_app(&ctx, "A").await;
    let first = conformance::api_key(&ctx, &app.id, "first");
    ctx.store.create_api_key(&first).await.unwrap();
    let second = ApiKey { key_hash: first.key_hash.clone(), ..conformance::api_key(&ctx, &app.id, "second") };
    assert!(matches!(ctx.store.create_api_key(&second).await, Err(StoreError::Conflict(_))));
    assert_eq!(ctx.store.get_api_key(&second.id).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_many_concurrent_publishes_when_they_land_then_all_are_stored_and_keys_dedupe() {
    // GIVEN one application
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory(clock.clone()).unwrap());
    let ctx = Ctx { store: store.clone(), clock: clock.clone() };
    let app = conformance::create_app(&ctx, "A").await;

    // WHEN 200 events are published at once, 100 with distinct keys and 100 reusing 10 keys
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut ev = conformance::event(&ctx, &app.id, "invoice.paid");
        ev.idempotency_key = Some(if i < 100 { format!("unique-{i}") } else { format!("shared-{}", i % 10) });
        let store = store.clone();
        let window = clock.now() - Duration::hours(24);
        tasks.push(tokio::spawn(async move { store.insert_event(&ev, window).await.unwrap() }));
    }
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap() == InsertEvent::Created {
            created += 1;
        }
    }
    // THEN exactly one event per key exists
    assert_eq!(created, 110);
    let mut total = 0;
    let mut after = None;
    loop {
        let page =
            store.list_events(&app.id, &EventFilter::default(), &PageRequest { limit: 50, after }).await.unwrap();
        total += page.items.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(total, 110);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_more_expired_rows_than_one_purge_chunk_when_purged_then_all_of_them_go() {
    // GIVEN 4,500 expired events (more than two chunks of 2,000) and a live one
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let sqlite = SqliteStore::open_in_memory(clock.clone()).unwrap();
    let ctx = Arc::new(ctx_for(sqlite.clone(), clock.clone()));
    let app = conformance::create_app(&ctx, "A").await;
    for _ in 0..45 {
        let mut writes = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let (ctx, app_id) = (Arc::clone(&ctx), app.id.clone());
            writes.spawn(async move { conformance::insert_event(&ctx, &app_id, "invoice.paid").await });
        }
        while writes.join_next().await.is_some() {}
    }
    clock.advance(Duration::days(32));
    let live = conformance::insert_event(&ctx, &app.id, "invoice.paid").await;

    // WHEN purged
    let removed = sqlite.purge_expired().await.unwrap();

    // THEN every expired row is gone, in one call, and the live one stays
    assert_eq!(removed, 4_500);
    assert_eq!(sqlite.purge_expired().await.unwrap(), 0);
    assert!(ctx.store.get_event(&app.id, &live.id).await.unwrap().is_some());
}

#[tokio::test]
async fn given_expired_rows_when_purged_then_they_are_removed_and_live_ones_stay() {
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let sqlite = SqliteStore::open_in_memory(clock.clone()).unwrap();
    let ctx = ctx_for(sqlite.clone(), clock.clone());
    let app = conformance::create_app(&ctx, "A").await;
    let ep = conformance::create_endpoint(&ctx, &app.id, &[]).await;
    let (_, ds) = conformance::fanned_out_event(&ctx, &app.id, "invoice.paid", &[&ep]).await;
    let mut d = ds.into_iter().next().unwrap();
    conformance::record(&ctx, &mut d, ResponseStatus::Http(500), 3, DeliveryStatus::Retrying).await;
    clock.advance(Duration::days(20));
    let live = conformance::insert_event(&ctx, &app.id, "invoice.paid").await;

    assert_eq!(sqlite.purge_expired().await.unwrap(), 0);
    clock.advance(Duration::days(12));
    // event + delivery + attempt
    assert_eq!(sqlite.purge_expired().await.unwrap(), 3);
    assert!(ctx.store.get_event(&app.id, &live.id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_concurrent_writes_where_some_conflict_when_committed_together_then_only_those_fail() {
    // GIVEN one application
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory(clock.clone()).unwrap());
    let ctx = Ctx { store: store.clone(), clock: clock.clone() };
    let app = conformance::create_app(&ctx, "A").await;

    // WHEN 25 event type names are each created twice, all at once
    let mut tasks = Vec::new();
    for i in 0..50 {
        let et = conformance::event_type(&ctx, &app.id, &format!("type.{}", i % 25));
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.create_event_type(&et).await }));
    }
    let (mut created, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    // THEN each name exists once: the duplicates failed alone, the rest committed
    assert_eq!((created, conflicts), (25, 25));
    let listed = store.list_event_types(&app.id, true, &PageRequest::first(100)).await.unwrap();
    assert_eq!(listed.items.len(), 25);
}

#[tokio::test]
async fn given_a_store_file_then_it_is_in_wal_mode_with_a_schema_version() {
    let db = TempDb::new("pragmas");
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let store = SqliteStore::open(&db.0, clock.clone()).unwrap();
    store.ping().await.unwrap();
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
    assert_eq!((mode.as_str(), version), ("wal", 2));
    drop(conn);
    drop(store);
    // AND reopening an existing file works
    SqliteStore::open(&db.0, clock).unwrap().ping().await.unwrap();
}

#[tokio::test]
async fn given_a_version_1_database_when_opened_then_it_loses_the_attempts_by_app_index_and_keeps_its_attempts() {
    // GIVEN a database as version 1 wrote it: an attempt, and the index every attempt paid for
    let db = TempDb::new("schema-v1");
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let ctx = ctx_for(SqliteStore::open(&db.0, clock.clone()).unwrap(), clock.clone());
    let app = conformance::create_app(&ctx, "A").await;
    let ep = conformance::create_endpoint(&ctx, &app.id, &[]).await;
    let (_, mut deliveries) = conformance::fanned_out_event(&ctx, &app.id, "invoice.paid", &[&ep]).await;
    let mut delivery = deliveries.remove(0);
    conformance::record(&ctx, &mut delivery, ResponseStatus::Http(500), 10, DeliveryStatus::Retrying).await;
    drop(ctx);
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    conn.execute_batch("CREATE INDEX attempts_by_app ON attempts (application_id); PRAGMA user_version = 1;").unwrap();
    drop(conn);

    // WHEN the current build opens it
    let ctx = ctx_for(SqliteStore::open(&db.0, clock.clone()).unwrap(), clock.clone());

    // THEN it is at version 2 without the index
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
    let index: Option<String> = conn
        .query_row("SELECT name FROM sqlite_master WHERE name = 'attempts_by_app'", [], |row| row.get(0))
        .optional()
        .unwrap();
    assert_eq!((version, index), (2, None));
    // AND the attempt is still there, and goes with its application
    assert_eq!(ctx.store.list_attempts(&app.id, &delivery.id).await.unwrap().len(), 1);
    assert!(ctx.store.delete_application(&app.id).await.unwrap());
    let left: i64 = conn.query_row("SELECT COUNT(*) FROM attempts", [], |row| row.get(0)).unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn given_a_database_from_before_delivery_controls_when_opened_then_it_gains_them_and_keeps_its_endpoints() {
    // GIVEN a database file as earlier builds wrote it: no `controls` column, no control-state tables
    let db = TempDb::new("pre-controls");
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let ctx = ctx_for(SqliteStore::open(&db.0, clock.clone()).unwrap(), clock.clone());
    let app = conformance::create_app(&ctx, "A").await;
    let ep = conformance::create_endpoint(&ctx, &app.id, &["invoice.paid"]).await;
    drop(ctx);
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    conn.execute_batch(
        "ALTER TABLE endpoints DROP COLUMN controls; DROP TABLE control_records; DROP TABLE control_counters;",
    )
    .unwrap();
    drop(conn);

    // WHEN the current build opens it
    let ctx = ctx_for(SqliteStore::open(&db.0, clock.clone()).unwrap(), clock.clone());

    // THEN the endpoint reads back with default controls
    assert_eq!(ctx.store.get_endpoint(&app.id, &ep.id).await.unwrap(), Some(ep.clone()));
    // AND controls, records and counters can be written, and survive reopening
    let mut updated = ep.clone();
    updated.controls = conformance::custom_controls();
    updated.signing_keys = conformance::custom_signing_keys();
    updated.updated_at = ctx.tick();
    assert!(ctx.store.update_endpoint(&updated, ep.updated_at).await.unwrap());
    let day = ctx.now() + Duration::days(1);
    assert!(ctx.store.put_record(&app.id, "breaker", ep.id.as_str(), "{}", 0, day).await.unwrap());
    assert_eq!(ctx.store.add_to_counters(&app.id, "rate/1", [1, 2], None, day).await.unwrap(), Some([1, 2]));
    drop(ctx);
    let ctx = ctx_for(SqliteStore::open(&db.0, clock.clone()).unwrap(), clock);
    assert_eq!(ctx.store.get_endpoint(&app.id, &ep.id).await.unwrap(), Some(updated));
    assert_eq!(ctx.store.get_record(&app.id, "breaker", ep.id.as_str()).await.unwrap().map(|r| r.version), Some(1));
    assert_eq!(ctx.store.add_to_counters(&app.id, "rate/1", [0, 0], None, day).await.unwrap(), Some([1, 2]));
}

#[tokio::test]
async fn given_a_corrupt_controls_document_when_the_endpoint_is_read_then_the_store_reports_corrupt() {
    // GIVEN an endpoint whose stored controls are not a controls document
    let db = TempDb::new("corrupt-controls");
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let ctx = ctx_for(SqliteStore::open(&db.0, clock.clone()).unwrap(), clock.clone());
    let app = conformance::create_app(&ctx, "A").await;
    let ep = conformance::create_endpoint(&ctx, &app.id, &[]).await;
    drop(ctx);
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    conn.execute("UPDATE endpoints SET controls = '{\"ordered\": \"yes\"' WHERE id = ?1", [ep.id.as_str()]).unwrap();
    drop(conn);
    // WHEN read THEN Corrupt, from a get and from a list
    let ctx = ctx_for(SqliteStore::open(&db.0, clock.clone()).unwrap(), clock);
    assert!(matches!(ctx.store.get_endpoint(&app.id, &ep.id).await, Err(StoreError::Corrupt(_))));
    let listed = ctx.store.list_endpoints(&app.id, &Default::default(), &PageRequest::first(10)).await;
    assert!(matches!(listed, Err(StoreError::Corrupt(_))));
}

#[tokio::test]
async fn given_expired_control_state_when_purged_then_it_is_removed_and_live_state_stays() {
    // GIVEN a record and a counter pair expiring in a minute, and a day-long one of each
    let clock = Arc::new(ManualClock::new(conformance::start_time()));
    let sqlite = SqliteStore::open_in_memory(clock.clone()).unwrap();
    let ctx = ctx_for(sqlite.clone(), clock.clone());
    let app = conformance::create_app(&ctx, "A").await;
    let (minute, day) = (ctx.now() + Duration::minutes(1), ctx.now() + Duration::days(1));
    assert!(ctx.store.put_record(&app.id, "breaker", "short", "{}", 0, minute).await.unwrap());
    assert!(ctx.store.put_record(&app.id, "breaker", "long", "{}", 0, day).await.unwrap());
    ctx.store.add_to_counters(&app.id, "short", [1, 1], None, minute).await.unwrap();
    ctx.store.add_to_counters(&app.id, "long", [1, 1], None, day).await.unwrap();

    // WHEN purged before and after the minute THEN nothing, then the two short-lived rows go
    assert_eq!(sqlite.purge_expired().await.unwrap(), 0);
    clock.advance(Duration::minutes(2));
    assert_eq!(sqlite.purge_expired().await.unwrap(), 2);
    // AND the day-long ones are still there
    assert!(ctx.store.get_record(&app.id, "breaker", "long").await.unwrap().is_some());
    assert_eq!(ctx.store.add_to_counters(&app.id, "long", [0, 0], None, day).await.unwrap(), Some([1, 1]));
}
