//! The first step of the event path: whether an event is worth a look at all. Writes that did not
//! succeed, writes that cannot touch encryption, event types keyguard does not watch, duplicates
//! and keyguard's own writes end here, recorded as such; anything else becomes an [`Attempt`].

use keyguard_core::ResourceId;
use keyguard_core::catalog;
use keyguard_core::event::{Caller, EventKind, IncomingEvent};
use time::OffsetDateTime;

use super::outcome::{Decision, ResultKind, Trigger, VerdictKind};
use super::{Attempt, Context, ReconcileError, reconcile, record};

/// Handles one Event Grid / CloudEvents event. Errors mean "let the sender retry".
pub async fn handle_event(ctx: &Context, event: &IncomingEvent) -> Result<Decision, ReconcileError> {
    let started = std::time::Instant::now();
    let trigger = Trigger::Event {
        event_id: event.id.clone(),
        event_type: event.event_type.clone(),
    };
    let ignored = |correlation: &str, id: Option<&ResourceId>, result: ResultKind, detail: Option<String>| {
        Decision::new(trigger.clone(), correlation, id).finish(VerdictKind::Ignored, result, detail)
    };
    let (resource_id, caller, correlation, carried) = match &event.kind {
        EventKind::ResourceWrite(op) => {
            let correlation = op.correlation_id.clone().unwrap_or_else(|| event.id.clone());
            if !op.status.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("Succeeded")) {
                let decision = ignored(
                    &correlation,
                    Some(&op.resource_id),
                    ResultKind::NotSucceeded,
                    op.status.clone(),
                );
                return record::record(ctx, decision, started).await;
            }
            // A write to a child that holds the key setting (SQL protector, TDE) means "look at the parent".
            let target = catalog::target_for(&op.resource_id).filter(|(_, entry)| {
                catalog::lookup_operation(&op.operation_name)
                    .is_some_and(|by_operation| by_operation.resource_type == entry.resource_type)
            });
            let Some((target_id, _)) = target else {
                let detail = format!("operation {} is not an encryption-relevant write", op.operation_name);
                let decision = ignored(
                    &correlation,
                    Some(&op.resource_id),
                    ResultKind::NotWatched,
                    Some(detail),
                );
                return record::record(ctx, decision, started).await;
            };
            (target_id, Some(op.caller.clone()), correlation, None)
        }
        EventKind::ResourceNotification {
            resource_id, resource, ..
        } => (resource_id.clone(), None, event.id.clone(), Some(resource.clone())),
        EventKind::ResourceNotificationDeleted { resource_id } => {
            let decision = Decision::new(trigger, &event.id, Some(resource_id)).finish(
                VerdictKind::Gone,
                ResultKind::Deleted,
                None,
            );
            return record::record(ctx, decision, started).await;
        }
        EventKind::OtherArm { operation_name, .. } => {
            let detail = format!("{} ({})", event.event_type, operation_name.as_deref().unwrap_or("-"));
            let decision = ignored(&event.id, None, ResultKind::EventTypeNotWatched, Some(detail));
            return record::record(ctx, decision, started).await;
        }
        EventKind::SubscriptionValidation { .. } | EventKind::Unrecognised => {
            let detail = Some(event.event_type.clone());
            let decision = ignored(&event.id, None, ResultKind::EventTypeNotWatched, detail);
            return record::record(ctx, decision, started).await;
        }
    };

    let attempt = Attempt {
        trigger,
        correlation_id: correlation,
        caller,
        carried,
        dry_run: ctx.settings.dry_run,
        started,
        dedupe: Some(dedupe_key(&event.id, ctx.settings.dry_run)),
    };
    let now = OffsetDateTime::now_utc();
    if let Some(key) = &attempt.dedupe
        && ctx.store.event_seen(key, now).await?
    {
        return record::record(ctx, duplicate(&attempt, &resource_id), started).await;
    }
    if let Some(caller) = &attempt.caller {
        let ids = ctx.self_identity.ids(ctx.arm.tokens(), ctx.arm.scope()).await?;
        if ids.is_own_write(caller) {
            if let Some(key) = &attempt.dedupe {
                mark_handled(ctx, key).await?;
            }
            let decision = Decision::new(attempt.trigger.clone(), &attempt.correlation_id, Some(&resource_id));
            let decision = with_caller(decision, caller).finish(VerdictKind::Skipped, ResultKind::OwnWrite, None);
            return record::record(ctx, decision, started).await;
        }
    }
    reconcile(ctx, &resource_id, attempt).await
}

/// The decision for an event already handled (here or by another instance).
pub(super) fn duplicate(attempt: &Attempt, id: &ResourceId) -> Decision {
    let decision = Decision::new(attempt.trigger.clone(), &attempt.correlation_id, Some(id));
    let decision = match &attempt.caller {
        Some(caller) => with_caller(decision, caller),
        None => decision,
    };
    decision.finish(VerdictKind::Skipped, ResultKind::Duplicate, None)
}

fn with_caller(mut decision: Decision, caller: &Caller) -> Decision {
    decision.outcome.caller = Some(caller.display());
    decision
}

/// Remembers the event as handled for the configured dedupe window.
pub(super) async fn mark_handled(ctx: &Context, key: &str) -> Result<(), ReconcileError> {
    let now = OffsetDateTime::now_utc();
    let ttl = time::Duration::seconds(ctx.config.settings.dedupe_ttl_secs as i64);
    Ok(ctx.store.mark_event(key, now + ttl).await?)
}

/// The dedupe entry of an event. A dry run keeps its own, so a dry-run instance sharing the store
/// never makes a real one skip an event as already handled.
fn dedupe_key(event_id: &str, dry_run: bool) -> String {
    if dry_run {
        format!("dry-run/{event_id}")
    } else {
        event_id.to_string()
    }
}
