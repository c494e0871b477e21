//! Small helpers shared by the services.

use std::sync::{Mutex, MutexGuard};

use time::OffsetDateTime;
use time::macros::format_description;

/// Locks a mutex even if a panicking task poisoned it: the simulator's state stays usable
/// for inspection after a test failure, which is when it is needed most.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// ARM and Event Grid timestamps carry 7 fractional digits (.NET ticks); matching that keeps
/// parsers honest about more than the 3 or 6 digits other clouds use.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn now_string() -> String {
    format_time(OffsetDateTime::now_utc())
}

pub(crate) fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Decodes `%XX` escapes of a URL path segment. Invalid escapes are kept literally, as a
/// lenient server would; ARM ids may legitimately contain `{`/`}` placeholders in fixtures.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A parsed ARM resource id. Keeps the caller's spelling (ARM echoes ids as written at
/// creation) while `key()` gives the case-insensitive identity ARM uses for lookups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResourceId {
    pub subscription: String,
    pub resource_group: String,
    /// Provider namespace, e.g. `Microsoft.Storage`; empty for a resource-group id.
    pub namespace: String,
    /// Type segments after the namespace, e.g. `["storageAccounts"]`.
    pub types: Vec<String>,
    /// Name segments, one per type.
    pub names: Vec<String>,
}

impl ResourceId {
    /// Parses `/subscriptions/{s}/resourceGroups/{rg}[/providers/{ns}/{type}/{name}...]`.
    pub fn parse(id: &str) -> Option<ResourceId> {
        let segs: Vec<String> = id.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
        Self::from_segments(&segs)
    }

    pub fn from_segments(segs: &[String]) -> Option<ResourceId> {
        if segs.len() < 4
            || !segs[0].eq_ignore_ascii_case("subscriptions")
            || !segs[2].eq_ignore_ascii_case("resourcegroups")
        {
            return None;
        }
        let mut rid = ResourceId {
            subscription: segs[1].clone(),
            resource_group: segs[3].clone(),
            namespace: String::new(),
            types: Vec::new(),
            names: Vec::new(),
        };
        if segs.len() == 4 {
            return Some(rid);
        }
        if segs.len() < 8 || !segs[4].eq_ignore_ascii_case("providers") || !segs.len().is_multiple_of(2) {
            return None;
        }
        rid.namespace = segs[5].clone();
        for pair in segs[6..].chunks(2) {
            rid.types.push(pair[0].clone());
            rid.names.push(pair[1].clone());
        }
        Some(rid)
    }

    pub fn is_resource_group(&self) -> bool {
        self.namespace.is_empty()
    }

    /// `Microsoft.Storage/storageAccounts` style full type.
    pub fn full_type(&self) -> String {
        let mut t = self.namespace.clone();
        for ty in &self.types {
            t.push('/');
            t.push_str(ty);
        }
        t
    }

    pub fn name(&self) -> &str {
        self.names.last().map(String::as_str).unwrap_or(&self.resource_group)
    }

    pub fn group_key(&self) -> String {
        format!(
            "/subscriptions/{}/resourcegroups/{}",
            self.subscription, self.resource_group
        )
        .to_ascii_lowercase()
    }

    pub fn key(&self) -> String {
        let mut k = self.group_key();
        if !self.is_resource_group() {
            k.push_str("/providers/");
            k.push_str(&self.namespace.to_ascii_lowercase());
            for (t, n) in self.types.iter().zip(&self.names) {
                k.push('/');
                k.push_str(&t.to_ascii_lowercase());
                k.push('/');
                k.push_str(&n.to_ascii_lowercase());
            }
        }
        k
    }
}

/// Real ARM events spell the segment `resourcegroups`; reproducing that catches consumers
/// that compare ids case-sensitively.
pub(crate) fn lower_resourcegroups(id: &str) -> String {
    id.split('/')
        .map(|s| {
            if s.eq_ignore_ascii_case("resourcegroups") {
                "resourcegroups"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// 64-bit FNV-1a; deterministic ids and fake key versions come from it so demo runs and
/// golden files are reproducible.
pub(crate) fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A GUID-shaped string derived from `name`.
pub(crate) fn stable_guid(name: &str) -> String {
    let a = fnv1a(1, name.as_bytes());
    let b = fnv1a(2, name.as_bytes());
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids() {
        let id =
            ResourceId::parse("/subscriptions/S/resourcegroups/RG/providers/Microsoft.Storage/storageAccounts/acct")
                .unwrap();
        assert_eq!(id.full_type(), "Microsoft.Storage/storageAccounts");
        assert_eq!(
            id.key(),
            "/subscriptions/s/resourcegroups/rg/providers/microsoft.storage/storageaccounts/acct"
        );
        assert!(
            ResourceId::parse("/subscriptions/S/resourceGroups/RG")
                .unwrap()
                .is_resource_group()
        );
        assert!(ResourceId::parse("/subscriptions/S/providers/X").is_none());
        assert_eq!(percent_decode("%7Bsub%7D%zz"), "{sub}%zz");
        assert!(format_time(OffsetDateTime::UNIX_EPOCH).ends_with(".0000000Z"));
    }
}
