//! What the stand-in knows about each ARM resource type beyond storage accounts: accepted
//! api-versions, how the key source is recognised, which key-source switches the real service
//! refuses on an existing resource, and how writes answer (synchronous or long-running).
//!
//! Source: `research/arm-encryption-catalog.md` Tables A and B and the spec examples under
//! `fixtures/arm/` (fixture wins over memory). This table models Azure, independently of
//! keyguard's own catalog: a switch is refused here only where Table B says the service refuses
//! it; rows without a Table B entry (26-33) and rows Table B leaves open are accepted both ways.
//!
//! Refusal codes (HTTP 400, document unchanged):
//!
//! * [`Switch::OneWay`] — removing a customer-managed key the service cannot remove:
//!   `CannotDisableCustomerManagedKey`;
//! * [`Switch::CreationOnly`] — a key mode that can only be chosen at creation:
//!   `InvalidEncryptionChange`.

use serde_json::Value;

/// Whether the service accepts a key-source switch on an existing resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    Allowed,
    /// Refused with 400 `CannotDisableCustomerManagedKey` (the switch is one-way).
    OneWay,
    /// Refused with 400 `InvalidEncryptionChange` (decided at creation only).
    CreationOnly,
}

/// How a document says "customer-managed key".
#[derive(Clone, Copy, Debug)]
pub enum Detect {
    /// The type carries no key source (parents, VMs, vaults).
    None,
    /// CMK when the string at the path equals (case-insensitively) one of the values.
    Value(&'static [&'static str], &'static [&'static str]),
    /// CMK when the path holds something (not null, not `""`, not `{}`, not `[]`).
    Present(&'static [&'static str]),
    /// CMK when any of these says so.
    Any(&'static [Detect]),
}

/// How a successful write answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lro {
    /// `200` with the new document.
    Sync,
    /// `202` + absolute `Azure-AsyncOperation` + absolute `Location`.
    AsyncAndLocation,
    /// `202` + absolute `Azure-AsyncOperation` only.
    AsyncOnly,
    /// `202` + absolute `Location` only (poll: 202 ... then 200 with the resource).
    LocationOnly,
    /// `202` + a *relative* `Location` only (SQL TDE).
    RelativeLocation,
    /// `202` + *relative* `Azure-AsyncOperation` and `Location` (Recovery Services example).
    RelativeBoth,
    /// `201` with the document in `provisioningState: Updating` and no polling header; GETs of
    /// the resource answer `Updating` until the operation ends (App Configuration's
    /// `ConfigurationStores_Update`).
    ProvisioningState,
}

/// Child resources with their own write semantics (PUT upserts, GET of an unwritten one
/// answers the service default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Child {
    /// Plain resource: PATCH merges, PUT merges into an existing one or creates it.
    No,
    /// `…/encryptionProtector/current` (SQL server or managed instance).
    Protector,
    /// `…/keys/{vault}_{key}_{version}` (SQL server or managed instance).
    ServerKey,
    /// `…/databases/{db}/transparentDataEncryption/current`.
    Tde,
}

#[derive(Clone, Copy, Debug)]
pub struct SimType {
    pub full_type: &'static str,
    pub api_versions: &'static [&'static str],
    pub detect: Detect,
    /// MMK -> CMK on an existing resource.
    pub to_cmk: Switch,
    /// CMK -> MMK on an existing resource.
    pub to_mmk: Switch,
    /// How PATCH/PUT of an existing resource answers.
    pub lro: Lro,
    pub child: Child,
    /// A path where a written empty object clears the stored one instead of merging into it
    /// (App Configuration drops its key with `keyVaultProperties: {}`, as the Azure CLI sends).
    pub empty_clears: Option<&'static [&'static str]>,
}

const fn t(full_type: &'static str, api_versions: &'static [&'static str], detect: Detect) -> SimType {
    SimType {
        full_type,
        api_versions,
        detect,
        to_cmk: Switch::Allowed,
        to_mmk: Switch::Allowed,
        lro: Lro::Sync,
        child: Child::No,
        empty_clears: None,
    }
}

impl SimType {
    const fn rules(mut self, to_cmk: Switch, to_mmk: Switch) -> Self {
        self.to_cmk = to_cmk;
        self.to_mmk = to_mmk;
        self
    }

    const fn lro(mut self, lro: Lro) -> Self {
        self.lro = lro;
        self
    }

    const fn empty_clears(mut self, path: &'static [&'static str]) -> Self {
        self.empty_clears = Some(path);
        self
    }

    const fn child(mut self, child: Child) -> Self {
        self.child = child;
        self
    }

    pub fn accepts(&self, api_version: &str) -> bool {
        self.api_versions.iter().any(|v| v.eq_ignore_ascii_case(api_version))
    }

    /// True when the document is encrypted with a customer-managed key by this type's rule.
    pub fn is_cmk(&self, doc: &Value) -> bool {
        detect(&self.detect, doc)
    }
}

use Detect::{Any, Present, Value as Val};
use Switch::{Allowed, CreationOnly, OneWay};

const SQL_VERSIONS: &[&str] = &[
    "2021-11-01",
    "2022-05-01-preview",
    "2023-05-01-preview",
    "2023-08-01",
    "2024-05-01-preview",
    "2025-01-01",
    "2025-02-01-preview",
    "2025-08-01-preview",
];
const SQL_MI_VERSIONS: &[&str] = &["2021-11-01", "2023-08-01", "2025-01-01"];
const DISK_VERSIONS: &[&str] = &["2023-04-02", "2024-03-02", "2025-01-02", "2026-03-02"];
const VM_VERSIONS: &[&str] = &["2024-03-01", "2024-07-01", "2024-11-01", "2025-04-01", "2026-04-01"];
const MESSAGING_VERSIONS: &[&str] = &["2021-11-01", "2022-10-01-preview", "2024-01-01", "2026-01-01"];
const CMK_VALUES_KEYVAULT: &[&str] = &["Microsoft.KeyVault"];
const AZURE_KEY_VAULT: &[&str] = &["AzureKeyVault"];

/// Every type the stand-in serves besides `Microsoft.Storage/storageAccounts` (which keeps its
/// own handler in `arm.rs`). Keyguard's 30 catalog types, the SQL children they are read and
/// written through, and three reference types (disk encryption sets, VMs, key vaults).
pub static TYPES: &[SimType] = &[
    // --- SQL (rows 3, 3a, 3b, 4, 4a, 5): key source lives in child resources.
    t("Microsoft.Sql/servers", SQL_VERSIONS, Present(&["properties", "keyId"])),
    t(
        "Microsoft.Sql/servers/encryptionProtector",
        SQL_VERSIONS,
        Val(&["properties", "serverKeyType"], AZURE_KEY_VAULT),
    )
    .lro(Lro::AsyncAndLocation)
    .child(Child::Protector),
    t(
        "Microsoft.Sql/servers/keys",
        SQL_VERSIONS,
        Val(&["kind"], &["azurekeyvault"]),
    )
    .child(Child::ServerKey),
    t(
        "Microsoft.Sql/servers/databases",
        SQL_VERSIONS,
        Present(&["properties", "encryptionProtector"]),
    ),
    t(
        "Microsoft.Sql/servers/databases/transparentDataEncryption",
        SQL_VERSIONS,
        Detect::None,
    )
    .lro(Lro::RelativeLocation)
    .child(Child::Tde),
    t(
        "Microsoft.Sql/managedInstances",
        SQL_MI_VERSIONS,
        Present(&["properties", "keyId"]),
    ),
    t(
        "Microsoft.Sql/managedInstances/encryptionProtector",
        SQL_MI_VERSIONS,
        Val(&["properties", "serverKeyType"], AZURE_KEY_VAULT),
    )
    .lro(Lro::AsyncAndLocation)
    .child(Child::Protector),
    t(
        "Microsoft.Sql/managedInstances/keys",
        SQL_MI_VERSIONS,
        Val(&["kind"], &["azurekeyvault"]),
    )
    .child(Child::ServerKey),
    // --- Compute (rows 6, 7, 7a). Disks: two-way, but not while attached to a running VM.
    t(
        "Microsoft.Compute/disks",
        DISK_VERSIONS,
        Any(&[
            Val(
                &["properties", "encryption", "type"],
                &[
                    "EncryptionAtRestWithCustomerKey",
                    "EncryptionAtRestWithPlatformAndCustomerKeys",
                ],
            ),
            Present(&["properties", "encryption", "diskEncryptionSetId"]),
            Present(&["properties", "securityProfile", "secureVMDiskEncryptionSetId"]),
        ]),
    )
    .lro(Lro::LocationOnly),
    t("Microsoft.Compute/diskEncryptionSets", DISK_VERSIONS, Detect::None).lro(Lro::LocationOnly),
    t("Microsoft.Compute/virtualMachines", VM_VERSIONS, Detect::None),
    // --- Row 8: Cosmos DB, CMK is one-way.
    t(
        "Microsoft.DocumentDB/databaseAccounts",
        &["2024-11-15", "2025-04-15", "2025-10-15", "2026-03-15"],
        Present(&["properties", "keyVaultKeyUri"]),
    )
    .rules(Allowed, OneWay),
    // --- Row 9: PostgreSQL flexible, mode fixed at creation.
    t(
        "Microsoft.DBforPostgreSQL/flexibleServers",
        &["2024-08-01", "2025-06-01-preview", "2025-08-01"],
        Val(&["properties", "dataEncryption", "type"], AZURE_KEY_VAULT),
    )
    .rules(CreationOnly, CreationOnly)
    .lro(Lro::AsyncAndLocation),
    // --- Row 10: MySQL flexible, two-way, LRO.
    t(
        "Microsoft.DBforMySQL/flexibleServers",
        &["2023-06-30", "2023-12-30", "2024-12-30"],
        Val(&["properties", "dataEncryption", "type"], AZURE_KEY_VAULT),
    )
    .lro(Lro::AsyncAndLocation),
    // --- Rows 11, 12: messaging namespaces; CMK can be added (empty namespace), never removed.
    t(
        "Microsoft.EventHub/namespaces",
        MESSAGING_VERSIONS,
        Val(&["properties", "encryption", "keySource"], CMK_VALUES_KEYVAULT),
    )
    .rules(Allowed, OneWay),
    t(
        "Microsoft.ServiceBus/namespaces",
        MESSAGING_VERSIONS,
        Val(&["properties", "encryption", "keySource"], CMK_VALUES_KEYVAULT),
    )
    .rules(Allowed, OneWay),
    // --- Row 13: ACR, CMK only at creation and never removed.
    t(
        "Microsoft.ContainerRegistry/registries",
        &["2023-07-01", "2025-04-01", "2025-11-01"],
        Val(&["properties", "encryption", "status"], &["enabled"]),
    )
    .rules(CreationOnly, OneWay)
    .lro(Lro::AsyncOnly),
    // --- Row 14: Cognitive Services, two-way, LRO.
    t(
        "Microsoft.CognitiveServices/accounts",
        &["2024-10-01", "2025-06-01", "2026-07-01"],
        Val(&["properties", "encryption", "keySource"], CMK_VALUES_KEYVAULT),
    )
    .lro(Lro::AsyncAndLocation),
    // --- Row 15: AML, key given at creation only.
    t(
        "Microsoft.MachineLearningServices/workspaces",
        &["2024-10-01", "2025-06-01", "2026-05-01"],
        Val(&["properties", "encryption", "status"], &["Enabled"]),
    )
    .rules(CreationOnly, CreationOnly),
    // --- Row 16: Data Factory, CMK can be added to an empty factory, never removed.
    t(
        "Microsoft.DataFactory/factories",
        &["2018-06-01"],
        Any(&[
            Present(&["properties", "encryption", "vaultBaseUrl"]),
            Present(&["properties", "encryption", "keyName"]),
        ]),
    )
    .rules(Allowed, OneWay),
    // --- Row 17: App Configuration, two-way; the key is dropped with `keyVaultProperties: {}`.
    t(
        "Microsoft.AppConfiguration/configurationStores",
        &["2023-03-01", "2024-05-01", "2024-06-01"],
        Present(&["properties", "encryption", "keyVaultProperties", "keyIdentifier"]),
    )
    .empty_clears(&["properties", "encryption", "keyVaultProperties"])
    .lro(Lro::ProvisioningState),
    // --- Row 18: Batch (docs conflict on MMK -> CMK; revert documented): both accepted here,
    // keyguard treats the way back to MMK as one-way (opt-in).
    t(
        "Microsoft.Batch/batchAccounts",
        &["2024-02-01", "2024-07-01", "2025-06-01"],
        Val(&["properties", "encryption", "keySource"], CMK_VALUES_KEYVAULT),
    ),
    // --- Row 19: Synapse, double encryption with CMK chosen at creation.
    t(
        "Microsoft.Synapse/workspaces",
        &["2021-06-01"],
        Present(&["properties", "encryption", "cmk", "key", "name"]),
    )
    .rules(CreationOnly, CreationOnly),
    // --- Row 20: Recovery Services, CMK one-way; relative LRO URLs as in the spec example.
    t(
        "Microsoft.RecoveryServices/vaults",
        &["2024-04-01", "2025-02-01", "2026-07-01"],
        Present(&["properties", "encryption", "keyVaultProperties", "keyUri"]),
    )
    .rules(Allowed, OneWay)
    .lro(Lro::RelativeBoth),
    // --- Row 21: ADX: CMK added and removed on existing clusters (the portal's "Off").
    t(
        "Microsoft.Kusto/clusters",
        &["2024-04-13", "2025-02-14"],
        Present(&["properties", "keyVaultProperties"]),
    )
    .lro(Lro::AsyncOnly),
    // --- Row 22: Log Analytics dedicated cluster.
    t(
        "Microsoft.OperationalInsights/clusters",
        &["2022-10-01", "2023-09-01", "2026-03-01"],
        Any(&[
            Present(&["properties", "keyVaultProperties", "keyName"]),
            Present(&["properties", "keyVaultProperties", "keyVaultUri"]),
        ]),
    ),
    // --- Row 23: AKS OS-disk CMK only at creation.
    t(
        "Microsoft.ContainerService/managedClusters",
        &["2024-09-01", "2025-05-01", "2026-05-01"],
        Present(&["properties", "diskEncryptionSetID"]),
    )
    .rules(CreationOnly, CreationOnly),
    // --- Row 24: Databricks, three independent switches.
    t(
        "Microsoft.Databricks/workspaces",
        &["2024-05-01", "2026-01-01"],
        Any(&[
            Val(
                &["properties", "parameters", "encryption", "value", "keySource"],
                &["Microsoft.Keyvault"],
            ),
            Val(
                &["properties", "encryption", "entities", "managedServices", "keySource"],
                &["Microsoft.Keyvault"],
            ),
            Val(
                &["properties", "encryption", "entities", "managedDisk", "keySource"],
                &["Microsoft.Keyvault"],
            ),
        ]),
    ),
    // --- Row 25: the key store (reference only).
    t(
        "Microsoft.KeyVault/vaults",
        &["2023-07-01", "2024-11-01", "2026-02-01"],
        Detect::None,
    ),
    // --- Rows 26-33. Microsoft Learn (checked for issue 15): Automation, Elastic SAN volume groups,
    // Search enforcement and Redis Enterprise switch both ways on existing resources; NetApp
    // accounts move to CMK one-way (volumes cannot return), which an account-level model
    // cannot refuse; the rest were not verified, so nothing is refused.
    t(
        "Microsoft.Automation/automationAccounts",
        &["2023-11-01", "2024-10-23"],
        Val(&["properties", "encryption", "keySource"], &["Microsoft.Keyvault"]),
    ),
    t(
        "Microsoft.NetApp/netAppAccounts",
        &["2025-06-01", "2026-06-01"],
        Val(&["properties", "encryption", "keySource"], CMK_VALUES_KEYVAULT),
    ),
    // Redis Enterprise: both ways on an existing instance, through a long maintenance operation.
    t(
        "Microsoft.Cache/redisEnterprise",
        &["2024-10-01", "2025-07-01"],
        Present(&[
            "properties",
            "encryption",
            "customerManagedKeyEncryption",
            "keyEncryptionKeyUrl",
        ]),
    )
    .lro(Lro::AsyncOnly),
    t(
        "Microsoft.Search/searchServices",
        &["2023-11-01", "2025-05-01"],
        Val(&["properties", "encryptionWithCmk", "enforcement"], &["Enabled"]),
    ),
    t(
        "Microsoft.ContainerInstance/containerGroups",
        &["2024-10-01-preview", "2025-09-01", "2026-07-01"],
        Present(&["properties", "encryptionProperties"]),
    ),
    t(
        "Microsoft.ElasticSan/elasticSans/volumeGroups",
        &["2024-05-01", "2025-09-01"],
        Val(
            &["properties", "encryption"],
            &["EncryptionAtRestWithCustomerManagedKey"],
        ),
    ),
    t(
        "Microsoft.StorageCache/caches",
        &["2024-03-01", "2026-01-01"],
        Present(&["properties", "encryptionSettings", "keyEncryptionKey"]),
    ),
    t(
        "Microsoft.HDInsight/clusters",
        &["2021-06-01", "2024-08-01-preview"],
        Present(&["properties", "diskEncryptionProperties", "keyName"]),
    ),
];

/// The entry for a full type (case-insensitive).
pub fn lookup(full_type: &str) -> Option<&'static SimType> {
    TYPES.iter().find(|t| t.full_type.eq_ignore_ascii_case(full_type))
}

/// Case-insensitive object walk (stored documents keep the writer's spelling).
pub fn at<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = doc;
    for seg in path {
        let obj = cur.as_object()?;
        cur = obj
            .get(*seg)
            .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(seg)).map(|(_, v)| v))?;
    }
    Some(cur)
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

fn detect(d: &Detect, doc: &Value) -> bool {
    match d {
        Detect::None => false,
        Detect::Value(path, values) => at(doc, path)
            .and_then(Value::as_str)
            .is_some_and(|s| values.iter().any(|v| v.eq_ignore_ascii_case(s.trim()))),
        Detect::Present(path) => at(doc, path).is_some_and(present),
        Detect::Any(all) => all.iter().any(|d| detect(d, doc)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_is_consistent() {
        let mut seen = std::collections::BTreeSet::new();
        for ty in TYPES {
            assert!(seen.insert(ty.full_type.to_ascii_lowercase()), "{}", ty.full_type);
            assert!(!ty.api_versions.is_empty(), "{}", ty.full_type);
        }
        assert!(lookup("microsoft.sql/SERVERS/encryptionprotector").is_some());
        assert!(lookup("Microsoft.Web/sites").is_none());
    }

    #[test]
    fn detection() {
        let cosmos = lookup("Microsoft.DocumentDB/databaseAccounts").unwrap();
        assert!(cosmos.is_cmk(&json!({"properties": {"keyVaultKeyUri": "https://kv/keys/k"}})));
        assert!(!cosmos.is_cmk(&json!({"properties": {"keyVaultKeyUri": null}})));
        let disk = lookup("Microsoft.Compute/disks").unwrap();
        assert!(disk.is_cmk(&json!({"properties": {"encryption": {"diskEncryptionSetId": "/x"}}})));
        assert!(!disk.is_cmk(&json!({"properties": {"encryption": {"type": "EncryptionAtRestWithPlatformKey"}}})));
        let eh = lookup("Microsoft.EventHub/namespaces").unwrap();
        assert!(eh.is_cmk(&json!({"Properties": {"Encryption": {"keySource": "microsoft.keyvault"}}})));
    }
}
