//! State that survives and scales out, end to end: several `keyguard serve` processes share one
//! Azure Table Storage (Azurite, the real emulator) and one azure-sim; a process is SIGKILLed
//! between a revert's intent and its result; baselines are set by hand and the audit trail is
//! read back over HTTP and from the CLI.
//!
//! Multi-threaded runtime: the alert receiver keeps answering while a test waits on a CLI run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use azure_sim::azurite::Azurite;
use keyguard_e2e::*;
use serde_json::{Value, json};

/// A run whose state lives in Table Storage, under tables of its own.
async fn table_env(azurite: &Azurite, mut options: Options) -> anyhow::Result<Env> {
    let prefix = format!("e2e{:x}", std::process::id() as u64 * 1000 + u64::from(rand_suffix()));
    options.no_delivery = true;
    options
        .extra_env
        .push(("KEYGUARD_STORAGE".into(), azurite.connection_string()));
    options.extra_env.push(("KEYGUARD_TABLE_PREFIX".into(), prefix));
    Env::start(options).await
}

fn rand_suffix() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % 1000) as u16
}

/// The events the sim emitted for one resource, oldest first.
async fn events_for(env: &Env, id: &str) -> anyhow::Result<Vec<Value>> {
    Ok(env
        .events()
        .await?
        .into_iter()
        .filter(|e| {
            e["data"]["resourceUri"]
                .as_str()
                .is_some_and(|r| r.eq_ignore_ascii_case(id))
        })
        .collect())
}

async fn post_event(http: &reqwest::Client, base: &str, event: &Value) -> anyhow::Result<(u16, Value)> {
    let response = http
        .post(format!("{base}/EncryptionDrift"))
        .header("content-type", "application/json")
        .json(&functions_envelope(event))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// The persisted audit trail, read with `keyguard audit --format json`.
fn persisted_audit(env: &Env, extra_args: &[&str]) -> anyhow::Result<Vec<Value>> {
    let mut args = vec!["audit", "--format", "json"];
    args.extend_from_slice(extra_args);
    let out = env.keyguard_cli(&args)?;
    anyhow::ensure!(
        out.status.success(),
        "keyguard audit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_sharing_table_storage_revert_each_drift_exactly_once() -> anyhow::Result<()> {
    const RESOURCES: usize = 200;
    let azurite = Azurite::start().map_err(anyhow::Error::msg)?;
    let mut env = table_env(
        &azurite,
        Options {
            time_budget_ms: 20_000,
            ..Options::default()
        },
    )
    .await?;
    let mut instances = vec![env.handler.clone()];
    instances.extend(env.start_more_handlers(2).await?);

    let ids: Vec<String> = (0..RESOURCES)
        .map(|n| account_id("rg-cmk-scale", &format!("stscale{n:03}")))
        .collect();
    let accounts: Vec<Value> = (0..RESOURCES)
        .map(|n| {
            storage_account(
                "rg-cmk-scale",
                &format!("stscale{n:03}"),
                Some(APPROVED_VAULT),
                json!({}),
            )
        })
        .collect();
    env.seed(json!(accounts)).await?;

    // Phase 1: a harmless change per account, each handled by one instance: compliant, and the
    // known-good key goes into the shared store.
    for id in &ids {
        env.act_as_user(id, json!({"tags": {"owner": "platform"}})).await?;
    }
    let first_events = env.events().await?;
    anyhow::ensure!(first_events.len() == RESOURCES, "one event per account");
    let mut tasks = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(24));
    for (n, event) in first_events.into_iter().enumerate() {
        let (http, base, limit) = (env.http.clone(), instances[n % 3].clone(), limit.clone());
        tasks.spawn(async move {
            let _slot = limit.acquire_owned().await?;
            post_event(&http, &base, &event).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (status, body) = joined??;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["ReturnValue"]["result"], "compliant", "{body}");
    }

    // Phase 2: every account drifts to Microsoft-managed keys, and each drift event is delivered
    // to all three instances at the same moment (at-least-once delivery at its worst).
    for id in &ids {
        env.act_as_user(
            id,
            json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
        )
        .await?;
    }
    let mut drift_events = Vec::new();
    for id in &ids {
        let events = events_for(&env, id).await?;
        drift_events.push(events.last().cloned().context_none("a drift event")?);
    }
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for event in drift_events.iter().cloned() {
        let (http, instances, limit) = (env.http.clone(), instances.clone(), limit.clone());
        tasks.spawn(async move {
            let _slot = limit.acquire_owned().await?;
            let (a, b, c) = tokio::join!(
                post_event(&http, &instances[0], &event),
                post_event(&http, &instances[1], &event),
                post_event(&http, &instances[2], &event)
            );
            anyhow::Ok((event["id"].as_str().unwrap_or_default().to_string(), vec![a?, b?, c?]))
        });
    }
    let mut results_by_event: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (event_id, answers) = joined??;
        for (status, body) in answers {
            assert_eq!(status, 200, "{body}");
            results_by_event
                .entry(event_id.clone())
                .or_default()
                .push(body["ReturnValue"]["result"].as_str().unwrap_or("?").to_string());
        }
    }
    let elapsed = started.elapsed();

    let patches = env.keyguard_patches().await?;
    let reverted_answers = results_by_event
        .values()
        .flatten()
        .filter(|r| r.as_str() == "reverted")
        .count();
    let duplicate_answers = results_by_event
        .values()
        .flatten()
        .filter(|r| r.as_str() == "duplicate")
        .count();
    eprintln!(
        "scale-out: {RESOURCES} drift events x 3 instances in {elapsed:?}: {patches} PATCHes, \
         {reverted_answers} answered reverted, {duplicate_answers} answered duplicate"
    );
    assert_eq!(patches, RESOURCES, "each drift reverted exactly once");
    for (event_id, results) in &results_by_event {
        let mut sorted = results.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["duplicate", "duplicate", "reverted"], "event {event_id}");
    }
    for id in &ids {
        assert_eq!(env.key_source(id).await?, "Microsoft.Keyvault", "{id}");
    }

    // The persisted trail: one record per drift event, and it is the revert.
    let records = persisted_audit(&env, &["--limit", "10000"])?;
    let drift_ids: BTreeSet<&str> = drift_events.iter().filter_map(|e| e["id"].as_str()).collect();
    let for_drift: Vec<&Value> = records
        .iter()
        .filter(|r| r["trigger"]["eventId"].as_str().is_some_and(|e| drift_ids.contains(e)))
        .collect();
    eprintln!(
        "scale-out: {} audit records persisted, {} for the drift events",
        records.len(),
        for_drift.len()
    );
    assert_eq!(for_drift.len(), RESOURCES, "each drift audited exactly once");
    assert!(for_drift.iter().all(|r| r["result"] == "reverted"));
    let resources: BTreeSet<String> = for_drift
        .iter()
        .filter_map(|r| r["resourceId"].as_str().map(str::to_ascii_lowercase))
        .collect();
    assert_eq!(resources.len(), RESOURCES);
    Ok(())
}

trait ContextNone<T> {
    fn context_none(self, what: &str) -> anyhow::Result<T>;
}

impl<T> ContextNone<T> for Option<T> {
    fn context_none(self, what: &str) -> anyhow::Result<T> {
        self.ok_or_else(|| anyhow::anyhow!("missing: {what}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revert_killed_between_intent_and_result_is_finished_once_by_the_next_instance() -> anyhow::Result<()> {
    let azurite = Azurite::start().map_err(anyhow::Error::msg)?;
    let (receiver, url) = AlertReceiver::start(202).await;
    let mut env = table_env(
        &azurite,
        Options {
            time_budget_ms: 3_000,
            extra_config: TEAMS_ROUTES.into(),
            extra_env: vec![("KEYGUARD_TEAMS_SECOPS_URL".into(), url)],
            ..Options::default()
        },
    )
    .await?;
    let id = account_id("rg-cmk", "stcrashrevert");
    env.seed(json!([storage_account(
        "rg-cmk",
        "stcrashrevert",
        Some(APPROVED_VAULT),
        json!({})
    )]))
    .await?;
    env.act_as_user(&id, json!({"tags": {"owner": "platform"}})).await?;
    let baseline_event = events_for(&env, &id).await?.remove(0);
    let (status, body) = post_event(&env.http, &env.handler, &baseline_event).await?;
    assert_eq!(
        (status, body["ReturnValue"]["result"].as_str()),
        (200, Some("compliant")),
        "{body}"
    );

    // ARM applies keyguard's PATCH but holds the answer: the process dies knowing nothing.
    env.add_fault(json!({"method": "PATCH", "path_contains": "stcrashrevert", "latency_after_ms": 20_000, "times": 1}))
        .await?;
    env.act_as_user(
        &id,
        json!({"properties": {"encryption": {"keySource": "Microsoft.Storage"}}}),
    )
    .await?;
    let drift_event = events_for(&env, &id).await?.pop().context_none("the drift event")?;
    let (http, base, event) = (env.http.clone(), env.handler.clone(), drift_event.clone());
    let first_delivery = tokio::spawn(async move { post_event(&http, &base, &event).await });
    env.wait_for(Duration::from_secs(15), "the PATCH to reach ARM", || async {
        Ok(env.key_source(&id).await? == "Microsoft.Keyvault")
    })
    .await?;
    // The intent is logged before the write; the log reader thread may trail the PATCH a little.
    env.wait_for(
        Duration::from_secs(5),
        "the intent recorded before the write",
        || async { Ok(env.log_tail(200).contains("reverting encryption drift")) },
    )
    .await?;
    env.kill_handler();
    assert!(first_delivery.await?.is_err(), "the first delivery never got an answer");
    let before = persisted_audit(&env, &["--resource", &id])?;
    assert!(
        before.iter().all(|r| r["result"] != "reverted"),
        "nothing recorded the result yet: {before:?}"
    );
    assert!(receiver.bodies().is_empty(), "no alert was sent yet");

    // Event Grid redelivers to a new instance. A restart on the same host takes the dead
    // process's lease at once (elsewhere the answer is "busy, retry" until it runs out); the
    // revert is then verified on a fresh read and recorded, once.
    env.start_handler().await?;
    let mut outcome = Value::Null;
    let mut busy_answers = 0;
    for _ in 0..60 {
        let (status, body) = post_event(&env.http, &env.handler, &drift_event).await?;
        if status == 200 {
            outcome = body["ReturnValue"].clone();
            break;
        }
        assert_eq!(status, 500, "busy is a retryable failure: {body}");
        busy_answers += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("crash test: {busy_answers} busy answers before the dead holder's lease was taken over");
    assert_eq!(outcome["result"], "reverted", "{outcome}");
    assert!(
        outcome["detail"]
            .as_str()
            .is_some_and(|d| d.contains("completes the revert")),
        "{outcome}"
    );
    assert_eq!(env.keyguard_patches().await?, 1, "no second PATCH");

    env.wait_for(Duration::from_secs(15), "the alert", || async {
        Ok(!receiver.bodies().is_empty())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.bodies().len(), 1, "the alert is sent once");

    // A further redelivery is a duplicate; the trail holds exactly one revert record.
    let (status, body) = post_event(&env.http, &env.handler, &drift_event).await?;
    assert_eq!(
        (status, body["ReturnValue"]["result"].as_str()),
        (200, Some("duplicate"))
    );
    let records = persisted_audit(&env, &["--resource", &id])?;
    let reverted: Vec<&Value> = records.iter().filter(|r| r["result"] == "reverted").collect();
    assert_eq!(reverted.len(), 1, "{records:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_set_by_hand_is_the_revert_target_and_the_trail_is_served_over_http() -> anyhow::Result<()> {
    let azurite = Azurite::start().map_err(anyhow::Error::msg)?;
    let env = table_env(&azurite, Options::default()).await?;
    // First seen already drifted: keyguard has no known-good key of its own.
    let id = account_id("rg-cmk", "stfirstseendrifted");
    env.seed(json!([storage_account(
        "rg-cmk",
        "stfirstseendrifted",
        None,
        json!({})
    )]))
    .await?;
    let out = env.keyguard_cli(&["baseline", "show", &id])?;
    assert_eq!(out.status.code(), Some(1), "no baseline yet");

    let key = format!("{APPROVED_VAULT}/keys/storage-cmk");
    let out = env.keyguard_cli(&["baseline", "set", &id, "--key", &key, "--by", "alice"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.keyguard_cli(&["baseline", "show", &id])?;
    let shown: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(shown["source"], "manual");
    assert_eq!(shown["setBy"], "alice");
    assert_eq!(shown["key"]["keyName"], "storage-cmk");
    let bad = env.keyguard_cli(&["baseline", "set", &id, "--key", "https://example.com/not-a-key"])?;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a Key Vault key URI"));

    env.act_as_user(&id, json!({"tags": {"touched": "yes"}})).await?;
    let event = events_for(&env, &id).await?.remove(0);
    let (status, body) = post_event(&env.http, &env.handler, &event).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ReturnValue"]["result"], "reverted", "{body}");
    let doc = env.resource(&id).await?;
    assert_eq!(
        doc["properties"]["encryption"]["keyvaultproperties"]["keyname"],
        "storage-cmk"
    );

    let audit: Value = env
        .http
        .get(format!("{}/api/audit", env.handler))
        .query(&[("resource", id.as_str()), ("since", "1h")])
        .send()
        .await?
        .json()
        .await?;
    let records = audit["value"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 1, "{audit}");
    assert_eq!(records[0]["result"], "reverted");
    assert_eq!(records[0]["before"]["state"], "mmk");
    assert_eq!(records[0]["after"]["state"], "cmk");
    assert_eq!(records[0]["trigger"]["eventId"], event["id"]);
    // An age beyond the calendar used to panic, in the API (a 500) and in the CLI.
    for since in ["yesterday", "99999999999999d"] {
        let bad = env
            .http
            .get(format!("{}/api/audit", env.handler))
            .query(&[("since", since)])
            .send()
            .await?;
        assert_eq!(bad.status().as_u16(), 400, "{since}");
        let body = bad.text().await?;
        assert!(body.contains(since) && !body.contains("panicked"), "{body}");
    }
    let out = env.keyguard_cli(&["audit", "--since", "99999999999999d"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("beyond the calendar") && !stderr.contains("panicked"),
        "{stderr}"
    );

    let out = env.keyguard_cli(&["audit", "--resource", &id, "--format", "csv"])?;
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut lines = csv.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("time,recordId,eventId")),
        "{csv}"
    );
    assert_eq!(lines.filter(|l| l.contains(",reverted,")).count(), 1, "{csv}");
    Ok(())
}

/// Group commit (issue 14): keyguard is SIGKILLed while 64 deliveries are in flight, so its store
/// writer is in the middle of a batch. After the kill, every event answered 200 has its revert in
/// the trail, and no commit is there by half: each record is in its resource's trail and in the
/// timeline, or in neither. Restarted, keyguard settles the rest: every drift ends with exactly
/// one revert record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handler_killed_during_group_commits_keeps_every_acknowledged_write_and_none_by_half() -> anyhow::Result<()> {
    const ACCOUNTS: usize = 120;
    const KILL_AFTER: usize = 30;
    let mut env = Env::start(Options {
        no_delivery: true,
        time_budget_ms: 25_000,
        ..Options::default()
    })
    .await?;
    let names: Vec<String> = (0..ACCOUNTS).map(|i| format!("stkill{i:03}")).collect();
    let ids: Vec<String> = names.iter().map(|n| account_id("rg-mmk-kill", n)).collect();
    // On customer-managed keys where Microsoft-managed ones are required: each is reverted.
    let docs: Vec<Value> = names
        .iter()
        .map(|n| storage_account("rg-mmk-kill", n, Some(APPROVED_VAULT), json!({})))
        .collect();
    env.seed(Value::Array(docs)).await?;
    for id in &ids {
        env.act_as_user(id, json!({"tags": {"touched": "yes"}})).await?;
    }
    let all_events = env.events().await?;
    let events: Vec<Value> = ids
        .iter()
        .map(|id| {
            all_events
                .iter()
                .find(|e| e["subject"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(id)))
                .cloned()
                .context_none("an event per account")
        })
        .collect::<anyhow::Result<_>>()?;

    let acknowledged = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let events = Arc::new(events);
    let mut workers = Vec::new();
    for _ in 0..64 {
        let (http, base) = (env.http.clone(), env.handler.clone());
        let (events, next, acknowledged) = (events.clone(), next.clone(), acknowledged.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(event) = events.get(i) else { return };
                // After the kill the answer is a dropped connection: not acknowledged.
                if let Ok((200, body)) = post_event(&http, &base, event).await
                    && body["ReturnValue"]["result"] == "reverted"
                {
                    let id = event["subject"].as_str().unwrap_or_default().to_ascii_lowercase();
                    acknowledged.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                }
            }
        }));
    }
    env.wait_for(Duration::from_secs(60), "the first acknowledged reverts", || async {
        Ok(acknowledged.lock().unwrap_or_else(|p| p.into_inner()).len() >= KILL_AFTER)
    })
    .await?;
    env.kill_handler();
    for worker in workers {
        worker.await?;
    }
    let acknowledged = acknowledged.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(acknowledged.len() < ACCOUNTS, "killed while deliveries were in flight");

    // The store as the killed process left it, opened again by the CLI.
    let reverted_in = |records: &[Value]| -> BTreeMap<String, BTreeSet<String>> {
        let mut by_resource: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in records.iter().filter(|r| r["result"] == "reverted") {
            let resource = r["resourceId"].as_str().unwrap_or_default().to_ascii_lowercase();
            let id = r["id"].as_str().unwrap_or_default().to_string();
            by_resource.entry(resource).or_default().insert(id);
        }
        by_resource
    };
    let timeline = reverted_in(&persisted_audit(&env, &["--limit", "10000"])?);
    for id in &acknowledged {
        assert_eq!(
            timeline.get(id).map(BTreeSet::len),
            Some(1),
            "an acknowledged revert of {id} is in the trail"
        );
    }
    for id in &ids {
        let trail = reverted_in(&persisted_audit(&env, &["--resource", id])?);
        let key = id.to_ascii_lowercase();
        assert_eq!(
            trail.get(&key),
            timeline.get(&key),
            "{id}: in its trail and the timeline alike, or in neither"
        );
    }

    // Restarted, keyguard takes every delivery again: each drift ends with one revert record.
    env.start_handler().await?;
    for event in events.iter() {
        let (status, body) = post_event(&env.http, &env.handler, event).await?;
        assert_eq!(status, 200, "{body}");
    }
    env.kill_handler();
    let after = reverted_in(&persisted_audit(&env, &["--limit", "10000"])?);
    for id in &ids {
        assert_eq!(
            after.get(&id.to_ascii_lowercase()).map(BTreeSet::len),
            Some(1),
            "{id}: exactly one revert record"
        );
        assert_eq!(env.key_source(id).await?, "Microsoft.Storage", "{id}");
    }
    eprintln!(
        "group commit crash test: {} of {ACCOUNTS} reverts acknowledged before the kill, {} recorded",
        acknowledged.len(),
        timeline.len()
    );
    Ok(())
}
