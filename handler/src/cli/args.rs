//! What can be typed: the clap definitions of every command, flag and help text. The command
//! bodies are in the sibling files; `super::run` connects the two.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::infra::InfraArgs;
use super::report::ReportArgs;
use crate::{audit, sweep};

#[derive(Parser)]
#[command(
    name = "keyguard",
    version,
    about = "Detects and reverts Azure encryption key-source drift (CMK/MMK)"
)]
pub struct Cli {
    /// Log format; JSON is the default under the Functions host, text elsewhere.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Json,
    Text,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run as the Azure Functions custom handler (port from FUNCTIONS_CUSTOMHANDLER_PORT).
    Serve {
        /// Port to use when not started by the Functions host.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Receive Event Grid directly as a webhook at /api/events (no Functions host).
    Webhook(WebhookArgs),
    /// Evaluate one resource now and print the finding (read-only unless --remediate).
    /// Exit code: 0 compliant, 1 drift, 2 error.
    Check(CheckArgs),
    /// Sweep a subscription, resource group or management group (or evaluate Azure CLI exports
    /// with --from-file, offline). Applies the profiles' modes unless --dry-run.
    /// Exit code: 0 compliant (exempt included), 1 drift found, 2 error or unfinished sweep.
    Scan(ScanArgs),
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
    Infra(InfraArgs),
    /// The alert outbox: queued, sent and parked alerts.
    Alerts(AlertsArgs),
    /// The audit trail: what keyguard saw, decided and did, oldest first.
    Audit(AuditArgs),
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
pub enum BaselineCommand {
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
pub enum StoreCommand {
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
pub enum AlertCommand {
    /// Send a sample alert through one route, to check its set-up end to end.
    Test {
        #[arg(long)]
        route: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CatalogFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a profile file (default: $KEYGUARD_CONFIG) and print the profiles.
    Validate { path: Option<PathBuf> },
}

// The commands with several flags take them as one struct, so their bodies get named fields. These
// structs carry no doc comment: the variant's doc is the command's help, as it was.

#[derive(Args)]
pub struct WebhookArgs {
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind; put a TLS-terminating proxy in front (Event Grid only calls HTTPS).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Serve every route to anyone, without authentication (local development only; needs a
    /// loopback --bind and no configured credential; logs a warning on every request).
    #[arg(long)]
    pub insecure_no_auth: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    pub resource_id: String,
    /// Apply the profile's mode (may revert in enforce mode). Without it nothing is written.
    #[arg(long)]
    pub remediate: bool,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Args)]
pub struct ScanArgs {
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
    /// Only this resource group of --subscription.
    #[arg(long, value_name = "NAME", requires = "subscription")]
    pub resource_group: Option<String>,
    #[arg(long, value_name = "NAME", conflicts_with = "subscription")]
    pub management_group: Option<String>,
    /// Only these catalog types (repeatable), e.g. Microsoft.Storage/storageAccounts.
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Decide and report, but write nothing to ARM.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub report: ReportArgs,
    /// Evaluate an Azure CLI export instead of calling Azure (repeatable; see the README).
    #[arg(long = "from-file", value_name = "FILE", conflicts_with_all = ["subscription", "management_group"])]
    pub from_file: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub listing: sweep::Listing,
    /// Continue an earlier sweep of the same scope that stopped at its time budget.
    #[arg(long)]
    pub resume: bool,
    /// Stop cleanly after this long (90s, 10m, 2h) and leave a checkpoint for --resume.
    #[arg(long, default_value = "1h", value_parser = super::scan::parse_budget)]
    pub time_budget: std::time::Duration,
}

#[derive(Args)]
pub struct AlertsArgs {
    /// Only alerts that could not be delivered and were parked.
    #[arg(long)]
    pub failed: bool,
    /// Put a parked alert back in the queue and try to send it now.
    #[arg(long, value_name = "ID")]
    pub resend: Option<String>,
}

#[derive(Args)]
pub struct AuditArgs {
    /// Only this resource's records.
    #[arg(long, value_name = "ID")]
    pub resource: Option<String>,
    /// From this time: RFC 3339, or an age such as 24h or 7d.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Up to this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// At most this many records, the newest (default 1000, at most 10000).
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: audit::AuditFormat,
}
