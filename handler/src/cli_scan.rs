//! `keyguard check` and `keyguard scan` for people at a terminal or in a pipeline: findings in the
//! format asked for (to stdout or a file), exit code 0 compliant / 1 drift / 2 error, a progress
//! bar only on a terminal and only for sweeps longer than a second, colour only on a terminal.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use keyguard_core::config::{Config, Mode, Profile, Requirement, Scope as ProfileScope};
use keyguard_core::inventory;
use keyguard_report::{Finding, Format, ReportContext};
use time::OffsetDateTime;

use crate::sweep::ScanProgress;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequireArg {
    Cmk,
    Mmk,
    Encrypted,
}

impl RequireArg {
    fn requirement(self) -> Requirement {
        match self {
            RequireArg::Cmk => Requirement::Cmk,
            RequireArg::Mmk => Requirement::Mmk,
            RequireArg::Encrypted => Requirement::Encrypted,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Table,
    Json,
    Csv,
    Sarif,
    Html,
}

impl FormatArg {
    fn format(self) -> Format {
        match self {
            FormatArg::Table => Format::Table,
            FormatArg::Json => Format::Json,
            FormatArg::Csv => Format::Csv,
            FormatArg::Sarif => Format::Sarif,
            FormatArg::Html => Format::Html,
        }
    }
}

/// What `check` and `scan` share: the requirement to judge by and where the report goes.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// Check against one requirement instead of the configured profiles (report only).
    #[arg(long, value_enum)]
    pub require: Option<RequireArg>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: FormatArg,
    /// Write the report here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `--require X`: one requirement for everything, findings only (no writes, no alerts), with no
/// configuration file needed; exemptions from the configuration still apply.
pub fn apply_requirement(config: &mut Config, require: Option<RequireArg>) {
    if let Some(require) = require {
        let requirement = require.requirement();
        config.profiles = vec![Profile {
            name: format!("require-{}", requirement.as_str()),
            require: requirement,
            mode: Mode::Audit,
            allowed_vaults: Vec::new(),
            pinned_key: None,
            allow_irreversible: false,
            scope: ProfileScope::default(),
        }];
        config.routes.clear();
    }
}

/// Writes the report and says what the exit code is. `incomplete`: a sweep stopped at its budget
/// (not every resource was seen), which is an error for the exit code.
pub fn deliver(
    findings: &[Finding],
    format: FormatArg,
    output: Option<&Path>,
    scope: &str,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let to_terminal = output.is_none() && std::io::stdout().is_terminal();
    let mut ctx = ReportContext::new(env!("CARGO_PKG_VERSION"), OffsetDateTime::now_utc(), scope);
    ctx.colour = to_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    ctx.dry_run = dry_run;
    let text = keyguard_report::render(findings, format.format(), &ctx);
    match output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{} finding(s) written to {}", findings.len(), path.display());
        }
        None => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
    }
    Ok(ExitCode::from(keyguard_report::exit_code(findings).clamp(0, 255) as u8))
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
    fn require_replaces_the_profiles_with_one_report_only_profile() {
        let mut config = Config::builtin_default();
        apply_requirement(&mut config, Some(RequireArg::Mmk));
        assert_eq!(config.profiles.len(), 1);
        assert_eq!(config.profiles[0].require, Requirement::Mmk);
        assert_eq!(config.profiles[0].mode, Mode::Audit);
        assert!(config.routes.is_empty());
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
