use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use keyguard_notify::{Alert, Outcome, Severity};

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh path under the system temp dir; removed by the caller when it matters.
pub fn temp_file(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("kg-notify-{}-{n}-{name}", std::process::id()))
}

/// Values an attacker controls (resource name, caller, detail) set to payloads for every format:
/// HTML/script injection, Markdown links, header/line forgery, bidi override.
pub fn hostile_alert(outcome: Outcome) -> Alert {
    Alert {
        resource_name: "<script>alert(1)</script>stpayments\u{202E}gpj.exe".into(),
        caller: Some("\"><img src=x onerror=alert(1)>[Reset MFA](https://evil.example)@contoso.com".into()),
        caller_ip: Some("203.0.113.9".into()),
        detail: Some("ARM said 409\r\nBcc: victim@example.com\n**bold** & <b>".into()),
        actual_key: Some("https://kv-evil.vault.azure.net/keys/k1".into()),
        outcome,
        repeats: 3,
        severity: Severity::Warning,
        ..Alert::sample()
    }
}

/// All optional fields empty: renderers must not leave blank facts or break the card.
pub fn minimal_alert(outcome: Outcome) -> Alert {
    Alert {
        expected_key: None,
        actual_key: None,
        caller: None,
        caller_ip: None,
        detail: None,
        cis_control: None,
        profile: None,
        outcome,
        severity: Severity::Info,
        repeats: 0,
        ..Alert::sample()
    }
}
