//! The router as the host sees it, driven with `tower::ServiceExt::oneshot`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use functions_runtime::{FunctionApp, Invocation, InvocationError, InvocationResult, serve_listener};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "eventType")]
    event_type: String,
}

async fn echo(inv: Invocation<Event>, (): ()) -> Result<InvocationResult, InvocationError> {
    let mut r = InvocationResult::new();
    r.log(format!("handled {}", inv.data.event_type)).return_value(json!({
        "id": inv.data.id,
        "function": inv.function_name,
        "invocationId": inv.invocation_id,
        "retryCount": inv.retry_count,
        "subject": inv.metadata.get("subject"),
    }));
    Ok(r)
}

async fn fail_retryable(_: Invocation<Value>, (): ()) -> Result<InvocationResult, InvocationError> {
    Err(InvocationError::retryable("ARM returned 503"))
}

async fn fail_rejected(_: Invocation<Value>, (): ()) -> Result<InvocationResult, InvocationError> {
    Err(InvocationError::rejected(
        422,
        "UnsupportedEvent",
        "event type not handled",
    ))
}

async fn explode(_: Invocation<Value>, (): ()) -> Result<InvocationResult, InvocationError> {
    panic!("secret detail in panic")
}

fn app() -> Router {
    FunctionApp::new()
        .function("EventGridTrigger", "eventGridEvent", echo)
        .function("Retry", "t", fail_retryable)
        .function("Reject", "t", fail_rejected)
        .function("Boom", "t", explode)
        .routes(Router::new().route("/api/ping", get(|| async { "pong" })))
        .body_limit(1024)
        .into_router()
}

fn post(path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(path);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).expect("valid request")
}

fn envelope(trigger: Value) -> String {
    json!({"Data": {"eventGridEvent": trigger}, "Metadata": {"subject": "\"/subscriptions/x\""}}).to_string()
}

const EVENT: &str = r#"{"id":"e1","eventType":"Microsoft.Resources.ResourceWriteSuccess","data":{}}"#;

/// Sends the request; asserts the invariant every answer must satisfy (JSON object body).
async fn send(router: Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router.oneshot(req).await.expect("router is infallible");
    let status = resp.status();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/json"),
        "status {status}: content-type {ct:?}"
    );
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("JSON body");
    assert!(
        body.as_object().is_some_and(|o| !o.is_empty()),
        "non-empty object: {body}"
    );
    (status, body)
}

fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], json!(code), "{}", got.1);
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn get_root_answers_ok() {
    let (status, body) = send(app(), Request::get("/").body(Body::empty()).expect("req")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], json!("ok"));
}

#[tokio::test]
async fn typed_success_with_object_trigger() {
    let req = post(
        "/EventGridTrigger",
        Some("application/json"),
        envelope(serde_json::from_str(EVENT).expect("json")),
    );
    let (status, body) = send(app(), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["Outputs"], json!({}));
    assert_eq!(
        body["Logs"],
        json!(["handled Microsoft.Resources.ResourceWriteSuccess"])
    );
    assert_eq!(body["ReturnValue"]["id"], json!("e1"));
    assert_eq!(body["ReturnValue"]["function"], json!("EventGridTrigger"));
    assert_eq!(
        body["ReturnValue"]["subject"],
        json!("/subscriptions/x"),
        "metadata un-double-encoded"
    );
    assert_eq!(body["ReturnValue"]["invocationId"], Value::Null);
}

#[tokio::test]
async fn string_and_double_encoded_triggers() {
    let once = json!(EVENT);
    let twice = json!(serde_json::to_string(EVENT).expect("encode"));
    for trigger in [once, twice] {
        let req = post(
            "/EventGridTrigger",
            Some("application/json; charset=utf-8"),
            envelope(trigger.clone()),
        );
        let (status, body) = send(app(), req).await;
        assert_eq!(status, StatusCode::OK, "{trigger}: {body}");
        assert_eq!(body["ReturnValue"]["id"], json!("e1"));
    }
}

#[tokio::test]
async fn invocation_id_and_retry_count_reach_handler() {
    let body = json!({"Data": {"eventGridEvent": serde_json::from_str::<Value>(EVENT).expect("json")},
                      "Metadata": {"RetryContext": {"RetryCount": 2, "MaxRetryCount": 5}}});
    let req = Request::post("/EventGridTrigger")
        .header(header::CONTENT_TYPE, "Application/JSON")
        .header("X-Azure-Functions-InvocationId", "0f8fad5b-d9cb-469f-a165-70867728950e")
        .body(Body::from(body.to_string()))
        .expect("req");
    let (status, body) = send(app(), req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["ReturnValue"]["invocationId"],
        json!("0f8fad5b-d9cb-469f-a165-70867728950e")
    );
    assert_eq!(body["ReturnValue"]["retryCount"], json!(2));
}

#[tokio::test]
async fn bad_envelopes_are_400() {
    let cases = [
        ("{not json", "InvalidEnvelope"),
        (r#"{"Metadata":{}}"#, "InvalidEnvelope"),
        (r#"{"Data":[1]}"#, "InvalidEnvelope"),
        (r#"{"Data":{"a":1,"b":2}}"#, "InvalidEnvelope"),
        (r#"{"Data":{"eventGridEvent":{"id":"e1"}}}"#, "InvalidTriggerValue"),
        (r#"{"Data":{"eventGridEvent":"not an event"}}"#, "InvalidTriggerValue"),
    ];
    for (body, code) in cases {
        let got = send(app(), post("/EventGridTrigger", Some("application/json"), body)).await;
        assert_error(&got, 400, code);
    }
    let got = send(
        app(),
        post(
            "/EventGridTrigger",
            Some("application/json"),
            r#"{"Data":{"eventGridEvent":{"id":"e1"}}}"#,
        ),
    )
    .await;
    let msg = got.1["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("eventType") && msg.contains("eventGridEvent"), "{msg}");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let big = "x".repeat(1025);
    // Declared up front.
    let req = Request::post("/EventGridTrigger")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big.clone()))
        .expect("req");
    assert_error(&send(app(), req).await, 413, "PayloadTooLarge");
    // No Content-Length (as with chunked transfer): caught while reading.
    assert_error(
        &send(app(), post("/EventGridTrigger", Some("application/json"), big)).await,
        413,
        "PayloadTooLarge",
    );
    // Exactly at the limit is read (and then fails as JSON, not as size).
    let at_limit = "x".repeat(1024);
    assert_error(
        &send(app(), post("/EventGridTrigger", Some("application/json"), at_limit)).await,
        400,
        "InvalidEnvelope",
    );
}

#[tokio::test]
async fn non_json_content_type_is_415() {
    for ct in [
        Some("text/plain"),
        Some("application/jsonx"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let got = send(app(), post("/EventGridTrigger", ct, envelope(json!(EVENT)))).await;
        assert_error(&got, 415, "UnsupportedMediaType");
    }
}

#[tokio::test]
async fn unknown_function_is_404_and_wrong_method_405() {
    assert_error(
        &send(app(), post("/NoSuchFunction", Some("application/json"), "{}")).await,
        404,
        "NotFound",
    );
    let get_fn = Request::get("/EventGridTrigger").body(Body::empty()).expect("req");
    assert_error(&send(app(), get_fn).await, 405, "MethodNotAllowed");
    assert_error(
        &send(app(), post("/", Some("application/json"), "{}")).await,
        405,
        "MethodNotAllowed",
    );
}

#[tokio::test]
async fn panic_is_json_500_without_detail() {
    let got = send(app(), post("/Boom", Some("application/json"), r#"{"Data":{"t":{}}}"#)).await;
    assert_error(&got, 500, "InternalError");
    assert_eq!(got.1["error"]["message"], json!("internal error"));
    assert!(!got.1.to_string().contains("secret"));
}

#[tokio::test]
async fn handler_errors_map_to_status() {
    let got = send(app(), post("/Retry", Some("application/json"), r#"{"Data":{"t":1}}"#)).await;
    assert_error(&got, 500, "InvocationFailed");
    assert_eq!(got.1["error"]["message"], json!("ARM returned 503"));
    let got = send(app(), post("/Reject", Some("application/json"), r#"{"Data":{"t":1}}"#)).await;
    assert_error(&got, 422, "UnsupportedEvent");
    assert_eq!(got.1["error"]["message"], json!("event type not handled"));
}

#[tokio::test]
async fn merged_routes_skip_envelope_rules() {
    let resp = app()
        .oneshot(Request::get("/api/ping").body(Body::empty()).expect("req"))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&bytes[..], b"pong");
}

#[tokio::test]
async fn state_reaches_handlers() {
    let counter = Arc::new(AtomicUsize::new(0));
    let router = FunctionApp::new()
        .with_state(counter.clone())
        .function("Count", "t", |inv: Invocation<u32>, c: Arc<AtomicUsize>| async move {
            c.fetch_add(inv.data as usize, Ordering::SeqCst);
            Ok(InvocationResult::new())
        })
        .into_router();
    let (status, _) = send(router, post("/Count", Some("application/json"), r#"{"Data":{"t":5}}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(counter.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn serve_listener_stops_on_shutdown_signal() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_listener(app(), listener, async {
        let _ = rx.await;
    }));
    tx.send(()).expect("server waiting");
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops in time");
    assert!(result.expect("task not panicked").is_ok());
}

#[tokio::test]
async fn shutdown_lets_in_flight_invocation_finish() {
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let router = FunctionApp::new()
        .with_state((release.clone(), started.clone()))
        .function(
            "Slow",
            "t",
            |_: Invocation<Value>,
             (release, started): (Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>)| async move {
                started.notify_one();
                release.notified().await;
                Ok(InvocationResult::new())
            },
        )
        .into_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_listener(router, listener, async {
        let _ = rx.await;
    }));

    let body = r#"{"Data":{"t":1}}"#;
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST /Slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.expect("write");
    started.notified().await;
    tx.send(()).expect("server waiting");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!server.is_finished(), "server must wait for the in-flight invocation");
    release.notify_one();

    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut response))
        .await
        .expect("reply")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"Outputs\":{}"), "{response}");
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops");
    assert!(result.expect("task").is_ok());
}
