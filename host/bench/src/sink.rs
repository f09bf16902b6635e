//! A local OTLP/HTTP sink for B1o: answers every export `200` with an
//! empty body (an empty `ExportTraceServiceResponse`), on the server
//! runtime, so what the exporter costs counts as server CPU.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub struct Sink {
    pub addr: SocketAddr,
    /// Export requests received.
    pub exports: Arc<AtomicU64>,
}

impl Sink {
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let exports = Arc::new(AtomicU64::new(0));
        let counted = exports.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let counted = counted.clone();
                            async move {
                                let _ = req.into_body().collect().await;
                                counted.fetch_add(1, Ordering::Relaxed);
                                let mut answer = Response::new(Full::new(Bytes::new()));
                                answer.headers_mut().insert(
                                    hyper::header::CONTENT_TYPE,
                                    hyper::header::HeaderValue::from_static(
                                        "application/x-protobuf",
                                    ),
                                );
                                Ok::<_, Infallible>(answer)
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, exports })
    }
}
