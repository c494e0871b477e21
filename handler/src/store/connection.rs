//! Where the Table Storage state lives and how keyguard signs in to it, from a connection string
//! or a table service URL. Parsed once at start-up; the errors never echo the account key.

use std::sync::Arc;

use base64::Engine as _;
use url::Url;

/// Azurite's documented development account.
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_ENDPOINT: &str = "http://127.0.0.1:10002/devstoreaccount1";

/// Why a connection string, table URL or table prefix is refused. No variant carries a part of
/// the connection string: any part may be (a piece of) the account key.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("not a URL: {0}")]
    NotAUrl(url::ParseError),
    #[error("the URL names no storage account")]
    NoAccountInUrl,
    #[error("a part of the connection string is not key=value (parts are separated by ';')")]
    NotKeyValue,
    #[error("SAS connection strings are not supported: use an account key or managed identity")]
    SasUnsupported,
    #[error("AccountName is missing")]
    NoAccountName,
    #[error("TableEndpoint: {0}")]
    TableEndpoint(url::ParseError),
    /// The endpoint made from `AccountName`, `DefaultEndpointsProtocol` and `EndpointSuffix`.
    #[error("the table endpoint made from AccountName, DefaultEndpointsProtocol and EndpointSuffix is not a URL: {0}")]
    DerivedEndpoint(url::ParseError),
    #[error("AccountKey is not base64")]
    KeyNotBase64,
    #[error("table prefix {0:?} must be letters and digits, start with a letter, at most 40 characters")]
    BadPrefix(String),
}

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
    pub fn parse(value: &str, table_prefix: &str) -> Result<Self, ConnectionError> {
        let value = value.trim();
        check_prefix(table_prefix)?;
        if value.starts_with("https://") || value.starts_with("http://") {
            let endpoint = Url::parse(value.trim_end_matches('/')).map_err(ConnectionError::NotAUrl)?;
            let account = account_of(&endpoint).ok_or(ConnectionError::NoAccountInUrl)?;
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
            let (k, v) = part.split_once('=').ok_or(ConnectionError::NotKeyValue)?;
            parts.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if parts
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            let endpoint = Url::parse(DEV_ENDPOINT).map_err(ConnectionError::DerivedEndpoint)?;
            return Self::with_key(endpoint, DEV_ACCOUNT, DEV_KEY, table_prefix);
        }
        if parts.contains_key("sharedaccesssignature") {
            return Err(ConnectionError::SasUnsupported);
        }
        let account = parts.get("accountname").ok_or(ConnectionError::NoAccountName)?;
        let endpoint = match parts.get("tableendpoint") {
            Some(e) => Url::parse(e.trim_end_matches('/')).map_err(ConnectionError::TableEndpoint)?,
            None => {
                let protocol = parts.get("defaultendpointsprotocol").map_or("https", String::as_str);
                let suffix = parts.get("endpointsuffix").map_or("core.windows.net", String::as_str);
                Url::parse(&format!("{protocol}://{account}.table.{suffix}"))
                    .map_err(ConnectionError::DerivedEndpoint)?
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

    fn with_key(endpoint: Url, account: &str, key: &str, table_prefix: &str) -> Result<Self, ConnectionError> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| ConnectionError::KeyNotBase64)?;
        Ok(Self {
            endpoint,
            account: account.to_string(),
            auth: TableAuth::SharedKey(Arc::new(key)),
            table_prefix: table_prefix.to_string(),
        })
    }
}

fn check_prefix(prefix: &str) -> Result<(), ConnectionError> {
    let ok = prefix.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && prefix.chars().all(|c| c.is_ascii_alphanumeric())
        && prefix.len() <= 40;
    if ok {
        Ok(())
    } else {
        Err(ConnectionError::BadPrefix(prefix.to_string()))
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

    #[test]
    fn bad_connection_strings_are_named_and_keys_never_print() {
        assert!(
            TableConnection::parse("AccountKey=a2V5", "kg")
                .unwrap_err()
                .to_string()
                .contains("AccountName")
        );
        assert!(
            TableConnection::parse("AccountName=a;AccountKey=%%%", "kg")
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
        assert!(
            TableConnection::parse("AccountName=a;SharedAccessSignature=sv=1", "kg")
                .unwrap_err()
                .to_string()
                .contains("SAS")
        );
        assert!(TableConnection::parse("UseDevelopmentStorage=true", "bad-prefix").is_err());
        let stray = TableConnection::parse("AccountName=a;c2VjcmV0LWtleQ", "kg")
            .unwrap_err()
            .to_string();
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
