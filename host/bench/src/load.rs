//! The load generator: a fixed number of HTTP/1.1 connections (hyper's client
//! `conn` API over a tokio `TcpStream`, optionally wrapped in rustls), each
//! sending requests back to back until a deadline.
//!
//! Requests may be templated: every `{seq}` in the path or body is replaced by
//! a process-wide sequence number (9 digits), so that APIs that refuse a
//! repeated `bank_tran_id` get a fresh one on every request.
//!
//! Every loop is bounded both in time (the measurement deadline, plus a
//! per-request timeout) and in count (`MAX_REQUESTS_PER_CONNECTION`,
//! `MAX_RECONNECTS`), and traffic only ever goes to 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

/// Hard cap per connection and run, far above what one loopback connection
/// can do in a few seconds; only there so that no loop is unbounded.
const MAX_REQUESTS_PER_CONNECTION: u64 = 50_000_000;
/// Reconnect attempts per connection and run after errors.
const MAX_RECONNECTS: u32 = 1_000;
/// A request taking longer than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The placeholder replaced by a fresh sequence number in paths and bodies.
pub const SEQ: &str = "{seq}";

/// Process-wide: a `{seq}` is never repeated within one bench run.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

/// How to reach the server.
#[derive(Debug, Clone)]
pub enum Transport {
    Plain,
    /// TLS with this client configuration (server name `localhost`).
    Tls(Arc<rustls::ClientConfig>),
}

/// What to send, where, and what counts as success.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub method: hyper::Method,
    /// Path and query; may hold `{seq}`.
    pub path: String,
    /// JSON body (sent with `content-type: application/json`); may hold `{seq}`.
    pub body: Option<String>,
    pub expect_status: u16,
    /// Expected body length, when known; a different length is an error.
    pub expect_body_len: Option<usize>,
    /// Text the body must contain (e.g. `"rsp_code":"A0000"`): business
    /// failures of the reference APIs are HTTP 200 too.
    pub expect_body_contains: Option<String>,
    /// `Authorization` header value to send, if any.
    pub authorization: Option<String>,
    /// Open a new connection (TCP, and TLS when on) for every request and
    /// ask the server to close it after the answer.
    pub connection_per_request: bool,
    /// Record, for every answer, when it completed and its
    /// `x-sfop-api-version` header (for the hot-swap scenario).
    pub record_versions: bool,
}

impl Target {
    pub fn get(addr: SocketAddr, path: &str) -> Self {
        Self {
            addr,
            transport: Transport::Plain,
            method: hyper::Method::GET,
            path: path.to_owned(),
            body: None,
            expect_status: 200,
            expect_body_len: None,
            expect_body_contains: None,
            authorization: None,
            connection_per_request: false,
            record_versions: false,
        }
    }
}

/// One answer's version, for the hot-swap scenario.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub version: String,
}

/// One run's outcome, over all connections.
#[derive(Debug, Default)]
pub struct RunResult {
    /// Latency of each successful request, in nanoseconds, sorted ascending.
    pub latencies_ns: Vec<u64>,
    /// Failed requests: transport errors, timeouts, wrong status or body.
    pub errors: u64,
    /// From the start of the run until the last connection finished.
    pub elapsed: Duration,
    /// With `record_versions`: every successful answer, sorted by time.
    pub versions: Vec<Seen>,
    /// The first few failures, described.
    pub failures: Vec<String>,
}

impl RunResult {
    pub fn ok(&self) -> u64 {
        self.latencies_ns.len() as u64
    }

    pub fn requests_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok() as f64 / secs
        } else {
            0.0
        }
    }
}

/// Drives `connections` connections at `target` for `duration`. Must run on
/// the client runtime.
pub async fn run(target: &Target, connections: usize, duration: Duration) -> Result<RunResult> {
    if target.addr.ip() != Ipv4Addr::LOCALHOST {
        bail!(
            "refusing to load {}: only 127.0.0.1 is allowed",
            target.addr
        );
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let target = target.clone();
        tasks.spawn(async move { connection_loop(&target, deadline).await });
    }
    let mut result = RunResult::default();
    while let Some(joined) = tasks.join_next().await {
        let one = joined.context("a load connection task panicked")?;
        result.latencies_ns.extend(one.latencies);
        result.errors += one.errors;
        result.versions.extend(one.versions);
        for f in one.failures {
            if result.failures.len() < 5 {
                result.failures.push(f);
            }
        }
    }
    result.elapsed = start.elapsed();
    result.latencies_ns.sort_unstable();
    result.versions.sort_by_key(|s| s.at);
    Ok(result)
}

#[derive(Default)]
struct ConnectionResult {
    latencies: Vec<u64>,
    errors: u64,
    versions: Vec<Seen>,
    failures: Vec<String>,
}

impl ConnectionResult {
    fn fail(&mut self, what: String) {
        self.errors += 1;
        if self.failures.len() < 5 {
            self.failures.push(what);
        }
    }
}

/// One connection's loop.
async fn connection_loop(target: &Target, deadline: Instant) -> ConnectionResult {
    let mut out = ConnectionResult {
        latencies: Vec::with_capacity(64 * 1024),
        ..ConnectionResult::default()
    };
    let mut reconnects = 0u32;
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let host = target.addr.to_string();
    let mut sent = 0u64;
    while sent < MAX_REQUESTS_PER_CONNECTION && Instant::now() < deadline {
        let started = Instant::now();
        if target.connection_per_request {
            // The handshake is part of what is measured.
            match tokio::time::timeout(REQUEST_TIMEOUT, connect(target)).await {
                Ok(Ok(s)) => sender = Some(s),
                Ok(Err(e)) => {
                    out.fail(format!("connect: {e:#}"));
                    continue;
                }
                Err(_) => {
                    out.fail("connect timed out".into());
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else {
            if reconnects > MAX_RECONNECTS {
                break;
            }
            reconnects += 1;
            match tokio::time::timeout(REQUEST_TIMEOUT, connect(target)).await {
                Ok(Ok(s)) => sender = Some(s),
                Ok(Err(e)) => {
                    out.fail(format!("connect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => out.fail("connect timed out".into()),
            }
            continue;
        };
        sent += 1;
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, one_request(s, target, &host)).await;
        match outcome {
            Ok(Ok(version)) => {
                out.latencies.push(duration_ns(started.elapsed()));
                if let Some(version) = version {
                    out.versions.push(Seen {
                        at: Instant::now(),
                        version,
                    });
                }
            }
            Ok(Err(Failure::Answer(what))) => out.fail(what),
            Ok(Err(Failure::Transport(what))) => {
                out.fail(what);
                sender = None; // the connection is unusable; open a new one
            }
            Err(_) => {
                out.fail("request timed out".into());
                sender = None;
            }
        }
        if target.connection_per_request {
            sender = None;
        }
    }
    out
}

enum Failure {
    /// The connection worked but the answer was not the expected one.
    Answer(String),
    /// The connection failed.
    Transport(String),
}

fn fill(template: &str) -> String {
    if template.contains(SEQ) {
        let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
        template.replace(SEQ, &format!("{seq:09}"))
    } else {
        template.to_owned()
    }
}

/// One request; on success, the answer's API version when asked for.
async fn one_request(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    host: &str,
) -> Result<Option<String>, Failure> {
    sender
        .ready()
        .await
        .map_err(|e| Failure::Transport(format!("not ready: {e}")))?;
    let mut req = Request::builder()
        .method(target.method.clone())
        .uri(fill(&target.path))
        .header(hyper::header::HOST, host);
    if let Some(auth) = &target.authorization {
        req = req.header(hyper::header::AUTHORIZATION, auth.as_str());
    }
    if target.connection_per_request {
        req = req.header(hyper::header::CONNECTION, "close");
    }
    let body = match &target.body {
        Some(body) => {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(fill(body))
        }
        None => Bytes::new(),
    };
    let req = req
        .body(Full::new(body))
        .map_err(|e| Failure::Answer(format!("building the request: {e}")))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| Failure::Transport(format!("sending: {e}")))?;
    let status = res.status().as_u16();
    let version = target.record_versions.then(|| {
        res.headers()
            .get("x-sfop-api-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    });
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| Failure::Transport(format!("reading the body: {e}")))?
        .to_bytes();
    let len_ok = target.expect_body_len.is_none_or(|n| n == body.len());
    let contains_ok = target
        .expect_body_contains
        .as_deref()
        .is_none_or(|needle| body.windows(needle.len()).any(|w| w == needle.as_bytes()));
    if status == target.expect_status && len_ok && contains_ok {
        Ok(version)
    } else {
        Err(Failure::Answer(format!(
            "{status}, {} bytes: {}",
            body.len(),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )))
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    stream.set_nodelay(true)?;
    match &target.transport {
        Transport::Plain => handshake(TokioIo::new(stream)).await,
        Transport::Tls(config) => {
            let tls = TlsConnector::from(config.clone())
                .connect(ServerName::try_from("localhost")?, stream)
                .await
                .context("TLS handshake")?;
            handshake(TokioIo::new(tls)).await
        }
    }
}

async fn handshake<I>(io: I) -> Result<SendRequest<Full<Bytes>>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes.
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request on a fresh connection: `(status, headers, body)`.
pub async fn fetch_once(target: &Target) -> Result<(u16, hyper::HeaderMap, Bytes)> {
    let mut sender = connect(target).await?;
    let mut req = Request::builder()
        .method(target.method.clone())
        .uri(fill(&target.path))
        .header(hyper::header::HOST, target.addr.to_string());
    if let Some(auth) = &target.authorization {
        req = req.header(hyper::header::AUTHORIZATION, auth.as_str());
    }
    let body = match &target.body {
        Some(body) => {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(fill(body))
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(body))?;
    let res = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
        .await
        .with_context(|| format!("{} {} timed out", target.method, target.path))??;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, headers, body))
}

/// One form POST on a fresh plain connection: `(status, headers, body)`.
pub async fn post_form(
    addr: SocketAddr,
    path: &str,
    form: String,
) -> Result<(u16, hyper::HeaderMap, Bytes)> {
    let mut target = Target::get(addr, path);
    target.method = hyper::Method::POST;
    let mut sender = connect(&target).await?;
    let req = Request::post(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(Full::new(Bytes::from(form)))?;
    let res = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
        .await
        .with_context(|| format!("POST {path} timed out"))??;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    Ok((status, headers, res.into_body().collect().await?.to_bytes()))
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
