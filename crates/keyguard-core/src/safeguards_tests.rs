use serde_json::json;
use time::macros::datetime;

use super::*;
use crate::catalog::EncryptionState;
use crate::config::{Config, Scope};
use crate::evaluate::{Verdict, evaluate};
use crate::resource_id::ResourceId;

const ST: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st";
const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

fn tags(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn settings() -> Settings {
    Settings::default()
}

fn off() -> Settings {
    Settings {
        tag_exemptions: false,
        ..Settings::default()
    }
}

fn problem(status: ExemptionStatus) -> String {
    match status {
        ExemptionStatus::Invalid { problem, .. } => problem,
        other => panic!("expected an ignored tag, got {other:?}"),
    }
}

#[test]
fn a_far_future_tag_does_not_exempt_and_says_why() {
    let p = problem(tag_exemption(
        &tags(json!({"keyguard-exempt-until": "9999-12-31"})),
        NOW,
        &settings(),
    ));
    assert!(p.contains("9999-12-31T23:59:59"), "{p}");
    assert!(p.contains("more than max_exemption_days (90) ahead"), "{p}");
    // Through the whole evaluation: drift, and the finding's notes say why the tag did not count.
    let config = Config::builtin_default();
    let body = json!({"tags": {"keyguard-exempt-until": "9999-12-31"},
        "properties": {"encryption": {"keySource": "Microsoft.Storage"}}});
    let e = evaluate(&ResourceId::parse(ST).unwrap(), &body, &config, NOW);
    assert!(e.verdict.is_drift(), "{:?}", e.verdict);
    assert!(
        e.notes.iter().any(|n| n.contains("more than max_exemption_days")),
        "{:?}",
        e.notes
    );
}

#[test]
fn max_exemption_days_is_the_limit_counted_from_now() {
    let s = Settings {
        max_exemption_days: 30,
        ..Settings::default()
    };
    let at = |t: &str| tag_exemption(&tags(json!({"keyguard-exempt-until": t})), NOW, &s);
    assert!(
        matches!(at("2026-03-31T12:00:00Z"), ExemptionStatus::Active { .. }),
        "exactly 30 days"
    );
    assert!(problem(at("2026-03-31T12:00:01Z")).contains("max_exemption_days (30)"));
    assert!(matches!(at("2026-02-01"), ExemptionStatus::Expired { .. }));
    assert!(problem(at("soon")).contains("neither a date"));
    // The limit never overflows the calendar.
    let huge = Settings {
        max_exemption_days: u32::MAX,
        ..Settings::default()
    };
    let far = tag_exemption(&tags(json!({"keyguard-exempt-until": "9999-12-31"})), NOW, &huge);
    assert!(matches!(far, ExemptionStatus::Active { .. }), "{far:?}");
}

#[test]
fn with_tag_exemptions_off_the_tags_exempt_nothing() {
    let valid = tags(json!({"keyguard-exempt-until": "2026-03-10", "keyguard-exempt-reason": "CHG-1"}));
    assert!(matches!(
        tag_exemption(&valid, NOW, &settings()),
        ExemptionStatus::Active { .. }
    ));
    assert!(problem(tag_exemption(&valid, NOW, &off())).contains("tag_exemptions = false"));
    let reason_only = tags(json!({"keyguard-exempt-reason": "CHG-1"}));
    assert!(problem(tag_exemption(&reason_only, NOW, &off())).contains("turned off"));
    assert_eq!(
        tag_exemption(&tags(json!({"env": "x"})), NOW, &off()),
        ExemptionStatus::None
    );
    let config = Config {
        settings: off(),
        ..Config::builtin_default()
    };
    let body = json!({"tags": valid, "properties": {"encryption": {"keySource": "Microsoft.Storage"}}});
    let e = evaluate(&ResourceId::parse(ST).unwrap(), &body, &config, NOW);
    assert!(e.verdict.is_drift(), "{:?}", e.verdict);
}

#[test]
fn the_tag_effect_is_what_the_evaluation_honours() {
    let effect = |t: Value| TagEffect::of(&tags(t), NOW, &settings());
    assert_eq!(
        effect(json!({"keyguard-exempt-until": "2026-03-10"})),
        TagEffect::Exempts {
            until: datetime!(2026-03-10 23:59:59.999_999_999 UTC)
        }
    );
    assert!(
        matches!(effect(json!({"keyguard-exempt-until": "2026-01-10"})), TagEffect::Ignored { why } if why.contains("expired"))
    );
    assert!(matches!(effect(json!({})), TagEffect::Ignored { .. }));
}

fn profile(name: &str, require: Requirement, mode: Mode, vaults: &[&str]) -> ProfileFacts {
    ProfileFacts {
        name: name.into(),
        require,
        mode,
        allowed_vaults: vaults.iter().map(|v| v.to_string()).collect(),
    }
}

fn state(t: Value, profile: Option<ProfileFacts>) -> SafeguardState {
    let t = tags(t);
    SafeguardState {
        exemption: ExemptionTags::of(&t),
        profile,
        // Any injective text stands in for the digest here.
        tags_fingerprint: canonical_tags(&t),
    }
}

fn prod() -> ProfileFacts {
    profile("prod", Requirement::Cmk, Mode::Enforce, &["kv-prod.vault.azure.net"])
}

fn change_kinds(before: Option<&SafeguardState>, after_tags: Value, s: &Settings) -> Vec<ExemptionTagChange> {
    let after = state(after_tags.clone(), Some(prod()));
    let effect = TagEffect::of(&tags(after_tags), NOW, s);
    changes(before, &after, &effect, Look::AfterWrite, s)
        .into_iter()
        .filter_map(|c| match c {
            SafeguardChange::ExemptionTag { kind, .. } => Some(kind),
            SafeguardChange::WeakerProfile { .. } => None,
        })
        .collect()
}

#[test]
fn adding_extending_and_changing_an_exemption_tag_are_changes() {
    use ExemptionTagChange::*;
    let s = settings();
    let was = |t: Value| state(t, Some(prod()));
    let untagged = was(json!({"env": "prod"}));
    let until = |d: &str| json!({"env": "prod", "keyguard-exempt-until": d});
    assert_eq!(change_kinds(Some(&untagged), until("2026-03-10"), &s), vec![Added]);
    assert_eq!(
        change_kinds(Some(&untagged), until("9999-12-31"), &s),
        vec![Added],
        "an attempt that does not exempt is still news"
    );
    let tagged = was(until("2026-03-10"));
    assert_eq!(change_kinds(Some(&tagged), until("2026-04-10"), &s), vec![Extended]);
    assert_eq!(change_kinds(Some(&tagged), until("2026-03-05"), &s), vec![Changed]);
    assert_eq!(change_kinds(Some(&tagged), until("whenever"), &s), vec![Changed]);
    let with_reason = json!({"env": "prod", "keyguard-exempt-until": "2026-03-10", "keyguard-exempt-reason": "other"});
    assert_eq!(change_kinds(Some(&tagged), with_reason, &s), vec![Changed]);
    assert!(
        change_kinds(Some(&tagged), until("2026-03-10"), &s).is_empty(),
        "unchanged"
    );
    assert!(
        change_kinds(Some(&tagged), json!({"env": "prod"}), &s).is_empty(),
        "removed: protection is back"
    );
    // First look after a write: only an exemption in force is news.
    assert_eq!(change_kinds(None, until("2026-03-10"), &s), vec![FirstSeen]);
    assert!(change_kinds(None, until("9999-12-31"), &s).is_empty());
    assert!(change_kinds(None, json!({"env": "prod"}), &s).is_empty());
    // A sweep's or a check's first look is not a write anybody just made.
    let first = state(until("2026-03-10"), Some(prod()));
    let effect = TagEffect::of(&tags(until("2026-03-10")), NOW, &s);
    assert!(changes(None, &first, &effect, Look::Routine, &s).is_empty());
    // Once recorded, a change is news whatever the look.
    assert_eq!(changes(Some(&untagged), &first, &effect, Look::Routine, &s).len(), 1);
    // With tag exemptions off, exemption tags change nothing.
    assert!(change_kinds(Some(&untagged), until("2026-03-10"), &off()).is_empty());
}

#[test]
fn the_change_says_what_changed_and_what_it_does() {
    let before = state(json!({"keyguard-exempt-until": "2026-03-10"}), Some(prod()));
    let after_tags = json!({"keyguard-exempt-until": "9999-12-31", "keyguard-exempt-reason": "x".repeat(300)});
    let after = state(after_tags.clone(), Some(prod()));
    assert_eq!(
        after.exemption.reason.as_ref().map(String::len),
        Some(256),
        "kept clipped"
    );
    let effect = TagEffect::of(&tags(after_tags), NOW, &settings());
    let found = changes(Some(&before), &after, &effect, Look::AfterWrite, &settings());
    let text = found[0].describe();
    assert!(
        text.starts_with("exemption extended from \"2026-03-10\" to \"9999-12-31\""),
        "{text}"
    );
    assert!(text.contains("it does not exempt the resource"), "{text}");
    assert!(text.contains("max_exemption_days (90)"), "{text}");
    let added = SafeguardChange::ExemptionTag {
        kind: ExemptionTagChange::Added,
        before: ExemptionTags::default(),
        after: ExemptionTags {
            until: Some("2026-03-10".into()),
            reason: Some("y".repeat(200)),
        },
        effect: TagEffect::Exempts {
            until: datetime!(2026-03-10 23:59:59 UTC),
        },
    };
    let text = added.describe();
    assert!(text.contains("keyguard-exempt-until=\"2026-03-10\""), "{text}");
    assert!(
        text.contains("keyguard leaves the resource alone until 2026-03-10T23:59:59Z"),
        "{text}"
    );
    assert!(!text.contains(&"y".repeat(65)), "quoted text is clipped: {text}");
}

#[test]
fn a_retag_into_a_weaker_profile_is_a_change_and_a_configuration_change_is_not() {
    let s = settings();
    let dev = profile("dev", Requirement::Encrypted, Mode::Audit, &[]);
    let before = state(json!({"env": "prod"}), Some(prod()));
    let effect = TagEffect::Ignored { why: String::new() };
    let retagged = state(json!({"env": "dev"}), Some(dev.clone()));
    let found = changes(Some(&before), &retagged, &effect, Look::Routine, &s);
    assert_eq!(found.len(), 1, "{found:?}");
    let SafeguardChange::WeakerProfile { weakened, .. } = &found[0] else {
        panic!("{found:?}")
    };
    assert_eq!(
        weakened,
        &vec![
            Weakening::AcceptsMicrosoftKeys,
            Weakening::AcceptsCustomerKeys { vaults: None },
            Weakening::Mode {
                from: Mode::Enforce,
                to: Mode::Audit
            }
        ]
    );
    let text = found[0].describe();
    assert!(
        text.starts_with("retagged from profile prod (cmk, enforce) into dev (encrypted, audit)"),
        "{text}"
    );
    // The same profiles with the tags unchanged: the configuration moved it, and people reviewed that.
    let reconfigured = state(json!({"env": "prod"}), Some(dev));
    assert!(changes(Some(&before), &reconfigured, &effect, Look::Routine, &s).is_empty());
    // Retagged into a stricter profile, or into the same one: nothing to report.
    let stricter = profile(
        "prod-strict",
        Requirement::Cmk,
        Mode::Enforce,
        &["kv-prod.vault.azure.net"],
    );
    assert!(
        changes(
            Some(&before),
            &state(json!({"env": "x"}), Some(stricter)),
            &effect,
            Look::Routine,
            &s
        )
        .is_empty()
    );
    assert!(
        changes(
            Some(&before),
            &state(json!({"env": "prod", "n": "1"}), Some(prod())),
            &effect,
            Look::Routine,
            &s
        )
        .is_empty()
    );
    // Out of every profile.
    let found = changes(
        Some(&before),
        &state(json!({"env": "gone"}), None),
        &effect,
        Look::Routine,
        &s,
    );
    assert!(
        matches!(&found[..], [SafeguardChange::WeakerProfile { weakened, .. }] if weakened == &vec![Weakening::Unjudged])
    );
    assert!(found[0].describe().contains("no longer judges it"));
    // No profile before, or no record before: nothing to compare with.
    let uncovered = state(json!({"env": "none"}), None);
    assert!(changes(Some(&uncovered), &retagged, &effect, Look::Routine, &s).is_empty());
    assert!(changes(None, &retagged, &effect, Look::Routine, &s).is_empty());
}

#[test]
fn tags_are_compared_by_name_without_case_and_in_any_order() {
    let a = canonical_tags(&tags(json!({"Env": "prod", "owner": "x"})));
    assert_eq!(a, canonical_tags(&tags(json!({"owner": "x", "env": "prod"}))));
    assert_ne!(a, canonical_tags(&tags(json!({"env": "Prod", "owner": "x"}))));
    assert_ne!(a, canonical_tags(&tags(json!({"env": "prod"}))));
}

/// Whether `p` calls `state` compliant, asked of the real evaluation (not of this module).
fn accepts(p: &ProfileFacts, state: &EncryptionState) -> bool {
    let config = Config {
        profiles: vec![Profile {
            name: p.name.clone(),
            require: p.require,
            mode: p.mode,
            allowed_vaults: p.allowed_vaults.clone(),
            pinned_key: None,
            allow_irreversible: false,
            scope: Scope::default(),
        }],
        ..Config::builtin_default()
    };
    let encryption = match state {
        EncryptionState::Cmk(key) => json!({"keySource": "Microsoft.Keyvault", "keyvaultproperties": {
            "keyvaulturi": key.vault_uri(), "keyname": key.key_name()}}),
        _ => json!({"keySource": "Microsoft.Storage"}),
    };
    let body = json!({"properties": {"encryption": encryption}});
    evaluate(&ResourceId::parse(ST).unwrap(), &body, &config, NOW).verdict == Verdict::Compliant
}

/// Every pair of profiles over every requirement, mode and allow-list: a weakening is reported
/// exactly when the new profile accepts a key source the old one called drift, or handles drift
/// with a milder mode; and it names exactly those key sources.
#[test]
fn weakenings_are_exactly_the_newly_accepted_key_sources_and_milder_modes() {
    let vault = |host: &str| {
        let key = crate::catalog::KeyRef::from_key_uri(&format!("https://{host}/keys/k"), None).unwrap();
        EncryptionState::Cmk(key)
    };
    let (a, b, c) = ("kv-a.vault.azure.net", "kv-b.vault.azure.net", "kv-c.vault.azure.net");
    let states = [EncryptionState::Mmk, vault(a), vault(b), vault(c)];
    let mut profiles = Vec::new();
    for require in [Requirement::Cmk, Requirement::Mmk, Requirement::Encrypted] {
        for mode in [Mode::Audit, Mode::Alert, Mode::Enforce] {
            for vaults in [&[][..], &[a], &[a, b], &[b]] {
                profiles.push(profile("p", require, mode, vaults));
            }
        }
    }
    let accepted: Vec<Vec<bool>> = profiles
        .iter()
        .map(|p| states.iter().map(|s| accepts(p, s)).collect())
        .collect();
    for (i, before) in profiles.iter().enumerate() {
        for (j, after) in profiles.iter().enumerate() {
            let newly: Vec<usize> = (0..states.len())
                .filter(|&k| accepted[j][k] && !accepted[i][k])
                .collect();
            let found = weakenings(before, Some(after));
            let context = format!("{before:?} -> {after:?}: {found:?}");
            assert_eq!(
                found.contains(&Weakening::AcceptsMicrosoftKeys),
                newly.contains(&0),
                "{context}"
            );
            let customer = found.iter().find_map(|w| match w {
                Weakening::AcceptsCustomerKeys { vaults } => Some(vaults.clone()),
                _ => None,
            });
            let newly_vaults: Vec<&str> = newly.iter().filter(|&&k| k > 0).map(|&k| [a, b, c][k - 1]).collect();
            match customer {
                None => assert!(newly_vaults.is_empty(), "{context}"),
                // Any vault: the one no allow-list names is among the newly accepted.
                Some(None) => assert!(newly_vaults.contains(&c), "{context}"),
                Some(Some(listed)) => assert_eq!(listed, newly_vaults, "{context}"),
            }
            assert_eq!(
                found.iter().any(|w| matches!(w, Weakening::Mode { .. })),
                mode_rank(after.mode) < mode_rank(before.mode),
                "{context}"
            );
        }
        assert_eq!(weakenings(before, None), vec![Weakening::Unjudged]);
    }
}

#[test]
fn a_state_round_trips_through_json() {
    let s = state(
        json!({"keyguard-exempt-until": "2026-03-10", "env": "prod"}),
        Some(prod()),
    );
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<SafeguardState>(&text).unwrap(), s);
    let change = SafeguardChange::WeakerProfile {
        before: prod(),
        after: None,
        weakened: vec![Weakening::Unjudged],
    };
    let value = serde_json::to_value(&change).unwrap();
    assert_eq!(value["change"], "weakerProfile");
    assert_eq!(serde_json::from_value::<SafeguardChange>(value).unwrap(), change);
}
