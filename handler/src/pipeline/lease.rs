//! The resource's lease: one instance reconciles a resource at a time, and writes only while it
//! provably still holds the lease.

use std::time::Duration;

use keyguard_core::ResourceId;
use time::OffsetDateTime;

use super::{Pipeline, PipelineError};
use crate::arm::CallContext;
use crate::store::Lease;

impl Pipeline {
    /// Waits for the resource's lease (another instance may hold it) for at most half the budget,
    /// leaving the other half for the work; then the caller is told to retry later.
    pub(super) async fn lease(&self, id: &ResourceId, ctx: &CallContext) -> Result<Lease, PipelineError> {
        let holder = format!("{}/{}", self.settings.instance, uuid::Uuid::new_v4().simple());
        let give_up = tokio::time::Instant::now() + self.settings.time_budget / 2;
        let mut pause = Duration::from_millis(20);
        loop {
            let now = OffsetDateTime::now_utc();
            if let Some(lease) = self
                .store
                .try_lease(id, &holder, self.settings.lease_ttl(), now)
                .await?
            {
                return Ok(lease);
            }
            if tokio::time::Instant::now() + pause > give_up.min(ctx.deadline) {
                return Err(PipelineError::Busy(id.to_string()));
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
    pub(super) async fn confirm_lease(
        &self,
        id: &ResourceId,
        lease: &mut Lease,
        ctx: &CallContext,
    ) -> Result<(), PipelineError> {
        let now = OffsetDateTime::now_utc();
        match self.store.renew_lease(lease, self.settings.lease_ttl(), now).await? {
            Some(renewed) => {
                *lease = renewed;
                Ok(())
            }
            None => {
                tracing::warn!(
                    correlation_id = %ctx.correlation_id, resource_id = %id,
                    "lease lost before a revert write; nothing written, the next attempt decides again"
                );
                Err(PipelineError::LeaseLost(id.to_string()))
            }
        }
    }

    /// A lease that cannot be given back simply runs out; that is no reason to fail the event.
    pub(super) async fn release(&self, lease: &Lease) {
        if let Err(e) = self.store.release(lease).await {
            tracing::warn!(error = %e, resource = %lease.resource_key, "lease not released; it expires on its own");
        }
    }
}
