//! One suite, run against both backends: the embedded redb file and Azure Table Storage (Azurite,
//! the real emulator). A behaviour that differs between them is a bug in one of them.

use std::sync::{Arc, OnceLock};

use azure_sim::azurite::Azurite;
use keyguard_core::{KeyRef, ResourceId};
use time::{Duration, OffsetDateTime};

use super::*;
use crate::test_support::FixedToken;

fn azurite() -> &'static Azurite {
    static AZURITE: OnceLock<Azurite> = OnceLock::new();
    AZURITE.get_or_init(|| Azurite::start().unwrap_or_else(|e| panic!("{e}")))
}

/// A fresh store per test: a new file, or new tables under a unique prefix.
pub(super) async fn stores() -> Vec<(&'static str, StateStore)> {
    let dir = std::env::temp_dir().join(format!("keyguard-store-{}", uuid::Uuid::new_v4()));
    let embedded = StateStore::new(Arc::new(EmbeddedBackend::open(&dir.join("state.redb")).unwrap()))
        .await
        .unwrap();
    let table = StateStore::new(azurite_tables(&table_prefix())).await.unwrap();
    vec![("embedded", embedded), ("azurite", table)]
}

/// A unique table prefix, so every test has tables of its own on the shared Azurite.
pub(crate) fn table_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A Table Storage client for the tables under `prefix` on the shared Azurite, through the
/// egress layer as in production.
pub(crate) fn azurite_tables(prefix: &str) -> Arc<dyn TableBackend> {
    Arc::new(azurite_backend(prefix))
}

pub(super) fn azurite_backend(prefix: &str) -> AzureTableBackend {
    let connection = TableConnection::parse(&azurite().connection_string(), prefix).unwrap();
    let egress = crate::test_support::egress(
        Arc::new(FixedToken::new("unused")),
        "https://management.azure.com",
        Some(&connection.endpoint),
        None,
    );
    AzureTableBackend::new(egress, connection)
}

/// Two stores over the same tables, as two instances on two hosts see them: one redb file
/// opened once and shared, or two Table Storage clients on one account and table prefix.
async fn shared_stores() -> Vec<(&'static str, StateStore, StateStore)> {
    let dir = std::env::temp_dir().join(format!("keyguard-store-{}", uuid::Uuid::new_v4()));
    let backend: Arc<dyn TableBackend> = Arc::new(EmbeddedBackend::open(&dir.join("state.redb")).unwrap());
    let embedded = (
        StateStore::new(backend.clone()).await.unwrap(),
        StateStore::new(backend).await.unwrap(),
    );
    let prefix = table_prefix();
    let first = StateStore::new(azurite_tables(&prefix)).await.unwrap();
    let second = StateStore::new(azurite_tables(&prefix)).await.unwrap();
    vec![("embedded", embedded.0, embedded.1), ("azurite", first, second)]
}

pub(super) fn id(name: &str) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{name}"
    ))
    .unwrap()
}

fn key(name: &str) -> KeyRef {
    KeyRef::from_key_uri(&format!("https://kv.vault.azure.net/keys/{name}"), None).unwrap()
}

#[tokio::test]
async fn dedupe_entries_expire_and_are_pruned() {
    for (name, store) in stores().await {
        let now = OffsetDateTime::now_utc();
        assert!(!store.event_seen("e1", now).await.unwrap(), "{name}");
        store.mark_event("e1", now + Duration::hours(1)).await.unwrap();
        store.mark_event("e2", now + Duration::hours(5)).await.unwrap();
        assert!(store.event_seen("e1", now).await.unwrap(), "{name}");
        assert!(
            !store.event_seen("e1", now + Duration::hours(2)).await.unwrap(),
            "{name}"
        );
        let retention = Retention {
            audit: Duration::days(90),
            sent_alerts: Duration::days(7),
        };
        let report = store.prune(now + Duration::hours(2), retention).await.unwrap();
        assert_eq!(report.events, 1, "{name}");
        assert!(
            !store.event_seen("e1", now).await.unwrap(),
            "{name}: pruned entries are gone"
        );
        assert!(store.event_seen("e2", now).await.unwrap(), "{name}: live entries stay");
    }
}

#[tokio::test]
async fn event_ids_with_reserved_characters_are_stored_safely() {
    for (name, store) in stores().await {
        let now = OffsetDateTime::now_utc();
        let awkward = "a/b\\c#d?e'f%g\u{7}h~i";
        store.mark_event(awkward, now + Duration::hours(1)).await.unwrap();
        assert!(store.event_seen(awkward, now).await.unwrap(), "{name}");
        assert!(
            !store.event_seen("a/b\\c#d?e'f%g\u{7}h~j", now).await.unwrap(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn one_lease_holder_at_a_time_until_it_expires_or_is_released() {
    for (name, store) in stores().await {
        let now = OffsetDateTime::now_utc();
        let ttl = Duration::seconds(30);
        let a = store.try_lease(&id("x"), "a", ttl, now).await.unwrap().expect(name);
        assert!(
            store.try_lease(&id("X"), "b", ttl, now).await.unwrap().is_none(),
            "{name}: held"
        );
        assert!(
            store.try_lease(&id("y"), "b", ttl, now).await.unwrap().is_some(),
            "{name}: per resource"
        );
        // A crashed holder blocks the resource for at most the lease's lifetime.
        let later = now + Duration::seconds(31);
        let b = store.try_lease(&id("x"), "b", ttl, later).await.unwrap().expect(name);
        // The first holder's release must not free the lease it lost.
        store.release(&a).await.unwrap();
        assert!(
            store.try_lease(&id("x"), "c", ttl, later).await.unwrap().is_none(),
            "{name}: b still holds it"
        );
        store.release(&b).await.unwrap();
        assert!(
            store.try_lease(&id("x"), "c", ttl, later).await.unwrap().is_some(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_lease_is_renewed_only_while_nobody_else_took_it() {
    for (name, store) in stores().await {
        let now = OffsetDateTime::now_utc();
        let ttl = Duration::seconds(30);
        let a = store.try_lease(&id("x"), "a", ttl, now).await.unwrap().expect(name);
        // Renewed past its first expiry: nobody else may take it then.
        let renewed = store.renew_lease(&a, ttl, now + Duration::seconds(20)).await.unwrap();
        let renewed = renewed.unwrap_or_else(|| panic!("{name}: still ours"));
        let at_first_expiry = now + Duration::seconds(31);
        assert!(
            store
                .try_lease(&id("x"), "b", ttl, at_first_expiry)
                .await
                .unwrap()
                .is_none(),
            "{name}: the renewal holds"
        );
        assert!(
            store.renew_lease(&a, ttl, now).await.unwrap().is_none(),
            "{name}: a stale copy of the lease proves nothing"
        );
        // Run out and taken by another instance: lost, and the new holder keeps it.
        let later = now + Duration::seconds(60);
        let b = store.try_lease(&id("x"), "b", ttl, later).await.unwrap().expect(name);
        assert!(
            store.renew_lease(&renewed, ttl, later).await.unwrap().is_none(),
            "{name}"
        );
        assert!(store.renew_lease(&b, ttl, later).await.unwrap().is_some(), "{name}");
        // Given back (or pruned): lost too.
        let c = store.try_lease(&id("y"), "c", ttl, now).await.unwrap().expect(name);
        store.release(&c).await.unwrap();
        assert!(store.renew_lease(&c, ttl, now).await.unwrap().is_none(), "{name}");
    }
}

#[tokio::test]
async fn racing_instances_get_exactly_one_lease() {
    for (name, store) in stores().await {
        let now = OffsetDateTime::now_utc();
        let mut tasks = Vec::new();
        for holder in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .try_lease(&id("contended"), &format!("h{holder}"), Duration::seconds(30), now)
                    .await
                    .unwrap()
            }));
        }
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap().is_some());
        }
        assert_eq!(winners, 1, "{name}");
    }
}

/// Hosts that share a name (cloned VMs, containers, `localhost`), even with the same pid, are
/// different machines: a live instance's lease is never taken by another as "its dead
/// predecessor's". Only a holder of this boot and pid namespace whose pid is gone is.
#[tokio::test]
async fn instances_on_hosts_with_the_same_name_and_pid_never_take_each_others_leases() {
    use crate::instance::InstanceName;
    const BOOT_A: &str = "0c5d2e1f-9a8b-4c7d-8e6f-5a4b3c2d1e0f";
    const BOOT_B: &str = "7e6d5c4b-3a29-4187-9605-f4e3d2c1b0a9";
    const NS: &str = "4026531836";
    // The pid of a live process here (ours), and one that cannot exist.
    let (live, gone) = (std::process::id(), u32::MAX);
    for (name, first, second) in shared_stores().await {
        let now = OffsetDateTime::now_utc();
        let ttl = Duration::seconds(30);
        let holder = |host: InstanceName| format!("{host}/{}", uuid::Uuid::new_v4().simple());
        let on_a = |pid, nonce| InstanceName::for_test("web-1", Some(BOOT_A), Some(NS), pid, nonce);
        let on_b = |pid, nonce| InstanceName::for_test("web-1", Some(BOOT_B), Some(NS), pid, nonce);
        for (resource, a, b) in [
            ("same-pid", on_a(live, "a1"), on_b(live, "b1")),
            ("pid-gone-here", on_a(gone, "a2"), on_b(live, "b2")),
            ("pid-gone-there", on_a(live, "a3"), on_b(gone, "b3")),
        ] {
            let held = first
                .try_lease(&id(resource), &holder(a.clone()), ttl, now)
                .await
                .unwrap();
            assert!(held.is_some(), "{name}: {resource}");
            let taken = second
                .try_lease(&id(resource), &holder(b.clone()), ttl, now)
                .await
                .unwrap();
            assert!(taken.is_none(), "{name}: {resource}: {b} took the live lease of {a}");
        }
        // A pre-upgrade holder (`host/pid`) cannot be told apart from another machine's: it runs out.
        let legacy = format!("web-1/{gone}/{}", uuid::Uuid::new_v4().simple());
        let old = first.try_lease(&id("legacy"), &legacy, ttl, now).await.unwrap();
        assert!(old.is_some(), "{name}");
        let me = holder(on_a(live, "me"));
        assert!(
            second.try_lease(&id("legacy"), &me, ttl, now).await.unwrap().is_none(),
            "{name}: an old-format holder is never taken over early"
        );
        // The one case that is provably a crashed predecessor: this boot and namespace, pid gone.
        let crashed = holder(on_a(gone, "crashed"));
        first
            .try_lease(&id("crashed"), &crashed, ttl, now)
            .await
            .unwrap()
            .expect(name);
        assert!(
            second.try_lease(&id("crashed"), &me, ttl, now).await.unwrap().is_some(),
            "{name}: a restart takes over its dead predecessor's lease at once"
        );
    }
}

#[tokio::test]
async fn a_stored_baseline_naming_another_host_is_ignored_and_replaced() {
    let now = OffsetDateTime::now_utc();
    for (name, store) in stores().await {
        let partition = table_key(&id("tampered").key());
        for (vault, readable) in [
            // The same raw record with a real vault reads back: only the host decides below.
            ("https://kv.vault.azure.net", true),
            ("https://evil.example", false),
            ("https://127.0.0.1", false),
            ("https://kv.vault.azure.net:1@evil.example", false),
        ] {
            // Written around keyguard (an older build, or someone with access to the table).
            let raw = serde_json::json!({
                "resourceId": id("tampered").as_str(),
                "key": {"vaultUri": vault, "keyName": "k"},
                "source": "manual",
                "recordedAt": "2026-01-01T00:00:00Z"
            });
            let _ = store
                .backend
                .delete(Table::Baselines, &partition, SINGLE_ROW, None)
                .await;
            store
                .backend
                .insert(Table::Baselines, &partition, SINGLE_ROW, &raw)
                .await
                .unwrap();
            let read = store.baseline(&id("tampered")).await.unwrap();
            assert_eq!(read.is_some(), readable, "{name}: {vault}");
        }
        // The next observation of a good key replaces it.
        store
            .record_baseline(&id("tampered"), &key("good"), BaselineSource::Observed, None, now)
            .await
            .unwrap();
        assert_eq!(
            store.baseline(&id("tampered")).await.unwrap().map(|b| b.key),
            Some(key("good")),
            "{name}"
        );
    }
}

#[tokio::test]
async fn baselines_are_conditional_and_keep_a_persons_decision() {
    for (name, store) in stores().await {
        let now = OffsetDateTime::now_utc();
        assert_eq!(store.baseline(&id("a")).await.unwrap(), None, "{name}");
        let first = store
            .record_baseline(&id("a"), &key("k1"), BaselineSource::Observed, None, now)
            .await
            .unwrap();
        assert_eq!(first, BaselineWrite::Recorded { previous: None }, "{name}");
        let again = store
            .record_baseline(&id("A"), &key("k1"), BaselineSource::Observed, None, now)
            .await
            .unwrap();
        assert_eq!(
            again,
            BaselineWrite::Unchanged,
            "{name}: case-insensitive ids, no rewrite"
        );
        let replaced = store
            .record_baseline(&id("a"), &key("k2"), BaselineSource::Manual, Some("alice"), now)
            .await
            .unwrap();
        let BaselineWrite::Recorded {
            previous: Some(previous),
        } = replaced
        else {
            panic!("{name}: {replaced:?}")
        };
        assert_eq!(previous.key, key("k1"), "{name}: says what it replaced");
        // Observing the same key again keeps the manual record (and who set it).
        store
            .record_baseline(&id("a"), &key("k2"), BaselineSource::Observed, None, now)
            .await
            .unwrap();
        let kept = store.baseline(&id("a")).await.unwrap().unwrap();
        assert_eq!(
            (kept.key, kept.source, kept.set_by.as_deref()),
            (key("k2"), BaselineSource::Manual, Some("alice"))
        );
    }
}

#[tokio::test]
async fn concurrent_baseline_writers_never_fail_and_one_wins() {
    for (name, store) in stores().await {
        let now = OffsetDateTime::now_utc();
        let mut tasks = Vec::new();
        for n in 0..6 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .record_baseline(&id("b"), &key(&format!("k{n}")), BaselineSource::Observed, None, now)
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let final_key = store.baseline(&id("b")).await.unwrap().unwrap().key;
        assert!((0..6).any(|n| final_key == key(&format!("k{n}"))), "{name}");
    }
}

#[tokio::test]
async fn revert_counts_cover_the_window_only() {
    for (name, store) in stores().await {
        let now = OffsetDateTime::now_utc();
        store.record_revert(&id("a"), now - Duration::hours(2)).await.unwrap();
        store
            .record_revert(&id("a"), now - Duration::minutes(10))
            .await
            .unwrap();
        store.record_revert(&id("a"), now).await.unwrap();
        assert_eq!(
            store.reverts_since(&id("a"), now - Duration::hours(1)).await.unwrap(),
            2,
            "{name}"
        );
        assert_eq!(
            store.reverts_since(&id("b"), now - Duration::hours(1)).await.unwrap(),
            0,
            "{name}"
        );
    }
}

#[tokio::test]
async fn revert_intents_are_kept_and_cleared() {
    for (name, store) in stores().await {
        let intent = RevertIntent {
            id: uuid::Uuid::now_v7().to_string(),
            resource_id: id("a").as_str().to_string(),
            correlation_id: "c".into(),
            event_id: Some("e".into()),
            holder: "h".into(),
            started_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
            target: "Microsoft-managed keys".into(),
            writes: vec!["PATCH a".into()],
            caller: None,
            operation: Some(keyguard_core::operation::PendingOperation {
                url: "https://management.azure.com/op/1".into(),
                is_async_operation: true,
            }),
        };
        store.set_revert_intent(&id("a"), Some(&intent)).await.unwrap();
        assert_eq!(store.revert_intent(&id("A")).await.unwrap(), Some(intent), "{name}");
        store.set_revert_intent(&id("a"), None).await.unwrap();
        assert_eq!(store.revert_intent(&id("a")).await.unwrap(), None, "{name}");
        store.set_revert_intent(&id("a"), None).await.unwrap();
    }
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Rec {
    n: u32,
    resource: String,
}

#[tokio::test]
async fn the_audit_trail_is_append_only_ordered_and_queryable() {
    for (name, store) in stores().await {
        let t0 = OffsetDateTime::now_utc() - Duration::days(10);
        let mut ids = Vec::new();
        for n in 0..6u32 {
            let resource = if n % 2 == 0 { id("even") } else { id("odd") };
            let at = t0 + Duration::days(n as i64);
            let row = uuid_at(at);
            ids.push(row.clone());
            let rec = Rec {
                n,
                resource: resource.as_str().into(),
            };
            store.append_audit(resource.as_str(), &row, &rec).await.unwrap();
        }
        let all: Vec<Rec> = store.audit_records(&AuditQuery::default()).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.n).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5],
            "{name}"
        );
        let even: Vec<Rec> = store
            .audit_records(&AuditQuery {
                resource: Some(id("EVEN")),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(even.iter().map(|r| r.n).collect::<Vec<_>>(), vec![0, 2, 4], "{name}");
        let window: Vec<Rec> = store
            .audit_records(&AuditQuery {
                since: Some(t0 + Duration::days(2)),
                until: Some(t0 + Duration::days(4)),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(window.iter().map(|r| r.n).collect::<Vec<_>>(), vec![2, 3], "{name}");
        let newest: Vec<Rec> = store
            .audit_records(&AuditQuery {
                limit: 2,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(newest.iter().map(|r| r.n).collect::<Vec<_>>(), vec![4, 5], "{name}");
        // Append-only: the same record id cannot be written twice.
        let dup = Rec {
            n: 99,
            resource: String::new(),
        };
        assert!(
            !store.append_audit(id("even").as_str(), &ids[0], &dup).await.unwrap(),
            "{name}"
        );
        // Retention drops what is older than the horizon, nothing else.
        let retention = Retention {
            audit: Duration::days(7),
            sent_alerts: Duration::days(7),
        };
        let report = store
            .prune(t0 + Duration::days(10) - Duration::hours(1), retention)
            .await
            .unwrap();
        assert_eq!(report.audit_records, 3, "{name}");
        let kept: Vec<Rec> = store.audit_records(&AuditQuery::default()).await.unwrap();
        assert_eq!(kept.iter().map(|r| r.n).collect::<Vec<_>>(), vec![3, 4, 5], "{name}");
    }
}

/// The whole trail: these tests write more than a query's default limit.
fn everything() -> AuditQuery {
    AuditQuery {
        limit: usize::MAX,
        ..AuditQuery::default()
    }
}

pub(super) fn uuid_at(at: OffsetDateTime) -> String {
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, at.unix_timestamp() as u64, at.nanosecond());
    uuid::Uuid::new_v7(ts).to_string()
}

#[test]
fn v7_floor_sorts_with_real_v7_ids() {
    let t = OffsetDateTime::now_utc();
    let floor = v7_floor(t);
    let before = uuid_at(t - Duration::milliseconds(1));
    let at = uuid_at(t);
    assert!(before < floor && floor <= at, "{before} < {floor} <= {at}");
}

fn alert() -> keyguard_notify::Alert {
    keyguard_notify::Alert::sample()
}

#[tokio::test]
async fn outbox_entries_are_compare_and_swap() {
    for (name, store) in stores().await {
        let entry = OutboxEntry {
            id: uuid::Uuid::now_v7().to_string(),
            route: "r".into(),
            extra_recipients: vec![],
            alert: alert(),
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: 0,
            last_error: None,
            created_at: 0,
            digest: false,
            claimed_by: None,
        };
        assert!(store.outbox_add(&entry).await.unwrap(), "{name}");
        assert!(!store.outbox_add(&entry).await.unwrap(), "{name}: ids are unique");
        let read = store.outbox_get(&entry.id).await.unwrap().unwrap();
        let mut claimed = read.value.clone();
        claimed.next_attempt_at = 100;
        let etag = store.outbox_replace(&claimed, &read.etag).await.unwrap();
        assert!(etag.is_some(), "{name}");
        // A second instance that read the same version loses the race.
        assert_eq!(
            store.outbox_replace(&claimed, &read.etag).await.unwrap(),
            None,
            "{name}"
        );
        let entries = store.outbox_entries().await.unwrap();
        assert_eq!(entries.len(), 1, "{name}");
        assert_eq!(entries[0].value.next_attempt_at, 100, "{name}");
        assert_eq!(
            Some(entries[0].etag.clone()),
            etag,
            "{name}: query and write agree on the tag"
        );
    }
}

#[tokio::test]
async fn known_resources_and_suppression_state_round_trip() {
    for (name, store) in stores().await {
        store.remember_resource(&id("kept"), None).await.unwrap();
        store.remember_resource(&id("KEPT"), None).await.unwrap();
        assert_eq!(store.known_resources().await.unwrap(), vec![id("kept")], "{name}");
        let state = SuppressionState {
            last_sent: Some(5),
            folded: 2,
        };
        store.set_alert_suppression("k/1", &state).await.unwrap();
        assert_eq!(store.alert_suppression("k/1").await.unwrap(), Some(state), "{name}");
        store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn a_resources_safeguards_are_kept_from_the_last_real_look() {
    use keyguard_core::safeguards::{ExemptionTags, SafeguardState};
    let seen = |until: Option<&str>, fingerprint: &str| SafeguardState {
        exemption: ExemptionTags {
            until: until.map(str::to_string),
            reason: None,
        },
        profile: None,
        tags_fingerprint: fingerprint.into(),
    };
    for (name, store) in stores().await {
        let (first, second) = (seen(None, "t1"), seen(Some("2026-03-10"), "t2"));
        assert_eq!(
            store.remember_resource(&id("a"), Some(&first)).await.unwrap(),
            None,
            "{name}"
        );
        let previous = store.remember_resource(&id("A"), Some(&second)).await.unwrap();
        assert_eq!(previous, Some(first), "{name}: the last look's, by case-insensitive id");
        // A dry run reads what was recorded and records nothing.
        assert_eq!(
            store.remember_resource(&id("a"), None).await.unwrap(),
            Some(second.clone()),
            "{name}"
        );
        assert_eq!(
            store.remember_resource(&id("a"), None).await.unwrap(),
            Some(second.clone()),
            "{name}"
        );
        // A row written before safeguards were recorded reads as "none recorded yet".
        let old_row = serde_json::json!({ "resourceId": id("old").as_str() });
        let key = table_key(&id("old").key());
        store
            .backend
            .insert(Table::Resources, &key, "", &old_row)
            .await
            .unwrap();
        assert_eq!(
            store.remember_resource(&id("old"), Some(&second)).await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            store.remember_resource(&id("old"), None).await.unwrap(),
            Some(second),
            "{name}: recorded over the old row"
        );
        assert_eq!(store.known_resources().await.unwrap().len(), 2, "{name}");
    }
}

#[test]
fn table_keys_are_valid_and_injective() {
    let samples = [
        "/subscriptions/s/resourcegroups/rg/providers/microsoft.storage/storageaccounts/a",
        "/subscriptions/s/resourcegroups/rg/providers/microsoft.storage/storageaccounts/a/",
        "a~2f",
        "a/",
        "~~",
        "",
    ];
    let keys: Vec<String> = samples.iter().map(|s| table_key(s)).collect();
    for (k, s) in keys.iter().zip(samples) {
        assert!(
            k.chars().all(|c| c.is_ascii_alphanumeric() || "._-~".contains(c)),
            "{s:?} -> {k:?}"
        );
    }
    let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
    let long = "x/".repeat(400);
    let hashed = table_key(&long);
    assert!(hashed.starts_with("~~") && hashed.len() == 66, "{hashed}");
    assert_ne!(table_key(&"y/".repeat(400)), hashed);
}

proptest::proptest! {
    #[test]
    fn every_string_gives_a_legal_table_key(raw in ".{0,600}") {
        let k = table_key(&raw);
        proptest::prop_assert!(k.len() <= 512);
        proptest::prop_assert!(!k.contains(['/', '\\', '#', '?', '\'']));
        proptest::prop_assert!(!k.chars().any(|c| c.is_control()));
    }
}

/// `kill -9` at any instant leaves a consistent store: a child process appends numbered records
/// as fast as it can and is killed mid-stream; reopening finds every committed record readable
/// and the numbers gapless from zero.
#[test]
fn the_embedded_store_survives_kill_9() {
    let dir = std::env::temp_dir().join(format!("keyguard-crash-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.redb");
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::crash_child_writer",
                "--ignored",
                "--nocapture",
            ])
            .env("KEYGUARD_CRASH_CHILD_STORE", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400 + 150 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = StateStore::new(Arc::new(EmbeddedBackend::open(&path).unwrap()))
                .await
                .unwrap();
            let records: Vec<Rec> = store.audit_records(&everything()).await.unwrap();
            assert!(
                !records.is_empty(),
                "round {round}: the child wrote nothing before the kill"
            );
            let numbers: Vec<u32> = records.iter().map(|r| r.n).collect();
            assert_eq!(numbers, (0..records.len() as u32).collect::<Vec<_>>(), "round {round}");
        });
    }
    std::fs::remove_dir_all(dir).ok();
}

/// The child of `the_embedded_store_survives_kill_9`; does nothing unless started by it.
#[test]
#[ignore = "run as a child process by the_embedded_store_survives_kill_9"]
fn crash_child_writer() {
    let Ok(path) = std::env::var("KEYGUARD_CRASH_CHILD_STORE") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = StateStore::new(Arc::new(EmbeddedBackend::open(std::path::Path::new(&path)).unwrap()))
            .await
            .unwrap();
        let existing: Vec<Rec> = store.audit_records(&everything()).await.unwrap();
        let mut n = existing.len() as u32;
        loop {
            let rec = Rec {
                n,
                resource: "r".into(),
            };
            store
                .append_audit("r", &uuid::Uuid::now_v7().to_string(), &rec)
                .await
                .unwrap();
            n += 1;
        }
    });
}

#[tokio::test]
async fn the_store_bench_runs_the_reconciles_sequences_on_both_backends() {
    for (name, store) in stores().await {
        let report = bench::run(&store, 5).await.unwrap();
        assert_eq!(
            (report.compliant_event.events, report.reverted_drift.events),
            (5, 5),
            "{name}"
        );
        assert!(report.reverted_drift.median_ms > 0.0, "{name}");
        let records: Vec<serde_json::Value> = store.audit_records(&AuditQuery::default()).await.unwrap();
        assert_eq!(records.len(), 10, "{name}: one record per event");
        assert!(store.known_resources().await.unwrap().len() == 5, "{name}");
    }
}

#[tokio::test]
async fn findings_keep_the_latest_per_resource_and_skip_unchanged_writes() {
    use keyguard_report::{Finding, FindingVerdict};
    for (name, store) in stores().await {
        let mut finding = Finding::new(
            id("a").as_str(),
            "Microsoft.Storage/storageAccounts",
            FindingVerdict::Drift,
        );
        finding.checked_at = Some(OffsetDateTime::now_utc());
        store.put_finding(&finding).await.unwrap();
        finding.verdict = FindingVerdict::Compliant;
        store.put_finding(&finding).await.unwrap();
        store
            .put_finding(&Finding::new(
                id("b").as_str(),
                "Microsoft.Storage/storageAccounts",
                FindingVerdict::Exempt,
            ))
            .await
            .unwrap();
        let all = store.findings().await.unwrap();
        assert_eq!(all.len(), 2, "{name}");
        assert_eq!(all[0].verdict, FindingVerdict::Compliant, "{name}: the latest wins");
        store.remove_finding(&id("A")).await.unwrap();
        assert_eq!(store.findings().await.unwrap().len(), 1, "{name}");
    }
}
