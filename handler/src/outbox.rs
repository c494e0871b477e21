//! Durable alert delivery: every alert is written to the store's outbox first, then sent by one
//! dispatcher that retries with backoff and parks what cannot be delivered, for a person to see
//! (`keyguard alerts --failed`) and re-send. Nothing decided is lost to a crash or a slow webhook.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyguard_notify::{Alert, Channel, SendError};
use time::OffsetDateTime;
use tokio::sync::{Mutex, Notify};

use crate::store::{OutboxEntry, OutboxStatus, StateStore, StoreError, Versioned};

/// Builds the channel for a route. Email routes add per-alert recipients (the owner tag).
pub trait ChannelResolver: Send + Sync {
    fn channel(&self, route: &str, extra_recipients: &[String]) -> Result<Arc<dyn Channel>, ChannelError>;
}

/// Why no channel can be built for a route. Sending would fail the same way every time, so the
/// alert is parked for a person (`keyguard alerts --failed`), never retried.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("no route named {0} is configured")]
    NoRoute(String),
    #[error(transparent)]
    Config(#[from] keyguard_notify::ConfigError),
    /// Only in tests: a route that is deliberately not sent.
    #[cfg(test)]
    #[error("route {0} is not sent in this test")]
    NotSent(String),
}

#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DispatchReport {
    pub sent: u32,
    pub retried: u32,
    pub parked: u32,
}

pub struct Dispatcher {
    store: StateStore,
    channels: Arc<dyn ChannelResolver>,
    max_attempts: u32,
    wake: Notify,
    /// This process in outbox claims (see [`crate::instance::InstanceName`]).
    instance: String,
    /// One sender at a time: the timer tick and an enqueue wake-up must not send an entry twice.
    sending: Mutex<()>,
}

impl Dispatcher {
    pub fn new(store: StateStore, channels: Arc<dyn ChannelResolver>, max_attempts: u32) -> Self {
        Self {
            store,
            channels,
            max_attempts: max_attempts.max(1),
            wake: Notify::new(),
            instance: crate::instance::instance_name(),
            sending: Mutex::new(()),
        }
    }

    /// Records the alert durably, then wakes the sender. `digest_at`: hold it for the route's
    /// digest sent at that time instead of sending it alone.
    #[cfg(test)]
    pub async fn enqueue(
        &self,
        route: &str,
        extra_recipients: Vec<String>,
        alert: Alert,
        digest_at: Option<OffsetDateTime>,
    ) -> Result<OutboxEntry, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.enqueue_as(id, route, extra_recipients, alert, digest_at).await
    }

    /// Queues an alert under `id`, then wakes the sender (tests; decisions queue theirs with
    /// their audit record).
    #[cfg(test)]
    pub async fn enqueue_as(
        &self,
        id: String,
        route: &str,
        extra_recipients: Vec<String>,
        alert: Alert,
        digest_at: Option<OffsetDateTime>,
    ) -> Result<OutboxEntry, StoreError> {
        let entry = Self::entry(id, route, extra_recipients, alert, digest_at);
        if !self.store.outbox_add(&entry).await? {
            tracing::info!(outbox_id = %entry.id, "alert already queued by an earlier attempt");
        }
        self.wake();
        Ok(entry)
    }

    /// A new pending entry. `digest_at`: held for the route's digest sent at that time instead
    /// of being sent alone.
    pub fn entry(
        id: String,
        route: &str,
        extra_recipients: Vec<String>,
        alert: Alert,
        digest_at: Option<OffsetDateTime>,
    ) -> OutboxEntry {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        OutboxEntry {
            id,
            route: route.to_string(),
            extra_recipients,
            alert,
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: digest_at.map_or(now, |t| t.unix_timestamp()),
            last_error: None,
            created_at: now,
            digest: digest_at.is_some(),
            claimed_by: None,
        }
    }

    /// Entries were queued: the sender looks now rather than at its next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A parked entry goes back to pending with a fresh attempt budget.
    pub async fn resend(&self, id: &str) -> Result<bool, StoreError> {
        let Some(Versioned { value: mut entry, etag }) = self.store.outbox_get(id).await? else {
            return Ok(false);
        };
        if entry.status != OutboxStatus::Parked {
            return Ok(false);
        }
        entry.status = OutboxStatus::Pending;
        entry.attempts = 0;
        entry.next_attempt_at = OffsetDateTime::now_utc().unix_timestamp();
        let requeued = self.store.outbox_replace(&entry, &etag).await?.is_some();
        self.wake.notify_one();
        Ok(requeued)
    }

    /// Takes the entries that are due for this instance: each is pushed ahead by a compare-and-swap,
    /// so an entry another instance claimed first is left to it, and the claim of an instance that
    /// dies mid-send runs out and the entry is sent again (at least once, never lost).
    async fn claim_due(&self, now: OffsetDateTime) -> Result<Vec<Versioned<OutboxEntry>>, StoreError> {
        let mut claimed = Vec::new();
        for stored in self.store.outbox_entries().await? {
            let entry = &stored.value;
            let abandoned = entry
                .claimed_by
                .as_deref()
                .is_some_and(|claimer| crate::instance::held_by_dead_local_process(claimer, &self.instance));
            if entry.status != OutboxStatus::Pending || (entry.next_attempt_at > now.unix_timestamp() && !abandoned) {
                continue;
            }
            let mut claim = entry.clone();
            claim.next_attempt_at = now.unix_timestamp() + CLAIM_SECS;
            claim.claimed_by = Some(self.instance.clone());
            if let Some(etag) = self.store.outbox_replace(&claim, &stored.etag).await? {
                claimed.push(Versioned {
                    value: stored.value,
                    etag,
                });
            }
        }
        Ok(claimed)
    }

    /// Sends every pending entry that is due.
    pub async fn run_due(&self, now: OffsetDateTime) -> Result<DispatchReport, StoreError> {
        let _only_sender = self.sending.lock().await;
        let mut report = DispatchReport::default();
        let due = self.claim_due(now).await?;
        // Digest entries due together go out as one message per route (and recipient set).
        let (digests, singles): (Vec<_>, Vec<_>) = due.into_iter().partition(|e| e.value.digest);
        let mut groups: BTreeMap<(String, Vec<String>), Vec<Versioned<OutboxEntry>>> = BTreeMap::new();
        for entry in digests {
            groups
                .entry((entry.value.route.clone(), entry.value.extra_recipients.clone()))
                .or_default()
                .push(entry);
        }
        for entry in singles {
            let result = match self.channels.channel(&entry.value.route, &entry.value.extra_recipients) {
                Ok(channel) => channel.send(&entry.value.alert).await,
                Err(problem) => Err(SendError::Permanent(format!("route {}: {problem}", entry.value.route))),
            };
            self.settle(vec![entry], result, now, &mut report).await?;
        }
        for ((route, extra), entries) in groups {
            let alerts: Vec<Alert> = entries.iter().map(|e| e.value.alert.clone()).collect();
            let result = match self.channels.channel(&route, &extra) {
                Ok(channel) => channel.send_digest(&alerts).await,
                Err(problem) => Err(SendError::Permanent(format!("route {route}: {problem}"))),
            };
            self.settle(entries, result, now, &mut report).await?;
        }
        Ok(report)
    }

    /// Records the result of one send for the entries it carried.
    async fn settle(
        &self,
        entries: Vec<Versioned<OutboxEntry>>,
        result: Result<(), SendError>,
        now: OffsetDateTime,
        report: &mut DispatchReport,
    ) -> Result<(), StoreError> {
        for Versioned { value: mut entry, etag } in entries {
            entry.attempts += 1;
            let mut failed = None;
            match &result {
                Ok(()) => {
                    entry.status = OutboxStatus::Sent;
                    entry.last_error = None;
                    report.sent += 1;
                }
                Err(error) => {
                    let retryable = error.is_retryable() && entry.attempts < self.max_attempts;
                    entry.last_error = Some(error.to_string());
                    if retryable {
                        let delay = error.retry_after().unwrap_or_else(|| backoff(entry.attempts));
                        entry.next_attempt_at = now.unix_timestamp() + delay.as_secs().max(1) as i64;
                        report.retried += 1;
                    } else {
                        entry.status = OutboxStatus::Parked;
                        report.parked += 1;
                    }
                    failed = Some((error, retryable));
                }
            }
            if self.store.outbox_replace(&entry, &etag).await?.is_none() {
                // Only a person's resend changes a claimed entry; theirs stands.
                tracing::warn!(outbox_id = %entry.id, "outbox entry changed while it was being sent");
            }
            // Logged once the entry's new state is stored, so what the log says has happened.
            if failed.is_none() {
                tracing::info!(
                    target: "keyguard::alert",
                    outbox_id = %entry.id, route = %entry.route, attempts = entry.attempts,
                    correlation_id = %entry.alert.correlation_id, "alert delivered"
                );
            }
            if let Some((error, retryable)) = failed {
                tracing::warn!(
                    target: "keyguard::alert",
                    outbox_id = %entry.id, route = %entry.route, attempts = entry.attempts,
                    parked = !retryable, digest = entry.digest, correlation_id = %entry.alert.correlation_id,
                    error = %error, "alert not delivered"
                );
            }
        }
        Ok(())
    }

    /// The sender loop for long-running modes (`serve`, `webhook`): wakes on enqueue or every `tick`.
    pub async fn run_forever(self: Arc<Self>, tick: Duration) {
        loop {
            if let Err(e) = self.run_due(OffsetDateTime::now_utc()).await {
                tracing::error!(error = %e, "alert outbox unavailable");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
}

/// How long a claimed entry is left to the instance sending it (sends time out well within it).
const CLAIM_SECS: i64 = 120;

/// 30 s, 1 min, 2 min ... capped at one hour.
fn backoff(attempts: u32) -> Duration {
    let secs = 30u64.saturating_mul(1u64 << attempts.saturating_sub(1).min(7));
    Duration::from_secs(secs.min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedBackend;
    use keyguard_notify::SendFuture;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A channel whose answers are scripted: each call pops the next result.
    struct Scripted {
        answers: std::sync::Mutex<Vec<Result<(), SendError>>>,
        calls: AtomicU32,
        digest_sizes: std::sync::Mutex<Vec<usize>>,
    }

    impl Channel for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn send<'a>(&'a self, _alert: &'a Alert) -> SendFuture<'a> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.answers.lock().unwrap().pop().unwrap_or(Ok(()));
            Box::pin(async move { next })
        }
        fn send_digest<'a>(&'a self, alerts: &'a [Alert]) -> SendFuture<'a> {
            self.digest_sizes.lock().unwrap().push(alerts.len());
            self.send(&alerts[0])
        }
    }

    struct One(Arc<Scripted>);
    impl ChannelResolver for One {
        fn channel(&self, route: &str, _extra: &[String]) -> Result<Arc<dyn Channel>, ChannelError> {
            if route == "missing" {
                Err(ChannelError::NoRoute(route.to_string()))
            } else {
                Ok(self.0.clone())
            }
        }
    }

    async fn setup(answers: Vec<Result<(), SendError>>) -> (Dispatcher, Arc<Scripted>, StateStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("keyguard-outbox-{}", uuid::Uuid::new_v4()));
        let backend = Arc::new(EmbeddedBackend::open(&dir.join("s.redb")).unwrap());
        let store = StateStore::new(backend).await.unwrap();
        // Answers are popped from the end: reverse so the list reads in call order.
        let scripted = Arc::new(Scripted {
            answers: std::sync::Mutex::new(answers.into_iter().rev().collect()),
            calls: AtomicU32::new(0),
            digest_sizes: std::sync::Mutex::new(Vec::new()),
        });
        (
            Dispatcher::new(store.clone(), Arc::new(One(scripted.clone())), 3),
            scripted,
            store,
            dir,
        )
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_later_then_sent() {
        let (d, channel, store, dir) = setup(vec![Err(SendError::Retryable("503".into())), Ok(())]).await;
        let entry = d.enqueue("teams", vec![], Alert::sample(), None).await.unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            d.run_due(now).await.unwrap(),
            DispatchReport {
                sent: 0,
                retried: 1,
                parked: 0
            }
        );
        // Not due again until the backoff has passed.
        assert_eq!(d.run_due(now).await.unwrap(), DispatchReport::default());
        let later = now + time::Duration::minutes(2);
        assert_eq!(
            d.run_due(later).await.unwrap(),
            DispatchReport {
                sent: 1,
                retried: 0,
                parked: 0
            }
        );
        let stored = store.outbox_get(&entry.id).await.unwrap().unwrap().value;
        assert_eq!((stored.status, stored.attempts), (OutboxStatus::Sent, 2));
        assert_eq!(channel.calls.load(Ordering::SeqCst), 2);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn permanent_refusals_and_exhausted_retries_are_parked_and_resendable() {
        let (d, _channel, store, dir) = setup(vec![
            Err(SendError::Permanent("400".into())),
            Err(SendError::Retryable("503".into())),
            Err(SendError::Retryable("503".into())),
            Err(SendError::Retryable("503".into())),
            Ok(()),
        ])
        .await;
        let refused = d.enqueue("teams", vec![], Alert::sample(), None).await.unwrap();
        let now = OffsetDateTime::now_utc();
        d.run_due(now).await.unwrap();
        assert_eq!(
            store.outbox_get(&refused.id).await.unwrap().unwrap().value.status,
            OutboxStatus::Parked
        );

        let flaky = d.enqueue("teams", vec![], Alert::sample(), None).await.unwrap();
        for hour in 1..=3 {
            d.run_due(now + time::Duration::hours(hour)).await.unwrap();
        }
        let parked = store.outbox_get(&flaky.id).await.unwrap().unwrap().value;
        assert_eq!(
            (parked.status, parked.attempts),
            (OutboxStatus::Parked, 3),
            "max 3 attempts"
        );
        assert!(parked.last_error.unwrap().contains("503"));

        assert!(d.resend(&flaky.id).await.unwrap());
        assert!(!d.resend(&flaky.id).await.unwrap(), "only parked entries are re-sent");
        d.run_due(OffsetDateTime::now_utc() + time::Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(
            store.outbox_get(&flaky.id).await.unwrap().unwrap().value.status,
            OutboxStatus::Sent
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn an_unknown_route_parks_instead_of_looping() {
        let (d, channel, store, dir) = setup(vec![]).await;
        let entry = d.enqueue("missing", vec![], Alert::sample(), None).await.unwrap();
        assert_eq!(d.run_due(OffsetDateTime::now_utc()).await.unwrap().parked, 1);
        assert_eq!(channel.calls.load(Ordering::SeqCst), 0);
        assert!(
            store
                .outbox_get(&entry.id)
                .await
                .unwrap()
                .unwrap()
                .value
                .last_error
                .unwrap()
                .contains("missing")
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn digest_entries_wait_for_their_window_and_go_out_as_one_message() {
        let (d, channel, store, dir) = setup(vec![]).await;
        let at = OffsetDateTime::now_utc() + time::Duration::minutes(10);
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(d.enqueue("teams", vec![], Alert::sample(), Some(at)).await.unwrap().id);
        }
        let single = d.enqueue("teams", vec![], Alert::sample(), None).await.unwrap();
        // Before the window ends only the ordinary alert goes.
        assert_eq!(d.run_due(OffsetDateTime::now_utc()).await.unwrap().sent, 1);
        assert_eq!(
            store.outbox_get(&single.id).await.unwrap().unwrap().value.status,
            OutboxStatus::Sent
        );
        assert!(channel.digest_sizes.lock().unwrap().is_empty());
        // At the window's end the three are sent together, once.
        assert_eq!(d.run_due(at).await.unwrap().sent, 3);
        assert_eq!(*channel.digest_sizes.lock().unwrap(), vec![3]);
        for id in ids {
            assert_eq!(
                store.outbox_get(&id).await.unwrap().unwrap().value.status,
                OutboxStatus::Sent
            );
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn two_instances_sharing_a_store_send_each_alert_once() {
        let (first, channel, store, dir) = setup(vec![]).await;
        let second = Dispatcher::new(store.clone(), Arc::new(One(channel.clone())), 3);
        for _ in 0..20 {
            first.enqueue("teams", vec![], Alert::sample(), None).await.unwrap();
        }
        let now = OffsetDateTime::now_utc();
        let (a, b) = tokio::join!(first.run_due(now), second.run_due(now));
        assert_eq!(a.unwrap().sent + b.unwrap().sent, 20);
        assert_eq!(channel.calls.load(Ordering::SeqCst), 20, "no alert sent twice");
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_claim_left_by_a_crashed_sender_runs_out_and_the_alert_is_sent() {
        let (d, channel, store, dir) = setup(vec![]).await;
        let entry = d.enqueue("teams", vec![], Alert::sample(), None).await.unwrap();
        let now = OffsetDateTime::now_utc();
        // Another instance claimed it and died before settling.
        let read = store.outbox_get(&entry.id).await.unwrap().unwrap();
        let mut claimed = read.value.clone();
        claimed.next_attempt_at = now.unix_timestamp() + CLAIM_SECS;
        store.outbox_replace(&claimed, &read.etag).await.unwrap().unwrap();
        assert_eq!(d.run_due(now).await.unwrap().sent, 0, "claimed by someone else");
        let after_claim = now + time::Duration::seconds(CLAIM_SECS + 1);
        assert_eq!(d.run_due(after_claim).await.unwrap().sent, 1);
        assert_eq!(channel.calls.load(Ordering::SeqCst), 1);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(20), Duration::from_secs(3600));
    }
}
