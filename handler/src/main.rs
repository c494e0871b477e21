//! `keyguard`: keeps Azure encryption at rest on the key source a profile decides (CMK or MMK).

mod alerting;
mod arm;
mod audit;
mod cli_scan;
#[cfg(feature = "sim")]
mod demo;
mod egress;
mod http;
mod identity;
mod infra_cli;
mod instance;
mod keyvault;
mod outbox;
mod pipeline;
mod settings;
mod store;
mod sweep;
#[cfg(test)]
mod test_support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use functions_runtime::{HostEnv, LogFormat};
use keyguard_core::ResourceId;

use crate::http::AppState;
use crate::pipeline::Trigger;
use crate::settings::Settings;

#[derive(Parser)]
#[command(
    name = "keyguard",
    version,
    about = "Detects and reverts Azure encryption key-source drift (CMK/MMK)"
)]
struct Cli {
    /// Log format; JSON is the default under the Functions host, text elsewhere.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// Run as the Azure Functions custom handler (port from FUNCTIONS_CUSTOMHANDLER_PORT).
    Serve {
        /// Port to use when not started by the Functions host.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Receive Event Grid directly as a webhook at /api/events (no Functions host).
    Webhook {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to bind; put a TLS-terminating proxy in front (Event Grid only calls HTTPS).
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// Serve every route to anyone, without authentication (local development only; needs a
        /// loopback --bind and no configured credential; logs a warning on every request).
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Evaluate one resource now and print the finding (read-only unless --remediate).
    /// Exit code: 0 compliant, 1 drift, 2 error.
    Check {
        resource_id: String,
        /// Apply the profile's mode (may revert in enforce mode). Without it nothing is written.
        #[arg(long)]
        remediate: bool,
        #[command(flatten)]
        report: cli_scan::ReportArgs,
    },
    /// Sweep a subscription, resource group or management group (or evaluate Azure CLI exports
    /// with --from-file, offline). Applies the profiles' modes unless --dry-run.
    /// Exit code: 0 compliant (exempt included), 1 drift found, 2 error or unfinished sweep.
    Scan {
        #[arg(long, value_name = "ID")]
        subscription: Option<String>,
        /// Only this resource group of --subscription.
        #[arg(long, value_name = "NAME", requires = "subscription")]
        resource_group: Option<String>,
        #[arg(long, value_name = "NAME", conflicts_with = "subscription")]
        management_group: Option<String>,
        /// Only these catalog types (repeatable), e.g. Microsoft.Storage/storageAccounts.
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// Decide and report, but write nothing to ARM.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        report: cli_scan::ReportArgs,
        /// Evaluate an Azure CLI export instead of calling Azure (repeatable; see the README).
        #[arg(long = "from-file", value_name = "FILE", conflicts_with_all = ["subscription", "management_group"])]
        from_file: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        listing: sweep::Listing,
        /// Continue an earlier sweep of the same scope that stopped at its time budget.
        #[arg(long)]
        resume: bool,
        /// Stop cleanly after this long (90s, 10m, 2h) and leave a checkpoint for --resume.
        #[arg(long, default_value = "1h", value_parser = cli_scan::parse_budget)]
        time_budget: std::time::Duration,
    },
    /// Run the local Azure stand-in (ARM, managed identity, Event Grid delivery).
    #[cfg(feature = "sim")]
    Sim(azure_sim::SimArgs),
    /// Run the whole loop locally against the stand-in and show what keyguard does.
    #[cfg(feature = "sim")]
    Demo {
        /// Folder for the demo's state, configuration and logs (default: a new temp folder).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print the catalog of resource types keyguard knows: key-source field, MMK/CMK values,
    /// what can be reverted, CIS mapping.
    Catalog {
        #[arg(long, value_enum, default_value = "table")]
        format: CatalogFormat,
    },
    /// Deployment files derived from the catalog (custom role, Event Grid filters, policy ids).
    Infra(infra_cli::InfraArgs),
    /// The alert outbox: queued, sent and parked alerts.
    Alerts {
        /// Only alerts that could not be delivered and were parked.
        #[arg(long)]
        failed: bool,
        /// Put a parked alert back in the queue and try to send it now.
        #[arg(long, value_name = "ID")]
        resend: Option<String>,
    },
    /// The audit trail: what keyguard saw, decided and did, oldest first.
    Audit {
        /// Only this resource's records.
        #[arg(long, value_name = "ID")]
        resource: Option<String>,
        /// From this time: RFC 3339, or an age such as 24h or 7d.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Up to this time (same forms as --since).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// At most this many records, the newest (default 1000, at most 10000).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value = "table")]
        format: audit::AuditFormat,
    },
    /// The known-good key a resource is reverted to.
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
    },
    /// State store commands.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Alert channel commands.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Print the recorded baseline (key, when, observed or set by hand).
    Show { resource_id: String },
    /// Set the baseline by hand, e.g. for a resource first seen already drifted.
    Set {
        resource_id: String,
        /// The Key Vault key: https://<vault>.vault.azure.net/keys/<name>[/<version>]
        #[arg(long, value_name = "URI")]
        key: String,
        /// A user-assigned identity the resource uses to reach the key (its resource id).
        #[arg(long, value_name = "ID")]
        identity: Option<String>,
        /// Who sets it, for the record (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Which store is configured, and whether it answers.
    Check,
    /// Time the store calls of one event (compliant, and reverted drift) on the configured
    /// store, with throw-away resource ids; prints median and p95 per event as JSON.
    Bench {
        #[arg(long, default_value_t = 1000)]
        events: usize,
    },
}

#[derive(Subcommand)]
enum AlertCommand {
    /// Send a sample alert through one route, to check its set-up end to end.
    Test {
        #[arg(long)]
        route: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CatalogFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a profile file (default: $KEYGUARD_CONFIG) and print the profiles.
    Validate { path: Option<PathBuf> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let host = HostEnv::from_env();
    let format = match cli.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => LogFormat::detect(&host),
    };
    functions_runtime::init_tracing(format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command, host)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command, host: HostEnv) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { port } => {
            let settings = Settings::from_env()?;
            let port = host
                .port
                .or(port)
                .context("no port: set FUNCTIONS_CUSTOMHANDLER_PORT or pass --port")?;
            let launch = http::auth::launch::Launch::Serve {
                under_functions_host: host.port.is_some(),
            };
            let state = app_state(&settings, launch).await?;
            tracing::info!(port, config = %settings.config_source, store = %settings.store.describe(), dry_run = settings.dry_run, "keyguard custom handler starting");
            let store = state.pipeline.store().clone();
            functions_runtime::serve(http::functions_router(state), port).await?;
            store.flush().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Webhook {
            port,
            bind,
            insecure_no_auth,
        } => {
            let settings = Settings::from_env()?;
            let launch = http::auth::launch::Launch::Webhook { bind, insecure_no_auth };
            let state = app_state(&settings, launch).await?;
            let listener = tokio::net::TcpListener::bind((bind, port)).await?;
            tracing::info!(addr = %listener.local_addr()?, "keyguard webhook listening on /api/events");
            let store = state.pipeline.store().clone();
            functions_runtime::serve_listener(
                http::webhook_router(state),
                listener,
                functions_runtime::shutdown_signal(),
            )
            .await?;
            store.flush().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            resource_id,
            remediate,
            report:
                cli_scan::ReportArgs {
                    require,
                    format,
                    output,
                },
        } => {
            let id = ResourceId::parse(&resource_id).map_err(|e| anyhow::anyhow!("{resource_id}: {e}"))?;
            let mut settings = Settings::from_env()?;
            cli_scan::apply_requirement(&mut settings.config, require);
            let pipeline = settings.build_pipeline().await?;
            let correlation_id = uuid::Uuid::new_v4().to_string();
            let finding = match pipeline
                .reconcile(&id, Trigger::Manual, &correlation_id, !remediate)
                .await
            {
                Ok(outcome) => outcome.finding.unwrap_or_else(|| {
                    let mut f = keyguard_report::Finding::error(
                        id.as_str(),
                        &id.resource_type(),
                        &format!("{}: {}", outcome.result, outcome.detail.clone().unwrap_or_default()),
                    );
                    f.result = Some(outcome.result.clone());
                    f
                }),
                Err(e) => keyguard_report::Finding::error(id.as_str(), &id.resource_type(), &e.to_string()),
            };
            pipeline.store().flush().await?;
            cli_scan::deliver(&[finding], format, output.as_deref(), id.as_str(), !remediate)
        }
        Command::Scan {
            subscription,
            resource_group,
            management_group,
            types,
            dry_run,
            report:
                cli_scan::ReportArgs {
                    require,
                    format,
                    output,
                },
            from_file,
            listing,
            resume,
            time_budget,
        } => {
            let mut settings = Settings::from_env()?;
            cli_scan::apply_requirement(&mut settings.config, require);
            if !from_file.is_empty() {
                let findings = cli_scan::offline_findings(&from_file, &settings.config)?;
                let names: Vec<String> = from_file.iter().map(|f| f.display().to_string()).collect();
                return cli_scan::deliver(&findings, format, output.as_deref(), &names.join(", "), true);
            }
            let scope = match (subscription, resource_group, management_group) {
                (Some(s), Some(g), None) => format!("/subscriptions/{s}/resourceGroups/{g}"),
                (Some(s), None, None) => format!("/subscriptions/{s}"),
                (None, None, Some(m)) => format!("/providers/Microsoft.Management/managementGroups/{m}"),
                _ => anyhow::bail!(
                    "give --subscription (with an optional --resource-group), --management-group, or --from-file"
                ),
            };
            let scope = sweep::Scope::parse(&scope).map_err(|e| anyhow::anyhow!(e))?;
            let pipeline = settings.build_pipeline().await?;
            let request = sweep::ScanRequest {
                scope,
                types,
                dry_run: dry_run || require.is_some(),
                listing,
                resume,
                budget: time_budget,
            };
            let progress = cli_scan::Progress::new();
            let report = sweep::scan(&pipeline, &request, &|state| progress.update(state)).await;
            progress.finish();
            let report = report?;
            eprintln!(
                "{}{}: {} listed in {} page(s), {} evaluated, {} ARM request(s), {} throttled, {} ms{}",
                report.scope,
                if report.resumed { " (resumed)" } else { "" },
                report.listed,
                report.pages,
                report.evaluated,
                report.requests,
                report.throttled,
                report.duration_ms,
                if report.complete {
                    ""
                } else {
                    " — UNFINISHED: run again with --resume"
                }
            );
            let code = cli_scan::deliver(
                &report.findings,
                format,
                output.as_deref(),
                &report.scope,
                request.dry_run,
            )?;
            Ok(if report.complete { code } else { ExitCode::from(2) })
        }
        Command::Alerts { failed, resend } => {
            let settings = Settings::from_env()?;
            let pipeline = settings.build_pipeline().await?;
            if let Some(id) = resend {
                let alerter = pipeline.alerter().context("no alert routes are configured")?;
                if !alerter.dispatcher().resend(&id).await? {
                    anyhow::bail!("{id} is not a parked alert");
                }
                let report = alerter.dispatcher().run_due(time::OffsetDateTime::now_utc()).await?;
                println!(
                    "{id}: re-queued; sent {}, retrying {}, parked {}",
                    report.sent, report.retried, report.parked
                );
                return Ok(ExitCode::SUCCESS);
            }
            let entries: Vec<store::OutboxEntry> = pipeline
                .store()
                .outbox_entries()
                .await?
                .into_iter()
                .map(|v| v.value)
                .collect();
            let shown: Vec<_> = entries
                .iter()
                .filter(|e| !failed || e.status == store::OutboxStatus::Parked)
                .collect();
            for e in &shown {
                println!(
                    "{}  {:<8} {:<10} attempts {:<3} {}  {}{}",
                    e.id,
                    format!("{:?}", e.status).to_lowercase(),
                    e.route,
                    e.attempts,
                    e.alert.resource_name,
                    e.alert.title(),
                    e.last_error.as_deref().map(|m| format!("  [{m}]")).unwrap_or_default()
                );
            }
            println!("{} of {} outbox entries", shown.len(), entries.len());
            Ok(if failed && !shown.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Audit {
            resource,
            since,
            until,
            limit,
            format,
        } => {
            let query = audit::query_from(
                resource.as_deref(),
                since.as_deref(),
                until.as_deref(),
                limit,
                time::OffsetDateTime::now_utc(),
            )
            .map_err(|e| anyhow::anyhow!(e))?;
            let store = open_store().await?;
            let records: Vec<pipeline::AuditRecord> = store.audit_records(&query).await?;
            print!("{}", audit::render(&records, format).map_err(|e| anyhow::anyhow!(e))?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Baseline {
            command: BaselineCommand::Show { resource_id },
        } => {
            let id = ResourceId::parse(&resource_id).map_err(|e| anyhow::anyhow!("{resource_id}: {e}"))?;
            let store = open_store().await?;
            match store.baseline(&id).await? {
                Some(baseline) => {
                    println!("{}", serde_json::to_string_pretty(&baseline)?);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("{id}: no baseline recorded (it is recorded when the resource is read compliant)");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Baseline {
            command:
                BaselineCommand::Set {
                    resource_id,
                    key,
                    identity,
                    by,
                },
        } => {
            let id = ResourceId::parse(&resource_id).map_err(|e| anyhow::anyhow!("{resource_id}: {e}"))?;
            if let Some(identity) = &identity {
                ResourceId::parse(identity).map_err(|e| anyhow::anyhow!("--identity {identity}: {e}"))?;
            }
            let key_ref = keyguard_core::KeyRef::from_key_uri(&key, identity.as_deref()).with_context(|| {
                format!(
                    "--key {key:?} is not a Key Vault key URI (https://<vault>.vault.azure.net/keys/<name>[/<version>])"
                )
            })?;
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            let store = open_store().await?;
            let now = time::OffsetDateTime::now_utc();
            let written = store
                .record_baseline(&id, &key_ref, store::BaselineSource::Manual, Some(&by), now)
                .await?;
            let baseline = store
                .baseline(&id)
                .await?
                .context("the baseline vanished after writing it")?;
            println!("{}", serde_json::to_string_pretty(&baseline)?);
            if written == store::BaselineWrite::Unchanged {
                eprintln!("{id}: that baseline was already set");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Store {
            command: StoreCommand::Check,
        } => {
            let store = open_store().await?;
            store.ping().await?;
            println!("{}: reachable", store.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Store {
            command: StoreCommand::Bench { events },
        } => {
            let store = open_store().await?;
            let report = store::bench::run(&store, events.max(1)).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Alert {
            command: AlertCommand::Test { route },
        } => {
            let settings = Settings::from_env()?;
            let channels = alerting::ConfiguredChannels::from_config(&settings.config, |k| std::env::var(k).ok())?;
            let channel = outbox::ChannelResolver::channel(&channels, &route, &[])
                .map_err(|e| anyhow::anyhow!("{e} (configured: {})", channels.route_names().join(", ")))?;
            channel
                .send(&keyguard_notify::Alert::sample())
                .await
                .map_err(|e| anyhow::anyhow!("route {route}: {e}"))?;
            println!("route {route}: sample alert delivered");
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "sim")]
        Command::Sim(args) => {
            azure_sim::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "sim")]
        Command::Demo { output } => demo::run(output).await,
        Command::Infra(args) => infra_cli::run(args),
        Command::Catalog { format } => {
            let rows = keyguard_core::catalog::catalog_table();
            match format {
                CatalogFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                CatalogFormat::Table => {
                    println!(
                        "{:<48} {:<58} {:<34} {:<40} {:<24} {:<24} CIS (L1 / L2)",
                        "TYPE", "KEY SOURCE", "MMK", "CMK", "TO CMK", "TO MMK"
                    );
                    for r in &rows {
                        println!(
                            "{:<48} {:<58} {:<34} {:<40} {:<24} {:<24} {} / {}",
                            r.resource_type, r.key_source, r.mmk, r.cmk, r.to_cmk, r.to_mmk, r.cis_level1, r.cis_level2
                        );
                    }
                    println!("{} types", rows.len());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Validate { path },
        } => {
            let path = path
                .or_else(|| std::env::var_os("KEYGUARD_CONFIG").map(PathBuf::from))
                .context("give a path or set KEYGUARD_CONFIG")?;
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let config = keyguard_core::config::Config::from_toml_str(&text, &path.display().to_string())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for p in &config.profiles {
                println!("profile {:<24} require {:?}, mode {:?}", p.name, p.require, p.mode);
            }
            let settings = &config.settings;
            let tag_exemptions = if settings.tag_exemptions {
                format!("tag exemptions on, at most {} days ahead", settings.max_exemption_days)
            } else {
                "tag exemptions off".to_string()
            };
            println!(
                "{}: ok ({} profiles, {} exemptions, {tag_exemptions})",
                path.display(),
                config.profiles.len(),
                config.exemptions.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The configured state store alone (no ARM credential needed beyond Table Storage's).
async fn open_store() -> anyhow::Result<store::StateStore> {
    let settings = Settings::from_env()?;
    settings
        .store
        .open(settings.egress()?)
        .await
        .with_context(|| format!("cannot open the state store ({})", settings.store.describe()))
}

/// Builds the authenticators for the command (`launch`) and the pipeline and, when alert routes
/// are configured, starts the outbox sender. A credential setting that is missing or unusable
/// stops start-up here, before anything listens.
async fn app_state(settings: &Settings, launch: http::auth::launch::Launch) -> anyhow::Result<AppState> {
    let modes = http::auth::launch::AccessModes::from_lookup(|name| std::env::var(name).ok(), launch)?;
    let auth = modes.authenticators(settings.http_client()?);
    let pipeline = Arc::new(settings.build_pipeline().await?);
    if let Some(alerter) = pipeline.alerter() {
        tokio::spawn(
            alerter
                .dispatcher()
                .clone()
                .run_forever(std::time::Duration::from_secs(5)),
        );
    }
    Ok(AppState {
        pipeline,
        auth: auth.api,
        events_auth: auth.events,
        dry_run: settings.dry_run,
    })
}
