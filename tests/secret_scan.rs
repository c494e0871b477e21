//! Finds secret values in log output: the scanner the e2e harness runs over every keyguard
//! process it started (and a soak script can run over its logs).
//!
//! A secret is registered with what it is (`label`), never printed: a finding names the label,
//! where, and the line with the secret masked. Besides the raw value it is looked for as JSON
//! escapes it (keyguard's logs are JSON lines), and a URL's credential parts (its query, which
//! carries a Teams signature or a token; its password) and a token's payload count on their own,
//! because a log line that cut the URL or token short still leaks them.

use std::fmt;

/// Shorter values are too likely to occur by chance to be told apart from a leak; registering
/// one is a mistake in the test's configuration, so it panics instead of being skipped.
pub const MIN_SECRET_LEN: usize = 8;

#[derive(Clone, Debug, Default)]
pub struct SecretScan {
    /// (label, value) in the spellings it is looked for.
    needles: Vec<(String, String)>,
}

/// One secret found: which, in which source and line, and the line with the secret masked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leak {
    pub label: String,
    pub source: String,
    pub line: usize,
    pub masked: String,
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let excerpt: String = self.masked.chars().take(300).collect();
        write!(f, "{} in {} line {}: {excerpt}", self.label, self.source, self.line)
    }
}

impl SecretScan {
    pub fn new() -> SecretScan {
        SecretScan::default()
    }

    /// A secret value as a whole (an API key, an HMAC key, a webhook key, a password).
    pub fn secret(&mut self, label: &str, value: &str) -> &mut SecretScan {
        assert!(
            value.chars().count() >= MIN_SECRET_LEN,
            "secret {label} is shorter than {MIN_SECRET_LEN} characters: too short to scan for"
        );
        self.needle(label, value);
        // As a JSON string escapes it (quotes, backslashes, control characters).
        let escaped = serde_json::to_string(value).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        if escaped != value {
            self.needle(label, escaped);
        }
        self
    }

    /// A URL that is a credential (a Teams workflow URL, a webhook URL): the whole URL, its
    /// query, each query value and its password, each on its own when long enough to tell.
    pub fn url(&mut self, label: &str, value: &str) -> &mut SecretScan {
        self.secret(label, value);
        let Ok(url) = reqwest::Url::parse(value) else {
            return self;
        };
        if let Some(query) = url.query().filter(|q| q.chars().count() >= MIN_SECRET_LEN) {
            self.secret(&format!("{label} (query)"), query);
        }
        for (name, v) in url.query_pairs() {
            if v.chars().count() >= MIN_SECRET_LEN {
                self.secret(&format!("{label} (query {name})"), &v);
            }
        }
        if let Some(password) = url.password().filter(|p| p.chars().count() >= MIN_SECRET_LEN) {
            self.secret(&format!("{label} (password)"), password);
        }
        self
    }

    /// A bearer token (a JWT): the whole token and each of its long segments but the header,
    /// which every token of one issuer shares.
    pub fn token(&mut self, label: &str, value: &str) -> &mut SecretScan {
        self.secret(label, value);
        for segment in value.split('.').skip(1) {
            if segment.chars().count() >= MIN_SECRET_LEN {
                self.secret(&format!("{label} (segment)"), segment);
            }
        }
        self
    }

    /// An Azure Storage connection string: its account key and SAS, not the endpoints (logged
    /// on purpose, to say where the state lives).
    pub fn connection_string(&mut self, label: &str, value: &str) -> &mut SecretScan {
        for part in value.split(';') {
            if let Some((name, v)) = part.split_once('=')
                && (name.eq_ignore_ascii_case("AccountKey") || name.eq_ignore_ascii_case("SharedAccessSignature"))
            {
                self.secret(&format!("{label} ({name})"), v);
            }
        }
        self
    }

    /// A value from the environment, by its variable's name: URLs (`…_URL`) and connection
    /// strings (`…_STORAGE`, `…CONNECTION…`) by their parts, keys, passwords and tokens whole.
    /// Anything else (endpoints, prefixes, flags) is configuration, not a secret.
    pub fn env(&mut self, name: &str, value: &str) -> &mut SecretScan {
        if value.is_empty() {
            return self;
        }
        let words: Vec<String> = name.split('_').map(str::to_ascii_uppercase).collect();
        let has = |w: &str| words.iter().any(|x| x == w);
        if has("URL") || has("URI") {
            self.url(name, value)
        } else if has("STORAGE") || words.iter().any(|w| w.contains("CONNECTION")) {
            self.connection_string(name, value)
        } else if ["KEY", "SECRET", "PASSWORD", "TOKEN", "HMAC", "SIGNATURE", "HEADER"]
            .iter()
            .any(|w| has(w))
        {
            self.secret(name, value)
        } else {
            self
        }
    }

    /// Every secret found in `text` (one finding per secret and line).
    pub fn scan(&self, source: &str, text: &str) -> Vec<Leak> {
        let mut leaks = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let mut found: Vec<&str> = Vec::new();
            for (label, needle) in &self.needles {
                if line.contains(needle.as_str()) && !found.contains(&label.as_str()) {
                    found.push(label);
                    leaks.push(Leak {
                        label: label.clone(),
                        source: source.to_string(),
                        line: index + 1,
                        masked: self.mask(line),
                    });
                }
            }
        }
        leaks
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    fn needle(&mut self, label: &str, value: &str) {
        if !self.needles.iter().any(|(_, v)| v == value) {
            self.needles.push((label.to_string(), value.to_string()));
        }
    }

    /// The line with every secret replaced, longest first so a part never uncovers its whole.
    fn mask(&self, line: &str) -> String {
        let mut needles: Vec<&str> = self.needles.iter().map(|(_, v)| v.as_str()).collect();
        needles.sort_by_key(|v| std::cmp::Reverse(v.len()));
        needles
            .into_iter()
            .fold(line.to_string(), |acc, needle| acc.replace(needle, "[SECRET]"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TEAMS: &str = "https://prod-00.westeurope.logic.azure.com/workflows/x/triggers/manual/paths/invoke?api-version=2016-06-01&sig=Zx9-SIGNATURE-0123456789";

    #[test]
    fn a_planted_secret_is_found_and_masked_and_a_clean_log_passes() {
        let mut scan = SecretScan::new();
        scan.secret("KEYGUARD_API_KEY", "api-key-0123456789abcdef")
            .url("teams", TEAMS);
        let clean = "{\"level\":\"INFO\",\"message\":\"alert sent\",\"route\":\"secops\"}\n";
        assert!(scan.scan("clean.log", clean).is_empty());

        let log = format!("{clean}{{\"message\":\"calling {TEAMS}\"}}\nx-api-key: api-key-0123456789abcdef\n");
        let leaks = scan.scan("planted.log", &log);
        let labels: Vec<(&str, usize)> = leaks.iter().map(|l| (l.label.as_str(), l.line)).collect();
        assert!(labels.contains(&("teams", 2)), "{labels:?}");
        assert!(labels.contains(&("KEYGUARD_API_KEY", 3)), "{labels:?}");
        for leak in &leaks {
            let shown = leak.to_string();
            assert!(
                !shown.contains("SIGNATURE-0123") && !shown.contains("0123456789abcdef"),
                "{shown}"
            );
        }
    }

    #[test]
    fn parts_of_a_url_or_token_count_on_their_own() {
        let mut scan = SecretScan::new();
        scan.url("teams", TEAMS)
            .url("smtp", "smtp://keyguard:Sm7pPassw0rd!@mail.example:587")
            .token("msi token", "eyJhbGciOiJub25lIn0.eyJvaWQiOiIxMjM0NTY3OCJ9.sim");
        for (line, label) in [
            ("sig=Zx9-SIGNATURE-0123456789 refused", "teams (query sig)"),
            ("password was Sm7pPassw0rd!", "smtp (password)"),
            ("Authorization: Bearer eyJvaWQiOiIxMjM0NTY3OCJ9", "msi token (segment)"),
        ] {
            let leaks = scan.scan("log", line);
            assert_eq!(leaks.first().map(|l| l.label.as_str()), Some(label), "{line}");
        }
        // The endpoint alone (logged on purpose) and the shared JWT header are no secrets.
        assert!(
            scan.scan("log", "posting to prod-00.westeurope.logic.azure.com")
                .is_empty()
        );
        assert!(scan.scan("log", "eyJhbGciOiJub25lIn0").is_empty());
    }

    #[test]
    fn json_escaped_secrets_are_found() {
        let mut scan = SecretScan::new();
        scan.secret("hmac", "k\"ey\\with-quotes");
        let leaks = scan.scan("log", r#"{"message":"hmac k\"ey\\with-quotes"}"#);
        assert_eq!(leaks.len(), 1);
    }

    #[test]
    fn environment_names_say_what_is_secret() {
        let mut scan = SecretScan::new();
        scan.env("KEYGUARD_TEAMS_SECOPS_URL", TEAMS)
            .env("KEYGUARD_WEBHOOK_KEY", "e2e-webhook-key-0123456789abcdef")
            .env(
                "KEYGUARD_STORAGE",
                "DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=QUJDREVGR0hJSktMTU5PUA==;TableEndpoint=http://127.0.0.1:1/dev;",
            )
            .env("KEYGUARD_KEYVAULT_ENDPOINT", "http://127.0.0.1:9999")
            .env("KEYGUARD_TABLE_PREFIX", "e2eabcdef12");
        assert_eq!(scan.scan("log", "store at http://127.0.0.1:1/dev").len(), 0);
        assert_eq!(scan.scan("log", "key QUJDREVGR0hJSktMTU5PUA==").len(), 1);
        assert_eq!(
            scan.scan("log", "Key Vault at http://127.0.0.1:9999 prefix e2eabcdef12")
                .len(),
            0
        );
        assert_eq!(scan.scan("log", "?code=e2e-webhook-key-0123456789abcdef").len(), 1);
    }

    #[test]
    #[should_panic(expected = "too short to scan for")]
    fn a_secret_too_short_to_scan_for_is_a_configuration_error() {
        SecretScan::new().secret("pin", "1234");
    }
}
