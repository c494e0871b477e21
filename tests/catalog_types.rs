//! Beyond storage: the same event path for the catalog's other shapes, against the stand-in.
//! A SQL protector switched to service-managed keys is put back through the long-running PUTs;
//! TDE turned off is turned on again; `master` is never a finding; a one-way type only alerts.

use keyguard_e2e::*;
use serde_json::{Value, json};

const VERSION: &str = "0123456789abcdef0123456789abcdef";

fn sql_server(rg: &str, name: &str) -> Value {
    sql_host("servers", rg, name)
}

/// A SQL server or managed instance (`kind` = "servers" | "managedInstances").
fn sql_host(kind: &str, rg: &str, name: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/Microsoft.Sql/{kind}/{name}"),
        "name": name,
        "type": format!("Microsoft.Sql/{kind}"),
        "location": "westeurope",
        "identity": {"type": "SystemAssigned", "principalId": "5b1f0c1e-1111-4a4a-9b9b-222222222222", "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47"},
        "properties": {"administratorLogin": "dbadmin", "version": "12.0", "state": "Ready", "fullyQualifiedDomainName": format!("{name}.database.windows.net")}
    })
}

/// The server with its protector on a versioned key in the approved vault (and that server key).
fn cmk_sql_server(kind: &str, rg: &str, name: &str) -> Vec<Value> {
    let server = sql_host(kind, rg, name);
    let server_id = server["id"].as_str().unwrap_or_default().to_string();
    let key_name = format!("kv-approved_storage-cmk_{VERSION}");
    let uri = format!("{APPROVED_VAULT}/keys/storage-cmk/{VERSION}");
    vec![
        server,
        json!({
            "id": format!("{server_id}/keys/{key_name}"), "name": key_name, "type": format!("Microsoft.Sql/{kind}/keys"),
            "kind": "azurekeyvault", "properties": {"serverKeyType": "AzureKeyVault", "uri": uri}
        }),
        json!({
            "id": format!("{server_id}/encryptionProtector/current"), "name": "current",
            "type": format!("Microsoft.Sql/{kind}/encryptionProtector"), "kind": "azurekeyvault",
            "properties": {"serverKeyType": "AzureKeyVault", "serverKeyName": key_name, "uri": uri, "autoRotationEnabled": false}
        }),
    ]
}

async fn protector(env: &Env, server_id: &str) -> anyhow::Result<Value> {
    env.resource(&format!("{server_id}/encryptionProtector/current")).await
}

#[tokio::test]
async fn a_sql_protector_switched_to_service_managed_is_put_back_through_the_long_running_writes() -> anyhow::Result<()>
{
    protector_revert("servers", "sqlpayments").await
}

#[tokio::test]
async fn a_managed_instance_protector_is_put_back_the_same_way() -> anyhow::Result<()> {
    protector_revert("managedInstances", "sqlmi-ledger").await
}

async fn protector_revert(kind: &str, name: &str) -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let docs = cmk_sql_server(kind, "rg-cmk", name);
    let server_id = docs[0]["id"].as_str().unwrap_or_default().to_string();
    env.seed(Value::Array(docs)).await?;
    env.http
        .put(format!("{}/_sim/lro", env.sim))
        .json(&json!({"polls": 2}))
        .send()
        .await?
        .error_for_status()?;

    // A harmless write first: keyguard sees the server compliant and records its key.
    env.act_as_user(&server_id, json!({"tags": {"owner": "dba"}})).await?;
    env.wait_delivered(1).await?;
    env.audit_record(&server_id, "result", "compliant").await?;

    // Someone switches the protector back to service-managed keys (a child-resource write).
    env.act_as_user(
        &format!("{server_id}/encryptionProtector/current"),
        json!({"properties": {"serverKeyType": "ServiceManaged", "serverKeyName": "ServiceManaged"}}),
    )
    .await?;
    assert_eq!(
        protector(&env, &server_id).await?["properties"]["serverKeyType"],
        "ServiceManaged"
    );
    env.wait_delivered(2).await?;
    let record = env.audit_record(&server_id, "result", "reverted").await?;
    assert_eq!(
        record["resourceType"],
        format!("Microsoft.Sql/{kind}"),
        "the child write evaluated the server"
    );
    assert_eq!(record["after"]["state"], "cmk");
    let p = protector(&env, &server_id).await?;
    assert_eq!(p["properties"]["serverKeyType"], "AzureKeyVault");
    assert_eq!(p["kind"], "azurekeyvault");
    // The writes: PUT the server key, PUT the protector, then polling until the operation ended.
    let puts = env.arm_requests("PUT", Some(KEYGUARD_OID)).await?;
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert!(puts[0]["path"].as_str().unwrap_or_default().contains("/keys/"));
    assert!(
        puts[1]["path"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/encryptionProtector/current")
    );
    let gets = env.arm_requests("GET", Some(KEYGUARD_OID)).await?;
    assert!(
        gets.iter()
            .any(|r| r["path"].as_str().unwrap_or_default().contains("operation")),
        "the long-running operation was polled: {gets:?}"
    );
    Ok(())
}

#[tokio::test]
async fn tde_turned_off_under_an_mmk_profile_is_turned_back_on_and_master_is_never_a_finding() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let server = sql_server("rg-mmk", "sqlreports");
    let server_id = server["id"].as_str().unwrap_or_default().to_string();
    let database = |name: &str| json!({"id": format!("{server_id}/databases/{name}"), "name": name, "type": "Microsoft.Sql/servers/databases", "location": "westeurope", "properties": {"status": "Online"}});
    env.seed(json!([server, database("appdb"), database("master")])).await?;

    for db in ["appdb", "master"] {
        env.act_as_user(
            &format!("{server_id}/databases/{db}/transparentDataEncryption/current"),
            json!({"properties": {"state": "Disabled"}}),
        )
        .await?;
    }
    env.wait_delivered(2).await?;
    let app_id = format!("{server_id}/databases/appdb");
    let record = env.audit_record(&app_id, "result", "reverted").await?;
    assert_eq!(record["before"]["state"], "disabled", "{record}");
    let tde = env
        .resource(&format!("{app_id}/transparentDataEncryption/current"))
        .await?;
    assert_eq!(tde["properties"]["state"], "Enabled");

    let master_id = format!("{server_id}/databases/master");
    let master = env.audit_record(&master_id, "verdict", "unsupported").await?;
    assert_eq!(master["alert"], false);
    let master_tde = env
        .resource(&format!("{master_id}/transparentDataEncryption/current"))
        .await?;
    assert_eq!(master_tde["properties"]["state"], "Disabled", "master is left alone");
    let puts = env.arm_requests("PUT", Some(KEYGUARD_OID)).await?;
    assert_eq!(puts.len(), 1, "one TDE write, for appdb only: {puts:?}");
    Ok(())
}

#[tokio::test]
async fn a_one_way_switch_is_alerted_and_never_written() -> anyhow::Result<()> {
    let env = Env::start(Options::default()).await?;
    let id = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-mmk/providers/Microsoft.DocumentDB/databaseAccounts/cosmosorders"
    );
    env.seed(json!([{
        "id": id, "name": "cosmosorders", "type": "Microsoft.DocumentDB/databaseAccounts", "location": "westeurope",
        "kind": "GlobalDocumentDB", "identity": {"type": "SystemAssigned"},
        "properties": {"databaseAccountOfferType": "Standard", "provisioningState": "Succeeded"}
    }]))
    .await?;
    // Someone puts the account on a customer-managed key: Cosmos DB can never go back.
    env.act_as_user(
        &id,
        json!({"properties": {"keyVaultKeyUri": format!("{APPROVED_VAULT}/keys/cosmos-cmk")}}),
    )
    .await?;
    env.wait_delivered(1).await?;
    let record = env.audit_record(&id, "verdict", "drift").await?;
    assert_eq!(record["action"], "alert-only", "{record}");
    assert_eq!(record["alert"], true);
    assert!(
        record["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not safe to automate"),
        "{record}"
    );
    assert_eq!(env.arm_requests("PATCH", Some(KEYGUARD_OID)).await?.len(), 0);
    assert_eq!(env.arm_requests("PUT", Some(KEYGUARD_OID)).await?.len(), 0);
    Ok(())
}

use keyguard_core::catalog::{self, CatalogEntry, Direction, KeyRefLayout, KeySourceKind};

fn set_path(doc: &mut Value, path: &[&str], value: Value) {
    let mut at = doc;
    for (i, segment) in path.iter().enumerate() {
        if i + 1 == path.len() {
            at[*segment] = value;
            return;
        }
        if !at[*segment].is_object() {
            at[*segment] = json!({});
        }
        at = &mut at[*segment];
    }
}

/// A customer-managed-key document for any resource-level catalog entry, written from the
/// entry's own paths (key-source value and key reference), so every type is covered.
fn cmk_document(entry: &CatalogEntry, id: &str) -> Value {
    let mut doc = json!({"id": id, "name": id.rsplit('/').next(), "type": entry.resource_type, "location": "westeurope",
                         "identity": {"type": "SystemAssigned"}, "properties": {}});
    let key_uri = format!("{APPROVED_VAULT}/keys/any-cmk/{VERSION}");
    match entry.key_ref {
        KeyRefLayout::Fields {
            container_path,
            vault_uri_field,
            key_name_field,
            key_version_field,
            ..
        } => {
            let fields =
                json!({vault_uri_field: APPROVED_VAULT, key_name_field: "any-cmk", key_version_field: VERSION});
            // Event Hubs / Service Bus keep an array of key properties.
            let container = if entry.resource_type.contains("EventHub") || entry.resource_type.contains("ServiceBus") {
                json!([fields])
            } else {
                fields
            };
            set_path(&mut doc, container_path, container);
        }
        KeyRefLayout::KeyUri { path, .. } => set_path(&mut doc, path, json!(key_uri)),
        KeyRefLayout::EncryptionSet { paths } => {
            if let Some(path) = paths.first() {
                set_path(
                    &mut doc,
                    path,
                    json!(format!(
                        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-keys/providers/Microsoft.Compute/diskEncryptionSets/des1"
                    )),
                );
            }
        }
        _ => {}
    }
    match entry.key_source.kind {
        KeySourceKind::Value { cmk, .. } => set_path(&mut doc, entry.key_source.path, json!(cmk[0])),
        KeySourceKind::Presence => {
            if doc.pointer(&format!("/{}", entry.key_source.path.join("/"))).is_none() {
                set_path(&mut doc, entry.key_source.path, json!(key_uri));
            }
        }
        KeySourceKind::Switch { .. } => {}
    }
    doc
}

fn mmk_document(entry: &CatalogEntry, id: &str) -> Value {
    let mut doc = json!({"id": id, "name": id.rsplit('/').next(), "type": entry.resource_type, "location": "westeurope",
                         "identity": {"type": "SystemAssigned"}, "properties": {}});
    if let KeySourceKind::Value { mmk, .. } = entry.key_source.kind
        && let Some(first) = mmk.first()
    {
        set_path(&mut doc, entry.key_source.path, json!(first));
    }
    doc
}

fn write_event(id: &str, resource_type: &str, n: usize) -> Value {
    let mut event = fixture("eventgrid/arm-resourcewritesuccess.eventgrid.spec-example.json");
    event["id"] = json!(format!("one-way-{n}"));
    event["subject"] = json!(id);
    event["data"]["resourceUri"] = json!(id);
    event["data"]["operationName"] = json!(format!("{resource_type}/write"));
    event["data"]["claims"]["appid"] = json!("04b07795-8ddb-461a-bbee-02f9e1bf7b46");
    event["data"]["claims"]["http://schemas.microsoft.com/identity/claims/objectidentifier"] =
        json!("11111111-2222-3333-4444-555555555555");
    event
}

/// Directions keyguard never writes under a profile without `allow_irreversible = true`.
fn alert_only(direction: Direction) -> bool {
    matches!(
        direction,
        Direction::OneWay | Direction::CreationOnly | Direction::Disruptive(_)
    )
}

/// Every one-way or creation-only direction of every type: drift is an alert finding and
/// keyguard writes nothing (the resource's state is seeded; the event says "look now").
#[tokio::test]
async fn every_one_way_and_creation_only_direction_alerts_and_writes_nothing() -> anyhow::Result<()> {
    let env = Env::start(Options {
        no_delivery: true,
        ..Options::default()
    })
    .await?;
    let mut cases = 0;
    for (n, entry) in catalog::entries().iter().enumerate() {
        if entry.key_source.child.is_some() || entry.resource_type.matches('/').count() > 1 {
            continue; // child-held key sources (SQL) are reversible and covered above
        }
        let provider_type = entry.resource_type;
        // (resource group whose profile demands the other state, document in the drifted state)
        let mut scenarios = Vec::new();
        if alert_only(entry.reversibility.to_mmk) {
            let id =
                format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-mmk/providers/{provider_type}/res{n}tommk");
            scenarios.push((id.clone(), cmk_document(entry, &id), "cmk"));
        }
        if alert_only(entry.reversibility.to_cmk) {
            let id =
                format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-cmk/providers/{provider_type}/res{n}tocmk");
            scenarios.push((id.clone(), mmk_document(entry, &id), "mmk"));
        }
        for (id, doc, state) in scenarios {
            assert_eq!(
                serde_json::to_value(entry.observe(&doc))?["state"],
                state,
                "the test's {state} document for {provider_type} must read as {state}: {doc}"
            );
            env.seed(json!([doc])).await?;
            let body = serde_json::to_vec(&functions_envelope(&write_event(&id, provider_type, cases)))?;
            let (status, response) = env.invoke("EncryptionDrift", "application/json", body).await?;
            assert_eq!(status, 200, "{provider_type}: {response}");
            let outcome = &response["ReturnValue"];
            assert_eq!(outcome["verdict"], "drift", "{provider_type}: {outcome}");
            assert_eq!(outcome["action"], "alert-only", "{provider_type}: {outcome}");
            assert_eq!(outcome["alert"], true, "{provider_type}: {outcome}");
            cases += 1;
        }
    }
    assert!(cases >= 30, "one-way/creation-only directions exercised: {cases}");
    for method in ["PATCH", "PUT"] {
        assert_eq!(
            env.arm_requests(method, Some(KEYGUARD_OID)).await?.len(),
            0,
            "no {method} for any of them"
        );
    }
    Ok(())
}

const DES: &str = "/subscriptions/00000000-0000-0000-0000-00000000e2e0/resourceGroups/rg-keys/providers/Microsoft.Compute/diskEncryptionSets/des-approved";

fn vm(name: &str, power: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-cmk/providers/Microsoft.Compute/virtualMachines/{name}"),
        "name": name, "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
        "properties": {"instanceView": {"statuses": [{"code": "ProvisioningState/succeeded"}, {"code": format!("PowerState/{power}")}]}}
    })
}

fn cmk_disk(name: &str, vm_name: Option<&str>) -> Value {
    let mut disk = json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-cmk/providers/Microsoft.Compute/disks/{name}"),
        "name": name, "type": "Microsoft.Compute/disks", "location": "westeurope", "sku": {"name": "Premium_LRS"},
        "properties": {"diskSizeGB": 128, "diskState": "Unattached",
                       "encryption": {"type": "EncryptionAtRestWithCustomerKey", "diskEncryptionSetId": DES}}
    });
    if let Some(vm_name) = vm_name {
        disk["managedBy"] = json!(format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-cmk/providers/Microsoft.Compute/virtualMachines/{vm_name}"
        ));
        disk["properties"]["diskState"] = json!("Attached");
    }
    disk
}

fn platform_key_patch() -> Value {
    json!({"properties": {"encryption": {"type": "EncryptionAtRestWithPlatformKey", "diskEncryptionSetId": null}}})
}

#[tokio::test]
async fn a_detached_disk_is_put_back_on_its_encryption_set_and_a_running_vms_disk_only_alerts() -> anyhow::Result<()> {
    let env = Env::start(Options {
        no_delivery: true,
        ..Options::default()
    })
    .await?;
    env.seed(json!([
        cmk_disk("disk-free", None),
        cmk_disk("disk-busy", Some("vm-app")),
        vm("vm-app", "deallocated")
    ]))
    .await?;
    let free = cmk_disk("disk-free", None)["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let busy = cmk_disk("disk-busy", Some("vm-app"))["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let deliver = |id: String, n: usize| {
        let env = &env;
        async move {
            let event = write_event(&id, "Microsoft.Compute/disks", 100 + n);
            let body = serde_json::to_vec(&functions_envelope(&event))?;
            env.invoke("EncryptionDrift", "application/json", body).await
        }
    };
    // keyguard sees both compliant first and records their encryption sets.
    for (n, id) in [&free, &busy].into_iter().enumerate() {
        let (status, r) = deliver(id.clone(), n).await?;
        assert_eq!(
            (status, r["ReturnValue"]["verdict"].as_str()),
            (200, Some("compliant")),
            "{r}"
        );
    }
    // Both are switched to platform keys while the VM is stopped; then the VM starts.
    env.act_as_user(&free, platform_key_patch()).await?;
    env.act_as_user(&busy, platform_key_patch()).await?;
    env.seed(json!([vm("vm-app", "running")])).await?;

    let (_, r) = deliver(free.clone(), 2).await?;
    assert_eq!(r["ReturnValue"]["result"], "reverted", "{r}");
    let disk = env.resource(&free).await?;
    assert_eq!(
        disk["properties"]["encryption"]["type"],
        "EncryptionAtRestWithCustomerKey"
    );
    assert_eq!(disk["properties"]["encryption"]["diskEncryptionSetId"], DES);

    let (_, r) = deliver(busy.clone(), 3).await?;
    let outcome = &r["ReturnValue"];
    assert_eq!(outcome["action"], "alert-only", "{outcome}");
    assert!(
        outcome["detail"].as_str().unwrap_or_default().contains("running VM"),
        "{outcome}"
    );
    assert_eq!(
        env.resource(&busy).await?["properties"]["encryption"]["type"],
        "EncryptionAtRestWithPlatformKey"
    );
    let patches = env.arm_requests("PATCH", Some(KEYGUARD_OID)).await?;
    assert_eq!(patches.len(), 1, "only the detached disk was written: {patches:?}");
    Ok(())
}

/// Every resource-level type that can go back to Microsoft-managed keys: someone puts it on a
/// customer-managed key under an MMK profile, and keyguard writes it back (long-running writes
/// included), verified by the stand-in's document afterwards.
#[tokio::test]
async fn every_reversible_type_is_written_back_to_microsoft_managed_keys() -> anyhow::Result<()> {
    let env = Env::start(Options {
        no_delivery: true,
        ..Options::default()
    })
    .await?;
    let mut reverted = Vec::new();
    for (n, entry) in catalog::entries().iter().enumerate() {
        if entry.key_source.child.is_some()
            || entry.resource_type.matches('/').count() > 1
            || entry.reversibility.to_mmk != Direction::Reversible
        {
            continue;
        }
        let id = format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-mmk/providers/{}/rev{n}",
            entry.resource_type
        );
        env.seed(json!([mmk_document(entry, &id)])).await?;
        let cmk = cmk_document(entry, &id);
        env.act_as_user(&id, json!({"properties": cmk["properties"]})).await?;
        let before = env.resource(&id).await?;
        assert_eq!(
            serde_json::to_value(entry.observe(&before))?["state"],
            "cmk",
            "{}: {before}",
            entry.resource_type
        );

        let body = serde_json::to_vec(&functions_envelope(&write_event(&id, entry.resource_type, 200 + n)))?;
        let (status, r) = env.invoke("EncryptionDrift", "application/json", body).await?;
        assert_eq!(status, 200, "{}: {r}", entry.resource_type);
        assert_eq!(r["ReturnValue"]["result"], "reverted", "{}: {r}", entry.resource_type);
        let after = env.resource(&id).await?;
        assert_eq!(
            serde_json::to_value(entry.observe(&after))?["state"],
            "mmk",
            "{}: {after}",
            entry.resource_type
        );
        reverted.push(entry.resource_type);
    }
    for expected in [
        "Microsoft.Storage/storageAccounts",
        "Microsoft.DBforMySQL/flexibleServers",
        "Microsoft.CognitiveServices/accounts",
        // Issue 15: both switch back on existing resources (Microsoft Learn); App Configuration
        // (key must still work) and Batch (one-way, opt-in) no longer revert without asking.
        "Microsoft.Automation/automationAccounts",
        "Microsoft.Search/searchServices",
    ] {
        assert!(reverted.contains(&expected), "{expected} not exercised: {reverted:?}");
    }
    Ok(())
}

/// A revert whose long-running operation outlasts the invocation is recorded as pending (no
/// second write), and the periodic reconcile follows it to its end and verifies it.
#[tokio::test]
async fn a_revert_still_running_at_the_budgets_end_is_finished_by_the_reconcile() -> anyhow::Result<()> {
    let env = Env::start(Options {
        time_budget_ms: 1_500,
        no_delivery: true,
        ..Options::default()
    })
    .await?;
    let docs = cmk_sql_server("servers", "rg-cmk", "sqlslow");
    let server_id = docs[0]["id"].as_str().unwrap_or_default().to_string();
    env.seed(Value::Array(docs)).await?;
    let deliver = |n: usize| {
        let env = &env;
        let id = server_id.clone();
        async move {
            let event = write_event(&id, "Microsoft.Sql/servers", 300 + n);
            env.deliver(&event).await
        }
    };
    let (_, r) = deliver(0).await?;
    assert_eq!(r["ReturnValue"]["result"], "compliant", "{r}");

    // Operations now take 12 polls (at least 250 ms apart): longer than one invocation's budget.
    env.http
        .put(format!("{}/_sim/lro", env.sim))
        .json(&json!({"polls": 12}))
        .send()
        .await?
        .error_for_status()?;
    env.act_as_user(
        &format!("{server_id}/encryptionProtector/current"),
        json!({"properties": {"serverKeyType": "ServiceManaged", "serverKeyName": "ServiceManaged"}}),
    )
    .await?;
    let (status, r) = deliver(1).await?;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["ReturnValue"]["result"], "revert-pending", "{r}");
    let protector_puts = || async {
        Ok::<usize, anyhow::Error>(
            env.arm_requests("PUT", Some(KEYGUARD_OID))
                .await?
                .iter()
                .filter(|p| {
                    p["path"]
                        .as_str()
                        .unwrap_or_default()
                        .ends_with("encryptionProtector/current")
                })
                .count(),
        )
    };
    assert_eq!(protector_puts().await?, 1);

    // The timer reconciles: it follows the recorded operation instead of writing again.
    let timer = fixture("functions/request.timertrigger.captured.json");
    let request = json!({"Data": {"timer": timer["Data"]["inMsg"]}, "Metadata": timer["Metadata"]});
    for _ in 0..4 {
        let (status, body) = env
            .invoke("Reconcile", "application/json", serde_json::to_vec(&request)?)
            .await?;
        assert_eq!(status, 200, "{body}");
        if protector(&env, &server_id).await?["properties"]["serverKeyType"] == "AzureKeyVault" {
            break;
        }
    }
    assert_eq!(
        protector(&env, &server_id).await?["properties"]["serverKeyType"],
        "AzureKeyVault"
    );
    let record = env.audit_record(&server_id, "result", "reverted").await?;
    assert_eq!(record["trigger"]["kind"], "reconcile", "{record}");
    assert_eq!(
        protector_puts().await?,
        1,
        "never a second write on top of a running one"
    );
    Ok(())
}
