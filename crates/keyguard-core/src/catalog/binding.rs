//! The parts of a key binding beside the key itself: how a service names the identity that
//! reaches the vault, and the second key some services keep for their geo-redundant backups.
//! Read into a [`KeyRef`] and written back from it, so a revert restores the binding the
//! baseline had, not only its key.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{KeyRef, KeyRefProblem, get_ci, get_path, opt_str, set_path};
use crate::keyref::{ClientId, GeoBackupKey};

/// Where a key reference names the user-assigned identity that reaches the vault, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "path", rename_all = "camelCase")]
pub enum IdentityPath {
    /// The identity's resource id (most services).
    ResourceId(&'static [&'static str]),
    /// The identity's resource id, which a write also declares in the resource's `identity`
    /// block as `UserAssigned`, with the geo-backup identity if any. MySQL's
    /// `ServerUpdateWithBYOK` example and the Azure CLI (`az mysql flexible-server update
    /// --key --identity`) send it so; the service only uses user-assigned identities for its
    /// key, so a key that names none has no write.
    DeclaredResourceId(&'static [&'static str]),
    /// The identity's client id, a GUID (`identityClientId`: Cognitive Services, App
    /// Configuration). A key that names its identity only by resource id has no write here:
    /// writing no client id would switch the service to its system identity.
    ClientId(&'static [&'static str]),
}

/// Where a service keeps the key of its geo-redundant backups and the identity that reaches it
/// (MySQL `dataEncryption.geoBackupKeyURI` / `geoBackupUserAssignedIdentityId`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GeoBackupPaths {
    pub key_uri: &'static [&'static str],
    pub user_assigned_identity: &'static [&'static str],
    /// The field that is `Enabled` when the resource keeps geo-redundant backups: such a
    /// resource cannot take a key without its geo-backup twin.
    pub enabled_by: &'static [&'static str],
}

/// The identity a document names for its key, as read.
#[derive(Default)]
pub(super) struct NamedIdentity<'a> {
    pub resource_id: Option<&'a str>,
    pub client_id: Option<ClientId>,
}

pub(super) fn read_identity<'a>(
    doc: &'a Value,
    path: Option<IdentityPath>,
    said: &str,
) -> Result<NamedIdentity<'a>, KeyRefProblem> {
    match path {
        None => Ok(NamedIdentity::default()),
        Some(IdentityPath::ResourceId(p) | IdentityPath::DeclaredResourceId(p)) => Ok(NamedIdentity {
            resource_id: opt_str(doc, Some(p)),
            client_id: None,
        }),
        Some(IdentityPath::ClientId(p)) => {
            let client_id = opt_str(doc, Some(p))
                .map(ClientId::parse)
                .transpose()
                .map_err(|problem| {
                    KeyRefProblem::Unreadable(format!("{said}, but {} is not a client id ({problem})", p.join(".")))
                })?;
            Ok(NamedIdentity {
                resource_id: None,
                client_id,
            })
        }
    }
}

pub(super) fn read_geo_backup(
    doc: &Value,
    paths: Option<GeoBackupPaths>,
    said: &str,
) -> Result<Option<GeoBackupKey>, KeyRefProblem> {
    let Some(paths) = paths else { return Ok(None) };
    let Some(uri) = opt_str(doc, Some(paths.key_uri)) else {
        return Ok(None);
    };
    GeoBackupKey::new(uri, opt_str(doc, Some(paths.user_assigned_identity)))
        .map(Some)
        .map_err(|problem| {
            KeyRefProblem::from_error(uri, problem, || {
                format!("{said}, but its geo-backup key or identity is not usable")
            })
        })
}

/// Writes the identity the key names where the service reads it; `None` when the service
/// cannot be told that identity (see [`IdentityPath`]), so no write is planned.
pub(super) fn write_identity(root: &mut Map<String, Value>, path: Option<IdentityPath>, key: &KeyRef) -> Option<()> {
    match path {
        // The service uses the resource's own identity; nothing in the key binding names it.
        None => Some(()),
        Some(IdentityPath::ResourceId(p)) => {
            if key.user_assigned_identity().is_none() && key.identity_client_id().is_some() {
                return None;
            }
            if let Some(id) = key.user_assigned_identity() {
                set_path(root, p, Value::String(id.to_string()));
            }
            Some(())
        }
        Some(IdentityPath::DeclaredResourceId(p)) => {
            let id = key.user_assigned_identity()?;
            set_path(root, p, Value::String(id.to_string()));
            let mut declared = Map::new();
            declared.insert(id.to_string(), json!({}));
            if let Some(geo) = key.geo_backup().and_then(GeoBackupKey::identity) {
                declared.insert(geo.to_string(), json!({}));
            }
            root.insert(
                "identity".to_string(),
                json!({"type": "UserAssigned", "userAssignedIdentities": declared}),
            );
            Some(())
        }
        Some(IdentityPath::ClientId(p)) => {
            match key.identity_client_id() {
                Some(id) => set_path(root, p, Value::String(id.to_string())),
                None if key.user_assigned_identity().is_some() => return None,
                None => {}
            }
            Some(())
        }
    }
}

pub(super) fn write_geo_backup(root: &mut Map<String, Value>, paths: Option<GeoBackupPaths>, key: &KeyRef) {
    let (Some(paths), Some(geo)) = (paths, key.geo_backup()) else {
        return;
    };
    set_path(root, paths.key_uri, Value::String(geo.key_id()));
    if let Some(identity) = geo.identity() {
        set_path(root, paths.user_assigned_identity, Value::String(identity.to_string()));
    }
}

/// Whether the resource has every identity the key binding names attached (and, for a
/// resource that keeps geo-redundant backups, whether the binding has the geo-backup key it
/// needs); a key that names no user-assigned identity needs a system-assigned one.
pub(super) fn identities_attached(resource: &Value, key: &KeyRef, geo: Option<GeoBackupPaths>) -> bool {
    if let Some(paths) = geo {
        let keeps_geo_backups = get_path(resource, paths.enabled_by)
            .and_then(Value::as_str)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("Enabled"));
        if keeps_geo_backups && key.geo_backup().is_none() {
            return false;
        }
    }
    let Some(identity) = get_ci(resource, "identity") else {
        return false;
    };
    let attached = get_ci(identity, "userAssignedIdentities").and_then(Value::as_object);
    let has_resource_id =
        |wanted: &str| attached.is_some_and(|ids| ids.keys().any(|id| id.trim().eq_ignore_ascii_case(wanted.trim())));
    let has_client_id = |wanted: ClientId| {
        attached.is_some_and(|ids| {
            ids.values().any(|entry| {
                get_ci(entry, "clientId")
                    .and_then(Value::as_str)
                    .and_then(|id| ClientId::parse(id).ok())
                    == Some(wanted)
            })
        })
    };
    if let Some(geo_identity) = key.geo_backup().and_then(GeoBackupKey::identity)
        && !has_resource_id(geo_identity)
    {
        return false;
    }
    match (key.user_assigned_identity(), key.identity_client_id()) {
        (None, None) => get_ci(identity, "type").and_then(Value::as_str).is_some_and(|t| {
            t.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case("SystemAssigned"))
        }),
        (resource_id, client_id) => resource_id.is_none_or(has_resource_id) && client_id.is_none_or(has_client_id),
    }
}
