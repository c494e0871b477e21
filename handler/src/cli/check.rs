//! `keyguard check ID`: one resource through the reconcile now, read-only unless `--remediate`,
//! printed as a finding; exit code 0 compliant, 1 drift, 2 error.

use std::process::ExitCode;

use keyguard_core::ResourceId;

use super::args::CheckArgs;
use super::report::{ReportArgs, apply_requirement, deliver};
use crate::environment::Environment;
use crate::reconcile::{Attempt, Trigger};

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let CheckArgs {
        resource_id,
        remediate,
        report: ReportArgs {
            require,
            format,
            output,
        },
    } = args;
    let id = ResourceId::parse(&resource_id).map_err(|e| anyhow::anyhow!("{resource_id}: {e}"))?;
    let mut settings = Environment::from_env()?;
    apply_requirement(&mut settings.config, require);
    let context = settings.build_context().await?;
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let attempt = Attempt::new(Trigger::Manual, &correlation_id, !remediate);
    let finding = match crate::reconcile::reconcile(&context, &id, attempt).await {
        Ok(decision) => decision.finding.unwrap_or_else(|| {
            let outcome = &decision.outcome;
            let mut f = keyguard_report::Finding::error(
                id.as_str(),
                &id.resource_type(),
                &format!("{}: {}", outcome.result, outcome.detail.clone().unwrap_or_default()),
            );
            f.result = Some(outcome.result.to_string());
            f
        }),
        Err(e) => keyguard_report::Finding::error(id.as_str(), &id.resource_type(), &e.to_string()),
    };
    context.store.flush().await?;
    deliver(&[finding], format, output.as_deref(), id.as_str(), !remediate)
}
