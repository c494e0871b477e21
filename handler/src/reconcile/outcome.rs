//! One reconcile's decision as it travels: the persisted outcome (keyguard-core's typed
//! vocabulary) with what only this process needs, and the audit record it becomes.

use keyguard_core::ResourceId;
pub use keyguard_core::outcome::{ActionKind, Outcome, ResultKind, Trigger, VerdictKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

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
                previous_key: None,
                safeguard_changes: Vec::new(),
                escalated: false,
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
