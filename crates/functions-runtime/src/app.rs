//! The app builder: payload-mode functions plus ordinary routes, as one axum `Router`.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::envelope::{decode_envelope, retry_count};
use crate::{Invocation, InvocationError, InvocationResult};

/// Default request body limit. Event Grid events are at most 1 MB and the host adds
/// little, so 4 MiB leaves room without letting a stray upload buffer unbounded memory.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A registered function with its state and `T` already captured, so functions
/// registered before and after `with_state` can live in one list.
type ErasedHandler = Arc<dyn Fn(RawInvocation) -> BoxFuture<Result<InvocationResult, InvocationError>> + Send + Sync>;

struct RawInvocation {
    function_name: String,
    trigger: Value,
    metadata: serde_json::Map<String, Value>,
    invocation_id: Option<String>,
}

struct Registered {
    name: String,
    binding: String,
    handler: ErasedHandler,
}

/// Builds the router a custom handler serves to the Functions host.
///
/// Function handlers are plain `async fn(Invocation<T>, S)`; everything about the wire
/// format (envelope, encodings, status codes, JSON error bodies) stays in here.
pub struct FunctionApp<S = ()> {
    state: S,
    functions: Vec<Arc<Registered>>,
    routes: Router,
    body_limit: usize,
}

impl Default for FunctionApp<()> {
    fn default() -> Self {
        Self::new()
    }
}

impl FunctionApp<()> {
    pub fn new() -> Self {
        Self {
            state: (),
            functions: Vec::new(),
            routes: Router::new(),
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

impl<S: Clone + Send + Sync + 'static> FunctionApp<S> {
    /// Replaces the state passed to functions registered from now on. Functions already
    /// registered keep the state they were registered with.
    pub fn with_state<S2: Clone + Send + Sync + 'static>(self, state: S2) -> FunctionApp<S2> {
        FunctionApp {
            state,
            functions: self.functions,
            routes: self.routes,
            body_limit: self.body_limit,
        }
    }

    /// Registers a payload-mode function answered at `POST /{name}`.
    ///
    /// `binding` is the trigger binding name from function.json (e.g. `eventGridEvent`).
    /// If `Data` lacks it but holds exactly one entry, that entry is used, so a renamed
    /// binding does not turn every invocation into a 400.
    ///
    /// # Panics
    /// If `name` is empty, contains anything but ASCII letters, digits, `_` or `-` (the
    /// characters a function folder name can have), or is registered twice. These are
    /// start-up programming errors, better caught before the host starts posting.
    pub fn function<T, F, Fut>(mut self, name: &str, binding: &str, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Invocation<T>, S) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<InvocationResult, InvocationError>> + Send,
    {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "invalid function name {name:?}: use the function folder name (letters, digits, '_' or '-')"
        );
        assert!(
            !self.functions.iter().any(|f| f.name == name),
            "function {name:?} registered twice"
        );
        let state = self.state.clone();
        let binding_name = binding.to_owned();
        let erased: ErasedHandler = Arc::new(move |raw: RawInvocation| {
            let handler = handler.clone();
            let state = state.clone();
            let binding = binding_name.clone();
            Box::pin(async move {
                let data = serde_json::from_value::<T>(raw.trigger).map_err(|e| {
                    InvocationError::rejected(
                        400,
                        "InvalidTriggerValue",
                        format!("trigger value of binding \"{binding}\" has an unexpected shape: {e}"),
                    )
                })?;
                let retry_count = retry_count(&raw.metadata);
                let invocation = Invocation {
                    function_name: raw.function_name,
                    data,
                    metadata: raw.metadata,
                    invocation_id: raw.invocation_id,
                    retry_count,
                };
                handler(invocation, state).await
            })
        });
        self.functions.push(Arc::new(Registered {
            name: name.to_owned(),
            binding: binding.to_owned(),
            handler: erased,
        }));
        self
    }

    /// Merges ordinary axum routes: forwarded/proxied HTTP functions at `/api/...`, or a
    /// plain Event Grid webhook endpoint.
    ///
    /// These routes get no envelope handling and no Content-Type check; they do share
    /// the panic guard, the JSON 404/405 answers and the body limit for axum extractors.
    /// `GET /` is reserved for the host's readiness probe.
    pub fn routes(mut self, router: Router) -> Self {
        self.routes = self.routes.merge(router);
        self
    }

    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    pub fn into_router(self) -> Router {
        let limit = self.body_limit;
        let mut router = Router::new().route("/", get(health));
        for f in self.functions {
            let path = format!("/{}", f.name);
            router = router.route(&path, post(move |req: Request| invoke(f.clone(), limit, req)));
        }
        router
            .merge(self.routes)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(limit))
            .layer(CatchPanicLayer::custom(panic_response))
    }
}

/// The host polls `GET /` until anything answers and later pings it for latency, so it
/// must not depend on anything that can be slow.
async fn health() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn not_found(uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("no function or route at {}", uri.path()),
    )
}

async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "method not allowed for this path",
    )
}

/// The panic payload goes to the log only: it can carry internal detail that the caller
/// (possibly not the host) should not see.
fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    tracing::error!(panic = %detail, "request handler panicked");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "internal error")
}

/// `{"error":{"code":..,"message":..}}` with `Content-Type: application/json`; the host
/// fails on any other media type, even for error answers.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

async fn invoke(f: Arc<Registered>, limit: usize, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let invocation_id = parts
        .headers
        .get(INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let span = tracing::info_span!("invocation", function = %f.name, invocation_id = invocation_id.as_deref());
    async move {
        let started = Instant::now();
        let response = match run(&f, limit, &parts.headers, body, invocation_id).await {
            Ok(result) => (StatusCode::OK, axum::Json(result)).into_response(),
            Err(err) => {
                let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
                if status.is_server_error() {
                    tracing::warn!(error = %err, "invocation failed (retryable)");
                } else {
                    tracing::warn!(error = %err, code = err.code(), "invocation rejected");
                }
                error_response(status, err.code(), &err.to_string())
            }
        };
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(status = response.status().as_u16(), elapsed_ms, "invocation finished");
        response
    }
    .instrument(span)
    .await
}

enum ReadError {
    TooLarge,
    Body(axum::Error),
}

/// Reads at most `limit` bytes; past it keeps reading and discarding up to `drain_cap`.
async fn read_limited(mut body: Body, limit: usize, drain_cap: usize) -> Result<Vec<u8>, ReadError> {
    let mut buffer = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Body)?;
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen > drain_cap {
            break;
        }
        if seen <= limit {
            buffer.extend_from_slice(&data);
        }
    }
    if seen > limit {
        Err(ReadError::TooLarge)
    } else {
        Ok(buffer)
    }
}

async fn drain(body: Body, drain_cap: usize) {
    let _ = read_limited(body, 0, drain_cap).await;
}

async fn run(
    f: &Registered,
    limit: usize,
    headers: &HeaderMap,
    body: Body,
    invocation_id: Option<String>,
) -> Result<InvocationResult, InvocationError> {
    // The client is usually still sending when we decide to refuse; reading (and discarding) a
    // bounded amount first lets it receive our answer instead of a reset connection.
    let drain_cap = limit.saturating_mul(4).max(16 * 1024 * 1024);
    if !is_json(headers) {
        drain(body, drain_cap).await;
        return Err(InvocationError::rejected(
            415,
            "UnsupportedMediaType",
            "Content-Type must be application/json",
        ));
    }
    let too_large = || {
        InvocationError::rejected(
            413,
            "PayloadTooLarge",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX)) {
        drain(body, drain_cap).await;
        return Err(too_large());
    }
    // Content-Length may be absent (chunked) or wrong, so the limit is enforced while reading too.
    let bytes = match read_limited(body, limit, drain_cap).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge) => return Err(too_large()),
        Err(ReadError::Body(e)) => {
            return Err(InvocationError::rejected(
                400,
                "InvalidEnvelope",
                format!("could not read request body: {e}"),
            ));
        }
    };
    let (trigger, metadata) = decode_envelope(&bytes, &f.binding)
        .map_err(|e| InvocationError::rejected(400, "InvalidEnvelope", e.to_string()))?;
    (f.handler)(RawInvocation {
        function_name: f.name.clone(),
        trigger,
        metadata,
        invocation_id,
    })
    .await
}
