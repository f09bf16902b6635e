//! `sfop`: the platform's command line.

mod cli;
mod scaffold;
mod user_token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use sfop::{AuthMode, Bootstrap, Config, LoadOutcome, TlsMode};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: measured with `cargo xtask
/// bench`, the request path (hyper, biscuit's per-request Datalog world,
/// wasmtime stores) spends a large share of its time in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the gateway. With no configuration: HTTPS on 127.0.0.1:8443 with a
    /// self-signed certificate, sled in ./sfop-data, the virtual bank.
    Serve(ServeArgs),
    /// Manage fintech apps (OAuth clients) on a running platform.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage API packages on a running platform: push, test, promote,
    /// canary, rollback, deprecate, retire.
    Api(ApiArgs),
    /// Read and check the management center's audit log.
    Audit(AuditArgs),
    /// Check an API package before it goes live, and sign the verdict.
    #[command(subcommand)]
    Testbed(sfop::testbed::TestbedCommand),
    /// Script the sandbox's virtual bank per app: faults and fixture answers.
    Sandbox(SandboxArgs),
    /// The root keys that sign tokens, on a running platform: list, rotate,
    /// retire (docs/keys.md).
    Keys(KeysArgs),
    /// Onboard using institutions: create, contract accounts, limits,
    /// approve, suspend (docs/adr/0017-institutions.md).
    Institution(InstitutionArgs),
    /// Access tokens for trying APIs on a running platform (the sandbox).
    Token(TokenArgs),
    /// The virtual bank on its own, as a participant-bank server
    /// (docs/bank-connector.md).
    #[command(subcommand)]
    Bank(BankCommand),
}

#[derive(Subcommand)]
enum BankCommand {
    /// Serve the virtual bank behind the connector contract: HTTPS with a
    /// self-signed certificate unless told otherwise, its own data dir.
    /// Prints `sfop bank listening on <scheme>://<addr>` when ready.
    Serve(BankServeArgs),
}

#[derive(Args)]
struct BankServeArgs {
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    #[arg(long, default_value = "sfop-bank-data")]
    data_dir: PathBuf,
    /// `self-signed` (generated in DATA_DIR/tls), `files` (--tls-cert and
    /// --tls-key), or `off` (cleartext, for tests on loopback only).
    #[arg(long, default_value = "self-signed")]
    tls: String,
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Require a client certificate signed by this CA (mutual TLS).
    #[arg(long)]
    client_ca: Option<PathBuf>,
}

#[derive(Args)]
struct TokenArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// A user's access token through the real 3-legged flow: the CLI signs
    /// in on the authorize page as the user, agrees to every scope asked
    /// for and every account offered, and exchanges the code with PKCE.
    /// Prints the access token.
    User {
        /// The user's sign-in id, e.g. hong.
        #[arg(long)]
        login: String,
        /// Their password [default: a seeded virtual-bank user's].
        #[arg(long, env = "SFOP_USER_PASSWORD")]
        password: Option<String>,
        /// The app (OAuth client) the token is for.
        #[arg(long, default_value = "sfop-demo-client")]
        client: String,
        /// Its secret [default: DATA_DIR/demo-client.json's for the demo
        /// app; none for a public client].
        #[arg(long, env = "SFOP_CLIENT_SECRET")]
        client_secret: Option<String>,
        /// A registered redirect URI [default: the client's first].
        #[arg(long)]
        redirect_uri: Option<String>,
        /// login, inquiry or transfer (repeat for several) [default: every
        /// one the client may ask for].
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

#[derive(Args)]
struct InstitutionArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: cli::InstitutionCommand,
}

#[derive(Args)]
struct KeysArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Every root key: id, status (current, active, retired), public key.
    List,
    /// A new key signs from now on; tokens signed by older keys keep verifying.
    Rotate,
    /// Tokens signed by this key stop verifying at once. Not the current key.
    Retire {
        /// The key's `root_key_id`.
        root_key_id: u32,
    },
}

#[derive(Args)]
struct SandboxArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: SandboxCommand,
}

#[derive(Subcommand)]
enum SandboxCommand {
    /// Scripted faults of one app's calls to the virtual bank.
    #[command(subcommand)]
    Fault(FaultCommand),
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum FaultCommand {
    /// Add a rule; prints its id. The platform checks every field.
    Add {
        /// The OAuth client whose calls it applies to.
        #[arg(long)]
        client_id: String,
        /// timeout, outage, duplicate, refuse or fixture.
        #[arg(long)]
        fault: String,
        /// The ledger operation (e.g. withdraw, balance, bank-status); all when absent.
        #[arg(long)]
        operation: Option<String>,
        /// Only calls about accounts at this bank (3 digits).
        #[arg(long)]
        bank_code: Option<String>,
        /// refuse: the rsp_code to answer.
        #[arg(long)]
        rsp_code: Option<String>,
        /// refuse: the bank's own 3-digit code (a bank failure, A0009).
        #[arg(long)]
        bank_rsp_code: Option<String>,
        /// refuse: the message.
        #[arg(long)]
        rsp_message: Option<String>,
        /// Apply to this many matching calls, then disappear.
        #[arg(long)]
        times: Option<u32>,
        /// fixture (balance): balance_amt to answer.
        #[arg(long, allow_hyphen_values = true)]
        balance_amt: Option<i64>,
        /// fixture (balance): available_amt to answer.
        #[arg(long)]
        available_amt: Option<u64>,
        /// fixture (balance): product_name to answer.
        #[arg(long)]
        product_name: Option<String>,
        /// fixture (real-name, receive): account_holder_name to answer.
        #[arg(long)]
        account_holder_name: Option<String>,
    },
    /// The rules in force, oldest first (the first matching rule applies).
    List {
        /// Only this app's rules.
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Remove one rule by id.
    Remove { id: u64 },
    /// Remove every rule, or every rule of one app.
    Clear {
        #[arg(long)]
        client_id: Option<String>,
    },
}

#[derive(Args)]
struct ApiArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: ApiCommand,
}

#[derive(Subcommand)]
enum ApiCommand {
    /// Scaffold a plugin crate plugins/NAME (a user API that builds and
    /// passes the testbed as it is), add it to plugins/Cargo.toml and
    /// plugins/Cargo.lock. Works offline; needs no running platform.
    New {
        /// The crate, package and route name: lower-case letters, digits, '-'.
        name: String,
    },
    /// Upload a package folder (sfop.toml, api.wasm, optional testbed.toml).
    Push {
        dir: PathBuf,
        /// Then run the testbed on it.
        #[arg(long)]
        test: bool,
        /// Then run the testbed and promote it when it passes.
        #[arg(long, conflicts_with = "test")]
        promote: bool,
    },
    /// Every API with its live version and canary.
    List,
    /// One API with all its versions.
    Show { name: String },
    /// Versions with their traffic and error counts.
    Status { name: Option<String> },
    /// Run the testbed on a registered version.
    Test { name: String, version: String },
    /// Make a tested version live.
    Promote { name: String, version: String },
    /// Send a share of the traffic to a tested version.
    Canary {
        name: String,
        version: String,
        /// Share of callers routed to the candidate.
        #[arg(long, default_value_t = 10)]
        percent: u8,
        /// What keeps a caller on one version: client or account.
        #[arg(long, default_value = "client")]
        sticky: String,
        /// Roll back automatically above this error rate (0.0-1.0).
        #[arg(long)]
        max_error_rate: Option<f64>,
        /// Requests before the error rate counts.
        #[arg(long)]
        min_requests: Option<u64>,
    },
    /// End a canary, or return to the previous live version.
    Rollback { name: String },
    /// Announce the date the API will be retired (YYYY-MM-DD).
    Deprecate {
        name: String,
        #[arg(long)]
        sunset: String,
    },
    /// Take an API out of service.
    Retire { name: String },
    /// An API's variables, and the values operators set through the admin
    /// API: they win over the environment and the config file, and the
    /// API's serving versions reload with them (ADR 0027).
    Var {
        #[command(subcommand)]
        command: VarCommand,
    },
}

#[derive(Subcommand)]
enum VarCommand {
    /// The variables the API declares; a secret's value is never shown.
    List { name: String },
    /// Set a value. Without --value it is read from stdin (one line), so
    /// that a secret stays out of the shell's history and the process list.
    Set {
        name: String,
        variable: String,
        #[arg(long)]
        value: Option<String>,
    },
    /// Drop the admin API's value: the environment's, the config file's or
    /// the manifest's default applies again.
    Unset { name: String, variable: String },
}

#[derive(Args)]
struct AuditArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the log.
    List,
    /// Check the log's hash chain; exits non-zero when it was tampered with.
    Verify,
}

/// How the CLI reaches the admin API of a running platform.
#[derive(Args)]
struct AdminArgs {
    /// The gateway's base URL.
    #[arg(
        long,
        global = true,
        env = "SFOP_URL",
        default_value = "https://127.0.0.1:8443"
    )]
    url: String,
    /// The platform's data dir (for the default certificate and admin token).
    #[arg(
        long,
        global = true,
        env = "SFOP_DATA_DIR",
        default_value = "sfop-data"
    )]
    data_dir: PathBuf,
    /// Certificate to trust [default: DATA_DIR/tls/cert.pem].
    #[arg(long, global = true)]
    cacert: Option<PathBuf>,
    /// Admin token file [default: DATA_DIR/admin.token].
    #[arg(long, global = true)]
    admin_token: Option<PathBuf>,
}

impl AdminArgs {
    fn target(self) -> cli::Target {
        cli::Target {
            cacert: self
                .cacert
                .unwrap_or_else(|| self.data_dir.join("tls/cert.pem")),
            token_file: self
                .admin_token
                .unwrap_or_else(|| self.data_dir.join("admin.token")),
            url: self.url,
        }
    }
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register an app; prints its client_id and (once) its client_secret.
    Register {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        name: String,
        /// Allowed redirect URI (repeat for several).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Allowed scope: login, inquiry, transfer, oob (repeat for several).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// A new institution code (M + 9 digits); allocated when absent.
        #[arg(long, conflicts_with = "institution")]
        client_use_code: Option<String>,
        /// Join this existing institution (its code): the app uses its
        /// contract accounts and limits (`sfop institution list`).
        #[arg(long)]
        institution: Option<String>,
        /// A public client (no secret; PKCE required).
        #[arg(long)]
        public: bool,
    },
    /// List registered apps.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Each flag overrides its `SFOP_*` variable, which overrides the config file.
#[derive(Args)]
struct ServeArgs {
    /// TOML config file (see docs/configuration.md); every key is optional.
    #[arg(long, env = "SFOP_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the API gateway (port 0 picks a free port).
    #[arg(long, env = "SFOP_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SFOP_OPS_LISTEN")]
    ops_listen: Option<SocketAddr>,
    /// Folder of API packages.
    #[arg(long, env = "SFOP_PLUGINS")]
    plugins: Option<PathBuf>,
    /// Folder of the embedded store.
    #[arg(long, env = "SFOP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TLS mode.
    #[arg(long, env = "SFOP_TLS", value_enum)]
    tls: Option<TlsMode>,
    /// PEM certificate chain (with --tls files).
    #[arg(long, env = "SFOP_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (with --tls files).
    #[arg(long, env = "SFOP_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA of institution client certificates: turns on mutual TLS.
    #[arg(long, env = "SFOP_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Authorisation mode (`off` only for developing the data plane).
    #[arg(long, env = "SFOP_AUTH", value_enum)]
    auth: Option<AuthMode>,
    /// How the plugins folder's packages go live (`trusted` skips the
    /// testbed; only for developing the data plane).
    #[arg(long, env = "SFOP_BOOTSTRAP", value_enum)]
    bootstrap: Option<Bootstrap>,
    /// After SIGTERM, how long the gateway keeps serving (with `/readyz`
    /// answering 503) before its listener closes: `shutdown.grace_ms`.
    #[arg(long, env = "SFOP_SHUTDOWN_GRACE_MS")]
    shutdown_grace_ms: Option<u64>,
    /// The cluster's PostgreSQL database, `postgres://user@host:port/db`:
    /// `store.url` (ADR 0029).
    #[arg(long, env = "SFOP_STORE_URL")]
    store_url: Option<String>,
    /// PEM CA of the cluster database's certificate: TLS to it, verified
    /// (`store.ca`).
    #[arg(long, env = "SFOP_STORE_CA")]
    store_ca: Option<PathBuf>,
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

impl ServeArgs {
    /// File < environment < flags (clap already puts flags over environment).
    fn into_config(self) -> Result<Config, sfop::ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        set(&mut config.listen, self.listen);
        set(&mut config.ops_listen, self.ops_listen);
        set(&mut config.plugins, self.plugins);
        set(&mut config.data_dir, self.data_dir);
        set(&mut config.tls.mode, self.tls);
        set(&mut config.auth.mode, self.auth);
        set(&mut config.management.bootstrap, self.bootstrap);
        set(&mut config.shutdown.grace_ms, self.shutdown_grace_ms);
        if self.tls_cert.is_some() {
            config.tls.cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            config.tls.key = self.tls_key;
        }
        if self.tls_client_ca.is_some() {
            config.tls.client_ca = self.tls_client_ca;
        }
        if self.store_url.is_some() {
            config.store.url = self.store_url;
        }
        if self.store_ca.is_some() {
            config.store.ca = self.store_ca;
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SFOP_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Serve(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(serve(args))),
        Command::Client(command) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(client(command))),
        Command::Sandbox(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(cli::sandbox(args.admin.target(), args.command))),
        Command::Api(ApiArgs {
            command: ApiCommand::New { name },
            ..
        }) => cli::new_plugin(&name),
        Command::Api(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(cli::api(args.admin.target(), args.command))),
        Command::Bank(BankCommand::Serve(args)) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(bank_serve(args))),
        Command::Token(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(cli::token(args.admin, args.command))),
        Command::Institution(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(cli::institution(args.admin.target(), args.command))),
        Command::Keys(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(cli::keys(args.admin.target(), args.command))),
        Command::Audit(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(cli::audit(args.admin.target(), args.command))),
        // A package that fails the testbed exits 1; an error running it, 2.
        Command::Testbed(command) => match tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(sfop::testbed::run(command)))
        {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let stop = stop_signal()?;
    let platform = sfop::start(args.into_config()?).await?;
    let live = platform
        .packages
        .iter()
        .filter(|p| matches!(p.outcome, LoadOutcome::Live { .. }))
        .count();
    // One line on stdout, for people and for scripts that wait for readiness.
    println!(
        "sfop gateway listening on {} ({live} of {} API packages live; ops on http://{})",
        platform.url(),
        platform.packages.len(),
        platform.ops_addr,
    );
    eprintln!("developer portal: {}/portal", platform.url());
    if let Some(cert) = &platform.tls_cert {
        eprintln!(
            "trust the gateway's certificate with: curl --cacert {} ...",
            cert.display()
        );
    }
    stop.await;
    eprintln!("stopping: draining in-flight requests (/readyz answers 503; see shutdown.grace_ms)");
    platform.terminate().await
}

async fn client(command: ClientCommand) -> Result<()> {
    use sfop_admin_api::clients::{CLIENTS, ClientsAnswer, RegisterClient, RegisteredClient};
    match command {
        ClientCommand::Register {
            admin,
            name,
            redirect_uris,
            scopes,
            client_use_code,
            institution,
            public,
        } => {
            let body = RegisterClient {
                name,
                redirect_uris,
                scopes,
                client_use_code,
                public,
                institution,
            };
            let registered: RegisteredClient =
                admin.target().client()?.post(CLIENTS, &body).await?;
            // JSON on stdout, for scripts: the secret is shown this once.
            println!("{}", serde_json::to_string_pretty(&registered)?);
        }
        ClientCommand::List { admin } => {
            let answer: ClientsAnswer = admin.target().client()?.get(CLIENTS).await?;
            cli::print_clients(&answer.res_list);
        }
    }
    Ok(())
}

/// `sfop bank serve`: the virtual bank in its own store, behind the
/// connector contract, until SIGTERM or SIGINT; the store is flushed last.
async fn bank_serve(args: BankServeArgs) -> Result<()> {
    use anyhow::Context;
    use sfop_gateway::tls::{TlsSettings, ensure_self_signed, server_config};
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store = sfop_store::Store::open(&args.data_dir)
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let bank = sfop_vbank::VirtualBank::open(&store).context("opening the virtual bank")?;
    let settings = match (args.tls.as_str(), args.tls_cert, args.tls_key) {
        ("off", _, _) => None,
        ("files", Some(cert), Some(key)) => Some(TlsSettings {
            cert,
            key,
            client_ca: None,
        }),
        ("files", _, _) => anyhow::bail!("--tls files needs --tls-cert and --tls-key"),
        ("self-signed", _, _) => Some(ensure_self_signed(&args.data_dir.join("tls"))?),
        (other, _, _) => anyhow::bail!("--tls: {other:?} is not self-signed, files or off"),
    };
    let tls = match settings {
        Some(mut settings) => {
            settings.client_ca = args.client_ca;
            Some(tokio_rustls::TlsAcceptor::from(server_config(&settings)?))
        }
        None => None,
    };
    let stop = stop_signal()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "sfop bank listening on {scheme}://{}",
        listener.local_addr()?
    );
    let backend: std::sync::Arc<dyn sfop_core::BankBackend> = std::sync::Arc::new(bank.clone());
    // Its users too: the platform's sign-in and consent pages ask it.
    let directory: std::sync::Arc<dyn sfop_core::BankDirectory> = std::sync::Arc::new(bank.clone());
    sfop_bank_connector::serve_with_directory(listener, backend, directory, tls, stop).await?;
    store.flush().context("flushing the store")?;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM, listened for from the moment this returns:
/// a signal that arrives while the platform starts is not lost, and never
/// kills the process without its drain.
fn stop_signal() -> Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
