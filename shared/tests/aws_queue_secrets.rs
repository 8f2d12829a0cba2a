//! The SQS queue and Secrets Manager adapters against moto server.

mod moto;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use skyhook::adapters::aws::secrets::SecretsManagerSecrets;
use skyhook::adapters::aws::sqs::SqsQueue;
use skyhook::adapters::local_secrets::SecretDocument;
use skyhook::ports::{OutgoingMessage, Queue, QueueError, ReceivedMessage, Secrets, SecretsError};

/// A fresh queue whose messages stay hidden 30 s after each receive.
async fn queue() -> SqsQueue {
    let client = aws_sdk_sqs::Client::new(&moto::sdk_config().await);
    let created = client
        .create_queue()
        .queue_name(moto::unique("skyhook-q"))
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .expect("create queue");
    SqsQueue::new(client, created.queue_url().expect("queue url"))
}

/// Receives until `n` messages came or `within` passed.
async fn receive_n(queue: &SqsQueue, n: usize, within: Duration) -> Vec<ReceivedMessage> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let batch = queue.receive(10, Duration::from_secs(1)).await.expect("receive");
        assert!(batch.len() <= 10);
        got.extend(batch);
    }
    got
}

fn bodies(n: usize) -> Vec<OutgoingMessage> {
    (0..n).map(|i| OutgoingMessage::now(format!("{{\"n\":{i}}}"))).collect()
}

#[tokio::test]
async fn given_25_messages_when_sent_as_one_batch_then_all_are_received_once() {
    let q = queue().await;
    q.send_batch(bodies(25)).await.expect("send_batch");
    let got = receive_n(&q, 25, Duration::from_secs(15)).await;
    let received: HashSet<String> = got.iter().map(|m| m.body.clone()).collect();
    let sent: HashSet<String> = bodies(25).into_iter().map(|m| m.body).collect();
    assert_eq!(got.len(), 25, "every message exactly once");
    assert_eq!(received, sent);
    assert!(got.iter().all(|m| m.receive_count == 1 && !m.message_id.is_empty() && !m.receipt_handle.is_empty()));
    assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty(), "all hidden by the visibility timeout");
}

#[tokio::test]
async fn given_an_empty_batch_then_nothing_is_sent() {
    let q = queue().await;
    q.send_batch(Vec::new()).await.expect("empty batch is a no-op");
    assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn given_a_message_made_visible_again_then_its_receive_count_increments() {
    let q = queue().await;
    q.send(OutgoingMessage::now("again".into())).await.unwrap();
    let first = receive_n(&q, 1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(first.receive_count, 1);
    q.change_visibility(&first.receipt_handle, Duration::ZERO).await.unwrap();
    let second = receive_n(&q, 1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.receive_count, 2);
    assert_ne!(second.receipt_handle, first.receipt_handle);
    q.change_visibility(&second.receipt_handle, Duration::ZERO).await.unwrap();
    let third = receive_n(&q, 1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(third.receive_count, 3);
}

#[tokio::test]
async fn given_a_visibility_change_then_the_message_stays_hidden_until_then() {
    let q = queue().await;
    q.send(OutgoingMessage::now("later".into())).await.unwrap();
    let m = receive_n(&q, 1, Duration::from_secs(5)).await.remove(0);
    let hidden_at = Instant::now();
    q.change_visibility(&m.receipt_handle, Duration::from_secs(3)).await.unwrap();
    assert!(q.receive(10, Duration::from_secs(1)).await.unwrap().is_empty(), "hidden for 3 s");
    let back = receive_n(&q, 1, Duration::from_secs(10)).await;
    assert_eq!(back.len(), 1, "visible again after 3 s instead of the queue's 30 s");
    assert!(hidden_at.elapsed() >= Duration::from_millis(2500));
    assert_eq!(back[0].receive_count, 2);
}

#[tokio::test]
async fn given_a_visibility_over_12_hours_then_it_is_capped_not_rejected() {
    let q = queue().await;
    q.send(OutgoingMessage::now("long".into())).await.unwrap();
    let m = receive_n(&q, 1, Duration::from_secs(5)).await.remove(0);
    // Capped to 43 200 s; moto counts from the send, so allow its stricter check.
    match q.change_visibility(&m.receipt_handle, Duration::from_secs(13 * 3600)).await {
        Ok(()) | Err(QueueError::Invalid(_)) => {}
        Err(other) => panic!("unexpected {other:?}"),
    }
    q.change_visibility(&m.receipt_handle, Duration::from_secs(11 * 3600)).await.unwrap();
}

#[tokio::test]
async fn given_a_delayed_message_then_it_is_invisible_until_the_delay_passes() {
    let q = queue().await;
    let sent_at = Instant::now();
    q.send_batch(vec![OutgoingMessage { body: "delayed".into(), delay: Duration::from_millis(1500), group: None }])
        .await
        .unwrap();
    assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty(), "delay rounds up to 2 s, never to 0");
    let got = receive_n(&q, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert!(sent_at.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn given_stale_or_invalid_receipts_then_they_never_look_like_an_outage() {
    let q = queue().await;
    for junk in ["", "not-a-receipt-handle", "AQEB-garbage"] {
        assert!(
            matches!(
                q.change_visibility(junk, Duration::ZERO).await,
                Err(QueueError::ReceiptInvalid | QueueError::Invalid(_))
            ),
            "{junk:?}"
        );
        assert!(matches!(q.delete(junk).await, Err(QueueError::ReceiptInvalid | QueueError::Invalid(_))), "{junk:?}");
    }
    q.send(OutgoingMessage::now("stale".into())).await.unwrap();
    let first = receive_n(&q, 1, Duration::from_secs(5)).await.remove(0);
    q.change_visibility(&first.receipt_handle, Duration::ZERO).await.unwrap();
    let second = receive_n(&q, 1, Duration::from_secs(5)).await.remove(0);
    // SQS (and moto) may accept an earlier receipt handle of the same message;
    // either way it is never reported as unavailability.
    match q.change_visibility(&first.receipt_handle, Duration::from_secs(30)).await {
        Ok(()) | Err(QueueError::ReceiptInvalid) => {}
        Err(other) => panic!("stale receipt reported as {other:?}"),
    }
    q.delete(&second.receipt_handle).await.unwrap();
}

#[tokio::test]
async fn given_a_deleted_message_then_it_never_comes_back_and_its_receipt_is_invalid() {
    let q = queue().await;
    q.send_batch(bodies(2)).await.unwrap();
    let got = receive_n(&q, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    q.delete(&got[0].receipt_handle).await.unwrap();
    assert!(matches!(
        q.change_visibility(&got[0].receipt_handle, Duration::ZERO).await,
        Err(QueueError::ReceiptInvalid)
    ));
    q.change_visibility(&got[1].receipt_handle, Duration::ZERO).await.unwrap();
    let back = receive_n(&q, 1, Duration::from_secs(5)).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].message_id, got[1].message_id, "only the undeleted message returns");
    assert!(q.receive(10, Duration::from_secs(1)).await.unwrap().is_empty());
}

#[tokio::test]
async fn given_a_queue_that_does_not_exist_then_calls_fail_with_a_clear_error() {
    let client = aws_sdk_sqs::Client::new(&moto::sdk_config().await);
    let url = format!("{}/123456789012/{}", moto::moto().endpoint, moto::unique("missing"));
    let q = SqsQueue::new(client, url);
    let err = q.send_batch(bodies(1)).await.unwrap_err();
    assert!(matches!(err, QueueError::Invalid(_) | QueueError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("SendMessageBatch"), "{err}");
    assert!(q.receive(1, Duration::ZERO).await.is_err());
}

// ---------------------------------------------------------------- FIFO message groups
//
// What moto (5.x) does, checked here: it locks a group while any of its
// messages is in flight, as SQS does, and like SQS it may return several
// messages of one group in one receive (the embedded queue returns one).

/// A standard queue plus a FIFO queue (`FifoQueue=true`, explicit
/// deduplication ids), both hiding messages 30 s after each receive; the
/// adapter sends grouped messages to the FIFO one.
async fn queues() -> (SqsQueue, aws_sdk_sqs::Client) {
    let standard = queue().await;
    let client = aws_sdk_sqs::Client::new(&moto::sdk_config().await);
    let created = client
        .create_queue()
        .queue_name(format!("{}.fifo", moto::unique("skyhook-ordered")))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .expect("create FIFO queue");
    (standard.with_fifo_queue(created.queue_url().expect("queue url")), client)
}

/// SQS's `ApproximateNumberOfMessages` of the queue at `url`.
async fn visible_count(client: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("get queue attributes");
    attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .unwrap()
        .parse()
        .unwrap()
}

fn names(messages: &[ReceivedMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

#[tokio::test]
async fn given_grouped_and_ungrouped_messages_then_grouped_ones_go_to_the_fifo_queue_in_order() {
    // GIVEN a batch mixing one group's messages (one with a delay) and ungrouped ones
    let (q, client) = queues().await;
    let delayed = OutgoingMessage { delay: Duration::from_secs(5), ..OutgoingMessage::in_group("a2".into(), "ep_a") };
    q.send_batch(vec![
        OutgoingMessage::in_group("a1".into(), "ep_a"),
        OutgoingMessage::now("u1".into()),
        delayed,
        OutgoingMessage::in_group("a3".into(), "ep_a"),
        // The same body again: a fresh deduplication id, so not deduplicated.
        OutgoingMessage::in_group("a3".into(), "ep_a"),
    ])
    .await
    .expect("send_batch (no DelaySeconds reaches the FIFO queue, which would refuse it)");
    // THEN the FIFO queue holds the four grouped ones, the standard queue the other
    assert_eq!(visible_count(&client, q.fifo_queue_url().unwrap()).await, 4);
    assert_eq!(visible_count(&client, q.queue_url()).await, 1);

    // WHEN received one at a time, deleting each
    let mut grouped = Vec::new();
    let mut ungrouped = Vec::new();
    for _ in 0..10 {
        let Some(m) = q.receive(1, Duration::ZERO).await.unwrap().pop() else { break };
        if m.group.is_some() {
            // THEN FIFO messages carry the group and a `fifo:` receipt handle
            assert_eq!(m.group.as_deref(), Some("ep_a"));
            assert!(m.receipt_handle.starts_with("fifo:"), "{}", m.receipt_handle);
            grouped.push(m.body.clone());
        } else {
            assert!(!m.receipt_handle.starts_with("fifo:"));
            ungrouped.push(m.body.clone());
        }
        q.delete(&m.receipt_handle).await.unwrap();
    }
    // AND the group came in send order, the delay ignored
    assert_eq!(grouped, ["a1", "a2", "a3", "a3"]);
    assert_eq!(ungrouped, ["u1"]);
}

#[tokio::test]
async fn given_a_group_head_in_flight_then_moto_locks_the_group_and_fifo_receipts_route_to_the_fifo_queue() {
    // GIVEN group a (three messages) and group b (one)
    let (q, _) = queues().await;
    q.send_batch(vec![
        OutgoingMessage::in_group("a1".into(), "ep_a"),
        OutgoingMessage::in_group("a2".into(), "ep_a"),
        OutgoingMessage::in_group("a3".into(), "ep_a"),
        OutgoingMessage::in_group("b1".into(), "ep_b"),
    ])
    .await
    .unwrap();
    // WHEN a's head is received
    let head = q.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(names(&head), ["a1"]);
    // THEN while it is in flight only group b is received
    let other = q.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(names(&other), ["b1"]);
    assert!(q.receive(10, Duration::ZERO).await.unwrap().is_empty(), "a locked, b in flight");

    // WHEN the head is made visible again (fifo: handle, routed to the FIFO queue)
    q.change_visibility(&head[0].receipt_handle, Duration::ZERO).await.unwrap();
    // THEN the head comes back first, counted twice
    let again = q.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(names(&again), ["a1"]);
    assert_eq!(again[0].receive_count, 2);

    // WHEN it is deleted (fifo: handle)
    q.delete(&again[0].receipt_handle).await.unwrap();
    // THEN the group is released: the rest comes, in order (moto, like SQS,
    // returns several messages of the group in one receive)
    let rest = q.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(names(&rest), ["a2", "a3"]);
    // AND a deleted message's fifo: handle is invalid, like any other
    assert!(matches!(
        q.change_visibility(&again[0].receipt_handle, Duration::ZERO).await,
        Err(QueueError::ReceiptInvalid | QueueError::Invalid(_))
    ));
}

#[tokio::test]
async fn given_no_fifo_queue_then_grouped_messages_and_fifo_receipts_are_refused() {
    // GIVEN an adapter with the standard queue only
    let q = queue().await;
    // WHEN a batch holding a grouped message is sent
    let err = q
        .send_batch(vec![OutgoingMessage::now("u1".into()), OutgoingMessage::in_group("a1".into(), "ep_a")])
        .await
        .unwrap_err();
    // THEN it is refused, clearly, and nothing of the batch was sent
    assert!(matches!(&err, QueueError::Invalid(m) if m.contains("FIFO")), "{err:?}");
    assert!(q.receive(10, Duration::from_secs(1)).await.unwrap().is_empty());
    // AND a fifo: receipt handle has nowhere to go
    assert!(matches!(q.delete("fifo:AQEBx").await, Err(QueueError::Invalid(_))));
    assert!(matches!(q.change_visibility("fifo:AQEBx", Duration::ZERO).await, Err(QueueError::Invalid(_))));
}

// ---------------------------------------------------------------- secrets

fn sm_client(sdk: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(sdk)
}

async fn create_secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    let name = moto::unique("skyhook/secret");
    client.create_secret().name(&name).secret_string(value).send().await.expect("create secret");
    name
}

#[tokio::test]
async fn given_a_json_secret_then_it_is_read_once_and_cached() {
    let sdk = moto::sdk_config().await;
    let client = sm_client(&sdk);
    let doc = SecretDocument::generate();
    let json = serde_json::to_string(&doc).unwrap();
    let name = create_secret(&client, &json).await;
    let secrets = SecretsManagerSecrets::new(client.clone(), &name);
    let material = secrets.load().await.expect("load");
    let expected = SecretDocument::parse(&json).unwrap();
    assert_eq!(material.admin_token, doc.admin_token);
    assert_eq!(material.data_key, expected.data_key);
    assert_eq!(material.jwt_key, expected.jwt_key);
    // Cached: deleting the secret does not affect this process any more.
    client.delete_secret().secret_id(&name).force_delete_without_recovery(true).send().await.unwrap();
    let again = secrets.load().await.expect("served from the cache");
    assert_eq!(again.admin_token, doc.admin_token);
    assert!(!format!("{secrets:?}").contains(&doc.admin_token), "Debug never shows the secret");
}

#[tokio::test]
async fn given_a_malformed_secret_then_the_error_is_malformed_and_names_the_secret() {
    let sdk = moto::sdk_config().await;
    let client = sm_client(&sdk);
    let short = serde_json::json!({"adminToken": "short", "dataKey": "AAAA", "jwtKey": "AAAA"}).to_string();
    let bad_key = r#"{"adminToken":"skyadm_0123456789abcdef","dataKey":"AAAA"}"#;
    for value in ["not json at all", r#"{"dataKey":"AAAA"}"#, bad_key, short.as_str()] {
        let name = create_secret(&client, value).await;
        let err = SecretsManagerSecrets::new(client.clone(), &name).load().await.unwrap_err();
        assert!(matches!(err, SecretsError::Malformed(_)), "{value}: {err:?}");
        assert!(err.to_string().contains(&name), "{err}");
        assert!(!err.to_string().contains("skyadm_0123456789abcdef"), "never quotes the secret: {err}");
    }
    let name = moto::unique("skyhook/binary");
    client
        .create_secret()
        .name(&name)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(b"\x00\x01".to_vec()))
        .send()
        .await
        .unwrap();
    let err = SecretsManagerSecrets::new(client.clone(), &name).load().await.unwrap_err();
    assert!(matches!(err, SecretsError::Malformed(ref m) if m.contains("SecretString")), "{err:?}");
}

#[tokio::test]
async fn given_a_missing_secret_then_it_is_unavailable_and_a_later_load_retries() {
    let sdk = moto::sdk_config().await;
    let client = sm_client(&sdk);
    let name = moto::unique("skyhook/missing");
    let secrets = SecretsManagerSecrets::new(client.clone(), &name);
    let err = secrets.load().await.unwrap_err();
    assert!(matches!(err, SecretsError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(&name) && err.to_string().contains("does not exist"), "{err}");
    // Failures are not cached.
    let doc = SecretDocument::generate();
    client.create_secret().name(&name).secret_string(serde_json::to_string(&doc).unwrap()).send().await.unwrap();
    assert_eq!(secrets.load().await.unwrap().admin_token, doc.admin_token);
}
