//! `keyguard config validate`: parse a profile file and print what it holds; errors name the line
//! and column.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::args::ConfigCommand;

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Validate { path } => validate(path),
    }
}

fn validate(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let path = path
        .or_else(|| std::env::var_os("KEYGUARD_CONFIG").map(PathBuf::from))
        .context("give a path or set KEYGUARD_CONFIG")?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = keyguard_core::config::Config::from_toml_str(&text, &path.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for p in &config.profiles {
        println!("profile {:<24} require {:?}, mode {:?}", p.name, p.require, p.mode);
    }
    let settings = &config.settings;
    let tag_exemptions = if settings.tag_exemptions {
        format!("tag exemptions on, at most {} days ahead", settings.max_exemption_days)
    } else {
        "tag exemptions off".to_string()
    };
    for warning in keyguard_core::advice::advisories(&config) {
        eprintln!("warning: {warning}");
    }
    println!(
        "{}: ok ({} profiles, {} exemptions, {tag_exemptions})",
        path.display(),
        config.profiles.len(),
        config.exemptions.len()
    );
    Ok(ExitCode::SUCCESS)
}
