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
use url::Url;

use super::{Entity, RowRange, StoreError, Table, TableBackend, Written};
use keyguard_core::egress::Credential;

use crate::egress::Egress;

/// The Table service version; 2019-02-02 is the first to accept Entra ID tokens.
const API_VERSION: &str = "2019-02-02";
/// Azurite's documented development account.
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_ENDPOINT: &str = "http://127.0.0.1:10002/devstoreaccount1";
const ATTEMPTS: u32 = 4;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub enum TableAuth {
    /// The account key, decoded. Never printed.
    SharedKey(Arc<Vec<u8>>),
    /// A token for `https://storage.azure.com` from keyguard's own identity
    /// (role: Storage Table Data Contributor).
    Entra,
}

impl std::fmt::Debug for TableAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableAuth::SharedKey(_) => f.write_str("SharedKey(<redacted>)"),
            TableAuth::Entra => f.write_str("Entra"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TableConnection {
    /// The table service base, e.g. `https://acct.table.core.windows.net` or Azurite's
    /// path-style `http://127.0.0.1:10002/devstoreaccount1`.
    pub endpoint: Url,
    pub account: String,
    pub auth: TableAuth,
    /// Prefix of every table name, so several deployments can share one account.
    pub table_prefix: String,
}

impl TableConnection {
    /// A connection string (`AccountName=..;AccountKey=..[;TableEndpoint=..|EndpointSuffix=..]`,
    /// `UseDevelopmentStorage=true`) or a table service URL (then Entra ID).
    pub fn parse(value: &str, table_prefix: &str) -> Result<Self, String> {
        let value = value.trim();
        check_prefix(table_prefix)?;
        if value.starts_with("https://") || value.starts_with("http://") {
            let endpoint = Url::parse(value.trim_end_matches('/')).map_err(|e| format!("not a URL: {e}"))?;
            let account = account_of(&endpoint).ok_or("the URL names no storage account")?;
            return Ok(Self {
                endpoint,
                account,
                auth: TableAuth::Entra,
                table_prefix: table_prefix.to_string(),
            });
        }
        let mut parts = std::collections::BTreeMap::new();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            // Never echo the part: it may be (a piece of) the account key.
            let (k, v) = part
                .split_once('=')
                .ok_or("a part of the connection string is not key=value (parts are separated by ';')")?;
            parts.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if parts
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            let endpoint = Url::parse(DEV_ENDPOINT).map_err(|e| e.to_string())?;
            return Self::with_key(endpoint, DEV_ACCOUNT, DEV_KEY, table_prefix);
        }
        if parts.contains_key("sharedaccesssignature") {
            return Err("SAS connection strings are not supported: use an account key or managed identity".into());
        }
        let account = parts.get("accountname").ok_or("AccountName is missing")?;
        let endpoint = match parts.get("tableendpoint") {
            Some(e) => Url::parse(e.trim_end_matches('/')).map_err(|e| format!("TableEndpoint: {e}"))?,
            None => {
                let protocol = parts.get("defaultendpointsprotocol").map_or("https", String::as_str);
                let suffix = parts.get("endpointsuffix").map_or("core.windows.net", String::as_str);
                Url::parse(&format!("{protocol}://{account}.table.{suffix}")).map_err(|e| e.to_string())?
            }
        };
        match parts.get("accountkey") {
            Some(key) => Self::with_key(endpoint, account, key, table_prefix),
            None => Ok(Self {
                endpoint,
                account: account.clone(),
                auth: TableAuth::Entra,
                table_prefix: table_prefix.to_string(),
            }),
        }
    }

    /// Identity-based connection (`AzureWebJobsStorage__accountName`).
    pub fn for_account(account: &str, table_prefix: &str) -> Self {
        let endpoint = Url::parse(&format!("https://{account}.table.core.windows.net"))
            .unwrap_or_else(|_| Url::parse("https://invalid.table.core.windows.net").expect("static URL"));
        Self {
            endpoint,
            account: account.to_string(),
            auth: TableAuth::Entra,
            table_prefix: table_prefix.to_string(),
        }
    }

    fn with_key(endpoint: Url, account: &str, key: &str, table_prefix: &str) -> Result<Self, String> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| "AccountKey is not base64".to_string())?;
        Ok(Self {
            endpoint,
            account: account.to_string(),
            auth: TableAuth::SharedKey(Arc::new(key)),
            table_prefix: table_prefix.to_string(),
        })
    }
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = prefix.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && prefix.chars().all(|c| c.is_ascii_alphanumeric())
        && prefix.len() <= 40;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "table prefix {prefix:?} must be letters and digits, start with a letter, at most 40 characters"
        ))
    }
}

/// `acct` from `https://acct.table.core.windows.net`, or from a path-style emulator URL.
fn account_of(endpoint: &Url) -> Option<String> {
    let host = endpoint.host_str()?;
    let path_account = endpoint
        .path_segments()
        .and_then(|mut s| s.next())
        .filter(|s| !s.is_empty());
    let is_ip_or_local = host.parse::<std::net::IpAddr>().is_ok() || host == "localhost";
    if is_ip_or_local {
        path_account.map(str::to_string)
    } else {
        host.split('.').next().map(str::to_string)
    }
}

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
    body: Option<Value>,
    if_match: Option<&'a str>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
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
                Ok(answer) => matches!(answer.status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504),
                Err(_) => true,
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
        let content_type = if call.body.is_some() { "application/json" } else { "" };
        let credential = match &self.connection.auth {
            TableAuth::SharedKey(_) => Credential::StorageSharedKey,
            TableAuth::Entra => Credential::StorageToken,
        };
        let mut request = self
            .egress
            .request(credential, call.method.clone(), &url, "")
            .await
            .map_err(|e| StoreError(format!("table storage {}: {e}", self.describe())))?
            .timeout(REQUEST_TIMEOUT)
            .header("x-ms-date", &date)
            .header("x-ms-version", API_VERSION)
            .header("Accept", "application/json;odata=minimalmetadata")
            .header("DataServiceVersion", "3.0;NetFx")
            .header("MaxDataServiceVersion", "3.0;NetFx");
        if let Some(body) = &call.body {
            request = request
                .header("Content-Type", content_type)
                .header("Prefer", "return-no-content")
                .body(serde_json::to_vec(body).map_err(super::store_err)?);
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
            StoreError(format!(
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
            .map_err(|e| StoreError(e.without_url().to_string()))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok(Answer { status, headers, body })
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
        StoreError(format!(
            "table storage {what}: {} {code} {message}",
            answer.status.as_u16()
        ))
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
            data: serde_json::from_str(text).map_err(|e| StoreError(format!("entity data is not JSON: {e}")))?,
        })
    }

    fn entity_body(partition: &str, row: &str, data: &Value) -> Result<Value, StoreError> {
        let text = serde_json::to_string(data).map_err(super::store_err)?;
        // A string property holds 64 KiB of UTF-16; records are far smaller, but say so if not.
        if text.encode_utf16().count() > 32 * 1024 {
            return Err(StoreError(format!(
                "entity {partition}/{row} is {} characters, over Table Storage's property limit",
                text.len()
            )));
        }
        Ok(json!({ "PartitionKey": partition, "RowKey": row, "Data": text }))
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
                body: Some(json!({ "TableName": self.table_name(table) })),
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
            body: Some(Self::entity_body(partition, row, data)?),
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
            body: Some(Self::entity_body(partition, row, data)?),
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
mod tests {
    use super::*;

    #[test]
    fn connection_strings_of_every_documented_shape() {
        let dev = TableConnection::parse("UseDevelopmentStorage=true", "keyguard").unwrap();
        assert_eq!(dev.endpoint.as_str(), "http://127.0.0.1:10002/devstoreaccount1");
        assert_eq!(dev.account, "devstoreaccount1");
        assert!(matches!(dev.auth, TableAuth::SharedKey(_)));

        let prod = TableConnection::parse(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net",
            "kg",
        )
        .unwrap();
        assert_eq!(prod.endpoint.as_str(), "https://acct.table.core.windows.net/");
        assert_eq!(prod.account, "acct");

        let explicit = TableConnection::parse(
            "AccountName=devstoreaccount1;AccountKey=a2V5;TableEndpoint=http://127.0.0.1:4000/devstoreaccount1;",
            "kg",
        )
        .unwrap();
        assert_eq!(explicit.endpoint.as_str(), "http://127.0.0.1:4000/devstoreaccount1");

        let url = TableConnection::parse("https://acct.table.core.windows.net/", "kg").unwrap();
        assert!(matches!(url.auth, TableAuth::Entra));
        assert_eq!(url.account, "acct");
        let identity = TableConnection::for_account("acct2", "kg");
        assert_eq!(identity.endpoint.host_str(), Some("acct2.table.core.windows.net"));
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

    #[test]
    fn bad_connection_strings_are_named_and_keys_never_print() {
        assert!(
            TableConnection::parse("AccountKey=a2V5", "kg")
                .unwrap_err()
                .contains("AccountName")
        );
        assert!(
            TableConnection::parse("AccountName=a;AccountKey=%%%", "kg")
                .unwrap_err()
                .contains("base64")
        );
        assert!(
            TableConnection::parse("AccountName=a;SharedAccessSignature=sv=1", "kg")
                .unwrap_err()
                .contains("SAS")
        );
        assert!(TableConnection::parse("UseDevelopmentStorage=true", "bad-prefix").is_err());
        let stray = TableConnection::parse("AccountName=a;c2VjcmV0LWtleQ", "kg").unwrap_err();
        assert!(
            stray.contains("not key=value") && !stray.contains("c2VjcmV0"),
            "{stray}"
        );
        let c = TableConnection::parse("AccountName=a;AccountKey=c2VjcmV0LWtleQ==", "kg").unwrap();
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("c2VjcmV0") && !printed.contains("secret-key"),
            "{printed}"
        );
    }
}
