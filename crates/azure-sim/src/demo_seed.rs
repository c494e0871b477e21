//! The demo's storage accounts: what `keyguard demo`, `--demo-seed` and many tests start from.

use serde_json::{Value, json};

use crate::{DEFAULT_TENANT_ID, util, vaults};

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
pub(crate) fn make_storage_cmk(doc: &mut Value, vault: &str, key: &str) {
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
pub(crate) fn storage_account(sub: &str, rg: &str, name: &str, system_identity: bool) -> Value {
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
