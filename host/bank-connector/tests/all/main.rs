//! The connector against a real bank server on `127.0.0.1:0` (the virtual
//! bank behind `serve`, plain and over TLS), and against banks that answer
//! garbage, close the connection, are down, or never answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sfop_bank_connector::{BankEndpoint, RestBank, RestBankConfig, serve};
use sfop_core::ledger::{BankCall, ResultQuery, TransferKind, WithdrawRequest, codes};
use sfop_core::{BankBackend, BankError, Claims};
use sfop_vbank::VirtualBank;
use sfop_vbank::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, DEMO_CONTRACT_ACCOUNT_NUM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HONG_FINTECH: &str = "120230000100000000000015";

fn hong() -> Claims {
    Claims {
        client_id: DEMO_CLIENT_ID.into(),
        client_use_code: Some(DEMO_CLIENT_USE_CODE.into()),
        user_seq_no: Some("1100000001".into()),
        scopes: vec!["login".into(), "inquiry".into(), "transfer".into()],
        fintech_use_nums: vec![],
    }
}

fn call(claims: &Claims) -> BankCall<'_> {
    BankCall {
        caller: Some(claims),
        now_millis: sfop_core::time::now_millis(),
        utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
    }
}

fn tran_id(n: u32) -> String {
    format!("{DEMO_CLIENT_USE_CODE}U{n:09}")
}

fn withdraw(id: &str) -> WithdrawRequest {
    WithdrawRequest {
        bank_tran_id: id.into(),
        fintech_use_num: HONG_FINTECH.into(),
        tran_amt: 1_000,
        cntr_account_num: DEMO_CONTRACT_ACCOUNT_NUM.into(),
        wd_print_content: "coffee".into(),
        dps_print_content: "connector".into(),
        req_client_name: "홍길동".into(),
        req_client_num: "HONG".into(),
        transfer_purpose: "TR".into(),
        recv_client_name: String::new(),
        recv_client_bank_code: String::new(),
        recv_client_account_num: String::new(),
    }
}

fn connector(url: String, tls: Option<Arc<rustls::ClientConfig>>) -> Result<RestBank> {
    let home = BankEndpoint { url, tls };
    Ok(RestBank::new(&RestBankConfig {
        banks: BTreeMap::from([("097".to_owned(), home.clone())]),
        home,
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(800),
    })?)
}

struct Server {
    addr: SocketAddr,
    bank: VirtualBank,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn bank_server(tls: Option<tokio_rustls::TlsAcceptor>) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let bank = VirtualBank::open(&sfop_store::Store::open(dir.path())?)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let backend: Arc<dyn BankBackend> = Arc::new(bank.clone());
    tokio::spawn(serve(listener, backend, tls, async {
        let _ = stopped.await;
    }));
    Ok(Server {
        addr,
        bank,
        _dir: dir,
        _stop: stop,
    })
}

/// The journey's ledger operations through the connector give what the
/// bank gives, refusals included; a transfer moves money once.
async fn journey(rest: &RestBank, server: &Server, first_id: u32) -> Result<()> {
    let claims = hong();
    let banks = rest.bank_status(&call(&claims)).await?;
    assert_eq!(banks, server.bank.bank_status(&call(&claims))?);
    let accounts = rest
        .registered_accounts(&call(&claims), "1100000001", false)
        .await?;
    assert!(accounts.iter().any(|a| a.fintech_use_num == HONG_FINTECH));
    let balance = rest
        .balance(&call(&claims), &tran_id(first_id), HONG_FINTECH)
        .await?;
    let total = server.bank.total_balance()?;

    let id = tran_id(first_id + 1);
    let receipt = rest.withdraw(&call(&claims), &withdraw(&id)).await?;
    assert_eq!(receipt.tran_amt, 1_000);
    match rest.withdraw(&call(&claims), &withdraw(&id)).await {
        Err(BankError::Refused(r)) => assert_eq!(r.rsp_code, codes::DUPLICATE_BANK_TRAN_ID),
        other => anyhow::bail!("a repeat must be A0326, got {other:?}"),
    }
    let date = sfop_core::time::format_dtm(claims_now(), sfop_core::time::KST_OFFSET_MINUTES);
    let found = rest
        .transfer_result(
            &call(&claims),
            &[
                ResultQuery {
                    kind: TransferKind::Withdraw,
                    org_bank_tran_id: id.clone(),
                    org_bank_tran_date: date[..8].into(),
                    org_tran_amt: 1_000,
                },
                ResultQuery {
                    kind: TransferKind::Withdraw,
                    org_bank_tran_id: tran_id(first_id + 50),
                    org_bank_tran_date: date[..8].into(),
                    org_tran_amt: 1_000,
                },
            ],
        )
        .await?;
    assert!(
        matches!(found.as_slice(), [Ok(r), Err(_)] if r.tran_amt == 1_000),
        "{found:?}"
    );
    let after = rest
        .balance(&call(&claims), &tran_id(first_id + 2), HONG_FINTECH)
        .await?;
    assert_eq!(after.balance_amt, balance.balance_amt - 1_000);
    assert_eq!(
        server.bank.total_balance()?,
        total,
        "money moved, none created"
    );
    Ok(())
}

fn claims_now() -> u64 {
    sfop_core::time::now_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_over_http_gives_what_the_bank_gives() -> Result<()> {
    let server = bank_server(None).await?;
    let rest = connector(format!("http://{}/", server.addr), None)?;
    journey(&rest, &server, 100).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_over_tls() -> Result<()> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert = generated.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(anyhow::Error::msg)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    let server = bank_server(Some(tokio_rustls::TlsAcceptor::from(Arc::new(
        server_config,
    ))))
    .await?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let rest = connector(
        format!("https://localhost:{}/", server.addr.port()),
        Some(Arc::new(client_config)),
    )?;
    journey(&rest, &server, 200).await
}

/// A server that reads one request and does `answer` with the connection.
async fn rogue(answer: &'static [u8], close: bool) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                if !answer.is_empty() {
                    let _ = stream.write_all(answer).await;
                }
                if close {
                    drop(stream);
                } else {
                    // Never answers, never closes.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
            });
        }
    });
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closed_down_and_silent_banks_get_clear_codes() -> Result<()> {
    let claims = hong();
    let id = tran_id(300);

    let garbage = rogue(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", true).await?;
    let rest = connector(format!("http://{garbage}/"), None)?;
    match rest.withdraw(&call(&claims), &withdraw(&id)).await {
        Err(BankError::Backend(m)) => assert!(m.contains("not readable"), "{m}"),
        other => anyhow::bail!("garbage must be a bank error, got {other:?}"),
    }

    let server_error = rogue(
        b"HTTP/1.1 500 Internal\r\ncontent-length: 2\r\n\r\n{}",
        true,
    )
    .await?;
    let rest = connector(format!("http://{server_error}/"), None)?;
    assert!(matches!(
        rest.balance(&call(&claims), &id, HONG_FINTECH).await,
        Err(BankError::Backend(_))
    ));

    let closing = rogue(b"", true).await?;
    let rest = connector(format!("http://{closing}/"), None)?;
    match rest.withdraw(&call(&claims), &withdraw(&id)).await {
        Err(BankError::Backend(m)) => assert!(m.contains("closed"), "{m}"),
        other => anyhow::bail!("a closed connection must be a bank error, got {other:?}"),
    }

    let down = {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        listener.local_addr()?
    }; // nothing listens there now
    let rest = connector(format!("http://{down}/"), None)?;
    assert!(matches!(
        rest.bank_status(&call(&claims)).await,
        Err(BankError::Timeout)
    ));

    let silent = rogue(b"", false).await?;
    let rest = connector(format!("http://{silent}/"), None)?;
    let started = Instant::now();
    assert!(matches!(
        rest.withdraw(&call(&claims), &withdraw(&id)).await,
        Err(BankError::Timeout)
    ));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1_500),
        "{took:?}"
    );

    // A call addressed to a bank with no route.
    let rest = connector(format!("http://{down}/"), None)?;
    let query = sfop_core::ledger::RealNameQuery {
        bank_tran_id: id,
        account: sfop_core::ledger::AccountRef {
            bank_code_std: "999".into(),
            account_num: "1".into(),
        },
        account_holder_info_type: " ".into(),
        account_holder_info: "880101".into(),
    };
    match rest.real_name(&call(&claims), &query).await {
        Err(BankError::Backend(m)) => assert!(m.contains("999"), "{m}"),
        other => anyhow::bail!("no route must say so, got {other:?}"),
    }
    Ok(())
}

#[test]
fn urls_are_checked_when_the_connector_is_built() {
    for url in [
        "ftp://x:1/",
        "http://",
        "http://host/",
        "https://localhost:1/",
    ] {
        assert!(connector(url.into(), None).is_err(), "{url}");
    }
    assert!(connector("http://127.0.0.1:9/prefix".into(), None).is_ok());
}

/// The home bank's directory over the contract (`/v1/directory/...`): what
/// the OAuth server's pages ask is what the bank answers, and a consent
/// given through it is the bank's own record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_over_http_is_the_banks() -> Result<()> {
    use sfop_core::BankDirectory;
    use sfop_core::ledger::RegisterRequest;
    let dir = tempfile::tempdir()?;
    let bank = VirtualBank::open(&sfop_store::Store::open(dir.path())?)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sfop_bank_connector::serve_with_directory(
        listener,
        Arc::new(bank.clone()),
        Arc::new(bank.clone()),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let rest = connector(format!("http://{addr}/"), None)?;
    let no_caller = BankCall {
        caller: None,
        now_millis: claims_now(),
        utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
    };

    assert_eq!(
        rest.authenticate(&no_caller, "hong", "hong1234").await?,
        Some("1100000001".to_owned())
    );
    assert_eq!(rest.authenticate(&no_caller, "hong", "wrong").await?, None);
    assert_eq!(rest.authenticate(&no_caller, "nobody", "x").await?, None);

    let accounts = rest.accounts(&no_caller, "1100000001").await?;
    let theirs = bank.accounts_of("1100000001")?;
    assert_eq!(
        accounts.iter().map(|a| &a.id).collect::<Vec<_>>(),
        theirs.iter().map(|a| &a.id).collect::<Vec<_>>()
    );
    assert!(accounts.iter().all(|a| !a.bank_name.is_empty()));

    let request = RegisterRequest {
        user_seq_no: "1100000001".into(),
        client_id: "other-app".into(),
        client_use_code: "M202300002".into(),
        account_ids: accounts.iter().map(|a| a.id.clone()).collect(),
        scopes: vec!["login".into(), "inquiry".into()],
    };
    let nums = rest.register(&no_caller, &request).await?;
    assert_eq!(nums.len(), accounts.len());
    let live = bank.fintech_use_nums("1100000001", "other-app", claims_now())?;
    assert_eq!(
        {
            let mut l = live.clone();
            l.sort();
            l
        },
        {
            let mut n = nums.clone();
            n.sort();
            n
        },
        "the bank recorded the consent"
    );
    // Another user's account is the bank's refusal, not a failure.
    let kim = bank.accounts_of("1100000002")?;
    let mut theirs_too = request.clone();
    theirs_too.account_ids = vec![kim[0].id.clone()];
    assert!(matches!(
        rest.register(&no_caller, &theirs_too).await,
        Err(BankError::Refused(_))
    ));

    assert_eq!(
        rest.unlink(&no_caller, "1100000001", "other-app").await?,
        nums.len() as u64
    );
    assert!(
        bank.fintech_use_nums("1100000001", "other-app", claims_now())?
            .is_empty()
    );

    // A bank server without a directory says so; nothing is made up.
    let plain = bank_server(None).await?;
    let rest = connector(format!("http://{}/", plain.addr), None)?;
    assert!(matches!(
        rest.authenticate(&no_caller, "hong", "hong1234").await,
        Err(BankError::Backend(_))
    ));
    Ok(())
}

/// A server that reads one request, hands its bytes to the test, and
/// answers bank-status with no banks.
async fn recorder() -> Result<(SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                let body = br#"{"ok":[]}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body).await;
            });
        }
    });
    Ok((addr, rx))
}

fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.split("\r\n\r\n").next()?.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Every request names how long the platform waits (`x-sfop-deadline-ms`:
/// the host call's deadline when sooner than the connector's own timeout)
/// and, inside a host call, its `api_tran_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_the_call_and_its_deadline() -> Result<()> {
    use sfop_core::ledger::CallScope;
    let (addr, mut seen) = recorder().await?;
    let rest = connector(format!("http://{addr}/"), None)?;
    let claims = hong();

    let scope = CallScope {
        api_tran_id: "T1234567890ABCDEF".into(),
        deadline: Some(std::time::Instant::now() + Duration::from_millis(300)),
    };
    assert_eq!(scope.run(rest.bank_status(&call(&claims))).await?, vec![]);
    let request = seen.recv().await.context("no request")?;
    assert_eq!(
        header(&request, "x-sfop-api-tran-id"),
        Some("T1234567890ABCDEF"),
        "{request}"
    );
    let ms: u64 = header(&request, "x-sfop-deadline-ms")
        .context("no deadline")?
        .parse()?;
    assert!((1..=300).contains(&ms), "{ms}");

    // Outside a host call: no api_tran_id, the connector's own timeout.
    rest.bank_status(&call(&claims)).await?;
    let request = seen.recv().await.context("no request")?;
    assert_eq!(header(&request, "x-sfop-api-tran-id"), None, "{request}");
    let ms: u64 = header(&request, "x-sfop-deadline-ms")
        .context("no deadline")?
        .parse()?;
    assert!((700..=800).contains(&ms), "{ms}");
    Ok(())
}

/// A bank server drops work it cannot answer before the platform's
/// deadline (`504`, which the connector reads as `A0017`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_server_gives_up_at_the_platforms_deadline() -> Result<()> {
    use sfop_vbank::faults::{FaultKind, FaultRule, FaultScript, ScriptedBank};
    let dir = tempfile::tempdir()?;
    let store = sfop_store::Store::open(dir.path())?;
    let faults = FaultScript::open(&store)?;
    faults.add(FaultRule {
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
    let hanging = ScriptedBank::new(VirtualBank::open(&store)?, faults);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, Arc::new(hanging), None, async {
        let _ = stopped.await;
    }));
    let body = serde_json::json!({
        "caller": hong(),
        "now_millis": claims_now(),
        "utc_offset_minutes": sfop_core::time::KST_OFFSET_MINUTES,
        "args": withdraw(&tran_id(400)),
    })
    .to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let started = Instant::now();
    stream
        .write_all(
            format!(
                "POST /v1/ledger/withdraw HTTP/1.1\r\nhost: bank\r\ncontent-type: application/json\r\nx-sfop-deadline-ms: 100\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .context("the bank server kept waiting")??;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(took >= Duration::from_millis(100), "{took:?}");
    Ok(())
}
