//! Event intake: Event Grid schema and CloudEvents 1.0, as delivered by Event Grid or the
//! Functions host.
//!
//! Events are hints ("look at this resource now"), never the source of truth, so this module
//! only extracts what the pipeline needs to decide whether to look: the resource id (validated,
//! because it becomes part of a management URL), the operation, and who did it (to skip our own
//! writes and to tell people who changed what). Unknown event types are not errors: Event Grid
//! subscriptions are often broader than what we handle, and rejecting them would make Event Grid
//! retry forever.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::resource_id::{ResourceId, is_invisible_formatting};

pub const RESOURCE_WRITE_SUCCESS: &str = "Microsoft.Resources.ResourceWriteSuccess";
pub const ARM_EVENT_PREFIX: &str = "Microsoft.Resources.";
pub const RESOURCE_NOTIFICATION_CREATED_OR_UPDATED: &str = "Microsoft.ResourceNotifications.Resources.CreatedOrUpdated";
pub const RESOURCE_NOTIFICATION_DELETED: &str = "Microsoft.ResourceNotifications.Resources.Deleted";
pub const SUBSCRIPTION_VALIDATION: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";
/// The only CloudEvents version Event Grid delivers; another one is another format.
pub const CLOUDEVENTS_SPEC_VERSION: &str = "1.0";

/// How many layers of "JSON inside a JSON string" we unwrap. The Functions host encodes string
/// values once more; two or three layers are plausible, more is a broken or hostile payload.
const MAX_STRING_NESTING: usize = 3;

/// Which envelope the event came in; kept for the audit trail and for answering in kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Schema {
    EventGrid,
    CloudEvents,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IncomingEvent {
    pub id: String,
    pub schema: Schema,
    pub event_type: String,
    pub subject: Option<String>,
    /// Event Grid `topic` or CloudEvents `source`.
    pub source_or_topic: Option<String>,
    /// `eventTime` / `time`, verbatim: the Functions host may have reformatted it, so parse leniently if at all.
    pub time: Option<String>,
    pub kind: EventKind,
}

impl IncomingEvent {
    /// The resource the event is about, when the kind names one.
    pub fn resource_id(&self) -> Option<&ResourceId> {
        match &self.kind {
            EventKind::ResourceWrite(op) => Some(&op.resource_id),
            EventKind::ResourceNotification { resource_id, .. } => Some(resource_id),
            EventKind::ResourceNotificationDeleted { resource_id } => Some(resource_id),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum EventKind {
    /// Microsoft.Resources.ResourceWriteSuccess
    ResourceWrite(ArmOperation),
    /// Other Microsoft.Resources.* events (WriteFailure/Cancel, Delete*, Action*): recognised, ignored by the pipeline.
    #[serde(rename_all = "camelCase")]
    OtherArm {
        resource_uri: Option<String>,
        operation_name: Option<String>,
    },
    /// Microsoft.ResourceNotifications.Resources.CreatedOrUpdated: carries the resource body
    /// (`{id,name,type,location,tags,properties}`, with the 1/0 booleans of that topic left as is).
    #[serde(rename_all = "camelCase")]
    ResourceNotification {
        resource_id: ResourceId,
        resource: Value,
        api_version: Option<String>,
    },
    /// Microsoft.ResourceNotifications.Resources.Deleted
    #[serde(rename_all = "camelCase")]
    ResourceNotificationDeleted { resource_id: ResourceId },
    /// Microsoft.EventGrid.SubscriptionValidationEvent
    #[serde(rename_all = "camelCase")]
    SubscriptionValidation {
        validation_code: String,
        validation_url: Option<String>,
    },
    /// Anything else: logged and acknowledged.
    Unrecognised,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmOperation {
    pub resource_id: ResourceId,
    /// RBAC action, e.g. `Microsoft.Storage/storageAccounts/write`.
    pub operation_name: String,
    pub status: Option<String>,
    pub correlation_id: Option<String>,
    pub caller: Caller,
    pub tenant_id: Option<String>,
}

/// Who made the change, as far as the token claims say. Used to skip our own writes and to tell
/// humans who to talk to; never used for authorisation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    pub object_id: Option<String>,
    pub app_id: Option<String>,
    pub name: Option<String>,
    pub upn: Option<String>,
    pub ip_address: Option<String>,
}

/// Application ids of Microsoft's public clients, the tools people sign in with. Every user of
/// such a tool carries its id in their tokens, so it never identifies one principal.
pub const PUBLIC_CLIENT_APP_IDS: &[(&str, &str)] = &[
    ("04b07795-8ddb-461a-bbee-02f9e1bf7b46", "Azure CLI"),
    ("1950a258-227b-4e31-a9cf-717495945fc2", "Azure PowerShell"),
    ("872cd9fa-d31f-45e0-9eab-6e460a02d1f1", "Visual Studio"),
    ("aebc6443-996d-45c2-90f0-388ff96faa56", "Visual Studio Code"),
    ("c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Azure portal"),
];

/// The tool's name when `app_id` is one of [`PUBLIC_CLIENT_APP_IDS`].
pub fn public_client_name(app_id: &str) -> Option<&'static str> {
    PUBLIC_CLIENT_APP_IDS
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(app_id.trim()))
        .map(|(_, name)| *name)
}

const CLAIM_OBJECT_ID: &str = "http://schemas.microsoft.com/identity/claims/objectidentifier";
const CLAIM_UPN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn";

impl Caller {
    pub fn from_claims(claims: &Map<String, Value>) -> Caller {
        Caller {
            object_id: first_claim(claims, &[CLAIM_OBJECT_ID, "oid"]),
            app_id: first_claim(claims, &["appid", "azp"]),
            name: first_claim(claims, &["name"]),
            upn: first_claim(claims, &[CLAIM_UPN, "upn"]),
            ip_address: first_claim(claims, &["ipaddr"]),
        }
    }

    /// One line for alerts and logs: the most human identifier first, the object id for lookups.
    pub fn display(&self) -> String {
        let primary = self
            .upn
            .as_deref()
            .or(self.name.as_deref())
            .map(str::to_string)
            .or_else(|| self.app_id.as_deref().map(|a| format!("application {a}")));
        match (primary, self.object_id.as_deref()) {
            (Some(p), Some(oid)) => format!("{p} (object id {oid})"),
            (Some(p), None) => p,
            (None, Some(oid)) => format!("object id {oid}"),
            (None, None) => "unknown caller".to_string(),
        }
    }

    /// Whether any of the caller's ids (object id or application id) is one of `ids`
    /// (case-insensitive, since GUIDs arrive in either case).
    pub fn is_any_of(&self, ids: &[String]) -> bool {
        [self.object_id.as_deref(), self.app_id.as_deref()]
            .into_iter()
            .flatten()
            .any(|mine| ids.iter().any(|id| id.trim().eq_ignore_ascii_case(mine.trim())))
    }
}

fn first_claim(claims: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| non_empty_str(claims.get(*n)))
}

fn non_empty_str(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Why an event (or a delivery body) could not be used. Messages name fields, never dump payloads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("event is not a JSON object (found {found})")]
    NotAnObject { found: &'static str },
    #[error("delivery body is neither an event nor an array of events (found {found})")]
    NotADelivery { found: &'static str },
    #[error("event is a JSON string that does not contain valid JSON")]
    NotJson,
    #[error("event{} is missing required field {field}", fmt_event_id(event_id))]
    MissingField {
        event_id: Option<String>,
        field: &'static str,
    },
    #[error("event{} has an invalid {field}: expected {expected}", fmt_event_id(event_id))]
    InvalidField {
        event_id: Option<String>,
        field: &'static str,
        expected: &'static str,
    },
    #[error("event {event_id:?} names an invalid resource id: {reason}")]
    InvalidResourceUri { event_id: String, reason: String },
}

impl EventError {
    /// The event id, when the event got far enough to have one (for logs and dead-letter notes).
    pub fn event_id(&self) -> Option<&str> {
        match self {
            EventError::MissingField { event_id, .. } | EventError::InvalidField { event_id, .. } => {
                event_id.as_deref()
            }
            EventError::InvalidResourceUri { event_id, .. } => Some(event_id),
            _ => None,
        }
    }
}

fn fmt_event_id(id: &Option<String>) -> String {
    match id {
        Some(id) => format!(" {id:?}"),
        None => String::new(),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Unwrap "JSON text inside a JSON string" a bounded number of times. Returns the value itself
/// when it is not a string.
fn unwrap_json_strings(value: &Value) -> Result<std::borrow::Cow<'_, Value>, EventError> {
    let mut current = std::borrow::Cow::Borrowed(value);
    for _ in 0..MAX_STRING_NESTING {
        let Value::String(text) = current.as_ref() else {
            return Ok(current);
        };
        let parsed: Value = serde_json::from_str(text).map_err(|_| EventError::NotJson)?;
        current = std::borrow::Cow::Owned(parsed);
    }
    Ok(current)
}

/// A field that older payloads carry as a JSON string (`claims`, `authorization`, `httpRequest`):
/// accept an object, or a string containing an object.
fn object_field(data: &Map<String, Value>, name: &str) -> Option<Map<String, Value>> {
    match data.get(name)? {
        Value::Object(m) => Some(m.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

/// Parse one event (object, or an object encoded in a JSON string by the Functions host).
pub fn parse_event(value: &Value) -> Result<IncomingEvent, EventError> {
    let value = unwrap_json_strings(value)?;
    let Value::Object(obj) = value.as_ref() else {
        return Err(EventError::NotAnObject {
            found: json_kind(&value),
        });
    };

    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(EventError::MissingField {
                event_id: None,
                field: "id",
            });
        }
        Some(_) => {
            return Err(EventError::InvalidField {
                event_id: None,
                field: "id",
                expected: "a string",
            });
        }
    };
    // The id goes into every log line, audit record and alert about the event: a newline would
    // forge log lines, a bidi control would reorder what people read.
    if id.chars().any(|c| c.is_control() || is_invisible_formatting(c)) {
        return Err(EventError::InvalidField {
            event_id: None,
            field: "id",
            expected: "a string without control or invisible formatting characters",
        });
    }
    let eid = || Some(id.clone());

    let has_specversion = obj.contains_key("specversion") || obj.contains_key("specVersion");
    let (schema, type_field) = if obj.contains_key("eventType") {
        (Schema::EventGrid, "eventType")
    } else if has_specversion {
        let version = obj.get("specversion").or_else(|| obj.get("specVersion"));
        if version.and_then(Value::as_str) != Some(CLOUDEVENTS_SPEC_VERSION) {
            return Err(EventError::InvalidField {
                event_id: eid(),
                field: "specversion",
                expected: "\"1.0\" (CloudEvents 1.0)",
            });
        }
        (Schema::CloudEvents, "type")
    } else {
        return Err(EventError::MissingField {
            event_id: eid(),
            field: "eventType (Event Grid) or type + specversion (CloudEvents)",
        });
    };
    let event_type = match obj.get(type_field) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(EventError::MissingField {
                event_id: eid(),
                field: if schema == Schema::EventGrid {
                    "eventType"
                } else {
                    "type"
                },
            });
        }
        Some(_) => {
            return Err(EventError::InvalidField {
                event_id: eid(),
                field: if schema == Schema::EventGrid {
                    "eventType"
                } else {
                    "type"
                },
                expected: "a string",
            });
        }
    };

    let str_field = |name: &str| non_empty_str(obj.get(name));
    let subject = str_field("subject");
    let source_or_topic = match schema {
        Schema::EventGrid => str_field("topic"),
        Schema::CloudEvents => str_field("source"),
    };
    let time = match schema {
        Schema::EventGrid => str_field("eventTime"),
        Schema::CloudEvents => str_field("time"),
    };

    // `data` is an object, a JSON string holding one (CloudEvents producers), or absent.
    let data: Map<String, Value> = match obj.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(v) => match unwrap_json_strings(v) {
            Ok(d) => match d.into_owned() {
                Value::Object(m) => m,
                _ => {
                    return Err(EventError::InvalidField {
                        event_id: eid(),
                        field: "data",
                        expected: "an object",
                    });
                }
            },
            Err(_) => {
                return Err(EventError::InvalidField {
                    event_id: eid(),
                    field: "data",
                    expected: "an object or a JSON string holding one",
                });
            }
        },
    };

    let kind = classify(&id, &event_type, &data)?;
    Ok(IncomingEvent {
        id,
        schema,
        event_type,
        subject,
        source_or_topic,
        time,
        kind,
    })
}

fn classify(id: &str, event_type: &str, data: &Map<String, Value>) -> Result<EventKind, EventError> {
    let is = |t: &str| event_type.eq_ignore_ascii_case(t);
    let data_str = |name: &str| non_empty_str(data.get(name));

    if is(RESOURCE_WRITE_SUCCESS) {
        let resource_id = resource_id_field(id, data.get("resourceUri"), "data.resourceUri")?;
        let operation_name = data_str("operationName").ok_or_else(|| EventError::MissingField {
            event_id: Some(id.to_string()),
            field: "data.operationName",
        })?;
        let mut caller = object_field(data, "claims")
            .map(|c| Caller::from_claims(&c))
            .unwrap_or_default();
        if caller.ip_address.is_none() {
            caller.ip_address = object_field(data, "httpRequest").and_then(|h| non_empty_str(h.get("clientIpAddress")));
        }
        return Ok(EventKind::ResourceWrite(ArmOperation {
            resource_id,
            operation_name,
            status: data_str("status"),
            correlation_id: data_str("correlationId"),
            caller,
            tenant_id: data_str("tenantId"),
        }));
    }
    if event_type.len() > ARM_EVENT_PREFIX.len()
        && event_type
            .get(..ARM_EVENT_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(ARM_EVENT_PREFIX))
    {
        return Ok(EventKind::OtherArm {
            resource_uri: data_str("resourceUri"),
            operation_name: data_str("operationName"),
        });
    }
    if is(RESOURCE_NOTIFICATION_CREATED_OR_UPDATED) {
        let info = resource_info(id, data)?;
        let resource_id = resource_id_field(id, info.get("id"), "data.resourceInfo.id")?;
        return Ok(EventKind::ResourceNotification {
            resource_id,
            resource: Value::Object(info),
            api_version: data_str("apiVersion"),
        });
    }
    if is(RESOURCE_NOTIFICATION_DELETED) {
        let info = resource_info(id, data)?;
        let resource_id = resource_id_field(id, info.get("id"), "data.resourceInfo.id")?;
        return Ok(EventKind::ResourceNotificationDeleted { resource_id });
    }
    if is(SUBSCRIPTION_VALIDATION) {
        let validation_code = data_str("validationCode").ok_or_else(|| EventError::MissingField {
            event_id: Some(id.to_string()),
            field: "data.validationCode",
        })?;
        return Ok(EventKind::SubscriptionValidation {
            validation_code,
            validation_url: data_str("validationUrl"),
        });
    }
    Ok(EventKind::Unrecognised)
}

fn resource_info(id: &str, data: &Map<String, Value>) -> Result<Map<String, Value>, EventError> {
    match object_field(data, "resourceInfo") {
        Some(m) => Ok(m),
        None if data.contains_key("resourceInfo") => Err(EventError::InvalidField {
            event_id: Some(id.to_string()),
            field: "data.resourceInfo",
            expected: "an object",
        }),
        None => Err(EventError::MissingField {
            event_id: Some(id.to_string()),
            field: "data.resourceInfo",
        }),
    }
}

/// The pipeline must reject an event whose resource id is unusable before any network call, so
/// a missing id is reported the same way as a malformed one.
fn resource_id_field(id: &str, v: Option<&Value>, field: &str) -> Result<ResourceId, EventError> {
    match v {
        Some(Value::String(s)) => ResourceId::parse(s).map_err(|e| EventError::InvalidResourceUri {
            event_id: id.to_string(),
            reason: format!("{field}: {e}"),
        }),
        None | Some(Value::Null) => Err(EventError::InvalidResourceUri {
            event_id: id.to_string(),
            reason: format!("{field} is missing"),
        }),
        Some(other) => Err(EventError::InvalidResourceUri {
            event_id: id.to_string(),
            reason: format!("{field} is {}, not a string", json_kind(other)),
        }),
    }
}

/// A delivery body: an array of events, or a single event object (CloudEvents structured mode).
/// Per-event results so one bad event does not hide the others; `Err` only when the body itself
/// is not an event or an array.
pub fn parse_delivery(value: &Value) -> Result<Vec<Result<IncomingEvent, EventError>>, EventError> {
    let value = unwrap_json_strings(value)?;
    match value.as_ref() {
        Value::Array(items) => Ok(items.iter().map(parse_event).collect()),
        Value::Object(_) => Ok(vec![parse_event(&value)]),
        other => Err(EventError::NotADelivery {
            found: json_kind(other),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_event() -> Value {
        json!({
            "id": "e1",
            "eventType": "Microsoft.Resources.ResourceWriteSuccess",
            "subject": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1",
            "eventTime": "2026-01-01T00:00:00Z",
            "topic": "/subscriptions/s",
            "data": {
                "resourceUri": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1",
                "operationName": "Microsoft.Storage/storageAccounts/write",
                "status": "Succeeded",
                "correlationId": "c1",
                "tenantId": "t1",
                "claims": { "oid": "o1", "azp": "a1", "upn": "alice@example.com" },
                "httpRequest": { "clientIpAddress": "10.0.0.1" }
            }
        })
    }

    #[test]
    fn parses_a_write_event_with_short_claim_names() {
        let ev = parse_event(&write_event()).unwrap();
        assert_eq!(ev.schema, Schema::EventGrid);
        assert_eq!(ev.time.as_deref(), Some("2026-01-01T00:00:00Z"));
        let EventKind::ResourceWrite(op) = &ev.kind else {
            panic!("{:?}", ev.kind)
        };
        assert_eq!(op.operation_name, "Microsoft.Storage/storageAccounts/write");
        assert_eq!(op.correlation_id.as_deref(), Some("c1"));
        assert_eq!(op.tenant_id.as_deref(), Some("t1"));
        assert_eq!(
            op.caller,
            Caller {
                object_id: Some("o1".into()),
                app_id: Some("a1".into()),
                name: None,
                upn: Some("alice@example.com".into()),
                ip_address: Some("10.0.0.1".into()),
            }
        );
        assert_eq!(op.caller.display(), "alice@example.com (object id o1)");
        assert!(op.caller.is_any_of(&["A1".to_string()]));
        assert!(!op.caller.is_any_of(&["zzz".to_string()]));
        assert_eq!(ev.resource_id().map(|r| r.name()), Some("st1"));
    }

    #[test]
    fn accepts_claims_and_http_request_as_json_strings() {
        let mut v = write_event();
        v["data"]["claims"] = Value::String(
            json!({"http://schemas.microsoft.com/identity/claims/objectidentifier": "o2", "appid": "a2", "name": "Bob"}).to_string(),
        );
        v["data"]["httpRequest"] = Value::String(json!({"clientIpAddress": "192.0.2.1"}).to_string());
        v["data"]["authorization"] = Value::String(json!({"action": "x"}).to_string());
        let ev = parse_event(&v).unwrap();
        let EventKind::ResourceWrite(op) = ev.kind else {
            panic!()
        };
        assert_eq!(op.caller.object_id.as_deref(), Some("o2"));
        assert_eq!(op.caller.app_id.as_deref(), Some("a2"));
        assert_eq!(op.caller.ip_address.as_deref(), Some("192.0.2.1"));
        assert_eq!(op.caller.display(), "Bob (object id o2)");
    }

    #[test]
    fn unwraps_double_encoded_events_and_data() {
        let once = Value::String(write_event().to_string());
        let twice = Value::String(once.to_string());
        assert!(matches!(parse_event(&once).unwrap().kind, EventKind::ResourceWrite(_)));
        assert!(matches!(parse_event(&twice).unwrap().kind, EventKind::ResourceWrite(_)));
        let mut v = write_event();
        v["data"] = Value::String(v["data"].to_string());
        assert!(matches!(parse_event(&v).unwrap().kind, EventKind::ResourceWrite(_)));
        assert_eq!(parse_event(&json!("not json")), Err(EventError::NotJson));
        assert_eq!(
            parse_event(&json!("42")),
            Err(EventError::NotAnObject { found: "a number" })
        );
        let mut deep = write_event();
        for _ in 0..5 {
            deep = Value::String(deep.to_string());
        }
        assert!(parse_event(&deep).is_err(), "nesting is bounded");
    }

    #[test]
    fn rejects_missing_id_and_type() {
        let mut v = write_event();
        v.as_object_mut().unwrap().remove("id");
        assert_eq!(
            parse_event(&v),
            Err(EventError::MissingField {
                event_id: None,
                field: "id"
            })
        );
        let mut v = write_event();
        v.as_object_mut().unwrap().remove("eventType");
        let e = parse_event(&v).unwrap_err();
        assert!(matches!(e, EventError::MissingField { .. }));
        assert_eq!(e.event_id(), Some("e1"));
        let mut v = write_event();
        v["eventType"] = json!(7);
        assert!(matches!(
            parse_event(&v),
            Err(EventError::InvalidField { field: "eventType", .. })
        ));
        let mut v = write_event();
        v["id"] = json!("  ");
        assert!(matches!(
            parse_event(&v),
            Err(EventError::MissingField { field: "id", .. })
        ));
    }

    #[test]
    fn invalid_resource_uri_is_reported_without_the_payload() {
        for bad in [
            json!(
                "https://management.azure.com/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"
            ),
            json!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1/../../x/y"),
            json!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a%2Fb"),
            json!(null),
            json!(12),
        ] {
            let mut v = write_event();
            v["data"]["resourceUri"] = bad.clone();
            match parse_event(&v) {
                Err(EventError::InvalidResourceUri { event_id, reason }) => {
                    assert_eq!(event_id, "e1");
                    assert!(reason.starts_with("data.resourceUri"), "{reason}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let mut v = write_event();
        v["data"].as_object_mut().unwrap().remove("resourceUri");
        let e = parse_event(&v).unwrap_err();
        assert_eq!(
            e.to_string(),
            "event \"e1\" names an invalid resource id: data.resourceUri is missing"
        );
    }

    #[test]
    fn cloud_events_of_another_version_and_ids_with_hidden_characters_are_refused() {
        let cloud =
            |version: Value| json!({"id": "c1", "type": "Contoso.Thing", "specversion": version, "source": "/x"});
        assert!(parse_event(&cloud(json!("1.0"))).is_ok());
        for version in [json!("0.3"), json!("2.0"), json!(1.0), json!(" 1.0"), Value::Null] {
            assert_eq!(
                parse_event(&cloud(version.clone())),
                Err(EventError::InvalidField {
                    event_id: Some("c1".into()),
                    field: "specversion",
                    expected: "\"1.0\" (CloudEvents 1.0)"
                }),
                "{version}"
            );
        }
        for id in ["e1\nINFO forged", "e1\u{0}", "e1\u{202e}", "e1\u{200b}"] {
            let mut v = write_event();
            v["id"] = json!(id);
            let e = parse_event(&v).unwrap_err();
            assert!(
                matches!(
                    e,
                    EventError::InvalidField {
                        field: "id",
                        event_id: None,
                        ..
                    }
                ),
                "{id:?}: {e:?}"
            );
            assert!(!e.to_string().contains("forged"), "the id is not echoed: {e}");
        }
    }

    #[test]
    fn write_without_operation_name_is_an_error() {
        let mut v = write_event();
        v["data"].as_object_mut().unwrap().remove("operationName");
        assert_eq!(
            parse_event(&v),
            Err(EventError::MissingField {
                event_id: Some("e1".into()),
                field: "data.operationName"
            })
        );
    }

    #[test]
    fn unknown_types_are_acknowledged_not_rejected() {
        let ev = parse_event(&json!({"id": "x", "eventType": "Contoso.Thing", "data": 5})).unwrap_err();
        assert!(matches!(ev, EventError::InvalidField { field: "data", .. }));
        let ev = parse_event(&json!({"id": "x", "eventType": "Contoso.Thing"})).unwrap();
        assert_eq!(ev.kind, EventKind::Unrecognised);
        let ev =
            parse_event(&json!({"id": "x", "type": "Contoso.Thing", "specversion": "1.0", "source": "/x"})).unwrap();
        assert_eq!(ev.schema, Schema::CloudEvents);
        assert_eq!(ev.source_or_topic.as_deref(), Some("/x"));
        assert_eq!(ev.kind, EventKind::Unrecognised);
    }

    #[test]
    fn delivery_keeps_per_event_results() {
        let body = json!([write_event(), {"id": "bad"}, {"id": "v", "eventType": SUBSCRIPTION_VALIDATION, "data": {"validationCode": "c"}}]);
        let results = parse_delivery(&body).unwrap();
        assert_eq!(results.len(), 3);
        assert!(results[0].is_ok());
        assert!(results[1].is_err());
        assert!(matches!(
            results[2].as_ref().unwrap().kind,
            EventKind::SubscriptionValidation { ref validation_code, validation_url: None } if validation_code == "c"
        ));
        assert_eq!(
            parse_delivery(&json!(3)),
            Err(EventError::NotADelivery { found: "a number" })
        );
        assert_eq!(parse_delivery(&json!([])).unwrap().len(), 0);
        assert_eq!(parse_delivery(&write_event()).unwrap().len(), 1);
    }

    #[test]
    fn caller_display_fallbacks() {
        assert_eq!(Caller::default().display(), "unknown caller");
        let c = Caller {
            app_id: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(c.display(), "application a");
        let c = Caller {
            object_id: Some("o".into()),
            ..Default::default()
        };
        assert_eq!(c.display(), "object id o");
    }

    #[test]
    fn serializes_for_the_audit_log() {
        let ev = parse_event(&write_event()).unwrap();
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["schema"], "eventGrid");
        assert_eq!(v["kind"]["kind"], "resourceWrite");
        assert_eq!(
            v["kind"]["resourceId"],
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1"
        );
        assert_eq!(v["kind"]["caller"]["objectId"], "o1");
    }
}
