//! Issue 13, item 2: the store fails while a decision's record and alerts are written, and the
//! event is delivered again. Afterwards the alert is sent exactly once and the audit record
//! exists exactly once, on both backends, whether the failure came before anything was written,
//! after the record but before its alerts (as Table Storage's separate transactions can leave
//! it), or after everything was written and only the answer was lost.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use keyguard_notify::{Alert, Channel, SendFuture};

use super::*;
use crate::store::tapped::{Tap, Tapped};
use crate::store::{RowGroup, StoreError};

/// The alert route's profile says: alert, never write.
const MMK_ALERT: &str = r#"
[[profile]]
name = "mmk-alert"
require = "mmk"
mode = "alert"
"#;

#[derive(Clone, Copy, Debug)]
enum Failure {
    /// Nothing of the write reached the store.
    Before,
    /// The record is stored, its alerts are not.
    Between,
    /// Everything is stored; the answer never came back.
    After,
}

/// Fails the first write that carries alerts, once, as `failure` says.
struct FailFirstAlertingCommit {
    failure: Failure,
    armed: AtomicBool,
}

#[async_trait]
impl Tap for FailFirstAlertingCommit {
    async fn insert_absent(&self, inner: &dyn TableBackend, groups: &[RowGroup]) -> Result<Vec<usize>, StoreError> {
        let alerting = groups.iter().any(|g| g.table == Table::Outbox);
        if !alerting || !self.armed.swap(false, Ordering::SeqCst) {
            return inner.insert_absent(groups).await;
        }
        let written = match self.failure {
            Failure::Before => &groups[..0],
            Failure::Between => &groups[..groups.len() - 1],
            Failure::After => groups,
        };
        inner.insert_absent(written).await?;
        Err(StoreError::Unavailable("injected: the store stopped answering".into()))
    }
}

/// Counts what is sent.
#[derive(Default)]
struct Counting(AtomicU32);

impl Channel for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn send<'a>(&'a self, _alert: &'a Alert) -> SendFuture<'a> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

struct Resolver(Arc<Counting>);

impl ChannelResolver for Resolver {
    fn channel(&self, _route: &str, _extra: &[String]) -> Result<Arc<dyn Channel>, crate::outbox::ChannelError> {
        Ok(self.0.clone())
    }
}

/// The drift event fails with the injected failure, is delivered again and succeeds; then the
/// outbox is sent. Returns the decision of the redelivery.
async fn drift_failed_and_redelivered(
    config: &str,
    backend: &str,
    failure: Failure,
) -> (Harness, ResourceId, Decision) {
    let tap = FailFirstAlertingCommit {
        failure,
        armed: AtomicBool::new(true),
    };
    let on_azurite = backend == "azurite";
    let h = Harness::start_with(config, None, move |embedded| {
        let inner = match on_azurite {
            true => crate::store::tests::azurite_tables(&crate::store::tests::table_prefix()),
            false => embedded,
        };
        Arc::new(Tapped { inner, tap })
    })
    .await;
    let id = account("stmmklogs");
    let event = h.act(
        &id,
        &user("mallory", "11111111-2222-3333-4444-555555555555"),
        &cmk_patch(),
    );
    let first = handle_event(&h.ctx, &event).await;
    assert!(
        matches!(first, Err(ReconcileError::Store(StoreError::Unavailable(_)))),
        "{backend} {failure:?}: the first delivery fails: {first:?}"
    );
    let again = handle_event(&h.ctx, &event)
        .await
        .unwrap_or_else(|e| panic!("{backend} {failure:?}: the redelivery is handled: {e}"));
    (h, id, again)
}

/// What must hold after the redelivery, whatever failed: one record, one queued alert, sent once.
async fn exactly_once(h: &Harness, id: &ResourceId, result: ResultKind, what: &str) {
    let records = h.audit(id).await;
    assert_eq!(records.len(), 1, "{what}: one audit record: {records:?}");
    assert_eq!(records[0].outcome.result, result, "{what}");
    let timeline: Vec<AuditRecord> = h.store.audit_records(&AuditQuery::default()).await.unwrap();
    assert_eq!(timeline.len(), 1, "{what}: one record in the timeline too");
    let outbox = h.outbox().await;
    assert_eq!(outbox.len(), 1, "{what}: one alert queued: {outbox:?}");
    assert!(
        outbox[0].id.starts_with(&records[0].id),
        "{what}: queued under the record's id"
    );
    let channel = Arc::new(Counting::default());
    let dispatcher = Dispatcher::new(h.store.clone(), Arc::new(Resolver(channel.clone())), 3);
    for _ in 0..2 {
        dispatcher.run_due(OffsetDateTime::now_utc()).await.unwrap();
    }
    assert_eq!(
        channel.0.load(Ordering::SeqCst),
        1,
        "{what}: the alert is sent exactly once"
    );
}

/// The revert is written, then the store fails: the redelivery finds the revert's intent, records
/// its result once and queues its alert once. Exactly one write went to ARM.
#[tokio::test]
async fn a_revert_whose_record_and_alert_write_failed_is_recorded_and_alerted_once_after_redelivery() {
    for backend in ["embedded", "azurite"] {
        for failure in [Failure::Before, Failure::Between, Failure::After] {
            let (h, id, again) = drift_failed_and_redelivered(MMK_ENFORCE, backend, failure).await;
            let what = format!("{backend} {failure:?}");
            assert_eq!(again.outcome.result, ResultKind::Reverted, "{what}: {again:?}");
            assert_eq!(h.keyguard_writes(), 1, "{what}: one revert");
            assert_eq!(h.key_source(&id), "Microsoft.Storage", "{what}");
            exactly_once(&h, &id, ResultKind::Reverted, &what).await;
            assert_eq!(
                h.store.revert_intent(&id).await.unwrap(),
                None,
                "{what}: intent settled"
            );
        }
    }
}

/// Alert mode writes nothing to ARM, so no intent carries the record id over: the event's marker
/// does. Before it, a redelivery after a failure past the record wrote a second record.
#[tokio::test]
async fn an_alert_only_decision_redelivered_after_a_store_failure_is_recorded_and_alerted_once() {
    for backend in ["embedded", "azurite"] {
        for failure in [Failure::Before, Failure::Between, Failure::After] {
            let (h, id, again) = drift_failed_and_redelivered(MMK_ALERT, backend, failure).await;
            let what = format!("{backend} {failure:?}");
            assert_eq!(again.outcome.result, ResultKind::AlertOnly, "{what}: {again:?}");
            assert_eq!(h.keyguard_writes(), 0, "{what}: alert mode writes nothing");
            exactly_once(&h, &id, ResultKind::AlertOnly, &what).await;
        }
    }
}
