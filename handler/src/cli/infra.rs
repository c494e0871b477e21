//! `keyguard infra export`: writes the deployment's catalog-derived JSON (role, event filters,
//! policy ids) that the Bicep in `infra/` loads. The derivation is in `keyguard_core::infra`;
//! this file only writes or compares.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct InfraArgs {
    #[command(subcommand)]
    command: InfraCommand,
}

#[derive(Subcommand)]
enum InfraCommand {
    /// Write role.json, event-filters.json and policies.json, derived from the catalog.
    Export {
        #[arg(long, default_value = "infra/generated")]
        out: PathBuf,
        /// Write nothing; exit 1 when a file in --out differs from what the catalog says now.
        #[arg(long)]
        check: bool,
    },
}

pub fn run(args: InfraArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        InfraCommand::Export { out, check: false } => {
            for path in export(&out)? {
                println!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        InfraCommand::Export { out, check: true } => {
            let stale = stale_files(&out)?;
            for name in &stale {
                eprintln!(
                    "{} differs from the catalog: run keyguard infra export --out {}",
                    out.join(name).display(),
                    out.display()
                );
            }
            Ok(if stale.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Writes every generated file into `out` (created if missing); returns the paths written.
pub fn export(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    keyguard_core::infra::files()
        .into_iter()
        .map(|file| {
            let path = out.join(file.name);
            std::fs::write(&path, file.contents).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// Names of the generated files that are missing from `out` or differ from the catalog.
pub fn stale_files(out: &Path) -> anyhow::Result<Vec<&'static str>> {
    let mut stale = Vec::new();
    for file in keyguard_core::infra::files() {
        let path = out.join(file.name);
        match std::fs::read_to_string(&path) {
            Ok(text) if text == file.contents => {}
            Ok(_) => stale.push(file.name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => stale.push(file.name),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    Ok(stale)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn committed() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/generated")
    }

    /// The Bicep deploys what is committed; it must be what the catalog says now.
    #[test]
    fn committed_infra_files_match_the_catalog() {
        let stale = stale_files(&committed()).unwrap();
        assert!(
            stale.is_empty(),
            "infra/generated/{stale:?} differ from the catalog: run `cargo run -p keyguard -- infra export --out infra/generated`"
        );
    }

    #[test]
    fn export_writes_files_that_then_check_clean_and_a_change_is_caught() {
        let dir = std::env::temp_dir().join(format!("keyguard-infra-{}", uuid::Uuid::new_v4()));
        let written = export(&dir).unwrap();
        assert_eq!(written.len(), 3);
        assert!(stale_files(&dir).unwrap().is_empty());
        std::fs::write(dir.join("role.json"), "{}\n").unwrap();
        std::fs::remove_file(dir.join("policies.json")).unwrap();
        assert_eq!(stale_files(&dir).unwrap(), ["role.json", "policies.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
