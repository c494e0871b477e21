//! `keyguard serve` (under the Functions host) and `keyguard webhook` (Event Grid straight to
//! keyguard): listen, build the app state, serve until shutdown, then flush the store.
//!
//! Both bind their port before anything slow (see [`crate::startup`]): a request that arrives
//! while the state is being built waits in the listener's queue instead of being refused, and
//! the token and the connection to ARM are fetched in the background meanwhile.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use axum::Router;
use functions_runtime::HostEnv;
use tokio::net::TcpListener;

use super::args::WebhookArgs;
use crate::environment::Environment;
use crate::http::auth::launch::{AccessModes, Launch};
use crate::http::in_flight::InFlight;
use crate::http::{self, AppState};
use crate::startup::{self, FirstAnswer};

pub async fn serve(port: Option<u16>, host: HostEnv) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let settings = Environment::from_env()?;
    let port = host
        .port
        .or(port)
        .context("no port: set FUNCTIONS_CUSTOMHANDLER_PORT or pass --port")?;
    let launch = Launch::Serve {
        under_functions_host: host.port.is_some(),
    };
    // Checked before binding, like every credential setting: a broken route must not open the port.
    settings.check_alert_routes()?;
    let modes = AccessModes::from_lookup(|name| std::env::var(name).ok(), launch)?;
    let listener = listen(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), started).await?;
    let state = state_with(&settings, modes, started).await?;
    tracing::info!(port, config = %settings.config_source, store = %settings.store.describe(), dry_run = settings.dry_run, "keyguard custom handler starting");
    let store = state.reconcile.store.clone();
    let router = observed(http::functions_router(state), started, settings.max_in_flight);
    functions_runtime::serve_listener(router, listener, functions_runtime::shutdown_signal()).await?;
    store.flush().await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn webhook(args: WebhookArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let WebhookArgs {
        port,
        bind,
        insecure_no_auth,
    } = args;
    let settings = Environment::from_env()?;
    let launch = Launch::Webhook { bind, insecure_no_auth };
    // Checked before binding: a bad credential setting must not even open the port.
    let modes = AccessModes::from_lookup(|name| std::env::var(name).ok(), launch)?;
    settings.check_alert_routes()?;
    let listener = listen(SocketAddr::new(bind, port), started).await?;
    tracing::info!(addr = %listener.local_addr()?, "keyguard webhook listening on /api/events");
    let state = state_with(&settings, modes, started).await?;
    let store = state.reconcile.store.clone();
    let router = observed(http::webhook_router(state), started, settings.max_in_flight);
    functions_runtime::serve_listener(router, listener, functions_runtime::shutdown_signal()).await?;
    store.flush().await?;
    Ok(ExitCode::SUCCESS)
}

async fn listen(addr: SocketAddr, started: Instant) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let loopback = matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
    // The port actually bound (a `--port 0` picks one), so whoever started us can find it.
    let port = listener.local_addr().map_or(addr.port(), |a| a.port());
    tracing::info!(
        port,
        loopback,
        since_start_ms = started.elapsed().as_secs_f64() * 1000.0,
        "custom handler listening"
    );
    Ok(listener)
}

/// The router with the in-flight bound and the first answer's timing around it.
fn observed(router: Router, started: Instant, max_in_flight: usize) -> Router {
    let first = FirstAnswer::new(started);
    let in_flight = InFlight::new(max_in_flight);
    router
        .layer(axum::middleware::from_fn(move |request, next| {
            in_flight.clone().limit(request, next)
        }))
        .layer(axum::middleware::from_fn(move |request, next| {
            first.clone().observe(request, next)
        }))
}

/// Builds the authenticators and the reconcile context and, when alert routes are configured,
/// starts the outbox sender. Credentials and routes were checked before the port opened.
async fn state_with(settings: &Environment, modes: AccessModes, started: Instant) -> anyhow::Result<AppState> {
    let listening = Instant::now();
    // One HTTP client (one connection pool) for the identity endpoint, ARM and the authenticators.
    let http = settings.http_client()?;
    let auth = modes.authenticators(http.clone());
    let egress = settings.egress_with(http)?;
    // The token and the TLS connection to ARM, while the store opens.
    startup::spawn_warm_up(egress.clone());
    let opening = Instant::now();
    let context = Arc::new(settings.build_context_with(egress).await?);
    let store_open = opening.elapsed();
    if let Some(alerter) = &context.alerter {
        tokio::spawn(
            alerter
                .dispatcher()
                .clone()
                .run_forever(std::time::Duration::from_secs(5)),
        );
    }
    startup::log_ready(started, listening, store_open);
    Ok(AppState {
        reconcile: context,
        sweep: settings.sweep.clone(),
        retention: settings.retention(),
        auth: auth.api,
        events_auth: auth.events,
        dry_run: settings.dry_run,
    })
}
