//! Run with: `cargo run -p sfop-example-bank-backend -- --api-key demo-key`
//!
//! A stand-in core-banking system on `https://127.0.0.1:9443`. It writes its
//! certificate to `--cert-out` (default `bank-backend.pem`) for the
//! platform's `[outbound] ca`; then give the `core-balance` plugin
//! `allowed_hosts = ["https://127.0.0.1:9443"]` and the operator's values
//! `[variables."core-balance"] core_url = "https://127.0.0.1:9443"` and
//! `core_api_key = "demo-key"` (README, "Calling your bank's own backend").

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(about = "A stand-in core-banking system for plugins' http capability")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// The bearer key callers must present.
    #[arg(long, env = "BANK_BACKEND_API_KEY")]
    api_key: String,
    /// Where to write the certificate (PEM) to trust.
    #[arg(long, default_value = "bank-backend.pem")]
    cert_out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let backend = bank_backend::start(args.listen, args.api_key).await?;
    std::fs::write(&args.cert_out, &backend.cert_pem)?;
    println!(
        "core banking on https://{} (certificate: {})",
        backend.addr,
        args.cert_out.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
