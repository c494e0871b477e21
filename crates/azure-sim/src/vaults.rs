//! Key Vault resources as ARM and Resource Graph show them (`Microsoft.KeyVault/vaults`, the
//! shape of the spec's `Vaults_Get` example). Seeding one makes a vault part of the simulated
//! estate: the key-swap guard finds it by name and `vaultUri`. A vault the Key Vault stand-in
//! serves keys for without such a resource is one nobody in the tenant can see.

use serde_json::{Value, json};

/// A key vault named `name` (host `{name}.vault.azure.net`) in `resource_group`, owned by
/// `tenant` (the simulator's own: [`crate::DEFAULT_TENANT_ID`]).
pub fn key_vault(subscription: &str, resource_group: &str, name: &str, tenant: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.KeyVault/vaults/{name}"),
        "name": name,
        "type": "Microsoft.KeyVault/vaults",
        "location": "westeurope",
        "tags": {},
        "properties": {
            "tenantId": tenant,
            "sku": {"family": "A", "name": "standard"},
            "accessPolicies": [],
            "enableRbacAuthorization": true,
            "enableSoftDelete": true,
            "softDeleteRetentionInDays": 90,
            "enablePurgeProtection": true,
            "vaultUri": format!("https://{name}.vault.azure.net/"),
            "provisioningState": "Succeeded",
            "publicNetworkAccess": "Enabled"
        }
    })
}
