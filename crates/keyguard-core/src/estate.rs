//! The key-swap guard's estate check, pure: which compliant keys need their vault looked up, and
//! what a lookup's answer does to the verdict. The lookup itself (Resource Graph, the
//! subscription's tenant) is the caller's I/O.
//!
//! A resource on a customer-managed key can be ruined without leaving CMK: someone points it at
//! a key in a vault they control, possibly in another tenant, and later disables the key. Under
//! a profile that lists `allowed_vaults` the allow-list decides; without one, a vault keyguard
//! cannot find among the subscriptions it watches is treated as drift.

use serde::{Deserialize, Serialize};

use crate::catalog::{EncryptionState, KeyRef};
use crate::config::Settings;
use crate::evaluate::{DriftReason, Evaluation, Verdict};
use crate::vault::VaultHost;

/// Why a vault is not part of the estate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum EstateMiss {
    /// Resource Graph shows no vault with this host to keyguard's identity.
    NotFound,
    /// The vault exists, in a subscription keyguard does not watch.
    OutsideWatchedScope { subscription: String },
    /// The vault belongs to another Entra tenant than the resource's subscription.
    OtherTenant {
        vault_tenant: String,
        resource_tenant: String,
    },
}

impl EstateMiss {
    pub fn describe(&self) -> String {
        match self {
            EstateMiss::NotFound => "no vault with this name is visible to keyguard in any subscription".to_string(),
            EstateMiss::OutsideWatchedScope { subscription } => {
                format!("the vault is in subscription {subscription}, which keyguard does not watch")
            }
            EstateMiss::OtherTenant {
                vault_tenant,
                resource_tenant,
            } => format!("the vault is in tenant {vault_tenant}, the resource in tenant {resource_tenant}"),
        }
    }
}

/// What the lookup found about one vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultStanding {
    /// Found in a watched subscription of the resource's own tenant.
    InEstate {
        subscription: String,
    },
    Outside(EstateMiss),
}

/// The vault host of a compliant key whose vault the estate check must look up, or `None`
/// when nothing needs looking up: not compliant, no vault visible (a disk encryption set holds
/// the binding), a profile that lists `allowed_vaults` (the list decides), the check turned off,
/// or a vault the operator trusts.
pub fn vault_to_check<'a>(eval: &'a Evaluation, settings: &Settings) -> Option<&'a str> {
    if !settings.estate_check || !eval.allowed_vaults.is_empty() || eval.verdict != Verdict::Compliant {
        return None;
    }
    let EncryptionState::Cmk(key) = &eval.observed else {
        return None;
    };
    let host = key.vault_host()?;
    (!is_trusted(settings, host)).then_some(host)
}

/// Whether `host` is one of `[settings] trusted_vaults`.
pub fn is_trusted(settings: &Settings, host: &str) -> bool {
    settings.trusted_vaults.iter().any(|t| t.eq_ignore_ascii_case(host))
}

/// Applies the lookup's answer: a key in a vault outside the estate turns a compliant verdict
/// into `VaultOutsideEstate` drift; a vault in the estate changes nothing.
pub fn apply_standing(eval: &mut Evaluation, standing: &VaultStanding) {
    let VaultStanding::Outside(miss) = standing else {
        return;
    };
    let (Verdict::Compliant, EncryptionState::Cmk(key)) = (&eval.verdict, &eval.observed) else {
        return;
    };
    let Some(vault) = key.vault_host().map(str::to_string) else {
        return;
    };
    eval.verdict = Verdict::Drift(DriftReason::VaultOutsideEstate {
        vault,
        miss: miss.clone(),
    });
}

/// The vault label Resource Graph's `name` column holds for a vault host (`kv-prod` for
/// `kv-prod.vault.azure.net`), when it is a valid vault name: the only text of a key reference
/// that goes into a query, so it is checked against Azure's naming rule (letters, digits and
/// hyphens, 3 to 24 characters) rather than escaped.
pub fn vault_name(host: &str) -> Option<String> {
    let parsed = VaultHost::parse(host).ok()?;
    let label = parsed.as_str().split('.').next()?;
    let valid = (3..=24).contains(&label.len()) && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| label.to_ascii_lowercase())
}

/// Whether a revert may go to `candidate` when the drift is a key outside the estate: never to
/// a key in the vault that was found outside.
pub fn differs_in_vault(candidate: &KeyRef, outside_vault: &str) -> bool {
    candidate
        .vault_host()
        .is_none_or(|host| !host.eq_ignore_ascii_case(outside_vault))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::evaluate::evaluate;
    use crate::resource_id::ResourceId;
    use serde_json::json;
    use time::macros::datetime;

    const ST: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st";

    fn cmk_body(vault: &str) -> serde_json::Value {
        json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {
            "keyvaulturi": vault, "keyname": "k", "keyversion": ""}}}})
    }

    fn eval(config: &str, body: serde_json::Value) -> (Evaluation, Config) {
        let config = Config::from_toml_str(config, "keyguard.toml").unwrap();
        let e = evaluate(
            &ResourceId::parse(ST).unwrap(),
            &body,
            &config,
            datetime!(2026-01-01 0:00 UTC),
        );
        (e, config)
    }

    const OPEN: &str = "[[profile]]\nname = \"p\"\nrequire = \"cmk\"\nmode = \"enforce\"\n";

    #[test]
    fn only_a_compliant_key_in_a_visible_untrusted_vault_under_an_open_profile_is_looked_up() {
        let (e, c) = eval(OPEN, cmk_body("https://kv-b.vault.azure.net"));
        assert_eq!(vault_to_check(&e, &c.settings), Some("kv-b.vault.azure.net"));

        let listed = format!("{OPEN}allowed_vaults = [\"kv-b.vault.azure.net\"]\n");
        let (e, c) = eval(&listed, cmk_body("https://kv-b.vault.azure.net"));
        assert_eq!(vault_to_check(&e, &c.settings), None, "the allow-list decides");

        let trusted = format!("[settings]\ntrusted_vaults = [\"https://KV-B.vault.azure.net\"]\n{OPEN}");
        let (e, c) = eval(&trusted, cmk_body("https://kv-b.vault.azure.net"));
        assert_eq!(vault_to_check(&e, &c.settings), None, "trusted");

        let off = format!("[settings]\nestate_check = false\n{OPEN}");
        let (e, c) = eval(&off, cmk_body("https://kv-b.vault.azure.net"));
        assert_eq!(vault_to_check(&e, &c.settings), None, "turned off");

        let (e, c) = eval(
            OPEN,
            json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
        );
        assert_eq!(vault_to_check(&e, &c.settings), None, "drift already");
    }

    #[test]
    fn a_vault_outside_the_estate_is_drift_and_one_inside_changes_nothing() {
        let (mut e, _) = eval(OPEN, cmk_body("https://kv-b.vault.azure.net"));
        apply_standing(
            &mut e,
            &VaultStanding::InEstate {
                subscription: "s".into(),
            },
        );
        assert_eq!(e.verdict, Verdict::Compliant);
        for miss in [
            EstateMiss::NotFound,
            EstateMiss::OutsideWatchedScope {
                subscription: "other".into(),
            },
            EstateMiss::OtherTenant {
                vault_tenant: "t2".into(),
                resource_tenant: "t1".into(),
            },
        ] {
            let (mut e, _) = eval(OPEN, cmk_body("https://kv-b.vault.azure.net"));
            apply_standing(&mut e, &VaultStanding::Outside(miss.clone()));
            assert_eq!(
                e.verdict,
                Verdict::Drift(DriftReason::VaultOutsideEstate {
                    vault: "kv-b.vault.azure.net".into(),
                    miss
                })
            );
        }
    }

    #[test]
    fn only_valid_vault_names_reach_a_query() {
        assert_eq!(vault_name("kv-prod.vault.azure.net").as_deref(), Some("kv-prod"));
        assert_eq!(
            vault_name("https://HSM1.managedhsm.azure.net/").as_deref(),
            Some("hsm1")
        );
        for hostile in [
            "kv'x.vault.azure.net",
            "evil.example",
            "a.vault.azure.net",
            "kv prod.vault.azure.net",
        ] {
            assert_eq!(vault_name(hostile), None, "{hostile}");
        }
    }

    #[test]
    fn a_key_outside_the_estate_reverts_to_the_known_good_key_in_another_vault_only() {
        use crate::catalog::RevertTarget;
        use crate::plan::{Action, PlanContext, plan, revert_target};
        let (mut e, c) = eval(OPEN, cmk_body("https://kv-b.vault.azure.net"));
        apply_standing(&mut e, &VaultStanding::Outside(EstateMiss::NotFound));
        let good = KeyRef::new("https://kv-a.vault.azure.net", "good", None, None).unwrap();
        let mut ctx = PlanContext::new(&e, &c.settings);
        ctx.resource_has_identity_for = Some(true);
        ctx.baseline = Some(good.clone());
        assert_eq!(revert_target(&e, &ctx), Some(RevertTarget::Cmk(good.clone())));
        let p = plan(&e, &ctx);
        assert!(matches!(p.action, Action::Revert { .. }), "{p:?}");
        assert!(p.alert && p.record_baseline.is_none(), "never a baseline: {p:?}");

        ctx.baseline = Some(KeyRef::new("https://kv-b.vault.azure.net", "older", None, None).unwrap());
        assert_eq!(revert_target(&e, &ctx), None, "a key in the outside vault is no target");
        assert!(!matches!(plan(&e, &ctx).action, Action::Revert { .. }));
    }

    #[test]
    fn the_outside_vault_is_never_a_revert_target() {
        let inside = KeyRef::new("https://kv-a.vault.azure.net", "k", None, None).unwrap();
        let outside = KeyRef::new("https://kv-b.vault.azure.net", "k", None, None).unwrap();
        assert!(differs_in_vault(&inside, "kv-b.vault.azure.net"));
        assert!(!differs_in_vault(&outside, "KV-B.vault.azure.net"));
    }
}
