//! Issue 16, defects 2 and 4, through the real `sfop serve` binary over
//! HTTPS (docs/adr/0018-deadlines-and-warm-releases.md).
//!
//! Limits measure work, not time that passed: while the process is paused
//! again and again (SIGSTOP, 150 ms, SIGCONT), 1-won withdrawals with a real
//! user token, balance inquiries and a reference API keep answering `A0000`,
//! and a token that is really too expensive is still refused.
//!
//! A hot swap under load refuses nothing, and a version rolled back from
//! keeps its counters (`sfop api status`, `/metrics`) and stays warm: it is
//! promoted again without loading its component (the runtime's compile and
//! compile-cache counts do not move).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::harness::built_plugins;
use crate::served::{Connection, Served};

/// Pauses of the process while the calls run.
const PAUSES: u32 = 40;
/// How long each pause lasts.
const PAUSE: Duration = Duration::from_millis(150);
/// Running time between pauses.
const BETWEEN: Duration = Duration::from_millis(40);
/// Bound on one request (a wedged server fails the test, never hangs it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const HONG: &str = "1100000001";
const CONTRACT: &str = "5000000000001";

fn dtime() -> String {
    sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    )[..14]
        .to_owned()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One request on `conn`, bounded, as JSON with its status.
async fn call(
    conn: &mut Connection,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value, Option<String>)> {
    let auth = format!("Bearer {token}");
    let reply = tokio::time::timeout(
        REQUEST_TIMEOUT,
        conn.send(
            method,
            path,
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        ),
    )
    .await
    .with_context(|| format!("{method} {path} hung"))??;
    let version = reply.header("x-sfop-api-version").map(str::to_owned);
    Ok((reply.status, reply.json()?, version))
}

/// Sends SIGSTOP, waits `PAUSE`, sends SIGCONT, `PAUSES` times; counts the
/// pauses done. The process is always continued, even when a signal fails.
fn pause_repeatedly(pid: u32, done: &AtomicU32) -> Result<()> {
    let signal = |sig: &str| -> Result<()> {
        let status = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill {sig} {pid} failed");
        Ok(())
    };
    for _ in 0..PAUSES {
        signal("-STOP")?;
        std::thread::sleep(PAUSE);
        signal("-CONT")?;
        done.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(BETWEEN);
    }
    Ok(())
}

/// Hong's 097 account, from the account list.
async fn hong_account(conn: &mut Connection, token: &str) -> Result<String> {
    let (_, list, _) = call(
        conn,
        "GET",
        &format!("/v2.0/account/list?user_seq_no={HONG}&include_cancel_yn=N&sort_order=A"),
        token,
        None,
    )
    .await?;
    list["res_list"]
        .as_array()
        .and_then(|l| l.iter().find(|a| a["bank_code_std"] == "097"))
        .and_then(|a| a["fintech_use_num"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("hong's 097 account: {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_calls_survive_a_paused_process_and_costly_tokens_are_still_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = Served::start(&data, &dir.path().join("serve.log"))?;
    let oob = server.oob_token().await?;
    let user = server.user_token("hong", "hong1234").await?;
    let demo: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo-client.json"))?)?;
    let use_code = demo["client_use_code"]
        .as_str()
        .context("client_use_code")?
        .to_owned();
    let fin = hong_account(&mut server.connect().await?, &user).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let served = Arc::new(AtomicU32::new(0));
    let mut clients = Vec::new();
    for w in 0..3u32 {
        let mut conn = server.connect().await?;
        let (oob, user, fin, use_code) = (oob.clone(), user.clone(), fin.clone(), use_code.clone());
        let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let withdraw = json!({
                    "bank_tran_id": format!("{use_code}U{:09}", 700_000_000 + w * 100_000 + i),
                    "cntr_account_type": "N",
                    "cntr_account_num": CONTRACT,
                    "dps_print_content": "홍길동",
                    "fintech_use_num": fin,
                    "wd_print_content": "pause test",
                    "tran_amt": "1",
                    "tran_dtime": dtime(),
                    "req_client_name": "홍길동",
                    "req_client_num": "HONG0001",
                    "transfer_purpose": "TR",
                });
                let balance = format!(
                    "/v2.0/account/balance/fin_num?bank_tran_id={use_code}U{:09}&fintech_use_num={fin}&tran_dtime={}",
                    800_000_000 + w * 100_000 + i,
                    dtime()
                );
                let calls = [
                    ("POST", "/v2.0/transfer/withdraw/fin_num".to_owned(), &user, Some(&withdraw)),
                    ("GET", balance, &user, None),
                    ("GET", "/v2.0/bank/status".to_owned(), &oob, None),
                ];
                for (method, path, token, body) in calls {
                    match call(&mut conn, method, &path, token, body).await {
                        Ok((200, answer, _)) if answer["rsp_code"] == "A0000" => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((status, answer, _)) => {
                            if let Ok(mut f) = failures.lock() {
                                f.push(format!("{method} {path}: {status} {answer}"));
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            anyhow::Ok(i)
        }));
    }

    let pid = server.pid();
    let pauses = Arc::new(AtomicU32::new(0));
    let pausing = {
        let pauses = pauses.clone();
        tokio::task::spawn_blocking(move || pause_repeatedly(pid, &pauses))
    };
    let paused = pausing.await?;
    stop.store(true, Ordering::Relaxed);
    let mut withdrawals = 0;
    for client in clients {
        withdrawals += client.await??;
    }
    paused?;
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    eprintln!(
        "paused {} times for {PAUSE:?}: {} calls answered A0000 ({withdrawals} rounds of a 1-won withdrawal, a balance and bank/status), {} refused or failed",
        pauses.load(Ordering::Relaxed),
        served.load(Ordering::Relaxed),
        failures.len()
    );
    ensure!(failures.is_empty(), "refused or failed: {failures:#?}");
    ensure!(pauses.load(Ordering::Relaxed) == PAUSES);
    ensure!(withdrawals >= 3, "too few calls ran during the pauses");

    // Nothing was cut by a plugin deadline or timeout meanwhile.
    let metrics = server.metrics().await?;
    for line in metrics.lines().filter(|l| {
        l.starts_with("sfop_requests_total")
            && ["\"deadline\"", "\"timeout\"", "\"overloaded\""]
                .iter()
                .any(|o| l.contains(o))
    }) {
        ensure!(line.ends_with(" 0"), "{line}");
    }

    // A token that is really too expensive is still refused, naming the
    // published limit.
    let costly: String = (0..33).map(|i| format!("f({i});\n")).collect();
    let token = sfop_auth::holder::attenuate(&oob, &costly)?;
    let (status, body, _) = call(
        &mut server.connect().await?,
        "GET",
        "/v2.0/bank/status",
        &token,
        None,
    )
    .await?;
    ensure!(
        status == 401
            && body["rsp_code"] == "O0002"
            && body["rsp_message"]
                .as_str()
                .is_some_and(|m| m.contains("33 facts; the limit is 32")),
        "{status} {body}"
    );
    server.stop()
}

/// `bank-status` at `version`: the built package with its manifest's version
/// changed, in a folder of `dir`.
pub fn bank_status_at(dir: &Path, version: &str) -> Result<std::path::PathBuf> {
    let built = built_plugins()?.join("api/bank-status");
    let out = dir.join(format!("bank-status-{version}"));
    std::fs::create_dir_all(&out)?;
    for entry in std::fs::read_dir(&built)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), out.join(entry.file_name()))?;
        }
    }
    let manifest = std::fs::read_to_string(out.join("sfop.toml"))?;
    ensure!(manifest.contains("version = \"1.0.0\""), "{manifest}");
    std::fs::write(
        out.join("sfop.toml"),
        manifest.replacen(
            "version = \"1.0.0\"",
            &format!("version = \"{version}\""),
            1,
        ),
    )?;
    Ok(out)
}

/// A counter's value in Prometheus text, 0 when absent.
fn counter(metrics: &str, name_and_labels: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Requests of `version` in `sfop api status bank-status`.
async fn status_requests(server: &Served, version: &str) -> Result<u64> {
    let out = server.cli(&["api", "status", "bank-status"]).await?;
    ensure!(out.status.success(), "{}", text(&out));
    let listed = text(&out);
    let line = listed
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(version))
        .with_context(|| format!("{version} missing from {listed}"))?;
    Ok(line
        .split_whitespace()
        .nth(3)
        .context("requests column")?
        .parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swaps_under_load_refuse_nothing_and_a_rolled_back_version_stays_counted_and_warm()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let server = Served::start(&data, &dir.path().join("serve.log"))?;
    let oob = server.oob_token().await?;
    let next = bank_status_at(dir.path(), "1.0.1")?;

    // Load: three keep-alive connections calling bank/status until stopped.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut conn = server.connect().await?;
        let (oob, stop, seen, failures) =
            (oob.clone(), stop.clone(), seen.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match call(&mut conn, "GET", "/v2.0/bank/status", &oob, None).await? {
                    (200, answer, Some(version)) if answer["rsp_code"] == "A0000" => {
                        if let Ok(mut seen) = seen.lock() {
                            *seen.entry(version).or_default() += 1;
                        }
                    }
                    (status, answer, _) => {
                        if let Ok(mut f) = failures.lock() {
                            f.push(format!("{status} {answer}"));
                        }
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    let version_now = || async {
        let mut conn = server.connect().await?;
        let (status, answer, version) =
            call(&mut conn, "GET", "/v2.0/bank/status", &oob, None).await?;
        ensure!(
            status == 200 && answer["rsp_code"] == "A0000",
            "{status} {answer}"
        );
        version.context("no x-sfop-api-version")
    };

    // 1. Push, test (the real testbed) and promote 1.0.1 under load.
    let next_dir = next.display().to_string();
    let out = server.cli(&["api", "push", &next_dir, "--promote"]).await?;
    ensure!(out.status.success(), "{}", text(&out));
    ensure!(version_now().await? == "1.0.1");
    // Let 1.0.1 serve some of the load.
    let mut conn = server.connect().await?;
    for _ in 0..50 {
        call(&mut conn, "GET", "/v2.0/bank/status", &oob, None).await?;
    }

    // 2. Roll back under load: 1.0.1's counters stay visible.
    let label = "sfop_requests_total{api=\"bank-status\",version=\"1.0.1\",outcome=\"ok\"}";
    let out = server.cli(&["api", "rollback", "bank-status"]).await?;
    ensure!(out.status.success(), "{}", text(&out));
    ensure!(version_now().await? == "1.0.0");
    let metrics = server.metrics().await?;
    let served_by_next = counter(&metrics, label);
    ensure!(served_by_next >= 50, "1.0.1 in /metrics: {served_by_next}");
    let listed = status_requests(&server, "1.0.1").await?;
    ensure!(
        listed >= served_by_next,
        "sfop api status shows {listed} requests for 1.0.1, /metrics {served_by_next}"
    );

    // 3. Promote 1.0.1 again: it was kept warm, so nothing is compiled or
    // loaded from the compile cache.
    let loads = |m: &str| {
        (
            counter(m, "sfop_component_loads_total{source=\"compiled\"}"),
            counter(m, "sfop_component_loads_total{source=\"compile_cache\"}"),
        )
    };
    ensure!(
        metrics.contains("sfop_component_loads_total{source=\"compiled\"}"),
        "no load counts in /metrics"
    );
    let before = loads(&metrics);
    let out = server
        .cli(&["api", "promote", "bank-status", "1.0.1"])
        .await?;
    ensure!(out.status.success(), "{}", text(&out));
    ensure!(version_now().await? == "1.0.1");
    let after = loads(&server.metrics().await?);
    ensure!(
        before == after,
        "re-promoting a warm version loaded its component: (compiled, cached) {before:?} -> {after:?}"
    );
    // Its counters went on from where they were.
    ensure!(status_requests(&server, "1.0.1").await? > listed);

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await??;
    }
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    eprintln!(
        "swaps under load: answered by version {seen:?}; {} refused or failed; component loads (compiled, cached) {before:?} before and {after:?} after the re-promotion",
        failures.len()
    );
    ensure!(failures.is_empty(), "refused or failed: {failures:#?}");
    if seen.len() < 2 {
        bail!("the load did not span the swaps: {seen:?}");
    }
    server.stop()
}
