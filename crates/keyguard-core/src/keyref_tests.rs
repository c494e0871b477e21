#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;
use crate::egress::{Credential, EgressPolicy};

#[test]
fn a_key_identifier_is_parsed_into_vault_name_and_version() {
    let k = KeyRef::from_key_uri("https://KV-Prod.Vault.Azure.Net/keys/storage-cmk/0123abcd", None).unwrap();
    assert_eq!(k.vault_host(), Some("kv-prod.vault.azure.net"));
    assert_eq!(k.key_name(), "storage-cmk");
    assert_eq!(k.version(), Some("0123abcd"));
    assert_eq!(k.key_id(), "https://kv-prod.vault.azure.net/keys/storage-cmk/0123abcd");
    assert_eq!(
        k.key_url().unwrap().as_str(),
        "https://kv-prod.vault.azure.net/keys/storage-cmk/0123abcd"
    );
    let versionless = KeyRef::from_key_uri("https://kv.vault.azure.net:443/keys/k/", None).unwrap();
    assert_eq!(versionless.version(), None);
    assert_eq!(versionless.key_id(), "https://kv.vault.azure.net/keys/k");
}

#[test]
fn hostile_key_references_are_refused_with_the_reason() {
    type Expect = fn(&KeyRefError) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("https://127.0.0.1/keys/k", |e| {
            matches!(e, KeyRefError::IpLiteral { .. })
        }),
        ("https://[::1]/keys/k", |e| matches!(e, KeyRefError::IpLiteral { .. })),
        ("https://2130706433/keys/k", |e| {
            matches!(e, KeyRefError::IpLiteral { .. })
        }),
        ("https://localhost/keys/k", |e| {
            matches!(e, KeyRefError::NotAVaultHost { .. })
        }),
        ("https://kv.vault.azure.net:1@evil.example/keys/k", |e| {
            matches!(e, KeyRefError::UserInfo)
        }),
        ("https://kv.vault.azure.net@evil.example/keys/k", |e| {
            matches!(e, KeyRefError::UserInfo)
        }),
        ("https://kv.vault.azure.net:8443/keys/k", |e| {
            matches!(e, KeyRefError::Port { port: 8443 })
        }),
        ("http://kv.vault.azure.net/keys/k", |e| {
            matches!(e, KeyRefError::NotHttps { .. })
        }),
        ("https://kv.vault.azure.net.evil.example/keys/k", |e| {
            matches!(e, KeyRefError::NotAVaultHost { .. })
        }),
        ("https://a.b.vault.azure.net/keys/k", |e| {
            matches!(e, KeyRefError::NotAVaultHost { .. })
        }),
        ("https://vault.azure.net/keys/k", |e| {
            matches!(e, KeyRefError::NotAVaultHost { .. })
        }),
        ("https://kv.vault.azure.net./keys/k", |e| {
            matches!(e, KeyRefError::NotAVaultHost { .. })
        }),
        ("https://kv.vault.microsoftazure.de/keys/k", |e| {
            matches!(e, KeyRefError::NotAVaultHost { .. })
        }),
        ("https://kv.vault.azure.net/secrets/k", |e| {
            matches!(e, KeyRefError::NotAKeyPath)
        }),
        ("https://kv.vault.azure.net/keys/k/v/extra", |e| {
            matches!(e, KeyRefError::NotAKeyPath)
        }),
        ("https://kv.vault.azure.net/keys/k?x=1", |e| {
            matches!(e, KeyRefError::NotAKeyPath)
        }),
        ("https://kv.vault.azure.net/keys/k#f", |e| {
            matches!(e, KeyRefError::NotAKeyPath)
        }),
        ("https://kv.vault.azure.net/keys/..%2f..%2fx", |e| {
            matches!(e, KeyRefError::BadKeyName)
        }),
        ("https://kv.vault.azure.net/keys/k/v%2F1", |e| {
            matches!(e, KeyRefError::BadKeyVersion)
        }),
        ("https://kv.vault.azure.net", |e| matches!(e, KeyRefError::NotAKeyPath)),
        ("kv.vault.azure.net/keys/k", |e| matches!(e, KeyRefError::NotAUrl)),
    ];
    for (uri, expected) in cases {
        let err = KeyRef::from_key_uri(uri, None).expect_err(uri);
        assert!(expected(&err), "{uri}: {err:?}");
    }
}

#[test]
fn the_host_checked_is_the_host_used() {
    // Unicode dots and percent-encoding are normalised by the parser before the check, and the
    // key's URL is rebuilt from the checked parts.
    let k = KeyRef::from_key_uri("https://kv\u{ff0e}vault.azure.net/keys/k", None).unwrap();
    assert_eq!(k.key_url().unwrap().host_str(), Some("kv.vault.azure.net"));
    assert!(KeyRef::from_key_uri("https://evil\u{ff0e}example/keys/k", None).is_err());
}

#[test]
fn vault_uris_in_separate_fields_are_checked_the_same_way() {
    let k = KeyRef::new("https://kv.vault.azure.net/", "k", Some(""), None).unwrap();
    assert_eq!(k.version(), None);
    assert_eq!(k.vault_uri().as_deref(), Some("https://kv.vault.azure.net"));
    assert!(
        KeyRef::new("kv.vault.azure.net", "k", None, None).is_ok(),
        "a bare host"
    );
    for bad in [
        "https://127.0.0.1/",
        "https://kv.vault.azure.net:1@evil.example/",
        "https://kv.vault.azure.net/some/path",
        "https://evil.example",
        "",
    ] {
        assert!(KeyRef::new(bad, "k", None, None).is_err(), "{bad}");
    }
    assert_eq!(
        KeyRef::new("https://kv.vault.azure.net", "bad_name!", None, None),
        Err(KeyRefError::BadKeyName)
    );
}

#[test]
fn stored_references_are_validated_when_read() {
    let good: KeyRef =
        serde_json::from_str(r#"{"vaultUri":"https://kv.vault.azure.net","keyName":"k","keyVersion":"v1"}"#).unwrap();
    assert_eq!(good.version(), Some("v1"));
    let snake: KeyRef = serde_json::from_str(r#"{"vault_uri":"https://kv.vault.azure.net","key_name":"k"}"#).unwrap();
    assert!(snake.same_key(&good));
    assert!(
        serde_json::from_str::<KeyRef>(r#"{"vaultUri":"https://evil.example","keyName":"k"}"#).is_err(),
        "a tampered baseline cannot name another host"
    );
    let des = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des1";
    let set: KeyRef = serde_json::from_value(serde_json::json!({"vaultUri": "", "keyName": des})).unwrap();
    assert_eq!(set.encryption_set_id(), Some(des));
    assert!(serde_json::from_value::<KeyRef>(serde_json::json!({"vaultUri": "", "keyName": "https://evil"})).is_err());
    let hidden: KeyRef = serde_json::from_value(serde_json::json!({"vaultUri": "", "keyName": ""})).unwrap();
    assert_eq!(hidden, KeyRef::not_visible());
    for key in [good, set, hidden] {
        let back: KeyRef = serde_json::from_value(serde_json::to_value(&key).unwrap()).unwrap();
        assert_eq!(back, key);
    }
}

#[test]
fn same_key_ignores_case_and_a_missing_version() {
    let a = KeyRef::from_key_uri("https://kv.vault.azure.net/keys/K/V1", None).unwrap();
    let b = KeyRef::from_key_uri("https://KV.vault.azure.net/keys/k", None).unwrap();
    let c = KeyRef::from_key_uri("https://kv.vault.azure.net/keys/k/v2", None).unwrap();
    let d = KeyRef::from_key_uri("https://kv2.vault.azure.net/keys/k", None).unwrap();
    assert!(a.same_key(&b) && b.same_key(&c));
    assert!(!a.same_key(&c));
    assert!(!b.same_key(&d));
    assert!(!b.same_key(&KeyRef::not_visible()));
}

fn vault_names() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,22}[a-z0-9]".prop_filter("no double dash", |s| !s.contains("--"))
}

fn any_host() -> impl Strategy<Value = String> {
    prop_oneof![
        vault_names().prop_flat_map(|n| {
            prop::sample::select(VAULT_SUFFIXES.iter().map(|s| s.suffix).collect::<Vec<_>>())
                .prop_map(move |s| format!("{n}.{s}"))
        }),
        "[a-z0-9.-]{1,30}",
        Just("127.0.0.1".to_string()),
        Just("[::1]".to_string()),
        Just("kv.vault.azure.net.evil.example".to_string()),
        Just("localhost".to_string()),
    ]
}

fn any_key_uri() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("https"), Just("http"), Just("HTTPS"), Just("ftp")],
        prop::option::of("[a-z.:]{1,12}@"),
        any_host(),
        prop::option::of(prop_oneof![Just(443u16), Just(1u16), any::<u16>()]),
        prop_oneof![Just("keys"), Just("Keys"), Just("secrets")],
        "[A-Za-z0-9%./_-]{0,20}",
        prop::option::of("[A-Za-z0-9/]{0,40}"),
    )
        .prop_map(|(scheme, userinfo, host, port, keys, name, version)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let version = version.map(|v| format!("/{v}")).unwrap_or_default();
            format!(
                "{scheme}://{}{host}{port}/{keys}/{name}{version}",
                userinfo.unwrap_or_default()
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every key reference keyguard accepts has a URL the egress policy lets a Key Vault token
    /// go to, in the key's own cloud, and nothing else reaches the policy's approval.
    #[test]
    fn every_accepted_key_is_a_url_the_egress_policy_accepts(uri in any_key_uri()) {
        if let Ok(key) = KeyRef::from_key_uri(&uri, None) {
            let url = key.key_url().unwrap();
            let vault = key.vault().unwrap();
            prop_assert_eq!(url.scheme(), "https");
            prop_assert_eq!(url.port_or_known_default(), Some(443));
            prop_assert!(url.username().is_empty() && url.password().is_none());
            prop_assert_eq!(url.host_str(), Some(vault.as_str()));
            let arm = Url::parse("https://management.azure.com").unwrap();
            let policy = EgressPolicy::new(&arm, vault.cloud(), None);
            prop_assert!(policy.check(Credential::KeyVaultToken, &url).is_ok(), "{uri} -> {url}");
            // The stored form reads back to the same key.
            let back: KeyRef = serde_json::from_value(serde_json::to_value(&key).unwrap()).unwrap();
            prop_assert_eq!(back, key);
        }
    }

    /// Conversely: whatever the policy refuses as a Key Vault destination is never a key.
    #[test]
    fn nothing_the_policy_refuses_parses_as_a_key(uri in any_key_uri()) {
        if let Ok(url) = Url::parse(&uri) {
            let policies: Vec<EgressPolicy> = Cloud::ALL
                .iter()
                .map(|c| EgressPolicy::new(&Url::parse("https://management.azure.com").unwrap(), *c, None))
                .collect();
            let some_cloud_allows = policies.iter().any(|p| p.check(Credential::KeyVaultToken, &url).is_ok());
            if !some_cloud_allows {
                prop_assert!(KeyRef::from_key_uri(&uri, None).is_err(), "{uri}");
            }
        }
    }
}
