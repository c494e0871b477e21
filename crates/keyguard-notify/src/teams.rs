//! Microsoft Teams.
//!
//! Office 365 connector webhooks (MessageCard) were retired through 2025; new tenants post through a
//! Teams Workflows (Power Automate) "webhook request received" flow, which expects an Adaptive Card in
//! a Bot Framework `message` envelope. The MessageCard stays only for tenants still on connectors.

use std::fmt;

use serde_json::{Value, json};

use crate::render::{self, Content, markdown_escape};
use crate::{Alert, Channel, ConfigError, Secret, SendError, SendFuture, Severity, http};

/// The card version Teams renders today; newer elements would silently disappear.
pub const ADAPTIVE_CARD_VERSION: &str = "1.5";
pub const ADAPTIVE_CARD_SCHEMA: &str = "http://adaptivecards.io/schemas/adaptive-card.json";

/// The Adaptive Card for one alert. Pure, so it can be snapshot-tested and validated offline.
pub fn adaptive_card(alert: &Alert) -> Value {
    let c = render::content(alert);
    let style = container_style(alert.severity);

    let mut body = vec![json!({
        "type": "Container",
        "style": style,
        "bleed": true,
        "items": [
            {
                "type": "TextBlock",
                "text": markdown_escape(&c.title),
                "style": "heading",
                "size": "Large",
                "weight": "Bolder",
                "wrap": true
            },
            {
                "type": "TextBlock",
                "text": format!("Severity: {} | keyguard encryption key-source drift", c.severity),
                "isSubtle": true,
                "spacing": "None",
                "wrap": true
            }
        ]
    })];

    body.push(heading("What keyguard did"));
    let mut did = json!({
        "type": "TextBlock",
        "text": markdown_escape(&c.outcome),
        "wrap": true
    });
    if alert.outcome.needs_human() {
        did["color"] = json!("Attention");
        did["weight"] = json!("Bolder");
    }
    body.push(did);
    if let Some(detail) = &c.detail {
        body.push(json!({
            "type": "TextBlock",
            "text": markdown_escape(detail),
            "isSubtle": true,
            "wrap": true
        }));
    }

    for section in &c.sections {
        body.push(heading(section.heading));
        let facts: Vec<Value> = section
            .facts
            .iter()
            .map(|f| json!({ "title": f.label, "value": markdown_escape(&f.value) }))
            .collect();
        body.push(json!({ "type": "FactSet", "facts": facts }));
    }

    json!({
        "type": "AdaptiveCard",
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "version": ADAPTIVE_CARD_VERSION,
        "fallbackText": fallback_text(&c),
        "body": body,
        "actions": [
            {
                "type": "Action.OpenUrl",
                "title": "Open in Azure portal",
                "url": c.portal_url
            }
        ]
    })
}

fn container_style(severity: Severity) -> &'static str {
    match severity {
        Severity::High | Severity::Critical => "attention",
        Severity::Warning => "warning",
        Severity::Info => "accent",
    }
}

/// One Adaptive Card (1.5) for several alerts: a header with the count per outcome in the highest
/// severity's style, then one compact section per alert (title, key facts, its own portal button),
/// at most 25, then "and N more (see keyguard alerts)". Values are cleaned and Markdown-escaped exactly
/// as in [`adaptive_card`]. An empty slice gives a harmless "No encryption drift alerts" card.
pub fn digest_card(alerts: &[Alert]) -> Value {
    let d = render::digest(alerts);
    let mut header = vec![json!({
        "type": "TextBlock",
        "text": markdown_escape(&d.heading),
        "style": "heading",
        "size": "Large",
        "weight": "Bolder",
        "wrap": true
    })];
    let subtitle = if d.counts.is_empty() {
        "keyguard encryption key-source drift digest".to_string()
    } else {
        format!(
            "{} | Highest severity: {} | keyguard encryption key-source drift digest",
            d.counts, d.severity
        )
    };
    header.push(json!({
        "type": "TextBlock",
        "text": markdown_escape(&subtitle),
        "isSubtle": true,
        "spacing": "None",
        "wrap": true
    }));
    let mut body = vec![json!({
        "type": "Container",
        "style": container_style(d.severity),
        "bleed": true,
        "items": header
    })];
    if alerts.is_empty() {
        body.push(json!({
            "type": "TextBlock",
            "text": "This digest contains no alerts.",
            "wrap": true
        }));
    }

    for entry in &d.entries {
        let mut title = json!({
            "type": "TextBlock",
            "text": markdown_escape(&entry.title),
            "weight": "Bolder",
            "wrap": true
        });
        if entry.needs_human {
            title["color"] = json!("Attention");
        }
        let facts: Vec<Value> = entry
            .facts
            .iter()
            .map(|f| json!({ "title": f.label, "value": markdown_escape(&f.value) }))
            .collect();
        body.push(json!({
            "type": "Container",
            "separator": true,
            "spacing": "Medium",
            "items": [
                title,
                { "type": "FactSet", "facts": facts },
                {
                    "type": "ActionSet",
                    "actions": [
                        { "type": "Action.OpenUrl", "title": "Open in Azure portal", "url": entry.portal_url }
                    ]
                }
            ]
        }));
    }
    if let Some(more) = &d.overflow {
        body.push(json!({
            "type": "TextBlock",
            "text": markdown_escape(more),
            "weight": "Bolder",
            "separator": true,
            "spacing": "Medium",
            "wrap": true
        }));
    }

    let fallback = if d.counts.is_empty() {
        d.heading.clone()
    } else {
        format!("{} ({})", d.heading, d.counts)
    };
    json!({
        "type": "AdaptiveCard",
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "version": ADAPTIVE_CARD_VERSION,
        "fallbackText": fallback,
        "body": body
    })
}

/// [`digest_card`] in the `message` envelope a Teams Workflows webhook expects.
pub fn digest_workflows_payload(alerts: &[Alert]) -> Value {
    wrap_card(digest_card(alerts))
}

/// Legacy MessageCard digest: one section per alert (at most 25) with its own portal button.
/// `markdown: false` everywhere, as in [`message_card`].
pub fn digest_message_card(alerts: &[Alert]) -> Value {
    let d = render::digest(alerts);
    let theme = theme_color(d.severity, d.needs_human);
    let title = if d.counts.is_empty() {
        d.heading.clone()
    } else {
        format!("{} ({})", d.heading, d.counts)
    };
    let mut sections = vec![json!({
        "activityTitle": title,
        "activitySubtitle": format!("Highest severity: {}", d.severity),
        "text": if alerts.is_empty() { "This digest contains no alerts." } else { "keyguard encryption key-source drift digest" },
        "markdown": false
    })];
    for entry in &d.entries {
        let facts: Vec<Value> = entry
            .facts
            .iter()
            .map(|f| json!({ "name": f.label, "value": f.value }))
            .collect();
        sections.push(json!({
            "title": entry.title,
            "facts": facts,
            "markdown": false,
            "potentialAction": [
                {
                    "@type": "OpenUri",
                    "name": "Open in Azure portal",
                    "targets": [ { "os": "default", "uri": entry.portal_url } ]
                }
            ]
        }));
    }
    if let Some(more) = &d.overflow {
        sections.push(json!({ "text": more, "markdown": false }));
    }
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": title,
        "title": title,
        "themeColor": theme,
        "sections": sections
    })
}

fn theme_color(severity: Severity, needs_human: bool) -> &'static str {
    match (severity, needs_human) {
        (Severity::High | Severity::Critical, _) | (_, true) => "D70000",
        (Severity::Warning, _) => "FFA500",
        (Severity::Info, _) => "0078D7",
    }
}

fn wrap_card(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card
            }
        ]
    })
}

fn heading(text: &str) -> Value {
    json!({
        "type": "TextBlock",
        "text": text,
        "weight": "Bolder",
        "spacing": "Medium",
        "separator": true,
        "wrap": true
    })
}

/// Shown by clients that cannot render the card (and in notifications), so it must carry the gist.
fn fallback_text(c: &Content) -> String {
    format!("{} {}", c.title, c.outcome)
}

/// The body a Teams Workflows webhook expects: the card as the single attachment of a `message`.
pub fn workflows_payload(alert: &Alert) -> Value {
    wrap_card(adaptive_card(alert))
}

/// Legacy Office 365 connector MessageCard. `markdown: false` because connector Markdown would turn
/// attacker-chosen names into links, and MessageCard has no escaping rules worth trusting.
pub fn message_card(alert: &Alert) -> Value {
    let c = render::content(alert);
    let theme = theme_color(alert.severity, alert.outcome.needs_human());
    let mut sections = vec![json!({
        "activityTitle": "What keyguard did",
        "activitySubtitle": format!("Severity: {}", c.severity),
        "text": match &c.detail {
            Some(d) => format!("{} {}", c.outcome, d),
            None => c.outcome.clone(),
        },
        "markdown": false
    })];
    for section in &c.sections {
        let facts: Vec<Value> = section
            .facts
            .iter()
            .map(|f| json!({ "name": f.label, "value": f.value }))
            .collect();
        sections.push(json!({
            "title": section.heading,
            "facts": facts,
            "markdown": false
        }));
    }
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": c.title,
        "title": c.title,
        "themeColor": theme,
        "sections": sections,
        "potentialAction": [
            {
                "@type": "OpenUri",
                "name": "Open in Azure portal",
                "targets": [ { "os": "default", "uri": c.portal_url } ]
            }
        ]
    })
}

/// Posts alerts to a Teams Workflows webhook (or a legacy connector when `legacy`).
///
/// The URL is a [`Secret`]: Workflows URLs carry a `sig=` query that alone authorises posting.
pub struct TeamsChannel {
    name: String,
    url: Secret,
    legacy: bool,
    client: reqwest::Client,
}

impl TeamsChannel {
    /// `legacy = true` posts a MessageCard to an Office 365 connector URL instead of an Adaptive Card
    /// to a Workflows URL.
    pub fn new(webhook_url: Secret, legacy: bool) -> Result<Self, ConfigError> {
        Self::with_client(webhook_url, legacy, http::default_client()?)
    }

    /// Shares a connection pool with the rest of the handler.
    pub fn with_client(webhook_url: Secret, legacy: bool, client: reqwest::Client) -> Result<Self, ConfigError> {
        http::check_url(&webhook_url, "Teams webhook")?;
        Ok(TeamsChannel {
            name: "teams".into(),
            url: webhook_url,
            legacy,
            client,
        })
    }

    /// Distinguishes several Teams channels (e.g. per team) in logs and the outbox.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn payload(&self, alert: &Alert) -> Value {
        if self.legacy {
            message_card(alert)
        } else {
            workflows_payload(alert)
        }
    }

    /// What [`Channel::send_digest`] posts: [`digest_message_card`] when `legacy`, else
    /// [`digest_workflows_payload`].
    pub fn digest_payload(&self, alerts: &[Alert]) -> Value {
        if self.legacy {
            digest_message_card(alerts)
        } else {
            digest_workflows_payload(alerts)
        }
    }
}

impl fmt::Debug for TeamsChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsChannel")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("legacy", &self.legacy)
            .finish_non_exhaustive()
    }
}

impl Channel for TeamsChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            let request = self.client.post(self.url.expose()).json(&self.payload(alert));
            http::deliver(request, &self.url, "Teams webhook").await
        })
    }

    fn send_digest<'a>(&'a self, alerts: &'a [Alert]) -> SendFuture<'a> {
        Box::pin(async move {
            if alerts.is_empty() {
                return Err(SendError::empty_digest());
            }
            let request = self.client.post(self.url.expose()).json(&self.digest_payload(alerts));
            http::deliver(request, &self.url, "Teams webhook").await
        })
    }
}
