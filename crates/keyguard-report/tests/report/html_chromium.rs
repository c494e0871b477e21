//! The HTML report opened in headless Chromium: a screenshot is kept for review
//! (`<target>/artifacts/keyguard-report.png`, next to the rendered `keyguard-report.html`), and the
//! DOM Chromium built must hold the findings table with the expected rows per verdict, with the
//! page's script run and no script from the data.
//! Chromium is started by the `test-browser` crate, as the Teams card tests do.

use keyguard_report::{Format, render, sample};

use crate::support::hostile_finding;

const WINDOW: &str = "1280,1600";
const MIN_PNG_BYTES: usize = 30 * 1024;

/// The `<tbody>` of the table with `id="findings"` in Chromium's serialised DOM.
fn findings_body(dom: &str) -> &str {
    let table = dom
        .find("<table id=\"findings\">")
        .unwrap_or_else(|| panic!("no findings table in the DOM:\n{dom}"));
    let rest = &dom[table..];
    let start = rest.find("<tbody>").expect("findings table has a tbody");
    let end = rest.find("</tbody>").expect("findings tbody is closed");
    &rest[start..end]
}

#[test]
fn html_report_renders_in_chromium_with_the_expected_rows() {
    let mut findings = sample::findings();
    findings.push(hostile_finding());
    let mut ctx = sample::context();
    ctx.dry_run = true;
    let html = render(&findings, Format::Html, &ctx);

    let artifacts = test_browser::artifacts_dir();
    let page = artifacts.join("keyguard-report.html");
    std::fs::write(&page, &html).unwrap();
    let png = artifacts.join("keyguard-report.png");
    let bytes = test_browser::screenshot(&page, &png, WINDOW);
    assert!(
        bytes.len() > MIN_PNG_BYTES,
        "{} is only {} bytes: the report was probably not drawn",
        png.display(),
        bytes.len()
    );
    println!("HTML report: {}\nscreenshot: {}", page.display(), png.display());

    let dom = test_browser::run(&page, &["--dump-dom".to_string()]);
    let body = findings_body(&dom);
    let expected = [
        ("compliant", 2),
        ("drift", 3),
        ("exempt", 1),
        ("unsupported", 1),
        ("error", 2),
    ];
    for (verdict, n) in expected {
        assert_eq!(
            body.matches(&format!("<tr data-verdict=\"{verdict}\"")).count(),
            n,
            "rows with verdict {verdict} in the findings table"
        );
    }
    assert_eq!(
        body.matches("<tr").count(),
        findings.len(),
        "one row per finding, nothing else"
    );
    // The page's script ran (it fills the counter) and filtered nothing out by default.
    assert!(dom.contains("9 of 9 shown"), "the report script did not run:\n{dom}");
    assert!(!body.contains(" hidden"), "no row hidden by default");
    // The hostile finding stayed text: no element from its values, the title untouched.
    assert_eq!(dom.matches("<script").count(), 1, "only the page's own script:\n{dom}");
    assert!(
        !dom.contains("<img") && !dom.contains("<i>x</i>") && !dom.contains("<b>revert"),
        "{dom}"
    );
    assert!(
        dom.contains("&lt;script&gt;document.title='PWNED'&lt;/script&gt;"),
        "{dom}"
    );
    let title = &dom[dom.find("<title>").unwrap()..dom.find("</title>").unwrap()];
    assert!(
        !title.contains("PWNED") && title.contains("keyguard encryption report"),
        "{title}"
    );
    // Summary and exemptions made it into the page.
    for needle in [
        "By subscription",
        "By resource type",
        "Legacy app cannot reach Key Vault; migration ticket OPS-1234",
        "2026-12-31T00:00:00Z",
        "Dry run: nothing was changed",
    ] {
        assert!(dom.contains(needle), "{needle:?} missing from the rendered report");
    }
}
