//! `keyguard`: keeps Azure encryption at rest on the key source a profile decides (CMK or MMK).
//! This file sets up logging and the async runtime, parses the command line and hands the command
//! to `cli::run`.

mod alerting;
#[cfg(test)]
mod architecture_tests;
mod arm;
mod audit;
mod cli;
#[cfg(feature = "sim")]
mod demo;
mod egress;
mod environment;
mod estate;
mod http;
mod identity;
mod instance;
mod keyvault;
mod outbox;
mod reconcile;
mod startup;
mod store;
mod sweep;
#[cfg(test)]
mod test_support;

use std::process::ExitCode;

use clap::Parser;
use functions_runtime::{HostEnv, LogFormat};

use crate::cli::{Cli, LogFormatArg};

/// The embedded store runs each of its calls on tokio's blocking pool. Left at tokio's default
/// (512), a burst of concurrent events starts a thread per call, and every new thread adds its
/// stack and a glibc malloc arena to the resident set (issue 14, item 5); the store's writes are
/// serialised by redb anyway, so a few threads serve a burst as fast as hundreds.
const MAX_BLOCKING_THREADS: usize = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let host = HostEnv::from_env();
    let format = match cli.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => LogFormat::detect(&host),
    };
    functions_runtime::init_tracing(format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(cli.command, host)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
