//! Key Vault preconditions for pointing a resource at a customer-managed key. Writing a CMK that
//! the service cannot use (missing, disabled or expired key) makes the data unreadable, and a key
//! in a vault without purge protection can be destroyed for good: never revert to such a key.

use serde::Serialize;
use time::OffsetDateTime;

use crate::rfc3339;

/// What Key Vault says about a key (data plane `GET {vault}/keys/{name}[/{version}]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyFacts {
    pub exists: bool,
    pub enabled: bool,
    pub expires: Option<OffsetDateTime>,
    /// `attributes.recoveryLevel`, e.g. `Recoverable` (soft delete + purge protection),
    /// `Recoverable+Purgeable` (soft delete only), `Purgeable` (neither).
    pub recovery_level: Option<String>,
}

impl KeyFacts {
    pub fn missing() -> KeyFacts {
        KeyFacts {
            exists: false,
            enabled: false,
            expires: None,
            recovery_level: None,
        }
    }
}

/// A precondition that failed, said precisely.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "camelCase")]
pub enum KeyProblem {
    Missing,
    Disabled,
    Expired {
        at: String,
    },
    /// Soft delete or purge protection is off: the key (and with it the data) could be purged.
    NotRecoverable {
        recovery_level: String,
    },
    /// keyguard could not read the key (no permission, or the vault refused): unverified is unsafe.
    Unreadable {
        reason: String,
    },
}

impl KeyProblem {
    pub fn describe(&self) -> String {
        match self {
            KeyProblem::Missing => "the key does not exist in Key Vault".into(),
            KeyProblem::Disabled => "the key is disabled in Key Vault".into(),
            KeyProblem::Expired { at } => format!("the key expired on {at}"),
            KeyProblem::Unreadable { reason } => format!("keyguard could not verify the key: {reason}"),
            KeyProblem::NotRecoverable { recovery_level } => {
                format!("the vault does not have soft delete and purge protection (recovery level {recovery_level})")
            }
        }
    }
}

/// Every failed precondition, in the order a person would fix them.
pub fn key_problems(facts: &KeyFacts, now: OffsetDateTime) -> Vec<KeyProblem> {
    if !facts.exists {
        return vec![KeyProblem::Missing];
    }
    let mut problems = Vec::new();
    if !facts.enabled {
        problems.push(KeyProblem::Disabled);
    }
    if let Some(expires) = facts.expires.filter(|e| *e <= now) {
        problems.push(KeyProblem::Expired { at: rfc3339(expires) });
    }
    // "Purgeable" in any recovery level means purge protection is off (or soft delete too).
    match &facts.recovery_level {
        Some(level) if !level.to_ascii_lowercase().contains("purgeable") => {}
        Some(level) => problems.push(KeyProblem::NotRecoverable {
            recovery_level: level.clone(),
        }),
        None => problems.push(KeyProblem::NotRecoverable {
            recovery_level: "unknown".into(),
        }),
    }
    problems
}

/// The key's expiry when it falls within `days` from now (and has not passed): a warning finding.
pub fn expiring_within(facts: &KeyFacts, now: OffsetDateTime, days: u32) -> Option<OffsetDateTime> {
    facts
        .expires
        .filter(|e| *e > now && *e <= now + time::Duration::days(i64::from(days)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn good() -> KeyFacts {
        KeyFacts {
            exists: true,
            enabled: true,
            expires: None,
            recovery_level: Some("Recoverable".into()),
        }
    }

    #[test]
    fn a_usable_key_has_no_problems() {
        let now = OffsetDateTime::now_utc();
        assert!(key_problems(&good(), now).is_empty());
        let custom = KeyFacts {
            recovery_level: Some("CustomizedRecoverable+ProtectedSubscription".into()),
            ..good()
        };
        assert!(key_problems(&custom, now).is_empty());
    }

    #[test]
    fn each_failed_precondition_is_named() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(key_problems(&KeyFacts::missing(), now), vec![KeyProblem::Missing]);
        assert_eq!(
            key_problems(
                &KeyFacts {
                    enabled: false,
                    ..good()
                },
                now
            ),
            vec![KeyProblem::Disabled]
        );
        let expired = KeyFacts {
            expires: Some(now - Duration::days(1)),
            ..good()
        };
        assert!(matches!(
            key_problems(&expired, now).as_slice(),
            [KeyProblem::Expired { .. }]
        ));
        for level in ["Recoverable+Purgeable", "Purgeable", "CustomizedRecoverable+Purgeable"] {
            let f = KeyFacts {
                recovery_level: Some(level.into()),
                ..good()
            };
            assert_eq!(
                key_problems(&f, now),
                vec![KeyProblem::NotRecoverable {
                    recovery_level: level.into()
                }],
                "{level}"
            );
        }
        let all = KeyFacts {
            enabled: false,
            expires: Some(now),
            recovery_level: Some("Purgeable".into()),
            ..good()
        };
        assert_eq!(key_problems(&all, now).len(), 3);
        assert!(KeyProblem::Disabled.describe().contains("disabled"));
    }

    #[test]
    fn expiry_warnings_cover_the_window_only() {
        let now = OffsetDateTime::now_utc();
        let soon = KeyFacts {
            expires: Some(now + Duration::days(10)),
            ..good()
        };
        assert!(expiring_within(&soon, now, 30).is_some());
        assert!(expiring_within(&soon, now, 5).is_none());
        let past = KeyFacts {
            expires: Some(now - Duration::days(1)),
            ..good()
        };
        assert!(
            expiring_within(&past, now, 30).is_none(),
            "expired is a problem, not a warning"
        );
        assert!(expiring_within(&good(), now, 30).is_none());
    }
}
