//! Tag exemptions and retags: what a write to a resource's tags may change, and who hears of it.

use super::*;

fn tagged_cmk_patch(tags: Value) -> Value {
    let mut patch = cmk_patch();
    patch["tags"] = tags;
    patch
}

fn safeguard_alerts(outbox: &[OutboxEntry]) -> Vec<&OutboxEntry> {
    outbox
        .iter()
        .filter(|e| e.alert.outcome == keyguard_notify::AlertOutcome::SafeguardChanged)
        .collect()
}

#[tokio::test]
async fn adding_a_valid_exemption_tag_alerts_naming_who_and_what_through_the_outbox() {
    let h = Harness::start(MMK_ENFORCE).await;
    let id = account("stmmklogs");
    let first = h.timer_look(&id).await;
    assert_eq!(first.outcome.result.as_str(), "compliant");
    assert!(h.outbox().await.is_empty());

    // One write switches the key and exempts the account, within max_exemption_days.
    let until = azure_sim::date_in_days(30);
    let tags = json!({"env": "demo", "keyguard-exempt-until": until, "keyguard-exempt-reason": "CHG-7"});
    let event = h.act(&id, &user("mallory", "mallory-oid"), &tagged_cmk_patch(tags));
    let outcome = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(
        (outcome.outcome.verdict.as_str(), outcome.outcome.result.as_str()),
        ("exempt", "exempt")
    );
    assert_eq!(h.keyguard_writes(), 0, "the exemption is honoured");

    let outbox = h.outbox().await;
    let alerts = safeguard_alerts(&outbox);
    assert_eq!(alerts.len(), 1, "{outbox:?}");
    let alert = &alerts[0].alert;
    let detail = alert.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("mallory@contoso.example"), "who: {detail}");
    assert!(
        detail.contains(&format!("exemption tag added: keyguard-exempt-until=\"{until}\"")),
        "what: {detail}"
    );
    assert!(detail.contains("keyguard leaves the resource alone until"), "{detail}");
    assert_eq!(alert.severity, keyguard_notify::Severity::High);
    assert_eq!(alerts[0].route, "secops");
    // The audit record carries the change too.
    let records = h.audit(&id).await;
    let record = records.iter().find(|r| r.outcome.result.as_str() == "exempt").unwrap();
    assert!(matches!(
        record.outcome.safeguard_changes.as_slice(),
        [SafeguardChange::ExemptionTag {
            kind: keyguard_core::safeguards::ExemptionTagChange::Added,
            ..
        }]
    ));
    // Seen once: the next look at the unchanged tags is quiet.
    let again = h.timer_look(&id).await;
    assert!(again.outcome.safeguard_changes.is_empty());
    assert_eq!(safeguard_alerts(&h.outbox().await).len(), 1);
}

#[tokio::test]
async fn a_far_future_exemption_tag_does_not_exempt_and_says_so_and_the_drift_is_reverted() {
    let h = Harness::start(MMK_ENFORCE).await;
    let id = account("stmmklogs");
    h.timer_look(&id).await;
    let tags = json!({"env": "demo", "keyguard-exempt-until": "9999-12-31"});
    let event = h.act(&id, &user("mallory", "mallory-oid"), &tagged_cmk_patch(tags));
    let outcome = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(
        (outcome.outcome.verdict.as_str(), outcome.outcome.result.as_str()),
        ("drift", "reverted")
    );
    assert_eq!(h.key_source(&id), "Microsoft.Storage");
    let finding = h.store.findings().await.unwrap().remove(0);
    let detail = finding.detail.unwrap_or_default();
    assert!(
        detail.contains("is more than max_exemption_days (90) ahead"),
        "{detail}"
    );
    // The attempt is still reported, with what it did (nothing).
    let outbox = h.outbox().await;
    let alerts = safeguard_alerts(&outbox);
    assert_eq!(alerts.len(), 1, "{outbox:?}");
    let detail = alerts[0].alert.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("it does not exempt the resource"), "{detail}");
}

#[tokio::test]
async fn with_tag_exemptions_off_an_exemption_tag_changes_nothing() {
    let config = format!("[settings]\ntag_exemptions = false\n{MMK_ENFORCE}");
    let h = Harness::start(&config).await;
    let id = account("stmmklogs");
    h.timer_look(&id).await;
    let tags = json!({"env": "demo", "keyguard-exempt-until": azure_sim::date_in_days(30)});
    let event = h.act(&id, &user("mallory", "mallory-oid"), &tagged_cmk_patch(tags));
    let outcome = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(
        (outcome.outcome.verdict.as_str(), outcome.outcome.result.as_str()),
        ("drift", "reverted")
    );
    assert!(
        outcome
            .outcome
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("tag exemptions are turned off")),
        "{outcome:?}"
    );
    assert!(outcome.outcome.safeguard_changes.is_empty());
    assert!(safeguard_alerts(&h.outbox().await).is_empty());
}

/// The profile follows the `env` tag: `demo` is strict, `sandbox` accepts any key and only records.
const BY_TAG: &str = r#"
[[profile]]
name = "strict"
require = "mmk"
mode = "enforce"
scope = { tags = { env = "demo" } }

[[profile]]
name = "lenient"
require = "encrypted"
mode = "audit"
scope = { tags = { env = "sandbox" } }
"#;

#[tokio::test]
async fn a_retag_into_a_weaker_profile_alerts_naming_who_and_both_profiles() {
    let h = Harness::start(BY_TAG).await;
    let id = account("stmmklogs");
    let first = h.timer_look(&id).await;
    assert_eq!(first.outcome.profile.as_deref(), Some("strict"));

    // The same write that switches the key moves the account where that is not drift.
    let event = h.act(
        &id,
        &user("mallory", "mallory-oid"),
        &tagged_cmk_patch(json!({"env": "sandbox"})),
    );
    let outcome = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(outcome.outcome.profile.as_deref(), Some("lenient"));
    assert_eq!(outcome.outcome.verdict.as_str(), "compliant", "{outcome:?}");
    let outbox = h.outbox().await;
    let alerts = safeguard_alerts(&outbox);
    assert_eq!(alerts.len(), 1, "{outbox:?}");
    let detail = alerts[0].alert.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("mallory@contoso.example"), "{detail}");
    assert!(
        detail.contains("retagged from profile strict (mmk, enforce) into lenient (encrypted, audit)"),
        "{detail}"
    );
    assert!(
        detail.contains("now accepts a customer-managed key from any vault"),
        "{detail}"
    );
    // A compliant look is usually not an audit record; this one is.
    let records = h.audit(&id).await;
    assert!(
        records.iter().any(|r| !r.outcome.safeguard_changes.is_empty()),
        "{records:?}"
    );
}

#[tokio::test]
async fn a_dry_run_reports_a_safeguard_change_and_leaves_recording_and_alerting_to_a_real_look() {
    let h = Harness::start(BY_TAG).await;
    let id = account("stmmklogs");
    h.timer_look(&id).await;
    h.act(
        &id,
        &user("mallory", "mallory-oid"),
        &json!({"tags": {"env": "sandbox"}}),
    );

    let dry = h.look(&id, Trigger::Manual, "dry-run-check", true, None).await.unwrap();
    assert_eq!(dry.outcome.safeguard_changes.len(), 1, "{dry:?}");
    assert!(h.outbox().await.is_empty(), "a dry run alerts nobody");
    // The timer's real look (no event, so no caller) still finds it, records it and alerts once.
    let real = h.timer_look(&id).await;
    assert_eq!(real.outcome.safeguard_changes.len(), 1);
    let outbox = h.outbox().await;
    let alerts = safeguard_alerts(&outbox);
    assert_eq!(alerts.len(), 1, "{outbox:?}");
    let detail = alerts[0].alert.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("a writer the event did not name"), "{detail}");
    let later = h.timer_look(&id).await;
    assert!(later.outcome.safeguard_changes.is_empty(), "recorded by the real look");
}
