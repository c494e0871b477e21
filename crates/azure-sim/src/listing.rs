//! ARM collection reads, paged the way ARM pages them (`{"value": [...], "nextLink": url}`, the
//! last page without `nextLink`):
//!
//! * `GET /subscriptions?api-version=` — the subscriptions the simulator knows: those holding a
//!   seeded resource group plus those placed under a management group;
//! * `GET /subscriptions/{s}/providers/{ns}/{type}?api-version=` — every resource of a type in a
//!   subscription;
//! * `GET /subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}[/{name}/{childType}...]`
//!   — the resources of a type in a group (or under a parent resource);
//! * `GET /providers/Microsoft.Management/managementGroups/{mg}/descendants?api-version=` — the
//!   subscriptions placed under a management group ([`ListingConfig::management_groups`], a flat
//!   map: no nested groups).
//!
//! A list URL has an odd number of segments after `providers/{ns}` (it ends on a type), a single
//! resource an even number, so the two never collide. Pages hold [`ListingConfig::page_size`]
//! items in id order; `nextLink` is an absolute URL on the simulator carrying an opaque
//! `$skiptoken` (a cursor: the last id served plus a hash of the collection), so resources added
//! while a client pages are neither skipped nor repeated, and a token from another collection is
//! refused (400 `InvalidSkipToken`).
//!
//! Resource Graph (`POST /providers/Microsoft.ResourceGraph/resources`) is in [`crate::graph`];
//! quotas and their headers in [`crate::throttle`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use axum::http::{Method, StatusCode, Uri};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::arm::{ArmError, Reply, SUPPORTED_API_VERSIONS};
use crate::util::{ResourceId, fnv1a, lock};
use crate::{Sim, catalog_sim};

/// ARM's usual page size for collection GETs.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// How the simulator lists: page size and the management-group hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingConfig {
    /// Items per ARM list page (not Resource Graph, whose page is the query's `$top`).
    pub page_size: usize,
    /// Management group name -> subscription ids placed directly under it.
    #[serde(default)]
    pub management_groups: BTreeMap<String, Vec<String>>,
    /// Subscription id -> tenant id, for subscriptions of another Entra tenant that the
    /// simulator's identities can still see (delegated, as with Azure Lighthouse). Every other
    /// subscription is in the simulator's own tenant.
    #[serde(default)]
    pub tenants: BTreeMap<String, String>,
}

impl Default for ListingConfig {
    fn default() -> Self {
        ListingConfig {
            page_size: DEFAULT_PAGE_SIZE,
            management_groups: BTreeMap::new(),
            tenants: BTreeMap::new(),
        }
    }
}

impl Sim {
    pub fn listing_config(&self) -> ListingConfig {
        lock(&self.listing).clone()
    }

    /// Replaces the listing configuration (a page size of 0 is taken as 1).
    pub fn set_listing_config(&self, mut config: ListingConfig) {
        config.page_size = config.page_size.max(1);
        *lock(&self.listing) = config;
    }

    /// Subscription ids the simulator knows (lower-cased, sorted): every subscription with a
    /// resource group, plus every subscription under a management group.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut subs: BTreeSet<String> = lock(&self.store)
            .groups
            .iter()
            .filter_map(|g| g.split('/').nth(2).map(str::to_owned))
            .collect();
        for members in lock(&self.listing).management_groups.values() {
            subs.extend(members.iter().map(|s| s.to_ascii_lowercase()));
        }
        subs.into_iter().collect()
    }

    /// The tenant `subscription` belongs to: its entry in [`ListingConfig::tenants`], else the
    /// simulator's own.
    pub fn tenant_of(&self, subscription: &str) -> String {
        lock(&self.listing)
            .tenants
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(subscription))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| self.tenant_id().to_owned())
    }

    /// The subscriptions under a management group (case-insensitive name), if it exists.
    pub fn management_group_subscriptions(&self, name: &str) -> Option<Vec<String>> {
        lock(&self.listing)
            .management_groups
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, subs)| subs.iter().map(|s| s.to_ascii_lowercase()).collect())
    }
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn is_descendants(segs: &[String]) -> bool {
    segs.len() == 5
        && eq(&segs[0], "providers")
        && eq(&segs[1], "Microsoft.Management")
        && eq(&segs[2], "managementGroups")
        && eq(&segs[4], "descendants")
}

/// What a collection URL lists.
enum Collection {
    Subscriptions,
    Descendants(String),
    /// Resources whose lower-cased id starts with `prefix` and continues with a bare name; with
    /// `subscription_wide`, `prefix` is the subscription and `type_key` must follow the group.
    Resources {
        rid: ResourceId,
        subscription_wide: bool,
    },
}

fn collection(segs: &[String]) -> Option<Collection> {
    if segs.len() == 1 && eq(&segs[0], "subscriptions") {
        return Some(Collection::Subscriptions);
    }
    if is_descendants(segs) {
        return Some(Collection::Descendants(segs[3].clone()));
    }
    if segs.len() == 5 && eq(&segs[0], "subscriptions") && eq(&segs[2], "providers") {
        return Some(Collection::Resources {
            rid: ResourceId {
                subscription: segs[1].clone(),
                resource_group: String::new(),
                namespace: segs[3].clone(),
                types: vec![segs[4].clone()],
                names: Vec::new(),
            },
            subscription_wide: true,
        });
    }
    if segs.len() >= 7 && segs.len() % 2 == 1 && eq(&segs[0], "subscriptions") && eq(&segs[4], "providers") {
        // Borrow the id parser: give the trailing type a placeholder name, then drop it.
        let mut with_name = segs.to_vec();
        with_name.push(String::new());
        let mut rid = ResourceId::from_segments(&with_name)?;
        rid.names.pop();
        return Some(Collection::Resources {
            rid,
            subscription_wide: false,
        });
    }
    None
}

/// True for tenant-level paths this module serves (they do not start with `/subscriptions`).
pub(crate) fn is_tenant_route(segs: &[String]) -> bool {
    is_descendants(segs) || crate::graph::is_graph_segments(segs)
}

/// Classifies an ARM request for the request log.
pub(crate) fn request_kind(method: &Method, path: &str) -> &'static str {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(crate::util::percent_decode)
        .collect();
    let n = segs.len();
    if n >= 2
        && matches!(
            segs[n - 2].to_ascii_lowercase().as_str(),
            "operationstatuses" | "operationstatus" | "azureasyncoperation" | "operationresults"
        )
    {
        return "poll";
    }
    if *method != Method::GET && *method != Method::HEAD {
        return "write";
    }
    if collection(&segs).is_some() { "list" } else { "read" }
}

/// One collection request.
pub(crate) struct ListCall<'a> {
    pub sim: &'a Sim,
    pub method: &'a Method,
    pub segs: &'a [String],
    pub uri: &'a Uri,
    pub body: &'a [u8],
    pub api_version: &'a str,
    /// `http://host:port` of this request, for absolute `nextLink`s.
    pub base_url: &'a str,
}

/// Serves the request when it is a collection (or a Resource Graph query); `None` otherwise.
pub(crate) fn dispatch(call: &ListCall<'_>) -> Option<Result<Reply, ArmError>> {
    if crate::graph::is_graph_segments(call.segs) {
        return Some(crate::graph::handle(call.sim, call.method, call.body, call.api_version));
    }
    let coll = collection(call.segs)?;
    if *call.method != Method::GET {
        return Some(Err(ArmError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The requested resource does not support http method '{}'.", call.method),
        )));
    }
    let token = query_param(call.uri, "$skiptoken");
    Some(match coll {
        Collection::Subscriptions => list_subscriptions(call, token.as_deref()),
        Collection::Descendants(mg) => list_descendants(call, &mg, token.as_deref()),
        Collection::Resources { rid, subscription_wide } => {
            list_resources(call, &rid, subscription_wide, token.as_deref())
        }
    })
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        crate::util::percent_decode(k)
            .eq_ignore_ascii_case(name)
            .then(|| crate::util::percent_decode(v))
    })
}

fn invalid_token() -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "InvalidSkipToken",
        "The provided $skiptoken is invalid for this request. Use the nextLink of the previous page as-is.",
    )
}

/// Encodes a cursor for `collection_id`; opaque to clients.
fn encode_token(collection_id: &str, last_key: &str) -> String {
    let hash = fnv1a(7, collection_id.as_bytes());
    URL_SAFE_NO_PAD.encode(format!("{hash:016x}:{last_key}"))
}

fn decode_token(collection_id: &str, token: &str) -> Result<String, ArmError> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| invalid_token())?;
    let text = String::from_utf8(raw).map_err(|_| invalid_token())?;
    let (hash, last) = text.split_once(':').ok_or_else(invalid_token)?;
    if hash != format!("{:016x}", fnv1a(7, collection_id.as_bytes())) {
        return Err(invalid_token());
    }
    Ok(last.to_owned())
}

/// `{"value": items, "nextLink"?}` for items that follow `after` in key order.
fn page(call: &ListCall<'_>, collection_id: &str, items: impl Iterator<Item = (String, Value)>, size: usize) -> Reply {
    let mut value = Vec::with_capacity(size.min(1024));
    let mut last_key = None;
    let mut more = false;
    for (key, item) in items {
        if value.len() == size {
            more = true;
            break;
        }
        value.push(item);
        last_key = Some(key);
    }
    let mut body = json!({"value": value});
    if more && let Some(last) = last_key {
        body["nextLink"] = json!(format!(
            "{}{}?api-version={}&$skiptoken={}",
            call.base_url,
            call.uri.path(),
            call.api_version,
            encode_token(collection_id, &last)
        ));
    }
    Reply::ok(body)
}

fn after(call_token: Option<&str>, collection_id: &str) -> Result<Option<String>, ArmError> {
    call_token.map(|t| decode_token(collection_id, t)).transpose()
}

/// A subscription as `Subscriptions - Get` and `- List` show it, with the tenant it belongs to
/// and, for a delegated one, the tenant that manages it.
pub(crate) fn subscription_doc(sim: &Sim, s: &str) -> Value {
    // A delegated subscription of another tenant is managed by ours (Lighthouse's shape).
    let tenant = sim.tenant_of(s);
    let managed_by: Vec<Value> = if tenant == sim.tenant_id() {
        Vec::new()
    } else {
        vec![json!({"tenantId": sim.tenant_id()})]
    };
    json!({
        "id": format!("/subscriptions/{s}"),
        "authorizationSource": "RoleBased",
        "managedByTenants": managed_by,
        "subscriptionId": s,
        "tenantId": tenant,
        "displayName": format!("Simulated subscription {}", s.get(..8).unwrap_or(s)),
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off"
        }
    })
}

fn list_subscriptions(call: &ListCall<'_>, token: Option<&str>) -> Result<Reply, ArmError> {
    let sim = call.sim;
    let after = after(token, "subscriptions")?;
    let items = sim
        .subscriptions()
        .into_iter()
        .filter(|s| after.as_deref().is_none_or(|a| s.as_str() > a))
        .map(|s| {
            let doc = subscription_doc(sim, &s);
            (s, doc)
        });
    let size = sim.listing_config().page_size;
    Ok(page(call, "subscriptions", items, size))
}

const MG_API_VERSIONS: &[&str] = &["2020-02-01", "2020-05-01", "2021-04-01", "2023-04-01"];

fn list_descendants(call: &ListCall<'_>, mg: &str, token: Option<&str>) -> Result<Reply, ArmError> {
    if !MG_API_VERSIONS.iter().any(|v| eq(v, call.api_version)) {
        return Err(ArmError::new(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{}' is invalid. The supported versions are '{}'.",
                call.api_version,
                MG_API_VERSIONS.join(",")
            ),
        ));
    }
    let subs = call.sim.management_group_subscriptions(mg).ok_or_else(|| {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("The management group '{mg}' was not found."),
        )
    })?;
    let collection_id = format!("descendants|{}", mg.to_ascii_lowercase());
    let after = after(token, &collection_id)?;
    let parent = format!("/providers/Microsoft.Management/managementGroups/{mg}");
    let mut subs = subs;
    subs.sort();
    subs.dedup();
    let items = subs
        .into_iter()
        .filter(|s| after.as_deref().is_none_or(|a| s.as_str() > a))
        .map(|s| {
            let doc = json!({
                "id": format!("/subscriptions/{s}"),
                "type": "/subscriptions",
                "name": s,
                "properties": {
                    "displayName": format!("Simulated subscription {}", s.get(..8).unwrap_or(&s)),
                    "parent": {"id": parent}
                }
            });
            (s, doc)
        });
    let size = call.sim.listing_config().page_size;
    Ok(page(call, &collection_id, items, size))
}

fn check_api_version(rid: &ResourceId, api_version: &str) -> Result<(), ArmError> {
    let full = rid.full_type();
    if eq(&full, "Microsoft.Storage/storageAccounts") {
        return if SUPPORTED_API_VERSIONS.contains(&api_version) {
            Ok(())
        } else {
            Err(ArmError::new(
                StatusCode::BAD_REQUEST,
                "InvalidApiVersionParameter",
                format!(
                    "The api-version '{api_version}' is invalid. The supported versions are '{}'.",
                    SUPPORTED_API_VERSIONS.join(",")
                ),
            ))
        };
    }
    match catalog_sim::lookup(&full) {
        Some(ty) if ty.accepts(api_version) => Ok(()),
        _ => Err(crate::generic::invalid_type(rid, api_version)),
    }
}

fn list_resources(
    call: &ListCall<'_>,
    rid: &ResourceId,
    subscription_wide: bool,
    token: Option<&str>,
) -> Result<Reply, ArmError> {
    check_api_version(rid, call.api_version)?;
    let sub_key = format!("/subscriptions/{}/", rid.subscription.to_ascii_lowercase());
    let ns = rid.namespace.to_ascii_lowercase();
    let ty = rid.types.last().map(|t| t.to_ascii_lowercase()).unwrap_or_default();
    // Lower-cased id prefix every listed resource shares, up to its name.
    let prefix = if subscription_wide {
        sub_key.clone()
    } else {
        let mut parent = rid.clone();
        parent.types.pop();
        let mut p = if parent.types.is_empty() {
            format!("{}/providers/{ns}", rid.group_key())
        } else {
            parent.key()
        };
        p.push('/');
        p.push_str(&ty);
        p.push('/');
        p
    };
    let collection_id = format!("resources|{prefix}|{ns}/{ty}");
    let after = after(token, &collection_id)?;
    let size = call.sim.listing_config().page_size;
    let store = lock(&call.sim.store);
    if subscription_wide {
        if !store.groups.iter().any(|g| g.starts_with(&sub_key)) && !call.sim.knows_subscription(&rid.subscription) {
            return Err(ArmError::new(
                StatusCode::NOT_FOUND,
                "SubscriptionNotFound",
                format!("The subscription '{}' could not be found.", rid.subscription),
            ));
        }
    } else {
        crate::generic::check_group(&store, rid)?;
        if rid.types.len() > 1 {
            let mut parent = rid.clone();
            parent.types.pop();
            if !store.resources.contains_key(&parent.key()) {
                return Err(ArmError::new(
                    StatusCode::NOT_FOUND,
                    "ParentResourceNotFound",
                    format!(
                        "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                        parent.names.join("/")
                    ),
                ));
            }
        }
    }
    let start = match &after {
        Some(a) => Bound::Excluded(a.clone()),
        None => Bound::Included(prefix.clone()),
    };
    let type_segment = format!("/providers/{ns}/{ty}/");
    let items = store
        .resources
        .range((start, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| {
            let rest = &k[prefix.len()..];
            if subscription_wide {
                // `resourcegroups/{rg}/providers/{ns}/{type}/{name}`
                let mut parts = rest.splitn(3, '/');
                let (Some(_), Some(_), Some(tail)) = (parts.next(), parts.next(), parts.next()) else {
                    return false;
                };
                let tail = format!("/{tail}");
                tail.strip_prefix(&type_segment).is_some_and(|name| !name.contains('/'))
            } else {
                !rest.is_empty() && !rest.contains('/')
            }
        })
        .map(|(k, doc)| (k.clone(), doc.clone()));
    Ok(page(call, &collection_id, items, size))
}

impl Sim {
    fn knows_subscription(&self, sub: &str) -> bool {
        lock(&self.listing)
            .management_groups
            .values()
            .any(|subs| subs.iter().any(|s| s.eq_ignore_ascii_case(sub)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        p.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    #[test]
    fn list_and_resource_urls_do_not_collide() {
        let list = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers";
        let one = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/a";
        let nested = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/a/databases";
        assert!(collection(&segs(list)).is_some());
        assert!(collection(&segs(one)).is_none());
        assert!(collection(&segs(nested)).is_some());
        assert!(collection(&segs("/subscriptions/s/providers/Microsoft.Storage/storageAccounts")).is_some());
        assert!(collection(&segs("/subscriptions/s/providers/Microsoft.Storage")).is_none());
        assert_eq!(request_kind(&Method::GET, list), "list");
        assert_eq!(request_kind(&Method::GET, one), "read");
        assert_eq!(request_kind(&Method::PATCH, one), "write");
        assert_eq!(request_kind(&Method::GET, "/subscriptions"), "list");
    }

    #[test]
    fn tokens_are_bound_to_their_collection() {
        let t = encode_token("a", "/subscriptions/x/resourcegroups/rg/providers/n/t/z");
        assert_eq!(
            decode_token("a", &t).unwrap(),
            "/subscriptions/x/resourcegroups/rg/providers/n/t/z"
        );
        assert!(decode_token("b", &t).is_err());
        assert!(decode_token("a", "not base64!").is_err());
    }
}
