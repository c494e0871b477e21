//! A fixed, realistic set of findings (every verdict, two subscriptions, several types), like
//! `keyguard_notify::Alert::sample`: for documentation, previews (`keyguard report --sample`) and
//! the tests that pin `samples/sample.sarif` and screenshot the HTML report.

use time::OffsetDateTime;
use time::macros::datetime;

use crate::{Finding, FindingExemption, FindingVerdict, ReportContext};

pub const PROD_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";
pub const DEV_SUBSCRIPTION: &str = "11111111-1111-1111-1111-111111111111";
pub const GENERATED_AT: OffsetDateTime = datetime!(2026-06-01 09:30:00 UTC);

/// `names` holds one name per type segment, `/`-separated (`sql-dev/orders` for a database).
fn id(subscription: &str, group: &str, resource_type: &str, names: &str) -> String {
    let mut segments = resource_type.split('/');
    let mut path = segments.next().unwrap_or_default().to_string();
    for (ty, name) in segments.zip(names.split('/')) {
        path.push_str(&format!("/{ty}/{name}"));
    }
    format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/{path}")
}

fn finding(
    subscription: &str,
    group: &str,
    resource_type: &str,
    name: &str,
    verdict: FindingVerdict,
    expected: Option<&str>,
    actual: Option<&str>,
) -> Finding {
    Finding {
        expected: expected.map(str::to_string),
        actual: actual.map(str::to_string),
        profile: Some(
            if subscription == PROD_SUBSCRIPTION {
                "prod-cmk"
            } else {
                "dev-baseline"
            }
            .to_string(),
        ),
        checked_at: Some(datetime!(2026-06-01 09:29:12 UTC)),
        ..Finding::new(&id(subscription, group, resource_type, name), resource_type, verdict)
    }
}

/// Eight findings: 2 compliant, 3 drift, 1 exempt, 1 unsupported, 1 error; six in the production
/// subscription, two in the dev one; three storage accounts.
pub fn findings() -> Vec<Finding> {
    use FindingVerdict::*;
    const STORAGE: &str = "Microsoft.Storage/storageAccounts";
    vec![
        Finding {
            action: Some("revert".into()),
            result: Some("reverted".into()),
            detail: Some("expected a customer-managed key, found Microsoft-managed keys".into()),
            ..finding(
                PROD_SUBSCRIPTION,
                "rg-payments",
                STORAGE,
                "stpayments",
                Drift,
                Some("cmk"),
                Some("mmk"),
            )
        },
        finding(
            PROD_SUBSCRIPTION,
            "rg-payments",
            STORAGE,
            "stpaymentlogs",
            Compliant,
            Some("cmk"),
            Some("cmk https://kv-prod-keys.vault.azure.net/keys/storage-cmk"),
        ),
        Finding {
            exemption: Some(FindingExemption {
                reason: "Legacy app cannot reach Key Vault; migration ticket OPS-1234".into(),
                expires: Some(datetime!(2026-12-31 0:00 UTC)),
            }),
            action: Some("none".into()),
            ..finding(
                PROD_SUBSCRIPTION,
                "rg-legacy",
                STORAGE,
                "stlegacyexport",
                Exempt,
                Some("cmk"),
                Some("mmk"),
            )
        },
        Finding {
            action: Some("alert".into()),
            result: Some("manual action needed".into()),
            detail: Some(
                "customer-managed key is in vault kv-unknown.vault.azure.net, which the profile does not allow".into(),
            ),
            ..finding(
                PROD_SUBSCRIPTION,
                "rg-orders",
                "Microsoft.Sql/servers",
                "sql-orders",
                Drift,
                Some("cmk"),
                Some("cmk https://kv-unknown.vault.azure.net/keys/tde"),
            )
        },
        Finding {
            detail: Some("ARM answered 429 TooManyRequests three times; retry after 30 s".into()),
            ..finding(
                PROD_SUBSCRIPTION,
                "rg-data",
                "Microsoft.Compute/disks",
                "disk-sqlvm01-os",
                Error,
                Some("cmk"),
                Some("unknown"),
            )
        },
        Finding {
            detail: Some("resource type Microsoft.KeyVault/vaults is not in the catalog".into()),
            expected: None,
            profile: None,
            ..finding(
                PROD_SUBSCRIPTION,
                "rg-payments",
                "Microsoft.KeyVault/vaults",
                "kv-prod-keys",
                Unsupported,
                None,
                None,
            )
        },
        finding(
            DEV_SUBSCRIPTION,
            "rg-dev",
            "Microsoft.DocumentDB/databaseAccounts",
            "cosmos-dev",
            Compliant,
            Some("mmk"),
            Some("mmk"),
        ),
        Finding {
            action: Some("none".into()),
            result: Some("dry run".into()),
            detail: Some("encryption at rest is turned off".into()),
            ..finding(
                DEV_SUBSCRIPTION,
                "rg-dev",
                "Microsoft.Sql/servers/databases",
                "sql-dev/orders",
                Drift,
                Some("encrypted"),
                Some("unencrypted"),
            )
        },
    ]
}

pub fn context() -> ReportContext {
    ReportContext {
        information_uri: None,
        ..ReportContext::new(
            env!("CARGO_PKG_VERSION"),
            GENERATED_AT,
            &format!("subscriptions {PROD_SUBSCRIPTION}, {DEV_SUBSCRIPTION}"),
        )
    }
}
