//! Run with: `cargo run -p sfop-example-payment-app` (with the platform
//! running: `cargo xtask serve` in another terminal).
//!
//! A fintech payment app's journey on the open-banking platform: connect the
//! user's accounts (OAuth 2.0 + PKCE, signing in as `hong` / `hong1234`), list
//! them, show balance and history, pay by QR (withdraw), refund (deposit) and
//! reconcile (transfer result). See `src/lib.rs` for the steps and the APIs.
//!
//! Options: `--url` (default `https://127.0.0.1:8443`), `--data-dir`
//! (default `sfop-data`: the platform's certificate and the demo app's
//! credentials), `--user`/`--password`, `--qr`; `--help` lists them all.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use payment_app::{AppCredentials, DEFAULT_QR, DEMO_CONTRACT_ACCOUNT, Options};

#[derive(Parser)]
#[command(
    name = "payment-app",
    about = "Example fintech payment app: authorize, accounts, balance, pay by QR, refund, reconcile"
)]
struct Args {
    /// The platform's base URL.
    #[arg(long, env = "SFOP_URL", default_value = "https://127.0.0.1:8443")]
    url: String,
    /// The platform's data dir: its certificate (tls/cert.pem) and the demo
    /// app's credentials (demo-client.json).
    #[arg(long, env = "SFOP_DATA_DIR", default_value = "sfop-data")]
    data_dir: PathBuf,
    /// Certificate to trust [default: DATA_DIR/tls/cert.pem].
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// The app's credentials [default: DATA_DIR/demo-client.json].
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// The bank user who signs in.
    #[arg(long, default_value = "hong")]
    user: String,
    /// Their password.
    #[arg(long, default_value = "hong1234")]
    password: String,
    /// The scanned QR code: sfop-pay:v1?merchant=NAME&amount=WON[&item=TEXT][&bank=CODE&account=NUM].
    #[arg(long, default_value = DEFAULT_QR)]
    qr: String,
    /// The account to pay from: a bank code (e.g. 088) or a fintech_use_num
    /// [default: the demand-deposit account with the highest balance].
    #[arg(long)]
    pay_from: Option<String>,
    /// The app's contract account, where payments land and refunds leave.
    #[arg(long, default_value = DEMO_CONTRACT_ACCOUNT)]
    contract_account: String,
    /// The contract account's withdrawal pass phrase.
    #[arg(long, default_value = "NONE")]
    wd_pass_phrase: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(journey(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn journey(args: Args) -> anyhow::Result<()> {
    let credentials = args
        .credentials
        .unwrap_or_else(|| args.data_dir.join("demo-client.json"));
    let options = Options {
        url: args.url,
        cacert: args
            .cacert
            .unwrap_or_else(|| args.data_dir.join("tls/cert.pem")),
        app: AppCredentials::load(&credentials)?,
        login_id: args.user,
        password: args.password,
        qr: args.qr,
        contract_account: args.contract_account,
        wd_pass_phrase: args.wd_pass_phrase,
        pay_from: args.pay_from,
    };
    payment_app::run(&options, &mut std::io::stdout()).await?;
    Ok(())
}
