use std::process::Command;

use keyguard_notify::{Alert, AlertOutcome, Severity, teams};
use serde_json::Value;

use crate::support::{digest_alerts, hostile_alert, manifest_dir, minimal_alert, shown_name, temp_file};

/// Runs Microsoft's `adaptivecards` parser over the card and returns its report.
fn validate_with_adaptivecards(card: &Value) -> Value {
    let node_dir = manifest_dir().join("tests/node");
    assert!(
        node_dir.join("node_modules/adaptivecards").is_dir(),
        "the adaptivecards npm package is missing: run `npm ci --prefix crates/keyguard-notify/tests/node`"
    );
    let file = temp_file("card.json");
    std::fs::write(&file, serde_json::to_vec_pretty(card).unwrap()).unwrap();
    let node = std::env::var("KEYGUARD_TEST_NODE").unwrap_or_else(|_| "node".into());
    let out = Command::new(&node)
        .arg(node_dir.join("validate-card.js"))
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{node}` (install Node.js >= 18): {e}"));
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "validator printed no JSON ({e}); stdout: {stdout}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "validator failed: {report}\ncard: {card:#}");
    report
}

fn variants() -> Vec<Alert> {
    let mut all = Vec::new();
    for outcome in AlertOutcome::ALL {
        all.push(Alert {
            outcome,
            ..Alert::sample()
        });
        all.push(hostile_alert(outcome));
        all.push(minimal_alert(outcome));
    }
    all
}

#[test]
fn every_outcome_passes_the_adaptivecards_parser_without_errors_or_warnings() {
    for alert in variants() {
        let card = teams::adaptive_card(&alert);
        let report = validate_with_adaptivecards(&card);
        assert_eq!(report["errors"], serde_json::json!([]), "{:?}", alert.outcome);
        assert_eq!(report["warnings"], serde_json::json!([]), "{:?}", alert.outcome);
    }
}

/// The validator itself must catch what we rely on it for, or the test above proves nothing.
#[test]
fn validator_rejects_unknown_elements_and_dropped_properties() {
    let mut card = teams::adaptive_card(&Alert::sample());
    card["body"][0]["items"][0]["wieght"] = "Bolder".into();
    let node_dir = manifest_dir().join("tests/node");
    let file = temp_file("bad-card.json");
    std::fs::write(&file, serde_json::to_vec(&card).unwrap()).unwrap();
    let out = Command::new(std::env::var("KEYGUARD_TEST_NODE").unwrap_or_else(|_| "node".into()))
        .arg(node_dir.join("validate-card.js"))
        .arg(&file)
        .output()
        .expect("node must be installed");
    let _ = std::fs::remove_file(&file);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["warnings"].to_string().contains("wieght"), "{report}");

    let mut card = teams::adaptive_card(&Alert::sample());
    card["body"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "TextBlok", "text": "x"}));
    let file = temp_file("bad-card2.json");
    std::fs::write(&file, serde_json::to_vec(&card).unwrap()).unwrap();
    let out = Command::new(std::env::var("KEYGUARD_TEST_NODE").unwrap_or_else(|_| "node".into()))
        .arg(node_dir.join("validate-card.js"))
        .arg(&file)
        .output()
        .expect("node must be installed");
    let _ = std::fs::remove_file(&file);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["errors"].to_string().contains("TextBlok"), "{report}");
}

fn all_text(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s}\n"),
        Value::Array(a) => a.iter().map(all_text).collect(),
        Value::Object(o) => o.values().map(all_text).collect(),
        _ => String::new(),
    }
}

#[test]
fn card_shows_what_a_responder_needs() {
    let alert = Alert {
        outcome: AlertOutcome::RevertFailed,
        detail: Some("PATCH returned 403 AuthorizationFailed".into()),
        ..Alert::sample()
    };
    let card = teams::adaptive_card(&alert);
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.5");
    assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
    let text = all_text(&card);
    for needle in [
        "stpayments",
        "storage account",
        "rg-prod",
        "00000000-0000-0000-0000-000000000000",
        "customer-managed key (Key Vault)",
        "Microsoft-managed keys",
        "https://kv-prod.vault.azure.net/keys/stpayments-cmk",
        "mallory@contoso.com",
        "203.0.113.7",
        "2026-01-15T09:30:00Z",
        "FAILED",
        "PATCH returned 403 AuthorizationFailed",
        "CIS Azure 3.12",
        "00000000-0000-4000-8000-000000000001",
    ] {
        assert!(text.contains(needle), "card lacks {needle:?}:\n{text}");
    }
    let action = &card["actions"][0];
    assert_eq!(action["type"], "Action.OpenUrl");
    assert_eq!(action["url"], alert.portal_url());
    assert_eq!(
        alert.portal_url(),
        "https://portal.azure.com/#@/resource/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/stpayments/overview"
    );
}

#[test]
fn each_outcome_has_its_own_wording() {
    let mut seen = std::collections::HashSet::new();
    for outcome in AlertOutcome::ALL {
        let alert = Alert {
            outcome,
            ..Alert::sample()
        };
        assert!(seen.insert(alert.title()), "duplicate title for {outcome:?}");
        let text = all_text(&teams::adaptive_card(&alert));
        assert!(seen.insert(text), "duplicate card for {outcome:?}");
    }
}

#[test]
fn hostile_values_cannot_become_links_or_forge_lines() {
    let alert = hostile_alert(AlertOutcome::Reverted);
    let card = teams::adaptive_card(&alert);
    let text = all_text(&card);
    assert!(!text.contains("[Reset MFA]"), "{text}");
    assert!(text.contains("\\[Reset MFA\\]"), "{text}");
    assert!(!text.contains('\u{202E}'));
    assert!(!text.contains("\r\nBcc"));
    // Only one action, pointing at the portal, whatever the values say.
    assert_eq!(card["actions"].as_array().map(Vec::len), Some(1));
    let url = alert.portal_url();
    assert!(url.starts_with("https://portal.azure.com/#@/resource/subscriptions/"));

    let crafted = Alert {
        resource_id: "/x\" onclick=\"y#frag?q <b>".into(),
        ..Alert::sample()
    };
    let url = crafted.portal_url();
    assert!(
        !url.contains(['"', ' ', '<', '>', '?']) && url.matches('#').count() == 1,
        "{url}"
    );
}

#[test]
fn workflows_payload_wraps_the_card_as_teams_expects() {
    let alert = Alert::sample();
    let payload = teams::workflows_payload(&alert);
    assert_eq!(payload["type"], "message");
    let att = &payload["attachments"][0];
    assert_eq!(att["contentType"], "application/vnd.microsoft.card.adaptive");
    assert!(att["contentUrl"].is_null());
    assert_eq!(att["content"], teams::adaptive_card(&alert));
    assert_eq!(payload["attachments"].as_array().map(Vec::len), Some(1));
}

#[test]
fn message_card_carries_the_same_facts_without_markdown() {
    let alert = hostile_alert(AlertOutcome::ManualActionNeeded);
    let card = teams::message_card(&alert);
    assert_eq!(card["@type"], "MessageCard");
    assert_eq!(card["@context"], "https://schema.org/extensions");
    assert_eq!(card["themeColor"], "D70000");
    assert!(card["summary"].as_str().is_some_and(|s| !s.is_empty()));
    for s in card["sections"].as_array().unwrap() {
        assert_eq!(s["markdown"], false);
    }
    let text = all_text(&card);
    assert!(text.contains("203.0.113.9"));
    assert!(text.contains("restore it by hand"));
    assert_eq!(card["potentialAction"][0]["targets"][0]["uri"], alert.portal_url());
}

#[test]
fn severity_changes_the_banner() {
    let style = |severity| {
        teams::adaptive_card(&Alert {
            severity,
            ..Alert::sample()
        })["body"][0]["style"]
            .clone()
    };
    assert_eq!(style(Severity::High), "attention");
    assert_eq!(style(Severity::Warning), "warning");
    assert_eq!(style(Severity::Info), "accent");
}

#[test]
fn alert_json_shape_is_stable_for_webhook_consumers() {
    let v = serde_json::to_value(Alert {
        outcome: AlertOutcome::DryRunWouldRevert,
        ..Alert::sample()
    })
    .unwrap();
    assert_eq!(v["outcome"], "dry-run-would-revert");
    assert_eq!(v["severity"], "high");
    assert_eq!(v["repeats"], 0);
    let back: Alert = serde_json::from_value(v).unwrap();
    assert_eq!(back.outcome, AlertOutcome::DryRunWouldRevert);
}

#[test]
fn titles_read_well() {
    assert_eq!(
        Alert::sample().title(),
        "Drift reverted: storage account stpayments (rg-prod)"
    );
    assert_eq!(
        keyguard_notify::email::subject(&Alert::sample()),
        "[keyguard] Drift reverted: storage account stpayments (rg-prod)"
    );
    let folded = Alert {
        repeats: 4,
        ..Alert::sample()
    };
    assert!(folded.title().ends_with("(+4 repeated changes)"));
}

#[test]
fn digest_cards_pass_the_adaptivecards_parser_without_errors_or_warnings() {
    for n in [0, 1, 3, 30] {
        let card = teams::digest_card(&digest_alerts(n));
        let report = validate_with_adaptivecards(&card);
        assert_eq!(report["errors"], serde_json::json!([]), "{n} alerts");
        assert_eq!(report["warnings"], serde_json::json!([]), "{n} alerts");
        assert_eq!(card["version"], "1.5");
        assert_eq!(card["$schema"], teams::ADAPTIVE_CARD_SCHEMA);
    }
}

/// Sections in a digest card: one Container per alert after the header, each ending in an ActionSet.
fn alert_sections(card: &Value) -> Vec<&Value> {
    card["body"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "Container" && e["items"][2]["type"] == "ActionSet")
        .collect()
}

#[test]
fn digest_card_has_a_counting_header_and_one_section_per_alert() {
    let alerts = digest_alerts(3);
    let card = teams::digest_card(&alerts);
    let header = &card["body"][0];
    assert_eq!(header["items"][0]["text"], "3 encryption drift alerts");
    let sub = header["items"][1]["text"].as_str().unwrap();
    assert!(sub.starts_with("2 reverted, 1 revert failed"), "{sub}");
    // Highest severity (the sample is High) sets the banner.
    assert_eq!(header["style"], "attention");
    assert!(
        card["fallbackText"]
            .as_str()
            .unwrap()
            .contains("2 reverted, 1 revert failed")
    );

    let sections = alert_sections(&card);
    assert_eq!(sections.len(), 3);
    for (alert, section) in alerts.iter().zip(&sections) {
        let text = all_text(section);
        for needle in [
            alert.resource_group.as_str(),
            alert.expected.as_str(),
            alert.actual.as_str(),
            alert.correlation_id.as_str(),
        ] {
            assert!(text.contains(needle), "section lacks {needle:?}:\n{text}");
        }
        let action = &section["items"][2]["actions"][0];
        assert_eq!(action["type"], "Action.OpenUrl");
        assert_eq!(action["url"], alert.portal_url());
    }
    // The sample's title is the single alert's title, unchanged.
    assert_eq!(sections[0]["items"][0]["text"], Alert::sample().title());
    assert!(all_text(sections[1]).contains("ops-automation@contoso.com"));
    assert!(all_text(sections[1]).contains("FAILED"));
    assert_eq!(sections[1]["items"][0]["color"], "Attention");
    assert!(all_text(&card).contains(&shown_name(&alerts[0])));
    assert!(!all_text(&card).contains("more (see keyguard alerts)"));

    let severity_of = |severity| {
        let alerts = vec![Alert {
            severity,
            ..Alert::sample()
        }];
        teams::digest_card(&alerts)["body"][0]["style"].clone()
    };
    assert_eq!(severity_of(Severity::Warning), "warning");
    assert_eq!(severity_of(Severity::Info), "accent");
    assert_eq!(
        teams::digest_card(&digest_alerts(1))["body"][0]["items"][0]["text"],
        "1 encryption drift alert"
    );
}

#[test]
fn digest_card_is_capped_at_25_alerts() {
    let alerts = digest_alerts(30);
    let card = teams::digest_card(&alerts);
    assert_eq!(card["body"][0]["items"][0]["text"], "30 encryption drift alerts");
    assert_eq!(alert_sections(&card).len(), 25);
    let text = all_text(&card);
    assert!(text.contains("and 5 more (see keyguard alerts)"), "{text}");
    assert!(text.contains(&alerts[24].correlation_id));
    assert!(!text.contains(&alerts[25].correlation_id));
    // The header still counts every alert, not just the shown ones.
    let counted: usize = card["body"][0]["items"][1]["text"]
        .as_str()
        .unwrap()
        .split('|')
        .next()
        .unwrap()
        .split(", ")
        .map(|part| part.trim().split(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(counted, 30);
    // Teams rejects payloads over ~28 KB.
    let size = serde_json::to_vec(&teams::digest_workflows_payload(&alerts))
        .unwrap()
        .len();
    assert!(size < 28 * 1024, "digest payload is {size} bytes");
}

#[test]
fn digest_card_escapes_hostile_values_like_the_single_card() {
    let alerts = vec![
        hostile_alert(AlertOutcome::Reverted),
        hostile_alert(AlertOutcome::RevertFailed),
    ];
    let card = teams::digest_card(&alerts);
    let text = all_text(&card);
    assert!(!text.contains("[Reset MFA]"), "{text}");
    assert!(text.contains("\\[Reset MFA\\]"), "{text}");
    assert!(!text.contains('\u{202E}'));
    assert!(!text.contains("\r\nBcc"));
    assert!(text.contains("\\<script\\>"), "{text}");
    let single = all_text(&teams::adaptive_card(&alerts[0]));
    assert!(single.contains(card["body"][1]["items"][0]["text"].as_str().unwrap()));
}

#[test]
fn empty_digest_renders_a_harmless_card() {
    let card = teams::digest_card(&[]);
    assert_eq!(card["body"][0]["items"][0]["text"], "No encryption drift alerts");
    assert!(alert_sections(&card).is_empty());
    assert_eq!(card["body"][0]["style"], "accent");
    let mc = teams::digest_message_card(&[]);
    assert_eq!(mc["@type"], "MessageCard");
    assert_eq!(mc["sections"].as_array().map(Vec::len), Some(1));
}

#[test]
fn digest_payloads_wrap_and_mirror_the_card() {
    let alerts = digest_alerts(3);
    let payload = teams::digest_workflows_payload(&alerts);
    assert_eq!(payload["type"], "message");
    assert_eq!(
        payload["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(payload["attachments"][0]["content"], teams::digest_card(&alerts));

    let mc = teams::digest_message_card(&digest_alerts(30));
    assert_eq!(mc["@type"], "MessageCard");
    assert_eq!(mc["themeColor"], "D70000");
    assert!(
        mc["title"]
            .as_str()
            .unwrap()
            .starts_with("30 encryption drift alerts (")
    );
    let sections = mc["sections"].as_array().unwrap();
    // Summary + 25 alerts + overflow.
    assert_eq!(sections.len(), 27);
    for s in sections {
        assert_eq!(s["markdown"], false);
    }
    assert_eq!(sections[26]["text"], "and 5 more (see keyguard alerts)");
    assert_eq!(
        sections[1]["potentialAction"][0]["targets"][0]["uri"],
        alerts[0].portal_url()
    );
    assert_eq!(sections[2]["title"], alerts[1].title());
}
