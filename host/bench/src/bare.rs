//! B0: a bare hyper 1 HTTP/1.1 server answering every request with fixed
//! bytes (the status, headers and body captured from the gateway), so that
//! the only difference to B1 is what the gateway does per request.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: StatusCode,
    /// Headers to repeat; hop-by-hop and computed ones are dropped (hyper
    /// writes `content-length` and `date` itself, as it does for the gateway).
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Canned {
    pub fn new(status: u16, mut headers: HeaderMap, body: Bytes) -> Result<Self> {
        for name in [
            header::CONTENT_LENGTH,
            header::DATE,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
        ] {
            headers.remove(name);
        }
        Ok(Self {
            status: StatusCode::from_u16(status).context("captured status")?,
            headers,
            body,
        })
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body.clone()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        response
    }
}

/// A running bare server.
#[derive(Debug)]
pub struct BareServer {
    pub local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    accept: JoinHandle<()>,
}

impl BareServer {
    /// Binds 127.0.0.1:0 and serves `canned` on the current runtime (call it
    /// inside the server runtime).
    pub async fn start(canned: Canned) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the bare server")?;
        let local_addr = listener.local_addr()?;
        let (stop, mut on_stop) = oneshot::channel::<()>();
        let accept = tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        // As the gateway does.
                        let _ = stream.set_nodelay(true);
                        let canned = canned.clone();
                        let service = service_fn(move |_req| {
                            let response = canned.response();
                            async move { Ok::<_, Infallible>(response) }
                        });
                        tokio::spawn(async move {
                            // Ends when the client closes the connection.
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    _ = &mut on_stop => break,
                }
            }
        });
        Ok(Self {
            local_addr,
            stop,
            accept,
        })
    }

    /// Stops accepting. Open connections end when their clients close them.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.accept.await.context("bare accept loop panicked")
    }
}
