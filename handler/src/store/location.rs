//! Where the state lives, from configuration: the embedded file or Azure Table Storage.

use std::sync::Arc;

use super::{AzureTableBackend, EmbeddedBackend, StateStore, StoreError, TableBackend, TableConnection};

/// Where the state lives, from configuration.
#[derive(Clone, Debug)]
pub enum StoreLocation {
    Embedded(std::path::PathBuf),
    Table(TableConnection),
}

impl StoreLocation {
    /// `KEYGUARD_STATE_STORE` = `embedded` | `table` | unset (auto). Table Storage comes from
    /// `KEYGUARD_STORAGE` (a connection string or an account's table URL), else the Functions
    /// host's own `AzureWebJobsStorage` (connection string, or identity-based
    /// `AzureWebJobsStorage__accountName` / `__tableServiceUri`): on a scaled-out Functions app
    /// every instance then shares one store. Without any of these: the embedded file.
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        embedded_path: std::path::PathBuf,
    ) -> anyhow::Result<Self> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mode = get("KEYGUARD_STATE_STORE").map(|m| m.trim().to_ascii_lowercase());
        let table_prefix = get("KEYGUARD_TABLE_PREFIX").unwrap_or_else(|| "keyguard".into());
        let connection = if let Some(value) = get("KEYGUARD_STORAGE") {
            Some(TableConnection::parse(&value, &table_prefix).map_err(|e| anyhow::anyhow!("KEYGUARD_STORAGE: {e}"))?)
        } else if let Some(value) = get("AzureWebJobsStorage") {
            Some(
                TableConnection::parse(&value, &table_prefix)
                    .map_err(|e| anyhow::anyhow!("AzureWebJobsStorage: {e}"))?,
            )
        } else if let Some(uri) = get("AzureWebJobsStorage__tableServiceUri") {
            Some(TableConnection::parse(&uri, &table_prefix).map_err(|e| anyhow::anyhow!("{e}"))?)
        } else {
            get("AzureWebJobsStorage__accountName").map(|account| TableConnection::for_account(&account, &table_prefix))
        };
        match (mode.as_deref(), connection) {
            (Some("embedded"), _) | (None, None) => Ok(StoreLocation::Embedded(embedded_path)),
            (Some("table") | None, Some(connection)) => Ok(StoreLocation::Table(connection)),
            (Some("table"), None) => anyhow::bail!(
                "KEYGUARD_STATE_STORE=table needs KEYGUARD_STORAGE (a connection string or https://<account>.table.core.windows.net)"
            ),
            (Some(other), _) => anyhow::bail!("KEYGUARD_STATE_STORE={other:?} is not one of embedded, table"),
        }
    }

    /// For messages: the file, or the table endpoint (never a key).
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Embedded(path) => format!("embedded {}", path.display()),
            StoreLocation::Table(c) => format!("azure-table {}", c.endpoint),
        }
    }

    /// The table service's base URL, the one origin the storage credential may go to.
    pub fn table_endpoint(&self) -> Option<&url::Url> {
        match self {
            StoreLocation::Embedded(_) => None,
            StoreLocation::Table(c) => Some(&c.endpoint),
        }
    }

    pub async fn open(&self, egress: Arc<crate::egress::Egress>) -> Result<StateStore, StoreError> {
        let backend: Arc<dyn TableBackend> = match self {
            StoreLocation::Embedded(path) => Arc::new(EmbeddedBackend::open(path)?),
            StoreLocation::Table(connection) => Arc::new(AzureTableBackend::new(egress, connection.clone())),
        };
        StateStore::new(backend).await
    }
}
