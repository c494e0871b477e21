//! Reads what a decision needs: the live resource and the children its key setting lives in,
//! the state the store remembers (baseline, recent reverts), the revert key's facts in Key Vault
//! and, for a disk, whether the VM it is attached to runs. Reads only; nothing here writes to ARM.

use std::collections::BTreeMap;

use keyguard_core::ResourceId;
use keyguard_core::catalog::{CatalogEntry, Direction, EncryptionState, KeyRef, ResourceView, RevertTarget};
use keyguard_core::estate::{VaultStanding, apply_standing, is_trusted, vault_to_check};
use keyguard_core::evaluate::{Evaluation, evaluate_view};
use keyguard_core::keyvault::{expiring_within, key_problems};
use keyguard_core::plan::{PlanContext, revert_target};
use keyguard_core::rfc3339;
use serde_json::Value;
use time::OffsetDateTime;

use super::{Context, ReconcileError};
use crate::arm::{ArmError, CallContext};
use crate::keyvault::Patience;

/// The resource document and the child documents its key setting lives in.
pub(super) struct View {
    pub document: Value,
    pub children: BTreeMap<String, Value>,
}

impl View {
    pub fn evaluate(&self, ctx: &Context, id: &ResourceId, now: OffsetDateTime) -> Evaluation {
        let view = ResourceView {
            resource: &self.document,
            children: self.children.clone(),
        };
        evaluate_view(id, &view, &ctx.config, now)
    }
}

/// What the resource was found to be, and on whose word.
pub(super) struct Observed {
    pub view: View,
    pub evaluation: Evaluation,
    /// Whether the document is what ARM answered keyguard: a read of ours, or a listing keyguard
    /// made (a sweep). An event's carried body is anyone's word and never becomes a baseline.
    pub from_arm: bool,
    /// Set when a carried body showed drift the live resource does not.
    pub note: Option<String>,
}

/// Observes the resource, from a carried body where one may be trusted. `None`: it is gone.
pub(super) async fn observe(
    ctx: &Context,
    id: &ResourceId,
    entry: &CatalogEntry,
    carried: Option<(Value, bool)>,
    report_only: bool,
    call: &CallContext,
) -> Result<Option<Observed>, ReconcileError> {
    let now = OffsetDateTime::now_utc();
    // A body is used only for types whose state lives in the resource itself.
    let carried = carried.filter(|_| entry.children.is_empty());
    let was_carried = carried.is_some();
    let (view, from_arm) = match carried {
        Some((document, from_arm)) => (
            View {
                document,
                children: BTreeMap::new(),
            },
            from_arm,
        ),
        None => match read_view(ctx, id, entry, call).await? {
            Some(view) => (view, true),
            None => return Ok(None),
        },
    };
    let evaluation = assess(ctx, id, &view, call, now).await;
    // A dry-run sweep reports what the listing showed; nothing is written, so no live read.
    if !was_carried || !evaluation.verdict.is_drift() || report_only {
        return Ok(Some(Observed {
            view,
            evaluation,
            from_arm,
            note: None,
        }));
    }
    // A carried body may be stale (events arrive late and out of order) and lacks fields a
    // revert needs (identity): anything beyond "compliant" is decided on the live resource.
    let Some(live) = read_view(ctx, id, entry, call).await? else {
        return Ok(None);
    };
    let evaluation = assess(ctx, id, &live, call, now).await;
    let note = (!evaluation.verdict.is_drift())
        .then(|| "the event's body showed drift; the live resource does not".to_string());
    Ok(Some(Observed {
        view: live,
        evaluation,
        from_arm: true,
        note,
    }))
}

/// The evaluation, with the key-swap guard's estate check for a compliant key whose vault no
/// allow-list decides. A lookup that fails changes no verdict and says so in the notes.
async fn assess(ctx: &Context, id: &ResourceId, view: &View, call: &CallContext, now: OffsetDateTime) -> Evaluation {
    let mut evaluation = view.evaluate(ctx, id, now);
    let Some(host) = vault_to_check(&evaluation, &ctx.config.settings).map(str::to_string) else {
        return evaluation;
    };
    match ctx.estate.standing(&ctx.arm, &host, id.subscription(), call).await {
        Ok(standing) => apply_standing(&mut evaluation, &standing),
        Err(e) => {
            tracing::warn!(correlation_id = %call.correlation_id, vault = %host, error = %e, "the vault estate check could not run");
            evaluation.notes.push(format!(
                "whether vault {host} is in the estate could not be checked ({e})"
            ));
        }
    }
    evaluation
}

/// Whether `key`'s vault is outside the estate, for a key about to become a revert target
/// under a profile without `allowed_vaults` (a known-good key recorded before the guard, or
/// one an attacker managed to get recorded). `None`: not judged.
async fn outside_estate(ctx: &Context, id: &ResourceId, key: &KeyRef, call: &CallContext) -> Option<String> {
    let settings = &ctx.config.settings;
    let host = key
        .vault_host()
        .filter(|h| settings.estate_check && !is_trusted(settings, h))?;
    match ctx.estate.standing(&ctx.arm, host, id.subscription(), call).await {
        Ok(VaultStanding::Outside(miss)) => Some(format!(
            "the known-good key {key} is not used as the revert target: its vault {host} is outside the estate ({})",
            miss.describe()
        )),
        Ok(VaultStanding::InEstate { .. }) | Err(_) => None,
    }
}

/// The live view: the resource, and the child resources its key setting lives in (a child
/// that does not exist is simply absent from the view). `None`: the resource is gone.
pub(super) async fn read_view(
    ctx: &Context,
    id: &ResourceId,
    entry: &CatalogEntry,
    call: &CallContext,
) -> Result<Option<View>, ArmError> {
    let Some(document) = ctx.arm.get(id, entry.api_version, call).await? else {
        return Ok(None);
    };
    let mut children = BTreeMap::new();
    for child in entry.children {
        let child_id = ResourceId::parse(&format!("{}/{}", id.as_str(), child.path))
            .map_err(|e| ArmError::InvalidResponse(format!("child {}: {e}", child.path)))?;
        if let Some(body) = ctx.arm.get(&child_id, child.api_version, call).await? {
            children.insert(child.path.to_ascii_lowercase(), body);
        }
    }
    Ok(Some(View { document, children }))
}

/// The facts the plan needs beyond the evaluation: the profile's mode and pinned key, and for
/// drift the remembered baseline, recent reverts, the target key's usability and whether the
/// resource has an identity that may use it.
pub(super) async fn plan_context(
    ctx: &Context,
    id: &ResourceId,
    entry: &CatalogEntry,
    observed: &Observed,
    dry_run: bool,
    now: OffsetDateTime,
    call: &CallContext,
) -> Result<PlanContext, ReconcileError> {
    let evaluation = &observed.evaluation;
    // Mode and pinned key come from the profile the evaluation already chose.
    let mut plan = PlanContext::new(evaluation, &ctx.config.settings);
    plan.dry_run = dry_run;
    if evaluation.verdict.is_drift() {
        plan.baseline = ctx.store.baseline(id).await?.map(|b| b.key);
        if let Some(baseline) = plan.baseline.as_ref().filter(|_| evaluation.allowed_vaults.is_empty())
            && let Some(reason) = outside_estate(ctx, id, baseline, call).await
        {
            tracing::warn!(target: "keyguard::security", correlation_id = %call.correlation_id, resource_id = %id, "{reason}");
            plan.baseline = None;
        }
        plan.reverts_in_last_hour = ctx.store.reverts_since(id, now - time::Duration::hours(1)).await?;
    }
    if let Some(RevertTarget::Cmk(key)) = revert_target(evaluation, &plan) {
        plan.resource_has_identity_for = Some(entry.has_identity_for(&observed.view.document, &key));
        // A disk encryption set holds its own key binding, and a key held outside ARM (Search)
        // names no vault; vault keys are checked here.
        if key.encryption_set_id().is_none() && key.vault().is_some() {
            let patience = if dry_run { Patience::ReadOnly } else { Patience::Revert };
            plan.key_problems = match ctx.keyvault.key_facts_within(&key, call, patience).await? {
                Ok(facts) => key_problems(&facts, now),
                Err(problem) => vec![problem],
            };
        }
    }
    Ok(plan)
}

/// Checks the stated precondition of a conditionally reversible direction. Only what can be
/// verified is: a managed disk may change keys when it is not attached to a running VM (`None`
/// for anything unverifiable, e.g. incremental snapshots: then no revert, an alert).
pub(super) async fn revert_precondition(
    ctx: &Context,
    entry: &CatalogEntry,
    observed: &Observed,
    plan: &PlanContext,
    call: &CallContext,
) -> Result<Option<bool>, ReconcileError> {
    let Some(target) = revert_target(&observed.evaluation, plan) else {
        return Ok(None);
    };
    if !matches!(entry.direction_to(&target), Direction::ReversibleIf(_))
        || !entry.resource_type.eq_ignore_ascii_case("Microsoft.Compute/disks")
        || !matches!(target, RevertTarget::Cmk(_))
    {
        return Ok(None);
    }
    let document = &observed.view.document;
    let attached = document["properties"]["diskState"]
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("Attached"));
    let Some(vm) = document["managedBy"].as_str().filter(|_| attached) else {
        return Ok(Some(true));
    };
    let Ok(vm_id) = ResourceId::parse(vm) else {
        return Ok(None);
    };
    let Some(vm_doc) = ctx
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

/// For the power state of the VM a disk is attached to.
const VM_API_VERSION: &str = "2024-07-01";

/// A compliant CMK whose key expires soon is a warning for people, not a drift.
pub(super) async fn expiry_warning(
    ctx: &Context,
    state: &EncryptionState,
    call: &CallContext,
    now: OffsetDateTime,
) -> Option<String> {
    let EncryptionState::Cmk(key) = state else { return None };
    // Only a key in a vault has facts to read (a disk encryption set hides its key).
    key.vault()?;
    // Advisory: a recent answer, or one quick attempt; a vault that could not be reached a
    // moment ago is not waited for on every event (a firewalled vault is common).
    match ctx.keyvault.key_facts_within(key, call, Patience::Advisory).await {
        Ok(Ok(facts)) => expiring_within(&facts, now, ctx.config.settings.expiry_warning_days).map(|at| {
            format!(
                "the key {} expires on {}: rotate it before then",
                key.key_name(),
                rfc3339(at)
            )
        }),
        Ok(Err(_)) | Err(_) => None,
    }
}
