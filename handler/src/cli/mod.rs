//! The command line. `args` says what can be typed; each command family has its own file; `run`
//! sends a parsed command to it. Decisions stay in the reconcile, the sweep and the core: these
//! files read input, call them and print.

mod alerts;
mod args;
mod audit;
mod baseline;
mod catalog;
mod check;
mod config;
mod infra;
// `POST /api/scan` takes the same `require` as `--require` (app.rs).
pub mod report;
mod scan;
mod serve;
mod store;

use std::process::ExitCode;

use anyhow::Context as _;
use functions_runtime::HostEnv;

use args::Command;
pub use args::{Cli, LogFormatArg};

use crate::environment::Environment;

/// Runs one parsed command and returns its exit code; `main` prints an error and exits 2.
pub async fn run(command: Command, host: HostEnv) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { port } => serve::serve(port, host).await,
        Command::Webhook(args) => serve::webhook(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Scan(args) => scan::run(args).await,
        Command::Alerts(args) => alerts::show_outbox(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Baseline { command } => baseline::run(command).await,
        Command::Store { command } => store::run(command).await,
        Command::Alert { command } => alerts::alert(command).await,
        #[cfg(feature = "sim")]
        Command::Sim(args) => {
            azure_sim::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "sim")]
        Command::Demo { output } => crate::demo::run(output).await,
        Command::Infra(args) => infra::run(args),
        Command::Catalog { format } => catalog::run(format),
        Command::Config { command } => config::run(command),
    }
}

/// The configured state store alone (no ARM credential needed beyond Table Storage's).
async fn open_store() -> anyhow::Result<crate::store::StateStore> {
    let settings = Environment::from_env()?;
    settings
        .store
        .open(settings.egress()?)
        .await
        .with_context(|| format!("cannot open the state store ({})", settings.store.describe()))
}
