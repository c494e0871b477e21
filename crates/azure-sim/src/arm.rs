//! ARM front door. `Microsoft.Storage/storageAccounts` is served here: GET and the synchronous
//! PATCH (`StorageAccounts_Update`), with the validation Azure applies to encryption changes and
//! the `ResourceWriteSuccess` event a subscription system topic would publish. Every other type
//! in [`crate::catalog_sim`] goes to `generic`; polls of long-running operations to
//! [`crate::lro`]; collection GETs and Resource Graph queries to [`crate::listing`]; anything else
//! is 400 `InvalidResourceType`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::faults::{PrincipalOid, ReqCtx};
use crate::identity::{TokenError, decode_token};
use crate::util::{ResourceId, lock, lower_resourcegroups, now_string, percent_decode};
use crate::{Principal, Sim};

/// Storage api-versions the simulator accepts.
pub const SUPPORTED_API_VERSIONS: &[&str] = &[
    "2019-06-01",
    "2021-04-01",
    "2021-09-01",
    "2022-05-01",
    "2022-09-01",
    "2023-01-01",
    "2023-04-01",
    "2023-05-01",
    "2024-01-01",
    "2025-01-01",
    "2025-06-01",
];

pub const STORAGE_NAMESPACE: &str = "Microsoft.Storage";
pub const STORAGE_TYPE: &str = "storageAccounts";
pub const WRITE_ACTION: &str = "Microsoft.Storage/storageAccounts/write";

/// Audiences ARM accepts in the public cloud (with and without trailing slash).
const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com/",
    "https://management.azure.com",
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
];

/// An ARM error: rendered as `{"error":{"code","message","details"?}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// `error.details` (Resource Graph names the precise problem there); omitted when empty.
    pub details: Vec<Value>,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ArmError {
            status,
            code: code.to_owned(),
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = details;
        self
    }

    fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn body(&self) -> Value {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if !self.details.is_empty() {
            body["error"]["details"] = Value::Array(self.details.clone());
        }
        body
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// A successful ARM answer: status, optional JSON body, extra headers.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn ok(doc: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body: Some(doc),
            headers: Vec::new(),
        }
    }

    pub fn created(doc: Value) -> Self {
        Reply {
            status: StatusCode::CREATED,
            body: Some(doc),
            headers: Vec::new(),
        }
    }

    fn into_response(self) -> Response {
        let mut resp = match self.body {
            Some(doc) => (self.status, Json(doc)).into_response(),
            None => self.status.into_response(),
        };
        for (name, value) in self.headers {
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}

/// Context of one write, for the event's `httpRequest` and `correlationId`.
#[derive(Clone, Debug)]
pub(crate) struct WriteInfo {
    pub correlation_id: String,
    pub client_request_id: String,
    pub method: String,
    pub url: String,
}

/// Claims that ARM copies into events, built from a principal (used by `act`, which has no
/// bearer token to decode).
pub(crate) fn claims_for(principal: &Principal, tenant_id: &str) -> Map<String, Value> {
    let (tok, _) = crate::identity::mint_token(&crate::identity::TokenRequest {
        principal,
        tenant_id,
        audience: crate::identity::ARM_AUDIENCE,
        lifetime_secs: 3600,
        idtyp: if principal.upn.is_some() { "user" } else { "app" },
    });
    decode_token(&tok).unwrap_or_default()
}

fn authenticate(headers: &HeaderMap) -> Result<Map<String, Value>, ArmError> {
    let Some(raw) = headers.get("authorization") else {
        return Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let raw = raw.to_str().unwrap_or_default().trim();
    let token = match raw.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => {
            return Err(ArmError::new(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            ));
        }
    };
    let claims = decode_token(token).map_err(|e| {
        let message = match e {
            TokenError::Expired => "The access token expiry UTC time is earlier than current UTC time.".to_owned(),
            TokenError::Malformed(why) => {
                format!("The access token is invalid: {why}.")
            }
        };
        ArmError::new(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", message)
    })?;
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or_default();
    if !ARM_AUDIENCES.iter().any(|a| a.eq_ignore_ascii_case(aud)) {
        return Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.azure.com/'."
            ),
        ));
    }
    Ok(claims)
}

/// Resolves a storage-account id to its store key, with ARM's lookup errors.
pub(crate) fn locate(sim: &Sim, rid: &ResourceId, api_version: &str) -> Result<String, ArmError> {
    let full = rid.full_type();
    if !full.eq_ignore_ascii_case("Microsoft.Storage/storageAccounts") {
        let (ns, ty) = (rid.namespace.clone(), rid.types.join("/"));
        return Err(ArmError::bad_request(
            "InvalidResourceType",
            format!(
                "The resource type '{ty}' could not be found in the namespace '{ns}' for api version '{api_version}'."
            ),
        ));
    }
    let store = lock(&sim.store);
    if !store.groups.contains(&rid.group_key()) {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{}' could not be found.", rid.resource_group),
        ));
    }
    let key = rid.key();
    if !store.resources.contains_key(&key) {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource '{}/{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                full,
                rid.name(),
                rid.resource_group
            ),
        ));
    }
    Ok(key)
}

/// Fallback handler: everything that is neither MSI nor the control API is ARM.
pub(crate) async fn handle(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctx = parts.extensions.get::<ReqCtx>().cloned().unwrap_or(ReqCtx {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        request_id: uuid::Uuid::new_v4().to_string(),
    });
    let body = axum::body::to_bytes(body, 4 * 1024 * 1024).await.unwrap_or_default();
    let scheme = if parts.extensions.get::<crate::tls::ServedOverTls>().is_some() {
        "https"
    } else {
        "http"
    };
    let request = Incoming {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body: &body,
        scheme,
    };
    let (oid, result) = handle_inner(&sim, &request, &ctx);
    let mut resp = match result {
        Ok(reply) => reply.into_response(),
        Err(e) => e.into_response(),
    };
    if let Some(oid) = oid {
        resp.extensions_mut().insert(PrincipalOid(oid));
    }
    resp
}

fn query_param(uri: &axum::http::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == name).then(|| percent_decode(&v.replace('+', " ")))
    })
}

/// One ARM request as the handler sees it.
struct Incoming<'a> {
    method: &'a Method,
    uri: &'a axum::http::Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
    /// `https` when it came through the TLS listener: absolute URLs in answers follow it.
    scheme: &'static str,
}

fn handle_inner(sim: &Sim, request: &Incoming<'_>, ctx: &ReqCtx) -> (Option<String>, Result<Reply, ArmError>) {
    let Incoming {
        method,
        uri,
        headers,
        body,
        scheme,
    } = *request;
    let segs: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    if crate::directory::is_graph_directory(&segs) {
        // Microsoft Graph: a different audience than ARM's, so only a bearer token is required.
        let result = match headers.get("authorization") {
            Some(_) => crate::directory::graph(sim, method, &segs),
            None => Err(ArmError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token is empty.",
            )),
        };
        return (None, result);
    }
    let tenant_route =
        crate::listing::is_tenant_route(&segs) || segs.len() == 1 && segs[0].eq_ignore_ascii_case("tenants");
    if !tenant_route && !segs.first().is_some_and(|s| s.eq_ignore_ascii_case("subscriptions")) {
        return (
            None,
            Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("The requested path '{}' does not exist.", uri.path()),
            )),
        );
    }
    let claims = match authenticate(headers) {
        Ok(c) => c,
        Err(e) => return (None, Err(e)),
    };
    let oid = claims.get("oid").and_then(Value::as_str).map(str::to_owned);
    let result = (|| {
        if let Some(poll) = crate::lro::try_poll(sim, &segs) {
            return poll;
        }
        if let Some(directory) = crate::directory::arm(sim, method, &segs) {
            return directory;
        }
        let api_version = query_param(uri, "api-version").ok_or_else(|| {
            ArmError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        })?;
        let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
        let base_url = format!("{scheme}://{host}");
        if let Some(listed) = crate::listing::dispatch(&crate::listing::ListCall {
            sim,
            method,
            segs: &segs,
            uri,
            body,
            api_version: &api_version,
            base_url: &base_url,
        }) {
            return listed;
        }
        let rid = ResourceId::from_segments(&segs)
            .filter(|r| !r.is_resource_group())
            .ok_or_else(|| {
                ArmError::new(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("The requested path '{}' is not a supported resource.", uri.path()),
                )
            })?;
        let write_info = |method: &str| WriteInfo {
            correlation_id: ctx.correlation_id.clone(),
            client_request_id: headers
                .get("x-ms-client-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            method: method.to_owned(),
            url: format!(
                "https://management.azure.com{}",
                uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
            ),
        };
        if !rid
            .full_type()
            .eq_ignore_ascii_case("Microsoft.Storage/storageAccounts")
        {
            return crate::generic::handle(crate::generic::Call {
                sim,
                method,
                rid,
                api_version,
                claims: &claims,
                body,
                write: write_info(method.as_str()),
                base_url,
            });
        }
        if !SUPPORTED_API_VERSIONS.contains(&api_version.as_str()) {
            return Err(ArmError::bad_request(
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{api_version}' is invalid. The supported versions are '{}'.",
                    SUPPORTED_API_VERSIONS.join(",")
                ),
            ));
        }
        let key = locate(sim, &rid, &api_version)?;
        match *method {
            Method::GET => lock(&sim.store)
                .resources
                .get(&key)
                .cloned()
                .map(Reply::ok)
                .ok_or_else(|| ArmError::new(StatusCode::NOT_FOUND, "ResourceNotFound", "gone")),
            Method::PATCH => {
                let patch: Value = serde_json::from_slice(body).map_err(|e| {
                    ArmError::bad_request(
                        "InvalidRequestContent",
                        format!("The request content was invalid and could not be deserialized: '{e}'."),
                    )
                })?;
                // ARM checks the body against StorageAccounts_Update's schema first.
                crate::schemas::check(&rid.full_type(), "PATCH", &api_version, &patch)
                    .map_err(|message| ArmError::bad_request("InvalidRequestContent", message))?;
                patch_resource(sim, &key, &claims, &patch, &write_info("PATCH")).map(Reply::ok)
            }
            _ => Err(ArmError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("The simulator supports GET and PATCH on storage accounts, not {method}."),
            )),
        }
    })();
    (oid, result)
}

/// Applies a PATCH to a stored account, emits the write event and returns the new document.
pub(crate) fn patch_resource(
    sim: &Sim,
    key: &str,
    claims: &Map<String, Value>,
    patch: &Value,
    write: &WriteInfo,
) -> Result<Value, ArmError> {
    let Some(patch) = patch.as_object() else {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "The request content must be a JSON object.",
        ));
    };
    let updated = {
        let mut store = lock(&sim.store);
        let current =
            store.resources.get(key).cloned().ok_or_else(|| {
                ArmError::new(StatusCode::NOT_FOUND, "ResourceNotFound", "The resource was not found.")
            })?;
        let updated = apply_update(&current, patch, &sim.settings.tenant_id)?;
        store.resources.insert(key.to_owned(), updated.clone());
        updated
    };
    let id = updated.get("id").and_then(Value::as_str).unwrap_or(key).to_owned();
    sim.bus
        .enqueue(write_event(&id, claims, write, &sim.settings.tenant_id));
    Ok(updated)
}

/// Properties the service computes; silently ignored in a request body, as ARM does.
const READ_ONLY_PROPERTIES: &[&str] = &[
    "provisioningState",
    "primaryEndpoints",
    "primaryLocation",
    "statusOfPrimary",
    "lastGeoFailoverTime",
    "secondaryLocation",
    "statusOfSecondary",
    "creationTime",
    "secondaryEndpoints",
    "geoReplicationStats",
    "failoverInProgress",
    "keyCreationTime",
    "isSkuConversionBlocked",
    "accountMigrationInProgress",
    "blobRestoreStatus",
    "privateEndpointConnections",
    "storageAccountSkuConversionStatus",
];

const READ_ONLY_KEYVAULT: &[&str] = &[
    "currentVersionedKeyIdentifier",
    "lastKeyRotationTimestamp",
    "currentVersionedKeyExpirationTimestamp",
];

/// The storage RP binds JSON case-insensitively; canonical spellings are those GET returns.
fn canon<'a>(key: &'a str, known: &[&'a str]) -> &'a str {
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(key))
        .copied()
        .unwrap_or(key)
}

fn canon_map(m: &Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    m.iter().map(|(k, v)| (canon(k, known).to_owned(), v.clone())).collect()
}

/// RFC 7386 merge: objects merge recursively, `null` deletes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if let Some(existing) = t.get_mut(k) {
                    merge(existing, v);
                } else if v.is_object() {
                    let mut fresh = Value::Object(Map::new());
                    merge(&mut fresh, v);
                    t.insert(k.clone(), fresh);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn obj_mut<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = m.entry(key.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(o) => o,
        _ => unreachable!("just replaced with an object"),
    }
}

fn apply_update(current: &Value, patch: &Map<String, Value>, tenant_id: &str) -> Result<Value, ArmError> {
    let mut doc = current.clone();
    let Some(obj) = doc.as_object_mut() else {
        return Err(ArmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The stored resource is not an object.",
        ));
    };
    let patch = canon_map(patch, &["tags", "sku", "identity", "properties", "kind"]);
    if let Some(tags) = patch.get("tags") {
        match tags {
            Value::Object(_) => {
                let mut cur = obj.remove("tags").filter(Value::is_object).unwrap_or(json!({}));
                merge(&mut cur, tags);
                obj.insert("tags".into(), cur);
            }
            Value::Null => {}
            _ => {
                return Err(ArmError::bad_request(
                    "InvalidRequestContent",
                    "'tags' must be an object of strings.",
                ));
            }
        }
    }
    if let Some(sku) = patch.get("sku") {
        let Value::Object(s) = sku else {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "'sku' must be an object.",
            ));
        };
        let mut s = canon_map(s, &["name", "tier"]);
        s.remove("tier");
        let mut v = obj.remove("sku").unwrap_or(json!({}));
        merge(&mut v, &Value::Object(s));
        obj.insert("sku".into(), v);
    }
    let identity_touched = patch.contains_key("identity");
    if let Some(identity) = patch.get("identity") {
        apply_identity(obj, identity, tenant_id)?;
    }
    let mut encryption_touched = false;
    if let Some(props) = patch.get("properties") {
        let Value::Object(props) = props else {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "'properties' must be an object.",
            ));
        };
        for (k, v) in props {
            if READ_ONLY_PROPERTIES.iter().any(|r| r.eq_ignore_ascii_case(k)) {
                continue;
            }
            if k.eq_ignore_ascii_case("encryption") {
                encryption_touched = true;
                let target = obj_mut(obj_mut(obj, "properties"), "encryption");
                apply_encryption(target, v)?;
            } else {
                let target = obj_mut(obj, "properties");
                let mut whole = Value::Object(std::mem::take(target));
                merge(&mut whole, &json!({ k.clone(): v.clone() }));
                if let Value::Object(m) = whole {
                    *target = m;
                }
            }
        }
    }
    if encryption_touched || identity_touched {
        settle_encryption(obj)?;
    }
    Ok(doc)
}

fn identity_type_canonical(t: &str) -> Option<&'static str> {
    let norm: String = t
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    match norm.as_str() {
        "none" => Some("None"),
        "systemassigned" => Some("SystemAssigned"),
        "userassigned" => Some("UserAssigned"),
        "systemassigned,userassigned" | "userassigned,systemassigned" => Some("SystemAssigned,UserAssigned"),
        _ => None,
    }
}

fn apply_identity(obj: &mut Map<String, Value>, patch: &Value, tenant_id: &str) -> Result<(), ArmError> {
    let Value::Object(p) = patch else {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "'identity' must be an object.",
        ));
    };
    let p = canon_map(p, &["type", "userAssignedIdentities"]);
    let mut ident = obj
        .get("identity")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(t) = p.get("type") {
        let ty = t.as_str().and_then(identity_type_canonical).ok_or_else(|| {
            ArmError::bad_request(
                "InvalidIdentityType",
                format!("The identity type '{}' is not supported.", t.as_str().unwrap_or("?")),
            )
        })?;
        ident.insert("type".into(), json!(ty));
    }
    if let Some(Value::Object(uais)) = p.get("userAssignedIdentities") {
        let existing = obj_mut(&mut ident, "userAssignedIdentities");
        for (rid, v) in uais {
            let present = existing.keys().find(|k| k.eq_ignore_ascii_case(rid)).cloned();
            match (v, present) {
                (Value::Null, Some(k)) => {
                    existing.remove(&k);
                }
                (Value::Null, None) | (_, Some(_)) => {}
                (_, None) => {
                    existing.insert(
                        rid.clone(),
                        json!({
                            "principalId": uuid::Uuid::new_v4().to_string(),
                            "clientId": uuid::Uuid::new_v4().to_string(),
                        }),
                    );
                }
            }
        }
    }
    let ty = ident
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("None")
        .to_ascii_lowercase();
    if ty.contains("systemassigned") {
        if !ident.contains_key("principalId") {
            ident.insert("principalId".into(), json!(uuid::Uuid::new_v4().to_string()));
            ident.insert("tenantId".into(), json!(tenant_id));
        }
    } else {
        ident.remove("principalId");
        ident.remove("tenantId");
    }
    if !ty.contains("userassigned") {
        ident.remove("userAssignedIdentities");
    }
    obj.insert("identity".into(), Value::Object(ident));
    Ok(())
}

/// Accepts any casing; stores the spelling the storage RP returns on GET.
fn key_source_canonical(s: &str) -> Option<&'static str> {
    if s.eq_ignore_ascii_case("Microsoft.Storage") {
        Some("Microsoft.Storage")
    } else if s.eq_ignore_ascii_case("Microsoft.Keyvault") {
        Some("Microsoft.Keyvault")
    } else {
        None
    }
}

fn apply_encryption(enc: &mut Map<String, Value>, patch: &Value) -> Result<(), ArmError> {
    let Value::Object(p) = patch else {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "'encryption' must be an object.",
        ));
    };
    let mut p = canon_map(
        p,
        &[
            "keySource",
            "keyvaultproperties",
            "services",
            "identity",
            "requireInfrastructureEncryption",
        ],
    );
    if let Some(ks) = p.remove("keySource") {
        let canonical = ks.as_str().and_then(key_source_canonical).ok_or_else(|| {
            ArmError::bad_request(
                "InvalidValuesForRequestParameters",
                format!(
                    "Values for request parameters are invalid: keySource. The value '{}' is not valid; allowed values are 'Microsoft.Storage' and 'Microsoft.Keyvault'.",
                    match &ks {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }
                ),
            )
        })?;
        enc.insert("keySource".into(), json!(canonical));
    }
    if let Some(kvp) = p.remove("keyvaultproperties") {
        match kvp {
            Value::Null => {
                enc.remove("keyvaultproperties");
            }
            Value::Object(m) => {
                let mut m = canon_map(&m, &["keyvaulturi", "keyname", "keyversion"]);
                for ro in READ_ONLY_KEYVAULT {
                    m.retain(|k, _| !k.eq_ignore_ascii_case(ro));
                }
                enc.insert("keyvaultproperties".into(), Value::Object(m));
            }
            _ => {
                return Err(ArmError::bad_request(
                    "InvalidRequestContent",
                    "'keyvaultproperties' must be an object.",
                ));
            }
        }
    }
    if let Some(services) = p.remove("services") {
        let mut services = services;
        if let Value::Object(svcs) = &mut services {
            for v in svcs.values_mut() {
                if let Value::Object(s) = v {
                    s.retain(|k, _| !k.eq_ignore_ascii_case("lastEnabledTime"));
                }
            }
        }
        let mut cur = enc.remove("services").unwrap_or(json!({}));
        merge(&mut cur, &services);
        enc.insert("services".into(), cur);
    }
    if let Some(identity) = p.remove("identity") {
        match identity {
            Value::Null => {
                enc.remove("identity");
            }
            Value::Object(m) => {
                let m = canon_map(&m, &["userAssignedIdentity", "federatedIdentityClientId"]);
                let mut cur = enc.remove("identity").unwrap_or(json!({}));
                merge(&mut cur, &Value::Object(m));
                enc.insert("identity".into(), cur);
            }
            _ => {
                return Err(ArmError::bad_request(
                    "InvalidRequestContent",
                    "'encryption.identity' must be an object.",
                ));
            }
        }
    }
    let mut whole = Value::Object(std::mem::take(enc));
    merge(&mut whole, &Value::Object(p));
    if let Value::Object(m) = whole {
        *enc = m;
    }
    Ok(())
}

/// A deterministic stand-in for the key version Key Vault would report for a versionless key,
/// so repeated runs (and golden files) see the same identifier.
fn fake_key_version(vault: &str, key: &str) -> String {
    let input = format!(
        "{}/{}",
        vault.trim_end_matches('/').to_ascii_lowercase(),
        key.to_ascii_lowercase()
    );
    format!(
        "{:016x}{:016x}",
        crate::util::fnv1a(0, input.as_bytes()),
        crate::util::fnv1a(1, input.as_bytes())
    )
}

/// Enforces the CMK preconditions and fills the read-only key fields, after a write that
/// touched encryption or identity.
fn settle_encryption(obj: &mut Map<String, Value>) -> Result<(), ArmError> {
    let identity = obj.get("identity").cloned().unwrap_or(Value::Null);
    let Some(enc) = obj
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .and_then(|p| p.get_mut("encryption"))
        .and_then(Value::as_object_mut)
    else {
        return Ok(());
    };
    let key_source = enc
        .get("keySource")
        .and_then(Value::as_str)
        .unwrap_or("Microsoft.Storage")
        .to_owned();
    if key_source.eq_ignore_ascii_case("Microsoft.Storage") {
        enc.remove("keyvaultproperties");
        enc.remove("identity");
        return Ok(());
    }
    let kvp = enc
        .get("keyvaultproperties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let field = |k: &str| {
        kvp.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (Some(vault), Some(key)) = (field("keyvaulturi"), field("keyname")) else {
        return Err(ArmError::bad_request(
            "InvalidValuesForRequestParameters",
            "Values for request parameters are invalid: keyvaultproperties.keyvaulturi, keyvaultproperties.keyname. Both are required when keySource is 'Microsoft.Keyvault'.",
        ));
    };
    if !vault.to_ascii_lowercase().starts_with("https://") {
        return Err(ArmError::bad_request(
            "InvalidValuesForRequestParameters",
            format!(
                "Values for request parameters are invalid: keyvaultproperties.keyvaulturi '{vault}' is not an https URI."
            ),
        ));
    }
    let uai = enc
        .get("identity")
        .and_then(|i| i.get("userAssignedIdentity"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    match uai {
        Some(uai) => {
            let attached = identity
                .get("userAssignedIdentities")
                .and_then(Value::as_object)
                .is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case(&uai)));
            if !attached {
                return Err(ArmError::bad_request(
                    "InvalidValuesForRequestParameters",
                    format!(
                        "Values for request parameters are invalid: encryption.identity.userAssignedIdentity. The identity '{uai}' is not assigned to the storage account."
                    ),
                ));
            }
        }
        None => {
            let system = identity
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.to_ascii_lowercase().contains("systemassigned"));
            if !system {
                return Err(ArmError::bad_request(
                    "KeyVaultAuthenticationFailure",
                    "The operation failed because the storage account has no identity that can access the key vault. Enable a system-assigned identity or set encryption.identity.userAssignedIdentity to an identity assigned to the account.",
                ));
            }
        }
    }
    let version = field("keyversion").unwrap_or_else(|| fake_key_version(&vault, &key));
    let versioned = format!("{}/keys/{}/{}", vault.trim_end_matches('/'), key, version);
    let Some(kvp_mut) = enc.get_mut("keyvaultproperties").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let unchanged = kvp_mut.get("currentVersionedKeyIdentifier").and_then(Value::as_str) == Some(versioned.as_str());
    if !unchanged {
        kvp_mut.insert("currentVersionedKeyIdentifier".into(), json!(versioned));
        kvp_mut.insert("lastKeyRotationTimestamp".into(), json!(now_string()));
    }
    if !kvp_mut.contains_key("keyversion") {
        kvp_mut.insert("keyversion".into(), json!(""));
    }
    Ok(())
}

/// `Microsoft.Resources.ResourceWriteSuccess` as a subscription system topic publishes it.
pub(crate) fn write_event(
    resource_id: &str,
    claims: &Map<String, Value>,
    write: &WriteInfo,
    default_tenant: &str,
) -> Value {
    let uri = lower_resourcegroups(resource_id);
    let rid = ResourceId::parse(resource_id);
    let sub = rid.as_ref().map(|r| r.subscription.clone()).unwrap_or_default();
    let provider = rid
        .as_ref()
        .map(|r| r.namespace.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| STORAGE_NAMESPACE.to_owned());
    let operation = rid
        .as_ref()
        .map(|r| format!("{}/write", r.full_type()))
        .unwrap_or_else(|| WRITE_ACTION.to_owned());
    let claim = |k: &str| {
        claims.get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let tenant = claim("tid").unwrap_or_else(|| default_tenant.to_owned());
    let oid = claim("oid").unwrap_or_default();
    let mut c = Map::new();
    for k in ["aud", "iss", "iat", "nbf", "exp"] {
        if let Some(v) = claim(k) {
            c.insert(k.into(), json!(v));
        }
    }
    c.insert("appid".into(), json!(claim("appid").unwrap_or_default()));
    c.insert("appidacr".into(), json!("2"));
    c.insert(
        "http://schemas.microsoft.com/identity/claims/objectidentifier".into(),
        json!(oid),
    );
    c.insert(
        "http://schemas.microsoft.com/identity/claims/tenantid".into(),
        json!(tenant),
    );
    c.insert(
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier".into(),
        json!(claim("sub").unwrap_or_else(|| oid.clone())),
    );
    c.insert("name".into(), json!(claim("name").unwrap_or_default()));
    c.insert("ipaddr".into(), json!("127.0.0.1"));
    if let Some(upn) = claim("upn") {
        c.insert("upn".into(), json!(upn));
        c.insert(
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn".into(),
            json!(upn),
        );
    }
    c.insert("ver".into(), json!("1.0"));
    let principal_type = if claim("idtyp").as_deref() == Some("user") || claims.contains_key("upn") {
        "User"
    } else {
        "ServicePrincipal"
    };
    json!({
        "subject": uri,
        "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "eventTime": now_string(),
        "id": uuid::Uuid::new_v4().to_string(),
        "data": {
            "authorization": {
                "scope": uri,
                "action": operation,
                "evidence": {
                    "role": "Contributor",
                    "principalId": oid,
                    "principalType": principal_type,
                    "roleAssignmentScope": format!("/subscriptions/{sub}"),
                }
            },
            "claims": c,
            "correlationId": write.correlation_id,
            "httpRequest": {
                "clientRequestId": write.client_request_id,
                "clientIpAddress": "127.0.0.1",
                "method": write.method,
                "url": write.url,
            },
            "resourceProvider": provider,
            "resourceUri": uri,
            "operationName": operation,
            "status": "Succeeded",
            "subscriptionId": sub,
            "tenantId": tenant,
        },
        "dataVersion": "2",
        "metadataVersion": "1",
        "topic": format!("/subscriptions/{sub}"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_semantics() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(&mut t, &json!({"a": null, "b": {"c": 5}, "e": {"f": 1}}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "e": {"f": 1}}));
    }

    #[test]
    fn key_version_is_stable() {
        let a = fake_key_version("https://kv.vault.azure.net", "k");
        assert_eq!(a, fake_key_version("https://KV.vault.azure.net", "K"));
        assert_eq!(a.len(), 32);
    }
}
