//! Who owns a revert's state: dry runs against real reverts, own writes, a lease lost before a write.

use super::*;
use crate::store::tapped::{Tap, Tapped};

/// A real revert that wrote and then died before recording its result: the resource is already
/// back on Microsoft-managed keys, its intent is still in the store.
fn crashed_revert_intent(id: &ResourceId) -> RevertIntent {
    RevertIntent {
        id: uuid::Uuid::now_v7().to_string(),
        resource_id: id.as_str().to_string(),
        correlation_id: "the-real-revert".into(),
        event_id: Some("event-of-the-drift".into()),
        holder: "web-2/0c5d2e1f-9a8b-4c7d-8e6f-5a4b3c2d1e0f/4026531836/77/abc/lease".into(),
        started_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
        target: "Microsoft-managed keys".into(),
        writes: vec![format!("PATCH {} (2025-01-01)", id.name())],
        caller: Some("mallory@contoso.example".into()),
        operation: None,
    }
}

#[tokio::test]
async fn a_dry_run_during_a_pending_revert_leaves_its_intent_record_and_alert_to_it() {
    let h = Harness::start(MMK_ENFORCE).await;
    let id = account("stmmklogs");
    let intent = crashed_revert_intent(&id);
    h.store.set_revert_intent(&id, Some(&intent)).await.unwrap();

    // A person's dry-run check, and a report-only sweep with the listed body, while it is pending.
    let checked = h.look(&id, Trigger::Manual, "dry-run-check", true, None).await.unwrap();
    assert_eq!(
        (checked.outcome.verdict.as_str(), checked.outcome.result.as_str()),
        ("compliant", "compliant")
    );
    assert_ne!(
        checked.record_id.as_deref(),
        Some(intent.id.as_str()),
        "its own record id"
    );
    let listed = h.sim.state().resource(id.as_str()).unwrap();
    let sweep = Trigger::Sweep {
        scope: format!("/subscriptions/{SUBSCRIPTION}"),
    };
    let swept = h.look(&id, sweep, "report-sweep", true, Some(listed)).await.unwrap();
    assert!(swept.outcome.dry_run);
    assert_eq!(
        h.store.revert_intent(&id).await.unwrap(),
        Some(intent.clone()),
        "the real revert's intent is left to it"
    );
    let records = h.audit(&id).await;
    assert_eq!(
        records.len(),
        1,
        "the dry-run check is recorded (a compliant sweep is not)"
    );
    assert!(records[0].outcome.dry_run, "recorded as a dry run");
    assert_ne!(records[0].id, intent.id);
    let findings = h.store.findings().await.unwrap();
    assert!(
        findings.iter().all(|f| f.dry_run),
        "dry-run findings say so: {findings:?}"
    );
    assert!(
        h.outbox().await.is_empty(),
        "a dry run raised no alert in the revert's name"
    );

    // The next real reconcile settles the revert: once, under the intent's id, with its alert.
    let settled = h.timer_look(&id).await;
    assert_eq!(
        (settled.outcome.action.as_str(), settled.outcome.result.as_str()),
        ("revert", "reverted")
    );
    let records = h.audit(&id).await;
    let record = records
        .iter()
        .find(|r| r.id == intent.id)
        .expect("the revert's own record");
    assert!(!record.outcome.dry_run);
    assert_eq!(record.outcome.result.as_str(), "reverted");
    let outbox = h.outbox().await;
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].id, format!("{}.0", intent.id));
    assert_eq!(outbox[0].alert.outcome, keyguard_notify::AlertOutcome::Reverted);
    assert_eq!(h.store.revert_intent(&id).await.unwrap(), None, "settled, then cleared");
    let findings = h.store.findings().await.unwrap();
    assert!(findings.iter().all(|f| !f.dry_run), "{findings:?}");
}

#[tokio::test]
async fn a_dry_run_instance_takes_no_lease_and_keeps_its_own_dedupe_entries() {
    let h = Harness::start(MMK_ENFORCE).await;
    let id = account("stmmklogs");
    let event = h.act(&id, &user("mallory", "mallory-oid"), &cmk_patch());
    // Another instance holds the lease for a long write: a dry run is not held up by it.
    let now = OffsetDateTime::now_utc();
    let held = h
        .store
        .try_lease(&id, "someone-else", time::Duration::minutes(5), now)
        .await
        .unwrap()
        .expect("free");
    let dry = h.ctx.with_config((*h.ctx.config).clone());
    let dry = Context {
        settings: ReconcileSettings {
            dry_run: true,
            ..dry.settings.clone()
        },
        ..dry
    };
    let seen = handle_event(&dry, &event).await.unwrap();
    assert_eq!(
        (seen.outcome.action, seen.outcome.result),
        (ActionKind::DryRunRevert, ResultKind::DryRunWouldRevert)
    );
    assert!(h.store.event_seen(&format!("dry-run/{}", event.id), now).await.unwrap());
    assert!(
        !h.store.event_seen(&event.id, now).await.unwrap(),
        "the real instance will not skip the event as handled"
    );
    h.store.release(&held).await.unwrap();
    let real = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(real.outcome.result.as_str(), "reverted");
    assert_eq!(h.key_source(&id), "Microsoft.Storage");
}

#[tokio::test]
async fn under_cli_credentials_another_az_users_change_is_reverted_and_only_the_users_own_is_skipped() {
    let alice = user("alice", "a11ce000-0000-0000-0000-000000000001");
    let bob = user("bob", "b0b00000-0000-0000-0000-000000000002");
    let h = Harness::start_with(MMK_ENFORCE, Some(alice.clone()), |backend| backend).await;
    let id = account("stmmklogs");

    // Bob signs in with the same Azure CLI (the same app id in his token) and switches the key.
    let bobs = h.act(&id, &bob, &cmk_patch());
    let outcome = handle_event(&h.ctx, &bobs).await.unwrap();
    assert_eq!(
        (outcome.outcome.verdict.as_str(), outcome.outcome.result.as_str()),
        ("drift", "reverted"),
        "{outcome:?}"
    );
    assert!(
        outcome.outcome.caller.as_deref().is_some_and(|c| c.contains("bob")),
        "{outcome:?}"
    );
    assert_eq!(h.key_source(&id), "Microsoft.Storage");
    assert_eq!(h.keyguard_writes(), 1);

    // keyguard acts as Alice: her own change is keyguard's own write, and left alone.
    let alices = h.act(&id, &alice, &cmk_patch());
    let outcome = handle_event(&h.ctx, &alices).await.unwrap();
    assert_eq!(
        (outcome.outcome.verdict.as_str(), outcome.outcome.result.as_str()),
        ("skipped", "own-write")
    );
    assert_eq!(h.keyguard_writes(), 1);
}

/// Takes the lease away (as an instance would once it ran out) the moment the revert intent is
/// written, i.e. after the plan and before the first write.
struct StealLeaseAtIntent;

#[async_trait]
impl Tap for StealLeaseAtIntent {
    async fn before_replace(
        &self,
        inner: &dyn TableBackend,
        table: Table,
        partition: &str,
        row: &str,
        data: &Value,
    ) -> Result<(), StoreError> {
        if table == Table::Intents {
            let thief = json!({
                "resourceId": data["resourceId"],
                "holder": "another-instance",
                "expiresAt": "2099-01-01T00:00:00Z",
            });
            inner.replace(Table::Leases, partition, row, &thief, None).await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_lease_lost_between_plan_and_write_stops_the_revert_before_any_write() {
    let h = Harness::start_with(MMK_ENFORCE, None, |inner| {
        Arc::new(Tapped {
            inner,
            tap: StealLeaseAtIntent,
        })
    })
    .await;
    let id = account("stmmklogs");
    let event = h.act(&id, &user("mallory", "mallory-oid"), &cmk_patch());

    let error = handle_event(&h.ctx, &event).await.unwrap_err();
    assert!(matches!(error, ReconcileError::LeaseLost(_)), "{error}");
    assert!(
        error.retryable(),
        "Event Grid redelivers; the next attempt decides afresh"
    );
    assert_eq!(h.keyguard_writes(), 0, "no PATCH reached ARM");
    assert_eq!(h.key_source(&id), "Microsoft.Keyvault");
    let lease = h
        .store
        .try_lease(
            &id,
            "a-third-instance",
            time::Duration::seconds(30),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert!(lease.is_none(), "the instance that took the lease still has it");
    assert!(
        !h.store.event_seen(&event.id, OffsetDateTime::now_utc()).await.unwrap(),
        "not handled"
    );
}
