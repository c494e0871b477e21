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
    CatalogEntry, ChildRead, Direction, GeoBackupPaths, IdentityPath, KeyRefLayout, KeySource, KeySourceKind,
    Reversibility, WhenAbsent, WriteMethod, WriteShape,
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

/// An identity named by its resource id at `path`, when there is one.
const fn by_resource_id(path: Option<&'static [&'static str]>) -> Option<IdentityPath> {
    match path {
        Some(path) => Some(IdentityPath::ResourceId(path)),
        None => None,
    }
}

const fn key_uri(path: &'static [&'static str], uai: Option<&'static [&'static str]>) -> KeyRefLayout {
    KeyRefLayout::KeyUri {
        path,
        user_assigned_identity_path: by_resource_id(uai),
        geo_backup: None,
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
        user_assigned_identity_path: by_resource_id(uai),
    }
}

/// Event Hubs and Service Bus namespaces share one encryption model: `keySource` has a single
/// value (`Microsoft.KeyVault`), MMK is the absence of `encryption`, key properties are an array.
const fn messaging_namespace(
    resource_type: &'static str,
    table_rows: &'static str,
    write_operations: &'static [&'static str],
    cis_level2: &'static str,
    notes: &'static str,
) -> CatalogEntry {
    CatalogEntry {
        resource_type,
        table_rows,
        api_version: "2024-01-01",
        write_operations,
        key_source: value(
            &["properties", "encryption", "keySource"],
            &[],
            &["Microsoft.KeyVault"],
            WhenAbsent::Mmk,
        ),
        key_ref: fields(
            &["properties", "encryption", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            None,
        ),
        identity_fields: &[
            "identity",
            "properties.encryption.keyVaultProperties[].identity.userAssignedIdentity",
        ],
        reversibility: ONE_WAY_TO_CMK,
        cis_level2,
        notes,
        ..ALERT_ONLY_ROW
    }
}

/// What every alert-only row shares; rows name what differs and take the rest with
/// `..ALERT_ONLY_ROW` (no write is ever planned, so method and shape are placeholders).
const ALERT_ONLY_ROW: CatalogEntry = CatalogEntry {
    resource_type: "",
    table_rows: "",
    api_version: "",
    write_operations: &[],
    watched_children: &[],
    key_source: presence(&[]),
    key_ref: KeyRefLayout::None,
    identity_fields: &[],
    children: &[],
    never_drift_names: &[],
    reversibility: ALERT_ONLY,
    sources: &[],
    write_method: WriteMethod::Patch,
    write_shape: WriteShape::None,
    long_running: true,
    cis_level1: L1_PLATFORM,
    cis_level2: "",
    notes: UNVERIFIED,
};

/// Pages that state a row's reversibility (checked for issue 15); each changed row cites its own.
mod source {
    pub const ELASTIC_SAN: &str =
        "https://learn.microsoft.com/en-us/azure/storage/elastic-san/elastic-san-encryption-overview";
    pub const AUTOMATION: &str =
        "https://learn.microsoft.com/en-us/azure/automation/automation-secure-asset-encryption";
    /// `Set-AzAutomationAccount -AutomationServicesEncryption` switches an existing account back
    /// to `keySource: Microsoft.Automation`, the value the 2024-10-23 update schema accepts.
    pub const AUTOMATION_TO_MMK: &str =
        "https://learn.microsoft.com/powershell/module/az.automation/set-azautomationaccount";
    pub const KUSTO: &str = "https://learn.microsoft.com/en-us/azure/data-explorer/customer-managed-keys-portal";
    pub const SEARCH: &str = "https://learn.microsoft.com/en-us/azure/search/search-security-manage-encryption-keys";
    pub const REDIS: &str = "https://learn.microsoft.com/en-us/azure/redis/how-to-encryption";
    pub const BATCH: &str = "https://learn.microsoft.com/en-us/azure/batch/batch-customer-managed-key";
    pub const NETAPP: &str =
        "https://learn.microsoft.com/en-us/azure/azure-netapp-files/configure-customer-managed-keys";
    pub const APP_CONFIGURATION: &str =
        "https://learn.microsoft.com/en-us/azure/azure-app-configuration/concept-customer-managed-keys";
}

const REDIS_MAINTENANCE: &str = "switching keys on an existing instance triggers a long-running maintenance operation";
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
        sources: &[],
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
        sources: &[],
        write_method: WriteMethod::Put,
        write_shape: WriteShape::SqlProtector,
        long_running: true,
        cis_level1: "TDE protector is service-managed (databases encrypted at rest)",
        cis_level2: "Built-in policy: SQL servers should use customer-managed keys to encrypt data at rest",
        notes: "The protector is a child resource; to a vault key it needs the server key \
                {vault}_{key}_{version} ({vault}_{key} for a versionless key, accepted since 2025-01-01) first, the server identity with \
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
        sources: &[],
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
        sources: &[],
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
        sources: &[],
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::DiskEncryption,
        long_running: true,
        cis_level1: L1_PLATFORM,
        cis_level2: "CIS Microsoft Azure Foundations 3.0.0 8.3: OS and data disks should be encrypted with a customer-managed key",
        notes: "CMK goes through a disk encryption set in the same region; disks that ever used Azure \
                Disk Encryption cannot use CMK. The vault is named by the DES, not checked here.",
    },
    CatalogEntry {
        resource_type: "Microsoft.DocumentDB/databaseAccounts",
        table_rows: "8",
        api_version: "2025-10-15",
        write_operations: &["Microsoft.DocumentDB/databaseAccounts/write"],
        key_source: presence(&["properties", "keyVaultKeyUri"]),
        key_ref: key_uri(&["properties", "keyVaultKeyUri"], None),
        identity_fields: &["properties.defaultIdentity"],
        reversibility: ONE_WAY_TO_CMK,
        cis_level2: "Built-in policy: Azure Cosmos DB accounts should use customer-managed keys to encrypt data at rest",
        notes: "Enabling CMK on an existing account is one-way (no return to service-managed keys).",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.DBforPostgreSQL/flexibleServers",
        table_rows: "9",
        api_version: "2025-08-01",
        write_operations: &["Microsoft.DBforPostgreSQL/flexibleServers/write"],
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
        identity_fields: &[
            "properties.dataEncryption.primaryUserAssignedIdentityId",
            "properties.dataEncryption.geoBackupUserAssignedIdentityId",
        ],
        cis_level2: "Built-in policy: PostgreSQL flexible servers should use customer-managed keys to encrypt data at rest",
        notes: "The key mode is chosen at server creation; only key/identity rotation is possible afterwards.",
        ..ALERT_ONLY_ROW
    },
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
        // As the spec example ServerUpdateWithBYOK writes it: the identities declared in
        // `identity`, and the geo-backup key and identity beside the primary ones.
        key_ref: KeyRefLayout::KeyUri {
            path: &["properties", "dataEncryption", "primaryKeyURI"],
            user_assigned_identity_path: Some(IdentityPath::DeclaredResourceId(&[
                "properties",
                "dataEncryption",
                "primaryUserAssignedIdentityId",
            ])),
            geo_backup: Some(GeoBackupPaths {
                key_uri: &["properties", "dataEncryption", "geoBackupKeyURI"],
                user_assigned_identity: &["properties", "dataEncryption", "geoBackupUserAssignedIdentityId"],
                enabled_by: &["properties", "backup", "geoRedundantBackup"],
            }),
        },
        identity_fields: &[
            "identity",
            "properties.dataEncryption.primaryUserAssignedIdentityId",
            "properties.dataEncryption.geoBackupUserAssignedIdentityId",
        ],
        children: &[],
        never_drift_names: &[],
        reversibility: BOTH_WAYS,
        sources: &[],
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::KeySourcePatch,
        long_running: true,
        cis_level1: L1_PLATFORM,
        cis_level2: "keyguard profile: MySQL flexible servers use a customer-managed key (no built-in policy in the fixture set)",
        notes: "User-assigned identity only (already attached to the server); key perms get/list/wrap/unwrap; \
                vault with 90-day soft delete and purge protection. A geo-redundant server also needs its \
                geo-backup key and identity (in the backup region): a revert writes them back from the \
                baseline, and alerts instead when the target has none.",
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
    CatalogEntry {
        resource_type: "Microsoft.ContainerRegistry/registries",
        table_rows: "13",
        api_version: "2025-04-01",
        write_operations: &["Microsoft.ContainerRegistry/registries/write"],
        key_source: value(
            &["properties", "encryption", "status"],
            &["disabled"],
            &["enabled"],
            WhenAbsent::Unknown,
        ),
        key_ref: key_uri(
            &["properties", "encryption", "keyVaultProperties", "keyIdentifier"],
            None,
        ),
        identity_fields: &["properties.encryption.keyVaultProperties.identity (a client id)"],
        cis_level2: "Built-in policy: Container registries should be encrypted with a customer-managed key",
        notes: "CMK only when the (Premium) registry is created; it cannot be disabled.",
        ..ALERT_ONLY_ROW
    },
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
        key_ref: KeyRefLayout::Fields {
            container_path: &["properties", "encryption", "keyVaultProperties"],
            vault_uri_field: "keyVaultUri",
            key_name_field: "keyName",
            key_version_field: "keyVersion",
            user_assigned_identity_path: Some(IdentityPath::ClientId(&[
                "properties",
                "encryption",
                "keyVaultProperties",
                "identityClientId",
            ])),
        },
        identity_fields: &["identity", "properties.encryption.keyVaultProperties.identityClientId"],
        children: &[],
        never_drift_names: &[],
        reversibility: BOTH_WAYS,
        sources: &[],
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::KeySourcePatch,
        long_running: true,
        cis_level1: L1_PLATFORM,
        cis_level2: "Built-in policy: Azure AI Services resources should encrypt data at rest with a customer-managed key (CMK)",
        notes: "Vault with soft delete and purge protection; identity with get/wrapKey/unwrapKey. A \
                user-assigned identity is named by its client id (identityClientId), which a revert writes \
                back from the baseline.",
    },
    CatalogEntry {
        resource_type: "Microsoft.MachineLearningServices/workspaces",
        table_rows: "15",
        api_version: "2026-05-01",
        write_operations: &["Microsoft.MachineLearningServices/workspaces/write"],
        key_source: value(
            &["properties", "encryption", "status"],
            &["Disabled"],
            &["Enabled"],
            WhenAbsent::Mmk,
        ),
        key_ref: key_uri(
            &["properties", "encryption", "keyVaultProperties", "keyIdentifier"],
            Some(&["properties", "encryption", "identity", "userAssignedIdentity"]),
        ),
        identity_fields: &[
            "properties.encryption.identity.userAssignedIdentity",
            "properties.encryption.keyVaultProperties.identityClientId",
        ],
        cis_level2: "Built-in policy: Azure Machine Learning workspaces should be encrypted with a customer-managed key",
        notes: "The key is given at workspace creation; afterwards only another key in the same vault.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.DataFactory/factories",
        table_rows: "16",
        api_version: "2018-06-01",
        write_operations: &["Microsoft.DataFactory/factories/write"],
        key_source: presence(&["properties", "encryption", "vaultBaseUrl"]),
        key_ref: fields(
            &["properties", "encryption"],
            ["vaultBaseUrl", "keyName", "keyVersion"],
            Some(&["properties", "encryption", "identity", "userAssignedIdentity"]),
        ),
        identity_fields: &["identity", "properties.encryption.identity.userAssignedIdentity"],
        reversibility: ONE_WAY_TO_CMK,
        cis_level2: "Built-in policy: Azure data factories should be encrypted with a customer-managed key",
        notes: "CMK only on an empty factory, and it cannot be removed.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.AppConfiguration/configurationStores",
        table_rows: "17",
        api_version: "2024-06-01",
        write_operations: &["Microsoft.AppConfiguration/configurationStores/write"],
        watched_children: &[],
        key_source: presence(&["properties", "encryption", "keyVaultProperties", "keyIdentifier"]),
        key_ref: KeyRefLayout::KeyUri {
            path: &["properties", "encryption", "keyVaultProperties", "keyIdentifier"],
            user_assigned_identity_path: Some(IdentityPath::ClientId(&[
                "properties",
                "encryption",
                "keyVaultProperties",
                "identityClientId",
            ])),
            geo_backup: None,
        },
        identity_fields: &["identity", "properties.encryption.keyVaultProperties.identityClientId"],
        children: &[],
        never_drift_names: &[],
        reversibility: Reversibility {
            to_cmk: Direction::Reversible,
            // "Ensure the current customer-managed key is valid and operational": the store
            // decrypts with it before going back to its own key.
            to_mmk: Direction::ReversibleIf(
                "the current customer-managed key is still enabled and reachable by the store's identity",
            ),
        },
        sources: &[source::APP_CONFIGURATION],
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
            // The docs conflict (setup steps vs FAQ "only supported for new Batch accounts"): MMK ->
            // CMK is treated as creation-only, so going back to MMK may be permanent: one-way,
            // automated only with the profile's `allow_irreversible = true`.
            to_cmk: Direction::CreationOnly,
            to_mmk: Direction::OneWay,
        },
        sources: &[source::BATCH],
        write_method: WriteMethod::Patch,
        write_shape: WriteShape::KeySourcePatch,
        long_running: false,
        cis_level1: L1_PLATFORM,
        cis_level2: "Built-in policy: Azure Batch account should use customer-managed keys to encrypt data",
        notes: "Back to Microsoft-managed keys is possible, but enabling CMK again on an existing \
                account is contradicted by the FAQ (\"only supported for new Batch accounts\"): both \
                directions alert unless the profile sets allow_irreversible = true (then to MMK is written).",
    },
    CatalogEntry {
        resource_type: "Microsoft.Synapse/workspaces",
        table_rows: "19",
        api_version: "2021-06-01",
        write_operations: &[
            "Microsoft.Synapse/workspaces/write",
            "Microsoft.Synapse/workspaces/keys/write",
        ],
        key_source: presence(&["properties", "encryption", "cmk", "key", "name"]),
        key_ref: key_uri(
            &["properties", "encryption", "cmk", "key", "keyVaultUrl"],
            Some(&["properties", "encryption", "cmk", "kekIdentity", "userAssignedIdentity"]),
        ),
        identity_fields: &[
            "properties.encryption.cmk.kekIdentity.userAssignedIdentity",
            "properties.encryption.cmk.kekIdentity.useSystemAssignedIdentity",
        ],
        cis_level2: "Built-in policy: Azure Synapse workspaces should use customer-managed keys to encrypt data at rest",
        notes: "Double encryption with CMK is chosen at workspace creation.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.RecoveryServices/vaults",
        table_rows: "20",
        api_version: "2025-02-01",
        write_operations: &["Microsoft.RecoveryServices/vaults/write"],
        key_source: presence(&["properties", "encryption", "keyVaultProperties", "keyUri"]),
        key_ref: key_uri(
            &["properties", "encryption", "keyVaultProperties", "keyUri"],
            Some(&["properties", "encryption", "kekIdentity", "userAssignedIdentity"]),
        ),
        identity_fields: &["identity", "properties.encryption.kekIdentity.userAssignedIdentity"],
        reversibility: ONE_WAY_TO_CMK,
        cis_level2: "Built-in policy: [Preview]: Azure Recovery Services vaults should use customer-managed keys for encrypting backup data",
        notes: "CMK only on vaults without protected items, and it cannot be reverted.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.Kusto/clusters",
        table_rows: "21",
        api_version: "2024-04-13",
        write_operations: &["Microsoft.Kusto/clusters/write"],
        key_source: presence(&["properties", "keyVaultProperties"]),
        key_ref: fields(
            &["properties", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            Some(&["properties", "keyVaultProperties", "userIdentity"]),
        ),
        identity_fields: &["identity", "properties.keyVaultProperties.userIdentity"],
        reversibility: Reversibility {
            // Enabled on existing clusters, and removable ("Select Off to remove the customer-managed key").
            to_cmk: Direction::Reversible,
            to_mmk: Direction::ReversibleIf(
                "the key is removed in the portal (Encryption > Customer-managed key > Off): ARM's body for removing it is not documented, so keyguard never writes it",
            ),
        },
        sources: &[source::KUSTO],
        write_shape: WriteShape::KeySourcePatch,
        cis_level2: "Built-in policy: Azure Data Explorer encryption at rest should use a customer-managed key",
        notes: "CMK can be enabled on an existing cluster (reverted automatically) and removed in the \
                portal; ARM's removal body is not documented, so to MMK only alerts.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.OperationalInsights/clusters",
        table_rows: "22",
        api_version: "2023-09-01",
        write_operations: &["Microsoft.OperationalInsights/clusters/write"],
        key_source: presence(&["properties", "keyVaultProperties", "keyName"]),
        key_ref: fields(
            &["properties", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            None,
        ),
        identity_fields: &["identity"],
        reversibility: ONE_WAY_TO_CMK,
        cis_level2: "Built-in policy: Azure Monitor Logs clusters should be encrypted with customer-managed key",
        notes: "Dedicated clusters only; removing the key is not documented (unlink workspaces instead).",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.ContainerService/managedClusters",
        table_rows: "23",
        api_version: "2026-05-01",
        write_operations: &["Microsoft.ContainerService/managedClusters/write"],
        key_source: presence(&["properties", "diskEncryptionSetID"]),
        key_ref: KeyRefLayout::EncryptionSet {
            paths: &[&["properties", "diskEncryptionSetID"]],
        },
        identity_fields: &["identity", "properties.identityProfile.kubeletidentity"],
        cis_level2: "Built-in policy: Both operating systems and data disks in Azure Kubernetes Service clusters should be encrypted by customer-managed keys",
        notes: "OS-disk CMK can only be enabled when the cluster is created. etcd KMS is not judged.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.Databricks/workspaces",
        table_rows: "24",
        api_version: "2024-05-01",
        write_operations: &["Microsoft.Databricks/workspaces/write"],
        key_source: value(
            &["properties", "encryption", "entities", "managedDisk", "keySource"],
            &[],
            &["Microsoft.Keyvault"],
            WhenAbsent::Mmk,
        ),
        key_ref: fields(
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
        identity_fields: &["properties.managedDiskIdentity"],
        reversibility: ONE_WAY_TO_CMK,
        cis_level2: "keyguard profile: Databricks managed disks use a customer-managed key (no built-in policy in the fixture set)",
        notes: "Only the managed-disk switch is judged; DBFS root (parameters.encryption) and managed \
             services (encryption.entities.managedServices) are separate switches not evaluated here.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.Automation/automationAccounts",
        table_rows: "26",
        api_version: "2024-10-23",
        write_operations: &["Microsoft.Automation/automationAccounts/write"],
        key_source: value(
            &["properties", "encryption", "keySource"],
            &["Microsoft.Automation"],
            &["Microsoft.Keyvault"],
            WhenAbsent::Unknown,
        ),
        key_ref: fields(
            &["properties", "encryption", "keyVaultProperties"],
            ["keyvaultUri", "keyName", "keyVersion"],
            Some(&["properties", "encryption", "identity", "userAssignedIdentity"]),
        ),
        identity_fields: &["identity", "properties.encryption.identity.userAssignedIdentity"],
        cis_level2: "Built-in policy: Azure Automation accounts should use customer-managed keys to encrypt data at rest",
        // CMK is switched on after creation with an update; Set-AzAutomationAccount
        // -AutomationServicesEncryption switches an existing account back.
        reversibility: BOTH_WAYS,
        sources: &[source::AUTOMATION, source::AUTOMATION_TO_MMK],
        write_shape: WriteShape::KeySourcePatch,
        notes: "CMK is enabled on an existing account with an update (not at creation); the account \
                identity needs get/wrapKey/unwrapKey on the key.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.NetApp/netAppAccounts",
        table_rows: "27",
        api_version: "2026-06-01",
        write_operations: &["Microsoft.NetApp/netAppAccounts/write"],
        key_source: value(
            &["properties", "encryption", "keySource"],
            &["Microsoft.NetApp"],
            &["Microsoft.KeyVault"],
            WhenAbsent::Unknown,
        ),
        key_ref: fields(
            &["properties", "encryption", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            Some(&["properties", "encryption", "identity", "userAssignedIdentity"]),
        ),
        identity_fields: &["identity", "properties.encryption.identity.userAssignedIdentity"],
        cis_level2: "keyguard profile: NetApp accounts use a customer-managed key (no built-in policy in the fixture set)",
        // Existing accounts can move to CMK; volumes cannot go back: one-way (no write: the key
        // reference needs the vault's resource id, which a KeyRef does not carry).
        reversibility: ONE_WAY_TO_CMK,
        sources: &[source::NETAPP],
        notes: "To CMK is one-way (existing volumes migrate and cannot return to Microsoft-managed keys); alert only.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.Cache/redisEnterprise",
        table_rows: "28",
        api_version: "2025-07-01",
        write_operations: &["Microsoft.Cache/redisEnterprise/write"],
        key_source: presence(&["properties", "encryption", "customerManagedKeyEncryption"]),
        key_ref: key_uri(
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
        identity_fields: &["properties.encryption.customerManagedKeyEncryption.keyEncryptionKeyIdentity"],
        cis_level2: "Built-in policy Cache/RedisCacheEnterprise_CMKEnabled_Audit: Redis Enterprise uses a customer-managed key",
        // Possible both ways on an existing instance, but it "triggers a long-running maintenance
        // operation": only with the profile's explicit opt-in.
        reversibility: Reversibility {
            to_cmk: Direction::Disruptive(REDIS_MAINTENANCE),
            to_mmk: Direction::Disruptive(REDIS_MAINTENANCE),
        },
        sources: &[source::REDIS],
        notes: "Switching keys on an existing instance triggers a long maintenance operation: never \
                automatic; with allow_irreversible = true still alert-only until a verified write body exists.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.Search/searchServices",
        table_rows: "29",
        api_version: "2025-05-01",
        write_operations: &["Microsoft.Search/searchServices/write"],
        key_source: value(
            &["properties", "encryptionWithCmk", "enforcement"],
            &["Disabled", "Unspecified"],
            &["Enabled"],
            WhenAbsent::Unknown,
        ),
        key_ref: KeyRefLayout::None,
        identity_fields: &[],
        cis_level2: "Built-in policy Search/CMK_Audit: search services enforce customer-managed keys",
        // `encryptionWithCmk.enforcement` is updated on existing services, both ways.
        reversibility: BOTH_WAYS,
        sources: &[source::SEARCH],
        write_shape: WriteShape::KeySourcePatch,
        notes: "The keys themselves are set per index in the data plane; ARM only shows enforcement, \
                which keyguard switches back. Enforcing does not encrypt indexes that already exist.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.ContainerInstance/containerGroups",
        table_rows: "30",
        api_version: "2026-07-01",
        write_operations: &["Microsoft.ContainerInstance/containerGroups/write"],
        key_source: presence(&["properties", "encryptionProperties"]),
        key_ref: fields(
            &["properties", "encryptionProperties"],
            ["vaultBaseUrl", "keyName", "keyVersion"],
            Some(&["properties", "encryptionProperties", "identity"]),
        ),
        identity_fields: &["properties.encryptionProperties.identity"],
        cis_level2: "Built-in policy Container Instance/CMK_Audit: container groups use a customer-managed key",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.ElasticSan/elasticSans/volumeGroups",
        table_rows: "31",
        api_version: "2025-09-01",
        write_operations: &["Microsoft.ElasticSan/elasticSans/volumeGroups/write"],
        key_source: value(
            &["properties", "encryption"],
            &["EncryptionAtRestWithPlatformKey"],
            &["EncryptionAtRestWithCustomerManagedKey"],
            WhenAbsent::Unknown,
        ),
        key_ref: fields(
            &["properties", "encryptionProperties", "keyVaultProperties"],
            ["keyVaultUri", "keyName", "keyVersion"],
            Some(&["properties", "encryptionProperties", "identity", "userAssignedIdentity"]),
        ),
        identity_fields: &[
            "identity",
            "properties.encryptionProperties.identity.userAssignedIdentity",
        ],
        cis_level2: "Built-in policy ElasticSan/VolumeGroup_Encryption_Audit: volume groups use a customer-managed key",
        // "You can switch between customer-managed and platform-managed keys at any time."
        reversibility: BOTH_WAYS,
        sources: &[source::ELASTIC_SAN],
        write_shape: WriteShape::KeySourcePatch,
        notes: "Switching re-wraps the data encryption key; no downtime. The volume group's identity \
                needs get/wrapKey/unwrapKey on the key.",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.StorageCache/caches",
        table_rows: "32",
        api_version: "2026-01-01",
        write_operations: &["Microsoft.StorageCache/caches/write"],
        key_source: presence(&["properties", "encryptionSettings", "keyEncryptionKey"]),
        key_ref: key_uri(
            &["properties", "encryptionSettings", "keyEncryptionKey", "keyUrl"],
            None,
        ),
        identity_fields: &["identity"],
        cis_level2: "Built-in policy Storage/StorageCache_CMKEnabled: HPC Cache uses a customer-managed key",
        ..ALERT_ONLY_ROW
    },
    CatalogEntry {
        resource_type: "Microsoft.HDInsight/clusters",
        table_rows: "33",
        api_version: "2021-06-01",
        write_operations: &["Microsoft.HDInsight/clusters/write"],
        key_source: presence(&["properties", "diskEncryptionProperties", "keyName"]),
        key_ref: fields(
            &["properties", "diskEncryptionProperties"],
            ["vaultUri", "keyName", "keyVersion"],
            Some(&["properties", "diskEncryptionProperties", "msiResourceId"]),
        ),
        identity_fields: &["identity", "properties.diskEncryptionProperties.msiResourceId"],
        cis_level2: "Built-in policy HDInsight/CMK_Audit: HDInsight clusters use a customer-managed key",
        ..ALERT_ONLY_ROW
    },
];
