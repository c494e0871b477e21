//! The simulator as a command (`azure-sim`, `keyguard sim`): its options and the run loop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::{
    DEMO_RESOURCE_GROUP, DEMO_SUBSCRIPTION, DeliveryConfig, DeliveryMode, ListingConfig, OutputSchema, Quota,
    SimConfig, ThrottleConfig, demo_seed, eventgrid, listing, start,
};

/// Command-line options of `azure-sim` (and `keyguard sim`).
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Write "127.0.0.1:PORT" here once listening, so a parent process can find the port.
    #[arg(long, value_name = "PATH")]
    pub addr_file: Option<PathBuf>,
    /// Also serve over TLS with a throw-away CA, plus a CONNECT proxy for clients whose Azure
    /// host names are fixed; writes `ca.pem`, `https.addr` and `proxy.addr` into this directory.
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// JSON array of resource documents to seed.
    #[arg(long, value_name = "PATH")]
    pub seed: Option<PathBuf>,
    /// Seed the demo storage accounts (see `demo_seed`).
    #[arg(long)]
    pub demo_seed: bool,
    /// Subscription for --demo-seed.
    #[arg(long, default_value = DEMO_SUBSCRIPTION)]
    pub demo_subscription: String,
    /// Resource group for --demo-seed.
    #[arg(long, default_value = DEMO_RESOURCE_GROUP)]
    pub demo_resource_group: String,
    /// Deliver events here (Functions base URL or webhook URL); none = keep events only.
    #[arg(long, value_name = "URL")]
    pub deliver_to: Option<String>,
    /// Act as the Functions host (POST {url}/{function}) or as Event Grid to a webhook.
    #[arg(long, value_enum, default_value_t = DeliveryMode::Functions)]
    pub delivery_mode: DeliveryMode,
    /// Function name used in functions mode (path segment and Metadata.sys.MethodName).
    #[arg(long, default_value = eventgrid::DEFAULT_FUNCTION_NAME)]
    pub function_name: String,
    /// Output schema of the simulated event subscription.
    #[arg(long, value_enum, default_value_t = OutputSchema::EventGrid)]
    pub schema: OutputSchema,
    /// Multiplies Event Grid's retry schedule (0.001: 10 s becomes 10 ms).
    #[arg(long, default_value_t = 1.0)]
    pub time_factor: f64,
    /// Delivery attempts before an event is dead-lettered (Event Grid allows 1-30).
    #[arg(long, default_value_t = 30)]
    pub max_attempts: u32,
    /// Per-attempt delivery timeout in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Append dead-lettered events (JSON lines) to this file.
    #[arg(long, value_name = "PATH")]
    pub deadletter_file: Option<PathBuf>,
    /// Secret the MSI endpoint expects in X-IDENTITY-HEADER.
    #[arg(long, default_value = "sim-identity-header")]
    pub identity_header: String,
    /// Items per ARM list page (`value` + `nextLink`).
    #[arg(long, default_value_t = listing::DEFAULT_PAGE_SIZE)]
    pub list_page_size: usize,
    /// Enforce a Resource Graph quota per principal, LIMIT/SECONDS (Azure's is 15/5);
    /// without it the quota is only reported.
    #[arg(long, value_name = "LIMIT/SECONDS", value_parser = Quota::parse_enforced)]
    pub graph_quota: Option<Quota>,
    /// Enforce an ARM read quota per subscription and principal, LIMIT/SECONDS;
    /// without it 12000/3600 is only reported.
    #[arg(long, value_name = "LIMIT/SECONDS", value_parser = Quota::parse_enforced)]
    pub arm_read_quota: Option<Quota>,
    /// Place subscriptions under a management group: NAME=SUB[,SUB...] (repeatable).
    #[arg(long = "management-group", value_name = "NAME=SUBS", value_parser = parse_management_group)]
    pub management_groups: Vec<(String, Vec<String>)>,
    /// Put a subscription in another Entra tenant, still visible to the simulator's identities
    /// (delegated, as with Azure Lighthouse): SUB=TENANT (repeatable).
    #[arg(long = "delegated-subscription", value_name = "SUB=TENANT", value_parser = parse_delegated)]
    pub delegated_subscriptions: Vec<(String, String)>,
}

fn parse_delegated(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((sub, tenant)) if !sub.trim().is_empty() && !tenant.trim().is_empty() => {
            Ok((sub.trim().to_owned(), tenant.trim().to_owned()))
        }
        _ => Err(format!("'{s}' is not SUB=TENANT")),
    }
}

fn parse_management_group(s: &str) -> Result<(String, Vec<String>), String> {
    let (name, subs) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=SUB[,SUB...]"))?;
    let subs: Vec<String> = subs
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect();
    if name.trim().is_empty() {
        return Err(format!("'{s}' has no management group name"));
    }
    Ok((name.trim().to_owned(), subs))
}

impl SimArgs {
    /// The configuration these options describe (reads the seed file).
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let mut seed = Vec::new();
        if let Some(path) = &self.seed {
            let text =
                std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading seed {}: {e}", path.display()))?;
            match serde_json::from_str::<Value>(&text)
                .map_err(|e| anyhow::anyhow!("parsing seed {}: {e}", path.display()))?
            {
                Value::Array(items) => seed.extend(items),
                other => seed.push(other),
            }
        }
        if self.demo_seed {
            seed.extend(demo_seed(&self.demo_subscription, &self.demo_resource_group));
        }
        let delivery = self.deliver_to.as_ref().map(|url| DeliveryConfig {
            mode: self.delivery_mode,
            url: url.clone(),
            function_name: self.function_name.clone(),
            schema: self.schema,
            max_attempts: self.max_attempts.max(1),
            time_factor: self.time_factor,
            timeout: Duration::from_millis(self.timeout_ms),
        });
        let mut management_groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, subs) in &self.management_groups {
            management_groups
                .entry(name.clone())
                .or_default()
                .extend(subs.iter().cloned());
        }
        let defaults = ThrottleConfig::default();
        Ok(SimConfig {
            identity_header: self.identity_header.clone(),
            delivery,
            deadletter_path: self.deadletter_file.clone(),
            seed,
            listing: ListingConfig {
                page_size: self.list_page_size.max(1),
                management_groups,
                tenants: self.delegated_subscriptions.iter().cloned().collect(),
            },
            throttle: ThrottleConfig {
                graph: self.graph_quota.unwrap_or(defaults.graph),
                arm_reads: self.arm_read_quota.unwrap_or(defaults.arm_reads),
                ..defaults
            },
            ..SimConfig::default()
        })
    }
}

/// Starts the simulator from CLI options, prints one "listening" line and serves until
/// Ctrl-C or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let handle = start(config, SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    println!("azure-sim listening on {}", handle.base_url());
    if let Some(dir) = &args.tls_dir {
        let endpoints = handle.serve_tls().await?;
        std::fs::create_dir_all(dir)?;
        write_atomically(&dir.join("ca.pem"), &endpoints.ca_pem)?;
        write_atomically(&dir.join("proxy.addr"), &endpoints.proxy_addr.to_string())?;
        write_atomically(&dir.join("https.addr"), &endpoints.https_addr.to_string())?;
        println!(
            "azure-sim TLS on https://{} (CONNECT proxy http://{})",
            endpoints.https_addr, endpoints.proxy_addr
        );
    }
    // Written last: a parent waiting for it finds every other file in place.
    if let Some(path) = &args.addr_file {
        write_atomically(path, &handle.addr().to_string())?;
    }
    wait_for_signal().await;
    handle.shutdown().await;
    Ok(())
}

/// Write then rename, so a polling parent never reads a half-written file.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
