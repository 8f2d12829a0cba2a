//! Reliability under injected faults (SPEC §4 "At least once"): the whole
//! service on the embedded SQLite adapters with a `ManualClock`, each storage
//! port wrapped in a fault plan (tests/faults), and the dispatcher driven by
//! hand exactly as the embedded runner drives it (receive, handle, delete on
//! `Done`).
//!
//! What must hold whatever fails: an acknowledged event is never lost, a
//! delivery is recorded as succeeded at most once, and a failed request writes
//! nothing.

mod faults;

use std::sync::Arc;
use std::time::{Duration, Instant};

use faults::*;
use serde_json::{Value, json};
use skyhook::adapters::local_secrets::FileSecrets;
use skyhook::adapters::sqlite::SqliteQueueConfig;
use skyhook::domain::ErrorCode;
use skyhook::ports::{EventStore, OutgoingMessage, Queue, QueueError, Secrets, SecretsError, SendFailure, StoreError};
use skyhook::retry::RetrySchedule;
use skyhook::service::{MessageOutcome, ServiceError};

fn unavailable() -> StoreError {
    StoreError::Unavailable("injected: store unavailable".into())
}

fn queue_down() -> QueueError {
    QueueError::Unavailable("injected: queue unavailable".into())
}

/// A tenant with `n` endpoints (all event types), each with its own path.
async fn setup(env: &Env, n: usize) -> (Tenant, Vec<String>) {
    let tenant = env.tenant("faults").await;
    let mut endpoints = Vec::new();
    for i in 0..n {
        let ep = env.endpoint(&tenant, json!({ "url": format!("https://hooks.example.com/{i}") })).await;
        endpoints.push(ep["id"].as_str().unwrap().to_string());
    }
    (tenant, endpoints)
}

/// POST /v1/events with an Idempotency-Key header.
async fn publish_with_key(env: &Env, tenant: &Tenant, key: &str, body: &str) -> Reply {
    let auth = format!("Bearer {}", tenant.key);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json"), ("idempotency-key", key)];
    env.raw("POST", "/v1/events", &headers, body.as_bytes().to_vec()).await
}

async fn publish_ok(env: &Env, tenant: &Tenant, payload: Value) -> String {
    let (status, body, _) = env.publish(tenant, payload).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// The event's deliveries, and checks each has exactly one successful attempt.
async fn assert_delivered_once(env: &Env, tenant: &Tenant, event_id: &str, endpoints: usize) -> Vec<Value> {
    let deliveries = env.deliveries(tenant, &format!("eventId={event_id}")).await;
    assert_eq!(deliveries.len(), endpoints, "one delivery per endpoint: {deliveries:?}");
    for d in &deliveries {
        assert_eq!(d["status"], "succeeded", "{d}");
        let detail = env.delivery(tenant, d["id"].as_str().unwrap()).await;
        let successes = detail["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["responseStatus"].as_u64().is_some_and(|s| (200..300).contains(&s)))
            .count();
        assert_eq!(successes, 1, "exactly one recorded success: {detail}");
    }
    deliveries
}

// ---------------------------------------------------------------------------
// (rate limit) the store answers a slot take after the slot's second ended
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_a_rate_slot_answered_after_its_second_when_two_deliveries_follow_then_that_second_gets_one() {
    // GIVEN an endpoint limited to 1 delivery a second, two queued deliveries,
    // and a store whose first rate-slot write answers only once its second has ended
    let env = Env::new(local_config());
    let tenant = env.tenant("slow-slot").await;
    env.endpoint(&tenant, json!({ "url": "https://hooks.example.com/limited", "rateLimit": 1 })).await;
    publish_ok(&env, &tenant, json!({ "order": 1 })).await;
    publish_ok(&env, &tenant, json!({ "order": 2 })).await;
    assert_eq!(env.service.sweep_fanout(10).await.unwrap(), 2);
    let clock = Arc::clone(&env.clock);
    let slow = move |call: &Call<'_>| {
        if call.n == 1 && call.detail.starts_with("rl:") {
            clock.advance(chrono::Duration::milliseconds(1200));
        }
        false
    };
    env.store.plan.fail_if("add_to_counters", slow, unavailable());

    // WHEN both are dispatched within the next second
    let sender = Arc::new(RecordingSender::default());
    let outcomes = env.dispatch_visible(&env.dispatcher(sender.clone())).await;

    // THEN one is sent, on a slot of the second it is sent in, and the other
    // waits for a later second (sending on the stale slot would put two in one)
    assert_eq!(sender.count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| **o == MessageOutcome::Done).count(), 1, "{outcomes:?}");
    assert_eq!(env.queue_counts().await, (0, 1));
}

// ---------------------------------------------------------------------------
// (a) fan-out: the store write succeeds, the queue send fails
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_the_queue_failing_during_fan_out_when_the_next_sweep_runs_then_the_event_is_delivered_exactly_once() {
    // GIVEN an accepted event and a queue whose first send fails
    let env = Env::new(local_config());
    let (tenant, endpoints) = setup(&env, 2).await;
    let event_id = publish_ok(&env, &tenant, json!({ "order": 1 })).await;
    env.queue.plan.fail("send_batch", Nth(1), queue_down());

    // WHEN fan-out runs
    let awaiting = env.sqlite_store.events_awaiting_fanout(10).await.unwrap();
    assert_eq!(awaiting.len(), 1);
    let result = env.service.fan_out(&awaiting[0]).await;

    // THEN it reports the failure, the deliveries are written but nothing is queued,
    // and the event is still waiting for fan-out
    assert!(matches!(result, Err(ServiceError::Unavailable(_))), "{result:?}");
    assert_eq!(env.queue_counts().await, (0, 0));
    let awaiting = env.sqlite_store.events_awaiting_fanout(10).await.unwrap();
    assert_eq!(awaiting.iter().map(|e| e.id.to_string()).collect::<Vec<_>>(), vec![event_id.clone()]);

    // WHEN the next sweep runs and the dispatcher drains the queue
    assert_eq!(env.service.sweep_fanout(10).await.unwrap(), 1);
    let sender = Arc::new(RecordingSender::default());
    let outcomes = env.dispatch_visible(&env.dispatcher(sender.clone())).await;

    // THEN each endpoint got it once and history records one success each
    assert_eq!(outcomes, vec![MessageOutcome::Done; 2]);
    assert_eq!(sender.webhook_ids(), vec![event_id.clone(), event_id.clone()]);
    let deliveries = assert_delivered_once(&env, &tenant, &event_id, 2).await;
    let mut seen: Vec<_> = deliveries.iter().map(|d| d["endpointId"].as_str().unwrap().to_string()).collect();
    seen.sort();
    let mut expected = endpoints.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(env.sqlite_store.events_awaiting_fanout(10).await.unwrap().is_empty());
    assert_eq!(env.queue.plan.injected_count(), 1);
}

#[tokio::test]
async fn given_the_fan_out_mark_failing_after_the_queue_send_when_swept_again_then_duplicates_are_sent_once() {
    // GIVEN an event whose fan-out queues its messages, then cannot mark the event
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    let event_id = publish_ok(&env, &tenant, json!({ "order": 2 })).await;
    env.store.plan.fail("mark_event_fanned_out", Nth(1), unavailable());
    assert!(env.service.sweep_fanout(10).await.is_err());

    // WHEN the next sweep fans it out again (a second message for the same delivery)
    assert_eq!(env.service.sweep_fanout(10).await.unwrap(), 1);
    assert_eq!(env.queue_counts().await.0, 2, "the re-run fan-out queued the delivery again");
    let sender = Arc::new(RecordingSender::default());
    let outcomes = env.dispatch_visible(&env.dispatcher(sender.clone())).await;

    // THEN the endpoint got one POST, one success is recorded, the queue is empty
    assert_eq!(outcomes, vec![MessageOutcome::Done, MessageOutcome::Done]);
    assert_eq!(sender.count(), 1);
    assert_delivered_once(&env, &tenant, &event_id, 1).await;
    assert_eq!(env.queue_counts().await, (0, 0));
}

#[tokio::test]
async fn given_delivery_rows_committed_but_their_ack_lost_when_fan_out_is_retried_then_nothing_is_written_twice() {
    // GIVEN insert_deliveries that commits, then reports a failure
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 3).await;
    let event_id = publish_ok(&env, &tenant, json!({ "order": 3 })).await;
    env.store.plan.fail_after("insert_deliveries", Nth(1), unavailable());

    // WHEN fan-out fails and is swept again
    assert!(env.service.sweep_fanout(10).await.is_err());
    assert_eq!(env.service.sweep_fanout(10).await.unwrap(), 1);

    // THEN the event has exactly three deliveries (deterministic ids), each delivered once
    let sender = Arc::new(RecordingSender::default());
    env.dispatch_visible(&env.dispatcher(sender.clone())).await;
    assert_eq!(sender.count(), 3);
    assert_delivered_once(&env, &tenant, &event_id, 3).await;
}

// ---------------------------------------------------------------------------
// (b) the dispatcher "dies" between the POST and the record
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_the_record_failing_after_the_post_when_the_message_comes_back_then_it_is_resent_and_recorded_once() {
    // GIVEN a queued delivery, and a store that fails the first record_attempt
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    let event_id = publish_ok(&env, &tenant, json!({ "order": 4 })).await;
    env.service.sweep_fanout(10).await.unwrap();
    env.store.plan.fail("record_attempt", Nth(1), unavailable());
    let sender = Arc::new(RecordingSender::default());
    let dispatcher = env.dispatcher(sender.clone());

    // WHEN the dispatcher POSTs and cannot record
    let outcomes = env.dispatch_visible(&dispatcher).await;

    // THEN the message is kept, nothing is recorded yet
    assert_eq!(outcomes, vec![MessageOutcome::RetryLater]);
    assert_eq!(sender.count(), 1);
    let delivery = &env.deliveries(&tenant, &format!("eventId={event_id}")).await[0];
    assert_eq!(delivery["attemptCount"], 0, "{delivery}");
    assert_eq!(env.queue_counts().await, (0, 1), "hidden until the shortest retry delay");

    // WHEN the message comes back (shortest delay of the schedule)
    env.advance(RetrySchedule::default().shortest() + Duration::from_secs(1));
    let outcomes = env.dispatch_visible(&dispatcher).await;

    // THEN the endpoint got the same webhook-id twice, history has exactly one success
    assert_eq!(outcomes, vec![MessageOutcome::Done]);
    assert_eq!(sender.webhook_ids(), vec![event_id.clone(), event_id.clone()]);
    let deliveries = assert_delivered_once(&env, &tenant, &event_id, 1).await;
    assert_eq!(deliveries[0]["attemptCount"], 1);
    let detail = env.delivery(&tenant, deliveries[0]["id"].as_str().unwrap()).await;
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(env.queue_counts().await, (0, 0));
}

#[tokio::test]
async fn given_a_success_recorded_but_its_ack_lost_when_the_message_comes_back_then_nothing_is_sent_again() {
    // GIVEN record_attempt that commits the success, then reports a failure
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    let event_id = publish_ok(&env, &tenant, json!({ "order": 5 })).await;
    env.service.sweep_fanout(10).await.unwrap();
    env.store.plan.fail_after("record_attempt", Nth(1), unavailable());
    let sender = Arc::new(RecordingSender::default());
    let dispatcher = env.dispatcher(sender.clone());

    // WHEN the message is handled, comes back and is handled again
    assert_eq!(env.dispatch_visible(&dispatcher).await, vec![MessageOutcome::RetryLater]);
    env.advance(Duration::from_secs(10));
    assert_eq!(env.dispatch_visible(&dispatcher).await, vec![MessageOutcome::Done]);

    // THEN one POST, one success
    assert_eq!(sender.count(), 1);
    assert_delivered_once(&env, &tenant, &event_id, 1).await;
}

#[tokio::test]
async fn given_the_queue_delete_failing_after_a_success_when_the_message_comes_back_then_it_is_not_sent_again() {
    // GIVEN a delivered message whose delete fails (it comes back after the visibility timeout)
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    let event_id = publish_ok(&env, &tenant, json!({ "order": 6 })).await;
    env.service.sweep_fanout(10).await.unwrap();
    let sender = Arc::new(RecordingSender::default());
    let dispatcher = env.dispatcher(sender.clone());
    let message = env.receive_all().await.pop().unwrap();
    assert_eq!(dispatcher.handle(&message).await, MessageOutcome::Done);
    env.queue.plan.fail("delete", Nth(1), queue_down());
    assert!(env.queue.delete(&message.receipt_handle).await.is_err());

    // WHEN it comes back after the queue's visibility timeout
    env.advance(SqliteQueueConfig::default().visibility_timeout + Duration::from_secs(1));
    let outcomes = env.dispatch_visible(&dispatcher).await;

    // THEN it is recognised as finished: no second POST
    assert_eq!(outcomes, vec![MessageOutcome::Done]);
    assert_eq!(sender.count(), 1);
    assert_delivered_once(&env, &tenant, &event_id, 1).await;
}

#[tokio::test]
async fn given_the_visibility_change_failing_after_a_failed_attempt_then_the_retry_still_happens() {
    // GIVEN a receiver failing once, and a queue that cannot reschedule the message
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    let event_id = publish_ok(&env, &tenant, json!({ "order": 7 })).await;
    env.service.sweep_fanout(10).await.unwrap();
    let sender = Arc::new(FaultySender::new(Arc::new(RecordingSender::default())));
    sender.plan.fail("send", Nth(1), SendFailure { code: ErrorCode::Connect, message: "injected".into() });
    env.queue.plan.fail("change_visibility", Nth(1), queue_down());
    let dispatcher = env.dispatcher(sender.clone());

    // WHEN the first attempt fails
    assert_eq!(env.dispatch_visible(&dispatcher).await, vec![MessageOutcome::RetryLater]);

    // THEN the message comes back after the queue's own visibility timeout and succeeds
    env.advance(SqliteQueueConfig::default().visibility_timeout + Duration::from_secs(1));
    assert_eq!(env.dispatch_visible(&dispatcher).await, vec![MessageOutcome::Done]);
    assert_eq!(sender.plan.calls("send"), 2);
    assert_delivered_once(&env, &tenant, &event_id, 1).await;
}

// ---------------------------------------------------------------------------
// (c) duplicate queue deliveries
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_the_same_task_queued_twice_when_handled_one_after_the_other_then_one_post_and_one_success() {
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    let event_id = publish_ok(&env, &tenant, json!({ "order": 8 })).await;
    env.service.sweep_fanout(10).await.unwrap();
    // GIVEN a second copy of the task body (an SQS duplicate)
    let original = env.receive_all().await.pop().unwrap();
    env.sqlite_queue.change_visibility(&original.receipt_handle, Duration::ZERO).await.unwrap();
    env.sqlite_queue.send(OutgoingMessage::now(original.body.clone())).await.unwrap();

    // WHEN both are handled
    let sender = Arc::new(RecordingSender::default());
    let outcomes = env.dispatch_visible(&env.dispatcher(sender.clone())).await;

    // THEN both are done, one POST went out, one success is recorded
    assert_eq!(outcomes, vec![MessageOutcome::Done, MessageOutcome::Done]);
    assert_eq!(sender.count(), 1);
    assert_delivered_once(&env, &tenant, &event_id, 1).await;
    assert_eq!(env.queue_counts().await, (0, 0));
}

#[tokio::test]
async fn given_the_same_task_queued_twice_when_handled_concurrently_then_one_success_is_recorded() {
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    let event_id = publish_ok(&env, &tenant, json!({ "order": 9 })).await;
    env.service.sweep_fanout(10).await.unwrap();
    let original = env.receive_all().await.pop().unwrap();
    env.sqlite_queue.change_visibility(&original.receipt_handle, Duration::ZERO).await.unwrap();
    for _ in 0..2 {
        env.sqlite_queue.send(OutgoingMessage::now(original.body.clone())).await.unwrap();
    }

    // WHEN the three copies are handled as one concurrent batch
    let messages = env.receive_all().await;
    assert_eq!(messages.len(), 3);
    let sender = Arc::new(RecordingSender::default());
    let dispatcher = env.dispatcher(sender.clone());
    let outcomes = dispatcher.handle_batch(&messages).await;

    // THEN every copy is finished and history has exactly one success
    assert_eq!(outcomes, vec![MessageOutcome::Done; 3]);
    assert!((1..=3).contains(&sender.count()), "at least once, at most once per copy");
    let deliveries = assert_delivered_once(&env, &tenant, &event_id, 1).await;
    assert_eq!(deliveries[0]["attemptCount"], 1);
}

// ---------------------------------------------------------------------------
// (d) the store is down during a publish
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_the_store_failing_the_event_write_when_publishing_then_503_problem_with_retry_after_and_nothing_written()
{
    // GIVEN insert_event failing once
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    env.store.plan.fail("insert_event", Nth(1), unavailable());

    // WHEN an event is published through the API
    let (status, body, headers) = env.publish(&tenant, json!({ "order": 10 })).await;

    // THEN 503 problem+json with Retry-After, and nothing was written anywhere
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(body["status"], 503);
    assert!(body["type"].as_str().unwrap().starts_with("urn:skyhook:problem:"));
    assert!(!body["detail"].as_str().unwrap().contains("injected"), "internals stay out of the answer: {body}");
    let events = env.ok("GET", "/v1/events", Some(&tenant.key), None).await;
    assert_eq!(events["data"], json!([]));
    assert!(env.sqlite_store.events_awaiting_fanout(10).await.unwrap().is_empty());
    env.service.sweep_fanout(10).await.unwrap();
    assert_eq!(env.queue_counts().await, (0, 0));

    // WHEN the client retries
    let event_id = publish_ok(&env, &tenant, json!({ "order": 10 })).await;

    // THEN exactly one event exists
    let events = env.ok("GET", "/v1/events", Some(&tenant.key), None).await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
    assert_eq!(events["data"][0]["id"], event_id);
}

#[tokio::test]
async fn given_the_store_failing_a_read_before_the_write_when_publishing_then_503_and_nothing_written() {
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    env.store.plan.fail("get_event_type", Nth(1), unavailable());

    let (status, body, headers) = env.publish(&tenant, json!({ "order": 11 })).await;

    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(env.store.plan.calls("insert_event"), 0);
    let events = env.ok("GET", "/v1/events", Some(&tenant.key), None).await;
    assert_eq!(events["data"], json!([]));
}

#[tokio::test]
async fn given_the_event_committed_but_the_answer_lost_when_the_client_retries_with_its_key_then_one_event() {
    // GIVEN insert_event that commits, then fails (the client sees a 503)
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    env.store.plan.fail_after("insert_event", Nth(1), unavailable());
    let body = r#"{"eventType":"order.created","payload":{"order":12}}"#;
    let (first, _, _) = publish_with_key(&env, &tenant, "order-12", body).await;
    assert_eq!(first, 503);

    // WHEN the client retries with the same Idempotency-Key
    let (second, body, headers) = publish_with_key(&env, &tenant, "order-12", body).await;

    // THEN it gets the event that was written, and the event is delivered once
    assert_eq!(second, 202, "{body}");
    assert_eq!(headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let events = env.ok("GET", "/v1/events", Some(&tenant.key), None).await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);
    assert_eq!(events["data"][0]["id"], body["id"]);
    env.service.sweep_fanout(10).await.unwrap();
    let sender = Arc::new(RecordingSender::default());
    env.dispatch_visible(&env.dispatcher(sender.clone())).await;
    assert_eq!(sender.count(), 1);
    assert_delivered_once(&env, &tenant, body["id"].as_str().unwrap(), 1).await;
}

// ---------------------------------------------------------------------------
// (e) secrets cannot be read at cold start
// ---------------------------------------------------------------------------

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let db = TempDb::new(tag);
    let dir = db.0.with_extension("d");
    std::mem::forget(db); // only its unique name is wanted
    dir
}

#[tokio::test]
async fn given_an_unreadable_secrets_file_when_loading_at_cold_start_then_an_error_names_the_path() {
    // GIVEN a data dir whose secrets.json cannot be read as a file (it is a directory)
    let dir = temp_dir("secrets-unreadable");
    let path = dir.join("secrets.json");
    std::fs::create_dir_all(&path).unwrap();

    // WHEN the secrets are loaded
    let result = FileSecrets::new(&dir, None).load().await;

    // THEN a clear error value naming the path, no panic
    match result {
        Err(SecretsError::Unavailable(message)) => {
            assert!(message.contains(&path.display().to_string()), "{message}")
        }
        other => panic!("expected Unavailable naming {}, got {other:?}", path.display()),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn given_a_missing_data_dir_when_loading_then_the_error_names_the_path_it_could_not_write() {
    let dir = temp_dir("secrets-missing").join("does").join("not").join("exist");
    let result = FileSecrets::new(&dir, None).load().await;
    let message = match result {
        Err(SecretsError::Unavailable(message)) => message,
        other => panic!("expected Unavailable, got {other:?}"),
    };
    assert!(message.contains(&dir.join("secrets.json").display().to_string()), "{message}");
}

#[tokio::test]
async fn given_a_malformed_secrets_file_when_loading_then_malformed_names_the_problem() {
    let dir = temp_dir("secrets-malformed");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secrets.json"), r#"{"adminToken":"short"}"#).unwrap();
    let result = FileSecrets::new(&dir, None).load().await;
    match result {
        Err(SecretsError::Malformed(message)) => assert!(message.contains("adminToken"), "{message}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn given_a_secret_store_outage_then_the_error_is_returned_and_the_next_cold_start_succeeds() {
    // GIVEN a working secrets file behind a plan failing the first load
    let dir = temp_dir("secrets-outage");
    std::fs::create_dir_all(&dir).unwrap();
    let secrets = FaultySecrets::new(Arc::new(FileSecrets::new(&dir, None)));
    secrets.plan.fail("load", Nth(1), SecretsError::Unavailable("injected: secrets manager down".into()));

    // THEN the first cold start gets the error value, the second the material
    assert!(matches!(secrets.load().await, Err(SecretsError::Unavailable(_))));
    let material = secrets.load().await.expect("second load");
    assert!(material.admin_token.len() >= 16);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// (f) the store stalls during a publish
// ---------------------------------------------------------------------------

async fn event_count(env: &Env, tenant: &Tenant) -> usize {
    env.ok("GET", "/v1/events", Some(&tenant.key), None).await["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn given_the_store_stalling_a_second_when_publishing_then_the_publish_completes_and_writes_once() {
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    env.store.plan.stall("insert_event", Nth(1), Duration::from_secs(1));

    let started = Instant::now();
    let event_id = publish_ok(&env, &tenant, json!({ "order": 13 })).await;

    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(event_count(&env, &tenant).await, 1);
    env.service.sweep_fanout(10).await.unwrap();
    let sender = Arc::new(RecordingSender::default());
    env.dispatch_visible(&env.dispatcher(sender.clone())).await;
    assert_delivered_once(&env, &tenant, &event_id, 1).await;
}

#[tokio::test]
async fn given_the_caller_giving_up_while_the_store_stalls_then_either_nothing_or_the_whole_event_is_written() {
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 1).await;
    let body = r#"{"eventType":"order.created","payload":{"order":14}}"#;
    let publish = || publish_with_key(&env, &tenant, "order-14", body);

    // GIVEN the store stalling before the write; the caller (API Gateway, a client) gives up
    env.store.plan.stall("insert_event", Nth(1), Duration::from_secs(1));
    let gave_up = tokio::time::timeout(Duration::from_millis(200), publish()).await;
    assert!(gave_up.is_err());
    // THEN nothing was written
    assert_eq!(event_count(&env, &tenant).await, 0);

    // GIVEN the store stalling after the write commits; the caller gives up again
    env.store.plan.stall_after("insert_event", Nth(1), Duration::from_secs(1));
    let gave_up = tokio::time::timeout(Duration::from_millis(200), publish()).await;
    assert!(gave_up.is_err());
    // THEN the whole event is there and fans out like any other
    assert_eq!(event_count(&env, &tenant).await, 1);

    // WHEN the client retries with its Idempotency-Key
    let (status, body, _) = publish().await;
    assert_eq!(status, 202, "{body}");

    // THEN still one event, delivered once
    assert_eq!(event_count(&env, &tenant).await, 1);
    assert_eq!(env.service.sweep_fanout(10).await.unwrap(), 1);
    let sender = Arc::new(RecordingSender::default());
    env.dispatch_visible(&env.dispatcher(sender.clone())).await;
    assert_eq!(sender.count(), 1);
    assert_delivered_once(&env, &tenant, body["id"].as_str().unwrap(), 1).await;
}

// ---------------------------------------------------------------------------
// The queue is down while publishing, and during manual retries
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_the_queue_down_when_publishing_then_202_and_everything_is_delivered_once_it_is_back() {
    // GIVEN a queue refusing every send
    let env = Env::new(local_config());
    let (tenant, _) = setup(&env, 2).await;
    env.queue.plan.fail("send_batch", Always, queue_down());

    // WHEN events are published and the sweeper runs
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(publish_ok(&env, &tenant, json!({ "n": n })).await);
    }
    assert!(env.service.sweep_fanout(10).await.is_err());

    // THEN they wait; once the queue is back, each reaches each endpoint once
    assert_eq!(env.sqlite_store.events_awaiting_fanout(10).await.unwrap().len(), 3);
    env.queue.plan.clear();
    assert_eq!(env.service.sweep_fanout(10).await.unwrap(), 3);
    let sender = Arc::new(RecordingSender::default());
    env.dispatch_visible(&env.dispatcher(sender.clone())).await;
    assert_eq!(sender.count(), 6);
    for id in &ids {
        assert_delivered_once(&env, &tenant, id, 2).await;
    }
}

/// A tenant with one endpoint and one delivery that failed (maxAttempts 1);
/// returns the failed delivery's id.
async fn failed_delivery(env: &Env) -> (Tenant, String) {
    let tenant = env.tenant("retry").await;
    env.endpoint(&tenant, json!({ "url": "https://hooks.example.com/r", "maxAttempts": 1 })).await;
    let event_id = publish_ok(env, &tenant, json!({ "n": 1 })).await;
    env.service.sweep_fanout(10).await.unwrap();
    let failing = Arc::new(FaultySender::new(Arc::new(RecordingSender::default())));
    failing.plan.fail("send", Always, SendFailure { code: ErrorCode::Connect, message: "injected".into() });
    env.dispatch_visible(&env.dispatcher(failing)).await;
    let delivery = env.deliveries(&tenant, &format!("eventId={event_id}")).await.remove(0);
    assert_eq!(delivery["status"], "failed");
    (tenant, delivery["id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn given_the_store_failing_to_record_a_keys_last_use_when_the_key_is_used_then_the_request_still_succeeds() {
    // GIVEN a store that refuses the next last-use write
    let env = Env::new(local_config());
    let tenant = env.tenant("touch").await;
    env.store.plan.fail("touch_api_key", Nth(1), unavailable());

    // WHEN the key authenticates a request
    let (status, body, _) = env.call("GET", "/v1/endpoints", Some(&tenant.key), None).await;

    // THEN the request is answered as usual
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn given_the_store_failing_a_manual_retry_when_the_client_repeats_it_then_it_is_delivered_once() {
    let env = Env::new(local_config());
    let (tenant, failed) = failed_delivery(&env).await;
    env.store.plan.fail("insert_retry", Nth(1), unavailable());
    let path = format!("/v1/deliveries/{failed}/retry");

    let (status, _, headers) = env.call("POST", &path, Some(&tenant.key), None).await;
    assert_eq!(status, 503);
    assert!(headers.contains_key("retry-after"));
    let (status, retry, _) = env.call("POST", &path, Some(&tenant.key), None).await;
    assert_eq!(status, 202, "{retry}");

    let sender = Arc::new(RecordingSender::default());
    let dispatcher = env.dispatcher(sender.clone());
    env.dispatch_visible(&dispatcher).await;
    assert_eq!(sender.count(), 1);
    let retried = env.delivery(&tenant, retry["id"].as_str().unwrap()).await;
    assert_eq!(retried["status"], "succeeded");
    assert_eq!(retried["retryOf"], failed);

    // The first call's message (sent before its rows, which were never
    // written) waits a while for them, then is dropped; nothing more is sent.
    assert_eq!(env.queue_counts().await, (0, 1), "the unwritten retry's message waits");
    env.advance(Duration::from_millis(300));
    assert_eq!(env.queue_counts().await, (1, 0), "a young unwritten delivery is looked at again soon");
    for _ in 0..15 {
        env.advance(Duration::from_secs(6));
        env.dispatch_visible(&dispatcher).await;
    }
    assert_eq!(env.queue_counts().await, (0, 0), "the unwritten retry's message is dropped");
    assert_eq!(sender.count(), 1, "nothing else was sent");
    let retries: Vec<Value> =
        env.deliveries(&tenant, "").await.into_iter().filter(|d| d["retryOf"] == failed.as_str()).collect();
    assert_eq!(retries.len(), 1, "{retries:?}");
}

#[tokio::test]
async fn given_the_queue_failing_a_manual_retry_when_the_client_repeats_it_then_the_retry_is_delivered() {
    // GIVEN a failed delivery, and a queue refusing the next send
    let env = Env::new(local_config());
    let (tenant, failed) = failed_delivery(&env).await;
    env.queue.plan.fail("send_batch", Nth(1), queue_down());
    let path = format!("/v1/deliveries/{failed}/retry");

    // WHEN the retry gets a 503 and the client repeats it, as told
    let (status, _, _) = env.call("POST", &path, Some(&tenant.key), None).await;
    assert_eq!(status, 503);
    let (status, body, _) = env.call("POST", &path, Some(&tenant.key), None).await;

    // THEN the repeat is accepted, and the endpoint gets the event again
    let _ = env.service.sweep_fanout(10).await;
    let sender = Arc::new(RecordingSender::default());
    env.dispatch_visible(&env.dispatcher(sender.clone())).await;
    let pending: Vec<Value> = env
        .deliveries(&tenant, "")
        .await
        .into_iter()
        .filter(|d| d["status"] == "pending" && d["attemptCount"] == 0)
        .collect();
    assert!(pending.is_empty(), "a retry delivery is pending with no message to send it: {pending:?}");
    assert_eq!(status, 202, "{body}");
    assert_eq!(sender.count(), 1, "the retry was sent");
}

#[tokio::test]
async fn given_the_queue_failing_during_a_bulk_retry_when_it_is_repeated_then_every_failed_delivery_is_resent() {
    let env = Env::new(local_config());
    let (tenant, _) = failed_delivery(&env).await;
    env.queue.plan.fail("send_batch", Nth(1), queue_down());

    let (status, _, _) = env.call("POST", "/v1/deliveries/retry", Some(&tenant.key), None).await;
    assert_eq!(status, 503);
    let (status, body, _) = env.call("POST", "/v1/deliveries/retry", Some(&tenant.key), None).await;
    assert_eq!(status, 202, "{body}");

    let sender = Arc::new(RecordingSender::default());
    env.dispatch_visible(&env.dispatcher(sender.clone())).await;
    assert_eq!(sender.count(), 1, "the failed delivery was re-sent: repeat answered {body}");
}

// ---------------------------------------------------------------------------
// Fault storm: random failures on every port at once
// ---------------------------------------------------------------------------

/// Fails (before or after the call) a share of every store and queue call and
/// of the receiver's answers, publishes through the API, and drives fan-out
/// and the dispatcher with a moving clock until everything is final. Every
/// acknowledged event must reach every endpoint, with one recorded success.
#[tokio::test]
async fn given_random_faults_on_every_port_when_the_system_runs_to_quiescence_then_nothing_is_lost() {
    let events: usize = std::env::var("SKYHOOK_STORM_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    const ENDPOINTS: usize = 3;
    let schedule = RetrySchedule::new(vec![Duration::from_secs(1), Duration::from_secs(2)], 0.2);
    let env = Env::with_queue_config(
        skyhook::service::ServiceConfig { retry_schedule: schedule, ..local_config() },
        SqliteQueueConfig {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 0,
            group_max_receive_count: 0,
        },
    );
    let tenant = env.tenant("storm").await;
    let mut endpoints = Vec::new();
    for i in 0..ENDPOINTS {
        let ep =
            env.endpoint(&tenant, json!({ "url": format!("https://hooks.example.com/{i}"), "maxAttempts": 20 })).await;
        endpoints.push(ep["id"].as_str().unwrap().to_string());
    }

    // GIVEN faults everywhere
    env.store.plan.seed(7);
    env.store.plan.fail("*", Chance(0.08), unavailable());
    env.store.plan.fail_after("*", Chance(0.04), unavailable());
    env.queue.plan.seed(11);
    env.queue.plan.fail("*", Chance(0.08), queue_down());
    env.queue.plan.fail_after("*", Chance(0.04), queue_down());
    let recorder = Arc::new(RecordingSender::default());
    let sender = Arc::new(FaultySender::new(recorder.clone()));
    sender.plan.seed(13);
    sender.plan.fail("send", Chance(0.15), SendFailure { code: ErrorCode::Connect, message: "injected".into() });
    sender.plan.stall("send", Chance(0.05), Duration::from_millis(5));
    let dispatcher = env.dispatcher(sender.clone());

    // WHEN events are published (retried with their Idempotency-Key until acknowledged)
    let mut acknowledged = Vec::new();
    let mut publish_failures = 0;
    for i in 0..events {
        let key = format!("storm-{i}");
        let body = format!(r#"{{"eventType":"order.created","payload":{{"n":{i}}}}}"#);
        loop {
            let (status, value, _) = publish_with_key(&env, &tenant, &key, &body).await;
            if status == 202 {
                acknowledged.push(value["id"].as_str().unwrap().to_string());
                break;
            }
            assert_eq!(status, 503, "only outages may refuse a valid publish: {value}");
            publish_failures += 1;
        }
    }

    // AND the workers run (faults still on) until every delivery is final
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 2_000, "did not settle");
        let _ = env.service.sweep_fanout(50).await;
        if let Ok(messages) = env.queue.receive(10, Duration::ZERO).await {
            let outcomes = dispatcher.handle_batch(&messages).await;
            for (message, outcome) in messages.iter().zip(outcomes) {
                if outcome == MessageOutcome::Done {
                    let _ = env.queue.delete(&message.receipt_handle).await;
                }
            }
            if !messages.is_empty() {
                continue;
            }
        }
        let pending_fanout = env.sqlite_store.events_awaiting_fanout(1).await.unwrap().len();
        let (visible, hidden) = env.queue_counts().await;
        if pending_fanout == 0 && visible == 0 && hidden == 0 {
            break;
        }
        env.advance(Duration::from_secs(3));
    }

    // THEN (faults off) every acknowledged event reached every endpoint, one recorded success each
    let store_faults = env.store.plan.injected_count();
    let queue_faults = env.queue.plan.injected_count();
    let sender_faults = sender.plan.injected().iter().filter(|i| i.action == "fail").count();
    env.store.plan.clear();
    env.queue.plan.clear();
    assert_eq!(acknowledged.len(), events);
    let mut unique = acknowledged.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), events, "an Idempotency-Key retry never creates a second event");
    let deliveries = env.deliveries(&tenant, "").await;
    assert_eq!(deliveries.len(), events * ENDPOINTS);
    let mut lost = 0;
    let mut double_successes = 0;
    for d in &deliveries {
        if d["status"] != "succeeded" {
            lost += 1;
            continue;
        }
        let detail = env.delivery(&tenant, d["id"].as_str().unwrap()).await;
        let successes = detail["attempts"].as_array().unwrap().iter().filter(|a| a["responseStatus"] == 200).count();
        if successes != 1 {
            double_successes += 1;
        }
    }
    let mut pairs: Vec<(String, String)> =
        recorder.sent().iter().map(|r| (header(r, "webhook-id").unwrap().to_string(), r.url.clone())).collect();
    let posts = pairs.len();
    pairs.sort();
    pairs.dedup();
    assert!(env.sqlite_queue.dead_letters().await.unwrap().is_empty());
    println!(
        "fault storm: events={events} endpoints={ENDPOINTS} deliveries={} store_faults={store_faults} \
         queue_faults={queue_faults} sender_failures={sender_faults} publish_503s={publish_failures} \
         successful_posts={posts} duplicate_posts={} rounds={rounds} lost={lost} double_successes={double_successes}",
        deliveries.len(),
        posts - pairs.len(),
    );
    assert_eq!(lost, 0);
    assert_eq!(double_successes, 0);
    assert_eq!(pairs.len(), events * ENDPOINTS, "every (event, endpoint) received at least once");
    assert!(store_faults > 0 && queue_faults > 0 && sender_faults > 0);
    // AND every event's counters agree: all deliveries counted once, all succeeded
    for id in &acknowledged {
        let event = env.ok("GET", &format!("/v1/events/{id}"), Some(&tenant.key), None).await;
        assert_eq!(event["status"], "succeeded", "{event}");
        assert_eq!(event["deliveryCount"], ENDPOINTS, "{event}");
        assert_eq!(event["succeededCount"], ENDPOINTS, "{event}");
        assert_eq!(event["failedCount"], 0, "{event}");
    }
}
