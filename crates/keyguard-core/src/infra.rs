//! What a deployment of keyguard needs, derived from the catalog so the two cannot disagree:
//! the custom role's permissions, the Event Grid filters that make keyguard look, and the
//! built-in Azure Policy definitions for the directions keyguard cannot revert.
//!
//! Pure data. `keyguard infra export` writes [`files`] to `infra/generated/`, the Bicep in
//! `infra/` reads them with `loadJsonContent()`, and a test fails when the committed copies
//! differ from what the catalog says now.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::{CatalogEntry, Direction, KeyRef, RevertTarget, entries};

mod builtin_policies;

pub use builtin_policies::{
    BuiltInPolicy, POLICY_REPO, POLICY_REPO_COMMIT, POLICY_REPO_RELEASE, PolicyCoverage, PolicyRef, built_in,
};

/// Event Grid accepts at most 25 filter values across all advanced filters of one event
/// subscription (and 512 characters per string value).
pub const MAX_FILTER_VALUES_PER_SUBSCRIPTION: usize = 25;
pub const MAX_FILTER_VALUE_CHARS: usize = 512;
pub const EVENT_FILTER_LIMITS_SOURCE: &str = "https://learn.microsoft.com/azure/event-grid/event-filtering#limitations";
/// The ARM event keyguard acts on; a subscription-wide system topic of type
/// `Microsoft.Resources.Subscriptions` publishes it for every write in the subscription.
pub const WRITE_SUCCESS_EVENT: &str = "Microsoft.Resources.ResourceWriteSuccess";
/// The event field that carries the RBAC action of the write (`Microsoft.Storage/storageAccounts/write`).
pub const OPERATION_NAME_KEY: &str = "data.operationName";
/// Prefix of the generated event subscription names (`keyguard-writes-1`, ...).
pub const EVENT_SUBSCRIPTION_PREFIX: &str = "keyguard-writes-";

/// One permission of the custom role and the reason keyguard needs it, so a reviewer can check
/// each line against the code that makes the call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Permission {
    pub action: String,
    pub why: String,
}

/// A call the pipeline makes that is not one of a catalog type's own reads or revert writes.
struct ExtraCall {
    action: &'static str,
    /// Only needed while this catalog type is in the catalog (`None`: always).
    needed_by: Option<&'static str>,
    why: &'static str,
}

const EXTRA_READS: &[ExtraCall] = &[
    ExtraCall {
        action: "Microsoft.Compute/virtualMachines/read",
        needed_by: Some("Microsoft.Compute/disks"),
        why: "before a disk revert, GET the disk's VM with $expand=instanceView: a disk attached to a running VM is never switched",
    },
    ExtraCall {
        action: "Microsoft.ResourceGraph/resources/read",
        needed_by: None,
        why: "sweeps (timer, POST /api/scan, keyguard scan) list the catalog types through Resource Graph",
    },
    ExtraCall {
        action: "Microsoft.Management/managementGroups/descendants/read",
        needed_by: None,
        why: "an ARM-list sweep of a management group lists its subscriptions (takes effect only when the role is assigned at management-group scope)",
    },
];

/// Key Vault data plane: the key's attributes (enabled, expiry) before a revert to it.
const VAULT_KEY_READ: &str = "Microsoft.KeyVault/vaults/keys/read";

/// Managed HSM's data plane is authorised by the HSM's own local RBAC, not by Azure role
/// assignments, so this read is granted there (the built-in local role below) and is not part
/// of the Azure custom role.
pub const MANAGED_HSM_KEY_READ: &str = "Microsoft.KeyVault/managedHsm/keys/read/action";
pub const MANAGED_HSM_LOCAL_ROLE: &str = "Managed HSM Crypto Auditor";
pub const MANAGED_HSM_LOCAL_ROLE_ID: &str = "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3";
pub const MANAGED_HSM_ROLES_SOURCE: &str = "https://learn.microsoft.com/azure/key-vault/managed-hsm/built-in-roles";

/// Operation-status reads under `{provider}/locations/` (`…/azureAsyncOperation`,
/// `…/operationResults`, …): their names differ per service, so the role grants this read-only
/// pattern per provider, as Microsoft's own built-in roles do (SQL DB Contributor:
/// `Microsoft.Sql/locations/*/read`).
pub const OPERATION_STATUS_READ_SOURCE: &str =
    "https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/databases#sql-db-contributor";

/// Whether keyguard may write in this direction: always, or once the pipeline has verified the
/// stated precondition (a disk not attached to a running VM).
fn may_be_automated(direction: Direction) -> bool {
    matches!(direction, Direction::Reversible | Direction::ReversibleIf(_))
}

/// Targets to ask the catalog's write recipe about: one of each key shape a revert can carry.
fn sample_targets(direction_to_cmk: bool) -> Vec<RevertTarget> {
    if !direction_to_cmk {
        return vec![RevertTarget::Mmk];
    }
    // Both samples are constants that parse; `flatten` keeps a typo from panicking at run time
    // (the infra tests would see a missing write action instead).
    [
        KeyRef::new("https://vault.vault.azure.net", "key", Some("version"), None),
        KeyRef::encryption_set(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des",
        ),
    ]
    .into_iter()
    .flatten()
    .map(RevertTarget::Cmk)
    .collect()
}

/// The RBAC action `verb` (`read`, `write`) on `relative_path` under a resource of
/// `resource_type`: child paths alternate type and name segments (`encryptionProtector/current`,
/// `keys/{name}`), and the action names the types only.
fn child_action(resource_type: &str, relative_path: Option<&str>, verb: &str) -> String {
    match relative_path {
        None => format!("{resource_type}/{verb}"),
        Some(path) => {
            let child_types: Vec<&str> = path.trim_matches('/').split('/').step_by(2).collect();
            format!("{resource_type}/{}/{verb}", child_types.join("/"))
        }
    }
}

fn provider_of(resource_type: &str) -> &str {
    resource_type.split('/').next().unwrap_or(resource_type)
}

/// The write actions the revert recipe of `entry` uses in the directions keyguard may automate.
pub fn revert_write_actions(entry: &CatalogEntry) -> Vec<String> {
    let mut actions = Vec::new();
    for (direction, to_cmk) in [(entry.reversibility.to_mmk, false), (entry.reversibility.to_cmk, true)] {
        if !may_be_automated(direction) {
            continue;
        }
        for target in sample_targets(to_cmk) {
            for write in entry.revert_writes(&target) {
                let action = child_action(entry.resource_type, write.relative_path.as_deref(), "write");
                if !actions.iter().any(|a: &String| a.eq_ignore_ascii_case(&action)) {
                    actions.push(action);
                }
            }
        }
    }
    actions
}

/// Collects permissions, deduplicated case-insensitively (RBAC compares actions that way) and
/// sorted, each with every reason that asked for it.
#[derive(Default)]
struct PermissionSet(BTreeMap<String, Permission>);

impl PermissionSet {
    fn add(&mut self, action: String, why: &str) {
        let entry = self.0.entry(action.to_ascii_lowercase()).or_insert_with(|| Permission {
            action,
            why: String::new(),
        });
        if !entry.why.split("; ").any(|w| w == why) {
            if !entry.why.is_empty() {
                entry.why.push_str("; ");
            }
            entry.why.push_str(why);
        }
    }

    fn into_vec(self) -> Vec<Permission> {
        self.0.into_values().collect()
    }
}

/// The custom role: control-plane actions and data actions, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolePermissions {
    pub actions: Vec<Permission>,
    pub data_actions: Vec<Permission>,
}

pub fn role_permissions() -> RolePermissions {
    let mut actions = PermissionSet::default();
    for entry in entries() {
        actions.add(
            format!("{}/read", entry.resource_type),
            "read the resource: keyguard acts on its current state, not on what the event says",
        );
        for child in entry.children {
            actions.add(
                child_action(entry.resource_type, Some(child.path), "read"),
                "read the child resource that holds the key setting",
            );
        }
        let writes = revert_write_actions(entry);
        for action in &writes {
            actions.add(action.clone(), "revert write in a reversible direction");
        }
        if entry.long_running && !writes.is_empty() {
            actions.add(
                format!("{}/locations/*/read", provider_of(entry.resource_type)),
                "poll the long-running revert write's operation status",
            );
        }
    }
    for extra in EXTRA_READS {
        let needed = extra
            .needed_by
            .is_none_or(|t| entries().iter().any(|e| e.resource_type.eq_ignore_ascii_case(t)));
        if needed {
            actions.add(extra.action.to_string(), extra.why);
        }
    }
    let mut data_actions = PermissionSet::default();
    data_actions.add(
        VAULT_KEY_READ.to_string(),
        "read the key's attributes (enabled, expiry) before reverting to it; never its material",
    );
    RolePermissions {
        actions: actions.into_vec(),
        data_actions: data_actions.into_vec(),
    }
}

/// Every ARM operation that makes keyguard look, in catalog order, each once.
pub fn watched_operations() -> Vec<&'static str> {
    let mut operations: Vec<&'static str> = Vec::new();
    for op in entries().iter().flat_map(|e| e.write_operations.iter().copied()) {
        if !operations.iter().any(|o| o.eq_ignore_ascii_case(op)) {
            operations.push(op);
        }
    }
    operations
}

/// One event subscription on the system topic: a `StringIn` filter on [`OPERATION_NAME_KEY`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSubscriptionSpec {
    pub name: String,
    pub operation_names: Vec<&'static str>,
}

/// The watched operations split into as many event subscriptions as Event Grid's limit needs.
pub fn event_subscriptions() -> Vec<EventSubscriptionSpec> {
    watched_operations()
        .chunks(MAX_FILTER_VALUES_PER_SUBSCRIPTION)
        .enumerate()
        .map(|(i, chunk)| EventSubscriptionSpec {
            name: format!("{EVENT_SUBSCRIPTION_PREFIX}{}", i + 1),
            operation_names: chunk.to_vec(),
        })
        .collect()
}

/// Catalog types whose switch to a customer-managed key keyguard cannot make (one-way or
/// creation-only), with the built-in policy that can stop them being created without one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreventionRow {
    pub resource_type: &'static str,
    pub to_cmk: String,
    #[serde(flatten)]
    pub coverage: PolicyCoverage,
}

pub fn prevention_rows() -> Vec<PreventionRow> {
    entries()
        .iter()
        .filter(|e| !may_be_automated(e.reversibility.to_cmk))
        .map(|e| PreventionRow {
            resource_type: e.resource_type,
            to_cmk: e.reversibility.to_cmk.label(),
            coverage: builtin_policies::coverage_for(e.resource_type),
        })
        .collect()
}

/// A file of `infra/generated/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    pub name: &'static str,
    pub contents: String,
}

const GENERATED_BY: &str = "keyguard infra export --out infra/generated (from the catalog; do not edit by hand)";

fn pretty(value: &serde_json::Value) -> String {
    // Serialising a `Value` cannot fail: its keys are strings.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

fn role_file() -> serde_json::Value {
    let role = role_permissions();
    let names = |list: &[Permission]| list.iter().map(|p| p.action.clone()).collect::<Vec<_>>();
    let why = |list: &[Permission]| {
        list.iter()
            .map(|p| (p.action.clone(), serde_json::Value::String(p.why.clone())))
            .collect::<serde_json::Map<_, _>>()
    };
    serde_json::json!({
        "generatedBy": GENERATED_BY,
        "roleName": "keyguard encryption-at-rest remediator",
        "description": "Reads the catalog's resource types and the key settings they hold, reverts encryption key-source drift where both directions are possible, and reads Key Vault key attributes. Generated from keyguard's catalog.",
        "actions": names(&role.actions),
        "notActions": [],
        "dataActions": names(&role.data_actions),
        "notDataActions": [],
        "why": {
            "actions": why(&role.actions),
            "dataActions": why(&role.data_actions),
            "operationStatusReads": OPERATION_STATUS_READ_SOURCE,
        },
        "managedHsm": {
            "dataActions": [MANAGED_HSM_KEY_READ],
            "grantedBy": "the HSM's local RBAC, not the Azure custom role: az keyvault role assignment create --hsm-name HSM --role \"Managed HSM Crypto Auditor\" --scope /keys --assignee-object-id PRINCIPAL",
            "localRole": MANAGED_HSM_LOCAL_ROLE,
            "localRoleId": MANAGED_HSM_LOCAL_ROLE_ID,
            "source": MANAGED_HSM_ROLES_SOURCE,
        },
    })
}

fn event_filters_file() -> serde_json::Value {
    let subscriptions = event_subscriptions();
    serde_json::json!({
        "generatedBy": GENERATED_BY,
        "includedEventTypes": [WRITE_SUCCESS_EVENT],
        "operatorType": "StringIn",
        "key": OPERATION_NAME_KEY,
        "maxValuesPerSubscription": MAX_FILTER_VALUES_PER_SUBSCRIPTION,
        "limitsSource": EVENT_FILTER_LIMITS_SOURCE,
        "note": format!(
            "{} watched operations need {} event subscription(s): Event Grid allows {} filter values per subscription.",
            watched_operations().len(),
            subscriptions.len(),
            MAX_FILTER_VALUES_PER_SUBSCRIPTION
        ),
        "subscriptions": subscriptions,
    })
}

fn policies_file() -> serde_json::Value {
    let rows = prevention_rows();
    // The Bicep loops over this flat list: the assignable rows only, with the effect to assign.
    let assignments: Vec<serde_json::Value> = rows
        .iter()
        .filter_map(|row| {
            row.coverage.policy().map(|p| {
                serde_json::json!({
                    "resourceType": row.resource_type,
                    "policyDefinitionId": p.policy_definition_id,
                    "effect": p.assign_effect,
                })
            })
        })
        .collect();
    serde_json::json!({
        "generatedBy": GENERATED_BY,
        "source": {
            "repository": POLICY_REPO,
            "commit": POLICY_REPO_COMMIT,
            "release": POLICY_REPO_RELEASE,
            "folder": "built-in-policies/policyDefinitions",
        },
        "note": "Types keyguard cannot switch to a customer-managed key. With enablePolicyDeny the deployment assigns each built-in below: effect Deny where the definition allows it, else Audit (the definition offers no Deny). Types without a built-in can only be alerted on.",
        "types": rows,
        "assignments": assignments,
    })
}

/// The files of `infra/generated/`, in their exact committed form.
pub fn files() -> Vec<GeneratedFile> {
    vec![
        GeneratedFile {
            name: "role.json",
            contents: pretty(&role_file()),
        },
        GeneratedFile {
            name: "event-filters.json",
            contents: pretty(&event_filters_file()),
        },
        GeneratedFile {
            name: "policies.json",
            contents: pretty(&policies_file()),
        },
    ]
}

#[cfg(test)]
mod tests;
