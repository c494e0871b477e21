//! ARM resource ids.
//!
//! Every id we act on comes from outside (an event's `resourceUri`, an API caller, a config
//! file), and the id ends up inside a management URL we send a bearer token to. So the parser is
//! deliberately strict: anything that could change the meaning of the URL (a scheme or host,
//! `..`, percent-encoding, a query, a fragment, backslashes, whitespace) is rejected rather than
//! cleaned up. ARM ids are case-insensitive, so comparisons go through [`ResourceId::key`].

use std::fmt;
use std::str::FromStr;

/// Longest id we accept. ARM's own URL limit is larger, but no real resource id comes near this,
/// and a bound keeps hostile input cheap.
pub const MAX_RESOURCE_ID_LEN: usize = 2048;

/// Unicode format characters that change how text is shown without being seen: bidi embeddings,
/// overrides, isolates and marks reorder what a person reads in an alert, a log or a report
/// ("Trojan Source"), and zero-width characters make two ids look alike. No Azure resource name
/// may contain one, so an id or an event field that does is refused, not displayed.
pub fn is_invisible_formatting(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// Why a string is not an acceptable ARM resource id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceIdError {
    #[error("resource id is empty")]
    Empty,
    #[error("resource id is {len} bytes long, more than the {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("resource id must be a path (\"/subscriptions/...\"), not a URL with a scheme or host")]
    NotAPath,
    #[error("resource id must start with \"/subscriptions/\"")]
    NotStartingWithSubscriptions,
    #[error("resource id must not contain percent-encoding ('%')")]
    PercentEncoded,
    #[error("resource id must not contain a query or fragment ({ch:?})")]
    QueryOrFragment { ch: char },
    #[error("resource id must not contain a backslash")]
    Backslash,
    #[error("resource id must not contain whitespace or control characters (found at byte {position})")]
    WhitespaceOrControl { position: usize },
    #[error(
        "resource id must not contain invisible formatting characters (bidi controls, zero-width) (found at byte {position})"
    )]
    InvisibleFormatting { position: usize },
    #[error("resource id must not contain \".\" or \"..\" segments")]
    DotSegment,
    #[error("resource id has an empty segment (\"//\" or a trailing '/') at segment {index}")]
    EmptySegment { index: usize },
    #[error("expected segment \"{expected}\" at position {index}, found \"{found}\"")]
    UnexpectedSegment {
        index: usize,
        expected: &'static str,
        found: String,
    },
    #[error("resource id has no resource group (\"/resourceGroups/{{name}}\")")]
    MissingResourceGroup,
    #[error(
        "not a resource id: a subscription or resource group id has no \"/providers/{{namespace}}/{{type}}/{{name}}\" part"
    )]
    MissingProvider,
    #[error(
        "invalid provider namespace \"{namespace}\" (expected letters, digits and dots, like \"Microsoft.Storage\")"
    )]
    InvalidNamespace { namespace: String },
    #[error("provider namespace \"{namespace}\" is not followed by a resource type and name")]
    MissingResourceType { namespace: String },
    #[error("resource type \"{resource_type}\" has no name segment (odd number of type/name segments)")]
    OddTypeNameSegments { resource_type: String },
}

/// A parsed ARM resource id (`/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{childType}/{childName}...]`).
///
/// Equality and hashing are on the canonical spelling (values keep their original casing); use
/// [`ResourceId::key`] when two ids should be considered the same resource, as ARM does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceId {
    canonical: String,
    subscription: String,
    resource_group: String,
    /// One entry per `providers/{namespace}` scope; more than one for extension resources
    /// (`.../providers/Microsoft.EventGrid/topics/t/providers/Microsoft.EventGrid/eventSubscriptions/s`).
    scopes: Vec<ProviderScope>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ProviderScope {
    namespace: String,
    /// (type, name) pairs below this namespace.
    pairs: Vec<(String, String)>,
}

impl ResourceId {
    /// Parse and validate; see the module docs for what is rejected and why.
    pub fn parse(s: &str) -> Result<ResourceId, ResourceIdError> {
        if s.is_empty() {
            return Err(ResourceIdError::Empty);
        }
        if s.len() > MAX_RESOURCE_ID_LEN {
            return Err(ResourceIdError::TooLong {
                len: s.len(),
                max: MAX_RESOURCE_ID_LEN,
            });
        }
        for (position, ch) in s.char_indices() {
            match ch {
                '%' => return Err(ResourceIdError::PercentEncoded),
                '?' | '#' => return Err(ResourceIdError::QueryOrFragment { ch }),
                '\\' => return Err(ResourceIdError::Backslash),
                c if c.is_whitespace() || c.is_control() => {
                    return Err(ResourceIdError::WhitespaceOrControl { position });
                }
                c if is_invisible_formatting(c) => {
                    return Err(ResourceIdError::InvisibleFormatting { position });
                }
                _ => {}
            }
        }
        if !s.starts_with('/') {
            if s.contains("://") || looks_like_scheme(s) {
                return Err(ResourceIdError::NotAPath);
            }
            return Err(ResourceIdError::NotStartingWithSubscriptions);
        }

        // s starts with '/', so the first element of the split is the empty string before it.
        let segments: Vec<&str> = s[1..].split('/').collect();
        for (index, seg) in segments.iter().enumerate() {
            if seg.is_empty() {
                // "//" at the very start reads better as "not /subscriptions/".
                if index == 0 {
                    return Err(ResourceIdError::NotStartingWithSubscriptions);
                }
                return Err(ResourceIdError::EmptySegment { index });
            }
            if *seg == "." || *seg == ".." {
                return Err(ResourceIdError::DotSegment);
            }
        }

        let mut it = segments.iter().copied().enumerate();
        match it.next() {
            Some((_, seg)) if seg.eq_ignore_ascii_case("subscriptions") => {}
            _ => return Err(ResourceIdError::NotStartingWithSubscriptions),
        }
        let subscription = match it.next() {
            Some((_, sub)) => sub,
            None => return Err(ResourceIdError::NotStartingWithSubscriptions),
        };
        let resource_group = match it.next() {
            None => return Err(ResourceIdError::MissingProvider),
            Some((_, seg)) if seg.eq_ignore_ascii_case("resourceGroups") => match it.next() {
                Some((_, rg)) => rg,
                None => return Err(ResourceIdError::MissingResourceGroup),
            },
            Some((_, seg)) if seg.eq_ignore_ascii_case("providers") => {
                return Err(ResourceIdError::MissingResourceGroup);
            }
            Some((index, found)) => {
                return Err(ResourceIdError::UnexpectedSegment {
                    index,
                    expected: "resourceGroups",
                    found: truncate(found),
                });
            }
        };
        match it.next() {
            None => return Err(ResourceIdError::MissingProvider),
            Some((_, seg)) if seg.eq_ignore_ascii_case("providers") => {}
            Some((index, found)) => {
                return Err(ResourceIdError::UnexpectedSegment {
                    index,
                    expected: "providers",
                    found: truncate(found),
                });
            }
        }

        let mut scopes: Vec<ProviderScope> = Vec::new();
        let mut current = match it.next() {
            Some((_, ns)) => new_scope(ns)?,
            None => return Err(ResourceIdError::MissingProvider),
        };
        while let Some((_, ty)) = it.next() {
            let name = match it.next() {
                Some((_, name)) => name,
                None => {
                    return Err(ResourceIdError::OddTypeNameSegments {
                        resource_type: truncate(ty),
                    });
                }
            };
            if ty.eq_ignore_ascii_case("providers") {
                // An extension resource: a new provider scope below the current resource.
                if current.pairs.is_empty() {
                    return Err(ResourceIdError::MissingResourceType {
                        namespace: truncate(&current.namespace),
                    });
                }
                scopes.push(current);
                current = new_scope(name)?;
            } else {
                current.pairs.push((ty.to_string(), name.to_string()));
            }
        }
        if current.pairs.is_empty() {
            return Err(ResourceIdError::MissingResourceType {
                namespace: truncate(&current.namespace),
            });
        }
        scopes.push(current);

        let mut canonical = format!("/subscriptions/{subscription}/resourceGroups/{resource_group}");
        for scope in &scopes {
            canonical.push_str("/providers/");
            canonical.push_str(&scope.namespace);
            for (ty, name) in &scope.pairs {
                canonical.push('/');
                canonical.push_str(ty);
                canonical.push('/');
                canonical.push_str(name);
            }
        }
        Ok(ResourceId {
            canonical,
            subscription: subscription.to_string(),
            resource_group: resource_group.to_string(),
            scopes,
        })
    }

    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }

    /// The provider namespace that owns the resource (for an extension resource, the innermost one).
    pub fn provider(&self) -> &str {
        self.last_scope().map(|s| s.namespace.as_str()).unwrap_or("")
    }

    /// Full type, e.g. `Microsoft.Storage/storageAccounts` or `Microsoft.Sql/servers/databases`.
    /// The casing is the id's own; look types up case-insensitively.
    pub fn resource_type(&self) -> String {
        match self.last_scope() {
            Some(scope) => {
                let mut out = scope.namespace.clone();
                for (ty, _) in &scope.pairs {
                    out.push('/');
                    out.push_str(ty);
                }
                out
            }
            None => String::new(),
        }
    }

    /// The last name segment (the resource's own name).
    pub fn name(&self) -> &str {
        self.last_scope()
            .and_then(|s| s.pairs.last())
            .map(|(_, name)| name.as_str())
            .unwrap_or("")
    }

    /// The id of the parent resource, when this is a child (`.../servers/s/databases/d` -> `.../servers/s`).
    pub fn parent(&self) -> Option<ResourceId> {
        let mut parent = self.clone();
        let last = parent.scopes.last_mut()?;
        last.pairs.pop();
        if last.pairs.is_empty() {
            parent.scopes.pop();
        }
        if parent.scopes.is_empty() {
            return None;
        }
        ResourceId::parse(&parent.rebuild()).ok()
    }

    /// Canonical spelling: values keep their casing, fixed segment names are spelled as ARM documents them.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// Lower-cased canonical id: the identity of the resource for maps, dedupe and comparisons.
    pub fn key(&self) -> String {
        self.canonical.to_ascii_lowercase()
    }

    /// Same resource, ignoring case (ARM semantics).
    pub fn same_resource(&self, other: &ResourceId) -> bool {
        self.canonical.eq_ignore_ascii_case(&other.canonical)
    }

    fn last_scope(&self) -> Option<&ProviderScope> {
        self.scopes.last()
    }

    fn rebuild(&self) -> String {
        let mut out = format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.subscription, self.resource_group
        );
        for scope in &self.scopes {
            out.push_str("/providers/");
            out.push_str(&scope.namespace);
            for (ty, name) in &scope.pairs {
                out.push('/');
                out.push_str(ty);
                out.push('/');
                out.push_str(name);
            }
        }
        out
    }
}

fn new_scope(namespace: &str) -> Result<ProviderScope, ResourceIdError> {
    if !is_valid_namespace(namespace) {
        return Err(ResourceIdError::InvalidNamespace {
            namespace: truncate(namespace),
        });
    }
    Ok(ProviderScope {
        namespace: namespace.to_string(),
        pairs: Vec::new(),
    })
}

/// `Microsoft.Storage`, `Microsoft.DBforPostgreSQL`: ASCII letters, digits and single interior dots.
fn is_valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 128
        && ns.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        && !ns.starts_with('.')
        && !ns.ends_with('.')
        && !ns.contains("..")
}

/// `https:...`, `mailto:...`: a scheme is letters followed by a colon before any slash.
fn looks_like_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && !scheme.contains('/')
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        }
        None => false,
    }
}

/// Error messages quote pieces of untrusted input; keep them short.
fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl FromStr for ResourceId {
    type Err = ResourceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceId::parse(s)
    }
}

impl AsRef<str> for ResourceId {
    fn as_ref(&self) -> &str {
        &self.canonical
    }
}

impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical)
    }
}

/// Deserialising re-validates, so an id read back from storage or an API body is as trusted as a parsed one.
impl<'de> serde::Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        ResourceId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STORAGE: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-prod-1/providers/Microsoft.Storage/storageAccounts/stprod1";

    fn err(s: &str) -> ResourceIdError {
        match ResourceId::parse(s) {
            Ok(id) => panic!("expected {s:?} to be rejected, parsed as {id}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_a_storage_account() {
        let id = ResourceId::parse(STORAGE).unwrap();
        assert_eq!(id.subscription(), "00000000-0000-0000-0000-000000000001");
        assert_eq!(id.resource_group(), "rg-prod-1");
        assert_eq!(id.provider(), "Microsoft.Storage");
        assert_eq!(id.resource_type(), "Microsoft.Storage/storageAccounts");
        assert_eq!(id.name(), "stprod1");
        assert_eq!(id.as_str(), STORAGE);
        assert_eq!(id.to_string(), STORAGE);
        assert_eq!(id.key(), STORAGE.to_ascii_lowercase());
        assert_eq!(id.parent(), None);
    }

    #[test]
    fn canonicalises_fixed_segment_names_but_keeps_value_casing() {
        let id =
            ResourceId::parse("/SUBSCRIPTIONS/Sub/resourcegroups/RG/PROVIDERS/Microsoft.Storage/storageAccounts/Name")
                .unwrap();
        assert_eq!(
            id.as_str(),
            "/subscriptions/Sub/resourceGroups/RG/providers/Microsoft.Storage/storageAccounts/Name"
        );
        let other =
            ResourceId::parse("/subscriptions/sub/resourceGroups/rg/providers/microsoft.storage/STORAGEACCOUNTS/name")
                .unwrap();
        assert_ne!(id, other, "derived equality is on the canonical spelling");
        assert!(id.same_resource(&other));
        assert_eq!(id.key(), other.key());
    }

    #[test]
    fn accepts_spec_placeholders_and_child_resources() {
        let id = ResourceId::parse("/subscriptions/{subscription-id}/resourcegroups/{resource-group}/providers/Microsoft.Sql/servers/{server}/databases/{db}").unwrap();
        assert_eq!(id.resource_type(), "Microsoft.Sql/servers/databases");
        assert_eq!(id.name(), "{db}");
        assert_eq!(id.subscription(), "{subscription-id}");
        let parent = id.parent().unwrap();
        assert_eq!(parent.resource_type(), "Microsoft.Sql/servers");
        assert_eq!(parent.name(), "{server}");
    }

    #[test]
    fn extension_resources_take_the_innermost_provider() {
        let id = ResourceId::parse("/subscriptions/s/resourceGroups/examplerg/providers/Microsoft.EventGrid/topics/exampletopic2/providers/Microsoft.EventGrid/eventSubscriptions/examplesubscription1").unwrap();
        assert_eq!(id.provider(), "Microsoft.EventGrid");
        assert_eq!(id.resource_type(), "Microsoft.EventGrid/eventSubscriptions");
        assert_eq!(id.name(), "examplesubscription1");
        let parent = id.parent().unwrap();
        assert_eq!(parent.resource_type(), "Microsoft.EventGrid/topics");
    }

    #[test]
    fn rejections_are_specific() {
        use ResourceIdError as E;
        assert_eq!(err(""), E::Empty);
        assert!(matches!(
            err(&format!("{STORAGE}{}", "a".repeat(3000))),
            E::TooLong { .. }
        ));
        assert_eq!(err(&format!("https://management.azure.com{STORAGE}")), E::NotAPath);
        assert_eq!(err("management.azure.com://x"), E::NotAPath);
        assert_eq!(
            err("subscriptions/s/resourceGroups/r/providers/A.B/t/n"),
            E::NotStartingWithSubscriptions
        );
        assert_eq!(err("/tenants/t/providers/A.B/t/n"), E::NotStartingWithSubscriptions);
        assert_eq!(err("//subscriptions/s"), E::NotStartingWithSubscriptions);
        assert_eq!(
            err("/subscriptions/s/resourceGroups/r/providers/A.B/t/a%2Fb"),
            E::PercentEncoded
        );
        assert_eq!(err(&format!("{STORAGE}?api-version=1")), E::QueryOrFragment { ch: '?' });
        assert_eq!(err(&format!("{STORAGE}#x")), E::QueryOrFragment { ch: '#' });
        assert_eq!(
            err("/subscriptions/s/resourceGroups/r/providers/A.B/t\\n"),
            E::Backslash
        );
        assert!(matches!(
            err("/subscriptions/{subscription-id} /resourceGroups/r/providers/A.B/t/n"),
            E::WhitespaceOrControl { position: 32 }
        ));
        assert!(matches!(err(&format!("{STORAGE}\n")), E::WhitespaceOrControl { .. }));
        assert!(matches!(
            err(&format!("{STORAGE}\u{7f}")),
            E::WhitespaceOrControl { .. }
        ));
        for invisible in ['\u{202e}', '\u{2066}', '\u{200b}', '\u{200f}', '\u{feff}'] {
            assert!(
                matches!(err(&format!("{STORAGE}{invisible}x")), E::InvisibleFormatting { .. }),
                "{invisible:?}"
            );
        }
        assert_eq!(
            err("/subscriptions/s/resourceGroups/r/providers/A.B/t/../../x/y"),
            E::DotSegment
        );
        assert_eq!(
            err("/subscriptions/s/resourceGroups/./providers/A.B/t/n"),
            E::DotSegment
        );
        assert_eq!(
            err("/subscriptions/s/resourceGroups/r/providers/A.B//t/n"),
            E::EmptySegment { index: 6 }
        );
        assert!(matches!(err(&format!("{STORAGE}/")), E::EmptySegment { .. }));
        assert_eq!(err("/subscriptions/s"), E::MissingProvider);
        assert_eq!(err("/subscriptions/s/resourceGroups/r"), E::MissingProvider);
        assert_eq!(err("/subscriptions/s/resourceGroups/r/providers"), E::MissingProvider);
        assert_eq!(err("/subscriptions/s/resourceGroups"), E::MissingResourceGroup);
        assert_eq!(
            err("/subscriptions/s/providers/Microsoft.Storage/storageAccounts/n"),
            E::MissingResourceGroup
        );
        assert!(matches!(
            err("/subscriptions/s/locations/r/providers/A.B/t/n"),
            E::UnexpectedSegment {
                expected: "resourceGroups",
                ..
            }
        ));
        assert!(matches!(
            err("/subscriptions/s/resourceGroups/r/provider/A.B/t/n"),
            E::UnexpectedSegment {
                expected: "providers",
                ..
            }
        ));
        assert!(matches!(
            err("/subscriptions/s/resourceGroups/r/providers/Microsoft_Storage/t/n"),
            E::InvalidNamespace { .. }
        ));
        assert!(matches!(
            err("/subscriptions/s/resourceGroups/r/providers/{ns}/t/n"),
            E::InvalidNamespace { .. }
        ));
        assert!(matches!(
            err("/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage"),
            E::MissingResourceType { .. }
        ));
        assert!(matches!(
            err("/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts"),
            E::OddTypeNameSegments { .. }
        ));
        assert!(matches!(
            err(&format!("{STORAGE}/blobServices")),
            E::OddTypeNameSegments { .. }
        ));
        assert!(matches!(
            err("/subscriptions/s/resourceGroups/r/providers/A.B/providers/C.D/t/n"),
            E::MissingResourceType { .. }
        ));
    }

    #[test]
    fn error_messages_are_readable_and_bounded() {
        let e = err(&format!(
            "/subscriptions/s/resourceGroups/r/providers/{}/t/n",
            "x_".repeat(500)
        ));
        let msg = e.to_string();
        assert!(msg.starts_with("invalid provider namespace"), "{msg}");
        assert!(msg.len() < 200, "{msg}");
        assert_eq!(
            err("/subscriptions/s/resourceGroups/r").to_string(),
            "not a resource id: a subscription or resource group id has no \"/providers/{namespace}/{type}/{name}\" part"
        );
    }

    #[test]
    fn serializes_as_the_string_and_revalidates_on_deserialize() {
        let id = ResourceId::parse(STORAGE).unwrap();
        let json = serde_json::to_value(&id).unwrap();
        assert_eq!(json, serde_json::Value::String(STORAGE.to_string()));
        let back: ResourceId = serde_json::from_value(json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<ResourceId>("\"/subscriptions/s/../x\"").is_err());
    }

    // ---- properties ----

    fn segment() -> impl Strategy<Value = String> {
        // Realistic id values: names, GUIDs, spec placeholders. Never "." or "..".
        "[A-Za-z0-9_(){}-][A-Za-z0-9_.(){}-]{0,15}"
    }

    fn namespace() -> impl Strategy<Value = String> {
        "[A-Z][A-Za-z0-9]{0,10}(\\.[A-Za-z][A-Za-z0-9]{0,10}){0,2}"
    }

    fn type_segment() -> impl Strategy<Value = String> {
        "[a-zA-Z][a-zA-Z0-9]{0,15}".prop_filter("not the providers keyword", |s| !s.eq_ignore_ascii_case("providers"))
    }

    prop_compose! {
        fn valid_id()(
            sub in segment(),
            rg in segment(),
            ns in namespace(),
            pairs in proptest::collection::vec((type_segment(), segment()), 1..4),
            rg_kw in prop_oneof![Just("resourceGroups"), Just("resourcegroups"), Just("RESOURCEGROUPS")],
            prov_kw in prop_oneof![Just("providers"), Just("Providers")],
        ) -> (String, String) {
            let mut tail = String::new();
            for (t, n) in &pairs {
                tail.push('/');
                tail.push_str(t);
                tail.push('/');
                tail.push_str(n);
            }
            let raw = format!("/subscriptions/{sub}/{rg_kw}/{rg}/{prov_kw}/{ns}{tail}");
            let canonical = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}{tail}");
            (raw, canonical)
        }
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip((raw, canonical) in valid_id()) {
            let id = ResourceId::parse(&raw).unwrap();
            prop_assert_eq!(id.as_str(), canonical.as_str());
            let again = ResourceId::parse(id.as_str()).unwrap();
            prop_assert_eq!(&again, &id);
            prop_assert_eq!(again.key(), raw.to_ascii_lowercase());
        }

        #[test]
        fn forbidden_content_is_always_rejected(
            (raw, _) in valid_id(),
            at in any::<prop::sample::Index>(),
            bad in prop_oneof![
                Just("%"), Just("%2F"), Just("?"), Just("#"), Just("\\"), Just(" "), Just("\t"),
                Just("\n"), Just("\r"), Just("\u{0}"), Just("\u{85}"), Just("\u{a0}"), Just("//"),
                Just("/../"), Just("/./"),
            ],
        ) {
            // Insert at a char boundary.
            let boundaries: Vec<usize> = raw.char_indices().map(|(i, _)| i).chain(std::iter::once(raw.len())).collect();
            let pos = boundaries[at.index(boundaries.len())];
            let mut s = raw.clone();
            s.insert_str(pos, bad);
            prop_assert!(ResourceId::parse(&s).is_err(), "accepted {:?}", s);
        }

        #[test]
        fn urls_are_rejected((raw, _) in valid_id(), host in "[a-z]{1,10}\\.[a-z]{2,5}") {
            let url = format!("https://{host}{raw}");
            prop_assert_eq!(ResourceId::parse(&url), Err(ResourceIdError::NotAPath));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = ResourceId::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_id_like_noise(s in "(/[a-zA-Z.{}%?#\\\\ ]{0,12}){0,12}") {
            if let Ok(id) = ResourceId::parse(&s) {
                prop_assert_eq!(ResourceId::parse(id.as_str()), Ok(id.clone()));
            }
        }
    }
}
