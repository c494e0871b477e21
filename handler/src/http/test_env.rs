//! What the router tests run against: azure-sim in process, a real reconcile [`Context`] over it with an
//! embedded store, the routers built from them (working, broken, without a token), and the
//! [`Case`] a test sends through one of them. Shared by [`super::response_tests`] and
//! [`super::access_tests`].

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::http::auth::{ApiAuthMode, ApiAuthenticator, KeyLocation};
use crate::identity::{TokenError, TokenFuture, TokenSource};
use crate::reconcile::Context;
use crate::store::{EmbeddedBackend, Entity, RowGroup, RowRange, StateStore, StoreError, Table, TableBackend, Written};

pub(super) const API_KEY: &str = "test-api-key-0123456789abcdef";
pub(super) const WEBHOOK_KEY: &str = "test-webhook-key";
/// What the failing credential of [`Which::NoToken`] says: the kind of text a real credential's
/// error carries (tenant, client, endpoint), which must stay in the log.
pub(super) const CREDENTIAL_ERROR: &str = "AADSTS7000215: Invalid client secret provided for client 6e9c3a1f in tenant 0f1e2d3c via https://login.internal.example";
pub(super) const SUBSCRIPTION: &str = azure_sim::DEMO_SUBSCRIPTION;
pub(super) const RESOURCE_GROUP: &str = azure_sim::DEMO_RESOURCE_GROUP;

pub(super) fn account(name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/{name}"
    )
}

// --- the environment: azure-sim, a real pipeline, both routers ------------------------------

/// Tokens from the sim's managed-identity endpoint, requested the way App Service's endpoint
/// expects; `azure_identity` would read the endpoint from the process environment, which
/// parallel tests must not share.
struct SimManagedIdentity {
    http: reqwest::Client,
    endpoint: String,
    header: String,
}

impl TokenSource for SimManagedIdentity {
    fn token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let resource = scope.trim_end_matches("/.default");
            let response = self
                .http
                .get(&self.endpoint)
                .query(&[("api-version", "2019-08-01"), ("resource", resource)])
                .header("x-identity-header", &self.header)
                .send()
                .await
                .map_err(|e| TokenError::Unavailable(e.to_string()))?;
            let status = response.status();
            if !status.is_success() {
                return Err(TokenError::from_status(
                    status.as_u16(),
                    format!("identity endpoint answered {status}"),
                ));
            }
            let body: Value = response
                .json()
                .await
                .map_err(|e| TokenError::Unavailable(e.to_string()))?;
            let token = body["access_token"]
                .as_str()
                .ok_or_else(|| TokenError::Unavailable("no access_token".into()))?;
            Ok(azure_core::credentials::Secret::new(token.to_string()))
        })
    }
}

/// A credential that never issues a token, with the kind of message a real one gives.
pub(super) struct FailingCredential;

impl TokenSource for FailingCredential {
    fn token<'a>(&'a self, _scope: &'a str) -> TokenFuture<'a> {
        Box::pin(async { Err(TokenError::Refused(CREDENTIAL_ERROR.into())) })
    }
}

/// A store whose every call fails after start-up, like a Table Storage account gone away.
pub(super) struct UnreachableStore;

#[async_trait]
impl TableBackend for UnreachableStore {
    fn describe(&self) -> String {
        "unreachable test store".into()
    }
    async fn prepare(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get(&self, _: Table, _: &str, _: &str) -> Result<Option<Entity>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn insert(&self, _: Table, _: &str, _: &str, _: &Value) -> Result<Written, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn replace(&self, _: Table, _: &str, _: &str, _: &Value, _: Option<&str>) -> Result<Written, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn delete(&self, _: Table, _: &str, _: &str, _: Option<&str>) -> Result<Written, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn query_first(&self, _: Table, _: &RowRange<'_>, _: usize) -> Result<Vec<Entity>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn insert_absent(&self, _: &[RowGroup]) -> Result<Vec<usize>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn flush(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
}

/// Removed when the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) struct Env {
    pub(super) sim: azure_sim::SimHandle,
    _dir: TempDir,
    /// Where [`Env::fresh_store`] puts its files (removed with `_dir`).
    dir: PathBuf,
    /// What the sim's managed-identity endpoint expects, for [`Env::identity`].
    identity_header: String,
    /// Over the sim, with a working identity and store: for routers built by other tests.
    pub(super) context: Arc<Context>,
    /// `keyguard webhook` with an API key and a webhook key.
    webhook: Router,
    /// `keyguard serve` under the Functions host.
    functions: Router,
    /// `keyguard webhook` whose store and identity are both down.
    broken: Router,
    /// `keyguard webhook` whose credential issues no token (the store works).
    no_token: Router,
}

/// The state a router gets: `api` guards the API routes, `events` guards `/api/events`.
pub(super) fn app_state(context: Arc<Context>, api: ApiAuthMode, events: ApiAuthMode, dry_run: bool) -> AppState {
    AppState {
        reconcile: context,
        sweep: crate::sweep::SweepSettings::default(),
        retention: crate::test_support::retention(),
        auth: Arc::new(ApiAuthenticator::new(
            api,
            KeyLocation::ApiHeaders,
            reqwest::Client::new(),
        )),
        events_auth: Arc::new(ApiAuthenticator::new(
            events,
            KeyLocation::WebhookQuery,
            reqwest::Client::new(),
        )),
        dry_run,
    }
}

/// The built-in profiles over the sim.
pub(super) fn context(sim: &azure_sim::SimHandle, tokens: Arc<dyn TokenSource>, store: StateStore) -> Context {
    crate::test_support::reconcile_context(sim, tokens, store, keyguard_core::config::Config::builtin_default())
}

impl Env {
    pub(super) async fn start() -> Env {
        let config = azure_sim::SimConfig {
            seed: azure_sim::demo_seed(SUBSCRIPTION, RESOURCE_GROUP),
            ..Default::default()
        };
        let identity_header = config.identity_header.clone();
        let sim = azure_sim::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = std::env::temp_dir().join(format!("keyguard-openapi-{}", uuid::Uuid::new_v4()));
        let store = StateStore::new(Arc::new(EmbeddedBackend::open(&dir.join("state.redb")).unwrap()))
            .await
            .unwrap();
        let identity = |header: &str| -> Arc<dyn TokenSource> {
            // Same as Env::identity, before there is an Env.
            Arc::new(SimManagedIdentity {
                http: reqwest::Client::new(),
                endpoint: sim.msi_endpoint(),
                header: header.to_string(),
            })
        };
        let shared = Arc::new(context(&sim, identity(&identity_header), store.clone()));
        let api_key = || ApiAuthMode::Key(API_KEY.to_string().into());
        let webhook = webhook_router(app_state(
            shared.clone(),
            api_key(),
            ApiAuthMode::Key(WEBHOOK_KEY.to_string().into()),
            false,
        ));
        let functions = functions_router(app_state(
            shared.clone(),
            ApiAuthMode::FunctionsHost,
            ApiAuthMode::Closed,
            false,
        ));
        let down = StateStore::new(Arc::new(UnreachableStore)).await.unwrap();
        let broken = webhook_router(app_state(
            Arc::new(context(&sim, identity("not-the-identity-header"), down)),
            api_key(),
            ApiAuthMode::Closed,
            true,
        ));
        let no_token = webhook_router(app_state(
            Arc::new(context(&sim, Arc::new(FailingCredential), store)),
            api_key(),
            ApiAuthMode::Closed,
            false,
        ));
        Env {
            sim,
            dir: dir.clone(),
            _dir: TempDir(dir),
            identity_header,
            context: shared,
            webhook,
            functions,
            broken,
            no_token,
        }
    }

    /// keyguard's working credential: tokens from the sim's managed-identity endpoint.
    pub(super) fn identity(&self) -> Arc<dyn TokenSource> {
        Arc::new(SimManagedIdentity {
            http: reqwest::Client::new(),
            endpoint: self.sim.msi_endpoint(),
            header: self.identity_header.clone(),
        })
    }

    /// A new embedded store of its own, for a context that must not share the others' state.
    pub(super) async fn fresh_store(&self) -> StateStore {
        let path = self.dir.join(format!("{}.redb", uuid::Uuid::new_v4()));
        StateStore::new(Arc::new(EmbeddedBackend::open(&path).unwrap()))
            .await
            .unwrap()
    }

    pub(super) fn router(&self, which: Which) -> &Router {
        match which {
            Which::Webhook => &self.webhook,
            Which::Functions => &self.functions,
            Which::Broken => &self.broken,
            Which::NoToken => &self.no_token,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Which {
    Webhook,
    Functions,
    Broken,
    NoToken,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Credential {
    None,
    ApiKey,
    FunctionsKeyHeader,
    WrongKey,
}

pub(super) type BodyCheck = Box<dyn Fn(&Value)>;

pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) router: Which,
    pub(super) method: &'static str,
    /// The documented path; the request goes to `path` + `query`.
    pub(super) path: &'static str,
    pub(super) query: String,
    pub(super) credential: Credential,
    pub(super) content_type: Option<&'static str>,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Vec<u8>,
    pub(super) status: u16,
    /// Further checks on the parsed body (JSON, or a string for text media types).
    pub(super) expect: Option<BodyCheck>,
}

impl Case {
    pub(super) fn new(
        name: &'static str,
        router: Which,
        method: &'static str,
        path: &'static str,
        status: u16,
    ) -> Case {
        Case {
            name,
            router,
            method,
            path,
            query: String::new(),
            credential: Credential::ApiKey,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
            status,
            expect: None,
        }
    }
    pub(super) fn query(mut self, query: impl Into<String>) -> Case {
        self.query = query.into();
        self
    }
    pub(super) fn credential(mut self, credential: Credential) -> Case {
        self.credential = credential;
        self
    }
    pub(super) fn json(mut self, body: Value) -> Case {
        self.content_type = Some("application/json");
        self.body = body.to_string().into_bytes();
        self
    }
    pub(super) fn raw(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Case {
        self.content_type = Some(content_type);
        self.body = body.into();
        self
    }
    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }
    pub(super) fn expect(mut self, check: impl Fn(&Value) + 'static) -> Case {
        self.expect = Some(Box::new(check));
        self
    }
}

pub(super) async fn send(router: &Router, case: &Case) -> (u16, Option<String>, Vec<u8>) {
    let uri = if case.query.is_empty() {
        case.path.to_string()
    } else {
        format!("{}?{}", case.path, case.query)
    };
    let mut request = Request::builder()
        .method(Method::from_bytes(case.method.as_bytes()).unwrap())
        .uri(uri);
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    request = match case.credential {
        Credential::None => request,
        Credential::ApiKey => request.header(crate::http::auth::API_KEY_HEADER, API_KEY),
        Credential::FunctionsKeyHeader => request.header(crate::http::auth::FUNCTIONS_KEY_HEADER, API_KEY),
        Credential::WrongKey => request.header(crate::http::auth::API_KEY_HEADER, "not-the-api-key-at-all"),
    };
    for (name, value) in &case.headers {
        request = request.header(*name, value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(case.body.clone())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, content_type, body)
}
