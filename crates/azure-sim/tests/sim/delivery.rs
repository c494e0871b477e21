//! Event Grid delivery: envelopes, headers, retries, dead-lettering, schemas.

use std::time::Duration;

use azure_sim::{DeliveryConfig, OutputSchema};
use serde_json::{Value, json};

use crate::common::*;

const WAIT: Duration = Duration::from_secs(10);

fn sample_event(id: &str) -> Value {
    let mut ev = fixture("eventgrid/arm-resourcewritesuccess.subscription-topic.delivery.docs.json")[0].clone();
    ev["id"] = json!(id);
    ev
}

fn ok() -> (u16, String, u64) {
    (200, "{}".into(), 0)
}

#[tokio::test]
async fn functions_mode_posts_the_host_envelope() {
    let rx = receiver(|_, _| (200, r#"{"Outputs":{},"Logs":[],"ReturnValue":null}"#.into(), 0)).await;
    let sim = start(vec![mmk_account("acct1", true)]).await;
    let c = client();
    let r = c
        .put(format!("{}/_sim/delivery", sim.base_url()))
        .json(&json!({"mode": "functions", "url": rx.url, "function_name": "EncryptionDrift"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = sim
        .state()
        .act(&account_id("acct1"), &human(), &json!({"tags": {"x": "y"}}));
    assert_eq!(out.status, 200);
    assert!(wait_until(WAIT, || !rx.received().is_empty()).await);
    let got = rx.received().remove(0);
    assert_eq!(got.path, "/EncryptionDrift");
    assert_eq!(got.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(got.headers["user-agent"], "Azure-Functions-Host/4.1037.0");
    assert!(got.headers.contains_key("x-azure-functions-invocationid"));
    let event = &sim.state().events()[0];
    assert_eq!(got.body["Data"]["eventGridEvent"], *event);
    assert_eq!(got.body["Metadata"]["data"], event["data"]);
    let sys = &got.body["Metadata"]["sys"];
    assert_eq!(sys["MethodName"], "EncryptionDrift");
    assert!(sys["UtcNow"].is_string() && sys["RandGuid"].is_string());
    assert!(wait_until(WAIT, || sim.state().deliveries().len() == 1).await);
    assert_eq!(sim.state().deliveries()[0].status, Some(200));
    sim.shutdown().await;
}

#[tokio::test]
async fn webhook_mode_posts_an_array_with_aeg_headers() {
    let rx = receiver(|_, _| ok()).await;
    let sim = start(vec![]).await;
    sim.state()
        .set_delivery(Some(DeliveryConfig::webhook(format!("{}/hook", rx.url))));
    let ev = sample_event("evt-webhook-1");
    let r = client()
        .post(format!("{}/_sim/events", sim.base_url()))
        .json(&json!([ev]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(wait_until(WAIT, || !rx.received().is_empty()).await);
    let got = rx.received().remove(0);
    assert_eq!(got.path, "/hook");
    assert_eq!(got.body, json!([ev]));
    let h = &got.headers;
    assert_eq!(h["aeg-event-type"], "Notification");
    assert!(h.contains_key("aeg-subscription-name"));
    assert_eq!(h["aeg-delivery-count"], "0");
    assert_eq!(h["aeg-data-version"], "2");
    assert_eq!(h["aeg-metadata-version"], "1");
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    sim.shutdown().await;
}

#[tokio::test]
async fn failures_are_retried_on_the_scaled_schedule() {
    let rx = receiver(|i, _| if i < 2 { (500, "{}".into(), 0) } else { ok() }).await;
    let sim = start(vec![]).await;
    let mut cfg = DeliveryConfig::webhook(rx.url.clone());
    cfg.time_factor = 0.001;
    sim.state().set_delivery(Some(cfg));
    let t0 = std::time::Instant::now();
    sim.state().enqueue_events(vec![sample_event("evt-retry")]);
    assert!(wait_until(WAIT, || sim.state().deliveries().len() == 3).await);
    // 10 s and 30 s scaled by 0.001.
    assert!(t0.elapsed() >= Duration::from_millis(40));
    let d = sim.state().deliveries();
    let statuses: Vec<Option<u16>> = d.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![Some(500), Some(500), Some(200)]);
    assert_eq!(d.iter().map(|a| a.attempt).collect::<Vec<_>>(), vec![1, 2, 3]);
    let counts: Vec<String> = rx
        .received()
        .iter()
        .map(|r| r.headers["aeg-delivery-count"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(counts, vec!["0", "1", "2"]);
    assert!(sim.state().deadletters().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn dead_letter_after_max_attempts_with_record_fields() {
    let rx = receiver(|_, _| (503, "{}".into(), 0)).await;
    let path = std::env::temp_dir().join(format!("azure-sim-dl-{}.jsonl", uuid::Uuid::new_v4()));
    let sim = azure_sim::start(
        azure_sim::SimConfig {
            deadletter_path: Some(path.clone()),
            delivery: Some(DeliveryConfig {
                max_attempts: 3,
                time_factor: 0.001,
                ..DeliveryConfig::functions(rx.url.clone())
            }),
            ..Default::default()
        },
        loopback(),
    )
    .await
    .unwrap();
    let ev = sample_event("evt-dl");
    sim.state().enqueue_events(vec![ev.clone()]);
    assert!(wait_until(WAIT, || sim.state().deadletters().len() == 1).await);
    assert_eq!(rx.received().len(), 3);
    let dl = &sim.state().deadletters()[0];
    let fx = fixture("eventgrid/deadletter-event.eventgrid.docs.json");
    for k in [
        "deadLetterReason",
        "deliveryAttempts",
        "lastDeliveryOutcome",
        "publishTime",
        "lastDeliveryAttemptTime",
    ] {
        assert!(fx.get(k).is_some(), "fixture lacks {k}");
        assert!(dl.get(k).is_some(), "record lacks {k}: {dl}");
    }
    assert_eq!(dl["deadLetterReason"], "MaxDeliveryAttemptsExceeded");
    assert_eq!(dl["deliveryAttempts"], 3);
    assert_eq!(dl["lastHttpCode"], 503);
    assert_eq!(dl["lastDeliveryOutcome"], "Busy");
    assert_eq!(dl["id"], "evt-dl");
    assert_eq!(dl["data"], ev["data"]);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines, vec![dl.clone()]);
    let via_api: Vec<Value> = client()
        .get(format!("{}/_sim/deadletters", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via_api, vec![dl.clone()]);
    let _ = std::fs::remove_file(&path);
    sim.shutdown().await;
}

#[tokio::test]
async fn webhook_400_is_dead_lettered_at_once() {
    let rx = receiver(|_, _| (400, "{}".into(), 0)).await;
    let sim = start(vec![]).await;
    let mut cfg = DeliveryConfig::webhook(rx.url.clone());
    cfg.time_factor = 0.001;
    sim.state().set_delivery(Some(cfg));
    sim.state().enqueue_events(vec![sample_event("evt-400")]);
    assert!(wait_until(WAIT, || sim.state().deadletters().len() == 1).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.state().deliveries().len(), 1);
    let dl = &sim.state().deadletters()[0];
    assert_eq!(dl["deadLetterReason"], "NonRetriableError");
    assert_eq!(dl["deliveryAttempts"], 1);
    assert_eq!(dl["lastHttpCode"], 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn cloudevents_schema_conversion() {
    let rx = receiver(|_, _| ok()).await;
    let sim = start(vec![]).await;
    let r = client()
        .put(format!("{}/_sim/delivery", sim.base_url()))
        .json(&json!({"mode": "webhook", "url": rx.url, "schema": "cloudevents"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.state().delivery().unwrap().schema, OutputSchema::CloudEvents);
    let ev = sample_event("evt-ce");
    sim.state().enqueue_events(vec![ev.clone()]);
    assert!(wait_until(WAIT, || !rx.received().is_empty()).await);
    let got = rx.received().remove(0);
    assert_eq!(
        got.headers["content-type"],
        "application/cloudevents+json; charset=utf-8"
    );
    let ce = &got.body;
    assert!(ce.is_object(), "one object per request");
    let fx = fixture("eventgrid/arm-resourcewritesuccess.cloudevents.spec-example.json");
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(keys(ce), keys(&fx));
    assert_eq!(ce["id"], "evt-ce");
    assert_eq!(ce["source"], ev["topic"]);
    assert_eq!(ce["subject"], ev["subject"]);
    assert_eq!(ce["type"], ev["eventType"]);
    assert_eq!(ce["time"], ev["eventTime"]);
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["data"], ev["data"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_retrying_event_does_not_block_others_and_parked_events_flush() {
    // Event "slow" fails (next retry 10 s away at factor 1); "fast" must still arrive promptly.
    let rx = receiver(|_, body| {
        if body[0]["id"] == "slow" {
            (500, "{}".into(), 0)
        } else {
            ok()
        }
    })
    .await;
    let sim = start(vec![]).await;
    // No target yet: events are kept, not delivered.
    sim.state()
        .enqueue_events(vec![sample_event("slow"), sample_event("fast")]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.state().parked_events(), 2);
    assert!(rx.received().is_empty());
    assert_eq!(sim.state().events().len(), 2);
    sim.state().set_delivery(Some(DeliveryConfig::webhook(rx.url.clone())));
    assert!(wait_until(WAIT, || rx.received().iter().any(|r| r.body[0]["id"] == "fast")).await);
    assert!(wait_until(WAIT, || sim.state().deliveries().len() == 2).await);
    assert_eq!(sim.state().parked_events(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn functions_mode_requires_a_json_object_reply() {
    let rx = receiver(|i, _| if i == 0 { (200, String::new(), 0) } else { ok() }).await;
    let sim = start(vec![]).await;
    let mut cfg = DeliveryConfig::functions(rx.url.clone());
    cfg.time_factor = 0.001;
    sim.state().set_delivery(Some(cfg));
    sim.state().enqueue_events(vec![sample_event("evt-empty")]);
    assert!(wait_until(WAIT, || sim.state().deliveries().len() == 2).await);
    let d = sim.state().deliveries();
    assert!(d[0].error.is_some());
    assert!(d[1].error.is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn per_attempt_timeout_is_a_failed_attempt() {
    let rx = receiver(|i, _| if i == 0 { (200, "{}".into(), 2_000) } else { ok() }).await;
    let sim = start(vec![]).await;
    let mut cfg = DeliveryConfig::webhook(rx.url.clone());
    cfg.time_factor = 0.001;
    cfg.timeout = Duration::from_millis(200);
    sim.state().set_delivery(Some(cfg));
    sim.state().enqueue_events(vec![sample_event("evt-timeout")]);
    assert!(wait_until(WAIT, || sim.state().deliveries().len() == 2).await);
    let d = sim.state().deliveries();
    assert_eq!(d[0].status, None);
    assert!(d[0].error.is_some());
    assert_eq!(d[1].status, Some(200));
    sim.shutdown().await;
}
