//! Decoding of the payload-mode request envelope `{"Data": {...}, "Metadata": {...}}`.
//!
//! The host JSON-encodes every value it holds as a .NET string (or JArray) *before*
//! serialising the envelope, so strings arrive double-encoded (`"\"hello\""`) and arrays
//! as JSON text. Objects arrive as objects. The functions here undo that so handlers see
//! the value the trigger actually carried.

use serde_json::{Map, Value};

/// How many encoding layers are peeled at most; real payloads use one or two, and the
/// bound keeps a hostile body from costing more than a handful of parses.
const MAX_DECODE_DEPTH: usize = 8;

/// Why a request body is not a usable invocation envelope. Messages name the problem,
/// never echo the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("request body is not valid JSON: {0}")]
    Json(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("request envelope has no \"Data\" member")]
    MissingData,
    #[error("\"Data\" must be a JSON object, got {0}")]
    DataNotObject(&'static str),
    #[error("\"Data\" has no entry for trigger binding \"{binding}\" (entries present: {present})")]
    MissingTrigger { binding: String, present: String },
}

/// Undoes the host's string encoding of a trigger or input value.
///
/// A string that holds JSON *object, array or string* text is parsed, repeatedly, up to
/// a fixed depth. Strings holding JSON scalars (`"12"`, `"true"`, `"null"`) are left as
/// strings: a queue message `"12"` is text, and guessing a number would change its type
/// depending on content. Non-JSON strings (base64 blobs, plain text) are returned as is.
pub fn decode_trigger_value(raw: &Value) -> Value {
    let mut current = raw.clone();
    for _ in 0..MAX_DECODE_DEPTH {
        let Value::String(s) = &current else { break };
        match parse_structured(s) {
            Some(next) => current = next,
            None => break,
        }
    }
    current
}

/// Parses `s` only if it is JSON text for an object, array or string.
fn parse_structured(s: &str) -> Option<Value> {
    let first = s.trim_start().chars().next()?;
    if !matches!(first, '{' | '[' | '"') {
        return None;
    }
    serde_json::from_str::<Value>(s).ok()
}

/// Metadata values only lose their extra string layer (`"\"hello.txt\""` → `"hello.txt"`).
/// JSON text inside metadata is not expanded: unlike the trigger, nobody declared a type
/// for these values, and a string that merely looks like JSON should stay a string.
fn decode_metadata_value(raw: Value) -> Value {
    let mut current = raw;
    for _ in 0..MAX_DECODE_DEPTH {
        let Value::String(s) = &current else { break };
        if !s.starts_with('"') {
            break;
        }
        match serde_json::from_str::<Value>(s) {
            Ok(inner @ Value::String(_)) => current = inner,
            _ => break,
        }
    }
    current
}

/// Splits a payload-mode body into the decoded trigger value and decoded metadata.
///
/// `Data`/`Metadata` are matched case-insensitively (Newtonsoft reads them that way, and
/// hand-written test requests rarely get the casing right). The trigger is looked up by
/// binding name, exactly first, then case-insensitively, then - if `Data` holds a single
/// entry - that entry, so a renamed binding in function.json does not break invocations.
/// Metadata is optional because nothing guarantees the host sends it.
pub fn decode_envelope(body: &[u8], binding: &str) -> Result<(Value, Map<String, Value>), EnvelopeError> {
    let parsed: Value = serde_json::from_slice(body).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    let Value::Object(mut envelope) = parsed else {
        return Err(EnvelopeError::NotAnObject);
    };
    let data = take_key(&mut envelope, "Data").ok_or(EnvelopeError::MissingData)?;
    let Value::Object(mut data) = data else {
        return Err(EnvelopeError::DataNotObject(kind(&data)));
    };
    let metadata = match take_key(&mut envelope, "Metadata") {
        Some(Value::Object(m)) => m,
        Some(Value::Null) | None => Map::new(),
        Some(other) => {
            tracing::warn!(
                kind = kind(&other),
                "ignoring non-object Metadata in invocation envelope"
            );
            Map::new()
        }
    };
    let trigger = match take_key(&mut data, binding) {
        Some(v) => v,
        None if data.len() == 1 => match data.into_iter().next() {
            Some((_, v)) => v,
            None => return Err(missing_trigger(binding, &Map::new())),
        },
        None => return Err(missing_trigger(binding, &data)),
    };
    let metadata = metadata
        .into_iter()
        .map(|(k, v)| (k, decode_metadata_value(v)))
        .collect();
    Ok((decode_trigger_value(&trigger), metadata))
}

fn missing_trigger(binding: &str, data: &Map<String, Value>) -> EnvelopeError {
    let present = if data.is_empty() {
        "none".to_owned()
    } else {
        data.keys()
            .take(10)
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    EnvelopeError::MissingTrigger {
        binding: binding.to_owned(),
        present,
    }
}

/// Removes `key`, preferring an exact match over a case-insensitive one.
fn take_key(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    if let Some(v) = map.remove(key) {
        return Some(v);
    }
    let actual = map.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
    map.remove(&actual)
}

/// Case-insensitive lookup without consuming the map.
pub(crate) fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// `Metadata.RetryContext.RetryCount`, present only when a retry policy is configured.
/// Accepts a number or numeric string, and a RetryContext that arrived as JSON text.
pub fn retry_count(metadata: &Map<String, Value>) -> Option<u32> {
    let ctx = decode_trigger_value(get_ci(metadata, "RetryContext")?);
    let count = get_ci(ctx.as_object()?, "RetryCount")?;
    let n = match count {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    u32::try_from(n).ok()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_and_plain_values_pass_through() {
        for v in [
            json!({"a": 1}),
            json!([1]),
            json!(5),
            json!(null),
            json!("plain text"),
            json!("aGVsbG8="),
        ] {
            assert_eq!(decode_trigger_value(&v), v);
        }
    }

    #[test]
    fn string_of_json_is_parsed() {
        assert_eq!(decode_trigger_value(&json!("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(decode_trigger_value(&json!("[1,2]")), json!([1, 2]));
        assert_eq!(decode_trigger_value(&json!("\"hello\"")), json!("hello"));
    }

    #[test]
    fn double_encoded_object_is_parsed() {
        let once = serde_json::to_string(&json!({"id": "x"})).unwrap_or_default();
        let twice = serde_json::to_string(&once).unwrap_or_default();
        assert_eq!(decode_trigger_value(&json!(twice)), json!({"id": "x"}));
    }

    #[test]
    fn scalar_json_text_stays_a_string() {
        for s in ["12", "true", "null", "\"12\""] {
            let decoded = decode_trigger_value(&json!(s));
            assert!(decoded.is_string(), "{s} -> {decoded}");
        }
        assert_eq!(decode_trigger_value(&json!("\"12\"")), json!("12"));
    }

    #[test]
    fn depth_is_bounded() {
        let mut v = json!({"deep": true});
        for _ in 0..20 {
            v = Value::String(v.to_string());
        }
        assert!(decode_trigger_value(&v).is_string());
    }

    #[test]
    fn invalid_json_that_looks_structured_stays() {
        let s = json!("{ message: \"Message sent\" }");
        assert_eq!(decode_trigger_value(&s), s);
    }

    #[test]
    fn envelope_keys_are_case_insensitive_and_metadata_optional() {
        let (v, m) = decode_envelope(br#"{"data":{"EventGridEvent":{"id":"1"}}}"#, "eventGridEvent").expect("decodes");
        assert_eq!(v, json!({"id": "1"}));
        assert!(m.is_empty());
    }

    #[test]
    fn envelope_errors() {
        let err = |b: &str| decode_envelope(b.as_bytes(), "t").err();
        assert!(matches!(err("{"), Some(EnvelopeError::Json(_))));
        assert_eq!(err("[]"), Some(EnvelopeError::NotAnObject));
        assert_eq!(err(r#"{"Metadata":{}}"#), Some(EnvelopeError::MissingData));
        assert_eq!(err(r#"{"Data":"x"}"#), Some(EnvelopeError::DataNotObject("a string")));
        let missing = err(r#"{"Data":{"a":1,"b":2}}"#)
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing.contains("\"t\"") && missing.contains("\"a\""), "{missing}");
        assert!(
            err(r#"{"Data":{}}"#)
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("none")
        );
    }

    #[test]
    fn metadata_strings_lose_one_encoding_layer_only() {
        let body =
            br#"{"Data":{"t":1},"Metadata":{"name":"\"a.txt\"","n":"1","json":"{\"x\":1}","obj":{"k":"\"v\""}}}"#;
        let (_, m) = decode_envelope(body, "t").expect("decodes");
        assert_eq!(m["name"], json!("a.txt"));
        assert_eq!(m["n"], json!("1"));
        assert_eq!(m["json"], json!("{\"x\":1}"));
        assert_eq!(m["obj"], json!({"k": "\"v\""}));
    }

    #[test]
    fn retry_count_forms() {
        let meta = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            retry_count(&meta(json!({"RetryContext": {"RetryCount": 2, "MaxRetryCount": 5}}))),
            Some(2)
        );
        assert_eq!(
            retry_count(&meta(json!({"retryContext": {"retryCount": "3"}}))),
            Some(3)
        );
        assert_eq!(
            retry_count(&meta(json!({"RetryContext": "{\"RetryCount\":1}"}))),
            Some(1)
        );
        assert_eq!(retry_count(&meta(json!({"RetryContext": {"RetryCount": -1}}))), None);
        assert_eq!(retry_count(&meta(json!({}))), None);
    }
}
