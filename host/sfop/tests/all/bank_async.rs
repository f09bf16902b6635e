//! Async bank calls (issue 19, ADR 0022), through the real gateway over
//! HTTP: a bank that never answers ends the plugin's call with `A0017`
//! within its `timeout_ms` plus 100 ms and holds no worker (another API
//! keeps its latency meanwhile); concurrent transfers are made durable
//! (group commit) without losing or doubling any; and the virtual bank as
//! its own process (`sfop bank serve`) behind the REST connector.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sfop::TlsMode;
use sfop_core::Claims;
use sfop_gateway::{AuthRequest, Authorizer, Denial};
use sfop_vbank::faults::{FaultKind, FaultRule};
use sfop_vbank::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, DEMO_CONTRACT_ACCOUNT_NUM};

use crate::harness::{Package, TestPlatform, send};

/// Hong's account at the demo institution (seeded).
const HONG_FINTECH: &str = "120230000100000000000015";
/// The withdraw API's `timeout_ms` in these tests.
const TIMEOUT_MS: u64 = 600;

/// TEST DOUBLE: every request is Hong of the demo institution.
#[derive(Debug)]
struct Hong;

impl Authorizer for Hong {
    fn authorize(&self, _request: &AuthRequest<'_>) -> Result<Option<Claims>, Denial> {
        Ok(Some(Claims {
            client_id: DEMO_CLIENT_ID.into(),
            client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
            user_seq_no: Some("1100000001".into()),
            scopes: ["login", "inquiry", "transfer", "oob"]
                .map(String::from)
                .to_vec(),
            fintech_use_nums: vec![HONG_FINTECH.into()],
        }))
    }
}

async fn platform() -> Result<TestPlatform> {
    let built = crate::harness::built_plugins()?;
    let manifest = std::fs::read_to_string(built.join("api/transfer-withdraw/sfop.toml"))?;
    let manifest = format!("{manifest}\n[limits]\ntimeout_ms = {TIMEOUT_MS}\n");
    TestPlatform::start_overriding(
        vec![
            Package::built("api/bank-status"),
            Package::built("api/transfer-withdraw").with_manifest(&manifest),
            Package::built("api/transfer-result"),
        ],
        |c| c.tls.mode = TlsMode::Off,
        sfop::Overrides {
            authorizer: Some(Arc::new(Hong)),
            ..Default::default()
        },
    )
    .await
}

fn tran_id() -> String {
    static N: AtomicU32 = AtomicU32::new(500);
    format!(
        "{DEMO_CLIENT_USE_CODE}U{:09}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn now() -> String {
    sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    )[..14]
        .to_owned()
}

async fn withdraw(t: &TestPlatform, id: &str) -> Result<Value> {
    let body = json!({
        "bank_tran_id": id,
        "cntr_account_type": "N",
        "cntr_account_num": DEMO_CONTRACT_ACCOUNT_NUM,
        "dps_print_content": "async",
        "fintech_use_num": HONG_FINTECH,
        "wd_print_content": "coffee",
        "tran_amt": "1000",
        "tran_dtime": now(),
        "req_client_name": "홍길동",
        "req_client_num": "HONG",
        "transfer_purpose": "TR",
    });
    let reply = send(
        t.addr(),
        "POST",
        "/v2.0/transfer/withdraw/fin_num",
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await?;
    reply.json()
}

/// `n` sequential `bank-status` calls: their latencies, sorted.
async fn bank_status_latencies(t: &TestPlatform, n: usize) -> Result<Vec<Duration>> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let reply = send(t.addr(), "GET", "/v2.0/bank/status", &[], Vec::new()).await?;
        all.push(started.elapsed());
        assert_eq!(reply.json()?["rsp_code"], "A0000", "{reply:?}");
    }
    all.sort();
    Ok(all)
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_that_never_answers_gets_a0017_in_time_and_holds_no_worker() -> Result<()> {
    let t = platform().await?;
    bank_status_latencies(&t, 50).await?; // warm up
    let before = p99(&bank_status_latencies(&t, 300).await?);

    // Every withdraw now waits for a bank that never answers.
    t.platform.faults.add(FaultRule {
        client_id: None,
        operation: Some("withdraw".into()),
        fault: FaultKind::Hang,
        bank_code: None,
        rsp_code: None,
        bank_rsp_code: None,
        rsp_message: None,
        fixture: None,
        times: None,
    })?;
    // More hanging calls than the gateway has workers, all at once.
    let hanging: Vec<_> = (0..8)
        .map(|_| {
            let (t, id) = (&t, tran_id());
            async move {
                let started = Instant::now();
                let reply = withdraw(t, &id).await;
                (reply, started.elapsed())
            }
        })
        .collect();
    let (answers, during) = tokio::join!(futures_join_all(hanging), async {
        // Give the withdrawals a moment to reach the bank.
        tokio::time::sleep(Duration::from_millis(20)).await;
        bank_status_latencies(&t, 300).await
    });
    let during = p99(&during?);
    for (reply, took) in answers {
        let reply = reply?;
        assert_eq!(reply["rsp_code"], "A0017", "{reply}");
        assert!(
            took <= Duration::from_millis(TIMEOUT_MS + 100),
            "answered after {took:?}, limit {TIMEOUT_MS} ms + 100 ms"
        );
        assert!(took >= Duration::from_millis(TIMEOUT_MS / 2), "{took:?}");
    }
    eprintln!("bank-status p99: {before:?} before, {during:?} while 8 withdrawals hang");
    assert!(
        during <= before * 10 + Duration::from_millis(20),
        "bank-status p99 {during:?} while the bank hangs, {before:?} before"
    );

    // Nothing happened at the bank: the next withdraw (rule removed) works.
    t.platform.faults.clear();
    let reply = withdraw(&t, &tran_id()).await?;
    assert_eq!(reply["rsp_code"], "A0000", "{reply}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_withdrawals_are_durable_and_each_moves_money_once() -> Result<()> {
    let t = platform().await?;
    let bank = t.platform.bank.clone();
    let total = bank.total_balance()?;
    let before = bank.commit_stats();
    let ids: Vec<String> = (0..32).map(|_| tran_id()).collect();
    // Each id twice, all at once: one of each pair moves money, the other
    // is refused as a repeat (A0326).
    let calls = ids
        .iter()
        .chain(ids.iter())
        .map(|id| withdraw(&t, id))
        .collect::<Vec<_>>();
    let answers = futures_join_all(calls).await;
    let mut done = 0;
    let mut repeated = 0;
    for reply in answers {
        let reply = reply?;
        match reply["rsp_code"].as_str().context("rsp_code")? {
            "A0000" => done += 1,
            "A0326" => repeated += 1,
            other => anyhow::bail!("unexpected {other}: {reply}"),
        }
    }
    assert_eq!((done, repeated), (32, 32));
    assert_eq!(bank.total_balance()?, total, "money moved, none created");
    let after = bank.commit_stats();
    let (flushes, acknowledged) = (
        after.flushes - before.flushes,
        after.acknowledged - before.acknowledged,
    );
    eprintln!("group commit: {acknowledged} answers made durable by {flushes} flushes");
    assert_eq!(acknowledged, 64);
    // How many flushes that took depends on the disk: on a fast one (tmpfs)
    // each flush can end before the next request arrives. That one flush
    // serves every request waiting is proved in `sfop_vbank`'s commit tests.
    assert!(
        flushes <= acknowledged,
        "{flushes} flushes for {acknowledged}"
    );
    Ok(())
}

/// All of `futures`, concurrently, in order.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(o) => outputs[i] = Some(o),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// A running `sfop bank serve` child (cleartext on loopback).
struct BankProcess {
    child: std::process::Child,
    url: String,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

fn spawn_bank(data: &std::path::Path, tls: &str) -> Result<BankProcess> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sfop"))
        .args(["bank", "serve", "--tls", tls, "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut stdout = std::io::BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .with_context(|| format!("no URL in {line:?}"))?
        .to_owned();
    Ok(BankProcess {
        child,
        url: format!("{url}/"),
        _stdout: stdout,
    })
}

fn rest(url: &str) -> Result<sfop_bank_connector::RestBank> {
    let home = sfop_bank_connector::BankEndpoint {
        url: url.to_owned(),
        tls: None,
    };
    Ok(sfop_bank_connector::RestBank::new(
        &sfop_bank_connector::RestBankConfig {
            banks: std::collections::BTreeMap::from([("097".to_owned(), home.clone())]),
            home,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        },
    )?)
}

fn hong_claims() -> Claims {
    Claims {
        client_id: DEMO_CLIENT_ID.into(),
        client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
        user_seq_no: Some("1100000001".into()),
        scopes: vec!["login".into(), "inquiry".into(), "transfer".into()],
        fintech_use_nums: vec![],
    }
}

fn bank_call(claims: &Claims) -> sfop_core::ledger::BankCall<'_> {
    sfop_core::ledger::BankCall {
        caller: Some(claims),
        now_millis: sfop_core::time::now_millis(),
        utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
    }
}

fn withdraw_request(id: &str) -> sfop_core::ledger::WithdrawRequest {
    sfop_core::ledger::WithdrawRequest {
        bank_tran_id: id.into(),
        fintech_use_num: HONG_FINTECH.into(),
        tran_amt: 1_000,
        cntr_account_num: DEMO_CONTRACT_ACCOUNT_NUM.into(),
        wd_print_content: "stream".into(),
        dps_print_content: "stream".into(),
        req_client_name: "홍길동".into(),
        req_client_num: "HONG".into(),
        transfer_purpose: "TR".into(),
        recv_client_name: String::new(),
        recv_client_bank_code: String::new(),
        recv_client_account_num: String::new(),
    }
}

/// Issue 19's acceptance at the bank: the virtual bank as its own process
/// (`sfop bank serve`), reached through the REST connector, is SIGKILLed in
/// the middle of three streams of withdrawals. After a restart on the same
/// data dir every acknowledged withdrawal is there, none twice: Hong's
/// balance fell by exactly 1 000 won per withdrawal the bank reports done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_process_killed_mid_stream_loses_and_doubles_nothing() -> Result<()> {
    use sfop_core::BankBackend;
    use sfop_core::ledger::{ResultQuery, TransferKind};
    let data = tempfile::tempdir()?;
    let mut bank = spawn_bank(data.path(), "off")?;
    let connector = Arc::new(rest(&bank.url)?);
    let claims = hong_claims();
    let before = connector
        .balance(&bank_call(&claims), &tran_id(), HONG_FINTECH)
        .await?
        .balance_amt;

    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let streams: Vec<_> = (0..3)
        .map(|_| {
            let (connector, acked, sent) = (connector.clone(), acked.clone(), sent.clone());
            tokio::spawn(async move {
                let claims = hong_claims();
                for _ in 0..10_000 {
                    let id = tran_id();
                    sent.lock().map(|mut s| s.push(id.clone())).ok();
                    match connector
                        .withdraw(&bank_call(&claims), &withdraw_request(&id))
                        .await
                    {
                        Ok(_) => {
                            acked.lock().map(|mut a| a.push(id)).ok();
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Kill after 30 acknowledgements (bounded wait).
    for _ in 0..3_000 {
        if acked.lock().map(|a| a.len()).unwrap_or(0) >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bank.child.kill()?;
    bank.child.wait()?;
    for stream in streams {
        stream.await?;
    }
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(acked.len() >= 30, "{} acknowledged", acked.len());

    let mut bank = spawn_bank(data.path(), "off")?;
    let connector = rest(&bank.url)?;
    let date = sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    );
    let queries: Vec<ResultQuery> = sent
        .iter()
        .map(|id| ResultQuery {
            kind: TransferKind::Withdraw,
            org_bank_tran_id: id.clone(),
            org_bank_tran_date: date[..8].into(),
            org_tran_amt: 1_000,
        })
        .collect();
    let mut done = 0;
    for (chunk_ids, chunk) in sent.chunks(20).zip(queries.chunks(20)) {
        let found = connector
            .transfer_result(&bank_call(&claims), chunk)
            .await?;
        for (id, result) in chunk_ids.iter().zip(found) {
            match result {
                Ok(_) => done += 1,
                Err(_) => assert!(!acked.contains(id), "acknowledged {id} was lost"),
            }
        }
    }
    let after = connector
        .balance(&bank_call(&claims), &tran_id(), HONG_FINTECH)
        .await?
        .balance_amt;
    eprintln!(
        "bank SIGKILL: {} acknowledged, {} sent, {done} done after restart",
        acked.len(),
        sent.len()
    );
    assert!(done >= acked.len());
    assert_eq!(
        after,
        before - 1_000 * done as i64,
        "each done withdrawal moved once"
    );
    bank.child.kill()?;
    bank.child.wait()?;
    Ok(())
}

/// The gateway and the virtual bank as two processes over HTTPS
/// (`[bank] mode = "rest"` to a `sfop bank serve` with its self-signed
/// certificate): withdrawals through the API reach the bank process
/// (exactly once: a repeat is `A0326`), and once it is killed the same APIs
/// answer `A0017` at once, the gateway unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reaches_a_bank_process_over_https() -> Result<()> {
    let data = tempfile::tempdir()?;
    let mut bank = spawn_bank(data.path(), "self-signed")?;
    assert!(bank.url.starts_with("https://"), "{}", bank.url);
    let home = sfop::bank::BankServer {
        url: bank.url.clone(),
        ca: Some(data.path().join("tls/cert.pem")),
        client_cert: None,
        client_key: None,
    };
    let built = crate::harness::built_plugins()?;
    let manifest = std::fs::read_to_string(built.join("api/transfer-withdraw/sfop.toml"))?;
    let manifest = format!("{manifest}\n[limits]\ntimeout_ms = {TIMEOUT_MS}\n");
    let t = TestPlatform::start_overriding(
        vec![
            Package::built("api/bank-status"),
            Package::built("api/transfer-withdraw").with_manifest(&manifest),
        ],
        move |c| {
            c.tls.mode = TlsMode::Off;
            c.bank.mode = sfop::bank::BankMode::Rest;
            c.bank.home = Some(home);
        },
        sfop::Overrides {
            authorizer: Some(Arc::new(Hong)),
            ..Default::default()
        },
    )
    .await?;
    let status = send(t.addr(), "GET", "/v2.0/bank/status", &[], Vec::new()).await?;
    assert_eq!(status.json()?["rsp_code"], "A0000", "{status:?}");
    let id = tran_id();
    let reply = withdraw(&t, &id).await?;
    assert_eq!(reply["rsp_code"], "A0000", "{reply}");
    let repeat = withdraw(&t, &id).await?;
    assert_eq!(repeat["rsp_code"], "A0326", "{repeat}");

    bank.child.kill()?;
    bank.child.wait()?;
    let started = Instant::now();
    let reply = withdraw(&t, &tran_id()).await?;
    assert_eq!(reply["rsp_code"], "A0017", "{reply}");
    let status = send(t.addr(), "GET", "/v2.0/bank/status", &[], Vec::new()).await?;
    assert_eq!(status.json()?["rsp_code"], "A0017", "{status:?}");
    assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS + 100));
    Ok(())
}
