//! `handler/openapi.json` against the code: the document is well-formed OpenAPI 3.1, lists exactly
//! the routes of [`API_ROUTES`], and every response the real routers give — over a real
//! [`Pipeline`] talking to an in-process azure-sim, with an embedded store — has a documented
//! status, media type and body (validated with JSON Schema 2020-12 against the document's schema).
//!
//! To cover a new route, list it in [`API_ROUTES`], document it, and add its cases to [`cases`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::api_auth::{ApiAuthMode, ApiAuthenticator, KeyLocation};
use crate::identity::{TokenError, TokenFuture, TokenSource};
use crate::keyvault::KeyVaultClient;
use crate::pipeline::PipelineSettings;
use crate::store::{
    EmbeddedBackend, Entity, Retention, RowRange, StateStore, StoreError, Table, TableBackend, Written,
};

pub(super) const API_KEY: &str = "test-api-key-0123456789abcdef";
pub(super) const WEBHOOK_KEY: &str = "test-webhook-key";
/// What the failing credential of [`Which::NoToken`] says: the kind of text a real credential's
/// error carries (tenant, client, endpoint), which must stay in the log.
pub(super) const CREDENTIAL_ERROR: &str = "AADSTS7000215: Invalid client secret provided for client 6e9c3a1f in tenant 0f1e2d3c via https://login.internal.example";
const SUBSCRIPTION: &str = azure_sim::DEMO_SUBSCRIPTION;
const RESOURCE_GROUP: &str = azure_sim::DEMO_RESOURCE_GROUP;

pub(super) fn document() -> Value {
    serde_json::from_str(OPENAPI_DOCUMENT).unwrap_or_else(|e| panic!("openapi.json is not JSON: {e}"))
}

pub(super) fn account(name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/{name}"
    )
}

// --- the document itself -------------------------------------------------------------------

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// (METHOD, path) of every operation in the document.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in HTTP_METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    &doc["paths"][path][method.to_ascii_lowercase()]
}

#[test]
fn the_document_is_openapi_3_1_with_unique_operation_ids_and_resolvable_refs() {
    let doc = document();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi: {version:?}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut ids = BTreeSet::new();
    for (method, path) in documented_operations(&doc) {
        let op = operation(&doc, &method, &path);
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}: no responses"));
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        for status in responses.keys() {
            assert!(
                status.len() == 3 && status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s)),
                "{method} {path}: response key {status}"
            );
        }
    }
    // Every `$ref` points into the document.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20, "{} refs", all.len());
    for r in all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {r} resolves to nothing");
    }
    // Every security requirement names a declared scheme.
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for name in ["apiKey", "functionsKey", "entraToken"] {
        assert!(schemes.contains_key(name), "security scheme {name}");
    }
    assert_eq!(schemes["apiKey"]["name"], crate::api_auth::API_KEY_HEADER);
    assert_eq!(schemes["functionsKey"]["name"], crate::api_auth::FUNCTIONS_KEY_HEADER);
    assert_eq!(schemes["entraToken"]["scheme"], "bearer");
    // Every schema compiles as JSON Schema 2020-12.
    for name in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        compile(&doc, &format!("#/components/schemas/{name}"));
    }
}

#[test]
fn the_document_lists_exactly_the_route_table_with_matching_access() {
    let doc = document();
    let table: BTreeSet<(String, String)> = API_ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(table.len(), API_ROUTES.len(), "API_ROUTES lists a route twice");
    let documented = documented_operations(&doc);
    let undocumented: Vec<_> = table.difference(&documented).collect();
    let unserved: Vec<_> = documented
        .difference(&table)
        .filter(|(_, p)| !UNSERVED_YET.contains(&p.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "served but not in openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in openapi.json but not in API_ROUTES: {unserved:?}"
    );
    for route in API_ROUTES {
        let op = operation(&doc, route.method, route.path);
        let security = op.get("security").unwrap_or(&doc["security"]);
        let requirements = security.as_array().cloned().unwrap_or_default();
        let anonymous_allowed = requirements.is_empty() || requirements.iter().any(|r| r == &json!({}));
        match route.access {
            Access::Authenticated => assert!(
                !anonymous_allowed,
                "{} {} needs authentication but the document allows anonymous calls",
                route.method, route.path
            ),
            Access::EventGrid => assert!(
                !anonymous_allowed && requirements.contains(&json!({"webhookKey": []})),
                "{} {} needs the webhook key or Event Grid's token, but the document says otherwise",
                route.method,
                route.path
            ),
            Access::Open => assert!(
                anonymous_allowed,
                "{} {} is open but the document requires a credential",
                route.method, route.path
            ),
        }
        if route.access != Access::Open {
            assert!(
                op["responses"].get("401").is_some(),
                "{} {} must document 401",
                route.method,
                route.path
            );
        }
    }
}

/// Documented ahead of its handler; remove it from here when the route is registered.
const UNSERVED_YET: &[&str] = &[];

#[test]
#[should_panic(expected = "not listed in API_ROUTES")]
fn a_route_missing_from_the_table_cannot_be_registered() {
    async fn nothing() {}
    let _ = ApiRouter::new(Host::Webhook).add("GET", "/api/undocumented", nothing);
}

// --- validating a response against the document ------------------------------------------

/// A validator for the schema at `pointer` (a `#/...` JSON pointer into the document): the whole
/// document is the root resource, so the schema's `#/components/schemas/...` refs resolve.
fn compile(doc: &Value, pointer: &str) -> jsonschema::Validator {
    let mut root = doc.clone();
    root["$ref"] = json!(pointer);
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {pointer} does not compile: {e}"))
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Checks one real response against the document: the status must be documented for the
/// operation, the media type must be one it lists, and the body must match that schema.
fn check_response(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    let method = method.to_ascii_lowercase();
    let status_key = status.to_string();
    let mut pointer = format!("#/paths/{}/{method}/responses/{status_key}", escape(path));
    let mut response = doc
        .pointer(&pointer[1..])
        .ok_or_else(|| format!("{method} {path} answered {status}, which the document does not list"))?;
    if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
        pointer = reference.to_string();
        response = doc
            .pointer(&pointer[1..])
            .ok_or_else(|| format!("{pointer} does not resolve"))?;
    }
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} {status}: documented without a body, got {} bytes",
                body.len()
            ))
        };
    };
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .ok_or_else(|| format!("{method} {path} {status}: no Content-Type"))?;
    if !content.contains_key(&essence) {
        return Err(format!(
            "{method} {path} {status}: media type {essence} is not documented (documented: {:?})",
            content.keys().collect::<Vec<_>>()
        ));
    }
    let instance: Value = if essence.ends_with("json") {
        serde_json::from_slice(body).map_err(|e| format!("{method} {path} {status}: body is not JSON: {e}"))?
    } else {
        Value::String(String::from_utf8(body.to_vec()).map_err(|e| format!("body is not UTF-8: {e}"))?)
    };
    let schema_pointer = format!("{pointer}/content/{}/schema", escape(&essence));
    let validator = compile(doc, &schema_pointer);
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {path} {status} ({essence}) does not match {schema_pointer}:\n  {}\nbody: {}",
            errors.join("\n  "),
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        ))
    }
}

#[test]
fn the_checker_rejects_undocumented_statuses_media_types_and_wrongly_typed_fields() {
    let doc = document();
    let outcome = json!({
        "trigger": {"kind": "manual"}, "correlationId": "c", "resourceId": account("st1"),
        "resourceType": "Microsoft.Storage/storageAccounts", "caller": null, "callerIp": null,
        "profile": "default", "requirement": "cmk", "verdict": "compliant", "drift": null,
        "before": {"state": "cmk", "detail": {"vaultUri": "https://kv.vault.azure.net", "keyName": "k",
                   "keyVersion": null, "userAssignedIdentity": null}},
        "after": null, "action": "none", "result": "compliant", "detail": null, "alert": false,
        "dryRun": false, "durationMs": 12
    });
    let check = |status: u16, content_type: &str, body: &Value| {
        check_response(
            &doc,
            "POST",
            "/api/check",
            status,
            Some(content_type),
            body.to_string().as_bytes(),
        )
    };
    check(200, "application/json", &outcome).unwrap_or_else(|e| panic!("{e}"));

    let mut wrong_type = outcome.clone();
    wrong_type["durationMs"] = json!("12");
    let err = check(200, "application/json", &wrong_type).unwrap_err();
    assert!(err.contains("/durationMs"), "{err}");

    let mut extra = outcome.clone();
    extra["surprise"] = json!(1);
    assert!(check(200, "application/json", &extra).is_err());

    let mut missing = outcome.clone();
    missing.as_object_mut().map(|o| o.remove("alert"));
    assert!(check(200, "application/json", &missing).is_err());

    let mut bad_state = outcome.clone();
    bad_state["before"] = json!({"state": "cmk"});
    assert!(
        check(200, "application/json", &bad_state).is_err(),
        "cmk without its key"
    );

    let err = check(418, "application/json", &outcome).unwrap_err();
    assert!(err.contains("does not list"), "{err}");
    let err = check(200, "text/plain", &outcome).unwrap_err();
    assert!(err.contains("not documented"), "{err}");
    let error_body = json!({"error": {"code": "X", "message": "y"}});
    check(400, "application/json", &error_body).unwrap_or_else(|e| panic!("{e}"));
    assert!(check(400, "application/json", &json!({"error": {"code": "X"}})).is_err());
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
    /// Over the sim, with a working identity and store: for routers built by other tests.
    pub(super) pipeline: Arc<Pipeline>,
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
pub(super) fn app_state(pipeline: Arc<Pipeline>, api: ApiAuthMode, events: ApiAuthMode, dry_run: bool) -> AppState {
    AppState {
        pipeline,
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

pub(super) fn pipeline(sim: &azure_sim::SimHandle, tokens: Arc<dyn TokenSource>, store: StateStore) -> Pipeline {
    let egress = crate::test_support::egress(tokens, &sim.base_url(), None, Some(&sim.base_url()));
    let arm = ArmClient::new(egress.clone());
    let keyvault = KeyVaultClient::new(egress);
    Pipeline::new(
        Arc::new(keyguard_core::config::Config::builtin_default()),
        arm,
        keyvault,
        store,
        PipelineSettings {
            dry_run: false,
            time_budget: Duration::from_secs(10),
            instance: "openapi-test".into(),
            retention: Retention {
                audit: time::Duration::days(90),
                sent_alerts: time::Duration::days(7),
            },
            sweep: crate::pipeline::SweepSettings::default(),
        },
    )
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
            Arc::new(SimManagedIdentity {
                http: reqwest::Client::new(),
                endpoint: sim.msi_endpoint(),
                header: header.to_string(),
            })
        };
        let shared = Arc::new(pipeline(&sim, identity(&identity_header), store.clone()));
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
            Arc::new(pipeline(&sim, identity("not-the-identity-header"), down)),
            api_key(),
            ApiAuthMode::Closed,
            true,
        ));
        let no_token = webhook_router(app_state(
            Arc::new(pipeline(&sim, Arc::new(FailingCredential), store)),
            api_key(),
            ApiAuthMode::Closed,
            false,
        ));
        Env {
            sim,
            _dir: TempDir(dir),
            pipeline: shared,
            webhook,
            functions,
            broken,
            no_token,
        }
    }

    fn router(&self, which: Which) -> &Router {
        match which {
            Which::Webhook => &self.webhook,
            Which::Functions => &self.functions,
            Which::Broken => &self.broken,
            Which::NoToken => &self.no_token,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Which {
    Webhook,
    Functions,
    Broken,
    NoToken,
}

#[derive(Clone, Copy, Debug)]
enum Credential {
    None,
    ApiKey,
    FunctionsKeyHeader,
    WrongKey,
}

type BodyCheck = Box<dyn Fn(&Value)>;

struct Case {
    name: &'static str,
    router: Which,
    method: &'static str,
    /// The documented path; the request goes to `path` + `query`.
    path: &'static str,
    query: String,
    credential: Credential,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    /// Further checks on the parsed body (JSON, or a string for text media types).
    expect: Option<BodyCheck>,
}

impl Case {
    fn new(name: &'static str, router: Which, method: &'static str, path: &'static str, status: u16) -> Case {
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
    fn query(mut self, query: impl Into<String>) -> Case {
        self.query = query.into();
        self
    }
    fn credential(mut self, credential: Credential) -> Case {
        self.credential = credential;
        self
    }
    fn json(mut self, body: Value) -> Case {
        self.content_type = Some("application/json");
        self.body = body.to_string().into_bytes();
        self
    }
    fn raw(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Case {
        self.content_type = Some(content_type);
        self.body = body.into();
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }
    fn expect(mut self, check: impl Fn(&Value) + 'static) -> Case {
        self.expect = Some(Box::new(check));
        self
    }
}

use Which::{Broken, Functions, NoToken, Webhook};

fn verdicts(body: &Value) -> BTreeSet<String> {
    body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["verdict"].as_str().map(str::to_string))
        .collect()
}

/// Every case, run in order (the checks first: they write the findings and the audit records
/// the later cases read). Add a route's cases here.
fn cases(events: Vec<Value>) -> Vec<Case> {
    let cmk = account("stcmkpayments");
    let mmk = account("stmmklogs");
    let missing = account("stdoesnotexist");
    let unsupported =
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Web/sites/app1");
    let validation = json!([{
        "id": "v1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "subject": "", "topic": "t",
        "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": "https://example.invalid"}
    }]);
    let too_large = format!("{{\"resourceId\": \"{}\"}}", "x".repeat(BODY_LIMIT + 1));
    vec![
        // POST /api/check
        Case::new("check a CMK account", Webhook, "POST", "/api/check", 200)
            .json(json!({"resourceId": cmk}))
            .expect(|b| assert_eq!(b["verdict"], "compliant", "{b}")),
        Case::new("check an MMK account in dry run", Webhook, "POST", "/api/check", 200)
            .json(json!({"resourceId": mmk, "dryRun": true}))
            .expect(|b| {
                assert_eq!(b["verdict"], "drift", "{b}");
                assert_eq!(b["dryRun"], true, "{b}");
                assert_eq!(b["before"]["state"], "mmk", "{b}");
            }),
        Case::new("check a type outside the catalog", Webhook, "POST", "/api/check", 200)
            .json(json!({"resourceId": unsupported}))
            .expect(|b| assert_eq!(b["verdict"], "unsupported", "{b}")),
        Case::new("check a resource ARM does not have", Webhook, "POST", "/api/check", 404)
            .json(json!({"resourceId": missing}))
            .expect(|b| assert_eq!(b["error"]["code"], "ResourceNotFound", "{b}")),
        Case::new("check with a body that is not JSON", Webhook, "POST", "/api/check", 400)
            .raw("application/json", "{not json"),
        Case::new(
            "check an id that is not a resource id",
            Webhook,
            "POST",
            "/api/check",
            400,
        )
        .json(json!({"resourceId": "storage account 1"}))
        .expect(|b| assert_eq!(b["error"]["code"], "InvalidResourceId", "{b}")),
        Case::new("check with an unknown field", Webhook, "POST", "/api/check", 400)
            .json(json!({"resourceId": cmk, "force": true})),
        Case::new("check with the wrong media type", Webhook, "POST", "/api/check", 415).raw("text/plain", cmk.clone()),
        Case::new("check with a body over the limit", Webhook, "POST", "/api/check", 413)
            .raw("application/json", too_large),
        Case::new("check without a credential", Webhook, "POST", "/api/check", 401)
            .json(json!({"resourceId": cmk}))
            .credential(Credential::None)
            .expect(|b| assert_eq!(b["error"]["message"], "authentication required", "{b}")),
        Case::new("check with a wrong key", Webhook, "POST", "/api/check", 401)
            .json(json!({"resourceId": cmk}))
            .credential(Credential::WrongKey)
            .expect(|b| assert_eq!(b["error"]["message"], "authentication required", "{b}")),
        Case::new(
            "check with the key in x-functions-key",
            Webhook,
            "POST",
            "/api/check",
            200,
        )
        .json(json!({"resourceId": cmk}))
        .credential(Credential::FunctionsKeyHeader),
        Case::new("check under the Functions host", Functions, "POST", "/api/check", 200)
            .json(json!({"resourceId": account("stexemptsandbox")}))
            .credential(Credential::None)
            .expect(|b| assert_eq!(b["verdict"], "exempt", "{b}")),
        Case::new("check while the store is down", Broken, "POST", "/api/check", 503)
            .json(json!({"resourceId": cmk}))
            .expect(|b| {
                let message = b["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("correlation id"), "{b}");
                assert!(!message.contains("connection refused"), "the store's error text: {b}");
            }),
        Case::new("check when the credential is refused", NoToken, "POST", "/api/check", 502)
            .json(json!({"resourceId": cmk}))
            .header("x-ms-correlation-request-id", "corr-check-no-token")
            .expect(|b| {
                let message = b["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("corr-check-no-token"), "names the correlation id: {b}");
                for leak in ["AADSTS", "client secret", "tenant", "login.internal.example"] {
                    assert!(!message.contains(leak), "the credential's error text ({leak}) leaked: {b}");
                }
            }),
        // GET /api/findings
        Case::new("all findings", Webhook, "GET", "/api/findings", 200).expect(|b| {
            let found = verdicts(b);
            for v in ["compliant", "drift", "exempt", "unsupported"] {
                assert!(found.contains(v), "{v} missing: {b}");
            }
            assert_eq!(
                b["summary"]["overall"]["total"],
                b["value"].as_array().map_or(0, Vec::len),
                "{b}"
            );
            assert_eq!(b["summary"]["overall"]["drift"], 1, "{b}");
        }),
        Case::new(
            "findings by verdict list and type",
            Webhook,
            "GET",
            "/api/findings",
            200,
        )
        .query("verdict=drift,Compliant&type=microsoft.storage/STORAGEACCOUNTS")
        .expect(|b| {
            assert_eq!(
                verdicts(b),
                BTreeSet::from(["compliant".to_string(), "drift".to_string()]),
                "{b}"
            );
        }),
        Case::new("findings by repeated verdict", Webhook, "GET", "/api/findings", 200)
            .query("verdict=unsupported&verdict=exempt")
            .expect(|b| {
                assert_eq!(
                    verdicts(b),
                    BTreeSet::from(["exempt".to_string(), "unsupported".to_string()]),
                    "{b}"
                );
            }),
        Case::new(
            "findings by subscription and group",
            Webhook,
            "GET",
            "/api/findings",
            200,
        )
        .query(format!(
            "subscription={}&resourceGroup=RG-KEYGUARD-DEMO",
            SUBSCRIPTION.to_uppercase()
        ))
        .expect(|b| assert_eq!(b["value"].as_array().map_or(0, Vec::len), 4, "{b}")),
        Case::new("findings of another subscription", Webhook, "GET", "/api/findings", 200)
            .query("subscription=00000000-0000-0000-0000-000000000000")
            .expect(|b| {
                assert_eq!(b["value"], json!([]), "{b}");
                assert_eq!(b["summary"]["overall"]["total"], 0, "{b}");
            }),
        Case::new("findings as CSV", Webhook, "GET", "/api/findings", 200)
            .query("format=csv")
            .expect(|b| {
                let text = b.as_str().unwrap_or_default();
                assert!(text.lines().count() >= 5 && text.contains("stmmklogs"), "{text}");
            }),
        Case::new("findings as SARIF", Webhook, "GET", "/api/findings", 200)
            .query("format=sarif&verdict=drift")
            .expect(|b| assert_eq!(b["runs"][0]["results"].as_array().map_or(0, Vec::len), 1, "{b}")),
        Case::new("findings as HTML", Webhook, "GET", "/api/findings", 200)
            .query("format=HTML")
            .expect(|b| assert!(b.as_str().unwrap_or_default().contains("stmmklogs"))),
        Case::new("findings with an unknown verdict", Webhook, "GET", "/api/findings", 400)
            .query("verdict=drifted")
            .expect(|b| {
                assert!(
                    b["error"]["message"].as_str().unwrap_or_default().contains("drifted"),
                    "{b}"
                )
            }),
        Case::new(
            "findings with an unknown parameter",
            Webhook,
            "GET",
            "/api/findings",
            400,
        )
        .query("state=drift")
        .expect(|b| {
            assert!(
                b["error"]["message"].as_str().unwrap_or_default().contains("state"),
                "{b}"
            )
        }),
        Case::new("findings as a terminal table", Webhook, "GET", "/api/findings", 400).query("format=table"),
        Case::new("findings with an empty filter", Webhook, "GET", "/api/findings", 400).query("subscription="),
        Case::new("findings twice filtered by type", Webhook, "GET", "/api/findings", 400).query("type=a/b&type=c/d"),
        Case::new("findings without a credential", Webhook, "GET", "/api/findings", 401).credential(Credential::None),
        Case::new(
            "findings under the Functions host with ?code=",
            Functions,
            "GET",
            "/api/findings",
            200,
        )
        .query("code=the-host-checked-this&verdict=exempt")
        .credential(Credential::None)
        .expect(|b| assert_eq!(verdicts(b), BTreeSet::from(["exempt".to_string()]), "{b}")),
        Case::new("findings while the store is down", Broken, "GET", "/api/findings", 503),
        // GET /api/audit
        Case::new("the audit trail", Webhook, "GET", "/api/audit", 200)
            .expect(|b| assert!(b["value"].as_array().map_or(0, Vec::len) >= 4, "{b}")),
        Case::new("one resource's audit records", Webhook, "GET", "/api/audit", 200)
            .query(format!("resource={}&since=1h&limit=1", mmk))
            .expect(|b| {
                assert_eq!(b["value"].as_array().map_or(0, Vec::len), 1, "{b}");
                assert_eq!(b["value"][0]["verdict"], "drift", "{b}");
            }),
        Case::new("the newest two audit records", Webhook, "GET", "/api/audit", 200)
            .query("limit=2")
            .expect(|b| {
                let times: Vec<&str> = b["value"].as_array().into_iter().flatten().filter_map(|r| r["time"].as_str()).collect();
                assert_eq!(times.len(), 2, "{b}");
                assert!(times[0] <= times[1], "oldest first: {b}");
            }),
        Case::new("audit with a bad time", Webhook, "GET", "/api/audit", 400).query("since=yesterday"),
        // Finding 7: these panicked (a 500).
        Case::new("audit since an age beyond the calendar", Webhook, "GET", "/api/audit", 400)
            .query("since=99999999999999d")
            .expect(|b| {
                assert_eq!(b["error"]["code"], "InvalidQuery", "{b}");
                assert!(b["error"]["message"].as_str().unwrap_or_default().contains("beyond the calendar"), "{b}");
            }),
        Case::new("audit until an age beyond the calendar", Webhook, "GET", "/api/audit", 400)
            .query("until=99999999999999d")
            .expect(|b| assert!(b["error"]["message"].as_str().unwrap_or_default().starts_with("until"), "{b}")),
        Case::new("audit with a limit over the maximum", Webhook, "GET", "/api/audit", 400)
            .query("limit=10001")
            .expect(|b| assert!(b["error"]["message"].as_str().unwrap_or_default().contains("10000"), "{b}")),
        Case::new("audit with a bad limit", Webhook, "GET", "/api/audit", 400).query("limit=many"),
        Case::new("audit with an unknown parameter", Webhook, "GET", "/api/audit", 400).query("verdict=drift"),
        Case::new("audit without a credential", Webhook, "GET", "/api/audit", 401).credential(Credential::None),
        Case::new(
            "audit under the Functions host with ?code=",
            Functions,
            "GET",
            "/api/audit",
            200,
        )
        .query("code=the-host-checked-this")
        .credential(Credential::None),
        Case::new("audit while the store is down", Broken, "GET", "/api/audit", 503),
        // GET /api/health
        Case::new("health, authenticated", Webhook, "GET", "/api/health", 200).expect(|b| {
            assert_eq!(b["status"], "ok", "{b}");
            assert_eq!(b["storeReachable"], true, "{b}");
            assert_eq!(b["identity"], json!({"tokenObtainable": true}), "{b}");
            assert_eq!(b["catalogTypes"], keyguard_core::catalog::entries().len(), "{b}");
        }),
        Case::new("health, anonymous", Webhook, "GET", "/api/health", 200)
            .credential(Credential::None)
            .expect(|b| assert_eq!(b, &json!({"status": "ok"}))),
        Case::new("health with a wrong key", Webhook, "GET", "/api/health", 401).credential(Credential::WrongKey),
        Case::new("health under the Functions host", Functions, "GET", "/api/health", 200)
            .credential(Credential::None)
            .expect(|b| assert!(b["store"].as_str().unwrap_or_default().starts_with("embedded "), "{b}")),
        Case::new("health with store and identity down", Broken, "GET", "/api/health", 503).expect(|b| {
            assert_eq!(b["status"], "degraded", "{b}");
            assert_eq!(b["storeReachable"], false, "{b}");
            assert_eq!(b["identity"]["tokenObtainable"], false, "{b}");
            assert_eq!(b["dryRun"], true, "{b}");
            let error = b["identity"]["error"].as_str().unwrap_or_default();
            assert!(!error.is_empty() && !error.contains("not-the-identity-header"), "{b}");
        }),
        Case::new(
            "health with store and identity down, anonymous",
            Broken,
            "GET",
            "/api/health",
            503,
        )
        .credential(Credential::None)
        .expect(|b| assert_eq!(b, &json!({"status": "degraded"}))),
        // GET /api/openapi.json
        Case::new("the document, anonymous", Webhook, "GET", "/api/openapi.json", 200)
            .credential(Credential::None)
            .expect(|b| assert_eq!(b, &document())),
        Case::new(
            "the document under the Functions host",
            Functions,
            "GET",
            "/api/openapi.json",
            200,
        )
        .credential(Credential::None),
        // POST /api/events and OPTIONS /api/events (keyguard webhook)
        Case::new("Event Grid validation handshake", Webhook, "POST", "/api/events", 200)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .json(validation.clone())
            .expect(|b| assert_eq!(b["validationResponse"], "512d38b6-c7b8-40c8-89fe-f46f9e9622b6")),
        Case::new("an Event Grid delivery", Webhook, "POST", "/api/events", 200)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .json(Value::Array(events))
            .expect(|b| {
                assert_eq!(b["processed"], 1, "{b}");
                assert_eq!(b["outcomes"][0]["trigger"]["kind"], "event", "{b}");
            }),
        Case::new("events without the webhook key", Webhook, "POST", "/api/events", 401)
            .credential(Credential::None)
            .json(validation.clone()),
        Case::new(
            "events with the API key instead of the webhook key",
            Webhook,
            "POST",
            "/api/events",
            401,
        )
        .json(validation.clone()),
        Case::new("events that are not JSON", Webhook, "POST", "/api/events", 400)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .raw("application/json", "[{"),
        Case::new("events that are not events", Webhook, "POST", "/api/events", 400)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .json(json!(42)),
        Case::new("events as text", Webhook, "POST", "/api/events", 415)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .raw("text/plain", validation.to_string()),
        Case::new("CloudEvents handshake", Webhook, "OPTIONS", "/api/events", 200)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .header("webhook-request-origin", "eventgrid.azure.net"),
        Case::new(
            "CloudEvents handshake from elsewhere",
            Webhook,
            "OPTIONS",
            "/api/events",
            403,
        )
        .query(format!("code={WEBHOOK_KEY}"))
        .credential(Credential::None)
        .header("webhook-request-origin", "example.com"),
        Case::new(
            "CloudEvents handshake without the key",
            Webhook,
            "OPTIONS",
            "/api/events",
            401,
        )
        .credential(Credential::None)
        .header("webhook-request-origin", "eventgrid.azure.net"),
        // POST /api/scan (last: it records a finding for every resource it sweeps)
        Case::new("scan the group, report only", Webhook, "POST", "/api/scan", 200)
            .json(json!({"scope": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}")}))
            .expect(|b| {
                assert_eq!(b["complete"], true, "{b}");
                assert!(b["listed"].as_u64().is_some_and(|n| n > 0), "{b}");
                assert_eq!(b["findings"].as_array().map(Vec::len), b["evaluated"].as_u64().map(|n| n as usize));
                assert!(b["summary"]["drift"].as_u64().is_some_and(|n| n > 0), "the demo seed drifts: {b}");
            }),
        Case::new("scan against one requirement", Webhook, "POST", "/api/scan", 200)
            .json(json!({"scope": format!("/subscriptions/{SUBSCRIPTION}"), "require": "encrypted", "types": ["Microsoft.Storage/storageAccounts"]}))
            .expect(|b| assert_eq!(b["summary"]["drift"], 0, "everything is encrypted: {b}")),
        Case::new("scan a scope that is not one", Webhook, "POST", "/api/scan", 400)
            .json(json!({"scope": "/subscriptions"}))
            .expect(|b| assert_eq!(b["error"]["code"], "InvalidScope", "{b}")),
        Case::new("scan a type outside the catalog", Webhook, "POST", "/api/scan", 400)
            .json(json!({"scope": format!("/subscriptions/{SUBSCRIPTION}"), "types": ["Microsoft.Web/sites"]})),
        Case::new("scan with a foreign resume token", Webhook, "POST", "/api/scan", 400)
            .json(json!({"scope": format!("/subscriptions/{SUBSCRIPTION}"), "resumeToken": "sweep|/subscriptions/other||true"}))
            .expect(|b| assert_eq!(b["error"]["code"], "InvalidResumeToken", "{b}")),
        Case::new("scan with the wrong media type", Webhook, "POST", "/api/scan", 415).raw("text/plain", "{}"),
        Case::new("scan without a credential", Webhook, "POST", "/api/scan", 401)
            .json(json!({"scope": format!("/subscriptions/{SUBSCRIPTION}")}))
            .credential(Credential::None),
    ]
}

async fn send(router: &Router, case: &Case) -> (u16, Option<String>, Vec<u8>) {
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
        Credential::ApiKey => request.header(crate::api_auth::API_KEY_HEADER, API_KEY),
        Credential::FunctionsKeyHeader => request.header(crate::api_auth::FUNCTIONS_KEY_HEADER, API_KEY),
        Credential::WrongKey => request.header(crate::api_auth::API_KEY_HEADER, "not-the-api-key-at-all"),
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

/// The events a person's change to an account makes, as Event Grid would deliver them.
pub(super) fn events_for_change(sim: &azure_sim::SimHandle, id: &str) -> Vec<Value> {
    let person = azure_sim::Principal {
        oid: "11111111-2222-3333-4444-555555555555".into(),
        appid: "04b07795-8ddb-461a-bbee-02f9e1bf7b46".into(),
        name: "Test Admin".into(),
        upn: Some("admin@contoso.example".into()),
    };
    let outcome = sim.state().act(id, &person, &json!({"tags": {"touched": "yes"}}));
    assert_eq!(outcome.status, 200, "{}", outcome.body);
    let events = sim.state().events();
    assert!(!events.is_empty(), "the sim made no event");
    events
}

#[tokio::test]
async fn every_response_matches_the_document() {
    let env = Env::start().await;
    let doc = document();
    let events = events_for_change(&env.sim, &account("stcmkledger"));
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    let all = cases(events);
    for case in &all {
        let (status, content_type, body) = send(env.router(case.router), case).await;
        covered.insert((case.method, case.path, status));
        if status != case.status {
            failures.push(format!(
                "{} ({:?} {} {}?{}): expected {}, got {status}: {}",
                case.name,
                case.router,
                case.method,
                case.path,
                case.query,
                case.status,
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ));
            continue;
        }
        if let Err(e) = check_response(&doc, case.method, case.path, status, content_type.as_deref(), &body) {
            failures.push(format!("{}: {e}", case.name));
            continue;
        }
        if let Some(expect) = &case.expect {
            let essence = content_type.as_deref().unwrap_or_default();
            let parsed = if essence.contains("json") {
                serde_json::from_slice(&body).unwrap_or(Value::Null)
            } else {
                Value::String(String::from_utf8_lossy(&body).into_owned())
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| expect(&parsed)));
            if result.is_err() {
                failures.push(format!("{}: the body check failed (see the panic above)", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    // Each served route is exercised with a success and, where it takes a credential, a 401.
    for route in API_ROUTES {
        let statuses: Vec<u16> = covered
            .iter()
            .filter(|(m, p, _)| *m == route.method && *p == route.path)
            .map(|(_, _, s)| *s)
            .collect();
        assert!(
            statuses.contains(&200),
            "{} {}: no success case",
            route.method,
            route.path
        );
        if route.access != Access::Open {
            assert!(statuses.contains(&401), "{} {}: no 401 case", route.method, route.path);
        }
    }
    env.sim.shutdown().await;
}

/// Each router answers each of its routes (no 404/405 from the fallbacks), and the Functions
/// router leaves the webhook-only ones to the EncryptionDrift function.
#[tokio::test]
async fn the_routers_serve_exactly_the_route_table() {
    let env = Env::start().await;
    for route in API_ROUTES {
        for (which, served) in [(Webhook, true), (Functions, !route.webhook_only)] {
            let case = Case::new("probe", which, route.method, route.path, 0).credential(Credential::None);
            let (status, _, body) = send(env.router(which), &case).await;
            let fallback = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|b| b["error"]["code"].as_str().map(str::to_string))
                .is_some_and(|code| code == "NotFound" || code == "MethodNotAllowed");
            assert_eq!(
                !fallback,
                served,
                "{which:?} {} {} answered {status}: {}",
                route.method,
                route.path,
                String::from_utf8_lossy(&body)
            );
        }
    }
    env.sim.shutdown().await;
}

// --- the findings query ---------------------------------------------------------------------

#[test]
fn the_findings_query_parses_filters_and_refuses_the_rest() {
    let q = FindingsQuery::parse(Some(
        "verdict=drift,ERROR&verdict=drift&type=Microsoft.Sql/servers&format=sarif",
    ))
    .unwrap();
    assert_eq!(
        q.verdicts,
        BTreeSet::from([FindingVerdict::Drift, FindingVerdict::Error])
    );
    assert_eq!(q.resource_type.as_deref(), Some("Microsoft.Sql/servers"));
    assert_eq!(q.format, Format::Sarif);
    assert_eq!(FindingsQuery::parse(None).unwrap().format, Format::Json);
    assert!(FindingsQuery::parse(Some("code=abc")).unwrap().verdicts.is_empty());
    for (raw, needle) in [
        ("verdict=", "verdict \"\""),
        ("verdict=drift,,error", "verdict \"\""),
        ("format=csv&format=json", "more than once"),
        ("format=xml", "xml"),
        ("subscription=a&subscription=b", "more than once"),
        ("resourcegroup=rg", "resourcegroup"),
    ] {
        let err = FindingsQuery::parse(Some(raw)).unwrap_err().to_string();
        assert!(err.contains(needle), "{raw}: {err}");
    }
    let finding = keyguard_report::Finding::new(
        &account("st1"),
        "microsoft.storage/storageaccounts",
        FindingVerdict::Drift,
    );
    let q = FindingsQuery::parse(Some(&format!(
        "subscription={}&resourceGroup=Rg-Keyguard-Demo",
        SUBSCRIPTION.to_uppercase()
    )))
    .unwrap();
    assert!(q.matches(&finding));
    assert!(
        !FindingsQuery::parse(Some("verdict=compliant"))
            .unwrap()
            .matches(&finding)
    );
    assert!(
        !FindingsQuery::parse(Some("type=Microsoft.Sql/servers"))
            .unwrap()
            .matches(&finding)
    );
    assert!(
        FindingsQuery::parse(Some("type=MICROSOFT.STORAGE/storageAccounts"))
            .unwrap()
            .matches(&finding)
    );
}
