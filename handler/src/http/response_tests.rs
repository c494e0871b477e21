//! Every response the real routers give — over a real reconcile [`Context`] talking to an in-process
//! azure-sim, with an embedded store — has a status, media type and body that `handler/openapi.json`
//! documents (validated with JSON Schema 2020-12 against the document's schema), and each router
//! serves exactly the routes of [`API_ROUTES`].
//!
//! To cover a new route, list it in [`API_ROUTES`], document it, and add its cases to [`cases`].

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::openapi_tests::{check_response, document};
use super::test_env::{Case, Credential, Env, RESOURCE_GROUP, SUBSCRIPTION, WEBHOOK_KEY, account, send};
use super::*;

use super::test_env::Which::{Broken, Functions, NoToken, Webhook};

fn verdicts(body: &Value) -> BTreeSet<String> {
    body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["verdict"].as_str().map(str::to_string))
        .collect()
}

/// Every case, run in order (the checks first: they write the findings and the audit records
/// the later cases read). Add a route's cases here.
fn cases(events: Vec<Value>) -> Vec<Case> {
    let cmk = account("stcmkpayments");
    let mmk = account("stmmklogs");
    let missing = account("stdoesnotexist");
    let unsupported =
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Web/sites/app1");
    let validation = json!([{
        "id": "v1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "subject": "", "topic": "t",
        "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": "https://example.invalid"}
    }]);
    let too_large = format!("{{\"resourceId\": \"{}\"}}", "x".repeat(BODY_LIMIT + 1));
    vec![
        // POST /api/check
        Case::new("check a CMK account", Webhook, "POST", "/api/check", 200)
            .json(json!({"resourceId": cmk}))
            .expect(|b| assert_eq!(b["verdict"], "compliant", "{b}")),
        Case::new("check an MMK account in dry run", Webhook, "POST", "/api/check", 200)
            .json(json!({"resourceId": mmk, "dryRun": true}))
            .expect(|b| {
                assert_eq!(b["verdict"], "drift", "{b}");
                assert_eq!(b["dryRun"], true, "{b}");
                assert_eq!(b["before"]["state"], "mmk", "{b}");
            }),
        Case::new("check a type outside the catalog", Webhook, "POST", "/api/check", 200)
            .json(json!({"resourceId": unsupported}))
            .expect(|b| assert_eq!(b["verdict"], "unsupported", "{b}")),
        Case::new("check a resource ARM does not have", Webhook, "POST", "/api/check", 404)
            .json(json!({"resourceId": missing}))
            .expect(|b| assert_eq!(b["error"]["code"], "ResourceNotFound", "{b}")),
        Case::new("check with a body that is not JSON", Webhook, "POST", "/api/check", 400)
            .raw("application/json", "{not json"),
        Case::new(
            "check an id that is not a resource id",
            Webhook,
            "POST",
            "/api/check",
            400,
        )
        .json(json!({"resourceId": "storage account 1"}))
        .expect(|b| assert_eq!(b["error"]["code"], "InvalidResourceId", "{b}")),
        Case::new("check with an unknown field", Webhook, "POST", "/api/check", 400)
            .json(json!({"resourceId": cmk, "force": true})),
        Case::new("check with the wrong media type", Webhook, "POST", "/api/check", 415).raw("text/plain", cmk.clone()),
        Case::new("check with a body over the limit", Webhook, "POST", "/api/check", 413)
            .raw("application/json", too_large),
        Case::new("check without a credential", Webhook, "POST", "/api/check", 401)
            .json(json!({"resourceId": cmk}))
            .credential(Credential::None)
            .expect(|b| assert_eq!(b["error"]["message"], "authentication required", "{b}")),
        Case::new("check with a wrong key", Webhook, "POST", "/api/check", 401)
            .json(json!({"resourceId": cmk}))
            .credential(Credential::WrongKey)
            .expect(|b| assert_eq!(b["error"]["message"], "authentication required", "{b}")),
        Case::new(
            "check with the key in x-functions-key",
            Webhook,
            "POST",
            "/api/check",
            200,
        )
        .json(json!({"resourceId": cmk}))
        .credential(Credential::FunctionsKeyHeader),
        Case::new("check under the Functions host", Functions, "POST", "/api/check", 200)
            .json(json!({"resourceId": account("stexemptsandbox")}))
            .credential(Credential::None)
            .expect(|b| assert_eq!(b["verdict"], "exempt", "{b}")),
        Case::new("check while the store is down", Broken, "POST", "/api/check", 503)
            .json(json!({"resourceId": cmk}))
            .expect(|b| {
                let message = b["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("correlation id"), "{b}");
                assert!(!message.contains("connection refused"), "the store's error text: {b}");
            }),
        Case::new("check when the credential is refused", NoToken, "POST", "/api/check", 502)
            .json(json!({"resourceId": cmk}))
            .header("x-ms-correlation-request-id", "corr-check-no-token")
            .expect(|b| {
                let message = b["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("corr-check-no-token"), "names the correlation id: {b}");
                for leak in ["AADSTS", "client secret", "tenant", "login.internal.example"] {
                    assert!(!message.contains(leak), "the credential's error text ({leak}) leaked: {b}");
                }
            }),
        // GET /api/findings
        Case::new("all findings", Webhook, "GET", "/api/findings", 200).expect(|b| {
            let found = verdicts(b);
            for v in ["compliant", "drift", "exempt", "unsupported"] {
                assert!(found.contains(v), "{v} missing: {b}");
            }
            assert_eq!(
                b["summary"]["overall"]["total"],
                b["value"].as_array().map_or(0, Vec::len),
                "{b}"
            );
            assert_eq!(b["summary"]["overall"]["drift"], 1, "{b}");
        }),
        Case::new(
            "findings by verdict list and type",
            Webhook,
            "GET",
            "/api/findings",
            200,
        )
        .query("verdict=drift,Compliant&type=microsoft.storage/STORAGEACCOUNTS")
        .expect(|b| {
            assert_eq!(
                verdicts(b),
                BTreeSet::from(["compliant".to_string(), "drift".to_string()]),
                "{b}"
            );
        }),
        Case::new("findings by repeated verdict", Webhook, "GET", "/api/findings", 200)
            .query("verdict=unsupported&verdict=exempt")
            .expect(|b| {
                assert_eq!(
                    verdicts(b),
                    BTreeSet::from(["exempt".to_string(), "unsupported".to_string()]),
                    "{b}"
                );
            }),
        Case::new(
            "findings by subscription and group",
            Webhook,
            "GET",
            "/api/findings",
            200,
        )
        .query(format!(
            "subscription={}&resourceGroup=RG-KEYGUARD-DEMO",
            SUBSCRIPTION.to_uppercase()
        ))
        .expect(|b| assert_eq!(b["value"].as_array().map_or(0, Vec::len), 4, "{b}")),
        Case::new("findings of another subscription", Webhook, "GET", "/api/findings", 200)
            .query("subscription=00000000-0000-0000-0000-000000000000")
            .expect(|b| {
                assert_eq!(b["value"], json!([]), "{b}");
                assert_eq!(b["summary"]["overall"]["total"], 0, "{b}");
            }),
        Case::new("findings as CSV", Webhook, "GET", "/api/findings", 200)
            .query("format=csv")
            .expect(|b| {
                let text = b.as_str().unwrap_or_default();
                assert!(text.lines().count() >= 5 && text.contains("stmmklogs"), "{text}");
            }),
        Case::new("findings as SARIF", Webhook, "GET", "/api/findings", 200)
            .query("format=sarif&verdict=drift")
            .expect(|b| assert_eq!(b["runs"][0]["results"].as_array().map_or(0, Vec::len), 1, "{b}")),
        Case::new("findings as HTML", Webhook, "GET", "/api/findings", 200)
            .query("format=HTML")
            .expect(|b| assert!(b.as_str().unwrap_or_default().contains("stmmklogs"))),
        Case::new("findings with an unknown verdict", Webhook, "GET", "/api/findings", 400)
            .query("verdict=drifted")
            .expect(|b| {
                assert!(
                    b["error"]["message"].as_str().unwrap_or_default().contains("drifted"),
                    "{b}"
                )
            }),
        Case::new(
            "findings with an unknown parameter",
            Webhook,
            "GET",
            "/api/findings",
            400,
        )
        .query("state=drift")
        .expect(|b| {
            assert!(
                b["error"]["message"].as_str().unwrap_or_default().contains("state"),
                "{b}"
            )
        }),
        Case::new("findings as a terminal table", Webhook, "GET", "/api/findings", 400).query("format=table"),
        Case::new("findings with an empty filter", Webhook, "GET", "/api/findings", 400).query("subscription="),
        Case::new("findings twice filtered by type", Webhook, "GET", "/api/findings", 400).query("type=a/b&type=c/d"),
        Case::new("findings without a credential", Webhook, "GET", "/api/findings", 401).credential(Credential::None),
        Case::new(
            "findings under the Functions host with ?code=",
            Functions,
            "GET",
            "/api/findings",
            200,
        )
        .query("code=the-host-checked-this&verdict=exempt")
        .credential(Credential::None)
        .expect(|b| assert_eq!(verdicts(b), BTreeSet::from(["exempt".to_string()]), "{b}")),
        Case::new("findings while the store is down", Broken, "GET", "/api/findings", 503),
        // GET /api/audit
        Case::new("the audit trail", Webhook, "GET", "/api/audit", 200)
            .expect(|b| assert!(b["value"].as_array().map_or(0, Vec::len) >= 4, "{b}")),
        Case::new("one resource's audit records", Webhook, "GET", "/api/audit", 200)
            .query(format!("resource={}&since=1h&limit=1", mmk))
            .expect(|b| {
                assert_eq!(b["value"].as_array().map_or(0, Vec::len), 1, "{b}");
                assert_eq!(b["value"][0]["verdict"], "drift", "{b}");
            }),
        Case::new("the newest two audit records", Webhook, "GET", "/api/audit", 200)
            .query("limit=2")
            .expect(|b| {
                let times: Vec<&str> = b["value"].as_array().into_iter().flatten().filter_map(|r| r["time"].as_str()).collect();
                assert_eq!(times.len(), 2, "{b}");
                assert!(times[0] <= times[1], "oldest first: {b}");
            }),
        Case::new("audit with a bad time", Webhook, "GET", "/api/audit", 400).query("since=yesterday"),
        // Finding 7: these panicked (a 500).
        Case::new("audit since an age beyond the calendar", Webhook, "GET", "/api/audit", 400)
            .query("since=99999999999999d")
            .expect(|b| {
                assert_eq!(b["error"]["code"], "InvalidQuery", "{b}");
                assert!(b["error"]["message"].as_str().unwrap_or_default().contains("beyond the calendar"), "{b}");
            }),
        Case::new("audit until an age beyond the calendar", Webhook, "GET", "/api/audit", 400)
            .query("until=99999999999999d")
            .expect(|b| assert!(b["error"]["message"].as_str().unwrap_or_default().starts_with("until"), "{b}")),
        Case::new("audit with a limit over the maximum", Webhook, "GET", "/api/audit", 400)
            .query("limit=10001")
            .expect(|b| assert!(b["error"]["message"].as_str().unwrap_or_default().contains("10000"), "{b}")),
        Case::new("audit with a bad limit", Webhook, "GET", "/api/audit", 400).query("limit=many"),
        Case::new("audit with an unknown parameter", Webhook, "GET", "/api/audit", 400).query("verdict=drift"),
        Case::new("audit without a credential", Webhook, "GET", "/api/audit", 401).credential(Credential::None),
        Case::new(
            "audit under the Functions host with ?code=",
            Functions,
            "GET",
            "/api/audit",
            200,
        )
        .query("code=the-host-checked-this")
        .credential(Credential::None),
        Case::new("audit while the store is down", Broken, "GET", "/api/audit", 503),
        // GET /api/health
        Case::new("health, authenticated", Webhook, "GET", "/api/health", 200).expect(|b| {
            assert_eq!(b["status"], "ok", "{b}");
            assert_eq!(b["storeReachable"], true, "{b}");
            assert_eq!(b["identity"], json!({"tokenObtainable": true}), "{b}");
            assert_eq!(b["catalogTypes"], keyguard_core::catalog::entries().len(), "{b}");
        }),
        Case::new("health, anonymous", Webhook, "GET", "/api/health", 200)
            .credential(Credential::None)
            .expect(|b| assert_eq!(b, &json!({"status": "ok"}))),
        Case::new("health with a wrong key", Webhook, "GET", "/api/health", 401).credential(Credential::WrongKey),
        Case::new("health under the Functions host", Functions, "GET", "/api/health", 200)
            .credential(Credential::None)
            .expect(|b| assert!(b["store"].as_str().unwrap_or_default().starts_with("embedded "), "{b}")),
        Case::new("health with store and identity down", Broken, "GET", "/api/health", 503).expect(|b| {
            assert_eq!(b["status"], "degraded", "{b}");
            assert_eq!(b["storeReachable"], false, "{b}");
            assert_eq!(b["identity"]["tokenObtainable"], false, "{b}");
            assert_eq!(b["dryRun"], true, "{b}");
            let error = b["identity"]["error"].as_str().unwrap_or_default();
            assert!(!error.is_empty() && !error.contains("not-the-identity-header"), "{b}");
        }),
        Case::new(
            "health with store and identity down, anonymous",
            Broken,
            "GET",
            "/api/health",
            503,
        )
        .credential(Credential::None)
        .expect(|b| assert_eq!(b, &json!({"status": "degraded"}))),
        // GET /api/openapi.json
        Case::new("the document, anonymous", Webhook, "GET", "/api/openapi.json", 200)
            .credential(Credential::None)
            .expect(|b| assert_eq!(b, &document())),
        Case::new(
            "the document under the Functions host",
            Functions,
            "GET",
            "/api/openapi.json",
            200,
        )
        .credential(Credential::None),
        // POST /api/events and OPTIONS /api/events (keyguard webhook)
        Case::new("Event Grid validation handshake", Webhook, "POST", "/api/events", 200)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .json(validation.clone())
            .expect(|b| assert_eq!(b["validationResponse"], "512d38b6-c7b8-40c8-89fe-f46f9e9622b6")),
        Case::new("an Event Grid delivery", Webhook, "POST", "/api/events", 200)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .json(Value::Array(events))
            .expect(|b| {
                assert_eq!(b["processed"], 1, "{b}");
                assert_eq!(b["outcomes"][0]["trigger"]["kind"], "event", "{b}");
            }),
        Case::new("events without the webhook key", Webhook, "POST", "/api/events", 401)
            .credential(Credential::None)
            .json(validation.clone()),
        Case::new(
            "events with the API key instead of the webhook key",
            Webhook,
            "POST",
            "/api/events",
            401,
        )
        .json(validation.clone()),
        Case::new("events that are not JSON", Webhook, "POST", "/api/events", 400)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .raw("application/json", "[{"),
        Case::new("events that are not events", Webhook, "POST", "/api/events", 400)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .json(json!(42)),
        Case::new("events as text", Webhook, "POST", "/api/events", 415)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .raw("text/plain", validation.to_string()),
        Case::new("CloudEvents handshake", Webhook, "OPTIONS", "/api/events", 200)
            .query(format!("code={WEBHOOK_KEY}"))
            .credential(Credential::None)
            .header("webhook-request-origin", "eventgrid.azure.net"),
        Case::new(
            "CloudEvents handshake from elsewhere",
            Webhook,
            "OPTIONS",
            "/api/events",
            403,
        )
        .query(format!("code={WEBHOOK_KEY}"))
        .credential(Credential::None)
        .header("webhook-request-origin", "example.com"),
        Case::new(
            "CloudEvents handshake without the key",
            Webhook,
            "OPTIONS",
            "/api/events",
            401,
        )
        .credential(Credential::None)
        .header("webhook-request-origin", "eventgrid.azure.net"),
        // POST /api/scan (last: it records a finding for every resource it sweeps)
        Case::new("scan the group, report only", Webhook, "POST", "/api/scan", 200)
            .json(json!({"scope": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}")}))
            .expect(|b| {
                assert_eq!(b["complete"], true, "{b}");
                assert!(b["listed"].as_u64().is_some_and(|n| n > 0), "{b}");
                assert_eq!(b["findings"].as_array().map(Vec::len), b["evaluated"].as_u64().map(|n| n as usize));
                assert!(b["summary"]["drift"].as_u64().is_some_and(|n| n > 0), "the demo seed drifts: {b}");
            }),
        Case::new("scan against one requirement", Webhook, "POST", "/api/scan", 200)
            .json(json!({"scope": format!("/subscriptions/{SUBSCRIPTION}"), "require": "encrypted", "types": ["Microsoft.Storage/storageAccounts"]}))
            .expect(|b| assert_eq!(b["summary"]["drift"], 0, "everything is encrypted: {b}")),
        Case::new("scan a scope that is not one", Webhook, "POST", "/api/scan", 400)
            .json(json!({"scope": "/subscriptions"}))
            .expect(|b| assert_eq!(b["error"]["code"], "InvalidScope", "{b}")),
        Case::new("scan a type outside the catalog", Webhook, "POST", "/api/scan", 400)
            .json(json!({"scope": format!("/subscriptions/{SUBSCRIPTION}"), "types": ["Microsoft.Web/sites"]})),
        Case::new("scan with a foreign resume token", Webhook, "POST", "/api/scan", 400)
            .json(json!({"scope": format!("/subscriptions/{SUBSCRIPTION}"), "resumeToken": "sweep|/subscriptions/other||true"}))
            .expect(|b| assert_eq!(b["error"]["code"], "InvalidResumeToken", "{b}")),
        Case::new("scan with the wrong media type", Webhook, "POST", "/api/scan", 415).raw("text/plain", "{}"),
        Case::new("scan without a credential", Webhook, "POST", "/api/scan", 401)
            .json(json!({"scope": format!("/subscriptions/{SUBSCRIPTION}")}))
            .credential(Credential::None),
    ]
}

/// The events a person's change to an account makes, as Event Grid would deliver them.
pub(super) fn events_for_change(sim: &azure_sim::SimHandle, id: &str) -> Vec<Value> {
    let person = azure_sim::Principal {
        oid: "11111111-2222-3333-4444-555555555555".into(),
        appid: "04b07795-8ddb-461a-bbee-02f9e1bf7b46".into(),
        name: "Test Admin".into(),
        upn: Some("admin@contoso.example".into()),
    };
    let outcome = sim.state().act(id, &person, &json!({"tags": {"touched": "yes"}}));
    assert_eq!(outcome.status, 200, "{}", outcome.body);
    let events = sim.state().events();
    assert!(!events.is_empty(), "the sim made no event");
    events
}

#[tokio::test]
async fn every_response_matches_the_document() {
    let env = Env::start().await;
    let doc = document();
    let events = events_for_change(&env.sim, &account("stcmkledger"));
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    let all = cases(events);
    for case in &all {
        let (status, content_type, body) = send(env.router(case.router), case).await;
        covered.insert((case.method, case.path, status));
        if status != case.status {
            failures.push(format!(
                "{} ({:?} {} {}?{}): expected {}, got {status}: {}",
                case.name,
                case.router,
                case.method,
                case.path,
                case.query,
                case.status,
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ));
            continue;
        }
        if let Err(e) = check_response(&doc, case.method, case.path, status, content_type.as_deref(), &body) {
            failures.push(format!("{}: {e}", case.name));
            continue;
        }
        if let Some(expect) = &case.expect {
            let essence = content_type.as_deref().unwrap_or_default();
            let parsed = if essence.contains("json") {
                serde_json::from_slice(&body).unwrap_or(Value::Null)
            } else {
                Value::String(String::from_utf8_lossy(&body).into_owned())
            };
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| expect(&parsed)));
            if result.is_err() {
                failures.push(format!("{}: the body check failed (see the panic above)", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    // Each served route is exercised with a success and, where it takes a credential, a 401.
    for route in API_ROUTES {
        let statuses: Vec<u16> = covered
            .iter()
            .filter(|(m, p, _)| *m == route.method && *p == route.path)
            .map(|(_, _, s)| *s)
            .collect();
        assert!(
            statuses.contains(&200),
            "{} {}: no success case",
            route.method,
            route.path
        );
        if route.access != Access::Open {
            assert!(statuses.contains(&401), "{} {}: no 401 case", route.method, route.path);
        }
    }
    env.sim.shutdown().await;
}

/// Each router answers each of its routes (no 404/405 from the fallbacks), and the Functions
/// router leaves the webhook-only ones to the EncryptionDrift function.
#[tokio::test]
async fn the_routers_serve_exactly_the_route_table() {
    let env = Env::start().await;
    for route in API_ROUTES {
        for (which, served) in [(Webhook, true), (Functions, !route.webhook_only)] {
            let case = Case::new("probe", which, route.method, route.path, 0).credential(Credential::None);
            let (status, _, body) = send(env.router(which), &case).await;
            let fallback = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|b| b["error"]["code"].as_str().map(str::to_string))
                .is_some_and(|code| code == "NotFound" || code == "MethodNotAllowed");
            assert_eq!(
                !fallback,
                served,
                "{which:?} {} {} answered {status}: {}",
                route.method,
                route.path,
                String::from_utf8_lossy(&body)
            );
        }
    }
    env.sim.shutdown().await;
}
