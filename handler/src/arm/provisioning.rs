//! Completion read from a resource's `provisioningState`: the spec's long-running writes that
//! answer 201/202 without `Azure-AsyncOperation` or `Location` (App Configuration's
//! `ConfigurationStores_Update`, the SQL managed-instance protector at 2023-08-01) finish only
//! when the resource says `Succeeded`, `Failed` or `Canceled`.

use serde_json::Value;

/// What a resource body says about the write being applied to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Provisioning {
    /// No `properties.provisioningState`: nothing to wait for.
    NotReported,
    Succeeded,
    /// `Failed` or `Canceled`, as the service spelt it.
    Ended(String),
    /// Any other state (`Updating`, `Accepted`, `Creating`, ...): still being applied.
    Running(String),
}

impl Provisioning {
    pub(crate) fn of(body: &Value) -> Provisioning {
        let Some(state) = body
            .get("properties")
            .and_then(|p| p.get("provisioningState"))
            .and_then(Value::as_str)
            .map(str::trim)
        else {
            return Provisioning::NotReported;
        };
        if state.eq_ignore_ascii_case("Succeeded") {
            Provisioning::Succeeded
        } else if state.eq_ignore_ascii_case("Failed") || state.eq_ignore_ascii_case("Canceled") {
            Provisioning::Ended(state.chars().take(40).collect())
        } else {
            Provisioning::Running(state.chars().take(40).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_are_read_case_insensitively_and_only_where_arm_puts_them() {
        let of = |state: Value| Provisioning::of(&json!({"properties": {"provisioningState": state}}));
        assert_eq!(of(json!("succeeded")), Provisioning::Succeeded);
        assert_eq!(of(json!("Updating")), Provisioning::Running("Updating".into()));
        assert_eq!(of(json!("Failed")), Provisioning::Ended("Failed".into()));
        assert_eq!(of(json!("CANCELED")), Provisioning::Ended("CANCELED".into()));
        assert_eq!(of(json!(3)), Provisioning::NotReported);
        assert_eq!(
            Provisioning::of(&json!({"provisioningState": "Updating"})),
            Provisioning::NotReported
        );
        assert_eq!(Provisioning::of(&Value::Null), Provisioning::NotReported);
        assert_eq!(of(json!("Accepted")), Provisioning::Running("Accepted".into()));
    }
}

/// The write path against a fake ARM whose write answers 201 without a polling header.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod write_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::get;
    use keyguard_core::ResourceId;
    use reqwest::Method;
    use serde_json::json;

    use crate::arm::{ArmClient, ArmError, CallContext};
    use crate::test_support::{FixedToken, egress};

    const STORE: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.AppConfiguration/configurationStores/appcs";

    #[derive(Clone)]
    struct Fake {
        gets: Arc<AtomicU32>,
        final_state: &'static str,
    }

    /// 201 `Updating`, no header; GETs answer `Updating` twice, then `final_state`.
    async fn serve(final_state: &'static str) -> (ArmClient, Arc<AtomicU32>) {
        async fn write() -> (StatusCode, axum::Json<serde_json::Value>) {
            (
                StatusCode::CREATED,
                axum::Json(json!({"properties": {"provisioningState": "Updating"}})),
            )
        }
        async fn read(State(fake): State<Fake>) -> axum::Json<serde_json::Value> {
            let n = fake.gets.fetch_add(1, Ordering::SeqCst);
            let state = if n < 2 { "Updating" } else { fake.final_state };
            axum::Json(json!({"properties": {"provisioningState": state}}))
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let gets = Arc::new(AtomicU32::new(0));
        let fake = Fake {
            gets: gets.clone(),
            final_state,
        };
        let app = Router::new().route(STORE, get(read).patch(write)).with_state(fake);
        tokio::spawn(async move { axum::serve(listener, app).await });
        (
            ArmClient::new(egress(Arc::new(FixedToken::new("t")), &base, None, None)),
            gets,
        )
    }

    fn store() -> ResourceId {
        ResourceId::parse(STORE).unwrap()
    }

    #[tokio::test]
    async fn a_long_running_201_without_headers_is_polled_until_the_resource_succeeds() {
        let (arm, gets) = serve("Succeeded").await;
        let ctx = CallContext::new("c", Duration::from_secs(20));
        arm.write(Method::PATCH, &store(), "2024-06-01", &json!({}), true, &ctx)
            .await
            .unwrap();
        assert_eq!(gets.load(Ordering::SeqCst), 3, "Updating, Updating, Succeeded");
    }

    #[tokio::test]
    async fn without_the_catalog_flag_the_201_is_taken_as_the_answer() {
        let (arm, gets) = serve("Succeeded").await;
        let ctx = CallContext::new("c", Duration::from_secs(20));
        let answer = arm
            .write(Method::PATCH, &store(), "2024-06-01", &json!({}), false, &ctx)
            .await
            .unwrap();
        assert_eq!(answer["properties"]["provisioningState"], "Updating");
        assert_eq!(gets.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_resource_that_ends_failed_is_a_refused_write() {
        let (arm, _) = serve("Failed").await;
        let ctx = CallContext::new("c", Duration::from_secs(20));
        let err = arm
            .write(Method::PATCH, &store(), "2024-06-01", &json!({}), true, &ctx)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ArmError::Rejected { code, .. } if code == "ProvisioningStateFailed"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn still_updating_at_the_budgets_end_is_pending_on_the_resource_itself() {
        let (arm, _) = serve("Succeeded").await;
        let ctx = CallContext::new("c", Duration::from_millis(1_500));
        let err = arm
            .write(Method::PATCH, &store(), "2024-06-01", &json!({}), true, &ctx)
            .await
            .unwrap_err();
        let ArmError::StillRunning(pending) = err else {
            panic!("{err}")
        };
        assert!(pending.url.contains(STORE) && pending.url.contains("api-version=2024-06-01"));
        assert!(!pending.is_async_operation);
        // Resumed later, it is followed to its end the same way.
        let later = CallContext::new("c2", Duration::from_secs(20));
        arm.resume(&pending, &later).await.unwrap();
    }
}
