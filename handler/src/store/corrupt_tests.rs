//! Stored rows that are not what keyguard writes (tampered with, half written by a tool, left by
//! an older layout): both backends report them as [`StoreError::Corrupt`], which is never retried,
//! so an event whose reconcile reads one is not redelivered by Event Grid for a day to the same
//! answer; and the next write of the row replaces it.

use std::sync::Arc;

use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::tests::{azurite_backend, id, stores, table_prefix};
use super::*;

/// The store's view of a row that deserializes to the wrong shape, table by table: every read
/// that needs the row's value says `Corrupt`.
#[tokio::test]
async fn rows_of_the_wrong_shape_are_corrupt_and_not_retryable_on_both_backends() {
    for (name, store) in stores().await {
        let resource = id("stcorrupt");
        let key = table_key(&resource.key());
        let wrong = json!({"resourceId": 42, "holder": ["not", "a", "name"], "times": "often"});
        for table in [Table::Intents, Table::Leases, Table::Reverts] {
            store
                .backend
                .replace(table, &key, SINGLE_ROW, &wrong, None)
                .await
                .unwrap();
        }
        let now = OffsetDateTime::now_utc();
        let errors = [
            ("intent", store.revert_intent(&resource).await.unwrap_err()),
            (
                "lease",
                store
                    .try_lease(&resource, "me", Duration::seconds(30), now)
                    .await
                    .unwrap_err(),
            ),
            (
                "revert count",
                store
                    .reverts_since(&resource, now - Duration::hours(1))
                    .await
                    .unwrap_err(),
            ),
        ];
        for (what, error) in errors {
            assert!(matches!(error, StoreError::Corrupt(_)), "{name} {what}: {error}");
            assert!(!error.retryable(), "{name} {what}: retrying reads the same row");
            assert!(error.to_string().contains(&key), "{name} {what} names the row: {error}");
        }
    }
}

/// Bytes that are not an entity at all, written under the store's feet.
#[tokio::test]
async fn a_row_that_is_not_json_is_corrupt_and_the_next_write_replaces_it() {
    let dir = crate::test_support::TempDir::new("keyguard-store-raw");
    let embedded = Arc::new(EmbeddedBackend::open(&dir.path().join("state.redb")).unwrap());
    let table = Arc::new(azurite_backend(&table_prefix()));
    table.prepare().await.unwrap();
    let resource = id("stgarbled");
    let key = table_key(&resource.key());
    embedded.write_raw(Table::Intents, &key, SINGLE_ROW, "{\"etag\": \"x\", \"data\": tru");
    table.write_raw(Table::Intents, &key, SINGLE_ROW, "{\"id\": tru").await;
    let backends: [(&str, Arc<dyn TableBackend>); 2] = [("embedded", embedded), ("azurite", table)];
    for (name, backend) in backends {
        let raw = backend.get(Table::Intents, &key, SINGLE_ROW).await.unwrap_err();
        assert!(matches!(raw, StoreError::Corrupt(_)), "{name}: {raw}");
        let store = StateStore::new(backend.clone()).await.unwrap();
        let error = store.revert_intent(&resource).await.unwrap_err();
        assert!(
            matches!(error, StoreError::Corrupt(_)) && !error.retryable(),
            "{name}: {error}"
        );

        // An insert still sees the row; an unconditional write (a new intent) replaces it.
        let inserted = backend
            .insert(Table::Intents, &key, SINGLE_ROW, &json!({}))
            .await
            .unwrap();
        assert_eq!(inserted, Written::Conflict, "{name}: the row is there");
        let intent = RevertIntent {
            id: "intent-after-repair".into(),
            resource_id: resource.as_str().to_string(),
            correlation_id: "c".into(),
            event_id: None,
            holder: "me".into(),
            started_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
            target: "Microsoft-managed keys".into(),
            writes: vec![],
            caller: None,
            operation: None,
        };
        store.set_revert_intent(&resource, Some(&intent)).await.unwrap();
        assert_eq!(
            store.revert_intent(&resource).await.unwrap(),
            Some(intent),
            "{name}: the write healed the row"
        );
    }
}
