//! What the state store costs one event, measured on the store actually configured: the same
//! sequence of store calls the reconcile makes for a compliant event and for a reverted drift,
//! timed per event. `keyguard store bench` prints it; BENCHMARKS.md records runs.

use std::time::{Duration, Instant};

use keyguard_core::safeguards::SafeguardState;
use keyguard_core::{KeyRef, ResourceId};
use serde::Serialize;
use time::OffsetDateTime;

use super::{BaselineSource, RevertIntent, StateStore, StoreError};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Percentiles {
    pub events: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub store_calls_per_event: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchReport {
    pub store: String,
    pub compliant_event: Percentiles,
    pub reverted_drift: Percentiles,
}

fn percentiles(mut samples: Vec<Duration>, calls: usize) -> Percentiles {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Percentiles {
        events: samples.len(),
        median_ms: at(0.5),
        p95_ms: at(0.95),
        store_calls_per_event: calls,
    }
}

/// A resource whose tags have not changed since the last look: its safeguards are read, not written.
fn steady_safeguards() -> SafeguardState {
    SafeguardState {
        exemption: Default::default(),
        profile: None,
        tags_fingerprint: "unchanged".into(),
    }
}

/// What every event starts with: the dedupe check, the lease, the check again under it, a
/// revert intent left by a crash, and the resource noted as known.
async fn event_start(
    store: &StateStore,
    id: &ResourceId,
    event_id: &str,
    holder: &str,
    ttl: time::Duration,
    now: OffsetDateTime,
) -> Result<super::Lease, StoreError> {
    store.event_seen(event_id, now).await?;
    let lease = store
        .try_lease(id, holder, ttl, now)
        .await?
        .ok_or_else(|| StoreError::Conflict("bench lease taken".into()))?;
    store.event_seen(event_id, now).await?;
    store.revert_intent(id).await?;
    store.remember_resource(id, Some(&steady_safeguards())).await?;
    Ok(lease)
}

/// Runs `events` compliant events and `events` reverted drifts over fresh resource ids (under a
/// per-run subscription, so runs never collide with real state or each other).
pub async fn run(store: &StateStore, events: usize) -> Result<BenchReport, StoreError> {
    let run = uuid::Uuid::new_v4();
    let ids: Vec<ResourceId> = (0..events)
        .map(|n| {
            ResourceId::parse(&format!(
                "/subscriptions/{run}/resourceGroups/rg-bench/providers/Microsoft.Storage/storageAccounts/st{n:05}"
            ))
            .map_err(|e| StoreError::Corrupt(format!("bench resource id: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let key = KeyRef::from_key_uri("https://kv-bench.vault.azure.net/keys/bench", None)
        .map_err(|e| StoreError::Corrupt(format!("bench key URI: {e}")))?;
    let ttl = time::Duration::seconds(55);
    let holder = format!("bench/{run}");

    // Steady state first: the resources are known and have their baselines.
    for id in &ids {
        store.remember_resource(id, Some(&steady_safeguards())).await?;
        store
            .record_baseline(id, &key, BaselineSource::Observed, None, OffsetDateTime::now_utc())
            .await?;
    }

    let mut compliant = Vec::with_capacity(events);
    for (n, id) in ids.iter().enumerate() {
        let event_id = format!("{run}-compliant-{n}");
        let started = Instant::now();
        let now = OffsetDateTime::now_utc();
        let lease = event_start(store, id, &event_id, &holder, ttl, now).await?;
        store
            .record_baseline(id, &key, BaselineSource::Observed, None, now)
            .await?;
        store
            .append_audit(
                id.as_str(),
                &uuid::Uuid::now_v7().to_string(),
                &serde_json::json!({"result": "compliant"}),
            )
            .await?;
        store.mark_event(&event_id, now + time::Duration::days(1)).await?;
        store.release(&lease).await?;
        compliant.push(started.elapsed());
    }

    let mut reverted = Vec::with_capacity(events);
    for (n, id) in ids.iter().enumerate() {
        let event_id = format!("{run}-drift-{n}");
        let started = Instant::now();
        let now = OffsetDateTime::now_utc();
        let mut lease = event_start(store, id, &event_id, &holder, ttl, now).await?;
        store.baseline(id).await?;
        store.reverts_since(id, now - time::Duration::hours(1)).await?;
        store.record_revert(id, now).await?;
        let intent = RevertIntent {
            id: uuid::Uuid::now_v7().to_string(),
            resource_id: id.as_str().to_string(),
            correlation_id: event_id.clone(),
            event_id: Some(event_id.clone()),
            holder: holder.clone(),
            started_at: now,
            target: "bench".into(),
            writes: vec!["PATCH".into()],
            caller: None,
            operation: None,
        };
        store.set_revert_intent(id, Some(&intent)).await?;
        // The lease is confirmed (renewed) before the write.
        lease = store
            .renew_lease(&lease, ttl, now)
            .await?
            .ok_or_else(|| StoreError::Conflict("bench lease lost".into()))?;
        store
            .append_audit(id.as_str(), &intent.id, &serde_json::json!({"result": "reverted"}))
            .await?;
        store.set_revert_intent(id, None).await?;
        store.mark_event(&event_id, now + time::Duration::days(1)).await?;
        store.release(&lease).await?;
        reverted.push(started.elapsed());
    }

    Ok(BenchReport {
        store: store.describe(),
        // Counted from the sequences above (a lease is a read and a write, renewed before the
        // revert's write; an audit record is a write to its resource and one to the timeline).
        compliant_event: percentiles(compliant, 11),
        reverted_drift: percentiles(reverted, 18),
    })
}
