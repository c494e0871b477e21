//! From "what the resource looks like now" plus policy to a verdict. Pure: the caller supplies
//! the current resource body (always freshly read, never taken from the event) and the time.

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::catalog::{self, EncryptionState, KeyRef, ResourceView};
use crate::config::{Config, ExemptionSource, ExemptionStatus, Mode, Requirement, vault_allowed};
use crate::resource_id::ResourceId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum DriftReason {
    ExpectedCmkFoundMmk,
    ExpectedMmkFoundCmk,
    /// A CMK, but from a vault the profile does not allow: someone else's key is as bad as none.
    UnapprovedVault {
        vault: String,
    },
    /// A key source we cannot interpret; reported, never written over.
    UnknownKeySource {
        value: String,
    },
    /// Service-side encryption is off (TDE disabled): fails every requirement, because even
    /// "Microsoft-managed" presumes the data is encrypted.
    NotEncrypted,
    /// The key reference points outside Key Vault and Managed HSM (another host, an IP address,
    /// a port, user info). High severity: it is either an attack on keyguard's credentials or a
    /// key nobody can vouch for. Never read, never written back.
    KeyOutsideKeyVault {
        reference: String,
        problem: crate::keyref::KeyRefError,
    },
    /// A customer-managed key in a vault outside the estate (not found, in a subscription
    /// keyguard does not watch, or in another tenant): the key-swap ransomware move. High
    /// severity; reverted to the known-good key in enforce mode.
    VaultOutsideEstate {
        vault: String,
        miss: crate::estate::EstateMiss,
    },
}

impl DriftReason {
    /// One sentence for alerts.
    pub fn describe(&self) -> String {
        match self {
            DriftReason::ExpectedCmkFoundMmk => {
                "expected a customer-managed key, found Microsoft-managed keys".to_string()
            }
            DriftReason::ExpectedMmkFoundCmk => {
                "expected Microsoft-managed keys, found a customer-managed key".to_string()
            }
            DriftReason::UnapprovedVault { vault } => {
                format!("customer-managed key is in vault {vault}, which the profile does not allow")
            }
            DriftReason::UnknownKeySource { value } => {
                format!("key source could not be interpreted ({value})")
            }
            DriftReason::NotEncrypted => "encryption at rest is turned off".to_string(),
            DriftReason::KeyOutsideKeyVault { reference, problem } => {
                format!("key reference outside Key Vault: {reference} ({problem})")
            }
            DriftReason::VaultOutsideEstate { vault, miss } => {
                format!(
                    "customer-managed key is in vault {vault}, outside the estate: {}",
                    miss.describe()
                )
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum Verdict {
    Compliant,
    Drift(DriftReason),
    Exempt {
        reason: String,
        #[serde(with = "time::serde::rfc3339::option")]
        expires: Option<OffsetDateTime>,
        source: ExemptionSource,
    },
    Unsupported {
        reason: String,
    },
}

impl Verdict {
    pub fn is_drift(&self) -> bool {
        matches!(self, Verdict::Drift(_))
    }
}

/// Everything the planner, the audit log and an alert need to know about one look at a resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub resource_id: ResourceId,
    pub resource_type: String,
    pub observed: EncryptionState,
    pub requirement: Option<Requirement>,
    pub profile: Option<String>,
    /// The profile's mode, so the caller can build the plan context without a second lookup.
    pub mode: Option<Mode>,
    /// The profile's allowed vault hosts (empty = any), needed to vet a last known-good key.
    pub allowed_vaults: Vec<String>,
    /// The profile's pinned key, if any.
    pub pinned_key: Option<KeyRef>,
    /// The profile accepts one-way and disruptive reverts (`allow_irreversible = true`).
    pub allow_irreversible: bool,
    pub verdict: Verdict,
    /// Things a human should know that do not change the verdict (expired exemption, broken tag, ...).
    pub notes: Vec<String>,
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn source_name(s: ExemptionSource) -> &'static str {
    match s {
        ExemptionSource::Config => "config",
        ExemptionSource::Tag => "resource tag",
    }
}

/// Tags of an ARM body (`tags`, any case); absent or malformed tags are no tags.
pub fn resource_tags(resource: &Value) -> Map<String, Value> {
    resource
        .as_object()
        .and_then(|o| {
            o.get("tags")
                .or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("tags")).map(|(_, v)| v))
        })
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Judge one resource. `resource` is the current ARM body (GET response or a Resource
/// Notifications `resourceInfo`). Types whose state lives in child resources need
/// [`evaluate_view`]; here they observe `Unknown`.
pub fn evaluate(id: &ResourceId, resource: &Value, config: &Config, now: OffsetDateTime) -> Evaluation {
    evaluate_view(id, &ResourceView::new(resource), config, now)
}

/// Judge one resource from its body and the child resources its catalog entry lists.
///
/// Rules beyond "compare key source with requirement": `Disabled` (TDE off) is drift under every
/// requirement; `Encrypted` (TDE on, key decided by the server) satisfies every requirement,
/// because a database's CMK-ness is judged on its server's protector; a resource the entry never
/// judges (the `master` database) is `Unsupported`, never drift.
pub fn evaluate_view(id: &ResourceId, view: &ResourceView<'_>, config: &Config, now: OffsetDateTime) -> Evaluation {
    let resource = view.resource;
    let resource_type = id.resource_type();
    let mut eval = Evaluation {
        resource_id: id.clone(),
        resource_type: resource_type.clone(),
        observed: EncryptionState::Unknown("not observed".to_string()),
        requirement: None,
        profile: None,
        mode: None,
        allowed_vaults: Vec::new(),
        pinned_key: None,
        allow_irreversible: false,
        verdict: Verdict::Unsupported { reason: String::new() },
        notes: Vec::new(),
    };

    let Some(entry) = catalog::lookup(&resource_type) else {
        eval.verdict = Verdict::Unsupported {
            reason: format!("resource type {resource_type} is not in the catalog"),
        };
        return eval;
    };
    eval.observed = entry.observe_view(view);
    if entry.never_drifts(id.name()) {
        eval.verdict = Verdict::Unsupported {
            reason: format!(
                "{} {} is never judged: its state is not the customer's to set",
                entry.resource_type,
                id.name()
            ),
        };
        return eval;
    }

    // A body that is not the resource we asked about means a confused caller; say so loudly.
    if let Some(body_id) = resource.get("id").and_then(Value::as_str)
        && let Ok(body_id) = ResourceId::parse(body_id)
        && !body_id.same_resource(id)
    {
        eval.notes.push(format!(
            "resource body has id {body_id}, which differs from the evaluated id"
        ));
    }

    let tags = resource_tags(resource);
    let Some(profile) = config.profile_for(id, &tags) else {
        eval.verdict = Verdict::Unsupported {
            reason: format!("no profile covers {id}"),
        };
        return eval;
    };
    eval.requirement = Some(profile.require);
    eval.profile = Some(profile.name.clone());
    eval.mode = Some(profile.mode);
    eval.allowed_vaults = profile.allowed_vaults.clone();
    eval.pinned_key = profile.pinned_key.clone();
    eval.allow_irreversible = profile.allow_irreversible;

    match config.exemption_for(id, &tags, now) {
        ExemptionStatus::Active {
            source,
            reason,
            expires,
        } => {
            eval.verdict = Verdict::Exempt {
                reason,
                expires,
                source,
            };
            return eval;
        }
        ExemptionStatus::Expired {
            source,
            reason,
            expired_at,
        } => eval.notes.push(format!(
            "exemption ({}) expired on {}: {reason}",
            source_name(source),
            fmt_time(expired_at)
        )),
        ExemptionStatus::Invalid { source, value, problem } => eval.notes.push(format!(
            "exemption ({}) ignored: {problem} (value \"{value}\")",
            source_name(source)
        )),
        ExemptionStatus::None => {}
    }

    eval.verdict = judge(profile.require, &eval.observed, &profile.allowed_vaults);
    match (&eval.verdict, &eval.observed) {
        (Verdict::Compliant, EncryptionState::Encrypted) if profile.require == Requirement::Cmk => eval.notes.push(
            "encryption at rest is on; whether it uses a customer-managed key is judged on the server's encryption protector".to_string(),
        ),
        (Verdict::Compliant, EncryptionState::Cmk(key)) if key.vault().is_none() => eval.notes.push(match key.encryption_set_id() {
            Some(set) => format!("customer-managed key held by disk encryption set {set}; its vault is not checked here"),
            None => "customer-managed key enforced; the key itself is not visible in ARM, its vault is not checked".to_string(),
        }),
        _ => {}
    }

    if let (Verdict::Compliant, EncryptionState::Cmk(key), Some(pinned)) =
        (&eval.verdict, &eval.observed, &profile.pinned_key)
        && !key.same_key(pinned)
    {
        eval.notes.push(format!(
            "customer-managed key {key} differs from the profile's pinned key {pinned}"
        ));
    }
    eval
}

/// The requirement table itself.
fn judge(require: Requirement, observed: &EncryptionState, allowed_vaults: &[String]) -> Verdict {
    match (require, observed) {
        (_, EncryptionState::Unknown(value)) => Verdict::Drift(DriftReason::UnknownKeySource { value: value.clone() }),
        (_, EncryptionState::Disabled) => Verdict::Drift(DriftReason::NotEncrypted),
        (_, EncryptionState::KeyOutsideKeyVault { reference, problem }) => {
            Verdict::Drift(DriftReason::KeyOutsideKeyVault {
                reference: reference.clone(),
                problem: problem.clone(),
            })
        }
        (_, EncryptionState::Encrypted) => Verdict::Compliant,
        // A key we cannot see the vault of (DES-held, or not in ARM) cannot be vetted against the
        // allow-list; calling it drift would alert on every compliant disk.
        (Requirement::Cmk | Requirement::Encrypted, EncryptionState::Cmk(key)) if key.vault().is_none() => {
            Verdict::Compliant
        }
        (Requirement::Cmk, EncryptionState::Mmk) => Verdict::Drift(DriftReason::ExpectedCmkFoundMmk),
        (Requirement::Mmk, EncryptionState::Cmk(_)) => Verdict::Drift(DriftReason::ExpectedMmkFoundCmk),
        (Requirement::Cmk | Requirement::Encrypted, EncryptionState::Cmk(key)) => {
            if vault_allowed(allowed_vaults, key) {
                Verdict::Compliant
            } else {
                Verdict::Drift(DriftReason::UnapprovedVault {
                    vault: key.vault_host().unwrap_or_default().to_string(),
                })
            }
        }
        (Requirement::Mmk | Requirement::Encrypted, EncryptionState::Mmk) => Verdict::Compliant,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const ST: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st";

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    #[test]
    fn unsupported_type_and_uncovered_resource() {
        let c = Config::builtin_default();
        let now = datetime!(2026-01-01 0:00 UTC);
        let e = evaluate(
            &id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"),
            &json!({}),
            &c,
            now,
        );
        assert_eq!(
            e.verdict,
            Verdict::Unsupported {
                reason: "resource type Microsoft.KeyVault/vaults is not in the catalog".into()
            }
        );
        assert_eq!(e.requirement, None);

        let c = Config::from_toml_str(
            "[[profile]]\nname = \"p\"\nrequire = \"cmk\"\nscope = { subscriptions = [\"other\"] }\n",
            "x",
        )
        .unwrap();
        let body = json!({"properties":{"encryption":{"keySource":"Microsoft.Storage"}}});
        let e = evaluate(&id(ST), &body, &c, now);
        assert_eq!(
            e.verdict,
            Verdict::Unsupported {
                reason: format!("no profile covers {ST}")
            }
        );
        assert_eq!(
            e.observed,
            EncryptionState::Mmk,
            "observed even when no profile applies"
        );
    }

    #[test]
    fn a_key_outside_key_vault_is_high_severity_drift_never_reverted_or_kept() {
        let enforce = Config::from_toml_str(
            "[[profile]]\nname = \"p\"\nrequire = \"cmk\"\nmode = \"enforce\"\nallowed_vaults = [\"kv-ok.vault.azure.net\"]\n",
            "x",
        )
        .unwrap();
        let now = datetime!(2026-01-01 0:00 UTC);
        let baseline = KeyRef::new("https://kv-ok.vault.azure.net", "k", None, None).unwrap();
        for (vault, host) in [
            ("https://kv-ok.vault.azure.net:1@evil.example/", None),
            ("https://evil.example/", Some("evil.example")),
            ("https://10.0.0.1/", Some("10.0.0.1")),
        ] {
            let body = json!({"identity": {"type": "SystemAssigned"}, "properties": {"encryption": {
                "keySource": "Microsoft.Keyvault",
                "keyvaultproperties": {"keyvaulturi": vault, "keyname": "k"}}}});
            let e = evaluate(&id(ST), &body, &enforce, now);
            let Verdict::Drift(DriftReason::KeyOutsideKeyVault { reference, problem }) = &e.verdict else {
                panic!("{vault}: {:?}", e.verdict);
            };
            assert_eq!(reference, vault);
            if let Some(host) = host {
                let Verdict::Drift(reason) = &e.verdict else {
                    unreachable!()
                };
                assert!(reason.describe().contains(host), "{vault}");
                assert!(problem.to_string().contains(host), "{vault}: {problem}");
            }
            // Even in enforce mode with a usable baseline: no revert target is derived from it and
            // no baseline is recorded from it; a person decides.
            let mut ctx = crate::plan::PlanContext::new(&e, &crate::config::Settings::default());
            ctx.baseline = Some(baseline.clone());
            ctx.max_reverts_per_hour = 10;
            assert_eq!(ctx.mode, crate::config::Mode::Enforce);
            let plan = crate::plan::plan(&e, &ctx);
            assert!(
                matches!(plan.action, crate::plan::Action::NoRevert(_)),
                "{vault}: {:?}",
                plan.action
            );
            assert!(plan.alert && plan.record_baseline.is_none() && plan.writes.is_empty());
        }
    }

    #[test]
    fn notes_for_mismatched_body_id_and_pinned_key() {
        let c = Config::from_toml_str("[[profile]]\nname = \"p\"\nrequire = \"cmk\"\npinned_key = { vault_uri = \"https://kv.vault.azure.net\", key_name = \"pinned\" }\n", "x").unwrap();
        let body = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/other",
            "properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://kv.vault.azure.net","keyname":"k"}}}
        });
        let e = evaluate(&id(ST), &body, &c, datetime!(2026-01-01 0:00 UTC));
        assert_eq!(e.verdict, Verdict::Compliant);
        assert_eq!(e.notes.len(), 2, "{:?}", e.notes);
        assert!(e.notes[0].contains("differs from the evaluated id"));
        assert!(e.notes[1].contains("differs from the profile's pinned key"));
    }

    #[test]
    fn tags_in_the_body_drive_scope_and_exemption() {
        let c = Config::from_toml_str(
            "[[profile]]\nname = \"prod\"\nrequire = \"cmk\"\nscope = { tags = { env = \"prod\" } }\n",
            "x",
        )
        .unwrap();
        let now = datetime!(2026-01-01 0:00 UTC);
        let body = json!({"Tags": {"ENV": "prod", "keyguard-exempt-until": "garbage"}, "properties":{"encryption":{"keySource":"Microsoft.Storage"}}});
        let e = evaluate(&id(ST), &body, &c, now);
        assert_eq!(e.profile.as_deref(), Some("prod"));
        assert_eq!(e.verdict, Verdict::Drift(DriftReason::ExpectedCmkFoundMmk));
        assert!(
            e.notes[0].starts_with("exemption (resource tag) ignored"),
            "{:?}",
            e.notes
        );
    }

    #[test]
    fn verdict_serialization_is_flat_and_tagged() {
        assert_eq!(
            serde_json::to_value(Verdict::Compliant).unwrap(),
            json!({"verdict":"compliant"})
        );
        assert_eq!(
            serde_json::to_value(Verdict::Drift(DriftReason::ExpectedCmkFoundMmk)).unwrap(),
            json!({"verdict":"drift","reason":"expectedCmkFoundMmk"})
        );
        assert_eq!(
            serde_json::to_value(Verdict::Drift(DriftReason::UnapprovedVault { vault: "v".into() })).unwrap(),
            json!({"verdict":"drift","reason":"unapprovedVault","vault":"v"})
        );
        assert_eq!(
            DriftReason::ExpectedMmkFoundCmk.describe(),
            "expected Microsoft-managed keys, found a customer-managed key"
        );
    }
}
