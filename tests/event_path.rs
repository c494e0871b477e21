//! The event path end to end: the stand-in's ARM emits a write event, delivers it through the
//! Functions envelope to the real `keyguard serve`, which reads the account back through ARM,
//! decides against the profile and reverts; every assertion is on what the stand-in saw.

use std::time::Duration;

use keyguard_e2e::*;
use serde_json::{Value, json};

fn cmk_patch(vault: &str) -> Value {
    json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyvaulturi": vault, "keyname": "storage-cmk", "keyversion": ""}}}})
}

fn mmk_patch() -> Value {
    json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}})
}

fn tag_patch(value: &str) -> Value {
    json!({"tags": {"touched": value}})
}

/// Seeds a compliant CMK account and lets keyguard see it once (a harmless tag write), which
/// records the last known-good key keyguard will revert to.
async fn compliant_cmk_account(env: &Env, rg: &str, name: &str) -> anyhow::Result<String> {
    let id = account_id(rg, name);
    env.seed(json!([storage_account(
        rg,
        name,
        Some(APPROVED_VAULT),
        json!({"env": "test"})
    )]))
    .await?;
    let before = env.events().await?.len();
    env.act_as_user(&id, tag_patch("baseline")).await?;
    env.wait_delivered(before + 1).await?;
    env.audit_record(&id, "result", "compliant").await?;
    Ok(id)
}

#[tokio::test]
async fn cmk_to_mmk_drift_is_reverted_and_verified_by_a_fresh_get() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stcmkdrift").await?;

    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(2).await?;

    let doc = env.resource(&id).await?;
    assert_eq!(doc["properties"]["encryption"]["keySource"], "Microsoft.Keyvault");
    assert_eq!(
        doc["properties"]["encryption"]["keyvaultproperties"]["keyvaulturi"],
        APPROVED_VAULT
    );
    assert_eq!(
        doc["properties"]["encryption"]["keyvaultproperties"]["keyname"],
        "storage-cmk"
    );
    assert_eq!(env.keyguard_patches().await?, 1, "exactly one revert PATCH");
    // Verified by reading back: keyguard's last ARM call for the account is a GET after its PATCH.
    let keyguard_calls = env.sim_get("/_sim/requests").await?;
    let calls: Vec<&Value> = keyguard_calls
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["principal_oid"] == KEYGUARD_OID && r["path"].as_str().is_some_and(|p| p.contains("stcmkdrift")))
        .collect();
    let last_patch = calls.iter().rposition(|r| r["method"] == "PATCH").expect("a PATCH");
    assert!(
        calls[last_patch + 1..].iter().any(|r| r["method"] == "GET"),
        "a GET after the PATCH: {calls:?}"
    );

    let record = env.audit_record(&id, "result", "reverted").await?;
    assert_eq!(record["verdict"], "drift");
    assert_eq!(record["action"], "revert");
    assert_eq!(record["before"]["state"], "mmk");
    assert_eq!(record["after"]["state"], "cmk");
    assert_eq!(record["after"]["detail"]["vaultUri"], APPROVED_VAULT);
    assert!(
        record["caller"].as_str().unwrap_or_default().contains("mallory"),
        "caller recorded: {record}"
    );
    assert!(record["correlationId"].as_str().is_some_and(|c| !c.is_empty()));
    // keyguard's own PATCH raised another event; it was recognised and skipped, not reverted again.
    env.wait_delivered(3).await?;
    env.audit_record(&id, "result", "own-write").await?;
    assert_eq!(env.keyguard_patches().await?, 1);
    // Three events, several ARM and Key Vault calls, one token per audience (ARM, Key Vault):
    // the credential caches each until near expiry.
    assert_eq!(env.token_requests().await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_key_from_an_unapproved_vault_is_reverted_to_the_last_known_good_key() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stroguevault").await?;

    env.act_as_user(&id, cmk_patch(ROGUE_VAULT)).await?;
    env.wait_delivered(2).await?;
    let doc = env.resource(&id).await?;
    assert_eq!(
        doc["properties"]["encryption"]["keyvaultproperties"]["keyvaulturi"],
        APPROVED_VAULT
    );
    let record = env.audit_record(&id, "result", "reverted").await?;
    assert!(
        record["drift"].as_str().unwrap_or_default().contains("UnapprovedVault"),
        "{record}"
    );
    assert_eq!(env.keyguard_patches().await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_mmk_profile_account_switched_to_cmk_is_reverted_to_microsoft_keys() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = account_id("rg-mmk", "stmmkonly");
    env.seed(json!([storage_account("rg-mmk", "stmmkonly", None, json!({}))]))
        .await?;

    env.act_as_user(&id, cmk_patch(APPROVED_VAULT)).await?;
    env.wait_delivered(1).await?;
    assert_eq!(env.key_source(&id).await?, "Microsoft.Storage");
    let doc = env.resource(&id).await?;
    assert!(doc["properties"]["encryption"].get("keyvaultproperties").is_none());
    assert_eq!(env.keyguard_patches().await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_exempt_account_is_left_alone_and_recorded_as_exempt() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = account_id("rg-cmk", "stexempt");
    let tags =
        json!({"keyguard-exempt-until": azure_sim::date_in_days(30), "keyguard-exempt-reason": "CHG-42 migration"});
    env.seed(json!([storage_account(
        "rg-cmk",
        "stexempt",
        Some(APPROVED_VAULT),
        tags
    )]))
    .await?;

    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(1).await?;
    assert_eq!(env.key_source(&id).await?, "Microsoft.Storage", "untouched");
    assert_eq!(env.keyguard_patches().await?, 0);
    let record = env.audit_record(&id, "verdict", "exempt").await?;
    assert!(
        record["detail"].as_str().unwrap_or_default().contains("CHG-42"),
        "{record}"
    );
    Ok(())
}

#[tokio::test]
async fn an_event_caused_by_keyguards_own_identity_is_ignored() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = account_id("rg-cmk", "stownwrite");
    env.seed(json!([storage_account(
        "rg-cmk",
        "stownwrite",
        Some(APPROVED_VAULT),
        json!({})
    )]))
    .await?;
    let gets_before = env.arm_requests("GET", Some(KEYGUARD_OID)).await?.len();

    // keyguard's own identity (the function app's system-assigned identity) makes a change.
    env.act(
        &id,
        json!({"oid": KEYGUARD_OID, "appid": KEYGUARD_APPID, "name": "keyguard"}),
        mmk_patch(),
    )
    .await?;
    env.wait_delivered(1).await?;

    assert_eq!(
        env.key_source(&id).await?,
        "Microsoft.Storage",
        "own writes are never fought"
    );
    assert_eq!(env.keyguard_patches().await?, 0);
    assert_eq!(
        env.arm_requests("GET", Some(KEYGUARD_OID)).await?.len(),
        gets_before,
        "not even read"
    );
    env.audit_record(&id, "result", "own-write").await?;
    Ok(())
}

#[tokio::test]
async fn the_same_event_delivered_twice_reverts_once() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stduplicate").await?;
    // Stop automatic delivery so the test controls it: drift is made, its event taken from the sim.
    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(2).await?;
    let drift_event = env
        .events()
        .await?
        .into_iter()
        .rev()
        .find(|e| e["data"]["claims"]["name"] == "Mallory Admin")
        .expect("the drift event");
    // Redeliver the very same event twice at once, as Event Grid may.
    let body = serde_json::to_vec(&functions_envelope(&drift_event))?;
    let (a, b) = tokio::join!(
        env.invoke("EncryptionDrift", "application/json", body.clone()),
        env.invoke("EncryptionDrift", "application/json", body)
    );
    assert_eq!(a?.0, 200);
    assert_eq!(b?.0, 200);
    assert_eq!(env.keyguard_patches().await?, 1, "one revert in all");
    env.audit_record(&id, "result", "duplicate").await?;
    Ok(())
}

#[tokio::test]
async fn a_handler_whose_port_was_taken_starts_on_another_and_events_reach_it() -> anyhow::Result<()> {
    // Another process holds the port the harness picked for the handler (the race of picking a
    // free port and binding it later): the handler is started again elsewhere, not mistaken.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0")?;
    let taken = squatter.local_addr()?.port();
    let env = Env::start(Options {
        first_handler_port: Some(taken),
        ..Options::default()
    })
    .await?;
    assert!(!env.handler.ends_with(&format!(":{taken}")), "{}", env.handler);
    let id = account_id("rg-cmk", "stportmoved");
    env.seed(json!([storage_account(
        "rg-cmk",
        "stportmoved",
        Some(APPROVED_VAULT),
        json!({})
    )]))
    .await?;
    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(1).await?;
    env.audit_record(&id, "verdict", "drift").await?;
    drop(squatter);
    Ok(())
}

#[tokio::test]
async fn an_event_for_a_deleted_account_answers_200_and_gone() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = account_id("rg-cmk", "stdeleted");
    env.seed(json!([storage_account(
        "rg-cmk",
        "stdeleted",
        Some(APPROVED_VAULT),
        json!({})
    )]))
    .await?;
    env.act_as_user(&id, mmk_patch()).await?;
    let event = env.events().await?.pop().expect("event");
    env.wait_delivered(1).await?;
    env.http
        .delete(format!("{}/_sim/resource", env.sim))
        .query(&[("id", &id)])
        .send()
        .await?;

    let mut late = event.clone();
    late["id"] = json!("late-event-for-a-deleted-account");
    let (status, body) = env.deliver(&late).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ReturnValue"]["verdict"], "gone");
    Ok(())
}

#[tokio::test]
async fn arm_throttling_twice_then_success_still_reverts() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stthrottled").await?;
    env.add_fault(
        json!({"method": "GET", "path_contains": "stthrottled", "status": 429, "retry_after_secs": 1, "times": 2}),
    )
    .await?;

    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(2).await?;
    assert_eq!(env.key_source(&id).await?, "Microsoft.Keyvault");
    let statuses: Vec<u64> = env
        .arm_requests("GET", Some(KEYGUARD_OID))
        .await?
        .iter()
        .filter_map(|r| r["status"].as_u64())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2, "{statuses:?}");
    // Only one delivery attempt was needed: the retries happened inside the invocation.
    let deliveries = env.sim_get("/_sim/deliveries").await?;
    assert!(
        deliveries.as_array().into_iter().flatten().all(|d| d["status"] == 200),
        "{deliveries}"
    );
    Ok(())
}

#[tokio::test]
async fn arm_errors_beyond_the_time_budget_fail_the_invocation_and_event_grid_retries() -> anyhow::Result<()> {
    let env = Env::start(Options {
        time_budget_ms: 1_500,
        time_factor: 0.05,
        ..Options::default()
    })
    .await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stflaky").await?;
    // 500s for longer than one invocation's budget (keyguard backs off between tries).
    env.add_fault(json!({"method": "GET", "path_contains": "stflaky", "status": 500, "times": 6}))
        .await?;

    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_for(Duration::from_secs(40), "revert after redelivery", || async {
        Ok(env.key_source(&id).await? == "Microsoft.Keyvault")
    })
    .await?;
    let deliveries = env.sim_get("/_sim/deliveries").await?;
    let statuses: Vec<Value> = deliveries
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["status"].clone())
        .collect();
    assert!(
        statuses.iter().any(|s| s.as_u64().is_some_and(|s| s >= 500)),
        "a failed attempt first: {statuses:?}"
    );
    assert!(statuses.iter().any(|s| s == 200), "then success: {statuses:?}");
    assert_eq!(env.keyguard_patches().await?, 1);
    Ok(())
}

/// ARM refuses keyguard's read (403): every redelivery would meet the same answer. Under the
/// Functions host the event is answered as taken on its first delivery (any failed invocation
/// makes Event Grid redeliver for up to a day); on the webhook it is refused with 400, which Event
/// Grid dead-letters at once. Either way it is delivered once.
#[tokio::test]
async fn an_error_retrying_cannot_fix_is_delivered_once_not_for_a_day() -> anyhow::Result<()> {
    for webhook in [false, true] {
        let env = Env::start(Options {
            webhook,
            ..Options::default()
        })
        .await?;
        let id = compliant_cmk_account(&env, "rg-cmk", "stforbidden").await?;
        env.add_fault(json!({"method": "GET", "path_contains": "stforbidden", "status": 403}))
            .await?;
        env.act_as_user(&id, mmk_patch()).await?;
        let events = env.events().await?;
        let drift = events
            .last()
            .and_then(|e| e["id"].as_str())
            .unwrap_or_default()
            .to_string();
        let attempts = || async {
            let deliveries = env.sim_get("/_sim/deliveries").await?;
            Ok::<Vec<Value>, anyhow::Error>(
                deliveries
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|d| d["event_id"] == drift.as_str())
                    .map(|d| d["status"].clone())
                    .collect(),
            )
        };
        if webhook {
            env.wait_for(Duration::from_secs(30), "the event dead-lettered", || async {
                let dead = env.sim_get("/_sim/deadletters").await?;
                Ok(dead.as_array().into_iter().flatten().any(|d| d["id"] == drift.as_str()))
            })
            .await?;
            let dead = env.sim_get("/_sim/deadletters").await?;
            let record = dead
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["id"] == drift.as_str())
                .cloned()
                .unwrap_or_default();
            assert_eq!(record["deadLetterReason"], "NonRetriableError", "{record}");
            assert_eq!(record["lastHttpCode"], 400, "{record}");
            assert_eq!(attempts().await?, vec![json!(400)], "webhook: one attempt");
        } else {
            env.wait_delivered(events.len()).await?;
            assert_eq!(
                attempts().await?,
                vec![json!(200)],
                "functions: one attempt, answered as taken"
            );
            assert!(
                env.log_tail(200).contains("answered as taken"),
                "the log says why:\n{}",
                env.log_tail(30)
            );
        }
        assert_eq!(env.keyguard_patches().await?, 0, "nothing was read, nothing written");
    }
    Ok(())
}

#[tokio::test]
async fn dry_run_sends_no_patch() -> anyhow::Result<()> {
    let env = Env::start(Options {
        dry_run: true,
        ..Options::default()
    })
    .await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stdryrun").await?;
    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(2).await?;
    assert_eq!(env.key_source(&id).await?, "Microsoft.Storage");
    assert_eq!(
        env.arm_requests("PATCH", Some(KEYGUARD_OID)).await?.len(),
        0,
        "no PATCH reached ARM"
    );
    let record = env.audit_record(&id, "result", "dry-run-would-revert").await?;
    assert_eq!(record["dryRun"], true);
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;

    let (status, body) = env
        .invoke("EncryptionDrift", "application/json", b"{\"Data\": ".to_vec())
        .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));

    let mut event = fixture("eventgrid/arm-resourcewritesuccess.eventgrid.spec-example.json");
    event["data"]["resourceUri"] = json!(
        "https://evil.example.com/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z"
    );
    let (status, body) = env.deliver(&event).await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("resource"),
        "{body}"
    );
    event["data"]["resourceUri"] =
        json!("/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/..%2F..%2Fz");
    let (status, _) = env.deliver(&event).await?;
    assert_eq!(status, 400);

    let huge = vec![b' '; 10 * 1024 * 1024];
    let (status, body) = env.invoke("EncryptionDrift", "application/json", huge).await?;
    assert_eq!(status, 413, "{body}");

    let (status, body) = env.invoke("EncryptionDrift", "text/plain", b"{}".to_vec()).await?;
    assert_eq!(status, 415, "{body}");

    // None of this reached ARM.
    assert!(env.arm_requests("GET", None).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_direct_webhook_answers_both_handshakes_and_reverts() -> anyhow::Result<()> {
    let env = Env::start(Options {
        webhook: true,
        ..Options::default()
    })
    .await?;
    let url = env.events_url();

    let validation = fixture("eventgrid/subscriptionvalidationevent.delivery.docs.json");
    let r = env
        .http
        .post(&url)
        .header("aeg-event-type", "SubscriptionValidation")
        .json(&validation)
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await?;
    assert_eq!(body["validationResponse"], validation[0]["data"]["validationCode"]);

    let r = env
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("WebHook-Request-Origin", "eventgrid.azure.net")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["webhook-allowed-origin"], "eventgrid.azure.net");
    let r = env
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("WebHook-Request-Origin", "evil.example.com")
        .send()
        .await?;
    assert_eq!(r.status(), 403);

    let id = compliant_cmk_account(&env, "rg-cmk", "stwebhook").await?;
    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(2).await?;
    assert_eq!(env.key_source(&id).await?, "Microsoft.Keyvault");
    Ok(())
}

#[tokio::test]
async fn someone_who_keeps_changing_it_back_gets_three_reverts_an_hour_then_alerts() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "sttugofwar").await?;
    let mut delivered = env.events().await?.len();
    for round in 1..=4 {
        env.act_as_user(&id, mmk_patch()).await?;
        // The drift event, plus keyguard's own echo when it reverted.
        delivered += if round <= 3 { 2 } else { 1 };
        env.wait_delivered(delivered).await?;
    }
    assert_eq!(
        env.keyguard_patches().await?,
        3,
        "the cap is 3 reverts per resource per hour"
    );
    assert_eq!(
        env.key_source(&id).await?,
        "Microsoft.Storage",
        "the fourth change stands"
    );
    let capped = env.audit_record(&id, "result", "rate-limited").await?;
    let records = env.audit_for(&id);
    assert_eq!(capped["alert"], true);
    assert_eq!(capped["action"], "alert-only");
    assert_eq!(records.iter().filter(|r| r["result"] == "reverted").count(), 3);
    Ok(())
}

#[tokio::test]
async fn a_resource_notification_carries_the_body_so_a_compliant_account_needs_no_arm_call() -> anyhow::Result<()> {
    let env = Env::start(Options {
        no_delivery: true,
        ..Options::default()
    })
    .await?;
    let id = account_id("rg-cmk", "starncompliant");
    let account = storage_account("rg-cmk", "starncompliant", Some(APPROVED_VAULT), json!({}));
    env.seed(json!([account.clone()])).await?;
    // Microsoft's example, with its stray space removed and pointed at our account.
    let mut event = resource_notification(&id, "starncompliant", account["properties"]["encryption"].clone());
    let (status, body) = env.deliver(&event).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ReturnValue"]["verdict"], "compliant", "{body}");
    assert!(
        env.arm_requests("GET", None).await?.is_empty(),
        "decided from the event's body"
    );

    // The same notification saying MMK: before acting, keyguard reads the live account (still CMK).
    event["id"] = json!("second-notification");
    event["data"]["resourceInfo"]["properties"]["encryption"] = json!({"keySource": "Microsoft.Storage"});
    let (status, body) = env.deliver(&event).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["ReturnValue"]["verdict"], "compliant",
        "stale body, live state decides: {body}"
    );
    assert!(
        body["ReturnValue"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("live resource"),
        "{body}"
    );
    assert_eq!(
        env.arm_requests("GET", Some(KEYGUARD_OID)).await?.len(),
        1,
        "one live read, no write"
    );
    assert_eq!(env.keyguard_patches().await?, 0);
    Ok(())
}

#[tokio::test]
async fn cloudevents_deliveries_to_the_webhook_are_handled_the_same_way() -> anyhow::Result<()> {
    let env = Env::start(Options {
        webhook: true,
        cloud_events: true,
        ..Options::default()
    })
    .await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stcloudevents").await?;
    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(2).await?;
    assert_eq!(env.key_source(&id).await?, "Microsoft.Keyvault");
    assert_eq!(env.keyguard_patches().await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_revert_that_arm_refuses_is_recorded_and_alerted_not_retried() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "strefused").await?;
    // ARM refuses the PATCH (as a policy denial or a bad request would).
    env.add_fault(json!({"method": "PATCH", "path_contains": "strefused", "status": 400, "times": 1}))
        .await?;

    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(2).await?;
    let record = env.audit_record(&id, "result", "revert-failed").await?;
    assert_eq!(record["alert"], true);
    assert!(
        record["detail"].as_str().unwrap_or_default().contains("400"),
        "{record}"
    );
    assert_eq!(env.key_source(&id).await?, "Microsoft.Storage");
    // A refused write is not retried blindly: one PATCH, one successful delivery.
    assert_eq!(env.arm_requests("PATCH", Some(KEYGUARD_OID)).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn the_timer_reconcile_catches_drift_whose_event_was_lost() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stlostevent").await?;
    // Event Grid loses this one: the target is removed before the change is made.
    env.http
        .delete(format!("{}/_sim/delivery", env.sim))
        .send()
        .await?
        .error_for_status()?;
    env.act_as_user(&id, mmk_patch()).await?;
    assert_eq!(env.key_source(&id).await?, "Microsoft.Storage");

    // The timer fires (the host's captured timer request shape).
    let timer = fixture("functions/request.timertrigger.captured.json");
    let mut request = timer.clone();
    request["Data"] = json!({"timer": timer["Data"]["inMsg"]});
    let (status, body) = env
        .invoke("Reconcile", "application/json", serde_json::to_vec(&request)?)
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ReturnValue"]["drift"], 1, "{body}");
    assert_eq!(
        env.key_source(&id).await?,
        "Microsoft.Keyvault",
        "reverted by the sweep"
    );
    let record = env.audit_record(&id, "result", "reverted").await?;
    assert_eq!(record["trigger"]["kind"], "reconcile");
    Ok(())
}

async fn seed_key(env: &Env, key: serde_json::Value) -> anyhow::Result<()> {
    let r = env
        .http
        .post(format!("{}/_sim/keys", env.sim))
        .json(&key)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "seeding a key failed: {}", r.text().await?);
    Ok(())
}

#[tokio::test]
async fn no_revert_to_a_disabled_key_and_the_finding_says_why() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stkeydisabled").await?;
    // Someone disables the key in Key Vault, then switches the account to Microsoft keys.
    seed_key(
        &env,
        json!({"vault": APPROVED_VAULT, "name": "storage-cmk", "enabled": false}),
    )
    .await?;
    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(2).await?;
    let record = env.audit_record(&id, "result", "manual-action-needed").await?;
    assert!(
        record["detail"].as_str().unwrap_or_default().contains("disabled"),
        "{record}"
    );
    assert_eq!(record["alert"], true);
    assert_eq!(env.keyguard_patches().await?, 0, "never point data at a disabled key");
    Ok(())
}

#[tokio::test]
async fn no_revert_to_a_key_in_a_vault_without_purge_protection() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stkeypurgeable").await?;
    seed_key(
        &env,
        json!({"vault": APPROVED_VAULT, "name": "storage-cmk", "recovery_level": "Recoverable+Purgeable"}),
    )
    .await?;
    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(2).await?;
    let record = env.audit_record(&id, "result", "manual-action-needed").await?;
    assert!(
        record["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("purge protection"),
        "{record}"
    );
    assert_eq!(env.keyguard_patches().await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_compliant_key_that_expires_soon_is_a_warning() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let in_ten_days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 10 * 86_400;
    seed_key(
        &env,
        json!({"vault": APPROVED_VAULT, "name": "storage-cmk", "expires": in_ten_days}),
    )
    .await?;
    let id = account_id("rg-cmk", "stkeyexpiring");
    env.seed(json!([storage_account(
        "rg-cmk",
        "stkeyexpiring",
        Some(APPROVED_VAULT),
        json!({})
    )]))
    .await?;
    env.act_as_user(&id, tag_patch("look")).await?;
    env.wait_delivered(1).await?;
    let record = env.audit_record(&id, "result", "key-expiring").await?;
    assert_eq!(record["verdict"], "compliant");
    assert_eq!(record["alert"], true);
    assert!(
        record["detail"].as_str().unwrap_or_default().contains("expires on"),
        "{record}"
    );
    Ok(())
}

#[tokio::test]
async fn no_revert_to_an_expired_key() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = compliant_cmk_account(&env, "rg-cmk", "stkeyexpired").await?;
    let yesterday = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        - 86_400;
    seed_key(
        &env,
        json!({"vault": APPROVED_VAULT, "name": "storage-cmk", "expires": yesterday}),
    )
    .await?;
    env.act_as_user(&id, mmk_patch()).await?;
    env.wait_delivered(2).await?;
    let record = env.audit_record(&id, "result", "manual-action-needed").await?;
    assert!(
        record["detail"].as_str().unwrap_or_default().contains("expired"),
        "{record}"
    );
    assert_eq!(env.keyguard_patches().await?, 0);
    Ok(())
}

/// The harness's secret scan (issue 13) fails a run whose keyguard printed a secret: a value the
/// run declared secret that keyguard logs (an event id), in a handler's output, and a token the
/// stand-in issued to keyguard, echoed by a CLI run. The failure names what leaked, never the
/// value.
#[tokio::test]
async fn the_secret_scan_fails_a_run_whose_keyguard_printed_a_secret() -> anyhow::Result<()> {
    const PLANTED: &str = "planted-secret-event-id-0123456789";
    let env = Env::start(Options {
        no_delivery: true,
        extra_secrets: vec![("the planted secret".into(), PLANTED.into())],
        ..Options::default()
    })
    .await?;
    let id = account_id("rg-cmk", "stplanted");
    let account = storage_account("rg-cmk", "stplanted", Some(APPROVED_VAULT), json!({}));
    env.seed(json!([account.clone()])).await?;
    // The event says MMK, so keyguard reads the live account through ARM: it needs a token.
    let mut event = resource_notification(&id, "stplanted", json!({"keySource": "Microsoft.Storage"}));
    event["id"] = json!(PLANTED);
    let (status, body) = env.deliver(&event).await?;
    assert_eq!(status, 200, "{body}");
    let leaks = env.leaked_secrets().await?;
    assert!(
        leaks
            .iter()
            .any(|l| l.label == "the planted secret" && l.source == "keyguard handler output"),
        "{leaks:?}"
    );

    let issued = env.sim_get("/_sim/msi").await?["issued_tokens"].clone();
    let token = issued[0].as_str().expect("keyguard was issued a token").to_string();
    let output = env.keyguard_cli(&["check", &token])?;
    assert!(!output.status.success());
    let leaks = env.leaked_secrets().await?;
    assert!(
        leaks
            .iter()
            .any(|l| l.label.starts_with("a token the stand-in issued") && l.source == "keyguard CLI output"),
        "{leaks:?}"
    );

    // What every test gets: the run fails when its Env is dropped.
    let dropped = std::thread::spawn(move || drop(env)).join();
    let message = match dropped {
        Ok(()) => panic!("a run that printed secrets passed"),
        Err(payload) => payload.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(message.contains("keyguard printed secrets"), "{message}");
    assert!(message.contains("the planted secret") && message.contains("a token the stand-in issued"));
    let payload = token.split('.').nth(1).unwrap_or_default();
    assert!(
        !message.contains(PLANTED) && !message.contains(payload),
        "the failure shows the secrets: {message}"
    );
    Ok(())
}
