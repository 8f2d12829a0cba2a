//! `SqliteQueue` keeps SQS semantics: visibility timeout, receive count,
//! delay, batches of at most ten, receipt handles, dead letters after
//! `max_receive_count`, long polling, and durability across reopen.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeZone;
use skyhook::adapters::sqlite::{SqliteQueue, SqliteQueueConfig};
use skyhook::ports::{Clock, ManualClock, OutgoingMessage, Queue, QueueError};

/// A unique database path in the temp dir, removed (with WAL/SHM) on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name =
            format!("skyhook-queue-{tag}-{}-{nanos}-{}.sqlite", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
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

struct Fixture {
    queue: SqliteQueue,
    clock: Arc<ManualClock>,
    db: TempDb,
}

const VISIBILITY: Duration = Duration::from_secs(30);

fn fixture_with(max_receive_count: u32) -> Fixture {
    let db = TempDb::new("q");
    let clock = Arc::new(ManualClock::new(chrono::Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()));
    let config = SqliteQueueConfig { visibility_timeout: VISIBILITY, max_receive_count };
    let queue = SqliteQueue::open(&db.0, "deliveries", config, clock.clone()).unwrap();
    Fixture { queue, clock, db }
}

fn fixture() -> Fixture {
    fixture_with(5)
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

fn bodies(n: usize) -> Vec<OutgoingMessage> {
    (0..n).map(|i| OutgoingMessage::now(format!("m{i}"))).collect()
}

async fn receive_now(queue: &SqliteQueue, max: usize) -> Vec<skyhook::ports::ReceivedMessage> {
    queue.receive(max, Duration::ZERO).await.unwrap()
}

#[tokio::test]
async fn given_a_received_message_when_the_visibility_timeout_passes_then_it_reappears_with_a_higher_count() {
    // GIVEN a message that was received
    let f = fixture();
    f.queue.send(OutgoingMessage::now("hello".into())).await.unwrap();
    let first = receive_now(&f.queue, 10).await;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].body.as_str(), first[0].receive_count), ("hello", 1));

    // WHEN received again before the timeout THEN it is hidden
    f.clock.advance(secs(29));
    assert!(receive_now(&f.queue, 10).await.is_empty());
    assert_eq!(f.queue.approximate_counts().await.unwrap(), (0, 1));

    // WHEN the timeout has passed THEN it comes back, counted twice, with a new receipt
    f.clock.advance(secs(1));
    let again = receive_now(&f.queue, 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id, first[0].message_id);
    assert_eq!(again[0].body, "hello");
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt_handle, first[0].receipt_handle);
}

#[tokio::test]
async fn given_a_delayed_message_when_the_delay_passes_then_it_becomes_visible() {
    // GIVEN a message sent with a 60 s delay and one without
    let f = fixture();
    f.queue
        .send_batch(vec![
            OutgoingMessage { body: "later".into(), delay: Duration::from_secs(60) },
            OutgoingMessage::now("now".into()),
        ])
        .await
        .unwrap();
    // THEN only the undelayed one is visible
    assert_eq!(f.queue.approximate_counts().await.unwrap(), (1, 1));
    let got = receive_now(&f.queue, 10).await;
    assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["now"]);
    f.queue.delete(&got[0].receipt_handle).await.unwrap();
    // WHEN 59 s pass THEN still hidden; WHEN 60 s pass THEN it is received
    f.clock.advance(secs(59));
    assert!(receive_now(&f.queue, 10).await.is_empty());
    f.clock.advance(secs(1));
    let got = receive_now(&f.queue, 10).await;
    assert_eq!(got.iter().map(|m| (m.body.as_str(), m.receive_count)).collect::<Vec<_>>(), vec![("later", 1)]);
    // AND a delay over 15 minutes is refused, like SQS
    let too_long = OutgoingMessage { body: "x".into(), delay: Duration::from_secs(15 * 60 + 1) };
    assert!(matches!(f.queue.send(too_long).await, Err(QueueError::Invalid(_))));
}

#[tokio::test]
async fn given_25_messages_when_received_then_at_most_ten_come_at_a_time_oldest_first() {
    // GIVEN 25 messages sent in order, in one batch of 20 and five single sends
    let f = fixture();
    f.queue.send_batch(bodies(20)).await.unwrap();
    for i in 20..25 {
        f.queue.send(OutgoingMessage::now(format!("m{i}"))).await.unwrap();
    }
    assert_eq!(f.queue.approximate_counts().await.unwrap(), (25, 0));

    // WHEN received ten at a time THEN 10, 10, 5, in send order, each once
    let mut seen = Vec::new();
    for expected in [10, 10, 5] {
        let got = receive_now(&f.queue, 10).await;
        assert_eq!(got.len(), expected);
        seen.extend(got.into_iter().map(|m| m.body));
    }
    assert_eq!(seen, (0..25).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert!(receive_now(&f.queue, 10).await.is_empty());
    // AND asking for fewer gives fewer
    f.clock.advance(secs(31));
    assert_eq!(receive_now(&f.queue, 3).await.len(), 3);
    // AND asking for more than ten, or none, is refused
    assert!(matches!(f.queue.receive(11, Duration::ZERO).await, Err(QueueError::Invalid(_))));
    assert!(matches!(f.queue.receive(0, Duration::ZERO).await, Err(QueueError::Invalid(_))));
}

#[tokio::test]
async fn given_a_received_message_when_its_visibility_changes_then_it_reappears_at_the_new_time() {
    // GIVEN a received message
    let f = fixture();
    f.queue.send(OutgoingMessage::now("retry me".into())).await.unwrap();
    let m = receive_now(&f.queue, 1).await.remove(0);

    // WHEN its visibility is set to 5 minutes (the next backoff)
    f.queue.change_visibility(&m.receipt_handle, Duration::from_secs(300)).await.unwrap();
    // THEN it stays hidden past the queue's own timeout, and appears after 5 minutes
    f.clock.advance(secs(299));
    assert!(receive_now(&f.queue, 1).await.is_empty());
    f.clock.advance(secs(1));
    let m = receive_now(&f.queue, 1).await.remove(0);
    assert_eq!(m.receive_count, 2);

    // WHEN its visibility is set to zero THEN it is visible at once
    f.queue.change_visibility(&m.receipt_handle, Duration::ZERO).await.unwrap();
    let m = receive_now(&f.queue, 1).await.remove(0);
    assert_eq!(m.receive_count, 3);

    // AND more than 12 hours is refused
    let too_long = Duration::from_secs(12 * 3600 + 1);
    assert!(matches!(f.queue.change_visibility(&m.receipt_handle, too_long).await, Err(QueueError::Invalid(_))));
    f.queue.change_visibility(&m.receipt_handle, Duration::from_secs(12 * 3600)).await.unwrap();
}

#[tokio::test]
async fn given_a_message_received_twice_when_the_old_receipt_is_used_then_it_is_rejected() {
    // GIVEN a message received, timed out, and received again
    let f = fixture();
    f.queue.send(OutgoingMessage::now("dup".into())).await.unwrap();
    let old = receive_now(&f.queue, 1).await.remove(0);
    f.clock.advance(secs(31));
    let current = receive_now(&f.queue, 1).await.remove(0);

    // WHEN the first receipt is used THEN it is invalid for delete and change_visibility
    assert!(matches!(f.queue.delete(&old.receipt_handle).await, Err(QueueError::ReceiptInvalid)));
    assert!(matches!(
        f.queue.change_visibility(&old.receipt_handle, Duration::ZERO).await,
        Err(QueueError::ReceiptInvalid)
    ));
    // AND garbage is invalid too
    for junk in ["", "nonsense", "12-abc", "-1-x"] {
        assert!(matches!(f.queue.delete(junk).await, Err(QueueError::ReceiptInvalid)), "{junk:?}");
    }
    // AND the message is still there: the current receipt deletes it
    f.queue.delete(&current.receipt_handle).await.unwrap();
    assert!(matches!(f.queue.delete(&current.receipt_handle).await, Err(QueueError::ReceiptInvalid)));
}

#[tokio::test]
async fn given_a_deleted_message_when_the_timeout_passes_then_it_never_comes_back() {
    // GIVEN two received messages, one deleted
    let f = fixture();
    f.queue.send_batch(bodies(2)).await.unwrap();
    let got = receive_now(&f.queue, 10).await;
    f.queue.delete(&got[0].receipt_handle).await.unwrap();
    // WHEN the visibility timeout passes THEN only the other one comes back
    f.clock.advance(secs(31));
    let again = receive_now(&f.queue, 10).await;
    assert_eq!(again.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec![got[1].body.as_str()]);
    f.queue.delete(&again[0].receipt_handle).await.unwrap();
    assert_eq!(f.queue.approximate_counts().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn given_a_message_received_max_receive_count_times_when_received_again_then_it_is_dead_lettered() {
    // GIVEN a queue with maxReceiveCount 3 and a poison message
    let f = fixture_with(3);
    f.queue.send_batch(vec![OutgoingMessage::now("poison".into()), OutgoingMessage::now("fine".into())]).await.unwrap();
    let fine = receive_now(&f.queue, 10).await.into_iter().find(|m| m.body == "fine").unwrap();
    f.queue.delete(&fine.receipt_handle).await.unwrap();
    // WHEN it is received three times without being deleted
    for _ in 0..2 {
        f.clock.advance(secs(31));
        let got = receive_now(&f.queue, 10).await;
        assert_eq!(got.len(), 1);
    }
    // (3 receives so far, counted 1..3)
    // THEN the next receive does not return it: it moved to the dead letters
    f.clock.advance(secs(31));
    assert!(receive_now(&f.queue, 10).await.is_empty());
    assert_eq!(f.queue.dead_letters().await.unwrap(), vec!["poison".to_string()]);
    assert_eq!(f.queue.approximate_counts().await.unwrap(), (0, 0));

    // WHEN the dead letters are redriven THEN it is back, with a fresh count
    assert_eq!(f.queue.redrive_dead_letters().await.unwrap(), 1);
    assert!(f.queue.dead_letters().await.unwrap().is_empty());
    let back = receive_now(&f.queue, 10).await;
    assert_eq!(back.iter().map(|m| (m.body.as_str(), m.receive_count)).collect::<Vec<_>>(), vec![("poison", 1)]);
}

#[tokio::test]
async fn given_a_receiver_waiting_when_a_message_is_sent_then_it_wakes_at_once() {
    // GIVEN a receiver long-polling an empty queue for 10 s
    let f = fixture();
    let queue = f.queue.clone();
    let started = Instant::now();
    let waiting = tokio::spawn(async move { queue.receive(10, Duration::from_secs(10)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // WHEN a message is sent
    f.queue.send(OutgoingMessage::now("wake up".into())).await.unwrap();

    // THEN the receiver returns it long before its wait runs out
    let got = tokio::time::timeout(Duration::from_secs(2), waiting).await.expect("receiver woke").unwrap();
    assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["wake up"]);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn given_a_receiver_waiting_when_the_clock_makes_a_delayed_message_visible_then_it_gets_it() {
    // GIVEN a delayed message and a receiver waiting 5 s
    let f = fixture();
    f.queue.send(OutgoingMessage { body: "delayed".into(), delay: Duration::from_secs(60) }).await.unwrap();
    let queue = f.queue.clone();
    let waiting = tokio::spawn(async move { queue.receive(10, Duration::from_secs(5)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // WHEN the clock passes the delay (no send signals it)
    f.clock.advance(secs(60));
    // THEN the receiver finds it on its next look
    let got = tokio::time::timeout(Duration::from_secs(2), waiting).await.expect("receiver saw it").unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn given_an_empty_queue_when_long_polling_then_it_returns_empty_after_the_wait() {
    let f = fixture();
    let started = Instant::now();
    let got = f.queue.receive(10, Duration::from_millis(300)).await.unwrap();
    let waited = started.elapsed();
    assert!(got.is_empty());
    assert!(waited >= Duration::from_millis(300), "returned after {waited:?}");
    assert!(waited < Duration::from_secs(2), "returned after {waited:?}");
}

#[tokio::test]
async fn given_messages_in_flight_when_the_queue_is_reopened_then_nothing_is_lost() {
    // GIVEN three messages, one received (in flight), one delayed
    let f = fixture();
    f.queue
        .send_batch(vec![
            OutgoingMessage::now("a".into()),
            OutgoingMessage::now("b".into()),
            OutgoingMessage { body: "c".into(), delay: Duration::from_secs(10) },
        ])
        .await
        .unwrap();
    let in_flight = receive_now(&f.queue, 1).await.remove(0);
    assert_eq!(in_flight.body, "a");
    let Fixture { queue, clock, db } = f;
    drop(queue);

    // WHEN the file is opened again
    let config = SqliteQueueConfig { visibility_timeout: VISIBILITY, max_receive_count: 5 };
    let queue = SqliteQueue::open(&db.0, "deliveries", config, clock.clone()).unwrap();

    // THEN the visible one is there, the others are still hidden, and the receipt still works
    assert_eq!(queue.approximate_counts().await.unwrap(), (1, 2));
    queue.change_visibility(&in_flight.receipt_handle, Duration::from_secs(60)).await.unwrap();
    let b = receive_now(&queue, 10).await;
    assert_eq!(b.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), vec!["b"]);
    queue.delete(&b[0].receipt_handle).await.unwrap();
    clock.advance(secs(61));
    let rest = receive_now(&queue, 10).await;
    let mut rest: Vec<(&str, u32)> = rest.iter().map(|m| (m.body.as_str(), m.receive_count)).collect();
    rest.sort();
    assert_eq!(rest, vec![("a", 2), ("c", 1)]);
}

#[tokio::test]
async fn given_two_named_queues_in_one_file_then_they_do_not_see_each_other() {
    // GIVEN queues "deliveries" and "ingest" in the same file
    let f = fixture();
    let ingest = SqliteQueue::open(&f.db.0, "ingest", SqliteQueueConfig::default(), f.clock.clone()).unwrap();
    // WHEN a message goes to "deliveries"
    f.queue.send(OutgoingMessage::now("for deliveries".into())).await.unwrap();
    // THEN "ingest" has nothing, and cannot use its receipt
    assert!(receive_now(&ingest, 10).await.is_empty());
    let m = receive_now(&f.queue, 10).await.remove(0);
    assert!(matches!(ingest.delete(&m.receipt_handle).await, Err(QueueError::ReceiptInvalid)));
    f.queue.delete(&m.receipt_handle).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_concurrent_receivers_when_they_drain_the_queue_then_each_message_goes_to_one_of_them() {
    // GIVEN 300 messages
    let f = fixture();
    for chunk in bodies(300).chunks(10) {
        f.queue.send_batch(chunk.to_vec()).await.unwrap();
    }
    // WHEN four receivers drain it, deleting what they get
    let mut workers = Vec::new();
    for _ in 0..4 {
        let queue = f.queue.clone();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = queue.receive(10, Duration::from_millis(100)).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                for m in batch {
                    queue.delete(&m.receipt_handle).await.unwrap();
                    got.push(m.body);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    // THEN every message was received exactly once
    assert_eq!(all.len(), 300);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 300);
    assert_eq!(f.queue.approximate_counts().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn given_a_visibility_timeout_over_12_hours_when_opened_then_it_is_refused() {
    let db = TempDb::new("bad");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(chrono::Utc::now()));
    let config = SqliteQueueConfig { visibility_timeout: Duration::from_secs(12 * 3600 + 1), max_receive_count: 5 };
    assert!(matches!(SqliteQueue::open(&db.0, "q", config, clock), Err(QueueError::Invalid(_))));
    assert_eq!(SqliteQueueConfig::default().visibility_timeout, Duration::from_secs(90));
}
