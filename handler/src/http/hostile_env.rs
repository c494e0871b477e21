//! What the hostile input table ([`super::hostile_tests`]) and its socket test run against: one
//! azure-sim, and the real routers of `keyguard serve` and `keyguard webhook` over a reconcile
//! context for each [`Setting`].

use std::sync::Arc;

use super::auth::test_tokens::{JwksServer, SIGNER, entra_config};
use super::hostile_tests::Setting;
use super::test_env::{API_KEY, Env, UnreachableStore, WEBHOOK_KEY, app_state, context};
use super::*;
use crate::http::auth::ApiAuthMode;
use crate::store::StateStore;

/// The routers of one [`Setting`].
pub(super) struct Routers {
    pub(super) functions: Router,
    pub(super) webhook: Router,
}

impl Routers {
    fn over(context: Arc<crate::reconcile::Context>, api: ApiAuthMode, events: ApiAuthMode) -> Routers {
        Routers {
            functions: functions_router(app_state(
                context.clone(),
                ApiAuthMode::FunctionsHost,
                ApiAuthMode::Closed,
                false,
            )),
            webhook: webhook_router(app_state(context, api, events, false)),
        }
    }

    pub(super) fn keyed(context: Arc<crate::reconcile::Context>) -> Routers {
        Routers::over(
            context,
            ApiAuthMode::Key(API_KEY.to_string().into()),
            ApiAuthMode::Key(WEBHOOK_KEY.to_string().into()),
        )
    }
}

/// The demo resources again, in a subscription no profile of [`Setting::Scoped`] covers.
pub(super) const OTHER_SUBSCRIPTION: &str = "0b0b0b0b-0000-4000-8000-00000000beef";
/// An account ARM refuses to show keyguard (403), as in a subscription it has no role on.
pub(super) const FORBIDDEN_ACCOUNT: &str = "sthostileforbidden";

fn scoped_config() -> keyguard_core::config::Config {
    let text = format!(
        "[[profile]]\nname = \"demo-only\"\nrequire = \"cmk\"\nmode = \"alert\"\nscope = {{ subscriptions = [\"{}\"] }}\n\n\
         [[exemption]]\nresource = \"{}\"\nreason = \"CHG-0001\"\nexpires = 2020-01-01\n",
        azure_sim::DEMO_SUBSCRIPTION,
        super::test_env::account("stmmklogs"),
    );
    keyguard_core::config::Config::from_toml_str(&text, "scoped.toml").unwrap()
}

pub(super) struct Table {
    pub(super) env: Env,
    settings: Vec<(Setting, Routers)>,
    _jwks: JwksServer,
}

impl Table {
    pub(super) async fn start() -> Table {
        let env = Env::start().await;
        env.sim
            .state()
            .upsert_resources(azure_sim::demo_seed(OTHER_SUBSCRIPTION, "rg-elsewhere"))
            .unwrap();
        env.sim.state().add_fault(azure_sim::FaultSpec {
            path_contains: Some(FORBIDDEN_ACCOUNT.into()),
            status: Some(403),
            ..Default::default()
        });
        let jwks = JwksServer::start(&[&SIGNER]).await;
        let down = StateStore::new(Arc::new(UnreachableStore)).await.unwrap();
        let over =
            |tokens, store, config| Arc::new(crate::test_support::reconcile_context(&env.sim, tokens, store, config));
        let builtin = keyguard_core::config::Config::builtin_default;
        let entra = |key: &str| ApiAuthMode::Either {
            key: key.to_string().into(),
            entra: entra_config(&jwks),
        };
        let settings = vec![
            (Setting::Default, Routers::keyed(env.context.clone())),
            (
                Setting::StoreDown,
                Routers::keyed(over(env.identity(), down, builtin())),
            ),
            (
                Setting::NoToken,
                Routers::keyed(Arc::new(context(
                    &env.sim,
                    Arc::new(super::test_env::FailingCredential),
                    env.fresh_store().await,
                ))),
            ),
            (
                Setting::Scoped,
                Routers::keyed(over(env.identity(), env.fresh_store().await, scoped_config())),
            ),
            (
                Setting::Entra,
                Routers::over(env.context.clone(), entra(API_KEY), entra(WEBHOOK_KEY)),
            ),
        ];
        Table {
            env,
            settings,
            _jwks: jwks,
        }
    }

    pub(super) fn routers(&self, setting: Setting) -> &Routers {
        &self.settings.iter().find(|(s, _)| *s == setting).unwrap().1
    }
}
