//! `samples/sample.sarif` is the renderer's output for the fixed sample input, kept in the repo so
//! people can see what keyguard sends to a dashboard. It must never go stale.

use keyguard_report::{Format, render, sample};

use crate::support::{manifest_dir, validate_sarif};

#[test]
fn committed_sample_sarif_is_the_renderer_output_and_valid() {
    let path = manifest_dir().join("samples/sample.sarif");
    let rendered = render(&sample::findings(), Format::Sarif, &sample::context());
    if std::env::var_os("KEYGUARD_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "{} is stale: regenerate it with `KEYGUARD_BLESS=1 cargo test -p keyguard-report --test report sample` and commit it",
        path.display()
    );
    let out = validate_sarif(&path);
    assert!(
        out.status.success(),
        "committed sample fails the SARIF 2.1.0 schema:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
