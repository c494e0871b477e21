//! Renders keyguard's Adaptive Card with Microsoft's own renderer (the `adaptivecards` browser bundle)
//! in headless Chromium: the parser test in `card.rs` proves the JSON is accepted, this one proves it
//! turns into a card a person can read. Screenshots are kept as artifacts for review:
//! `$CARGO_TARGET_DIR/artifacts/teams-card-<outcome>.png`.
//!
//! Needs Debian's Chromium (`apt-get install -y chromium`, or `KEYGUARD_TEST_CHROMIUM=/path`) and the
//! npm package (`npm ci --prefix crates/keyguard-notify/tests/node`); without them the test FAILS.

use std::path::PathBuf;

use keyguard_notify::{Alert, AlertOutcome, Severity, teams};

use crate::support::{digest_alerts, failed_disk_alert, hostile_alert, manifest_dir, shown_name, temp_file};

const WINDOW: &str = "800,1200";
const MIN_PNG_BYTES: u64 = 10 * 1024;

/// A Teams-like light theme (Segoe UI, Teams' purple accent and red/amber status colours), trimmed to
/// what the card uses. Without it the renderer falls back to its generic defaults.
const HOST_CONFIG: &str = r##"{
  "fontFamily": "'Segoe UI', 'Helvetica Neue', Arial, sans-serif",
  "supportsInteractivity": true,
  "spacing": { "small": 4, "default": 8, "medium": 12, "large": 16, "extraLarge": 24, "padding": 12 },
  "separator": { "lineThickness": 1, "lineColor": "#E0E0E0" },
  "fontTypes": {
    "default": {
      "fontFamily": "'Segoe UI', 'Helvetica Neue', Arial, sans-serif",
      "fontSizes": { "small": 12, "default": 14, "medium": 14, "large": 18, "extraLarge": 24 },
      "fontWeights": { "lighter": 200, "default": 400, "bolder": 600 }
    },
    "monospace": {
      "fontFamily": "Consolas, 'Courier New', monospace",
      "fontSizes": { "small": 12, "default": 14, "medium": 14, "large": 18, "extraLarge": 24 },
      "fontWeights": { "lighter": 200, "default": 400, "bolder": 600 }
    }
  },
  "containerStyles": {
    "default": {
      "backgroundColor": "#FFFFFF",
      "foregroundColors": {
        "default": { "default": "#242424", "subtle": "#616161" },
        "accent": { "default": "#6264A7", "subtle": "#8B8CC7" },
        "attention": { "default": "#C4314B", "subtle": "#D74654" },
        "warning": { "default": "#835C00", "subtle": "#A87A00" },
        "good": { "default": "#237B4B", "subtle": "#2E9E60" }
      }
    },
    "emphasis": { "backgroundColor": "#F5F5F5" },
    "accent": { "backgroundColor": "#E8EBFA" },
    "attention": { "backgroundColor": "#FCF4F6" },
    "warning": { "backgroundColor": "#FBF6D9" },
    "good": { "backgroundColor": "#E7F2DA" }
  },
  "textStyles": {
    "heading": { "size": "Large", "weight": "Bolder", "color": "Default", "isSubtle": false, "fontType": "Default" }
  },
  "factSet": {
    "title": { "weight": "Bolder", "wrap": true, "maxWidth": 150 },
    "value": { "wrap": true },
    "spacing": 8
  },
  "actions": {
    "maxActions": 6,
    "buttonSpacing": 8,
    "actionsOrientation": "Horizontal",
    "actionAlignment": "Left",
    "showCard": { "actionMode": "Inline", "inlineTopMargin": 8 }
  }
}"##;

/// Loads the bundle from node_modules (file://), renders `window.keyguardCard` (set by card.js, so the
/// JSON never sits in this page's DOM), and reports failure as visible text the test looks for.
/// Teams applies Markdown to TextBlocks; this processor does only the part keyguard relies on
/// (backslash escapes), on HTML-escaped text, so escaped names show as Teams shows them.
const PAGE: &str = r#"<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>keyguard Teams card</title>
<link rel="stylesheet" href="{{CSS}}">
<style>
  body { margin: 0; padding: 16px; background: #F5F5F5; font-family: 'Segoe UI', Arial, sans-serif; }
  #card { width: 560px; background: #FFFFFF; border-radius: 4px; box-shadow: 0 1px 4px rgba(0,0,0,.2); overflow: hidden; }
</style>
<script src="{{BUNDLE}}"></script>
<script src="card.js"></script>
</head>
<body>
<div id="card"></div>
<script>
(function () {
  var root = document.getElementById("card");
  try {
    if (typeof AdaptiveCards === "undefined") throw new Error("adaptivecards bundle did not load");
    if (typeof keyguardCard === "undefined") throw new Error("card.js did not load");
    AdaptiveCards.AdaptiveCard.onProcessMarkdown = function (text, result) {
      var html = text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
      result.outputHtml = html.replace(/\\([!-\/:-@\[-`{-~])/g, "$1");
      result.didProcess = true;
    };
    var card = new AdaptiveCards.AdaptiveCard();
    card.hostConfig = new AdaptiveCards.HostConfig({{HOST_CONFIG}});
    card.parse(keyguardCard);
    var el = card.render();
    if (!el) throw new Error("render() returned nothing");
    root.appendChild(el);
    document.body.setAttribute("data-keyguard", "rendered");
  } catch (e) {
    root.textContent = "KEYGUARD-RENDER-ERROR: " + e;
  }
})();
</script>
</body>
</html>
"#;

/// The DOM as a person would read it: scripts and styles dropped, tags removed, entities decoded
/// (crudely, enough for assertions), whitespace collapsed.
fn visible_text(dom: &str) -> String {
    let mut rest = dom.to_string();
    for tag in ["script", "style"] {
        while let Some(start) = rest.find(&format!("<{tag}")) {
            let close = format!("</{tag}>");
            let end = rest[start..]
                .find(&close)
                .map_or(rest.len(), |i| start + i + close.len());
            rest.replace_range(start..end, " ");
        }
    }
    let mut text = String::new();
    let mut in_tag = false;
    for c in rest.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Must match `render::outcome_sentence`, written out here so a wording regression is caught.
fn expected_sentence(outcome: AlertOutcome) -> &'static str {
    match outcome {
        AlertOutcome::Reverted => {
            "keyguard reverted the change: the resource is back on the expected key source. Check that the change was not intended."
        }
        AlertOutcome::RevertFailed => {
            "keyguard tried to revert the change and FAILED. The resource is still on the wrong key source: act now."
        }
        AlertOutcome::ManualActionNeeded => {
            "keyguard cannot revert this change automatically. The resource is still on the wrong key source: restore it by hand."
        }
        other => panic!("no expected wording written down for {other:?}"),
    }
}

fn alerts() -> Vec<Alert> {
    vec![
        Alert::sample(),
        failed_disk_alert(),
        // Attacker-chosen name: must come out as text, never as a <script> element.
        Alert {
            severity: Severity::High,
            ..hostile_alert(AlertOutcome::ManualActionNeeded)
        },
    ]
}

struct Renderer {
    dist: PathBuf,
    artifacts: PathBuf,
    work: PathBuf,
}

impl Renderer {
    fn new() -> Renderer {
        let node_dir = manifest_dir().join("tests/node");
        let dist = node_dir.join("node_modules/adaptivecards/dist");
        assert!(
            dist.join("adaptivecards.min.js").is_file(),
            "the adaptivecards npm package is missing ({}): run `npm ci --prefix crates/keyguard-notify/tests/node`",
            dist.display()
        );
        let work = temp_file("card-render");
        std::fs::create_dir_all(&work).unwrap();
        test_browser::chromium(); // fails early, with the install command, when it is missing
        Renderer {
            dist,
            artifacts: test_browser::artifacts_dir(),
            work,
        }
    }

    /// Renders `card`, keeps `teams-card-<name>.png`, checks what every card must satisfy (rendered,
    /// no injected elements) and returns the DOM and its visible text.
    fn render(&self, name: &str, card: &serde_json::Value) -> (String, String) {
        let dir = self.work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("card.js"),
            format!("window.keyguardCard = {};\n", serde_json::to_string(card).unwrap()),
        )
        .unwrap();
        let html = PAGE
            .replace(
                "{{CSS}}",
                &format!("file://{}", self.dist.join("adaptivecards.css").display()),
            )
            .replace(
                "{{BUNDLE}}",
                &format!("file://{}", self.dist.join("adaptivecards.min.js").display()),
            )
            .replace("{{HOST_CONFIG}}", HOST_CONFIG);
        let page = dir.join("card.html");
        std::fs::write(&page, html).unwrap();

        // (a) Screenshot, kept as an artifact.
        let png = self.artifacts.join(format!("teams-card-{name}.png"));
        let bytes = test_browser::screenshot(&page, &png, WINDOW);
        assert!(
            bytes.len() as u64 > MIN_PNG_BYTES,
            "{} is only {} bytes: the card was probably not drawn",
            png.display(),
            bytes.len()
        );
        println!("Teams card screenshot ({name}): {}", png.display());

        // (b) The DOM the renderer produced.
        let dom = test_browser::run(&page, &["--dump-dom".to_string()]);
        let text = visible_text(&dom);
        assert!(
            !text.contains("KEYGUARD-RENDER-ERROR"),
            "renderer failed for {name}: {text}"
        );
        assert!(
            dom.contains(r#"data-keyguard="rendered""#) && dom.contains("ac-adaptiveCard"),
            "the card was not rendered for {name}; DOM:\n{dom}"
        );
        // Only the page's own three scripts; none from card values.
        assert_eq!(dom.matches("<script").count(), 3, "unexpected <script> in DOM:\n{dom}");
        assert!(!dom.to_ascii_lowercase().contains("<script>alert"), "{dom}");
        assert!(!dom.contains("<img"), "an attacker value became an element:\n{dom}");
        for raw in ["\"type\"", "AdaptiveCard\"", "{\"", "\\["] {
            assert!(
                !text.contains(raw),
                "raw JSON/Markdown {raw:?} leaked into the card text: {text}"
            );
        }
        (dom, text)
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

#[test]
fn adaptive_card_renders_in_chromium_with_microsofts_renderer() {
    let renderer = Renderer::new();
    for alert in alerts() {
        let outcome = serde_json::to_value(alert.outcome).unwrap();
        let outcome = outcome.as_str().unwrap();
        let (dom, text) = renderer.render(outcome, &teams::adaptive_card(&alert));
        assert!(
            dom.matches("ac-textBlock").count() >= 5 && dom.contains("ac-factset"),
            "expected TextBlocks and FactSets in the rendered card for {outcome}; DOM:\n{dom}"
        );
        let name = shown_name(&alert);
        for needle in [
            name.as_str(),
            expected_sentence(alert.outcome),
            alert.title().as_str(),
            "What keyguard did",
            "Open in Azure portal",
        ] {
            assert!(
                text.contains(needle),
                "rendered {outcome} card lacks {needle:?}; text: {text}"
            );
        }
    }
}

#[test]
fn digest_card_renders_in_chromium_with_microsofts_renderer() {
    let renderer = Renderer::new();
    let alerts = digest_alerts(3);
    let (dom, text) = renderer.render("digest-3", &teams::digest_card(&alerts));
    assert!(
        dom.matches("ac-factset").count() >= 3,
        "expected one FactSet per alert; DOM:\n{dom}"
    );
    assert!(text.contains("3 encryption drift alerts"), "{text}");
    assert!(text.contains("2 reverted, 1 revert failed"), "{text}");
    for alert in &alerts {
        let name = shown_name(alert);
        for needle in [name.as_str(), alert.title().as_str(), alert.correlation_id.as_str()] {
            assert!(text.contains(needle), "rendered digest lacks {needle:?}; text: {text}");
        }
    }
    assert_eq!(
        text.matches("Open in Azure portal").count(),
        3,
        "one portal button per alert; text: {text}"
    );
    assert!(text.contains(expected_sentence(AlertOutcome::RevertFailed)), "{text}");

    let (_, text) = renderer.render("digest-30", &teams::digest_card(&digest_alerts(30)));
    assert!(text.contains("and 5 more (see keyguard alerts)"), "{text}");
    assert_eq!(text.matches("Open in Azure portal").count(), 25, "{text}");
}
