//! Runtime settings: the profile file plus the environment (app settings in Azure), read in one
//! place and validated at start so a bad setting fails loudly before any event is taken.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keyguard_core::config::Config;
use keyguard_core::egress::EgressPolicy;
use keyguard_core::keyref::Cloud;
use url::Url;

use crate::alerting::{Alerter, ConfiguredChannels};
use crate::arm::{ArmClient, PUBLIC_CLOUD_ENDPOINT};
use crate::egress::Egress;
use crate::identity::{AuthMode, CredentialTokenSource, TokenSource};
use crate::keyvault::KeyVaultClient;
use crate::outbox::Dispatcher;
use crate::reconcile::{self, ReconcileSettings};
use crate::store::{Retention, StoreLocation};
use crate::sweep::SweepSettings;

/// keyguard's environment: the profiles and every setting read from environment variables
/// (endpoints, cloud, store, credential, budgets), checked once at start-up.
pub struct Environment {
    pub config: Config,
    /// Where the profiles came from: a path, or "built-in default".
    pub config_source: String,
    pub dry_run: bool,
    pub arm_endpoint: Url,
    /// The cloud whose Key Vault and Managed HSM names keyguard may send a Key Vault token to.
    pub cloud: Cloud,
    pub ca_bundle: Option<PathBuf>,
    /// Embedded file or Azure Table Storage.
    pub store: StoreLocation,
    pub auth: AuthMode,
    pub time_budget: Duration,
    /// Test-only: send Key Vault data-plane calls to this base (`{base}/keyvault/{vault host}/...`)
    /// after the egress policy approved the real vault URL.
    pub keyvault_endpoint: Option<Url>,
    pub sweep: SweepSettings,
    /// `POST`s served at once (`KEYGUARD_MAX_IN_FLIGHT`); see [`crate::http::in_flight`].
    pub max_in_flight: usize,
}

impl Environment {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        // In Azure the profiles come from a Key Vault reference, which resolves to the secret's
        // text: KEYGUARD_CONFIG_TOML holds the file's contents, KEYGUARD_CONFIG a path.
        let path = get("KEYGUARD_CONFIG").filter(|p| !p.is_empty());
        let inline = get("KEYGUARD_CONFIG_TOML").filter(|t| !t.trim().is_empty());
        let (config, config_source) = match (path, inline) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set KEYGUARD_CONFIG (a file) or KEYGUARD_CONFIG_TOML (its contents), not both")
            }
            (None, Some(text)) => {
                let source = "KEYGUARD_CONFIG_TOML";
                let config = Config::from_toml_str(&text, source).map_err(|e| anyhow::anyhow!("{e}"))?;
                (config, source.to_string())
            }
            (Some(path), None) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read KEYGUARD_CONFIG file {path}"))?;
                let config = Config::from_toml_str(&text, &path).map_err(|e| anyhow::anyhow!("{e}"))?;
                (config, path)
            }
            (None, None) => (
                Config::builtin_default(),
                "built-in default (require cmk, mode alert)".to_string(),
            ),
        };
        let dry_run = match get("KEYGUARD_DRY_RUN") {
            Some(v) => parse_bool("KEYGUARD_DRY_RUN", &v)? || config.settings.dry_run,
            None => config.settings.dry_run,
        };
        let time_budget = match get("KEYGUARD_TIME_BUDGET_MS") {
            Some(v) => Duration::from_millis(
                v.parse()
                    .with_context(|| format!("KEYGUARD_TIME_BUDGET_MS={v:?} is not a number of milliseconds"))?,
            ),
            None => Duration::from_secs(config.settings.time_budget_secs),
        };
        let state_path = get("KEYGUARD_STATE_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| default_state_path(&get));
        let store = StoreLocation::from_lookup(&get, state_path.clone())?;
        let mut sweep = SweepSettings::default();
        if let Some(scopes) = get("KEYGUARD_SWEEP_SCOPES") {
            for scope in scopes.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()) {
                sweep.scopes.push(
                    keyguard_core::arm_scope::ArmScope::parse(scope)
                        .map_err(|e| anyhow::anyhow!("KEYGUARD_SWEEP_SCOPES: {e}"))?,
                );
            }
        }
        for (name, field) in [
            ("KEYGUARD_SWEEP_BUDGET_SECS", &mut sweep.timer_budget),
            ("KEYGUARD_SCAN_BUDGET_SECS", &mut sweep.api_budget),
        ] {
            if let Some(v) = get(name) {
                let secs: u64 = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .with_context(|| format!("{name}={v:?} is not a positive number of seconds"))?;
                *field = Duration::from_secs(secs);
            }
        }
        let max_in_flight = match get("KEYGUARD_MAX_IN_FLIGHT") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("KEYGUARD_MAX_IN_FLIGHT={v:?} is not a positive number"))?,
            None => crate::http::in_flight::DEFAULT_MAX_IN_FLIGHT,
        };
        let arm_endpoint = endpoint_url(
            "KEYGUARD_ARM_ENDPOINT",
            &get("KEYGUARD_ARM_ENDPOINT")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| PUBLIC_CLOUD_ENDPOINT.to_string()),
        )?;
        let cloud = match get("KEYGUARD_CLOUD").filter(|v| !v.trim().is_empty()) {
            Some(name) => Cloud::parse(&name)
                .with_context(|| format!("KEYGUARD_CLOUD={name:?} is not one of public, china, usgov"))?,
            None => Cloud::of_arm_endpoint(&arm_endpoint),
        };
        let keyvault_endpoint = match get("KEYGUARD_KEYVAULT_ENDPOINT").filter(|k| !k.is_empty()) {
            // A redirect of Key Vault calls exists for the stand-in only: a build without it
            // refuses the setting rather than silently ignoring (or honouring) it.
            Some(_) if !cfg!(feature = "sim") => anyhow::bail!(
                "KEYGUARD_KEYVAULT_ENDPOINT is a test setting of builds with the local stand-in (feature `sim`); this build has none"
            ),
            Some(v) => Some(endpoint_url("KEYGUARD_KEYVAULT_ENDPOINT", &v)?),
            None => None,
        };
        Ok(Self {
            sweep,
            max_in_flight,
            store,
            auth: AuthMode::from_lookup(&get)?,
            arm_endpoint,
            cloud,
            keyvault_endpoint,
            ca_bundle: get("KEYGUARD_CA_BUNDLE").filter(|p| !p.is_empty()).map(PathBuf::from),
            config,
            config_source,
            dry_run,
            time_budget,
        })
    }

    /// One HTTP client for ARM and the identity endpoint (shared connection pool).
    pub fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("keyguard/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &self.ca_bundle {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read KEYGUARD_CA_BUNDLE {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("KEYGUARD_CA_BUNDLE {} is not a PEM bundle", path.display()))?;
            if certs.is_empty() {
                anyhow::bail!("KEYGUARD_CA_BUNDLE {} contains no PEM certificate", path.display());
            }
            builder = builder.tls_certs_merge(certs);
        }
        Ok(builder.build()?)
    }

    /// The one egress layer every credentialed request goes through: the ARM endpoint, the
    /// configured cloud's vaults and the configured storage account, nothing else.
    pub fn egress(&self) -> anyhow::Result<Arc<Egress>> {
        self.egress_with(self.http_client()?)
    }

    /// [`Environment::egress`] over a client the caller already built (and shares).
    pub fn egress_with(&self, http: reqwest::Client) -> anyhow::Result<Arc<Egress>> {
        let tokens: Arc<dyn TokenSource> = Arc::new(
            CredentialTokenSource::new(&self.auth, http.clone())
                .with_context(|| format!("cannot set up the {:?} credential", self.auth))?,
        );
        let policy = EgressPolicy::new(&self.arm_endpoint, self.cloud, self.store.table_endpoint());
        Ok(Arc::new(Egress::new(
            http,
            tokens,
            policy,
            self.keyvault_endpoint.clone(),
        )))
    }

    /// What the timer's pruning keeps.
    pub fn retention(&self) -> Retention {
        Retention {
            audit: time::Duration::days(i64::from(self.config.settings.audit_retention_days)),
            sent_alerts: time::Duration::days(7),
        }
    }

    /// The reconcile's clients and settings; with alert routes configured, alerts go through the
    /// outbox (whose sender the caller starts, if it sends).
    pub async fn build_context(&self) -> anyhow::Result<reconcile::Context> {
        self.build_context_with(self.egress()?).await
    }

    /// [`Environment::build_context`] over an egress the caller already built.
    /// Builds the alert channels once to refuse a route that cannot work (a URL that is no URL,
    /// plain http to another host, a missing secret) before the port opens: a hostile or broken
    /// configuration must not even listen.
    pub fn check_alert_routes(&self) -> anyhow::Result<()> {
        if !self.config.routes.is_empty() {
            ConfiguredChannels::from_config(&self.config, |k| std::env::var(k).ok())?;
        }
        Ok(())
    }

    pub async fn build_context_with(&self, egress: Arc<Egress>) -> anyhow::Result<reconcile::Context> {
        let arm = ArmClient::new(egress.clone());
        let store = self
            .store
            .open(egress.clone())
            .await
            .with_context(|| format!("cannot open the state store ({})", self.store.describe()))?;
        let keyvault = KeyVaultClient::new(egress);
        let config = Arc::new(self.config.clone());
        let settings = ReconcileSettings {
            dry_run: self.dry_run,
            time_budget: self.time_budget,
            instance: crate::instance::instance_name(),
        };
        let mut context = reconcile::Context::new(config.clone(), arm, keyvault, store.clone(), settings)
            .with_watched_scopes(self.sweep.scopes.clone());
        if !config.routes.is_empty() {
            let channels = ConfiguredChannels::from_config(&config, |k| std::env::var(k).ok())?;
            let dispatcher = Arc::new(Dispatcher::new(store.clone(), Arc::new(channels), OUTBOX_MAX_ATTEMPTS));
            context = context.with_alerter(Arc::new(Alerter::new(config, store, dispatcher)));
        }
        Ok(context)
    }
}

/// Attempts per alert before it is parked for a person (with backoff from 30 s to 1 h: about a day).
pub const OUTBOX_MAX_ATTEMPTS: u32 = 30;

/// An endpoint setting: an absolute `https` URL, or `http` to a loopback address (a local
/// stand-in). A credential goes to it, so it is parsed, never taken as text.
fn endpoint_url(name: &str, value: &str) -> anyhow::Result<Url> {
    let url = Url::parse(value.trim()).with_context(|| format!("{name}={value:?} is not a URL"))?;
    let loopback = keyguard_core::egress::is_loopback(&url);
    match url.scheme() {
        _ if !url.username().is_empty() || url.password().is_some() => {
            anyhow::bail!("{name} must not carry user info")
        }
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => anyhow::bail!("{name}={value:?} must be https (http only for a loopback address)"),
    }
}

/// App Service keeps `$HOME` (`/home`) across restarts; elsewhere fall back to the temp dir.
fn default_state_path(get: &impl Fn(&str) -> Option<String>) -> PathBuf {
    match get("HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join(".keyguard").join("state.redb"),
        _ => std::env::temp_dir().join("keyguard").join("state.redb"),
    }
}

fn parse_bool(name: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => anyhow::bail!("{name}={other:?} is not a boolean (true/false)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::lookup;

    #[test]
    fn defaults_without_configuration() {
        let s = Environment::from_lookup(lookup(&[("HOME", "/home")])).unwrap();
        assert!(!s.dry_run);
        assert_eq!(s.arm_endpoint.as_str(), "https://management.azure.com/");
        assert_eq!(s.cloud, Cloud::Public);
        assert_eq!(s.time_budget, Duration::from_secs(25));
        assert!(
            matches!(&s.store, StoreLocation::Embedded(p) if p == &PathBuf::from("/home/.keyguard/state.redb")),
            "{:?}",
            s.store
        );
        assert!(s.config_source.starts_with("built-in"));
    }

    #[test]
    fn environment_overrides() {
        let s = Environment::from_lookup(lookup(&[
            ("KEYGUARD_DRY_RUN", "true"),
            ("KEYGUARD_TIME_BUDGET_MS", "1500"),
            ("KEYGUARD_ARM_ENDPOINT", "http://127.0.0.1:1"),
        ]))
        .unwrap();
        assert!(s.dry_run);
        assert_eq!(s.time_budget, Duration::from_millis(1500));
        assert_eq!(s.arm_endpoint.as_str(), "http://127.0.0.1:1/");
        let bounded = Environment::from_lookup(lookup(&[("KEYGUARD_MAX_IN_FLIGHT", "4")])).unwrap();
        assert_eq!(bounded.max_in_flight, 4);
    }

    #[test]
    fn endpoints_are_parsed_and_the_cloud_follows_the_arm_endpoint() {
        let china = Environment::from_lookup(lookup(&[(
            "KEYGUARD_ARM_ENDPOINT",
            "https://management.chinacloudapi.cn",
        )]))
        .unwrap();
        assert_eq!(china.cloud, Cloud::China);
        let usgov = Environment::from_lookup(lookup(&[("KEYGUARD_CLOUD", "usgov")])).unwrap();
        assert_eq!(usgov.cloud, Cloud::UsGov);
        for (name, value) in [
            ("KEYGUARD_ARM_ENDPOINT", "http://management.azure.com"),
            ("KEYGUARD_ARM_ENDPOINT", "https://user:pw@management.azure.com"),
            ("KEYGUARD_ARM_ENDPOINT", "management.azure.com"),
            ("KEYGUARD_KEYVAULT_ENDPOINT", "http://10.0.0.1:8080"),
            ("KEYGUARD_CLOUD", "mars"),
            ("KEYGUARD_MAX_IN_FLIGHT", "0"),
        ] {
            let err = Environment::from_lookup(lookup(&[(name, value)]))
                .err()
                .expect(value)
                .to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn an_extra_ca_bundle_is_loaded_and_a_bad_one_is_named() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test-ca.pem");
        let s = Environment::from_lookup(lookup(&[("KEYGUARD_CA_BUNDLE", ca)])).unwrap();
        assert!(s.http_client().is_ok());
        let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let s = Environment::from_lookup(lookup(&[("KEYGUARD_CA_BUNDLE", not_pem)])).unwrap();
        let err = s.http_client().err().unwrap().to_string();
        assert!(err.contains("Cargo.toml"), "{err}");
    }

    #[test]
    fn profiles_can_come_inline_as_a_key_vault_reference_resolves_them() {
        let toml = "[[profile]]\nname = \"prod\"\nrequire = \"mmk\"\nmode = \"audit\"\n";
        let s = Environment::from_lookup(lookup(&[("KEYGUARD_CONFIG_TOML", toml)])).unwrap();
        assert_eq!(s.config_source, "KEYGUARD_CONFIG_TOML");
        assert_eq!(s.config.profiles.len(), 1);
        assert_eq!(s.config.profiles[0].name, "prod");
        let err = Environment::from_lookup(lookup(&[("KEYGUARD_CONFIG_TOML", "[[profile]\n")]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("KEYGUARD_CONFIG_TOML"), "{err}");
        let err = Environment::from_lookup(lookup(&[
            ("KEYGUARD_CONFIG_TOML", toml),
            ("KEYGUARD_CONFIG", "/etc/keyguard.toml"),
        ]))
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Environment::from_lookup(lookup(&[("KEYGUARD_DRY_RUN", "maybe")]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("KEYGUARD_DRY_RUN"));
        let err = Environment::from_lookup(lookup(&[("KEYGUARD_CONFIG", "/nonexistent/k.toml")]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/k.toml"));
    }
}
