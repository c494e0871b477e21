//! `keyguard catalog`: the resource types keyguard knows, as a table or JSON.

use std::process::ExitCode;

use super::args::CatalogFormat;

pub fn run(format: CatalogFormat) -> anyhow::Result<ExitCode> {
    let rows = keyguard_core::catalog::catalog_table();
    match format {
        CatalogFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        CatalogFormat::Table => {
            println!(
                "{:<48} {:<58} {:<34} {:<40} {:<24} {:<24} CIS (L1 / L2)",
                "TYPE", "KEY SOURCE", "MMK", "CMK", "TO CMK", "TO MMK"
            );
            for r in &rows {
                println!(
                    "{:<48} {:<58} {:<34} {:<40} {:<24} {:<24} {} / {}",
                    r.resource_type, r.key_source, r.mmk, r.cmk, r.to_cmk, r.to_mmk, r.cis_level1, r.cis_level2
                );
            }
            println!("{} types", rows.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
