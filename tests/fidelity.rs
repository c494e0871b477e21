//! Issue 15 end to end: a long-running write that answers 201 without a polling header
//! (App Configuration) is followed through the resource's provisioningState before keyguard
//! verifies it, against the stand-in that answers `Updating` first; and a revert puts back the
//! whole key binding its baseline had (Cognitive Services' identity client id, MySQL's
//! identities and geo-backup key), in bodies the stand-in checks against the request schemas.

use keyguard_e2e::*;
use serde_json::{Value, json};

const STORE_TYPE: &str = "Microsoft.AppConfiguration/configurationStores";

fn store(name: &str, key: Option<&str>) -> Value {
    let encryption = match key {
        Some(k) => json!({"keyVaultProperties": {"keyIdentifier": k}}),
        None => json!({}),
    };
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-cmk/providers/{STORE_TYPE}/{name}"),
        "name": name, "type": STORE_TYPE, "location": "westeurope", "sku": {"name": "standard"},
        "identity": {"type": "SystemAssigned", "principalId": "5b1f0c1e-1111-4a4a-9b9b-222222222222"},
        "properties": {"provisioningState": "Succeeded", "encryption": encryption}
    })
}

fn write_event(id: &str, n: usize) -> Value {
    write_event_of(STORE_TYPE, id, n)
}

fn write_event_of(resource_type: &str, id: &str, n: usize) -> Value {
    let mut event = fixture("eventgrid/arm-resourcewritesuccess.eventgrid.spec-example.json");
    event["id"] = json!(format!("fidelity-{n}"));
    event["subject"] = json!(id);
    event["data"]["resourceUri"] = json!(id);
    event["data"]["operationName"] = json!(format!("{resource_type}/write"));
    event
}

#[tokio::test]
async fn an_app_configuration_revert_waits_for_updating_to_end_before_it_is_verified() -> anyhow::Result<()> {
    let env = Env::start(Options {
        no_delivery: true,
        ..Options::default()
    })
    .await?;
    let key = format!("{APPROVED_VAULT}/keys/appcs-cmk/0123456789abcdef0123456789abcdef");
    let cmk = store("appcs-orders", Some(&key));
    let id = cmk["id"].as_str().unwrap_or_default().to_string();
    env.seed(json!([cmk])).await?;
    let (_, r) = env.deliver(&write_event(&id, 0)).await?;
    assert_eq!(r["ReturnValue"]["result"], "compliant", "{r}");

    // Someone took the key away (seeded directly: the drifted state, no pending operation).
    env.seed(json!([store("appcs-orders", None)])).await?;
    env.http
        .put(format!("{}/_sim/lro", env.sim))
        .json(&json!({"polls": 2}))
        .send()
        .await?
        .error_for_status()?;
    let (status, r) = env.deliver(&write_event(&id, 1)).await?;
    assert_eq!(status, 200, "{r}");
    let outcome = &r["ReturnValue"];
    assert_eq!(
        outcome["result"], "reverted",
        "verified only after Updating ended: {outcome}"
    );
    assert_eq!(outcome["after"]["state"], "cmk", "{outcome}");
    let after = env.resource(&id).await?;
    assert_eq!(
        after["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"],
        key
    );

    // One PATCH, then GETs of the store itself (no operation URL existed) until it left Updating.
    let patches = env.arm_requests("PATCH", Some(KEYGUARD_OID)).await?;
    assert_eq!(patches.len(), 1, "{patches:?}");
    let store_gets = env
        .arm_requests("GET", Some(KEYGUARD_OID))
        .await?
        .into_iter()
        .filter(|g| g["path"].as_str().is_some_and(|p| p.eq_ignore_ascii_case(&id)))
        .count();
    // Two reads for the evaluations, three polls (Updating, Updating, Succeeded), one verifying read.
    assert!(store_gets >= 6, "the store was polled: {store_gets} GETs");
    Ok(())
}

const KEY_VERSION: &str = "0123456789abcdef0123456789abcdef";
const CLIENT_ID: &str = "6f1d2c3b-0a9e-4f7d-8c6b-5a4e3d2c1b0a";

fn identity_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-cmk/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

/// A resource of `ty` named `name` in the e2e subscription, on user-assigned identities.
fn resource(ty: &str, name: &str, identities: Value, properties: Value) -> Value {
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-cmk/providers/{ty}/{name}"),
        "name": name, "type": ty, "location": "westeurope",
        "identity": {"type": "UserAssigned", "userAssignedIdentities": identities},
        "properties": properties
    })
}

/// Seeds `compliant`, lets keyguard record it as the baseline, seeds `drifted` (someone's
/// change), and returns the document keyguard's revert left, after checking it reverted.
async fn revert_to_baseline(resource_type: &str, compliant: Value, drifted: Value) -> anyhow::Result<Value> {
    let env = Env::start(Options {
        no_delivery: true,
        ..Options::default()
    })
    .await?;
    let id = compliant["id"].as_str().unwrap_or_default().to_string();
    env.seed(json!([compliant])).await?;
    let (_, r) = env.deliver(&write_event_of(resource_type, &id, 10)).await?;
    assert_eq!(r["ReturnValue"]["result"], "compliant", "{r}");
    env.seed(json!([drifted])).await?;
    let (status, r) = env.deliver(&write_event_of(resource_type, &id, 11)).await?;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["ReturnValue"]["result"], "reverted", "{r}");
    assert_eq!(env.arm_requests("PATCH", Some(KEYGUARD_OID)).await?.len(), 1);
    env.resource(&id).await
}

#[tokio::test]
async fn a_cognitive_services_revert_keeps_the_identity_client_id_of_its_baseline() -> anyhow::Result<()> {
    const TY: &str = "Microsoft.CognitiveServices/accounts";
    let identities =
        json!({identity_id("cog-uai"): {"principalId": "7c2e0d2f-3333-4b4b-8c8c-444444444444", "clientId": CLIENT_ID}});
    let compliant = resource(
        TY,
        "cog-orders",
        identities.clone(),
        json!({"provisioningState": "Succeeded", "encryption": {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
            "keyVaultUri": APPROVED_VAULT, "keyName": "cog-cmk", "keyVersion": KEY_VERSION, "identityClientId": CLIENT_ID}}}),
    );
    let drifted = resource(
        TY,
        "cog-orders",
        identities,
        json!({"provisioningState": "Succeeded", "encryption": {"keySource": "Microsoft.CognitiveServices"}}),
    );
    let after = revert_to_baseline(TY, compliant, drifted).await?;
    let kvp = &after["properties"]["encryption"]["keyVaultProperties"];
    assert_eq!(
        after["properties"]["encryption"]["keySource"], "Microsoft.KeyVault",
        "{after}"
    );
    assert_eq!(
        kvp["identityClientId"], CLIENT_ID,
        "the same identity, not the system one: {after}"
    );
    assert_eq!(kvp["keyName"], "cog-cmk");
    Ok(())
}

#[tokio::test]
async fn a_geo_redundant_mysql_revert_sends_its_identities_and_geo_backup_key() -> anyhow::Result<()> {
    const TY: &str = "Microsoft.DBforMySQL/flexibleServers";
    let (primary, geo) = (identity_id("mysql-uai"), identity_id("mysql-geo-uai"));
    let identities = json!({primary.clone(): {}, geo.clone(): {}});
    let geo_key = format!("https://kv-approved-geo.vault.azure.net/keys/mysql-geo/{KEY_VERSION}");
    let backup = json!({"backupRetentionDays": 7, "geoRedundantBackup": "Enabled"});
    let compliant = resource(
        TY,
        "mysql-orders",
        identities.clone(),
        json!({"state": "Ready", "backup": backup, "dataEncryption": {
            "type": "AzureKeyVault",
            "primaryKeyURI": format!("{APPROVED_VAULT}/keys/mysql-cmk/{KEY_VERSION}"),
            "primaryUserAssignedIdentityId": primary,
            "geoBackupKeyURI": geo_key,
            "geoBackupUserAssignedIdentityId": geo,
        }}),
    );
    let drifted = resource(
        TY,
        "mysql-orders",
        identities,
        json!({"state": "Ready", "backup": backup, "dataEncryption": {"type": "SystemManaged"}}),
    );
    let after = revert_to_baseline(TY, compliant, drifted).await?;
    let encryption = &after["properties"]["dataEncryption"];
    assert_eq!(encryption["type"], "AzureKeyVault", "{after}");
    assert_eq!(encryption["primaryUserAssignedIdentityId"], primary);
    assert_eq!(encryption["geoBackupKeyURI"], geo_key, "{after}");
    assert_eq!(encryption["geoBackupUserAssignedIdentityId"], geo);
    assert_eq!(after["identity"]["type"], "UserAssigned");
    Ok(())
}
