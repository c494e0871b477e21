//! One self-contained HTML file: inline CSS and a small inline script (sorting, filtering), no
//! fonts, images or scripts from elsewhere, so it can be mailed, archived with audit evidence and
//! opened offline. Markup is built with `maud`, which escapes every interpolated value: resource
//! names, tags and ARM messages are untrusted and must never become markup. The only unescaped
//! text is this file's own CSS and script.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use time::OffsetDateTime;

use crate::text::visible;
use crate::{Counts, Finding, FindingVerdict, ReportContext, rfc3339, summarize};

/// Exemptions ending within this many days are flagged, matching keyguard's reminder window.
const EXPIRY_WARNING_DAYS: i64 = 30;

const CSS: &str = r#"
:root {
  --ink: #1f2328; --muted: #59636e; --line: #d8dee4; --bg: #f6f8fa; --card: #ffffff; --accent: #0b5cad;
  --compliant: #1a7f37; --compliant-bg: #dafbe1; --drift: #cf222e; --drift-bg: #ffebe9;
  --exempt: #9a6700; --exempt-bg: #fff8c5; --unsupported: #59636e; --unsupported-bg: #eaeef2;
  --error: #8250df; --error-bg: #fbefff;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 32px 28px 48px; }
header.report { border-bottom: 1px solid var(--line); padding-bottom: 18px; margin-bottom: 24px; }
.brand { font-size: 12px; font-weight: 600; letter-spacing: .08em; text-transform: uppercase; color: var(--accent); }
h1 { font-size: 26px; line-height: 1.25; margin: 4px 0 14px; font-weight: 600; }
h2 { font-size: 17px; margin: 0 0 12px; font-weight: 600; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; font-size: 13px; }
.meta dt { color: var(--muted); }
.meta dd { margin: 0; overflow-wrap: break-word; }
.mode { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
  background: var(--exempt-bg); color: var(--exempt); border: 1px solid currentColor; }
.mode.live { background: var(--compliant-bg); color: var(--compliant); }
section { margin-bottom: 28px; }
.cards { display: grid; grid-template-columns: repeat(6, minmax(0, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px;
  border-top: 4px solid var(--line); }
.card .n { font-size: 28px; font-weight: 600; line-height: 1.1; font-variant-numeric: tabular-nums; }
.card .l { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .05em; }
.card.compliant { border-top-color: var(--compliant); } .card.compliant .n { color: var(--compliant); }
.card.drift { border-top-color: var(--drift); } .card.drift .n { color: var(--drift); }
.card.exempt { border-top-color: var(--exempt); } .card.exempt .n { color: var(--exempt); }
.card.unsupported { border-top-color: var(--unsupported); } .card.unsupported .n { color: var(--unsupported); }
.card.error { border-top-color: var(--error); } .card.error .n { color: var(--error); }
.card.zero .n { color: var(--muted); opacity: .55; }
.split { display: grid; grid-template-columns: 1fr; gap: 20px; }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; overflow-x: auto; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .04em;
  white-space: nowrap; background: var(--card); }
tbody tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num.hot { color: var(--drift); font-weight: 600; }
td.num.warn { color: var(--error); font-weight: 600; }
td.zero { color: #aab2bb; }
table.counts td:first-child { width: 40%; }
#findings th[data-sort] { cursor: pointer; user-select: none; }
#findings th[data-sort]::after { content: " ↕"; color: #aab2bb; }
#findings th[aria-sort="ascending"]::after { content: " ↑"; color: var(--ink); }
#findings th[aria-sort="descending"]::after { content: " ↓"; color: var(--ink); }
#findings tbody tr:hover { background: #f6f8fa; }
#findings tr[data-verdict="drift"] td:first-child { box-shadow: inset 3px 0 0 var(--drift); }
#findings tr[data-verdict="error"] td:first-child { box-shadow: inset 3px 0 0 var(--error); }
td.res { min-width: 270px; }
td.act { min-width: 100px; }
.name { font-weight: 600; overflow-wrap: break-word; }
.rid { font: 11.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: var(--muted);
  overflow-wrap: break-word; margin-top: 2px; }
.type { font-size: 13px; overflow-wrap: break-word; min-width: 150px; }
.mono { font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: break-word; }
.detail { color: var(--muted); font-size: 13px; overflow-wrap: anywhere; min-width: 160px; }
.dash { color: #aab2bb; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px; font-weight: 600;
  border: 1px solid currentColor; white-space: nowrap; }
.badge.compliant { color: var(--compliant); background: var(--compliant-bg); }
.badge.drift { color: var(--drift); background: var(--drift-bg); }
.badge.exempt { color: var(--exempt); background: var(--exempt-bg); }
.badge.unsupported { color: var(--unsupported); background: var(--unsupported-bg); }
.badge.error { color: var(--error); background: var(--error-bg); }
.controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 12px; }
.controls button { font: inherit; font-size: 13px; padding: 3px 12px; border-radius: 999px; cursor: pointer;
  border: 1px solid var(--line); background: var(--card); color: var(--ink); }
.controls button[aria-pressed="false"] { opacity: .45; text-decoration: line-through; }
.controls input { font: inherit; font-size: 13px; padding: 4px 10px; border: 1px solid var(--line);
  border-radius: 6px; min-width: 260px; margin-left: auto; }
.shown { color: var(--muted); font-size: 12px; }
.expiry.soon { color: var(--exempt); font-weight: 600; }
.expiry.past { color: var(--drift); font-weight: 600; }
.empty { color: var(--muted); font-style: italic; margin: 4px 0; }
footer { color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 14px; }
@media (max-width: 900px) { .cards { grid-template-columns: repeat(3, 1fr); } }
@media print {
  body { background: #fff; font-size: 11px; }
  main { max-width: none; padding: 0; }
  .controls, #findings th[data-sort]::after { display: none; }
  .panel, .card { border-color: #999; break-inside: avoid; }
  #findings tr { break-inside: avoid; }
  #findings tr[hidden] { display: table-row; }
  thead { display: table-header-group; }
  .badge { background: #fff !important; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// Sorting and filtering, progressive: without script (or in print) every row is shown. Reads only
/// textContent/data attributes and writes only attributes, never markup.
const SCRIPT: &str = r#"
(function () {
  var table = document.getElementById("findings");
  if (!table) return;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var off = {};
  var search = document.getElementById("search");
  var shown = document.getElementById("shown");
  function apply() {
    var q = (search && search.value || "").toLowerCase();
    var n = 0;
    rows.forEach(function (r) {
      var hide = off[r.getAttribute("data-verdict")] || (q && r.textContent.toLowerCase().indexOf(q) < 0);
      r.hidden = !!hide;
      if (!hide) n++;
    });
    if (shown) shown.textContent = n + " of " + rows.length + " shown";
  }
  Array.prototype.forEach.call(document.querySelectorAll("button[data-filter]"), function (b) {
    b.addEventListener("click", function () {
      var v = b.getAttribute("data-filter");
      off[v] = !off[v];
      b.setAttribute("aria-pressed", off[v] ? "false" : "true");
      apply();
    });
  });
  if (search) search.addEventListener("input", apply);
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
    if (!th.hasAttribute("data-sort")) return;
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      function key(r) { var c = r.cells[col]; return c.getAttribute("data-key") || c.textContent.trim().toLowerCase(); }
      rows.sort(function (a, b) { var x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  apply();
})();
"#;

/// Sort key putting the verdicts that need action first.
fn verdict_rank(v: FindingVerdict) -> &'static str {
    match v {
        FindingVerdict::Drift => "0",
        FindingVerdict::Error => "1",
        FindingVerdict::Exempt => "2",
        FindingVerdict::Unsupported => "3",
        FindingVerdict::Compliant => "4",
    }
}

fn badge(v: FindingVerdict) -> Markup {
    html! { span class={ "badge " (v.as_str()) } { (v.as_str()) } }
}

/// Text with line-break opportunities after each `/`, so ids, types and key URIs wrap at path
/// boundaries instead of mid-word (and a table column is not squeezed to a few letters).
fn breakable(value: &str) -> Markup {
    let shown = visible(value);
    html! {
        @for (i, part) in shown.split_inclusive('/').enumerate() {
            @if i > 0 { wbr; }
            (part)
        }
    }
}

fn opt_text(value: Option<&str>) -> Markup {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => html! { (visible(v)) },
        None => html! { span class="dash" { "—" } },
    }
}

fn opt_breakable(value: Option<&str>) -> Markup {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => breakable(v),
        None => html! { span class="dash" { "—" } },
    }
}

fn counts_table(first_column: &str, rows: &[(String, Counts)]) -> Markup {
    html! {
        table class="counts" {
            thead { tr {
                th { (first_column) }
                th class="num" { "Total" }
                @for v in FindingVerdict::ALL { th class="num" { (v.as_str()) } }
            } }
            tbody {
                @for (label, counts) in rows {
                    tr {
                        td class="mono" { (breakable(label)) }
                        td class="num" { (counts.total) }
                        @for v in FindingVerdict::ALL {
                            @let n = counts.get(v);
                            @let class = match (n, v) {
                                (0, _) => "num zero",
                                (_, FindingVerdict::Drift) => "num hot",
                                (_, FindingVerdict::Error) => "num warn",
                                _ => "num",
                            };
                            td class=(class) { (n) }
                        }
                    }
                }
            }
        }
    }
}

fn expiry(expires: Option<OffsetDateTime>, now: OffsetDateTime) -> Markup {
    let Some(at) = expires else {
        return html! { span class="expiry" { "no expiry" } };
    };
    let days = (at - now).whole_days();
    let date = rfc3339(at);
    let (class, note) = if at < now {
        ("expiry past", "expired".to_string())
    } else if days <= EXPIRY_WARNING_DAYS {
        ("expiry soon", format!("in {days} days"))
    } else {
        ("expiry", format!("in {days} days"))
    };
    html! { span class=(class) { (date) } " " span class="shown" { "(" (note) ")" } }
}

fn action_text(f: &Finding) -> Option<String> {
    match (f.action.as_deref(), f.result.as_deref()) {
        (Some(a), Some(r)) => Some(format!("{a}: {r}")),
        (Some(a), None) => Some(a.to_string()),
        (None, Some(r)) => Some(r.to_string()),
        (None, None) => None,
    }
}

fn finding_row(f: &Finding) -> Markup {
    html! {
        tr data-verdict=(f.verdict.as_str()) {
            td class="res" data-key=(f.resource_name().to_lowercase()) {
                div class="name" { (visible(f.resource_name())) }
                div class="rid" title=(visible(&f.resource_id)) { (breakable(&f.resource_id)) }
            }
            td class="type" { (breakable(&f.resource_type)) }
            td data-key=(verdict_rank(f.verdict)) { (badge(f.verdict)) }
            td class="mono" { (opt_text(f.expected.as_deref())) }
            td class="mono" { (opt_breakable(f.actual.as_deref())) }
            td class="act" { (opt_text(action_text(f).as_deref())) }
            td class="detail" { (opt_text(f.detail.as_deref())) }
        }
    }
}

pub fn render(findings: &[Finding], ctx: &ReportContext) -> String {
    let summary = summarize(findings);
    let by_subscription: Vec<(String, Counts)> = summary.by_subscription.clone().into_iter().collect();
    let by_type: Vec<(String, Counts)> = summary.by_type.clone().into_iter().collect();
    let exempt: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.verdict == FindingVerdict::Exempt)
        .collect();
    let generated = rfc3339(ctx.generated_at);
    let needs_action = summary.overall.drift + summary.overall.error;

    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // Nothing may load from anywhere: the report is one file and stays one file.
                meta http-equiv="Content-Security-Policy"
                    content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";
                meta name="generator" content={ "keyguard " (ctx.tool_version) };
                title { "keyguard encryption report · " (visible(&ctx.scope)) }
                style { (PreEscaped(CSS)) }
            }
            body {
                main {
                    header class="report" {
                        div class="brand" { "keyguard" }
                        h1 { "Encryption-at-rest report" }
                        dl class="meta" {
                            dt { "Scope" } dd { (visible(&ctx.scope)) }
                            dt { "Generated" } dd { time datetime=(generated) { (generated) } }
                            dt { "keyguard version" } dd { (visible(&ctx.tool_version)) }
                            dt { "Mode" } dd {
                                @if ctx.dry_run { span class="mode" { "Dry run: nothing was changed" } }
                                @else { span class="mode live" { "Live" } }
                            }
                            dt { "Outcome" } dd {
                                @if needs_action == 0 { "No drift and no errors." }
                                @else { (summary.overall.drift) " drifted, " (summary.overall.error) " could not be checked." }
                            }
                        }
                    }

                    section class="cards" aria-label="Summary by outcome" {
                        div class="card" { div class="n" { (summary.overall.total) } div class="l" { "Resources" } }
                        @for v in FindingVerdict::ALL {
                            @let n = summary.overall.get(v);
                            div class={ "card " (v.as_str()) @if n == 0 { " zero" } } {
                                div class="n" { (n) } div class="l" { (v.as_str()) }
                            }
                        }
                    }

                    section class="split" {
                        div class="panel" {
                            h2 { "By subscription" }
                            (counts_table("Subscription", &by_subscription))
                        }
                        div class="panel" {
                            h2 { "By resource type" }
                            (counts_table("Type", &by_type))
                        }
                    }

                    @let vaults = crate::vaults_in_use(findings);
                    @if !vaults.is_empty() {
                        section class="panel" {
                            h2 { "Vaults in use" }
                            table {
                                thead { tr { th { "Vault" } th { "Resources" } th { "Estate" } } }
                                tbody {
                                    @for v in &vaults {
                                        tr {
                                            td { (visible(&v.vault)) }
                                            td { (v.resources) }
                                            td { @if v.outside_estate { strong { "outside the estate" } } @else { "in the estate" } }
                                        }
                                    }
                                }
                            }
                        }
                    }

                    section class="panel" {
                        h2 { "Findings" }
                        @if findings.is_empty() {
                            p class="empty" { "No resources in scope." }
                        }
                        div class="controls" {
                            @for v in FindingVerdict::ALL {
                                button type="button" data-filter=(v.as_str()) aria-pressed="true" {
                                    (badge(v)) " " (summary.overall.get(v))
                                }
                            }
                            span class="shown" id="shown" {}
                            input id="search" type="search" placeholder="Filter by name, type, key…" aria-label="Filter findings";
                        }
                        table id="findings" {
                            thead { tr {
                                th data-sort { "Resource" }
                                th data-sort { "Type" }
                                th data-sort { "Verdict" }
                                th data-sort { "Expected" }
                                th data-sort { "Actual" }
                                th data-sort { "Action" }
                                th { "Detail" }
                            } }
                            tbody {
                                @for f in findings { (finding_row(f)) }
                            }
                        }
                    }

                    section class="panel" id="exemptions" {
                        h2 { "Exemptions" }
                        @if exempt.is_empty() {
                            p class="empty" { "No exempt resources." }
                        } @else {
                            table {
                                thead { tr { th { "Resource" } th { "Type" } th { "Reason" } th { "Expires" } } }
                                tbody {
                                    @for f in &exempt {
                                        tr {
                                            td {
                                                div class="name" { (visible(f.resource_name())) }
                                                div class="rid" title=(visible(&f.resource_id)) { (breakable(&f.resource_id)) }
                                            }
                                            td class="type" { (breakable(&f.resource_type)) }
                                            td { (opt_text(f.exemption.as_ref().map(|e| e.reason.as_str()))) }
                                            td { (expiry(f.exemption.as_ref().and_then(|e| e.expires), ctx.generated_at)) }
                                        }
                                    }
                                }
                            }
                        }
                    }

                    footer {
                        "Generated by keyguard " (visible(&ctx.tool_version)) " at " (generated) " for " (visible(&ctx.scope)) ". "
                        "Exit code " (crate::exit_code(findings)) ": 0 = compliant, 1 = drift found, 2 = error."
                    }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    page.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, render as render_any, sample};

    fn rows_of(html: &str, verdict: &str) -> usize {
        html.matches(&format!("<tr data-verdict=\"{verdict}\">")).count()
    }

    #[test]
    fn one_row_per_finding_with_its_verdict() {
        let findings = sample::findings();
        let out = render_any(&findings, Format::Html, &sample::context());
        assert!(out.starts_with("<!DOCTYPE html>"));
        assert_eq!(out.matches("<table id=\"findings\">").count(), 1);
        for (verdict, n) in [
            ("compliant", 2),
            ("drift", 3),
            ("exempt", 1),
            ("unsupported", 1),
            ("error", 1),
        ] {
            assert_eq!(rows_of(&out, verdict), n, "{verdict}");
        }
        for f in &findings {
            assert!(out.contains(&f.resource_id), "{}", f.resource_id);
        }
        assert!(out.contains("Legacy app cannot reach Key Vault; migration ticket OPS-1234"));
        assert!(out.contains("2026-12-31T00:00:00Z"));
        assert!(out.contains("(in 212 days)"), "expiry relative to the generation time");
        assert!(out.contains(env!("CARGO_PKG_VERSION")) && out.contains("2026-06-01T09:30:00Z"));
    }

    #[test]
    fn self_contained() {
        let out = render(&sample::findings(), &sample::context());
        for needle in [
            "<link",
            "src=",
            "url(",
            "@import",
            "http://",
            "<img",
            "<iframe",
            "@font-face",
        ] {
            assert!(!out.contains(needle), "external reference {needle:?} in report");
        }
        assert_eq!(out.matches("<script").count(), 1, "only the page's own script");
        assert!(out.contains("default-src 'none'"));
    }

    #[test]
    fn untrusted_values_are_escaped_everywhere() {
        let payload = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&amp;";
        let mut f = sample::findings().remove(2);
        f.resource_id =
            format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{payload}");
        f.resource_type = payload.into();
        f.detail = Some(payload.into());
        f.actual = Some(payload.into());
        f.action = Some(payload.into());
        f.subscription_id = Some(payload.into());
        f.exemption = Some(crate::FindingExemption {
            reason: payload.into(),
            expires: None,
        });
        let mut ctx = sample::context();
        ctx.scope = payload.into();
        ctx.tool_version = payload.into();
        let out = render(&[f], &ctx);
        assert!(!out.contains("<script>alert"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&gt;&lt;img src=x onerror=alert(2)&gt;&amp;amp;")
        );
        assert_eq!(out.matches("<script").count(), 1);
        assert!(out.contains("no expiry"));
        let bidi = render(
            &[Finding {
                detail: Some("invoice\u{202E}fdp.exe".into()),
                ..sample::findings().remove(0)
            }],
            &sample::context(),
        );
        assert!(!bidi.contains('\u{202E}') && bidi.contains("invoice\u{FFFD}fdp.exe"));
    }

    #[test]
    fn empty_and_expired() {
        let out = render(&[], &sample::context());
        assert!(out.contains("No resources in scope.") && out.contains("No exempt resources."));
        assert_eq!(out.matches("<tr data-verdict").count(), 0);
        let later = sample::GENERATED_AT + time::Duration::days(400);
        assert!(
            expiry(Some(sample::GENERATED_AT), later)
                .into_string()
                .contains("expired")
        );
        let soon = expiry(
            Some(sample::GENERATED_AT + time::Duration::days(3)),
            sample::GENERATED_AT,
        )
        .into_string();
        assert!(soon.contains("expiry soon") && soon.contains("in 3 days"), "{soon}");
    }
}
