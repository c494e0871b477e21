//! `keyguard serve` (under the Functions host) and `keyguard webhook` (Event Grid straight to
//! keyguard): build the app state, listen until shutdown, then flush the store.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use functions_runtime::HostEnv;

use super::args::WebhookArgs;
use crate::environment::Environment;
use crate::http::auth::launch::{AccessModes, Launch};
use crate::http::{self, AppState};

pub async fn serve(port: Option<u16>, host: HostEnv) -> anyhow::Result<ExitCode> {
    let settings = Environment::from_env()?;
    let port = host
        .port
        .or(port)
        .context("no port: set FUNCTIONS_CUSTOMHANDLER_PORT or pass --port")?;
    let launch = Launch::Serve {
        under_functions_host: host.port.is_some(),
    };
    let state = app_state(&settings, launch).await?;
    tracing::info!(port, config = %settings.config_source, store = %settings.store.describe(), dry_run = settings.dry_run, "keyguard custom handler starting");
    let store = state.reconcile.store.clone();
    functions_runtime::serve(http::functions_router(state), port).await?;
    store.flush().await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn webhook(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let WebhookArgs {
        port,
        bind,
        insecure_no_auth,
    } = args;
    let settings = Environment::from_env()?;
    let launch = Launch::Webhook { bind, insecure_no_auth };
    let state = app_state(&settings, launch).await?;
    let listener = tokio::net::TcpListener::bind((bind, port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "keyguard webhook listening on /api/events");
    let store = state.reconcile.store.clone();
    functions_runtime::serve_listener(
        http::webhook_router(state),
        listener,
        functions_runtime::shutdown_signal(),
    )
    .await?;
    store.flush().await?;
    Ok(ExitCode::SUCCESS)
}

/// Builds the authenticators for the command (`launch`) and the reconcile context and, when alert routes
/// are configured, starts the outbox sender. A credential setting that is missing or unusable
/// stops start-up here, before anything listens.
async fn app_state(settings: &Environment, launch: Launch) -> anyhow::Result<AppState> {
    let modes = AccessModes::from_lookup(|name| std::env::var(name).ok(), launch)?;
    let auth = modes.authenticators(settings.http_client()?);
    let context = Arc::new(settings.build_context().await?);
    if let Some(alerter) = &context.alerter {
        tokio::spawn(
            alerter
                .dispatcher()
                .clone()
                .run_forever(std::time::Duration::from_secs(5)),
        );
    }
    Ok(AppState {
        reconcile: context,
        sweep: settings.sweep.clone(),
        retention: settings.retention(),
        auth: auth.api,
        events_auth: auth.events,
        dry_run: settings.dry_run,
    })
}
