//! Issue 5: every reference open-banking API, through real HTTP, real Wasm
//! components (`target/sfop-plugins/api`) and the real virtual bank in a
//! temp sled store.
//!
//! OAuth is not built yet, so the caller's claims come from the TEST-ONLY
//! authoriser [`HeaderClaims`], which believes a request header. It lives
//! here and nowhere else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sfop::{Config, Platform, TlsMode};
use sfop_core::{Claims, Manifest};
use sfop_gateway::{AuthRequest, Authorizer, Denial};
use sfop_vbank::seed::{DEMO_CLIENT_ID, DEMO_CLIENT_USE_CODE, DEMO_CONTRACT_ACCOUNT_NUM};
use sfop_vbank::{AccountState, Limits};
use tempfile::TempDir;

use crate::harness::{assert_envelope, built_plugins, send};

/// The header [`HeaderClaims`] reads.
const CLAIMS_HEADER: &str = "x-test-claims";

/// TEST DOUBLE, never for real use: takes the caller's claims from the JSON
/// in header `x-test-claims` (no header: no caller). It stands in for the
/// OAuth authoriser so these tests can exercise what the bank decides with
/// the claims: consents, ownership, institution identity.
#[derive(Debug)]
struct HeaderClaims;

impl Authorizer for HeaderClaims {
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<Option<Claims>, Denial> {
        let Some(value) = request.headers.get(CLAIMS_HEADER) else {
            return Ok(None);
        };
        let denial =
            || Denial::unauthenticated("O0002", "test claims header is not valid JSON claims");
        let v: Value = value
            .to_str()
            .ok()
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(denial)?;
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        let list = |k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Some(Claims {
            client_id: text("client_id").ok_or_else(denial)?,
            client_use_code: text("client_use_code"),
            user_seq_no: text("user_seq_no"),
            scopes: list("scopes"),
            fintech_use_nums: list("fintech_use_nums"),
        }))
    }
}

/// A platform serving every built reference API over a fresh virtual bank.
struct Bank {
    platform: Platform,
    _data: TempDir,
}

/// A user of the demo client, by `user_seq_no`.
fn user(user_seq_no: &str) -> Value {
    json!({
        "client_id": DEMO_CLIENT_ID,
        "client_use_code": DEMO_CLIENT_USE_CODE,
        "user_seq_no": user_seq_no,
        "scopes": ["login", "inquiry", "transfer"],
    })
}

const HONG: &str = "1100000001";
const KIM: &str = "1100000002";
const LEE: &str = "1100000003";

/// The demo institution itself (2-legged, `oob`).
fn institution() -> Value {
    json!({
        "client_id": DEMO_CLIENT_ID,
        "client_use_code": DEMO_CLIENT_USE_CODE,
        "scopes": ["oob"],
    })
}

/// A fresh `bank_tran_id` of the demo institution.
fn tran_id() -> String {
    static N: AtomicU32 = AtomicU32::new(1);
    format!(
        "{DEMO_CLIENT_USE_CODE}U{:09}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

const DTIME: &str = "20261122120000";

fn now() -> u64 {
    sfop_core::time::now_millis()
}

impl Bank {
    async fn start() -> Result<Self> {
        let data = tempfile::tempdir()?;
        let config = Config {
            listen: "127.0.0.1:0".parse()?,
            ops_listen: "127.0.0.1:0".parse()?,
            plugins: built_plugins()?.join("api"),
            data_dir: data.path().to_owned(),
            tls: sfop::config::TlsConfig {
                mode: TlsMode::Off,
                ..Default::default()
            },
            // The APIs' behaviour is under test here; going live through the
            // testbed has its own tests (management, gateway_crash, examples).
            management: sfop::config::ManagementSection {
                bootstrap: sfop::Bootstrap::Trusted,
                ..Default::default()
            },
            ..Config::default()
        };
        let platform = sfop::start_with_authorizer(config, Arc::new(HeaderClaims)).await?;
        for p in &platform.packages {
            if let sfop::LoadOutcome::Refused { error } = &p.outcome {
                bail!("package {} refused: {error}", p.dir.display());
            }
        }
        Ok(Self {
            platform,
            _data: data,
        })
    }

    fn vbank(&self) -> &sfop_vbank::VirtualBank {
        &self.platform.bank
    }

    /// Sends a request; asserts HTTP 200 (business failures too) and the
    /// common envelope; returns the body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        claims: Option<&Value>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let claims_text = claims.map(Value::to_string);
        let mut headers = vec![("content-type", "application/json")];
        if let Some(c) = &claims_text {
            headers.push((CLAIMS_HEADER, c.as_str()));
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let reply = send(self.platform.local_addr, method, path, &headers, bytes).await?;
        assert_eq!(reply.status, 200, "{method} {path}: {:?}", reply.body);
        assert_envelope(&reply)?;
        reply.json()
    }

    async fn get(&self, path: &str, claims: &Value) -> Result<Value> {
        self.call("GET", path, Some(claims), None).await
    }

    async fn post(&self, path: &str, claims: &Value, body: &Value) -> Result<Value> {
        self.call("POST", path, Some(claims), Some(body)).await
    }

    /// The fintech number of the user's account at `bank_code`, from `/v2.0/account/list`.
    async fn fin(&self, user_seq_no: &str, bank_code: &str) -> Result<String> {
        let list = self
            .get(
                &format!(
                    "/v2.0/account/list?user_seq_no={user_seq_no}&include_cancel_yn=Y&sort_order=A"
                ),
                &user(user_seq_no),
            )
            .await?;
        list["res_list"]
            .as_array()
            .and_then(|l| l.iter().find(|a| a["bank_code_std"] == bank_code))
            .and_then(|a| a["fintech_use_num"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no account of {user_seq_no} at {bank_code}: {list}"))
    }

    async fn balance(&self, user_seq_no: &str, fin: &str) -> Result<Value> {
        self.get(
            &format!(
                "/v2.0/account/balance/fin_num?bank_tran_id={}&fintech_use_num={fin}&tran_dtime={DTIME}",
                tran_id()
            ),
            &user(user_seq_no),
        )
        .await
    }

    async fn balance_amt(&self, user_seq_no: &str, fin: &str) -> Result<i64> {
        let b = self.balance(user_seq_no, fin).await?;
        b["balance_amt"]
            .as_str()
            .context("balance_amt")?
            .parse()
            .context("balance_amt digits")
    }

    async fn withdraw(&self, user_seq_no: &str, fin: &str, id: &str, amt: &str) -> Result<Value> {
        self.post(
            "/v2.0/transfer/withdraw/fin_num",
            &user(user_seq_no),
            &withdraw_body(fin, id, amt),
        )
        .await
    }

    async fn stop(self) -> Result<()> {
        assert_eq!(self.vbank().audit()?, Ok(()), "ledger audit");
        assert_eq!(self.vbank().total_balance()?, self.vbank().capital()?);
        self.platform.stop().await
    }
}

fn withdraw_body(fin: &str, id: &str, amt: &str) -> Value {
    json!({
        "bank_tran_id": id,
        "cntr_account_type": "N",
        "cntr_account_num": DEMO_CONTRACT_ACCOUNT_NUM,
        "dps_print_content": "홍길동",
        "fintech_use_num": fin,
        "wd_print_content": "QR 결제",
        "tran_amt": amt,
        "tran_dtime": DTIME,
        "req_client_name": "홍길동",
        "req_client_num": "HONG0001",
        "transfer_purpose": "TR",
    })
}

fn deposit_fin_body(fin: &str, id: &str, amt: &str) -> Value {
    json!({
        "cntr_account_type": "N",
        "cntr_account_num": DEMO_CONTRACT_ACCOUNT_NUM,
        "wd_pass_phrase": "NONE",
        "wd_print_content": "환불",
        "name_check_option": "off",
        "tran_dtime": DTIME,
        "req_cnt": "1",
        "req_list": [{
            "tran_no": "1",
            "bank_tran_id": id,
            "fintech_use_num": fin,
            "print_content": "데모핀테크 환불",
            "tran_amt": amt,
            "req_client_name": "홍길동",
            "req_client_num": "HONG0001",
            "transfer_purpose": "TR",
        }],
    })
}

fn deposit_acnt_body(
    bank: &str,
    num: &str,
    holder: &str,
    check: &str,
    id: &str,
    amt: &str,
) -> Value {
    json!({
        "cntr_account_type": "N",
        "cntr_account_num": DEMO_CONTRACT_ACCOUNT_NUM,
        "wd_pass_phrase": "NONE",
        "wd_print_content": "지급",
        "name_check_option": check,
        "tran_dtime": DTIME,
        "req_cnt": "1",
        "req_list": [{
            "tran_no": "1",
            "bank_tran_id": id,
            "bank_code_std": bank,
            "account_num": num,
            "account_holder_name": holder,
            "print_content": "데모핀테크 지급",
            "tran_amt": amt,
            "req_client_name": "데모",
            "req_client_num": "DEMO",
            "transfer_purpose": "TR",
        }],
    })
}

fn code(body: &Value) -> &str {
    body["rsp_code"].as_str().unwrap_or_default()
}

/// Asserts a business failure `expected`, whose message names `field` if given.
fn assert_refused(body: &Value, expected: &str, field: Option<&str>) {
    assert_eq!(code(body), expected, "{body}");
    if let Some(field) = field {
        let message = body["rsp_message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "message should name {field}: {body}"
        );
    }
}

fn bank_rsp(body: &Value) -> &str {
    body["bank_rsp_code"].as_str().unwrap_or_default()
}

/// Every field the API's manifest documents is in `body` (list fields in
/// each item), as a string; digit-typed fields (`N(..)`) hold digits.
fn assert_documented(api: &str, body: &Value) -> Result<()> {
    let path = built_plugins()?.join("api").join(api).join("sfop.toml");
    let manifest = Manifest::parse(&std::fs::read_to_string(&path)?)?;
    let docs = manifest.docs.context("manifest has [docs]")?;
    assert!(!docs.response.is_empty(), "{api} documents its response");
    let check = |name: &str, kind: &str, v: &Value| -> Result<()> {
        let s = v
            .as_str()
            .with_context(|| format!("{api}: {name} is not a string in {body}"))?;
        if kind.starts_with("N(") && !s.is_empty() {
            let digits = s.strip_prefix('-').unwrap_or(s);
            assert!(
                digits.bytes().all(|b| b.is_ascii_digit()),
                "{api}: {name} = {s:?} is not digits"
            );
        }
        Ok(())
    };
    for f in &docs.response {
        match f.name.split_once("[].") {
            Some((list, field)) => {
                let items = body[list]
                    .as_array()
                    .with_context(|| format!("{api}: {list} missing in {body}"))?;
                for item in items {
                    check(&f.name, &f.kind, &item[field])?;
                }
            }
            None => check(&f.name, &f.kind, &body[&f.name])?,
        }
    }
    Ok(())
}

#[tokio::test]
async fn user_me_and_account_list() -> Result<()> {
    let b = Bank::start().await?;
    let me = b
        .get(&format!("/v2.0/user/me?user_seq_no={HONG}"), &user(HONG))
        .await?;
    assert_eq!(code(&me), "A0000", "{me}");
    assert_documented("user-me", &me)?;
    assert_eq!(me["user_name"], "홍길동");
    assert_eq!(me["user_ci"].as_str().map(str::len), Some(88));
    assert_eq!(me["res_cnt"], "3");
    // Someone else's user, no user, no caller, bad format.
    let other = b
        .get(&format!("/v2.0/user/me?user_seq_no={KIM}"), &user(HONG))
        .await?;
    assert_refused(&other, "A0301", None);
    let none = b
        .call(
            "GET",
            &format!("/v2.0/user/me?user_seq_no={HONG}"),
            None,
            None,
        )
        .await?;
    assert_refused(&none, "A0301", None);
    let bad = b.get("/v2.0/user/me?user_seq_no=12", &user(HONG)).await?;
    assert_refused(&bad, "A0004", Some("user_seq_no"));
    let missing = b.get("/v2.0/user/me", &user(HONG)).await?;
    assert_refused(&missing, "A0004", Some("user_seq_no"));

    let list = |order: &str, cancelled: &str| {
        format!(
            "/v2.0/account/list?user_seq_no={HONG}&include_cancel_yn={cancelled}&sort_order={order}"
        )
    };
    let asc = b.get(&list("A", "N"), &user(HONG)).await?;
    assert_eq!(code(&asc), "A0000", "{asc}");
    assert_documented("account-list", &asc)?;
    assert_eq!(asc["user_name"], "홍길동");
    let desc = b.get(&list("D", "N"), &user(HONG)).await?;
    let nums = |v: &Value| -> Vec<String> {
        v["res_list"]
            .as_array()
            .map(|l| l.iter().map(|a| a["fintech_use_num"].to_string()).collect())
            .unwrap_or_default()
    };
    let mut reversed = nums(&desc);
    reversed.reverse();
    assert_eq!(nums(&asc), reversed);
    assert!(
        asc["res_list"]
            .as_array()
            .is_some_and(|l| l.iter().all(|a| a["account_state"] == "01"))
    );
    let savings = asc["res_list"]
        .as_array()
        .and_then(|l| l.iter().find(|a| a["bank_code_std"] == "004"))
        .context("savings account")?;
    assert_eq!(
        (
            savings["inquiry_agree_yn"].as_str(),
            savings["transfer_agree_yn"].as_str()
        ),
        (Some("Y"), Some("N"))
    );
    assert!(
        savings["account_num_masked"]
            .as_str()
            .is_some_and(|n| n.ends_with("***"))
    );
    let bad = b.get(&list("A", "X"), &user(HONG)).await?;
    assert_refused(&bad, "A0004", Some("include_cancel_yn"));
    let bad = b.get(&list("Z", "N"), &user(HONG)).await?;
    assert_refused(&bad, "A0004", Some("sort_order"));
    b.stop().await
}

#[tokio::test]
async fn balance_answers_and_refuses_as_the_bank_decides() -> Result<()> {
    let b = Bank::start().await?;
    let main = b.fin(HONG, "097").await?;
    let credit = b.fin(HONG, "088").await?;
    let ok = b.balance(HONG, &main).await?;
    assert_eq!(code(&ok), "A0000", "{ok}");
    assert_documented("account-balance", &ok)?;
    assert_eq!(
        (bank_rsp(&ok), ok["bank_code_tran"].as_str()),
        ("000", Some("097"))
    );
    assert_eq!(ok["fintech_use_num"], main.as_str());
    // An overdrawn credit line: a negative balance, the rest of the line available.
    let c = b.balance(HONG, &credit).await?;
    assert_eq!(
        (c["balance_amt"].as_str(), c["available_amt"].as_str()),
        (Some("-300000"), Some("1700000"))
    );

    let url = |id: &str, fin: &str, dtime: &str| {
        format!(
            "/v2.0/account/balance/fin_num?bank_tran_id={id}&fintech_use_num={fin}&tran_dtime={dtime}"
        )
    };
    for (path, field) in [
        (url("M202300001X000000001", &main, DTIME), "bank_tran_id"),
        (url(&tran_id(), "1234", DTIME), "fintech_use_num"),
        (url(&tran_id(), &main, "20261332000000"), "tran_dtime"),
        (
            format!("/v2.0/account/balance/fin_num?fintech_use_num={main}&tran_dtime={DTIME}"),
            "bank_tran_id",
        ),
    ] {
        assert_refused(&b.get(&path, &user(HONG)).await?, "A0004", Some(field));
    }
    // Another institution's prefix.
    let foreign = b
        .get(&url("M202399999U000000001", &main, DTIME), &user(HONG))
        .await?;
    assert_refused(&foreign, "A0004", Some("bank_tran_id"));
    // A repeated bank_tran_id.
    let id = tran_id();
    assert_eq!(
        code(&b.get(&url(&id, &main, DTIME), &user(HONG)).await?),
        "A0000"
    );
    let again = b.get(&url(&id, &main, DTIME), &user(HONG)).await?;
    assert_refused(&again, "A0326", None);
    assert_eq!(again["bank_tran_id"], id.as_str());
    // Someone else's fintech number.
    assert_refused(&b.balance(KIM, &main).await?, "A0304", None);
    // No inquiry consent: 이철수's closed-account-free second bank... use a
    // registration with the transfer scope only.
    let lee_account = b
        .vbank()
        .accounts_of(LEE)?
        .into_iter()
        .next()
        .context("lee's account")?;
    let fins = b.vbank().register_accounts(
        LEE,
        "other-client",
        DEMO_CLIENT_USE_CODE,
        std::slice::from_ref(&lee_account.id),
        &["transfer".to_owned()],
        now(),
    )?;
    let mut other_client = user(LEE);
    other_client["client_id"] = json!("other-client");
    let no_consent = b
        .get(&url(&tran_id(), &fins[0], DTIME), &other_client)
        .await?;
    assert_refused(&no_consent, "A0305", None);
    // An expired consent: given 400 days ago.
    b.vbank().register_accounts(
        LEE,
        "other-client",
        DEMO_CLIENT_USE_CODE,
        &[lee_account.id],
        &["inquiry".to_owned()],
        now() - 400 * 86_400_000,
    )?;
    let expired = b
        .get(&url(&tran_id(), &fins[0], DTIME), &other_client)
        .await?;
    assert_refused(&expired, "A0316", None);
    // Bank outage: A0017, not final; the bank header still names the call.
    b.vbank().set_available("097", false)?;
    let down = b.balance(HONG, &main).await?;
    assert_refused(&down, "A0017", None);
    assert!(
        down["bank_tran_id"]
            .as_str()
            .is_some_and(|i| i.starts_with(DEMO_CLIENT_USE_CODE))
    );
    b.vbank().set_available("097", true)?;
    // A closed account: the bank's own code under A0009.
    b.vbank()
        .set_account_state("004/2200012345678", AccountState::Closed)?;
    let closed = b.balance(HONG, &b.fin(HONG, "004").await?).await?;
    assert_refused(&closed, "A0009", None);
    assert_eq!(bank_rsp(&closed), "415");
    b.stop().await
}

#[tokio::test]
async fn transaction_list_pages_filters_and_validates() -> Result<()> {
    let b = Bank::start().await?;
    let main = b.fin(HONG, "097").await?;
    let url = |q: &str| {
        format!(
            "/v2.0/account/transaction_list/fin_num?bank_tran_id={}&fintech_use_num={main}&tran_dtime={DTIME}&{q}",
            tran_id()
        )
    };
    let all = "inquiry_type=A&inquiry_base=D&from_date=20000101&to_date=29991231";
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = b
            .get(
                &url(&format!(
                    "{all}&sort_order=D&befor_inquiry_trace_info={cursor}"
                )),
                &user(HONG),
            )
            .await?;
        assert_eq!(code(&page), "A0000", "{page}");
        assert_documented("transaction-list", &page)?;
        let items = page["res_list"].as_array().context("res_list")?;
        assert_eq!(page["page_record_cnt"], items.len().to_string());
        assert_eq!(page["total_record_cnt"], "37");
        seen.extend(items.iter().cloned());
        pages += 1;
        if page["next_page_yn"] == "N" {
            assert_eq!(page["befor_inquiry_trace_info"], "");
            break;
        }
        assert_eq!(items.len(), 25);
        cursor = page["befor_inquiry_trace_info"]
            .as_str()
            .context("cursor")?
            .to_owned();
        assert_eq!(cursor.len(), 20);
        assert!(pages < 5, "paging does not end");
    }
    assert_eq!((pages, seen.len()), (2, 37));
    // Newest first, and each posting's after-balance chains to the next.
    let stamp = |v: &Value| {
        format!(
            "{}{}",
            v["tran_date"].as_str().unwrap_or(""),
            v["tran_time"].as_str().unwrap_or("")
        )
    };
    assert!(seen.windows(2).all(|w| stamp(&w[0]) >= stamp(&w[1])));
    let balance = b.balance_amt(HONG, &main).await?;
    assert_eq!(seen[0]["after_balance_amt"], balance.to_string());

    let deposits = b
        .get(
            &url(&format!("{all}&sort_order=A").replace("inquiry_type=A", "inquiry_type=I")),
            &user(HONG),
        )
        .await?;
    let list = deposits["res_list"].as_array().context("res_list")?;
    assert_eq!(list.len(), 2, "opening and salary: {deposits}");
    assert!(list.iter().all(|p| p["inout_type"] == "입금"));
    assert!(stamp(&list[0]) <= stamp(&list[1]));
    let outs = b
        .get(
            &url(&format!("{all}&sort_order=D").replace("inquiry_type=A", "inquiry_type=O")),
            &user(HONG),
        )
        .await?;
    assert_eq!(outs["total_record_cnt"], "35");
    // By time: an empty window is a successful empty page.
    let empty = b
        .get(&url("inquiry_type=A&inquiry_base=T&from_date=20000101&from_time=000000&to_date=20000101&to_time=000001&sort_order=D"), &user(HONG))
        .await?;
    assert_eq!(
        (
            code(&empty),
            empty["page_record_cnt"].as_str(),
            empty["next_page_yn"].as_str()
        ),
        ("A0000", Some("0"), Some("N"))
    );
    for (q, field) in [
        (
            "inquiry_type=X&inquiry_base=D&from_date=20000101&to_date=29991231&sort_order=D",
            "inquiry_type",
        ),
        (
            "inquiry_type=A&inquiry_base=T&from_date=20000101&to_date=29991231&sort_order=D",
            "from_time",
        ),
        (
            "inquiry_type=A&inquiry_base=D&from_date=20240101&to_date=20230101&sort_order=D",
            "from_date",
        ),
        (
            "inquiry_type=A&inquiry_base=D&from_date=20000101&to_date=29991231&sort_order=D&befor_inquiry_trace_info=abc",
            "befor_inquiry_trace_info",
        ),
        (
            "inquiry_type=A&inquiry_base=D&from_date=2000&to_date=29991231&sort_order=D",
            "from_date",
        ),
    ] {
        assert_refused(&b.get(&url(q), &user(HONG)).await?, "A0004", Some(field));
    }
    assert_refused(
        &b.get(
            &url(&format!("{all}&sort_order=D")).replace(&main, &b.fin(KIM, "081").await?),
            &user(HONG),
        )
        .await?,
        "A0304",
        None,
    );
    b.stop().await
}

#[tokio::test]
async fn withdraw_moves_money_and_refuses_with_the_banks_codes() -> Result<()> {
    let b = Bank::start().await?;
    let (main, credit, savings) = (
        b.fin(HONG, "097").await?,
        b.fin(HONG, "088").await?,
        b.fin(HONG, "004").await?,
    );
    let contract = format!("097/{DEMO_CONTRACT_ACCOUNT_NUM}");
    let (before, contract_before) = (
        b.balance_amt(HONG, &main).await?,
        b.vbank().balance_of(&contract)?,
    );
    let id = tran_id();
    let ok = b.withdraw(HONG, &main, &id, "12000").await?;
    assert_eq!(code(&ok), "A0000", "{ok}");
    assert_documented("transfer-withdraw", &ok)?;
    assert_eq!(
        (ok["tran_amt"].as_str(), ok["wd_limit_remain_amt"].as_str()),
        (Some("12000"), Some("4988000"))
    );
    assert_eq!(
        (
            ok["account_holder_name"].as_str(),
            ok["dps_account_holder_name"].as_str()
        ),
        (Some("홍길동"), Some("데모핀테크(주)"))
    );
    assert_eq!(b.balance_amt(HONG, &main).await?, before - 12_000);
    assert_eq!(b.vbank().balance_of(&contract)?, contract_before + 12_000);
    // The same bank_tran_id again: A0326, no money moves.
    assert_refused(&b.withdraw(HONG, &main, &id, "12000").await?, "A0326", None);
    assert_eq!(b.balance_amt(HONG, &main).await?, before - 12_000);

    // Format errors name their field.
    for (field, value) in [
        ("tran_amt", json!("12,000")),
        ("tran_amt", json!(12000)),
        ("tran_amt", json!("0")),
        ("cntr_account_type", json!("X")),
        ("transfer_purpose", json!("ZZ")),
        ("fintech_use_num", json!("12")),
        ("tran_dtime", json!("2026")),
        ("bank_tran_id", json!("short")),
    ] {
        let mut body = withdraw_body(&main, &tran_id(), "1000");
        body[field] = value;
        let r = b
            .post("/v2.0/transfer/withdraw/fin_num", &user(HONG), &body)
            .await?;
        assert_refused(&r, "A0004", Some(field));
    }
    let not_json = b
        .call(
            "POST",
            "/v2.0/transfer/withdraw/fin_num",
            Some(&user(HONG)),
            Some(&json!([1])),
        )
        .await?;
    assert_refused(&not_json, "A0004", Some("request body"));
    // Consents, ownership, contract account.
    assert_refused(
        &b.withdraw(HONG, &savings, &tran_id(), "1000").await?,
        "A0306",
        None,
    );
    assert_refused(
        &b.withdraw(KIM, &main, &tran_id(), "1000").await?,
        "A0304",
        None,
    );
    let mut wrong_contract = withdraw_body(&main, &tran_id(), "1000");
    wrong_contract["cntr_account_num"] = json!("1111111111");
    assert_refused(
        &b.post(
            "/v2.0/transfer/withdraw/fin_num",
            &user(HONG),
            &wrong_contract,
        )
        .await?,
        "A0322",
        None,
    );
    let hong_main_id = "097/1101234567890".to_owned();
    b.vbank().register_accounts(
        HONG,
        DEMO_CLIENT_ID,
        DEMO_CLIENT_USE_CODE,
        &["088/3300098765432".to_owned()],
        &["transfer".to_owned()],
        now() - 400 * 86_400_000,
    )?;
    assert_refused(
        &b.withdraw(HONG, &credit, &tran_id(), "1000").await?,
        "A0319",
        None,
    );
    b.vbank().register_accounts(
        HONG,
        DEMO_CLIENT_ID,
        DEMO_CLIENT_USE_CODE,
        &["088/3300098765432".to_owned()],
        &["transfer".to_owned()],
        now(),
    )?;
    // Funds: the credit line has 1,700,000 left.
    let poor = b.withdraw(HONG, &credit, &tran_id(), "1800000").await?;
    assert_refused(&poor, "A0009", None);
    assert_eq!(
        (bank_rsp(&poor), poor["bank_code_tran"].as_str()),
        ("422", Some("088"))
    );
    // User limits: 2,000,000 per transaction, 5,000,000 a day.
    assert_refused(
        &b.withdraw(HONG, &main, &tran_id(), "2000001").await?,
        "A0111",
        None,
    );
    b.vbank().set_user_limits(HONG, 2_000_000, 20_000)?;
    assert_refused(
        &b.withdraw(HONG, &main, &tran_id(), "8001").await?,
        "A0112",
        None,
    );
    b.vbank().set_user_limits(HONG, 2_000_000, 5_000_000)?;
    // Institution limits.
    let small = |per_tran, daily, monthly| Limits {
        per_tran,
        daily,
        monthly,
    };
    let big = small(10_000_000, 100_000_000, 1_000_000_000);
    b.vbank().add_institution(
        DEMO_CLIENT_USE_CODE,
        "데모",
        "NONE",
        small(50_000, 1_000_000, 1_000_000),
        big,
    )?;
    assert_refused(
        &b.withdraw(HONG, &main, &tran_id(), "50001").await?,
        "A0101",
        None,
    );
    b.vbank().add_institution(
        DEMO_CLIENT_USE_CODE,
        "데모",
        "NONE",
        small(50_000, 20_000, 1_000_000),
        big,
    )?;
    assert_refused(
        &b.withdraw(HONG, &main, &tran_id(), "10000").await?,
        "A0102",
        None,
    );
    b.vbank().add_institution(
        DEMO_CLIENT_USE_CODE,
        "데모",
        "NONE",
        small(50_000, 1_000_000, 20_000),
        big,
    )?;
    assert_refused(
        &b.withdraw(HONG, &main, &tran_id(), "10000").await?,
        "A0103",
        None,
    );
    b.vbank()
        .add_institution(DEMO_CLIENT_USE_CODE, "데모", "NONE", big, big)?;
    // Account states.
    let kim_frozen = b.fin(KIM, "020").await?;
    let frozen = b.withdraw(KIM, &kim_frozen, &tran_id(), "1000").await?;
    assert_refused(&frozen, "A0009", None);
    assert_eq!(bank_rsp(&frozen), "420");
    b.vbank()
        .set_account_state(&hong_main_id, AccountState::Closed)?;
    let closed = b.withdraw(HONG, &main, &tran_id(), "1000").await?;
    assert_eq!((code(&closed), bank_rsp(&closed)), ("A0009", "415"));
    b.vbank()
        .set_account_state(&hong_main_id, AccountState::Active)?;
    // Outage of the user's bank.
    b.vbank().set_available("097", false)?;
    assert_refused(
        &b.withdraw(HONG, &main, &tran_id(), "1000").await?,
        "A0017",
        None,
    );
    b.vbank().set_available("097", true)?;
    assert_eq!(b.balance_amt(HONG, &main).await?, before - 12_000);
    b.stop().await
}

#[tokio::test]
async fn deposits_by_fintech_number_and_by_account_number() -> Result<()> {
    let b = Bank::start().await?;
    let main = b.fin(HONG, "097").await?;
    let before = b.balance_amt(HONG, &main).await?;
    let ok = b
        .post(
            "/v2.0/transfer/deposit/fin_num",
            &institution(),
            &deposit_fin_body(&main, &tran_id(), "7000"),
        )
        .await?;
    assert_eq!(code(&ok), "A0000", "{ok}");
    assert_documented("transfer-deposit", &ok)?;
    assert_eq!(ok["res_list"][0]["account_holder_name"], "홍길동");
    assert_eq!(ok["res_list"][0]["fintech_use_num"], main.as_str());
    assert_eq!(b.balance_amt(HONG, &main).await?, before + 7_000);

    let kim_before = b.vbank().balance_of("081/4400011112222")?;
    let by_account = |holder: &str, check: &str| {
        deposit_acnt_body("081", "4400011112222", holder, check, &tran_id(), "3000")
    };
    let ok = b
        .post(
            "/v2.0/transfer/deposit/acnt_num",
            &institution(),
            &by_account("김영희", "on"),
        )
        .await?;
    assert_eq!(code(&ok), "A0000", "{ok}");
    assert_documented("transfer-deposit", &ok)?;
    let mismatch = b
        .post(
            "/v2.0/transfer/deposit/acnt_num",
            &institution(),
            &by_account("홍길동", "on"),
        )
        .await?;
    assert_refused(&mismatch, "A0009", None);
    assert_eq!(mismatch["res_list"][0]["bank_rsp_code"], "815");
    let unchecked = b
        .post(
            "/v2.0/transfer/deposit/acnt_num",
            &institution(),
            &by_account("홍길동", "off"),
        )
        .await?;
    assert_eq!(code(&unchecked), "A0000", "{unchecked}");
    assert_eq!(
        b.vbank().balance_of("081/4400011112222")?,
        kim_before + 6_000
    );

    let bank = &b;
    let refused = |bank_code: &'static str, num: &'static str| async move {
        let b = bank;
        let bank = bank_code;
        let body = deposit_acnt_body(bank, num, "x", "off", &tran_id(), "1000");
        let r = b
            .post("/v2.0/transfer/deposit/acnt_num", &institution(), &body)
            .await?;
        anyhow::Ok((
            code(&r).to_owned(),
            r["res_list"][0]["bank_rsp_code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ))
    };
    assert_eq!(
        refused("081", "999999").await?,
        ("A0009".into(), "412".into())
    );
    assert_eq!(
        refused("003", "1230000099999").await?,
        ("A0009".into(), "415".into())
    );
    assert_eq!(
        refused("020", "5500033334444").await?,
        ("A0009".into(), "420".into())
    );
    let unknown_bank = b
        .post(
            "/v2.0/transfer/deposit/acnt_num",
            &institution(),
            &deposit_acnt_body("999", "1", "x", "off", &tran_id(), "1"),
        )
        .await?;
    assert_refused(&unknown_bank, "A0004", Some("bank_code_std"));

    let mut wrong_phrase = deposit_fin_body(&main, &tran_id(), "1000");
    wrong_phrase["wd_pass_phrase"] = json!("guess");
    let r = b
        .post(
            "/v2.0/transfer/deposit/fin_num",
            &institution(),
            &wrong_phrase,
        )
        .await?;
    assert_eq!(
        (code(&r), r["res_list"][0]["bank_rsp_code"].as_str()),
        ("A0009", Some("425"))
    );
    let mut two = deposit_fin_body(&main, &tran_id(), "1000");
    two["req_cnt"] = json!("2");
    assert_refused(
        &b.post("/v2.0/transfer/deposit/fin_num", &institution(), &two)
            .await?,
        "A0004",
        Some("req_cnt"),
    );
    let mut bad_amount = deposit_fin_body(&main, &tran_id(), "1000");
    bad_amount["req_list"][0]["tran_amt"] = json!("-5");
    assert_refused(
        &b.post(
            "/v2.0/transfer/deposit/fin_num",
            &institution(),
            &bad_amount,
        )
        .await?,
        "A0004",
        Some("req_list[0].tran_amt"),
    );
    // A number issued to another institution is not this one's to use.
    let theirs = b.vbank().register_accounts(
        HONG,
        "rival",
        "M202399999",
        &["097/1101234567890".to_owned()],
        &["inquiry".to_owned()],
        now(),
    )?;
    assert_refused(
        &b.post(
            "/v2.0/transfer/deposit/fin_num",
            &institution(),
            &deposit_fin_body(&theirs[0], &tran_id(), "1000"),
        )
        .await?,
        "A0304",
        None,
    );
    let mut wrong_contract = deposit_fin_body(&main, &tran_id(), "1000");
    wrong_contract["cntr_account_num"] = json!("1101234567890");
    assert_refused(
        &b.post(
            "/v2.0/transfer/deposit/fin_num",
            &institution(),
            &wrong_contract,
        )
        .await?,
        "A0322",
        None,
    );
    // Deposit limits of the institution.
    let l = |per_tran, daily, monthly| Limits {
        per_tran,
        daily,
        monthly,
    };
    let big = l(10_000_000, 100_000_000, 1_000_000_000);
    for (limits, amount, expected) in [
        (l(5_000, 1_000_000, 1_000_000), "5001", "A0104"),
        (l(50_000, 1_000, 1_000_000), "2000", "A0105"),
        (l(50_000, 1_000_000, 1_000), "2000", "A0106"),
    ] {
        b.vbank()
            .add_institution(DEMO_CLIENT_USE_CODE, "데모", "NONE", big, limits)?;
        let r = b
            .post(
                "/v2.0/transfer/deposit/fin_num",
                &institution(),
                &deposit_fin_body(&main, &tran_id(), amount),
            )
            .await?;
        assert_refused(&r, expected, None);
    }
    b.vbank()
        .add_institution(DEMO_CLIENT_USE_CODE, "데모", "NONE", big, big)?;
    let id = tran_id();
    assert_eq!(
        code(
            &b.post(
                "/v2.0/transfer/deposit/fin_num",
                &institution(),
                &deposit_fin_body(&main, &id, "1000")
            )
            .await?
        ),
        "A0000"
    );
    assert_refused(
        &b.post(
            "/v2.0/transfer/deposit/fin_num",
            &institution(),
            &deposit_fin_body(&main, &id, "1000"),
        )
        .await?,
        "A0326",
        None,
    );
    b.vbank().set_available("081", false)?;
    assert_refused(
        &b.post(
            "/v2.0/transfer/deposit/acnt_num",
            &institution(),
            &by_account("김영희", "on"),
        )
        .await?,
        "A0017",
        None,
    );
    b.stop().await
}

#[tokio::test]
async fn transfer_result_reports_each_original_outcome() -> Result<()> {
    let b = Bank::start().await?;
    let main = b.fin(HONG, "097").await?;
    let (done, limited, deposit) = (tran_id(), tran_id(), tran_id());
    let ok = b.withdraw(HONG, &main, &done, "5000").await?;
    assert_eq!(code(&ok), "A0000");
    let date = ok["bank_tran_date"]
        .as_str()
        .context("bank_tran_date")?
        .to_owned();
    assert_refused(
        &b.withdraw(HONG, &main, &limited, "3000000").await?,
        "A0111",
        None,
    );
    assert_eq!(
        code(
            &b.post(
                "/v2.0/transfer/deposit/fin_num",
                &institution(),
                &deposit_fin_body(&main, &deposit, "2500")
            )
            .await?
        ),
        "A0000"
    );

    let item = |n: u32, id: &str, amt: &str| json!({ "tran_no": n.to_string(), "org_bank_tran_id": id, "org_bank_tran_date": date, "org_tran_amt": amt });
    let body = json!({
        "check_type": "1",
        "tran_dtime": DTIME,
        "req_cnt": "5",
        "req_list": [
            item(1, &done, "5000"),
            item(2, &limited, "3000000"),
            item(3, &tran_id(), "1000"),
            item(4, &done, "4999"),
            item(5, &deposit, "2500"),
        ],
    });
    let r = b
        .post("/v2.0/transfer/result", &institution(), &body)
        .await?;
    assert_eq!(code(&r), "A0000", "{r}");
    assert_documented(
        "transfer-result",
        &json!({ "res_cnt": r["res_cnt"], "res_list": [r["res_list"][0]] }),
    )?;
    let items = r["res_list"].as_array().context("res_list")?;
    assert_eq!(items.len(), 5);
    let outcome = |i: usize| {
        (
            items[i]["rsp_code"].as_str().unwrap_or(""),
            items[i]["bank_rsp_code"].as_str().unwrap_or(""),
        )
    };
    assert_eq!(outcome(0), ("A0000", "000"));
    assert_eq!(items[0]["tran_amt"], "5000");
    assert_eq!(items[0]["account_holder_name"], "홍길동");
    assert_eq!(outcome(1), ("A0111", ""));
    assert_eq!(outcome(2), ("A0009", "430"));
    assert_eq!(outcome(3), ("A0009", "431"));
    // A deposit is not found among withdrawals.
    assert_eq!(outcome(4), ("A0009", "430"));
    let deposits = json!({ "check_type": "2", "tran_dtime": DTIME, "req_cnt": "1", "req_list": [item(1, &deposit, "2500")] });
    let r = b
        .post("/v2.0/transfer/result", &institution(), &deposits)
        .await?;
    assert_eq!(r["res_list"][0]["bank_rsp_code"], "000", "{r}");
    assert_eq!(r["res_list"][0]["fintech_use_num"], main.as_str());

    let many: Vec<Value> = (1..=26).map(|n| item(n, &done, "5000")).collect();
    let too_many =
        json!({ "check_type": "1", "tran_dtime": DTIME, "req_cnt": "26", "req_list": many });
    assert_refused(
        &b.post("/v2.0/transfer/result", &institution(), &too_many)
            .await?,
        "A0004",
        Some("req_cnt"),
    );
    let mismatch = json!({ "check_type": "1", "tran_dtime": DTIME, "req_cnt": "2", "req_list": [item(1, &done, "5000")] });
    assert_refused(
        &b.post("/v2.0/transfer/result", &institution(), &mismatch)
            .await?,
        "A0004",
        Some("req_cnt"),
    );
    let bad_type = json!({ "check_type": "3", "tran_dtime": DTIME, "req_cnt": "1", "req_list": [item(1, &done, "5000")] });
    assert_refused(
        &b.post("/v2.0/transfer/result", &institution(), &bad_type)
            .await?,
        "A0004",
        Some("check_type"),
    );
    let bad_date = json!({ "check_type": "1", "tran_dtime": DTIME, "req_cnt": "1", "req_list": [{ "tran_no": "1", "org_bank_tran_id": done, "org_bank_tran_date": "2026", "org_tran_amt": "5000" }] });
    assert_refused(
        &b.post("/v2.0/transfer/result", &institution(), &bad_date)
            .await?,
        "A0004",
        Some("org_bank_tran_date"),
    );
    b.stop().await
}

#[tokio::test]
async fn real_name_receive_and_remit_list() -> Result<()> {
    let b = Bank::start().await?;
    let real_name = |bank: &str, num: &str, kind: &str, info: &str| {
        json!({ "bank_tran_id": tran_id(), "bank_code_std": bank, "account_num": num,
                "account_holder_info_type": kind, "account_holder_info": info, "tran_dtime": DTIME })
    };
    let path = "/v2.0/inquiry/real_name";
    let ok = b
        .post(
            path,
            &institution(),
            &real_name("081", "4400011112222", " ", "920315"),
        )
        .await?;
    assert_eq!(code(&ok), "A0000", "{ok}");
    assert_documented("inquiry-real-name", &ok)?;
    assert_eq!(ok["account_holder_name"], "김영희");
    let company = b
        .post(
            path,
            &institution(),
            &real_name("003", "3000000000001", "6", "1048112345"),
        )
        .await?;
    assert_eq!(company["account_holder_name"], "(주)가나다상사");
    for (body, bank_code) in [
        (real_name("081", "4400011112222", " ", "920316"), "816"),
        (real_name("081", "4400011112223", " ", "920315"), "412"),
        (real_name("003", "1230000099999", " ", "750720"), "415"),
    ] {
        let r = b.post(path, &institution(), &body).await?;
        assert_eq!((code(&r), bank_rsp(&r)), ("A0009", bank_code), "{r}");
    }
    assert_refused(
        &b.post(
            path,
            &institution(),
            &real_name("081", "4400011112222", "X", "920315"),
        )
        .await?,
        "A0004",
        Some("account_holder_info_type"),
    );
    assert_refused(
        &b.post(
            path,
            &institution(),
            &real_name("081", "4400011112222", " ", "92031"),
        )
        .await?,
        "A0004",
        Some("account_holder_info"),
    );
    assert_refused(
        &b.post(
            path,
            &institution(),
            &real_name("081", "44000-1", " ", "920315"),
        )
        .await?,
        "A0004",
        Some("account_num"),
    );

    let receive = |bank: &str, num: &str| {
        json!({ "bank_tran_id": tran_id(), "cntr_account_type": "N", "cntr_account_num": DEMO_CONTRACT_ACCOUNT_NUM,
                "bank_code_std": bank, "account_num": num, "print_content": "환불", "tran_amt": "5000",
                "req_client_name": "데모", "req_client_num": "DEMO", "transfer_purpose": "TR", "tran_dtime": DTIME })
    };
    let path = "/v2.0/inquiry/receive";
    let ok = b
        .post(path, &institution(), &receive("081", "4400011112222"))
        .await?;
    assert_eq!(code(&ok), "A0000", "{ok}");
    assert_documented("inquiry-receive", &ok)?;
    assert_eq!(
        (
            ok["account_holder_name"].as_str(),
            ok["wd_account_holder_name"].as_str()
        ),
        (Some("김영희"), Some("데모핀테크(주)"))
    );
    for (bank, num, bank_code) in [
        ("081", "1", "412"),
        ("003", "1230000099999", "415"),
        ("020", "5500033334444", "420"),
    ] {
        let r = b.post(path, &institution(), &receive(bank, num)).await?;
        assert_eq!((code(&r), bank_rsp(&r)), ("A0009", bank_code), "{r}");
    }
    let mut wrong = receive("081", "4400011112222");
    wrong["cntr_account_num"] = json!("123");
    assert_refused(&b.post(path, &institution(), &wrong).await?, "A0322", None);
    let mut bad = receive("081", "4400011112222");
    bad["tran_amt"] = json!("1.5");
    assert_refused(
        &b.post(path, &institution(), &bad).await?,
        "A0004",
        Some("tran_amt"),
    );

    // Remitters into the contract account: the seeded opening deposit plus 30 payments.
    let hong_main = "097/1101234567890";
    let contract = format!("097/{DEMO_CONTRACT_ACCOUNT_NUM}");
    for i in 0..30u64 {
        b.vbank()
            .book_transfer(hong_main, &contract, 1_000 + i, now(), "이체", "홍길동")?;
    }
    let remit = |cursor: &str| {
        json!({ "bank_tran_id": tran_id(), "bank_code_std": "097", "account_num": DEMO_CONTRACT_ACCOUNT_NUM,
                "from_date": "20000101", "from_time": "000000", "to_date": "29991231", "to_time": "235959",
                "sort_order": "D", "tran_dtime": DTIME, "befor_inquiry_trace_info": cursor })
    };
    let path = "/v2.0/inquiry/remit_list";
    let first = b.post(path, &institution(), &remit("")).await?;
    assert_eq!(code(&first), "A0000", "{first}");
    assert_documented("inquiry-remit-list", &first)?;
    assert_eq!(
        (
            first["total_record_cnt"].as_str(),
            first["page_record_cnt"].as_str(),
            first["next_page_yn"].as_str()
        ),
        (Some("31"), Some("25"), Some("Y"))
    );
    assert_eq!(first["res_list"][0]["remitter_name"], "홍길동");
    assert_eq!(first["res_list"][0]["tran_amt"], "1029");
    assert_eq!(
        first["res_list"][0]["remitter_account_num"],
        "1101234567***"
    );
    let cursor = first["befor_inquiry_trace_info"]
        .as_str()
        .context("cursor")?;
    let second = b.post(path, &institution(), &remit(cursor)).await?;
    assert_eq!(
        (
            second["page_record_cnt"].as_str(),
            second["next_page_yn"].as_str()
        ),
        (Some("6"), Some("N"))
    );
    assert_eq!(second["res_list"][5]["remitter_name"], "오픈은행");
    let mut not_ours = remit("");
    not_ours["account_num"] = json!("1101234567890");
    assert_refused(
        &b.post(path, &institution(), &not_ours).await?,
        "A0322",
        None,
    );
    let mut bad = remit("");
    bad["to_time"] = json!("250000");
    assert_refused(
        &b.post(path, &institution(), &bad).await?,
        "A0004",
        Some("to_time"),
    );
    b.stop().await
}

#[tokio::test]
async fn account_cancel_withdraws_one_consent() -> Result<()> {
    let b = Bank::start().await?;
    let savings = b.fin(HONG, "004").await?;
    let cancel = |scope: &str, id: &str| json!({ "bank_tran_id": id, "scope": scope, "fintech_use_num": savings });
    let path = "/v2.0/account/cancel";
    let id = tran_id();
    let ok = b.post(path, &user(HONG), &cancel("inquiry", &id)).await?;
    assert_eq!(code(&ok), "A0000", "{ok}");
    assert_documented("account-cancel", &ok)?;
    assert_eq!(ok["bank_code_tran"], "004");
    assert_refused(
        &b.post(path, &user(HONG), &cancel("inquiry", &id)).await?,
        "A0326",
        None,
    );
    assert_refused(&b.balance(HONG, &savings).await?, "A0305", None);
    assert_refused(
        &b.post(path, &user(HONG), &cancel("inquiry", &tran_id()))
            .await?,
        "A0305",
        None,
    );
    assert_refused(
        &b.post(path, &user(HONG), &cancel("transfer", &tran_id()))
            .await?,
        "A0306",
        None,
    );
    assert_refused(
        &b.post(path, &user(KIM), &cancel("inquiry", &tran_id()))
            .await?,
        "A0304",
        None,
    );
    assert_refused(
        &b.post(path, &user(HONG), &cancel("login", &tran_id()))
            .await?,
        "A0004",
        Some("scope"),
    );
    // With no consent left the registration shows as cancelled (09), and only when asked.
    let list = |cancelled| {
        format!("/v2.0/account/list?user_seq_no={HONG}&include_cancel_yn={cancelled}&sort_order=A")
    };
    let shown = b.get(&list("N"), &user(HONG)).await?;
    assert_eq!(shown["res_cnt"], "2");
    let all = b.get(&list("Y"), &user(HONG)).await?;
    let cancelled = all["res_list"]
        .as_array()
        .and_then(|l| l.iter().find(|a| a["fintech_use_num"] == savings.as_str()))
        .context("cancelled account")?;
    assert_eq!(
        (
            cancelled["account_state"].as_str(),
            cancelled["inquiry_agree_yn"].as_str()
        ),
        (Some("09"), Some("N"))
    );
    b.stop().await
}

// Worker threads, so that the requests reach the bank in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_bank_tran_id_sent_concurrently_moves_money_once() -> Result<()> {
    let b = Arc::new(Bank::start().await?);
    let main = b.fin(HONG, "097").await?;
    let before = b.balance_amt(HONG, &main).await?;
    let id = tran_id();
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (b, main, id) = (b.clone(), main.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            b.withdraw(HONG, &main, &id, "10000").await
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(code(&t.await??).to_owned());
    }
    assert_eq!(
        codes.iter().filter(|c| *c == "A0000").count(),
        1,
        "{codes:?}"
    );
    assert!(
        codes.iter().all(|c| c == "A0000" || c == "A0326"),
        "{codes:?}"
    );
    assert_eq!(b.balance_amt(HONG, &main).await?, before - 10_000);
    let postings = b.vbank().statement("097/1101234567890")?;
    assert_eq!(
        postings
            .iter()
            .filter(|p| p.bank_tran_id.as_deref() == Some(id.as_str()))
            .count(),
        1
    );
    let b = Arc::into_inner(b).context("all requests finished")?;
    b.stop().await
}

#[tokio::test]
async fn bank_status_still_serves_with_the_reference_apis() -> Result<()> {
    let b = Bank::start().await?;
    b.vbank().set_available("004", false)?;
    let status = b
        .call("GET", "/v2.0/bank/status", Some(&institution()), None)
        .await?;
    assert_documented("bank-status", &status)?;
    let down: Vec<&Value> = status["res_list"]
        .as_array()
        .context("res_list")?
        .iter()
        .filter(|x| x["bank_status"] == "N")
        .collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0]["bank_code_std"], "004");
    b.stop().await
}
