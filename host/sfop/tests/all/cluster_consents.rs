//! Issue 20, consents on a cluster (ADR 0030, "Consents on the cluster"):
//! the fintech numbers and consents a user gives through one node's
//! sign-in and consent pages are the cluster's, so another node serves the
//! inquiry or transfer they allow, and an unlink through a third node
//! withdraws them everywhere. Three `sfop serve` processes on one
//! PostgreSQL; two apps registered on A (one of the demo institution, whose
//! contract account takes withdrawals; one of a new institution, whose
//! fintech numbers no node's seed has). What another user or institution
//! sends with those numbers is refused by every node's bank.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use sfop_core::ledger::{BankCall, BankError, codes};
use sfop_core::{BankBackend, Claims};
use sfop_store_pg::Cluster;
use sfop_vbank::faults::{FaultRule, FaultScript, ScriptedBank};
use sfop_vbank::seed::{DEMO_CLIENT_USE_CODE, DEMO_CONTRACT_ACCOUNT_NUM};
use sfop_vbank::{ClusterBank, VirtualBank};

use crate::cluster::{admin, three_nodes};
use crate::cluster_money::{database, withdraw_request};
use crate::portal::{form, html_value, text};
use crate::served::Served;

/// Bound on one request: a hang fails the test.
const BOUND: Duration = Duration::from_secs(30);
const REDIRECT: &str = "https://wallet.example/callback";
const VERIFIER: &str = "cluster-consents-pkce-verifier-0123456789-abcdefghijkl";
const STATE: &str = "fedcba9876543210fedcba9876543210";
const HONG: &str = "1100000001";
const HONG_MAIN: &str = "097/1101234567890";
const HONG_SAVINGS: &str = "004/2200012345678";
const HONG_CREDIT: &str = "088/3300098765432";

/// An app registered through the admin API.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) id: String,
    secret: String,
    pub(crate) use_code: String,
}

pub(crate) async fn register_app(
    node: &Served,
    name: &str,
    institution: Option<&str>,
) -> Result<App> {
    let mut body = json!({
        "name": name,
        "redirect_uris": [REDIRECT],
        "scopes": ["login", "inquiry", "transfer"],
    });
    if let Some(code) = institution {
        body["institution"] = json!(code);
    }
    let (status, answer) = admin(node, "/admin/v1/clients", body).await?;
    ensure!(status == 201, "registering {name}: {status} {answer}");
    let field = |k: &str| {
        answer[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{k} in {answer}"))
    };
    Ok(App {
        id: field("client_id")?,
        secret: field("client_secret")?,
        use_code: field("client_use_code")?,
    })
}

async fn https(
    node: &Served,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<crate::harness::Reply> {
    let headers: &[(&str, &str)] = if body.is_empty() {
        &[]
    } else {
        &[("content-type", "application/x-www-form-urlencoded")]
    };
    tokio::time::timeout(BOUND, node.https(method, path, headers, body))
        .await
        .with_context(|| format!("{method} {path} hung"))?
}

/// The authorize page for `app` (scopes login, inquiry and transfer, with
/// PKCE) and `login` signed in on `node`: the pending authorisation and the
/// consent page.
async fn sign_in(
    node: &Served,
    app: &App,
    (login, password): (&str, &str),
) -> Result<(String, crate::harness::Reply)> {
    let query = String::from_utf8(form(&[
        ("response_type", "code"),
        ("client_id", &app.id),
        ("redirect_uri", REDIRECT),
        ("scope", "login inquiry transfer"),
        ("state", STATE),
        ("auth_type", "0"),
        ("code_challenge", &sfop_auth::oauth::pkce_s256(VERIFIER)),
        ("code_challenge_method", "S256"),
    ]))?;
    let page = https(
        node,
        "GET",
        &format!("/oauth/2.0/authorize?{query}"),
        Vec::new(),
    )
    .await?;
    let pending = html_value(&text(&page), "pending")
        .with_context(|| format!("no sign-in form ({}): {}", page.status, text(&page)))?;
    let consent_page = https(
        node,
        "POST",
        "/oauth/2.0/authorize",
        form(&[
            ("pending", &pending),
            ("action", "login"),
            ("login_id", login),
            ("password", password),
        ]),
    )
    .await?;
    Ok((pending, consent_page))
}

/// A user's access token for `app` from `node`'s sign-in and consent pages
/// (scopes login, inquiry and transfer), consenting to `accounts` only.
pub(crate) async fn consent(
    node: &Served,
    app: &App,
    (login, password): (&str, &str),
    accounts: &[&str],
) -> Result<String> {
    let (pending, consent_page) = sign_in(node, app, (login, password)).await?;
    let html = text(&consent_page);
    for account in accounts {
        ensure!(
            html.contains(&format!("name=\"account\" value=\"{account}\"")),
            "{account} not offered on the consent page: {html}"
        );
    }
    let mut fields = vec![("pending", pending.as_str()), ("action", "consent")];
    fields.extend(accounts.iter().map(|a| ("account", *a)));
    fields.extend(["login", "inquiry", "transfer"].map(|s| ("scope", s)));
    let redirected = https(node, "POST", "/oauth/2.0/authorize", form(&fields)).await?;
    let location = redirected
        .header("location")
        .with_context(|| format!("no redirect: {} {}", redirected.status, text(&redirected)))?;
    let returned =
        sfop_core::form::parse(location.split_once('?').map_or("", |(_, q)| q).as_bytes());
    let param = |name: &str| returned.get(name).map(str::to_owned);
    ensure!(param("state").as_deref() == Some(STATE), "{location}");
    let code = param("code").with_context(|| format!("no code: {location}"))?;
    let token = https(
        node,
        "POST",
        "/oauth/2.0/token",
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &app.id),
            ("client_secret", &app.secret),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ]),
    )
    .await?;
    let answer = token.json()?;
    Ok(answer["access_token"]
        .as_str()
        .with_context(|| format!("no access token: {answer}"))?
        .to_owned())
}

/// `GET path` on `node` with `token`: the answer.
pub(crate) async fn get(node: &Served, path: &str, token: &str) -> Result<Value> {
    let reply = tokio::time::timeout(BOUND, async {
        node.connect().await?.get_bearer(path, token).await
    })
    .await
    .with_context(|| format!("{path} hung"))??;
    reply.json()
}

/// `POST path` on `node` with `token` and a JSON body: the answer.
pub(crate) async fn post(node: &Served, path: &str, token: &str, body: &Value) -> Result<Value> {
    let auth = format!("Bearer {token}");
    let reply = tokio::time::timeout(BOUND, async {
        node.connect()
            .await?
            .send(
                "POST",
                path,
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
                body.to_string().into_bytes(),
            )
            .await
    })
    .await
    .with_context(|| format!("{path} hung"))??;
    reply.json()
}

/// `body` sent to `node`'s withdrawal API with `token`: the answer.
pub(crate) async fn withdraw(node: &Served, token: &str, body: &Value) -> Result<Value> {
    post(node, "/v2.0/transfer/withdraw/fin_num", token, body).await
}

/// The user's registered accounts with the token's app, as `node` lists
/// them: (bank code, fintech number, cancelled).
async fn listed(
    node: &Served,
    token: &str,
    with_cancelled: bool,
) -> Result<Vec<(String, String, bool)>> {
    let yn = if with_cancelled { "Y" } else { "N" };
    let list = get(
        node,
        &format!("/v2.0/account/list?user_seq_no={HONG}&include_cancel_yn={yn}&sort_order=A"),
        token,
    )
    .await?;
    ensure!(list["rsp_code"] == "A0000", "account/list: {list}");
    list["res_list"]
        .as_array()
        .with_context(|| format!("res_list: {list}"))?
        .iter()
        .map(|a| {
            let s = |k: &str| {
                a[k].as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("{k}: {a}"))
            };
            // 01 in use, 09 cancelled.
            Ok((
                s("bank_code_std")?,
                s("fintech_use_num")?,
                s("account_state")? == "09",
            ))
        })
        .collect()
}

pub(crate) fn kst(len: usize) -> String {
    sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    )[..len]
        .to_owned()
}

pub(crate) fn withdrawal(bank_tran_id: &str, fintech_use_num: &str, amount: u64) -> Value {
    json!({
        "bank_tran_id": bank_tran_id,
        "cntr_account_type": "N",
        "cntr_account_num": DEMO_CONTRACT_ACCOUNT_NUM,
        "dps_print_content": "홍길동",
        "fintech_use_num": fintech_use_num,
        "wd_print_content": "cluster consent",
        "tran_amt": amount.to_string(),
        "tran_dtime": kst(14),
        "req_client_name": "홍길동",
        "req_client_num": "HONG0001",
        "transfer_purpose": "TR",
    })
}

fn claims(app: &App, user: &str) -> Claims {
    Claims {
        client_id: app.id.clone(),
        client_use_code: Some(app.use_code.clone()),
        user_seq_no: Some(user.to_owned()),
        scopes: vec!["login".into(), "inquiry".into(), "transfer".into()],
        fintech_use_nums: Vec::new(),
    }
}

fn call(claims: &Claims) -> BankCall<'_> {
    BankCall {
        caller: Some(claims),
        now_millis: sfop_core::time::now_millis(),
        utc_offset_minutes: sfop_core::time::KST_OFFSET_MINUTES,
    }
}

/// `answer` is the bank's refusal with `code`.
fn refused<T: std::fmt::Debug>(
    answer: std::result::Result<T, BankError>,
    code: &str,
    what: &str,
) -> Result<()> {
    match answer {
        Err(BankError::Refused(r)) if r.rsp_code == code => Ok(()),
        other => bail!("{what}: expected {code}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consent_given_on_one_node_is_served_and_withdrawn_on_the_others() -> Result<()> {
    let Some(url) = database("cluster_consents").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (a, b, c) = three_nodes(dir.path(), &url, None).await?;
    let ledger = Cluster::connect(&url, 2).await?;

    // An app of a new institution: its fintech numbers are drawn from the
    // cluster's sequence when Hong consents on A, and no node's seed has
    // them; B lists the account and C answers its balance.
    let reader = register_app(&a, "Cluster reader", None).await?;
    ensure!(reader.use_code != DEMO_CLIENT_USE_CODE, "{reader:?}");
    let reader_token = consent(&a, &reader, ("hong", "hong1234"), &[HONG_SAVINGS]).await?;
    let on_b = listed(&b, &reader_token, false).await?;
    let savings_fin = match on_b.as_slice() {
        [(bank, fin, false)] if bank == "004" => fin.clone(),
        other => bail!("the reader's accounts on B: {other:?}"),
    };
    ensure!(
        savings_fin.starts_with(&format!("1{}", &reader.use_code[1..])),
        "a number of the reader's institution: {savings_fin}"
    );
    let balance = get(
        &c,
        &format!(
            "/v2.0/account/balance/fin_num?bank_tran_id={}U000000001&fintech_use_num={savings_fin}\
             &tran_dtime={}",
            reader.use_code,
            kst(14)
        ),
        &reader_token,
    )
    .await?;
    ensure!(balance["rsp_code"] == "A0000", "balance on C: {balance}");
    let savings = ledger
        .balance(HONG_SAVINGS)
        .await?
        .context("savings on the ledger")?;
    ensure!(
        balance["balance_amt"].as_str() == Some(savings.to_string().as_str()),
        "{balance}"
    );

    // An app of the demo institution: Hong consents on A to his main
    // account only; B books a withdrawal from it (B's own bank never heard
    // of this app).
    let wallet = register_app(&a, "Cluster wallet", Some(DEMO_CLIENT_USE_CODE)).await?;
    let wallet_token = consent(&a, &wallet, ("hong", "hong1234"), &[HONG_MAIN]).await?;
    let main_fin = match listed(&b, &wallet_token, false).await?.as_slice() {
        [(bank, fin, false)] if bank == "097" => fin.clone(),
        other => bail!("the wallet's accounts on B: {other:?}"),
    };
    let before = ledger
        .balance(HONG_MAIN)
        .await?
        .context("hong on the ledger")?;
    let total = ledger.total_balance().await?;
    let id = format!("{DEMO_CLIENT_USE_CODE}U000000501");
    let answer = withdraw(&b, &wallet_token, &withdrawal(&id, &main_fin, 1_000)).await?;
    ensure!(answer["rsp_code"] == "A0000", "withdrawal on B: {answer}");
    assert_eq!(ledger.balance(HONG_MAIN).await?, Some(before - 1_000));
    assert_eq!(ledger.postings_of(DEMO_CLIENT_USE_CODE, &id).await?, 2);
    assert_eq!(ledger.total_balance().await?, total);

    // Three banks of nodes over this database (their own seeded stores):
    // what another user or institution sends with these numbers is refused
    // by each, and nothing moves.
    let mut banks = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let d = tempfile::tempdir()?;
        let local = VirtualBank::open(&sfop_store::Store::open(d.path())?)?;
        banks.push(ClusterBank::open(local, Cluster::connect(&url, 2).await?).await?);
        dirs.push(d);
    }
    let kim = claims(&wallet, "1100000002");
    let hong_as_reader = claims(&reader, HONG);
    let hong_as_wallet = claims(&wallet, HONG);
    let request =
        |n: u32, fin: &str| withdraw_request(&format!("{DEMO_CLIENT_USE_CODE}U{n:09}"), fin, 1_000);
    for (n, bank) in banks.iter().enumerate() {
        let n = n as u32;
        // Another user's number (Kim's token, Hong's account).
        refused(
            bank.withdraw(&call(&kim), &request(600 + n, &main_fin))
                .await,
            codes::FINTECH_NUM_MISMATCH,
            "kim withdraws with hong's number",
        )?;
        refused(
            bank.balance(
                &call(&kim),
                &format!("{DEMO_CLIENT_USE_CODE}U{:09}", 610 + n),
                &main_fin,
            )
            .await,
            codes::FINTECH_NUM_MISMATCH,
            "kim reads hong's balance",
        )?;
        // Another institution's number (the reader's, sent by the wallet's
        // institution; the wallet's, sent by the reader's).
        refused(
            bank.withdraw(&call(&hong_as_wallet), &request(620 + n, &savings_fin))
                .await,
            codes::FINTECH_NUM_MISMATCH,
            "the wallet's institution with the reader's number",
        )?;
        refused(
            bank.balance(
                &call(&hong_as_reader),
                &format!("{}U{:09}", reader.use_code, 630 + n),
                &main_fin,
            )
            .await,
            codes::FINTECH_NUM_MISMATCH,
            "the reader's institution with the wallet's number",
        )?;
        // The wallet's consents are the main account's only.
        let live = bank
            .fintech_use_nums(HONG, &wallet.id, sfop_core::time::now_millis())
            .await?;
        ensure!(live == vec![main_fin.clone()], "{live:?}");
    }
    assert_eq!(ledger.total_balance().await?, total);
    assert_eq!(ledger.balance(HONG_MAIN).await?, Some(before - 1_000));

    // A sandbox rule naming a bank applies to a number issued through
    // another node, on its first call to a node that never saw it: the
    // number's bank is the cluster's record.
    let fresh_dir = tempfile::tempdir()?;
    let fresh_store = sfop_store::Store::open(fresh_dir.path())?;
    let fresh = ClusterBank::open(
        VirtualBank::open(&fresh_store)?,
        Cluster::connect(&url, 2).await?,
    )
    .await?;
    let script = FaultScript::open(&fresh_store)?;
    let scripted = ScriptedBank::new(fresh, script.clone());
    let rule = |bank: &str| -> Result<FaultRule> {
        Ok(FaultRule::from_json(&json!({
            "operation": "balance",
            "fault": "refuse",
            "bank_code": bank,
            "rsp_code": "A0399",
        }))?)
    };
    let other_bank = script.add(rule("088")?)?;
    // The reader's number for Hong's savings (bank 004): drawn from the
    // cluster's sequence on A, in no node's seed.
    let balance = |n: u32| {
        let id = format!("{}U{n:09}", reader.use_code);
        let (scripted, call, fin) = (&scripted, call(&hong_as_reader), &savings_fin);
        async move { scripted.balance(&call, &id, fin).await }
    };
    let answered = balance(640).await;
    ensure!(
        answered.is_ok(),
        "a rule for bank 088 applied to a 004 account: {answered:?}"
    );
    script.remove(other_bank)?;
    script.add(rule("004")?)?;
    refused(balance(641).await, "A0399", "a rule for bank 004")?;

    // Hong unlinks the wallet through B: its token dies everywhere, and C's
    // bank refuses the number for the wallet (consent withdrawn), the
    // database being the only place that says so.
    let unlinked = post(
        &b,
        "/v2.0/user/unlink",
        &wallet_token,
        &json!({ "client_use_code": DEMO_CLIENT_USE_CODE, "user_seq_no": HONG }),
    )
    .await?;
    ensure!(unlinked["rsp_code"] == "A0000", "unlink on B: {unlinked}");
    let id = format!("{DEMO_CLIENT_USE_CODE}U000000502");
    let revoked = withdraw(&c, &wallet_token, &withdrawal(&id, &main_fin, 1_000)).await?;
    ensure!(
        revoked["rsp_code"] != "A0000",
        "the unlinked token on C: {revoked}"
    );
    for bank in &banks {
        refused(
            bank.withdraw(&call(&hong_as_wallet), &request(640, &main_fin))
                .await,
            codes::TRANSFER_CONSENT_MISSING,
            "the wallet withdraws after the unlink",
        )?;
        ensure!(
            bank.fintech_use_nums(HONG, &wallet.id, sfop_core::time::now_millis())
                .await?
                .is_empty()
        );
    }
    // Hong consents again on C, to his credit account only: C lists it,
    // and the main account as cancelled; the reader's consent stands.
    let again = consent(&c, &wallet, ("hong", "hong1234"), &[HONG_CREDIT]).await?;
    let live: Vec<_> = listed(&c, &again, false).await?;
    ensure!(
        matches!(live.as_slice(), [(bank, _, false)] if bank == "088"),
        "live on C: {live:?}"
    );
    let all = listed(&c, &again, true).await?;
    ensure!(
        all.iter()
            .any(|(bank, fin, cancelled)| bank == "097" && fin == &main_fin && *cancelled),
        "with cancelled on C: {all:?}"
    );
    assert_eq!(listed(&a, &reader_token, false).await?.len(), 1);
    assert_eq!(ledger.balance(HONG_MAIN).await?, Some(before - 1_000));

    drop(banks);
    for node in [a, b, c] {
        node.stop()?;
    }
    Ok(())
}

/// A node cut off from the database decides no consent from a copy of its
/// own: with a token it still accepts (its revocation bound set long), a
/// consent page answers 503 with `Retry-After`, and the account list and a
/// withdrawal `A0002`, nothing done; back in touch, the same calls succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_decides_no_consent() -> Result<()> {
    let Some(url) = database("cluster_consents_cut").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (proxy, through) = crate::cluster_stale::proxy::Proxy::to_database(&url).await?;
    let (data, log) = (dir.path().join("c"), dir.path().join("c.log"));
    let c = tokio::task::spawn_blocking(move || {
        crate::cluster_money::node(
            &data,
            &log,
            &through,
            Some("[auth]\nrevocation_max_lag_ms = 600000\n"),
        )
    })
    .await??;
    let wallet = register_app(&c, "Cut-off wallet", Some(DEMO_CLIENT_USE_CODE)).await?;
    let token = consent(&c, &wallet, ("hong", "hong1234"), &[HONG_MAIN]).await?;
    let fin = match listed(&c, &token, false).await?.as_slice() {
        [(bank, fin, false)] if bank == "097" => fin.clone(),
        other => bail!("the wallet's accounts: {other:?}"),
    };
    let ledger = Cluster::connect(&url, 2).await?;
    let before = ledger
        .balance(HONG_MAIN)
        .await?
        .context("hong on the ledger")?;

    // The consent page shown, then the database gone: the consent is
    // refused as unavailable, never recorded on the node alone.
    let (pending, signed_in) = sign_in(&c, &wallet, ("hong", "hong1234")).await?;
    ensure!(
        text(&signed_in).contains(HONG_SAVINGS),
        "no consent page: {}",
        text(&signed_in)
    );
    proxy.cut();
    let consented = https(
        &c,
        "POST",
        "/oauth/2.0/authorize",
        form(&[
            ("pending", &pending),
            ("action", "consent"),
            ("account", HONG_SAVINGS),
            ("scope", "inquiry"),
        ]),
    )
    .await?;
    ensure!(
        consented.status == 503 && consented.header("retry-after").is_some(),
        "a consent cut off: {} {}",
        consented.status,
        text(&consented)
    );
    let list = get(
        &c,
        &format!("/v2.0/account/list?user_seq_no={HONG}&include_cancel_yn=N&sort_order=A"),
        &token,
    )
    .await?;
    ensure!(list["rsp_code"] == "A0002", "account/list cut off: {list}");
    let id = format!("{DEMO_CLIENT_USE_CODE}U000000701");
    let answer = withdraw(&c, &token, &withdrawal(&id, &fin, 1_000)).await?;
    ensure!(
        answer["rsp_code"] == "A0002",
        "a withdrawal cut off: {answer}"
    );

    // Back in touch (a pooled connection the cut broke fails once).
    proxy.restore();
    let started = std::time::Instant::now();
    loop {
        let answer = withdraw(&c, &token, &withdrawal(&id, &fin, 1_000)).await?;
        if answer["rsp_code"] == "A0000" {
            break;
        }
        ensure!(
            answer["rsp_code"] == "A0002" && started.elapsed() < BOUND,
            "a withdrawal back in touch: {answer}"
        );
    }
    assert_eq!(ledger.balance(HONG_MAIN).await?, Some(before - 1_000));
    assert_eq!(listed(&c, &token, false).await?.len(), 1);
    c.stop()?;
    Ok(())
}
