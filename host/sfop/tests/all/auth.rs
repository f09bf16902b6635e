//! Issue 4, through real HTTP: register a client, drive the authorize pages,
//! exchange the code, call APIs with the biscuit, refresh, revoke, unlink;
//! and every refusal the issue lists, each with its code and no side effect.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sfop::{AuthMode, TlsMode};

use crate::harness::{Package, Reply, TestPlatform, send};

pub(crate) const REDIRECT: &str = "https://pay.example/callback";
pub(crate) const VERIFIER: &str = "a-pkce-code-verifier-of-at-least-43-characters-0123456789";

/// The echo test plugin as an inquiry API acting on `fintech_use_num`.
const ECHO_INQUIRY: &str = r#"
name = "echo"
version = "0.1.0"
description = "Echo with the caller's claims, guarded like an inquiry API."
scope = "inquiry"
capabilities = ["log", "clock", "auth-context"]

[[routes]]
method = "GET"
path = "/test/echo"

[access]
account = "query:fintech_use_num"
"#;

/// The echo test plugin as a transfer API moving `tran_amt`.
const ECHO_TRANSFER: &str = r#"
name = "echo-transfer"
version = "0.1.0"
description = "Echo guarded like a withdraw API."
scope = "transfer"
capabilities = ["log", "clock", "auth-context"]

[[routes]]
method = "POST"
path = "/test/pay"

[access]
account = "body:fintech_use_num"
amount = "body:tran_amt"
"#;

async fn platform() -> Result<TestPlatform> {
    TestPlatform::start_with(
        vec![
            Package::built("api/bank-status"),
            Package::built("test/echo").with_manifest(ECHO_INQUIRY),
            Package::built("test/echo")
                .named("echo-transfer")
                .with_manifest(ECHO_TRANSFER),
        ],
        |c| {
            c.tls.mode = TlsMode::Off;
            c.auth.mode = AuthMode::Biscuit;
        },
    )
    .await
}

pub(crate) fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

pub(crate) async fn post_form(
    t: &TestPlatform,
    path: &str,
    fields: &[(&str, &str)],
) -> Result<Reply> {
    send(t.addr(), "POST", path, &[FORM], form(fields)).await
}

pub(crate) async fn get_bearer(t: &TestPlatform, path: &str, token: &str) -> Result<Reply> {
    let auth = format!("Bearer {token}");
    send(
        t.addr(),
        "GET",
        path,
        &[("authorization", &auth)],
        Vec::new(),
    )
    .await
}

/// A registered confidential client: (client_id, client_secret, client_use_code).
pub(crate) async fn register_client(t: &TestPlatform) -> Result<(String, String, String)> {
    let admin =
        std::fs::read_to_string(t.platform.admin_token.as_ref().context("no admin token")?)?;
    let body = json!({
        "name": "Pay app",
        "redirect_uris": [REDIRECT],
        "scopes": ["login", "inquiry", "transfer", "oob"],
    });
    let auth = format!("Bearer {admin}");
    let reply = send(
        t.addr(),
        "POST",
        "/admin/v1/clients",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.to_string().into_bytes(),
    )
    .await?;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let v = reply.json()?;
    let field = |k: &str| {
        v[k].as_str()
            .map(str::to_owned)
            .with_context(|| format!("{k} in {v}"))
    };
    Ok((
        field("client_id")?,
        field("client_secret")?,
        field("client_use_code")?,
    ))
}

/// The value of the first `name="NAME" value="…"` in an HTML page.
fn html_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

fn query_param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.replace("%20", " "))
    })
}

/// Drives the authorize pages as user `hong` and returns the redirect's `code`.
async fn authorize(t: &TestPlatform, client_id: &str, scope: &str) -> Result<String> {
    authorize_with(t, client_id, REDIRECT, scope).await
}

pub(crate) async fn authorize_with(
    t: &TestPlatform,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
) -> Result<String> {
    let challenge = pkce_s256(VERIFIER);
    let state = "0123456789abcdef0123456789abcdef";
    let query = form(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scope),
        ("state", state),
        ("auth_type", "0"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let page = t
        .get(&format!(
            "/oauth/2.0/authorize?{}",
            String::from_utf8(query)?
        ))
        .await?;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let html = String::from_utf8(page.body.to_vec())?;
    let pending = html_value(&html, "pending").context("no pending id on the sign-in page")?;

    // Wrong password: the page again, with an error, nothing issued.
    let retry = post_form(
        t,
        "/oauth/2.0/authorize",
        &[
            ("pending", &pending),
            ("action", "login"),
            ("login_id", "hong"),
            ("password", "nope"),
        ],
    )
    .await?;
    assert!(String::from_utf8_lossy(&retry.body).contains("not correct"));

    let consent = post_form(
        t,
        "/oauth/2.0/authorize",
        &[
            ("pending", &pending),
            ("action", "login"),
            ("login_id", "hong"),
            ("password", "hong1234"),
        ],
    )
    .await?;
    let html = String::from_utf8(consent.body.to_vec())?;
    let account = html_value(&html, "account").context("no account on the consent page")?;
    let mut fields = vec![
        ("pending", pending.as_str()),
        ("action", "consent"),
        ("account", account.as_str()),
    ];
    let scopes: Vec<&str> = scope.split(' ').collect();
    fields.extend(scopes.iter().map(|s| ("scope", *s)));
    let redirect = post_form(t, "/oauth/2.0/authorize", &fields).await?;
    assert_eq!(
        redirect.status,
        302,
        "{}",
        String::from_utf8_lossy(&redirect.body)
    );
    let location = redirect
        .header("location")
        .context("no Location")?
        .to_owned();
    assert!(location.starts_with(redirect_uri), "{location}");
    assert_eq!(query_param(&location, "state").as_deref(), Some(state));
    query_param(&location, "code").context("no code in the redirect")
}

fn pkce_s256(verifier: &str) -> String {
    sfop_auth::oauth::pkce_s256(verifier)
}

pub(crate) async fn exchange(
    t: &TestPlatform,
    client: &(String, String, String),
    code: &str,
    verifier: &str,
    redirect: &str,
) -> Result<Reply> {
    post_form(
        t,
        "/oauth/2.0/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &client.0),
            ("client_secret", &client.1),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub(crate) fn token_of(reply: &Reply) -> Result<(String, Value)> {
    if reply.status != 200 {
        bail!(
            "token endpoint said {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    let v = reply.json()?;
    Ok((
        v["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned(),
        v,
    ))
}

pub(crate) fn rsp_code(reply: &Reply) -> String {
    reply
        .json()
        .ok()
        .and_then(|v| v["rsp_code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test]
async fn register_authorize_call_refresh_revoke() -> Result<()> {
    let t = platform().await?;
    let client = register_client(&t).await?;
    let code = authorize(&t, &client.0, "login inquiry transfer").await?;
    let (access, token) = token_of(&exchange(&t, &client, &code, VERIFIER, REDIRECT).await?)?;
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 7_775_999);
    assert_eq!(token["scope"], "login inquiry transfer");
    assert_eq!(token["user_seq_no"].as_str().map(str::len), Some(10));

    // The code is single-use; a replay also revokes what it gave, which
    // `security_oauth` shows.

    // Call an inquiry API on the consented account: the plugin sees the claims.
    let echo = get_bearer(&t, "/test/echo", &access).await?;
    assert_eq!(echo.status, 200, "{}", String::from_utf8_lossy(&echo.body));
    let caller = echo.json()?["caller"].clone();
    assert_eq!(
        echo.json()?["header_authorization"],
        Value::Null,
        "the bearer token reached the plugin"
    );
    assert_eq!(caller["client_id"], client.0);
    assert_eq!(caller["client_use_code"], client.2);
    assert_eq!(caller["user_seq_no"], token["user_seq_no"]);
    let fintech = caller["fintech_use_nums"][0]
        .as_str()
        .context("no fintech_use_num")?
        .to_owned();
    assert_eq!(fintech.len(), 24);
    let reply = get_bearer(
        &t,
        &format!("/test/echo?fintech_use_num={fintech}"),
        &access,
    )
    .await?;
    assert_eq!(rsp_code(&reply), "A0000");

    // Another account is not consented; an oob API is not in scope.
    let reply = get_bearer(
        &t,
        "/test/echo?fintech_use_num=199999999999999999999999",
        &access,
    )
    .await?;
    assert_eq!((reply.status, rsp_code(&reply)), (200, "A0304".into()));
    let reply = get_bearer(&t, "/v2.0/bank/status", &access).await?;
    assert_eq!((reply.status, rsp_code(&reply)), (200, "A0011".into()));

    // Refresh rotates: the new pair works, the old refresh token is spent.
    let refresh = token["refresh_token"]
        .as_str()
        .context("refresh_token")?
        .to_owned();
    let refreshed = post_form(
        &t,
        "/oauth/2.0/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client.0),
            ("client_secret", &client.1),
        ],
    )
    .await?;
    let (access2, token2) = token_of(&refreshed)?;
    assert_ne!(access2, access);
    assert_ne!(token2["refresh_token"], token["refresh_token"]);
    let reused = post_form(
        &t,
        "/oauth/2.0/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client.0),
            ("client_secret", &client.1),
        ],
    )
    .await?;
    assert_eq!((reused.status, rsp_code(&reused)), (400, "O0002".into()));
    // A replayed refresh token means someone else holds a copy: the whole
    // family (both access tokens, the new refresh token) is revoked.
    for dead in [&access, &access2] {
        let reply = get_bearer(&t, "/test/echo", dead).await?;
        assert_eq!((reply.status, rsp_code(&reply)), (401, "O0002".into()));
    }

    // A new authorization, refreshed once: two live access tokens.
    let code = authorize(&t, &client.0, "login inquiry transfer").await?;
    let (access, token) = token_of(&exchange(&t, &client, &code, VERIFIER, REDIRECT).await?)?;
    let refreshed = post_form(
        &t,
        "/oauth/2.0/token",
        &[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                token["refresh_token"].as_str().context("refresh")?,
            ),
            ("client_id", &client.0),
            ("client_secret", &client.1),
        ],
    )
    .await?;
    let (access2, _) = token_of(&refreshed)?;

    // Revoke: the token dies at once, the other one lives.
    let revoked = post_form(
        &t,
        "/oauth/2.0/revoke",
        &[
            ("token", &access),
            ("client_id", &client.0),
            ("client_secret", &client.1),
        ],
    )
    .await?;
    assert_eq!(revoked.status, 200);
    let reply = get_bearer(&t, "/test/echo", &access).await?;
    assert_eq!((reply.status, rsp_code(&reply)), (401, "O0002".into()));
    assert_eq!(
        rsp_code(&get_bearer(&t, "/test/echo", &access2).await?),
        "A0000"
    );

    // Unlink: the user withdraws consent; every token of this client dies.
    let auth = format!("Bearer {access2}");
    let body =
        json!({ "client_use_code": client.2, "user_seq_no": token["user_seq_no"] }).to_string();
    let unlinked = send(
        t.addr(),
        "POST",
        "/v2.0/user/unlink",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.into_bytes(),
    )
    .await?;
    assert_eq!(
        rsp_code(&unlinked),
        "A0000",
        "{}",
        String::from_utf8_lossy(&unlinked.body)
    );
    assert!(unlinked.json()?["api_tran_id"].is_string());
    let reply = get_bearer(&t, "/test/echo", &access2).await?;
    assert_eq!((reply.status, rsp_code(&reply)), (401, "O0002".into()));
    t.platform.stop().await
}

#[tokio::test]
async fn institution_tokens_and_their_refusals() -> Result<()> {
    let t = platform().await?;
    let client = register_client(&t).await?;
    let cc = |scope: &'static str| {
        let client = client.clone();
        let t = &t;
        async move {
            post_form(
                t,
                "/oauth/2.0/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", scope),
                    ("client_id", &client.0),
                    ("client_secret", &client.1),
                ],
            )
            .await
        }
    };
    let (oob, token) = token_of(&cc("oob").await?)?;
    assert_eq!(token["client_use_code"], client.2);
    assert_eq!(token["scope"], "oob");
    let reply = get_bearer(&t, "/v2.0/bank/status", &oob).await?;
    assert_eq!(rsp_code(&reply), "A0000");

    // A user scope through client credentials, and an unknown scope.
    assert_eq!(rsp_code(&cc("inquiry").await?), "O0001");
    assert_eq!(rsp_code(&cc("banking").await?), "O0011");
    // A wrong secret.
    let wrong = post_form(
        &t,
        "/oauth/2.0/token",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "oob"),
            ("client_id", &client.0),
            ("client_secret", "guess"),
        ],
    )
    .await?;
    assert_eq!((wrong.status, rsp_code(&wrong)), (401, "O0001".into()));

    // No token, a garbage token.
    let reply = t.get("/v2.0/bank/status").await?;
    assert_eq!((reply.status, rsp_code(&reply)), (401, "O0001".into()));
    assert!(reply.json()?["api_tran_id"].is_string());
    let reply = get_bearer(&t, "/v2.0/bank/status", "not-a-biscuit").await?;
    assert_eq!((reply.status, rsp_code(&reply)), (401, "O0002".into()));

    // The admin API refuses access tokens and anonymous calls.
    let reply = get_bearer(&t, "/admin/v1/clients", &oob).await?;
    assert_eq!(reply.status, 403);
    let reply = t.get("/admin/v1/clients").await?;
    assert_eq!(reply.status, 401);
    t.platform.stop().await
}

#[tokio::test]
async fn code_exchange_refusals_have_no_side_effect() -> Result<()> {
    let t = platform().await?;
    let client = register_client(&t).await?;

    // Wrong PKCE verifier: refused, and the code is left to the right one.
    let code = authorize(&t, &client.0, "inquiry").await?;
    let reply = exchange(&t, &client, &code, "x".repeat(43).as_str(), REDIRECT).await?;
    assert_eq!(
        (reply.status, reply.json()?["error"].clone()),
        (400, json!("invalid_grant"))
    );
    token_of(&exchange(&t, &client, &code, VERIFIER, REDIRECT).await?)?;

    // Wrong redirect_uri.
    let code = authorize(&t, &client.0, "inquiry").await?;
    let reply = exchange(&t, &client, &code, VERIFIER, "https://evil.example/cb").await?;
    assert_eq!(reply.status, 400);

    // An unregistered redirect_uri is never redirected to.
    let page = t
        .get(&format!("/oauth/2.0/authorize?response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&scope=inquiry&state=s", client.0))
        .await?;
    assert_eq!(page.status, 400);
    assert!(page.header("location").is_none());

    // An oob scope cannot be asked of a user: redirected back with an error.
    let page = t
        .get(&format!("/oauth/2.0/authorize?response_type=code&client_id={}&redirect_uri={}&scope=oob&state=s", client.0, encode(REDIRECT)))
        .await?;
    assert_eq!(page.status, 302);
    assert_eq!(
        query_param(page.header("location").unwrap_or_default(), "error").as_deref(),
        Some("invalid_scope")
    );
    t.platform.stop().await
}

#[tokio::test]
async fn attenuated_tokens_are_enforced_at_the_gateway() -> Result<()> {
    let t = platform().await?;
    let client = register_client(&t).await?;
    let code = authorize(&t, &client.0, "login inquiry transfer").await?;
    let (access, _) = token_of(&exchange(&t, &client, &code, VERIFIER, REDIRECT).await?)?;
    let echo = get_bearer(&t, "/test/echo", &access).await?.json()?;
    let fintech = echo["caller"]["fintech_use_nums"][0]
        .as_str()
        .context("fintech")?
        .to_owned();

    // The fintech company restricts the token offline (no platform key) and
    // hands it to a partner: payments of at most 30,000 won.
    let partner = sfop_auth::holder::attenuate(
        &access,
        r#"check if operation("read") or amount($a), $a <= 30000;"#,
    )?;
    let pay = |token: String, amount: &'static str| {
        let (t, fintech) = (&t, fintech.clone());
        async move {
            let auth = format!("Bearer {token}");
            let body = json!({ "fintech_use_num": fintech, "tran_amt": amount }).to_string();
            send(
                t.addr(),
                "POST",
                "/test/pay",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.into_bytes(),
            )
            .await
        }
    };
    assert_eq!(rsp_code(&pay(partner.clone(), "30000").await?), "A0000");
    let over = pay(partner.clone(), "30001").await?;
    assert_eq!((over.status, rsp_code(&over)), (200, "A0301".into()));
    // The unrestricted token still pays more; reads stay allowed to the partner.
    assert_eq!(rsp_code(&pay(access.clone(), "30001").await?), "A0000");
    assert_eq!(
        rsp_code(&get_bearer(&t, "/test/echo", &partner).await?),
        "A0000"
    );
    t.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_registers_and_lists_clients_over_https() -> Result<()> {
    let t = TestPlatform::start_with(vec![Package::built("api/bank-status")], |c| {
        c.tls.mode = TlsMode::SelfSigned;
        c.auth.mode = AuthMode::Biscuit;
    })
    .await?;
    let url = t.platform.url();
    let data_dir = t.data_dir().to_owned();
    let cli = |args: Vec<String>| {
        let (url, data_dir) = (url.clone(), data_dir.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sfop"))
                .arg("client")
                .args(&args)
                .arg("--url")
                .arg(&url)
                .arg("--data-dir")
                .arg(&data_dir)
                .output()
        })
    };
    let out = cli([
        "register",
        "--name",
        "Budget app",
        "--redirect-uri",
        "https://budget.example/cb",
        "--scope",
        "login",
        "--scope",
        "inquiry",
    ]
    .map(String::from)
    .to_vec())
    .await??;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let registered: Value = serde_json::from_slice(&out.stdout)?;
    let client_id = registered["client_id"]
        .as_str()
        .context("client_id")?
        .to_owned();
    assert_eq!(registered["client_secret"].as_str().map(str::len), Some(64));

    let out = cli(vec!["list".into()]).await??;
    assert!(out.status.success());
    // A table: one app per row, its client_id first.
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let ids: Vec<&str> = listed
        .lines()
        .skip(1)
        .filter_map(|row| row.split_whitespace().next())
        .collect();
    assert!(ids.contains(&client_id.as_str()), "{ids:?}");
    // The seeded demo client is there too; secrets are never listed.
    assert!(ids.contains(&"sfop-demo-client"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("secret"));

    // A bad spec is refused with the field named, and a non-zero exit.
    let out = cli(["register", "--name", "X", "--scope", "payments"]
        .map(String::from)
        .to_vec())
    .await??;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("scopes"));
    t.platform.stop().await
}

/// The reference APIs with real tokens: the demo app, user hong, the 3-legged
/// flow, then balance and withdraw through the gateway's Datalog decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_apis_answer_real_tokens() -> Result<()> {
    let t = TestPlatform::start_with(
        vec![
            Package::built("api/account-balance"),
            Package::built("api/transfer-withdraw"),
            Package::built("api/bank-status"),
        ],
        |c| {
            c.tls.mode = TlsMode::Off;
            c.auth.mode = AuthMode::Biscuit;
        },
    )
    .await?;
    // The seeded demo app: its institution has a contract account at the bank.
    let demo: Value =
        serde_json::from_slice(&std::fs::read(t.data_dir().join("demo-client.json"))?)?;
    let field = |k: &str| {
        demo[k]
            .as_str()
            .map(str::to_owned)
            .context("demo-client.json")
    };
    let client = (
        field("client_id")?,
        field("client_secret")?,
        field("client_use_code")?,
    );
    let redirect = field("redirect_uri")?;
    let code = authorize_with(&t, &client.0, &redirect, "login inquiry transfer").await?;
    let (access, token) = token_of(&exchange(&t, &client, &code, VERIFIER, &redirect).await?)?;
    let accounts = consented_accounts(&access)?;
    let fintech = accounts.first().context("no consented account")?.clone();
    let now = "20261122120000";

    let balance = get_bearer(
        &t,
        &format!("/v2.0/account/balance/fin_num?bank_tran_id={}U000000001&fintech_use_num={fintech}&tran_dtime={now}", client.2),
        &access,
    )
    .await?;
    assert_eq!(
        rsp_code(&balance),
        "A0000",
        "{}",
        String::from_utf8_lossy(&balance.body)
    );
    assert!(balance.json()?["balance_amt"].is_string());

    // Someone else's fintech_use_num never reaches the bank.
    let other = get_bearer(
        &t,
        &format!("/v2.0/account/balance/fin_num?bank_tran_id={}U000000002&fintech_use_num=120230000100000000000023&tran_dtime={now}", client.2),
        &access,
    )
    .await?;
    assert_eq!((other.status, rsp_code(&other)), (200, "A0304".into()));

    let withdraw = |token: String, id: &'static str, amount: &'static str| {
        let (t, client, fintech) = (&t, client.clone(), fintech.clone());
        async move {
            let body = json!({
                "bank_tran_id": format!("{}{id}", client.2),
                "cntr_account_type": "N",
                "cntr_account_num": "5000000000001",
                "dps_print_content": "sfop test",
                "fintech_use_num": fintech,
                "wd_print_content": "coffee",
                "tran_amt": amount,
                "tran_dtime": now,
                "req_client_name": "홍길동",
                "req_client_num": "HONG",
                "transfer_purpose": "TR",
            });
            let auth = format!("Bearer {token}");
            send(
                t.addr(),
                "POST",
                "/v2.0/transfer/withdraw/fin_num",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    // The user's own token withdraws into the institution's contract account.
    let paid = withdraw(access.clone(), "U000000003", "5000").await?;
    assert_eq!(
        rsp_code(&paid),
        "A0000",
        "{}",
        String::from_utf8_lossy(&paid.body)
    );
    assert_eq!(paid.json()?["tran_amt"], "5000");

    // A partner's attenuated copy is stopped at the gateway above its limit.
    let partner = sfop_auth::holder::attenuate(
        &access,
        r#"check if operation("read") or amount($a), $a <= 1000;"#,
    )?;
    let refused = withdraw(partner, "U000000004", "5000").await?;
    assert_eq!((refused.status, rsp_code(&refused)), (200, "A0301".into()));
    assert_eq!(token["scope"], "login inquiry transfer");

    // The institution token of the same app reads bank status, not balances.
    let (oob, _) = token_of(
        &post_form(
            &t,
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
    assert_eq!(
        rsp_code(&get_bearer(&t, "/v2.0/bank/status", &oob).await?),
        "A0000"
    );
    let reply = get_bearer(&t, &format!("/v2.0/account/balance/fin_num?bank_tran_id={}U000000005&fintech_use_num={fintech}&tran_dtime={now}", client.2), &oob).await?;
    assert_eq!((reply.status, rsp_code(&reply)), (200, "A0011".into()));
    t.platform.stop().await
}

/// The consented accounts in an access token, read as any holder can.
pub(crate) fn consented_accounts(token: &str) -> Result<Vec<String>> {
    Ok(sfop_auth::holder::authority_facts(token)?
        .iter()
        .filter_map(|f| {
            f.strip_prefix("account(\"")?
                .strip_suffix("\")")
                .map(str::to_owned)
        })
        .collect())
}
