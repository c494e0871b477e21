//! The key-swap guard: a compliant resource pointed at another key is news for a person, a
//! rotation to a new version of the same key is not.

use super::*;

fn key_patch(vault: &str, name: &str, version: &str) -> Value {
    json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {
        "keyvaulturi": vault, "keyname": name, "keyversion": version}}}})
}

fn key_changed_alerts(outbox: &[OutboxEntry]) -> Vec<&OutboxEntry> {
    outbox
        .iter()
        .filter(|e| e.alert.outcome == keyguard_notify::AlertOutcome::KeyChanged)
        .collect()
}

#[tokio::test]
async fn another_key_on_a_compliant_resource_is_one_key_changed_alert_and_no_write() {
    let h = Harness::start(CMK_ENFORCE).await;
    // Another vault of the estate: a move to it is news, not drift.
    h.seed_vault(SUBSCRIPTION, "kv-elsewhere");
    let id = account("stcmkpayments");
    let first = h.timer_look(&id).await;
    assert_eq!(first.outcome.result, ResultKind::Compliant, "{first:?}");

    let event = h.act(
        &id,
        &user("mallory", "mallory-oid"),
        &key_patch("https://kv-elsewhere.vault.azure.net", "hostage", ""),
    );
    let changed = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(
        (changed.outcome.verdict, changed.outcome.result),
        (VerdictKind::Compliant, ResultKind::KeyChanged),
        "{changed:?}"
    );
    let detail = changed.outcome.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("cmk-storage") && detail.contains("kv-elsewhere.vault.azure.net") && detail.contains("mallory"),
        "names the old key, the new key and who: {detail}"
    );
    assert_eq!(h.keyguard_writes(), 0, "compliant: nothing is written");
    let outbox = h.outbox().await;
    let alerts = key_changed_alerts(&outbox);
    assert_eq!(alerts.len(), 1, "{outbox:?}");
    let alert = &alerts[0].alert;
    assert_eq!(alert.severity, keyguard_notify::Severity::Warning);
    assert!(
        alert.expected_key.as_deref().is_some_and(|k| k.contains("cmk-storage")),
        "{alert:?}"
    );
    assert!(
        alert.actual_key.as_deref().is_some_and(|k| k.contains("hostage")),
        "{alert:?}"
    );
    let records = h.audit(&id).await;
    let record = records
        .iter()
        .find(|r| r.outcome.result == ResultKind::KeyChanged)
        .expect("in the audit trail");
    assert!(record.outcome.previous_key.is_some());

    // Looking again finds the same (new) key: no second alert.
    let again = h.timer_look(&id).await;
    assert_eq!(again.outcome.result, ResultKind::Compliant);
    assert_eq!(key_changed_alerts(&h.outbox().await).len(), 1);
}

#[tokio::test]
async fn a_rotation_to_a_new_version_of_the_same_key_is_not_a_key_change() {
    let h = Harness::start(CMK_ENFORCE).await;
    let id = account("stcmkpayments");
    h.timer_look(&id).await;
    let event = h.act(
        &id,
        &user("alice", "alice-oid"),
        &key_patch(
            azure_sim::DEMO_KEYVAULT,
            "cmk-storage",
            "0123456789abcdef0123456789abcdef",
        ),
    );
    let rotated = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(rotated.outcome.result, ResultKind::Compliant, "{rotated:?}");
    assert!(key_changed_alerts(&h.outbox().await).is_empty());
}
