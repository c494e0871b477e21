//! Helpers shared by unit tests.

/// An environment lookup over fixed pairs, so settings are tested without touching the process env.
pub fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| owned.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone())
}
