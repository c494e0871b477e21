//! What Event Grid is told when an event's reconcile fails. Event Grid redelivers a failed
//! delivery for up to a day, so only a failure that a later attempt may not meet is answered as
//! one. A failure retrying cannot fix (here: the resource's stored revert intent does not read) is
//! answered as taken under the Functions host (whose every error answer makes Event Grid
//! redeliver) and refused with 400 on the webhook (which Event Grid dead-letters at once).

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use keyguard_core::event::parse_event;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::response_tests::events_for_change;
use super::test_env::{UnreachableStore, WEBHOOK_KEY, account, app_state, context};
use super::*;
use crate::http::auth::ApiAuthMode;
use crate::reconcile::ReconcileError;
use crate::store::{EmbeddedBackend, StateStore, StoreError, Table, TableBackend, table_key};
use crate::test_support::{FixedToken, TempDir};
use keyguard_core::ResourceId;

async fn post(router: &Router, uri: &str, body: &Value) -> (u16, Value) {
    let request = Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The Functions host's request for one Event Grid event.
fn invocation(event: &Value) -> Value {
    json!({
        "Data": {"eventGridEvent": event},
        "Metadata": {"sys": {"MethodName": EVENT_FUNCTION.0, "UtcNow": "2026-11-23T12:00:00Z", "RandGuid": "0"}}
    })
}

fn routers(context: Arc<Context>) -> (Router, Router) {
    let functions = functions_router(app_state(
        context.clone(),
        ApiAuthMode::FunctionsHost,
        ApiAuthMode::Closed,
        false,
    ));
    let webhook = webhook_router(app_state(
        context,
        ApiAuthMode::Closed,
        ApiAuthMode::Key(WEBHOOK_KEY.to_string().into()),
        false,
    ));
    (functions, webhook)
}

#[tokio::test]
async fn an_event_whose_stored_state_is_corrupt_is_not_handed_back_for_redelivery() {
    let config = azure_sim::SimConfig {
        seed: azure_sim::demo_seed(azure_sim::DEMO_SUBSCRIPTION, azure_sim::DEMO_RESOURCE_GROUP),
        ..Default::default()
    };
    let keyguard = config.system_identity.clone();
    let sim = azure_sim::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let tokens = Arc::new(FixedToken::new(&sim.state().issue_token(&keyguard)));
    let dir = TempDir::new("keyguard-event-failure");
    let backend = Arc::new(EmbeddedBackend::open(&dir.path().join("state.redb")).unwrap());
    let store = StateStore::new(backend.clone()).await.unwrap();
    let id = account("stcmkledger");
    let resource = ResourceId::parse(&id).unwrap();
    // A revert intent that is not one: every reconcile of the resource reads it first.
    backend
        .replace(
            Table::Intents,
            &table_key(&resource.key()),
            "",
            &json!({"resourceId": 42}),
            None,
        )
        .await
        .unwrap();
    let shared = Arc::new(context(&sim, tokens.clone(), store));
    let events = events_for_change(&sim, &id);
    let event = events.last().unwrap().clone();

    let error = crate::reconcile::handle_event(&shared, &parse_event(&event).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ReconcileError::Store(StoreError::Corrupt(_))),
        "{error}"
    );
    assert!(!error.retryable(), "the same row reads the same next time");

    let (functions, webhook) = routers(shared);
    let (status, body) = post(&functions, &format!("/{}", EVENT_FUNCTION.0), &invocation(&event)).await;
    assert_eq!(status, 200, "answered as taken, so the host does not fail it: {body}");
    assert_eq!(body["ReturnValue"]["retryable"], false, "{body}");
    let said = body["ReturnValue"]["notProcessed"].as_str().unwrap_or_default();
    assert!(said.contains("unreadable"), "says why: {body}");
    assert!(
        body["Logs"].to_string().contains("not redelivered"),
        "the invocation log says so: {body}"
    );

    let (status, body) = post(&webhook, &format!("/api/events?code={WEBHOOK_KEY}"), &json!([event])).await;
    assert_eq!(status, 400, "Event Grid dead-letters a 400 at once: {body}");
    assert_eq!(body["error"]["code"], "NotProcessed", "{body}");

    // The same event while the store is down is still handed back: a later delivery may succeed.
    let down = StateStore::new(Arc::new(UnreachableStore)).await.unwrap();
    let (functions, webhook) = routers(Arc::new(context(&sim, tokens, down)));
    let (status, body) = post(&functions, &format!("/{}", EVENT_FUNCTION.0), &invocation(&event)).await;
    assert_eq!(status, 500, "a failed invocation: Event Grid redelivers: {body}");
    let (status, body) = post(&webhook, &format!("/api/events?code={WEBHOOK_KEY}"), &json!([event])).await;
    assert_eq!(status, 500, "{body}");
}
