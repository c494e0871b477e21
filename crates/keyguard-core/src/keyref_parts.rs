//! The parts of a key binding some services keep beside the key itself, each parsed and valid
//! by construction like the key: the client id a service names its identity by, and the second
//! key a service encrypts its geo-redundant backups with.

use std::fmt;

use uuid::Uuid;

use super::{KeyRef, KeyRefError};
use crate::resource_id::ResourceId;

/// ARM type of the identities a key binding may name.
const USER_ASSIGNED_IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

/// A user-assigned identity named by its client id, a GUID: Cognitive Services and App
/// Configuration name the identity that reaches the key this way (`identityClientId`), not by
/// its resource id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientId(Uuid);

impl ClientId {
    /// A GUID, in any of the spellings a GUID parser accepts; written back hyphenated and
    /// lower-case, as ARM returns client ids.
    pub fn parse(text: &str) -> Result<ClientId, KeyRefError> {
        Uuid::try_parse(text.trim())
            .map(ClientId)
            .map_err(|_| KeyRefError::BadClientId)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// A user-assigned identity's resource id, checked to be one.
pub(super) fn user_assigned_identity(text: &str) -> Result<ResourceId, KeyRefError> {
    ResourceId::parse(text.trim())
        .ok()
        .filter(|id| id.resource_type().eq_ignore_ascii_case(USER_ASSIGNED_IDENTITY_TYPE))
        .ok_or(KeyRefError::NotAUserAssignedIdentity)
}

/// The key a service encrypts its geo-redundant backups with (MySQL flexible servers:
/// `geoBackupKeyURI`), in a vault of the backup region, and the identity of that region that
/// reaches it (`geoBackupUserAssignedIdentityId`): "key vault can't cross region".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeoBackupKey {
    /// A key in Key Vault or Managed HSM, parsed like any other key reference.
    key: KeyRef,
    identity: Option<ResourceId>,
}

impl GeoBackupKey {
    /// From the key identifier and the identity's resource id as the service spells them.
    pub fn new(key_uri: &str, identity: Option<&str>) -> Result<GeoBackupKey, KeyRefError> {
        let key = KeyRef::from_key_uri(key_uri, None)?;
        let identity = identity
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(user_assigned_identity)
            .transpose()?;
        Ok(GeoBackupKey { key, identity })
    }

    /// The geo-backup key as a key reference (no identity: see [`GeoBackupKey::identity`]).
    pub fn key(&self) -> &KeyRef {
        &self.key
    }

    /// `https://{vault}/keys/{name}[/{version}]`.
    pub fn key_id(&self) -> String {
        self.key.key_id()
    }

    /// Resource id of the identity that reaches the geo-backup key.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_ref().map(ResourceId::as_str)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const UAI: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/geo";

    #[test]
    fn a_client_id_is_a_guid_written_back_in_one_spelling() {
        let id = ClientId::parse(" 6F1D2C3B-0A9E-4F7D-8C6B-5A4E3D2C1B0A ").unwrap();
        assert_eq!(id.to_string(), "6f1d2c3b-0a9e-4f7d-8c6b-5a4e3d2c1b0a");
        for bad in ["", "not-a-guid", "6f1d2c3b-0a9e-4f7d-8c6b", "/subscriptions/s"] {
            assert_eq!(ClientId::parse(bad), Err(KeyRefError::BadClientId), "{bad}");
        }
    }

    #[test]
    fn the_stored_form_keeps_both_parts_and_checks_them_again_on_read() {
        let key = KeyRef::new("https://kv.vault.azure.net", "k", Some("0123"), None)
            .unwrap()
            .with_identity_client_id(Some(ClientId::parse("6F1D2C3B-0A9E-4F7D-8C6B-5A4E3D2C1B0A").unwrap()))
            .with_geo_backup(Some(
                GeoBackupKey::new("https://geo.vault.azure.net/keys/k", Some(UAI)).unwrap(),
            ));
        let stored = serde_json::to_value(&key).unwrap();
        assert_eq!(stored["identityClientId"], "6f1d2c3b-0a9e-4f7d-8c6b-5a4e3d2c1b0a");
        assert_eq!(stored["geoBackupKeyUri"], "https://geo.vault.azure.net/keys/k");
        assert_eq!(stored["geoBackupIdentity"], UAI);
        assert_eq!(serde_json::from_value::<KeyRef>(stored.clone()).unwrap(), key);
        // A record written before these parts existed reads as before.
        let old = serde_json::json!({"vaultUri": "https://kv.vault.azure.net", "keyName": "k"});
        let read = serde_json::from_value::<KeyRef>(old).unwrap();
        assert_eq!((read.identity_client_id(), read.geo_backup()), (None, None));
        // A tampered record is refused, as a tampered key is.
        let mut tampered = stored.clone();
        tampered["geoBackupKeyUri"] = "https://evil.example/keys/k".into();
        assert!(serde_json::from_value::<KeyRef>(tampered).is_err());
        let mut tampered = stored;
        tampered["identityClientId"] = "not-a-guid".into();
        assert!(serde_json::from_value::<KeyRef>(tampered).is_err());
        // Only a vault key has a geo-backup twin.
        let set = KeyRef::encryption_set(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/d",
        )
        .unwrap()
        .with_geo_backup(Some(
            GeoBackupKey::new("https://geo.vault.azure.net/keys/k", None).unwrap(),
        ));
        assert_eq!(set.geo_backup(), None);
    }

    #[test]
    fn a_geo_backup_key_is_a_vault_key_and_its_identity_a_user_assigned_one() {
        let geo = GeoBackupKey::new("https://geo.vault.azure.net/keys/k/0123", Some(UAI)).unwrap();
        assert_eq!(geo.key_id(), "https://geo.vault.azure.net/keys/k/0123");
        assert_eq!(geo.identity(), Some(UAI));
        assert_eq!(
            GeoBackupKey::new("https://geo.vault.azure.net/keys/k", Some(" "))
                .unwrap()
                .identity(),
            None
        );
        assert!(matches!(
            GeoBackupKey::new("https://evil.example/keys/k", None),
            Err(KeyRefError::NotAVaultHost { .. })
        ));
        let not_an_identity = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a";
        assert_eq!(
            GeoBackupKey::new("https://geo.vault.azure.net/keys/k", Some(not_an_identity)),
            Err(KeyRefError::NotAUserAssignedIdentity)
        );
        assert_eq!(
            GeoBackupKey::new("https://geo.vault.azure.net/keys/k", Some("https://x")),
            Err(KeyRefError::NotAUserAssignedIdentity)
        );
    }
}
