//! What one reconcile saw, decided and did, in one typed vocabulary: the audit trail stores it,
//! alerts and reports match on it, and nothing is parsed back from a string.

use keyguard_core::ResourceId;
use keyguard_core::catalog::EncryptionState;
use keyguard_core::config::Requirement;
use keyguard_core::safeguards::SafeguardChange;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

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
            #[cfg(test)]
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
    /// A write weakened what protects the resource (an exemption tag, a retag into a weaker
    /// profile): alerted on its own, naming who did it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safeguard_changes: Vec<SafeguardChange>,
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
    pub(super) fn add_detail(&mut self, more: Option<String>) {
        self.detail = match (self.detail.take(), more) {
            (Some(detail), Some(more)) => Some(format!("{detail}; {more}")),
            (detail, more) => detail.or(more),
        };
    }
}

/// One reconcile's result: the outcome the audit trail keeps, and what travels with it.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The resource's tags, for alert routing (owner tag); not part of the audit record.
    #[serde(skip)]
    pub tags: serde_json::Map<String, Value>,
    /// The id of the persisted audit record. A revert's record takes its intent's id, so the
    /// instance that finishes a crashed revert records it once, not twice.
    #[serde(skip)]
    pub record_id: Option<String>,
    /// What reports and `GET /api/findings` show for the resource after this decision.
    #[serde(skip)]
    pub finding: Option<keyguard_report::Finding>,
}

impl Decision {
    /// A decision not yet made: verdict and result are filled in by [`Decision::finish`].
    pub(super) fn new(trigger: Trigger, correlation_id: &str, resource_id: Option<&ResourceId>) -> Self {
        Decision {
            outcome: Outcome {
                trigger,
                correlation_id: correlation_id.to_string(),
                resource_id: resource_id.map(|r| r.as_str().to_string()),
                resource_type: resource_id.map(|r| r.resource_type()),
                caller: None,
                caller_ip: None,
                profile: None,
                requirement: None,
                verdict: VerdictKind::Ignored,
                drift: None,
                before: None,
                after: None,
                action: ActionKind::None,
                result: ResultKind::NotWatched,
                detail: None,
                alert: false,
                dry_run: false,
                duration_ms: 0,
                safeguard_changes: Vec::new(),
            },
            tags: serde_json::Map::new(),
            record_id: None,
            finding: None,
        }
    }

    pub(super) fn finish(mut self, verdict: VerdictKind, result: ResultKind, detail: Option<String>) -> Self {
        self.set(verdict, result, detail);
        self
    }

    pub(super) fn set(&mut self, verdict: VerdictKind, result: ResultKind, detail: Option<String>) {
        self.outcome.verdict = verdict;
        self.outcome.result = result;
        self.outcome.detail = detail;
    }
}

/// One entry of the persisted audit trail: an outcome with its id and time.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// UUID v7 (time-ordered).
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    #[serde(flatten)]
    pub outcome: Outcome,
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
    fn the_api_document_lists_exactly_these_values() {
        let document: Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        let fields = &document["components"]["schemas"]["OutcomeFields"]["properties"];
        let listed = |field: &str| -> Vec<String> {
            let values = fields[field]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{field} has no enum"));
            values.iter().map(|v| v.as_str().unwrap().to_string()).collect()
        };
        let names = |all: &[&str]| all.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let verdicts: Vec<&str> = VerdictKind::ALL.iter().map(|v| v.as_str()).collect();
        let actions: Vec<&str> = ActionKind::ALL.iter().map(|v| v.as_str()).collect();
        let results: Vec<&str> = ResultKind::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(listed("verdict"), names(&verdicts));
        assert_eq!(listed("action"), names(&actions));
        assert_eq!(listed("result"), names(&results));
    }

    #[test]
    fn records_written_in_the_old_vocabulary_still_read() {
        let old: ResultKind = serde_json::from_value(serde_json::json!("would-revert")).unwrap();
        assert_eq!(old, ResultKind::DryRunWouldRevert);
        let old: ResultKind = serde_json::from_value(serde_json::json!("alerted")).unwrap();
        assert_eq!(old, ResultKind::AlertOnly);
        assert!(serde_json::from_value::<ResultKind>(serde_json::json!("reverted ")).is_err());
    }

    #[test]
    fn a_persisted_record_carries_no_in_memory_fields() {
        let id = ResourceId::parse(
            "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
        )
        .unwrap();
        let mut decision =
            Decision::new(Trigger::Manual, "c1", Some(&id)).finish(VerdictKind::Compliant, ResultKind::Compliant, None);
        decision.tags.insert("owner".into(), "x@example.com".into());
        decision.record_id = Some("r1".into());
        let json = serde_json::to_value(&decision).unwrap();
        assert_eq!(json["verdict"], "compliant");
        assert!(json.get("tags").is_none() && json.get("recordId").is_none(), "{json}");
        let read: Outcome = serde_json::from_value(json).unwrap();
        assert_eq!(read.result, ResultKind::Compliant);
    }
}
