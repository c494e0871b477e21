//! `keyguard scan`: a sweep of a subscription, resource group or management group, or an offline
//! evaluation of Azure CLI exports. A progress bar only on a terminal and only for sweeps longer
//! than a second; the report and exit code as `report` writes them, and 2 for an unfinished sweep.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keyguard_core::config::Config;
use keyguard_core::inventory;
use keyguard_report::Finding;
use time::OffsetDateTime;

use super::args::ScanArgs;
use super::report::{ReportArgs, apply_requirement, deliver};
use crate::environment::Environment;
use crate::sweep::{self, ScanProgress};

pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let ScanArgs {
        subscription,
        resource_group,
        management_group,
        types,
        dry_run,
        report: ReportArgs {
            require,
            format,
            output,
        },
        from_file,
        listing,
        resume,
        time_budget,
    } = args;
    let mut settings = Environment::from_env()?;
    apply_requirement(&mut settings.config, require);
    if !from_file.is_empty() {
        let findings = offline_findings(&from_file, &settings.config)?;
        let names: Vec<String> = from_file.iter().map(|f| f.display().to_string()).collect();
        return deliver(&findings, format, output.as_deref(), &names.join(", "), true);
    }
    let scope = match (subscription, resource_group, management_group) {
        (Some(s), Some(g), None) => format!("/subscriptions/{s}/resourceGroups/{g}"),
        (Some(s), None, None) => format!("/subscriptions/{s}"),
        (None, None, Some(m)) => format!("/providers/Microsoft.Management/managementGroups/{m}"),
        _ => {
            anyhow::bail!("give --subscription (with an optional --resource-group), --management-group, or --from-file")
        }
    };
    let scope = keyguard_core::arm_scope::ArmScope::parse(&scope).map_err(|e| anyhow::anyhow!(e))?;
    let context = settings.build_context().await?;
    let request = sweep::ScanRequest {
        scope,
        types,
        dry_run: dry_run || require.is_some(),
        listing,
        resume,
        budget: time_budget,
    };
    let progress = Progress::new();
    let report = sweep::scan(&context, &request, &|state| progress.update(state)).await;
    progress.finish();
    let report = report?;
    eprintln!(
        "{}{}: {} listed in {} page(s), {} evaluated, {} ARM request(s), {} throttled, {} ms{}",
        report.scope,
        if report.resumed { " (resumed)" } else { "" },
        report.listed,
        report.pages,
        report.evaluated,
        report.requests,
        report.throttled,
        report.duration_ms,
        if report.complete {
            ""
        } else {
            " — UNFINISHED: run again with --resume"
        }
    );
    for vault in &report.keys.vaults {
        eprintln!(
            "vault {}: {} resource(s), {} key(s){}",
            vault.vault,
            vault.resources,
            vault.keys,
            if vault.outside_estate {
                " — OUTSIDE THE ESTATE"
            } else {
                ""
            }
        );
    }
    for key in &report.keys.unusable_keys {
        eprintln!(
            "KEY UNUSABLE {}: {}; {} resource(s) depend on it: {}",
            key.key,
            key.problems.join("; "),
            key.resources.len(),
            key.resources.join(", ")
        );
    }
    let code = deliver(
        &report.findings,
        format,
        output.as_deref(),
        &report.scope,
        request.dry_run,
    )?;
    Ok(if report.complete { code } else { ExitCode::from(2) })
}

/// Evaluates Azure CLI exports: no credentials, no network, no state store.
pub fn offline_findings(files: &[PathBuf], config: &Config) -> anyhow::Result<Vec<Finding>> {
    let mut parts = Vec::new();
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let name = file.display().to_string();
        parts.push(inventory::parse_export_bytes(&bytes, &name).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let inventory = inventory::merge(parts);
    for warning in &inventory.warnings {
        eprintln!("warning: {warning}");
    }
    for gap in inventory.gaps() {
        eprintln!("incomplete: {gap}");
    }
    let now = OffsetDateTime::now_utc();
    Ok(inventory
        .items
        .iter()
        .map(|item| {
            let evaluation = keyguard_core::evaluate_view(&item.id, &item.view(), config, now);
            Finding::from_evaluation(&evaluation, Some(now))
        })
        .collect())
}

/// A progress bar on stderr, shown only on a terminal and only once a sweep has run a second.
pub struct Progress {
    started: Instant,
    bar: Mutex<Option<indicatif::ProgressBar>>,
    enabled: bool,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            bar: Mutex::new(None),
            enabled: std::io::stderr().is_terminal(),
        }
    }

    pub fn update(&self, state: &ScanProgress) {
        if !self.enabled || self.started.elapsed() < Duration::from_secs(1) {
            return;
        }
        let mut bar = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        let bar = bar.get_or_insert_with(|| match state.total {
            // Resource Graph says how many there are: a bar.
            Some(total) => indicatif::ProgressBar::new(total as u64).with_style(
                indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} resources {wide_bar} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            ),
            // ARM lists do not: a counter.
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{spinner} {pos} resources evaluated ({elapsed})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            ),
        });
        if let Some(total) = state.total {
            bar.set_length(total as u64);
        }
        bar.set_position(state.evaluated as u64);
    }

    pub fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

/// Why a `--time-budget` is refused.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("{0:?} is not a duration like 90s, 10m or 2h")]
    NotADuration(String),
    #[error("{0:?}: the unit is s, m or h")]
    Unit(String),
    #[error("the time budget must be more than zero")]
    Zero,
}

/// `90s`, `10m`, `2h`, or plain seconds.
pub fn parse_budget(text: &str) -> Result<Duration, BudgetError> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| BudgetError::NotADuration(text.to_string()))?;
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(BudgetError::Unit(text.to_string())),
    };
    let secs = n
        .checked_mul(unit_secs)
        .ok_or_else(|| BudgetError::NotADuration(text.to_string()))?;
    if secs == 0 {
        return Err(BudgetError::Zero);
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::cli::report::RequireArg;

    #[test]
    fn budgets_parse() {
        assert_eq!(parse_budget("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_budget("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_budget("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_budget("45").unwrap(), Duration::from_secs(45));
        assert!(parse_budget("0").is_err());
        assert!(parse_budget("soon").is_err());
        assert!(parse_budget("5d").is_err());
        // Past u64 seconds: refused, not an overflow.
        assert!(parse_budget("9999999999999999999h").is_err());
    }

    #[test]
    fn offline_exports_are_evaluated_without_any_service() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/keyguard-core/testdata/az-export"
        );
        let files: Vec<PathBuf> = ["storage-account-list.json", "disk-list.json"]
            .iter()
            .map(|f| Path::new(dir).join(f))
            .filter(|p| p.exists())
            .collect();
        assert_eq!(files.len(), 2, "sample exports moved? {dir}");
        let mut config = Config::builtin_default();
        apply_requirement(&mut config, Some(RequireArg::Cmk));
        let findings = offline_findings(&files, &config).unwrap();
        assert!(!findings.is_empty());
        assert!(
            findings
                .iter()
                .any(|f| f.verdict == keyguard_report::FindingVerdict::Drift)
        );
        assert!(
            findings
                .iter()
                .any(|f| f.verdict == keyguard_report::FindingVerdict::Compliant)
        );
        let missing = offline_findings(&[PathBuf::from("/nonexistent/export.json")], &config).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/export.json"));
    }
}
