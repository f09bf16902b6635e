//! The sfop platform as one process: opens the embedded store and virtual
//! bank, loads the API packages from a folder, and serves them through the
//! gateway. `main.rs` only parses the command line and calls [`start`].

mod packages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use sfop_gateway::{Gateway, GatewayConfig};
use sfop_runtime::{Runtime, RuntimeConfig, Services};
use sfop_store::{PluginKv, Store};
use sfop_vbank::VirtualBank;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use packages::{LoadOutcome, PackageReport};

/// What `sfop serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Folder of API packages: one sub-folder per package holding
    /// `sfop.toml` and `api.wasm`.
    pub plugins: PathBuf,
    /// Folder of the embedded store (created if missing).
    pub data_dir: PathBuf,
}

/// A running platform.
#[derive(Debug)]
pub struct Platform {
    /// The address actually bound.
    pub local_addr: SocketAddr,
    /// What happened to each package at start.
    pub packages: Vec<PackageReport>,
    /// The embedded virtual bank (the `ledger` backend).
    pub bank: VirtualBank,
    pub gateway: Arc<Gateway>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

/// Opens the store, loads the packages and starts serving.
pub async fn start(config: ServeConfig) -> anyhow::Result<Platform> {
    let store = Store::open(&config.data_dir)
        .with_context(|| format!("opening the data dir {}", config.data_dir.display()))?;
    let bank = VirtualBank::open(&store).context("opening the virtual bank")?;
    let gateway_config = GatewayConfig::default();
    let services = Services {
        bank: Arc::new(bank.clone()),
        kv: Arc::new(PluginKv::open(&store).context("opening plugin storage")?),
        utc_offset_minutes: gateway_config.utc_offset_minutes,
    };
    let runtime =
        Runtime::new(services, &RuntimeConfig::default()).context("starting the Wasm runtime")?;
    let (routes, packages) = packages::load_dir(&runtime, &config.plugins)?;
    let gateway = Arc::new(Gateway::new(routes, gateway_config));

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let (shutdown, on_shutdown) = oneshot::channel::<()>();
    let server = tokio::spawn(sfop_gateway::serve(listener, gateway.clone(), async move {
        // Either an explicit stop or the handle being dropped ends serving.
        let _ = on_shutdown.await;
    }));
    Ok(Platform {
        local_addr,
        packages,
        bank,
        gateway,
        shutdown,
        server,
    })
}

impl Platform {
    /// Stops accepting, lets open requests finish, and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.server.await.context("server task panicked")??;
        Ok(())
    }
}
