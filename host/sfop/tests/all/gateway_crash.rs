//! Issue 5, at the gateway: the real `sfop serve` binary, with authorisation
//! on, is SIGKILLed in the middle of a stream of withdrawals made with a real
//! user token. After a restart on the same data dir, every transfer the
//! client saw acknowledged is there exactly once (the API reports it done, a
//! re-send is `A0326` and moves nothing), none is applied twice, and the sum
//! of all balances is unchanged.
//!
//! Three streams, each sequential (a withdrawal is sent when the previous one
//! was acknowledged), run side by side so that the kill, after 30
//! acknowledgements, finds requests at every stage. A withdrawal whose answer
//! never came is, after the restart, either done or unknown to the bank
//! (`/v2.0/transfer/result`), never half-booked; both happen across runs.
//! The bank's books are read last, by opening the store once no process
//! holds it (sled allows one).
//!
//! Readiness is the one line `sfop serve` prints on stdout; nothing sleeps,
//! and every wait and loop is bounded.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sfop_store::Store;
use sfop_vbank::VirtualBank;
use tokio::sync::mpsc;

use crate::harness::{Reply, built_plugins, send};

/// Acknowledged withdrawals (over all streams) before the kill.
const KILL_AFTER: u32 = 30;
/// Streams of withdrawals running side by side.
const STREAMS: u32 = 3;
/// A stream never gets this far; a bound on its loop.
const MAX_STREAM: u32 = 10_000;
/// Stream `w` numbers its withdrawals from `w * STREAM_SPACING + 1`.
const STREAM_SPACING: u32 = 1_000_000;
/// Balance inquiries number their `bank_tran_id`s from here.
const BALANCE_IDS: u32 = 900_000_000;
/// Bound on one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a start (the first compiles every component).
const START_TIMEOUT: Duration = Duration::from_secs(300);
const HONG_MAIN: &str = "097/1101234567890";
const CONTRACT: &str = "5000000000001";
const VERIFIER: &str = "crash-test-pkce-verifier-0123456789-abcdefghijklmnop";
const STATE: &str = "0123456789abcdef0123456789abcdef";

/// A running `sfop serve` child.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    /// Kept open so the child never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Gateway {
    /// Starts the binary over `data` (cleartext, biscuit auth, ephemeral
    /// ports) and returns once it printed its listening line.
    async fn start(data: &Path, plugins: &Path, log: &Path) -> Result<Self> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfop"));
        // Only the flags below configure it, whatever the caller's environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SFOP_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
            .args(["--tls", "off", "--auth", "biscuit"])
            .arg("--plugins")
            .arg(plugins)
            .arg("--data-dir")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("spawning sfop serve")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let first_line = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line)?;
            Ok((line, reader))
        });
        let (line, reader) = match tokio::time::timeout(START_TIMEOUT, first_line).await {
            Ok(read) => read??,
            Err(_) => {
                child.kill()?;
                child.wait()?;
                bail!(
                    "sfop serve printed nothing in {START_TIMEOUT:?}; its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        };
        let Some(rest) = line.strip_prefix("sfop gateway listening on http://") else {
            let status = child.wait()?;
            bail!(
                "sfop serve ({status}) printed {line:?} instead of its listening line; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        let (addr, live) = rest.split_once(" (").context("listening line")?;
        let (live, total) = live
            .split_once(" API packages")
            .and_then(|(counts, _)| counts.split_once(" of "))
            .context("package counts in the listening line")?;
        ensure!(live == total, "not every package is live: {line}");
        Ok(Self {
            child,
            addr: addr
                .parse()
                .with_context(|| format!("address in {line:?}"))?,
            _stdout: reader,
        })
    }

    /// SIGKILL, and reap.
    fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    async fn form(&self, path: &str, fields: &[(&str, &str)]) -> Result<Reply> {
        send(
            self.addr,
            "POST",
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            form(fields),
        )
        .await
    }

    async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let auth = format!("Bearer {token}");
        let reply = send(
            self.addr,
            method,
            path,
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        )
        .await?;
        reply.json().with_context(|| format!("{method} {path}"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // A failing test must not leave the child behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    fields
        .iter()
        .map(|(k, v)| {
            let v: String = v
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// Every `value` of inputs named `name` on a page.
fn inputs(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .filter_map(|(at, _)| {
            let rest = &html[at + marker.len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?.1.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

fn code(v: &Value) -> &str {
    v["rsp_code"].as_str().unwrap_or_default()
}

/// The demo app (from the data dir) and user hong's token for it: the
/// authorize pages, every account ticked, the code exchanged with PKCE.
async fn hong_token(gw: &Gateway, data: &Path) -> Result<(Value, String)> {
    let demo: Value = serde_json::from_slice(&std::fs::read(data.join("demo-client.json"))?)?;
    let field = |k: &str| demo[k].as_str().context("demo-client.json field");
    let (client_id, secret, redirect) = (
        field("client_id")?,
        field("client_secret")?,
        field("redirect_uri")?,
    );
    let query = String::from_utf8(form(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("scope", "login inquiry transfer"),
        ("state", STATE),
        ("auth_type", "0"),
        ("code_challenge", &sfop_auth::oauth::pkce_s256(VERIFIER)),
        ("code_challenge_method", "S256"),
    ]))?;
    let page = send(
        gw.addr,
        "GET",
        &format!("/oauth/2.0/authorize?{query}"),
        &[],
        Vec::new(),
    )
    .await?;
    let html = String::from_utf8(page.body.to_vec())?;
    let pending = inputs(&html, "pending")
        .pop()
        .with_context(|| format!("no sign-in form ({}): {html}", page.status))?;
    let consent = gw
        .form(
            "/oauth/2.0/authorize",
            &[
                ("pending", &pending),
                ("action", "login"),
                ("login_id", "hong"),
                ("password", "hong1234"),
            ],
        )
        .await?;
    let accounts = inputs(&String::from_utf8(consent.body.to_vec())?, "account");
    ensure!(!accounts.is_empty(), "no accounts on the consent page");
    let mut fields = vec![("pending", pending.as_str()), ("action", "consent")];
    fields.extend(accounts.iter().map(|a| ("account", a.as_str())));
    fields.extend(["login", "inquiry", "transfer"].map(|s| ("scope", s)));
    let redirect_reply = gw.form("/oauth/2.0/authorize", &fields).await?;
    let location = redirect_reply.header("location").context("no redirect")?;
    ensure!(query_param(location, "state").as_deref() == Some(STATE));
    let auth_code = query_param(location, "code").context("no code")?;
    let token = gw
        .form(
            "/oauth/2.0/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &auth_code),
                ("client_id", client_id),
                ("client_secret", secret),
                ("redirect_uri", redirect),
                ("code_verifier", VERIFIER),
            ],
        )
        .await?
        .json()?;
    let access = token["access_token"]
        .as_str()
        .with_context(|| format!("no access token: {token}"))?
        .to_owned();
    Ok((demo, access))
}

async fn oob_token(gw: &Gateway, demo: &Value) -> Result<String> {
    let token = gw
        .form(
            "/oauth/2.0/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "oob"),
                ("client_id", demo["client_id"].as_str().unwrap_or_default()),
                (
                    "client_secret",
                    demo["client_secret"].as_str().unwrap_or_default(),
                ),
            ],
        )
        .await?
        .json()?;
    token["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no oob token: {token}"))
}

/// Today in Korea time, as the bank keys `bank_tran_id`s.
fn today() -> String {
    sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    )[..8]
        .to_owned()
}

fn dtime() -> String {
    sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    )[..14]
        .to_owned()
}

struct Stream {
    use_code: String,
    fin: String,
}

impl Stream {
    fn id(&self, i: u32) -> String {
        format!("{}U{i:09}", self.use_code)
    }

    /// Small, varied amounts, so a double booking shows in the sums.
    fn amount(i: u32) -> i64 {
        100 + i64::from(i % 7) * 10
    }

    fn withdraw(&self, i: u32) -> Value {
        json!({
            "bank_tran_id": self.id(i),
            "cntr_account_type": "N",
            "cntr_account_num": CONTRACT,
            "dps_print_content": "홍길동",
            "fintech_use_num": self.fin,
            "wd_print_content": "crash test",
            "tran_amt": Self::amount(i).to_string(),
            "tran_dtime": dtime(),
            "req_client_name": "홍길동",
            "req_client_num": "HONG0001",
            "transfer_purpose": "TR",
        })
    }

    /// A balance inquiry; its `bank_tran_id`s are far from the stream's.
    async fn balance(&self, gw: &Gateway, token: &str, n: u32) -> Result<i64> {
        let b = gw
            .api(
                "GET",
                &format!(
                    "/v2.0/account/balance/fin_num?bank_tran_id={}&fintech_use_num={}&tran_dtime={}",
                    self.id(BALANCE_IDS + n),
                    self.fin,
                    dtime()
                ),
                token,
                None,
            )
            .await?;
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
    /// The withdrawal whose answer never came (the gateway died), and the
    /// day it was sent.
    unanswered: Option<(u32, String)>,
}

/// Withdrawals one after another, each sent when the previous one was
/// acknowledged, until the gateway stops answering. Signals each
/// acknowledgement on `acks`.
async fn stream(
    addr: SocketAddr,
    token: String,
    s: Arc<Stream>,
    first: u32,
    acks: mpsc::UnboundedSender<()>,
) -> Result<StreamEnd> {
    let mut end = StreamEnd::default();
    let auth = format!("Bearer {token}");
    for i in first..first + MAX_STREAM {
        let day = today();
        let sent = tokio::time::timeout(
            REQUEST_TIMEOUT,
            send(
                addr,
                "POST",
                "/v2.0/transfer/withdraw/fin_num",
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
                s.withdraw(i).to_string().into_bytes(),
            ),
        )
        .await
        .with_context(|| format!("withdraw {i} hung"))?;
        let Ok(reply) = sent else {
            // The connection broke: the gateway is gone, the outcome unknown.
            end.unanswered = Some((i, day));
            return Ok(end);
        };
        let answer = reply.json()?;
        ensure!(code(&answer) == "A0000", "withdraw {i}: {answer}");
        let date = answer["bank_tran_date"]
            .as_str()
            .context("bank_tran_date")?;
        end.acked.push((i, date.to_owned()));
        let _ = acks.send(());
    }
    bail!("stream {first} ran {MAX_STREAM} withdrawals and the gateway still answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_withdrawals_survive_a_gateway_sigkill_exactly_once() -> Result<()> {
    let plugins: PathBuf = built_plugins()?.join("api");
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let log = |n: u32| dir.path().join(format!("sfop-{n}.log"));
    // Seed the bank and take its totals; the store is closed again before
    // the gateway opens it (sled allows one process).
    let (capital, total_before) = {
        let bank = VirtualBank::open(&Store::open(&data)?)?;
        (bank.capital()?, bank.total_balance()?)
    };
    assert_eq!(total_before, capital);

    // 1. Withdrawals through the real binary, killed mid-stream.
    let gw = Gateway::start(&data, &plugins, &log(1)).await?;
    let (demo, token) = hong_token(&gw, &data).await?;
    let use_code = demo["client_use_code"]
        .as_str()
        .context("client_use_code")?
        .to_owned();
    let list = gw
        .api(
            "GET",
            "/v2.0/account/list?user_seq_no=1100000001&include_cancel_yn=N&sort_order=A",
            &token,
            None,
        )
        .await?;
    let fin = list["res_list"]
        .as_array()
        .and_then(|l| l.iter().find(|a| a["bank_code_std"] == "097"))
        .and_then(|a| a["fintech_use_num"].as_str())
        .with_context(|| format!("hong's 097 account: {list}"))?
        .to_owned();
    let s = Stream { use_code, fin };
    let balance_before = s.balance(&gw, &token, 1).await?;
    let day = today();

    // A few streams side by side, so the kill lands while requests are at
    // every stage: connecting, authorising, in the component, in the bank.
    let s = Arc::new(s);
    let (acks, mut acked_signal) = mpsc::unbounded_channel();
    let streams: Vec<_> = (0..STREAMS)
        .map(|w| {
            tokio::spawn(stream(
                gw.addr,
                token.clone(),
                s.clone(),
                w * STREAM_SPACING + 1,
                acks.clone(),
            ))
        })
        .collect();
    drop(acks);
    for _ in 0..KILL_AFTER {
        acked_signal
            .recv()
            .await
            .context("the streams ended before the kill")?;
    }
    gw.kill()?; // SIGKILL, mid-stream

    // (bank_tran_id, amount, bank_tran_date) of each acknowledged withdrawal,
    // and the numbers of the unanswered ones with the day they were sent.
    let mut acked: Vec<(String, i64, String)> = Vec::new();
    let mut unknown: Vec<(u32, String)> = Vec::new();
    for handle in streams {
        let end = handle.await??;
        acked.extend(
            end.acked
                .into_iter()
                .map(|(n, date)| (s.id(n), Stream::amount(n), date)),
        );
        unknown.extend(end.unanswered);
    }
    assert!(acked.len() >= KILL_AFTER as usize);

    // 2. Restart on the same data dir; the API tells what is there.
    let gw = Gateway::start(&data, &plugins, &log(2)).await?;
    let oob = oob_token(&gw, &demo).await?;
    let result_query = |items: &[(String, i64, String)]| {
        json!({
            "check_type": "1",
            "tran_dtime": dtime(),
            "req_cnt": items.len().to_string(),
            "req_list": items.iter().enumerate().map(|(k, (id, amt, date))| json!({
                "tran_no": (k + 1).to_string(),
                "org_bank_tran_id": id,
                "org_bank_tran_date": date,
                "org_tran_amt": amt.to_string(),
            })).collect::<Vec<_>>(),
        })
    };
    // Every acknowledged withdrawal is reported done, with its amount.
    let mut acked_total = 0;
    for batch in acked.chunks(25) {
        let r = gw
            .api(
                "POST",
                "/v2.0/transfer/result",
                &oob,
                Some(&result_query(batch)),
            )
            .await?;
        assert_eq!(code(&r), "A0000", "{r}");
        let list = r["res_list"].as_array().context("res_list")?;
        assert_eq!(list.len(), batch.len());
        for (item, (id, amt, _)) in list.iter().zip(batch) {
            assert_eq!(
                (&item["rsp_code"], &item["bank_rsp_code"]),
                (&json!("A0000"), &json!("000")),
                "acknowledged {id} is not done after the restart: {item}"
            );
            assert_eq!(item["tran_amt"], amt.to_string());
            acked_total += amt;
        }
    }
    // An in-flight one is either done or unknown to the bank, never half.
    let unknown_items: Vec<(String, i64, String)> = unknown
        .iter()
        .map(|(n, day)| (s.id(*n), Stream::amount(*n), day.clone()))
        .collect();
    let mut booked_in_flight = Vec::new();
    if !unknown_items.is_empty() {
        let r = gw
            .api(
                "POST",
                "/v2.0/transfer/result",
                &oob,
                Some(&result_query(&unknown_items)),
            )
            .await?;
        assert_eq!(code(&r), "A0000", "{r}");
        let list = r["res_list"].as_array().context("res_list")?;
        assert_eq!(list.len(), unknown_items.len());
        for (item, (id, amt, _)) in list.iter().zip(&unknown_items) {
            match (
                code(item),
                item["bank_rsp_code"].as_str().unwrap_or_default(),
            ) {
                ("A0000", "000") => booked_in_flight.push((id.clone(), *amt)),
                ("A0009", "430") => {}
                other => bail!("in-flight {id}: unexpected {other:?}: {item}"),
            }
        }
    }
    eprintln!(
        "gateway crash: {} acknowledged, {} in flight booked unanswered, {} not booked",
        acked.len(),
        booked_in_flight.len(),
        unknown.len() - booked_in_flight.len()
    );
    let in_flight_total: i64 = booked_in_flight.iter().map(|(_, a)| a).sum();
    let balance_after = s.balance(&gw, &token, 2).await?;
    assert_eq!(
        balance_after,
        balance_before - acked_total - in_flight_total
    );

    // Re-sending an acknowledged withdrawal (or a booked unanswered one) is
    // refused as a duplicate and moves no money. (The bank keys
    // bank_tran_ids by day: one booked on an earlier day, across midnight,
    // is not re-sent.)
    let today = today();
    let mut resent = 0;
    let booked_unanswered = unknown_items
        .iter()
        .filter(|(id, _, _)| booked_in_flight.iter().any(|(b, _)| b == id));
    for (id, _, date) in acked.iter().chain(booked_unanswered) {
        if *date != today {
            continue;
        }
        let n: u32 = id[11..].parse()?;
        let again = gw
            .api(
                "POST",
                "/v2.0/transfer/withdraw/fin_num",
                &token,
                Some(&s.withdraw(n)),
            )
            .await?;
        assert_eq!(code(&again), "A0326", "re-sent {id}: {again}");
        resent += 1;
    }
    assert!(resent > 0 || day != today, "nothing was re-sent");
    assert_eq!(s.balance(&gw, &token, 3).await?, balance_after);
    gw.kill()?;

    // 3. The bank's own books, once no process holds the store.
    let bank = VirtualBank::open(&Store::open(&data)?)?;
    let statement = bank.statement(HONG_MAIN)?;
    // The streams' withdrawals on hong's statement (the rest are the seed's).
    let mut booked = Vec::new();
    for line in &statement {
        let Some(n) = line
            .bank_tran_id
            .as_deref()
            .and_then(|id| id.strip_prefix(&format!("{}U", s.use_code)))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n < BALANCE_IDS)
        else {
            continue;
        };
        assert!(!line.deposit, "{} booked as a deposit", s.id(n));
        assert_eq!(
            i64::try_from(line.amount)?,
            Stream::amount(n),
            "amount of {}",
            s.id(n)
        );
        booked.push(line.bank_tran_id.as_deref().unwrap_or_default());
    }
    for (id, _, _) in &acked {
        let n = booked.iter().filter(|b| *b == id).count();
        assert_eq!(n, 1, "acknowledged {id} booked {n} times");
    }
    let mut distinct = booked.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        booked.len(),
        "a withdrawal was applied twice"
    );
    assert_eq!(booked.len(), acked.len() + booked_in_flight.len());
    assert_eq!(bank.balance_of(HONG_MAIN)?, balance_after);
    assert_eq!(
        bank.total_balance()?,
        total_before,
        "money appeared or vanished"
    );
    assert_eq!(bank.total_balance()?, capital);
    assert_eq!(bank.audit()?, Ok(()));
    Ok(())
}
