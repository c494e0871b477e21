//! The resource's lease: one instance reconciles a resource at a time, and writes only while it
//! provably still holds the lease.

use std::time::Duration;

use keyguard_core::ResourceId;
use time::OffsetDateTime;

use super::{Context, ReconcileError};
use crate::arm::CallContext;
use crate::store::Lease;

/// Waits for the resource's lease (another instance may hold it) for at most half the budget,
/// leaving the other half for the work; then the caller is told to retry later.
pub(super) async fn acquire(ctx: &Context, id: &ResourceId, call: &CallContext) -> Result<Lease, ReconcileError> {
    let holder = format!("{}/{}", ctx.settings.instance, uuid::Uuid::new_v4().simple());
    let give_up = tokio::time::Instant::now() + ctx.settings.time_budget / 2;
    let mut pause = Duration::from_millis(20);
    loop {
        let now = OffsetDateTime::now_utc();
        if let Some(lease) = ctx.store.try_lease(id, &holder, ctx.settings.lease_ttl(), now).await? {
            return Ok(lease);
        }
        if tokio::time::Instant::now() + pause > give_up.min(call.deadline) {
            return Err(ReconcileError::Busy(id.to_string()));
        }
        let jitter = Duration::from_millis(rand::random_range(0..=pause.as_millis() as u64));
        tokio::time::sleep(pause + jitter).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Checked before every write of a revert: a store or ARM call slower than the lease would
/// otherwise let a second instance take the lease and write too. Renewing it (a conditional
/// write on the version this instance holds) both proves it is still ours and keeps it ours
/// for the write that follows, which ends within the budget the lease outlives.
pub(super) async fn confirm(
    ctx: &Context,
    id: &ResourceId,
    lease: &mut Lease,
    call: &CallContext,
) -> Result<(), ReconcileError> {
    let now = OffsetDateTime::now_utc();
    match ctx.store.renew_lease(lease, ctx.settings.lease_ttl(), now).await? {
        Some(renewed) => {
            *lease = renewed;
            Ok(())
        }
        None => {
            tracing::warn!(
                correlation_id = %call.correlation_id, resource_id = %id,
                "lease lost before a revert write; nothing written, the next attempt decides again"
            );
            Err(ReconcileError::LeaseLost(id.to_string()))
        }
    }
}

/// A lease that cannot be given back simply runs out; that is no reason to fail the event.
pub(super) async fn release(ctx: &Context, lease: &Lease) {
    if let Err(e) = ctx.store.release(lease).await {
        tracing::warn!(error = %e, resource = %lease.resource_key, "lease not released; it expires on its own");
    }
}
