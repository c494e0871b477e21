//! Trust boundaries end to end: a key reference in a resource body, an event or a baseline must
//! never make keyguard send a request (let alone its Key Vault token) to a host outside Key
//! Vault.
//!
//! A hostile listener stands in for every host outside the stand-in: keyguard runs with it as
//! its HTTPS proxy, so every `https` request keyguard makes, to any name or IP address, arrives
//! there first as a `CONNECT host:port` and is recorded (and refused). ARM, the token endpoint and
//! the state store are plain-http loopback and never pass through it. A legitimate vault's key
//! read shows up there too, which proves the listener would have seen any other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyguard_e2e::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Records the first line of every request (`CONNECT host:443 HTTP/1.1`) and refuses it.
struct HostileListener {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl HostileListener {
    async fn start() -> anyhow::Result<HostileListener> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let first = text.lines().next().unwrap_or_default().to_string();
                    record.lock().unwrap_or_else(|p| p.into_inner()).push(first);
                    let _ = socket
                        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        Ok(HostileListener { url, seen })
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Everything but the approved vault's key reads.
    fn strays(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|l| l != "CONNECT kv-approved.vault.azure.net:443 HTTP/1.1")
            .collect()
    }
}

/// A storage account whose key reference points wherever `keyvaulturi` says.
fn account_pointing_at(rg: &str, name: &str, keyvaulturi: &str) -> Value {
    let mut doc = storage_account(rg, name, Some(APPROVED_VAULT), json!({}));
    doc["properties"]["encryption"]["keyvaultproperties"] =
        json!({"keyvaulturi": keyvaulturi, "keyname": "storage-cmk", "keyversion": ""});
    doc
}

/// keyguard with the hostile listener as its HTTPS proxy and no Key Vault stand-in, so a Key
/// Vault read would leave for the real host name.
async fn env_behind(listener: &HostileListener) -> anyhow::Result<Env> {
    Env::start(Options {
        extra_env: vec![
            ("KEYGUARD_KEYVAULT_ENDPOINT".into(), String::new()),
            ("HTTPS_PROXY".into(), listener.url.clone()),
            ("https_proxy".into(), listener.url.clone()),
            ("ALL_PROXY".into(), String::new()),
            ("NO_PROXY".into(), String::new()),
            ("no_proxy".into(), String::new()),
        ],
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn no_key_reference_sends_a_request_outside_key_vault() -> anyhow::Result<()> {
    let listener = HostileListener::start().await?;
    let env = env_behind(&listener).await?;
    // Each way a key reference can point elsewhere, in a resource body ARM returns (alert mode:
    // `rg-alert*` requires CMK with no vault allow-list, the built-in default's shape).
    let hostile = [
        ("sthost", "https://evil.example/"),
        ("stip", "https://127.0.0.1/"),
        ("stipv6", "https://[::1]/"),
        ("stuserinfo", "https://kv-approved.vault.azure.net:1@evil.example/"),
        ("stport", "https://kv-approved.vault.azure.net:8443/"),
        ("stsuffix", "https://kv-approved.vault.azure.net.evil.example/"),
        ("stlocal", "https://localhost/"),
    ];
    let mut docs: Vec<Value> = hostile
        .iter()
        .map(|(name, uri)| account_pointing_at("rg-alert", name, uri))
        .collect();
    // The positive control: a real vault name, which keyguard does read (through the proxy).
    docs.push(storage_account("rg-alert", "stgood", Some(APPROVED_VAULT), json!({})));
    // ... in a vault of the estate (Resource Graph lists it), so the key-swap guard lets it be.
    docs.push(azure_sim::vaults::key_vault(
        SUBSCRIPTION,
        "rg-keys",
        "kv-approved",
        azure_sim::DEFAULT_TENANT_ID,
    ));
    env.seed(Value::Array(docs)).await?;
    let before = env.events().await?.len();
    for (name, _) in &hostile {
        env.act_as_user(&account_id("rg-alert", name), json!({"tags": {"touched": "1"}}))
            .await?;
    }
    env.act_as_user(&account_id("rg-alert", "stgood"), json!({"tags": {"touched": "1"}}))
        .await?;
    env.wait_delivered(before + hostile.len() + 1).await?;

    for (name, uri) in &hostile {
        let id = account_id("rg-alert", name);
        let record = env.audit_record(&id, "verdict", "drift").await?;
        let drift = record["drift"].as_str().unwrap_or_default();
        assert!(drift.contains("KeyOutsideKeyVault"), "{name}: {record}");
        assert_eq!(record["before"]["state"], "keyOutsideKeyVault", "{name}: {record}");
        let host = url_host(uri);
        assert!(
            drift.contains(&host),
            "the finding names the bad reference ({host}): {record}"
        );
        assert_eq!(
            record["alert"], true,
            "{name}: a high-severity finding is raised: {record}"
        );
    }

    // The control's key read did reach the listener, so it would have seen any other request.
    env.wait_for(Duration::from_secs(20), "the approved vault's key read", || async {
        Ok(listener
            .seen()
            .iter()
            .any(|l| l.contains("kv-approved.vault.azure.net:443")))
    })
    .await?;
    let strays = listener.strays();
    assert!(strays.is_empty(), "requests outside Key Vault: {strays:?}");
    assert_eq!(env.keyguard_patches().await?, 0, "alert mode writes nothing");
    Ok(())
}

#[tokio::test]
async fn a_hostile_reference_in_an_event_body_or_a_revert_is_never_used() -> anyhow::Result<()> {
    let listener = HostileListener::start().await?;
    let env = env_behind(&listener).await?;

    // Enforce mode: an account keyguard has seen compliant (baseline: the approved vault) is
    // pointed at a key behind user info. It is not reverted to it, nor is it read or kept.
    let id = account_id("rg-cmk", "stenforce");
    env.seed(json!([storage_account(
        "rg-cmk",
        "stenforce",
        Some(APPROVED_VAULT),
        json!({})
    )]))
    .await?;
    let before = env.events().await?.len();
    env.act_as_user(&id, json!({"tags": {"touched": "1"}})).await?;
    env.wait_delivered(before + 1).await?;
    env.audit_record(&id, "verdict", "compliant").await?;
    let swap = json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {
        "keyvaulturi": "https://kv-approved.vault.azure.net:1@evil.example/", "keyname": "storage-cmk", "keyversion": ""}}}});
    env.act_as_user(&id, swap).await?;
    env.wait_delivered(before + 2).await?;
    let record = env.audit_record(&id, "verdict", "drift").await?;
    assert!(
        record["drift"]
            .as_str()
            .unwrap_or_default()
            .contains("KeyOutsideKeyVault"),
        "{record}"
    );
    assert_eq!(
        env.keyguard_patches().await?,
        0,
        "no write carries the hostile reference: {record}"
    );

    // A Resource Notifications event whose carried body names a hostile vault: keyguard does not
    // trust the body, reads the account live, and still sends nothing outside Key Vault.
    let carried_id = account_id("rg-alert", "stcarried");
    env.seed(json!([account_pointing_at(
        "rg-alert",
        "stcarried",
        "https://evil-live.example/"
    )]))
    .await?;
    let event = resource_notification(
        &carried_id,
        "stcarried",
        json!({"keySource": "Microsoft.Keyvault",
            "keyvaultproperties": {"keyvaulturi": "https://evil-carried.example/", "keyname": "k"}}),
    );
    let (status, body) = env.deliver(&event).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ReturnValue"]["verdict"], "drift", "{body}");
    assert!(
        body["ReturnValue"]["drift"]
            .as_str()
            .unwrap_or_default()
            .contains("evil-live.example"),
        "decided on the live body, which is hostile too: {body}"
    );

    // A baseline set by hand to such a reference is refused before the store is touched.
    for bad in [
        "https://evil.example/keys/k",
        "https://127.0.0.1/keys/k",
        "https://kv-approved.vault.azure.net:1@evil.example/keys/k",
        "https://kv-approved.vault.azure.net:8443/keys/k",
    ] {
        let out = env.keyguard_cli(&["baseline", "set", &id, "--key", bad])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(stderr.contains("is not a Key Vault key URI"), "{bad}: {stderr}");
    }

    let strays = listener.strays();
    assert!(strays.is_empty(), "requests outside Key Vault: {strays:?}");
    Ok(())
}

/// The host part of a hostile URI as the finding shows it (the URL parser's view).
fn url_host(uri: &str) -> String {
    let parsed = reqwest::Url::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
    let host = parsed.host_str().unwrap_or_default();
    host.trim_start_matches('[').trim_end_matches(']').to_string()
}
