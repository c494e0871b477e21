//! Log output set up in one place.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

use crate::HostEnv;

/// How log lines are written to stdout (the host collects stdout as logs and treats
/// stderr as errors, so everything goes to stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: what log pipelines behind the host can query.
    Json,
    /// Human-readable lines for local runs.
    Text,
}

impl LogFormat {
    /// JSON under the Functions host, text otherwise. Callers that want to force one
    /// (a `--log-format` flag) parse it with `str::parse`.
    pub fn detect(env: &HostEnv) -> Self {
        if env.running_under_host() {
            Self::Json
        } else {
            Self::Text
        }
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            other => Err(format!("unknown log format \"{other}\" (expected json or text)")),
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` filter (default `info`) writing to stdout.
///
/// A second call (tests, or a library also initialising) is a no-op rather than a panic.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).try_init(),
    };
    // Err only means a subscriber is already installed; keeping it is the documented behaviour.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_follows_host_env() {
        assert_eq!(LogFormat::detect(&HostEnv::default()), LogFormat::Text);
        let under_host = HostEnv {
            port: Some(1234),
            ..HostEnv::default()
        };
        assert_eq!(LogFormat::detect(&under_host), LogFormat::Json);
        let runtime_only = HostEnv {
            worker_runtime: Some("custom".into()),
            ..HostEnv::default()
        };
        assert_eq!(LogFormat::detect(&runtime_only), LogFormat::Json);
    }

    #[test]
    fn parses_names() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!(" text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn init_twice_is_harmless() {
        init_tracing(LogFormat::Text);
        init_tracing(LogFormat::Json);
    }
}
