//! `sfop`: the platform's command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sfop::{LoadOutcome, ServeConfig};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "sfop",
    version,
    about = "Secure open platform for fintech services (ITU-T X.1149)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with the embedded defaults (sled store, virtual bank).
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "SFOP_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Folder of API packages (one sub-folder each, with sfop.toml and api.wasm).
        #[arg(long, env = "SFOP_PLUGINS", default_value = "target/sfop-plugins/api")]
        plugins: PathBuf,
        /// Folder of the embedded store.
        #[arg(long, env = "SFOP_DATA_DIR", default_value = "sfop-data")]
        data_dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SFOP_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            listen,
            plugins,
            data_dir,
        } => {
            serve(ServeConfig {
                listen,
                plugins,
                data_dir,
            })
            .await
        }
    }
}

async fn serve(config: ServeConfig) -> Result<()> {
    let platform = sfop::start(config).await?;
    let live = platform
        .packages
        .iter()
        .filter(|p| matches!(p.outcome, LoadOutcome::Live { .. }))
        .count();
    // One line on stdout, for people and for scripts that wait for readiness.
    println!(
        "sfop gateway listening on {} ({live} of {} API packages live)",
        sfop_gateway::url(platform.local_addr),
        platform.packages.len()
    );
    tokio::signal::ctrl_c().await?;
    eprintln!("shutting down: finishing open requests");
    platform.stop().await
}
