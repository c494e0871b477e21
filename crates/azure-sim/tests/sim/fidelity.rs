//! Issue 15: the stand-in answers writes the way the real services do (App Configuration
//! drops its key on `keyVaultProperties: {}`).

use azure_sim::SimHandle;
use serde_json::{Value, json};

use crate::common::*;

const APPCONFIG: &str = "Microsoft.AppConfiguration/configurationStores";
const APPCONFIG_API: &str = "2024-06-01";

fn store_id(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/{APPCONFIG}/{name}")
}

fn cmk_store(name: &str) -> Value {
    json!({"id": store_id(name), "name": name, "type": APPCONFIG, "location": "westeurope",
           "identity": {"type": "SystemAssigned"}, "sku": {"name": "standard"},
           "properties": {"provisioningState": "Succeeded", "encryption": {"keyVaultProperties": {
               "keyIdentifier": "https://kv.vault.azure.net/keys/k/v1"}}}})
}

async fn patch(sim: &SimHandle, id: &str, body: Value) -> reqwest::Response {
    let token = sim.state().issue_token(&human());
    client()
        .patch(arm_url(sim, id, Some(APPCONFIG_API)))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// GETs the store (each GET is a poll of its running write) until it is no longer `Updating`.
async fn settled(sim: &SimHandle, id: &str) -> Value {
    for _ in 0..5 {
        let token = sim.state().issue_token(&human());
        let r = client()
            .get(arm_url(sim, id, Some(APPCONFIG_API)))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let doc: Value = r.json().await.unwrap();
        if doc["properties"]["provisioningState"] != "Updating" {
            return doc;
        }
    }
    panic!("{id} stayed Updating");
}

#[tokio::test]
async fn app_configuration_drops_its_key_on_an_empty_key_reference() {
    let sim = start(vec![cmk_store("appcs-clear")]).await;
    let id = store_id("appcs-clear");
    let r = patch(
        &sim,
        &id,
        json!({"properties": {"encryption": {"keyVaultProperties": {}}}}),
    )
    .await;
    assert!(r.status().is_success(), "{}", r.status());
    let doc = settled(&sim, &id).await;
    let kvp = &doc["properties"]["encryption"]["keyVaultProperties"];
    assert_eq!(kvp, &json!({}), "an empty object replaces the key reference: {doc}");
}

#[tokio::test]
async fn a_body_the_schema_refuses_is_a_400_invalid_request_content_and_changes_nothing() {
    let sim = start(vec![cmk_store("appcs-strict")]).await;
    let id = store_id("appcs-strict");
    let before = sim.state().resource(&id).unwrap();
    // keyguard's old MMK body: `keyIdentifier` is a non-nullable string in 2024-06-01.
    let r = patch(
        &sim,
        &id,
        json!({"properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": null}}}}),
    )
    .await;
    let error = assert_arm_error(r, 400, "InvalidRequestContent").await;
    assert!(
        error["error"]["message"].as_str().unwrap().contains("keyIdentifier"),
        "{error}"
    );
    assert_eq!(sim.state().resource(&id).unwrap(), before);
}

#[tokio::test]
async fn app_configuration_answers_201_updating_without_a_polling_header_until_the_write_lands() {
    let mut store = cmk_store("appcs-slow");
    store["properties"]["encryption"] = json!({});
    let sim = start(vec![store]).await;
    let id = store_id("appcs-slow");
    let key = "https://kv.vault.azure.net/keys/k/v2";
    let r = patch(
        &sim,
        &id,
        json!({"properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": key}}}}),
    )
    .await;
    assert_eq!(r.status(), 201);
    for h in ["azure-asyncoperation", "location"] {
        assert!(r.headers().get(h).is_none(), "no {h} header");
    }
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["properties"]["provisioningState"], "Updating");
    // The first GET is a poll that still sees `Updating` and the old document; the next lands it.
    let get = || async {
        let token = sim.state().issue_token(&human());
        let r = client()
            .get(arm_url(&sim, &id, Some(APPCONFIG_API)))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let first = get().await;
    assert_eq!(first["properties"]["provisioningState"], "Updating");
    assert!(first["properties"]["encryption"]["keyVaultProperties"].is_null());
    let second = get().await;
    assert_eq!(second["properties"]["provisioningState"], "Succeeded", "{second}");
    assert_eq!(
        second["properties"]["encryption"]["keyVaultProperties"]["keyIdentifier"],
        key
    );
}

/// One resource of each type whose write schema was vendored after App Configuration's, with a
/// body its schema refuses: a `null` the spec does not allow, or a value outside a closed enum.
fn schema_breaking_writes() -> Vec<(Value, &'static str, &'static str, Value)> {
    let res = |ty: &str, name: &str, properties: Value| {
        json!({"id": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/{ty}/{name}"),
               "name": name, "type": ty, "location": "westeurope", "properties": properties})
    };
    vec![
        (
            res(
                "Microsoft.CognitiveServices/accounts",
                "cog1",
                json!({"encryption": {"keySource": "Microsoft.CognitiveServices"}}),
            ),
            "PATCH",
            "2024-10-01",
            json!({"properties": {"encryption": {"keySource": "Microsoft.KeyVault",
                "keyVaultProperties": {"keyVaultUri": "https://kv.vault.azure.net", "keyName": "k", "keyVersion": null}}}}),
        ),
        (
            res(
                "Microsoft.DBforMySQL/flexibleServers",
                "my1",
                json!({"dataEncryption": {"type": "SystemManaged"}}),
            ),
            "PATCH",
            "2023-12-30",
            json!({"properties": {"dataEncryption": {"type": "CustomerManaged"}}}),
        ),
        (
            res(
                "Microsoft.Search/searchServices",
                "srch1",
                json!({"encryptionWithCmk": {"enforcement": "Disabled"}}),
            ),
            "PATCH",
            "2025-05-01",
            json!({"properties": {"encryptionWithCmk": {"enforcement": null}}}),
        ),
        (
            res(
                "Microsoft.Batch/batchAccounts",
                "batch1",
                json!({"encryption": {"keySource": "Microsoft.Batch"}}),
            ),
            "PATCH",
            "2024-07-01",
            json!({"properties": {"encryption": {"keySource": "Contoso.Vault"}}}),
        ),
        (
            res(
                "Microsoft.Compute/disks",
                "disk1",
                json!({"encryption": {"type": "EncryptionAtRestWithPlatformKey"}}),
            ),
            "PATCH",
            "2025-01-02",
            json!({"properties": {"encryption": {"type": "EncryptionAtRestWithPlatformKey", "diskEncryptionSetId": null}}}),
        ),
    ]
}

#[tokio::test]
async fn every_newly_covered_type_refuses_a_body_its_schema_refuses_and_changes_nothing() {
    let cases = schema_breaking_writes();
    let sim = start(cases.iter().map(|(doc, ..)| doc.clone()).collect()).await;
    for (doc, method, api_version, body) in cases {
        let id = doc["id"].as_str().unwrap();
        let before = sim.state().resource(id).unwrap();
        let token = sim.state().issue_token(&human());
        let r = client()
            .request(method.parse().unwrap(), arm_url(&sim, id, Some(api_version)))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let error = assert_arm_error(r, 400, "InvalidRequestContent").await;
        assert!(
            error["error"]["message"].as_str().unwrap().contains("/properties/"),
            "{id}: {error}"
        );
        assert_eq!(sim.state().resource(id).unwrap(), before, "{id}");
    }
    assert!(sim.state().events().is_empty(), "a refused write raises no event");
}
