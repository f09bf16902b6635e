//! Issue 20, "admin and portal on any node" (ADR 0029): apps (OAuth
//! clients), developer accounts, authorization codes, refresh tokens and
//! token families are the cluster's, so what one node registers or issues
//! the others know, and a code or refresh token is used once whichever
//! nodes are asked. Three `sfop serve` processes on one PostgreSQL
//! database; B and C are provisioned with A's root-key file only (and its
//! demo app's secret file and compile cache), not a copy of its store. A
//! node cut off from the database answers 503, never the caller's fault.
//! Sandbox rules set on one node apply on every node, counted across them.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::cluster::{admin, admin_list, provision, start, status, three_nodes};
use crate::cluster_money::{database, node};
use crate::cluster_stale::proxy::Proxy;
use crate::portal::{form, html_value, text};
use crate::served::Served;

/// Bound on one request: a hang fails the test.
const BOUND: Duration = Duration::from_secs(30);
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn post_form(
    node: &Served,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> Result<crate::harness::Reply> {
    let mut headers = vec![FORM];
    if let Some(cookie) = cookie {
        headers.push(("cookie", cookie));
    }
    tokio::time::timeout(BOUND, node.https("POST", path, &headers, form(fields)))
        .await
        .with_context(|| format!("{path} hung"))?
}

async fn get_page(node: &Served, path: &str, cookie: &str) -> Result<crate::harness::Reply> {
    tokio::time::timeout(
        BOUND,
        node.https("GET", path, &[("cookie", cookie)], Vec::new()),
    )
    .await
    .with_context(|| format!("{path} hung"))?
}

/// The session cookie (`name=value`) a sign-up or sign-in answered with.
fn session(reply: &crate::harness::Reply) -> Result<String> {
    ensure!(reply.status == 303, "{} {}", reply.status, text(reply));
    let cookie = reply.header("set-cookie").context("no session cookie")?;
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

/// Whether a bank-status answer lists bank 097 as not available.
fn bank_097_down(answer: &Value) -> bool {
    answer["res_list"].as_array().is_some_and(|l| {
        l.iter()
            .any(|b| b["bank_code_std"] == "097" && b["bank_status"] == "N")
    })
}

/// The text of the element with id `id` on a page (`<code id=..>text<`).
fn shown(page: &str, id: &str) -> Result<String> {
    let marker = format!("id=\"{id}\">");
    let start = page.find(&marker).context(marker.clone())? + marker.len();
    let end = page[start..].find('<').context("end")?;
    Ok(page[start..start + end].to_owned())
}

/// The institution code of app `client_id`, as `node`'s admin API lists it.
async fn registered_code(node: &Served, client_id: &str) -> Result<String> {
    let listed = admin_list(node, "/admin/v1/clients").await?;
    listed
        .iter()
        .find(|c| c["client_id"] == client_id)
        .and_then(|c| c["client_use_code"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("{client_id} in {listed:?}"))
}

/// A client-credentials token from `node` for `client_id` with `secret`.
async fn oob_token(node: &Served, client_id: &str, secret: &str) -> Result<(u16, Value)> {
    let reply = post_form(
        node,
        "/oauth/2.0/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "oob"),
            ("client_id", client_id),
            ("client_secret", secret),
        ],
    )
    .await?;
    Ok((reply.status, reply.json().unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_and_a_developer_made_on_one_node_work_on_the_others() -> Result<()> {
    let Some(url) = database("cluster_apps").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let path = |n: &str| dir.path().join(n);
    let a = start(path("a"), path("a.log"), url.clone()).await?;
    provision(&path("a"), &path("b"))?;
    provision(&path("a"), &path("c"))?;
    // C reaches the database through a proxy the test can cut; its
    // revocation list may then lag long (the refusals under test are the
    // apps' and accounts', not the token check's).
    let (proxy, through) = Proxy::to_database(&url).await?;
    let (c_data, c_log) = (path("c"), path("c.log"));
    let (b, c) = tokio::join!(
        start(path("b"), path("b.log"), url.clone()),
        tokio::task::spawn_blocking(move || {
            node(
                &c_data,
                &c_log,
                &through,
                Some("[auth]\nrevocation_max_lag_ms = 600000\n"),
            )
        })
    );
    let (b, c) = (b?, c??);

    // An app registered on A through the admin API: B issues its token,
    // C serves an API with it.
    let (code, registered) = admin(
        &a,
        "/admin/v1/clients",
        json!({ "name": "Cluster app", "redirect_uris": [], "scopes": ["oob"] }),
    )
    .await?;
    ensure!(code == 201, "register on A: {code} {registered}");
    let field = |k: &str| {
        registered[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{k} in {registered}"))
    };
    let (client_id, secret) = (field("client_id")?, field("client_secret")?);
    let (code, answer) = oob_token(&b, &client_id, &secret).await?;
    ensure!(code == 200, "token from B: {code} {answer}");
    let token = answer["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned();
    ensure!(
        answer["client_use_code"] == registered["client_use_code"],
        "{answer}"
    );
    let (code, answer, _) = status(&mut c.connect().await?, &token).await?;
    ensure!(
        code == 200 && answer["rsp_code"] == "A0000",
        "A's app's token from B on C: {code} {answer}"
    );
    // A wrong secret is refused on C as on one node.
    let (code, answer) = oob_token(&c, &client_id, &"0".repeat(64)).await?;
    ensure!(
        code == 401 && answer["error"] == "invalid_client",
        "a wrong secret on C: {code} {answer}"
    );

    // A sandbox rule set on A for this app (bank 097 down for its next two
    // bank-status calls) applies on B and C, counted across them: the
    // first call that sees it on B and the first on C are the two, and
    // no call after them on either node sees it.
    let (code, answer) = admin(
        &a,
        sfop_admin_api::sandbox::FAULTS,
        json!({ "client_id": client_id, "operation": "bank-status", "fault": "outage",
                "bank_code": "097", "times": 2 }),
    )
    .await?;
    ensure!(code == 201, "a sandbox rule on A: {code} {answer}");
    for (n, node) in [("B", &b), ("C", &c)] {
        let mut conn = node.connect().await?;
        let started = std::time::Instant::now();
        while !bank_097_down(&status(&mut conn, &token).await?.1) {
            ensure!(
                started.elapsed() < Duration::from_secs(5),
                "A's sandbox rule never applied on {n}"
            );
        }
    }
    for node in [&b, &c, &b, &c] {
        let (code, answer, _) = status(&mut node.connect().await?, &token).await?;
        ensure!(
            code == 200 && !bank_097_down(&answer),
            "the rule applied a third time: {answer}"
        );
    }

    // A developer signs up and registers an app on A's portal; signs in
    // on B's and finds it; the address is taken on C.
    let email = "dev@cluster.example";
    let password = "a long password";
    let signed_up = post_form(
        &a,
        "/portal/signup",
        None,
        &[("email", email), ("password", password)],
    )
    .await?;
    let on_a = session(&signed_up)?;
    let apps = get_page(&a, "/portal/apps", &on_a).await?;
    let csrf = html_value(&text(&apps), "csrf").context("csrf on A's apps page")?;
    let portal_app = post_form(
        &a,
        "/portal/apps",
        Some(&on_a),
        &[("csrf", &csrf), ("name", "Portal app"), ("scope", "oob")],
    )
    .await?;
    let page = text(&portal_app);
    ensure!(portal_app.status == 201, "portal app on A: {page}");
    let (portal_client, portal_secret) =
        (shown(&page, "client-id")?, shown(&page, "client-secret")?);

    let wrong = post_form(
        &b,
        "/portal/signin",
        None,
        &[("email", email), ("password", "not the password")],
    )
    .await?;
    ensure!(
        wrong.status == 401,
        "a wrong password on B: {}",
        wrong.status
    );
    let signed_in = post_form(
        &b,
        "/portal/signin",
        None,
        &[("email", email), ("password", password)],
    )
    .await?;
    let on_b = session(&signed_in)?;
    let listed = get_page(&b, "/portal/apps", &on_b).await?;
    let html = text(&listed);
    ensure!(
        listed.status == 200 && html.contains(&portal_client) && html.contains("Portal app"),
        "B's app list: {html}"
    );
    let app_page = get_page(&b, &format!("/portal/apps/{portal_client}"), &on_b).await?;
    ensure!(
        app_page.status == 200,
        "the app's page on B: {}",
        text(&app_page)
    );
    let again = post_form(
        &c,
        "/portal/signup",
        None,
        &[("email", email), ("password", "another long password")],
    )
    .await?;
    ensure!(
        again.status != 303 && text(&again).contains("already registered"),
        "signed up twice on C: {} {}",
        again.status,
        text(&again)
    );
    // The portal app's secret, shown on A, works on C.
    let (code, answer) = oob_token(&c, &portal_client, &portal_secret).await?;
    ensure!(
        code == 200,
        "the portal app's token from C: {code} {answer}"
    );
    // Its secret rotated on B's portal: the old one refused on C, the new
    // one accepted on A.
    let csrf = html_value(&text(&app_page), "csrf").context("csrf on B's app page")?;
    let rotated = post_form(
        &b,
        &format!("/portal/apps/{portal_client}/secret"),
        Some(&on_b),
        &[("csrf", &csrf)],
    )
    .await?;
    let page = text(&rotated);
    ensure!(rotated.status == 200, "rotate on B: {page}");
    let new_secret = shown(&page, "client-secret")?;
    let (code, answer) = oob_token(&c, &portal_client, &portal_secret).await?;
    ensure!(
        code == 401 && answer["error"] == "invalid_client",
        "the rotated-out secret on C: {code} {answer}"
    );
    let (code, answer) = oob_token(&a, &portal_client, &new_secret).await?;
    ensure!(code == 200, "the new secret on A: {code} {answer}");
    // A developer's sandbox rule set on A's portal is on B's app page.
    let on_a_page = get_page(&a, &format!("/portal/apps/{portal_client}"), &on_a).await?;
    ensure!(!text(&on_a_page).contains("<td>088</td>"), "a rule already");
    let csrf = html_value(&text(&on_a_page), "csrf").context("csrf on A's app page")?;
    let scripted = post_form(
        &a,
        &format!("/portal/apps/{portal_client}/faults"),
        Some(&on_a),
        &[
            ("csrf", &csrf),
            ("fault", "outage"),
            ("operation", "withdraw"),
            ("bank_code", "088"),
            ("times", "3"),
        ],
    )
    .await?;
    ensure!(
        scripted.status == 303,
        "a rule on A's portal: {} {}",
        scripted.status,
        text(&scripted)
    );
    let started = std::time::Instant::now();
    while !text(&get_page(&b, &format!("/portal/apps/{portal_client}"), &on_b).await?)
        .contains("<td>088</td>")
    {
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "A's portal rule is not on B's app page"
        );
    }
    // The developer requests an institution for the app on B's portal,
    // with a sandbox contract account: C's operator lists it, requested,
    // its account verified, and the test funds are on the ledger. (Two
    // changes, the institution then its account, which reach C one after
    // the other: C is polled until it has both.)
    let on_b_page = get_page(&b, &format!("/portal/apps/{portal_client}"), &on_b).await?;
    let csrf = html_value(&text(&on_b_page), "csrf").context("csrf on B's app page")?;
    let requested = post_form(
        &b,
        &format!("/portal/apps/{portal_client}/institution"),
        Some(&on_b),
        &[
            ("csrf", &csrf),
            ("name", "포털핀테크"),
            ("sandbox_account", "yes"),
        ],
    )
    .await?;
    ensure!(
        requested.status == 303,
        "an institution requested on B's portal: {} {}",
        requested.status,
        text(&requested)
    );
    let portal_code = registered_code(&c, &portal_client).await?;
    let started = std::time::Instant::now();
    let requested = loop {
        let list = admin_list(&c, sfop_admin_api::institutions::LIST).await?;
        if let Some(found) = list.iter().find(|i| {
            i["client_use_code"] == portal_code.as_str()
                && i["contract_accounts"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        }) {
            break found.clone();
        }
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "B's portal institution and its account are not on C: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let account = &requested["contract_accounts"][0];
    ensure!(
        requested["state"] == "requested" && account["verified"] == true,
        "{requested}"
    );
    let ledger = sfop_store_pg::Cluster::connect(&url, 1).await?;
    let id = format!(
        "097/{}",
        account["account_num"].as_str().unwrap_or_default()
    );
    ensure!(
        ledger.balance(&id).await? == Some(sfop::institutions::SANDBOX_TEST_FUNDS as i64),
        "{id} on the ledger"
    );

    // C's operator lists both apps.
    let listed = admin_list(&c, "/admin/v1/clients").await?;
    let ids: Vec<&str> = listed
        .iter()
        .filter_map(|c| c["client_id"].as_str())
        .collect();
    ensure!(
        ids.contains(&client_id.as_str()) && ids.contains(&portal_client.as_str()),
        "C's client list: {listed:?}"
    );

    // C cut off from the database: its token endpoint, registration and
    // portal sign-up and sign-in answer 503 (`A0013`
    // `temporarily_unavailable` with `Retry-After` at the token endpoint,
    // RFC 6749 §5.2's "retry later"), never a 200 or the caller's fault;
    // back in touch, the same token request succeeds.
    proxy.cut();
    let reply = post_form(
        &c,
        "/oauth/2.0/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "oob"),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
    )
    .await?;
    let answer = reply.json().unwrap_or(Value::Null);
    ensure!(
        reply.status == 503
            && answer["rsp_code"] == "A0013"
            && answer["error"] == "temporarily_unavailable"
            && reply.header("retry-after").is_some(),
        "a token on C cut off: {} {answer}",
        reply.status
    );
    let (code, answer) = admin(
        &c,
        "/admin/v1/clients",
        json!({ "name": "Cut off", "redirect_uris": [], "scopes": ["oob"] }),
    )
    .await?;
    ensure!(
        code == 503 && answer["rsp_code"] == "A0013",
        "a registration on C cut off: {code} {answer}"
    );
    for path in ["/portal/signup", "/portal/signin"] {
        let reply = post_form(&c, path, None, &[("email", email), ("password", password)]).await?;
        ensure!(
            reply.status == 503 && reply.header("set-cookie").is_none(),
            "{path} on C cut off: {} {}",
            reply.status,
            text(&reply)
        );
    }
    // Institution changes on C cut off: 503, and nothing changed anywhere
    // (a new code not onboarded, the portal's institution not suspended).
    let (code, answer) = admin(
        &c,
        sfop_admin_api::institutions::LIST,
        json!({ "name": "끊긴핀테크", "client_use_code": "M911111111" }),
    )
    .await?;
    ensure!(
        code == 503 && answer["rsp_code"] == "A0013",
        "an institution created on C cut off: {code} {answer}"
    );
    let (code, answer) = admin(
        &c,
        sfop_admin_api::institutions::SUSPEND,
        json!({ "client_use_code": portal_code }),
    )
    .await?;
    ensure!(
        code == 503 && answer["rsp_code"] == "A0013",
        "an institution suspended on C cut off: {code} {answer}"
    );
    proxy.restore();
    let (code, answer) = oob_token(&c, &client_id, &secret).await?;
    ensure!(code == 200, "a token on C back in touch: {code} {answer}");
    for node in [&a, &b, &c] {
        let list = admin_list(node, sfop_admin_api::institutions::LIST).await?;
        ensure!(
            !list.iter().any(|i| i["client_use_code"] == "M911111111")
                && list
                    .iter()
                    .any(|i| i["client_use_code"] == portal_code.as_str()
                        && i["state"] == "requested"),
            "after C's cut-off, {} lists {list:?}",
            node.url()
        );
    }
    Ok(())
}

const ACCOUNTS: &str = "/v2.0/account/list?user_seq_no=1100000001&include_cancel_yn=N&sort_order=A";

/// Status and `rsp_code` of hong's account list on `node` with `token`.
async fn accounts(node: &Served, token: &str) -> Result<(u16, Value)> {
    let mut conn = node.connect().await?;
    let reply = tokio::time::timeout(BOUND, conn.get_bearer(ACCOUNTS, token))
        .await
        .context("account/list hung")??;
    Ok((reply.status, reply.json().unwrap_or(Value::Null)))
}

/// Polls every node until each refuses `token` as revoked (401 `O0002`).
async fn refused_everywhere(nodes: &[&Served], token: &str, what: &str) -> Result<()> {
    for (n, node) in nodes.iter().enumerate() {
        let started = std::time::Instant::now();
        loop {
            let (code, answer) = accounts(node, token).await?;
            if code == 401 {
                ensure!(
                    answer["rsp_code"] == "O0002",
                    "{what} on node {n}: {answer}"
                );
                break;
            }
            ensure!(
                code == 200 && started.elapsed() < Duration::from_secs(5),
                "{what} on node {n} not refused: {code} {answer}"
            );
        }
    }
    Ok(())
}

/// `grant_type=refresh_token` for the demo app on `node`.
async fn refresh(node: &Served, refresh_token: &str) -> Result<(u16, Value)> {
    let (client_id, secret, _) = node.demo_client()?;
    let reply = post_form(
        node,
        "/oauth/2.0/token",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
    )
    .await?;
    Ok((reply.status, reply.json().unwrap_or(Value::Null)))
}

/// The access and refresh tokens of a token answer.
fn pair(answer: &Value) -> Result<(String, String)> {
    let field = |k: &str| {
        answer[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{k} in {answer}"))
    };
    Ok((field("access_token")?, field("refresh_token")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_and_refresh_tokens_are_single_use_across_nodes() -> Result<()> {
    let Some(url) = database("cluster_grants").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let (a, b, c) = three_nodes(dir.path(), &url, None).await?;
    let all = [&a, &b, &c];

    // A code issued on A is redeemed on B; its token serves on C.
    let code = a.authorization_code("hong", "hong1234").await?;
    let redeemed = b.redeem(&code).await?;
    let answer = redeemed.json()?;
    ensure!(redeemed.status == 200, "A's code on B: {answer}");
    let (access, first_refresh) = pair(&answer)?;
    let (status, listed) = accounts(&c, &access).await?;
    ensure!(
        status == 200 && listed["rsp_code"] == "A0000",
        "B's token on C: {status} {listed}"
    );
    // Redeemed again on C: refused, and (as on one node) what the code
    // gave is revoked on every node.
    let again = c.redeem(&code).await?;
    let answer = again.json()?;
    ensure!(
        again.status == 400 && answer["error"] == "invalid_grant",
        "A's code redeemed twice, on C: {} {answer}",
        again.status
    );
    refused_everywhere(&all, &access, "the replayed code's token").await?;
    let (status, answer) = refresh(&a, &first_refresh).await?;
    ensure!(
        status == 400 && answer["error"] == "invalid_grant",
        "the replayed code's refresh token on A: {status} {answer}"
    );

    // A refresh token issued on B rotates on C; the rotated one used
    // again on A revokes its family on every node.
    let code = a.authorization_code("hong", "hong1234").await?;
    let redeemed = b.redeem(&code).await?;
    let answer = redeemed.json()?;
    ensure!(redeemed.status == 200, "the second code on B: {answer}");
    let (_, on_b) = pair(&answer)?;
    let (status, answer) = refresh(&c, &on_b).await?;
    ensure!(status == 200, "B's refresh token on C: {status} {answer}");
    let (rotated_access, rotated_refresh) = pair(&answer)?;
    let (status, listed) = accounts(&b, &rotated_access).await?;
    ensure!(
        status == 200 && listed["rsp_code"] == "A0000",
        "C's rotated token on B: {status} {listed}"
    );
    let (status, answer) = refresh(&a, &on_b).await?;
    ensure!(
        status == 400 && answer["error"] == "invalid_grant",
        "B's rotated refresh token reused on A: {status} {answer}"
    );
    refused_everywhere(&all, &rotated_access, "the replayed family's token").await?;
    let (status, answer) = refresh(&b, &rotated_refresh).await?;
    ensure!(
        status == 400 && answer["error"] == "invalid_grant",
        "the replayed family's newest refresh token on B: {status} {answer}"
    );
    Ok(())
}
