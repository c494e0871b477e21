//! `keyguard store check|bench`: which state store is configured, whether it answers, and what it
//! costs per event.

use std::process::ExitCode;

use super::args::StoreCommand;
use super::open_store;

pub async fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    let store = open_store().await?;
    match command {
        StoreCommand::Check => {
            store.ping().await?;
            println!("{}: reachable", store.describe());
        }
        StoreCommand::Bench { events } => {
            let report = crate::store::bench::run(&store, events.max(1)).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
