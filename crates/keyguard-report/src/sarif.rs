//! SARIF 2.1.0 for security dashboards (GitHub code scanning, Defender for DevOps, SARIF viewers).
//!
//! Decisions, so dashboards behave:
//! * One rule per catalog type × requirement (`KG-CMK-Microsoft.Storage/storageAccounts`), always
//!   all of them in catalog order, so `ruleIndex` and rule metadata are the same in every run. The
//!   rule carries the catalog's CIS/policy mapping in `properties`. One extra rule, [`UNMAPPED_RULE`],
//!   takes findings whose type or requirement the catalog does not know (an error on an unknown type).
//! * Results only for what needs attention: drift (`level: error`), error (`level: warning`, the
//!   message says it could not be evaluated), exempt (`level: note` with an `external` suppression
//!   carrying the reason, so dashboards list it as suppressed rather than open). Compliant and
//!   unsupported findings produce no result; their counts are in `run.properties.summary`.
//! * ARM resources are not files: the location is a `logicalLocation` of kind `resource` (one of
//!   the kinds SARIF lists) named by the resource id.
//! * `partialFingerprints` hash the lower-cased resource id with the rule id only, so the same
//!   resource failing the same rule is one alert across runs whatever the message says.

use keyguard_core::catalog::{self, CatalogEntry};
use keyguard_core::config::Requirement;
use serde_json::{Value, json};

use crate::{Finding, FindingVerdict, ReportContext, rfc3339, summarize};

/// Where the SARIF 2.1.0 schema is published (SchemaStore, as GitHub's documentation uses).
pub const SARIF_SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";
pub const UNMAPPED_RULE: &str = "KG-UNMAPPED";
const FINGERPRINT_KEY: &str = "keyguardResourceRule/v1";
const REQUIREMENTS: [Requirement; 3] = [Requirement::Cmk, Requirement::Mmk, Requirement::Encrypted];

/// The rule id for a catalog type and requirement, in the catalog's spelling of the type.
pub fn rule_id(resource_type: &str, requirement: Requirement) -> String {
    let ty = catalog::lookup(resource_type).map_or(resource_type, |e| e.resource_type);
    format!("KG-{}-{ty}", requirement.as_str().to_ascii_uppercase())
}

fn requirement_phrase(requirement: Requirement) -> &'static str {
    match requirement {
        Requirement::Cmk => "a customer-managed key",
        Requirement::Mmk => "Microsoft-managed keys",
        Requirement::Encrypted => "encryption at rest",
    }
}

fn rule(entry: &CatalogEntry, requirement: Requirement) -> Value {
    let ty = entry.resource_type;
    // CIS level 2 is "customer-managed key"; level 1 is "encrypted at rest", which Microsoft-managed
    // keys also satisfy, so an MMK requirement is held to level 1.
    let (level, control) = match requirement {
        Requirement::Cmk => (2, entry.cis_level2),
        Requirement::Mmk | Requirement::Encrypted => (1, entry.cis_level1),
    };
    let short = format!("{ty} uses {}", requirement_phrase(requirement));
    let full = match requirement {
        Requirement::Cmk => format!(
            "Resources of type {ty} must encrypt data at rest with a customer-managed key held in Azure Key Vault \
             (from a vault the profile allows). Baseline: {control}."
        ),
        Requirement::Mmk => format!(
            "Resources of type {ty} must use Microsoft-managed keys: the profile rules out customer-managed keys \
             here (cost, availability or key-lifecycle reasons). Baseline: {control}."
        ),
        Requirement::Encrypted => format!(
            "Resources of type {ty} must be encrypted at rest; either Microsoft-managed or customer-managed keys \
             satisfy this. Baseline: {control}."
        ),
    };
    let help = format!(
        "{full}\n\nA switch to a customer-managed key is {} and back to Microsoft-managed keys is {} on an \
         existing resource. {}",
        entry.reversibility.to_cmk.label(),
        entry.reversibility.to_mmk.label(),
        entry.notes
    );
    let mut tags = vec!["security", "encryption-at-rest", "azure", requirement.as_str()];
    tags.push(if level == 2 { "cis-level-2" } else { "cis-level-1" });
    let mut properties = json!({
        "tags": tags,
        "resourceType": ty,
        "requirement": requirement.as_str(),
        "cisLevel": level,
        "control": control,
        // GitHub code scanning ranks alerts by this (0.0-10.0): data left unencrypted is worst.
        "security-severity": match requirement {
            Requirement::Encrypted => "8.0",
            Requirement::Cmk => "7.0",
            Requirement::Mmk => "4.0",
        },
    });
    if let Some(cis) = cis_reference(control) {
        properties["cisControl"] = json!(cis);
    }
    json!({
        "id": rule_id(ty, requirement),
        "shortDescription": { "text": short },
        "fullDescription": { "text": full },
        "help": { "text": help.trim_end() },
        "defaultConfiguration": { "level": "error" },
        "properties": properties,
    })
}

/// `CIS Microsoft Azure Foundations 3.0.0 6.1.3` from a catalog text that cites one; other texts
/// cite built-in policies or keyguard profiles, which are not CIS controls.
fn cis_reference(control: &str) -> Option<&str> {
    let cited = control.strip_prefix("CIS ")?;
    let end = cited.find(':').map_or(control.len(), |i| i + "CIS ".len());
    Some(control[..end].trim())
}

fn unmapped_rule() -> Value {
    json!({
        "id": UNMAPPED_RULE,
        "shortDescription": { "text": "Finding outside keyguard's catalog" },
        "fullDescription": {
            "text": "A resource keyguard could not tie to a catalog type and requirement, usually because it could \
                     not be read or its type is unknown; it needs a human look."
        },
        "help": { "text": "Check the result's message for why the resource could not be evaluated, then run the check again." },
        "defaultConfiguration": { "level": "warning" },
        "properties": { "tags": ["security", "encryption-at-rest", "azure"] },
    })
}

/// Every rule, in the fixed order `ruleIndex` refers to.
fn rules() -> Vec<Value> {
    let mut all: Vec<Value> = catalog::entries()
        .iter()
        .flat_map(|e| REQUIREMENTS.map(|r| rule(e, r)))
        .collect();
    all.push(unmapped_rule());
    all
}

fn rule_index(finding: &Finding) -> (String, usize) {
    let unmapped = || (UNMAPPED_RULE.to_string(), catalog::entries().len() * REQUIREMENTS.len());
    let Some(requirement) = finding.requirement() else {
        return unmapped();
    };
    let Some(position) = catalog::entries()
        .iter()
        .position(|e| e.resource_type.eq_ignore_ascii_case(finding.resource_type.trim()))
    else {
        return unmapped();
    };
    let offset = REQUIREMENTS.iter().position(|r| *r == requirement).unwrap_or_default();
    (
        rule_id(&finding.resource_type, requirement),
        position * REQUIREMENTS.len() + offset,
    )
}

/// FNV-1a (64-bit): stable across platforms, releases and runs, which is all a dedupe key needs.
fn fnv1a(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

pub(crate) fn fingerprint(resource_id: &str, rule: &str) -> String {
    fnv1a(&format!("{}\n{rule}", resource_id.trim().to_ascii_lowercase()))
}

/// The observed state in words, for messages read on a dashboard.
fn actual_phrase(actual: Option<&str>) -> String {
    let actual = actual.map(str::trim).unwrap_or("unknown");
    match actual.split_once(' ') {
        Some((kind, key)) if kind.eq_ignore_ascii_case("cmk") => format!("the customer-managed key {key}"),
        _ if actual.eq_ignore_ascii_case("cmk") => "a customer-managed key".to_string(),
        _ if actual.eq_ignore_ascii_case("mmk") => "Microsoft-managed keys".to_string(),
        _ if actual.eq_ignore_ascii_case("unencrypted") => "no encryption at rest".to_string(),
        _ if actual.eq_ignore_ascii_case("encrypted") => "encryption at rest".to_string(),
        _ if actual.eq_ignore_ascii_case("unknown") => "a key source keyguard could not read".to_string(),
        _ => actual.to_string(),
    }
}

fn should(requirement: Requirement) -> &'static str {
    match requirement {
        Requirement::Cmk => "should use a customer-managed key",
        Requirement::Mmk => "should use Microsoft-managed keys",
        Requirement::Encrypted => "should be encrypted at rest",
    }
}

fn sentence(text: &str) -> String {
    let text = text.trim();
    let mut chars = text.chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.is_empty() && !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

fn message(f: &Finding) -> String {
    let name = f.resource_name();
    let ty = &f.resource_type;
    let actual = actual_phrase(f.actual.as_deref());
    let mut parts = vec![match (f.verdict, f.requirement()) {
        (FindingVerdict::Drift, Some(req)) => format!("{name} ({ty}) {}; it has {actual}.", should(req)),
        (FindingVerdict::Drift, None) => format!("{name} ({ty}) drifted; it has {actual}."),
        (FindingVerdict::Error, _) => format!("{name} ({ty}) could not be evaluated."),
        (FindingVerdict::Exempt, _) => format!("{name} ({ty}) is exempt; it has {actual}."),
        _ => format!("{name} ({ty}) has {actual}."),
    }];
    if let Some(detail) = f.detail.as_deref().filter(|d| !d.trim().is_empty()) {
        parts.push(sentence(detail));
    }
    match (f.action.as_deref(), f.result.as_deref()) {
        (Some(action), Some(result)) => parts.push(format!("keyguard action: {action} ({result}).")),
        (Some(action), None) => parts.push(format!("keyguard action: {action}.")),
        _ => {}
    }
    parts.join(" ")
}

fn result(f: &Finding) -> Option<Value> {
    let level = match f.verdict {
        FindingVerdict::Drift => "error",
        FindingVerdict::Error => "warning",
        FindingVerdict::Exempt => "note",
        FindingVerdict::Compliant | FindingVerdict::Unsupported => return None,
    };
    let (id, index) = rule_index(f);
    let mut properties = json!({ "verdict": f.verdict.as_str() });
    for (key, value) in [
        ("subscriptionId", &f.subscription_id),
        ("resourceGroup", &f.resource_group),
        ("expected", &f.expected),
        ("actual", &f.actual),
        ("profile", &f.profile),
        ("action", &f.action),
        ("result", &f.result),
    ] {
        if let Some(v) = value {
            properties[key] = json!(v);
        }
    }
    if let Some(t) = f.checked_at {
        properties["checkedAt"] = json!(rfc3339(t));
    }
    let mut out = json!({
        "ruleId": id,
        "ruleIndex": index,
        "level": level,
        "message": { "text": message(f) },
        "locations": [{
            "logicalLocations": [{
                "name": f.resource_name(),
                "fullyQualifiedName": f.resource_id,
                "kind": "resource",
            }]
        }],
        "partialFingerprints": { FINGERPRINT_KEY: fingerprint(&f.resource_id, &id) },
        "properties": properties,
    });
    if f.verdict == FindingVerdict::Exempt {
        let (justification, expires) = match &f.exemption {
            Some(e) => (e.reason.clone(), e.expires.map(rfc3339)),
            None => ("exempt (no reason recorded)".to_string(), None),
        };
        let mut suppression = json!({ "kind": "external", "status": "accepted", "justification": justification });
        if let Some(expires) = expires {
            suppression["properties"] = json!({ "expires": expires });
        }
        out["suppressions"] = json!([suppression]);
    }
    Some(out)
}

pub fn render(findings: &[Finding], ctx: &ReportContext) -> String {
    let summary = summarize(findings);
    let mut driver = json!({
        "name": "keyguard",
        "version": ctx.tool_version,
        "semanticVersion": ctx.tool_version,
        "rules": rules(),
    });
    if let Some(uri) = &ctx.information_uri {
        driver["informationUri"] = json!(uri);
    }
    let log = json!({
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": driver },
            "invocations": [{
                "executionSuccessful": summary.overall.error == 0,
                "endTimeUtc": rfc3339(ctx.generated_at),
            }],
            "results": findings.iter().filter_map(result).collect::<Vec<_>>(),
            "properties": {
                "scope": ctx.scope,
                "dryRun": ctx.dry_run,
                "summary": summary.overall,
            },
        }],
    });
    let mut out = serde_json::to_string_pretty(&log).unwrap_or_default();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, render as render_any, sample};
    use std::collections::HashSet;

    fn sarif(findings: &[Finding]) -> Value {
        serde_json::from_str(&render_any(findings, Format::Sarif, &sample::context())).unwrap()
    }

    #[test]
    fn one_rule_per_catalog_type_and_requirement() {
        let log = sarif(&sample::findings());
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(log["$schema"], SARIF_SCHEMA_URI);
        let driver = &log["runs"][0]["tool"]["driver"];
        assert_eq!(driver["name"], "keyguard");
        assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
        let rules = driver["rules"].as_array().unwrap();
        assert_eq!(rules.len(), catalog::entries().len() * 3 + 1);
        let ids: HashSet<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), rules.len(), "rule ids are unique");
        for e in catalog::entries() {
            for (req, level, control) in [
                (Requirement::Cmk, 2, e.cis_level2),
                (Requirement::Mmk, 1, e.cis_level1),
                (Requirement::Encrypted, 1, e.cis_level1),
            ] {
                let id = format!("KG-{}-{}", req.as_str().to_uppercase(), e.resource_type);
                let rule = rules.iter().find(|r| r["id"] == id.as_str()).unwrap();
                assert_eq!(rule["properties"]["control"], control, "{id}");
                assert_eq!(rule["properties"]["cisLevel"], level, "{id}");
                assert_eq!(rule["properties"]["resourceType"], e.resource_type);
                for field in ["shortDescription", "fullDescription", "help"] {
                    assert!(!rule[field]["text"].as_str().unwrap().is_empty(), "{id} {field}");
                }
                assert!(
                    rule["properties"]["tags"]
                        .as_array()
                        .unwrap()
                        .contains(&json!(req.as_str()))
                );
            }
        }
        let storage_cmk = rules
            .iter()
            .find(|r| r["id"] == "KG-CMK-Microsoft.Storage/storageAccounts")
            .unwrap();
        assert_eq!(
            storage_cmk["properties"]["cisControl"],
            "CIS Microsoft Azure Foundations 3.0.0 6.1.3"
        );
    }

    #[test]
    fn results_only_for_drift_error_and_exempt_with_matching_rule_index() {
        let log = sarif(&sample::findings());
        let run = &log["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        let results = run["results"].as_array().unwrap();
        assert_eq!(results.len(), 5, "3 drift + 1 error + 1 exempt");
        for r in results {
            let index = r["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(rules[index]["id"], r["ruleId"], "{r}");
            let loc = &r["locations"][0]["logicalLocations"][0];
            assert_eq!(loc["kind"], "resource");
            assert!(
                loc["fullyQualifiedName"]
                    .as_str()
                    .unwrap()
                    .starts_with("/subscriptions/")
            );
            assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        }
        let levels: Vec<(&str, &str)> = results
            .iter()
            .map(|r| {
                (
                    r["properties"]["verdict"].as_str().unwrap(),
                    r["level"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            levels,
            [
                ("drift", "error"),
                ("exempt", "note"),
                ("drift", "error"),
                ("error", "warning"),
                ("drift", "error")
            ]
        );
        let exempt = &results[1];
        assert_eq!(
            exempt["suppressions"],
            json!([{"kind": "external", "status": "accepted",
                    "justification": "Legacy app cannot reach Key Vault; migration ticket OPS-1234",
                    "properties": {"expires": "2026-12-31T00:00:00Z"}}])
        );
        assert!(
            results
                .iter()
                .filter(|r| r != &exempt)
                .all(|r| r.get("suppressions").is_none())
        );
        assert_eq!(results[0]["ruleId"], "KG-CMK-Microsoft.Storage/storageAccounts");
        assert_eq!(results[4]["ruleId"], "KG-ENCRYPTED-Microsoft.Sql/servers/databases");
        assert!(
            results[3]["message"]["text"]
                .as_str()
                .unwrap()
                .contains("could not be evaluated. ARM answered 429"),
            "{}",
            results[3]["message"]
        );
        assert_eq!(
            results[0]["message"]["text"],
            "stpayments (Microsoft.Storage/storageAccounts) should use a customer-managed key; it has \
             Microsoft-managed keys. Expected a customer-managed key, found Microsoft-managed keys. \
             keyguard action: revert (reverted)."
        );
        assert!(
            results[2]["message"]["text"]
                .as_str()
                .unwrap()
                .contains("; it has the customer-managed key https://kv-unknown.vault.azure.net/keys/tde."),
            "{}",
            results[2]["message"]
        );
        assert_eq!(
            results[4]["message"]["text"],
            "orders (Microsoft.Sql/servers/databases) should be encrypted at rest; it has no encryption at rest. \
             Encryption at rest is turned off. keyguard action: none (dry run)."
        );
        assert_eq!(run["properties"]["summary"]["compliant"], 2);
        assert_eq!(run["invocations"][0]["executionSuccessful"], false);
    }

    #[test]
    fn fingerprints_are_stable_per_resource_and_rule() {
        let first = sarif(&sample::findings());
        let mut changed = sample::findings();
        changed[0].detail = Some("a different message".into());
        changed[0].resource_id = changed[0].resource_id.to_uppercase();
        changed.reverse();
        let second = sarif(&changed);
        let prints = |log: &Value| -> HashSet<String> {
            log["runs"][0]["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["partialFingerprints"][FINGERPRINT_KEY].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(prints(&first).len(), 5, "distinct per resource");
        assert_eq!(
            prints(&first),
            prints(&second),
            "same across runs, order, case and message"
        );
        assert_ne!(
            fingerprint("/subscriptions/s/x", "KG-CMK-A/b"),
            fingerprint("/subscriptions/s/x", "KG-MMK-A/b"),
            "a different rule is a different alert"
        );
        // Pinned: a change of algorithm would reopen every alert on every dashboard.
        assert_eq!(fnv1a(""), "cbf29ce484222325");
        assert_eq!(fnv1a("a"), "af63dc4c8601ec8c");
    }

    #[test]
    fn unknown_types_and_requirements_use_the_unmapped_rule() {
        let f = Finding {
            expected: Some("cmk".into()),
            ..Finding::error(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app",
                "Microsoft.Web/sites",
                "not in catalog",
            )
        };
        let g = Finding::error(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
            "Microsoft.Storage/storageAccounts",
            "read failed",
        );
        let log = sarif(&[f, g]);
        let rules = log["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
        for r in log["runs"][0]["results"].as_array().unwrap() {
            assert_eq!(r["ruleId"], UNMAPPED_RULE);
            assert_eq!(rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"], UNMAPPED_RULE);
        }
    }

    #[test]
    fn information_uri_only_when_known() {
        let log = sarif(&[]);
        assert!(log["runs"][0]["tool"]["driver"].get("informationUri").is_none());
        let mut ctx = sample::context();
        ctx.information_uri = Some("https://example.org/keyguard".into());
        let log: Value = serde_json::from_str(&render(&[], &ctx)).unwrap();
        assert_eq!(
            log["runs"][0]["tool"]["driver"]["informationUri"],
            "https://example.org/keyguard"
        );
        assert_eq!(log["runs"][0]["results"], json!([]));
    }
}
