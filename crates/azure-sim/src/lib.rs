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
mod cli;
pub mod control;
mod demo_seed;
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

pub use cli::{SimArgs, run};
pub use demo_seed::{DEMO_KEYVAULT, date_in_days, demo_seed};

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
