//! Invocation logs carry the function name and invocation id.
//!
//! Alone in its own test binary: tracing caches per-callsite interest process-wide, so a
//! scoped subscriber races with other tests hitting the same callsites in parallel.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use functions_runtime::{FunctionApp, Invocation, InvocationError, InvocationResult};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn fail_retryable(_: Invocation<Value>, (): ()) -> Result<InvocationResult, InvocationError> {
    Err(InvocationError::retryable("ARM returned 503"))
}

#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn invocation_logs_carry_function_and_invocation_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let req = Request::post("/Retry")
        .header(header::CONTENT_TYPE, "application/json")
        .header("X-Azure-Functions-InvocationId", "inv-42")
        .body(Body::from(r#"{"Data":{"t":1}}"#))
        .expect("req");
    let app = FunctionApp::new().function("Retry", "t", fail_retryable).into_router();
    let resp = app.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status().as_u16(), 500);
    let text = String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("utf8");
    let finished: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == json!("invocation finished"))
        .unwrap_or_else(|| panic!("no finish line in {text}"));
    assert_eq!(finished["span"]["name"], json!("invocation"));
    assert_eq!(finished["span"]["function"], json!("Retry"));
    assert_eq!(finished["span"]["invocation_id"], json!("inv-42"));
    assert_eq!(finished["fields"]["status"], json!(500));
}
