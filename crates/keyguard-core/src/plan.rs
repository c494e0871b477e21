//! From a verdict to what we do about it. Pure: the caller gathers the facts that need I/O
//! (last known-good key, recent revert count, whether the resource has the identity a CMK needs)
//! into a [`PlanContext`] first.
//!
//! Writing to someone's resource is the riskiest thing keyguard does, so a revert is the end of
//! a chain of checks, each of which falls back to "tell a human" rather than "try anyway".

use serde::Serialize;

use crate::catalog::EncryptionState;
use crate::catalog::{
    self, CatalogEntry, Direction, KeyRef, KeyRefLayout, RevertPermission, RevertTarget, RevertWrite,
};
use crate::config::{Mode, Settings, vault_allowed};
use crate::evaluate::{DriftReason, Evaluation, Verdict};
use crate::keyvault::KeyProblem;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanContext {
    pub mode: Mode,
    pub dry_run: bool,
    /// Last known-good CMK key, recorded when the resource was last seen compliant.
    pub baseline: Option<KeyRef>,
    pub pinned_key: Option<KeyRef>,
    pub reverts_in_last_hour: u32,
    pub max_reverts_per_hour: u32,
    /// Whether the resource has the identity the chosen CMK target needs (computed by the caller
    /// with `CatalogEntry::has_identity_for`); `None` when not applicable (e.g. reverting to MMK).
    pub resource_has_identity_for: Option<bool>,
    /// Key Vault preconditions failed for the chosen CMK target (computed by the caller from
    /// `keyvault::key_problems`); empty when they hold or were not applicable.
    pub key_problems: Vec<KeyProblem>,
    /// The profile accepts one-way and disruptive switches (`allow_irreversible = true`).
    pub allow_irreversible: bool,
}

impl PlanContext {
    /// Context from an evaluation and the settings; the caller fills in the I/O-derived facts
    /// (`baseline`, `reverts_in_last_hour`, `resource_has_identity_for`). A resource without a
    /// profile gets audit mode: nothing to enforce.
    pub fn new(eval: &Evaluation, settings: &Settings) -> PlanContext {
        PlanContext {
            mode: eval.mode.unwrap_or(Mode::Audit),
            dry_run: settings.dry_run,
            baseline: None,
            pinned_key: eval.pinned_key.clone(),
            reverts_in_last_hour: 0,
            max_reverts_per_hour: settings.max_reverts_per_hour,
            resource_has_identity_for: None,
            key_problems: Vec::new(),
            allow_irreversible: eval.allow_irreversible,
        }
    }
}

/// Why a drift was not reverted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum NoRevertReason {
    ModeAudit,
    ModeAlert,
    /// No pinned key and no usable last known-good key, or a key source we cannot interpret
    /// (never written over): a human has to act.
    NoRevertTarget,
    /// The catalog says this switch cannot (or must not) be made on an existing resource.
    NotReversible {
        direction: Direction,
    },
    /// The switch cannot be undone on an existing resource, or disrupts the service, and the
    /// profile did not opt in with `allow_irreversible = true`.
    NeedsOptIn {
        direction: Direction,
    },
    #[serde(rename_all = "camelCase")]
    RateLimited {
        reverts_in_last_hour: u32,
        limit: u32,
    },
    /// The resource lacks the identity the CMK needs; a revert would fail or lock the data.
    MissingIdentity,
    /// The target key fails a Key Vault precondition (missing, disabled, expired, purgeable).
    KeyUnusable {
        problems: Vec<KeyProblem>,
    },
    /// The resource type has no catalog entry (should not happen for a drift verdict).
    NotApplicable,
}

impl NoRevertReason {
    /// One sentence for alerts.
    pub fn describe(&self) -> String {
        match self {
            NoRevertReason::ModeAudit => "profile is in audit mode".to_string(),
            NoRevertReason::ModeAlert => "profile is in alert mode; no automatic revert".to_string(),
            NoRevertReason::NoRevertTarget => {
                "no revert target (no pinned key, no usable last known-good key, or a key source we do not understand): manual action needed".to_string()
            }
            NoRevertReason::NotReversible {
                direction: Direction::ReversibleIf(precondition),
            } => format!("reverting is safe only if {precondition}; that was not confirmed: check and act manually"),
            NoRevertReason::NeedsOptIn { direction } => format!(
                "this switch is {}: keyguard makes it only when the profile sets allow_irreversible = true; act manually",
                direction.label()
            ),
            NoRevertReason::NotReversible { direction } => format!(
                "this switch is not safe to automate for this resource type ({})",
                direction.label()
            ),
            NoRevertReason::RateLimited {
                reverts_in_last_hour,
                limit,
            } => format!(
                "already reverted {reverts_in_last_hour} times in the last hour (limit {limit}); something keeps changing it"
            ),
            NoRevertReason::MissingIdentity => {
                "the resource has no identity that can use the key: manual action needed".to_string()
            }
            NoRevertReason::KeyUnusable { problems } => format!(
                "not reverting to the key: {}; manual action needed",
                problems.iter().map(KeyProblem::describe).collect::<Vec<_>>().join(", ")
            ),
            NoRevertReason::NotApplicable => "resource type is not supported".to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    Nothing,
    #[serde(rename_all = "camelCase")]
    Revert {
        target: RevertTarget,
        /// Minimal body of the last write. For a storage-style PATCH this is the whole revert;
        /// for types that write child resources (SQL protector, TDE) only [`Plan::writes`] says
        /// where each body goes, and that list is what must be sent.
        body: serde_json::Value,
        api_version: &'static str,
        /// Planned but not to be sent.
        dry_run: bool,
    },
    NoRevert(NoRevertReason),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub action: Action,
    /// Whether people must be told (drift in alert/enforce mode, and every revert).
    pub alert: bool,
    /// A CMK key seen on a compliant resource: the revert target if the key is later removed.
    pub record_baseline: Option<KeyRef>,
    /// For a revert, every write in order (method, child path, body, api-version); empty otherwise.
    pub writes: Vec<RevertWrite>,
    /// For a revert, which permission applied: `AllowedByOptIn` when only the profile's
    /// `allow_irreversible = true` made it possible (the audit record says so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<RevertPermission>,
}

impl Plan {
    /// A sentence for the audit record when the revert rests on the profile's opt-in.
    pub fn opt_in_note(&self) -> Option<String> {
        (self.permission == Some(RevertPermission::AllowedByOptIn)).then(|| {
            "reverted only because the profile sets allow_irreversible = true (this switch is one-way or disruptive)"
                .to_string()
        })
    }
}

/// The key (or MMK) a drift should be reverted to: MMK when MMK is required; otherwise the pinned
/// key, else the last known-good key if its vault is still allowed; otherwise none.
pub fn revert_target(eval: &Evaluation, ctx: &PlanContext) -> Option<RevertTarget> {
    let Verdict::Drift(reason) = &eval.verdict else {
        return None;
    };
    match reason {
        // For on/off types (TDE) "MMK" is "service encryption on again".
        DriftReason::ExpectedMmkFoundCmk | DriftReason::NotEncrypted => Some(RevertTarget::Mmk),
        // A type whose key lives outside ARM (Search: per index) is switched back by its key
        // source alone; there is no key to choose.
        DriftReason::ExpectedCmkFoundMmk
            if catalog::lookup(&eval.resource_type).is_some_and(|e| matches!(e.key_ref, KeyRefLayout::None)) =>
        {
            Some(RevertTarget::Cmk(KeyRef::not_visible()))
        }
        DriftReason::ExpectedCmkFoundMmk | DriftReason::UnapprovedVault { .. } => ctx
            .pinned_key
            .iter()
            .chain(ctx.baseline.iter())
            // A disk encryption set hides its vault (the set holds the binding), so the vault
            // allow-list cannot judge it; evaluate() treats such keys the same way.
            .find(|k| k.encryption_set_id().is_some() || vault_allowed(&eval.allowed_vaults, k))
            .cloned()
            .map(RevertTarget::Cmk),
        // Back to the known-good key, never to one in the vault found outside the estate.
        DriftReason::VaultOutsideEstate { vault, .. } => ctx
            .pinned_key
            .iter()
            .chain(ctx.baseline.iter())
            .find(|k| crate::estate::differs_in_vault(k, vault))
            .cloned()
            .map(RevertTarget::Cmk),
        // Never read and never written back: the reference may be aimed at keyguard itself.
        DriftReason::UnknownKeySource { .. } | DriftReason::KeyOutsideKeyVault { .. } => None,
    }
}

/// Decide, treating every conditional revert's precondition as unchecked (so never reverting it).
pub fn plan(eval: &Evaluation, ctx: &PlanContext) -> Plan {
    plan_with(eval, ctx, None)
}

/// Decide, with what the caller found out about the entry's stated precondition for this
/// direction (a disk not attached to a running VM): `Some(true)` allows a `ReversibleIf` revert,
/// `None` (not checked) and `Some(false)` alert with the precondition instead. Kept out of
/// [`PlanContext`] so callers that build it field by field keep compiling.
pub fn plan_with(eval: &Evaluation, ctx: &PlanContext, precondition_holds: Option<bool>) -> Plan {
    plan_with_entry(eval, ctx, catalog::lookup(&eval.resource_type), precondition_holds)
}

/// `plan_with` with the catalog entry passed in, so synthetic entries can be tested.
pub(crate) fn plan_with_entry(
    eval: &Evaluation,
    ctx: &PlanContext,
    entry: Option<&CatalogEntry>,
    precondition_holds: Option<bool>,
) -> Plan {
    let nothing = |record_baseline| Plan {
        action: Action::Nothing,
        alert: false,
        record_baseline,
        writes: Vec::new(),
        permission: None,
    };
    let reason = match &eval.verdict {
        Verdict::Compliant => {
            return nothing(match &eval.observed {
                EncryptionState::Cmk(k) => Some(k.clone()),
                _ => None,
            });
        }
        Verdict::Exempt { .. } | Verdict::Unsupported { .. } => return nothing(None),
        Verdict::Drift(reason) => reason,
    };
    let no_revert = |why: NoRevertReason, alert: bool| Plan {
        action: Action::NoRevert(why),
        alert,
        record_baseline: None,
        writes: Vec::new(),
        permission: None,
    };
    match ctx.mode {
        Mode::Audit => return no_revert(NoRevertReason::ModeAudit, false),
        Mode::Alert => return no_revert(NoRevertReason::ModeAlert, true),
        Mode::Enforce => {}
    }
    // Never write over a state we do not understand, whatever the catalog would allow.
    if matches!(
        reason,
        DriftReason::UnknownKeySource { .. } | DriftReason::KeyOutsideKeyVault { .. }
    ) {
        return no_revert(NoRevertReason::NoRevertTarget, true);
    }
    let Some(entry) = entry else {
        return no_revert(NoRevertReason::NotApplicable, true);
    };
    let direction = match reason {
        DriftReason::ExpectedMmkFoundCmk | DriftReason::NotEncrypted => entry.reversibility.to_mmk,
        _ => entry.reversibility.to_cmk,
    };
    let permission = direction.permission(precondition_holds, ctx.allow_irreversible);
    match permission {
        RevertPermission::Allowed | RevertPermission::AllowedByOptIn => {}
        RevertPermission::NeedsOptIn => return no_revert(NoRevertReason::NeedsOptIn { direction }, true),
        RevertPermission::PreconditionUnconfirmed | RevertPermission::Impossible => {
            return no_revert(NoRevertReason::NotReversible { direction }, true);
        }
    }
    let Some(target) = revert_target(eval, ctx) else {
        return no_revert(NoRevertReason::NoRevertTarget, true);
    };
    if ctx.reverts_in_last_hour >= ctx.max_reverts_per_hour {
        return no_revert(
            NoRevertReason::RateLimited {
                reverts_in_last_hour: ctx.reverts_in_last_hour,
                limit: ctx.max_reverts_per_hour,
            },
            true,
        );
    }
    if matches!(target, RevertTarget::Cmk(_)) && ctx.resource_has_identity_for == Some(false) {
        return no_revert(NoRevertReason::MissingIdentity, true);
    }
    if matches!(target, RevertTarget::Cmk(_)) && !ctx.key_problems.is_empty() {
        return no_revert(
            NoRevertReason::KeyUnusable {
                problems: ctx.key_problems.clone(),
            },
            true,
        );
    }
    // The target lacks what this service's write needs (SQL: a versioned key; disks: a DES).
    let writes = entry.revert_writes(&target);
    let Some(last) = writes.last() else {
        return no_revert(NoRevertReason::NoRevertTarget, true);
    };
    Plan {
        action: Action::Revert {
            body: last.body.clone(),
            target,
            api_version: last.api_version,
            dry_run: ctx.dry_run,
        },
        alert: true,
        record_baseline: None,
        writes,
        permission: Some(permission),
    }
}

#[cfg(test)]
#[path = "plan_opt_in_tests.rs"]
mod opt_in_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::catalog::{KeyRefLayout, KeySource, KeySourceKind, Reversibility, WhenAbsent, WriteMethod, WriteShape};
    use crate::config::{Config, ExemptionSource, Requirement};
    use crate::evaluate::evaluate;
    use crate::resource_id::ResourceId;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use time::OffsetDateTime;
    use time::macros::datetime;

    const ST: &str = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st";
    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
    const APPROVED: &str = "https://kv-approved.vault.azure.net";
    const ROGUE: &str = "https://kv-rogue.vault.azure.net";

    fn key(vault: &str, name: &str) -> KeyRef {
        KeyRef::new(vault, name, None, None).unwrap()
    }

    // ---------------------------------------------------------------------------------------
    // Exhaustive table: require x observed x mode x exemption x dry_run.

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Obs {
        Mmk,
        CmkApproved,
        CmkRogue,
        Unknown,
    }
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Ex {
        None,
        Active,
        Expired,
    }

    fn body(obs: Obs) -> Value {
        let enc = match obs {
            Obs::Mmk => json!({"keySource": "Microsoft.Storage"}),
            Obs::CmkApproved => {
                json!({"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyvaulturi": APPROVED, "keyname": "current", "keyversion": ""}})
            }
            Obs::CmkRogue => {
                json!({"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyvaulturi": ROGUE, "keyname": "theirs", "keyversion": ""}})
            }
            Obs::Unknown => json!({"keySource": "Microsoft.Something"}),
        };
        json!({"id": ST, "identity": {"type": "SystemAssigned"}, "properties": {"encryption": enc}})
    }

    fn config_for(require: &str, mode: &str, ex: Ex) -> Config {
        let pinned = if require == "cmk" {
            format!("pinned_key = {{ vault_uri = \"{APPROVED}\", key_name = \"pinned\" }}\n")
        } else {
            String::new()
        };
        let exemption = match ex {
            Ex::None => String::new(),
            Ex::Active => format!("[[exemption]]\nresource = \"{ST}\"\nreason = \"ticket\"\nexpires = 2026-12-31\n"),
            Ex::Expired => format!("[[exemption]]\nresource = \"{ST}\"\nreason = \"ticket\"\nexpires = 2026-01-31\n"),
        };
        let text = format!(
            "[[profile]]\nname = \"p\"\nrequire = \"{require}\"\nmode = \"{mode}\"\nallowed_vaults = [\"{APPROVED}\"]\n{pinned}\n{exemption}"
        );
        Config::from_toml_str(&text, "table.toml").unwrap()
    }

    /// The independent oracle: what a reviewer would write down for each case, as a flat table.
    /// Returns (verdict label, action label, alert, revert target label).
    fn oracle(require: &str, obs: Obs, mode: &str, ex: Ex, dry: bool) -> (&'static str, String, bool, &'static str) {
        if ex == Ex::Active {
            return ("exempt", "nothing".into(), false, "-");
        }
        let verdict = match (require, obs) {
            ("cmk", Obs::Mmk) => "drift:cmk-found-mmk",
            ("cmk", Obs::CmkApproved) => "compliant",
            ("cmk", Obs::CmkRogue) => "drift:unapproved-vault",
            ("mmk", Obs::Mmk) => "compliant",
            ("mmk", Obs::CmkApproved) => "drift:mmk-found-cmk",
            ("mmk", Obs::CmkRogue) => "drift:mmk-found-cmk",
            ("encrypted", Obs::Mmk) => "compliant",
            ("encrypted", Obs::CmkApproved) => "compliant",
            ("encrypted", Obs::CmkRogue) => "drift:unapproved-vault",
            (_, Obs::Unknown) => "drift:unknown",
            _ => unreachable!(),
        };
        if verdict == "compliant" {
            return (verdict, "nothing".into(), false, "-");
        }
        let (action, alert, target): (String, bool, &'static str) = match (mode, verdict) {
            ("audit", _) => ("no-revert:audit".into(), false, "-"),
            ("alert", _) => ("no-revert:alert".into(), true, "-"),
            ("enforce", "drift:unknown") => ("no-revert:no-target".into(), true, "-"),
            ("enforce", "drift:mmk-found-cmk") => (format!("revert(dry={dry})"), true, "mmk"),
            // cmk profiles revert to the pinned key; encrypted profiles have none and fall back to the baseline.
            ("enforce", _) if require == "cmk" => (format!("revert(dry={dry})"), true, "pinned"),
            ("enforce", _) => (format!("revert(dry={dry})"), true, "baseline"),
            _ => unreachable!(),
        };
        (verdict, action, alert, target)
    }

    fn label_verdict(v: &Verdict) -> &'static str {
        match v {
            Verdict::Compliant => "compliant",
            Verdict::Drift(DriftReason::ExpectedCmkFoundMmk) => "drift:cmk-found-mmk",
            Verdict::Drift(DriftReason::ExpectedMmkFoundCmk) => "drift:mmk-found-cmk",
            Verdict::Drift(DriftReason::UnapprovedVault { .. }) => "drift:unapproved-vault",
            Verdict::Drift(DriftReason::UnknownKeySource { .. }) => "drift:unknown",
            Verdict::Drift(DriftReason::NotEncrypted) => "drift:not-encrypted",
            Verdict::Drift(DriftReason::KeyOutsideKeyVault { .. }) => "drift:key-outside-key-vault",
            Verdict::Drift(DriftReason::VaultOutsideEstate { .. }) => "drift:vault-outside-estate",
            Verdict::Exempt { .. } => "exempt",
            Verdict::Unsupported { .. } => "unsupported",
        }
    }

    fn label_action(a: &Action) -> (String, &'static str) {
        match a {
            Action::Nothing => ("nothing".into(), "-"),
            Action::NoRevert(NoRevertReason::ModeAudit) => ("no-revert:audit".into(), "-"),
            Action::NoRevert(NoRevertReason::ModeAlert) => ("no-revert:alert".into(), "-"),
            Action::NoRevert(NoRevertReason::NoRevertTarget) => ("no-revert:no-target".into(), "-"),
            Action::NoRevert(other) => (format!("no-revert:{other:?}"), "-"),
            Action::Revert { target, dry_run, .. } => (
                format!("revert(dry={dry_run})"),
                match target {
                    RevertTarget::Mmk => "mmk",
                    RevertTarget::Cmk(k) if k.key_name() == "pinned" => "pinned",
                    RevertTarget::Cmk(k) if k.key_name() == "baseline" => "baseline",
                    RevertTarget::Cmk(_) => "other",
                },
            ),
        }
    }

    #[test]
    fn exhaustive_decision_table() {
        let mut cases = 0;
        for require in ["cmk", "mmk", "encrypted"] {
            for obs in [Obs::Mmk, Obs::CmkApproved, Obs::CmkRogue, Obs::Unknown] {
                for mode in ["audit", "alert", "enforce"] {
                    for ex in [Ex::None, Ex::Active, Ex::Expired] {
                        for dry in [false, true] {
                            cases += 1;
                            let case = format!(
                                "require={require} observed={obs:?} mode={mode} exemption={ex:?} dry_run={dry}"
                            );
                            let mut config = config_for(require, mode, ex);
                            config.settings.dry_run = dry;
                            let id = ResourceId::parse(ST).unwrap();
                            let resource = body(obs);
                            let eval = evaluate(&id, &resource, &config, NOW);
                            let mut ctx = PlanContext::new(&eval, &config.settings);
                            ctx.baseline = Some(key(APPROVED, "baseline"));
                            ctx.reverts_in_last_hour = 1;
                            ctx.resource_has_identity_for = Some(true);
                            let plan = plan(&eval, &ctx);

                            let (want_verdict, want_action, want_alert, want_target) =
                                oracle(require, obs, mode, ex, dry);
                            assert_eq!(label_verdict(&eval.verdict), want_verdict, "{case}");
                            let (got_action, got_target) = label_action(&plan.action);
                            assert_eq!(got_action, want_action, "{case}");
                            assert_eq!(got_target, want_target, "{case}");
                            assert_eq!(plan.alert, want_alert, "{case}");

                            // Baseline only from a compliant CMK observation.
                            let want_baseline = (want_verdict == "compliant" && obs == Obs::CmkApproved)
                                .then(|| key(APPROVED, "current"));
                            assert_eq!(plan.record_baseline, want_baseline, "{case}");

                            // Expired exemptions are visible; active ones carry their source.
                            assert_eq!(
                                eval.notes.iter().any(|n| n.contains("expired on 2026-01-31")),
                                ex == Ex::Expired,
                                "{case}: {:?}",
                                eval.notes
                            );
                            if let Verdict::Exempt {
                                source,
                                reason,
                                expires,
                            } = &eval.verdict
                            {
                                assert_eq!(*source, ExemptionSource::Config);
                                assert_eq!(reason, "ticket");
                                assert!(expires.is_some());
                            }
                            assert_eq!(
                                eval.requirement,
                                Some(match require {
                                    "cmk" => Requirement::Cmk,
                                    "mmk" => Requirement::Mmk,
                                    _ => Requirement::Encrypted,
                                }),
                                "{case}"
                            );

                            // A revert body always says the target's spelling, and nothing but encryption.
                            if let Action::Revert {
                                body,
                                api_version,
                                target,
                                ..
                            } = &plan.action
                            {
                                assert_eq!(*api_version, "2025-01-01");
                                let want = match target {
                                    RevertTarget::Mmk => "Microsoft.Storage",
                                    RevertTarget::Cmk(_) => "Microsoft.Keyvault",
                                };
                                assert_eq!(body["properties"]["encryption"]["keySource"], want, "{case}");
                                assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{case}");
                                assert_eq!(body["properties"].as_object().map(|o| o.len()), Some(1), "{case}");
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 3 * 4 * 3 * 3 * 2);
    }

    // ---------------------------------------------------------------------------------------
    // The enforce checks, one at a time and in order.

    fn drift_eval(reason: DriftReason, allowed: &[&str]) -> Evaluation {
        Evaluation {
            resource_id: ResourceId::parse(ST).unwrap(),
            resource_type: "Microsoft.Storage/storageAccounts".into(),
            observed: EncryptionState::Mmk,
            requirement: Some(Requirement::Cmk),
            profile: Some("p".into()),
            mode: Some(Mode::Enforce),
            allowed_vaults: allowed.iter().map(|s| s.to_string()).collect(),
            pinned_key: None,
            allow_irreversible: false,
            verdict: Verdict::Drift(reason),
            notes: vec![],
        }
    }

    fn enforce_ctx() -> PlanContext {
        PlanContext {
            mode: Mode::Enforce,
            dry_run: false,
            baseline: Some(key(APPROVED, "baseline")),
            pinned_key: None,
            reverts_in_last_hour: 0,
            max_reverts_per_hour: 3,
            resource_has_identity_for: Some(true),
            key_problems: Vec::new(),
            allow_irreversible: false,
        }
    }

    #[test]
    fn a_disk_encryption_set_baseline_is_a_target_despite_the_vault_allow_list() {
        let eval = drift_eval(DriftReason::ExpectedCmkFoundMmk, &[APPROVED]);
        let mut ctx = enforce_ctx();
        let des = KeyRef::encryption_set(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des1",
        )
        .unwrap();
        ctx.baseline = Some(des.clone());
        assert_eq!(revert_target(&eval, &ctx), Some(RevertTarget::Cmk(des)));
        // A vault key outside the allow-list still is not.
        ctx.baseline = Some(key("https://kv-rogue.vault.azure.net", "k"));
        assert_eq!(revert_target(&eval, &ctx), None);
    }

    #[test]
    fn an_unusable_key_is_never_reverted_to_and_the_problem_is_named() {
        let eval = drift_eval(DriftReason::ExpectedCmkFoundMmk, &[APPROVED]);
        let mut ctx = enforce_ctx();
        ctx.key_problems = vec![KeyProblem::Disabled];
        let p = plan(&eval, &ctx);
        assert_eq!(
            p.action,
            Action::NoRevert(NoRevertReason::KeyUnusable {
                problems: vec![KeyProblem::Disabled]
            })
        );
        assert!(p.alert);
        assert!(
            NoRevertReason::KeyUnusable {
                problems: vec![KeyProblem::Disabled]
            }
            .describe()
            .contains("disabled")
        );
        // Reverting to Microsoft-managed keys needs no key: problems with some key do not block it.
        let to_mmk = Evaluation {
            requirement: Some(Requirement::Mmk),
            ..drift_eval(DriftReason::ExpectedMmkFoundCmk, &[])
        };
        assert!(matches!(plan(&to_mmk, &ctx).action, Action::Revert { .. }));
    }

    pub(super) static ONE_WAY: CatalogEntry = CatalogEntry {
        resource_type: "Microsoft.Example/oneWays",
        table_rows: "-",
        api_version: "2025-01-01",
        write_operations: &["Microsoft.Example/oneWays/write"],
        watched_children: &[],
        key_source: KeySource {
            child: None,
            path: &["properties", "encryption", "keySource"],
            kind: KeySourceKind::Value {
                mmk: &["Microsoft.Example"],
                cmk: &["Microsoft.KeyVault"],
                absent: WhenAbsent::Unknown,
            },
        },
        key_ref: KeyRefLayout::Fields {
            container_path: &["properties", "encryption", "keyVaultProperties"],
            vault_uri_field: "keyVaultUri",
            key_name_field: "keyName",
            key_version_field: "keyVersion",
            user_assigned_identity_path: None,
        },
        identity_fields: &[],
        children: &[],
        never_drift_names: &[],
        reversibility: Reversibility {
            to_cmk: Direction::OneWay,
            to_mmk: Direction::CreationOnly,
        },
        sources: &[],
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::KeySourcePatch,
        long_running: true,
        cis_level1: "l1",
        cis_level2: "l2",
        notes: "",
    };

    fn no_revert(p: &Plan) -> Option<&NoRevertReason> {
        match &p.action {
            Action::NoRevert(r) => Some(r),
            _ => None,
        }
    }

    #[test]
    fn enforce_checks_in_order() {
        let eval = drift_eval(DriftReason::ExpectedCmkFoundMmk, &["kv-approved.vault.azure.net"]);
        let ok = plan(&eval, &enforce_ctx());
        assert!(
            matches!(ok.action, Action::Revert { target: RevertTarget::Cmk(ref k), .. } if k.key_name() == "baseline")
        );

        // 1. direction (checked before anything else, even with every other check failing)
        let mut worst = enforce_ctx();
        worst.baseline = None;
        worst.reverts_in_last_hour = 99;
        worst.resource_has_identity_for = Some(false);
        let p = plan_with_entry(&eval, &worst, Some(&ONE_WAY), None);
        assert_eq!(
            no_revert(&p),
            Some(&NoRevertReason::NeedsOptIn {
                direction: Direction::OneWay
            })
        );
        assert!(p.alert);
        let mmk_eval = drift_eval(DriftReason::ExpectedMmkFoundCmk, &[]);
        assert_eq!(
            no_revert(&plan_with_entry(&mmk_eval, &enforce_ctx(), Some(&ONE_WAY), None)),
            Some(&NoRevertReason::NotReversible {
                direction: Direction::CreationOnly
            })
        );
        assert_eq!(
            no_revert(&plan_with_entry(&eval, &enforce_ctx(), None, None)),
            Some(&NoRevertReason::NotApplicable)
        );

        // 2. target
        let p = plan(&eval, &worst);
        assert_eq!(no_revert(&p), Some(&NoRevertReason::NoRevertTarget));
        // 3. rate limit
        worst.baseline = Some(key(APPROVED, "baseline"));
        let p = plan(&eval, &worst);
        assert_eq!(
            no_revert(&p),
            Some(&NoRevertReason::RateLimited {
                reverts_in_last_hour: 99,
                limit: 3
            })
        );
        // 4. identity
        worst.reverts_in_last_hour = 2;
        let p = plan(&eval, &worst);
        assert_eq!(no_revert(&p), Some(&NoRevertReason::MissingIdentity));
        // identity is irrelevant when reverting to MMK
        let p = plan(&mmk_eval, &worst);
        assert!(matches!(
            p.action,
            Action::Revert {
                target: RevertTarget::Mmk,
                ..
            }
        ));
        // unknown identity (None) does not block
        worst.resource_has_identity_for = None;
        assert!(matches!(plan(&eval, &worst).action, Action::Revert { .. }));
    }

    #[test]
    fn revert_target_prefers_pinned_and_vets_the_baseline() {
        let eval = drift_eval(
            DriftReason::UnapprovedVault {
                vault: "kv-rogue.vault.azure.net".into(),
            },
            &["kv-approved.vault.azure.net"],
        );
        let mut ctx = enforce_ctx();
        ctx.pinned_key = Some(key(APPROVED, "pinned"));
        assert_eq!(
            revert_target(&eval, &ctx),
            Some(RevertTarget::Cmk(key(APPROVED, "pinned")))
        );
        ctx.pinned_key = None;
        assert_eq!(
            revert_target(&eval, &ctx),
            Some(RevertTarget::Cmk(key(APPROVED, "baseline")))
        );
        ctx.baseline = Some(key(ROGUE, "baseline"));
        assert_eq!(
            revert_target(&eval, &ctx),
            None,
            "a baseline from an unapproved vault is no target"
        );
        let open = drift_eval(DriftReason::ExpectedCmkFoundMmk, &[]);
        assert_eq!(
            revert_target(&open, &ctx),
            Some(RevertTarget::Cmk(key(ROGUE, "baseline"))),
            "empty allow-list allows any vault"
        );
        assert_eq!(
            revert_target(
                &drift_eval(DriftReason::UnknownKeySource { value: "x".into() }, &[]),
                &ctx
            ),
            None
        );
        let mut compliant = open.clone();
        compliant.verdict = Verdict::Compliant;
        assert_eq!(revert_target(&compliant, &ctx), None);
    }

    #[test]
    fn plan_serializes_for_the_audit_log() {
        let eval = drift_eval(DriftReason::ExpectedCmkFoundMmk, &[]);
        let mut ctx = enforce_ctx();
        ctx.reverts_in_last_hour = 3;
        let v = serde_json::to_value(plan(&eval, &ctx)).unwrap();
        assert_eq!(
            v,
            json!({"action": {"action": "noRevert", "reason": "rateLimited", "revertsInLastHour": 3, "limit": 3}, "alert": true, "recordBaseline": null, "writes": []})
        );
        let v = serde_json::to_value(plan(&eval, &enforce_ctx())).unwrap();
        assert_eq!(v["action"]["action"], "revert");
        assert_eq!(v["action"]["apiVersion"], "2025-01-01");
        assert_eq!(v["action"]["target"]["target"], "cmk");
        assert!(NoRevertReason::NoRevertTarget.describe().contains("manual action"));
    }

    // ---------------------------------------------------------------------------------------
    // Properties.

    fn arb_key() -> impl Strategy<Value = KeyRef> {
        (
            prop_oneof![Just(APPROVED), Just(ROGUE)],
            "[a-z]{1,8}",
            proptest::option::of("[0-9a-f]{32}"),
        )
            .prop_map(|(v, n, ver)| KeyRef::new(v, &n, ver.as_deref(), None).unwrap())
    }

    fn arb_verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            Just(Verdict::Compliant),
            Just(Verdict::Drift(DriftReason::ExpectedCmkFoundMmk)),
            Just(Verdict::Drift(DriftReason::ExpectedMmkFoundCmk)),
            Just(Verdict::Drift(DriftReason::UnapprovedVault {
                vault: "kv-rogue.vault.azure.net".into()
            })),
            Just(Verdict::Drift(DriftReason::UnknownKeySource { value: "?".into() })),
            Just(Verdict::Exempt {
                reason: "r".into(),
                expires: None,
                source: ExemptionSource::Tag
            }),
            Just(Verdict::Unsupported { reason: "r".into() }),
        ]
    }

    fn arb_mode() -> impl Strategy<Value = Mode> {
        prop_oneof![Just(Mode::Audit), Just(Mode::Alert), Just(Mode::Enforce)]
    }

    fn arb_observed() -> impl Strategy<Value = EncryptionState> {
        prop_oneof![
            Just(EncryptionState::Mmk),
            arb_key().prop_map(EncryptionState::Cmk),
            Just(EncryptionState::Unknown("x".into())),
        ]
    }

    prop_compose! {
        fn arb_case()(
            verdict in arb_verdict(),
            observed in arb_observed(),
            allowed in proptest::collection::vec(prop_oneof![Just("kv-approved.vault.azure.net".to_string()), Just("kv-other.vault.azure.net".to_string())], 0..3),
            mode in arb_mode(),
            dry_run in any::<bool>(),
            baseline in proptest::option::of(arb_key()),
            pinned_key in proptest::option::of(arb_key()),
            reverts_in_last_hour in 0u32..6,
            max_reverts_per_hour in 0u32..5,
            resource_has_identity_for in proptest::option::of(any::<bool>()),
        ) -> (Evaluation, PlanContext) {
            let eval = Evaluation {
                resource_id: ResourceId::parse(ST).unwrap(),
                resource_type: "Microsoft.Storage/storageAccounts".into(),
                observed,
                requirement: None,
                profile: None,
                mode: Some(mode),
                allowed_vaults: allowed,
                pinned_key: pinned_key.clone(),
                allow_irreversible: false,
                verdict,
                notes: vec![],
            };
            let ctx = PlanContext { mode, dry_run, baseline, pinned_key, reverts_in_last_hour, max_reverts_per_hour, resource_has_identity_for, key_problems: Vec::new(), allow_irreversible: false };
            (eval, ctx)
        }
    }

    fn is_revert(p: &Plan) -> bool {
        matches!(p.action, Action::Revert { .. })
    }

    proptest! {
        #[test]
        fn never_revert_outside_enforce((eval, ctx) in arb_case()) {
            let p = plan(&eval, &ctx);
            if ctx.mode != Mode::Enforce {
                prop_assert!(!is_revert(&p));
            }
        }

        #[test]
        fn never_revert_without_drift((eval, ctx) in arb_case()) {
            let p = plan(&eval, &ctx);
            if !eval.verdict.is_drift() {
                prop_assert_eq!(&p.action, &Action::Nothing);
                prop_assert!(!p.alert);
            }
        }

        #[test]
        fn never_revert_at_the_rate_limit((eval, ctx) in arb_case()) {
            let p = plan(&eval, &ctx);
            if ctx.reverts_in_last_hour >= ctx.max_reverts_per_hour {
                prop_assert!(!is_revert(&p));
            }
        }

        #[test]
        fn never_revert_an_unknown_state((eval, ctx) in arb_case()) {
            let p = plan(&eval, &ctx);
            if matches!(eval.verdict, Verdict::Drift(DriftReason::UnknownKeySource { .. })) {
                prop_assert!(!is_revert(&p));
            }
        }

        #[test]
        fn revert_bodies_match_their_target((eval, ctx) in arb_case()) {
            let p = plan(&eval, &ctx);
            if let Action::Revert { target, body, dry_run, .. } = &p.action {
                prop_assert!(p.alert);
                prop_assert_eq!(*dry_run, ctx.dry_run);
                let ks = &body["properties"]["encryption"]["keySource"];
                match target {
                    RevertTarget::Mmk => {
                        prop_assert_eq!(ks, "Microsoft.Storage");
                        prop_assert!(body["properties"]["encryption"].get("keyvaultproperties").is_none());
                    }
                    RevertTarget::Cmk(k) => {
                        prop_assert_eq!(ks, "Microsoft.Keyvault");
                        prop_assert!(vault_allowed(&eval.allowed_vaults, k));
                        prop_assert_eq!(&body["properties"]["encryption"]["keyvaultproperties"]["keyname"], &Value::String(k.key_name().to_string()));
                        prop_assert_ne!(ctx.resource_has_identity_for, Some(false));
                    }
                }
            }
        }

        #[test]
        fn drift_outside_audit_always_alerts((eval, ctx) in arb_case()) {
            let p = plan(&eval, &ctx);
            if eval.verdict.is_drift() {
                prop_assert_eq!(p.alert, ctx.mode != Mode::Audit);
                prop_assert!(p.record_baseline.is_none());
            }
        }
    }
}
