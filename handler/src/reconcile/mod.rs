//! The reconcile every entry point shares (Event Grid, HTTP, CLI, timer, sweeps), one step a file:
//! [`guard`] (may we look at all) -> [`observe`] (ARM GET: current state decides) -> [`decide`]
//! (the pure core's plan) -> [`act`] (the revert) -> [`record`] (audit trail, finding, alerts).
//!
//! Level-triggered like a kube-rs controller: events are hints, each reconcile re-reads the live
//! resource and is idempotent, so duplicates, late events and keyguard's own writes are harmless.
//! [`Context`] holds the clients and settings; the steps hold the logic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyguard_core::ResourceId;
use keyguard_core::catalog;
use keyguard_core::config::Config;
use keyguard_core::event::Caller;
use serde_json::Value;
use time::OffsetDateTime;

use crate::alerting::Alerter;
use crate::arm::{ArmClient, ArmError, CallContext};
use crate::estate::VaultEstate;
use crate::identity::{SelfIdentity, TokenError};
use crate::keyvault::{KeyVaultClient, KeyVaultError};
use crate::store::{StateStore, StoreError};

mod act;
mod decide;
mod guard;
pub mod key_watch;
mod lease;
mod observe;
pub mod outcome;
mod record;
mod safeguard_watch;
#[cfg(test)]
mod tests;

pub use guard::handle_event;
pub use outcome::{ActionKind, AuditRecord, Decision, ResultKind, Trigger, VerdictKind};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Arm(#[from] ArmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    KeyVault(#[from] KeyVaultError),
    /// Another instance is reconciling the resource and did not finish within this budget.
    #[error("{0} is being reconciled by another instance; try again later")]
    Busy(String),
    /// The lease ran out before a write (a store or ARM call slower than the lease) and may be
    /// another instance's now: nothing more is written, the next attempt decides afresh.
    #[error("the lease on {0} was lost before writing; try again later")]
    LeaseLost(String),
}

impl ReconcileError {
    /// Whether redelivery could succeed. Each dependency's error says itself: a store or token
    /// endpoint that is down, yes; corrupt stored data or a refused credential, never.
    pub fn retryable(&self) -> bool {
        match self {
            ReconcileError::Arm(e) => e.retryable(),
            ReconcileError::Store(e) => e.retryable(),
            ReconcileError::Token(e) => e.retryable(),
            ReconcileError::KeyVault(e) => e.retryable(),
            ReconcileError::Busy(_) | ReconcileError::LeaseLost(_) => true,
        }
    }
}

/// How this process reconciles: fixed at start-up.
#[derive(Clone, Debug)]
pub struct ReconcileSettings {
    /// `KEYGUARD_DRY_RUN`: every reconcile of this process is a dry run.
    pub dry_run: bool,
    /// What one reconcile may take, ARM calls included (inside the Functions timeout).
    pub time_budget: Duration,
    /// Names this process in leases and revert intents (see [`crate::instance::InstanceName`]).
    pub instance: String,
}

impl ReconcileSettings {
    /// A lease must outlive the invocation that holds it (ARM calls never outlive the budget; the
    /// margin covers store calls and clock skew between instances), and a crashed holder should
    /// block its resource for not much longer than that.
    fn lease_ttl(&self) -> time::Duration {
        let budget = time::Duration::try_from(self.time_budget).unwrap_or(time::Duration::seconds(25));
        budget * 2 + time::Duration::seconds(5)
    }
}

/// What a reconcile works with: the clients, the configuration and the settings. It holds no
/// logic of its own; the steps take it by reference.
pub struct Context {
    pub config: Arc<Config>,
    pub arm: ArmClient,
    pub keyvault: Arc<KeyVaultClient>,
    /// The key-swap guard's vault lookup and its caches.
    pub estate: Arc<VaultEstate>,
    pub store: StateStore,
    /// Without one, alerts stay log records (a scan against another requirement, tests).
    pub alerter: Option<Arc<Alerter>>,
    pub settings: ReconcileSettings,
    self_identity: SelfIdentity,
    locks: Arc<ResourceLocks>,
}

impl Context {
    pub fn new(
        config: Arc<Config>,
        arm: ArmClient,
        keyvault: KeyVaultClient,
        store: StateStore,
        settings: ReconcileSettings,
    ) -> Self {
        Context {
            self_identity: SelfIdentity::new(config.settings.self_principal_ids.clone()),
            config,
            arm,
            keyvault: Arc::new(keyvault),
            estate: Arc::new(VaultEstate::new(Vec::new())),
            store,
            alerter: None,
            settings,
            locks: Arc::default(),
        }
    }

    /// The scopes keyguard watches, for the key-swap guard's estate check (empty: everything
    /// its identity can see).
    pub fn with_watched_scopes(mut self, watched: Vec<keyguard_core::arm_scope::ArmScope>) -> Self {
        self.estate = Arc::new(VaultEstate::new(watched));
        self
    }

    /// Alerts go through the outbox to the configured routes.
    pub fn with_alerter(mut self, alerter: Arc<Alerter>) -> Self {
        self.alerter = Some(alerter);
        self
    }

    /// The same clients, store and locks deciding by other profiles: a scan "against one
    /// requirement" (`--require`, `require`) without touching the configuration. Alerts stay off:
    /// such a look records findings only.
    pub fn with_config(&self, config: Config) -> Context {
        Context {
            self_identity: SelfIdentity::new(config.settings.self_principal_ids.clone()),
            config: Arc::new(config),
            arm: self.arm.clone(),
            keyvault: self.keyvault.clone(),
            estate: self.estate.clone(),
            store: self.store.clone(),
            alerter: None,
            settings: self.settings.clone(),
            locks: self.locks.clone(),
        }
    }
}

/// One attempt at reconciling a resource: why, on whose behalf, and from what.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub trigger: Trigger,
    pub correlation_id: String,
    /// Who made the write the event reports (events only).
    pub caller: Option<Caller>,
    /// A body the trigger brought along: an event's carried resource (anyone's word: it is never
    /// a baseline, and drift in it is re-read live) or a listing keyguard made (a sweep: trusted
    /// when compliant, re-read before anything is written).
    pub carried: Option<Value>,
    /// Reads only: no lease, no revert intent, nothing written to ARM.
    pub dry_run: bool,
    pub started: Instant,
    /// The event's dedupe entry: checked again under the lease, marked once handled.
    dedupe: Option<String>,
}

impl Attempt {
    pub fn new(trigger: Trigger, correlation_id: impl Into<String>, dry_run: bool) -> Attempt {
        Attempt {
            trigger,
            correlation_id: correlation_id.into(),
            caller: None,
            carried: None,
            dry_run,
            started: Instant::now(),
            dedupe: None,
        }
    }

    /// Starting from the body a listing returned (a sweep).
    pub fn listed(mut self, body: Option<Value>) -> Attempt {
        self.carried = body;
        self
    }
}

/// Reconciles one resource: the single entry every trigger ends in. Without a dry run it holds
/// the resource's lease (one instance at a time) and may write; a dry run reads only and takes no
/// lease, so a real instance sharing the store is never held up or overtaken.
pub async fn reconcile(ctx: &Context, id: &ResourceId, mut attempt: Attempt) -> Result<Decision, ReconcileError> {
    attempt.dry_run |= ctx.settings.dry_run;
    let call = CallContext::new(attempt.correlation_id.clone(), ctx.settings.time_budget);
    if attempt.dry_run {
        let dedupe = attempt.dedupe.take();
        let decision = settle(ctx, id, attempt, &call, None).await?;
        if let Some(key) = dedupe {
            guard::mark_handled(ctx, &key).await?;
        }
        return Ok(decision);
    }
    let _local = ctx.locks.lock(id).await;
    let mut lease = lease::acquire(ctx, id, &call).await?;
    let result = async {
        let dedupe = attempt.dedupe.take();
        if let Some(key) = &dedupe
            && ctx.store.event_seen(key, OffsetDateTime::now_utc()).await?
        {
            // Another instance handled this very event while we waited for the lease.
            let decision = guard::duplicate(&attempt, id);
            return record::record(ctx, decision, attempt.started).await;
        }
        let decision = settle(ctx, id, attempt, &call, Some(&mut lease)).await?;
        if let Some(key) = dedupe {
            guard::mark_handled(ctx, &key).await?;
        }
        Ok(decision)
    }
    .await;
    lease::release(ctx, &lease).await;
    result
}

/// Decides, acts, records. With the resource's lease it may write: a revert intent left by an
/// earlier attempt is resolved here, and cleared only once its outcome is recorded. Without it,
/// it is a dry run: it reads, and records what it found as a dry run under ids of its own, but
/// never loads, reuses or clears a real revert's intent, so a dry run during a real revert leaves
/// that revert's crash recovery, audit record and alert to it.
async fn settle(
    ctx: &Context,
    id: &ResourceId,
    attempt: Attempt,
    call: &CallContext,
    lease: Option<&mut crate::store::Lease>,
) -> Result<Decision, ReconcileError> {
    let writes = lease.is_some();
    let intent = match catalog::lookup(&id.resource_type()) {
        Some(_) if writes => ctx.store.revert_intent(id).await?,
        _ => None,
    };
    let report_only = !writes && matches!(attempt.trigger, Trigger::Sweep { .. });
    let started = attempt.started;
    let mut decision = decide::decide_and_act(ctx, id, attempt, call, lease, intent.as_ref()).await?;
    // A report-only sweep is a person reading a report, not an incident for each finding.
    if report_only {
        decision.outcome.alert = false;
    }
    let decision = record::record(ctx, decision, started).await?;
    let outcome = &decision.outcome;
    if writes
        && (intent.is_some() || outcome.action == ActionKind::Revert)
        && outcome.result != ResultKind::RevertPending
    {
        ctx.store.set_revert_intent(id, None).await?;
    }
    Ok(decision)
}

/// At most one reconcile per resource at a time in this process (kube-rs controller rule).
#[derive(Default)]
struct ResourceLocks {
    inner: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ResourceLocks {
    async fn lock(&self, id: &ResourceId) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut map = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // Forget locks nobody holds, so the map does not grow with every resource ever seen.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(id.key()).or_default().clone()
        };
        mutex.lock_owned().await
    }
}
