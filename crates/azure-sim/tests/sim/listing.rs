//! Listing for sweeps: Resource Graph paging and filters, ARM list paging with nextLink,
//! management groups, quotas and throttling, bulk seeding.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use azure_sim::{BulkSeed, KeyMode, ListingConfig, SimConfig, SimHandle};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::common::*;

const SUB2: &str = "11111111-2222-3333-4444-555555555555";
const SUB3: &str = "22222222-3333-4444-5555-666666666666";
const STORAGE: &str = "Microsoft.Storage/storageAccounts";
const DISKS: &str = "Microsoft.Compute/disks";
const SQL: &str = "Microsoft.Sql/servers";
const COSMOS: &str = "Microsoft.DocumentDB/databaseAccounts";

async fn start_with(listing: ListingConfig) -> SimHandle {
    azure_sim::start(
        SimConfig {
            listing,
            ..SimConfig::default()
        },
        loopback(),
    )
    .await
    .unwrap()
}

fn spec(sub: &str, groups: usize, per_type: &[(&str, usize)], drift_every: usize) -> BulkSeed {
    let mut s = BulkSeed::new(sub, per_type.iter().map(|(t, n)| ((*t).to_owned(), *n)));
    s.resource_groups = groups;
    s.drift_every = drift_every;
    s
}

fn graph_url(sim: &SimHandle) -> String {
    format!(
        "{}/providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01",
        sim.base_url()
    )
}

async fn graph(sim: &SimHandle, body: Value) -> (u16, HeaderMap, Value) {
    let token = sim.state().issue_token(sim.state().system_identity());
    let r = client()
        .post(graph_url(sim))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap())
}

async fn arm_get(sim: &SimHandle, url: &str) -> (u16, HeaderMap, Value) {
    let token = sim.state().issue_token(sim.state().system_identity());
    let r = client().get(url).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap())
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn ids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn requests_of_kind(sim: &SimHandle, kind: &str) -> usize {
    sim.state().requests().iter().filter(|r| r.kind == kind).count()
}

#[tokio::test]
async fn resource_graph_pages_ten_thousand_rows_exactly_once_in_ten_pages() {
    let sim = start(Vec::new()).await;
    let seed = spec(
        SUB,
        10,
        &[(STORAGE, 4000), (DISKS, 3000), (COSMOS, 2000), (SQL, 1000)],
        10,
    );
    let started = Instant::now();
    let report = sim.state().seed_bulk(&seed).unwrap();
    let seeding = started.elapsed();
    eprintln!("seeded 10,000 resources in {seeding:?}");
    // Well under a second in a release build; unoptimised test builds get slack for the
    // shared machine.
    let budget = Duration::from_secs(if cfg!(debug_assertions) { 3 } else { 1 });
    assert!(seeding < budget, "seeding 10,000 took {seeding:?}");
    assert_eq!(report.created, 10_000);
    assert_eq!(report.drifted.len(), 1_000);
    assert_eq!(report.resource_groups.len(), 10);
    // CMK SQL servers brought their key and protector children along.
    assert_eq!(sim.state().resources().len(), 10_000 + 2 * 900);

    let query = "resources | where type in~ ('microsoft.storage/storageaccounts', 'Microsoft.Compute/disks', 'Microsoft.DocumentDB/databaseAccounts', 'Microsoft.Sql/servers') | order by id asc";
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let mut options = json!({"$top": 1000});
        if let Some(t) = &token {
            options["$skipToken"] = json!(t);
        }
        let (status, headers, body) = graph(
            &sim,
            json!({"subscriptions": [SUB], "query": query, "options": options}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        assert_eq!(body["totalRecords"], 10_000);
        assert_eq!(body["count"], 1000);
        assert_eq!(body["resultTruncated"], "false");
        assert!(header(&headers, "x-ms-user-quota-remaining").parse::<u32>().is_ok());
        seen.extend(ids(&body["data"]));
        match body.get("$skipToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
        assert!(pages < 20, "paging does not end");
    }
    assert_eq!(pages, 10);
    let unique: BTreeSet<String> = seen.iter().map(|s| s.to_ascii_lowercase()).collect();
    assert_eq!(seen.len(), 10_000);
    assert_eq!(unique.len(), 10_000, "a row came twice");
    let mut sorted = seen.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>();
    sorted.sort();
    assert_eq!(
        sorted,
        seen.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>(),
        "id order"
    );
    for id in &report.drifted {
        assert!(unique.contains(&id.to_ascii_lowercase()), "drifted {id} not listed");
    }
    assert_eq!(requests_of_kind(&sim, "graph"), 10);
}

#[tokio::test]
async fn resource_graph_filters_projects_and_adds_its_columns() {
    let sim = start(Vec::new()).await;
    sim.state()
        .seed_bulk(&spec(SUB, 3, &[(STORAGE, 30), (DISKS, 30)], 0))
        .unwrap();
    sim.state().seed_bulk(&spec(SUB2, 1, &[(DISKS, 5)], 0)).unwrap();

    // Type and resource group, case-insensitively; disks 1, 4, 7 ... are in rg-bulk-001.
    let (status, _, body) = graph(
        &sim,
        json!({"subscriptions": [SUB], "query": "Resources | where type =~ 'Microsoft.Compute/disks' and resourceGroup =~ 'RG-BULK-001'"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalRecords"], 10);
    let row = &body["data"][0];
    assert_eq!(row["type"], "microsoft.compute/disks");
    assert_eq!(row["resourceGroup"], "rg-bulk-001");
    assert_eq!(row["subscriptionId"], SUB);
    assert_eq!(row["tenantId"], azure_sim::DEFAULT_TENANT_ID);
    assert_eq!(
        row["properties"]["encryption"]["type"],
        "EncryptionAtRestWithCustomerKey"
    );
    let expected: BTreeSet<String> = (0..30)
        .filter(|i| i % 3 == 1)
        .map(|i| spec(SUB, 3, &[], 0).resource_id(DISKS, i))
        .collect();
    assert_eq!(ids(&body["data"]).into_iter().collect::<BTreeSet<_>>(), expected);

    // `==` is case-sensitive and Resource Graph's type column is lower-case.
    let (_, _, body) = graph(
        &sim,
        json!({"subscriptions": [SUB], "query": "resources | where type == 'Microsoft.Compute/disks'"}),
    )
    .await;
    assert_eq!(body["totalRecords"], 0);

    // Scope: both subscriptions; subscriptionId filter narrows again.
    let (_, _, body) = graph(
        &sim,
        json!({"subscriptions": [SUB, SUB2], "query": format!("resources | where type in~ ('microsoft.compute/disks') and subscriptionId =~ '{SUB2}'")}),
    )
    .await;
    assert_eq!(body["totalRecords"], 5);

    // Projection keeps the listed columns; paging continues because id is among them.
    let (_, _, body) = graph(
        &sim,
        json!({"subscriptions": [SUB], "query": "resources | project id, name | order by name desc", "options": {"$top": 7}}),
    )
    .await;
    assert_eq!(body["count"], 7);
    assert_eq!(body["totalRecords"], 60);
    let keys: Vec<&String> = body["data"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "name"]);
    assert_eq!(body["data"][0]["name"], "storageacc00029");
    assert!(body["$skipToken"].is_string());

    // Without id, or with limit, paging is impossible: truncated, no token.
    for query in ["resources | project name", "resources | limit 20"] {
        let (_, _, body) = graph(
            &sim,
            json!({"subscriptions": [SUB], "query": query, "options": {"$top": 5}}),
        )
        .await;
        assert_eq!(body["resultTruncated"], "true", "{query}");
        assert!(body.get("$skipToken").is_none(), "{query}");
        assert_eq!(body["count"], 5, "{query}");
    }

    // Table format.
    let (_, _, body) = graph(
        &sim,
        json!({"subscriptions": [SUB2], "query": "resources | project id, type", "options": {"resultFormat": "table"}}),
    )
    .await;
    assert_eq!(
        body["data"]["columns"],
        json!([{"name": "id", "type": "string"}, {"name": "type", "type": "string"}])
    );
    assert_eq!(body["data"]["rows"].as_array().unwrap().len(), 5);
    assert_eq!(body["data"]["rows"][0][1], "microsoft.compute/disks");
}

#[tokio::test]
async fn resource_graph_refuses_bad_queries_foreign_tokens_and_bad_options() {
    let sim = start(Vec::new()).await;
    sim.state().seed_bulk(&spec(SUB, 1, &[(STORAGE, 5)], 0)).unwrap();

    let (status, _, body) = graph(
        &sim,
        json!({"subscriptions": [SUB], "query": "resources | summarize count() by type"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "BadRequest");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("summarize"),
        "{body}"
    );
    assert_eq!(body["error"]["details"][0]["code"], "InvalidQuery");

    let first = json!({"subscriptions": [SUB], "query": "resources | where type =~ 'microsoft.storage/storageaccounts'", "options": {"$top": 2}});
    let (_, _, page) = graph(&sim, first).await;
    let token = page["$skipToken"].as_str().unwrap().to_owned();
    // Same token, different query: refused.
    let (status, _, body) = graph(
        &sim,
        json!({"subscriptions": [SUB], "query": "resources", "options": {"$skipToken": token}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][1]["code"], "InvalidSkipToken");
    // Same query, other scope: refused too.
    let (status, _, _) = graph(
        &sim,
        json!({"subscriptions": [SUB2], "query": "resources | where type =~ 'microsoft.storage/storageaccounts'", "options": {"$skipToken": token}}),
    )
    .await;
    assert_eq!(status, 400);

    let (status, _, _) = graph(
        &sim,
        json!({"subscriptions": [SUB], "query": "resources", "options": {"$top": 1001}}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = graph(&sim, json!({"subscriptions": [SUB]})).await;
    assert_eq!(status, 400);
    let r = client()
        .post(graph_url(&sim))
        .json(&json!({"query": "resources"}))
        .send()
        .await
        .unwrap();
    assert_arm_error(r, 401, "AuthenticationFailed").await;
}

#[tokio::test]
async fn management_groups_scope_queries_and_list_their_subscriptions() {
    let sim = start_with(ListingConfig {
        management_groups: BTreeMap::from([("mg-prod".to_owned(), vec![SUB.to_owned(), SUB2.to_owned()])]),
        ..ListingConfig::default()
    })
    .await;
    for (sub, n) in [(SUB, 3), (SUB2, 4), (SUB3, 5)] {
        sim.state().seed_bulk(&spec(sub, 1, &[(STORAGE, n)], 0)).unwrap();
    }
    let (status, _, body) = graph(&sim, json!({"managementGroups": ["MG-PROD"], "query": "resources"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totalRecords"], 7);
    // No scope at all: the tenant.
    let (_, _, body) = graph(&sim, json!({"query": "resources"})).await;
    assert_eq!(body["totalRecords"], 12);
    let (status, _, _) = graph(&sim, json!({"managementGroups": ["mg-none"], "query": "resources"})).await;
    assert_eq!(status, 400);

    let (status, _, body) = arm_get(
        &sim,
        &format!(
            "{}/providers/Microsoft.Management/managementGroups/mg-prod/descendants?api-version=2020-05-01",
            sim.base_url()
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let subs: Vec<&str> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(subs, [SUB, SUB2]);
    assert_eq!(body["value"][0]["type"], "/subscriptions");
    assert_eq!(body["value"][0]["id"], format!("/subscriptions/{SUB}"));

    let (status, _, body) = arm_get(
        &sim,
        &format!("{}/subscriptions?api-version=2022-12-01", sim.base_url()),
    )
    .await;
    assert_eq!(status, 200);
    let all: Vec<&str> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subscriptionId"].as_str().unwrap())
        .collect();
    assert_eq!(all, [SUB, SUB2, SUB3]);
    assert_eq!(body["value"][0]["state"], "Enabled");
}

#[tokio::test]
async fn arm_list_pages_with_next_link_and_serves_each_resource_once() {
    let sim = start_with(ListingConfig {
        page_size: 7,
        ..ListingConfig::default()
    })
    .await;
    let seed = spec(SUB, 2, &[(STORAGE, 50), (DISKS, 5)], 0);
    sim.state().seed_bulk(&seed).unwrap();
    sim.state().seed_bulk(&spec(SUB2, 1, &[(STORAGE, 3)], 0)).unwrap();

    let mut url = Some(format!(
        "{}/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01",
        sim.base_url()
    ));
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(u) = url.take() {
        let (status, headers, body) = arm_get(&sim, &u).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            header(&headers, "x-ms-ratelimit-remaining-subscription-reads")
                .parse::<u32>()
                .is_ok()
        );
        pages += 1;
        seen.extend(ids(&body["value"]));
        url = body.get("nextLink").and_then(Value::as_str).map(str::to_owned);
        if let Some(next) = &url {
            assert!(next.starts_with(&sim.base_url()), "{next}");
            assert!(next.contains("$skiptoken="), "{next}");
        }
        assert!(pages < 20);
    }
    assert_eq!(pages, 8, "50 accounts, 7 a page");
    let expected: BTreeSet<String> = (0..50).map(|i| seed.resource_id(STORAGE, i)).collect();
    assert_eq!(seen.len(), 50);
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(requests_of_kind(&sim, "list"), 8);

    // Resource-group scope: half of them; disks are their own collection.
    let rg = seed.resource_group(1);
    let (_, _, body) = arm_get(
        &sim,
        &format!(
            "{}/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/disks?api-version=2025-01-02",
            sim.base_url()
        ),
    )
    .await;
    assert_eq!(ids(&body["value"]).len(), 2, "{body}");
    assert!(body.get("nextLink").is_none());

    // A single resource is still a GET of that resource.
    let one = seed.resource_id(STORAGE, 3);
    let (status, _, body) = arm_get(&sim, &arm_url(&sim, &one, Some("2025-01-01"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], one);

    // Nested collection: the databases of one server.
    let server = format!("/subscriptions/{SUB}/resourceGroups/rg-sql/providers/Microsoft.Sql/servers/sql1");
    sim.state()
        .upsert_resources(vec![
            json!({"id": server, "location": "westeurope", "properties": {}}),
            json!({"id": format!("{server}/databases/db1"), "properties": {}}),
            json!({"id": format!("{server}/databases/db2"), "properties": {}}),
        ])
        .unwrap();
    let (status, _, body) = arm_get(
        &sim,
        &format!("{}{server}/databases?api-version=2025-01-01", sim.base_url()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body["value"]).len(), 2);

    // Errors: foreign token, unknown group, unknown subscription, unknown type.
    let (_, _, first) = arm_get(
        &sim,
        &format!(
            "{}/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01",
            sim.base_url()
        ),
    )
    .await;
    let link = first["nextLink"].as_str().unwrap();
    let token = link.split("$skiptoken=").nth(1).unwrap();
    let (status, _, body) = arm_get(
        &sim,
        &format!(
            "{}/subscriptions/{SUB}/providers/Microsoft.Compute/disks?api-version=2025-01-02&$skiptoken={token}",
            sim.base_url()
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("InvalidSkipToken"))
    );
    for (url, status, code) in [
        (
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg-none/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01"
            ),
            404,
            "ResourceGroupNotFound",
        ),
        (
            format!("/subscriptions/{SUB3}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01"),
            404,
            "SubscriptionNotFound",
        ),
        (
            format!("/subscriptions/{SUB}/providers/Microsoft.Web/sites?api-version=2024-04-01"),
            400,
            "InvalidResourceType",
        ),
    ] {
        let token = sim.state().issue_token(sim.state().system_identity());
        let r = client()
            .get(format!("{}{url}", sim.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_arm_error(r, status, code).await;
    }
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_once_quotas_are_spent() {
    let sim = start(Vec::new()).await;
    sim.state().seed_bulk(&spec(SUB, 1, &[(STORAGE, 3)], 0)).unwrap();
    // Turned on over the control API, as an out-of-process test would.
    let put = client()
        .put(format!("{}/_sim/throttle", sim.base_url()))
        .json(&json!({
            "graph": {"limit": 3, "window_ms": 1000, "enforce": true},
            "arm_reads": {"limit": 4, "window_ms": 60000, "enforce": true}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

    let query = json!({"subscriptions": [SUB], "query": "resources"});
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let (status, headers, _) = graph(&sim, query.clone()).await;
        assert_eq!(status, 200);
        remaining.push(header(&headers, "x-ms-user-quota-remaining"));
        let resets = header(&headers, "x-ms-user-quota-resets-after");
        assert!(["00:00:00", "00:00:01"].contains(&resets.as_str()), "{resets}");
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let (status, headers, body) = graph(&sim, query.clone()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "RateLimiting");
    assert_eq!(header(&headers, "retry-after"), "1");
    assert_eq!(header(&headers, "x-ms-user-quota-remaining"), "0");
    // Once the window is over the quota is back.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let (status, headers, _) = graph(&sim, query).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-ms-user-quota-remaining"), "2");

    let list = format!(
        "{}/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01",
        sim.base_url()
    );
    let mut reads = Vec::new();
    for _ in 0..4 {
        let (status, headers, _) = arm_get(&sim, &list).await;
        assert_eq!(status, 200);
        reads.push(header(&headers, "x-ms-ratelimit-remaining-subscription-reads"));
    }
    assert_eq!(reads, ["3", "2", "1", "0"]);
    let (status, headers, body) = arm_get(&sim, &list).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "SubscriptionRequestsThrottled");
    let retry: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another subscription has its own quota; the throttled calls are in the request log.
    sim.state().seed_bulk(&spec(SUB2, 1, &[(STORAGE, 1)], 0)).unwrap();
    let (status, _, _) = arm_get(
        &sim,
        &format!(
            "{}/subscriptions/{SUB2}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01",
            sim.base_url()
        ),
    )
    .await;
    assert_eq!(status, 200);
    let throttled: Vec<String> = sim
        .state()
        .requests()
        .into_iter()
        .filter(|r| r.status == 429)
        .map(|r| r.kind)
        .collect();
    assert_eq!(throttled, ["graph", "list"]);
}

#[tokio::test]
async fn bulk_seeding_over_the_control_api_reports_counts_and_drift() {
    let sim = start(Vec::new()).await;
    let c = client();
    let r = c
        .post(format!("{}/_sim/seed/bulk", sim.base_url()))
        .json(&json!({
            "subscription": SUB, "resourceGroups": 4, "driftEvery": 5,
            "perType": {"microsoft.storage/storageaccounts": 20, "Microsoft.Sql/servers": 10}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["created"], 30);
    assert_eq!(report["perType"], json!({STORAGE: 20, SQL: 10}));
    assert_eq!(report["resourceGroups"].as_array().unwrap().len(), 4);
    let drifted: Vec<String> = report["drifted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let derived = spec(SUB, 4, &[], 5);
    // By type ("Microsoft.Sql/servers" sorts before "Microsoft.Storage/..."), then by index.
    let expected: Vec<String> = (0..10)
        .filter(|i| derived.is_drifted(*i))
        .map(|i| derived.resource_id(SQL, i))
        .chain(
            (0..20)
                .filter(|i| derived.is_drifted(*i))
                .map(|i| derived.resource_id(STORAGE, i)),
        )
        .collect();
    assert_eq!(drifted, expected);
    assert_eq!(drifted.len(), 6);

    // Drifted accounts are MMK (CMK expected), the others CMK.
    let key_source = |i: usize| {
        sim.state().resource(&derived.resource_id(STORAGE, i)).unwrap()["properties"]["encryption"]["keySource"].clone()
    };
    assert_eq!(key_source(4), "Microsoft.Storage");
    assert_eq!(key_source(3), "Microsoft.Keyvault");

    let r = c
        .post(format!("{}/_sim/seed/bulk", sim.base_url()))
        .json(&json!({"subscription": SUB, "perType": {"Microsoft.Web/sites": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("Microsoft.Web/sites"), "{err}");

    let twice = BulkSeed::new(SUB, [(STORAGE.to_owned(), 1), (STORAGE.to_ascii_lowercase(), 2)]);
    assert!(matches!(
        sim.state().seed_bulk(&twice),
        Err(azure_sim::BulkSeedError::DuplicateType(_))
    ));

    // Listing configuration round-trips over the control API.
    let r = c
        .put(format!("{}/_sim/listing", sim.base_url()))
        .json(&json!({"page_size": 3, "management_groups": {"mg": [SUB]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sim.state().listing_config().page_size, 3);
    assert_eq!(
        sim.state().management_group_subscriptions("MG"),
        Some(vec![SUB.to_owned()])
    );
}

/// keyguard's own catalog must read every bulk document as the key mode the seeder meant,
/// or a sweep test could not know which ids drift.
#[tokio::test]
async fn keyguard_reads_every_bulk_type_as_seeded() {
    use keyguard_core::catalog::{self, EncryptionState, ResourceView};

    let sim = start(Vec::new()).await;
    let types = azure_sim::bulk::bulk_types();
    let mut seed = spec(SUB, 1, &[], 2);
    seed.per_type = types.iter().map(|t| ((*t).to_owned(), 2)).collect();
    seed.expect = KeyMode::Cmk;
    sim.state().seed_bulk(&seed).unwrap();
    let mut checked = 0;
    for ty in types {
        let entry = catalog::lookup(ty).unwrap_or_else(|| panic!("{ty} is not in keyguard's catalog"));
        for i in 0..2 {
            let id = seed.resource_id(ty, i);
            let doc = sim.state().resource(&id).unwrap();
            let mut view = ResourceView::new(&doc);
            for child in entry.children {
                let api = child.api_version;
                let (status, _, body) = arm_get(
                    &sim,
                    &format!("{}{id}/{}?api-version={api}", sim.base_url(), child.path),
                )
                .await;
                assert_eq!(status, 200, "{id}/{}: {body}", child.path);
                view = view.with_child(child.path, body);
            }
            let state = entry.observe_view(&view);
            if seed.is_drifted(i) {
                assert_eq!(state, EncryptionState::Mmk, "{ty} #{i}: {doc}");
            } else {
                assert!(matches!(state, EncryptionState::Cmk(_)), "{ty} #{i}: {state:?} {doc}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 56);
}

#[test]
fn cli_options_enforce_quotas_set_page_size_and_place_subscriptions() {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: azure_sim::SimArgs,
    }
    let cli = Cli::try_parse_from([
        "azure-sim",
        "--graph-quota",
        "15/5",
        "--arm-read-quota",
        "250/0.5",
        "--list-page-size",
        "25",
        "--management-group",
        "mg-a=s1,s2",
        "--management-group",
        "mg-b=s3",
    ])
    .unwrap();
    let cfg = cli.sim.to_config().unwrap();
    assert_eq!(
        cfg.throttle.graph,
        azure_sim::Quota::enforced(15, Duration::from_secs(5))
    );
    assert_eq!(
        cfg.throttle.arm_reads,
        azure_sim::Quota::enforced(250, Duration::from_millis(500))
    );
    assert!(!cfg.throttle.arm_writes.enforce);
    assert_eq!(cfg.listing.page_size, 25);
    assert_eq!(
        cfg.listing.management_groups,
        BTreeMap::from([
            ("mg-a".to_owned(), vec!["s1".to_owned(), "s2".to_owned()]),
            ("mg-b".to_owned(), vec!["s3".to_owned()]),
        ])
    );
    // Without the options quotas are reported, not enforced.
    let plain = Cli::try_parse_from(["azure-sim"]).unwrap().sim.to_config().unwrap();
    assert!(!plain.throttle.graph.enforce && !plain.throttle.arm_reads.enforce);
    assert_eq!(plain.listing.page_size, azure_sim::listing::DEFAULT_PAGE_SIZE);
    assert!(Cli::try_parse_from(["azure-sim", "--graph-quota", "15"]).is_err());
    assert!(Cli::try_parse_from(["azure-sim", "--management-group", "no-equals"]).is_err());
}

#[tokio::test]
async fn a_delegated_subscription_belongs_to_its_own_tenant_in_graph_rows_and_subscription_reads() {
    const OTHER_TENANT: &str = "99999999-8888-7777-6666-555555555555";
    let sim = start_with(ListingConfig {
        tenants: BTreeMap::from([(SUB2.to_owned(), OTHER_TENANT.to_owned())]),
        ..ListingConfig::default()
    })
    .await;
    let home = sim.state().tenant_id().to_owned();
    sim.state()
        .upsert_resources(vec![
            azure_sim::vaults::key_vault(SUB, "rg-keys", "kv-home", &home),
            azure_sim::vaults::key_vault(SUB2, "rg-keys", "kv-partner", OTHER_TENANT),
        ])
        .unwrap();
    let (status, _, body) = graph(
        &sim,
        json!({"query": "resources | where type in~ ('microsoft.keyvault/vaults') | project name, tenantId, properties | order by name asc"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<(&str, &str, &str)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["tenantId"].as_str().unwrap(),
                r["properties"]["vaultUri"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("kv-home", home.as_str(), "https://kv-home.vault.azure.net/"),
            ("kv-partner", OTHER_TENANT, "https://kv-partner.vault.azure.net/"),
        ]
    );
    let (_, _, body) = graph(
        &sim,
        json!({"query": format!("resources | where tenantId =~ '{OTHER_TENANT}'")}),
    )
    .await;
    assert_eq!(body["totalRecords"], 1, "{body}");

    // Subscriptions - Get names the tenant, and who manages a delegated one.
    let (status, _, body) = arm_get(
        &sim,
        &format!("{}/subscriptions/{SUB2}?api-version=2022-12-01", sim.base_url()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenantId"], OTHER_TENANT);
    assert_eq!(body["managedByTenants"][0]["tenantId"], home.as_str());
    let (_, _, body) = arm_get(
        &sim,
        &format!("{}/subscriptions/{SUB}?api-version=2022-12-01", sim.base_url()),
    )
    .await;
    assert_eq!(
        (
            body["tenantId"].as_str(),
            body["managedByTenants"].as_array().map(Vec::len)
        ),
        (Some(home.as_str()), Some(0))
    );
    let (status, _, body) = arm_get(
        &sim,
        &format!("{}/subscriptions/{SUB3}?api-version=2022-12-01", sim.base_url()),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("SubscriptionNotFound"))
    );
}
