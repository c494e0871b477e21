//! A bound on the work one process does at once.
//!
//! Every event in flight holds its parsed body, its ARM response, its store calls and a pooled
//! TLS connection to ARM (about 100 KiB all told, measured in issue 14, item 5). Unbounded, a
//! burst of 200 concurrent deliveries lifts the resident set by some 20 MiB, and the connections
//! stay pooled after it. Past a few dozen, more concurrency buys nothing on a small instance: the
//! store's commits and the CPU are the limit. So `POST`s (events, timer runs, checks and sweeps)
//! beyond the bound wait, with their bodies still unread, until one finishes; reads (health, the
//! API document, findings, audit) never queue behind them.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

/// Default for `KEYGUARD_MAX_IN_FLIGHT`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

#[derive(Clone)]
pub struct InFlight {
    permits: Arc<Semaphore>,
}

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }

    pub async fn limit(self, request: Request, next: Next) -> Response {
        if request.method() != Method::POST {
            return next.run(request).await;
        }
        // Never closed, so acquiring only waits; should it ever fail, serve rather than refuse.
        let _permit = self.permits.acquire().await.ok();
        next.run(request).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn posts_beyond_the_bound_wait_and_reads_do_not() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let (r, m, g) = (running.clone(), most.clone(), gate.clone());
        let limit = InFlight::new(2);
        let app = Router::new()
            .route(
                "/work",
                post(move || {
                    let (r, m, g) = (r.clone(), m.clone(), g.clone());
                    async move {
                        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        g.notified().await;
                        r.fetch_sub(1, Ordering::SeqCst);
                    }
                }),
            )
            .route("/health", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(move |req, next| {
                limit.clone().limit(req, next)
            }));
        let post_work = || Request::post("/work").body(Body::empty()).expect("request");
        let calls: Vec<_> = (0..5).map(|_| tokio::spawn(app.clone().oneshot(post_work()))).collect();
        // Wait until two are running; the other three are parked in the limiter.
        while running.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(running.load(Ordering::SeqCst), 2);
        // A read is served while every permit is taken.
        let health = app
            .clone()
            .oneshot(Request::get("/health").body(Body::empty()).expect("request"))
            .await
            .expect("health");
        assert_eq!(health.status(), 200);
        while calls.iter().any(|c| !c.is_finished()) {
            gate.notify_waiters();
            tokio::task::yield_now().await;
        }
        for call in calls {
            assert_eq!(call.await.expect("join").expect("response").status(), 200);
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "never more than the bound at once");
    }
}
