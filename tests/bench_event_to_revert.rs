//! Load driver: time from POSTing one drift event to keyguard (as the Functions host does) to the
//! 200 that comes back after the revert was written and verified by a fresh GET.
//!
//! Baseline in the same run: the same POST for an event whose account is compliant (the ARM GET
//! and the Key Vault read for the key-expiry warning, no write). Reports medians and p95 over N events each and the ratio revert/baseline.
//!
//!     cargo build --release -p keyguard && cargo bench -p keyguard-e2e --bench event_to_revert
//!
//! Third: the same harmless write on compliant accounts whose key's vault cannot be reached (every
//! Key Vault request answers 503, as a firewalled vault does): the verdict must not wait for it.
//!
//! N defaults to 100 (`KEYGUARD_BENCH_N`).

use std::time::{Duration, Instant};

use keyguard_e2e::*;
use serde_json::{Value, json};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn drift_event(env: &Env, id: &str, patch: Value) -> anyhow::Result<Value> {
    env.act_as_user(id, patch).await?;
    let events = env.events().await?;
    events
        .into_iter()
        .rev()
        .find(|e| e["subject"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(id)))
        .ok_or_else(|| anyhow::anyhow!("no event for {id}"))
}

async fn timed_invoke(env: &Env, event: &Value) -> anyhow::Result<(Duration, Value)> {
    let body = serde_json::to_vec(&functions_envelope(event))?;
    let started = Instant::now();
    let (status, response) = env.invoke("EncryptionDrift", "application/json", body).await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status == 200, "status {status}: {response}");
    Ok((elapsed, response))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("KEYGUARD_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // Deliveries are driven by this program, not by the stand-in's Event Grid (no target configured).
    let env = Env::start(Options {
        no_delivery: true,
        time_budget_ms: 25_000,
        ..Options::default()
    })
    .await?;
    let docs: Vec<Value> = (0..n)
        .map(|i| {
            storage_account(
                "rg-cmk-bench",
                &format!("stbench{i:04}"),
                Some(APPROVED_VAULT),
                json!({}),
            )
        })
        .collect();
    env.seed(Value::Array(docs)).await?;

    let mut baseline = Vec::with_capacity(n);
    let mut revert = Vec::with_capacity(n);
    for i in 0..n {
        let id = account_id("rg-cmk-bench", &format!("stbench{i:04}"));
        // Baseline: a harmless tag write on a compliant account (GET, decide, record the known-good key).
        let event = drift_event(&env, &id, json!({"tags": {"run": i.to_string()}})).await?;
        let (t, r) = timed_invoke(&env, &event).await?;
        anyhow::ensure!(r["ReturnValue"]["result"] == "compliant", "{r}");
        baseline.push(t);
        // Drift: CMK -> MMK, reverted and verified before the response.
        let event = drift_event(
            &env,
            &id,
            json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
        )
        .await?;
        let (t, r) = timed_invoke(&env, &event).await?;
        anyhow::ensure!(r["ReturnValue"]["result"] == "reverted", "{r}");
        revert.push(t);
    }
    // Accounts on a key in a vault that now answers nothing but 503.
    let firewalled: Vec<Value> = (0..n)
        .map(|i| {
            let mut doc = storage_account("rg-cmk-bench", &format!("stfw{i:04}"), Some(APPROVED_VAULT), json!({}));
            doc["properties"]["encryption"]["keyvaultproperties"]["keyname"] = json!("storage-cmk-firewalled");
            doc
        })
        .collect();
    env.seed(Value::Array(firewalled)).await?;
    env.add_fault(json!({"path_contains": "/keys/", "status": 503})).await?;
    let mut unreachable = Vec::with_capacity(n);
    for i in 0..n {
        let id = account_id("rg-cmk-bench", &format!("stfw{i:04}"));
        let event = drift_event(&env, &id, json!({"tags": {"run": i.to_string()}})).await?;
        let (t, r) = timed_invoke(&env, &event).await?;
        anyhow::ensure!(r["ReturnValue"]["result"] == "compliant", "{r}");
        unreachable.push(t);
    }
    baseline.sort();
    revert.sort();
    unreachable.sort();
    let (b50, r50) = (percentile(&baseline, 0.5), percentile(&revert, 0.5));
    println!(
        "event -> verdict, compliant account (ARM GET + Key Vault key GET), n={n}: median {:.2} ms, p95 {:.2} ms",
        ms(b50),
        ms(percentile(&baseline, 0.95))
    );
    println!(
        "event -> verified revert (ARM GET, Key Vault GET, PATCH, GET), n={n}: median {:.2} ms, p95 {:.2} ms",
        ms(r50),
        ms(percentile(&revert, 0.95))
    );
    println!(
        "ratio revert/baseline (medians): {:.2}",
        r50.as_secs_f64() / b50.as_secs_f64()
    );
    let u50 = percentile(&unreachable, 0.5);
    println!(
        "event -> verdict, compliant account, its vault unreachable (503), n={n}: median {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        ms(u50),
        ms(percentile(&unreachable, 0.95)),
        ms(unreachable[unreachable.len() - 1])
    );
    println!(
        "ratio unreachable-vault/baseline (medians): {:.2}",
        u50.as_secs_f64() / b50.as_secs_f64()
    );
    Ok(())
}
