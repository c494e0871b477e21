//! The request schemas of the writes keyguard makes, from Microsoft's REST API specs.
//!
//! The definitions are vendored verbatim under `tests/fixtures/schemas/` (sources, commits and
//! the MIT licence in its README). They are Swagger 2.0 schemas; [`compile`] turns one into a
//! JSON Schema (draft 4, which Swagger 2.0 extends) with ARM's `x-nullable` semantics: `null`
//! is refused wherever the spec does not say `"x-nullable": true`, so a body ARM would reject
//! for a null is rejected here too. A `$ref` to a definition that was not vendored (a property
//! keyguard never writes, such as `sku`) accepts any non-null value.
//!
//! The stand-in validates incoming PATCH/PUT bodies of these types and answers 400
//! `InvalidRequestContent` as ARM does; keyguard's tests validate every body it can produce.

use serde_json::{Map, Value, json};

/// One write's request schema: the operation's body parameter at a pinned api-version.
#[derive(Debug)]
pub struct WriteSchema {
    /// Full ARM type the write addresses (`…/encryptionProtector` for a child PUT).
    pub full_type: &'static str,
    pub method: &'static str,
    pub api_version: &'static str,
    /// The body parameter's definition, e.g. `ConfigurationStoreUpdateParameters`.
    pub root: &'static str,
    /// The vendored definitions (verbatim subset of the spec file).
    definitions: &'static str,
    /// The spec file they come from, for messages.
    pub source: &'static str,
    /// Corrections where the spec contradicts its own description and the service: a JSON
    /// pointer into the vendored document and the schema that replaces what it points at.
    /// Applied at compile time, so the vendored file stays verbatim. Each says why.
    pub errata: &'static [Erratum],
}

/// One correction to a vendored spec (see [`WriteSchema::errata`]).
#[derive(Debug)]
pub struct Erratum {
    pub pointer: &'static str,
    pub replacement: &'static str,
    pub why: &'static str,
}

macro_rules! vendored {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/schemas/",
            $path
        ))
    };
}

/// Every vendored write schema.
pub static SCHEMAS: &[WriteSchema] = &[
    WriteSchema {
        full_type: "Microsoft.AppConfiguration/configurationStores",
        method: "PATCH",
        api_version: "2024-06-01",
        root: "ConfigurationStoreUpdateParameters",
        definitions: vendored!("appconfiguration/2024-06-01.definitions.json"),
        source: "specification/appconfiguration/resource-manager/Microsoft.AppConfiguration/stable/2024-06-01/appconfiguration.json",
        errata: &[],
    },
    WriteSchema {
        full_type: "Microsoft.Automation/automationAccounts",
        method: "PATCH",
        api_version: "2024-10-23",
        root: "AutomationAccountUpdateParameters",
        definitions: vendored!("automation/2024-10-23.definitions.json"),
        source: "specification/automation/resource-manager/Microsoft.Automation/stable/2024-10-23/account.json",
        errata: &[Erratum {
            pointer: "/definitions/EncryptionProperties/properties/identity/properties/userAssignedIdentity",
            replacement: r#"{"type": "string"}"#,
            why: "typed object, but described as \"an ARM resource id in the form '/subscriptions/…'\"; \
                  New-AzAutomationAccount -UserIdentityEncryption takes that id as a string",
        }],
    },
];

/// The schema for a write, if one is vendored (type compared case-insensitively).
pub fn lookup(full_type: &str, method: &str, api_version: &str) -> Option<&'static WriteSchema> {
    SCHEMAS.iter().find(|s| {
        s.full_type.eq_ignore_ascii_case(full_type)
            && s.method.eq_ignore_ascii_case(method)
            && s.api_version.eq_ignore_ascii_case(api_version)
    })
}

impl WriteSchema {
    /// Every way `body` breaks the schema, as `path: message` lines; empty when it conforms.
    pub fn violations(&self, body: &Value) -> Vec<String> {
        match compile(self) {
            Ok(validator) => validator
                .iter_errors(body)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect(),
            Err(problem) => vec![problem],
        }
    }
}

/// The JSON Schema validator for a write, built from its vendored Swagger definitions.
pub fn compile(schema: &WriteSchema) -> Result<jsonschema::Validator, String> {
    let mut vendored: Value = serde_json::from_str(schema.definitions)
        .map_err(|e| format!("{}: the vendored definitions are not JSON: {e}", schema.source))?;
    for erratum in schema.errata {
        let replacement: Value = serde_json::from_str(erratum.replacement)
            .map_err(|e| format!("{}: erratum {} is not JSON: {e}", schema.source, erratum.pointer))?;
        let slot = vendored
            .pointer_mut(erratum.pointer)
            .ok_or_else(|| format!("{}: erratum {} points at nothing", schema.source, erratum.pointer))?;
        *slot = replacement;
    }
    let definitions = vendored
        .get("definitions")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{}: no definitions", schema.source))?;
    if !definitions.contains_key(schema.root) {
        return Err(format!("{}: {} is not vendored", schema.source, schema.root));
    }
    let converted: Map<String, Value> = definitions
        .iter()
        .map(|(name, def)| (name.clone(), convert(def, definitions)))
        .collect();
    let root = json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "definitions": converted,
        "allOf": [{"$ref": format!("#/definitions/{}", schema.root)}],
        "not": {"type": "null"},
    });
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&root)
        .map_err(|e| format!("{}: does not compile: {e}", schema.source))
}

/// A Swagger schema node as JSON Schema: vendor keys and formats dropped, refs to definitions
/// that were not vendored opened up, and every member's nullability made explicit.
fn convert(node: &Value, definitions: &Map<String, Value>) -> Value {
    let Value::Object(obj) = node else {
        return node.clone();
    };
    if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
        let local = reference.strip_prefix("#/definitions/");
        return match local {
            Some(name) if definitions.contains_key(name) => json!({"$ref": reference}),
            _ => json!({}),
        };
    }
    let mut out = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            k if k.starts_with("x-") => {}
            "format" | "readOnly" | "discriminator" | "example" => {}
            "properties" => {
                let members = value
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(name, member)| (name.clone(), nullable(member, definitions)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(members));
            }
            "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), nullable(value, definitions));
            }
            "items" => {
                out.insert(key.clone(), nullable(value, definitions));
            }
            "allOf" => {
                let parts = value
                    .as_array()
                    .map(|a| a.iter().map(|p| convert(p, definitions)).collect::<Vec<_>>())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(parts));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// A member schema with ARM's null rule: `null` only where the spec says `x-nullable: true`.
fn nullable(member: &Value, definitions: &Map<String, Value>) -> Value {
    let converted = convert(member, definitions);
    if member.get("x-nullable").and_then(Value::as_bool) == Some(true) {
        json!({"anyOf": [{"type": "null"}, converted]})
    } else {
        json!({"allOf": [converted], "not": {"type": "null"}})
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn appconfig() -> &'static WriteSchema {
        lookup("microsoft.appconfiguration/CONFIGURATIONSTORES", "patch", "2024-06-01").unwrap()
    }

    #[test]
    fn every_vendored_schema_compiles() {
        for s in SCHEMAS {
            compile(s).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn null_is_refused_unless_the_spec_allows_it() {
        let s = appconfig();
        let with_null = json!({"properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": null}}}});
        let problems = s.violations(&with_null);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("/properties/encryption/keyVaultProperties/keyIdentifier")),
            "{problems:?}"
        );
        assert!(
            s.violations(&json!({"properties": {"encryption": {"keyVaultProperties": {}}}}))
                .is_empty()
        );
        // Wrong types and values outside an enum are refused too; unknown members pass (Swagger).
        assert!(
            !s.violations(&json!({"properties": {"publicNetworkAccess": "Sometimes"}}))
                .is_empty()
        );
        assert!(!s.violations(&json!({"properties": {"encryption": "on"}})).is_empty());
        assert!(s.violations(&json!({"properties": {"somethingNew": 1}})).is_empty());
        assert!(!s.violations(&Value::Null).is_empty());
    }

    #[test]
    fn a_nullable_member_accepts_null() {
        let defs = json!({"A": {"type": "object", "properties": {
            "n": {"type": "string", "x-nullable": true}, "s": {"type": "string"}}}});
        let defs = defs.as_object().unwrap();
        let a = convert(&defs["A"], defs);
        let validator = jsonschema::draft4::new(&json!({"definitions": {"A": a}, "$ref": "#/definitions/A"})).unwrap();
        assert!(validator.is_valid(&json!({"n": null})));
        assert!(!validator.is_valid(&json!({"s": null})));
    }
}
