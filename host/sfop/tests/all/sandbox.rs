//! The sandbox's scripted faults (issue 7), through real HTTP with real
//! biscuit tokens: an operator scripts one app's bank over the admin API and
//! only that app sees it; everyone else keeps the stateful virtual bank.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sfop::{AuthMode, TlsMode};
use sfop_vbank::seed::DEMO_CONTRACT_ACCOUNT_NUM;
use sfop_vbank::{Limits, NewAccount, Owner};

use crate::auth::{
    REDIRECT, VERIFIER, authorize_with, consented_accounts, exchange, get_bearer, post_form,
    register_client, rsp_code, token_of,
};
use crate::harness::{Package, Reply, TestPlatform, send};

const B_CONTRACT: &str = "5000000000099";

/// One app as the tests drive it.
struct App {
    client_id: String,
    use_code: String,
    contract: String,
    /// Hong's user token for this app.
    user: String,
    /// The app's own (oob) token.
    oob: String,
    fintech: String,
}

fn configure(c: &mut sfop::Config) {
    c.tls.mode = TlsMode::Off;
    c.auth.mode = AuthMode::Biscuit;
}

async fn platform() -> Result<TestPlatform> {
    TestPlatform::start_with(
        vec![
            Package::built("api/bank-status"),
            Package::built("api/account-balance"),
            Package::built("api/transfer-withdraw"),
            Package::built("api/transfer-result"),
        ],
        configure,
    )
    .await
}

async fn app(
    t: &TestPlatform,
    client: (String, String, String),
    redirect: &str,
    contract: &str,
) -> Result<App> {
    let code = authorize_with(t, &client.0, redirect, "login inquiry transfer").await?;
    let (user, _) = token_of(&exchange(t, &client, &code, VERIFIER, redirect).await?)?;
    let (oob, _) = token_of(
        &post_form(
            t,
            "/oauth/2.0/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "oob"),
                ("client_id", &client.0),
                ("client_secret", &client.1),
            ],
        )
        .await?,
    )?;
    let fintech = consented_accounts(&user)?
        .first()
        .context("no consented account")?
        .clone();
    Ok(App {
        client_id: client.0,
        use_code: client.2,
        contract: contract.to_owned(),
        user,
        oob,
        fintech,
    })
}

/// A: the seeded demo app. B: an app registered over the admin API, with an
/// institution and a contract account of its own at the virtual bank.
async fn two_apps(t: &TestPlatform) -> Result<(App, App)> {
    let demo: Value =
        serde_json::from_slice(&std::fs::read(t.data_dir().join("demo-client.json"))?)?;
    let field = |k: &str| {
        demo[k]
            .as_str()
            .map(str::to_owned)
            .context("demo-client.json")
    };
    let redirect = field("redirect_uri")?;
    let a = app(
        t,
        (
            field("client_id")?,
            field("client_secret")?,
            field("client_use_code")?,
        ),
        &redirect,
        DEMO_CONTRACT_ACCOUNT_NUM,
    )
    .await?;

    let b_client = register_client(t).await?;
    let bank = &t.platform.bank;
    let big = Limits {
        per_tran: 10_000_000,
        daily: 100_000_000,
        monthly: 1_000_000_000,
    };
    bank.add_institution(&b_client.2, "B app", "NONE", big, big)?;
    bank.open_account(
        &NewAccount {
            bank_code: "097".into(),
            account_num: B_CONTRACT.into(),
            owner: Owner::Institution(b_client.2.clone()),
            holder_name: "B app".into(),
            holder_info: "2208100099".into(),
            alias: "B app".into(),
            product_name: "기업자유예금".into(),
            account_type: "1".into(),
            maturity_date: None,
            overdraft_limit: 0,
            opening_balance: 0,
        },
        sfop_core::time::now_millis(),
    )?;
    bank.add_contract_account(&b_client.2, "097", B_CONTRACT)?;
    let b = app(t, b_client, REDIRECT, B_CONTRACT).await?;
    Ok((a, b))
}

static TRAN: AtomicU32 = AtomicU32::new(100);

fn tran_id(app: &App) -> String {
    format!(
        "{}U{:09}",
        app.use_code,
        TRAN.fetch_add(1, Ordering::Relaxed)
    )
}

fn now() -> String {
    sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    )[..14]
        .to_owned()
}

async fn balance(t: &TestPlatform, app: &App) -> Result<Reply> {
    get_bearer(
        t,
        &format!(
            "/v2.0/account/balance/fin_num?bank_tran_id={}&fintech_use_num={}&tran_dtime={}",
            tran_id(app),
            app.fintech,
            now()
        ),
        &app.user,
    )
    .await
}

async fn post_bearer(t: &TestPlatform, path: &str, token: &str, body: &Value) -> Result<Reply> {
    let auth = format!("Bearer {token}");
    send(
        t.addr(),
        "POST",
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.to_string().into_bytes(),
    )
    .await
}

async fn withdraw(t: &TestPlatform, app: &App, id: &str, amount: &str) -> Result<Reply> {
    let body = json!({
        "bank_tran_id": id,
        "cntr_account_type": "N",
        "cntr_account_num": app.contract,
        "dps_print_content": "sandbox",
        "fintech_use_num": app.fintech,
        "wd_print_content": "coffee",
        "tran_amt": amount,
        "tran_dtime": now(),
        "req_client_name": "홍길동",
        "req_client_num": "HONG",
        "transfer_purpose": "TR",
    });
    post_bearer(t, "/v2.0/transfer/withdraw/fin_num", &app.user, &body).await
}

fn admin_token(t: &TestPlatform) -> Result<String> {
    Ok(std::fs::read_to_string(
        t.platform.admin_token.as_ref().context("no admin token")?,
    )?)
}

async fn admin(t: &TestPlatform, method: &str, path: &str, body: Value) -> Result<Reply> {
    let token = admin_token(t)?;
    let body = if method == "GET" {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let auth = format!("Bearer {token}");
    send(
        t.addr(),
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

async fn add_rule(t: &TestPlatform, rule: Value) -> Result<u64> {
    let reply = admin(t, "POST", "/admin/v1/sandbox/faults", rule).await?;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()?["id"].as_u64().context("id")
}

async fn rules(t: &TestPlatform) -> Result<Vec<Value>> {
    let reply = admin(t, "GET", "/admin/v1/sandbox/faults", Value::Null).await?;
    assert_eq!(reply.status, 200);
    Ok(reply.json()?["res_list"]
        .as_array()
        .context("res_list")?
        .clone())
}

fn statuses(reply: &Reply) -> Result<Vec<String>> {
    Ok(reply.json()?["res_list"]
        .as_array()
        .context("res_list")?
        .iter()
        .filter_map(|b| b["bank_status"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_faults_apply_to_one_app_only_and_survive_a_restart() -> Result<()> {
    let t = platform().await?;
    let (a, b) = two_apps(&t).await?;

    // Refused: a non-admin token, and every bad field, each named; nothing changes.
    let not_admin = post_bearer(
        &t,
        "/admin/v1/sandbox/faults",
        &a.oob,
        &json!({ "client_id": a.client_id, "fault": "outage" }),
    )
    .await?;
    assert!(
        matches!(not_admin.status, 401 | 403),
        "{}",
        not_admin.status
    );
    let no_token = send(t.addr(), "GET", "/admin/v1/sandbox/faults", &[], Vec::new()).await?;
    assert_eq!(no_token.status, 401);
    for (rule, field) in [
        (
            json!({ "client_id": a.client_id, "fault": "explode" }),
            "fault",
        ),
        (
            json!({ "client_id": "nobody-registered", "fault": "timeout" }),
            "client_id",
        ),
        (
            json!({ "client_id": "a b", "fault": "timeout" }),
            "client_id",
        ),
        (json!({ "fault": "timeout" }), "client_id"),
        (
            json!({ "client_id": a.client_id, "fault": "timeout", "times": 0 }),
            "times",
        ),
        (
            json!({ "client_id": a.client_id, "fault": "outage", "operation": "steal" }),
            "operation",
        ),
        (
            json!({ "client_id": a.client_id, "fault": "outage", "bank_code": "97" }),
            "bank_code",
        ),
        (
            json!({ "client_id": a.client_id, "fault": "refuse" }),
            "rsp_code",
        ),
    ] {
        let reply = admin(&t, "POST", "/admin/v1/sandbox/faults", rule.clone()).await?;
        let message = reply.json()?["rsp_message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(
            (reply.status, rsp_code(&reply)),
            (400, "A0004".into()),
            "{rule}"
        );
        assert!(
            message.starts_with(&format!("{field}:")),
            "{rule}: {message}"
        );
    }
    let not_json = send(
        t.addr(),
        "POST",
        "/admin/v1/sandbox/faults",
        &[("authorization", &format!("Bearer {}", admin_token(&t)?))],
        b"{".to_vec(),
    )
    .await?;
    assert_eq!(not_json.status, 400);
    assert!(rules(&t).await?.is_empty());

    // A timeout of A's next withdraw: booked at the bank, the answer lost.
    let id = add_rule(
        &t,
        json!({ "client_id": a.client_id, "operation": "withdraw", "fault": "timeout", "times": 1 }),
    )
    .await?;
    assert_eq!(rules(&t).await?[0]["id"], id);
    let contract_a = format!("097/{}", a.contract);
    let before = t.platform.bank.balance_of(&contract_a)?;
    let lost = tran_id(&a);
    let reply = withdraw(&t, &a, &lost, "7000").await?;
    assert_eq!(
        rsp_code(&reply),
        "A0017",
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // B's identical call is untouched.
    let reply = withdraw(&t, &b, &tran_id(&b), "7000").await?;
    assert_eq!(
        rsp_code(&reply),
        "A0000",
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(rules(&t).await?.is_empty(), "a one-time rule is used up");
    // transfer-result finds A's transfer, booked once.
    let date = &now()[..8];
    let result = post_bearer(
        &t,
        "/v2.0/transfer/result",
        &a.oob,
        &json!({
            "check_type": "1",
            "tran_dtime": now(),
            "req_cnt": "1",
            "req_list": [{ "tran_no": "1", "org_bank_tran_id": lost, "org_bank_tran_date": date, "org_tran_amt": "7000" }],
        }),
    )
    .await?;
    let found = result.json()?;
    assert_eq!(found["res_list"][0]["rsp_code"], "A0000", "{found}");
    assert_eq!(found["res_list"][0]["tran_amt"], "7000");
    assert_eq!(t.platform.bank.balance_of(&contract_a)? - before, 7000);
    let again = withdraw(&t, &a, &lost, "7000").await?;
    assert_eq!(rsp_code(&again), "A0326", "the id was used by the booking");

    // An outage for A: bank status N and balance A0017 for A; B sees the bank.
    let outage = add_rule(&t, json!({ "client_id": a.client_id, "fault": "outage" })).await?;
    let status_a = get_bearer(&t, "/v2.0/bank/status", &a.oob).await?;
    assert!(statuses(&status_a)?.iter().all(|s| s == "N"));
    assert_eq!(rsp_code(&balance(&t, &a).await?), "A0017");
    let status_b = get_bearer(&t, "/v2.0/bank/status", &b.oob).await?;
    let b_statuses = statuses(&status_b)?;
    assert!(!b_statuses.is_empty() && b_statuses.iter().all(|s| s == "Y"));
    assert_eq!(rsp_code(&balance(&t, &b).await?), "A0000");
    let removed = admin(
        &t,
        "POST",
        "/admin/v1/sandbox/faults/remove",
        json!({ "id": outage }),
    )
    .await?;
    assert_eq!(removed.status, 200);
    assert_eq!(rsp_code(&balance(&t, &a).await?), "A0000");
    let gone = admin(
        &t,
        "POST",
        "/admin/v1/sandbox/faults/remove",
        json!({ "id": outage }),
    )
    .await?;
    assert_eq!(gone.status, 404);

    // An outage of one bank only: bank status lists that bank as N for A.
    add_rule(
        &t,
        json!({ "client_id": a.client_id, "operation": "bank-status", "fault": "outage", "bank_code": "002", "times": 1 }),
    )
    .await?;
    let list = get_bearer(&t, "/v2.0/bank/status", &a.oob).await?.json()?;
    for bank in list["res_list"].as_array().context("res_list")? {
        let down = bank["bank_code_std"] == "002";
        assert_eq!(bank["bank_status"], if down { "N" } else { "Y" }, "{bank}");
    }

    // A count-limited refusal with the bank's own code: twice, then the bank again.
    add_rule(
        &t,
        json!({ "client_id": a.client_id, "operation": "balance", "fault": "refuse", "bank_rsp_code": "551", "times": 2 }),
    )
    .await?;
    for _ in 0..2 {
        let reply = balance(&t, &a).await?;
        assert_eq!(rsp_code(&reply), "A0009");
        assert_eq!(reply.json()?["bank_rsp_code"], "551");
    }
    assert_eq!(rsp_code(&balance(&t, &a).await?), "A0000");
    assert!(rules(&t).await?.is_empty());

    // A fixture answer for A's balance; B reads the real one.
    let real = balance(&t, &b).await?.json()?["balance_amt"].clone();
    add_rule(
        &t,
        json!({ "client_id": a.client_id, "operation": "balance", "fault": "fixture", "fixture": { "balance_amt": 123 } }),
    )
    .await?;
    assert_eq!(balance(&t, &a).await?.json()?["balance_amt"], "123");
    assert_eq!(balance(&t, &b).await?.json()?["balance_amt"], real);
    let cleared = admin(
        &t,
        "POST",
        "/admin/v1/sandbox/faults/clear",
        json!({ "client_id": a.client_id }),
    )
    .await?;
    assert_eq!(cleared.json()?["removed"], 1);

    // Rules and their remaining counts survive a restart.
    let kept = add_rule(
        &t,
        json!({ "client_id": a.client_id, "operation": "balance", "fault": "outage", "times": 3 }),
    )
    .await?;
    assert_eq!(rsp_code(&balance(&t, &a).await?), "A0017");
    let t = TestPlatform::restart_with(t.stop_keeping_dirs().await?, configure).await?;
    let after = rules(&t).await?;
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0]["id"].as_u64(), after[0]["times"].as_u64()),
        (Some(kept), Some(2))
    );
    assert_eq!(rsp_code(&balance(&t, &a).await?), "A0017");
    assert_eq!(rsp_code(&balance(&t, &b).await?), "A0000");
    t.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_scripts_faults() -> Result<()> {
    let t = platform().await?;
    let url = t.platform.url();
    let data_dir = t.data_dir().to_owned();
    let cli = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let (url, data_dir) = (url.clone(), data_dir.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sfop"))
                .args(["sandbox", "fault"])
                .args(&args)
                .arg("--url")
                .arg(&url)
                .arg("--data-dir")
                .arg(&data_dir)
                .output()
        })
    };
    let demo = sfop_vbank::seed::DEMO_CLIENT_ID;
    let out = cli(&[
        "add",
        "--client-id",
        demo,
        "--operation",
        "withdraw",
        "--fault",
        "duplicate",
        "--times",
        "2",
    ])
    .await??;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: u64 = String::from_utf8(out.stdout)?.trim().parse()?;
    let out = cli(&["list"]).await??;
    let listed = String::from_utf8(out.stdout)?;
    assert!(
        listed.contains(demo) && listed.contains("duplicate"),
        "{listed}"
    );
    // A bad field: refused, the field named, a non-zero exit.
    let out = cli(&["add", "--client-id", demo, "--fault", "explode"]).await??;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fault:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["remove", &id.to_string()]).await??;
    assert!(out.status.success());
    cli(&["add", "--client-id", demo, "--fault", "outage"]).await??;
    let out = cli(&["clear"]).await??;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), "removed 1");
    assert!(t.platform.faults.rules().is_empty());
    t.platform.stop().await
}

/// A developer scripts faults for their own app on its portal page, and
/// only for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_scripts_their_own_app_on_the_portal() -> Result<()> {
    use crate::portal::{form, html_value, sign_up, text};
    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
    let t = platform().await?;
    let cookie = sign_up(&t, "sandbox@example.com").await?;
    let get = |cookie: String, path: String| {
        let addr = t.addr();
        async move { send(addr, "GET", &path, &[("cookie", &cookie)], Vec::new()).await }
    };
    let post = |cookie: String, path: String, body: Vec<u8>| {
        let addr = t.addr();
        async move { send(addr, "POST", &path, &[FORM, ("cookie", &cookie)], body).await }
    };
    let csrf = html_value(
        &text(&get(cookie.clone(), "/portal/apps".into()).await?),
        "csrf",
    )
    .context("csrf")?;
    let registered = post(
        cookie.clone(),
        "/portal/apps".into(),
        form(&[("csrf", &csrf), ("name", "Flaky app"), ("scope", "oob")]),
    )
    .await?;
    assert_eq!(registered.status, 201, "{}", text(&registered));
    let page = text(&registered);
    let marker = "id=\"client-id\">";
    let start = page.find(marker).context("client-id")? + marker.len();
    let client_id = page[start..]
        .split('<')
        .next()
        .context("client-id")?
        .to_owned();
    let faults = format!("/portal/apps/{client_id}/faults");

    let added = post(
        cookie.clone(),
        faults.clone(),
        form(&[
            ("csrf", &csrf),
            ("fault", "outage"),
            ("operation", "balance"),
            ("times", "2"),
            ("bank_code", ""),
        ]),
    )
    .await?;
    assert_eq!(added.status, 303, "{}", text(&added));
    let rules = t.platform.faults.rules();
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!(rule.rule.client_id.as_deref(), Some(client_id.as_str()));
    assert_eq!(
        (rule.rule.operation.as_deref(), rule.rule.times),
        (Some("balance"), Some(2))
    );
    let app = text(&get(cookie.clone(), format!("/portal/apps/{client_id}")).await?);
    assert!(
        app.contains("id=\"faults\"") && app.contains("outage"),
        "{app}"
    );

    // Bad fields: the page again with the field named, nothing stored.
    for (fields, field) in [
        (vec![("fault", "explode")], "fault:"),
        (vec![("fault", "timeout"), ("times", "0")], "times:"),
        (vec![("fault", "timeout"), ("times", "many")], "times:"),
    ] {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(fields);
        let refused = post(cookie.clone(), faults.clone(), form(&all)).await?;
        assert_eq!(refused.status, 400);
        assert!(text(&refused).contains(field), "{field}");
    }
    assert_eq!(t.platform.faults.rules().len(), 1);

    // Another developer can neither add to nor remove from this app.
    let other = sign_up(&t, "other@example.com").await?;
    let other_csrf = html_value(
        &text(&get(other.clone(), "/portal/apps".into()).await?),
        "csrf",
    )
    .context("csrf")?;
    let id = rule.id.to_string();
    let refused = post(
        other.clone(),
        faults.clone(),
        form(&[("csrf", &other_csrf), ("fault", "timeout")]),
    )
    .await?;
    assert_eq!(refused.status, 404);
    let refused = post(
        other,
        format!("{faults}/remove"),
        form(&[("csrf", &other_csrf), ("id", &id)]),
    )
    .await?;
    assert_eq!(refused.status, 404);
    assert_eq!(t.platform.faults.rules().len(), 1);

    let removed = post(
        cookie,
        format!("{faults}/remove"),
        form(&[("csrf", &csrf), ("id", &id)]),
    )
    .await?;
    assert_eq!(removed.status, 303);
    assert!(t.platform.faults.rules().is_empty());
    t.platform.stop().await
}

/// The sandbox's admin routes through the platform's router itself, without
/// TCP (`tower::ServiceExt::oneshot`): the admin layer refuses an anonymous
/// caller and a non-admin alike, an admin's rule is refused naming its bad
/// field, and a good one is listed (docs/adr/0024-platform-router.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_routes_answer_through_the_router_without_tcp() -> Result<()> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let t = TestPlatform::start_with(Vec::new(), configure).await?;
    let clients = t.platform.endpoints.clone();
    let call = |method: &str, token: Option<&str>, body: Value| {
        let endpoints = clients.clone();
        let mut request = hyper::Request::builder()
            .method(method)
            .uri("/admin/v1/sandbox/faults")
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        async move {
            let mut request = request.body(axum::body::Body::from(body))?;
            request.extensions_mut().insert(sfop_gateway::Caller {
                api_tran_id: "T0001".into(),
                peer: std::net::Ipv4Addr::LOCALHOST.into(),
                client_cert: None,
                authority: None,
            });
            let response = endpoints.router().clone().oneshot(request).await?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, serde_json::from_slice::<Value>(&bytes)?))
        }
    };
    let (status, body) = call("GET", None, Value::Null).await?;
    assert_eq!(
        (status, body["rsp_code"].as_str()),
        (401, Some("O0001")),
        "{body}"
    );
    let (status, _) = call("GET", Some("not-a-biscuit"), Value::Null).await?;
    assert_eq!(status, 401);

    let admin = admin_token(&t)?;
    let admin = admin.trim();
    let (status, body) = call("POST", Some(admin), json!({ "fault": "outage" })).await?;
    assert_eq!(
        (status, body["rsp_code"].as_str()),
        (400, Some("A0004")),
        "{body}"
    );
    assert!(
        body["rsp_message"]
            .as_str()
            .is_some_and(|m| m.starts_with("client_id: ")),
        "{body}"
    );
    let (status, body) = call("GET", Some(admin), Value::Null).await?;
    assert_eq!(
        (status, body["res_cnt"].as_str()),
        (200, Some("0")),
        "{body}"
    );

    // Over real HTTP, the router's misses are answered as the route
    // table's: a method the route lacks is 405 O0010 with Allow, an unknown
    // path under a platform prefix 404 A0004, both in the envelope and
    // with the gateway's headers.
    let wrong = send(t.addr(), "GET", "/oauth/2.0/token", &[], Vec::new()).await?;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("POST"));
    assert_eq!(wrong.json()?["rsp_code"], "O0010");
    assert!(wrong.json()?["api_tran_id"].is_string());
    assert_eq!(wrong.header("x-content-type-options"), Some("nosniff"));
    let unknown = send(t.addr(), "GET", "/admin/v1/keys/nothing", &[], Vec::new()).await?;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()?["rsp_code"], "A0004");
    t.stop_keeping_dirs().await.map(drop)
}
