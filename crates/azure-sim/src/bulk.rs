//! Bulk seeding for sweeps: thousands of resources of catalog types in one call, in the shapes
//! the services return (customer-managed or Microsoft-managed key), a known subset of them
//! "drifted" (in the opposite key mode), so a test knows exactly which ids a sweep must report.
//!
//! In process: [`Sim::seed_bulk`]. Over HTTP: `POST /_sim/seed/bulk` with the camelCase JSON of
//! [`BulkSeed`], e.g.
//!
//! ```json
//! {"subscription": "…", "resourceGroups": 10, "driftEvery": 10, "expect": "cmk",
//!  "perType": {"Microsoft.Storage/storageAccounts": 4000, "Microsoft.KeyVault/vaults": 0}}
//! ```
//!
//! Naming (see [`BulkSeed::resource_id`]): the `i`-th resource (0-based) of a type is named
//! `{short}{i:05}` (`short` = the type's last segment, lower-cased alphanumerics, at most 10
//! characters) in group `{resourceGroupPrefix}-{i % resourceGroups:03}`. It is drifted when
//! `driftEvery > 0` and `(i + 1) % driftEvery == 0`: with `driftEvery: 10`, resources 9, 19, 29…
//! Non-drifted resources are in the `expect` key mode (default `cmk`), drifted ones in the other.
//!
//! Supported types: `Microsoft.Storage/storageAccounts` and every top-level type of
//! [`crate::catalog_sim`] that has a key source (28 of keyguard's 30 catalog types; the nested
//! `Microsoft.Sql/servers/databases` and `Microsoft.ElasticSan/elasticSans/volumeGroups` are
//! seeded with `POST /_sim/resources`). A customer-managed SQL server or managed instance also
//! gets its server key and `encryptionProtector/current` children (Microsoft-managed ones rely on
//! the protector's service default); children are not counted in `created` and not listed by
//! Resource Graph. Documents carry a system-assigned identity (a user-assigned one where the
//! service's CMK needs it) and key references into `vault` (`kv-bulk` by default).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::catalog_sim::{self, Child, Detect};
use crate::util::stable_guid;
use crate::{DEFAULT_TENANT_ID, SeedError, Sim};

/// Key mode of a seeded resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// Customer-managed key (Key Vault).
    #[default]
    Cmk,
    /// Microsoft-managed (platform) key.
    Mmk,
}

impl KeyMode {
    fn other(self) -> KeyMode {
        match self {
            KeyMode::Cmk => KeyMode::Mmk,
            KeyMode::Mmk => KeyMode::Cmk,
        }
    }
}

/// What to seed; see the module docs for naming and the drift rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkSeed {
    pub subscription: String,
    /// Number of resource groups the resources are spread over (round robin); at least 1.
    #[serde(default = "one")]
    pub resource_groups: usize,
    #[serde(default = "default_prefix")]
    pub resource_group_prefix: String,
    /// Full type (case-insensitive) -> how many.
    pub per_type: BTreeMap<String, usize>,
    /// Every n-th resource of each type is drifted; 0 = none.
    #[serde(default)]
    pub drift_every: usize,
    /// Key mode of the resources that are not drifted.
    #[serde(default)]
    pub expect: KeyMode,
    /// Key Vault URI the customer-managed keys live in.
    #[serde(default = "default_vault")]
    pub vault: String,
    #[serde(default = "default_location")]
    pub location: String,
}

fn one() -> usize {
    1
}

fn default_prefix() -> String {
    "rg-bulk".into()
}

/// Vault of bulk-seeded customer-managed keys.
pub const BULK_VAULT: &str = "https://kv-bulk.vault.azure.net";

fn default_vault() -> String {
    BULK_VAULT.into()
}

fn default_location() -> String {
    "westeurope".into()
}

impl BulkSeed {
    /// A spec with one resource group, no drift, CMK expected.
    pub fn new(subscription: impl Into<String>, per_type: impl IntoIterator<Item = (String, usize)>) -> BulkSeed {
        BulkSeed {
            subscription: subscription.into(),
            resource_groups: 1,
            resource_group_prefix: default_prefix(),
            per_type: per_type.into_iter().collect(),
            drift_every: 0,
            expect: KeyMode::Cmk,
            vault: default_vault(),
            location: default_location(),
        }
    }

    pub fn resource_group(&self, i: usize) -> String {
        format!("{}-{:03}", self.resource_group_prefix, i % self.resource_groups.max(1))
    }

    pub fn is_drifted(&self, i: usize) -> bool {
        self.drift_every > 0 && (i + 1).is_multiple_of(self.drift_every)
    }

    /// Id of the `i`-th resource of `full_type` (spelled as given).
    pub fn resource_id(&self, full_type: &str, i: usize) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{full_type}/{}",
            self.subscription,
            self.resource_group(i),
            resource_name(full_type, i)
        )
    }
}

fn resource_name(full_type: &str, i: usize) -> String {
    let last = full_type.rsplit('/').next().unwrap_or(full_type);
    let short: String = last
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(10)
        .collect();
    format!("{short}{i:05}")
}

/// What [`Sim::seed_bulk`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkSeedReport {
    /// Resources created (children not counted).
    pub created: usize,
    /// Count per type, canonical type names.
    pub per_type: BTreeMap<String, usize>,
    /// Ids of the drifted resources: by type (canonical names in byte order), then by index.
    pub drifted: Vec<String>,
    /// Resource groups used.
    pub resource_groups: Vec<String>,
}

/// Why a bulk seed was refused (nothing is stored then).
#[derive(Debug, thiserror::Error)]
pub enum BulkSeedError {
    #[error("'{0}' cannot be bulk-seeded; supported types: {1}")]
    UnsupportedType(String, String),
    #[error("'{0}' is given more than once (type names are case-insensitive)")]
    DuplicateType(String),
    #[error("the subscription id must be a non-empty path segment")]
    BadSubscription,
    #[error(transparent)]
    Seed(#[from] SeedError),
}

const STORAGE: &str = "Microsoft.Storage/storageAccounts";

/// Canonical names of the types [`Sim::seed_bulk`] accepts.
pub fn bulk_types() -> Vec<&'static str> {
    let mut v = vec![STORAGE];
    v.extend(
        catalog_sim::TYPES
            .iter()
            .filter(|t| {
                t.child == Child::No && !matches!(t.detect, Detect::None) && t.full_type.matches('/').count() == 1
            })
            .map(|t| t.full_type),
    );
    v
}

/// Key material the documents point at.
struct Keys<'a> {
    vault: &'a str,
    vault_name: String,
    key: &'static str,
    version: &'static str,
    /// `{vault}/keys/{key}/{version}`
    versioned: String,
    /// `{vault}/keys/{key}`
    unversioned: String,
    vault_arm_id: String,
    des_id: String,
    uai_id: String,
}

const BULK_KEY: &str = "cmk-bulk";
const BULK_KEY_VERSION: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

impl Sim {
    /// Seeds the resources `spec` describes (replacing any with the same ids) and reports which
    /// ids are drifted. 10,000 resources take well under a second.
    pub fn seed_bulk(&self, spec: &BulkSeed) -> Result<BulkSeedReport, BulkSeedError> {
        if spec.subscription.trim().is_empty() || spec.subscription.contains('/') {
            return Err(BulkSeedError::BadSubscription);
        }
        let supported = bulk_types();
        let mut plan: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (ty, n) in &spec.per_type {
            let canonical = supported
                .iter()
                .find(|t| t.eq_ignore_ascii_case(ty))
                .ok_or_else(|| BulkSeedError::UnsupportedType(ty.clone(), supported.join(", ")))?;
            if plan.insert(canonical, *n).is_some() {
                return Err(BulkSeedError::DuplicateType(canonical.to_string()));
            }
        }
        let vault = spec.vault.trim_end_matches('/');
        let vault_name = vault
            .trim_start_matches("https://")
            .split('.')
            .next()
            .unwrap_or("kv-bulk")
            .to_owned();
        let groups = spec.resource_groups.max(1);
        let keys_for = |rg: &str| Keys {
            vault,
            vault_name: vault_name.clone(),
            key: BULK_KEY,
            version: BULK_KEY_VERSION,
            versioned: format!("{vault}/keys/{BULK_KEY}/{BULK_KEY_VERSION}"),
            unversioned: format!("{vault}/keys/{BULK_KEY}"),
            vault_arm_id: format!(
                "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault_name}",
                spec.subscription
            ),
            des_id: format!(
                "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Compute/diskEncryptionSets/des-bulk",
                spec.subscription
            ),
            uai_id: format!(
                "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-bulk",
                spec.subscription
            ),
        };
        let group_keys: Vec<Keys<'_>> = (0..groups).map(|g| keys_for(&spec.resource_group(g))).collect();
        let total: usize = plan.values().sum();
        let mut docs = Vec::with_capacity(total);
        let mut report = BulkSeedReport {
            created: total,
            per_type: BTreeMap::new(),
            drifted: Vec::new(),
            resource_groups: (0..groups.min(total.max(1))).map(|g| spec.resource_group(g)).collect(),
        };
        for (ty, n) in plan {
            *report.per_type.entry(ty.to_owned()).or_default() += n;
            // Building JSON is the slow part; each (group, mode) shape is built once with a
            // placeholder name and cloned.
            let mut templates: BTreeMap<(usize, KeyMode), Vec<Value>> = BTreeMap::new();
            for i in 0..n {
                let id = spec.resource_id(ty, i);
                let mode = if spec.is_drifted(i) {
                    report.drifted.push(id.clone());
                    spec.expect.other()
                } else {
                    spec.expect
                };
                let group = i % groups;
                let template = templates.entry((group, mode)).or_insert_with(|| {
                    let id = format!(
                        "/subscriptions/{}/resourceGroups/{}/providers/{ty}/{NAME_PLACEHOLDER}",
                        spec.subscription,
                        spec.resource_group(group)
                    );
                    documents(ty, &id, NAME_PLACEHOLDER, &spec.location, mode, &group_keys[group])
                });
                let name = resource_name(ty, i);
                for doc in template.iter() {
                    let mut doc = doc.clone();
                    fill_name(&mut doc, &name);
                    docs.push(doc);
                }
                if let Some(identity) = docs
                    .iter_mut()
                    .rev()
                    .nth(template.len() - 1)
                    .and_then(|d| d.get_mut("identity"))
                {
                    identity["principalId"] = json!(stable_guid(&id));
                }
            }
        }
        self.upsert_resources(docs)?;
        Ok(report)
    }
}

/// Stands for the resource name in a template document.
const NAME_PLACEHOLDER: &str = "\u{1}name\u{1}";

fn fill_name(v: &mut Value, name: &str) {
    match v {
        Value::String(s) if s.contains(NAME_PLACEHOLDER) => *s = s.replace(NAME_PLACEHOLDER, name),
        Value::Array(items) => items.iter_mut().for_each(|x| fill_name(x, name)),
        Value::Object(m) => m.values_mut().for_each(|x| fill_name(x, name)),
        _ => {}
    }
}

fn system_identity(id: &str) -> Value {
    json!({"type": "SystemAssigned", "principalId": stable_guid(id), "tenantId": DEFAULT_TENANT_ID})
}

fn user_identity(id: &str, uai: &str) -> Value {
    json!({
        "type": "UserAssigned",
        "userAssignedIdentities": {uai: {"principalId": stable_guid(uai), "clientId": stable_guid(&format!("{uai}#client"))}},
        "tenantId": DEFAULT_TENANT_ID,
        "principalId": stable_guid(id),
    })
}

/// The resource document (and, for CMK SQL, its key and protector children).
fn documents(ty: &str, id: &str, name: &str, location: &str, mode: KeyMode, k: &Keys<'_>) -> Vec<Value> {
    let cmk = mode == KeyMode::Cmk;
    if ty == STORAGE {
        let rid = crate::util::ResourceId::parse(id);
        let (sub, rg) = rid.map(|r| (r.subscription, r.resource_group)).unwrap_or_default();
        let mut doc = crate::demo_seed::storage_account(&sub, &rg, name, true);
        doc["location"] = json!(location);
        if cmk {
            crate::demo_seed::make_storage_cmk(&mut doc, k.vault, k.key);
        }
        return vec![doc];
    }
    let mut identity = system_identity(id);
    let mut extra = Vec::new();
    let (mut props, kind) = match ty {
        "Microsoft.Sql/servers" | "Microsoft.Sql/managedInstances" => {
            let mut p = json!({"administratorLogin": "sqladmin", "state": "Ready", "version": "12.0", "publicNetworkAccess": "Enabled"});
            if cmk {
                p["keyId"] = json!(k.versioned);
                let key_name = format!("{}_{}_{}", k.vault_name, k.key, k.version);
                let child_type = format!("{ty}/keys");
                extra.push(json!({
                    "id": format!("{id}/keys/{key_name}"), "name": key_name, "type": child_type,
                    "kind": "azurekeyvault",
                    "properties": {"serverKeyType": "AzureKeyVault", "uri": k.versioned, "autoRotationEnabled": false}
                }));
                extra.push(json!({
                    "id": format!("{id}/encryptionProtector/current"), "name": "current",
                    "type": format!("{ty}/encryptionProtector"), "location": location, "kind": "azurekeyvault",
                    "properties": {"serverKeyName": key_name, "serverKeyType": "AzureKeyVault", "uri": k.versioned, "autoRotationEnabled": false}
                }));
            }
            (p, None)
        }
        "Microsoft.Compute/disks" => {
            let enc = if cmk {
                json!({"type": "EncryptionAtRestWithCustomerKey", "diskEncryptionSetId": k.des_id})
            } else {
                json!({"type": "EncryptionAtRestWithPlatformKey"})
            };
            (
                json!({"diskSizeGB": 128, "diskState": "Unattached", "osType": "Linux", "encryption": enc}),
                None,
            )
        }
        "Microsoft.DocumentDB/databaseAccounts" => {
            let mut p = json!({"databaseAccountOfferType": "Standard", "documentEndpoint": format!("https://{name}.documents.azure.com:443/")});
            if cmk {
                p["keyVaultKeyUri"] = json!(k.unversioned);
                p["defaultIdentity"] = json!("SystemAssignedIdentity");
            }
            (p, Some("GlobalDocumentDB"))
        }
        "Microsoft.DBforPostgreSQL/flexibleServers" | "Microsoft.DBforMySQL/flexibleServers" => {
            let de = if cmk {
                identity = user_identity(id, &k.uai_id);
                json!({"type": "AzureKeyVault", "primaryKeyURI": k.versioned, "primaryUserAssignedIdentityId": k.uai_id, "primaryEncryptionKeyStatus": "Valid"})
            } else {
                json!({"type": "SystemManaged"})
            };
            (json!({"state": "Ready", "dataEncryption": de}), None)
        }
        "Microsoft.EventHub/namespaces" | "Microsoft.ServiceBus/namespaces" => {
            let mut p = json!({"status": "Active"});
            if cmk {
                p["encryption"] = json!({
                    "keySource": "Microsoft.KeyVault",
                    "keyVaultProperties": [{"keyName": k.key, "keyVaultUri": k.vault, "keyVersion": k.version}],
                    "requireInfrastructureEncryption": false
                });
            }
            (p, None)
        }
        "Microsoft.ContainerRegistry/registries" => {
            let enc = if cmk {
                json!({"status": "enabled", "keyVaultProperties": {"keyIdentifier": k.versioned, "identity": stable_guid(&k.uai_id)}})
            } else {
                json!({"status": "disabled"})
            };
            (json!({"encryption": enc}), None)
        }
        "Microsoft.CognitiveServices/accounts" => {
            let enc = if cmk {
                json!({"keySource": "Microsoft.KeyVault", "keyVaultProperties": {"keyName": k.key, "keyVersion": k.version, "keyVaultUri": k.vault}})
            } else {
                json!({"keySource": "Microsoft.CognitiveServices"})
            };
            (json!({"encryption": enc}), Some("OpenAI"))
        }
        "Microsoft.MachineLearningServices/workspaces" => {
            let enc = if cmk {
                json!({"status": "Enabled", "keyVaultProperties": {"keyVaultArmId": k.vault_arm_id, "keyIdentifier": k.versioned}})
            } else {
                json!({"status": "Disabled"})
            };
            (json!({"encryption": enc}), None)
        }
        "Microsoft.DataFactory/factories" => {
            let mut p = json!({});
            if cmk {
                p["encryption"] = json!({"vaultBaseUrl": k.vault, "keyName": k.key, "keyVersion": k.version});
            }
            (p, None)
        }
        "Microsoft.AppConfiguration/configurationStores" => {
            let key = if cmk { json!(k.unversioned) } else { Value::Null };
            (
                json!({"encryption": {"keyVaultProperties": {"keyIdentifier": key, "identityClientId": null}}}),
                None,
            )
        }
        "Microsoft.Batch/batchAccounts" => {
            let enc = if cmk {
                json!({"keySource": "Microsoft.KeyVault", "keyVaultProperties": {"keyIdentifier": k.versioned}})
            } else {
                json!({"keySource": "Microsoft.Batch"})
            };
            (json!({"encryption": enc}), None)
        }
        "Microsoft.Synapse/workspaces" => {
            let enc = if cmk {
                json!({"doubleEncryptionEnabled": true, "cmk": {"status": "Active", "key": {"name": k.key, "keyVaultUrl": k.unversioned}, "kekIdentity": {"useSystemAssignedIdentity": true}}})
            } else {
                json!({"doubleEncryptionEnabled": false})
            };
            (json!({"encryption": enc}), None)
        }
        "Microsoft.RecoveryServices/vaults" => {
            let mut p = json!({"provisioningState": "Succeeded"});
            if cmk {
                p["encryption"] = json!({"keyVaultProperties": {"keyUri": k.versioned}, "kekIdentity": {"useSystemAssignedIdentity": true}, "infrastructureEncryption": "Disabled"});
            }
            (p, None)
        }
        "Microsoft.Kusto/clusters" | "Microsoft.OperationalInsights/clusters" => {
            let mut p = json!({"state": "Running"});
            if cmk {
                p["keyVaultProperties"] = json!({"keyName": k.key, "keyVersion": k.version, "keyVaultUri": k.vault});
            }
            (p, None)
        }
        "Microsoft.ContainerService/managedClusters" => {
            let mut p = json!({"kubernetesVersion": "1.30.5"});
            if cmk {
                p["diskEncryptionSetID"] = json!(k.des_id);
            }
            (p, None)
        }
        "Microsoft.Databricks/workspaces" => {
            let mut p =
                json!({"managedResourceGroupId": format!("{}-managed", id.split("/providers/").next().unwrap_or(id))});
            if cmk {
                p["encryption"] = json!({"entities": {"managedDisk": {
                    "keySource": "Microsoft.Keyvault",
                    "keyVaultProperties": {"keyVaultUri": k.vault, "keyName": k.key, "keyVersion": k.version},
                    "rotationToLatestKeyVersionEnabled": false
                }}});
            }
            (p, None)
        }
        "Microsoft.Automation/automationAccounts" => {
            let enc = if cmk {
                json!({"keySource": "Microsoft.Keyvault", "keyVaultProperties": {"keyvaultUri": k.vault, "keyName": k.key, "keyVersion": k.version}})
            } else {
                json!({"keySource": "Microsoft.Automation"})
            };
            (json!({"encryption": enc}), None)
        }
        "Microsoft.NetApp/netAppAccounts" => {
            let enc = if cmk {
                json!({"keySource": "Microsoft.KeyVault", "keyVaultProperties": {"keyVaultUri": k.vault, "keyName": k.key, "keyVaultResourceId": k.vault_arm_id}})
            } else {
                json!({"keySource": "Microsoft.NetApp"})
            };
            (json!({"encryption": enc}), None)
        }
        "Microsoft.Cache/redisEnterprise" => {
            let enc = if cmk {
                json!({"customerManagedKeyEncryption": {"keyEncryptionKeyUrl": k.versioned, "keyEncryptionKeyIdentity": {"identityType": "userAssignedIdentity", "userAssignedIdentityResourceId": k.uai_id}}})
            } else {
                json!({})
            };
            (json!({"encryption": enc}), None)
        }
        "Microsoft.Search/searchServices" => {
            let enforcement = if cmk { "Enabled" } else { "Unspecified" };
            (
                json!({"encryptionWithCmk": {"enforcement": enforcement, "encryptionComplianceStatus": "Compliant"}}),
                None,
            )
        }
        "Microsoft.ContainerInstance/containerGroups" => {
            let mut p = json!({"osType": "Linux"});
            if cmk {
                p["encryptionProperties"] = json!({"vaultBaseUrl": k.vault, "keyName": k.key, "keyVersion": k.version});
            }
            (p, None)
        }
        "Microsoft.StorageCache/caches" => {
            let mut p = json!({"cacheSizeGB": 3072});
            if cmk {
                p["encryptionSettings"] =
                    json!({"keyEncryptionKey": {"keyUrl": k.versioned, "sourceVault": {"id": k.vault_arm_id}}});
            }
            (p, None)
        }
        "Microsoft.HDInsight/clusters" => {
            let mut p = json!({"clusterVersion": "5.1"});
            if cmk {
                p["diskEncryptionProperties"] =
                    json!({"vaultUri": k.vault, "keyName": k.key, "keyVersion": k.version, "msiResourceId": k.uai_id});
            }
            (p, None)
        }
        // `bulk_types` lists only the arms above; keep any newcomer visible instead of silent.
        _ => (json!({"note": "no bulk template for this type"}), None),
    };
    props["provisioningState"] = json!("Succeeded");
    let mut doc = json!({
        "id": id,
        "name": name,
        "type": ty,
        "location": location,
        "tags": {"seeded-by": "azure-sim bulk"},
        "identity": identity,
        "properties": props,
    });
    if let Some(kind) = kind {
        doc["kind"] = json!(kind);
    }
    let mut out = Vec::with_capacity(1 + extra.len());
    out.push(doc);
    out.extend(extra);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_bulk_type_reads_as_its_key_mode_by_the_sim_rules() {
        let keys = Keys {
            vault: BULK_VAULT,
            vault_name: "kv-bulk".into(),
            key: BULK_KEY,
            version: BULK_KEY_VERSION,
            versioned: format!("{BULK_VAULT}/keys/{BULK_KEY}/{BULK_KEY_VERSION}"),
            unversioned: format!("{BULK_VAULT}/keys/{BULK_KEY}"),
            vault_arm_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-bulk".into(),
            des_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des-bulk".into(),
            uai_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"
                .into(),
        };
        let types = bulk_types();
        assert_eq!(types.len(), 28, "{types:?}");
        for ty in types {
            if ty == STORAGE {
                continue;
            }
            let sim_type = catalog_sim::lookup(ty).unwrap();
            let id = format!("/subscriptions/s/resourceGroups/rg/providers/{ty}/x");
            let cmk = documents(ty, &id, "x", "westeurope", KeyMode::Cmk, &keys);
            let mmk = documents(ty, &id, "x", "westeurope", KeyMode::Mmk, &keys);
            assert!(
                cmk[0].get("note").is_none() && cmk[0]["properties"].get("note").is_none(),
                "{ty}"
            );
            if ty.starts_with("Microsoft.Sql/") {
                let protector = &cmk[2];
                let p = catalog_sim::lookup(&format!("{ty}/encryptionProtector")).unwrap();
                assert!(p.is_cmk(protector), "{ty}: {protector}");
                assert_eq!(mmk.len(), 1, "{ty}");
            } else {
                assert!(sim_type.is_cmk(&cmk[0]), "{ty}: {}", cmk[0]);
            }
            assert!(!sim_type.is_cmk(&mmk[0]), "{ty}: {}", mmk[0]);
        }
    }

    #[test]
    fn names_groups_and_drift_are_derivable() {
        let mut spec = BulkSeed::new("sub", [("Microsoft.Storage/storageAccounts".to_owned(), 30)]);
        spec.resource_groups = 3;
        spec.drift_every = 10;
        assert_eq!(
            spec.resource_id("Microsoft.Storage/storageAccounts", 4),
            "/subscriptions/sub/resourceGroups/rg-bulk-001/providers/Microsoft.Storage/storageAccounts/storageacc00004"
        );
        let drifted: Vec<usize> = (0..30).filter(|i| spec.is_drifted(*i)).collect();
        assert_eq!(drifted, vec![9, 19, 29]);
    }
}
