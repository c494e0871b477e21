//! Rows of the hostile input table ([`super::hostile_tests`]) about the bytes, the Functions
//! envelope and the events themselves. Each row's name says what it proves.

use serde_json::{Value, json};

use super::hostile_tests::Fate::{Handled, Refused, Retried};
use super::hostile_tests::Surface::{Drift, Events, Timer};
use super::hostile_tests::{CHECK, EVENT, FUNCTIONS, Input, Row, SCAN, Surface, envelope, write_event};
use super::test_env::account;
use keyguard_core::event::{RESOURCE_NOTIFICATION_CREATED_OR_UPDATED, RESOURCE_WRITE_SUCCESS, SUBSCRIPTION_VALIDATION};

const JSON: Option<&str> = Some("application/json");
const TEN_MIB: usize = 10 * 1024 * 1024;
const DEPTH: usize = 100_000;

/// The same bytes to every body surface, refused as not JSON by each in its words.
fn not_json(name: &'static str, bytes: &[u8]) -> Row {
    Row::new(name, Input::Bytes(JSON, bytes.to_vec()))
        .event(&FUNCTIONS, 400, "request body is not valid JSON", Refused)
        .event(&[Events], 400, "body is not JSON", Refused)
        .api(&CHECK, 400, "request body")
        .api(&SCAN, 400, "request body")
}

/// The same bytes to every body surface, refused for their media type before they are read.
/// Event Grid retries a 415 (it is not one of the statuses it gives up on), then dead-letters the
/// event: nothing is lost, and Event Grid itself never sends another media type.
fn unsupported(name: &'static str, content_type: Option<&'static str>) -> Row {
    let body = json!({"resourceId": account("stcmkpayments")}).to_string().into_bytes();
    Row::new(name, Input::Bytes(content_type, body))
        .event(&FUNCTIONS, 415, "Content-Type must be application/json", Refused)
        .event(&[Events], 415, "send application/json", Retried)
        .api(&CHECK, 415, "send Content-Type: application/json")
        .api(&SCAN, 415, "send Content-Type: application/json")
}

/// 10 MiB of JSON, with or without a declared length: refused as too large, never parsed.
fn ten_mib(name: &'static str, declare_length: bool) -> Row {
    let row = Row::new(name, Input::Bytes(JSON, ten_mib_of_json()))
        .event(&FUNCTIONS, 413, "exceeds the limit of 4194304 bytes", Refused)
        .event(&[Events], 413, "length limit exceeded", Refused)
        .api(&CHECK, 413, "length limit exceeded")
        .api(&SCAN, 413, "length limit exceeded");
    if declare_length {
        row.header("content-length", TEN_MIB.to_string())
    } else {
        row
    }
}

/// 10 MiB of valid JSON: too large for any surface (4 MiB), whatever it holds.
pub(super) fn ten_mib_of_json() -> Vec<u8> {
    let mut body = b"{\"Data\":\"".to_vec();
    body.resize(TEN_MIB - 2, b'x');
    body.extend_from_slice(b"\"}");
    body
}

pub(super) fn nested_arrays() -> String {
    format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH))
}

/// An event of `event_type` with `data`.
fn typed_event(id: &str, event_type: &str, data: Value) -> Value {
    json!({"id": id, "eventType": event_type, "subject": "s", "eventTime": "2026-01-01T00:00:00Z", "data": data})
}

fn cloud_event(id: &str, specversion: Value) -> Value {
    json!({
        "specversion": specversion, "id": id, "type": RESOURCE_WRITE_SUCCESS,
        "source": format!("/subscriptions/{}", azure_sim::DEMO_SUBSCRIPTION),
        "subject": account("stcmkpayments"), "time": "2026-01-01T00:00:00Z",
        "data": write_event(id, &account("stcmkpayments"))["data"].clone(),
    })
}

fn validation(id: &str, code: Option<&str>) -> Value {
    let mut data = json!({"validationUrl": "https://example.invalid"});
    if let Some(code) = code {
        data["validationCode"] = json!(code);
    }
    typed_event(id, SUBSCRIPTION_VALIDATION, data)
}

fn event(make: impl Fn(&str) -> Value + 'static) -> Input {
    Input::Event(Box::new(make))
}

fn without(mut value: Value, pointer_parent: &str, key: &str) -> Value {
    if let Some(parent) = value.pointer_mut(pointer_parent).and_then(Value::as_object_mut) {
        parent.remove(key);
    }
    value
}

fn body_never_contains(needle: &'static str) -> impl Fn(Surface, &str) -> Result<(), String> {
    move |_, body| {
        if body.contains(needle) {
            Err(format!("the answer contains {needle:?}"))
        } else {
            Ok(())
        }
    }
}

pub(super) fn rows() -> Vec<Row> {
    vec![
        // --- bytes and media types --------------------------------------------------------
        not_json("malformed JSON is refused as not JSON", b"{not json"),
        not_json(
            "truncated JSON is refused as not JSON",
            br#"{"Data": {"eventGridEvent": {"id": "e1", "eventType": "Microsoft.Resources.ResourceWriteSuccess", "data": {"resourceUri": "/subscriptions/"#,
        ),
        not_json("an empty body is refused as not JSON", b""),
        not_json(
            "a byte-order mark before the JSON is refused as not JSON",
            b"\xef\xbb\xbf{\"Data\": {}}",
        ),
        not_json(
            "invalid UTF-8 inside a JSON string is refused as not JSON",
            b"{\"Data\": {\"eventGridEvent\": \"\xff\xfe\"}}",
        ),
        ten_mib("a 10 MiB body is refused as too large while it is read", false),
        ten_mib("a 10 MiB body that declares its length is refused from the header", true),
        unsupported("a body without a content type is refused as an unsupported media type", None),
        unsupported("a text/plain body is refused as an unsupported media type", Some("text/plain")),
        unsupported(
            "a form-encoded body is refused as an unsupported media type",
            Some("application/x-www-form-urlencoded"),
        ),
        // --- nesting ------------------------------------------------------------------------
        Row::new(
            "100,000 nested arrays are refused at the parser's depth limit",
            Input::Bytes(JSON, nested_arrays().into_bytes()),
        )
        .event(&FUNCTIONS, 400, "recursion limit exceeded", Refused)
        .event(&[Events], 400, "recursion limit exceeded", Refused)
        // A request struct wants an object first, so it stops at the first bracket.
        .api(&CHECK, 400, "request body: invalid type: sequence")
        .api(&SCAN, 400, "request body: invalid type: sequence"),
        Row::new(
            "100,000 nested objects inside an otherwise valid request are refused at the depth limit",
            Input::PerSurface(Box::new(|surface, _| {
                let deep = format!("{}1{}", "{\"a\":".repeat(DEPTH), "}".repeat(DEPTH));
                match surface {
                    Drift | Timer => format!(r#"{{"Data": {{"eventGridEvent": {{"id": "d", "data": {deep}}}}}}}"#),
                    Events => format!(r#"[{{"id": "d", "eventType": "Contoso.Thing", "data": {deep}}}]"#),
                    _ => format!(r#"{{"resourceId": {deep}, "scope": {deep}}}"#),
                }
                .into_bytes()
            })),
        )
        .event(&FUNCTIONS, 400, "recursion limit exceeded", Refused)
        .event(&[Events], 400, "recursion limit exceeded", Refused)
        .api(&CHECK, 400, "request body: invalid type: map"),
        Row::new(
            "100,000 nested arrays hidden in a JSON string are refused, not unwrapped",
            Input::PerSurface(Box::new(|surface, _| {
                let hidden = Value::String(nested_arrays());
                match surface {
                    Drift => envelope("eventGridEvent", hidden).to_string(),
                    _ => hidden.to_string(),
                }
                .into_bytes()
            })),
        )
        .event(&EVENT, 400, "does not contain valid JSON", Refused),
        // --- the Functions envelope --------------------------------------------------------------
        Row::new(
            "an envelope without Data is refused, naming it",
            Input::Bytes(JSON, br#"{"Metadata": {}}"#.to_vec()),
        )
        .event(&FUNCTIONS, 400, r#"no \"Data\" member"#, Refused),
        Row::new(
            "an empty Data is refused, naming the binding it lacks",
            Input::Bytes(JSON, br#"{"Data": {}, "Metadata": {}}"#.to_vec()),
        )
        .event(&FUNCTIONS, 400, "entries present: none", Refused),
        Row::new(
            "Data that is not an object is refused",
            Input::Bytes(JSON, br#"{"Data": "eventGridEvent"}"#.to_vec()),
        )
        .event(&FUNCTIONS, 400, r#"\"Data\" must be a JSON object, got a string"#, Refused),
        Row::new(
            "Data with other bindings is refused, naming the one it lacks",
            Input::Bytes(JSON, br#"{"Data": {"queueItem": 1, "blob": 2}}"#.to_vec()),
        )
        .event(&FUNCTIONS, 400, "no entry for trigger binding", Refused),
        Row::new(
            "a JSON array for an envelope or a request is refused",
            Input::Bytes(JSON, b"[]".to_vec()),
        )
        .event(&FUNCTIONS, 400, "request body must be a JSON object", Refused)
        .api(&CHECK, 400, "invalid length 0"),
        Row::new(
            "a null event in the envelope is refused; the timer ignores its trigger value and runs",
            Input::Bytes(JSON, br#"{"Data": {"eventGridEvent": null}}"#.to_vec()),
        )
        .event(&[Drift], 400, "not a JSON object (found null)", Refused)
        .event(&[Timer], 200, "reconcile:", Handled),
        Row::new(
            "hostile Metadata does not stop a good event",
            Input::PerSurface(Box::new(|_, id| {
                let event = typed_event(id, "Contoso.Items.ItemCreated", json!({}));
                json!({"Data": {"eventGridEvent": event}, "Metadata": {"RetryContext": {"RetryCount": -1}, "sys": "\u{0}"}})
                    .to_string()
                    .into_bytes()
            })),
        )
        .event(&[Drift], 200, "event-type-not-watched", Handled),
        // --- the event's fields ------------------------------------------------------------------
        Row::new(
            "an event without an id is refused",
            event(|_| without(write_event("x", &account("stcmkpayments")), "", "id")),
        )
        .event(&EVENT, 400, "missing required field id", Refused),
        Row::new(
            "an event id that is not a string is refused",
            event(|_| {
                let mut e = write_event("x", &account("stcmkpayments"));
                e["id"] = json!(42);
                e
            }),
        )
        .event(&EVENT, 400, "invalid id", Refused),
        Row::new(
            "an event id carrying a newline and a forged log line is refused",
            event(|id| typed_event(&format!("{id}\n2026-01-01T00:00:00Z INFO forged=1"), "Contoso.Thing", json!({}))),
        )
        .event(&EVENT, 400, "invalid id", Refused),
        Row::new(
            "an event with neither eventType nor specversion is refused",
            event(|id| json!({"id": id, "type": RESOURCE_WRITE_SUCCESS, "data": {}})),
        )
        .event(&EVENT, 400, "eventType (Event Grid) or type + specversion", Refused),
        Row::new(
            "an unknown event type is acknowledged as not watched, and logged",
            event(|id| typed_event(id, "Contoso.Items.ItemCreated", json!({"anything": [1, 2, 3]}))),
        )
        .event(&EVENT, 200, "event-type-not-watched", Handled),
        Row::new(
            "an ARM event type keyguard does not watch is acknowledged as not watched, and logged",
            event(|id| {
                typed_event(
                    id,
                    "Microsoft.Resources.ResourceDeleteSuccess",
                    json!({"resourceUri": account("stcmkpayments"), "operationName": "Microsoft.Storage/storageAccounts/delete"}),
                )
            }),
        )
        .event(&EVENT, 200, "event-type-not-watched", Handled),
        Row::new(
            "a write event with empty data is refused: it names no resource",
            event(|id| typed_event(id, RESOURCE_WRITE_SUCCESS, json!({}))),
        )
        .event(&EVENT, 400, "data.resourceUri is missing", Refused),
        Row::new(
            "a write event whose data is a number is refused",
            event(|id| typed_event(id, RESOURCE_WRITE_SUCCESS, json!(7))),
        )
        .event(&EVENT, 400, "invalid data", Refused),
        Row::new(
            "a write event whose data is a string of broken JSON is refused",
            event(|id| typed_event(id, RESOURCE_WRITE_SUCCESS, json!("{\"resourceUri\": "))),
        )
        .event(&EVENT, 400, "invalid data", Refused),
        Row::new(
            "a write event whose resourceUri is a number is refused",
            event(|id| {
                let mut e = write_event(id, &account("stcmkpayments"));
                e["data"]["resourceUri"] = json!(12);
                e
            }),
        )
        .event(&EVENT, 400, "data.resourceUri is a number, not a string", Refused),
        Row::new(
            "a write event without operationName is refused",
            event(|id| without(write_event(id, &account("stcmkpayments")), "/data", "operationName")),
        )
        .event(&EVENT, 400, "data.operationName", Refused),
        Row::new(
            "a resource notification without resourceInfo is refused",
            event(|id| typed_event(id, RESOURCE_NOTIFICATION_CREATED_OR_UPDATED, json!({"apiVersion": "2023-01-01"}))),
        )
        .event(&EVENT, 400, "data.resourceInfo", Refused),
        Row::new(
            "a resource notification whose resource id climbs out with .. is refused",
            event(|id| {
                let climbing = format!("{}/../../../providers/Microsoft.Sql/servers/x", account("stcmkpayments"));
                typed_event(id, RESOURCE_NOTIFICATION_CREATED_OR_UPDATED, json!({"resourceInfo": {"id": climbing}}))
            }),
        )
        .event(&EVENT, 400, r#"\"..\" segments"#, Refused),
        Row::new(
            "a well-formed write event for a compliant account is handled (control row)",
            event(move |id| write_event(id, &account("stcmkpayments"))),
        )
        .event(&EVENT, 200, r#""verdict":"compliant""#, Handled),
        Row::new(
            "a hostile subject is not trusted: the event acts on resourceUri and does not echo the subject",
            event(move |id| {
                let mut e = write_event(id, &account("stcmkpayments"));
                e["subject"] = json!(format!("/subscriptions/x/../{}\u{202e}\u{0}", "s".repeat(5000)));
                e
            }),
        )
        .event(&EVENT, 200, r#""verdict":"compliant""#, Handled)
        .check(body_never_contains("sssss")),
        // --- deliveries (the webhook takes arrays) -----------------------------------------------
        Row::new(
            "an empty delivery is acknowledged with nothing processed",
            Input::Delivery(Box::new(|_| json!([]))),
        )
        .event(&[Events], 200, r#""processed":0"#, Handled),
        Row::new(
            "a delivery of 300,000 empty events is refused in one short answer",
            Input::Delivery(Box::new(|_| Value::Array(vec![json!({}); 300_000]))),
        )
        .event(&[Events], 400, "at most 5000 events", Refused),
        Row::new(
            "a delivery of 5,000 bad events is refused naming ten of them, in one short answer",
            Input::Delivery(Box::new(|_| {
                Value::Array((0..5_000).map(|n| json!({"id": format!("{n:0>200}")})).collect())
            })),
        )
        .event(&[Events], 400, "; and 4990 more", Refused),
        Row::new(
            "one bad event refuses its batch, naming it, after the good one is handled",
            Input::Delivery(Box::new(|id| {
                json!([typed_event(id, "Contoso.Items.ItemCreated", json!({})), {"id": "the-bad-one"}])
            })),
        )
        .event(&[Events], 400, "the-bad-one", Refused),
        Row::new(
            "a validation event batched with a write event is refused, not answered as a handshake",
            Input::Delivery(Box::new(move |id| {
                json!([validation("v-1", Some("512d38b6-c7b8-40c8-89fe-f46f9e9622b6")), write_event(id, &account("stmmklogs"))])
            })),
        )
        .event(&[Events], 400, "delivered alone", Refused)
        .check(body_never_contains("validationResponse")),
        Row::new(
            "a validation event on the Functions path is acknowledged as not watched and logged, not answered",
            event(|id| validation(id, Some("512d38b6-c7b8-40c8-89fe-f46f9e9622b6"))),
        )
        .event(&[Drift], 200, "event-type-not-watched", Handled)
        .event(&[Events], 200, "validationResponse", Handled)
        .check(|surface, body| match surface {
            Drift if body.contains("validationResponse") => Err("the Functions path answered the handshake".into()),
            _ => Ok(()),
        }),
        Row::new(
            "a validation event without a code is refused",
            event(|id| validation(id, None)),
        )
        .event(&EVENT, 400, "data.validationCode", Refused),
        // --- CloudEvents -------------------------------------------------------------------------
        Row::new(
            "CloudEvents with specversion 0.3 are refused",
            event(|id| cloud_event(id, json!("0.3"))),
        )
        .event(&EVENT, 400, "specversion", Refused),
        Row::new(
            "CloudEvents with specversion 2.0 are refused",
            event(|id| cloud_event(id, json!("2.0"))),
        )
        .event(&EVENT, 400, "specversion", Refused),
        Row::new(
            "CloudEvents with a numeric specversion are refused",
            event(|id| cloud_event(id, json!(1.0))),
        )
        .event(&EVENT, 400, "specversion", Refused),
        Row::new(
            "CloudEvents without a type are refused",
            event(|id| without(cloud_event(id, json!("1.0")), "", "type")),
        )
        .event(&EVENT, 400, "missing required field type", Refused),
        Row::new(
            "a CloudEvents 1.0 write event is handled (control row)",
            event(|id| cloud_event(id, json!("1.0"))),
        )
        .event(&EVENT, 200, r#""verdict":"compliant""#, Handled),
        Row::new(
            "a body that is JSON but no request (a number) is refused",
            Input::Bytes(JSON, b"42".to_vec()),
        )
        .event(&FUNCTIONS, 400, "request body must be a JSON object", Refused)
        .event(&[Events], 400, "neither an event nor an array of events", Refused)
        .api(&CHECK, 400, "invalid type: integer"),
    ]
}
