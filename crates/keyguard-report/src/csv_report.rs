//! CSV for spreadsheets: RFC 4180 quoting (the `csv` crate), and cells that a spreadsheet would
//! read as a formula defused, because resource names, tags and ARM messages flow into them.

use crate::{Finding, rfc3339};

const HEADER: [&str; 15] = [
    "resourceId",
    "resourceName",
    "resourceType",
    "subscriptionId",
    "resourceGroup",
    "verdict",
    "expected",
    "actual",
    "profile",
    "action",
    "result",
    "detail",
    "exemptionReason",
    "exemptionExpires",
    "checkedAt",
];

/// Excel, LibreOffice and Sheets evaluate a cell starting with `= + - @` (and, after trimming, a
/// tab or carriage return) as a formula: `=HYPERLINK("https://evil", "Click")` in a tag would
/// become a live link. A leading apostrophe makes it text, as OWASP recommends.
fn defuse(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    }
}

fn row(f: &Finding) -> [String; 15] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        f.resource_id.clone(),
        f.resource_name().to_string(),
        f.resource_type.clone(),
        opt(&f.subscription_id),
        opt(&f.resource_group),
        f.verdict.as_str().to_string(),
        opt(&f.expected),
        opt(&f.actual),
        opt(&f.profile),
        opt(&f.action),
        opt(&f.result),
        opt(&f.detail),
        f.exemption.as_ref().map(|e| e.reason.clone()).unwrap_or_default(),
        f.exemption
            .as_ref()
            .and_then(|e| e.expires)
            .map(rfc3339)
            .unwrap_or_default(),
        f.checked_at.map(rfc3339).unwrap_or_default(),
    ]
    .map(|v| defuse(&v))
}

pub fn render(findings: &[Finding]) -> String {
    // `Writer` over a Vec<u8> cannot fail on I/O, and every field is a `String`, so the output is UTF-8.
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let mut write_all = || -> Result<(), csv::Error> {
        writer.write_record(HEADER)?;
        for f in findings {
            writer.write_record(row(f))?;
        }
        writer.flush()?;
        Ok(())
    };
    let written = write_all();
    let bytes = writer.into_inner().unwrap_or_default();
    match written {
        Ok(()) => String::from_utf8(bytes).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FindingVerdict, Format, render as render_any, sample};

    fn parse(text: &str) -> Vec<csv::StringRecord> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn header_and_one_row_per_finding() {
        let findings = sample::findings();
        let out = render_any(&findings, Format::Csv, &sample::context());
        let records = parse(&out);
        assert_eq!(records.len(), findings.len() + 1);
        assert_eq!(records[0].iter().collect::<Vec<_>>(), HEADER);
        for (record, f) in records[1..].iter().zip(&findings) {
            assert_eq!(&record[0], f.resource_id);
            assert_eq!(&record[5], f.verdict.as_str());
        }
        let exempt = records.iter().find(|r| &r[5] == "exempt").unwrap();
        assert_eq!(
            &exempt[12],
            "Legacy app cannot reach Key Vault; migration ticket OPS-1234"
        );
        assert_eq!(&exempt[13], "2026-12-31T00:00:00Z");
        assert!(out.ends_with("\r\n"), "RFC 4180 line ends");
    }

    #[test]
    fn quoting_follows_rfc_4180() {
        let mut f = sample::findings().remove(0);
        f.detail = Some("said \"no\", twice\nthen gave up".into());
        let out = render(&[f]);
        assert!(out.contains("\"said \"\"no\"\", twice\nthen gave up\""), "{out}");
        assert_eq!(&parse(&out)[1][11], "said \"no\", twice\nthen gave up");
    }

    #[test]
    fn formula_cells_are_defused() {
        let hostile = [
            "=HYPERLINK(\"https://evil.example\",\"Click\")",
            "+1+1",
            "-2+3",
            "@SUM(A1:A2)",
            "\t=1",
            "\r=1",
        ];
        for payload in hostile {
            let f = crate::Finding {
                detail: Some(payload.to_string()),
                profile: Some(payload.to_string()),
                ..crate::Finding::new(&format!("{payload}/x"), "A.B/c", FindingVerdict::Error)
            };
            let records = parse(&render(&[f]));
            let row = &records[1];
            for i in [0, 8, 11] {
                assert_eq!(
                    row[i].strip_prefix('\''),
                    Some(&*format!("{payload}{}", if i == 0 { "/x" } else { "" }))
                );
            }
        }
        assert_eq!(defuse("/subscriptions/s"), "/subscriptions/s");
        assert_eq!(defuse("a=b"), "a=b", "only a leading sign is a formula");
        assert_eq!(defuse(""), "");
    }
}
