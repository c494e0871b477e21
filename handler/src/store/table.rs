//! The Azure Table Storage backend: the Table service REST API over reqwest (the SDK has no
//! maintained tables crate). Shared Key signing for connection strings (Azurite included), an
//! Entra ID token for managed identity; `If-Match` ETags make every conditional write a
//! compare-and-swap that the service enforces across instances.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

use super::connection::{TableAuth, TableConnection};
use super::{Entity, RowGroup, RowRange, StoreError, Table, TableBackend, Written};
use keyguard_core::egress::Credential;

use crate::egress::{Egress, EgressError};

mod batch;

/// The Table service version; 2019-02-02 is the first to accept Entra ID tokens.
const API_VERSION: &str = "2019-02-02";
const ATTEMPTS: u32 = 4;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

pub struct AzureTableBackend {
    /// Every request goes through the egress policy, whose storage origin is `connection.endpoint`.
    egress: Arc<Egress>,
    connection: TableConnection,
}

/// One request's parts; built again for every attempt (the date and signature change).
struct Call<'a> {
    method: Method,
    path: String,
    query: Vec<(&'a str, String)>,
    body: Option<Body>,
    if_match: Option<&'a str>,
}

/// What a request carries: one entity's JSON, or an entity-group transaction (`$batch`, a
/// multipart body of its own content type).
enum Body {
    Json(Value),
    Multipart { content_type: String, bytes: Vec<u8> },
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    /// The answer as sent: a `$batch` answer is multipart, not JSON.
    text: String,
}

impl AzureTableBackend {
    pub fn new(egress: Arc<Egress>, connection: TableConnection) -> Self {
        Self { egress, connection }
    }

    fn table_name(&self, table: Table) -> String {
        format!("{}{}", self.connection.table_prefix, table.name())
    }

    fn entity_path(&self, table: Table, partition: &str, row: &str) -> String {
        // Keys are escaped ([`super::table_key`]) or UUIDs: no quote or reserved character to encode.
        format!(
            "{}(PartitionKey='{}',RowKey='{}')",
            self.table_name(table),
            odata_quote(partition),
            odata_quote(row)
        )
    }

    async fn send(&self, call: &Call<'_>) -> Result<Answer, StoreError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let result = self.send_once(call).await;
            let transient = match &result {
                Ok(answer) => transient_status(answer.status),
                Err(e) => e.retryable(),
            };
            if !transient || attempt >= ATTEMPTS {
                return result;
            }
            tracing::debug!(attempt, path = %call.path, "table storage call failed transiently; retrying");
            tokio::time::sleep(delay).await;
            delay *= 3;
            attempt += 1;
        }
    }

    async fn send_once(&self, call: &Call<'_>) -> Result<Answer, StoreError> {
        let mut url = self.connection.endpoint.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}/{}", call.path));
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let content_type = match &call.body {
            Some(Body::Json(_)) => "application/json",
            Some(Body::Multipart { content_type, .. }) => content_type.as_str(),
            None => "",
        };
        let credential = match &self.connection.auth {
            TableAuth::SharedKey(_) => Credential::StorageSharedKey,
            TableAuth::Entra => Credential::StorageToken,
        };
        let mut request = self
            .egress
            .request(credential, call.method.clone(), &url, "")
            .await
            .map_err(|e| {
                let message = format!("table storage {}: {e}", self.describe());
                match e {
                    EgressError::Token(token) if token.retryable() => StoreError::Unavailable(message),
                    EgressError::Token(_) | EgressError::Refused(_) => StoreError::Refused(message),
                }
            })?
            .timeout(REQUEST_TIMEOUT)
            .header("x-ms-date", &date)
            .header("x-ms-version", API_VERSION)
            .header("Accept", "application/json;odata=minimalmetadata")
            .header("DataServiceVersion", "3.0;NetFx")
            .header("MaxDataServiceVersion", "3.0;NetFx");
        match &call.body {
            Some(Body::Json(body)) => {
                request = request
                    .header("Content-Type", content_type)
                    .header("Prefer", "return-no-content")
                    .body(serde_json::to_vec(body).map_err(StoreError::unwritable)?);
            }
            Some(Body::Multipart { bytes, .. }) => {
                request = request.header("Content-Type", content_type).body(bytes.clone());
            }
            None => {}
        }
        if let Some(etag) = call.if_match {
            request = request.header("If-Match", etag);
        }
        // A bearer token was attached by the egress layer; a Shared Key signature is made here,
        // over the final URL, after the policy approved it.
        if let TableAuth::SharedKey(key) = &self.connection.auth {
            // Shared Key for the Table service: verb, MD5, type, date, canonical resource
            // ("/" + account + encoded path; the emulator's path repeats the account).
            let to_sign = format!(
                "{}\n\n{}\n{}\n/{}{}",
                call.method.as_str(),
                content_type,
                date,
                self.connection.account,
                url.path()
            );
            let mac = aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
                to_sign.as_bytes(),
            );
            request = request.header(
                "Authorization",
                format!(
                    "SharedKey {}:{}",
                    self.connection.account,
                    base64::engine::general_purpose::STANDARD.encode(mac.as_ref())
                ),
            );
        }
        let response = request.send().await.map_err(|e| {
            StoreError::Unavailable(format!(
                "table storage {} unreachable: {}",
                self.describe(),
                e.without_url()
            ))
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| StoreError::Unavailable(format!("table storage answer unreadable: {}", e.without_url())))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Answer {
            status,
            headers,
            body,
            text,
        })
    }

    fn failure(&self, what: &str, answer: &Answer) -> StoreError {
        let error = &answer.body["odata.error"];
        let code = error["code"].as_str().unwrap_or("");
        let message = error["message"]["value"]
            .as_str()
            .or_else(|| error["message"].as_str())
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        failure_by_status(
            answer.status,
            format!("table storage {what}: {} {code} {message}", answer.status.as_u16()),
        )
    }

    fn etag(headers: &HeaderMap) -> String {
        headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("*")
            .to_string()
    }

    fn entity_from(&self, row: &Value) -> Result<Entity, StoreError> {
        let text = row["Data"].as_str().unwrap_or("null");
        Ok(Entity {
            partition: row["PartitionKey"].as_str().unwrap_or_default().to_string(),
            row: row["RowKey"].as_str().unwrap_or_default().to_string(),
            etag: row["odata.etag"].as_str().unwrap_or("*").to_string(),
            data: serde_json::from_str(text)
                .map_err(|e| StoreError::Corrupt(format!("entity data is not JSON: {e}")))?,
        })
    }

    fn entity_body(partition: &str, row: &str, data: &Value) -> Result<Value, StoreError> {
        let text = serde_json::to_string(data).map_err(StoreError::unwritable)?;
        // A string property holds 64 KiB of UTF-16; records are far smaller, but say so if not.
        if text.encode_utf16().count() > 32 * 1024 {
            return Err(StoreError::Refused(format!(
                "entity {partition}/{row} is {} characters, over Table Storage's property limit",
                text.len()
            )));
        }
        Ok(json!({ "PartitionKey": partition, "RowKey": row, "Data": text }))
    }
}

/// Throttling, timeouts and the service's own failures: the answer may differ next time.
fn transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// A failed answer that a call did not expect, by what a caller can do about it. The conditions a
/// call expects (409 on insert, 412 and 404 on a conditional write, 404 on a read) never get here.
fn failure_by_status(status: StatusCode, message: String) -> StoreError {
    match status.as_u16() {
        _ if transient_status(status) => StoreError::Unavailable(message),
        // A conditional write lost after all (e.g. a 409 on a table being re-created).
        409 | 412 => StoreError::Conflict(message),
        // The credential, a request the service never accepts, a table that is gone.
        400..=499 => StoreError::Refused(message),
        _ => StoreError::Unavailable(message),
    }
}

fn odata_quote(s: &str) -> String {
    s.replace('\'', "''")
}

#[async_trait]
impl TableBackend for AzureTableBackend {
    fn describe(&self) -> String {
        format!(
            "azure-table {} (tables {}*)",
            self.connection.endpoint, self.connection.table_prefix
        )
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        for table in Table::ALL {
            let call = Call {
                method: Method::POST,
                path: "Tables".into(),
                query: vec![],
                body: Some(Body::Json(json!({ "TableName": self.table_name(table) }))),
                if_match: None,
            };
            let answer = self.send(&call).await?;
            let exists = answer.status == StatusCode::CONFLICT;
            if !answer.status.is_success() && !exists {
                return Err(self.failure(&format!("creating table {}", self.table_name(table)), &answer));
            }
        }
        Ok(())
    }

    async fn get(&self, table: Table, partition: &str, row: &str) -> Result<Option<Entity>, StoreError> {
        let call = Call {
            method: Method::GET,
            path: self.entity_path(table, partition, row),
            query: vec![],
            body: None,
            if_match: None,
        };
        let answer = self.send(&call).await?;
        match answer.status {
            StatusCode::OK => {
                let mut entity = self.entity_from(&answer.body)?;
                entity.etag = Self::etag(&answer.headers);
                Ok(Some(entity))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.failure("read", &answer)),
        }
    }

    async fn insert(&self, table: Table, partition: &str, row: &str, data: &Value) -> Result<Written, StoreError> {
        let call = Call {
            method: Method::POST,
            path: self.table_name(table),
            query: vec![],
            body: Some(Body::Json(Self::entity_body(partition, row, data)?)),
            if_match: None,
        };
        let answer = self.send(&call).await?;
        match answer.status {
            s if s.is_success() => Ok(Written::Done {
                etag: Self::etag(&answer.headers),
            }),
            StatusCode::CONFLICT => Ok(Written::Conflict),
            _ => Err(self.failure("insert", &answer)),
        }
    }

    async fn replace(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        data: &Value,
        if_match: Option<&str>,
    ) -> Result<Written, StoreError> {
        let call = Call {
            method: Method::PUT,
            path: self.entity_path(table, partition, row),
            query: vec![],
            body: Some(Body::Json(Self::entity_body(partition, row, data)?)),
            if_match,
        };
        let answer = self.send(&call).await?;
        match answer.status {
            s if s.is_success() => Ok(Written::Done {
                etag: Self::etag(&answer.headers),
            }),
            // Changed since read (412), or gone since read (404 with If-Match).
            StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND if if_match.is_some() => Ok(Written::Conflict),
            _ => Err(self.failure("replace", &answer)),
        }
    }

    async fn delete(
        &self,
        table: Table,
        partition: &str,
        row: &str,
        if_match: Option<&str>,
    ) -> Result<Written, StoreError> {
        let call = Call {
            method: Method::DELETE,
            path: self.entity_path(table, partition, row),
            query: vec![],
            body: None,
            if_match: Some(if_match.unwrap_or("*")),
        };
        let answer = self.send(&call).await?;
        match answer.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(Written::Done { etag: String::new() }),
            StatusCode::PRECONDITION_FAILED => Ok(Written::Conflict),
            _ => Err(self.failure("delete", &answer)),
        }
    }

    async fn insert_absent(&self, groups: &[RowGroup]) -> Result<Vec<usize>, StoreError> {
        let mut counts = Vec::with_capacity(groups.len());
        for group in groups {
            counts.push(self.insert_group(group).await?);
        }
        Ok(counts)
    }

    /// Every Table Storage write is durable when it is acknowledged.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn query_first(&self, table: Table, range: &RowRange<'_>, max: usize) -> Result<Vec<Entity>, StoreError> {
        let mut filters = Vec::new();
        if let Some(p) = range.partition {
            filters.push(format!("PartitionKey eq '{}'", odata_quote(p)));
        }
        if let Some(from) = range.row_from {
            filters.push(format!("RowKey ge '{}'", odata_quote(from)));
        }
        if let Some(before) = range.row_before {
            filters.push(format!("RowKey lt '{}'", odata_quote(before)));
        }
        let mut out = Vec::new();
        let mut continuation: Option<(String, Option<String>)> = None;
        while out.len() < max {
            let mut query = Vec::new();
            if !filters.is_empty() {
                query.push(("$filter", filters.join(" and ")));
            }
            // A page holds at most 1,000 entities; ask for no more than are still wanted.
            if max < usize::MAX {
                query.push(("$top", (max - out.len()).min(1000).to_string()));
            }
            if let Some((next_partition, next_row)) = &continuation {
                query.push(("NextPartitionKey", next_partition.clone()));
                if let Some(next_row) = next_row {
                    query.push(("NextRowKey", next_row.clone()));
                }
            }
            let call = Call {
                method: Method::GET,
                path: format!("{}()", self.table_name(table)),
                query,
                body: None,
                if_match: None,
            };
            let answer = self.send(&call).await?;
            if !answer.status.is_success() {
                return Err(self.failure("query", &answer));
            }
            for row in answer.body["value"].as_array().into_iter().flatten() {
                out.push(self.entity_from(row)?);
            }
            let header = |name: &str| {
                answer
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            match header("x-ms-continuation-NextPartitionKey") {
                Some(next) => continuation = Some((next, header("x-ms-continuation-NextRowKey"))),
                None => return Ok(out),
            }
        }
        out.truncate(max);
        Ok(out)
    }
}

#[cfg(test)]
impl AzureTableBackend {
    /// Stores `text` as the row's `Data` property, as a tampered or foreign row would hold it.
    pub(super) async fn write_raw(&self, table: Table, partition: &str, row: &str, text: &str) {
        let call = Call {
            method: Method::PUT,
            path: self.entity_path(table, partition, row),
            query: vec![],
            body: Some(Body::Json(
                json!({ "PartitionKey": partition, "RowKey": row, "Data": text }),
            )),
            if_match: None,
        };
        let answer = self.send(&call).await.unwrap();
        assert!(answer.status.is_success(), "{}", answer.status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a failed answer nobody expected means to a caller.
    #[test]
    fn unexpected_answers_are_classified_by_status() {
        let kind = |status: u16| {
            let error = failure_by_status(StatusCode::from_u16(status).unwrap(), format!("status {status}"));
            (
                match error {
                    StoreError::Unavailable(_) => "unavailable",
                    StoreError::Conflict(_) => "conflict",
                    StoreError::Corrupt(_) => "corrupt",
                    StoreError::Refused(_) => "refused",
                },
                error.retryable(),
            )
        };
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(kind(status), ("unavailable", true), "{status}");
        }
        for status in [409, 412] {
            assert_eq!(kind(status), ("conflict", true), "{status}");
        }
        // A wrong key or a missing role, a request the service never takes, a table that is gone.
        for status in [400, 401, 403, 404, 413] {
            assert_eq!(kind(status), ("refused", false), "{status}");
        }
    }

    /// Managed identity: no key, a bearer token for the storage audience, on a service version
    /// that accepts it. (Azurite takes tokens only over HTTPS, so a recording server stands in.)
    #[tokio::test]
    async fn entra_mode_sends_a_storage_token_and_no_shared_key() {
        use axum::http::HeaderMap;
        use std::sync::Mutex;
        let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let recorder = seen.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let recorder = recorder.clone();
            async move {
                recorder.lock().unwrap().push(headers);
                (axum::http::StatusCode::NOT_FOUND, "{}")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let connection = TableConnection::parse(&format!("http://{addr}/acct"), "kg").unwrap();
        struct ScopeCheck;
        impl crate::identity::TokenSource for ScopeCheck {
            fn token<'a>(&'a self, scope: &'a str) -> crate::identity::TokenFuture<'a> {
                let token = format!("token-for-{scope}");
                Box::pin(async move { Ok(azure_core::credentials::Secret::new(token)) })
            }
        }
        let egress = crate::test_support::egress(
            Arc::new(ScopeCheck),
            "https://management.azure.com",
            Some(&connection.endpoint),
            None,
        );
        let backend = AzureTableBackend::new(egress, connection);
        assert_eq!(backend.get(Table::Baselines, "p", "").await.unwrap(), None);
        let headers = seen.lock().unwrap().pop().unwrap();
        assert_eq!(
            headers["authorization"],
            "Bearer token-for-https://storage.azure.com/.default"
        );
        assert_eq!(headers["x-ms-version"], API_VERSION);
        assert!(headers.contains_key("x-ms-date"));
    }
}
