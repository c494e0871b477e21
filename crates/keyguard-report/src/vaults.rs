//! The vaults the reported resources' customer-managed keys live in, with how many resources use
//! each and whether any of them was judged outside the estate (the key-swap guard): a vault
//! nobody recognises in this list is the first thing to ask about.

use serde::Serialize;

use crate::Finding;

/// One vault in use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultUse {
    pub vault: String,
    pub resources: usize,
    pub outside_estate: bool,
}

/// Every vault named by a finding, in name order.
pub fn vaults_in_use(findings: &[Finding]) -> Vec<VaultUse> {
    let mut vaults: std::collections::BTreeMap<&str, VaultUse> = std::collections::BTreeMap::new();
    for f in findings {
        let Some(vault) = f.vault.as_deref() else { continue };
        let entry = vaults.entry(vault).or_insert_with(|| VaultUse {
            vault: vault.to_string(),
            resources: 0,
            outside_estate: false,
        });
        entry.resources += 1;
        entry.outside_estate |= f.outside_estate;
    }
    vaults.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FindingVerdict;

    fn on(vault: Option<&str>, outside: bool) -> Finding {
        let mut f = Finding::new(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
            "Microsoft.Storage/storageAccounts",
            FindingVerdict::Compliant,
        );
        f.vault = vault.map(str::to_string);
        f.outside_estate = outside;
        f
    }

    #[test]
    fn vaults_are_counted_and_one_resource_outside_the_estate_flags_its_vault() {
        let findings = [
            on(Some("kv-a.vault.azure.net"), false),
            on(Some("kv-b.vault.azure.net"), true),
            on(Some("kv-a.vault.azure.net"), false),
            on(None, false),
        ];
        assert_eq!(
            vaults_in_use(&findings),
            vec![
                VaultUse {
                    vault: "kv-a.vault.azure.net".into(),
                    resources: 2,
                    outside_estate: false
                },
                VaultUse {
                    vault: "kv-b.vault.azure.net".into(),
                    resources: 1,
                    outside_estate: true
                },
            ]
        );
    }
}
