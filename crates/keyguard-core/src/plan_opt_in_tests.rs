//! Irreversible and disruptive reverts are opt-in: every direction kind, every precondition
//! answer, with and without the profile's `allow_irreversible`, in both directions.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::catalog::Reversibility;
use crate::config::{Config, Requirement};
use crate::evaluate::{DriftReason, Verdict};
use crate::resource_id::ResourceId;
use time::macros::datetime;

const ID: &str = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Example/oneWays/t";
const KV: &str = "https://kv-approved.vault.azure.net";

/// The plan tests' synthetic writable entry, with whatever directions the case needs.
fn entry(to_cmk: Direction, to_mmk: Direction) -> CatalogEntry {
    CatalogEntry {
        reversibility: Reversibility { to_cmk, to_mmk },
        ..super::tests::ONE_WAY
    }
}

fn eval(reason: DriftReason, allow_irreversible: bool) -> Evaluation {
    Evaluation {
        resource_id: ResourceId::parse(ID).unwrap(),
        resource_type: "Microsoft.Example/oneWays".into(),
        observed: EncryptionState::Mmk,
        requirement: Some(Requirement::Cmk),
        profile: Some("p".into()),
        mode: Some(Mode::Enforce),
        allowed_vaults: vec![],
        pinned_key: None,
        allow_irreversible,
        verdict: Verdict::Drift(reason),
        notes: vec![],
    }
}

fn ctx(eval: &Evaluation) -> PlanContext {
    let mut ctx = PlanContext::new(eval, &crate::config::Settings::default());
    ctx.pinned_key = Some(KeyRef::new(KV, "k", Some("v1"), None).unwrap());
    ctx.resource_has_identity_for = Some(true);
    ctx
}

const KINDS: [Direction; 5] = [
    Direction::Reversible,
    Direction::ReversibleIf("the condition"),
    Direction::Disruptive("maintenance"),
    Direction::OneWay,
    Direction::CreationOnly,
];

/// The oracle, written as a reviewer would: what each case must end in.
fn expected(direction: Direction, precondition: Option<bool>, opt_in: bool) -> &'static str {
    match direction {
        Direction::Reversible => "revert",
        Direction::ReversibleIf(_) if precondition == Some(true) => "revert",
        Direction::ReversibleIf(_) => "not-reversible",
        Direction::Disruptive(_) | Direction::OneWay if opt_in => "revert-by-opt-in",
        Direction::Disruptive(_) | Direction::OneWay => "needs-opt-in",
        Direction::CreationOnly => "not-reversible",
    }
}

fn outcome(p: &Plan) -> &'static str {
    match (&p.action, p.permission) {
        (Action::Revert { .. }, Some(RevertPermission::Allowed)) => "revert",
        (Action::Revert { .. }, Some(RevertPermission::AllowedByOptIn)) => "revert-by-opt-in",
        (Action::NoRevert(NoRevertReason::NeedsOptIn { .. }), None) => "needs-opt-in",
        (Action::NoRevert(NoRevertReason::NotReversible { .. }), None) => "not-reversible",
        _ => "unexpected",
    }
}

#[test]
fn every_direction_kind_precondition_and_opt_in_decides_as_the_table_says() {
    let mut cases = 0;
    for direction in KINDS {
        for precondition in [None, Some(false), Some(true)] {
            for opt_in in [false, true] {
                for (reason, to_cmk) in [
                    (DriftReason::ExpectedCmkFoundMmk, true),
                    (DriftReason::ExpectedMmkFoundCmk, false),
                ] {
                    // The other direction is the opposite extreme, so only `direction` can decide.
                    let e = if to_cmk {
                        entry(direction, Direction::CreationOnly)
                    } else {
                        entry(Direction::CreationOnly, direction)
                    };
                    let ev = eval(reason, opt_in);
                    let p = plan_with_entry(&ev, &ctx(&ev), Some(&e), precondition);
                    let want = expected(direction, precondition, opt_in);
                    assert_eq!(
                        outcome(&p),
                        want,
                        "{direction:?} precondition={precondition:?} opt_in={opt_in} to_cmk={to_cmk}"
                    );
                    assert!(p.alert, "every enforce-mode drift alerts");
                    assert_eq!(p.writes.is_empty(), !want.starts_with("revert"));
                    assert_eq!(p.opt_in_note().is_some(), want == "revert-by-opt-in");
                    if want == "needs-opt-in" {
                        let Action::NoRevert(why) = &p.action else {
                            unreachable!()
                        };
                        assert!(
                            why.describe().contains("allow_irreversible = true"),
                            "{}",
                            why.describe()
                        );
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 5 * 3 * 2 * 2);
}

#[test]
fn the_permission_table_matches_allows_revert_when() {
    for direction in KINDS {
        for precondition in [None, Some(false), Some(true)] {
            // Without opt-in, the old answer stands: only reversible (or checked) directions.
            assert_eq!(
                direction.allows_revert_when(precondition),
                direction.permission(precondition, false) == RevertPermission::Allowed
            );
            // Opting in never makes creation-only or an unchecked condition writable.
            let with = direction.permission(precondition, true);
            if matches!(direction, Direction::CreationOnly) {
                assert_eq!(with, RevertPermission::Impossible);
            }
            if matches!(direction, Direction::ReversibleIf(_)) && precondition != Some(true) {
                assert_eq!(with, RevertPermission::PreconditionUnconfirmed);
            }
        }
    }
}

#[test]
fn the_opt_in_only_matters_in_enforce_mode() {
    let e = entry(Direction::OneWay, Direction::OneWay);
    for mode in [Mode::Audit, Mode::Alert] {
        let mut ev = eval(DriftReason::ExpectedCmkFoundMmk, true);
        ev.mode = Some(mode);
        let p = plan_with_entry(&ev, &ctx(&ev), Some(&e), Some(true));
        assert!(matches!(
            p.action,
            Action::NoRevert(NoRevertReason::ModeAudit | NoRevertReason::ModeAlert)
        ));
    }
}

fn batch_and_redis_under(allow: bool) -> (Plan, Plan) {
    let text =
        format!("[[profile]]\nname = \"p\"\nrequire = \"mmk\"\nmode = \"enforce\"\nallow_irreversible = {allow}\n");
    let config = Config::from_toml_str(&text, "opt-in.toml").unwrap();
    let now = datetime!(2026-06-01 12:00 UTC);
    let batch_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/b";
    let batch = serde_json::json!({"id": batch_id, "properties": {"encryption": {"keySource": "Microsoft.KeyVault",
        "keyVaultProperties": {"keyIdentifier": "https://kv.vault.azure.net/keys/k/v1"}}}});
    let redis_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Cache/redisEnterprise/r";
    let redis = serde_json::json!({"id": redis_id, "properties": {"encryption": {"customerManagedKeyEncryption": {
        "keyEncryptionKeyUrl": "https://kv.vault.azure.net/keys/k/v1"}}}});
    let decide = |id: &str, body: &serde_json::Value| {
        let ev = crate::evaluate::evaluate(&ResourceId::parse(id).unwrap(), body, &config, now);
        assert!(ev.verdict.is_drift(), "{ev:?}");
        plan(&ev, &PlanContext::new(&ev, &config.settings))
    };
    (decide(batch_id, &batch), decide(redis_id, &redis))
}

#[test]
fn batch_back_to_mmk_and_redis_need_the_profile_opt_in() {
    let (batch, redis) = batch_and_redis_under(false);
    assert_eq!(
        batch.action,
        Action::NoRevert(NoRevertReason::NeedsOptIn {
            direction: Direction::OneWay
        })
    );
    assert!(matches!(
        redis.action,
        Action::NoRevert(NoRevertReason::NeedsOptIn {
            direction: Direction::Disruptive(_)
        })
    ));

    let (batch, redis) = batch_and_redis_under(true);
    assert!(
        matches!(
            batch.action,
            Action::Revert {
                target: RevertTarget::Mmk,
                ..
            }
        ),
        "{batch:?}"
    );
    assert_eq!(batch.permission, Some(RevertPermission::AllowedByOptIn));
    assert!(batch.opt_in_note().unwrap().contains("allow_irreversible"));
    // Redis has no verified write body yet: even opted in, a human acts.
    assert_eq!(redis.action, Action::NoRevert(NoRevertReason::NoRevertTarget));
}

#[test]
fn the_profile_opt_in_is_off_by_default_and_refused_outside_enforce_mode() {
    let parse = |extra: &str, mode: &str| {
        Config::from_toml_str(
            &format!("[[profile]]\nname = \"p\"\nrequire = \"cmk\"\nmode = \"{mode}\"\n{extra}"),
            "opt-in.toml",
        )
    };
    assert!(!parse("", "enforce").unwrap().profiles[0].allow_irreversible);
    assert!(parse("allow_irreversible = true\n", "enforce").unwrap().profiles[0].allow_irreversible);
    assert!(!parse("allow_irreversible = false\n", "alert").unwrap().profiles[0].allow_irreversible);
    let err = parse("allow_irreversible = true\n", "alert").unwrap_err().to_string();
    assert!(
        err.contains("allow_irreversible only applies to mode = \"enforce\""),
        "{err}"
    );
    assert!(err.contains("opt-in.toml"), "the error names the file: {err}");
    let err = parse("allow_irreversible = \"yes\"\n", "enforce")
        .unwrap_err()
        .to_string();
    assert!(err.contains("allow_irreversible") || err.contains("bool"), "{err}");
}
