//! The SARIF output against the official SARIF 2.1.0 JSON schema (rtm.5, as shipped in Microsoft's
//! `@microsoft/jest-sarif` npm package), validated by Ajv in `tests/node/validate.mjs`.

use keyguard_report::{Finding, Format, render, sample};
use serde_json::{Value, json};

use crate::support::{hostile_finding, temp_path, validate_sarif};

fn write(name: &str, log: &Value) -> std::path::PathBuf {
    let path = temp_path(name);
    std::fs::write(&path, serde_json::to_string_pretty(log).unwrap()).unwrap();
    path
}

fn findings() -> Vec<Finding> {
    let mut all = sample::findings();
    all.push(hostile_finding());
    // An error on a type outside the catalog takes the fallback rule.
    all.push(Finding::error(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Web/sites/app",
        "Microsoft.Web/sites",
        "resource type is not in the catalog",
    ));
    all
}

#[test]
fn sarif_with_drift_error_and_exempt_results_is_valid() {
    let mut ctx = sample::context();
    ctx.information_uri = Some("https://example.org/keyguard".into());
    ctx.dry_run = true;
    let text = render(&findings(), Format::Sarif, &ctx);
    let log: Value = serde_json::from_str(&text).unwrap();
    let levels: Vec<&str> = log["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    for level in ["error", "warning", "note"] {
        assert!(levels.contains(&level), "sample must cover {level}: {levels:?}");
    }
    let path = temp_path("valid.sarif");
    std::fs::write(&path, &text).unwrap();
    let out = validate_sarif(&path);
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "keyguard's SARIF fails the SARIF 2.1.0 schema:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid SARIF 2.1.0"));
}

/// Breaks one thing in a valid log.
type Break = fn(&mut Value);

/// The check can fail: each break below is one a careless renderer change could make.
#[test]
fn broken_sarif_fails_validation() {
    let good: Value = serde_json::from_str(&render(&findings(), Format::Sarif, &sample::context())).unwrap();
    let breaks: [(&str, Break, &str); 5] = [
        (
            "level",
            |l| l["runs"][0]["results"][0]["level"] = json!("fatal"),
            "/runs/0/results/0/level",
        ),
        (
            "message",
            |l| {
                l["runs"][0]["results"][0].as_object_mut().unwrap().remove("message");
            },
            "/runs/0/results/0",
        ),
        (
            "suppression",
            |l| l["runs"][0]["results"][1]["suppressions"][0]["kind"] = json!("inline"),
            "/runs/0/results/1/suppressions/0/kind",
        ),
        ("version", |l| l["version"] = json!("2.0.0"), "/version"),
        (
            "rule",
            |l| l["runs"][0]["tool"]["driver"]["rules"][0]["unknownField"] = json!(1),
            "/runs/0/tool/driver/rules/0",
        ),
    ];
    for (name, break_it, pointer) in breaks {
        let mut log = good.clone();
        break_it(&mut log);
        let path = write(&format!("broken-{name}.sarif"), &log);
        let out = validate_sarif(&path);
        let _ = std::fs::remove_file(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: broken SARIF passed validation; stderr: {stderr}"
        );
        assert!(
            stderr.contains(pointer),
            "{name}: expected an error at {pointer}; got:\n{stderr}"
        );
    }
}
