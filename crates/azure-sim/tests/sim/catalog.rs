//! ARM for the catalog types beyond storage: GET, PATCH/PUT write rules, SQL children,
//! long-running operations.

use azure_sim::SimHandle;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::common::*;

fn rid(provider_path: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/{provider_path}")
}

fn body_of(file: &str) -> Value {
    let fx = fixture(file);
    let r = &fx["responses"];
    ["200", "201"]
        .iter()
        .find_map(|k| r.get(*k).and_then(|v| v.get("body")).cloned())
        .unwrap()
}

/// The fixture's response body moved under SUB/RG.
fn rehomed(file: &str, provider_path: &str) -> Value {
    let mut b = body_of(file);
    b["id"] = json!(rid(provider_path));
    b
}

async fn send(sim: &SimHandle, method: reqwest::Method, id: &str, api: &str, body: Option<Value>) -> reqwest::Response {
    let token = sim.state().issue_token(&human());
    let mut r = client().request(method, arm_url(sim, id, Some(api))).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

async fn get_doc(sim: &SimHandle, id: &str, api: &str) -> Value {
    let r = send(sim, reqwest::Method::GET, id, api, None).await;
    assert_eq!(r.status(), 200, "GET {id}");
    r.json().await.unwrap()
}

/// GETs a polling URL (absolute, or relative to the simulator); returns status, headers, body.
async fn poll(sim: &SimHandle, url: &str) -> (u16, HeaderMap, Value) {
    let full = if url.starts_with('/') {
        format!("{}{url}", sim.base_url())
    } else {
        url.to_owned()
    };
    let token = sim.state().issue_token(&human());
    let r = client().get(full).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, headers, body)
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_owned())
}

fn operation_names(sim: &SimHandle) -> Vec<String> {
    sim.state()
        .events()
        .iter()
        .map(|e| e["data"]["operationName"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_catalog_type_serves_its_seeded_document() {
    let mut seed = Vec::new();
    let mut ids = Vec::new();
    for (i, ty) in azure_sim::catalog_sim::TYPES.iter().enumerate() {
        let mut parts = ty.full_type.split('/');
        let ns = parts.next().unwrap();
        let mut path = ns.to_owned();
        for (j, t) in parts.enumerate() {
            path.push_str(&format!("/{t}/n{i}x{j}"));
        }
        let id = rid(&path);
        let name = id.rsplit('/').next().unwrap().to_owned();
        seed.push(json!({"id": id, "name": name, "type": ty.full_type, "location": "westeurope", "properties": {"marker": i}}));
        ids.push((id, ty));
    }
    let sim = start(seed.clone()).await;
    for ((id, ty), doc) in ids.iter().zip(&seed) {
        for api in ty.api_versions {
            assert_eq!(&get_doc(&sim, id, api).await, doc, "{} @ {api}", ty.full_type);
        }
    }
    // Fixture bodies as seeded, ids and casing as the spec examples have them.
    for (file, api) in [
        ("cosmosdb/CosmosDBDatabaseAccountCreateMax.json", "2025-10-15"),
        ("eventhub/EHNameSpaceCreate.json", "2024-01-01"),
        ("compute/Disk_Get.json", "2025-01-02"),
        ("containerregistry/RegistryUpdate.json", "2025-04-01"),
        ("postgresql/ServerCreateWithDataEncryptionEnabled.json", "2025-08-01"),
        ("recoveryservices/PATCHVault_WithCMK.2025-02-01.json", "2025-02-01"),
        ("kusto/KustoClustersUpdate.2024-04-13.json", "2024-04-13"),
    ] {
        let body = body_of(&format!("arm/{file}"));
        let id = body["id"].as_str().unwrap().to_owned();
        sim.state().upsert_resources(vec![body.clone()]).unwrap();
        assert_eq!(get_doc(&sim, &id, api).await, body, "{file}");
    }
    // Unknown types and api-versions a type does not have.
    let r = send(
        &sim,
        reqwest::Method::GET,
        &rid("Microsoft.Web/sites/app1"),
        "2024-04-01",
        None,
    )
    .await;
    assert_arm_error(r, 400, "InvalidResourceType").await;
    let r = send(&sim, reqwest::Method::GET, &ids[0].0, "1999-01-01", None).await;
    assert_arm_error(r, 400, "InvalidApiVersionParameter").await;
    let r = send(
        &sim,
        reqwest::Method::GET,
        &rid("Microsoft.DocumentDB/databaseAccounts/ghost"),
        "2025-10-15",
        None,
    )
    .await;
    assert_arm_error(r, 404, "ResourceNotFound").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn one_way_and_creation_only_switches_are_refused_and_change_nothing() {
    let cosmos_id = rid("Microsoft.DocumentDB/databaseAccounts/ddb1");
    let cosmos = rehomed(
        "arm/cosmosdb/CosmosDBDatabaseAccountCreateMax.json",
        "Microsoft.DocumentDB/databaseAccounts/ddb1",
    );
    let pg_id = rid("Microsoft.DBforPostgreSQL/flexibleServers/pg1");
    let pg = json!({"id": pg_id, "name": "pg1", "type": "Microsoft.DBforPostgreSQL/flexibleServers", "location": "westeurope",
        "properties": {"state": "Ready", "dataEncryption": {"type": "SystemManaged"}}});
    let eh_id = rid("Microsoft.EventHub/namespaces/ns1");
    let eh = rehomed(
        "arm/eventhub/EHNameSpaceCreate.json",
        "Microsoft.EventHub/namespaces/ns1",
    );
    let acr_id = rid("Microsoft.ContainerRegistry/registries/acr1");
    let acr = rehomed(
        "arm/containerregistry/RegistryUpdate.json",
        "Microsoft.ContainerRegistry/registries/acr1",
    );
    let adf_id = rid("Microsoft.DataFactory/factories/adf1");
    let adf = json!({"id": adf_id, "type": "Microsoft.DataFactory/factories", "properties": {
        "encryption": {"vaultBaseUrl": "https://kv.vault.azure.net", "keyName": "k", "keyVersion": "v"}}});
    let sim = start(vec![cosmos.clone(), pg.clone(), eh.clone(), acr.clone(), adf.clone()]).await;
    let patch = |id: &str, api: &'static str, body: Value| {
        let id = id.to_owned();
        let sim = &sim;
        async move { send(sim, reqwest::Method::PATCH, &id, api, Some(body)).await }
    };

    // Cosmos DB: removing the key is one-way.
    let r = patch(
        &cosmos_id,
        "2025-10-15",
        json!({"properties": {"keyVaultKeyUri": null}}),
    )
    .await;
    assert_arm_error(r, 400, "CannotDisableCustomerManagedKey").await;
    assert_eq!(sim.state().resource(&cosmos_id).unwrap(), cosmos);
    // Event Hubs: encryption gone = MMK, refused.
    let r = patch(&eh_id, "2024-01-01", json!({"properties": {"encryption": null}})).await;
    assert_arm_error(r, 400, "CannotDisableCustomerManagedKey").await;
    assert_eq!(sim.state().resource(&eh_id).unwrap(), eh);
    // Data Factory: cannot remove.
    let r = patch(&adf_id, "2018-06-01", json!({"properties": {"encryption": null}})).await;
    assert_arm_error(r, 400, "CannotDisableCustomerManagedKey").await;
    // PostgreSQL flexible: CMK is a creation-time choice.
    let r = patch(
        &pg_id,
        "2025-08-01",
        json!({"properties": {"dataEncryption": {"type": "AzureKeyVault",
        "primaryKeyURI": "https://kv.vault.azure.net/keys/k/v1"}}}),
    )
    .await;
    let err = assert_arm_error(r, 400, "InvalidEncryptionChange").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("created"));
    assert_eq!(sim.state().resource(&pg_id).unwrap(), pg);
    // ACR: enabling on an existing registry is refused (sync-refused before any 202).
    let r = patch(
        &acr_id,
        "2025-04-01",
        json!({"properties": {"encryption": {"status": "enabled"}}}),
    )
    .await;
    assert_arm_error(r, 400, "InvalidEncryptionChange").await;
    assert_eq!(sim.state().resource(&acr_id).unwrap(), acr);
    // The portal path (`act`) applies the same rules.
    let out = sim
        .state()
        .act(&cosmos_id, &human(), &json!({"properties": {"keyVaultKeyUri": null}}));
    assert_eq!(out.status, 400);
    assert_eq!(out.body["error"]["code"], "CannotDisableCustomerManagedKey");
    assert!(sim.state().events().is_empty());

    // Allowed writes merge (null removes) and raise the type's write event.
    let r = patch(
        &cosmos_id,
        "2025-10-15",
        json!({"tags": {"owner": "team-a"}, "properties": {"disableLocalAuth": true, "publicNetworkAccess": null}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["tags"]["owner"], "team-a");
    assert_eq!(doc["properties"]["disableLocalAuth"], true);
    assert!(doc["properties"].get("publicNetworkAccess").is_none());
    assert_eq!(
        doc["properties"]["keyVaultKeyUri"],
        cosmos["properties"]["keyVaultKeyUri"]
    );
    // Event Hubs: adding CMK to an MMK namespace is allowed.
    let mut eh_mmk = eh.clone();
    eh_mmk["properties"].as_object_mut().unwrap().remove("encryption");
    eh_mmk["id"] = json!(rid("Microsoft.EventHub/namespaces/ns2"));
    sim.state().upsert_resources(vec![eh_mmk]).unwrap();
    let r = patch(
        &rid("Microsoft.EventHub/namespaces/ns2"),
        "2024-01-01",
        json!({"properties": {"encryption": eh["properties"]["encryption"].clone()}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let events = sim.state().events();
    assert_eq!(
        operation_names(&sim),
        vec![
            "Microsoft.DocumentDB/databaseAccounts/write",
            "Microsoft.EventHub/namespaces/write"
        ]
    );
    assert_eq!(
        events[0]["subject"],
        format!("/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/ddb1")
    );
    assert_eq!(events[0]["data"]["resourceProvider"], "Microsoft.DocumentDB");
    assert_eq!(events[0]["data"]["httpRequest"]["method"], "PATCH");
    sim.shutdown().await;
}

fn sql_server(name: &str) -> Value {
    json!({
        "id": rid(&format!("Microsoft.Sql/servers/{name}")),
        "name": name,
        "type": "Microsoft.Sql/servers",
        "location": "westeurope",
        "identity": {"type": "SystemAssigned", "principalId": "p", "tenantId": azure_sim::DEFAULT_TENANT_ID},
        "properties": {"administratorLogin": "dbadmin", "version": "12.0", "state": "Ready"}
    })
}

#[tokio::test]
async fn sql_key_then_protector_is_a_long_running_put() {
    let server = rid("Microsoft.Sql/servers/sql1");
    let sim = start(vec![sql_server("sql1")]).await;
    let api = "2025-01-01";
    let protector = format!("{server}/encryptionProtector/current");
    let key_name = "kv-approved_sql-cmk_0123456789abcdef0123456789abcdef";
    let key_uri = "https://kv-approved.vault.azure.net/keys/sql-cmk/0123456789abcdef0123456789abcdef";

    // Never written: the service default, in the fixture's GET shape.
    let fx = body_of("arm/sql/EncryptionProtectorGet.json");
    let before = get_doc(&sim, &protector, api).await;
    assert_eq!(before["properties"]["serverKeyType"], "ServiceManaged");
    assert_eq!(before["kind"], "servicemanaged");
    assert_eq!(before["type"], fx["type"]);
    assert_eq!(before["name"], "current");

    // Protector to a key the server does not have: refused at once.
    let to_akv = json!({"properties": {"serverKeyType": "AzureKeyVault", "serverKeyName": key_name, "autoRotationEnabled": false}});
    let r = send(&sim, reqwest::Method::PUT, &protector, api, Some(to_akv.clone())).await;
    assert_arm_error(r, 400, "ServerKeyNotFound").await;

    // Server key (fixture request shape): synchronous 201 with the fixture's response shape.
    let key_body = json!({"properties": {"serverKeyType": "AzureKeyVault", "uri": key_uri}});
    let r = send(
        &sim,
        reqwest::Method::PUT,
        &format!("{server}/keys/{key_name}"),
        api,
        Some(key_body),
    )
    .await;
    assert_eq!(r.status(), 201);
    let key: Value = r.json().await.unwrap();
    assert_eq!(key["type"], "Microsoft.Sql/servers/keys");
    assert_eq!(key["kind"], "azurekeyvault");
    assert_eq!(key["properties"]["uri"], key_uri);
    assert!(key["properties"]["thumbprint"].as_str().unwrap().len() == 40);

    // Protector: 202 with absolute Azure-AsyncOperation and Location.
    let r = send(&sim, reqwest::Method::PUT, &protector, api, Some(to_akv)).await;
    assert_eq!(r.status(), 202);
    let h = r.headers().clone();
    let aa = header(&h, "azure-asyncoperation").unwrap();
    let loc = header(&h, "location").unwrap();
    assert!(aa.starts_with(&sim.base_url()), "{aa}");
    assert!(loc.starts_with(&sim.base_url()), "{loc}");
    assert_ne!(aa, loc);
    assert_eq!(header(&h, "retry-after").as_deref(), Some("0"));
    // Not applied before the operation succeeds.
    assert_eq!(
        get_doc(&sim, &protector, api).await["properties"]["serverKeyType"],
        "ServiceManaged"
    );
    let (s, ph, b) = poll(&sim, &aa).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("InProgress")));
    assert_eq!(header(&ph, "retry-after").as_deref(), Some("0"));
    assert_eq!(
        get_doc(&sim, &protector, api).await["properties"]["serverKeyType"],
        "ServiceManaged"
    );
    let (s, _, b) = poll(&sim, &aa).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("Succeeded")));
    assert!(b["endTime"].is_string());

    let after = get_doc(&sim, &protector, api).await;
    assert_eq!(after["properties"]["serverKeyType"], "AzureKeyVault");
    assert_eq!(after["properties"]["serverKeyName"], key_name);
    assert_eq!(after["properties"]["uri"], key_uri);
    assert_eq!(after["kind"], "azurekeyvault");
    assert_eq!(after["id"], protector.as_str());
    let mut fx_keys: Vec<_> = fx.as_object().unwrap().keys().cloned().collect();
    let mut got_keys: Vec<_> = after.as_object().unwrap().keys().cloned().collect();
    fx_keys.sort();
    got_keys.sort();
    assert_eq!(got_keys, fx_keys);
    // Location answers 200 with the protector once done.
    let (s, _, b) = poll(&sim, &loc).await;
    assert_eq!(s, 200);
    assert_eq!(b, after);

    assert_eq!(
        operation_names(&sim),
        vec![
            "Microsoft.Sql/servers/keys/write",
            "Microsoft.Sql/servers/encryptionProtector/write"
        ]
    );
    let ev = sim.state().events().pop().unwrap();
    let uri = format!(
        "/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.Sql/servers/sql1/encryptionProtector/current"
    );
    assert_eq!(ev["data"]["resourceUri"], uri.as_str());
    assert_eq!(ev["subject"], uri.as_str());
    assert_eq!(ev["data"]["httpRequest"]["method"], "PUT");

    // Back to service-managed.
    sim.state().set_lro_config(azure_sim::LroConfig {
        polls: 0,
        ..Default::default()
    });
    let r = send(
        &sim,
        reqwest::Method::PUT,
        &protector,
        api,
        Some(json!({"properties": {"serverKeyType": "ServiceManaged", "serverKeyName": "ServiceManaged"}})),
    )
    .await;
    assert_eq!(r.status(), 202);
    let (_, _, b) = poll(&sim, &header(r.headers(), "azure-asyncoperation").unwrap()).await;
    assert_eq!(b["status"], "Succeeded");
    let back = get_doc(&sim, &protector, api).await;
    assert_eq!(back["kind"], "servicemanaged");
    assert!(back["properties"].get("uri").is_none());

    // A protector under a server that does not exist.
    let r = send(
        &sim,
        reqwest::Method::GET,
        &rid("Microsoft.Sql/servers/nope/encryptionProtector/current"),
        api,
        None,
    )
    .await;
    assert_arm_error(r, 404, "ParentResourceNotFound").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn tde_put_polls_a_relative_location() {
    let db = rid("Microsoft.Sql/servers/sql1/databases/db1");
    let sim = start(vec![
        sql_server("sql1"),
        json!({"id": db, "type": "Microsoft.Sql/servers/databases", "location": "westeurope", "properties": {"status": "Online"}}),
    ])
    .await;
    let api = "2025-01-01";
    let tde = format!("{db}/transparentDataEncryption/current");
    let fx = body_of("arm/sql/TransparentDataEncryptionGet.json");
    let before = get_doc(&sim, &tde, api).await;
    assert_eq!(before["properties"]["state"], "Enabled");
    assert_eq!(before["type"], fx["type"]);

    let r = send(
        &sim,
        reqwest::Method::PUT,
        &tde,
        api,
        // The schema's spelling: TransparentDataEncryptionState is a closed enum (modelAsString
        // false), and the stand-in checks bodies against it as ARM does.
        Some(json!({"properties": {"state": "Disabled"}})),
    )
    .await;
    assert_eq!(r.status(), 202);
    let h = r.headers().clone();
    assert!(header(&h, "azure-asyncoperation").is_none());
    let loc = header(&h, "location").unwrap();
    assert!(loc.starts_with("/subscriptions/"), "relative: {loc}");
    let (s, ph, b) = poll(&sim, &loc).await;
    assert_eq!((s, b), (202, Value::Null));
    assert_eq!(header(&ph, "location").as_deref(), Some(loc.as_str()));
    assert_eq!(get_doc(&sim, &tde, api).await["properties"]["state"], "Enabled");
    let (s, _, b) = poll(&sim, &loc).await;
    assert_eq!(s, 200);
    assert_eq!(b["properties"]["state"], "Disabled");
    assert_eq!(b["name"], "current");
    assert_eq!(b["type"], "Microsoft.Sql/servers/databases/transparentDataEncryption");
    assert_eq!(get_doc(&sim, &tde, api).await, b);
    assert_eq!(
        operation_names(&sim),
        vec!["Microsoft.Sql/servers/databases/transparentDataEncryption/write"]
    );
    // Bad state values are refused synchronously, by the request schema before the service.
    let r = send(
        &sim,
        reqwest::Method::PUT,
        &tde,
        api,
        Some(json!({"properties": {"state": "Maybe"}})),
    )
    .await;
    assert_arm_error(r, 400, "InvalidRequestContent").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failed_operation_leaves_the_document_unchanged() {
    let id = rid("Microsoft.DBforMySQL/flexibleServers/my1");
    let mysql = json!({"id": id, "name": "my1", "type": "Microsoft.DBforMySQL/flexibleServers", "location": "West Europe",
        "properties": {"state": "Ready", "dataEncryption": {"type": "SystemManaged"}}});
    let sim = start(vec![mysql.clone()]).await;
    let r = client()
        .put(format!("{}/_sim/lro", sim.base_url()))
        .json(&json!({"polls": 0, "fail": true, "error_code": "AzureKeyVaultKeyNotFound", "error_status": 400}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let to_cmk = json!({"properties": {"dataEncryption": {"type": "AzureKeyVault",
        "primaryKeyURI": "https://kv-approved.vault.azure.net/keys/mysql-cmk/v1",
        "primaryUserAssignedIdentityId": rid("Microsoft.ManagedIdentity/userAssignedIdentities/id1")}}});
    let r = send(&sim, reqwest::Method::PATCH, &id, "2023-12-30", Some(to_cmk.clone())).await;
    assert_eq!(r.status(), 202);
    let aa = header(r.headers(), "azure-asyncoperation").unwrap();
    let loc = header(r.headers(), "location").unwrap();
    assert!(
        aa.contains("/providers/Microsoft.DBforMySQL/locations/westeurope/"),
        "{aa}"
    );
    let (s, _, b) = poll(&sim, &aa).await;
    assert_eq!(s, 200);
    assert_eq!(b["status"], "Failed");
    assert_eq!(b["error"]["code"], "AzureKeyVaultKeyNotFound");
    assert!(b["error"]["message"].is_string());
    let (s, _, b) = poll(&sim, &loc).await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["code"], "AzureKeyVaultKeyNotFound");
    assert_eq!(sim.state().resource(&id).unwrap(), mysql);
    assert!(sim.state().events().is_empty());
    let ops: Vec<Value> = client()
        .get(format!("{}/_sim/operations", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["status"], "Failed");

    // Default settings again: the same write succeeds after one in-progress poll.
    let r = client()
        .put(format!("{}/_sim/lro", sim.base_url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let cfg: Value = r.json().await.unwrap();
    assert_eq!(cfg["polls"], 1);
    assert_eq!(cfg["fail"], false);
    let r = send(&sim, reqwest::Method::PATCH, &id, "2023-12-30", Some(to_cmk)).await;
    let aa = header(r.headers(), "azure-asyncoperation").unwrap();
    assert_eq!(poll(&sim, &aa).await.2["status"], "InProgress");
    assert_eq!(poll(&sim, &aa).await.2["status"], "Succeeded");
    assert_eq!(
        sim.state().resource(&id).unwrap()["properties"]["dataEncryption"]["type"],
        "AzureKeyVault"
    );
    assert_eq!(
        operation_names(&sim),
        vec!["Microsoft.DBforMySQL/flexibleServers/write"]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn disk_encryption_change_is_refused_while_attached_to_a_running_vm() {
    let vm = |name: &str, power: &str| {
        json!({"id": rid(&format!("Microsoft.Compute/virtualMachines/{name}")), "type": "Microsoft.Compute/virtualMachines",
            "location": "westeurope", "properties": {"instanceView": {"statuses": [
                {"code": "ProvisioningState/succeeded"}, {"code": format!("PowerState/{power}")}]}}})
    };
    let disk = |name: &str, vm_name: &str| {
        let mut d = body_of("arm/compute/Disk_Get.json");
        d["id"] = json!(rid(&format!("Microsoft.Compute/disks/{name}")));
        d["name"] = json!(name);
        d["managedBy"] = json!(rid(&format!("Microsoft.Compute/virtualMachines/{vm_name}")));
        d["properties"]["diskState"] = json!("Attached");
        d
    };
    let running_disk = disk("d-running", "vm-running");
    let sim = start(vec![
        vm("vm-running", "running"),
        vm("vm-stopped", "deallocated"),
        running_disk.clone(),
        disk("d-stopped", "vm-stopped"),
    ])
    .await;
    let des = rid("Microsoft.Compute/diskEncryptionSets/des1");
    let to_cmk =
        json!({"properties": {"encryption": {"type": "EncryptionAtRestWithCustomerKey", "diskEncryptionSetId": des}}});
    let api = "2025-01-02";
    let r = send(
        &sim,
        reqwest::Method::PATCH,
        &rid("Microsoft.Compute/disks/d-running"),
        api,
        Some(to_cmk.clone()),
    )
    .await;
    assert_arm_error(r, 409, "OperationNotAllowed").await;
    assert_eq!(
        sim.state().resource(&rid("Microsoft.Compute/disks/d-running")).unwrap(),
        running_disk
    );
    // Other changes to the same disk are fine (tags are not encryption) — still a disk LRO.
    let r = send(
        &sim,
        reqwest::Method::PATCH,
        &rid("Microsoft.Compute/disks/d-running"),
        api,
        Some(json!({"tags": {"a": "b"}})),
    )
    .await;
    assert_eq!(r.status(), 202);

    // Deallocated VM: accepted as 202 + Location only; 202 then 200 with the disk.
    let stopped = rid("Microsoft.Compute/disks/d-stopped");
    let r = send(&sim, reqwest::Method::PATCH, &stopped, api, Some(to_cmk)).await;
    assert_eq!(r.status(), 202);
    assert!(header(r.headers(), "azure-asyncoperation").is_none());
    let loc = header(r.headers(), "location").unwrap();
    assert!(loc.starts_with(&sim.base_url()));
    assert_eq!(poll(&sim, &loc).await.0, 202);
    let (s, _, b) = poll(&sim, &loc).await;
    assert_eq!(s, 200);
    assert_eq!(b["properties"]["encryption"]["type"], "EncryptionAtRestWithCustomerKey");
    assert_eq!(b["properties"]["encryption"]["diskEncryptionSetId"], des.as_str());
    assert_eq!(operation_names(&sim), vec!["Microsoft.Compute/disks/write"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn recovery_services_answers_relative_urls_with_retry_after() {
    let id = rid("Microsoft.RecoveryServices/vaults/rsv1");
    let mut vault = rehomed(
        "arm/recoveryservices/PATCHVault_WithCMK.2025-02-01.json",
        "Microsoft.RecoveryServices/vaults/rsv1",
    );
    vault["properties"].as_object_mut().unwrap().remove("encryption");
    let sim = start(vec![vault]).await;
    sim.state().set_lro_config(azure_sim::LroConfig {
        retry_after: 3,
        ..Default::default()
    });
    let fx = fixture("arm/recoveryservices/PATCHVault_WithCMK.2025-02-01.json");
    let r = send(
        &sim,
        reqwest::Method::PATCH,
        &id,
        "2025-02-01",
        Some(fx["parameters"]["vault"].clone()),
    )
    .await;
    assert_eq!(r.status(), 202);
    let h = r.headers().clone();
    assert_eq!(header(&h, "retry-after").as_deref(), Some("3"));
    let aa = header(&h, "azure-asyncoperation").unwrap();
    let loc = header(&h, "location").unwrap();
    assert!(aa.starts_with(&format!("{id}/operationStatus/")), "{aa}");
    assert!(loc.starts_with(&format!("{id}/operationResults/")), "{loc}");
    assert_eq!(poll(&sim, &aa).await.2["status"], "InProgress");
    let (s, _, b) = poll(&sim, &loc).await;
    assert_eq!(s, 200);
    assert_eq!(
        b["properties"]["encryption"]["keyVaultProperties"]["keyUri"],
        "https://cmk2xkv.vault.azure.net/keys/Key1/0767b348bb1a4c07baa6c4ec0055d2b3"
    );
    // And now it cannot be removed.
    let r = send(
        &sim,
        reqwest::Method::PATCH,
        &id,
        "2025-02-01",
        Some(json!({"properties": {"encryption": {"keyVaultProperties": null}}})),
    )
    .await;
    assert_arm_error(r, 400, "CannotDisableCustomerManagedKey").await;
    sim.shutdown().await;
}
