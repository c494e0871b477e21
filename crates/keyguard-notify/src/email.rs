//! Email over SMTP.
//!
//! Azure blocks outbound port 25 for most subscriptions, so production uses an authenticated relay on
//! 587 (STARTTLS) or 465 (implicit TLS). Plain SMTP exists only for local relays and tests.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use maud::{DOCTYPE, Markup, html};

use crate::render::{self, Fact};
use crate::{Alert, Channel, ConfigError, Secret, SendError, SendFuture, Severity};

/// Last line of every body, text and HTML.
const SIGNATURE: &str = "Sent by keyguard, encryption key-source drift guard.";

/// Subject line, e.g. "[keyguard] Drift reverted: storage account stpayments (rg-prod)".
pub fn subject(alert: &Alert) -> String {
    format!("[keyguard] {}", alert.title())
}

/// Plain-text body with the same content as the Teams card.
pub fn text_body(alert: &Alert) -> String {
    let c = render::content(alert);
    let mut out = String::new();
    let _ = writeln!(out, "{}", c.title);
    let _ = writeln!(out, "Severity: {}", c.severity);
    let _ = writeln!(out);
    let _ = writeln!(out, "What keyguard did");
    let _ = writeln!(out, "  {}", c.outcome);
    if let Some(d) = &c.detail {
        let _ = writeln!(out, "  Detail: {d}");
    }
    let width = c
        .sections
        .iter()
        .flat_map(|s| s.facts.iter())
        .map(|f| f.label.len())
        .max()
        .unwrap_or(0);
    for section in &c.sections {
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", section.heading);
        for f in &section.facts {
            let _ = writeln!(
                out,
                "  {:width$}  {}",
                format!("{}:", f.label),
                f.value,
                width = width + 1
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Open in Azure portal: {}", c.portal_url);
    let _ = writeln!(out);
    let _ = writeln!(out, "-- ");
    let _ = writeln!(out, "{SIGNATURE}");
    out
}

/// HTML body with the same content. maud escapes every interpolated value, because resource names,
/// callers and error details are attacker-influenced (`render` has already cleaned them of control
/// and bidi characters).
pub fn html_body(alert: &Alert) -> String {
    let c = render::content(alert);
    let content = html! {
        p style={ "color:" (MUTED) ";margin:0 0 16px 0" } { "Severity: " (c.severity) }
        h3 style=(SECTION_HEADING) { "What keyguard did" }
        p style="margin:0" {
            @if alert.outcome.needs_human() { strong { (c.outcome) } } @else { (c.outcome) }
        }
        @if let Some(detail) = &c.detail {
            p style={ "margin:4px 0 0 0;color:" (MUTED) } { "Detail: " (detail) }
        }
        @for section in &c.sections {
            h3 style=(SECTION_HEADING) { (section.heading) }
            (facts_table(&section.facts))
        }
        p style="margin:20px 0" {
            a href=(c.portal_url)
                style="background:#0078d4;color:#ffffff;padding:8px 14px;text-decoration:none;border-radius:2px"
            { "Open in Azure portal" }
        }
    };
    document(
        &c.title,
        banner_color(alert.outcome.needs_human(), alert.severity),
        content,
    )
}

/// Digest subject, e.g. "[keyguard] 3 encryption drift alerts (2 reverted, 1 revert failed)".
pub fn digest_subject(alerts: &[Alert]) -> String {
    let d = render::digest(alerts);
    if d.counts.is_empty() {
        format!("[keyguard] {}", d.heading)
    } else {
        format!("[keyguard] {} ({})", d.heading, d.counts)
    }
}

/// Plain-text digest: a summary, then one numbered section per alert (at most 25) with its facts and
/// portal link, then "and N more (see keyguard alerts)" when alerts were left out.
pub fn digest_text_body(alerts: &[Alert]) -> String {
    let d = render::digest(alerts);
    let mut out = String::new();
    let _ = writeln!(out, "{}", d.heading);
    if d.counts.is_empty() {
        let _ = writeln!(out, "This digest contains no alerts.");
    } else {
        let _ = writeln!(out, "{}", d.counts);
        let _ = writeln!(out, "Highest severity: {}", d.severity);
    }
    let width = d
        .entries
        .iter()
        .flat_map(|e| e.facts.iter())
        .map(|f| f.label.len())
        .max()
        .unwrap_or(0);
    for (i, entry) in d.entries.iter().enumerate() {
        let _ = writeln!(out);
        let _ = writeln!(out, "{}. {}", i + 1, entry.title);
        for f in &entry.facts {
            let _ = writeln!(
                out,
                "   {:width$}  {}",
                format!("{}:", f.label),
                f.value,
                width = width + 1
            );
        }
        let _ = writeln!(out, "   Open in Azure portal: {}", entry.portal_url);
    }
    if let Some(more) = &d.overflow {
        let _ = writeln!(out);
        let _ = writeln!(out, "{more}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "-- ");
    let _ = writeln!(out, "{SIGNATURE}");
    out
}

/// HTML digest with the same content as [`digest_text_body`]; maud escapes every value.
pub fn digest_html_body(alerts: &[Alert]) -> String {
    let d = render::digest(alerts);
    let content = html! {
        @if d.counts.is_empty() {
            p style="margin:0 0 16px 0" { "This digest contains no alerts." }
        } @else {
            p style={ "color:" (MUTED) ";margin:0 0 16px 0" } { (d.counts) " | Highest severity: " (d.severity) }
        }
        @for entry in &d.entries {
            @let color = if entry.needs_human { NEEDS_HUMAN } else { INK };
            h3 style={ "margin:20px 0 4px 0;padding-top:8px;border-top:1px solid #e1dfdd;color:" (color) } {
                (entry.title)
            }
            (facts_table(&entry.facts))
            p style="margin:6px 0" { a href=(entry.portal_url) { "Open in Azure portal" } }
        }
        @if let Some(more) = &d.overflow {
            p style="margin:20px 0;font-weight:bold" { (more) }
        }
    };
    document(&d.heading, banner_color(d.needs_human, d.severity), content)
}

// Email clients drop <style> blocks and external CSS, so every element carries its own inline style.
const INK: &str = "#201f1e";
const MUTED: &str = "#605e5c";
/// Red for anything a person still has to act on, whatever its severity.
const NEEDS_HUMAN: &str = "#a4262c";
const SECTION_HEADING: &str = "margin:16px 0 4px 0";

/// The frame both bodies share: the title as the document title and as the coloured heading, the
/// given content, then the signature.
fn document(title: &str, banner: &str, content: Markup) -> String {
    html! {
        (DOCTYPE)
        html {
            head {
                meta charset="utf-8";
                title { (title) }
            }
            body style={ "font-family:Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;color:" (INK) } {
                h2 style={ "color:" (banner) ";margin:0 0 4px 0" } { (title) }
                (content)
                p style={ "color:" (MUTED) ";font-size:12px" } { (SIGNATURE) }
            }
        }
    }
    .into_string()
}

/// Label/value rows; values can be long ids or key URIs, so they may break anywhere.
fn facts_table(facts: &[Fact]) -> Markup {
    html! {
        table style="border-collapse:collapse" {
            @for f in facts {
                tr {
                    th style="text-align:left;padding:2px 12px 2px 0;vertical-align:top" { (f.label) }
                    td style="padding:2px 0;word-break:break-all" { (f.value) }
                }
            }
        }
    }
}

fn banner_color(needs_human: bool, severity: Severity) -> &'static str {
    if needs_human {
        return NEEDS_HUMAN;
    }
    match severity {
        Severity::High | Severity::Critical => "#a4262c",
        Severity::Warning => "#8a5a00",
        Severity::Info => "#0063b1",
    }
}

/// How to talk to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpSecurity {
    /// Port 587: plain connect, then mandatory STARTTLS (fails rather than falling back to plain).
    StartTls,
    /// Port 465: TLS from the first byte.
    ImplicitTls,
    /// Plain text, for local relays and tests only: credentials would cross the network unencrypted.
    None,
}

/// Relay and addressing. `Debug` is safe to log: the password is a [`Secret`].
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    /// Bounds one whole send (connect, TLS, AUTH, DATA), so a stalled relay cannot hold up the outbox.
    pub timeout: Duration,
}

/// Sends multipart (text + HTML) alerts, one SMTP connection per alert.
///
/// Not pooled on purpose: lettre's async transport applies its timeout to connecting only, so the
/// whole send is bounded by a tokio timeout here, and a dialogue cancelled half-way must not go back
/// into a pool where the next alert would read the previous command's reply. Alerts are rare, so the
/// extra handshake per message costs nothing that matters.
pub struct EmailChannel {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// Kept only to scrub it from relay error text before it reaches logs or the outbox.
    password: Option<Secret>,
    host: String,
    port: u16,
    timeout: Duration,
}

impl EmailChannel {
    pub fn new(settings: SmtpSettings) -> Result<Self, ConfigError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|_| ConfigError::InvalidAddress(settings.from.clone()))?;
        let to = settings
            .to
            .iter()
            .map(|a| a.parse::<Mailbox>().map_err(|_| ConfigError::InvalidAddress(a.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(ConfigError::NoRecipients);
        }

        let builder = match settings.security {
            SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                .map_err(|e| ConfigError::Smtp(e.to_string()))?,
            SmtpSecurity::ImplicitTls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)
                .map_err(|e| ConfigError::Smtp(e.to_string()))?,
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host),
        };
        let mut builder = builder.port(settings.port).timeout(Some(settings.timeout));
        match (&settings.username, &settings.password) {
            (Some(user), Some(pass)) => {
                builder = builder.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError::Smtp("username and password must be set together".into()));
            }
        }

        Ok(EmailChannel {
            name: "email".into(),
            transport: builder.build(),
            from,
            to,
            password: settings.password,
            host: settings.host,
            port: settings.port,
            timeout: settings.timeout,
        })
    }

    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The complete message, exposed so callers can preview or archive exactly what is sent.
    pub fn message(&self, alert: &Alert) -> Result<Message, SendError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject(alert))
            .message_id(Some(message_id(alert, &self.from)));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text_body(alert), html_body(alert)))
            .map_err(|e| SendError::Permanent(format!("cannot build email: {e}")))
    }

    /// The complete digest message: [`digest_subject`], text + HTML, and a Message-ID derived from
    /// every alert's identity (correlation id, outcome, repeats, time, resource), so a retry of the
    /// same digest carries the same Message-ID. Fails with `Permanent("empty digest")` for no alerts.
    pub fn digest_message(&self, alerts: &[Alert]) -> Result<Message, SendError> {
        if alerts.is_empty() {
            return Err(SendError::empty_digest());
        }
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(digest_subject(alerts))
            .message_id(Some(digest_message_id(alerts, &self.from)));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                digest_text_body(alerts),
                digest_html_body(alerts),
            ))
            .map_err(|e| SendError::Permanent(format!("cannot build email: {e}")))
    }

    /// One bounded SMTP dialogue for a prepared message.
    async fn deliver(&self, message: Message) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(result) => result.map(|_| ()).map_err(|e| self.classify(&e)),
            Err(_) => Err(SendError::Retryable(format!(
                "SMTP {}:{}: no answer within {}s",
                self.host,
                self.port,
                self.timeout.as_secs()
            ))),
        }
    }

    fn classify(&self, e: &lettre::transport::smtp::Error) -> SendError {
        let msg = format!("SMTP {}:{}: {e}", self.host, self.port);
        let msg = match &self.password {
            Some(p) if !p.expose().is_empty() => msg.replace(p.expose(), "[redacted]"),
            _ => msg,
        };
        // Order matters: a 5xx reply is permanent even though it arrived over a working connection;
        // TLS failures are usually a certificate or configuration problem that retrying will not fix.
        if e.is_permanent() || e.is_client() || e.is_tls() {
            SendError::Permanent(msg)
        } else {
            SendError::Retryable(msg)
        }
    }
}

/// Deterministic per alert (correlation id, outcome, repeats), so an outbox retry after a lost
/// `250 OK` produces the same Message-ID and mail systems can drop the duplicate.
fn message_id(alert: &Alert, from: &Mailbox) -> String {
    hashed_id(&identity(alert), from)
}

/// The same identity per alert as [`message_id`], sorted so the order alerts were collected in does
/// not matter, under a distinct prefix so a one-alert digest never collides with the single alert.
fn digest_message_id(alerts: &[Alert], from: &Mailbox) -> String {
    let mut ids: Vec<Vec<u8>> = alerts.iter().map(identity).collect();
    ids.sort();
    let mut input = b"digest\0".to_vec();
    for id in ids {
        input.extend_from_slice(&(id.len() as u64).to_be_bytes());
        input.extend_from_slice(&id);
    }
    hashed_id(&input, from)
}

fn identity(alert: &Alert) -> Vec<u8> {
    let mut input = Vec::new();
    for part in [
        alert.correlation_id.as_str(),
        &format!("{:?}", alert.outcome),
        &alert.repeats.to_string(),
        &alert.occurred_at,
        &alert.resource_id,
    ] {
        input.extend_from_slice(part.as_bytes());
        input.push(0);
    }
    input
}

fn hashed_id(input: &[u8], from: &Mailbox) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input);
    let mut id = String::from("<keyguard.");
    for b in &digest.as_ref()[..16] {
        let _ = write!(id, "{b:02x}");
    }
    let _ = write!(id, "@{}>", from.email.domain());
    id
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from.to_string())
            .field("to", &self.to.iter().map(ToString::to_string).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Channel for EmailChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            let message = self.message(alert)?;
            self.deliver(message).await
        })
    }

    fn send_digest<'a>(&'a self, alerts: &'a [Alert]) -> SendFuture<'a> {
        Box::pin(async move {
            let message = self.digest_message(alerts)?;
            self.deliver(message).await
        })
    }
}
