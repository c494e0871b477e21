//! The configuration rows of the hostile input table (issue 13, item 4; the HTTP rows are in
//! handler/src/http/hostile_tests.rs). A profile file with unknown keys, bad globs, broken
//! exemptions or unusable alert secrets stops `keyguard serve` and `keyguard webhook` before they
//! listen: exit code 2, one message naming where the problem is (line and column in the file), no
//! panic or stack trace even with `RUST_BACKTRACE=1`, and none of the secrets in the environment.
//! An expired exemption is valid configuration; the HTTP table shows it exempts nothing.

use std::process::Stdio;
use std::time::Duration;

use keyguard_e2e::keyguard_bin;
use keyguard_e2e::secret_scan::SecretScan;

const WEBHOOK_KEY: &str = "hostile-config-webhook-key-0123456789";
const API_KEY: &str = "hostile-config-api-key-0123456789";
const SMTP_PASSWORD: &str = "S3cretSmtpPassw0rd";
const TEAMS_SIGNATURE: &str = "TopSecretTeamsSig123";
/// Not a timing assertion: a bound so that a keyguard that starts after all fails the row
/// instead of hanging the suite.
const HANG: Duration = Duration::from_secs(60);

const PROFILE: &str = "[[profile]]\nname = \"a\"\nrequire = \"cmk\"\nmode = \"alert\"\n";

struct Row {
    name: &'static str,
    toml: String,
    /// In the message, which names the source (`KEYGUARD_CONFIG_TOML`), line and column.
    says: &'static str,
}

fn rows() -> Vec<Row> {
    let row = |name, toml: &str, says| Row {
        name,
        toml: toml.to_string(),
        says,
    };
    vec![
        row(
            "a misspelt table is refused, naming it and where it is",
            "[setings]\ndry_run = true\n",
            "KEYGUARD_CONFIG_TOML:1:2: unknown field \"setings\"",
        ),
        row(
            "a misspelt profile key is refused, naming the keys it may be",
            "[[profile]]\nname = \"a\"\nrequires = \"cmk\"\nmode = \"alert\"\n",
            "KEYGUARD_CONFIG_TOML:3:1: unknown field \"requires\", expected one of",
        ),
        row(
            "a resource group glob that does not compile is refused",
            &format!("{PROFILE}scope = {{ resource_groups = [\"rg-[prod\"] }}\n"),
            "KEYGUARD_CONFIG_TOML:5:30: scope.resource_groups: invalid glob \"rg-[prod\"",
        ),
        row(
            "an exemption glob outside /subscriptions/ is refused",
            "[[exemption]]\nresource = \"rg-legacy/*\"\nreason = \"CHG-1\"\n",
            "KEYGUARD_CONFIG_TOML:2:12: exemption resource glob must start with \"/subscriptions/\"",
        ),
        row(
            "an exemption that expires on no date is refused",
            "[[exemption]]\nresource = \"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st\"\nreason = \"CHG-1\"\nexpires = \"soon\"\n",
            "KEYGUARD_CONFIG_TOML:4:11: expires: \"soon\" is neither a date",
        ),
        row(
            "a truncated file is refused where it stops",
            "[[profile]\nname = \"a\"\n",
            "KEYGUARD_CONFIG_TOML:1:11: unclosed array table",
        ),
        row(
            "an SMTP URL with a password and a wrong scheme is refused without the password",
            &format!(
                "{PROFILE}[routes.dba]\nkind = \"email\"\nsmtp_env = \"HOSTILE_SMTP\"\nfrom = \"k@contoso.example\"\nto = [\"d@contoso.example\"]\n"
            ),
            "route dba: SMTP URL scheme smtpx is not smtp or smtps",
        ),
        row(
            "a Teams webhook URL that is no URL is refused without its signature",
            &format!("{PROFILE}[routes.secops]\nkind = \"teams\"\nurl_env = \"HOSTILE_TEAMS\"\n"),
            "route secops:",
        ),
    ]
}

/// Runs `keyguard <args>` with `toml` as its configuration and the secrets in its environment.
async fn run(args: &[&str], toml: &str, dir: &std::path::Path) -> (Option<i32>, String) {
    let mut command = tokio::process::Command::new(keyguard_bin());
    command
        .args(args)
        .env("KEYGUARD_CONFIG_TOML", toml)
        .env_remove("KEYGUARD_CONFIG")
        .env("KEYGUARD_STATE_PATH", dir.join("state.redb"))
        .env("HOME", dir)
        .env("KEYGUARD_WEBHOOK_KEY", WEBHOOK_KEY)
        .env("KEYGUARD_API_KEY", API_KEY)
        .env(
            "HOSTILE_SMTP",
            format!("smtpx://keyguard:{SMTP_PASSWORD}@mail.contoso.example:25"),
        )
        .env(
            "HOSTILE_TEAMS",
            format!("contoso.webhook.office.com/webhookb2/x?sig={TEAMS_SIGNATURE}"),
        )
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("spawn keyguard");
    let output = tokio::time::timeout(HANG, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("keyguard {args:?} started (or hung) instead of refusing its configuration"))
        .expect("keyguard output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[tokio::test]
async fn serve_and_webhook_refuse_hostile_configuration_before_listening() {
    let dir = std::env::temp_dir().join(format!("keyguard-hostile-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut secrets = SecretScan::new();
    secrets
        .secret("KEYGUARD_WEBHOOK_KEY", WEBHOOK_KEY)
        .secret("KEYGUARD_API_KEY", API_KEY)
        .secret("the SMTP password", SMTP_PASSWORD)
        .secret("the Teams signature", TEAMS_SIGNATURE);
    let mut failures = Vec::new();
    for row in rows() {
        for args in [["webhook", "--port", "0"], ["serve", "--port", "0"]] {
            let (code, text) = run(&args, &row.toml, &dir).await;
            let mut problems = Vec::new();
            if code != Some(2) {
                problems.push(format!("exit code {code:?}, expected 2"));
            }
            if !text.contains(row.says) {
                problems.push(format!("does not say {:?}", row.says));
            }
            if text.contains("panicked") || text.contains("stack backtrace") || text.contains("Stack backtrace") {
                problems.push("a panic or stack trace".into());
            }
            for leak in secrets.scan(row.name, &text) {
                problems.push(format!("prints the secret {}", leak.label));
            }
            if text.contains("listening") {
                problems.push("it listened".into());
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{} ({}): {}\n    output: {text}",
                    row.name,
                    args[0],
                    problems.join("; ")
                ));
            }
        }
    }
    // An expired exemption is configuration, not an error: it is validated and loaded.
    let expired = format!(
        "{PROFILE}[[exemption]]\nresource = \"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st\"\nreason = \"CHG-1\"\nexpires = 2020-01-01\n"
    );
    let file = dir.join("expired.toml");
    std::fs::write(&file, &expired).unwrap();
    let (code, text) = run(&["config", "validate", &file.display().to_string()], "", &dir).await;
    if code != Some(0) || !text.contains("1 exemptions") {
        failures.push(format!("an expired exemption did not validate: {code:?} {text}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
