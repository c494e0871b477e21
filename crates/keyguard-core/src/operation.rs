//! A long-running ARM write that was accepted but had not finished within an invocation's budget:
//! where its outcome is read. Plain data, so both the ARM adapter (which polls it) and the state
//! store (which keeps it in a revert intent until the next reconcile finishes the revert) use it
//! without either reaching into the other.

use serde::{Deserialize, Serialize};

/// Where to poll and how. `url` is what ARM answered in `Azure-AsyncOperation` or `Location`, and
/// once stored it is only as trustworthy as the store: it is never followed until the ARM adapter
/// has checked it against the ARM endpoint's origin (`ArmClient::same_origin`), on every poll,
/// resumed ones included. Its persisted shape (`url`, `isAsyncOperation`) is part of stored revert
/// intents and must not change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingOperation {
    pub url: String,
    /// `Azure-AsyncOperation` (an operation status resource) rather than `Location` (polled until
    /// it stops answering 202).
    pub is_async_operation: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Revert intents written before the type moved here hold exactly this shape.
    #[test]
    fn the_persisted_shape_reads_and_writes_unchanged() {
        let stored = json!({
            "url": "https://management.azure.com/subscriptions/s/providers/Microsoft.Sql/locations/westeurope/operationResults/op-1?api-version=2023-08-01",
            "isAsyncOperation": true
        });
        let operation: PendingOperation = serde_json::from_value(stored.clone()).unwrap();
        assert!(operation.is_async_operation);
        assert!(operation.url.ends_with("op-1?api-version=2023-08-01"));
        assert_eq!(serde_json::to_value(&operation).unwrap(), stored);
    }
}
