//! Helpers shared by unit tests.

/// An environment lookup over fixed pairs, so settings are tested without touching the process env.
pub fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| owned.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone())
}

/// A token source that always hands out the same token.
pub struct FixedToken(String);

impl FixedToken {
    pub fn new(token: &str) -> Self {
        Self(token.to_string())
    }
}

impl crate::identity::TokenSource for FixedToken {
    fn token<'a>(&'a self, _scope: &'a str) -> crate::identity::TokenFuture<'a> {
        let token = self.0.clone();
        Box::pin(async move { Ok(azure_core::credentials::Secret::new(token)) })
    }
}

/// The egress layer for tests: ARM at `arm_base`, Table Storage at `storage` (if any), Key Vault
/// calls sent to `keyvault_override` (the stand-in) once the policy approved the real vault URL.
pub fn egress(
    tokens: std::sync::Arc<dyn crate::identity::TokenSource>,
    arm_base: &str,
    storage: Option<&url::Url>,
    keyvault_override: Option<&str>,
) -> std::sync::Arc<crate::egress::Egress> {
    let arm = url::Url::parse(arm_base).unwrap_or_else(|e| panic!("{arm_base}: {e}"));
    std::sync::Arc::new(crate::egress::Egress::new(
        reqwest::Client::new(),
        tokens,
        keyguard_core::egress::EgressPolicy::new(&arm, keyguard_core::keyref::Cloud::Public, storage),
        keyvault_override.map(|o| url::Url::parse(o).unwrap_or_else(|e| panic!("{o}: {e}"))),
    ))
}

/// Everything logged on this thread while it lives (DEBUG and up, plain text), for tests that
/// check what reaches the log and what must not.
pub struct CapturedLogs {
    buffer: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    pub fn start() -> Self {
        let buffer = std::sync::Arc::default();
        let writer = LogWriter(std::sync::Arc::clone(&buffer));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        // A callsite first hit on another test's thread (no subscriber there) may have cached
        // "never": ask every callsite again now that this thread's subscriber exists.
        tracing::callsite::rebuild_interest_cache();
        Self { buffer, _guard: guard }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// A fresh directory under the system temp dir, removed when the test ends.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The reconcile's context over an in-process azure-sim, as every in-process test builds it:
/// ARM and Key Vault through the egress wrapper to the sim, `tokens` as keyguard's credential.
pub fn reconcile_context(
    sim: &azure_sim::SimHandle,
    tokens: std::sync::Arc<dyn crate::identity::TokenSource>,
    store: crate::store::StateStore,
    config: keyguard_core::config::Config,
) -> crate::reconcile::Context {
    let egress = egress(tokens, &sim.base_url(), None, Some(&sim.base_url()));
    let settings = crate::reconcile::ReconcileSettings {
        dry_run: false,
        time_budget: std::time::Duration::from_secs(10),
        instance: crate::instance::instance_name(),
    };
    crate::reconcile::Context::new(
        std::sync::Arc::new(config),
        crate::arm::ArmClient::new(egress.clone()),
        crate::keyvault::KeyVaultClient::new(egress),
        store,
        settings,
    )
}

/// What the timer's pruning keeps, in tests.
pub fn retention() -> crate::store::Retention {
    crate::store::Retention {
        audit: time::Duration::days(90),
        sent_alerts: time::Duration::days(7),
    }
}
