//! `GET /api/findings`: the latest finding per resource, filtered, as JSON or as a report.

use std::collections::BTreeSet;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyguard_report::{Finding, FindingVerdict, Format, ReportContext};
use serde_json::json;

use super::store_unavailable;
use crate::http::{AppState, error};

/// `GET /api/findings` query: filters and the output format.
#[derive(Debug, PartialEq)]
struct FindingsQuery {
    /// Empty: every verdict.
    verdicts: BTreeSet<FindingVerdict>,
    subscription: Option<String>,
    resource_group: Option<String>,
    resource_type: Option<String>,
    format: Format,
}

const FINDINGS_PARAMETERS: &str = "verdict, subscription, resourceGroup, type, format";
const FINDINGS_FORMATS: [Format; 4] = [Format::Json, Format::Csv, Format::Sarif, Format::Html];

impl FindingsQuery {
    /// Parsed by hand because `verdict` may repeat (`?verdict=drift&verdict=error`), which serde's
    /// query deserializer cannot express next to unknown-key rejection.
    fn parse(raw: Option<&str>) -> Result<Self, FindingsQueryError> {
        let mut query = FindingsQuery {
            verdicts: BTreeSet::new(),
            subscription: None,
            resource_group: None,
            resource_type: None,
            format: Format::Json,
        };
        let mut format: Option<Format> = None;
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let value = value.trim();
            match key.as_ref() {
                "verdict" => {
                    for item in value.split(',').map(str::trim) {
                        let verdict = FindingVerdict::ALL
                            .into_iter()
                            .find(|v| v.as_str().eq_ignore_ascii_case(item))
                            .ok_or_else(|| FindingsQueryError::UnknownVerdict(item.to_string()))?;
                        query.verdicts.insert(verdict);
                    }
                }
                "subscription" => set_once(&mut query.subscription, "subscription", value)?,
                "resourceGroup" => set_once(&mut query.resource_group, "resourceGroup", value)?,
                "type" => set_once(&mut query.resource_type, "type", value)?,
                "format" => {
                    if format.is_some() {
                        return Err(FindingsQueryError::Repeated("format"));
                    }
                    let parsed = value
                        .parse::<Format>()
                        .ok()
                        .filter(|f| FINDINGS_FORMATS.contains(f))
                        .ok_or_else(|| FindingsQueryError::UnknownFormat(value.to_string()))?;
                    format = Some(parsed);
                }
                // The Functions key: the host checks it before forwarding the request.
                "code" => {}
                other => return Err(FindingsQueryError::UnknownParameter(other.to_string())),
            }
        }
        query.format = format.unwrap_or(Format::Json);
        Ok(query)
    }

    fn matches(&self, finding: &Finding) -> bool {
        let same = |wanted: &Option<String>, actual: Option<&str>| {
            wanted
                .as_deref()
                .is_none_or(|w| actual.is_some_and(|a| a.eq_ignore_ascii_case(w)))
        };
        (self.verdicts.is_empty() || self.verdicts.contains(&finding.verdict))
            && same(&self.subscription, finding.subscription_id.as_deref())
            && same(&self.resource_group, finding.resource_group.as_deref())
            && same(&self.resource_type, Some(&finding.resource_type))
    }

    /// The report's scope line.
    fn describe(&self) -> String {
        let mut parts = vec!["latest finding per resource".to_string()];
        if let Some(s) = &self.subscription {
            parts.push(format!("subscription {s}"));
        }
        if let Some(g) = &self.resource_group {
            parts.push(format!("resource group {g}"));
        }
        if let Some(t) = &self.resource_type {
            parts.push(format!("type {t}"));
        }
        if !self.verdicts.is_empty() {
            let verdicts: Vec<&str> = self.verdicts.iter().map(|v| v.as_str()).collect();
            parts.push(format!("verdict {}", verdicts.join(",")));
        }
        parts.join(" / ")
    }
}

/// Why `GET /api/findings` refuses its query.
#[derive(Debug, thiserror::Error)]
enum FindingsQueryError {
    #[error("verdict {0:?} is not one of compliant, drift, exempt, unsupported, error")]
    UnknownVerdict(String),
    #[error("format {0:?} is not one of json, csv, sarif, html")]
    UnknownFormat(String),
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{0} is given more than once")]
    Repeated(&'static str),
    #[error("unknown query parameter {0:?}; expected {FINDINGS_PARAMETERS}")]
    UnknownParameter(String),
}

fn set_once(slot: &mut Option<String>, name: &'static str, value: &str) -> Result<(), FindingsQueryError> {
    if value.is_empty() {
        return Err(FindingsQueryError::Empty(name));
    }
    if slot.is_some() {
        return Err(FindingsQueryError::Repeated(name));
    }
    *slot = Some(value.to_string());
    Ok(())
}

/// The latest finding per resource, as JSON with a summary or as a CSV, SARIF or HTML report.
pub(in crate::http) async fn api_findings(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let query = match FindingsQuery::parse(raw.as_deref()) {
        Ok(q) => q,
        Err(problem) => return error(StatusCode::BAD_REQUEST, "InvalidQuery", &problem.to_string()),
    };
    let findings = match state.reconcile.store.findings().await {
        Ok(findings) => findings,
        Err(e) => {
            tracing::error!(error = %e, "findings unreadable");
            return store_unavailable();
        }
    };
    let findings: Vec<Finding> = findings.into_iter().filter(|f| query.matches(f)).collect();
    if query.format == Format::Json {
        let summary = keyguard_report::summarize(&findings);
        return (
            StatusCode::OK,
            axum::Json(json!({"value": findings, "summary": summary})),
        )
            .into_response();
    }
    let context = ReportContext {
        dry_run: state.dry_run,
        ..ReportContext::new(
            env!("CARGO_PKG_VERSION"),
            time::OffsetDateTime::now_utc(),
            &query.describe(),
        )
    };
    let body = keyguard_report::render(&findings, query.format, &context);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, query.format.media_type())],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_env::{SUBSCRIPTION, account};

    #[test]
    fn the_findings_query_parses_filters_and_refuses_the_rest() {
        let q = FindingsQuery::parse(Some(
            "verdict=drift,ERROR&verdict=drift&type=Microsoft.Sql/servers&format=sarif",
        ))
        .unwrap();
        assert_eq!(
            q.verdicts,
            BTreeSet::from([FindingVerdict::Drift, FindingVerdict::Error])
        );
        assert_eq!(q.resource_type.as_deref(), Some("Microsoft.Sql/servers"));
        assert_eq!(q.format, Format::Sarif);
        assert_eq!(FindingsQuery::parse(None).unwrap().format, Format::Json);
        assert!(FindingsQuery::parse(Some("code=abc")).unwrap().verdicts.is_empty());
        for (raw, needle) in [
            ("verdict=", "verdict \"\""),
            ("verdict=drift,,error", "verdict \"\""),
            ("format=csv&format=json", "more than once"),
            ("format=xml", "xml"),
            ("subscription=a&subscription=b", "more than once"),
            ("resourcegroup=rg", "resourcegroup"),
        ] {
            let err = FindingsQuery::parse(Some(raw)).unwrap_err().to_string();
            assert!(err.contains(needle), "{raw}: {err}");
        }
        let finding = keyguard_report::Finding::new(
            &account("st1"),
            "microsoft.storage/storageaccounts",
            FindingVerdict::Drift,
        );
        let q = FindingsQuery::parse(Some(&format!(
            "subscription={}&resourceGroup=Rg-Keyguard-Demo",
            SUBSCRIPTION.to_uppercase()
        )))
        .unwrap();
        assert!(q.matches(&finding));
        assert!(
            !FindingsQuery::parse(Some("verdict=compliant"))
                .unwrap()
                .matches(&finding)
        );
        assert!(
            !FindingsQuery::parse(Some("type=Microsoft.Sql/servers"))
                .unwrap()
                .matches(&finding)
        );
        assert!(
            FindingsQuery::parse(Some("type=MICROSOFT.STORAGE/storageAccounts"))
                .unwrap()
                .matches(&finding)
        );
    }
}
