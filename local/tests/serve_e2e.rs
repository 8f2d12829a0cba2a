//! End to end through the real binary: publish over HTTP, watch signed
//! deliveries arrive at a local receiver, retries on schedule, history.

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use support::*;

/// The Standard Webhooks signature, computed here without Skyhook's code.
fn expected_signature(id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD.decode(SECRET.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_receiver_failing_twice_when_an_event_is_published_then_it_is_retried_on_schedule_and_signed() {
    // GIVEN skyhook serve with a short schedule (300 ms, 600 ms) and a receiver answering 500, 503, then 200
    let server = Server::start(
        temp_dir("retry"),
        free_port(),
        &[("SKYHOOK_RETRY_SCHEDULE", "300ms,600ms"), ("SKYHOOK_RETRY_JITTER", "0")],
    );
    let receiver = Receiver::start(&[500, 503]).await;
    let (api, endpoint_id) = Api::tenant(&server.base, &receiver.url()).await;

    // WHEN an event is published
    let published = api.post("/v1/events", json!({"eventType": "order.created", "payload": {"orderId": 7}})).await;
    let event_id = published["id"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(20), || receiver.delivered_ids().len() == 1).await, "delivered");

    // THEN the receiver saw three attempts, the gaps follow the schedule
    let seen = receiver.snapshot();
    assert_eq!(seen.iter().map(|r| r.answered).collect::<Vec<_>>(), vec![500, 503, 200]);
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(280), "first retry after ~300 ms");
    assert!(seen[2].at - seen[1].at >= Duration::from_millis(560), "second retry after ~600 ms");
    // and every attempt carries the same webhook-id and a valid signature
    for request in &seen {
        let header = |name: &str| request.headers.get(name).unwrap().to_str().unwrap().to_string();
        assert_eq!(header("webhook-id"), event_id);
        let timestamp = header("webhook-timestamp");
        assert_eq!(header("webhook-signature"), expected_signature(&event_id, &timestamp, &request.body));
        assert!(header("user-agent").starts_with("Skyhook/"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["type"], "order.created");
        assert_eq!(body["data"], json!({"orderId": 7}));
    }

    // THEN the history shows one succeeded delivery with its three attempts
    let mut delivery = json!(null);
    for _ in 0..100 {
        delivery = api.get(&format!("/v1/deliveries?eventId={event_id}")).await["data"][0].clone();
        if delivery["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivery["status"], "succeeded", "{delivery}");
    assert_eq!(delivery["endpointId"], endpoint_id);
    assert_eq!(delivery["attemptCount"], 3);
    let detail = api.get(&format!("/v1/deliveries/{}", delivery["id"].as_str().unwrap())).await;
    let statuses: Vec<_> = detail["attempts"].as_array().unwrap().iter().map(|a| a["responseStatus"].clone()).collect();
    assert_eq!(statuses, vec![json!(500), json!(503), json!(200)]);
    let event = api.get(&format!("/v1/events/{event_id}")).await;
    assert_eq!(event["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_deliveries_in_flight_when_the_server_is_killed_then_after_restart_every_acknowledged_event_is_delivered()
{
    // GIVEN a slow receiver (each request takes 300 ms) and a server whose
    // in-flight messages come back 2 s after a crash
    let mut server = Server::start(
        temp_dir("kill"),
        free_port(),
        &[("SKYHOOK_VISIBILITY_TIMEOUT", "2"), ("SKYHOOK_RETRY_SCHEDULE", "200ms"), ("SKYHOOK_CONCURRENCY", "10")],
    );
    let receiver = Receiver::start(&[]).await;
    receiver.set_delay(Duration::from_millis(300));
    let (api, _) = Api::tenant(&server.base, &receiver.url()).await;

    // WHEN 60 events are acknowledged and the server is SIGKILLed mid-delivery
    let mut acknowledged = Vec::new();
    for i in 0..60 {
        let event = api.post("/v1/events", json!({"eventType": "order.created", "payload": {"n": i}})).await;
        acknowledged.push(event["id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.kill();
    let delivered_before_kill = receiver.delivered_ids().len();
    assert!(delivered_before_kill < acknowledged.len(), "the kill must land with deliveries outstanding");

    // THEN after a restart every acknowledged event reaches the endpoint
    receiver.set_delay(Duration::ZERO);
    server.restart();
    let all_delivered = wait_until(Duration::from_secs(40), || {
        let ids = receiver.delivered_ids();
        acknowledged.iter().all(|id| ids.contains(id))
    })
    .await;
    assert!(all_delivered, "delivered {} of {}", receiver.delivered_ids().len(), acknowledged.len());
    // and the history records each event as succeeded
    let mut succeeded = 0;
    for id in &acknowledged {
        let mut status = json!(null);
        for _ in 0..100 {
            status = api.get(&format!("/v1/events/{id}")).await["status"].clone();
            if status == "succeeded" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if status == "succeeded" {
            succeeded += 1;
        }
    }
    assert_eq!(succeeded, acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_running_server_when_it_gets_sigterm_then_it_exits_cleanly_and_loses_nothing() {
    // GIVEN a server on a single async worker (`SKYHOOK_WORKERS=1`, the
    // low-memory setting: API, fan-out and dispatcher share one thread),
    // with events queued for a slow receiver
    let mut server =
        Server::start(temp_dir("term"), free_port(), &[("SKYHOOK_CONCURRENCY", "10"), ("SKYHOOK_WORKERS", "1")]);
    let receiver = Receiver::start(&[]).await;
    receiver.set_delay(Duration::from_millis(200));
    let (api, _) = Api::tenant(&server.base, &receiver.url()).await;
    let mut acknowledged = Vec::new();
    for i in 0..30 {
        let event = api.post("/v1/events", json!({"eventType": "order.created", "payload": {"n": i}})).await;
        acknowledged.push(event["id"].as_str().unwrap().to_string());
    }

    // WHEN it is asked to stop
    let status = server.terminate();

    // THEN it exits 0, and a restart delivers whatever was left
    assert!(status.success(), "exit status {status:?}");
    receiver.set_delay(Duration::ZERO);
    server.restart();
    let all = wait_until(Duration::from_secs(30), || {
        let ids = receiver.delivered_ids();
        acknowledged.iter().all(|id| ids.contains(id))
    })
    .await;
    assert!(all, "delivered {} of {}", receiver.delivered_ids().len(), acknowledged.len());
}
