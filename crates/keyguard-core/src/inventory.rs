//! Offline inventory: Azure CLI exports turned into the resource views keyguard evaluates, so
//! `keyguard scan --from-file` can audit a tenant with no credentials and no network.
//!
//! Accepted shapes, told apart by the JSON itself (see `testdata/az-export/README.md` for the
//! documents each sample is modelled on):
//!
//! * `az graph query -o json` from resource-graph 2.x: `{"count", "data": [rows], "skip_token",
//!   "total_records"}`; 1.x printed the bare array of rows. Rows are the ARM body plus
//!   `subscriptionId`/`resourceGroup`/`tenantId`, with a lower-case `type`. A Resource Graph REST
//!   response saved as is (`data` in the `table` result format) and an ARM list response
//!   (`{"value": [...]}`, e.g. from `az rest`) are read too.
//! * Resource-specific commands (`az storage account list/show`, `az disk list`, `az sql server
//!   list`, `az sql db list`, `az sql server tde-key show`, `az sql mi tde-key show`, `az sql db
//!   tde show`): the CLI prints the SDK model with `properties` flattened into the top level and
//!   keys in camelCase of the Python attribute names (`keyVaultProperties.keyVaultUri` where ARM
//!   says `keyvaultproperties.keyvaulturi`). These are folded back into ARM shape, the shape the
//!   catalog's field paths describe. Other types are accepted only when already in ARM shape
//!   (`az resource show`, Resource Graph); the rest are reported, never dropped silently.
//! * Any of these in one JSON array, nested wrappers included, and several JSON values one after
//!   the other: JSON Lines, or the output of a shell loop appended to one file.
//!
//! Child resources holding a key setting (SQL `encryptionProtector/current`, database
//! `transparentDataEncryption/current`) attach to their parent. When the export has the child
//! but not the parent (the user ran only `az sql server tde-key show`), the parent's document is
//! synthesized from the id (`id`, `name`, `type`): the verdict needs only the child, but tags
//! are then unknown, which [`Inventory::gaps`] says. A real body found later (same file or
//! another one given to [`merge`]) replaces the synthesized one.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::catalog::{self, EncryptionState, ResourceView};
use crate::resource_id::ResourceId;

/// One resource to evaluate: its ARM-shaped body and the child bodies its catalog entry reads.
#[derive(Clone, Debug, PartialEq)]
pub struct InventoryItem {
    pub id: ResourceId,
    pub document: Value,
    /// Relative child path, lower-case (`encryptionprotector/current`) -> its ARM-shaped body.
    pub children: BTreeMap<String, Value>,
}

impl InventoryItem {
    /// The view `evaluate_view` takes.
    pub fn view(&self) -> ResourceView<'_> {
        ResourceView {
            resource: &self.document,
            children: self.children.clone(),
        }
    }
}

/// The resources read from one or more exports, and every row that was not used, with why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    pub items: Vec<InventoryItem>,
    /// Rows skipped and why, and rows that disagreed with another copy of the same resource.
    pub warnings: Vec<String>,
}

impl Inventory {
    /// What the export lacks for a full verdict: a child resource the catalog reads for the key
    /// source (the verdict will be "key source unknown"), or a parent known only from its child
    /// (tags, hence tag-scoped profiles and exemption tags, are not seen). Computed over the whole
    /// inventory, so call it after [`merge`]: a child in another file is not a gap.
    pub fn gaps(&self) -> Vec<String> {
        let mut gaps = Vec::new();
        for item in &self.items {
            let Some(entry) = catalog::lookup(&item.id.resource_type()) else {
                continue;
            };
            if entry.never_drifts(item.id.name()) {
                continue;
            }
            for child in entry.children {
                if !item.children.contains_key(&child.path.to_ascii_lowercase()) {
                    gaps.push(format!(
                        "{}: the export has no {} (where its key source lives), so its verdict will be \"key source unknown\"; add the output of `{}`",
                        item.id,
                        child.path,
                        export_command_for(&item.id, child.path)
                    ));
                }
            }
            if entry.key_source.child.is_some() && is_synthesized(&item.document) {
                gaps.push(format!(
                    "{}: only its child resources are in the export, so its tags are unknown (profiles scoped by tag and exemption tags do not apply); add the output of `{}`",
                    item.id,
                    list_command_for(&item.id)
                ));
            }
        }
        gaps
    }
}

/// Why an export file cannot be read at all. Problems with single rows are warnings instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    #[error("{source_name}: the file is empty; expected the JSON output of an `az` command")]
    Empty { source_name: String },
    #[error(
        "{source_name}:{line}:{column}: not valid JSON ({message}); expected the output of an `az` command run with `-o json`"
    )]
    NotJson {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{source_name}:{line}:{column}: not UTF-8 text; save the export as UTF-8 (or UTF-16 with a byte order mark)"
    )]
    NotText {
        source_name: String,
        line: usize,
        column: usize,
    },
    #[error("{source_name}: found {found}; expected {EXPECTED_SHAPE}")]
    UnknownShape { source_name: String, found: String },
    #[error("{source_name}: the file holds an Azure error response ({code}: {message}), not an export")]
    AzureError {
        source_name: String,
        code: String,
        message: String,
    },
}

const EXPECTED_SHAPE: &str = "`az graph query` output (an object with a `data` array, or an array of rows), \
     the output of an `az ... list` (an array of resources) or `az ... show` (one resource with an `id`), \
     or several of these one after another";

/// Read one export file. `source_name` prefixes errors and warnings (the file path).
pub fn parse_export(text: &str, source_name: &str) -> Result<Inventory, InventoryError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(InventoryError::Empty {
            source_name: source_name.to_string(),
        });
    }
    let mut values = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(value)) => values.push((start, value)),
            Some(Err(e)) => {
                let message = e.to_string();
                let message = match message.rsplit_once(" at line ") {
                    Some((head, _)) => head.to_string(),
                    None => message,
                };
                return Err(InventoryError::NotJson {
                    source_name: source_name.to_string(),
                    line: e.line(),
                    column: e.column(),
                    message,
                });
            }
        }
    }

    let mut reader = Reader {
        source_name,
        assembly: Assembly::default(),
    };
    let several = values.len() > 1;
    for (offset, value) in values {
        let location = if several {
            format!("line {}", line_of_value(text, offset))
        } else {
            String::new()
        };
        reader.top_level(value, &location)?;
    }
    let mut inventory = reader.assembly.finish();
    if inventory.items.is_empty() && inventory.warnings.is_empty() {
        inventory
            .warnings
            .push(format!("{source_name}: no resources in the export"));
    }
    Ok(inventory)
}

/// Read one export file from its bytes: UTF-8 with or without a byte order mark, or UTF-16 with
/// one, which is what Windows PowerShell 5.1's `>` writes.
pub fn parse_export_bytes(bytes: &[u8], source_name: &str) -> Result<Inventory, InventoryError> {
    let utf16 = |bytes: &[u8], from: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = bytes.chunks(2).map(|c| from([c[0], *c.get(1).unwrap_or(&0)])).collect();
        String::from_utf16_lossy(&units)
    };
    let text = match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_string(),
            Err(e) => {
                let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
                let line = valid.matches('\n').count() + 1;
                let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                return Err(InventoryError::NotText {
                    source_name: source_name.to_string(),
                    line,
                    column,
                });
            }
        },
    };
    parse_export(&text, source_name)
}

/// Combine the inventories of several files: the same resource from two files becomes one item
/// (a real body wins over one synthesized from a child's id; otherwise the first is kept, with a
/// warning when the two disagree about the key source), and child rows attach to their parent
/// whichever file each came from.
pub fn merge(parts: Vec<Inventory>) -> Inventory {
    let mut assembly = Assembly::default();
    for part in parts {
        assembly.warnings.extend(part.warnings);
        for item in part.items {
            let id = item.id.clone();
            assembly.add_resource(item.id, item.document, "");
            for (path, body) in item.children {
                assembly.add_child(&id, &path, body, "");
            }
        }
    }
    assembly.finish()
}

/// The Resource Graph query that exports every catalog type, for the README and `--help`.
pub fn resource_graph_query() -> String {
    let types: Vec<String> = catalog::entries()
        .iter()
        .map(|e| format!("'{}'", e.resource_type.to_ascii_lowercase()))
        .collect();
    format!("resources | where type in~ ({}) | order by id asc", types.join(", "))
}

// ------------------------------------------------------------------------------------------
// Reading

struct Reader<'a> {
    source_name: &'a str,
    assembly: Assembly,
}

impl Reader<'_> {
    fn top_level(&mut self, value: Value, location: &str) -> Result<(), InventoryError> {
        let unknown = |found: String| InventoryError::UnknownShape {
            source_name: self.source_name.to_string(),
            found,
        };
        match value {
            Value::Array(rows) => {
                if !rows.is_empty() && !rows.iter().any(|r| r.is_object() || r.is_array()) {
                    let kinds = rows.first().map_or("value", kind_of);
                    return Err(unknown(format!("an array of {kinds}s")));
                }
                self.rows(rows, location);
                Ok(())
            }
            Value::Object(object) => match classify(&object) {
                Shape::Row => {
                    self.row(object, location);
                    Ok(())
                }
                Shape::Container(key) => {
                    self.container(object, key, location);
                    Ok(())
                }
                Shape::AzureError { code, message } => Err(InventoryError::AzureError {
                    source_name: self.source_name.to_string(),
                    code,
                    message,
                }),
                Shape::Unknown => Err(unknown(describe_object(&object))),
            },
            other => Err(unknown(format!("a {}", kind_of(&other)))),
        }
    }

    fn rows(&mut self, rows: Vec<Value>, location: &str) {
        for (index, row) in rows.into_iter().enumerate() {
            let here = format!("{location}[{index}]");
            match row {
                Value::Object(object) => match classify(&object) {
                    Shape::Row => self.row(object, &here),
                    Shape::Container(key) => self.container(object, key, &here),
                    Shape::AzureError { code, message } => self.warn(
                        &here,
                        None,
                        &format!("an Azure error response ({code}: {message}), skipped"),
                    ),
                    Shape::Unknown => self.warn(
                        &here,
                        None,
                        &format!("{} has no string `id`, skipped", describe_object(&object)),
                    ),
                },
                Value::Array(inner) => self.rows(inner, &here),
                other => self.warn(&here, None, &format!("a {}, not a resource, skipped", kind_of(&other))),
            }
        }
    }

    fn container(&mut self, mut object: Map<String, Value>, key: &'static str, location: &str) {
        let here = if location.is_empty() {
            key.to_string()
        } else {
            format!("{location}.{key}")
        };
        match object.remove(key) {
            Some(Value::Array(rows)) => self.rows(rows, &here),
            Some(Value::Object(table)) => match table_rows(&table) {
                Some(rows) => self.rows(rows, &here),
                None => self.warn(&here, None, "neither an array of rows nor a table, skipped"),
            },
            _ => self.warn(&here, None, "neither an array of rows nor a table, skipped"),
        }
    }

    fn warn(&mut self, location: &str, id: Option<&str>, why: &str) {
        let mut line = self.source_name.to_string();
        for part in [Some(location), id].into_iter().flatten().filter(|p| !p.is_empty()) {
            line.push_str(": ");
            line.push_str(part);
        }
        line.push_str(": ");
        line.push_str(why);
        self.assembly.warnings.push(line);
    }

    fn row(&mut self, object: Map<String, Value>, location: &str) {
        let raw_id = match get_ci(&object, "id") {
            Some(Value::String(s)) => s.trim().to_string(),
            _ => {
                return self.warn(
                    location,
                    None,
                    &format!("{} has no string `id`, skipped", describe_object(&object)),
                );
            }
        };
        let id = match ResourceId::parse(&raw_id) {
            Ok(id) => id,
            Err(e) => {
                return self.warn(
                    location,
                    Some(&format!("{:?}", clip(&raw_id))),
                    &format!("id rejected ({e}), skipped"),
                );
            }
        };
        let id_type = id.resource_type();

        // What the row says it is. A `type` one segment deeper than the id is a child whose id
        // stops at its parent, as in Microsoft's own TDE GET example.
        let declared = match get_ci(&object, "type") {
            Some(Value::String(t)) => Some(t.trim().to_string()),
            _ => None,
        };
        let mut child_of_id: Option<String> = None;
        if let Some(declared) = declared.as_deref().filter(|d| !d.eq_ignore_ascii_case(&id_type)) {
            let deeper = declared
                .get(..id_type.len())
                .filter(|head| head.eq_ignore_ascii_case(&id_type))
                .and_then(|_| declared.get(id_type.len()..))
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|segment| !segment.is_empty() && !segment.contains('/'));
            match deeper {
                Some(segment) => {
                    let name = match get_ci(&object, "name") {
                        Some(Value::String(n)) if !n.trim().is_empty() && !n.contains('/') => n.trim().to_string(),
                        _ => "current".to_string(),
                    };
                    child_of_id = Some(format!("{segment}/{name}"));
                }
                None => {
                    return self.warn(
                        location,
                        Some(id.as_str()),
                        &format!("`type` {declared} does not match the id's type {id_type}, skipped"),
                    );
                }
            }
        }

        if let Some(relative) = child_of_id {
            let full_type = format!("{id_type}/{}", relative.split('/').next().unwrap_or(""));
            return self.child_row(object, location, &id, &relative, &full_type);
        }
        if catalog::lookup(&id_type).is_some() {
            return match to_arm_shape(&id_type, object) {
                Ok(document) => self.assembly.add_resource(id, document, location),
                Err(why) => self.warn(location, Some(id.as_str()), &why.to_string()),
            };
        }
        if let Some(parent) = id.parent() {
            let last_type = id_type.rsplit('/').next().unwrap_or("");
            let relative = format!("{last_type}/{}", id.name());
            if read_child(&parent, &relative).is_some() {
                return self.child_row(object, location, &parent, &relative, &id_type);
            }
        }
        match to_arm_shape(&id_type, object) {
            Ok(document) => self.assembly.add_resource(id, document, location),
            Err(_) => self.warn(
                location,
                Some(id.as_str()),
                &format!(
                    "{id_type} is not a catalog type and the row is not in ARM shape (no `properties` object), skipped"
                ),
            ),
        }
    }

    fn child_row(
        &mut self,
        object: Map<String, Value>,
        location: &str,
        parent: &ResourceId,
        relative: &str,
        child_type: &str,
    ) {
        if read_child(parent, relative).is_none() {
            return self.warn(
                location,
                Some(parent.as_str()),
                &format!(
                    "child {relative} of a {} is not read by keyguard, skipped",
                    parent.resource_type()
                ),
            );
        }
        match to_arm_shape(child_type, object) {
            Ok(document) => self.assembly.add_child(parent, relative, document, location),
            Err(why) => self.warn(location, Some(&format!("{parent}/{relative}")), &why.to_string()),
        }
    }
}

enum Shape {
    Row,
    Container(&'static str),
    AzureError { code: String, message: String },
    Unknown,
}

fn classify(object: &Map<String, Value>) -> Shape {
    if get_ci(object, "id").is_some_and(Value::is_string) {
        return Shape::Row;
    }
    if let Some(error) = get_ci(object, "error").filter(|e| e.is_object()) {
        let text = |key| {
            get_ci_value(error, key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        return Shape::AzureError {
            code: text("code"),
            message: text("message"),
        };
    }
    // `data` from `az graph query` and Resource Graph REST, `value` from ARM list calls.
    for key in ["data", "value"] {
        if object.get(key).is_some_and(|v| v.is_array() || v.is_object()) {
            return Shape::Container(key);
        }
    }
    Shape::Unknown
}

/// Resource Graph's `table` result format: `{"columns": [{"name", "type"}], "rows": [[...]]}`.
fn table_rows(table: &Map<String, Value>) -> Option<Vec<Value>> {
    let columns: Vec<&str> = table
        .get("columns")?
        .as_array()?
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str))
        .collect::<Option<_>>()?;
    let rows = table.get("rows")?.as_array()?;
    Some(
        rows.iter()
            .map(|row| match row.as_array() {
                Some(cells) => Value::Object(
                    columns
                        .iter()
                        .zip(cells)
                        .map(|(name, cell)| ((*name).to_string(), cell.clone()))
                        .collect(),
                ),
                None => row.clone(),
            })
            .collect(),
    )
}

// ------------------------------------------------------------------------------------------
// Normalizing CLI models to ARM shape

/// Top-level members of an ARM resource; everything else in a flattened CLI model was under
/// `properties`. `resourceGroup` is added by the CLI, `subscriptionId`/`tenantId` by Resource Graph.
const ENVELOPE: &[&str] = &[
    "id",
    "name",
    "type",
    "location",
    "tags",
    "identity",
    "sku",
    "kind",
    "etag",
    "managedBy",
    "managedByExtended",
    "plan",
    "zones",
    "extendedLocation",
    "systemData",
    "resourceGroup",
    "subscriptionId",
    "tenantId",
];

/// A CLI output model keyguard folds back into ARM shape.
struct CliModel {
    resource_type: &'static str,
    /// Flattened fields of which one must be present for the row to say anything (a Resource
    /// Graph row projected without `properties` must not pass as "key source missing").
    needs_one_of: &'static [&'static str],
    fixup: fn(&mut Map<String, Value>),
}

const CLI_MODELS: &[CliModel] = &[
    CliModel {
        resource_type: "Microsoft.Storage/storageAccounts",
        needs_one_of: &["encryption"],
        fixup: storage_fixup,
    },
    CliModel {
        resource_type: "Microsoft.Compute/disks",
        needs_one_of: &["encryption", "securityProfile"],
        fixup: disk_fixup,
    },
    // Servers, instances and databases keep their key state in children: the body is only
    // needed for tags, so any body will do.
    CliModel {
        resource_type: "Microsoft.Sql/servers",
        needs_one_of: &[],
        fixup: no_fixup,
    },
    CliModel {
        resource_type: "Microsoft.Sql/managedInstances",
        needs_one_of: &[],
        fixup: no_fixup,
    },
    CliModel {
        resource_type: "Microsoft.Sql/servers/databases",
        needs_one_of: &[],
        fixup: no_fixup,
    },
    CliModel {
        resource_type: "Microsoft.Sql/servers/encryptionProtector",
        needs_one_of: &["serverKeyType"],
        fixup: no_fixup,
    },
    CliModel {
        resource_type: "Microsoft.Sql/managedInstances/encryptionProtector",
        needs_one_of: &["serverKeyType"],
        fixup: no_fixup,
    },
    CliModel {
        resource_type: "Microsoft.Sql/servers/databases/transparentDataEncryption",
        needs_one_of: &["state", "status"],
        fixup: tde_fixup,
    },
];

/// Why an export row is not read as an ARM document.
#[derive(Debug, thiserror::Error)]
enum NotArmShape {
    /// No `properties` object, and the type is not one `az` prints flattened.
    #[error("{0}, skipped")]
    NoProperties(MissingProperties),
    /// No `properties` object, nor any of the fields `az` prints for the type.
    #[error("{missing} and no `{}` as `az` prints it, skipped", .fields.join("` or `"))]
    NoFields {
        missing: MissingProperties,
        fields: &'static [&'static str],
    },
}

/// How a row lacks its `properties` object, which says how the export was made.
#[derive(Clone, Copy, Debug, thiserror::Error)]
enum MissingProperties {
    #[error(
        "`properties` is null (`az resource list` leaves it out: export with `az graph query` or `az resource show`)"
    )]
    Null,
    #[error("no `properties` object (a Resource Graph query must keep the `properties` column)")]
    Absent,
}

fn to_arm_shape(resource_type: &str, mut object: Map<String, Value>) -> Result<Value, NotArmShape> {
    if get_ci(&object, "properties").is_some_and(Value::is_object) {
        return Ok(Value::Object(object));
    }
    let missing = if get_ci(&object, "properties").is_some_and(Value::is_null) {
        MissingProperties::Null
    } else {
        MissingProperties::Absent
    };
    let Some(model) = CLI_MODELS
        .iter()
        .find(|m| m.resource_type.eq_ignore_ascii_case(resource_type))
    else {
        return Err(NotArmShape::NoProperties(missing));
    };
    if !model.needs_one_of.is_empty() && !model.needs_one_of.iter().any(|f| get_ci(&object, f).is_some()) {
        return Err(NotArmShape::NoFields {
            missing,
            fields: model.needs_one_of,
        });
    }
    object.retain(|k, v| !(k.eq_ignore_ascii_case("properties") && v.is_null()));
    let (envelope, mut properties): (Map<String, Value>, Map<String, Value>) = object
        .into_iter()
        .partition(|(k, _)| ENVELOPE.iter().any(|e| e.eq_ignore_ascii_case(k)));
    (model.fixup)(&mut properties);
    let mut document = envelope;
    document.insert("properties".to_string(), Value::Object(properties));
    Ok(Value::Object(document))
}

fn no_fixup(_: &mut Map<String, Value>) {}

/// `az storage account` prints `Encryption` with the SDK's attribute names; ARM's wire names
/// differ in case (`keyvaultproperties`) and, for the identity, in name (`encryptionIdentity` is
/// ARM's `identity`, which the catalog reads for the user-assigned identity).
fn storage_fixup(properties: &mut Map<String, Value>) {
    let Some(Value::Object(encryption)) = properties.get_mut("encryption") else {
        return;
    };
    rename(encryption, "keyVaultProperties", "keyvaultproperties");
    if let Some(Value::Object(key)) = encryption.get_mut("keyvaultproperties") {
        rename(key, "keyVaultUri", "keyvaulturi");
        rename(key, "keyName", "keyname");
        rename(key, "keyVersion", "keyversion");
    }
    rename(encryption, "encryptionIdentity", "identity");
    if let Some(Value::Object(identity)) = encryption.get_mut("identity") {
        rename(identity, "encryptionUserAssignedIdentity", "userAssignedIdentity");
        rename(
            identity,
            "encryptionFederatedIdentityClientId",
            "federatedIdentityClientId",
        );
    }
}

fn disk_fixup(properties: &mut Map<String, Value>) {
    if let Some(Value::Object(security)) = properties.get_mut("securityProfile") {
        rename(security, "secureVmDiskEncryptionSetId", "secureVMDiskEncryptionSetId");
    }
}

/// Before azure-cli moved to the 2021 SQL API, `az sql db tde show` printed `status`.
fn tde_fixup(properties: &mut Map<String, Value>) {
    rename(properties, "status", "state");
}

fn rename(object: &mut Map<String, Value>, from: &str, to: &str) {
    if object.contains_key(to) {
        return;
    }
    if let Some(value) = object.remove(from) {
        object.insert(to.to_string(), value);
    }
}

// ------------------------------------------------------------------------------------------
// Assembling items

#[derive(Default)]
struct Assembly {
    items: Vec<InventoryItem>,
    index: HashMap<String, usize>,
    warnings: Vec<String>,
}

impl Assembly {
    fn finish(self) -> Inventory {
        Inventory {
            items: self.items,
            warnings: self.warnings,
        }
    }

    fn slot(&mut self, id: &ResourceId) -> usize {
        if let Some(&i) = self.index.get(&id.key()) {
            return i;
        }
        self.items.push(InventoryItem {
            id: id.clone(),
            document: synthesized_document(id),
            children: BTreeMap::new(),
        });
        let i = self.items.len() - 1;
        self.index.insert(id.key(), i);
        i
    }

    fn add_resource(&mut self, id: ResourceId, document: Value, location: &str) {
        let is_new = !self.index.contains_key(&id.key());
        let i = self.slot(&id);
        let Some(item) = self.items.get_mut(i) else { return };
        if is_new || is_synthesized(&item.document) {
            item.id = id;
            item.document = document;
            return;
        }
        if is_synthesized(&document) || item.document == document {
            return;
        }
        let (kept, other) = (state_of(item, None), {
            let candidate = InventoryItem {
                id: item.id.clone(),
                document,
                children: item.children.clone(),
            };
            state_of(&candidate, None)
        });
        if kept != other {
            let warning = disagreement(location, item.id.as_str(), kept, other);
            self.warnings.push(warning);
        }
    }

    fn add_child(&mut self, parent: &ResourceId, relative: &str, body: Value, location: &str) {
        let path = relative.trim_matches('/').to_ascii_lowercase();
        let i = self.slot(parent);
        let Some(item) = self.items.get_mut(i) else { return };
        let Some(existing) = item.children.get(&path) else {
            item.children.insert(path, body);
            return;
        };
        if *existing == body {
            return;
        }
        let kept = state_of(item, None);
        let other = state_of(item, Some((&path, &body)));
        if kept != other {
            let warning = disagreement(location, &format!("{}/{relative}", item.id), kept, other);
            self.warnings.push(warning);
        }
    }
}

fn disagreement(location: &str, what: &str, kept: Option<EncryptionState>, other: Option<EncryptionState>) -> String {
    let at = if location.is_empty() {
        String::new()
    } else {
        format!(" (again at {location})")
    };
    format!(
        "{what}{at}: appears twice with different key sources ({} first, {} later); the first is used",
        describe_state(kept.as_ref()),
        describe_state(other.as_ref())
    )
}

/// The key state the catalog reads from `item`, with one child replaced when given.
fn state_of(item: &InventoryItem, replaced_child: Option<(&str, &Value)>) -> Option<EncryptionState> {
    let entry = catalog::lookup(&item.id.resource_type())?;
    let mut view = item.view();
    if let Some((path, body)) = replaced_child {
        view.children.insert(path.to_string(), body.clone());
    }
    Some(entry.observe_view(&view))
}

fn describe_state(state: Option<&EncryptionState>) -> String {
    match state {
        None => "not a catalog type".to_string(),
        Some(EncryptionState::Mmk) => "Microsoft-managed keys".to_string(),
        Some(EncryptionState::Cmk(key)) => format!("customer-managed key {key}"),
        Some(EncryptionState::Encrypted) => "encryption on".to_string(),
        Some(EncryptionState::Disabled) => "encryption off".to_string(),
        Some(EncryptionState::Unknown(why)) => format!("unreadable ({why})"),
        Some(EncryptionState::KeyOutsideKeyVault { reference, problem }) => {
            format!("key reference outside Key Vault: {reference} ({problem})")
        }
    }
}

fn synthesized_document(id: &ResourceId) -> Value {
    serde_json::json!({"id": id.as_str(), "name": id.name(), "type": id.resource_type()})
}

/// A body with nothing but `id`, `name` and `type`: synthesized from a child, or a Resource
/// Graph row projected down to those; either way it carries no facts to prefer.
fn is_synthesized(document: &Value) -> bool {
    document.as_object().is_none_or(|o| {
        o.keys()
            .all(|k| ["id", "name", "type"].iter().any(|e| e.eq_ignore_ascii_case(k)))
    })
}

/// The catalog's child read for `relative` under `parent`, if keyguard reads it.
fn read_child(parent: &ResourceId, relative: &str) -> Option<&'static catalog::ChildRead> {
    catalog::lookup(&parent.resource_type())?
        .children
        .iter()
        .find(|c| c.path.eq_ignore_ascii_case(relative.trim_matches('/')))
}

fn export_command_for(id: &ResourceId, child: &str) -> String {
    let rg = id.resource_group();
    let kind = id.resource_type().to_ascii_lowercase();
    match (kind.as_str(), child.to_ascii_lowercase().as_str()) {
        ("microsoft.sql/servers", "encryptionprotector/current") => {
            format!("az sql server tde-key show -s {} -g {rg} -o json", id.name())
        }
        ("microsoft.sql/managedinstances", "encryptionprotector/current") => {
            format!("az sql mi tde-key show --mi {} -g {rg} -o json", id.name())
        }
        ("microsoft.sql/servers/databases", "transparentdataencryption/current") => {
            let server = id.parent().map(|p| p.name().to_string()).unwrap_or_default();
            format!("az sql db tde show -s {server} -d {} -g {rg} -o json", id.name())
        }
        _ => format!("az resource show --ids {id}/{child} -o json"),
    }
}

fn list_command_for(id: &ResourceId) -> String {
    match id.resource_type().to_ascii_lowercase().as_str() {
        "microsoft.sql/servers" => "az sql server list -o json".to_string(),
        "microsoft.sql/managedinstances" => "az sql mi list -o json".to_string(),
        "microsoft.sql/servers/databases" => {
            let server = id.parent().map(|p| p.name().to_string()).unwrap_or_default();
            format!("az sql db list -s {server} -g {} -o json", id.resource_group())
        }
        _ => format!("az resource show --ids {id} -o json"),
    }
}

// ------------------------------------------------------------------------------------------
// Small helpers

fn get_ci<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object
        .get(key)
        .or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn get_ci_value<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_object().and_then(|o| get_ci(o, key))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// "an object with keys a, b, c": enough for the user to recognise which command it came from.
fn describe_object(object: &Map<String, Value>) -> String {
    if object.is_empty() {
        return "an empty object".to_string();
    }
    let mut keys: Vec<String> = object.keys().take(6).map(|k| clip(k)).collect();
    if object.len() > 6 {
        keys.push("...".to_string());
    }
    format!("an object with keys {}", keys.join(", "))
}

/// Untrusted text for a warning, bounded and on one line.
fn clip(text: &str) -> String {
    const MAX: usize = 160;
    let mut out: String = text
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// 1-based line of the first non-whitespace character at or after `offset`.
fn line_of_value(text: &str, offset: usize) -> usize {
    let rest = text.get(offset..).unwrap_or("");
    let skipped = rest.len() - rest.trim_start().len();
    let upto = text.get(..offset + skipped).unwrap_or(text);
    upto.matches('\n').count() + 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg";

    #[test]
    fn storage_cli_model_is_folded_back_into_arm_spelling() {
        let row = json!({
            "id": format!("{SUB}/providers/Microsoft.Storage/storageAccounts/st"),
            "name": "st", "type": "Microsoft.Storage/storageAccounts", "resourceGroup": "rg",
            "primaryEndpoints": {"blob": "https://st.blob.core.windows.net/"},
            "encryption": {
                "keySource": "Microsoft.Keyvault",
                "keyVaultProperties": {"keyName": "k", "keyVaultUri": "https://kv.vault.azure.net", "keyVersion": null},
                "encryptionIdentity": {"encryptionUserAssignedIdentity": "/x", "encryptionFederatedIdentityClientId": null}
            }
        });
        let Value::Object(row) = row else { unreachable!() };
        let doc = to_arm_shape("Microsoft.Storage/storageAccounts", row).unwrap();
        assert_eq!(doc["resourceGroup"], "rg");
        assert_eq!(
            doc["properties"]["primaryEndpoints"]["blob"],
            "https://st.blob.core.windows.net/"
        );
        let enc = &doc["properties"]["encryption"];
        assert_eq!(enc["keyvaultproperties"]["keyvaulturi"], "https://kv.vault.azure.net");
        assert_eq!(enc["keyvaultproperties"]["keyname"], "k");
        assert!(enc["keyvaultproperties"].get("keyversion").is_some());
        assert_eq!(enc["identity"]["userAssignedIdentity"], "/x");
        assert!(enc.get("keyVaultProperties").is_none() && enc.get("encryptionIdentity").is_none());
    }

    #[test]
    fn projected_rows_without_the_fields_are_not_mistaken_for_missing_key_sources() {
        let row = json!({"id": format!("{SUB}/providers/Microsoft.Storage/storageAccounts/st"), "type": "microsoft.storage/storageaccounts"});
        let Value::Object(row) = row else { unreachable!() };
        let why = to_arm_shape("microsoft.storage/storageaccounts", row)
            .unwrap_err()
            .to_string();
        assert!(why.contains("no `properties` object"), "{why}");
        let row = json!({"id": format!("{SUB}/providers/Microsoft.Storage/storageAccounts/st"), "properties": null});
        let Value::Object(row) = row else { unreachable!() };
        let why = to_arm_shape("Microsoft.Storage/storageAccounts", row)
            .unwrap_err()
            .to_string();
        assert!(why.contains("az resource list"), "{why}");
    }

    #[test]
    fn legacy_tde_status_reads_as_state() {
        let row = json!({"id": format!("{SUB}/providers/Microsoft.Sql/servers/s/databases/d/transparentDataEncryption/current"), "status": "Disabled"});
        let Value::Object(row) = row else { unreachable!() };
        let doc = to_arm_shape("Microsoft.Sql/servers/databases/transparentDataEncryption", row).unwrap();
        assert_eq!(doc["properties"], json!({"state": "Disabled"}));
    }

    #[test]
    fn line_of_value_skips_leading_whitespace() {
        let text = "{}\n\n  {}\n";
        assert_eq!(line_of_value(text, 0), 1);
        assert_eq!(line_of_value(text, 2), 3);
    }

    #[test]
    fn table_format_becomes_rows() {
        let table = json!({"columns": [{"name": "id", "type": "string"}, {"name": "type", "type": "string"}], "rows": [["/a", "t"]]});
        let Value::Object(table) = table else { unreachable!() };
        assert_eq!(table_rows(&table).unwrap(), vec![json!({"id": "/a", "type": "t"})]);
    }
}
