use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Extension;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use jsonwebtoken::Algorithm;

use super::entra::{JwksError, parse_jwks};
use super::test_tokens::*;
use super::*;
use crate::test_support::lookup;

/// A request to an API route, with nothing in its query.
fn api() -> Uri {
    Uri::from_static("/api/whoami")
}

const API_KEY: &str = "k3y-for-tests-only-0123456789abcdef";

fn entra_auth(server: &JwksServer) -> ApiAuthenticator {
    ApiAuthenticator::new(
        ApiAuthMode::Entra(entra_config(server)),
        KeyLocation::ApiHeaders,
        reqwest::Client::new(),
    )
}

fn fetch_count(auth: &ApiAuthenticator) -> u64 {
    match &auth.scheme {
        Scheme::Credentials { entra: Some(v), .. } => v.fetches.load(Ordering::SeqCst),
        _ => panic!("not an Entra authenticator"),
    }
}

#[tokio::test]
async fn a_valid_v2_token_yields_its_object_id_and_client_app() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let auth = entra_auth(&server);
    let principal = auth
        .authorize(&bearer(&SIGNER.token(&valid_claims())), &api())
        .await
        .unwrap();
    assert_eq!(
        principal,
        Principal {
            kind: PrincipalKind::Entra,
            subject: Some(OID.into()),
            name: None,
            client_app: Some(CALLER_APP.into()),
        }
    );
    // The key set is cached: a second token does not fetch again.
    let user_claims = with(valid_claims(), "preferred_username", json!("alice@contoso.example"));
    let principal = auth
        .authorize(&bearer(&SIGNER.token(&user_claims)), &api())
        .await
        .unwrap();
    assert_eq!(principal.name.as_deref(), Some("alice@contoso.example"));
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn a_v1_token_with_the_app_id_uri_audience_is_accepted() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let auth = entra_auth(&server);
    let claims = json!({
        "aud": "api://keyguard",
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": now() - 60, "nbf": now() - 60, "exp": now() + 3600,
        "appid": CALLER_APP, "appidacr": "1", "oid": OID, "tid": TENANT, "ver": "1.0",
    });
    let principal = auth.authorize(&bearer(&SIGNER.token(&claims)), &api()).await.unwrap();
    assert_eq!(principal.client_app.as_deref(), Some(CALLER_APP));
    assert_eq!(principal.subject.as_deref(), Some(OID));
}

/// Every way a bearer token can be wrong ends in 401, each for the reason logged.
#[tokio::test]
async fn bad_tokens_are_rejected_with_401() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let auth = entra_auth(&server);
    let valid = valid_claims();
    let header_of = |alg: &str| json!({"alg": alg, "typ": "JWT", "kid": SIGNER.kid});
    let unsigned = format!("{}.{}.", b64_json(&header_of("none")), b64_json(&valid));
    let hs256_with = |secret: &[u8]| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header {
                kid: Some(SIGNER.kid.into()),
                ..jsonwebtoken::Header::new(Algorithm::HS256)
            },
            &valid,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let public_der = SIGNER.public_key_x509_der();
    let public_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(&public_der)
    );
    // Another key's signature under the trusted key's kid.
    let forged = OTHER_SIGNER.sign(&header_of("RS256"), &valid);
    let good = SIGNER.token(&valid);
    let (head_and_claims, _) = good.rsplit_once('.').unwrap();
    let tampered_claims = format!(
        "{}.{}.{}",
        good.split('.').next().unwrap(),
        b64_json(&with(valid.clone(), "oid", json!("someone-else"))),
        good.rsplit('.').next().unwrap()
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong audience",
            SIGNER.token(&with(valid.clone(), "aud", json!("api://other"))),
            "wrong audience",
        ),
        (
            "wrong issuer",
            SIGNER.token(&with(
                valid.clone(),
                "iss",
                json!(format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")),
            )),
            "wrong issuer",
        ),
        (
            "expired beyond the skew",
            SIGNER.token(&with(valid.clone(), "exp", json!(now() - 301 - 5))),
            "token expired",
        ),
        (
            "not yet valid beyond the skew",
            SIGNER.token(&with(valid.clone(), "nbf", json!(now() + 301 + 5))),
            "token not yet valid (nbf)",
        ),
        (
            "other tenant",
            SIGNER.token(&with(valid.clone(), "tid", json!(OTHER_TENANT))),
            "token is from another tenant",
        ),
        (
            "no exp",
            SIGNER.token(&without(valid.clone(), "exp")),
            "a required claim (exp, iss, aud) is missing",
        ),
        ("signed by another key", forged, "bad signature"),
        ("claims changed after signing", tampered_claims, "bad signature"),
        ("signature stripped", format!("{head_and_claims}."), "bad signature"),
        ("alg none", unsigned, "malformed token header"),
        (
            "HS256 keyed with the public key (DER)",
            hs256_with(&public_der),
            "token algorithm is not RS256",
        ),
        (
            "HS256 keyed with the public key (PEM)",
            hs256_with(public_pem.as_bytes()),
            "token algorithm is not RS256",
        ),
        (
            "no kid",
            SIGNER.sign(&json!({"alg": "RS256", "typ": "JWT"}), &valid),
            "token header has no kid",
        ),
        ("garbage", "not-a-jwt".into(), "malformed token header"),
        ("three garbage parts", "a.b.c".into(), "malformed token header"),
    ];
    for (what, token, reason) in cases {
        let err = auth.authorize(&bearer(&token), &api()).await.unwrap_err();
        assert_eq!(err, AuthError::Rejected(reason), "{what}");
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{what}");
    }
    // None of those needed another look at the key set.
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn the_clock_skew_tolerates_small_drift_only() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let auth = entra_auth(&server);
    let just_expired = with(valid_claims(), "exp", json!(now() - 60));
    let almost_valid = with(valid_claims(), "nbf", json!(now() + 60));
    assert!(
        auth.authorize(&bearer(&SIGNER.token(&just_expired)), &api())
            .await
            .is_ok()
    );
    assert!(
        auth.authorize(&bearer(&SIGNER.token(&almost_valid)), &api())
            .await
            .is_ok()
    );
    let mut strict = entra_config(&server);
    strict.clock_skew = Duration::ZERO;
    let strict = ApiAuthenticator::new(
        ApiAuthMode::Entra(strict),
        KeyLocation::ApiHeaders,
        reqwest::Client::new(),
    );
    assert_eq!(
        strict.authorize(&bearer(&SIGNER.token(&just_expired)), &api()).await,
        Err(AuthError::Rejected("token expired"))
    );
}

#[tokio::test]
async fn missing_or_non_bearer_credentials_are_rejected() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let auth = entra_auth(&server);
    assert_eq!(auth.authorize(&HeaderMap::new(), &api()).await, Err(AuthError::Missing));
    let basic = header_map("authorization", "Basic dXNlcjpwYXNz");
    assert_eq!(
        auth.authorize(&basic, &api()).await,
        Err(AuthError::Rejected("Authorization is not a bearer token"))
    );
    let empty = header_map("authorization", "Bearer   ");
    assert!(matches!(
        auth.authorize(&empty, &api()).await,
        Err(AuthError::Rejected(_))
    ));
    // An API key means nothing to an Entra-only authenticator.
    let key = header_map(API_KEY_HEADER, API_KEY);
    assert_eq!(auth.authorize(&key, &api()).await, Err(AuthError::Missing));
    // The scheme name is case-insensitive (RFC 9110).
    let lower = header_map("authorization", &format!("bearer {}", SIGNER.token(&valid_claims())));
    assert!(auth.authorize(&lower, &api()).await.is_ok());
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let auth = entra_auth(&server).with_jwks_policy(JwksPolicy {
        unknown_kid_refetch_interval: Duration::from_millis(400),
        ..JwksPolicy::default()
    });
    assert!(
        auth.authorize(&bearer(&SIGNER.token(&valid_claims())), &api())
            .await
            .is_ok()
    );
    assert_eq!(server.fetches(), 1);
    // A flood of invented kids right after the fetch: no request reaches the JWKS endpoint.
    for i in 0..50 {
        let kid = format!("bogus-{i}");
        let token = SIGNER.sign(&json!({"alg": "RS256", "kid": kid}), &valid_claims());
        assert_eq!(
            auth.authorize(&bearer(&token), &api()).await,
            Err(AuthError::Rejected("token signed with an unknown key id"))
        );
    }
    assert_eq!(server.fetches(), 1);
    assert_eq!(fetch_count(&auth), 1);
    // Once the interval has passed, the flood costs exactly one more fetch.
    tokio::time::sleep(Duration::from_millis(450)).await;
    for i in 0..50 {
        let token = SIGNER.sign(&json!({"alg": "RS256", "kid": format!("bogus-{i}")}), &valid_claims());
        assert!(auth.authorize(&bearer(&token), &api()).await.is_err());
    }
    assert_eq!(server.fetches(), 2);
    // Known keys keep working throughout.
    assert!(
        auth.authorize(&bearer(&SIGNER.token(&valid_claims())), &api())
            .await
            .is_ok()
    );
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_by_a_refetch() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let auth = entra_auth(&server).with_jwks_policy(JwksPolicy {
        unknown_kid_refetch_interval: Duration::from_millis(200),
        ..JwksPolicy::default()
    });
    assert!(
        auth.authorize(&bearer(&SIGNER.token(&valid_claims())), &api())
            .await
            .is_ok()
    );
    server.publish(&[&SIGNER, &OTHER_SIGNER]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let principal = auth
        .authorize(&bearer(&OTHER_SIGNER.token(&valid_claims())), &api())
        .await;
    assert_eq!(principal.map(|p| p.subject), Ok(Some(OID.into())));
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn concurrent_first_requests_share_one_fetch() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let auth = Arc::new(entra_auth(&server));
    let token = SIGNER.token(&valid_claims());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (auth, headers) = (auth.clone(), bearer(&token));
            tokio::spawn(async move { auth.authorize(&headers, &api()).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn an_unreachable_jwks_means_503_retried_after_a_pause_and_stale_keys_still_serve() {
    let server = JwksServer::start(&[&SIGNER]).await;
    server.failing.store(true, Ordering::SeqCst);
    let auth = entra_auth(&server).with_jwks_policy(JwksPolicy {
        failure_retry_interval: Duration::from_millis(300),
        cache_ttl: Duration::from_millis(600),
        ..JwksPolicy::default()
    });
    let token = SIGNER.token(&valid_claims());
    let err = auth.authorize(&bearer(&token), &api()).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Within the retry interval nobody hammers the failing endpoint.
    for _ in 0..10 {
        assert!(matches!(
            auth.authorize(&bearer(&token), &api()).await,
            Err(AuthError::Unavailable(_))
        ));
    }
    assert_eq!(server.fetches(), 1);
    server.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(auth.authorize(&bearer(&token), &api()).await.is_ok());
    assert_eq!(server.fetches(), 2);
    // The cache goes stale while the endpoint is down again: the known key keeps working.
    server.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert!(auth.authorize(&bearer(&token), &api()).await.is_ok());
    assert_eq!(server.fetches(), 3);
}

#[tokio::test]
async fn a_jwks_without_usable_keys_is_a_failed_fetch() {
    let server = JwksServer::start(&[]).await;
    *server.document.lock().unwrap() = json!({"keys": [
        {"kty": "EC", "use": "sig", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "use": "enc", "kid": SIGNER.kid, "n": SIGNER.jwk()["n"], "e": "AQAB"},
        {"kty": "RSA", "use": "sig"},
    ]});
    let auth = entra_auth(&server);
    let err = auth
        .authorize(&bearer(&SIGNER.token(&valid_claims())), &api())
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
}

#[test]
fn jwks_parsing_keeps_rsa_signing_keys_and_skips_the_rest() {
    let body = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "RSA", "use": "enc", "kid": "encryption", "n": SIGNER.jwk()["n"], "e": "AQAB"},
        {"kty": "RSA", "kid": "future", "n": 42},
        SIGNER.jwk(),
        OTHER_SIGNER.jwk(),
    ]});
    let keys = parse_jwks(&serde_json::to_vec(&body).unwrap()).unwrap();
    let mut kids: Vec<_> = keys.keys().cloned().collect();
    kids.sort();
    assert_eq!(kids, vec!["test-kid-1", "test-kid-2"]);
    assert!(matches!(parse_jwks(b"<html>"), Err(JwksError::NotJwks(_))));
    assert!(matches!(parse_jwks(br#"{"keys": []}"#), Err(JwksError::NoSigningKey)));
}

#[tokio::test]
async fn a_token_without_a_required_role_gets_403() {
    let server = JwksServer::start(&[&SIGNER]).await;
    let mut config = entra_config(&server);
    config.required_roles = vec!["Keyguard.Admin".into(), ROLE.into()];
    let auth = ApiAuthenticator::new(
        ApiAuthMode::Entra(config),
        KeyLocation::ApiHeaders,
        reqwest::Client::new(),
    );
    assert!(
        auth.authorize(&bearer(&SIGNER.token(&valid_claims())), &api())
            .await
            .is_ok()
    );
    let other_role = with(valid_claims(), "roles", json!(["Keyguard.Reader"]));
    let err = auth
        .authorize(&bearer(&SIGNER.token(&other_role)), &api())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::Forbidden {
            subject: Some(OID.into())
        }
    );
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    let no_roles = without(valid_claims(), "roles");
    let err = auth
        .authorize(&bearer(&SIGNER.token(&no_roles)), &api())
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    // The role check comes after validation: an expired token without the role is a 401.
    let expired = with(no_roles, "exp", json!(now() - 3600));
    let err = auth
        .authorize(&bearer(&SIGNER.token(&expired)), &api())
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
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
