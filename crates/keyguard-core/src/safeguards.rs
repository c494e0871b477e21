//! The safeguards a write to a resource can change: its exemption tag, and the tags that choose
//! its profile.
//!
//! Tags are written by whoever can write the resource, the same person who can switch its key.
//! So a tag exemption is bounded by policy (`[settings] tag_exemptions`, `max_exemption_days`),
//! and a write that adds, extends or changes one, or that retags the resource into a profile that
//! accepts more or does less, is reported: people hear who did it and what changed.
//!
//! Pure: the handler remembers a [`SafeguardState`] per resource from its last look and hands it
//! back with the current one; [`changes`] says what differs in a way that matters.

use std::collections::BTreeSet;

use crate::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::config::{
    ExemptionSource, ExemptionStatus, Mode, Profile, Requirement, Settings, TAG_EXEMPT_REASON, TAG_EXEMPT_UNTIL,
    parse_expiry, tag_value,
};

/// Longest tag text kept (ARM allows 256 characters in a value).
const MAX_KEPT: usize = 256;
/// Longest tag text quoted in a message: the rest is the attacker's to fill.
const MAX_QUOTED: usize = 64;

/// A resource's exemption tags, as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExemptionTags {
    /// `keyguard-exempt-until`.
    pub until: Option<String>,
    /// `keyguard-exempt-reason`.
    pub reason: Option<String>,
}

impl ExemptionTags {
    /// Tag names are case-insensitive, as in ARM. A non-string value is kept as its JSON text.
    pub fn of(tags: &Map<String, Value>) -> ExemptionTags {
        let until = tags
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(TAG_EXEMPT_UNTIL))
            .map(|(_, v)| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        let reason = tag_value(tags, TAG_EXEMPT_REASON)
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        let keep = |s: String| s.chars().take(MAX_KEPT).collect::<String>();
        ExemptionTags {
            until: until.map(keep),
            reason: reason.map(keep),
        }
    }

    fn is_empty(&self) -> bool {
        self.until.is_none() && self.reason.is_none()
    }

    fn describe(&self) -> String {
        let mut text = format!("{TAG_EXEMPT_UNTIL}={}", quoted(self.until.as_deref()));
        if let Some(reason) = &self.reason {
            text.push_str(&format!(" ({TAG_EXEMPT_REASON}={})", quoted(Some(reason))));
        }
        text
    }
}

/// What the exemption tags do under the settings; the one place tag exemptions are decided.
pub(crate) fn tag_exemption(tags: &Map<String, Value>, now: OffsetDateTime, settings: &Settings) -> ExemptionStatus {
    let written = ExemptionTags::of(tags);
    let ignored = |value: &str, problem: String| ExemptionStatus::Invalid {
        source: ExemptionSource::Tag,
        value: value.chars().take(MAX_QUOTED).collect(),
        problem,
    };
    if !settings.tag_exemptions && !written.is_empty() {
        let value = written
            .until
            .as_deref()
            .or(written.reason.as_deref())
            .unwrap_or_default();
        return ignored(
            value,
            "tag exemptions are turned off ([settings] tag_exemptions = false)".to_string(),
        );
    }
    let Some(raw) = written.until else {
        return match written.reason {
            Some(reason) => ignored(
                &reason,
                format!(
                    "tag {TAG_EXEMPT_REASON} is set without {TAG_EXEMPT_UNTIL}; an exemption by tag needs an expiry"
                ),
            ),
            None => ExemptionStatus::None,
        };
    };
    let reason = written
        .reason
        .unwrap_or_else(|| format!("resource tag {TAG_EXEMPT_UNTIL}"));
    let at = match parse_expiry(&raw) {
        Ok(at) => at,
        Err(problem) => return ignored(&raw, format!("tag {TAG_EXEMPT_UNTIL}: {problem}")),
    };
    if at < now {
        return ExemptionStatus::Expired {
            source: ExemptionSource::Tag,
            reason,
            expired_at: at,
        };
    }
    let limit = now.checked_add(time::Duration::days(i64::from(settings.max_exemption_days)));
    if limit.is_some_and(|limit| at > limit) {
        return ignored(
            &raw,
            format!(
                "tag {TAG_EXEMPT_UNTIL}: {} is more than max_exemption_days ({}) ahead; a tag exemption may reach at most {} days ahead",
                rfc3339(at),
                settings.max_exemption_days,
                settings.max_exemption_days
            ),
        );
    }
    ExemptionStatus::Active {
        source: ExemptionSource::Tag,
        reason,
        expires: Some(at),
    }
}

/// What the exemption tag does, as a change report says it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum TagEffect {
    /// Honoured: keyguard leaves the resource alone until then.
    Exempts {
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
    /// Not honoured (expired, unreadable, too far ahead, tag exemptions off), and why.
    Ignored { why: String },
}

impl TagEffect {
    pub fn of(tags: &Map<String, Value>, now: OffsetDateTime, settings: &Settings) -> TagEffect {
        match tag_exemption(tags, now, settings) {
            ExemptionStatus::Active {
                expires: Some(until), ..
            } => TagEffect::Exempts { until },
            ExemptionStatus::Active { expires: None, .. } | ExemptionStatus::None => TagEffect::Ignored {
                why: "no exemption tag".to_string(),
            },
            ExemptionStatus::Expired { expired_at, .. } => TagEffect::Ignored {
                why: format!("it expired on {}", rfc3339(expired_at)),
            },
            ExemptionStatus::Invalid { problem, .. } => TagEffect::Ignored { why: problem },
        }
    }

    fn describe(&self) -> String {
        match self {
            TagEffect::Exempts { until } => format!("keyguard leaves the resource alone until {}", rfc3339(*until)),
            TagEffect::Ignored { why } => format!("it does not exempt the resource: {why}"),
        }
    }
}

/// The parts of a profile that decide how well a resource is protected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileFacts {
    pub name: String,
    pub require: Requirement,
    pub mode: Mode,
    /// Normalised vault hosts; empty: any vault.
    #[serde(default)]
    pub allowed_vaults: Vec<String>,
}

impl From<&Profile> for ProfileFacts {
    fn from(p: &Profile) -> Self {
        ProfileFacts {
            name: p.name.clone(),
            require: p.require,
            mode: p.mode,
            allowed_vaults: p.allowed_vaults.clone(),
        }
    }
}

impl ProfileFacts {
    fn describe(&self) -> String {
        format!("{} ({}, {})", self.name, self.require.as_str(), self.mode.as_str())
    }
}

/// What keyguard remembers of a resource's safeguards from one look.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SafeguardState {
    #[serde(default)]
    pub exemption: ExemptionTags,
    /// The profile that covered the resource; `None`: none did.
    pub profile: Option<ProfileFacts>,
    /// A collision-resistant digest of [`canonical_tags`]: whether a write changed any tag, so a
    /// profile change is told apart from a change of the configuration (which people review).
    pub tags_fingerprint: String,
}

impl SafeguardState {
    /// `fingerprint` digests the canonical tag text (the handler uses SHA-256; no I/O here).
    pub fn observe(
        tags: &Map<String, Value>,
        profile: Option<&Profile>,
        fingerprint: impl FnOnce(&str) -> String,
    ) -> SafeguardState {
        SafeguardState {
            exemption: ExemptionTags::of(tags),
            profile: profile.map(ProfileFacts::from),
            tags_fingerprint: fingerprint(&canonical_tags(tags)),
        }
    }
}

/// The tags in one deterministic text: names lower-cased (ARM compares them so), sorted, with
/// their values as JSON.
pub fn canonical_tags(tags: &Map<String, Value>) -> String {
    let mut pairs: Vec<(String, &Value)> = tags.iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    serde_json::to_string(&pairs).unwrap_or_default()
}

/// How an exemption tag changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExemptionTagChange {
    /// In force when keyguard first looked at the resource, right after a write to it (a
    /// resource created exempt, or one keyguard had not seen).
    FirstSeen,
    Added,
    /// A later expiry.
    Extended,
    /// Anything else: an earlier or unreadable expiry, another reason.
    Changed,
}

/// One way the new profile protects less than the one before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "weakening", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Weakening {
    /// Microsoft-managed keys, drift before, are accepted now.
    AcceptsMicrosoftKeys,
    /// Customer-managed keys from these vaults (`None`: any vault), drift before, are accepted now.
    AcceptsCustomerKeys { vaults: Option<Vec<String>> },
    /// Drift is handled less: enforce > alert > audit.
    Mode { from: Mode, to: Mode },
    /// No profile covers the resource any more: it is not judged at all.
    Unjudged,
}

impl Weakening {
    fn describe(&self) -> String {
        match self {
            Weakening::AcceptsMicrosoftKeys => "now accepts Microsoft-managed keys".to_string(),
            Weakening::AcceptsCustomerKeys { vaults: None } => {
                "now accepts a customer-managed key from any vault".to_string()
            }
            Weakening::AcceptsCustomerKeys { vaults: Some(v) } => {
                format!("now accepts customer-managed keys from {}", v.join(", "))
            }
            Weakening::Mode { from, to } => format!("mode {} (was {})", to.as_str(), from.as_str()),
            Weakening::Unjudged => "no profile covers it any more: keyguard no longer judges it".to_string(),
        }
    }
}

/// A change to a resource's safeguards that people should hear about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum SafeguardChange {
    ExemptionTag {
        kind: ExemptionTagChange,
        before: ExemptionTags,
        after: ExemptionTags,
        effect: TagEffect,
    },
    /// A tag change moved the resource into a profile that protects it less.
    WeakerProfile {
        before: ProfileFacts,
        after: Option<ProfileFacts>,
        weakened: Vec<Weakening>,
    },
}

impl SafeguardChange {
    /// One sentence for the audit record and the alert.
    pub fn describe(&self) -> String {
        match self {
            SafeguardChange::ExemptionTag {
                kind,
                before,
                after,
                effect,
            } => {
                let what = match kind {
                    ExemptionTagChange::FirstSeen => {
                        format!("carries {} (keyguard's first look at it)", after.describe())
                    }
                    ExemptionTagChange::Added => format!("exemption tag added: {}", after.describe()),
                    ExemptionTagChange::Extended => format!(
                        "exemption extended from {} to {}",
                        quoted(before.until.as_deref()),
                        quoted(after.until.as_deref())
                    ),
                    ExemptionTagChange::Changed => {
                        format!(
                            "exemption tag changed from {} to {}",
                            before.describe(),
                            after.describe()
                        )
                    }
                };
                format!("{what}; {}", effect.describe())
            }
            SafeguardChange::WeakerProfile {
                before,
                after,
                weakened,
            } => {
                let into = after
                    .as_ref()
                    .map_or_else(|| "no profile".to_string(), ProfileFacts::describe);
                let how: Vec<String> = weakened.iter().map(Weakening::describe).collect();
                format!(
                    "retagged from profile {} into {into}: {}",
                    before.describe(),
                    how.join("; ")
                )
            }
        }
    }
}

/// Why keyguard looks at the resource now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    /// After a write event: on a resource keyguard has no record of, the write may be the one
    /// that added the exemption tag (a resource created exempt).
    AfterWrite,
    /// A sweep, a check, the timer: a first look at a tag is not a write anybody just made.
    Routine,
}

/// What changed between the last look (`before`; `None`: keyguard had not recorded one) and this
/// one, in a way people should hear about. `effect` is what the exemption tags do now.
pub fn changes(
    before: Option<&SafeguardState>,
    after: &SafeguardState,
    effect: &TagEffect,
    look: Look,
    settings: &Settings,
) -> Vec<SafeguardChange> {
    let mut out = Vec::new();
    // With tag exemptions off, exemption tags change nothing.
    if settings.tag_exemptions
        && let Some(kind) = exemption_change(before.map(|b| &b.exemption), &after.exemption, effect, look)
    {
        out.push(SafeguardChange::ExemptionTag {
            kind,
            before: before.map(|b| b.exemption.clone()).unwrap_or_default(),
            after: after.exemption.clone(),
            effect: effect.clone(),
        });
    }
    // A profile change is a retag only when a tag changed: otherwise the configuration did it.
    if let Some(before) = before
        && before.tags_fingerprint != after.tags_fingerprint
        && let Some(previous) = &before.profile
        && after
            .profile
            .as_ref()
            .is_none_or(|now| !now.name.eq_ignore_ascii_case(&previous.name))
    {
        let weakened = weakenings(previous, after.profile.as_ref());
        if !weakened.is_empty() {
            out.push(SafeguardChange::WeakerProfile {
                before: previous.clone(),
                after: after.profile.clone(),
                weakened,
            });
        }
    }
    out
}

fn exemption_change(
    before: Option<&ExemptionTags>,
    after: &ExemptionTags,
    effect: &TagEffect,
    look: Look,
) -> Option<ExemptionTagChange> {
    let until = after.until.as_ref()?;
    let Some(before) = before else {
        // Never looked at before: only an exemption in force, right after a write, is news.
        let news = look == Look::AfterWrite && matches!(effect, TagEffect::Exempts { .. });
        return news.then_some(ExemptionTagChange::FirstSeen);
    };
    match &before.until {
        None => Some(ExemptionTagChange::Added),
        Some(previous) if previous == until => (before.reason != after.reason).then_some(ExemptionTagChange::Changed),
        Some(previous) => match (parse_expiry(previous), parse_expiry(until)) {
            (Ok(was), Ok(now)) if now > was => Some(ExemptionTagChange::Extended),
            _ => Some(ExemptionTagChange::Changed),
        },
    }
}

/// How `after` protects less than `before`: key sources it accepts that `before` called drift,
/// and a milder mode. Empty: it protects as much or more.
pub fn weakenings(before: &ProfileFacts, after: Option<&ProfileFacts>) -> Vec<Weakening> {
    let Some(after) = after else {
        return vec![Weakening::Unjudged];
    };
    let mut out = Vec::new();
    if accepts_microsoft_keys(after) && !accepts_microsoft_keys(before) {
        out.push(Weakening::AcceptsMicrosoftKeys);
    }
    let newly_accepted = match (customer_key_vaults(before), customer_key_vaults(after)) {
        (_, Vaults::None) | (Vaults::Any, _) => None,
        (Vaults::None | Vaults::Only(_), Vaults::Any) => Some(None),
        (Vaults::None, Vaults::Only(vaults)) => Some(Some(vaults.into_iter().collect())),
        (Vaults::Only(was), Vaults::Only(now)) => {
            let added: Vec<String> = now.difference(&was).cloned().collect();
            (!added.is_empty()).then_some(Some(added))
        }
    };
    if let Some(vaults) = newly_accepted {
        out.push(Weakening::AcceptsCustomerKeys { vaults });
    }
    if mode_rank(after.mode) < mode_rank(before.mode) {
        out.push(Weakening::Mode {
            from: before.mode,
            to: after.mode,
        });
    }
    out
}

fn accepts_microsoft_keys(p: &ProfileFacts) -> bool {
    matches!(p.require, Requirement::Mmk | Requirement::Encrypted)
}

/// Which vaults' customer-managed keys a profile accepts.
enum Vaults {
    None,
    Any,
    Only(BTreeSet<String>),
}

fn customer_key_vaults(p: &ProfileFacts) -> Vaults {
    match p.require {
        Requirement::Mmk => Vaults::None,
        Requirement::Cmk | Requirement::Encrypted if p.allowed_vaults.is_empty() => Vaults::Any,
        Requirement::Cmk | Requirement::Encrypted => {
            Vaults::Only(p.allowed_vaults.iter().map(|v| v.trim().to_ascii_lowercase()).collect())
        }
    }
}

fn mode_rank(mode: Mode) -> u8 {
    match mode {
        Mode::Audit => 0,
        Mode::Alert => 1,
        Mode::Enforce => 2,
    }
}

fn quoted(value: Option<&str>) -> String {
    match value {
        Some(v) => format!("\"{}\"", v.chars().take(MAX_QUOTED).collect::<String>()),
        None => "(none)".to_string(),
    }
}

#[cfg(test)]
#[path = "safeguards_tests.rs"]
mod tests;
