//! keyguard's findings model and the reports made from it: a terminal table, JSON, CSV, SARIF 2.1.0
//! for security dashboards, and one self-contained HTML file for auditors.
//!
//! Pure: every renderer returns a `String`; writing it somewhere, deciding whether stdout is a
//! terminal (colour) and reading the clock are the caller's business, so the output for a given
//! input is reproducible byte for byte (the committed `samples/sample.sarif` relies on that).
//!
//! Rule and type metadata (CIS mapping, notes) come from `keyguard_core::catalog`, never copied here.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use keyguard_core::catalog::{self, EncryptionState};
use keyguard_core::config::Requirement;
use keyguard_core::evaluate::{Evaluation, Verdict};
use keyguard_core::rfc3339;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod csv_report;
mod html;
mod sarif;
mod table;
mod text;
mod vaults;
pub use vaults::{VaultUse, vaults_in_use};

pub use sarif::{SARIF_SCHEMA_URI, UNMAPPED_RULE, rule_id};

/// The reported outcome for one resource. Named apart from `keyguard_core::Verdict` (which has no
/// `Error`: a resource that could not be read never reaches `evaluate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingVerdict {
    Compliant,
    Drift,
    Exempt,
    Unsupported,
    Error,
}

impl FindingVerdict {
    /// In the order reports list them.
    pub const ALL: [FindingVerdict; 5] = [
        FindingVerdict::Compliant,
        FindingVerdict::Drift,
        FindingVerdict::Exempt,
        FindingVerdict::Unsupported,
        FindingVerdict::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingVerdict::Compliant => "compliant",
            FindingVerdict::Drift => "drift",
            FindingVerdict::Exempt => "exempt",
            FindingVerdict::Unsupported => "unsupported",
            FindingVerdict::Error => "error",
        }
    }
}

impl fmt::Display for FindingVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FindingExemption {
    pub reason: String,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires: Option<OffsetDateTime>,
}

/// What keyguard found for one resource. Every field a report shows, and nothing it must look up:
/// renderers only add catalog metadata (rule texts, CIS mapping) by `resource_type`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub resource_id: String,
    pub resource_type: String,
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    pub verdict: FindingVerdict,
    /// The requirement: `cmk`, `mmk` or `encrypted`.
    pub expected: Option<String>,
    /// What was observed: `mmk`, `cmk <key id>`, `encrypted`, `unencrypted` or `unknown`.
    pub actual: Option<String>,
    pub profile: Option<String>,
    /// What keyguard did or would do (`revert`, `alert`, `none`, ...).
    pub action: Option<String>,
    /// How that action ended (`reverted`, `failed`, `dry-run`, ...).
    pub result: Option<String>,
    pub detail: Option<String>,
    pub exemption: Option<FindingExemption>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub checked_at: Option<OffsetDateTime>,
    /// Found by a dry run or a report-only sweep: what was seen and would be done, nothing written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The vault host of a customer-managed key, and whether it was judged outside the estate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outside_estate: bool,
}

impl Finding {
    /// A finding with only the identity filled in; subscription and resource group are read from
    /// the id when it parses.
    pub fn new(resource_id: &str, resource_type: &str, verdict: FindingVerdict) -> Finding {
        let parsed = keyguard_core::ResourceId::parse(resource_id).ok();
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Finding {
            resource_id: resource_id.to_string(),
            resource_type: canonical_type(resource_type),
            subscription_id: parsed.as_ref().and_then(|id| non_empty(id.subscription())),
            resource_group: parsed.as_ref().and_then(|id| non_empty(id.resource_group())),
            verdict,
            expected: None,
            actual: None,
            profile: None,
            action: None,
            result: None,
            detail: None,
            exemption: None,
            checked_at: None,
            dry_run: false,
            vault: None,
            outside_estate: false,
        }
    }

    /// A resource that could not be evaluated (read failed, throttled out, ...).
    pub fn error(resource_id: &str, resource_type: &str, detail: &str) -> Finding {
        Finding {
            detail: Some(detail.to_string()),
            ..Finding::new(resource_id, resource_type, FindingVerdict::Error)
        }
    }

    /// The finding for one evaluation. Action and result stay empty: they come from the plan and
    /// its execution, which the caller knows.
    pub fn from_evaluation(eval: &Evaluation, checked_at: Option<OffsetDateTime>) -> Finding {
        let verdict = match &eval.verdict {
            Verdict::Compliant => FindingVerdict::Compliant,
            Verdict::Drift(_) => FindingVerdict::Drift,
            Verdict::Exempt { .. } => FindingVerdict::Exempt,
            Verdict::Unsupported { .. } => FindingVerdict::Unsupported,
        };
        let mut details = Vec::new();
        match &eval.verdict {
            Verdict::Drift(reason) => details.push(reason.describe()),
            Verdict::Unsupported { reason } if !reason.is_empty() => details.push(reason.clone()),
            _ => {}
        }
        if let EncryptionState::Unknown(raw) = &eval.observed {
            details.push(format!("key source: {raw}"));
        }
        details.extend(eval.notes.iter().cloned());
        let exemption = match &eval.verdict {
            Verdict::Exempt { reason, expires, .. } => Some(FindingExemption {
                reason: reason.clone(),
                expires: *expires,
            }),
            _ => None,
        };
        Finding {
            expected: eval.requirement.map(|r| r.as_str().to_string()),
            actual: Some(describe_state(&eval.observed)),
            profile: eval.profile.clone(),
            detail: (!details.is_empty()).then(|| details.join("; ")),
            exemption,
            checked_at,
            vault: match &eval.observed {
                EncryptionState::Cmk(key) => key.vault_host().map(str::to_string),
                _ => None,
            },
            outside_estate: matches!(
                eval.verdict,
                Verdict::Drift(keyguard_core::evaluate::DriftReason::VaultOutsideEstate { .. })
            ),
            ..Finding::new(eval.resource_id.as_str(), &eval.resource_type, verdict)
        }
    }

    /// The resource's own name (last id segment), or the whole id when it has none.
    pub fn resource_name(&self) -> &str {
        self.resource_id
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.resource_id)
    }

    /// The requirement, when `expected` names one keyguard knows.
    pub fn requirement(&self) -> Option<Requirement> {
        match self.expected.as_deref().map(str::trim) {
            Some(e) if e.eq_ignore_ascii_case("cmk") => Some(Requirement::Cmk),
            Some(e) if e.eq_ignore_ascii_case("mmk") => Some(Requirement::Mmk),
            Some(e) if e.eq_ignore_ascii_case("encrypted") => Some(Requirement::Encrypted),
            _ => None,
        }
    }
}

/// The catalog's spelling of a type, so `microsoft.storage/STORAGEACCOUNTS` from an id groups with
/// the rest; unknown types are kept as given.
fn canonical_type(resource_type: &str) -> String {
    catalog::lookup(resource_type).map_or_else(|| resource_type.trim().to_string(), |e| e.resource_type.to_string())
}

/// The `actual` column for an observed state.
pub fn describe_state(state: &EncryptionState) -> String {
    match state {
        EncryptionState::Mmk => "mmk".to_string(),
        EncryptionState::Cmk(key) => format!("cmk {}", key.key_id()),
        EncryptionState::Encrypted => "encrypted".to_string(),
        EncryptionState::Disabled => "unencrypted".to_string(),
        EncryptionState::Unknown(_) => "unknown".to_string(),
        EncryptionState::KeyOutsideKeyVault { reference, .. } => format!("key outside Key Vault {reference}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Table,
    Json,
    Csv,
    Sarif,
    Html,
}

impl Format {
    pub const ALL: [Format; 5] = [Format::Table, Format::Json, Format::Csv, Format::Sarif, Format::Html];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Sarif => "sarif",
            Format::Html => "html",
        }
    }

    /// For `--output` defaults and downloads.
    pub fn file_extension(self) -> &'static str {
        match self {
            Format::Table => "txt",
            other => other.as_str(),
        }
    }

    /// For an HTTP `Content-Type`.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Table => "text/plain; charset=utf-8",
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Sarif => "application/sarif+json",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown format {:?}: expected one of table, json, csv, sarif, html",
            self.0
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Case-insensitive, so `clap::builder::PossibleValuesParser` or a query parameter can feed it.
    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// Facts about the run that every report states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportContext {
    pub tool_version: String,
    pub generated_at: OffsetDateTime,
    /// What was checked, for humans: `subscription 0000... / resource group rg`.
    pub scope: String,
    /// ANSI colour in the table; the caller decides (terminal, `NO_COLOR`).
    pub colour: bool,
    pub dry_run: bool,
    /// The tool's home page for SARIF `tool.driver.informationUri`; omitted when `None`, because the
    /// schema requires a valid URI and the project has none to invent.
    pub information_uri: Option<String>,
}

impl ReportContext {
    pub fn new(tool_version: &str, generated_at: OffsetDateTime, scope: &str) -> ReportContext {
        ReportContext {
            tool_version: tool_version.to_string(),
            generated_at,
            scope: scope.to_string(),
            colour: false,
            dry_run: false,
            information_uri: None,
        }
    }
}

pub fn render(findings: &[Finding], format: Format, ctx: &ReportContext) -> String {
    match format {
        Format::Table => table::render(findings, ctx),
        Format::Json => render_json(findings),
        Format::Csv => csv_report::render(findings),
        Format::Sarif => sarif::render(findings, ctx),
        Format::Html => html::render(findings, ctx),
    }
}

fn render_json(findings: &[Finding]) -> String {
    // Serialising plain strings, options and RFC 3339 times cannot fail; the fallback keeps the
    // output valid JSON should that ever change.
    let mut out = serde_json::to_string_pretty(findings).unwrap_or_else(|_| "[]".to_string());
    out.push('\n');
    out
}

/// Counts per verdict, for one group (all findings, one subscription, one type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub total: usize,
    pub compliant: usize,
    pub drift: usize,
    pub exempt: usize,
    pub unsupported: usize,
    pub error: usize,
}

impl Counts {
    fn add(&mut self, verdict: FindingVerdict) {
        self.total += 1;
        *self.slot(verdict) += 1;
    }

    fn slot(&mut self, verdict: FindingVerdict) -> &mut usize {
        match verdict {
            FindingVerdict::Compliant => &mut self.compliant,
            FindingVerdict::Drift => &mut self.drift,
            FindingVerdict::Exempt => &mut self.exempt,
            FindingVerdict::Unsupported => &mut self.unsupported,
            FindingVerdict::Error => &mut self.error,
        }
    }

    pub fn get(&self, verdict: FindingVerdict) -> usize {
        match verdict {
            FindingVerdict::Compliant => self.compliant,
            FindingVerdict::Drift => self.drift,
            FindingVerdict::Exempt => self.exempt,
            FindingVerdict::Unsupported => self.unsupported,
            FindingVerdict::Error => self.error,
        }
    }
}

/// Label used for findings without a subscription (an unparsable id, an offline export without ids).
pub const NO_SUBSCRIPTION: &str = "(none)";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub overall: Counts,
    /// Keyed by subscription id (lower-case, as ARM compares them).
    pub by_subscription: BTreeMap<String, Counts>,
    /// Keyed by resource type in the catalog's spelling.
    pub by_type: BTreeMap<String, Counts>,
}

pub fn summarize(findings: &[Finding]) -> Summary {
    let mut summary = Summary::default();
    for f in findings {
        summary.overall.add(f.verdict);
        let sub = f
            .subscription_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map_or_else(|| NO_SUBSCRIPTION.to_string(), str::to_ascii_lowercase);
        summary.by_subscription.entry(sub).or_default().add(f.verdict);
        summary
            .by_type
            .entry(canonical_type(&f.resource_type))
            .or_default()
            .add(f.verdict);
    }
    summary
}

/// Process exit code: 2 if anything could not be checked (an unknown state is not a clean bill),
/// else 1 if anything drifted, else 0. Exempt and unsupported never fail a run.
pub fn exit_code(findings: &[Finding]) -> i32 {
    if findings.iter().any(|f| f.verdict == FindingVerdict::Error) {
        2
    } else if findings.iter().any(|f| f.verdict == FindingVerdict::Drift) {
        1
    } else {
        0
    }
}

pub mod sample;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{context as ctx, findings as sample_findings};
    use keyguard_core::{Config, ResourceId, evaluate};
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn format_parses_every_name_case_insensitively() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
            assert_eq!(f.as_str().to_uppercase().parse::<Format>(), Ok(f));
        }
        let err = "xml".parse::<Format>().unwrap_err();
        assert!(err.to_string().contains("table, json, csv, sarif, html"), "{err}");
    }

    #[test]
    fn exit_codes() {
        let f = |v| Finding::new("/subscriptions/s/resourceGroups/rg/providers/A.B/c/d", "A.B/c", v);
        use FindingVerdict::*;
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(&[f(Compliant), f(Exempt), f(Unsupported)]), 0);
        assert_eq!(exit_code(&[f(Compliant), f(Drift), f(Exempt)]), 1);
        assert_eq!(exit_code(&[f(Error), f(Compliant)]), 2);
        assert_eq!(exit_code(&[f(Drift), f(Error), f(Drift)]), 2, "error wins over drift");
        assert_eq!(exit_code(&[f(Exempt), f(Exempt), f(Exempt)]), 0, "exempt never fails");
    }

    #[test]
    fn summary_counts_by_verdict_subscription_and_type() {
        let findings = sample_findings();
        let s = summarize(&findings);
        assert_eq!(
            s.overall,
            Counts {
                total: 8,
                compliant: 2,
                drift: 3,
                exempt: 1,
                unsupported: 1,
                error: 1
            }
        );
        assert_eq!(s.by_subscription.len(), 2);
        let prod = &s.by_subscription["00000000-0000-0000-0000-000000000000"];
        assert_eq!((prod.total, prod.drift, prod.error), (6, 2, 1));
        let dev = &s.by_subscription["11111111-1111-1111-1111-111111111111"];
        assert_eq!((dev.total, dev.drift, dev.exempt), (2, 1, 0));
        let storage = &s.by_type["Microsoft.Storage/storageAccounts"];
        assert_eq!(
            (storage.total, storage.compliant, storage.drift, storage.exempt),
            (3, 1, 1, 1)
        );
        assert_eq!(
            s.by_type.values().map(|c| c.total).sum::<usize>(),
            8,
            "every finding counted once by type"
        );
        for v in FindingVerdict::ALL {
            let by_sub: usize = s.by_subscription.values().map(|c| c.get(v)).sum();
            assert_eq!(by_sub, s.overall.get(v), "{v}");
        }
    }

    #[test]
    fn summary_groups_case_variants_and_missing_subscriptions() {
        let mut a = Finding::new(
            "/subscriptions/AAAA/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x",
            "microsoft.storage/STORAGEACCOUNTS",
            FindingVerdict::Drift,
        );
        let b = Finding::new(
            "/subscriptions/aaaa/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/y",
            "Microsoft.Storage/storageAccounts",
            FindingVerdict::Compliant,
        );
        let c = Finding::new("not-an-id", "Other/thing", FindingVerdict::Error);
        a.resource_type = "microsoft.storage/STORAGEACCOUNTS".into();
        let s = summarize(&[a, b, c]);
        assert_eq!(s.by_subscription.keys().collect::<Vec<_>>(), ["(none)", "aaaa"]);
        assert_eq!(s.by_type["Microsoft.Storage/storageAccounts"].total, 2);
        assert_eq!(s.by_type["Other/thing"].error, 1);
    }

    #[test]
    fn json_is_a_list_of_findings_with_the_documented_fields() {
        let findings = sample_findings();
        let out = render(&findings, Format::Json, &ctx());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), findings.len());
        for (item, f) in list.iter().zip(&findings) {
            for key in ["resourceId", "resourceType", "verdict", "expected", "actual"] {
                assert!(item.get(key).is_some(), "{key} missing in {item}");
            }
            assert_eq!(item["verdict"], f.verdict.as_str());
        }
        let exempt = list.iter().find(|i| i["verdict"] == "exempt").unwrap();
        assert_eq!(
            exempt["exemption"],
            json!({"reason": "Legacy app cannot reach Key Vault; migration ticket OPS-1234", "expires": "2026-12-31T00:00:00Z"})
        );
        let back: Vec<Finding> = serde_json::from_str(&out).unwrap();
        assert_eq!(back, findings, "JSON round-trips");
    }

    #[test]
    fn finding_from_real_evaluations_of_microsoft_fixtures() {
        let config = Config::from_toml_str(
            "[[profile]]\nname = \"prod\"\nrequire = \"cmk\"\n\n[[exemption]]\nresource = \"/subscriptions/*/resourceGroups/legacy/**\"\nreason = \"legacy\"\nexpires = \"2027-01-01T00:00:00Z\"\n",
            "test",
        )
        .unwrap();
        let now = datetime!(2026-06-01 12:00 UTC);
        let mmk = fixture_body("storage/StorageAccountGetProperties.json");
        let cmk = fixture_body("storage/StorageAccountGetPropertiesCMKEnabled.json");
        let id = |rg: &str| {
            ResourceId::parse(&format!(
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/sto1"
            ))
            .unwrap()
        };

        let drift = Finding::from_evaluation(&evaluate(&id("rg"), &mmk, &config, now), Some(now));
        assert_eq!(drift.verdict, FindingVerdict::Drift);
        assert_eq!(drift.expected.as_deref(), Some("cmk"));
        assert_eq!(drift.actual.as_deref(), Some("mmk"));
        assert_eq!(drift.profile.as_deref(), Some("prod"));
        assert_eq!(drift.resource_group.as_deref(), Some("rg"));
        assert_eq!(
            drift.subscription_id.as_deref(),
            Some("00000000-0000-0000-0000-000000000000")
        );
        assert!(
            drift
                .detail
                .as_deref()
                .unwrap()
                .contains("found Microsoft-managed keys")
        );
        assert_eq!(drift.checked_at, Some(now));

        let ok = Finding::from_evaluation(&evaluate(&id("rg"), &cmk, &config, now), None);
        assert_eq!(ok.verdict, FindingVerdict::Compliant, "{ok:?}");
        assert!(ok.actual.as_deref().unwrap().starts_with("cmk https://"), "{ok:?}");

        let exempt = Finding::from_evaluation(&evaluate(&id("legacy"), &mmk, &config, now), None);
        assert_eq!(exempt.verdict, FindingVerdict::Exempt);
        assert_eq!(
            exempt.exemption,
            Some(FindingExemption {
                reason: "legacy".into(),
                expires: Some(datetime!(2027-01-01 0:00 UTC))
            })
        );
    }

    fn fixture_body(path: &str) -> serde_json::Value {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/arm");
        let text = std::fs::read_to_string(dir.join(path)).unwrap();
        let example: serde_json::Value = serde_json::from_str(&text).unwrap();
        example["responses"]["200"]["body"].clone()
    }

    #[test]
    fn resource_name_and_requirement() {
        let f = &sample_findings()[0];
        assert_eq!(f.resource_name(), "stpayments");
        assert_eq!(f.requirement(), Some(Requirement::Cmk));
        let odd = Finding::new("", "", FindingVerdict::Error);
        assert_eq!(odd.resource_name(), "");
        assert_eq!(odd.requirement(), None);
    }
}
