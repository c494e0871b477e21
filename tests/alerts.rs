//! Alerts from the event path to people: routed by the profile config, written to the durable
//! outbox, delivered to a Teams Workflows stand-in, retried on 5xx, parked on 400, and not lost
//! when keyguard is killed between deciding and sending.
//!
//! Multi-threaded runtime: the receiver keeps answering while a test blocks on a `keyguard` CLI run.

use std::time::Duration;

use keyguard_e2e::*;
use serde_json::{Value, json};

async fn env_with_teams(receiver_url: &str) -> anyhow::Result<Env> {
    Env::start(Options {
        extra_config: TEAMS_ROUTES.to_string(),
        extra_env: vec![("KEYGUARD_TEAMS_SECOPS_URL".into(), receiver_url.to_string())],
        ..Options::default()
    })
    .await
}

async fn seed_compliant(env: &Env, name: &str) -> anyhow::Result<String> {
    let id = account_id("rg-cmk", name);
    env.seed(json!([storage_account(
        "rg-cmk",
        name,
        Some(APPROVED_VAULT),
        json!({})
    )]))
    .await?;
    env.act_as_user(&id, json!({"tags": {"touched": "baseline"}})).await?;
    env.audit_record(&id, "result", "compliant").await?;
    Ok(id)
}

fn card_of(body: &Value) -> &Value {
    &body["attachments"][0]["content"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverted_drift_reaches_teams_as_an_adaptive_card() -> anyhow::Result<()> {
    let (receiver, url) = AlertReceiver::start(202).await;
    let env = env_with_teams(&url).await?;
    let id = seed_compliant(&env, "stalertteams").await?;

    env.act_as_user(
        &id,
        json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
    )
    .await?;
    env.wait_for(Duration::from_secs(15), "the Teams card", || async {
        Ok(!receiver.bodies().is_empty())
    })
    .await?;

    let body = receiver.bodies().remove(0);
    assert_eq!(body["type"], "message");
    assert_eq!(
        body["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = card_of(&body);
    assert_eq!(card["type"], "AdaptiveCard");
    let text = card.to_string();
    assert!(text.contains("stalertteams"), "resource name on the card: {text}");
    assert!(text.to_lowercase().contains("revert"), "what keyguard did: {text}");
    assert!(text.contains("mallory@contoso.example"), "who changed it: {text}");
    assert_eq!(
        receiver.bodies().len(),
        1,
        "one alert for one drift (the echo of the revert alerts nobody)"
    );
    // The webhook URL carries a signature: it must never reach keyguard's logs.
    assert!(!env.log_tail(10_000).contains("SECRET-SIGNATURE"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_decided_before_a_crash_is_delivered_after_the_restart() -> anyhow::Result<()> {
    // Teams is down (503, Retry-After: 1) when the drift happens.
    let (receiver, url) = AlertReceiver::start(503).await;
    let mut env = env_with_teams(&url).await?;
    let id = seed_compliant(&env, "stalertcrash").await?;
    env.act_as_user(
        &id,
        json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
    )
    .await?;
    env.wait_for(Duration::from_secs(15), "a first, failed attempt", || async {
        Ok(!receiver.bodies().is_empty())
    })
    .await?;

    // keyguard dies (SIGKILL) with the alert still unsent; Teams comes back; keyguard restarts.
    env.kill_handler();
    receiver.set_status(202);
    let attempts_before = receiver.bodies().len();
    env.start_handler().await?;
    env.wait_for(Duration::from_secs(20), "delivery after the restart", || async {
        Ok(receiver.bodies().len() > attempts_before)
    })
    .await?;
    let delivered = receiver.bodies().pop().expect("a delivery");
    assert!(card_of(&delivered).to_string().contains("stalertcrash"));
    // Teams has it; keyguard records "sent" just after. Stop it once that is stored (logged after
    // the write), not on Teams' word, or the kill can land between the two.
    env.wait_for(Duration::from_secs(10), "the delivery recorded", || async {
        Ok(env.log_tail(10_000).contains("alert delivered"))
    })
    .await?;
    env.kill_handler();
    let out = env.keyguard_cli(&["alerts"])?;
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("sent"), "{listing}");
    assert!(!listing.contains("SECRET-SIGNATURE"), "{listing}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_alert_is_parked_listed_and_resendable() -> anyhow::Result<()> {
    let (receiver, url) = AlertReceiver::start(400).await;
    let mut env = env_with_teams(&url).await?;
    let id = seed_compliant(&env, "stalertparked").await?;
    env.act_as_user(
        &id,
        json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
    )
    .await?;
    env.wait_for(Duration::from_secs(15), "the refused attempt", || async {
        Ok(!receiver.bodies().is_empty())
    })
    .await?;
    env.wait_for(Duration::from_secs(5), "the parked record", || async {
        Ok(env.log_tail(10_000).contains("alert not delivered"))
    })
    .await?;
    env.kill_handler();

    let out = env.keyguard_cli(&["alerts", "--failed"])?;
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "parked alerts make --failed exit 1: {listing}"
    );
    assert!(
        listing.contains("parked") && listing.contains("stalertparked"),
        "{listing}"
    );
    assert!(!listing.contains("SECRET-SIGNATURE"), "{listing}");
    assert_eq!(receiver.bodies().len(), 1, "a 400 is not retried");

    receiver.set_status(202);
    let parked_id = listing.split_whitespace().next().expect("an id").to_string();
    let out = env.keyguard_cli(&["alerts", "--resend", &parked_id])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(receiver.bodies().len(), 2, "re-sent once");
    let out = env.keyguard_cli(&["alerts", "--failed"])?;
    assert_eq!(out.status.code(), Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_test_sends_a_sample_through_a_route() -> anyhow::Result<()> {
    let (receiver, url) = AlertReceiver::start(202).await;
    let mut env = env_with_teams(&url).await?;
    env.kill_handler();
    let out = env.keyguard_cli(&["alert", "test", "--route", "secops"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(receiver.bodies().len(), 1);
    let out = env.keyguard_cli(&["alert", "test", "--route", "nosuch"])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("secops"),
        "names the configured routes"
    );
    Ok(())
}
