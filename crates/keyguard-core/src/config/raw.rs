//! The configuration file as TOML gives it (spans kept for messages), and the [`Validator`] that
//! turns it into a [`Config`], collecting every problem with its line and column.

use super::*;

mod routes;

// ---------------------------------------------------------------------------------------------
// Raw (as written) form, with spans for error reporting.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    settings: RawSettings,
    #[serde(default)]
    profile: Vec<RawProfile>,
    #[serde(default)]
    exemption: Vec<RawExemption>,
    #[serde(default)]
    routes: BTreeMap<Spanned<String>, Spanned<RawRoute>>,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    alert_rule: Vec<RawAlertRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    kind: Spanned<String>,
    #[serde(default)]
    url_env: Option<Spanned<String>>,
    #[serde(default)]
    hmac_key_env: Option<Spanned<String>>,
    #[serde(default)]
    smtp_env: Option<Spanned<String>>,
    #[serde(default)]
    from: Option<Spanned<String>>,
    #[serde(default)]
    to: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawAlerts {
    default_routes: Vec<Spanned<String>>,
    owner_tags: Vec<Spanned<String>>,
    suppress_minutes: Option<Spanned<u32>>,
    digest: Option<bool>,
    digest_minutes: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertRule {
    routes: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    min_severity: Option<Spanned<String>>,
    #[serde(default)]
    resource_types: Vec<Spanned<String>>,
    #[serde(default)]
    outcomes: Vec<Spanned<String>>,
    #[serde(default)]
    scope: RawScope,
    #[serde(default)]
    stop: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    dry_run: Option<bool>,
    max_reverts_per_hour: Option<u32>,
    time_budget_secs: Option<Spanned<u64>>,
    self_principal_ids: Vec<Spanned<String>>,
    dedupe_ttl_secs: Option<Spanned<u64>>,
    expiry_warning_days: Option<u32>,
    audit_retention_days: Option<Spanned<u32>>,
    tag_exemptions: Option<bool>,
    max_exemption_days: Option<Spanned<u32>>,
    estate_check: Option<bool>,
    trusted_vaults: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Spanned<String>,
    require: Spanned<String>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    allowed_vaults: Vec<Spanned<String>>,
    #[serde(default)]
    pinned_key: Option<Spanned<RawKeyRef>>,
    #[serde(default)]
    allow_irreversible: Option<Spanned<bool>>,
    #[serde(default)]
    scope: RawScope,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyRef {
    vault_uri: Spanned<String>,
    key_name: Spanned<String>,
    #[serde(default)]
    key_version: Option<Spanned<String>>,
    #[serde(default)]
    user_assigned_identity: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawScope {
    subscriptions: Vec<Spanned<String>>,
    resource_groups: Vec<Spanned<String>>,
    tags: BTreeMap<String, Spanned<String>>,
    resource_types: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExemption {
    resource: Spanned<String>,
    reason: Spanned<String>,
    #[serde(default)]
    expires: Option<Spanned<toml::Value>>,
}

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) problems: Vec<ConfigProblem>,
}

impl Validator<'_> {
    fn at(&mut self, span: std::ops::Range<usize>, message: String) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(ConfigProblem {
            line: Some(line),
            column: Some(column),
            message,
        });
    }

    pub(super) fn config(&mut self, raw: RawConfig) -> Config {
        let settings = self.settings(raw.settings);
        let mut profiles: Vec<Profile> = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for rp in raw.profile {
            let name_span = rp.name.span();
            let lower = rp.name.get_ref().trim().to_ascii_lowercase();
            if let Some(first_line) = seen.get(&lower) {
                let msg = format!(
                    "duplicate profile name \"{}\" (first declared on line {first_line})",
                    rp.name.get_ref().trim()
                );
                self.at(name_span.clone(), msg);
            } else if !lower.is_empty() {
                seen.insert(lower, line_col(self.text, name_span.start).0);
            }
            if let Some(p) = self.profile(rp) {
                profiles.push(p);
            }
        }
        let exemptions = raw.exemption.into_iter().filter_map(|e| self.exemption(e)).collect();
        // Checked against the names as written, so a route dropped for its own problem does not
        // also produce a "not defined" error for every rule that uses it.
        let defined: Vec<String> = raw.routes.keys().map(|k| k.get_ref().trim().to_string()).collect();
        // In file order, so problems come out in the order a reader meets them.
        let mut raw_routes: Vec<_> = raw.routes.into_iter().collect();
        raw_routes.sort_by_key(|(_, r)| r.span().start);
        let routes: BTreeMap<String, Route> = raw_routes
            .into_iter()
            .filter_map(|(name, route)| self.route(name, route))
            .map(|r| (r.name.clone(), r))
            .collect();
        let alerts = self.alerts(raw.alerts, &defined);
        let alert_rules = raw
            .alert_rule
            .into_iter()
            .filter_map(|r| self.alert_rule(r, &defined))
            .collect();
        Config {
            settings,
            profiles,
            exemptions,
            routes,
            alerts,
            alert_rules,
        }
    }

    fn env_name(&mut self, field: &str, value: &Spanned<String>) -> Option<String> {
        let v = value.get_ref().trim();
        if is_valid_env_name(v) {
            Some(v.to_string())
        } else {
            self.at(
                value.span(),
                format!(
                    "{field} must name an environment variable / app setting ([A-Za-z_][A-Za-z0-9_]*), found \"{}\"; secrets never go in this file",
                    clip(v)
                ),
            );
            None
        }
    }
    fn settings(&mut self, raw: RawSettings) -> Settings {
        let d = Settings::default();
        let mut s = Settings {
            dry_run: raw.dry_run.unwrap_or(d.dry_run),
            max_reverts_per_hour: raw.max_reverts_per_hour.unwrap_or(d.max_reverts_per_hour),
            time_budget_secs: d.time_budget_secs,
            self_principal_ids: Vec::new(),
            dedupe_ttl_secs: d.dedupe_ttl_secs,
            expiry_warning_days: raw.expiry_warning_days.unwrap_or(d.expiry_warning_days),
            audit_retention_days: d.audit_retention_days,
            tag_exemptions: raw.tag_exemptions.unwrap_or(d.tag_exemptions),
            max_exemption_days: d.max_exemption_days,
            estate_check: raw.estate_check.unwrap_or(d.estate_check),
            trusted_vaults: Vec::new(),
        };
        for v in &raw.trusted_vaults {
            match validate_vault(v.get_ref()) {
                Ok(host) => s.trusted_vaults.push(host),
                Err(msg) => self.at(v.span(), format!("trusted_vaults: {msg}")),
            }
        }
        if let Some(days) = raw.max_exemption_days {
            if *days.get_ref() == 0 {
                self.at(
                    days.span(),
                    "max_exemption_days must be greater than 0 (tag_exemptions = false turns tag exemptions off)"
                        .to_string(),
                );
            }
            s.max_exemption_days = days.into_inner();
        }
        if let Some(days) = raw.audit_retention_days {
            if *days.get_ref() == 0 {
                self.at(days.span(), "audit_retention_days must be greater than 0".to_string());
            }
            s.audit_retention_days = days.into_inner();
        }
        if let Some(tb) = raw.time_budget_secs {
            if *tb.get_ref() == 0 {
                self.at(tb.span(), "time_budget_secs must be greater than 0".to_string());
            }
            s.time_budget_secs = tb.into_inner();
        }
        if let Some(ttl) = raw.dedupe_ttl_secs {
            if *ttl.get_ref() == 0 {
                self.at(ttl.span(), "dedupe_ttl_secs must be greater than 0".to_string());
            }
            s.dedupe_ttl_secs = ttl.into_inner();
        }
        for id in raw.self_principal_ids {
            let v = id.get_ref().trim();
            if v.is_empty() || v.contains(char::is_whitespace) {
                self.at(
                    id.span(),
                    "self_principal_ids entries must be non-empty ids without spaces".to_string(),
                );
            } else if let Some(tool) = crate::event::public_client_name(v) {
                self.at(
                    id.span(),
                    format!(
                        "self_principal_ids: {v} is the application id of the {tool}, which every user of it shares; list keyguard's object id instead"
                    ),
                );
            } else {
                s.self_principal_ids.push(v.to_string());
            }
        }
        s
    }

    fn profile(&mut self, rp: RawProfile) -> Option<Profile> {
        let before = self.problems.len();
        let name = rp.name.get_ref().trim().to_string();
        if name.is_empty() {
            self.at(rp.name.span(), "profile name must not be empty".to_string());
        }
        let require = match rp.require.get_ref().trim() {
            "cmk" => Some(Requirement::Cmk),
            "mmk" => Some(Requirement::Mmk),
            "encrypted" => Some(Requirement::Encrypted),
            other => {
                let msg = format!("require must be one of cmk, mmk, encrypted (found \"{}\")", clip(other));
                self.at(rp.require.span(), msg);
                None
            }
        };
        let mode = match &rp.mode {
            None => Some(Mode::Alert),
            Some(m) => match m.get_ref().trim() {
                "audit" => Some(Mode::Audit),
                "alert" => Some(Mode::Alert),
                "enforce" => Some(Mode::Enforce),
                other => {
                    let msg = format!("mode must be one of audit, alert, enforce (found \"{}\")", clip(other));
                    self.at(m.span(), msg);
                    None
                }
            },
        };

        let mut allowed_vaults = Vec::new();
        for v in &rp.allowed_vaults {
            match validate_vault(v.get_ref()) {
                Ok(host) => allowed_vaults.push(host),
                Err(msg) => self.at(v.span(), format!("allowed_vaults: {msg}")),
            }
        }

        let pinned_key = match rp.pinned_key {
            None => None,
            Some(pk) => {
                let pk_span = pk.span();
                if require.is_some_and(|r| r != Requirement::Cmk) {
                    self.at(
                        pk_span.clone(),
                        format!("pinned_key is only allowed on a profile with require = \"cmk\" (profile \"{name}\")"),
                    );
                }
                let key = self.key_ref(pk.into_inner());
                if let Some(k) = &key
                    && !allowed_vaults.is_empty()
                    && !vault_allowed(&allowed_vaults, k)
                {
                    self.at(
                        pk_span,
                        format!(
                            "pinned_key vault {} is not in allowed_vaults of profile \"{name}\"",
                            k.vault_host().unwrap_or_default()
                        ),
                    );
                }
                key
            }
        };

        let allow_irreversible = match rp.allow_irreversible {
            None => false,
            Some(flag) => {
                // Only enforce mode writes: an opt-in elsewhere would promise something that never happens.
                if *flag.get_ref() && mode.is_some_and(|m| m != Mode::Enforce) {
                    self.at(
                        flag.span(),
                        format!("allow_irreversible only applies to mode = \"enforce\" (profile \"{name}\")"),
                    );
                }
                flag.into_inner()
            }
        };
        let scope = self.scope(rp.scope);
        if self.problems.len() != before {
            return None;
        }
        Some(Profile {
            name,
            require: require?,
            mode: mode?,
            allowed_vaults,
            pinned_key,
            allow_irreversible,
            scope,
        })
    }

    fn key_ref(&mut self, raw: RawKeyRef) -> Option<KeyRef> {
        let before = self.problems.len();
        if let Err(msg) = validate_vault(raw.vault_uri.get_ref()) {
            self.at(raw.vault_uri.span(), format!("pinned_key.vault_uri: {msg}"));
        }
        let name = raw.key_name.get_ref().trim();
        if name.is_empty() || name.len() > 127 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            self.at(
                raw.key_name.span(),
                "pinned_key.key_name must be 1-127 letters, digits or dashes".to_string(),
            );
        }
        if let Some(v) = &raw.key_version {
            let ver = v.get_ref().trim();
            if !ver.chars().all(|c| c.is_ascii_alphanumeric()) || ver.len() > 64 {
                self.at(
                    v.span(),
                    "pinned_key.key_version must be empty (versionless) or a key version id".to_string(),
                );
            }
        }
        if let Some(u) = &raw.user_assigned_identity {
            let ok = ResourceId::parse(u.get_ref().trim()).is_ok_and(|id| {
                id.resource_type()
                    .eq_ignore_ascii_case("Microsoft.ManagedIdentity/userAssignedIdentities")
            });
            if !ok {
                self.at(
                    u.span(),
                    "pinned_key.user_assigned_identity must be the resource id of a user-assigned managed identity"
                        .to_string(),
                );
            }
        }
        if self.problems.len() != before {
            return None;
        }
        match KeyRef::new(
            raw.vault_uri.get_ref(),
            name,
            raw.key_version.as_ref().map(|v| v.get_ref().as_str()),
            raw.user_assigned_identity.as_ref().map(|u| u.get_ref().as_str()),
        ) {
            Ok(key) => Some(key),
            Err(problem) => {
                self.at(raw.vault_uri.span(), format!("pinned_key: {problem}"));
                None
            }
        }
    }

    fn scope(&mut self, raw: RawScope) -> Scope {
        let mut scope = Scope::default();
        for s in raw.subscriptions {
            let v = s.get_ref().trim();
            if v.is_empty() || v.contains(['/', ' ', '*', '?']) {
                self.at(
                    s.span(),
                    "scope.subscriptions entries must be subscription ids (no paths or globs)".to_string(),
                );
            } else {
                scope.subscriptions.push(v.to_string());
            }
        }
        for g in raw.resource_groups {
            let v = g.get_ref().trim();
            if v.is_empty() {
                self.at(g.span(), "scope.resource_groups entries must not be empty".to_string());
            } else if let Err(e) = build_glob(v, false) {
                self.at(
                    g.span(),
                    format!(
                        "scope.resource_groups: invalid glob \"{}\": {}",
                        clip(v),
                        glob_error(&e)
                    ),
                );
            } else {
                scope.resource_groups.push(v.to_string());
            }
        }
        for (name, value) in raw.tags {
            if name.trim().is_empty() {
                self.at(value.span(), "scope.tags names must not be empty".to_string());
            } else {
                scope
                    .tags
                    .insert(name.trim().to_string(), value.get_ref().trim().to_string());
            }
        }
        for t in &raw.resource_types {
            if let Some(v) = self.resource_type("scope.resource_types", t) {
                scope.resource_types.push(v);
            }
        }
        scope
    }

    fn exemption(&mut self, raw: RawExemption) -> Option<Exemption> {
        let before = self.problems.len();
        let resource = raw.resource.get_ref().trim().to_string();
        if has_glob_meta(&resource) {
            if !resource.to_ascii_lowercase().starts_with("/subscriptions/") {
                self.at(
                    raw.resource.span(),
                    "exemption resource glob must start with \"/subscriptions/\"".to_string(),
                );
            } else if let Err(e) = build_glob(&resource, true) {
                self.at(
                    raw.resource.span(),
                    format!("exemption resource: invalid glob: {}", glob_error(&e)),
                );
            }
        } else if let Err(e) = ResourceId::parse(&resource) {
            self.at(
                raw.resource.span(),
                format!("exemption resource must be a resource id or a glob over ids: {e}"),
            );
        }
        let reason = raw.reason.get_ref().trim().to_string();
        if reason.is_empty() {
            self.at(raw.reason.span(), "exemption reason must not be empty".to_string());
        }
        let expires = match raw.expires {
            None => None,
            Some(e) => {
                let span = e.span();
                let parsed = match e.into_inner() {
                    toml::Value::Datetime(dt) => {
                        if dt.date.is_some() && dt.time.is_some() && dt.offset.is_none() {
                            Err("expires has no UTC offset; write a date (2027-01-31) or an instant with an offset (2027-01-31T00:00:00Z)".to_string())
                        } else {
                            parse_expiry(&dt.to_string()).map_err(|m| format!("expires: {m}"))
                        }
                    }
                    toml::Value::String(s) => parse_expiry(&s).map_err(|m| format!("expires: {m}")),
                    _ => Err("expires must be a date (2027-01-31) or an RFC 3339 date-time".to_string()),
                };
                match parsed {
                    Ok(at) => Some(at),
                    Err(msg) => {
                        self.at(span, msg);
                        None
                    }
                }
            }
        };
        if self.problems.len() != before {
            return None;
        }
        Some(Exemption {
            resource,
            reason,
            expires,
        })
    }
}

/// globset errors repeat the pattern; keep only the kind.
fn glob_error(e: &globset::Error) -> String {
    e.kind().to_string()
}

fn valid_route_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Accepts `https://{host}[/]` or a bare host; the host must be a Key Vault or Managed HSM name.
/// An allow-list entry or pinned vault: a vault URI or host, parsed as keys are, kept as the host.
pub(super) fn validate_vault(entry: &str) -> Result<String, NotAVault> {
    let e = entry.trim();
    VaultHost::parse(e)
        .map(|v| v.as_str().to_string())
        .map_err(|problem| NotAVault {
            entry: clip(e),
            problem,
        })
}

/// An allow-list entry or pinned vault that names no vault. The entry is clipped.
#[derive(Debug, thiserror::Error)]
#[error(
    "\"{entry}\" is not a Key Vault or Managed HSM URI or host ({problem}; expected e.g. https://kv-prod.vault.azure.net)"
)]
pub(super) struct NotAVault {
    entry: String,
    problem: KeyRefError,
}
