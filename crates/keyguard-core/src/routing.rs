//! Which channels hear about a finding, and whether it is sent now or folded into the next one.
//!
//! Routing is policy like profiles are: it lives in the same reviewed TOML file (see
//! [`Config`](crate::config::Config)) and is decided here from facts the handler gathers, so a
//! routing table can be tested without a mail server. The file names channels and the
//! environment variables holding their secrets, never the secrets themselves, because the file is
//! read by people who should not be able to post to the security channel.

use serde::Serialize;
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

use crate::config::{Config, Scope};
use crate::resource_id::ResourceId;

/// Outcome names in the kebab-case keyguard-notify serialises, so a rule reads like the webhook
/// payload its consumers already know.
pub const OUTCOMES: [&str; 10] = [
    "reverted",
    "revert-failed",
    "manual-action-needed",
    "alert-only",
    "dry-run-would-revert",
    "rate-limited",
    "exempt",
    "safeguard-changed",
    "key-changed",
    "key-unusable",
];

/// Longest suppression window accepted: a day. Anything longer hides a resource that keeps
/// drifting for so long that the folded count stops meaning anything.
pub const MAX_SUPPRESS_MINUTES: u32 = 1440;

/// Owner tags are written by whoever can write the resource, which is the same person who can
/// cause drift; a cap keeps one tag from turning an alert into a mass mailing.
pub const MAX_OWNER_RECIPIENTS: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteKind {
    /// Teams workflow (Power Automate) webhook, Adaptive Card.
    Teams,
    /// Retired-but-still-running Office 365 connector webhook, MessageCard.
    TeamsLegacy,
    Email,
    /// Signed JSON for a SIEM or ticketing system.
    Webhook,
}

impl RouteKind {
    pub const ALL: [RouteKind; 4] = [
        RouteKind::Teams,
        RouteKind::TeamsLegacy,
        RouteKind::Email,
        RouteKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Teams => "teams",
            RouteKind::TeamsLegacy => "teams-legacy",
            RouteKind::Email => "email",
            RouteKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<RouteKind> {
        RouteKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One named channel. Secret-bearing settings are names of environment variables (app settings,
/// possibly Key Vault references) that the handler resolves at start-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub name: String,
    pub kind: RouteKind,
    /// Teams, Teams legacy and webhook: the variable holding the URL (URLs carry signatures).
    pub url_env: Option<String>,
    /// Webhook: the variable holding the HMAC signing key.
    pub hmac_key_env: Option<String>,
    /// Email: the variable holding `smtp[s]://user:pass@host:port`.
    pub smtp_env: Option<String>,
    /// Email: sender address; `None` leaves the choice to the handler.
    pub from: Option<String>,
    /// Email: fixed recipients. Addresses are not secrets, so they live in the file.
    pub to: Vec<String>,
}

impl Route {
    pub fn is_email(&self) -> bool {
        self.kind == RouteKind::Email
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertSettings {
    /// Routes for alerts no rule claims, so a new outcome or resource type is never silent by
    /// omission. Empty: such alerts stay log records.
    pub default_routes: Vec<String>,
    /// Resource tags that may hold the owner's address; the first one present wins, so teams can
    /// migrate from one tag name to another by listing both.
    pub owner_tags: Vec<String>,
    /// Repeats of the same resource and outcome inside this window are counted into the next
    /// alert instead of each paging someone. 0 sends every alert.
    pub suppress_minutes: u32,
    /// Collect alerts and send one message per route every `digest_minutes`, for teams that
    /// prefer a summary to a page per change.
    pub digest: bool,
    /// The digest window (1-1440 minutes), aligned to the clock so every instance agrees on it.
    pub digest_minutes: u32,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            default_routes: Vec::new(),
            owner_tags: Vec::new(),
            suppress_minutes: 30,
            digest: false,
            digest_minutes: 60,
        }
    }
}

/// Largest digest window: a day.
pub const MAX_DIGEST_MINUTES: u32 = 1440;

/// How urgently a person should look. Ordered, so rules can say "this bad or worse".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    Info,
    Warning,
    High,
    /// Data is about to become unreadable (a key resources depend on cannot be used).
    Critical,
}

impl AlertSeverity {
    pub const ALL: [AlertSeverity; 4] = [
        AlertSeverity::Info,
        AlertSeverity::Warning,
        AlertSeverity::High,
        AlertSeverity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::High => "high",
            AlertSeverity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<AlertSeverity> {
        AlertSeverity::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Drift that is still in place is high; drift that was (or would have been) undone is a
    /// warning, since someone still made the change; an exempt resource is informational. A
    /// weakened safeguard (exemption tag, retag) is high: it is how keyguard would be silenced.
    /// An outcome this crate does not know is treated as the worst case rather than dropped.
    pub fn for_outcome(outcome: &str) -> AlertSeverity {
        match outcome.trim().to_ascii_lowercase().as_str() {
            // Someone changed something that may be legitimate: a person confirms it.
            "reverted" | "dry-run-would-revert" | "key-changed" => AlertSeverity::Warning,
            "exempt" => AlertSeverity::Info,
            "safeguard-changed" => AlertSeverity::High,
            "key-unusable" => AlertSeverity::Critical,
            _ => AlertSeverity::High,
        }
    }
}

/// One `[[alert_rule]]`. Every non-empty filter must match; empty filters do not constrain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertRule {
    /// Route names. Empty only together with `stop`: an explicit "nobody is told".
    pub routes: Vec<String>,
    pub min_severity: AlertSeverity,
    /// ARM types, compared case-insensitively.
    pub resource_types: Vec<String>,
    /// Kebab-case outcome names, see [`OUTCOMES`].
    pub outcomes: Vec<String>,
    pub scope: Scope,
    /// Later rules are not consulted once this one matched.
    pub stop: bool,
}

impl AlertRule {
    pub fn matches(&self, facts: &AlertFacts<'_>) -> bool {
        if facts.severity < self.min_severity {
            return false;
        }
        if !self.outcomes.is_empty()
            && !self
                .outcomes
                .iter()
                .any(|o| o.eq_ignore_ascii_case(facts.outcome.trim()))
        {
            return false;
        }
        if !self.resource_types.is_empty() {
            let ty = facts.resource_id.resource_type();
            if !self.resource_types.iter().any(|t| t.trim().eq_ignore_ascii_case(&ty)) {
                return false;
            }
        }
        self.scope.matches(facts.resource_id, facts.tags)
    }
}

/// What routing needs to know about one alert.
#[derive(Clone, Copy, Debug)]
pub struct AlertFacts<'a> {
    pub resource_id: &'a ResourceId,
    pub tags: &'a Map<String, Value>,
    /// Kebab-case, as keyguard-notify serialises its `Outcome`.
    pub outcome: &'a str,
    pub severity: AlertSeverity,
}

/// Send this alert on `route`. For email routes, `extra_recipients` are the resource owner's
/// addresses from its tags, not already among the route's own recipients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub route: String,
    pub extra_recipients: Vec<String>,
}

impl Config {
    /// Rules are consulted in file order so the file reads top to bottom like a firewall table;
    /// every matching rule adds its routes (once each) until one says `stop`. When no rule
    /// matched, the default routes apply. Routes not defined in `self.routes` are skipped: the
    /// loader rejects them, but a `Config` built in code must not make the handler look up a
    /// channel that does not exist.
    pub fn route_alert(&self, facts: &AlertFacts<'_>) -> Vec<Delivery> {
        let mut chosen: Vec<&str> = Vec::new();
        let mut matched = false;
        for rule in &self.alert_rules {
            if !rule.matches(facts) {
                continue;
            }
            matched = true;
            for r in &rule.routes {
                if !chosen.contains(&r.as_str()) {
                    chosen.push(r);
                }
            }
            if rule.stop {
                break;
            }
        }
        if !matched {
            for r in &self.alerts.default_routes {
                if !chosen.contains(&r.as_str()) {
                    chosen.push(r);
                }
            }
        }
        let owners = owner_addresses(facts.tags, &self.alerts.owner_tags);
        chosen
            .into_iter()
            .filter_map(|name| self.routes.get(name))
            .map(|route| Delivery {
                route: route.name.clone(),
                extra_recipients: if route.is_email() {
                    owners
                        .iter()
                        .filter(|o| !route.to.iter().any(|t| t.trim().eq_ignore_ascii_case(o)))
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }
}

/// The owner addresses in the first of `owner_tags` the resource carries (tag names are
/// case-insensitive in ARM). Implausible entries are dropped rather than failing the alert: the
/// route's own recipients must still hear about the drift.
pub fn owner_addresses(tags: &Map<String, Value>, owner_tags: &[String]) -> Vec<String> {
    let value = owner_tags.iter().find_map(|name| {
        tags.get(name.as_str())
            .or_else(|| tags.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
    });
    let Some(Value::String(value)) = value else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for part in value.split([',', ';']) {
        let addr = part.trim();
        if out.len() >= MAX_OWNER_RECIPIENTS {
            break;
        }
        if is_plausible_email(addr) && !out.iter().any(|o| o.eq_ignore_ascii_case(addr)) {
            out.push(addr.to_string());
        }
    }
    out
}

/// A deliberately narrow check: a bare `local@domain.tld` with no display name, quoting,
/// comments or whitespace. Tag values are attacker-influenced and end up in SMTP envelopes and
/// headers, so anything exotic is refused rather than escaped.
pub fn is_plausible_email(s: &str) -> bool {
    if s.len() > 254 {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// Names App Service accepts as app settings and every shell accepts as variables.
pub fn is_valid_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "camelCase")]
pub enum SuppressDecision {
    /// Alert now, saying how many repeats were folded since the last one.
    #[serde(rename_all = "camelCase")]
    Send { repeats_folded: u32 },
    /// Count this one into the next alert instead.
    Fold,
}

/// Whether an alert for a resource and outcome goes out now, given when the last one for the
/// same pair went out (`last_sent`) and how many were folded since. The window is half-open:
/// an alert exactly `window_minutes` after the last one is sent.
///
/// A `last_sent` further in the future than the window itself can only be corrupt state or a
/// badly wrong clock; it sends, because silence is the failure that matters here.
pub fn suppress(
    last_sent: Option<OffsetDateTime>,
    folded_since: u32,
    now: OffsetDateTime,
    window_minutes: u32,
) -> SuppressDecision {
    let send = SuppressDecision::Send {
        repeats_folded: folded_since,
    };
    let Some(last) = last_sent else {
        return send;
    };
    if window_minutes == 0 {
        return send;
    }
    let window = Duration::minutes(i64::from(window_minutes));
    let elapsed = now - last;
    if elapsed < window && elapsed > -window {
        SuppressDecision::Fold
    } else {
        send
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const SQL: &str = "/subscriptions/sub-1/resourceGroups/rg-db-main/providers/Microsoft.Sql/servers/sql1";
    const SQLDB: &str =
        "/subscriptions/sub-1/resourceGroups/rg-db-main/providers/Microsoft.Sql/servers/sql1/databases/db1";
    const ST: &str = "/subscriptions/sub-1/resourceGroups/rg-web/providers/Microsoft.Storage/storageAccounts/st1";
    const ST_OTHER_SUB: &str =
        "/subscriptions/sub-2/resourceGroups/rg-db-x/providers/Microsoft.Storage/storageAccounts/st2";

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    fn tags(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    const ROUTES: &str = r#"
[routes.secops]
kind = "teams"
url_env = "KEYGUARD_TEAMS_SECOPS_URL"

[routes.legacy]
kind = "teams-legacy"
url_env = "KEYGUARD_TEAMS_LEGACY_URL"

[routes.dba]
kind = "email"
to = ["dba@contoso.example", "Owner@Contoso.example"]
smtp_env = "KEYGUARD_SMTP"
from = "keyguard@contoso.example"

[routes.ops-mail]
kind = "email"
to = ["ops@contoso.example"]
smtp_env = "KEYGUARD_SMTP"

[routes.siem]
kind = "webhook"
url_env = "KEYGUARD_SIEM_URL"
hmac_key_env = "KEYGUARD_SIEM_KEY"
"#;

    fn config(rest: &str) -> Config {
        Config::from_toml_str(&format!("{ROUTES}\n{rest}"), "routing.toml").unwrap()
    }

    fn table() -> Config {
        config(
            r#"
[alerts]
default_routes = ["secops"]
owner_tags = ["keyguard-contact", "owner"]

# The SIEM hears everything and later rules still apply.
[[alert_rule]]
routes = ["siem"]

# Databases that are still drifted go to the DBAs, and stop there.
[[alert_rule]]
routes = ["dba", "siem"]
min_severity = "warning"
resource_types = ["Microsoft.Sql/servers", "Microsoft.Sql/servers/databases"]
outcomes = ["revert-failed", "manual-action-needed", "rate-limited"]
stop = true

# Production (by tag) in the db resource groups of sub-1, high only.
[[alert_rule]]
routes = ["ops-mail", "secops"]
min_severity = "high"
scope = { subscriptions = ["sub-1"], resource_groups = ["rg-db-*"], tags = { env = "prod" } }

# Exempt resources: nobody is paged.
[[alert_rule]]
routes = []
outcomes = ["exempt"]
stop = true

[[alert_rule]]
routes = ["legacy"]
"#,
        )
    }

    fn route(c: &Config, rid: &str, t: Value, outcome: &str) -> Vec<(String, Vec<String>)> {
        let rid = id(rid);
        let t = tags(t);
        let facts = AlertFacts {
            resource_id: &rid,
            tags: &t,
            outcome,
            severity: AlertSeverity::for_outcome(outcome),
        };
        c.route_alert(&facts)
            .into_iter()
            .map(|d| (d.route, d.extra_recipients))
            .collect()
    }

    fn names(v: &[(String, Vec<String>)]) -> Vec<&str> {
        v.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn severity_for_every_outcome() {
        let expected = [
            ("reverted", AlertSeverity::Warning),
            ("revert-failed", AlertSeverity::High),
            ("manual-action-needed", AlertSeverity::High),
            ("alert-only", AlertSeverity::High),
            ("dry-run-would-revert", AlertSeverity::Warning),
            ("rate-limited", AlertSeverity::High),
            ("exempt", AlertSeverity::Info),
            ("safeguard-changed", AlertSeverity::High),
            ("key-changed", AlertSeverity::Warning),
            ("key-unusable", AlertSeverity::Critical),
            ("something-new", AlertSeverity::High),
            ("", AlertSeverity::High),
        ];
        for (o, s) in expected {
            assert_eq!(AlertSeverity::for_outcome(o), s, "{o}");
        }
        assert_eq!(AlertSeverity::for_outcome("Reverted"), AlertSeverity::Warning);
        assert!(AlertSeverity::Info < AlertSeverity::Warning && AlertSeverity::Warning < AlertSeverity::High);
    }

    #[test]
    fn rules_apply_in_order_and_stop_ends_the_walk() {
        let c = table();
        // Rule 1 (siem) + rule 2 (dba, siem deduped) then stop: legacy (rule 5) is not reached.
        let r = route(&c, SQL, json!({"env": "prod"}), "revert-failed");
        assert_eq!(names(&r), ["siem", "dba"]);
        // Database child type is listed too.
        let r = route(&c, SQLDB, json!({}), "manual-action-needed");
        assert_eq!(names(&r), ["siem", "dba"]);
        // Rule 2's outcome filter excludes "reverted"; severity warning fails rule 3 (high);
        // rule 4 is for exempt; rule 5 adds legacy.
        let r = route(&c, SQL, json!({"env": "prod"}), "reverted");
        assert_eq!(names(&r), ["siem", "legacy"]);
        // alert-only is high: rule 3 matches by scope (sub-1, rg-db-*, env=prod).
        let r = route(&c, SQL, json!({"ENV": "Prod"}), "alert-only");
        assert_eq!(names(&r), ["siem", "ops-mail", "secops", "legacy"]);
    }

    #[test]
    fn scope_filters_like_profiles() {
        let c = table();
        // Wrong tag value, wrong resource group, wrong subscription: rule 3 does not match.
        assert_eq!(
            names(&route(&c, SQL, json!({"env": "dev"}), "alert-only")),
            ["siem", "legacy"]
        );
        assert_eq!(
            names(&route(&c, ST, json!({"env": "prod"}), "alert-only")),
            ["siem", "legacy"]
        );
        assert_eq!(
            names(&route(&c, ST_OTHER_SUB, json!({"env": "prod"}), "alert-only")),
            ["siem", "legacy"]
        );
        // Resource type filter: storage never reaches the DBAs.
        assert_eq!(names(&route(&c, ST, json!({}), "revert-failed")), ["siem", "legacy"]);
    }

    #[test]
    fn severity_filter_uses_the_facts_not_the_outcome() {
        let c = table();
        let rid = id(SQL);
        let t = tags(json!({"env": "prod"}));
        let mut facts = AlertFacts {
            resource_id: &rid,
            tags: &t,
            outcome: "alert-only",
            severity: AlertSeverity::Warning,
        };
        let n = |f: &AlertFacts| c.route_alert(f).into_iter().map(|d| d.route).collect::<Vec<_>>();
        assert_eq!(n(&facts), ["siem", "legacy"]);
        facts.severity = AlertSeverity::High;
        assert_eq!(n(&facts), ["siem", "ops-mail", "secops", "legacy"]);
        // min_severity = warning on rule 2: an info-level revert-failed does not reach the DBAs.
        facts.outcome = "revert-failed";
        facts.severity = AlertSeverity::Info;
        assert_eq!(n(&facts), ["siem", "legacy"]);
    }

    #[test]
    fn an_explicit_empty_stop_rule_silences_later_rules_but_not_earlier_ones() {
        let c = table();
        assert_eq!(names(&route(&c, ST, json!({}), "exempt")), ["siem"]);
    }

    #[test]
    fn default_routes_only_when_no_rule_matched() {
        let c = config(
            r#"
[alerts]
default_routes = ["secops", "siem", "secops"]

[[alert_rule]]
routes = ["dba"]
resource_types = ["Microsoft.Sql/servers"]
"#,
        );
        assert_eq!(names(&route(&c, ST, json!({}), "reverted")), ["secops", "siem"]);
        assert_eq!(names(&route(&c, SQL, json!({}), "reverted")), ["dba"]);
        // No routing at all: no deliveries, alerts stay log records.
        let none = Config::builtin_default();
        assert!(route(&none, ST, json!({}), "revert-failed").is_empty());
        let no_defaults = config("");
        assert!(route(&no_defaults, ST, json!({}), "revert-failed").is_empty());
    }

    #[test]
    fn owner_tags_go_to_email_routes_only() {
        let c = table();
        let t = json!({"Owner": "alice@contoso.example; not-an-address, bob@contoso.example,owner@contoso.EXAMPLE"});
        let r = route(&c, SQL, t, "revert-failed");
        assert_eq!(
            r,
            vec![
                ("siem".to_string(), vec![]),
                (
                    "dba".to_string(),
                    // owner@contoso.example is already a fixed recipient of dba.
                    vec!["alice@contoso.example".to_string(), "bob@contoso.example".to_string()]
                ),
            ]
        );
        let r = route(
            &c,
            SQL,
            json!({"env": "prod", "owner": "carol@contoso.example"}),
            "alert-only",
        );
        for (name, extra) in &r {
            if name == "ops-mail" {
                assert_eq!(extra, &["carol@contoso.example".to_string()]);
            } else {
                assert!(extra.is_empty(), "{name}: {extra:?}");
            }
        }
    }

    #[test]
    fn first_owner_tag_present_wins_and_junk_is_ignored() {
        let owner_tags = ["keyguard-contact".to_string(), "owner".to_string()];
        let t = tags(json!({"owner": "b@x.example", "KEYGUARD-CONTACT": "a@x.example"}));
        assert_eq!(owner_addresses(&t, &owner_tags), ["a@x.example"]);
        let t = tags(json!({"owner": "b@x.example"}));
        assert_eq!(owner_addresses(&t, &owner_tags), ["b@x.example"]);
        // First present tag is used even when it holds nothing usable.
        let t = tags(json!({"keyguard-contact": "the DBA team", "owner": "b@x.example"}));
        assert!(owner_addresses(&t, &owner_tags).is_empty());
        let t = tags(json!({"keyguard-contact": 7}));
        assert!(owner_addresses(&t, &owner_tags).is_empty());
        assert!(owner_addresses(&tags(json!({"owner": "a@x.example"})), &[]).is_empty());
        let many = (0..20).map(|i| format!("u{i}@x.example")).collect::<Vec<_>>().join(",");
        let got = owner_addresses(&tags(json!({ "owner": many })), &owner_tags);
        assert_eq!(got.len(), MAX_OWNER_RECIPIENTS);
        let t = tags(json!({"owner": "A@x.example, a@X.example"}));
        assert_eq!(owner_addresses(&t, &owner_tags), ["A@x.example"]);
    }

    #[test]
    fn plausible_addresses() {
        for ok in ["a@b.example", "first.last+tag@sub.contoso.com", "o'neil@x.io"] {
            assert!(is_plausible_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@b.example",
            "a@",
            "a@b",
            "a@b.c",
            "a@@b.example",
            "a b@c.example",
            "Alice <a@b.example>",
            "a@b.example\r\nBcc: x@y.example",
            ".a@b.example",
            "a..b@c.example",
            "a@-b.example",
            "a@b..example",
            "a@b.123",
            "\"a\"@b.example",
        ] {
            assert!(!is_plausible_email(bad), "{bad:?}");
        }
        assert!(!is_plausible_email(&format!("{}@b.example", "a".repeat(65))));
    }

    #[test]
    fn env_names() {
        for ok in ["A", "_", "KEYGUARD_SMTP", "a1_b2"] {
            assert!(is_valid_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A.B", "$A", "Ä"] {
            assert!(!is_valid_env_name(bad), "{bad}");
        }
    }

    #[test]
    fn suppression_window_boundaries() {
        let t0 = datetime!(2026-05-01 12:00 UTC);
        let m = |n: i64| t0 + Duration::minutes(n);
        assert_eq!(suppress(None, 0, t0, 30), SuppressDecision::Send { repeats_folded: 0 });
        assert_eq!(suppress(None, 4, t0, 30), SuppressDecision::Send { repeats_folded: 4 });
        assert_eq!(suppress(Some(t0), 0, t0, 30), SuppressDecision::Fold);
        assert_eq!(suppress(Some(t0), 3, m(29), 30), SuppressDecision::Fold);
        assert_eq!(
            suppress(Some(t0), 3, m(30) - Duration::nanoseconds(1), 30),
            SuppressDecision::Fold
        );
        assert_eq!(
            suppress(Some(t0), 3, m(30), 30),
            SuppressDecision::Send { repeats_folded: 3 }
        );
        assert_eq!(
            suppress(Some(t0), 3, m(600), 30),
            SuppressDecision::Send { repeats_folded: 3 }
        );
        assert_eq!(
            suppress(Some(t0), u32::MAX, m(30), 30),
            SuppressDecision::Send {
                repeats_folded: u32::MAX
            }
        );
        assert_eq!(
            suppress(Some(t0), 0, m(1440 - 1), MAX_SUPPRESS_MINUTES),
            SuppressDecision::Fold
        );
    }

    #[test]
    fn window_zero_never_suppresses() {
        let t0 = datetime!(2026-05-01 12:00 UTC);
        assert_eq!(
            suppress(Some(t0), 0, t0, 0),
            SuppressDecision::Send { repeats_folded: 0 }
        );
        assert_eq!(
            suppress(Some(t0), 2, t0, 0),
            SuppressDecision::Send { repeats_folded: 2 }
        );
    }

    #[test]
    fn last_sent_in_the_future() {
        let t0 = datetime!(2026-05-01 12:00 UTC);
        // Small skew between instances: still inside the window.
        assert_eq!(
            suppress(Some(t0 + Duration::minutes(2)), 1, t0, 30),
            SuppressDecision::Fold
        );
        // Far in the future: corrupt state, send rather than stay silent.
        assert_eq!(
            suppress(Some(t0 + Duration::days(3)), 1, t0, 30),
            SuppressDecision::Send { repeats_folded: 1 }
        );
    }

    #[test]
    fn serialises_for_validate_output() {
        let c = table();
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["routes"]["legacy"]["kind"], "teams-legacy");
        assert_eq!(v["routes"]["dba"]["smtp_env"], "KEYGUARD_SMTP");
        assert_eq!(v["alert_rules"][1]["min_severity"], "warning");
        assert_eq!(v["alerts"]["suppress_minutes"], 30);
        assert_eq!(
            serde_json::to_value(SuppressDecision::Send { repeats_folded: 2 }).unwrap(),
            json!({"decision": "send", "repeatsFolded": 2})
        );
    }
}
