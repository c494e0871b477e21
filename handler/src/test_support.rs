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
