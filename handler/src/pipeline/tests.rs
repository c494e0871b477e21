//! The pipeline in process: a real [`Pipeline`] over HTTP against azure-sim, with an embedded
//! store and the alert outbox. These are the rules that only show where dry runs, real reverts,
//! other instances and other people's writes meet: who owns a revert's state, whose write is
//! keyguard's own, and when a write may still go out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_sim::{Principal, SimHandle};
use keyguard_core::ResourceId;
use keyguard_core::config::Config;
use keyguard_core::event::parse_event;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::*;
use crate::alerting::Alerter;
use crate::keyvault::KeyVaultClient;
use crate::outbox::{ChannelResolver, Dispatcher};
use crate::store::{
    AuditQuery, EmbeddedBackend, Entity, OutboxEntry, RevertIntent, RowRange, StateStore, Table, TableBackend, Written,
};
use crate::test_support::{FixedToken, TempDir};

const SUBSCRIPTION: &str = azure_sim::DEMO_SUBSCRIPTION;
const RESOURCE_GROUP: &str = azure_sim::DEMO_RESOURCE_GROUP;
const AZURE_CLI: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// Microsoft-managed keys are required and drift is reverted; every alert goes to one route.
const MMK_ENFORCE: &str = r#"
[[profile]]
name = "mmk-enforce"
require = "mmk"
mode = "enforce"

[routes.secops]
kind = "teams"
url_env = "KEYGUARD_TEST_TEAMS_URL"

[alerts]
default_routes = ["secops"]
suppress_minutes = 0
"#;

fn account(name: &str) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/{name}"
    ))
    .unwrap()
}

fn cmk_patch() -> Value {
    json!({"properties": {"encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {
        "keyvaulturi": azure_sim::DEMO_KEYVAULT, "keyname": "cmk-storage", "keyversion": ""}}}})
}

fn user(name: &str, oid: &str) -> Principal {
    Principal {
        oid: oid.into(),
        appid: AZURE_CLI.into(),
        name: name.into(),
        upn: Some(format!("{name}@contoso.example")),
    }
}

/// The outbox is only looked at here; nothing is sent.
struct NoChannels;

impl ChannelResolver for NoChannels {
    fn channel(&self, route: &str, _extra: &[String]) -> Result<Arc<dyn keyguard_notify::Channel>, String> {
        Err(format!("route {route} is not sent in this test"))
    }
}

struct Harness {
    sim: SimHandle,
    store: StateStore,
    pipeline: Pipeline,
    _dir: TempDir,
}

impl Harness {
    /// keyguard as the function app's managed identity.
    async fn start(config: &str) -> Harness {
        Harness::start_with(config, None, |backend| backend).await
    }

    /// `keyguard_as`: the principal keyguard's token is issued to (the signed-in user under Azure
    /// CLI credentials); `wrap`: a stand-in between the store and its backend.
    async fn start_with(
        config: &str,
        keyguard_as: Option<Principal>,
        wrap: impl FnOnce(Arc<dyn TableBackend>) -> Arc<dyn TableBackend>,
    ) -> Harness {
        let sim_config = azure_sim::SimConfig {
            seed: azure_sim::demo_seed(SUBSCRIPTION, RESOURCE_GROUP),
            ..Default::default()
        };
        let keyguard = keyguard_as.unwrap_or_else(|| sim_config.system_identity.clone());
        let sim = azure_sim::start(sim_config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = TempDir::new("keyguard-pipeline");
        let backend: Arc<dyn TableBackend> = Arc::new(EmbeddedBackend::open(&dir.path().join("state.redb")).unwrap());
        let store = StateStore::new(wrap(backend)).await.unwrap();
        let config = Arc::new(Config::from_toml_str(config, "keyguard.toml").unwrap());
        let tokens: Arc<dyn crate::identity::TokenSource> =
            Arc::new(FixedToken::new(&sim.state().issue_token(&keyguard)));
        let http = reqwest::Client::new();
        let arm = ArmClient::new(http.clone(), &sim.base_url(), tokens.clone());
        let keyvault = KeyVaultClient::new(http, tokens, Some(sim.base_url()));
        let dispatcher = Arc::new(Dispatcher::new(store.clone(), Arc::new(NoChannels), 3));
        let alerter = Arc::new(Alerter::new(config.clone(), store.clone(), dispatcher));
        let pipeline = Pipeline::new(
            config,
            arm,
            keyvault,
            store.clone(),
            PipelineSettings {
                dry_run: false,
                time_budget: Duration::from_secs(10),
                instance: crate::instance::instance_name(),
                retention: crate::store::Retention {
                    audit: time::Duration::days(90),
                    sent_alerts: time::Duration::days(7),
                },
                sweep: SweepSettings::default(),
            },
        )
        .with_alerter(alerter);
        Harness {
            sim,
            store,
            pipeline,
            _dir: dir,
        }
    }

    /// A person changes the resource at the portal; returns the write event ARM emitted.
    fn act(&self, id: &ResourceId, who: &Principal, patch: &Value) -> IncomingEvent {
        let answer = self.sim.state().act(id.as_str(), who, patch);
        assert_eq!(answer.status, 200, "{}", answer.body);
        let events = self.sim.state().events();
        parse_event(events.last().expect("ARM emitted an event")).unwrap()
    }

    fn key_source(&self, id: &ResourceId) -> String {
        let doc = self.sim.state().resource(id.as_str()).expect("the resource exists");
        doc["properties"]["encryption"]["keySource"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Writes keyguard sent to ARM (people's writes through `act` are not in the request log).
    fn keyguard_writes(&self) -> usize {
        self.sim
            .state()
            .requests()
            .iter()
            .filter(|r| matches!(r.method.as_str(), "PATCH" | "PUT"))
            .count()
    }

    async fn audit(&self, id: &ResourceId) -> Vec<AuditRecord> {
        let query = AuditQuery {
            resource: Some(id.clone()),
            ..AuditQuery::default()
        };
        self.store.audit_records(&query).await.unwrap()
    }

    async fn outbox(&self) -> Vec<OutboxEntry> {
        let entries = self.store.outbox_entries().await.unwrap();
        entries.into_iter().map(|e| e.value).collect()
    }
}

/// A real revert that wrote and then died before recording its result: the resource is already
/// back on Microsoft-managed keys, its intent is still in the store.
fn crashed_revert_intent(id: &ResourceId) -> RevertIntent {
    RevertIntent {
        id: uuid::Uuid::now_v7().to_string(),
        resource_id: id.as_str().to_string(),
        correlation_id: "the-real-revert".into(),
        event_id: Some("event-of-the-drift".into()),
        holder: "web-2/0c5d2e1f-9a8b-4c7d-8e6f-5a4b3c2d1e0f/4026531836/77/abc/lease".into(),
        started_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
        target: "Microsoft-managed keys".into(),
        writes: vec![format!("PATCH {} (2025-01-01)", id.name())],
        caller: Some("mallory@contoso.example".into()),
        operation: None,
    }
}

#[tokio::test]
async fn a_dry_run_during_a_pending_revert_leaves_its_intent_record_and_alert_to_it() {
    let h = Harness::start(MMK_ENFORCE).await;
    let id = account("stmmklogs");
    let intent = crashed_revert_intent(&id);
    h.store.set_revert_intent(&id, Some(&intent)).await.unwrap();

    // A person's dry-run check, and a report-only sweep with the listed body, while it is pending.
    let checked = h
        .pipeline
        .reconcile(&id, Trigger::Manual, "dry-run-check", true)
        .await
        .unwrap();
    assert_eq!(
        (checked.verdict.as_str(), checked.result.as_str()),
        ("compliant", "compliant")
    );
    assert_ne!(
        checked.record_id.as_deref(),
        Some(intent.id.as_str()),
        "its own record id"
    );
    let listed = h.sim.state().resource(id.as_str()).unwrap();
    let sweep = Trigger::Sweep {
        scope: format!("/subscriptions/{SUBSCRIPTION}"),
    };
    let swept = h
        .pipeline
        .reconcile_listed(&id, Some(listed), sweep, "report-sweep", true)
        .await
        .unwrap();
    assert!(swept.dry_run);
    assert_eq!(
        h.store.revert_intent(&id).await.unwrap(),
        Some(intent.clone()),
        "the real revert's intent is left to it"
    );
    let records = h.audit(&id).await;
    assert_eq!(
        records.len(),
        1,
        "the dry-run check is recorded (a compliant sweep is not)"
    );
    assert!(records[0].outcome.dry_run, "recorded as a dry run");
    assert_ne!(records[0].id, intent.id);
    let findings = h.store.findings().await.unwrap();
    assert!(
        findings.iter().all(|f| f.dry_run),
        "dry-run findings say so: {findings:?}"
    );
    assert!(
        h.outbox().await.is_empty(),
        "a dry run raised no alert in the revert's name"
    );

    // The next real reconcile settles the revert: once, under the intent's id, with its alert.
    let settled = h
        .pipeline
        .reconcile(&id, Trigger::Reconcile, "timer", false)
        .await
        .unwrap();
    assert_eq!(
        (settled.action.as_str(), settled.result.as_str()),
        ("revert", "reverted")
    );
    let records = h.audit(&id).await;
    let record = records
        .iter()
        .find(|r| r.id == intent.id)
        .expect("the revert's own record");
    assert!(!record.outcome.dry_run);
    assert_eq!(record.outcome.result, "reverted");
    let outbox = h.outbox().await;
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].id, format!("{}.0", intent.id));
    assert_eq!(outbox[0].alert.outcome, keyguard_notify::Outcome::Reverted);
    assert_eq!(h.store.revert_intent(&id).await.unwrap(), None, "settled, then cleared");
    let findings = h.store.findings().await.unwrap();
    assert!(findings.iter().all(|f| !f.dry_run), "{findings:?}");
}

#[tokio::test]
async fn a_dry_run_instance_takes_no_lease_and_keeps_its_own_dedupe_entries() {
    let h = Harness::start(MMK_ENFORCE).await;
    let id = account("stmmklogs");
    let event = h.act(&id, &user("mallory", "mallory-oid"), &cmk_patch());
    // Another instance holds the lease for a long write: a dry run is not held up by it.
    let now = OffsetDateTime::now_utc();
    let held = h
        .store
        .try_lease(&id, "someone-else", time::Duration::minutes(5), now)
        .await
        .unwrap()
        .expect("free");
    let dry = h.pipeline.with_config(h.pipeline.config().clone());
    let dry = Pipeline {
        settings: PipelineSettings {
            dry_run: true,
            ..dry.settings.clone()
        },
        ..dry
    };
    let seen = dry.handle_event(&event).await.unwrap();
    assert_eq!(
        (seen.action.as_str(), seen.result.as_str()),
        ("dry-run-revert", "would-revert")
    );
    assert!(h.store.event_seen(&format!("dry-run/{}", event.id), now).await.unwrap());
    assert!(
        !h.store.event_seen(&event.id, now).await.unwrap(),
        "the real instance will not skip the event as handled"
    );
    h.store.release(&held).await.unwrap();
    let real = h.pipeline.handle_event(&event).await.unwrap();
    assert_eq!(real.result, "reverted");
    assert_eq!(h.key_source(&id), "Microsoft.Storage");
}

#[tokio::test]
async fn under_cli_credentials_another_az_users_change_is_reverted_and_only_the_users_own_is_skipped() {
    let alice = user("alice", "a11ce000-0000-0000-0000-000000000001");
    let bob = user("bob", "b0b00000-0000-0000-0000-000000000002");
    let h = Harness::start_with(MMK_ENFORCE, Some(alice.clone()), |backend| backend).await;
    let id = account("stmmklogs");

    // Bob signs in with the same Azure CLI (the same app id in his token) and switches the key.
    let bobs = h.act(&id, &bob, &cmk_patch());
    let outcome = h.pipeline.handle_event(&bobs).await.unwrap();
    assert_eq!(
        (outcome.verdict.as_str(), outcome.result.as_str()),
        ("drift", "reverted"),
        "{outcome:?}"
    );
    assert!(
        outcome.caller.as_deref().is_some_and(|c| c.contains("bob")),
        "{outcome:?}"
    );
    assert_eq!(h.key_source(&id), "Microsoft.Storage");
    assert_eq!(h.keyguard_writes(), 1);

    // keyguard acts as Alice: her own change is keyguard's own write, and left alone.
    let alices = h.act(&id, &alice, &cmk_patch());
    let outcome = h.pipeline.handle_event(&alices).await.unwrap();
    assert_eq!(
        (outcome.verdict.as_str(), outcome.result.as_str()),
        ("skipped", "own-write")
    );
    assert_eq!(h.keyguard_writes(), 1);
}

/// Takes the lease away (as an instance would once it ran out) the moment the revert intent is
/// written, i.e. after the plan and before the first write.
struct LeaseStolenAtIntent {
    inner: Arc<dyn TableBackend>,
}

#[async_trait]
impl TableBackend for LeaseStolenAtIntent {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn prepare(&self) -> Result<(), StoreError> {
        self.inner.prepare().await
    }
    async fn get(&self, table: Table, partition: &str, row: &str) -> Result<Option<Entity>, StoreError> {
        self.inner.get(table, partition, row).await
    }
    async fn insert(&self, table: Table, partition: &str, row: &str, data: &Value) -> Result<Written, StoreError> {
        self.inner.insert(table, partition, row, data).await
    }
    async fn replace(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        data: &Value,
        if_match: Option<&str>,
    ) -> Result<Written, StoreError> {
        if table == Table::Intents {
            let thief = json!({
                "resourceId": data["resourceId"],
                "holder": "another-instance",
                "expiresAt": "2099-01-01T00:00:00Z",
            });
            self.inner.replace(Table::Leases, partition, row, &thief, None).await?;
        }
        self.inner.replace(table, partition, row, data, if_match).await
    }
    async fn delete(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        if_match: Option<&str>,
    ) -> Result<Written, StoreError> {
        self.inner.delete(table, partition, row, if_match).await
    }
    async fn query(&self, table: Table, range: &RowRange<'_>) -> Result<Vec<Entity>, StoreError> {
        self.inner.query(table, range).await
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
}

#[tokio::test]
async fn a_lease_lost_between_plan_and_write_stops_the_revert_before_any_write() {
    let h = Harness::start_with(MMK_ENFORCE, None, |inner| Arc::new(LeaseStolenAtIntent { inner })).await;
    let id = account("stmmklogs");
    let event = h.act(&id, &user("mallory", "mallory-oid"), &cmk_patch());

    let error = h.pipeline.handle_event(&event).await.unwrap_err();
    assert!(matches!(error, PipelineError::LeaseLost(_)), "{error}");
    assert!(
        error.retryable(),
        "Event Grid redelivers; the next attempt decides afresh"
    );
    assert_eq!(h.keyguard_writes(), 0, "no PATCH reached ARM");
    assert_eq!(h.key_source(&id), "Microsoft.Keyvault");
    let lease = h
        .store
        .try_lease(
            &id,
            "a-third-instance",
            time::Duration::seconds(30),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert!(lease.is_none(), "the instance that took the lease still has it");
    assert!(
        !h.store.event_seen(&event.id, OffsetDateTime::now_utc()).await.unwrap(),
        "not handled"
    );
}

// --- tag exemptions and retags --------------------------------------------------------------

fn tagged_cmk_patch(tags: Value) -> Value {
    let mut patch = cmk_patch();
    patch["tags"] = tags;
    patch
}

fn safeguard_alerts(outbox: &[OutboxEntry]) -> Vec<&OutboxEntry> {
    outbox
        .iter()
        .filter(|e| e.alert.outcome == keyguard_notify::Outcome::SafeguardChanged)
        .collect()
}

#[tokio::test]
async fn adding_a_valid_exemption_tag_alerts_naming_who_and_what_through_the_outbox() {
    let h = Harness::start(MMK_ENFORCE).await;
    let id = account("stmmklogs");
    let first = h
        .pipeline
        .reconcile(&id, Trigger::Reconcile, "timer", false)
        .await
        .unwrap();
    assert_eq!(first.result, "compliant");
    assert!(h.outbox().await.is_empty());

    // One write switches the key and exempts the account, within max_exemption_days.
    let until = azure_sim::date_in_days(30);
    let tags = json!({"env": "demo", "keyguard-exempt-until": until, "keyguard-exempt-reason": "CHG-7"});
    let event = h.act(&id, &user("mallory", "mallory-oid"), &tagged_cmk_patch(tags));
    let outcome = h.pipeline.handle_event(&event).await.unwrap();
    assert_eq!(
        (outcome.verdict.as_str(), outcome.result.as_str()),
        ("exempt", "exempt")
    );
    assert_eq!(h.keyguard_writes(), 0, "the exemption is honoured");

    let outbox = h.outbox().await;
    let alerts = safeguard_alerts(&outbox);
    assert_eq!(alerts.len(), 1, "{outbox:?}");
    let alert = &alerts[0].alert;
    let detail = alert.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("mallory@contoso.example"), "who: {detail}");
    assert!(
        detail.contains(&format!("exemption tag added: keyguard-exempt-until=\"{until}\"")),
        "what: {detail}"
    );
    assert!(detail.contains("keyguard leaves the resource alone until"), "{detail}");
    assert_eq!(alert.severity, keyguard_notify::Severity::High);
    assert_eq!(alerts[0].route, "secops");
    // The audit record carries the change too.
    let records = h.audit(&id).await;
    let record = records.iter().find(|r| r.outcome.result == "exempt").unwrap();
    assert!(matches!(
        record.outcome.safeguard_changes.as_slice(),
        [SafeguardChange::ExemptionTag {
            kind: keyguard_core::safeguards::ExemptionTagChange::Added,
            ..
        }]
    ));
    // Seen once: the next look at the unchanged tags is quiet.
    let again = h
        .pipeline
        .reconcile(&id, Trigger::Reconcile, "timer", false)
        .await
        .unwrap();
    assert!(again.safeguard_changes.is_empty());
    assert_eq!(safeguard_alerts(&h.outbox().await).len(), 1);
}

#[tokio::test]
async fn a_far_future_exemption_tag_does_not_exempt_and_says_so_and_the_drift_is_reverted() {
    let h = Harness::start(MMK_ENFORCE).await;
    let id = account("stmmklogs");
    h.pipeline
        .reconcile(&id, Trigger::Reconcile, "timer", false)
        .await
        .unwrap();
    let tags = json!({"env": "demo", "keyguard-exempt-until": "9999-12-31"});
    let event = h.act(&id, &user("mallory", "mallory-oid"), &tagged_cmk_patch(tags));
    let outcome = h.pipeline.handle_event(&event).await.unwrap();
    assert_eq!(
        (outcome.verdict.as_str(), outcome.result.as_str()),
        ("drift", "reverted")
    );
    assert_eq!(h.key_source(&id), "Microsoft.Storage");
    let finding = h.store.findings().await.unwrap().remove(0);
    let detail = finding.detail.unwrap_or_default();
    assert!(
        detail.contains("is more than max_exemption_days (90) ahead"),
        "{detail}"
    );
    // The attempt is still reported, with what it did (nothing).
    let outbox = h.outbox().await;
    let alerts = safeguard_alerts(&outbox);
    assert_eq!(alerts.len(), 1, "{outbox:?}");
    let detail = alerts[0].alert.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("it does not exempt the resource"), "{detail}");
}

#[tokio::test]
async fn with_tag_exemptions_off_an_exemption_tag_changes_nothing() {
    let config = format!("[settings]\ntag_exemptions = false\n{MMK_ENFORCE}");
    let h = Harness::start(&config).await;
    let id = account("stmmklogs");
    h.pipeline
        .reconcile(&id, Trigger::Reconcile, "timer", false)
        .await
        .unwrap();
    let tags = json!({"env": "demo", "keyguard-exempt-until": azure_sim::date_in_days(30)});
    let event = h.act(&id, &user("mallory", "mallory-oid"), &tagged_cmk_patch(tags));
    let outcome = h.pipeline.handle_event(&event).await.unwrap();
    assert_eq!(
        (outcome.verdict.as_str(), outcome.result.as_str()),
        ("drift", "reverted")
    );
    assert!(
        outcome
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("tag exemptions are turned off")),
        "{outcome:?}"
    );
    assert!(outcome.safeguard_changes.is_empty());
    assert!(safeguard_alerts(&h.outbox().await).is_empty());
}

/// The profile follows the `env` tag: `demo` is strict, `sandbox` accepts any key and only records.
const BY_TAG: &str = r#"
[[profile]]
name = "strict"
require = "mmk"
mode = "enforce"
scope = { tags = { env = "demo" } }

[[profile]]
name = "lenient"
require = "encrypted"
mode = "audit"
scope = { tags = { env = "sandbox" } }

[routes.secops]
kind = "teams"
url_env = "KEYGUARD_TEST_TEAMS_URL"

[alerts]
default_routes = ["secops"]
suppress_minutes = 0
"#;

#[tokio::test]
async fn a_retag_into_a_weaker_profile_alerts_naming_who_and_both_profiles() {
    let h = Harness::start(BY_TAG).await;
    let id = account("stmmklogs");
    let first = h
        .pipeline
        .reconcile(&id, Trigger::Reconcile, "timer", false)
        .await
        .unwrap();
    assert_eq!(first.profile.as_deref(), Some("strict"));

    // The same write that switches the key moves the account where that is not drift.
    let event = h.act(
        &id,
        &user("mallory", "mallory-oid"),
        &tagged_cmk_patch(json!({"env": "sandbox"})),
    );
    let outcome = h.pipeline.handle_event(&event).await.unwrap();
    assert_eq!(outcome.profile.as_deref(), Some("lenient"));
    assert_eq!(outcome.verdict, "compliant", "{outcome:?}");
    let outbox = h.outbox().await;
    let alerts = safeguard_alerts(&outbox);
    assert_eq!(alerts.len(), 1, "{outbox:?}");
    let detail = alerts[0].alert.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("mallory@contoso.example"), "{detail}");
    assert!(
        detail.contains("retagged from profile strict (mmk, enforce) into lenient (encrypted, audit)"),
        "{detail}"
    );
    assert!(
        detail.contains("now accepts a customer-managed key from any vault"),
        "{detail}"
    );
    // A compliant look is usually not an audit record; this one is.
    let records = h.audit(&id).await;
    assert!(
        records.iter().any(|r| !r.outcome.safeguard_changes.is_empty()),
        "{records:?}"
    );
}

#[tokio::test]
async fn a_dry_run_reports_a_safeguard_change_and_leaves_recording_and_alerting_to_a_real_look() {
    let h = Harness::start(BY_TAG).await;
    let id = account("stmmklogs");
    h.pipeline
        .reconcile(&id, Trigger::Reconcile, "timer", false)
        .await
        .unwrap();
    h.act(
        &id,
        &user("mallory", "mallory-oid"),
        &json!({"tags": {"env": "sandbox"}}),
    );

    let dry = h
        .pipeline
        .reconcile(&id, Trigger::Manual, "dry-run-check", true)
        .await
        .unwrap();
    assert_eq!(dry.safeguard_changes.len(), 1, "{dry:?}");
    assert!(h.outbox().await.is_empty(), "a dry run alerts nobody");
    // The timer's real look (no event, so no caller) still finds it, records it and alerts once.
    let real = h
        .pipeline
        .reconcile(&id, Trigger::Reconcile, "timer", false)
        .await
        .unwrap();
    assert_eq!(real.safeguard_changes.len(), 1);
    let outbox = h.outbox().await;
    let alerts = safeguard_alerts(&outbox);
    assert_eq!(alerts.len(), 1, "{outbox:?}");
    let detail = alerts[0].alert.detail.as_deref().unwrap_or_default();
    assert!(detail.contains("a writer the event did not name"), "{detail}");
    let later = h
        .pipeline
        .reconcile(&id, Trigger::Reconcile, "timer", false)
        .await
        .unwrap();
    assert!(later.safeguard_changes.is_empty(), "recorded by the real look");
}
