//! The only step that writes to ARM: a revert, under the resource's lease, announced by an intent
//! in the store before its first write, and verified by a fresh read afterwards; and the settling
//! of a revert an earlier attempt started and did not record as finished.

use keyguard_core::ResourceId;
use keyguard_core::catalog::{CatalogEntry, RevertTarget, RevertWrite, WriteMethod};
use keyguard_core::evaluate::Verdict;
use keyguard_core::rfc3339;
use reqwest::Method;
use time::OffsetDateTime;

use super::outcome::{ActionKind, Decision, ResultKind, VerdictKind};
use super::{Context, ReconcileError, lease, observe};
use crate::arm::{ArmError, CallContext};
use crate::store::{Lease, RevertIntent};

/// Where an earlier attempt's revert stands.
pub(super) enum Resumed {
    /// Its writes are done (or their fate is unknown): the fresh read decides, and if it shows
    /// the target, this reconcile records that revert's result with this text.
    Finishing(String),
    /// Still running, or failed: the decision says so; nothing else is done this time.
    Settled,
}

/// Settles the revert `intent` describes: an operation ARM accepted is followed, never written
/// over; a crash between intent and result is settled by the fresh read that follows.
pub(super) async fn resume(
    ctx: &Context,
    intent: &RevertIntent,
    decision: &mut Decision,
    call: &CallContext,
) -> Result<Resumed, ReconcileError> {
    // The intent's id is for the record of how the revert ended; a "still running" look is a
    // record of its own, or the ending could never be recorded (audit records are insert-only).
    decision.record_id = Some(intent.id.clone());
    let Some(pending) = &intent.operation else {
        return Ok(Resumed::Finishing(format!(
            "completes the revert {} started at {} ({}); verified by a fresh read",
            intent.holder,
            rfc3339(intent.started_at),
            intent.writes.join(", then ")
        )));
    };
    match ctx.arm.resume(pending, call).await {
        Ok(()) => Ok(Resumed::Finishing(
            "the revert's long-running operation completed; verified by a fresh read".into(),
        )),
        Err(ArmError::StillRunning(_)) => {
            decision.record_id = None;
            decision.outcome.alert = false;
            decision.outcome.action = ActionKind::Revert;
            let detail =
                "ARM is still applying the revert started earlier; the next event or the reconcile finishes it";
            decision.set(VerdictKind::Drift, ResultKind::RevertPending, Some(detail.into()));
            Ok(Resumed::Settled)
        }
        Err(ArmError::Rejected {
            status, code, message, ..
        }) => {
            decision.outcome.action = ActionKind::Revert;
            decision.outcome.alert = true;
            let detail = format!("the revert's long-running operation failed: {status} {code}: {message}");
            decision.set(VerdictKind::Drift, ResultKind::RevertFailed, Some(detail));
            Ok(Resumed::Settled)
        }
        Err(other) => Err(other.into()),
    }
}

/// What a revert is to do.
pub(super) struct Revert<'a> {
    pub id: &'a ResourceId,
    pub entry: &'static CatalogEntry,
    pub target: &'a RevertTarget,
    pub writes: &'a [RevertWrite],
    pub verdict: VerdictKind,
}

/// Writes the revert and checks that ARM shows the target afterwards.
pub(super) async fn revert(
    ctx: &Context,
    revert: Revert<'_>,
    mut decision: Decision,
    lease: &mut Lease,
    call: &CallContext,
    now: OffsetDateTime,
) -> Result<Decision, ReconcileError> {
    let Revert {
        id,
        entry,
        target,
        writes,
        verdict,
    } = revert;
    decision.outcome.action = ActionKind::Revert;
    // Counted before the write: a crash after the PATCH must not buy an extra revert.
    ctx.store.record_revert(id, now).await?;
    // The intent goes down before the first write; its id becomes the audit record's, so
    // whoever records the result (this call, or the next after a crash) records it once.
    let mut intent = RevertIntent {
        id: uuid::Uuid::now_v7().to_string(),
        resource_id: id.as_str().to_string(),
        correlation_id: call.correlation_id.clone(),
        event_id: decision.outcome.event_id().map(str::to_string),
        holder: ctx.settings.instance.clone(),
        started_at: now,
        target: target_text(target),
        writes: writes.iter().map(|w| write_text(id, w)).collect(),
        caller: decision.outcome.caller.clone(),
        operation: None,
    };
    ctx.store.set_revert_intent(id, Some(&intent)).await?;
    decision.record_id = Some(intent.id.clone());
    tracing::info!(
        correlation_id = %call.correlation_id, resource_id = %id, target = %target_text(target),
        writes = writes.len(), "reverting encryption drift"
    );
    for write in writes {
        let write_id = write_target(id, write).map_err(|e| ArmError::InvalidResponse(e.to_string()))?;
        let method = match write.method {
            WriteMethod::Patch => Method::PATCH,
            WriteMethod::Put => Method::PUT,
        };
        lease::confirm(ctx, id, lease, call).await?;
        let written = ctx
            .arm
            .write(
                method,
                &write_id,
                write.api_version,
                &write.body,
                entry.long_running,
                call,
            )
            .await;
        match written {
            Ok(_) => {}
            Err(ArmError::StillRunning(pending)) => {
                intent.operation = Some(pending);
                ctx.store.set_revert_intent(id, Some(&intent)).await?;
                // Its ending is recorded, and alerted, under the intent's id by whoever follows
                // the operation: one alert for one revert, saying how it ended.
                decision.record_id = None;
                decision.outcome.alert = false;
                let detail = format!(
                    "ARM accepted {} and is still applying it; the next event or the reconcile finishes and verifies it",
                    write_text(id, write)
                );
                return Ok(decision.finish(verdict, ResultKind::RevertPending, Some(detail)));
            }
            Err(ArmError::Rejected {
                status, code, message, ..
            }) => {
                decision.outcome.alert = true;
                let detail = format!(
                    "ARM refused the revert ({}): {status} {code}: {message}",
                    write_text(id, write)
                );
                return Ok(decision.finish(verdict, ResultKind::RevertFailed, Some(detail)));
            }
            Err(other) => return Err(other.into()),
        }
    }
    // Success is what ARM shows afterwards, not what the write answered.
    let Some(after) = observe::read_view(ctx, id, entry, call).await? else {
        return Ok(decision.finish(
            VerdictKind::Gone,
            ResultKind::ResourceNotFound,
            Some("deleted during revert".into()),
        ));
    };
    let after_eval = after.evaluate(ctx, id, OffsetDateTime::now_utc());
    decision.outcome.after = Some(after_eval.observed.clone());
    if matches!(after_eval.verdict, Verdict::Compliant) {
        let detail = format!("now {}", target_text(target));
        Ok(decision.finish(verdict, ResultKind::Reverted, Some(detail)))
    } else {
        decision.outcome.alert = true;
        let detail = format!(
            "after the write the resource still shows {}",
            super::decide::verdict_kind(&after_eval.verdict)
        );
        Ok(decision.finish(verdict, ResultKind::RevertUnverified, Some(detail)))
    }
}

fn write_target(id: &ResourceId, write: &RevertWrite) -> Result<ResourceId, keyguard_core::ResourceIdError> {
    match &write.relative_path {
        Some(path) => ResourceId::parse(&format!("{}/{}", id.as_str(), path.trim_start_matches('/'))),
        None => Ok(id.clone()),
    }
}

/// One write as people read it: `PATCH name (api-version)`.
pub(super) fn write_text(id: &ResourceId, write: &RevertWrite) -> String {
    let method = match write.method {
        WriteMethod::Patch => "PATCH",
        WriteMethod::Put => "PUT",
    };
    match &write.relative_path {
        Some(path) => format!("{method} {}/{path} ({})", id.name(), write.api_version),
        None => format!("{method} {} ({})", id.name(), write.api_version),
    }
}

pub(super) fn target_text(target: &RevertTarget) -> String {
    match target {
        RevertTarget::Mmk => "Microsoft-managed keys".to_string(),
        RevertTarget::Cmk(key) => format!("customer-managed key {key}"),
    }
}
