//! Request quotas: ARM's per-subscription read/write limits and Resource Graph's per-user query
//! quota. Every ARM response reports what is left (`x-ms-ratelimit-remaining-subscription-reads`
//! and friends; `x-ms-user-quota-remaining` / `x-ms-user-quota-resets-after` on Resource Graph);
//! a quota whose `enforce` is set also refuses requests over it with `429` + `Retry-After`.
//!
//! Each quota is a fixed window: `limit` requests per `window_ms`, counted from the first request
//! of the window. That is exactly Resource Graph's documented model ("15 queries within every
//! 5-second window"); ARM's current token bucket (250 reads, refilled 25 per second) is
//! approximated by the same window, which is enough for a client that honours the headers.
//!
//! Keys: ARM counts per subscription (or tenant, for `/subscriptions` and `/providers/...` calls)
//! and per calling principal; Resource Graph per calling principal.
//!
//! Defaults report Azure's nominal numbers without enforcing them (`enforce: false`), so tests
//! that never think about throttling are never throttled; a test turns enforcement on through
//! [`crate::SimConfig::throttle`], `PUT /_sim/throttle` or the `--graph-quota` /
//! `--arm-read-quota` options.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `limit` requests per `window_ms`; over it, `429` when `enforce` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub limit: u32,
    pub window_ms: u64,
    #[serde(default)]
    pub enforce: bool,
}

impl Quota {
    /// An enforced quota.
    pub const fn enforced(limit: u32, window: Duration) -> Quota {
        Quota {
            limit,
            window_ms: window.as_millis() as u64,
            enforce: true,
        }
    }

    /// A quota that is only reported in headers.
    pub const fn advisory(limit: u32, window: Duration) -> Quota {
        Quota {
            limit,
            window_ms: window.as_millis() as u64,
            enforce: false,
        }
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.max(1))
    }

    /// Parses `LIMIT/SECONDS` (e.g. `15/5`, `250/0.5`) into an enforced quota.
    pub fn parse_enforced(s: &str) -> Result<Quota, String> {
        let (limit, secs) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not LIMIT/SECONDS (e.g. 15/5)"))?;
        let limit: u32 = limit
            .trim()
            .parse()
            .map_err(|e| format!("quota limit '{limit}': {e}"))?;
        let secs: f64 = secs.trim().parse().map_err(|e| format!("quota window '{secs}': {e}"))?;
        if !(secs.is_finite() && secs > 0.0) {
            return Err(format!("quota window must be > 0 seconds, not '{secs}'"));
        }
        Ok(Quota::enforced(limit, Duration::from_secs_f64(secs)))
    }
}

/// Quotas of the simulated services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleConfig {
    /// Resource Graph queries per principal. Default: 15 per 5 s, advisory.
    pub graph: Quota,
    /// ARM reads (GET, HEAD) per subscription and principal. Default: 12,000 per hour, advisory
    /// (the limit ARM's headers used to count down from).
    pub arm_reads: Quota,
    /// ARM writes per subscription and principal. Default: 1,200 per hour, advisory.
    pub arm_writes: Quota,
}

pub const DEFAULT_GRAPH_QUOTA: Quota = Quota::advisory(15, Duration::from_secs(5));
pub const DEFAULT_ARM_READ_QUOTA: Quota = Quota::advisory(12_000, Duration::from_secs(3600));
pub const DEFAULT_ARM_WRITE_QUOTA: Quota = Quota::advisory(1_200, Duration::from_secs(3600));

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            graph: DEFAULT_GRAPH_QUOTA,
            arm_reads: DEFAULT_ARM_READ_QUOTA,
            arm_writes: DEFAULT_ARM_WRITE_QUOTA,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Bucket {
    Graph,
    ArmRead,
    ArmWrite,
}

/// What one request did to its quota.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Verdict {
    pub remaining: u32,
    pub resets_after: Duration,
    /// Over an enforced quota: answer 429, do not serve.
    pub throttled: bool,
}

impl Verdict {
    /// Whole seconds to wait, rounded up so a client waiting that long is never early.
    pub fn retry_after_secs(&self) -> u64 {
        let ms = self.resets_after.as_millis();
        u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX).max(1)
    }

    /// Resource Graph's `hh:mm:ss`.
    pub fn resets_after_hms(&self) -> String {
        let secs = u64::try_from(self.resets_after.as_millis().div_ceil(1000)).unwrap_or(u64::MAX);
        format!("{:02}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60)
    }
}

struct Window {
    start: Instant,
    used: u32,
}

pub(crate) struct Throttle {
    pub config: ThrottleConfig,
    windows: HashMap<(Bucket, String), Window>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            windows: HashMap::new(),
        }
    }

    /// Replaces the quotas and starts every window afresh.
    pub fn reconfigure(&mut self, config: ThrottleConfig) {
        self.config = config;
        self.windows.clear();
    }

    /// Counts one request against `bucket` for `key`, unless it is over an enforced quota
    /// (a refused request does not use quota, as with Azure's 429s).
    pub fn take(&mut self, bucket: Bucket, key: &str) -> Verdict {
        let quota = match bucket {
            Bucket::Graph => self.config.graph,
            Bucket::ArmRead => self.config.arm_reads,
            Bucket::ArmWrite => self.config.arm_writes,
        };
        let window = quota.window();
        let now = Instant::now();
        let w = self
            .windows
            .entry((bucket, key.to_owned()))
            .or_insert(Window { start: now, used: 0 });
        if now.duration_since(w.start) >= window {
            w.start = now;
            w.used = 0;
        }
        let resets_after = window.saturating_sub(now.duration_since(w.start));
        if quota.enforce && w.used >= quota.limit {
            return Verdict {
                remaining: 0,
                resets_after,
                throttled: true,
            };
        }
        w.used = w.used.saturating_add(1);
        Verdict {
            remaining: quota.limit.saturating_sub(w.used),
            resets_after,
            throttled: false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn enforced_window_counts_down_refuses_and_resets() {
        let mut t = Throttle::new(ThrottleConfig {
            graph: Quota::enforced(2, Duration::from_millis(200)),
            ..ThrottleConfig::default()
        });
        assert_eq!(t.take(Bucket::Graph, "a").remaining, 1);
        assert_eq!(t.take(Bucket::Graph, "a").remaining, 0);
        let over = t.take(Bucket::Graph, "a");
        assert!(over.throttled);
        assert!(over.retry_after_secs() >= 1);
        assert_eq!(over.resets_after_hms(), "00:00:01");
        // Another principal has its own quota.
        assert!(!t.take(Bucket::Graph, "b").throttled);
        std::thread::sleep(Duration::from_millis(210));
        let fresh = t.take(Bucket::Graph, "a");
        assert!(!fresh.throttled);
        assert_eq!(fresh.remaining, 1);
    }

    #[test]
    fn advisory_quota_never_refuses() {
        let mut t = Throttle::new(ThrottleConfig {
            arm_reads: Quota::advisory(1, Duration::from_secs(60)),
            ..ThrottleConfig::default()
        });
        for _ in 0..3 {
            assert!(!t.take(Bucket::ArmRead, "s").throttled);
        }
        assert_eq!(t.take(Bucket::ArmRead, "s").remaining, 0);
    }

    #[test]
    fn parses_limit_per_seconds() {
        let q = Quota::parse_enforced("15/5").unwrap();
        assert_eq!((q.limit, q.window_ms, q.enforce), (15, 5000, true));
        assert_eq!(Quota::parse_enforced("3/0.25").unwrap().window_ms, 250);
        assert!(Quota::parse_enforced("15").is_err());
        assert!(Quota::parse_enforced("x/5").is_err());
        assert!(Quota::parse_enforced("1/0").is_err());
    }
}
