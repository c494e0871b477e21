//! ARM for every type in [`crate::catalog_sim`]: GET returns the stored document, PATCH merges
//! (objects deep-merged, `null` removes), PUT upserts (SQL children) or merges into an existing
//! resource (creates it, synchronously with `201`, when absent), with the write rules the real
//! services enforce:
//!
//! * key-source switches Table B says the service refuses: 400 `CannotDisableCustomerManagedKey`
//!   (one-way) or 400 `InvalidEncryptionChange` (creation-only), document unchanged;
//! * a managed disk's `encryption` change while `properties.diskState == "Attached"` and the VM
//!   named by `managedBy` is running — its stored document has
//!   `properties.instanceView.statuses[].code == "PowerState/running"` or
//!   `properties.extended.instanceView.powerState.code == "PowerState/running"` — is refused
//!   with 409 `OperationNotAllowed`;
//! * SQL `encryptionProtector/current` with `serverKeyType: AzureKeyVault` needs
//!   `keys/{serverKeyName}` on the same server (400 `ServerKeyNotFound`); a server key's `uri`
//!   is checked against the Key Vault stand-in (400 `AzureKeyVaultKeyNotFound`,
//!   `AzureKeyVaultKeyDisabled`, `AzureKeyVaultKeyExpired`,
//!   `SecurityInvalidAzureKeyVaultRecoveryLevel`; permissive for vaults nobody seeded);
//! * GET of a server's `encryptionProtector/current` or a database's
//!   `transparentDataEncryption/current` that was never written answers the service default
//!   (`ServiceManaged`; TDE `Enabled`).
//!
//! A stored document whose `type` contradicts its id (e.g. a storage account body seeded under a
//! `Microsoft.Sql/servers` id) is not served: 400 `InvalidResourceType`.

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::arm::{ArmError, Reply, WriteInfo, merge, write_event};
use crate::catalog_sim::{self, Child, SimType, Switch, at};
use crate::util::{ResourceId, lock, now_string};
use crate::{Sim, Store};

/// One request on a catalog type.
pub(crate) struct Call<'a> {
    pub sim: &'a Sim,
    pub method: &'a Method,
    pub rid: ResourceId,
    pub api_version: String,
    pub claims: &'a Map<String, Value>,
    pub body: &'a [u8],
    pub write: WriteInfo,
    /// `http://host:port` of this request, for absolute polling URLs.
    pub base_url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteKind {
    Patch,
    Put,
}

/// A validated write, applied now (synchronous types, `act`) or when its operation finishes.
#[derive(Clone, Debug)]
pub(crate) struct PendingWrite {
    pub rid: ResourceId,
    pub kind: WriteKind,
    pub body: Map<String, Value>,
}

/// The id as the caller spelled it.
pub(crate) fn id_string(rid: &ResourceId) -> String {
    let mut s = format!(
        "/subscriptions/{}/resourceGroups/{}",
        rid.subscription, rid.resource_group
    );
    if !rid.is_resource_group() {
        s.push_str("/providers/");
        s.push_str(&rid.namespace);
        for (t, n) in rid.types.iter().zip(&rid.names) {
            s.push('/');
            s.push_str(t);
            s.push('/');
            s.push_str(n);
        }
    }
    s
}

fn parent(rid: &ResourceId) -> Option<ResourceId> {
    if rid.types.len() < 2 {
        return None;
    }
    let mut p = rid.clone();
    p.types.pop();
    p.names.pop();
    Some(p)
}

fn child_of(rid: &ResourceId, ty: &str, name: &str) -> ResourceId {
    let mut c = rid.clone();
    c.types.push(ty.to_owned());
    c.names.push(name.to_owned());
    c
}

pub(crate) fn invalid_type(rid: &ResourceId, api_version: &str) -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "InvalidResourceType",
        format!(
            "The resource type '{}' could not be found in the namespace '{}' for api version '{api_version}'.",
            rid.types.join("/"),
            rid.namespace
        ),
    )
}

fn not_found(rid: &ResourceId) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{}/{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            rid.full_type(),
            rid.name(),
            rid.resource_group
        ),
    )
}

fn bad(code: &str, message: impl Into<String>) -> ArmError {
    ArmError::new(StatusCode::BAD_REQUEST, code, message)
}

fn type_mismatch(doc: &Value, rid: &ResourceId) -> bool {
    doc.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.eq_ignore_ascii_case(&rid.full_type()))
}

pub(crate) fn check_group(store: &Store, rid: &ResourceId) -> Result<(), ArmError> {
    if store.groups.contains(&rid.group_key()) {
        Ok(())
    } else {
        Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            format!("Resource group '{}' could not be found.", rid.resource_group),
        ))
    }
}

/// The stored parent of a nested resource, or 404 `ParentResourceNotFound`.
fn parent_doc(store: &Store, rid: &ResourceId) -> Result<Option<Value>, ArmError> {
    let Some(p) = parent(rid) else {
        return Ok(None);
    };
    match store.resources.get(&p.key()) {
        Some(doc) => Ok(Some(doc.clone())),
        None => Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "ParentResourceNotFound",
            format!(
                "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                p.names.join("/")
            ),
        )),
    }
}

fn location_of(doc: Option<&Value>) -> Option<Value> {
    doc.and_then(|d| d.get("location")).cloned()
}

/// What the service shows for a child nobody wrote yet.
fn default_child(ty: &SimType, rid: &ResourceId, parent: Option<&Value>) -> Option<Value> {
    if !rid.name().eq_ignore_ascii_case("current") {
        return None;
    }
    let mut doc = match ty.child {
        Child::Protector => json!({
            "id": id_string(rid),
            "name": "current",
            "type": ty.full_type,
            "kind": "servicemanaged",
            "properties": {
                "serverKeyName": "ServiceManaged",
                "serverKeyType": "ServiceManaged",
                "autoRotationEnabled": false,
            }
        }),
        Child::Tde => json!({
            "id": id_string(rid),
            "name": "current",
            "type": ty.full_type,
            "properties": {"state": "Enabled"}
        }),
        Child::No | Child::ServerKey => return None,
    };
    if ty.child == Child::Protector
        && let Some(loc) = location_of(parent)
    {
        doc["location"] = loc;
    }
    Some(doc)
}

fn read(store: &Store, ty: &SimType, rid: &ResourceId, api_version: &str) -> Result<Value, ArmError> {
    check_group(store, rid)?;
    if let Some(doc) = store.resources.get(&rid.key()) {
        if type_mismatch(doc, rid) {
            return Err(invalid_type(rid, api_version));
        }
        return Ok(doc.clone());
    }
    let parent = parent_doc(store, rid)?;
    default_child(ty, rid, parent.as_ref()).ok_or_else(|| not_found(rid))
}

/// Serves one ARM request on a catalog type.
pub(crate) fn handle(call: Call<'_>) -> Result<Reply, ArmError> {
    let rid = &call.rid;
    let Some(ty) = catalog_sim::lookup(&rid.full_type()) else {
        return Err(invalid_type(rid, &call.api_version));
    };
    if !ty.accepts(&call.api_version) {
        return Err(bad(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{}' is invalid. The supported versions for '{}' are '{}'.",
                call.api_version,
                ty.full_type,
                ty.api_versions.join(",")
            ),
        ));
    }
    let kind = match *call.method {
        Method::GET => {
            if let Some(updating) = crate::lro::provisioning_view(call.sim, &rid.key()) {
                return Ok(Reply::ok(updating));
            }
            let store = lock(&call.sim.store);
            return read(&store, ty, rid, &call.api_version).map(Reply::ok);
        }
        Method::PATCH if ty.child == Child::No => WriteKind::Patch,
        Method::PUT => WriteKind::Put,
        _ => {
            return Err(ArmError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!(
                    "The simulator supports {} on '{}', not {}.",
                    if ty.child == Child::No {
                        "GET, PATCH and PUT"
                    } else {
                        "GET and PUT"
                    },
                    ty.full_type,
                    call.method
                ),
            ));
        }
    };
    let body: Value = serde_json::from_slice(call.body).map_err(|e| {
        bad(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })?;
    // ARM checks the body against the operation's schema before the service sees it.
    crate::schemas::check(ty.full_type, call.method.as_str(), &call.api_version, &body)
        .map_err(|message| bad("InvalidRequestContent", message))?;
    let Value::Object(body) = body else {
        return Err(bad(
            "InvalidRequestContent",
            "The request content must be a JSON object.",
        ));
    };
    let pending = PendingWrite {
        rid: rid.clone(),
        kind,
        body,
    };
    if ty.lro == catalog_sim::Lro::Sync {
        let (doc, created) = commit(call.sim, &pending, call.claims, &call.write)?;
        return Ok(if created { Reply::created(doc) } else { Reply::ok(doc) });
    }
    // Validate now (a refused write never becomes an operation), apply when it finishes.
    let (doc, created) = {
        let store = lock(&call.sim.store);
        compute(call.sim, &store, ty, &pending)?
    };
    if created {
        // Creation is not what the stand-in is for: it completes synchronously.
        let (doc, _) = commit(call.sim, &pending, call.claims, &call.write)?;
        return Ok(Reply::created(doc));
    }
    let location = doc
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(crate::lro::start(
        call.sim,
        ty,
        pending,
        call.claims.clone(),
        call.write,
        &call.base_url,
        &call.api_version,
        &location,
    ))
}

/// Validates and applies a write, stores the document and emits the write event. Returns the
/// new document and whether it was created.
pub(crate) fn commit(
    sim: &Sim,
    pending: &PendingWrite,
    claims: &Map<String, Value>,
    write: &WriteInfo,
) -> Result<(Value, bool), ArmError> {
    let ty = catalog_sim::lookup(&pending.rid.full_type()).ok_or_else(|| invalid_type(&pending.rid, "?"))?;
    let (doc, created) = {
        let mut store = lock(&sim.store);
        let (doc, created) = compute(sim, &store, ty, pending)?;
        store.resources.insert(pending.rid.key(), doc.clone());
        (doc, created)
    };
    let id = doc
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| id_string(&pending.rid));
    sim.bus
        .enqueue(write_event(&id, claims, write, &sim.settings.tenant_id));
    Ok((doc, created))
}

/// The document a write produces, without storing it.
fn compute(sim: &Sim, store: &Store, ty: &SimType, w: &PendingWrite) -> Result<(Value, bool), ArmError> {
    let rid = &w.rid;
    check_group(store, rid)?;
    let existing = store.resources.get(&rid.key()).cloned();
    if let Some(doc) = &existing
        && type_mismatch(doc, rid)
    {
        return Err(invalid_type(rid, "?"));
    }
    // Plain nested resources that exist are served without their parent (seeds may omit it).
    let parent = if ty.child == Child::No && existing.is_some() {
        None
    } else {
        parent_doc(store, rid)?
    };
    match ty.child {
        Child::Protector => protector(store, ty, rid, existing, parent.as_ref(), &w.body),
        Child::ServerKey => server_key(sim, ty, rid, existing, parent.as_ref(), &w.body),
        Child::Tde => tde(ty, rid, existing, &w.body),
        Child::No => merge_write(store, ty, rid, existing, w),
    }
}

fn strip_identity_fields(body: &Map<String, Value>) -> Map<String, Value> {
    let mut b = body.clone();
    b.retain(|k, _| !["id", "name", "type"].iter().any(|r| r.eq_ignore_ascii_case(k)));
    if let Some(Value::Object(p)) = b.get_mut("properties") {
        p.retain(|k, _| !k.eq_ignore_ascii_case("provisioningState"));
    }
    b
}

fn merge_write(
    store: &Store,
    ty: &SimType,
    rid: &ResourceId,
    existing: Option<Value>,
    w: &PendingWrite,
) -> Result<(Value, bool), ArmError> {
    let Some(current) = existing else {
        if w.kind == WriteKind::Patch {
            return Err(not_found(rid));
        }
        let mut doc = Value::Object(strip_identity_fields(&w.body));
        doc["id"] = json!(id_string(rid));
        doc["name"] = json!(rid.name());
        doc["type"] = json!(ty.full_type);
        return Ok((doc, true));
    };
    let patch = Value::Object(strip_identity_fields(&w.body));
    let mut doc = current.clone();
    merge(&mut doc, &patch);
    if let Some(path) = ty.empty_clears
        && at(&patch, path).is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
        && let Some((last, parents)) = path.split_last()
        && let Some(Value::Object(parent)) = at_mut(&mut doc, parents)
    {
        parent.insert((*last).to_string(), Value::Object(Map::new()));
    }
    check_switch(ty, rid, &current, &doc)?;
    if ty.full_type.eq_ignore_ascii_case("Microsoft.Compute/disks") {
        check_disk(store, rid, &current, &doc)?;
    }
    Ok((doc, false))
}

fn check_switch(ty: &SimType, rid: &ResourceId, before: &Value, after: &Value) -> Result<(), ArmError> {
    let (was, is) = (ty.is_cmk(before), ty.is_cmk(after));
    let (rule, to_cmk) = match (was, is) {
        (false, true) => (ty.to_cmk, true),
        (true, false) => (ty.to_mmk, false),
        _ => return Ok(()),
    };
    let what = format!("{} '{}'", ty.full_type, rid.name());
    match rule {
        Switch::Allowed => Ok(()),
        Switch::OneWay => Err(bad(
            "CannotDisableCustomerManagedKey",
            format!(
                "Customer-managed key encryption cannot be disabled on {what}: once enabled it cannot be reverted to service-managed keys."
            ),
        )),
        Switch::CreationOnly => Err(bad(
            "InvalidEncryptionChange",
            format!(
                "The encryption key type of {what} can only be chosen when the resource is created; changing an existing resource to {} is not supported.",
                if to_cmk {
                    "customer-managed keys"
                } else {
                    "service-managed keys"
                }
            ),
        )),
    }
}

/// Case-insensitive object walk for writing (stored documents keep the writer's spelling).
fn at_mut<'a>(doc: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |cur, seg| {
        let obj = cur.as_object_mut()?;
        let key = obj.keys().find(|k| k.eq_ignore_ascii_case(seg))?.clone();
        obj.get_mut(&key)
    })
}

fn vm_running(vm: &Value) -> bool {
    let running = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|c| c.eq_ignore_ascii_case("PowerState/running"))
    };
    let statuses = at(vm, &["properties", "instanceView", "statuses"])
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|s| running(s.get("code"))));
    statuses
        || running(at(
            vm,
            &["properties", "extended", "instanceView", "powerState", "code"],
        ))
}

fn check_disk(store: &Store, rid: &ResourceId, before: &Value, after: &Value) -> Result<(), ArmError> {
    let enc = |d: &Value| {
        (
            at(d, &["properties", "encryption"]).cloned(),
            at(d, &["properties", "securityProfile", "secureVMDiskEncryptionSetId"]).cloned(),
        )
    };
    if enc(before) == enc(after) {
        return Ok(());
    }
    let attached = at(before, &["properties", "diskState"])
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("Attached"));
    let Some(vm_id) = before.get("managedBy").and_then(Value::as_str) else {
        return Ok(());
    };
    let running = ResourceId::parse(vm_id)
        .and_then(|vm| store.resources.get(&vm.key()))
        .is_some_and(vm_running);
    if attached && running {
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "OperationNotAllowed",
            format!(
                "Changing the encryption of disk '{}' is not allowed while it is attached to running VM '{vm_id}'. Stop (deallocate) the VM or detach the disk and retry.",
                rid.name()
            ),
        ));
    }
    Ok(())
}

fn properties_of(body: &Map<String, Value>) -> Result<Map<String, Value>, ArmError> {
    match body
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("properties"))
        .map(|(_, v)| v)
    {
        Some(Value::Object(p)) => Ok(p.clone()),
        _ => Err(bad(
            "InvalidRequestContent",
            "The request content must have a 'properties' object.",
        )),
    }
}

/// Reads a property case-insensitively and removes every spelling of it.
fn take(props: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let keys: Vec<String> = props.keys().filter(|k| k.eq_ignore_ascii_case(name)).cloned().collect();
    let mut out = None;
    for k in keys {
        out = props.remove(&k).or(out);
    }
    out
}

fn canonical_of(v: Option<&Value>, allowed: &[&'static str]) -> Option<&'static str> {
    let s = v?.as_str()?;
    allowed.iter().find(|a| a.eq_ignore_ascii_case(s.trim())).copied()
}

fn merged_props(existing: Option<&Value>, incoming: Map<String, Value>) -> Map<String, Value> {
    let mut props = existing
        .and_then(|d| d.get("properties"))
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    merge(&mut props, &Value::Object(incoming));
    match props {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn protector(
    store: &Store,
    ty: &SimType,
    rid: &ResourceId,
    existing: Option<Value>,
    parent: Option<&Value>,
    body: &Map<String, Value>,
) -> Result<(Value, bool), ArmError> {
    if !rid.name().eq_ignore_ascii_case("current") {
        return Err(bad(
            "InvalidParameterValue",
            "The encryption protector name must be 'current'.",
        ));
    }
    let mut incoming = properties_of(body)?;
    for ro in ["uri", "thumbprint", "subregion", "keyVersion"] {
        take(&mut incoming, ro);
    }
    let server_key_type = take(&mut incoming, "serverKeyType");
    let server_key_name = take(&mut incoming, "serverKeyName");
    let base = existing.clone().or_else(|| default_child(ty, rid, parent));
    let mut props = merged_props(base.as_ref(), incoming);
    let kt_value = server_key_type.or_else(|| props.get("serverKeyType").cloned());
    let kt = canonical_of(kt_value.as_ref(), &["ServiceManaged", "AzureKeyVault"]).ok_or_else(|| {
        bad(
            "InvalidParameterValue",
            "serverKeyType must be 'ServiceManaged' or 'AzureKeyVault'.",
        )
    })?;
    props.insert("serverKeyType".into(), json!(kt));
    let kind = if kt == "ServiceManaged" {
        props.insert("serverKeyName".into(), json!("ServiceManaged"));
        for k in ["uri", "thumbprint", "keyVersion"] {
            props.remove(k);
        }
        "servicemanaged"
    } else {
        let name = server_key_name
            .as_ref()
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                bad(
                    "InvalidParameterValue",
                    "serverKeyName is required when serverKeyType is 'AzureKeyVault'.",
                )
            })?
            .to_owned();
        let Some(server) = self::parent(rid) else {
            return Err(invalid_type(rid, "?"));
        };
        let key_rid = child_of(&server, "keys", &name);
        let key_doc = store.resources.get(&key_rid.key()).ok_or_else(|| {
            bad(
                "ServerKeyNotFound",
                format!(
                    "The server key '{name}' does not exist on '{}'. Create it first with PUT {}.",
                    server.name(),
                    id_string(&key_rid)
                ),
            )
        })?;
        props.insert("serverKeyName".into(), json!(name));
        let uri = at(key_doc, &["properties", "uri"]).cloned();
        if let Some(uri) = uri {
            if let Some((_, _, Some(version))) = uri.as_str().and_then(crate::keyvault::parse_key_uri) {
                props.insert("keyVersion".into(), json!(version));
            }
            props.insert("uri".into(), uri);
        }
        if let Some(tp) = at(key_doc, &["properties", "thumbprint"]) {
            props.insert("thumbprint".into(), tp.clone());
        }
        "azurekeyvault"
    };
    let mut doc = base.unwrap_or_else(|| json!({}));
    doc["id"] = json!(id_string(rid));
    doc["name"] = json!("current");
    doc["type"] = json!(ty.full_type);
    doc["kind"] = json!(kind);
    if doc.get("location").is_none()
        && let Some(loc) = location_of(parent)
    {
        doc["location"] = loc;
    }
    doc["properties"] = Value::Object(props);
    // The protector always exists (service-managed by default): a PUT updates it.
    Ok((doc, false))
}

fn thumbprint(uri: &str) -> String {
    let l = uri.to_ascii_lowercase();
    let a = crate::util::fnv1a(7, l.as_bytes());
    let b = crate::util::fnv1a(8, l.as_bytes());
    let c = crate::util::fnv1a(9, l.as_bytes());
    format!("{a:016X}{b:016X}{:08X}", c >> 32)
}

fn server_key(
    sim: &Sim,
    ty: &SimType,
    rid: &ResourceId,
    existing: Option<Value>,
    parent: Option<&Value>,
    body: &Map<String, Value>,
) -> Result<(Value, bool), ArmError> {
    let mut incoming = properties_of(body)?;
    for ro in ["thumbprint", "creationDate", "subregion"] {
        take(&mut incoming, ro);
    }
    let kt_value = take(&mut incoming, "serverKeyType");
    let kt = canonical_of(kt_value.as_ref(), &["ServiceManaged", "AzureKeyVault"]).ok_or_else(|| {
        bad(
            "InvalidParameterValue",
            "serverKeyType must be 'ServiceManaged' or 'AzureKeyVault'.",
        )
    })?;
    let uri = take(&mut incoming, "uri");
    let mut props = merged_props(existing.as_ref(), incoming);
    props.insert("serverKeyType".into(), json!(kt));
    let kind = if kt == "AzureKeyVault" {
        let uri = uri
            .as_ref()
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                bad(
                    "InvalidParameterValue",
                    "uri is required when serverKeyType is 'AzureKeyVault'.",
                )
            })?
            .to_owned();
        let (host, key, version) = crate::keyvault::parse_key_uri(&uri).ok_or_else(|| {
            bad(
                "InvalidParameterValue",
                format!("'{uri}' is not an Azure Key Vault key URI (https://{{vault}}/keys/{{name}}[/{{version}}])."),
            )
        })?;
        let info = lock(&sim.keys).lookup(&host, &key, version.as_deref()).ok_or_else(|| {
            bad(
                "AzureKeyVaultKeyNotFound",
                format!("The key '{uri}' was not found in Azure Key Vault."),
            )
        })?;
        if !info.enabled {
            return Err(bad(
                "AzureKeyVaultKeyDisabled",
                format!("The key '{uri}' is disabled in Azure Key Vault."),
            ));
        }
        if !info.usable_now() {
            return Err(bad(
                "AzureKeyVaultKeyExpired",
                format!("The key '{uri}' is expired or not yet valid."),
            ));
        }
        if !info.purge_protected() {
            return Err(bad(
                "SecurityInvalidAzureKeyVaultRecoveryLevel",
                format!(
                    "The provided key vault uri '{uri}' is not valid: the vault must have soft delete and purge protection enabled (recovery level '{}').",
                    info.recovery_level
                ),
            ));
        }
        props.insert("thumbprint".into(), json!(thumbprint(&uri)));
        props.insert("uri".into(), json!(uri));
        "azurekeyvault"
    } else {
        props.remove("uri");
        "servicemanaged"
    };
    props.entry("creationDate").or_insert_with(|| json!(now_string()));
    let mut doc = existing.clone().unwrap_or_else(|| json!({}));
    doc["id"] = json!(id_string(rid));
    doc["name"] = json!(rid.name());
    doc["type"] = json!(ty.full_type);
    doc["kind"] = json!(kind);
    if doc.get("location").is_none()
        && let Some(loc) = location_of(parent)
    {
        doc["location"] = loc;
    }
    doc["properties"] = Value::Object(props);
    Ok((doc, existing.is_none()))
}

fn tde(
    ty: &SimType,
    rid: &ResourceId,
    existing: Option<Value>,
    body: &Map<String, Value>,
) -> Result<(Value, bool), ArmError> {
    if !rid.name().eq_ignore_ascii_case("current") {
        return Err(bad(
            "InvalidParameterValue",
            "The transparent data encryption name must be 'current'.",
        ));
    }
    let mut incoming = properties_of(body)?;
    take(&mut incoming, "scanState");
    let state = take(&mut incoming, "state");
    let base = existing.clone().or_else(|| default_child(ty, rid, None));
    let mut props = merged_props(base.as_ref(), incoming);
    let state_value = state.or_else(|| props.get("state").cloned());
    let state = canonical_of(state_value.as_ref(), &["Enabled", "Disabled"])
        .ok_or_else(|| bad("InvalidParameterValue", "state must be 'Enabled' or 'Disabled'."))?;
    props.insert("state".into(), json!(state));
    let mut doc = base.unwrap_or_else(|| json!({}));
    doc["id"] = json!(id_string(rid));
    doc["name"] = json!("current");
    doc["type"] = json!(ty.full_type);
    doc["properties"] = Value::Object(props);
    // TDE always exists on a database (enabled by default): a PUT updates it.
    Ok((doc, false))
}
