use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyguard_notify::{
    Alert, AlertOutcome, Channel, EmailChannel, Secret, SendError, SmtpSecurity, SmtpSettings, email,
};
use serde_json::Value;

use crate::support::{digest_alerts, hostile_alert, manifest_dir, shown_name, temp_file};

const USER: &str = "keyguard-test";
const PASSWORD: &str = "S3cr3t-smtp-PaSsW0rd";

/// aiosmtpd in a child process; killed on drop so a failing test does not leak servers.
struct Sink {
    child: Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Sink {
    fn start(extra: &[&str]) -> Sink {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let out = temp_file("mail.jsonl");
        let python = std::env::var("KEYGUARD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(manifest_dir().join("tests/smtp_sink.py"))
            .arg(port.to_string())
            .arg(&out)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{python}` (install Python 3): {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!(
                    "smtp_sink.py exited with {status}; is aiosmtpd installed (`pip install aiosmtpd==1.4.6`)?\n{err}"
                );
            }
            assert!(Instant::now() < deadline, "smtp_sink.py did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sink { child, port, out }
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

fn settings(port: u16, password: &str) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: Some(USER.into()),
        password: Some(Secret::new(password)),
        from: "keyguard <keyguard@alerts.contoso.com>".into(),
        to: vec![
            "secops@contoso.com".into(),
            "Cloud Team <cloud-team@contoso.com>".into(),
        ],
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn delivers_multipart_alert_with_auth_to_every_recipient() {
    let sink = Sink::start(&["--user", USER, "--password", PASSWORD]);
    let channel = EmailChannel::new(settings(sink.port, PASSWORD)).unwrap();
    let alert = hostile_alert(AlertOutcome::RevertFailed);
    channel.send(&alert).await.unwrap();
    assert_eq!(channel.name(), "email");

    let msgs = sink.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = &msgs[0];
    assert_eq!(m["auth_login"], USER);
    assert_eq!(m["mail_from"], "keyguard@alerts.contoso.com");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["secops@contoso.com", "cloud-team@contoso.com"])
    );
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["headers"]["Subject"], email::subject(&alert));
    assert!(email::subject(&alert).starts_with("[keyguard] REVERT FAILED"));
    let mid = m["headers"]["Message-ID"].as_str().unwrap();
    assert!(
        mid.starts_with("<keyguard.") && mid.ends_with("@alerts.contoso.com>"),
        "{mid}"
    );
    // The CRLF in the detail must not have become a header.
    assert!(m["headers"].get("Bcc").is_none(), "{}", m["headers"]);

    let parts = m["parts"].as_array().unwrap();
    let part = |ct: &str| {
        parts
            .iter()
            .find(|p| p["content_type"] == ct)
            .and_then(|p| p["body"].as_str())
            .unwrap_or_else(|| panic!("no {ct} part in {parts:?}"))
            .to_string()
    };
    let text = part("text/plain");
    let html = part("text/html");
    assert_eq!(parts.len(), 2);

    for body in [&text, &html] {
        for needle in [
            "stpayments",
            "storage account",
            "rg-prod",
            "customer-managed key (Key Vault)",
            "Microsoft-managed keys",
            "203.0.113.9",
            "2026-01-15T09:30:00Z",
            "FAILED",
            "CIS Azure 3.12",
            "00000000-0000-4000-8000-000000000001",
            "3 more in the suppression window",
        ] {
            assert!(body.contains(needle), "body lacks {needle:?}:\n{body}");
        }
    }
    // Same content as the card: the portal link and the plain-text facts.
    assert!(text.contains(&alert.portal_url()));
    assert!(html.contains(&format!("href=\"{}\"", alert.portal_url())));
    assert!(text.contains("<script>alert(1)</script>"), "text shows raw value");
    assert!(!text.contains("\nBcc:"), "{text}");

    // HTML: the malicious name and caller are inert text.
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"), "{html}");
    assert!(!html.contains("<b>"), "{html}");

    // The password crossed the wire only inside AUTH, never in the message.
    let everything = m.to_string();
    assert!(!everything.contains(PASSWORD));
    assert!(!format!("{channel:?}").contains(PASSWORD));
}

#[tokio::test]
async fn same_alert_keeps_its_message_id_for_duplicate_suppression() {
    let channel = EmailChannel::new(settings(2525, PASSWORD)).unwrap();
    let id = |a: &Alert| {
        channel
            .message(a)
            .unwrap()
            .headers()
            .get_raw("Message-ID")
            .unwrap()
            .to_string()
    };
    let a = Alert::sample();
    assert_eq!(id(&a), id(&a.clone()));
    let b = Alert {
        repeats: 1,
        ..Alert::sample()
    };
    assert_ne!(id(&a), id(&b));
}

#[tokio::test]
async fn wrong_password_is_permanent_and_not_echoed() {
    let sink = Sink::start(&["--user", USER, "--password", PASSWORD]);
    let wrong = "Wr0ng-PaSsW0rd-value";
    let channel = EmailChannel::new(settings(sink.port, wrong)).unwrap();
    let err = channel.send(&Alert::sample()).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent(_)), "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("535"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn transient_4xx_reply_is_retryable() {
    let sink = Sink::start(&[
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--reject",
        "451 4.3.0 Try again later",
    ]);
    let channel = EmailChannel::new(settings(sink.port, PASSWORD)).unwrap();
    let err = channel.send(&Alert::sample()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("451"), "{err}");
    assert!(!err.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn permanent_5xx_reply_is_permanent() {
    let sink = Sink::start(&["--reject", "550 5.7.1 Relaying denied"]);
    let mut s = settings(sink.port, PASSWORD);
    s.username = None;
    s.password = None;
    let channel = EmailChannel::new(s).unwrap();
    let err = channel.send(&Alert::sample()).await.unwrap_err();
    assert!(matches!(err, SendError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("550"), "{err}");
}

#[tokio::test]
async fn unreachable_relay_is_retryable_without_secrets() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let channel = EmailChannel::new(settings(port, PASSWORD)).unwrap();
    let err = channel.send(&Alert::sample()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!format!("{err} {err:?}").contains(PASSWORD));
}

#[test]
fn settings_are_validated_up_front() {
    let mut s = settings(25, PASSWORD);
    s.to.clear();
    assert_eq!(
        EmailChannel::new(s).unwrap_err(),
        keyguard_notify::ConfigError::NoRecipients
    );
    let mut s = settings(25, PASSWORD);
    s.to.push("not an address".into());
    assert!(matches!(
        EmailChannel::new(s).unwrap_err(),
        keyguard_notify::ConfigError::InvalidAddress(_)
    ));
    let mut s = settings(25, PASSWORD);
    s.username = None;
    let err = EmailChannel::new(s).unwrap_err();
    assert!(!err.to_string().contains(PASSWORD));
}

#[test]
fn smtp_settings_debug_hides_the_password() {
    let s = settings(587, PASSWORD);
    let debug = format!("{s:?}");
    assert!(!debug.contains(PASSWORD), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
    assert!(debug.contains("127.0.0.1"));
}

#[tokio::test]
async fn stalled_relay_times_out_as_retryable() {
    // Accepts TCP (kernel backlog) but never sends the 220 greeting.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = settings(listener.local_addr().unwrap().port(), PASSWORD);
    s.timeout = Duration::from_millis(800);
    let channel = EmailChannel::new(s).unwrap();
    let started = Instant::now();
    let err = channel.send(&Alert::sample()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    drop(listener);
}

#[tokio::test]
async fn digest_arrives_as_one_multipart_email_with_every_alert() {
    let sink = Sink::start(&["--user", USER, "--password", PASSWORD]);
    let channel = EmailChannel::new(settings(sink.port, PASSWORD)).unwrap();
    let alerts = digest_alerts(3);
    channel.send_digest(&alerts).await.unwrap();

    let msgs = sink.messages();
    assert_eq!(msgs.len(), 1, "one email for the whole digest: {msgs:?}");
    let m = &msgs[0];
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(
        m["headers"]["Subject"],
        "[keyguard] 3 encryption drift alerts (2 reverted, 1 revert failed)"
    );
    assert_eq!(m["headers"]["Subject"], email::digest_subject(&alerts));
    let mid = m["headers"]["Message-ID"].as_str().unwrap();
    assert!(
        mid.starts_with("<keyguard.") && mid.ends_with("@alerts.contoso.com>"),
        "{mid}"
    );
    assert!(m["headers"].get("Bcc").is_none(), "{}", m["headers"]);

    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    let part = |ct: &str| {
        parts
            .iter()
            .find(|p| p["content_type"] == ct)
            .and_then(|p| p["body"].as_str())
            .unwrap_or_else(|| panic!("no {ct} part in {parts:?}"))
            .to_string()
    };
    let text = part("text/plain");
    let html = part("text/html");
    for alert in &alerts {
        assert!(
            text.contains(&shown_name(alert)),
            "text lacks {:?}:\n{text}",
            alert.resource_name
        );
        assert!(text.contains(&alert.title()), "{text}");
        assert!(text.contains(&alert.portal_url()), "{text}");
        assert!(html.contains(&format!("href=\"{}\"", alert.portal_url())), "{html}");
        for body in [&text, &html] {
            assert!(body.contains(&alert.correlation_id), "{body}");
            assert!(body.contains(&alert.resource_group), "{body}");
        }
    }
    assert!(
        html.contains("stpayments") && html.contains("disk-sqlvm01-os"),
        "{html}"
    );
    for body in [&text, &html] {
        assert!(body.contains("3 encryption drift alerts"), "{body}");
        assert!(body.contains("2 reverted, 1 revert failed"), "{body}");
        assert!(body.contains("ops-automation@contoso.com"), "{body}");
        assert!(body.contains("FAILED"), "{body}");
    }

    // The hostile third alert: inert in HTML, no forged lines in text.
    assert!(text.contains("<script>alert(1)</script>"), "text shows the raw value");
    assert!(!text.contains("\nBcc:"), "{text}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;stpayments"),
        "{html}"
    );
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    assert!(!m.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn large_digest_email_is_capped_with_a_pointer_to_the_rest() {
    let alerts = digest_alerts(30);
    let text = email::digest_text_body(&alerts);
    let html = email::digest_html_body(&alerts);
    for body in [&text, &html] {
        assert!(body.contains("30 encryption drift alerts"), "{body}");
        assert!(body.contains("and 5 more (see keyguard alerts)"), "{body}");
        assert!(body.contains(&alerts[24].correlation_id));
        assert!(!body.contains(&alerts[25].correlation_id));
    }
    assert_eq!(text.matches("Open in Azure portal: ").count(), 25);
    assert!(email::digest_subject(&alerts).starts_with("[keyguard] 30 encryption drift alerts ("));
    assert_eq!(
        email::digest_subject(&alerts[..1]),
        "[keyguard] 1 encryption drift alert (1 reverted)"
    );
}

#[tokio::test]
async fn digest_message_id_is_stable_on_retry_and_tracks_the_alerts() {
    let channel = EmailChannel::new(settings(2525, PASSWORD)).unwrap();
    let id = |alerts: &[Alert]| {
        channel
            .digest_message(alerts)
            .unwrap()
            .headers()
            .get_raw("Message-ID")
            .unwrap()
            .to_string()
    };
    let alerts = digest_alerts(3);
    assert_eq!(id(&alerts), id(&alerts.clone()));
    let mut reordered = alerts.clone();
    reordered.reverse();
    assert_eq!(id(&alerts), id(&reordered));
    assert_ne!(id(&alerts), id(&alerts[..2]));
    let mut changed = alerts.clone();
    changed[1].correlation_id = "00000000-0000-4000-8000-0000000000ff".into();
    assert_ne!(id(&alerts), id(&changed));
    // A one-alert digest is a different message from the single alert.
    let single = channel
        .message(&alerts[0])
        .unwrap()
        .headers()
        .get_raw("Message-ID")
        .unwrap()
        .to_string();
    assert_ne!(id(&alerts[..1]), single);
}

#[tokio::test]
async fn empty_digest_is_a_permanent_error_and_sends_nothing() {
    let sink = Sink::start(&[]);
    let mut s = settings(sink.port, PASSWORD);
    s.username = None;
    s.password = None;
    let channel = EmailChannel::new(s).unwrap();
    let err = channel.send_digest(&[]).await.unwrap_err();
    assert_eq!(err, SendError::Permanent("empty digest".into()));
    assert!(sink.messages().is_empty());
    // Rendering an empty digest is harmless.
    assert_eq!(email::digest_subject(&[]), "[keyguard] No encryption drift alerts");
    assert!(email::digest_html_body(&[]).contains("no alerts"));
    assert!(email::digest_text_body(&[]).contains("no alerts"));
}

/// maud does the escaping now: every attacker-influenced value (resource name, caller, detail) must
/// reach both HTML bodies as inert text, escaped and cleaned of control and bidi characters.
#[test]
fn hostile_values_are_escaped_and_cleaned_in_both_html_bodies() {
    let payload =
        "<script>x</script>\"onmouseover=alert(1) a&b\u{7}\u{0}\r\nBcc: v@example.com\u{202E}\u{2066}\u{200F}";
    // Control characters become spaces, bidi controls U+FFFD, then `<`, `>`, `"` and `&` are escaped.
    let shown = concat!(
        "&lt;script&gt;x&lt;/script&gt;&quot;onmouseover=alert(1) a&amp;b    Bcc: v@example.com",
        "\u{FFFD}\u{FFFD}\u{FFFD}"
    );
    let alert = Alert {
        resource_name: format!("name{payload}"),
        caller: Some(format!("caller{payload}")),
        detail: Some(format!("detail{payload}")),
        outcome: AlertOutcome::RevertFailed,
        ..Alert::sample()
    };
    let single = email::html_body(&alert);
    let digest = email::digest_html_body(&[Alert::sample(), alert]);
    for body in [&single, &digest] {
        for field in ["name", "caller", "detail"] {
            assert!(
                body.contains(&format!("{field}{shown}")),
                "{field} not shown escaped:\n{body}"
            );
        }
        assert!(!body.contains("<script"), "{body}");
        assert!(!body.contains("\"onmouseover"), "{body}");
        assert!(!body.contains("a&b"), "{body}");
        let forbidden = |c: char| (c.is_control() && c != '\n') || matches!(c, '\u{202E}' | '\u{2066}' | '\u{200F}');
        assert!(!body.chars().any(forbidden), "{body:?}");
    }
}
