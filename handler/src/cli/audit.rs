//! `keyguard audit`: the audit trail read straight from the state store, oldest first.

use std::process::ExitCode;

use super::args::AuditArgs;
use super::open_store;
use crate::audit::{query_from, render};
use crate::reconcile::AuditRecord;

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let AuditArgs {
        resource,
        since,
        until,
        limit,
        format,
    } = args;
    let query = query_from(
        resource.as_deref(),
        since.as_deref(),
        until.as_deref(),
        limit,
        time::OffsetDateTime::now_utc(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let store = open_store().await?;
    let records: Vec<AuditRecord> = store.audit_records(&query).await?;
    print!("{}", render(&records, format).map_err(|e| anyhow::anyhow!(e))?);
    Ok(ExitCode::SUCCESS)
}
