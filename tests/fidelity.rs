//! Issue 15 end to end: a long-running write that answers 201 without a polling header
//! (App Configuration) is followed through the resource's provisioningState before keyguard
//! verifies it, against the stand-in that answers `Updating` first.

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
    let mut event = fixture("eventgrid/arm-resourcewritesuccess.eventgrid.spec-example.json");
    event["id"] = json!(format!("appcs-{n}"));
    event["subject"] = json!(id);
    event["data"]["resourceUri"] = json!(id);
    event["data"]["operationName"] = json!(format!("{STORE_TYPE}/write"));
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
