//! The sweep: list every catalog resource in a scope and put each through the same reconcile as an
//! event. Resource Graph pages (1,000 rows, `$skipToken`) where it answers, ARM list calls
//! (`nextLink`) otherwise; throttling quotas are respected before ARM has to refuse; a sweep that
//! reaches its time budget stops between pages and leaves a checkpoint the next run resumes from.
//! A listed body is evaluated as it is (no per-resource GET) unless a write may follow.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use keyguard_core::ResourceId;
use keyguard_core::catalog::{self, CatalogEntry};
use keyguard_report::{Finding, FindingVerdict};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::arm::{ArmError, CallContext, Page};
use keyguard_core::arm_scope::ArmScope;

use crate::reconcile::key_watch::{KeyInventory, KeySeen, watch_keys};
use crate::reconcile::{self, Attempt, Context, ReconcileError, Trigger};

pub const RESOURCE_GRAPH_API_VERSION: &str = "2022-10-01";
const RESOURCE_GRAPH_PATH: &str = "/providers/Microsoft.ResourceGraph/resources";
const MANAGEMENT_GROUPS_API_VERSION: &str = "2020-05-01";
/// Resource Graph's largest page.
const PAGE_ROWS: u64 = 1000;
/// Resources evaluated at once: enough to hide store and ARM latency, few enough to stay polite.
const CONCURRENCY: usize = 8;

/// What the timer sweeps and how long sweeps may run.
#[derive(Clone, Debug)]
pub struct SweepSettings {
    /// `KEYGUARD_SWEEP_SCOPES`: the scopes the Reconcile timer sweeps. Empty: it re-checks the
    /// resources keyguard has seen instead.
    pub scopes: Vec<ArmScope>,
    /// The timer's sweep budget (inside the Functions timeout; it resumes next time).
    pub timer_budget: Duration,
    /// `POST /api/scan`'s budget (inside the HTTP front end's 230 s).
    pub api_budget: Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            scopes: Vec::new(),
            timer_budget: Duration::from_secs(240),
            api_budget: Duration::from_secs(200),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum Listing {
    /// Resource Graph, falling back to ARM list calls if it does not answer.
    #[default]
    Auto,
    ResourceGraph,
    Arm,
}

#[derive(Clone, Debug)]
pub struct ScanRequest {
    pub scope: ArmScope,
    /// Catalog types to cover; empty: all of them.
    pub types: Vec<String>,
    pub dry_run: bool,
    pub listing: Listing,
    /// Start again from a checkpoint an earlier, unfinished sweep of the same scope left.
    pub resume: bool,
    /// The whole sweep's time; it stops cleanly between pages and leaves a checkpoint.
    pub budget: Duration,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanProgress {
    pub listed: usize,
    pub evaluated: usize,
    /// When the listing says how many there are (Resource Graph's `totalRecords`).
    pub total: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    pub scope: String,
    pub listing: Listing,
    pub complete: bool,
    /// Give it back (`resumeToken`, `--resume`) to continue an unfinished sweep.
    pub resume_token: Option<String>,
    pub resumed: bool,
    pub listed: usize,
    pub evaluated: usize,
    pub pages: usize,
    /// ARM requests the sweep made: listing pages, and reads before writes.
    pub requests: u64,
    /// 429 answers received (each waited out as `Retry-After` said).
    pub throttled: u64,
    pub duration_ms: u64,
    pub summary: keyguard_report::Counts,
    pub findings: Vec<Finding>,
    /// The vaults in use (flagging those outside the estate) and the keys that cannot be used.
    pub keys: KeyInventory,
}

/// Where a sweep stands between pages.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Checkpoint {
    listing: Option<Listing>,
    /// Resource Graph: the `$skipToken` of the next page.
    skip_token: Option<String>,
    /// ARM list: which (subscription, type) list, and its next page.
    arm_position: usize,
    next_link: Option<String>,
    listed: usize,
    evaluated: usize,
}

fn types_in(request: &ScanRequest) -> Result<Vec<&'static CatalogEntry>, SweepError> {
    if request.types.is_empty() {
        return Ok(catalog::entries().iter().collect());
    }
    request
        .types
        .iter()
        .map(|t| catalog::lookup(t).ok_or_else(|| SweepError::UnknownType(t.clone())))
        .collect()
}

/// Identifies a sweep (scope, types, mode) for its checkpoint; also the API's `resumeToken`.
pub fn checkpoint_key(request: &ScanRequest) -> String {
    let mut types: Vec<String> = request.types.iter().map(|t| t.to_ascii_lowercase()).collect();
    types.sort();
    format!(
        "sweep|{}|{}|{}",
        request.scope.path().to_ascii_lowercase(),
        types.join(","),
        request.dry_run
    )
}

/// The Resource Graph query for the catalog types in a scope; ids sort the pages stably.
pub fn graph_query(types: &[&CatalogEntry], scope: &ArmScope) -> String {
    let list: Vec<String> = types
        .iter()
        .map(|e| format!("'{}'", e.resource_type.to_ascii_lowercase()))
        .collect();
    let group = match scope {
        ArmScope::ResourceGroup { group, .. } => format!(" and resourceGroup =~ '{}'", group.replace('\'', "")),
        _ => String::new(),
    };
    format!(
        "resources | where type in~ ({}){group} | order by id asc",
        list.join(", ")
    )
}

/// What a listing page handed over, and where the next one is.
struct Listed {
    rows: Vec<Value>,
    total: Option<usize>,
    next: Option<String>,
}

/// Runs the sweep. `Err` only for what makes the whole sweep impossible (a bad request, no
/// listing at all); a resource that fails becomes an `error` finding and the sweep goes on.
pub async fn scan(
    context: &Context,
    request: &ScanRequest,
    progress: &(dyn Fn(&ScanProgress) + Send + Sync),
) -> Result<ScanReport, SweepError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + request.budget;
    let types = types_in(request)?;
    let key = checkpoint_key(request);
    let store = &context.store;
    let saved: Option<Checkpoint> = if request.resume {
        store.checkpoint(&key).await?
    } else {
        None
    };
    let resumed = saved.is_some();
    let mut checkpoint = saved.unwrap_or_default();
    let (requests_before, throttled_before) = context.arm.counters().snapshot();
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let trigger = Trigger::Sweep {
        scope: request.scope.path(),
    };
    let mut listing = checkpoint.listing.unwrap_or(request.listing);
    let mut findings = Vec::new();
    let mut keys = Vec::new();
    let mut pages = 0usize;
    let mut seen = BTreeSet::new();
    let mut state = ScanProgress {
        listed: checkpoint.listed,
        evaluated: checkpoint.evaluated,
        total: None,
    };
    // ARM's list of lists is known once the subscriptions are (a management group's are listed).
    let mut arm_lists: Option<Vec<String>> = None;
    // Set when Resource Graph said its quota is spent: the next query waits for the window.
    let mut quota_resets_at: Option<tokio::time::Instant> = None;
    let complete = loop {
        if let Some(at) = quota_resets_at.take() {
            if at >= deadline {
                break false;
            }
            tracing::info!(
                wait_ms = (at - tokio::time::Instant::now()).as_millis() as u64,
                "Resource Graph quota spent; waiting for its window"
            );
            tokio::time::sleep_until(at).await;
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        let ctx = page_context(&correlation_id, deadline, context.settings.time_budget);
        let page = match listing {
            Listing::Auto | Listing::ResourceGraph => {
                match graph_page(context, &request.scope, &types, checkpoint.skip_token.as_deref(), &ctx).await {
                    Ok((page, wait)) => {
                        listing = Listing::ResourceGraph;
                        quota_resets_at = wait.map(|w| tokio::time::Instant::now() + w);
                        page
                    }
                    // Out of time while waiting out throttling: stop here, resume later.
                    Err(ArmError::BudgetExhausted { .. })
                        if tokio::time::Instant::now() + Duration::from_secs(1) >= deadline =>
                    {
                        break false;
                    }
                    Err(e) if listing == Listing::Auto && checkpoint.skip_token.is_none() && !e.retryable() => {
                        tracing::warn!(error = %e, "Resource Graph did not answer; listing with ARM instead");
                        listing = Listing::Arm;
                        continue;
                    }
                    Err(ArmError::Rejected { status: 400, .. }) if checkpoint.skip_token.is_some() => {
                        // A skip token from an earlier run can expire: start the listing again.
                        tracing::warn!("the saved Resource Graph position expired; sweeping from the start");
                        checkpoint = Checkpoint::default();
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Listing::Arm => {
                if arm_lists.is_none() {
                    let subscriptions = subscriptions_in(context, &request.scope, deadline, &correlation_id).await?;
                    arm_lists = Some(arm_lists_for(&subscriptions, &types, &request.scope));
                }
                let Some(list) = arm_lists.as_ref().and_then(|l| l.get(checkpoint.arm_position)) else {
                    break true;
                };
                let target = checkpoint.next_link.clone().unwrap_or_else(|| list.clone());
                match arm_page(context, &target, &ctx).await {
                    Ok(page) => page,
                    Err(ArmError::BudgetExhausted { .. })
                        if tokio::time::Instant::now() + Duration::from_secs(1) >= deadline =>
                    {
                        break false;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        pages += 1;
        state.listed += page.rows.len();
        state.total = page.total.or(state.total);
        let next = page.next;
        let outcomes = evaluate_rows(
            context,
            page.rows,
            &trigger,
            &correlation_id,
            request.dry_run,
            &mut seen,
        )
        .await;
        state.evaluated += outcomes.len();
        for (finding, key) in outcomes {
            findings.push(finding);
            keys.extend(key);
        }
        progress(&state);
        // The position after this page, saved before the next page is asked for.
        match listing {
            Listing::Arm => match next {
                Some(next) => checkpoint.next_link = Some(next),
                None => {
                    checkpoint.next_link = None;
                    checkpoint.arm_position += 1;
                }
            },
            _ => checkpoint.skip_token = next,
        }
        checkpoint.listing = Some(listing);
        checkpoint.listed = state.listed;
        checkpoint.evaluated = state.evaluated;
        let done = match listing {
            Listing::Arm => checkpoint.arm_position >= arm_lists.as_ref().map_or(0, Vec::len),
            _ => checkpoint.skip_token.is_none(),
        };
        if done {
            break true;
        }
        store.set_checkpoint(&key, Some(&checkpoint)).await?;
    };
    let run = Run {
        key,
        resumed,
        started,
        requests_before,
        throttled_before,
        trigger,
        correlation_id,
        dry_run: request.dry_run,
        deadline,
    };
    let tally = Tally {
        listing,
        state,
        pages,
        findings,
        keys,
    };
    finish(context, &request.scope, run, complete, tally).await
}

/// What the sweep knew when it started.
struct Run {
    key: String,
    resumed: bool,
    started: Instant,
    requests_before: u64,
    throttled_before: u64,
    trigger: Trigger,
    correlation_id: String,
    dry_run: bool,
    deadline: tokio::time::Instant,
}

/// What it listed and found.
struct Tally {
    listing: Listing,
    state: ScanProgress,
    pages: usize,
    findings: Vec<Finding>,
    /// The customer-managed keys the swept resources use, for the usability watch.
    keys: Vec<KeySeen>,
}

async fn finish(
    context: &Context,
    scope: &ArmScope,
    run: Run,
    complete: bool,
    tally: Tally,
) -> Result<ScanReport, SweepError> {
    if complete {
        context.store.set_checkpoint::<Checkpoint>(&run.key, None).await?;
    }
    let call = page_context(&run.correlation_id, run.deadline, context.settings.time_budget);
    let keys = watch_keys(
        context,
        tally.keys,
        &run.trigger,
        &run.correlation_id,
        run.dry_run,
        &call,
    )
    .await;
    context.store.flush().await?;
    let (requests, throttled) = context.arm.counters().snapshot();
    Ok(ScanReport {
        scope: scope.path(),
        listing: tally.listing,
        complete,
        resume_token: (!complete).then_some(run.key),
        resumed: run.resumed,
        listed: tally.state.listed,
        evaluated: tally.state.evaluated,
        pages: tally.pages,
        requests: requests - run.requests_before,
        throttled: throttled - run.throttled_before,
        duration_ms: run.started.elapsed().as_millis() as u64,
        summary: keyguard_report::summarize(&tally.findings).overall,
        findings: tally.findings,
        keys,
    })
}

fn page_context(correlation_id: &str, deadline: tokio::time::Instant, call_budget: Duration) -> CallContext {
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    CallContext::new(correlation_id, remaining.min(call_budget.max(Duration::from_secs(30))))
}

/// Each listed row through the reconcile, a few at a time; a row listed twice (pages can overlap
/// when resources change mid-sweep) is evaluated once.
async fn evaluate_rows(
    context: &Context,
    rows: Vec<Value>,
    trigger: &Trigger,
    correlation_id: &str,
    dry_run: bool,
    seen: &mut BTreeSet<String>,
) -> Vec<(Finding, Option<KeySeen>)> {
    let mut work = Vec::new();
    for row in rows {
        let Some(id_text) = row["id"].as_str().map(str::to_string) else {
            // Resource Graph rows always carry an id; a row without one cannot be a finding.
            tracing::warn!(row = %row.to_string().chars().take(200).collect::<String>(), "listed row without an id skipped");
            continue;
        };
        if !seen.insert(id_text.to_ascii_lowercase()) {
            continue;
        }
        work.push((id_text, row));
    }
    futures_util::stream::iter(work)
        .map(|(id_text, row)| async move {
            let resource_type = row["type"].as_str().unwrap_or_default().to_string();
            let id = match ResourceId::parse(&id_text) {
                Ok(id) => id,
                Err(e) => {
                    return (
                        Finding::error(&id_text, &resource_type, &format!("listed id: {e}")),
                        None,
                    );
                }
            };
            let attempt = Attempt::new(trigger.clone(), correlation_id, dry_run).listed(Some(row));
            match reconcile::reconcile(context, &id, attempt).await {
                Ok(decision) => {
                    let key = KeySeen::of(&decision);
                    let finding = decision.finding.unwrap_or_else(|| {
                        let mut f = Finding::new(id.as_str(), &id.resource_type(), FindingVerdict::Unsupported);
                        f.result = Some(decision.outcome.result.to_string());
                        f.detail = decision.outcome.detail.clone();
                        f
                    });
                    (finding, key)
                }
                Err(e) => (Finding::error(id.as_str(), &id.resource_type(), &e.to_string()), None),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

async fn graph_page(
    context: &Context,
    scope: &ArmScope,
    types: &[&CatalogEntry],
    skip_token: Option<&str>,
    ctx: &CallContext,
) -> Result<(Listed, Option<Duration>), ArmError> {
    let mut options = json!({ "$top": PAGE_ROWS, "resultFormat": "objectArray" });
    if let Some(token) = skip_token {
        options["$skipToken"] = json!(token);
    }
    let mut body = json!({ "query": graph_query(types, scope), "options": options });
    match scope {
        ArmScope::Subscription { subscription } | ArmScope::ResourceGroup { subscription, .. } => {
            body["subscriptions"] = json!([subscription]);
        }
        ArmScope::ManagementGroup { name } => body["managementGroups"] = json!([name]),
    }
    let path = format!("{RESOURCE_GRAPH_PATH}?api-version={RESOURCE_GRAPH_API_VERSION}");
    let page = context.arm.post_page(&path, &body, ctx).await?;
    let wait = quota_wait(&page);
    let rows = page.body["data"].as_array().cloned().unwrap_or_default();
    let listed = Listed {
        rows,
        total: page.body["totalRecords"].as_u64().map(|n| n as usize),
        next: page.body["$skipToken"].as_str().map(str::to_string),
    };
    Ok((listed, wait))
}

/// Resource Graph says how many queries are left in its window and when it resets: when none are
/// left, the next query waits for the reset instead of earning a 429.
fn quota_wait(page: &Page) -> Option<Duration> {
    let header = |name: &str| page.headers.get(name).and_then(|v| v.to_str().ok());
    let remaining = header("x-ms-user-quota-remaining").and_then(|v| v.trim().parse::<u64>().ok());
    let resets = header("x-ms-user-quota-resets-after").and_then(parse_hms);
    match (remaining, resets) {
        // Whole seconds: add one so the window has really reset.
        (Some(0), Some(wait)) => Some(wait + Duration::from_millis(200)),
        _ => None,
    }
}

/// `hh:mm:ss` (Resource Graph's `x-ms-user-quota-resets-after`).
fn parse_hms(text: &str) -> Option<Duration> {
    let parts: Vec<u64> = text.trim().split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    match parts.as_slice() {
        [h, m, s] => Some(Duration::from_secs(h * 3600 + m * 60 + s)),
        _ => None,
    }
}

async fn arm_page(context: &Context, target: &str, ctx: &CallContext) -> Result<Listed, ArmError> {
    let page = context.arm.get_page(target, ctx).await?;
    Ok(Listed {
        rows: page.body["value"].as_array().cloned().unwrap_or_default(),
        total: None,
        next: page.body["nextLink"].as_str().map(str::to_string),
    })
}

/// The subscriptions an ARM-list sweep covers (a management group's, listed through ARM).
async fn subscriptions_in(
    context: &Context,
    scope: &ArmScope,
    deadline: tokio::time::Instant,
    correlation_id: &str,
) -> Result<Vec<String>, SweepError> {
    match scope {
        ArmScope::Subscription { subscription } | ArmScope::ResourceGroup { subscription, .. } => {
            Ok(vec![subscription.clone()])
        }
        ArmScope::ManagementGroup { name } => {
            let mut subscriptions = Vec::new();
            let mut next = Some(format!(
                "/providers/Microsoft.Management/managementGroups/{name}/descendants?api-version={MANAGEMENT_GROUPS_API_VERSION}"
            ));
            while let Some(target) = next {
                let ctx = page_context(correlation_id, deadline, context.settings.time_budget);
                let page = arm_page(context, &target, &ctx).await?;
                subscriptions.extend(
                    page.rows
                        .iter()
                        .filter(|r| {
                            r["type"]
                                .as_str()
                                .is_some_and(|t| t.to_ascii_lowercase().ends_with("/subscriptions"))
                        })
                        .filter_map(|r| r["name"].as_str().map(str::to_string)),
                );
                next = page.next;
            }
            Ok(subscriptions)
        }
    }
}

/// One ARM list URL per (subscription, top-level type). Child types (SQL databases) are not
/// listable at subscription level; a Resource Graph sweep covers them.
fn arm_lists_for(subscriptions: &[String], types: &[&CatalogEntry], scope: &ArmScope) -> Vec<String> {
    let mut lists = Vec::new();
    for subscription in subscriptions {
        for entry in types {
            if entry.resource_type.matches('/').count() != 1 {
                continue;
            }
            let group = match scope {
                ArmScope::ResourceGroup { group, .. } => format!("/resourceGroups/{group}"),
                _ => String::new(),
            };
            lists.push(format!(
                "/subscriptions/{subscription}{group}/providers/{}?api-version={}",
                entry.resource_type, entry.api_version
            ));
        }
    }
    lists
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The request names a type the catalog does not have.
    #[error("{0} is not a catalog type (see `keyguard catalog`)")]
    UnknownType(String),
    #[error(transparent)]
    Arm(#[from] ArmError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
}

impl SweepError {
    pub fn retryable(&self) -> bool {
        match self {
            SweepError::UnknownType(_) => false,
            SweepError::Arm(e) => e.retryable(),
            SweepError::Store(e) => e.retryable(),
            SweepError::Reconcile(e) => e.retryable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_query_names_every_type_and_the_group() {
        let types: Vec<&CatalogEntry> = catalog::entries().iter().collect();
        let q = graph_query(
            &types,
            &ArmScope::ResourceGroup {
                subscription: "s".into(),
                group: "rg".into(),
            },
        );
        assert!(
            q.starts_with("resources | where type in~ ('microsoft.storage/storageaccounts'"),
            "{q}"
        );
        assert_eq!(q.matches("', '").count() + 1, types.len());
        assert!(q.ends_with(" and resourceGroup =~ 'rg' | order by id asc"), "{q}");
    }

    #[test]
    fn quota_reset_times_parse() {
        assert_eq!(parse_hms("00:00:03"), Some(Duration::from_secs(3)));
        assert_eq!(parse_hms("01:02:03"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_hms("soon"), None);
    }

    #[test]
    fn arm_lists_cover_top_level_types_per_subscription() {
        let types: Vec<&CatalogEntry> = ["Microsoft.Storage/storageAccounts", "Microsoft.Sql/servers/databases"]
            .iter()
            .filter_map(|t| catalog::lookup(t))
            .collect();
        let lists = arm_lists_for(
            &["s1".into(), "s2".into()],
            &types,
            &ArmScope::Subscription {
                subscription: "s1".into(),
            },
        );
        assert_eq!(lists.len(), 2, "{lists:?}");
        assert!(lists[0].starts_with("/subscriptions/s1/providers/Microsoft.Storage/storageAccounts?api-version="));
    }
}
