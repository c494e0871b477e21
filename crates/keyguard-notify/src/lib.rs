//! Alert channels for keyguard.
//!
//! Security teams must hear about every key-source drift, so each channel here renders the same facts
//! (see [`Alert`]) and classifies every failure as [`SendError::Retryable`] or [`SendError::Permanent`]:
//! the outbox that drives these channels retries the first and parks the second for a human.
//!
//! Values in an alert (resource names, callers, error details) come from events an attacker can
//! influence, so every renderer cleans them (control and bidi characters, length) and escapes them for
//! its format (Markdown in Teams, HTML in email).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod email;
mod http;
mod render;
pub mod teams;
pub mod webhook;

pub use email::{EmailChannel, SmtpSecurity, SmtpSettings};
pub use teams::TeamsChannel;
pub use webhook::WebhookChannel;

/// Everything a person needs to act on one finding. Built by the handler from its audit outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub resource_id: String,
    pub resource_name: String,
    /// ARM type, e.g. `Microsoft.Storage/storageAccounts`.
    pub resource_type: String,
    pub resource_group: String,
    pub subscription_id: String,
    /// e.g. "customer-managed key (Key Vault)"
    pub expected: String,
    /// e.g. "Microsoft-managed keys"
    pub actual: String,
    /// Key id/URI when known.
    pub expected_key: Option<String>,
    pub actual_key: Option<String>,
    /// Who made the change, from the event claims.
    pub caller: Option<String>,
    pub caller_ip: Option<String>,
    /// RFC 3339.
    pub occurred_at: String,
    /// What keyguard did.
    pub outcome: AlertOutcome,
    /// e.g. why it could not revert.
    pub detail: Option<String>,
    pub cis_control: Option<String>,
    pub profile: Option<String>,
    pub correlation_id: String,
    pub severity: Severity,
    /// Changes folded into this alert by a suppression window (0 = none).
    #[serde(default)]
    pub repeats: u32,
}

/// What keyguard did about the drift. Serialised in kebab-case (`revert-failed`) for webhook consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertOutcome {
    Reverted,
    RevertFailed,
    ManualActionNeeded,
    AlertOnly,
    DryRunWouldRevert,
    RateLimited,
    Exempt,
    /// Not drift: a write added, extended or changed an exemption tag, or retagged the resource
    /// into a profile that protects it less. Someone switched a safeguard; a person confirms it.
    SafeguardChanged,
    /// Not drift: a compliant resource was pointed at another key (a new vault or key name; a
    /// rotation to a new version of the same key is not this). A person confirms it was intended.
    KeyChanged,
    /// Not about one write: a key resources depend on is disabled, expired, deleted or no longer
    /// readable; every resource on it is about to lose access to its data.
    KeyUnusable,
}

impl AlertOutcome {
    pub const ALL: [AlertOutcome; 10] = [
        AlertOutcome::Reverted,
        AlertOutcome::RevertFailed,
        AlertOutcome::ManualActionNeeded,
        AlertOutcome::AlertOnly,
        AlertOutcome::DryRunWouldRevert,
        AlertOutcome::RateLimited,
        AlertOutcome::Exempt,
        AlertOutcome::SafeguardChanged,
        AlertOutcome::KeyChanged,
        AlertOutcome::KeyUnusable,
    ];

    /// True when the resource is still on the wrong key source and nobody/nothing will fix it
    /// without a person: renderers make these stand out.
    pub fn needs_human(self) -> bool {
        matches!(
            self,
            AlertOutcome::RevertFailed
                | AlertOutcome::ManualActionNeeded
                | AlertOutcome::RateLimited
                | AlertOutcome::KeyUnusable
        )
    }
}

/// Serialised in lowercase (`info`, `warning`, `high`, `critical`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    High,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "Info",
            Severity::Warning => "Warning",
            Severity::High => "High",
            Severity::Critical => "Critical",
        })
    }
}

impl Alert {
    /// Deep link to the resource blade. The id is percent-encoded so a crafted id cannot break out
    /// of the fragment or inject a second URL into the card/email.
    pub fn portal_url(&self) -> String {
        let mut url = String::from("https://portal.azure.com/#@/resource");
        let id = render::clean(&self.resource_id);
        if !id.starts_with('/') {
            url.push('/');
        }
        for b in id.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~/()".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
        url.push_str("/overview");
        url
    }

    /// One line a person can triage from: e.g. "Drift reverted: storage account stpayments (rg-prod)".
    pub fn title(&self) -> String {
        let what = format!(
            "{} {} ({})",
            render::friendly_type(&self.resource_type),
            render::clean(&self.resource_name),
            render::clean(&self.resource_group)
        );
        let lead = match self.outcome {
            AlertOutcome::Reverted => "Drift reverted",
            AlertOutcome::RevertFailed => "REVERT FAILED, drift remains",
            AlertOutcome::ManualActionNeeded => "Manual action needed, drift remains",
            AlertOutcome::AlertOnly => "Drift detected",
            AlertOutcome::DryRunWouldRevert => "Drift detected (dry run, would revert)",
            AlertOutcome::RateLimited => "Drift detected, revert postponed (rate limited)",
            AlertOutcome::Exempt => "Drift on exempt resource",
            AlertOutcome::SafeguardChanged => "Exemption or profile changed by a write",
            AlertOutcome::KeyChanged => "Customer-managed key changed",
            AlertOutcome::KeyUnusable => "CRITICAL: customer-managed key unusable",
        };
        let mut title = format!("{lead}: {what}");
        if self.repeats > 0 {
            title.push_str(&format!(" (+{} repeated changes)", self.repeats));
        }
        title
    }

    /// A realistic alert for `keyguard alert test`, so operators can check a channel end to end.
    pub fn sample() -> Alert {
        Alert {
            resource_id: "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/stpayments".into(),
            resource_name: "stpayments".into(),
            resource_type: "Microsoft.Storage/storageAccounts".into(),
            resource_group: "rg-prod".into(),
            subscription_id: "00000000-0000-0000-0000-000000000000".into(),
            expected: "customer-managed key (Key Vault)".into(),
            actual: "Microsoft-managed keys".into(),
            expected_key: Some("https://kv-prod.vault.azure.net/keys/stpayments-cmk".into()),
            actual_key: None,
            caller: Some("mallory@contoso.com".into()),
            caller_ip: Some("203.0.113.7".into()),
            occurred_at: "2026-01-15T09:30:00Z".into(),
            outcome: AlertOutcome::Reverted,
            detail: Some("This is a test alert sent by `keyguard alert test`.".into()),
            cis_control: Some("CIS Azure 3.12".into()),
            profile: Some("production".into()),
            correlation_id: "00000000-0000-4000-8000-000000000001".into(),
            severity: Severity::High,
            repeats: 0,
        }
    }
}

/// A secret from configuration (webhook URL with its `sig=`, SMTP password, HMAC key).
///
/// It is never printed by `Debug`/`Display` and has no `Serialize`, so it cannot leak through logs,
/// error messages or a serialised config; [`Secret::expose`] is called only where the value is used.
#[derive(Clone)]
pub struct Secret(secrecy::SecretString);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(secrecy::SecretString::from(s.into()))
    }

    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Lets configuration files carry secrets directly; the reverse (`Serialize`) deliberately does not exist.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Why a send failed, classified for the outbox.
///
/// `Retryable` messages end with `(retry after <N>s)` when the receiver sent `Retry-After`;
/// [`SendError::retry_after`] reads it back so the brief's tuple shape stays simple.
/// Messages never contain webhook URLs or passwords.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("retryable: {0}")]
    Retryable(String),
    #[error("permanent: {0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Retryable(_))
    }

    /// The delay the receiver asked for (HTTP `Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        let SendError::Retryable(msg) = self else {
            return None;
        };
        let rest = msg.strip_suffix("s)")?;
        let idx = rest.rfind(RETRY_AFTER_MARK)?;
        rest[idx + RETRY_AFTER_MARK.len()..]
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    }

    pub(crate) fn empty_digest() -> SendError {
        SendError::Permanent("empty digest".into())
    }

    pub(crate) fn retryable_after(msg: String, after: Option<Duration>) -> SendError {
        match after {
            Some(d) => SendError::Retryable(format!("{msg}{RETRY_AFTER_MARK}{}s)", d.as_secs())),
            None => SendError::Retryable(msg),
        }
    }
}

const RETRY_AFTER_MARK: &str = " (retry after ";

/// A channel was configured with values it cannot use. Raised at startup, not per alert.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The URL itself is not echoed: it may carry a signature.
    #[error("invalid {0} URL (value not shown)")]
    InvalidUrl(&'static str),
    /// Plain `http` to a host other than this machine; the URL is not echoed either.
    #[error(
        "the {0} URL must use https (plain http is accepted only for a loopback host: 127.0.0.0/8, ::1 or localhost); value not shown"
    )]
    InsecureUrl(&'static str),
    #[error("invalid email address {0:?}")]
    InvalidAddress(String),
    #[error("no email recipients configured")]
    NoRecipients,
    #[error("invalid SMTP settings: {0}")]
    Smtp(String),
    #[error("cannot build HTTP client: {0}")]
    HttpClient(String),
}

/// Boxed future so channels can live behind `dyn Channel` in the router without an async-trait crate.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// One way of telling people about an alert.
pub trait Channel: Send + Sync {
    /// Stable name for logs and the outbox (e.g. `teams`, `email`, `webhook`, or a configured one).
    fn name(&self) -> &str;
    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a>;

    /// Sends several alerts collected over a digest window as ONE message (per route).
    ///
    /// An empty slice is a programming error and fails with `SendError::Permanent("empty digest")`.
    ///
    /// The default keeps other implementations (test doubles, custom channels) compiling and correct:
    /// it sends each alert on its own, in order, stopping at the first failure, so nothing is lost but
    /// a retry may repeat alerts already delivered. Every channel in this crate overrides it with a
    /// real single-message digest.
    fn send_digest<'a>(&'a self, alerts: &'a [Alert]) -> SendFuture<'a> {
        Box::pin(async move {
            if alerts.is_empty() {
                return Err(SendError::empty_digest());
            }
            for alert in alerts {
                self.send(alert).await?;
            }
            Ok(())
        })
    }
}
