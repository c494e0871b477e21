//! `keyguard alerts` (the outbox: queued, sent and parked alerts; `--resend` re-queues a parked
//! one) and `keyguard alert test` (a sample alert through one route).

use std::process::ExitCode;

use anyhow::Context as _;

use super::args::{AlertCommand, AlertsArgs};
use crate::environment::Environment;
use crate::{alerting, outbox, store};

pub async fn show_outbox(args: AlertsArgs) -> anyhow::Result<ExitCode> {
    let AlertsArgs { failed, resend } = args;
    let settings = Environment::from_env()?;
    let context = settings.build_context().await?;
    if let Some(id) = resend {
        let alerter = context.alerter.as_ref().context("no alert routes are configured")?;
        if !alerter.dispatcher().resend(&id).await? {
            anyhow::bail!("{id} is not a parked alert");
        }
        let report = alerter.dispatcher().run_due(time::OffsetDateTime::now_utc()).await?;
        println!(
            "{id}: re-queued; sent {}, retrying {}, parked {}",
            report.sent, report.retried, report.parked
        );
        return Ok(ExitCode::SUCCESS);
    }
    let entries: Vec<store::OutboxEntry> = context
        .store
        .outbox_entries()
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect();
    let shown: Vec<_> = entries
        .iter()
        .filter(|e| !failed || e.status == store::OutboxStatus::Parked)
        .collect();
    for e in &shown {
        println!(
            "{}  {:<8} {:<10} attempts {:<3} {}  {}{}",
            e.id,
            format!("{:?}", e.status).to_lowercase(),
            e.route,
            e.attempts,
            e.alert.resource_name,
            e.alert.title(),
            e.last_error.as_deref().map(|m| format!("  [{m}]")).unwrap_or_default()
        );
    }
    println!("{} of {} outbox entries", shown.len(), entries.len());
    Ok(if failed && !shown.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn alert(command: AlertCommand) -> anyhow::Result<ExitCode> {
    match command {
        AlertCommand::Test { route } => {
            let settings = Environment::from_env()?;
            let channels = alerting::ConfiguredChannels::from_config(&settings.config, |k| std::env::var(k).ok())?;
            let channel = outbox::ChannelResolver::channel(&channels, &route, &[])
                .map_err(|e| anyhow::anyhow!("{e} (configured: {})", channels.route_names().join(", ")))?;
            channel
                .send(&keyguard_notify::Alert::sample())
                .await
                .map_err(|e| anyhow::anyhow!("route {route}: {e}"))?;
            println!("route {route}: sample alert delivered");
            Ok(ExitCode::SUCCESS)
        }
    }
}
