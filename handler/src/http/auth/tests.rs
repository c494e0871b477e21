//! API keys, the middleware through a router, and the settings. Entra ID tokens and the
//! signing-key cache are in [`super::entra_tests`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Extension;
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::test_tokens::*;
use super::*;
use crate::test_support::lookup;

/// A request to an API route, with nothing in its query.
pub(super) fn api() -> Uri {
    Uri::from_static("/api/whoami")
}

pub(super) const API_KEY: &str = "k3y-for-tests-only-0123456789abcdef";

pub(super) fn entra_auth(server: &JwksServer) -> ApiAuthenticator {
    ApiAuthenticator::new(
        ApiAuthMode::Entra(entra_config(server)),
        KeyLocation::ApiHeaders,
        reqwest::Client::new(),
    )
}

fn api_key_auth() -> ApiAuthenticator {
    ApiAuthenticator::new(
        ApiAuthMode::Key(SecretString::from(API_KEY)),
        KeyLocation::ApiHeaders,
        reqwest::Client::new(),
    )
}

#[tokio::test]
async fn the_api_key_is_accepted_in_either_header_and_nothing_else() {
    let auth = api_key_auth();
    for name in [API_KEY_HEADER, FUNCTIONS_KEY_HEADER] {
        let principal = auth.authorize(&header_map(name, API_KEY), &api()).await.unwrap();
        assert_eq!(principal.kind, PrincipalKind::ApiKey, "{name}");
    }
    for wrong in [
        "k3y-for-tests-only-0123456789abcdeF",
        "k3y-for-tests-only-0123456789abcde",
        "",
        "x",
    ] {
        assert_eq!(
            auth.authorize(&header_map(API_KEY_HEADER, wrong), &api()).await,
            Err(AuthError::Rejected("wrong API key")),
            "{wrong:?}"
        );
    }
    assert_eq!(auth.authorize(&HeaderMap::new(), &api()).await, Err(AuthError::Missing));
    // A bearer token means nothing to a key-only authenticator.
    assert_eq!(
        auth.authorize(&bearer(&SIGNER.token(&valid_claims())), &api()).await,
        Err(AuthError::Missing)
    );
    // x-api-key decides when both headers are sent.
    let mut both = header_map(API_KEY_HEADER, "wrong-key-wrong-key");
    both.insert(FUNCTIONS_KEY_HEADER, API_KEY.parse().unwrap());
    assert!(auth.authorize(&both, &api()).await.is_err());
}

#[tokio::test]
async fn either_mode_takes_a_key_or_a_token() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let auth = ApiAuthenticator::new(
        ApiAuthMode::Either {
            key: SecretString::from(API_KEY),
            entra: entra_config(&server),
        },
        KeyLocation::ApiHeaders,
        reqwest::Client::new(),
    );
    let by_key = auth
        .authorize(&header_map(API_KEY_HEADER, API_KEY), &api())
        .await
        .unwrap();
    assert_eq!(by_key.kind, PrincipalKind::ApiKey);
    let by_token = auth
        .authorize(&bearer(&SIGNER.token(&valid_claims())), &api())
        .await
        .unwrap();
    assert_eq!(by_token.kind, PrincipalKind::Entra);
    let mut wrong_key_good_token = bearer(&SIGNER.token(&valid_claims()));
    wrong_key_good_token.insert(API_KEY_HEADER, "not-the-key-not-the-key".parse().unwrap());
    assert_eq!(
        auth.authorize(&wrong_key_good_token, &api()).await,
        Err(AuthError::Rejected("wrong API key"))
    );
    assert_eq!(auth.authorize(&HeaderMap::new(), &api()).await, Err(AuthError::Missing));
}

#[tokio::test]
async fn trusted_modes_let_every_request_through() {
    for (mode, kind) in [
        (ApiAuthMode::FunctionsHost, PrincipalKind::FunctionsHost),
        (ApiAuthMode::InsecureNoAuth, PrincipalKind::InsecureNoAuth),
    ] {
        let auth = ApiAuthenticator::new(mode, KeyLocation::ApiHeaders, reqwest::Client::new());
        assert_eq!(auth.authorize(&HeaderMap::new(), &api()).await.unwrap().kind, kind);
    }
}

/// Nothing configured is nothing accepted: no key, no token, no header of any kind opens it.
#[tokio::test]
async fn a_closed_authenticator_refuses_everything() {
    let server = JwksServer::start(&[&SIGNER]).await;
    for location in [KeyLocation::ApiHeaders, KeyLocation::WebhookQuery] {
        let auth = ApiAuthenticator::new(ApiAuthMode::Closed, location, reqwest::Client::new());
        assert!(auth.is_closed());
        let mut everything = bearer(&SIGNER.token(&valid_claims()));
        everything.insert(API_KEY_HEADER, API_KEY.parse().unwrap());
        everything.insert(FUNCTIONS_KEY_HEADER, API_KEY.parse().unwrap());
        let with_code = Uri::try_from(format!("/api/events?code={API_KEY}")).unwrap();
        for (headers, uri) in [(HeaderMap::new(), api()), (everything, with_code)] {
            let err = auth.authorize(&headers, &uri).await.unwrap_err();
            assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{location:?}");
        }
    }
    assert_eq!(
        server.fetches(),
        0,
        "a closed authenticator has no signing keys to fetch"
    );
}

/// Event Grid's webhook key rides in `?code=` (or `x-functions-key`); never in `x-api-key`.
#[tokio::test]
async fn the_webhook_key_is_read_from_the_query_or_the_functions_header() {
    let auth = ApiAuthenticator::new(
        ApiAuthMode::Key(SecretString::from(API_KEY)),
        KeyLocation::WebhookQuery,
        reqwest::Client::new(),
    );
    let with_code = |code: &str| Uri::try_from(format!("/api/events?x=1&code={code}")).unwrap();
    let principal = auth.authorize(&HeaderMap::new(), &with_code(API_KEY)).await.unwrap();
    assert_eq!(principal.kind, PrincipalKind::WebhookKey);
    // Percent-encoded as a URL would carry it.
    let encoded = Uri::try_from(format!("/api/events?code={}", API_KEY.replace('-', "%2D"))).unwrap();
    assert!(auth.authorize(&HeaderMap::new(), &encoded).await.is_ok());
    let header = header_map(FUNCTIONS_KEY_HEADER, API_KEY);
    assert!(auth.authorize(&header, &api()).await.is_ok());
    for wrong in ["k3y-for-tests-only-0123456789abcdeF", "", "k3y"] {
        assert_eq!(
            auth.authorize(&HeaderMap::new(), &with_code(wrong)).await,
            Err(AuthError::Rejected("wrong webhook key")),
            "{wrong:?}"
        );
    }
    // The query decides over the header, and the first code over a later one.
    assert!(
        auth.authorize(&header, &with_code("not-the-webhook-key"))
            .await
            .is_err()
    );
    let twice = Uri::try_from(format!("/api/events?code=wrong-wrong-wrong&code={API_KEY}")).unwrap();
    assert!(auth.authorize(&HeaderMap::new(), &twice).await.is_err());
    assert_eq!(
        auth.authorize(&header_map(API_KEY_HEADER, API_KEY), &api()).await,
        Err(AuthError::Missing)
    );
}

#[test]
fn debug_output_never_shows_the_api_key() {
    let mode = ApiAuthMode::Either {
        key: SecretString::from(API_KEY),
        entra: EntraConfig::new(TENANT, vec![CLIENT_ID.into()]).unwrap(),
    };
    let mode_debug = format!("{mode:?}");
    let auth_debug = format!(
        "{:?}",
        ApiAuthenticator::new(mode, KeyLocation::ApiHeaders, reqwest::Client::new())
    );
    for text in [&mode_debug, &auth_debug] {
        assert!(!text.contains(API_KEY), "{text}");
        assert!(text.contains(TENANT), "the rest stays visible: {text}");
    }
    assert!(auth_debug.contains("<redacted>"), "{auth_debug}");
}

// --- the middleware, through a router ---

async fn whoami(Extension(principal): Extension<Principal>) -> axum::Json<Principal> {
    axum::Json(principal)
}

fn router(auth: ApiAuthenticator) -> Router {
    let auth = Arc::new(auth);
    Router::new()
        .route("/api/whoami", get(whoami))
        .layer(axum::middleware::from_fn_with_state(auth, require_auth))
}

async fn call(app: &Router, headers: HeaderMap) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::builder().uri("/api/whoami").body(Body::empty()).unwrap();
    *request.headers_mut() = headers;
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_middleware_answers_every_401_alike_and_leaks_nothing() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let app = router(entra_auth(&server));
    let expired = SIGNER.token(&with(valid_claims(), "exp", json!(now() - 3600)));
    let forged = OTHER_SIGNER.sign(
        &json!({"alg": "RS256", "typ": "JWT", "kid": SIGNER.kid}),
        &valid_claims(),
    );
    let wrong_audience = SIGNER.token(&with(valid_claims(), "aud", json!("api://other")));
    let mut bodies = Vec::new();
    for (what, headers, token) in [
        ("no header", HeaderMap::new(), String::new()),
        ("expired", bearer(&expired), expired.clone()),
        ("bad signature", bearer(&forged), forged.clone()),
        ("wrong audience", bearer(&wrong_audience), wrong_audience.clone()),
        ("garbage", bearer("garbage"), "garbage".into()),
    ] {
        let (status, headers, body) = call(&app, headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"error": {"code": "Unauthorized", "message": "authentication required"}}),
            "{what}"
        );
        assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer", "{what}");
        let all_headers = format!("{headers:?}").to_lowercase();
        for detail in ["expired", "signature", "audience", "issuer", "kid", "malformed"] {
            assert!(!body.to_lowercase().contains(detail), "{what}: {body}");
            assert!(!all_headers.contains(detail), "{what}: {all_headers}");
        }
        if !token.is_empty() {
            let signature = token.rsplit('.').next().unwrap();
            assert!(!body.contains(signature) && !all_headers.contains(&signature.to_lowercase()));
        }
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn the_middleware_passes_the_principal_on_and_maps_403_and_503() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let mut config = entra_config(&server);
    config.required_roles = vec![ROLE.into()];
    let app = router(ApiAuthenticator::new(
        ApiAuthMode::Entra(config),
        KeyLocation::ApiHeaders,
        reqwest::Client::new(),
    ));

    let (status, _, body) = call(&app, bearer(&SIGNER.token(&valid_claims()))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"kind": "entra", "subject": OID, "name": null, "clientApp": CALLER_APP})
    );

    let no_role = SIGNER.token(&with(valid_claims(), "roles", json!(["Other"])));
    let (status, headers, body) = call(&app, bearer(&no_role)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        json!("Forbidden")
    );
    assert!(!body.contains(ROLE), "the required role is not disclosed: {body}");
    assert!(headers.get(header::WWW_AUTHENTICATE).is_none());

    let down = JwksServer::start(&[&SIGNER]).await;
    down.failing.store(true, Ordering::SeqCst);
    let app = router(entra_auth(&down));
    let (status, headers, body) = call(&app, bearer(&SIGNER.token(&valid_claims()))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), RETRY_AFTER_SECS);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        json!("AuthenticationUnavailable")
    );
    assert!(!body.contains(down.url.as_str()));
}

#[tokio::test]
async fn the_middleware_with_an_api_key() {
    let app = router(api_key_auth());
    let (status, _, body) = call(&app, header_map(API_KEY_HEADER, API_KEY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["kind"], json!("api-key"));
    let (status, headers, body) = call(&app, header_map(API_KEY_HEADER, "wrong-wrong-wrong-wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers.get(header::WWW_AUTHENTICATE).unwrap(),
        "ApiKey header=\"x-api-key\""
    );
    assert!(!body.contains("wrong"), "{body}");
    let (status, _, _) = call(&app, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The reason for a refusal is in the log, for the operator; the token is not.
#[tokio::test]
async fn refusals_are_logged_with_the_reason_and_without_the_token() {
    let logs = crate::test_support::CapturedLogs::start();

    let server = JwksServer::start(&[&SIGNER]).await;
    let app = router(entra_auth(&server));
    let expired = SIGNER.token(&with(valid_claims(), "exp", json!(now() - 3600)));
    let (status, _, _) = call(&app, bearer(&expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let app = router(api_key_auth());
    let wrong_key = "a-wrong-key-that-must-not-be-logged";
    let (status, _, _) = call(&app, header_map(API_KEY_HEADER, wrong_key)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let log = logs.text();
    assert!(log.contains("token expired"), "{log}");
    assert!(log.contains("wrong API key"), "{log}");
    for (i, part) in expired.split('.').enumerate() {
        assert!(!log.contains(part), "token part {i} logged: {log}");
    }
    assert!(!log.contains(wrong_key), "{log}");
}

// --- settings ---

fn mode(pairs: &[(&str, &str)]) -> anyhow::Result<ApiAuthMode> {
    ApiAuthMode::configured(lookup(pairs), &API_SETTINGS)?.ok_or_else(|| anyhow::anyhow!("nothing configured"))
}

fn error_of(pairs: &[(&str, &str)]) -> String {
    format!("{:#}", mode(pairs).unwrap_err())
}

#[test]
fn nothing_configured_is_none_not_a_mode() {
    assert!(ApiAuthMode::configured(lookup(&[]), &API_SETTINGS).unwrap().is_none());
    // Blank values count as unset (an empty app setting in Azure).
    let blank = lookup(&[("KEYGUARD_API_KEY", "  "), ("KEYGUARD_API_TENANT_ID", "")]);
    assert!(ApiAuthMode::configured(blank, &API_SETTINGS).unwrap().is_none());
    // The other group's settings do not count.
    let other = lookup(&[("KEYGUARD_WEBHOOK_KEY", API_KEY)]);
    assert!(ApiAuthMode::configured(other, &API_SETTINGS).unwrap().is_none());
}

#[test]
fn entra_settings_have_public_cloud_defaults_and_overrides() {
    let Ok(ApiAuthMode::Entra(config)) = mode(&[
        ("KEYGUARD_API_TENANT_ID", &TENANT.to_uppercase()),
        (
            "KEYGUARD_API_AUDIENCE",
            " api://keyguard , 6e9c3a1f-2b4d-4c8e-9f0a-1b2c3d4e5f60 ,",
        ),
    ]) else {
        panic!("expected Entra")
    };
    assert_eq!(
        config.tenant_id, TENANT,
        "normalised to the lower-case GUID of issuers and tid"
    );
    assert_eq!(config.audiences, vec!["api://keyguard", CLIENT_ID]);
    assert_eq!(
        config.jwks_url.as_str(),
        format!("https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys")
    );
    assert_eq!(
        config.issuers,
        vec![
            format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
            format!("https://sts.windows.net/{TENANT}/"),
        ]
    );
    assert!(config.required_roles.is_empty());
    assert_eq!(config.clock_skew, Duration::from_secs(300));

    let Ok(ApiAuthMode::Entra(config)) = mode(&[
        ("KEYGUARD_API_TENANT_ID", TENANT),
        ("KEYGUARD_API_AUDIENCE", "api://keyguard"),
        (
            "KEYGUARD_API_JWKS_URL",
            "https://login.microsoftonline.us/t/discovery/v2.0/keys",
        ),
        ("KEYGUARD_API_ISSUERS", "https://login.microsoftonline.us/t/v2.0"),
        ("KEYGUARD_API_ROLES", "Keyguard.Invoke,Keyguard.Admin"),
        ("KEYGUARD_API_CLOCK_SKEW_SECS", "60"),
    ]) else {
        panic!("expected Entra")
    };
    assert_eq!(config.jwks_url.host_str(), Some("login.microsoftonline.us"));
    assert_eq!(config.issuers, vec!["https://login.microsoftonline.us/t/v2.0"]);
    assert_eq!(config.required_roles, vec!["Keyguard.Invoke", "Keyguard.Admin"]);
    assert_eq!(config.clock_skew, Duration::from_secs(60));
}

#[test]
fn bad_settings_are_named_and_never_echo_the_key() {
    let tenant = ("KEYGUARD_API_TENANT_ID", TENANT);
    let audience = ("KEYGUARD_API_AUDIENCE", "api://keyguard");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("KEYGUARD_API_TENANT_ID", "contoso.onmicrosoft.com")],
            "KEYGUARD_API_TENANT_ID",
        ),
        (vec![tenant], "KEYGUARD_API_AUDIENCE"),
        (vec![audience], "KEYGUARD_API_TENANT_ID"),
        (vec![("KEYGUARD_API_ROLES", "x")], "KEYGUARD_API_TENANT_ID"),
        (
            vec![tenant, audience, ("KEYGUARD_API_JWKS_URL", "http://keys.example/jwks")],
            "must be https",
        ),
        (
            vec![tenant, audience, ("KEYGUARD_API_JWKS_URL", "not a url")],
            "KEYGUARD_API_JWKS_URL",
        ),
        (
            vec![tenant, audience, ("KEYGUARD_API_CLOCK_SKEW_SECS", "86400")],
            "KEYGUARD_API_CLOCK_SKEW_SECS",
        ),
        (vec![("KEYGUARD_API_KEY", "short-k3y")], "shorter than 16"),
        (
            vec![("KEYGUARD_API_KEY", API_KEY), ("KEYGUARD_API_KEY_FILE", "/k")],
            "not both",
        ),
        (
            vec![("KEYGUARD_API_KEY_FILE", "/nonexistent/api-key")],
            "/nonexistent/api-key",
        ),
    ];
    for (pairs, expected) in cases {
        let err = error_of(&pairs);
        assert!(err.contains(expected), "{pairs:?}: {err}");
        assert!(!err.contains("short-k3y") && !err.contains(API_KEY), "{err}");
    }
    assert!(
        mode(&[
            tenant,
            audience,
            ("KEYGUARD_API_JWKS_URL", "http://127.0.0.1:8080/keys")
        ])
        .is_ok()
    );
}

#[test]
fn the_key_can_come_from_a_file() {
    let dir = std::env::temp_dir().join(format!("keyguard-api-key-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("api-key");
    std::fs::write(&path, format!("{API_KEY}\n")).unwrap();
    let m = mode(&[("KEYGUARD_API_KEY_FILE", path.to_str().unwrap())]);
    std::fs::remove_dir_all(&dir).unwrap();
    let Ok(ApiAuthMode::Key(key)) = m else {
        panic!("expected Key")
    };
    assert_eq!(key.expose_secret(), API_KEY, "the trailing newline is trimmed");
}
