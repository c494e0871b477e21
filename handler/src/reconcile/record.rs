//! The last step: every decision becomes one structured log record and, when it concerns a
//! resource, one entry of the persisted audit trail and the resource's current finding; its
//! alerts go to the outbox in the same store operation as the record. The writes are keyed by the
//! record id, which a retry finds again (a revert's intent, an event's marker), so a retry after a
//! failure or a crash cannot lose an alert, nor record or alert the same thing twice.

use keyguard_core::ResourceId;
use keyguard_core::safeguards::SafeguardChange;
use time::OffsetDateTime;

use super::outcome::{AuditRecord, Decision, Outcome, VerdictKind};
use super::{Context, ReconcileError};
use crate::alerting::PlannedAlerts;
use crate::store::RecordCommit;

pub(super) async fn record(
    ctx: &Context,
    mut decision: Decision,
    started: std::time::Instant,
) -> Result<Decision, ReconcileError> {
    decision.outcome.duration_ms = started.elapsed().as_millis() as u64;
    let record_id = match decision.record_id.take() {
        // A revert's intent id: whoever records how it ended records it under that id.
        Some(id) => id,
        None => record_id_for(ctx, &decision.outcome).await?,
    };
    decision.record_id = Some(record_id.clone());
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
    let mut planned = PlannedAlerts::default();
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
            alerter.plan(outcome, &decision.tags, &record_id, &mut planned).await?;
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
                .plan_safeguard_changes(outcome, &decision.tags, &record_id, &mut planned)
                .await?;
        }
    }
    // The record and its alerts in one store operation, durable before this invocation answers:
    // a failure fails the invocation, and its retry (same record id) writes only what is missing.
    if let Some(resource) = outcome.resource_id.as_deref().filter(|_| outcome.is_auditable()) {
        let entry = AuditRecord {
            id: record_id.clone(),
            time: OffsetDateTime::now_utc(),
            outcome: outcome.clone(),
        };
        let commit = RecordCommit {
            resource,
            id: &record_id,
            event_id: outcome.event_id().filter(|_| marks_its_event(outcome)),
            record: &entry,
            alerts: &planned.entries,
        };
        if !ctx.store.commit_record(commit).await? {
            tracing::info!(record_id = %record_id, "audit record already written by an earlier attempt");
        }
    } else {
        ctx.store.outbox_add_all(&planned.entries).await?;
    }
    if let Some(alerter) = &ctx.alerter {
        alerter.queued(planned).await?;
    }
    Ok(decision)
}

/// Whether the decision marks its event with its record id: one that alerts or finds drift. A
/// plain compliant event, the common case by far, skips the marker's read and write (a point
/// read more per event on Table Storage); its redelivery may record "compliant" once more.
fn marks_its_event(outcome: &Outcome) -> bool {
    outcome.is_auditable() && (outcome.alert || outcome.verdict != VerdictKind::Compliant)
}

/// A new record id, except for an event recorded before: its redelivery (after a failure, or an
/// answer Event Grid never got) records under the same id, so it writes no second record and
/// queues no second alert.
async fn record_id_for(ctx: &Context, outcome: &Outcome) -> Result<String, ReconcileError> {
    if let (Some(resource), Some(event_id)) = (outcome.resource_id.as_deref(), outcome.event_id())
        && marks_its_event(outcome)
        && let Some(earlier) = ctx.store.event_record_id(resource, event_id).await?
    {
        return Ok(earlier);
    }
    Ok(uuid::Uuid::now_v7().to_string())
}
