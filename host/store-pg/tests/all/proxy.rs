//! A TCP forwarder between a node and the database that the test can cut
//! (every connection through it closed, new ones refused) and restore: the
//! database seen as unreachable from one node while the others reach it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;

#[derive(Debug)]
pub struct Proxy {
    port: u16,
    up: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(target: impl ToSocketAddrs) -> Result<Self> {
        let target: SocketAddr = tokio::net::lookup_host(target)
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("no target address"))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (up, _) = watch::channel(true);
        let up = Arc::new(up);
        let state = up.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*state.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut rx = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Self { port, up, task })
    }

    /// A forwarder to the server of the database at `url` (on this host),
    /// and the URL of that database through it.
    pub async fn to_database(url: &str) -> Result<(Self, String)> {
        let target: tokio_postgres::Config = url.parse()?;
        let port = match target.get_ports() {
            [port] => *port,
            _ => 5432,
        };
        let proxy = Self::start(("127.0.0.1", port)).await?;
        let (base, db) = url
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("no database in {url}"))?;
        let (user, _) = base
            .rsplit_once('@')
            .ok_or_else(|| anyhow::anyhow!("no user in {url}"))?;
        let through = format!("{user}@127.0.0.1:{}/{db}", proxy.port);
        Ok((proxy, through))
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}
