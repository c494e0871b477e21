//! What `keyguard check` and `keyguard scan` share, for people at a terminal or in a pipeline: the
//! requirement to judge by, findings in the format asked for (to stdout or a file), exit code 0
//! compliant / 1 drift / 2 error, colour only on a terminal.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use keyguard_core::config::{Config, Requirement};
use keyguard_report::{Finding, Format, ReportContext};
use time::OffsetDateTime;

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

/// `--require X`: see [`Config::require_only`].
pub fn apply_requirement(config: &mut Config, require: Option<RequireArg>) {
    if let Some(require) = require {
        config.require_only(require.requirement());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_replaces_the_profiles_with_one_report_only_profile() {
        let mut config = Config::builtin_default();
        apply_requirement(&mut config, Some(RequireArg::Mmk));
        assert_eq!(config.profiles.len(), 1);
        assert_eq!(config.profiles[0].require, Requirement::Mmk);
        assert_eq!(config.profiles[0].mode, keyguard_core::config::Mode::Audit);
        assert!(config.routes.is_empty());
    }
}
