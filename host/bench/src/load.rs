//! The load generator: a fixed number of keep-alive HTTP/1.1 connections
//! (hyper's client `conn` API over a tokio `TcpStream`), each sending GETs
//! back to back until a deadline.
//!
//! Every loop is bounded both in time (the measurement deadline, plus a
//! per-request timeout) and in count (`MAX_REQUESTS_PER_CONNECTION`,
//! `MAX_RECONNECTS`), and traffic only ever goes to 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Hard cap per connection and run, far above what one loopback connection
/// can do in a few seconds; only there so that no loop is unbounded.
const MAX_REQUESTS_PER_CONNECTION: u64 = 50_000_000;
/// Reconnect attempts per connection and run after errors.
const MAX_RECONNECTS: u32 = 1_000;
/// A request taking longer than this counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What to hit and what counts as success.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub expect_status: u16,
    /// Expected body length, when known; a different length is an error.
    pub expect_body_len: Option<usize>,
    /// `Authorization` header value to send, if any.
    pub authorization: Option<String>,
}

/// One run's outcome, over all connections.
#[derive(Debug, Default)]
pub struct RunResult {
    /// Latency of each successful request, in nanoseconds, sorted ascending.
    pub latencies_ns: Vec<u64>,
    /// Failed requests: transport errors, timeouts, wrong status or body length.
    pub errors: u64,
    /// From the start of the run until the last connection finished.
    pub elapsed: Duration,
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
        let (latencies, errors) = joined.context("a load connection task panicked")?;
        result.latencies_ns.extend(latencies);
        result.errors += errors;
    }
    result.elapsed = start.elapsed();
    result.latencies_ns.sort_unstable();
    Ok(result)
}

/// One connection's loop: `(latencies_ns, errors)`.
async fn connection_loop(target: &Target, deadline: Instant) -> (Vec<u64>, u64) {
    let mut latencies = Vec::with_capacity(64 * 1024);
    let mut errors = 0u64;
    let mut reconnects = 0u32;
    let mut sender: Option<SendRequest<Empty<Bytes>>> = None;
    let host = target.addr.to_string();
    let mut sent = 0u64;
    while sent < MAX_REQUESTS_PER_CONNECTION && Instant::now() < deadline {
        let Some(s) = sender.as_mut() else {
            if reconnects > MAX_RECONNECTS {
                break;
            }
            reconnects += 1;
            match tokio::time::timeout(REQUEST_TIMEOUT, connect(target.addr)).await {
                Ok(Ok(s)) => sender = Some(s),
                _ => {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            continue;
        };
        sent += 1;
        let started = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, one_request(s, target, &host)).await;
        match outcome {
            Ok(Ok(())) => latencies.push(duration_ns(started.elapsed())),
            Ok(Err(Failure::Answer)) => errors += 1,
            Ok(Err(Failure::Transport)) | Err(_) => {
                errors += 1;
                sender = None; // the connection is unusable; open a new one
            }
        }
    }
    (latencies, errors)
}

enum Failure {
    /// The connection worked but the answer was not the expected one.
    Answer,
    /// The connection failed.
    Transport,
}

async fn one_request(
    sender: &mut SendRequest<Empty<Bytes>>,
    target: &Target,
    host: &str,
) -> Result<(), Failure> {
    sender.ready().await.map_err(|_| Failure::Transport)?;
    let mut req = Request::get(target.path.as_str()).header(hyper::header::HOST, host);
    if let Some(auth) = &target.authorization {
        req = req.header(hyper::header::AUTHORIZATION, auth.as_str());
    }
    let req = req.body(Empty::new()).map_err(|_| Failure::Answer)?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|_| Failure::Transport)?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|_| Failure::Transport)?
        .to_bytes();
    let len_ok = target.expect_body_len.is_none_or(|n| n == body.len());
    if status == target.expect_status && len_ok {
        Ok(())
    } else {
        Err(Failure::Answer)
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes.
        let _ = conn.await;
    });
    Ok(sender)
}

/// One GET on a fresh connection: `(status, headers, body)`.
pub async fn fetch_once(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> Result<(u16, hyper::HeaderMap, Bytes)> {
    let mut sender = connect(addr).await?;
    let mut req = Request::get(path).header(hyper::header::HOST, addr.to_string());
    if let Some(auth) = authorization {
        req = req.header(hyper::header::AUTHORIZATION, auth);
    }
    let req = req.body(Empty::new())?;
    let res = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
        .await
        .with_context(|| format!("GET {path} timed out"))??;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, headers, body))
}

/// One form POST on a fresh connection; returns the body.
pub async fn post_form(addr: SocketAddr, path: &str, form: String) -> Result<Bytes> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, conn) =
        http1::handshake::<_, http_body_util::Full<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::post(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(http_body_util::Full::new(Bytes::from(form)))?;
    let res = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
        .await
        .with_context(|| format!("POST {path} timed out"))??;
    Ok(res.into_body().collect().await?.to_bytes())
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
