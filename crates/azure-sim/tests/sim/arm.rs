//! ARM storage accounts: fixture fidelity, PATCH rules, errors, the write event.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common::*;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

#[tokio::test]
async fn get_returns_fixture_bodies_verbatim() {
    for file in [
        "arm/storage/StorageAccountGetProperties.json",
        "arm/storage/StorageAccountGetPropertiesCMKEnabled.json",
    ] {
        let fx = fixture(file);
        let body = fx["responses"]["200"]["body"].clone();
        let api = fx["parameters"]["api-version"].as_str().unwrap().to_owned();
        let sim = start(vec![body.clone()]).await;
        let token = sim.state().issue_token(&human());
        let resp = client()
            .get(arm_url(&sim, FIXTURE_ID, Some(&api)))
            .bearer_auth(&token)
            .header("x-ms-correlation-request-id", "corr-123")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{file}");
        let h = resp.headers().clone();
        assert_eq!(h["x-ms-correlation-request-id"], "corr-123");
        assert!(h.contains_key("x-ms-request-id"));
        assert!(h.contains_key("x-ms-ratelimit-remaining-subscription-reads"));
        let got: Value = resp.json().await.unwrap();
        assert_eq!(got, body, "{file}");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn enable_cmk_patch_matches_fixture_response() {
    let fx = fixture("arm/storage/StorageAccountEnableCMK.json");
    let mut mmk = fixture("arm/storage/StorageAccountGetProperties.json")["responses"]["200"]["body"].clone();
    mmk["identity"] =
        fixture("arm/storage/StorageAccountGetPropertiesCMKEnabled.json")["responses"]["200"]["body"]["identity"]
            .clone();
    let sim = start(vec![mmk]).await;
    let token = sim.state().issue_token(&human());
    let resp = client()
        .patch(arm_url(&sim, FIXTURE_ID, Some("2025-01-01")))
        .bearer_auth(&token)
        .json(&fx["parameters"]["parameters"])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()
            .contains_key("x-ms-ratelimit-remaining-subscription-writes")
    );
    let got: Value = resp.json().await.unwrap();
    let want = &fx["responses"]["200"]["body"];
    let (ge, we) = (&got["properties"]["encryption"], &want["properties"]["encryption"]);
    assert_eq!(ge["keySource"], we["keySource"]);
    for k in ["keyvaulturi", "keyname", "keyversion"] {
        assert_eq!(ge["keyvaultproperties"][k], we["keyvaultproperties"][k], "{k}");
    }
    // Read-only fields are filled in by the service, and existing service timestamps survive.
    let versioned = ge["keyvaultproperties"]["currentVersionedKeyIdentifier"]
        .as_str()
        .unwrap();
    assert!(versioned.starts_with("https://myvault8569.vault.azure.net/keys/wrappingKey/"));
    assert!(versioned.len() > "https://myvault8569.vault.azure.net/keys/wrappingKey/".len());
    assert!(ge["keyvaultproperties"]["lastKeyRotationTimestamp"].is_string());
    assert_eq!(ge["services"], we["services"]);
    assert_eq!(got["identity"], want["identity"]);
    assert_eq!(got["id"], want["id"]);

    // GET afterwards returns the same document.
    let again: Value = client()
        .get(arm_url(&sim, FIXTURE_ID, Some("2025-01-01")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, got);
    sim.shutdown().await;
}

#[tokio::test]
async fn write_emits_resource_write_success_event_shaped_like_fixture() {
    let sim = start(vec![mmk_account("acct1", true)]).await;
    let who = human();
    let token = sim.state().issue_token(&who);
    let resp = client()
        .patch(arm_url(&sim, &account_id("acct1"), Some("2023-05-01")))
        .bearer_auth(&token)
        .header("x-ms-correlation-request-id", "6f1c9f0e-aaaa-bbbb-cccc-000000000001")
        .json(&json!({"tags": {"owner": "team-a"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = sim.state().events();
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    let fx = fixture("eventgrid/arm-resourcewritesuccess.subscription-topic.delivery.docs.json");
    let fx = &fx[0];
    assert_eq!(keys(ev), keys(fx), "top-level keys");
    // The fixture (a create) has no httpRequest; the spec documents it for updates of an
    // existing resource, which a PATCH is.
    let (ek, fk) = (keys(&ev["data"]), keys(&fx["data"]));
    assert!(
        fk.is_subset(&ek),
        "data keys missing: {:?}",
        fk.difference(&ek).collect::<Vec<_>>()
    );
    let extra: Vec<_> = ek.difference(&fk).cloned().collect();
    assert_eq!(extra, vec!["httpRequest".to_owned()]);
    assert_eq!(keys(&ev["data"]["authorization"]), keys(&fx["data"]["authorization"]));
    assert_eq!(
        keys(&ev["data"]["httpRequest"]),
        keys(&json!({"clientRequestId":1,"clientIpAddress":1,"method":1,"url":1}))
    );

    let claims = &ev["data"]["claims"];
    assert_eq!(claims["appid"], who.appid.as_str());
    assert_eq!(
        claims["http://schemas.microsoft.com/identity/claims/objectidentifier"],
        who.oid.as_str()
    );
    assert_eq!(
        claims["http://schemas.microsoft.com/identity/claims/tenantid"],
        azure_sim::DEFAULT_TENANT_ID
    );
    assert_eq!(claims["name"], who.name.as_str());
    assert_eq!(claims["ipaddr"], "127.0.0.1");
    assert_eq!(claims["upn"], "mallory@contoso.example");

    let uri = format!("/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.Storage/storageAccounts/acct1");
    assert_eq!(ev["subject"], uri.as_str());
    assert_eq!(ev["data"]["resourceUri"], uri.as_str());
    assert_eq!(ev["topic"], format!("/subscriptions/{SUB}").as_str());
    assert_eq!(ev["eventType"], "Microsoft.Resources.ResourceWriteSuccess");
    assert_eq!(ev["data"]["operationName"], "Microsoft.Storage/storageAccounts/write");
    assert_eq!(ev["data"]["status"], "Succeeded");
    assert_eq!(ev["data"]["correlationId"], "6f1c9f0e-aaaa-bbbb-cccc-000000000001");
    assert_eq!(ev["data"]["resourceProvider"], "Microsoft.Storage");
    assert_eq!(ev["data"]["subscriptionId"], SUB);
    assert_eq!(ev["data"]["httpRequest"]["method"], "PATCH");
    assert_eq!(ev["dataVersion"], "2");
    assert_eq!(ev["metadataVersion"], "1");
    let t = ev["eventTime"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok(),
        "{t}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn arm_errors_have_arm_shape_and_codes() {
    let mut other = mmk_account("other", false);
    other["id"] = json!(format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Web/sites/app1"
    ));
    let sim = start(vec![mmk_account("withid", true), mmk_account("noid", false), other]).await;
    let c = client();
    let token = sim.state().issue_token(&human());
    let url = |id: &str, v: Option<&str>| arm_url(&sim, id, v);
    let acct = account_id("withid");

    let r = c.get(url(&acct, Some("2025-01-01"))).send().await.unwrap();
    // Error responses carry ARM's headers too.
    for h in [
        "x-ms-request-id",
        "x-ms-correlation-request-id",
        "x-ms-ratelimit-remaining-subscription-reads",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    assert_arm_error(r, 401, "AuthenticationFailed").await;
    let r = c
        .get(url(&acct, Some("2025-01-01")))
        .bearer_auth("not-a-jwt")
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 401, "InvalidAuthenticationToken").await;
    let (expired, _) = sim.state().issue_token_with(&human(), None, Some(-60));
    let r = c
        .get(url(&acct, Some("2025-01-01")))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 401, "InvalidAuthenticationToken").await;

    let r = c.get(url(&acct, None)).bearer_auth(&token).send().await.unwrap();
    assert_arm_error(r, 400, "MissingApiVersionParameter").await;
    let r = c
        .get(url(&acct, Some("1999-01-01")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 400, "InvalidApiVersionParameter").await;

    let missing_rg =
        format!("/subscriptions/{SUB}/resourceGroups/nope/providers/Microsoft.Storage/storageAccounts/withid");
    let r = c
        .get(url(&missing_rg, Some("2025-01-01")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 404, "ResourceGroupNotFound").await;
    let r = c
        .get(url(&account_id("ghost"), Some("2025-01-01")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body = assert_arm_error(r, 404, "ResourceNotFound").await;
    assert_eq!(
        body["error"]["message"],
        format!("The Resource 'Microsoft.Storage/storageAccounts/ghost' under resource group '{RG}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix").as_str()
    );
    let sql = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Web/sites/app1");
    let r = c
        .get(url(&sql, Some("2025-01-01")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 400, "InvalidResourceType").await;

    let patch = |id: String, body: Value| {
        c.patch(url(&id, Some("2025-01-01")))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = patch(
        acct.clone(),
        json!({"properties":{"encryption":{"keySource":"Microsoft.Keyvault"}}}),
    )
    .await
    .unwrap();
    assert_arm_error(r, 400, "InvalidValuesForRequestParameters").await;
    let cmk = json!({"properties":{"encryption":{"keySource":"Microsoft.Keyvault","keyvaultproperties":{"keyvaulturi":"https://kv.vault.azure.net","keyname":"k"}}}});
    let r = patch(account_id("noid"), cmk.clone()).await.unwrap();
    assert_arm_error(r, 400, "KeyVaultAuthenticationFailure").await;
    let r = patch(
        acct.clone(),
        json!({"properties":{"encryption":{"keySource":"Contoso.Vault"}}}),
    )
    .await
    .unwrap();
    // A value outside StorageAccounts_Update's keySource enum breaks the request schema, which
    // ARM checks before the storage service sees the body (see `azure_sim::schemas`).
    let body = assert_arm_error(r, 400, "InvalidRequestContent").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("Contoso.Vault"));

    // Failed writes change nothing and raise no event.
    assert!(sim.state().events().is_empty());
    assert_eq!(
        sim.state().resource(&acct).unwrap()["properties"]["encryption"]["keySource"],
        "Microsoft.Storage"
    );
    // Unknown paths are not ARM resources.
    let r = c.get(format!("{}/nothing-here", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn patch_rules_casing_readonly_revert_and_user_assigned_identity() {
    let uai = format!(
        "/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-cmk"
    );
    let mut with_uai = mmk_account("uai", false);
    with_uai["identity"] =
        json!({"type": "UserAssigned", "userAssignedIdentities": {uai.clone(): {"principalId": "p", "clientId": "c"}}});
    let sim = start(vec![mmk_account("acct1", true), with_uai]).await;
    let c = client();
    let token = sim.state().issue_token(&human());
    // Path segments and provider/type in any case.
    let weird = format!(
        "/SUBSCRIPTIONS/{SUB}/resourcegroups/{}/providers/microsoft.storage/STORAGEACCOUNTS/ACCT1",
        RG.to_uppercase()
    );
    let r = c
        .patch(arm_url(&sim, &weird, Some("2024-01-01")))
        .bearer_auth(&token)
        .json(&json!({"properties": {
            "provisioningState": "Failed",
            "encryption": {"keysource": "microsoft.KEYVAULT", "keyVaultProperties": {
                "keyVaultUri": "https://kv-approved.vault.azure.net", "keyName": "cmk", "keyVersion": "abc123",
                "currentVersionedKeyIdentifier": "https://evil/keys/x/y"}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    let enc = &doc["properties"]["encryption"];
    assert_eq!(enc["keySource"], "Microsoft.Keyvault");
    assert_eq!(
        enc["keyvaultproperties"]["keyvaulturi"],
        "https://kv-approved.vault.azure.net"
    );
    assert_eq!(
        enc["keyvaultproperties"]["currentVersionedKeyIdentifier"],
        "https://kv-approved.vault.azure.net/keys/cmk/abc123"
    );
    assert_eq!(doc["properties"]["provisioningState"], "Succeeded");

    // Back to Microsoft-managed keys: keyvaultproperties disappear.
    let r = c
        .patch(arm_url(&sim, &account_id("acct1"), Some("2024-01-01")))
        .bearer_auth(&token)
        .json(&json!({"properties": {"encryption": {"keySource": "MICROSOFT.STORAGE"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["properties"]["encryption"]["keySource"], "Microsoft.Storage");
    assert!(doc["properties"]["encryption"].get("keyvaultproperties").is_none());

    // User-assigned identity: must be one of the account's identities.
    let cmk = |ident: &str| {
        json!({"properties": {"encryption": {
        "keySource": "Microsoft.Keyvault",
        "identity": {"userAssignedIdentity": ident},
        "keyvaultproperties": {"keyvaulturi": "https://kv-approved.vault.azure.net", "keyname": "cmk", "keyversion": ""}}}})
    };
    let r = c
        .patch(arm_url(&sim, &account_id("uai"), Some("2025-06-01")))
        .bearer_auth(&token)
        .json(&cmk(
            "/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other",
        ))
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 400, "InvalidValuesForRequestParameters").await;
    let r = c
        .patch(arm_url(&sim, &account_id("uai"), Some("2025-06-01")))
        .bearer_auth(&token)
        .json(&cmk(&uai.replace("resourcegroups", "resourceGroups")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    let versioned = doc["properties"]["encryption"]["keyvaultproperties"]["currentVersionedKeyIdentifier"]
        .as_str()
        .unwrap();
    assert!(
        versioned.starts_with("https://kv-approved.vault.azure.net/keys/cmk/"),
        "{versioned}"
    );

    // Tags merge; null removes a tag.
    let r = c
        .patch(arm_url(&sim, &account_id("acct1"), Some("2025-06-01")))
        .bearer_auth(&token)
        .json(&json!({"tags": {"key1": null, "new": "v"}}))
        .send()
        .await
        .unwrap();
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["tags"], json!({"key2": "value2", "new": "v"}));
    assert_eq!(sim.state().events().len(), 4);
    sim.shutdown().await;
}
