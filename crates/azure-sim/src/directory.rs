//! The directory calls general-purpose Azure tools make before they list anything, so that
//! unmodified peers (Prowler, Cloud Custodian) can run against the stand-in:
//!
//! * ARM: `GET /tenants`, `GET /subscriptions/{s}`, `GET /subscriptions/{s}/locations`,
//!   `GET /subscriptions/{s}/resourcegroups`, `GET /subscriptions/{s}/providers/{ns}` (the
//!   provider's resource types and api-versions, which Custodian reads to pick one);
//! * a storage account's `blobServices` and `fileServices` (`default`), with the storage RP's
//!   defaults (Prowler reads both for every account);
//! * Microsoft Graph `GET /v1.0/domains`, `/v1.0/me`, `/v1.0/organization` (Prowler resolves the
//!   tenant's domain before it scans), from the simulated tenant.
//!
//! Answers are fixed shapes built from the simulator's tenant and resources; nothing here
//! changes state.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::arm::{ArmError, Reply};
use crate::util::{ResourceId, lock};
use crate::{Sim, catalog_sim};

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// True for Microsoft Graph paths (`/v1.0/...`), which are not ARM's.
pub(crate) fn is_graph_directory(segs: &[String]) -> bool {
    segs.first().is_some_and(|s| eq(s, "v1.0"))
}

/// Microsoft Graph's answers for the signed-in tenant.
pub(crate) fn graph(sim: &Sim, method: &Method, segs: &[String]) -> Result<Reply, ArmError> {
    let tenant = sim.tenant_id();
    let domain = "keyguard-sim.onmicrosoft.com";
    if *method != Method::GET || segs.len() != 2 {
        return Err(not_found(segs));
    }
    match segs[1].to_ascii_lowercase().as_str() {
        "domains" => Ok(Reply::ok(json!({"value": [
            {"id": domain, "isDefault": true, "isInitial": true, "isVerified": true, "authenticationType": "Managed"}
        ]}))),
        "me" => Ok(Reply::ok(json!({
            "id": sim.system_identity().oid,
            "displayName": sim.system_identity().name,
            "userPrincipalName": format!("bench@{domain}"),
        }))),
        "organization" => Ok(Reply::ok(json!({"value": [
            {"id": tenant, "displayName": "Simulated tenant", "verifiedDomains": [{"name": domain, "isDefault": true}]}
        ]}))),
        _ => Err(not_found(segs)),
    }
}

fn not_found(segs: &[String]) -> ArmError {
    ArmError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("The requested path '/{}' does not exist.", segs.join("/")),
    )
}

/// ARM's directory reads; `None` when the path is none of them.
pub(crate) fn arm(sim: &Sim, method: &Method, segs: &[String]) -> Option<Result<Reply, ArmError>> {
    if *method != Method::GET {
        return None;
    }
    let tenant = sim.tenant_id().to_owned();
    match segs {
        [t] if eq(t, "tenants") => Some(Ok(Reply::ok(json!({"value": [{
            "id": format!("/tenants/{tenant}"),
            "tenantId": tenant,
            "tenantCategory": "Home",
            "defaultDomain": "keyguard-sim.onmicrosoft.com",
            "displayName": "Simulated tenant",
            "domains": ["keyguard-sim.onmicrosoft.com"],
        }]})))),
        [s, sub] if eq(s, "subscriptions") => {
            Some(known(sim, sub).map(|()| Reply::ok(crate::listing::subscription_doc(sim, &sub.to_ascii_lowercase()))))
        }
        [s, sub, l] if eq(s, "subscriptions") && eq(l, "locations") => Some(known(sim, sub).map(|()| {
            let locations: Vec<Value> = ["westeurope", "northeurope", "eastus"]
                .iter()
                .map(|n| {
                    json!({"id": format!("/subscriptions/{sub}/locations/{n}"), "name": n, "displayName": n,
                           "metadata": {"regionType": "Physical"}})
                })
                .collect();
            Reply::ok(json!({"value": locations}))
        })),
        [s, sub, g] if eq(s, "subscriptions") && eq(g, "resourcegroups") => {
            Some(known(sim, sub).map(|()| Reply::ok(json!({"value": resource_groups(sim, sub)}))))
        }
        [s, sub, p, ns] if eq(s, "subscriptions") && eq(p, "providers") => {
            Some(known(sim, sub).map(|()| Reply::ok(provider(sub, ns))))
        }
        _ => storage_service(sim, segs),
    }
}

/// 404 for a subscription that has no resources in the simulator, as for one the caller cannot see.
fn known(sim: &Sim, sub: &str) -> Result<(), ArmError> {
    if sim.subscriptions().iter().any(|s| eq(s, sub)) {
        Ok(())
    } else {
        Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ))
    }
}

fn resource_groups(sim: &Sim, sub: &str) -> Vec<Value> {
    let prefix = format!("/subscriptions/{}/resourcegroups/", sub.to_ascii_lowercase());
    lock(&sim.store)
        .groups
        .iter()
        .filter_map(|g| g.strip_prefix(&prefix))
        .map(|name| {
            json!({"id": format!("/subscriptions/{sub}/resourceGroups/{name}"), "name": name, "location": "westeurope",
                   "type": "Microsoft.Resources/resourceGroups", "properties": {"provisioningState": "Succeeded"}})
        })
        .collect()
}

/// The provider document: its catalog types (and storage accounts) with the api-versions the
/// simulator accepts, newest first as ARM lists them.
fn provider(sub: &str, ns: &str) -> Value {
    let mut types: Vec<Value> = Vec::new();
    if eq(ns, "Microsoft.Storage") {
        let mut versions: Vec<&str> = crate::arm::SUPPORTED_API_VERSIONS.to_vec();
        versions.reverse();
        types.push(json!({"resourceType": "storageAccounts", "apiVersions": versions, "locations": ["West Europe"]}));
    }
    for ty in catalog_sim::TYPES {
        if let Some((type_ns, rest)) = ty.full_type.split_once('/')
            && eq(type_ns, ns)
        {
            let mut versions: Vec<&str> = ty.api_versions.to_vec();
            versions.reverse();
            types.push(json!({"resourceType": rest, "apiVersions": versions, "locations": ["West Europe"]}));
        }
    }
    json!({"id": format!("/subscriptions/{sub}/providers/{ns}"), "namespace": ns,
           "registrationState": "Registered", "resourceTypes": types})
}

/// `{storage account}/blobServices[/default]` and `/fileServices[/default]`, with the
/// storage RP's defaults, for accounts that exist.
fn storage_service(sim: &Sim, segs: &[String]) -> Option<Result<Reply, ArmError>> {
    let (account, service, single) = match segs {
        [head @ .., svc] if segs.len() == 9 => (head, svc, false),
        [head @ .., svc, d] if segs.len() == 10 && eq(d, "default") => (head, svc, true),
        _ => return None,
    };
    let kind = ["blobServices", "fileServices"].into_iter().find(|k| eq(k, service))?;
    let rid = ResourceId::from_segments(account)?;
    if !eq(&rid.full_type(), "Microsoft.Storage/storageAccounts") {
        return None;
    }
    let Some(doc) = sim.resource(&format!("/{}", account.join("/"))) else {
        return Some(Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.Storage/storageAccounts/{}' was not found.",
                rid.name()
            ),
        )));
    };
    let id = doc.get("id").and_then(Value::as_str).unwrap_or_default();
    let properties = if kind == "blobServices" {
        json!({"deleteRetentionPolicy": {"enabled": false}, "containerDeleteRetentionPolicy": {"enabled": false},
               "isVersioningEnabled": false, "cors": {"corsRules": []}})
    } else {
        json!({"shareDeleteRetentionPolicy": {"enabled": false}, "protocolSettings": {"smb": {}}, "cors": {"corsRules": []}})
    };
    let one = json!({"id": format!("{id}/{kind}/default"), "name": "default",
                     "type": format!("Microsoft.Storage/storageAccounts/{kind}"), "properties": properties});
    Some(Ok(Reply::ok(if single { one } else { json!({"value": [one]}) })))
}
