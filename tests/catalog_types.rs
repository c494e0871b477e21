//! Beyond storage: the same event path for the catalog's other shapes, against the stand-in.
//! A SQL protector switched to service-managed keys is put back through the long-running PUTs;
//! TDE turned off is turned on again; `master` is never a finding; a one-way type only alerts.

use keyguard_e2e::*;
use serde_json::{Value, json};

const VERSION: &str = "0123456789abcdef0123456789abcdef";

fn sql_server(rg: &str, name: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/Microsoft.Sql/servers/{name}"),
        "name": name,
        "type": "Microsoft.Sql/servers",
        "location": "westeurope",
        "identity": {"type": "SystemAssigned", "principalId": "5b1f0c1e-1111-4a4a-9b9b-222222222222", "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47"},
        "properties": {"administratorLogin": "dbadmin", "version": "12.0", "state": "Ready", "fullyQualifiedDomainName": format!("{name}.database.windows.net")}
    })
}

/// The server with its protector on a versioned key in the approved vault (and that server key).
fn cmk_sql_server(rg: &str, name: &str) -> Vec<Value> {
    let server = sql_server(rg, name);
    let server_id = server["id"].as_str().unwrap_or_default().to_string();
    let key_name = format!("kv-approved_storage-cmk_{VERSION}");
    let uri = format!("{APPROVED_VAULT}/keys/storage-cmk/{VERSION}");
    vec![
        server,
        json!({
            "id": format!("{server_id}/keys/{key_name}"), "name": key_name, "type": "Microsoft.Sql/servers/keys",
            "kind": "azurekeyvault", "properties": {"serverKeyType": "AzureKeyVault", "uri": uri}
        }),
        json!({
            "id": format!("{server_id}/encryptionProtector/current"), "name": "current",
            "type": "Microsoft.Sql/servers/encryptionProtector", "kind": "azurekeyvault",
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
    let env = Env::start(Options::default()).await?;
    let docs = cmk_sql_server("rg-cmk", "sqlpayments");
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
        record["resourceType"], "Microsoft.Sql/servers",
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
