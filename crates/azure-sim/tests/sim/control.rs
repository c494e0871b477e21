//! The `/_sim` control API and its in-process mirror.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn resources_crud_act_token_and_request_log() {
    let sim = start(vec![]).await;
    let c = client();
    let base = sim.base_url();

    let h: Value = c
        .get(format!("{base}/_sim/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h, json!({"status": "ok"}));

    // Upsert an array; `type` is derived from the id when missing; an explicit RG is allowed.
    let mut doc = mmk_account("acct1", true);
    doc.as_object_mut().unwrap().remove("type");
    let rg_only = json!({"id": format!("/subscriptions/{SUB}/resourceGroups/empty-rg")});
    let r = c
        .post(format!("{base}/_sim/resources"))
        .json(&json!([doc, rg_only]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let all: Vec<Value> = c
        .get(format!("{base}/_sim/resources"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["type"], "Microsoft.Storage/storageAccounts");
    let one = c
        .get(format!("{base}/_sim/resource"))
        .query(&[("id", account_id("acct1"))])
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let r = c
        .post(format!("{base}/_sim/resources"))
        .json(&json!({"name": "no id"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Explicitly seeded empty RG exists: a missing account there is ResourceNotFound.
    let token = sim.state().issue_token(&human());
    let in_empty =
        format!("/subscriptions/{SUB}/resourceGroups/empty-rg/providers/Microsoft.Storage/storageAccounts/x");
    let r = c
        .get(arm_url(&sim, &in_empty, Some("2025-01-01")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 404, "ResourceNotFound").await;

    // Act as a human over HTTP: same status/body as ARM, and an event attributed to them.
    let who = human();
    let r = c
        .post(format!("{base}/_sim/act"))
        .json(&json!({"id": account_id("acct1"), "principal": who, "patch": {"properties": {"encryption": {"keySource": "Microsoft.Keyvault"}}}}))
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 400, "InvalidValuesForRequestParameters").await;
    let r = c
        .post(format!("{base}/_sim/act"))
        .json(
            &json!({"id": account_id("acct1"), "principal": who, "patch": {"properties": {"encryption": {
            "keySource": "Microsoft.Keyvault",
            "keyvaultproperties": {"keyvaulturi": "https://kv-rogue.vault.azure.net", "keyname": "k"}}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events: Vec<Value> = c
        .get(format!("{base}/_sim/events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["claims"]["upn"], "mallory@contoso.example");
    assert_eq!(events[0]["data"]["claims"]["appid"], who.appid.as_str());

    // In-process act mirrors it.
    let out = sim.state().act(
        &account_id("acct1"),
        &who,
        &json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
    );
    assert_eq!(out.status, 200);
    assert_eq!(out.body["properties"]["encryption"]["keySource"], "Microsoft.Storage");

    // /_sim/token: call ARM directly as anyone.
    let t: Value = c
        .post(format!("{base}/_sim/token"))
        .json(&json!({"oid": "o-1", "appid": "a-1", "name": "Bob"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c
        .get(arm_url(&sim, &account_id("acct1"), Some("2025-01-01")))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Request log: ARM calls only (control calls are not logged), with principal and status.
    let log: Vec<Value> = c
        .get(format!("{base}/_sim/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["status"], 404);
    assert_eq!(log[1]["status"], 200);
    assert_eq!(log[1]["principal_oid"], "o-1");
    assert_eq!(log[1]["method"], "GET");
    assert_eq!(log[1]["query"], "api-version=2025-01-01");
    assert!(log[1]["seq"].as_u64().unwrap() > log[0]["seq"].as_u64().unwrap());
    assert!(log[1]["correlation_id"].is_string() && log[1]["at"].is_string());
    let r = c.delete(format!("{base}/_sim/requests")).send().await.unwrap();
    assert!(r.status().is_success());
    assert!(sim.state().requests().is_empty());

    // Delete: gone from ARM afterwards.
    let r = c
        .delete(format!("{base}/_sim/resource"))
        .query(&[("id", account_id("acct1"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(arm_url(&sim, &account_id("acct1"), Some("2025-01-01")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 404, "ResourceNotFound").await;
    let r = c
        .get(format!("{base}/_sim/resource"))
        .query(&[("id", account_id("acct1"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn demo_seed_is_servable() {
    let seed = azure_sim::demo_seed(SUB, RG);
    assert!(seed.len() >= 4);
    let sim = start(seed).await;
    let token = sim.state().issue_token(sim.state().system_identity());
    for name in [
        "stcmkpayments",
        "stcmkledger",
        "stmmklogs",
        "stmmknoident",
        "stexemptsandbox",
    ] {
        let r = client()
            .get(arm_url(&sim, &account_id(name), Some("2025-01-01")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }
    let exempt = sim.state().resource(&account_id("stexemptsandbox")).unwrap();
    assert_eq!(exempt["tags"]["keyguard-exempt-until"], azure_sim::date_in_days(30));
    assert!(exempt["tags"]["keyguard-exempt-reason"].is_string());
    let cmk = sim.state().resource(&account_id("stcmkpayments")).unwrap();
    assert_eq!(
        cmk["properties"]["encryption"]["keyvaultproperties"]["keyvaulturi"],
        azure_sim::DEMO_KEYVAULT
    );
    // Remediating the MMK account with an identity works; without one it is refused.
    let fix = json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault",
        "keyvaultproperties": {"keyvaulturi": azure_sim::DEMO_KEYVAULT, "keyname": "cmk-storage", "keyversion": ""}}}});
    let me = sim.state().system_identity().clone();
    assert_eq!(sim.state().act(&account_id("stmmklogs"), &me, &fix).status, 200);
    assert_eq!(sim.state().act(&account_id("stmmknoident"), &me, &fix).status, 400);
    sim.shutdown().await;
}
