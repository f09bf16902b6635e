//! Issue 22: one API cannot slow another. Misbehaving plugins are hammered
//! (a busy loop to the CPU deadline, unbounded allocation, a panic, deep
//! recursion, and one that passed the testbed but spins on a secret value)
//! while a well-behaved neighbour's latency is measured in the same run; the
//! guest memory budget refuses admission when it is full and the process's
//! RSS stays bounded; a version whose calls keep failing is quarantined
//! (throttled) and says why in `/metrics`. See
//! docs/adr/0020-bulkheads-and-memory-budget.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::harness::{Package, TestPlatform, assert_envelope, built_plugins};

const NEIGHBOUR: &str = "/v2.0/bank/status";

fn manifest(name: &str, path: &str, capabilities: &str, limits: &str) -> String {
    format!(
        r#"
name = "{name}"
version = "0.1.0"
description = "test"
scope = "oob"
capabilities = [{capabilities}]

[[routes]]
method = "GET"
path = "{path}"

[limits]
{limits}
"#
    )
}

/// A keep-alive HTTP/1.1 connection.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { sender, addr })
    }

    /// Status and body of one GET.
    async fn get(&mut self, path: &str) -> Result<(u16, Bytes, Option<String>)> {
        self.sender.ready().await?;
        let req = hyper::Request::get(path)
            .header("host", self.addr.to_string())
            .body(Empty::new())?;
        let res = self.sender.send_request(req).await?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, body, retry_after))
    }
}

/// The isolation tests measure latency: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `future` on a thread of its own (a current-thread runtime), as a
/// client in another process would: the load generators do not queue on
/// the gateway's I/O workers.
async fn elsewhere<T: Send + 'static>(
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(runtime) = runtime {
            let _ = tx.send(runtime.block_on(future));
        }
    });
    rx.await.context("client thread")
}

/// The neighbour's latencies over `n` sequential calls on one connection;
/// every answer must be 200 `A0000`.
async fn neighbour_latencies(addr: SocketAddr, n: usize) -> Result<Vec<Duration>> {
    elsewhere(neighbour_latencies_here(addr, n)).await?
}

async fn neighbour_latencies_here(addr: SocketAddr, n: usize) -> Result<Vec<Duration>> {
    let mut conn = Conn::open(addr).await?;
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let (status, body, _) = conn.get(NEIGHBOUR).await?;
        took.push(started.elapsed());
        ensure!(
            status == 200 && body.windows(5).any(|w| w == b"A0000"),
            "the neighbour answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        // A steady pace, as a client would call: not a saturating loop.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(took)
}

fn p99(mut took: Vec<Duration>) -> Duration {
    took.sort();
    took[(took.len() * 99 / 100).min(took.len() - 1)]
}

/// `connections` clients calling `path` back to back until stopped; returns
/// the answers they got, by status.
fn hammer(
    addr: SocketAddr,
    path: &'static str,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u16>> {
    tokio::spawn(async move {
        elsewhere(hammer_here(addr, path, connections, stop))
            .await
            .unwrap_or_default()
    })
}

async fn hammer_here(
    addr: SocketAddr,
    path: &'static str,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> Vec<u16> {
    {
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                let Ok(mut conn) = Conn::open(addr).await else {
                    return statuses;
                };
                let stopped = || async {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    // Each client waits for its answer, as a real one would;
                    // a call still running when the phase ends is dropped
                    // with its connection, which ends the plugin's call.
                    tokio::select! {
                        answer = conn.get(path) => match answer {
                            Ok((status, _, _)) => statuses.push(status),
                            Err(_) => match Conn::open(addr).await {
                                Ok(c) => conn = c,
                                Err(_) => break,
                            },
                        },
                        () = stopped() => break,
                    }
                }
                statuses
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap_or_default());
        }
        all
    }
}

async fn metrics(t: &TestPlatform) -> Result<String> {
    Ok(String::from_utf8_lossy(&t.ops("/metrics").await?.body).into_owned())
}

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hammered_bad_api_leaves_its_neighbours_p99_within_bounds() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    // The trigger plugin behaves on every testbed input.
    let trigger = sfop_testbed::Package::read_dir(&built_plugins()?.join("test/trigger-spin"))?;
    let report = sfop_testbed::run(&trigger, &sfop_testbed::RunOptions::default()).await?;
    ensure!(
        report.passed(),
        "test/trigger-spin should pass the testbed: {:?}",
        report
            .checks
            .iter()
            .filter(|c| c.outcome == sfop_testbed::Outcome::Fail)
            .map(|c| format!("{} {}: {}", c.rule, c.name, c.detail))
            .collect::<Vec<_>>()
    );

    let t = TestPlatform::start_with(
        vec![
            Package::built("api/bank-status"),
            Package::built("test/spin").with_manifest(&manifest(
                "spin",
                "/test/spin",
                "",
                "cpu_ms = 100\ntimeout_ms = 5000",
            )),
            Package::built("test/trigger-spin"),
            Package::built("test/hog").with_manifest(&manifest(
                "hog",
                "/test/hog",
                "",
                "memory_mib = 64",
            )),
            Package::built("test/trap"),
            Package::built("test/recurse"),
            Package::built("test/hello"),
        ],
        |config| {
            config.tls.mode = sfop::config::TlsMode::Off;
            config.auth.mode = sfop::config::AuthMode::Off;
            // The platform's defaults: quarantine on (a version failing
            // 20 times in 10 s, half its calls, is throttled to 2 at once).
        },
    )
    .await?;
    let addr = t.addr();
    // Warm the neighbour (its instances are made ahead after a first call).
    neighbour_latencies(addr, 50).await?;
    let quiet = p99(neighbour_latencies(addr, 400).await?);

    let phases: [(&str, &[(&'static str, usize)]); 6] = [
        // The control: a good API called as hard, to tell the bulkhead's
        // effect from what 16 busy clients cost two cores anyway.
        ("control: a good API called as hard", &[("/test/hello", 16)]),
        ("busy loop to the CPU deadline", &[("/test/spin", 16)]),
        (
            "passed the testbed, spins on a trigger",
            &[("/test/trigger-spin?code=4417", 16)],
        ),
        ("allocate to the memory cap", &[("/test/hog", 16)]),
        ("trap", &[("/test/trap", 16)]),
        ("recurse", &[("/test/recurse", 16)]),
    ];
    let mut report = format!("neighbour {NEIGHBOUR} quiet p99 {quiet:?}");
    let mut ratios = Vec::new();
    for (name, hammered) in phases {
        let stop = Arc::new(AtomicBool::new(false));
        let hammers: Vec<_> = hammered
            .iter()
            .map(|(path, n)| hammer(addr, path, *n, stop.clone()))
            .collect();
        // Let the hammer reach its steady state first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let loud = p99(neighbour_latencies(addr, 400).await?);
        stop.store(true, Ordering::Relaxed);
        let mut answered = 0;
        for h in hammers {
            let statuses = h.await?;
            ensure!(
                name.starts_with("control") || statuses.iter().all(|s| *s >= 500),
                "{name}: a bad call succeeded"
            );
            answered += statuses.len();
        }
        let ratio = loud.as_secs_f64() / quiet.as_secs_f64();
        ratios.push((name, ratio, loud));
        report.push_str(&format!(
            "\n  hammered ({name}; {answered} answers): p99 {loud:?}, x{ratio:.2}"
        ));
    }
    let text = metrics(&t).await?;
    let moved = metric(
        &text,
        r#"sfop_calls_moved_total{api="spin",version="0.1.0"}"#,
    )
    .context("sfop_calls_moved_total for spin")?;
    report.push_str(&format!(
        "\n  spin calls that moved to the execution pool: {moved}"
    ));
    eprintln!("{report}");
    ensure!(moved > 0.0, "no spin call moved to the execution pool");
    // The target is x2 on this 2-core machine for the loops (measured
    // x1.2-1.6 on a quiet machine); the bounds asserted are generous, as
    // other tests and builds share the machine. The control says what 16
    // busy clients cost the two cores whatever they call, so a loaded
    // machine widens the bound (one CI run measured x4.29 for a loop); a
    // loop on the neighbour's worker, with no bulkhead, costs it x50 and
    // more (the loop's 100 ms CPU deadline against a 1-2 ms p99).
    // A ratio of a 1 ms quiet p99 is coarse: the memory hog's page faults
    // and zeroing are kernel work the pool's priorities do not divide (ADR
    // 0020), and alone on the machine one run measured x22 (27 ms) for it.
    // A p99 within FLOOR passes whatever its ratio; what the bulkheads
    // prevent is a neighbour waiting out whole CPU deadlines (100 ms).
    const FLOOR: Duration = Duration::from_millis(40);
    let control = ratios[0].1;
    for (name, ratio, loud) in &ratios[1..] {
        let bound = if name.contains("loop") || name.contains("trigger") {
            (2.0 * control).max(4.0)
        } else {
            (3.0 * control).max(10.0)
        };
        ensure!(
            *ratio <= bound || *loud <= FLOOR,
            "{name}: the neighbour's p99 rose x{ratio:.2} to {loud:?} (bound x{bound:.1} or \
             {FLOOR:?}):\n{report}"
        );
    }
    Ok(())
}

/// `n` calls of `path` over `connections` keep-alive connections, each
/// answered 200 (from a client thread of its own).
async fn calls(addr: SocketAddr, path: &'static str, n: usize, connections: usize) -> Result<()> {
    elsewhere(async move {
        let mut tasks = Vec::new();
        for c in 0..connections {
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::open(addr).await?;
                for _ in (c..n).step_by(connections) {
                    let (status, body, _) = conn.get(path).await?;
                    ensure!(
                        status == 200,
                        "{path} answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    })
    .await?
}

/// ADR 0020 rule 3, and no more: after a call of a version ran long (it
/// moved to the execution pool, then hit its CPU deadline), its next
/// `suspect_calls` calls start on the pool; the calls after those run on the
/// I/O worker again. A call that started on the pool only because of that
/// suspicion used to renew it, so one slow call kept every later call of the
/// version on the pool for good, with a thread hop each (ADR 0023: the
/// bench's withdrawals).
///
/// The meter charges what the thread's CPU clock says, and on a loaded
/// machine that clock now and then charges a trivial call past the move
/// threshold (kernel time in page faults, a VM's stolen time), which rightly
/// moves it and renews the suspicion. So the test does not count on exact
/// numbers: the suspicion is short (`suspect_calls` = 20) and the version
/// must come back within a bounded number of calls, which it never does
/// when every suspect call renews the suspicion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_ran_long_once_returns_to_its_io_worker() -> Result<()> {
    const SUSPECT_CALLS: u32 = 20;
    const BATCH: usize = 40;
    let _one = ONE_AT_A_TIME.lock().await;
    let t = TestPlatform::start_with(
        vec![Package::built("test/trigger-spin").with_manifest(&manifest(
            "trigger",
            "/test/trigger",
            "",
            "cpu_ms = 50\ntimeout_ms = 5000",
        ))],
        |config| {
            config.tls.mode = sfop::config::TlsMode::Off;
            config.auth.mode = sfop::config::AuthMode::Off;
            config.isolation.suspect_calls = SUSPECT_CALLS;
        },
    )
    .await?;
    let moved = async || -> Result<f64> {
        Ok(metric(
            &metrics(&t).await?,
            r#"sfop_calls_moved_total{api="trigger",version="0.1.0"}"#,
        )
        .unwrap_or(0.0))
    };
    // Back on the I/O worker: a batch of calls none of which moved.
    let settle = async || -> Result<usize> {
        for batch in 1..=25 {
            let before = moved().await?;
            calls(t.addr(), "/test/trigger?code=1234", BATCH, 2).await?;
            if moved().await? == before {
                return Ok(batch);
            }
        }
        bail!(
            "the version's calls never came back to the I/O worker: no batch of {BATCH} without a move in 25"
        )
    };
    let first = settle().await?;
    // One call spins to its 50 ms CPU deadline: it moves, and fails.
    let before = moved().await?;
    assert_eq!(t.get("/test/trigger?code=4417").await?.status, 504);
    ensure!(
        moved().await? == before + 1.0,
        "the spinning call did not move"
    );
    // Its suspect calls all start on the pool.
    calls(
        t.addr(),
        "/test/trigger?code=1234",
        SUSPECT_CALLS as usize,
        1,
    )
    .await?;
    let suspect = moved().await? - before - 1.0;
    ensure!(
        suspect >= f64::from(SUSPECT_CALLS),
        "the calls after a slow one did not start on the pool: {suspect} of {SUSPECT_CALLS}"
    );
    let after = settle().await?;
    eprintln!(
        "batches of {BATCH} calls until none moved: {first} at the start, {after} after the slow call and its {SUSPECT_CALLS} suspect calls"
    );
    Ok(())
}

fn rss_kib() -> Result<u64> {
    std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_memory_past_the_budget_is_refused_and_rss_stays_bounded() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    const BUDGET_MIB: u64 = 256;
    let t = TestPlatform::start_with(
        vec![
            Package::built("api/bank-status"),
            // Each call may grow to 64 MiB: five at once pass its share of
            // the budget (25 %: 64 MiB).
            Package::built("test/hog").with_manifest(&manifest(
                "hog",
                "/test/hog",
                "",
                "memory_mib = 64",
            )),
        ],
        |config| {
            config.tls.mode = sfop::config::TlsMode::Off;
            config.auth.mode = sfop::config::AuthMode::Off;
            config.isolation.guest_memory_mib = BUDGET_MIB;
            config.isolation.api_memory_share_percent = 25;
            config.isolation.quarantine_faults = u32::MAX;
        },
    )
    .await?;
    let addr = t.addr();
    let reply = t.get(NEIGHBOUR).await?;
    assert_eq!(
        assert_envelope(&reply)?,
        "A0000",
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let rss_before = rss_kib()?;

    let stop = Arc::new(AtomicBool::new(false));
    let hog = hammer(addr, "/test/hog", 16, stop.clone());
    let peak = Arc::new(AtomicU64::new(0));
    let (mut refused_with_retry_after, mut neighbour_ok) = (0, 0);
    let mut conn = Conn::open(addr).await?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let (status, body, retry_after) = conn.get("/test/hog").await?;
        if status == 503 {
            let json: serde_json::Value = serde_json::from_slice(&body)?;
            assert_eq!(json["rsp_code"], "A0013", "{json}");
            if retry_after.is_some() {
                refused_with_retry_after += 1;
            }
        }
        let reply = t.get(NEIGHBOUR).await?;
        assert_eq!(
            assert_envelope(&reply)?,
            "A0000",
            "the neighbour is refused: {}",
            String::from_utf8_lossy(&reply.body)
        );
        neighbour_ok += 1;
        let text = metrics(&t).await?;
        let live = metric(&text, "sfop_guest_memory_bytes ").context("guest memory")?;
        peak.fetch_max(live as u64, Ordering::Relaxed);
        ensure!(
            live <= (BUDGET_MIB << 20) as f64,
            "live guest memory {live} passed the budget"
        );
    }
    let rss_loaded = rss_kib()?;
    stop.store(true, Ordering::Relaxed);
    let statuses = hog.await?;
    let refused = statuses.iter().filter(|s| **s == 503).count();
    let text = metrics(&t).await?;
    let refused_total = metric(&text, "sfop_guest_memory_refused_total ").unwrap_or(0.0);
    let peak_mib = peak.load(Ordering::Relaxed) >> 20;
    let grew_mib = rss_loaded.saturating_sub(rss_before) / 1024;
    eprintln!(
        "guest memory budget {BUDGET_MIB} MiB: peak live {peak_mib} MiB; hog answers {} \
         ({refused} refused 503, {refused_with_retry_after} with Retry-After seen); \
         refused_total {refused_total}; neighbour ok {neighbour_ok}; RSS {} -> {} MiB (+{grew_mib})",
        statuses.len(),
        rss_before / 1024,
        rss_loaded / 1024,
    );
    ensure!(refused > 0, "no hog call was refused for the budget");
    ensure!(
        refused_with_retry_after > 0,
        "no refusal carried Retry-After"
    );
    ensure!(
        refused_total > 0.0,
        "sfop_guest_memory_refused_total stayed 0"
    );
    // The hog's share is 64 MiB; the RSS of the whole test process (two
    // platforms' code, caches) may grow, but not by the 16 x 64 MiB the
    // hog asked for.
    ensure!(
        grew_mib < 2 * BUDGET_MIB,
        "RSS grew by {grew_mib} MiB under a {BUDGET_MIB} MiB budget"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_keeps_failing_is_quarantined_and_says_why() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = TestPlatform::start_with(
        vec![
            Package::built("api/bank-status"),
            Package::built("test/trap"),
            Package::built("test/spin").with_manifest(&manifest(
                "spin",
                "/test/spin",
                "",
                "cpu_ms = 50\ntimeout_ms = 5000",
            )),
        ],
        |config| {
            config.tls.mode = sfop::config::TlsMode::Off;
            config.auth.mode = sfop::config::AuthMode::Off;
            config.isolation.quarantine_faults = 5;
            config.isolation.quarantine_window_ms = 60_000;
            config.isolation.quarantine_concurrency = 1;
            config.isolation.fault_log_lines = 3;
        },
    )
    .await?;
    for _ in 0..5 {
        assert_eq!(t.get("/test/trap").await?.status, 500);
    }
    let text = metrics(&t).await?;
    ensure!(
        text.contains(r#"sfop_api_quarantined{api="trap",version="0.1.0",reason="trap"} 1"#),
        "trap is not shown quarantined:\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"sfop_api_quarantines_total{api="trap",version="0.1.0"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"sfop_plugin_fault_logs_suppressed_total{api="trap",version="0.1.0"}"#
        ),
        Some(2.0),
        "5 faults, 3 lines logged"
    );
    // A loop to its deadline, five times: quarantined for its deadlines,
    // then one call at a time. Eight at once (each runs 50 ms of CPU): the
    // excess is refused at once with 503 A0013 and Retry-After.
    for _ in 0..5 {
        assert_eq!(t.get("/test/spin").await?.status, 504);
    }
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let addr = t.addr();
            tokio::spawn(async move {
                crate::harness::send(addr, "GET", "/test/spin", &[], Vec::new()).await
            })
        })
        .collect();
    let mut throttled = 0;
    for call in calls {
        let reply = call.await??;
        if reply.status == 503 {
            assert_eq!(assert_envelope(&reply)?, "A0013");
            assert!(reply.header("retry-after").is_some());
            throttled += 1;
        } else {
            assert_eq!(reply.status, 504);
        }
    }
    let text = metrics(&t).await?;
    ensure!(
        text.contains(r#"sfop_api_quarantined{api="spin",version="0.1.0",reason="deadline"} 1"#),
        "spin is not shown quarantined for its deadlines:\n{text}"
    );
    let counted = metric(
        &text,
        r#"sfop_requests_total{api="spin",version="0.1.0",outcome="quarantined"}"#,
    )
    .unwrap_or(0.0);
    eprintln!("quarantined spin: {throttled} of 8 concurrent calls refused (counted {counted})");
    ensure!(throttled >= 4, "only {throttled} of 8 calls were throttled");
    assert_eq!(counted as usize, throttled);
    // The operator sees why: the management center's watchdog writes it
    // to the audit log once, and `sfop api status` (the admin API's view)
    // shows the version quarantined for its deadlines.
    let management = &t.platform.management;
    management.check().await?;
    management.check().await?;
    let entries: Vec<_> = management
        .audit()?
        .into_iter()
        .filter(|e| e.action == "quarantine" && e.api == "spin")
        .collect();
    ensure!(
        entries.len() == 1 && entries[0].detail.contains("deadline"),
        "audit entries for spin's quarantine: {entries:?}"
    );
    let view = management.show("spin").await?;
    let live = view
        .versions
        .iter()
        .find(|v| v.version.to_string() == "0.1.0")
        .context("spin 0.1.0")?;
    assert_eq!(live.quarantined.as_deref(), Some("deadline"));
    // Its neighbour is not throttled.
    assert_eq!(assert_envelope(&t.get(NEIGHBOUR).await?)?, "A0000");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_canary_is_rolled_back_and_the_audit_log_says_why() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let echo = |version: &str, description: &str| {
        format!(
            "name = \"echo\"\nversion = \"{version}\"\ndescription = \"{description}\"\n\
             scope = \"oob\"\ncapabilities = [\"log\", \"clock\", \"auth-context\"]\n\n\
             [[routes]]\nmethod = \"GET\"\npath = \"/test/echo\"\n"
        )
    };
    let t = TestPlatform::start_overriding(
        vec![Package::built("test/echo").with_manifest(&echo("1.0.0", "echo"))],
        |config| {
            config.tls.mode = sfop::config::TlsMode::Off;
            config.auth.mode = sfop::config::AuthMode::Off;
            config.management.bootstrap = sfop::Bootstrap::Testbed;
            config.management.check_ms = 20;
            config.isolation.quarantine_faults = 5;
        },
        sfop::Overrides {
            gate: Some(Arc::new(crate::management::TestGate)),
            ..Default::default()
        },
    )
    .await?;
    let mgmt = t.platform.management.clone();
    let next = semver::Version::new(1, 1, 0);
    let trap = sfop_management::Package::from_parts(
        echo("1.1.0", "echo that traps"),
        std::fs::read(built_plugins()?.join("test/trap/api.wasm"))?,
        None,
    )?;
    mgmt.push(trap, "ops").await?;
    ensure!(mgmt.test("echo", &next, "ops").await?.passed, "gate");
    // The error rate alone never rolls this canary back (it needs more
    // requests than will ever come): only quarantine can.
    let spec = sfop_management::CanarySpec {
        percent: 50,
        sticky: sfop_management::Sticky::Client,
        max_error_rate: 1.0,
        min_requests: u64::MAX,
    };
    mgmt.canary("echo", &next, spec, "ops").await?;
    let rolled_back = async {
        for sent in 0..2_000 {
            t.get("/test/echo").await?;
            if mgmt.show("echo").await?.canary.is_none() {
                return Ok::<_, anyhow::Error>(sent);
            }
        }
        anyhow::bail!("the quarantined canary was not rolled back")
    };
    let sent = tokio::time::timeout(Duration::from_secs(60), rolled_back).await??;
    let audit = mgmt.audit()?;
    let rollback = audit
        .iter()
        .rfind(|e| e.action == "rollback" && e.api == "echo")
        .context("no rollback in the audit log")?;
    eprintln!(
        "canary rolled back after {sent} requests: {} {}",
        rollback.actor, rollback.detail
    );
    assert_eq!(rollback.actor, "canary-monitor");
    ensure!(
        rollback
            .detail
            .contains("quarantined for repeated trap faults"),
        "{rollback:?}"
    );
    ensure!(
        audit
            .iter()
            .any(|e| e.action == "quarantine" && e.version.as_deref() == Some("1.1.0")),
        "no quarantine entry"
    );
    // Only the stable release answers now.
    assert_eq!(t.get("/test/echo").await?.status, 200);
    Ok(())
}
