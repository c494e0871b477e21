//! Fault injection and how faulted requests are logged.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn throttling_fault_applies_n_times_then_disappears() {
    let sim = start(vec![mmk_account("acct1", true), mmk_account("acct2", true)]).await;
    let c = client();
    let base = sim.base_url();
    let token = sim.state().issue_token(&human());
    let r = c
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"method": "GET", "path_contains": "storageAccounts/acct1", "status": 429, "retry_after_secs": 3, "times": 2}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let id: Value = r.json().await.unwrap();
    assert!(id["id"].is_string());

    let url = arm_url(&sim, &account_id("acct1"), Some("2025-01-01"));
    // Other paths and methods are unaffected.
    let r = c
        .get(arm_url(&sim, &account_id("acct2"), Some("2025-01-01")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let r = c.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.headers()["retry-after"], "3");
        assert!(r.headers().contains_key("x-ms-correlation-request-id"));
        assert_arm_error(r, 429, "TooManyRequests").await;
    }
    let r = c.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let statuses: Vec<u16> = sim.state().requests().iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![200, 429, 429, 200]);
    let faults: Vec<Value> = c
        .get(format!("{base}/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(faults.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_persistent_faults_and_removal() {
    let sim = start(vec![mmk_account("acct1", true)]).await;
    let c = client();
    let base = sim.base_url();
    let token = sim.state().issue_token(&human());
    let url = arm_url(&sim, &account_id("acct1"), Some("2025-01-01"));

    let r = c
        .post(format!("{base}/_sim/faults"))
        .json(&json!({"latency_ms": 300, "times": 1}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let t0 = Instant::now();
    let r = c.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));

    // Without `times` a fault stays until removed; PATCH-only faults leave GETs alone.
    let id = sim.state().add_fault(azure_sim::FaultSpec {
        method: Some("patch".into()),
        status: Some(500),
        ..Default::default()
    });
    for _ in 0..3 {
        let r = c
            .patch(&url)
            .bearer_auth(&token)
            .json(&json!({"tags": {"a": "b"}}))
            .send()
            .await
            .unwrap();
        assert_arm_error(r, 500, "InternalServerError").await;
    }
    assert_eq!(c.get(&url).bearer_auth(&token).send().await.unwrap().status(), 200);
    let r = c.delete(format!("{base}/_sim/faults/{id}")).send().await.unwrap();
    assert!(r.status().is_success());
    let r = c
        .patch(&url)
        .bearer_auth(&token)
        .json(&json!({"tags": {"a": "b"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Faulted writes did not happen and raised no events.
    assert_eq!(sim.state().events().len(), 1);

    // MSI can be faulted too, and DELETE /_sim/faults clears everything.
    sim.state().add_fault(azure_sim::FaultSpec {
        path_contains: Some("/msi/".into()),
        status: Some(503),
        ..Default::default()
    });
    let msi = |c: &reqwest::Client| {
        c.get(sim.msi_endpoint())
            .query(&[
                ("api-version", "2019-08-01"),
                ("resource", "https://management.azure.com"),
            ])
            .header("X-IDENTITY-HEADER", "sim-identity-header")
            .send()
    };
    assert_eq!(msi(&c).await.unwrap().status(), 503);
    c.delete(format!("{base}/_sim/faults")).send().await.unwrap();
    assert_eq!(msi(&c).await.unwrap().status(), 200);
    let statuses: Vec<u16> = sim.state().requests().iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![200, 500, 500, 500, 200, 200, 503, 200]);
    sim.shutdown().await;
}
