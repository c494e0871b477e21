//! The key-swap guard's estate check: a compliant resource pointed at a key in a vault keyguard
//! cannot find among the subscriptions it watches, or in another tenant, is high-severity drift;
//! in enforce mode it goes back to the known-good key. Vaults come from azure-sim's Resource
//! Graph: the demo seed lists `kv-approved` in the demo subscription.

use super::*;
use crate::store::BaselineSource;
use keyguard_core::arm_scope::ArmScope;
use keyguard_notify::{AlertOutcome, Severity};

const OTHER_SUBSCRIPTION: &str = "22222222-2222-2222-2222-222222222222";
const OTHER_TENANT: &str = "33333333-3333-3333-3333-333333333333";

fn key_patch(vault: &str, name: &str) -> Value {
    json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {
        "keyvaulturi": vault, "keyname": name, "keyversion": ""}}}})
}

fn live_vault(h: &Harness, id: &ResourceId) -> String {
    let doc = h.sim.state().resource(id.as_str()).unwrap();
    doc["properties"]["encryption"]["keyvaultproperties"]["keyvaulturi"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn graph_queries(h: &Harness) -> usize {
    h.sim
        .state()
        .requests()
        .iter()
        .filter(|r| r.path.to_ascii_lowercase().contains("microsoft.resourcegraph"))
        .count()
}

#[tokio::test]
async fn a_key_in_a_vault_nobody_can_see_is_high_severity_drift_reverted_to_the_known_good_key() {
    let h = Harness::start(CMK_ENFORCE).await;
    let id = account("stcmkpayments");
    let first = h.timer_look(&id).await;
    assert_eq!(
        first.outcome.result,
        ResultKind::Compliant,
        "kv-approved is in the estate: {first:?}"
    );

    let event = h.act(
        &id,
        &user("mallory", "mallory-oid"),
        &key_patch("https://kv-hostage.vault.azure.net", "ransom"),
    );
    let swapped = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(
        (swapped.outcome.verdict, swapped.outcome.result),
        (VerdictKind::Drift, ResultKind::Reverted),
        "{swapped:?}"
    );
    assert!(swapped.outcome.escalated);
    let finding = swapped.finding.clone().expect("a finding");
    assert_eq!(
        (finding.vault.as_deref(), finding.outside_estate),
        (Some("kv-hostage.vault.azure.net"), true),
        "reports list the vault and flag it"
    );
    assert!(
        swapped
            .outcome
            .drift
            .as_deref()
            .is_some_and(|d| d.contains("VaultOutsideEstate")),
        "{swapped:?}"
    );
    // Verified by a fresh read: back on the known-good key.
    assert_eq!(live_vault(&h, &id), azure_sim::DEMO_KEYVAULT);
    assert_eq!(h.keyguard_writes(), 1);
    let outbox = h.outbox().await;
    let reverted: Vec<_> = outbox
        .iter()
        .filter(|e| e.alert.outcome == AlertOutcome::Reverted)
        .collect();
    assert_eq!(reverted.len(), 1, "{outbox:?}");
    assert_eq!(reverted[0].alert.severity, Severity::High, "high even though reverted");
    let detail = reverted[0].alert.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("kv-hostage.vault.azure.net, outside the estate"),
        "the alert says why it is high: {detail}"
    );

    // The attacker's key never became the baseline: a later MMK switch goes back to kv-approved.
    let baseline = h.store.baseline(&id).await.unwrap().unwrap();
    assert!(baseline.key.to_string().contains("kv-approved"), "{baseline:?}");
}

#[tokio::test]
async fn a_vault_in_another_tenant_is_high_severity_even_though_resource_graph_lists_it() {
    let h = Harness::start("[[profile]]\nname = \"cmk-alert\"\nrequire = \"cmk\"\nmode = \"alert\"\n").await;
    let mut listing = h.sim.state().listing_config();
    listing.tenants.insert(OTHER_SUBSCRIPTION.into(), OTHER_TENANT.into());
    h.sim.state().set_listing_config(listing);
    h.seed_vault(OTHER_SUBSCRIPTION, "kv-partner");
    let id = account("stcmkledger");
    h.timer_look(&id).await;

    let event = h.act(
        &id,
        &user("mallory", "mallory-oid"),
        &key_patch("https://kv-partner.vault.azure.net", "k"),
    );
    let swapped = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(
        (swapped.outcome.verdict, swapped.outcome.result),
        (VerdictKind::Drift, ResultKind::AlertOnly),
        "{swapped:?}"
    );
    let drift = swapped.outcome.drift.clone().unwrap_or_default();
    assert!(drift.contains("OtherTenant") && drift.contains(OTHER_TENANT), "{drift}");
    let outbox = h.outbox().await;
    assert!(
        outbox
            .iter()
            .any(|e| e.alert.outcome == AlertOutcome::AlertOnly && e.alert.severity == Severity::High),
        "{outbox:?}"
    );
    assert_eq!(h.keyguard_writes(), 0, "alert mode writes nothing");
}

#[tokio::test]
async fn a_vault_in_the_estate_is_a_key_change_and_a_trusted_vault_is_not_judged() {
    let h = Harness::start(&format!(
        "[settings]\ntrusted_vaults = [\"https://kv-hsm-partner.vault.azure.net\"]\n{CMK_ENFORCE}"
    ))
    .await;
    h.seed_vault(SUBSCRIPTION, "kv-second");
    let (a, b) = (account("stcmkpayments"), account("stcmkledger"));
    h.timer_look(&a).await;
    h.timer_look(&b).await;

    let moved = handle_event(
        &h.ctx,
        &h.act(
            &a,
            &user("alice", "alice-oid"),
            &key_patch("https://kv-second.vault.azure.net", "k2"),
        ),
    )
    .await
    .unwrap();
    assert_eq!(moved.outcome.result, ResultKind::KeyChanged, "{moved:?}");
    assert!(!moved.outcome.escalated);

    // Not in Resource Graph at all, but listed in trusted_vaults: a key change, not drift.
    let trusted = handle_event(
        &h.ctx,
        &h.act(
            &b,
            &user("alice", "alice-oid"),
            &key_patch("https://kv-hsm-partner.vault.azure.net", "k3"),
        ),
    )
    .await
    .unwrap();
    assert_eq!(trusted.outcome.result, ResultKind::KeyChanged, "{trusted:?}");
    assert_eq!(h.keyguard_writes(), 0);
    let outbox = h.outbox().await;
    let severities: Vec<_> = outbox.iter().map(|e| (e.alert.outcome, e.alert.severity)).collect();
    assert_eq!(
        severities,
        vec![
            (AlertOutcome::KeyChanged, Severity::Warning),
            (AlertOutcome::KeyChanged, Severity::Warning)
        ]
    );
}

#[tokio::test]
async fn a_vault_outside_the_watched_scopes_is_outside_the_estate_and_lookups_are_cached() {
    let mut h = Harness::start("[[profile]]\nname = \"cmk-audit\"\nrequire = \"cmk\"\nmode = \"audit\"\n").await;
    let watched = vec![ArmScope::Subscription {
        subscription: SUBSCRIPTION.into(),
    }];
    h.ctx.estate = std::sync::Arc::new(crate::estate::VaultEstate::new(watched));
    h.seed_vault(OTHER_SUBSCRIPTION, "kv-unwatched");
    let id = account("stcmkpayments");
    h.act(
        &id,
        &user("bob", "bob-oid"),
        &key_patch("https://kv-unwatched.vault.azure.net", "k"),
    );
    let look = h.timer_look(&id).await;
    let drift = look.outcome.drift.clone().unwrap_or_default();
    assert!(
        drift.contains("OutsideWatchedScope") && drift.contains(OTHER_SUBSCRIPTION),
        "{look:?}"
    );
    let queries = graph_queries(&h);
    assert_eq!(queries, 1, "one Resource Graph query finds the vault");
    h.timer_look(&id).await;
    assert_eq!(graph_queries(&h), queries, "the answer is reused");
}

#[tokio::test]
async fn a_known_good_key_in_a_vault_outside_the_estate_is_never_a_revert_target() {
    let h = Harness::start(CMK_ENFORCE).await;
    let id = account("stmmklogs");
    // A baseline recorded before the guard existed, naming a vault nobody can see.
    let legacy =
        keyguard_core::catalog::KeyRef::new("https://kv-hostage.vault.azure.net", "ransom", None, None).unwrap();
    h.store
        .record_baseline(&id, &legacy, BaselineSource::Observed, None, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let look = h.timer_look(&id).await;
    assert_eq!(
        (look.outcome.verdict, look.outcome.result),
        (VerdictKind::Drift, ResultKind::ManualActionNeeded),
        "{look:?}"
    );
    assert_eq!(h.keyguard_writes(), 0, "the attacker's key is not written back");
}

#[tokio::test]
async fn a_disabled_key_is_one_critical_key_unusable_alert_listing_every_resource_on_it() {
    let h = Harness::start(CMK_ENFORCE).await;
    // A third account moves onto the demo key: three resources depend on it.
    let third = account("stmmklogs");
    h.act(
        &third,
        &user("alice", "alice-oid"),
        &key_patch(azure_sim::DEMO_KEYVAULT, "cmk-storage"),
    );
    let spec: azure_sim::KeySpec = serde_json::from_value(json!({
        "vault": azure_sim::DEMO_KEYVAULT, "name": "cmk-storage", "enabled": false
    }))
    .unwrap();
    h.sim.state().seed_keys(vec![spec]);

    let request = crate::sweep::ScanRequest {
        scope: ArmScope::Subscription {
            subscription: SUBSCRIPTION.into(),
        },
        types: vec!["Microsoft.Storage/storageAccounts".into()],
        dry_run: false,
        listing: crate::sweep::Listing::ResourceGraph,
        resume: false,
        budget: std::time::Duration::from_secs(60),
    };
    let report = crate::sweep::scan(&h.ctx, &request, &|_| {}).await.unwrap();
    assert_eq!(report.keys.unusable_keys.len(), 1, "{:?}", report.keys);
    let unusable = &report.keys.unusable_keys[0];
    assert_eq!(unusable.resources.len(), 3, "{unusable:?}");
    assert!(unusable.problems.iter().any(|p| p.contains("disabled")), "{unusable:?}");
    let vault = report
        .keys
        .vaults
        .iter()
        .find(|v| v.vault == "kv-approved.vault.azure.net")
        .expect("the vault in use is listed");
    assert_eq!((vault.resources, vault.keys, vault.outside_estate), (3, 1, false));

    let outbox = h.outbox().await;
    let alerts: Vec<_> = outbox
        .iter()
        .filter(|e| e.alert.outcome == AlertOutcome::KeyUnusable)
        .collect();
    assert_eq!(alerts.len(), 1, "one alert for the key: {outbox:?}");
    assert_eq!(alerts[0].alert.severity, Severity::Critical);
    let detail = alerts[0].alert.detail.clone().unwrap_or_default();
    for name in ["stcmkpayments", "stcmkledger", "stmmklogs"] {
        assert!(detail.contains(name), "{name} listed: {detail}");
    }

    // A dry-run sweep reports it and alerts nobody.
    let dry = crate::sweep::ScanRequest {
        dry_run: true,
        ..request
    };
    let report = crate::sweep::scan(&h.ctx, &dry, &|_| {}).await.unwrap();
    assert_eq!(report.keys.unusable_keys.len(), 1);
    let after: usize = h
        .outbox()
        .await
        .iter()
        .filter(|e| e.alert.outcome == AlertOutcome::KeyUnusable)
        .count();
    assert_eq!(after, 1, "read-only");
}
