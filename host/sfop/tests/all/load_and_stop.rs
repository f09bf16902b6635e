//! Issue 16, defects 1 and 3, through the real `sfop serve` binary over
//! HTTPS: a SIGTERM in the middle of a stream of withdrawals leaves no
//! request that was written unanswered and no acknowledged withdrawal
//! missing after a restart; many more connections than the configured
//! bounds get fast refusals (503 `A0013` with `Retry-After`, or a closed
//! connection before the TLS handshake's work), the answered ones stay
//! correct, memory stays bounded and latency is normal again afterwards.
//!
//! Figures are printed (run with `--nocapture`); the assertions on time are
//! generous bounds, not measurements: the machine is shared.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::harness::{Reply, send};
use crate::served::{Connection, Served, serve_command};

/// Bound on one request or connection attempt: a hang fails the test.
const BOUND: Duration = Duration::from_secs(30);
/// Keep-alive connections sending withdrawals during the stop.
const STREAMS: u32 = 32;
/// Withdrawals acknowledged (over all streams) before the SIGTERM.
const TERM_AFTER: usize = 96;
/// Stream `w` numbers its withdrawals from `w * SPACING + 1`.
const SPACING: u32 = 1_000_000;
/// A stream never gets this far; a bound on its loop.
const MAX_STREAM: u32 = 100_000;
const CONTRACT: &str = "5000000000001";

/// `sfop serve` over `data` with `config` (TOML) as its config file.
fn start(dir: &std::path::Path, name: &str, config: &str) -> Result<Served> {
    let data = dir.join("data");
    let log = dir.join(format!("{name}.log"));
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, config)?;
    let mut cmd = serve_command(&data, &log)?;
    // The config file's grace, not the test harness's none.
    cmd.env_remove("SFOP_SHUTDOWN_GRACE_MS");
    cmd.arg("--config").arg(&file);
    Served::spawn(cmd, &data, &log)
}

fn code(v: &Value) -> &str {
    v["rsp_code"].as_str().unwrap_or_default()
}

fn kst(len: usize) -> String {
    sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    )[..len]
        .to_owned()
}

/// The process's resident memory, KiB (`/proc/<pid>/status`).
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmRSS")?
        .parse()
        .context("VmRSS digits")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `sfop serve` over `plugins` (not the reference APIs' folder).
fn start_over(
    dir: &std::path::Path,
    name: &str,
    config: &str,
    plugins: &std::path::Path,
) -> Result<Served> {
    let data = dir.join("data");
    let log = dir.join(format!("{name}.log"));
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, config)?;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sfop"));
    cmd.args(["serve", "--tls", "self-signed", "--auth", "biscuit"])
        .args(["--bootstrap", "trusted"])
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        .arg("--plugins")
        .arg(plugins)
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log)?);
    Served::spawn(cmd, &data, &log)
}

/// A plugins folder: bank-status, and `test/spin` (a loop that ends at its
/// CPU deadline, 20 ms here) twice: `spin` with its own bound of 16 calls
/// at once, `spin-b` under the platform's per-API bound.
fn plugins(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let built = crate::harness::built_plugins()?;
    let plugins = dir.join("plugins");
    let copy = |from: &str, to: &str, manifest: Option<String>| -> Result<()> {
        let (src, dst) = (built.join(from), plugins.join(to));
        std::fs::create_dir_all(&dst)?;
        std::fs::copy(src.join("api.wasm"), dst.join("api.wasm"))?;
        match manifest {
            Some(text) => std::fs::write(dst.join("sfop.toml"), text)?,
            None => {
                std::fs::copy(src.join("sfop.toml"), dst.join("sfop.toml"))?;
            }
        }
        Ok(())
    };
    copy("api/bank-status", "bank-status", None)?;
    let spin = |name: &str, own_bound: &str| {
        format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"Loops until its deadline.\"\n\
             scope = \"oob\"\ncapabilities = []\n\n[[routes]]\nmethod = \"GET\"\n\
             path = \"/test/{name}\"\n\n[limits]\ncpu_ms = 20\n{own_bound}"
        )
    };
    copy(
        "test/spin",
        "spin",
        Some(spin("spin", "max_concurrency = 16\n")),
    )?;
    copy("test/spin", "spin-b", Some(spin("spin-b", "")))?;
    Ok(plugins)
}

/// `n` keep-alive connections, opened 16 at a time (under `max_handshakes`).
async fn connections(served: &Arc<Served>, n: usize) -> Result<Vec<Connection>> {
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let batch: Vec<_> = (0..(n - all.len()).min(16))
            .map(|_| {
                let served = served.clone();
                tokio::spawn(async move { served.connect().await })
            })
            .collect();
        for conn in batch {
            all.push(conn.await??);
        }
    }
    Ok(all)
}

/// Hong's 097 account, its withdrawals and the institution's ids.
struct Account {
    use_code: String,
    fin: String,
}

impl Account {
    async fn of(served: &Served, token: &str) -> Result<Self> {
        let demo: Value = serde_json::from_str(&std::fs::read_to_string(
            served.data.join("demo-client.json"),
        )?)?;
        let list = served
            .connect()
            .await?
            .get_bearer(
                "/v2.0/account/list?user_seq_no=1100000001&include_cancel_yn=N&sort_order=A",
                token,
            )
            .await?
            .json()?;
        let fin = list["res_list"]
            .as_array()
            .and_then(|l| l.iter().find(|a| a["bank_code_std"] == "097"))
            .and_then(|a| a["fintech_use_num"].as_str())
            .with_context(|| format!("hong's 097 account: {list}"))?;
        Ok(Self {
            use_code: demo["client_use_code"]
                .as_str()
                .context("client_use_code")?
                .to_owned(),
            fin: fin.to_owned(),
        })
    }

    fn id(&self, n: u32) -> String {
        format!("{}U{n:09}", self.use_code)
    }

    fn amount(n: u32) -> i64 {
        100 + i64::from(n % 7) * 10
    }

    fn withdraw(&self, n: u32) -> Vec<u8> {
        json!({
            "bank_tran_id": self.id(n),
            "cntr_account_type": "N",
            "cntr_account_num": CONTRACT,
            "dps_print_content": "홍길동",
            "fintech_use_num": self.fin,
            "wd_print_content": "drain test",
            "tran_amt": Self::amount(n).to_string(),
            "tran_dtime": kst(14),
            "req_client_name": "홍길동",
            "req_client_num": "HONG0001",
            "transfer_purpose": "TR",
        })
        .to_string()
        .into_bytes()
    }

    async fn balance(&self, served: &Served, token: &str, n: u32) -> Result<i64> {
        let b = served
            .connect()
            .await?
            .get_bearer(
                &format!(
                    "/v2.0/account/balance/fin_num?bank_tran_id={}&fintech_use_num={}&tran_dtime={}",
                    self.id(900_000_000 + n),
                    self.fin,
                    kst(14)
                ),
                token,
            )
            .await?
            .json()?;
        ensure!(code(&b) == "A0000", "balance: {b}");
        b["balance_amt"]
            .as_str()
            .context("balance_amt")?
            .parse()
            .context("balance_amt digits")
    }
}

/// What one stream of withdrawals saw.
#[derive(Default)]
struct StreamEnd {
    /// `(number, bank_tran_date)` of each acknowledged withdrawal.
    acked: Vec<(u32, String)>,
    /// Withdrawals written whose connection broke before an answer, with
    /// when they were sent.
    unanswered: Vec<(u32, Instant)>,
    /// Answers that carried `Connection: close`.
    told_to_close: u32,
}

/// Withdrawals one after another on a keep-alive connection, a new
/// connection when an answer says `Connection: close`, until no new
/// connection can be made (the listener is closed).
async fn stream(
    served: Arc<Served>,
    account: Arc<Account>,
    token: Arc<String>,
    first: u32,
    acks: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<StreamEnd> {
    let mut end = StreamEnd::default();
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let mut conn: Option<Connection> = None;
    for n in first..first + MAX_STREAM {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match tokio::time::timeout(BOUND, served.connect()).await {
                Ok(Ok(c)) => conn.insert(c),
                // Refused, or closed before the handshake's end: nothing
                // was written.
                Ok(Err(_)) => return Ok(end),
                Err(_) => bail!("connecting hung"),
            },
        };
        let day = kst(8);
        let sent = Instant::now();
        let reply = tokio::time::timeout(
            BOUND,
            c.send(
                "POST",
                "/v2.0/transfer/withdraw/fin_num",
                &headers,
                account.withdraw(n),
            ),
        )
        .await
        .with_context(|| format!("withdrawal {n} hung"))?;
        let reply = match reply {
            Ok(reply) => reply,
            Err(_) => {
                end.unanswered.push((n, sent));
                return Ok(end);
            }
        };
        let answer = reply.json()?;
        ensure!(
            reply.status == 200 && code(&answer) == "A0000",
            "withdrawal {n}: {} {answer}",
            reply.status
        );
        let date = answer["bank_tran_date"]
            .as_str()
            .unwrap_or(day.as_str())
            .to_owned();
        end.acked.push((n, date));
        let _ = acks.send(());
        if reply.header("connection") == Some("close") {
            end.told_to_close += 1;
            conn = None;
        }
    }
    bail!("stream {first} never saw the listener close")
}

/// Tries a TCP connection every few milliseconds until one is refused:
/// returns when the last one succeeded and when the first was refused.
async fn watch_listener(addr: SocketAddr) -> Result<(Instant, Instant)> {
    let mut last_open = Instant::now();
    let started = Instant::now();
    while started.elapsed() < BOUND {
        let at = Instant::now();
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => last_open = at,
            Err(_) => return Ok((last_open, at)),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("the listener was still open {BOUND:?} after SIGTERM")
}

/// Polls `/readyz` until it answers 503; returns when it first did.
async fn watch_readyz(ops: SocketAddr) -> Result<Instant> {
    let started = Instant::now();
    while started.elapsed() < BOUND {
        let at = Instant::now();
        let reply = send(ops, "GET", "/readyz", &[], Vec::new()).await?;
        if reply.status == 503 {
            return Ok(at);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("/readyz never answered 503")
}

fn sigterm(pid: u32) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -TERM failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_request_written_and_loses_no_withdrawal() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = "[shutdown]\ngrace_ms = 500\ndrain_ms = 10000\n";
    let served = start(dir.path(), "first", config)?;
    let ops = served.ops.context("ops address")?;
    assert_eq!(
        send(ops, "GET", "/readyz", &[], Vec::new()).await?.status,
        200
    );
    let token = served.user_token("hong", "hong1234").await?;
    let account = Arc::new(Account::of(&served, &token).await?);
    let before = account.balance(&served, &token, 1).await?;

    let (served, token) = (Arc::new(served), Arc::new(token));
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let streams: Vec<_> = (0..STREAMS)
        .map(|w| {
            tokio::spawn(stream(
                served.clone(),
                account.clone(),
                token.clone(),
                w * SPACING + 1,
                acks.clone(),
            ))
        })
        .collect();
    drop(acks);
    for _ in 0..TERM_AFTER {
        acked.recv().await.context("the streams ended early")?;
    }
    let pid = served.pid();
    let rss = rss_kib(pid)?;
    let term = Instant::now();
    sigterm(pid)?;
    let (readyz, listener) = tokio::join!(watch_readyz(ops), watch_listener(served.addr));
    let (unready, (last_open, refused)) = (readyz?, listener?);

    let mut acked: Vec<(u32, String)> = Vec::new();
    let mut unanswered = Vec::new();
    let mut told_to_close = 0;
    for handle in streams {
        let end = handle.await??;
        acked.extend(end.acked);
        unanswered.extend(end.unanswered);
        told_to_close += end.told_to_close;
    }
    let served = Arc::try_unwrap(served)
        .ok()
        .context("the streams still hold the server")?;
    served.stop()?; // waits for the exit (a second SIGTERM changes nothing)
    let exited = term.elapsed();
    let written_before_close = unanswered
        .iter()
        .filter(|(_, sent)| *sent <= last_open)
        .count();
    eprintln!(
        "drain: {STREAMS} streams, {} withdrawals answered, {told_to_close} answers with \
         Connection: close, {} written and unanswered ({written_before_close} of them before \
         the listener closed); /readyz 503 after {:.1} ms, listener closed between {:.1} and \
         {:.1} ms, exit after {:.1} ms; RSS {rss} KiB",
        acked.len(),
        unanswered.len(),
        ms(unready - term),
        ms(last_open - term),
        ms(refused - term),
        ms(exited),
    );
    assert_eq!(
        written_before_close, 0,
        "requests written before the listener closed were not answered"
    );
    assert!(
        unready < last_open,
        "/readyz said 503 only after the listener closed"
    );
    assert!(
        told_to_close >= STREAMS,
        "every stream's connection was told to close while draining ({told_to_close})"
    );

    // Restart: every acknowledged withdrawal is there, once.
    let served = start(dir.path(), "second", config)?;
    let oob = served.oob_token().await?;
    let mut conn = served.connect().await?;
    let auth = format!("Bearer {oob}");
    let mut total = 0;
    for batch in acked.chunks(25) {
        let query = json!({
            "check_type": "1",
            "tran_dtime": kst(14),
            "req_cnt": batch.len().to_string(),
            "req_list": batch.iter().enumerate().map(|(k, (n, date))| json!({
                "tran_no": (k + 1).to_string(),
                "org_bank_tran_id": account.id(*n),
                "org_bank_tran_date": date,
                "org_tran_amt": Account::amount(*n).to_string(),
            })).collect::<Vec<_>>(),
        });
        let r = conn
            .send(
                "POST",
                "/v2.0/transfer/result",
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
                query.to_string().into_bytes(),
            )
            .await?
            .json()?;
        ensure!(code(&r) == "A0000", "{r}");
        let list = r["res_list"].as_array().context("res_list")?;
        ensure!(list.len() == batch.len(), "{r}");
        for (item, (n, _)) in list.iter().zip(batch) {
            assert_eq!(
                (&item["rsp_code"], &item["bank_rsp_code"]),
                (&json!("A0000"), &json!("000")),
                "acknowledged {} is missing after the restart: {item}",
                account.id(*n)
            );
            total += Account::amount(*n);
        }
    }
    let user = served.user_token("hong", "hong1234").await?;
    let after = account.balance(&served, &user, 2).await?;
    // Nothing was left unanswered, so nothing is in doubt: the balance
    // moved by the acknowledged withdrawals exactly.
    if unanswered.is_empty() {
        assert_eq!(
            after,
            before - total,
            "balance before {before}, after {after}"
        );
    }
    served.stop()
}

/// How one connection of the overload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// `200 A0000` with the body the API gives.
    Served,
    /// `503 A0013` with `Retry-After`.
    Shed,
    /// Closed before a request could be written (over `max_handshakes`
    /// or `max_connections`).
    Refused,
}

/// One connection of the overload: connect, `requests` bank-status calls.
async fn visitor(
    served: Arc<Served>,
    token: Arc<String>,
    requests: u32,
) -> Result<Vec<(Fate, Duration)>> {
    let started = Instant::now();
    let mut conn = match tokio::time::timeout(BOUND, served.connect()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(_)) => return Ok(vec![(Fate::Refused, started.elapsed())]),
        Err(_) => bail!("a connection waited {BOUND:?}"),
    };
    let mut fates = Vec::new();
    for _ in 0..requests {
        let sent = Instant::now();
        let reply = tokio::time::timeout(BOUND, conn.get_bearer("/v2.0/bank/status", &token))
            .await
            .context("a request waited {BOUND:?}")??;
        fates.push((judge(&reply)?, sent.elapsed()));
        if reply.header("connection") == Some("close") {
            break;
        }
    }
    Ok(fates)
}

/// Served or shed, and nothing else; a shed answer says when to come back.
fn judge(reply: &Reply) -> Result<Fate> {
    let body = reply.json()?;
    match (reply.status, code(&body)) {
        (200, "A0000") => {
            ensure!(
                body["res_list"].is_array(),
                "bank status without res_list: {body}"
            );
            Ok(Fate::Served)
        }
        (503, "A0013") => {
            ensure!(
                reply.header("retry-after") == Some("1"),
                "503 without Retry-After: {:?}",
                reply.headers
            );
            ensure!(body["api_tran_id"].is_string(), "{body}");
            Ok(Fate::Shed)
        }
        (status, _) => bail!("neither served nor shed: {status} {body}"),
    }
}

/// Sequential bank-status calls on one connection: their latencies, sorted.
async fn latencies(served: &Served, token: &str, n: usize) -> Result<Vec<Duration>> {
    let mut conn = served.connect().await?;
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let sent = Instant::now();
        let reply = conn.get_bearer("/v2.0/bank/status", token).await?;
        took.push(sent.elapsed());
        ensure!(judge(&reply)? == Fate::Served, "not served when idle");
    }
    took.sort();
    Ok(took)
}

/// How each call of one connection ended, and how long it took.
type Calls = tokio::task::JoinHandle<Result<Vec<(Fate, Duration)>>>;

/// `test/spin`'s answers: its deadline (`504 A0007`), or shed.
fn judge_spin(reply: &Reply) -> Result<Fate> {
    let body = reply.json()?;
    match (reply.status, code(&body)) {
        (504, "A0007") => Ok(Fate::Served),
        (503, "A0013") => judge(reply),
        (status, _) => bail!("spin: neither its deadline nor shed: {status} {body}"),
    }
}

/// Every connection sends `requests` calls of `path` one after another,
/// all connections at once: how each call ended and how long it took.
async fn storm(
    conns: Vec<Connection>,
    path: &'static str,
    token: &Arc<String>,
    requests: u32,
) -> Vec<Calls> {
    conns
        .into_iter()
        .map(|mut conn| {
            let token = token.clone();
            tokio::spawn(async move {
                let mut fates = Vec::new();
                for _ in 0..requests {
                    let sent = Instant::now();
                    let reply = tokio::time::timeout(BOUND, conn.get_bearer(path, &token))
                        .await
                        .with_context(|| format!("{path} waited {BOUND:?}"))??;
                    fates.push((judge_spin(&reply)?, sent.elapsed()));
                }
                Ok(fates)
            })
        })
        .collect()
}

async fn gather(tasks: Vec<Calls>) -> Result<Vec<(Fate, Duration)>> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// `(count, p50, p99, max)` of the calls that ended as `fate`.
fn figures(fates: &[(Fate, Duration)], fate: Fate) -> String {
    let mut took: Vec<Duration> = fates
        .iter()
        .filter(|(f, _)| *f == fate)
        .map(|(_, d)| *d)
        .collect();
    took.sort();
    format!(
        "{} (p50 {:.1} p99 {:.1} max {:.1} ms)",
        took.len(),
        ms(percentile(&took, 0.5)),
        ms(percentile(&took, 0.99)),
        ms(took.last().copied().unwrap_or_default())
    )
}

fn count(fates: &[(Fate, Duration)], fate: Fate) -> usize {
    fates.iter().filter(|(f, _)| *f == fate).count()
}

/// The value of the `/metrics` line that starts with `series`.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_at_once_and_the_gateway_recovers() -> Result<()> {
    const CONNECTIONS: u32 = 1_000;
    const REQUESTS: u32 = 5;
    let dir = tempfile::tempdir()?;
    let plugins = plugins(dir.path())?;
    let served = start_over(
        dir.path(),
        "overload",
        "[gateway]\nmax_in_flight = 64\napi_max_in_flight = 64\nmax_handshakes = 64\n\
         max_connections = 512\n[shutdown]\ngrace_ms = 0\n",
        &plugins,
    )?;
    let ops = served.ops.context("ops address")?;
    let token = served.oob_token().await?;
    let idle_before = latencies(&served, &token, 50).await?;
    let pid = served.pid();
    let rss_before = rss_kib(pid)?;

    // Throughout: memory, and the ops listener keeps answering.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut rss_peak, mut ops_slowest) = (0, Duration::ZERO);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                rss_peak = rss_peak.max(rss_kib(pid)?);
                let asked = Instant::now();
                let health =
                    tokio::time::timeout(BOUND, send(ops, "GET", "/healthz", &[], Vec::new()))
                        .await
                        .context("/healthz waited")??;
                ensure!(
                    health.status == 200,
                    "/healthz under load: {}",
                    health.status
                );
                ops_slowest = ops_slowest.max(asked.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, anyhow::Error>((rss_peak, ops_slowest))
        })
    };

    let (served, token) = (Arc::new(served), Arc::new(token));
    // A. Many more connections than the bounds, all at once, each asking
    //    for bank status a few times.
    let load = Instant::now();
    let visitors: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(visitor(served.clone(), token.clone(), REQUESTS)))
        .collect();
    let mut crowd = Vec::new();
    for v in visitors {
        crowd.extend(v.await??);
    }
    let crowd_took = load.elapsed();

    // B. One API at its own bound (spin: 16 at once) with 48 connections
    //    calling it: the excess is shed, and bank status, beside it, is
    //    never refused.
    let spinners = connections(&served, 48).await?;
    let mut bank = served.connect().await?;
    let spinning = storm(spinners, "/test/spin", &token, 3).await;
    let mut beside = Vec::new();
    while !spinning.iter().all(|t| t.is_finished()) {
        let sent = Instant::now();
        let reply = bank.get_bearer("/v2.0/bank/status", &token).await?;
        ensure!(
            judge(&reply)? == Fate::Served,
            "bank status was refused while spin was at its own bound"
        );
        beside.push((Fate::Served, sent.elapsed()));
    }
    let spin = gather(spinning).await?;

    // C. The whole listener's bound: 96 calls at once of an API under the
    //    platform's bound (64, as the listener's).
    let crowd_b = connections(&served, 96).await?;
    let spin_b = gather(storm(crowd_b, "/test/spin-b", &token, 1).await).await?;

    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (rss_peak, ops_slowest) = sampler.await??;
    let idle_after = latencies(&served, &token, 50).await?;
    let rss_after = rss_kib(pid)?;
    let metrics = String::from_utf8(
        send(ops, "GET", "/metrics", &[], Vec::new())
            .await?
            .body
            .to_vec(),
    )?;
    let shed = |reason: &str| metric(&metrics, &format!("sfop_shed_total{{reason=\"{reason}\"}}"));
    eprintln!(
        "overload A: {CONNECTIONS} connections x up to {REQUESTS} bank-status calls in {:.0} ms: \
         served {}, answered 503 {}, connections closed at once {}",
        ms(crowd_took),
        figures(&crowd, Fate::Served),
        figures(&crowd, Fate::Shed),
        figures(&crowd, Fate::Refused),
    );
    eprintln!(
        "overload B: spin (own bound 16), 48 connections x 3: ran to its deadline {}, answered \
         503 {}; bank-status beside it served {}",
        figures(&spin, Fate::Served),
        figures(&spin, Fate::Shed),
        figures(&beside, Fate::Served),
    );
    eprintln!(
        "overload C: spin-b, 96 calls at once against max_in_flight 64: ran {}, answered 503 {}",
        figures(&spin_b, Fate::Served),
        figures(&spin_b, Fate::Shed),
    );
    eprintln!(
        "overload: sfop_shed_total connections {} handshakes {} in_flight {} api_in_flight {}; \
         /healthz slowest {:.1} ms; RSS {rss_before} KiB before, {rss_peak} KiB peak, \
         {rss_after} KiB after; idle bank-status p50 {:.2} ms before, {:.2} ms after \
         (p99 {:.2} / {:.2} ms)",
        shed("connections"),
        shed("handshakes"),
        shed("in_flight"),
        shed("api_in_flight"),
        ms(ops_slowest),
        ms(percentile(&idle_before, 0.5)),
        ms(percentile(&idle_after, 0.5)),
        ms(percentile(&idle_before, 0.99)),
        ms(percentile(&idle_after, 0.99)),
    );
    assert!(count(&crowd, Fate::Served) > 0, "nothing was served");
    assert!(
        count(&crowd, Fate::Shed) + count(&crowd, Fate::Refused) > 0,
        "{CONNECTIONS} connections against bounds of 64 and nothing was refused"
    );
    assert!(count(&spin, Fate::Shed) > 0 && count(&spin, Fate::Served) > 0);
    assert!(shed("api_in_flight") > 0, "{metrics}");
    assert!(!beside.is_empty());
    assert!(count(&spin_b, Fate::Shed) > 0 && count(&spin_b, Fate::Served) > 0);
    assert!(shed("in_flight") > 0, "{metrics}");
    assert!(
        metric(
            &metrics,
            "sfop_requests_total{api=\"spin\",version=\"0.1.0\",outcome=\"shed\"}"
        ) > 0
    );
    // Memory: a generous bound (the baseline holds wasmtime's pools).
    assert!(
        rss_peak < rss_before + 512 * 1024,
        "RSS grew from {rss_before} to {rss_peak} KiB"
    );
    // Normal again: generous, the machine is shared.
    let (before, after) = (percentile(&idle_before, 0.5), percentile(&idle_after, 0.5));
    assert!(
        after < before * 10 + Duration::from_millis(20),
        "idle latency {after:?} after the load, {before:?} before"
    );
    Arc::try_unwrap(served)
        .ok()
        .context("the connections still hold the server")?
        .stop()
}

/// A TLS connection to `addr` trusting `cert`, offering `alpn`.
async fn tls(
    addr: SocketAddr,
    cert: &std::path::Path,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(cert)? {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls_pki_types::ServerName::try_from("localhost")?, tcp)
        .await?)
}

fn get(path: &str) -> Result<hyper::Request<http_body_util::Empty<bytes::Bytes>>> {
    Ok(hyper::Request::builder()
        .uri(format!("https://localhost{path}"))
        .body(http_body_util::Empty::new())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_sends_http2_goaway_and_serves_new_connections_until_the_grace_ends() -> Result<()>
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let t = crate::harness::TestPlatform::start_with(
        vec![crate::harness::Package::built("api/bank-status")],
        |config| {
            config.auth.mode = sfop::AuthMode::Off;
            config.shutdown.grace_ms = 2_000;
        },
    )
    .await?;
    let (addr, ops) = (t.addr(), t.platform.ops_addr);
    let cert = t.platform.tls_cert.clone().context("certificate")?;
    let stream = tls(addr, &cert, b"h2").await?;
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    assert_eq!(
        h2.send_request(get("/v2.0/bank/status")?).await?.status(),
        200
    );

    let platform = t.platform;
    let stop = tokio::spawn(platform.terminate());
    watch_readyz(ops).await?;
    // The HTTP/2 connection is told to go away (GOAWAY) and ends, in the
    // grace period: nothing was in progress on it.
    tokio::time::timeout(BOUND, conn)
        .await
        .context("the HTTP/2 connection was not told to go away")???;
    // Meanwhile the listener still serves new connections, and tells
    // HTTP/1.1 ones to close after their answer.
    let stream = tls(addr, &cert, b"http/1.1").await?;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let reply = h1.send_request(get("/v2.0/bank/status")?).await?;
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    stop.await??;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after the stop"
    );
    Ok(())
}
