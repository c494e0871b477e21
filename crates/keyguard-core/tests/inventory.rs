#![allow(clippy::unwrap_used)]
//! `keyguard scan --from-file`: Azure CLI exports parsed, merged and judged, with the expected
//! verdict of every resource written out. The samples are in `testdata/az-export/` (its README
//! names the documentation each is modelled on); Microsoft's own ARM examples come from the
//! shared fixtures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keyguard_core::catalog::KeyRef;
use keyguard_core::inventory::{
    Inventory, InventoryError, merge, parse_export, parse_export_bytes, resource_graph_query,
};
use keyguard_core::{Config, DriftReason, EncryptionState, Verdict, entries, evaluate_view};
use proptest::prelude::*;
use serde_json::{Value, json};
use time::macros::datetime;

const SUB: &str = "/subscriptions/7c2f1a9e-3b4d-4e61-9a8f-0d5c2b6e1f47";

const EXPORTS: &[&str] = &[
    "graph-query.json",
    "graph-query-v1.json",
    "storage-account-list.json",
    "sql-server-list.json",
    "sql-tde-key-show.json",
    "sql-db-list.json",
    "sql-db-tde-show.json",
    "disk-list.json",
    "resource-list.json",
    "mixed.json",
    "export.jsonl",
];

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/az-export")
}

fn parse(name: &str) -> Inventory {
    let path = testdata().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_export(&text, name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn config(require: &str) -> Config {
    Config::from_toml_str(
        &format!("[[profile]]\nname = \"{require}\"\nrequire = \"{require}\"\n"),
        "test",
    )
    .unwrap()
}

fn label(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Compliant => "compliant",
        Verdict::Drift(_) => "drift",
        Verdict::Exempt { .. } => "exempt",
        Verdict::Unsupported { .. } => "unsupported",
    }
}

/// Resource id (relative to the subscription) -> (verdict under a CMK profile, under an MMK profile).
fn verdict_table(inventory: &Inventory) -> BTreeMap<String, (&'static str, &'static str)> {
    let (cmk, mmk) = (config("cmk"), config("mmk"));
    let now = datetime!(2026-03-01 0:00 UTC);
    inventory
        .items
        .iter()
        .map(|item| {
            let under = |c: &Config| label(&evaluate_view(&item.id, &item.view(), c, now).verdict);
            let short = item
                .id
                .as_str()
                .strip_prefix(SUB)
                .unwrap_or(item.id.as_str())
                .to_string();
            (short, (under(&cmk), under(&mmk)))
        })
        .collect()
}

fn table(rows: &[(&str, &'static str, &'static str)]) -> BTreeMap<String, (&'static str, &'static str)> {
    rows.iter().map(|(id, c, m)| ((*id).to_string(), (*c, *m))).collect()
}

fn item<'a>(inventory: &'a Inventory, id_suffix: &str) -> &'a keyguard_core::inventory::InventoryItem {
    inventory
        .items
        .iter()
        .find(|i| i.id.as_str().ends_with(id_suffix))
        .unwrap_or_else(|| panic!("no item ending in {id_suffix}"))
}

// -------------------------------------------------------------------------------------------
// Every export together

#[test]
fn all_exports_merged_give_the_expected_verdict_per_resource() {
    let inventory = merge(EXPORTS.iter().map(|name| parse(name)).collect());
    let expected = table(&[
        // graph-query.json (az graph query, resource-graph 2.x)
        (
            "/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/stprodlogs01",
            "drift",
            "compliant",
        ),
        (
            "/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/stprodvault01",
            "compliant",
            "drift",
        ),
        (
            "/resourceGroups/rg-prod/providers/Microsoft.Compute/disks/vm02-datadisk",
            "compliant",
            "drift",
        ),
        // No encryption protector in any file: the key source is unknown, which is never compliant.
        (
            "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-02",
            "drift",
            "drift",
        ),
        (
            "/resourceGroups/rg-data/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-prod-orders",
            "compliant",
            "drift",
        ),
        (
            "/resourceGroups/rg-prod/providers/Microsoft.KeyVault/vaults/kv-prod-keys",
            "unsupported",
            "unsupported",
        ),
        // graph-query-v1.json (resource-graph 1.x bare array, `project id, type, properties`)
        (
            "/resourceGroups/rg-dev/providers/Microsoft.Storage/storageAccounts/stdevscratch01",
            "drift",
            "compliant",
        ),
        (
            "/resourceGroups/rg-dev/providers/Microsoft.EventHub/namespaces/evh-dev-ingest",
            "drift",
            "compliant",
        ),
        // storage-account-list.json (az storage account list, camelCase CLI model)
        (
            "/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/stprodpay01",
            "compliant",
            "drift",
        ),
        (
            "/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/stprodtmp01",
            "drift",
            "compliant",
        ),
        // sql-server-list.json + sql-tde-key-show.json
        (
            "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-01",
            "drift",
            "compliant",
        ),
        (
            "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-03",
            "compliant",
            "drift",
        ),
        // sql-db-list.json + sql-db-tde-show.json
        (
            "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-01/databases/master",
            "unsupported",
            "unsupported",
        ),
        (
            "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-01/databases/orders",
            "compliant",
            "compliant",
        ),
        (
            "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-01/databases/legacy",
            "drift",
            "drift",
        ),
        // disk-list.json (az disk list)
        (
            "/resourceGroups/rg-prod/providers/Microsoft.Compute/disks/vm01-osdisk",
            "drift",
            "compliant",
        ),
        (
            "/resourceGroups/rg-prod/providers/Microsoft.Compute/disks/vm01-datadisk",
            "compliant",
            "drift",
        ),
        // mixed.json
        (
            "/resourceGroups/rg-data/providers/Microsoft.DBforPostgreSQL/flexibleServers/psql-prod-01",
            "drift",
            "compliant",
        ),
        (
            "/resourceGroups/rg-shared/providers/Microsoft.Storage/storageAccounts/stmixcmk01",
            "compliant",
            "drift",
        ),
        (
            "/resourceGroups/rg-data/providers/Microsoft.Sql/managedInstances/sqlmi-prod-01",
            "drift",
            "compliant",
        ),
        (
            "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-03/databases/reports",
            "compliant",
            "compliant",
        ),
        // export.jsonl
        (
            "/resourceGroups/rg-ops/providers/Microsoft.Storage/storageAccounts/stopsaudit01",
            "compliant",
            "drift",
        ),
        (
            "/resourceGroups/rg-ops/providers/Microsoft.Databricks/workspaces/dbw-ops",
            "drift",
            "compliant",
        ),
        (
            "/resourceGroups/rg-ops/providers/Microsoft.Compute/disks/ops-vm-os",
            "drift",
            "compliant",
        ),
        (
            "/resourceGroups/rg-ops/providers/Microsoft.ServiceBus/namespaces/sb-ops",
            "compliant",
            "drift",
        ),
    ]);
    assert_eq!(verdict_table(&inventory), expected);
    assert_eq!(
        inventory.items.len(),
        expected.len(),
        "one item per resource, no duplicates"
    );

    // resource-list.json's two rows (properties null) and mixed.json's resource group.
    assert_eq!(inventory.warnings.len(), 3, "{:#?}", inventory.warnings);
    assert!(inventory.warnings[0].starts_with("resource-list.json: [0]: /subscriptions/"));
    assert!(inventory.warnings[0].contains("stprodlogs01: `properties` is null"));
    assert!(inventory.warnings[1].contains("Microsoft.Compute/virtualMachines is not a catalog type"));
    assert!(inventory.warnings[2].starts_with("mixed.json: [3]:"));
    assert!(inventory.warnings[2].contains("id rejected"));

    let gaps = inventory.gaps();
    assert_eq!(gaps.len(), 3, "{gaps:#?}");
    assert!(gaps[0].contains("sql-prod-02: the export has no encryptionProtector/current"));
    assert!(gaps[0].contains("`az sql server tde-key show -s sql-prod-02 -g rg-data -o json`"));
    assert!(gaps[1].contains("sqlmi-prod-01: only its child resources are in the export"));
    assert!(gaps[1].contains("`az sql mi list -o json`"));
    assert!(gaps[2].contains("databases/reports: only its child resources"));
    assert!(gaps[2].contains("`az sql db list -s sql-prod-03 -g rg-data -o json`"));
}

// -------------------------------------------------------------------------------------------
// One format at a time

#[test]
fn resource_graph_2x_object_output() {
    let inventory = parse("graph-query.json");
    assert_eq!(inventory.items.len(), 6);
    assert!(inventory.warnings.is_empty(), "{:?}", inventory.warnings);
    // Resource Graph rows stay as they are: lower-case `type`, ARM `properties`.
    let st = item(&inventory, "stprodvault01");
    assert_eq!(st.document["type"], "microsoft.storage/storageaccounts");
    assert_eq!(st.document["subscriptionId"], "7c2f1a9e-3b4d-4e61-9a8f-0d5c2b6e1f47");
    let eval = evaluate_view(&st.id, &st.view(), &config("cmk"), datetime!(2026-03-01 0:00 UTC));
    assert_eq!(
        eval.observed,
        EncryptionState::Cmk(KeyRef::new("https://kv-prod-keys.vault.azure.net", "storage-cmk", None, None).unwrap())
    );
}

#[test]
fn resource_graph_1x_bare_array_with_projected_columns() {
    let inventory = parse("graph-query-v1.json");
    assert_eq!(
        verdict_table(&inventory),
        table(&[
            (
                "/resourceGroups/rg-dev/providers/Microsoft.Storage/storageAccounts/stdevscratch01",
                "drift",
                "compliant"
            ),
            (
                "/resourceGroups/rg-dev/providers/Microsoft.EventHub/namespaces/evh-dev-ingest",
                "drift",
                "compliant"
            ),
        ])
    );
}

#[test]
fn storage_account_list_on_key_vault_with_camel_case_cli_keys() {
    let inventory = parse("storage-account-list.json");
    assert!(inventory.warnings.is_empty(), "{:?}", inventory.warnings);
    let st = item(&inventory, "stprodpay01");
    let encryption = &st.document["properties"]["encryption"];
    assert_eq!(
        encryption["keyvaultproperties"]["keyvaulturi"],
        "https://kv-prod-keys.vault.azure.net/"
    );
    assert!(encryption.get("keyVaultProperties").is_none());
    // Tags and identity stay at the top, where evaluate and the identity check look.
    assert_eq!(st.document["tags"]["owner"], "payments");
    assert_eq!(st.document["identity"]["type"], "UserAssigned");
    let uai = "/subscriptions/7c2f1a9e-3b4d-4e61-9a8f-0d5c2b6e1f47/resourceGroups/rg-prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-storage-cmk";
    let eval = evaluate_view(&st.id, &st.view(), &config("cmk"), datetime!(2026-03-01 0:00 UTC));
    assert_eq!(eval.verdict, Verdict::Compliant);
    let expected_key = KeyRef::new("https://kv-prod-keys.vault.azure.net", "payments-cmk", None, Some(uai)).unwrap();
    assert_eq!(eval.observed, EncryptionState::Cmk(expected_key.clone()));
    let entry = keyguard_core::lookup("Microsoft.Storage/storageAccounts").unwrap();
    assert!(
        entry.has_identity_for(&st.document, &expected_key),
        "the user-assigned identity is attached"
    );

    let tmp = item(&inventory, "stprodtmp01");
    let eval = evaluate_view(&tmp.id, &tmp.view(), &config("cmk"), datetime!(2026-03-01 0:00 UTC));
    assert_eq!(eval.verdict, Verdict::Drift(DriftReason::ExpectedCmkFoundMmk));
}

#[test]
fn sql_protector_from_its_own_file_joins_the_server_from_another() {
    let protectors = parse("sql-tde-key-show.json");
    let servers = parse("sql-server-list.json");
    assert!(protectors.warnings.is_empty() && servers.warnings.is_empty());

    // Alone, the protectors give synthesized servers: a verdict, but no tags.
    let alone = item(&protectors, "servers/sql-prod-01");
    assert_eq!(
        alone.document,
        json!({"id": format!("{SUB}/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-01"), "name": "sql-prod-01", "type": "Microsoft.Sql/servers"})
    );
    assert_eq!(
        alone.children["encryptionprotector/current"]["properties"]["serverKeyType"],
        "ServiceManaged"
    );
    assert_eq!(protectors.gaps().len(), 2);

    let expected = table(&[
        (
            "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-01",
            "drift",
            "compliant",
        ),
        (
            "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-03",
            "compliant",
            "drift",
        ),
    ]);
    for merged in [
        merge(vec![protectors.clone(), servers.clone()]),
        merge(vec![servers.clone(), protectors.clone()]),
    ] {
        assert_eq!(verdict_table(&merged), expected);
        assert!(merged.gaps().is_empty(), "{:?}", merged.gaps());
        let server = item(&merged, "servers/sql-prod-01");
        assert_eq!(
            server.document["tags"]["owner"], "orders",
            "the real body replaced the synthesized one"
        );
        assert_eq!(
            server.document["properties"]["fullyQualifiedDomainName"],
            "sql-prod-01.database.windows.net"
        );
        let eval = evaluate_view(
            &server.id,
            &server.view(),
            &config("cmk"),
            datetime!(2026-03-01 0:00 UTC),
        );
        assert_eq!(eval.verdict, Verdict::Drift(DriftReason::ExpectedCmkFoundMmk));
        let cmk = item(&merged, "servers/sql-prod-03");
        let eval = evaluate_view(&cmk.id, &cmk.view(), &config("cmk"), datetime!(2026-03-01 0:00 UTC));
        assert_eq!(
            eval.observed,
            EncryptionState::Cmk(
                KeyRef::new(
                    "https://kv-prod-keys.vault.azure.net",
                    "sql-tde",
                    Some("01234567890123456789012345678901"),
                    None
                )
                .unwrap()
            )
        );
    }
}

#[test]
fn sql_databases_are_judged_on_their_tde_child() {
    let merged = merge(vec![parse("sql-db-tde-show.json"), parse("sql-db-list.json")]);
    assert_eq!(
        verdict_table(&merged),
        table(&[
            (
                "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-01/databases/master",
                "unsupported",
                "unsupported"
            ),
            (
                "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-01/databases/orders",
                "compliant",
                "compliant"
            ),
            (
                "/resourceGroups/rg-data/providers/Microsoft.Sql/servers/sql-prod-01/databases/legacy",
                "drift",
                "drift"
            ),
        ])
    );
    let legacy = item(&merged, "databases/legacy");
    let eval = evaluate_view(
        &legacy.id,
        &legacy.view(),
        &config("mmk"),
        datetime!(2026-03-01 0:00 UTC),
    );
    assert_eq!(eval.verdict, Verdict::Drift(DriftReason::NotEncrypted));
    // The database's own `status` ("Online") is not mistaken for the legacy TDE `status`.
    assert_eq!(legacy.document["properties"]["status"], "Online");
    assert!(
        merged.gaps().is_empty(),
        "master needs no TDE child: {:?}",
        merged.gaps()
    );
}

#[test]
fn disk_list_with_a_platform_key() {
    let inventory = parse("disk-list.json");
    let os = item(&inventory, "disks/vm01-osdisk");
    assert_eq!(
        os.document["managedBy"],
        format!("{SUB}/resourceGroups/rg-prod/providers/Microsoft.Compute/virtualMachines/vm01")
    );
    assert_eq!(
        os.document["properties"]["encryption"]["type"],
        "EncryptionAtRestWithPlatformKey"
    );
    let eval = evaluate_view(&os.id, &os.view(), &config("cmk"), datetime!(2026-03-01 0:00 UTC));
    assert_eq!(eval.verdict, Verdict::Drift(DriftReason::ExpectedCmkFoundMmk));
    let data = item(&inventory, "disks/vm01-datadisk");
    let eval = evaluate_view(&data.id, &data.view(), &config("cmk"), datetime!(2026-03-01 0:00 UTC));
    assert_eq!(
        eval.observed,
        EncryptionState::Cmk(
            KeyRef::encryption_set(&format!(
                "{SUB}/resourceGroups/rg-prod/providers/Microsoft.Compute/diskEncryptionSets/des-prod"
            ))
            .unwrap()
        )
    );
}

#[test]
fn resource_list_rows_without_properties_are_reported_not_used() {
    let inventory = parse("resource-list.json");
    assert!(inventory.items.is_empty());
    assert_eq!(inventory.warnings.len(), 2);
    assert!(
        inventory
            .warnings
            .iter()
            .all(|w| w.contains("skipped") && w.contains(SUB))
    );
}

#[test]
fn mixed_array_and_json_lines() {
    let mixed = parse("mixed.json");
    assert_eq!(mixed.items.len(), 4);
    assert_eq!(mixed.warnings.len(), 1);
    assert!(
        mixed.warnings[0].contains("group id has no \"/providers/"),
        "{}",
        mixed.warnings[0]
    );
    // A CMK in a vault outside the profile's allow-list is drift.
    let strict = Config::from_toml_str(
        "[[profile]]\nname = \"p\"\nrequire = \"cmk\"\nallowed_vaults = [\"kv-prod-keys.vault.azure.net\"]\n",
        "t",
    )
    .unwrap();
    let st = item(&mixed, "stmixcmk01");
    let eval = evaluate_view(&st.id, &st.view(), &strict, datetime!(2026-03-01 0:00 UTC));
    assert_eq!(
        eval.verdict,
        Verdict::Drift(DriftReason::UnapprovedVault {
            vault: "kv-partner.vault.azure.net".into()
        })
    );

    let lines = parse("export.jsonl");
    assert_eq!(lines.items.len(), 4);
    assert!(lines.warnings.is_empty());
}

#[test]
fn warnings_in_json_lines_name_the_line() {
    let text = format!(
        "{}\n{}\n\n{}\n",
        json!({"id": format!("{SUB}/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a"), "properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
        json!({"id": "not-an-id"}),
        json!([{"name": "no id here"}]),
    );
    let inventory = parse_export(&text, "x.jsonl").unwrap();
    assert_eq!(inventory.items.len(), 1);
    assert_eq!(inventory.warnings.len(), 2, "{:?}", inventory.warnings);
    assert!(inventory.warnings[0].starts_with("x.jsonl: line 2: \"not-an-id\": id rejected"));
    assert!(inventory.warnings[1].starts_with("x.jsonl: line 4[0]: an object with keys name has no string `id`"));
}

// -------------------------------------------------------------------------------------------
// Shapes and quirks

#[test]
fn microsoft_tde_example_whose_id_stops_at_the_database_attaches_as_its_child() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/arm/sql/TransparentDataEncryptionGet.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let body = &fixture["responses"]["200"]["body"];
    assert!(
        body["id"].as_str().unwrap().ends_with("/databases/testdb"),
        "the quirk this test is about"
    );
    let inventory = parse_export(&body.to_string(), "tde.json").unwrap();
    assert_eq!(inventory.items.len(), 1);
    let db = &inventory.items[0];
    assert!(db.id.as_str().ends_with("/servers/securitytde/databases/testdb"));
    assert_eq!(
        db.children["transparentdataencryption/current"]["properties"]["state"],
        "Enabled"
    );
    let eval = evaluate_view(&db.id, &db.view(), &config("cmk"), datetime!(2026-03-01 0:00 UTC));
    assert_eq!(eval.observed, EncryptionState::Encrypted);
}

#[test]
fn microsoft_protector_and_storage_examples_read_as_arm_shape() {
    let read = |rel: &str| -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/arm")
            .join(rel);
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        v["responses"]["200"]["body"].clone()
    };
    let export = json!([
        read("sql/EncryptionProtectorGet.json"),
        read("sql/EncryptionProtectorCreateOrUpdateServiceManaged.2023-08-01.json"),
    ]);
    let inventory = parse_export(&export.to_string(), "rest.json").unwrap();
    // Both examples describe the same server's protector; they disagree, so the first is kept and it is said.
    assert_eq!(inventory.items.len(), 1);
    assert_eq!(inventory.warnings.len(), 1, "{:?}", inventory.warnings);
    assert!(inventory.warnings[0].contains("appears twice with different key sources"));
    let server = &inventory.items[0];
    let eval = evaluate_view(
        &server.id,
        &server.view(),
        &config("cmk"),
        datetime!(2026-03-01 0:00 UTC),
    );
    assert_eq!(eval.verdict, Verdict::Compliant);

    let storage = read("storage/StorageAccountGetPropertiesCMKEnabled.json");
    let text = storage
        .to_string()
        .replace("{subscription-id}", "00000000-0000-0000-0000-000000000001");
    let inventory = parse_export(&text, "st.json").unwrap();
    assert_eq!(inventory.items.len(), 1);
    assert_eq!(
        inventory.items[0].document,
        serde_json::from_str::<Value>(&text).unwrap()
    );
}

#[test]
fn resource_graph_table_format_and_arm_list_responses() {
    let table = json!({"totalRecords": 1, "count": 1, "resultTruncated": "false", "data": {
        "columns": [{"name": "id", "type": "string"}, {"name": "type", "type": "string"}, {"name": "properties", "type": "object"}],
        "rows": [[format!("{SUB}/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/t1"), "microsoft.storage/storageaccounts", {"encryption": {"keySource": "Microsoft.Storage"}}]]
    }});
    let inventory = parse_export(&table.to_string(), "t.json").unwrap();
    assert_eq!(
        verdict_table(&inventory),
        table_of_one(
            "/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/t1",
            "drift",
            "compliant"
        )
    );

    let list = json!({"value": [{"id": format!("{SUB}/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/t2"), "properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyvaulturi": "https://kv.vault.azure.net", "keyname": "k"}}}}], "nextLink": null});
    let inventory = parse_export(&list.to_string(), "l.json").unwrap();
    assert_eq!(
        verdict_table(&inventory),
        table_of_one(
            "/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/t2",
            "compliant",
            "drift"
        )
    );
}

fn table_of_one(id: &str, cmk: &'static str, mmk: &'static str) -> BTreeMap<String, (&'static str, &'static str)> {
    table(&[(id, cmk, mmk)])
}

#[test]
fn rows_that_cannot_be_used_each_say_why() {
    let st = |name: &str| format!("{SUB}/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/{name}");
    let export = json!([
        {"id": st("projected"), "type": "microsoft.storage/storageaccounts"},
        {"id": st("wrongtype"), "type": "Microsoft.Compute/disks", "properties": {}},
        {"id": format!("{}/encryptionScopes/scope1", st("a")), "properties": {"source": "Microsoft.Storage"}},
        {"id": format!("{}/encryptionScopes/scope2", st("a")), "name": "scope2"},
        {"id": format!("{SUB}/resourceGroups/r/providers/Microsoft.Sql/servers/s/encryptionProtector/current"), "kind": "servicemanaged"},
        {"error": {"code": "AuthorizationFailed", "message": "no access"}},
        {"id": 5},
        42,
        {"id": " /subscriptions/x/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/ok "},
    ]);
    let inventory = parse_export(&export.to_string(), "e.json").unwrap();
    // Only the encryption scope with ARM properties is kept, as an item evaluate calls unsupported;
    // the last id is read once trimmed, but the row carries nothing to judge.
    let expected = [
        (
            "[0]",
            "no `properties` object (a Resource Graph query must keep the `properties` column) and no `encryption`",
        ),
        (
            "[1]",
            "`type` Microsoft.Compute/disks does not match the id's type Microsoft.Storage/storageAccounts",
        ),
        (
            "[3]",
            "Microsoft.Storage/storageAccounts/encryptionScopes is not a catalog type and the row is not in ARM shape",
        ),
        ("[4]", "no `serverKeyType` as `az` prints it"),
        ("[5]", "an Azure error response (AuthorizationFailed: no access)"),
        ("[6]", "an object with keys id has no string `id`"),
        ("[7]", "a number, not a resource"),
        ("[8]", "no `properties` object"),
    ];
    assert_eq!(inventory.warnings.len(), expected.len(), "{:#?}", inventory.warnings);
    for (warning, (at, why)) in inventory.warnings.iter().zip(expected) {
        assert!(warning.starts_with(&format!("e.json: {at}")), "{warning}");
        assert!(warning.contains(why), "{warning} should say {why}");
    }
    assert_eq!(inventory.items.len(), 1);
    assert!(inventory.items[0].id.as_str().ends_with("encryptionScopes/scope1"));
}

#[test]
fn file_level_errors_name_what_was_expected() {
    match parse_export("[\n  {\"id\": \"/subscriptions/s\",\n  }\n]", "bad.json") {
        Err(InventoryError::NotJson { line, column, .. }) => assert_eq!((line, column), (3, 3)),
        other => panic!("{other:?}"),
    }
    let e = parse_export("{\"id\": 1", "cut.json").unwrap_err();
    assert!(e.to_string().starts_with("cut.json:1:"), "{e}");
    assert!(e.to_string().contains("not valid JSON"), "{e}");

    let e = parse_export("{\"subscriptions\": [], \"query\": \"resources\"}", "q.json").unwrap_err();
    assert_eq!(
        e,
        InventoryError::UnknownShape {
            source_name: "q.json".into(),
            found: "an object with keys query, subscriptions".into()
        }
    );
    assert!(e.to_string().contains("expected `az graph query` output"), "{e}");
    let e = parse_export("[\"/subscriptions/a\", \"/subscriptions/b\"]", "ids.json").unwrap_err();
    assert!(e.to_string().contains("found an array of strings"), "{e}");
    let e = parse_export("\"text\"", "s.json").unwrap_err();
    assert!(e.to_string().contains("found a string"), "{e}");

    let e = parse_export(
        "{\"error\": {\"code\": \"BadRequest\", \"message\": \"Query is invalid\"}}",
        "err.json",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "err.json: the file holds an Azure error response (BadRequest: Query is invalid), not an export"
    );
    assert_eq!(
        parse_export(" \n", "empty.json").unwrap_err(),
        InventoryError::Empty {
            source_name: "empty.json".into()
        }
    );
    // An empty result is not an error, but it is said.
    let none = parse_export(
        "{\"count\": 0, \"data\": [], \"skip_token\": null, \"total_records\": 0}",
        "n.json",
    )
    .unwrap();
    assert_eq!(none.warnings, vec!["n.json: no resources in the export".to_string()]);
}

#[test]
fn powershell_encodings_are_decoded() {
    let text = std::fs::read_to_string(testdata().join("disk-list.json")).unwrap();
    let expected = parse_export(&text, "d.json").unwrap();
    let mut utf16le = vec![0xFF, 0xFE];
    utf16le.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    assert_eq!(parse_export_bytes(&utf16le, "d.json").unwrap(), expected);
    let mut utf16be = vec![0xFE, 0xFF];
    utf16be.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    assert_eq!(parse_export_bytes(&utf16be, "d.json").unwrap(), expected);
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(text.as_bytes());
    assert_eq!(parse_export_bytes(&bom, "d.json").unwrap(), expected);
    match parse_export_bytes(b"[\n {\"id\": \"\xff\"}]", "latin1.json") {
        Err(InventoryError::NotText { line, column, .. }) => assert_eq!((line, column), (2, 10)),
        other => panic!("{other:?}"),
    }
}

// -------------------------------------------------------------------------------------------
// The README's export query

#[test]
fn the_readme_has_the_export_query_for_every_catalog_type() {
    let query = resource_graph_query();
    for e in entries() {
        assert!(
            query.contains(&format!("'{}'", e.resource_type.to_ascii_lowercase())),
            "{}",
            e.resource_type
        );
    }
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let section = std::fs::read_to_string(readme).unwrap();
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        squash(&section).contains(&squash(&query)),
        "README.md must carry the query resource_graph_query() builds:\n{query}"
    );
}

// -------------------------------------------------------------------------------------------
// No input panics, and no row disappears without a word

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/servers/s1"),
            Just("/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/servers/s1/encryptionProtector/current"),
            Just("Microsoft.Sql/servers/encryptionProtector"),
            Just("/subscriptions/s/resourceGroups/r"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("type".to_string()),
                    Just("name".to_string()),
                    Just("properties".to_string()),
                    Just("data".to_string()),
                    Just("value".to_string()),
                    Just("error".to_string()),
                    Just("encryption".to_string()),
                    Just("serverKeyType".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const TYPES: &[&str] = &[
    "Microsoft.Storage/storageAccounts",
    "Microsoft.Compute/disks",
    "Microsoft.Sql/servers",
    "Microsoft.Sql/servers/encryptionProtector",
    "Microsoft.Sql/servers/databases",
    "Microsoft.Sql/servers/databases/transparentDataEncryption",
    "Microsoft.KeyVault/vaults",
    "Microsoft.Storage/storageAccounts/encryptionScopes",
];

/// A row for `TYPES[t]`, with a valid or broken id, in ARM shape, CLI shape or projected bare.
fn row(t: usize, n: u8, good_id: bool, shape: u8) -> Value {
    let base = format!("{SUB}/resourceGroups/rg/providers");
    let id = match TYPES[t] {
        "Microsoft.Sql/servers/encryptionProtector" => {
            format!("{base}/Microsoft.Sql/servers/s{n}/encryptionProtector/current")
        }
        "Microsoft.Sql/servers/databases" => format!("{base}/Microsoft.Sql/servers/s{n}/databases/d{n}"),
        "Microsoft.Sql/servers/databases/transparentDataEncryption" => {
            format!("{base}/Microsoft.Sql/servers/s{n}/databases/d{n}/transparentDataEncryption/current")
        }
        "Microsoft.Storage/storageAccounts/encryptionScopes" => {
            format!("{base}/Microsoft.Storage/storageAccounts/st{n}/encryptionScopes/e{n}")
        }
        other => format!("{base}/{other}/r{n}"),
    };
    let id = if good_id {
        id
    } else {
        id.replace("/providers/", "/providers//")
    };
    match shape {
        0 => {
            json!({"id": id, "type": TYPES[t].to_ascii_lowercase(), "properties": {"encryption": {"keySource": "Microsoft.Storage"}}})
        }
        1 => {
            json!({"id": id, "type": TYPES[t], "encryption": {"type": "EncryptionAtRestWithPlatformKey"}, "serverKeyType": "ServiceManaged", "state": "Enabled"})
        }
        _ => json!({"id": id, "type": TYPES[t]}),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_json_value_is_read_or_refused_without_panic(value in arb_json()) {
        let text = value.to_string();
        match parse_export(&text, "p.json") {
            Ok(inventory) => {
                let _ = inventory.gaps();
                let _ = merge(vec![inventory.clone(), inventory]);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let _ = parse_export(&format!("{text}\n{text}"), "p.jsonl");
    }

    #[test]
    fn any_text_is_read_or_refused_without_panic(text in "[\\[\\]{}\",:a-z0-9/\\\\ \n-]{0,64}", bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_export(&text, "t.json");
        let _ = parse_export_bytes(&bytes, "b.json");
    }

    #[test]
    fn every_row_becomes_part_of_an_item_or_a_warning(
        rows in prop::collection::vec((0..TYPES.len(), 0u8..3, any::<bool>(), 0u8..3), 1..12)
    ) {
        let values: Vec<Value> = rows.iter().map(|&(t, n, good, shape)| row(t, n, good, shape)).collect();
        let inventory = parse_export(&Value::Array(values.clone()).to_string(), "r.json").unwrap();
        for (index, value) in values.iter().enumerate() {
            let id = value["id"].as_str().unwrap().to_ascii_lowercase();
            let warned = inventory.warnings.iter().any(|w| w.starts_with(&format!("r.json: [{index}]")));
            let used = inventory.items.iter().any(|item| {
                let key = item.id.key();
                key == id || item.children.keys().any(|c| format!("{key}/{c}") == id)
            });
            prop_assert!(warned || used, "row {index} ({value}) vanished: {:#?}", inventory);
        }
    }
}
