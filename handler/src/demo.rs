//! `keyguard demo`: the whole loop on one machine with no Azure and no configuration.
//! Starts the Azure stand-in in-process, starts this same binary as the custom handler (a child
//! process, exactly as the Functions host would), makes drifting changes and prints what happened.
//! Exits 0 only if every outcome was the expected one.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000de";
const APPROVED_VAULT: &str = "https://kv-approved.vault.azure.net";
const ROGUE_VAULT: &str = "https://kv-rogue.vault.azure.net";
/// A vault outside the demo tenant's estate: no Resource Graph row names it.
const HOSTAGE_VAULT: &str = "https://kv-hostage.vault.azure.net";

const CONFIG: &str = r#"# keyguard demo profiles
[settings]
max_reverts_per_hour = 3

[[profile]]
name = "payments-cmk"
require = "cmk"
mode = "enforce"
allowed_vaults = ["https://kv-approved.vault.azure.net"]
scope = { resource_groups = ["rg-payments-*"] }

# No allowed_vaults: the key-swap guard's estate check decides which vaults are ours.
[[profile]]
name = "ledger-cmk"
require = "cmk"
mode = "enforce"
scope = { resource_groups = ["rg-ledger-*"] }

[[profile]]
name = "analytics-mmk"
require = "mmk"
mode = "enforce"
scope = { resource_groups = ["rg-analytics"] }

# Alerts go to a Teams Workflows webhook; the demo plays Teams and saves each card it receives.
[routes.secops]
kind = "teams"
url_env = "KEYGUARD_DEMO_TEAMS_URL"

# ... and to the platform team by e-mail, through the demo's local SMTP sink.
[routes.platform-mail]
kind = "email"
smtp_env = "KEYGUARD_DEMO_SMTP"
from = "keyguard@contoso.example"
to = ["platform-team@contoso.example"]

[alerts]
default_routes = ["secops", "platform-mail"]
suppress_minutes = 0
"#;

/// Alerts the steps raise, each to Teams and by e-mail: four reverts and one changed key.
const ALERTS: usize = 5;

struct Step {
    title: &'static str,
    account: &'static str,
    actor: Actor,
    patch: Value,
    /// (verdict, result) keyguard must record for this step's event.
    expect: (&'static str, &'static str),
    /// keySource the account must end with.
    final_key_source: &'static str,
}

#[derive(Clone, Copy)]
enum Actor {
    Person,
    Keyguard,
}

fn account_id(name: &str) -> String {
    let rg = if name.starts_with("stanalytics") {
        "rg-analytics"
    } else if name.starts_with("stledger") {
        "rg-ledger-prod"
    } else {
        "rg-payments-prod"
    };
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}")
}

fn storage_account(name: &str, cmk: bool, tags: Value) -> Value {
    let encryption = if cmk {
        json!({
            "keySource": "Microsoft.Keyvault",
            "keyvaultproperties": {"keyvaulturi": APPROVED_VAULT, "keyname": "storage-cmk", "keyversion": ""},
            "services": {"blob": {"enabled": true, "keyType": "Account"}, "file": {"enabled": true, "keyType": "Account"}}
        })
    } else {
        json!({"keySource": "Microsoft.Storage", "services": {"blob": {"enabled": true, "keyType": "Account"}, "file": {"enabled": true, "keyType": "Account"}}})
    };
    json!({
        "id": account_id(name),
        "name": name,
        "type": "Microsoft.Storage/storageAccounts",
        "location": "westeurope",
        "kind": "StorageV2",
        "sku": {"name": "Standard_GRS", "tier": "Standard"},
        "identity": {"type": "SystemAssigned", "principalId": "911871cc-ffd1-4fc4-ac11-7a316433ea66", "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47"},
        "tags": tags,
        "properties": {"encryption": encryption, "provisioningState": "Succeeded", "supportsHttpsTrafficOnly": true, "minimumTlsVersion": "TLS1_2"}
    })
}

fn steps() -> Vec<Step> {
    vec![
        Step {
            title: "someone switches a CMK account to Microsoft-managed keys",
            account: "stpaymentsdata",
            actor: Actor::Person,
            patch: json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
            expect: ("drift", "reverted"),
            final_key_source: "Microsoft.Keyvault",
        },
        Step {
            title: "someone points an account at a key in an unapproved vault",
            account: "stpaymentslogs",
            actor: Actor::Person,
            patch: json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyvaulturi": ROGUE_VAULT, "keyname": "my-own-key", "keyversion": ""}}}}),
            expect: ("drift", "reverted"),
            final_key_source: "Microsoft.Keyvault",
        },
        Step {
            title: "someone switches an exempt account (tag keyguard-exempt-until) to MMK",
            account: "stlegacyexport",
            actor: Actor::Person,
            patch: json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
            expect: ("exempt", "exempt"),
            final_key_source: "Microsoft.Storage",
        },
        Step {
            title: "keyguard's own identity writes to an account",
            account: "stanalyticsraw",
            actor: Actor::Keyguard,
            patch: json!({"tags": {"cost-center": "4711"}}),
            expect: ("skipped", "own-write"),
            final_key_source: "Microsoft.Storage",
        },
        Step {
            title: "someone puts an MMK-only account on a customer-managed key",
            account: "stanalyticsraw",
            actor: Actor::Person,
            patch: json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyvaulturi": APPROVED_VAULT, "keyname": "storage-cmk", "keyversion": ""}}}}),
            expect: ("drift", "reverted"),
            final_key_source: "Microsoft.Storage",
        },
        Step {
            title: "someone moves a compliant CMK account to another key (same approved vault)",
            account: "stpaymentsdata",
            actor: Actor::Person,
            patch: json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyvaulturi": APPROVED_VAULT, "keyname": "storage-cmk-2", "keyversion": ""}}}}),
            // Still compliant, so nothing is written; but another key is news for a person.
            expect: ("compliant", "key-changed"),
            final_key_source: "Microsoft.Keyvault",
        },
        Step {
            title: "someone tags a ledger account (keyguard reads it and records its known-good key)",
            account: "stledgerarchive",
            actor: Actor::Person,
            patch: json!({"tags": {"env": "prod", "owner": "ledger-team"}}),
            expect: ("compliant", "compliant"),
            final_key_source: "Microsoft.Keyvault",
        },
        Step {
            title: "someone points it at a key in a vault nobody in the tenant can see (the ransomware move)",
            account: "stledgerarchive",
            actor: Actor::Person,
            patch: json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyvaulturi": HOSTAGE_VAULT, "keyname": "ransom", "keyversion": ""}}}}),
            // Resource Graph does not find the vault: high-severity drift, reverted to the known-good key.
            expect: ("drift", "reverted"),
            final_key_source: "Microsoft.Keyvault",
        },
    ]
}

pub async fn run(output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = match output {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("keyguard-demo-{}", uuid::Uuid::new_v4())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let started = Instant::now();
    let config_path = dir.join("keyguard.toml");
    std::fs::write(&config_path, CONFIG)?;
    // Every run starts from nothing: a state store kept from an earlier run would carry its
    // revert counts into this one and (rightly) rate-limit the reverts the demo expects.
    let state_path = dir.join("state.redb");
    let mut stale_files = vec![state_path.clone(), dir.join("deadletter.jsonl")];
    for entry in std::fs::read_dir(&dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if (name.starts_with("teams-card-") && name.ends_with(".json"))
            || (name.starts_with("mail-") && name.ends_with(".eml"))
        {
            stale_files.push(entry.path());
        }
    }
    for stale in &stale_files {
        match std::fs::remove_file(stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot reset {}", stale.display())),
        }
    }

    let seed = vec![
        storage_account("stpaymentsdata", true, json!({"env": "prod"})),
        storage_account("stpaymentslogs", true, json!({"env": "prod"})),
        storage_account(
            "stlegacyexport",
            true,
            json!({"keyguard-exempt-until": azure_sim::date_in_days(60), "keyguard-exempt-reason": "CHG-1234 vendor export"}),
        ),
        storage_account("stanalyticsraw", false, json!({})),
        storage_account("stledgerarchive", true, json!({"env": "prod"})),
        // The approved vault is part of the estate: Resource Graph lists it.
        azure_sim::vaults::key_vault(SUBSCRIPTION, "rg-keys", "kv-approved", azure_sim::DEFAULT_TENANT_ID),
    ];
    let sim_config = azure_sim::SimConfig {
        seed,
        deadletter_path: Some(dir.join("deadletter.jsonl")),
        ..Default::default()
    };
    let keyguard_principal = sim_config.system_identity.clone();
    let sim = azure_sim::start(sim_config, "127.0.0.1:0".parse()?).await?;
    let sim_url = sim.base_url();

    let teams = TeamsStandIn::start(dir.clone()).await?;
    let (mail_sink, mail_addr) = azure_sim::smtp::start_smtp_sink("127.0.0.1:0".parse()?, Some(dir.clone())).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let handler_url = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--log-format", "json", "serve"])
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("KEYGUARD_CONFIG", &config_path)
        .env("KEYGUARD_STATE_PATH", &state_path)
        .env("KEYGUARD_ARM_ENDPOINT", &sim_url)
        .env("KEYGUARD_KEYVAULT_ENDPOINT", &sim_url)
        .env("KEYGUARD_AUTH", "managed-identity")
        .env("IDENTITY_ENDPOINT", sim.msi_endpoint())
        .env("IDENTITY_HEADER", azure_sim::SimConfig::default().identity_header)
        .env("RUST_LOG", "info")
        .env("KEYGUARD_DEMO_TEAMS_URL", &teams.url)
        .env("KEYGUARD_DEMO_SMTP", format!("smtp://{mail_addr}?tls=none"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start `keyguard serve`")?;
    let audit: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log_path = dir.join("keyguard.log");
    if let Some(stdout) = child.stdout.take() {
        let audit = audit.clone();
        let mut log_file = std::fs::File::create(&log_path)?;
        std::thread::spawn(move || {
            use std::io::Write;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log_file, "{line}");
                let record = serde_json::from_str::<Value>(&line)
                    .ok()
                    .filter(|v| v["target"] == "keyguard::audit");
                if let Some(record) = record.and_then(|v| {
                    v["fields"]["record"]
                        .as_str()
                        .and_then(|r| serde_json::from_str(r).ok())
                }) {
                    audit.lock().unwrap_or_else(|p| p.into_inner()).push(record);
                }
            }
        });
    }
    let result = drive(&sim_url, &handler_url, &keyguard_principal, &audit, started).await;
    // Alerts leave through the outbox a moment after the decision: give the last one time to land.
    let _ = wait_until(Duration::from_secs(10), || async {
        Ok(teams.received() >= ALERTS && mail_sink.messages().len() >= ALERTS)
    })
    .await;
    let cards = teams.received();
    let mails = mail_sink.messages().len();
    println!(
        "\nTeams (stand-in) received {cards} Adaptive Cards, saved as {}/teams-card-*.json",
        dir.display()
    );
    println!(
        "the SMTP sink received {mails} e-mails, saved as {}/mail-*.eml",
        dir.display()
    );
    let result = result.map(|ok| ok && cards == ALERTS && mails == ALERTS);
    let _ = child.kill();
    let _ = child.wait();
    sim.shutdown().await;
    println!("\nstate, profiles and logs: {}", dir.display());
    match result {
        Ok(true) => {
            println!("demo: every outcome as expected");
            Ok(ExitCode::SUCCESS)
        }
        Ok(false) => {
            println!("demo: some outcomes were NOT as expected (see above)");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e),
    }
}

async fn drive(
    sim: &str,
    handler: &str,
    keyguard: &azure_sim::Principal,
    audit: &Mutex<Vec<Value>>,
    started: Instant,
) -> anyhow::Result<bool> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    wait_until(Duration::from_secs(20), || async {
        Ok(http.get(format!("{handler}/")).send().await.is_ok())
    })
    .await?;
    let delivery =
        json!({"mode": "functions", "url": handler, "function_name": "EncryptionDrift", "time_factor": 0.01});
    http.put(format!("{sim}/_sim/delivery"))
        .json(&delivery)
        .send()
        .await?
        .error_for_status()?;
    let stamp = |started: Instant| format!("[{:>6.2}s]", started.elapsed().as_secs_f64());

    println!("keyguard demo: Azure stand-in at {sim}, custom handler at {handler}\n");
    println!(
        "{} keyguard looks at each account once and records its known-good key",
        stamp(started)
    );
    for name in ["stpaymentsdata", "stpaymentslogs", "stlegacyexport", "stanalyticsraw"] {
        let r = http
            .post(format!("{handler}/api/check"))
            .json(&json!({"resourceId": account_id(name)}))
            .send()
            .await?;
        let outcome: Value = r.json().await?;
        println!(
            "          {name:<16} {:<10} {}",
            outcome["verdict"].as_str().unwrap_or("?"),
            outcome["profile"].as_str().unwrap_or("-")
        );
    }

    let person = json!({"oid": "11111111-2222-3333-4444-555555555555", "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "name": "Mallory Admin", "upn": "mallory@contoso.example"});
    let own = json!({"oid": keyguard.oid, "appid": keyguard.appid, "name": keyguard.name});
    let mut all_ok = true;
    for (n, step) in steps().iter().enumerate() {
        let id = account_id(step.account);
        let principal = match step.actor {
            Actor::Person => &person,
            Actor::Keyguard => &own,
        };
        println!("\n{} step {}: {}", stamp(started), n + 1, step.title);
        let seen_before = audit.lock().unwrap_or_else(|p| p.into_inner()).len();
        let events_before = json_len(&http, &format!("{sim}/_sim/events")).await?;
        let r = http
            .post(format!("{sim}/_sim/act"))
            .json(&json!({"id": id, "principal": principal, "patch": step.patch}))
            .send()
            .await?;
        let status = r.status();
        if !status.is_success() {
            bail!("the stand-in refused step {}: {status} {}", n + 1, r.text().await?);
        }
        println!(
            "          {} PATCHed {} through ARM; Event Grid delivers ResourceWriteSuccess",
            principal["name"].as_str().unwrap_or("?"),
            step.account
        );
        let expected = step.expect;
        let found = wait_for_record(audit, seen_before, &id, expected.1).await;
        // Wait for the echo of keyguard's own revert to be delivered too, so steps do not overlap.
        let _ = wait_until(Duration::from_secs(10), || async {
            let events = json_len(&http, &format!("{sim}/_sim/events")).await?;
            let delivered = delivered_ok(&http, sim).await?;
            Ok(delivered >= events && events > events_before)
        })
        .await;
        let mut records: Vec<Value> = audit.lock().unwrap_or_else(|p| p.into_inner())[seen_before..].to_vec();
        records.retain(|r| r["resourceId"].as_str().is_some_and(|r| r.eq_ignore_ascii_case(&id)));
        // The echo of keyguard's own revert is logged before the revert's record (which waits for
        // the verifying GET); show the revert first, then the echo it caused.
        let is_echo = |r: &Value| r["result"] == "own-write" && !matches!(step.actor, Actor::Keyguard);
        records.sort_by_key(is_echo);
        for record in &records {
            println!(
                "{} keyguard: {:<9} action {:<14} -> {}{}",
                stamp(started),
                record["verdict"].as_str().unwrap_or("?"),
                record["action"].as_str().unwrap_or("?"),
                record["result"].as_str().unwrap_or("?"),
                record["detail"].as_str().map(|d| format!(" ({d})")).unwrap_or_default(),
            );
            if is_echo(record) {
                println!("          ^ that is the event of keyguard's own write: ignored, no second revert");
            }
        }
        let doc: Value = http
            .get(format!("{sim}/_sim/resource"))
            .query(&[("id", &id)])
            .send()
            .await?
            .json()
            .await?;
        let key_source = doc["properties"]["encryption"]["keySource"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let ok = found && key_source.eq_ignore_ascii_case(step.final_key_source);
        all_ok &= ok;
        println!(
            "          {} now {} — expected {}/{} and {}: {}",
            step.account,
            key_source,
            expected.0,
            expected.1,
            step.final_key_source,
            if ok { "OK" } else { "NOT AS EXPECTED" }
        );
    }
    let patches: Vec<Value> = http
        .get(format!("{sim}/_sim/requests"))
        .send()
        .await?
        .json::<Vec<Value>>()
        .await?
        .into_iter()
        .filter(|r| r["method"] == "PATCH" && r["principal_oid"] == keyguard.oid.as_str())
        .collect();
    println!(
        "\n{} keyguard sent {} PATCH requests to ARM (one per revert, none for its own echo events)",
        stamp(started),
        patches.len()
    );
    let reverts = steps().iter().filter(|s| s.expect.1 == "reverted").count();
    all_ok &= patches.len() == reverts;
    Ok(all_ok)
}

async fn wait_for_record(audit: &Mutex<Vec<Value>>, from: usize, id: &str, result: &str) -> bool {
    wait_until(Duration::from_secs(15), || async {
        let records = audit.lock().unwrap_or_else(|p| p.into_inner());
        Ok(records[from.min(records.len())..]
            .iter()
            .any(|r| r["resourceId"].as_str().is_some_and(|r| r.eq_ignore_ascii_case(id)) && r["result"] == result))
    })
    .await
    .is_ok()
}

async fn json_len(http: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    Ok(http.get(url).send().await?.json::<Vec<Value>>().await?.len())
}

async fn delivered_ok(http: &reqwest::Client, sim: &str) -> anyhow::Result<usize> {
    let deliveries: Vec<Value> = http.get(format!("{sim}/_sim/deliveries")).send().await?.json().await?;
    let ids: std::collections::BTreeSet<&str> = deliveries
        .iter()
        .filter(|d| d["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .filter_map(|d| d["event_id"].as_str())
        .collect();
    Ok(ids.len())
}

async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await.unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Plays the Teams Workflows webhook: answers 202 and saves each posted card to the output folder.
struct TeamsStandIn {
    url: String,
    count: Arc<std::sync::atomic::AtomicUsize>,
}

impl TeamsStandIn {
    async fn start(dir: PathBuf) -> anyhow::Result<Self> {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        let app = axum::Router::new().route(
            "/workflows",
            axum::routing::post(move |body: axum::body::Bytes| {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let path = dir.join(format!("teams-card-{n}.json"));
                async move {
                    let pretty = serde_json::from_slice::<Value>(&body)
                        .and_then(|v| serde_json::to_vec_pretty(&v))
                        .unwrap_or_else(|_| body.to_vec());
                    let _ = std::fs::write(path, pretty);
                    axum::http::StatusCode::ACCEPTED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/workflows", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, count })
    }

    fn received(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}
