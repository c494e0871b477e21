//! The estate lookup of the key-swap guard: is a key's vault one keyguard can see, in a
//! subscription it watches, in the resource's own tenant? Resource Graph finds the vault by name
//! (`microsoft.keyvault/vaults` and `microsoft.keyvault/managedhsms`) and its `vaultUri` /
//! `hsmUri` must name the same host; ARM's subscription read gives the resource's tenant. The
//! verdict it feeds is pure ([`keyguard_core::estate`]).
//!
//! Answers are cached for [`FRESH_FOR`]: a sweep over thousands of resources on a handful of
//! vaults asks once per vault. A failed lookup is not cached and changes no verdict (the caller
//! notes it): Resource Graph being slow is no reason to revert or to stay silent about a key
//! change, which is alerted either way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keyguard_core::arm_scope::ArmScope;
use keyguard_core::estate::{EstateMiss, VaultStanding, vault_name};
use keyguard_core::vault::VaultHost;
use serde_json::{Value, json};

use crate::arm::{ArmClient, ArmError, CallContext};

/// How long a vault's standing and a subscription's tenant are reused.
pub const FRESH_FOR: Duration = Duration::from_secs(300);

const GRAPH_PATH: &str = "/providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01";
const SUBSCRIPTION_API_VERSION: &str = "2022-12-01";

/// Where a vault was found.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    subscription: String,
    tenant: String,
}

/// The lookup and its caches; one per process, shared by every reconcile.
pub struct VaultEstate {
    /// The scopes keyguard watches (`KEYGUARD_SWEEP_SCOPES`); empty: everything its identity
    /// can see.
    watched: Vec<ArmScope>,
    standings: Mutex<HashMap<(String, String), (Instant, VaultStanding)>>,
    tenants: Mutex<HashMap<String, (Instant, String)>>,
}

impl VaultEstate {
    pub fn new(watched: Vec<ArmScope>) -> Self {
        VaultEstate {
            watched,
            standings: Mutex::default(),
            tenants: Mutex::default(),
        }
    }

    /// The standing of vault `host` for a resource in `subscription`.
    pub async fn standing(
        &self,
        arm: &ArmClient,
        host: &str,
        subscription: &str,
        call: &CallContext,
    ) -> Result<VaultStanding, ArmError> {
        let key = (host.to_ascii_lowercase(), subscription.to_ascii_lowercase());
        if let Some(standing) = fresh(&self.standings, &key) {
            return Ok(standing);
        }
        let standing = self.look_up(arm, host, subscription, call).await?;
        remember(&self.standings, key, standing.clone());
        Ok(standing)
    }

    async fn look_up(
        &self,
        arm: &ArmClient,
        host: &str,
        subscription: &str,
        call: &CallContext,
    ) -> Result<VaultStanding, ArmError> {
        let Some(name) = vault_name(host) else {
            return Ok(VaultStanding::Outside(EstateMiss::NotFound));
        };
        let Some(found) = self.find(arm, host, &name, None, call).await? else {
            return Ok(VaultStanding::Outside(EstateMiss::NotFound));
        };
        let resource_tenant = self.tenant_of(arm, subscription, call).await?;
        if !found.tenant.eq_ignore_ascii_case(&resource_tenant) {
            return Ok(VaultStanding::Outside(EstateMiss::OtherTenant {
                vault_tenant: found.tenant,
                resource_tenant,
            }));
        }
        if !self.is_watched(arm, host, &name, &found, call).await? {
            return Ok(VaultStanding::Outside(EstateMiss::OutsideWatchedScope {
                subscription: found.subscription,
            }));
        }
        Ok(VaultStanding::InEstate {
            subscription: found.subscription,
        })
    }

    /// Whether the vault's subscription is one keyguard watches: named by a subscription or
    /// resource-group scope (a vault commonly lives in another group of the same
    /// subscription), or placed under a watched management group (Resource Graph resolves the
    /// hierarchy when asked within it).
    async fn is_watched(
        &self,
        arm: &ArmClient,
        host: &str,
        name: &str,
        found: &Found,
        call: &CallContext,
    ) -> Result<bool, ArmError> {
        if self.watched.is_empty() {
            return Ok(true);
        }
        for scope in &self.watched {
            match scope {
                ArmScope::Subscription { subscription } | ArmScope::ResourceGroup { subscription, .. } => {
                    if subscription.eq_ignore_ascii_case(&found.subscription) {
                        return Ok(true);
                    }
                }
                ArmScope::ManagementGroup { name: group } => {
                    if self.find(arm, host, name, Some(group), call).await?.is_some() {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// The vault named `name` whose URI names `host`, as Resource Graph shows it (within
    /// `management_group` when given).
    async fn find(
        &self,
        arm: &ArmClient,
        host: &str,
        name: &str,
        management_group: Option<&str>,
        call: &CallContext,
    ) -> Result<Option<Found>, ArmError> {
        let query = format!(
            "resources | where type in~ ('microsoft.keyvault/vaults', 'microsoft.keyvault/managedhsms') and name =~ '{name}' | project id, name, type, subscriptionId, tenantId, properties"
        );
        let mut body = json!({"query": query, "options": {"resultFormat": "objectArray"}});
        if let Some(group) = management_group {
            body["managementGroups"] = json!([group]);
        }
        let page = arm.post_page(GRAPH_PATH, &body, call).await?;
        let rows = page.body["data"].as_array().cloned().unwrap_or_default();
        Ok(rows.iter().find_map(|row| vault_row(row, host)))
    }

    /// The tenant a subscription belongs to (ARM's `Subscriptions - Get`).
    async fn tenant_of(&self, arm: &ArmClient, subscription: &str, call: &CallContext) -> Result<String, ArmError> {
        let key = subscription.to_ascii_lowercase();
        if let Some(tenant) = fresh(&self.tenants, &key) {
            return Ok(tenant);
        }
        let path = format!(
            "/subscriptions/{}?api-version={SUBSCRIPTION_API_VERSION}",
            url::form_urlencoded::byte_serialize(subscription.as_bytes()).collect::<String>()
        );
        let page = arm.get_page(&path, call).await?;
        let tenant = page.body["tenantId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ArmError::InvalidResponse(format!("subscription {subscription} names no tenantId")))?;
        remember(&self.tenants, key, tenant.clone());
        Ok(tenant)
    }
}

/// A Resource Graph row of a vault whose URI names `host` (parsed, never compared as text).
fn vault_row(row: &Value, host: &str) -> Option<Found> {
    let uri = row["properties"]["vaultUri"]
        .as_str()
        .or_else(|| row["properties"]["hsmUri"].as_str())?;
    let parsed = VaultHost::parse(uri).ok()?;
    if !parsed.as_str().eq_ignore_ascii_case(host) {
        return None;
    }
    Some(Found {
        subscription: row["subscriptionId"].as_str()?.to_string(),
        tenant: row["tenantId"].as_str()?.to_string(),
    })
}

fn fresh<K: std::hash::Hash + Eq, V: Clone>(cache: &Mutex<HashMap<K, (Instant, V)>>, key: &K) -> Option<V> {
    let cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    cache
        .get(key)
        .filter(|(at, _)| at.elapsed() < FRESH_FOR)
        .map(|(_, v)| v.clone())
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &Mutex<HashMap<K, (Instant, V)>>, key: K, value: V) {
    let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Bounded: a flood of distinct vault names (hostile bodies) cannot grow it without limit.
    if cache.len() >= 10_000 {
        cache.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
        if cache.len() >= 10_000 {
            cache.clear();
        }
    }
    cache.insert(key, (Instant::now(), value));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_row_counts_only_when_its_uri_names_the_same_vault_host() {
        let row = |uri: &str| json!({"subscriptionId": "s", "tenantId": "t", "properties": {"vaultUri": uri}});
        let found = Found {
            subscription: "s".into(),
            tenant: "t".into(),
        };
        assert_eq!(
            vault_row(&row("https://kv-a.vault.azure.net/"), "kv-a.vault.azure.net"),
            Some(found.clone())
        );
        // Same name, another cloud: not this vault.
        assert_eq!(
            vault_row(&row("https://kv-a.vault.azure.cn/"), "kv-a.vault.azure.net"),
            None
        );
        assert_eq!(
            vault_row(
                &row("https://kv-a.vault.azure.net.evil.example/"),
                "kv-a.vault.azure.net"
            ),
            None
        );
        let hsm = json!({"subscriptionId": "s", "tenantId": "t", "properties": {"hsmUri": "https://hsm1.managedhsm.azure.net/"}});
        assert_eq!(vault_row(&hsm, "hsm1.managedhsm.azure.net"), Some(found));
    }
}
