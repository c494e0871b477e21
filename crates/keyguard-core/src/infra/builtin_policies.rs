//! Built-in Azure Policy definitions ("… should use customer-managed keys …") for the catalog
//! types keyguard cannot switch to a customer-managed key itself.
//!
//! Facts are read from the definitions in Azure/azure-policy (commit and path per row), not
//! written from memory: the definition name (the GUID of its id) and the values its `effect`
//! parameter allows. Only a definition whose effect allows `Deny` can prevent a creation; the
//! others can only audit, and say so. A type without a matching built-in says that too.

use serde::Serialize;

pub const POLICY_REPO: &str = "Azure/azure-policy";
pub const POLICY_REPO_COMMIT: &str = "f4a50bacae07ddb096943c597669bcae494a6e29";
pub const POLICY_REPO_RELEASE: &str = "Built-in Policy Release 3.2026.0417.1";
const FOLDER: &str = "built-in-policies/policyDefinitions";

/// One built-in definition as published in [`POLICY_REPO`].
pub struct BuiltInPolicy {
    pub resource_type: &'static str,
    /// The definition's `name`: its id is `/providers/Microsoft.Authorization/policyDefinitions/{name}`.
    pub name: &'static str,
    pub display_name: &'static str,
    /// Under `built-in-policies/policyDefinitions/`.
    pub path: &'static str,
    pub version: &'static str,
    /// `parameters.effect.allowedValues`, as written in the definition.
    pub effects: &'static [&'static str],
    pub note: Option<&'static str>,
}

const fn policy(
    resource_type: &'static str,
    name: &'static str,
    display_name: &'static str,
    path: &'static str,
    version: &'static str,
    effects: &'static [&'static str],
) -> BuiltInPolicy {
    BuiltInPolicy {
        resource_type,
        name,
        display_name,
        path,
        version,
        effects,
        note: None,
    }
}

const AUDIT_DENY_DISABLED: &[&str] = &["Audit", "Deny", "Disabled"];
const AUDIT_DENY_DISABLED_ANY_CASE: &[&str] = &["audit", "Audit", "deny", "Deny", "disabled", "Disabled"];
const AUDIT_DISABLED: &[&str] = &["Audit", "Disabled"];

static BUILT_IN: &[BuiltInPolicy] = &[
    policy(
        "Microsoft.DocumentDB/databaseAccounts",
        "1f905d99-2ab7-462c-a6b0-f709acca6c8f",
        "Azure Cosmos DB accounts should use customer-managed keys to encrypt data at rest",
        "Cosmos DB/Cosmos_CMK_Deny.json",
        "1.1.0",
        AUDIT_DENY_DISABLED_ANY_CASE,
    ),
    policy(
        "Microsoft.DBforPostgreSQL/flexibleServers",
        "12c74c95-0efd-48da-b8d9-2a7d68470c92",
        "PostgreSQL flexible servers should use customer-managed keys to encrypt data at rest",
        "PostgreSQL/FlexibleServers_EnableCMK_AINE.json",
        "1.1.0",
        AUDIT_DENY_DISABLED,
    ),
    policy(
        "Microsoft.EventHub/namespaces",
        "a1ad735a-e96f-45d2-a7b2-9a4932cab7ec",
        "Event Hub namespaces should use a customer-managed key for encryption",
        "Event Hub/CustomerManagedKeyEnabled_Audit.json",
        "1.0.0",
        AUDIT_DISABLED,
    ),
    BuiltInPolicy {
        note: Some(
            "A Deny-capable variant exists only in the Mission category (9c376cb6-0545-4233-a22c-074540d4d935, \"… in mission platforms\", Mission/ServiceBusEncryptWithCMK_Audit.json); it is not assigned here.",
        ),
        ..policy(
            "Microsoft.ServiceBus/namespaces",
            "295fc8b1-dc9f-4f53-9c61-3f313ceab40a",
            "Service Bus Premium namespaces should use a customer-managed key for encryption",
            "Service Bus/CustomerManagedKeyEnabled_Audit.json",
            "1.0.0",
            AUDIT_DISABLED,
        )
    },
    policy(
        "Microsoft.ContainerRegistry/registries",
        "5b9159ae-1701-4a6f-9a7a-aa9c8ddd0580",
        "Container registries should be encrypted with a customer-managed key",
        "Container Registry/ACR_CMKEncryptionEnabled_Audit.json",
        "1.1.2",
        AUDIT_DENY_DISABLED,
    ),
    policy(
        "Microsoft.MachineLearningServices/workspaces",
        "ba769a63-b8cc-4b2d-abf6-ac33c7204be8",
        "Azure Machine Learning workspaces should be encrypted with a customer-managed key",
        "Machine Learning/Workspace_CMKEnabled_Audit.json",
        "1.1.0",
        AUDIT_DENY_DISABLED,
    ),
    policy(
        "Microsoft.DataFactory/factories",
        "4ec52d6d-beb7-40c4-9a9e-fe753254690e",
        "Azure data factories should be encrypted with a customer-managed key",
        "Data Factory/CustomerManagedKey_Audit.json",
        "1.0.1",
        AUDIT_DENY_DISABLED,
    ),
    policy(
        "Microsoft.Batch/batchAccounts",
        "99e9ccd8-3db9-4592-b0d1-14b1715a4d8a",
        "Azure Batch account should use customer-managed keys to encrypt data",
        "Batch/CustomerManagedKey_Audit.json",
        "1.0.1",
        AUDIT_DENY_DISABLED,
    ),
    policy(
        "Microsoft.Synapse/workspaces",
        "f7d52b2d-e161-4dfa-a82b-55e564167385",
        "Azure Synapse workspaces should use customer-managed keys to encrypt data at rest",
        "Synapse/WorkspaceCMK_Audit.json",
        "1.0.0",
        AUDIT_DENY_DISABLED,
    ),
    BuiltInPolicy {
        note: Some("A preview definition; its enableDoubleEncryption parameter keeps its default (false)."),
        ..policy(
            "Microsoft.RecoveryServices/vaults",
            "2e94d99a-8a36-4563-bc77-810d8893b671",
            "[Preview]: Azure Recovery Services vaults should use customer-managed keys for encrypting backup data",
            "Backup/AzBackupRSVault_CMKEnabled_Audit.json",
            "1.0.0-preview",
            AUDIT_DENY_DISABLED,
        )
    },
    policy(
        "Microsoft.Kusto/clusters",
        "81e74cea-30fd-40d5-802f-d72103c2aaaa",
        "Azure Data Explorer encryption at rest should use a customer-managed key",
        "Azure Data Explorer/ADX_CMK.json",
        "1.0.0",
        AUDIT_DENY_DISABLED,
    ),
    policy(
        "Microsoft.OperationalInsights/clusters",
        "1f68a601-6e6d-4e42-babf-3f643a047ea2",
        "Azure Monitor Logs clusters should be encrypted with customer-managed key",
        "Monitoring/LogAnalyticsClusters_CMKEnabled_Deny.json",
        "1.1.0",
        AUDIT_DENY_DISABLED_ANY_CASE,
    ),
    policy(
        "Microsoft.ContainerService/managedClusters",
        "7d7be79c-23ba-4033-84dd-45e2a5ccdd67",
        "Both operating systems and data disks in Azure Kubernetes Service clusters should be encrypted by customer-managed keys",
        "Kubernetes/AKS_CMK_Deny.json",
        "1.0.1",
        AUDIT_DENY_DISABLED,
    ),
    policy(
        "Microsoft.Automation/automationAccounts",
        "56a5ee18-2ae6-4810-86f7-18e39ce5629b",
        "Azure Automation accounts should use customer-managed keys to encrypt data at rest",
        "Automation/Account_CMK_Audit.json",
        "1.0.0",
        AUDIT_DENY_DISABLED,
    ),
    policy(
        "Microsoft.Cache/redisEnterprise",
        "09aa11bb-87ec-409f-bf0b-49b7c1561a87",
        "Azure Cache for Redis Enterprise should use customer-managed keys for encrypting disk data",
        "Cache/RedisCacheEnterprise_CMKEnabled_Audit.json",
        "1.0.0",
        AUDIT_DENY_DISABLED,
    ),
    BuiltInPolicy {
        note: Some(
            "Denies services whose encryptionWithCmk.enforcement is not Enabled. The Audit-effect sibling (76a56461-9dc0-40f0-82f5-2453283afa2f, Search/CMK_Audit.json) is AuditIfNotExists only.",
        ),
        ..policy(
            "Microsoft.Search/searchServices",
            "356da939-f20a-4bb9-86f8-5db445b0e354",
            "Configure Azure AI Search services to enforce customer-managed keys to encrypt data at rest",
            "Search/CMK_Deny.json",
            "1.0.1",
            &["Deny", "Disabled"],
        )
    },
    policy(
        "Microsoft.ContainerInstance/containerGroups",
        "0aa61e00-0a01-4a3c-9945-e93cffedf0e6",
        "Azure Container Instance container group should use customer-managed key for encryption",
        "Container Instance/CMK_Audit.json",
        "1.0.0",
        &["Audit", "Disabled", "Deny"],
    ),
    policy(
        "Microsoft.ElasticSan/elasticSans/volumeGroups",
        "7698f4ed-80ce-4e13-b408-ee135fa400a5",
        "ElasticSan Volume Group should use customer-managed keys to encrypt data at rest",
        "ElasticSan/VolumeGroup_Encryption_Audit.json",
        "1.0.0",
        AUDIT_DISABLED,
    ),
    policy(
        "Microsoft.StorageCache/caches",
        "970f84d8-71b6-4091-9979-ace7e3fb6dbb",
        "HPC Cache accounts should use customer-managed key for encryption",
        "Storage/StorageCache_CMKEnabled.json",
        "2.0.0",
        &["Audit", "Disabled", "Deny"],
    ),
    policy(
        "Microsoft.HDInsight/clusters",
        "64d314f6-6062-4780-a861-c23e8951bee5",
        "Azure HDInsight clusters should use customer-managed keys to encrypt data at rest",
        "HDInsight/CMK_Audit.json",
        "1.0.1",
        AUDIT_DENY_DISABLED,
    ),
];

/// Types checked against the whole release folder with no matching built-in.
const NO_BUILT_IN: &[(&str, &str)] = &[
    (
        "Microsoft.Databricks/workspaces",
        "No built-in requires a customer-managed key on Databricks workspaces (the only related one, 2cc2c3b5-c2f8-45aa-a9e6-f90d85ae8352, requires the Premium SKU). Alert only.",
    ),
    (
        "Microsoft.NetApp/netAppAccounts",
        "No built-in requires a customer-managed key on NetApp accounts. Alert only.",
    ),
];

/// A built-in policy definition in the form the deployment assigns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    pub policy_definition_id: String,
    pub display_name: &'static str,
    pub version: &'static str,
    pub effects: Vec<&'static str>,
    /// The effect the deployment assigns: `Deny` where allowed, else `Audit`.
    pub assign_effect: &'static str,
    /// Provenance: path under [`POLICY_REPO`] at [`POLICY_REPO_COMMIT`].
    pub repo_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// What Azure Policy can do for a type keyguard can only alert on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "policy", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum PolicyCoverage {
    /// A built-in whose effect allows `Deny`: creation without a customer-managed key is refused.
    Deny(PolicyRef),
    /// A built-in that offers only `Audit`: non-compliance is reported, not prevented.
    AuditOnly(PolicyRef),
    /// No built-in definition exists for this type.
    NoBuiltIn { reason: &'static str },
    /// The type is not in the table above: a new catalog type nobody looked up yet.
    NotResearched,
}

impl PolicyCoverage {
    pub fn policy(&self) -> Option<&PolicyRef> {
        match self {
            PolicyCoverage::Deny(p) | PolicyCoverage::AuditOnly(p) => Some(p),
            PolicyCoverage::NoBuiltIn { .. } | PolicyCoverage::NotResearched => None,
        }
    }
}

fn allows(effects: &[&str], effect: &str) -> bool {
    effects.iter().any(|e| e.eq_ignore_ascii_case(effect))
}

/// The built-in definitions table, for tests and reviewers.
pub fn built_in() -> &'static [BuiltInPolicy] {
    BUILT_IN
}

pub(super) fn coverage_for(resource_type: &str) -> PolicyCoverage {
    if let Some(p) = BUILT_IN
        .iter()
        .find(|p| p.resource_type.eq_ignore_ascii_case(resource_type))
    {
        let deny = allows(p.effects, "Deny");
        let policy = PolicyRef {
            policy_definition_id: format!("/providers/Microsoft.Authorization/policyDefinitions/{}", p.name),
            display_name: p.display_name,
            version: p.version,
            effects: p.effects.to_vec(),
            assign_effect: if deny { "Deny" } else { "Audit" },
            repo_path: format!("{FOLDER}/{}", p.path),
            note: p.note,
        };
        return if deny {
            PolicyCoverage::Deny(policy)
        } else {
            PolicyCoverage::AuditOnly(policy)
        };
    }
    match NO_BUILT_IN.iter().find(|(t, _)| t.eq_ignore_ascii_case(resource_type)) {
        Some((_, reason)) => PolicyCoverage::NoBuiltIn { reason },
        None => PolicyCoverage::NotResearched,
    }
}
