//! The 30 catalog rows, one per ARM resource type keyguard evaluates.
//!
//! Mapping from Table A of `research/arm-encryption-catalog.md` (rows 1-24 and 26-33):
//!
//! * row 1 (+1a) `storageAccounts`; row 2 (encryption scopes) is part of the account: a scope
//!   write re-evaluates the account, scopes are not judged on their own.
//! * rows 3, 3a, 3b (server encryption protector, server keys, `keyId` shortcut) are one entry,
//!   `Microsoft.Sql/servers`, reading the child `encryptionProtector/current`.
//! * rows 4, 4a (TDE, database-level CMK) are one entry, `Microsoft.Sql/servers/databases`,
//!   reading `transparentDataEncryption/current`: a database is judged on TDE on/off only, its
//!   key is its server's protector.
//! * row 5 (managed-instance protector) is `Microsoft.Sql/managedInstances`.
//! * row 6 `disks`; row 7a (VM/VMSS disk references) is reference-only: the disks are the targets.
//! * row 7 (`diskEncryptionSets`) is not a target: a DES *is* a customer-key binding with no
//!   Microsoft-managed mode, like the Key Vault of row 25 it is where keys live.
//! * row 20a (`DataProtection/backupVaults`) is a lettered extra and not in this set of 30.
//! * rows 8-24 except 20a, and 26-33: one entry each.
//!
//! Reversibility: only what Table B states as possible both ways is `Reversible`; rows the
//! research did not verify (26-33 have no Table B entry) are `CreationOnly`, i.e. alert-only,
//! and say so in `notes`. api-versions are the spec examples' where one exists (conservative:
//! older than the newest tag), otherwise Table A's.

use super::{
    CatalogEntry, ChildRead, Direction, KeyRefLayout, KeySource, KeySourceKind, Reversibility, WhenAbsent, WriteMethod,
    WriteShape,
};

const ALERT_ONLY: Reversibility = Reversibility {
    to_cmk: Direction::CreationOnly,
    to_mmk: Direction::CreationOnly,
};
const ONE_WAY_TO_CMK: Reversibility = Reversibility {
    to_cmk: Direction::OneWay,
    to_mmk: Direction::CreationOnly,
};
const BOTH_WAYS: Reversibility = Reversibility {
    to_cmk: Direction::Reversible,
    to_mmk: Direction::Reversible,
};

const fn value(
    path: &'static [&'static str],
    mmk: &'static [&'static str],
    cmk: &'static [&'static str],
    absent: WhenAbsent,
) -> KeySource {
    KeySource {
        child: None,
        path,
        kind: KeySourceKind::Value { mmk, cmk, absent },
    }
}

const fn presence(path: &'static [&'static str]) -> KeySource {
    KeySource {
        child: None,
        path,
        kind: KeySourceKind::Presence,
    }
}

const fn key_uri(path: &'static [&'static str], uai: Option<&'static [&'static str]>) -> KeyRefLayout {
    KeyRefLayout::KeyUri {
        path,
        user_assigned_identity_path: uai,
    }
}

const fn fields(
    container_path: &'static [&'static str],
    names: [&'static str; 3],
    uai: Option<&'static [&'static str]>,
) -> KeyRefLayout {
    KeyRefLayout::Fields {
        container_path,
        vault_uri_field: names[0],
        key_name_field: names[1],
        key_version_field: names[2],
        user_assigned_identity_path: uai,
    }
}

/// An alert-only row: no write is ever planned, so method and shape are placeholders.
/// Event Hubs and Service Bus namespaces share one encryption model: `keySource` has a single
/// value (`Microsoft.KeyVault`), MMK is the absence of `encryption`, key properties are an array.
const fn messaging_namespace(
    resource_type: &'static str,
    table_rows: &'static str,
    write_operations: &'static [&'static str],
    cis_level2: &'static str,
    notes: &'static str,
) -> CatalogEntry {
    alert_only(
        resource_type,
        table_rows,
        "2024-01-01",
        write_operations,
        value(
            &["properties", "encryption", "keySource"],
            &[],
            &["Microsoft.KeyVault"],
            WhenAbsent::Mmk,
        ),
        fields(
            &["properties", "encryption", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            None,
        ),
        &[
            "identity",
            "properties.encryption.keyVaultProperties[].identity.userAssignedIdentity",
        ],
        ONE_WAY_TO_CMK,
        L1_PLATFORM,
        cis_level2,
        notes,
    )
}

#[allow(clippy::too_many_arguments)]
const fn alert_only(
    resource_type: &'static str,
    table_rows: &'static str,
    api_version: &'static str,
    write_operations: &'static [&'static str],
    key_source: KeySource,
    key_ref: KeyRefLayout,
    identity_fields: &'static [&'static str],
    reversibility: Reversibility,
    cis_level1: &'static str,
    cis_level2: &'static str,
    notes: &'static str,
) -> CatalogEntry {
    CatalogEntry {
        resource_type,
        table_rows,
        api_version,
        write_operations,
        watched_children: &[],
        key_source,
        key_ref,
        identity_fields,
        children: &[],
        never_drift_names: &[],
        reversibility,
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::None,
        long_running: true,
        cis_level1,
        cis_level2,
        notes,
    }
}

const L1_PLATFORM: &str = "Encrypted at rest by the service (always on; Microsoft-managed keys)";
const UNVERIFIED: &str =
    "Switching on an existing resource was not verified by the research (no Table B row): alert only.";

const SQL_PROTECTOR: KeySource = KeySource {
    child: Some("encryptionProtector/current"),
    path: &["properties", "serverKeyType"],
    kind: KeySourceKind::Value {
        mmk: &["ServiceManaged"],
        cmk: &["AzureKeyVault"],
        absent: WhenAbsent::Unknown,
    },
};

pub(super) static ENTRIES: &[CatalogEntry] = &[
    CatalogEntry {
        resource_type: "Microsoft.Storage/storageAccounts",
        table_rows: "1, 1a, 2",
        api_version: "2025-01-01",
        write_operations: &[
            "Microsoft.Storage/storageAccounts/write",
            "Microsoft.Storage/storageAccounts/encryptionScopes/write",
        ],
        watched_children: &["encryptionScopes"],
        key_source: value(
            &["properties", "encryption", "keySource"],
            &["Microsoft.Storage"],
            // Lower-case "v": the account's spelling (encryption scopes use "Microsoft.KeyVault").
            &["Microsoft.Keyvault"],
            WhenAbsent::Unknown,
        ),
        key_ref: fields(
            &["properties", "encryption", "keyvaultproperties"],
            ["keyvaulturi", "keyname", "keyversion"],
            Some(&["properties", "encryption", "identity", "userAssignedIdentity"]),
        ),
        identity_fields: &["identity", "properties.encryption.identity.userAssignedIdentity"],
        children: &[],
        never_drift_names: &[],
        reversibility: BOTH_WAYS,
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::KeySourcePatch,
        long_running: false,
        cis_level1: "Storage service encryption at rest (always on; Microsoft-managed keys)",
        cis_level2: "CIS Microsoft Azure Foundations 3.0.0 6.1.3: storage accounts use a customer-managed key",
        notes: "CMK needs a vault with soft delete and purge protection, and an identity on the account \
                with get/wrapKey/unwrapKey on the key. Queue and table services are covered by the CMK \
                only when created with keyType Account. Encryption scopes are not judged individually.",
    },
    CatalogEntry {
        resource_type: "Microsoft.Sql/servers",
        table_rows: "3, 3a, 3b",
        api_version: "2025-01-01",
        write_operations: &[
            "Microsoft.Sql/servers/write",
            "Microsoft.Sql/servers/encryptionProtector/write",
            "Microsoft.Sql/servers/keys/write",
        ],
        watched_children: &["encryptionProtector", "keys"],
        key_source: SQL_PROTECTOR,
        key_ref: KeyRefLayout::SqlServerKey,
        identity_fields: &["identity", "properties.primaryUserAssignedIdentityId"],
        children: &[ChildRead {
            path: "encryptionProtector/current",
            api_version: "2025-01-01",
        }],
        never_drift_names: &[],
        reversibility: BOTH_WAYS,
        write_method: WriteMethod::Put,
        write_shape: WriteShape::SqlProtector,
        long_running: true,
        cis_level1: "TDE protector is service-managed (databases encrypted at rest)",
        cis_level2: "Built-in policy: SQL servers should use customer-managed keys to encrypt data at rest",
        notes: "The protector is a child resource; to a vault key it needs the server key \
                {vault}_{key}_{version} first (versioned keys only), the server identity with \
                get/wrapKey/unwrapKey, RSA 2048/3072, and a vault with purge protection.",
    },
    CatalogEntry {
        resource_type: "Microsoft.Sql/servers/databases",
        table_rows: "4, 4a",
        api_version: "2025-01-01",
        write_operations: &[
            "Microsoft.Sql/servers/databases/write",
            "Microsoft.Sql/servers/databases/transparentDataEncryption/write",
        ],
        watched_children: &["transparentDataEncryption"],
        key_source: KeySource {
            child: Some("transparentDataEncryption/current"),
            path: &["properties", "state"],
            kind: KeySourceKind::Switch {
                on: &["Enabled"],
                off: &["Disabled"],
            },
        },
        key_ref: KeyRefLayout::None,
        identity_fields: &[],
        children: &[ChildRead {
            path: "transparentDataEncryption/current",
            api_version: "2025-01-01",
        }],
        never_drift_names: &["master"],
        reversibility: Reversibility {
            // A database's key is its server's protector: keyguard switches keys on the server.
            to_cmk: Direction::ReversibleIf(
                "never on the database: its customer-managed key is the server's encryption protector, evaluated and reverted on the server",
            ),
            // "Back to MMK" for a database means "TDE on again".
            to_mmk: Direction::Reversible,
        },
        write_method: WriteMethod::Put,
        write_shape: WriteShape::TdeState,
        long_running: true,
        cis_level1: "CIS Microsoft Azure Foundations 3.0.0 5.1.5: Transparent Data Encryption on SQL databases should be enabled",
        cis_level2: "Evaluated on the server: SQL servers should use customer-managed keys to encrypt data at rest",
        notes: "Only TDE on/off is judged here; the master database is never drift.",
    },
    CatalogEntry {
        resource_type: "Microsoft.Sql/managedInstances",
        table_rows: "5",
        api_version: "2023-08-01",
        write_operations: &[
            "Microsoft.Sql/managedInstances/write",
            "Microsoft.Sql/managedInstances/encryptionProtector/write",
            "Microsoft.Sql/managedInstances/keys/write",
        ],
        watched_children: &["encryptionProtector", "keys"],
        key_source: SQL_PROTECTOR,
        key_ref: KeyRefLayout::SqlServerKey,
        identity_fields: &["identity", "properties.primaryUserAssignedIdentityId"],
        children: &[ChildRead {
            path: "encryptionProtector/current",
            api_version: "2023-08-01",
        }],
        never_drift_names: &[],
        reversibility: BOTH_WAYS,
        write_method: WriteMethod::Put,
        write_shape: WriteShape::SqlProtector,
        long_running: true,
        cis_level1: "TDE protector is service-managed (databases encrypted at rest)",
        cis_level2: "Built-in policy: SQL managed instances should use customer-managed keys to encrypt data at rest",
        notes: "As SQL servers, under managedInstances/{mi}/keys and encryptionProtector/current.",
    },
    CatalogEntry {
        resource_type: "Microsoft.Compute/disks",
        table_rows: "6, 7a",
        api_version: "2025-01-02",
        write_operations: &["Microsoft.Compute/disks/write"],
        watched_children: &[],
        key_source: value(
            &["properties", "encryption", "type"],
            &["EncryptionAtRestWithPlatformKey"],
            &[
                "EncryptionAtRestWithCustomerKey",
                "EncryptionAtRestWithPlatformAndCustomerKeys",
            ],
            WhenAbsent::CmkIfKeyRef,
        ),
        key_ref: KeyRefLayout::EncryptionSet {
            paths: &[
                &["properties", "encryption", "diskEncryptionSetId"],
                &["properties", "securityProfile", "secureVMDiskEncryptionSetId"],
            ],
        },
        identity_fields: &["(the disk encryption set's identity)"],
        children: &[],
        never_drift_names: &[],
        reversibility: Reversibility {
            to_cmk: Direction::ReversibleIf(
                "the disk is not attached to a running VM (unattached, or its VM deallocated)",
            ),
            to_mmk: Direction::ReversibleIf(
                "the disk is not attached to a running VM and has no incremental snapshots",
            ),
        },
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::DiskEncryption,
        long_running: true,
        cis_level1: L1_PLATFORM,
        cis_level2: "CIS Microsoft Azure Foundations 3.0.0 8.3: OS and data disks should be encrypted with a customer-managed key",
        notes: "CMK goes through a disk encryption set in the same region; disks that ever used Azure \
                Disk Encryption cannot use CMK. The vault is named by the DES, not checked here.",
    },
    alert_only(
        "Microsoft.DocumentDB/databaseAccounts",
        "8",
        "2025-10-15",
        &["Microsoft.DocumentDB/databaseAccounts/write"],
        presence(&["properties", "keyVaultKeyUri"]),
        key_uri(&["properties", "keyVaultKeyUri"], None),
        &["properties.defaultIdentity"],
        ONE_WAY_TO_CMK,
        L1_PLATFORM,
        "Built-in policy: Azure Cosmos DB accounts should use customer-managed keys to encrypt data at rest",
        "Enabling CMK on an existing account is one-way (no return to service-managed keys).",
    ),
    alert_only(
        "Microsoft.DBforPostgreSQL/flexibleServers",
        "9",
        "2025-08-01",
        &["Microsoft.DBforPostgreSQL/flexibleServers/write"],
        value(
            &["properties", "dataEncryption", "type"],
            &["SystemManaged"],
            &["AzureKeyVault"],
            WhenAbsent::Unknown,
        ),
        key_uri(
            &["properties", "dataEncryption", "primaryKeyURI"],
            Some(&["properties", "dataEncryption", "primaryUserAssignedIdentityId"]),
        ),
        &[
            "properties.dataEncryption.primaryUserAssignedIdentityId",
            "properties.dataEncryption.geoBackupUserAssignedIdentityId",
        ],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy: PostgreSQL flexible servers should use customer-managed keys to encrypt data at rest",
        "The key mode is chosen at server creation; only key/identity rotation is possible afterwards.",
    ),
    CatalogEntry {
        resource_type: "Microsoft.DBforMySQL/flexibleServers",
        table_rows: "10",
        api_version: "2023-12-30",
        write_operations: &["Microsoft.DBforMySQL/flexibleServers/write"],
        watched_children: &[],
        key_source: value(
            &["properties", "dataEncryption", "type"],
            &["SystemManaged"],
            &["AzureKeyVault"],
            WhenAbsent::Unknown,
        ),
        key_ref: key_uri(
            &["properties", "dataEncryption", "primaryKeyURI"],
            Some(&["properties", "dataEncryption", "primaryUserAssignedIdentityId"]),
        ),
        identity_fields: &["identity", "properties.dataEncryption.primaryUserAssignedIdentityId"],
        children: &[],
        never_drift_names: &[],
        reversibility: BOTH_WAYS,
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::KeySourcePatch,
        long_running: true,
        cis_level1: L1_PLATFORM,
        cis_level2: "keyguard profile: MySQL flexible servers use a customer-managed key (no built-in policy in the fixture set)",
        notes: "User-assigned identity only (already attached to the server); key perms get/list/wrap/unwrap; \
                vault with 90-day soft delete and purge protection. Geo-backup keys are not managed.",
    },
    messaging_namespace(
        "Microsoft.EventHub/namespaces",
        "11",
        &["Microsoft.EventHub/namespaces/write"],
        "Built-in policy: Event Hub namespaces should use a customer-managed key for encryption",
        "CMK only on new or empty Premium/Dedicated namespaces, and it cannot be removed.",
    ),
    messaging_namespace(
        "Microsoft.ServiceBus/namespaces",
        "12",
        &["Microsoft.ServiceBus/namespaces/write"],
        "Built-in policy: Service Bus Premium namespaces should use a customer-managed key for encryption",
        "CMK only on new or empty Premium namespaces, and it cannot be removed.",
    ),
    alert_only(
        "Microsoft.ContainerRegistry/registries",
        "13",
        "2025-04-01",
        &["Microsoft.ContainerRegistry/registries/write"],
        value(
            &["properties", "encryption", "status"],
            &["disabled"],
            &["enabled"],
            WhenAbsent::Unknown,
        ),
        key_uri(
            &["properties", "encryption", "keyVaultProperties", "keyIdentifier"],
            None,
        ),
        &["properties.encryption.keyVaultProperties.identity (a client id)"],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy: Container registries should be encrypted with a customer-managed key",
        "CMK only when the (Premium) registry is created; it cannot be disabled.",
    ),
    CatalogEntry {
        resource_type: "Microsoft.CognitiveServices/accounts",
        table_rows: "14",
        api_version: "2024-10-01",
        write_operations: &["Microsoft.CognitiveServices/accounts/write"],
        watched_children: &[],
        key_source: value(
            &["properties", "encryption", "keySource"],
            &["Microsoft.CognitiveServices"],
            &["Microsoft.KeyVault"],
            WhenAbsent::Unknown,
        ),
        key_ref: fields(
            &["properties", "encryption", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            None,
        ),
        identity_fields: &["identity", "properties.encryption.keyVaultProperties.identityClientId"],
        children: &[],
        never_drift_names: &[],
        reversibility: BOTH_WAYS,
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::KeySourcePatch,
        long_running: true,
        cis_level1: L1_PLATFORM,
        cis_level2: "Built-in policy: Azure AI Services resources should encrypt data at rest with a customer-managed key (CMK)",
        notes: "Vault with soft delete and purge protection; identity with get/wrapKey/unwrapKey. \
                keyguard writes system-identity CMK (identityClientId is a client id, not in a KeyRef).",
    },
    alert_only(
        "Microsoft.MachineLearningServices/workspaces",
        "15",
        "2026-05-01",
        &["Microsoft.MachineLearningServices/workspaces/write"],
        value(
            &["properties", "encryption", "status"],
            &["Disabled"],
            &["Enabled"],
            WhenAbsent::Mmk,
        ),
        key_uri(
            &["properties", "encryption", "keyVaultProperties", "keyIdentifier"],
            Some(&["properties", "encryption", "identity", "userAssignedIdentity"]),
        ),
        &[
            "properties.encryption.identity.userAssignedIdentity",
            "properties.encryption.keyVaultProperties.identityClientId",
        ],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy: Azure Machine Learning workspaces should be encrypted with a customer-managed key",
        "The key is given at workspace creation; afterwards only another key in the same vault.",
    ),
    alert_only(
        "Microsoft.DataFactory/factories",
        "16",
        "2018-06-01",
        &["Microsoft.DataFactory/factories/write"],
        presence(&["properties", "encryption", "vaultBaseUrl"]),
        fields(
            &["properties", "encryption"],
            ["vaultBaseUrl", "keyName", "keyVersion"],
            Some(&["properties", "encryption", "identity", "userAssignedIdentity"]),
        ),
        &["identity", "properties.encryption.identity.userAssignedIdentity"],
        ONE_WAY_TO_CMK,
        L1_PLATFORM,
        "Built-in policy: Azure data factories should be encrypted with a customer-managed key",
        "CMK only on an empty factory, and it cannot be removed.",
    ),
    CatalogEntry {
        resource_type: "Microsoft.AppConfiguration/configurationStores",
        table_rows: "17",
        api_version: "2024-06-01",
        write_operations: &["Microsoft.AppConfiguration/configurationStores/write"],
        watched_children: &[],
        key_source: presence(&["properties", "encryption", "keyVaultProperties", "keyIdentifier"]),
        key_ref: key_uri(
            &["properties", "encryption", "keyVaultProperties", "keyIdentifier"],
            None,
        ),
        identity_fields: &["identity", "properties.encryption.keyVaultProperties.identityClientId"],
        children: &[],
        never_drift_names: &[],
        reversibility: BOTH_WAYS,
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::KeySourcePatch,
        long_running: true,
        cis_level1: L1_PLATFORM,
        cis_level2: "Built-in policy: App Configuration should use a customer-managed key",
        notes: "Standard/Premium tier; disabling CMK needs the current key to still be valid.",
    },
    CatalogEntry {
        resource_type: "Microsoft.Batch/batchAccounts",
        table_rows: "18",
        api_version: "2024-07-01",
        write_operations: &["Microsoft.Batch/batchAccounts/write"],
        watched_children: &[],
        key_source: value(
            &["properties", "encryption", "keySource"],
            &["Microsoft.Batch"],
            &["Microsoft.KeyVault"],
            WhenAbsent::Unknown,
        ),
        key_ref: key_uri(
            &["properties", "encryption", "keyVaultProperties", "keyIdentifier"],
            None,
        ),
        identity_fields: &["identity"],
        children: &[],
        never_drift_names: &[],
        reversibility: Reversibility {
            // The docs conflict (flow vs FAQ "only for new accounts"): treat MMK -> CMK as creation-only.
            to_cmk: Direction::CreationOnly,
            to_mmk: Direction::Reversible,
        },
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::KeySourcePatch,
        long_running: false,
        cis_level1: L1_PLATFORM,
        cis_level2: "Built-in policy: Azure Batch account should use customer-managed keys to encrypt data",
        notes: "Back to Microsoft-managed keys is possible at any time; enabling CMK on an existing \
                account is contradicted by the FAQ, so it is alert-only.",
    },
    alert_only(
        "Microsoft.Synapse/workspaces",
        "19",
        "2021-06-01",
        &[
            "Microsoft.Synapse/workspaces/write",
            "Microsoft.Synapse/workspaces/keys/write",
        ],
        presence(&["properties", "encryption", "cmk", "key", "name"]),
        key_uri(
            &["properties", "encryption", "cmk", "key", "keyVaultUrl"],
            Some(&["properties", "encryption", "cmk", "kekIdentity", "userAssignedIdentity"]),
        ),
        &[
            "properties.encryption.cmk.kekIdentity.userAssignedIdentity",
            "properties.encryption.cmk.kekIdentity.useSystemAssignedIdentity",
        ],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy: Azure Synapse workspaces should use customer-managed keys to encrypt data at rest",
        "Double encryption with CMK is chosen at workspace creation.",
    ),
    alert_only(
        "Microsoft.RecoveryServices/vaults",
        "20",
        "2025-02-01",
        &["Microsoft.RecoveryServices/vaults/write"],
        presence(&["properties", "encryption", "keyVaultProperties", "keyUri"]),
        key_uri(
            &["properties", "encryption", "keyVaultProperties", "keyUri"],
            Some(&["properties", "encryption", "kekIdentity", "userAssignedIdentity"]),
        ),
        &["identity", "properties.encryption.kekIdentity.userAssignedIdentity"],
        ONE_WAY_TO_CMK,
        L1_PLATFORM,
        "Built-in policy: [Preview]: Azure Recovery Services vaults should use customer-managed keys for encrypting backup data",
        "CMK only on vaults without protected items, and it cannot be reverted.",
    ),
    alert_only(
        "Microsoft.Kusto/clusters",
        "21",
        "2024-04-13",
        &["Microsoft.Kusto/clusters/write"],
        presence(&["properties", "keyVaultProperties"]),
        fields(
            &["properties", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            Some(&["properties", "keyVaultProperties", "userIdentity"]),
        ),
        &["identity", "properties.keyVaultProperties.userIdentity"],
        ONE_WAY_TO_CMK,
        L1_PLATFORM,
        "Built-in policy: Azure Data Explorer encryption at rest should use a customer-managed key",
        "Enabling CMK on an existing cluster is documented; removing it is not, so both are alert-only.",
    ),
    alert_only(
        "Microsoft.OperationalInsights/clusters",
        "22",
        "2023-09-01",
        &["Microsoft.OperationalInsights/clusters/write"],
        presence(&["properties", "keyVaultProperties", "keyName"]),
        fields(
            &["properties", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            None,
        ),
        &["identity"],
        ONE_WAY_TO_CMK,
        L1_PLATFORM,
        "Built-in policy: Azure Monitor Logs clusters should be encrypted with customer-managed key",
        "Dedicated clusters only; removing the key is not documented (unlink workspaces instead).",
    ),
    alert_only(
        "Microsoft.ContainerService/managedClusters",
        "23",
        "2026-05-01",
        &["Microsoft.ContainerService/managedClusters/write"],
        presence(&["properties", "diskEncryptionSetID"]),
        KeyRefLayout::EncryptionSet {
            paths: &[&["properties", "diskEncryptionSetID"]],
        },
        &["identity", "properties.identityProfile.kubeletidentity"],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy: Both operating systems and data disks in Azure Kubernetes Service clusters should be encrypted by customer-managed keys",
        "OS-disk CMK can only be enabled when the cluster is created. etcd KMS is not judged.",
    ),
    alert_only(
        "Microsoft.Databricks/workspaces",
        "24",
        "2024-05-01",
        &["Microsoft.Databricks/workspaces/write"],
        value(
            &["properties", "encryption", "entities", "managedDisk", "keySource"],
            &[],
            &["Microsoft.Keyvault"],
            WhenAbsent::Mmk,
        ),
        fields(
            &[
                "properties",
                "encryption",
                "entities",
                "managedDisk",
                "keyVaultProperties",
            ],
            ["keyVaultUri", "keyName", "keyVersion"],
            None,
        ),
        &["properties.managedDiskIdentity"],
        ONE_WAY_TO_CMK,
        L1_PLATFORM,
        "keyguard profile: Databricks managed disks use a customer-managed key (no built-in policy in the fixture set)",
        "Only the managed-disk switch is judged; DBFS root (parameters.encryption) and managed \
         services (encryption.entities.managedServices) are separate switches not evaluated here.",
    ),
    alert_only(
        "Microsoft.Automation/automationAccounts",
        "26",
        "2024-10-23",
        &["Microsoft.Automation/automationAccounts/write"],
        value(
            &["properties", "encryption", "keySource"],
            &["Microsoft.Automation"],
            &["Microsoft.Keyvault"],
            WhenAbsent::Unknown,
        ),
        fields(
            &["properties", "encryption", "keyVaultProperties"],
            ["keyvaultUri", "keyName", "keyVersion"],
            Some(&["properties", "encryption", "identity", "userAssignedIdentity"]),
        ),
        &["identity", "properties.encryption.identity.userAssignedIdentity"],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy: Azure Automation accounts should use customer-managed keys to encrypt data at rest",
        UNVERIFIED,
    ),
    alert_only(
        "Microsoft.NetApp/netAppAccounts",
        "27",
        "2026-06-01",
        &["Microsoft.NetApp/netAppAccounts/write"],
        value(
            &["properties", "encryption", "keySource"],
            &["Microsoft.NetApp"],
            &["Microsoft.KeyVault"],
            WhenAbsent::Unknown,
        ),
        fields(
            &["properties", "encryption", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            Some(&["properties", "encryption", "identity", "userAssignedIdentity"]),
        ),
        &["identity", "properties.encryption.identity.userAssignedIdentity"],
        ALERT_ONLY,
        L1_PLATFORM,
        "keyguard profile: NetApp accounts use a customer-managed key (no built-in policy in the fixture set)",
        UNVERIFIED,
    ),
    alert_only(
        "Microsoft.Cache/redisEnterprise",
        "28",
        "2025-07-01",
        &["Microsoft.Cache/redisEnterprise/write"],
        presence(&["properties", "encryption", "customerManagedKeyEncryption"]),
        key_uri(
            &[
                "properties",
                "encryption",
                "customerManagedKeyEncryption",
                "keyEncryptionKeyUrl",
            ],
            Some(&[
                "properties",
                "encryption",
                "customerManagedKeyEncryption",
                "keyEncryptionKeyIdentity",
                "userAssignedIdentityResourceId",
            ]),
        ),
        &["properties.encryption.customerManagedKeyEncryption.keyEncryptionKeyIdentity"],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy Cache/RedisCacheEnterprise_CMKEnabled_Audit: Redis Enterprise uses a customer-managed key",
        UNVERIFIED,
    ),
    alert_only(
        "Microsoft.Search/searchServices",
        "29",
        "2025-05-01",
        &["Microsoft.Search/searchServices/write"],
        value(
            &["properties", "encryptionWithCmk", "enforcement"],
            &["Disabled", "Unspecified"],
            &["Enabled"],
            WhenAbsent::Unknown,
        ),
        KeyRefLayout::None,
        &[],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy Search/CMK_Audit: search services enforce customer-managed keys",
        "The keys themselves are set per index in the data plane; ARM only shows enforcement. \
         Switching enforcement was not verified by the research: alert only.",
    ),
    alert_only(
        "Microsoft.ContainerInstance/containerGroups",
        "30",
        "2026-07-01",
        &["Microsoft.ContainerInstance/containerGroups/write"],
        presence(&["properties", "encryptionProperties"]),
        fields(
            &["properties", "encryptionProperties"],
            ["vaultBaseUrl", "keyName", "keyVersion"],
            Some(&["properties", "encryptionProperties", "identity"]),
        ),
        &["properties.encryptionProperties.identity"],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy Container Instance/CMK_Audit: container groups use a customer-managed key",
        UNVERIFIED,
    ),
    alert_only(
        "Microsoft.ElasticSan/elasticSans/volumeGroups",
        "31",
        "2025-09-01",
        &["Microsoft.ElasticSan/elasticSans/volumeGroups/write"],
        value(
            &["properties", "encryption"],
            &["EncryptionAtRestWithPlatformKey"],
            &["EncryptionAtRestWithCustomerManagedKey"],
            WhenAbsent::Unknown,
        ),
        fields(
            &["properties", "encryptionProperties", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            Some(&["properties", "encryptionProperties", "identity", "userAssignedIdentity"]),
        ),
        &[
            "identity",
            "properties.encryptionProperties.identity.userAssignedIdentity",
        ],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy ElasticSan/VolumeGroup_Encryption_Audit: volume groups use a customer-managed key",
        UNVERIFIED,
    ),
    alert_only(
        "Microsoft.StorageCache/caches",
        "32",
        "2026-01-01",
        &["Microsoft.StorageCache/caches/write"],
        presence(&["properties", "encryptionSettings", "keyEncryptionKey"]),
        key_uri(
            &["properties", "encryptionSettings", "keyEncryptionKey", "keyUrl"],
            None,
        ),
        &["identity"],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy Storage/StorageCache_CMKEnabled: HPC Cache uses a customer-managed key",
        UNVERIFIED,
    ),
    alert_only(
        "Microsoft.HDInsight/clusters",
        "33",
        "2021-06-01",
        &["Microsoft.HDInsight/clusters/write"],
        presence(&["properties", "diskEncryptionProperties", "keyName"]),
        fields(
            &["properties", "diskEncryptionProperties"],
            ["vaultUri", "keyName", "keyVersion"],
            Some(&["properties", "diskEncryptionProperties", "msiResourceId"]),
        ),
        &["identity", "properties.diskEncryptionProperties.msiResourceId"],
        ALERT_ONLY,
        L1_PLATFORM,
        "Built-in policy HDInsight/CMK_Audit: HDInsight clusters use a customer-managed key",
        UNVERIFIED,
    ),
];
