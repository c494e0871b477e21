//! What a write changed in a resource's safeguards (exemption tags, the profile its tags choose),
//! decided by keyguard-core against what the store remembers from the last real look.

use keyguard_core::ResourceId;
use keyguard_core::safeguards::{self, Look, SafeguardChange, SafeguardState, TagEffect};
use serde_json::Value;
use time::OffsetDateTime;

use super::{Context, ReconcileError};

impl Context {
    /// What a write changed in the resource's safeguards since the last real look, which is
    /// recorded now (a dry run only compares: the next real look reports the change too).
    pub(super) async fn watch_safeguards(
        &self,
        id: &ResourceId,
        tags: &serde_json::Map<String, Value>,
        look: Look,
        dry_run: bool,
        now: OffsetDateTime,
    ) -> Result<Vec<SafeguardChange>, ReconcileError> {
        let seen = SafeguardState::observe(tags, self.config.profile_for(id, tags), sha256_hex);
        let before = self.store.remember_resource(id, (!dry_run).then_some(&seen)).await?;
        let effect = TagEffect::of(tags, now, &self.config.settings);
        Ok(safeguards::changes(
            before.as_ref(),
            &seen,
            &effect,
            look,
            &self.config.settings,
        ))
    }
}

/// The tags' fingerprint: SHA-256, since tags are attacker-written and a weaker digest could be
/// made to collide, hiding a retag.
fn sha256_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
