//! Load driver (issue 14): events/s, p50/p99 latency and the peak RSS of the `keyguard serve`
//! process at 1, 16, 64 and 256 concurrent deliveries, against the Azure stand-in with no added
//! latency, for a compliant mix and a drift mix, on the embedded store and on Table Storage
//! (Azurite). Ratios are against concurrency 1 of the same store and mix, measured in the same
//! invocation.
//!
//!     cargo build --release -p keyguard && cargo bench -p keyguard-e2e --bench load
//!
//! - compliant mix: every event is a tag write on a storage account that is on Microsoft-managed
//!   keys as its profile (`mmk-enforce`) requires: one ARM GET, a verdict, the store's writes;
//! - drift mix: every event reports an account moved to a customer-managed key; keyguard reverts
//!   it (PATCH) and verifies the revert (GET) before it answers. Each account drifts once, so the
//!   per-resource revert cap never applies.
//!
//! Every answer is checked (200 and the expected result), so a run that "goes fast" by failing
//! stops with an error instead. Peak RSS is `VmHWM` of the handler process, reset before each
//! level through `/proc/PID/clear_refs` where the kernel allows it (else it is the run's peak).
//!
//! Sizes: `KEYGUARD_LOAD_EVENTS` events per level (400), `KEYGUARD_LOAD_CONCURRENCY` (1,16,64,256),
//! `KEYGUARD_LOAD_STORES` (embedded,azurite), `KEYGUARD_LOAD_MIXES` (compliant,drift).
//! `KEYGUARD_BIN` runs another build of keyguard (e.g. one from before a change).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use azure_sim::azurite::Azurite;
use keyguard_e2e::*;
use serde_json::{Value, json};

const RESOURCE_GROUP: &str = "rg-mmk-load";

#[derive(Clone, Copy, PartialEq)]
enum Mix {
    Compliant,
    Drift,
}

impl Mix {
    fn parse(name: &str) -> anyhow::Result<Mix> {
        match name {
            "compliant" => Ok(Mix::Compliant),
            "drift" => Ok(Mix::Drift),
            other => anyhow::bail!("unknown mix {other} (compliant, drift)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mix::Compliant => "compliant",
            Mix::Drift => "drift",
        }
    }

    /// What keyguard must answer for every event of the mix.
    fn expected(self) -> &'static str {
        match self {
            Mix::Compliant => "compliant",
            Mix::Drift => "reverted",
        }
    }
}

struct Level {
    concurrency: usize,
    events: usize,
    wall: Duration,
    latencies: Vec<Duration>,
    peak_rss_kib: Option<u64>,
}

impl Level {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let idx = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[idx.min(self.latencies.len() - 1)].as_secs_f64() * 1000.0
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets the peak to the current resident set (Linux ≥ 4.0, `echo 5 > clear_refs`).
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

async fn start_env(store: &str, azurite: Option<&Azurite>) -> anyhow::Result<Env> {
    let mut options = Options {
        no_delivery: true,
        time_budget_ms: 25_000,
        ..Options::default()
    };
    if store == "azurite" {
        let azurite = azurite.ok_or_else(|| anyhow::anyhow!("no Azurite"))?;
        let prefix = format!("load{:x}", std::process::id());
        options
            .extra_env
            .push(("KEYGUARD_STORAGE".into(), azurite.connection_string()));
        options.extra_env.push(("KEYGUARD_TABLE_PREFIX".into(), prefix));
    } else {
        anyhow::ensure!(store == "embedded", "unknown store {store} (embedded, azurite)");
    }
    Env::start(options).await
}

/// One real write event from the stand-in, to copy for each account: the same shape, caller and
/// claims Event Grid would deliver.
async fn event_template(env: &Env) -> anyhow::Result<Value> {
    let id = account_id(RESOURCE_GROUP, "ldtemplate");
    env.seed(json!([storage_account(RESOURCE_GROUP, "ldtemplate", None, json!({}))]))
        .await?;
    env.act_as_user(&id, json!({"tags": {"load": "template"}})).await?;
    env.events()
        .await?
        .into_iter()
        .rev()
        .find(|e| e["subject"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(&id)))
        .ok_or_else(|| anyhow::anyhow!("the stand-in emitted no event for {id}"))
}

/// The template pointed at `id`, under a fresh event id (keyguard drops a redelivered id).
fn event_for(template: &Value, id: &str, event_id: &str) -> Value {
    let mut event = template.clone();
    event["id"] = json!(event_id);
    event["subject"] = json!(id);
    event["data"]["resourceUri"] = json!(id);
    event["data"]["authorization"]["scope"] = json!(id);
    event
}

async fn run_level(
    env: &Env,
    template: &Value,
    mix: Mix,
    concurrency: usize,
    events: usize,
    run: &str,
) -> anyhow::Result<Level> {
    // Fresh accounts for each level: a drift account is reverted once, a compliant one seen anew.
    let names: Vec<String> = (0..events).map(|i| format!("ld{run}{i:05}")).collect();
    let vault = (mix == Mix::Drift).then_some(APPROVED_VAULT);
    let docs: Vec<Value> = names
        .iter()
        .map(|n| storage_account(RESOURCE_GROUP, n, vault, json!({})))
        .collect();
    // The stand-in takes a few hundred documents per request.
    for chunk in docs.chunks(250) {
        env.seed(Value::Array(chunk.to_vec())).await?;
    }
    let bodies: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let event = event_for(template, &account_id(RESOURCE_GROUP, n), &format!("load-{run}-{i}"));
            Ok(serde_json::to_vec(&functions_envelope(&event))?)
        })
        .collect::<anyhow::Result<_>>()?;
    let bodies = Arc::new(bodies);
    let pid = env.handler_pid().ok_or_else(|| anyhow::anyhow!("no handler process"))?;
    let reset = reset_peak_rss(pid);
    let next = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("{}/EncryptionDrift", env.handler);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (bodies, next, client, url) = (bodies.clone(), next.clone(), client.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                let status = response.status().as_u16();
                let answer: Value = response.json().await?;
                latencies.push(sent.elapsed());
                let result = answer["ReturnValue"]["result"].as_str().unwrap_or("");
                anyhow::ensure!(
                    status == 200 && result == mix.expected(),
                    "event {i}: status {status}, result {result:?} (expected {}): {answer}",
                    mix.expected()
                );
            }
        }));
    }
    let mut latencies = Vec::with_capacity(events);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let wall = started.elapsed();
    latencies.sort();
    let peak = peak_rss_kib(pid);
    Ok(Level {
        concurrency,
        events,
        wall,
        latencies,
        peak_rss_kib: peak.filter(|_| reset).or(peak),
    })
}

fn print_levels(store: &str, mix: Mix, levels: &[Level], rss_reset: bool) {
    println!();
    println!(
        "store={store} mix={} ({} per event), peak RSS {}",
        mix.name(),
        mix.expected(),
        if rss_reset {
            "per level"
        } else {
            "since start (clear_refs refused)"
        }
    );
    println!(
        "{:>5} {:>7} {:>10} {:>9} {:>9} {:>10} {:>12} {:>10}",
        "conc", "events", "events/s", "p50 ms", "p99 ms", "RSS MiB", "x events/s", "x p50"
    );
    let Some(base) = levels.first() else {
        return;
    };
    for level in levels {
        println!(
            "{:>5} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>10} {:>12.2} {:>10.2}",
            level.concurrency,
            level.events,
            level.events_per_sec(),
            level.percentile_ms(0.5),
            level.percentile_ms(0.99),
            level
                .peak_rss_kib
                .map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0)),
            level.events_per_sec() / base.events_per_sec(),
            level.percentile_ms(0.5) / base.percentile_ms(0.5),
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::var("KEYGUARD_LOAD_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let concurrency: Vec<usize> = env_list("KEYGUARD_LOAD_CONCURRENCY", "1,16,64,256")
        .iter()
        .map(|c| c.parse())
        .collect::<Result<_, _>>()?;
    let stores = env_list("KEYGUARD_LOAD_STORES", "embedded,azurite");
    let mixes: Vec<Mix> = env_list("KEYGUARD_LOAD_MIXES", "compliant,drift")
        .iter()
        .map(|m| Mix::parse(m))
        .collect::<anyhow::Result<_>>()?;
    println!(
        "load driver: {events} events per level, concurrency {concurrency:?}, keyguard {}",
        keyguard_bin().display()
    );
    let azurite = match stores.iter().any(|s| s == "azurite") {
        true => Some(Azurite::start().map_err(anyhow::Error::msg)?),
        false => None,
    };
    for store in &stores {
        let env = start_env(store, azurite.as_ref()).await?;
        let template = event_template(&env).await?;
        let pid = env.handler_pid().ok_or_else(|| anyhow::anyhow!("no handler process"))?;
        let rss_reset = reset_peak_rss(pid);
        // Warm-up: connections, token, the store's first commits; not counted.
        run_level(&env, &template, Mix::Compliant, 4, 40.min(events), "w").await?;
        for (m, mix) in mixes.iter().enumerate() {
            let mut levels = Vec::new();
            for (c, &conc) in concurrency.iter().enumerate() {
                let run = format!("{m}{c}n");
                levels.push(run_level(&env, &template, *mix, conc, events, &run).await?);
            }
            print_levels(store, *mix, &levels, rss_reset);
        }
    }
    Ok(())
}
