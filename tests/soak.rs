//! The fault soak (issue 13): several `keyguard serve` instances share one Azurite and one
//! azure-sim while rounds of people's writes hit resources of every kind: reversible drift,
//! one-way and creation-only directions, exempt resources and compliant keys. Delivery plays Event
//! Grid at its worst (10 % duplicates, reordering, bursts, redelivery after failures, late
//! redeliveries of handled events) while faults are injected: ARM 429 with `Retry-After`, 500,
//! 503 and answers slower than the time budget; the managed-identity endpoint failing; Key Vault
//! unreachable; Teams and the webhook answering 429/503; Table Storage unreachable for 5 s; one instance
//! SIGKILLed and restarted. At the end one table accounts for every event, write and alert, and
//! each line is checked.
//!
//! Reduced size here (it runs in `.ci/run`); `scripts/soak.sh` runs the full size (1,000
//! resources, 10 rounds: 10,000 events) with `KEYGUARD_SOAK_PER_KIND=200 KEYGUARD_SOAK_ROUNDS=10`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_sim::azurite::Azurite;
use keyguard_e2e::*;
use serde_json::{Value, json};

const SOAK_CONFIG: &str = r#"
[settings]
max_reverts_per_hour = 1000

[[profile]]
name = "cmk-enforce"
require = "cmk"
mode = "enforce"
allowed_vaults = ["https://kv-approved.vault.azure.net"]
scope = { resource_groups = ["rg-cmk*"] }

[[profile]]
name = "mmk-enforce"
require = "mmk"
mode = "enforce"
scope = { resource_groups = ["rg-mmk*"] }

[routes.soc]
kind = "webhook"
url_env = "KEYGUARD_SOAK_WEBHOOK_URL"
hmac_key_env = "KEYGUARD_SOAK_WEBHOOK_KEY"

[routes.secops]
kind = "teams"
url_env = "KEYGUARD_TEAMS_SECOPS_URL"

[alerts]
default_routes = ["soc", "secops"]
suppress_minutes = 0
"#;

const WEBHOOK_HMAC: &str = "soak-hmac-key-0123456789abcdef0123";
const BATCH: &str = "Microsoft.Batch/batchAccounts";
/// Delivery attempts per event before it is dead-lettered (Event Grid's default is 30).
const MAX_ATTEMPTS: u32 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// MMK required, a person puts it on a CMK each round: reverted each time.
    Reversible,
    /// MMK required, a Batch account on a CMK: going back is one-way, so alert only.
    OneWay,
    /// CMK required, a Batch account on MMK: a CMK only at creation, so alert only.
    CreationOnly,
    /// Tagged exempt: switched back and forth, never written, never alerted.
    Exempt,
    /// On an approved key: a tag write each round; compliant (its key read may fail).
    Compliant,
}

struct Size {
    per_kind: usize,
    rounds: usize,
    instances: usize,
}

impl Size {
    fn from_env() -> Size {
        let get = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        Size {
            per_kind: get("KEYGUARD_SOAK_PER_KIND", 6),
            rounds: get("KEYGUARD_SOAK_ROUNDS", 3),
            instances: get("KEYGUARD_SOAK_INSTANCES", 3).max(2),
        }
    }
}

/// A small deterministic generator: the same seed gives the same duplicates and order.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// What became of each event: handled (a 2xx from some instance) or dead-lettered.
#[derive(Default)]
struct Ledger {
    emitted: BTreeSet<String>,
    handled: BTreeSet<String>,
    dead_lettered: BTreeSet<String>,
    deliveries: usize,
    failed_attempts: usize,
}

/// Delivers events the way Event Grid does: each to some instance, again after a failure (with
/// a short, growing wait) until a 2xx or [`MAX_ATTEMPTS`], at most `burst` at a time.
async fn deliver(
    http: &reqwest::Client,
    instances: &[String],
    events: Vec<Value>,
    burst: usize,
    rng_seed: u64,
    ledger: &Arc<Mutex<Ledger>>,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(burst));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, event) in events.into_iter().enumerate() {
        let (http, instances, limit, ledger) = (http.clone(), instances.to_vec(), limit.clone(), ledger.clone());
        tasks.spawn(async move {
            let _slot = limit.acquire_owned().await;
            let id = event["id"].as_str().unwrap_or_default().to_string();
            let mut rng = Rng(rng_seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            for attempt in 1..=MAX_ATTEMPTS {
                let target = &instances[rng.below(instances.len())];
                let answer = http
                    .post(format!("{target}/EncryptionDrift"))
                    .header("content-type", "application/json")
                    .json(&functions_envelope(&event))
                    .send()
                    .await;
                let ok = matches!(&answer, Ok(r) if r.status().is_success());
                {
                    let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
                    l.deliveries += 1;
                    if ok {
                        l.handled.insert(id.clone());
                    } else {
                        l.failed_attempts += 1;
                    }
                }
                if ok {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
            }
            ledger
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .dead_lettered
                .insert(id);
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn cmk_patch() -> Value {
    json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {
        "keyvaulturi": APPROVED_VAULT, "keyname": "storage-cmk", "keyversion": ""}}}})
}

fn mmk_patch() -> Value {
    json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}})
}

/// The person's write for `kind` in round `round`.
fn patch_for(kind: Kind, round: usize) -> Value {
    match kind {
        Kind::Reversible => cmk_patch(),
        Kind::Exempt if round.is_multiple_of(2) => cmk_patch(),
        Kind::Exempt => mmk_patch(),
        Kind::OneWay | Kind::CreationOnly | Kind::Compliant => json!({"tags": {"soak-round": round.to_string()}}),
    }
}

/// Seeds every kind and returns the ids by kind.
async fn seed(env: &Env, per_kind: usize) -> anyhow::Result<BTreeMap<Kind, Vec<String>>> {
    let mut ids: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    let mut docs = Vec::new();
    let exempt_tags = json!({
        "keyguard-exempt-until": azure_sim::date_in_days(30),
        "keyguard-exempt-reason": "soak: vendor export",
    });
    for n in 0..per_kind {
        for (kind, group, name, vault, tags) in [
            (Kind::Reversible, "rg-mmk-rev", format!("strev{n:04}"), None, json!({})),
            (
                Kind::Exempt,
                "rg-mmk-exempt",
                format!("stex{n:04}"),
                None,
                exempt_tags.clone(),
            ),
            (
                Kind::Compliant,
                "rg-cmk-ok",
                format!("stok{n:04}"),
                Some(APPROVED_VAULT),
                json!({}),
            ),
        ] {
            docs.push(storage_account(group, &name, vault, tags));
            ids.entry(kind).or_default().push(account_id(group, &name));
        }
    }
    env.seed(json!(docs)).await?;
    for (kind, prefix, expect) in [
        (Kind::OneWay, "rg-mmk-oneway", "cmk"),
        (Kind::CreationOnly, "rg-cmk-create", "mmk"),
    ] {
        let body = json!({"subscription": SUBSCRIPTION, "resourceGroupPrefix": prefix,
            "perType": {BATCH: per_kind}, "expect": expect, "vault": APPROVED_VAULT});
        let r = env
            .http
            .post(format!("{}/_sim/seed/bulk", env.sim))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "bulk seed: {}", r.text().await?);
        let listed = env.sim_get("/_sim/resources").await?;
        let found: Vec<String> = listed
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|d| d["id"].as_str().map(str::to_string))
            .filter(|id| id.to_ascii_lowercase().contains(&format!("/resourcegroups/{prefix}")))
            .collect();
        anyhow::ensure!(found.len() == per_kind, "{prefix}: {} seeded", found.len());
        ids.insert(kind, found);
    }
    Ok(ids)
}

/// Storage that goes away: a TCP gate between keyguard and Azurite that, while closed, cuts
/// every open connection and refuses new ones. Stopping Azurite itself would not do: it keeps
/// tables in memory and saves them every few seconds, so a restart loses acknowledged writes
/// (seen here: three rows written, SIGTERM, restart, none left), which Azure Storage never does.
#[derive(Clone)]
struct StorageGate {
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl StorageGate {
    /// Listens on a free port and forwards to `upstream` (`host:port`); returns the gate and its port.
    async fn start(upstream: String) -> anyhow::Result<(StorageGate, u16)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (open, _) = tokio::sync::watch::channel(true);
        let open = Arc::new(open);
        let gate = StorageGate { open: open.clone() };
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut state = open.subscribe();
                if !*state.borrow() {
                    continue; // dropped: connection refused in effect
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|open| !*open) => {} // the outage cuts it
                    }
                });
            }
        });
        Ok((gate, port))
    }

    fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }
}

/// Whether a fault is on: `KEYGUARD_SOAK_SKIP=azurite,kill,arm,slow,token,keyvault,alerts`
/// turns some off, to find which one a failure needs.
fn fault_on(name: &str) -> bool {
    std::env::var("KEYGUARD_SOAK_SKIP").map_or(true, |skip| !skip.split(',').any(|s| s.trim() == name))
}

/// The faults of one round, cycling through the list as rounds go on.
fn faults_for(round: usize, budget_ms: u64) -> Vec<Value> {
    let faults = match round % 3 {
        0 => vec![
            (
                "arm",
                json!({"path_contains": "/subscriptions/", "status": 429, "retry_after_secs": 1, "times": 6}),
            ),
            (
                "arm",
                json!({"path_contains": "/subscriptions/", "status": 500, "times": 6}),
            ),
            (
                "arm",
                json!({"path_contains": "/subscriptions/", "status": 503, "times": 6}),
            ),
        ],
        1 => vec![
            (
                "slow",
                json!({"path_contains": "/subscriptions/", "latency_ms": budget_ms + 1_000, "times": 3}),
            ),
            (
                "token",
                json!({"path_contains": "/msi/token", "status": 500, "times": 4}),
            ),
        ],
        _ => vec![("keyvault", json!({"path_contains": "/keyvault/", "status": 503}))],
    };
    faults
        .into_iter()
        .filter(|(name, _)| fault_on(name))
        .map(|(_, f)| f)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_every_fault_at_once_no_drift_alert_or_event_is_lost_and_nothing_is_written_twice() -> anyhow::Result<()>
{
    let size = Size::from_env();
    let started = Instant::now();
    let azurite = Azurite::start().map_err(anyhow::Error::msg)?;
    let endpoint = reqwest::Url::parse(&azurite.table_endpoint)?;
    let upstream = format!(
        "{}:{}",
        endpoint.host_str().unwrap_or("127.0.0.1"),
        endpoint.port_or_known_default().unwrap_or(80)
    );
    let (gate, gate_port) = StorageGate::start(upstream).await?;
    // The emulator's development account, reached through the gate.
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};TableEndpoint=http://127.0.0.1:{gate_port}/{account};",
        account = azure_sim::azurite::DEV_ACCOUNT,
        key = azure_sim::azurite::DEV_KEY,
    );
    let (webhook, webhook_url) = AlertReceiver::start(200).await;
    let (teams, teams_url) = AlertReceiver::start(200).await;
    let budget_ms = 4_000;
    let mut env = Env::start(Options {
        no_delivery: true,
        time_budget_ms: budget_ms,
        base_config: Some(SOAK_CONFIG.to_string()),
        extra_env: vec![
            ("KEYGUARD_STORAGE".into(), connection),
            ("KEYGUARD_TABLE_PREFIX".into(), format!("soak{}", std::process::id())),
            ("KEYGUARD_SOAK_WEBHOOK_URL".into(), webhook_url),
            ("KEYGUARD_SOAK_WEBHOOK_KEY".into(), WEBHOOK_HMAC.into()),
            ("KEYGUARD_TEAMS_SECOPS_URL".into(), teams_url),
        ],
        ..Options::default()
    })
    .await?;
    let mut instances = vec![env.handler.clone()];
    instances.extend(env.start_more_handlers(size.instances - 1).await?);
    let ids = seed(&env, size.per_kind).await?;
    let kind_of: BTreeMap<String, Kind> = ids
        .iter()
        .flat_map(|(kind, list)| list.iter().map(move |id| (id.to_ascii_lowercase(), *kind)))
        .collect();

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = Rng(std::env::var("KEYGUARD_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe));
    let mut previous_round: Vec<Value> = Vec::new();
    let mut seen_events = 0;
    for round in 0..size.rounds {
        // People's writes: one per resource.
        for (kind, list) in &ids {
            for id in list {
                env.act_as_user(id, patch_for(*kind, round)).await?;
            }
        }
        let all = env.events().await?;
        let events: Vec<Value> = all[seen_events..].to_vec();
        seen_events = all.len();
        {
            let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
            l.emitted
                .extend(events.iter().filter_map(|e| e["id"].as_str().map(str::to_string)));
        }
        // Delivery at its worst: 10 % twice, in random order, in bursts.
        let mut plan = events.clone();
        for event in &events {
            if rng.below(10) == 0 {
                plan.push(event.clone());
            }
        }
        rng.shuffle(&mut plan);
        for fault in faults_for(round, budget_ms) {
            env.add_fault(fault).await?;
        }
        match round % 3 {
            _ if !fault_on("alerts") => {}
            1 => teams.set_status(429),
            2 => {
                teams.set_status(500);
                webhook.set_status(503);
            }
            _ => {}
        }
        let third = plan.len().div_ceil(3);
        let chunks: Vec<Vec<Value>> = plan.chunks(third.max(1)).map(<[Value]>::to_vec).collect();
        for (n, chunk) in chunks.into_iter().enumerate() {
            let burst = [8, 32, 4][n % 3];
            let outage = match (round % 3, n) {
                // Storage goes away for 5 s while the second third is delivered.
                (2, 1) if fault_on("azurite") => {
                    let gate = gate.clone();
                    gate.set_open(false);
                    Some(tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        gate.set_open(true);
                    }))
                }
                _ => None,
            };
            // One instance dies without warning before the second third and comes back after it.
            let kill = n == 1 && round % 3 == 1 && fault_on("kill");
            if kill {
                env.kill_handler();
            }
            deliver(&env.http, &instances, chunk, burst, rng.next(), &ledger).await;
            if kill {
                env.start_handler().await?;
                instances[0] = env.handler.clone();
            }
            if let Some(outage) = outage {
                outage.await?;
            }
        }
        env.clear_faults().await?;
        teams.set_status(200);
        webhook.set_status(200);
        // Late redeliveries of the round before, after its reverts: nothing may happen again.
        let late: Vec<Value> = previous_round.iter().filter(|_| rng.below(10) == 0).cloned().collect();
        deliver(&env.http, &instances, late, 8, rng.next(), &ledger).await;
        previous_round = events;
    }

    // Every alert leaves the outbox (retries after the receivers' failures are due within seconds:
    // they answered with Retry-After: 1).
    env.wait_for(Duration::from_secs(240), "the outbox to drain", || async {
        let out = env.keyguard_cli(&["alerts"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(out.status.success()
            && text
                .lines()
                .filter(|l| l.contains(" attempts "))
                .all(|l| l.split_whitespace().nth(1) == Some("sent")))
    })
    .await?;

    // The accounting. Every delivery has ended: the ledger is final.
    let ledger = std::mem::take(&mut *ledger.lock().unwrap_or_else(|p| p.into_inner()));
    let neither = ledger
        .emitted
        .iter()
        .filter(|e| !ledger.handled.contains(*e) && !ledger.dead_lettered.contains(*e))
        .count();
    let writes = env.arm_requests("PATCH", Some(KEYGUARD_OID)).await?;
    let puts = env.arm_requests("PUT", Some(KEYGUARD_OID)).await?;
    let mut writes_by_resource: BTreeMap<String, usize> = BTreeMap::new();
    for w in writes.iter().chain(puts.iter()) {
        let path = w["path"].as_str().unwrap_or_default().to_ascii_lowercase();
        *writes_by_resource.entry(path).or_default() += 1;
    }
    let count_writes = |kind: Kind| -> usize {
        ids[&kind]
            .iter()
            .map(|id| writes_by_resource.get(&id.to_ascii_lowercase()).copied().unwrap_or(0))
            .sum()
    };
    let reversible_exact = ids[&Kind::Reversible]
        .iter()
        .filter(|id| writes_by_resource.get(&id.to_ascii_lowercase()).copied().unwrap_or(0) == size.rounds)
        .count();
    let duplicate_writes: usize = ids[&Kind::Reversible]
        .iter()
        .map(|id| {
            writes_by_resource
                .get(&id.to_ascii_lowercase())
                .copied()
                .unwrap_or(0)
                .saturating_sub(size.rounds)
        })
        .sum();
    let forbidden_writes = count_writes(Kind::OneWay)
        + count_writes(Kind::CreationOnly)
        + count_writes(Kind::Exempt)
        + count_writes(Kind::Compliant);
    let mut still_drifted = 0;
    for id in &ids[&Kind::Reversible] {
        if env.key_source(id).await? != "Microsoft.Storage" {
            still_drifted += 1;
        }
    }

    // Alerts: the webhook's bodies, one per decision that alerts; each decision once.
    let bodies = webhook.accepted();
    let mut per_decision: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut per_resource: BTreeMap<(String, String), usize> = BTreeMap::new();
    for b in &bodies {
        let resource = b["resource_id"].as_str().unwrap_or_default().to_ascii_lowercase();
        let outcome = b["outcome"].as_str().unwrap_or_default().to_string();
        let correlation = b["correlation_id"].as_str().unwrap_or_default().to_string();
        *per_decision
            .entry((resource.clone(), outcome.clone(), correlation))
            .or_default() += 1;
        *per_resource.entry((resource, outcome)).or_default() += 1;
    }
    let sent_twice = per_decision.values().filter(|n| **n > 1).count();
    let alerts_for = |kind: Kind, outcomes: &[&str]| -> Vec<usize> {
        ids[&kind]
            .iter()
            .map(|id| {
                outcomes
                    .iter()
                    .map(|o| {
                        per_resource
                            .get(&(id.to_ascii_lowercase(), (*o).to_string()))
                            .copied()
                            .unwrap_or(0)
                    })
                    .sum()
            })
            .collect()
    };
    let expected_alerts =
        (ids[&Kind::Reversible].len() + ids[&Kind::OneWay].len() + ids[&Kind::CreationOnly].len()) * size.rounds;
    let reverted_alerts: usize = alerts_for(Kind::Reversible, &["reverted"]).iter().sum();
    let alert_only_alerts: usize = alerts_for(Kind::OneWay, &["alert-only", "manual-action-needed"])
        .iter()
        .chain(alerts_for(Kind::CreationOnly, &["alert-only", "manual-action-needed"]).iter())
        .sum();
    let unexpected_alerts: Vec<&(String, String)> = per_resource
        .keys()
        .filter(|(resource, outcome)| match kind_of.get(resource) {
            Some(Kind::Reversible) => outcome != "reverted",
            Some(Kind::OneWay | Kind::CreationOnly) => outcome != "alert-only" && outcome != "manual-action-needed",
            // The first write keyguard sees on a tagged resource may have added the tag.
            Some(Kind::Exempt) => outcome != "safeguard-changed",
            _ => true,
        })
        .collect();
    let exempt_alerts: Vec<usize> = alerts_for(Kind::Exempt, &["safeguard-changed"]);
    let exempt_ok = exempt_alerts.iter().all(|n| *n <= 1);
    let duplicates: Vec<String> = per_decision
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((r, o, c), n)| format!("{n}x {o} {c} {}", r.rsplit('/').next().unwrap_or_default()))
        .collect();
    // The audit trail: one record per drift decision, none lost, none twice.
    let trail = env.keyguard_cli(&["audit", "--format", "json", "--limit", "10000"])?;
    let trail: Value = serde_json::from_slice(&trail.stdout).unwrap_or(Value::Null);
    let mut audited: BTreeMap<String, usize> = BTreeMap::new();
    for record in trail.as_array().cloned().unwrap_or_default() {
        let decisive = matches!(
            record["result"].as_str(),
            Some("reverted" | "alert-only" | "manual-action-needed")
        );
        if decisive && let Some(resource) = record["resourceId"].as_str() {
            *audited.entry(resource.to_ascii_lowercase()).or_default() += 1;
        }
    }
    let audit_expected = expected_alerts;
    let audit_observed: usize = [Kind::Reversible, Kind::OneWay, Kind::CreationOnly]
        .iter()
        .flat_map(|k| ids[k].iter())
        .map(|id| audited.get(&id.to_ascii_lowercase()).copied().unwrap_or(0))
        .sum();
    let mut shortfalls = Vec::new();
    for kind in [Kind::Reversible, Kind::OneWay, Kind::CreationOnly] {
        let outcomes: &[&str] = if kind == Kind::Reversible {
            &["reverted"]
        } else {
            &["alert-only", "manual-action-needed"]
        };
        for (id, n) in ids[&kind].iter().zip(alerts_for(kind, outcomes)) {
            if n != size.rounds {
                let trail = env.keyguard_cli(&["audit", "--format", "json", "--resource", id])?;
                let trail: Value = serde_json::from_slice(&trail.stdout).unwrap_or(Value::Null);
                let results: Vec<String> = trail
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|r| format!("{}:{}", r["result"].as_str().unwrap_or("?"), r["alert"]))
                    .collect();
                shortfalls.push(format!(
                    "{n} alerts for {}: audit {results:?}",
                    id.rsplit('/').next().unwrap_or_default()
                ));
            }
        }
    }
    let teams_cards = teams.accepted().len();

    let rows: Vec<(&str, String, String, bool)> = vec![
        ("events emitted", "-".into(), ledger.emitted.len().to_string(), true),
        (
            "deliveries (duplicates, retries, late)",
            "-".into(),
            format!("{} ({} failed)", ledger.deliveries, ledger.failed_attempts),
            true,
        ),
        (
            "events handled",
            ledger.emitted.len().to_string(),
            ledger.handled.len().to_string(),
            true,
        ),
        (
            "events dead-lettered",
            "-".into(),
            ledger.dead_lettered.len().to_string(),
            true,
        ),
        (
            "events neither handled nor dead-lettered",
            "0".into(),
            neither.to_string(),
            neither == 0,
        ),
        (
            "reversible drifts reverted exactly once",
            (ids[&Kind::Reversible].len() * size.rounds).to_string(),
            (reversible_exact * size.rounds).to_string(),
            reversible_exact == ids[&Kind::Reversible].len(),
        ),
        (
            "reversible resources left drifted",
            "0".into(),
            still_drifted.to_string(),
            still_drifted == 0,
        ),
        (
            "writes to one-way, creation-only, exempt or compliant",
            "0".into(),
            forbidden_writes.to_string(),
            forbidden_writes == 0,
        ),
        (
            "duplicate writes",
            "0".into(),
            duplicate_writes.to_string(),
            duplicate_writes == 0,
        ),
        (
            "alerts expected (one per drift decision)",
            expected_alerts.to_string(),
            (reverted_alerts + alert_only_alerts).to_string(),
            reverted_alerts + alert_only_alerts == expected_alerts,
        ),
        (
            "audit records of drift decisions",
            audit_expected.to_string(),
            audit_observed.to_string(),
            audit_observed == audit_expected,
        ),
        ("alerts sent twice", "0".into(), sent_twice.to_string(), sent_twice == 0),
        (
            "exempt resources: at most one safeguard alert (tag first seen)",
            format!("<= {}", ids[&Kind::Exempt].len()),
            exempt_alerts.iter().sum::<usize>().to_string(),
            exempt_ok,
        ),
        (
            "alerts of an unexpected kind",
            "0".into(),
            unexpected_alerts.len().to_string(),
            unexpected_alerts.is_empty(),
        ),
        (
            "Teams cards (second route)",
            bodies.len().to_string(),
            teams_cards.to_string(),
            teams_cards == bodies.len(),
        ),
    ];
    eprintln!(
        "\nsoak: {} resources x {} rounds, {} instances, {:.1} s\n| measure | expected | observed | ok |\n|---|---|---|---|",
        kind_of.len(),
        size.rounds,
        size.instances,
        started.elapsed().as_secs_f64()
    );
    for (measure, expected, observed, ok) in &rows {
        eprintln!(
            "| {measure} | {expected} | {observed} | {} |",
            if *ok { "yes" } else { "NO" }
        );
    }
    let failed: Vec<&str> = rows.iter().filter(|r| !r.3).map(|r| r.0).collect();
    anyhow::ensure!(
        failed.is_empty(),
        "soak accounting failed: {failed:?}; unexpected alerts {unexpected_alerts:?}; sent twice {duplicates:?}; not {} alerts: {shortfalls:?}; log tail:\n{}",
        size.rounds,
        env.log_tail(10)
    );
    drop(env);
    drop(azurite);
    Ok(())
}
