//! `handler/openapi.json` against the code: the document is well-formed OpenAPI 3.1, lists exactly
//! the routes of [`API_ROUTES`], and its response schemas are strict enough to catch a wrong
//! answer. [`super::response_tests`] sends the real requests and checks the answers with
//! [`check_response`].

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::test_env::account;
use super::*;

pub(super) fn document() -> Value {
    serde_json::from_str(OPENAPI_DOCUMENT).unwrap_or_else(|e| panic!("openapi.json is not JSON: {e}"))
}

// --- the document itself -------------------------------------------------------------------

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// (METHOD, path) of every operation in the document.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in HTTP_METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    &doc["paths"][path][method.to_ascii_lowercase()]
}

#[test]
fn the_document_is_openapi_3_1_with_unique_operation_ids_and_resolvable_refs() {
    let doc = document();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi: {version:?}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut ids = BTreeSet::new();
    for (method, path) in documented_operations(&doc) {
        let op = operation(&doc, &method, &path);
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}: no responses"));
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        for status in responses.keys() {
            assert!(
                status.len() == 3 && status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s)),
                "{method} {path}: response key {status}"
            );
        }
    }
    // Every `$ref` points into the document.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20, "{} refs", all.len());
    for r in all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {r} resolves to nothing");
    }
    // Every security requirement names a declared scheme.
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for name in ["apiKey", "functionsKey", "entraToken"] {
        assert!(schemes.contains_key(name), "security scheme {name}");
    }
    assert_eq!(schemes["apiKey"]["name"], crate::http::auth::API_KEY_HEADER);
    assert_eq!(schemes["functionsKey"]["name"], crate::http::auth::FUNCTIONS_KEY_HEADER);
    assert_eq!(schemes["entraToken"]["scheme"], "bearer");
    // Every schema compiles as JSON Schema 2020-12.
    for name in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        compile(&doc, &format!("#/components/schemas/{name}"));
    }
}

#[test]
fn the_document_lists_exactly_the_route_table_with_matching_access() {
    let doc = document();
    let table: BTreeSet<(String, String)> = API_ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(table.len(), API_ROUTES.len(), "API_ROUTES lists a route twice");
    let documented = documented_operations(&doc);
    let undocumented: Vec<_> = table.difference(&documented).collect();
    let unserved: Vec<_> = documented
        .difference(&table)
        .filter(|(_, p)| !UNSERVED_YET.contains(&p.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "served but not in openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in openapi.json but not in API_ROUTES: {unserved:?}"
    );
    for route in API_ROUTES {
        let op = operation(&doc, route.method, route.path);
        let security = op.get("security").unwrap_or(&doc["security"]);
        let requirements = security.as_array().cloned().unwrap_or_default();
        let anonymous_allowed = requirements.is_empty() || requirements.iter().any(|r| r == &json!({}));
        match route.access {
            Access::Authenticated => assert!(
                !anonymous_allowed,
                "{} {} needs authentication but the document allows anonymous calls",
                route.method, route.path
            ),
            Access::EventGrid => assert!(
                !anonymous_allowed && requirements.contains(&json!({"webhookKey": []})),
                "{} {} needs the webhook key or Event Grid's token, but the document says otherwise",
                route.method,
                route.path
            ),
            Access::Open => assert!(
                anonymous_allowed,
                "{} {} is open but the document requires a credential",
                route.method, route.path
            ),
        }
        if route.access != Access::Open {
            assert!(
                op["responses"].get("401").is_some(),
                "{} {} must document 401",
                route.method,
                route.path
            );
        }
    }
}

/// Documented ahead of its handler; remove it from here when the route is registered.
const UNSERVED_YET: &[&str] = &[];

#[test]
#[should_panic(expected = "not listed in API_ROUTES")]
fn a_route_missing_from_the_table_cannot_be_registered() {
    async fn nothing() {}
    let _ = ApiRouter::new(Host::Webhook).add("GET", "/api/undocumented", nothing);
}

// --- validating a response against the document ------------------------------------------

/// A validator for the schema at `pointer` (a `#/...` JSON pointer into the document): the whole
/// document is the root resource, so the schema's `#/components/schemas/...` refs resolve.
fn compile(doc: &Value, pointer: &str) -> jsonschema::Validator {
    let mut root = doc.clone();
    root["$ref"] = json!(pointer);
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {pointer} does not compile: {e}"))
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Checks one real response against the document: the status must be documented for the
/// operation, the media type must be one it lists, and the body must match that schema.
pub(super) fn check_response(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    let method = method.to_ascii_lowercase();
    let status_key = status.to_string();
    let mut pointer = format!("#/paths/{}/{method}/responses/{status_key}", escape(path));
    let mut response = doc
        .pointer(&pointer[1..])
        .ok_or_else(|| format!("{method} {path} answered {status}, which the document does not list"))?;
    if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
        pointer = reference.to_string();
        response = doc
            .pointer(&pointer[1..])
            .ok_or_else(|| format!("{pointer} does not resolve"))?;
    }
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} {status}: documented without a body, got {} bytes",
                body.len()
            ))
        };
    };
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .ok_or_else(|| format!("{method} {path} {status}: no Content-Type"))?;
    if !content.contains_key(&essence) {
        return Err(format!(
            "{method} {path} {status}: media type {essence} is not documented (documented: {:?})",
            content.keys().collect::<Vec<_>>()
        ));
    }
    let instance: Value = if essence.ends_with("json") {
        serde_json::from_slice(body).map_err(|e| format!("{method} {path} {status}: body is not JSON: {e}"))?
    } else {
        Value::String(String::from_utf8(body.to_vec()).map_err(|e| format!("body is not UTF-8: {e}"))?)
    };
    let schema_pointer = format!("{pointer}/content/{}/schema", escape(&essence));
    let validator = compile(doc, &schema_pointer);
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {path} {status} ({essence}) does not match {schema_pointer}:\n  {}\nbody: {}",
            errors.join("\n  "),
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        ))
    }
}

#[test]
fn the_checker_rejects_undocumented_statuses_media_types_and_wrongly_typed_fields() {
    let doc = document();
    let outcome = json!({
        "trigger": {"kind": "manual"}, "correlationId": "c", "resourceId": account("st1"),
        "resourceType": "Microsoft.Storage/storageAccounts", "caller": null, "callerIp": null,
        "profile": "default", "requirement": "cmk", "verdict": "compliant", "drift": null,
        "before": {"state": "cmk", "detail": {"vaultUri": "https://kv.vault.azure.net", "keyName": "k",
                   "keyVersion": null, "userAssignedIdentity": null}},
        "after": null, "action": "none", "result": "compliant", "detail": null, "alert": false,
        "dryRun": false, "durationMs": 12
    });
    let check = |status: u16, content_type: &str, body: &Value| {
        check_response(
            &doc,
            "POST",
            "/api/check",
            status,
            Some(content_type),
            body.to_string().as_bytes(),
        )
    };
    check(200, "application/json", &outcome).unwrap_or_else(|e| panic!("{e}"));

    let mut wrong_type = outcome.clone();
    wrong_type["durationMs"] = json!("12");
    let err = check(200, "application/json", &wrong_type).unwrap_err();
    assert!(err.contains("/durationMs"), "{err}");

    let mut extra = outcome.clone();
    extra["surprise"] = json!(1);
    assert!(check(200, "application/json", &extra).is_err());

    let mut missing = outcome.clone();
    missing.as_object_mut().map(|o| o.remove("alert"));
    assert!(check(200, "application/json", &missing).is_err());

    let mut bad_state = outcome.clone();
    bad_state["before"] = json!({"state": "cmk"});
    assert!(
        check(200, "application/json", &bad_state).is_err(),
        "cmk without its key"
    );

    let err = check(418, "application/json", &outcome).unwrap_err();
    assert!(err.contains("does not list"), "{err}");
    let err = check(200, "text/plain", &outcome).unwrap_err();
    assert!(err.contains("not documented"), "{err}");
    let error_body = json!({"error": {"code": "X", "message": "y"}});
    check(400, "application/json", &error_body).unwrap_or_else(|e| panic!("{e}"));
    assert!(check(400, "application/json", &json!({"error": {"code": "X"}})).is_err());
}
