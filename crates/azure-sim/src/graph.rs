//! Azure Resource Graph: `POST /providers/Microsoft.ResourceGraph/resources?api-version=`
//! (operation `Resources`, api-versions 2019-04-01 to 2024-04-01), over the simulator's store.
//!
//! Request (`QueryRequest`): `{subscriptions?, managementGroups?, query, options?: {$top, $skip,
//! $skipToken, resultFormat}, facets?}`. Scope is the listed subscriptions plus those placed under
//! the listed management groups ([`crate::ListingConfig::management_groups`]); neither means the
//! whole tenant (every subscription the simulator knows).
//!
//! Response (`QueryResponse`): `{totalRecords, count, resultTruncated: "true"|"false",
//! $skipToken?, data, facets: []}`. Rows are the stored ARM documents with Resource Graph's
//! columns added: `type` lower-cased (as Resource Graph returns it), `resourceGroup` lower-cased,
//! `subscriptionId`, `tenantId`, and the standard columns (`kind`, `location`, `managedBy`, `sku`,
//! `plan`, `tags`, `identity`, `zones`, `extendedLocation`, `properties`) as `null` when absent.
//! The SQL settings children (encryption protector, server keys, TDE) are not rows: Resource
//! Graph does not index them either.
//!
//! KQL subset (anything else is 400 `BadRequest` whose message and `details` name the problem):
//!
//! * table `Resources` (any case);
//! * `| where` conditions joined by `and`: `column =~ 'v'`, `== 'v'` (case-sensitive, so
//!   `type == 'Microsoft.Storage/storageAccounts'` matches nothing, as in Azure), `!~`, `!=`,
//!   `in~ ('a', 'b')`, `in (...)`, `!in~ (...)`, `!in (...)`, on the string columns `id`,
//!   `name`, `type`, `kind`, `location`, `resourceGroup`, `subscriptionId`, `tenantId`,
//!   `managedBy`;
//! * `| project c1, c2` (plain column names: the rows keep only those columns);
//! * `| order by col [asc|desc]` / `| sort by ...` (KQL's default direction is `desc`);
//! * `| limit n` / `| take n`.
//!
//! Paging: `$top` 1..=1000, default 1000 (the page size; Microsoft's docs quote 100 for the
//! CLI and PowerShell defaults). Rows without `order by` come in id order, so pages are stable.
//! While rows remain the response carries `$skipToken` (opaque: the next offset and a hash of
//! query and scope; a token from another query or scope is 400). As documented, paging needs the
//! `id` column and no `limit`/`take`: when it is not possible and rows remain, `resultTruncated` is
//! `"true"` and there is no `$skipToken`. `$skip` and `$top` override the token's offset and the
//! page size. `resultFormat: "table"` answers `{columns: [{name, type}], rows: [[...]]}`.
//! Facet requests are accepted and answered with an empty `facets` array.

use std::borrow::Cow;

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::arm::{ArmError, Reply};
use crate::catalog_sim::{self, Child};
use crate::util::{fnv1a, lock};
use crate::{Sim, Store};

pub const API_VERSIONS: &[&str] = &[
    "2019-04-01",
    "2020-04-01-preview",
    "2021-03-01",
    "2021-06-01-preview",
    "2022-10-01",
    "2024-04-01",
];

/// Largest page Resource Graph serves; also the default here.
pub const MAX_TOP: usize = 1000;

/// Columns every Resource Graph `Resources` row has.
const STANDARD_COLUMNS: &[&str] = &[
    "id",
    "name",
    "type",
    "tenantId",
    "kind",
    "location",
    "resourceGroup",
    "subscriptionId",
    "managedBy",
    "sku",
    "plan",
    "properties",
    "tags",
    "identity",
    "zones",
    "extendedLocation",
];

/// The columns a `where` can compare as strings.
const STRING_COLUMNS: &[&str] = &[
    "id",
    "name",
    "type",
    "kind",
    "location",
    "resourceGroup",
    "subscriptionId",
    "tenantId",
    "managedBy",
];

pub(crate) fn is_graph_segments(segs: &[String]) -> bool {
    segs.len() == 3
        && segs[0].eq_ignore_ascii_case("providers")
        && segs[1].eq_ignore_ascii_case("Microsoft.ResourceGraph")
        && segs[2].eq_ignore_ascii_case("resources")
}

pub(crate) fn is_graph_path(path: &str) -> bool {
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    is_graph_segments(&segs)
}

// ------------------------------------------------------------------------------------------
// Errors

const INVALID_QUERY: &str = "Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix the query before retrying.";

/// A 400 in Resource Graph's shape: `BadRequest`, with the specific problem in `details`.
fn bad_request(detail_code: &str, problem: impl Into<String>) -> ArmError {
    let problem = problem.into();
    ArmError::new(StatusCode::BAD_REQUEST, "BadRequest", problem.clone()).with_details(vec![
        json!({"code": "InvalidQuery", "message": INVALID_QUERY}),
        json!({"code": detail_code, "message": problem}),
    ])
}

fn unsupported(problem: impl Into<String>) -> ArmError {
    bad_request("UnsupportedQuery", problem)
}

// ------------------------------------------------------------------------------------------
// The query language subset

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(u64),
    Pipe,
    Comma,
    LParen,
    RParen,
    Op(&'static str),
}

fn describe(t: &Token) -> String {
    match t {
        Token::Ident(s) => s.clone(),
        Token::Str(s) => format!("'{s}'"),
        Token::Num(n) => n.to_string(),
        Token::Pipe => "|".into(),
        Token::Comma => ",".into(),
        Token::LParen => "(".into(),
        Token::RParen => ")".into(),
        Token::Op(o) => (*o).into(),
    }
}

fn tokenize(q: &str) -> Result<Vec<Token>, ArmError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let parse_err = |at: usize, what: String| {
        bad_request(
            "ParserFailure",
            format!("Query could not be parsed at position {}: {what}.", at + 1),
        )
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Token::Pipe);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '(' => {
                out.push(Token::LParen);
                i += 1;
            }
            ')' => {
                out.push(Token::RParen);
                i += 1;
            }
            '=' if next == Some('=') => {
                out.push(Token::Op("=="));
                i += 2;
            }
            '=' if next == Some('~') => {
                out.push(Token::Op("=~"));
                i += 2;
            }
            '!' if next == Some('=') => {
                out.push(Token::Op("!="));
                i += 2;
            }
            '!' if next == Some('~') => {
                out.push(Token::Op("!~"));
                i += 2;
            }
            '!' if chars
                .get(i + 1..i + 3)
                .is_some_and(|s| s.iter().collect::<String>().eq_ignore_ascii_case("in")) =>
            {
                if chars.get(i + 3) == Some(&'~') {
                    out.push(Token::Op("!in~"));
                    i += 4;
                } else {
                    out.push(Token::Op("!in"));
                    i += 3;
                }
            }
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(parse_err(i, "unterminated string literal".into())),
                        Some('\\') => {
                            if let Some(esc) = chars.get(i + 1) {
                                s.push(*esc);
                            }
                            i += 2;
                        }
                        Some(ch) if *ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(s));
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = text
                    .parse()
                    .map_err(|_| parse_err(start, format!("number '{text}' is too large")))?;
                out.push(Token::Num(n));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|ch| ch.is_alphanumeric() || *ch == '_' || *ch == '.')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word.eq_ignore_ascii_case("in") && chars.get(i) == Some(&'~') {
                    out.push(Token::Op("in~"));
                    i += 1;
                } else if word == "in" {
                    out.push(Token::Op("in"));
                } else {
                    out.push(Token::Ident(word));
                }
            }
            other => return Err(parse_err(i, format!("unexpected character '{other}'"))),
        }
    }
    Ok(out)
}

#[derive(Clone, Debug, PartialEq)]
struct Condition {
    column: &'static str,
    op: &'static str,
    values: Vec<String>,
}

impl Condition {
    fn matches(&self, value: Option<&str>) -> bool {
        let Some(v) = value else {
            return self.op.starts_with('!');
        };
        let case_insensitive = self.op.ends_with('~');
        let hit = self.values.iter().any(|want| {
            if case_insensitive {
                want.eq_ignore_ascii_case(v)
            } else {
                want == v
            }
        });
        if self.op.starts_with('!') { !hit } else { hit }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Query {
    conditions: Vec<Condition>,
    project: Option<Vec<String>>,
    /// (column, descending)
    order: Option<(String, bool)>,
    limit: Option<usize>,
}

impl Query {
    fn pageable(&self) -> bool {
        self.limit.is_none() && self.project.as_ref().is_none_or(|cols| cols.iter().any(|c| c == "id"))
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn at_stage_end(&self) -> bool {
        matches!(self.peek(), None | Some(Token::Pipe))
    }

    fn expected(&self, what: &str) -> ArmError {
        let found = self
            .peek()
            .map(describe)
            .unwrap_or_else(|| "the end of the query".into());
        bad_request("ParserFailure", format!("Expected {what} but found {found}."))
    }

    fn ident(&mut self, what: &str) -> Result<String, ArmError> {
        match self.peek() {
            Some(Token::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.expected(what)),
        }
    }

    fn string(&mut self) -> Result<String, ArmError> {
        match self.peek() {
            Some(Token::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.expected("a string literal")),
        }
    }

    fn condition(&mut self) -> Result<Condition, ArmError> {
        let name = self.ident("a column name")?;
        let column = STRING_COLUMNS.iter().find(|c| **c == name).copied().ok_or_else(|| {
            if STANDARD_COLUMNS.contains(&name.as_str()) || name.contains('.') {
                unsupported(format!(
                    "The simulator's `where` compares the string columns {} only, not '{name}'.",
                    STRING_COLUMNS.join(", ")
                ))
            } else {
                bad_request(
                    "FailedToResolveScalarExpression",
                    format!("Failed to resolve scalar expression named '{name}'."),
                )
            }
        })?;
        let op = match self.next() {
            Some(Token::Op(op)) => op,
            other => {
                self.pos -= 1;
                let found = other.as_ref().map(describe).unwrap_or_else(|| "the end".into());
                return Err(unsupported(format!(
                    "Unsupported comparison '{found}' after '{name}': use =~, ==, !~, !=, in~, in, !in~ or !in."
                )));
            }
        };
        let values = if op.contains("in") {
            if self.next() != Some(Token::LParen) {
                self.pos -= 1;
                return Err(self.expected("'(' after in"));
            }
            let mut values = vec![self.string()?];
            loop {
                match self.next() {
                    Some(Token::Comma) => values.push(self.string()?),
                    Some(Token::RParen) => break,
                    _ => {
                        self.pos -= 1;
                        return Err(self.expected("',' or ')'"));
                    }
                }
            }
            values
        } else {
            vec![self.string()?]
        };
        Ok(Condition { column, op, values })
    }
}

fn parse(q: &str) -> Result<Query, ArmError> {
    let mut p = Parser {
        tokens: tokenize(q)?,
        pos: 0,
    };
    let table = p.ident("a table name")?;
    if !table.eq_ignore_ascii_case("resources") {
        return Err(unsupported(format!(
            "Table '{table}' is not served by the simulator; query the Resources table."
        )));
    }
    let mut query = Query::default();
    while let Some(t) = p.next() {
        if t != Token::Pipe {
            p.pos -= 1;
            return Err(p.expected("'|'"));
        }
        let op = p.ident("an operator")?;
        match op.as_str() {
            "where" => loop {
                query.conditions.push(p.condition()?);
                if p.at_stage_end() {
                    break;
                }
                match p.ident("'and'")?.as_str() {
                    "and" => {}
                    "or" => {
                        return Err(unsupported(
                            "The simulator supports 'and' between conditions, not 'or'.",
                        ));
                    }
                    other => {
                        return Err(bad_request(
                            "ParserFailure",
                            format!("Expected 'and' or '|' but found {other}."),
                        ));
                    }
                }
            },
            "project" => {
                let mut cols = Vec::new();
                loop {
                    let col = p.ident("a column name")?;
                    if col.contains('.') || matches!(p.peek(), Some(Token::Op(_))) {
                        return Err(unsupported(format!(
                            "The simulator projects plain columns only, not '{col}...'."
                        )));
                    }
                    if !STANDARD_COLUMNS.contains(&col.as_str()) {
                        return Err(bad_request(
                            "FailedToResolveScalarExpression",
                            format!("Failed to resolve scalar expression named '{col}'."),
                        ));
                    }
                    cols.push(col);
                    if p.at_stage_end() {
                        break;
                    }
                    if p.next() != Some(Token::Comma) {
                        p.pos -= 1;
                        return Err(p.expected("',' or '|'"));
                    }
                }
                query.project = Some(cols);
            }
            "order" | "sort" => {
                if p.ident("'by'")? != "by" {
                    p.pos -= 1;
                    return Err(p.expected("'by'"));
                }
                let col = p.ident("a column name")?;
                if !STRING_COLUMNS.contains(&col.as_str()) {
                    return Err(unsupported(format!(
                        "The simulator orders by the string columns {} only, not '{col}'.",
                        STRING_COLUMNS.join(", ")
                    )));
                }
                // KQL sorts descending unless told otherwise.
                let mut desc = true;
                if let Some(Token::Ident(dir)) = p.peek() {
                    match dir.as_str() {
                        "asc" => desc = false,
                        "desc" => {}
                        other => {
                            return Err(bad_request(
                                "ParserFailure",
                                format!("Expected asc, desc or '|' but found {other}."),
                            ));
                        }
                    }
                    p.pos += 1;
                }
                if !p.at_stage_end() {
                    return Err(unsupported("The simulator orders by one column only."));
                }
                query.order = Some((col, desc));
            }
            "limit" | "take" => match p.next() {
                Some(Token::Num(n)) => {
                    query.limit = Some(usize::try_from(n).unwrap_or(usize::MAX));
                }
                _ => {
                    p.pos -= 1;
                    return Err(p.expected("a row count"));
                }
            },
            other => {
                return Err(unsupported(format!(
                    "Operator '{other}' is not supported by the simulator (where, project, order by, sort by, limit, take are)."
                )));
            }
        }
    }
    Ok(query)
}

// ------------------------------------------------------------------------------------------
// Rows

/// Which tenant a row's subscription belongs to ([`crate::ListingConfig::tenants`]).
struct Tenants<'t> {
    home: &'t str,
    delegated: &'t std::collections::BTreeMap<String, String>,
}

impl Tenants<'_> {
    fn of(&self, subscription: Option<&str>) -> String {
        subscription
            .and_then(|sub| {
                self.delegated
                    .iter()
                    .find(|(s, _)| s.eq_ignore_ascii_case(sub))
                    .map(|(_, t)| t.clone())
            })
            .unwrap_or_else(|| self.home.to_owned())
    }
}

/// A stored resource seen as a Resource Graph row, without copying it.
struct RowView<'a> {
    /// Lower-cased id: `/subscriptions/{s}/resourcegroups/{rg}/providers/{ns}/{t}/{n}...`.
    key: &'a str,
    doc: &'a Value,
}

impl<'a> RowView<'a> {
    fn segment(&self, i: usize) -> Option<&'a str> {
        self.key.split('/').nth(i)
    }

    fn subscription(&self) -> Option<&'a str> {
        self.segment(2)
    }

    /// Resource Graph's `type`: namespace and type segments, lower-cased.
    fn type_lower(&self) -> String {
        let segs: Vec<&str> = self.key.split('/').collect();
        let mut t = segs.get(6).copied().unwrap_or_default().to_owned();
        for ty in segs.iter().skip(7).step_by(2) {
            t.push('/');
            t.push_str(ty);
        }
        t
    }

    fn column(&self, name: &str, tenant: &Tenants<'_>) -> Option<Cow<'a, str>> {
        match name {
            "type" => Some(Cow::Owned(self.type_lower())),
            "resourceGroup" => self.segment(4).map(Cow::Borrowed),
            "subscriptionId" => self.subscription().map(Cow::Borrowed),
            "tenantId" => Some(Cow::Owned(tenant.of(self.subscription()))),
            other => self.doc.get(other).and_then(Value::as_str).map(Cow::Borrowed),
        }
    }

    fn row(&self, tenant: &Tenants<'_>, project: Option<&[String]>) -> Map<String, Value> {
        let mut row = self.doc.as_object().cloned().unwrap_or_default();
        row.insert("type".into(), json!(self.type_lower()));
        row.insert("resourceGroup".into(), json!(self.segment(4)));
        row.insert("subscriptionId".into(), json!(self.subscription()));
        row.insert("tenantId".into(), json!(tenant.of(self.subscription())));
        for col in STANDARD_COLUMNS {
            row.entry(*col).or_insert(Value::Null);
        }
        if let Some(cols) = project {
            row.retain(|k, _| cols.iter().any(|c| c == k));
        }
        row
    }
}

/// Lower-cased types Resource Graph has no rows for (settings children read through their parent).
fn unindexed_types() -> Vec<String> {
    catalog_sim::TYPES
        .iter()
        .filter(|t| t.child != Child::No)
        .map(|t| t.full_type.to_ascii_lowercase())
        .collect()
}

// ------------------------------------------------------------------------------------------
// The request

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryRequest {
    #[serde(default)]
    subscriptions: Vec<String>,
    #[serde(default)]
    management_groups: Vec<String>,
    query: Option<String>,
    #[serde(default)]
    options: QueryOptions,
}

#[derive(Debug, Default, Deserialize)]
struct QueryOptions {
    #[serde(rename = "$top")]
    top: Option<i64>,
    #[serde(rename = "$skip")]
    skip: Option<i64>,
    #[serde(rename = "$skipToken")]
    skip_token: Option<String>,
    #[serde(rename = "resultFormat")]
    result_format: Option<String>,
}

fn query_hash(query: &str, subs: &[String], mgs: &[String]) -> String {
    let mut subs: Vec<String> = subs.iter().map(|s| s.to_ascii_lowercase()).collect();
    subs.sort();
    let mut mgs: Vec<String> = mgs.iter().map(|s| s.to_ascii_lowercase()).collect();
    mgs.sort();
    let text = format!("{}|{}|{}", query.trim(), subs.join(","), mgs.join(","));
    format!("{:016x}{:016x}", fnv1a(11, text.as_bytes()), fnv1a(12, text.as_bytes()))
}

fn encode_skip_token(offset: usize, hash: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"$skip": offset, "$qh": hash}).to_string())
}

fn decode_skip_token(token: &str, hash: &str) -> Result<usize, ArmError> {
    let invalid = || {
        bad_request(
            "InvalidSkipToken",
            "The $skipToken is invalid for this query: pass the token with the same query and scopes that produced it.",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| invalid())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| invalid())?;
    if v.get("$qh").and_then(Value::as_str) != Some(hash) {
        return Err(invalid());
    }
    v.get("$skip")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(invalid)
}

pub(crate) fn handle(sim: &Sim, method: &Method, body: &[u8], api_version: &str) -> Result<Reply, ArmError> {
    if *method != Method::POST {
        return Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The requested resource does not support http method '{method}'."),
        ));
    }
    if !API_VERSIONS.iter().any(|v| v.eq_ignore_ascii_case(api_version)) {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location 'global' and API version '{api_version}' for type 'resources'. The supported api-versions are '{}'.",
                API_VERSIONS.join(", ")
            ),
        ));
    }
    let req: QueryRequest = serde_json::from_slice(body).map_err(|e| {
        bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })?;
    let text = req
        .query
        .as_deref()
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| bad_request("InvalidRequestContent", "The request must contain a non-empty 'query'."))?;
    let query = parse(text)?;
    let top = match req.options.top {
        None => MAX_TOP,
        Some(n) if (1..=MAX_TOP as i64).contains(&n) => usize::try_from(n).unwrap_or(MAX_TOP),
        Some(n) => {
            return Err(bad_request(
                "InvalidQueryOptions",
                format!("The value of '$top' must be between 1 and {MAX_TOP}, not {n}."),
            ));
        }
    };
    let hash = query_hash(text, &req.subscriptions, &req.management_groups);
    let mut offset = match &req.options.skip_token {
        Some(t) => decode_skip_token(t, &hash)?,
        None => 0,
    };
    match req.options.skip {
        Some(n) if n < 0 => {
            return Err(bad_request(
                "InvalidQueryOptions",
                format!("The value of '$skip' must be 0 or more, not {n}."),
            ));
        }
        Some(n) => offset = usize::try_from(n).unwrap_or(usize::MAX),
        None => {}
    }
    let table = match req.options.result_format.as_deref() {
        None => false,
        Some(f) if f.eq_ignore_ascii_case("objectArray") => false,
        Some(f) if f.eq_ignore_ascii_case("table") => true,
        Some(other) => {
            return Err(bad_request(
                "InvalidQueryOptions",
                format!("resultFormat '{other}' is not one of 'table', 'objectArray'."),
            ));
        }
    };
    let scope = scope(sim, &req)?;

    let listing = sim.listing_config();
    let tenant = Tenants {
        home: sim.tenant_id(),
        delegated: &listing.tenants,
    };
    let unindexed = unindexed_types();
    let store = lock(&sim.store);
    let (total, page) = run(&store, &query, &scope, &unindexed, &tenant, offset, top);
    drop(store);

    let remaining = total > offset.saturating_add(page.len());
    let pageable = query.pageable();
    let mut body = json!({
        "totalRecords": total,
        "count": page.len(),
        "resultTruncated": if remaining && !pageable { "true" } else { "false" },
        "facets": [],
    });
    if remaining && pageable {
        body["$skipToken"] = json!(encode_skip_token(offset + page.len(), &hash));
    }
    body["data"] = if table {
        as_table(page, query.project.as_deref())
    } else {
        Value::Array(page.into_iter().map(Value::Object).collect())
    };
    Ok(Reply::ok(body))
}

/// Lower-cased subscriptions in scope.
fn scope(sim: &Sim, req: &QueryRequest) -> Result<Vec<String>, ArmError> {
    if req.subscriptions.is_empty() && req.management_groups.is_empty() {
        return Ok(sim.subscriptions());
    }
    let mut subs: Vec<String> = req.subscriptions.iter().map(|s| s.to_ascii_lowercase()).collect();
    for mg in &req.management_groups {
        let members = sim.management_group_subscriptions(mg).ok_or_else(|| {
            bad_request(
                "ManagementGroupNotFound",
                format!("The management group '{mg}' was not found or is not accessible."),
            )
        })?;
        subs.extend(members);
    }
    subs.sort();
    subs.dedup();
    Ok(subs)
}

/// Matching rows: total count and the requested page, built while the store is locked.
fn run(
    store: &Store,
    query: &Query,
    scope: &[String],
    unindexed: &[String],
    tenant: &Tenants<'_>,
    offset: usize,
    top: usize,
) -> (usize, Vec<Map<String, Value>>) {
    let mut matches: Vec<RowView<'_>> = store
        .resources
        .iter()
        .map(|(key, doc)| RowView { key, doc })
        .filter(|row| {
            row.subscription()
                .is_some_and(|s| scope.binary_search_by(|x| x.as_str().cmp(s)).is_ok())
        })
        .filter(|row| !unindexed.contains(&row.type_lower()))
        .filter(|row| {
            query
                .conditions
                .iter()
                .all(|c| c.matches(row.column(c.column, tenant).as_deref()))
        })
        .collect();
    if let Some((col, desc)) = &query.order {
        if col == "id" {
            // The store is already in (case-insensitive) id order.
            if *desc {
                matches.reverse();
            }
        } else {
            matches.sort_by(|a, b| {
                let (va, vb) = (a.column(col, tenant), b.column(col, tenant));
                let ord = va.cmp(&vb).then_with(|| a.key.cmp(b.key));
                if *desc { ord.reverse() } else { ord }
            });
        }
    }
    if let Some(limit) = query.limit {
        matches.truncate(limit);
    }
    let total = matches.len();
    let page = matches
        .iter()
        .skip(offset)
        .take(top)
        .map(|row| row.row(tenant, query.project.as_deref()))
        .collect();
    (total, page)
}

fn as_table(rows: Vec<Map<String, Value>>, project: Option<&[String]>) -> Value {
    let columns: Vec<String> = match project {
        Some(cols) => cols.to_vec(),
        None => STANDARD_COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
    };
    let column_type = |c: &str| {
        if STRING_COLUMNS.contains(&c) {
            "string"
        } else {
            "object"
        }
    };
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| Value::Array(columns.iter().map(|c| r.remove(c).unwrap_or(Value::Null)).collect()))
        .collect();
    json!({
        "columns": columns.iter().map(|c| json!({"name": c, "type": column_type(c)})).collect::<Vec<_>>(),
        "rows": rows,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_sweep_queries() {
        let q = parse(
            "resources | where type in~ ('Microsoft.Storage/storageAccounts', 'microsoft.sql/servers') and resourceGroup =~ 'rg-1' | project id, name, type, properties | order by id asc",
        )
        .unwrap();
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.conditions[0].op, "in~");
        assert_eq!(q.conditions[1].column, "resourceGroup");
        assert_eq!(q.project.as_ref().unwrap().len(), 4);
        assert_eq!(q.order, Some(("id".into(), false)));
        assert!(q.pageable());
        let q = parse("Resources | where type =~ 'a/b' and subscriptionId =~ 'S' | limit 5").unwrap();
        assert_eq!(q.limit, Some(5));
        assert!(!q.pageable());
        assert!(!parse("Resources | project name").unwrap().pageable());
        assert_eq!(
            parse("resources | order by name").unwrap().order,
            Some(("name".into(), true))
        );
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for (q, needle) in [
            ("resources | summarize count() by type", "summarize"),
            ("resourcecontainers", "resourcecontainers"),
            ("resources | where type =~ 'a' or type =~ 'b'", "'or'"),
            ("resources | where nosuch =~ 'a'", "nosuch"),
            ("resources | where type contains 'a'", "contains"),
            ("resources | where type =~ 'a", "unterminated"),
            ("resources | project x = id", "'='"),
            (
                "resources | where properties.encryption.keySource =~ 'x'",
                "properties.encryption.keySource",
            ),
        ] {
            let e = parse(q).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{q}");
            assert!(e.message.contains(needle), "{q}: {}", e.message);
            assert_eq!(e.body()["error"]["details"][1]["message"], e.message.as_str(), "{q}");
        }
    }

    #[test]
    fn conditions_follow_kql_case_rules() {
        let c = |op: &'static str| Condition {
            column: "type",
            op,
            values: vec!["Microsoft.Storage/storageAccounts".into()],
        };
        let v = Some("microsoft.storage/storageaccounts");
        assert!(c("=~").matches(v));
        assert!(!c("==").matches(v));
        assert!(c("in~").matches(v));
        assert!(!c("in").matches(v));
        assert!(!c("!~").matches(v));
        assert!(c("!=").matches(v));
    }

    #[test]
    fn skip_tokens_are_bound_to_query_and_scope() {
        let h = query_hash("resources", &["A".into()], &[]);
        assert_eq!(h, query_hash(" resources ", &["a".into()], &[]));
        let t = encode_skip_token(1000, &h);
        assert_eq!(decode_skip_token(&t, &h).unwrap(), 1000);
        assert!(decode_skip_token(&t, &query_hash("resources", &["b".into()], &[])).is_err());
        assert!(decode_skip_token("garbage", &h).is_err());
    }
}
