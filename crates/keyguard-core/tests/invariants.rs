//! Properties of `evaluate` and `plan` across every catalog entry and every kind of profile
//! (issue 13): whatever the resource, profile, exemption and caller-gathered facts,
//!
//! - an exempt resource, and a one-way or creation-only direction, never yields a write (one-way
//!   only with the profile's `allow_irreversible = true` opt-in, which the plan then records);
//! - a compliant resource never yields an action;
//! - planning again on the resource as the plan's writes leave it yields nothing;
//! - a write's key is one the key-reference rules and the egress policy accept, from a vault the
//!   profile allows, and no write body names any other host.
//!
//! Resource bodies are built from each entry's own key-source and key-reference paths, so a new
//! catalog entry is covered without touching this file.

use keyguard_core::catalog::{KeyRefLayout, KeySourceKind, RevertPermission, WriteMethod};
use keyguard_core::egress::{Credential, EgressPolicy};
use keyguard_core::keyref::Cloud;
use keyguard_core::{
    Action, CatalogEntry, Config, Direction, DriftReason, Evaluation, KeyRef, PlanContext, ResourceId, ResourceView,
    RevertTarget, Verdict, entries, evaluate_view, plan_with,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use url::Url;

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
const APPROVED: &str = "https://kv-approved.vault.azure.net";
const ROGUE: &str = "https://kv-rogue.vault.azure.net";
const DES: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des";

/// What the resource's encryption looks like.
#[derive(Clone, Copy, Debug)]
enum Observed {
    Mmk,
    /// A customer-managed key in the vault the profile allows.
    Approved,
    /// A customer-managed key in a vault the profile does not allow.
    Rogue,
    /// A key reference aimed outside Key Vault.
    Outside,
    /// A key source value nobody knows.
    Unknown,
    /// Service-side encryption off (on/off types; the others read it as an unknown value).
    Off,
}

#[derive(Clone, Debug)]
struct Case {
    entry: &'static CatalogEntry,
    observed: Observed,
    require: &'static str,
    mode: &'static str,
    allow_irreversible: bool,
    pinned: bool,
    exempt: bool,
    baseline: Option<KeyRef>,
    dry_run: bool,
    reverts_in_last_hour: u32,
    has_identity: Option<bool>,
    precondition: Option<bool>,
}

fn key(vault: &str, name: &str, version: Option<&str>) -> KeyRef {
    KeyRef::new(vault, name, version, None).expect("a valid test key")
}

fn arb_case() -> impl Strategy<Value = Case> {
    let baseline = prop_oneof![
        Just(None),
        Just(Some(key(APPROVED, "good", None))),
        Just(Some(key(APPROVED, "good", Some("0123456789abcdef0123456789abcdef")))),
        Just(Some(key(ROGUE, "theirs", None))),
        Just(KeyRef::encryption_set(DES).ok()),
    ];
    let observed = prop_oneof![
        Just(Observed::Mmk),
        Just(Observed::Approved),
        Just(Observed::Rogue),
        Just(Observed::Outside),
        Just(Observed::Unknown),
        Just(Observed::Off),
    ];
    (
        (
            0..entries().len(),
            observed,
            prop::sample::select(vec!["cmk", "mmk", "encrypted"]),
            prop::sample::select(vec!["audit", "alert", "enforce"]),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            baseline,
            any::<bool>(),
            0u32..5,
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
        ),
    )
        .prop_map(
            |(
                (entry, observed, require, mode, allow_irreversible, pinned, exempt),
                (baseline, dry_run, reverts_in_last_hour, has_identity, precondition),
            )| Case {
                entry: &entries()[entry],
                observed,
                require,
                mode,
                allow_irreversible,
                pinned,
                exempt,
                baseline,
                dry_run,
                reverts_in_last_hour,
                has_identity,
                precondition,
            },
        )
}

fn resource_id(entry: &CatalogEntry) -> ResourceId {
    let text = match entry.resource_type {
        "Microsoft.Sql/servers/databases" => {
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/s1/databases/db1".to_string()
        }
        "Microsoft.ElasticSan/elasticSans/volumeGroups" => {
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ElasticSan/elasticSans/e1/volumeGroups/x1"
                .to_string()
        }
        t => format!("/subscriptions/s/resourceGroups/rg/providers/{t}/x1"),
    };
    ResourceId::parse(&text).expect("a valid test id")
}

fn config(case: &Case, id: &ResourceId) -> Config {
    let mut text = format!(
        "[[profile]]\nname = \"p\"\nrequire = \"{}\"\nmode = \"{}\"\nallowed_vaults = [\"{APPROVED}\"]\n",
        case.require, case.mode
    );
    // The opt-in is only valid in enforce mode (the validator says so).
    if case.mode == "enforce" {
        text.push_str(&format!("allow_irreversible = {}\n", case.allow_irreversible));
    }
    if case.pinned && case.require == "cmk" {
        text.push_str(&format!(
            "pinned_key = {{ vault_uri = \"{APPROVED}\", key_name = \"pinned\" }}\n"
        ));
    }
    if case.exempt {
        text.push_str(&format!(
            "\n[[exemption]]\nresource = \"{}\"\nreason = \"CHG-1\"\nexpires = 2026-12-31\n",
            id.as_str()
        ));
    }
    Config::from_toml_str(&text, "invariants.toml").expect("a valid test profile")
}

/// Sets `value` at `path` below `root`, making the objects on the way.
fn put(root: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for segment in parents {
        if !node[*segment].is_object() {
            node[*segment] = json!({});
        }
        node = &mut node[*segment];
    }
    node[*last] = value;
}

/// The body that holds the key source (the resource, or the child the entry reads it from).
fn body(entry: &CatalogEntry, observed: Observed) -> Value {
    let mut doc = json!({"identity": {"type": "SystemAssigned"}, "properties": {}});
    let path = entry.key_source.path;
    let (vault, uri) = match observed {
        Observed::Approved => (APPROVED, format!("{APPROVED}/keys/k/0123456789abcdef0123456789abcdef")),
        Observed::Rogue => (ROGUE, format!("{ROGUE}/keys/k/0123456789abcdef0123456789abcdef")),
        Observed::Outside => ("https://evil.example", "https://evil.example/keys/k/1".to_string()),
        _ => (APPROVED, String::new()),
    };
    let cmk = matches!(observed, Observed::Approved | Observed::Rogue | Observed::Outside);
    match (entry.key_source.kind, observed) {
        (KeySourceKind::Switch { on, .. }, Observed::Off) => put(&mut doc, path, json!(on.first().map(|_| "Disabled"))),
        (KeySourceKind::Switch { on, .. }, _) => put(&mut doc, path, json!(on.first())),
        (_, Observed::Unknown | Observed::Off) => put(&mut doc, path, json!("Microsoft.Something")),
        (KeySourceKind::Value { cmk: values, .. }, _) if cmk => put(&mut doc, path, json!(values.first())),
        (KeySourceKind::Value { mmk, .. }, _) => {
            if let Some(m) = mmk.first() {
                put(&mut doc, path, json!(m));
            }
        }
        (KeySourceKind::Presence, _) if !cmk => put(&mut doc, path, Value::Null),
        (KeySourceKind::Presence, _) => {}
    }
    if cmk {
        match entry.key_ref {
            KeyRefLayout::Fields {
                container_path,
                vault_uri_field,
                key_name_field,
                key_version_field,
                ..
            } => {
                let mut fields = Map::new();
                fields.insert(vault_uri_field.to_string(), json!(vault));
                fields.insert(key_name_field.to_string(), json!("k"));
                fields.insert(key_version_field.to_string(), json!(""));
                put(&mut doc, container_path, Value::Object(fields));
            }
            KeyRefLayout::KeyUri { path, .. } => put(&mut doc, path, json!(uri)),
            KeyRefLayout::EncryptionSet { paths } => {
                if let Some(first) = paths.first() {
                    put(&mut doc, first, json!(DES));
                }
            }
            KeyRefLayout::SqlServerKey => put(&mut doc, &["properties", "uri"], json!(uri)),
            KeyRefLayout::None => {}
        }
        if matches!(entry.key_source.kind, KeySourceKind::Presence)
            && doc.pointer(&format!("/{}", path.join("/"))).is_none()
        {
            put(&mut doc, path, json!("k"));
        }
    }
    doc
}

/// The resource as keyguard would read it: the body, or an empty resource with the body as the
/// child the entry reads, plus any other children the writes made.
struct Resource {
    root: Value,
    children: Vec<(String, Value)>,
}

impl Resource {
    fn new(entry: &CatalogEntry, observed: Observed) -> Resource {
        let doc = body(entry, observed);
        match entry.key_source.child {
            Some(child) => Resource {
                root: json!({"properties": {}}),
                children: vec![(child.to_string(), doc)],
            },
            None => Resource {
                root: doc,
                children: Vec::new(),
            },
        }
    }

    fn view(&self) -> ResourceView<'_> {
        self.children
            .iter()
            .fold(ResourceView::new(&self.root), |view, (path, body)| {
                view.with_child(path, body.clone())
            })
    }

    fn child_mut(&mut self, path: &str) -> &mut Value {
        let index = match self.children.iter().position(|(p, _)| p.eq_ignore_ascii_case(path)) {
            Some(i) => i,
            None => {
                self.children.push((path.to_string(), json!({})));
                self.children.len() - 1
            }
        };
        &mut self.children[index].1
    }

    /// Applies the writes as ARM does: PATCH merges (RFC 7396), PUT replaces the child; a SQL
    /// protector names its server key, and ARM answers with that key's `uri`.
    fn apply(&mut self, plan: &keyguard_core::Plan) {
        for write in &plan.writes {
            let target = match &write.relative_path {
                Some(path) => self.child_mut(path),
                None => &mut self.root,
            };
            match write.method {
                WriteMethod::Patch => merge_patch(target, &write.body),
                WriteMethod::Put => *target = write.body.clone(),
            }
        }
        let uris: Vec<(String, Value)> = self
            .children
            .iter()
            .filter_map(|(path, body)| {
                let name = path.strip_prefix("keys/")?;
                Some((name.to_string(), body.pointer("/properties/uri")?.clone()))
            })
            .collect();
        for (_, protector) in self
            .children
            .iter_mut()
            .filter(|(p, _)| p.starts_with("encryptionProtector"))
        {
            let named = protector.pointer("/properties/serverKeyName").and_then(Value::as_str);
            if let Some((_, uri)) = uris.iter().find(|(name, _)| Some(name.as_str()) == named) {
                protector["properties"]["uri"] = uri.clone();
            }
        }
    }
}

/// RFC 7396, except that an empty object clears the stored one: App Configuration drops its key
/// with `keyVaultProperties: {}` (as the Azure CLI sends; the stand-in models the same), and no
/// other write sends an empty object.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if fields.is_empty() {
        *target = json!({});
        return;
    }
    if !target.is_object() {
        *target = json!({});
    }
    for (name, value) in fields {
        if value.is_null() {
            if let Value::Object(map) = target {
                map.remove(name);
            }
        } else {
            merge_patch(&mut target[name.as_str()], value);
        }
    }
}

fn context(case: &Case, eval: &Evaluation, config: &Config) -> PlanContext {
    let mut ctx = PlanContext::new(eval, &config.settings);
    ctx.dry_run = case.dry_run;
    ctx.baseline = case.baseline.clone();
    ctx.reverts_in_last_hour = case.reverts_in_last_hour;
    ctx.resource_has_identity_for = case.has_identity;
    ctx
}

/// (evaluation, plan) for a case, and the resource it was judged on.
fn judge(case: &Case) -> (Evaluation, keyguard_core::Plan, Resource, Config, ResourceId) {
    let id = resource_id(case.entry);
    let config = config(case, &id);
    let resource = Resource::new(case.entry, case.observed);
    let eval = evaluate_view(&id, &resource.view(), &config, NOW);
    let plan = plan_with(&eval, &context(case, &eval, &config), case.precondition);
    (eval, plan, resource, config, id)
}

fn direction(entry: &CatalogEntry, reason: &DriftReason) -> Direction {
    match reason {
        DriftReason::ExpectedMmkFoundCmk | DriftReason::NotEncrypted => entry.reversibility.to_mmk,
        _ => entry.reversibility.to_cmk,
    }
}

/// Every string in a write body that is a URL.
fn urls(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(s) if Url::parse(s).is_ok_and(|u| u.host().is_some()) => found.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| urls(v, found)),
        Value::Object(map) => map.values().for_each(|v| urls(v, found)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn exempt_one_way_and_creation_only_never_write(case in arb_case()) {
        let (eval, plan, ..) = judge(&case);
        if matches!(eval.verdict, Verdict::Exempt { .. }) {
            prop_assert!(plan.writes.is_empty() && plan.action == Action::Nothing, "{plan:?}");
        }
        if let Verdict::Drift(reason) = &eval.verdict {
            match direction(case.entry, reason) {
                Direction::CreationOnly => prop_assert!(plan.writes.is_empty(), "{plan:?}"),
                Direction::OneWay | Direction::Disruptive(_) if !plan.writes.is_empty() => {
                    prop_assert!(case.allow_irreversible, "an irreversible write without the opt-in: {plan:?}");
                    prop_assert_eq!(plan.permission, Some(RevertPermission::AllowedByOptIn));
                }
                _ => {}
            }
        }
    }

    #[test]
    fn a_compliant_resource_yields_no_action(case in arb_case()) {
        let (eval, plan, ..) = judge(&case);
        if eval.verdict == Verdict::Compliant {
            prop_assert_eq!(&plan.action, &Action::Nothing);
            prop_assert!(plan.writes.is_empty() && !plan.alert, "{plan:?}");
        }
    }

    #[test]
    fn planning_again_after_the_writes_yields_nothing(case in arb_case()) {
        let (_, plan, mut resource, config, id) = judge(&case);
        if plan.writes.is_empty() {
            return Ok(());
        }
        resource.apply(&plan);
        let eval = evaluate_view(&id, &resource.view(), &config, NOW);
        prop_assert_eq!(&eval.verdict, &Verdict::Compliant, "after {:?}", plan.writes);
        let again = plan_with(&eval, &context(&case, &eval, &config), case.precondition);
        prop_assert!(again.writes.is_empty() && again.action == Action::Nothing, "{again:?}");
    }

    #[test]
    fn a_writes_key_passes_the_key_reference_rules_and_the_egress_policy(case in arb_case()) {
        let (eval, plan, ..) = judge(&case);
        let Action::Revert { target, .. } = &plan.action else {
            return Ok(());
        };
        let policy = EgressPolicy::new(&Url::parse("https://management.azure.com").expect("url"), Cloud::Public, None);
        if let RevertTarget::Cmk(key) = target
            && let Some(url) = key.key_url()
        {
            prop_assert!(eval.allowed_vaults.is_empty() || key.vault_uri().as_deref() == Some(APPROVED), "{key}");
            prop_assert!(policy.check(Credential::KeyVaultToken, &url).is_ok(), "{url}");
            let again = KeyRef::from_key_uri(url.as_str(), key.user_assigned_identity()).ok();
            prop_assert!(again.as_ref().is_some_and(|k| k.same_key(key)), "{url} re-parses as {again:?}");
        }
        let mut found = Vec::new();
        for write in &plan.writes {
            urls(&write.body, &mut found);
        }
        for text in found {
            let url = Url::parse(&text).expect("found as a URL");
            prop_assert!(
                text.starts_with(APPROVED) && policy.check(Credential::KeyVaultToken, &url).is_ok(),
                "a write names {text}"
            );
        }
    }
}

/// The properties above only mean something if the generated cases reach writes: with an
/// enforcing profile that opts in, a baseline in the approved vault and every precondition
/// confirmed, every type with a write recipe plans a write for some state, and planning again
/// after it yields nothing.
#[test]
fn the_generated_resources_reach_a_write_for_every_type_that_has_one() {
    let mut without = Vec::new();
    let mut writes = 0;
    for entry in entries() {
        let mut wrote = false;
        for observed in [Observed::Mmk, Observed::Approved, Observed::Rogue, Observed::Off] {
            for require in ["cmk", "mmk"] {
                for baseline in [
                    Some(key(APPROVED, "good", Some("0123456789abcdef0123456789abcdef"))),
                    KeyRef::encryption_set(DES).ok(),
                ] {
                    let case = Case {
                        entry,
                        observed,
                        require,
                        mode: "enforce",
                        allow_irreversible: true,
                        pinned: false,
                        exempt: false,
                        baseline,
                        dry_run: false,
                        reverts_in_last_hour: 0,
                        has_identity: Some(true),
                        precondition: Some(true),
                    };
                    let (_, plan, mut resource, config, id) = judge(&case);
                    if plan.writes.is_empty() {
                        continue;
                    }
                    wrote = true;
                    writes += 1;
                    resource.apply(&plan);
                    let eval = evaluate_view(&id, &resource.view(), &config, NOW);
                    assert_eq!(
                        eval.verdict,
                        Verdict::Compliant,
                        "{}: after {:?}",
                        entry.resource_type,
                        plan.writes
                    );
                }
            }
        }
        if !wrote && !matches!(entry.write_shape, keyguard_core::catalog::WriteShape::None) {
            without.push(entry.resource_type);
        }
    }
    assert!(
        without.is_empty(),
        "types with a write recipe that never planned a write: {without:?}"
    );
    assert!(writes >= 19, "only {writes} writes planned");
}
