//! Serving the router to the host, with a shutdown that lets invocations finish.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use tokio::net::TcpListener;

/// Bind 127.0.0.1:{port} and serve until SIGTERM/SIGINT (graceful: in-flight invocations finish).
///
/// Loopback only: the host always dials 127.0.0.1, and nothing else should reach the
/// handler without going through the host's auth.
pub async fn serve(router: Router, port: u16) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    tracing::info!(port, "custom handler listening on 127.0.0.1");
    serve_listener(router, listener, shutdown_signal()).await
}

/// Serves on an already bound listener until `shutdown` resolves, then stops accepting
/// and waits for in-flight requests. Exists so tests (and callers binding port 0) can
/// pick the listener and the shutdown trigger.
pub async fn serve_listener(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    tracing::info!("custom handler stopped");
    Ok(())
}

/// Resolves on SIGTERM (what the host and the platform send on scale-in or restart) or
/// Ctrl-C. If a signal handler cannot be installed, that source is logged and ignored
/// instead of shutting down at once.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
