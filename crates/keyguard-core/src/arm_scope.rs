//! ARM scopes, as operators name them for sweeps (`KEYGUARD_SWEEP_SCOPES`, `keyguard scan`,
//! `POST /api/scan`): the path ARM and Resource Graph understand, parsed into its parts.

use serde::{Deserialize, Serialize};

/// Why a text is not an ARM scope.
#[derive(Debug, thiserror::Error)]
pub enum ArmScopeError {
    #[error(
        "{0:?} is not a scope: use /subscriptions/{{id}}, /subscriptions/{{id}}/resourceGroups/{{name}} \
         or /providers/Microsoft.Management/managementGroups/{{name}}"
    )]
    NotAScope(String),
    #[error("{0:?} is not a valid subscription, group or management group name")]
    BadName(String),
    /// A "." or ".." segment is no Azure name, and in a listing URL it would climb out of the
    /// scope (`/resourceGroups/../providers/...` normalises to the whole subscription).
    #[error("scope must not contain \".\" or \"..\" segments")]
    DotSegment,
}

/// An ARM scope a sweep covers: a subscription, a resource group or a management group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ArmScope {
    Subscription { subscription: String },
    ResourceGroup { subscription: String, group: String },
    ManagementGroup { name: String },
}

impl ArmScope {
    /// `/subscriptions/{id}`, `/subscriptions/{id}/resourceGroups/{name}`,
    /// `/providers/Microsoft.Management/managementGroups/{name}`, or a bare subscription id.
    pub fn parse(text: &str) -> Result<ArmScope, ArmScopeError> {
        let text = text.trim().trim_end_matches('/');
        if text.split('/').any(|segment| matches!(segment.trim(), "." | "..")) {
            return Err(ArmScopeError::DotSegment);
        }
        let segments: Vec<&str> = text.trim_start_matches('/').split('/').collect();
        let valid = |s: &str| {
            !s.is_empty() && s.len() <= 90 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
        };
        let scope = match segments.as_slice() {
            [sub] if !text.starts_with('/') => ArmScope::Subscription {
                subscription: sub.to_string(),
            },
            [s, sub] if s.eq_ignore_ascii_case("subscriptions") => ArmScope::Subscription {
                subscription: sub.to_string(),
            },
            [s, sub, rg, group]
                if s.eq_ignore_ascii_case("subscriptions") && rg.eq_ignore_ascii_case("resourceGroups") =>
            {
                ArmScope::ResourceGroup {
                    subscription: sub.to_string(),
                    group: group.to_string(),
                }
            }
            [p, ns, mgs, name]
                if p.eq_ignore_ascii_case("providers")
                    && ns.eq_ignore_ascii_case("Microsoft.Management")
                    && mgs.eq_ignore_ascii_case("managementGroups") =>
            {
                ArmScope::ManagementGroup { name: name.to_string() }
            }
            _ => return Err(ArmScopeError::NotAScope(text.to_string())),
        };
        let names: Vec<&str> = match &scope {
            ArmScope::Subscription { subscription } => vec![subscription],
            ArmScope::ResourceGroup { subscription, group } => vec![subscription, group],
            ArmScope::ManagementGroup { name } => vec![name],
        };
        match names.iter().find(|n| !valid(n)) {
            Some(bad) => Err(ArmScopeError::BadName(bad.to_string())),
            None => Ok(scope),
        }
    }

    pub fn path(&self) -> String {
        match self {
            ArmScope::Subscription { subscription } => format!("/subscriptions/{subscription}"),
            ArmScope::ResourceGroup { subscription, group } => {
                format!("/subscriptions/{subscription}/resourceGroups/{group}")
            }
            ArmScope::ManagementGroup { name } => format!("/providers/Microsoft.Management/managementGroups/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_from_arm_paths_and_bad_ones_are_named() {
        assert_eq!(
            ArmScope::parse("/subscriptions/abc").unwrap(),
            ArmScope::Subscription {
                subscription: "abc".into()
            }
        );
        assert_eq!(
            ArmScope::parse("abc").unwrap(),
            ArmScope::Subscription {
                subscription: "abc".into()
            }
        );
        assert_eq!(
            ArmScope::parse("/subscriptions/abc/resourceGroups/rg-1/").unwrap(),
            ArmScope::ResourceGroup {
                subscription: "abc".into(),
                group: "rg-1".into()
            }
        );
        assert_eq!(
            ArmScope::parse("/providers/Microsoft.Management/managementGroups/mg").unwrap(),
            ArmScope::ManagementGroup { name: "mg".into() }
        );
        for bad in [
            "/subscriptions",
            "/subscriptions/a/b",
            "/subscriptions/a b",
            "/subscriptions/x'y",
            "/subscriptions/abc/resourceGroups/..",
            "/subscriptions/abc/resourceGroups/./x",
            "",
        ] {
            assert!(ArmScope::parse(bad).is_err(), "{bad:?}");
        }
        let scope = ArmScope::parse("/subscriptions/abc/resourceGroups/rg").unwrap();
        assert_eq!(scope.path(), "/subscriptions/abc/resourceGroups/rg");
    }
}
