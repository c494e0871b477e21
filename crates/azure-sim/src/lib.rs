//! `azure-sim`: a local stand-in for the slices of Azure keyguard depends on, served on one
//! loopback port:
//!
//! * ARM for `Microsoft.Storage/storageAccounts` (GET, synchronous PATCH), with ARM's error
//!   bodies, headers and encryption validation;
//! * ARM for every other type keyguard's catalog knows (see [`catalog_sim`]): GET, merging
//!   PATCH, PUT of SQL child resources (encryption protector, server keys, TDE), the write rules
//!   the real services enforce (one-way and creation-only key-source switches, disks attached to
//!   running VMs, SQL protector needing its server key) and long-running operations
//!   (`202` + `Azure-AsyncOperation`/`Location`, see [`lro`]);
//! * the Key Vault data plane for key reads (`/keyvault/{vault-host}/keys/{name}[/{version}]`),
//!   **permissive unless seeded**: any key in a vault nobody seeded keys into exists, enabled,
//!   without expiry, `Recoverable`; once a key is seeded into a vault only seeded keys exist
//!   there (see [`keyvault`]);
//! * the App Service managed-identity endpoint (`/msi/token`) that `azure_identity`'s
//!   `ManagedIdentityCredential` calls when `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` are set;
//! * Event Grid delivery of the `ResourceWriteSuccess` events ARM writes raise, to a webhook
//!   or through a simulated Functions host, with Event Grid's retry and dead-letter rules;
//! * resource listing for sweeps (see [`listing`] and [`graph`]): Azure Resource Graph
//!   (`POST /providers/Microsoft.ResourceGraph/resources`, a KQL subset, `$top`/`$skipToken`
//!   paging) and ARM collection GETs (`value` + `nextLink`) per subscription, resource group and
//!   management group, with ARM's and Resource Graph's quota headers and, when enabled, their
//!   `429` + `Retry-After` throttling (see [`throttle`]); bulk seeding of thousands of catalog
//!   resources with a known drifted subset (see [`bulk`]);
//! * a control API under `/_sim` for tests and demos (seed, act as a human, inject faults,
//!   inspect requests and deliveries, configure listing and quotas; see [`control`]).
//!
//! It exists so keyguard can be exercised end to end (tests, `keyguard demo`) without a
//! tenant, while keeping the Azure behaviours that are easy to get wrong.

pub mod arm;
pub mod azurite;
pub mod bulk;
pub mod catalog_sim;
pub mod control;
mod directory;
pub mod eventgrid;
pub mod faults;
mod generic;
pub mod graph;
pub mod identity;
pub mod keyvault;
pub mod listing;
pub mod lro;
pub mod proxy;
pub mod schemas;
pub mod smtp;
pub mod throttle;
pub mod tls;
mod util;
pub mod vaults;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use arm::ArmError;
pub use bulk::{BulkSeed, BulkSeedError, BulkSeedReport, KeyMode};
pub use eventgrid::{DeliveryAttempt, DeliveryConfig, DeliveryMode, OutputSchema};
pub use faults::{Fault, FaultSpec, RequestLogEntry};
pub use keyvault::KeySpec;
pub use listing::ListingConfig;
pub use lro::LroConfig;
pub use throttle::{Quota, ThrottleConfig};

use crate::util::{ResourceId, lock};

/// An Entra principal: a managed identity, service principal or human.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub oid: String,
    pub appid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
}

/// Default tenant of the simulated directory.
pub const DEFAULT_TENANT_ID: &str = "5b0c2f1e-7a3d-4c8e-9f61-2d4a8b6c0e17";
/// Default object id of the function app's system-assigned identity.
pub const DEFAULT_SYSTEM_OID: &str = "0b8e3c2a-4f1d-4e6b-a7c9-3d5f7e9a1b24";
/// Default client (app) id of the function app's system-assigned identity.
pub const DEFAULT_SYSTEM_CLIENT_ID: &str = "6a1f4d2c-8e3b-4c5a-9d7e-1f2b3c4d5e60";
/// Default subscription used by the binary's `--demo-seed`.
pub const DEMO_SUBSCRIPTION: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
/// Default resource group used by the binary's `--demo-seed`.
pub const DEMO_RESOURCE_GROUP: &str = "rg-keyguard-demo";

/// Start-up configuration.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Secret expected in `X-IDENTITY-HEADER` (what App Service puts in `IDENTITY_HEADER`).
    pub identity_header: String,
    pub system_identity: Principal,
    /// `(client_id, principal)` of user-assigned identities.
    pub user_identities: Vec<(String, Principal)>,
    pub tenant_id: String,
    pub token_lifetime_secs: u64,
    pub delivery: Option<DeliveryConfig>,
    /// JSON-lines file dead-lettered events are appended to.
    pub deadletter_path: Option<PathBuf>,
    /// Resource documents (and resource-group ids) to start with.
    pub seed: Vec<Value>,
    /// ARM list page size and the management-group hierarchy.
    pub listing: ListingConfig,
    /// ARM and Resource Graph quotas (reported always, enforced on request).
    pub throttle: ThrottleConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            identity_header: "sim-identity-header".into(),
            system_identity: Principal {
                oid: DEFAULT_SYSTEM_OID.into(),
                appid: DEFAULT_SYSTEM_CLIENT_ID.into(),
                name: "func-keyguard".into(),
                upn: None,
            },
            user_identities: Vec::new(),
            tenant_id: DEFAULT_TENANT_ID.into(),
            token_lifetime_secs: 3600,
            delivery: None,
            deadletter_path: None,
            seed: Vec::new(),
            listing: ListingConfig::default(),
            throttle: ThrottleConfig::default(),
        }
    }
}

/// The identity part of the configuration, fixed for the simulator's life.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub identity_header: String,
    pub system_identity: Principal,
    pub user_identities: Vec<(String, Principal)>,
    pub tenant_id: String,
    pub token_lifetime_secs: u64,
}

impl Settings {
    /// `(client_id, principal)` for a client id; the system identity's client id is its appid.
    pub(crate) fn identity_by_client_id(&self, cid: &str) -> Option<(String, Principal)> {
        if self.system_identity.appid.eq_ignore_ascii_case(cid) {
            return Some((self.system_identity.appid.clone(), self.system_identity.clone()));
        }
        self.user_identities
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(cid))
            .cloned()
    }

    pub(crate) fn identity_by_oid(&self, oid: &str) -> Option<(String, Principal)> {
        if self.system_identity.oid.eq_ignore_ascii_case(oid) {
            return Some((self.system_identity.appid.clone(), self.system_identity.clone()));
        }
        self.user_identities
            .iter()
            .find(|(_, p)| p.oid.eq_ignore_ascii_case(oid))
            .cloned()
    }
}

#[derive(Default)]
pub(crate) struct Store {
    /// Keyed by the lower-cased resource id (ARM ids are case-insensitive).
    pub resources: BTreeMap<String, Value>,
    /// Lower-cased `/subscriptions/{s}/resourcegroups/{rg}`.
    pub groups: BTreeSet<String>,
}

/// Result of [`Sim::act`]: what ARM answered.
#[derive(Clone, Debug, PartialEq)]
pub struct ActOutcome {
    pub status: u16,
    pub body: Value,
}

/// Why a seed document was refused.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("resource document is not a JSON object")]
    NotAnObject,
    #[error("resource document has no string `id`")]
    MissingId,
    #[error("`{0}` is not an ARM resource or resource-group id")]
    BadId(String),
}

/// How many issued tokens the stand-in remembers: clients cache tokens, so a run asks for a few
/// per audience; the bound keeps a long soak's memory flat.
pub const MAX_KEPT_TOKENS: usize = 10_000;

/// The simulator's state; shared by the server and in-process callers.
pub struct Sim {
    pub(crate) settings: Settings,
    pub(crate) store: Mutex<Store>,
    pub(crate) log: Mutex<faults::RequestLog>,
    pub(crate) faults: Mutex<Vec<Fault>>,
    pub(crate) throttle: Mutex<throttle::Throttle>,
    pub(crate) listing: Mutex<ListingConfig>,
    pub(crate) token_requests: AtomicU64,
    /// The access tokens `/msi/token` issued, newest last (at most [`MAX_KEPT_TOKENS`]), so a
    /// test can check that none of them reached a log.
    pub(crate) issued_tokens: Mutex<VecDeque<String>>,
    pub(crate) bus: Arc<eventgrid::Bus>,
    pub(crate) lro: Mutex<lro::LroState>,
    pub(crate) keys: Mutex<keyvault::KeyStore>,
}

impl Sim {
    fn new(config: &SimConfig) -> Sim {
        Sim {
            settings: Settings {
                identity_header: config.identity_header.clone(),
                system_identity: config.system_identity.clone(),
                user_identities: config.user_identities.clone(),
                tenant_id: config.tenant_id.clone(),
                token_lifetime_secs: config.token_lifetime_secs,
            },
            store: Mutex::new(Store::default()),
            log: Mutex::new(faults::RequestLog::default()),
            faults: Mutex::new(Vec::new()),
            throttle: Mutex::new(throttle::Throttle::new(config.throttle)),
            listing: Mutex::new(ListingConfig {
                page_size: config.listing.page_size.max(1),
                ..config.listing.clone()
            }),
            token_requests: AtomicU64::new(0),
            issued_tokens: Mutex::new(VecDeque::new()),
            lro: Mutex::new(lro::LroState::default()),
            keys: Mutex::new(keyvault::KeyStore::default()),
            bus: eventgrid::Bus::new(
                tokio::runtime::Handle::current(),
                config.delivery.clone(),
                config.deadletter_path.clone(),
            ),
        }
    }

    pub fn tenant_id(&self) -> &str {
        &self.settings.tenant_id
    }

    pub fn system_identity(&self) -> &Principal {
        &self.settings.system_identity
    }

    /// Inserts or replaces resources. A document whose `id` is a resource-group id only
    /// creates that group. Missing `type`/`name` are derived from the id, as ARM would show them.
    pub fn upsert_resources(&self, docs: Vec<Value>) -> Result<usize, SeedError> {
        let mut prepared = Vec::with_capacity(docs.len());
        for mut doc in docs {
            let obj = doc.as_object_mut().ok_or(SeedError::NotAnObject)?;
            let id = obj
                .get("id")
                .and_then(Value::as_str)
                .ok_or(SeedError::MissingId)?
                .to_owned();
            let rid = ResourceId::parse(&id).ok_or_else(|| SeedError::BadId(id.clone()))?;
            if !rid.is_resource_group() {
                obj.entry("type").or_insert_with(|| json!(rid.full_type()));
                obj.entry("name").or_insert_with(|| json!(rid.name()));
            }
            prepared.push((rid, doc));
        }
        let n = prepared.len();
        let mut store = lock(&self.store);
        for (rid, doc) in prepared {
            store.groups.insert(rid.group_key());
            if !rid.is_resource_group() {
                store.resources.insert(rid.key(), doc);
            }
        }
        Ok(n)
    }

    /// All resources, ordered by id.
    pub fn resources(&self) -> Vec<Value> {
        lock(&self.store).resources.values().cloned().collect()
    }

    pub fn resource(&self, id: &str) -> Option<Value> {
        let rid = ResourceId::parse(id)?;
        lock(&self.store).resources.get(&rid.key()).cloned()
    }

    /// Removes a resource; its resource group stays.
    pub fn delete_resource(&self, id: &str) -> bool {
        let Some(rid) = ResourceId::parse(id) else {
            return false;
        };
        lock(&self.store).resources.remove(&rid.key()).is_some()
    }

    /// Mints an ARM token for anyone (tests call ARM directly as that principal).
    pub fn issue_token(&self, principal: &Principal) -> String {
        self.issue_token_with(principal, None, None).0
    }

    /// Like [`Sim::issue_token`] with an explicit tenant and lifetime (negative = expired);
    /// returns the token and its `exp`.
    pub fn issue_token_with(
        &self,
        principal: &Principal,
        tenant_id: Option<&str>,
        lifetime_secs: Option<i64>,
    ) -> (String, i64) {
        let lifetime =
            lifetime_secs.unwrap_or_else(|| i64::try_from(self.settings.token_lifetime_secs).unwrap_or(3600));
        identity::mint_token(&identity::TokenRequest {
            principal,
            tenant_id: tenant_id.unwrap_or(&self.settings.tenant_id),
            audience: identity::ARM_AUDIENCE,
            lifetime_secs: lifetime,
            idtyp: if principal.upn.is_some() { "user" } else { "app" },
        })
    }

    /// Performs a PATCH as `principal`, with the same validation and event as an ARM call
    /// (but outside the request log and fault injection: it plays a human at the portal).
    /// On catalog types other than storage the same write rules apply; a long-running write
    /// completes at once (the portal waits for it), and a SQL protector/key/TDE child takes
    /// the patch as its PUT body.
    pub fn act(&self, id: &str, principal: &Principal, patch: &Value) -> ActOutcome {
        let rid = ResourceId::parse(id).filter(|r| !r.is_resource_group());
        let storage = rid
            .as_ref()
            .is_some_and(|r| r.full_type().eq_ignore_ascii_case("Microsoft.Storage/storageAccounts"));
        let api_version = if storage {
            "2025-01-01"
        } else {
            rid.as_ref()
                .and_then(|r| catalog_sim::lookup(&r.full_type()))
                .and_then(|t| t.api_versions.last().copied())
                .unwrap_or("2025-01-01")
        };
        let claims = arm::claims_for(principal, &self.settings.tenant_id);
        let write = |method: &str| arm::WriteInfo {
            correlation_id: uuid::Uuid::new_v4().to_string(),
            client_request_id: uuid::Uuid::new_v4().to_string(),
            method: method.into(),
            url: format!("https://management.azure.com{id}?api-version={api_version}"),
        };
        let result = rid
            .ok_or_else(|| {
                ArmError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidResourceId",
                    format!("'{id}' is not a resource id."),
                )
            })
            .and_then(|rid| {
                if storage {
                    let key = arm::locate(self, &rid, api_version)?;
                    return arm::patch_resource(self, &key, &claims, patch, &write("PATCH"));
                }
                let ty =
                    catalog_sim::lookup(&rid.full_type()).ok_or_else(|| generic::invalid_type(&rid, api_version))?;
                let Value::Object(body) = patch else {
                    return Err(ArmError::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestContent",
                        "The request content must be a JSON object.",
                    ));
                };
                let (kind, method) = if ty.child == catalog_sim::Child::No {
                    (generic::WriteKind::Patch, "PATCH")
                } else {
                    (generic::WriteKind::Put, "PUT")
                };
                let pending = generic::PendingWrite {
                    rid,
                    kind,
                    body: body.clone(),
                };
                generic::commit(self, &pending, &claims, &write(method)).map(|(doc, _)| doc)
            });
        match result {
            Ok(body) => ActOutcome { status: 200, body },
            Err(e) => ActOutcome {
                status: e.status.as_u16(),
                body: e.body(),
            },
        }
    }

    pub fn throttle_config(&self) -> ThrottleConfig {
        lock(&self.throttle).config
    }

    /// Replaces the quotas; every quota window starts afresh.
    pub fn set_throttle_config(&self, config: ThrottleConfig) {
        lock(&self.throttle).reconfigure(config);
    }

    /// Number of `/msi/token` requests served (clients are expected to cache tokens).
    pub fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    /// The access tokens `/msi/token` issued (the newest [`MAX_KEPT_TOKENS`]), oldest first.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.issued_tokens).iter().cloned().collect()
    }

    pub(crate) fn record_issued_token(&self, token: &str) {
        let mut tokens = lock(&self.issued_tokens);
        if tokens.len() >= MAX_KEPT_TOKENS {
            tokens.pop_front();
        }
        tokens.push_back(token.to_string());
    }

    /// Queues events for delivery as-is.
    pub fn enqueue_events(&self, events: Vec<Value>) {
        for e in events {
            self.bus.enqueue(e);
        }
    }

    /// Every event emitted or enqueued, in order.
    pub fn events(&self) -> Vec<Value> {
        self.bus.events()
    }

    pub fn deliveries(&self) -> Vec<DeliveryAttempt> {
        self.bus.deliveries()
    }

    pub fn deadletters(&self) -> Vec<Value> {
        self.bus.deadletters()
    }

    /// Events waiting because no target is configured.
    pub fn parked_events(&self) -> usize {
        self.bus.parked()
    }

    pub fn delivery(&self) -> Option<DeliveryConfig> {
        self.bus.config()
    }

    /// (Re)configures the delivery target; `None` stops delivering (events then wait).
    pub fn set_delivery(&self, config: Option<DeliveryConfig>) {
        self.bus.set_config(config);
    }
}

/// A running simulator.
pub struct SimHandle {
    sim: Arc<Sim>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What to put in `IDENTITY_ENDPOINT`.
    pub fn msi_endpoint(&self) -> String {
        format!("{}/msi/token", self.base_url())
    }

    pub fn state(&self) -> &Sim {
        &self.sim
    }

    /// Shared handle to the state, for callers that outlive a borrow.
    pub fn shared_state(&self) -> Arc<Sim> {
        Arc::clone(&self.sim)
    }

    /// Stops the server (in-flight requests finish) and abandons pending deliveries.
    pub async fn shutdown(mut self) {
        self.sim.bus.shutdown();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
        self.server.abort();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.sim.bus.shutdown();
        self.server.abort();
    }
}

fn router(sim: Arc<Sim>) -> axum::Router {
    axum::Router::new()
        .nest("/_sim", control::router())
        .route("/msi/token", axum::routing::get(identity::msi_token))
        .route("/keyvault/{host}/keys/{name}", axum::routing::get(keyvault::get_key))
        .route(
            "/keyvault/{host}/keys/{name}/{version}",
            axum::routing::get(keyvault::get_key_version),
        )
        .fallback(arm::handle)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&sim), faults::observe))
        .with_state(sim)
}

/// Where the TLS face of a running simulator answers (see [`tls`]).
#[derive(Clone, Debug)]
pub struct TlsEndpoints {
    /// The same routes as the plain listener, over TLS.
    pub https_addr: SocketAddr,
    /// The `CONNECT` proxy to put in `HTTPS_PROXY`.
    pub proxy_addr: SocketAddr,
    /// The throw-away CA clients must trust.
    pub ca_pem: String,
}

impl SimHandle {
    /// Also serves the simulator over TLS on a loopback port, with a `CONNECT` proxy in front
    /// for clients whose Azure host names are fixed. Both ports are picked by the system.
    pub async fn serve_tls(&self) -> anyhow::Result<TlsEndpoints> {
        let identity = tls::Identity::generate()?;
        let listener = tls::TlsListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), identity.acceptor()).await?;
        let https_addr = axum::serve::Listener::local_addr(&listener)?;
        let app = router(Arc::clone(&self.sim)).layer(axum::Extension(tls::ServedOverTls));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "azure-sim TLS server stopped");
            }
        });
        let proxy_addr = proxy::start(SocketAddr::from(([127, 0, 0, 1], 0)), https_addr).await?;
        tracing::info!(%https_addr, %proxy_addr, "azure-sim serving TLS");
        Ok(TlsEndpoints {
            https_addr,
            proxy_addr,
            ca_pem: identity.ca_pem,
        })
    }
}

/// Binds `addr` (port 0 picks one) and serves until [`SimHandle::shutdown`].
pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    let sim = Arc::new(Sim::new(&config));
    sim.upsert_resources(config.seed.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(Arc::clone(&sim));
    let server = tokio::spawn(async move {
        let res = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "azure-sim server stopped");
        }
    });
    tracing::info!(%addr, "azure-sim started");
    Ok(SimHandle {
        sim,
        addr,
        shutdown: Some(tx),
        server,
    })
}

/// Key vault the demo's CMK accounts use.
pub const DEMO_KEYVAULT: &str = "https://kv-approved.vault.azure.net";

/// Demo accounts (all `Microsoft.Storage/storageAccounts` in `resource_group`):
///
/// * `stcmkpayments`, `stcmkledger`: CMK (`kv-approved`, key `cmk-storage`), system identity;
/// * `stmmklogs`: MMK, with a system identity (so remediation to CMK can succeed);
/// * `stmmknoident`: MMK without any identity (remediation to CMK fails with 400);
/// * `kv-approved`: the key vault itself (`Microsoft.KeyVault/vaults`);
/// * `stexemptsandbox`: MMK, tagged `keyguard-exempt-until` (30 days from now, within keyguard's
///   default `max_exemption_days`) and `keyguard-exempt-reason`.
pub fn demo_seed(subscription: &str, resource_group: &str) -> Vec<Value> {
    let cmk = |name: &str| {
        let mut doc = storage_account(subscription, resource_group, name, true);
        make_storage_cmk(&mut doc, DEMO_KEYVAULT, "cmk-storage");
        doc
    };
    let mut exempt = storage_account(subscription, resource_group, "stexemptsandbox", true);
    exempt["tags"] = json!({
        "env": "sandbox",
        "keyguard-exempt-until": date_in_days(30),
        "keyguard-exempt-reason": "Sandbox data only; CMK not required (demo exemption)",
    });
    vec![
        // The vault the CMK accounts use is part of the estate (Resource Graph lists it).
        vaults::key_vault(subscription, resource_group, "kv-approved", DEFAULT_TENANT_ID),
        cmk("stcmkpayments"),
        cmk("stcmkledger"),
        storage_account(subscription, resource_group, "stmmklogs", true),
        storage_account(subscription, resource_group, "stmmknoident", false),
        exempt,
    ]
}

/// The UTC date `days` from today as `YYYY-MM-DD`, for exemption tags that stay valid: keyguard
/// honours a tag exemption only up to `max_exemption_days` (default 90) ahead.
pub fn date_in_days(days: i64) -> String {
    let date = (time::OffsetDateTime::now_utc() + time::Duration::days(days)).date();
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// Puts a storage account document on a customer-managed key (versionless, auto-rotating), as
/// the storage RP shows it after such a write.
fn make_storage_cmk(doc: &mut Value, vault: &str, key: &str) {
    if let Some(enc) = doc.pointer_mut("/properties/encryption") {
        enc["keySource"] = json!("Microsoft.Keyvault");
        enc["keyvaultproperties"] = json!({
            "keyvaulturi": vault,
            "keyname": key,
            "keyversion": "",
            "currentVersionedKeyIdentifier": format!("{vault}/keys/{key}/4f9e0a1b2c3d4e5f60718293a4b5c6d7"),
            "lastKeyRotationTimestamp": "2025-01-15T09:30:00.0000000Z",
        });
    }
}

/// A storage account in the shape of the spec's `StorageAccountGetProperties` example, MMK.
fn storage_account(sub: &str, rg: &str, name: &str, system_identity: bool) -> Value {
    let mut doc = json!({
        "id": format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}"),
        "name": name,
        "type": "Microsoft.Storage/storageAccounts",
        "kind": "StorageV2",
        "location": "westeurope",
        "sku": {"name": "Standard_GRS", "tier": "Standard"},
        "tags": {"env": "demo"},
        "properties": {
            "creationTime": "2024-06-01T02:42:41.7633306Z",
            "encryption": {
                "keySource": "Microsoft.Storage",
                "services": {
                    "blob": {"enabled": true, "keyType": "Account", "lastEnabledTime": "2024-06-01T02:42:41.7633306Z"},
                    "file": {"enabled": true, "keyType": "Account", "lastEnabledTime": "2024-06-01T02:42:41.7633306Z"}
                }
            },
            "networkAcls": {"bypass": "AzureServices", "defaultAction": "Allow", "ipRules": [], "virtualNetworkRules": []},
            "primaryEndpoints": {
                "blob": format!("https://{name}.blob.core.windows.net/"),
                "dfs": format!("https://{name}.dfs.core.windows.net/"),
                "file": format!("https://{name}.file.core.windows.net/"),
                "queue": format!("https://{name}.queue.core.windows.net/"),
                "table": format!("https://{name}.table.core.windows.net/"),
                "web": format!("https://{name}.web.core.windows.net/")
            },
            "primaryLocation": "westeurope",
            "provisioningState": "Succeeded",
            "secondaryLocation": "northeurope",
            "statusOfPrimary": "available",
            "statusOfSecondary": "available",
            "supportsHttpsTrafficOnly": true,
            "minimumTlsVersion": "TLS1_2",
            "allowBlobPublicAccess": false,
            "publicNetworkAccess": "Enabled",
            // ARM always lists it, empty or not; clients such as Prowler iterate it unguarded.
            "privateEndpointConnections": []
        }
    });
    if system_identity {
        doc["identity"] = json!({
            "type": "SystemAssigned",
            "principalId": util::stable_guid(name),
            "tenantId": DEFAULT_TENANT_ID,
        });
    }
    doc
}

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
