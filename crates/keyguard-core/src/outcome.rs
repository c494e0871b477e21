//! What one reconcile saw, decided and did, in one typed vocabulary: the audit trail stores it,
//! alerts, routing and reports match on it, and nothing is parsed back from a string.

use serde::{Deserialize, Serialize};

use crate::catalog::EncryptionState;
use crate::config::Requirement;
use crate::safeguards::SafeguardChange;

/// Why a reconcile runs; carried into the audit record.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Trigger {
    Event {
        event_id: String,
        event_type: String,
    },
    Manual,
    Reconcile,
    /// A sweep of a scope (HTTP, CLI, the timer): the resource was listed, not changed.
    Sweep {
        scope: String,
    },
}

/// Defines a kebab-case enum with `as_str` and `Display`, so the audit trail, the API, logs and
/// reports all spell a value the same way.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)*,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text $(, alias = $alias)*)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// What keyguard found the resource to be.
    VerdictKind {
        Compliant = "compliant",
        Drift = "drift",
        Exempt = "exempt",
        Unsupported = "unsupported",
        /// The resource no longer exists.
        Gone = "gone",
        /// Not looked at again: a duplicate or keyguard's own write.
        Skipped = "skipped",
        /// Not about encryption at all (another event type, a failed write).
        Ignored = "ignored",
    }
}

vocabulary! {
    /// What keyguard did about it.
    ActionKind {
        None = "none",
        Revert = "revert",
        DryRunRevert = "dry-run-revert",
        AlertOnly = "alert-only",
        RecordOnly = "record-only",
    }
}

vocabulary! {
    /// How it ended. The alert names (`alert-only`, `dry-run-would-revert`) are the ones rules and
    /// webhook consumers know; records written before they were unified still read (aliases).
    ResultKind {
        Compliant = "compliant",
        Exempt = "exempt",
        Unsupported = "unsupported",
        /// Drift under an audit-mode profile: recorded, nobody told.
        Recorded = "recorded",
        /// Drift under an alert-mode profile.
        AlertOnly = "alert-only" | "alerted",
        RateLimited = "rate-limited",
        ManualActionNeeded = "manual-action-needed",
        Reverted = "reverted",
        DryRunWouldRevert = "dry-run-would-revert" | "would-revert",
        RevertFailed = "revert-failed",
        /// ARM accepted the write and is still applying it.
        RevertPending = "revert-pending",
        /// The write went through but a fresh read does not show the target.
        RevertUnverified = "revert-unverified",
        /// Compliant, with a key that expires soon.
        KeyExpiring = "key-expiring",
        /// Compliant, on another key than the known-good one (a new vault or key name, not a
        /// rotation): someone confirms it was intended.
        KeyChanged = "key-changed",
        KeyUnusable = "key-unusable",
        Duplicate = "duplicate",
        OwnWrite = "own-write",
        NotSucceeded = "not-succeeded",
        NotWatched = "not-watched",
        EventTypeNotWatched = "event-type-not-watched",
        Deleted = "deleted",
        ResourceNotFound = "resource-not-found",
        NotInCatalog = "not-in-catalog",
    }
}

/// One audit record's content: what was seen, decided and done, with the ids that tie it to the
/// event. Only what is persisted; see [`Decision`] for what travels with it in memory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub trigger: Trigger,
    pub correlation_id: String,
    pub resource_id: Option<String>,
    pub resource_type: Option<String>,
    pub caller: Option<String>,
    pub caller_ip: Option<String>,
    pub profile: Option<String>,
    pub requirement: Option<Requirement>,
    pub verdict: VerdictKind,
    pub drift: Option<String>,
    pub before: Option<EncryptionState>,
    pub after: Option<EncryptionState>,
    pub action: ActionKind,
    pub result: ResultKind,
    pub detail: Option<String>,
    pub alert: bool,
    pub dry_run: bool,
    pub duration_ms: u64,
    /// The known-good key a `key-changed` result replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<crate::keyref::KeyRef>,
    /// A write weakened what protects the resource (an exemption tag, a retag into a weaker
    /// profile): alerted on its own, naming who did it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safeguard_changes: Vec<SafeguardChange>,
    /// Drift that is high severity whatever was done about it (a key in a vault outside the
    /// estate): even when reverted, someone tried to take the data hostage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub escalated: bool,
}

impl Outcome {
    /// Whether the outcome is a decision about a resource, kept in the audit trail. Duplicates,
    /// keyguard's own echoes and events it does not watch are log lines only.
    pub fn is_auditable(&self) -> bool {
        // A periodic look that finds a resource compliant is a finding, not an event of its own:
        // thousands of them per sweep would bury the decisions auditors look for.
        let routine_compliant = matches!(self.trigger, Trigger::Reconcile | Trigger::Sweep { .. })
            && self.verdict == VerdictKind::Compliant
            && self.result == ResultKind::Compliant;
        self.resource_id.is_some()
            && !matches!(self.verdict, VerdictKind::Skipped | VerdictKind::Ignored)
            && (!routine_compliant || !self.safeguard_changes.is_empty())
    }

    pub fn event_id(&self) -> Option<&str> {
        match &self.trigger {
            Trigger::Event { event_id, .. } => Some(event_id),
            Trigger::Manual | Trigger::Reconcile | Trigger::Sweep { .. } => None,
        }
    }

    /// One line for the Functions invocation log.
    pub fn summary(&self) -> String {
        format!(
            "{} {}: {} -> {}{}",
            self.resource_id.as_deref().unwrap_or("-"),
            self.verdict,
            self.action,
            self.result,
            self.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
        )
    }

    /// Appends `more` to the detail, keeping what is there first.
    pub fn add_detail(&mut self, more: Option<String>) {
        self.detail = match (self.detail.take(), more) {
            (Some(detail), Some(more)) => Some(format!("{detail}; {more}")),
            (detail, more) => detail.or(more),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_kebab_case_name() {
        fn check<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug + Copy>(
            all: &[T],
            name: impl Fn(T) -> &'static str,
        ) {
            for &value in all {
                let text = serde_json::to_value(value).unwrap();
                assert_eq!(text, name(value), "{value:?}");
                assert_eq!(serde_json::from_value::<T>(text).unwrap(), value);
            }
        }
        check(VerdictKind::ALL, VerdictKind::as_str);
        check(ActionKind::ALL, ActionKind::as_str);
        check(ResultKind::ALL, ResultKind::as_str);
    }

    #[test]
    fn records_written_in_the_old_vocabulary_still_read() {
        let old: ResultKind = serde_json::from_value(serde_json::json!("would-revert")).unwrap();
        assert_eq!(old, ResultKind::DryRunWouldRevert);
        let old: ResultKind = serde_json::from_value(serde_json::json!("alerted")).unwrap();
        assert_eq!(old, ResultKind::AlertOnly);
        assert!(serde_json::from_value::<ResultKind>(serde_json::json!("reverted ")).is_err());
    }
}
