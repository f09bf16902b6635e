//! The sfop platform as one process: opens the embedded store and virtual
//! bank, loads the API packages from a folder, and serves them through the
//! gateway (HTTPS) and the ops endpoints. `main.rs` only turns the command
//! line into a [`Config`] and calls [`start`].

pub mod admin_client;
mod admin_http;
mod auth;
pub mod bank;
pub mod cluster;
pub mod config;
mod endpoints;
mod gate;
pub mod institutions;
pub mod keys;
mod manage;
pub mod outbound;
mod packages;
pub mod plane;
pub mod portal;
mod sandbox;
pub mod telemetry;
pub mod testbed;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sfop_gateway::{Authorizer, Gateway, GatewayConfig, NoAuth, Phase, Transport, tls};
use sfop_management::{Gate, Management};
use sfop_runtime::{Runtime, RuntimeConfig, Services};
use sfop_store::{PluginKv, Store};
use sfop_vbank::VirtualBank;
use sfop_vbank::faults::{FaultScript, ScriptedBank};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{AuthMode, Bootstrap, Config, ConfigError, TlsMode};
pub use packages::{LoadOutcome, PackageReport};
pub use plane::EmbeddedPlane;

/// A running platform.
#[derive(Debug)]
pub struct Platform {
    /// The API listener's address.
    pub local_addr: SocketAddr,
    /// The ops listener's address (`/metrics`, `/healthz`, `/readyz`).
    pub ops_addr: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// The certificate clients should trust when TLS is on.
    pub tls_cert: Option<std::path::PathBuf>,
    /// What happened to each package at start.
    pub packages: Vec<PackageReport>,
    /// The embedded virtual bank (the `ledger` backend).
    pub bank: VirtualBank,
    /// The sandbox's scripted faults in front of the bank, per OAuth client
    /// (kept in the store; `/admin/v1/sandbox/faults`).
    pub faults: FaultScript,
    /// The local operator's admin token (auth mode `biscuit`).
    pub admin_token: Option<std::path::PathBuf>,
    pub gateway: Arc<Gateway>,
    /// The platform's own endpoints (OAuth, admin, sandbox, keys...): the
    /// router the API listener hands their paths to; tests may call it
    /// without TCP (`tower::ServiceExt::oneshot`).
    pub endpoints: Arc<sfop_gateway::Endpoints>,
    /// The management center (registry, promotion, canary, audit).
    pub management: Arc<Management<EmbeddedPlane>>,
    /// This process as a node of a cluster (`[store] url`), or `None`.
    pub node: Option<Arc<cluster::Node>>,
    store: Store,
    /// The API listener's phase (serving, draining, stopped).
    phase: watch::Sender<Phase>,
    /// The ops listener's phase: stopped last, so `/readyz` says 503 for
    /// the whole drain.
    ops_phase: watch::Sender<Phase>,
    /// Stops the management watchdog.
    shutdown: watch::Sender<bool>,
    api_server: JoinHandle<std::io::Result<()>>,
    ops_server: JoinHandle<std::io::Result<()>>,
    watchdog: JoinHandle<()>,
    grace: Duration,
}

/// Parts of the platform a caller may supply instead of the configured ones.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Decides every routed request instead of the configured authoriser
    /// (the OAuth endpoints stay mounted).
    pub authorizer: Option<Arc<dyn Authorizer>>,
    /// The promotion gate instead of the embedded testbed.
    pub gate: Option<Arc<dyn Gate>>,
    /// The OAuth server's clock instead of the system's (tests).
    pub oauth_clock: Option<sfop_auth::oauth::Clock>,
}

/// Validates `config`, opens the store, loads the packages and starts
/// serving. Nothing is bound if anything before that fails.
pub async fn start(config: Config) -> anyhow::Result<Platform> {
    start_with(config, Overrides::default()).await
}

/// [`start`] with the given authoriser deciding every routed request.
pub async fn start_with_authorizer(
    config: Config,
    authorizer: Arc<dyn Authorizer>,
) -> anyhow::Result<Platform> {
    let overrides = Overrides {
        authorizer: Some(authorizer),
        ..Overrides::default()
    };
    start_with(config, overrides).await
}

/// [`start`] with some parts replaced.
pub async fn start_with(config: Config, overrides: Overrides) -> anyhow::Result<Platform> {
    config.validate()?;
    private_data_dir(&config.data_dir)?;
    let (transport, tls_cert) = transport(&config)?;
    // With `[store] url`: the cluster's schema checked and its first
    // snapshot read before anything is opened or bound (ADR 0029).
    let node = cluster::join(&config).await?;

    let store = Store::open(&config.data_dir)
        .with_context(|| format!("opening the data dir {}", config.data_dir.display()))?;
    let bank = VirtualBank::open(&store).context("opening the virtual bank")?;
    let faults = match &node {
        // A cluster's nodes script the same faults (ADR 0029).
        Some(node) => FaultScript::clustered(node.cluster.clone())
            .await
            .context("store.url: reading the sandbox's scripted faults")?,
        None => FaultScript::open(&store).context("opening the sandbox's scripted faults")?,
    };
    let telemetry = config.telemetry.tracing()?;
    // On a cluster the money and the consents are in its database (ADR 0030).
    let cluster_bank = match (&node, config.bank.mode) {
        (Some(node), bank::BankMode::Embedded) => Some(
            sfop_vbank::ClusterBank::open(bank.clone(), node.cluster.clone())
                .await
                .context("store.url: opening the virtual bank's ledger")?,
        ),
        _ => None,
    };
    let services = Services {
        bank: match config.bank.mode {
            // Stateful for every client without a rule (docs/adr/0010-sandbox-faults.md).
            bank::BankMode::Embedded => match &cluster_bank {
                Some(clustered) => Arc::new(ScriptedBank::new(clustered.clone(), faults.clone())),
                None => Arc::new(ScriptedBank::new(bank.clone(), faults.clone())),
            },
            bank::BankMode::Rest => Arc::new(config.bank.connector()?),
        },
        kv: Arc::new(PluginKv::open(&store).context("opening plugin storage")?),
        utc_offset_minutes: config.utc_offset_minutes,
    };
    let runtime = Runtime::new(
        services,
        &RuntimeConfig {
            max_instances: config.runtime.max_instances,
            compile_cache: config
                .runtime
                .compile_cache
                .then(|| config.data_dir.join("compile-cache")),
            execution_threads: config.isolation.execution_threads,
            suspect_calls: config.isolation.suspect_calls,
            guest_memory_bytes: config.isolation.guest_memory_mib << 20,
            api_memory_share_percent: config.isolation.api_memory_share_percent,
            quarantine: config.isolation.quarantine(),
            outbound: Some(Arc::new(config.outbound.client()?)),
            variables: Arc::new(outbound::OperatorValues::new(config.variables.clone())),
            ..RuntimeConfig::default()
        },
    )
    .context("starting the Wasm runtime")?;
    let auth = match config.auth.mode {
        AuthMode::Off => None,
        AuthMode::Biscuit => Some(
            auth::AuthParts::open(&store, &bank, cluster_bank.as_ref(), &config, node.as_ref())?
                .with_oauth_clock(overrides.oauth_clock.clone()),
        ),
    };
    let authorizer = match (overrides.authorizer, &auth) {
        (Some(a), _) => a,
        (None, Some(parts)) => {
            Arc::new(auth::GatewayAuth(parts.authorizer.clone())) as Arc<dyn Authorizer>
        }
        (None, None) => Arc::new(NoAuth),
    };
    let gateway = Arc::new(Gateway::new(
        GatewayConfig {
            utc_offset_minutes: config.utc_offset_minutes,
            conn: config.gateway.conn_limits(),
            admission: config.gateway.admission(),
            telemetry: telemetry.clone(),
        },
        authorizer,
    ));
    // The platform's own paths first: a package cannot take over one.
    let mut routes = sfop_gateway::RouteTable::default();
    endpoints::reserve(&gateway, &mut routes, auth.is_some())?;
    let plane = EmbeddedPlane::new(runtime, gateway.clone(), routes);
    let gate = match overrides.gate {
        Some(gate) => gate,
        None => Arc::new(gate::TestbedGate::open(&config.data_dir).context("opening the testbed")?),
    };
    let management = Arc::new(cluster::management(
        Management::open(
            &store,
            Arc::new(plane),
            Some(gate),
            sfop_management::Settings {
                require_attestation: config.management.bootstrap == Bootstrap::Testbed,
                keep_warm: config.management.keep_warm,
                utc_offset_minutes: config.utc_offset_minutes,
            },
        )
        .context("opening the management center")?
        .with_variable_key(
            sfop_management::variables::Sealer::open_or_create(
                &config.data_dir.join("variables.key"),
            )
            .context("opening the variable key")?,
        ),
        node.as_deref(),
    ));
    management
        .restore()
        .await
        .context("restoring the live releases")?;
    let packages = packages::bootstrap_dir(
        &management,
        &config.plugins,
        config.management.bootstrap == Bootstrap::Trusted,
    )
    .await?;

    let scheme = match transport {
        Transport::Tls(_) => "https",
        Transport::Plain => "http",
    };
    // Institutions change on the node's bank, or on every node's through
    // the cluster (ADR 0030).
    let runtime = tokio::runtime::Handle::current();
    let onboarding = |clients| {
        institutions::Onboarding::new(
            bank.clone(),
            clients,
            cluster_bank.clone().map(|b| (b, runtime.clone())),
        )
    };
    let clients = match &auth {
        Some(parts) => parts.server.clients().clone(),
        None => sfop_auth::ClientRegistry::open(&store).context("opening the client registry")?,
    };
    let developer_portal = sfop_portal::Portal::open(
        &store,
        Arc::new(portal::RegistryCatalog::new(management.clone())),
        clients.clone(),
        sfop_portal::PortalConfig {
            scheme: scheme.to_owned(),
            ..sfop_portal::PortalConfig::default()
        },
    )
    .context("opening the developer portal")?
    .with_sandbox(Arc::new(portal::PortalSandbox::new(
        faults.clone(),
        bank.clone(),
    )))
    .with_institutions(Arc::new(institutions::PortalInstitutions::new(onboarding(
        clients.clone(),
    ))));
    let developer_portal = match &auth {
        Some(parts) => developer_portal.with_keys(parts.ring.clone()),
        None => developer_portal,
    };
    // A cluster's nodes know the same developers (ADR 0029).
    let developer_portal = match &node {
        Some(node) => {
            developer_portal.with_shared_developers(Arc::new(cluster::apps::ClusterApps::new(
                node.cluster.clone(),
                tokio::runtime::Handle::try_current()
                    .context("the cluster's developers need a tokio runtime")?,
            )))
        }
        None => developer_portal,
    };
    let admin = auth.as_ref().map(|parts| endpoints::AdminBoxes {
        oauth: auth::OAuth::new(parts.server.clone()),
        clients: auth::Clients {
            clients: parts.server.clients().clone(),
            bank: bank.clone(),
        },
        admins: parts.authorizer.clone(),
        management: management.clone(),
        sandbox: sandbox::Sandbox {
            faults: faults.clone(),
            clients: parts.server.clients().clone(),
        },
        keys: keys::Keys {
            ring: parts.ring.clone(),
            data_dir: config.data_dir.clone(),
        },
        institutions: onboarding(parts.server.clients().clone()),
    });
    // The portal calls the platform in process, through the gateway and
    // this router, which holds the portal: the router is made knowing its
    // own (weak) address, so no slot is filled in later.
    let endpoints = Arc::new_cyclic(|me| {
        let platform = portal::InProcess::new(gateway.clone(), me.clone(), scheme == "https");
        sfop_gateway::Endpoints::new(endpoints::router(endpoints::Boxes {
            portal: Arc::new(developer_portal.with_platform(Arc::new(platform))),
            admin,
        }))
    });

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding listen address {}", config.listen))?;
    let ops_listener = TcpListener::bind(config.ops_listen)
        .await
        .with_context(|| format!("binding ops_listen address {}", config.ops_listen))?;
    let (local_addr, ops_addr) = (listener.local_addr()?, ops_listener.local_addr()?);

    // Dropping a sender (the platform handle dropped) stops its listener.
    let (shutdown, stopping) = watch::channel(false);
    let (phase, api_phase) = watch::channel(Phase::Serving);
    let (ops_phase, ops_phased) = watch::channel(Phase::Serving);
    let drain = Duration::from_millis(config.shutdown.drain_ms);
    // A clustered node serves what its feed publishes (ADR 0029), and
    // applies the bank's changes in the cluster's order (ADR 0030).
    tokio::spawn(management.clone().follow(stopping.clone()));
    if let (Some(clustered), Some(node)) = (&cluster_bank, &node) {
        tokio::spawn(clustered.clone().follow(node.feed.snapshots()));
        // A node that cannot apply them moves no money: out of rotation.
        gateway.add_ready_check(Arc::new(cluster::BankChangesApplied(clustered.clone())));
    }
    let watchdog = tokio::spawn(
        management
            .clone()
            .watch(Duration::from_millis(config.management.check_ms), stopping),
    );
    let api_server = tokio::spawn(sfop_gateway::serve_platform(
        listener,
        transport,
        gateway.clone(),
        endpoints.clone(),
        api_phase,
        drain,
    ));
    let ops_server = tokio::spawn(sfop_gateway::serve_ops(
        ops_listener,
        gateway.clone(),
        ops_phased,
    ));
    gateway.set_ready(true);
    Ok(Platform {
        local_addr,
        ops_addr,
        scheme,
        tls_cert,
        packages,
        bank,
        faults,
        admin_token: auth.map(|a| a.admin_token),
        gateway,
        endpoints,
        management,
        node,
        store,
        phase,
        ops_phase,
        shutdown,
        api_server,
        ops_server,
        watchdog,
        grace: Duration::from_millis(config.shutdown.grace_ms),
    })
}

/// Creates the data dir mode 0700, or makes an existing one private: it
/// holds the store, the root keys, TLS keys and the admin token, and the
/// store's own files are created with the process's umask. A data dir
/// that group or others could enter is narrowed to 0700 with a warning;
/// one that cannot be narrowed (another owner) is refused.
fn private_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating the data dir {}", dir.display()))?;
        }
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("reading the data dir {}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
                || {
                    format!(
                        "the data dir {path} has mode {mode:04o}: others may read the store; \
                         it could not be made private. Fix: chmod 700 {path}",
                        path = dir.display(),
                        mode = mode & 0o7777,
                    )
                },
            )?;
            tracing::warn!(
                data_dir = %dir.display(),
                was = format!("{:04o}", mode & 0o7777),
                "the data dir was open to group or others; it is now mode 0700"
            );
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data dir {}", dir.display()))?;
    Ok(())
}

fn transport(config: &Config) -> anyhow::Result<(Transport, Option<std::path::PathBuf>)> {
    let settings = match config.tls.mode {
        TlsMode::Off => return Ok((Transport::Plain, None)),
        TlsMode::SelfSigned => tls::ensure_self_signed(&config.data_dir.join("tls"))?,
        TlsMode::Files => tls::TlsSettings {
            cert: config.tls.cert.clone().context("tls.cert")?,
            key: config.tls.key.clone().context("tls.key")?,
            client_ca: None,
        },
    };
    let settings = tls::TlsSettings {
        client_ca: config.tls.client_ca.clone(),
        ..settings
    };
    let server = tls::server_config(&settings)?;
    Ok((Transport::Tls(server), Some(settings.cert)))
}

impl Platform {
    /// The API base URL, e.g. `https://127.0.0.1:8443`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    /// What `sfop serve` does on SIGTERM (docs/adr/0019-shutdown-and-admission.md):
    /// 1. `/readyz` answers 503 at once;
    /// 2. for `shutdown.grace_ms` the gateway keeps accepting and serving,
    ///    every HTTP/1.x answer with `Connection: close`, HTTP/2 connections
    ///    with `GOAWAY`, so a load balancer and clients move away;
    /// 3. the listener closes; every request already read is answered, and
    ///    connections close once quiet, within `shutdown.drain_ms`;
    /// 4. the watchdog and the ops listener stop, and the store is flushed last.
    pub async fn terminate(self) -> anyhow::Result<()> {
        let grace = self.grace;
        self.stop_after(grace).await
    }

    /// [`Platform::terminate`] with no grace period: for a platform no load
    /// balancer sends to (embedded, tests). Nothing read is left unanswered.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop_after(Duration::ZERO).await
    }

    async fn stop_after(self, grace: Duration) -> anyhow::Result<()> {
        self.gateway.set_ready(false);
        let _ = self.phase.send(Phase::Draining);
        tracing::info!(
            grace_ms = grace.as_millis(),
            "draining: /readyz answers 503; answers carry Connection: close"
        );
        tokio::time::sleep(grace).await;
        let _ = self.phase.send(Phase::Stopped);
        tracing::info!("listener closed; answering the requests already read");
        let served = self.api_server.await.context("API server task panicked");
        let _ = self.shutdown.send(true);
        let _ = self.ops_phase.send(Phase::Stopped);
        let ops = self.ops_server.await.context("ops server task panicked");
        self.watchdog
            .await
            .context("management watchdog panicked")?;
        // Spans of the last requests go to the collector (bounded).
        self.gateway.telemetry().flush(Duration::from_secs(2)).await;
        self.store.flush().context("flushing the store")?;
        served??;
        ops??;
        Ok(())
    }
}
