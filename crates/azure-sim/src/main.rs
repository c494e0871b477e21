//! `azure-sim`: runs the simulator as a standalone process (for `keyguard demo`, manual
//! experiments and end-to-end tests that need separate processes).

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "azure-sim",
    version,
    about = "Local stand-in for ARM (storage accounts), the App Service managed-identity endpoint and Event Grid delivery"
)]
struct Cli {
    #[command(flatten)]
    sim: azure_sim::SimArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    azure_sim::run(Cli::parse().sim).await
}
