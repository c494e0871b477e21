use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use keyguard_report::{Finding, FindingVerdict};

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh path under the system temp dir; removed by the caller when it matters.
pub fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("kg-report-{}-{n}-{name}", std::process::id()))
}

pub fn node_dir() -> PathBuf {
    manifest_dir().join("tests/node")
}

/// Runs `node validate.mjs FILE`, failing the test with the fix when the packages are missing.
pub fn validate_sarif(file: &std::path::Path) -> Output {
    let node_dir = node_dir();
    assert!(
        node_dir.join("node_modules/@microsoft/jest-sarif/lib/schemas").is_dir()
            && node_dir.join("node_modules/ajv-draft-04").is_dir(),
        "the SARIF schema packages are missing ({}): run `npm ci --prefix crates/keyguard-report/tests/node`",
        node_dir.join("node_modules").display()
    );
    let node = std::env::var("KEYGUARD_TEST_NODE").unwrap_or_else(|_| "node".into());
    Command::new(&node)
        .arg(node_dir.join("validate.mjs"))
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{node}` (install Node.js >= 18): {e}"))
}

/// A finding whose every free-text field is hostile: markup, a script, a formula, a bidi override.
pub fn hostile_finding() -> Finding {
    Finding {
        expected: Some("cmk".into()),
        actual: Some("\"><img src=x onerror=alert(1)>".into()),
        detail: Some("<script>document.title='PWNED'</script> =HYPERLINK(\"https://evil.example\") \u{202E}exe".into()),
        action: Some("<b>revert</b>".into()),
        ..Finding::new(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-x/providers/Microsoft.Storage/storageAccounts/st<i>x</i>",
            "Microsoft.Storage/storageAccounts",
            FindingVerdict::Error,
        )
    }
}
