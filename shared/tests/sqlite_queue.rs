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
    let config = SqliteQueueConfig { visibility_timeout: VISIBILITY, max_receive_count, group_max_receive_count: 1000 };
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
            OutgoingMessage { body: "later".into(), delay: Duration::from_secs(60), group: None },
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
    let too_long = OutgoingMessage { body: "x".into(), delay: Duration::from_secs(15 * 60 + 1), group: None };
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
    f.queue
        .send(OutgoingMessage { body: "delayed".into(), delay: Duration::from_secs(60), group: None })
        .await
        .unwrap();
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
            OutgoingMessage { body: "c".into(), delay: Duration::from_secs(10), group: None },
        ])
        .await
        .unwrap();
    let in_flight = receive_now(&f.queue, 1).await.remove(0);
    assert_eq!(in_flight.body, "a");
    let Fixture { queue, clock, db } = f;
    drop(queue);

    // WHEN the file is opened again
    let config =
        SqliteQueueConfig { visibility_timeout: VISIBILITY, max_receive_count: 5, ..SqliteQueueConfig::default() };
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
    let config = SqliteQueueConfig {
        visibility_timeout: Duration::from_secs(12 * 3600 + 1),
        max_receive_count: 5,
        ..SqliteQueueConfig::default()
    };
    assert!(matches!(SqliteQueue::open(&db.0, "q", config, clock), Err(QueueError::Invalid(_))));
    assert_eq!(SqliteQueueConfig::default().visibility_timeout, Duration::from_secs(90));
}

// ---------------------------------------------------------------- FIFO message groups

fn grouped(group: &str, bodies: &[&str]) -> Vec<OutgoingMessage> {
    bodies.iter().map(|b| OutgoingMessage::in_group(b.to_string(), group)).collect()
}

fn names(messages: &[skyhook::ports::ReceivedMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

#[tokio::test]
async fn given_a_group_when_received_then_its_messages_come_one_at_a_time_in_send_order() {
    // GIVEN five messages of one group, sent in two batches
    let f = fixture();
    f.queue.send_batch(grouped("ep_a", &["a1", "a2", "a3"])).await.unwrap();
    f.queue.send_batch(grouped("ep_a", &["a4", "a5"])).await.unwrap();
    // WHEN each received message is deleted before the next receive
    let mut seen = Vec::new();
    loop {
        let got = receive_now(&f.queue, 10).await;
        // THEN every receive returns one message of the group, carrying its group
        if got.is_empty() {
            break;
        }
        assert_eq!(got.len(), 1, "one per group per receive");
        assert_eq!(got[0].group.as_deref(), Some("ep_a"));
        seen.push(got[0].body.clone());
        f.queue.delete(&got[0].receipt_handle).await.unwrap();
    }
    // AND they came in send order
    assert_eq!(seen, ["a1", "a2", "a3", "a4", "a5"]);
    assert_eq!(f.queue.approximate_counts().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn given_a_group_head_in_flight_then_the_group_is_locked_until_deleted_or_visible_again() {
    // GIVEN a group of three whose head was received
    let f = fixture();
    f.queue.send_batch(grouped("ep_a", &["a1", "a2", "a3"])).await.unwrap();
    let head = receive_now(&f.queue, 10).await;
    assert_eq!(names(&head), ["a1"]);
    // THEN nothing else of the group is received while the head is in flight
    assert!(receive_now(&f.queue, 10).await.is_empty());
    // AND the waiting ones count as visible, the head as in flight
    assert_eq!(f.queue.approximate_counts().await.unwrap(), (2, 1));

    // WHEN the head's visibility timeout runs out
    f.clock.advance(secs(31));
    // THEN the head itself comes back (not the next), counted twice
    let again = receive_now(&f.queue, 10).await;
    assert_eq!(names(&again), ["a1"]);
    assert_eq!(again[0].receive_count, 2);
    assert!(receive_now(&f.queue, 10).await.is_empty());

    // WHEN the head is deleted
    f.queue.delete(&again[0].receipt_handle).await.unwrap();
    // THEN the group is released: the next one is received, and locks it again
    let next = receive_now(&f.queue, 10).await;
    assert_eq!(names(&next), ["a2"]);
    assert_eq!(next[0].receive_count, 1);
    assert!(receive_now(&f.queue, 10).await.is_empty());
}

#[tokio::test]
async fn given_a_group_head_retried_when_its_visibility_changes_then_it_holds_the_group_and_comes_back_first() {
    // GIVEN a group of two whose head was received
    let f = fixture();
    f.queue.send_batch(grouped("ep_a", &["a1", "a2"])).await.unwrap();
    let head = receive_now(&f.queue, 1).await.remove(0);
    // WHEN the head is retried in 5 minutes (the dispatcher keeps the message)
    f.queue.change_visibility(&head.receipt_handle, Duration::from_secs(300)).await.unwrap();
    // THEN the group is held back until then, past the queue's own timeout
    f.clock.advance(secs(299));
    assert!(receive_now(&f.queue, 10).await.is_empty());
    f.clock.advance(secs(1));
    let head = receive_now(&f.queue, 10).await;
    assert_eq!(names(&head), ["a1"]);

    // WHEN its visibility is set to zero (a deferral)
    f.queue.change_visibility(&head[0].receipt_handle, Duration::ZERO).await.unwrap();
    // THEN it comes back first, ahead of the rest of its group
    let head = receive_now(&f.queue, 10).await;
    assert_eq!(names(&head), ["a1"]);
    assert_eq!(head[0].receive_count, 3);
    f.queue.delete(&head[0].receipt_handle).await.unwrap();
    assert_eq!(names(&receive_now(&f.queue, 10).await), ["a2"]);
}

#[tokio::test]
async fn given_two_groups_and_ungrouped_messages_then_a_locked_group_holds_back_only_itself() {
    // GIVEN groups a and b interleaved in one batch, and two ungrouped messages
    let f = fixture();
    f.queue
        .send_batch(vec![
            OutgoingMessage::in_group("a1".into(), "ep_a"),
            OutgoingMessage::in_group("b1".into(), "ep_b"),
            OutgoingMessage::in_group("a2".into(), "ep_a"),
            OutgoingMessage::now("u1".into()),
            OutgoingMessage::in_group("b2".into(), "ep_b"),
            OutgoingMessage::now("u2".into()),
        ])
        .await
        .unwrap();
    // WHEN received: one head per group, and every ungrouped message
    let first = receive_now(&f.queue, 10).await;
    assert_eq!(names(&first), ["a1", "b1", "u1", "u2"]);
    assert_eq!(first[2].group, None);
    // AND while a1 and b1 are in flight, new ungrouped messages still flow
    f.queue.send(OutgoingMessage::now("u3".into())).await.unwrap();
    assert_eq!(names(&receive_now(&f.queue, 10).await), ["u3"]);

    // WHEN b's head is deleted but a's is not
    f.queue.delete(&first[1].receipt_handle).await.unwrap();
    // THEN b moves on independently while a stays locked
    let next = receive_now(&f.queue, 10).await;
    assert_eq!(names(&next), ["b2"]);
    assert!(receive_now(&f.queue, 10).await.is_empty());
    f.queue.delete(&first[0].receipt_handle).await.unwrap();
    assert_eq!(names(&receive_now(&f.queue, 10).await), ["a2"]);
}

#[tokio::test]
async fn given_a_grouped_message_with_a_delay_then_the_delay_is_ignored() {
    // GIVEN a grouped message sent with a delay (even one over 15 minutes)
    let f = fixture();
    let message =
        OutgoingMessage { delay: Duration::from_secs(3600), ..OutgoingMessage::in_group("a1".into(), "ep_a") };
    f.queue.send(message).await.unwrap();
    // THEN it is visible at once, as on an SQS FIFO queue
    assert_eq!(names(&receive_now(&f.queue, 10).await), ["a1"]);
    // AND an empty group id is refused
    assert!(matches!(f.queue.send(OutgoingMessage::in_group("x".into(), "")).await, Err(QueueError::Invalid(_))));
}

#[tokio::test]
async fn given_a_grouped_head_received_group_max_receive_count_times_then_it_is_dead_lettered_and_unblocks_the_group() {
    // GIVEN max_receive_count 2 but group_max_receive_count 4, and a group of two
    let db = TempDb::new("group-dlq");
    let clock = Arc::new(ManualClock::new(chrono::Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()));
    let config = SqliteQueueConfig { visibility_timeout: VISIBILITY, max_receive_count: 2, group_max_receive_count: 4 };
    let queue = SqliteQueue::open(&db.0, "deliveries", config, clock.clone()).unwrap();
    queue.send_batch(grouped("ep_a", &["poison", "a2"])).await.unwrap();
    // WHEN the head is received four times without being deleted (past max_receive_count)
    for count in 1..=4 {
        let got = receive_now(&queue, 10).await;
        assert_eq!(got.iter().map(|m| (m.body.as_str(), m.receive_count)).collect::<Vec<_>>(), [("poison", count)]);
        clock.advance(secs(31));
    }
    // THEN the next receive dead-letters it and returns the next of its group instead
    let next = receive_now(&queue, 10).await;
    assert_eq!(names(&next), ["a2"]);
    assert_eq!(queue.dead_letters().await.unwrap(), ["poison"]);

    // WHEN the dead letter is redriven while a2 is in flight
    assert_eq!(queue.redrive_dead_letters().await.unwrap(), 1);
    // THEN it rejoins its group behind a2: held back until a2 is deleted
    assert!(receive_now(&queue, 10).await.is_empty());
    queue.delete(&next[0].receipt_handle).await.unwrap();
    let back = receive_now(&queue, 10).await;
    assert_eq!(back.iter().map(|m| (m.body.as_str(), m.receive_count)).collect::<Vec<_>>(), [("poison", 1)]);
    assert_eq!(back[0].group.as_deref(), Some("ep_a"));
}

#[tokio::test]
async fn given_a_receiver_waiting_on_a_locked_group_when_the_head_is_deleted_then_it_gets_the_next_at_once() {
    // GIVEN a group whose head is in flight and a receiver long-polling 10 s
    let f = fixture();
    f.queue.send_batch(grouped("ep_a", &["a1", "a2"])).await.unwrap();
    let head = receive_now(&f.queue, 10).await.remove(0);
    let queue = f.queue.clone();
    let waiting = tokio::spawn(async move { queue.receive(10, Duration::from_secs(10)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // WHEN the head is deleted
    f.queue.delete_batch(vec![head.receipt_handle]).await.unwrap();
    // THEN the receiver returns the next one long before its wait runs out
    let got = tokio::time::timeout(Duration::from_secs(2), waiting).await.expect("receiver woke").unwrap();
    assert_eq!(names(&got), ["a2"]);
}

#[tokio::test]
async fn given_parked_messages_when_the_queue_is_reopened_then_the_group_order_and_lock_survive() {
    // GIVEN a group of three whose head is in flight
    let f = fixture();
    f.queue.send_batch(grouped("ep_a", &["a1", "a2", "a3"])).await.unwrap();
    let head = receive_now(&f.queue, 10).await.remove(0);
    let Fixture { queue, clock, db } = f;
    drop(queue);
    // WHEN the file is opened again
    let queue = SqliteQueue::open(&db.0, "deliveries", SqliteQueueConfig::default(), clock.clone()).unwrap();
    // THEN the group is still locked, and releases in order
    assert!(receive_now(&queue, 10).await.is_empty());
    queue.delete(&head.receipt_handle).await.unwrap();
    let next = receive_now(&queue, 10).await;
    assert_eq!(names(&next), ["a2"]);
    queue.delete(&next[0].receipt_handle).await.unwrap();
    assert_eq!(names(&receive_now(&queue, 10).await), ["a3"]);
}

#[tokio::test]
async fn given_a_database_of_the_previous_schema_when_opened_then_it_is_upgraded_and_keeps_its_messages() {
    // GIVEN a file with the version-1 queue tables (no group_id) holding a message
    let db = TempDb::new("v1");
    {
        let conn = rusqlite::Connection::open(&db.0).unwrap();
        conn.execute_batch(
            "CREATE TABLE queue_messages (seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, message_id TEXT NOT NULL, \
             body TEXT NOT NULL, sent_at INTEGER NOT NULL, visible_at INTEGER NOT NULL, \
             receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT);
             CREATE INDEX queue_messages_visible ON queue_messages (queue, visible_at, seq);
             CREATE TABLE queue_dead_letters (seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, message_id TEXT NOT NULL, \
             body TEXT NOT NULL, receive_count INTEGER NOT NULL, sent_at INTEGER NOT NULL, moved_at INTEGER NOT NULL);
             CREATE TABLE queue_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO queue_meta VALUES ('schema_version', 1);
             INSERT INTO queue_messages (queue, message_id, body, sent_at, visible_at) \
             VALUES ('deliveries', '01JOLD', 'old', 0, 0);",
        )
        .unwrap();
    }
    // WHEN this version opens it
    let clock = Arc::new(ManualClock::new(chrono::Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()));
    let queue = SqliteQueue::open(&db.0, "deliveries", SqliteQueueConfig::default(), clock).unwrap();
    // THEN the old message is there, ungrouped, and groups work
    queue.send_batch(grouped("ep_a", &["a1", "a2"])).await.unwrap();
    let got = receive_now(&queue, 10).await;
    assert_eq!(names(&got), ["old", "a1"]);
    assert_eq!(got[0].group, None);
    // AND the file now has group_id columns and schema version 2
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    for table in ["queue_messages", "queue_dead_letters"] {
        let has: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = 'group_id'"), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(has, 1, "{table}");
    }
    let version: i64 =
        conn.query_row("SELECT value FROM queue_meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 2);
}
