//! The functions the Functions host invokes in payload mode: `EncryptionDrift` (Event Grid's
//! trigger) and `Reconcile` (the timer). The `/api/*` routes the host forwards are in [`super::api`].

use functions_runtime::{Invocation, InvocationError, InvocationResult};
use keyguard_core::event::parse_event;
use serde_json::{Value, json};

use super::{AppState, handle};
use crate::reconcile::{self, Attempt, Context, Trigger, VerdictKind};

/// (function folder name, trigger binding name) as declared in `function-app/*/function.json`.
pub const EVENT_FUNCTION: (&str, &str) = ("EncryptionDrift", "eventGridEvent");
pub const TIMER_FUNCTION: (&str, &str) = ("Reconcile", "timer");

pub(super) async fn encryption_drift(
    invocation: Invocation<Value>,
    state: AppState,
) -> Result<InvocationResult, InvocationError> {
    let event =
        parse_event(&invocation.data).map_err(|e| InvocationError::rejected(400, "InvalidEvent", e.to_string()))?;
    let mut result = InvocationResult::new();
    match handle(&state.reconcile, &event).await {
        Ok(decision) => {
            result.log(decision.outcome.summary());
            result.return_value(serde_json::to_value(&decision).unwrap_or(Value::Null));
        }
        // The host fails an invocation on any error answer and Event Grid then redelivers for up
        // to a day, to the same answer: one retrying cannot fix is answered as taken, the log
        // says why, and the next timer reconcile looks at the resource again.
        Err(InvocationError::Rejected { message, .. }) => {
            tracing::warn!(event_id = %event.id, "not retryable: answered as taken, so Event Grid does not redeliver it");
            result.log(format!("{message} (not retryable: not redelivered)"));
            result.return_value(serde_json::json!({"notProcessed": message, "retryable": false}));
        }
        Err(retry) => return Err(retry),
    }
    Ok(result)
}

/// The timer: prunes expired state, then sweeps each configured scope (`KEYGUARD_SWEEP_SCOPES`,
/// resuming where the last run stopped) or, without scopes, re-checks every resource keyguard has
/// seen, so a lost event never leaves drift unseen for longer than one schedule period.
pub(super) async fn reconcile_timer(
    _invocation: Invocation<Value>,
    state: AppState,
) -> Result<InvocationResult, InvocationError> {
    let context = &state.reconcile;
    let now = time::OffsetDateTime::now_utc();
    match context.store.prune(now, state.retention).await {
        Ok(report) => tracing::info!(?report, "pruned expired state"),
        Err(e) => tracing::warn!(error = %e, "could not prune expired state"),
    }
    if state.sweep.scopes.is_empty() {
        return recheck_known_resources(context).await;
    }
    // Sweep each configured scope, resuming where the last run stopped.
    let mut result = InvocationResult::new();
    let mut summaries = Vec::new();
    for scope in &state.sweep.scopes {
        let request = crate::sweep::ScanRequest {
            scope: scope.clone(),
            types: Vec::new(),
            dry_run: false,
            listing: crate::sweep::Listing::Auto,
            resume: true,
            budget: state.sweep.timer_budget / state.sweep.scopes.len().max(1) as u32,
        };
        let report = crate::sweep::scan(context, &request, &|progress| {
            tracing::debug!(listed = progress.listed, evaluated = progress.evaluated, total = ?progress.total, "sweep progress");
        })
        .await
        .map_err(|e| InvocationError::retryable(format!("sweep of {}: {e}", scope.path())))?;
        result.log(format!(
            "sweep {}: {} listed, {} evaluated, {} drift, {} error, {}",
            report.scope,
            report.listed,
            report.evaluated,
            report.summary.drift,
            report.summary.error,
            if report.complete {
                "complete"
            } else {
                "unfinished: resumes next run"
            }
        ));
        summaries.push(json!({
            "scope": report.scope, "complete": report.complete, "listed": report.listed,
            "evaluated": report.evaluated, "summary": report.summary,
        }));
    }
    result.return_value(json!({ "sweeps": summaries }));
    Ok(result)
}

/// Without configured sweep scopes: re-check every resource keyguard has seen, so a lost event
/// never leaves drift unseen for longer than one schedule period.
async fn recheck_known_resources(context: &Context) -> Result<InvocationResult, InvocationError> {
    let resources = context
        .store
        .known_resources()
        .await
        .map_err(|e| InvocationError::retryable(e.to_string()))?;
    let deadline = std::time::Instant::now() + context.settings.time_budget;
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let mut result = InvocationResult::new();
    let (mut checked, mut drift, mut failed) = (0u32, 0u32, 0u32);
    for id in &resources {
        if std::time::Instant::now() >= deadline {
            result.log(format!(
                "time budget reached after {checked} of {} resources",
                resources.len()
            ));
            break;
        }
        match reconcile::reconcile(context, id, Attempt::new(Trigger::Reconcile, &correlation_id, false)).await {
            Ok(outcome) => {
                checked += 1;
                if outcome.outcome.verdict == VerdictKind::Drift {
                    drift += 1;
                    result.log(outcome.outcome.summary());
                }
            }
            Err(e) => {
                failed += 1;
                result.log(format!("{id}: {e}"));
            }
        }
    }
    result.log(format!(
        "reconcile: {checked} checked, {drift} drifted, {failed} failed"
    ));
    result.return_value(json!({"checked": checked, "drift": drift, "failed": failed, "correlationId": correlation_id}));
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_json(relative: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(relative);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The Functions host routes by folder name and keys `Data` by binding name: both must match the code.
    #[test]
    fn function_app_declarations_match_the_registered_functions() {
        for ((folder, binding), trigger) in [(EVENT_FUNCTION, "eventGridTrigger"), (TIMER_FUNCTION, "timerTrigger")] {
            let function = read_json(&format!("function-app/{folder}/function.json"));
            let first = &function["bindings"][0];
            assert_eq!(first["type"], trigger, "{folder}");
            assert_eq!(first["name"], binding, "{folder}");
            assert_eq!(first["direction"], "in", "{folder}");
        }
        let api = read_json("function-app/Api/function.json");
        assert_eq!(api["bindings"][0]["type"], "httpTrigger");
        assert_eq!(api["bindings"][0]["route"], "{*path}");
        assert_eq!(api["bindings"][1]["type"], "http");
        assert_eq!(
            api["bindings"].as_array().map(Vec::len),
            Some(2),
            "forwarding needs exactly http in + http out"
        );

        let host = read_json("host.json");
        assert_eq!(host["version"], "2.0");
        assert_eq!(
            host["customHandler"]["description"]["defaultExecutablePath"],
            "keyguard"
        );
        assert_eq!(
            host["customHandler"]["description"]["arguments"],
            serde_json::json!(["serve"])
        );
        assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
        assert_eq!(
            host["extensionBundle"]["id"],
            "Microsoft.Azure.Functions.ExtensionBundle"
        );
        assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
    }
}
