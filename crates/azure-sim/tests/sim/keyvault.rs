//! The Key Vault data-plane stand-in (key reads), its control API and the MSI token for it.

use azure_sim::SimHandle;
use serde_json::{Value, json};

use crate::common::*;

const VAULT: &str = "https://kv-approved.vault.azure.net";

async fn vault_token(sim: &SimHandle) -> String {
    let r = client()
        .get(sim.msi_endpoint())
        .query(&[("api-version", "2019-08-01"), ("resource", "https://vault.azure.net")])
        .header("X-IDENTITY-HEADER", "sim-identity-header")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resource"], "https://vault.azure.net");
    body["access_token"].as_str().unwrap().to_owned()
}

fn key_url(sim: &SimHandle, host: &str, path: &str) -> String {
    format!("{}/keyvault/{host}/keys/{path}?api-version=7.5", sim.base_url())
}

async fn get_key(sim: &SimHandle, token: Option<&str>, host: &str, path: &str) -> (u16, Value) {
    let mut r = client().get(key_url(sim, host, path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn keys_are_permissive_unless_seeded_and_report_their_attributes() {
    let sim = start(vec![]).await;
    let token = vault_token(&sim).await;

    // Nothing seeded: any key in any vault exists, enabled, Recoverable, no expiry.
    let (s, b) = get_key(&sim, Some(&token), "kv-approved.vault.azure.net", "storage-cmk").await;
    assert_eq!(s, 200, "{b}");
    let kid = b["key"]["kid"].as_str().unwrap();
    assert!(
        kid.starts_with("https://kv-approved.vault.azure.net/keys/storage-cmk/"),
        "{kid}"
    );
    assert_eq!(b["key"]["kty"], "RSA");
    assert_eq!(b["key"]["e"], "AQAB");
    assert!(b["key"]["n"].as_str().unwrap().len() > 300);
    assert!(b["key"]["key_ops"].as_array().unwrap().iter().any(|o| o == "wrapKey"));
    assert_eq!(b["attributes"]["enabled"], true);
    assert!(b["attributes"].get("exp").is_none());
    assert_eq!(b["attributes"]["recoveryLevel"], "Recoverable");
    assert!(b["attributes"]["created"].is_i64() && b["attributes"]["updated"].is_i64());
    // The version matches what a storage account reports for a versionless key.
    let sim2 = start(vec![mmk_account("acct1", true)]).await;
    let out = sim2.state().act(
        &account_id("acct1"),
        &human(),
        &json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault",
            "keyvaultproperties": {"keyvaulturi": VAULT, "keyname": "storage-cmk", "keyversion": ""}}}}),
    );
    assert_eq!(out.status, 200);
    assert_eq!(
        out.body["properties"]["encryption"]["keyvaultproperties"]["currentVersionedKeyIdentifier"],
        kid
    );
    sim2.shutdown().await;

    // Seed a vault: disabled, expired and purge-protection-off keys; the rest 404.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let r = client()
        .post(format!("{}/_sim/keys", sim.base_url()))
        .json(&json!([
            {"vault": VAULT, "name": "storage-cmk", "version": "v2"},
            {"vault": VAULT, "name": "disabled-key", "enabled": false},
            {"vault": VAULT, "name": "expired-key", "expires": now - 3600},
            {"vault": "kv-approved.vault.azure.net", "name": "no-purge-protection", "recovery_level": "Recoverable+Purgeable"},
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let kids: Value = r.json().await.unwrap();
    assert_eq!(
        kids["kids"][0],
        "https://kv-approved.vault.azure.net/keys/storage-cmk/v2"
    );
    let host = "kv-approved.vault.azure.net";
    let (s, b) = get_key(&sim, Some(&token), host, "storage-cmk").await;
    assert_eq!(
        (s, b["key"]["kid"].as_str()),
        (200, Some(kids["kids"][0].as_str().unwrap()))
    );
    let (s, b) = get_key(&sim, Some(&token), host, "storage-cmk/v2").await;
    assert_eq!((s, b["attributes"]["enabled"].as_bool()), (200, Some(true)));
    let (s, b) = get_key(&sim, Some(&token), host, "disabled-key").await;
    assert_eq!((s, b["attributes"]["enabled"].as_bool()), (200, Some(false)));
    let (s, b) = get_key(&sim, Some(&token), host, "expired-key").await;
    assert_eq!(s, 200);
    assert_eq!(b["attributes"]["exp"], now - 3600);
    let (s, b) = get_key(&sim, Some(&token), host, "no-purge-protection").await;
    assert_eq!(s, 200);
    assert_eq!(b["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
    for path in ["unknown-key", "storage-cmk/v1"] {
        let (s, b) = get_key(&sim, Some(&token), host, path).await;
        assert_eq!(s, 404, "{path}");
        assert_eq!(b["error"]["code"], "KeyNotFound");
        assert!(b["error"]["message"].is_string());
    }
    // Other vaults stay permissive.
    let (s, _) = get_key(&sim, Some(&token), "kv-other.vault.azure.net", "anything").await;
    assert_eq!(s, 200);

    // Seeded keys are listed and can be cleared.
    let listed: Vec<Value> = client()
        .get(format!("{}/_sim/keys", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    let r = client()
        .post(format!("{}/_sim/keys", sim.base_url()))
        .json(&json!({"name": "no-vault"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    client()
        .delete(format!("{}/_sim/keys", sim.base_url()))
        .send()
        .await
        .unwrap();
    let (s, _) = get_key(&sim, Some(&token), host, "unknown-key").await;
    assert_eq!(s, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn key_vault_requires_a_vault_audience_token() {
    let sim = start(vec![]).await;
    let host = "kv-approved.vault.azure.net";
    // No token: 401 with the challenge the SDKs use to discover the tenant and resource.
    let r = client().get(key_url(&sim, host, "k")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains("resource=\"https://vault.azure.net\""),
        "{challenge}"
    );
    assert!(challenge.contains(azure_sim::DEFAULT_TENANT_ID));
    // An ARM token is for the wrong audience.
    let arm = sim.state().issue_token(&human());
    let (s, b) = get_key(&sim, Some(&arm), host, "k").await;
    assert_eq!(s, 401);
    assert_eq!(b["error"]["code"], "Unauthorized");
    assert!(b["error"]["message"].as_str().unwrap().contains("audience"));
    // Missing api-version.
    let token = vault_token(&sim).await;
    let r = client()
        .get(format!("{}/keyvault/{host}/keys/k", sim.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Vault reads are in the request log, attributed to the caller.
    let log = sim.state().requests();
    assert!(log.iter().any(|e| e.path.starts_with("/keyvault/") && e.status == 401));
    assert!(
        log.iter()
            .any(|e| e.path.starts_with("/keyvault/")
                && e.principal_oid.as_deref() == Some(azure_sim::DEFAULT_SYSTEM_OID))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn sql_server_keys_are_checked_against_seeded_vaults() {
    let server = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Sql/servers/sql1");
    let sim = start(vec![
        json!({"id": server, "type": "Microsoft.Sql/servers", "location": "westeurope", "properties": {}}),
    ])
    .await;
    sim.state().seed_keys(vec![
        serde_json::from_value(json!({"vault": VAULT, "name": "ok", "version": "v1"})).unwrap(),
        serde_json::from_value(
            json!({"vault": VAULT, "name": "soft", "version": "v1", "recovery_level": "Recoverable+Purgeable"}),
        )
        .unwrap(),
        serde_json::from_value(json!({"vault": VAULT, "name": "off", "version": "v1", "enabled": false})).unwrap(),
    ]);
    let token = sim.state().issue_token(&human());
    let put = |name: &'static str, uri: String| {
        let url = arm_url(&sim, &format!("{server}/keys/{name}"), Some("2025-01-01"));
        let token = token.clone();
        async move {
            client()
                .put(url)
                .bearer_auth(token)
                .json(&json!({"properties": {"serverKeyType": "AzureKeyVault", "uri": uri}}))
                .send()
                .await
                .unwrap()
        }
    };
    let r = put("kv-approved_ok_v1", format!("{VAULT}/keys/ok/v1")).await;
    assert_eq!(r.status(), 201);
    let r = put("kv-approved_ok_v1", format!("{VAULT}/keys/ok/v1")).await;
    assert_eq!(r.status(), 200, "second PUT updates");
    let r = put("kv-approved_soft_v1", format!("{VAULT}/keys/soft/v1")).await;
    assert_arm_error(r, 400, "SecurityInvalidAzureKeyVaultRecoveryLevel").await;
    let r = put("kv-approved_off_v1", format!("{VAULT}/keys/off/v1")).await;
    assert_arm_error(r, 400, "AzureKeyVaultKeyDisabled").await;
    let r = put("kv-approved_gone_v1", format!("{VAULT}/keys/gone/v1")).await;
    assert_arm_error(r, 400, "AzureKeyVaultKeyNotFound").await;
    let r = put("bad", "https://kv.vault.azure.net/secrets/x".into()).await;
    assert_arm_error(r, 400, "InvalidParameterValue").await;
    assert_eq!(sim.state().events().len(), 2);
    sim.shutdown().await;
}
