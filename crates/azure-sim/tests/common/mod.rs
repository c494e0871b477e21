//! Shared helpers for the integration tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_sim::{Principal, SimConfig, SimHandle};
use serde_json::Value;

pub const SUB: &str = "00000000-1111-2222-3333-444444444444";
pub const RG: &str = "rg-test";
pub const FIXTURE_ID: &str =
    "/subscriptions/{subscription-id}/resourceGroups/res9407/providers/Microsoft.Storage/storageAccounts/sto8596";

/// Reads a shared fixture; a missing or invalid file fails the test.
pub fn fixture(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {} is invalid: {e}", path.display()))
}

pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub async fn start(seed: Vec<Value>) -> SimHandle {
    azure_sim::start(
        SimConfig {
            seed,
            ..SimConfig::default()
        },
        loopback(),
    )
    .await
    .unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn human() -> Principal {
    Principal {
        oid: "9d1b7c44-0c1e-4d6f-8a4c-2b1f0e9d8c7b".into(),
        appid: "04b07795-8ddb-461a-bbee-02f9e1bf7b46".into(),
        name: "Mallory Admin".into(),
        upn: Some("mallory@contoso.example".into()),
    }
}

pub fn account_id(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/{name}")
}

/// The MMK fixture body re-homed under `name`, optionally with a system identity.
pub fn mmk_account(name: &str, system_identity: bool) -> Value {
    let mut body = fixture("arm/storage/StorageAccountGetProperties.json")["responses"]["200"]["body"].clone();
    body["id"] = Value::String(account_id(name));
    body["name"] = Value::String(name.into());
    if system_identity {
        body["identity"] = serde_json::json!({
            "type": "SystemAssigned",
            "principalId": "911871cc-ffd1-4fc4-ac11-7a316433ea66",
            "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47"
        });
    }
    body
}

pub fn arm_url(sim: &SimHandle, id: &str, api_version: Option<&str>) -> String {
    match api_version {
        Some(v) => format!("{}{id}?api-version={v}", sim.base_url()),
        None => format!("{}{id}", sim.base_url()),
    }
}

/// Polls `f` until it returns true or the deadline passes.
pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

type Responder = dyn Fn(usize, &Value) -> (u16, String, u64) + Send + Sync;

/// A small HTTP endpoint standing in for the Functions custom handler or a webhook.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self._task.abort();
    }
}

/// Starts a receiver; `respond(call_index, body)` gives (status, body, delay_ms).
pub async fn receiver(respond: impl Fn(usize, &Value) -> (u16, String, u64) + Send + Sync + 'static) -> Receiver {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let respond: Arc<Responder> = Arc::new(respond);
    let g = Arc::clone(&got);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let g = Arc::clone(&g);
        let respond = Arc::clone(&respond);
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let idx = {
                let mut v = g.lock().unwrap();
                v.push(Received {
                    path: parts.uri.path().to_owned(),
                    headers: parts.headers.clone(),
                    body: body.clone(),
                });
                v.len() - 1
            };
            let (status, text, delay) = respond(idx, &body);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            axum::response::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(text))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { url, got, _task: task }
}

/// Asserts an ARM error response: status and `{"error":{"code","message"}}`.
pub async fn assert_arm_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status for {code}");
    let body: Value = resp.json().await.unwrap();
    let err = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"));
    assert_eq!(err["code"], code, "body: {body}");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {body}");
    body
}
