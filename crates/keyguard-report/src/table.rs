//! Aligned plain-text columns for a terminal. Hand-aligned rather than a table crate: six columns
//! of short strings need `chars().count()` and padding, not a layout engine and its dependencies.

use std::fmt::Write;

use crate::text::visible;
use crate::{Finding, FindingVerdict, ReportContext, rfc3339, summarize};

/// Long values (key URIs, odd names) are cut so one row stays one line; JSON/CSV keep them whole.
const MAX_CELL: usize = 64;
const HEADERS: [&str; 6] = ["RESOURCE", "TYPE", "VERDICT", "EXPECTED", "ACTUAL", "ACTION"];
const VERDICT_COLUMN: usize = 2;
const RESET: &str = "\x1b[0m";

fn colour_of(verdict: FindingVerdict) -> &'static str {
    match verdict {
        FindingVerdict::Compliant => "\x1b[32m",
        FindingVerdict::Drift => "\x1b[1;31m",
        FindingVerdict::Exempt => "\x1b[33m",
        FindingVerdict::Unsupported => "\x1b[2m",
        FindingVerdict::Error => "\x1b[1;35m",
    }
}

fn cell(value: &str) -> String {
    let shown = visible(value.trim());
    if shown.chars().count() <= MAX_CELL {
        shown.into_owned()
    } else {
        let mut cut: String = shown.chars().take(MAX_CELL - 1).collect();
        cut.push('…');
        cut
    }
}

fn action_cell(f: &Finding) -> String {
    match (f.action.as_deref(), f.result.as_deref()) {
        (Some(a), Some(r)) => cell(&format!("{a}: {r}")),
        (Some(a), None) => cell(a),
        (None, Some(r)) => cell(r),
        (None, None) => "-".to_string(),
    }
}

fn row(f: &Finding) -> [String; 6] {
    let or_dash = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_string(), cell);
    [
        cell(f.resource_name()),
        cell(&f.resource_type),
        f.verdict.as_str().to_string(),
        or_dash(&f.expected),
        or_dash(&f.actual),
        action_cell(f),
    ]
}

pub fn render(findings: &[Finding], ctx: &ReportContext) -> String {
    let paint = |code: &str, text: &str| {
        if ctx.colour {
            format!("{code}{text}{RESET}")
        } else {
            text.to_string()
        }
    };
    let mut out = String::new();
    let mut heading = format!(
        "keyguard {} · {} · {}",
        visible(&ctx.tool_version),
        visible(&ctx.scope),
        rfc3339(ctx.generated_at)
    );
    if ctx.dry_run {
        heading.push_str(" · DRY RUN (nothing was changed)");
    }
    let _ = writeln!(out, "{}\n", paint("\x1b[1m", &heading));

    let rows: Vec<(FindingVerdict, [String; 6])> = findings.iter().map(|f| (f.verdict, row(f))).collect();
    if rows.is_empty() {
        out.push_str("No resources in scope.\n");
    } else {
        let mut widths = HEADERS.map(|h| h.chars().count());
        for (_, cells) in &rows {
            for (w, c) in widths.iter_mut().zip(cells) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String; 6], verdict: Option<FindingVerdict>| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                let last = i + 1 == cells.len();
                // Pad before colouring: escape codes have no width on screen.
                let padded = if last {
                    c.clone()
                } else {
                    format!("{c}{}", " ".repeat(w - c.chars().count()))
                };
                match verdict {
                    Some(v) if i == VERDICT_COLUMN => s.push_str(&paint(colour_of(v), &padded)),
                    _ => s.push_str(&padded),
                }
                if !last {
                    s.push_str("  ");
                }
            }
            s.truncate(s.trim_end().len());
            s
        };
        let header = line(&HEADERS.map(str::to_string), None);
        let _ = writeln!(out, "{}", paint("\x1b[1m", &header));
        for (verdict, cells) in &rows {
            let _ = writeln!(out, "{}", line(cells, Some(*verdict)));
        }

        let noteworthy: Vec<&Finding> = findings
            .iter()
            .filter(|f| matches!(f.verdict, FindingVerdict::Drift | FindingVerdict::Error) && f.detail.is_some())
            .collect();
        if !noteworthy.is_empty() {
            out.push('\n');
            for f in noteworthy {
                let _ = writeln!(
                    out,
                    "  {} {}: {}",
                    paint(colour_of(f.verdict), f.verdict.as_str()),
                    visible(f.resource_name()),
                    visible(f.detail.as_deref().unwrap_or_default())
                );
            }
        }
    }

    let vaults = crate::vaults_in_use(findings);
    if !vaults.is_empty() {
        out.push('\n');
        for v in vaults {
            let flag = if v.outside_estate {
                paint("\x1b[31m", " OUTSIDE THE ESTATE")
            } else {
                String::new()
            };
            let _ = writeln!(out, "  vault {}: {} resource(s){flag}", visible(&v.vault), v.resources);
        }
    }
    let counts = summarize(findings).overall;
    let parts: Vec<String> = FindingVerdict::ALL
        .iter()
        .map(|&v| {
            let text = format!("{} {v}", counts.get(v));
            if counts.get(v) > 0 {
                paint(colour_of(v), &text)
            } else {
                text
            }
        })
        .collect();
    let noun = if counts.total == 1 { "resource" } else { "resources" };
    let _ = writeln!(out, "\n{} {noun}: {}", counts.total, parts.join(", "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;
    use crate::{Format, render as render_any};

    #[test]
    fn plain_table_is_aligned_and_summarised() {
        let out = render_any(&sample::findings(), Format::Table, &sample::context());
        assert!(!out.contains('\x1b'), "no colour unless asked:\n{out}");
        let lines: Vec<&str> = out.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("RESOURCE")).unwrap();
        let verdict_col = lines[header].find("VERDICT").unwrap();
        let type_col = lines[header].find("TYPE").unwrap();
        for (row, f) in lines[header + 1..header + 9].iter().zip(sample::findings()) {
            assert!(row.starts_with(f.resource_name()), "{row}");
            assert_eq!(&row[type_col..type_col + f.resource_type.len()], f.resource_type);
            assert!(row[verdict_col..].starts_with(f.verdict.as_str()), "{row}");
        }
        assert!(out.contains("stpayments") && out.contains("revert: reverted"), "{out}");
        assert!(
            out.ends_with("\n8 resources: 2 compliant, 3 drift, 1 exempt, 1 unsupported, 1 error\n"),
            "{out}"
        );
        assert!(
            out.contains("  drift sql-orders: customer-managed key is in vault"),
            "{out}"
        );
    }

    #[test]
    fn colour_only_when_asked_and_alignment_survives_it() {
        let mut ctx = sample::context();
        ctx.colour = true;
        ctx.dry_run = true;
        let out = render(&sample::findings(), &ctx);
        assert!(out.contains("\x1b[1;31mdrift"), "{out:?}");
        assert!(out.contains("\x1b[32mcompliant"), "{out:?}");
        assert!(out.contains("DRY RUN"), "{out}");
        let stripped = strip_ansi(&out);
        let mut plain_ctx = ctx.clone();
        plain_ctx.colour = false;
        assert_eq!(stripped, render(&sample::findings(), &plain_ctx));
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn hostile_names_cannot_drive_the_terminal() {
        let mut f = sample::findings().remove(0);
        f.resource_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a\x1b]0;pwned\x07b\u{202E}exe".into();
        f.detail = Some("line1\nline2 \x1b[2J".into());
        let out = render(&[f], &sample::context());
        assert!(
            !out.contains('\x1b') && !out.contains('\x07') && !out.contains('\u{202E}'),
            "{out:?}"
        );
        assert!(out.contains("a\u{FFFD}]0;pwned\u{FFFD}b\u{FFFD}exe"), "{out}");
        assert!(out.contains("line1\u{FFFD}line2"), "{out}");
        assert!(
            out.ends_with("\n1 resource: 0 compliant, 1 drift, 0 exempt, 0 unsupported, 0 error\n"),
            "{out}"
        );
    }

    #[test]
    fn long_values_are_cut_and_empty_input_says_so() {
        let mut f = sample::findings().remove(0);
        f.actual = Some(format!("cmk https://kv.vault.azure.net/keys/{}", "k".repeat(100)));
        let out = render(&[f], &sample::context());
        assert!(out.lines().all(|l| l.chars().count() < 200), "{out}");
        assert!(out.contains('…'), "{out}");
        let empty = render(&[], &sample::context());
        assert!(empty.contains("No resources in scope."), "{empty}");
        assert!(empty.ends_with("0 resources: 0 compliant, 0 drift, 0 exempt, 0 unsupported, 0 error\n"));
    }
}
