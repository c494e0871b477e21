//! Who may call the real `keyguard webhook`. Started the way the README showed it, with only a
//! webhook key, it used to serve findings, the audit trail and scans to anyone on loopback (and,
//! behind a TLS-terminating proxy, everyone looks like loopback).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyguard_e2e::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_webhook_with_only_a_webhook_key_refuses_anonymous_api_calls() -> anyhow::Result<()> {
    let env = Env::start(Options {
        webhook: true,
        no_delivery: true,
        ..Options::default()
    })
    .await?;
    let tokens_before = env.token_requests().await?;
    let base = &env.handler;
    let calls = [
        env.http.get(format!("{base}/api/findings")),
        env.http.get(format!("{base}/api/audit")),
        env.http
            .post(format!("{base}/api/scan"))
            .json(&json!({"scope": "/subscriptions/00000000-0000-0000-0000-000000000001", "mode": "remediate"})),
        // Not even with the webhook key: it opens /api/events only.
        env.http
            .get(format!("{base}/api/findings"))
            .header("x-functions-key", WEBHOOK_KEY),
    ];
    for call in calls {
        let response = call.send().await?;
        let url = response.url().to_string();
        assert_eq!(response.status().as_u16(), 401, "{url}");
        assert!(response.headers().contains_key("www-authenticate"), "{url}");
        let body: Value = response.json().await?;
        assert_eq!(body["error"]["code"], "Unauthorized", "{url}: {body}");
    }
    assert_eq!(
        env.token_requests().await?,
        tokens_before,
        "a refused scan must not get as far as fetching a token"
    );
    // /api/events takes the key, and refuses a delivery without it.
    let validation = fixture("eventgrid/subscriptionvalidationevent.delivery.docs.json");
    let without_key = env
        .http
        .post(format!("{base}/api/events"))
        .json(&validation)
        .send()
        .await?;
    assert_eq!(without_key.status().as_u16(), 401);
    let with_key = env.http.post(env.events_url()).json(&validation).send().await?;
    assert_eq!(with_key.status().as_u16(), 200);
    // The start-up line says so.
    let log = env.log_tail(200);
    assert!(
        log.contains("every request is refused") && !log.contains("loopback only"),
        "{log}"
    );
    Ok(())
}

/// Runs `keyguard webhook` with `env` and expects it to refuse to start: returns its stderr.
fn refused_start(env: &[(&str, &str)], extra_args: &[&str]) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("keyguard-e2e-access-{}", std::process::id()));
    let mut child = Command::new(keyguard_bin())
        .args(["--log-format", "text", "webhook", "--port", "0"])
        .args(extra_args)
        .env("KEYGUARD_STATE_PATH", dir.join("state.redb"))
        .env("KEYGUARD_AUTH", "azure-cli")
        .env_remove("KEYGUARD_WEBHOOK_KEY")
        .env_remove("KEYGUARD_API_KEY")
        .env_remove("KEYGUARD_API_TENANT_ID")
        .env_remove("FUNCTIONS_CUSTOMHANDLER_PORT")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            child.kill()?;
            anyhow::bail!("`keyguard webhook` with {env:?} {extra_args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)?;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(2), "{stderr}");
    Ok(stderr)
}

#[test]
fn a_webhook_without_credentials_or_with_a_short_key_does_not_start() -> anyhow::Result<()> {
    let stderr = refused_start(&[], &[])?;
    assert!(
        stderr.contains("no credential configured") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
    let stderr = refused_start(&[("KEYGUARD_WEBHOOK_KEY", "too-short-key")], &[])?;
    assert!(
        stderr.contains("KEYGUARD_WEBHOOK_KEY") && stderr.contains("shorter than 16"),
        "{stderr}"
    );
    assert!(!stderr.contains("too-short-key"), "the key is echoed: {stderr}");
    let stderr = refused_start(&[], &["--insecure-no-auth", "--bind", "0.0.0.0"])?;
    assert!(stderr.contains("loopback"), "{stderr}");
    Ok(())
}
