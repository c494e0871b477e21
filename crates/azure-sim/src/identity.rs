//! Managed identity, App Service flavour (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), plus the
//! unsigned JWTs the simulator hands out and accepts.
//!
//! Tokens are JWT-shaped but unsigned (`alg: none`): clients must treat tokens as opaque, and
//! the ARM side only needs the claims to attribute writes, exactly what real ARM puts into
//! `ResourceWriteSuccess` events.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::faults::PrincipalOid;
use crate::util::now_unix;
use crate::{Principal, Sim};

/// The audience ARM accepts; also the default for tokens minted through the control API.
pub const ARM_AUDIENCE: &str = "https://management.azure.com/";

/// The only api-version of the App Service protocol that `azure_identity` speaks.
pub const MSI_API_VERSION: &str = "2019-08-01";

/// What a token is minted for.
#[derive(Clone, Debug)]
pub struct TokenRequest<'a> {
    pub principal: &'a Principal,
    pub tenant_id: &'a str,
    pub audience: &'a str,
    /// Seconds from now; negative values mint already-expired tokens (for tests).
    pub lifetime_secs: i64,
    /// `app` for managed identities and service principals, `user` for humans.
    pub idtyp: &'a str,
}

/// Mints an unsigned JWT (`header.payload.sim`).
pub fn mint_token(req: &TokenRequest<'_>) -> (String, i64) {
    let now = now_unix();
    let exp = now + req.lifetime_secs;
    let mut payload = json!({
        "aud": req.audience,
        "iss": format!("https://sts.windows.net/{}/", req.tenant_id),
        "iat": now,
        "nbf": now,
        "exp": exp,
        "oid": req.principal.oid,
        "appid": req.principal.appid,
        "tid": req.tenant_id,
        "sub": req.principal.oid,
        "idtyp": req.idtyp,
    });
    if let Some(obj) = payload.as_object_mut() {
        if !req.principal.name.is_empty() {
            obj.insert("name".into(), Value::String(req.principal.name.clone()));
        }
        if let Some(upn) = &req.principal.upn {
            obj.insert("upn".into(), Value::String(upn.clone()));
        }
        // A user's token is delegated: it carries the scope the client was granted.
        if req.idtyp == "user" {
            obj.insert("scp".into(), Value::String("user_impersonation".into()));
        }
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload.to_string().as_bytes());
    (format!("{header}.{body}.sim"), exp)
}

/// Why a bearer token was refused; maps onto ARM's two 401 codes.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token has expired")]
    Expired,
}

/// Decodes the payload of a JWT without verifying any signature and checks `exp`.
pub fn decode_token(token: &str) -> Result<Map<String, Value>, TokenError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed("payload is not a JSON object"))?;
    let exp = match claims.get("exp") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or(TokenError::Malformed("no exp claim"))?;
    if exp <= now_unix() {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// App Service's error body shape (`statusCode`, `message`, `correlationId`).
fn msi_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "statusCode": status.as_u16(),
            "message": message,
            "correlationId": uuid::Uuid::new_v4().to_string(),
        })),
    )
        .into_response()
}

/// `GET /msi/token`.
pub(crate) async fn msi_token(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    sim.token_requests.fetch_add(1, Ordering::Relaxed);
    let secret = headers.get("x-identity-header").and_then(|v| v.to_str().ok());
    if secret != Some(sim.settings.identity_header.as_str()) {
        return msi_error(
            StatusCode::UNAUTHORIZED,
            "The X-IDENTITY-HEADER header is missing or does not match.",
        );
    }
    match q.get("api-version").map(String::as_str) {
        Some(MSI_API_VERSION) => {}
        Some(_) => {
            return msi_error(
                StatusCode::BAD_REQUEST,
                "The api-version is not supported; use 2019-08-01.",
            );
        }
        None => return msi_error(StatusCode::BAD_REQUEST, "The api-version is required."),
    }
    let Some(resource) = q.get("resource").filter(|r| !r.is_empty()) else {
        return msi_error(StatusCode::BAD_REQUEST, "The resource parameter is required.");
    };
    let found = if let Some(cid) = q.get("client_id") {
        sim.settings.identity_by_client_id(cid)
    } else if let Some(oid) = q.get("object_id").or_else(|| q.get("principal_id")) {
        sim.settings.identity_by_oid(oid)
    } else if q.contains_key("mi_res_id") || q.contains_key("msi_res_id") {
        None
    } else {
        Some((
            sim.settings.system_identity.appid.clone(),
            sim.settings.system_identity.clone(),
        ))
    };
    let Some((client_id, principal)) = found else {
        return msi_error(
            StatusCode::BAD_REQUEST,
            "No Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
        );
    };
    let lifetime = i64::try_from(sim.settings.token_lifetime_secs).unwrap_or(i64::MAX / 4);
    let (token, exp) = mint_token(&TokenRequest {
        principal: &principal,
        tenant_id: &sim.settings.tenant_id,
        audience: resource,
        lifetime_secs: lifetime,
        idtyp: "app",
    });
    sim.record_issued_token(&token);
    let mut resp = Json(json!({
        "access_token": token,
        "expires_on": exp.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id,
    }))
    .into_response();
    resp.extensions_mut().insert(PrincipalOid(principal.oid));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Principal {
            oid: "o".into(),
            appid: "a".into(),
            name: "n".into(),
            upn: Some("u@x".into()),
        };
        let req = TokenRequest {
            principal: &p,
            tenant_id: "t",
            audience: ARM_AUDIENCE,
            lifetime_secs: 60,
            idtyp: "user",
        };
        let (tok, _) = mint_token(&req);
        let claims = decode_token(&tok).unwrap();
        assert_eq!(claims["oid"], "o");
        assert_eq!(claims["upn"], "u@x");
        let (expired, _) = mint_token(&TokenRequest {
            lifetime_secs: -5,
            ..req
        });
        assert!(matches!(decode_token(&expired), Err(TokenError::Expired)));
        assert!(matches!(decode_token("abc"), Err(TokenError::Malformed(_))));
    }
}
