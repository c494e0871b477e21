//! Cold start: what a freshly spawned handler does before its first event, and how long each
//! part took.
//!
//! The Functions host starts the handler when the first event is already waiting, and waits for
//! the port before it delivers. So `keyguard serve` listens first, then builds its state while
//! the slow parts of a first event — the token, the TLS connection to ARM — run concurrently in
//! the background. Whatever has finished by the time the first event is taken costs it nothing;
//! whatever has not, it waits for only the rest of (the token request is shared, not repeated:
//! the credential caches it, and the connection goes back to the client's pool).
//!
//! Each part logs its duration at `info` once, so a cold start can be taken apart from the log:
//! `startup` (`listen_ms`, `state_ms`: profiles, clients, store open), `warm-up` (`token_ms`,
//! `connect_ms`) and `first event answered` (`since_start_ms`, `handling_ms`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::egress::Egress;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Fetches keyguard's ARM token and opens a pooled connection to the ARM endpoint, in the
/// background; failures are left for the first event to meet (and report) as it would anyway.
pub fn spawn_warm_up(egress: Arc<Egress>) {
    tokio::spawn(async move {
        let start = Instant::now();
        let scope = egress.policy().arm_scope();
        let arm = egress.policy().arm_endpoint().clone();
        // Two tasks: the token comes from the identity endpoint, the connection goes to ARM,
        // and neither waits for the other (a TLS handshake is CPU work on a worker thread).
        let for_token = egress.clone();
        let token = tokio::spawn(async move {
            let outcome = for_token.own_tokens().token(&scope).await.map(|_| ());
            (outcome, start.elapsed())
        });
        let connect = tokio::spawn(async move {
            let outcome = egress.preconnect(&arm).await;
            (outcome, start.elapsed())
        });
        let (Ok((token, token_took)), Ok((connect, connect_took))) = tokio::join!(token, connect) else {
            return;
        };
        tracing::info!(
            token_ms = ms(token_took),
            token_ok = token.is_ok(),
            connect_ms = ms(connect_took),
            connect_ok = connect.is_ok(),
            "warm-up"
        );
        if let Err(e) = token {
            tracing::warn!(error = %e, "warm-up could not fetch the ARM token; the first event will try again");
        }
        if let Err(e) = connect {
            tracing::warn!(error = %e, "warm-up could not reach ARM; the first event will try again");
        }
    });
}

/// Logs the first answer's time since start-up (once per process), for the cold-start figure.
#[derive(Clone)]
pub struct FirstAnswer {
    started: Instant,
    logged: Arc<AtomicBool>,
}

impl FirstAnswer {
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            logged: Arc::default(),
        }
    }

    pub async fn observe(self, request: Request, next: Next) -> Response {
        let taken = Instant::now();
        let response = next.run(request).await;
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::info!(
                since_start_ms = ms(self.started.elapsed()),
                handling_ms = ms(taken.elapsed()),
                status = response.status().as_u16(),
                "first event answered"
            );
        }
        response
    }
}

/// Start-up's own parts, logged once the state is ready: `state_ms` from listening until the
/// state was ready, of which `store_open_ms` opening the store (and the rest the profiles'
/// clients and the HTTP client with its root certificates).
pub fn log_ready(started: Instant, listening: Instant, store_open: Duration) {
    tracing::info!(
        listen_ms = ms(listening.duration_since(started)),
        state_ms = ms(listening.elapsed()),
        store_open_ms = ms(store_open),
        "startup"
    );
}
