//! The App Service managed-identity endpoint.

use base64::Engine;
use serde_json::Value;

use azure_sim::{Principal, SimConfig};

use crate::common::*;

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn issues_tokens_like_app_service_and_arm_accepts_them() {
    let uami = Principal {
        oid: "7e3a0c55-1111-4aaa-9bbb-cccccccccccc".into(),
        appid: "uami-client-id".into(),
        name: "id-keyguard".into(),
        upn: None,
    };
    let sim = azure_sim::start(
        SimConfig {
            user_identities: vec![("uami-client-id".into(), uami.clone())],
            seed: vec![mmk_account("acct1", true)],
            ..SimConfig::default()
        },
        loopback(),
    )
    .await
    .unwrap();
    let c = client();
    let msi = sim.msi_endpoint();
    assert_eq!(msi, format!("{}/msi/token", sim.base_url()));
    let get = |extra: &[(&str, &str)], header: Option<&str>| {
        let mut q = vec![
            ("api-version", "2019-08-01"),
            ("resource", "https://management.azure.com"),
        ];
        q.extend_from_slice(extra);
        let mut r = c.get(&msi).query(&q);
        if let Some(h) = header {
            r = r.header("X-IDENTITY-HEADER", h);
        }
        r.send()
    };

    let r = get(&[], Some("sim-identity-header")).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let exp: i64 = body["expires_on"]
        .as_str()
        .expect("expires_on is a string")
        .parse()
        .unwrap();
    assert!(exp > time::OffsetDateTime::now_utc().unix_timestamp() + 3000);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "https://management.azure.com");
    let sys = sim.state().system_identity().clone();
    assert_eq!(body["client_id"], sys.appid.as_str());
    let token = body["access_token"].as_str().unwrap().to_owned();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "none");
    let p = payload(&token);
    assert_eq!(p["oid"], sys.oid.as_str());
    assert_eq!(p["appid"], sys.appid.as_str());
    assert_eq!(p["tid"], azure_sim::DEFAULT_TENANT_ID);
    assert_eq!(p["aud"], "https://management.azure.com");
    assert_eq!(p["idtyp"], "app");
    assert_eq!(p["exp"].as_i64().unwrap(), exp);
    assert_eq!(
        p["iss"],
        format!("https://sts.windows.net/{}/", azure_sim::DEFAULT_TENANT_ID).as_str()
    );

    // The token works against ARM and the log attributes the call to the identity.
    let r = c
        .get(arm_url(&sim, &account_id("acct1"), Some("2025-01-01")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = sim.state().requests();
    assert_eq!(log.last().unwrap().principal_oid.as_deref(), Some(sys.oid.as_str()));
    assert_eq!(log[0].path, "/msi/token");
    assert_eq!(log[0].principal_oid.as_deref(), Some(sys.oid.as_str()));

    // User-assigned identity by client_id.
    let r = get(&[("client_id", "uami-client-id")], Some("sim-identity-header"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        payload(body["access_token"].as_str().unwrap())["oid"],
        uami.oid.as_str()
    );
    assert_eq!(body["client_id"], "uami-client-id");

    // Errors: wrong/missing secret 401, unknown identity 400, missing resource 400.
    let r = get(&[], Some("wrong")).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.json::<Value>().await.unwrap().is_object());
    assert_eq!(get(&[], None).await.unwrap().status(), 401);
    assert_eq!(
        get(&[("client_id", "nobody")], Some("sim-identity-header"))
            .await
            .unwrap()
            .status(),
        400
    );
    let r = c
        .get(&msi)
        .query(&[("api-version", "2019-08-01")])
        .header("X-IDENTITY-HEADER", "sim-identity-header")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A token for another audience is refused by ARM.
    let r = c
        .get(&msi)
        .query(&[("api-version", "2019-08-01"), ("resource", "https://vault.azure.net")])
        .header("X-IDENTITY-HEADER", "sim-identity-header")
        .send()
        .await
        .unwrap();
    let kv: Value = r.json().await.unwrap();
    let r = c
        .get(arm_url(&sim, &account_id("acct1"), Some("2025-01-01")))
        .bearer_auth(kv["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 401, "InvalidAuthenticationTokenAudience").await;

    assert_eq!(sim.state().token_requests(), 7);
    sim.shutdown().await;
}
