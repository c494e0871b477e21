//! Rows of the hostile input table ([`super::hostile_tests`]) about resource ids, profiles, the
//! retry contract when keyguard's dependencies fail, forged credentials, and the `/api/*` routes'
//! own parameters. Each row's name says what it proves.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::auth::test_tokens::{OTHER_SIGNER, SIGNER, b64_json, valid_claims};
use super::hostile_env::{FORBIDDEN_ACCOUNT, OTHER_SUBSCRIPTION};
use super::hostile_tests::Fate::{Handled, Refused, Retried};
use super::hostile_tests::Setting::{Entra, NoToken, Scoped, StoreDown};
use super::hostile_tests::Surface::{Check, Drift, Events, Findings};
use super::hostile_tests::{AUDIT, ApiHost, CHECK, EVENT, FINDINGS, Input, Row, SCAN, Surface, WEBHOOK_API};
use super::test_env::{SUBSCRIPTION, WEBHOOK_KEY, account};

/// A resource id no surface may act on: refused before any call to ARM, in the parser's words.
fn hostile_id(name: &'static str, id: String, says: &'static str) -> Row {
    Row::new(name, Input::ResourceId(id))
        .event(&EVENT, 400, says, Refused)
        .api(&CHECK, 400, says)
        .api(&AUDIT, 400, says)
}

/// A forged credential, with no key, to the routes that need one under `keyguard webhook`.
fn forged(name: &'static str, header: &'static str, value: String) -> Row {
    Row::new(name, Input::ResourceId(account("stcmkpayments")))
        .setting(Entra)
        .anonymous()
        .header(header, value)
        .event(&[Events], 401, "authentication required", Refused)
        .api(&[Check(ApiHost::Webhook)], 401, "authentication required")
        .api(&[AUDIT[1]], 401, "authentication required")
}

fn bearer(token: String) -> String {
    format!("Bearer {token}")
}

fn unsigned_token() -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": SIGNER.kid});
    format!("{}.{}.", b64_json(&header), b64_json(&valid_claims()))
}

/// Signed with the webhook key as an HMAC secret: the classic RS256/HS256 confusion.
fn hmac_token() -> String {
    let input = format!(
        "{}.{}",
        b64_json(&json!({"alg": "HS256", "typ": "JWT", "kid": SIGNER.kid})),
        b64_json(&valid_claims())
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, WEBHOOK_KEY.as_bytes());
    let tag = hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn never_says(needle: &'static str) -> impl Fn(Surface, &str) -> Result<(), String> {
    move |_, body| {
        if body.to_lowercase().contains(needle) {
            Err(format!("the answer says {needle:?}"))
        } else {
            Ok(())
        }
    }
}

fn scan_scope(name: &'static str, scope: Value, says: &'static str) -> Row {
    Row::new(name, Input::Json(json!({"scope": scope}))).api(&SCAN, 400, says)
}

fn audit_query(name: &'static str, query: &str, says: &'static str) -> Row {
    Row::new(name, Input::Query(query.to_string())).api(&AUDIT, 400, says)
}

pub(super) fn rows() -> Vec<Row> {
    let st = account("stcmkpayments");
    let elsewhere = format!(
        "/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg-elsewhere/providers/Microsoft.Storage/storageAccounts/stmmklogs"
    );
    let unknown_subscription = "/subscriptions/ffffffff-ffff-4fff-8fff-ffffffffffff/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stnowhere";
    vec![
        // --- hostile resource ids ----------------------------------------------------------------
        hostile_id(
            "a resource id that climbs out with .. is refused",
            format!("{st}/../../../providers/Microsoft.Sql/servers/x"),
            r#"\"..\" segments"#,
        ),
        hostile_id(
            "a resource id with %2F is refused, not decoded",
            format!("{st}%2F..%2F..%2Fx"),
            "percent-encoding",
        ),
        hostile_id(
            "a resource id on another host is refused",
            format!("https://evil.example{st}"),
            "not a URL with a scheme or host",
        ),
        hostile_id(
            "a protocol-relative resource id is refused",
            format!("//evil.example{st}"),
            r#"must start with \"/subscriptions/\""#,
        ),
        hostile_id(
            "a resource id with a query string is refused",
            format!("{st}?api-version=2099-01-01"),
            "query or fragment",
        ),
        hostile_id(
            "a resource id with a fragment is refused",
            format!("{st}#/providers/x"),
            "query or fragment",
        ),
        hostile_id(
            "a 5,000-character resource id is refused by its length",
            format!("{st}{}", "a".repeat(5000 - st.len())),
            "more than the 2048 allowed",
        ),
        hostile_id(
            "a resource id with a control character is refused",
            format!("{st}\u{7}"),
            "whitespace or control characters",
        ),
        hostile_id(
            "a resource id with a newline is refused",
            format!("{st}\nINFO forged log line"),
            "whitespace or control characters",
        ),
        hostile_id(
            "a resource id with NUL is refused",
            format!("{st}\u{0}"),
            "whitespace or control characters",
        ),
        hostile_id(
            "a resource id with a bidi override is refused",
            format!("{st}\u{202e}gpj.exe"),
            "invisible formatting characters",
        ),
        hostile_id(
            "a resource id with a zero-width space is refused",
            format!("{}\u{200b}", account("stcmk")),
            "invisible formatting characters",
        ),
        hostile_id(
            "a resource id with a backslash is refused",
            format!("{st}\\..\\x"),
            "backslash",
        ),
        hostile_id(
            "a subscription id where a resource id belongs is refused",
            format!("/subscriptions/{SUBSCRIPTION}"),
            "not a resource id",
        ),
        hostile_id("an empty resource id is refused", String::new(), "resource id is empty"),
        // --- profiles and subscriptions ----------------------------------------------------------
        Row::new(
            "a subscription outside every profile is judged unsupported, and logged",
            Input::ResourceId(elsewhere),
        )
        .setting(Scoped)
        .event(&EVENT, 200, "no profile covers", Handled)
        .api(&CHECK, 200, "no profile covers"),
        Row::new(
            "an expired exemption exempts nothing: the drift is found",
            Input::ResourceId(account("stmmklogs")),
        )
        .setting(Scoped)
        .event(&EVENT, 200, r#""verdict":"drift""#, Handled)
        .api(&CHECK, 200, r#""verdict":"drift""#),
        Row::new(
            "a subscription ARM does not know is recorded as gone, or answered 404",
            Input::ResourceId(unknown_subscription.to_string()),
        )
        .event(&EVENT, 200, r#""verdict":"gone""#, Handled)
        .api(&CHECK, 404, "ResourceNotFound")
        .api(&AUDIT, 200, r#""value":["#),
        // --- the retry contract ------------------------------------------------------------------
        Row::new(
            "an event while the state store is down is redelivered, without the store's error",
            Input::ResourceId(st.clone()),
        )
        .setting(StoreDown)
        .event(&EVENT, 500, "not available now", Retried)
        .api(&CHECK, 503, "correlation id")
        .api(&AUDIT, 503, "the state store did not answer")
        .check(never_says("connection refused")),
        // A refused credential or an ARM refusal is answered the same each time: taken on the
        // Functions path (the host would fail it and Event Grid redeliver it for a day), refused
        // for the dead-letter container on the webhook; the error's own text stays in the log.
        Row::new(
            "an event while the credential is refused is not redelivered for a day, without the credential's error",
            Input::ResourceId(st.clone()),
        )
        .setting(NoToken)
        .event(&[Drift], 200, "will not help", Handled)
        .event(&[Events], 400, "will not help", Refused)
        .api(&CHECK, 502, "retrying will not help"),
        Row::new(
            "an event for a resource ARM refuses to show keyguard is refused for the dead-letter container",
            Input::ResourceId(account(FORBIDDEN_ACCOUNT)),
        )
        .event(&[Drift], 200, "will not help", Handled)
        .event(&[Events], 400, "will not help", Refused)
        .api(&CHECK, 502, "refused a call keyguard made"),
        // --- forged claims without a credential --------------------------------------------------
        forged(
            "an unsigned token (alg none) with valid claims gets 401",
            "authorization",
            bearer(unsigned_token()),
        ),
        forged(
            "a token signed by another key under a trusted key id gets 401",
            "authorization",
            bearer(OTHER_SIGNER.sign(
                &json!({"alg": "RS256", "typ": "JWT", "kid": SIGNER.kid}),
                &valid_claims(),
            )),
        ),
        forged(
            "an HS256 token keyed with the webhook key gets 401",
            "authorization",
            bearer(hmac_token()),
        ),
        forged(
            "forged App Service authentication headers get 401",
            "x-ms-client-principal-id",
            "4d3c2b1a-1111-4222-8333-444455556666".to_string(),
        )
        .header("x-ms-client-principal-name", "admin@contoso.example")
        .header(
            "x-ms-client-principal",
            base64::engine::general_purpose::STANDARD
                .encode(json!({"auth_typ": "aad", "claims": [{"typ": "roles", "val": "Keyguard.Invoke"}]}).to_string()),
        ),
        Row::new(
            "the webhook key in ?code= does not open the API routes",
            Input::ResourceId(st.clone()),
        )
        .anonymous()
        .query(format!("code={WEBHOOK_KEY}"))
        .api(&[Check(ApiHost::Webhook), AUDIT[1]], 401, "authentication required"),
        Row::new(
            "an event whose claims name keyguard itself, sent without the key, gets 401",
            Input::Event(Box::new(|id| {
                let mut event = super::hostile_tests::write_event(id, &account("stmmklogs"));
                event["data"]["claims"] = json!({"oid": "00000000-0000-0000-0000-00000000cafe", "name": "keyguard"});
                event
            })),
        )
        .anonymous()
        .event(&[Events], 401, "authentication required", Refused),
        Row::new(
            "a bearer token that is not a JWT gets 401 on every credentialed route",
            Input::Query(String::new()),
        )
        .setting(Entra)
        .anonymous()
        .header("authorization", "Bearer not.a.jwt")
        .api(&WEBHOOK_API[2..], 401, "authentication required"),
        // --- /api/check and /api/scan bodies -----------------------------------------------------
        Row::new(
            "check without a resourceId is refused, naming it",
            Input::Json(json!({"dryRun": true})),
        )
        .api(&CHECK, 400, "missing field `resourceId`"),
        Row::new(
            "check with a resourceId that is an array is refused",
            Input::Json(json!({"resourceId": [st]})),
        )
        .api(&CHECK, 400, "invalid type: sequence"),
        Row::new(
            "check with resourceId given twice is refused",
            Input::Bytes(
                Some("application/json"),
                br#"{"resourceId": "/subscriptions/a", "resourceId": "/subscriptions/b"}"#.to_vec(),
            ),
        )
        .api(&CHECK, 400, "duplicate field `resourceId`"),
        Row::new(
            "check with dryRun as a string is refused",
            Input::Json(json!({"resourceId": account("stcmkpayments"), "dryRun": "yes"})),
        )
        .api(&CHECK, 400, "invalid type: string"),
        scan_scope(
            "scan of a scope that climbs out of a group with .. is refused",
            json!(format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/..")),
            "InvalidScope",
        ),
        scan_scope(
            "scan of a scope on another host is refused",
            json!(format!("https://evil.example/subscriptions/{SUBSCRIPTION}")),
            "is not a scope",
        ),
        scan_scope(
            "scan of a 5,000-character scope is refused",
            json!(format!("/subscriptions/{}", "a".repeat(5000))),
            "InvalidScope",
        ),
        scan_scope(
            "scan of a scope with NUL is refused",
            json!(format!("/subscriptions/{SUBSCRIPTION}\u{0}")),
            "InvalidScope",
        ),
        scan_scope(
            "scan of a scope that is a number is refused",
            json!(5),
            "invalid type: integer",
        ),
        // --- /api/audit and /api/findings queries ------------------------------------------------
        audit_query(
            "audit since an age beyond the calendar is refused, not a panic",
            "since=99999999999999d",
            "beyond the calendar",
        ),
        audit_query(
            "audit since a negative age is refused",
            "since=-5d",
            "neither an RFC 3339 time nor an age",
        ),
        audit_query("audit with limit 0 is refused", "limit=0", "limit 0 is not 1..=10000"),
        audit_query(
            "audit with a limit beyond 64 bits is refused, naming it",
            "limit=18446744073709551616",
            "limit",
        ),
        audit_query(
            "audit with limit given twice is refused",
            "limit=1&limit=2",
            "duplicate field `limit`",
        ),
        Row::new(
            "findings as HTML with a script in a filter render it inert",
            Input::Query("format=html&subscription=%3Cscript%3Ealert(1)%3C%2Fscript%3E".into()),
        )
        .api(&FINDINGS, 200, "keyguard encryption report")
        .check(never_says("<script>alert")),
        Row::new(
            "findings filtered by NUL, a bidi override and .. match nothing",
            Input::Query("subscription=%00%E2%80%AE&type=..%2F..&resourceGroup=..".into()),
        )
        .api(&FINDINGS, 200, r#""value":[]"#),
        Row::new(
            "findings with a format that is not one are refused",
            Input::Query("format=..%2F..%2Fetc%2Fpasswd".into()),
        )
        .api(
            &[Findings(ApiHost::Serve), Findings(ApiHost::Webhook)],
            400,
            "is not one of json, csv, sarif, html",
        ),
    ]
}
