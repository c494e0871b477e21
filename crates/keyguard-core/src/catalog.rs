//! The resource catalog: per resource type, where the key source lives, how each service spells
//! "Microsoft-managed" and "customer-managed", whether a switch is possible on an existing
//! resource, and how to write it.
//!
//! The catalog is data, not code: `observe`, `revert_writes` and `has_identity_for` are driven by
//! the paths and spellings in a [`CatalogEntry`] (see `catalog/entries.rs` for the 30 rows and
//! which research-table rows each one covers). Facts come from `research/arm-encryption-catalog.md`
//! and Microsoft's spec examples in `fixtures/arm`; where they disagree the example wins. We write
//! the service's own spelling, while reading compares case-insensitively because services echo
//! values in varying case.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::keyref::{KeyRef, KeyRefError, SetUsage};
use crate::resource_id::ResourceId;

mod binding;
mod entries;
mod writes;

pub use binding::{GeoBackupPaths, IdentityPath};

/// Whether a key-source switch in one direction can be made on an existing resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Possible on an existing resource, and the opposite switch is possible too: safe to automate.
    Reversible,
    /// Like `Reversible`, but only while the stated condition holds (a disk must not be attached
    /// to a running VM). Automated only when the caller has checked the condition.
    ReversibleIf(&'static str),
    /// Possible both ways, but the switch itself disrupts the service (Redis Enterprise runs a
    /// long maintenance operation): automated only when the profile opts in with
    /// `allow_irreversible = true`.
    Disruptive(&'static str),
    /// Possible, but cannot be undone afterwards (Cosmos DB, Event Hubs to CMK), or the way back
    /// is not established (Batch to MMK): a wrong automatic write could be permanent, so it is
    /// automated only when the profile opts in with `allow_irreversible = true`.
    OneWay,
    /// Only when the resource is created (or not verified to work on an existing one): an
    /// existing resource cannot be switched, so a write could only fail or surprise. Never
    /// automated, whatever the profile says.
    CreationOnly,
}

/// Why a direction may or may not be written automatically, for plans and audit records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RevertPermission {
    /// Reversible, or conditionally reversible with the condition checked.
    Allowed,
    /// One-way or disruptive, and the profile opted in with `allow_irreversible = true`.
    AllowedByOptIn,
    /// One-way or disruptive, and the profile did not opt in.
    NeedsOptIn,
    /// Conditionally reversible, and the condition was not confirmed.
    PreconditionUnconfirmed,
    /// Creation-only: no write can succeed on an existing resource.
    Impossible,
}

impl RevertPermission {
    pub fn allows_write(self) -> bool {
        matches!(self, RevertPermission::Allowed | RevertPermission::AllowedByOptIn)
    }
}

impl Direction {
    /// Only a switch we could undo is ours to make without asking; a conditional one needs the
    /// caller to have checked the condition, which this answer cannot know.
    pub fn allows_automatic_revert(self) -> bool {
        matches!(self, Direction::Reversible)
    }

    /// Whether a revert may be planned, given what the caller knows about the precondition
    /// (`None`: not checked, which never counts as holding), without any profile opt-in.
    pub fn allows_revert_when(self, precondition_holds: Option<bool>) -> bool {
        self.permission(precondition_holds, false).allows_write()
    }

    /// The full decision: the precondition as checked by the caller, and whether the profile
    /// accepts irreversible or disruptive switches (`allow_irreversible`).
    pub fn permission(self, precondition_holds: Option<bool>, allow_irreversible: bool) -> RevertPermission {
        match self {
            Direction::Reversible => RevertPermission::Allowed,
            Direction::ReversibleIf(_) if precondition_holds == Some(true) => RevertPermission::Allowed,
            Direction::ReversibleIf(_) => RevertPermission::PreconditionUnconfirmed,
            Direction::Disruptive(_) | Direction::OneWay if allow_irreversible => RevertPermission::AllowedByOptIn,
            Direction::Disruptive(_) | Direction::OneWay => RevertPermission::NeedsOptIn,
            Direction::CreationOnly => RevertPermission::Impossible,
        }
    }

    /// The condition a human must check, for alerts.
    pub fn precondition(self) -> Option<&'static str> {
        match self {
            Direction::ReversibleIf(p) => Some(p),
            _ => None,
        }
    }

    /// Short label for tables and alerts.
    pub fn label(self) -> String {
        match self {
            Direction::Reversible => "reversible".to_string(),
            Direction::ReversibleIf(p) => format!("reversible if {p}"),
            Direction::Disruptive(why) => format!("reversible, disruptive ({why}): opt-in"),
            Direction::OneWay => "one-way".to_string(),
            Direction::CreationOnly => "creation-only".to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reversibility {
    pub to_cmk: Direction,
    pub to_mmk: Direction,
}

/// How a revert write is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WriteMethod {
    /// `PATCH {id}?api-version=...` with a minimal body: only the encryption fields, never a full
    /// document, so a revert cannot clobber unrelated settings changed in the meantime.
    Patch,
    /// `PUT {id}/{child}`: services whose key setting is a child resource (SQL encryption
    /// protector, TDE) have no PATCH for it.
    Put,
}

/// What an absent key-source field means, which differs per service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WhenAbsent {
    /// The service always reports the field; its absence means we read the wrong thing.
    Unknown,
    /// The service omits the block for Microsoft-managed keys (Event Hubs, Databricks).
    Mmk,
    /// The field may be omitted, but a readable key reference proves CMK (the disk-with-DES spec
    /// example does not echo `encryption.type`; the built-in policy tests `diskEncryptionSetId`).
    CmkIfKeyRef,
}

/// How the key source is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum KeySourceKind {
    /// A string field names the key holder. The first spelling of each list is the one we write.
    Value {
        mmk: &'static [&'static str],
        cmk: &'static [&'static str],
        absent: WhenAbsent,
    },
    /// CMK exactly when the field is present and not empty (`null`, `""`, `{}` and `[]` are
    /// Microsoft-managed: App Configuration echoes explicit nulls, Redis Enterprise uses `{}`).
    Presence,
    /// An on/off switch of service-side encryption (TDE): `on` says "encrypted" without saying by
    /// whose key, `off` says "not encrypted at rest" (a CIS level-1 failure).
    Switch {
        on: &'static [&'static str],
        off: &'static [&'static str],
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySource {
    /// Relative path of the child resource holding the field (`encryptionProtector/current`);
    /// `None`: the resource body itself.
    pub child: Option<&'static str>,
    pub path: &'static [&'static str],
    pub kind: KeySourceKind,
}

/// Where the CMK key reference lives, in the service's own field spelling. Paths are relative
/// to the same document as the key source (the resource, or its child).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "layout", rename_all = "camelCase")]
pub enum KeyRefLayout {
    /// Separate vault / name / version fields in one object (the first element if the service
    /// keeps an array, as Event Hubs does).
    Fields {
        container_path: &'static [&'static str],
        vault_uri_field: &'static str,
        key_name_field: &'static str,
        key_version_field: &'static str,
        /// Where the key names the user-assigned identity the service uses to reach the
        /// vault; absent means the resource's own (system-assigned) identity.
        user_assigned_identity_path: Option<IdentityPath>,
    },
    /// One key identifier, `https://{vault}/keys/{name}[/{version}]`.
    KeyUri {
        path: &'static [&'static str],
        user_assigned_identity_path: Option<IdentityPath>,
        /// Where the service keeps the key of its geo-redundant backups, if it keeps one.
        geo_backup: Option<GeoBackupPaths>,
    },
    /// A disk encryption set resource id (the DES holds the vault key); the first path present wins.
    EncryptionSet { paths: &'static [&'static [&'static str]] },
    /// SQL server keys: `properties.uri`, else `serverKeyName` = `{vault}_{key}_{version}`.
    SqlServerKey,
    /// The key is not configured through ARM (Search: per index, in the data plane), or the type
    /// only has an on/off switch here.
    None,
}

/// A child resource whose body the caller must GET (with this api-version) and pass in the
/// [`ResourceView`], because the state lives there rather than on the resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildRead {
    /// Relative to the resource id, in ARM's spelling; the view's key is its lower-case form.
    pub path: &'static str,
    pub api_version: &'static str,
}

/// The write recipe for a revert; the spelling comes from the entry's key source and layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WriteShape {
    /// PATCH the resource with the key source (and, to CMK, the key reference) only.
    KeySourcePatch,
    /// SQL server / managed instance: PUT `keys/{vault}_{key}_{version}` (prerequisite), then PUT
    /// `encryptionProtector/current`.
    SqlProtector,
    /// SQL database: PUT `transparentDataEncryption/current` `{state: Enabled}`.
    TdeState,
    /// Managed disk: PATCH `encryption.{type, diskEncryptionSetId}`.
    DiskEncryption,
    /// No automatic write exists (every direction is one-way or creation-only).
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry {
    pub resource_type: &'static str,
    /// Rows of Table A in `research/arm-encryption-catalog.md` this entry covers.
    pub table_rows: &'static str,
    /// Pinned api-version for GET and writes (conservative: the spec examples' version where one
    /// exists, not the newest tag).
    pub api_version: &'static str,
    /// Event Grid `data.operationName` values (RBAC actions) that can change the key source,
    /// including writes to child resources that hold it.
    pub write_operations: &'static [&'static str],
    /// Child resource type segments (lower-case) whose events mean "evaluate the parent".
    pub watched_children: &'static [&'static str],
    pub key_source: KeySource,
    pub key_ref: KeyRefLayout,
    /// Dotted paths of the identity fields the service uses to reach the key, for humans.
    pub identity_fields: &'static [&'static str],
    pub children: &'static [ChildRead],
    /// Resource names whose state is never drift (`master`: its TDE is not the customer's to set).
    pub never_drift_names: &'static [&'static str],
    pub reversibility: Reversibility,
    /// The pages that state the reversibility (Microsoft Learn, current at the time of the
    /// check); empty for rows still resting on the research tables cited in `entries.rs`.
    pub sources: &'static [&'static str],
    pub write_method: WriteMethod,
    pub write_shape: WriteShape,
    /// Whether the write is a long-running operation that must be polled before re-reading.
    pub long_running: bool,
    /// What "compliant" means at CIS level 1 (encrypted at rest) and level 2 (customer-managed key).
    pub cis_level1: &'static str,
    pub cis_level2: &'static str,
    /// Prerequisites and caveats a human should read in an alert.
    pub notes: &'static str,
}

/// Every supported resource type.
pub fn entries() -> &'static [CatalogEntry] {
    entries::ENTRIES
}

/// Case-insensitive: ids and `type` fields arrive in varying case.
pub fn lookup(resource_type: &str) -> Option<&'static CatalogEntry> {
    let wanted = resource_type.trim();
    entries().iter().find(|e| e.resource_type.eq_ignore_ascii_case(wanted))
}

/// The entry whose write operations include `operation_name` (case-insensitive), so the
/// pipeline can drop irrelevant events before any ARM call.
pub fn lookup_operation(operation_name: &str) -> Option<&'static CatalogEntry> {
    let wanted = operation_name.trim();
    entries()
        .iter()
        .find(|e| e.write_operations.iter().any(|op| op.eq_ignore_ascii_case(wanted)))
}

/// The resource to evaluate for an event on `id`: the resource itself when its type is in the
/// catalog, else the nearest ancestor that watches the child type the id goes through (a write
/// to `servers/s1/encryptionProtector/current` or `servers/s1/keys/k` changes the server's key
/// source; one to `servers/s1/firewallRules/r` does not).
pub fn target_for(id: &ResourceId) -> Option<(ResourceId, &'static CatalogEntry)> {
    if let Some(entry) = lookup(&id.resource_type()) {
        return Some((id.clone(), entry));
    }
    let full_type = id.resource_type();
    let mut current = id.parent();
    while let Some(ancestor) = current {
        let ancestor_type = ancestor.resource_type();
        if let Some(entry) = lookup(&ancestor_type) {
            let below = full_type.get(ancestor_type.len()..).unwrap_or("");
            let child_type = below.trim_start_matches('/').split('/').next().unwrap_or("");
            let watched = entry
                .watched_children
                .iter()
                .any(|c| c.eq_ignore_ascii_case(child_type));
            return watched.then_some((ancestor, entry));
        }
        current = ancestor.parent();
    }
    None
}
/// What a resource's encryption looks like right now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "camelCase")]
pub enum EncryptionState {
    Mmk,
    Cmk(KeyRef),
    /// Service-side encryption is on, and this resource does not decide whose key it uses (a SQL
    /// database: its server's encryption protector does).
    Encrypted,
    /// Service-side encryption is off: the data is not encrypted at rest by the service (TDE
    /// disabled), a CIS level-1 failure whatever the profile asks for.
    Disabled,
    /// The raw key-source value, "missing", or why a CMK reference could not be read. Never acted on.
    Unknown(String),
    /// A customer-managed key whose reference points outside Key Vault and Managed HSM (another
    /// host, an IP address, a port, user info): never read, never written back, never a baseline.
    KeyOutsideKeyVault {
        reference: String,
        problem: KeyRefError,
    },
}

/// Why a document that says "CMK" yields no usable key reference.
enum KeyRefProblem {
    /// Absent or incomplete fields, or a Key Vault URL that names no key.
    Unreadable(String),
    /// A reference to somewhere that is not Key Vault.
    OutsideKeyVault { reference: String, problem: KeyRefError },
}

impl KeyRefProblem {
    fn from_error(reference: &str, problem: KeyRefError, unreadable: impl FnOnce() -> String) -> KeyRefProblem {
        if problem.is_outside_key_vault() {
            KeyRefProblem::OutsideKeyVault {
                reference: reference.chars().take(200).collect(),
                problem,
            }
        } else {
            KeyRefProblem::Unreadable(format!("{} ({problem})", unreadable()))
        }
    }

    fn into_state(self) -> EncryptionState {
        match self {
            KeyRefProblem::Unreadable(why) => EncryptionState::Unknown(why),
            KeyRefProblem::OutsideKeyVault { reference, problem } => {
                EncryptionState::KeyOutsideKeyVault { reference, problem }
            }
        }
    }
}

/// What a revert should switch the resource to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "target", content = "key", rename_all = "camelCase")]
pub enum RevertTarget {
    /// Microsoft-managed keys; for on/off types (TDE), "service encryption on".
    Mmk,
    Cmk(KeyRef),
}

/// A resource body together with the child resources its state lives in, so one evaluation sees
/// everything; the caller GETs each [`ChildRead`] the entry lists.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceView<'a> {
    pub resource: &'a Value,
    /// Relative child path, lower-case (`encryptionprotector/current`) -> its GET body.
    pub children: BTreeMap<String, Value>,
}

impl<'a> ResourceView<'a> {
    /// A view with no children read.
    pub fn new(resource: &'a Value) -> ResourceView<'a> {
        ResourceView {
            resource,
            children: BTreeMap::new(),
        }
    }

    /// Add a child body; the path is lower-cased so callers need not match ARM's spelling.
    pub fn with_child(mut self, relative_path: &str, body: Value) -> ResourceView<'a> {
        self.children
            .insert(relative_path.trim_matches('/').to_ascii_lowercase(), body);
        self
    }

    /// The child body at `relative_path`, compared case-insensitively.
    pub fn child(&self, relative_path: &str) -> Option<&Value> {
        self.children.get(&relative_path.trim_matches('/').to_ascii_lowercase())
    }
}

/// One write of a revert, in order; the handler sends them one after the other and stops at the
/// first failure (the prerequisite SQL server key must exist before the protector names it).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevertWrite {
    pub method: WriteMethod,
    /// Appended to the resource id (`encryptionProtector/current`); `None`: the resource itself.
    pub relative_path: Option<String>,
    pub body: Value,
    pub api_version: &'static str,
}

/// One printable row of the catalog, for `keyguard catalog` and documentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogRow {
    pub resource_type: &'static str,
    pub table_rows: &'static str,
    pub key_source: String,
    pub mmk: String,
    pub cmk: String,
    pub to_cmk: String,
    pub to_mmk: String,
    pub cis_level1: &'static str,
    pub cis_level2: &'static str,
    /// The pages the reversibility rests on (see [`CatalogEntry::sources`]).
    pub sources: &'static [&'static str],
}

/// The catalog as rows a CLI can print.
pub fn catalog_table() -> Vec<CatalogRow> {
    entries().iter().map(CatalogEntry::row).collect()
}

fn get_path<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| get_ci(v, key))
}

/// Object member lookup, exact spelling first, then case-insensitive: ARM JSON property names
/// are meant to be case-insensitive, and some services echo them in another case.
fn get_ci<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = value.as_object()?;
    obj.get(key)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn set_path(root: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = root;
    for key in parents {
        let slot = current
            .entry((*key).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        current = next;
    }
    current.insert((*last).to_string(), value);
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    get_ci(value, key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `null`, `""`, `{}` and `[]` all mean "not set" to ARM services.
fn is_unset(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

fn eq_any(list: &[&str], raw: &str) -> bool {
    list.iter().any(|v| v.eq_ignore_ascii_case(raw))
}

/// The reverse of [`sql_server_key_name`]. The DNS suffix is not in the name, so this assumes
/// the public cloud; the protector's `uri`, when echoed, is preferred.
fn key_from_sql_server_key_name(name: &str) -> Option<KeyRef> {
    let mut parts = name.trim().split('_');
    let (vault, key, version) = (parts.next()?, parts.next()?, parts.next());
    if parts.next().is_some() || vault.is_empty() || key.is_empty() || version.is_some_and(str::is_empty) {
        return None;
    }
    KeyRef::new(&format!("https://{vault}.vault.azure.net"), key, version, None).ok()
}

fn opt_str<'a>(doc: &'a Value, path: Option<&[&str]>) -> Option<&'a str> {
    path.and_then(|p| get_path(doc, p))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl CatalogEntry {
    /// Read the key source from a resource body alone (GET response, or a Resource Notifications
    /// `resourceInfo`). Types whose state lives in a child resource read `Unknown` here: use
    /// [`CatalogEntry::observe_view`] with the children the entry lists.
    pub fn observe(&self, resource: &Value) -> EncryptionState {
        self.observe_view(&ResourceView::new(resource))
    }

    /// Read the key source from a resource and its child resources. Anything we cannot read
    /// with certainty is `Unknown`, which the planner never writes over.
    pub fn observe_view(&self, view: &ResourceView<'_>) -> EncryptionState {
        let doc = match self.key_source.child {
            None => view.resource,
            Some(child) => match view.child(child) {
                Some(doc) => doc,
                None => return EncryptionState::Unknown(format!("child resource {child} not read")),
            },
        };
        let field = get_path(doc, self.key_source.path);
        match self.key_source.kind {
            KeySourceKind::Value { mmk, cmk, absent } => {
                let raw = match field {
                    None | Some(Value::Null) => {
                        return match absent {
                            WhenAbsent::Unknown => EncryptionState::Unknown("missing".to_string()),
                            WhenAbsent::Mmk => EncryptionState::Mmk,
                            WhenAbsent::CmkIfKeyRef => match self.read_key_ref(doc, "absent key source") {
                                Ok(key) => EncryptionState::Cmk(key),
                                Err(KeyRefProblem::Unreadable(_)) => EncryptionState::Unknown("missing".to_string()),
                                Err(outside) => outside.into_state(),
                            },
                        };
                    }
                    Some(Value::String(s)) => s.trim(),
                    Some(other) => return EncryptionState::Unknown(other.to_string()),
                };
                if eq_any(mmk, raw) {
                    return EncryptionState::Mmk;
                }
                if !eq_any(cmk, raw) {
                    return EncryptionState::Unknown(raw.to_string());
                }
                match self.read_key_ref(doc, raw) {
                    Ok(key) => EncryptionState::Cmk(key),
                    Err(problem) => problem.into_state(),
                }
            }
            KeySourceKind::Presence => {
                if is_unset(field) {
                    return EncryptionState::Mmk;
                }
                match self.read_key_ref(doc, &self.key_source.path.join(".")) {
                    Ok(key) => EncryptionState::Cmk(key),
                    Err(problem) => problem.into_state(),
                }
            }
            KeySourceKind::Switch { on, off } => match field {
                None | Some(Value::Null) => EncryptionState::Unknown("missing".to_string()),
                Some(Value::String(s)) if eq_any(on, s.trim()) => EncryptionState::Encrypted,
                Some(Value::String(s)) if eq_any(off, s.trim()) => EncryptionState::Disabled,
                Some(Value::String(s)) => EncryptionState::Unknown(s.trim().to_string()),
                Some(other) => EncryptionState::Unknown(other.to_string()),
            },
        }
    }

    /// The key reference of a document already known to say "CMK" (`said` is what said so, for
    /// the error text).
    fn read_key_ref(&self, doc: &Value, said: &str) -> Result<KeyRef, KeyRefProblem> {
        match self.key_ref {
            KeyRefLayout::Fields {
                container_path,
                vault_uri_field,
                key_name_field,
                key_version_field,
                user_assigned_identity_path,
            } => {
                let container = match get_path(doc, container_path) {
                    Some(Value::Array(items)) => items.first(),
                    other => other,
                };
                let Some(container) = container.filter(|c| c.is_object()) else {
                    return Err(KeyRefProblem::Unreadable(format!(
                        "{said} without {}",
                        container_path.join(".")
                    )));
                };
                let (Some(vault), Some(name)) = (str_at(container, vault_uri_field), str_at(container, key_name_field))
                else {
                    return Err(KeyRefProblem::Unreadable(format!(
                        "{said} with an incomplete key reference ({}.{{{vault_uri_field},{key_name_field}}})",
                        container_path.join(".")
                    )));
                };
                let version = str_at(container, key_version_field);
                let identity = binding::read_identity(doc, user_assigned_identity_path, said)?;
                KeyRef::new(vault, name, version, identity.resource_id)
                    .map(|key| key.with_identity_client_id(identity.client_id))
                    .map_err(|problem| {
                        KeyRefProblem::from_error(vault, problem, || {
                            format!("{said}, but {} is not a usable key reference", container_path.join("."))
                        })
                    })
            }
            KeyRefLayout::KeyUri {
                path,
                user_assigned_identity_path,
                geo_backup,
            } => {
                let Some(uri) = opt_str(doc, Some(path)) else {
                    return Err(KeyRefProblem::Unreadable(format!("{said} without {}", path.join("."))));
                };
                let identity = binding::read_identity(doc, user_assigned_identity_path, said)?;
                let key = KeyRef::from_key_uri(uri, identity.resource_id).map_err(|problem| {
                    KeyRefProblem::from_error(uri, problem, || {
                        format!("{said}, but {} is not a key identifier", path.join("."))
                    })
                })?;
                let geo = binding::read_geo_backup(doc, geo_backup, said)?;
                Ok(key.with_identity_client_id(identity.client_id).with_geo_backup(geo))
            }
            KeyRefLayout::EncryptionSet { paths } => {
                let Some((path, set)) = paths.iter().find_map(|p| opt_str(doc, Some(p)).map(|set| (*p, set))) else {
                    return Err(KeyRefProblem::Unreadable(format!(
                        "{said} without a disk encryption set id"
                    )));
                };
                KeyRef::encryption_set(set)
                    .map(|key| key.with_set_usage(self.set_usage(doc, path)))
                    .map_err(|problem| {
                        KeyRefProblem::Unreadable(format!(
                            "{said}, but the disk encryption set id is not one ({problem})"
                        ))
                    })
            }
            KeyRefLayout::SqlServerKey => {
                // The protector's rotation setting is part of what a revert must put back.
                let rotation =
                    get_path(doc, &["properties", "autoRotationEnabled"]).and_then(Value::as_bool) == Some(true);
                if let Some(uri) = opt_str(doc, Some(&["properties", "uri"])) {
                    return KeyRef::from_key_uri(uri, None)
                        .map(|key| key.with_auto_rotation(rotation))
                        .map_err(|problem| {
                            KeyRefProblem::from_error(uri, problem, || {
                                format!("{said}, but properties.uri is not a key identifier")
                            })
                        });
                }
                opt_str(doc, Some(&["properties", "serverKeyName"]))
                    .and_then(key_from_sql_server_key_name)
                    .map(|key| key.with_auto_rotation(rotation))
                    .ok_or_else(|| {
                        KeyRefProblem::Unreadable(format!("{said} without a readable properties.uri or serverKeyName"))
                    })
            }
            KeyRefLayout::None => Ok(KeyRef::not_visible()),
        }
    }

    /// How a disk applies the set read at `path`: a confidential VM keeps it in its security
    /// profile; double encryption says so in the key-source value.
    fn set_usage(&self, doc: &Value, path: &[&str]) -> SetUsage {
        if path
            .last()
            .is_some_and(|f| f.eq_ignore_ascii_case("secureVMDiskEncryptionSetId"))
        {
            return SetUsage::ConfidentialVm;
        }
        let double = get_path(doc, self.key_source.path)
            .and_then(Value::as_str)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(writes::DOUBLE_ENCRYPTION));
        if double {
            SetUsage::PlatformAndCustomerKeys
        } else {
            SetUsage::CustomerKey
        }
    }

    /// Whether the resource has the identity the key reference needs: the named user-assigned
    /// identity (by resource id or client id) attached to the resource, or, when the key names
    /// none, a system-assigned identity; and the geo-backup identity when the key has one.
    /// Without it the service cannot unwrap its key and a CMK revert would fail (or worse, be
    /// accepted and leave the data unreadable). A disk encryption set carries its own identity.
    /// A resource that keeps geo-redundant backups (MySQL) also needs the key's geo-backup
    /// twin, which the service requires with the key: without one this answers `false`.
    pub fn has_identity_for(&self, resource: &Value, key: &KeyRef) -> bool {
        // A disk encryption set carries its own identity; a key held outside ARM (Search) is
        // reached by whatever the data plane configures, nothing on the resource.
        if key.encryption_set_id().is_some() || self.key_ref == KeyRefLayout::None {
            return true;
        }
        let geo = match self.key_ref {
            KeyRefLayout::KeyUri { geo_backup, .. } => geo_backup,
            _ => None,
        };
        binding::identities_attached(resource, key, geo)
    }

    /// Whether switching the resource to `target` is something we may automate.
    pub fn direction_to(&self, target: &RevertTarget) -> Direction {
        match target {
            RevertTarget::Mmk => self.reversibility.to_mmk,
            RevertTarget::Cmk(_) => self.reversibility.to_cmk,
        }
    }

    /// Whether `name` (the resource's own name) is never judged, e.g. the `master` database.
    pub fn never_drifts(&self, name: &str) -> bool {
        eq_any(self.never_drift_names, name.trim())
    }

    /// Dotted key-source location, prefixed by its child resource if any.
    pub fn key_source_location(&self) -> String {
        let path = self.key_source.path.join(".");
        match self.key_source.child {
            Some(child) => format!("{child}: {path}"),
            None => path,
        }
    }

    fn row(&self) -> CatalogRow {
        let (mmk, cmk) = match self.key_source.kind {
            KeySourceKind::Value { mmk, cmk, absent } => {
                let mut m = mmk.join(" | ");
                if absent == WhenAbsent::Mmk {
                    m = if m.is_empty() {
                        "(absent)".to_string()
                    } else {
                        format!("{m} | (absent)")
                    };
                }
                if m.is_empty() {
                    m = "(none)".to_string();
                }
                (m, cmk.join(" | "))
            }
            KeySourceKind::Presence => ("(absent or empty)".to_string(), "(present)".to_string()),
            KeySourceKind::Switch { on, off } => (
                format!("{} (TDE on; key from the server protector)", on.join(" | ")),
                format!("n/a ({} = not encrypted)", off.join(" | ")),
            ),
        };
        CatalogRow {
            resource_type: self.resource_type,
            table_rows: self.table_rows,
            key_source: self.key_source_location(),
            mmk,
            cmk,
            to_cmk: self.reversibility.to_cmk.label(),
            to_mmk: self.reversibility.to_mmk.label(),
            cis_level1: self.cis_level1,
            cis_level2: self.cis_level2,
            sources: self.sources,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn storage() -> &'static CatalogEntry {
        lookup("Microsoft.Storage/storageAccounts").unwrap()
    }

    #[test]
    fn lookups_are_case_insensitive() {
        assert!(lookup("microsoft.storage/STORAGEACCOUNTS").is_some());
        assert!(lookup("Microsoft.Storage/storageAccounts/encryptionScopes").is_none());
        assert!(lookup_operation("microsoft.storage/storageaccounts/WRITE").is_some());
        assert!(lookup_operation("Microsoft.Storage/storageAccounts/delete").is_none());
        assert!(lookup_operation("Microsoft.Storage/storageAccounts/listKeys/action").is_none());
    }

    #[test]
    fn catalog_rows_are_well_formed() {
        for e in entries() {
            assert!(e.resource_type.contains('/'), "{}", e.resource_type);
            assert_eq!(e.api_version.len(), 10, "{}", e.api_version);
            assert!(!e.write_operations.is_empty());
            for op in e.write_operations {
                assert!(
                    op.to_ascii_lowercase()
                        .starts_with(&e.resource_type.to_ascii_lowercase())
                );
            }
            assert!(!e.key_source.path.is_empty());
            if let KeySourceKind::Value { mmk, cmk, .. } = e.key_source.kind {
                assert!(!cmk.is_empty(), "{}", e.resource_type);
                assert!(mmk.iter().all(|m| !eq_any(cmk, m)), "{}", e.resource_type);
            }
            assert!(!e.cis_level1.is_empty() && !e.cis_level2.is_empty());
        }
    }

    #[test]
    fn observe_reads_key_source_case_insensitively() {
        let e = storage();
        assert_eq!(
            e.observe(&json!({"properties":{"encryption":{"keySource":"microsoft.storage"}}})),
            EncryptionState::Mmk
        );
        assert_eq!(
            e.observe(&json!({"properties":{"encryption":{"KeySource":"Microsoft.Storage"}}})),
            EncryptionState::Mmk
        );
        assert_eq!(
            e.observe(&json!({"properties":{}})),
            EncryptionState::Unknown("missing".into())
        );
        assert_eq!(
            e.observe(&json!({"properties":{"encryption":{"keySource":null}}})),
            EncryptionState::Unknown("missing".into())
        );
        assert_eq!(
            e.observe(&json!({"properties":{"encryption":{"keySource":1}}})),
            EncryptionState::Unknown("1".into())
        );
        assert_eq!(
            e.observe(&json!({"properties":{"encryption":{"keySource":"Microsoft.Other"}}})),
            EncryptionState::Unknown("Microsoft.Other".into())
        );
        assert_eq!(
            e.observe(&json!("nonsense")),
            EncryptionState::Unknown("missing".into())
        );
    }

    #[test]
    fn observe_cmk_needs_a_complete_key_reference() {
        let e = storage();
        let st = e.observe(&json!({"properties":{"encryption":{"keySource":"MICROSOFT.KEYVAULT"}}}));
        assert!(
            matches!(st, EncryptionState::Unknown(ref s) if s.contains("without properties.encryption.keyvaultproperties")),
            "{st:?}"
        );
        let st = e.observe(&json!({"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://kv.vault.azure.net"}}}}));
        assert!(
            matches!(st, EncryptionState::Unknown(ref s) if s.contains("incomplete")),
            "{st:?}"
        );
        let st = e.observe(&json!({"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"HTTPS://KV.Vault.Azure.NET/","keyname":"k","keyversion":"ABC"},"identity":{"userAssignedIdentity":"/x"}}}}));
        assert_eq!(
            st,
            EncryptionState::Cmk(KeyRef::new("https://kv.vault.azure.net", "k", Some("ABC"), Some("/x")).unwrap())
        );
    }

    #[test]
    fn revert_bodies_are_minimal_and_in_the_service_spelling() {
        let e = storage();
        assert_eq!(
            e.revert_body(&RevertTarget::Mmk),
            json!({"properties":{"encryption":{"keySource":"Microsoft.Storage"}}})
        );
        let k = KeyRef::new("https://kv.vault.azure.net/", "k1", None, None).unwrap();
        assert_eq!(
            e.revert_body(&RevertTarget::Cmk(k)),
            json!({"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://kv.vault.azure.net","keyname":"k1","keyversion":""}}}})
        );
        let k = KeyRef::new(
            "https://kv.vault.azure.net",
            "k1",
            Some("v2"),
            Some("/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u"),
        )
        .unwrap();
        assert_eq!(
            e.revert_body(&RevertTarget::Cmk(k)),
            json!({"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://kv.vault.azure.net","keyname":"k1","keyversion":"v2"},"identity":{"userAssignedIdentity":"/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u"}}}})
        );
    }

    #[test]
    fn identity_precondition() {
        let e = storage();
        let sys = KeyRef::new("https://kv.vault.azure.net", "k", None, None).unwrap();
        let uai_id = "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u";
        let uai = KeyRef::new("https://kv.vault.azure.net", "k", None, Some(uai_id)).unwrap();
        assert!(e.has_identity_for(&json!({"identity":{"type":"SystemAssigned"}}), &sys));
        assert!(e.has_identity_for(&json!({"identity":{"type":"SystemAssigned,UserAssigned"}}), &sys));
        assert!(e.has_identity_for(&json!({"identity":{"type":"SystemAssigned, UserAssigned"}}), &sys));
        assert!(!e.has_identity_for(&json!({"identity":{"type":"UserAssigned"}}), &sys));
        assert!(!e.has_identity_for(&json!({"identity":{"type":"None"}}), &sys));
        assert!(!e.has_identity_for(&json!({}), &sys));
        let with_uai = json!({"identity":{"type":"UserAssigned","userAssignedIdentities":{uai_id.replace("resourceGroups","resourcegroups").to_uppercase(): {}}}});
        assert!(e.has_identity_for(&with_uai, &uai));
        assert!(!e.has_identity_for(&json!({"identity":{"type":"SystemAssigned"}}), &uai));
    }

    #[test]
    fn key_ref_comparisons() {
        let a = KeyRef::new("https://KV.vault.azure.net/", "Key", None, None).unwrap();
        assert_eq!(a.vault_uri().as_deref(), Some("https://kv.vault.azure.net"));
        assert_eq!(a.vault_host(), Some("kv.vault.azure.net"));
        assert_eq!(a.key_id(), "https://kv.vault.azure.net/keys/Key");
        let b = KeyRef::new("kv.vault.azure.net", "key", Some("v1"), None).unwrap();
        assert_eq!(b.vault_uri().as_deref(), Some("https://kv.vault.azure.net"));
        assert!(a.same_key(&b));
        assert!(b.same_key(&KeyRef::new("https://kv.vault.azure.net", "KEY", Some("V1"), None).unwrap()));
        assert!(!b.same_key(&KeyRef::new("https://kv.vault.azure.net", "key", Some("v2"), None).unwrap()));
        assert!(!a.same_key(&KeyRef::new("https://other.vault.azure.net", "key", None, None).unwrap()));
    }

    #[test]
    fn key_ref_reads_both_spellings() {
        let k = KeyRef::new("https://kv.vault.azure.net", "k", Some("v"), None).unwrap();
        let v = serde_json::to_value(&k).unwrap();
        assert_eq!(
            v,
            json!({"vaultUri": "https://kv.vault.azure.net", "keyName": "k", "keyVersion": "v", "userAssignedIdentity": null})
        );
        assert_eq!(serde_json::from_value::<KeyRef>(v).unwrap(), k);
        let snake = json!({"vault_uri": "https://kv.vault.azure.net", "key_name": "k", "key_version": "v", "user_assigned_identity": null});
        assert_eq!(serde_json::from_value::<KeyRef>(snake).unwrap(), k);
    }

    #[test]
    fn encryption_state_serializes_with_a_tag() {
        assert_eq!(
            serde_json::to_value(EncryptionState::Mmk).unwrap(),
            json!({"state":"mmk"})
        );
        assert_eq!(
            serde_json::to_value(EncryptionState::Unknown("x".into())).unwrap(),
            json!({"state":"unknown","detail":"x"})
        );
        let k = KeyRef::new("https://kv.vault.azure.net", "k", None, None).unwrap();
        assert_eq!(
            serde_json::to_value(EncryptionState::Cmk(k)).unwrap()["detail"]["keyName"],
            "k"
        );
    }
}
