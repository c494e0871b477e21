//! From an audit outcome that calls for people to know, to alerts in the durable outbox: the
//! profile config picks the routes (rules, owner tag), the suppression window folds a flapping
//! resource's repeats into its next alert, and channels are built from secrets named in config.

use std::collections::HashMap;
use std::sync::Arc;

use keyguard_core::ResourceId;
use keyguard_core::catalog::{self, EncryptionState};
use keyguard_core::config::{Config, Requirement};
use keyguard_core::routing::{AlertFacts, AlertSeverity, RouteKind, SuppressDecision, suppress};
use keyguard_notify::{
    Alert, AlertOutcome, Channel, EmailChannel, Secret, Severity, SmtpSecurity, SmtpSettings, TeamsChannel,
    WebhookChannel,
};
use time::OffsetDateTime;

use crate::outbox::{ChannelError, ChannelResolver, Dispatcher};
use crate::store::{OutboxEntry, StateStore, StoreError, SuppressionState};
use keyguard_core::outcome::{Outcome, ResultKind};

pub struct Alerter {
    config: Arc<Config>,
    store: StateStore,
    dispatcher: Arc<Dispatcher>,
}

impl Alerter {
    pub fn new(config: Arc<Config>, store: StateStore, dispatcher: Arc<Dispatcher>) -> Self {
        Self {
            config,
            store,
            dispatcher,
        }
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Routes the alert for an outcome into `planned`: the outbox entries to write with the
    /// decision's audit record (see [`crate::store::StateStore::commit_record`]).
    pub async fn plan(
        &self,
        outcome: &Outcome,
        tags: &serde_json::Map<String, serde_json::Value>,
        record_id: &str,
        planned: &mut PlannedAlerts,
    ) -> Result<(), StoreError> {
        let Some(alert) = alert_from_outcome(outcome) else {
            return Ok(());
        };
        self.route(alert, tags, record_id, true, planned).await
    }

    /// A write weakened the resource's safeguards: one alert naming who and what changed. It is
    /// never folded into a later one by the suppression window: each such change is news, and a
    /// harmless change first must not hide the one that follows.
    pub async fn plan_safeguard_changes(
        &self,
        outcome: &Outcome,
        tags: &serde_json::Map<String, serde_json::Value>,
        record_id: &str,
        planned: &mut PlannedAlerts,
    ) -> Result<(), StoreError> {
        if outcome.safeguard_changes.is_empty() {
            return Ok(());
        }
        let Some(mut alert) = alert_with_outcome(outcome, AlertOutcome::SafeguardChanged) else {
            return Ok(());
        };
        let who = outcome.caller.as_deref().unwrap_or(
            "a writer the event did not name (seen by a sweep or a resource notification; the Activity Log names it)",
        );
        let what: Vec<String> = outcome
            .safeguard_changes
            .iter()
            .map(keyguard_core::safeguards::SafeguardChange::describe)
            .collect();
        alert.detail = Some(format!("changed by {who}: {}", what.join("; ")));
        self.route(alert, tags, &format!("{record_id}.safeguard"), false, planned)
            .await
    }

    /// Once the planned entries are stored: the suppression window starts, the sender wakes.
    pub async fn queued(&self, planned: PlannedAlerts) -> Result<(), StoreError> {
        for (key, at) in &planned.sent {
            let state = SuppressionState {
                last_sent: Some(*at),
                folded: 0,
            };
            self.store.set_alert_suppression(key, &state).await?;
        }
        if !planned.entries.is_empty() {
            self.dispatcher.wake();
        }
        Ok(())
    }

    /// Picks the routes for the alert and adds one outbox entry per route, under ids derived
    /// from `id_prefix` (a retried decision queues nothing twice).
    async fn route(
        &self,
        mut alert: Alert,
        tags: &serde_json::Map<String, serde_json::Value>,
        id_prefix: &str,
        suppressible: bool,
        planned: &mut PlannedAlerts,
    ) -> Result<(), StoreError> {
        let Ok(id) = ResourceId::parse(&alert.resource_id) else {
            return Ok(());
        };
        let outcome_name = alert_outcome_name(&alert.outcome);
        let deliveries = self.config.route_alert(&AlertFacts {
            resource_id: &id,
            tags,
            outcome: outcome_name,
            severity: match alert.severity {
                Severity::Info => AlertSeverity::Info,
                Severity::Warning => AlertSeverity::Warning,
                Severity::High => AlertSeverity::High,
                Severity::Critical => AlertSeverity::Critical,
            },
        });
        if deliveries.is_empty() {
            return Ok(());
        }
        let key = format!("{}|{outcome_name}", id.key());
        let now = OffsetDateTime::now_utc();
        let state = if suppressible {
            self.store.alert_suppression(&key).await?.unwrap_or_default()
        } else {
            SuppressionState::default()
        };
        let last_sent = state
            .last_sent
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
        match suppress(last_sent, state.folded, now, self.config.alerts.suppress_minutes) {
            SuppressDecision::Fold => {
                let folded = SuppressionState {
                    last_sent: state.last_sent,
                    folded: state.folded + 1,
                };
                self.store.set_alert_suppression(&key, &folded).await?;
                tracing::info!(target: "keyguard::alert", resource_id = %id, outcome = outcome_name, folded = folded.folded, "alert folded into the next one (suppression window)");
                return Ok(());
            }
            SuppressDecision::Send { repeats_folded } => alert.repeats = repeats_folded,
        }
        let digest_at = self
            .config
            .alerts
            .digest
            .then(|| next_digest_time(now, self.config.alerts.digest_minutes));
        for (n, delivery) in deliveries.iter().enumerate() {
            planned.entries.push(Dispatcher::entry(
                format!("{id_prefix}.{n}"),
                &delivery.route,
                delivery.extra_recipients.clone(),
                alert.clone(),
                digest_at,
            ));
        }
        if suppressible {
            planned.sent.push((key, now.unix_timestamp()));
        }
        Ok(())
    }
}

/// The outbox entries one decision's alerts became, before they are stored.
#[derive(Debug, Default)]
pub struct PlannedAlerts {
    pub entries: Vec<OutboxEntry>,
    /// Suppression keys whose window starts once the entries are stored, with the time.
    sent: Vec<(String, i64)>,
}

/// The end of the digest window `now` falls in. Windows are aligned to the clock (whole multiples
/// of the window since the epoch), so every instance sends at the same moments.
pub fn next_digest_time(now: OffsetDateTime, window_minutes: u32) -> OffsetDateTime {
    let window = i64::from(window_minutes.max(1)) * 60;
    let t = now.unix_timestamp();
    let next = (t.div_euclid(window) + 1) * window;
    OffsetDateTime::from_unix_timestamp(next).unwrap_or(now)
}

/// The facts a person needs, from the audit outcome. `None` when the outcome calls for no alert.
pub fn alert_from_outcome(outcome: &Outcome) -> Option<Alert> {
    if !outcome.alert {
        return None;
    }
    let alert_outcome = match outcome.result {
        ResultKind::Reverted => AlertOutcome::Reverted,
        ResultKind::RevertFailed | ResultKind::RevertUnverified => AlertOutcome::RevertFailed,
        ResultKind::DryRunWouldRevert => AlertOutcome::DryRunWouldRevert,
        ResultKind::RateLimited => AlertOutcome::RateLimited,
        ResultKind::AlertOnly => AlertOutcome::AlertOnly,
        ResultKind::Exempt => AlertOutcome::Exempt,
        ResultKind::KeyChanged => AlertOutcome::KeyChanged,
        ResultKind::KeyUnusable => AlertOutcome::KeyUnusable,
        // Someone has to look: named explicitly, so a new result is a decision, not a default.
        ResultKind::ManualActionNeeded
        | ResultKind::KeyExpiring
        | ResultKind::RevertPending
        | ResultKind::Recorded
        | ResultKind::Compliant
        | ResultKind::Unsupported
        | ResultKind::Duplicate
        | ResultKind::OwnWrite
        | ResultKind::NotSucceeded
        | ResultKind::NotWatched
        | ResultKind::EventTypeNotWatched
        | ResultKind::Deleted
        | ResultKind::ResourceNotFound
        | ResultKind::NotInCatalog => AlertOutcome::ManualActionNeeded,
    };
    alert_with_outcome(outcome, alert_outcome)
}

/// The alert about `outcome`'s resource, saying `alert_outcome`.
fn alert_with_outcome(outcome: &Outcome, alert_outcome: AlertOutcome) -> Option<Alert> {
    let id = ResourceId::parse(outcome.resource_id.as_deref()?).ok()?;
    let requirement = outcome.requirement.unwrap_or(Requirement::Cmk);
    let entry = catalog::lookup(&id.resource_type());
    let cis = entry.map(|e| {
        if requirement == Requirement::Cmk {
            e.cis_level2
        } else {
            e.cis_level1
        }
        .to_string()
    });
    let severity = match severity_of(outcome, &alert_outcome) {
        AlertSeverity::Info => Severity::Info,
        AlertSeverity::Warning => Severity::Warning,
        AlertSeverity::High => Severity::High,
        AlertSeverity::Critical => Severity::Critical,
    };
    Some(Alert {
        resource_id: id.as_str().to_string(),
        resource_name: id.name().to_string(),
        resource_type: id.resource_type(),
        resource_group: id.resource_group().to_string(),
        subscription_id: id.subscription().to_string(),
        expected: requirement_text(requirement).to_string(),
        actual: outcome
            .before
            .as_ref()
            .map(state_text)
            .unwrap_or_else(|| "unknown".into()),
        // For a changed key, what was expected is the known-good key it replaced.
        expected_key: match &outcome.previous_key {
            Some(previous) => Some(previous.to_string()),
            None => outcome.after.as_ref().and_then(key_text),
        },
        actual_key: outcome.before.as_ref().and_then(key_text),
        caller: outcome.caller.clone(),
        caller_ip: outcome.caller_ip.clone(),
        occurred_at: keyguard_core::rfc3339(OffsetDateTime::now_utc()),
        outcome: alert_outcome,
        detail: outcome.detail.clone(),
        cis_control: cis,
        profile: outcome.profile.clone(),
        correlation_id: outcome.correlation_id.clone(),
        severity,
        repeats: 0,
    })
}

/// The outcome's severity, raised to high for drift that stays news after a revert (a key in a
/// vault outside the estate). Routing rules match on the same value.
fn severity_of(outcome: &Outcome, alert_outcome: &AlertOutcome) -> AlertSeverity {
    let by_outcome = AlertSeverity::for_outcome(alert_outcome_name(alert_outcome));
    if outcome.escalated && *alert_outcome != AlertOutcome::SafeguardChanged {
        by_outcome.max(AlertSeverity::High)
    } else {
        by_outcome
    }
}

fn alert_outcome_name(outcome: &AlertOutcome) -> &'static str {
    match outcome {
        AlertOutcome::Reverted => "reverted",
        AlertOutcome::RevertFailed => "revert-failed",
        AlertOutcome::ManualActionNeeded => "manual-action-needed",
        AlertOutcome::AlertOnly => "alert-only",
        AlertOutcome::DryRunWouldRevert => "dry-run-would-revert",
        AlertOutcome::RateLimited => "rate-limited",
        AlertOutcome::Exempt => "exempt",
        AlertOutcome::SafeguardChanged => "safeguard-changed",
        AlertOutcome::KeyChanged => "key-changed",
        AlertOutcome::KeyUnusable => "key-unusable",
    }
}

fn requirement_text(requirement: Requirement) -> &'static str {
    match requirement {
        Requirement::Mmk => "Microsoft-managed keys",
        Requirement::Encrypted => "encryption at rest (any key)",
        Requirement::Cmk => "customer-managed key (Key Vault)",
    }
}

fn state_text(state: &EncryptionState) -> String {
    match state {
        EncryptionState::Mmk => "Microsoft-managed keys".into(),
        EncryptionState::Cmk(key) => match (key.vault_host(), key.encryption_set_id()) {
            (Some(vault), _) => format!("customer-managed key in {vault}"),
            (None, Some(set)) => format!("customer-managed key held by disk encryption set {set}"),
            (None, None) => "customer-managed key (not visible in ARM)".into(),
        },
        EncryptionState::Encrypted => "encrypted (service key)".into(),
        EncryptionState::Disabled => "not encrypted".into(),
        EncryptionState::Unknown(raw) => format!("unrecognised key source ({raw})"),
        EncryptionState::KeyOutsideKeyVault { reference, problem } => {
            format!("customer-managed key reference outside Key Vault: {reference} ({problem})")
        }
    }
}

fn key_text(state: &EncryptionState) -> Option<String> {
    match state {
        EncryptionState::Cmk(key) => Some(key.to_string()),
        _ => None,
    }
}

/// Channels built from the routes in config; secrets are read from the environment names the
/// config gives, once, at start-up, so a missing secret fails loudly before any alert is due.
pub struct ConfiguredChannels {
    http: HashMap<String, Arc<dyn Channel>>,
    email: HashMap<String, SmtpSettings>,
}

impl ConfiguredChannels {
    pub fn from_config(config: &Config, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut http: HashMap<String, Arc<dyn Channel>> = HashMap::new();
        let mut email = HashMap::new();
        let secret = |route: &str, var: &Option<String>| -> anyhow::Result<Secret> {
            let var = var
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("route {route}: no secret variable named"))?;
            get(var)
                .filter(|v| !v.is_empty())
                .map(Secret::new)
                .ok_or_else(|| anyhow::anyhow!("route {route}: environment variable {var} is not set"))
        };
        for (name, route) in &config.routes {
            match route.kind {
                RouteKind::Teams | RouteKind::TeamsLegacy => {
                    let legacy = matches!(route.kind, RouteKind::TeamsLegacy);
                    let channel = TeamsChannel::new(secret(name, &route.url_env)?, legacy)
                        .map_err(|e| anyhow::anyhow!("route {name}: {e}"))?
                        .named(name.clone());
                    http.insert(name.clone(), Arc::new(channel));
                }
                RouteKind::Webhook => {
                    let channel =
                        WebhookChannel::new(secret(name, &route.url_env)?, secret(name, &route.hmac_key_env)?)
                            .map_err(|e| anyhow::anyhow!("route {name}: {e}"))?
                            .named(name.clone());
                    http.insert(name.clone(), Arc::new(channel));
                }
                RouteKind::Email => {
                    let url = secret(name, &route.smtp_env)?;
                    let settings =
                        smtp_settings(url.expose(), route.from.clone().unwrap_or_default(), route.to.clone())
                            .map_err(|e| anyhow::anyhow!("route {name}: {e}"))?;
                    // Built once now so a bad address or setting is reported at start-up.
                    EmailChannel::new(settings.clone()).map_err(|e| anyhow::anyhow!("route {name}: {e}"))?;
                    email.insert(name.clone(), settings);
                }
            }
        }
        Ok(Self { http, email })
    }

    pub fn route_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.http.keys().chain(self.email.keys()).cloned().collect();
        names.sort();
        names
    }
}

impl ChannelResolver for ConfiguredChannels {
    fn channel(&self, route: &str, extra_recipients: &[String]) -> Result<Arc<dyn Channel>, ChannelError> {
        if let Some(channel) = self.http.get(route) {
            return Ok(channel.clone());
        }
        let Some(settings) = self.email.get(route) else {
            return Err(ChannelError::NoRoute(route.to_string()));
        };
        let mut settings = settings.clone();
        for extra in extra_recipients {
            if !settings.to.iter().any(|t| t.eq_ignore_ascii_case(extra)) {
                settings.to.push(extra.clone());
            }
        }
        EmailChannel::new(settings)
            .map(|c| Arc::new(c.named(route.to_string())) as Arc<dyn Channel>)
            .map_err(ChannelError::from)
    }
}

/// Why an SMTP URL is refused. No variant carries the URL: it may hold the password.
#[derive(Debug, thiserror::Error)]
pub enum SmtpUrlError {
    #[error("the SMTP URL cannot be parsed")]
    Unparsable,
    #[error("SMTP URL scheme {0} is not smtp or smtps")]
    Scheme(String),
    #[error("the SMTP URL has no host")]
    NoHost,
}

/// `smtps://user:pass@host:465` (implicit TLS), `smtp://user:pass@host:587` (STARTTLS), and
/// `smtp://host:port?tls=none` for a local relay. The password never appears in errors.
pub fn smtp_settings(url: &str, from: String, to: Vec<String>) -> Result<SmtpSettings, SmtpUrlError> {
    let parsed = url::Url::parse(url).map_err(|_| SmtpUrlError::Unparsable)?;
    let tls_none = parsed.query_pairs().any(|(k, v)| k == "tls" && v == "none");
    let (security, default_port) = match (parsed.scheme(), tls_none) {
        ("smtps", _) => (SmtpSecurity::ImplicitTls, 465),
        ("smtp", true) => (SmtpSecurity::None, 25),
        ("smtp", false) => (SmtpSecurity::StartTls, 587),
        (other, _) => return Err(SmtpUrlError::Scheme(other.to_string())),
    };
    let host = parsed.host_str().ok_or(SmtpUrlError::NoHost)?.to_string();
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let username = Some(parsed.username()).filter(|u| !u.is_empty()).and_then(decode);
    let password = parsed.password().and_then(decode).map(Secret::new);
    Ok(SmtpSettings {
        host,
        port: parsed.port().unwrap_or(default_port),
        security,
        username,
        password,
        from,
        to,
        timeout: std::time::Duration::from_secs(20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_windows_are_aligned_to_the_clock() {
        let t = OffsetDateTime::from_unix_timestamp(3_600 * 10 + 125).unwrap();
        assert_eq!(next_digest_time(t, 60).unix_timestamp(), 3_600 * 11);
        assert_eq!(next_digest_time(t, 15).unix_timestamp(), 3_600 * 10 + 900);
        let on_boundary = OffsetDateTime::from_unix_timestamp(3_600 * 10).unwrap();
        assert_eq!(
            next_digest_time(on_boundary, 60).unix_timestamp(),
            3_600 * 11,
            "a new window, not zero wait"
        );
    }

    #[test]
    fn smtp_urls_pick_the_security_and_never_echo_the_password() {
        let s = smtp_settings(
            "smtps://kg%40contoso.example:p%40ss@mail.example:2465",
            "f@x.example".into(),
            vec![],
        )
        .unwrap();
        assert!(matches!(s.security, SmtpSecurity::ImplicitTls));
        assert_eq!((s.host.as_str(), s.port), ("mail.example", 2465));
        assert_eq!(s.username.as_deref(), Some("kg@contoso.example"));
        assert_eq!(s.password.as_ref().map(|p| p.expose()), Some("p@ss"));
        assert!(matches!(
            smtp_settings("smtp://relay:587", String::new(), vec![])
                .unwrap()
                .security,
            SmtpSecurity::StartTls
        ));
        assert!(matches!(
            smtp_settings("smtp://127.0.0.1:2525?tls=none", String::new(), vec![])
                .unwrap()
                .security,
            SmtpSecurity::None
        ));
        let err = smtp_settings("http://u:hunter2@h", String::new(), vec![])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"));
        assert!(!format!("{s:?}").contains("p@ss"));
    }
}
