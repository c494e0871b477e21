//! The one content model every format renders, so Teams, email text and email HTML cannot drift apart.

use crate::{Alert, AlertOutcome, Severity};

/// Longest value shown in any field. Keeps a hostile or runaway value (e.g. a huge error detail)
/// from pushing the card past Teams' ~28 KB payload limit or burying the facts.
const MAX_VALUE_CHARS: usize = 600;

/// Makes an attacker-influenced value safe to show as one line of text: control characters (which could
/// forge extra lines such as a fake "Outcome:" in the text email) become spaces, and bidi overrides
/// (which can make `stpayments\u{202E}txt.exe` read differently from what it is) become U+FFFD.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_VALUE_CHARS * 4));
    for (count, c) in s.chars().enumerate() {
        if count == MAX_VALUE_CHARS {
            out.push('…');
            break;
        }
        let c = match c {
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' => '\u{FFFD}',
            c if c.is_control() => ' ',
            c => c,
        };
        out.push(c);
    }
    out
}

/// Names people recognise in a subject line; unknown types fall back to the ARM type itself.
pub(crate) fn friendly_type(resource_type: &str) -> String {
    let known = [
        ("microsoft.storage/storageaccounts", "storage account"),
        ("microsoft.compute/disks", "managed disk"),
        ("microsoft.compute/diskencryptionsets", "disk encryption set"),
        ("microsoft.compute/snapshots", "disk snapshot"),
        ("microsoft.sql/servers", "SQL server"),
        ("microsoft.sql/managedinstances", "SQL managed instance"),
        ("microsoft.documentdb/databaseaccounts", "Cosmos DB account"),
        ("microsoft.containerregistry/registries", "container registry"),
        ("microsoft.cognitiveservices/accounts", "AI services account"),
        ("microsoft.servicebus/namespaces", "Service Bus namespace"),
        ("microsoft.eventhub/namespaces", "Event Hubs namespace"),
        ("microsoft.recoveryservices/vaults", "Recovery Services vault"),
        (
            "microsoft.dbforpostgresql/flexibleservers",
            "PostgreSQL flexible server",
        ),
        ("microsoft.dbformysql/flexibleservers", "MySQL flexible server"),
        ("microsoft.datafactory/factories", "data factory"),
        ("microsoft.databricks/workspaces", "Databricks workspace"),
        ("microsoft.machinelearningservices/workspaces", "Azure ML workspace"),
        ("microsoft.keyvault/managedhsms", "managed HSM"),
    ];
    let lower = resource_type.to_ascii_lowercase();
    known
        .iter()
        .find(|(t, _)| *t == lower)
        .map(|(_, name)| (*name).to_string())
        .unwrap_or_else(|| clean(resource_type))
}

/// Clear wording of what keyguard did, so nobody has to know the enum to decide whether to act.
pub(crate) fn outcome_sentence(outcome: AlertOutcome) -> &'static str {
    match outcome {
        AlertOutcome::KeyUnusable => {
            "A customer-managed key these resources depend on cannot be used. They are about to lose access to their data: restore the key or its access now."
        }
        AlertOutcome::Reverted => {
            "keyguard reverted the change: the resource is back on the expected key source. Check that the change was not intended."
        }
        AlertOutcome::RevertFailed => {
            "keyguard tried to revert the change and FAILED. The resource is still on the wrong key source: act now."
        }
        AlertOutcome::ManualActionNeeded => {
            "keyguard cannot revert this change automatically. The resource is still on the wrong key source: restore it by hand."
        }
        AlertOutcome::AlertOnly => {
            "keyguard is in alert-only mode for this resource and changed nothing. The resource is still on the wrong key source."
        }
        AlertOutcome::DryRunWouldRevert => {
            "Dry run: keyguard would have reverted this change but changed nothing. The resource is still on the wrong key source."
        }
        AlertOutcome::RateLimited => {
            "keyguard did not revert yet because its remediation rate limit was reached. The resource is still on the wrong key source."
        }
        AlertOutcome::Exempt => {
            "The resource is exempt from remediation, so keyguard changed nothing. It is still on a different key source than the policy expects."
        }
        AlertOutcome::SafeguardChanged => {
            "A write changed what protects this resource (an exemption tag, or the tags that choose its profile). Confirm that the change was intended."
        }
        AlertOutcome::KeyChanged => {
            "The resource now uses another customer-managed key (a new vault or key name, not a rotation). Confirm that the change was intended: whoever controls a key can disable it and make the data unreadable."
        }
    }
}

/// A labelled value, already cleaned (not yet escaped for any format).
pub(crate) struct Fact {
    pub label: &'static str,
    pub value: String,
}

pub(crate) struct Section {
    pub heading: &'static str,
    pub facts: Vec<Fact>,
}

/// What every format shows, in order.
pub(crate) struct Content {
    pub title: String,
    pub severity: String,
    pub outcome: String,
    pub detail: Option<String>,
    pub sections: Vec<Section>,
    pub portal_url: String,
}

pub(crate) fn content(alert: &Alert) -> Content {
    let fact = |label, value: &str| Fact {
        label,
        value: clean(value),
    };
    let opt = |label, value: &Option<String>, missing: &str| Fact {
        label,
        value: clean(value.as_deref().unwrap_or(missing)),
    };

    let mut what = vec![
        fact("Resource", &alert.resource_name),
        Fact {
            label: "Type",
            value: format!(
                "{} ({})",
                friendly_type(&alert.resource_type),
                clean(&alert.resource_type)
            ),
        },
        fact("Resource group", &alert.resource_group),
        fact("Subscription", &alert.subscription_id),
    ];
    what.push(fact("Resource ID", &alert.resource_id));

    let mut key = vec![fact("Expected", &alert.expected)];
    if alert.expected_key.is_some() {
        key.push(opt("Expected key", &alert.expected_key, ""));
    }
    key.push(fact("Actual", &alert.actual));
    if alert.actual_key.is_some() {
        key.push(opt("Actual key", &alert.actual_key, ""));
    }

    let mut who = vec![
        opt("Changed by", &alert.caller, "unknown"),
        opt("Caller IP", &alert.caller_ip, "unknown"),
        fact("Changed at", &alert.occurred_at),
    ];
    if alert.repeats > 0 {
        who.push(Fact {
            label: "Repeated changes",
            value: format!("{} more in the suppression window", alert.repeats),
        });
    }

    let mut context = Vec::new();
    if alert.cis_control.is_some() {
        context.push(opt("CIS control", &alert.cis_control, ""));
    }
    if alert.profile.is_some() {
        context.push(opt("Profile", &alert.profile, ""));
    }
    context.push(fact("Correlation ID", &alert.correlation_id));

    Content {
        title: alert.title(),
        severity: alert.severity.to_string(),
        outcome: outcome_sentence(alert.outcome).to_string(),
        detail: alert.detail.as_deref().map(clean),
        sections: vec![
            Section {
                heading: "What drifted",
                facts: what,
            },
            Section {
                heading: "Key source",
                facts: key,
            },
            Section {
                heading: "Who and when",
                facts: who,
            },
            Section {
                heading: "Context",
                facts: context,
            },
        ],
        portal_url: alert.portal_url(),
    }
}

/// Most alerts shown in one digest card or email. Each alert section is about 1 KB of card JSON, so
/// 25 keeps a digest of ordinary alerts well under Teams' ~28 KB payload limit and readable on a phone.
pub(crate) const DIGEST_MAX: usize = 25;

/// Short outcome wording for the digest header and subject ("2 reverted, 1 revert failed").
pub(crate) fn outcome_label(outcome: AlertOutcome) -> &'static str {
    match outcome {
        AlertOutcome::Reverted => "reverted",
        AlertOutcome::RevertFailed => "revert failed",
        AlertOutcome::ManualActionNeeded => "manual action needed",
        AlertOutcome::AlertOnly => "alert only",
        AlertOutcome::DryRunWouldRevert => "dry run",
        AlertOutcome::RateLimited => "rate limited",
        AlertOutcome::Exempt => "exempt",
        AlertOutcome::SafeguardChanged => "safeguard changed",
        AlertOutcome::KeyChanged => "key changed",
        AlertOutcome::KeyUnusable => "key unusable",
    }
}

/// One alert of a digest: its title line and the compact facts, already cleaned.
pub(crate) struct DigestEntry {
    pub title: String,
    pub needs_human: bool,
    pub facts: Vec<Fact>,
    pub portal_url: String,
}

/// What every digest format shows, in order. Built from at most [`DIGEST_MAX`] alerts.
pub(crate) struct Digest {
    /// "3 encryption drift alerts", or a harmless line for an empty slice.
    pub heading: String,
    /// "2 reverted, 1 revert failed" (empty for an empty slice).
    pub counts: String,
    /// Highest severity present (Info for an empty slice).
    pub severity: Severity,
    /// True when any alert still needs a person.
    pub needs_human: bool,
    pub entries: Vec<DigestEntry>,
    /// "and 5 more (see keyguard alerts)" when alerts were left out.
    pub overflow: Option<String>,
}

pub(crate) fn digest(alerts: &[Alert]) -> Digest {
    let n = alerts.len();
    let heading = match n {
        0 => "No encryption drift alerts".to_string(),
        1 => "1 encryption drift alert".to_string(),
        n => format!("{n} encryption drift alerts"),
    };
    let counts = AlertOutcome::ALL
        .iter()
        .filter_map(|&o| {
            let k = alerts.iter().filter(|a| a.outcome == o).count();
            (k > 0).then(|| format!("{k} {}", outcome_label(o)))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let entries = alerts.iter().take(DIGEST_MAX).map(digest_entry).collect();
    let overflow = (n > DIGEST_MAX).then(|| format!("and {} more (see keyguard alerts)", n - DIGEST_MAX));
    Digest {
        heading,
        counts,
        severity: alerts.iter().map(|a| a.severity).max().unwrap_or(Severity::Info),
        needs_human: alerts.iter().any(|a| a.outcome.needs_human()),
        entries,
        overflow,
    }
}

fn digest_entry(alert: &Alert) -> DigestEntry {
    let fact = |label, value: &str| Fact {
        label,
        value: clean(value),
    };
    let mut facts = vec![
        fact("Resource group", &alert.resource_group),
        fact("Expected", &alert.expected),
        fact("Actual", &alert.actual),
        fact("Changed by", alert.caller.as_deref().unwrap_or("unknown")),
        fact("What keyguard did", outcome_sentence(alert.outcome)),
    ];
    if let Some(detail) = &alert.detail {
        facts.push(fact("Detail", detail));
    }
    facts.push(fact("Correlation ID", &alert.correlation_id));
    DigestEntry {
        title: alert.title(),
        needs_human: alert.outcome.needs_human(),
        facts,
        portal_url: alert.portal_url(),
    }
}

/// Teams renders a Markdown subset in TextBlocks and Fact values; without escaping, a caller or detail
/// like `[Reset MFA](https://evil)` would become a clickable link inside a trusted security alert.
/// Only characters that start inline formatting are escaped everywhere (fewer visible backslashes if a
/// client ignores escapes); block markers (`- `, `# `, `1. `) matter only at the start of the value.
pub(crate) fn markdown_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    // "12. x" / "12) x" start an ordered list; "203.0.113.7" does not.
    let ordered_list = digits > 0
        && matches!(s.chars().nth(digits), Some('.' | ')'))
        && s.chars().nth(digits + 1).is_none_or(char::is_whitespace);
    for (i, c) in s.chars().enumerate() {
        let block_marker = (i == 0 && matches!(c, '-' | '+' | '#' | '>' | '=')) || (ordered_list && i == digits);
        if block_marker || matches!(c, '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '~') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_removes_line_forgery_and_bidi() {
        assert_eq!(clean("a\r\nOutcome: ok"), "a  Outcome: ok");
        assert_eq!(clean("st\u{202E}exe.txt"), "st\u{FFFD}exe.txt");
        let long = "x".repeat(5000);
        assert_eq!(clean(&long).chars().count(), MAX_VALUE_CHARS + 1);
    }

    #[test]
    fn markdown_links_are_neutralised() {
        assert_eq!(markdown_escape("[x](https://e)"), "\\[x\\](https://e)");
    }

    #[test]
    fn markdown_block_markers_only_at_start() {
        assert_eq!(markdown_escape("- a-b"), "\\- a-b");
        assert_eq!(markdown_escape("12. x 3."), "12\\. x 3.");
        assert_eq!(markdown_escape("rg-prod"), "rg-prod");
        assert_eq!(markdown_escape("203.0.113.7"), "203.0.113.7");
        assert_eq!(markdown_escape("3)"), "3\\)");
    }

    #[test]
    fn friendly_type_is_case_insensitive_with_fallback() {
        assert_eq!(friendly_type("Microsoft.Storage/storageAccounts"), "storage account");
        assert_eq!(friendly_type("Microsoft.Foo/bars"), "Microsoft.Foo/bars");
    }
}
