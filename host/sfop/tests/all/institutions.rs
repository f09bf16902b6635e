//! Issue 17, institution onboarding, through the real `sfop serve` binary
//! over HTTPS: a developer signs up on the portal, registers an app and
//! requests an institution with a sandbox contract account; the operator
//! approves it with the real `sfop institution` CLI; a user consents
//! (3-legged, PKCE); the app withdraws and deposits with its own
//! institution's contract account, balances move and transfer/result
//! confirms. A second app joins the institution and transfers; limits and
//! suspension refuse.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use sfop::institutions::InstitutionsAnswer;

use crate::auth::{REDIRECT, VERIFIER, form};
use crate::harness::Reply;
use crate::portal::html_value;
use crate::served::Served;

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("content-type", "application/json");

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The text of the element after `marker` up to the next `<`.
fn after(html: &str, marker: &str) -> Result<String> {
    let start = html
        .find(marker)
        .with_context(|| format!("{marker:?} not in the page"))?
        + marker.len();
    let end = html[start..].find('<').context("end of element")?;
    Ok(html[start..start + end].to_owned())
}

fn query_param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// `sfop <args> --url … --data-dir …`, the real binary; its stdout, or
/// the failure with its stderr.
async fn sfop(server: &Served, args: &[&str]) -> Result<String> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sfop"));
    cmd.args(args)
        .arg("--url")
        .arg(server.url())
        .arg("--data-dir")
        .arg(&server.data);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    ensure!(
        out.status.success(),
        "sfop {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The institutions as the admin API lists them (typed, as the CLI reads them).
async fn institution(server: &Served, code: &str) -> Result<Value> {
    let token = std::fs::read_to_string(server.data.join("admin.token"))?;
    let auth = format!("Bearer {}", token.trim());
    let reply = server
        .https(
            "GET",
            "/admin/v1/institutions",
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await?;
    ensure!(reply.status == 200, "{}", text(&reply));
    let answer: InstitutionsAnswer = serde_json::from_slice(&reply.body)?;
    let found = answer
        .res_list
        .into_iter()
        .find(|e| e.institution.client_use_code == code)
        .with_context(|| format!("institution {code} not listed"))?;
    Ok(serde_json::to_value(found)?)
}

/// Drives the authorize pages over HTTPS as user `hong`, consenting to
/// their first account; returns the code.
async fn consent(server: &Served, client_id: &str, scope: &str) -> Result<String> {
    let challenge = sfop_auth::oauth::pkce_s256(VERIFIER);
    let state = "0123456789abcdef0123456789abcdef";
    let query = String::from_utf8(form(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", state),
        ("auth_type", "0"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]))?;
    let page = server
        .https(
            "GET",
            &format!("/oauth/2.0/authorize?{query}"),
            &[],
            Vec::new(),
        )
        .await?;
    ensure!(page.status == 200, "{}", text(&page));
    let pending = html_value(&text(&page), "pending").context("pending")?;
    let signed_in = server
        .https(
            "POST",
            "/oauth/2.0/authorize",
            &[FORM],
            form(&[
                ("pending", &pending),
                ("action", "login"),
                ("login_id", "hong"),
                ("password", "hong1234"),
            ]),
        )
        .await?;
    let account = html_value(&text(&signed_in), "account").context("no account offered")?;
    let mut fields = vec![
        ("pending", pending.as_str()),
        ("action", "consent"),
        ("account", account.as_str()),
    ];
    fields.extend(scope.split(' ').map(|s| ("scope", s)));
    let redirect = server
        .https("POST", "/oauth/2.0/authorize", &[FORM], form(&fields))
        .await?;
    ensure!(redirect.status == 302, "{}", text(&redirect));
    let location = redirect.header("location").context("Location")?;
    ensure!(query_param(location, "state").as_deref() == Some(state));
    query_param(location, "code").context("code")
}

async fn token(server: &Served, fields: &[(&str, &str)]) -> Result<Value> {
    let reply = server
        .https("POST", "/oauth/2.0/token", &[FORM], form(fields))
        .await?;
    ensure!(reply.status == 200, "token: {}", text(&reply));
    reply.json()
}

async fn oob_token(server: &Served, client_id: &str, secret: &str) -> Result<String> {
    let t = token(
        server,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "oob"),
            ("client_id", client_id),
            ("client_secret", secret),
        ],
    )
    .await?;
    Ok(t["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned())
}

/// Calls the platform as an app would: bearer token, JSON body.
async fn call(server: &Served, token: &str, path: &str, body: &Value) -> Result<Value> {
    let auth = format!("Bearer {token}");
    let reply = server
        .https(
            "POST",
            path,
            &[JSON, ("authorization", &auth)],
            body.to_string().into_bytes(),
        )
        .await?;
    let mut v = reply.json()?;
    v["http_status"] = json!(reply.status);
    Ok(v)
}

fn now_dtime() -> String {
    let d = sfop_core::time::format_dtm(
        sfop_core::time::now_millis(),
        sfop_core::time::KST_OFFSET_MINUTES,
    );
    d[..14].to_owned()
}

/// A fresh `bank_tran_id` of institution `code`.
fn tran_id(code: &str, n: &mut u32) -> String {
    *n += 1;
    format!("{code}U{:09}", *n)
}

fn deposit_body(code: &str, n: &mut u32, contract: &str, fintech: &str, amt: u64) -> Value {
    json!({
        "cntr_account_type": "N", "cntr_account_num": contract, "wd_pass_phrase": "NONE",
        "wd_print_content": "환불", "name_check_option": "off", "tran_dtime": now_dtime(),
        "req_cnt": "1",
        "req_list": [{
            "tran_no": "1", "bank_tran_id": tran_id(code, n), "fintech_use_num": fintech,
            "print_content": "새핀테크 환불", "tran_amt": amt.to_string(),
            "req_client_name": "홍길동", "req_client_num": "HONG0001", "transfer_purpose": "TR",
        }],
    })
}

fn contract_balance(institution: &Value) -> Result<i64> {
    institution["contract_accounts"][0]["balance_amt"]
        .as_i64()
        .context("balance_amt")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_registered_on_the_portal_moves_money_with_its_own_institution() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Served::start(&dir.path().join("data"), &dir.path().join("serve.log"))?;
    let result = journey(&server).await;
    if result.is_err() {
        eprintln!(
            "serve log: {}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
    }
    result?;
    server.stop()
}

async fn journey(server: &Served) -> Result<()> {
    // A developer signs up and registers an app on the portal.
    let signed_up = server
        .https(
            "POST",
            "/portal/signup",
            &[FORM],
            form(&[
                ("email", "dev@newfin.example"),
                ("password", "a long password"),
            ]),
        )
        .await?;
    ensure!(signed_up.status == 303, "{}", text(&signed_up));
    let cookie = signed_up
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .context("session cookie")?
        .to_owned();
    let get = |path: String| {
        let cookie = cookie.clone();
        async move {
            server
                .https("GET", &path, &[("cookie", &cookie)], Vec::new())
                .await
        }
    };
    let csrf = html_value(&text(&get("/portal/apps".into()).await?), "csrf").context("csrf")?;
    let registered = server
        .https(
            "POST",
            "/portal/apps",
            &[FORM, ("cookie", &cookie)],
            form(&[
                ("csrf", &csrf),
                ("name", "새핀테크 페이"),
                ("redirect_uris", REDIRECT),
                ("scope", "login"),
                ("scope", "inquiry"),
                ("scope", "transfer"),
                ("scope", "oob"),
            ]),
        )
        .await?;
    ensure!(registered.status == 201, "{}", text(&registered));
    let page = text(&registered);
    let client_id = after(&page, "id=\"client-id\">")?;
    let secret = after(&page, "id=\"client-secret\">")?;
    let code = after(&page, "<th>client_use_code</th><td><code>")?;

    // Before any institution: no contract account, A0322 (the old defect).
    let oob = oob_token(server, &client_id, &secret).await?;
    let mut n = 0;
    let none = call(
        server,
        &oob,
        "/v2.0/transfer/deposit/fin_num",
        &deposit_body(
            &code,
            &mut n,
            "5000000000001",
            "120230000100000000000015",
            1_000,
        ),
    )
    .await?;
    ensure!(none["rsp_code"] == "A0322", "{none}");

    // The developer requests an institution with a sandbox contract account.
    let app_path = format!("/portal/apps/{client_id}");
    let app = text(&get(app_path.clone()).await?);
    ensure!(
        app.contains("id=\"request-institution\""),
        "no request form"
    );
    let requested = server
        .https(
            "POST",
            &format!("{app_path}/institution"),
            &[FORM, ("cookie", &cookie)],
            form(&[
                ("csrf", &csrf),
                ("name", "새핀테크(주)"),
                ("sandbox_account", "yes"),
            ]),
        )
        .await?;
    ensure!(requested.status == 303, "{}", text(&requested));
    let app = text(&get(app_path.clone()).await?);
    ensure!(app.contains("requested: waiting"), "{app}");
    let contract = after(&app, "class=\"contract-account\">")?;
    ensure!(contract.len() == 13, "{contract}");
    ensure!(
        app.contains("100000000") && app.contains("5,000,000 won"),
        "test funds and limits shown"
    );

    // Pending: no money moves yet (A0301, the operator has not approved).
    let pending = call(
        server,
        &oob,
        "/v2.0/transfer/deposit/fin_num",
        &deposit_body(&code, &mut n, &contract, "120230000100000000000015", 1_000),
    )
    .await?;
    ensure!(pending["rsp_code"] == "A0301", "{pending}");

    // The operator approves with the CLI.
    let listed = sfop(server, &["institution", "list"]).await?;
    ensure!(
        listed.contains(&code) && listed.contains("requested") && listed.contains(&client_id),
        "{listed}"
    );
    sfop(server, &["institution", "approve", &code]).await?;
    ensure!(institution(server, &code).await?["state"] == "active");

    // A user consents to the new app (3-legged, PKCE) and it withdraws.
    let auth_code = consent(server, &client_id, "login inquiry transfer").await?;
    let user = token(
        server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &auth_code),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await?;
    let access = user["access_token"].as_str().context("access_token")?;
    let user_seq_no = user["user_seq_no"].as_str().context("user_seq_no")?;
    let mut conn = server.connect().await?;
    let accounts = conn
        .get_bearer(
            &format!(
                "/v2.0/account/list?user_seq_no={user_seq_no}&include_cancel_yn=N&sort_order=D"
            ),
            access,
        )
        .await?
        .json()?;
    let fintech = accounts["res_list"][0]["fintech_use_num"]
        .as_str()
        .with_context(|| format!("no account: {accounts}"))?
        .to_owned();
    ensure!(
        fintech[1..10] == code[1..],
        "fintech number of the institution"
    );
    let balance = |conn_n: u32| {
        let (fintech, code) = (fintech.clone(), code.clone());
        async move {
            let reply = server
                .connect()
                .await?
                .get_bearer(
                    &format!(
                        "/v2.0/account/balance/fin_num?bank_tran_id={code}U{:09}&fintech_use_num={fintech}&tran_dtime={}",
                        900_000_000 + conn_n,
                        now_dtime()
                    ),
                    access,
                )
                .await?
                .json()?;
            ensure!(reply["rsp_code"] == "A0000", "{reply}");
            reply["balance_amt"]
                .as_str()
                .context("balance_amt")?
                .parse::<i64>()
                .map_err(anyhow::Error::from)
        }
    };
    let user_before = balance(1).await?;
    let contract_before = contract_balance(&institution(server, &code).await?)?;

    let withdraw_id = tran_id(&code, &mut n);
    let withdrawn = call(
        server,
        access,
        "/v2.0/transfer/withdraw/fin_num",
        &json!({
            "bank_tran_id": withdraw_id, "cntr_account_type": "N", "cntr_account_num": contract,
            "dps_print_content": "홍길동", "fintech_use_num": fintech, "wd_print_content": "새핀테크",
            "tran_amt": "10000", "tran_dtime": now_dtime(), "req_client_name": "홍길동",
            "req_client_num": "HONG0001", "transfer_purpose": "TR",
        }),
    )
    .await?;
    ensure!(withdrawn["rsp_code"] == "A0000", "{withdrawn}");

    let deposit = deposit_body(&code, &mut n, &contract, &fintech, 3_000);
    let deposit_id = deposit["req_list"][0]["bank_tran_id"].clone();
    let deposited = call(server, &oob, "/v2.0/transfer/deposit/fin_num", &deposit).await?;
    ensure!(deposited["rsp_code"] == "A0000", "{deposited}");
    ensure!(
        deposited["res_list"][0]["tran_amt"] == "3000",
        "{deposited}"
    );

    // Balances moved: the user's by -10000 +3000, the contract account's
    // by the opposite.
    ensure!(balance(2).await? == user_before - 7_000);
    ensure!(contract_balance(&institution(server, &code).await?)? == contract_before + 7_000);

    // transfer/result confirms both.
    let date = &now_dtime()[..8];
    for (check_type, id, amt) in [
        ("1", json!(withdraw_id), "10000"),
        ("2", deposit_id, "3000"),
    ] {
        let result = call(
            server,
            &oob,
            "/v2.0/transfer/result",
            &json!({
                "check_type": check_type, "tran_dtime": now_dtime(), "req_cnt": "1",
                "req_list": [{"tran_no": "1", "org_bank_tran_id": id, "org_bank_tran_date": date, "org_tran_amt": amt}],
            }),
        )
        .await?;
        ensure!(
            result["rsp_code"] == "A0000" && result["res_list"][0]["rsp_code"] == "A0000",
            "{result}"
        );
    }

    // A second app joins the institution (CLI) and deposits from the same
    // contract account.
    let out = sfop(
        server,
        &[
            "client",
            "register",
            "--name",
            "새핀테크 정산",
            "--scope",
            "oob",
            "--institution",
            &code,
        ],
    )
    .await?;
    let second: Value = serde_json::from_str(&out)?;
    ensure!(second["client_use_code"] == code.as_str(), "{second}");
    let second_oob = oob_token(
        server,
        second["client_id"].as_str().context("client_id")?,
        second["client_secret"].as_str().context("client_secret")?,
    )
    .await?;
    let joined = call(
        server,
        &second_oob,
        "/v2.0/transfer/deposit/fin_num",
        &deposit_body(&code, &mut n, &contract, &fintech, 2_000),
    )
    .await?;
    ensure!(joined["rsp_code"] == "A0000", "{joined}");
    let apps = institution(server, &code).await?["apps"].clone();
    ensure!(apps.as_array().map(Vec::len) == Some(2), "{apps}");
    // Joining an institution that does not exist is refused.
    let e = sfop(
        server,
        &[
            "client",
            "register",
            "--name",
            "X",
            "--scope",
            "oob",
            "--institution",
            "M000000001",
        ],
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    ensure!(e.contains("institution"), "{e}");

    // Over the institution's limit: refused with the reference's code.
    sfop(
        server,
        &[
            "institution",
            "limits",
            &code,
            "--deposit",
            "5000,100000,1000000",
        ],
    )
    .await?;
    let over = call(
        server,
        &second_oob,
        "/v2.0/transfer/deposit/fin_num",
        &deposit_body(&code, &mut n, &contract, &fintech, 6_000),
    )
    .await?;
    ensure!(over["rsp_code"] == "A0104", "{over}");

    // Suspended: every app of the institution is refused; resumed: moves again.
    sfop(server, &["institution", "suspend", &code]).await?;
    for t in [&oob, &second_oob] {
        let refused = call(
            server,
            t,
            "/v2.0/transfer/deposit/fin_num",
            &deposit_body(&code, &mut n, &contract, &fintech, 1_000),
        )
        .await?;
        ensure!(refused["rsp_code"] == "A0301", "{refused}");
        ensure!(
            refused["rsp_message"]
                .as_str()
                .unwrap_or_default()
                .contains("suspended"),
            "{refused}"
        );
    }
    sfop(server, &["institution", "resume", &code]).await?;
    let resumed = call(
        server,
        &oob,
        "/v2.0/transfer/deposit/fin_num",
        &deposit_body(&code, &mut n, &contract, &fintech, 1_000),
    )
    .await?;
    ensure!(resumed["rsp_code"] == "A0000", "{resumed}");
    // The demo institution's contract account is not this app's.
    let other = call(
        server,
        &oob,
        "/v2.0/transfer/deposit/fin_num",
        &deposit_body(&code, &mut n, "5000000000001", &fintech, 1_000),
    )
    .await?;
    ensure!(other["rsp_code"] == "A0322", "{other}");
    Ok(())
}

/// The operator onboards an institution entirely from the CLI: create,
/// register an existing account (refused verification: not the
/// institution's), open a sandbox account, approve; the admin API checks
/// the admin token before it reads a body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_onboards_an_institution_with_the_cli() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Served::start(&dir.path().join("data"), &dir.path().join("serve.log"))?;
    operator(&server, dir.path()).await?;
    server.stop()
}

async fn operator(server: &Served, _dir: &Path) -> Result<()> {
    let code = sfop(
        server,
        &["institution", "create", "--name", "오퍼레이터핀테크"],
    )
    .await?
    .trim()
    .to_owned();
    ensure!(code.len() == 10 && code.starts_with('M'), "{code}");
    // Not approved without a verified contract account.
    ensure!(
        sfop(server, &["institution", "approve", &code])
            .await
            .is_err()
    );
    // Someone else's account: registered, but verification refuses it.
    sfop(
        server,
        &[
            "institution",
            "add-account",
            &code,
            "--bank-code",
            "097",
            "--account-num",
            "5000000000001",
        ],
    )
    .await?;
    let e = sfop(
        server,
        &[
            "institution",
            "verify-account",
            &code,
            "--bank-code",
            "097",
            "--account-num",
            "5000000000001",
        ],
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    ensure!(e.contains("not by institution"), "{e}");
    sfop(
        server,
        &[
            "institution",
            "add-account",
            &code,
            "--open-sandbox",
            "--opening-balance",
            "5000000",
        ],
    )
    .await?;
    sfop(server, &["institution", "approve", &code]).await?;
    let i = institution(server, &code).await?;
    ensure!(i["state"] == "active", "{i}");
    let accounts = i["contract_accounts"].as_array().context("accounts")?;
    ensure!(
        accounts
            .iter()
            .any(|a| a["verified"] == true && a["balance_amt"] == 5_000_000),
        "{i}"
    );
    // An app joins it at registration.
    let out = sfop(
        server,
        &[
            "client",
            "register",
            "--name",
            "Ops app",
            "--scope",
            "oob",
            "--institution",
            &code,
        ],
    )
    .await?;
    ensure!(serde_json::from_str::<Value>(&out)?["client_use_code"] == code.as_str());

    // No admin token: refused from the head, before any of the announced
    // body is sent (a server that read bodies first would wait for it).
    let refused = server
        .head_only("POST", "/admin/v1/institutions", &[JSON], 30 << 20)
        .await?;
    ensure!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    Ok(())
}
