#![allow(clippy::unwrap_used)]

use super::*;
use crate::catalog::lookup_operation;

fn actions() -> Vec<String> {
    role_permissions().actions.into_iter().map(|p| p.action).collect()
}

fn has(list: &[String], action: &str) -> bool {
    list.iter().any(|a| a.eq_ignore_ascii_case(action))
}

#[test]
fn every_catalog_type_and_its_child_reads_are_readable() {
    let actions = actions();
    for entry in entries() {
        assert!(
            has(&actions, &format!("{}/read", entry.resource_type)),
            "{}",
            entry.resource_type
        );
    }
    for needed in [
        "Microsoft.Sql/servers/encryptionProtector/read",
        "Microsoft.Sql/managedInstances/encryptionProtector/read",
        "Microsoft.Sql/servers/databases/transparentDataEncryption/read",
        "Microsoft.Compute/virtualMachines/read",
        "Microsoft.ResourceGraph/resources/read",
    ] {
        assert!(has(&actions, needed), "{needed} missing from {actions:#?}");
    }
}

#[test]
fn writes_are_exactly_the_reversible_directions_recipes() {
    let writes: Vec<String> = actions().into_iter().filter(|a| a.ends_with("/write")).collect();
    let expected = [
        "Microsoft.AppConfiguration/configurationStores/write",
        "Microsoft.Automation/automationAccounts/write",
        "Microsoft.CognitiveServices/accounts/write",
        "Microsoft.Compute/disks/write",
        "Microsoft.DBforMySQL/flexibleServers/write",
        "Microsoft.ElasticSan/elasticSans/volumeGroups/write",
        "Microsoft.Kusto/clusters/write",
        "Microsoft.Search/searchServices/write",
        "Microsoft.Sql/managedInstances/encryptionProtector/write",
        "Microsoft.Sql/managedInstances/keys/write",
        "Microsoft.Sql/servers/databases/transparentDataEncryption/write",
        "Microsoft.Sql/servers/encryptionProtector/write",
        "Microsoft.Sql/servers/keys/write",
        "Microsoft.Storage/storageAccounts/write",
    ];
    assert_eq!(writes, expected);
    // One-way and creation-only types (Cosmos DB, Event Hubs, ...) are never written.
    for entry in entries() {
        let automated = may_be_automated(entry.reversibility.to_cmk) || may_be_automated(entry.reversibility.to_mmk);
        assert_eq!(
            !revert_write_actions(entry).is_empty(),
            automated,
            "{}",
            entry.resource_type
        );
    }
}

#[test]
fn every_revert_write_is_a_watched_operation_so_keyguard_sees_its_own_writes() {
    for entry in entries() {
        for action in revert_write_actions(entry) {
            let owner = lookup_operation(&action).map(|e| e.resource_type);
            assert_eq!(owner, Some(entry.resource_type), "{action}");
        }
    }
}

#[test]
fn no_wildcard_except_read_only_operation_status() {
    for action in actions() {
        if action.contains('*') {
            let (provider, rest) = action.split_once('/').unwrap();
            assert_eq!(rest, "locations/*/read", "{action}");
            assert!(
                provider.starts_with("Microsoft.") && !provider.contains('*'),
                "{action}"
            );
        }
        assert!(!action.ends_with("/delete") && !action.ends_with("/action"), "{action}");
    }
    // Only providers whose revert write is long-running poll an operation status.
    let pollers: Vec<String> = actions().into_iter().filter(|a| a.contains('*')).collect();
    assert_eq!(
        pollers,
        [
            "Microsoft.AppConfiguration/locations/*/read",
            "Microsoft.Automation/locations/*/read",
            "Microsoft.CognitiveServices/locations/*/read",
            "Microsoft.Compute/locations/*/read",
            "Microsoft.DBforMySQL/locations/*/read",
            "Microsoft.ElasticSan/locations/*/read",
            "Microsoft.Kusto/locations/*/read",
            "Microsoft.Search/locations/*/read",
            "Microsoft.Sql/locations/*/read",
        ]
    );
    let data: Vec<String> = role_permissions().data_actions.into_iter().map(|p| p.action).collect();
    assert_eq!(data, ["Microsoft.KeyVault/vaults/keys/read"]);
}

#[test]
fn actions_follow_child_paths() {
    assert_eq!(
        child_action("Microsoft.Sql/servers", None, "write"),
        "Microsoft.Sql/servers/write"
    );
    assert_eq!(
        child_action("Microsoft.Sql/servers", Some("keys/kv_k_v1"), "write"),
        "Microsoft.Sql/servers/keys/write"
    );
    assert_eq!(
        child_action("Microsoft.Sql/servers", Some("/encryptionProtector/current/"), "write"),
        "Microsoft.Sql/servers/encryptionProtector/write"
    );
    assert_eq!(
        child_action(
            "Microsoft.Sql/servers/databases",
            Some("transparentDataEncryption/current"),
            "read"
        ),
        "Microsoft.Sql/servers/databases/transparentDataEncryption/read"
    );
}

#[test]
fn event_subscriptions_respect_the_limit_and_cover_every_operation() {
    let subscriptions = event_subscriptions();
    let total: usize = subscriptions.iter().map(|s| s.operation_names.len()).sum();
    assert_eq!(total, watched_operations().len());
    assert_eq!(subscriptions.len(), total.div_ceil(MAX_FILTER_VALUES_PER_SUBSCRIPTION));
    for s in &subscriptions {
        assert!(!s.operation_names.is_empty() && s.operation_names.len() <= MAX_FILTER_VALUES_PER_SUBSCRIPTION);
        assert!(s.operation_names.iter().all(|v| v.len() <= MAX_FILTER_VALUE_CHARS));
        assert!(s.name.len() <= 64 && s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
    for entry in entries() {
        for op in entry.write_operations {
            let n = subscriptions
                .iter()
                .flat_map(|s| &s.operation_names)
                .filter(|v| v.eq_ignore_ascii_case(op))
                .count();
            assert_eq!(n, 1, "{op}");
        }
    }
}

#[test]
fn chunking_splits_at_the_limit() {
    // The catalog's own list is the input, so check the split rule on its length directly.
    let ops = watched_operations();
    assert!(
        ops.len() > MAX_FILTER_VALUES_PER_SUBSCRIPTION,
        "{} operations",
        ops.len()
    );
    let subscriptions = event_subscriptions();
    assert_eq!(
        subscriptions[0].operation_names.len(),
        MAX_FILTER_VALUES_PER_SUBSCRIPTION
    );
    assert_eq!(subscriptions[0].name, "keyguard-writes-1");
}

#[test]
fn every_type_keyguard_cannot_revert_to_cmk_has_a_researched_policy_answer() {
    let rows = prevention_rows();
    for entry in entries() {
        let listed = rows.iter().any(|r| r.resource_type == entry.resource_type);
        assert_eq!(
            listed,
            !may_be_automated(entry.reversibility.to_cmk),
            "{}",
            entry.resource_type
        );
    }
    for row in &rows {
        assert!(
            !matches!(row.coverage, PolicyCoverage::NotResearched),
            "{}: look up its built-in policy in {POLICY_REPO}",
            row.resource_type
        );
        if let Some(p) = row.coverage.policy() {
            let deny = p.effects.iter().any(|e| e.eq_ignore_ascii_case("Deny"));
            assert_eq!(
                matches!(row.coverage, PolicyCoverage::Deny(_)),
                deny,
                "{}",
                row.resource_type
            );
            assert_eq!(p.assign_effect, if deny { "Deny" } else { "Audit" });
            let guid = p.policy_definition_id.rsplit('/').next().unwrap();
            assert_eq!(guid.len(), 36, "{guid}");
            assert!(guid.chars().all(|c| c.is_ascii_hexdigit() || c == '-'), "{guid}");
        }
    }
    // Every row of the research table belongs to a catalog type.
    for p in built_in() {
        assert!(crate::catalog::lookup(p.resource_type).is_some(), "{}", p.resource_type);
    }
}

#[test]
fn generated_files_are_valid_json_with_the_lists_the_bicep_loads() {
    for file in files() {
        let value: serde_json::Value = serde_json::from_str(&file.contents).unwrap();
        assert!(file.contents.ends_with("}\n"), "{}", file.name);
        match file.name {
            "role.json" => {
                assert!(value["actions"].as_array().unwrap().len() > 30);
                assert_eq!(value["notActions"], serde_json::json!([]));
            }
            "event-filters.json" => assert!(!value["subscriptions"].as_array().unwrap().is_empty()),
            "policies.json" => {
                let types = value["types"].as_array().unwrap();
                let assignable = types.iter().filter(|t| t.get("policyDefinitionId").is_some()).count();
                assert_eq!(value["assignments"].as_array().unwrap().len(), assignable);
                assert!(assignable > 0 && assignable < types.len());
            }
            other => panic!("unexpected file {other}"),
        }
    }
}
