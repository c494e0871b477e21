//! Durable alert delivery: every alert is written to the store's outbox first, then sent by one
//! dispatcher that retries with backoff and parks what cannot be delivered, for a person to see
//! (`keyguard alerts --failed`) and re-send. Nothing decided is lost to a crash or a slow webhook.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyguard_notify::{Alert, Channel, SendError};
use time::OffsetDateTime;
use tokio::sync::{Mutex, Notify};

use crate::store::{OutboxEntry, OutboxStatus, StateStore, StoreError};

/// Builds the channel for a route. Email routes add per-alert recipients (the owner tag).
pub trait ChannelResolver: Send + Sync {
    fn channel(&self, route: &str, extra_recipients: &[String]) -> Result<Arc<dyn Channel>, String>;
}

#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DispatchReport {
    pub sent: u32,
    pub retried: u32,
    pub parked: u32,
}

pub struct Dispatcher {
    store: Arc<dyn StateStore>,
    channels: Arc<dyn ChannelResolver>,
    max_attempts: u32,
    wake: Notify,
    /// One sender at a time: the timer tick and an enqueue wake-up must not send an entry twice.
    sending: Mutex<()>,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn StateStore>, channels: Arc<dyn ChannelResolver>, max_attempts: u32) -> Self {
        Self {
            store,
            channels,
            max_attempts: max_attempts.max(1),
            wake: Notify::new(),
            sending: Mutex::new(()),
        }
    }

    /// Records the alert durably, then wakes the sender. `digest_at`: hold it for the route's
    /// digest sent at that time instead of sending it alone.
    pub fn enqueue(
        &self,
        route: &str,
        extra_recipients: Vec<String>,
        alert: Alert,
        digest_at: Option<OffsetDateTime>,
    ) -> Result<OutboxEntry, StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let entry = OutboxEntry {
            id: uuid::Uuid::now_v7().to_string(),
            route: route.to_string(),
            extra_recipients,
            alert,
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: digest_at.map_or(now, |t| t.unix_timestamp()),
            last_error: None,
            created_at: now,
            digest: digest_at.is_some(),
        };
        self.store.outbox_put(&entry)?;
        self.wake.notify_one();
        Ok(entry)
    }

    /// A parked entry goes back to pending with a fresh attempt budget.
    pub fn resend(&self, id: &str) -> Result<bool, StoreError> {
        let Some(mut entry) = self.store.outbox_get(id)? else {
            return Ok(false);
        };
        if entry.status != OutboxStatus::Parked {
            return Ok(false);
        }
        entry.status = OutboxStatus::Pending;
        entry.attempts = 0;
        entry.next_attempt_at = OffsetDateTime::now_utc().unix_timestamp();
        self.store.outbox_put(&entry)?;
        self.wake.notify_one();
        Ok(true)
    }

    /// Sends every pending entry that is due.
    pub async fn run_due(&self, now: OffsetDateTime) -> Result<DispatchReport, StoreError> {
        let _only_sender = self.sending.lock().await;
        let mut report = DispatchReport::default();
        let due: Vec<OutboxEntry> = self
            .store
            .outbox_entries()?
            .into_iter()
            .filter(|e| e.status == OutboxStatus::Pending && e.next_attempt_at <= now.unix_timestamp())
            .collect();
        // Digest entries due together go out as one message per route (and recipient set).
        let (digests, singles): (Vec<OutboxEntry>, Vec<OutboxEntry>) = due.into_iter().partition(|e| e.digest);
        let mut groups: BTreeMap<(String, Vec<String>), Vec<OutboxEntry>> = BTreeMap::new();
        for entry in digests {
            groups
                .entry((entry.route.clone(), entry.extra_recipients.clone()))
                .or_default()
                .push(entry);
        }
        for entry in singles {
            let result = match self.channels.channel(&entry.route, &entry.extra_recipients) {
                Ok(channel) => channel.send(&entry.alert).await,
                Err(problem) => Err(SendError::Permanent(format!("route {}: {problem}", entry.route))),
            };
            self.settle(vec![entry], result, now, &mut report)?;
        }
        for ((route, extra), entries) in groups {
            let alerts: Vec<Alert> = entries.iter().map(|e| e.alert.clone()).collect();
            let result = match self.channels.channel(&route, &extra) {
                Ok(channel) => channel.send_digest(&alerts).await,
                Err(problem) => Err(SendError::Permanent(format!("route {route}: {problem}"))),
            };
            self.settle(entries, result, now, &mut report)?;
        }
        Ok(report)
    }

    /// Records the result of one send for the entries it carried.
    fn settle(
        &self,
        entries: Vec<OutboxEntry>,
        result: Result<(), SendError>,
        now: OffsetDateTime,
        report: &mut DispatchReport,
    ) -> Result<(), StoreError> {
        for mut entry in entries {
            entry.attempts += 1;
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
                    tracing::warn!(
                        target: "keyguard::alert",
                        outbox_id = %entry.id, route = %entry.route, attempts = entry.attempts,
                        parked = !retryable, digest = entry.digest, correlation_id = %entry.alert.correlation_id,
                        error = %error, "alert not delivered"
                    );
                }
            }
            self.store.outbox_put(&entry)?;
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

/// 30 s, 1 min, 2 min ... capped at one hour.
fn backoff(attempts: u32) -> Duration {
    let secs = 30u64.saturating_mul(1u64 << attempts.saturating_sub(1).min(7));
    Duration::from_secs(secs.min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;
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
        fn channel(&self, route: &str, _extra: &[String]) -> Result<Arc<dyn Channel>, String> {
            if route == "missing" {
                Err("no such route".into())
            } else {
                Ok(self.0.clone())
            }
        }
    }

    fn setup(
        answers: Vec<Result<(), SendError>>,
    ) -> (Dispatcher, Arc<Scripted>, Arc<dyn StateStore>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("keyguard-outbox-{}", uuid::Uuid::new_v4()));
        let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::open(&dir.join("s.redb")).unwrap());
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
        let (d, channel, store, dir) = setup(vec![Err(SendError::Retryable("503".into())), Ok(())]);
        let entry = d.enqueue("teams", vec![], Alert::sample(), None).unwrap();
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
        let stored = store.outbox_get(&entry.id).unwrap().unwrap();
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
        ]);
        let refused = d.enqueue("teams", vec![], Alert::sample(), None).unwrap();
        let now = OffsetDateTime::now_utc();
        d.run_due(now).await.unwrap();
        assert_eq!(
            store.outbox_get(&refused.id).unwrap().unwrap().status,
            OutboxStatus::Parked
        );

        let flaky = d.enqueue("teams", vec![], Alert::sample(), None).unwrap();
        for hour in 1..=3 {
            d.run_due(now + time::Duration::hours(hour)).await.unwrap();
        }
        let parked = store.outbox_get(&flaky.id).unwrap().unwrap();
        assert_eq!(
            (parked.status, parked.attempts),
            (OutboxStatus::Parked, 3),
            "max 3 attempts"
        );
        assert!(parked.last_error.unwrap().contains("503"));

        assert!(d.resend(&flaky.id).unwrap());
        assert!(!d.resend(&flaky.id).unwrap(), "only parked entries are re-sent");
        d.run_due(OffsetDateTime::now_utc() + time::Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(store.outbox_get(&flaky.id).unwrap().unwrap().status, OutboxStatus::Sent);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn an_unknown_route_parks_instead_of_looping() {
        let (d, channel, store, dir) = setup(vec![]);
        let entry = d.enqueue("missing", vec![], Alert::sample(), None).unwrap();
        assert_eq!(d.run_due(OffsetDateTime::now_utc()).await.unwrap().parked, 1);
        assert_eq!(channel.calls.load(Ordering::SeqCst), 0);
        assert!(
            store
                .outbox_get(&entry.id)
                .unwrap()
                .unwrap()
                .last_error
                .unwrap()
                .contains("missing")
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn digest_entries_wait_for_their_window_and_go_out_as_one_message() {
        let (d, channel, store, dir) = setup(vec![]);
        let at = OffsetDateTime::now_utc() + time::Duration::minutes(10);
        let ids: Vec<String> = (0..3)
            .map(|_| d.enqueue("teams", vec![], Alert::sample(), Some(at)).unwrap().id)
            .collect();
        let single = d.enqueue("teams", vec![], Alert::sample(), None).unwrap();
        // Before the window ends only the ordinary alert goes.
        assert_eq!(d.run_due(OffsetDateTime::now_utc()).await.unwrap().sent, 1);
        assert_eq!(
            store.outbox_get(&single.id).unwrap().unwrap().status,
            OutboxStatus::Sent
        );
        assert!(channel.digest_sizes.lock().unwrap().is_empty());
        // At the window's end the three are sent together, once.
        assert_eq!(d.run_due(at).await.unwrap().sent, 3);
        assert_eq!(*channel.digest_sizes.lock().unwrap(), vec![3]);
        for id in ids {
            assert_eq!(store.outbox_get(&id).unwrap().unwrap().status, OutboxStatus::Sent);
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(20), Duration::from_secs(3600));
    }
}
