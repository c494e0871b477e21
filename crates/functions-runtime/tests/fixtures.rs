//! The shared Functions fixtures (real host captures and docs examples) through the
//! public decoding and result API.

use std::path::PathBuf;

use functions_runtime::{InvocationResult, decode_envelope};
use serde_json::{Map, Value, json};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/functions")
}

fn read(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

fn decode(name: &str, binding: &str) -> (Value, Map<String, Value>) {
    decode_envelope(&read(name), binding).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Checks one `request.*` fixture; returns false for a file this test does not know, so
/// a new fixture cannot slip in untested.
fn check_request_fixture(name: &str) -> bool {
    match name {
        "request.blobtrigger.captured.json" => {
            let (v, m) = decode(name, "blobIn");
            assert_eq!(v, json!("aGVsbG8gZnJvbSBieXRlCg=="), "base64 blob stays a string");
            assert_eq!(m["name"], json!("hello.txt"));
            assert_eq!(
                m["Uri"],
                json!("https://baldevgroup84df.blob.core.windows.net/bpath1/hello.txt")
            );
            assert_eq!(m["Properties"]["Length"], json!(16));
            assert_eq!(
                m["Properties"]["ETag"],
                json!("\"0x8DA6E28262505DD\""),
                "nested values untouched"
            );
        }
        "request.cosmosdbtrigger.captured.json" => {
            let (v, m) = decode(name, "inMsg");
            let docs = v
                .as_array()
                .unwrap_or_else(|| panic!("string of array decodes to an array: {v}"));
            assert_eq!(docs.len(), 1);
            assert_eq!(docs[0]["id"], json!("ehee"));
            assert_eq!(docs[0]["_ts"], json!(1_656_505_802));
            assert_eq!(docs[0]["_etag"], json!("\"1f0507d0-0000-0700-0000-62bc45ca0000\""));
            assert_eq!(m["sys"]["MethodName"], json!("cosmos"));
        }
        "request.httptrigger-json-body.captured.json" => {
            let (v, m) = decode(name, "httpPayload");
            assert_eq!(v["Method"], json!("POST"));
            assert_eq!(v["Headers"]["Content-Type"], json!(["application/json"]));
            assert_eq!(v["Body"], json!("{\n    \"name\" : \"Anjana\",\n    \"age\" : 12\n}"));
            assert_eq!(m["name"], json!("Anjana"));
            assert_eq!(m["age"], json!("12"), "double-encoded scalar stays a string");
            assert_eq!(m["Headers"]["Content-Length"], json!("41"));
        }
        "request.httptrigger-order.docs.json" => {
            let (v, m) = decode(name, "req");
            assert_eq!(v["Url"], json!("http://localhost:7071/api/order"));
            assert_eq!(v["Query"], json!("{}"), "nested strings are not decoded");
            assert_eq!(v["Body"], json!("{\"id\":1005,\"quantity\":2,\"color\":\"black\"}"));
            assert!(m.is_empty());
        }
        "request.httptrigger-query-route-and-string-input.captured.json" => {
            let (v, m) = decode(name, "httpPayload");
            assert_eq!(v["Query"]["id"], json!("11"));
            assert_eq!(v["Params"]["RemainingPath"], json!("hi"));
            assert_eq!(v["Body"], json!("Jack"));
            assert_eq!(m["id"], json!("11"));
            assert_eq!(m["RemainingPath"], json!("hi"));
            // The double-encoded string input binding decodes all the way to the document.
            let (input, _) = decode(name, "input");
            assert_eq!(input["id"], json!("11"));
            assert_eq!(input["_ts"], json!(1_652_717_163));
            // Two Data entries: no single-entry fallback, and the error names the binding.
            let err = decode_envelope(&read(name), "eventGridEvent")
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("\"eventGridEvent\"")),
                "{err:?}"
            );
        }
        "request.httptrigger.captured.json" => {
            let (v, m) = decode(name, "httpPayload");
            assert_eq!(v["Url"], json!("https://bal-dev.azurewebsites.net/hello/all"));
            assert!(v.get("Body").is_none());
            assert_eq!(m["sys"]["MethodName"], json!("default-hello-all"));
        }
        "request.queuetrigger.captured.json" => {
            let (v, m) = decode(name, "inMsg");
            assert_eq!(v, json!("aaaaa"));
            assert_eq!(m["Id"], json!("a0004923-f050-417a-9742-6d7c7b984134"));
            assert_eq!(m["PopReceipt"], json!("AgAAAAMAAAAAAAAA8d5gQex+2AE="));
            assert_eq!(m["DequeueCount"], json!("1"));
            assert_eq!(m["ExpirationTime"], json!("2022-06-20T06:00:06+00:00"));
        }
        "request.queuetrigger.docs.json" => {
            let (v, m) = decode(name, "myQueueItem");
            assert_eq!(v, json!("{ message: \"Message sent\" }"), "not valid JSON: stays text");
            assert_eq!(m["DequeueCount"], json!(1));
            assert_eq!(m["Id"], json!("800ae4b3-bdd2-4c08-badd-f08e5a34b865"));
        }
        "request.timertrigger.captured.json" => {
            let (v, m) = decode(name, "inMsg");
            assert_eq!(v["IsPastDue"], json!(false));
            assert_eq!(v["ScheduleStatus"], Value::Null);
            assert_eq!(v["Schedule"]["AdjustForDST"], json!(true));
            assert_eq!(m["sys"]["MethodName"], json!("timer"));
            // Single Data entry: a binding name that does not match still finds the trigger.
            let (fallback, _) = decode(name, "myTimer");
            assert_eq!(fallback, v);
        }
        _ => return false,
    }
    true
}

#[test]
fn every_request_fixture_decodes() {
    let dir = fixture_dir();
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("fixture directory {} missing: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .map(|entry| {
            entry
                .expect("readable directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.starts_with("request."))
        .collect();
    names.sort();
    assert!(
        names.len() >= 9,
        "expected at least 9 request fixtures, found {names:?}"
    );
    let unknown: Vec<&String> = names.iter().filter(|n| !check_request_fixture(n)).collect();
    assert!(unknown.is_empty(), "request fixtures without assertions: {unknown:?}");
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn result_matches_documented_response() {
    let expected = fixture_json("response.outputs-logs-returnvalue.docs.json");
    let mut result = InvocationResult::new();
    result
        .output("res", json!({"body": "Message enqueued"}))
        .output("myQueueOutput", json!(["queue message 1", "queue message 2"]))
        .log("Log message 1")
        .log("Log message 2")
        .return_value(json!("{\"hello\":\"world\"}"));
    let actual = serde_json::to_value(&result).expect("serialises");
    assert_eq!(actual, expected);
    assert_eq!(result.logs(), ["Log message 1", "Log message 2"]);
}

#[test]
fn result_carries_http_output_binding_from_host_test() {
    let res = fixture_json("outputs.res.http-output-binding.hosttest.json");
    let mut result = InvocationResult::new();
    result.output("res", res.clone());
    let actual = serde_json::to_value(&result).expect("serialises");
    assert_eq!(
        actual,
        json!({"Outputs": {"res": res}, "Logs": [], "ReturnValue": null})
    );
    let keys: Vec<&String> = actual["Outputs"]["res"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys.len(), 3);
    assert_eq!(actual["Outputs"]["res"]["statusCode"], json!("301"));
}
