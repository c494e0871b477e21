//! Key Vault data plane: reads a key's attributes so keyguard never points a resource at a key the
//! service cannot use. Only `keys/get` is needed (e.g. the "Key Vault Crypto Service Encryption
//! User" role or a get access policy); keyguard never reads key material.

use std::sync::Arc;
use std::time::Duration;

use keyguard_core::catalog::KeyRef;
use keyguard_core::egress::Credential;
use keyguard_core::keyvault::{KeyFacts, KeyProblem};
use reqwest::Method;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::arm::CallContext;
use crate::egress::{Egress, EgressError};
use crate::identity::TokenError;

const API_VERSION: &str = "7.5";

#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    /// Throttling or server errors until the budget ran out: let the event be redelivered.
    #[error("Key Vault kept failing: {0}")]
    Transient(String),
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl KeyVaultError {
    /// Whether the invocation should fail so that Event Grid redelivers.
    pub fn retryable(&self) -> bool {
        match self {
            KeyVaultError::Transient(_) => true,
            KeyVaultError::Token(e) => e.retryable(),
        }
    }
}

pub struct KeyVaultClient {
    egress: Arc<Egress>,
    /// Recent answers by key URL, for decisions that write nothing (a sweep reads the same few
    /// keys for thousands of resources); a revert always asks afresh.
    recent: std::sync::Mutex<std::collections::HashMap<String, RecentAnswer>>,
    /// Vault hosts that recently could not be reached (a firewalled vault is common): read-only
    /// decisions do not wait for them again until [`UNREACHABLE_FOR`] has passed.
    unreachable: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

/// When Key Vault answered, and what.
type RecentAnswer = (Instant, Result<KeyFacts, KeyProblem>);

/// How long a read-only decision may reuse what Key Vault said about a key.
pub const READ_ONLY_MAX_AGE: Duration = Duration::from_secs(60);

/// How long a vault that could not be reached is not asked again by read-only decisions.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(30);

/// The most an advisory read (the expiry warning of a compliant key) may take: it is news for
/// people, not a condition of the verdict, so it never holds an event up for long.
pub const ADVISORY_BUDGET: Duration = Duration::from_millis(1500);

/// How patient a read is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// A revert's precondition: always asked afresh, retried within the budget.
    Revert,
    /// A decision that writes nothing: a recent answer will do, and a vault that could not be
    /// reached a moment ago is not waited for again.
    ReadOnly,
    /// As `ReadOnly`, and one attempt within [`ADVISORY_BUDGET`].
    Advisory,
}

impl KeyVaultClient {
    pub fn new(egress: Arc<Egress>) -> Self {
        Self {
            egress,
            recent: std::sync::Mutex::default(),
            unreachable: std::sync::Mutex::default(),
        }
    }

    /// As [`Self::key_facts`], as patient as `patience` says.
    pub async fn key_facts_within(
        &self,
        key: &KeyRef,
        ctx: &CallContext,
        patience: Patience,
    ) -> Result<Result<KeyFacts, KeyProblem>, KeyVaultError> {
        let cache_key = key.key_id();
        let host = key.vault_host().unwrap_or_default().to_string();
        if patience != Patience::Revert {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, answer)) = recent.get(&cache_key)
                && at.elapsed() <= READ_ONLY_MAX_AGE
            {
                return Ok(answer.clone());
            }
            drop(recent);
            let unreachable = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = unreachable.get(&host)
                && at.elapsed() <= UNREACHABLE_FOR
            {
                return Err(KeyVaultError::Transient(format!(
                    "{host} could not be reached {} s ago; not asked again yet",
                    at.elapsed().as_secs()
                )));
            }
        }
        let answer = match patience {
            Patience::Advisory => {
                let budget = ctx.deadline.min(Instant::now() + ADVISORY_BUDGET);
                let quick = CallContext {
                    correlation_id: ctx.correlation_id.clone(),
                    deadline: budget,
                };
                self.key_facts_attempts(key, &quick, 1).await
            }
            Patience::Revert | Patience::ReadOnly => self.key_facts(key, ctx).await,
        };
        let answer = match answer {
            Err(KeyVaultError::Transient(reason)) => {
                let mut unreachable = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
                unreachable.retain(|_, at| at.elapsed() <= UNREACHABLE_FOR);
                unreachable.insert(host, Instant::now());
                return Err(KeyVaultError::Transient(reason));
            }
            other => other?,
        };
        self.unreachable.lock().unwrap_or_else(|p| p.into_inner()).remove(&host);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() > 10_000 {
            recent.clear();
        }
        recent.insert(cache_key, (Instant::now(), answer.clone()));
        Ok(answer)
    }

    /// The key's facts. A key keyguard may not read yields an `Unreadable` problem, not an error:
    /// the decision (no revert, alert) is the caller's. The URL is built from the parsed key
    /// reference, and the egress policy approves it before a token is attached.
    pub async fn key_facts(
        &self,
        key: &KeyRef,
        ctx: &CallContext,
    ) -> Result<Result<KeyFacts, KeyProblem>, KeyVaultError> {
        self.key_facts_attempts(key, ctx, 3).await
    }

    /// The key's facts, trying at most `max_attempts` times within the budget.
    async fn key_facts_attempts(
        &self,
        key: &KeyRef,
        ctx: &CallContext,
        max_attempts: u64,
    ) -> Result<Result<KeyFacts, KeyProblem>, KeyVaultError> {
        let Some(mut url) = key.key_url() else {
            return Ok(Err(KeyProblem::Unreadable {
                reason: format!("{key} is not a key in Key Vault"),
            }));
        };
        url.query_pairs_mut().append_pair("api-version", API_VERSION);
        let host = url.host_str().unwrap_or_default().to_string();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let remaining = ctx.deadline.saturating_duration_since(Instant::now());
            let request = match self
                .egress
                .request(Credential::KeyVaultToken, Method::GET, &url, &ctx.correlation_id)
                .await
            {
                Ok(request) => request,
                Err(EgressError::Refused(refusal)) => {
                    return Ok(Err(KeyProblem::Unreadable {
                        reason: format!("not read: {refusal}"),
                    }));
                }
                Err(EgressError::Token(e)) => return Err(e.into()),
            };
            let response = request
                .header("x-ms-correlation-request-id", &ctx.correlation_id)
                .timeout(remaining.max(Duration::from_millis(1)))
                .send()
                .await;
            let status = match &response {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            match (status, response) {
                (200, Ok(r)) => {
                    let body: Value = r.json().await.map_err(|e| KeyVaultError::Transient(e.to_string()))?;
                    return Ok(Ok(facts_from(&body)));
                }
                (404, _) => return Ok(Ok(KeyFacts::missing())),
                (401 | 403, _) => {
                    return Ok(Err(KeyProblem::Unreadable {
                        reason: format!("Key Vault answered {status} for {host}: grant keyguard's identity keys/get"),
                    }));
                }
                (0 | 408 | 429 | 500..=599, _) if attempts < max_attempts && remaining > Duration::from_secs(2) => {
                    tokio::time::sleep(Duration::from_millis(500 * attempts)).await;
                }
                (0, _) => return Err(KeyVaultError::Transient(format!("{host} unreachable"))),
                (408 | 429 | 500..=599, _) => {
                    return Err(KeyVaultError::Transient(format!("{host} answered {status}")));
                }
                (other, _) => {
                    return Ok(Err(KeyProblem::Unreadable {
                        reason: format!("Key Vault answered {other} for {host}"),
                    }));
                }
            }
        }
    }
}

fn facts_from(body: &Value) -> KeyFacts {
    let attributes = &body["attributes"];
    KeyFacts {
        exists: true,
        enabled: attributes["enabled"].as_bool().unwrap_or(false),
        expires: attributes["exp"]
            .as_i64()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
        recovery_level: attributes["recoveryLevel"].as_str().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bundle_attributes_become_facts() {
        let body = serde_json::json!({"key": {"kid": "x"}, "attributes": {"enabled": false, "exp": 1_900_000_000, "recoveryLevel": "Recoverable+Purgeable"}});
        let facts = facts_from(&body);
        assert!(facts.exists && !facts.enabled);
        assert_eq!(facts.expires.map(|t| t.unix_timestamp()), Some(1_900_000_000));
        assert_eq!(facts.recovery_level.as_deref(), Some("Recoverable+Purgeable"));
    }
}
