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
