//! The start-up decision: which [`ApiAuthMode`] guards the API routes and which guards
//! `/api/events`, for the command being run. It depends on the command and the settings only,
//! never on the address the listener is bound to (a restriction may, a grant never does).
//!
//! | command | API routes | `/api/events` |
//! |---|---|---|
//! | `keyguard serve` under the Functions host | the configured credentials, else the host's function key | not served (events come through `EncryptionDrift`) |
//! | `keyguard serve` without the host | the configured credentials; none: start-up refused | not served |
//! | `keyguard webhook` | API key and/or Entra ID token; none: 401 | webhook key and/or Event Grid's Entra ID token; none: 401 |
//! | `keyguard webhook` with nothing configured | start-up refused | start-up refused |
//! | `keyguard webhook --insecure-no-auth` (loopback only, nothing configured) | anyone, with a warning per request | anyone, with a warning per request |
//!
//! Refusing to start with nothing configured is the safer of the two possible answers: a webhook
//! that answers 401 to everything looks alive to a health probe while doing nothing.

use std::net::IpAddr;
use std::sync::Arc;

use super::{API_SETTINGS, ApiAuthMode, ApiAuthenticator, CredentialSettings, EVENT_SETTINGS, KeyLocation};

/// The command that serves the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// `keyguard serve`; `under_functions_host` when the host gave the port
    /// (`FUNCTIONS_CUSTOMHANDLER_PORT`), i.e. the host forwards the requests after checking keys.
    Serve { under_functions_host: bool },
    /// `keyguard webhook`.
    Webhook { bind: IpAddr, insecure_no_auth: bool },
}

/// The mode of each group of routes. See the module docs.
#[derive(Debug)]
pub struct AccessModes {
    pub api: ApiAuthMode,
    pub events: ApiAuthMode,
}

/// What [`AccessModes::authenticators`] builds for the routers.
#[derive(Debug, Clone)]
pub struct Authenticators {
    pub api: Arc<ApiAuthenticator>,
    pub events: Arc<ApiAuthenticator>,
}

impl AccessModes {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>, launch: Launch) -> anyhow::Result<Self> {
        // Both groups are read (and so validated: a short key is refused) whatever the command.
        let api = ApiAuthMode::configured(&get, &API_SETTINGS)?;
        let events = ApiAuthMode::configured(&get, &EVENT_SETTINGS)?;
        match launch {
            Launch::Serve { under_functions_host } => {
                let api = match api {
                    Some(mode) => mode,
                    None if under_functions_host => ApiAuthMode::FunctionsHost,
                    None => anyhow::bail!(
                        "`keyguard serve` outside the Functions host (no FUNCTIONS_CUSTOMHANDLER_PORT) has nobody \
                         checking keys: set {} or {}_TENANT_ID",
                        API_SETTINGS.key,
                        API_SETTINGS.entra_prefix
                    ),
                };
                Ok(Self {
                    api,
                    events: ApiAuthMode::Closed,
                })
            }
            Launch::Webhook {
                bind,
                insecure_no_auth: true,
            } => {
                let configured: Vec<String> = [(&api, &API_SETTINGS), (&events, &EVENT_SETTINGS)]
                    .into_iter()
                    .filter(|(mode, _)| mode.is_some())
                    .map(|(_, settings)| describe_settings(settings))
                    .collect();
                if !configured.is_empty() {
                    anyhow::bail!(
                        "--insecure-no-auth turns authentication off, but credentials are configured ({}): \
                         drop the flag, or unset them",
                        configured.join("; ")
                    );
                }
                if !bind.is_loopback() {
                    anyhow::bail!(
                        "--insecure-no-auth is for local development: bind it to a loopback address, not {bind}"
                    );
                }
                Ok(Self {
                    api: ApiAuthMode::InsecureNoAuth,
                    events: ApiAuthMode::InsecureNoAuth,
                })
            }
            Launch::Webhook {
                insecure_no_auth: false,
                ..
            } => match (api, events) {
                (None, None) => anyhow::bail!(
                    "`keyguard webhook` has no credential configured, so it would refuse every request: set {} \
                     (Event Grid's ?code=) or {}_TENANT_ID for /api/events, and {} or {}_TENANT_ID for the other \
                     routes; or pass --insecure-no-auth for local development",
                    EVENT_SETTINGS.key,
                    EVENT_SETTINGS.entra_prefix,
                    API_SETTINGS.key,
                    API_SETTINGS.entra_prefix
                ),
                (api, events) => Ok(Self {
                    api: api.unwrap_or(ApiAuthMode::Closed),
                    events: events.unwrap_or(ApiAuthMode::Closed),
                }),
            },
        }
    }

    /// Builds the authenticators and logs, once, what guards which routes.
    pub fn authenticators(self, http: reqwest::Client) -> Authenticators {
        let insecure = matches!(self.api, ApiAuthMode::InsecureNoAuth);
        let api = ApiAuthenticator::new(self.api, KeyLocation::ApiHeaders, http.clone());
        let events = ApiAuthenticator::new(self.events, KeyLocation::WebhookQuery, http);
        if insecure {
            tracing::warn!(
                "--insecure-no-auth: every /api/* route answers ANYONE, without authentication; \
                 never use this outside local development"
            );
        }
        if api.is_closed() {
            tracing::warn!(
                "no {} or {}_TENANT_ID: /api/check, /api/scan, /api/findings and /api/audit answer 401 to everyone",
                API_SETTINGS.key,
                API_SETTINGS.entra_prefix
            );
        }
        tracing::info!(api = api.describe(), events = events.describe(), "authentication");
        Authenticators {
            api: Arc::new(api),
            events: Arc::new(events),
        }
    }
}

fn describe_settings(settings: &CredentialSettings) -> String {
    format!("{} / {} / {}_*", settings.key, settings.key_file, settings.entra_prefix)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::test_support::lookup;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    const KEY: &str = "a-webhook-key-of-32-characters!!";
    const TENANT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    const fn webhook(bind: IpAddr) -> Launch {
        Launch::Webhook {
            bind,
            insecure_no_auth: false,
        }
    }

    const INSECURE: Launch = Launch::Webhook {
        bind: LOOPBACK,
        insecure_no_auth: true,
    };

    fn modes(pairs: &[(&str, &str)], launch: Launch) -> anyhow::Result<AccessModes> {
        AccessModes::from_lookup(lookup(pairs), launch)
    }

    fn error_of(pairs: &[(&str, &str)], launch: Launch) -> String {
        format!("{:#}", modes(pairs, launch).unwrap_err())
    }

    /// Finding 2: a webhook key alone used to mean "API on loopback, no credentials".
    #[test]
    fn a_webhook_key_alone_closes_the_api_instead_of_opening_it() {
        for bind in [LOOPBACK, ANY] {
            let m = modes(&[("KEYGUARD_WEBHOOK_KEY", KEY)], webhook(bind)).unwrap();
            assert!(matches!(m.api, ApiAuthMode::Closed), "{bind}: {m:?}");
            assert!(matches!(m.events, ApiAuthMode::Key(_)), "{bind}: {m:?}");
        }
        let m = modes(&[("KEYGUARD_API_KEY", KEY)], webhook(LOOPBACK)).unwrap();
        assert!(matches!(m.api, ApiAuthMode::Key(_)), "{m:?}");
        assert!(matches!(m.events, ApiAuthMode::Closed), "{m:?}");
    }

    #[test]
    fn a_webhook_with_nothing_configured_does_not_start_whatever_the_bind_address() {
        for bind in [LOOPBACK, ANY] {
            let err = error_of(&[], webhook(bind));
            for name in ["KEYGUARD_WEBHOOK_KEY", "KEYGUARD_API_KEY", "--insecure-no-auth"] {
                assert!(err.contains(name), "{bind}: {err}");
            }
        }
        // The Functions host's variables grant nothing to `keyguard webhook`.
        let err = error_of(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")], webhook(LOOPBACK));
        assert!(err.contains("no credential configured"), "{err}");
    }

    #[test]
    fn insecure_no_auth_is_explicit_loopback_only_and_never_mixed_with_credentials() {
        let m = modes(&[], INSECURE).unwrap();
        assert!(matches!(m.api, ApiAuthMode::InsecureNoAuth), "{m:?}");
        assert!(matches!(m.events, ApiAuthMode::InsecureNoAuth), "{m:?}");
        let err = error_of(
            &[],
            Launch::Webhook {
                bind: ANY,
                insecure_no_auth: true,
            },
        );
        assert!(err.contains("loopback") && err.contains("0.0.0.0"), "{err}");
        for pairs in [
            vec![("KEYGUARD_WEBHOOK_KEY", KEY)],
            vec![("KEYGUARD_API_KEY", KEY)],
            vec![
                ("KEYGUARD_API_TENANT_ID", TENANT),
                ("KEYGUARD_API_AUDIENCE", "api://keyguard"),
            ],
        ] {
            let err = error_of(&pairs, INSECURE);
            assert!(
                err.contains("--insecure-no-auth") && !err.contains(KEY),
                "{pairs:?}: {err}"
            );
        }
    }

    #[test]
    fn serve_trusts_the_functions_host_only_when_the_host_started_it() {
        let m = modes(
            &[],
            Launch::Serve {
                under_functions_host: true,
            },
        )
        .unwrap();
        assert!(matches!(m.api, ApiAuthMode::FunctionsHost), "{m:?}");
        assert!(matches!(m.events, ApiAuthMode::Closed), "{m:?}");
        let err = error_of(
            &[],
            Launch::Serve {
                under_functions_host: false,
            },
        );
        assert!(
            err.contains("FUNCTIONS_CUSTOMHANDLER_PORT") && err.contains("KEYGUARD_API_KEY"),
            "{err}"
        );
        // Configured credentials win over the host's key check.
        let m = modes(
            &[
                ("KEYGUARD_API_KEY", KEY),
                ("KEYGUARD_API_TENANT_ID", TENANT),
                ("KEYGUARD_API_AUDIENCE", "api://keyguard"),
            ],
            Launch::Serve {
                under_functions_host: true,
            },
        )
        .unwrap();
        assert!(matches!(m.api, ApiAuthMode::Either { .. }), "{m:?}");
        let m = modes(
            &[("KEYGUARD_API_KEY", KEY)],
            Launch::Serve {
                under_functions_host: false,
            },
        )
        .unwrap();
        assert!(matches!(m.api, ApiAuthMode::Key(_)), "{m:?}");
    }

    #[test]
    fn short_keys_are_refused_at_start_up_naming_the_variable_not_the_key() {
        for (name, short) in [
            ("KEYGUARD_WEBHOOK_KEY", "fifteen-chars!!"),
            ("KEYGUARD_API_KEY", "short-k3y"),
        ] {
            for launch in [
                webhook(LOOPBACK),
                Launch::Serve {
                    under_functions_host: true,
                },
            ] {
                let err = error_of(&[(name, short)], launch);
                assert!(err.contains(name) && err.contains("shorter than 16"), "{err}");
                assert!(!err.contains(short), "the key is echoed: {err}");
            }
        }
        // Exactly 16 characters is enough; characters, not bytes, are counted.
        assert!(modes(&[("KEYGUARD_WEBHOOK_KEY", "sixteen-chars-ok")], webhook(LOOPBACK)).is_ok());
        assert!(modes(&[("KEYGUARD_WEBHOOK_KEY", "ééééééééééééééé")], webhook(LOOPBACK)).is_err());
    }

    #[test]
    fn event_grid_entra_settings_have_their_own_prefix() {
        let m = modes(
            &[
                ("KEYGUARD_EVENTGRID_TENANT_ID", TENANT),
                ("KEYGUARD_EVENTGRID_AUDIENCE", "api://keyguard-events"),
            ],
            webhook(ANY),
        )
        .unwrap();
        let ApiAuthMode::Entra(config) = &m.events else {
            panic!("expected Entra for events: {m:?}")
        };
        assert_eq!(config.audiences, vec!["api://keyguard-events"]);
        assert!(matches!(m.api, ApiAuthMode::Closed), "{m:?}");
        let err = error_of(&[("KEYGUARD_EVENTGRID_AUDIENCE", "x")], webhook(LOOPBACK));
        assert!(err.contains("KEYGUARD_EVENTGRID_TENANT_ID"), "{err}");
        let err = error_of(&[("KEYGUARD_EVENTGRID_TENANT_ID", TENANT)], webhook(LOOPBACK));
        assert!(err.contains("KEYGUARD_EVENTGRID_AUDIENCE"), "{err}");
    }
}
