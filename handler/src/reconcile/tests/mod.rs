//! The reconcile in process: a real [`Context`] over HTTP against azure-sim, with an embedded
//! store and the alert outbox. These are the rules that only show where dry runs, real reverts,
//! other instances and other people's writes meet: who owns a revert's state, whose write is
//! keyguard's own, and when a write may still go out.

use std::sync::Arc;

use async_trait::async_trait;
use azure_sim::{Principal, SimHandle};
use keyguard_core::ResourceId;
use keyguard_core::config::Config;
use keyguard_core::event::{IncomingEvent, parse_event};
use keyguard_core::safeguards::SafeguardChange;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::*;
use crate::alerting::Alerter;
use crate::outbox::{ChannelResolver, Dispatcher};
use crate::store::{AuditQuery, EmbeddedBackend, OutboxEntry, RevertIntent, StateStore, Table, TableBackend};
use crate::test_support::TempDir;

const SUBSCRIPTION: &str = azure_sim::DEMO_SUBSCRIPTION;
const RESOURCE_GROUP: &str = azure_sim::DEMO_RESOURCE_GROUP;
const AZURE_CLI: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// Microsoft-managed keys are required and drift is reverted.
const MMK_ENFORCE: &str = r#"
[[profile]]
name = "mmk-enforce"
require = "mmk"
mode = "enforce"
"#;

/// CMK required, enforced, with no vault allow-list (the built-in default's shape).
const CMK_ENFORCE: &str = r#"
[[profile]]
name = "cmk-enforce"
require = "cmk"
mode = "enforce"
"#;

/// Every alert goes to one route, unfolded; appended to each test's profiles.
const ROUTES: &str = r#"
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

/// Microsoft's Resource Notifications example, pointed at `id`, carrying `encryption`.
fn notification(id: &ResourceId, encryption: Value) -> IncomingEvent {
    let text = include_str!(
        "../../../../tests/fixtures/eventgrid/resourcenotifications-createdorupdated.eventgrid.spec-example.json"
    );
    let mut event: Value = serde_json::from_str(text).unwrap();
    event["subject"] = json!(id.as_str());
    event["data"]["resourceInfo"]["id"] = json!(id.as_str());
    event["data"]["resourceInfo"]["name"] = json!(id.name());
    event["data"]["resourceInfo"]["properties"]["encryption"] = encryption;
    parse_event(&event).unwrap()
}

/// The outbox is only looked at here; nothing is sent.
struct NoChannels;

impl ChannelResolver for NoChannels {
    fn channel(
        &self,
        route: &str,
        _extra: &[String],
    ) -> Result<Arc<dyn keyguard_notify::Channel>, crate::outbox::ChannelError> {
        Err(crate::outbox::ChannelError::NotSent(route.to_string()))
    }
}

/// Tokens as the stand-in's identity endpoint mints them: one audience per scope (ARM's for
/// ARM, Key Vault's for a vault), so a read of a key is authorised as in Azure.
struct SimTokens {
    principal: Principal,
    tenant: String,
}

impl crate::identity::TokenSource for SimTokens {
    fn token<'a>(&'a self, scope: &'a str) -> crate::identity::TokenFuture<'a> {
        let (token, _) = azure_sim::identity::mint_token(&azure_sim::identity::TokenRequest {
            principal: &self.principal,
            tenant_id: &self.tenant,
            audience: scope.trim_end_matches("/.default"),
            lifetime_secs: 3600,
            idtyp: if self.principal.upn.is_some() { "user" } else { "app" },
        });
        Box::pin(async move { Ok(azure_core::credentials::Secret::new(token)) })
    }
}

struct Harness {
    sim: SimHandle,
    store: StateStore,
    ctx: Context,
    _dir: TempDir,
}

impl Harness {
    /// keyguard as the function app's managed identity; `config`: profiles and settings.
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
        let dir = TempDir::new("keyguard-reconcile");
        let backend: Arc<dyn TableBackend> = Arc::new(EmbeddedBackend::open(&dir.path().join("state.redb")).unwrap());
        let store = StateStore::new(wrap(backend)).await.unwrap();
        let config = Arc::new(Config::from_toml_str(&format!("{config}\n{ROUTES}"), "keyguard.toml").unwrap());
        let tokens: Arc<dyn crate::identity::TokenSource> = Arc::new(SimTokens {
            principal: keyguard,
            tenant: sim.state().tenant_id().to_string(),
        });
        let dispatcher = Arc::new(Dispatcher::new(store.clone(), Arc::new(NoChannels), 3));
        let alerter = Arc::new(Alerter::new(config.clone(), store.clone(), dispatcher));
        let ctx = crate::test_support::reconcile_context(&sim, tokens, store.clone(), (*config).clone())
            .with_alerter(alerter);
        Harness {
            sim,
            store,
            ctx,
            _dir: dir,
        }
    }

    /// The timer's real look at the resource (it records what it sees).
    async fn timer_look(&self, id: &ResourceId) -> Decision {
        self.look(id, Trigger::Reconcile, "timer", false, None).await.unwrap()
    }

    /// One reconcile outside the event path; `listed`: the body a sweep's listing returned.
    async fn look(
        &self,
        id: &ResourceId,
        trigger: Trigger,
        correlation_id: &str,
        dry_run: bool,
        listed: Option<Value>,
    ) -> Result<Decision, ReconcileError> {
        let attempt = Attempt::new(trigger, correlation_id, dry_run).listed(listed);
        reconcile(&self.ctx, id, attempt).await
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

    /// The vault named `name` exists in `subscription`: Resource Graph lists it, so the
    /// key-swap guard counts it as part of the estate.
    fn seed_vault(&self, subscription: &str, name: &str) {
        let vault = azure_sim::vaults::key_vault(subscription, "rg-keys", name, azure_sim::DEFAULT_TENANT_ID);
        self.sim.state().upsert_resources(vec![vault]).unwrap();
    }

    async fn outbox(&self) -> Vec<OutboxEntry> {
        let entries = self.store.outbox_entries().await.unwrap();
        entries.into_iter().map(|e| e.value).collect()
    }
}

mod alerts_once;
mod baselines;
mod estate;
mod keyswap;
mod state;
mod steps;
mod tags;
