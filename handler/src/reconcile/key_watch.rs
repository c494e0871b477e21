//! The key-swap guard's usability watch: after a sweep, every distinct customer-managed key the
//! swept resources use is read from Key Vault once. A key that is missing, disabled, expired or
//! no longer readable by keyguard (access revoked) is `key-unusable`, critical: every resource
//! on it is about to lose access to its data, so one alert lists them all. The sweep's report
//! also lists every vault in use with its resource count, flagging vaults outside the estate.

use std::collections::BTreeMap;
use std::time::Instant;

use keyguard_core::ResourceId;
use keyguard_core::catalog::{EncryptionState, KeyRef};
use keyguard_core::keyvault::{KeyProblem, key_problems};
use serde::Serialize;
use time::OffsetDateTime;

use super::outcome::{ActionKind, Decision, ResultKind, Trigger, VerdictKind};
use super::{Context, record};
use crate::arm::CallContext;
use crate::keyvault::Patience;

/// One swept resource's customer-managed key.
#[derive(Clone, Debug)]
pub struct KeySeen {
    pub resource: ResourceId,
    pub key: KeyRef,
    /// The sweep judged the key's vault outside the estate.
    pub outside_estate: bool,
}

impl KeySeen {
    /// The key a decision saw on its resource, if it was a customer-managed one.
    pub fn of(decision: &Decision) -> Option<KeySeen> {
        let Some(EncryptionState::Cmk(key)) = &decision.outcome.before else {
            return None;
        };
        Some(KeySeen {
            resource: ResourceId::parse(decision.outcome.resource_id.as_deref()?).ok()?,
            key: key.clone(),
            outside_estate: decision.outcome.escalated,
        })
    }
}

/// What the sweep found about the keys and vaults in use.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInventory {
    pub vaults: Vec<VaultInUse>,
    pub unusable_keys: Vec<UnusableKey>,
    /// Keys that could not be read this time (a vault that did not answer): not judged.
    pub unchecked_keys: usize,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultInUse {
    pub vault: String,
    pub resources: usize,
    pub keys: usize,
    pub outside_estate: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnusableKey {
    pub key: String,
    pub problems: Vec<String>,
    pub resources: Vec<String>,
}

/// Whether a precondition failure means the key cannot be used for encryption at all (a vault
/// without purge protection is a risk, not an outage).
fn makes_key_unusable(problem: &KeyProblem) -> bool {
    match problem {
        KeyProblem::Missing | KeyProblem::Disabled | KeyProblem::Expired { .. } | KeyProblem::Unreadable { .. } => true,
        KeyProblem::NotRecoverable { .. } => false,
    }
}

/// Reads each distinct key once and, unless `dry_run`, alerts once per unusable key (recorded
/// against its first dependent resource, the alert listing every one).
pub async fn watch_keys(
    ctx: &Context,
    seen: Vec<KeySeen>,
    trigger: &Trigger,
    correlation_id: &str,
    dry_run: bool,
    call: &CallContext,
) -> KeyInventory {
    let mut inventory = KeyInventory::default();
    let mut vaults: BTreeMap<String, (usize, BTreeMap<String, ()>, bool)> = BTreeMap::new();
    let mut keys: BTreeMap<String, (KeyRef, Vec<ResourceId>)> = BTreeMap::new();
    for s in seen {
        let Some(host) = s.key.vault_host().map(str::to_string) else {
            continue; // held by a disk encryption set, or not visible in ARM: nothing to read
        };
        let id = s.key.key_id();
        let vault = vaults.entry(host).or_default();
        vault.0 += 1;
        vault.1.insert(id.clone(), ());
        vault.2 |= s.outside_estate;
        keys.entry(id)
            .or_insert_with(|| (s.key.clone(), Vec::new()))
            .1
            .push(s.resource);
    }
    inventory.vaults = vaults
        .into_iter()
        .map(|(vault, (resources, keys, outside_estate))| VaultInUse {
            vault,
            resources,
            keys: keys.len(),
            outside_estate,
        })
        .collect();
    let now = OffsetDateTime::now_utc();
    for (ordinal, (id, (key, resources))) in keys.into_iter().enumerate() {
        let problems: Vec<KeyProblem> = match ctx.keyvault.key_facts_within(&key, call, Patience::ReadOnly).await {
            Ok(Ok(facts)) => key_problems(&facts, now),
            Ok(Err(problem)) => vec![problem],
            Err(e) => {
                tracing::warn!(correlation_id, key = %id, error = %e, "key not read by the usability watch");
                inventory.unchecked_keys += 1;
                continue;
            }
        };
        let problems: Vec<String> = problems
            .iter()
            .filter(|p| makes_key_unusable(p))
            .map(KeyProblem::describe)
            .collect();
        if problems.is_empty() {
            continue;
        }
        let unusable = UnusableKey {
            key: key.to_string(),
            problems,
            resources: resources.iter().map(|r| r.as_str().to_string()).collect(),
        };
        if !dry_run && let Err(e) = raise(ctx, &key, &resources, &unusable, trigger, correlation_id, ordinal).await {
            tracing::error!(correlation_id, key = %id, error = %e, "the key-unusable alert could not be recorded");
        }
        inventory.unusable_keys.push(unusable);
    }
    inventory
}

/// One audit record and one alert for the key, under an id derived from the sweep and the key's
/// place in its sorted list (recording it again queues nothing twice).
async fn raise(
    ctx: &Context,
    key: &KeyRef,
    resources: &[ResourceId],
    unusable: &UnusableKey,
    trigger: &Trigger,
    correlation_id: &str,
    ordinal: usize,
) -> Result<(), super::ReconcileError> {
    let Some(first) = resources.first() else {
        return Ok(());
    };
    let mut decision = Decision::new(trigger.clone(), correlation_id, Some(first));
    decision.outcome.before = Some(EncryptionState::Cmk(key.clone()));
    decision.outcome.alert = true;
    decision.outcome.action = ActionKind::AlertOnly;
    let detail = format!(
        "the customer-managed key {key} cannot be used ({}); {} resource(s) depend on it and are about to lose access to their data: {}",
        unusable.problems.join("; "),
        resources.len(),
        unusable.resources.join(", ")
    );
    decision.record_id = Some(format!("{correlation_id}.key-unusable.{ordinal}"));
    let decision = decision.finish(VerdictKind::Compliant, ResultKind::KeyUnusable, Some(detail));
    tracing::error!(target: "keyguard::alert", correlation_id, key = %key, resources = resources.len(), "customer-managed key unusable");
    record::record(ctx, decision, Instant::now()).await?;
    Ok(())
}
