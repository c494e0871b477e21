//! Azure Resource Manager over plain reqwest: GET and PATCH with pinned api-versions, retries on
//! throttling and server errors that honour `Retry-After` and never outlive the caller's deadline,
//! and ARM error bodies surfaced by code (branch on `code`, never on `message`).

use std::sync::Arc;
use std::time::Duration;

use keyguard_core::ResourceId;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use keyguard_core::egress::{Credential, EgressRefusal};
use keyguard_core::operation::PendingOperation;
use url::Url;

use crate::egress::{Egress, EgressError};
use crate::identity::{TokenError, TokenSource};

mod provisioning;
use provisioning::Provisioning;

pub const PUBLIC_CLOUD_ENDPOINT: &str = "https://management.azure.com";

const MIN_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Per-call context: the correlation id that ties an event to every ARM call made for it, and
/// the deadline of the invocation (Event Grid stops waiting after 30 s).
#[derive(Clone, Debug)]
pub struct CallContext {
    pub correlation_id: String,
    pub deadline: Instant,
}

impl CallContext {
    pub fn new(correlation_id: impl Into<String>, budget: Duration) -> Self {
        Self {
            correlation_id: correlation_id.into(),
            deadline: Instant::now() + budget,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// ARM answered with an error that retrying will not fix (400, 403, 409 policy denial ...).
    #[error("ARM returned {status} {code}: {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// Throttling or server errors continued until the time budget ran out.
    #[error("ARM kept failing ({last}) after {attempts} attempts within the time budget")]
    BudgetExhausted { attempts: u32, last: String },
    /// The write was accepted but its long-running operation had not ended when the budget did.
    #[error("long-running operation still running at the end of the time budget")]
    StillRunning(PendingOperation),
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The egress policy refused the URL: never retried.
    #[error(transparent)]
    Refused(#[from] EgressRefusal),
    #[error("ARM response could not be read: {0}")]
    InvalidResponse(String),
}

impl ArmError {
    /// Whether the invocation should fail so that the trigger source (Event Grid) redelivers.
    pub fn retryable(&self) -> bool {
        match self {
            ArmError::BudgetExhausted { .. } => true,
            ArmError::Token(e) => e.retryable(),
            ArmError::Rejected { .. }
            | ArmError::StillRunning(_)
            | ArmError::Refused(_)
            | ArmError::InvalidResponse(_) => false,
        }
    }
}

/// Backoff used when ARM gives no `Retry-After`.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

#[derive(Clone)]
pub struct ArmClient {
    egress: Arc<Egress>,
    base: Url,
    scope: String,
    retry: RetryPolicy,
    counters: Arc<CallCounters>,
}

/// Requests sent and throttled answers received, for sweep reports (how close to the minimum).
#[derive(Debug, Default)]
pub struct CallCounters {
    pub requests: std::sync::atomic::AtomicU64,
    pub throttled: std::sync::atomic::AtomicU64,
}

impl CallCounters {
    pub fn snapshot(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.requests.load(Relaxed), self.throttled.load(Relaxed))
    }
}

/// One page of a listing, with the response headers (throttling quotas live there).
pub struct Page {
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

enum Attempt {
    Done(reqwest::Response),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl ArmClient {
    /// An ARM client for the policy's ARM endpoint: every request goes through `egress`.
    pub fn new(egress: Arc<Egress>) -> Self {
        let base = egress.policy().arm_endpoint().clone();
        let scope = egress.policy().arm_scope();
        Self {
            egress,
            base,
            scope,
            retry: RetryPolicy::default(),
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> &CallCounters {
        &self.counters
    }

    /// POST to an ARM path (`/providers/Microsoft.ResourceGraph/resources?api-version=...`).
    pub async fn post_page(&self, path_and_query: &str, body: &Value, ctx: &CallContext) -> Result<Page, ArmError> {
        let url = self.url(path_and_query);
        let response = self.send_url(Method::POST, &url, Some(body), ctx).await?;
        page_of(response).await
    }

    /// GET a list page: an ARM path, or a `nextLink` (absolute, and only on this endpoint: the
    /// token never leaves it).
    pub async fn get_page(&self, path_or_link: &str, ctx: &CallContext) -> Result<Page, ArmError> {
        let url = self.same_origin(path_or_link)?;
        let response = self.send_url(Method::GET, &url, None, ctx).await?;
        page_of(response).await
    }

    /// The token scope for this ARM endpoint (`https://management.azure.com/.default` in the public cloud).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// keyguard's own token source, to read its own identity; see [`Egress::own_tokens`].
    pub fn tokens(&self) -> &dyn TokenSource {
        self.egress.own_tokens()
    }

    /// `{endpoint}{path_and_query}`; the path starts with `/`.
    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base.as_str().trim_end_matches('/'))
    }

    /// GET a resource. `Ok(None)` means ARM says it does not exist: a normal outcome (deleted).
    pub async fn get(&self, id: &ResourceId, api_version: &str, ctx: &CallContext) -> Result<Option<Value>, ArmError> {
        let url = self.url(&format!("{}?api-version={}", id.as_str(), api_version));
        self.get_url(&url, ctx).await
    }

    /// GET with `$expand` (e.g. a VM's `instanceView`, which holds its power state).
    pub async fn get_expanded(
        &self,
        id: &ResourceId,
        api_version: &str,
        expand: &str,
        ctx: &CallContext,
    ) -> Result<Option<Value>, ArmError> {
        let url = self.url(&format!(
            "{}?api-version={}&$expand={}",
            id.as_str(),
            api_version,
            expand
        ));
        self.get_url(&url, ctx).await
    }

    async fn get_url(&self, url: &str, ctx: &CallContext) -> Result<Option<Value>, ArmError> {
        let response = self.send_url(Method::GET, url, None, ctx).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        read_body(response).await.map(Some)
    }

    /// PATCH or PUT with a minimal body, following a long-running operation to its end within the
    /// budget. An operation still running when the budget ends is an error the caller retries later
    /// (the next delivery finds the resource compliant, or the reconcile does). `long_running` is
    /// the catalog's flag: such a write that answers 201/202 without a polling header is followed
    /// through the resource's `provisioningState` instead of being taken as finished.
    pub async fn write(
        &self,
        method: Method,
        id: &ResourceId,
        api_version: &str,
        body: &Value,
        long_running: bool,
        ctx: &CallContext,
    ) -> Result<Value, ArmError> {
        let response = self.send(method, id, api_version, Some(body), ctx).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(rejection(response).await);
        }
        let operation = header(&response, "azure-asyncoperation").map(|u| (u, true));
        let operation = operation.or_else(|| header(&response, "location").map(|u| (u, false)));
        match operation {
            Some((url, is_async_operation)) if status == StatusCode::CREATED || status == StatusCode::ACCEPTED => {
                let retry_after = retry_after(&response);
                self.follow(&url, is_async_operation, retry_after, ctx).await?;
                Ok(Value::Null)
            }
            None if long_running && (status == StatusCode::CREATED || status == StatusCode::ACCEPTED) => {
                let retry_after = retry_after(&response);
                let answer = read_optional_body(response).await?;
                match Provisioning::of(&answer) {
                    Provisioning::Succeeded => return Ok(answer),
                    Provisioning::Ended(state) => return Err(provisioning_failed(status, &state)),
                    Provisioning::Running(_) | Provisioning::NotReported => {}
                }
                // Polled like a Location: the resource itself, until its provisioningState ends
                // (a pending operation recorded here resumes the same way).
                let resource_url = self.url(&format!("{}?api-version={}", id.as_str(), api_version));
                self.follow(&resource_url, false, retry_after, ctx).await?;
                Ok(Value::Null)
            }
            _ => read_body(response).await,
        }
    }

    /// Resumes a long-running operation recorded earlier, within this call's budget.
    pub async fn resume(&self, pending: &PendingOperation, ctx: &CallContext) -> Result<(), ArmError> {
        self.follow(&pending.url, pending.is_async_operation, Some(Duration::ZERO), ctx)
            .await
    }

    async fn follow(
        &self,
        operation_url: &str,
        is_async_operation: bool,
        first_delay: Option<Duration>,
        ctx: &CallContext,
    ) -> Result<(), ArmError> {
        let url = self.same_origin(operation_url)?;
        let mut delay = first_delay.unwrap_or(Duration::from_secs(1)).max(MIN_POLL_INTERVAL);
        loop {
            let remaining = ctx.deadline.saturating_duration_since(Instant::now());
            if delay >= remaining {
                return Err(ArmError::StillRunning(PendingOperation {
                    url: url.clone(),
                    is_async_operation,
                }));
            }
            tokio::time::sleep(delay).await;
            let response = self.send_url(Method::GET, &url, None, ctx).await?;
            let status = response.status();
            // Never faster than every 250 ms, whatever Retry-After says.
            delay = retry_after(&response)
                .unwrap_or(Duration::from_secs(1))
                .max(MIN_POLL_INTERVAL);
            if !is_async_operation {
                // Location polling: 202 while running, the final answer otherwise.
                if status == StatusCode::ACCEPTED {
                    continue;
                }
                if !status.is_success() {
                    return Err(rejection(response).await);
                }
                // A resource polled for completion (or a final answer that reports one) is done
                // only when its provisioningState is.
                return match Provisioning::of(&read_optional_body(response).await?) {
                    Provisioning::Running(_) => continue,
                    Provisioning::Ended(state) => Err(provisioning_failed(status, &state)),
                    Provisioning::Succeeded | Provisioning::NotReported => Ok(()),
                };
            }
            let body = read_body(response).await?;
            let state = body.get("status").and_then(Value::as_str).unwrap_or("InProgress");
            if state.eq_ignore_ascii_case("Succeeded") {
                return Ok(());
            }
            if state.eq_ignore_ascii_case("Failed") || state.eq_ignore_ascii_case("Canceled") {
                let error = body.get("error");
                let field = |name: &str| {
                    error
                        .and_then(|e| e.get(name))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                return Err(ArmError::Rejected {
                    status: status.as_u16(),
                    code: field("code").unwrap_or_else(|| state.to_string()),
                    message: field("message").unwrap_or_else(|| format!("operation {state}")),
                    request_id: None,
                });
            }
        }
    }

    /// Polling URLs come from response headers; the bearer token only ever goes to the ARM endpoint
    /// itself. Relative URLs (Recovery Services returns them) resolve against the endpoint.
    fn same_origin(&self, url: &str) -> Result<String, ArmError> {
        if url.starts_with('/') && !url.starts_with("//") {
            return Ok(self.url(url));
        }
        let parsed = Url::parse(url)
            .map_err(|_| ArmError::InvalidResponse("long-running operation URL is not a URL".to_string()))?;
        if parsed.origin() == self.base.origin() && parsed.username().is_empty() && parsed.password().is_none() {
            Ok(parsed.to_string())
        } else {
            Err(ArmError::InvalidResponse(format!(
                "long-running operation URL points outside the ARM endpoint: {}",
                parsed.origin().ascii_serialization()
            )))
        }
    }

    async fn send(
        &self,
        method: Method,
        id: &ResourceId,
        api_version: &str,
        body: Option<&Value>,
        ctx: &CallContext,
    ) -> Result<reqwest::Response, ArmError> {
        let url = self.url(&format!("{}?api-version={}", id.as_str(), api_version));
        self.send_url(method, &url, body, ctx).await
    }

    async fn send_url(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        ctx: &CallContext,
    ) -> Result<reqwest::Response, ArmError> {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let remaining = ctx.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ArmError::BudgetExhausted {
                    attempts: attempts - 1,
                    last: "no time left".into(),
                });
            }
            let attempt = self.attempt(&method, url, body, ctx, remaining).await?;
            let (reason, retry_after) = match attempt {
                Attempt::Done(response) => return Ok(response),
                Attempt::Retry { reason, retry_after } => (reason, retry_after),
            };
            let delay = retry_after.unwrap_or_else(|| self.backoff(attempts));
            let remaining = ctx.deadline.saturating_duration_since(Instant::now());
            if delay >= remaining {
                tracing::warn!(
                    correlation_id = %ctx.correlation_id, %method, url = %path_of(url), attempts, %reason,
                    "ARM retry would outlive the time budget; failing so the event is redelivered"
                );
                return Err(ArmError::BudgetExhausted { attempts, last: reason });
            }
            tracing::info!(
                correlation_id = %ctx.correlation_id, %method, url = %path_of(url), attempts, %reason,
                delay_ms = delay.as_millis() as u64, "retrying ARM call"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Value>,
        ctx: &CallContext,
        remaining: Duration,
    ) -> Result<Attempt, ArmError> {
        let parsed = Url::parse(url).map_err(|_| ArmError::InvalidResponse(format!("not a URL: {}", path_of(url))))?;
        let request = match self
            .egress
            .request(Credential::ArmToken, method.clone(), &parsed, &ctx.correlation_id)
            .await
        {
            Ok(request) => request,
            Err(EgressError::Refused(refusal)) => return Err(refusal.into()),
            Err(EgressError::Token(e)) => return Err(e.into()),
        };
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let mut request = request
            .header("x-ms-correlation-request-id", &ctx.correlation_id)
            .header("x-ms-client-request-id", &client_request_id)
            .header("accept", "application/json")
            .timeout(remaining);
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = std::time::Instant::now();
        self.counters
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let reason = if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    format!("transport error: {}", without_url(&e))
                };
                return Ok(Attempt::Retry {
                    reason,
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        tracing::debug!(
            correlation_id = %ctx.correlation_id, %method, status = status.as_u16(),
            request_id = header(&response, "x-ms-request-id").unwrap_or_default(),
            client_request_id, elapsed_ms = started.elapsed().as_millis() as u64, "ARM call"
        );
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(Attempt::Done(response));
        }
        if is_transient(status) {
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.counters
                    .throttled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let retry_after = retry_after(&response);
            let error = rejection(response).await;
            let reason = match &error {
                ArmError::Rejected { status, code, .. } => format!("{status} {code}"),
                other => other.to_string(),
            };
            return Ok(Attempt::Retry { reason, retry_after });
        }
        Err(rejection(response).await)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .initial_delay
            .saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        let cap = exp.min(self.retry.max_delay);
        // Full jitter: spreads retries of many events throttled at the same moment.
        let millis = rand::rng().random_range(cap.as_millis() as u64 / 2..=cap.as_millis().max(1) as u64);
        Duration::from_millis(millis)
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    header(response, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Logs carry the path only: query strings of polling URLs can be long and carry tokens of their own.
fn path_of(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// reqwest errors print the URL; ours never carry secrets, but keep messages short and stable.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<arm>");
    }
    text
}

async fn page_of(response: reqwest::Response) -> Result<Page, ArmError> {
    if !response.status().is_success() {
        return Err(rejection(response).await);
    }
    let headers = response.headers().clone();
    Ok(Page {
        body: read_body(response).await?,
        headers,
    })
}

/// A body that may be empty (a 202, a final Location answer): empty reads as `null`.
async fn read_optional_body(response: reqwest::Response) -> Result<Value, ArmError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ArmError::InvalidResponse(without_url(&e)))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| ArmError::InvalidResponse(e.to_string()))
}

/// A write whose resource ended `Failed` or `Canceled`: refused, like a failed operation.
fn provisioning_failed(status: StatusCode, state: &str) -> ArmError {
    ArmError::Rejected {
        status: status.as_u16(),
        code: format!("ProvisioningState{state}"),
        message: format!("the resource's provisioningState ended {state}"),
        request_id: None,
    }
}

async fn read_body(response: reqwest::Response) -> Result<Value, ArmError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ArmError::InvalidResponse(without_url(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| ArmError::InvalidResponse(e.to_string()))
}

async fn rejection(response: reqwest::Response) -> ArmError {
    let status = response.status().as_u16();
    let request_id = header(&response, "x-ms-request-id");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let error = body.get("error");
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    ArmError::Rejected {
        status,
        code: field("code").unwrap_or_else(|| format!("Http{status}")),
        message: field("message").unwrap_or_else(|| "no error body".to_string()),
        request_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_statuses_are_retried() {
        for s in [408u16, 429, 500, 502, 503, 504] {
            assert!(is_transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400u16, 401, 403, 404, 409, 412] {
            assert!(!is_transient(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    /// A fake ARM endpoint speaking the long-running-operation protocol, on loopback.
    mod lro {
        use super::*;
        use crate::identity::TokenFuture;
        use axum::Router;
        use axum::extract::State;
        use axum::http::{HeaderMap, HeaderValue};
        use axum::response::IntoResponse;
        use axum::routing::{get, put};
        use std::sync::atomic::{AtomicU32, Ordering};

        struct FixedToken;
        impl TokenSource for FixedToken {
            fn token<'a>(&'a self, _scope: &'a str) -> TokenFuture<'a> {
                Box::pin(async { Ok(azure_core::credentials::Secret::new("t")) })
            }
        }

        #[derive(Clone)]
        struct Fake {
            polls: Arc<AtomicU32>,
            final_status: &'static str,
            operation_header: &'static str,
            operation_url: String,
        }

        async fn start_write(State(fake): State<Fake>) -> impl IntoResponse {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after", HeaderValue::from_static("0"));
            if let Ok(v) = HeaderValue::from_str(&fake.operation_url) {
                headers.insert(fake.operation_header, v);
            }
            (StatusCode::ACCEPTED, headers, "")
        }

        async fn operation(State(fake): State<Fake>) -> axum::response::Response {
            let n = fake.polls.fetch_add(1, Ordering::SeqCst);
            let mut headers = HeaderMap::new();
            headers.insert("retry-after", HeaderValue::from_static("0"));
            if fake.operation_header == "location" {
                let status = if n < 2 { StatusCode::ACCEPTED } else { StatusCode::OK };
                return (status, headers, "{}").into_response();
            }
            let status = if n < 2 { "InProgress" } else { fake.final_status };
            let body = serde_json::json!({"status": status, "error": {"code": "AzureKeyVaultKeyDisabled", "message": "key disabled"}});
            (StatusCode::OK, headers, axum::Json(body)).into_response()
        }

        async fn serve(
            header: &'static str,
            final_status: &'static str,
            relative: bool,
        ) -> (ArmClient, Arc<AtomicU32>) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let polls = Arc::new(AtomicU32::new(0));
            let path =
                "/subscriptions/s/providers/Microsoft.Sql/locations/x/operationResults/op1?api-version=2025-01-01";
            let fake = Fake {
                polls: polls.clone(),
                final_status,
                operation_header: header,
                operation_url: if relative {
                    path.to_string()
                } else {
                    format!("{base}{path}")
                },
            };
            let app = Router::new()
                .route("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/sql1/encryptionProtector/current", put(start_write))
                .route("/subscriptions/s/providers/Microsoft.Sql/locations/x/operationResults/op1", get(operation))
                .with_state(fake);
            tokio::spawn(async move { axum::serve(listener, app).await });
            (
                ArmClient::new(crate::test_support::egress(Arc::new(FixedToken), &base, None, None)),
                polls,
            )
        }

        fn protector() -> ResourceId {
            ResourceId::parse(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/sql1/encryptionProtector/current",
            )
            .unwrap()
        }

        #[tokio::test]
        async fn async_operation_is_followed_to_success() {
            let (arm, polls) = serve("azure-asyncoperation", "Succeeded", false).await;
            let ctx = CallContext::new("c", Duration::from_secs(10));
            arm.write(
                Method::PUT,
                &protector(),
                "2025-01-01",
                &serde_json::json!({}),
                true,
                &ctx,
            )
            .await
            .unwrap();
            assert_eq!(polls.load(Ordering::SeqCst), 3);
        }

        #[tokio::test]
        async fn a_failed_operation_surfaces_its_error_code() {
            let (arm, _) = serve("azure-asyncoperation", "Failed", true).await;
            let ctx = CallContext::new("c", Duration::from_secs(10));
            let err = arm
                .write(
                    Method::PUT,
                    &protector(),
                    "2025-01-01",
                    &serde_json::json!({}),
                    true,
                    &ctx,
                )
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ArmError::Rejected { code, .. } if code == "AzureKeyVaultKeyDisabled"),
                "{err}"
            );
            assert!(!err.retryable());
        }

        #[tokio::test]
        async fn location_polling_waits_for_the_final_answer() {
            let (arm, polls) = serve("location", "Succeeded", true).await;
            let ctx = CallContext::new("c", Duration::from_secs(10));
            arm.write(
                Method::PUT,
                &protector(),
                "2025-01-01",
                &serde_json::json!({}),
                true,
                &ctx,
            )
            .await
            .unwrap();
            assert_eq!(polls.load(Ordering::SeqCst), 3);
        }

        #[test]
        fn the_token_never_leaves_the_arm_endpoint() {
            let arm = ArmClient::new(crate::test_support::egress(
                Arc::new(FixedToken),
                "https://management.azure.com",
                None,
                None,
            ));
            assert!(arm.same_origin("https://evil.example.com/subscriptions/x").is_err());
            assert!(arm.same_origin("https://management.azure.com.evil.example/x").is_err());
            assert_eq!(
                arm.same_origin("/subscriptions/x?a=1").unwrap(),
                "https://management.azure.com/subscriptions/x?a=1"
            );
            assert!(arm.same_origin("https://MANAGEMENT.azure.com/subscriptions/x").is_ok());
        }
    }

    #[test]
    fn retryable_classification() {
        assert!(
            ArmError::BudgetExhausted {
                attempts: 3,
                last: "500".into()
            }
            .retryable()
        );
        assert!(
            !ArmError::Rejected {
                status: 400,
                code: "X".into(),
                message: "m".into(),
                request_id: None
            }
            .retryable()
        );
    }
}
