//! Each step's edge cases in process: a long-running revert that outlives its invocation, a crash
//! between a revert's intent and its first write, and a carried body that is stale.

use super::*;
use crate::store::StoreError;
use crate::store::tapped::{Tap, Tapped};

/// Transparent data encryption must be on (any key): turning it off is drift, and its revert is a
/// long-running PUT of the child resource.
const ENCRYPTED_ENFORCE: &str = r#"
[[profile]]
name = "encrypted-enforce"
require = "encrypted"
mode = "enforce"
"#;

fn database_id() -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Sql/servers/sqlledger/databases/appdb"
    ))
    .unwrap()
}

/// A SQL server with one database whose TDE is off.
fn seed_database(h: &Harness) -> ResourceId {
    let db = database_id();
    let server = db.as_str().rsplit_once("/databases/").unwrap().0.to_string();
    let docs = vec![
        json!({"id": server, "name": "sqlledger", "type": "Microsoft.Sql/servers", "location": "westeurope",
            "properties": {"administratorLogin": "dbadmin", "version": "12.0", "state": "Ready"}}),
        json!({"id": db.as_str(), "name": "appdb", "type": "Microsoft.Sql/servers/databases",
            "location": "westeurope", "properties": {"status": "Online"}}),
        json!({"id": format!("{}/transparentDataEncryption/current", db.as_str()), "name": "current",
            "type": "Microsoft.Sql/servers/databases/transparentDataEncryption", "properties": {"state": "Disabled"}}),
    ];
    h.sim.state().upsert_resources(docs).unwrap();
    db
}

fn tde_state(h: &Harness, db: &ResourceId) -> String {
    let doc = h
        .sim
        .state()
        .resource(&format!("{}/transparentDataEncryption/current", db.as_str()))
        .unwrap();
    doc["properties"]["state"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_long_running_revert_is_recorded_pending_then_followed_and_never_written_twice() {
    let h = Harness::start(ENCRYPTED_ENFORCE).await;
    let db = seed_database(&h);
    // ARM asks to be polled again in a minute: longer than the whole budget, so the revert ends
    // this invocation accepted but unfinished.
    h.sim.state().set_lro_config(azure_sim::LroConfig {
        polls: 1,
        retry_after: 60,
        ..Default::default()
    });

    let first = h.timer_look(&db).await;
    assert_eq!(
        (first.outcome.action, first.outcome.result),
        (ActionKind::Revert, ResultKind::RevertPending),
        "{first:?}"
    );
    let intent = h
        .store
        .revert_intent(&db)
        .await
        .unwrap()
        .expect("kept for the next look");
    assert!(intent.operation.is_some(), "the operation to follow is recorded");
    assert_eq!(h.keyguard_writes(), 1);
    assert!(
        h.audit(&db).await.iter().all(|r| r.id != intent.id),
        "not recorded as done"
    );

    // The next looks follow the operation (polled once more in progress, then done) and record
    // the revert under the intent's id, without a second PUT.
    let second = h.timer_look(&db).await;
    assert_eq!(second.outcome.result, ResultKind::RevertPending, "{second:?}");
    let third = h.timer_look(&db).await;
    assert_eq!(
        (third.outcome.verdict, third.outcome.result),
        (VerdictKind::Drift, ResultKind::Reverted),
        "{third:?}"
    );
    assert_eq!(third.record_id.as_deref(), Some(intent.id.as_str()));
    assert_eq!(h.keyguard_writes(), 1, "followed, never written over");
    assert_eq!(tde_state(&h, &db), "Enabled");
    assert_eq!(h.store.revert_intent(&db).await.unwrap(), None);
    let results: Vec<ResultKind> = h.audit(&db).await.iter().map(|r| r.outcome.result).collect();
    assert_eq!(
        results.iter().filter(|r| **r == ResultKind::Reverted).count(),
        1,
        "the ending is in the audit trail, once: {results:?}"
    );
    let outbox = h.outbox().await;
    assert_eq!(outbox.len(), 1, "one alert for one revert: {outbox:?}");
    assert_eq!(outbox[0].id, format!("{}.0", intent.id));
}

#[tokio::test]
async fn an_intent_whose_write_never_left_is_decided_afresh_and_recorded_once_under_its_id() {
    let h = Harness::start(MMK_ENFORCE).await;
    let id = account("stmmklogs");
    h.sim
        .state()
        .act(id.as_str(), &user("mallory", "mallory-oid"), &cmk_patch());
    // An instance wrote its intent and died before its PATCH: the resource is still drifted.
    let intent = RevertIntent {
        id: uuid::Uuid::now_v7().to_string(),
        resource_id: id.as_str().to_string(),
        correlation_id: "the-crashed-revert".into(),
        event_id: None,
        holder: "web-1/dead".into(),
        started_at: OffsetDateTime::now_utc(),
        target: "Microsoft-managed keys".into(),
        writes: vec![format!("PATCH {} (2025-01-01)", id.name())],
        caller: None,
        operation: None,
    };
    h.store.set_revert_intent(&id, Some(&intent)).await.unwrap();

    let look = h.timer_look(&id).await;
    assert_eq!(look.outcome.result, ResultKind::Reverted, "{look:?}");
    assert_eq!(h.key_source(&id), "Microsoft.Storage");
    assert_eq!(h.keyguard_writes(), 1);
    let records: Vec<_> = h
        .audit(&id)
        .await
        .into_iter()
        .filter(|r| r.outcome.result == ResultKind::Reverted)
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(h.store.revert_intent(&id).await.unwrap(), None);
}

#[tokio::test]
async fn a_stale_carried_body_showing_drift_is_read_again_and_nothing_is_written() {
    let h = Harness::start(MMK_ENFORCE).await;
    let id = account("stmmklogs");
    // A Resource Notifications event whose body shows an old CMK state; the account is on
    // Microsoft-managed keys now.
    let event = notification(&id, cmk_patch()["properties"]["encryption"].clone());

    let decided = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(decided.outcome.verdict, VerdictKind::Compliant, "{decided:?}");
    assert_eq!(
        decided.outcome.detail.as_deref(),
        Some("the event's body showed drift; the live resource does not")
    );
    assert_eq!(h.keyguard_writes(), 0);
    let reads = h
        .sim
        .state()
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("stmmklogs"))
        .count();
    assert_eq!(reads, 1, "the live read that overruled the body");
}

#[tokio::test]
async fn a_vault_that_cannot_be_reached_is_not_waited_for_on_every_compliant_look() {
    let h = Harness::start(CMK_ENFORCE).await;
    let id = account("stcmkpayments");
    h.sim.state().add_fault(azure_sim::FaultSpec {
        path_contains: Some("/keys/".into()),
        status: Some(503),
        ..Default::default()
    });
    let key_reads = || {
        h.sim
            .state()
            .requests()
            .iter()
            .filter(|r| r.path.contains("/keys/"))
            .count()
    };

    for _ in 0..3 {
        let look = h.timer_look(&id).await;
        assert_eq!(look.outcome.result, ResultKind::Compliant, "{look:?}");
    }
    // One quick attempt for the expiry warning, no retries, and the failure remembered: the
    // verdict never waited for the vault again.
    assert_eq!(key_reads(), 1);
}

/// The store fails the first alert it is asked to queue, after the audit record went down.
struct OutboxFailsOnce(std::sync::atomic::AtomicBool);

#[async_trait]
impl Tap for OutboxFailsOnce {
    async fn before_insert(&self, table: Table, _partition: &str, _row: &str) -> Result<(), StoreError> {
        if table == Table::Outbox && !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the outbox write timed out".into()));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_store_failure_between_a_reverts_record_and_its_alert_loses_neither() {
    let h = Harness::start_with(MMK_ENFORCE, None, |inner| {
        Arc::new(Tapped {
            inner,
            tap: OutboxFailsOnce(Default::default()),
        })
    })
    .await;
    let id = account("stmmklogs");
    let event = h.act(&id, &user("mallory", "mallory-oid"), &cmk_patch());

    let error = handle_event(&h.ctx, &event).await.unwrap_err();
    assert!(error.retryable(), "Event Grid redelivers: {error}");
    assert_eq!(h.key_source(&id), "Microsoft.Storage", "the revert itself went through");
    assert!(h.outbox().await.is_empty(), "the alert did not get queued");

    // The redelivery finds the resource compliant, but the revert's intent is still there: it
    // is settled as that revert, its record kept once, and its alert queued now.
    let again = handle_event(&h.ctx, &event).await.unwrap();
    assert_eq!(again.outcome.result, ResultKind::Reverted, "{again:?}");
    assert_eq!(h.keyguard_writes(), 1, "no second write");
    let outbox = h.outbox().await;
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].alert.outcome, keyguard_notify::AlertOutcome::Reverted);
    let reverted = h
        .audit(&id)
        .await
        .into_iter()
        .filter(|r| r.outcome.result == ResultKind::Reverted)
        .count();
    assert_eq!(reverted, 1, "one record for one revert");
    assert_eq!(h.store.revert_intent(&id).await.unwrap(), None);
}
