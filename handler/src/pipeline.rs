//! The reconcile pipeline every entry point shares (Event Grid, HTTP, CLI, timer):
//! guard -> observe (ARM GET: current state decides) -> decide (pure core) -> act -> record.
//!
//! Level-triggered like a kube-rs controller: events are hints, each reconcile re-reads the live
//! resource and is idempotent, so duplicates, late events and keyguard's own writes are harmless.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyguard_core::ResourceId;
use keyguard_core::catalog::{
    self, CatalogEntry, Direction, EncryptionState, ResourceView, RevertTarget, RevertWrite, WriteMethod,
};
use keyguard_core::config::Config;
use keyguard_core::evaluate::{Evaluation, Verdict, evaluate_view, resource_tags};
use keyguard_core::event::{Caller, EventKind, IncomingEvent};
use keyguard_core::keyvault::{expiring_within, key_problems};
use keyguard_core::plan::{Action, NoRevertReason, PlanContext, plan_with, revert_target};
use keyguard_core::safeguards::{Look, SafeguardChange};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::alerting::Alerter;
use crate::arm::{ArmClient, ArmError, CallContext};
use crate::identity::{SelfIdentity, TokenError};
use crate::keyvault::{KeyVaultClient, KeyVaultError};
use crate::store::{BaselineSource, Lease, Retention, RevertIntent, StateStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
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

impl PipelineError {
    /// Whether redelivery could succeed. Each dependency's error says itself: a store or token
    /// endpoint that is down, yes; corrupt stored data or a refused credential, never.
    pub fn retryable(&self) -> bool {
        match self {
            PipelineError::Arm(e) => e.retryable(),
            PipelineError::Store(e) => e.retryable(),
            PipelineError::Token(e) => e.retryable(),
            PipelineError::KeyVault(e) => e.retryable(),
            PipelineError::Busy(_) | PipelineError::LeaseLost(_) => true,
        }
    }
}

/// Why a reconcile runs; carried into the audit record.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Trigger {
    Event {
        event_id: String,
        event_type: String,
    },
    Manual,
    Reconcile,
    /// A sweep of a scope (HTTP, CLI, the timer): the resource was listed, not changed.
    Sweep {
        scope: String,
    },
}

/// One audit record: what was seen, decided and done, with the ids that tie it to the event.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub trigger: Trigger,
    pub correlation_id: String,
    pub resource_id: Option<String>,
    pub resource_type: Option<String>,
    pub caller: Option<String>,
    pub caller_ip: Option<String>,
    pub profile: Option<String>,
    /// cmk | mmk | encrypted, from the profile.
    pub requirement: Option<String>,
    /// compliant | drift | exempt | unsupported | gone | skipped | ignored
    pub verdict: String,
    pub drift: Option<String>,
    pub before: Option<EncryptionState>,
    pub after: Option<EncryptionState>,
    /// none | revert | dry-run-revert | alert-only | record-only
    pub action: String,
    /// e.g. compliant, reverted, would-revert, revert-failed, manual-action-needed, own-write, duplicate
    pub result: String,
    pub detail: Option<String>,
    pub alert: bool,
    pub dry_run: bool,
    pub duration_ms: u64,
    /// A write weakened what protects the resource (an exemption tag, a retag into a weaker
    /// profile): alerted on its own, naming who did it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safeguard_changes: Vec<SafeguardChange>,
    /// The resource's tags, for alert routing (owner tag); not part of the audit record.
    #[serde(skip)]
    pub tags: serde_json::Map<String, Value>,
    /// The id of the persisted audit record. A revert's record takes its intent's id, so the
    /// instance that finishes a crashed revert records it once, not twice.
    #[serde(skip)]
    pub record_id: Option<String>,
    /// What reports and `GET /api/findings` show for the resource after this decision.
    #[serde(skip)]
    pub finding: Option<keyguard_report::Finding>,
}

/// One entry of the persisted audit trail: an outcome with its id and time.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// UUID v7 (time-ordered).
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Outcome {
    /// Whether the outcome is a decision about a resource, kept in the audit trail. Duplicates,
    /// keyguard's own echoes and events it does not watch are log lines only.
    pub fn is_auditable(&self) -> bool {
        // A periodic look that finds a resource compliant is a finding, not an event of its own:
        // thousands of them per sweep would bury the decisions auditors look for.
        let routine_compliant = matches!(self.trigger, Trigger::Reconcile | Trigger::Sweep { .. })
            && self.verdict == "compliant"
            && self.result == "compliant";
        self.resource_id.is_some()
            && !matches!(self.verdict.as_str(), "skipped" | "ignored")
            && (!routine_compliant || !self.safeguard_changes.is_empty())
    }

    pub fn event_id(&self) -> Option<&str> {
        match &self.trigger {
            Trigger::Event { event_id, .. } => Some(event_id),
            Trigger::Manual | Trigger::Reconcile | Trigger::Sweep { .. } => None,
        }
    }
}

impl Outcome {
    fn new(trigger: Trigger, correlation_id: &str, resource_id: Option<&ResourceId>) -> Self {
        Self {
            trigger,
            correlation_id: correlation_id.to_string(),
            resource_id: resource_id.map(|r| r.as_str().to_string()),
            resource_type: resource_id.map(|r| r.resource_type()),
            caller: None,
            caller_ip: None,
            profile: None,
            requirement: None,
            verdict: String::new(),
            drift: None,
            before: None,
            after: None,
            action: "none".into(),
            result: String::new(),
            detail: None,
            alert: false,
            dry_run: false,
            duration_ms: 0,
            safeguard_changes: Vec::new(),
            tags: serde_json::Map::new(),
            record_id: None,
            finding: None,
        }
    }

    fn finish(mut self, verdict: &str, result: &str, detail: Option<String>) -> Self {
        self.verdict = verdict.into();
        self.result = result.into();
        self.detail = detail;
        self
    }

    /// One line for the Functions invocation log.
    pub fn summary(&self) -> String {
        format!(
            "{} {}: {} -> {}{}",
            self.resource_id.as_deref().unwrap_or("-"),
            self.verdict,
            self.action,
            self.result,
            self.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
        )
    }
}

#[derive(Clone)]
pub struct PipelineSettings {
    pub dry_run: bool,
    pub time_budget: Duration,
    /// Names this process in leases and revert intents (see [`crate::instance::InstanceName`]).
    pub instance: String,
    pub retention: Retention,
    pub sweep: SweepSettings,
}

/// What the timer sweeps and how long sweeps may run.
#[derive(Clone, Debug)]
pub struct SweepSettings {
    /// `KEYGUARD_SWEEP_SCOPES`: the scopes the Reconcile timer sweeps. Empty: it re-checks the
    /// resources keyguard has seen instead.
    pub scopes: Vec<crate::sweep::Scope>,
    /// The timer's sweep budget (inside the Functions timeout; it resumes next time).
    pub timer_budget: Duration,
    /// `POST /api/scan`'s budget (inside the HTTP front end's 230 s).
    pub api_budget: Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            scopes: Vec::new(),
            timer_budget: Duration::from_secs(240),
            api_budget: Duration::from_secs(200),
        }
    }
}

impl PipelineSettings {
    /// A lease must outlive the invocation that holds it (ARM calls never outlive the budget; the
    /// margin covers store calls and clock skew between instances), and a crashed holder should
    /// block its resource for not much longer than that.
    fn lease_ttl(&self) -> time::Duration {
        let budget = time::Duration::try_from(self.time_budget).unwrap_or(time::Duration::seconds(25));
        budget * 2 + time::Duration::seconds(5)
    }
}

pub struct Pipeline {
    config: Arc<Config>,
    arm: ArmClient,
    store: StateStore,
    self_identity: SelfIdentity,
    settings: PipelineSettings,
    locks: Arc<ResourceLocks>,
    alerter: Option<Arc<Alerter>>,
    keyvault: Arc<KeyVaultClient>,
}

impl Pipeline {
    pub fn new(
        config: Arc<Config>,
        arm: ArmClient,
        keyvault: KeyVaultClient,
        store: StateStore,
        settings: PipelineSettings,
    ) -> Self {
        let self_identity = SelfIdentity::new(config.settings.self_principal_ids.clone());
        Self {
            config,
            arm,
            store,
            self_identity,
            settings,
            locks: Arc::default(),
            alerter: None,
            keyvault: Arc::new(keyvault),
        }
    }

    /// The same pipeline (ARM, store, locks, Key Vault answers) deciding by other profiles: a
    /// scan "against one requirement" (`--require`, `require`) without touching the configuration.
    /// Alerts stay off: such a look records findings only.
    pub fn with_config(&self, config: Config) -> Pipeline {
        Pipeline {
            self_identity: SelfIdentity::new(config.settings.self_principal_ids.clone()),
            config: Arc::new(config),
            arm: self.arm.clone(),
            store: self.store.clone(),
            settings: self.settings.clone(),
            locks: self.locks.clone(),
            alerter: None,
            keyvault: self.keyvault.clone(),
        }
    }

    /// Alerts go through the outbox to the configured routes (without one they stay log records).
    pub fn with_alerter(mut self, alerter: Arc<Alerter>) -> Self {
        self.alerter = Some(alerter);
        self
    }

    pub fn alerter(&self) -> Option<&Arc<Alerter>> {
        self.alerter.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn arm(&self) -> &ArmClient {
        &self.arm
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    pub fn sweep_settings(&self) -> &SweepSettings {
        &self.settings.sweep
    }

    pub fn retention(&self) -> Retention {
        self.settings.retention
    }

    pub fn time_budget(&self) -> Duration {
        self.settings.time_budget
    }

    /// Handle one Event Grid / CloudEvents event. Errors mean "let the sender retry".
    pub async fn handle_event(&self, event: &IncomingEvent) -> Result<Outcome, PipelineError> {
        let started = std::time::Instant::now();
        let trigger = Trigger::Event {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
        };
        let (resource_id, caller, correlation, provided_body) = match &event.kind {
            EventKind::ResourceWrite(op) => {
                let correlation = op.correlation_id.clone().unwrap_or_else(|| event.id.clone());
                let outcome = Outcome::new(trigger.clone(), &correlation, Some(&op.resource_id));
                if !op.status.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("Succeeded")) {
                    return self
                        .audit(outcome.finish("ignored", "not-succeeded", op.status.clone()), started)
                        .await;
                }
                // A write to a child that holds the key setting (SQL protector, TDE) means "look at the parent".
                let target = catalog::target_for(&op.resource_id).filter(|(_, entry)| {
                    catalog::lookup_operation(&op.operation_name)
                        .is_some_and(|by_operation| by_operation.resource_type == entry.resource_type)
                });
                let Some((target_id, _)) = target else {
                    let detail = format!("operation {} is not an encryption-relevant write", op.operation_name);
                    return self
                        .audit(outcome.finish("ignored", "not-watched", Some(detail)), started)
                        .await;
                };
                (target_id, Some(op.caller.clone()), correlation, None)
            }
            EventKind::ResourceNotification {
                resource_id, resource, ..
            } => (resource_id.clone(), None, event.id.clone(), Some(resource.clone())),
            EventKind::ResourceNotificationDeleted { resource_id } => {
                let outcome = Outcome::new(trigger, &event.id, Some(resource_id));
                return self.audit(outcome.finish("gone", "deleted", None), started).await;
            }
            EventKind::OtherArm { operation_name, .. } => {
                let outcome = Outcome::new(trigger, &event.id, None);
                let detail = format!("{} ({})", event.event_type, operation_name.as_deref().unwrap_or("-"));
                return self
                    .audit(
                        outcome.finish("ignored", "event-type-not-watched", Some(detail)),
                        started,
                    )
                    .await;
            }
            EventKind::SubscriptionValidation { .. } | EventKind::Unrecognised => {
                let outcome = Outcome::new(trigger, &event.id, None);
                let detail = event.event_type.clone();
                return self
                    .audit(
                        outcome.finish("ignored", "event-type-not-watched", Some(detail)),
                        started,
                    )
                    .await;
            }
        };

        let mut outcome = Outcome::new(trigger.clone(), &correlation, Some(&resource_id));
        outcome.caller = caller.as_ref().map(Caller::display);
        let now = OffsetDateTime::now_utc();
        let dry_run = self.settings.dry_run;
        let dedupe_key = dedupe_key(&event.id, dry_run);
        if self.store.event_seen(&dedupe_key, now).await? {
            return self.audit(outcome.finish("skipped", "duplicate", None), started).await;
        }
        if let Some(caller) = &caller {
            let ids = self.self_identity.ids(self.arm.tokens(), self.arm.scope()).await?;
            if ids.is_own_write(caller) {
                self.mark_handled(&dedupe_key, now).await?;
                return self.audit(outcome.finish("skipped", "own-write", None), started).await;
            }
        }

        let ctx = CallContext::new(correlation.clone(), self.settings.time_budget);
        if dry_run {
            // Reads only: no lease, no revert intent, so a real instance sharing the store is
            // never held up or overtaken.
            let result = self
                .reconcile_inner(&resource_id, trigger, &ctx, caller, provided_body, None, started)
                .await?;
            self.mark_handled(&dedupe_key, now).await?;
            return Ok(result);
        }
        let _local = self.locks.lock(&resource_id).await;
        let mut lease = self.lease(&resource_id, &ctx).await?;
        let result = async {
            // Another instance may have handled this very event while we waited for the lease.
            if self.store.event_seen(&dedupe_key, OffsetDateTime::now_utc()).await? {
                return self.audit(outcome.finish("skipped", "duplicate", None), started).await;
            }
            let result = self
                .reconcile_inner(
                    &resource_id,
                    trigger,
                    &ctx,
                    caller,
                    provided_body,
                    Some(&mut lease),
                    started,
                )
                .await?;
            self.mark_handled(&dedupe_key, now).await?;
            Ok(result)
        }
        .await;
        self.release(&lease).await;
        result
    }

    /// Reconcile one resource outside the event path (HTTP, CLI, timer).
    pub async fn reconcile(
        &self,
        resource_id: &ResourceId,
        trigger: Trigger,
        correlation_id: &str,
        dry_run: bool,
    ) -> Result<Outcome, PipelineError> {
        self.reconcile_listed(resource_id, None, trigger, correlation_id, dry_run)
            .await
    }

    /// As [`Self::reconcile`], starting from the body a listing returned (a sweep): a compliant
    /// body is trusted, anything that may lead to a write is read live first. A dry run writes
    /// nothing to ARM, so it takes no lease.
    pub async fn reconcile_listed(
        &self,
        resource_id: &ResourceId,
        listed: Option<Value>,
        trigger: Trigger,
        correlation_id: &str,
        dry_run: bool,
    ) -> Result<Outcome, PipelineError> {
        let ctx = CallContext::new(correlation_id, self.settings.time_budget);
        let dry_run = dry_run || self.settings.dry_run;
        let started = std::time::Instant::now();
        if dry_run {
            return self
                .reconcile_inner(resource_id, trigger, &ctx, None, listed, None, started)
                .await;
        }
        let _local = self.locks.lock(resource_id).await;
        let mut lease = self.lease(resource_id, &ctx).await?;
        let result = self
            .reconcile_inner(resource_id, trigger, &ctx, None, listed, Some(&mut lease), started)
            .await;
        self.release(&lease).await;
        result
    }

    async fn mark_handled(&self, event_id: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        let ttl = time::Duration::seconds(self.config.settings.dedupe_ttl_secs as i64);
        self.store.mark_event(event_id, now + ttl).await
    }

    /// Decides, acts, records. With the resource's lease (`lease`), it may write: a revert intent
    /// left by an earlier attempt is resolved here, and cleared only once its outcome is recorded.
    /// Without it, it is a dry run: it reads, and records what it found as a dry run under ids of
    /// its own, but never loads, reuses or clears a real revert's intent, so a dry run during a
    /// real revert leaves that revert's crash recovery, audit record and alert to it.
    #[allow(clippy::too_many_arguments)]
    async fn reconcile_inner(
        &self,
        id: &ResourceId,
        trigger: Trigger,
        ctx: &CallContext,
        caller: Option<Caller>,
        provided_body: Option<Value>,
        lease: Option<&mut Lease>,
        started: std::time::Instant,
    ) -> Result<Outcome, PipelineError> {
        let writes = lease.is_some();
        let intent = match catalog::lookup(&id.resource_type()) {
            Some(_) if writes => self.store.revert_intent(id).await?,
            _ => None,
        };
        let report_only = !writes && matches!(trigger, Trigger::Sweep { .. });
        let mut outcome = self
            .decide_and_act(id, trigger, ctx, caller, provided_body, lease, intent.as_ref())
            .await?;
        // A report-only sweep is a person reading a report, not an incident for each finding.
        if report_only {
            outcome.alert = false;
        }
        let outcome = self.audit(outcome, started).await?;
        if writes && (intent.is_some() || outcome.action == "revert") && outcome.result != "revert-pending" {
            self.store.set_revert_intent(id, None).await?;
        }
        Ok(outcome)
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide_and_act(
        &self,
        id: &ResourceId,
        trigger: Trigger,
        ctx: &CallContext,
        caller: Option<Caller>,
        provided_body: Option<Value>,
        lease: Option<&mut Lease>,
        intent: Option<&RevertIntent>,
    ) -> Result<Outcome, PipelineError> {
        let dry_run = lease.is_none();
        let mut outcome = Outcome::new(trigger, &ctx.correlation_id, Some(id));
        outcome.caller = caller.as_ref().map(Caller::display);
        outcome.caller_ip = caller.and_then(|c| c.ip_address);
        outcome.dry_run = dry_run;
        let Some(entry) = catalog::lookup(&id.resource_type()) else {
            let detail = format!("{} is not in the catalog", id.resource_type());
            let mut finding = keyguard_report::Finding::new(
                id.as_str(),
                &id.resource_type(),
                keyguard_report::FindingVerdict::Unsupported,
            );
            finding.detail = Some(detail.clone());
            finding.checked_at = Some(OffsetDateTime::now_utc());
            outcome.finding = Some(finding);
            return Ok(outcome.finish("unsupported", "not-in-catalog", Some(detail)));
        };
        let now = OffsetDateTime::now_utc();
        // A revert started earlier and not recorded as finished: an operation ARM accepted is
        // followed, never written over; a crash between intent and result is settled by the fresh
        // read below (already compliant: it is recorded as that revert's result, alert included).
        let mut finishing: Option<String> = None;
        if let Some(intent) = intent {
            outcome.record_id = Some(intent.id.clone());
            match &intent.operation {
                Some(pending) => match self.arm.resume(pending, ctx).await {
                    Ok(()) => {
                        finishing =
                            Some("the revert's long-running operation completed; verified by a fresh read".into());
                    }
                    Err(ArmError::StillRunning(_)) => {
                        outcome.action = "revert".into();
                        let detail = "ARM is still applying the revert started earlier; the next event or the reconcile finishes it";
                        return Ok(outcome.finish("drift", "revert-pending", Some(detail.into())));
                    }
                    Err(ArmError::Rejected {
                        status, code, message, ..
                    }) => {
                        outcome.action = "revert".into();
                        outcome.alert = true;
                        let detail = format!("the revert's long-running operation failed: {status} {code}: {message}");
                        return Ok(outcome.finish("drift", "revert-failed", Some(detail)));
                    }
                    Err(other) => return Err(other.into()),
                },
                None => {
                    finishing = Some(format!(
                        "completes the revert {} started at {} ({}); verified by a fresh read",
                        intent.holder,
                        rfc3339(intent.started_at),
                        intent.writes.join(", then ")
                    ));
                }
            }
        }
        // An event's body is used only for types whose state lives in the resource itself.
        let provided_body = provided_body.filter(|_| entry.children.is_empty());
        let carried = provided_body.is_some();
        // Whether the document is what ARM answered keyguard: a read of ours, or a listing keyguard
        // made (a sweep). An event's carried body is anyone's word and never becomes a baseline.
        let mut from_arm = !carried || !matches!(outcome.trigger, Trigger::Event { .. });
        let (mut document, mut children) = match provided_body {
            Some(body) => (body, BTreeMap::new()),
            None => match self.read_view(id, entry, ctx).await? {
                Some(view) => view,
                None => return Ok(outcome.finish("gone", "resource-not-found", None)),
            },
        };
        let mut evaluation = evaluate_view(id, &view(&document, &children), &self.config, now);
        // A dry-run sweep reports what the listing showed; nothing is written, so no live read.
        let report_only = dry_run && matches!(outcome.trigger, Trigger::Sweep { .. });
        if carried && evaluation.verdict.is_drift() && !report_only {
            // An event's body may be stale (events arrive late and out of order) and lacks fields a
            // revert needs (identity): anything beyond "compliant" is decided on the live resource.
            (document, children) = match self.read_view(id, entry, ctx).await? {
                Some(view) => view,
                None => return Ok(outcome.finish("gone", "resource-not-found", None)),
            };
            from_arm = true;
            evaluation = evaluate_view(id, &view(&document, &children), &self.config, now);
            if !evaluation.verdict.is_drift() {
                outcome.detail = Some("the event's body showed drift; the live resource does not".into());
            }
        }
        outcome.finding = Some(keyguard_report::Finding::from_evaluation(&evaluation, Some(now)));
        outcome.profile = evaluation.profile.clone();
        outcome.requirement = evaluation.requirement.map(|r| r.as_str().to_string());
        outcome.tags = resource_tags(&document);
        let look = match outcome.trigger {
            Trigger::Event { .. } => Look::AfterWrite,
            Trigger::Manual | Trigger::Reconcile | Trigger::Sweep { .. } => Look::Routine,
        };
        outcome.safeguard_changes = self.watch_safeguards(id, &outcome.tags, look, dry_run, now).await?;
        outcome.before = Some(evaluation.observed.clone());
        let plan_ctx = self
            .plan_context(id, entry, &evaluation, &document, dry_run, now, ctx)
            .await?;
        let precondition = self
            .revert_precondition(entry, &evaluation, &plan_ctx, &document, ctx)
            .await?;
        let decided = plan_with(&evaluation, &plan_ctx, precondition);
        if let Some(baseline) = decided.record_baseline.as_ref().filter(|_| from_arm) {
            self.store
                .record_baseline(id, baseline, BaselineSource::Observed, None, now)
                .await?;
        }
        outcome.alert = decided.alert;
        evaluation.notes.extend(decided.opt_in_note());
        let verdict = verdict_name(&evaluation.verdict);
        outcome.drift = drift_text(&evaluation.verdict);
        if !evaluation.notes.is_empty() {
            let notes = evaluation.notes.join("; ");
            outcome.detail = Some(match outcome.detail.take() {
                Some(detail) => format!("{detail}; {notes}"),
                None => notes,
            });
        }

        let outcome = match decided.action {
            Action::Nothing => {
                let result = match &evaluation.verdict {
                    Verdict::Compliant => "compliant",
                    Verdict::Exempt { .. } => "exempt",
                    Verdict::Unsupported { .. } => "unsupported",
                    Verdict::Drift(_) => "recorded",
                };
                let detail = match &evaluation.verdict {
                    Verdict::Exempt { reason, expires, .. } => Some(match expires {
                        Some(e) => format!("{reason} (until {})", rfc3339(*e)),
                        None => reason.clone(),
                    }),
                    Verdict::Unsupported { reason } => Some(reason.clone()),
                    _ => outcome.detail.take(),
                };
                if let Some(detail) = finishing.filter(|_| matches!(evaluation.verdict, Verdict::Compliant)) {
                    outcome.action = "revert".into();
                    outcome.alert = true;
                    outcome.after = outcome.before.take();
                    return Ok(outcome.finish("drift", "reverted", Some(detail)));
                }
                if matches!(evaluation.verdict, Verdict::Compliant)
                    && let Some(warning) = self.expiry_warning(&evaluation.observed, ctx, now).await
                {
                    outcome.alert = true;
                    return Ok(outcome.finish(verdict, "key-expiring", Some(warning)));
                }
                outcome.finish(verdict, result, detail)
            }
            Action::NoRevert(reason) => {
                outcome.action = if decided.alert {
                    "alert-only".into()
                } else {
                    "record-only".into()
                };
                outcome.finish(verdict, no_revert_result(&reason), Some(reason.describe()))
            }
            Action::Revert { target, dry_run, .. } => match lease.filter(|_| !dry_run) {
                Some(lease) => {
                    outcome.action = "revert".into();
                    // Why it was judged so (an ignored exemption tag, ...) stays with how it ended.
                    let notes = outcome.detail.take();
                    let mut reverted = self
                        .revert(id, entry, ctx, lease, outcome, &target, &decided.writes, verdict, now)
                        .await?;
                    reverted.detail = match (notes, reverted.detail.take()) {
                        (Some(notes), Some(detail)) => Some(format!("{detail}; {notes}")),
                        (notes, detail) => detail.or(notes),
                    };
                    reverted
                }
                None => {
                    outcome.action = "dry-run-revert".into();
                    let writes: Vec<String> = decided.writes.iter().map(|w| write_text(id, w)).collect();
                    let detail = format!("would {} to reach {}", writes.join(", then "), target_text(&target));
                    outcome.dry_run = true;
                    outcome.finish(verdict, "would-revert", Some(detail))
                }
            },
        };
        Ok(outcome)
    }

    #[allow(clippy::too_many_arguments)]
    async fn plan_context(
        &self,
        id: &ResourceId,
        entry: &CatalogEntry,
        evaluation: &Evaluation,
        document: &Value,
        dry_run: bool,
        now: OffsetDateTime,
        call: &CallContext,
    ) -> Result<PlanContext, PipelineError> {
        // Mode and pinned key come from the profile the evaluation already chose.
        let mut ctx = PlanContext::new(evaluation, &self.config.settings);
        ctx.dry_run = dry_run;
        if evaluation.verdict.is_drift() {
            ctx.baseline = self.store.baseline(id).await?.map(|b| b.key);
            ctx.reverts_in_last_hour = self.store.reverts_since(id, now - time::Duration::hours(1)).await?;
        }
        if let Some(RevertTarget::Cmk(key)) = revert_target(evaluation, &ctx) {
            ctx.resource_has_identity_for = Some(entry.has_identity_for(document, &key));
            // A disk encryption set holds its own key binding, and a key held outside ARM (Search)
            // names no vault; vault keys are checked here.
            if key.encryption_set_id().is_none() && key.vault().is_some() {
                let max_age = if dry_run {
                    crate::keyvault::READ_ONLY_MAX_AGE
                } else {
                    Duration::ZERO
                };
                ctx.key_problems = match self.keyvault.key_facts_within(&key, call, max_age).await? {
                    Ok(facts) => key_problems(&facts, now),
                    Err(problem) => vec![problem],
                };
            }
        }
        Ok(ctx)
    }

    /// Checks the stated precondition of a conditionally reversible direction. Only what can be
    /// verified is: a managed disk may change keys when it is not attached to a running VM
    /// (`None` for anything unverifiable, e.g. incremental snapshots: then no revert, an alert).
    async fn revert_precondition(
        &self,
        entry: &CatalogEntry,
        evaluation: &Evaluation,
        plan_ctx: &PlanContext,
        document: &Value,
        call: &CallContext,
    ) -> Result<Option<bool>, PipelineError> {
        let Some(target) = revert_target(evaluation, plan_ctx) else {
            return Ok(None);
        };
        let direction = entry.direction_to(&target);
        if !matches!(direction, Direction::ReversibleIf(_)) {
            return Ok(None);
        }
        if !entry.resource_type.eq_ignore_ascii_case("Microsoft.Compute/disks")
            || !matches!(target, RevertTarget::Cmk(_))
        {
            return Ok(None);
        }
        let attached = document["properties"]["diskState"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("Attached"));
        let Some(vm) = document["managedBy"].as_str().filter(|_| attached) else {
            return Ok(Some(true));
        };
        let Ok(vm_id) = ResourceId::parse(vm) else {
            return Ok(None);
        };
        let Some(vm_doc) = self
            .arm
            .get_expanded(&vm_id, VM_API_VERSION, "instanceView", call)
            .await?
        else {
            return Ok(Some(true)); // the VM is gone: nothing runs on the disk
        };
        let statuses = vm_doc["properties"]["instanceView"]["statuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let running = statuses.iter().filter_map(|s| s["code"].as_str()).any(|code| {
            code.eq_ignore_ascii_case("PowerState/running") || code.eq_ignore_ascii_case("PowerState/starting")
        });
        let known = statuses
            .iter()
            .any(|s| s["code"].as_str().is_some_and(|c| c.starts_with("PowerState/")));
        Ok(known.then_some(!running))
    }

    /// A compliant CMK whose key expires soon is a warning for people, not a drift.
    async fn expiry_warning(&self, state: &EncryptionState, call: &CallContext, now: OffsetDateTime) -> Option<String> {
        let EncryptionState::Cmk(key) = state else { return None };
        // Only a key in a vault has facts to read (a disk encryption set hides its key).
        key.vault()?;
        match self
            .keyvault
            .key_facts_within(key, call, crate::keyvault::READ_ONLY_MAX_AGE)
            .await
        {
            Ok(Ok(facts)) => expiring_within(&facts, now, self.config.settings.expiry_warning_days).map(|at| {
                format!(
                    "the key {} expires on {}: rotate it before then",
                    key.key_name(),
                    rfc3339(at)
                )
            }),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn revert(
        &self,
        id: &ResourceId,
        entry: &CatalogEntry,
        ctx: &CallContext,
        lease: &mut Lease,
        mut outcome: Outcome,
        target: &RevertTarget,
        writes: &[RevertWrite],
        verdict: &str,
        now: OffsetDateTime,
    ) -> Result<Outcome, PipelineError> {
        // Counted before the write: a crash after the PATCH must not buy an extra revert.
        self.store.record_revert(id, now).await?;
        // The intent goes down before the first write; its id becomes the audit record's, so
        // whoever records the result (this call, or the next after a crash) records it once.
        let mut intent = RevertIntent {
            id: uuid::Uuid::now_v7().to_string(),
            resource_id: id.as_str().to_string(),
            correlation_id: ctx.correlation_id.clone(),
            event_id: outcome.event_id().map(str::to_string),
            holder: self.settings.instance.clone(),
            started_at: now,
            target: target_text(target),
            writes: writes.iter().map(|w| write_text(id, w)).collect(),
            caller: outcome.caller.clone(),
            operation: None,
        };
        self.store.set_revert_intent(id, Some(&intent)).await?;
        outcome.record_id = Some(intent.id.clone());
        tracing::info!(
            correlation_id = %ctx.correlation_id, resource_id = %id, target = %target_text(target),
            writes = writes.len(), "reverting encryption drift"
        );
        for write in writes {
            let write_id = write_target(id, write).map_err(|e| ArmError::InvalidResponse(e.to_string()))?;
            let method = match write.method {
                WriteMethod::Patch => Method::PATCH,
                WriteMethod::Put => Method::PUT,
            };
            self.confirm_lease(id, lease, ctx).await?;
            match self
                .arm
                .write(
                    method,
                    &write_id,
                    write.api_version,
                    &write.body,
                    entry.long_running,
                    ctx,
                )
                .await
            {
                Ok(_) => {}
                Err(ArmError::StillRunning(pending)) => {
                    intent.operation = Some(pending);
                    self.store.set_revert_intent(id, Some(&intent)).await?;
                    let detail = format!(
                        "ARM accepted {} and is still applying it; the next event or the reconcile finishes and verifies it",
                        write_text(id, write)
                    );
                    return Ok(outcome.finish(verdict, "revert-pending", Some(detail)));
                }
                Err(ArmError::Rejected {
                    status, code, message, ..
                }) => {
                    outcome.alert = true;
                    let detail = format!(
                        "ARM refused the revert ({}): {status} {code}: {message}",
                        write_text(id, write)
                    );
                    return Ok(outcome.finish(verdict, "revert-failed", Some(detail)));
                }
                Err(other) => return Err(other.into()),
            }
        }
        // Success is what ARM shows afterwards, not what the write answered.
        let Some((after, children)) = self.read_view(id, entry, ctx).await? else {
            return Ok(outcome.finish("gone", "resource-not-found", Some("deleted during revert".into())));
        };
        let after_eval = evaluate_view(id, &view(&after, &children), &self.config, OffsetDateTime::now_utc());
        outcome.after = Some(after_eval.observed.clone());
        if matches!(after_eval.verdict, Verdict::Compliant) {
            Ok(outcome.finish(verdict, "reverted", Some(format!("now {}", target_text(target)))))
        } else {
            outcome.alert = true;
            let detail = format!(
                "after the write the resource still shows {}",
                verdict_name(&after_eval.verdict)
            );
            Ok(outcome.finish(verdict, "revert-unverified", Some(detail)))
        }
    }

    /// The live view: the resource, and the child resources its key setting lives in (a child
    /// that does not exist is simply absent from the view).
    async fn read_view(
        &self,
        id: &ResourceId,
        entry: &CatalogEntry,
        ctx: &CallContext,
    ) -> Result<Option<(Value, BTreeMap<String, Value>)>, ArmError> {
        let Some(document) = self.arm.get(id, entry.api_version, ctx).await? else {
            return Ok(None);
        };
        let mut children = BTreeMap::new();
        for child in entry.children {
            let child_id = ResourceId::parse(&format!("{}/{}", id.as_str(), child.path))
                .map_err(|e| ArmError::InvalidResponse(format!("child {}: {e}", child.path)))?;
            if let Some(body) = self.arm.get(&child_id, child.api_version, ctx).await? {
                children.insert(child.path.to_ascii_lowercase(), body);
            }
        }
        Ok(Some((document, children)))
    }

    /// Every decision becomes one structured log record and, when it concerns a resource, one
    /// entry of the persisted audit trail; alerts go to the outbox. Both writes are keyed by the
    /// record id, so a retry after a crash cannot record or alert the same thing twice.
    async fn audit(&self, mut outcome: Outcome, started: std::time::Instant) -> Result<Outcome, PipelineError> {
        outcome.duration_ms = started.elapsed().as_millis() as u64;
        let record_id = outcome
            .record_id
            .get_or_insert_with(|| uuid::Uuid::now_v7().to_string())
            .clone();
        // A sweep's "still compliant" for each of thousands of resources is a finding, not news.
        if !outcome.is_auditable() && outcome.verdict == "compliant" {
            tracing::debug!(
                target: "keyguard::audit",
                correlation_id = %outcome.correlation_id,
                resource_id = outcome.resource_id.as_deref().unwrap_or(""),
                "compliant"
            );
        } else {
            let record = serde_json::to_string(&outcome).unwrap_or_default();
            tracing::info!(
                target: "keyguard::audit",
            correlation_id = %outcome.correlation_id,
            record_id = %record_id,
            resource_id = outcome.resource_id.as_deref().unwrap_or(""),
            verdict = %outcome.verdict,
            action = %outcome.action,
            result = %outcome.result,
            caller = outcome.caller.as_deref().unwrap_or(""),
            dry_run = outcome.dry_run,
                record = %record,
                "audit"
            );
        }
        if let Some(finding) = outcome.finding.as_mut() {
            finding.action = Some(outcome.action.clone());
            finding.result = Some(outcome.result.clone());
            finding.dry_run = outcome.dry_run;
            if finding.detail.is_none() {
                finding.detail = outcome.detail.clone();
            }
            self.store.put_finding(finding).await?;
        } else if outcome.verdict == "gone"
            && let Some(id) = outcome.resource_id.as_deref().and_then(|r| ResourceId::parse(r).ok())
        {
            self.store.remove_finding(&id).await?;
        }
        if let Some(resource) = outcome.resource_id.as_deref().filter(|_| outcome.is_auditable()) {
            let entry = AuditRecord {
                id: record_id.clone(),
                time: OffsetDateTime::now_utc(),
                outcome: outcome.clone(),
            };
            if !self.store.append_audit(resource, &record_id, &entry).await? {
                tracing::info!(record_id = %record_id, "audit record already written by an earlier attempt");
            }
        }
        if outcome.alert {
            tracing::warn!(
                target: "keyguard::alert",
                correlation_id = %outcome.correlation_id,
                resource_id = outcome.resource_id.as_deref().unwrap_or(""),
                verdict = %outcome.verdict,
                result = %outcome.result,
                detail = outcome.detail.as_deref().unwrap_or(""),
                "encryption drift alert"
            );
            if let Some(alerter) = &self.alerter {
                // Queued durably before this invocation answers; a failure here fails the invocation.
                alerter.raise(&outcome, &outcome.tags, &record_id).await?;
            }
        }
        if !outcome.safeguard_changes.is_empty() && !outcome.dry_run {
            let changes: Vec<String> = outcome
                .safeguard_changes
                .iter()
                .map(SafeguardChange::describe)
                .collect();
            tracing::warn!(
                target: "keyguard::alert",
                correlation_id = %outcome.correlation_id,
                resource_id = outcome.resource_id.as_deref().unwrap_or(""),
                caller = outcome.caller.as_deref().unwrap_or(""),
                changes = %changes.join("; "),
                "a write weakened a safeguard"
            );
            if let Some(alerter) = &self.alerter {
                alerter.raise_safeguard_changes(&outcome, &record_id).await?;
            }
        }
        Ok(outcome)
    }
}

/// The dedupe entry of an event. A dry run keeps its own, so a dry-run instance sharing the store
/// never makes a real one skip an event as already handled.
fn dedupe_key(event_id: &str, dry_run: bool) -> String {
    if dry_run {
        format!("dry-run/{event_id}")
    } else {
        event_id.to_string()
    }
}

/// For the power state of the VM a disk is attached to.
const VM_API_VERSION: &str = "2024-07-01";

fn view<'a>(document: &'a Value, children: &BTreeMap<String, Value>) -> ResourceView<'a> {
    ResourceView {
        resource: document,
        children: children.clone(),
    }
}

fn write_target(id: &ResourceId, write: &RevertWrite) -> Result<ResourceId, keyguard_core::ResourceIdError> {
    match &write.relative_path {
        Some(path) => ResourceId::parse(&format!("{}/{}", id.as_str(), path.trim_start_matches('/'))),
        None => Ok(id.clone()),
    }
}

fn write_text(id: &ResourceId, write: &RevertWrite) -> String {
    let method = match write.method {
        WriteMethod::Patch => "PATCH",
        WriteMethod::Put => "PUT",
    };
    match &write.relative_path {
        Some(path) => format!("{method} {}/{path} ({})", id.name(), write.api_version),
        None => format!("{method} {} ({})", id.name(), write.api_version),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn verdict_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Compliant => "compliant",
        Verdict::Drift(_) => "drift",
        Verdict::Exempt { .. } => "exempt",
        Verdict::Unsupported { .. } => "unsupported",
    }
}

fn drift_text(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Drift(reason) => Some(format!("{reason:?}")),
        _ => None,
    }
}

fn target_text(target: &RevertTarget) -> String {
    match target {
        RevertTarget::Mmk => "Microsoft-managed keys".to_string(),
        RevertTarget::Cmk(key) => format!("customer-managed key {key}"),
    }
}

fn no_revert_result(reason: &NoRevertReason) -> &'static str {
    match reason {
        NoRevertReason::ModeAudit => "recorded",
        NoRevertReason::ModeAlert => "alerted",
        NoRevertReason::RateLimited { .. } => "rate-limited",
        NoRevertReason::NoRevertTarget
        | NoRevertReason::NotReversible { .. }
        | NoRevertReason::NeedsOptIn { .. }
        | NoRevertReason::MissingIdentity
        | NoRevertReason::KeyUnusable { .. }
        | NoRevertReason::NotApplicable => "manual-action-needed",
    }
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

mod lease;
mod safeguard_watch;
#[cfg(test)]
mod tests;
