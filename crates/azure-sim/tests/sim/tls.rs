//! The TLS face for peers whose ARM host is fixed: the stand-in over TLS with its throw-away CA,
//! reached directly and through the CONNECT proxy as `management.azure.com`, and the directory
//! reads (tenants, provider, storage services, Microsoft Graph) those tools make first.

use serde_json::Value;

use crate::common::{account_id, human, mmk_account, start};

fn trusting(ca_pem: &str) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder().tls_certs_only([ca])
}

#[tokio::test]
async fn a_client_with_a_fixed_arm_host_reaches_the_stand_in_through_the_proxy_over_tls() {
    let sim = start(vec![mmk_account("stpeer", true)]).await;
    let tls = sim.serve_tls().await.unwrap();
    let token = sim.state().issue_token(&human());
    let sub = account_id("stpeer").split('/').nth(2).unwrap().to_owned();

    // Through the proxy, the way HTTPS_PROXY sends an unmodified SDK.
    let proxied = trusting(&tls.ca_pem)
        .proxy(reqwest::Proxy::https(format!("http://{}", tls.proxy_addr)).unwrap())
        .build()
        .unwrap();
    let get = |url: String| proxied.get(url).bearer_auth(&token).send();
    let list = get(format!(
        "https://management.azure.com/subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts?api-version=2023-05-01"
    ))
    .await
    .unwrap();
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["value"][0]["name"], "stpeer");

    let tenants: Value = get("https://management.azure.com/tenants?api-version=2022-12-01".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tenants["value"][0]["tenantId"], sim.state().tenant_id());
    let provider: Value = get(format!(
        "https://management.azure.com/subscriptions/{sub}/providers/Microsoft.Storage?api-version=2021-04-01"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let storage = provider["resourceTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["resourceType"] == "storageAccounts")
        .unwrap();
    assert!(
        storage["apiVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "2023-05-01")
    );
    let blob = get(format!(
        "https://management.azure.com{}/blobServices/default?api-version=2023-05-01",
        account_id("stpeer")
    ))
    .await
    .unwrap();
    assert_eq!(blob.status(), 200);
    let missing = get(format!(
        "https://management.azure.com{}/fileServices/default?api-version=2023-05-01",
        account_id("nope")
    ))
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    let domains: Value = get("https://graph.microsoft.com/v1.0/domains".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(domains["value"][0]["isDefault"], true);

    // Any other host is refused by the proxy: nothing leaves loopback.
    let refused = proxied.get("https://example.com/").send().await;
    assert!(refused.is_err(), "{refused:?}");

    // Directly, as keyguard calls it: the certificate names 127.0.0.1.
    let direct = trusting(&tls.ca_pem).no_proxy().build().unwrap();
    let listed: Value = direct
        .get(format!(
            "https://{}/subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts?api-version=2023-05-01",
            tls.https_addr
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["value"][0]["name"], "stpeer");

    // A client that does not trust the throw-away CA gets no connection.
    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        untrusting
            .get(format!("https://{}/tenants", tls.https_addr))
            .send()
            .await
            .is_err()
    );
}
