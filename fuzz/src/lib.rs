//! The bodies of keyguard's fuzz targets, one per parser that reads attacker-controlled input.
//!
//! Each body hands the bytes to the function production calls on them (nothing here re-parses
//! anything itself), then checks properties that must hold for every input the parser accepts:
//! what it produced re-parses to the same value, and what it stores reads back the same. A
//! violated property panics, which AFL++ records as a crash, exactly like a panic in the parser.
//!
//! The AFL++ entry points (`src/bin/*.rs`, feature `afl`) call these; `tests/corpus.rs` runs them
//! over the committed seed corpus and every past finding on every `cargo test`, so the targets
//! keep compiling and every crash found stays fixed.

use std::sync::OnceLock;

use keyguard_core::arm_scope::ArmScope;
use keyguard_core::keyref::{ClientId, GeoBackupKey, VaultHost};
use keyguard_core::{Config, KeyRef, PlanContext, ResourceId, inventory};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// A target's body: any bytes in, a panic only for a bug.
pub type Target = fn(&[u8]);

/// The targets by name, as `scripts/fuzz.sh` and the corpus folders spell them.
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("event", event),
    ("resource_id", resource_id),
    ("keyref", keyref),
    ("config", config),
    ("az_export", az_export),
];

/// The trigger binding of the `EncryptionDrift` function (`function-app/EncryptionDrift/function.json`,
/// the handler's `EVENT_FUNCTION`); the fuzz crate does not link the handler, so it is spelled here.
pub const EVENT_BINDING: &str = "eventGridEvent";

/// A fixed "now", so a run is reproducible: exemption expiry is judged against it.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The Functions host's invocation body for `EncryptionDrift`: the envelope the runtime decodes,
/// then the event the handler parses out of its trigger value.
pub fn envelope(data: &[u8]) {
    let Ok((trigger, metadata)) = functions_runtime::decode_envelope(data, EVENT_BINDING) else {
        return;
    };
    let _ = functions_runtime::retry_count(&metadata);
    if let Ok(event) = keyguard_core::parse_event(&trigger) {
        check_event(&event);
    }
}

/// A webhook delivery body (`POST /api/events`): JSON, then the Event Grid / CloudEvents parser.
pub fn event(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(events) = keyguard_core::parse_delivery(&value) else {
        return;
    };
    for event in events.iter().flatten() {
        check_event(event);
    }
}

fn check_event(event: &keyguard_core::IncomingEvent) {
    assert!(
        !event.id.chars().any(char::is_control),
        "an accepted event id carries a control character: {:?}",
        event.id
    );
    if let Some(id) = event.resource_id() {
        check_resource_id(id);
    }
    // Decisions and audit records serialise the event's parts; that must not fail.
    if let Err(e) = serde_json::to_string(&event.kind) {
        panic!("event kind does not serialise: {e}");
    }
}

/// A resource id (events, `/api/check`, the CLI, the store) and an ARM scope (`/api/scan`,
/// `KEYGUARD_SWEEP_SCOPES`, `keyguard scan`).
pub fn resource_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = ResourceId::parse(text) {
        check_resource_id(&id);
    }
    if let Ok(scope) = ArmScope::parse(text) {
        let again = ArmScope::parse(&scope.path()).ok();
        assert_eq!(again.as_ref(), Some(&scope), "scope does not re-parse from its path");
    }
}

fn check_resource_id(id: &ResourceId) {
    let again = ResourceId::parse(id.as_str());
    assert_eq!(again.as_ref(), Ok(id), "resource id does not re-parse to itself");
    let _ = (
        id.resource_type(),
        id.name(),
        id.key(),
        id.subscription(),
        id.resource_group(),
    );
    // Every parent is a valid id and the chain ends: the reconcile walks it for child resources.
    let mut parent = id.parent();
    let mut steps = 0;
    while let Some(p) = parent {
        assert!(
            id.as_str().starts_with(p.as_str()),
            "parent {p} is not a prefix of {id}"
        );
        assert_eq!(
            ResourceId::parse(p.as_str()).as_ref(),
            Ok(&p),
            "parent {p} does not re-parse"
        );
        steps += 1;
        assert!(steps <= id.as_str().len(), "parent chain of {id} does not end");
        parent = p.parent();
    }
}

/// Key references: a key URI with an optional identity (first line, rest), as resource bodies,
/// baselines (`keyguard baseline set --key`) and profiles name them; a vault URI; a disk
/// encryption set id; a geo-backup key; an identity client id; and the stored form.
pub fn keyref(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let identity = Some(rest).filter(|r| !r.is_empty());
    if let Ok(key) = KeyRef::from_key_uri(first, identity) {
        check_key(&key);
        let again = KeyRef::from_key_uri(&key.key_id(), key.user_assigned_identity());
        assert_eq!(again.as_ref(), Ok(&key), "key does not re-parse from its key id");
        let url = key.key_url();
        assert_eq!(
            url.as_ref().map(url::Url::as_str),
            Some(key.key_id().as_str()),
            "key URL and key id disagree"
        );
    }
    if let Ok(vault) = VaultHost::parse(first) {
        assert_eq!(
            VaultHost::parse(&vault.uri()).as_ref(),
            Ok(&vault),
            "vault does not re-parse from its URI"
        );
    }
    if let Ok(set) = KeyRef::encryption_set(first) {
        check_key(&set);
    }
    if let Ok(geo) = GeoBackupKey::new(first, identity) {
        check_key(geo.key());
    }
    if let Ok(client) = ClientId::parse(first) {
        assert_eq!(
            ClientId::parse(&client.to_string()).ok(),
            Some(client),
            "client id does not re-parse"
        );
    }
    // A stored record (baseline, audit, finding) is read back through the same validation.
    if let Ok(stored) = serde_json::from_str::<KeyRef>(text) {
        check_key(&stored);
    }
}

/// What is stored reads back as the same key.
fn check_key(key: &KeyRef) {
    let stored = serde_json::to_value(key).unwrap_or(Value::Null);
    let back = serde_json::from_value::<KeyRef>(stored.clone());
    assert_eq!(
        back.as_ref().ok(),
        Some(key),
        "stored key {stored} reads back differently: {back:?}"
    );
}

/// The profiles file (`KEYGUARD_CONFIG`, `KEYGUARD_CONFIG_TOML`, `keyguard config validate`).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml_str(text, "fuzz.toml") else {
        return;
    };
    // A loaded config answers for any resource without panicking.
    if let Ok(id) = ResourceId::parse(PROBE_RESOURCE) {
        let tags = Map::new();
        let _ = config.profile_for(&id, &tags);
        let _ = config.exemption_for(&id, &tags, now());
    }
}

const PROBE_RESOURCE: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st";

/// An Azure CLI export (`keyguard scan --from-file`): read, merged, and every item evaluated and
/// planned as the offline audit does.
pub fn az_export(data: &[u8]) {
    let Ok(part) = inventory::parse_export_bytes(data, "fuzz.json") else {
        return;
    };
    let inventory = inventory::merge(vec![part]);
    let _ = inventory.gaps();
    let config = default_config();
    for item in &inventory.items {
        let evaluation = keyguard_core::evaluate_view(&item.id, &item.view(), config, now());
        let plan = keyguard_core::plan(&evaluation, &PlanContext::new(&evaluation, &config.settings));
        if let Err(e) = serde_json::to_string(&evaluation).and_then(|_| serde_json::to_string(&plan)) {
            panic!("evaluation or plan does not serialise: {e}");
        }
    }
}

/// A profile that enforces, so planning reaches the revert writes of every reversible type.
fn default_config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::from_toml_str(ENFORCING_PROFILE, "fuzz-profile.toml").unwrap_or_else(|_| Config::builtin_default())
    })
}

const ENFORCING_PROFILE: &str = r#"
[[profile]]
name = "enforce-cmk"
require = "cmk"
mode = "enforce"
allowed_vaults = ["https://kv-approved.vault.azure.net"]
pinned_key = { vault_uri = "https://kv-approved.vault.azure.net", key_name = "pinned" }
"#;
