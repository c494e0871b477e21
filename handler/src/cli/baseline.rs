//! `keyguard baseline show|set`: the known-good key a revert goes back to, read from or written
//! by hand to the state store.

use std::process::ExitCode;

use anyhow::Context as _;
use keyguard_core::ResourceId;

use super::args::BaselineCommand;
use super::open_store;
use crate::store::{BaselineSource, BaselineWrite};

pub async fn run(command: BaselineCommand) -> anyhow::Result<ExitCode> {
    match command {
        BaselineCommand::Show { resource_id } => show(&resource_id).await,
        BaselineCommand::Set {
            resource_id,
            key,
            identity,
            by,
        } => set(&resource_id, &key, identity, by).await,
    }
}

async fn show(resource_id: &str) -> anyhow::Result<ExitCode> {
    let id = ResourceId::parse(resource_id).map_err(|e| anyhow::anyhow!("{resource_id}: {e}"))?;
    let store = open_store().await?;
    match store.baseline(&id).await? {
        Some(baseline) => {
            println!("{}", serde_json::to_string_pretty(&baseline)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("{id}: no baseline recorded (it is recorded when the resource is read compliant)");
            Ok(ExitCode::from(1))
        }
    }
}

async fn set(resource_id: &str, key: &str, identity: Option<String>, by: Option<String>) -> anyhow::Result<ExitCode> {
    let id = ResourceId::parse(resource_id).map_err(|e| anyhow::anyhow!("{resource_id}: {e}"))?;
    if let Some(identity) = &identity {
        ResourceId::parse(identity).map_err(|e| anyhow::anyhow!("--identity {identity}: {e}"))?;
    }
    let key_ref = keyguard_core::KeyRef::from_key_uri(key, identity.as_deref()).with_context(|| {
        format!("--key {key:?} is not a Key Vault key URI (https://<vault>.vault.azure.net/keys/<name>[/<version>])")
    })?;
    let by = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    let store = open_store().await?;
    let now = time::OffsetDateTime::now_utc();
    let written = store
        .record_baseline(&id, &key_ref, BaselineSource::Manual, Some(&by), now)
        .await?;
    let baseline = store
        .baseline(&id)
        .await?
        .context("the baseline vanished after writing it")?;
    println!("{}", serde_json::to_string_pretty(&baseline)?);
    if written == BaselineWrite::Unchanged {
        eprintln!("{id}: that baseline was already set");
    }
    Ok(ExitCode::SUCCESS)
}
