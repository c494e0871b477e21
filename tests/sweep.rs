//! The sweep, end to end: `keyguard scan` against azure-sim's Resource Graph and ARM list calls,
//! with paging and throttling on, over thousands of bulk-seeded resources whose drifted ids the
//! seeder reports, so "every drift found" is checked id by id.

use std::collections::BTreeSet;

use keyguard_e2e::*;
use serde_json::{Value, json};

/// The stand-in with keyguard stopped: scans run from the command line, as an operator would with
/// the service stopped (the embedded store serves one process).
async fn cli_env() -> anyhow::Result<Env> {
    let mut env = Env::start(Options {
        no_delivery: true,
        ..Options::default()
    })
    .await?;
    env.kill_handler();
    Ok(env)
}

/// Seeds `per_type` resources of each type under the CMK-enforce profile's groups, every
/// `drift_every`-th of them on Microsoft-managed keys; returns the drifted ids (lower case).
async fn seed(env: &Env, per_type: Value, drift_every: usize) -> anyhow::Result<BTreeSet<String>> {
    let answer: Value = env
        .http
        .post(format!("{}/_sim/seed/bulk", env.sim))
        .json(&json!({
            "subscription": SUBSCRIPTION,
            "resourceGroups": 10,
            "resourceGroupPrefix": "rg-cmk-sweep",
            "perType": per_type,
            "driftEvery": drift_every,
            "expect": "cmk",
            "vault": APPROVED_VAULT,
        }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer["drifted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_ascii_lowercase)
        .collect())
}

async fn set_throttle(env: &Env, graph: (u32, u64), arm_reads: (u32, u64)) -> anyhow::Result<()> {
    env.http
        .put(format!("{}/_sim/throttle", env.sim))
        .json(&json!({
            "graph": {"limit": graph.0, "window_ms": graph.1, "enforce": true},
            "arm_reads": {"limit": arm_reads.0, "window_ms": arm_reads.1, "enforce": true},
            "arm_writes": {"limit": 1200, "window_ms": 3_600_000, "enforce": false},
        }))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Requests in the sim's log by kind (graph, list, read, write, ...), keyguard's only.
async fn request_kinds(env: &Env) -> anyhow::Result<std::collections::BTreeMap<String, usize>> {
    let mut kinds = std::collections::BTreeMap::new();
    for r in env
        .sim_get("/_sim/requests")
        .await?
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if r["principal_oid"].as_str() == Some(KEYGUARD_OID) {
            *kinds.entry(r["kind"].as_str().unwrap_or("?").to_string()).or_insert(0) += 1;
        }
    }
    Ok(kinds)
}

fn scan(env: &Env, args: &[&str]) -> anyhow::Result<(i32, Vec<Value>, String)> {
    scan_as(env, args, false)
}

/// `on_terminal`: run under `script`, which gives keyguard a pseudo-terminal, as a person at a
/// shell would; otherwise stdout and stderr are pipes, as in CI.
fn scan_as(env: &Env, args: &[&str], on_terminal: bool) -> anyhow::Result<(i32, Vec<Value>, String)> {
    let report = env.dir.join(format!("scan-{}.json", std::process::id()));
    let mut all = vec![
        "scan",
        "--format",
        "json",
        "--output",
        report.to_str().unwrap_or_default(),
    ];
    all.extend_from_slice(args);
    let out = if on_terminal {
        let command = std::iter::once(keyguard_bin().display().to_string())
            .chain(all.iter().map(|a| a.to_string()))
            .collect::<Vec<_>>()
            .join(" ");
        env.command("script", &["-qec", &command, "/dev/null"])?
    } else {
        env.keyguard_cli(&all)?
    };
    // Under `script` everything the terminal showed arrives on stdout.
    let stderr = String::from_utf8_lossy(if on_terminal { &out.stdout } else { &out.stderr }).to_string();
    let findings: Vec<Value> = match std::fs::read(&report) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(_) => Vec::new(),
    };
    Ok((out.status.code().unwrap_or(-1), findings, stderr))
}

fn drift_ids(findings: &[Value]) -> BTreeSet<String> {
    findings
        .iter()
        .filter(|f| f["verdict"] == "drift")
        .filter_map(|f| f["resourceId"].as_str().map(str::to_ascii_lowercase))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_resource_sweep_reads_pages_not_resources_and_finds_every_drift() -> anyhow::Result<()> {
    let env = cli_env().await?;
    let drifted = seed(
        &env,
        json!({
            "Microsoft.Storage/storageAccounts": 4000,
            "Microsoft.Compute/disks": 2000,
            "Microsoft.CognitiveServices/accounts": 2000,
            "Microsoft.AppConfiguration/configurationStores": 2000,
        }),
        10,
    )
    .await?;
    assert_eq!(drifted.len(), 1000);
    // Resource Graph allows 3 queries a second here: ten pages must wait for the quota.
    set_throttle(&env, (3, 1000), (12_000, 3_600_000)).await?;
    let started = std::time::Instant::now();
    let (code, findings, stderr) = scan(&env, &["--subscription", SUBSCRIPTION, "--dry-run"])?;
    let elapsed = started.elapsed();
    let kinds = request_kinds(&env).await?;
    eprintln!("10,000-resource sweep: {elapsed:?}, keyguard's requests by kind {kinds:?}\n{stderr}");
    assert_eq!(code, 1, "drift found: {stderr}");
    assert_eq!(findings.len(), 10_000, "{stderr}");
    assert_eq!(drift_ids(&findings), drifted, "every drift, and nothing else");
    assert!(
        stderr.contains("10000 listed in 10 page(s)"),
        "the sweep reports its progress: {stderr}"
    );
    assert!(
        !stderr.contains("/10000 resources") && !stderr.contains("resources evaluated"),
        "no progress bar when piped: {stderr}"
    );
    assert_eq!(kinds.get("graph").copied(), Some(10), "ten pages of 1,000 rows");
    assert_eq!(
        kinds.get("read").copied().unwrap_or(0),
        0,
        "no per-resource GETs: {kinds:?}"
    );
    assert_eq!(kinds.get("write").copied().unwrap_or(0), 0, "a dry run writes nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_resource_graph_the_sweep_follows_arm_next_links_under_throttling() -> anyhow::Result<()> {
    let env = cli_env().await?;
    let drifted = seed(&env, json!({"Microsoft.Storage/storageAccounts": 300}), 7).await?;
    env.http
        .put(format!("{}/_sim/listing", env.sim))
        .json(&json!({"page_size": 40, "management_groups": {}}))
        .send()
        .await?
        .error_for_status()?;
    // Two ARM reads every three seconds: the eight list pages hit 429s, each waited out as
    // Retry-After says.
    set_throttle(&env, (15, 5000), (2, 3000)).await?;
    // At a terminal, as a person would run it: the sweep takes seconds, so a progress bar shows.
    let (code, findings, stderr) = scan_as(
        &env,
        &[
            "--subscription",
            SUBSCRIPTION,
            "--type",
            "Microsoft.Storage/storageAccounts",
            "--listing",
            "arm",
            "--dry-run",
        ],
        true,
    )?;
    assert!(
        stderr.contains("300 resources evaluated"),
        "progress on a terminal: {stderr}"
    );
    let kinds = request_kinds(&env).await?;
    eprintln!("ARM-list sweep: requests by kind {kinds:?}\n{stderr}");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(findings.len(), 300, "{stderr}");
    assert_eq!(drift_ids(&findings), drifted);
    assert!(stderr.contains("in 8 page(s)"), "{stderr}");
    assert!(!stderr.contains(" 0 throttled"), "the quota was hit: {stderr}");
    assert_eq!(kinds.get("graph").copied().unwrap_or(0), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_out_of_time_stops_between_pages_and_resumes_from_its_checkpoint() -> anyhow::Result<()> {
    let env = cli_env().await?;
    let drifted = seed(&env, json!({"Microsoft.Storage/storageAccounts": 2500}), 5).await?;
    // One Resource Graph query every two seconds: a 2 s budget gets one page, maybe two.
    set_throttle(&env, (1, 2000), (12_000, 3_600_000)).await?;
    let (code, first, stderr) = scan(
        &env,
        &["--subscription", SUBSCRIPTION, "--dry-run", "--time-budget", "2s"],
    )?;
    assert_eq!(code, 2, "an unfinished sweep is not a clean result: {stderr}");
    assert!(stderr.contains("UNFINISHED"), "{stderr}");
    assert!(!first.is_empty() && first.len() < 2500, "{} findings", first.len());

    let (code, rest, stderr) = scan(
        &env,
        &[
            "--subscription",
            SUBSCRIPTION,
            "--dry-run",
            "--resume",
            "--time-budget",
            "2m",
        ],
    )?;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("resumed"), "{stderr}");
    let first_ids: BTreeSet<String> = first
        .iter()
        .filter_map(|f| f["resourceId"].as_str().map(str::to_ascii_lowercase))
        .collect();
    let rest_ids: BTreeSet<String> = rest
        .iter()
        .filter_map(|f| f["resourceId"].as_str().map(str::to_ascii_lowercase))
        .collect();
    assert!(
        first_ids.is_disjoint(&rest_ids),
        "pages already done are not read again"
    );
    assert_eq!(first_ids.len() + rest_ids.len(), 2500);
    let mut all = drift_ids(&first);
    all.extend(drift_ids(&rest));
    assert_eq!(all, drifted);

    // The offline audit of a Resource Graph export gives the same verdicts, with no service at all.
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_sweeps_sarif_validates_and_its_html_report_renders_in_chromium() -> anyhow::Result<()> {
    let env = cli_env().await?;
    let drifted = seed(
        &env,
        json!({"Microsoft.Storage/storageAccounts": 60, "Microsoft.Compute/disks": 30}),
        6,
    )
    .await?;
    let artifacts = test_browser::artifacts_dir();
    let sarif = artifacts.join("e2e-scan.sarif");
    let html = artifacts.join("e2e-scan.html");
    for (format, file) in [("sarif", &sarif), ("html", &html)] {
        let out = env.keyguard_cli(&[
            "scan",
            "--subscription",
            SUBSCRIPTION,
            "--dry-run",
            "--format",
            format,
            "--output",
            file.to_str().unwrap_or_default(),
        ])?;
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    }

    // SARIF: valid against the official 2.1.0 schema, one result per drifted resource.
    let validator = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/keyguard-report/tests/node");
    anyhow::ensure!(
        validator.join("node_modules").is_dir(),
        "run `npm ci --prefix crates/keyguard-report/tests/node` (scripts/test.sh does)"
    );
    let check = std::process::Command::new("node")
        .arg(validator.join("validate.mjs"))
        .arg(&sarif)
        .output()?;
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let log: Value = serde_json::from_slice(&std::fs::read(&sarif)?)?;
    let results = log["runs"][0]["results"].as_array().cloned().unwrap_or_default();
    let errors = results.iter().filter(|r| r["level"] == "error").count();
    assert_eq!(errors, drifted.len(), "one error-level result per drift");

    // HTML: rendered by a real browser; the findings table has a row per resource, by verdict.
    let png = artifacts.join("e2e-scan.png");
    let shot = test_browser::screenshot(&html, &png, "1280,1600");
    assert!(shot.len() > 20_000, "a real screenshot: {}", png.display());
    let dom = test_browser::run(&html, &["--dump-dom".into()]);
    let body = &dom[dom.find("id=\"findings\"").unwrap_or(0)..];
    let rows = body.matches("<tr data-verdict=").count();
    let drift_rows = body.matches("<tr data-verdict=\"drift\"").count();
    eprintln!("report: {rows} rows, {drift_rows} drift; screenshot {}", png.display());
    assert_eq!(rows, 90);
    assert_eq!(drift_rows, drifted.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_resource_graph_answers_404_the_auto_listing_sweeps_as_arm_listing_does() -> anyhow::Result<()> {
    let env = cli_env().await?;
    let drifted = seed(
        &env,
        json!({"Microsoft.Storage/storageAccounts": 60, "Microsoft.Compute/disks": 20}),
        7,
    )
    .await?;
    env.add_fault(json!({"path_contains": "Microsoft.ResourceGraph", "status": 404}))
        .await?;
    let (code, auto, stderr) = scan(&env, &["--subscription", SUBSCRIPTION, "--dry-run"])?;
    assert_eq!(code, 1, "drift found, no error: {stderr}");
    let (arm_code, arm, arm_stderr) = scan(&env, &["--subscription", SUBSCRIPTION, "--dry-run", "--listing", "arm"])?;
    assert_eq!(arm_code, 1, "{arm_stderr}");
    assert_eq!(drift_ids(&auto), drifted, "{stderr}");
    assert_eq!(drift_ids(&auto), drift_ids(&arm));
    assert_eq!(auto.len(), arm.len(), "the same resources listed both ways");
    Ok(())
}
