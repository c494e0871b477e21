//! The last step: every decision becomes one structured log record and, when it concerns a
//! resource, one entry of the persisted audit trail and the resource's current finding; alerts
//! go to the outbox. The writes are keyed by the record id, so a retry after a crash cannot
//! record or alert the same thing twice.

use keyguard_core::ResourceId;
use keyguard_core::safeguards::SafeguardChange;
use time::OffsetDateTime;

use super::outcome::{AuditRecord, Decision, VerdictKind};
use super::{Context, ReconcileError};

pub(super) async fn record(
    ctx: &Context,
    mut decision: Decision,
    started: std::time::Instant,
) -> Result<Decision, ReconcileError> {
    decision.outcome.duration_ms = started.elapsed().as_millis() as u64;
    let record_id = decision
        .record_id
        .get_or_insert_with(|| uuid::Uuid::now_v7().to_string())
        .clone();
    let outcome = &decision.outcome;
    // A sweep's "still compliant" for each of thousands of resources is a finding, not news.
    if !outcome.is_auditable() && outcome.verdict == VerdictKind::Compliant {
        tracing::debug!(
            target: "keyguard::audit",
            correlation_id = %outcome.correlation_id,
            resource_id = outcome.resource_id.as_deref().unwrap_or(""),
            "compliant"
        );
    } else {
        let record = serde_json::to_string(outcome).unwrap_or_default();
        tracing::info!(
            target: "keyguard::audit",
            correlation_id = %outcome.correlation_id,
            record_id = %record_id,
            resource_id = outcome.resource_id.as_deref().unwrap_or(""),
            verdict = %outcome.verdict,
            action = %outcome.action,
            result = %outcome.result,
            caller = outcome.caller.as_deref().unwrap_or(""),
            dry_run = outcome.dry_run,
            record = %record,
            "audit"
        );
    }
    if let Some(finding) = decision.finding.as_mut() {
        finding.action = Some(outcome.action.to_string());
        finding.result = Some(outcome.result.to_string());
        finding.dry_run = outcome.dry_run;
        if finding.detail.is_none() {
            finding.detail = outcome.detail.clone();
        }
        ctx.store.put_finding(finding).await?;
    } else if outcome.verdict == VerdictKind::Gone
        && let Some(id) = outcome.resource_id.as_deref().and_then(|r| ResourceId::parse(r).ok())
    {
        ctx.store.remove_finding(&id).await?;
    }
    if let Some(resource) = outcome.resource_id.as_deref().filter(|_| outcome.is_auditable()) {
        let entry = AuditRecord {
            id: record_id.clone(),
            time: OffsetDateTime::now_utc(),
            outcome: outcome.clone(),
        };
        if !ctx.store.append_audit(resource, &record_id, &entry).await? {
            tracing::info!(record_id = %record_id, "audit record already written by an earlier attempt");
        }
    }
    if outcome.alert {
        tracing::warn!(
            target: "keyguard::alert",
            correlation_id = %outcome.correlation_id,
            resource_id = outcome.resource_id.as_deref().unwrap_or(""),
            verdict = %outcome.verdict,
            result = %outcome.result,
            detail = outcome.detail.as_deref().unwrap_or(""),
            "encryption drift alert"
        );
        if let Some(alerter) = &ctx.alerter {
            // Queued durably before this invocation answers; a failure here fails the invocation.
            alerter.raise(outcome, &decision.tags, &record_id).await?;
        }
    }
    if !outcome.safeguard_changes.is_empty() && !outcome.dry_run {
        let changes: Vec<String> = outcome
            .safeguard_changes
            .iter()
            .map(SafeguardChange::describe)
            .collect();
        tracing::warn!(
            target: "keyguard::alert",
            correlation_id = %outcome.correlation_id,
            resource_id = outcome.resource_id.as_deref().unwrap_or(""),
            caller = outcome.caller.as_deref().unwrap_or(""),
            changes = %changes.join("; "),
            "a write weakened a safeguard"
        );
        if let Some(alerter) = &ctx.alerter {
            alerter
                .raise_safeguard_changes(outcome, &decision.tags, &record_id)
                .await?;
        }
    }
    Ok(decision)
}
