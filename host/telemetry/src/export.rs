//! The way out of a finished span: a bounded queue the request path never
//! waits on (full, the span is dropped and counted), and one task on the
//! tokio runtime that sends batches to the collector over OTLP/HTTP with
//! the SDK's exporter, each bounded by the export timeout.
//!
//! Why not the SDK's `BatchSpanProcessor`: it exports on a thread of its
//! own through `futures`' `block_on`, where a tokio-based HTTP client
//! (hyper, already in the platform) cannot run, so it would need reqwest's
//! blocking client (a second reqwest and its own runtime thread); and its
//! count of dropped spans is private. See ADR 0028.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, oneshot};

use crate::{Error, Settings};

/// What became of the spans the platform finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Accepted by the collector.
    pub exported: u64,
    /// Dropped because the queue was full (the collector slow or away).
    pub dropped: u64,
    /// Sent but not accepted: the collector failed, refused or timed out.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

enum Message {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The tracing side's handle on the export task.
pub(crate) struct Handle {
    tx: mpsc::Sender<Message>,
    counters: Arc<Counters>,
}

impl Handle {
    pub(crate) fn stats(&self) -> ExportStats {
        ExportStats {
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    pub(crate) async fn flush(&self, limit: Duration) {
        let (done, flushed) = oneshot::channel();
        let _ = tokio::time::timeout(limit, async {
            if self.tx.send(Message::Flush(done)).await.is_ok() {
                let _ = flushed.await;
            }
        })
        .await;
    }
}

/// The span processor: hands each finished span to the queue.
#[derive(Debug)]
pub(crate) struct Queue {
    tx: mpsc::Sender<Message>,
    counters: Arc<Counters>,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.tx.try_send(Message::Span(Box::new(span))).is_err() {
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            // One line for the first drop and one per thousand after it.
            if dropped.is_multiple_of(1000) {
                tracing::warn!(
                    target: "sfop::telemetry",
                    dropped = dropped + 1,
                    "trace spans dropped: the export queue (telemetry.max_queue_spans) is full; \
                     the collector is slow or away"
                );
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Builds the exporter and starts its task; the processor feeds it.
pub(crate) fn start(settings: &Settings) -> Result<(Queue, Handle), Error> {
    let endpoint = endpoint(&settings.endpoint)?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls(settings.ca.as_deref())?)
        .https_or_http()
        .enable_http1()
        .build();
    let client =
        opentelemetry_http::hyper::HyperClient::new(connector, settings.export_timeout, None);
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(endpoint)
        .with_timeout(settings.export_timeout)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(|e| Error::Exporter(e.to_string()))?;
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .build(),
    );
    let (tx, rx) = mpsc::channel(settings.max_queue_spans.max(1));
    let counters = Arc::new(Counters::default());
    tokio::spawn(run(
        rx,
        exporter,
        settings.max_batch_spans.max(1),
        settings.batch_delay,
        settings.export_timeout,
        counters.clone(),
    ));
    let queue = Queue {
        tx: tx.clone(),
        counters: counters.clone(),
    };
    Ok((queue, Handle { tx, counters }))
}

/// The TLS of an `https://` collector: the system's roots and the CAs in
/// `ca` (PEM), with the workspace's one crypto provider (ring).
fn tls(ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    // A system store that cannot be read leaves the operator's CAs.
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Ca(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::Ca(format!(
                "{}: no certificate in it",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| Error::Ca(format!("{}: {e}", path.display())))?;
        }
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Exporter(e.to_string()))
    .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// `http(s)://host:port/path`; a URL without a path gets `/v1/traces`.
pub(crate) fn endpoint(url: &str) -> Result<String, Error> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Error::Endpoint(format!("{url:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(Error::Endpoint(format!(
            "{url:?} must be an http:// or https:// URL"
        )));
    }
    if uri.host().is_none() {
        return Err(Error::Endpoint(format!("{url:?} names no host")));
    }
    Ok(match uri.path() {
        "" | "/" => format!("{}/v1/traces", url.trim_end_matches('/')),
        _ => url.to_owned(),
    })
}

async fn run(
    mut rx: mpsc::Receiver<Message>,
    exporter: opentelemetry_otlp::SpanExporter,
    max_batch: usize,
    delay: Duration,
    timeout: Duration,
    counters: Arc<Counters>,
) {
    let send = |batch: Vec<SpanData>| {
        let (exporter, counters) = (&exporter, &counters);
        async move {
            if batch.is_empty() {
                return;
            }
            let n = batch.len() as u64;
            match tokio::time::timeout(timeout, exporter.export(batch)).await {
                Ok(Ok(())) => counters.exported.fetch_add(n, Ordering::Relaxed),
                Ok(Err(e)) => {
                    tracing::debug!(target: "sfop::telemetry", error = %e, spans = n, "trace export failed");
                    counters.failed.fetch_add(n, Ordering::Relaxed)
                }
                Err(_) => {
                    tracing::debug!(target: "sfop::telemetry", spans = n, "trace export timed out");
                    counters.failed.fetch_add(n, Ordering::Relaxed)
                }
            };
        }
    };
    let mut batch = Vec::with_capacity(max_batch);
    // Waits for a first span, then up to `delay` for the batch to fill.
    while let Some(first) = rx.recv().await {
        let mut flushed = Vec::new();
        match first {
            Message::Span(span) => batch.push(*span),
            Message::Flush(done) => flushed.push(done),
        }
        let deadline = tokio::time::Instant::now() + delay;
        while batch.len() < max_batch && flushed.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Message::Span(span))) => batch.push(*span),
                Ok(Some(Message::Flush(done))) => flushed.push(done),
                Ok(None) | Err(_) => break,
            }
        }
        // A flush sends what is queued now, then answers.
        if !flushed.is_empty() {
            while let Ok(message) = rx.try_recv() {
                match message {
                    Message::Span(span) => {
                        batch.push(*span);
                        if batch.len() >= max_batch {
                            send(std::mem::take(&mut batch)).await;
                        }
                    }
                    Message::Flush(done) => flushed.push(done),
                }
            }
        }
        send(std::mem::take(&mut batch)).await;
        for done in flushed {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls_and_get_the_traces_path() {
        assert_eq!(
            endpoint("http://127.0.0.1:4318").ok().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            endpoint("http://c:4318/").ok().as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            endpoint("http://c:4318/otlp/v1/traces").ok().as_deref(),
            Some("http://c:4318/otlp/v1/traces")
        );
        assert_eq!(
            endpoint("https://c:4318").ok().as_deref(),
            Some("https://c:4318/v1/traces")
        );
        for bad in ["c:4318", "not a url", "ftp://c/x"] {
            let e = endpoint(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with("telemetry.endpoint:"), "{bad}: {e}");
        }
    }
}
