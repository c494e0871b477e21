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

use std::sync::OnceLock;

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
    /// The vendored definitions (verbatim subsets of spec files): the file holding `root`
    /// first, then the files its cross-file `$ref`s name (disks: `./diskRPCommon.json#/…`).
    files: &'static [Vendored],
    /// The spec file the root comes from, for messages.
    pub source: &'static str,
    /// Corrections where the spec contradicts its own description and the service: a JSON
    /// pointer into the merged vendored definitions and the schema that replaces what it
    /// points at. Applied at compile time, so the vendored files stay verbatim. Each says why.
    pub errata: &'static [Erratum],
}

/// One vendored file: its name as the spec's `$ref`s spell it, and its text.
#[derive(Debug)]
struct Vendored {
    file: &'static str,
    text: &'static str,
}

/// One correction to a vendored spec (see [`WriteSchema::errata`]).
#[derive(Debug)]
pub struct Erratum {
    pub pointer: &'static str,
    pub replacement: &'static str,
    pub why: &'static str,
}

macro_rules! vendored {
    ($file:literal, $path:literal) => {
        Vendored {
            file: $file,
            text: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/fixtures/schemas/",
                $path
            )),
        }
    };
}

/// A spec file's path in `Azure/azure-rest-api-specs`.
macro_rules! spec {
    ($path:literal) => {
        concat!("specification/", $path)
    };
}

/// A write's schema without errata.
const fn schema(
    full_type: &'static str,
    method: &'static str,
    api_version: &'static str,
    root: &'static str,
    files: &'static [Vendored],
    source: &'static str,
) -> WriteSchema {
    WriteSchema {
        full_type,
        method,
        api_version,
        root,
        files,
        source,
        errata: &[],
    }
}

/// Every vendored write schema: every write `CatalogEntry::revert_writes` can produce.
pub static SCHEMAS: &[WriteSchema] = &[
    WriteSchema {
        full_type: "Microsoft.AppConfiguration/configurationStores",
        method: "PATCH",
        api_version: "2024-06-01",
        root: "ConfigurationStoreUpdateParameters",
        files: &[vendored!(
            "appconfiguration.json",
            "appconfiguration/2024-06-01.definitions.json"
        )],
        source: spec!(
            "appconfiguration/resource-manager/Microsoft.AppConfiguration/stable/2024-06-01/appconfiguration.json"
        ),
        errata: &[],
    },
    WriteSchema {
        full_type: "Microsoft.Automation/automationAccounts",
        method: "PATCH",
        api_version: "2024-10-23",
        root: "AutomationAccountUpdateParameters",
        files: &[vendored!("account.json", "automation/2024-10-23.definitions.json")],
        source: spec!("automation/resource-manager/Microsoft.Automation/stable/2024-10-23/account.json"),
        errata: &[Erratum {
            pointer: "/definitions/EncryptionProperties/properties/identity/properties/userAssignedIdentity",
            replacement: r#"{"type": "string"}"#,
            why: "typed object, but described as \"an ARM resource id in the form '/subscriptions/…'\"; \
                  New-AzAutomationAccount -UserIdentityEncryption takes that id as a string",
        }],
    },
    schema(
        "Microsoft.Storage/storageAccounts",
        "PATCH",
        "2025-01-01",
        "StorageAccountUpdateParameters",
        &[vendored!("storage.json", "storage/2025-01-01.definitions.json")],
        spec!("storage/resource-manager/Microsoft.Storage/stable/2025-01-01/storage.json"),
    ),
    schema(
        "Microsoft.Sql/servers/keys",
        "PUT",
        "2025-01-01",
        "ServerKey",
        &[vendored!(
            "ServerKeys.json",
            "sql/2025-01-01.ServerKeys.definitions.json"
        )],
        spec!("sql/resource-manager/Microsoft.Sql/stable/2025-01-01/ServerKeys.json"),
    ),
    schema(
        "Microsoft.Sql/servers/encryptionProtector",
        "PUT",
        "2025-01-01",
        "EncryptionProtector",
        &[vendored!(
            "EncryptionProtectors.json",
            "sql/2025-01-01.EncryptionProtectors.definitions.json"
        )],
        spec!("sql/resource-manager/Microsoft.Sql/stable/2025-01-01/EncryptionProtectors.json"),
    ),
    schema(
        "Microsoft.Sql/servers/databases/transparentDataEncryption",
        "PUT",
        "2025-01-01",
        "LogicalDatabaseTransparentDataEncryption",
        &[vendored!(
            "TransparentDataEncryptions.json",
            "sql/2025-01-01.TransparentDataEncryptions.definitions.json"
        )],
        spec!("sql/resource-manager/Microsoft.Sql/stable/2025-01-01/TransparentDataEncryptions.json"),
    ),
    schema(
        "Microsoft.Sql/managedInstances/keys",
        "PUT",
        "2023-08-01",
        "ManagedInstanceKey",
        &[vendored!(
            "ManagedInstanceKeys.json",
            "sql/2023-08-01.ManagedInstanceKeys.definitions.json"
        )],
        spec!("sql/resource-manager/Microsoft.Sql/stable/2023-08-01/ManagedInstanceKeys.json"),
    ),
    schema(
        "Microsoft.Sql/managedInstances/encryptionProtector",
        "PUT",
        "2023-08-01",
        "ManagedInstanceEncryptionProtector",
        &[vendored!(
            "ManagedInstanceEncryptionProtectors.json",
            "sql/2023-08-01.ManagedInstanceEncryptionProtectors.definitions.json"
        )],
        spec!("sql/resource-manager/Microsoft.Sql/stable/2023-08-01/ManagedInstanceEncryptionProtectors.json"),
    ),
    schema(
        "Microsoft.Compute/disks",
        "PATCH",
        "2025-01-02",
        "DiskUpdate",
        &[
            vendored!("disk.json", "compute/2025-01-02.disk.definitions.json"),
            vendored!("diskRPCommon.json", "compute/2025-01-02.diskRPCommon.definitions.json"),
        ],
        spec!("compute/resource-manager/Microsoft.Compute/DiskRP/stable/2025-01-02/disk.json"),
    ),
    schema(
        "Microsoft.DBforMySQL/flexibleServers",
        "PATCH",
        "2023-12-30",
        "ServerForUpdate",
        &[vendored!("FlexibleServers.json", "mysql/2023-12-30.definitions.json")],
        spec!("mysql/resource-manager/Microsoft.DBforMySQL/FlexibleServers/stable/2023-12-30/FlexibleServers.json"),
    ),
    schema(
        "Microsoft.CognitiveServices/accounts",
        "PATCH",
        "2024-10-01",
        "Account",
        &[vendored!(
            "cognitiveservices.json",
            "cognitiveservices/2024-10-01.definitions.json"
        )],
        spec!(
            "cognitiveservices/resource-manager/Microsoft.CognitiveServices/stable/2024-10-01/cognitiveservices.json"
        ),
    ),
    schema(
        "Microsoft.Batch/batchAccounts",
        "PATCH",
        "2024-07-01",
        "BatchAccountUpdateParameters",
        &[vendored!("BatchManagement.json", "batch/2024-07-01.definitions.json")],
        spec!("batch/resource-manager/Microsoft.Batch/stable/2024-07-01/BatchManagement.json"),
    ),
    schema(
        "Microsoft.Kusto/clusters",
        "PATCH",
        "2024-04-13",
        "ClusterUpdate",
        &[vendored!("kusto.json", "kusto/2024-04-13.definitions.json")],
        spec!("azure-kusto/resource-manager/Microsoft.Kusto/stable/2024-04-13/kusto.json"),
    ),
    schema(
        "Microsoft.Search/searchServices",
        "PATCH",
        "2025-05-01",
        "SearchServiceUpdate",
        &[vendored!("search.json", "search/2025-05-01.definitions.json")],
        spec!("search/resource-manager/Microsoft.Search/stable/2025-05-01/search.json"),
    ),
    schema(
        "Microsoft.ElasticSan/elasticSans/volumeGroups",
        "PATCH",
        "2025-09-01",
        "VolumeGroupUpdate",
        &[vendored!("elasticsan.json", "elasticsan/2025-09-01.definitions.json")],
        spec!("elasticsan/resource-manager/Microsoft.ElasticSan/ElasticSan/stable/2025-09-01/elasticsan.json"),
    ),
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
        let report = |validator: &jsonschema::Validator| {
            validator
                .iter_errors(body)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect()
        };
        match self.compiled() {
            Some(Ok(validator)) => report(validator),
            Some(Err(problem)) => vec![problem.clone()],
            None => compile(self).map_or_else(|problem| vec![problem], |validator| report(&validator)),
        }
    }

    /// The validator of a schema in [`SCHEMAS`], compiled once: the stand-in checks every write.
    fn compiled(&self) -> Option<&'static Result<jsonschema::Validator, String>> {
        static COMPILED: OnceLock<Vec<Result<jsonschema::Validator, String>>> = OnceLock::new();
        let index = SCHEMAS.iter().position(|s| std::ptr::eq(s, self))?;
        COMPILED
            .get_or_init(|| SCHEMAS.iter().map(compile).collect())
            .get(index)
    }
}

/// The write's body checked against its vendored schema, as ARM checks a request before the
/// service sees it: `Err` carries the message of a 400 `InvalidRequestContent`. Writes without
/// a vendored schema pass.
pub fn check(full_type: &str, method: &str, api_version: &str, body: &Value) -> Result<(), String> {
    let Some(schema) = lookup(full_type, method, api_version) else {
        return Ok(());
    };
    let problems = schema.violations(body);
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "The request content was invalid and could not be deserialized: {}",
        problems.join("; ")
    ))
}

/// The JSON Schema validator for a write, built from its vendored Swagger definitions.
pub fn compile(schema: &WriteSchema) -> Result<jsonschema::Validator, String> {
    let mut merged = Map::new();
    for vendored in schema.files {
        let document: Value = serde_json::from_str(vendored.text)
            .map_err(|e| format!("{}: the vendored {} is not JSON: {e}", schema.source, vendored.file))?;
        let Some(Value::Object(definitions)) = document.get("definitions") else {
            return Err(format!("{}: {} has no definitions", schema.source, vendored.file));
        };
        for (name, definition) in definitions {
            // One namespace for all files: a name defined twice would make a ref ambiguous.
            if merged.insert(name.clone(), definition.clone()).is_some() {
                return Err(format!("{}: {name} is defined in two vendored files", schema.source));
            }
        }
    }
    let mut vendored = json!({"definitions": merged});
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
    let refs = Refs {
        definitions,
        files: schema.files,
    };
    let converted: Map<String, Value> = definitions
        .iter()
        .map(|(name, def)| (name.clone(), convert(def, &refs)))
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

/// What a `$ref` may point at: the merged definitions of the vendored files.
struct Refs<'a> {
    definitions: &'a Map<String, Value>,
    files: &'a [Vendored],
}

impl Refs<'_> {
    /// The local name a `$ref` resolves to: `#/definitions/X`, or `./file.json#/definitions/X`
    /// for a vendored file; `None` for anything not vendored (common types, left-out
    /// definitions), which then accepts any value but `null`.
    fn resolve<'r>(&self, reference: &'r str) -> Option<&'r str> {
        let (file, pointer) = reference.split_once('#')?;
        let name = pointer.strip_prefix("/definitions/")?;
        let file_name = file.rsplit('/').next().unwrap_or(file);
        let in_vendored_file = file.is_empty() || self.files.iter().any(|v| v.file.eq_ignore_ascii_case(file_name));
        (in_vendored_file && self.definitions.contains_key(name)).then_some(name)
    }
}

/// A Swagger schema node as JSON Schema: vendor keys and formats dropped, refs to definitions
/// that were not vendored opened up, and every member's nullability made explicit.
fn convert(node: &Value, refs: &Refs<'_>) -> Value {
    let Value::Object(obj) = node else {
        return node.clone();
    };
    if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
        return match refs.resolve(reference) {
            Some(name) => json!({"$ref": format!("#/definitions/{name}")}),
            None => json!({}),
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
                            .map(|(name, member)| (name.clone(), nullable(member, refs)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(members));
            }
            "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), nullable(value, refs));
            }
            "items" => {
                out.insert(key.clone(), nullable(value, refs));
            }
            "allOf" => {
                let parts = value
                    .as_array()
                    .map(|a| a.iter().map(|p| convert(p, refs)).collect::<Vec<_>>())
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
fn nullable(member: &Value, refs: &Refs<'_>) -> Value {
    let converted = convert(member, refs);
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
        let a = convert(
            &defs["A"],
            &Refs {
                definitions: defs,
                files: &[],
            },
        );
        let validator = jsonschema::draft4::new(&json!({"definitions": {"A": a}, "$ref": "#/definitions/A"})).unwrap();
        assert!(validator.is_valid(&json!({"n": null})));
        assert!(!validator.is_valid(&json!({"s": null})));
    }

    #[test]
    fn refs_into_another_vendored_file_are_followed_and_others_opened_up() {
        // Disks: DiskUpdateProperties (disk.json) names Encryption in diskRPCommon.json.
        let disks = lookup("Microsoft.Compute/disks", "PATCH", "2025-01-02").unwrap();
        assert!(
            !disks
                .violations(&json!({"properties": {"encryption": {"type": "EncryptionAtRestWithNoKey"}}}))
                .is_empty()
        );
        assert!(
            !disks
                .violations(&json!({"properties": {"encryption": {"diskEncryptionSetId": null}}}))
                .is_empty()
        );
        assert!(
            disks
                .violations(&json!({"properties": {"encryption": {"type": "EncryptionAtRestWithPlatformKey"}}}))
                .is_empty()
        );
        // networkAccessPolicy refers to diskRPCommon.json too, but that definition is not
        // vendored: any non-null value passes, null does not.
        assert!(
            disks
                .violations(&json!({"properties": {"networkAccessPolicy": "AnyPolicy"}}))
                .is_empty()
        );
        assert!(
            !disks
                .violations(&json!({"properties": {"networkAccessPolicy": null}}))
                .is_empty()
        );
    }

    #[test]
    fn check_answers_like_arm_and_passes_writes_without_a_schema() {
        let refused = check(
            "Microsoft.Storage/storageAccounts",
            "PATCH",
            "2025-01-01",
            &json!({"properties": {"encryption": {"keySource": null}}}),
        );
        assert!(refused.is_err_and(|m| m.contains("/properties/encryption/keySource")));
        assert_eq!(
            check("Microsoft.Example/things", "PATCH", "2020-01-01", &Value::Null),
            Ok(())
        );
    }
}
