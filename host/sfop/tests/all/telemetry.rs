//! Issue 21, OpenTelemetry (docs/adr/0028-opentelemetry.md): a platform
//! exporting to an in-process OTLP/HTTP receiver that decodes the protobuf
//! export requests. One trace per request, with the server span, the
//! plugin call's span and each host call's span linked parent to child; a
//! client's `traceparent` becomes the server span's parent and reaches the
//! upstream of the `http` capability with the same trace id; a ratio of 0
//! exports nothing; a collector that never answers neither fails nor slows
//! requests, and the spans it cannot take are dropped and counted.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

use crate::harness::{Package, TestPlatform, send};

/// A span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Got {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: BTreeMap<String, String>,
    failed: bool,
}

impl Got {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// Serves `answer` for every request on 127.0.0.1 over cleartext HTTP/1.1;
/// counts connections.
async fn serve<F, Fut>(answer: F) -> Result<(SocketAddr, Arc<AtomicUsize>)>
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_with(None, answer).await
}

/// [`serve`], over TLS when `tls` is given.
async fn serve_with<F, Fut>(
    tls: Option<tokio_rustls::TlsAcceptor>,
    answer: F,
) -> Result<(SocketAddr, Arc<AtomicUsize>)>
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            let (answer, tls) = (answer.clone(), tls.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = answer.clone();
                    async move { Ok::<_, Infallible>(answer(req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    Ok((addr, connections))
}

/// A TLS acceptor with a self-signed certificate for 127.0.0.1, and that
/// certificate (PEM) in a file, for the platform to trust.
fn self_signed() -> Result<(tokio_rustls::TlsAcceptor, tempfile::NamedTempFile)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?.self_signed(&key)?;
    let ca = tempfile::NamedTempFile::new()?;
    std::fs::write(ca.path(), cert.pem())?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert.pem().as_bytes())?],
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?,
    )?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca))
}

/// The OTLP/HTTP receiver: every span of every export request it decoded.
async fn receiver() -> Result<(SocketAddr, Arc<Mutex<Vec<Got>>>)> {
    receiver_with(None).await
}

/// [`receiver`], over TLS when `tls` is given.
async fn receiver_with(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<(SocketAddr, Arc<Mutex<Vec<Got>>>)> {
    let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
    let kept = spans.clone();
    let (addr, _) = serve_with(tls, move |req: Request<hyper::body::Incoming>| {
        let kept = kept.clone();
        async move {
            let ok = req.uri().path() == "/v1/traces"
                && req
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v == "application/x-protobuf");
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let decoded = body
                .ok()
                .filter(|_| ok)
                .and_then(|b| ExportTraceServiceRequest::decode(b).ok());
            let Some(export) = decoded else {
                return Response::builder()
                    .status(400)
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_default();
            };
            let mut got = Vec::new();
            for resource in export.resource_spans {
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        let attributes = span
                            .attributes
                            .iter()
                            .filter_map(|kv| {
                                let value = match kv.value.as_ref()?.value.as_ref()? {
                                    Any::StringValue(s) => s.clone(),
                                    Any::IntValue(i) => i.to_string(),
                                    Any::BoolValue(b) => b.to_string(),
                                    Any::DoubleValue(d) => d.to_string(),
                                    _ => return None,
                                };
                                Some((kv.key.clone(), value))
                            })
                            .collect();
                        got.push(Got {
                            trace_id: hex::encode(&span.trace_id),
                            span_id: hex::encode(&span.span_id),
                            parent: hex::encode(&span.parent_span_id),
                            name: span.name.clone(),
                            kind: span.kind,
                            attributes,
                            // STATUS_CODE_ERROR
                            failed: span.status.as_ref().is_some_and(|s| s.code == 2),
                        });
                    }
                }
            }
            if let Ok(mut spans) = kept.lock() {
                spans.extend(got);
            }
            Response::builder()
                .header("content-type", "application/x-protobuf")
                .body(Full::new(Bytes::new()))
                .unwrap_or_default()
        }
    })
    .await?;
    Ok((addr, spans))
}

/// Waits (with a deadline) until the receiver holds `n` spans of `trace_id`.
async fn trace_of(spans: &Mutex<Vec<Got>>, trace_id: &str, n: usize) -> Result<Vec<Got>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<Got> = spans
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        if got.len() >= n || Instant::now() > deadline {
            anyhow::ensure!(got.len() == n, "trace {trace_id}: {got:#?}");
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn named<'a>(spans: &'a [Got], name: &str) -> Result<&'a Got> {
    spans
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("no span {name:?} in {spans:#?}"))
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

const KV_TRACE_ID: &str = "5bf92f3577b34da6a3ce929d0e0e4736";
const KV_TRACEPARENT: &str = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01";

const KV_READER: &str = r#"name = "kv-reader"
version = "0.1.0"
description = "reads kv"
scope = "oob"
capabilities = ["log", "kv"]

[[routes]]
method = "GET"
path = "/test/kv-reader"
"#;

fn manifest(upstream: SocketAddr) -> String {
    format!(
        r#"name = "outbound"
version = "0.1.0"
description = "outbound test"
scope = "oob"
capabilities = ["http", "config"]
allowed_hosts = ["http://{upstream}"]

[variables]
api_key = {{ secret = true }}
greeting = {{ default = "hello" }}

[limits]
timeout_ms = 2000

[[routes]]
method = "GET"
path = "/test/outbound"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_trace_of_linked_spans_and_the_traceparent_reaches_the_upstream()
-> Result<()> {
    let (collector, spans) = receiver().await?;
    let parents: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = parents.clone();
    let (upstream, _) = serve(move |req: Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            if let (Some(parent), Ok(mut seen)) = (req.headers().get("traceparent"), seen.lock()) {
                seen.push(String::from_utf8_lossy(parent.as_bytes()).into_owned());
            }
            Response::new(Full::new(Bytes::from_static(b"pong")))
        }
    })
    .await?;
    let t = TestPlatform::start_with(
        vec![
            Package::built("test/outbound").with_manifest(&manifest(upstream)),
            Package::built("api/bank-status"),
            // Reads key `hits` through `kv`, declared here.
            Package::built("test/undeclared-import")
                .named("kv-reader")
                .with_manifest(KV_READER),
        ],
        |c| {
            c.tls.mode = sfop::TlsMode::Off;
            c.auth.mode = sfop::AuthMode::Off;
            c.telemetry.endpoint = Some(format!("http://{collector}"));
            c.telemetry.sampling_ratio = 1.0;
            c.telemetry.batch_delay_ms = 20;
        },
    )
    .await?;

    // A client's traceparent: the server span is its child; the plugin
    // call, the http host call and the upstream follow in the same trace.
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let reply = send(
        t.addr(),
        "GET",
        &format!("/test/outbound?url=http://{upstream}/ok"),
        &[
            ("traceparent", traceparent.as_str()),
            ("tracestate", "vendor=abc"),
        ],
        Vec::new(),
    )
    .await?;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()?["upstream_body"], "pong");
    let api_tran_id = reply.header("x-api-tran-id").context("no api_tran_id")?;

    let trace = trace_of(&spans, TRACE_ID, 3).await?;
    let server = named(&trace, "GET /test/outbound")?;
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(server.parent, CLIENT_SPAN);
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.path", "/test/outbound"),
        ("url.scheme", "http"),
        ("http.route", "/test/outbound"),
        ("http.response.status_code", "200"),
        ("server.address", "127.0.0.1"),
        ("server.port", &t.addr().port().to_string()),
        ("sfop.api.name", "outbound"),
        ("sfop.api.version", "0.1.0"),
        ("sfop.api_tran_id", api_tran_id),
    ] {
        assert_eq!(server.attr(key), Some(value), "{key} in {server:#?}");
    }
    let plugin = named(&trace, "plugin outbound")?;
    assert_eq!(plugin.parent, server.span_id);
    assert_eq!(plugin.attr("sfop.plugin.outcome"), Some("ok"));
    assert_eq!(plugin.attr("sfop.api_tran_id"), Some(api_tran_id));
    let http = named(&trace, "http.send")?;
    assert_eq!(http.parent, plugin.span_id);
    assert_eq!(http.kind, SpanKind::Client as i32);
    for (key, value) in [
        ("sfop.host.outcome", "ok"),
        ("http.request.method", "GET"),
        ("http.response.status_code", "200"),
        ("server.address", "127.0.0.1"),
        ("server.port", &upstream.port().to_string()),
    ] {
        assert_eq!(http.attr(key), Some(value), "{key} in {http:#?}");
    }
    assert!(!server.failed && !plugin.failed && !http.failed);
    // The upstream got the http call's own span as its parent, same trace.
    let arrived = parents.lock().map(|p| p.clone()).unwrap_or_default();
    assert_eq!(arrived, vec![format!("00-{TRACE_ID}-{}-01", http.span_id)]);

    // Without a traceparent: a new trace of its own, with the ledger call.
    let reply = t.get("/v2.0/bank/status").await?;
    assert_eq!(reply.status, 200);
    let api_tran_id = reply.header("x-api-tran-id").context("no api_tran_id")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let server = loop {
        let found = spans.lock().ok().and_then(|s| {
            s.iter()
                .find(|s| s.attr("sfop.api_tran_id") == Some(api_tran_id) && s.parent.is_empty())
                .cloned()
        });
        match found {
            Some(server) => break server,
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            None => anyhow::bail!("no server span for {api_tran_id}"),
        }
    };
    assert_ne!(server.trace_id, TRACE_ID);
    assert_eq!(server.name, "GET /v2.0/bank/status");
    let trace = trace_of(&spans, &server.trace_id, 3).await?;
    let plugin = named(&trace, "plugin bank-status")?;
    assert_eq!(plugin.parent, server.span_id);
    let ledger = named(&trace, "ledger.bank-status")?;
    assert_eq!(ledger.parent, plugin.span_id);
    assert_eq!(ledger.attr("sfop.host.outcome"), Some("ok"));

    // A kv call: its span is the plugin call's child, with its outcome.
    let reply = send(
        t.addr(),
        "GET",
        "/test/kv-reader",
        &[("traceparent", KV_TRACEPARENT)],
        Vec::new(),
    )
    .await?;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let trace = trace_of(&spans, KV_TRACE_ID, 3).await?;
    let plugin = named(&trace, "plugin kv-reader")?;
    let kv = named(&trace, "kv.get")?;
    assert_eq!(kv.parent, plugin.span_id);
    assert_eq!(kv.attr("sfop.host.outcome"), Some("ok"), "{kv:#?}");
    assert!(!kv.failed);

    // A route nobody serves: one server span, named by the method alone.
    let reply = t.get("/nowhere").await?;
    assert_eq!(reply.status, 404);
    let stats = t
        .platform
        .gateway
        .telemetry()
        .stats()
        .context("tracing is off")?;
    assert_eq!((stats.dropped, stats.failed), (0, 0));
    t.platform.stop().await?;
    let all = spans.lock().map(|s| s.clone()).unwrap_or_default();
    let nowhere = all
        .iter()
        .find(|s| s.attr("url.path") == Some("/nowhere"))
        .context("no span for /nowhere")?;
    assert_eq!(nowhere.name, "GET");
    assert_eq!(nowhere.attr("http.response.status_code"), Some("404"));
    assert_eq!(nowhere.attr("sfop.outcome"), Some("route_not_found"));
    // One trace per request: four requests, four trace ids.
    let traces: std::collections::BTreeSet<_> = all.iter().map(|s| &s.trace_id).collect();
    assert_eq!(traces.len(), 4, "{all:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratio_zero_exports_nothing_and_a_silent_collector_neither_fails_nor_slows_requests()
-> Result<()> {
    // A collector that accepts connections and never answers.
    let (silent, connections) =
        serve(|_req: Request<hyper::body::Incoming>| std::future::pending()).await?;
    let t = TestPlatform::start_with(vec![Package::built("test/hello")], |c| {
        c.tls.mode = sfop::TlsMode::Off;
        c.auth.mode = sfop::AuthMode::Off;
        c.telemetry.endpoint = Some(format!("http://{silent}"));
        c.telemetry.sampling_ratio = 0.0;
        c.telemetry.max_queue_spans = 4;
        c.telemetry.batch_delay_ms = 10;
        c.telemetry.export_timeout_ms = 30_000;
    })
    .await?;
    let tracing = t.platform.gateway.telemetry().clone();

    // Ratio 0, no traceparent: nothing sampled, nothing sent.
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(t.get("/test/hello").await?.status, 200);
    }
    let unsampled = started.elapsed();
    tracing.flush(Duration::from_millis(200)).await;
    assert_eq!(connections.load(Ordering::Relaxed), 0);
    assert_eq!(tracing.stats().map(|s| s.dropped), Some(0));

    // A caller's sampled traceparent is followed (parent-based); the
    // collector takes the first batch and never answers; the queue fills
    // and the rest are dropped and counted, while requests go on as fast.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let one = Instant::now();
        let parent = format!("00-{TRACE_ID}-{:016x}-01", i + 1);
        let reply = send(
            t.addr(),
            "GET",
            "/test/hello",
            &[("traceparent", parent.as_str())],
            Vec::new(),
        )
        .await?;
        assert_eq!(reply.status, 200);
        slowest = slowest.max(one.elapsed());
    }
    let sampled = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while connections.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        connections.load(Ordering::Relaxed),
        1,
        "one export connection"
    );
    let stats = tracing.stats().context("tracing is off")?;
    assert!(stats.dropped > 0, "{stats:?}");
    assert_eq!(stats.exported, 0, "{stats:?}");
    // The operator sees the drops on /metrics.
    let metrics = send(t.platform.ops_addr, "GET", "/metrics", &[], Vec::new()).await?;
    let text = String::from_utf8_lossy(&metrics.body);
    let dropped = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"sfop_trace_spans_total{outcome="dropped"} "#))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(dropped.is_some_and(|n| n >= stats.dropped), "{text}");
    assert!(
        slowest < Duration::from_millis(500)
            && sampled < unsampled * 3 + Duration::from_millis(300),
        "sampled {sampled:?} (slowest {slowest:?}) against unsampled {unsampled:?}"
    );
    Ok(())
}

/// What a caller may send as `traceparent` to force a trace: only a valid
/// one is followed. Ratio 0, so nothing is recorded unless a caller's
/// sampled `traceparent` is taken: a malformed one (forbidden version,
/// zero ids, upper-case hex, extra fields, oversized) or a repeated one is
/// ignored and the request served as if it had none; a valid one is followed (the queue
/// bounds what that costs: the silent-collector test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_repeated_sampled_traceparent_is_ignored_and_forces_no_trace() -> Result<()>
{
    let (collector, spans) = receiver().await?;
    let t = TestPlatform::start_with(vec![Package::built("test/hello")], |c| {
        c.tls.mode = sfop::TlsMode::Off;
        c.auth.mode = sfop::AuthMode::Off;
        c.telemetry.endpoint = Some(format!("http://{collector}"));
        c.telemetry.sampling_ratio = 0.0;
        c.telemetry.batch_delay_ms = 10;
    })
    .await?;
    let long = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01-{}", "a".repeat(4000));
    let bad = [
        format!("ff-{TRACE_ID}-{CLIENT_SPAN}-01"),
        format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32)),
        format!("00-{TRACE_ID}-{}-01", "0".repeat(16)),
        format!("00-{}-{CLIENT_SPAN}-01", TRACE_ID.to_uppercase()),
        format!("00-{TRACE_ID}-{CLIENT_SPAN}-01-00"),
        format!("00-{TRACE_ID}-{CLIENT_SPAN}-1"),
        format!("00-{TRACE_ID}x-{CLIENT_SPAN}-01"),
        long,
    ];
    for traceparent in &bad {
        let reply = send(
            t.addr(),
            "GET",
            "/test/hello",
            &[
                ("traceparent", traceparent.as_str()),
                ("tracestate", "vendor=abc"),
            ],
            Vec::new(),
        )
        .await?;
        assert_eq!(reply.status, 200, "{traceparent}: {:?}", reply.body);
    }
    // Two valid ones: W3C says to ignore a repeated traceparent.
    let twice = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let reply = send(
        t.addr(),
        "GET",
        "/test/hello",
        &[
            ("traceparent", twice.as_str()),
            ("traceparent", twice.as_str()),
        ],
        Vec::new(),
    )
    .await?;
    assert_eq!(reply.status, 200);
    // A valid one after them: followed. The queue is one line, so once its
    // spans have arrived, any of the requests before would have too.
    let marker = "0af7651916cd43dd8448eb211c80319c";
    let parent = format!("00-{marker}-{CLIENT_SPAN}-01");
    let reply = send(
        t.addr(),
        "GET",
        "/test/hello",
        &[("traceparent", parent.as_str())],
        Vec::new(),
    )
    .await?;
    assert_eq!(reply.status, 200);
    let tracing = t.platform.gateway.telemetry().clone();
    tracing.flush(Duration::from_secs(5)).await;
    let trace = trace_of(&spans, marker, 2).await?;
    let server = named(&trace, "GET /test/hello")?;
    assert_eq!(server.parent, CLIENT_SPAN);
    let all = spans.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        all.iter().all(|s| s.trace_id == marker),
        "a malformed traceparent was followed: {all:#?}"
    );
    let stats = tracing.stats().context("tracing is off")?;
    assert_eq!((stats.dropped, stats.failed), (0, 0), "{stats:?}");
    Ok(())
}

/// A collector over HTTPS (ADR 0028): spans reach it when the operator's CA
/// (`telemetry.ca`) vouches for its certificate; without that CA the
/// certificate is not trusted, nothing is sent to it, the failed exports
/// are counted, and requests are served all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_https_collector_only_when_its_certificate_is_trusted() -> Result<()> {
    let (acceptor, ca) = self_signed()?;
    let (collector, spans) = receiver_with(Some(acceptor)).await?;
    let start = |ca: Option<std::path::PathBuf>| {
        TestPlatform::start_with(vec![Package::built("test/hello")], move |c| {
            c.tls.mode = sfop::TlsMode::Off;
            c.auth.mode = sfop::AuthMode::Off;
            c.telemetry.endpoint = Some(format!("https://{collector}"));
            c.telemetry.ca = ca;
            c.telemetry.sampling_ratio = 1.0;
            c.telemetry.batch_delay_ms = 10;
        })
    };
    let hello = async |t: &TestPlatform, trace_id: &str| -> Result<()> {
        let parent = format!("00-{trace_id}-{CLIENT_SPAN}-01");
        let reply = send(
            t.addr(),
            "GET",
            "/test/hello",
            &[("traceparent", &parent)],
            Vec::new(),
        )
        .await?;
        anyhow::ensure!(reply.status == 200, "{:?}", reply.body);
        Ok(())
    };
    let trusted = start(Some(ca.path().to_owned())).await?;
    hello(&trusted, TRACE_ID).await?;
    let trace = trace_of(&spans, TRACE_ID, 2).await?;
    named(&trace, "GET /test/hello")?;

    let untrusted = start(None).await?;
    let other = "6cf92f3577b34da6a3ce929d0e0e4736";
    hello(&untrusted, other).await?;
    let tracing = untrusted.platform.gateway.telemetry();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = tracing.stats().context("tracing is off")?;
        if stats.failed > 0 {
            assert_eq!(stats.exported, 0, "{stats:?}");
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no failed export counted: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hello(&untrusted, other).await?;
    let got = spans.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        got.iter().all(|s| s.trace_id != other),
        "a span went to an untrusted collector"
    );
    Ok(())
}
