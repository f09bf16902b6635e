//! Making one connection for the pool: resolve, check every address, TCP,
//! then TLS with the origin's settings.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use sfop_core::origin::is_public;
use sfop_core::outbound::OutboundError;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A refusal or failure decided while connecting, carried through hyper's
/// error to the plugin unchanged.
#[derive(Debug)]
pub(crate) struct ConnectFailure(pub(crate) OutboundError);

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ConnectFailure {}

/// The pool's connector.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: Arc<rustls::ClientConfig>,
    /// `host:port` → the settings with the operator's client certificate.
    by_authority: Arc<HashMap<String, Arc<rustls::ClientConfig>>>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("client_certs", &self.by_authority.len())
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector {
    pub(crate) fn new(
        tls: Arc<rustls::ClientConfig>,
        by_authority: HashMap<String, Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            tls,
            by_authority: Arc::new(by_authority),
            connect_timeout,
        }
    }

    async fn connect(self, uri: Uri) -> Result<Conn, ConnectFailure> {
        let fail = |e: OutboundError| ConnectFailure(e);
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(fail(OutboundError::Invalid(format!("scheme of {uri}")))),
        };
        let host = uri
            .host()
            .ok_or_else(|| fail(OutboundError::Invalid(format!("no host in {uri}"))))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // An address in the URL was matched literally against the manifest's
        // allowed_hosts: the plugin may reach it, private or not. A name
        // is resolved here, and every address it resolves to must be
        // public, so that a name cannot lead into the platform's network.
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| fail(OutboundError::Connect(format!("resolving {host}: {e}"))))?
                    .collect();
                if let Some(private) = resolved.iter().find(|a| !is_public(a.ip())) {
                    return Err(fail(OutboundError::DeniedHost(format!(
                        "{host} resolves to {}, a private, loopback or link-local address \
                         (list the address itself in allowed_hosts to allow it)",
                        private.ip()
                    ))));
                }
                resolved
            }
        };
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    tcp = Some(stream);
                    break;
                }
                Ok(Err(e)) => last = Some(format!("{addr}: {e}")),
                Err(_) => last = Some(format!("{addr}: no answer in {:?}", self.connect_timeout)),
            }
        }
        let Some(tcp) = tcp else {
            return Err(fail(OutboundError::Connect(
                last.unwrap_or_else(|| format!("{host} has no address")),
            )));
        };
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(Conn::Plain(TokioIo::new(tcp)));
        }
        let config = self
            .by_authority
            .get(&format!("{}:{port}", host.to_ascii_lowercase()))
            .unwrap_or(&self.tls)
            .clone();
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| fail(OutboundError::Invalid(format!("{host} is not a TLS name"))))?;
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| fail(OutboundError::Tls(format!("{host}:{port}: {e}"))))?;
        Ok(Conn::Tls(Box::new(TokioIo::new(tls))))
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = ConnectFailure;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectFailure>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// One pooled connection.
pub(crate) enum Conn {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Plain(_) => Connected::new(),
            Conn::Tls(tls) => {
                let h2 = tls.inner().get_ref().1.alpn_protocol() == Some(b"h2");
                if h2 {
                    Connected::new().negotiated_h2()
                } else {
                    Connected::new()
                }
            }
        }
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_flush(cx),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Conn::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}
