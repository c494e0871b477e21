//! Turns what was observed into what happens: the pure core plans (keyguard-core's `plan_with`),
//! and its typed plan becomes the decision's verdict, action and result, or a revert for [`act`].

use keyguard_core::ResourceId;
use keyguard_core::catalog::{self, EncryptionState, KeyRef};
use keyguard_core::evaluate::{DriftReason, Verdict, resource_tags};
use keyguard_core::plan::{Action, NoRevertReason, plan_with};
use keyguard_core::rfc3339;
use keyguard_core::safeguards::Look;
use time::OffsetDateTime;

use super::act::{self, Resumed};
use super::observe;
use super::outcome::{ActionKind, Decision, ResultKind, Trigger, VerdictKind};
use super::{Attempt, Context, ReconcileError};
use crate::arm::CallContext;
use crate::store::{BaselineSource, BaselineWrite, Lease, RevertIntent};

/// Observes, decides, and (with the lease) acts; the caller records the decision.
pub(super) async fn decide_and_act(
    ctx: &Context,
    id: &ResourceId,
    attempt: Attempt,
    call: &CallContext,
    lease: Option<&mut Lease>,
    intent: Option<&RevertIntent>,
) -> Result<Decision, ReconcileError> {
    let dry_run = lease.is_none();
    let is_event = matches!(attempt.trigger, Trigger::Event { .. });
    let is_sweep = matches!(attempt.trigger, Trigger::Sweep { .. });
    let mut decision = Decision::new(attempt.trigger, &attempt.correlation_id, Some(id));
    decision.outcome.caller = attempt.caller.as_ref().map(|c| c.display());
    decision.outcome.caller_ip = attempt.caller.and_then(|c| c.ip_address);
    decision.outcome.dry_run = dry_run;
    let Some(entry) = catalog::lookup(&id.resource_type()) else {
        let detail = format!("{} is not in the catalog", id.resource_type());
        let mut finding = keyguard_report::Finding::new(
            id.as_str(),
            &id.resource_type(),
            keyguard_report::FindingVerdict::Unsupported,
        );
        finding.detail = Some(detail.clone());
        finding.checked_at = Some(OffsetDateTime::now_utc());
        decision.finding = Some(finding);
        return Ok(decision.finish(VerdictKind::Unsupported, ResultKind::NotInCatalog, Some(detail)));
    };
    let now = OffsetDateTime::now_utc();
    // A revert started earlier and not recorded as finished.
    let finishing = match intent {
        Some(intent) => match act::resume(ctx, intent, &mut decision, call).await? {
            Resumed::Settled => return Ok(decision),
            Resumed::Finishing(detail) => Some(detail),
        },
        None => None,
    };
    // An event's carried body is anyone's word; a listing is what ARM answered keyguard.
    let carried = attempt.carried.map(|body| (body, !is_event));
    // A dry-run sweep reports what the listing showed.
    let report_only = dry_run && is_sweep;
    let Some(observed) = observe::observe(ctx, id, entry, carried, report_only, call).await? else {
        return Ok(decision.finish(VerdictKind::Gone, ResultKind::ResourceNotFound, None));
    };
    decision.outcome.detail = observed.note.clone();
    let evaluation = &observed.evaluation;
    decision.finding = Some(keyguard_report::Finding::from_evaluation(evaluation, Some(now)));
    decision.outcome.profile = evaluation.profile.clone();
    decision.outcome.requirement = evaluation.requirement;
    decision.tags = resource_tags(&observed.view.document);
    let look = if is_event { Look::AfterWrite } else { Look::Routine };
    decision.outcome.safeguard_changes = ctx.watch_safeguards(id, &decision.tags, look, dry_run, now).await?;
    decision.outcome.before = Some(evaluation.observed.clone());
    let plan_ctx = observe::plan_context(ctx, id, entry, &observed, dry_run, now, call).await?;
    let precondition = observe::revert_precondition(ctx, entry, &observed, &plan_ctx, call).await?;
    let plan = plan_with(evaluation, &plan_ctx, precondition);
    // The known-good key this read replaced, when it is another key (not a rotation).
    let mut replaced = None;
    if let Some(baseline) = plan.record_baseline.as_ref().filter(|_| observed.from_arm) {
        let written = ctx
            .store
            .record_baseline(id, baseline, BaselineSource::Observed, None, now)
            .await?;
        if let BaselineWrite::Recorded {
            previous: Some(previous),
        } = written
            && !previous.key.same_key_any_version(baseline)
        {
            replaced = Some(previous.key);
        }
    }
    decision.outcome.alert = plan.alert;
    let notes: Vec<String> = evaluation.notes.iter().cloned().chain(plan.opt_in_note()).collect();
    let verdict = verdict_kind(&evaluation.verdict);
    decision.outcome.drift = match &evaluation.verdict {
        Verdict::Drift(reason) => Some(format!("{reason:?}")),
        _ => None,
    };
    // A key outside the estate stays news whatever is done about it: the reason travels with
    // every ending, so the alert says why it is high.
    let escalation = match &evaluation.verdict {
        Verdict::Drift(reason @ DriftReason::VaultOutsideEstate { .. }) => Some(reason.describe()),
        _ => None,
    };
    decision.outcome.escalated = escalation.is_some();
    if !notes.is_empty() {
        decision.outcome.add_detail(Some(notes.join("; ")));
    }

    match plan.action {
        Action::Nothing => {
            let result = match &evaluation.verdict {
                Verdict::Compliant => ResultKind::Compliant,
                Verdict::Exempt { .. } => ResultKind::Exempt,
                Verdict::Unsupported { .. } => ResultKind::Unsupported,
                Verdict::Drift(_) => ResultKind::Recorded,
            };
            let detail = match &evaluation.verdict {
                Verdict::Exempt { reason, expires, .. } => Some(match expires {
                    Some(e) => format!("{reason} (until {})", rfc3339(*e)),
                    None => reason.clone(),
                }),
                Verdict::Unsupported { reason } => Some(reason.clone()),
                _ => decision.outcome.detail.take(),
            };
            let compliant = matches!(evaluation.verdict, Verdict::Compliant);
            if let Some(detail) = finishing.filter(|_| compliant) {
                // The earlier attempt's revert took: this is its result, alert included.
                decision.outcome.action = ActionKind::Revert;
                decision.outcome.alert = true;
                decision.outcome.after = decision.outcome.before.take();
                return Ok(decision.finish(VerdictKind::Drift, ResultKind::Reverted, Some(detail)));
            }
            if let Some(previous) = replaced.filter(|_| compliant) {
                let detail = key_changed_text(&previous, &evaluation.observed, &decision);
                decision.outcome.alert = true;
                decision.outcome.previous_key = Some(previous);
                return Ok(decision.finish(verdict, ResultKind::KeyChanged, Some(detail)));
            }
            if compliant && let Some(warning) = observe::expiry_warning(ctx, &evaluation.observed, call, now).await {
                decision.outcome.alert = true;
                return Ok(decision.finish(verdict, ResultKind::KeyExpiring, Some(warning)));
            }
            Ok(decision.finish(verdict, result, detail))
        }
        Action::NoRevert(reason) => {
            decision.outcome.action = if plan.alert {
                ActionKind::AlertOnly
            } else {
                ActionKind::RecordOnly
            };
            let mut decision = decision.finish(verdict, no_revert_result(&reason), escalation);
            decision.outcome.add_detail(Some(reason.describe()));
            Ok(decision)
        }
        Action::Revert { target, dry_run, .. } => match lease.filter(|_| !dry_run) {
            Some(lease) => {
                // Why it was judged so (an ignored exemption tag, ...) stays with how it ended.
                let notes = decision.outcome.detail.take();
                let notes = [escalation, notes]
                    .into_iter()
                    .flatten()
                    .reduce(|a, b| format!("{a}; {b}"));
                let revert = act::Revert {
                    id,
                    entry,
                    target: &target,
                    writes: &plan.writes,
                    verdict,
                };
                let mut reverted = act::revert(ctx, revert, decision, lease, call, now).await?;
                reverted.outcome.add_detail(notes);
                Ok(reverted)
            }
            None => {
                decision.outcome.action = ActionKind::DryRunRevert;
                let writes: Vec<String> = plan.writes.iter().map(|w| act::write_text(id, w)).collect();
                let detail = format!(
                    "would {} to reach {}",
                    writes.join(", then "),
                    act::target_text(&target)
                );
                decision.outcome.dry_run = true;
                let mut decision = decision.finish(verdict, ResultKind::DryRunWouldRevert, escalation);
                decision.outcome.add_detail(Some(detail));
                Ok(decision)
            }
        },
    }
}

/// "The key changed from A to B (by whom, from where)": what a person needs to confirm it.
fn key_changed_text(previous: &KeyRef, now_on: &EncryptionState, decision: &Decision) -> String {
    let new = match now_on {
        EncryptionState::Cmk(key) => key.to_string(),
        other => format!("{other:?}"),
    };
    let who = decision
        .outcome
        .caller
        .as_deref()
        .unwrap_or("a writer the event did not name (the Activity Log names it)");
    let from = decision
        .outcome
        .caller_ip
        .as_deref()
        .map(|ip| format!(", from {ip}"))
        .unwrap_or_default();
    format!("the customer-managed key changed from {previous} to {new} (by {who}{from}): confirm it was intended")
}

pub(super) fn verdict_kind(verdict: &Verdict) -> VerdictKind {
    match verdict {
        Verdict::Compliant => VerdictKind::Compliant,
        Verdict::Drift(_) => VerdictKind::Drift,
        Verdict::Exempt { .. } => VerdictKind::Exempt,
        Verdict::Unsupported { .. } => VerdictKind::Unsupported,
    }
}

fn no_revert_result(reason: &NoRevertReason) -> ResultKind {
    match reason {
        NoRevertReason::ModeAudit => ResultKind::Recorded,
        NoRevertReason::ModeAlert => ResultKind::AlertOnly,
        NoRevertReason::RateLimited { .. } => ResultKind::RateLimited,
        NoRevertReason::NoRevertTarget
        | NoRevertReason::NotReversible { .. }
        | NoRevertReason::NeedsOptIn { .. }
        | NoRevertReason::MissingIdentity
        | NoRevertReason::KeyUnusable { .. }
        | NoRevertReason::NotApplicable => ResultKind::ManualActionNeeded,
    }
}
