//! End-to-end harness: starts the real `keyguard` binary twice — once as `keyguard sim` (the Azure
//! stand-in) and once as `keyguard serve` (the custom handler, as the Functions host would) — as
//! separate processes talking HTTP, with the real `azure_identity` credential fetching tokens from
//! the stand-in's managed-identity endpoint.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

#[path = "secret_scan.rs"]
pub mod secret_scan;
use secret_scan::{Leak, SecretScan};

pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000e2e0";
pub const APPROVED_VAULT: &str = "https://kv-approved.vault.azure.net";
pub const ROGUE_VAULT: &str = "https://kv-rogue.vault.azure.net";
/// The stand-in's default system-assigned identity of the function app (keyguard itself).
pub const KEYGUARD_OID: &str = azure_sim::DEFAULT_SYSTEM_OID;
pub const KEYGUARD_APPID: &str = azure_sim::DEFAULT_SYSTEM_CLIENT_ID;

pub const CONFIG: &str = r#"
[settings]
max_reverts_per_hour = 3

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

[[profile]]
name = "cmk-alert"
require = "cmk"
mode = "alert"
scope = { resource_groups = ["rg-alert*"] }
"#;

/// One Teams route for every alert, its Workflows URL from `KEYGUARD_TEAMS_SECOPS_URL`, no suppression.
pub const TEAMS_ROUTES: &str = r#"
[routes.secops]
kind = "teams"
url_env = "KEYGUARD_TEAMS_SECOPS_URL"

[alerts]
default_routes = ["secops"]
suppress_minutes = 0
"#;

/// Path of the `keyguard` binary built by `cargo build` (target/<profile>/keyguard next to deps/).
pub fn keyguard_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYGUARD_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile> folder");
    let bin = profile_dir.join("keyguard");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p keyguard` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

pub fn fixture(relative: &str) -> Value {
    // Cargo sets the variable at run time too; prefer it, so a test binary reused from another
    // checkout (shared target dir) still reads this checkout's fixtures.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let path = Path::new(&manifest_dir).join("fixtures").join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub fn account_id(resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{resource_group}/providers/Microsoft.Storage/storageAccounts/{name}"
    )
}

/// A storage account document in the shape of Microsoft's GET example, renamed and keyed as asked.
pub fn storage_account(resource_group: &str, name: &str, cmk_vault: Option<&str>, tags: Value) -> Value {
    let mut doc = fixture("arm/storage/StorageAccountGetPropertiesCMKEnabled.json")["responses"]["200"]["body"].clone();
    doc["id"] = json!(account_id(resource_group, name));
    doc["name"] = json!(name);
    doc["tags"] = tags;
    let encryption = &mut doc["properties"]["encryption"];
    match cmk_vault {
        Some(vault) => {
            encryption["keySource"] = json!("Microsoft.Keyvault");
            encryption["keyvaultproperties"] = json!({
                "keyvaulturi": vault, "keyname": "storage-cmk", "keyversion": "",
                "currentVersionedKeyIdentifier": format!("{vault}/keys/storage-cmk/0682afdd9c104f4285df20107e956cad"),
                "lastKeyRotationTimestamp": "2019-12-13T20:36:23.7023290Z"
            });
        }
        None => {
            encryption["keySource"] = json!("Microsoft.Storage");
            if let Some(map) = encryption.as_object_mut() {
                map.remove("keyvaultproperties");
            }
        }
    }
    doc
}

/// A port that was free a moment ago. The handler binds it itself (the Functions host names the
/// port), so another process can take it in between: a handler that cannot bind is started again
/// on another port (see [`Env::start_handler`]).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keyguard-e2e-{label}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A child process that is killed when the test ends, whatever the outcome.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The webhook key `keyguard webhook` runs with in these tests (Event Grid sends it as `?code=`).
pub const WEBHOOK_KEY: &str = "e2e-webhook-key-0123456789abcdef";

pub struct Options {
    pub dry_run: bool,
    pub time_budget_ms: u64,
    /// Event Grid's retry schedule multiplied by this (10 s -> 10 s x factor).
    pub time_factor: f64,
    pub max_attempts: u32,
    pub webhook: bool,
    /// Start the stand-in without an Event Grid target: the test posts events itself.
    pub no_delivery: bool,
    /// Deliver in the CloudEvents 1.0 schema instead of the Event Grid schema.
    pub cloud_events: bool,
    /// Appended to the test profile file (alert routes, rules).
    pub extra_config: String,
    /// Extra environment for keyguard (the secrets routes name). Values the variable's name
    /// marks as secret (`…_URL`, `…_KEY`, `…_PASSWORD`, a storage connection string's key, …)
    /// must never appear in keyguard's output: see [`Env::leaked_secrets`].
    pub extra_env: Vec<(String, String)>,
    /// More values (label, value) this run treats as secrets, beyond its environment.
    pub extra_secrets: Vec<(String, String)>,
    /// The handler's first port, instead of a free one (a test of a port taken meanwhile).
    pub first_handler_port: Option<u16>,
    /// Profiles and settings instead of [`CONFIG`] (`extra_config` is still appended).
    pub base_config: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dry_run: false,
            time_budget_ms: 5_000,
            time_factor: 0.01,
            max_attempts: 30,
            webhook: false,
            no_delivery: false,
            cloud_events: false,
            extra_config: String::new(),
            extra_env: Vec::new(),
            extra_secrets: Vec::new(),
            first_handler_port: None,
            base_config: None,
        }
    }
}

pub struct Env {
    _sim: ChildGuard,
    handler_child: Option<ChildGuard>,
    /// More `keyguard serve` instances sharing the run's configuration and state store (scale-out).
    more_handlers: Vec<ChildGuard>,
    handler_port: u16,
    options: Options,
    pub sim: String,
    pub handler: String,
    pub dir: PathBuf,
    pub http: reqwest::Client,
    /// Everything the run's keyguard handlers wrote, stdout and stderr, in arrival order.
    handler_log: Arc<Mutex<Vec<String>>>,
    /// What `keyguard_cli` and `command` runs printed, stdout and stderr.
    cli_log: Arc<Mutex<Vec<String>>>,
}

/// Run folders are removed after a passing test and kept (with the state store) after a failure.
/// A run that passed is failed here if any secret it configured, or any token the stand-in
/// issued, appears in anything keyguard printed (issue 13: no secret in the logs).
impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let leaks = self.leaked_secrets_blocking();
        match leaks {
            Ok(leaks) if leaks.is_empty() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            Ok(leaks) => panic!(
                "keyguard printed secrets ({} findings; run folder kept: {}):\n{}",
                leaks.len(),
                self.dir.display(),
                leaks.iter().map(Leak::to_string).collect::<Vec<_>>().join("\n")
            ),
            Err(e) => panic!("the secret scan could not run: {e:#}"),
        }
    }
}

impl Env {
    pub async fn start(options: Options) -> anyhow::Result<Env> {
        let bin = keyguard_bin();
        let dir = temp_dir("run");
        let addr_file = dir.join("sim.addr");
        let handler_port = options.first_handler_port.unwrap_or_else(free_port);
        let handler = format!("http://127.0.0.1:{handler_port}");
        let mut sim_cmd = Command::new(&bin);
        sim_cmd
            .args(["--log-format", "text", "sim", "--port", "0", "--addr-file"])
            .arg(&addr_file)
            .args(["--time-factor", &options.time_factor.to_string()])
            .args(["--max-attempts", &options.max_attempts.to_string()])
            .arg("--deadletter-file")
            .arg(dir.join("deadletter.jsonl"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if options.cloud_events {
            sim_cmd.args(["--schema", "cloudevents"]);
        }
        match (options.no_delivery, options.webhook) {
            (true, _) => {}
            (false, true) => {
                sim_cmd.args([
                    "--delivery-mode",
                    "webhook",
                    "--deliver-to",
                    &format!("{handler}/api/events?code={WEBHOOK_KEY}"),
                ]);
            }
            (false, false) => {
                sim_cmd.args([
                    "--delivery-mode",
                    "functions",
                    "--deliver-to",
                    &handler,
                    "--function-name",
                    "EncryptionDrift",
                ]);
            }
        }
        let sim_child = ChildGuard(sim_cmd.spawn().context("spawn keyguard sim")?);
        let sim_addr = wait_for_file(&addr_file, Duration::from_secs(20))?;
        let sim = format!("http://{}", sim_addr.trim());

        let config_path = dir.join("keyguard.toml");
        let base = options.base_config.as_deref().unwrap_or(CONFIG);
        std::fs::write(&config_path, format!("{base}\n{}", options.extra_config))?;
        let mut env = Env {
            _sim: sim_child,
            handler_child: None,
            more_handlers: Vec::new(),
            sim,
            handler,
            dir,
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?,
            handler_log: Arc::new(Mutex::new(Vec::new())),
            cli_log: Arc::new(Mutex::new(Vec::new())),
            handler_port,
            options,
        };
        env.start_handler().await?;
        Ok(env)
    }

    /// Starts `keyguard serve` (or `webhook`) on the run's state store; used again after a kill.
    pub async fn start_handler(&mut self) -> anyhow::Result<()> {
        for _ in 0..5 {
            let (child, listening) = self.spawn_handler(self.handler_port)?;
            if listening {
                self.handler_child = Some(child);
                return self.wait_ready(&self.handler).await;
            }
            // Its port was taken since it was picked: another one, and the stand-in told.
            self.handler_port = free_port();
            self.handler = format!("http://127.0.0.1:{}", self.handler_port);
            self.deliver_to_handler().await?;
        }
        bail!("keyguard could not bind a port in five tries")
    }

    /// Points the stand-in's Event Grid delivery at the handler, as the run's options say.
    async fn deliver_to_handler(&self) -> anyhow::Result<()> {
        if self.options.no_delivery {
            return Ok(());
        }
        let (mode, url) = if self.options.webhook {
            ("webhook", self.events_url())
        } else {
            ("functions", self.handler.clone())
        };
        let schema = if self.options.cloud_events {
            "cloudevents"
        } else {
            "eventgrid"
        };
        let body = json!({
            "mode": mode, "url": url, "function_name": "EncryptionDrift", "schema": schema,
            "max_attempts": self.options.max_attempts, "time_factor": self.options.time_factor,
        });
        let r = self
            .http
            .put(format!("{}/_sim/delivery", self.sim))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "delivery not configured: {}", r.text().await?);
        Ok(())
    }

    /// Starts `n` more instances (as a scaled-out Functions app would) and returns their base URLs.
    /// They share the configuration and environment, so with a Table Storage store, the state.
    pub async fn start_more_handlers(&mut self, n: usize) -> anyhow::Result<Vec<String>> {
        let mut urls = Vec::new();
        while urls.len() < n {
            let port = free_port();
            let (child, listening) = self.spawn_handler(port)?;
            if !listening {
                continue; // the port was taken since it was picked
            }
            self.more_handlers.push(child);
            let url = format!("http://127.0.0.1:{port}");
            self.wait_ready(&url).await?;
            urls.push(url);
        }
        Ok(urls)
    }

    /// Starts one handler on `port`; `false` when it exited without listening (the port was
    /// taken), which the caller answers with another port. Only the child's own "listening"
    /// line counts: a probe of the port could reach whichever process holds it.
    fn spawn_handler(&self, port: u16) -> anyhow::Result<(ChildGuard, bool)> {
        let mut cmd = Command::new(keyguard_bin());
        if self.options.webhook {
            cmd.args(["--log-format", "json", "webhook", "--port", &port.to_string()])
                .env("KEYGUARD_WEBHOOK_KEY", WEBHOOK_KEY);
        } else {
            cmd.args(["--log-format", "json", "serve"])
                .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string());
        }
        self.keyguard_env(&mut cmd)
            .env("RUST_LOG", "info")
            .env_remove("FUNCTIONS_WORKER_RUNTIME")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard(cmd.spawn().context("spawn keyguard serve")?);
        let stdout = child.0.stdout.take().context("the handler's stdout")?;
        let stderr = child.0.stderr.take().context("the handler's stderr")?;
        let (said, listening) = std::sync::mpsc::channel();
        let log = self.handler_log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("listening") {
                    let _ = said.send(());
                }
                log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        // stderr is kept for the secret scan and still shown with the test's output.
        let log = self.handler_log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        // The channel closes when the child's stdout does: it exited before listening.
        let listening = listening.recv_timeout(Duration::from_secs(20)).is_ok();
        Ok((child, listening))
    }

    /// `keyguard webhook`'s Event Grid endpoint, with the webhook key as Event Grid sends it.
    pub fn events_url(&self) -> String {
        format!("{}/api/events?code={WEBHOOK_KEY}", self.handler)
    }

    /// The process id of the first `keyguard serve` (its `/proc` entry: memory, for the load driver).
    pub fn handler_pid(&self) -> Option<u32> {
        self.handler_child.as_ref().map(|c| c.0.id())
    }

    /// SIGKILL, as a crashed or recycled Functions worker: no graceful shutdown.
    pub fn kill_handler(&mut self) {
        self.handler_child = None;
    }

    /// Runs a `keyguard` command against this run's configuration, stand-in and state (an
    /// embedded store only while the handler is stopped: the file serves one process).
    pub fn keyguard_cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut cmd = Command::new(keyguard_bin());
        cmd.args(args).env("RUST_LOG", "warn");
        Ok(self.keep_output(self.keyguard_env(&mut cmd).output()?))
    }

    /// Runs any program with the run's keyguard environment (e.g. `script`, to give keyguard a
    /// terminal).
    pub fn command(&self, program: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut cmd = Command::new(program);
        cmd.args(args).env("RUST_LOG", "warn");
        Ok(self.keep_output(self.keyguard_env(&mut cmd).output()?))
    }

    /// Keeps a command's output for the secret scan.
    fn keep_output(&self, output: std::process::Output) -> std::process::Output {
        let mut log = self.cli_log.lock().unwrap_or_else(|p| p.into_inner());
        for stream in [&output.stdout, &output.stderr] {
            log.extend(String::from_utf8_lossy(stream).lines().map(str::to_string));
        }
        output
    }

    /// The secrets this run configured: the webhook key, the managed-identity header, every
    /// secret in the extra environment (by its name), and the test's own extra secrets.
    pub fn secrets(&self) -> SecretScan {
        let mut scan = SecretScan::new();
        if self.options.webhook {
            scan.secret("KEYGUARD_WEBHOOK_KEY", WEBHOOK_KEY);
        }
        scan.secret("IDENTITY_HEADER", &azure_sim::SimConfig::default().identity_header);
        for (name, value) in &self.options.extra_env {
            scan.env(name, value);
        }
        for (label, value) in &self.options.extra_secrets {
            scan.secret(label, value);
        }
        scan
    }

    /// Every configured secret and every token the stand-in issued (through its managed-identity
    /// endpoint, the tokens keyguard holds) that appears in what keyguard printed so far: every
    /// handler's stdout and stderr, and every CLI run's output.
    pub async fn leaked_secrets(&self) -> anyhow::Result<Vec<Leak>> {
        self.leaked_secrets_via(&self.http).await
    }

    async fn leaked_secrets_via(&self, http: &reqwest::Client) -> anyhow::Result<Vec<Leak>> {
        let mut scan = self.secrets();
        let issued: Value = http
            .get(format!("{}/_sim/msi", self.sim))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for token in issued["issued_tokens"].as_array().into_iter().flatten() {
            scan.token(
                "a token the stand-in issued",
                token.as_str().context("a token is a string")?,
            );
        }
        let handler = self.handler_log.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
        let cli = self.cli_log.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
        let mut leaks = scan.scan("keyguard handler output", &handler);
        leaks.extend(scan.scan("keyguard CLI output", &cli));
        Ok(leaks)
    }

    /// [`Env::leaked_secrets`] from `Drop`, which cannot await: on a thread of its own with its
    /// own runtime and client (the run's client's connections belong to the test's runtime,
    /// which is blocked in this drop), so it works whether or not the caller is inside one.
    fn leaked_secrets_blocking(&self) -> anyhow::Result<Vec<Leak>> {
        std::thread::scope(|s| {
            s.spawn(|| {
                let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(self.leaked_secrets_via(&http))
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the secret scan panicked")))
        })
    }

    /// What every keyguard process of the run shares: configuration, the stand-in as ARM, Key
    /// Vault and managed identity, the state store, the budget.
    fn keyguard_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("KEYGUARD_CONFIG", self.dir.join("keyguard.toml"))
            .env("KEYGUARD_STATE_PATH", self.dir.join("state.redb"))
            .env("KEYGUARD_ARM_ENDPOINT", &self.sim)
            .env("KEYGUARD_KEYVAULT_ENDPOINT", &self.sim)
            .env("KEYGUARD_AUTH", "managed-identity")
            .env("IDENTITY_ENDPOINT", format!("{}/msi/token", self.sim))
            .env("IDENTITY_HEADER", azure_sim::SimConfig::default().identity_header)
            .env("KEYGUARD_TIME_BUDGET_MS", self.options.time_budget_ms.to_string())
            .env("KEYGUARD_DRY_RUN", self.options.dry_run.to_string())
            .envs(self.options.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    async fn wait_ready(&self, base: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probe = if base.contains("/api/") {
                base.to_string()
            } else {
                format!("{base}/")
            };
            if self.http.get(&probe).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("keyguard did not become ready at {probe}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn seed(&self, docs: Value) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/_sim/resources", self.sim))
            .json(&docs)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "seeding failed: {}", r.text().await?);
        Ok(())
    }

    /// A person (not keyguard) PATCHes a resource through ARM; the stand-in emits the write event.
    pub async fn act_as_user(&self, id: &str, patch: Value) -> anyhow::Result<Value> {
        self.act(id, json!({"oid": "11111111-2222-3333-4444-555555555555", "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "name": "Mallory Admin", "upn": "mallory@contoso.example"}), patch).await
    }

    pub async fn act(&self, id: &str, principal: Value, patch: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}/_sim/act", self.sim))
            .json(&json!({"id": id, "principal": principal, "patch": patch}))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "act failed: {status} {body}");
        Ok(body)
    }

    pub async fn resource(&self, id: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}/_sim/resource", self.sim))
            .query(&[("id", id)])
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "no resource {id}");
        Ok(r.json().await?)
    }

    pub async fn key_source(&self, id: &str) -> anyhow::Result<String> {
        let doc = self.resource(id).await?;
        Ok(doc["properties"]["encryption"]["keySource"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    pub async fn sim_get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}{path}", self.sim))
            .send()
            .await?
            .json()
            .await?)
    }

    pub async fn add_fault(&self, fault: Value) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}/_sim/faults", self.sim))
            .json(&fault)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "fault rejected: {}", r.text().await?);
        Ok(())
    }

    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        self.http.delete(format!("{}/_sim/faults", self.sim)).send().await?;
        Ok(())
    }

    /// ARM requests the stand-in received, filtered by method and (optional) caller object id.
    pub async fn arm_requests(&self, method: &str, principal_oid: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let log = self.sim_get("/_sim/requests").await?;
        Ok(log
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["method"].as_str() == Some(method))
            .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/subscriptions/")))
            .filter(|r| principal_oid.is_none_or(|oid| r["principal_oid"].as_str() == Some(oid)))
            .collect())
    }

    /// How many tokens keyguard asked the managed-identity endpoint for (the credential should cache).
    pub async fn token_requests(&self) -> anyhow::Result<u64> {
        Ok(self.sim_get("/_sim/msi").await?["token_requests"]
            .as_u64()
            .unwrap_or_default())
    }

    pub async fn keyguard_patches(&self) -> anyhow::Result<usize> {
        Ok(self.arm_requests("PATCH", Some(KEYGUARD_OID)).await?.len())
    }

    pub async fn events(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .sim_get("/_sim/events")
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until every emitted event got a 2xx from keyguard (Event Grid counted it delivered).
    pub async fn wait_delivered(&self, expected_events: usize) -> anyhow::Result<()> {
        self.wait_for(Duration::from_secs(30), "events delivered", || async {
            let deliveries = self.sim_get("/_sim/deliveries").await?;
            let ok: std::collections::BTreeSet<String> = deliveries
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter(|d| d["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
                .filter_map(|d| d["event_id"].as_str().map(str::to_string))
                .collect();
            Ok(ok.len() >= expected_events)
        })
        .await
    }

    pub async fn wait_for<F, Fut>(&self, timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bool>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if check().await? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {what}; keyguard log tail:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// keyguard's audit records (one JSON log line per decision), parsed.
    pub fn audit_records(&self) -> Vec<Value> {
        let lines = self.handler_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "keyguard::audit")
            .filter_map(|v| {
                v["fields"]["record"]
                    .as_str()
                    .and_then(|r| serde_json::from_str(r).ok())
            })
            .collect()
    }

    pub fn audit_for(&self, id: &str) -> Vec<Value> {
        self.audit_records()
            .into_iter()
            .filter(|r| r["resourceId"].as_str().is_some_and(|r| r.eq_ignore_ascii_case(id)))
            .collect()
    }

    /// Waits for keyguard's audit record of `id` whose `field` equals `value` (the log is read
    /// by a background thread, so a record can trail the HTTP answer by a moment).
    pub async fn audit_record(&self, id: &str, field: &str, value: &str) -> anyhow::Result<Value> {
        let mut found = None;
        self.wait_for(
            Duration::from_secs(10),
            &format!("an audit record with {field}={value}"),
            || {
                found = self.audit_for(id).into_iter().find(|r| r[field] == value);
                let done = found.is_some();
                async move { Ok(done) }
            },
        )
        .await?;
        found.ok_or_else(|| anyhow::anyhow!("no audit record with {field}={value}"))
    }

    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.handler_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// POST a body to the custom handler the way the Functions host does.
    /// Delivers one Event Grid event to `EncryptionDrift` as the Functions host would.
    pub async fn deliver(&self, event: &Value) -> anyhow::Result<(u16, Value)> {
        self.invoke(
            "EncryptionDrift",
            "application/json",
            serde_json::to_vec(&functions_envelope(event))?,
        )
        .await
    }

    pub async fn invoke(&self, function: &str, content_type: &str, body: Vec<u8>) -> anyhow::Result<(u16, Value)> {
        self.invoke_at(&self.handler, function, content_type, body).await
    }

    /// As [`Self::invoke`], at one instance of several.
    pub async fn invoke_at(
        &self,
        base: &str,
        function: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{base}/{function}"))
            .header("content-type", content_type)
            .header("x-azure-functions-invocationid", uuid_like())
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }
}

fn uuid_like() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    t ^ (std::process::id() as u128) << 64
}

fn wait_for_file(path: &Path, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("{} was not written in time", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Microsoft's Resource Notifications example, pointed at `id` and carrying `encryption` as the
/// resource body's `properties.encryption`.
pub fn resource_notification(id: &str, name: &str, encryption: Value) -> Value {
    let mut event = fixture("eventgrid/resourcenotifications-createdorupdated.eventgrid.spec-example.json");
    event["subject"] = json!(id);
    event["data"]["resourceInfo"]["id"] = json!(id);
    event["data"]["resourceInfo"]["name"] = json!(name);
    event["data"]["resourceInfo"]["properties"]["encryption"] = encryption;
    event
}

/// The Functions host envelope around one Event Grid event (what the Event Grid trigger sends).
pub fn functions_envelope(event: &Value) -> Value {
    json!({
        "Data": {"eventGridEvent": event},
        "Metadata": {"data": event["data"], "sys": {"MethodName": "EncryptionDrift", "UtcNow": "2026-11-23T12:00:00Z", "RandGuid": "00000000-0000-0000-0000-000000000001"}}
    })
}

/// Stands in for a Teams Workflows URL: records every POST, answers with the current status.
#[derive(Clone, Default)]
pub struct AlertReceiver {
    bodies: Arc<Mutex<Vec<Value>>>,
    /// The bodies answered with a 2xx: what the sender may count as delivered.
    accepted: Arc<Mutex<Vec<Value>>>,
    status: Arc<Mutex<u16>>,
}

impl AlertReceiver {
    pub async fn start(status: u16) -> (AlertReceiver, String) {
        let receiver = AlertReceiver {
            bodies: Arc::default(),
            accepted: Arc::default(),
            status: Arc::new(Mutex::new(status)),
        };
        let app = Router::new()
            .route("/workflows/hook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/workflows/hook?sig=SECRET-SIGNATURE-abc123",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    pub fn set_status(&self, status: u16) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn receive(State(r): State<AlertReceiver>, body: axum::body::Bytes) -> (StatusCode, HeaderMap, &'static str) {
    let status = StatusCode::from_u16(*r.status.lock().unwrap_or_else(|p| p.into_inner())).unwrap_or(StatusCode::OK);
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        r.bodies.lock().unwrap_or_else(|p| p.into_inner()).push(v.clone());
        if status.is_success() {
            r.accepted.lock().unwrap_or_else(|p| p.into_inner()).push(v);
        }
    }
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("1"));
    (status, headers, "")
}
