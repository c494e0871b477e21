//! Profiles, exemptions and settings, read from TOML.
//!
//! The config is policy that security people read and review, so it is validated completely at
//! start-up and every problem is reported with the line and column it comes from: a remediator
//! that silently ignores a misspelt key or a bad glob would enforce something nobody wrote.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};
use toml::Spanned;

use crate::catalog::{self, KeyRef};
use crate::keyref::{KeyRefError, VaultHost};
use crate::resource_id::ResourceId;
use crate::routing::{
    AlertRule, AlertSettings, AlertSeverity, MAX_DIGEST_MINUTES, MAX_SUPPRESS_MINUTES, OUTCOMES, Route, RouteKind,
    is_plausible_email, is_valid_env_name,
};

/// Resource tag that exempts a resource until a date (`2027-01-31`) or instant (RFC 3339).
pub const TAG_EXEMPT_UNTIL: &str = "keyguard-exempt-until";
/// Optional resource tag saying why.
pub const TAG_EXEMPT_REASON: &str = "keyguard-exempt-reason";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    /// Customer-managed key (CIS level 2).
    Cmk,
    /// Microsoft-managed key (for resources where a CMK is unwanted, e.g. cost or availability).
    Mmk,
    /// Either, as long as the data is encrypted at rest (CIS level 1).
    Encrypted,
}

impl Requirement {
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Cmk => "cmk",
            Requirement::Mmk => "mmk",
            Requirement::Encrypted => "encrypted",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Record findings only.
    Audit,
    /// Record and notify people.
    Alert,
    /// Record, notify, and revert where the catalog says that is safe.
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Audit => "audit",
            Mode::Alert => "alert",
            Mode::Enforce => "enforce",
        }
    }
}

/// Which resources a profile covers. Empty lists do not constrain; all non-empty parts must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// Subscription ids, compared case-insensitively.
    pub subscriptions: Vec<String>,
    /// Resource group name globs, case-insensitive, e.g. `rg-prod-*`.
    pub resource_groups: Vec<String>,
    /// Tags the resource must carry. Names are case-insensitive (as in ARM); values are compared
    /// case-insensitively, and `*` means "any value".
    pub tags: BTreeMap<String, String>,
    /// Resource types, e.g. `Microsoft.Storage/storageAccounts`, case-insensitive.
    pub resource_types: Vec<String>,
}

impl Scope {
    pub fn matches(&self, id: &ResourceId, tags: &Map<String, Value>) -> bool {
        let subs_ok = self.subscriptions.is_empty()
            || self
                .subscriptions
                .iter()
                .any(|s| s.trim().eq_ignore_ascii_case(id.subscription()));
        let rg_ok = self.resource_groups.is_empty()
            || self
                .resource_groups
                .iter()
                .any(|g| glob_matches(g, id.resource_group(), false));
        let types_ok = self.resource_types.is_empty() || {
            let ty = id.resource_type();
            self.resource_types.iter().any(|t| t.trim().eq_ignore_ascii_case(&ty))
        };
        let tags_ok = self.tags.iter().all(|(name, wanted)| {
            tag_value(tags, name).is_some_and(|have| wanted == "*" || have.eq_ignore_ascii_case(wanted))
        });
        subs_ok && rg_ok && types_ok && tags_ok
    }

    /// How specific the scope is, so the narrowest matching profile wins: a resource group
    /// selector says more than a tag, a tag more than a subscription; the type breaks ties.
    pub fn specificity(&self) -> u32 {
        let mut score = 0;
        if !self.resource_groups.is_empty() {
            score += 4;
        }
        if !self.tags.is_empty() {
            score += 2;
        }
        if !self.subscriptions.is_empty() {
            score += 1;
        }
        if !self.resource_types.is_empty() {
            score += 1;
        }
        score
    }
}

/// Tag lookup with ARM's case-insensitive tag names; only string values count.
pub(crate) fn tag_value<'a>(tags: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    tags.get(name)
        .or_else(|| tags.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .and_then(Value::as_str)
}

fn build_glob(pattern: &str, literal_separator: bool) -> Result<globset::GlobMatcher, globset::Error> {
    globset::GlobBuilder::new(pattern.trim())
        .case_insensitive(true)
        .literal_separator(literal_separator)
        .backslash_escape(false)
        .build()
        .map(|g| g.compile_matcher())
}

/// Patterns are validated when the config is loaded; one built in code that does not compile
/// matches nothing rather than everything. Compiled matchers are kept: a glob compiles to a
/// regex, far dearer than the match, and a sweep matches the same few patterns thousands of times.
fn glob_matches(pattern: &str, candidate: &str, literal_separator: bool) -> bool {
    if !has_glob_meta(pattern) {
        return pattern.trim().eq_ignore_ascii_case(candidate);
    }
    type Compiled = std::collections::HashMap<(String, bool), Option<globset::GlobMatcher>>;
    static COMPILED: std::sync::OnceLock<std::sync::Mutex<Compiled>> = std::sync::OnceLock::new();
    let compiled = COMPILED.get_or_init(Default::default);
    let key = (pattern.to_string(), literal_separator);
    let matcher = {
        let cache = compiled.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&key).cloned()
    };
    let matcher = match matcher {
        Some(m) => m,
        None => {
            let built = build_glob(pattern, literal_separator).ok();
            let mut cache = compiled.lock().unwrap_or_else(|p| p.into_inner());
            // Patterns come from configuration: few. Bound it anyway against a generated flood.
            if cache.len() > 4096 {
                cache.clear();
            }
            cache.insert(key, built.clone());
            built
        }
    };
    matcher.is_some_and(|m| m.is_match(candidate))
}

/// `{` and `}` are deliberately not glob syntax here: ids in Microsoft's examples use
/// `{placeholders}` literally.
fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub name: String,
    pub require: Requirement,
    pub mode: Mode,
    /// Normalised vault hosts (`kv-prod.vault.azure.net`). Empty: any vault is acceptable.
    pub allowed_vaults: Vec<String>,
    /// The key to revert to; preferred over the last known-good key.
    pub pinned_key: Option<KeyRef>,
    /// Let `enforce` make switches that cannot be undone on an existing resource (Batch back to
    /// Microsoft-managed keys) or that disrupt the service (Redis Enterprise maintenance).
    /// Off by default: such drift only alerts.
    pub allow_irreversible: bool,
    pub scope: Scope,
}

impl Profile {
    /// Whether a CMK from this key's vault satisfies the profile.
    pub fn allows_vault(&self, key: &KeyRef) -> bool {
        vault_allowed(&self.allowed_vaults, key)
    }
}

/// `allowed` holds vault URIs or hosts; compared by normalised host.
pub fn vault_allowed(allowed: &[String], key: &KeyRef) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(host) = key.vault_host() else {
        return false;
    };
    allowed
        .iter()
        .any(|a| VaultHost::parse(a).is_ok_and(|allowed| allowed.as_str() == host))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exemption {
    /// An exact resource id, or a glob over ids (`*` stays within one segment, `**` crosses them).
    pub resource: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires: Option<OffsetDateTime>,
}

impl Exemption {
    pub fn matches(&self, id: &ResourceId) -> bool {
        if has_glob_meta(&self.resource) {
            glob_matches(&self.resource, id.as_str(), true)
        } else {
            match ResourceId::parse(self.resource.trim()) {
                Ok(mine) => mine.same_resource(id),
                Err(_) => false,
            }
        }
    }

    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.expires.is_none_or(|e| now <= e)
    }

    /// Active but ending within `days`: worth a reminder.
    pub fn expires_within(&self, now: OffsetDateTime, days: u32) -> bool {
        self.expires
            .is_some_and(|e| now <= e && e - now <= time::Duration::days(i64::from(days)))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ExemptionSource {
    Config,
    Tag,
}

/// Whether a resource is exempt, and why (or why not), for the verdict and the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum ExemptionStatus {
    None,
    #[serde(rename_all = "camelCase")]
    Active {
        source: ExemptionSource,
        reason: String,
        #[serde(with = "time::serde::rfc3339::option")]
        expires: Option<OffsetDateTime>,
    },
    #[serde(rename_all = "camelCase")]
    Expired {
        source: ExemptionSource,
        reason: String,
        #[serde(with = "time::serde::rfc3339")]
        expired_at: OffsetDateTime,
    },
    /// An exemption tag that cannot be honoured (unparsable date, reason without a date). Not
    /// exempt: a typo must not switch protection off.
    #[serde(rename_all = "camelCase")]
    Invalid {
        source: ExemptionSource,
        value: String,
        problem: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// Plan reverts but never send them.
    pub dry_run: bool,
    /// Per resource; stops a fight with another automation from becoming a write storm.
    pub max_reverts_per_hour: u32,
    /// Work budget per invocation, well inside Event Grid's 30 s delivery timeout.
    pub time_budget_secs: u64,
    /// Object ids / application ids of our own identity: events they caused are our own writes.
    pub self_principal_ids: Vec<String>,
    pub dedupe_ttl_secs: u64,
    /// Warn this many days before an exemption expires.
    pub expiry_warning_days: u32,
    /// How long the audit trail keeps a record (auditors commonly ask for a year or more).
    pub audit_retention_days: u32,
    /// Whether the `keyguard-exempt-until` tag exempts a resource at all. Whoever can write the
    /// resource can write the tag; `false` leaves exemptions to this reviewed file.
    pub tag_exemptions: bool,
    /// A tag exemption reaching further ahead than this does not exempt (and says so).
    pub max_exemption_days: u32,
    /// Under profiles without `allowed_vaults`, a key in a vault outside the estate is drift
    /// (see [`crate::estate`]); `trusted_vaults` are outside it on purpose and never judged.
    pub estate_check: bool,
    pub trusted_vaults: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dry_run: false,
            max_reverts_per_hour: 3,
            time_budget_secs: 25,
            self_principal_ids: Vec::new(),
            dedupe_ttl_secs: 86_400,
            expiry_warning_days: 30,
            audit_retention_days: 400,
            tag_exemptions: true,
            max_exemption_days: 90,
            estate_check: true,
            trusted_vaults: Vec::new(),
        }
    }
}

/// The whole policy.
///
/// TOML layout (see `examples/keyguard.example.toml`; unknown keys are errors):
///
/// ```toml
/// [settings]                       # all optional
/// dry_run = false
/// max_reverts_per_hour = 3         # per resource
/// time_budget_secs = 25
/// self_principal_ids = ["<object id or app id of keyguard's identity>"]
/// dedupe_ttl_secs = 86400
/// expiry_warning_days = 30
/// audit_retention_days = 400
/// tag_exemptions = true           # false: the keyguard-exempt-until tag exempts nothing
/// max_exemption_days = 90          # a tag exemption reaching further ahead does not exempt
/// estate_check = true              # a key in a vault Resource Graph cannot find in the estate is drift
/// trusted_vaults = []              # vault hosts outside the estate on purpose (HSM service, partner)
///
/// [[profile]]
/// name = "prod-cmk"                # unique
/// require = "cmk"                  # cmk | mmk | encrypted
/// mode = "enforce"                 # audit | alert | enforce (default alert)
/// allowed_vaults = ["https://kv-prod.vault.azure.net"]   # URIs or hosts; empty = any vault
/// pinned_key = { vault_uri = "https://kv-prod.vault.azure.net", key_name = "storage-cmk", key_version = "" }
///                                  # optional user_assigned_identity = "<UAMI resource id>"; cmk profiles only
/// scope = { subscriptions = ["..."], resource_groups = ["rg-prod-*"], tags = { env = "prod" }, resource_types = ["Microsoft.Storage/storageAccounts"] }
///
/// [[exemption]]
/// resource = "/subscriptions/.../storageAccounts/legacy*"   # exact id or glob
/// reason = "migration ticket CHG-1234"
/// expires = 2027-01-31             # optional; a date means the end of that day UTC, or an RFC 3339 instant
///
/// [routes.secops]                  # optional; without routes alerts stay log records
/// kind = "teams"                   # teams | teams-legacy | email | webhook
/// url_env = "KEYGUARD_TEAMS_SECOPS_URL"   # teams, teams-legacy, webhook: env var holding the URL
/// [routes.dba]
/// kind = "email"
/// to = ["dba@contoso.example"]
/// smtp_env = "KEYGUARD_SMTP"       # env var holding smtp[s]://user:pass@host:port
/// from = "keyguard@contoso.example"   # optional
/// [routes.siem]
/// kind = "webhook"
/// url_env = "KEYGUARD_SIEM_URL"
/// hmac_key_env = "KEYGUARD_SIEM_KEY"
///
/// [alerts]                         # all optional
/// default_routes = ["secops"]      # when no rule matches
/// owner_tags = ["keyguard-contact", "owner"]   # first present tag's addresses join email routes
/// suppress_minutes = 30            # 0-1440; 0 sends every alert
/// digest = false                  # true: one message per route every digest_minutes
/// digest_minutes = 60              # 1-1440, aligned to the clock
///
/// [[alert_rule]]                   # consulted in order
/// routes = ["dba"]                 # [] only with stop = true: matching alerts go nowhere
/// min_severity = "warning"         # info | warning | high (default info)
/// resource_types = ["Microsoft.Sql/servers"]
/// outcomes = ["revert-failed"]     # reverted, revert-failed, manual-action-needed, alert-only, dry-run-would-revert, rate-limited, exempt, safeguard-changed
/// scope = { resource_groups = ["rg-db-*"], tags = { env = "prod" } }
/// stop = false
/// ```
///
/// The most specific matching profile applies (see [`Scope::specificity`]); a resource no
/// profile covers is reported as unsupported rather than guessed at. Alert routing is described
/// in [`crate::routing`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Config {
    pub settings: Settings,
    pub profiles: Vec<Profile>,
    pub exemptions: Vec<Exemption>,
    /// By name.
    pub routes: BTreeMap<String, Route>,
    pub alerts: AlertSettings,
    pub alert_rules: Vec<AlertRule>,
}

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigProblem {
    /// 1-based; `None` when the problem has no single place in the file.
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    pub message: String,
}

/// Everything wrong with a config file, one `file:line:col: message` per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    fn render(&self) -> String {
        let mut lines = Vec::with_capacity(self.problems.len());
        for p in &self.problems {
            lines.push(match (p.line, p.column) {
                (Some(l), Some(c)) => format!("{}:{l}:{c}: {}", self.source_name, p.message),
                (Some(l), None) => format!("{}:{l}: {}", self.source_name, p.message),
                _ => format!("{}: {}", self.source_name, p.message),
            });
        }
        lines.join("\n")
    }
}

impl Config {
    /// One requirement for everything, in audit mode and with no alert routes: a look "against
    /// one requirement" (`--require`, a scan's `require`) that records findings only, with no
    /// configuration file needed. Exemptions from the configuration still apply.
    pub fn require_only(&mut self, requirement: Requirement) {
        self.profiles = vec![Profile {
            name: format!("require-{}", requirement.as_str()),
            require: requirement,
            mode: Mode::Audit,
            allowed_vaults: Vec::new(),
            pinned_key: None,
            allow_irreversible: false,
            scope: Scope::default(),
        }];
        self.routes.clear();
    }

    /// No config file: require a CMK everywhere, alert only. Safe to run anywhere, writes nothing.
    pub fn builtin_default() -> Config {
        Config {
            settings: Settings::default(),
            profiles: vec![Profile {
                name: "default".to_string(),
                require: Requirement::Cmk,
                mode: Mode::Alert,
                allowed_vaults: Vec::new(),
                pinned_key: None,
                allow_irreversible: false,
                scope: Scope::default(),
            }],
            exemptions: Vec::new(),
            routes: BTreeMap::new(),
            alerts: AlertSettings::default(),
            alert_rules: Vec::new(),
        }
    }

    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = match e.span() {
                Some(span) => {
                    let (l, c) = line_col(text, span.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            ConfigError {
                source_name: source_name.to_string(),
                problems: vec![ConfigProblem {
                    line,
                    column,
                    message: e.message().trim().replace('`', "\""),
                }],
            }
        })?;
        let mut v = Validator {
            text,
            problems: Vec::new(),
        };
        let config = v.config(raw);
        // A reader fixes the file top to bottom; validation order is an implementation detail.
        v.problems
            .sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column.unwrap_or(0)));
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                source_name: source_name.to_string(),
                problems: v.problems,
            })
        }
    }

    /// The most specific profile whose scope matches; ties go to the one declared first.
    pub fn profile_for(&self, id: &ResourceId, tags: &Map<String, Value>) -> Option<&Profile> {
        let mut best: Option<&Profile> = None;
        for p in &self.profiles {
            if !p.scope.matches(id, tags) {
                continue;
            }
            if best.is_none_or(|b| p.scope.specificity() > b.scope.specificity()) {
                best = Some(p);
            }
        }
        best
    }

    /// Config exemptions first, then the resource's own tags. An active exemption from either
    /// wins; otherwise a broken tag is reported before an expired exemption, since it is the
    /// one somebody probably meant to work.
    pub fn exemption_for(&self, id: &ResourceId, tags: &Map<String, Value>, now: OffsetDateTime) -> ExemptionStatus {
        let mut expired: Option<ExemptionStatus> = None;
        for ex in self.exemptions.iter().filter(|e| e.matches(id)) {
            if ex.is_active(now) {
                return ExemptionStatus::Active {
                    source: ExemptionSource::Config,
                    reason: ex.reason.clone(),
                    expires: ex.expires,
                };
            }
            if let Some(at) = ex.expires {
                let later = match &expired {
                    Some(ExemptionStatus::Expired { expired_at, .. }) => at > *expired_at,
                    _ => true,
                };
                if later {
                    expired = Some(ExemptionStatus::Expired {
                        source: ExemptionSource::Config,
                        reason: ex.reason.clone(),
                        expired_at: at,
                    });
                }
            }
        }
        match crate::safeguards::tag_exemption(tags, now, &self.settings) {
            active @ ExemptionStatus::Active { .. } => active,
            invalid @ ExemptionStatus::Invalid { .. } => invalid,
            tag_expired @ ExemptionStatus::Expired { .. } => expired.unwrap_or(tag_expired),
            ExemptionStatus::None => expired.unwrap_or(ExemptionStatus::None),
        }
    }
}

/// Why an exemption's expiry (a tag's or the profile file's) is refused. The text is clipped.
#[derive(Debug, thiserror::Error)]
pub enum ExpiryError {
    #[error("\"{0}\" is not a valid date (expected YYYY-MM-DD)")]
    NotADate(String),
    #[error("\"{0}\" is neither a date (YYYY-MM-DD) nor an RFC 3339 date-time with an offset")]
    NotAnInstant(String),
}

/// `2027-01-31` (the end of that day, UTC) or an RFC 3339 instant with an offset.
pub fn parse_expiry(text: &str) -> Result<OffsetDateTime, ExpiryError> {
    let t = text.trim();
    if t.len() == 10 {
        let date = Date::parse(t, time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|_| ExpiryError::NotADate(t.to_string()))?;
        return Ok(date.with_time(end_of_day()).assume_utc());
    }
    // TOML allows a space instead of 'T'; RFC 3339 allows lower-case 't' and 'z'.
    let mut normalised = t.to_ascii_uppercase();
    if normalised.len() > 10 && normalised.as_bytes().get(10) == Some(&b' ') {
        normalised.replace_range(10..11, "T");
    }
    OffsetDateTime::parse(&normalised, &Rfc3339).map_err(|_| ExpiryError::NotAnInstant(clip(t)))
}

fn end_of_day() -> Time {
    Time::from_hms_nano(23, 59, 59, 999_999_999).unwrap_or(Time::MIDNIGHT)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(text.len());
    while off > 0 && !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

mod raw;
#[cfg(test)]
use raw::validate_vault;
use raw::{RawConfig, Validator, clip};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    fn tags(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::from_toml_str(text, "keyguard.toml") {
            Ok(c) => panic!("expected errors, got {c:?}"),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    const ST: &str =
        "/subscriptions/sub-1/resourceGroups/rg-prod-web/providers/Microsoft.Storage/storageAccounts/stweb";

    #[test]
    fn builtin_default_covers_everything_with_alerts() {
        let c = Config::builtin_default();
        let p = c.profile_for(&id(ST), &Map::new()).unwrap();
        assert_eq!(
            (p.name.as_str(), p.require, p.mode),
            ("default", Requirement::Cmk, Mode::Alert)
        );
        assert_eq!(c.settings.max_reverts_per_hour, 3);
        assert_eq!(c.settings.time_budget_secs, 25);
        assert_eq!(c.settings.dedupe_ttl_secs, 86_400);
        assert_eq!(c.settings.expiry_warning_days, 30);
        assert_eq!(
            c.exemption_for(&id(ST), &Map::new(), datetime!(2026-01-01 0:00 UTC)),
            ExemptionStatus::None
        );
    }

    #[test]
    fn empty_file_is_settings_defaults_and_no_profiles() {
        let c = Config::from_toml_str("", "x").unwrap();
        assert_eq!(c.settings, Settings::default());
        assert!(c.profiles.is_empty());
        assert!(c.profile_for(&id(ST), &Map::new()).is_none());
    }

    #[test]
    fn unknown_keys_name_line_and_column() {
        let text = "[settings]\ndry_run = true\n\n[[profile]]\nname = \"a\"\nrequir = \"cmk\"\n";
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("keyguard.toml:6:1: unknown field \"requir\", expected one of"),
            "{p:?}"
        );
        let p = problems("[setings]\n");
        assert!(
            p[0].starts_with("keyguard.toml:1:2: unknown field \"setings\""),
            "{p:?}"
        );
        let p = problems("[settings]\nmax_reverts_per_hour = -1\n");
        assert!(p[0].starts_with("keyguard.toml:2:24: "), "{p:?}");
        let p = problems("[[profile]]\nname = \"a\"\nrequire = \"cmk\"\nscope = { resource_group = [\"x\"] }\n");
        assert!(
            p[0].starts_with("keyguard.toml:4:11: unknown field \"resource_group\""),
            "{p:?}"
        );
        let p = problems("this is not toml");
        assert!(p[0].starts_with("keyguard.toml:1:"), "{p:?}");
    }

    #[test]
    fn bad_enum_values_say_what_is_allowed() {
        let p = problems("[[profile]]\nname = \"a\"\nrequire = \"cmkk\"\nmode = \"enforced\"\n");
        assert_eq!(
            p,
            vec![
                "keyguard.toml:3:11: require must be one of cmk, mmk, encrypted (found \"cmkk\")".to_string(),
                "keyguard.toml:4:8: mode must be one of audit, alert, enforce (found \"enforced\")".to_string(),
            ]
        );
    }

    #[test]
    fn semantic_errors_are_all_reported_with_positions() {
        let text = r#"
[[profile]]
name = "a"
require = "mmk"
allowed_vaults = ["http://kv.vault.azure.net", "https://example.com", "kv-ok.vault.azure.net/", "https://kv.vault.azure.net/keys/x"]
pinned_key = { vault_uri = "https://kv-ok.vault.azure.net", key_name = "k" }
scope = { resource_groups = ["rg-[prod"], resource_types = ["Microsoft.Storage/storageAcounts"] }

[[profile]]
name = "A"
require = "cmk"
allowed_vaults = ["kv-prod.vault.azure.net"]
pinned_key = { vault_uri = "https://kv-other.vault.azure.net", key_name = "bad_name!" }

[[exemption]]
resource = "/subscriptions/s/resourceGroups/rg"
reason = ""
expires = 2027-13-01
"#;
        let err = Config::from_toml_str(text, "keyguard.toml");
        // 2027-13-01 is not a TOML date, so the parser stops there.
        let p: Vec<String> = err.unwrap_err().to_string().lines().map(str::to_string).collect();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("keyguard.toml:18:"), "{p:?}");

        let text = text.replace("2027-13-01", "\"soon\"");
        let p = problems(&text);
        let expected_prefixes = [
            "keyguard.toml:5:19: allowed_vaults: \"http://kv.vault.azure.net\" is not a Key Vault or Managed HSM URI or host (scheme http is not https",
            "keyguard.toml:5:48: allowed_vaults: \"https://example.com\" is not a Key Vault",
            "keyguard.toml:5:97: allowed_vaults: \"https://kv.vault.azure.net/keys/x\" is not a Key Vault or Managed HSM URI or host (a vault URI has no path",
            "keyguard.toml:6:14: pinned_key is only allowed on a profile with require = \"cmk\" (profile \"a\")",
            "keyguard.toml:7:30: scope.resource_groups: invalid glob \"rg-[prod\"",
            "keyguard.toml:7:61: scope.resource_types: \"Microsoft.Storage/storageAcounts\" is not a supported resource type",
            "keyguard.toml:10:8: duplicate profile name \"A\" (first declared on line 3)",
            "keyguard.toml:13:75: pinned_key.key_name must be 1-127 letters, digits or dashes",
            "keyguard.toml:16:12: exemption resource must be a resource id or a glob over ids: not a resource id",
            "keyguard.toml:17:10: exemption reason must not be empty",
            "keyguard.toml:18:11: expires: \"soon\" is neither a date",
        ];
        assert_eq!(p.len(), expected_prefixes.len(), "{p:#?}");
        for (got, want) in p.iter().zip(expected_prefixes) {
            assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn pinned_key_vault_must_be_allowed_only_when_the_list_is_non_empty() {
        let bad = "[[profile]]\nname = \"a\"\nrequire = \"cmk\"\nallowed_vaults = [\"kv-prod.vault.azure.net\"]\npinned_key = { vault_uri = \"https://kv-other.vault.azure.net\", key_name = \"k\" }\n";
        assert_eq!(
            problems(bad),
            vec!["keyguard.toml:5:14: pinned_key vault kv-other.vault.azure.net is not in allowed_vaults of profile \"a\"".to_string()]
        );
        let ok = "[[profile]]\nname = \"a\"\nrequire = \"cmk\"\npinned_key = { vault_uri = \"https://kv-any.vault.azure.net\", key_name = \"k\", key_version = \"\" }\n";
        let c = Config::from_toml_str(ok, "x").unwrap();
        let k = c.profiles[0].pinned_key.clone().unwrap();
        assert_eq!(
            k,
            KeyRef::new("https://kv-any.vault.azure.net", "k", None, None).unwrap()
        );
    }

    #[test]
    fn uai_on_pinned_key_must_be_a_managed_identity() {
        let bad = "[[profile]]\nname = \"a\"\nrequire = \"cmk\"\npinned_key = { vault_uri = \"https://kv.vault.azure.net\", key_name = \"k\", user_assigned_identity = \"/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/x\" }\n";
        let p = problems(bad);
        assert!(p[0].contains("user-assigned managed identity"), "{p:?}");
        let good = bad.replace(
            "Microsoft.Storage/storageAccounts/x",
            "Microsoft.ManagedIdentity/userAssignedIdentities/u",
        );
        let c = Config::from_toml_str(&good, "x").unwrap();
        assert!(
            c.profiles[0]
                .pinned_key
                .as_ref()
                .unwrap()
                .user_assigned_identity()
                .is_some()
        );
    }

    #[test]
    fn settings_validation() {
        let p = problems("[settings]\ntime_budget_secs = 0\ndedupe_ttl_secs = 0\nself_principal_ids = [\"\"]\n");
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("keyguard.toml:2:20: time_budget_secs"));
        let p = problems("[settings]\nself_principal_ids = [\"04B07795-8ddb-461a-bbee-02f9e1bf7b46\"]\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("the Azure CLI, which every user of it shares"), "{p:?}");
        let p = problems("[settings]\nmax_exemption_days = 0\n");
        assert_eq!(
            p,
            vec![
                "keyguard.toml:2:22: max_exemption_days must be greater than 0 (tag_exemptions = false turns tag exemptions off)"
            ]
        );
        let c = Config::from_toml_str("[settings]\ntag_exemptions = false\nmax_exemption_days = 14\n", "x").unwrap();
        assert_eq!((c.settings.tag_exemptions, c.settings.max_exemption_days), (false, 14));
        let d = Config::builtin_default().settings;
        assert_eq!((d.tag_exemptions, d.max_exemption_days), (true, 90));
        let c = Config::from_toml_str("[settings]\ndry_run = true\nself_principal_ids = [\" abc \"]\n", "x").unwrap();
        assert!(c.settings.dry_run);
        assert_eq!(c.settings.self_principal_ids, vec!["abc".to_string()]);
    }

    #[test]
    fn example_file_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/keyguard.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let c = Config::from_toml_str(&text, "keyguard.example.toml").unwrap();
        assert!(c.profiles.len() >= 3);
        let names: Vec<&str> = c.profiles.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"prod-cmk"));
        let prod = c.profiles.iter().find(|p| p.name == "prod-cmk").unwrap();
        assert_eq!(prod.require, Requirement::Cmk);
        assert_eq!(prod.mode, Mode::Enforce);
        assert_eq!(prod.allowed_vaults, vec!["kv-prod.vault.azure.net".to_string()]);
        assert_eq!(prod.pinned_key.as_ref().unwrap().key_name(), "storage-cmk");
        assert!(!c.exemptions.is_empty());
        assert_eq!(
            c.exemptions[0].expires,
            Some(datetime!(2027-01-31 23:59:59.999_999_999 UTC))
        );
        assert_eq!(c.routes.len(), 3);
        assert_eq!(c.routes["secops"].kind, RouteKind::Teams);
        assert_eq!(c.routes["dba"].kind, RouteKind::Email);
        assert_eq!(c.routes["siem"].kind, RouteKind::Webhook);
        assert_eq!(c.alerts.default_routes, ["secops", "siem"]);
        assert_eq!(c.alerts.suppress_minutes, 30);
        assert!(!c.alert_rules.is_empty());
        let db = id(
            "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-db-orders/providers/Microsoft.Sql/servers/sql-orders",
        );
        let t = tags(json!({"env": "prod", "Owner": "orders-team@contoso.example"}));
        let facts = crate::routing::AlertFacts {
            resource_id: &db,
            tags: &t,
            outcome: "revert-failed",
            severity: AlertSeverity::High,
        };
        let d = c.route_alert(&facts);
        let names: Vec<&str> = d.iter().map(|d| d.route.as_str()).collect();
        assert_eq!(names, ["dba", "secops", "siem"]);
        assert_eq!(d[0].extra_recipients, ["orders-team@contoso.example"]);
        let facts = crate::routing::AlertFacts {
            outcome: "reverted",
            severity: AlertSeverity::Warning,
            ..facts
        };
        let names: Vec<String> = c.route_alert(&facts).into_iter().map(|d| d.route).collect();
        assert_eq!(names, ["secops", "siem"]);
    }

    fn scoped_config() -> Config {
        Config::from_toml_str(
            r#"
[[profile]]
name = "everything"
require = "encrypted"

[[profile]]
name = "sub"
require = "cmk"
scope = { subscriptions = ["SUB-1"] }

[[profile]]
name = "tagged"
require = "cmk"
scope = { tags = { Env = "prod" } }

[[profile]]
name = "rg"
require = "cmk"
mode = "enforce"
scope = { resource_groups = ["RG-PROD-*"] }

[[profile]]
name = "rg-too"
require = "mmk"
scope = { resource_groups = ["rg-prod-w*"] }

[[profile]]
name = "rg-typed"
require = "cmk"
scope = { resource_groups = ["rg-prod-*"], resource_types = ["microsoft.storage/storageaccounts"], tags = { team = "*" } }
"#,
            "x",
        )
        .unwrap()
    }

    #[test]
    fn most_specific_profile_wins_and_ties_go_to_the_first() {
        let c = scoped_config();
        let pick = |rid: &str, t: Value| c.profile_for(&id(rid), &tags(t)).map(|p| p.name.clone());
        let other_sub = "/subscriptions/sub-2/resourceGroups/misc/providers/Microsoft.Storage/storageAccounts/x";
        assert_eq!(pick(other_sub, json!({})).as_deref(), Some("everything"));
        assert_eq!(
            pick(
                "/subscriptions/sub-1/resourceGroups/misc/providers/Microsoft.Storage/storageAccounts/x",
                json!({})
            )
            .as_deref(),
            Some("sub")
        );
        assert_eq!(pick(other_sub, json!({"env": "PROD"})).as_deref(), Some("tagged"));
        assert_eq!(pick(other_sub, json!({"env": "dev"})).as_deref(), Some("everything"));
        assert_eq!(pick(other_sub, json!({"env": 1})).as_deref(), Some("everything"));
        // rg (4) beats tag (2); rg and rg-too tie at 4: first declared wins.
        assert_eq!(pick(ST, json!({"env": "prod"})).as_deref(), Some("rg"));
        // rg + tag + type = 7 beats rg alone.
        assert_eq!(pick(ST, json!({"Team": "x"})).as_deref(), Some("rg-typed"));
    }

    #[test]
    fn no_profile_matches_when_every_scope_excludes() {
        let c = Config::from_toml_str(
            "[[profile]]\nname = \"a\"\nrequire = \"cmk\"\nscope = { subscriptions = [\"other\"] }\n",
            "x",
        )
        .unwrap();
        assert!(c.profile_for(&id(ST), &Map::new()).is_none());
    }

    #[test]
    fn config_exemptions_exact_and_glob() {
        let c = Config::from_toml_str(
            r#"
[[exemption]]
resource = "/subscriptions/SUB-1/resourcegroups/RG-PROD-WEB/providers/Microsoft.Storage/storageAccounts/STWEB"
reason = "exact"
expires = 2026-06-30T12:00:00+02:00

[[exemption]]
resource = "/subscriptions/*/resourceGroups/rg-legacy/providers/Microsoft.Storage/storageAccounts/legacy*"
reason = "glob"

[[exemption]]
resource = "/subscriptions/sub-1/resourceGroups/rg-old/**"
reason = "old"
expires = "2020-01-01"
"#,
            "x",
        )
        .unwrap();
        let none = Map::new();
        let now = datetime!(2026-06-30 9:00 UTC);
        assert_eq!(
            c.exemption_for(&id(ST), &none, now),
            ExemptionStatus::Active {
                source: ExemptionSource::Config,
                reason: "exact".into(),
                expires: Some(datetime!(2026-06-30 10:00 UTC))
            }
        );
        assert!(matches!(
            c.exemption_for(&id(ST), &none, datetime!(2026-06-30 10:00:01 UTC)),
            ExemptionStatus::Expired {
                source: ExemptionSource::Config,
                ..
            }
        ));
        let legacy =
            id("/subscriptions/any/resourceGroups/RG-LEGACY/providers/Microsoft.Storage/storageAccounts/legacy01");
        assert!(matches!(
            c.exemption_for(&legacy, &none, now),
            ExemptionStatus::Active { expires: None, .. }
        ));
        let legacy_child = id(
            "/subscriptions/any/resourceGroups/rg-legacy/providers/Microsoft.Storage/storageAccounts/legacy01/blobServices/default",
        );
        assert_eq!(
            c.exemption_for(&legacy_child, &none, now),
            ExemptionStatus::None,
            "* does not cross segments"
        );
        let old = id("/subscriptions/sub-1/resourceGroups/rg-old/providers/Microsoft.Storage/storageAccounts/a");
        assert_eq!(
            c.exemption_for(&old, &none, now),
            ExemptionStatus::Expired {
                source: ExemptionSource::Config,
                reason: "old".into(),
                expired_at: datetime!(2020-01-01 23:59:59.999_999_999 UTC)
            }
        );
    }

    #[test]
    fn local_datetime_expiry_is_rejected_as_ambiguous() {
        let p = problems(
            "[[exemption]]\nresource = \"/subscriptions/s/resourceGroups/r/providers/A.B/t/n\"\nreason = \"x\"\nexpires = 2027-01-31T10:00:00\n",
        );
        assert!(
            p[0].starts_with("keyguard.toml:4:11: expires has no UTC offset"),
            "{p:?}"
        );
    }

    #[test]
    fn tag_exemptions() {
        let c = Config::builtin_default();
        let r = id(ST);
        let now = datetime!(2026-03-01 0:00 UTC);
        assert_eq!(
            c.exemption_for(
                &r,
                &tags(json!({"KeyGuard-Exempt-Until": "2026-03-01", "keyguard-exempt-reason": "CHG-9"})),
                now
            ),
            ExemptionStatus::Active {
                source: ExemptionSource::Tag,
                reason: "CHG-9".into(),
                expires: Some(datetime!(2026-03-01 23:59:59.999_999_999 UTC))
            }
        );
        assert_eq!(
            c.exemption_for(&r, &tags(json!({"keyguard-exempt-until": "2026-02-28T10:00:00Z"})), now),
            ExemptionStatus::Expired {
                source: ExemptionSource::Tag,
                reason: "resource tag keyguard-exempt-until".into(),
                expired_at: datetime!(2026-02-28 10:00 UTC)
            }
        );
        assert!(matches!(
            c.exemption_for(&r, &tags(json!({"keyguard-exempt-until": "next week"})), now),
            ExemptionStatus::Invalid { source: ExemptionSource::Tag, ref value, .. } if value == "next week"
        ));
        assert!(matches!(
            c.exemption_for(&r, &tags(json!({"keyguard-exempt-reason": "because"})), now),
            ExemptionStatus::Invalid { ref problem, .. } if problem.contains("needs an expiry")
        ));
        assert!(matches!(
            c.exemption_for(&r, &tags(json!({"keyguard-exempt-until": "2026-13-01"})), now),
            ExemptionStatus::Invalid { .. }
        ));
        assert_eq!(
            c.exemption_for(&r, &tags(json!({"other": "x"})), now),
            ExemptionStatus::None
        );
    }

    #[test]
    fn parse_expiry_forms() {
        assert_eq!(
            parse_expiry("2027-01-31").unwrap(),
            datetime!(2027-01-31 23:59:59.999_999_999 UTC)
        );
        assert_eq!(
            parse_expiry("2027-01-31t10:00:00z").unwrap(),
            datetime!(2027-01-31 10:00 UTC)
        );
        assert_eq!(
            parse_expiry("2027-01-31 10:00:00+01:00").unwrap(),
            datetime!(2027-01-31 9:00 UTC)
        );
        assert!(parse_expiry("2027-01-31T10:00:00").is_err());
        assert!(parse_expiry("").is_err());
        assert!(parse_expiry("2027-02-30").is_err());
    }

    #[test]
    fn expiry_warning_window() {
        let e = Exemption {
            resource: ST.into(),
            reason: "r".into(),
            expires: Some(datetime!(2026-01-20 0:00 UTC)),
        };
        assert!(e.expires_within(datetime!(2026-01-01 0:00 UTC), 30));
        assert!(!e.expires_within(datetime!(2025-11-01 0:00 UTC), 30));
        assert!(!e.expires_within(datetime!(2026-02-01 0:00 UTC), 30));
    }

    #[test]
    fn vault_entries() {
        assert_eq!(
            validate_vault("https://KV-Prod.vault.azure.net/").unwrap(),
            "kv-prod.vault.azure.net"
        );
        assert_eq!(
            validate_vault("https://kv.vault.azure.net:443").unwrap(),
            "kv.vault.azure.net",
            "the default port is the same vault"
        );
        assert_eq!(
            validate_vault("kv.managedhsm.azure.net").unwrap(),
            "kv.managedhsm.azure.net"
        );
        assert_eq!(
            validate_vault("kv.vault.usgovcloudapi.net").unwrap(),
            "kv.vault.usgovcloudapi.net"
        );
        for bad in [
            "",
            "vault.azure.net",
            "https://",
            "https://kv.vault.azure.net:8443",
            "https://kv.vault.azure.net:1@evil.example",
            "https://127.0.0.1",
            "kv.notvault.azure.net.evil.com",
            "https://kv.evilvault.azure.net",
            "kv..vault.azure.net",
            "ftp://kv.vault.azure.net",
        ] {
            assert!(validate_vault(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serializes_for_validate_output() {
        let v = serde_json::to_value(Config::builtin_default()).unwrap();
        assert_eq!(v["profiles"][0]["require"], "cmk");
        assert_eq!(v["profiles"][0]["mode"], "alert");
        let s = ExemptionStatus::Active {
            source: ExemptionSource::Tag,
            reason: "r".into(),
            expires: Some(datetime!(2027-01-31 0:00 UTC)),
        };
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            json!({"status":"active","source":"tag","reason":"r","expires":"2027-01-31T00:00:00Z"})
        );
    }

    #[test]
    fn routes_alerts_and_rules_parse() {
        let text = r#"
[routes.secops]
kind = "teams"
url_env = " KEYGUARD_TEAMS_SECOPS_URL "
[routes.old-teams]
kind = "teams-legacy"
url_env = "KEYGUARD_TEAMS_OLD"
[routes.dba]
kind = "email"
to = ["dba@contoso.example", "second@contoso.example"]
smtp_env = "KEYGUARD_SMTP"
from = "keyguard@contoso.example"
[routes.siem]
kind = "webhook"
url_env = "KEYGUARD_SIEM_URL"
hmac_key_env = "_SIEM_KEY_2"

[alerts]
default_routes = ["secops", "secops"]
owner_tags = ["keyguard-contact", " owner "]
suppress_minutes = 1440
digest = true
digest_minutes = 15

[[alert_rule]]
routes = ["dba"]
min_severity = "warning"
resource_types = ["Microsoft.Sql/servers", "microsoft.sql/servers/databases"]
outcomes = ["revert-failed", "manual-action-needed", "rate-limited"]
scope = { subscriptions = ["sub-1"], resource_groups = ["rg-db-*"], tags = { env = "prod" } }
stop = true

[[alert_rule]]
routes = []
stop = true
"#;
        let c = Config::from_toml_str(text, "x").unwrap();
        assert_eq!(
            c.routes.keys().map(String::as_str).collect::<Vec<_>>(),
            ["dba", "old-teams", "secops", "siem"]
        );
        assert_eq!(
            c.routes["secops"],
            Route {
                name: "secops".into(),
                kind: RouteKind::Teams,
                url_env: Some("KEYGUARD_TEAMS_SECOPS_URL".into()),
                hmac_key_env: None,
                smtp_env: None,
                from: None,
                to: vec![],
            }
        );
        assert_eq!(c.routes["old-teams"].kind, RouteKind::TeamsLegacy);
        assert_eq!(
            c.routes["dba"],
            Route {
                name: "dba".into(),
                kind: RouteKind::Email,
                url_env: None,
                hmac_key_env: None,
                smtp_env: Some("KEYGUARD_SMTP".into()),
                from: Some("keyguard@contoso.example".into()),
                to: vec!["dba@contoso.example".into(), "second@contoso.example".into()],
            }
        );
        assert_eq!(c.routes["siem"].hmac_key_env.as_deref(), Some("_SIEM_KEY_2"));
        assert_eq!(
            c.alerts,
            AlertSettings {
                default_routes: vec!["secops".into()],
                owner_tags: vec!["keyguard-contact".into(), "owner".into()],
                suppress_minutes: 1440,
                digest: true,
                digest_minutes: 15,
            }
        );
        assert_eq!(c.alert_rules.len(), 2);
        let r = &c.alert_rules[0];
        assert_eq!(r.routes, ["dba"]);
        assert_eq!(r.min_severity, AlertSeverity::Warning);
        assert_eq!(r.resource_types.len(), 2);
        assert_eq!(r.outcomes, ["revert-failed", "manual-action-needed", "rate-limited"]);
        assert_eq!(r.scope.resource_groups, ["rg-db-*"]);
        assert_eq!(r.scope.tags.get("env").map(String::as_str), Some("prod"));
        assert!(r.stop);
        let silent = &c.alert_rules[1];
        assert!(silent.routes.is_empty() && silent.stop);
        assert_eq!(silent.min_severity, AlertSeverity::Info);
    }

    #[test]
    fn no_routes_is_valid_and_the_default() {
        for c in [Config::builtin_default(), Config::from_toml_str("", "x").unwrap()] {
            assert!(c.routes.is_empty());
            assert!(c.alert_rules.is_empty());
            assert_eq!(c.alerts, AlertSettings::default());
            assert!(c.alerts.default_routes.is_empty());
            assert_eq!(c.alerts.suppress_minutes, 30);
        }
        let c = Config::from_toml_str("[alerts]\nsuppress_minutes = 0\nowner_tags = [\"owner\"]\n", "x").unwrap();
        assert_eq!(c.alerts.suppress_minutes, 0);
    }

    #[test]
    fn routing_errors_are_all_reported_with_positions() {
        let text = r#"
[routes.chat]
kind = "slack"
url_env = "X"

[routes.mail]
kind = "email"
from = "keyguard at contoso"

[routes.mail2]
kind = "email"
to = []
smtp_env = "SMTP-URL"

[routes.hook]
kind = "webhook"
url_env = "https://siem.example/ingest?sig=abc"

[routes.teams]
kind = "teams"
to = ["x@y.example", "not an address"]

[routes."bad name"]
kind = "teams"
url_env = "OK"

[alerts]
default_routes = ["teams", "pager"]
owner_tags = [""]
suppress_minutes = 1441

[[alert_rule]]
routes = ["mail", "nope"]
min_severity = "urgent"
resource_types = ["Microsoft.Sql/server"]
outcomes = ["reverted", "Revert-Failed", "failed"]
scope = { resource_groups = ["rg-[db"] }

[[alert_rule]]
routes = []
"#;
        let p = problems(text);
        let expected = [
            "keyguard.toml:3:8: kind must be one of teams, teams-legacy, email, webhook (found \"slack\")",
            "keyguard.toml:6:1: email route \"mail\" needs smtp_env (the environment variable holding smtp[s]://user:pass@host:port)",
            "keyguard.toml:6:1: email route \"mail\" needs to (at least one recipient address)",
            "keyguard.toml:8:8: from: \"keyguard at contoso\" is not an e-mail address",
            "keyguard.toml:12:6: email route \"mail2\" needs at least one address in to",
            "keyguard.toml:13:12: smtp_env must name an environment variable / app setting ([A-Za-z_][A-Za-z0-9_]*), found \"SMTP-URL\"; secrets never go in this file",
            "keyguard.toml:15:1: webhook route \"hook\" needs hmac_key_env (the environment variable holding its signing key)",
            "keyguard.toml:17:11: url_env must name an environment variable",
            "keyguard.toml:19:1: teams route \"teams\" needs url_env (the environment variable holding its URL)",
            "keyguard.toml:21:6: to does not apply to kind = \"teams\" (route \"teams\")",
            "keyguard.toml:21:22: to: \"not an address\" is not an e-mail address",
            "keyguard.toml:23:9: route name \"bad name\" must be 1-64 letters, digits, '-' or '_'",
            "keyguard.toml:28:28: default_routes: \"pager\" is not a defined route (defined: bad name, chat, hook, mail, mail2, teams)",
            "keyguard.toml:29:15: owner_tags entries must not be empty",
            "keyguard.toml:30:20: suppress_minutes must be 0-1440 (a day at most)",
            "keyguard.toml:33:19: alert_rule routes: \"nope\" is not a defined route",
            "keyguard.toml:34:16: min_severity must be one of info, warning, high, critical (found \"urgent\")",
            "keyguard.toml:35:19: resource_types: \"Microsoft.Sql/server\" is not a supported resource type",
            "keyguard.toml:36:25: outcomes: \"Revert-Failed\" is not an outcome (one of reverted, revert-failed, manual-action-needed, alert-only, dry-run-would-revert, rate-limited, exempt, safeguard-changed, key-changed, key-unusable)",
            "keyguard.toml:36:42: outcomes: \"failed\" is not an outcome",
            "keyguard.toml:37:30: scope.resource_groups: invalid glob \"rg-[db\"",
            "keyguard.toml:40:10: alert_rule routes must not be empty (routes = [] with stop = true silences matching alerts)",
        ];
        assert_eq!(p.len(), expected.len(), "{p:#?}");
        for (got, want) in p.iter().zip(expected) {
            assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn routing_structure_errors_come_from_the_parser_with_positions() {
        let p = problems("[routes.a]\nkind = \"teams\"\nurl_env = \"A\"\nurl = \"https://x\"\n");
        assert!(p[0].starts_with("keyguard.toml:4:1: unknown field \"url\""), "{p:?}");
        let p = problems("[routes.a]\nurl_env = \"A\"\n");
        assert!(p[0].starts_with("keyguard.toml:1:1: missing field \"kind\""), "{p:?}");
        let p = problems("[alerts]\nsuppress_minutes = -5\n");
        assert!(p[0].starts_with("keyguard.toml:2:20: "), "{p:?}");
        let p = problems("[alerts]\ndigest = \"yes\"\n");
        assert!(p[0].starts_with("keyguard.toml:2:10: "), "{p:?}");
        let p = problems("[alerts]\ndigest = true\ndigest_minutes = 0\n");
        assert_eq!(p, ["keyguard.toml:3:18: digest_minutes must be 1-1440"], "{p:?}");
        let p = problems("[alerts]\ndefault_route = [\"a\"]\n");
        assert!(
            p[0].starts_with("keyguard.toml:2:1: unknown field \"default_route\""),
            "{p:?}"
        );
        let p = problems("[[alert_rule]]\nmin_severity = \"high\"\n");
        assert!(p[0].contains("missing field \"routes\""), "{p:?}");
        let p = problems("[[alert_rule]]\nroutes = [\"a\"]\nscope = { resource_group = [\"x\"] }\n");
        assert!(
            p[0].starts_with("keyguard.toml:3:11: unknown field \"resource_group\""),
            "{p:?}"
        );
    }

    #[test]
    fn naming_a_route_when_none_are_defined() {
        assert_eq!(
            problems("[alerts]\ndefault_routes = [\"secops\"]\n"),
            vec![
                "keyguard.toml:2:19: default_routes: \"secops\" is not a defined route (no [routes] are defined)"
                    .to_string()
            ]
        );
    }

    #[test]
    fn a_broken_route_is_not_also_reported_as_undefined() {
        let p = problems("[routes.a]\nkind = \"email\"\n\n[alerts]\ndefault_routes = [\"a\"]\n");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p.iter()
                .all(|l| l.starts_with("keyguard.toml:1:1: email route \"a\" needs")),
            "{p:?}"
        );
    }

    #[test]
    fn stray_settings_for_each_kind() {
        let p = problems(
            "[routes.a]\nkind = \"email\"\nto = [\"a@b.example\"]\nsmtp_env = \"S\"\nurl_env = \"U\"\nhmac_key_env = \"H\"\n",
        );
        assert_eq!(
            p,
            vec![
                "keyguard.toml:5:11: url_env does not apply to kind = \"email\" (route \"a\")".to_string(),
                "keyguard.toml:6:16: hmac_key_env does not apply to kind = \"email\" (route \"a\")".to_string(),
            ]
        );
        let p = problems(
            "[routes.a]\nkind = \"teams-legacy\"\nurl_env = \"U\"\nsmtp_env = \"S\"\nfrom = \"a@b.example\"\n",
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("keyguard.toml:4:12: smtp_env does not apply to kind = \"teams-legacy\""));
        assert!(p[1].starts_with("keyguard.toml:5:8: from does not apply"));
    }
}
