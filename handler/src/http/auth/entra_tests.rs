//! Entra ID bearer tokens: what is accepted, every way a token is refused, the signing-key cache
//! and its refetch limits, and app roles. Keys, the middleware and the settings are in [`super::tests`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use jsonwebtoken::Algorithm;

use super::entra::{JwksError, parse_jwks};
use super::test_tokens::*;
use super::tests::{API_KEY, api, entra_auth};
use super::*;

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
