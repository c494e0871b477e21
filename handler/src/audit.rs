//! Reading the audit trail back: the query people ask (`--resource`, `--since`), and the shapes
//! they want it in (a table to read, JSON to process, CSV for the auditor's spreadsheet).

use keyguard_core::{ResourceId, ResourceIdError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::reconcile::AuditRecord;
use crate::store::{AuditQuery, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT};

/// Why a time (`--since`, `until=` ...) is refused.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error("{0:?} is neither an RFC 3339 time nor an age like 24h or 7d")]
    NotATime(String),
    #[error("{0:?}: an age's unit is m, h or d")]
    Unit(String),
    #[error("{0:?} reaches back beyond the calendar keyguard can represent")]
    BeyondCalendar(String),
}

/// Why an audit query is refused; each names the parameter at fault.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("resource: {0}")]
    Resource(ResourceIdError),
    #[error("since: {0}")]
    Since(TimeError),
    #[error("until: {0}")]
    Until(TimeError),
    #[error("limit {0} is not 1..={MAX_AUDIT_LIMIT}; for more, page back with `until` set to the oldest record's time")]
    Limit(usize),
}

/// Why the records could not be written out in the format asked for.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// An RFC 3339 time, or an age before `now`: `90m`, `24h`, `7d`. An age that reaches beyond the
/// calendar (`99999999999999d`) is an error, not an overflow.
pub fn parse_time(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, TimeError> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let amount: i64 = number.parse().map_err(|_| TimeError::NotATime(text.to_string()))?;
    let unit_secs: i64 = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(TimeError::Unit(text.to_string())),
    };
    amount
        .checked_mul(unit_secs)
        .map(time::Duration::seconds)
        .and_then(|age| now.checked_sub(age))
        .ok_or_else(|| TimeError::BeyondCalendar(text.to_string()))
}

/// The query of `keyguard audit` and `GET /api/audit`. `limit` defaults to
/// [`DEFAULT_AUDIT_LIMIT`] and may not exceed [`MAX_AUDIT_LIMIT`]: the store reads no more.
pub fn query_from(
    resource: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
    limit: Option<usize>,
    now: OffsetDateTime,
) -> Result<AuditQuery, QueryError> {
    let resource = resource
        .map(|r| ResourceId::parse(r).map_err(QueryError::Resource))
        .transpose()?;
    let limit = limit.unwrap_or(DEFAULT_AUDIT_LIMIT);
    if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
        return Err(QueryError::Limit(limit));
    }
    Ok(AuditQuery {
        resource,
        since: since
            .map(|t| parse_time(t, now).map_err(QueryError::Since))
            .transpose()?,
        until: until
            .map(|t| parse_time(t, now).map_err(QueryError::Until))
            .transpose()?,
        limit,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    Table,
    Json,
    Csv,
}

const COLUMNS: [&str; 13] = [
    "time",
    "recordId",
    "eventId",
    "correlationId",
    "resourceId",
    "caller",
    "before",
    "after",
    "verdict",
    "action",
    "result",
    "durationMs",
    "detail",
];

fn state_text(state: &Option<keyguard_core::EncryptionState>) -> String {
    use keyguard_core::EncryptionState as S;
    match state {
        None => String::new(),
        Some(S::Mmk) => "mmk".into(),
        Some(S::Cmk(key)) => format!("cmk {key}"),
        Some(S::Encrypted) => "encrypted".into(),
        Some(S::Disabled) => "disabled".into(),
        Some(S::Unknown(what)) => format!("unknown ({what})"),
        Some(S::KeyOutsideKeyVault { reference, .. }) => format!("key outside Key Vault ({reference})"),
    }
}

fn row(record: &AuditRecord) -> [String; 13] {
    let o = &record.outcome;
    [
        record.time.format(&Rfc3339).unwrap_or_default(),
        record.id.clone(),
        o.event_id().unwrap_or("").to_string(),
        o.correlation_id.clone(),
        o.resource_id.clone().unwrap_or_default(),
        o.caller.clone().unwrap_or_default(),
        state_text(&o.before),
        state_text(&o.after),
        o.verdict.to_string(),
        o.action.to_string(),
        o.result.to_string(),
        o.duration_ms.to_string(),
        o.detail.clone().unwrap_or_default(),
    ]
}

pub fn render(records: &[AuditRecord], format: AuditFormat) -> Result<String, RenderError> {
    match format {
        AuditFormat::Json => Ok(serde_json::to_string_pretty(records)?),
        AuditFormat::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(COLUMNS)?;
            for record in records {
                // A cell a spreadsheet would run as a formula is written as text.
                writer.write_record(row(record).iter().map(|cell| spreadsheet_safe(cell).into_owned()))?;
            }
            let bytes = writer.into_inner().map_err(|e| csv::Error::from(e.into_error()))?;
            Ok(String::from_utf8(bytes)?)
        }
        AuditFormat::Table => Ok(table(records)),
    }
}

fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

fn table(records: &[AuditRecord]) -> String {
    let headers = [
        "TIME",
        "RESOURCE",
        "VERDICT",
        "ACTION",
        "RESULT",
        "CALLER",
        "BEFORE -> AFTER",
    ];
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            let o = &r.outcome;
            let name = o
                .resource_id
                .as_deref()
                .and_then(|id| id.rsplit('/').next())
                .unwrap_or("")
                .to_string();
            let change = match (&o.before, &o.after) {
                (before, None) => state_text(before),
                (before, after) => format!("{} -> {}", state_text(before), state_text(after)),
            };
            [
                r.time.format(&Rfc3339).unwrap_or_default(),
                name,
                o.verdict.to_string(),
                o.action.to_string(),
                o.result.to_string(),
                o.caller.clone().unwrap_or_default(),
                change,
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let text: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(&headers.map(String::from));
    for row in &rows {
        line(row);
    }
    out.push_str(&format!("{} record(s)\n", records.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_are_rfc3339_or_ages() {
        let now = datetime!(2026-11-23 12:00 UTC);
        assert_eq!(parse_time("24h", now).unwrap(), datetime!(2026-11-22 12:00 UTC));
        assert_eq!(parse_time("7d", now).unwrap(), datetime!(2026-11-16 12:00 UTC));
        assert_eq!(parse_time("90m", now).unwrap(), datetime!(2026-11-23 10:30 UTC));
        assert_eq!(
            parse_time("2026-01-02T03:04:05Z", now).unwrap(),
            datetime!(2026-01-02 03:04:05 UTC)
        );
        assert!(
            parse_time("yesterday", now)
                .unwrap_err()
                .to_string()
                .contains("yesterday")
        );
        assert!(parse_time("5w", now).unwrap_err().to_string().contains("unit"));
        assert!(query_from(Some("not-an-id"), None, None, None, now).is_err());
    }

    /// Finding 7: `GET /api/audit?since=99999999999999d` panicked (a 500); `keyguard audit` too.
    #[test]
    fn ages_beyond_the_calendar_are_errors_not_panics() {
        let now = datetime!(2026-11-23 12:00 UTC);
        for text in [
            "99999999999999d",
            "9223372036854775807m",
            "2562047788015216h",
            "5000000d",
        ] {
            let err = parse_time(text, now).unwrap_err().to_string();
            assert!(
                err.contains(text) && err.contains("beyond the calendar"),
                "{text}: {err}"
            );
        }
        // Too many digits for a number at all: also an error.
        assert!(parse_time("99999999999999999999999d", now).is_err());
        // The edge of what time can represent still works.
        assert!(parse_time("4000000d", now).is_ok());
        for (since, until) in [(Some("99999999999999d"), None), (None, Some("99999999999999d"))] {
            let err = query_from(None, since, until, None, now).unwrap_err().to_string();
            let which = if since.is_some() { "since" } else { "until" };
            assert!(err.starts_with(which), "{err}");
        }
    }

    #[test]
    fn the_limit_has_a_default_and_a_maximum() {
        let now = datetime!(2026-11-23 12:00 UTC);
        assert_eq!(
            query_from(None, None, None, None, now).unwrap().limit,
            DEFAULT_AUDIT_LIMIT
        );
        assert_eq!(
            query_from(None, None, None, Some(MAX_AUDIT_LIMIT), now).unwrap().limit,
            MAX_AUDIT_LIMIT
        );
        for bad in [0, MAX_AUDIT_LIMIT + 1, usize::MAX] {
            let err = query_from(None, None, None, Some(bad), now).unwrap_err().to_string();
            assert!(err.contains("limit") && err.contains("10000"), "{err}");
        }
    }

    fn record(result: &str, detail: &str) -> AuditRecord {
        let outcome: keyguard_core::outcome::Outcome = serde_json::from_value(serde_json::json!({
            "trigger": {"kind": "event", "eventId": "e-1", "eventType": "Microsoft.Resources.ResourceWriteSuccess"},
            "correlationId": "corr-1",
            "resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct",
            "resourceType": "Microsoft.Storage/storageAccounts",
            "caller": "alice@contoso.com", "callerIp": null, "profile": "p", "requirement": "cmk",
            "verdict": "drift", "drift": null,
            "before": {"state": "mmk"},
            "after": {"state": "cmk", "detail": {"vaultUri": "https://kv.vault.azure.net", "keyName": "k", "keyVersion": null, "userAssignedIdentity": null}},
            "action": "revert", "result": result, "detail": detail, "alert": true, "dryRun": false, "durationMs": 12
        }))
        .unwrap();
        AuditRecord {
            id: "0190-rec".into(),
            time: datetime!(2026-11-23 12:00 UTC),
            outcome,
        }
    }

    #[test]
    fn every_format_carries_the_auditors_fields() {
        let records = vec![record("reverted", "=HYPERLINK(\"http://x\")")];
        let csv = render(&records, AuditFormat::Csv).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS.to_vec());
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(&row[2], "e-1");
        assert_eq!(&row[6], "mmk");
        assert_eq!(&row[7], "cmk https://kv.vault.azure.net/keys/k");
        assert_eq!(&row[10], "reverted");
        assert!(row[12].starts_with("'="), "formula neutralised: {}", &row[12]);

        let json: serde_json::Value = serde_json::from_str(&render(&records, AuditFormat::Json).unwrap()).unwrap();
        assert_eq!(json[0]["trigger"]["eventId"], "e-1");
        assert_eq!(json[0]["result"], "reverted");
        assert_eq!(json[0]["id"], "0190-rec");

        let table = render(&records, AuditFormat::Table).unwrap();
        assert!(table.contains("acct") && table.contains("mmk -> cmk"), "{table}");
        assert!(table.ends_with("1 record(s)\n"));
    }
}
