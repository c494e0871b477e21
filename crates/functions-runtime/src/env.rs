//! The environment the Functions host hands to a custom-handler process.

/// Everything the host tells the handler process through environment variables.
///
/// Read once at start-up so the rest of the program never touches `std::env` and tests
/// can build any combination through [`HostEnv::from_lookup`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostEnv {
    /// Loopback port the host will call (`FUNCTIONS_CUSTOMHANDLER_PORT`, legacy `FUNCTIONS_HTTPWORKER_PORT`).
    pub port: Option<u16>,
    /// `FUNCTIONS_CUSTOMHANDLER_WORKER_ID` (legacy `FUNCTIONS_HTTPWORKER_ID`).
    pub worker_id: Option<String>,
    /// `FUNCTIONS_APP_ROOT_PATH`: the function app's script root.
    pub app_root: Option<String>,
    /// `FUNCTIONS_WORKER_RUNTIME` (`custom` for custom handlers).
    pub worker_runtime: Option<String>,
}

const PORT_VARS: [&str; 2] = ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"];
const WORKER_ID_VARS: [&str; 2] = ["FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "FUNCTIONS_HTTPWORKER_ID"];

impl HostEnv {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds from any variable source. Blank values count as absent, because an app
    /// setting that exists but is empty is how "unset" usually looks in Azure.
    ///
    /// The documented port variable wins; the legacy one is only consulted when the
    /// documented one is absent or unusable. An unusable port (not a number, or 0, which
    /// would mean "any port" and could never be the one the host dials) is logged and
    /// ignored rather than failing start-up, so the caller decides what a missing port means.
    pub fn from_lookup(f: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| f(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let port = PORT_VARS.iter().find_map(|var| {
            let raw = get(var)?;
            match raw.parse::<u16>() {
                Ok(p) if p != 0 => Some(p),
                _ => {
                    tracing::warn!(variable = var, value = %raw, "ignoring unusable port value");
                    None
                }
            }
        });
        Self {
            port,
            worker_id: WORKER_ID_VARS.iter().find_map(|var| get(var)),
            app_root: get("FUNCTIONS_APP_ROOT_PATH"),
            worker_runtime: get("FUNCTIONS_WORKER_RUNTIME"),
        }
    }

    /// True when the process looks like it was started by the Functions host (or Core
    /// Tools), which decides defaults such as the log format.
    pub fn running_under_host(&self) -> bool {
        self.worker_runtime.is_some() || self.port.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HostEnv {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        HostEnv::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn empty_environment_is_not_under_host() {
        let e = env(&[]);
        assert_eq!(e, HostEnv::default());
        assert!(!e.running_under_host());
    }

    #[test]
    fn reads_documented_variables() {
        let e = env(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "41234"),
            ("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "w-1"),
            ("FUNCTIONS_APP_ROOT_PATH", "/home/site/wwwroot"),
            ("FUNCTIONS_WORKER_RUNTIME", "custom"),
        ]);
        assert_eq!(e.port, Some(41234));
        assert_eq!(e.worker_id.as_deref(), Some("w-1"));
        assert_eq!(e.app_root.as_deref(), Some("/home/site/wwwroot"));
        assert_eq!(e.worker_runtime.as_deref(), Some("custom"));
        assert!(e.running_under_host());
    }

    #[test]
    fn falls_back_to_legacy_names() {
        let e = env(&[
            ("FUNCTIONS_HTTPWORKER_PORT", "5000"),
            ("FUNCTIONS_HTTPWORKER_ID", "legacy"),
        ]);
        assert_eq!(e.port, Some(5000));
        assert_eq!(e.worker_id.as_deref(), Some("legacy"));
        assert!(e.running_under_host());
    }

    #[test]
    fn documented_port_wins_over_legacy() {
        let e = env(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "1111"),
            ("FUNCTIONS_HTTPWORKER_PORT", "2222"),
        ]);
        assert_eq!(e.port, Some(1111));
    }

    #[test]
    fn unparsable_port_is_none_or_falls_back() {
        for bad in ["abc", "70000", "-1", "0", "12.5"] {
            assert_eq!(env(&[("FUNCTIONS_CUSTOMHANDLER_PORT", bad)]).port, None, "{bad}");
        }
        let e = env(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "abc"),
            ("FUNCTIONS_HTTPWORKER_PORT", "3333"),
        ]);
        assert_eq!(e.port, Some(3333));
    }

    #[test]
    fn blank_values_are_absent_and_whitespace_trimmed() {
        let e = env(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", " 8080 "),
            ("FUNCTIONS_WORKER_RUNTIME", "  "),
            ("FUNCTIONS_APP_ROOT_PATH", ""),
        ]);
        assert_eq!(e.port, Some(8080));
        assert_eq!(e.worker_runtime, None);
        assert_eq!(e.app_root, None);
    }

    #[test]
    fn worker_runtime_alone_means_under_host() {
        assert!(env(&[("FUNCTIONS_WORKER_RUNTIME", "Custom")]).running_under_host());
    }
}
