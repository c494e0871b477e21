use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use keyguard_notify::{Alert, AlertOutcome, Severity};

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
pub fn hostile_alert(outcome: AlertOutcome) -> Alert {
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
pub fn minimal_alert(outcome: AlertOutcome) -> Alert {
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

/// A disk whose revert failed: a second resource with different values from the sample.
pub fn failed_disk_alert() -> Alert {
    Alert {
        resource_id: "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-data/providers/Microsoft.Compute/disks/disk-sqlvm01-os".into(),
        resource_name: "disk-sqlvm01-os".into(),
        resource_type: "Microsoft.Compute/disks".into(),
        resource_group: "rg-data".into(),
        expected_key: Some("https://kv-data.vault.azure.net/keys/des-cmk".into()),
        actual: "platform-managed key".into(),
        outcome: AlertOutcome::RevertFailed,
        detail: Some("ARM returned 403 AuthorizationFailed: the identity lacks Microsoft.Compute/disks/write".into()),
        caller: Some("ops-automation@contoso.com".into()),
        correlation_id: "00000000-0000-4000-8000-000000000002".into(),
        ..Alert::sample()
    }
}

/// `n` alerts for a digest: the sample (reverted), a failed disk revert and a hostile reverted alert
/// first (so 3 gives "2 reverted, 1 revert failed"), then distinct generated ones over every outcome.
pub fn digest_alerts(n: usize) -> Vec<Alert> {
    let mut all = vec![
        Alert::sample(),
        failed_disk_alert(),
        Alert {
            severity: Severity::High,
            correlation_id: "00000000-0000-4000-8000-000000000003".into(),
            ..hostile_alert(AlertOutcome::Reverted)
        },
    ];
    let mut i = 0;
    while all.len() < n {
        let name = format!("stdigest{i:02}");
        all.push(Alert {
            resource_id: format!(
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-bulk/providers/Microsoft.Storage/storageAccounts/{name}"
            ),
            resource_name: name,
            resource_group: "rg-bulk".into(),
            outcome: AlertOutcome::ALL[i % AlertOutcome::ALL.len()],
            severity: Severity::Info,
            correlation_id: format!("00000000-0000-4000-9000-{i:012}"),
            ..Alert::sample()
        });
        i += 1;
    }
    all.truncate(n);
    all
}

/// What a person sees for a resource name after cleaning (the hostile one's bidi override becomes U+FFFD).
pub fn shown_name(alert: &Alert) -> String {
    alert.resource_name.replace('\u{202E}', "\u{FFFD}")
}
